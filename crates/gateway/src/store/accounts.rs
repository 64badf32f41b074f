//! Accounts and their devices: who may sign in, and the tokens that authenticate each device.

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
}
