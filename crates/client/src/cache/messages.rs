//! Messages, with FTS5 full-text search over bodies and peers.
//!
//! A message written on this device exists here before the gateway has it: it has a
//! `client_id` and no server `id` yet. When the server copy arrives (the send's reply, or
//! `message.created` through sync, whichever comes first) it is matched by `client_id` and
//! completes that same row: one message, never two. Status changes go through
//! [`SendStatus::advance`], so a late or repeated report never moves a message backwards.

use airtext_api::messages::{Direction, Encoding, Message, Route};
use airtext_api::{ClientId, MessageId, SendStatus};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::conversations::{self, LocalConversationId};
use super::{from_ms, parse_column, parse_uuid, to_ms, CacheError, Migration};
use crate::path::SendPath;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "messages",
    sql: "CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        server_id TEXT UNIQUE,
        client_id TEXT UNIQUE,
        conversation INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        peer TEXT NOT NULL,
        direction TEXT NOT NULL,
        from_addr TEXT NOT NULL,
        to_addr TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        route TEXT,
        path TEXT,
        encoding TEXT NOT NULL,
        segments INTEGER NOT NULL,
        failure_reason TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation, created_at DESC, id DESC);
    CREATE VIRTUAL TABLE messages_fts USING fts5 (
        body, peer, content = 'messages', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, body, peer) VALUES (new.id, new.body, new.peer);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, body, peer)
            VALUES ('delete', old.id, old.body, old.peer);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, peer ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, body, peer)
            VALUES ('delete', old.id, old.body, old.peer);
        INSERT INTO messages_fts (rowid, body, peer) VALUES (new.id, new.body, new.peer);
    END;",
}];

/// The cache's own id of a message (it exists before the server's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(type = "number"))]
#[serde(transparent)]
pub struct LocalMessageId(pub i64);

/// A message as the app shows it. Field names follow the API's `Message`; `id` and
/// `conversation_id` are `null` and `route` is `null` until the gateway has the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CachedMessage {
    pub id: Option<MessageId>,
    pub local_id: LocalMessageId,
    pub conversation_id: Option<airtext_api::ConversationId>,
    /// The other party, normalised.
    pub peer: String,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status: SendStatus,
    pub route: Option<Route>,
    /// The path it took (or is queued for): `cloud` or `cellular`.
    pub path: Option<SendPath>,
    pub client_id: Option<ClientId>,
    pub encoding: Encoding,
    pub segments: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT m.id, m.server_id, c.server_id, m.peer, m.direction, m.from_addr,
    m.to_addr, m.body, m.status, m.route, m.path, m.client_id, m.encoding, m.segments,
    m.failure_reason, m.created_at, m.updated_at
    FROM messages m JOIN conversations c ON c.id = m.conversation";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CachedMessage> {
    let opt_uuid = |i: usize| -> rusqlite::Result<Option<uuid::Uuid>> {
        row.get::<_, Option<String>>(i)?
            .as_deref()
            .map(parse_uuid::<uuid::Uuid>)
            .transpose()
    };
    Ok(CachedMessage {
        local_id: LocalMessageId(row.get(0)?),
        id: opt_uuid(1)?.map(MessageId),
        conversation_id: opt_uuid(2)?.map(airtext_api::ConversationId),
        peer: row.get(3)?,
        direction: parse_column(&row.get::<_, String>(4)?, Direction::parse)?,
        from: row.get(5)?,
        to: row.get(6)?,
        body: row.get(7)?,
        status: parse_column(&row.get::<_, String>(8)?, SendStatus::parse)?,
        route: row
            .get::<_, Option<String>>(9)?
            .map(|r| parse_column(&r, Route::parse))
            .transpose()?,
        path: row
            .get::<_, Option<String>>(10)?
            .map(|p| parse_column(&p, SendPath::parse))
            .transpose()?,
        client_id: opt_uuid(11)?.map(ClientId),
        encoding: parse_column(&row.get::<_, String>(12)?, Encoding::parse)?,
        segments: row.get(13)?,
        failure_reason: row.get(14)?,
        created_at: from_ms(row.get(15)?),
        updated_at: from_ms(row.get(16)?),
    })
}

pub fn get(conn: &Connection, id: LocalMessageId) -> Result<Option<CachedMessage>, CacheError> {
    Ok(super::one(conn, &format!("{SELECT} WHERE m.id = ?1"), [id.0], from_row).optional()?)
}

pub fn by_client_id(
    conn: &Connection,
    client_id: ClientId,
) -> Result<Option<CachedMessage>, CacheError> {
    Ok(super::one(
        conn,
        &format!("{SELECT} WHERE m.client_id = ?1"),
        [client_id.to_string()],
        from_row,
    )
    .optional()?)
}

/// The newest message of a conversation.
pub fn latest_in(
    conn: &Connection,
    conversation: LocalConversationId,
) -> Result<Option<CachedMessage>, CacheError> {
    Ok(super::one(
        conn,
        &format!(
            "{SELECT} WHERE m.conversation = ?1 ORDER BY m.created_at DESC, m.id DESC LIMIT 1"
        ),
        [conversation.0],
        from_row,
    )
    .optional()?)
}

/// The newest `limit` messages of a conversation older than `before` (when given), newest
/// first, as the API pages them.
pub fn list(
    conn: &Connection,
    conversation: LocalConversationId,
    limit: u32,
    before: Option<LocalMessageId>,
) -> Result<Vec<CachedMessage>, CacheError> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE m.conversation = ?1 AND (?2 IS NULL OR (m.created_at, m.id) <
            (SELECT created_at, id FROM messages WHERE id = ?2))
         ORDER BY m.created_at DESC, m.id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![conversation.0, before.map(|b| b.0), limit],
        from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Turns what a person typed into an FTS5 query: every word must appear, as a word or the
/// start of one. Quotes make each word a literal, so no input is an FTS syntax error.
pub fn fts_query(input: &str) -> Option<String> {
    let terms: Vec<String> = input
        .split_whitespace()
        .map(|word| word.replace('"', ""))
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .map(|word| format!("\"{word}\"*"))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Messages whose body or peer match every word of `query`, newest first.
pub fn search(
    conn: &Connection,
    query: &str,
    limit: u32,
) -> Result<Vec<CachedMessage>, CacheError> {
    let Some(fts) = fts_query(query) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1
            ORDER BY rowid DESC LIMIT ?2)
         ORDER BY m.id DESC"
    ))?;
    let rows = stmt.query_map(params![fts, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A message written on this device before the gateway has it: a text being sent, or one
/// received over cellular.
#[derive(Debug, Clone)]
pub struct NewLocal<'a> {
    pub direction: Direction,
    pub peer: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a str,
    pub client_id: ClientId,
    pub status: SendStatus,
    pub path: Option<SendPath>,
    pub route: Option<Route>,
    pub at: DateTime<Utc>,
}

pub fn insert_local(conn: &Connection, new: &NewLocal<'_>) -> Result<LocalMessageId, CacheError> {
    let conversation = conversations::ensure(conn, None, new.peer, new.at)?;
    let plan = airtext_sms::plan(new.body);
    let encoding = match plan.encoding {
        airtext_sms::Encoding::Gsm7 => Encoding::Gsm7,
        airtext_sms::Encoding::Ucs2 => Encoding::Ucs2,
    };
    super::exec(
        conn,
        "INSERT INTO messages (client_id, conversation, peer, direction, from_addr, to_addr, body,
            status, route, path, encoding, segments, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
        params![
            new.client_id.to_string(),
            conversation.0,
            new.peer,
            new.direction.as_str(),
            new.from,
            new.to,
            new.body,
            new.status.as_str(),
            new.route.map(Route::as_str),
            new.path.map(SendPath::as_str),
            encoding.as_str(),
            u32::try_from(plan.segment_count()).unwrap_or(u32::MAX),
            to_ms(new.at)
        ],
    )?;
    let id = LocalMessageId(conn.last_insert_rowid());
    let unread = u32::from(new.direction == Direction::Inbound);
    conversations::touch(conn, conversation, new.at, unread)?;
    Ok(id)
}

/// What storing a server copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A message this cache did not have.
    Inserted(LocalMessageId),
    /// A message written here (matched by `client_id`) or known, now completed or moved on.
    Updated(LocalMessageId),
    /// Already exactly as given: re-applying changes nothing.
    Unchanged(LocalMessageId),
}

impl Stored {
    pub fn id(self) -> LocalMessageId {
        match self {
            Stored::Inserted(id) | Stored::Updated(id) | Stored::Unchanged(id) => id,
        }
    }
}

fn path_of(route: Route) -> SendPath {
    match route {
        Route::Cellular => SendPath::Cellular,
        Route::InNetwork | Route::Carrier => SendPath::Cloud,
    }
}

/// `(local id, server id, status, conversation, path)` of a message already here.
type ExistingRow = (i64, Option<String>, String, i64, Option<String>);

/// Stores the server's copy of a message: completes the local row with the same `client_id`
/// or the same server id, or inserts it.
pub fn store_server_copy(conn: &Connection, message: &Message) -> Result<Stored, CacheError> {
    let peer = match message.direction {
        Direction::Outbound => message.to.as_str(),
        Direction::Inbound => message.from.as_str(),
    };
    let existing: Option<ExistingRow> = super::one(
        conn,
        "SELECT id, server_id, status, conversation, path FROM messages
             WHERE server_id = ?1 OR (?2 IS NOT NULL AND client_id = ?2)
             ORDER BY server_id IS NULL LIMIT 1",
        params![
            message.id.to_string(),
            message.client_id.map(|c| c.to_string())
        ],
        |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        },
    )
    .optional()?;
    let Some((local, server_id, status, old_conversation, path)) = existing else {
        let conversation = conversations::ensure(
            conn,
            Some(message.conversation_id),
            peer,
            message.created_at,
        )?;
        super::exec(
            conn,
            "INSERT INTO messages (server_id, client_id, conversation, peer, direction, from_addr,
                to_addr, body, status, route, path, encoding, segments, failure_reason, created_at,
                updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            params![
                message.id.to_string(),
                message.client_id.map(|c| c.to_string()),
                conversation.0,
                peer,
                message.direction.as_str(),
                message.from,
                message.to,
                message.body,
                message.status.as_str(),
                message.route.as_str(),
                path_of(message.route).as_str(),
                message.encoding.as_str(),
                message.segments,
                message.failure_reason,
                to_ms(message.created_at),
                to_ms(message.updated_at)
            ],
        )?;
        let unread = u32::from(message.direction == Direction::Inbound);
        conversations::touch(conn, conversation, message.created_at, unread)?;
        return Ok(Stored::Inserted(LocalMessageId(conn.last_insert_rowid())));
    };
    let local = LocalMessageId(local);
    let current = SendStatus::parse(&status)
        .ok_or_else(|| CacheError::Corrupt(format!("message status {status:?}")))?;
    let advanced = current.advance(message.status);
    if server_id.is_some() && advanced.is_none() {
        return Ok(Stored::Unchanged(local));
    }
    let status = advanced.unwrap_or(current);
    if server_id.is_none() {
        // First server copy of a message written here: it takes the server's ids, addresses
        // and conversation (the gateway may know the peer by a canonical address).
        let conversation = conversations::ensure(
            conn,
            Some(message.conversation_id),
            peer,
            message.created_at,
        )?;
        let path = path.unwrap_or_else(|| path_of(message.route).as_str().to_owned());
        super::exec(
            conn,
            "UPDATE messages SET server_id = ?1, conversation = ?2, peer = ?3, from_addr = ?4,
                to_addr = ?5, status = ?6, route = ?7, path = ?8, encoding = ?9, segments = ?10,
                failure_reason = coalesce(?11, failure_reason), updated_at = ?12
             WHERE id = ?13",
            params![
                message.id.to_string(),
                conversation.0,
                peer,
                message.from,
                message.to,
                status.as_str(),
                message.route.as_str(),
                path,
                message.encoding.as_str(),
                message.segments,
                message.failure_reason,
                to_ms(message.updated_at),
                local.0
            ],
        )?;
        conversations::touch(conn, conversation, message.created_at, 0)?;
        if conversation.0 != old_conversation {
            conversations::drop_if_orphan(conn, LocalConversationId(old_conversation))?;
        }
    } else {
        set_status_row(
            conn,
            local,
            status,
            message.failure_reason.as_deref(),
            message.updated_at,
        )?;
    }
    Ok(Stored::Updated(local))
}

fn set_status_row(
    conn: &Connection,
    id: LocalMessageId,
    status: SendStatus,
    failure_reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), CacheError> {
    super::exec(
        conn,
        "UPDATE messages SET status = ?1, failure_reason = coalesce(?2, failure_reason),
            updated_at = max(updated_at, ?3) WHERE id = ?4",
        params![status.as_str(), failure_reason, to_ms(at), id.0],
    )?;
    Ok(())
}

/// Applies a status report for the message with server id `id`; returns the message when
/// the status moved (the reducer refuses backwards and repeated reports).
pub fn apply_status(
    conn: &Connection,
    id: MessageId,
    status: SendStatus,
    failure_reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Option<LocalMessageId>, CacheError> {
    let found: Option<(i64, String)> = super::one(
        conn,
        "SELECT id, status FROM messages WHERE server_id = ?1",
        [id.to_string()],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()?;
    let Some((local, current)) = found else {
        return Ok(None);
    };
    let current = SendStatus::parse(&current)
        .ok_or_else(|| CacheError::Corrupt(format!("message status {current:?}")))?;
    match current.advance(status) {
        Some(next) => {
            set_status_row(conn, LocalMessageId(local), next, failure_reason, at)?;
            Ok(Some(LocalMessageId(local)))
        }
        None => Ok(None),
    }
}

/// Applies a status decided on this device (the outbox), through the same reducer.
pub fn apply_local_status(
    conn: &Connection,
    id: LocalMessageId,
    status: SendStatus,
    failure_reason: Option<&str>,
) -> Result<bool, CacheError> {
    let current: Option<String> = super::one(
        conn,
        "SELECT status FROM messages WHERE id = ?1",
        [id.0],
        |row| row.get(0),
    )
    .optional()?;
    let Some(current) = current.as_deref().and_then(SendStatus::parse) else {
        return Ok(false);
    };
    match current.advance(status) {
        Some(next) => {
            set_status_row(conn, id, next, failure_reason, Utc::now())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Records the path (and route) a local message takes.
pub fn set_path(
    conn: &Connection,
    id: LocalMessageId,
    path: SendPath,
    route: Option<Route>,
) -> Result<(), CacheError> {
    super::exec(
        conn,
        "UPDATE messages SET path = ?1, route = coalesce(?2, route) WHERE id = ?3",
        params![path.as_str(), route.map(Route::as_str), id.0],
    )?;
    Ok(())
}

/// Deletes the message with server id `id`; returns its conversation when it existed.
pub fn delete(conn: &Connection, id: MessageId) -> Result<Option<LocalConversationId>, CacheError> {
    let conversation: Option<i64> = super::one(
        conn,
        "DELETE FROM messages WHERE server_id = ?1 RETURNING conversation",
        [id.to_string()],
        |row| row.get(0),
    )
    .optional()?;
    Ok(conversation.map(LocalConversationId))
}

/// Counts messages (for tests and the benchmarks).
pub fn count(conn: &Connection) -> Result<i64, CacheError> {
    Ok(super::one(
        conn,
        "SELECT count(*) FROM messages",
        [],
        |row| row.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn fts_queries_are_literal_prefix_terms() {
        assert_eq!(
            fts_query("hello wor").as_deref(),
            Some("\"hello\"* \"wor\"*")
        );
        assert_eq!(fts_query("a\"b OR").as_deref(), Some("\"ab\"* \"OR\"*"));
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("+1415").as_deref(), Some("\"+1415\"*"));
        assert_eq!(fts_query("*** ()"), None);
    }
}
