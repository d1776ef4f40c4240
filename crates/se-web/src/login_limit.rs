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
    /// One log line per username and minute while it is throttled, so a
    /// guessing script cannot flood the log.
    log_limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

/// An attempt over the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttled {
    /// Wait before the next allowed attempt.
    pub wait: Duration,
    /// True for the first throttled attempt of the username in a minute,
    /// which is the one to log.
    pub log: bool,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(ATTEMPTS_PER_MINUTE)),
            log_limiter: RateLimiter::keyed(Quota::per_minute(NonZeroU32::MIN)),
            clock: DefaultClock::default(),
        }
    }
}

impl LoginLimiter {
    /// Counts an attempt for `username`, and returns [`Throttled`] when
    /// this one is over the limit.
    pub fn attempt(&self, username: &str) -> Result<(), Throttled> {
        if self.limiter.len() > PRUNE_ABOVE_USERNAMES {
            self.limiter.retain_recent();
            self.log_limiter.retain_recent();
        }
        // Case does not make a new account for the count.
        let key = username.trim().to_lowercase();
        self.limiter.check_key(&key).map_err(|not_until| Throttled {
            wait: not_until.wait_time_from(self.clock.now()),
            log: self.log_limiter.check_key(&key).is_ok(),
        })
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
        let throttled = limiter.attempt("Marie ").unwrap_err();
        assert!(throttled.wait > Duration::ZERO, "{throttled:?}");
        assert!(throttled.wait <= Duration::from_secs(6), "{throttled:?}");
        assert!(throttled.log, "the first throttled attempt is logged");
        assert!(!limiter.attempt("marie").unwrap_err().log, "the next one in the minute is not");
        assert_eq!(limiter.attempt("karim"), Ok(()), "another account is not throttled");
    }
}
