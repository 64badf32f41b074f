-- The gateway's schema on SQLite.
-- Ids are 16-byte UUID blobs (UUIDv7 for server-made ids, so blob order is time order).
-- Timestamps are INTEGER microseconds since the Unix epoch, UTC: exact and ordered by value.

CREATE TABLE accounts (
    id            BLOB    NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL,
    email         TEXT,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    CONSTRAINT accounts_username_key UNIQUE (username),
    CONSTRAINT accounts_email_key UNIQUE (email)
);

-- The per-account replication counter. Every event insert takes `last_seq + 1` from here and
-- the trigger on `events` moves it, inside the same transaction as the change.
CREATE TABLE account_log (
    account_id BLOB    NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    last_seq   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Revoked devices are deleted: a token that has no row does not authenticate.
CREATE TABLE devices (
    id           BLOB    NOT NULL PRIMARY KEY,
    account_id   BLOB    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    has_cellular INTEGER NOT NULL,
    token_hash   BLOB    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX devices_account ON devices (account_id);

-- The DID inventory. `owner` is unique: an account has at most one number, a number one owner.
-- A released number keeps `available_at` in the future for its quarantine.
CREATE TABLE numbers (
    number       TEXT    NOT NULL PRIMARY KEY,
    carrier      TEXT    NOT NULL,
    country      TEXT    NOT NULL,
    owner        BLOB    UNIQUE REFERENCES accounts (id) ON DELETE SET NULL,
    available_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX numbers_country ON numbers (country, number);

CREATE TABLE identities (
    id              BLOB    NOT NULL PRIMARY KEY,
    account_id      BLOB    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL,
    value           TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    code_hash       TEXT,
    code_expires_at INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    verified_at     INTEGER,
    UNIQUE (account_id, kind, value)
);
-- One verified claim per (kind, value); the store reverts older claims before verifying.
CREATE UNIQUE INDEX identities_verified ON identities (kind, value) WHERE status = 'verified';

CREATE TABLE conversations (
    id              BLOB    NOT NULL PRIMARY KEY,
    account_id      BLOB    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    peer            TEXT    NOT NULL,
    last_message_id BLOB,
    updated_at      INTEGER NOT NULL,
    unread          INTEGER NOT NULL DEFAULT 0,
    read_up_to      BLOB,
    UNIQUE (account_id, peer)
);
CREATE INDEX conversations_recent ON conversations (account_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                 BLOB    NOT NULL PRIMARY KEY,
    account_id         BLOB    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    conversation_id    BLOB    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    direction          TEXT    NOT NULL,
    from_addr          TEXT    NOT NULL,
    to_addr            TEXT    NOT NULL,
    body               TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    route              TEXT    NOT NULL,
    client_id          BLOB,
    encoding           TEXT    NOT NULL,
    segments           INTEGER NOT NULL,
    failure_reason     TEXT,
    carrier            TEXT,
    carrier_message_id TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    UNIQUE (account_id, client_id)
);
CREATE INDEX messages_conversation ON messages (conversation_id, id DESC);
CREATE INDEX messages_carrier ON messages (carrier, carrier_message_id)
    WHERE carrier_message_id IS NOT NULL;

CREATE TABLE events (
    account_id BLOB    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;

-- Keeps the counter row in step with the log inside the inserting statement, so an event
-- costs the writer one statement instead of two.
CREATE TRIGGER events_advance_log AFTER INSERT ON events
BEGIN
    INSERT INTO account_log (account_id, last_seq) VALUES (NEW.account_id, NEW.seq)
        ON CONFLICT (account_id) DO UPDATE SET last_seq = excluded.last_seq;
END;

-- Out-of-network messages waiting for a carrier. The job carries its own copy of what to
-- send, so the sender deleting their copy does not stop a text already accepted.
CREATE TABLE outbound (
    message_id  BLOB    NOT NULL PRIMARY KEY,
    account_id  BLOB    NOT NULL,
    from_addr   TEXT    NOT NULL,
    to_addr     TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL,
    lease_until INTEGER,
    last_error  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX outbound_due ON outbound (not_before);

CREATE TABLE contacts (
    account_id BLOB    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address    TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    fallback   INTEGER NOT NULL,
    name       TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, address)
) WITHOUT ROWID;
