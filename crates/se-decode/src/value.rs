//! Parsing of single values as devices send them: bare numbers, numbers with
//! a unit suffix, and the many spellings of "no value".

use se_core::{Metric, RejectReason};

/// Parses a bare number. Empty strings, "nan", "None", "null" and infinities
/// are rejected with the reason that names them.
pub fn parse_number(raw: &str) -> Result<f64, RejectReason> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(RejectReason::EmptyValue);
    }
    let lowered = text.to_ascii_lowercase();
    if matches!(lowered.as_str(), "nan" | "-nan" | "none" | "null" | "unknown" | "unavailable" | "n/a" | "[n/a]" | "[not supported]") {
        return Err(RejectReason::NotANumber);
    }
    let value: f64 = text.parse().map_err(|_| RejectReason::NotANumber)?;
    if value.is_nan() {
        return Err(RejectReason::NotANumber);
    }
    if value.is_infinite() {
        return Err(RejectReason::Infinite);
    }
    Ok(value)
}

/// Parses a number followed by `unit`, such as `0.42A` or `231.5 W`. A number
/// with another unit suffix is [`RejectReason::WrongUnit`]; a bare number is accepted.
pub fn parse_with_unit(raw: &str, unit: &str) -> Result<f64, RejectReason> {
    let text = raw.trim();
    let split = text
        .char_indices()
        .find(|(_, c)| c.is_alphabetic() || *c == '%' || *c == '°')
        .map(|(index, _)| index);
    let Some(split) = split else {
        return parse_number(text);
    };
    let (number, suffix) = text.split_at(split);
    if number.trim().is_empty() {
        // A word alone, such as "nan" or "None".
        return parse_number(text);
    }
    if suffix.trim() != unit {
        return Err(RejectReason::WrongUnit);
    }
    parse_number(number)
}

/// Checks a value against the physically possible range of its metric.
pub fn check_range(metric: Metric, value: f64) -> Result<f64, RejectReason> {
    let (min, max) = metric.range();
    if value < 0.0 && min >= 0.0 {
        return Err(RejectReason::Negative);
    }
    if value < min || value > max {
        return Err(RejectReason::OutOfRange);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_value_spellings_are_rejected() {
        assert_eq!(parse_number(""), Err(RejectReason::EmptyValue));
        for text in ["nan", "NaN", "None", "null", "[N/A]", "[Not Supported]"] {
            assert_eq!(parse_number(text), Err(RejectReason::NotANumber), "{text}");
        }
        assert_eq!(parse_number("inf"), Err(RejectReason::Infinite));
    }

    #[test]
    fn unit_suffix_must_match() {
        assert_eq!(parse_with_unit("0.42A", "A"), Ok(0.42));
        assert_eq!(parse_with_unit("231.5 W", "W"), Ok(231.5));
        assert_eq!(parse_with_unit("0.05359kWh", "kWh"), Ok(0.05359));
        assert_eq!(parse_with_unit("18.64V", "A"), Err(RejectReason::WrongUnit));
        assert_eq!(parse_with_unit("nanA", "A"), Err(RejectReason::NotANumber));
        assert_eq!(parse_with_unit("nan", "A"), Err(RejectReason::NotANumber));
        assert_eq!(parse_with_unit("12", "A"), Ok(12.0));
    }

    #[test]
    fn negative_current_is_rejected() {
        assert_eq!(check_range(Metric::Current, -0.1), Err(RejectReason::Negative));
        assert_eq!(check_range(Metric::Power, -5.0), Ok(-5.0));
        assert_eq!(check_range(Metric::Utilization, 140.0), Err(RejectReason::OutOfRange));
    }
}
