//! Energy from power samples (`power_w`).
//!
//! Rule: sample-and-hold (left-point). Each valid sample's power stays in effect until
//! the next valid sample, so the energy of `[t_k, t_k+1]` is `P_k x (t_k+1 - t_k)`.
//! A meter that reports "the power now" cannot say how the power moved
//! between two reports, and holding the last value is what its own display
//! does; it also never invents a ramp across a step change. Trapezoids would
//! give 0.972 Wh instead of 1.944 Wh for 700 W held 10 s before a 0 W sample.
//!
//! - A sample without a value (nan, `[Not Supported]`) or with an impossible
//!   value (a sentinel such as 6553.5 = 65535/10, above
//!   [`PowerConfig::max_power_w`], or beyond [`PHYSICAL_MAX_W`]) is skipped: the previous valid power holds
//!   across it.
//! - Two valid samples further apart than the maximum gap do not hold: the
//!   span between them is unknown ([`UnknownCause::Gap`]), never zero and
//!   never a ramp. The maximum gap is [`PowerConfig::max_gap_ms`], or else
//!   [`PowerConfig::gap_factor`] times the usual interval: the configured one,
//!   or else the lower median of the intervals between consecutive samples.
//! - With a window, the last valid sample holds up to the window end when
//!   the end is within the maximum gap; a window start before the first valid
//!   sample is unknown ([`UnknownCause::NoData`]), and so is a window without
//!   any valid sample.

use serde::Deserialize;

use se_core::TimestampMs;

use crate::series::{sort_and_dedupe, EnergyResult, PowerSample, UnknownCause};
use crate::EnergyError;

/// Values that devices send in place of a reading: all bits set in a 16-bit
/// or 32-bit register, raw or scaled by 1/10, and the signed maxima.
pub const DEFAULT_SENTINELS: [f64; 6] = [65535.0, 6553.5, 32767.0, 3276.7, 4_294_967_295.0, 2_147_483_647.0];

/// Largest power magnitude accepted from any device, in W (1 TW). Values
/// beyond it are corrupt, and would overflow the energy sums.
pub const PHYSICAL_MAX_W: f64 = 1e12;

/// Rules for one power series.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// Usual time between samples, in milliseconds; measured from the samples when absent.
    pub usual_interval_ms: Option<i64>,
    /// Maximum gap as a multiple of the usual interval.
    pub gap_factor: f64,
    /// Maximum gap in milliseconds; overrides `gap_factor` when set.
    pub max_gap_ms: Option<i64>,
    /// Highest power the device can use, in W; samples above it are rejected.
    pub max_power_w: Option<f64>,
    /// Lowest possible power, in W; samples below it are rejected. `None`
    /// allows negative power, which meters report for export.
    pub min_power_w: Option<f64>,
    /// Exact values rejected as "no reading" codes. A real reading equal to
    /// one of them is rejected too; clear the list for meters whose range
    /// includes them.
    pub sentinels: Vec<f64>,
}

impl Default for PowerConfig {
    fn default() -> Self {
        Self { usual_interval_ms: None, gap_factor: 3.0, max_gap_ms: None, max_power_w: None, min_power_w: None, sentinels: DEFAULT_SENTINELS.to_vec() }
    }
}

impl PowerConfig {
    /// Checks every setting; the error lists all invalid ones.
    pub fn validate(&self) -> Result<(), EnergyError> {
        let mut problems = Vec::new();
        if let Some(interval) = self.usual_interval_ms {
            if interval <= 0 {
                problems.push(format!("usual_interval_ms must be positive, got {interval}"));
            }
        }
        if !(self.gap_factor.is_finite() && self.gap_factor >= 1.0) {
            problems.push(format!("gap_factor must be 1 or more, got {}", self.gap_factor));
        }
        if let Some(gap) = self.max_gap_ms {
            if gap <= 0 {
                problems.push(format!("max_gap_ms must be positive, got {gap}"));
            }
        }
        if let Some(max) = self.max_power_w {
            if !max.is_finite() {
                problems.push(format!("max_power_w must be a finite number of watts, got {max}"));
            }
        }
        if let (Some(min), Some(max)) = (self.min_power_w, self.max_power_w) {
            if min >= max {
                problems.push(format!("min_power_w ({min}) must be below max_power_w ({max})"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EnergyError::InvalidConfig { what: "power", problems })
        }
    }

    fn is_possible(&self, watts: f64) -> bool {
        watts.is_finite()
            && watts.abs() <= PHYSICAL_MAX_W
            && !self.sentinels.contains(&watts)
            && self.max_power_w.is_none_or(|max| watts <= max)
            && self.min_power_w.is_none_or(|min| watts >= min)
    }
}

/// Span `[start_ms, end_ms]` to integrate over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: TimestampMs,
    pub end_ms: TimestampMs,
}

/// Integrates a power series into energy. Samples may come in any order and
/// with repeats. Without a window, the span runs from the first to the last
/// valid sample. With one, only energy inside it counts, and a sample before
/// the window may hold into it.
pub fn power_energy(samples: &[PowerSample], window: Option<Window>, config: &PowerConfig) -> Result<EnergyResult, EnergyError> {
    config.validate()?;
    if let Some(window) = window {
        if window.end_ms < window.start_ms {
            return Err(EnergyError::InvalidWindow { start_ms: window.start_ms, end_ms: window.end_ms });
        }
    }
    let mut result = EnergyResult::default();
    let (points, duplicates) = sort_and_dedupe(samples, |s| (s.ts_ms, s.seq, s.watts.map(f64::to_bits)));
    result.duplicates = duplicates;
    let max_gap = max_gap_ms(&points, config);

    let mut valid: Vec<(TimestampMs, f64)> = Vec::with_capacity(points.len());
    for point in &points {
        match point.watts {
            None => result.missing_samples += 1,
            Some(watts) if watts.is_nan() => result.missing_samples += 1,
            Some(watts) if !config.is_possible(watts) => result.rejected_samples += 1,
            Some(watts) => valid.push((point.ts_ms, watts)),
        }
    }

    let (start, end) = match (window, valid.first(), valid.last()) {
        (Some(window), _, _) => (window.start_ms, window.end_ms),
        (None, Some(first), Some(last)) => (first.0, last.0),
        _ => return Ok(result),
    };
    let Some(&(first_ts, _)) = valid.first() else {
        result.add_unknown(start, end, UnknownCause::NoData);
        return Ok(result);
    };
    if first_ts > start {
        result.add_unknown(start, first_ts.min(end), UnknownCause::NoData);
    }

    let hold = |from: TimestampMs, to: TimestampMs, watts: f64, result: &mut EnergyResult| {
        let (clipped_from, clipped_to) = (from.max(start), to.min(end));
        if clipped_to <= clipped_from {
            return;
        }
        if to.saturating_sub(from) > max_gap {
            result.add_unknown(clipped_from, clipped_to, UnknownCause::Gap);
        } else {
            result.add_piece(clipped_from, clipped_to, watts * clipped_to.saturating_sub(clipped_from) as f64 / 3_600_000.0);
        }
    };
    for pair in valid.windows(2) {
        let ((from, watts), (to, _)) = (pair[0], pair[1]);
        hold(from, to, watts, &mut result);
    }
    if let Some(&(last_ts, watts)) = valid.last() {
        if end > last_ts {
            hold(last_ts, end, watts, &mut result);
        }
    }
    Ok(result)
}

/// Maximum gap in milliseconds for these samples (see the module rules).
/// Returns 0, so nothing holds, when no interval is known.
fn max_gap_ms(points: &[PowerSample], config: &PowerConfig) -> i64 {
    if let Some(gap) = config.max_gap_ms {
        return gap;
    }
    let usual = config.usual_interval_ms.or_else(|| {
        let mut intervals: Vec<i64> = points.windows(2).map(|pair| pair[1].ts_ms.saturating_sub(pair[0].ts_ms)).collect();
        intervals.sort_unstable();
        intervals.get(intervals.len().saturating_sub(1) / 2).copied()
    });
    usual.map_or(0, |usual| (usual as f64 * config.gap_factor).round() as i64)
}
