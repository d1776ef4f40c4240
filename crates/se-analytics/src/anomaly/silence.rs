//! A device gone silent: no reading for several of its usual intervals.
//!
//! The usual interval is the median time between consecutive readings of one
//! series, so a few gaps do not change it. A gap counts when it is longer
//! than `missed_intervals` usual intervals and than `min_gap_ms`.

use se_core::TimestampMs;

use super::stats::median;
use super::{check_setting, check_sorted, Anomaly, AnomalyKind, AnomalyReason, InputError, Point, Segment, SeriesKey, Severity};

/// Settings of [`detect_silence`] and [`detect_silence_with_interval`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SilenceConfig {
    /// A gap counts from this many usual intervals.
    pub missed_intervals: f64,
    /// A silence that still lasts at `now_ms` is critical from this many usual intervals.
    pub critical_intervals: f64,
    /// A gap never counts below this length, so devices that report every
    /// 100 ms do not raise an alarm for a pause of a second.
    pub min_gap_ms: i64,
    /// Fewest readings needed to estimate the usual interval.
    pub min_points: usize,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        Self { missed_intervals: 5.0, critical_intervals: 20.0, min_gap_ms: 30_000, min_points: 4 }
    }
}

/// Flags gaps between readings and, when `now_ms` is given, the silence from
/// the last reading until then. Every point counts as a reading, whatever its
/// value, because a NaN still shows the device is sending. Past gaps are
/// warnings; an ongoing silence is a warning, or critical from
/// `critical_intervals`. The score is the gap in usual intervals, and the
/// usual interval is [`usual_interval_ms`] of `points`.
pub fn detect_silence(key: &SeriesKey, points: &[Point], now_ms: Option<TimestampMs>, config: &SilenceConfig) -> Result<Vec<Anomaly>, InputError> {
    check_config(config)?;
    check_sorted(key, points)?;
    if points.len() < config.min_points.max(2) {
        return Ok(Vec::new());
    }
    let Some(usual) = usual_interval_ms(points) else {
        return Ok(Vec::new());
    };
    Ok(find_gaps(key, points, usual, now_ms, config))
}

/// Flags silences as [`detect_silence`] does, but against a usual interval
/// that the caller measured, in milliseconds. A device with several series
/// passes the reading times of all of them in `points` and the interval of
/// one series. Its merged times give no usable interval when the series are
/// sampled a few milliseconds apart, as the GPUs of one nvidia-smi poll are.
///
/// A `usual_interval_ms` below 1 ms is rejected as an invalid setting, so no
/// anomaly reports an interval of 0.
pub fn detect_silence_with_interval(
    key: &SeriesKey,
    points: &[Point],
    usual_interval_ms: f64,
    now_ms: Option<TimestampMs>,
    config: &SilenceConfig,
) -> Result<Vec<Anomaly>, InputError> {
    check_config(config)?;
    check_setting("usual_interval_ms", usual_interval_ms, 1.0, 1e15, "1 or more milliseconds, such as 60000")?;
    check_sorted(key, points)?;
    if points.is_empty() {
        return Ok(Vec::new());
    }
    Ok(find_gaps(key, points, usual_interval_ms, now_ms, config))
}

/// Usual time between the readings of one series, in milliseconds: the
/// median of the steps between consecutive distinct times, so a few gaps do
/// not change it. Points at the same time count as one reading. Returns
/// `None` with fewer than two distinct times, and otherwise at least 1 ms,
/// because times are whole milliseconds. `points` must be sorted by time.
///
/// NOTE: a series with two readings a few milliseconds apart at every poll
/// (one GPU logged twice per poll) still gets an interval of milliseconds.
pub fn usual_interval_ms(points: &[Point]) -> Option<f64> {
    let steps: Vec<f64> = points.windows(2).map(|pair| (pair[1].ts_ms - pair[0].ts_ms) as f64).filter(|step| *step > 0.0).collect();
    median(&steps)
}

pub(super) fn check_config(config: &SilenceConfig) -> Result<(), InputError> {
    check_setting("missed_intervals", config.missed_intervals, 1.0, 1e9, "1 or more usual intervals, such as 5")?;
    check_setting("critical_intervals", config.critical_intervals, config.missed_intervals, 1e9, "not below missed_intervals, such as 20")?;
    check_setting("min_gap_ms", config.min_gap_ms as f64, 0.0, f64::MAX, "0 or more milliseconds")
}

/// Gaps of sorted, non-empty `points` longer than the threshold, then the
/// ongoing silence until `now_ms`. `usual` is at least 1 ms.
fn find_gaps(key: &SeriesKey, points: &[Point], usual: f64, now_ms: Option<TimestampMs>, config: &SilenceConfig) -> Vec<Anomaly> {
    let usual_ms = usual.round() as i64;
    let threshold = (config.missed_intervals * usual).max(config.min_gap_ms as f64);

    let mut anomalies = Vec::new();
    for pair in points.windows(2) {
        let gap_ms = pair[1].ts_ms - pair[0].ts_ms;
        if gap_ms as f64 > threshold {
            let reason = AnomalyReason::Silent { gap_ms, usual_interval_ms: usual_ms, ongoing: false };
            let segment = Segment::new(pair[0].ts_ms, pair[1].ts_ms);
            anomalies.push(Anomaly::new(key, AnomalyKind::Silent, Severity::Warning, gap_ms as f64 / usual, segment, reason));
        }
    }

    let last_ms = points[points.len() - 1].ts_ms;
    if let Some(now_ms) = now_ms {
        let gap_ms = now_ms - last_ms;
        if gap_ms as f64 > threshold {
            let intervals = gap_ms as f64 / usual;
            let severity = if intervals >= config.critical_intervals { Severity::Critical } else { Severity::Warning };
            let reason = AnomalyReason::Silent { gap_ms, usual_interval_ms: usual_ms, ongoing: true };
            anomalies.push(Anomaly::new(key, AnomalyKind::Silent, severity, intervals, Segment::new(last_ms, now_ms), reason));
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::{gpu_key, noisy_series};
    use se_core::Lang;

    #[test]
    fn ongoing_silence_is_flagged() {
        let key = gpu_key("rig-07", 0);
        let points = noisy_series(0, 5_000, 100, 200.0, 10.0, 1);
        let last = points[99].ts_ms;
        let anomalies = detect_silence(&key, &points, Some(last + 10 * 60_000), &SilenceConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].severity, Severity::Critical);
        assert_eq!(anomalies[0].segment, Segment::new(last, last + 600_000));
        assert_eq!(anomalies[0].score, 120.0);
        let message = anomalies[0].message(Lang::En);
        assert_eq!(message, "GPU 0 of rig-07: no power reading for the last 10 min while it usually sends one every 5 s");
        let message = anomalies[0].message(Lang::Fr);
        assert!(message.contains("aucune mesure de la puissance depuis 10 min"), "{message}");
    }

    #[test]
    fn past_gap_is_a_warning() {
        let key = gpu_key("rig-07", 0);
        let mut points = noisy_series(0, 5_000, 100, 200.0, 10.0, 1);
        points.retain(|p| !(200_000..=300_000).contains(&p.ts_ms));
        let last = points[points.len() - 1].ts_ms;
        let anomalies = detect_silence(&key, &points, Some(last + 5_000), &SilenceConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].severity, Severity::Warning);
        assert_eq!(anomalies[0].segment, Segment::new(195_000, 305_000));
    }

    #[test]
    fn regular_readings_and_jitter_are_not_flagged() {
        let key = gpu_key("rig-07", 0);
        let points: Vec<Point> = (0..200).map(|i| Point::new(i * 5_000 + (i % 3) * 700, f64::NAN)).collect();
        let anomalies = detect_silence(&key, &points, Some(points[199].ts_ms + 12_000), &SilenceConfig::default()).unwrap();
        assert!(anomalies.is_empty(), "{anomalies:?}");
    }

    #[test]
    fn short_pause_of_fast_device_is_not_flagged() {
        let key = gpu_key("rig-07", 0);
        let points = noisy_series(0, 100, 100, 200.0, 10.0, 1);
        let anomalies = detect_silence(&key, &points, Some(points[99].ts_ms + 5_000), &SilenceConfig::default()).unwrap();
        assert!(anomalies.is_empty(), "{anomalies:?}");
    }

    #[test]
    fn too_few_points_give_nothing() {
        let key = gpu_key("rig-07", 0);
        assert!(detect_silence(&key, &[], Some(1_000_000), &SilenceConfig::default()).unwrap().is_empty());
        let points = vec![Point::new(0, 1.0), Point::new(1_000, 1.0)];
        assert!(detect_silence(&key, &points, Some(1_000_000), &SilenceConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn same_time_readings_keep_interval() {
        // Three series sampled at the same instants every minute, merged.
        let points: Vec<Point> = (0..60).flat_map(|i| [Point::new(i * 60_000, 1.0); 3]).collect();
        assert_eq!(usual_interval_ms(&points), Some(60_000.0));
        let last = points[points.len() - 1].ts_ms;
        assert!(detect_silence(&gpu_key("rig-07", 0), &points, Some(last + 90_000), &SilenceConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn interval_needs_two_distinct_times() {
        assert_eq!(usual_interval_ms(&[]), None);
        assert_eq!(usual_interval_ms(&[Point::new(5_000, 1.0), Point::new(5_000, 2.0)]), None);
    }

    #[test]
    fn given_interval_is_used() {
        let key = gpu_key("rig-07", 0);
        // Readings 7 ms apart in bursts every 5 min, as merged GPU rows of nvidia-smi polls are.
        let points: Vec<Point> = (0..100).flat_map(|poll| (0..3).map(move |gpu| Point::new(poll * 300_000 + gpu * 7, 1.0))).collect();
        let last = points[points.len() - 1].ts_ms;
        let anomalies = detect_silence_with_interval(&key, &points, 300_000.0, Some(last + 60_000), &SilenceConfig::default()).unwrap();
        assert!(anomalies.is_empty(), "{anomalies:?}");
        let anomalies = detect_silence_with_interval(&key, &points, 300_000.0, Some(last + 30 * 60_000), &SilenceConfig::default()).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].severity, Severity::Warning);
        assert_eq!(anomalies[0].score, 6.0);
    }

    #[test]
    fn given_interval_below_1_ms_rejected() {
        let key = gpu_key("rig-07", 0);
        let points = noisy_series(0, 5_000, 10, 200.0, 10.0, 1);
        for interval in [0.0, 0.4, -5.0, f64::NAN] {
            let result = detect_silence_with_interval(&key, &points, interval, None, &SilenceConfig::default());
            assert!(matches!(result, Err(InputError::InvalidSetting { name: "usual_interval_ms", .. })), "{interval}: {result:?}");
        }
    }

    #[test]
    fn unsorted_times_are_rejected() {
        let key = gpu_key("rig-07", 0);
        let points = vec![Point::new(0, 1.0), Point::new(5_000, 1.0), Point::new(1_000, 1.0), Point::new(9_000, 1.0)];
        assert!(matches!(detect_silence(&key, &points, None, &SilenceConfig::default()), Err(InputError::UnsortedTimes { index: 2, .. })));
    }
}
