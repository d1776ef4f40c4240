//! Energy from a cumulative counter (`energy_wh`, raw pulse counts, ...).
//!
//! The energy of a span is the sum of the counter's increases between
//! consecutive samples, after the samples are sorted and repeats dropped. A
//! decrease is classified, in this order:
//!
//! 1. rounding dip: at most [`CounterConfig::dip_tolerance_wh`] below the
//!    current base. Ignored, and the higher base is kept, so 544.587493,
//!    544.587, 544.590 kWh gives 0.002507 kWh.
//! 2. false drop: the counter comes back to the base (within the dip
//!    tolerance), either within [`CounterConfig::restart_window_ms`] of the
//!    drop or before it shows any increase from the dropped level. The
//!    dropped samples are ignored, so 152.30, 0, 152.31, 152.40 kWh gives
//!    0.10 kWh, and a restart that repeats the old value adds nothing.
//! 3. wrap: a modulus is set, the base is in the top [`CounterConfig::wrap_zone`]
//!    of the range and the new value in the bottom one. The increase is
//!    `modulus - base + value`.
//! 4. reset: the counter restarted from zero, so the new value is the energy
//!    since the restart. It is counted only when it is below half the old
//!    base and, with a maximum power set, reachable since the previous
//!    sample. Otherwise the counter probably restarted from an older saved
//!    value, so nothing is counted. Either way the span from the previous sample to
//!    the new one is reported unknown ([`UnknownCause::Reset`]), because the
//!    energy used between the last sample and the restart is lost.
//! 5. unresolved: a drop in the last samples with nothing after it to decide
//!    between 2 and 4, and that is not a wrap. Nothing is counted;
//!    recomputing when later samples arrive classifies it.
//!
//! With [`CounterConfig::max_power_w`] set, an increase larger than that power
//! could deliver since the previous sample is a glitch when the next sample
//! falls back to a reachable value (ignored), and otherwise a new base
//! ([`EventKind::Rebase`], span unknown).

use serde::Deserialize;

use crate::series::{sort_and_dedupe, CounterEvent, CounterSample, EnergyResult, EventKind, UnknownCause};
use crate::EnergyError;

/// Largest counter value accepted, in Wh (1 EWh). Values beyond it are
/// corrupt, and would overflow the energy sums.
pub const PHYSICAL_MAX_WH: f64 = 1e18;

/// Rules for one counter series.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CounterConfig {
    /// Wh per counter unit: 1 for Wh, 1000 for kWh, 1/60 for watt-minutes,
    /// 1000 / 5347.5 for a chip that counts 5347.5 pulses per kWh.
    pub wh_per_unit: f64,
    /// Counter value at which the counter starts again from 0, in counter
    /// units (2^24 for a 24-bit register). `None`: the counter never wraps.
    pub modulus: Option<f64>,
    /// Fraction of the range at each end where a decrease counts as a wrap.
    pub wrap_zone: f64,
    /// Largest decrease, in Wh, taken as rounding noise instead of a reset.
    /// Set it to the counter's resolution.
    pub dip_tolerance_wh: f64,
    /// Time after a drop within which a return to the former value makes
    /// the drop false, in milliseconds.
    pub restart_window_ms: i64,
    /// Highest power the device can use, in W; enables the checks of
    /// increases and of the first value after a reset.
    pub max_power_w: Option<f64>,
}

impl Default for CounterConfig {
    fn default() -> Self {
        Self { wh_per_unit: 1.0, modulus: None, wrap_zone: 0.1, dip_tolerance_wh: 1.0, restart_window_ms: 15 * 60 * 1000, max_power_w: None }
    }
}

impl CounterConfig {
    /// Checks every setting; the error lists all invalid ones.
    pub fn validate(&self) -> Result<(), EnergyError> {
        let mut problems = Vec::new();
        if !(self.wh_per_unit.is_finite() && self.wh_per_unit > 0.0) {
            problems.push(format!("wh_per_unit must be a positive number, got {}", self.wh_per_unit));
        }
        if let Some(modulus) = self.modulus {
            if !(modulus.is_finite() && modulus > 0.0) {
                problems.push(format!("modulus must be a positive number of counter units, got {modulus}"));
            }
        }
        if !(self.wrap_zone > 0.0 && self.wrap_zone < 0.5) {
            problems.push(format!("wrap_zone must be between 0 and 0.5, got {}", self.wrap_zone));
        }
        if !(self.dip_tolerance_wh.is_finite() && self.dip_tolerance_wh >= 0.0) {
            problems.push(format!("dip_tolerance_wh must be 0 or more, got {}", self.dip_tolerance_wh));
        }
        if self.restart_window_ms < 0 {
            problems.push(format!("restart_window_ms must be 0 or more, got {}", self.restart_window_ms));
        }
        if let Some(max) = self.max_power_w {
            if !(max.is_finite() && max > 0.0) {
                problems.push(format!("max_power_w must be a positive number of watts, got {max}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EnergyError::InvalidConfig { what: "counter", problems })
        }
    }

    /// Energy in Wh that `max_power_w` can deliver in `dt_ms`; infinite without a maximum.
    fn reachable_wh(&self, dt_ms: i64) -> f64 {
        self.max_power_w.map_or(f64::INFINITY, |watts| watts * dt_ms.max(0) as f64 / 3_600_000.0)
    }
}

/// Computes the energy of a counter series. Samples may come in any order
/// and with repeats; the result depends only on the set of samples.
pub fn counter_energy(samples: &[CounterSample], config: &CounterConfig) -> Result<EnergyResult, EnergyError> {
    config.validate()?;
    let mut result = EnergyResult::default();

    // Counter values in Wh; impossible values are counted and dropped.
    let mut valid = Vec::with_capacity(samples.len());
    for sample in samples {
        let wh = sample.value * config.wh_per_unit;
        if wh.is_finite() && (0.0..=PHYSICAL_MAX_WH).contains(&wh) {
            valid.push(CounterSample { value: wh, ..*sample });
        } else {
            result.rejected_samples += 1;
        }
    }
    let (points, duplicates) = sort_and_dedupe(&valid, |s| (s.ts_ms, s.seq, Some(s.value.to_bits())));
    result.duplicates = duplicates;

    let mut walk = Walk { config, points: &points, base_index: 0, result };
    walk.run();
    Ok(walk.result)
}

/// State of the pass over the sorted samples.
struct Walk<'a> {
    config: &'a CounterConfig,
    points: &'a [CounterSample],
    /// Index of the sample that is the current base of the counter.
    base_index: usize,
    result: EnergyResult,
}

impl Walk<'_> {
    fn base(&self) -> CounterSample {
        self.points[self.base_index]
    }

    fn event(&mut self, index: usize, kind: EventKind) {
        let event = CounterEvent { ts_ms: self.points[index].ts_ms, kind, from_wh: self.base().value, to_wh: self.points[index].value };
        self.result.events.push(event);
    }

    fn run(&mut self) {
        let mut index = 1;
        while index < self.points.len() {
            index = self.step(index);
        }
    }

    /// Handles the sample at `index`; returns the index of the next sample to handle.
    fn step(&mut self, index: usize) -> usize {
        let base = self.base();
        let point = self.points[index];
        let increase = point.value - base.value;
        let tolerance = self.config.dip_tolerance_wh;

        if increase >= 0.0 {
            if increase > self.config.reachable_wh(point.ts_ms.saturating_sub(base.ts_ms)) + tolerance {
                return self.unreachable_rise(index);
            }
            self.result.add_piece(base.ts_ms, point.ts_ms, increase);
            self.base_index = index;
            return index + 1;
        }
        if -increase <= tolerance {
            self.event(index, EventKind::RoundingDip);
            return index + 1;
        }
        match self.find_return(index) {
            Return::Found(back) => {
                self.event(index, EventKind::FalseDrop);
                back
            }
            Return::Undecided if self.try_wrap(index) => index + 1,
            Return::Undecided => {
                self.event(index, EventKind::Unresolved);
                self.points.len()
            }
            Return::Never => {
                self.real_drop(index);
                index + 1
            }
        }
    }

    /// Looks for a later sample back at the base level (see the module rules).
    fn find_return(&self, index: usize) -> Return {
        let base = self.base().value;
        let tolerance = self.config.dip_tolerance_wh;
        let dropped = self.points[index];
        let mut counted_up = false;
        for (back, later) in self.points.iter().enumerate().skip(index + 1) {
            let within_window = later.ts_ms.saturating_sub(dropped.ts_ms) <= self.config.restart_window_ms;
            if later.value >= base - tolerance {
                return if within_window || !counted_up { Return::Found(back) } else { Return::Never };
            }
            if later.value > dropped.value + tolerance {
                counted_up = true;
            }
            if counted_up && !within_window {
                return Return::Never;
            }
        }
        if counted_up {
            Return::Never
        } else {
            Return::Undecided
        }
    }

    /// Handles a decrease that lasted, as a wrap or a reset.
    fn real_drop(&mut self, index: usize) {
        if self.try_wrap(index) {
            return;
        }
        let base = self.base();
        let point = self.points[index];
        let reachable = self.config.reachable_wh(point.ts_ms.saturating_sub(base.ts_ms));
        self.event(index, EventKind::Reset);
        // NOTE: a saved value restored at less than half the old base reads as a count from zero
        // and is added; only `max_power_w` bounds it.
        let since_restart = point.value;
        if since_restart < base.value / 2.0 && since_restart <= reachable {
            self.result.add_piece(base.ts_ms, point.ts_ms, since_restart);
        }
        self.result.add_unknown(base.ts_ms, point.ts_ms, UnknownCause::Reset);
        self.base_index = index;
    }

    /// Counts the drop at `index` as a wrap when the modulus rules allow it.
    fn try_wrap(&mut self, index: usize) -> bool {
        let config = self.config;
        let Some(modulus) = config.modulus else {
            return false;
        };
        let base = self.base();
        let point = self.points[index];
        let modulus_wh = modulus * config.wh_per_unit;
        let near_top = base.value >= modulus_wh * (1.0 - config.wrap_zone);
        let near_bottom = point.value <= modulus_wh * config.wrap_zone;
        let increase = modulus_wh - base.value + point.value;
        let reachable = config.reachable_wh(point.ts_ms.saturating_sub(base.ts_ms));
        if !(near_top && near_bottom && increase <= reachable + config.dip_tolerance_wh) {
            return false;
        }
        self.event(index, EventKind::Wrap);
        self.result.add_piece(base.ts_ms, point.ts_ms, increase);
        self.base_index = index;
        true
    }

    /// Handles an increase the device cannot reach: a glitch when the next
    /// sample falls back within reach of the base, else a new base.
    fn unreachable_rise(&mut self, index: usize) -> usize {
        let base = self.base();
        let point = self.points[index];
        let falls_back = self.points.get(index + 1).is_none_or(|next| {
            next.value - base.value <= self.config.reachable_wh(next.ts_ms.saturating_sub(base.ts_ms)) + self.config.dip_tolerance_wh
        });
        if falls_back {
            self.event(index, EventKind::Glitch);
            self.result.rejected_samples += 1;
            return index + 1;
        }
        self.event(index, EventKind::Rebase);
        self.result.add_unknown(base.ts_ms, point.ts_ms, UnknownCause::Jump);
        self.base_index = index;
        index + 1
    }
}

enum Return {
    /// The counter came back at this index: the samples before it are a false drop.
    Found(usize),
    /// The counter never came back: a wrap or a reset.
    Never,
    /// No later sample decides yet.
    Undecided,
}

/// Unit conversion for Shelly Gen1 counters, which count watt-minutes.
pub fn watt_minutes_to_wh(watt_minutes: f64) -> f64 {
    watt_minutes / 60.0
}

/// Converts a counter reading in kWh to Wh.
pub fn kwh_to_wh(kwh: f64) -> f64 {
    kwh * 1000.0
}
