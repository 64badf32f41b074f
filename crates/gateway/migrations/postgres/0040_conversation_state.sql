-- A conversation's own name, whether it is archived, and until when it is muted
-- (9999-12-31T23:59:59Z mutes for good). Older rows are unnamed, listed and loud.
ALTER TABLE conversations ADD COLUMN name text;
ALTER TABLE conversations ADD COLUMN archived boolean NOT NULL DEFAULT false;
ALTER TABLE conversations ADD COLUMN muted_until timestamptz;
