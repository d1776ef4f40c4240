//! Validation of query parameters, kept free of HTTP types so it can be
//! unit-tested directly. Each failure names the parameter and its value.

use se_core::{ChannelName, DeviceId, Metric, TimestampMs};

use crate::error::ApiError;

/// Names accepted by `range=`, with their length in milliseconds.
const RANGES: [(&str, i64); 3] = [("1h", 3_600_000), ("24h", 86_400_000), ("7d", 604_800_000)];

/// Names accepted by `range=`, for error messages.
pub const RANGE_NAMES: [&str; 3] = [RANGES[0].0, RANGES[1].0, RANGES[2].0];

/// Span used when a request gives neither `range` nor `from`/`to`.
pub const DEFAULT_RANGE_MS: i64 = 86_400_000;

/// Parses a device id from a path or query.
pub fn device_id(value: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(value).map_err(|_| ApiError::InvalidDeviceId {
        value: value.to_owned(),
    })
}

pub fn channel(value: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(value).map_err(|_| ApiError::InvalidChannel {
        value: value.to_owned(),
    })
}

pub fn metric(value: &str) -> Result<Metric, ApiError> {
    value.parse().map_err(|_| ApiError::UnknownMetric {
        value: value.to_owned(),
    })
}

/// Parses an instant given as milliseconds since the Unix epoch or as an
/// RFC 3339 timestamp with an offset (`2026-01-31T12:00:00Z`).
pub fn instant(name: &'static str, value: &str) -> Result<TimestampMs, ApiError> {
    let invalid = || ApiError::InvalidTime {
        name,
        value: value.to_owned(),
    };
    let trimmed = value.trim();
    if let Ok(ms) = trimmed.parse::<i64>() {
        return Ok(ms);
    }
    trimmed
        .parse::<jiff::Timestamp>()
        .map(|timestamp| timestamp.as_millisecond())
        .map_err(|_| invalid())
}

/// Resolves the time span of a query from `range` or `from`/`to`.
///
/// `range` ends now. `from` without `to` also ends now. Without any of them the
/// span is the last [`DEFAULT_RANGE_MS`]. The span must not be empty.
pub fn time_span(
    range: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    now_ms: TimestampMs,
) -> Result<(TimestampMs, TimestampMs), ApiError> {
    if let Some(range) = range {
        if from.is_some() || to.is_some() {
            return Err(ApiError::RangeAndBounds);
        }
        let length = RANGES
            .iter()
            .find(|(name, _)| *name == range)
            .map(|(_, length)| *length)
            .ok_or_else(|| ApiError::InvalidRange {
                value: range.to_owned(),
            })?;
        return Ok((now_ms - length, now_ms));
    }
    let (from_ms, to_ms) = match (from, to) {
        (None, None) => (now_ms - DEFAULT_RANGE_MS, now_ms),
        (Some(from), None) => (instant("from", from)?, now_ms),
        (None, Some(_)) => return Err(ApiError::MissingParameter { name: "from" }),
        (Some(from), Some(to)) => (instant("from", from)?, instant("to", to)?),
    };
    if from_ms >= to_ms {
        return Err(ApiError::EmptyTimeSpan { from_ms, to_ms });
    }
    Ok((from_ms, to_ms))
}

/// Parses a whole number in `min..=max`, or returns `default` when absent.
pub fn bounded(
    name: &'static str,
    value: Option<&str>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<u32>() {
        Ok(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(ApiError::InvalidNumber {
            name,
            value: value.to_owned(),
            min: min.into(),
            max: max.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn instant_accepts_milliseconds() {
        assert_eq!(instant("from", "1700000000000").unwrap(), 1_700_000_000_000);
    }

    #[test]
    fn instant_accepts_rfc3339() {
        assert_eq!(
            instant("from", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
    }

    #[test]
    fn instant_rejects_plain_date() {
        let error = instant("to", "yesterday").unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidTime { name: "to", .. }),
            "{error:?}"
        );
    }

    #[test]
    fn range_ends_now() {
        assert_eq!(
            time_span(Some("1h"), None, None, NOW).unwrap(),
            (NOW - 3_600_000, NOW)
        );
    }

    #[test]
    fn unknown_range_is_rejected() {
        let error = time_span(Some("2h"), None, None, NOW).unwrap_err();
        assert!(matches!(error, ApiError::InvalidRange { .. }), "{error:?}");
    }

    #[test]
    fn range_with_bounds_is_rejected() {
        let error = time_span(Some("1h"), Some("0"), None, NOW).unwrap_err();
        assert!(matches!(error, ApiError::RangeAndBounds), "{error:?}");
    }

    #[test]
    fn reversed_span_is_rejected() {
        let error = time_span(None, Some("2000"), Some("1000"), NOW).unwrap_err();
        assert!(
            matches!(
                error,
                ApiError::EmptyTimeSpan {
                    from_ms: 2000,
                    to_ms: 1000
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn equal_bounds_are_rejected() {
        let error = time_span(None, Some("1000"), Some("1000"), NOW).unwrap_err();
        assert!(matches!(error, ApiError::EmptyTimeSpan { .. }), "{error:?}");
    }

    #[test]
    fn missing_bounds_use_default_span() {
        assert_eq!(
            time_span(None, None, None, NOW).unwrap(),
            (NOW - DEFAULT_RANGE_MS, NOW)
        );
    }

    #[test]
    fn to_without_from_is_rejected() {
        let error = time_span(None, None, Some("1000"), NOW).unwrap_err();
        assert!(
            matches!(error, ApiError::MissingParameter { name: "from" }),
            "{error:?}"
        );
    }

    #[test]
    fn bounded_rejects_above_max() {
        let error = bounded("limit", Some("100001"), 1000, 1, 100_000).unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidNumber { name: "limit", .. }),
            "{error:?}"
        );
    }

    #[test]
    fn bounded_rejects_negative() {
        assert!(bounded("limit", Some("-1"), 1000, 1, 100_000).is_err());
    }

    #[test]
    fn bounded_uses_default_when_absent() {
        assert_eq!(bounded("limit", None, 1000, 1, 100_000).unwrap(), 1000);
    }

    #[test]
    fn metric_error_names_value() {
        let error = metric("power_kw").unwrap_err();
        let message = error.render(se_core::Lang::En).message;
        assert!(message.contains("\"power_kw\""), "{message}");
    }
}
