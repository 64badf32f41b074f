//! Cached answers of `GET /v1/lookup` (is this address an Airtext account?), so the path
//! policy does not ask the gateway for every text. Entries older than the caller's TTL are
//! ignored and refreshed.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{from_ms, to_ms, CacheError, Migration};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "lookups",
    sql: "CREATE TABLE lookups (
        address TEXT PRIMARY KEY,
        in_network INTEGER NOT NULL,
        checked_at INTEGER NOT NULL
    );",
}];

/// The cached answer for `address` and when it was checked.
pub fn get(conn: &Connection, address: &str) -> Result<Option<(bool, DateTime<Utc>)>, CacheError> {
    Ok(super::one(
        conn,
        "SELECT in_network, checked_at FROM lookups WHERE address = ?1",
        [address],
        |row| Ok((row.get::<_, bool>(0)?, from_ms(row.get(1)?))),
    )
    .optional()?)
}

pub fn put(
    conn: &Connection,
    address: &str,
    in_network: bool,
    at: DateTime<Utc>,
) -> Result<(), CacheError> {
    super::exec(
        conn,
        "INSERT INTO lookups (address, in_network, checked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (address) DO UPDATE SET in_network = excluded.in_network,
            checked_at = excluded.checked_at",
        params![address, in_network, to_ms(at)],
    )?;
    Ok(())
}
