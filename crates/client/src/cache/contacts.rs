//! Contact settings (path, fallback, name, blocked), mirrored from the account's log
//! (`contact.updated`, `contact.deleted`). A contact without a row is `auto` without
//! fallback, unnamed and not blocked.

use airtext_api::contacts::{Contact, PathChoice};
use rusqlite::{params, Connection, OptionalExtension};

use super::{from_ms, parse_column, to_ms, CacheError, Migration};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "contacts",
        sql: "CREATE TABLE contacts (
        address TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        fallback INTEGER NOT NULL,
        name TEXT,
        updated_at INTEGER NOT NULL
    );",
    },
    Migration {
        version: 6,
        name: "contacts_blocked",
        sql: "ALTER TABLE contacts ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;",
    },
];

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        address: row.get(0)?,
        path: parse_column(&row.get::<_, String>(1)?, PathChoice::parse)?,
        fallback: row.get(2)?,
        name: row.get(3)?,
        blocked: row.get(5)?,
        updated_at: from_ms(row.get(4)?),
    })
}

pub fn get(conn: &Connection, address: &str) -> Result<Option<Contact>, CacheError> {
    Ok(super::one(
        conn,
        "SELECT address, path, fallback, name, updated_at, blocked FROM contacts WHERE address = ?1",
        [address],
        from_row,
    )
    .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Contact>, CacheError> {
    let mut stmt = conn.prepare(
        "SELECT address, path, fallback, name, updated_at, blocked FROM contacts ORDER BY address",
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
        "INSERT INTO contacts (address, path, fallback, name, updated_at, blocked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (address) DO UPDATE SET path = excluded.path, fallback = excluded.fallback,
            name = excluded.name, updated_at = excluded.updated_at, blocked = excluded.blocked",
        params![
            contact.address,
            contact.path.as_str(),
            contact.fallback,
            contact.name,
            to_ms(contact.updated_at),
            contact.blocked
        ],
    )?;
    Ok(true)
}

/// Removes the setting for `address`; returns whether there was one (re-applying is a no-op).
pub fn delete(conn: &Connection, address: &str) -> Result<bool, CacheError> {
    Ok(conn.execute("DELETE FROM contacts WHERE address = ?1", [address])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    /// A schema 4 cache (contacts without `blocked`) keeps its contacts through the upgrade,
    /// unblocked; a block is then stored, read back and deleted.
    #[test]
    fn a_schema_4_contact_survives_the_upgrade_and_blocks() -> Result<(), CacheError> {
        let dir = tempfile::tempdir().map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let mut conn = Connection::open(dir.path().join("c.sqlite3"))?;
        super::super::migrate_to(&mut conn, 0, 4)?;
        conn.execute(
            "INSERT INTO contacts (address, path, fallback, name, updated_at)
             VALUES ('@bob', 'cloud', 1, 'Bob', 0)",
            [],
        )?;
        super::super::migrate(&mut conn, 4)?;
        let mut bob = get(&conn, "@bob")?.ok_or(CacheError::Closed)?;
        assert!(!bob.blocked);
        assert_eq!(bob.name.as_deref(), Some("Bob"));
        bob.blocked = true;
        bob.updated_at = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(1);
        assert!(put(&conn, &bob)?);
        assert!(!put(&conn, &bob)?, "re-applying changes nothing");
        assert_eq!(list(&conn)?, vec![bob]);
        assert!(delete(&conn, "@bob")?);
        assert!(!delete(&conn, "@bob")?);
        assert!(get(&conn, "@bob")?.is_none());
        Ok(())
    }
}
