//! The single writer: one OS thread owns the only write connection and commits in groups.
//!
//! A write is an [`Op`] sent over a channel with a oneshot for its answer. The thread takes the
//! first command, drains whatever else is queued (up to [`BATCH_CAP`]), runs them all in one
//! `BEGIN IMMEDIATE` transaction and commits once. The group's answers and the
//! [`LogAdvanced`] hints for the logs that moved go out only once that commit is on disk:
//! for a database file the syncer thread flushes the WAL and answers ([`durability`]) while
//! this thread already runs the next group. So concurrent writers share one fsync, and nobody
//! hears "done" (or a log hint) for data that is not yet durable.
//!
//! A failing command never takes its neighbours down: the group first runs without
//! savepoints (the common case, and the cheap one); if any command fails, that transaction is
//! rolled back and the group runs again with each command inside its own `SAVEPOINT`, so the
//! failure is undone alone and everyone gets the answer they would have had alone.
//!
//! The whole group runs in this thread, calling SQLite directly through `rusqlite` with
//! prepared statements kept per connection: a command costs one channel hand-off in and one
//! oneshot out, whatever number of statements it runs. Checkpoints (copying the WAL back into
//! the database file) run on a thread of their own, off the commit path ([`checkpointer`]).
//!
//! Because this thread is the only writer, it can keep each account's newest seq itself
//! ([`Seqs`]): an event takes the next one with no read, the group writes each counter row
//! once before its COMMIT, and seqs become visible exactly in commit order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration as StdDuration, Instant};

use airtext_api::contacts::Contact;
use airtext_api::messages::Message;
use airtext_api::sync::EventKind;
use airtext_api::{AccountId, ConversationId, DeviceId, IdentityId, MessageId, SendStatus};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::super::rows::{self, micros, Cols};
use super::super::rules;
use super::super::{
    CarrierReceipt, Conflict, Delivered, Delivery, InventoryNumber, LogAdvanced, NewAccount,
    NewDevice, NewIdentityCode, NewMessage, OutboundJob, OutboundOutcome, ReceiptOutcome,
    StatusOutcome, StatusUpdate, StoreError, StoreResult,
};
use super::cache::{Caches, Changes};
use super::conn::{self, all, blob, first_int, first_opt_uuid, first_uuid, one, opt_blob, run};
use super::durability::{self, Committed, Durability, Syncer};

/// The most commands one transaction holds; bounds the latency a big burst adds to its first
/// caller.
pub(super) const BATCH_CAP: usize = 512;

/// One write the store asks of the writer.
#[derive(Debug)]
pub(super) enum Op {
    CreateAccount(NewAccount),
    CreateDevice(NewDevice),
    TouchDevice {
        id: DeviceId,
        now: DateTime<Utc>,
    },
    RevokeDevice {
        account: AccountId,
        device: DeviceId,
    },
    AddInventory(Vec<InventoryNumber>),
    ClaimNumber {
        account: AccountId,
        number: String,
        now: DateTime<Utc>,
    },
    ReleaseNumber {
        account: AccountId,
        number: String,
        available_at: DateTime<Utc>,
    },
    PutIdentityCode(NewIdentityCode),
    CountFailedAttempt {
        account: AccountId,
        id: IdentityId,
    },
    MarkVerified {
        account: AccountId,
        id: IdentityId,
        at: DateTime<Utc>,
    },
    Deliver(Box<Delivery>),
    UpdateStatus(StatusUpdate),
    MarkRead {
        account: AccountId,
        conversation: ConversationId,
        up_to: MessageId,
        at: DateTime<Utc>,
    },
    DeleteMessage {
        account: AccountId,
        id: MessageId,
        at: DateTime<Utc>,
    },
    PutContact {
        account: AccountId,
        contact: Contact,
    },
    ClaimOutbound {
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    },
    FinishOutbound {
        message_id: MessageId,
        outcome: OutboundOutcome,
        at: DateTime<Utc>,
    },
    SetOptOut {
        did: String,
        remote: String,
        opted_out: bool,
        at: DateTime<Utc>,
    },
    ApplyReceipts(Vec<CarrierReceipt>),
    ExpireEarlyReceipts {
        received_before: DateTime<Utc>,
    },
}

impl Op {
    /// Whether this write may change what a send reads about accounts (an account, its DID,
    /// its verified identities, who owns a number): then [`super::cache::Caches`] forgets
    /// the accounts it holds. No catch-all arm, so a new kind of write has to decide.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::CreateAccount(_)
            | Op::AddInventory(_)
            | Op::ClaimNumber { .. }
            | Op::ReleaseNumber { .. }
            | Op::PutIdentityCode(_)
            | Op::CountFailedAttempt { .. }
            | Op::MarkVerified { .. } => true,
            Op::CreateDevice(_)
            | Op::TouchDevice { .. }
            | Op::RevokeDevice { .. }
            | Op::Deliver(_)
            | Op::UpdateStatus(_)
            | Op::MarkRead { .. }
            | Op::DeleteMessage { .. }
            | Op::PutContact { .. }
            | Op::ClaimOutbound { .. }
            | Op::FinishOutbound { .. }
            | Op::SetOptOut { .. }
            | Op::ApplyReceipts(_)
            | Op::ExpireEarlyReceipts { .. } => false,
        }
    }
}

/// What a write answers.
#[derive(Debug)]
pub(super) enum Out {
    Done,
    Delivered(Delivered),
    /// An enqueued delivery refused because its recipient opted out; nothing written (an
    /// answer, not an error, so the rest of the group commits without a second pass).
    RecipientStopped,
    Status(StatusOutcome),
    Count(u32),
    Identity(IdentityId),
    Jobs(Vec<OutboundJob>),
    Receipts(Vec<ReceiptOutcome>),
    Removed(u64),
}

/// A read run on the writer's connection (an in-memory database has no other).
pub(super) type ReadFn = Box<dyn FnOnce(&Connection) + Send>;

pub(super) enum Cmd {
    Write {
        op: Op,
        reply: oneshot::Sender<StoreResult<Out>>,
    },
    /// A read on the writer's own connection, run between transactions, so it sees only
    /// committed data.
    Read(ReadFn),
    /// Finish everything queued, close the connection, then answer.
    Close { done: oneshot::Sender<()> },
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Write { op, .. } => f.debug_struct("Write").field("op", op).finish(),
            Cmd::Read(_) => f.write_str("Read"),
            Cmd::Close { .. } => f.write_str("Close"),
        }
    }
}

/// What one command did besides its answer (the logs it advanced), and the log counters it
/// takes its seqs from.
#[derive(Debug)]
struct Effects<'a> {
    advanced: Vec<LogAdvanced>,
    seqs: &'a mut Seqs,
}

impl<'a> Effects<'a> {
    fn new(seqs: &'a mut Seqs) -> Self {
        Effects {
            advanced: Vec::new(),
            seqs,
        }
    }
}

/// Past this many accounts the committed-seq cache starts over (it only saves reads).
const SEQ_CACHE_CAP: usize = 100_000;

/// Each account's newest seq, kept by the writer instead of re-read (and re-written through a
/// trigger) for every event: an event takes `seq + 1` from here, and the group writes each
/// log's `account_log` row once, just before its COMMIT. That is sound because this thread is
/// the only writer; the row and the events still commit together, so readers see them agree.
#[derive(Debug, Default)]
struct Seqs {
    /// As committed: what `account_log` holds.
    committed: HashMap<AccountId, i64>,
    /// Advanced by the open transaction, not yet committed: the first seq it took in each
    /// log, and the newest.
    open: HashMap<AccountId, OpenLog>,
}

#[derive(Debug, Clone, Copy)]
struct OpenLog {
    first: i64,
    newest: i64,
}

impl Seqs {
    /// The next seq of `account`'s log in the open transaction.
    fn next(&mut self, conn: &Connection, account: AccountId) -> StoreResult<i64> {
        if let Some(log) = self.open.get_mut(&account) {
            log.newest += 1;
            return Ok(log.newest);
        }
        let committed = match self.committed.get(&account) {
            Some(seq) => *seq,
            None => one(
                conn,
                "SELECT last_seq FROM account_log WHERE account_id = ?1",
                params![blob(&account.0)],
                first_int,
            )?
            .unwrap_or(0),
        };
        let seq = committed + 1;
        self.open.insert(
            account,
            OpenLog {
                first: seq,
                newest: seq,
            },
        );
        Ok(seq)
    }

    /// The first seq the open transaction gave each log it advanced.
    fn first_seqs(&self) -> impl Iterator<Item = (AccountId, i64)> + '_ {
        self.open.iter().map(|(account, log)| (*account, log.first))
    }

    /// Starts a transaction's bookkeeping afresh (whatever happened to the last one).
    fn begin(&mut self) {
        self.open.clear();
    }

    /// Writes the open transaction's counters into `account_log`, as its last statements.
    fn write(&self, conn: &Connection) -> StoreResult<()> {
        for (account, log) in &self.open {
            run(
                conn,
                "INSERT INTO account_log (account_id, last_seq) VALUES (?1, ?2) \
                 ON CONFLICT (account_id) DO UPDATE SET last_seq = excluded.last_seq",
                params![blob(&account.0), log.newest],
            )?;
        }
        Ok(())
    }

    /// The open transaction committed.
    fn committed(&mut self) {
        if self.committed.len() + self.open.len() > SEQ_CACHE_CAP {
            self.committed.clear();
        }
        self.committed.extend(
            self.open
                .drain()
                .map(|(account, log)| (account, log.newest)),
        );
    }
}

type Reply = durability::Reply<Out>;

/// Copies the WAL back into the database file on a thread of its own (see [`checkpointer`]).
pub(super) struct Checkpoints {
    conn: Connection,
}

impl Checkpoints {
    /// A second read-write connection to the database file, used only for checkpoints.
    pub(super) fn new(conn: Connection) -> Self {
        Checkpoints { conn }
    }
}

/// At most one checkpoint per this long: each costs two fsyncs whatever it copies.
const CHECKPOINT_EVERY: StdDuration = StdDuration::from_millis(100);

/// What makes a database file's commits durable: its checkpointer and the syncer, which
/// answers committed groups once the WAL is on disk (see [`durability`]).
pub(super) struct FileDurability {
    pub(super) checkpoints: Checkpoints,
    pub(super) durability: Arc<Durability>,
}

/// Starts the writer thread (and, for a database file, the checkpointer and the syncer); it
/// runs until the channel closes or a `Close` arrives.
pub(super) fn spawn(
    conn: Connection,
    file: Option<FileDurability>,
    rx: mpsc::Receiver<Cmd>,
    log: broadcast::Sender<LogAdvanced>,
    caches: Arc<Caches>,
) -> StoreResult<()> {
    let failed = |e: std::io::Error| StoreError::Unavailable(format!("cannot start a thread: {e}"));
    let (settle, checkpointer) = match file {
        Some(FileDurability {
            checkpoints,
            durability,
        }) => {
            let path = conn.path().map(std::path::PathBuf::from).ok_or_else(|| {
                StoreError::Unavailable("the write connection has no database file".into())
            })?;
            let syncer = Syncer::spawn(&path, Arc::clone(&durability), log.clone())?;
            let checkpointer = CheckpointTrigger::spawn(checkpoints.conn).map_err(failed)?;
            (Settle::Synced { syncer, durability }, Some(checkpointer))
        }
        None => (Settle::Direct { log }, None),
    };
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || writer(conn, settle, checkpointer, rx, &caches))
        .map(|_| ())
        .map_err(failed)
}

/// Where a committed group's answers go.
enum Settle {
    /// An in-memory database has no disk to wait for: answer at once.
    Direct { log: broadcast::Sender<LogAdvanced> },
    /// A database file: through the syncer, once the WAL is on disk.
    Synced {
        syncer: Syncer<Out>,
        durability: Arc<Durability>,
    },
}

impl Settle {
    /// Numbers the group about to COMMIT and announces it, with the seqs it takes, to readers
    /// (before its rows can be seen). Every number handed out must reach
    /// [`Settle::committed`], even if the COMMIT fails, or readers waiting for it would wait
    /// for the next write.
    fn before_commit(&self, seqs: &Seqs) -> u64 {
        match self {
            Settle::Direct { .. } => 0,
            Settle::Synced { durability, .. } => durability.begin_group(seqs.first_seqs()),
        }
    }

    fn committed(&self, committed: Committed<Out>) {
        match self {
            Settle::Direct { log } => durability::answer([committed], log),
            Settle::Synced { syncer, .. } => syncer.hand_over(committed),
        }
    }

    /// Why no write may run, once the disk has failed the store.
    fn refusal(&self) -> Option<String> {
        match self {
            Settle::Direct { .. } => None,
            Settle::Synced { durability, .. } => durability.failure(),
        }
    }

    fn finish(self) {
        if let Settle::Synced { syncer, .. } = self {
            syncer.finish();
        }
    }
}

/// The writer's end of the checkpointer thread. Only the first commit since the thread last
/// looked wakes it: a wake per commit cost a context switch each (~1,500 a second under load,
/// 3–4% of a core, docs/benchmarks.md) for a thread that checkpoints ten times a second.
struct CheckpointTrigger {
    wake: std::sync::mpsc::SyncSender<()>,
    /// Set by the checkpointer just before it checkpoints; the next commit takes it and wakes
    /// the thread, so a commit made during a checkpoint is covered by the next one.
    armed: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl CheckpointTrigger {
    fn spawn(conn: Connection) -> std::io::Result<Self> {
        let (wake, wakes) = std::sync::mpsc::sync_channel(1);
        let armed = Arc::new(AtomicBool::new(true));
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn({
                let armed = Arc::clone(&armed);
                move || checkpointer(conn, wakes, &armed)
            })?;
        Ok(CheckpointTrigger {
            wake,
            armed,
            thread,
        })
    }

    /// After each COMMIT: there is something to copy back.
    fn committed(&self) {
        if self.armed.swap(false, Ordering::AcqRel) {
            // Full means a wake is already waiting.
            let _ = self.wake.try_send(());
        }
    }

    /// Stops the thread (ending any rest it is in) and waits for it.
    fn stop(self) {
        drop(self.wake);
        if self.thread.join().is_err() {
            tracing::error!("the SQLite checkpointer stopped abnormally");
        }
    }
}

/// Checkpoints (PASSIVE: never waiting for readers or the writer) after commits, at most every
/// [`CHECKPOINT_EVERY`]. SQLite's automatic checkpoint would run inside the writer's COMMIT,
/// on the path every waiting sender is on; here it runs beside the writer (WAL allows one
/// checkpointer and one writer at once). Ends when the writer drops its [`CheckpointTrigger`].
fn checkpointer(conn: Connection, wakes: std::sync::mpsc::Receiver<()>, armed: &AtomicBool) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut last: Option<Instant> = None;
    while wakes.recv().is_ok() {
        if let Some(last) = last {
            // Unarmed, so no commit wakes this rest; only the writer stopping ends it early.
            let rest = CHECKPOINT_EVERY.saturating_sub(last.elapsed());
            if let Err(RecvTimeoutError::Disconnected) = wakes.recv_timeout(rest) {
                return;
            }
        }
        armed.store(true, Ordering::Release);
        let checkpointed: rusqlite::Result<()> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(error) = checkpointed {
            tracing::warn!(%error, "SQLite checkpoint");
        }
        last = Some(Instant::now());
    }
}

fn writer(
    conn: Connection,
    settle: Settle,
    checkpointer: Option<CheckpointTrigger>,
    mut rx: mpsc::Receiver<Cmd>,
    caches: &Caches,
) {
    let mut closers = Vec::new();
    let mut batch = Vec::with_capacity(BATCH_CAP);
    let mut seqs = Seqs::default();
    loop {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < BATCH_CAP {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        let mut writes = Vec::with_capacity(batch.len());
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Write { op, reply } => writes.push((op, reply)),
                Cmd::Read(read) => read(&conn),
                Cmd::Close { done } => {
                    // No new commands from now on; those already queued still run.
                    rx.close();
                    closers.push(done);
                }
            }
        }
        if writes.is_empty() {
            continue;
        }
        if let Some(refusal) = settle.refusal() {
            for (_, reply) in writes {
                let _ = reply.send(Err(StoreError::Unavailable(refusal.clone())));
            }
            continue;
        }
        run_batch(&conn, writes, &settle, &mut seqs, caches);
        if let Some(checkpointer) = &checkpointer {
            checkpointer.committed();
        }
    }
    // Every group handed over is answered before the connection closes.
    settle.finish();
    if let Some(checkpointer) = checkpointer {
        checkpointer.stop();
    }
    // The last connection to close checkpoints and removes the WAL.
    if let Err((_, error)) = conn.close() {
        tracing::warn!(%error, "closing the SQLite write connection");
    }
    for done in closers {
        let _ = done.send(());
    }
}

/// A statement without parameters or rows (transaction control), prepared once.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(error) = exec(conn, "ROLLBACK") {
            tracing::error!(%error, "rolling back a write batch");
        }
    }
}

/// Why a group failed, to tell each of its commands (a `StoreError` is not `Clone`).
fn unavailable_reason(error: StoreError) -> String {
    match error {
        StoreError::Unavailable(reason) => reason,
        other => other.to_string(),
    }
}

/// What the group in progress may change that other threads cache: evicted right after its
/// COMMIT, before anyone is answered (see [`super::cache`]).
struct Evictions<'a> {
    caches: &'a Caches,
    changes: Changes,
}

impl Evictions<'_> {
    fn apply(&self) {
        self.caches.evict(&self.changes);
    }
}

/// Writes the group's log counters and COMMITs the open transaction as group `group`; on
/// failure rolls back and hands the group over empty, so readers waiting for its number are
/// released. Either way, evicts what the group may have changed from the caches.
fn commit(
    conn: &Connection,
    settle: &Settle,
    group: u64,
    seqs: &mut Seqs,
    evictions: &Evictions<'_>,
) -> StoreResult<()> {
    let unavailable = StoreError::Unavailable;
    let committed = if conn.is_autocommit() {
        Err(unavailable(
            "the write transaction was rolled back by SQLite".to_owned(),
        ))
    } else {
        seqs.write(conn)
            .map_err(|e| unavailable(format!("cannot record the logs' seqs: {e}")))
            // With a database file, returns once the WAL frames are written, not flushed: the
            // syncer flushes them before anyone is answered.
            .and_then(|()| {
                exec(conn, "COMMIT").map_err(|e| unavailable(format!("commit failed: {e}")))
            })
    };
    evictions.apply();
    if committed.is_ok() {
        seqs.committed();
    } else {
        rollback(conn);
        settle.committed(Committed {
            group,
            answers: Vec::new(),
            advanced: Vec::new(),
        });
    }
    committed
}

fn run_batch(
    conn: &Connection,
    writes: Vec<(Op, Reply)>,
    settle: &Settle,
    seqs: &mut Seqs,
    caches: &Caches,
) {
    let evictions = Evictions {
        caches,
        changes: Changes::of(writes.iter().map(|(op, _)| op)),
    };
    // Commands rarely fail, so the group first runs as one plain transaction: no savepoint
    // per command, whose undo copies of every page it touches cost more than the command.
    if let Some((group, outs)) = run_plain(conn, &writes, settle, seqs, &evictions) {
        let mut advanced = Vec::new();
        let answers = writes
            .into_iter()
            .zip(outs)
            .map(|((_, reply), (out, hints))| {
                advanced.extend(hints);
                (reply, Ok(out))
            })
            .collect();
        settle.committed(Committed {
            group,
            answers,
            advanced,
        });
        return;
    }
    // One failed (and the whole group was rolled back): run it again with a savepoint per
    // command, so the failure is undone alone. Same statements on the same data, so the
    // same answers, as if this were the only way it ran.
    run_with_savepoints(conn, writes, settle, seqs, &evictions);
}

/// A command's answer and the logs it advanced.
type Executed = (Out, Vec<LogAdvanced>);

/// The group as one transaction, committed (its number and answers); `None` (rolled back) if
/// any command failed.
fn run_plain(
    conn: &Connection,
    writes: &[(Op, Reply)],
    settle: &Settle,
    seqs: &mut Seqs,
    evictions: &Evictions<'_>,
) -> Option<(u64, Vec<Executed>)> {
    exec(conn, "BEGIN IMMEDIATE").ok()?;
    seqs.begin();
    let mut outs = Vec::with_capacity(writes.len());
    for (op, _) in writes {
        let mut effects = Effects::new(seqs);
        match execute(conn, op, &mut effects) {
            Ok(out) => outs.push((out, effects.advanced)),
            Err(_) => {
                rollback(conn);
                return None;
            }
        }
    }
    let group = settle.before_commit(seqs);
    commit(conn, settle, group, seqs, evictions).ok()?;
    Some((group, outs))
}

fn run_with_savepoints(
    conn: &Connection,
    writes: Vec<(Op, Reply)>,
    settle: &Settle,
    seqs: &mut Seqs,
    evictions: &Evictions<'_>,
) {
    seqs.begin();
    if let Err(error) = exec(conn, "BEGIN IMMEDIATE") {
        let message = format!("cannot begin a write transaction: {error}");
        for (_, reply) in writes {
            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
        }
        return;
    }

    let mut finished = Vec::with_capacity(writes.len());
    let mut advanced = Vec::new();
    let mut broken: Option<String> = None;
    for (op, reply) in writes {
        if let Some(message) = &broken {
            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            continue;
        }
        if let Err(error) = exec(conn, "SAVEPOINT cmd") {
            let message = format!("write transaction failed: {error}");
            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            broken = Some(message);
            continue;
        }
        // The counters as they were, to undo this command's seqs with its rows.
        let before = seqs.open.clone();
        let mut effects = Effects::new(seqs);
        let result = execute(conn, &op, &mut effects);
        let mut hints = effects.advanced;
        // Close this command's savepoint, undoing it if it failed.
        let closed = if result.is_ok() {
            exec(conn, "RELEASE cmd")
        } else {
            hints.clear();
            seqs.open = before;
            exec(conn, "ROLLBACK TO cmd").and_then(|()| exec(conn, "RELEASE cmd"))
        };
        if let Err(error) = closed {
            // The transaction is in an unknown state (SQLite may have rolled it back on an
            // I/O error or a full disk): give up on the whole batch.
            let message = format!("write transaction failed: {error}");
            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            broken = Some(message);
            continue;
        }
        advanced.extend(hints);
        finished.push((reply, result));
    }

    let committed = match broken {
        Some(message) => {
            rollback(conn);
            Err(message)
        }
        None => {
            let group = settle.before_commit(seqs);
            commit(conn, settle, group, seqs, evictions)
                .map(|()| group)
                .map_err(unavailable_reason)
        }
    };
    match committed {
        Ok(group) => settle.committed(Committed {
            group,
            answers: finished,
            advanced,
        }),
        Err(message) => {
            tracing::error!(%message, "SQLite write batch lost");
            for (reply, _) in finished {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

fn execute(conn: &Connection, op: &Op, fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::CreateAccount(ref account) => create_account(conn, account),
        Op::CreateDevice(ref device) => create_device(conn, device),
        Op::TouchDevice { id, now } => touch_device(conn, id, now),
        Op::RevokeDevice { account, device } => revoke_device(conn, account, device),
        Op::AddInventory(ref numbers) => add_inventory(conn, numbers),
        Op::ClaimNumber {
            account,
            ref number,
            now,
        } => claim_number(conn, account, number, now),
        Op::ReleaseNumber {
            account,
            ref number,
            available_at,
        } => release_number(conn, account, number, available_at),
        Op::PutIdentityCode(ref code) => put_identity_code(conn, code),
        Op::CountFailedAttempt { account, id } => count_failed_attempt(conn, account, id),
        Op::MarkVerified { account, id, at } => mark_verified(conn, account, id, at),
        Op::Deliver(ref delivery) => deliver(conn, fx, delivery),
        Op::UpdateStatus(ref update) => {
            let changed = apply_status(
                conn,
                fx,
                update.message_id,
                update.status,
                update.failure_reason.clone(),
                update.at,
            )?
            .ok_or(StoreError::NotFound)?;
            let message = one(
                conn,
                &MESSAGE_BY_ID,
                params![blob(&update.message_id.0)],
                |row| rows::message(row),
            )?
            .ok_or(StoreError::NotFound)?;
            Ok(Out::Status(StatusOutcome { message, changed }))
        }
        Op::MarkRead {
            account,
            conversation,
            up_to,
            at,
        } => mark_read(conn, fx, account, conversation, up_to, at),
        Op::DeleteMessage { account, id, at } => delete_message(conn, fx, account, id, at),
        Op::PutContact {
            account,
            ref contact,
        } => put_contact(conn, fx, account, contact),
        Op::ClaimOutbound {
            limit,
            now,
            lease_until,
        } => claim_outbound(conn, limit, now, lease_until),
        Op::FinishOutbound {
            message_id,
            ref outcome,
            at,
        } => finish_outbound(conn, fx, message_id, outcome, at),
        Op::SetOptOut {
            ref did,
            ref remote,
            opted_out,
            at,
        } => set_opt_out(conn, did, remote, opted_out, at),
        Op::ApplyReceipts(ref receipts) => apply_receipts(conn, fx, receipts),
        Op::ExpireEarlyReceipts { received_before } => {
            let removed = run(
                conn,
                "DELETE FROM early_receipts WHERE received_at < ?1",
                params![micros(received_before)],
            )?;
            Ok(Out::Removed(u64::try_from(removed).unwrap_or(u64::MAX)))
        }
    }
}

/// Appends one event to `account`'s log: one statement (the trigger moves the counter).
fn append(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    at: DateTime<Utc>,
    kind: &EventKind,
) -> StoreResult<i64> {
    let payload = rows::event_payload(kind)?;
    let seq = fx.seqs.next(conn, account)?;
    run(
        conn,
        "INSERT INTO events (account_id, seq, at, type, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![blob(&account.0), seq, micros(at), kind.type_name(), payload],
    )?;
    fx.advanced.push(LogAdvanced {
        account_id: account,
        seq,
    });
    Ok(seq)
}

fn account_conflict(error: StoreError) -> StoreError {
    match conn::unique_violation(&error).and_then(rules::account_conflict) {
        Some(conflict) => StoreError::Conflict(conflict),
        None => error,
    }
}

fn create_account(conn: &Connection, account: &NewAccount) -> StoreResult<Out> {
    run(
        conn,
        "INSERT INTO accounts (id, username, email, password_hash, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            blob(&account.id.0),
            account.username,
            account.email,
            account.password_hash,
            micros(account.created_at)
        ],
    )
    .map_err(account_conflict)?;
    run(
        conn,
        "INSERT INTO account_log (account_id, last_seq) VALUES (?1, 0)",
        params![blob(&account.id.0)],
    )?;
    Ok(Out::Done)
}

fn create_device(conn: &Connection, device: &NewDevice) -> StoreResult<Out> {
    run(
        conn,
        "INSERT INTO devices (id, account_id, name, has_cellular, token_hash, created_at, \
                              last_seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            blob(&device.id.0),
            blob(&device.account_id.0),
            device.name,
            device.has_cellular,
            &device.token_hash.0[..],
            micros(device.created_at)
        ],
    )?;
    Ok(Out::Done)
}

fn touch_device(conn: &Connection, id: DeviceId, now: DateTime<Utc>) -> StoreResult<Out> {
    run(
        conn,
        "UPDATE devices SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?3",
        params![
            blob(&id.0),
            micros(now),
            micros(rules::last_seen_cutoff(now))
        ],
    )?;
    Ok(Out::Done)
}

fn revoke_device(conn: &Connection, account: AccountId, device: DeviceId) -> StoreResult<Out> {
    let deleted = run(
        conn,
        "DELETE FROM devices WHERE id = ?1 AND account_id = ?2",
        params![blob(&device.0), blob(&account.0)],
    )?;
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(Out::Done)
}

fn add_inventory(conn: &Connection, numbers: &[InventoryNumber]) -> StoreResult<Out> {
    for n in numbers {
        run(
            conn,
            "INSERT INTO numbers (number, carrier, country, owner, available_at) \
             VALUES (?1, ?2, ?3, NULL, 0) ON CONFLICT (number) DO NOTHING",
            params![n.number, n.carrier, n.country],
        )?;
    }
    Ok(Out::Done)
}

fn claim_number(
    conn: &Connection,
    account: AccountId,
    number: &str,
    now: DateTime<Utc>,
) -> StoreResult<Out> {
    let (owner, available_at) = one(
        conn,
        "SELECT owner, available_at FROM numbers WHERE number = ?1",
        params![number],
        |row| Ok((row.opt_uuid("owner")?, row.int("available_at")?)),
    )?
    .ok_or(StoreError::NotFound)?;
    rules::may_claim_number(account, owner.map(AccountId), available_at > micros(now))?;
    let has = one(
        conn,
        "SELECT 1 FROM numbers WHERE owner = ?1",
        params![blob(&account.0)],
        |_| Ok(()),
    )?;
    if has.is_some() {
        return Err(StoreError::Conflict(Conflict::AlreadyHasNumber));
    }
    run(
        conn,
        "UPDATE numbers SET owner = ?1 WHERE number = ?2 AND owner IS NULL",
        params![blob(&account.0), number],
    )?;
    Ok(Out::Done)
}

fn release_number(
    conn: &Connection,
    account: AccountId,
    number: &str,
    available_at: DateTime<Utc>,
) -> StoreResult<Out> {
    let released = run(
        conn,
        "UPDATE numbers SET owner = NULL, available_at = ?3 WHERE number = ?1 AND owner = ?2",
        params![number, blob(&account.0), micros(available_at)],
    )?;
    if released == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(Out::Done)
}

fn put_identity_code(conn: &Connection, code: &NewIdentityCode) -> StoreResult<Out> {
    let id = one(
        conn,
        "INSERT INTO identities (id, account_id, kind, value, status, code_hash, \
                                 code_expires_at, attempts, created_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, 0, ?7) \
         ON CONFLICT (account_id, kind, value) DO UPDATE SET \
             code_hash = excluded.code_hash, code_expires_at = excluded.code_expires_at, \
             attempts = 0 \
         RETURNING id",
        params![
            blob(&code.id.0),
            blob(&code.account_id.0),
            code.kind.as_str(),
            code.value,
            code.code_hash,
            micros(code.expires_at),
            micros(code.now)
        ],
        first_uuid,
    )?
    .ok_or_else(|| rows::corrupt("the identity upsert returned no id"))?;
    Ok(Out::Identity(id.into()))
}

fn count_failed_attempt(conn: &Connection, account: AccountId, id: IdentityId) -> StoreResult<Out> {
    let attempts = one(
        conn,
        "UPDATE identities SET attempts = attempts + 1 WHERE id = ?1 AND account_id = ?2 \
         RETURNING attempts",
        params![blob(&id.0), blob(&account.0)],
        first_int,
    )?
    .ok_or(StoreError::NotFound)?;
    Ok(Out::Count(rows::to_u32(attempts, "attempts")?))
}

fn mark_verified(
    conn: &Connection,
    account: AccountId,
    id: IdentityId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let (kind, value) = one(
        conn,
        "SELECT kind, value FROM identities WHERE id = ?1 AND account_id = ?2",
        params![blob(&id.0), blob(&account.0)],
        |row| Ok((row.text("kind")?, row.text("value")?)),
    )?
    .ok_or(StoreError::NotFound)?;
    // The newest proof of possession wins: anyone else's verified claim goes back to pending
    // first, so the partial unique index never sees two.
    run(
        conn,
        "UPDATE identities SET status = 'pending', verified_at = NULL \
         WHERE kind = ?1 AND value = ?2 AND status = 'verified' AND id <> ?3",
        params![kind, value, blob(&id.0)],
    )?;
    run(
        conn,
        "UPDATE identities SET status = 'verified', code_hash = NULL, code_expires_at = NULL, \
             attempts = 0, verified_at = ?2 \
         WHERE id = ?1",
        params![blob(&id.0), micros(at)],
    )?;
    Ok(Out::Done)
}

/// A conversation is found, then updated or created, rather than upserted with RETURNING:
/// SQLite builds a temporary b-tree for every RETURNING, which cost more than the extra
/// lookup (this thread is the only writer, so nothing can come between the two).
const FIND_CONVERSATION: &str = "SELECT id FROM conversations WHERE account_id = ?1 AND peer = ?2";
const BUMP_CONVERSATION: &str = "UPDATE conversations SET last_message_id = ?2, \
         updated_at = max(updated_at, ?3), unread = unread + ?4 \
     WHERE id = ?1";
const CREATE_CONVERSATION: &str = "INSERT INTO conversations \
         (id, account_id, peer, last_message_id, updated_at, unread) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The conflict target is only a guard: a repeated `(account, client_id)` is answered before
/// this insert, so a row it does not insert fails the command.
const INSERT_MESSAGE: &str = "INSERT INTO messages (id, account_id, conversation_id, \
         direction, from_addr, to_addr, body, status, route, client_id, encoding, segments, \
         created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13) \
     ON CONFLICT (account_id, client_id) DO NOTHING";

fn deliver(conn: &Connection, fx: &mut Effects<'_>, delivery: &Delivery) -> StoreResult<Out> {
    let copies: Vec<&NewMessage> = delivery
        .sender
        .iter()
        .chain(delivery.recipient.iter())
        .collect();
    let has_sender = delivery.sender.is_some();

    // A repeated send (the same client_id, earlier or earlier in this very transaction)
    // answers with the first message and writes nothing.
    if let Some(sender) = &delivery.sender {
        if let Some(first) = first_send(conn, sender)? {
            return Ok(Out::Delivered(Delivered {
                sender: Some(first),
                recipient: None,
                created: false,
            }));
        }
    }

    // Checked inside the write, so no STOP stored before this send can be missed.
    if let Some((did, remote)) = rules::opt_out_to_check(delivery) {
        let stopped = one(conn, super::OPTED_OUT, params![did, remote], |_| Ok(()))?;
        if stopped.is_some() {
            return Ok(Out::RecipientStopped);
        }
    }

    // Each copy's conversation, found or created.
    let mut messages = Vec::with_capacity(copies.len());
    for copy in &copies {
        let unread = i64::from(copy.direction == airtext_api::messages::Direction::Inbound);
        let found = one(
            conn,
            FIND_CONVERSATION,
            params![blob(&copy.account_id.0), copy.peer],
            first_uuid,
        )?;
        let conversation = match found {
            Some(id) => {
                run(
                    conn,
                    BUMP_CONVERSATION,
                    params![blob(&id), blob(&copy.id.0), micros(copy.created_at), unread],
                )?;
                ConversationId::from(id)
            }
            None => {
                let id = ConversationId::new();
                run(
                    conn,
                    CREATE_CONVERSATION,
                    params![
                        blob(&id.0),
                        blob(&copy.account_id.0),
                        copy.peer,
                        blob(&copy.id.0),
                        micros(copy.created_at),
                        unread
                    ],
                )?;
                id
            }
        };
        messages.push(rows::stored_message(copy, conversation));
    }

    for (copy, message) in copies.iter().zip(&messages) {
        let client_id: Option<Uuid> = copy.client_id.map(|c| c.0);
        let inserted = run(
            conn,
            INSERT_MESSAGE,
            params![
                blob(&copy.id.0),
                blob(&copy.account_id.0),
                blob(&message.conversation_id.0),
                copy.direction.as_str(),
                copy.from,
                copy.to,
                copy.body,
                copy.status.as_str(),
                copy.route.as_str(),
                opt_blob(&client_id),
                copy.encoding.as_str(),
                i64::from(copy.segments),
                micros(copy.created_at)
            ],
        )?;
        if inserted == 0 {
            // Only a client_id seen before conflicts, and that was answered above.
            return Err(rows::corrupt(format!(
                "message {} of a delivery was not inserted",
                copy.id
            )));
        }
    }

    for (copy, message) in copies.iter().zip(&messages) {
        append(
            conn,
            fx,
            copy.account_id,
            copy.created_at,
            &EventKind::MessageCreated {
                message: message.clone(),
            },
        )?;
    }

    if let (Some(enqueue), Some(sender)) = (&delivery.enqueue, &delivery.sender) {
        run(
            conn,
            "INSERT INTO outbound (message_id, account_id, from_addr, to_addr, body, \
                                   attempts, not_before, lease_until, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?6)",
            params![
                blob(&sender.id.0),
                blob(&sender.account_id.0),
                sender.from,
                sender.to,
                sender.body,
                micros(sender.created_at),
                enqueue.leased_until.map(micros)
            ],
        )?;
    }

    let mut messages = messages.into_iter();
    let sender = if has_sender { messages.next() } else { None };
    let recipient = if delivery.recipient.is_some() {
        messages.next()
    } else {
        None
    };
    Ok(Out::Delivered(Delivered {
        sender,
        recipient,
        created: true,
    }))
}

/// The message an earlier send with `sender`'s client_id stored, if any.
fn first_send(conn: &Connection, sender: &NewMessage) -> StoreResult<Option<Message>> {
    let Some(client_id) = sender.client_id else {
        return Ok(None);
    };
    one(
        conn,
        &FIRST_SEND,
        params![blob(&sender.account_id.0), blob(&client_id.0)],
        |row| rows::message(row),
    )
}

static FIRST_SEND: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM messages m WHERE m.account_id = ?1 AND m.client_id = ?2",
        rows::MESSAGE_COLUMNS
    )
});

static MESSAGE_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM messages m WHERE m.id = ?1",
        rows::MESSAGE_COLUMNS
    )
});

/// What a status change needs of its message. Not the whole row: every text sent has its
/// status advanced at least once, in the single writer, and decoding its body and addresses
/// there was for nothing.
struct StatusRow {
    owner: AccountId,
    conversation_id: ConversationId,
    status: SendStatus,
    failure_reason: Option<String>,
}

const STATUS_ROW: &str =
    "SELECT account_id, conversation_id, status, failure_reason FROM messages WHERE id = ?1";

/// Whether a status report found its message (`None`: no such message) and moved it.
type Advanced = Option<bool>;

/// Applies a status report through `SendStatus::advance`.
fn apply_status(
    conn: &Connection,
    fx: &mut Effects<'_>,
    id: MessageId,
    incoming: SendStatus,
    failure_reason: Option<String>,
    at: DateTime<Utc>,
) -> StoreResult<Advanced> {
    advance_status(conn, fx, id, incoming, failure_reason, at, None)
}

/// Which carrier took a text, under which id, at what cost.
struct SentThrough<'a> {
    carrier: &'a str,
    carrier_message_id: &'a str,
    cost: Option<f64>,
}

/// [`apply_status`], also recording `sent_through` on the message (whether or not the status
/// moves).
fn advance_status(
    conn: &Connection,
    fx: &mut Effects<'_>,
    id: MessageId,
    incoming: SendStatus,
    failure_reason: Option<String>,
    at: DateTime<Utc>,
    sent_through: Option<&SentThrough<'_>>,
) -> StoreResult<Advanced> {
    let found = one(conn, STATUS_ROW, params![blob(&id.0)], |row| {
        Ok(StatusRow {
            owner: AccountId::from(row.uuid("account_id")?),
            conversation_id: ConversationId::from(row.uuid("conversation_id")?),
            status: rows::status(&row.text("status")?)?,
            failure_reason: row.opt_text("failure_reason")?,
        })
    })?;
    let Some(message) = found else {
        return Ok(None);
    };
    let Some(change) = rules::status_change(
        message.status,
        message.failure_reason,
        incoming,
        failure_reason,
    ) else {
        if let Some(sent) = sent_through {
            run(
                conn,
                "UPDATE messages SET carrier = ?2, carrier_message_id = ?3, cost = ?4 \
                 WHERE id = ?1",
                params![
                    blob(&id.0),
                    sent.carrier,
                    sent.carrier_message_id,
                    sent.cost
                ],
            )?;
        }
        return Ok(Some(false));
    };
    match sent_through {
        None => run(
            conn,
            "UPDATE messages SET status = ?2, failure_reason = ?3, updated_at = ?4 WHERE id = ?1",
            params![
                blob(&id.0),
                change.status.as_str(),
                change.failure_reason,
                micros(at)
            ],
        )?,
        Some(sent) => run(
            conn,
            "UPDATE messages SET status = ?2, failure_reason = ?3, updated_at = ?4, \
                 carrier = ?5, carrier_message_id = ?6, cost = ?7 \
             WHERE id = ?1",
            params![
                blob(&id.0),
                change.status.as_str(),
                change.failure_reason,
                micros(at),
                sent.carrier,
                sent.carrier_message_id,
                sent.cost
            ],
        )?,
    };
    append(
        conn,
        fx,
        message.owner,
        at,
        &change.into_event(id, message.conversation_id, at),
    )?;
    Ok(Some(true))
}

/// Recounts unread from the marker: inbound messages after it (all inbound when unset).
const RECOUNT_UNREAD: &str = "(SELECT count(*) FROM messages \
     WHERE messages.conversation_id = conversations.id AND messages.direction = 'inbound' \
       AND (conversations.read_up_to IS NULL OR messages.id > conversations.read_up_to))";

fn mark_read(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    conversation: ConversationId,
    up_to: MessageId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let current = one(
        conn,
        "SELECT read_up_to FROM conversations WHERE id = ?1 AND account_id = ?2",
        params![blob(&conversation.0), blob(&account.0)],
        first_opt_uuid,
    )?
    .ok_or(StoreError::NotFound)?
    .map(MessageId::from);
    let in_conversation = one(
        conn,
        "SELECT 1 FROM messages WHERE id = ?1 AND account_id = ?2 AND conversation_id = ?3",
        params![blob(&up_to.0), blob(&account.0), blob(&conversation.0)],
        |_| Ok(()),
    )?;
    if in_conversation.is_none() {
        return Err(StoreError::NotFound);
    }
    // Ids are UUIDv7: byte order is time order, the same order SQLite compares blobs in.
    let marker = rules::read_marker(current, up_to);
    let unread = one(
        conn,
        // SET expressions see the row's old values, so the count uses the new marker (?2).
        "UPDATE conversations SET read_up_to = ?2, \
             unread = (SELECT count(*) FROM messages \
                       WHERE conversation_id = ?1 AND direction = 'inbound' AND id > ?2) \
         WHERE id = ?1 RETURNING unread",
        params![blob(&conversation.0), blob(&marker.0)],
        first_int,
    )?
    .ok_or(StoreError::NotFound)?;
    let event = rules::read_event(conversation, marker, rows::to_u32(unread, "unread")?);
    append(conn, fx, account, at, &event)?;
    Ok(Out::Done)
}

fn delete_message(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    id: MessageId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let conversation = one(
        conn,
        "DELETE FROM messages WHERE id = ?1 AND account_id = ?2 RETURNING conversation_id",
        params![blob(&id.0), blob(&account.0)],
        first_uuid,
    )?
    .ok_or(StoreError::NotFound)?;
    run(
        conn,
        &format!(
            "UPDATE conversations SET \
                 last_message_id = (SELECT id FROM messages WHERE conversation_id = ?1 \
                                    ORDER BY id DESC LIMIT 1), \
                 unread = {RECOUNT_UNREAD} \
             WHERE id = ?1"
        ),
        params![blob(&conversation)],
    )?;
    append(
        conn,
        fx,
        account,
        at,
        &EventKind::MessageDeleted {
            message_id: id,
            conversation_id: conversation.into(),
        },
    )?;
    Ok(Out::Done)
}

fn put_contact(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    contact: &Contact,
) -> StoreResult<Out> {
    run(
        conn,
        "INSERT INTO contacts (account_id, address, path, fallback, name, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (account_id, address) DO UPDATE SET path = excluded.path, \
             fallback = excluded.fallback, name = excluded.name, \
             updated_at = excluded.updated_at",
        params![
            blob(&account.0),
            contact.address,
            contact.path.as_str(),
            contact.fallback,
            contact.name,
            micros(contact.updated_at)
        ],
    )?;
    let at = contact.updated_at;
    append(
        conn,
        fx,
        account,
        at,
        &EventKind::ContactUpdated {
            contact: contact.clone(),
        },
    )?;
    Ok(Out::Done)
}

fn claim_outbound(
    conn: &Connection,
    limit: u32,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> StoreResult<Out> {
    let mut jobs = all(
        conn,
        "UPDATE outbound SET lease_until = ?2 \
         WHERE message_id IN ( \
             SELECT message_id FROM outbound \
             WHERE not_before <= ?1 AND (lease_until IS NULL OR lease_until <= ?1) \
             ORDER BY not_before, created_at LIMIT ?3) \
         RETURNING message_id, account_id, from_addr, to_addr, body, attempts, created_at",
        params![micros(now), micros(lease_until), i64::from(limit)],
        |row| rows::outbound_job(row),
    )?;
    // RETURNING has no order.
    rules::oldest_first(&mut jobs);
    Ok(Out::Jobs(jobs))
}

fn finish_outbound(
    conn: &Connection,
    fx: &mut Effects<'_>,
    message_id: MessageId,
    outcome: &OutboundOutcome,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    match outcome {
        OutboundOutcome::Sent {
            carrier,
            carrier_message_id,
            cost,
        } => {
            let job = run(
                conn,
                "DELETE FROM outbound WHERE message_id = ?1",
                params![blob(&message_id.0)],
            )?;
            // A receipt may already have moved it past `sent`; advance decides. The carrier's
            // record is written either way, in the same statement as the status if it moves.
            let sent_through = SentThrough {
                carrier,
                carrier_message_id,
                cost: *cost,
            };
            let recorded = advance_status(
                conn,
                fx,
                message_id,
                SendStatus::Sent,
                None,
                at,
                Some(&sent_through),
            )?;
            if job == 0 && recorded.is_none() {
                return Err(StoreError::NotFound);
            }
            // Receipts that overtook this record were held for it; this thread is the only
            // writer, so none can arrive between the record and this.
            apply_early_receipts(conn, fx, message_id, carrier, carrier_message_id, at)?;
        }
        OutboundOutcome::Retry { not_before, reason }
        | OutboundOutcome::Defer { not_before, reason } => {
            let attempt = i64::from(rules::counts_attempt(outcome));
            let retried = run(
                conn,
                "UPDATE outbound SET attempts = attempts + ?4, not_before = ?2, \
                     lease_until = NULL, last_error = ?3 \
                 WHERE message_id = ?1",
                params![blob(&message_id.0), micros(*not_before), reason, attempt],
            )?;
            if retried == 0 {
                return Err(StoreError::NotFound);
            }
        }
        OutboundOutcome::Failed { reason } => {
            let job = run(
                conn,
                "DELETE FROM outbound WHERE message_id = ?1",
                params![blob(&message_id.0)],
            )?;
            let status = apply_status(
                conn,
                fx,
                message_id,
                SendStatus::Failed,
                Some(reason.clone()),
                at,
            )?;
            if job == 0 && status.is_none() {
                return Err(StoreError::NotFound);
            }
        }
    }
    Ok(Out::Done)
}

fn set_opt_out(
    conn: &Connection,
    did: &str,
    remote: &str,
    opted_out: bool,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    if opted_out {
        run(
            conn,
            "INSERT INTO opt_outs (did, remote, at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (did, remote) DO NOTHING",
            params![did, remote, micros(at)],
        )?;
    } else {
        run(
            conn,
            "DELETE FROM opt_outs WHERE did = ?1 AND remote = ?2",
            params![did, remote],
        )?;
    }
    Ok(Out::Done)
}

/// The message a carrier knows by this id: the first by id, as
/// [`Store::message_by_carrier_id`](super::super::Store::message_by_carrier_id) answers.
const MESSAGE_BY_CARRIER_ID: &str = "SELECT id FROM messages \
     WHERE carrier = ?1 AND carrier_message_id = ?2 ORDER BY id LIMIT 1";

/// Applies receipts in order, each to the message carrying its carrier id, or holds it in
/// `early_receipts` when none does yet (see `Store::apply_receipts`).
fn apply_receipts(
    conn: &Connection,
    fx: &mut Effects<'_>,
    receipts: &[CarrierReceipt],
) -> StoreResult<Out> {
    let mut outcomes = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        let found = one(
            conn,
            MESSAGE_BY_CARRIER_ID,
            params![receipt.carrier, receipt.carrier_message_id],
            first_uuid,
        )?;
        let outcome = match found {
            Some(id) => {
                let message_id = MessageId::from(id);
                let applied = apply_status(
                    conn,
                    fx,
                    message_id,
                    receipt.status,
                    receipt.failure_reason.clone(),
                    receipt.received_at,
                )?;
                ReceiptOutcome::Applied {
                    message_id,
                    changed: applied == Some(true),
                }
            }
            None => {
                run(
                    conn,
                    "INSERT INTO early_receipts \
                         (carrier, carrier_message_id, status, reason, received_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (carrier, carrier_message_id, status) DO NOTHING",
                    params![
                        receipt.carrier,
                        receipt.carrier_message_id,
                        receipt.status.as_str(),
                        receipt.failure_reason,
                        micros(receipt.received_at)
                    ],
                )?;
                ReceiptOutcome::Held
            }
        };
        outcomes.push(outcome);
    }
    Ok(Out::Receipts(outcomes))
}

/// Applies (and removes) the receipts held for `(carrier, carrier_message_id)` to the message
/// that was just recorded with that id, oldest first.
fn apply_early_receipts(
    conn: &Connection,
    fx: &mut Effects<'_>,
    message_id: MessageId,
    carrier: &str,
    carrier_message_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    // A SELECT, then a DELETE only when something is held: nearly always nothing is, and
    // SQLite builds a temporary table for every RETURNING, which cost more than the lookup.
    let held = all(
        conn,
        "SELECT status, reason, received_at FROM early_receipts \
         WHERE carrier = ?1 AND carrier_message_id = ?2",
        params![carrier, carrier_message_id],
        |row| {
            Ok((
                row.time("received_at")?,
                row.text("status")?,
                row.opt_text("reason")?,
            ))
        },
    )?;
    if held.is_empty() {
        return Ok(());
    }
    run(
        conn,
        "DELETE FROM early_receipts WHERE carrier = ?1 AND carrier_message_id = ?2",
        params![carrier, carrier_message_id],
    )?;
    for receipt in rules::held_receipts(carrier, carrier_message_id, held, at) {
        apply_status(
            conn,
            fx,
            message_id,
            receipt.status,
            receipt.failure_reason,
            receipt.at,
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn commits_wake_the_checkpointer_once_until_it_looks_again() {
        let (wake, wakes) = std::sync::mpsc::sync_channel(1);
        let armed = Arc::new(AtomicBool::new(true));
        let trigger = CheckpointTrigger {
            wake,
            armed: Arc::clone(&armed),
            thread: std::thread::spawn(|| ()),
        };
        for _ in 0..1_000 {
            trigger.committed();
        }
        assert!(wakes.try_recv().is_ok());
        assert!(wakes.try_recv().is_err(), "one wake, not one per commit");
        // The checkpointer arms again just before it checkpoints.
        armed.store(true, Ordering::Release);
        trigger.committed();
        trigger.committed();
        assert!(wakes.try_recv().is_ok());
        assert!(wakes.try_recv().is_err());
        trigger.stop();
    }

    /// The database file only grows by checkpoints (in WAL mode every commit goes to the WAL).
    fn grows_past(path: &std::path::Path, size: u64) -> bool {
        let deadline = Instant::now() + StdDuration::from_secs(10);
        while Instant::now() < deadline {
            if std::fs::metadata(path).unwrap().len() > size {
                return true;
            }
            std::thread::sleep(StdDuration::from_millis(10));
        }
        false
    }

    #[test]
    fn commits_after_a_checkpoint_are_checkpointed_by_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airtext.db");
        let writer = conn::open_writer(&path).unwrap();
        writer
            .execute_batch("CREATE TABLE t (body BLOB NOT NULL)")
            .unwrap();
        let trigger = CheckpointTrigger::spawn(conn::open_checkpointer(&path).unwrap()).unwrap();
        let write = |rows: usize| {
            writer.execute_batch("BEGIN").unwrap();
            for _ in 0..rows {
                writer
                    .execute("INSERT INTO t (body) VALUES (zeroblob(4000))", [])
                    .unwrap();
            }
            writer.execute_batch("COMMIT").unwrap();
            trigger.committed();
        };
        for round in 0..3 {
            let before = std::fs::metadata(&path).unwrap().len();
            // Many commits in a row, as under load: one wake, and none of them is left in
            // the WAL.
            for _ in 0..20 {
                write(5);
            }
            assert!(
                grows_past(&path, before),
                "round {round}: the commits never reached the database file"
            );
        }
        trigger.stop();
    }
}
