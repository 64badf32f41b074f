//! The gateway's storage: one [`Store`] trait made of one trait per resource, two engines.
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
//! - message status only moves forward, through [`rules::status_change`];
//! - every read and write is scoped by the account that asks, so another account's ids are
//!   simply not found;
//! - a carrier receipt is never lost once [`CarrierStore::apply_receipts`] answers: it moved
//!   its message (forward only), or no message carried its carrier id yet and it is held in
//!   the store; the [`OutboundStore::finish_outbound`] that records that id applies what is
//!   held for it in the same transaction, and the two are ordered against each other (on
//!   PostgreSQL by a transaction-level advisory lock on `(carrier, carrier id)`), so no
//!   receipt falls between them. Held receipts nobody claims leave through
//!   [`CarrierStore::expire_early_receipts`];
//! - after a commit that appended events, [`Store::subscribe`] receivers hear of it.
//!
//! # Where things live, and how to add a resource
//!
//! Each resource has one file here holding its record types and its trait (`accounts.rs`
//! with [`AccountStore`], `messages.rs` with [`MessageStore`], …); [`Store`] is every
//! resource trait plus the engine's own methods (ping, subscribe, resyncs, close). Callers
//! hold a [`SharedStore`], whose trait object answers every resource's methods; code that
//! holds an engine itself (or is generic over one) imports the traits with
//! `use crate::store::prelude::*`.
//! Every domain rule (how a status report moves a message, where a read marker goes, what a
//! send costs, who may verify an identity, …) is a pure function in [`rules`], called by both
//! engines, never written again inside one. Each engine has one file per resource beside
//! the resource's file here: `sqlite/<resource>.rs` holds that resource's reads (its
//! `impl <Resource>Store for SqliteStore`) and its writer operations (its own `Op` enum and
//! `execute`); `postgres/<resource>.rs` holds its `impl <Resource>Store for PostgresStore`.
//!
//! To add a resource `widgets`:
//! 1. `store/widgets.rs`: the records and `trait WidgetStore: Send + Sync`; declare the
//!    module below, re-export its types, add `WidgetStore` to [`Store`]'s supertraits and to
//!    [`prelude`];
//! 2. a migration for each new table in both `migrations/sqlite` and `migrations/postgres`;
//! 3. any rule the resource adds goes into [`rules`], with its unit tests there;
//! 4. `sqlite/widgets.rs`: `enum Op` (with `changes_accounts`, no catch-all arm: see
//!    `sqlite/cache.rs`), `execute`, and `impl WidgetStore for SqliteStore`; then one line
//!    each in `sqlite/writer.rs`'s `Op`, `Op::changes_accounts` and `execute` (and an `Out`
//!    variant if its writes answer something new);
//! 5. `postgres/widgets.rs`: `impl WidgetStore for PostgresStore`, writes through
//!    `PostgresStore::begin` / `commit` so events reach the log and other nodes;
//! 6. tests in `tests/store_conformance.rs`, which runs each on both engines.

mod accounts;
mod addressees;
mod carriers;
mod contacts;
mod conversations;
mod identities;
mod log;
mod messages;
mod numbers;
mod outbound;
pub mod postgres;
mod rows;
pub mod rules;
pub mod sqlite;

use std::sync::Arc;

use airtext_api::identities::IdentityKind;
use async_trait::async_trait;
use tokio::sync::broadcast;

pub use accounts::{
    AccountRecord, AccountStore, DeviceRecord, NewAccount, NewDevice, ResetCodeRecord, SignOut,
    TokenHash,
};
pub use addressees::AddresseeStore;
pub use carriers::{CarrierReceipt, CarrierRecord, CarrierStore, ReceiptOutcome};
pub use contacts::ContactStore;
pub use conversations::ConversationStore;
pub use identities::{IdentityRecord, IdentityStore, NewIdentityCode};
pub use log::{LogAdvanced, LogStore};
pub use messages::{
    Delivered, Delivery, Enqueue, MessageStore, NewMessage, StatusOutcome, StatusUpdate,
};
pub use numbers::{BoughtNumber, InventoryNumber, NumberSearch, NumberStore};
pub use outbound::{OutboundBacklog, OutboundJob, OutboundOutcome, OutboundStore};

/// Every store trait at once: `use crate::store::prelude::*` makes each resource's methods
/// callable on an engine (`SqliteStore`, `PostgresStore`) or a generic `S: Store`. (A
/// [`SharedStore`] needs no import: a trait object has its supertraits' methods.)
pub mod prelude {
    pub use super::{
        AccountStore, AddresseeStore, CarrierStore, ContactStore, ConversationStore, IdentityStore,
        LogStore, MessageStore, NumberStore, OutboundStore, SharedStore, Store,
    };
}

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
    /// Another account has verified this phone number or e-mail address.
    IdentityTaken(IdentityKind),
}

/// Everything the gateway stores: each resource's trait, and the engine's own methods. Both
/// engines implement it; the conformance suite holds them to the same behaviour.
#[async_trait]
pub trait Store:
    AccountStore
    + NumberStore
    + IdentityStore
    + AddresseeStore
    + MessageStore
    + ConversationStore
    + ContactStore
    + LogStore
    + OutboundStore
    + CarrierStore
    + std::fmt::Debug
    + 'static
{
    /// Answers when the database does and can write (health checks): a store whose writes
    /// fail for lack of storage (a full disk, a read-only database) answers `Unavailable`
    /// with the reason, until a write succeeds again.
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
