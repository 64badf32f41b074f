//! Identities: phone numbers and e-mail addresses an account proves it holds, by a code.

use airtext_api::identities::{IdentityKind, IdentityStatus};
use airtext_api::{AccountId, IdentityId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub id: IdentityId,
    pub account_id: AccountId,
    pub kind: IdentityKind,
    /// Normalised (E.164 / lower-case e-mail).
    pub value: String,
    pub status: IdentityStatus,
    /// Hash of the pending code (see `http::identities`); `None` once verified.
    pub code_hash: Option<String>,
    pub code_expires_at: Option<DateTime<Utc>>,
    /// Wrong codes typed against the current code.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
}

/// A fresh code for `(account, kind, value)`: creates the pending identity, or replaces the
/// code of the existing one (resetting its attempts). `id` is used only when creating.
/// Refused with `Conflict::IdentityTaken` when another account has verified the value
/// (see [`rules::may_claim_identity`](super::rules::may_claim_identity)).
#[derive(Debug, Clone)]
pub struct NewIdentityCode {
    pub id: IdentityId,
    pub account_id: AccountId,
    pub kind: IdentityKind,
    pub value: String,
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// Identities and their verification.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn put_identity_code(&self, code: NewIdentityCode) -> StoreResult<IdentityId>;
    async fn identity(
        &self,
        account: AccountId,
        id: IdentityId,
    ) -> StoreResult<Option<IdentityRecord>>;
    async fn identities(&self, account: AccountId) -> StoreResult<Vec<IdentityRecord>>;
    /// Counts a wrong code; returns the attempts now recorded. `NotFound` as usual.
    async fn count_failed_attempt(&self, account: AccountId, id: IdentityId) -> StoreResult<u32>;
    /// Marks it verified and clears the code. A value verifies for one account at a time: the
    /// first proof of possession keeps it, and a later one from another account is refused
    /// with `Conflict::IdentityTaken` (the owner is never demoted).
    async fn mark_verified(
        &self,
        account: AccountId,
        id: IdentityId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Removes one identity of `account` (verified or not); `NotFound` when the account has
    /// no such identity. A value it had verified is then free for another account to verify.
    async fn remove_identity(&self, account: AccountId, id: IdentityId) -> StoreResult<()>;
    /// The account that has verified `(kind, value)`, if any.
    async fn verified_owner(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<AccountId>>;
}
