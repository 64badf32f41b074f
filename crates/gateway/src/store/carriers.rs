//! What carriers tell the store: where a text went (the carrier's id and the cost),
//! delivery receipts, and outside phones' opt-outs (STOP / START).

use airtext_api::{MessageId, SendStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// Where an out-of-network message went (see [`CarrierStore::carrier_record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierRecord {
    pub carrier: String,
    pub carrier_message_id: String,
    /// What the send cost ([`super::rules::send_cost`]), when it was recorded.
    pub cost: Option<f64>,
}

/// A carrier's delivery receipt for one of its message ids (see
/// [`CarrierStore::apply_receipts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierReceipt {
    /// The carrier's configured name, as recorded on the message when it was sent.
    pub carrier: String,
    pub carrier_message_id: String,
    /// What the carrier says became of the message (`sent`, `delivered` or `failed`).
    pub status: SendStatus,
    /// Why it failed, in the carrier's words; kept only with a `failed` status.
    pub failure_reason: Option<String>,
    /// When the gateway received it: the time of the status change it makes, and what
    /// [`CarrierStore::expire_early_receipts`] measures a held receipt's age by.
    pub received_at: DateTime<Utc>,
}

/// What became of one [`CarrierReceipt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Applied to the message carrying its carrier id; `changed` when it moved the status
    /// (and appended a `message.status` event). A message deleted by its owner meanwhile
    /// counts as applied, unchanged: there is nothing left to update.
    Applied {
        message_id: MessageId,
        changed: bool,
    },
    /// No message carries that id yet (the receipt overtook the record of its send): held
    /// in the store until the send outcome recording the id commits.
    Held,
}

/// Carrier records, receipts and opt-outs.
#[async_trait]
pub trait CarrierStore: Send + Sync {
    /// The message a carrier knows by this id (for receipts).
    async fn message_by_carrier_id(
        &self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<MessageId>>;
    /// The carrier, carrier id and cost recorded on a message; `None` until a carrier took it
    /// (and for unknown ids). Operators' and tests' view: no account scope.
    async fn carrier_record(&self, message_id: MessageId) -> StoreResult<Option<CarrierRecord>>;
    /// Records (`opted_out: true`) or clears that the outside number `remote` asked our DID
    /// `did` to stop texting it. Both are E.164 (or a short code as received). Idempotent.
    async fn set_opt_out(
        &self,
        did: &str,
        remote: &str,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Whether `remote` has opted out of texts from `did`.
    async fn opted_out(&self, did: &str, remote: &str) -> StoreResult<bool>;
    /// Applies `receipts` in one transaction, in order, answering one outcome per receipt:
    /// each moves the message that carries its `(carrier, carrier_message_id)` forward
    /// ([`super::rules::status_change`], appending an event for a real change), or is held
    /// when no message carries that id yet; the `Sent` [`super::OutboundStore::finish_outbound`]
    /// recording the id applies held receipts in its own transaction
    /// ([`super::rules::held_receipts`]). A repeated receipt changes nothing. All or nothing:
    /// on an error nothing of the batch is stored.
    async fn apply_receipts(&self, receipts: &[CarrierReceipt])
        -> StoreResult<Vec<ReceiptOutcome>>;
    /// Deletes held receipts received before `received_before` (their send was never
    /// recorded, and never will be); the number deleted.
    async fn expire_early_receipts(&self, received_before: DateTime<Utc>) -> StoreResult<u64>;
}
