//! The engine for scale: PostgreSQL, ordinary transactions per call.
//!
//! This file holds the engine (the pool, [`Tx`] and its commit); [`notify`] carries log hints
//! between nodes; each resource's `impl` is in its own file (`accounts.rs`, `messages.rs`, …)
//! and writes through [`PostgresStore::begin`] and [`PostgresStore::commit`].
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
//! - Each transaction that appended events also sends a NOTIFY, delivered at commit to every
//!   node, and after commit publishes [`LogAdvanced`] on this node's broadcast ([`notify`]).

mod accounts;
mod carriers;
mod contacts;
mod conversations;
mod identities;
mod log;
mod messages;
mod notify;
mod numbers;
mod outbound;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtext_api::sync::EventKind;
use airtext_api::AccountId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::rows::{self, corrupt, Cols};
use super::{AddresseeStore, LogAdvanced, Store, StoreError, StoreResult};
use notify::{listen, run_listener, Publisher};
pub use notify::{notify_channel, LISTENER_APPLICATION_NAME, NOTIFY_CHANNEL};

const MAX_CONNECTIONS: u32 = 32;
const LOG_CAPACITY: usize = 65_536;

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
             INSERT INTO events (account_id, seq, at, type, payload, message_id) \
             SELECT $1, s.last_seq, $2, $3, $4, $5 FROM s RETURNING seq",
        )
        .bind(account.0)
        .bind(at)
        .bind(kind.type_name())
        .bind(payload)
        .bind(super::rules::event_message(kind).map(|id| id.0))
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
        let started = std::time::Instant::now();
        tx.tx.commit().await?;
        metrics::histogram!("airtext_store_commit_seconds", "engine" => "postgres")
            .record(started.elapsed().as_secs_f64());
        for (account_id, seq) in tx.advanced {
            self.publisher.publish(LogAdvanced { account_id, seq });
        }
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.pool()?)
            .await
            .map_err(closed_or)?;
        // Answering is not writing: a full disk or a read-only server fails this commit.
        sqlx::query(
            "INSERT INTO health_probes (id, probed_at) VALUES (1, now()) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .execute(self.pool()?)
        .await
        .map_err(|error| match closed_or(error) {
            StoreError::Unavailable(reason) => StoreError::Unavailable(reason),
            other => StoreError::Unavailable(format!("the store cannot write: {other}")),
        })?;
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
}

/// Addressees by the trait's own definition: its point reads, one after another.
impl AddresseeStore for PostgresStore {}
