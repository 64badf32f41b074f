//! The replication log: each account's events, in seq order, as its devices pull them.

use airtext_api::sync::SyncEvent;
use airtext_api::AccountId;
use async_trait::async_trait;

use super::StoreResult;

/// An account's log moved: devices of `account_id` should pull up to `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogAdvanced {
    pub account_id: AccountId,
    pub seq: i64,
}

/// Reading the replication log (events are appended by the writes that make them).
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Events with `seq > after`, oldest first, at most `limit`; and whether more remain.
    async fn events_after(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<SyncEvent>, bool)>;
    /// The account's newest seq (0 when its log is empty).
    async fn last_seq(&self, account: AccountId) -> StoreResult<i64>;
}
