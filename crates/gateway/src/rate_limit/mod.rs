//! Rate limits: a token bucket per `(kind, key)`.
//!
//! Each [`RateKind`] has its own [`Rate`](crate::config::Rate) from
//! [`RateLimits`]: a bucket holds at most `burst` tokens, refills at `per_minute`, and each
//! request takes one token. A request that finds less than one token is refused with
//! [`ApiError::RateLimited`], whose `retry_after` is the time until one token is back (rounded
//! up to whole seconds, because `Retry-After` is). A refusal takes nothing: a client that keeps
//! knocking waits no longer than one that waits politely.
//!
//! Where the buckets live follows the database, because that is what decides whether the
//! gateway runs as one process or as several nodes:
//! - on SQLite (one process owns the file) they are in memory ([`memory`]): sharded, bounded,
//!   nanoseconds per check;
//! - on PostgreSQL (any number of nodes behind a load balancer) they are rows of one table
//!   ([`postgres`]), updated by a single atomic statement, so a limit holds across nodes: an
//!   attacker spreading sign-in attempts over every node still gets `burst` tries, not
//!   `burst × nodes`.

mod memory;
mod postgres;

use std::time::Duration;

use crate::config::RateLimits;
use crate::error::ApiError;

pub use memory::MemoryBuckets;
pub use postgres::SharedBuckets;

/// What is being limited; each kind has its own rate and its own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKind {
    /// Sign-in attempts, keyed by username and by client address.
    SignIn,
    /// Sign-ups, keyed by client address.
    SignUp,
    /// Verification codes sent, keyed by account and by phone number or e-mail address.
    VerificationCode,
    /// Verification code checks, keyed by account.
    VerificationCheck,
    /// Messages sent, keyed by account.
    Send,
    /// Address look-ups, keyed by account.
    Lookup,
}

impl RateKind {
    /// The name stored with a shared bucket; stable across releases (it is part of a key).
    pub fn as_str(self) -> &'static str {
        match self {
            RateKind::SignIn => "sign_in",
            RateKind::SignUp => "sign_up",
            RateKind::VerificationCode => "verification_code",
            RateKind::VerificationCheck => "verification_check",
            RateKind::Send => "send",
            RateKind::Lookup => "lookup",
        }
    }
}

/// One bucket's rate in the units the algorithm uses.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BucketRate {
    /// Maximum tokens (`burst`, at least 1).
    capacity: f64,
    /// Tokens added per second (`per_minute / 60`, at least one per minute).
    refill_per_sec: f64,
}

impl BucketRate {
    fn of(limits: &RateLimits, kind: RateKind) -> Self {
        let rate = match kind {
            RateKind::SignIn => limits.sign_in,
            RateKind::SignUp => limits.sign_up,
            RateKind::VerificationCode => limits.verification_codes,
            RateKind::VerificationCheck => limits.verification_checks,
            RateKind::Send => limits.send,
            RateKind::Lookup => limits.lookup,
        };
        BucketRate {
            capacity: f64::from(rate.burst.max(1)),
            refill_per_sec: f64::from(rate.per_minute.max(1)) / 60.0,
        }
    }

    /// How long until a bucket holding `tokens` (< 1) has one, in whole seconds, at least 1.
    fn wait_for_one(self, tokens: f64) -> Duration {
        let wait = (1.0 - tokens).max(0.0) / self.refill_per_sec;
        // `as` saturates; a wait is at most a minute for any configurable rate.
        Duration::from_secs(wait.ceil().max(1.0) as u64)
    }
}

/// The gateway's rate limits (see the module documentation).
#[derive(Debug)]
pub enum RateLimiter {
    /// One process: buckets in memory.
    Local(Box<MemoryBuckets>),
    /// Several nodes on one PostgreSQL: buckets in the database.
    Shared(SharedBuckets),
}

impl RateLimiter {
    /// Buckets in memory: right for the embedded SQLite engine, whose file has one process.
    pub fn in_memory(limits: RateLimits) -> Self {
        RateLimiter::Local(Box::new(MemoryBuckets::new(limits)))
    }

    /// The limiter for `database_url`: shared through PostgreSQL when the gateway runs on it,
    /// in memory otherwise. The PostgreSQL table is created by the store's migrations, so the
    /// store must have been opened first.
    pub async fn for_database(database_url: &str, limits: RateLimits) -> Result<Self, sqlx::Error> {
        if crate::store::is_postgres(database_url) {
            Ok(RateLimiter::Shared(
                SharedBuckets::connect(database_url, limits).await?,
            ))
        } else {
            Ok(Self::in_memory(limits))
        }
    }

    /// Takes one token from the `(kind, key)` bucket, or says how long to wait.
    pub async fn check(&self, kind: RateKind, key: &str) -> Result<(), ApiError> {
        match self {
            RateLimiter::Local(buckets) => buckets.take(kind, key),
            RateLimiter::Shared(buckets) => buckets.take(kind, key).await,
        }
    }

    /// Forgets buckets that have refilled (they equal a missing bucket). The in-memory
    /// buckets sweep themselves as they go; the shared ones need this called now and then.
    pub async fn sweep(&self) -> Result<u64, sqlx::Error> {
        match self {
            RateLimiter::Local(_) => Ok(0),
            RateLimiter::Shared(buckets) => buckets.sweep().await,
        }
    }

    /// Closes the shared limiter's connections (nothing to do in memory).
    pub async fn close(&self) {
        if let RateLimiter::Shared(buckets) = self {
            buckets.close().await;
        }
    }
}
