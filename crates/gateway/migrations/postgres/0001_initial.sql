-- The gateway's schema on PostgreSQL: the same logical shape as the SQLite schema.
-- Integers are BIGINT throughout so both engines read them as i64.

CREATE TABLE accounts (
    id            uuid        NOT NULL PRIMARY KEY,
    username      text        NOT NULL,
    email         text,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL,
    CONSTRAINT accounts_username_key UNIQUE (username),
    CONSTRAINT accounts_email_key UNIQUE (email)
);

-- The per-account replication counter. A transaction that appends an event updates this row
-- and so holds it locked until it commits: seqs of one account commit strictly in order.
CREATE TABLE account_log (
    account_id uuid   NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    last_seq   bigint NOT NULL DEFAULT 0
);

-- Revoked devices are deleted: a token without a row does not authenticate.
CREATE TABLE devices (
    id           uuid        NOT NULL PRIMARY KEY,
    account_id   uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    has_cellular boolean     NOT NULL,
    token_hash   bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
CREATE INDEX devices_account ON devices (account_id);

CREATE TABLE numbers (
    number       text        NOT NULL PRIMARY KEY,
    carrier      text        NOT NULL,
    country      text        NOT NULL,
    owner        uuid        UNIQUE REFERENCES accounts (id) ON DELETE SET NULL,
    available_at timestamptz NOT NULL DEFAULT 'epoch'
);
CREATE INDEX numbers_country ON numbers (country, number text_pattern_ops);

CREATE TABLE identities (
    id              uuid        NOT NULL PRIMARY KEY,
    account_id      uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind            text        NOT NULL,
    value           text        NOT NULL,
    status          text        NOT NULL,
    code_hash       text,
    code_expires_at timestamptz,
    attempts        bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    verified_at     timestamptz,
    UNIQUE (account_id, kind, value)
);
CREATE UNIQUE INDEX identities_verified ON identities (kind, value) WHERE status = 'verified';

CREATE TABLE conversations (
    id              uuid        NOT NULL PRIMARY KEY,
    account_id      uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    peer            text        NOT NULL,
    last_message_id uuid,
    updated_at      timestamptz NOT NULL,
    unread          bigint      NOT NULL DEFAULT 0,
    read_up_to      uuid,
    UNIQUE (account_id, peer)
);
CREATE INDEX conversations_recent ON conversations (account_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                 uuid        NOT NULL PRIMARY KEY,
    account_id         uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    conversation_id    uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    direction          text        NOT NULL,
    from_addr          text        NOT NULL,
    to_addr            text        NOT NULL,
    body               text        NOT NULL,
    status             text        NOT NULL,
    route              text        NOT NULL,
    client_id          uuid,
    encoding           text        NOT NULL,
    segments           bigint      NOT NULL,
    failure_reason     text,
    carrier            text,
    carrier_message_id text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CONSTRAINT messages_client_id_key UNIQUE (account_id, client_id)
);
CREATE INDEX messages_conversation ON messages (conversation_id, id DESC);
CREATE INDEX messages_carrier ON messages (carrier, carrier_message_id)
    WHERE carrier_message_id IS NOT NULL;

CREATE TABLE events (
    account_id uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL,
    at         timestamptz NOT NULL,
    type       text        NOT NULL,
    payload    text        NOT NULL,
    PRIMARY KEY (account_id, seq)
);

-- Out-of-network messages waiting for a carrier; claimed with FOR UPDATE SKIP LOCKED and a
-- lease, so a crashed worker's jobs come back when the lease ends.
CREATE TABLE outbound (
    message_id  uuid        NOT NULL PRIMARY KEY,
    account_id  uuid        NOT NULL,
    from_addr   text        NOT NULL,
    to_addr     text        NOT NULL,
    body        text        NOT NULL,
    attempts    bigint      NOT NULL DEFAULT 0,
    not_before  timestamptz NOT NULL,
    lease_until timestamptz,
    last_error  text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX outbound_due ON outbound (not_before);

CREATE TABLE contacts (
    account_id uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address    text        NOT NULL,
    path       text        NOT NULL,
    fallback   boolean     NOT NULL,
    name       text,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, address)
);
