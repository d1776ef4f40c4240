//! Peer comparison: a device drawing more power than its peers at the same
//! load (utilization or hashrate).
//!
//! Power and load are averaged per bucket of `bucket_ms`, and one
//! least-squares line of power against load is fitted on the buckets of
//! every device. In each bucket, a device's expected power is the line's
//! power at its load plus the median distance of its peers from the line in
//! that bucket. The reference therefore follows changes that the whole group
//! shares, and one faulty peer cannot move it. The device's relative excess is its
//! power minus the expected power, divided by the expected power. The detector
//! compares the median excess over the recent window with two thresholds:
//! an absolute one (the device draws much more than its peers) and a shift
//! against the device's own median excess before the window (it started to
//! draw more than it used to, compared with its peers). The shift catches a
//! +15 % drift on a card that used to draw 5 % less than average, which the
//! absolute threshold would miss.

use std::collections::BTreeMap;

use se_core::{Metric, TimestampMs};

use super::stats::{bucket_means, mad, median, MAD_TO_SIGMA};
use super::{check_setting, check_sorted, Anomaly, AnomalyKind, AnomalyReason, InputError, Point, Segment, SeriesKey, Severity};

/// Power and load of one device of a peer group.
#[derive(Debug, Clone, Copy)]
pub struct PeerSeries<'a> {
    /// Key of the power series; anomalies carry it.
    pub key: &'a SeriesKey,
    pub power: &'a [Point],
    /// Utilization or hashrate, as named by [`PeerConfig::load`].
    pub load: &'a [Point],
}

/// Settings of [`detect_peer_excess`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerConfig {
    /// Width of the buckets in which power and load are averaged.
    pub bucket_ms: i64,
    /// Load metric of [`PeerSeries::load`], for the message.
    pub load: Metric,
    /// The peers are the other GPUs of the same rig (else same-model peers elsewhere), for the message.
    pub rig_mates: bool,
    /// Length of the recent window at the end of the data.
    pub recent_ms: i64,
    /// Minimum number of buckets in the recent window, and in the baseline before it for the shift test.
    pub min_buckets: usize,
    /// Minimum number of peers with data.
    pub min_peers: usize,
    /// Median recent excess, in percent, from which the device is flagged.
    pub excess_pct: f64,
    /// Rise of the median excess, in percentage points, over the baseline before the window.
    pub shift_pct: f64,
    /// Median recent excess, in percent, that a shift also needs.
    pub shift_min_excess_pct: f64,
    /// Excess or shift, in percent, from which the anomaly is critical.
    pub critical_pct: f64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            bucket_ms: 60_000,
            load: Metric::Utilization,
            rig_mates: true,
            recent_ms: 20 * 60_000,
            min_buckets: 10,
            min_peers: 2,
            excess_pct: 12.0,
            shift_pct: 8.0,
            shift_min_excess_pct: 4.0,
            critical_pct: 25.0,
        }
    }
}

impl PeerConfig {
    fn validate(&self) -> Result<(), InputError> {
        check_setting("bucket_ms", self.bucket_ms as f64, 1.0, f64::MAX, "1 ms or more, such as 60000")?;
        check_setting("recent_ms", self.recent_ms as f64, self.bucket_ms as f64, f64::MAX, "at least one bucket, such as 1200000")?;
        check_setting("excess_pct", self.excess_pct, 0.1, 1e6, "a percentage above 0, such as 12")?;
        check_setting("shift_pct", self.shift_pct, 0.1, 1e6, "a percentage above 0, such as 8")?;
        check_setting("shift_min_excess_pct", self.shift_min_excess_pct, -100.0, 1e6, "a percentage, such as 4")?;
        check_setting("critical_pct", self.critical_pct, self.shift_pct.min(self.excess_pct), 1e6, "not below excess_pct or shift_pct, such as 25")?;
        if self.min_buckets < 3 || self.min_peers < 1 {
            let value = format!("min_buckets {}, min_peers {}", self.min_buckets, self.min_peers);
            return Err(InputError::InvalidSetting { name: "min_buckets/min_peers", value, expected: "at least 3 buckets and 1 peer" });
        }
        Ok(())
    }
}

/// Sums of a least-squares fit.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
}

impl Sums {
    fn add(&mut self, x: f64, y: f64) {
        self.n += 1.0;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.xy += x * y;
    }

    /// Intercept and slope; the slope is 0 when the load has no spread.
    fn line(&self) -> Option<(f64, f64)> {
        if self.n < 1.0 {
            return None;
        }
        let mean_x = self.x / self.n;
        let mean_y = self.y / self.n;
        let sxx = self.xx - self.n * mean_x * mean_x;
        let sxy = self.xy - self.n * mean_x * mean_y;
        let spread = (sxx.max(0.0) / self.n).sqrt();
        let slope = if spread > 1e-6 * mean_x.abs().max(1.0) { sxy / sxx } else { 0.0 };
        Some((mean_y - slope * mean_x, slope))
    }
}

/// Flags devices of `group` that draw more than their peers at the same load.
/// The recent window ends at the last bucket of any device. The score is the
/// figure that triggered (excess or shift) divided by its threshold.
pub fn detect_peer_excess(group: &[PeerSeries<'_>], config: &PeerConfig) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    for member in group {
        check_sorted(member.key, member.power)?;
        check_sorted(member.key, member.load)?;
    }

    // (load, power) per bucket, for each device.
    let buckets: Vec<BTreeMap<TimestampMs, (f64, f64)>> = group
        .iter()
        .map(|member| {
            let load = bucket_means(member.load, config.bucket_ms);
            bucket_means(member.power, config.bucket_ms)
                .into_iter()
                .filter_map(|(start, power)| load.get(&start).map(|load| (start, (*load, power))))
                .collect()
        })
        .collect();
    let Some(last_bucket) = buckets.iter().filter_map(|b| b.keys().next_back().copied()).max() else {
        return Ok(Vec::new());
    };
    let recent_start = last_bucket + config.bucket_ms - config.recent_ms;

    // One line of power against load, fitted on every device's buckets, then
    // refitted without the buckets far from it, so a faulty device (a stuck
    // sensor reading busy power while idle) does not tilt the line.
    let all: Vec<(f64, f64)> = buckets.iter().flat_map(|device| device.values().copied()).collect();
    let Some((intercept, slope)) = fit_trimmed(&all) else {
        return Ok(Vec::new());
    };
    // Each device's distance from the line, per bucket.
    let residuals: Vec<BTreeMap<TimestampMs, f64>> =
        buckets.iter().map(|device| device.iter().map(|(start, (load, power))| (*start, power - (intercept + slope * load))).collect()).collect();

    let mut anomalies = Vec::new();
    for (index, member) in group.iter().enumerate() {
        let peers = buckets.iter().enumerate().filter(|(other, b)| *other != index && !b.is_empty()).count();
        if peers < config.min_peers || buckets[index].is_empty() {
            continue;
        }
        let mut before = Vec::new();
        let mut recent = Vec::new();
        for (start, (load, power)) in &buckets[index] {
            // The peers' median distance from the line in the same bucket
            // moves the reference with them, and one faulty peer cannot move a median.
            let peer_residuals: Vec<f64> = residuals.iter().enumerate().filter(|(other, _)| *other != index).filter_map(|(_, r)| r.get(start).copied()).collect();
            if peer_residuals.len() < config.min_peers {
                continue;
            }
            let Some(peer_offset) = median(&peer_residuals) else { continue };
            let expected = intercept + slope * load + peer_offset;
            if expected <= 1e-9 {
                continue;
            }
            let excess = 100.0 * (power - expected) / expected;
            if *start >= recent_start { recent.push(excess) } else { before.push(excess) }
        }
        if recent.len() < config.min_buckets {
            continue;
        }
        let Some(recent_excess) = median(&recent) else { continue };
        let baseline_excess = if before.len() >= config.min_buckets { median(&before) } else { None };
        let shift = baseline_excess.map(|base| recent_excess - base);

        // A shift counts only while the device draws more than its peers, not when it went from far below to slightly below.
        let by_shift = shift.filter(|shift| *shift >= config.shift_pct && recent_excess >= config.shift_min_excess_pct);
        let by_level = (recent_excess >= config.excess_pct).then_some(recent_excess);
        let (score, strength, baseline) = match (by_shift, by_level) {
            (Some(shift), level) if level.is_none_or(|level| shift / config.shift_pct >= level / config.excess_pct) => {
                (shift / config.shift_pct, shift, baseline_excess)
            }
            (_, Some(level)) => (level / config.excess_pct, level, None),
            _ => continue,
        };
        let severity = if strength >= config.critical_pct { Severity::Critical } else { Severity::Warning };
        let reason = AnomalyReason::PeerExcess { excess_pct: recent_excess, baseline_excess_pct: baseline, load: config.load, peers, rig_mates: config.rig_mates };
        let segment = Segment::new(recent_start.max(first_bucket(&buckets[index])), last_bucket + config.bucket_ms - 1);
        anomalies.push(Anomaly::new(member.key, AnomalyKind::PeerExcess, severity, score, segment, reason));
    }
    Ok(anomalies)
}

/// Least-squares line, refitted once on the pairs whose residual is within
/// 3 scaled MADs of the median residual.
fn fit_trimmed(pairs: &[(f64, f64)]) -> Option<(f64, f64)> {
    let line = |pairs: &[(f64, f64)]| {
        let mut sums = Sums::default();
        for (load, power) in pairs {
            sums.add(*load, *power);
        }
        sums.line()
    };
    let (intercept, slope) = line(pairs)?;
    let residuals: Vec<f64> = pairs.iter().map(|(load, power)| power - (intercept + slope * load)).collect();
    let (Some(center), Some(spread)) = (median(&residuals), mad(&residuals)) else {
        return Some((intercept, slope));
    };
    let limit = 3.0 * MAD_TO_SIGMA * spread;
    let inliers: Vec<(f64, f64)> = pairs.iter().zip(&residuals).filter(|(_, r)| (*r - center).abs() <= limit).map(|(pair, _)| *pair).collect();
    if inliers.len() < pairs.len() / 2 {
        return Some((intercept, slope));
    }
    line(&inliers)
}

fn first_bucket(buckets: &BTreeMap<TimestampMs, (f64, f64)>) -> TimestampMs {
    buckets.keys().next().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::gpu_key;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use se_core::Lang;

    /// Generates a rig of GPUs whose power is `efficiency x (70 + 2.3 x utilization) ± 20 W`,
    /// sampled every 30 s for `minutes`; `scale` multiplies GPU `target`'s power from `from_min`.
    fn rig(gpus: usize, minutes: i64, efficiencies: &[f64], target: usize, scale: f64, from_min: i64, seed: u64) -> Vec<(SeriesKey, Vec<Point>, Vec<Point>)> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..gpus)
            .map(|gpu| {
                let mut power = Vec::new();
                let mut load = Vec::new();
                for step in 0..minutes * 2 {
                    let ts = step * 30_000;
                    let busy = (step / 40 + gpu as i64) % 5 != 0;
                    let utilization: f64 = if busy { rng.random_range(90.0..100.0) } else { rng.random_range(0.0..3.0) };
                    let mut watts = efficiencies[gpu] * (70.0 + 2.3 * utilization) + rng.random_range(-20.0..20.0);
                    if gpu == target && ts >= from_min * 60_000 {
                        watts *= scale;
                    }
                    power.push(Point::new(ts, watts));
                    load.push(Point::new(ts, utilization));
                }
                (gpu_key("rig-03", gpu), power, load)
            })
            .collect()
    }

    fn group(data: &[(SeriesKey, Vec<Point>, Vec<Point>)]) -> Vec<PeerSeries<'_>> {
        data.iter().map(|(key, power, load)| PeerSeries { key, power, load }).collect()
    }

    const EFFICIENCIES: [f64; 8] = [1.0, 0.96, 1.03, 0.95, 1.01, 0.98, 1.04, 0.99];

    #[test]
    fn gpu_drawing_more_than_rig_mates_is_flagged() {
        let data = rig(8, 120, &EFFICIENCIES, 2, 1.18, 0, 1);
        let anomalies = detect_peer_excess(&group(&data), &PeerConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].channel.as_str(), "gpu2");
        let AnomalyReason::PeerExcess { excess_pct, peers, .. } = anomalies[0].reason else { panic!() };
        assert!((15.0..30.0).contains(&excess_pct), "{excess_pct}");
        assert_eq!(peers, 7);
        let message = anomalies[0].message(Lang::En);
        assert!(message.starts_with("GPU 2 of rig-03 draws "), "{message}");
        assert!(message.contains("more than its rig mates at the same utilization (7 peers)"), "{message}");
    }

    #[test]
    fn drift_on_efficient_card_is_flagged_by_shift() {
        // GPU 3 used to draw 5 % less than average; +15 % puts it only about 9 % above.
        let data = rig(8, 120, &EFFICIENCIES, 3, 1.15, 80, 2);
        let anomalies = detect_peer_excess(&group(&data), &PeerConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].channel.as_str(), "gpu3");
        let AnomalyReason::PeerExcess { baseline_excess_pct, .. } = anomalies[0].reason else { panic!() };
        assert!(baseline_excess_pct.is_some_and(|before| before < 0.0), "{:?}", anomalies[0].reason);
        let message = anomalies[0].message(Lang::Fr);
        assert!(message.contains("consomme maintenant"), "{message}");
        assert!(message.contains("à utilisation égale"), "{message}");
    }

    #[test]
    fn healthy_rigs_are_not_flagged() {
        for seed in 0..20 {
            let data = rig(8, 120, &EFFICIENCIES, 0, 1.0, 0, seed);
            let anomalies = detect_peer_excess(&group(&data), &PeerConfig::default()).unwrap();
            assert!(anomalies.is_empty(), "seed {seed}: {anomalies:?}");
        }
    }

    #[test]
    fn stuck_peer_does_not_flag_rig_mates() {
        let mut data = rig(8, 120, &EFFICIENCIES, 0, 1.0, 0, 6);
        let frozen = data[5].1[120].value;
        for point in &mut data[5].1[120..] {
            point.value = frozen;
        }
        let anomalies = detect_peer_excess(&group(&data), &PeerConfig::default()).unwrap();
        assert!(anomalies.iter().all(|a| a.channel.as_str() == "gpu5"), "{anomalies:?}");
    }

    #[test]
    fn idle_rig_is_not_flagged() {
        let mut rng = StdRng::seed_from_u64(9);
        let data: Vec<_> = (0..6)
            .map(|gpu| {
                let power: Vec<Point> = (0..240).map(|s| Point::new(s * 30_000, EFFICIENCIES[gpu] * 70.0 + rng.random_range(-2.0..2.0))).collect();
                let load: Vec<Point> = (0..240).map(|s| Point::new(s * 30_000, 0.0)).collect();
                (gpu_key("rig-04", gpu), power, load)
            })
            .collect();
        assert!(detect_peer_excess(&group(&data), &PeerConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn lone_device_and_empty_input_give_nothing() {
        let data = rig(1, 60, &EFFICIENCIES, 0, 2.0, 0, 3);
        assert!(detect_peer_excess(&group(&data), &PeerConfig::default()).unwrap().is_empty());
        assert!(detect_peer_excess(&[], &PeerConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn nan_and_unsorted_input() {
        let mut data = rig(4, 60, &EFFICIENCIES, 0, 1.0, 0, 4);
        data[1].1[10].value = f64::NAN;
        assert!(detect_peer_excess(&group(&data), &PeerConfig::default()).unwrap().is_empty());
        data[2].2.swap(3, 4);
        let error = detect_peer_excess(&group(&data), &PeerConfig::default()).unwrap_err();
        assert!(matches!(error, InputError::UnsortedTimes { index: 4, .. }), "{error}");
    }
}
