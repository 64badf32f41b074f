-- The writer keeps each account's newest seq in memory and writes `account_log` once per
-- commit (see src/store/sqlite/writer.rs, `Seqs`), so the per-event trigger that moved the
-- counter is no longer wanted: it cost an extra upsert for every event.
DROP TRIGGER IF EXISTS events_advance_log;
