//! Spikes: a reading far from the readings on both sides of it.
//!
//! Each reading is compared with the median of the `half_window` finite
//! readings before it and, separately, with the median of those after it,
//! each in units of that side's own scaled MAD. The spike score is the
//! smaller of the two, so a one-reading spike scores high while the first or
//! last reading of a new level (a GPU switching from busy to idle) matches
//! one side and scores low. Using each side's own scale keeps the threshold
//! right for a GPU whose noise changes with its load: about ±2 W idle and
//! ±25 W busy in the simulated fleet.

use se_core::Metric;

use super::residual::Direction;
use super::stats::{fit_line, mad, median, MAD_TO_SIGMA};
use super::{check_setting, check_sorted, Anomaly, AnomalyKind, AnomalyReason, InputError, Point, Segment, SeriesKey, Severity};

/// Settings of [`detect_spikes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeConfig {
    /// Readings on each side that form the reference.
    pub half_window: usize,
    /// Minimum number of finite readings on each side. The newest readings of a
    /// series therefore wait for this many successors before they are scored.
    pub min_side_points: usize,
    pub warning_score: f64,
    pub critical_score: f64,
    /// Lower bound of each side's scale, as a fraction of the level: the
    /// side's median for [`detect_spikes`], the power the load implies for
    /// [`detect_load_spikes`]. It keeps a flat side from turning rounding
    /// into spikes, and a busy reading amid idle ones from scoring against
    /// the idle noise. GPU power swings by about 10 % between readings while
    /// busy (the simulator is calibrated on such a trace), hence 5 %.
    pub min_relative_scale: f64,
    /// Lower bound of each side's scale, in the metric's unit.
    pub min_scale: f64,
    pub direction: Direction,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        Self {
            half_window: 10,
            min_side_points: 3,
            warning_score: 6.0,
            critical_score: 12.0,
            min_relative_scale: 0.05,
            min_scale: 0.0,
            direction: Direction::Both,
        }
    }
}

impl SpikeConfig {
    fn validate(&self) -> Result<(), InputError> {
        check_setting("warning_score", self.warning_score, 0.5, 1e6, "a score from 0.5, such as 6")?;
        check_setting("critical_score", self.critical_score, self.warning_score, 1e6, "a score not below warning_score, such as 12")?;
        check_setting("min_relative_scale", self.min_relative_scale, 0.0, 1.0, "a fraction from 0 to 1, such as 0.05")?;
        check_setting("min_scale", self.min_scale, 0.0, f64::MAX, "0 or more, in the metric's unit")?;
        if self.min_side_points < 2 || self.half_window < self.min_side_points {
            let value = format!("half_window {}, min_side_points {}", self.half_window, self.min_side_points);
            return Err(InputError::InvalidSetting { name: "half_window/min_side_points", value, expected: "2 <= min_side_points <= half_window, such as 3 and 10" });
        }
        Ok(())
    }
}

/// Flags readings far from both sides. Consecutive flagged readings form
/// one anomaly, scored by its largest score.
pub fn detect_spikes(key: &SeriesKey, points: &[Point], config: &SpikeConfig) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    check_sorted(key, points)?;
    let points = super::finite(points);
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    let scored = two_sided_scores(&values, None, config);

    let mut anomalies = Vec::new();
    for (start, end, at) in flagged_runs(&scored, config.warning_score) {
        let Some((score, before, after)) = scored[at] else { continue };
        let severity = if score >= config.critical_score { Severity::Critical } else { Severity::Warning };
        let reason = AnomalyReason::Spike { value: points[at].value, before, after, score, points: end - start + 1 };
        let segment = Segment::new(points[start].ts_ms, points[end].ts_ms);
        anomalies.push(Anomaly::new(key, AnomalyKind::Spike, severity, score, segment, reason));
    }
    Ok(anomalies)
}

/// Flags power readings far above or below what their load implies, such as
/// a GPU reading 175 W at 1 % utilization. Power and load are paired by
/// timestamp, and a least-squares line of power against load over the whole
/// series gives the power the load implies. The two-sided test of
/// [`detect_spikes`] then runs on the distance from that line. A GPU that is busy
/// for a few readings draws more but its load rises too, so it is not a spike.
pub fn detect_load_spikes(key: &SeriesKey, power: &[Point], load: &[Point], load_metric: Metric, config: &SpikeConfig) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    check_sorted(key, power)?;
    check_sorted(key, load)?;
    let pairs = super::pair_finite(power, load);
    let Some((intercept, slope)) = fit_line(&pairs.iter().map(|(_, watts, load)| (*load, *watts)).collect::<Vec<_>>()) else {
        return Ok(Vec::new());
    };
    let implied: Vec<f64> = pairs.iter().map(|(_, _, load)| intercept + slope * load).collect();
    let distances: Vec<f64> = pairs.iter().zip(&implied).map(|((_, watts, _), implied)| watts - implied).collect();
    let scored = two_sided_scores(&distances, Some(&implied), config);

    let mut anomalies = Vec::new();
    for (start, end, at) in flagged_runs(&scored, config.warning_score) {
        let Some((score, before, after)) = scored[at] else { continue };
        let severity = if score >= config.critical_score { Severity::Critical } else { Severity::Warning };
        let expected = implied[at] + (before + after) / 2.0;
        let reason = AnomalyReason::LoadSpike { value: pairs[at].1, expected, load: load_metric, score, points: end - start + 1 };
        let segment = Segment::new(pairs[start].0, pairs[end].0);
        anomalies.push(Anomaly::new(key, AnomalyKind::Spike, severity, score, segment, reason));
    }
    Ok(anomalies)
}

/// (score, median before, median after) of each value that has enough
/// values on both sides. `levels` sets the relative floor of the scale at
/// each value; without it, each side's median does.
fn two_sided_scores(values: &[f64], levels: Option<&[f64]>, config: &SpikeConfig) -> Vec<Option<(f64, f64, f64)>> {
    (0..values.len())
        .map(|index| {
            let before = &values[index.saturating_sub(config.half_window)..index];
            let after = &values[index + 1..(index + 1 + config.half_window).min(values.len())];
            if before.len() < config.min_side_points || after.len() < config.min_side_points {
                return None;
            }
            let level = levels.map(|levels| levels[index]);
            let (left_score, left_median) = side_score(values[index], before, level, config)?;
            let (right_score, right_median) = side_score(values[index], after, level, config)?;
            Some((left_score.min(right_score), left_median, right_median))
        })
        .collect()
}

/// Runs of consecutive values scored at `threshold` or more, as (first, last, highest-scoring) indexes.
fn flagged_runs(scored: &[Option<(f64, f64, f64)>], threshold: f64) -> Vec<(usize, usize, usize)> {
    let score = |index: usize| scored[index].map_or(0.0, |(score, _, _)| score);
    let mut runs = Vec::new();
    let mut index = 0;
    while index < scored.len() {
        if score(index) < threshold {
            index += 1;
            continue;
        }
        let start = index;
        let mut worst = start;
        while index < scored.len() && score(index) >= threshold {
            if score(index) > score(worst) {
                worst = index;
            }
            index += 1;
        }
        runs.push((start, index - 1, worst));
    }
    runs
}

/// Score of `value` against one side, in the configured direction, and the side's median.
fn side_score(value: f64, side: &[f64], level: Option<f64>, config: &SpikeConfig) -> Option<(f64, f64)> {
    let center = median(side)?;
    let spread = mad(side)?;
    let scale = (spread * MAD_TO_SIGMA).max(config.min_relative_scale * level.unwrap_or(center).abs()).max(config.min_scale).max(f64::MIN_POSITIVE);
    let signed = (value - center) / scale;
    let score = match config.direction {
        Direction::Both => signed.abs(),
        Direction::Above => signed.max(0.0),
        Direction::Below => (-signed).max(0.0),
    };
    Some((score, center))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::{gpu_key, noisy_series};
    use se_core::Lang;

    /// Busy (280 ± 25 W) for 200 readings, then idle (70 ± 2 W) for 200.
    fn busy_then_idle(seed: u64) -> Vec<Point> {
        let mut points = noisy_series(0, 30_000, 200, 280.0, 25.0, seed);
        points.extend(noisy_series(200 * 30_000, 30_000, 200, 70.0, 2.0, seed + 1_000));
        points
    }

    #[test]
    fn spike_on_idle_gpu_is_flagged() {
        let key = gpu_key("rig-01", 4);
        let mut points = busy_then_idle(1);
        points[300].value = 175.0;
        let found = detect_spikes(&key, &points, &SpikeConfig::default()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, AnomalyKind::Spike);
        assert_eq!(found[0].segment, Segment::new(300 * 30_000, 300 * 30_000));
        assert_eq!(found[0].severity, Severity::Critical);
        let message = found[0].message(Lang::En);
        assert!(message.starts_with("GPU 4 of rig-01: power jumped to 175.0 W for 1 reading, against about "), "{message}");
        assert!(found[0].message(Lang::Fr).contains("pic de la puissance à 175,0 W"));
    }

    #[test]
    fn spike_on_busy_gpu_is_flagged() {
        let key = gpu_key("rig-01", 4);
        let mut points = busy_then_idle(2);
        points[100].value = 700.0;
        let found = detect_spikes(&key, &points, &SpikeConfig::default()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].segment.start_ms, 100 * 30_000);
    }

    #[test]
    fn level_changes_and_noise_are_not_flagged() {
        let key = gpu_key("rig-01", 4);
        for seed in 0..30 {
            let mut points = busy_then_idle(seed);
            points.extend(noisy_series(400 * 30_000, 30_000, 100, 280.0, 25.0, seed + 2_000));
            let found = detect_spikes(&key, &points, &SpikeConfig::default()).unwrap();
            assert!(found.is_empty(), "seed {seed}: {found:?}");
        }
    }

    /// Generates an idle GPU (0 to 3 %, about 70 W) with short busy bursts (95 %, about 280 W).
    fn bursty_gpu(seed: u64) -> (Vec<Point>, Vec<Point>) {
        let power = noisy_series(0, 30_000, 300, 0.0, 2.0, seed);
        let mut load = Vec::new();
        let mut watts = Vec::new();
        for (index, noise) in power.iter().enumerate() {
            let busy = index % 37 < 2;
            let utilization = if busy { 95.0 } else { 1.5 + noise.value / 2.0 };
            load.push(Point::new(noise.ts_ms, utilization));
            watts.push(Point::new(noise.ts_ms, 67.0 + 2.2 * utilization + noise.value));
        }
        (watts, load)
    }

    #[test]
    fn load_spike_flagged_not_bursts() {
        let key = gpu_key("rig-01", 6);
        let (mut power, load) = bursty_gpu(7);
        assert!(detect_spikes(&key, &power, &SpikeConfig::default()).unwrap().len() > 3, "bursts look like spikes without the load");
        assert!(detect_load_spikes(&key, &power, &load, Metric::Utilization, &SpikeConfig::default()).unwrap().is_empty());
        power[150].value *= 2.5;
        let found = detect_load_spikes(&key, &power, &load, Metric::Utilization, &SpikeConfig::default()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].segment.start_ms, 150 * 30_000);
        let message = found[0].message(Lang::En);
        assert!(message.contains("for 1 reading while its utilization implies about 6"), "{message}");
        assert!(found[0].message(Lang::Fr).contains("alors que son utilisation correspond à environ 6"));
        assert!(detect_load_spikes(&key, &[], &[], Metric::Utilization, &SpikeConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn newest_readings_wait_for_successors() {
        let key = gpu_key("rig-01", 4);
        let mut points = noisy_series(0, 30_000, 50, 70.0, 2.0, 3);
        points[48].value = 175.0;
        assert!(detect_spikes(&key, &points, &SpikeConfig::default()).unwrap().is_empty());
        points[46].value = 175.0;
        assert_eq!(detect_spikes(&key, &points, &SpikeConfig::default()).unwrap().len(), 1);
    }

    #[test]
    fn dip_ignored_when_only_rises_count() {
        let key = gpu_key("rig-01", 4);
        let mut points = noisy_series(0, 30_000, 60, 280.0, 5.0, 4);
        points[30].value = 20.0;
        assert_eq!(detect_spikes(&key, &points, &SpikeConfig::default()).unwrap().len(), 1);
        let above = SpikeConfig { direction: Direction::Above, ..SpikeConfig::default() };
        assert!(detect_spikes(&key, &points, &above).unwrap().is_empty());
    }

    #[test]
    fn empty_nan_and_unsorted_input() {
        let key = gpu_key("rig-01", 4);
        assert!(detect_spikes(&key, &[], &SpikeConfig::default()).unwrap().is_empty());
        let mut points = noisy_series(0, 30_000, 60, 70.0, 2.0, 5);
        points[20].value = f64::NAN;
        points[21].value = f64::INFINITY;
        assert!(detect_spikes(&key, &points, &SpikeConfig::default()).unwrap().is_empty());
        points.swap(3, 4);
        assert!(matches!(detect_spikes(&key, &points, &SpikeConfig::default()), Err(InputError::UnsortedTimes { index: 4, .. })));
        let bad = SpikeConfig { min_side_points: 1, ..SpikeConfig::default() };
        assert!(detect_spikes(&key, &[], &bad).unwrap_err().to_string().contains("min_side_points 1"));
    }
}
