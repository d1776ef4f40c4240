//! Loading a time series from CSV and resampling it to an hourly grid.
//!
//! Hours are local clock hours in the series' time zone: a reading at 10:50
//! local time belongs to the 10:00 hour. The grid itself steps by one absolute
//! hour, so a day with a daylight-saving change has 23 or 25 points, and
//! seasonal models with a 24-point period drift by one hour across the change.

use std::collections::BTreeMap;
use std::io::Read;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ZonedDateTime};

use crate::error::{AnalyticsError, Result};
use crate::table::{parse_number, read_with_lf, record_line};

const SECONDS_PER_HOUR: i64 = 3600;

/// Columns to read and the format of the time column.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub time_column: String,
    pub value_column: String,
    /// Extra numeric columns, such as temperature, for models that use them.
    pub feature_columns: Vec<String>,
    /// `strftime`-style format such as `%m/%d/%y %H:%M`; `None` accepts
    /// RFC 3339 timestamps and ISO 8601 date-times.
    pub time_format: Option<String>,
    /// Zone of times written without an offset, and of calendar features.
    pub time_zone: TimeZone,
}

/// A named numeric column resampled alongside the values.
#[derive(Debug, Clone)]
pub struct Feature {
    pub name: String,
    pub values: Vec<f64>,
}

/// A regular hourly series. Hours without any reading are filled by linear
/// interpolation and flagged in `observed`, so forecasts can use them as
/// input while errors are measured on real hours only.
#[derive(Debug, Clone)]
pub struct HourlySeries {
    start: Timestamp,
    time_zone: TimeZone,
    values: Vec<f64>,
    observed: Vec<bool>,
    features: Vec<Feature>,
}

/// Counts from loading, for the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Data rows in the file.
    pub rows: usize,
    /// Rows skipped because the value cell was empty.
    pub rows_without_value: usize,
    /// Hours with no reading, filled by interpolation.
    pub interpolated_hours: usize,
}

impl HourlySeries {
    /// Builds a series from hourly values that start at `start` (which should
    /// be the start of a local hour). Every hour counts as observed.
    pub fn from_hourly(
        start: Timestamp,
        time_zone: TimeZone,
        values: Vec<f64>,
        features: Vec<Feature>,
    ) -> Self {
        let observed = vec![true; values.len()];
        Self {
            start,
            time_zone,
            values,
            observed,
            features,
        }
    }

    /// Builds a series from hourly values that start at `start`, where `None`
    /// marks an hour without readings. Such hours are filled by linear
    /// interpolation and flagged as not observed, like gaps in a CSV file.
    ///
    /// # Errors
    /// [`AnalyticsError::EmptySeries`] when no hour has a value.
    pub fn from_hourly_gaps(
        start: Timestamp,
        time_zone: TimeZone,
        hours: &[Option<f64>],
    ) -> Result<Self> {
        let observed: Vec<bool> = hours.iter().map(Option::is_some).collect();
        if !observed.contains(&true) {
            return Err(AnalyticsError::EmptySeries);
        }
        let mut values: Vec<f64> = hours.iter().map(|hour| hour.unwrap_or(f64::NAN)).collect();
        interpolate_gaps(&mut values);
        Ok(Self {
            start,
            time_zone,
            values,
            observed,
            features: Vec::new(),
        })
    }

    /// Reads `spec`'s columns from a CSV file with a header line and averages
    /// them per local hour.
    ///
    /// Rows with an empty value cell are skipped and counted; empty feature
    /// cells are interpolated like missing hours.
    ///
    /// # Errors
    /// Missing columns, times that do not parse, non-numeric values (with line
    /// and column), no usable row, or rows further apart than one hour.
    pub fn read_csv(reader: impl Read, spec: &SeriesSpec) -> Result<(Self, LoadSummary)> {
        let text = read_with_lf(reader)?;
        let mut csv_reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_slice());
        let headers: Vec<String> = csv_reader.headers()?.iter().map(str::to_string).collect();
        let find = |name: &str, option: &str| {
            headers
                .iter()
                .position(|header| header == name)
                .ok_or_else(|| AnalyticsError::ColumnNotFound {
                    column: name.to_string(),
                    option: option.to_string(),
                    available: headers.clone(),
                })
        };
        let time_index = find(&spec.time_column, "--time-column")?;
        let value_index = find(&spec.value_column, "--value-column")?;
        let feature_indices = spec
            .feature_columns
            .iter()
            .map(|name| find(name, "--feature-columns"))
            .collect::<Result<Vec<_>>>()?;

        let mut summary = LoadSummary::default();
        let mut buckets: BTreeMap<i64, HourBucket> = BTreeMap::new();
        let mut instants: Vec<i64> = Vec::new();
        for record in csv_reader.records() {
            let record = record?;
            let line = record_line(&text, &record);
            summary.rows += 1;
            let time_cell = record.get(time_index).unwrap_or("");
            let instant = parse_time(time_cell, line, spec)?;
            instants.push(instant.as_second());
            let value_cell = record.get(value_index).unwrap_or("");
            if value_cell.is_empty() {
                summary.rows_without_value += 1;
                continue;
            }
            let value = parse_number(value_cell, line, &spec.value_column)?;
            let mut features = Vec::with_capacity(feature_indices.len());
            for (&index, name) in feature_indices.iter().zip(&spec.feature_columns) {
                let cell = record.get(index).unwrap_or("");
                features.push(if cell.is_empty() {
                    None
                } else {
                    Some(parse_number(cell, line, name)?)
                });
            }

            let hour = local_hour_start(instant, &spec.time_zone);
            buckets
                .entry(hour)
                .or_insert_with(|| HourBucket::new(features.len()))
                .add(value, &features);
        }
        if buckets.is_empty() {
            return Err(AnalyticsError::EmptySeries);
        }
        check_step(&mut instants)?;

        let series = Self::from_buckets(&buckets, spec, &mut summary)?;
        Ok((series, summary))
    }

    fn from_buckets(
        buckets: &BTreeMap<i64, HourBucket>,
        spec: &SeriesSpec,
        summary: &mut LoadSummary,
    ) -> Result<Self> {
        let (Some((&first, _)), Some((&last, _))) =
            (buckets.first_key_value(), buckets.last_key_value())
        else {
            return Err(AnalyticsError::EmptySeries);
        };
        let length = usize::try_from((last - first) / SECONDS_PER_HOUR + 1)
            .map_err(|_| AnalyticsError::EmptySeries)?;
        let mut values = vec![f64::NAN; length];
        let mut feature_values = vec![vec![f64::NAN; length]; spec.feature_columns.len()];
        for (&hour, bucket) in buckets {
            let Ok(slot) = usize::try_from((hour - first) / SECONDS_PER_HOUR) else {
                continue;
            };
            values[slot] = bucket.value_sum / bucket.value_count as f64;
            for (feature, (sum, count)) in feature_values.iter_mut().zip(&bucket.feature_sums) {
                if *count > 0 {
                    feature[slot] = sum / *count as f64;
                }
            }
        }
        let observed: Vec<bool> = values.iter().map(|value| !value.is_nan()).collect();
        summary.interpolated_hours = observed.iter().filter(|&&seen| !seen).count();
        interpolate_gaps(&mut values);

        let mut features = Vec::with_capacity(feature_values.len());
        for (name, mut column) in spec.feature_columns.iter().zip(feature_values) {
            if column.iter().all(|value| value.is_nan()) {
                return Err(AnalyticsError::EmptyColumn {
                    column: name.clone(),
                });
            }
            interpolate_gaps(&mut column);
            features.push(Feature {
                name: name.clone(),
                values: column,
            });
        }
        let start = Timestamp::from_second(first).map_err(|_| AnalyticsError::EmptySeries)?;
        Ok(Self {
            start,
            time_zone: spec.time_zone.clone(),
            values,
            observed,
            features,
        })
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// `false` for hours that had no reading and were interpolated.
    pub fn observed(&self) -> &[bool] {
        &self.observed
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// Marks hour `index` as interpolated, for tests of scoring.
    #[cfg(test)]
    pub(crate) fn mark_unobserved(&mut self, index: usize) {
        self.observed[index] = false;
    }

    /// Start of hour `index` as an instant.
    pub fn timestamp_at(&self, index: usize) -> Timestamp {
        let hours = i64::try_from(index).unwrap_or(i64::MAX);
        self.start
            .saturating_add(SignedDuration::from_hours(hours))
            .unwrap_or(self.start)
    }

    /// Start of hour `index` in the series' time zone.
    pub fn zoned_at(&self, index: usize) -> ZonedDateTime {
        self.timestamp_at(index)
            .to_zoned_datetime(self.time_zone.clone())
    }

    /// Index of the hour starting at `instant`, if it lies on the grid within
    /// or at the end of the series.
    pub fn index_of(&self, instant: Timestamp) -> Option<usize> {
        let seconds = instant.as_second() - self.start.as_second();
        if seconds < 0 || seconds % SECONDS_PER_HOUR != 0 {
            return None;
        }
        usize::try_from(seconds / SECONDS_PER_HOUR).ok()
    }
}

struct HourBucket {
    value_sum: f64,
    value_count: usize,
    feature_sums: Vec<(f64, usize)>,
}

impl HourBucket {
    fn new(features: usize) -> Self {
        Self {
            value_sum: 0.0,
            value_count: 0,
            feature_sums: vec![(0.0, 0); features],
        }
    }

    fn add(&mut self, value: f64, features: &[Option<f64>]) {
        self.value_sum += value;
        self.value_count += 1;
        for (slot, feature) in self.feature_sums.iter_mut().zip(features) {
            if let Some(feature) = feature {
                slot.0 += feature;
                slot.1 += 1;
            }
        }
    }
}

/// Start of the local clock hour containing `instant`, as Unix seconds.
/// Works on the UTC offset in force at the instant, so it stays exact in the
/// repeated hour at the end of daylight-saving time.
fn local_hour_start(instant: Timestamp, time_zone: &TimeZone) -> i64 {
    let offset = i64::from(time_zone.to_offset(instant).seconds());
    let local = instant.as_second() + offset;
    local - local.rem_euclid(SECONDS_PER_HOUR) - offset
}

/// Rejects data whose typical spacing exceeds one hour. Uses the lower median
/// gap, so missing rows in hourly or finer data pass unless they are the
/// majority.
fn check_step(instants: &mut [i64]) -> Result<()> {
    instants.sort_unstable();
    let mut gaps: Vec<i64> = instants
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .filter(|&gap| gap > 0)
        .collect();
    if gaps.is_empty() {
        return Ok(());
    }
    let middle = (gaps.len() - 1) / 2;
    let median = *gaps.select_nth_unstable(middle).1;
    if median > SECONDS_PER_HOUR {
        return Err(AnalyticsError::CoarserThanHourly {
            step_minutes: median / 60,
        });
    }
    Ok(())
}

/// Replaces NaN runs by straight lines between their neighbours; runs at the
/// ends take the nearest value.
fn interpolate_gaps(values: &mut [f64]) {
    let mut previous: Option<usize> = None;
    let mut index = 0;
    while index < values.len() {
        if !values[index].is_nan() {
            previous = Some(index);
            index += 1;
            continue;
        }
        let next = (index..values.len()).find(|&j| !values[j].is_nan());
        match (previous, next) {
            (Some(p), Some(n)) => {
                let (from, to) = (values[p], values[n]);
                for (j, value) in values.iter_mut().enumerate().take(n).skip(index) {
                    let fraction = (j - p) as f64 / (n - p) as f64;
                    *value = from + (to - from) * fraction;
                }
            }
            (None, Some(n)) => {
                let fill = values[n];
                values[index..n].fill(fill);
            }
            (Some(p), None) => {
                let fill = values[p];
                values[index..].fill(fill);
            }
            (None, None) => return,
        }
        index = next.unwrap_or(values.len());
    }
}

fn parse_time(cell: &str, line: u64, spec: &SeriesSpec) -> Result<Timestamp> {
    let invalid = |reason: String| AnalyticsError::InvalidTimestamp {
        line,
        value: cell.to_string(),
        format: spec.time_format.clone(),
        reason,
    };
    if let Some(format) = &spec.time_format {
        let broken_down =
            jiff::fmt::strtime::parse(format, cell).map_err(|error| invalid(error.to_string()))?;
        if broken_down.offset().is_some() {
            return broken_down
                .to_timestamp()
                .map_err(|error| invalid(error.to_string()));
        }
        let datetime = broken_down
            .to_datetime()
            .map_err(|error| invalid(error.to_string()))?;
        return to_instant(datetime, &spec.time_zone).map_err(|error| invalid(error.to_string()));
    }
    if let Ok(instant) = cell.parse::<Timestamp>() {
        return Ok(instant);
    }
    let datetime = match cell.parse::<DateTime>() {
        Ok(datetime) => datetime,
        Err(error) => match cell.parse::<Date>() {
            Ok(date) => date.to_datetime(jiff::civil::Time::midnight()),
            Err(_) => return Err(invalid(error.to_string())),
        },
    };
    to_instant(datetime, &spec.time_zone).map_err(|error| invalid(error.to_string()))
}

/// Local time to instant. A time skipped by a daylight-saving gap moves
/// forward by the gap; a repeated time takes its first occurrence.
fn to_instant(
    datetime: DateTime,
    time_zone: &TimeZone,
) -> std::result::Result<Timestamp, jiff::Error> {
    time_zone.to_ambiguous_timestamp(datetime).compatible()
}

/// Parses an IANA time zone name such as `Africa/Casablanca` or `UTC`.
pub fn parse_time_zone(name: &str) -> Result<TimeZone> {
    TimeZone::get(name).map_err(|_| AnalyticsError::UnknownTimeZone {
        name: name.to_string(),
    })
}

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Result<Date> {
    text.trim()
        .parse::<Date>()
        .map_err(|_| AnalyticsError::InvalidDate {
            value: text.to_string(),
        })
}

/// Parses a horizon such as `24h`, `48 hours` or `1d` (a day counts 24
/// hours) into a positive whole number of hours.
pub fn parse_horizon_hours(text: &str) -> Result<usize> {
    let invalid = || AnalyticsError::InvalidHorizon {
        value: text.to_string(),
    };
    let trimmed = text.trim();
    let duration = match trimmed.parse::<SignedDuration>() {
        Ok(duration) => duration,
        Err(_) => trimmed
            .parse::<jiff::Span>()
            .ok()
            .and_then(|span| {
                span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()
            })
            .ok_or_else(invalid)?,
    };
    let seconds = duration.as_secs();
    if seconds <= 0 || seconds % SECONDS_PER_HOUR != 0 || duration.subsec_nanos() != 0 {
        return Err(invalid());
    }
    usize::try_from(seconds / SECONDS_PER_HOUR).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: Option<&str>, zone: &str) -> SeriesSpec {
        SeriesSpec {
            time_column: "time".to_string(),
            value_column: "power".to_string(),
            feature_columns: vec!["temp".to_string()],
            time_format: format.map(str::to_string),
            time_zone: parse_time_zone(zone).unwrap(),
        }
    }

    #[test]
    fn ten_minute_rows_average_per_hour() {
        let mut csv = String::from("time,power,temp\n");
        for minute in (0..120).step_by(10) {
            let value = if minute < 60 { minute } else { 1000 + minute };
            csv.push_str(&format!(
                "1/1/17 {}:{:02},{value},{}\n",
                minute / 60,
                minute % 60,
                minute / 60
            ));
        }
        let (series, _) =
            HourlySeries::read_csv(csv.as_bytes(), &spec(Some("%m/%d/%y %H:%M"), "UTC")).unwrap();
        // Hour 0: mean of 0..50 step 10 = 25; hour 1: 1000 + mean of 60..110 = 1085.
        assert_eq!(series.values(), &[25.0, 1085.0]);
        assert_eq!(series.features()[0].values, vec![0.0, 1.0]);
    }

    #[test]
    fn missing_hour_is_interpolated() {
        let csv = "time,power,temp\n2024-03-01 00:00,10,1\n2024-03-01 01:00,20,1\n2024-03-01 03:00,40,1\n";
        let (series, summary) = HourlySeries::read_csv(csv.as_bytes(), &spec(None, "UTC")).unwrap();
        assert_eq!(series.values(), &[10.0, 20.0, 30.0, 40.0]);
        assert_eq!(series.observed(), &[true, true, false, true]);
        assert_eq!(summary.interpolated_hours, 1);
    }

    #[test]
    fn local_hours_follow_time_zone() {
        // 00:30 in Paris (UTC+1 in winter) is 23:30 UTC the day before.
        let csv = "time,power,temp\n2024-01-10 00:30,5,1\n2024-01-10 01:30,6,1\n";
        let (series, _) =
            HourlySeries::read_csv(csv.as_bytes(), &spec(None, "Europe/Paris")).unwrap();
        assert_eq!(series.zoned_at(0).hour(), 0);
        assert_eq!(series.timestamp_at(0).to_string(), "2024-01-09T23:00:00Z");
    }

    #[test]
    fn empty_value_rows_are_skipped() {
        let csv =
            "time,power,temp\n2024-03-01 00:00,10,1\n2024-03-01 01:00,,1\n2024-03-01 02:00,30,1\n";
        let (_, summary) = HourlySeries::read_csv(csv.as_bytes(), &spec(None, "UTC")).unwrap();
        assert_eq!(summary.rows_without_value, 1);
    }

    #[test]
    fn bad_time_names_line_and_value() {
        let csv = "time,power,temp\n2024-03-01 00:00,10,1\nyesterday,20,1\n";
        let error = HourlySeries::read_csv(csv.as_bytes(), &spec(None, "UTC")).unwrap_err();
        assert!(
            matches!(error, AnalyticsError::InvalidTimestamp { line: 3, ref value, .. } if value == "yesterday")
        );
    }

    #[test]
    fn crlf_bad_time_names_line() {
        let csv = "time,power,temp\r\n2024-03-01 00:00,10,1\r\nyesterday,20,1\r\n";
        let error = HourlySeries::read_csv(csv.as_bytes(), &spec(None, "UTC")).unwrap_err();
        assert!(matches!(
            error,
            AnalyticsError::InvalidTimestamp { line: 3, .. }
        ));
    }

    #[test]
    fn bad_value_names_column() {
        let csv = "time,power,temp\n2024-03-01 00:00,ten,1\n";
        let error = HourlySeries::read_csv(csv.as_bytes(), &spec(None, "UTC")).unwrap_err();
        assert!(
            matches!(error, AnalyticsError::InvalidNumber { ref column, .. } if column == "power")
        );
    }

    #[test]
    fn unknown_value_column_lists_headers() {
        let mut spec = spec(None, "UTC");
        spec.value_column = "Power".to_string();
        let error = HourlySeries::read_csv("time,power,temp\n".as_bytes(), &spec).unwrap_err();
        assert!(
            matches!(error, AnalyticsError::ColumnNotFound { ref available, .. } if available.len() == 3)
        );
    }

    #[test]
    fn empty_feature_column_rejected() {
        let csv = "time,power,temp\n2024-03-01 00:00,10,\n2024-03-01 01:00,20,\n";
        let error = HourlySeries::read_csv(csv.as_bytes(), &spec(None, "UTC")).unwrap_err();
        assert!(matches!(error, AnalyticsError::EmptyColumn { ref column } if column == "temp"));
    }

    #[test]
    fn daily_rows_are_too_coarse() {
        let csv = "time,power,temp\n2024-03-01,1,1\n2024-03-02,2,1\n2024-03-03,3,1\n";
        let error = HourlySeries::read_csv(csv.as_bytes(), &spec(None, "UTC")).unwrap_err();
        assert!(matches!(
            error,
            AnalyticsError::CoarserThanHourly { step_minutes: 1440 }
        ));
    }

    #[test]
    fn horizon_accepts_hours_and_days() {
        assert_eq!(parse_horizon_hours("24h").unwrap(), 24);
        assert_eq!(parse_horizon_hours("2d").unwrap(), 48);
        assert_eq!(parse_horizon_hours("36 hours").unwrap(), 36);
    }

    #[test]
    fn horizon_rejects_partial_hours() {
        assert!(parse_horizon_hours("90m").is_err());
        assert!(parse_horizon_hours("0h").is_err());
        assert!(parse_horizon_hours("soon").is_err());
    }

    #[test]
    fn unknown_time_zone_rejected() {
        assert!(matches!(
            parse_time_zone("Mars/Olympus"),
            Err(AnalyticsError::UnknownTimeZone { .. })
        ));
    }

    #[test]
    fn gaps_interpolate_linearly() {
        let mut values = [f64::NAN, 1.0, f64::NAN, f64::NAN, 4.0, f64::NAN];
        interpolate_gaps(&mut values);
        assert_eq!(values, [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
    }
}
