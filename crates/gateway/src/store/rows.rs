//! Row mapping shared by both engines.
//!
//! Each engine reads columns through [`Cols`] (its own types: micros vs `timestamptz`, blob vs
//! `uuid`); everything above that — parsing enum names, range checks, event payloads — lives
//! here once. Stored data is never trusted to be well formed: anything this version does not
//! understand becomes [`StoreError::Corrupt`], never a panic.

use airtext_api::contacts::{Contact, PathChoice};
use airtext_api::conversations::Conversation;
use airtext_api::identities::{IdentityKind, IdentityStatus};
use airtext_api::messages::{Direction, Encoding, Message, Route};
use airtext_api::sync::{EventKind, SyncEvent};
use airtext_api::{ConversationId, MessageId, SendStatus};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AccountRecord, DeviceRecord, IdentityRecord, NewMessage, OutboundJob, ResetCodeRecord,
    StoreError, StoreResult,
};

/// Typed column access by name; each engine implements it for its row type.
pub(crate) trait Cols {
    fn uuid(&self, col: &str) -> StoreResult<Uuid>;
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>>;
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn int(&self, col: &str) -> StoreResult<i64>;
    fn boolean(&self, col: &str) -> StoreResult<bool>;
    fn time(&self, col: &str) -> StoreResult<DateTime<Utc>>;
    fn opt_time(&self, col: &str) -> StoreResult<Option<DateTime<Utc>>>;
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Micros since the epoch, the SQLite representation of a timestamp.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt(format!("timestamp {micros}")))
}

pub(crate) fn to_u32(value: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("{what} = {value}")))
}

pub(crate) fn status(s: &str) -> StoreResult<SendStatus> {
    SendStatus::parse(s).ok_or_else(|| corrupt(format!("status {s:?}")))
}

pub(crate) fn direction(s: &str) -> StoreResult<Direction> {
    Direction::parse(s).ok_or_else(|| corrupt(format!("direction {s:?}")))
}

pub(crate) fn route(s: &str) -> StoreResult<Route> {
    Route::parse(s).ok_or_else(|| corrupt(format!("route {s:?}")))
}

pub(crate) fn encoding(s: &str) -> StoreResult<Encoding> {
    Encoding::parse(s).ok_or_else(|| corrupt(format!("encoding {s:?}")))
}

pub(crate) fn identity_kind(s: &str) -> StoreResult<IdentityKind> {
    IdentityKind::parse(s).ok_or_else(|| corrupt(format!("identity kind {s:?}")))
}

pub(crate) fn identity_status(s: &str) -> StoreResult<IdentityStatus> {
    match s {
        "pending" => Ok(IdentityStatus::Pending),
        "verified" => Ok(IdentityStatus::Verified),
        _ => Err(corrupt(format!("identity status {s:?}"))),
    }
}

pub(crate) fn path_choice(s: &str) -> StoreResult<PathChoice> {
    PathChoice::parse(s).ok_or_else(|| corrupt(format!("contact path {s:?}")))
}

/// The columns every message query selects, unqualified (`m` is the messages alias).
pub(crate) const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.direction, m.from_addr, \
     m.to_addr, m.body, m.status, m.route, m.client_id, m.encoding, m.segments, \
     m.failure_reason, m.created_at, m.updated_at";

pub(crate) fn message(row: &impl Cols) -> StoreResult<Message> {
    Ok(Message {
        id: MessageId(row.uuid("id")?),
        conversation_id: ConversationId(row.uuid("conversation_id")?),
        direction: direction(&row.text("direction")?)?,
        from: row.text("from_addr")?,
        to: row.text("to_addr")?,
        body: row.text("body")?,
        status: status(&row.text("status")?)?,
        route: route(&row.text("route")?)?,
        client_id: row.opt_uuid("client_id")?.map(Into::into),
        encoding: encoding(&row.text("encoding")?)?,
        segments: to_u32(row.int("segments")?, "segments")?,
        failure_reason: row.opt_text("failure_reason")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The columns every conversation query selects: the conversation under `c_*` names, and its
/// last message (left-joined as `m`) under the message names.
pub(crate) const CONVERSATION_COLUMNS: &str = "c.id AS c_id, c.peer AS c_peer, \
     c.unread AS c_unread, c.updated_at AS c_updated_at, c.name AS c_name, \
     c.archived AS c_archived, c.muted_until AS c_muted_until, m.id, m.conversation_id, m.direction, \
     m.from_addr, m.to_addr, m.body, m.status, m.route, m.client_id, m.encoding, m.segments, \
     m.failure_reason, m.created_at, m.updated_at";

pub(crate) fn conversation(row: &impl Cols) -> StoreResult<Conversation> {
    let last_message = match row.opt_uuid("id")? {
        Some(_) => Some(message(row)?),
        None => None,
    };
    Ok(Conversation {
        id: ConversationId(row.uuid("c_id")?),
        peer: row.text("c_peer")?,
        last_message,
        unread: to_u32(row.int("c_unread")?, "unread")?,
        updated_at: row.time("c_updated_at")?,
        name: row.opt_text("c_name")?,
        archived: row.boolean("c_archived")?,
        muted_until: row.opt_time("c_muted_until")?,
    })
}

pub(crate) const ACCOUNT_COLUMNS: &str =
    "a.id, a.username, a.email, a.password_hash, a.created_at, n.number";

pub(crate) fn account(row: &impl Cols) -> StoreResult<AccountRecord> {
    Ok(AccountRecord {
        id: row.uuid("id")?.into(),
        username: row.text("username")?,
        email: row.opt_text("email")?,
        password_hash: row.text("password_hash")?,
        number: row.opt_text("number")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn device(row: &impl Cols) -> StoreResult<DeviceRecord> {
    Ok(DeviceRecord {
        id: row.uuid("id")?.into(),
        account_id: row.uuid("account_id")?.into(),
        name: row.text("name")?,
        has_cellular: row.boolean("has_cellular")?,
        created_at: row.time("created_at")?,
        last_seen_at: row.time("last_seen_at")?,
    })
}

pub(crate) fn identity(row: &impl Cols) -> StoreResult<IdentityRecord> {
    Ok(IdentityRecord {
        id: row.uuid("id")?.into(),
        account_id: row.uuid("account_id")?.into(),
        kind: identity_kind(&row.text("kind")?)?,
        value: row.text("value")?,
        status: identity_status(&row.text("status")?)?,
        code_hash: row.opt_text("code_hash")?,
        code_expires_at: row.opt_time("code_expires_at")?,
        attempts: to_u32(row.int("attempts")?, "attempts")?,
        created_at: row.time("created_at")?,
        verified_at: row.opt_time("verified_at")?,
    })
}

pub(crate) fn contact(row: &impl Cols) -> StoreResult<Contact> {
    Ok(Contact {
        address: row.text("address")?,
        path: path_choice(&row.text("path")?)?,
        fallback: row.boolean("fallback")?,
        name: row.opt_text("name")?,
        blocked: row.boolean("blocked")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn outbound_job(row: &impl Cols) -> StoreResult<OutboundJob> {
    Ok(OutboundJob {
        message_id: row.uuid("message_id")?.into(),
        account_id: row.uuid("account_id")?.into(),
        from: row.text("from_addr")?,
        to: row.text("to_addr")?,
        body: row.text("body")?,
        attempts: to_u32(row.int("attempts")?, "attempts")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn reset_code(row: &impl Cols) -> StoreResult<ResetCodeRecord> {
    Ok(ResetCodeRecord {
        account_id: row.uuid("account_id")?.into(),
        code_hash: row.text("code_hash")?,
        expires_at: row.time("expires_at")?,
        attempts: to_u32(row.int("attempts")?, "attempts")?,
    })
}

pub(crate) fn event(row: &impl Cols) -> StoreResult<SyncEvent> {
    let payload = row.text("payload")?;
    let kind: EventKind =
        serde_json::from_str(&payload).map_err(|e| corrupt(format!("event payload: {e}")))?;
    Ok(SyncEvent {
        seq: row.int("seq")?,
        at: row.time("at")?,
        kind,
    })
}

/// The stored form of an event: its JSON with the `type` tag, as devices receive it.
pub(crate) fn event_payload(kind: &EventKind) -> StoreResult<String> {
    serde_json::to_string(kind).map_err(|e| corrupt(format!("event does not serialise: {e}")))
}

/// The message a [`NewMessage`] becomes once stored in `conversation`.
pub(crate) fn stored_message(new: &NewMessage, conversation: ConversationId) -> Message {
    Message {
        id: new.id,
        conversation_id: conversation,
        direction: new.direction,
        from: new.from.clone(),
        to: new.to.clone(),
        body: new.body.clone(),
        status: new.status,
        route: new.route,
        client_id: new.client_id,
        encoding: new.encoding,
        segments: new.segments,
        failure_reason: None,
        created_at: new.created_at,
        updated_at: new.created_at,
    }
}

/// Which uniqueness rule a database error broke, judged by the constraint name (PostgreSQL) or
/// the message naming the column (SQLite).
pub(crate) fn unique_violation(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(
            db.constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db.message().to_owned()),
        ),
        _ => None,
    }
}
