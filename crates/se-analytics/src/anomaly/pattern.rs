//! Hourly means far from the device's usual daily pattern.
//!
//! The expected mean of an hour is the median of the means of the same local
//! clock hour on the `days` days before it. This is a seasonal naive
//! forecast with a daily period, which the median makes robust to odd days.
//! [`detect_forecast_deviation`] scores the hours of the `scale_days` days
//! before the window together with the window's hours, so the residual scale
//! is the device's usual day-to-day variation. A window that departs as a
//! whole therefore still scores high, whereas a scale estimated on the
//! window alone would absorb the departure. Only anomalies that reach into the
//! window are returned.

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use se_core::TimestampMs;

use super::stats::median;
use super::{check_sorted, detect_forecast_deviation, Anomaly, AnomalyReason, InputError, Point, ResidualConfig, SeriesKey};

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Settings of [`detect_pattern_deviation`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DailyPatternConfig {
    /// Earlier days whose same clock hour gives the expected mean of an hour.
    pub days: usize,
    /// Minimum number of those days with a mean at that hour. With fewer,
    /// the hour has no expected value and is not scored.
    pub min_days: usize,
    /// Days before the window whose hours are scored with the window's, to
    /// estimate the residual scale.
    pub scale_days: usize,
    /// Scores and floors of the residual test, applied to hourly means.
    pub residual: ResidualConfig,
}

impl Default for DailyPatternConfig {
    fn default() -> Self {
        Self {
            days: 7,
            min_days: 3,
            scale_days: 7,
            residual: ResidualConfig {
                // Two days of scored hours at least, so the scale never
                // comes from the window alone.
                min_points: 48,
                // Hourly means of a steady device differ by a few watts from
                // day to day, so without this floor a 5 % change would score
                // as critical. With it, a warning needs a 10 % departure.
                min_relative_scale: 0.02,
                ..ResidualConfig::default()
            },
        }
    }
}

impl DailyPatternConfig {
    fn validate(&self) -> Result<(), InputError> {
        if self.days == 0 || self.days > 366 {
            return Err(InputError::InvalidSetting { name: "days", value: self.days.to_string(), expected: "1 to 366 days, such as 7" });
        }
        if self.min_days == 0 || self.min_days > self.days {
            return Err(InputError::InvalidSetting { name: "min_days", value: self.min_days.to_string(), expected: "1 day up to days, such as 3" });
        }
        if self.scale_days == 0 || self.scale_days > 366 {
            return Err(InputError::InvalidSetting { name: "scale_days", value: self.scale_days.to_string(), expected: "1 to 366 days, such as 7" });
        }
        Ok(())
    }

    /// Start of the hourly history that [`detect_pattern_deviation`] reads
    /// for a window that starts at `window_start_ms`. One extra day covers
    /// the hour that a clock change adds to a local day.
    pub fn history_start_ms(&self, window_start_ms: TimestampMs) -> TimestampMs {
        let days = (self.days + self.scale_days + 1) as i64;
        window_start_ms.div_euclid(HOUR_MS) * HOUR_MS - days * DAY_MS
    }
}

/// Returns the expected mean of the hour that starts at `at_ms`. It is the
/// median of the values of `hourly` at the same local clock time in `zone`
/// on the `days` days before. It is `None` when fewer than `min_days` of
/// them have a finite value. `hourly` is sorted by time.
pub fn expected_from_earlier_days(hourly: &[Point], at_ms: TimestampMs, zone: &TimeZone, days: usize, min_days: usize) -> Option<f64> {
    let zoned = Timestamp::from_millisecond(at_ms).ok()?.to_zoned_datetime(zone.clone());
    let mut earlier = Vec::with_capacity(days);
    for day in 1..=days {
        // Local days of 23 or 25 hours keep the clock hour, as a daily
        // schedule (a tariff period, a timer) does.
        let Ok(shifted) = zoned.checked_sub(Span::new().days(day as i64)) else { continue };
        let ts_ms = shifted.timestamp().as_millisecond();
        if let Ok(index) = hourly.binary_search_by_key(&ts_ms, |point| point.ts_ms) {
            if hourly[index].value.is_finite() {
                earlier.push(hourly[index].value);
            }
        }
    }
    if earlier.len() < min_days {
        return None;
    }
    median(&earlier)
}

/// Flags hours of `hourly` within the window that differ from the same hour
/// on earlier days. Each point of `hourly` is the mean of the hour that
/// starts at its time. The window is the hours that end after
/// `window_start_ms`. Segments cover whole hours, cut at `now_ms`.
///
/// The anomaly kind is [`super::AnomalyKind::ForecastDeviation`], with an
/// [`AnomalyReason::PatternDeviation`] reason.
pub fn detect_pattern_deviation(
    key: &SeriesKey,
    hourly: &[Point],
    window_start_ms: TimestampMs,
    now_ms: TimestampMs,
    zone: &TimeZone,
    config: &DailyPatternConfig,
) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    check_sorted(key, hourly)?;

    let scored_from_ms = window_start_ms - config.scale_days as i64 * DAY_MS;
    let mut actual = Vec::new();
    let mut expected = Vec::new();
    for point in hourly.iter().filter(|point| point.ts_ms + HOUR_MS > scored_from_ms && point.value.is_finite()) {
        if let Some(value) = expected_from_earlier_days(hourly, point.ts_ms, zone, config.days, config.min_days) {
            actual.push(*point);
            expected.push(Point::new(point.ts_ms, value));
        }
    }

    let found = detect_forecast_deviation(key, &actual, &expected, &config.residual)?;
    Ok(found.into_iter().filter(|anomaly| anomaly.segment.end_ms + HOUR_MS > window_start_ms).map(|anomaly| as_pattern(anomaly, now_ms)).collect())
}

/// Rewords a forecast deviation of hourly means and widens its segment to whole hours.
fn as_pattern(mut anomaly: Anomaly, now_ms: TimestampMs) -> Anomaly {
    if let AnomalyReason::ForecastDeviation { actual, forecast, score, points } = anomaly.reason {
        anomaly.reason = AnomalyReason::PatternDeviation { actual, expected: forecast, score, hours: points };
    }
    let end_ms = (anomaly.segment.end_ms + HOUR_MS - 1).min(now_ms).max(anomaly.segment.start_ms);
    anomaly.segment.end_ms = end_ms;
    anomaly
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::gpu_key;
    use crate::anomaly::{AnomalyKind, Segment, Severity};
    use se_core::Lang;

    /// 2024-12-02T00:00:00Z, a Monday.
    const START_MS: i64 = 1_733_097_600_000;

    /// Hourly means over `days` days from [`START_MS`]: 200 W with 60 W of
    /// daily swing (highest at 06:00 UTC) and ±2 W of deterministic noise.
    fn pattern_days(days: i64) -> Vec<Point> {
        (0..days * 24)
            .map(|hour| {
                let hour_of_day = (hour % 24) as f64;
                let daily = (2.0 * std::f64::consts::PI * hour_of_day / 24.0).sin();
                let noise = 4.0 * ((hour as f64 * 0.618_033_988_75).fract() - 0.5);
                Point::new(START_MS + hour * HOUR_MS, 200.0 + 60.0 * daily + noise)
            })
            .collect()
    }

    fn end_of(points: &[Point]) -> i64 {
        points.last().map_or(START_MS, |point| point.ts_ms + HOUR_MS)
    }

    #[test]
    fn expected_value_is_median_of_same_hour() {
        let mut hourly = pattern_days(8);
        let at = hourly[7 * 24 + 5].ts_ms;
        // One odd day does not move the median of seven.
        hourly[6 * 24 + 5].value = 900.0;
        let expected = expected_from_earlier_days(&hourly, at, &TimeZone::UTC, 7, 3).unwrap();
        let same_hours: Vec<f64> = (0..7).map(|day| hourly[day * 24 + 5].value).collect();
        assert_eq!(Some(expected), median(&same_hours));
        assert!((expected - (200.0 + 60.0 * (2.0 * std::f64::consts::PI * 5.0 / 24.0).sin())).abs() < 3.0, "{expected}");
    }

    #[test]
    fn expected_value_needs_min_days() {
        let hourly = pattern_days(3);
        let at = START_MS + 2 * DAY_MS + 4 * HOUR_MS;
        assert!(expected_from_earlier_days(&hourly, at, &TimeZone::UTC, 7, 3).is_none());
        assert!(expected_from_earlier_days(&hourly, at, &TimeZone::UTC, 7, 2).is_some());
    }

    #[test]
    fn expected_value_keeps_local_clock_hour() {
        // Europe/Paris left summer time on 2024-10-27, a 25-hour day, so
        // 08:00 local on the 28th is 07:00 UTC and on the 26th 06:00 UTC.
        let zone = TimeZone::get("Europe/Paris").unwrap();
        let at_ms = 1_730_098_800_000; // 2024-10-28T07:00:00Z
        let hourly = vec![
            Point::new(1_729_922_400_000, 500.0), // 2024-10-26T06:00:00Z, 08:00 local
            Point::new(1_729_926_000_000, 100.0), // 2024-10-26T07:00:00Z, 09:00 local
            Point::new(1_730_012_400_000, 500.0), // 2024-10-27T07:00:00Z, 08:00 local
            Point::new(1_730_098_800_000, 0.0),
        ];
        assert_eq!(expected_from_earlier_days(&hourly, at_ms, &zone, 2, 2), Some(500.0));
    }

    #[test]
    fn usual_days_are_not_flagged() {
        let hourly = pattern_days(16);
        let now = end_of(&hourly);
        let found = detect_pattern_deviation(&gpu_key("rig-01", 1), &hourly, now - 6 * HOUR_MS, now, &TimeZone::UTC, &DailyPatternConfig::default()).unwrap();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn departing_window_is_flagged() {
        let mut hourly = pattern_days(16);
        let count = hourly.len();
        // The last five hours run at 45 % of the usual power.
        for point in &mut hourly[count - 5..] {
            point.value *= 0.45;
        }
        let now = end_of(&hourly) + 20 * 60_000;
        let found = detect_pattern_deviation(&gpu_key("rig-01", 1), &hourly, now - 6 * HOUR_MS, now, &TimeZone::UTC, &DailyPatternConfig::default()).unwrap();

        assert_eq!(found.len(), 1, "{found:?}");
        let anomaly = &found[0];
        assert_eq!(anomaly.kind, AnomalyKind::ForecastDeviation);
        assert_eq!(anomaly.severity, Severity::Critical);
        assert_eq!(anomaly.segment, Segment::new(hourly[count - 5].ts_ms, end_of(&hourly) - 1));
        let AnomalyReason::PatternDeviation { actual, expected, hours, .. } = anomaly.reason else { panic!("{:?}", anomaly.reason) };
        assert_eq!(hours, 5);
        assert!(actual < 0.5 * expected, "{actual} {expected}");
        let message = anomaly.message(Lang::En);
        assert!(message.starts_with("GPU 1 of rig-01: power differed from its usual daily pattern for 5 hours, at worst "), "{message}");
        let message = anomaly.message(Lang::Fr);
        assert!(message.starts_with("Le GPU 1 de rig-01 : la puissance s'écarte de son profil journalier habituel pendant 5 heures, au pire "), "{message}");
    }

    #[test]
    fn departure_before_window_is_left_out() {
        let mut hourly = pattern_days(16);
        let count = hourly.len();
        for point in &mut hourly[count - 30..count - 24] {
            point.value *= 0.45;
        }
        let now = end_of(&hourly);
        let config = DailyPatternConfig::default();
        let found = detect_pattern_deviation(&gpu_key("rig-01", 1), &hourly, now - 6 * HOUR_MS, now, &TimeZone::UTC, &config).unwrap();
        assert!(found.is_empty(), "{found:?}");
        // A window that reaches back to it finds it.
        let found = detect_pattern_deviation(&gpu_key("rig-01", 1), &hourly, now - 26 * HOUR_MS, now, &TimeZone::UTC, &config).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn segment_stops_at_now() {
        let mut hourly = pattern_days(16);
        let count = hourly.len();
        hourly[count - 1].value *= 2.0;
        let now = hourly[count - 1].ts_ms + 10 * 60_000;
        let found = detect_pattern_deviation(&gpu_key("rig-01", 1), &hourly, now - 3 * HOUR_MS, now, &TimeZone::UTC, &DailyPatternConfig::default()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].segment, Segment::new(hourly[count - 1].ts_ms, now));
    }

    #[test]
    fn short_history_gives_nothing() {
        // Three days give expected values for the third day only: 24 hours, below 48.
        let mut hourly = pattern_days(3);
        let count = hourly.len();
        hourly[count - 1].value = 0.0;
        let now = end_of(&hourly);
        let found = detect_pattern_deviation(&gpu_key("rig-01", 1), &hourly, now - 6 * HOUR_MS, now, &TimeZone::UTC, &DailyPatternConfig::default()).unwrap();
        assert!(found.is_empty(), "{found:?}");
        assert!(detect_pattern_deviation(&gpu_key("rig-01", 1), &[], now, now, &TimeZone::UTC, &DailyPatternConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn invalid_settings_and_unsorted_input() {
        let key = gpu_key("rig-01", 1);
        let config = DailyPatternConfig { min_days: 8, ..DailyPatternConfig::default() };
        let error = detect_pattern_deviation(&key, &[], 0, 0, &TimeZone::UTC, &config).unwrap_err();
        assert!(error.to_string().contains("min_days = 8"), "{error}");
        let unsorted = vec![Point::new(HOUR_MS, 1.0), Point::new(0, 1.0)];
        let error = detect_pattern_deviation(&key, &unsorted, 0, 0, &TimeZone::UTC, &DailyPatternConfig::default()).unwrap_err();
        assert!(matches!(error, InputError::UnsortedTimes { index: 1, .. }), "{error}");
    }

    #[test]
    fn history_start_covers_both_spans() {
        let config = DailyPatternConfig::default();
        let window_start = START_MS + 30 * 60_000;
        assert_eq!(config.history_start_ms(window_start), START_MS - 15 * DAY_MS);
    }
}
