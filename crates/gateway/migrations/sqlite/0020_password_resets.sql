-- A password-reset code waiting to be typed back: one per account, replaced by a new request,
-- gone once used, when the password changes, or with the account. Kept like identity codes:
-- a salted SHA-256, an expiry (micros) and a count of wrong tries.
CREATE TABLE password_resets (
    account_id BLOB    NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
