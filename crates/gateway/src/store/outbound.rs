//! The outbound queue: texts waiting for a carrier, leased to one worker at a time.

use airtext_api::{AccountId, MessageId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// An out-of-network message waiting for a carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundJob {
    pub message_id: MessageId,
    pub account_id: AccountId,
    pub from: String,
    pub to: String,
    pub body: String,
    /// Failed tries so far.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// How a claimed job ended.
#[derive(Debug, Clone)]
pub enum OutboundOutcome {
    /// The carrier took it: the job leaves the queue, the message becomes `sent`, and the
    /// carrier, its id for the text and what the send cost ([`super::rules::send_cost`];
    /// `None` when unknown) are recorded on the message.
    Sent {
        carrier: String,
        carrier_message_id: String,
        cost: Option<f64>,
    },
    /// Try again no earlier than `not_before` (the lease is released).
    Retry {
        not_before: DateTime<Utc>,
        reason: String,
    },
    /// Offer it again at `not_before` without counting an attempt (the lease is released):
    /// it was not tried, but left for another node (see `queue`).
    Defer {
        not_before: DateTime<Utc>,
        reason: String,
    },
    /// It will never go: the job leaves the queue, the message becomes `failed`.
    Failed { reason: String },
}

/// What waits in the outbound queue (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboundBacklog {
    /// Jobs in the queue, leased or not.
    pub jobs: u64,
    /// When the oldest of them was accepted.
    pub oldest: Option<DateTime<Utc>>,
}

/// The outbound queue.
#[async_trait]
pub trait OutboundStore: Send + Sync {
    /// Leases up to `limit` due jobs (not leased, or whose lease expired) until `lease_until`,
    /// oldest first. A job leased by one worker is not handed to another before its lease
    /// ends.
    async fn claim_outbound(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<OutboundJob>>;
    /// Ends or reschedules a claimed job and records the status change (with its event).
    /// `Sent` records the carrier, its id and the cost on the message (whether or not a
    /// receipt already moved its status further) and applies, in the same transaction, the
    /// receipts held for that carrier id (see [`super::CarrierStore::apply_receipts`]).
    async fn finish_outbound(
        &self,
        message_id: MessageId,
        outcome: OutboundOutcome,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// How many jobs the queue holds and how old the oldest is (every node's jobs).
    async fn outbound_backlog(&self) -> StoreResult<OutboundBacklog>;
}
