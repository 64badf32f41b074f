-- A conversation's own name, whether it is archived, and until when it is muted (micros since
-- the epoch; 9999-12-31T23:59:59Z mutes for good). Older rows are unnamed, listed and loud.
ALTER TABLE conversations ADD COLUMN name TEXT;
ALTER TABLE conversations ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN muted_until INTEGER;
