use std::time::{Duration, Instant};

/// Limits a repeated log line to one per interval and counts the occurrences it suppressed.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    last_emitted: Option<Instant>,
    suppressed: u64,
}

impl RateLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_emitted: None,
            suppressed: 0,
        }
    }

    /// Records one occurrence at `now`. Returns `Some(suppressed)` when the caller should log,
    /// with the number of occurrences suppressed since the previous log line.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        let due = match self.last_emitted {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.interval,
        };
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last_emitted = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_interval_are_counted() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(Duration::from_secs(10));

        assert_eq!(limiter.check(start), Some(0));
        assert_eq!(limiter.check(start + Duration::from_secs(1)), None);
        assert_eq!(limiter.check(start + Duration::from_secs(2)), None);
        assert_eq!(limiter.check(start + Duration::from_secs(10)), Some(2));
        assert_eq!(limiter.check(start + Duration::from_secs(11)), None);
    }
}
