//! Energy of one device channel over a report window, from the best series
//! the channel has.
//!
//! Sources, in order of preference: the active energy counter
//! (`energy_wh`), active power (`power_w`), the apparent energy counter
//! (`apparent_energy_vah`) and apparent power (`apparent_power_va`). A meter
//! that measures current only, such as the EmonLib front end of the ESP32
//! prototype, reports apparent values and nothing else. Active power never
//! exceeds apparent power (|P| = |S| x |power factor| <= |S|), so energy
//! from an apparent source is an estimate and an upper bound of the active
//! energy.

use se_core::{Metric, TimestampMs};

use crate::counter::{counter_energy, CounterConfig};
use crate::power::{power_energy, PowerConfig, Window};
use crate::series::{CounterSample, EnergyPiece, EnergyResult, PowerSample, UnknownCause, UnknownSpan};
use crate::EnergyError;

/// Series that a channel's energy is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnergySource {
    /// Cumulative active energy counter, in Wh.
    EnergyCounter,
    /// Active power samples, in W.
    Power,
    /// Cumulative apparent energy counter, in VAh, taken as Wh.
    ApparentEnergyCounter,
    /// Apparent power samples, in VA, taken as W.
    ApparentPower,
}

impl EnergySource {
    /// Every source, most preferred first.
    pub const PREFERENCE: [EnergySource; 4] =
        [EnergySource::EnergyCounter, EnergySource::Power, EnergySource::ApparentEnergyCounter, EnergySource::ApparentPower];

    /// Metric whose readings feed this source.
    pub fn metric(self) -> Metric {
        match self {
            EnergySource::EnergyCounter => Metric::Energy,
            EnergySource::Power => Metric::Power,
            EnergySource::ApparentEnergyCounter => Metric::ApparentEnergy,
            EnergySource::ApparentPower => Metric::ApparentPower,
        }
    }

    /// Returns whether the readings are a cumulative counter rather than power samples.
    pub fn is_counter(self) -> bool {
        matches!(self, EnergySource::EnergyCounter | EnergySource::ApparentEnergyCounter)
    }

    /// Returns whether energy from this source is an upper bound of the
    /// active energy instead of a measurement of it.
    pub fn is_upper_bound(self) -> bool {
        matches!(self, EnergySource::ApparentEnergyCounter | EnergySource::ApparentPower)
    }

    /// Picks the most preferred source among the metrics a channel has.
    pub fn choose(metrics: &[Metric]) -> Option<EnergySource> {
        Self::PREFERENCE.into_iter().find(|source| metrics.contains(&source.metric()))
    }
}

/// Computes the energy of one channel inside `window` from `samples`
/// (`(ts_ms, value)` of `source`'s metric). Samples may start before the
/// window, so that a counter has a base and a power sample can hold into it.
///
/// Pieces and unknown spans are clipped to the window, and a piece that
/// crosses a window bound keeps energy in proportion to its time inside. A
/// counter is unknown (`no_data`) from the window start to its first sample
/// when that sample comes after the start. Energy after a counter's last
/// sample arrives with its next sample, so the tail of a running window is
/// not reported as unknown.
pub fn channel_energy(source: EnergySource, samples: &[(TimestampMs, f64)], window: Window) -> Result<EnergyResult, EnergyError> {
    if window.end_ms < window.start_ms {
        return Err(EnergyError::InvalidWindow { start_ms: window.start_ms, end_ms: window.end_ms });
    }
    let mut result = if source.is_counter() {
        let counter: Vec<CounterSample> = samples.iter().map(|(ts_ms, value)| CounterSample::new(*ts_ms, *value)).collect();
        let mut result = counter_energy(&counter, &CounterConfig::default())?;
        if let Some(first) = counter.iter().map(|sample| sample.ts_ms).min() {
            if first > window.start_ms {
                result.unknown_spans.push(UnknownSpan { start_ms: window.start_ms, end_ms: first.min(window.end_ms), cause: UnknownCause::NoData });
            }
        }
        result
    } else {
        let power: Vec<PowerSample> = samples.iter().map(|(ts_ms, value)| PowerSample::new(*ts_ms, *value)).collect();
        power_energy(&power, Some(window), &PowerConfig::default())?
    };

    result.pieces = clip_pieces(&result.pieces, window);
    result.wh = result.pieces.iter().fold(0.0, |total, piece| total + piece.wh);
    result.unknown_spans = result
        .unknown_spans
        .iter()
        .filter_map(|span| {
            let (start_ms, end_ms) = (span.start_ms.max(window.start_ms), span.end_ms.min(window.end_ms));
            (end_ms > start_ms).then_some(UnknownSpan { start_ms, end_ms, cause: span.cause })
        })
        .collect();
    Ok(result)
}

/// Keeps the part of each piece inside `[start_ms, end_ms)`, with energy in
/// proportion to time, as a counter interval may start before the window.
fn clip_pieces(pieces: &[EnergyPiece], window: Window) -> Vec<EnergyPiece> {
    let (from_ms, to_ms) = (window.start_ms, window.end_ms);
    pieces
        .iter()
        .filter_map(|piece| {
            if piece.end_ms == piece.start_ms {
                // An instant piece (a jump at one timestamp) counts when it lies inside.
                return (piece.start_ms >= from_ms && piece.start_ms < to_ms).then_some(*piece);
            }
            let (start_ms, end_ms) = (piece.start_ms.max(from_ms), piece.end_ms.min(to_ms));
            if end_ms <= start_ms {
                return None;
            }
            let share = (end_ms - start_ms) as f64 / (piece.end_ms - piece.start_ms) as f64;
            Some(EnergyPiece { start_ms, end_ms, wh: piece.wh * share })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn window(minutes: i64) -> Window {
        Window { start_ms: 0, end_ms: minutes * MINUTE }
    }

    #[test]
    fn active_energy_preferred_over_apparent() {
        let metrics = [Metric::ApparentEnergy, Metric::ApparentPower, Metric::Energy, Metric::Power];
        assert_eq!(EnergySource::choose(&metrics), Some(EnergySource::EnergyCounter));
    }

    #[test]
    fn active_power_preferred_over_apparent_energy() {
        let metrics = [Metric::ApparentEnergy, Metric::Power];
        assert_eq!(EnergySource::choose(&metrics), Some(EnergySource::Power));
    }

    #[test]
    fn prototype_metrics_choose_apparent_energy() {
        // The ESP32 prototype stores current, voltage, apparent energy, apparent power and uptime.
        let metrics = [Metric::Current, Metric::Voltage, Metric::ApparentEnergy, Metric::ApparentPower, Metric::Uptime];
        let source = EnergySource::choose(&metrics);
        assert_eq!(source, Some(EnergySource::ApparentEnergyCounter));
        assert!(source.is_some_and(EnergySource::is_upper_bound));
    }

    #[test]
    fn apparent_power_alone_is_chosen() {
        assert_eq!(EnergySource::choose(&[Metric::ApparentPower]), Some(EnergySource::ApparentPower));
    }

    #[test]
    fn voltage_and_current_alone_give_no_source() {
        assert_eq!(EnergySource::choose(&[Metric::Voltage, Metric::Current]), None);
    }

    #[test]
    fn active_sources_are_not_upper_bounds() {
        assert!(!EnergySource::EnergyCounter.is_upper_bound());
        assert!(!EnergySource::Power.is_upper_bound());
    }

    #[test]
    fn apparent_power_integrates_like_power() {
        // 120 VA every 5 s for one hour: 120 VAh.
        let samples: Vec<(TimestampMs, f64)> = (0..=720).map(|i| (i * 5000, 120.0)).collect();
        let result = channel_energy(EnergySource::ApparentPower, &samples, window(60)).unwrap();
        assert!((result.wh - 120.0).abs() < 1e-9, "{result:?}");
        assert!(result.unknown_spans.is_empty(), "{result:?}");
    }

    #[test]
    fn apparent_counter_counts_increase_in_window() {
        // VAh counter from 10 minutes before the window: +10 VAh per 10 minutes.
        let samples: Vec<(TimestampMs, f64)> = (-1..=6).map(|i| (i * 10 * MINUTE, 53.59 + 10.0 * (i + 1) as f64)).collect();
        let result = channel_energy(EnergySource::ApparentEnergyCounter, &samples, window(60)).unwrap();
        assert!((result.wh - 60.0).abs() < 1e-9, "{result:?}");
        assert!(result.unknown_spans.is_empty(), "{result:?}");
    }

    #[test]
    fn counter_starting_late_is_unknown_before() {
        let samples = [(20 * MINUTE, 100.0), (60 * MINUTE, 140.0)];
        let result = channel_energy(EnergySource::EnergyCounter, &samples, window(60)).unwrap();
        assert!((result.wh - 40.0).abs() < 1e-9, "{result:?}");
        assert_eq!(result.unknown_spans, vec![UnknownSpan { start_ms: 0, end_ms: 20 * MINUTE, cause: UnknownCause::NoData }]);
    }

    #[test]
    fn clip_splits_piece_by_time() {
        let piece = EnergyPiece { start_ms: 0, end_ms: 4000, wh: 8.0 };
        let clipped = clip_pieces(&[piece], Window { start_ms: 1000, end_ms: 2000 });
        assert_eq!(clipped.len(), 1);
        assert!((clipped[0].wh - 2.0).abs() < 1e-12);
    }
}
