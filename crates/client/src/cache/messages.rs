//! Messages, with FTS5 full-text search over bodies (and their conversations' peers, see
//! [`search`]).
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

pub const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        version: 2,
        name: "messages_fts_body_only",
        // Peers are searched per conversation (`conversations_fts`): a number prefix matched
        // in here merged the postings of half a million messages. New rows are indexed by
        // `index_bodies`, not by a trigger (see there).
        sql: "DROP TRIGGER messages_fts_insert;
    DROP TRIGGER messages_fts_delete;
    DROP TRIGGER messages_fts_update;
    DROP TABLE messages_fts;
    CREATE VIRTUAL TABLE messages_fts USING fts5 (
        body, content = 'messages', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
    );
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
        INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
    END;
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');",
    },
];

/// Adds the bodies of newly inserted messages to the FTS5 index, in one statement.
///
/// Every path that inserts into `messages` calls this (deletes and body changes are indexed by
/// triggers). Not a trigger for inserts: FTS5 writes its pending terms to disk as a new
/// segment at every statement savepoint, and an insert that fires a trigger opens one, so a
/// sync wrote (and then merged) one segment per message — half of its time. A page of sync
/// indexes its messages together ([`super::apply`]).
pub fn index_bodies(conn: &Connection, ids: &[LocalMessageId]) -> Result<(), CacheError> {
    match ids {
        [] => {}
        [one] => {
            super::exec(
                conn,
                "INSERT INTO messages_fts (rowid, body) SELECT id, body FROM messages WHERE id = ?1",
                [one.0],
            )?;
        }
        many => {
            let list = serde_json::to_string(&many.iter().map(|id| id.0).collect::<Vec<_>>())
                .map_err(|e| CacheError::Corrupt(e.to_string()))?;
            super::exec(
                conn,
                "INSERT INTO messages_fts (rowid, body)
                 SELECT m.id, m.body FROM json_each(?1) j JOIN messages m ON m.id = j.value",
                [list],
            )?;
        }
    }
    Ok(())
}

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

/// The messages whose server id is `id` or ends with it (at most `limit`): a script or a
/// person may name a message by the last characters of its id, as `airtext messages` shows
/// it (ids are UUIDv7: their first characters are a timestamp that nearby messages share,
/// their last ones random). Anything but hex digits and dashes matches nothing.
pub fn with_id_ending(
    conn: &Connection,
    id: &str,
    limit: u32,
) -> Result<Vec<CachedMessage>, CacheError> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE m.server_id IS NOT NULL AND substr(m.server_id, -length(?1)) = ?1
         ORDER BY m.id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![id, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest message of a conversation that the gateway has (what a read marker can name).
pub fn latest_at_gateway(
    conn: &Connection,
    conversation: LocalConversationId,
) -> Result<Option<CachedMessage>, CacheError> {
    Ok(super::one(
        conn,
        &format!(
            "{SELECT} WHERE m.conversation = ?1 AND m.server_id IS NOT NULL
             ORDER BY m.created_at DESC, m.id DESC LIMIT 1"
        ),
        [conversation.0],
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

/// One word of a search, as an FTS5 phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    /// The phrase, quotes removed (quoted again in [`Word::fts`]).
    text: String,
    /// Matches the start of a word (the word being typed), not only the whole word.
    prefix: bool,
}

impl Word {
    /// The word as an FTS5 phrase: quoted, so no input is an FTS syntax error.
    fn fts(&self) -> String {
        if self.prefix {
            format!("\"{}\"*", self.text)
        } else {
            format!("\"{}\"", self.text)
        }
    }
}

/// The words of what a person typed. Every word is matched whole, except the last one while
/// it is being typed (no space after it), which also matches as the start of a word.
fn words(input: &str) -> Vec<Word> {
    let typing = !input.ends_with(char::is_whitespace);
    let raw: Vec<&str> = input.split_whitespace().collect();
    let last = raw.len().saturating_sub(1);
    raw.iter()
        .enumerate()
        .map(|(i, word)| Word {
            text: word.replace('"', ""),
            prefix: typing && i == last,
        })
        .filter(|word| word.text.chars().any(char::is_alphanumeric))
        .collect()
}

/// Turns what a person typed into an FTS5 query (see [`search`] for what matches).
pub fn fts_query(input: &str) -> Option<String> {
    let words = words(input);
    (!words.is_empty()).then(|| join_fts(words.iter()))
}

fn join_fts<'a>(words: impl Iterator<Item = &'a Word>) -> String {
    words.map(Word::fts).collect::<Vec<_>>().join(" ")
}

/// How many of a set of conversations' messages [`newest_in`] collects through the
/// conversation index before it scans the newest messages instead (then at least this many
/// messages are in the set, so the scan meets `limit` of them quickly).
const COLLECT_AT_MOST: usize = 5_000;

/// Messages that match every word of `query`, newest first (by local id, the order they
/// arrived in). A word matches a message whose text has it, or whose conversation's peer has
/// it (`+1415` finds the texts with +14155550123). Every word is matched whole except the last
/// one while it is being typed (no space after it), which also matches words it starts:
/// `see you` finds "see you soon" and "see your" but `see you ` only the first, and `sea`
/// does not find "see the sea later".
///
/// How it stays fast over a million messages: the FTS5 index of bodies is read newest first
/// and stops after `limit` hits; peers are matched in the small FTS5 index of conversations,
/// so a number prefix (`+1415555`), which matches a large share of all messages, never
/// merges a million postings; it becomes "the newest messages of these conversations".
pub fn search(
    conn: &Connection,
    query: &str,
    limit: u32,
) -> Result<Vec<CachedMessage>, CacheError> {
    let words = words(query);
    let limit = limit as usize;
    if words.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    // For each word, the conversations whose peer has it.
    let mut peers: Vec<std::collections::HashSet<i64>> = Vec::with_capacity(words.len());
    for word in &words {
        let mut stmt = conn.prepare_cached(
            "SELECT rowid FROM conversations_fts WHERE conversations_fts MATCH ?1",
        )?;
        let ids = stmt.query_map([word.fts()], |row| row.get::<_, i64>(0))?;
        peers.push(ids.collect::<Result<_, _>>()?);
    }
    // (Beyond 8 such words, the rest are matched in the text only: 256 ways are plenty.)
    let on_peer: Vec<usize> = (0..words.len())
        .filter(|&i| peers.get(i).is_some_and(|p| !p.is_empty()))
        .take(8)
        .collect();
    // Every way of matching: the words in `by_peer` through the conversation's peer (all of
    // them at once: the intersection of their conversations), the others in the text.
    let mut found: Vec<i64> = Vec::new();
    for mask in 0u32..(1u32 << on_peer.len()) {
        let by_peer: Vec<usize> = on_peer
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, &i)| i)
            .collect();
        let conversations = match by_peer.split_first() {
            None => None,
            Some((first, rest)) => {
                let mut set = peers.get(*first).cloned().unwrap_or_default();
                for i in rest {
                    set.retain(|id| peers.get(*i).is_some_and(|p| p.contains(id)));
                }
                if set.is_empty() {
                    continue;
                }
                Some(set)
            }
        };
        let in_text = words
            .iter()
            .enumerate()
            .filter(|(i, _)| !by_peer.contains(i))
            .map(|(_, word)| word);
        let fts = join_fts(in_text);
        if fts.is_empty() {
            if let Some(conversations) = &conversations {
                found.extend(newest_in(conn, conversations, limit)?);
            }
        } else {
            found.extend(newest_matching(conn, &fts, conversations.as_ref(), limit)?);
        }
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    found.dedup();
    found.truncate(limit);
    let mut out = Vec::with_capacity(found.len());
    for id in found {
        if let Some(message) = get(conn, LocalMessageId(id))? {
            out.push(message);
        }
    }
    Ok(out)
}

/// The newest `limit` messages whose text matches `fts`, in `conversations` when given.
fn newest_matching(
    conn: &Connection,
    fts: &str,
    conversations: Option<&std::collections::HashSet<i64>>,
    limit: usize,
) -> Result<Vec<i64>, CacheError> {
    let mut stmt = conn.prepare_cached(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 ORDER BY rowid DESC",
    )?;
    let mut rows = stmt.query([fts])?;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(row) = rows.next()? else { break };
        let id: i64 = row.get(0)?;
        if let Some(conversations) = conversations {
            let conversation: Option<i64> = super::one(
                conn,
                "SELECT conversation FROM messages WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()?;
            if !conversation.is_some_and(|c| conversations.contains(&c)) {
                continue;
            }
        }
        out.push(id);
    }
    Ok(out)
}

/// The newest `limit` messages of `conversations`: through the conversation index while
/// they have few messages, else by scanning the newest messages (then they are common).
fn newest_in(
    conn: &Connection,
    conversations: &std::collections::HashSet<i64>,
    limit: usize,
) -> Result<Vec<i64>, CacheError> {
    let mut ids: Vec<i64> = Vec::new();
    let mut few = true;
    for conversation in conversations {
        let mut stmt = conn.prepare_cached("SELECT id FROM messages WHERE conversation = ?1")?;
        let mut rows = stmt.query([conversation])?;
        while let Some(row) = rows.next()? {
            ids.push(row.get(0)?);
            if ids.len() > COLLECT_AT_MOST {
                few = false;
                break;
            }
        }
        if !few {
            break;
        }
    }
    if few {
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.truncate(limit);
        return Ok(ids);
    }
    let mut stmt = conn.prepare_cached("SELECT id, conversation FROM messages ORDER BY id DESC")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(row) = rows.next()? else { break };
        if conversations.contains(&row.get::<_, i64>(1)?) {
            out.push(row.get(0)?);
        }
    }
    Ok(out)
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
    index_bodies(conn, &[id])?;
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
    let mut batch = conversations::Batch::default();
    let (stored, _) = store_in_batch(conn, message, &mut batch)?;
    batch.flush(conn)?;
    if let Stored::Inserted(id) = stored {
        index_bodies(conn, &[id])?;
    }
    Ok(stored)
}

/// The message as the app shows it, right after [`store_in_batch`] inserted it as `id`: built
/// from the server copy, exactly as [`get`] would read the row back.
pub fn inserted(message: &Message, id: LocalMessageId) -> CachedMessage {
    CachedMessage {
        id: Some(message.id),
        local_id: id,
        // The row's conversation carries this server id (found by it, or given it).
        conversation_id: Some(message.conversation_id),
        peer: peer_of(message).to_owned(),
        direction: message.direction,
        from: message.from.clone(),
        to: message.to.clone(),
        body: message.body.clone(),
        status: message.status,
        route: Some(message.route),
        path: Some(path_of(message.route)),
        client_id: message.client_id,
        encoding: message.encoding,
        segments: message.segments,
        failure_reason: message.failure_reason.clone(),
        // Stored in milliseconds.
        created_at: from_ms(to_ms(message.created_at)),
        updated_at: from_ms(to_ms(message.updated_at)),
    }
}

fn peer_of(message: &Message) -> &str {
    match message.direction {
        Direction::Outbound => message.to.as_str(),
        Direction::Inbound => message.from.as_str(),
    }
}

/// [`store_server_copy`] within a page of sync: conversation lookups and touches go through
/// `batch` (the caller flushes it), and an inserted message is not indexed yet (the caller
/// passes it to [`index_bodies`] before the transaction ends, and before deleting anything).
/// Returns what happened and the message's conversation.
pub fn store_in_batch(
    conn: &Connection,
    message: &Message,
    batch: &mut conversations::Batch,
) -> Result<(Stored, LocalConversationId), CacheError> {
    let peer = peer_of(message);
    let existing_row = |row: &rusqlite::Row<'_>| -> rusqlite::Result<ExistingRow> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        ))
    };
    // By server id first (a row that has it wins), then by `client_id`: two index lookups.
    let mut existing: Option<ExistingRow> = super::one(
        conn,
        "SELECT id, server_id, status, conversation, path FROM messages WHERE server_id = ?1",
        [message.id.to_string()],
        existing_row,
    )
    .optional()?;
    if let (None, Some(client_id)) = (&existing, message.client_id) {
        existing = super::one(
            conn,
            "SELECT id, server_id, status, conversation, path FROM messages WHERE client_id = ?1",
            [client_id.to_string()],
            existing_row,
        )
        .optional()?;
    }
    let Some((local, server_id, status, old_conversation, path)) = existing else {
        let conversation = batch.ensure(conn, message.conversation_id, peer, message.created_at)?;
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
        batch.touch(conversation, message.created_at, unread);
        return Ok((
            Stored::Inserted(LocalMessageId(conn.last_insert_rowid())),
            conversation,
        ));
    };
    let local = LocalMessageId(local);
    let current = SendStatus::parse(&status)
        .ok_or_else(|| CacheError::Corrupt(format!("message status {status:?}")))?;
    let advanced = current.advance(message.status);
    if server_id.is_some() && advanced.is_none() {
        return Ok((
            Stored::Unchanged(local),
            LocalConversationId(old_conversation),
        ));
    }
    let status = advanced.unwrap_or(current);
    if server_id.is_none() {
        // First server copy of a message written here: it takes the server's ids, addresses
        // and conversation (the gateway may know the peer by a canonical address).
        let conversation = batch.ensure(conn, message.conversation_id, peer, message.created_at)?;
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
        batch.touch(conversation, message.created_at, 0);
        if conversation.0 != old_conversation {
            conversations::drop_if_orphan(conn, LocalConversationId(old_conversation))?;
        }
        return Ok((Stored::Updated(local), conversation));
    }
    set_status_row(
        conn,
        local,
        status,
        message.failure_reason.as_deref(),
        message.updated_at,
    )?;
    Ok((
        Stored::Updated(local),
        LocalConversationId(old_conversation),
    ))
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
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `search` against the plain reading of its rule: one FTS5 table holding each message's
    /// text and its conversation's peer, queried newest first.
    #[test]
    #[allow(clippy::indexing_slicing)]
    fn search_finds_what_one_table_of_texts_and_peers_would() -> Result<(), CacheError> {
        let mut conn = Connection::open_in_memory()?;
        super::super::migrate(&mut conn, 0)?;
        let mut rng = StdRng::seed_from_u64(1);
        let vocabulary = [
            "see",
            "you",
            "your",
            "soon",
            "sea",
            "station",
            "kalo",
            "kalomi",
            "bob",
            "café",
            "o'clock",
            "twelve",
            "14155550123",
            "example",
        ];
        let peers = [
            "+14155550123",
            "+14155550999",
            "+14155551000",
            "@bob",
            "@bobby",
            "ann@example.com",
        ];
        let tx = conn.transaction()?;
        // Enough messages in one conversation for `newest_in` to scan rather than collect.
        for i in 0..(COLLECT_AT_MOST + 1_500) {
            let peer = if i % 3 == 0 {
                peers[0]
            } else {
                peers[rng.gen_range(0..peers.len())]
            };
            let body = (0..rng.gen_range(1..6))
                .map(|_| vocabulary[rng.gen_range(0..vocabulary.len())])
                .collect::<Vec<_>>()
                .join(" ");
            insert_local(
                &tx,
                &NewLocal {
                    direction: Direction::Inbound,
                    peer,
                    from: peer,
                    to: "@me",
                    body: &body,
                    client_id: ClientId::new(),
                    status: SendStatus::Delivered,
                    path: None,
                    route: None,
                    at: Utc::now(),
                },
            )?;
        }
        tx.execute_batch(
            "CREATE VIRTUAL TABLE temp.plain USING fts5 (body, peer,
                tokenize = 'unicode61 remove_diacritics 2');
             INSERT INTO plain (rowid, body, peer) SELECT m.id, m.body, c.peer
                FROM messages m JOIN conversations c ON c.id = m.conversation;",
        )?;
        tx.commit()?;
        let queries = [
            "see",
            "see ",
            "se",
            "see you",
            "see you ",
            "sea",
            "kalo",
            "kalo ",
            "kal",
            "+1415",
            "+14155550",
            "+14155550123",
            "1415555",
            "bob",
            "bob ",
            "bob see",
            "bob kalo",
            "example",
            "ann",
            "ann example",
            "cafe",
            "CAFÉ",
            "o'clock",
            "o'c",
            "twelve bob",
            "14155550123 see",
            "+1415 bob",
            "zzz",
            "see zzz",
            "\"",
            "you your soon",
        ];
        for query in queries {
            for limit in [1, 50, 20_000] {
                let got: Vec<i64> = search(&conn, query, limit)?
                    .iter()
                    .map(|m| m.local_id.0)
                    .collect();
                let want: Vec<i64> = match fts_query(query) {
                    None => Vec::new(),
                    Some(fts) => {
                        let mut stmt = conn.prepare(
                            "SELECT rowid FROM plain WHERE plain MATCH ?1
                             ORDER BY rowid DESC LIMIT ?2",
                        )?;
                        let rows = stmt.query_map(params![fts, limit], |r| r.get(0))?;
                        rows.collect::<Result<_, _>>()?
                    }
                };
                assert_eq!(got, want, "{query:?} (limit {limit})");
            }
        }
        Ok(())
    }

    #[test]
    fn fts_queries_are_literal_words_and_the_last_one_a_prefix_while_typed() {
        assert_eq!(
            fts_query("hello wor").as_deref(),
            Some("\"hello\" \"wor\"*")
        );
        assert_eq!(
            fts_query("hello wor ").as_deref(),
            Some("\"hello\" \"wor\"")
        );
        assert_eq!(fts_query("a\"b OR").as_deref(), Some("\"ab\" \"OR\"*"));
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("+1415").as_deref(), Some("\"+1415\"*"));
        assert_eq!(fts_query("*** ()"), None);
        // Punctuation being typed after a complete word does not make it a prefix.
        assert_eq!(fts_query("hello ***").as_deref(), Some("\"hello\""));
    }
}
