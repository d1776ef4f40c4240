//! Flat-lined or stuck sensors: a value that stops changing while the series
//! normally varies, or while its peers vary.
//!
//! A run is a stretch of consecutive finite readings that all stay within
//! `tolerance` of the run's first reading. A run long enough in readings and
//! in time is flagged when there is evidence that the value should move:
//! either the series itself changes at most steps outside the run, or at
//! least one peer series (the same metric on rig mates, or another metric of
//! the same device) changes at most steps during the run. A run at
//! `rest_value` is never flagged: utilization that stays at 0 % is an idle
//! device, not a stuck sensor.

use super::{check_setting, check_sorted, finite, Anomaly, AnomalyKind, AnomalyReason, InputError, Point, Segment, SeriesKey, Severity};

/// Settings of [`detect_stuck`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StuckConfig {
    /// Largest change, in the metric's unit, that still counts as "the same value".
    pub tolerance: f64,
    /// Fewest readings in a run.
    pub min_points: usize,
    /// Shortest run, in milliseconds.
    pub min_duration_ms: i64,
    /// A run this long or longer is critical.
    pub critical_duration_ms: i64,
    /// The series "normally varies" when at least this share of its steps
    /// outside the run change by more than `tolerance`.
    pub min_changing_share: f64,
    /// A peer "varies" when at least this share of its steps during the run change.
    pub peer_changing_share: f64,
    /// A value at which the series may legitimately rest, such as 0 % utilization.
    pub rest_value: Option<f64>,
}

impl Default for StuckConfig {
    fn default() -> Self {
        Self {
            tolerance: 0.0,
            min_points: 6,
            min_duration_ms: 5 * 60_000,
            critical_duration_ms: 60 * 60_000,
            min_changing_share: 0.8,
            peer_changing_share: 0.5,
            rest_value: None,
        }
    }
}

impl StuckConfig {
    fn validate(&self) -> Result<(), InputError> {
        check_setting("tolerance", self.tolerance, 0.0, f64::MAX, "0 or more, in the metric's unit")?;
        check_setting("min_changing_share", self.min_changing_share, 0.0, 1.0, "a fraction from 0 to 1, such as 0.8")?;
        check_setting("peer_changing_share", self.peer_changing_share, 0.0, 1.0, "a fraction from 0 to 1, such as 0.5")?;
        check_setting("min_duration_ms", self.min_duration_ms as f64, 0.0, f64::MAX, "0 or more milliseconds")?;
        if self.min_points < 3 {
            return Err(InputError::InvalidSetting { name: "min_points", value: self.min_points.to_string(), expected: "3 or more readings, such as 6" });
        }
        if let Some(rest) = self.rest_value {
            check_setting("rest_value", rest, f64::MIN, f64::MAX, "a finite value, such as 0")?;
        }
        Ok(())
    }
}

/// Flags stuck runs of `points`. `peers` are other series whose changes during
/// a run show that this one should change too. The score is the run's length
/// in readings.
pub fn detect_stuck(key: &SeriesKey, points: &[Point], peers: &[&[Point]], config: &StuckConfig) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    check_sorted(key, points)?;
    for peer in peers {
        check_sorted(key, peer)?;
    }
    let points = finite(points);

    let mut anomalies = Vec::new();
    let mut start = 0;
    while start < points.len() {
        let first = points[start].value;
        let mut end = start + 1;
        while end < points.len() && (points[end].value - first).abs() <= config.tolerance {
            end += 1;
        }
        let run = &points[start..end];
        let duration_ms = run[run.len() - 1].ts_ms - run[0].ts_ms;
        let at_rest = config.rest_value.is_some_and(|rest| (first - rest).abs() <= config.tolerance);
        if run.len() >= config.min_points && duration_ms >= config.min_duration_ms && !at_rest {
            let segment = Segment::new(run[0].ts_ms, run[run.len() - 1].ts_ms);
            let own_varies = changing_share(&points[..start], config.tolerance)
                .into_iter()
                .chain(changing_share(&points[end..], config.tolerance))
                .fold(Share::default(), Share::add)
                .at_least(config.min_changing_share, config.min_points);
            let peers_vary = peers.iter().any(|peer| {
                let during: Vec<Point> = finite(peer).into_iter().filter(|p| p.ts_ms >= segment.start_ms && p.ts_ms <= segment.end_ms).collect();
                changing_share(&during, config.tolerance).is_some_and(|share| share.at_least(config.peer_changing_share, 3))
            });
            if own_varies || peers_vary {
                let severity = if duration_ms >= config.critical_duration_ms { Severity::Critical } else { Severity::Warning };
                let reason = AnomalyReason::Stuck { value: first, duration_ms, points: run.len(), peers_vary: peers_vary && !own_varies };
                anomalies.push(Anomaly::new(key, AnomalyKind::Stuck, severity, run.len() as f64, segment, reason));
            }
        }
        start = end;
    }
    Ok(anomalies)
}

/// Count of steps and of steps that changed by more than the tolerance.
#[derive(Debug, Clone, Copy, Default)]
struct Share {
    steps: usize,
    changed: usize,
}

impl Share {
    fn add(self, other: Share) -> Share {
        Share { steps: self.steps + other.steps, changed: self.changed + other.changed }
    }

    fn at_least(self, share: f64, min_steps: usize) -> bool {
        self.steps >= min_steps && self.changed as f64 >= share * self.steps as f64
    }
}

fn changing_share(points: &[Point], tolerance: f64) -> Option<Share> {
    if points.len() < 2 {
        return None;
    }
    let changed = points.windows(2).filter(|pair| (pair[1].value - pair[0].value).abs() > tolerance).count();
    Some(Share { steps: points.len() - 1, changed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::{gpu_key, key, noisy_series};
    use se_core::{Lang, Metric};

    #[test]
    fn stuck_power_is_flagged() {
        let key = gpu_key("rig-02", 5);
        let mut points = noisy_series(0, 30_000, 200, 250.0, 20.0, 1);
        for point in &mut points[100..130] {
            point.value = 243.7;
        }
        let anomalies = detect_stuck(&key, &points, &[], &StuckConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].segment, Segment::new(100 * 30_000, 129 * 30_000));
        assert_eq!(anomalies[0].severity, Severity::Warning);
        assert_eq!(anomalies[0].score, 30.0);
        let message = anomalies[0].message(Lang::En);
        assert!(message.contains("stayed at exactly 243.7 W for 14 min (30 readings) while it usually changes"), "{message}");
    }

    #[test]
    fn stuck_at_end_of_series_is_flagged() {
        let key = gpu_key("rig-02", 5);
        let mut points = noisy_series(0, 30_000, 200, 250.0, 20.0, 2);
        for point in &mut points[180..] {
            point.value = 250.0;
        }
        let anomalies = detect_stuck(&key, &points, &[], &StuckConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].segment.end_ms, 199 * 30_000);
    }

    #[test]
    fn flat_series_with_varying_peers_is_flagged() {
        let key = key("rig-02", "gpu1", Metric::Temperature);
        let flat: Vec<Point> = (0..60).map(|i| Point::new(i * 60_000, 41.0)).collect();
        let peer = noisy_series(0, 60_000, 60, 60.0, 5.0, 3);
        let anomalies = detect_stuck(&key, &flat, &[&peer], &StuckConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].reason, AnomalyReason::Stuck { value: 41.0, duration_ms: 59 * 60_000, points: 60, peers_vary: true });
        let message = anomalies[0].message(Lang::Fr);
        assert!(message.contains("alors que ses pairs continuent de varier"), "{message}");
    }

    #[test]
    fn idle_rig_at_rest_value_is_not_flagged() {
        let key = key("rig-02", "gpu1", Metric::Utilization);
        let mut points = noisy_series(0, 30_000, 100, 95.0, 4.0, 4);
        points.extend((100..400).map(|i| Point::new(i * 30_000, 0.0)));
        let config = StuckConfig { rest_value: Some(0.0), ..StuckConfig::default() };
        assert!(detect_stuck(&key, &points, &[], &config).unwrap().is_empty());
    }

    #[test]
    fn whole_rig_flat_is_not_flagged() {
        // A meter that legitimately reads the same value, with peers that do too.
        let key = key("site", "main", Metric::Voltage);
        let flat: Vec<Point> = (0..100).map(|i| Point::new(i * 60_000, 230.0)).collect();
        let peer = flat.clone();
        assert!(detect_stuck(&key, &flat, &[&peer], &StuckConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn normal_noise_is_not_flagged() {
        let key = gpu_key("rig-02", 0);
        for seed in 0..20 {
            let points = noisy_series(0, 30_000, 1_000, 70.0, 2.0, seed);
            let anomalies = detect_stuck(&key, &points, &[], &StuckConfig::default()).unwrap();
            assert!(anomalies.is_empty(), "seed {seed}: {anomalies:?}");
        }
    }

    #[test]
    fn short_repeat_is_not_flagged() {
        let key = gpu_key("rig-02", 0);
        let mut points = noisy_series(0, 30_000, 100, 250.0, 20.0, 5);
        for point in &mut points[50..55] {
            point.value = 250.0;
        }
        assert!(detect_stuck(&key, &points, &[], &StuckConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn nan_inside_run_does_not_break_it() {
        let key = gpu_key("rig-02", 0);
        let mut points = noisy_series(0, 30_000, 100, 250.0, 20.0, 6);
        for point in &mut points[40..70] {
            point.value = 200.0;
        }
        points[55].value = f64::NAN;
        let anomalies = detect_stuck(&key, &points, &[], &StuckConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].score, 29.0);
    }

    #[test]
    fn empty_and_unsorted_input() {
        let key = gpu_key("rig-02", 0);
        assert!(detect_stuck(&key, &[], &[], &StuckConfig::default()).unwrap().is_empty());
        let unsorted = vec![Point::new(10, 1.0), Point::new(5, 1.0)];
        assert!(detect_stuck(&key, &unsorted, &[], &StuckConfig::default()).is_err());
        assert!(detect_stuck(&key, &[], &[&unsorted], &StuckConfig::default()).is_err());
    }
}
