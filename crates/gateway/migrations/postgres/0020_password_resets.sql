-- A password-reset code waiting to be typed back: one per account, replaced by a new request,
-- gone once used, when the password changes, or with the account. Kept like identity codes:
-- a salted SHA-256, an expiry and a count of wrong tries.
CREATE TABLE password_resets (
    account_id uuid        NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  text        NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts   bigint      NOT NULL DEFAULT 0
);
