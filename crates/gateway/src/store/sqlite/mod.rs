//! The embedded engine: SQLite in WAL mode, driven directly through `rusqlite`.
//!
//! Writes go to one writer thread ([`writer`]) that owns the only write connection and commits
//! in groups; a write's future resolves after the commit holding it is durable, which a
//! second thread establishes by flushing the WAL while the writer runs the next group
//! ([`durability`]). Reads whose rows a reply carries wait for that flush too. Reads use
//! separate read-only connections ([`conn::ReadPool`]), which WAL lets run beside the writer
//! and which see only committed data — so a reader never sees seq N+1 before N. A point read
//! (one indexed row) runs right in the calling task, which costs a few microseconds and no
//! thread hand-off; a read of a page of rows runs on tokio's blocking pool, so a long page
//! never holds up the runtime's workers. An in-memory database (`sqlite::memory:`) has one
//! connection, the writer's, and its reads queue there. The reads every request makes
//! (the device a token authenticates; a send's sender and addressee) are served from memory
//! after the first ([`cache`]): the writer, the database's only writer, evicts what each
//! group changes before the group is answered.
//!
//! This file holds the store's handle and how it reaches the writer and the read
//! connections; [`writer`] is the engine that commits. Each resource has its own file
//! (`accounts.rs`, `messages.rs`, …) holding both its reads (its `impl …Store for
//! SqliteStore`) and its writes (its `Op`, run by the writer through its `execute`).
//!
//! sqlx opens a file database first to run the migrations (`migrations/sqlite`, tracked in
//! `_sqlx_migrations`); see docs/decisions.md for why SQLite is not driven through sqlx at run
//! time.
//!
//! Ids are 16-byte UUID blobs; timestamps are INTEGER microseconds (UTC), exact and ordered.

mod accounts;
mod addressees;
mod cache;
mod carriers;
mod conn;
mod contacts;
mod conversations;
mod durability;
mod health;
mod identities;
mod log;
mod messages;
mod numbers;
mod outbound;
mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use airtext_api::AccountId;
use async_trait::async_trait;
use rusqlite::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection as _};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::rows;
use super::{LogAdvanced, Store, StoreError, StoreResult};
use cache::Caches;
use conn::{first_int, one, ReadPool};
use durability::Durability;
use writer::{Cmd, Op, Out};

/// How many commands may wait for the writer before senders wait too (back-pressure).
const QUEUE_DEPTH: usize = 16_384;
const LOG_CAPACITY: usize = 65_536;

/// The schema, embedded: the files under `migrations/sqlite` are its only source.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug)]
pub struct SqliteStore {
    writer: mpsc::Sender<Cmd>,
    reads: Reads,
    /// For a database file: how far commits have reached the disk, which replies built
    /// from reads wait for.
    durability: Option<Arc<Durability>>,
    log: broadcast::Sender<LogAdvanced>,
    closed: AtomicBool,
    /// Devices and accounts as requests look them up, kept true by the writer.
    caches: Arc<Caches>,
    /// A database file's lock ([`conn::own_file`]), held until the store closes.
    owner: std::sync::Mutex<Option<std::fs::File>>,
    /// Why the last commit failed, until one succeeds (what the health check reports).
    health: Arc<health::WriteHealth>,
}

/// Where reads run.
#[derive(Debug)]
enum Reads {
    /// A database file: read-only connections of its own.
    Pool(Arc<ReadPool>),
    /// An in-memory database: the writer's connection, between its transactions.
    Writer,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `sqlite://PATH` or `sqlite::memory:`, runs
    /// the migrations and starts the writer.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .busy_timeout(conn::BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = base
            .get_filename()
            .to_string_lossy()
            .starts_with("file:sqlx-in-memory")
            || url.contains(":memory:")
            || url.contains("mode=memory");
        let (write, file, reads, owner) = if in_memory {
            let write = conn::open_memory()?;
            for migration in MIGRATOR.iter() {
                if !migration.migration_type.is_down_migration() {
                    write.execute_batch(&migration.sql)?;
                }
            }
            (write, None, Reads::Writer, None)
        } else {
            let path = base.get_filename().to_owned();
            let owner = conn::own_file(&path)?;
            // sqlx applies the migrations, recording them in `_sqlx_migrations` as it always
            // has, so databases made by earlier versions carry on unchanged.
            let mut migrating: SqliteConnection = base
                .clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .connect()
                .await?;
            MIGRATOR.run(&mut migrating).await?;
            migrating.close().await?;
            let write = conn::open_writer(&path)?;
            let file = writer::FileDurability {
                checkpoints: writer::Checkpoints::new(conn::open_checkpointer(&path)?),
                durability: Durability::new(),
            };
            let reads = Reads::Pool(Arc::new(ReadPool::new(path)?));
            (write, Some(file), reads, Some(owner))
        };

        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (log, _) = broadcast::channel(LOG_CAPACITY);
        let durability = file.as_ref().map(|file| Arc::clone(&file.durability));
        let caches = Arc::new(Caches::default());
        let health = Arc::new(health::WriteHealth::default());
        writer::spawn(
            write,
            file,
            rx,
            log.clone(),
            Arc::clone(&caches),
            Arc::clone(&health),
        )?;
        Ok(SqliteStore {
            writer: tx,
            reads,
            durability,
            log,
            closed: AtomicBool::new(false),
            caches,
            owner: std::sync::Mutex::new(owner),
            health,
        })
    }

    async fn write(&self, op: impl Into<Op>) -> StoreResult<Out> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Cmd::Write {
                op: op.into(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }

    async fn write_done(&self, op: impl Into<Op>) -> StoreResult<()> {
        match self.write(op).await? {
            Out::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn check_open(&self) -> StoreResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        Ok(())
    }

    /// A point read (one indexed row, or a handful) whose result a reply carries: in the
    /// calling task's thread, which costs SQLite's few microseconds, then a wait until
    /// everything it could have seen is durable (usually none; at most one WAL flush).
    async fn read<T, F>(&self, read: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let value = self.lookup(read).await?;
        self.settled().await?;
        Ok(value)
    }

    /// A point read that only decides what happens next (routing, authentication, the
    /// receipt's message) and is never itself a reply's content, so it need not wait for the
    /// disk: the write it leads to commits in a later group, and groups reach the disk in
    /// order, so that write's durability covers whatever this read saw.
    async fn lookup<T, F>(&self, read: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.check_open()?;
        match &self.reads {
            Reads::Pool(pool) => pool.with(read),
            Reads::Writer => self.read_on_writer(read).await,
        }
    }

    /// Waits until every commit a read that just finished could have seen is on disk.
    async fn settled(&self) -> StoreResult<()> {
        match &self.durability {
            Some(durability) => durability.settled().await,
            None => Ok(()),
        }
    }

    /// A read of up to a page of rows for a reply: on tokio's blocking pool, so a long page
    /// does not hold up a runtime worker; then, like [`Self::read`], a wait for the disk.
    async fn scan<T, F>(&self, read: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let value = self.scan_unsettled(read).await?;
        self.settled().await?;
        Ok(value)
    }

    /// [`Self::scan`] without the wait, for reads that cut their answer at the durable point
    /// themselves (the replication log).
    async fn scan_unsettled<T, F>(&self, read: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.check_open()?;
        match &self.reads {
            Reads::Pool(pool) => {
                let pool = Arc::clone(pool);
                tokio::task::spawn_blocking(move || pool.with(read))
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("a read did not finish: {e}")))?
            }
            Reads::Writer => self.read_on_writer(read).await,
        }
    }

    /// The first seq of `account`'s log that is not yet on disk, if any: what a read of the
    /// log, made just before, must stop short of.
    fn first_unflushed_seq(&self, account: AccountId) -> Option<i64> {
        self.durability
            .as_ref()
            .and_then(|durability| durability.first_unflushed_seq(account))
    }

    async fn read_on_writer<T, F>(&self, read: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Cmd::Read(Box::new(move |conn| {
                let _ = reply.send(read(conn));
            })))
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }
}

fn unexpected(out: &Out) -> StoreError {
    rows::corrupt(format!("the writer answered with {out:?}"))
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| {
            one(conn, "SELECT 1", [], first_int)?;
            Ok(())
        })
        .await?;
        // After a failed commit, only a write that succeeds says the store writes again.
        if let Some(failure) = self.health.failure() {
            self.write_done(health::Op::Probe {
                at: chrono::Utc::now(),
            })
            .await
            .map_err(|error| {
                StoreError::Unavailable(format!(
                    "the store cannot write ({failure}; a probe write: {error})"
                ))
            })?;
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<LogAdvanced> {
        self.log.subscribe()
    }

    async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.writer.send(Cmd::Close { done }).await.is_ok() {
            let _ = finished.await;
        }
        self.closed.store(true, Ordering::Release);
        if let Reads::Pool(pool) = &self.reads {
            pool.close();
        }
        // The writer has closed its connection: another store may open the file now.
        if let Ok(mut owner) = self.owner.lock() {
            owner.take();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_file_has_one_store_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("airtext.db").display());
        let first = SqliteStore::open(&url).await.unwrap();
        let refused = SqliteStore::open(&url).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::InUse(message)
                if message.contains("airtext.db is in use by another gateway")),
            "{refused}"
        );
        first.close().await;
        let second = SqliteStore::open(&url).await.unwrap();
        second.ping().await.unwrap();
        second.close().await;
    }
}
