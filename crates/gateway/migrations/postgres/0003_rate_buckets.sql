-- Rate-limit buckets shared by every gateway node (src/rate_limit/postgres.rs): a token
-- bucket per (kind, key). `full_at` is when the bucket will be full again; past it the row
-- equals no row and the sweep deletes it.
CREATE TABLE rate_buckets (
    kind       text             NOT NULL,
    key        text             NOT NULL,
    tokens     double precision NOT NULL,
    granted    boolean          NOT NULL,
    updated_at timestamptz      NOT NULL,
    full_at    timestamptz      NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX rate_buckets_full_at ON rate_buckets (full_at);
