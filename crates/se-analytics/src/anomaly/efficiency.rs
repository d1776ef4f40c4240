//! Efficiency drift: hashrate per watt falling over days compared with the
//! device's own past.
//!
//! Hashrate and power readings are paired by timestamp. Per bucket (a day by
//! default), efficiency is the sum of hashrate over the sum of power, which
//! weights busy readings by their power. Readings below `idle_fraction` of
//! the median hashrate are left out, so an idle hour does not look like an
//! efficiency loss. The median of the first `baseline_buckets` buckets is
//! compared with the median of the last `recent_buckets`.

use std::collections::BTreeMap;
use std::cmp::Ordering;

use se_core::TimestampMs;

use super::stats::median;
use super::{check_setting, check_sorted, Anomaly, AnomalyKind, AnomalyReason, InputError, Point, Segment, SeriesKey, Severity};

/// Settings of [`detect_efficiency_drift`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficiencyDriftConfig {
    /// Bucket width; one UTC day by default.
    pub bucket_ms: i64,
    pub baseline_buckets: usize,
    pub recent_buckets: usize,
    /// Fewest paired busy readings for a bucket to count.
    pub min_points_per_bucket: usize,
    /// Readings whose hashrate is below this fraction of the median hashrate are idle.
    pub idle_fraction: f64,
    /// Drop of hashrate per watt, in percent, from which the device is flagged.
    pub warning_drop_pct: f64,
    pub critical_drop_pct: f64,
}

impl Default for EfficiencyDriftConfig {
    fn default() -> Self {
        Self {
            bucket_ms: 86_400_000,
            baseline_buckets: 3,
            recent_buckets: 2,
            min_points_per_bucket: 12,
            idle_fraction: 0.2,
            warning_drop_pct: 5.0,
            critical_drop_pct: 10.0,
        }
    }
}

impl EfficiencyDriftConfig {
    fn validate(&self) -> Result<(), InputError> {
        check_setting("bucket_ms", self.bucket_ms as f64, 1.0, f64::MAX, "1 ms or more, such as 86400000 for a day")?;
        check_setting("idle_fraction", self.idle_fraction, 0.0, 1.0, "a fraction from 0 to 1, such as 0.2")?;
        check_setting("warning_drop_pct", self.warning_drop_pct, 0.1, 100.0, "a percentage from 0.1 to 100, such as 5")?;
        check_setting("critical_drop_pct", self.critical_drop_pct, self.warning_drop_pct, 100.0, "not below warning_drop_pct, such as 10")?;
        if self.baseline_buckets == 0 || self.recent_buckets == 0 {
            let value = format!("{} and {}", self.baseline_buckets, self.recent_buckets);
            return Err(InputError::InvalidSetting { name: "baseline_buckets/recent_buckets", value, expected: "1 bucket or more each" });
        }
        Ok(())
    }
}

/// Flags a drop of hashrate per watt. `key` is the series the anomaly is
/// reported on, normally the hashrate series. The score is the drop divided
/// by `warning_drop_pct`.
pub fn detect_efficiency_drift(key: &SeriesKey, hashrate: &[Point], power: &[Point], config: &EfficiencyDriftConfig) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    check_sorted(key, hashrate)?;
    check_sorted(key, power)?;

    let pairs = pair_finite(hashrate, power);
    let Some(typical_hashrate) = median(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()) else {
        return Ok(Vec::new());
    };
    let idle_below = config.idle_fraction * typical_hashrate;

    let mut sums: BTreeMap<TimestampMs, (f64, f64, usize)> = BTreeMap::new();
    for (ts_ms, hashes, watts) in pairs {
        if hashes < idle_below || watts <= 0.0 {
            continue;
        }
        let entry = sums.entry(ts_ms.div_euclid(config.bucket_ms) * config.bucket_ms).or_insert((0.0, 0.0, 0));
        entry.0 += hashes;
        entry.1 += watts;
        entry.2 += 1;
    }
    let buckets: Vec<(TimestampMs, f64)> = sums
        .into_iter()
        .filter(|(_, (_, _, count))| *count >= config.min_points_per_bucket)
        .map(|(start, (hashes, watts, _))| (start, hashes / watts))
        .collect();
    if buckets.len() < config.baseline_buckets + config.recent_buckets {
        return Ok(Vec::new());
    }

    let baseline_values: Vec<f64> = buckets[..config.baseline_buckets].iter().map(|b| b.1).collect();
    let recent = &buckets[buckets.len() - config.recent_buckets..];
    let recent_values: Vec<f64> = recent.iter().map(|b| b.1).collect();
    let (Some(baseline), Some(latest)) = (median(&baseline_values), median(&recent_values)) else {
        return Ok(Vec::new());
    };
    if baseline <= 0.0 {
        return Ok(Vec::new());
    }
    let drop_pct = 100.0 * (1.0 - latest / baseline);
    if drop_pct < config.warning_drop_pct {
        return Ok(Vec::new());
    }
    let severity = if drop_pct >= config.critical_drop_pct { Severity::Critical } else { Severity::Warning };
    let segment = Segment::new(recent[0].0, recent[recent.len() - 1].0 + config.bucket_ms - 1);
    let reason = AnomalyReason::EfficiencyDrift { baseline, recent: latest, drop_pct };
    Ok(vec![Anomaly::new(key, AnomalyKind::EfficiencyDrift, severity, drop_pct / config.warning_drop_pct, segment, reason)])
}

/// Pairs `a` and `b` by equal timestamps, keeping finite values, as (time, a, b).
pub(crate) fn pair_finite(a: &[Point], b: &[Point]) -> Vec<(TimestampMs, f64, f64)> {
    let mut pairs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].ts_ms.cmp(&b[j].ts_ms) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                if a[i].value.is_finite() && b[j].value.is_finite() {
                    pairs.push((a[i].ts_ms, a[i].value, b[j].value));
                }
                i += 1;
                j += 1;
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::key;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use se_core::{Lang, Metric};

    const DAY: i64 = 86_400_000;

    /// Ten days of hourly readings: 60 MH/s at about 200 W, with the power
    /// multiplied by `1 + daily_rise x day` from day `from_day`, and idle
    /// hours every night.
    fn days(daily_rise: f64, from_day: i64, seed: u64) -> (Vec<Point>, Vec<Point>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut hashrate = Vec::new();
        let mut power = Vec::new();
        for hour in 0..240 {
            let ts = hour * 3_600_000;
            let day = hour / 24;
            let idle = hour % 24 < 3;
            let factor = if day >= from_day { 1.0 + daily_rise * (day - from_day + 1) as f64 } else { 1.0 };
            let hashes = if idle { 0.0 } else { 60.0 + rng.random_range(-1.5..1.5) };
            let watts = if idle { 70.0 } else { (200.0 + rng.random_range(-8.0..8.0)) * factor };
            hashrate.push(Point::new(ts, hashes));
            power.push(Point::new(ts, watts));
        }
        (hashrate, power)
    }

    #[test]
    fn falling_efficiency_is_flagged() {
        let key = key("rig-05", "gpu2", Metric::Hashrate);
        let (hashrate, power) = days(0.03, 5, 1);
        let anomalies = detect_efficiency_drift(&key, &hashrate, &power, &EfficiencyDriftConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].segment, Segment::new(8 * DAY, 10 * DAY - 1));
        let AnomalyReason::EfficiencyDrift { baseline, drop_pct, .. } = anomalies[0].reason else { panic!() };
        assert!((baseline - 0.3).abs() < 0.01, "{baseline}");
        assert!((10.0..16.0).contains(&drop_pct), "{drop_pct}");
        assert_eq!(anomalies[0].severity, Severity::Critical);
        let message = anomalies[0].message(Lang::En);
        assert!(message.contains("hashrate per watt fell by 1"), "{message}");
        assert!(anomalies[0].message(Lang::Fr).contains("le hashrate par watt a baissé de 1"));
    }

    #[test]
    fn steady_efficiency_with_idle_nights_is_not_flagged() {
        let key = key("rig-05", "gpu2", Metric::Hashrate);
        for seed in 0..20 {
            let (hashrate, power) = days(0.0, 0, seed);
            let anomalies = detect_efficiency_drift(&key, &hashrate, &power, &EfficiencyDriftConfig::default()).unwrap();
            assert!(anomalies.is_empty(), "seed {seed}: {anomalies:?}");
        }
    }

    #[test]
    fn too_few_days_give_nothing() {
        let key = key("rig-05", "gpu2", Metric::Hashrate);
        let (hashrate, power) = days(0.05, 1, 2);
        let config = EfficiencyDriftConfig::default();
        assert!(detect_efficiency_drift(&key, &hashrate[..96], &power[..96], &config).unwrap().is_empty());
        assert!(detect_efficiency_drift(&key, &[], &[], &config).unwrap().is_empty());
    }

    #[test]
    fn nan_and_unsorted_input() {
        let key = key("rig-05", "gpu2", Metric::Hashrate);
        let (mut hashrate, mut power) = days(0.0, 0, 3);
        hashrate[30].value = f64::NAN;
        power[31].value = f64::NAN;
        assert!(detect_efficiency_drift(&key, &hashrate, &power, &EfficiencyDriftConfig::default()).unwrap().is_empty());
        power.swap(0, 1);
        assert!(detect_efficiency_drift(&key, &hashrate, &power, &EfficiencyDriftConfig::default()).is_err());
    }
}
