//! Energy totals per local hour, day, week, month or year of an IANA time zone.
//!
//! Periods follow the site's civil calendar, so a day in Europe/Berlin lasts
//! 23 hours on the spring DST change and 25 hours on the autumn one, and
//! April 2024 there starts at 2024-03-31T22:00Z. A piece of energy that spans
//! a period boundary is split in proportion to time. That assumes constant
//! power within the piece, and counters that report often keep the error small.
//! Weeks start on Monday (ISO 8601).

use std::collections::BTreeMap;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use se_core::TimestampMs;

use crate::series::{EnergyPiece, EnergyResult, UnknownSpan};
use crate::EnergyError;

/// Length of a calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// Energy of one calendar period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodTotal {
    /// Local name of the period: `2024-03-31T02:00+02:00`, `2024-03-31`, `2024-W13`, `2024-04` or `2024`.
    pub label: String,
    pub start_ms: TimestampMs,
    pub end_ms: TimestampMs,
    /// Energy of the known spans inside the period, in Wh.
    pub wh: f64,
    /// Time inside the period whose energy is unknown, in milliseconds.
    pub unknown_ms: i64,
}

impl PeriodTotal {
    /// Energy in Wh when the whole period is known; `None` if part of it is unknown.
    pub fn total_wh(&self) -> Option<f64> {
        (self.unknown_ms == 0).then_some(self.wh)
    }
}

/// Bounds of the period that contains an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodBounds {
    pub label: String,
    pub start_ms: TimestampMs,
    pub end_ms: TimestampMs,
}

/// Returns the local period of `tz` that contains `ts_ms`.
pub fn period_of(ts_ms: TimestampMs, period: Period, tz: &TimeZone) -> Result<PeriodBounds, EnergyError> {
    let time_error = |_| EnergyError::InvalidTime { ts_ms };
    let zoned = Timestamp::from_millisecond(ts_ms).map_err(time_error)?.to_zoned_datetime(tz.clone());
    let date = zoned.date();
    let (first, next, label) = match period {
        Period::Hour => return hour_of(ts_ms, &zoned, tz),
        Period::Day => (date, date.tomorrow().map_err(time_error)?, date.to_string()),
        Period::Week => {
            let monday = date.checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days()).map_err(time_error)?;
            let week = date.iso_week_date();
            let label = format!("{}-W{:02}", week.year(), week.week());
            (monday, monday.checked_add(7.days()).map_err(time_error)?, label)
        }
        Period::Month => {
            let first = date.first_of_month();
            (first, first.checked_add(1.month()).map_err(time_error)?, format!("{:04}-{:02}", date.year(), date.month()))
        }
        Period::Year => {
            let first = date.first_of_year();
            (first, first.checked_add(1.year()).map_err(time_error)?, format!("{:04}", date.year()))
        }
    };
    Ok(PeriodBounds { label, start_ms: local_midnight(first, tz, ts_ms)?, end_ms: local_midnight(next, tz, ts_ms)? })
}

/// Local hour that contains `ts_ms`, computed from the instant so that the
/// repeated hour of a DST fold is a period of its own.
fn hour_of(ts_ms: TimestampMs, zoned: &jiff::ZonedDateTime, tz: &TimeZone) -> Result<PeriodBounds, EnergyError> {
    let into_hour = i64::from(zoned.minute()) * 60_000 + i64::from(zoned.second()) * 1000 + i64::from(zoned.millisecond());
    let start_ms = ts_ms - into_hour;
    let start = Timestamp::from_millisecond(start_ms).map_err(|_| EnergyError::InvalidTime { ts_ms })?.to_zoned_datetime(tz.clone());
    let label = start.strftime("%Y-%m-%dT%H:%M%:z").to_string();
    Ok(PeriodBounds { label, start_ms, end_ms: start_ms + 3_600_000 })
}

/// First instant of a local date (after the gap when midnight is skipped).
fn local_midnight(date: Date, tz: &TimeZone, ts_ms: TimestampMs) -> Result<TimestampMs, EnergyError> {
    let midnight = date.to_datetime(Time::midnight());
    let ts = tz.to_ambiguous_timestamp(midnight).compatible().map_err(|_| EnergyError::InvalidTime { ts_ms })?;
    Ok(ts.as_millisecond())
}

/// Sums an energy result per local period, with the unknown time of each.
pub fn totals_by_period(result: &EnergyResult, period: Period, tz: &TimeZone) -> Result<Vec<PeriodTotal>, EnergyError> {
    totals_of_pieces(&result.pieces, &result.unknown_spans, period, tz)
}

/// Sums pieces of energy per local period. Only periods that some piece or
/// unknown span touches are returned, in time order.
pub fn totals_of_pieces(pieces: &[EnergyPiece], unknown: &[UnknownSpan], period: Period, tz: &TimeZone) -> Result<Vec<PeriodTotal>, EnergyError> {
    let mut totals: BTreeMap<TimestampMs, PeriodTotal> = BTreeMap::new();
    for piece in pieces {
        for (bounds, share) in split_by_period(piece.start_ms, piece.end_ms, period, tz)? {
            entry(&mut totals, bounds).wh += piece.wh * share;
        }
    }
    let mut spans: Vec<(TimestampMs, TimestampMs)> = unknown.iter().map(|s| (s.start_ms, s.end_ms)).collect();
    spans.sort_unstable();
    let mut covered_until = TimestampMs::MIN;
    for (start, end) in spans {
        let start = start.max(covered_until);
        if end <= start {
            continue;
        }
        covered_until = end;
        for (bounds, share) in split_by_period(start, end, period, tz)? {
            let length = (end.saturating_sub(start) as f64 * share).round() as i64;
            entry(&mut totals, bounds).unknown_ms += length;
        }
    }
    Ok(totals.into_values().collect())
}

fn entry(totals: &mut BTreeMap<TimestampMs, PeriodTotal>, bounds: PeriodBounds) -> &mut PeriodTotal {
    totals.entry(bounds.start_ms).or_insert(PeriodTotal { label: bounds.label, start_ms: bounds.start_ms, end_ms: bounds.end_ms, wh: 0.0, unknown_ms: 0 })
}

/// Splits `[start, end]` at period boundaries; returns each period with the
/// fraction of the span inside it. A span of zero length belongs wholly to
/// the period of its start.
pub(crate) fn split_by_period(start: TimestampMs, end: TimestampMs, period: Period, tz: &TimeZone) -> Result<Vec<(PeriodBounds, f64)>, EnergyError> {
    split_span(start, end, |ts| period_of(ts, period, tz), |bounds| bounds.end_ms)
}

/// Splits `[start, end]` into the buckets that `bucket_of` returns, with the
/// fraction of the span inside each. `end_of` gives a bucket's end, which
/// must lie after the instant the bucket was found for.
pub(crate) fn split_span<B>(
    start: TimestampMs,
    end: TimestampMs,
    bucket_of: impl Fn(TimestampMs) -> Result<B, EnergyError>,
    end_of: impl Fn(&B) -> TimestampMs,
) -> Result<Vec<(B, f64)>, EnergyError> {
    let length = end.saturating_sub(start);
    let mut parts = Vec::new();
    let mut cursor = start;
    loop {
        let bucket = bucket_of(cursor)?;
        if length <= 0 {
            parts.push((bucket, 1.0));
            return Ok(parts);
        }
        let next = end_of(&bucket);
        let share = next.min(end).saturating_sub(cursor) as f64 / length as f64;
        parts.push((bucket, share));
        if next >= end || next <= cursor {
            return Ok(parts);
        }
        cursor = next;
    }
}
