//! Messages: each account's copy of a text, stored with its events (and, for a carrier, its
//! queue entry) in one transaction, and their statuses.

use airtext_api::messages::{Direction, Encoding, Message, Route};
use airtext_api::{AccountId, ClientId, ConversationId, MessageId, SendStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// One account's copy of a message, before it is stored. The store finds or creates the
/// conversation `(account_id, peer)`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub account_id: AccountId,
    /// The normalised peer address: the conversation key.
    pub peer: String,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status: SendStatus,
    pub route: Route,
    pub client_id: Option<ClientId>,
    pub encoding: Encoding,
    pub segments: u32,
    pub created_at: DateTime<Utc>,
}

/// One send or one inbound message, stored atomically.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The sender's copy. When it has a `client_id` already used by that account, nothing is
    /// written and the first message is returned with `created: false`.
    pub sender: Option<NewMessage>,
    /// The recipient's copy: an in-network recipient, or an account receiving from outside.
    pub recipient: Option<NewMessage>,
    /// Put the sender's copy on the outbound queue for a carrier.
    pub enqueue: Option<Enqueue>,
}

/// How a delivery's sender copy joins the outbound queue.
#[derive(Debug, Clone, Copy, Default)]
pub struct Enqueue {
    /// Leased from the start, to the caller's own worker, which the caller hands the job in
    /// memory (no claim needed); until then, as for a claim. `None`: due at once for any
    /// worker's claim.
    pub leased_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Delivered {
    pub sender: Option<Message>,
    pub recipient: Option<Message>,
    /// `false` when the sender's `client_id` had been used: nothing new was stored.
    pub created: bool,
}

/// A status report for one message (from the queue worker, a carrier receipt, or in-network
/// delivery). Applied through [`super::rules::status_change`]; a report that would not move
/// the message forward changes nothing and appends no event.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub message_id: MessageId,
    pub status: SendStatus,
    pub failure_reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct StatusOutcome {
    pub message: Message,
    /// Whether the report moved the status (and appended a `message.status` event).
    pub changed: bool,
}

/// Messages.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores a delivery's copies, their events and (`enqueue`) its queue entry at once. A
    /// repeated `client_id` answers with the first message and stores nothing, before
    /// anything else is checked. An enqueued copy whose `to` opted out of its `from`
    /// ([`super::CarrierStore::set_opt_out`], [`super::rules::opt_out_to_check`]) is refused
    /// with [`super::StoreError::OptedOut`]: the check is part of the write, so a STOP stored
    /// before the send is never missed.
    /// A recipient copy whose account blocked its sender ([`super::rules::blocked_by`]) is
    /// not stored (`recipient: None`), checked in the same write.
    async fn deliver(&self, delivery: Delivery) -> StoreResult<Delivered>;
    async fn message(&self, account: AccountId, id: MessageId) -> StoreResult<Option<Message>>;
    /// `NotFound` if the message does not exist.
    async fn update_status(&self, update: StatusUpdate) -> StoreResult<StatusOutcome>;
    /// Newest first; `before` is exclusive.
    async fn messages(
        &self,
        account: AccountId,
        conversation: ConversationId,
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<Message>>;
    /// The account's messages whose body holds every one of `words` (the last one as the
    /// prefix of a word: type-ahead), newest first, older than `before` when given (`NotFound` when `before`
    /// is no message of the account). `words` come from [`super::rules::search_words`]:
    /// lower case, letters and digits only, at least one.
    async fn search_messages(
        &self,
        account: AccountId,
        words: &[String],
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<Message>>;
    /// Deletes this account's copy (only) and appends `message.deleted`. `NotFound` as usual.
    async fn delete_message(
        &self,
        account: AccountId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
}
