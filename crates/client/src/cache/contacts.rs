//! Contact settings (path, fallback, name), mirrored from the account's log
//! (`contact.updated`). A contact without a row is `auto` without fallback.

use airtext_api::contacts::{Contact, PathChoice};
use rusqlite::{params, Connection, OptionalExtension};

use super::{from_ms, parse_column, to_ms, CacheError, Migration};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "contacts",
    sql: "CREATE TABLE contacts (
        address TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        fallback INTEGER NOT NULL,
        name TEXT,
        updated_at INTEGER NOT NULL
    );",
}];

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        address: row.get(0)?,
        path: parse_column(&row.get::<_, String>(1)?, PathChoice::parse)?,
        fallback: row.get(2)?,
        name: row.get(3)?,
        updated_at: from_ms(row.get(4)?),
    })
}

pub fn get(conn: &Connection, address: &str) -> Result<Option<Contact>, CacheError> {
    Ok(super::one(
        conn,
        "SELECT address, path, fallback, name, updated_at FROM contacts WHERE address = ?1",
        [address],
        from_row,
    )
    .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Contact>, CacheError> {
    let mut stmt = conn.prepare(
        "SELECT address, path, fallback, name, updated_at FROM contacts ORDER BY address",
    )?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores `contact`; returns whether anything changed (re-applying is a no-op).
pub fn put(conn: &Connection, contact: &Contact) -> Result<bool, CacheError> {
    if get(conn, &contact.address)?.as_ref() == Some(contact) {
        return Ok(false);
    }
    super::exec(
        conn,
        "INSERT INTO contacts (address, path, fallback, name, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (address) DO UPDATE SET path = excluded.path, fallback = excluded.fallback,
            name = excluded.name, updated_at = excluded.updated_at",
        params![
            contact.address,
            contact.path.as_str(),
            contact.fallback,
            contact.name,
            to_ms(contact.updated_at)
        ],
    )?;
    Ok(true)
}
