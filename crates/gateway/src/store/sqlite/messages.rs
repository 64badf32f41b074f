//! Messages on SQLite: deliveries, statuses and deletion in the writer; their reads.

use std::sync::LazyLock;

use airtext_api::messages::{Direction, Message};
use airtext_api::sync::EventKind;
use airtext_api::{AccountId, ConversationId, MessageId, SendStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use uuid::Uuid;

use super::super::rows::{self, micros, Cols};
use super::super::rules;
use super::super::{
    Delivered, Delivery, MessageStore, NewMessage, StatusOutcome, StatusUpdate, StoreError,
    StoreResult,
};
use super::carriers::OPTED_OUT;
use super::conn::{self, all, blob, first_uuid, one, opt_blob, run};
use super::writer::{self, append, Effects, Out};
use super::{unexpected, SqliteStore};

/// The writes of messages the writer runs.
#[derive(Debug)]
pub(super) enum Op {
    Deliver(Box<Delivery>),
    UpdateStatus(StatusUpdate),
    DeleteMessage {
        account: AccountId,
        id: MessageId,
        at: DateTime<Utc>,
    },
}

impl Op {
    /// See [`writer::Op::changes_accounts`]: no catch-all arm.
    pub(super) fn changes_accounts(&self) -> bool {
        match self {
            Op::Deliver(_) | Op::UpdateStatus(_) | Op::DeleteMessage { .. } => false,
        }
    }
}

impl From<Op> for writer::Op {
    fn from(op: Op) -> Self {
        writer::Op::Messages(op)
    }
}

/// Runs one write in the writer's open transaction.
pub(super) fn execute(conn: &Connection, op: &Op, fx: &mut Effects<'_>) -> StoreResult<Out> {
    match *op {
        Op::Deliver(ref delivery) => deliver(conn, fx, delivery),
        Op::UpdateStatus(ref update) => update_status(conn, fx, update),
        Op::DeleteMessage { account, id, at } => delete_message(conn, fx, account, id, at),
    }
}

/// A conversation is found, then updated or created, rather than upserted with RETURNING:
/// SQLite builds a temporary b-tree for every RETURNING, which cost more than the extra
/// lookup (this thread is the only writer, so nothing can come between the two).
const FIND_CONVERSATION: &str = "SELECT id FROM conversations WHERE account_id = ?1 AND peer = ?2";

/// `?5` is [`rules::stays_archived`] for the copy's direction.
const BUMP_CONVERSATION: &str = "UPDATE conversations SET last_message_id = ?2, \
         updated_at = max(updated_at, ?3), unread = unread + ?4, archived = archived AND ?5 \
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

/// See [`rules::blocked_by`]: whether the recipient blocked the copy's sender.
const BLOCKED: &str = "SELECT 1 FROM contacts \
     WHERE account_id = ?1 AND address IN (?2, ?3) AND blocked";

fn deliver(conn: &Connection, fx: &mut Effects<'_>, delivery: &Delivery) -> StoreResult<Out> {
    // Checked inside the write, so no block stored before this text can be missed.
    let recipient = match &delivery.recipient {
        Some(copy) => {
            let (account, addresses) = rules::blocked_by(copy);
            let blocked = one(
                conn,
                BLOCKED,
                params![blob(&account.0), addresses[0], addresses[1]],
                |_| Ok(()),
            )?;
            blocked.is_none().then_some(copy)
        }
        None => None,
    };
    let copies: Vec<&NewMessage> = delivery.sender.iter().chain(recipient).collect();
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
        let stopped = one(conn, OPTED_OUT, params![did, remote], |_| Ok(()))?;
        if stopped.is_some() {
            return Ok(Out::RecipientStopped);
        }
    }

    // Each copy's conversation, found or created.
    let mut messages = Vec::with_capacity(copies.len());
    for copy in &copies {
        let unread = i64::from(copy.direction == Direction::Inbound);
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
                    params![
                        blob(&id),
                        blob(&copy.id.0),
                        micros(copy.created_at),
                        unread,
                        rules::stays_archived(copy.direction)
                    ],
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
    let recipient = if recipient.is_some() {
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

fn update_status(
    conn: &Connection,
    fx: &mut Effects<'_>,
    update: &StatusUpdate,
) -> StoreResult<Out> {
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
pub(super) type Advanced = Option<bool>;

/// Applies a status report ([`rules::status_change`]).
pub(super) fn apply_status(
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
pub(super) struct SentThrough<'a> {
    pub(super) carrier: &'a str,
    pub(super) carrier_message_id: &'a str,
    pub(super) cost: Option<f64>,
}

/// [`apply_status`], also recording `sent_through` on the message (whether or not the status
/// moves).
pub(super) fn advance_status(
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
    // The log forgets the message too: what it logged of it becomes a tombstone.
    let tombstone = rules::tombstone(id, conversation.into());
    run(
        conn,
        "UPDATE events SET type = ?3, payload = ?4 WHERE account_id = ?1 AND message_id = ?2",
        params![
            blob(&account.0),
            blob(&id.0),
            tombstone.type_name(),
            rows::event_payload(&tombstone)?
        ],
    )?;
    append(conn, fx, account, at, &tombstone)?;
    Ok(Out::Done)
}

#[async_trait]
impl MessageStore for SqliteStore {
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

    async fn search_messages(
        &self,
        account: AccountId,
        words: &[String],
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<Message>> {
        let anyones = search_match(None, words);
        let owned = search_match(Some(account), words);
        self.scan(move |conn| {
            let before = match before {
                None => None,
                Some(id) => Some(
                    one(
                        conn,
                        "SELECT rowid FROM messages WHERE id = ?1 AND account_id = ?2",
                        params![blob(&id.0), blob(&account.0)],
                        conn::first_int,
                    )?
                    .ok_or(StoreError::NotFound)?,
                ),
            };
            // `+m.account_id`: look the candidates up by rowid, never scan the account's
            // messages through its (account, client_id) index. Two plans, each fast where the
            // other is slow: the newest matches of every
            // account, kept if they are this account's (fast when the account holds many of
            // the matches; FTS5 answers without reading the owner's long doclist), then, if
            // that scan ran out before a page was full, the owner's token intersected with
            // the words from where it stopped (fast when the account holds few of them).
            let candidates: Vec<i64> = all(
                conn,
                "SELECT -rowid FROM message_search WHERE message_search MATCH ?1 \
                   AND (?2 IS NULL OR rowid > -?2) ORDER BY rowid LIMIT ?3",
                params![anyones, before, SEARCH_SCAN],
                conn::first_int,
            )?;
            let listed = serde_json::to_string(&candidates)
                .map_err(|e| rows::corrupt(format!("rowids do not serialise: {e}")))?;
            let mut found = all(
                conn,
                &format!(
                    "SELECT {} FROM messages m \
                     WHERE m.rowid IN (SELECT value FROM json_each(?1)) AND +m.account_id = ?2 \
                     ORDER BY m.rowid DESC LIMIT ?3",
                    rows::MESSAGE_COLUMNS
                ),
                params![listed, blob(&account.0), i64::from(limit)],
                |row| rows::message(row),
            )?;
            let scanned_all = candidates.len() < usize::try_from(SEARCH_SCAN).unwrap_or(0);
            let (Some(&oldest), false) = (candidates.last(), scanned_all) else {
                return Ok(found);
            };
            let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
            if found.len() >= wanted {
                return Ok(found);
            }
            let rest = all(
                conn,
                &format!(
                    "SELECT {} FROM messages m \
                     WHERE m.rowid IN (SELECT -rowid FROM message_search \
                                       WHERE message_search MATCH ?1 AND rowid > -?2 \
                                       ORDER BY rowid LIMIT ?3) \
                       AND +m.account_id = ?4 \
                     ORDER BY m.rowid DESC",
                    rows::MESSAGE_COLUMNS
                ),
                params![
                    owned,
                    oldest,
                    i64::try_from(wanted - found.len()).unwrap_or(i64::MAX),
                    blob(&account.0)
                ],
                |row| rows::message(row),
            )?;
            found.extend(rest);
            Ok(found)
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
}

/// How many of the newest matches of every account a search looks at before it narrows the
/// index to the account's own entries.
const SEARCH_SCAN: i64 = 512;

/// The FTS5 query for `words`, in `account`'s messages when given (the owner's token) or in
/// everyone's: each word in the body, the last one as a prefix (type-ahead). Words are letters
/// and digits only ([`rules::search_words`]), so quoting them keeps them out of the syntax.
fn search_match(account: Option<AccountId>, words: &[String]) -> String {
    let mut terms = Vec::new();
    if let Some(account) = account {
        terms.push(format!(
            "owner : \"{}\"",
            hex::encode_upper(account.0.as_bytes())
        ));
    }
    for (i, word) in words.iter().enumerate() {
        let prefix = if i + 1 == words.len() { " *" } else { "" };
        terms.push(format!("body : \"{word}\"{prefix}"));
    }
    terms.join(" AND ")
}
