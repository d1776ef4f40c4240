//! Readings far from a forecast, by robust residual score.
//!
//! The residual of a reading is its value minus the forecast for the same
//! instant. Its score is the distance of the residual from the median
//! residual, in units of the scaled median absolute deviation (MAD x 1.4826,
//! which equals the standard deviation for normal noise). The median and the
//! MAD ignore up to half of the points being anomalous, unlike the mean and
//! the standard deviation, which one large spike inflates until it hides itself.

use std::cmp::Ordering;

use super::stats::{mad, median, MAD_TO_SIGMA};
use super::{check_setting, check_sorted, Anomaly, AnomalyKind, AnomalyReason, InputError, Point, Segment, SeriesKey, Severity};

/// Side of the forecast on which readings count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    /// Only readings above the forecast, such as power spikes.
    Above,
    /// Only readings below the forecast.
    Below,
}

/// Settings of [`detect_forecast_deviation`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResidualConfig {
    /// Score from which a reading is flagged, as a warning.
    pub warning_score: f64,
    /// Score from which a segment is critical.
    pub critical_score: f64,
    /// Minimum number of readings with a forecast to estimate the residual
    /// spread. With fewer, the detector returns nothing.
    pub min_points: usize,
    /// Lower bound of the residual scale, as a fraction of the median absolute
    /// forecast, so a nearly perfect forecast does not turn rounding into anomalies.
    pub min_relative_scale: f64,
    /// Lower bound of the residual scale, in the metric's unit.
    pub min_scale: f64,
    pub direction: Direction,
}

impl Default for ResidualConfig {
    fn default() -> Self {
        Self {
            warning_score: 5.0,
            critical_score: 8.0,
            min_points: 12,
            min_relative_scale: 0.01,
            min_scale: 0.0,
            direction: Direction::Both,
        }
    }
}

impl ResidualConfig {
    fn validate(&self) -> Result<(), InputError> {
        check_setting("warning_score", self.warning_score, 0.5, 1e6, "a score from 0.5, such as 5")?;
        check_setting("critical_score", self.critical_score, self.warning_score, 1e6, "a score not below warning_score, such as 8")?;
        check_setting("min_relative_scale", self.min_relative_scale, 0.0, 1.0, "a fraction from 0 to 1, such as 0.01")?;
        check_setting("min_scale", self.min_scale, 0.0, f64::MAX, "0 or more, in the metric's unit")?;
        if self.min_points < 3 {
            return Err(InputError::InvalidSetting { name: "min_points", value: self.min_points.to_string(), expected: "3 or more, such as 12" });
        }
        Ok(())
    }
}

/// Flags readings of `actual` far from `forecast`. Readings and forecast
/// values are paired by equal timestamps; readings without a forecast are
/// ignored. Consecutive flagged pairs form one anomaly, scored by its
/// largest score.
pub fn detect_forecast_deviation(key: &SeriesKey, actual: &[Point], forecast: &[Point], config: &ResidualConfig) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    check_sorted(key, actual)?;
    check_sorted(key, forecast)?;

    let pairs = pair_by_time(actual, forecast);
    if pairs.len() < config.min_points {
        return Ok(Vec::new());
    }
    let residuals: Vec<f64> = pairs.iter().map(|(_, value, predicted)| value - predicted).collect();
    let (Some(center), Some(spread)) = (median(&residuals), mad(&residuals)) else {
        return Ok(Vec::new());
    };
    let typical_level = median(&pairs.iter().map(|pair| pair.2.abs()).collect::<Vec<_>>()).unwrap_or(0.0);
    let scale = (spread * MAD_TO_SIGMA).max(config.min_relative_scale * typical_level).max(config.min_scale).max(f64::MIN_POSITIVE);

    let scores: Vec<f64> = residuals
        .iter()
        .map(|residual| {
            let signed = (residual - center) / scale;
            match config.direction {
                Direction::Both => signed.abs(),
                Direction::Above => signed.max(0.0),
                Direction::Below => (-signed).max(0.0),
            }
        })
        .collect();

    let mut anomalies = Vec::new();
    let mut index = 0;
    while index < pairs.len() {
        if scores[index] < config.warning_score {
            index += 1;
            continue;
        }
        let start = index;
        while index < pairs.len() && scores[index] >= config.warning_score {
            index += 1;
        }
        let worst = (start..index).max_by(|a, b| scores[*a].partial_cmp(&scores[*b]).unwrap_or(Ordering::Equal)).unwrap_or(start);
        let score = scores[worst];
        let severity = if score >= config.critical_score { Severity::Critical } else { Severity::Warning };
        let reason = AnomalyReason::ForecastDeviation { actual: pairs[worst].1, forecast: pairs[worst].2, score, points: index - start };
        let segment = Segment::new(pairs[start].0, pairs[index - 1].0);
        anomalies.push(Anomaly::new(key, AnomalyKind::ForecastDeviation, severity, score, segment, reason));
    }
    Ok(anomalies)
}

/// Pairs readings and forecast values with the same timestamp and finite
/// values, as (time, actual, forecast). Both inputs are sorted.
fn pair_by_time(actual: &[Point], forecast: &[Point]) -> Vec<(i64, f64, f64)> {
    let mut pairs = Vec::with_capacity(actual.len().min(forecast.len()));
    let (mut i, mut j) = (0, 0);
    while i < actual.len() && j < forecast.len() {
        match actual[i].ts_ms.cmp(&forecast[j].ts_ms) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                if actual[i].value.is_finite() && forecast[j].value.is_finite() {
                    pairs.push((actual[i].ts_ms, actual[i].value, forecast[j].value));
                }
                i += 1;
                j += 1;
            }
        }
    }
    pairs
}

/// Computes a simple forecast for series without a model: the median of the finite
/// values among the `half_window` points on each side of each point and the
/// point itself. One spike never moves a median of 3 or more values, so the
/// spike keeps its full residual. Non-finite points get a NaN forecast.
pub fn rolling_median(points: &[Point], half_window: usize) -> Vec<Point> {
    points
        .iter()
        .enumerate()
        .map(|(index, point)| {
            let from = index.saturating_sub(half_window);
            let to = (index + half_window + 1).min(points.len());
            let values: Vec<f64> = points[from..to].iter().map(|p| p.value).collect();
            let value = if point.value.is_finite() { median(&values).unwrap_or(f64::NAN) } else { f64::NAN };
            Point::new(point.ts_ms, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::{gpu_key, noisy_series};
    use se_core::Lang;

    #[test]
    fn spike_above_forecast_is_flagged() {
        let key = gpu_key("rig-01", 3);
        let mut actual = noisy_series(0, 60_000, 200, 250.0, 10.0, 1);
        let forecast: Vec<Point> = actual.iter().map(|p| Point::new(p.ts_ms, 250.0)).collect();
        actual[120].value = 400.0;
        let anomalies = detect_forecast_deviation(&key, &actual, &forecast, &ResidualConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        let anomaly = &anomalies[0];
        assert_eq!(anomaly.kind, AnomalyKind::ForecastDeviation);
        assert_eq!(anomaly.segment, Segment::new(120 * 60_000, 120 * 60_000));
        assert_eq!(anomaly.severity, Severity::Critical);
        let message = anomaly.message(Lang::En);
        assert!(message.contains("400.0 W where 250.0 W was forecast"), "{message}");
        let message = anomaly.message(Lang::Fr);
        assert!(message.contains("400,0 W pour 250,0 W prévus"), "{message}");
    }

    #[test]
    fn normal_noise_is_not_flagged() {
        let key = gpu_key("rig-01", 0);
        for seed in 0..20 {
            let actual = noisy_series(0, 60_000, 500, 250.0, 10.0, seed);
            let forecast: Vec<Point> = actual.iter().map(|p| Point::new(p.ts_ms, 250.0)).collect();
            let anomalies = detect_forecast_deviation(&key, &actual, &forecast, &ResidualConfig::default()).unwrap();
            assert!(anomalies.is_empty(), "seed {seed}: {anomalies:?}");
        }
    }

    #[test]
    fn consecutive_flags_form_one_segment() {
        let key = gpu_key("rig-01", 0);
        let mut actual = noisy_series(0, 1_000, 100, 100.0, 2.0, 4);
        let forecast: Vec<Point> = actual.iter().map(|p| Point::new(p.ts_ms, 100.0)).collect();
        for point in &mut actual[40..45] {
            point.value = 40.0;
        }
        let anomalies = detect_forecast_deviation(&key, &actual, &forecast, &ResidualConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].segment, Segment::new(40_000, 44_000));
        assert_eq!(anomalies[0].reason, AnomalyReason::ForecastDeviation { actual: 40.0, forecast: 100.0, score: anomalies[0].score, points: 5 });
    }

    #[test]
    fn direction_above_ignores_dips() {
        let key = gpu_key("rig-01", 0);
        let mut actual = noisy_series(0, 1_000, 100, 100.0, 2.0, 5);
        let forecast: Vec<Point> = actual.iter().map(|p| Point::new(p.ts_ms, 100.0)).collect();
        actual[50].value = 10.0;
        let config = ResidualConfig { direction: Direction::Above, ..ResidualConfig::default() };
        assert!(detect_forecast_deviation(&key, &actual, &forecast, &config).unwrap().is_empty());
    }

    #[test]
    fn empty_and_short_series_give_nothing() {
        let key = gpu_key("rig-01", 0);
        assert!(detect_forecast_deviation(&key, &[], &[], &ResidualConfig::default()).unwrap().is_empty());
        let short = noisy_series(0, 1_000, 5, 1.0, 0.1, 1);
        assert!(detect_forecast_deviation(&key, &short, &short, &ResidualConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn nan_readings_are_skipped() {
        let key = gpu_key("rig-01", 0);
        let mut actual = noisy_series(0, 1_000, 100, 100.0, 2.0, 6);
        let forecast: Vec<Point> = actual.iter().map(|p| Point::new(p.ts_ms, 100.0)).collect();
        actual[10].value = f64::NAN;
        actual[11].value = f64::INFINITY;
        assert!(detect_forecast_deviation(&key, &actual, &forecast, &ResidualConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn unsorted_times_are_rejected() {
        let key = gpu_key("rig-01", 0);
        let actual = vec![Point::new(2_000, 1.0), Point::new(1_000, 1.0)];
        let error = detect_forecast_deviation(&key, &actual, &[], &ResidualConfig::default()).unwrap_err();
        assert_eq!(error, InputError::UnsortedTimes { series: "rig-01/gpu0/power_w".into(), index: 1, ts_ms: 1_000, previous_ms: 2_000 });
        assert!(error.to_string().contains("sort the points by time"), "{error}");
    }

    #[test]
    fn invalid_setting_is_named() {
        let key = gpu_key("rig-01", 0);
        let config = ResidualConfig { warning_score: f64::NAN, ..ResidualConfig::default() };
        let error = detect_forecast_deviation(&key, &[], &[], &config).unwrap_err();
        assert!(error.to_string().contains("warning_score = NaN"), "{error}");
    }

    #[test]
    fn rolling_median_keeps_spike_residual() {
        let mut points = noisy_series(0, 1_000, 50, 100.0, 0.0, 1);
        points[25].value = 500.0;
        let baseline = rolling_median(&points, 2);
        assert_eq!(baseline[25].value, 100.0);
        assert_eq!(baseline.len(), points.len());
    }
}
