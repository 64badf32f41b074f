//! The engine for scale: PostgreSQL, ordinary transactions per call.
//!
//! - Seqs come from the account's `account_log` row, updated (and so locked until commit) by
//!   the transaction that appends the event; seqs of one account therefore commit strictly in
//!   order. A global sequence would let seq 5 commit before 4.
//! - Lock order, to keep concurrent writers free of deadlocks: conversation rows (sorted by
//!   account and peer) before `account_log` rows (sorted by account), and the log rows last.
//!   Receipts: advisory locks on `(carrier, carrier id)` (sorted by lock key) first, then
//!   message rows (sorted by id), then log rows (sorted by account). A deadlock that slips
//!   through anyway is PostgreSQL's to break; the router then stores the batch one by one.
//! - A receipt and the finish recording its carrier id both take the transaction-level
//!   advisory lock of that id before they look for each other: whichever commits first is
//!   seen by the other's next statement (READ COMMITTED), so a receipt that found no
//!   message is always in `early_receipts` when the finish looks there, on any node.
//! - Each transaction that appended events also sends `pg_notify('airtext_log',
//!   '<account>:<seq>')` (delivered at commit, to every node), and after commit publishes
//!   [`LogAdvanced`] on this node's broadcast.
//! - A listener task holds a dedicated connection that `LISTEN`s on [`NOTIFY_CHANNEL`] and
//!   republishes every node's notifications on the same broadcast (this node's own commits are
//!   heard again, and is dropped unless it is newer than what this node already published for
//!   the account). A channel is database-wide, so a store in a schema other than `public`
//!   uses its own channel, `airtext_log.<schema>` ([`notify_channel`]). When that
//!   connection is lost, the task reconnects with back-off and, once listening again, moves
//!   the [`Store::resyncs`] counter: notifications sent while it was away are gone, so every
//!   stream re-reads its account's `last_seq`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use airtext_api::contacts::Contact;
use airtext_api::conversations::Conversation;
use airtext_api::identities::IdentityKind;
use airtext_api::messages::{Direction, Message};
use airtext_api::sync::{EventKind, SyncEvent};
use airtext_api::{AccountId, ConversationId, DeviceId, IdentityId, MessageId, SendStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::rows::{self, corrupt, Cols};
use super::rules;
use super::{
    AccountRecord, CarrierReceipt, Conflict, Delivered, Delivery, DeviceRecord, IdentityRecord,
    InventoryNumber, LogAdvanced, NewAccount, NewDevice, NewIdentityCode, NewMessage, NumberSearch,
    OutboundJob, OutboundOutcome, ReceiptOutcome, StatusOutcome, StatusUpdate, Store, StoreError,
    StoreResult, TokenHash,
};

const MAX_CONNECTIONS: u32 = 32;
const LOG_CAPACITY: usize = 65_536;
/// The channel other nodes LISTEN on for log hints (in the `public` schema; see
/// [`notify_channel`]).
pub const NOTIFY_CHANNEL: &str = "airtext_log";
/// How many accounts' last published seqs a node remembers (to drop its own notifications
/// heard back); past this the memory is cleared, which only lets a harmless duplicate through.
const PUBLISHED_MEMORY: usize = 100_000;

/// The notification channel of a store whose tables live in `schema`.
pub fn notify_channel(schema: &str) -> String {
    if schema == "public" {
        NOTIFY_CHANNEL.to_owned()
    } else {
        format!("{NOTIFY_CHANNEL}.{schema}")
    }
}

/// Publishes [`LogAdvanced`] on this node's broadcast, dropping what is not newer than what
/// was already published for the account (a node hears its own NOTIFYs back).
#[derive(Debug, Clone)]
struct Publisher {
    log: broadcast::Sender<LogAdvanced>,
    published: Arc<Mutex<HashMap<AccountId, i64>>>,
}

impl Publisher {
    /// Whichever comes first, this node's own publish after commit or its NOTIFY heard back
    /// (both come after the commit), announces; the other is dropped.
    fn publish(&self, advanced: LogAdvanced) {
        let newer = {
            let mut published = self
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if published.len() >= PUBLISHED_MEMORY {
                published.clear();
            }
            let last = published.entry(advanced.account_id).or_insert(0);
            let newer = advanced.seq > *last;
            *last = (*last).max(advanced.seq);
            newer
        };
        if newer {
            let _ = self.log.send(advanced);
        }
    }
}

/// The listener connection's `application_name` (operators and tests find it by this).
pub const LISTENER_APPLICATION_NAME: &str = "airtext-listener";
/// Reconnection back-off of the listener: first and longest wait.
const LISTENER_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTENER_BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    log: broadcast::Sender<LogAdvanced>,
    publisher: Publisher,
    channel: String,
    resyncs: watch::Sender<u64>,
    closed: AtomicBool,
    /// Stops the listener task; its handle is awaited on close.
    listener_stop: CancellationToken,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    listener_pool: PgPool,
}

/// A write transaction and the logs it advanced.
struct Tx {
    tx: Transaction<'static, Postgres>,
    advanced: BTreeMap<AccountId, i64>,
}

impl Tx {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Appends one event: moves the account's counter (locking its row until commit) and
    /// inserts the event with that seq, in one statement.
    async fn append(
        &mut self,
        account: AccountId,
        at: DateTime<Utc>,
        kind: &EventKind,
    ) -> StoreResult<i64> {
        let payload = rows::event_payload(kind)?;
        let seq: i64 = sqlx::query_scalar(
            "WITH s AS (UPDATE account_log SET last_seq = last_seq + 1 WHERE account_id = $1 \
                        RETURNING last_seq) \
             INSERT INTO events (account_id, seq, at, type, payload) \
             SELECT $1, s.last_seq, $2, $3, $4 FROM s RETURNING seq",
        )
        .bind(account.0)
        .bind(at)
        .bind(kind.type_name())
        .bind(payload)
        .fetch_optional(&mut *self.tx)
        .await?
        .ok_or_else(|| corrupt(format!("account {account} has no log row")))?;
        let last = self.advanced.entry(account).or_insert(seq);
        *last = (*last).max(seq);
        Ok(seq)
    }
}

impl Cols for PgRow {
    fn uuid(&self, col: &str) -> StoreResult<Uuid> {
        self.try_get(col).map_err(corrupt)
    }
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        self.try_get(col).map_err(corrupt)
    }
    fn text(&self, col: &str) -> StoreResult<String> {
        self.try_get(col).map_err(corrupt)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.try_get(col).map_err(corrupt)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        self.try_get(col).map_err(corrupt)
    }
    fn boolean(&self, col: &str) -> StoreResult<bool> {
        self.try_get(col).map_err(corrupt)
    }
    fn time(&self, col: &str) -> StoreResult<DateTime<Utc>> {
        self.try_get(col).map_err(corrupt)
    }
    fn opt_time(&self, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.try_get(col).map_err(corrupt)
    }
}

fn closed_or(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolClosed => StoreError::Unavailable("the store is closed".into()),
        sqlx::Error::PoolTimedOut => StoreError::Unavailable("no database connection".into()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => corrupt(error),
        other => other.into(),
    }
}

impl PostgresStore {
    /// Connects to `postgres://…` (an `options=-c search_path=…` parameter selects a schema)
    /// and runs the migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        // No ping before each checkout: a send checks out a connection five times, and the
        // pings were a third of its round trips to the server. A connection that died while
        // idle (a server restart) fails the one call that gets it, as a retryable 503, and is
        // discarded; sends are idempotent by client_id, so the retry is safe.
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let (log, _) = broadcast::channel(LOG_CAPACITY);
        let publisher = Publisher {
            log: log.clone(),
            published: Arc::default(),
        };
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let channel = notify_channel(&schema);
        let (resyncs, _) = watch::channel(0u64);
        // One dedicated connection, outside the main pool, named so it can be found.
        let listener_options = (*pool.connect_options())
            .clone()
            .application_name(LISTENER_APPLICATION_NAME);
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(listener_options);
        // Listening before `open` returns: a commit after this is heard.
        let first = listen(&listener_pool, &channel).await?;
        let listener_stop = CancellationToken::new();
        let task = tokio::spawn(run_listener(
            first,
            listener_pool.clone(),
            channel.clone(),
            publisher.clone(),
            resyncs.clone(),
            listener_stop.clone(),
        ));
        Ok(PostgresStore {
            pool,
            log,
            publisher,
            channel,
            resyncs,
            closed: AtomicBool::new(false),
            listener_stop,
            listener: Mutex::new(Some(task)),
            listener_pool,
        })
    }

    fn pool(&self) -> StoreResult<&PgPool> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        Ok(&self.pool)
    }

    async fn begin(&self) -> StoreResult<Tx> {
        let tx = self.pool()?.begin().await.map_err(closed_or)?;
        Ok(Tx {
            tx,
            advanced: BTreeMap::new(),
        })
    }

    /// Commits; the NOTIFY rides in the transaction so other nodes hear only of committed
    /// events, and this node's subscribers hear after the commit.
    async fn commit(&self, mut tx: Tx) -> StoreResult<()> {
        if !tx.advanced.is_empty() {
            // One notification per account, all in one round trip.
            let payloads: Vec<String> = tx
                .advanced
                .iter()
                .map(|(account, seq)| format!("{account}:{seq}"))
                .collect();
            sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
                .bind(&self.channel)
                .bind(payloads)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.tx.commit().await?;
        for (account_id, seq) in tx.advanced {
            self.publisher.publish(LogAdvanced { account_id, seq });
        }
        Ok(())
    }
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is ours to re-establish (with back-off, then a resync).
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

/// Parses a `'<account uuid>:<seq>'` notification payload.
fn parse_notification(payload: &str) -> Option<LogAdvanced> {
    let (account, seq) = payload.split_once(':')?;
    let account_id = AccountId(Uuid::parse_str(account).ok()?);
    let seq = seq.parse::<i64>().ok()?;
    Some(LogAdvanced { account_id, seq })
}

/// Republishes notifications until `stop`; re-listens after a lost connection and then asks
/// every stream to resync.
async fn run_listener(
    first: PgListener,
    pool: PgPool,
    channel: String,
    publisher: Publisher,
    resyncs: watch::Sender<u64>,
    stop: CancellationToken,
) {
    let mut listener = Some(first);
    let mut backoff = LISTENER_BACKOFF_MIN;
    loop {
        let mut current = match listener.take() {
            Some(current) => current,
            None => {
                let connected = tokio::select! {
                    _ = stop.cancelled() => return,
                    connected = listen(&pool, &channel) => connected,
                };
                match connected {
                    Ok(current) => {
                        tracing::info!("log listener reconnected; every stream resyncs");
                        backoff = LISTENER_BACKOFF_MIN;
                        resyncs.send_modify(|n| *n = n.wrapping_add(1));
                        current
                    }
                    Err(error) => {
                        tracing::warn!(%error, ?backoff, "log listener cannot reconnect yet");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = backoff.saturating_mul(2).min(LISTENER_BACKOFF_MAX);
                        continue;
                    }
                }
            }
        };
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return,
                received = current.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => match parse_notification(notification.payload()) {
                    Some(advanced) => publisher.publish(advanced),
                    None => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a malformed log notification"
                    ),
                },
                Ok(None) => {
                    tracing::warn!("log listener lost its connection; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "log listener failed; reconnecting");
                    break;
                }
            }
        }
        drop(current);
        // A short pause even on the first retry, so a flapping server is not hammered.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LISTENER_BACKOFF_MIN) => {}
        }
    }
}

/// Stores one copy of a message, finding or creating its `(account, peer)` conversation and
/// recording the copy as its newest message, in one statement (one round trip; the
/// conversation row stays locked until commit). The conversation's id, or `None` when the
/// copy's `(account, client_id)` already exists (the caller then rolls the transaction back,
/// conversation update included).
async fn store_copy(conn: &mut PgConnection, copy: &NewMessage) -> StoreResult<Option<Uuid>> {
    let unread = i64::from(copy.direction == Direction::Inbound);
    let conversation: Option<Uuid> = sqlx::query_scalar(
        "WITH c AS ( \
             INSERT INTO conversations (id, account_id, peer, last_message_id, updated_at, \
                                        unread) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id, peer) DO UPDATE SET \
                 last_message_id = excluded.last_message_id, \
                 updated_at = greatest(conversations.updated_at, excluded.updated_at), \
                 unread = conversations.unread + excluded.unread \
             RETURNING id) \
         INSERT INTO messages (id, account_id, conversation_id, direction, from_addr, to_addr, \
                               body, status, route, client_id, encoding, segments, \
                               created_at, updated_at) \
         SELECT $4, $2, c.id, $7, $8, $9, $10, $11, $12, $13, $14, $15, $5, $5 FROM c \
         ON CONFLICT (account_id, client_id) DO NOTHING \
         RETURNING conversation_id",
    )
    .bind(ConversationId::new().0)
    .bind(copy.account_id.0)
    .bind(&copy.peer)
    .bind(copy.id.0)
    .bind(copy.created_at)
    .bind(unread)
    .bind(copy.direction.as_str())
    .bind(&copy.from)
    .bind(&copy.to)
    .bind(&copy.body)
    .bind(copy.status.as_str())
    .bind(copy.route.as_str())
    .bind(copy.client_id.map(|c| c.0))
    .bind(copy.encoding.as_str())
    .bind(i64::from(copy.segments))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(conversation)
}

async fn message_by_client_id(
    conn: &mut PgConnection,
    copy: &NewMessage,
) -> StoreResult<Option<Message>> {
    let Some(client_id) = copy.client_id else {
        return Ok(None);
    };
    let row = sqlx::query(&format!(
        "SELECT {} FROM messages m WHERE m.account_id = $1 AND m.client_id = $2",
        rows::MESSAGE_COLUMNS
    ))
    .bind(copy.account_id.0)
    .bind(client_id.0)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(rows::message).transpose()
}

/// Applies a status report through `SendStatus::advance` (locking the message row). `None`
/// when the message does not exist.
async fn apply_status(
    tx: &mut Tx,
    id: MessageId,
    incoming: SendStatus,
    failure_reason: Option<String>,
    at: DateTime<Utc>,
) -> StoreResult<Option<StatusOutcome>> {
    let Some(row) = sqlx::query(&format!(
        "SELECT m.account_id AS owner, {} FROM messages m WHERE m.id = $1 FOR UPDATE",
        rows::MESSAGE_COLUMNS
    ))
    .bind(id.0)
    .fetch_optional(tx.conn())
    .await?
    else {
        return Ok(None);
    };
    let account: AccountId = row.uuid("owner")?.into();
    let mut message = rows::message(&row)?;
    let Some(change) = rules::status_change(
        message.status,
        message.failure_reason.clone(),
        incoming,
        failure_reason,
    ) else {
        return Ok(Some(StatusOutcome {
            message,
            changed: false,
        }));
    };
    sqlx::query(
        "UPDATE messages SET status = $2, failure_reason = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id.0)
    .bind(change.status.as_str())
    .bind(&change.failure_reason)
    .bind(at)
    .execute(tx.conn())
    .await?;
    message.status = change.status;
    message.failure_reason.clone_from(&change.failure_reason);
    message.updated_at = at;
    let event = change.into_event(message.id, message.conversation_id, at);
    tx.append(account, at, &event).await?;
    Ok(Some(StatusOutcome {
        message,
        changed: true,
    }))
}

/// The advisory lock that orders a receipt against the finish recording its carrier id.
fn receipt_lock(carrier: &str, carrier_message_id: &str) -> String {
    format!("receipt:{carrier}:{carrier_message_id}")
}

/// Takes the transaction-level advisory locks of `keys`, in the order of the lock keys
/// themselves, so transactions taking several always take them in one order. (Volatile
/// functions in the select list run after the ORDER BY sort.)
async fn lock_receipts(tx: &mut Tx, keys: &[String]) -> StoreResult<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) \
         FROM (SELECT DISTINCT hashtextextended(x, 0) AS k FROM unnest($1::text[]) AS x) AS keys \
         ORDER BY k",
    )
    .bind(keys)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Applies (and removes) the receipts held for `(carrier, carrier_message_id)` to the message
/// just recorded with that id, oldest first. The caller holds the id's advisory lock.
async fn apply_early_receipts(
    tx: &mut Tx,
    message_id: MessageId,
    carrier: &str,
    carrier_message_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let found = sqlx::query(
        "DELETE FROM early_receipts WHERE carrier = $1 AND carrier_message_id = $2 \
         RETURNING status, reason, received_at",
    )
    .bind(carrier)
    .bind(carrier_message_id)
    .fetch_all(tx.conn())
    .await?;
    let mut held = Vec::with_capacity(found.len());
    for row in &found {
        held.push((
            row.time("received_at")?,
            row.text("status")?,
            row.opt_text("reason")?,
        ));
    }
    for receipt in rules::held_receipts(carrier, carrier_message_id, held, at) {
        apply_status(
            tx,
            message_id,
            receipt.status,
            receipt.failure_reason,
            receipt.at,
        )
        .await?;
    }
    Ok(())
}

fn account_conflict(error: sqlx::Error) -> StoreError {
    match rows::unique_violation(&error).and_then(|which| rules::account_conflict(&which)) {
        Some(conflict) => StoreError::Conflict(conflict),
        None => closed_or(error),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.pool()?)
            .await
            .map_err(closed_or)?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<LogAdvanced> {
        self.log.subscribe()
    }

    fn resyncs(&self) -> Option<watch::Receiver<u64>> {
        Some(self.resyncs.subscribe())
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.listener_stop.cancel();
        let task = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.listener_pool.close().await;
        // Waits for transactions in flight to return their connections.
        self.pool.close().await;
    }

    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, username, email, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(account.id.0)
        .bind(&account.username)
        .bind(&account.email)
        .bind(&account.password_hash)
        .bind(account.created_at)
        .execute(tx.conn())
        .await
        .map_err(account_conflict)?;
        sqlx::query("INSERT INTO account_log (account_id, last_seq) VALUES ($1, 0)")
            .bind(account.id.0)
            .execute(tx.conn())
            .await?;
        self.commit(tx).await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id WHERE a.id = $1",
            rows::ACCOUNT_COLUMNS
        ))
        .bind(id.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::account).transpose()
    }

    async fn account_by_username(&self, username: &str) -> StoreResult<Option<AccountRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id \
             WHERE a.username = $1",
            rows::ACCOUNT_COLUMNS
        ))
        .bind(username)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::account).transpose()
    }

    async fn create_device(&self, device: NewDevice) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO devices (id, account_id, name, has_cellular, token_hash, created_at, \
                                  last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(device.id.0)
        .bind(device.account_id.0)
        .bind(&device.name)
        .bind(device.has_cellular)
        .bind(&device.token_hash.0[..])
        .bind(device.created_at)
        .execute(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(())
    }

    async fn device_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(
            "SELECT id, account_id, name, has_cellular, created_at, last_seen_at \
             FROM devices WHERE token_hash = $1",
        )
        .bind(&token.0[..])
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        let Some(device) = row.as_ref().map(rows::device).transpose()? else {
            return Ok(None);
        };
        if rules::last_seen_is_stale(device.last_seen_at, now) {
            sqlx::query("UPDATE devices SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
                .bind(device.id.0)
                .bind(now)
                .execute(self.pool()?)
                .await
                .map_err(closed_or)?;
            return Ok(Some(DeviceRecord {
                last_seen_at: now,
                ..device
            }));
        }
        Ok(Some(device))
    }

    async fn devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>> {
        let found = sqlx::query(
            "SELECT id, account_id, name, has_cellular, created_at, last_seen_at \
             FROM devices WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account.0)
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::device).collect()
    }

    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND account_id = $2")
            .bind(device.0)
            .bind(account.0)
            .execute(self.pool()?)
            .await
            .map_err(closed_or)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn add_inventory(&self, numbers: &[InventoryNumber]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for n in numbers {
            sqlx::query(
                "INSERT INTO numbers (number, carrier, country) VALUES ($1, $2, $3) \
                 ON CONFLICT (number) DO NOTHING",
            )
            .bind(&n.number)
            .bind(&n.carrier)
            .bind(&n.country)
            .execute(tx.conn())
            .await?;
        }
        self.commit(tx).await
    }

    async fn available_numbers(&self, search: NumberSearch) -> StoreResult<Vec<String>> {
        let prefix = search.prefix.unwrap_or_default();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT number FROM numbers \
             WHERE country = $1 AND owner IS NULL AND available_at <= $2 \
               AND left(number, length($3)) = $3 \
             ORDER BY number LIMIT $4",
        )
        .bind(&search.country)
        .bind(search.now)
        .bind(&prefix)
        .bind(i64::from(search.limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(found)
    }

    async fn claim_number(
        &self,
        account: AccountId,
        number: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT owner, available_at > $2 AS quarantined FROM numbers WHERE number = $1 \
             FOR UPDATE",
        )
        .bind(number)
        .bind(now)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let owner = row.opt_uuid("owner")?.map(AccountId);
        rules::may_claim_number(account, owner, row.boolean("quarantined")?)?;
        // The unique owner column settles two claims by one account racing.
        sqlx::query("UPDATE numbers SET owner = $1 WHERE number = $2")
            .bind(account.0)
            .bind(number)
            .execute(tx.conn())
            .await
            .map_err(|e| match rows::unique_violation(&e) {
                Some(_) => StoreError::Conflict(Conflict::AlreadyHasNumber),
                None => e.into(),
            })?;
        self.commit(tx).await
    }

    async fn release_number(
        &self,
        account: AccountId,
        number: &str,
        available_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE numbers SET owner = NULL, available_at = $3 WHERE number = $1 AND owner = $2",
        )
        .bind(number)
        .bind(account.0)
        .bind(available_at)
        .execute(self.pool()?)
        .await
        .map_err(closed_or)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn number_owner(&self, number: &str) -> StoreResult<Option<AccountId>> {
        let owner: Option<Option<Uuid>> =
            sqlx::query_scalar("SELECT owner FROM numbers WHERE number = $1")
                .bind(number)
                .fetch_optional(self.pool()?)
                .await
                .map_err(closed_or)?;
        Ok(owner.flatten().map(Into::into))
    }

    async fn put_identity_code(&self, code: NewIdentityCode) -> StoreResult<IdentityId> {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO identities (id, account_id, kind, value, status, code_hash, \
                                     code_expires_at, attempts, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, 0, $7) \
             ON CONFLICT (account_id, kind, value) DO UPDATE SET \
                 code_hash = excluded.code_hash, code_expires_at = excluded.code_expires_at, \
                 attempts = 0 \
             RETURNING id",
        )
        .bind(code.id.0)
        .bind(code.account_id.0)
        .bind(code.kind.as_str())
        .bind(&code.value)
        .bind(&code.code_hash)
        .bind(code.expires_at)
        .bind(code.now)
        .fetch_one(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(id.into())
    }

    async fn identity(
        &self,
        account: AccountId,
        id: IdentityId,
    ) -> StoreResult<Option<IdentityRecord>> {
        let row = sqlx::query("SELECT * FROM identities WHERE id = $1 AND account_id = $2")
            .bind(id.0)
            .bind(account.0)
            .fetch_optional(self.pool()?)
            .await
            .map_err(closed_or)?;
        row.as_ref().map(rows::identity).transpose()
    }

    async fn identities(&self, account: AccountId) -> StoreResult<Vec<IdentityRecord>> {
        let found =
            sqlx::query("SELECT * FROM identities WHERE account_id = $1 ORDER BY created_at, id")
                .bind(account.0)
                .fetch_all(self.pool()?)
                .await
                .map_err(closed_or)?;
        found.iter().map(rows::identity).collect()
    }

    async fn count_failed_attempt(&self, account: AccountId, id: IdentityId) -> StoreResult<u32> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE identities SET attempts = attempts + 1 WHERE id = $1 AND account_id = $2 \
             RETURNING attempts",
        )
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        rows::to_u32(attempts.ok_or(StoreError::NotFound)?, "attempts")
    }

    async fn mark_verified(
        &self,
        account: AccountId,
        id: IdentityId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row =
            sqlx::query("SELECT kind, value FROM identities WHERE id = $1 AND account_id = $2")
                .bind(id.0)
                .bind(account.0)
                .fetch_optional(tx.conn())
                .await?
                .ok_or(StoreError::NotFound)?;
        let kind = row.text("kind")?;
        let value = row.text("value")?;
        // Verifications of one value take turns, so the newest wins without tripping the
        // partial unique index.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("identity:{kind}:{value}"))
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "UPDATE identities SET status = 'pending', verified_at = NULL \
             WHERE kind = $1 AND value = $2 AND status = 'verified' AND id <> $3",
        )
        .bind(&kind)
        .bind(&value)
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE identities SET status = 'verified', code_hash = NULL, \
                 code_expires_at = NULL, attempts = 0, verified_at = $2 \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(at)
        .execute(tx.conn())
        .await?;
        self.commit(tx).await
    }

    async fn verified_owner(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<AccountId>> {
        let owner: Option<Uuid> = sqlx::query_scalar(
            "SELECT account_id FROM identities \
             WHERE kind = $1 AND value = $2 AND status = 'verified'",
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(owner.map(Into::into))
    }

    async fn deliver(&self, delivery: Delivery) -> StoreResult<Delivered> {
        // No read for an earlier send first: a repeat is rare, and the unique index finds it
        // (committed, or committing beside us) in the same statement that stores the copy.
        let mut tx = self.begin().await?;
        // Copies (each locking its conversation row) in a fixed order, so two texts crossing
        // between the same accounts never lock each other's rows in opposite orders.
        let mut copies: Vec<(bool, &NewMessage)> = Vec::with_capacity(2);
        if let Some(copy) = &delivery.sender {
            copies.push((true, copy));
        }
        if let Some(copy) = &delivery.recipient {
            copies.push((false, copy));
        }
        copies.sort_by(|a, b| (a.1.account_id, &a.1.peer).cmp(&(b.1.account_id, &b.1.peer)));
        let mut sender = None;
        let mut recipient = None;
        for (is_sender, copy) in copies {
            let Some(conversation) = store_copy(tx.conn(), copy).await? else {
                if !is_sender {
                    return Err(corrupt("recipient copy repeats a client_id"));
                }
                // A repeat: drop our work and answer with the first send's message.
                tx.tx.rollback().await?;
                let mut conn = self.pool()?.acquire().await.map_err(closed_or)?;
                let first = message_by_client_id(&mut conn, copy)
                    .await?
                    .ok_or_else(|| corrupt("client_id conflict without a message"))?;
                return Ok(Delivered {
                    sender: Some(first),
                    recipient: None,
                    created: false,
                });
            };
            let stored = Some(rows::stored_message(copy, conversation.into()));
            if is_sender {
                sender = stored;
            } else {
                recipient = stored;
            }
        }
        let opt_out = rules::opt_out_to_check(&delivery);
        if let (Some(enqueue), Some(copy)) = (&delivery.enqueue, &delivery.sender) {
            // The opt-out check rides on the insert: no round trip of its own.
            let queued = sqlx::query(
                "INSERT INTO outbound (message_id, account_id, from_addr, to_addr, body, \
                                       attempts, not_before, lease_until, created_at) \
                 SELECT $1, $2, $3, $4, $5, 0, $6, $7, $6 \
                 WHERE NOT EXISTS (SELECT 1 FROM opt_outs WHERE did = $8 AND remote = $9)",
            )
            .bind(copy.id.0)
            .bind(copy.account_id.0)
            .bind(&copy.from)
            .bind(&copy.to)
            .bind(&copy.body)
            .bind(copy.created_at)
            .bind(enqueue.leased_until)
            .bind(opt_out.map(|(did, _)| did))
            .bind(opt_out.map(|(_, remote)| remote))
            .execute(tx.conn())
            .await?;
            if queued.rows_affected() == 0 {
                tx.tx.rollback().await?;
                return Err(StoreError::OptedOut);
            }
        }
        // Log rows last and in account order (see the module doc); within one account the
        // sender's copy first.
        let mut appends: Vec<(AccountId, u8, &NewMessage, &Message)> = Vec::with_capacity(2);
        if let (Some(copy), Some(message)) = (&delivery.sender, &sender) {
            appends.push((copy.account_id, 0, copy, message));
        }
        if let (Some(copy), Some(message)) = (&delivery.recipient, &recipient) {
            appends.push((copy.account_id, 1, copy, message));
        }
        appends.sort_by_key(|(account, order, _, _)| (*account, *order));
        for (account, _, copy, message) in appends {
            tx.append(
                account,
                copy.created_at,
                &EventKind::MessageCreated {
                    message: message.clone(),
                },
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(Delivered {
            sender,
            recipient,
            created: true,
        })
    }

    async fn message(&self, account: AccountId, id: MessageId) -> StoreResult<Option<Message>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM messages m WHERE m.id = $1 AND m.account_id = $2",
            rows::MESSAGE_COLUMNS
        ))
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::message).transpose()
    }

    async fn update_status(&self, update: StatusUpdate) -> StoreResult<StatusOutcome> {
        let mut tx = self.begin().await?;
        let outcome = apply_status(
            &mut tx,
            update.message_id,
            update.status,
            update.failure_reason,
            update.at,
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        self.commit(tx).await?;
        Ok(outcome)
    }

    async fn messages(
        &self,
        account: AccountId,
        conversation: ConversationId,
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<Message>> {
        let found = sqlx::query(&format!(
            "SELECT {} FROM messages m \
             WHERE m.conversation_id = $1 AND m.account_id = $2 \
               AND ($3::uuid IS NULL OR m.id < $3) \
             ORDER BY m.id DESC LIMIT $4",
            rows::MESSAGE_COLUMNS
        ))
        .bind(conversation.0)
        .bind(account.0)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::message).collect()
    }

    async fn conversations(
        &self,
        account: AccountId,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<Conversation>> {
        let found = sqlx::query(&format!(
            "SELECT {} FROM conversations c LEFT JOIN messages m ON m.id = c.last_message_id \
             WHERE c.account_id = $1 AND ($2::timestamptz IS NULL OR c.updated_at < $2) \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT $3",
            rows::CONVERSATION_COLUMNS
        ))
        .bind(account.0)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::conversation).collect()
    }

    async fn conversation(
        &self,
        account: AccountId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM conversations c LEFT JOIN messages m ON m.id = c.last_message_id \
             WHERE c.id = $1 AND c.account_id = $2",
            rows::CONVERSATION_COLUMNS
        ))
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        row.as_ref().map(rows::conversation).transpose()
    }

    async fn mark_read(
        &self,
        account: AccountId,
        conversation: ConversationId,
        up_to: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let in_conversation: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM messages WHERE id = $1 AND account_id = $2 AND conversation_id = $3",
        )
        .bind(up_to.0)
        .bind(account.0)
        .bind(conversation.0)
        .fetch_optional(tx.conn())
        .await?;
        if in_conversation.is_none() {
            return Err(StoreError::NotFound);
        }
        let current: Option<Uuid> = sqlx::query_scalar(
            "SELECT read_up_to FROM conversations WHERE id = $1 AND account_id = $2 FOR UPDATE",
        )
        .bind(conversation.0)
        .bind(account.0)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let marker = rules::read_marker(current.map(MessageId), up_to);
        // The count uses the new marker ($2), since SET expressions see the row's old values.
        let unread: i64 = sqlx::query_scalar(
            "UPDATE conversations SET read_up_to = $2, \
                 unread = (SELECT count(*) FROM messages m WHERE m.conversation_id = $1 \
                           AND m.direction = 'inbound' AND m.id > $2) \
             WHERE id = $1 RETURNING unread",
        )
        .bind(conversation.0)
        .bind(marker.0)
        .fetch_one(tx.conn())
        .await?;
        let event = rules::read_event(conversation, marker, rows::to_u32(unread, "unread")?);
        tx.append(account, at, &event).await?;
        self.commit(tx).await
    }

    async fn delete_message(
        &self,
        account: AccountId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let conversation: Uuid = sqlx::query_scalar(
            "DELETE FROM messages WHERE id = $1 AND account_id = $2 RETURNING conversation_id",
        )
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "UPDATE conversations c SET \
                 last_message_id = (SELECT m.id FROM messages m WHERE m.conversation_id = $1 \
                                    ORDER BY m.id DESC LIMIT 1), \
                 unread = (SELECT count(*) FROM messages m WHERE m.conversation_id = $1 \
                           AND m.direction = 'inbound' \
                           AND (c.read_up_to IS NULL OR m.id > c.read_up_to)) \
             WHERE c.id = $1",
        )
        .bind(conversation)
        .execute(tx.conn())
        .await?;
        tx.append(
            account,
            at,
            &EventKind::MessageDeleted {
                message_id: id,
                conversation_id: conversation.into(),
            },
        )
        .await?;
        self.commit(tx).await
    }

    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO contacts (account_id, address, path, fallback, name, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id, address) DO UPDATE SET path = excluded.path, \
                 fallback = excluded.fallback, name = excluded.name, \
                 updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(&contact.address)
        .bind(contact.path.as_str())
        .bind(contact.fallback)
        .bind(&contact.name)
        .bind(contact.updated_at)
        .execute(tx.conn())
        .await?;
        let at = contact.updated_at;
        tx.append(account, at, &EventKind::ContactUpdated { contact })
            .await?;
        self.commit(tx).await
    }

    async fn contacts(&self, account: AccountId) -> StoreResult<Vec<Contact>> {
        let found = sqlx::query(
            "SELECT address, path, fallback, name, updated_at FROM contacts \
             WHERE account_id = $1 ORDER BY address",
        )
        .bind(account.0)
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        found.iter().map(rows::contact).collect()
    }

    async fn events_after(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<SyncEvent>, bool)> {
        let found = sqlx::query(
            "SELECT seq, at, payload FROM events WHERE account_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(account.0)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        let (found, more) = rules::page(found, limit);
        let events = found
            .iter()
            .map(rows::event)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((events, more))
    }

    async fn last_seq(&self, account: AccountId) -> StoreResult<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM account_log WHERE account_id = $1")
                .bind(account.0)
                .fetch_optional(self.pool()?)
                .await
                .map_err(closed_or)?;
        Ok(seq.unwrap_or(0))
    }

    async fn claim_outbound(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<OutboundJob>> {
        let found = sqlx::query(
            "UPDATE outbound SET lease_until = $2 \
             WHERE message_id IN ( \
                 SELECT message_id FROM outbound \
                 WHERE not_before <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
                 ORDER BY not_before, created_at LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING message_id, account_id, from_addr, to_addr, body, attempts, created_at",
        )
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await
        .map_err(closed_or)?;
        let mut jobs = found
            .iter()
            .map(rows::outbound_job)
            .collect::<StoreResult<Vec<_>>>()?;
        rules::oldest_first(&mut jobs);
        Ok(jobs)
    }

    async fn finish_outbound(
        &self,
        message_id: MessageId,
        outcome: OutboundOutcome,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        match outcome {
            OutboundOutcome::Sent {
                carrier,
                carrier_message_id,
                cost,
            } => {
                // Before the message row, as `apply_receipts` takes them (lock order).
                lock_receipts(&mut tx, &[receipt_lock(&carrier, &carrier_message_id)]).await?;
                let job = sqlx::query("DELETE FROM outbound WHERE message_id = $1")
                    .bind(message_id.0)
                    .execute(tx.conn())
                    .await?;
                let recorded = sqlx::query(
                    "UPDATE messages SET carrier = $2, carrier_message_id = $3, cost = $4 \
                     WHERE id = $1",
                )
                .bind(message_id.0)
                .bind(&carrier)
                .bind(&carrier_message_id)
                .bind(cost)
                .execute(tx.conn())
                .await?;
                if job.rows_affected() == 0 && recorded.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                // A receipt may already have moved it past `sent`; advance decides.
                apply_status(&mut tx, message_id, SendStatus::Sent, None, at).await?;
                apply_early_receipts(&mut tx, message_id, &carrier, &carrier_message_id, at)
                    .await?;
            }
            OutboundOutcome::Retry {
                ref not_before,
                ref reason,
            }
            | OutboundOutcome::Defer {
                ref not_before,
                ref reason,
            } => {
                let attempt = i64::from(rules::counts_attempt(&outcome));
                let done = sqlx::query(
                    "UPDATE outbound SET attempts = attempts + $4, not_before = $2, \
                         lease_until = NULL, last_error = $3 \
                     WHERE message_id = $1",
                )
                .bind(message_id.0)
                .bind(not_before)
                .bind(reason)
                .bind(attempt)
                .execute(tx.conn())
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            OutboundOutcome::Failed { reason } => {
                let job = sqlx::query("DELETE FROM outbound WHERE message_id = $1")
                    .bind(message_id.0)
                    .execute(tx.conn())
                    .await?;
                let status =
                    apply_status(&mut tx, message_id, SendStatus::Failed, Some(reason), at).await?;
                if job.rows_affected() == 0 && status.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
        }
        self.commit(tx).await
    }

    async fn message_by_carrier_id(
        &self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<MessageId>> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE carrier = $1 AND carrier_message_id = $2 \
             ORDER BY id LIMIT 1",
        )
        .bind(carrier)
        .bind(carrier_message_id)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        Ok(id.map(Into::into))
    }

    async fn carrier_record(
        &self,
        message_id: MessageId,
    ) -> StoreResult<Option<super::CarrierRecord>> {
        let row = sqlx::query(
            "SELECT carrier, carrier_message_id, cost FROM messages \
             WHERE id = $1 AND carrier IS NOT NULL AND carrier_message_id IS NOT NULL",
        )
        .bind(message_id.0)
        .fetch_optional(self.pool()?)
        .await
        .map_err(closed_or)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(super::CarrierRecord {
            carrier: row.try_get("carrier").map_err(corrupt)?,
            carrier_message_id: row.try_get("carrier_message_id").map_err(corrupt)?,
            cost: row.try_get::<Option<f64>, _>("cost").map_err(corrupt)?,
        }))
    }

    async fn set_opt_out(
        &self,
        did: &str,
        remote: &str,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let query = if opted_out {
            sqlx::query(
                "INSERT INTO opt_outs (did, remote, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (did, remote) DO NOTHING",
            )
            .bind(did)
            .bind(remote)
            .bind(at)
        } else {
            sqlx::query("DELETE FROM opt_outs WHERE did = $1 AND remote = $2")
                .bind(did)
                .bind(remote)
        };
        query.execute(self.pool()?).await.map_err(closed_or)?;
        Ok(())
    }

    async fn opted_out(&self, did: &str, remote: &str) -> StoreResult<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM opt_outs WHERE did = $1 AND remote = $2")
                .bind(did)
                .bind(remote)
                .fetch_optional(self.pool()?)
                .await
                .map_err(closed_or)?;
        Ok(found.is_some())
    }

    async fn apply_receipts(
        &self,
        receipts: &[CarrierReceipt],
    ) -> StoreResult<Vec<ReceiptOutcome>> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let keys: Vec<String> = receipts
            .iter()
            .map(|r| receipt_lock(&r.carrier, &r.carrier_message_id))
            .collect();
        lock_receipts(&mut tx, &keys).await?;

        // The message of each id (the first by id, as `message_by_carrier_id` answers).
        let carriers: Vec<&str> = receipts.iter().map(|r| r.carrier.as_str()).collect();
        let ids: Vec<&str> = receipts
            .iter()
            .map(|r| r.carrier_message_id.as_str())
            .collect();
        let found = sqlx::query(
            "SELECT DISTINCT ON (r.carrier, r.cid) r.carrier, r.cid, m.id, m.account_id \
             FROM unnest($1::text[], $2::text[]) AS r(carrier, cid) \
             JOIN messages m ON m.carrier = r.carrier AND m.carrier_message_id = r.cid \
             ORDER BY r.carrier, r.cid, m.id",
        )
        .bind(&carriers)
        .bind(&ids)
        .fetch_all(tx.conn())
        .await?;
        let mut owners: HashMap<(String, String), (MessageId, AccountId)> = HashMap::new();
        for row in &found {
            owners.insert(
                (row.text("carrier")?, row.text("cid")?),
                (row.uuid("id")?.into(), row.uuid("account_id")?.into()),
            );
        }
        // Message rows in id order before any log row (see the lock order above).
        let mut locked: Vec<Uuid> = owners.values().map(|(id, _)| id.0).collect();
        locked.sort_unstable();
        locked.dedup();
        sqlx::query("SELECT id FROM messages WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&locked)
            .execute(tx.conn())
            .await?;

        let mut outcomes = vec![ReceiptOutcome::Held; receipts.len()];
        // Log rows in account order; one message's receipts keep their arrival order.
        let mut applying: Vec<(AccountId, MessageId, usize)> = Vec::new();
        let mut held: Vec<&CarrierReceipt> = Vec::new();
        for (index, receipt) in receipts.iter().enumerate() {
            let key = (receipt.carrier.clone(), receipt.carrier_message_id.clone());
            match owners.get(&key) {
                Some(&(message_id, account)) => applying.push((account, message_id, index)),
                None => held.push(receipt),
            }
        }
        applying.sort_by_key(|&(account, message_id, index)| (account.0, message_id.0, index));
        for (_, message_id, index) in applying {
            let Some(receipt) = receipts.get(index) else {
                continue;
            };
            let applied = apply_status(
                &mut tx,
                message_id,
                receipt.status,
                receipt.failure_reason.clone(),
                receipt.received_at,
            )
            .await?;
            if let Some(outcome) = outcomes.get_mut(index) {
                *outcome = ReceiptOutcome::Applied {
                    message_id,
                    changed: applied.is_some_and(|applied| applied.changed),
                };
            }
        }
        if !held.is_empty() {
            let carriers: Vec<&str> = held.iter().map(|r| r.carrier.as_str()).collect();
            let ids: Vec<&str> = held.iter().map(|r| r.carrier_message_id.as_str()).collect();
            let statuses: Vec<&str> = held.iter().map(|r| r.status.as_str()).collect();
            let reasons: Vec<Option<String>> =
                held.iter().map(|r| r.failure_reason.clone()).collect();
            let at: Vec<DateTime<Utc>> = held.iter().map(|r| r.received_at).collect();
            sqlx::query(
                "INSERT INTO early_receipts \
                     (carrier, carrier_message_id, status, reason, received_at) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                                      $5::timestamptz[]) \
                 ON CONFLICT (carrier, carrier_message_id, status) DO NOTHING",
            )
            .bind(&carriers)
            .bind(&ids)
            .bind(&statuses)
            .bind(&reasons)
            .bind(&at)
            .execute(tx.conn())
            .await?;
        }
        self.commit(tx).await?;
        Ok(outcomes)
    }

    async fn expire_early_receipts(&self, received_before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM early_receipts WHERE received_at < $1")
            .bind(received_before)
            .execute(self.pool()?)
            .await
            .map_err(closed_or)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn notification_payloads_parse_or_are_skipped() {
        let account = AccountId::new();
        assert_eq!(
            parse_notification(&format!("{account}:42")),
            Some(LogAdvanced {
                account_id: account,
                seq: 42
            })
        );
        for bad in [
            "",
            ":",
            "x:1",
            &format!("{account}"),
            &format!("{account}:"),
            &format!("{account}:1x"),
            "1:2:3",
        ] {
            assert_eq!(parse_notification(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channels_are_per_schema() {
        assert_eq!(notify_channel("public"), "airtext_log");
        assert_eq!(notify_channel("t_1"), "airtext_log.t_1");
    }

    #[test]
    fn a_node_drops_its_own_notifications_heard_back() {
        let (log, mut rx) = broadcast::channel(8);
        let publisher = Publisher {
            log,
            published: Arc::default(),
        };
        let account = AccountId::new();
        let at = |seq| LogAdvanced {
            account_id: account,
            seq,
        };
        publisher.publish(at(2));
        publisher.publish(at(2));
        publisher.publish(at(1));
        publisher.publish(at(3));
        assert_eq!(rx.try_recv().unwrap(), at(2));
        assert_eq!(rx.try_recv().unwrap(), at(3));
        assert!(rx.try_recv().is_err());
    }
}
