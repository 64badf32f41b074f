//! Conversations: one thread per peer address. A conversation can exist before the gateway
//! knows it (a first text still in the outbox); it gets its server id when the server copy of a
//! message in it arrives through sync.

use std::collections::HashMap;

use airtext_api::ConversationId;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::messages::{self, CachedMessage};
use super::{from_ms, to_ms, CacheError, Migration};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "conversations",
        sql: "CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        server_id TEXT UNIQUE,
        peer TEXT NOT NULL UNIQUE,
        unread INTEGER NOT NULL DEFAULT 0,
        read_up_to TEXT,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX conversations_by_update ON conversations (updated_at DESC, id DESC);",
    },
    Migration {
        version: 2,
        name: "conversations_fts",
        // Search matches peers here, once per conversation, not once per message.
        sql: "CREATE VIRTUAL TABLE conversations_fts USING fts5 (
        peer, content = 'conversations', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
        INSERT INTO conversations_fts (rowid, peer) VALUES (new.id, new.peer);
    END;
    CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
        INSERT INTO conversations_fts (conversations_fts, rowid, peer)
            VALUES ('delete', old.id, old.peer);
    END;
    CREATE TRIGGER conversations_fts_update AFTER UPDATE OF peer ON conversations BEGIN
        INSERT INTO conversations_fts (conversations_fts, rowid, peer)
            VALUES ('delete', old.id, old.peer);
        INSERT INTO conversations_fts (rowid, peer) VALUES (new.id, new.peer);
    END;
    INSERT INTO conversations_fts (conversations_fts) VALUES ('rebuild');",
    },
];

/// The cache's own id of a conversation (it exists before the server's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(type = "number"))]
#[serde(transparent)]
pub struct LocalConversationId(pub i64);

/// A conversation as the app lists it; field names follow the API's `Conversation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CachedConversation {
    /// The server's id; `null` until the gateway has a message of it.
    pub id: Option<ConversationId>,
    pub local_id: LocalConversationId,
    /// The normalised peer address.
    pub peer: String,
    /// The contact's name, when one is set.
    pub name: Option<String>,
    pub last_message: Option<CachedMessage>,
    pub unread: u32,
    pub updated_at: DateTime<Utc>,
}

/// The conversation with `peer` (and server id `server_id`, when known), created if missing.
/// A conversation found by peer takes the server id; one found by server id keeps its peer.
pub fn ensure(
    conn: &Connection,
    server_id: Option<ConversationId>,
    peer: &str,
    at: DateTime<Utc>,
) -> Result<LocalConversationId, CacheError> {
    if let Some(server_id) = server_id {
        let found: Option<i64> = super::one(
            conn,
            "SELECT id FROM conversations WHERE server_id = ?1",
            [server_id.to_string()],
            |row| row.get(0),
        )
        .optional()?;
        if let Some(id) = found {
            return Ok(LocalConversationId(id));
        }
    }
    let found: Option<i64> = super::one(
        conn,
        "SELECT id FROM conversations WHERE peer = ?1",
        [peer],
        |row| row.get(0),
    )
    .optional()?;
    if let Some(id) = found {
        if let Some(server_id) = server_id {
            super::exec(
                conn,
                "UPDATE conversations SET server_id = ?1 WHERE id = ?2",
                params![server_id.to_string(), id],
            )?;
        }
        return Ok(LocalConversationId(id));
    }
    super::exec(
        conn,
        "INSERT INTO conversations (server_id, peer, unread, updated_at) VALUES (?1, ?2, 0, ?3)",
        params![server_id.map(|id| id.to_string()), peer, to_ms(at)],
    )?;
    Ok(LocalConversationId(conn.last_insert_rowid()))
}

/// Moves `updated_at` forward to `at` (never back) and adds `unread` unread messages.
pub fn touch(
    conn: &Connection,
    id: LocalConversationId,
    at: DateTime<Utc>,
    unread: u32,
) -> Result<(), CacheError> {
    touch_ms(conn, id, to_ms(at), unread)
}

fn touch_ms(
    conn: &Connection,
    id: LocalConversationId,
    at: i64,
    unread: u32,
) -> Result<(), CacheError> {
    super::exec(
        conn,
        "UPDATE conversations SET updated_at = max(updated_at, ?1), unread = unread + ?2 WHERE id = ?3",
        params![at, unread, id.0],
    )?;
    Ok(())
}

/// Conversation work gathered over one sync page: the conversations already resolved by server
/// id, and the [`touch`]es, written once per conversation by [`Batch::flush`] instead of once
/// per message. Touches commute with each other (a maximum and a sum), so deferring them is
/// exact as long as they are flushed before anything that sets the same columns
/// ([`mark_read`]) or reads them.
#[derive(Debug, Default)]
pub struct Batch {
    known: HashMap<ConversationId, LocalConversationId>,
    /// Conversation → (newest time in ms, unread messages to add).
    touches: HashMap<LocalConversationId, (i64, u32)>,
}

impl Batch {
    /// [`ensure`] with the server id known, remembered for the rest of the batch (within one
    /// transaction a server id keeps its conversation: [`drop_if_orphan`] only drops
    /// conversations without one).
    pub fn ensure(
        &mut self,
        conn: &Connection,
        server_id: ConversationId,
        peer: &str,
        at: DateTime<Utc>,
    ) -> Result<LocalConversationId, CacheError> {
        if let Some(id) = self.known.get(&server_id) {
            return Ok(*id);
        }
        let id = ensure(conn, Some(server_id), peer, at)?;
        self.known.insert(server_id, id);
        Ok(id)
    }

    /// A deferred [`touch`].
    pub fn touch(&mut self, id: LocalConversationId, at: DateTime<Utc>, unread: u32) {
        let entry = self.touches.entry(id).or_insert((i64::MIN, 0));
        entry.0 = entry.0.max(to_ms(at));
        entry.1 = entry.1.saturating_add(unread);
    }

    /// Writes the deferred touches.
    pub fn flush(&mut self, conn: &Connection) -> Result<(), CacheError> {
        for (id, (at, unread)) in self.touches.drain() {
            touch_ms(conn, id, at, unread)?;
        }
        Ok(())
    }
}

/// Sets the read marker from a `conversation.read` event; returns the conversation if it is
/// known here and anything changed.
pub fn mark_read(
    conn: &Connection,
    server_id: ConversationId,
    up_to: &str,
    unread: u32,
) -> Result<Option<LocalConversationId>, CacheError> {
    let found: Option<(i64, u32, Option<String>)> = super::one(
        conn,
        "SELECT id, unread, read_up_to FROM conversations WHERE server_id = ?1",
        [server_id.to_string()],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .optional()?;
    match found {
        Some((id, old_unread, old_up_to))
            if old_unread != unread || old_up_to.as_deref() != Some(up_to) =>
        {
            super::exec(
                conn,
                "UPDATE conversations SET unread = ?1, read_up_to = ?2 WHERE id = ?3",
                params![unread, up_to, id],
            )?;
            Ok(Some(LocalConversationId(id)))
        }
        _ => Ok(None),
    }
}

/// Deletes a conversation that has neither a server id nor messages (left behind when its
/// first text was reconciled into the server's conversation under a canonical peer).
pub fn drop_if_orphan(conn: &Connection, id: LocalConversationId) -> Result<(), CacheError> {
    super::exec(
        conn,
        "DELETE FROM conversations WHERE id = ?1 AND server_id IS NULL
           AND NOT EXISTS (SELECT 1 FROM messages WHERE conversation = ?1)",
        [id.0],
    )?;
    Ok(())
}

fn read(conn: &Connection, row: &rusqlite::Row<'_>) -> Result<CachedConversation, CacheError> {
    let local_id = LocalConversationId(row.get(0)?);
    let server_id: Option<String> = row.get(1)?;
    let last_message = messages::latest_in(conn, local_id)?;
    Ok(CachedConversation {
        id: server_id.as_deref().map(super::parse_uuid).transpose()?,
        local_id,
        peer: row.get(2)?,
        name: row.get(5)?,
        last_message,
        unread: row.get(3)?,
        updated_at: from_ms(row.get(4)?),
    })
}

const SELECT: &str = "SELECT c.id, c.server_id, c.peer, c.unread, c.updated_at, k.name
    FROM conversations c LEFT JOIN contacts k ON k.address = c.peer";

/// Most recently updated first.
pub fn list(conn: &Connection, limit: u32) -> Result<Vec<CachedConversation>, CacheError> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?1"
    ))?;
    let mut rows = stmt.query([limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read(conn, row)?);
    }
    Ok(out)
}

pub fn get(
    conn: &Connection,
    id: LocalConversationId,
) -> Result<Option<CachedConversation>, CacheError> {
    let mut stmt = conn.prepare(&format!("{SELECT} WHERE c.id = ?1"))?;
    let mut rows = stmt.query([id.0])?;
    match rows.next()? {
        Some(row) => Ok(Some(read(conn, row)?)),
        None => Ok(None),
    }
}

pub fn by_peer(conn: &Connection, peer: &str) -> Result<Option<LocalConversationId>, CacheError> {
    Ok(super::one(
        conn,
        "SELECT id FROM conversations WHERE peer = ?1",
        [peer],
        |row| row.get(0),
    )
    .optional()?
    .map(LocalConversationId))
}
