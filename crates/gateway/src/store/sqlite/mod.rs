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
//! sqlx still opens a file database first to run the migrations (`migrations/sqlite`, tracked
//! in `_sqlx_migrations` as before); see docs/decisions.md for why SQLite is no longer driven
//! through sqlx at run time.
//!
//! Ids are 16-byte UUID blobs; timestamps are INTEGER microseconds (UTC), exact and ordered.

mod cache;
mod conn;
mod durability;
mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use airtext_api::contacts::Contact;
use airtext_api::conversations::Conversation;
use airtext_api::identities::IdentityKind;
use airtext_api::messages::Message;
use airtext_api::sync::SyncEvent;
use airtext_api::{AccountId, ConversationId, DeviceId, IdentityId, MessageId};
use airtext_sms::Address;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection as _};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::rows::{self, micros, Cols};
use super::rules;
use super::{
    AccountRecord, CarrierReceipt, CarrierRecord, Delivered, Delivery, DeviceRecord,
    IdentityRecord, InventoryNumber, LogAdvanced, NewAccount, NewDevice, NewIdentityCode,
    NumberSearch, OutboundJob, OutboundOutcome, ReceiptOutcome, StatusOutcome, StatusUpdate, Store,
    StoreError, StoreResult, TokenHash,
};
use cache::Caches;
use conn::{
    all, blob, first_int, first_opt_uuid, first_uuid, in_snapshot, one, opt_blob, ReadPool,
};
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
        writer::spawn(write, file, rx, log.clone(), Arc::clone(&caches))?;
        Ok(SqliteStore {
            writer: tx,
            reads,
            durability,
            log,
            closed: AtomicBool::new(false),
            caches,
            owner: std::sync::Mutex::new(owner),
        })
    }

    async fn write(&self, op: Op) -> StoreResult<Out> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Cmd::Write { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }

    async fn write_done(&self, op: Op) -> StoreResult<()> {
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

static ACCOUNT_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id WHERE a.id = ?1",
        rows::ACCOUNT_COLUMNS
    )
});

fn account_in(conn: &Connection, id: AccountId) -> StoreResult<Option<AccountRecord>> {
    one(conn, &ACCOUNT_BY_ID, params![blob(&id.0)], |row| {
        rows::account(row)
    })
}

/// [`Store::addressee`] on one connection: the same reads as the trait's definition.
fn addressee_in(conn: &Connection, address: &Address) -> StoreResult<Option<AccountRecord>> {
    let verified = |kind: IdentityKind, value: &str| {
        one(
            conn,
            VERIFIED_OWNER,
            params![kind.as_str(), value],
            first_uuid,
        )
    };
    let owner = match address {
        Address::Phone(number) => {
            let did = one(conn, NUMBER_OWNER, params![number], first_opt_uuid)?.flatten();
            match did {
                Some(owner) => Some(owner),
                None => verified(IdentityKind::Phone, number)?,
            }
        }
        Address::ShortCode(_) => None,
        Address::Username(_) => {
            let name = address.username().unwrap_or_default();
            return one(conn, &ACCOUNT_BY_USERNAME, params![name], |row| {
                rows::account(row)
            });
        }
        Address::Email(email) => verified(IdentityKind::Email, email)?,
    };
    let Some(owner) = owner else {
        return Ok(None);
    };
    let owner = AccountId::from(owner);
    account_in(conn, owner)?
        .map(Some)
        .ok_or_else(|| super::owner_gone(address, owner))
}

const NUMBER_OWNER: &str = "SELECT owner FROM numbers WHERE number = ?1";
/// A row when `?2` opted out of texts from our DID `?1` (read by the queue, and by the writer
/// inside each enqueued delivery).
const OPTED_OUT: &str = "SELECT 1 FROM opt_outs WHERE did = ?1 AND remote = ?2";
const VERIFIED_OWNER: &str = "SELECT account_id FROM identities \
     WHERE kind = ?1 AND value = ?2 AND status = 'verified'";

static ACCOUNT_BY_USERNAME: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id WHERE a.username = ?1",
        rows::ACCOUNT_COLUMNS
    )
});

const DEVICE_BY_TOKEN: &str = "SELECT id, account_id, name, has_cellular, created_at, \
     last_seen_at FROM devices WHERE token_hash = ?1";

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| {
            one(conn, "SELECT 1", [], first_int)?;
            Ok(())
        })
        .await
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

    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        self.write_done(Op::CreateAccount(account)).await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        self.lookup(move |conn| account_in(conn, id)).await
    }

    async fn account_by_username(&self, username: &str) -> StoreResult<Option<AccountRecord>> {
        let username = username.to_owned();
        self.lookup(move |conn| {
            one(conn, &ACCOUNT_BY_USERNAME, params![username], |row| {
                rows::account(row)
            })
        })
        .await
    }

    async fn create_device(&self, device: NewDevice) -> StoreResult<()> {
        self.write_done(Op::CreateDevice(device)).await
    }

    async fn device_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceRecord>> {
        self.check_open()?;
        let generation = self.caches.devices.generation();
        let device = match self.caches.device(token) {
            Some(device) => device,
            None => {
                let hash = token.0;
                let found = self
                    .lookup(move |conn| {
                        one(conn, DEVICE_BY_TOKEN, params![&hash[..]], |row| {
                            rows::device(row)
                        })
                    })
                    .await?;
                let Some(device) = found else {
                    return Ok(None);
                };
                self.caches.devices.put(token.0, device.clone(), generation);
                device
            }
        };
        if rules::last_seen_is_stale(device.last_seen_at, now) {
            self.write_done(Op::TouchDevice { id: device.id, now })
                .await?;
            let device = DeviceRecord {
                last_seen_at: now,
                ..device
            };
            self.caches.devices.put(token.0, device.clone(), generation);
            return Ok(Some(device));
        }
        Ok(Some(device))
    }

    async fn devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>> {
        self.scan(move |conn| {
            all(
                conn,
                "SELECT id, account_id, name, has_cellular, created_at, last_seen_at \
                 FROM devices WHERE account_id = ?1 ORDER BY created_at, id",
                params![blob(&account.0)],
                |row| rows::device(row),
            )
        })
        .await
    }

    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()> {
        // The writer evicts the device's cached tokens right after the COMMIT.
        self.write_done(Op::RevokeDevice { account, device }).await
    }

    async fn add_inventory(&self, numbers: &[InventoryNumber]) -> StoreResult<()> {
        self.write_done(Op::AddInventory(numbers.to_vec())).await
    }

    async fn available_numbers(&self, search: NumberSearch) -> StoreResult<Vec<String>> {
        self.scan(move |conn| {
            let prefix = search.prefix.unwrap_or_default();
            all(
                conn,
                "SELECT number FROM numbers \
                 WHERE country = ?1 AND owner IS NULL AND available_at <= ?2 \
                   AND substr(number, 1, length(?3)) = ?3 \
                 ORDER BY number LIMIT ?4",
                params![
                    search.country,
                    micros(search.now),
                    prefix,
                    i64::from(search.limit)
                ],
                |row| row.text("number"),
            )
        })
        .await
    }

    async fn claim_number(
        &self,
        account: AccountId,
        number: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::ClaimNumber {
            account,
            number: number.to_owned(),
            now,
        })
        .await
    }

    async fn release_number(
        &self,
        account: AccountId,
        number: &str,
        available_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::ReleaseNumber {
            account,
            number: number.to_owned(),
            available_at,
        })
        .await
    }

    async fn number_owner(&self, number: &str) -> StoreResult<Option<AccountId>> {
        let number = number.to_owned();
        let owner = self
            .lookup(move |conn| one(conn, NUMBER_OWNER, params![number], first_opt_uuid))
            .await?;
        Ok(owner.flatten().map(Into::into))
    }

    async fn put_identity_code(&self, code: NewIdentityCode) -> StoreResult<IdentityId> {
        match self.write(Op::PutIdentityCode(code)).await? {
            Out::Identity(id) => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    async fn identity(
        &self,
        account: AccountId,
        id: IdentityId,
    ) -> StoreResult<Option<IdentityRecord>> {
        self.read(move |conn| {
            one(
                conn,
                "SELECT * FROM identities WHERE id = ?1 AND account_id = ?2",
                params![blob(&id.0), blob(&account.0)],
                |row| rows::identity(row),
            )
        })
        .await
    }

    async fn identities(&self, account: AccountId) -> StoreResult<Vec<IdentityRecord>> {
        self.scan(move |conn| {
            all(
                conn,
                "SELECT * FROM identities WHERE account_id = ?1 ORDER BY created_at, id",
                params![blob(&account.0)],
                |row| rows::identity(row),
            )
        })
        .await
    }

    async fn count_failed_attempt(&self, account: AccountId, id: IdentityId) -> StoreResult<u32> {
        match self.write(Op::CountFailedAttempt { account, id }).await? {
            Out::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn mark_verified(
        &self,
        account: AccountId,
        id: IdentityId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::MarkVerified { account, id, at }).await
    }

    async fn verified_owner(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<AccountId>> {
        let value = value.to_owned();
        let owner = self
            .lookup(move |conn| {
                one(
                    conn,
                    VERIFIED_OWNER,
                    params![kind.as_str(), value],
                    first_uuid,
                )
            })
            .await?;
        Ok(owner.map(Into::into))
    }

    async fn addressee(&self, address: &Address) -> StoreResult<Option<AccountRecord>> {
        let address = address.clone();
        self.lookup(move |conn| in_snapshot(conn, |conn| addressee_in(conn, &address)))
            .await
    }

    async fn sender_and_addressee(
        &self,
        sender: AccountId,
        to: &Address,
    ) -> StoreResult<(Option<AccountRecord>, Option<AccountRecord>)> {
        // As every read: a closed store answers nothing, cached or not.
        self.check_open()?;
        if let Some(found) = self.caches.sender_and_addressee(sender, to) {
            return Ok(found);
        }
        let generation = (
            self.caches.senders.generation(),
            self.caches.addressees.generation(),
        );
        let address = to.clone();
        let (from, to_account) = self
            .lookup(move |conn| {
                in_snapshot(conn, |conn| {
                    Ok((account_in(conn, sender)?, addressee_in(conn, &address)?))
                })
            })
            .await?;
        let caches = &self.caches;
        caches.senders.put(sender, from.clone(), generation.0);
        caches
            .addressees
            .put(to.clone(), to_account.clone(), generation.1);
        Ok((from, to_account))
    }

    async fn deliver(&self, delivery: Delivery) -> StoreResult<Delivered> {
        match self.write(Op::Deliver(Box::new(delivery))).await? {
            Out::Delivered(delivered) => Ok(delivered),
            Out::RecipientStopped => Err(StoreError::OptedOut),
            other => Err(unexpected(&other)),
        }
    }

    async fn message(&self, account: AccountId, id: MessageId) -> StoreResult<Option<Message>> {
        self.read(move |conn| {
            one(
                conn,
                &format!(
                    "SELECT {} FROM messages m WHERE m.id = ?1 AND m.account_id = ?2",
                    rows::MESSAGE_COLUMNS
                ),
                params![blob(&id.0), blob(&account.0)],
                |row| rows::message(row),
            )
        })
        .await
    }

    async fn update_status(&self, update: StatusUpdate) -> StoreResult<StatusOutcome> {
        match self.write(Op::UpdateStatus(update)).await? {
            Out::Status(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    async fn messages(
        &self,
        account: AccountId,
        conversation: ConversationId,
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<Message>> {
        self.scan(move |conn| {
            let before: Option<Uuid> = before.map(|b| b.0);
            all(
                conn,
                &format!(
                    "SELECT {} FROM messages m \
                     WHERE m.conversation_id = ?1 AND m.account_id = ?2 \
                       AND (?3 IS NULL OR m.id < ?3) \
                     ORDER BY m.id DESC LIMIT ?4",
                    rows::MESSAGE_COLUMNS
                ),
                params![
                    blob(&conversation.0),
                    blob(&account.0),
                    opt_blob(&before),
                    i64::from(limit)
                ],
                |row| rows::message(row),
            )
        })
        .await
    }

    async fn conversations(
        &self,
        account: AccountId,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<Conversation>> {
        self.scan(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {} FROM conversations c \
                     LEFT JOIN messages m ON m.id = c.last_message_id \
                     WHERE c.account_id = ?1 AND (?2 IS NULL OR c.updated_at < ?2) \
                     ORDER BY c.updated_at DESC, c.id DESC LIMIT ?3",
                    rows::CONVERSATION_COLUMNS
                ),
                params![blob(&account.0), before.map(micros), i64::from(limit)],
                |row| rows::conversation(row),
            )
        })
        .await
    }

    async fn conversation(
        &self,
        account: AccountId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        self.read(move |conn| {
            one(
                conn,
                &format!(
                    "SELECT {} FROM conversations c \
                     LEFT JOIN messages m ON m.id = c.last_message_id \
                     WHERE c.id = ?1 AND c.account_id = ?2",
                    rows::CONVERSATION_COLUMNS
                ),
                params![blob(&id.0), blob(&account.0)],
                |row| rows::conversation(row),
            )
        })
        .await
    }

    async fn mark_read(
        &self,
        account: AccountId,
        conversation: ConversationId,
        up_to: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::MarkRead {
            account,
            conversation,
            up_to,
            at,
        })
        .await
    }

    async fn delete_message(
        &self,
        account: AccountId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::DeleteMessage { account, id, at }).await
    }

    async fn put_contact(&self, account: AccountId, contact: Contact) -> StoreResult<()> {
        self.write_done(Op::PutContact { account, contact }).await
    }

    async fn contacts(&self, account: AccountId) -> StoreResult<Vec<Contact>> {
        self.scan(move |conn| {
            all(
                conn,
                "SELECT address, path, fallback, name, updated_at FROM contacts \
                 WHERE account_id = ?1 ORDER BY address",
                params![blob(&account.0)],
                |row| rows::contact(row),
            )
        })
        .await
    }

    async fn events_after(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<SyncEvent>, bool)> {
        let (mut found, mut more) = self
            .scan_unsettled(move |conn| {
                // One extra row tells whether more remain.
                let found = all(
                    conn,
                    "SELECT seq, at, payload FROM events WHERE account_id = ?1 AND seq > ?2 \
                     ORDER BY seq LIMIT ?3",
                    params![blob(&account.0), after, i64::from(limit) + 1],
                    |row| rows::event(row),
                )?;
                Ok(rules::page(found, limit))
            })
            .await?;
        // Seqs not yet on disk are not served (see `durability`); their hint follows the flush.
        if let Some(first_unflushed) = self.first_unflushed_seq(account) {
            if found
                .last()
                .is_some_and(|event| event.seq >= first_unflushed)
            {
                found.retain(|event| event.seq < first_unflushed);
                more = false;
            }
        }
        Ok((found, more))
    }

    async fn last_seq(&self, account: AccountId) -> StoreResult<i64> {
        let seq = self
            .lookup(move |conn| {
                one(
                    conn,
                    "SELECT last_seq FROM account_log WHERE account_id = ?1",
                    params![blob(&account.0)],
                    first_int,
                )
            })
            .await?
            .unwrap_or(0);
        // As for `events_after`: never a seq that is not yet on disk.
        Ok(match self.first_unflushed_seq(account) {
            Some(first_unflushed) => seq.min(first_unflushed - 1),
            None => seq,
        })
    }

    async fn claim_outbound(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<OutboundJob>> {
        match self
            .write(Op::ClaimOutbound {
                limit,
                now,
                lease_until,
            })
            .await?
        {
            Out::Jobs(jobs) => Ok(jobs),
            other => Err(unexpected(&other)),
        }
    }

    async fn finish_outbound(
        &self,
        message_id: MessageId,
        outcome: OutboundOutcome,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::FinishOutbound {
            message_id,
            outcome,
            at,
        })
        .await
    }

    async fn message_by_carrier_id(
        &self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<MessageId>> {
        let carrier = carrier.to_owned();
        let carrier_message_id = carrier_message_id.to_owned();
        let id = self
            .lookup(move |conn| {
                one(
                    conn,
                    "SELECT id FROM messages WHERE carrier = ?1 AND carrier_message_id = ?2 \
                     ORDER BY id LIMIT 1",
                    params![carrier, carrier_message_id],
                    first_uuid,
                )
            })
            .await?;
        Ok(id.map(Into::into))
    }

    async fn carrier_record(&self, message_id: MessageId) -> StoreResult<Option<CarrierRecord>> {
        self.read(move |conn| {
            one(
                conn,
                "SELECT carrier, carrier_message_id, cost FROM messages \
                 WHERE id = ?1 AND carrier IS NOT NULL AND carrier_message_id IS NOT NULL",
                params![blob(&message_id.0)],
                |row| {
                    Ok(CarrierRecord {
                        carrier: row.text("carrier")?,
                        carrier_message_id: row.text("carrier_message_id")?,
                        cost: conn::opt_real(row, "cost")?,
                    })
                },
            )
        })
        .await
    }

    async fn set_opt_out(
        &self,
        did: &str,
        remote: &str,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::SetOptOut {
            did: did.to_owned(),
            remote: remote.to_owned(),
            opted_out,
            at,
        })
        .await
    }

    async fn opted_out(&self, did: &str, remote: &str) -> StoreResult<bool> {
        let did = did.to_owned();
        let remote = remote.to_owned();
        let found = self
            .lookup(move |conn| one(conn, OPTED_OUT, params![did, remote], |_| Ok(())))
            .await?;
        Ok(found.is_some())
    }

    async fn apply_receipts(
        &self,
        receipts: &[CarrierReceipt],
    ) -> StoreResult<Vec<ReceiptOutcome>> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        // One command: the whole batch is one write of the group commit.
        match self.write(Op::ApplyReceipts(receipts.to_vec())).await? {
            Out::Receipts(outcomes) => Ok(outcomes),
            other => Err(unexpected(&other)),
        }
    }

    async fn expire_early_receipts(&self, received_before: DateTime<Utc>) -> StoreResult<u64> {
        match self
            .write(Op::ExpireEarlyReceipts { received_before })
            .await?
        {
            Out::Removed(n) => Ok(n),
            other => Err(unexpected(&other)),
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
