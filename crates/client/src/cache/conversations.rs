//! Conversations: one thread per peer address. A conversation can exist before the gateway
//! knows it (a first text still in the outbox); it gets its server id when the server copy of a
//! message in it arrives through sync.

use std::collections::HashMap;

use airtext_api::conversations::Conversation;
use airtext_api::{ConversationId, MessageId};
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
    Migration {
        version: 3,
        name: "conversations_search",
        // The search box's conversation match: any part of the peer (`2065550000` finds
        // +12065550000) or of the contact's name, answered from trigrams instead of reading
        // every conversation. Contentless (the rowid is the conversation's id) with
        // `contentless_delete`, so a contact's rename re-indexes its conversation by id
        // without the old text.
        sql: "CREATE VIRTUAL TABLE conversations_search USING fts5 (
        peer, name, content = '', contentless_delete = 1, tokenize = 'trigram'
    );
    CREATE TRIGGER conversations_search_insert AFTER INSERT ON conversations BEGIN
        INSERT INTO conversations_search (rowid, peer, name)
            VALUES (new.id, new.peer, (SELECT name FROM contacts WHERE address = new.peer));
    END;
    CREATE TRIGGER conversations_search_delete AFTER DELETE ON conversations BEGIN
        DELETE FROM conversations_search WHERE rowid = old.id;
    END;
    CREATE TRIGGER conversations_search_update AFTER UPDATE OF peer ON conversations BEGIN
        DELETE FROM conversations_search WHERE rowid = old.id;
        INSERT INTO conversations_search (rowid, peer, name)
            VALUES (new.id, new.peer, (SELECT name FROM contacts WHERE address = new.peer));
    END;
    CREATE TRIGGER conversations_search_contact_insert AFTER INSERT ON contacts BEGIN
        DELETE FROM conversations_search
            WHERE rowid IN (SELECT id FROM conversations WHERE peer = new.address);
        INSERT INTO conversations_search (rowid, peer, name)
            SELECT id, peer, new.name FROM conversations WHERE peer = new.address;
    END;
    CREATE TRIGGER conversations_search_contact_update AFTER UPDATE OF address, name ON contacts
    BEGIN
        DELETE FROM conversations_search
            WHERE rowid IN (SELECT id FROM conversations WHERE peer IN (old.address, new.address));
        INSERT INTO conversations_search (rowid, peer, name)
            SELECT c.id, c.peer, k.name FROM conversations c
            LEFT JOIN contacts k ON k.address = c.peer
            WHERE c.peer IN (old.address, new.address);
    END;
    CREATE TRIGGER conversations_search_contact_delete AFTER DELETE ON contacts BEGIN
        DELETE FROM conversations_search
            WHERE rowid IN (SELECT id FROM conversations WHERE peer = old.address);
        INSERT INTO conversations_search (rowid, peer, name)
            SELECT id, peer, NULL FROM conversations WHERE peer = old.address;
    END;
    INSERT INTO conversations_search (rowid, peer, name)
        SELECT c.id, c.peer, k.name FROM conversations c
        LEFT JOIN contacts k ON k.address = c.peer;",
    },
    Migration {
        version: 5,
        name: "conversation_state",
        // The account's own name for a conversation, its archive flag and its mute (ms since
        // the epoch; 9999-12-31T23:59:59Z mutes for good), as `conversation.updated` says.
        sql: "ALTER TABLE conversations ADD COLUMN conversation_name TEXT;
    ALTER TABLE conversations ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN muted_until INTEGER;",
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
    /// The account's own name for the conversation (the API's `name`; `name` above is the
    /// contact's).
    pub conversation_name: Option<String>,
    /// Hidden from the list until un-archived; a new inbound text un-archives it.
    pub archived: bool,
    /// No notification before this time; 9999-12-31T23:59:59Z mutes for good.
    pub muted_until: Option<DateTime<Utc>>,
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

    /// Forgets a conversation [`delete`]d in this batch.
    pub fn forget(&mut self, server_id: ConversationId) {
        self.known.remove(&server_id);
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

/// Deletes the conversation with this server id, every message in it and their outbox
/// entries (the account deleted it on some device). Answers the server ids of the messages
/// it held, or `None` when this cache never had the conversation.
pub fn delete(
    conn: &Connection,
    server_id: ConversationId,
) -> Result<Option<Vec<MessageId>>, CacheError> {
    let found: Option<i64> = super::one(
        conn,
        "SELECT id FROM conversations WHERE server_id = ?1",
        [server_id.to_string()],
        |row| row.get(0),
    )
    .optional()?;
    let Some(id) = found else {
        return Ok(None);
    };
    let mut statement =
        conn.prepare("DELETE FROM messages WHERE conversation = ?1 RETURNING server_id")?;
    let server_ids = statement
        .query_map([id], |row| row.get::<_, Option<String>>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    drop(statement);
    super::exec(conn, "DELETE FROM conversations WHERE id = ?1", [id])?;
    let messages = server_ids
        .into_iter()
        .flatten()
        .filter_map(|text| super::parse_uuid::<MessageId>(&text).ok())
        .collect();
    Ok(Some(messages))
}

/// Stores the name, archive flag and mute of the conversation the server sent (a
/// `conversation.updated` event or a PATCH's answer). `None` when this cache does not hold
/// it (a later sync of its messages brings it).
pub fn set_state(
    conn: &Connection,
    conversation: &Conversation,
) -> Result<Option<LocalConversationId>, CacheError> {
    Ok(super::one(
        conn,
        "UPDATE conversations SET conversation_name = ?2, archived = ?3, muted_until = ?4
         WHERE server_id = ?1 RETURNING id",
        params![
            conversation.id.to_string(),
            conversation.name,
            conversation.archived,
            conversation.muted_until.map(to_ms)
        ],
        |row| row.get(0),
    )
    .optional()?
    .map(LocalConversationId))
}

/// A new inbound text brings an archived conversation back, as the gateway does.
pub fn unarchive(conn: &Connection, id: LocalConversationId) -> Result<(), CacheError> {
    super::exec(
        conn,
        "UPDATE conversations SET archived = 0 WHERE id = ?1 AND archived = 1",
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
        conversation_name: row.get(6)?,
        archived: row.get(7)?,
        muted_until: row.get::<_, Option<i64>>(8)?.map(from_ms),
    })
}

const SELECT: &str = "SELECT c.id, c.server_id, c.peer, c.unread, c.updated_at, k.name,
        c.conversation_name, c.archived, c.muted_until
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

/// Conversations whose peer or contact name contain `needle` (any part of it, case folded),
/// most recently updated first, at most `limit`.
///
/// A needle of three characters or more is looked up in the trigram index
/// (`conversations_search`); a shorter one has no trigram, so the conversations are read in
/// update order (peer and name only) until `limit` of them match, which a one- or
/// two-character needle reaches quickly.
pub fn matching(
    conn: &Connection,
    needle: &str,
    limit: u32,
) -> Result<Vec<CachedConversation>, CacheError> {
    let needle = needle.trim();
    if needle.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = if needle.chars().count() >= 3 {
        // One FTS5 string: every trigram of the needle, in order (a substring match).
        let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
        let mut stmt = conn.prepare_cached(
            "SELECT c.id FROM conversations c
             JOIN (SELECT rowid FROM conversations_search WHERE conversations_search MATCH ?1) s
               ON s.rowid = c.id
             ORDER BY c.updated_at DESC, c.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![phrase, limit], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    } else {
        let lower = needle.to_lowercase();
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.peer, k.name FROM conversations c
             LEFT JOIN contacts k ON k.address = c.peer
             ORDER BY c.updated_at DESC, c.id DESC",
        )?;
        let mut rows = stmt.query([])?;
        let mut ids = Vec::new();
        while ids.len() < limit as usize {
            let Some(row) = rows.next()? else { break };
            let peer: String = row.get(1)?;
            let name: Option<String> = row.get(2)?;
            if peer.to_lowercase().contains(&lower)
                || name.is_some_and(|n| n.to_lowercase().contains(&lower))
            {
                ids.push(row.get(0)?);
            }
        }
        ids
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(conversation) = get(conn, LocalConversationId(id))? {
            out.push(conversation);
        }
    }
    Ok(out)
}

/// The sum of every conversation's unread count.
pub fn unread_total(conn: &Connection) -> Result<u64, CacheError> {
    let total: i64 = super::one(
        conn,
        "SELECT coalesce(sum(unread), 0) FROM conversations",
        [],
        |row| row.get(0),
    )?;
    // Counts are never negative; a corrupt row must not wrap round to a huge number.
    Ok(u64::try_from(total).unwrap_or(0))
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

#[cfg(test)]
mod tests {
    use super::*;
    use airtext_api::contacts::{Contact, PathChoice};

    fn open() -> Result<(tempfile::TempDir, Connection), CacheError> {
        let dir = tempfile::tempdir().map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let mut conn = Connection::open(dir.path().join("c.sqlite3"))?;
        super::super::migrate(&mut conn, 0)?;
        Ok((dir, conn))
    }

    fn contact(address: &str, name: Option<&str>) -> Contact {
        Contact {
            address: address.to_owned(),
            path: PathChoice::Auto,
            fallback: false,
            name: name.map(str::to_owned),
            blocked: false,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    fn ids(conn: &Connection, needle: &str, limit: u32) -> Result<Vec<i64>, CacheError> {
        Ok(matching(conn, needle, limit)?
            .into_iter()
            .map(|c| c.local_id.0)
            .collect())
    }

    /// The index answers what the old scan did: any part of the peer or of the contact's name,
    /// case folded, newest first, following contacts as they are added, renamed and removed.
    #[test]
    fn matches_any_part_of_peer_or_name_and_follows_contacts() -> Result<(), CacheError> {
        let (_dir, conn) = open()?;
        let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default();
        let a = ensure(&conn, None, "+12065550123", t(0))?.0;
        let b = ensure(&conn, None, "+12065550199", t(1))?.0;
        let c = ensure(&conn, None, "@ann", t(2))?.0;
        assert_eq!(ids(&conn, "2065550", 10)?, vec![b, a]);
        assert_eq!(ids(&conn, "2065550", 1)?, vec![b]);
        assert_eq!(ids(&conn, "0123", 10)?, vec![a]);
        // Short needles (no trigram) are matched by reading peers and names.
        assert_eq!(ids(&conn, "AN", 10)?, vec![c]);
        assert_eq!(ids(&conn, "99", 10)?, vec![b]);
        assert_eq!(ids(&conn, "  ", 10)?, Vec::<i64>::new());
        // A quote is text, not query syntax.
        assert_eq!(ids(&conn, "a\"b", 10)?, Vec::<i64>::new());

        super::super::contacts::put(&conn, &contact("+12065550123", Some("Zoë Bright")))?;
        assert_eq!(ids(&conn, "zoË b", 10)?, vec![a]);
        assert_eq!(ids(&conn, "zo", 10)?, vec![a]);
        super::super::contacts::put(&conn, &contact("+12065550123", Some("Max")))?;
        assert_eq!(ids(&conn, "bright", 10)?, Vec::<i64>::new());
        assert_eq!(ids(&conn, "max", 10)?, vec![a]);
        // The peer is still found after the renames.
        assert_eq!(ids(&conn, "5550123", 10)?, vec![a]);
        conn.execute("DELETE FROM contacts WHERE address = '+12065550123'", [])?;
        assert_eq!(ids(&conn, "max", 10)?, Vec::<i64>::new());
        assert_eq!(ids(&conn, "5550123", 10)?, vec![a]);
        // A contact saved before its conversation exists names it from the start.
        super::super::contacts::put(&conn, &contact("@bea", Some("Beatrix")))?;
        let d = ensure(&conn, None, "@bea", t(3))?.0;
        assert_eq!(ids(&conn, "trix", 10)?, vec![d]);
        // The unread total counts every conversation.
        touch(&conn, LocalConversationId(a), t(5), 2)?;
        touch(&conn, LocalConversationId(c), t(6), 3)?;
        assert_eq!(unread_total(&conn)?, 5);
        // A deleted conversation is no longer found.
        drop_if_orphan(&conn, LocalConversationId(d))?;
        assert_eq!(ids(&conn, "trix", 10)?, Vec::<i64>::new());
        Ok(())
    }

    /// `conversation.updated` sets the name, archive flag and mute of the conversation it
    /// names and of no other; an inbound text un-archives.
    #[test]
    fn state_applies_to_its_conversation_only() -> Result<(), CacheError> {
        let (_dir, conn) = open()?;
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let server_id = ConversationId::new();
        let bob = ensure(&conn, Some(server_id), "@bob", t)?;
        let carol = ensure(&conn, Some(ConversationId::new()), "@carol", t)?;
        let mut state = Conversation {
            id: server_id,
            peer: "@bob".into(),
            last_message: None,
            unread: 0,
            updated_at: t,
            name: Some("Bob from work".into()),
            archived: true,
            muted_until: Some(airtext_api::conversations::muted_always()),
        };
        assert_eq!(set_state(&conn, &state)?, Some(bob));
        let cached = get(&conn, bob)?.ok_or(CacheError::Corrupt("gone".into()))?;
        assert_eq!(cached.conversation_name.as_deref(), Some("Bob from work"));
        assert!(cached.archived);
        assert_eq!(cached.muted_until, state.muted_until);
        let other = get(&conn, carol)?.ok_or(CacheError::Corrupt("gone".into()))?;
        assert_eq!(
            (other.conversation_name, other.archived, other.muted_until),
            (None, false, None)
        );

        unarchive(&conn, bob)?;
        let cached = get(&conn, bob)?.ok_or(CacheError::Corrupt("gone".into()))?;
        assert!(!cached.archived);
        assert_eq!(cached.conversation_name.as_deref(), Some("Bob from work"));

        state.id = ConversationId::new();
        assert_eq!(
            set_state(&conn, &state)?,
            None,
            "a conversation this cache lacks"
        );
        Ok(())
    }

    /// A deleted conversation takes its messages and their outbox entries with it, and
    /// nothing of any other conversation.
    #[test]
    fn delete_takes_messages_and_outbox_entries() -> Result<(), CacheError> {
        use super::super::messages::{insert_local, NewLocal};
        use super::super::outbox::{self, Stage};
        use airtext_api::messages::Direction;
        use airtext_api::{ClientId, SendStatus};

        let (_dir, conn) = open()?;
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let server_id = ConversationId::new();
        ensure(&conn, Some(server_id), "@bob", t)?;
        for peer in ["@bob", "@bob", "@carol"] {
            let id = insert_local(
                &conn,
                &NewLocal {
                    direction: Direction::Outbound,
                    peer,
                    from: "@alice",
                    to: peer,
                    body: "on its way",
                    client_id: ClientId::new(),
                    status: SendStatus::Queued,
                    path: None,
                    route: None,
                    at: t,
                },
            )?;
            outbox::enqueue(&conn, id, None, Stage::Send, t)?;
        }
        let count = |table: &str| -> Result<i64, CacheError> {
            Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
        };
        assert_eq!((count("messages")?, count("outbox")?), (3, 3));

        // Local texts have no server id to announce.
        assert_eq!(delete(&conn, server_id)?, Some(Vec::new()));
        assert_eq!(by_peer(&conn, "@bob")?, None);
        assert!(by_peer(&conn, "@carol")?.is_some());
        assert_eq!((count("messages")?, count("outbox")?), (1, 1));
        assert_eq!(delete(&conn, server_id)?, None);
        Ok(())
    }
}
