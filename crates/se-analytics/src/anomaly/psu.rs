//! Wall meter against components: power lost between the wall and the GPUs
//! (power supply conversion loss plus the rest of the rig: CPU, fans,
//! board), and its growth.
//!
//! Per bucket, the loss is the mean wall power minus the sum of the GPUs'
//! mean powers, counted only where every GPU has readings. Loss grows with
//! load (a supply converts at 88 to 94 % depending on load), so a rise of the
//! loss share alone would flag every change of load. The detector therefore
//! fits `loss = a + b x gpu_sum` on the baseline buckets and measures how much
//! more than that line the recent buckets lose, as a share of wall power.
//! When the GPU sum hardly varies in the baseline, the line goes through the
//! origin (`loss = b x gpu_sum`). Buckets that hold any reading of a run of
//! 3 or more equal consecutive readings of one GPU are left out, because a
//! stuck GPU sensor makes the balance wrong without any loss. The run may
//! start in the middle of a bucket or cross into the next one, so the whole
//! run counts, not only the buckets it fills.

use std::collections::BTreeSet;

use super::stats::{bucket_means, median};
use super::{check_setting, check_sorted, Anomaly, AnomalyKind, AnomalyReason, InputError, Point, Segment, SeriesKey, Severity};

/// Settings of [`detect_psu_loss`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PsuLossConfig {
    pub bucket_ms: i64,
    /// Buckets at the start of the data that set the expected loss.
    pub baseline_buckets: usize,
    /// Buckets at the end of the data that are tested.
    pub recent_buckets: usize,
    /// Median excess loss, in percentage points of wall power, from which the rig is flagged.
    pub warning_pp: f64,
    pub critical_pp: f64,
}

impl Default for PsuLossConfig {
    fn default() -> Self {
        Self { bucket_ms: 5 * 60_000, baseline_buckets: 12, recent_buckets: 4, warning_pp: 2.5, critical_pp: 6.0 }
    }
}

impl PsuLossConfig {
    fn validate(&self) -> Result<(), InputError> {
        check_setting("bucket_ms", self.bucket_ms as f64, 1.0, f64::MAX, "1 ms or more, such as 300000")?;
        check_setting("warning_pp", self.warning_pp, 0.1, 100.0, "percentage points from 0.1 to 100, such as 2.5")?;
        check_setting("critical_pp", self.critical_pp, self.warning_pp, 100.0, "not below warning_pp, such as 6")?;
        if self.baseline_buckets < 3 || self.recent_buckets == 0 {
            let value = format!("{} and {}", self.baseline_buckets, self.recent_buckets);
            return Err(InputError::InvalidSetting { name: "baseline_buckets/recent_buckets", value, expected: "3 or more baseline buckets and 1 or more recent ones" });
        }
        Ok(())
    }
}

/// Flags a rig whose loss between the wall meter (`wall`, reported on
/// `wall_key`) and its GPUs (`gpus`, power series) grew. The score is the
/// median excess divided by `warning_pp`.
pub fn detect_psu_loss(wall_key: &SeriesKey, wall: &[Point], gpus: &[&[Point]], config: &PsuLossConfig) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    check_sorted(wall_key, wall)?;
    for gpu in gpus {
        check_sorted(wall_key, gpu)?;
    }
    if gpus.is_empty() {
        return Ok(Vec::new());
    }

    let gpu_means: Vec<_> = gpus.iter().map(|gpu| bucket_means(gpu, config.bucket_ms)).collect();
    let frozen: BTreeSet<i64> = gpus.iter().flat_map(|gpu| repeat_buckets(gpu, config.bucket_ms)).collect();
    // (bucket start, wall W, GPU sum W) where the wall and every GPU have
    // data and no GPU repeats one value 3 times in a row. A stuck sensor would
    // turn its error into a false loss, and the stuck-sensor detector reports it.
    let buckets: Vec<(i64, f64, f64)> = bucket_means(wall, config.bucket_ms)
        .into_iter()
        .filter(|(start, wall)| *wall > 0.0 && !frozen.contains(start))
        .filter_map(|(start, wall)| {
            let sum: Option<f64> = gpu_means.iter().map(|means| means.get(&start).copied()).sum();
            sum.map(|sum| (start, wall, sum))
        })
        .collect();
    if buckets.len() < config.baseline_buckets + config.recent_buckets {
        return Ok(Vec::new());
    }

    let baseline = &buckets[..config.baseline_buckets];
    let recent = &buckets[buckets.len() - config.recent_buckets..];
    let (intercept, slope) = expected_loss_line(baseline);
    let excess: Vec<f64> = recent.iter().map(|(_, wall, sum)| 100.0 * (wall - sum - (intercept + slope * sum)) / wall).collect();
    let share = |b: &[(i64, f64, f64)]| median(&b.iter().map(|(_, wall, sum)| 100.0 * (wall - sum) / wall).collect::<Vec<_>>()).unwrap_or(0.0);
    let Some(excess_pct) = median(&excess) else {
        return Ok(Vec::new());
    };
    if excess_pct < config.warning_pp {
        return Ok(Vec::new());
    }
    let severity = if excess_pct >= config.critical_pp { Severity::Critical } else { Severity::Warning };
    let segment = Segment::new(recent[0].0, recent[recent.len() - 1].0 + config.bucket_ms - 1);
    let reason = AnomalyReason::PsuLoss { baseline_share_pct: share(baseline), recent_share_pct: share(recent), excess_pct };
    Ok(vec![Anomaly::new(wall_key, AnomalyKind::PsuLoss, severity, excess_pct / config.warning_pp, segment, reason)])
}

/// Starts of the buckets that hold a reading of a run of 3 or more equal
/// consecutive finite readings. NaN readings between them do not break a run.
// NOTE: a GPU whose sensor legitimately reports one exact value for minutes
// (such as 0 W while powered off) hides every bucket of that time from this
// detector, which then reports nothing rather than a false loss.
fn repeat_buckets(points: &[Point], bucket_ms: i64) -> BTreeSet<i64> {
    let points = super::finite(points);
    let mut buckets = BTreeSet::new();
    let mut start = 0;
    while start < points.len() {
        let mut end = start + 1;
        while end < points.len() && points[end].value == points[start].value {
            end += 1;
        }
        if end - start >= 3 {
            buckets.extend(points[start..end].iter().map(|point| point.ts_ms.div_euclid(bucket_ms) * bucket_ms));
        }
        start = end;
    }
    buckets
}

/// Fits `loss = intercept + slope x gpu_sum` by least squares on the buckets,
/// or through the origin when the GPU sum varies by less than 3 %.
fn expected_loss_line(buckets: &[(i64, f64, f64)]) -> (f64, f64) {
    let n = buckets.len() as f64;
    let mean_sum = buckets.iter().map(|b| b.2).sum::<f64>() / n;
    let variance = buckets.iter().map(|b| (b.2 - mean_sum).powi(2)).sum::<f64>() / n;
    if mean_sum > 0.0 && variance.sqrt() >= 0.03 * mean_sum {
        let pairs: Vec<(f64, f64)> = buckets.iter().map(|(_, wall, sum)| (*sum, wall - sum)).collect();
        if let Some(line) = super::stats::fit_line(&pairs) {
            return line;
        }
    }
    let ratios: Vec<f64> = buckets.iter().filter(|b| b.2 > 0.0).map(|(_, wall, sum)| (wall - sum) / sum).collect();
    (0.0, median(&ratios).unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::key;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use se_core::{Lang, Metric};

    /// Generates a rig of 4 GPUs sampled every 30 s for 3 h. The wall meter
    /// reads `(gpus + 60 W) / efficiency`, where the supply's efficiency is
    /// 0.92 until `from_min` and then falls by `fall_per_hour` each hour.
    fn rig(fall_per_hour: f64, from_min: i64, seed: u64) -> (Vec<Point>, Vec<Vec<Point>>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut wall = Vec::new();
        let mut gpus = vec![Vec::new(); 4];
        for step in 0..360 {
            let ts = step * 30_000;
            let mut sum = 0.0;
            for (index, gpu) in gpus.iter_mut().enumerate() {
                let busy = (step / 50 + index as i64) % 3 != 0;
                let watts = if busy { 250.0 + rng.random_range(-25.0..25.0) } else { 70.0 + rng.random_range(-2.0..2.0) };
                gpu.push(Point::new(ts, watts));
                sum += watts;
            }
            let minutes = ts as f64 / 60_000.0;
            let fall = if minutes >= from_min as f64 { fall_per_hour * (minutes - from_min as f64) / 60.0 } else { 0.0 };
            let efficiency = 0.92 - fall;
            wall.push(Point::new(ts, (sum + 60.0) / efficiency * (1.0 + rng.random_range(-0.005..0.005))));
        }
        (wall, gpus)
    }

    #[test]
    fn growing_loss_is_flagged() {
        let wall_key = key("rig-09", "wall", Metric::Power);
        let (wall, gpus) = rig(0.04, 120, 1);
        let gpus: Vec<&[Point]> = gpus.iter().map(Vec::as_slice).collect();
        let anomalies = detect_psu_loss(&wall_key, &wall, &gpus, &PsuLossConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].kind, AnomalyKind::PsuLoss);
        let AnomalyReason::PsuLoss { recent_share_pct, baseline_share_pct, excess_pct } = anomalies[0].reason else { panic!() };
        assert!(recent_share_pct > baseline_share_pct + 1.0, "{:?}", anomalies[0].reason);
        assert!(excess_pct >= 2.5, "{excess_pct}");
        let message = anomalies[0].message(Lang::En);
        assert!(message.starts_with("Channel wall of rig-09: the power lost between the wall meter and the GPUs grew from "), "{message}");
        assert!(anomalies[0].message(Lang::Fr).contains("la puissance perdue entre le compteur au mur et les GPU"));
    }

    #[test]
    fn steady_loss_with_changing_load_is_not_flagged() {
        let wall_key = key("rig-09", "wall", Metric::Power);
        for seed in 0..20 {
            let (wall, gpus) = rig(0.0, 0, seed);
            let gpus: Vec<&[Point]> = gpus.iter().map(Vec::as_slice).collect();
            let anomalies = detect_psu_loss(&wall_key, &wall, &gpus, &PsuLossConfig::default()).unwrap();
            assert!(anomalies.is_empty(), "seed {seed}: {anomalies:?}");
        }
    }

    #[test]
    fn stuck_gpu_sensor_is_not_taken_for_loss() {
        let wall_key = key("rig-09", "wall", Metric::Power);
        let (wall, mut gpus) = rig(0.0, 0, 4);
        // The sensor sticks at an idle reading while the GPU keeps switching to busy.
        for point in &mut gpus[1][200..] {
            point.value = 70.0;
        }
        let gpus: Vec<&[Point]> = gpus.iter().map(Vec::as_slice).collect();
        assert!(detect_psu_loss(&wall_key, &wall, &gpus, &PsuLossConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn mid_bucket_freeze_is_not_loss() {
        // GPU 1 idles, its sensor freezes at step 141, and the GPU turns busy at
        // step 142. The data ends at step 151, so the last two 5-min buckets
        // (steps 140-149 and 150-151) both mix frozen idle readings with busy power.
        let wall_key = key("rig-09", "wall", Metric::Power);
        for seed in 0..10 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut wall = Vec::new();
            let mut gpus = vec![Vec::new(); 4];
            let mut frozen = None;
            for step in 0..152 {
                let ts = step * 30_000;
                let mut true_sum = 0.0;
                for (index, gpu) in gpus.iter_mut().enumerate() {
                    let busy = index != 1 || step >= 142;
                    let watts = if busy { 250.0 + rng.random_range(-25.0..25.0) } else { 70.0 + rng.random_range(-2.0..2.0) };
                    let watts: f64 = (watts * 10.0_f64).round() / 10.0;
                    true_sum += watts;
                    let reported = if index == 1 && step >= 141 { *frozen.get_or_insert(watts) } else { watts };
                    gpu.push(Point::new(ts, reported));
                }
                wall.push(Point::new(ts, (true_sum + 60.0) / 0.92 * (1.0 + rng.random_range(-0.003..0.003))));
            }
            let gpus: Vec<&[Point]> = gpus.iter().map(Vec::as_slice).collect();
            let anomalies = detect_psu_loss(&wall_key, &wall, &gpus, &PsuLossConfig::default()).unwrap();
            assert!(anomalies.is_empty(), "seed {seed}: {anomalies:?}");
        }
    }

    #[test]
    fn missing_gpu_or_short_data_give_nothing() {
        let wall_key = key("rig-09", "wall", Metric::Power);
        let (wall, gpus) = rig(0.1, 30, 2);
        assert!(detect_psu_loss(&wall_key, &wall, &[], &PsuLossConfig::default()).unwrap().is_empty());
        let empty: Vec<Point> = Vec::new();
        assert!(detect_psu_loss(&wall_key, &wall, &[&gpus[0], &empty], &PsuLossConfig::default()).unwrap().is_empty());
        assert!(detect_psu_loss(&wall_key, &wall[..40], &[&gpus[0][..40]], &PsuLossConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn nan_and_unsorted_input() {
        let wall_key = key("rig-09", "wall", Metric::Power);
        let (mut wall, gpus) = rig(0.0, 0, 3);
        wall[7].value = f64::NAN;
        let mut slices: Vec<&[Point]> = gpus.iter().map(Vec::as_slice).collect();
        assert!(detect_psu_loss(&wall_key, &wall, &slices, &PsuLossConfig::default()).unwrap().is_empty());
        let unsorted = vec![Point::new(5, 1.0), Point::new(1, 1.0)];
        slices.push(&unsorted);
        assert!(detect_psu_loss(&wall_key, &wall, &slices, &PsuLossConfig::default()).is_err());
    }
}
