-- The health check's write probe (`/healthz`): after a write failed for lack of storage, the
-- health check commits this one row (with a 64 KiB padding, so the probe needs room as a
-- write does) to learn whether the store can write again. One row, rewritten in place.
CREATE TABLE health_probes (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL,
    padding   BLOB    NOT NULL
);
