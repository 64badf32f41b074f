//! Accounts and their devices: who may sign in, and the tokens that authenticate each device;
//! password changes and resets, and deleting an account with everything it holds.
//!
//! Invariants (both engines): a password change or reset signs devices out in the same
//! transaction that replaces the hash, so no old token outlives it; a deleted account leaves
//! no row behind (its DID stays in the inventory, ownerless, in quarantine).

use airtext_api::{AccountId, DeviceId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// SHA-256 of a device token. Tokens are 256-bit random, so a fast hash is safe and lookups
/// stay one indexed read.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: AccountId,
    /// Lower case, without the `@`.
    pub username: String,
    pub email: Option<String>,
    /// PHC string (argon2id).
    pub password_hash: String,
    /// The account's DID, E.164.
    pub number: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: AccountId,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub account_id: AccountId,
    pub name: String,
    pub has_cellular: bool,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: DeviceId,
    pub account_id: AccountId,
    pub name: String,
    pub has_cellular: bool,
    pub token_hash: TokenHash,
    pub created_at: DateTime<Utc>,
}

/// Every table holding rows of an account (by its `account_id` column), children first; both
/// engines delete from each when the account goes. The conformance suite lists the schema's
/// tables and fails when one keeps a row of a deleted account, so a new table that holds
/// account rows has to be named here.
pub(crate) const ACCOUNT_TABLES: &[&str] = &[
    "messages",
    "conversations",
    "events",
    "account_log",
    "devices",
    "identities",
    "contacts",
    "outbound",
    "password_resets",
];

/// Which devices a password change signs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOut {
    /// Every device (a reset: whoever knew the old password is out).
    Everyone,
    /// Every device but this one (the one that changed the password).
    AllBut(DeviceId),
    /// None.
    Nobody,
}

/// A password-reset code waiting to be typed back (one per account; a new one replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetCodeRecord {
    pub account_id: AccountId,
    /// Salted SHA-256 of the code, as the identity codes are kept.
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
    /// Wrong tries so far.
    pub attempts: u32,
}

/// Accounts and devices.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// `Conflict::Username` / `Conflict::Email` when taken.
    async fn create_account(&self, account: NewAccount) -> StoreResult<()>;
    /// On SQLite a lookup that does not wait for the disk (see `sqlite/durability.rs`): a
    /// reply that carries the account must also make a read that does, after this one.
    async fn account(&self, id: AccountId) -> StoreResult<Option<AccountRecord>>;
    /// `username` lower case, without `@`.
    async fn account_by_username(&self, username: &str) -> StoreResult<Option<AccountRecord>>;
    async fn create_device(&self, device: NewDevice) -> StoreResult<()>;
    /// The live device holding this token, if any. May refresh `last_seen_at` (coarsely, so
    /// authentication does not turn every read into a write: see
    /// [`super::rules::last_seen_is_stale`]).
    async fn device_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceRecord>>;
    async fn devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>>;
    /// The token stops working at once. `NotFound` for another account's device.
    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()>;
    /// Replaces the password hash, signs devices out as `sign_out` says and drops a pending
    /// reset code, in one transaction. `NotFound` for no account.
    async fn set_password(
        &self,
        account: AccountId,
        password_hash: String,
        sign_out: SignOut,
    ) -> StoreResult<()>;
    /// Stores a new reset code for the account, replacing any pending one (tries start over).
    async fn put_reset_code(&self, code: ResetCodeRecord) -> StoreResult<()>;
    /// The pending reset code, if any.
    async fn reset_code(&self, account: AccountId) -> StoreResult<Option<ResetCodeRecord>>;
    /// Counts one try at the pending reset code (atomically, before the code is compared)
    /// and returns the tries so far. `NotFound` when no code is pending.
    async fn count_failed_reset(&self, account: AccountId) -> StoreResult<u32>;
    /// Deletes the account and every row of it (devices, identities, conversations,
    /// messages, events, contacts, queued sends, reset code). Its number stays in the
    /// inventory without an owner, claimable again from `number_available_at`.
    /// `NotFound` for no account.
    async fn delete_account(
        &self,
        account: AccountId,
        number_available_at: DateTime<Utc>,
    ) -> StoreResult<()>;
}
