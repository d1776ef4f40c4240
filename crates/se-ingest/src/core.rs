use std::collections::{HashMap, HashSet};

use se_core::{Decoded, DeviceId, RejectReason, Rejection, SequenceOutcome, SequenceTracker, TimestampMs};
use se_decode::DecoderSet;
use se_store::{DeviceCounters, IngestBatch};

/// Minimum time between two log lines for the same device and reason.
const LOG_INTERVAL_MS: TimestampMs = 60_000;

/// Totals since start, for logs and health reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestCounters {
    pub messages: u64,
    pub readings: u64,
    pub rejected_values: u64,
    pub duplicate_messages: u64,
}

/// Output of decoding one batch of messages.
#[derive(Debug, Default)]
pub struct Processed {
    /// What the store must write, in one transaction. `rejected_at_ms` is left
    /// at 0 for the writer to set.
    pub batch: IngestBatch,
    /// Rejections due for a log line (at most one per device and reason a minute).
    pub to_log: Vec<Rejection>,
}

/// The I/O-free part of ingestion: decoding, sequence tracking, duplicate
/// suppression and rate limiting of error logs.
pub struct IngestCore {
    decoders: DecoderSet,
    sequences: HashMap<DeviceId, SequenceTracker>,
    /// Restarts the sequence trackers do not count: the stored count restored
    /// at start and the restarts that decoders report without a `seq`.
    restarts: HashMap<DeviceId, u64>,
    last_logged: HashMap<(Option<DeviceId>, RejectReason), TimestampMs>,
    pub counters: IngestCounters,
}

impl IngestCore {
    pub fn new(decoders: DecoderSet) -> Self {
        Self {
            decoders,
            sequences: HashMap::new(),
            restarts: HashMap::new(),
            last_logged: HashMap::new(),
            counters: IngestCounters::default(),
        }
    }

    /// Seeds the sequence state of a device from stored counters, so that a
    /// restart of the server keeps the loss count and counts no false gap.
    pub fn restore_counters(&mut self, device: DeviceId, counters: &DeviceCounters) {
        let mut tracker = SequenceTracker::default();
        if let Some(last) = counters.last_seq {
            tracker.observe(last);
        }
        tracker.lost = counters.lost;
        tracker.duplicates = counters.duplicates;
        tracker.restarts = 0;
        self.restarts.insert(device.clone(), counters.restarts);
        self.sequences.insert(device, tracker);
    }

    pub fn topic_filters(&self) -> Vec<String> {
        self.decoders.topic_filters()
    }

    /// Decodes a batch of `(topic, payload, received_ms)` messages.
    pub fn process<'a>(&mut self, messages: impl IntoIterator<Item = (&'a str, &'a [u8], TimestampMs)>) -> Processed {
        let mut processed = Processed::default();
        let mut changed: HashSet<DeviceId> = HashSet::new();
        for (topic, payload, received_ms) in messages {
            self.counters.messages += 1;
            let decoded = self.decoders.decode(topic, payload, received_ms);
            self.absorb(decoded, received_ms, &mut processed, &mut changed);
        }
        processed.batch.counters = changed
            .into_iter()
            .map(|device| {
                let counters = self.device_counters(&device);
                (device, counters)
            })
            .collect();
        self.counters.readings += processed.batch.readings.len() as u64;
        self.counters.rejected_values += processed.batch.rejections.len() as u64;
        processed
    }

    fn absorb(&mut self, decoded: Decoded, received_ms: TimestampMs, processed: &mut Processed, changed: &mut HashSet<DeviceId>) {
        let Decoded { device, seq, readings, rejections, online, restarted, command_ack, announcement } = decoded;
        let mut keep_readings = true;
        if let Some(device) = &device {
            if restarted {
                let restarts = self.restarts.entry(device.clone()).or_default();
                *restarts = restarts.saturating_add(1);
                changed.insert(device.clone());
            }
            if let Some(seq) = seq {
                // The tracker counts the restarts and counter resets that it
                // detects from `seq`, and `device_counters` adds them to `self.restarts`.
                let outcome = self.sequences.entry(device.clone()).or_default().observe(seq);
                if outcome == SequenceOutcome::Duplicate {
                    self.counters.duplicate_messages += 1;
                    keep_readings = false;
                }
                changed.insert(device.clone());
            }
            if let Some(online) = online {
                processed.batch.online.push((device.clone(), online, received_ms));
            }
            if let Some(ack) = command_ack {
                processed.batch.command_acks.push((device.clone(), ack, received_ms));
            }
            if let Some(announcement) = announcement {
                processed.batch.announcements.push((device.clone(), announcement, received_ms));
            }
        }
        if keep_readings {
            processed.batch.readings.extend(readings);
        }
        for rejection in rejections {
            if self.due_for_log(&rejection, received_ms) {
                processed.to_log.push(rejection.clone());
            }
            processed.batch.rejections.push(rejection);
        }
    }

    fn due_for_log(&mut self, rejection: &Rejection, now_ms: TimestampMs) -> bool {
        let key = (rejection.device.clone(), rejection.reason);
        match self.last_logged.get(&key) {
            Some(last) if now_ms - last < LOG_INTERVAL_MS => false,
            _ => {
                self.last_logged.insert(key, now_ms);
                true
            }
        }
    }

    /// Current message counters of a device.
    pub fn device_counters(&self, device: &DeviceId) -> DeviceCounters {
        let tracker = self.sequences.get(device);
        DeviceCounters {
            last_seq: tracker.and_then(SequenceTracker::last),
            lost: tracker.map_or(0, |t| t.lost),
            duplicates: tracker.map_or(0, |t| t.duplicates),
            restarts: self.restarts.get(device).copied().unwrap_or(0).saturating_add(tracker.map_or(0, |t| t.restarts)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use se_decode::NativeDecoder;

    const T0: TimestampMs = 1_733_000_000_000;

    fn core() -> IngestCore {
        IngestCore::new(DecoderSet::new(vec![Box::new(NativeDecoder)]))
    }

    fn message(seq: u64) -> String {
        format!(r#"{{"seq":{seq},"readings":[{{"channel":"gpu0","power_w":{seq}}}]}}"#)
    }

    #[test]
    fn gap_in_sequence_counts_lost() {
        let mut core = core();
        let topic = "smart-energy/v1/rig-01/telemetry";
        let payloads: Vec<String> = [1, 2, 5].iter().map(|s| message(*s)).collect();
        let processed = core.process(payloads.iter().map(|p| (topic, p.as_bytes(), T0)));
        assert_eq!(processed.batch.readings.len(), 3);
        let device = DeviceId::parse("rig-01").unwrap();
        assert_eq!(core.device_counters(&device).lost, 2);
        assert_eq!(core.device_counters(&device).last_seq, Some(5));
    }

    #[test]
    fn duplicate_sequence_drops_readings() {
        let mut core = core();
        let topic = "smart-energy/v1/rig-01/telemetry";
        let payload = message(9);
        let processed = core.process([(topic, payload.as_bytes(), T0), (topic, payload.as_bytes(), T0 + 1)]);
        assert_eq!(processed.batch.readings.len(), 1);
        assert_eq!(core.counters.duplicate_messages, 1);
    }

    #[test]
    fn repeated_errors_are_logged_once_a_minute() {
        let mut core = core();
        let topic = "smart-energy/v1/rig-01/telemetry";
        let first = core.process([(topic, b"oops".as_slice(), T0)]);
        let second = core.process([(topic, b"oops".as_slice(), T0 + 30_000)]);
        let third = core.process([(topic, b"oops".as_slice(), T0 + 61_000)]);
        assert_eq!(first.to_log.len(), 1);
        assert_eq!(second.to_log.len(), 0);
        assert_eq!(second.batch.rejections.len(), 1);
        assert_eq!(third.to_log.len(), 1);
    }

    #[test]
    fn restored_counters_avoid_false_gap() {
        let mut core = core();
        let device = DeviceId::parse("rig-01").unwrap();
        let stored = DeviceCounters { last_seq: Some(41), lost: 3, duplicates: 0, restarts: 1 };
        core.restore_counters(device.clone(), &stored);
        let payload = message(42);
        core.process([("smart-energy/v1/rig-01/telemetry", payload.as_bytes(), T0)]);
        assert_eq!(core.device_counters(&device).lost, 3);
        assert_eq!(core.device_counters(&device).restarts, 1);
    }

    #[test]
    fn announcement_goes_into_batch() {
        let mut core = IngestCore::new(DecoderSet::new(vec![Box::new(se_decode::TasmotaDecoder::default())]));
        let payload = br#"{"dn":"Rig plug","md":"Sonoff S31","t":"plug-7"}"#;
        let processed = core.process([("tasmota/discovery/84CCA81A2B3C/config", payload.as_slice(), T0)]);
        assert_eq!(processed.batch.announcements.len(), 1);
        let (device, announcement, at_ms) = &processed.batch.announcements[0];
        assert_eq!(device.as_str(), "plug-7");
        assert_eq!(announcement.model.as_deref(), Some("Sonoff S31"));
        assert_eq!(*at_ms, T0);
    }

    fn counters_after(seqs: &[u64]) -> DeviceCounters {
        let mut core = core();
        let topic = "smart-energy/v1/clean-01/telemetry";
        let payloads: Vec<String> = seqs.iter().map(|seq| message(*seq)).collect();
        core.process(payloads.iter().map(|p| (topic, p.as_bytes(), T0)));
        core.device_counters(&DeviceId::parse("clean-01").unwrap())
    }

    #[test]
    fn reset_to_zero_counts_one_restart() {
        let counters = counters_after(&[1, 2, 3, 0]);
        assert_eq!(counters.restarts, 1);
        assert_eq!(counters.lost, 0);
        assert_eq!(counters.last_seq, Some(0));
    }

    #[test]
    fn huge_jump_is_not_loss() {
        let counters = counters_after(&[5, u64::MAX]);
        assert_eq!(counters.lost, 0);
        assert_eq!(counters.restarts, 1);
        assert_eq!(counters.last_seq, Some(u64::MAX));
    }

    #[test]
    fn zero_after_huge_jump_is_restart() {
        let counters = counters_after(&[5, u64::MAX, 0]);
        assert_eq!(counters.lost, 0);
        assert_eq!(counters.restarts, 2);
        assert_eq!(counters.last_seq, Some(0));
    }

    #[test]
    fn jump_beyond_max_gap_is_not_loss() {
        let counters = counters_after(&[1, 999_999_999]);
        assert_eq!(counters.lost, 0);
        assert_eq!(counters.restarts, 1);
    }

    #[test]
    fn restored_restarts_add_once() {
        let mut core = core();
        let device = DeviceId::parse("rig-01").unwrap();
        let stored = DeviceCounters { last_seq: Some(41), lost: 3, duplicates: 0, restarts: 1 };
        core.restore_counters(device.clone(), &stored);
        let payload = message(0);
        core.process([("smart-energy/v1/rig-01/telemetry", payload.as_bytes(), T0)]);
        assert_eq!(core.device_counters(&device).restarts, 2);
        assert_eq!(core.device_counters(&device).lost, 3);
    }
}
