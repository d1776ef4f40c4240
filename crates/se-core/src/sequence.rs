use std::collections::BTreeSet;

/// How many missing sequence numbers are remembered per device, so that a
/// late arrival can be taken back out of the loss count.
const MISSING_WINDOW: u64 = 4096;

/// A drop in sequence number by more than this is read as a device restart.
const RESTART_DROP: u64 = 1000;

/// A forward jump by more than this many numbers is read as a counter reset
/// (a restart), not as loss. A device publishing every 5 s needs about 5.8
/// days to send this many messages. At 10 messages a second it needs about
/// 2.8 hours. A larger jump comes from a corrupt or reinitialised counter.
pub const MAX_GAP: u64 = 100_000;

/// Classification of one sequence number within a device's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceOutcome {
    /// The first number seen from the device.
    First,
    /// The next expected number.
    InOrder,
    /// Numbers were skipped; `lost` of them are now counted as lost.
    Gap { lost: u64 },
    /// A number counted as lost arrived late; it is no longer lost.
    Late,
    /// A number already seen.
    Duplicate,
    /// The number fell far back, as after a reboot that reset the counter.
    Restart,
    /// The number jumped ahead by more than [`MAX_GAP`]: a counter reset,
    /// counted with the restarts and not as loss.
    Jump,
}

/// Counts lost and duplicate messages of one device from its sequence numbers.
///
/// This is how loss stays visible even where a broker drops QoS 1 messages
/// without telling anyone: every gap in the device's numbering is counted.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    last: Option<u64>,
    missing: BTreeSet<u64>,
    pub lost: u64,
    pub duplicates: u64,
    pub restarts: u64,
}

impl SequenceTracker {
    pub fn observe(&mut self, seq: u64) -> SequenceOutcome {
        let Some(last) = self.last else {
            self.last = Some(seq);
            return SequenceOutcome::First;
        };
        // Devices restart their counter at 0 after a reboot. Zero is never a
        // late arrival, because every remembered missing number is above the
        // first one seen.
        if seq == 0 {
            return self.restart(seq, SequenceOutcome::Restart);
        }
        if last.checked_add(1) == Some(seq) {
            self.last = Some(seq);
            return SequenceOutcome::InOrder;
        }
        if seq > last {
            if seq - last > MAX_GAP {
                return self.restart(seq, SequenceOutcome::Jump);
            }
            return self.record_gap(last, seq);
        }
        if self.missing.remove(&seq) {
            self.lost = self.lost.saturating_sub(1);
            return SequenceOutcome::Late;
        }
        // Some devices restart their counter at 1 instead of 0.
        if last - seq > RESTART_DROP || seq == 1 {
            return self.restart(seq, SequenceOutcome::Restart);
        }
        self.duplicates = self.duplicates.saturating_add(1);
        SequenceOutcome::Duplicate
    }

    fn restart(&mut self, seq: u64, outcome: SequenceOutcome) -> SequenceOutcome {
        self.restarts = self.restarts.saturating_add(1);
        self.missing.clear();
        self.last = Some(seq);
        outcome
    }

    /// Counts the numbers strictly between `last` and `seq` as lost. The
    /// caller keeps `seq - last` at most [`MAX_GAP`], and the count saturates
    /// at `u64::MAX`, so it never wraps.
    fn record_gap(&mut self, last: u64, seq: u64) -> SequenceOutcome {
        let lost = seq - last - 1;
        self.lost = self.lost.saturating_add(lost);
        let first_remembered = (last + 1).max(seq.saturating_sub(MISSING_WINDOW));
        self.missing.extend(first_remembered..seq);
        while self.missing.len() as u64 > MISSING_WINDOW {
            self.missing.pop_first();
        }
        self.last = Some(seq);
        SequenceOutcome::Gap { lost }
    }

    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_counts_lost_and_late_arrival_restores() {
        let mut tracker = SequenceTracker::default();
        assert_eq!(tracker.observe(1), SequenceOutcome::First);
        assert_eq!(tracker.observe(2), SequenceOutcome::InOrder);
        assert_eq!(tracker.observe(5), SequenceOutcome::Gap { lost: 2 });
        assert_eq!(tracker.lost, 2);
        assert_eq!(tracker.observe(3), SequenceOutcome::Late);
        assert_eq!(tracker.lost, 1);
    }

    #[test]
    fn repeat_is_duplicate() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(10);
        tracker.observe(11);
        assert_eq!(tracker.observe(11), SequenceOutcome::Duplicate);
        assert_eq!(tracker.duplicates, 1);
        assert_eq!(tracker.lost, 0);
    }

    #[test]
    fn reset_to_one_is_restart() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(79);
        assert_eq!(tracker.observe(1), SequenceOutcome::Restart);
        assert_eq!(tracker.observe(2), SequenceOutcome::InOrder);
        assert_eq!(tracker.duplicates, 0);
    }

    #[test]
    fn reset_to_zero_is_restart() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(50);
        assert_eq!(tracker.observe(0), SequenceOutcome::Restart);
        assert_eq!(tracker.observe(1), SequenceOutcome::InOrder);
        assert_eq!(tracker.lost, 0);
    }

    #[test]
    fn zero_after_max_is_restart() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(u64::MAX);
        assert_eq!(tracker.observe(0), SequenceOutcome::Restart);
        assert_eq!(tracker.restarts, 1);
        assert_eq!(tracker.last(), Some(0));
    }

    #[test]
    fn zero_after_zero_is_restart() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(0);
        assert_eq!(tracker.observe(0), SequenceOutcome::Restart);
        assert_eq!(tracker.restarts, 1);
        assert_eq!(tracker.duplicates, 0);
    }

    #[test]
    fn jump_to_max_is_not_loss() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(5);
        assert_eq!(tracker.observe(u64::MAX), SequenceOutcome::Jump);
        assert_eq!(tracker.lost, 0);
        assert_eq!(tracker.restarts, 1);
        assert_eq!(tracker.observe(0), SequenceOutcome::Restart);
        assert_eq!(tracker.observe(1), SequenceOutcome::InOrder);
        assert_eq!(tracker.lost, 0);
        assert_eq!(tracker.restarts, 2);
    }

    #[test]
    fn gap_bound_is_inclusive() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(1);
        assert_eq!(tracker.observe(1 + MAX_GAP), SequenceOutcome::Gap { lost: MAX_GAP - 1 });
        assert_eq!(tracker.lost, MAX_GAP - 1);
        assert_eq!(tracker.observe(2 + 2 * MAX_GAP), SequenceOutcome::Jump);
        assert_eq!(tracker.lost, MAX_GAP - 1);
        assert_eq!(tracker.restarts, 1);
    }

    #[test]
    fn jump_forgets_missing_numbers() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(1);
        tracker.observe(3);
        assert_eq!(tracker.observe(999_999_999), SequenceOutcome::Jump);
        assert_eq!(tracker.lost, 1);
        // The jump clears the missing numbers, so a late 2 reads as a restart.
        assert_eq!(tracker.observe(2), SequenceOutcome::Restart);
        assert_eq!(tracker.lost, 1);
        assert_eq!(tracker.restarts, 2);
    }

    #[test]
    fn lost_saturates_instead_of_wrapping() {
        let mut tracker = SequenceTracker { lost: u64::MAX - 1, ..SequenceTracker::default() };
        tracker.observe(1);
        assert_eq!(tracker.observe(10), SequenceOutcome::Gap { lost: 8 });
        assert_eq!(tracker.lost, u64::MAX);
    }
}
