//! Numbers (DIDs): the inventory carriers bring, and which account owns which number.

use airtext_api::AccountId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// A number a carrier brings into the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryNumber {
    /// E.164.
    pub number: String,
    /// The carrier's configured name.
    pub carrier: String,
    /// ISO 3166 alpha-2, upper case.
    pub country: String,
}

/// A number bought from a carrier, with the carrier's id for it (Twilio's `PN…` sid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoughtNumber {
    pub number: String,
    pub carrier_sid: String,
}

#[derive(Debug, Clone)]
pub struct NumberSearch {
    pub country: String,
    /// An E.164 prefix the number must start with, e.g. `+1415` for area code 415.
    pub prefix: Option<String>,
    pub limit: u32,
    /// Numbers released before `now - quarantine` are claimable again; the store compares
    /// against each number's `available_at`.
    pub now: DateTime<Utc>,
}

/// The number inventory and its owners.
#[async_trait]
pub trait NumberStore: Send + Sync {
    /// Idempotent: numbers already in the inventory are left as they are.
    async fn add_inventory(&self, numbers: &[InventoryNumber]) -> StoreResult<()>;
    /// Unowned numbers out of quarantine, in number order.
    async fn available_numbers(&self, search: NumberSearch) -> StoreResult<Vec<String>>;
    /// `NotFound` if not in the inventory; `Conflict::NumberTaken` if owned or quarantined;
    /// `Conflict::AlreadyHasNumber` if the account has one ([`super::rules::may_claim_number`]).
    async fn claim_number(
        &self,
        account: AccountId,
        number: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Releases the account's number; nobody can claim it before `available_at`.
    /// `NotFound` if the account does not own it.
    async fn release_number(
        &self,
        account: AccountId,
        number: &str,
        available_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn number_owner(&self, number: &str) -> StoreResult<Option<AccountId>>;
    /// The carrier that brought `number` into the inventory (`None`: not in it).
    async fn number_carrier(&self, number: &str) -> StoreResult<Option<String>>;
    /// Puts a number just bought from `number.carrier` in the inventory, unowned and
    /// claimable, with the carrier's id for it. A number already there keeps its owner and
    /// quarantine and takes the new id.
    async fn add_bought_number(
        &self,
        number: &InventoryNumber,
        carrier_sid: &str,
    ) -> StoreResult<()>;
    /// Bought numbers of `carrier` nobody owns whose quarantine ended by `now` (at most
    /// `limit`, longest free first), each held out of every search and claim until
    /// `hold_until` while it goes back, so no one claims it then and no other node takes it.
    async fn hold_numbers_to_give_back(
        &self,
        carrier: &str,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<BoughtNumber>>;
    /// Removes a number its carrier took back: only while nobody owns it and it still has that
    /// carrier id. Returns whether it was removed.
    async fn forget_given_back_number(&self, number: &str, carrier_sid: &str) -> StoreResult<bool>;
}
