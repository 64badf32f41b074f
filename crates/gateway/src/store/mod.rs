//! The gateway's storage: one narrow [`Store`] trait, two engines.
//!
//! - [`sqlite`]: the embedded default, driven through `rusqlite`. One writer thread owns the
//!   only write connection and commits many concurrent writes in one transaction (group
//!   commit); one failing write never takes its neighbours down (the group is re-run with a
//!   savepoint per write). Reads use separate read-only connections. A write's future resolves
//!   only after the commit that holds it is on disk (a syncer thread flushes the WAL before it
//!   answers a group; `sqlite/durability.rs`), so a 201 is never sent for a message that a
//!   crash could lose, and no reply or synced seq carries data that is not on disk.
//! - [`postgres`]: the engine for scale; ordinary transactions.
//!
//! Invariants every implementation keeps (checked by the conformance suite in
//! `tests/store_conformance.rs`, run on both engines):
//! - every change a device must mirror appends an event to the account's log in the same
//!   transaction; `seq` comes from a per-account counter row that the transaction updates, so
//!   seqs of one account become visible strictly in order (never 5 before 4);
//! - `(account, client_id)` is unique: repeating a send returns the first message;
//! - message status only moves forward, through [`airtext_api::SendStatus::advance`];
//! - every read and write is scoped by the account that asks, so another account's ids are
//!   simply not found;
//! - a carrier receipt is never lost once [`Store::apply_receipts`] answers: it moved its
//!   message (forward only), or no message carried its carrier id yet and it is held in the
//!   store; the [`Store::finish_outbound`] that records that id applies what is held for it
//!   in the same transaction, and the two are ordered against each other (on PostgreSQL by
//!   a transaction-level advisory lock on `(carrier, carrier id)`), so no receipt falls
//!   between them. Held receipts nobody claims leave through [`Store::expire_early_receipts`];
//! - after a commit that appended events, [`Store::subscribe`] receivers hear of it.

pub mod postgres;
mod rows;
pub mod rules;
pub mod sqlite;

use std::sync::Arc;

use airtext_api::contacts::Contact;
use airtext_api::conversations::Conversation;
use airtext_api::identities::{IdentityKind, IdentityStatus};
use airtext_api::messages::{Direction, Encoding, Message, Route};
use airtext_api::sync::SyncEvent;
use airtext_api::{
    AccountId, ClientId, ConversationId, DeviceId, IdentityId, MessageId, SendStatus,
};
use airtext_sms::Address;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

pub type StoreResult<T> = Result<T, StoreError>;

/// What can go wrong in a store. `Conflict` and `NotFound` are the caller's business (they
/// become 409/404); the rest are the operator's (logged, a 5xx without detail).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    #[error("not found")]
    NotFound,
    /// An enqueued delivery whose recipient replied STOP to the sender's number: nothing
    /// was stored.
    #[error("the recipient opted out of texts from this number")]
    OptedOut,
    #[error("the store is shutting down or unreachable: {0}")]
    Unavailable(String),
    /// The database file is another store's (see `sqlite::conn::own_file`); only at open.
    #[error("{0}")]
    InUse(String),
    #[error("stored data is not what this version expects: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(sqlx::Error),
    /// SQLite, driven directly (see [`sqlite`]).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    /// A lost or refused connection is the database being away, not a bug: it becomes
    /// `Unavailable` (a 503 the client retries), whichever call met it first.
    fn from(error: sqlx::Error) -> Self {
        if is_connection_lost(&error) {
            StoreError::Unavailable(format!("the database connection failed: {error}"))
        } else {
            StoreError::Database(error)
        }
    }
}

/// An address whose DID or verified identity names an account that no longer exists.
/// Accounts are never deleted while they hold either, so this is the store's inconsistency.
fn owner_gone(address: &Address, owner: AccountId) -> StoreError {
    StoreError::Corrupt(format!(
        "{address} belongs to account {owner}, which is gone"
    ))
}

/// I/O and pool failures, and the server's own "going away" errors: SQLSTATE class 08
/// (connection exception) and 57P01–57P03 (admin shutdown, crash shutdown, cannot connect
/// now).
fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Username,
    Email,
    /// The number belongs to someone else or is in quarantine.
    NumberTaken,
    /// The account already has a number.
    AlreadyHasNumber,
}

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
/// delivery). Applied through `SendStatus::advance`; a report that would not move the
/// message forward changes nothing and appends no event ([`rules::status_change`]).
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
    /// carrier, its id for the text and what the send cost ([`rules::send_cost`]; `None`
    /// when unknown) are recorded on the message.
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

/// Where an out-of-network message went (see [`Store::carrier_record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierRecord {
    pub carrier: String,
    pub carrier_message_id: String,
    /// What the send cost by the carrier's rate table (cost per segment × segments), when
    /// it was recorded.
    pub cost: Option<f64>,
}

/// A carrier's delivery receipt for one of its message ids (see [`Store::apply_receipts`]).
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
    /// [`Store::expire_early_receipts`] measures a held receipt's age by.
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

/// An account's log moved: devices of `account_id` should pull up to `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogAdvanced {
    pub account_id: AccountId,
    pub seq: i64,
}

/// Everything the gateway stores. Both engines implement it; the conformance suite holds them
/// to the same behaviour.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Answers when the database does (health checks).
    async fn ping(&self) -> StoreResult<()>;

    /// Hears of every commit that appended events (on PostgreSQL, from every node).
    fn subscribe(&self) -> broadcast::Receiver<LogAdvanced>;

    /// Moves when announcements may have been lost (on PostgreSQL: the listener connection was
    /// re-established): every stream should re-read its account's `last_seq`. `None` for an
    /// engine that never loses one (SQLite's in-process channel).
    fn resyncs(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Flushes pending writes and closes the connections. Writes after this fail with
    /// `Unavailable`.
    async fn close(&self);

    // ----- accounts and devices -----
    /// `Conflict::Username` / `Conflict::Email` when taken.
    async fn create_account(&self, account: NewAccount) -> StoreResult<()>;
    /// On SQLite a lookup that does not wait for the disk (see `sqlite/durability.rs`): a
    /// reply that carries the account must also make a read that does, after this one.
    async fn account(&self, id: AccountId) -> StoreResult<Option<AccountRecord>>;
    /// `username` lower case, without `@`.
    async fn account_by_username(&self, username: &str) -> StoreResult<Option<AccountRecord>>;
    async fn create_device(&self, device: NewDevice) -> StoreResult<()>;
    /// The live device holding this token, if any. May refresh `last_seen_at` (coarsely, so
    /// authentication does not turn every read into a write).
    async fn device_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceRecord>>;
    async fn devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>>;
    /// The token stops working at once. `NotFound` for another account's device.
    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()>;

    // ----- numbers (DIDs) -----
    /// Idempotent: numbers already in the inventory are left as they are.
    async fn add_inventory(&self, numbers: &[InventoryNumber]) -> StoreResult<()>;
    /// Unowned numbers out of quarantine, in number order.
    async fn available_numbers(&self, search: NumberSearch) -> StoreResult<Vec<String>>;
    /// `NotFound` if not in the inventory; `Conflict::NumberTaken` if owned or quarantined;
    /// `Conflict::AlreadyHasNumber` if the account has one.
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

    // ----- identities -----
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
    /// newest proof of possession wins, and any other account's verified claim to the same
    /// `(kind, value)` goes back to pending.
    async fn mark_verified(
        &self,
        account: AccountId,
        id: IdentityId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The account that has verified `(kind, value)`, if any.
    async fn verified_owner(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<AccountId>>;

    /// The account an address leads to in-network, if any: for a phone number the owner of
    /// that DID, else the account that verified it; for `@username` that account; for an
    /// e-mail address the account that verified it; for a short code none. A lookup (on
    /// SQLite it does not wait for the disk), as [`Store::account`].
    ///
    /// Engines may read it in one go; this composition of the point reads above is the
    /// definition every engine must agree with.
    async fn addressee(&self, address: &Address) -> StoreResult<Option<AccountRecord>> {
        let owner = match address {
            Address::Phone(number) => match self.number_owner(number).await? {
                Some(owner) => Some(owner),
                None => self.verified_owner(IdentityKind::Phone, number).await?,
            },
            Address::ShortCode(_) => None,
            Address::Username(_) => {
                let name = address.username().unwrap_or_default();
                return self.account_by_username(name).await;
            }
            Address::Email(email) => self.verified_owner(IdentityKind::Email, email).await?,
        };
        match owner {
            None => Ok(None),
            Some(owner) => self
                .account(owner)
                .await?
                .map(Some)
                .ok_or_else(|| owner_gone(address, owner)),
        }
    }

    /// What a send reads before it writes: the sender's account and [`Store::addressee`] of
    /// `to`, together (SQLite reads both in one snapshot, so a send costs one read
    /// transaction instead of three or four).
    async fn sender_and_addressee(
        &self,
        sender: AccountId,
        to: &Address,
    ) -> StoreResult<(Option<AccountRecord>, Option<AccountRecord>)> {
        Ok((self.account(sender).await?, self.addressee(to).await?))
    }

    // ----- messages and conversations -----
    /// Stores a delivery's copies, their events and (`enqueue`) its queue entry at once. A
    /// repeated `client_id` answers with the first message and stores nothing, before
    /// anything else is checked. An enqueued copy whose `to` opted out of its `from`
    /// ([`Store::set_opt_out`]) is refused with [`StoreError::OptedOut`]: the check is part
    /// of the write, so a STOP stored before the send is never missed.
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
    /// Most recently updated first; `before` is an exclusive `updated_at` bound.
    async fn conversations(
        &self,
        account: AccountId,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<Conversation>>;
    async fn conversation(
        &self,
        account: AccountId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>>;
    /// Moves the read marker forward to `up_to` (never back) and appends `conversation.read`.
    /// `NotFound` if the conversation or the message (in it) is not this account's.
    async fn mark_read(
        &self,
        account: AccountId,
        conversation: ConversationId,
        up_to: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Deletes this account's copy (only) and appends `message.deleted`. `NotFound` as usual.
    async fn delete_message(
        &self,
        account: AccountId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    // ----- contacts -----
    /// Creates or replaces the setting and appends `contact.updated`.
    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()>;
    async fn contacts(&self, account: AccountId) -> StoreResult<Vec<Contact>>;

    // ----- replication log -----
    /// Events with `seq > after`, oldest first, at most `limit`; and whether more remain.
    async fn events_after(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<SyncEvent>, bool)>;
    /// The account's newest seq (0 when its log is empty).
    async fn last_seq(&self, account: AccountId) -> StoreResult<i64>;

    // ----- outbound queue -----
    /// Leases up to `limit` due jobs (not leased, or whose lease expired) until `lease_until`.
    /// A job leased by one worker is not handed to another before its lease ends.
    async fn claim_outbound(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<OutboundJob>>;
    /// Ends or reschedules a claimed job and records the status change (with its event).
    /// `Sent` records the carrier, its id and the cost on the message (whether or not a
    /// receipt already moved its status further) and applies, in the same transaction, the
    /// receipts held for that carrier id (see [`Store::apply_receipts`]).
    async fn finish_outbound(
        &self,
        message_id: MessageId,
        outcome: OutboundOutcome,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The message a carrier knows by this id (for receipts).
    async fn message_by_carrier_id(
        &self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<MessageId>>;

    // ----- least-cost routing and opt-outs -----
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

    // ----- carrier receipts -----
    /// Applies `receipts` in one transaction, in order, answering one outcome per receipt:
    /// each moves the message that carries its `(carrier, carrier_message_id)` forward
    /// (through `SendStatus::advance`, appending an event for a real change), or is held
    /// when no message carries that id yet; the `Sent` [`Store::finish_outbound`] recording
    /// the id applies held receipts in its own transaction. A repeated receipt changes
    /// nothing. All or nothing: on an error nothing of the batch is stored.
    async fn apply_receipts(&self, receipts: &[CarrierReceipt])
        -> StoreResult<Vec<ReceiptOutcome>>;
    /// Deletes held receipts received before `received_before` (their send was never
    /// recorded, and never will be); the number deleted.
    async fn expire_early_receipts(&self, received_before: DateTime<Utc>) -> StoreResult<u64>;
}

pub type SharedStore = Arc<dyn Store>;

/// Whether `database_url` names PostgreSQL: the engine several nodes can share, so what must
/// hold across nodes (rate limits, SMPP bind slots) lives in it.
pub fn is_postgres(database_url: &str) -> bool {
    database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
}

/// Opens the store a URL names (`sqlite://path`, `sqlite::memory:`, `postgres://…`) and runs
/// its migrations.
pub async fn open(database_url: &str) -> StoreResult<SharedStore> {
    if is_postgres(database_url) {
        Ok(Arc::new(postgres::PostgresStore::open(database_url).await?))
    } else if database_url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(database_url).await?))
    } else {
        Err(StoreError::Unavailable(format!(
            "unsupported database URL {database_url:?}: use sqlite://PATH or postgres://…"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_unavailable_not_a_bug() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            StoreError::from(sqlx::Error::Io(reset)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        // A query that is simply wrong stays the operator's bug.
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Database(_)
        ));
    }
}
