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
//! This file is the engine only. The writes themselves live with their resource
//! (`sqlite/accounts.rs`, `sqlite/messages.rs`, …): each defines its `Op` and its `execute`,
//! and appends events through [`append`].
//!
//! Because this thread is the only writer, it can keep each account's newest seq itself
//! ([`Seqs`]): an event takes the next one with no read, the group writes each counter row
//! once before its COMMIT, and seqs become visible exactly in commit order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use airtext_api::conversations::Conversation;
use airtext_api::sync::EventKind;
use airtext_api::{AccountId, DeviceId, IdentityId};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::super::rows::{self, micros};
use super::super::rules;
use super::super::{
    Delivered, LogAdvanced, OutboundJob, ReceiptOutcome, StatusOutcome, StoreError, StoreResult,
};
use super::cache::{Caches, Changes};
use super::conn::{blob, first_int, one, opt_blob, run};
use super::durability::{self, Committed, Durability, Syncer};
use super::health::{self, WriteHealth};
use super::{accounts, carriers, contacts, conversations, identities, messages, numbers, outbound};

/// The most commands one transaction holds; bounds the latency a big burst adds to its first
/// caller.
pub(super) const BATCH_CAP: usize = 512;

/// One write the store asks of the writer: one variant per resource, whose file
/// (`sqlite/<resource>.rs`) defines its writes and runs them ([`execute`]).
#[derive(Debug)]
pub(super) enum Op {
    Accounts(accounts::Op),
    Numbers(numbers::Op),
    Identities(identities::Op),
    Messages(messages::Op),
    Conversations(conversations::Op),
    Contacts(contacts::Op),
    Outbound(outbound::Op),
    Carriers(carriers::Op),
    Health(health::Op),
}

impl Op {
    /// Whether this write may change what a send reads about accounts (an account, its DID,
    /// its verified identities, who owns a number): then [`super::cache::Caches`] forgets
    /// the accounts it holds. No catch-all arm here or in any resource's `Op`, so a new kind
    /// of write has to decide.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::Accounts(op) => op.changes_accounts(),
            Op::Numbers(op) => op.changes_accounts(),
            Op::Identities(op) => op.changes_accounts(),
            Op::Messages(op) => op.changes_accounts(),
            Op::Conversations(op) => op.changes_accounts(),
            Op::Contacts(op) => op.changes_accounts(),
            Op::Outbound(op) => op.changes_accounts(),
            Op::Carriers(op) => op.changes_accounts(),
            Op::Health(op) => op.changes_accounts(),
        }
    }

    /// The device this write revokes, whose cached tokens must go (see [`super::cache`]).
    pub(super) fn revoked_device(&self) -> Option<DeviceId> {
        match self {
            Op::Accounts(accounts::Op::RevokeDevice { device, .. }) => Some(*device),
            _ => None,
        }
    }

    /// The account whose devices this write signs out (a password change or reset, a
    /// deleted account): every cached token of it must go.
    pub(super) fn signed_out_account(&self) -> Option<AccountId> {
        match self {
            Op::Accounts(op) => op.signs_out_account(),
            _ => None,
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
    Conversation(Box<Conversation>),
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
pub(super) struct Effects<'a> {
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
    health: Arc<WriteHealth>,
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
        .spawn(move || writer(conn, settle, checkpointer, rx, &caches, &health))
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
    health: &WriteHealth,
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
        run_batch(&conn, writes, &settle, &mut seqs, caches, health);
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

/// Where a group's storage outcome is told: what the health check reads.
struct Outcome<'a> {
    health: &'a WriteHealth,
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
    outcome: &Outcome<'_>,
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
                let started = std::time::Instant::now();
                let done =
                    exec(conn, "COMMIT").map_err(|e| unavailable(format!("commit failed: {e}")));
                metrics::histogram!("airtext_store_commit_seconds", "engine" => "sqlite")
                    .record(started.elapsed().as_secs_f64());
                done
            })
    };
    evictions.apply();
    match &committed {
        Ok(()) => outcome.health.succeeded(),
        Err(error) => outcome.health.failed(&error.to_string()),
    }
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
    health: &WriteHealth,
) {
    let evictions = Evictions {
        caches,
        changes: Changes::of(writes.iter().map(|(op, _)| op)),
    };
    let outcome = Outcome { health };
    // Commands rarely fail, so the group first runs as one plain transaction: no savepoint
    // per command, whose undo copies of every page it touches cost more than the command.
    if let Some((group, outs)) = run_plain(conn, &writes, settle, seqs, &evictions, &outcome) {
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
    run_with_savepoints(conn, writes, settle, seqs, &evictions, &outcome);
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
    outcome: &Outcome<'_>,
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
    commit(conn, settle, group, seqs, evictions, outcome).ok()?;
    Some((group, outs))
}

fn run_with_savepoints(
    conn: &Connection,
    writes: Vec<(Op, Reply)>,
    settle: &Settle,
    seqs: &mut Seqs,
    evictions: &Evictions<'_>,
    outcome: &Outcome<'_>,
) {
    seqs.begin();
    if let Err(error) = exec(conn, "BEGIN IMMEDIATE") {
        let message = format!("cannot begin a write transaction: {error}");
        outcome.health.failed(&message);
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
            outcome.health.failed(&message);
            Err(message)
        }
        None => {
            let group = settle.before_commit(seqs);
            commit(conn, settle, group, seqs, evictions, outcome)
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

/// Runs one write in the open transaction, in its resource's file.
fn execute(conn: &Connection, op: &Op, fx: &mut Effects<'_>) -> StoreResult<Out> {
    match op {
        Op::Accounts(op) => accounts::execute(conn, op, fx),
        Op::Numbers(op) => numbers::execute(conn, op, fx),
        Op::Identities(op) => identities::execute(conn, op, fx),
        Op::Messages(op) => messages::execute(conn, op, fx),
        Op::Conversations(op) => conversations::execute(conn, op, fx),
        Op::Contacts(op) => contacts::execute(conn, op, fx),
        Op::Outbound(op) => outbound::execute(conn, op, fx),
        Op::Carriers(op) => carriers::execute(conn, op, fx),
        Op::Health(op) => health::execute(conn, op, fx),
    }
}

/// Forgets a deleted account's log: the group must not write its `account_log` row back.
pub(super) fn forget_log(fx: &mut Effects<'_>, account: AccountId) {
    fx.seqs.open.remove(&account);
    fx.seqs.committed.remove(&account);
}

/// Appends one event to `account`'s log: one statement (the trigger moves the counter).
pub(super) fn append(
    conn: &Connection,
    fx: &mut Effects<'_>,
    account: AccountId,
    at: DateTime<Utc>,
    kind: &EventKind,
) -> StoreResult<i64> {
    let payload = rows::event_payload(kind)?;
    let seq = fx.seqs.next(conn, account)?;
    let message = rules::event_message(kind).map(|id| id.0);
    run(
        conn,
        "INSERT INTO events (account_id, seq, at, type, payload, message_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            blob(&account.0),
            seq,
            micros(at),
            kind.type_name(),
            payload,
            opt_blob(&message)
        ],
    )?;
    fx.advanced.push(LogAdvanced {
        account_id: account,
        seq,
    });
    Ok(seq)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::conn;
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
