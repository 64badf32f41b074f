-- The health check's write probe (`/healthz`): each health check commits this one row, so a
-- database that answers but cannot write (a full disk, a read-only server) takes the node out
-- of rotation. One row, rewritten in place by every node.
CREATE TABLE health_probes (
    id        integer     PRIMARY KEY CHECK (id = 1),
    probed_at timestamptz NOT NULL
);
