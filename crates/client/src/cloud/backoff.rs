//! Jittered exponential back-off: each failure doubles the wait up to a cap, and every wait is
//! drawn from [half, full] of it, so many devices that lost the gateway at once do not all come
//! back in the same instant.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// The ceiling of the wait after `failures` consecutive failures (before jitter).
    pub fn ceiling(base: Duration, cap: Duration, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
        base.saturating_mul(factor).min(cap)
    }

    /// A jittered wait for the `failures`-th consecutive failure.
    pub fn delay(base: Duration, cap: Duration, failures: u32) -> Duration {
        let ceiling = Self::ceiling(base, cap, failures);
        let ms = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Self::delay(self.base, self.cap, self.failures)
    }

    /// A success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        let mut b = Backoff::new(base, cap);
        let mut last_ceiling = Duration::ZERO;
        for n in 1..=20 {
            let d = b.next_delay();
            let ceiling = Backoff::ceiling(base, cap, n);
            assert!(
                d <= ceiling && d >= ceiling / 2,
                "{n}: {d:?} vs {ceiling:?}"
            );
            assert!(ceiling >= last_ceiling);
            last_ceiling = ceiling;
        }
        assert_eq!(last_ceiling, cap);
        b.reset();
        assert!(b.next_delay() <= base);
    }
}
