//! The local cache: one SQLite file per signed-in profile (WAL, FTS5), owned by one thread.
//!
//! Invariants:
//! - Every rusqlite call runs on the cache's own thread; async callers hand it a closure with
//!   [`Cache::call`] and await the answer, so the async runtime never blocks on disk.
//! - The schema version lives in `PRAGMA user_version`. Each table module owns its migrations;
//!   [`SCHEMA_VERSION`] is the newest this build knows. A file written by a newer build is
//!   refused with [`CacheError::NewerSchema`] before anything is written to it.
//! - The sync cursor is written in the same transaction as the events it covers, so a crash
//!   never skips or double-applies an event (see [`apply`]).
//! - Several processes may hold one cache at once (the app, `airtext watch`, any number of
//!   `airtext send`): every transaction begins `IMMEDIATE` (it takes the write lock before it
//!   reads, so it never has to promote a read snapshot that another writer made stale, which
//!   SQLite refuses without waiting), and a busy connection waits up to [`BUSY_TIMEOUT`] for
//!   the lock instead of failing.
//! - The folder and its files are readable by their owner only ([`crate::private`]).
//! - `synchronous=NORMAL` in WAL mode: a killed process loses nothing committed; a power cut
//!   may lose the last commits, which the next sync pulls again (the outbox row and its message
//!   are one commit, so they go or stay together).

pub mod apply;
pub mod contacts;
pub mod conversations;
pub mod lookups;
pub mod messages;
pub mod outbox;
pub mod profile;
pub mod sync_state;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

/// The newest schema this build knows.
pub const SCHEMA_VERSION: u32 = 6;

/// How long a statement waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// One schema change of one table module, applied once, in version order.
#[derive(Debug)]
pub struct Migration {
    /// The schema version that introduced it.
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every table module's migrations, in dependency order (a table before those that refer to
/// it).
const MIGRATIONS: &[&[Migration]] = &[
    profile::MIGRATIONS,
    sync_state::MIGRATIONS,
    conversations::MIGRATIONS,
    messages::MIGRATIONS,
    contacts::MIGRATIONS,
    outbox::MIGRATIONS,
    lookups::MIGRATIONS,
];

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "the local cache {path} was written by a newer version of Airtext (schema {found}, this \
         build knows up to {supported}); update Airtext — the file was left untouched"
    )]
    NewerSchema {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("the local cache {path} could not be opened: {detail}")]
    Open { path: String, detail: String },
    #[error("the local cache could not be upgraded ({name}): {detail}")]
    Migration { name: &'static str, detail: String },
    #[error("the local cache holds a value this version cannot read: {0}")]
    Corrupt(String),
    #[error("the local cache is closed")]
    Closed,
    #[error("the local cache: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the cache thread. Cheap to clone; the thread ends when the last handle drops.
#[derive(Debug, Clone)]
pub struct Cache {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

impl Cache {
    /// Opens (creating if missing) and migrates the cache file at `path`, on its own thread.
    pub async fn open(path: &Path) -> Result<Cache, CacheError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("airtext-cache".to_owned())
            .spawn(move || match open_connection(&owned) {
                Ok(mut conn) => {
                    let _ = ready_tx.send(Ok(()));
                    while let Ok(job) = queue.recv() {
                        job(&mut conn);
                    }
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            })
            .map_err(|e| CacheError::Open {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        ready_rx.await.map_err(|_| CacheError::Closed)??;
        Ok(Cache {
            jobs,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the cache thread and returns its result.
    pub async fn call<T, F>(&self, f: F) -> Result<T, CacheError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, CacheError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| CacheError::Closed)?;
        rx.await.map_err(|_| CacheError::Closed)?
    }
}

fn open_connection(path: &Path) -> Result<Connection, CacheError> {
    let display = path.display().to_string();
    let open_error = |e: rusqlite::Error| CacheError::Open {
        path: display.clone(),
        detail: e.to_string(),
    };
    let io_error = |e: std::io::Error| CacheError::Open {
        path: display.clone(),
        detail: e.to_string(),
    };
    // Private before SQLite opens it: its -wal and -shm files take the database's mode.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::private::create_dir(parent).map_err(io_error)?;
    }
    crate::private::create_file(path).map_err(io_error)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        crate::private::restrict_if_present(Path::new(&side)).map_err(io_error)?;
    }
    let mut conn = Connection::open(path).map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    // Read before any write: a newer file must stay exactly as it is.
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open_error)?;
    if found > SCHEMA_VERSION {
        return Err(CacheError::NewerSchema {
            path: display,
            found,
            supported: SCHEMA_VERSION,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_error)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_error)?;
    // Statement journals in memory, not in a temporary file (every insert of a sync has one).
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(open_error)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn, found)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, from: u32) -> Result<(), CacheError> {
    migrate_to(conn, from, SCHEMA_VERSION)
}

/// Applies the migrations after `from` up to `to`, in one transaction.
fn migrate_to(conn: &mut Connection, from: u32, to: u32) -> Result<(), CacheError> {
    if from >= to {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have upgraded the file while this one waited for the lock.
    let from: u32 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if from >= to {
        return Ok(());
    }
    let mut steps: Vec<&Migration> = MIGRATIONS
        .iter()
        .flat_map(|table| table.iter())
        .filter(|m| m.version > from && m.version <= to)
        .collect();
    // Stable: within one version, tables keep their dependency order.
    steps.sort_by_key(|m| m.version);
    for step in steps {
        tx.execute_batch(step.sql)
            .map_err(|e| CacheError::Migration {
                name: step.name,
                detail: e.to_string(),
            })?;
    }
    tx.pragma_update(None, "user_version", to)?;
    tx.commit()?;
    Ok(())
}

/// Runs a statement through the connection's statement cache (the hot paths run the same
/// few statements for every event of a sync).
pub(crate) fn exec<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Queries one row through the statement cache.
pub(crate) fn one<T, P, F>(conn: &Connection, sql: &str, params: P, f: F) -> rusqlite::Result<T>
where
    P: rusqlite::Params,
    F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
{
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// Milliseconds since the epoch: how the cache stores times (sortable, compact).
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// Reads an enum stored as its wire name.
pub(crate) fn parse_column<T>(
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    parse(value).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unexpected value {value:?}").into(),
        )
    })
}

/// Reads a UUID newtype stored as text.
pub(crate) fn parse_uuid<T: From<uuid::Uuid>>(value: &str) -> rusqlite::Result<T> {
    uuid::Uuid::parse_str(value).map(T::from).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_migrates_and_reopens() -> Result<(), CacheError> {
        let dir = tempfile::tempdir().map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let path = dir.path().join("c.sqlite3");
        let cache = Cache::open(&path).await?;
        let version: u32 = cache
            .call(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .await?;
        assert_eq!(version, SCHEMA_VERSION);
        let fts: i64 = cache
            .call(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'x'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await?;
        assert_eq!(fts, 0);
        drop(cache);
        Cache::open(&path).await?;
        Ok(())
    }

    /// A cache written by the first release (schema 1: peers in the messages' FTS5 table)
    /// opens, is upgraded in place, and its messages are found by text and by peer.
    #[tokio::test]
    async fn a_schema_1_cache_is_upgraded_and_searchable() -> Result<(), CacheError> {
        let dir = tempfile::tempdir().map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let path = dir.path().join("v1.sqlite3");
        {
            let mut conn = Connection::open(&path)?;
            migrate_to(&mut conn, 0, 1)?;
            conn.execute_batch(
                "INSERT INTO conversations (id, peer, updated_at) VALUES (1, '+14155550123', 0);
                 INSERT INTO messages (conversation, peer, direction, from_addr, to_addr, body,
                    status, encoding, segments, created_at, updated_at)
                 VALUES (1, '+14155550123', 'inbound', '+14155550123', '@me',
                    'see you at the station', 'delivered', 'gsm7', 1, 0, 0);",
            )?;
            let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            assert_eq!(version, 1);
        }
        let cache = Cache::open(&path).await?;
        let (version, by_text, by_peer, fts_columns) = cache
            .call(|c| {
                Ok((
                    c.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))?,
                    messages::search(c, "station", 10)?.len(),
                    messages::search(c, "+1415", 10)?.len(),
                    c.query_row(
                        "SELECT count(*) FROM pragma_table_info('messages_fts')",
                        [],
                        |r| r.get::<_, i64>(0),
                    )?,
                ))
            })
            .await?;
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!((by_text, by_peer, fts_columns), (1, 1, 1));
        // And what comes next is indexed as this version does it.
        cache
            .call(|c| {
                c.execute_batch(
                    "INSERT INTO conversations (id, peer, updated_at) VALUES (2, '@bob', 0);
                     INSERT INTO messages (conversation, peer, direction, from_addr, to_addr,
                        body, status, encoding, segments, created_at, updated_at)
                     VALUES (2, '@bob', 'inbound', '@bob', '@me', 'a kalomi', 'delivered',
                        'gsm7', 1, 0, 0);",
                )?;
                let id = messages::LocalMessageId(c.last_insert_rowid());
                messages::index_bodies(c, &[id])?;
                assert_eq!(messages::search(c, "kalo", 10)?.len(), 1);
                assert_eq!(messages::search(c, "bob", 10)?.len(), 1);
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// A schema 2 cache (no index of conversations by any part of peer or name) is upgraded
    /// in place: what it already holds is found by part of a peer and by a contact's name.
    #[tokio::test]
    async fn a_schema_2_cache_is_upgraded_and_its_conversations_found() -> Result<(), CacheError> {
        let dir = tempfile::tempdir().map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let path = dir.path().join("v2.sqlite3");
        {
            let mut conn = Connection::open(&path)?;
            migrate_to(&mut conn, 0, 2)?;
            conn.execute_batch(
                "INSERT INTO conversations (id, peer, updated_at) VALUES (1, '+12065550123', 0);
                 INSERT INTO conversations (id, peer, updated_at) VALUES (2, '@zoe', 1);
                 INSERT INTO contacts (address, path, fallback, name, updated_at)
                    VALUES ('@zoe', 'auto', 0, 'Zoë Example', 0);",
            )?;
        }
        let cache = Cache::open(&path).await?;
        let found = cache
            .call(|c| {
                let ids = |needle: &str| -> Result<Vec<i64>, CacheError> {
                    Ok(conversations::matching(c, needle, 10)?
                        .into_iter()
                        .map(|conv| conv.local_id.0)
                        .collect())
                };
                Ok((
                    c.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))?,
                    ids("2065550123")?,
                    ids("zoË ex")?,
                    ids("nobody")?,
                ))
            })
            .await?;
        assert_eq!(found, (SCHEMA_VERSION, vec![1], vec![2], vec![]));
        Ok(())
    }

    /// Several handles on one file stand for several processes (the app, `airtext watch`,
    /// many `airtext send`): transactions that read, then write, all commit, none is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writers_on_one_file_wait_for_each_other_and_lose_nothing() -> Result<(), CacheError> {
        let dir = tempfile::tempdir().map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let path = dir.path().join("shared.sqlite3");
        let mut writers = Vec::new();
        for _ in 0..6 {
            let cache = Cache::open(&path).await?;
            writers.push(tokio::spawn(async move {
                for _ in 0..100 {
                    cache
                        .call(|c| {
                            let tx = c.transaction()?;
                            let cursor = sync_state::cursor(&tx)?;
                            sync_state::set_cursor(&tx, cursor + 1)?;
                            tx.commit()?;
                            Ok(())
                        })
                        .await?;
                }
                Ok::<_, CacheError>(())
            }));
        }
        for writer in writers {
            writer
                .await
                .map_err(|e| CacheError::Corrupt(e.to_string()))??;
        }
        let cache = Cache::open(&path).await?;
        assert_eq!(cache.call(|c| sync_state::cursor(c)).await?, 600);
        Ok(())
    }

    /// The profile folder is 0700 and the cache with its -wal and -shm files 0600, for a new
    /// cache and for one an older build left readable to others.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_profile_folder_and_its_files_are_private() -> Result<(), CacheError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |e: std::io::Error| CacheError::Corrupt(e.to_string());
        let mode = |p: &Path| -> Result<u32, CacheError> {
            Ok(std::fs::metadata(p).map_err(io)?.permissions().mode() & 0o777)
        };
        let root = tempfile::tempdir().map_err(io)?;
        let folder = root.path().join("profiles");
        let path = folder.join("account.sqlite3");
        let files = ["", "-wal", "-shm"].map(|suffix| {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        });
        let cache = Cache::open(&path).await?;
        cache.call(|c| sync_state::set_cursor(c, 7)).await?;
        assert_eq!(mode(&folder)?, 0o700);
        for file in &files {
            assert_eq!(mode(file)?, 0o600, "{}", file.display());
        }
        drop(cache);

        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        for file in &files {
            if file.exists() {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
                    .map_err(io)?;
            }
        }
        let cache = Cache::open(&path).await?;
        assert_eq!(cache.call(|c| sync_state::cursor(c)).await?, 7);
        assert_eq!(mode(&folder)?, 0o700);
        for file in files.iter().filter(|f| f.exists()) {
            assert_eq!(mode(file)?, 0o600, "{}", file.display());
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_and_left_untouched() -> Result<(), CacheError> {
        let dir = tempfile::tempdir().map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let path = dir.path().join("newer.sqlite3");
        {
            let conn = Connection::open(&path)?;
            conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")?;
        }
        let before = std::fs::read(&path).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let error = Cache::open(&path).await.err();
        assert!(
            matches!(
                error,
                Some(CacheError::NewerSchema {
                    found: 99,
                    supported: SCHEMA_VERSION,
                    ..
                })
            ),
            "{error:?}"
        );
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("newer version"), "{message}");
        let after = std::fs::read(&path).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        assert_eq!(before, after);
        assert!(!dir.path().join("newer.sqlite3-wal").exists());
        Ok(())
    }
}
