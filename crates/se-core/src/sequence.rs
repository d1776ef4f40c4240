use std::collections::BTreeSet;

/// How many missing sequence numbers are remembered per device, so that a
/// late arrival can be taken back out of the loss count.
const MISSING_WINDOW: u64 = 4096;

/// A drop in sequence number by more than this is read as a device restart.
const RESTART_DROP: u64 = 1000;

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
        if seq == last + 1 {
            self.last = Some(seq);
            return SequenceOutcome::InOrder;
        }
        if seq > last {
            return self.record_gap(last, seq);
        }
        if self.missing.remove(&seq) {
            self.lost -= 1;
            return SequenceOutcome::Late;
        }
        // Devices restart their counter at 0 or 1 after a reboot.
        if last - seq > RESTART_DROP || seq <= 1 {
            self.restarts += 1;
            self.missing.clear();
            self.last = Some(seq);
            return SequenceOutcome::Restart;
        }
        self.duplicates += 1;
        SequenceOutcome::Duplicate
    }

    fn record_gap(&mut self, last: u64, seq: u64) -> SequenceOutcome {
        let lost = seq - last - 1;
        self.lost += lost;
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
}
