//! Values that cannot be true: NaN or infinite, below the minimum or above
//! the maximum of the metric or of the device (negative consumption, power
//! above the rating, utilization outside 0 to 100 %).

use se_core::Metric;

use super::{check_sorted, Anomaly, AnomalyKind, AnomalyReason, Bound, InputError, Point, Segment, SeriesKey, Severity};

/// Inclusive range of possible values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueLimits {
    pub min: f64,
    pub max: f64,
}

impl ValueLimits {
    /// Builds a range; returns an error when a bound is NaN or `min > max`.
    pub fn new(min: f64, max: f64) -> Result<Self, InputError> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(InputError::InvalidSetting {
                name: "limits",
                value: format!("[{min}, {max}]"),
                expected: "a minimum not above the maximum, such as [0, 350] for a GPU rated 350 W",
            });
        }
        Ok(Self { min, max })
    }

    /// Returns the physical range of the metric, as se-core defines it. Power
    /// has no bound there, because a meter may measure export.
    pub fn of_metric(metric: Metric) -> Self {
        let (min, max) = metric.range();
        Self { min, max }
    }

    /// Builds the range of a consumer's active power: 0 W to its rated maximum.
    pub fn consumer_power(rated_max_w: f64) -> Result<Self, InputError> {
        Self::new(0.0, rated_max_w)
    }
}

/// Flags runs of consecutive impossible values: one anomaly per run of NaN
/// or infinite values (a warning, score = the run's length), and one per
/// run beyond the same bound (critical, score = the distance of the worst
/// value from the bound, relative to the bound or to 1 when the bound is 0).
pub fn detect_impossible(key: &SeriesKey, points: &[Point], limits: &ValueLimits) -> Result<Vec<Anomaly>, InputError> {
    ValueLimits::new(limits.min, limits.max)?;
    check_sorted(key, points)?;

    let classify = |value: f64| -> Option<Problem> {
        if !value.is_finite() {
            Some(Problem::NotANumber)
        } else if value < limits.min {
            Some(Problem::Beyond(Bound::Min))
        } else if value > limits.max {
            Some(Problem::Beyond(Bound::Max))
        } else {
            None
        }
    };

    let mut anomalies = Vec::new();
    let mut index = 0;
    while index < points.len() {
        let Some(problem) = classify(points[index].value) else {
            index += 1;
            continue;
        };
        let start = index;
        while index < points.len() && classify(points[index].value) == Some(problem) {
            index += 1;
        }
        let run = &points[start..index];
        let segment = Segment::new(run[0].ts_ms, run[run.len() - 1].ts_ms);
        let anomaly = match problem {
            Problem::NotANumber => {
                let reason = AnomalyReason::NotANumber { count: run.len() };
                Anomaly::new(key, AnomalyKind::Impossible, Severity::Warning, run.len() as f64, segment, reason)
            }
            Problem::Beyond(bound) => {
                let (worst, limit) = match bound {
                    Bound::Min => (run.iter().map(|p| p.value).fold(f64::INFINITY, f64::min), limits.min),
                    Bound::Max => (run.iter().map(|p| p.value).fold(f64::NEG_INFINITY, f64::max), limits.max),
                };
                let score = (worst - limit).abs() / limit.abs().max(1.0);
                let reason = AnomalyReason::OutOfRange { worst, bound, limit, count: run.len() };
                Anomaly::new(key, AnomalyKind::Impossible, Severity::Critical, score, segment, reason)
            }
        };
        anomalies.push(anomaly);
    }
    Ok(anomalies)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    NotANumber,
    Beyond(Bound),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::{gpu_key, key, noisy_series};
    use se_core::Lang;

    #[test]
    fn negative_power_is_flagged() {
        let key = gpu_key("rig-01", 1);
        let mut points = noisy_series(0, 1_000, 20, 200.0, 5.0, 1);
        points[4].value = -3.0;
        points[5].value = -12.5;
        let anomalies = detect_impossible(&key, &points, &ValueLimits::consumer_power(350.0).unwrap()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].segment, Segment::new(4_000, 5_000));
        assert_eq!(anomalies[0].severity, Severity::Critical);
        assert_eq!(anomalies[0].reason, AnomalyReason::OutOfRange { worst: -12.5, bound: Bound::Min, limit: 0.0, count: 2 });
        let message = anomalies[0].message(Lang::En);
        assert!(message.contains("2 power readings are below the possible minimum of 0.0 W, down to -12.5 W"), "{message}");
    }

    #[test]
    fn power_above_rating_is_flagged() {
        let key = gpu_key("rig-01", 1);
        let mut points = noisy_series(0, 1_000, 20, 200.0, 5.0, 2);
        points[10].value = 720.0;
        let anomalies = detect_impossible(&key, &points, &ValueLimits::consumer_power(350.0).unwrap()).unwrap();
        assert_eq!(anomalies.len(), 1);
        assert!((anomalies[0].score - 370.0 / 350.0).abs() < 1e-9);
        let message = anomalies[0].message(Lang::Fr);
        assert!(message.contains("1 mesure de la puissance dépasse le maximum possible de 350,0 W, à 720,0 W"), "{message}");
    }

    #[test]
    fn utilization_outside_percent_range_is_flagged() {
        let key = key("rig-01", "gpu0", Metric::Utilization);
        let points = vec![Point::new(0, 50.0), Point::new(1, 101.0), Point::new(2, 100.0), Point::new(3, -1.0)];
        let anomalies = detect_impossible(&key, &points, &ValueLimits::of_metric(Metric::Utilization)).unwrap();
        assert_eq!(anomalies.len(), 2, "{anomalies:?}");
        assert_eq!(anomalies[0].segment.start_ms, 1);
        assert_eq!(anomalies[1].segment.start_ms, 3);
    }

    #[test]
    fn nan_run_is_one_warning() {
        let key = gpu_key("rig-01", 0);
        let points = vec![Point::new(0, 1.0), Point::new(1, f64::NAN), Point::new(2, f64::NAN), Point::new(3, f64::NEG_INFINITY), Point::new(4, 1.0)];
        let anomalies = detect_impossible(&key, &points, &ValueLimits::consumer_power(350.0).unwrap()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].severity, Severity::Warning);
        assert_eq!(anomalies[0].reason, AnomalyReason::NotANumber { count: 3 });
        assert_eq!(anomalies[0].segment, Segment::new(1, 3));
    }

    #[test]
    fn values_within_limits_are_not_flagged() {
        let key = gpu_key("rig-01", 0);
        let mut points = noisy_series(0, 1_000, 500, 175.0, 170.0, 3);
        points.push(Point::new(500_000, 0.0));
        points.push(Point::new(501_000, 350.0));
        assert!(detect_impossible(&key, &points, &ValueLimits::consumer_power(350.0).unwrap()).unwrap().is_empty());
        assert!(detect_impossible(&key, &[], &ValueLimits::consumer_power(350.0).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn inverted_limits_are_rejected() {
        let error = ValueLimits::new(10.0, 0.0).unwrap_err();
        assert!(error.to_string().contains("[10, 0]"), "{error}");
        let error = ValueLimits::consumer_power(f64::NAN).unwrap_err();
        assert!(error.to_string().contains("limits"), "{error}");
    }
}
