//! The embedded engine: SQLite in WAL mode with `synchronous=FULL`.
//!
//! Writes go to one writer task ([`writer`]) that owns the only write connection and commits
//! in groups; a write's future resolves after the commit holding it is durable. Reads use a
//! separate pool of read-only connections, which WAL lets run beside the writer and which see
//! only committed data — so a reader never sees seq N+1 before N.
//!
//! Ids are 16-byte UUID blobs; timestamps are INTEGER microseconds (UTC), exact and ordered.

mod writer;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use airtext_api::contacts::Contact;
use airtext_api::conversations::Conversation;
use airtext_api::identities::IdentityKind;
use airtext_api::messages::Message;
use airtext_api::sync::SyncEvent;
use airtext_api::{AccountId, ConversationId, DeviceId, IdentityId, MessageId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::rows::{self, corrupt, micros, Cols};
use super::{
    AccountRecord, CarrierRecord, Delivered, Delivery, DeviceRecord, IdentityRecord,
    InventoryNumber, LogAdvanced, NewAccount, NewDevice, NewIdentityCode, NumberSearch,
    OutboundJob, OutboundOutcome, StatusOutcome, StatusUpdate, Store, StoreError, StoreResult,
    TokenHash,
};
use writer::{Cmd, Op, Out};

/// How many commands may wait for the writer before senders wait too (back-pressure).
const QUEUE_DEPTH: usize = 16_384;
const READERS: u32 = 4;
const LOG_CAPACITY: usize = 65_536;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Past this many cached device tokens the cache starts over (it only saves reads).
const TOKEN_CACHE_CAP: usize = 100_000;

#[derive(Debug)]
pub struct SqliteStore {
    writer: mpsc::Sender<Cmd>,
    reader: SqlitePool,
    log: broadcast::Sender<LogAdvanced>,
    closed: AtomicBool,
    tokens: TokenCache,
}

/// Devices by token hash, so authenticating a request is not a read through sqlx's worker
/// thread. Sound because this process is the database's only writer: a device row changes
/// only through [`SqliteStore::revoke_device`] (deleted) and `last_seen_at` (kept here too).
/// A revoke bumps `generation` before it writes and again, under the lock, after it commits
/// and evicts; a read that missed caches its row only if no revoke began since it started,
/// so a row read before a revoke's commit can never be cached after its eviction.
#[derive(Debug, Default)]
struct TokenCache {
    generation: AtomicU64,
    devices: Mutex<HashMap<[u8; 32], DeviceRecord>>,
}

impl TokenCache {
    fn get(&self, token: &TokenHash) -> Option<DeviceRecord> {
        self.devices.lock().ok()?.get(&token.0).cloned()
    }

    fn put(&self, token: &TokenHash, device: &DeviceRecord, generation: u64) {
        if let Ok(mut devices) = self.devices.lock() {
            if self.generation.load(Ordering::Acquire) != generation {
                return;
            }
            if devices.len() >= TOKEN_CACHE_CAP {
                devices.clear();
            }
            devices.insert(token.0, device.clone());
        }
    }

    fn evict(&self, device: DeviceId) {
        match self.devices.lock() {
            Ok(mut devices) => {
                devices.retain(|_, cached| cached.id != device);
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            Err(poisoned) => {
                let mut devices = poisoned.into_inner();
                devices.clear();
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `sqlite://PATH` or `sqlite::memory:`, runs
    /// the migrations and starts the writer.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = base
            .get_filename()
            .to_string_lossy()
            .starts_with("file:sqlx-in-memory")
            || url.contains(":memory:")
            || url.contains("mode=memory");
        // Each command runs in a savepoint, whose undo pages go to a sub-journal: kept in
        // memory, not in a temp file written page by page. A bigger page cache keeps the hot
        // indexes of the write connection resident.
        let write_base = base
            .clone()
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536");
        let write_options = if in_memory {
            write_base
        } else {
            write_base
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
        };
        let mut conn: SqliteConnection = write_options.connect().await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;

        // An in-memory database is shared by name between connections, and cannot be opened
        // read-only; a file is opened read-only so a bug in a read path cannot write.
        let read_options = if in_memory {
            base
        } else {
            base.read_only(true)
        };
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(1)
            .connect_with(read_options)
            .await?;

        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (log, _) = broadcast::channel(LOG_CAPACITY);
        tokio::spawn(writer::run(conn, rx, log.clone()));
        Ok(SqliteStore {
            writer: tx,
            reader,
            log,
            closed: AtomicBool::new(false),
            tokens: TokenCache::default(),
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

    fn pool(&self) -> StoreResult<&SqlitePool> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        Ok(&self.reader)
    }
}

fn unexpected(out: &Out) -> StoreError {
    corrupt(format!("the writer answered with {out:?}"))
}

fn decode(error: sqlx::Error) -> StoreError {
    corrupt(error)
}

impl Cols for SqliteRow {
    fn uuid(&self, col: &str) -> StoreResult<Uuid> {
        self.try_get(col).map_err(decode)
    }
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        self.try_get(col).map_err(decode)
    }
    fn text(&self, col: &str) -> StoreResult<String> {
        self.try_get(col).map_err(decode)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.try_get(col).map_err(decode)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        self.try_get(col).map_err(decode)
    }
    fn boolean(&self, col: &str) -> StoreResult<bool> {
        self.try_get(col).map_err(decode)
    }
    fn time(&self, col: &str) -> StoreResult<DateTime<Utc>> {
        rows::from_micros(self.try_get(col).map_err(decode)?)
    }
    fn opt_time(&self, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
        let value: Option<i64> = self.try_get(col).map_err(decode)?;
        value.map(rows::from_micros).transpose()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.pool()?).await?;
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
        self.reader.close().await;
    }

    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        self.write_done(Op::CreateAccount(account)).await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id WHERE a.id = ?1",
            rows::ACCOUNT_COLUMNS
        ))
        .bind(id.0)
        .fetch_optional(self.pool()?)
        .await?;
        row.as_ref().map(rows::account).transpose()
    }

    async fn account_by_username(&self, username: &str) -> StoreResult<Option<AccountRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM accounts a LEFT JOIN numbers n ON n.owner = a.id \
             WHERE a.username = ?1",
            rows::ACCOUNT_COLUMNS
        ))
        .bind(username)
        .fetch_optional(self.pool()?)
        .await?;
        row.as_ref().map(rows::account).transpose()
    }

    async fn create_device(&self, device: NewDevice) -> StoreResult<()> {
        self.write_done(Op::CreateDevice(device)).await
    }

    async fn device_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceRecord>> {
        let pool = self.pool()?;
        let generation = self.tokens.generation.load(Ordering::Acquire);
        let device = match self.tokens.get(token) {
            Some(device) => device,
            None => {
                let row = sqlx::query(
                    "SELECT id, account_id, name, has_cellular, created_at, last_seen_at \
                     FROM devices WHERE token_hash = ?1",
                )
                .bind(&token.0[..])
                .fetch_optional(pool)
                .await?;
                let Some(device) = row.as_ref().map(rows::device).transpose()? else {
                    return Ok(None);
                };
                self.tokens.put(token, &device, generation);
                device
            }
        };
        if device.last_seen_at < now - writer::LAST_SEEN_GRANULARITY {
            self.write_done(Op::TouchDevice { id: device.id, now })
                .await?;
            let device = DeviceRecord {
                last_seen_at: now,
                ..device
            };
            self.tokens.put(token, &device, generation);
            return Ok(Some(device));
        }
        Ok(Some(device))
    }

    async fn devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>> {
        let found = sqlx::query(
            "SELECT id, account_id, name, has_cellular, created_at, last_seen_at \
             FROM devices WHERE account_id = ?1 ORDER BY created_at, id",
        )
        .bind(account.0)
        .fetch_all(self.pool()?)
        .await?;
        found.iter().map(rows::device).collect()
    }

    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()> {
        self.tokens.generation.fetch_add(1, Ordering::AcqRel);
        let revoked = self.write_done(Op::RevokeDevice { account, device }).await;
        self.tokens.evict(device);
        revoked
    }

    async fn add_inventory(&self, numbers: &[InventoryNumber]) -> StoreResult<()> {
        self.write_done(Op::AddInventory(numbers.to_vec())).await
    }

    async fn available_numbers(&self, search: NumberSearch) -> StoreResult<Vec<String>> {
        let prefix = search.prefix.unwrap_or_default();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT number FROM numbers \
             WHERE country = ?1 AND owner IS NULL AND available_at <= ?2 \
               AND substr(number, 1, length(?3)) = ?3 \
             ORDER BY number LIMIT ?4",
        )
        .bind(&search.country)
        .bind(micros(search.now))
        .bind(&prefix)
        .bind(i64::from(search.limit))
        .fetch_all(self.pool()?)
        .await?;
        Ok(found)
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
        let owner: Option<Option<Uuid>> =
            sqlx::query_scalar("SELECT owner FROM numbers WHERE number = ?1")
                .bind(number)
                .fetch_optional(self.pool()?)
                .await
                .map_err(decode_or_db)?;
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
        let row = sqlx::query("SELECT * FROM identities WHERE id = ?1 AND account_id = ?2")
            .bind(id.0)
            .bind(account.0)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(rows::identity).transpose()
    }

    async fn identities(&self, account: AccountId) -> StoreResult<Vec<IdentityRecord>> {
        let found =
            sqlx::query("SELECT * FROM identities WHERE account_id = ?1 ORDER BY created_at, id")
                .bind(account.0)
                .fetch_all(self.pool()?)
                .await?;
        found.iter().map(rows::identity).collect()
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
        let owner: Option<Uuid> = sqlx::query_scalar(
            "SELECT account_id FROM identities \
             WHERE kind = ?1 AND value = ?2 AND status = 'verified'",
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(self.pool()?)
        .await
        .map_err(decode_or_db)?;
        Ok(owner.map(Into::into))
    }

    async fn deliver(&self, delivery: Delivery) -> StoreResult<Delivered> {
        match self.write(Op::Deliver(Box::new(delivery))).await? {
            Out::Delivered(delivered) => Ok(delivered),
            other => Err(unexpected(&other)),
        }
    }

    async fn message(&self, account: AccountId, id: MessageId) -> StoreResult<Option<Message>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM messages m WHERE m.id = ?1 AND m.account_id = ?2",
            rows::MESSAGE_COLUMNS
        ))
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await?;
        row.as_ref().map(rows::message).transpose()
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
        let found = sqlx::query(&format!(
            "SELECT {} FROM messages m \
             WHERE m.conversation_id = ?1 AND m.account_id = ?2 AND (?3 IS NULL OR m.id < ?3) \
             ORDER BY m.id DESC LIMIT ?4",
            rows::MESSAGE_COLUMNS
        ))
        .bind(conversation.0)
        .bind(account.0)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await?;
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
             WHERE c.account_id = ?1 AND (?2 IS NULL OR c.updated_at < ?2) \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT ?3",
            rows::CONVERSATION_COLUMNS
        ))
        .bind(account.0)
        .bind(before.map(micros))
        .bind(i64::from(limit))
        .fetch_all(self.pool()?)
        .await?;
        found.iter().map(rows::conversation).collect()
    }

    async fn conversation(
        &self,
        account: AccountId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM conversations c LEFT JOIN messages m ON m.id = c.last_message_id \
             WHERE c.id = ?1 AND c.account_id = ?2",
            rows::CONVERSATION_COLUMNS
        ))
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(self.pool()?)
        .await?;
        row.as_ref().map(rows::conversation).transpose()
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
        let found = sqlx::query(
            "SELECT address, path, fallback, name, updated_at FROM contacts \
             WHERE account_id = ?1 ORDER BY address",
        )
        .bind(account.0)
        .fetch_all(self.pool()?)
        .await?;
        found.iter().map(rows::contact).collect()
    }

    async fn events_after(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<SyncEvent>, bool)> {
        // One extra row tells whether more remain.
        let found = sqlx::query(
            "SELECT seq, at, payload FROM events WHERE account_id = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3",
        )
        .bind(account.0)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.pool()?)
        .await?;
        let more = found.len() > limit as usize;
        let events = found
            .iter()
            .take(limit as usize)
            .map(rows::event)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((events, more))
    }

    async fn last_seq(&self, account: AccountId) -> StoreResult<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM account_log WHERE account_id = ?1")
                .bind(account.0)
                .fetch_optional(self.pool()?)
                .await
                .map_err(decode_or_db)?;
        Ok(seq.unwrap_or(0))
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
            cost: None,
            at,
        })
        .await
    }

    async fn message_by_carrier_id(
        &self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<MessageId>> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE carrier = ?1 AND carrier_message_id = ?2 \
             ORDER BY id LIMIT 1",
        )
        .bind(carrier)
        .bind(carrier_message_id)
        .fetch_optional(self.pool()?)
        .await
        .map_err(decode_or_db)?;
        Ok(id.map(Into::into))
    }

    async fn finish_outbound_priced(
        &self,
        message_id: MessageId,
        outcome: OutboundOutcome,
        cost: Option<f64>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write_done(Op::FinishOutbound {
            message_id,
            outcome,
            cost,
            at,
        })
        .await
    }

    async fn carrier_record(&self, message_id: MessageId) -> StoreResult<Option<CarrierRecord>> {
        let row = sqlx::query(
            "SELECT carrier, carrier_message_id, cost FROM messages \
             WHERE id = ?1 AND carrier IS NOT NULL AND carrier_message_id IS NOT NULL",
        )
        .bind(message_id.0)
        .fetch_optional(self.pool()?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(CarrierRecord {
            carrier: row.text("carrier")?,
            carrier_message_id: row.text("carrier_message_id")?,
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
        self.write_done(Op::SetOptOut {
            did: did.to_owned(),
            remote: remote.to_owned(),
            opted_out,
            at,
        })
        .await
    }

    async fn opted_out(&self, did: &str, remote: &str) -> StoreResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM opt_outs WHERE did = ?1 AND remote = ?2")
                .bind(did)
                .bind(remote)
                .fetch_optional(self.pool()?)
                .await
                .map_err(decode_or_db)?;
        Ok(found.is_some())
    }
}

/// A scalar query's error: a value that does not decode is corrupt data, anything else is the
/// database's.
fn decode_or_db(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => corrupt(error),
        other => other.into(),
    }
}
