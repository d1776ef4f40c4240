//! Throttling of login attempts per account, so that a password cannot be
//! guessed online as fast as the server responds.
//!
//! Each username may try 10 logins in a row, then one more every 6 seconds
//! (the generic cell rate algorithm of the governor crate). An attempt over
//! the limit gets 429 without a password check, so a guess over the limit
//! learns nothing. The counts live in this process: with several instances
//! behind a load balancer, each instance counts its own attempts.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Attempts allowed in a row; one more is allowed every minute / `ATTEMPTS_PER_MINUTE`.
const ATTEMPTS_PER_MINUTE: NonZeroU32 = NonZeroU32::new(10).unwrap();

/// Usernames tracked before the limiter drops those with no recent attempt,
/// so that attempts on made-up names cannot grow the memory without bound.
const PRUNE_ABOVE_USERNAMES: usize = 10_000;

/// Failed and successful login attempts per username.
pub struct LoginLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self { limiter: RateLimiter::keyed(Quota::per_minute(ATTEMPTS_PER_MINUTE)), clock: DefaultClock::default() }
    }
}

impl LoginLimiter {
    /// Counts an attempt for `username`. Returns the wait before the next
    /// allowed attempt when this one is over the limit.
    pub fn attempt(&self, username: &str) -> Result<(), Duration> {
        if self.limiter.len() > PRUNE_ABOVE_USERNAMES {
            self.limiter.retain_recent();
        }
        // Case does not make a new account for the count.
        let key = username.trim().to_lowercase();
        self.limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleventh_attempt_waits() {
        let limiter = LoginLimiter::default();
        for attempt in 1..=10 {
            assert_eq!(limiter.attempt("marie"), Ok(()), "attempt {attempt}");
        }
        let wait = limiter.attempt("Marie ").unwrap_err();
        assert!(wait > Duration::ZERO, "{wait:?}");
        assert!(wait <= Duration::from_secs(6), "{wait:?}");
        assert_eq!(limiter.attempt("karim"), Ok(()), "another account is not throttled");
    }
}
