//! In-memory buckets, for a gateway that is the only process on its database (SQLite).
//!
//! Invariants:
//! - a bucket that has refilled to `burst` is the same as no bucket, so such buckets are
//!   dropped by periodic sweeps: memory follows the keys active in the last few minutes, not
//!   every key ever seen, and a hard cap per kind bounds it even under a flood of fresh keys
//!   (past the cap, the least recently used buckets go first);
//! - the send path is hot (≥ 10k requests/s), so buckets are spread over many shards, each
//!   behind its own short-held `std::sync::Mutex` (never held across an `.await`); a check is
//!   one hash, one lock, a few float operations, and an allocation only for a new key.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{BucketRate, RateKind};
use crate::config::RateLimits;
use crate::error::ApiError;

/// Buckets kept per kind before the least recently used are evicted.
const DEFAULT_MAX_KEYS_PER_KIND: usize = 200_000;
/// Shards per kind: enough that two cores hammering one kind rarely meet on a lock.
const SHARDS: usize = 64;
/// How often a shard drops its full (idle) buckets.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Every kind's buckets, in this process.
#[derive(Debug)]
pub struct MemoryBuckets {
    sign_in: KindLimiter,
    sign_up: KindLimiter,
    verification_code: KindLimiter,
    verification_check: KindLimiter,
    send: KindLimiter,
    lookup: KindLimiter,
}

impl MemoryBuckets {
    pub fn new(limits: RateLimits) -> Self {
        Self::with_capacity(limits, DEFAULT_MAX_KEYS_PER_KIND)
    }

    /// As [`MemoryBuckets::new`], keeping at most `max_keys_per_kind` buckets per kind.
    pub fn with_capacity(limits: RateLimits, max_keys_per_kind: usize) -> Self {
        let now = Instant::now();
        let make = |kind| KindLimiter::new(BucketRate::of(&limits, kind), max_keys_per_kind, now);
        MemoryBuckets {
            sign_in: make(RateKind::SignIn),
            sign_up: make(RateKind::SignUp),
            verification_code: make(RateKind::VerificationCode),
            verification_check: make(RateKind::VerificationCheck),
            send: make(RateKind::Send),
            lookup: make(RateKind::Lookup),
        }
    }

    /// Takes one token from the `(kind, key)` bucket, or says how long to wait.
    pub fn take(&self, kind: RateKind, key: &str) -> Result<(), ApiError> {
        self.take_at(kind, key, Instant::now())
    }

    fn take_at(&self, kind: RateKind, key: &str, now: Instant) -> Result<(), ApiError> {
        self.limiter(kind)
            .take(key, now)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })
    }

    fn limiter(&self, kind: RateKind) -> &KindLimiter {
        match kind {
            RateKind::SignIn => &self.sign_in,
            RateKind::SignUp => &self.sign_up,
            RateKind::VerificationCode => &self.verification_code,
            RateKind::VerificationCheck => &self.verification_check,
            RateKind::Send => &self.send,
            RateKind::Lookup => &self.lookup,
        }
    }

    /// Buckets currently held for `kind` (for tests and metrics).
    pub fn tracked_keys(&self, kind: RateKind) -> usize {
        self.limiter(kind)
            .shards
            .iter()
            .map(|shard| lock(shard).buckets.len())
            .sum()
    }
}

#[derive(Debug)]
struct KindLimiter {
    rate: BucketRate,
    max_keys_per_shard: usize,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Debug)]
struct Shard {
    buckets: HashMap<Box<str>, Bucket>,
    next_sweep: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a bucket half-updated in a way that matters
    // (the worst case is one token too many or too few), so a poisoned lock is still usable.
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KindLimiter {
    fn new(rate: BucketRate, max_keys: usize, now: Instant) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    buckets: HashMap::new(),
                    next_sweep: now + SWEEP_EVERY,
                })
            })
            .collect();
        KindLimiter {
            rate,
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards,
        }
    }

    /// Tokens in `bucket` at `now`, refilled since its last update and capped at `capacity`.
    fn level(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.rate.refill_per_sec).min(self.rate.capacity)
    }

    /// `Err(wait)` when the bucket is empty.
    fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let Some(shard) = self.shards.get(index) else {
            return Ok(());
        };
        let mut shard = lock(shard);
        if now >= shard.next_sweep || shard.buckets.len() >= self.max_keys_per_shard {
            self.sweep(&mut shard, now);
        }
        let tokens = match shard.buckets.get(key) {
            Some(bucket) => self.level(bucket, now),
            None => self.rate.capacity,
        };
        if tokens >= 1.0 {
            let bucket = Bucket {
                tokens: tokens - 1.0,
                updated: now,
            };
            match shard.buckets.get_mut(key) {
                Some(existing) => *existing = bucket,
                None => {
                    shard.buckets.insert(key.into(), bucket);
                }
            }
            Ok(())
        } else {
            Err(self.rate.wait_for_one(tokens))
        }
    }

    /// Drops buckets that have refilled (they equal a missing bucket); if the shard is still
    /// at its cap, drops the least recently used half.
    fn sweep(&self, shard: &mut Shard, now: Instant) {
        shard.next_sweep = now + SWEEP_EVERY;
        shard
            .buckets
            .retain(|_, bucket| self.level(bucket, now) < self.rate.capacity);
        if shard.buckets.len() >= self.max_keys_per_shard {
            let mut ages: Vec<Instant> = shard.buckets.values().map(|b| b.updated).collect();
            let keep = self.max_keys_per_shard / 2;
            let cut = ages.len().saturating_sub(keep);
            if cut > 0 {
                let (_, nth, _) = ages.select_nth_unstable(cut - 1);
                let cutoff = *nth;
                shard.buckets.retain(|_, bucket| bucket.updated > cutoff);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::Rate;

    fn limits(per_minute: u32, burst: u32) -> RateLimits {
        RateLimits::uniform(Rate { per_minute, burst })
    }

    fn retry_after(result: Result<(), ApiError>) -> Duration {
        match result {
            Err(ApiError::RateLimited { retry_after }) => retry_after,
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let limiter = MemoryBuckets::new(limits(60, 3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at(RateKind::SignIn, "alice", t0).is_ok());
        }
        // One token per second: the next one is a second away.
        let wait = retry_after(limiter.take_at(RateKind::SignIn, "alice", t0));
        assert_eq!(wait, Duration::from_secs(1));
        let later = t0 + Duration::from_millis(1000);
        assert!(limiter.take_at(RateKind::SignIn, "alice", later).is_ok());
        assert!(limiter.take_at(RateKind::SignIn, "alice", later).is_err());
        // A long pause refills only up to the burst.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(limiter
                .take_at(RateKind::SignIn, "alice", much_later)
                .is_ok());
        }
        assert!(limiter
            .take_at(RateKind::SignIn, "alice", much_later)
            .is_err());
    }

    #[test]
    fn keys_and_kinds_are_independent() {
        let limiter = MemoryBuckets::new(limits(1, 1));
        let t0 = Instant::now();
        assert!(limiter.take_at(RateKind::SignIn, "alice", t0).is_ok());
        assert!(limiter.take_at(RateKind::SignIn, "alice", t0).is_err());
        assert!(limiter.take_at(RateKind::SignIn, "bob", t0).is_ok());
        assert!(limiter.take_at(RateKind::SignUp, "alice", t0).is_ok());
        assert!(limiter.take_at(RateKind::Send, "alice", t0).is_ok());
    }

    #[test]
    fn retry_after_is_rounded_up_and_refusals_take_nothing() {
        let limiter = MemoryBuckets::new(limits(1, 1));
        let t0 = Instant::now();
        assert!(limiter.take_at(RateKind::VerificationCode, "k", t0).is_ok());
        let wait = retry_after(limiter.take_at(RateKind::VerificationCode, "k", t0));
        assert_eq!(wait, Duration::from_secs(60));
        // Knocking again does not push the wait further out.
        let t1 = t0 + Duration::from_secs(30);
        let wait = retry_after(limiter.take_at(RateKind::VerificationCode, "k", t1));
        assert_eq!(wait, Duration::from_secs(30));
        let t2 = t0 + Duration::from_millis(59_500);
        let wait = retry_after(limiter.take_at(RateKind::VerificationCode, "k", t2));
        assert_eq!(wait, Duration::from_secs(1));
        assert!(limiter
            .take_at(
                RateKind::VerificationCode,
                "k",
                t0 + Duration::from_secs(60)
            )
            .is_ok());
    }

    #[test]
    fn the_error_is_a_429_with_retry_after() {
        use axum::response::IntoResponse;
        let limiter = MemoryBuckets::new(limits(1, 1));
        let _ = limiter.take(RateKind::Lookup, "k");
        let response = limiter
            .take(RateKind::Lookup, "k")
            .err()
            .unwrap()
            .into_response();
        assert_eq!(response.status().as_u16(), 429);
        let retry = response.headers().get("retry-after").unwrap();
        let secs: u64 = retry.to_str().unwrap().parse().unwrap();
        assert!((59..=60).contains(&secs), "{secs}");
    }

    #[test]
    fn idle_buckets_are_swept() {
        let limiter = MemoryBuckets::new(limits(60, 5));
        let t0 = Instant::now();
        for i in 0..1000 {
            assert!(limiter
                .take_at(RateKind::Send, &format!("k{i}"), t0)
                .is_ok());
        }
        assert_eq!(limiter.tracked_keys(RateKind::Send), 1000);
        // After the sweep interval every bucket has refilled; the next check in a shard drops
        // that shard's full buckets and keeps only the one it just used.
        let later = t0 + SWEEP_EVERY + Duration::from_secs(1);
        assert!(limiter.take_at(RateKind::Send, "k0", later).is_ok());
        let left = limiter.tracked_keys(RateKind::Send);
        assert!(left < 1000 - 5, "{left} buckets left");
        for shard in limiter.send.shards.iter() {
            limiter.send.sweep(&mut lock(shard), later);
        }
        // Only "k0" (used at `later`, so not full) remains.
        assert_eq!(limiter.tracked_keys(RateKind::Send), 1);
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_keys() {
        let limiter = MemoryBuckets::with_capacity(limits(1, 5), 6400);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            // Each key used once: its bucket is not full, so only the cap can evict it.
            let now = t0 + Duration::from_micros(u64::from(i));
            assert!(limiter
                .take_at(RateKind::SignUp, &i.to_string(), now)
                .is_ok());
        }
        let kept = limiter.tracked_keys(RateKind::SignUp);
        assert!(kept <= 6400, "{kept} buckets kept");
        // The most recent keys are the ones kept.
        let last = (100_000u32 - 1).to_string();
        let index = usize::try_from(limiter.sign_up.hasher.hash_one(last.as_str()) % 64).unwrap();
        assert!(lock(&limiter.sign_up.shards[index])
            .buckets
            .contains_key(last.as_str()));
    }

    #[test]
    fn concurrent_checks_never_exceed_the_burst() {
        let limiter = std::sync::Arc::new(MemoryBuckets::new(limits(1, 100)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| limiter.take(RateKind::Send, "acct").is_ok())
                        .count()
                })
            })
            .collect();
        let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // 100 burst plus at most a sliver of refill during the test.
        assert!((100..=101).contains(&allowed), "{allowed}");
    }
}
