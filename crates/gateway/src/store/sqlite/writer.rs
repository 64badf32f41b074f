//! The single writer: one task owns the only write connection and commits in groups.
//!
//! A write is an [`Op`] sent over a channel with a oneshot for its answer. The task takes the
//! first command, drains whatever else is queued (up to [`BATCH_CAP`]), opens one
//! `BEGIN IMMEDIATE` transaction, runs each command inside its own `SAVEPOINT` (a failing
//! command is rolled back alone), commits once, and only then answers every command and
//! publishes [`LogAdvanced`] for the logs that moved. So concurrent writers share one fsync,
//! and nobody hears "done" (or a log hint) for data that is not yet durable.
//!
//! Because this task is the only writer, the per-account counter row is never contended:
//! each event takes `last_seq + 1` and the `events_advance_log` trigger moves the counter in
//! the same statement, and seqs become visible exactly in commit order.

use std::collections::HashMap;

use airtext_api::contacts::Contact;
use airtext_api::messages::Direction;
use airtext_api::sync::EventKind;
use airtext_api::{AccountId, ConversationId, DeviceId, IdentityId, MessageId, SendStatus};
use chrono::{DateTime, Duration, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::super::rows::{self, micros, Cols};
use super::super::{
    Conflict, Delivered, Delivery, InventoryNumber, LogAdvanced, NewAccount, NewDevice,
    NewIdentityCode, NewMessage, OutboundJob, OutboundOutcome, StatusOutcome, StatusUpdate,
    StoreError, StoreResult,
};

/// The most commands one transaction holds; bounds the latency a big burst adds to its first
/// caller.
pub(super) const BATCH_CAP: usize = 512;

/// Authentication refreshes `last_seen_at` only when it is older than this, so most
/// authenticated reads never become writes.
pub(super) const LAST_SEEN_GRANULARITY: Duration = Duration::minutes(5);

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
        cost: Option<f64>,
        at: DateTime<Utc>,
    },
    SetOptOut {
        did: String,
        remote: String,
        opted_out: bool,
        at: DateTime<Utc>,
    },
}

/// What a write answers.
#[derive(Debug)]
pub(super) enum Out {
    Done,
    Delivered(Delivered),
    Status(StatusOutcome),
    Count(u32),
    Identity(IdentityId),
    Jobs(Vec<OutboundJob>),
}

#[derive(Debug)]
pub(super) enum Cmd {
    Write {
        op: Op,
        reply: oneshot::Sender<StoreResult<Out>>,
    },
    /// Finish everything queued, close the connection, then answer.
    Close { done: oneshot::Sender<()> },
}

/// What one command did besides its answer: the logs it advanced.
#[derive(Debug, Default)]
struct Effects {
    advanced: Vec<LogAdvanced>,
}

struct Finished {
    reply: oneshot::Sender<StoreResult<Out>>,
    result: StoreResult<Out>,
    effects: Effects,
}

/// Runs until the channel closes or a `Close` arrives.
pub(super) async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Cmd>,
    log: broadcast::Sender<LogAdvanced>,
) {
    let mut closers = Vec::new();
    let mut batch = Vec::with_capacity(BATCH_CAP);
    loop {
        let Some(first) = rx.recv().await else { break };
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
                Cmd::Close { done } => {
                    // No new commands from now on; those already queued still run.
                    rx.close();
                    closers.push(done);
                }
            }
        }
        if !writes.is_empty() {
            run_batch(&mut conn, writes, &log).await;
        }
    }
    if let Err(error) = conn.close().await {
        tracing::warn!(%error, "closing the SQLite write connection");
    }
    for done in closers {
        let _ = done.send(());
    }
}

async fn run_batch(
    conn: &mut SqliteConnection,
    writes: Vec<(Op, oneshot::Sender<StoreResult<Out>>)>,
    log: &broadcast::Sender<LogAdvanced>,
) {
    // The first command's savepoint opens with the transaction, and each later one is
    // released together with the next one's opening: one handoff to sqlx's worker thread
    // between commands instead of two.
    if let Err(error) = sqlx::query("BEGIN IMMEDIATE; SAVEPOINT cmd")
        .execute(&mut *conn)
        .await
    {
        let message = format!("cannot begin a write transaction: {error}");
        for (_, reply) in writes {
            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
        }
        return;
    }

    let mut finished = Vec::with_capacity(writes.len());
    let mut broken: Option<String> = None;
    let last = writes.len().saturating_sub(1);
    for (k, (op, reply)) in writes.into_iter().enumerate() {
        if let Some(message) = &broken {
            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            continue;
        }
        // The savepoint `cmd` is open here (from BEGIN or the previous command's close).
        let mut effects = Effects::default();
        let result = execute(conn, op, &mut effects).await;
        if result.is_err() {
            effects.advanced.clear();
        }
        // Close this command's savepoint (undoing it if it failed) and open the next one's.
        let close = match (result.is_ok(), k == last) {
            (true, true) => "RELEASE cmd",
            (true, false) => "RELEASE cmd; SAVEPOINT cmd",
            (false, true) => "ROLLBACK TO cmd; RELEASE cmd",
            (false, false) => "ROLLBACK TO cmd; RELEASE cmd; SAVEPOINT cmd",
        };
        let closed = sqlx::query(close).execute(&mut *conn).await;
        if let Err(error) = closed {
            // The transaction is in an unknown state: give up on the whole batch.
            broken = Some(format!("write transaction failed: {error}"));
            let _ = reply.send(Err(StoreError::Unavailable(format!(
                "write transaction failed: {error}"
            ))));
            continue;
        }
        finished.push(Finished {
            reply,
            result,
            effects,
        });
    }

    let commit = match &broken {
        Some(message) => Err(message.clone()),
        None => sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|e| format!("commit failed: {e}")),
    };
    match commit {
        Ok(()) => {
            let mut advanced: HashMap<AccountId, i64> = HashMap::new();
            for done in finished {
                for hint in done.effects.advanced {
                    let seq = advanced.entry(hint.account_id).or_insert(hint.seq);
                    *seq = (*seq).max(hint.seq);
                }
                let _ = done.reply.send(done.result);
            }
            for (account_id, seq) in advanced {
                // No receivers is fine: nobody is listening right now.
                let _ = log.send(LogAdvanced { account_id, seq });
            }
        }
        Err(message) => {
            if let Err(error) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
                tracing::error!(%error, "rolling back a failed write batch");
            }
            tracing::error!(%message, "SQLite write batch lost");
            for done in finished {
                let _ = done
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

async fn execute(conn: &mut SqliteConnection, op: Op, fx: &mut Effects) -> StoreResult<Out> {
    match op {
        Op::CreateAccount(account) => create_account(conn, account).await,
        Op::CreateDevice(device) => create_device(conn, device).await,
        Op::TouchDevice { id, now } => touch_device(conn, id, now).await,
        Op::RevokeDevice { account, device } => revoke_device(conn, account, device).await,
        Op::AddInventory(numbers) => add_inventory(conn, numbers).await,
        Op::ClaimNumber {
            account,
            number,
            now,
        } => claim_number(conn, account, &number, now).await,
        Op::ReleaseNumber {
            account,
            number,
            available_at,
        } => release_number(conn, account, &number, available_at).await,
        Op::PutIdentityCode(code) => put_identity_code(conn, code).await,
        Op::CountFailedAttempt { account, id } => count_failed_attempt(conn, account, id).await,
        Op::MarkVerified { account, id, at } => mark_verified(conn, account, id, at).await,
        Op::Deliver(delivery) => deliver(conn, fx, *delivery).await,
        Op::UpdateStatus(update) => {
            let outcome = apply_status(
                conn,
                fx,
                update.message_id,
                update.status,
                update.failure_reason,
                update.at,
            )
            .await?
            .ok_or(StoreError::NotFound)?;
            Ok(Out::Status(outcome))
        }
        Op::MarkRead {
            account,
            conversation,
            up_to,
            at,
        } => mark_read(conn, fx, account, conversation, up_to, at).await,
        Op::DeleteMessage { account, id, at } => delete_message(conn, fx, account, id, at).await,
        Op::PutContact { account, contact } => put_contact(conn, fx, account, contact).await,
        Op::ClaimOutbound {
            limit,
            now,
            lease_until,
        } => claim_outbound(conn, limit, now, lease_until).await,
        Op::FinishOutbound {
            message_id,
            outcome,
            cost,
            at,
        } => finish_outbound(conn, fx, message_id, outcome, cost, at).await,
        Op::SetOptOut {
            did,
            remote,
            opted_out,
            at,
        } => set_opt_out(conn, &did, &remote, opted_out, at).await,
    }
}

/// Appends one event to `account`'s log: one statement (the trigger moves the counter).
async fn append(
    conn: &mut SqliteConnection,
    fx: &mut Effects,
    account: AccountId,
    at: DateTime<Utc>,
    kind: &EventKind,
) -> StoreResult<i64> {
    let payload = rows::event_payload(kind)?;
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (account_id, seq, at, type, payload) \
         VALUES (?1, COALESCE((SELECT last_seq FROM account_log WHERE account_id = ?1), 0) + 1, \
                 ?2, ?3, ?4) \
         RETURNING seq",
    )
    .bind(account.0)
    .bind(micros(at))
    .bind(kind.type_name())
    .bind(payload)
    .fetch_one(&mut *conn)
    .await?;
    fx.advanced.push(LogAdvanced {
        account_id: account,
        seq,
    });
    Ok(seq)
}

fn account_conflict(error: sqlx::Error) -> StoreError {
    match rows::unique_violation(&error) {
        Some(which) if which.contains("username") => StoreError::Conflict(Conflict::Username),
        Some(which) if which.contains("email") => StoreError::Conflict(Conflict::Email),
        _ => error.into(),
    }
}

async fn create_account(conn: &mut SqliteConnection, account: NewAccount) -> StoreResult<Out> {
    sqlx::query(
        "INSERT INTO accounts (id, username, email, password_hash, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(account.id.0)
    .bind(&account.username)
    .bind(&account.email)
    .bind(&account.password_hash)
    .bind(micros(account.created_at))
    .execute(&mut *conn)
    .await
    .map_err(account_conflict)?;
    sqlx::query("INSERT INTO account_log (account_id, last_seq) VALUES (?1, 0)")
        .bind(account.id.0)
        .execute(&mut *conn)
        .await?;
    Ok(Out::Done)
}

async fn create_device(conn: &mut SqliteConnection, device: NewDevice) -> StoreResult<Out> {
    sqlx::query(
        "INSERT INTO devices (id, account_id, name, has_cellular, token_hash, created_at, \
                              last_seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )
    .bind(device.id.0)
    .bind(device.account_id.0)
    .bind(&device.name)
    .bind(device.has_cellular)
    .bind(&device.token_hash.0[..])
    .bind(micros(device.created_at))
    .execute(&mut *conn)
    .await?;
    Ok(Out::Done)
}

async fn touch_device(
    conn: &mut SqliteConnection,
    id: DeviceId,
    now: DateTime<Utc>,
) -> StoreResult<Out> {
    sqlx::query("UPDATE devices SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?3")
        .bind(id.0)
        .bind(micros(now))
        .bind(micros(now - LAST_SEEN_GRANULARITY))
        .execute(&mut *conn)
        .await?;
    Ok(Out::Done)
}

async fn revoke_device(
    conn: &mut SqliteConnection,
    account: AccountId,
    device: DeviceId,
) -> StoreResult<Out> {
    let done = sqlx::query("DELETE FROM devices WHERE id = ?1 AND account_id = ?2")
        .bind(device.0)
        .bind(account.0)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(Out::Done)
}

async fn add_inventory(
    conn: &mut SqliteConnection,
    numbers: Vec<InventoryNumber>,
) -> StoreResult<Out> {
    for n in numbers {
        sqlx::query(
            "INSERT INTO numbers (number, carrier, country, owner, available_at) \
             VALUES (?1, ?2, ?3, NULL, 0) ON CONFLICT (number) DO NOTHING",
        )
        .bind(&n.number)
        .bind(&n.carrier)
        .bind(&n.country)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Out::Done)
}

async fn claim_number(
    conn: &mut SqliteConnection,
    account: AccountId,
    number: &str,
    now: DateTime<Utc>,
) -> StoreResult<Out> {
    let row = sqlx::query("SELECT owner, available_at FROM numbers WHERE number = ?1")
        .bind(number)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let owner = row.opt_uuid("owner")?;
    if owner == Some(account.0) {
        return Err(StoreError::Conflict(Conflict::AlreadyHasNumber));
    }
    if owner.is_some() || row.int("available_at")? > micros(now) {
        return Err(StoreError::Conflict(Conflict::NumberTaken));
    }
    let has: Option<i64> = sqlx::query_scalar("SELECT 1 FROM numbers WHERE owner = ?1")
        .bind(account.0)
        .fetch_optional(&mut *conn)
        .await?;
    if has.is_some() {
        return Err(StoreError::Conflict(Conflict::AlreadyHasNumber));
    }
    sqlx::query("UPDATE numbers SET owner = ?1 WHERE number = ?2 AND owner IS NULL")
        .bind(account.0)
        .bind(number)
        .execute(&mut *conn)
        .await?;
    Ok(Out::Done)
}

async fn release_number(
    conn: &mut SqliteConnection,
    account: AccountId,
    number: &str,
    available_at: DateTime<Utc>,
) -> StoreResult<Out> {
    let done = sqlx::query(
        "UPDATE numbers SET owner = NULL, available_at = ?3 WHERE number = ?1 AND owner = ?2",
    )
    .bind(number)
    .bind(account.0)
    .bind(micros(available_at))
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(Out::Done)
}

async fn put_identity_code(conn: &mut SqliteConnection, code: NewIdentityCode) -> StoreResult<Out> {
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO identities (id, account_id, kind, value, status, code_hash, \
                                 code_expires_at, attempts, created_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, 0, ?7) \
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
    .bind(micros(code.expires_at))
    .bind(micros(code.now))
    .fetch_one(&mut *conn)
    .await?;
    Ok(Out::Identity(id.into()))
}

async fn count_failed_attempt(
    conn: &mut SqliteConnection,
    account: AccountId,
    id: IdentityId,
) -> StoreResult<Out> {
    let attempts: Option<i64> = sqlx::query_scalar(
        "UPDATE identities SET attempts = attempts + 1 WHERE id = ?1 AND account_id = ?2 \
         RETURNING attempts",
    )
    .bind(id.0)
    .bind(account.0)
    .fetch_optional(&mut *conn)
    .await?;
    let attempts = attempts.ok_or(StoreError::NotFound)?;
    Ok(Out::Count(rows::to_u32(attempts, "attempts")?))
}

async fn mark_verified(
    conn: &mut SqliteConnection,
    account: AccountId,
    id: IdentityId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let row = sqlx::query("SELECT kind, value FROM identities WHERE id = ?1 AND account_id = ?2")
        .bind(id.0)
        .bind(account.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let kind = row.text("kind")?;
    let value = row.text("value")?;
    // The newest proof of possession wins: anyone else's verified claim goes back to pending
    // first, so the partial unique index never sees two.
    sqlx::query(
        "UPDATE identities SET status = 'pending', verified_at = NULL \
         WHERE kind = ?1 AND value = ?2 AND status = 'verified' AND id <> ?3",
    )
    .bind(&kind)
    .bind(&value)
    .bind(id.0)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE identities SET status = 'verified', code_hash = NULL, code_expires_at = NULL, \
             attempts = 0, verified_at = ?2 \
         WHERE id = ?1",
    )
    .bind(id.0)
    .bind(micros(at))
    .execute(&mut *conn)
    .await?;
    Ok(Out::Done)
}

/// The SQL of one deliver shape, built once: round trips to the connection's worker thread
/// cost more than SQLite's own work here, so a deliver is two multi-statement queries. Their
/// parameters are positional `?`, which sqlx consumes in order across the statements (it
/// cannot mix numbered parameters with gaps across statements), so the binding code in
/// [`deliver`] mirrors the order below exactly.
struct DeliverSql {
    conversations: String,
    writes: String,
}

fn deliver_sql(copies: usize, guarded: bool, enqueue: bool) -> DeliverSql {
    let mut conversations = String::new();
    let mut writes = String::new();
    for _ in 0..copies {
        // Binds: new id, account, peer, message id, created, unread increment.
        conversations.push_str(
            "INSERT INTO conversations (id, account_id, peer, last_message_id, updated_at, unread) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (account_id, peer) DO UPDATE SET \
                 last_message_id = excluded.last_message_id, \
                 updated_at = max(conversations.updated_at, excluded.updated_at), \
                 unread = conversations.unread + excluded.unread \
             RETURNING id;",
        );
    }
    // When a sender copy leads, everything after its insert runs only if that insert did
    // (a repeated client_id inserts nothing and so writes nothing else). Binds: sender id.
    let guard = if guarded {
        "WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?)"
    } else {
        "WHERE 1"
    };
    for k in 0..copies {
        let first = k == 0;
        // Binds: the 14 message values, then the guard's.
        writes.push_str(&format!(
            "INSERT INTO messages (id, account_id, conversation_id, direction, from_addr, \
                 to_addr, body, status, route, client_id, encoding, segments, created_at, \
                 updated_at) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? {} {} RETURNING 0;",
            if first { "WHERE 1" } else { guard },
            if first && guarded {
                "ON CONFLICT (account_id, client_id) DO NOTHING"
            } else {
                ""
            },
        ));
    }
    for _ in 0..copies {
        // Binds: account, account, at, payload, then the guard's.
        writes.push_str(&format!(
            "INSERT INTO events (account_id, seq, at, type, payload) \
             SELECT ?, COALESCE((SELECT last_seq FROM account_log WHERE account_id = ?), 0) + 1, \
                 ?, 'message.created', ? {guard} \
             RETURNING seq;"
        ));
    }
    if enqueue {
        // Binds (the sender's copy): id, account, from, to, body, created, created, guard.
        writes.push_str(&format!(
            "INSERT INTO outbound (message_id, account_id, from_addr, to_addr, body, attempts, \
                                   not_before, created_at) \
             SELECT ?, ?, ?, ?, ?, 0, ?, ? {guard};"
        ));
    }
    DeliverSql {
        conversations,
        writes,
    }
}

/// The shapes: (copies, sender leads, enqueue).
fn deliver_shape(copies: usize, guarded: bool, enqueue: bool) -> &'static DeliverSql {
    use std::sync::OnceLock;
    static SHAPES: [OnceLock<DeliverSql>; 12] = [const { OnceLock::new() }; 12];
    let index = (copies.min(2)) * 4 + usize::from(guarded) * 2 + usize::from(enqueue);
    match SHAPES.get(index) {
        Some(cell) => cell.get_or_init(|| deliver_sql(copies, guarded, enqueue)),
        // Unreachable with copies <= 2; built fresh (and leaked) rather than panicking.
        None => Box::leak(Box::new(deliver_sql(copies, guarded, enqueue))),
    }
}

async fn deliver(
    conn: &mut SqliteConnection,
    fx: &mut Effects,
    delivery: Delivery,
) -> StoreResult<Out> {
    let copies: Vec<&NewMessage> = delivery
        .sender
        .iter()
        .chain(delivery.recipient.iter())
        .collect();
    let has_sender = delivery.sender.is_some();
    let guarded = has_sender;
    let enqueue = delivery.enqueue && has_sender;
    let sql = deliver_shape(copies.len(), guarded, enqueue);
    if copies.is_empty() {
        return Ok(Out::Delivered(Delivered {
            sender: None,
            recipient: None,
            created: true,
        }));
    }

    // Round trip 1: find or create each copy's conversation.
    let mut query = sqlx::query(&sql.conversations);
    for copy in &copies {
        query = query
            .bind(ConversationId::new().0)
            .bind(copy.account_id.0)
            .bind(copy.peer.as_str())
            .bind(copy.id.0)
            .bind(micros(copy.created_at))
            .bind(i64::from(copy.direction == Direction::Inbound));
    }
    let found = query.fetch_all(&mut *conn).await?;
    let mut messages = Vec::with_capacity(copies.len());
    for (copy, row) in copies.iter().zip(found.iter()) {
        let conversation: uuid::Uuid = row.try_get(0).map_err(rows::corrupt)?;
        messages.push(rows::stored_message(copy, conversation.into()));
    }
    if messages.len() != copies.len() {
        return Err(rows::corrupt("conversation upsert returned no id"));
    }

    // Round trip 2: the messages, their events and the queue entry.
    let mut payloads = Vec::with_capacity(copies.len());
    for message in &messages {
        payloads.push(rows::event_payload(&EventKind::MessageCreated {
            message: message.clone(),
        })?);
    }
    let guard_id = delivery.sender.as_ref().map(|sender| sender.id.0);
    let mut query = sqlx::query(&sql.writes);
    for (k, (copy, message)) in copies.iter().zip(&messages).enumerate() {
        query = query
            .bind(copy.id.0)
            .bind(copy.account_id.0)
            .bind(message.conversation_id.0)
            .bind(copy.direction.as_str())
            .bind(copy.from.as_str())
            .bind(copy.to.as_str())
            .bind(copy.body.as_str())
            .bind(copy.status.as_str())
            .bind(copy.route.as_str())
            .bind(copy.client_id.map(|c| c.0))
            .bind(copy.encoding.as_str())
            .bind(i64::from(copy.segments))
            .bind(micros(copy.created_at))
            .bind(micros(copy.created_at));
        if k > 0 {
            if let Some(id) = guard_id {
                query = query.bind(id);
            }
        }
    }
    for (copy, payload) in copies.iter().zip(payloads) {
        query = query
            .bind(copy.account_id.0)
            .bind(copy.account_id.0)
            .bind(micros(copy.created_at))
            .bind(payload);
        if let Some(id) = guard_id {
            query = query.bind(id);
        }
    }
    if enqueue {
        if let Some(sender) = &delivery.sender {
            query = query
                .bind(sender.id.0)
                .bind(sender.account_id.0)
                .bind(sender.from.as_str())
                .bind(sender.to.as_str())
                .bind(sender.body.as_str())
                .bind(micros(sender.created_at))
                .bind(micros(sender.created_at));
            if let Some(id) = guard_id {
                query = query.bind(id);
            }
        }
    }
    let returned = query.fetch_all(&mut *conn).await?;
    if returned.is_empty() && has_sender {
        // A repeated send: undo this command's conversation upserts and answer with the
        // first message.
        sqlx::query("ROLLBACK TO cmd").execute(&mut *conn).await?;
        let sender = delivery
            .sender
            .as_ref()
            .ok_or_else(|| rows::corrupt("sender vanished"))?;
        let first = sqlx::query(&format!(
            "SELECT {} FROM messages m WHERE m.account_id = ?1 AND m.client_id = ?2",
            rows::MESSAGE_COLUMNS
        ))
        .bind(sender.account_id.0)
        .bind(sender.client_id.map(|c| c.0))
        .fetch_one(&mut *conn)
        .await?;
        return Ok(Out::Delivered(Delivered {
            sender: Some(rows::message(&first)?),
            recipient: None,
            created: false,
        }));
    }
    // Rows: one per message insert, then one seq per event, in copy order.
    if returned.len() != copies.len() * 2 {
        return Err(rows::corrupt(format!(
            "deliver wrote {} rows for {} copies",
            returned.len(),
            copies.len()
        )));
    }
    for (copy, row) in copies.iter().zip(returned.iter().skip(copies.len())) {
        let seq: i64 = row.try_get(0).map_err(rows::corrupt)?;
        fx.advanced.push(LogAdvanced {
            account_id: copy.account_id,
            seq,
        });
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

/// Applies a status report through `SendStatus::advance`. `None` when the message does not
/// exist.
async fn apply_status(
    conn: &mut SqliteConnection,
    fx: &mut Effects,
    id: MessageId,
    incoming: SendStatus,
    failure_reason: Option<String>,
    at: DateTime<Utc>,
) -> StoreResult<Option<StatusOutcome>> {
    let Some(row) = sqlx::query(&format!(
        "SELECT m.account_id AS owner, {} FROM messages m WHERE m.id = ?1",
        rows::MESSAGE_COLUMNS
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let account: AccountId = row.uuid("owner")?.into();
    let mut message = rows::message(&row)?;
    let Some(next) = message.status.advance(incoming) else {
        return Ok(Some(StatusOutcome {
            message,
            changed: false,
        }));
    };
    let reason = if next == SendStatus::Failed {
        failure_reason
    } else {
        None
    };
    sqlx::query(
        "UPDATE messages SET status = ?2, failure_reason = COALESCE(?3, failure_reason), \
             updated_at = ?4 \
         WHERE id = ?1",
    )
    .bind(id.0)
    .bind(next.as_str())
    .bind(&reason)
    .bind(micros(at))
    .execute(&mut *conn)
    .await?;
    message.status = next;
    if reason.is_some() {
        message.failure_reason = reason;
    }
    message.updated_at = at;
    append(
        conn,
        fx,
        account,
        at,
        &EventKind::MessageStatus {
            message_id: message.id,
            conversation_id: message.conversation_id,
            status: next,
            failure_reason: message.failure_reason.clone(),
            updated_at: at,
        },
    )
    .await?;
    Ok(Some(StatusOutcome {
        message,
        changed: true,
    }))
}

/// Recounts unread from the marker: inbound messages after it (all inbound when unset).
const RECOUNT_UNREAD: &str = "(SELECT count(*) FROM messages \
     WHERE messages.conversation_id = conversations.id AND messages.direction = 'inbound' \
       AND (conversations.read_up_to IS NULL OR messages.id > conversations.read_up_to))";

async fn mark_read(
    conn: &mut SqliteConnection,
    fx: &mut Effects,
    account: AccountId,
    conversation: ConversationId,
    up_to: MessageId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let row = sqlx::query("SELECT read_up_to FROM conversations WHERE id = ?1 AND account_id = ?2")
        .bind(conversation.0)
        .bind(account.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let current = row.opt_uuid("read_up_to")?;
    let in_conversation: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM messages WHERE id = ?1 AND account_id = ?2 AND conversation_id = ?3",
    )
    .bind(up_to.0)
    .bind(account.0)
    .bind(conversation.0)
    .fetch_optional(&mut *conn)
    .await?;
    if in_conversation.is_none() {
        return Err(StoreError::NotFound);
    }
    // Ids are UUIDv7: byte order is time order, the same order SQLite compares blobs in.
    let marker = match current {
        Some(current) if current > up_to.0 => current,
        _ => up_to.0,
    };
    let unread: i64 = sqlx::query_scalar(
        // SET expressions see the row's old values, so the count uses the new marker (?2).
        "UPDATE conversations SET read_up_to = ?2, \
             unread = (SELECT count(*) FROM messages \
                       WHERE conversation_id = ?1 AND direction = 'inbound' AND id > ?2) \
         WHERE id = ?1 RETURNING unread",
    )
    .bind(conversation.0)
    .bind(marker)
    .fetch_one(&mut *conn)
    .await?;
    append(
        conn,
        fx,
        account,
        at,
        &EventKind::ConversationRead {
            conversation_id: conversation,
            up_to: marker.into(),
            unread: rows::to_u32(unread, "unread")?,
        },
    )
    .await?;
    Ok(Out::Done)
}

async fn delete_message(
    conn: &mut SqliteConnection,
    fx: &mut Effects,
    account: AccountId,
    id: MessageId,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    let conversation: Option<uuid::Uuid> = sqlx::query_scalar(
        "DELETE FROM messages WHERE id = ?1 AND account_id = ?2 RETURNING conversation_id",
    )
    .bind(id.0)
    .bind(account.0)
    .fetch_optional(&mut *conn)
    .await?;
    let conversation = conversation.ok_or(StoreError::NotFound)?;
    sqlx::query(&format!(
        "UPDATE conversations SET \
             last_message_id = (SELECT id FROM messages WHERE conversation_id = ?1 \
                                ORDER BY id DESC LIMIT 1), \
             unread = {RECOUNT_UNREAD} \
         WHERE id = ?1"
    ))
    .bind(conversation)
    .execute(&mut *conn)
    .await?;
    append(
        conn,
        fx,
        account,
        at,
        &EventKind::MessageDeleted {
            message_id: id,
            conversation_id: conversation.into(),
        },
    )
    .await?;
    Ok(Out::Done)
}

async fn put_contact(
    conn: &mut SqliteConnection,
    fx: &mut Effects,
    account: AccountId,
    contact: Contact,
) -> StoreResult<Out> {
    sqlx::query(
        "INSERT INTO contacts (account_id, address, path, fallback, name, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (account_id, address) DO UPDATE SET path = excluded.path, \
             fallback = excluded.fallback, name = excluded.name, \
             updated_at = excluded.updated_at",
    )
    .bind(account.0)
    .bind(&contact.address)
    .bind(contact.path.as_str())
    .bind(contact.fallback)
    .bind(&contact.name)
    .bind(micros(contact.updated_at))
    .execute(&mut *conn)
    .await?;
    let at = contact.updated_at;
    append(
        conn,
        fx,
        account,
        at,
        &EventKind::ContactUpdated { contact },
    )
    .await?;
    Ok(Out::Done)
}

async fn claim_outbound(
    conn: &mut SqliteConnection,
    limit: u32,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> StoreResult<Out> {
    let found = sqlx::query(
        "UPDATE outbound SET lease_until = ?2 \
         WHERE message_id IN ( \
             SELECT message_id FROM outbound \
             WHERE not_before <= ?1 AND (lease_until IS NULL OR lease_until <= ?1) \
             ORDER BY not_before, created_at LIMIT ?3) \
         RETURNING message_id, account_id, from_addr, to_addr, body, attempts, created_at",
    )
    .bind(micros(now))
    .bind(micros(lease_until))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut jobs = found
        .iter()
        .map(rows::outbound_job)
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING has no order: hand out the oldest first.
    jobs.sort_by_key(|job| (job.created_at, job.message_id));
    Ok(Out::Jobs(jobs))
}

async fn finish_outbound(
    conn: &mut SqliteConnection,
    fx: &mut Effects,
    message_id: MessageId,
    outcome: OutboundOutcome,
    cost: Option<f64>,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    match outcome {
        OutboundOutcome::Sent {
            carrier,
            carrier_message_id,
        } => {
            let job = sqlx::query("DELETE FROM outbound WHERE message_id = ?1")
                .bind(message_id.0)
                .execute(&mut *conn)
                .await?;
            let recorded = sqlx::query(
                "UPDATE messages SET carrier = ?2, carrier_message_id = ?3, cost = ?4 \
                 WHERE id = ?1",
            )
            .bind(message_id.0)
            .bind(&carrier)
            .bind(&carrier_message_id)
            .bind(cost)
            .execute(&mut *conn)
            .await?;
            if job.rows_affected() == 0 && recorded.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            // A receipt may already have moved it past `sent`; advance decides.
            apply_status(conn, fx, message_id, SendStatus::Sent, None, at).await?;
        }
        OutboundOutcome::Retry { not_before, reason } => {
            let done = sqlx::query(
                "UPDATE outbound SET attempts = attempts + 1, not_before = ?2, \
                     lease_until = NULL, last_error = ?3 \
                 WHERE message_id = ?1",
            )
            .bind(message_id.0)
            .bind(micros(not_before))
            .bind(&reason)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        OutboundOutcome::Failed { reason } => {
            let job = sqlx::query("DELETE FROM outbound WHERE message_id = ?1")
                .bind(message_id.0)
                .execute(&mut *conn)
                .await?;
            let status =
                apply_status(conn, fx, message_id, SendStatus::Failed, Some(reason), at).await?;
            if job.rows_affected() == 0 && status.is_none() {
                return Err(StoreError::NotFound);
            }
        }
    }
    Ok(Out::Done)
}

async fn set_opt_out(
    conn: &mut SqliteConnection,
    did: &str,
    remote: &str,
    opted_out: bool,
    at: DateTime<Utc>,
) -> StoreResult<Out> {
    if opted_out {
        sqlx::query(
            "INSERT INTO opt_outs (did, remote, at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (did, remote) DO NOTHING",
        )
        .bind(did)
        .bind(remote)
        .bind(micros(at))
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query("DELETE FROM opt_outs WHERE did = ?1 AND remote = ?2")
            .bind(did)
            .bind(remote)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Out::Done)
}
