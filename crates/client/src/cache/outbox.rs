//! The outbox: texts written on this device that no path has accepted yet (or, for cellular,
//! that the gateway has not recorded yet). A row lives exactly as long as there is work left;
//! its message row is the text itself.
//!
//! Stages:
//! - `send`: waiting to go out (cloud sends are idempotent by `client_id`, so retrying is safe);
//! - `cellular_in_flight`: handed to the modem; written *before* the modem is asked, so a crash
//!   in between never sends a second SMS (the row is then failed with an honest reason instead);
//! - `record`: sent over cellular, waiting to be recorded at the gateway.

use airtext_api::contacts::PathChoice;
use airtext_api::messages::Direction;
use airtext_api::ClientId;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::messages::LocalMessageId;
use super::{from_ms, parse_column, parse_uuid, to_ms, CacheError, Migration};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "outbox",
    sql: "CREATE TABLE outbox (
        message INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        via TEXT,
        stage TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at);",
}];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Send,
    CellularInFlight,
    Record,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Send => "send",
            Stage::CellularInFlight => "cellular_in_flight",
            Stage::Record => "record",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "send" => Some(Stage::Send),
            "cellular_in_flight" => Some(Stage::CellularInFlight),
            "record" => Some(Stage::Record),
            _ => None,
        }
    }
}

/// One piece of outbox work, with what its message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub message: LocalMessageId,
    pub client_id: ClientId,
    pub direction: Direction,
    /// The other party (the recipient of an outbound text).
    pub peer: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// The path asked for with this text; `None` follows the contact's setting.
    pub via: Option<PathChoice>,
    pub stage: Stage,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

pub fn enqueue(
    conn: &Connection,
    message: LocalMessageId,
    via: Option<PathChoice>,
    stage: Stage,
    at: DateTime<Utc>,
) -> Result<(), CacheError> {
    super::exec(
        conn,
        "INSERT INTO outbox (message, via, stage, attempts, next_attempt_at) VALUES (?1, ?2, ?3, 0, ?4)",
        params![message.0, via.map(PathChoice::as_str), stage.as_str(), to_ms(at)],
    )?;
    Ok(())
}

const SELECT: &str =
    "SELECT o.message, m.client_id, m.direction, m.peer, m.body, m.created_at, o.via, o.stage,
    o.attempts, o.next_attempt_at, o.last_error FROM outbox o JOIN messages m ON m.id = o.message";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        message: LocalMessageId(row.get(0)?),
        client_id: parse_uuid(&row.get::<_, String>(1)?)?,
        direction: parse_column(&row.get::<_, String>(2)?, Direction::parse)?,
        peer: row.get(3)?,
        body: row.get(4)?,
        created_at: from_ms(row.get(5)?),
        via: row
            .get::<_, Option<String>>(6)?
            .map(|v| parse_column(&v, PathChoice::parse))
            .transpose()?,
        stage: parse_column(&row.get::<_, String>(7)?, Stage::parse)?,
        attempts: row.get(8)?,
        next_attempt_at: from_ms(row.get(9)?),
        last_error: row.get(10)?,
    })
}

/// Work due at `now`, oldest message first (texts to one peer keep their order).
pub fn due(conn: &Connection, now: DateTime<Utc>) -> Result<Vec<OutboxEntry>, CacheError> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE o.next_attempt_at <= ?1 ORDER BY o.message"
    ))?;
    let rows = stmt.query_map([to_ms(now)], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn all(conn: &Connection) -> Result<Vec<OutboxEntry>, CacheError> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY o.message"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next piece of work falls due, if any.
pub fn next_due(conn: &Connection) -> Result<Option<DateTime<Utc>>, CacheError> {
    let at: Option<i64> = super::one(conn, "SELECT min(next_attempt_at) FROM outbox", [], |row| {
        row.get(0)
    })?;
    Ok(at.map(from_ms))
}

/// Moves a row from stage `from` to `to`, due at `due`; returns false when the row was not in
/// `from` (another process claimed it first).
pub fn move_stage(
    conn: &Connection,
    message: LocalMessageId,
    from: Stage,
    to: Stage,
    due: DateTime<Utc>,
) -> Result<bool, CacheError> {
    Ok(super::exec(
        conn,
        "UPDATE outbox SET stage = ?1, next_attempt_at = ?2 WHERE message = ?3 AND stage = ?4",
        params![to.as_str(), to_ms(due), message.0, from.as_str()],
    )? == 1)
}

/// Sends a waiting text by `via` at once (the person chose the other path).
pub fn redirect(
    conn: &Connection,
    message: LocalMessageId,
    via: PathChoice,
    now: DateTime<Utc>,
) -> Result<bool, CacheError> {
    Ok(super::exec(
        conn,
        "UPDATE outbox SET via = ?1, next_attempt_at = ?2 WHERE message = ?3 AND stage = 'send'",
        params![via.as_str(), to_ms(now), message.0],
    )? == 1)
}

/// Counts a failed attempt and schedules the next one.
pub fn retry_at(
    conn: &Connection,
    message: LocalMessageId,
    at: DateTime<Utc>,
    error: &str,
) -> Result<(), CacheError> {
    super::exec(
        conn,
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?1, last_error = ?2 WHERE message = ?3",
        params![to_ms(at), error, message.0],
    )?;
    Ok(())
}

pub fn remove(conn: &Connection, message: LocalMessageId) -> Result<(), CacheError> {
    super::exec(conn, "DELETE FROM outbox WHERE message = ?1", [message.0])?;
    Ok(())
}

/// Makes every waiting row due now (the connection just came back).
pub fn wake_all(conn: &Connection, now: DateTime<Utc>) -> Result<usize, CacheError> {
    Ok(super::exec(
        conn,
        "UPDATE outbox SET next_attempt_at = ?1 WHERE next_attempt_at > ?1",
        [to_ms(now)],
    )?)
}
