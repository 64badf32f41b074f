//! The sync cursor: the seq of the last event of the account's log this cache has applied.
//! Only [`super::apply`] moves it, inside the transaction that applies the events.
//!
//! Beside it, when a sync last reached the end of the log: how old what the cache shows is
//! (`airtext --offline` says so).

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::{from_ms, to_ms, CacheError, Migration};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "sync_state",
        sql: "CREATE TABLE sync_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            cursor INTEGER NOT NULL
        );
        INSERT INTO sync_state (id, cursor) VALUES (1, 0);",
    },
    Migration {
        version: 4,
        name: "sync_state_synced_at",
        sql: "ALTER TABLE sync_state ADD COLUMN synced_at INTEGER;",
    },
];

pub fn cursor(conn: &Connection) -> Result<i64, CacheError> {
    Ok(super::one(
        conn,
        "SELECT cursor FROM sync_state WHERE id = 1",
        [],
        |row| row.get(0),
    )?)
}

pub(crate) fn set_cursor(conn: &Connection, cursor: i64) -> Result<(), CacheError> {
    super::exec(
        conn,
        "UPDATE sync_state SET cursor = ?1 WHERE id = 1",
        [cursor],
    )?;
    Ok(())
}

/// When a sync last reached the end of the account's log (`None`: never).
pub fn synced_at(conn: &Connection) -> Result<Option<DateTime<Utc>>, CacheError> {
    let at: Option<i64> = super::one(
        conn,
        "SELECT synced_at FROM sync_state WHERE id = 1",
        [],
        |row| row.get(0),
    )?;
    Ok(at.map(from_ms))
}

pub(crate) fn set_synced_at(conn: &Connection, at: DateTime<Utc>) -> Result<(), CacheError> {
    super::exec(
        conn,
        "UPDATE sync_state SET synced_at = ?1 WHERE id = 1",
        [to_ms(at)],
    )?;
    Ok(())
}
