//! PLACEHOLDER: being written (rate limits).

use crate::config::RateLimits;

#[derive(Debug)]
pub struct RateLimiter {
    _limits: RateLimits,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter { _limits: limits }
    }
}
