//! Buckets shared by every gateway node on one PostgreSQL database.
//!
//! A bucket is a row of `rate_buckets` (created by the store's migrations). One statement
//! refills the bucket from the time elapsed, takes a token if there is one, and says whether
//! it did — an `INSERT … ON CONFLICT DO UPDATE`, which holds the row's lock for that one
//! statement, so concurrent checks from any number of nodes are applied one after the other
//! and never hand out more than the bucket holds.
//!
//! Invariants:
//! - time is the database's clock (`clock_timestamp()`), never a node's, so nodes whose clocks
//!   disagree still refill a bucket at the configured rate;
//! - a refusal takes nothing (the row keeps its level, re-based to now);
//! - `full_at` is when the bucket will have refilled to `burst`; past it the row is the same
//!   as no row, so [`SharedBuckets::sweep`] deletes it and the table follows the keys active
//!   recently, not every key ever seen.
//!
//! The limiter has its own small pool: a burst of sign-in attempts must not queue behind the
//! store's message writes for a connection, nor the other way round.
//!
//! Its connections commit with `synchronous_commit = off`: a take returns once its row is
//! updated, without waiting for the WAL to reach the disk. Every send takes a token, and
//! waiting for an fsync per take capped the whole gateway at the disk's flush rate (~300
//! sends/s on the test machine). What a crash can lose is the last few hundred milliseconds of
//! takes — a client gets a few more attempts than its bucket held, once — which is what a
//! rate limit may lose; nothing a user sent is in this table.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{BucketRate, RateKind};
use crate::config::RateLimits;
use crate::error::ApiError;

/// Connections of the limiter's own pool.
const MAX_CONNECTIONS: u32 = 4;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Refill, take one token if there is one, and report the level left and whether it was
/// taken. `$3` = capacity, `$4` = refill per second.
const TAKE: &str = r#"
INSERT INTO rate_buckets AS bucket (kind, key, tokens, granted, updated_at, full_at)
VALUES ($1, $2, $3 - 1, TRUE, clock_timestamp(),
        clock_timestamp() + make_interval(secs => 1 / $4))
ON CONFLICT (kind, key) DO UPDATE SET (tokens, granted, updated_at, full_at) = (
    SELECT CASE WHEN level >= 1 THEN level - 1 ELSE level END,
           level >= 1,
           at,
           at + make_interval(secs => ($3 - CASE WHEN level >= 1 THEN level - 1 ELSE level END) / $4)
    FROM (
        SELECT LEAST($3, bucket.tokens
                         + GREATEST(0, EXTRACT(EPOCH FROM (now.at - bucket.updated_at))::float8) * $4)
                   AS level,
               now.at
        FROM (SELECT clock_timestamp() AS at) AS now
    ) AS refilled
)
RETURNING tokens, granted
"#;

/// Keys longer than this are stored as their SHA-256: a key can carry what a client typed (a
/// sign-in with an unparsable username of kilobytes), and an index entry of that size would
/// make the insert fail, a 500 instead of a rate limit.
const MAX_STORED_KEY: usize = 128;

fn stored_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_STORED_KEY {
        return key.into();
    }
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    )
    .into()
}

/// The shared buckets of every kind (see the module documentation).
#[derive(Debug)]
pub struct SharedBuckets {
    pool: PgPool,
    limits: RateLimits,
}

impl SharedBuckets {
    /// Connects to the gateway's PostgreSQL database (`options=-c search_path=…` in the URL
    /// selects the schema, as for the store).
    pub async fn connect(database_url: &str, limits: RateLimits) -> Result<Self, sqlx::Error> {
        let options =
            PgConnectOptions::from_str(database_url)?.options([("synchronous_commit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(SharedBuckets { pool, limits })
    }

    /// Takes one token from the `(kind, key)` bucket, or says how long to wait.
    pub async fn take(&self, kind: RateKind, key: &str) -> Result<(), ApiError> {
        let rate = BucketRate::of(&self.limits, kind);
        let (tokens, granted): (f64, bool) = sqlx::query_as(TAKE)
            .bind(kind.as_str())
            .bind(stored_key(key).as_ref())
            .bind(rate.capacity)
            .bind(rate.refill_per_sec)
            .fetch_one(&self.pool)
            .await
            .map_err(|error| match error {
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                    ApiError::Unavailable(format!("rate limits unreachable: {error}"))
                }
                other => ApiError::internal(other),
            })?;
        if granted {
            Ok(())
        } else {
            Err(ApiError::RateLimited {
                retry_after: rate.wait_for_one(tokens),
            })
        }
    }

    /// Deletes the buckets that have refilled; returns how many.
    pub async fn sweep(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM rate_buckets WHERE full_at <= clock_timestamp()")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
