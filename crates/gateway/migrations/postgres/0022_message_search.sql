-- Full-text search over each account's messages (`GET /v1/search`): the body's words as a
-- tsvector kept by PostgreSQL itself, with the 'simple' configuration (lower case, no
-- stemming: messages come in any language), and a GIN index over it.
ALTER TABLE messages
    ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
-- Each account's messages newest first, for the search's ordering and paging.
CREATE INDEX messages_account_recent ON messages (account_id, id DESC);
