//! Input samples and the result of an energy computation.

use serde::Serialize;

use se_core::TimestampMs;

/// One reading of a cumulative energy counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterSample {
    pub ts_ms: TimestampMs,
    /// Counter value in the unit of [`crate::CounterConfig::wh_per_unit`].
    pub value: f64,
    /// Message sequence number, when the device sends one.
    pub seq: Option<u64>,
}

impl CounterSample {
    pub fn new(ts_ms: TimestampMs, value: f64) -> Self {
        Self { ts_ms, value, seq: None }
    }
}

/// One reading of active power. `watts: None` is a sample the device sent
/// without a value (nan, `[Not Supported]`): the time is known, the power is not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerSample {
    pub ts_ms: TimestampMs,
    pub watts: Option<f64>,
    pub seq: Option<u64>,
}

impl PowerSample {
    pub fn new(ts_ms: TimestampMs, watts: f64) -> Self {
        Self { ts_ms, watts: Some(watts), seq: None }
    }

    pub fn missing(ts_ms: TimestampMs) -> Self {
        Self { ts_ms, watts: None, seq: None }
    }
}

/// Energy measured over `[start_ms, end_ms]`, in Wh.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EnergyPiece {
    pub start_ms: TimestampMs,
    pub end_ms: TimestampMs,
    pub wh: f64,
}

/// Cause of unknown energy in a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCause {
    /// No usable sample for longer than the maximum gap.
    Gap,
    /// The span has no usable sample at all, such as a GPU whose power is `[Not Supported]`.
    NoData,
    /// A counter restarted: the energy from its last sample to the restart is lost,
    /// so the energy counted for the span is a lower bound.
    Reset,
    /// A counter jumped by more than its device can use and was taken as a new base.
    Jump,
}

/// A span whose energy is unknown. It is reported as such, never as zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UnknownSpan {
    pub start_ms: TimestampMs,
    pub end_ms: TimestampMs,
    pub cause: UnknownCause,
}

/// Decision of the counter rules on one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The counter restarted from zero (power loss, reboot, chip reset).
    Reset,
    /// The counter passed its modulus and started again from zero.
    Wrap,
    /// The counter dropped and came back to its former level: the drop was ignored.
    FalseDrop,
    /// A drop no larger than the rounding tolerance: ignored, the higher value is kept.
    RoundingDip,
    /// A rise the device cannot reach (above its maximum power) that did not last: ignored.
    Glitch,
    /// A rise the device cannot reach that lasted: taken as a new base without energy.
    Rebase,
    /// A drop in the last samples that later samples will classify: ignored for now.
    Unresolved,
}

/// One decision of the counter rules, with the values it was made on (Wh).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CounterEvent {
    pub ts_ms: TimestampMs,
    pub kind: EventKind,
    /// Counter value before the event, in Wh.
    pub from_wh: f64,
    /// Counter value of the sample that triggered the event, in Wh.
    pub to_wh: f64,
}

/// Energy of one series over a span, with everything that is not known.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EnergyResult {
    /// Energy of the known spans, in Wh.
    pub wh: f64,
    /// Energy by sample interval, sorted by time; input for period totals and costs.
    pub pieces: Vec<EnergyPiece>,
    pub unknown_spans: Vec<UnknownSpan>,
    /// Counter decisions (resets, wraps, ignored drops); empty for power series.
    pub events: Vec<CounterEvent>,
    /// Samples dropped as repeats of an earlier one (same time, or same sequence number and value).
    pub duplicates: usize,
    /// Samples without a value.
    pub missing_samples: usize,
    /// Samples with an impossible value (non-finite, sentinel, above the device maximum).
    pub rejected_samples: usize,
}

impl EnergyResult {
    /// Energy in Wh when the whole span is known; `None` if any part is unknown.
    pub fn total_wh(&self) -> Option<f64> {
        self.unknown_spans.is_empty().then_some(self.wh)
    }

    /// Energy of the known spans in kWh.
    pub fn kwh(&self) -> f64 {
        self.wh / 1000.0
    }

    /// Summed length of the unknown spans, in milliseconds (overlaps counted once).
    pub fn unknown_ms(&self) -> i64 {
        let mut spans: Vec<(i64, i64)> = self.unknown_spans.iter().map(|s| (s.start_ms, s.end_ms)).collect();
        spans.sort_unstable();
        let mut total = 0;
        let mut covered_until = i64::MIN;
        for (start, end) in spans {
            let start = start.max(covered_until);
            if end > start {
                total = end.saturating_sub(start).saturating_add(total);
                covered_until = end;
            }
        }
        total
    }

    /// Number of events of one kind.
    pub fn count(&self, kind: EventKind) -> usize {
        self.events.iter().filter(|event| event.kind == kind).count()
    }

    pub(crate) fn add_piece(&mut self, start_ms: TimestampMs, end_ms: TimestampMs, wh: f64) {
        if wh != 0.0 && end_ms >= start_ms {
            self.wh += wh;
            self.pieces.push(EnergyPiece { start_ms, end_ms, wh });
        }
    }

    pub(crate) fn add_unknown(&mut self, start_ms: TimestampMs, end_ms: TimestampMs, cause: UnknownCause) {
        if end_ms > start_ms {
            self.unknown_spans.push(UnknownSpan { start_ms, end_ms, cause });
        }
    }
}

/// Sorts samples by time (stable, so the first received wins a tie) and drops
/// repeats: a later sample at the same time, or with the same sequence number
/// and value as a kept one. Returns the kept samples and the number dropped.
pub(crate) fn sort_and_dedupe<T: Copy>(samples: &[T], key: impl Fn(&T) -> (TimestampMs, Option<u64>, Option<u64>)) -> (Vec<T>, usize) {
    let mut sorted: Vec<T> = samples.to_vec();
    sorted.sort_by_key(|sample| key(sample).0);
    let mut kept: Vec<T> = Vec::with_capacity(sorted.len());
    let mut seen_seq = std::collections::HashSet::new();
    let mut duplicates = 0;
    for sample in sorted {
        let (ts_ms, seq, value_bits) = key(&sample);
        let same_time = kept.last().is_some_and(|last| key(last).0 == ts_ms);
        let replay = seq.is_some_and(|seq| !seen_seq.insert((seq, value_bits)));
        if same_time || replay {
            duplicates += 1;
            continue;
        }
        kept.push(sample);
    }
    (kept, duplicates)
}
