//! The sync cursor: the seq of the last event of the account's log this cache has applied.
//! Only [`super::apply`] moves it, inside the transaction that applies the events.

use rusqlite::Connection;

use super::{CacheError, Migration};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "sync_state",
    sql: "CREATE TABLE sync_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cursor INTEGER NOT NULL
    );
    INSERT INTO sync_state (id, cursor) VALUES (1, 0);",
}];

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
