//! Connections driven directly through `rusqlite`: opening them, the read-only pool, and row
//! decoding.
//!
//! SQLite is called in the calling thread — the writer's own OS thread, or whichever thread
//! reads — so a statement costs SQLite's work and nothing else: no hand-off to a
//! per-connection worker thread and back (which is what sqlx's SQLite driver does for every
//! statement, and what dominated the send path's profile; see docs/decisions.md).
//!
//! Nothing stored is trusted: a value of the wrong type, a blob that is not a UUID, a
//! timestamp out of range all become [`StoreError::Corrupt`], never a panic.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Params, Row};
use uuid::Uuid;

use super::super::rows::{self, corrupt, Cols};
use super::super::{StoreError, StoreResult};

/// How long a statement waits for a lock another connection holds (in WAL mode: only a
/// checkpoint's or a recovery's) before it fails with `SQLITE_BUSY`.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements each connection keeps (the store has fewer distinct statements).
const STATEMENT_CACHE: usize = 128;
/// Idle read connections kept open; more are opened when more readers run at once, and
/// closed again when they are done.
const IDLE_READERS: usize = 8;

/// The blob form of an id, as both engines' schemas store it on SQLite.
pub(super) fn blob(id: &Uuid) -> &[u8] {
    id.as_bytes()
}

pub(super) fn opt_blob(id: &Option<Uuid>) -> Option<&[u8]> {
    id.as_ref().map(blob)
}

/// Makes this store the database file's one user, or says which file another process (or
/// another store in this process) is using. Everything the writer keeps in memory instead
/// of reading it back (each log's newest seq, the caches) is true only if no one else
/// writes. The lock is an advisory `flock` on the file itself, which SQLite's own locks
/// (`fcntl`) never meet; it is held as long as the returned file is open, and the kernel
/// drops it when the process dies, so a crashed gateway never blocks its restart. (Not on
/// other systems than Unix, where the gateway is not deployed: there nothing is locked.)
pub(super) fn own_file(path: &Path) -> StoreResult<std::fs::File> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    let file = opened.map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot open the database file {}: {e}",
            path.display()
        ))
    })?;
    #[cfg(unix)]
    {
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StoreError::InUse(format!(
                    "the database file {} is in use by another gateway: only one may use a \
                     SQLite database at a time (stop the other one, or use PostgreSQL to run \
                     several)",
                    path.display()
                )))
            }
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot lock the database file {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Ok(file)
}

/// Opens the write connection of a database file.
pub(super) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "SQLite refused WAL mode (journal_mode is {mode})"
        )));
    }
    // NORMAL: a COMMIT writes the WAL without flushing it; the syncer thread flushes it
    // before the group is answered (see `durability`), so the writer never waits for the disk.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A read opens (creating if need be) the `-wal` file, which the syncer opens next.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    // Checkpoints are the checkpointer thread's; the writer checkpoints itself only if that
    // thread falls this far behind.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)?;
    configure_writer(&conn)?;
    Ok(conn)
}

/// Pages of WAL past which the writer checkpoints by itself (64 MiB of 4 KiB pages).
const WAL_BACKSTOP_PAGES: i64 = 16_384;

/// Opens the connection the checkpointer copies the WAL back with.
pub(super) fn open_checkpointer(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: the WAL is synced before its pages are copied, and the database after.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Opens a private in-memory database (`sqlite::memory:`): one connection, the writer's, which
/// also serves the reads.
pub(super) fn open_memory() -> StoreResult<Connection> {
    let conn = Connection::open_in_memory()?;
    configure_writer(&conn)?;
    Ok(conn)
}

fn configure_writer(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A command that fails runs again in a savepoint, whose undo pages go to a sub-journal:
    // kept in memory, not in a temp file written page by page.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 8 MiB of page cache (4x SQLite's default). Not more: every COMMIT scans the cache's
    // hash table for pages past the end of the database, and with 64 MiB that scan was 9% of
    // the writer's time (`pcache1TruncateUnsafe`; 1.5% at 8 MiB, docs/benchmarks.md). Pages
    // that do not fit come from the kernel's page cache, a `pread` away.
    conn.pragma_update(None, "cache_size", -8_192)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Read-only connections to a database file. WAL lets them run beside the writer, and they
/// see only committed data, so a reader never sees seq N+1 before N. Opened read-only, so a
/// bug in a read path cannot write.
#[derive(Debug)]
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(super) fn new(path: PathBuf) -> StoreResult<Self> {
        let pool = ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
        };
        // Fail at start, not at the first request, if the file cannot be read.
        let first = pool.open()?;
        pool.put(first);
        Ok(pool)
    }

    fn open(&self) -> StoreResult<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn take(&self) -> StoreResult<Connection> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
    }

    /// Runs `read` on an idle connection (or a new one), in the calling thread.
    pub(super) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let conn = self.take()?;
        let result = read(&conn);
        // A connection is left in autocommit after every read; one that is not (it cannot
        // happen through these paths) is dropped rather than reused.
        if conn.is_autocommit() {
            self.put(conn);
        }
        result
    }

    /// Closes the idle connections (those in use close when their reads end).
    pub(super) fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// The first row `sql` returns, mapped; `None` when there is none.
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut found = statement.query(params)?;
    match found.next()? {
        Some(row) => Ok(Some(map(row)?)),
        None => Ok(None),
    }
}

/// Runs several reads in one read transaction: they see one snapshot, and take the WAL's
/// read lock once instead of once per statement. The transaction always ends, so a pooled
/// connection never keeps a snapshot.
pub(super) fn in_snapshot<T>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
    let result = read(conn);
    match conn
        .prepare_cached("COMMIT")
        .and_then(|mut end| end.execute([]))
    {
        Ok(_) => result,
        Err(error) => {
            // A read's COMMIT fails only on a broken connection. The pool drops a connection
            // left in a transaction; this ROLLBACK only tidies up.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            result.and(Err(error.into()))
        }
    }
}

/// Every row `sql` returns, mapped.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    mut map: impl FnMut(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut found = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = found.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Runs a statement that returns no rows; the number of rows it changed.
pub(super) fn run(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

fn value<'r>(row: &'r Row<'_>, col: &str) -> StoreResult<ValueRef<'r>> {
    row.get_ref(col)
        .map_err(|e| corrupt(format!("column {col}: {e}")))
}

fn wrong(col: &str, found: &ValueRef<'_>) -> StoreError {
    corrupt(format!("column {col} holds a {:?}", found.data_type()))
}

fn uuid_of(col: &str, found: ValueRef<'_>) -> StoreResult<Option<Uuid>> {
    match found {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) => Uuid::from_slice(bytes)
            .map(Some)
            .map_err(|e| corrupt(format!("column {col}: {e}"))),
        other => Err(wrong(col, &other)),
    }
}

fn text_of(col: &str, found: ValueRef<'_>) -> StoreResult<Option<String>> {
    match found {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(|s| Some(s.to_owned()))
            .map_err(|e| corrupt(format!("column {col}: {e}"))),
        other => Err(wrong(col, &other)),
    }
}

fn int_of(col: &str, found: ValueRef<'_>) -> StoreResult<Option<i64>> {
    match found {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        other => Err(wrong(col, &other)),
    }
}

fn required<T>(col: &str, value: Option<T>) -> StoreResult<T> {
    value.ok_or_else(|| corrupt(format!("column {col} is NULL")))
}

/// A nullable REAL column (integers are widened, as SQLite's own affinity would).
pub(super) fn opt_real(row: &Row<'_>, col: &str) -> StoreResult<Option<f64>> {
    match value(row, col)? {
        ValueRef::Null => Ok(None),
        ValueRef::Real(x) => Ok(Some(x)),
        ValueRef::Integer(n) => Ok(Some(n as f64)),
        other => Err(wrong(col, &other)),
    }
}

impl Cols for Row<'_> {
    fn uuid(&self, col: &str) -> StoreResult<Uuid> {
        required(col, uuid_of(col, value(self, col)?)?)
    }
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        uuid_of(col, value(self, col)?)
    }
    fn text(&self, col: &str) -> StoreResult<String> {
        required(col, text_of(col, value(self, col)?)?)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        text_of(col, value(self, col)?)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        required(col, int_of(col, value(self, col)?)?)
    }
    fn boolean(&self, col: &str) -> StoreResult<bool> {
        Ok(self.int(col)? != 0)
    }
    fn time(&self, col: &str) -> StoreResult<DateTime<Utc>> {
        rows::from_micros(self.int(col)?)
    }
    fn opt_time(&self, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
        int_of(col, value(self, col)?)?
            .map(rows::from_micros)
            .transpose()
    }
}

/// The first column of a row, as an id.
pub(super) fn first_uuid(row: &Row<'_>) -> StoreResult<Uuid> {
    required("0", uuid_of("0", row.get_ref(0)?)?)
}

/// The first column of a row, as an integer.
pub(super) fn first_int(row: &Row<'_>) -> StoreResult<i64> {
    required("0", int_of("0", row.get_ref(0)?)?)
}

/// The first column of a row, as a nullable id.
pub(super) fn first_opt_uuid(row: &Row<'_>) -> StoreResult<Option<Uuid>> {
    uuid_of("0", row.get_ref(0)?)
}

/// Which uniqueness rule a SQLite error broke, by the message naming the columns
/// (`UNIQUE constraint failed: accounts.username`).
pub(super) fn unique_violation(error: &StoreError) -> Option<&str> {
    match error {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, message))
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Some(message.as_deref().unwrap_or("unique"))
        }
        _ => None,
    }
}
