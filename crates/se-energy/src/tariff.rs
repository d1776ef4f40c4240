//! Site tariffs: what a kWh and a kW of demand cost, in which currency, and
//! how much CO2 a kWh emits. The JSON format is specified in docs/energy.md.
//!
//! Amounts are [`rust_decimal::Decimal`]: unit prices have more decimals
//! than a currency's minor unit (0.2345 EUR/kWh, 0.185 TND/kWh), so integer
//! minor units would round the price itself, and binary floats would turn
//! 0.1 into 0.1000000000000000055. Decimal keeps 28 significant digits
//! exactly in base 10.

use jiff::civil::{Date, Weekday};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::EnergyError;

/// The tariff of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// ISO 4217 code, such as `TND`, `EUR` or `USD`.
    pub currency: String,
    /// Decimals of the currency's minor unit; from the currency code when absent (3 for TND, 0 for JPY, else 2).
    #[serde(default)]
    pub minor_units: Option<u32>,
    pub energy: EnergyCharge,
    #[serde(default)]
    pub demand: Option<DemandCharge>,
    /// Fixed charge per calendar month.
    #[serde(default)]
    pub fixed_per_month: Option<Decimal>,
    /// Grid emission factor in grams of CO2 per kWh.
    #[serde(default)]
    pub co2_g_per_kwh: Option<f64>,
    /// Local dates billed as holidays.
    #[serde(default)]
    pub holidays: Vec<Date>,
    /// Days billed as weekend; Saturday and Sunday when absent.
    #[serde(default = "default_weekend")]
    pub weekend: Vec<DayOfWeek>,
}

fn default_weekend() -> Vec<DayOfWeek> {
    vec![DayOfWeek::Saturday, DayOfWeek::Sunday]
}

/// Price structure of energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnergyCharge {
    /// One price for every kWh.
    Flat { price_per_kwh: Decimal },
    /// A price per local hour, by day type.
    TimeOfUse { periods: Vec<TouPeriod> },
    /// Prices by block of monthly consumption: the first `up_to_kwh` at the
    /// first price, the next ones at the next price, and so on.
    Tiered { blocks: Vec<TierBlock> },
}

/// One time-of-use period, such as peak hours on weekdays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouPeriod {
    pub name: String,
    pub price_per_kwh: Decimal,
    pub days: Vec<DayType>,
    /// Local hour ranges `[from, to)`, such as `[[8, 12], [18, 22]]`; 24 ends the day.
    pub hours: Vec<[u8; 2]>,
}

/// One block of a tiered tariff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierBlock {
    /// Cumulative monthly kWh at which the block ends; `null` for the last block.
    pub up_to_kwh: Option<Decimal>,
    pub price_per_kwh: Decimal,
}

/// A charge on the highest demand of each calendar month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandCharge {
    pub price_per_kw: Decimal,
    /// Demand is the average power over intervals of this many minutes,
    /// aligned on the local hour; it must divide 60.
    #[serde(default = "default_demand_interval")]
    pub interval_minutes: u32,
}

fn default_demand_interval() -> u32 {
    15
}

/// Kind of day for time-of-use prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayType {
    Weekday,
    Weekend,
    Holiday,
    /// Every day: weekdays, weekends and holidays.
    All,
}

/// Day of the week, for the weekend setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayOfWeek {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl DayOfWeek {
    fn of(weekday: Weekday) -> DayOfWeek {
        match weekday {
            Weekday::Monday => DayOfWeek::Monday,
            Weekday::Tuesday => DayOfWeek::Tuesday,
            Weekday::Wednesday => DayOfWeek::Wednesday,
            Weekday::Thursday => DayOfWeek::Thursday,
            Weekday::Friday => DayOfWeek::Friday,
            Weekday::Saturday => DayOfWeek::Saturday,
            Weekday::Sunday => DayOfWeek::Sunday,
        }
    }
}

/// Decimals of an ISO 4217 currency's minor unit, such as 3 for TND and 0
/// for JPY. A code without one in the standard (XAU, XXX) gets 2.
pub fn currency_minor_units(code: &str) -> u32 {
    iso_currency::Currency::from_code(code).and_then(|currency| currency.exponent()).map_or(2, u32::from)
}

/// Returns whether `code` is an ISO 4217 currency code, such as EUR or TND.
pub fn is_iso_currency(code: &str) -> bool {
    iso_currency::Currency::from_code(code).is_some()
}

/// Reads each top-level field of a tariff on its own and lists every one
/// that is missing, unknown or of the wrong type, so that one wrong value
/// does not hide the others. Returns `None` when no field alone is wrong.
fn field_errors(value: &serde_json::Value) -> Option<String> {
    fn check<T: serde::de::DeserializeOwned>(problems: &mut Vec<String>, name: &str, value: Option<&serde_json::Value>, required: bool) {
        match value {
            None if required => problems.push(format!("missing field `{name}`")),
            None => {}
            Some(value) => {
                if let Err(error) = serde_json::from_value::<T>(value.clone()) {
                    problems.push(format!("{name}: {error}"));
                }
            }
        }
    }

    let Some(object) = value.as_object() else {
        return Some("a tariff is a JSON object, such as {\"currency\": \"TND\", \"energy\": {...}}".to_owned());
    };
    let mut problems = Vec::new();
    check::<String>(&mut problems, "currency", object.get("currency"), true);
    check::<u32>(&mut problems, "minor_units", object.get("minor_units"), false);
    check::<EnergyCharge>(&mut problems, "energy", object.get("energy"), true);
    check::<Option<DemandCharge>>(&mut problems, "demand", object.get("demand"), false);
    check::<Option<Decimal>>(&mut problems, "fixed_per_month", object.get("fixed_per_month"), false);
    check::<Option<f64>>(&mut problems, "co2_g_per_kwh", object.get("co2_g_per_kwh"), false);
    check::<Vec<Date>>(&mut problems, "holidays", object.get("holidays"), false);
    check::<Vec<DayOfWeek>>(&mut problems, "weekend", object.get("weekend"), false);
    const FIELDS: [&str; 8] = ["currency", "minor_units", "energy", "demand", "fixed_per_month", "co2_g_per_kwh", "holidays", "weekend"];
    for key in object.keys().filter(|key| !FIELDS.contains(&key.as_str())) {
        problems.push(format!("unknown field `{key}`, expected one of {}", FIELDS.join(", ")));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

impl Tariff {
    /// Parses and validates a tariff from JSON.
    pub fn from_json(text: &str) -> Result<Tariff, EnergyError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|error| EnergyError::TariffJson(error.to_string()))?;
        let tariff: Tariff = match serde_json::from_value(value.clone()) {
            Ok(tariff) => tariff,
            // serde stops at the first wrong value; list one per field instead.
            Err(error) => return Err(EnergyError::TariffJson(field_errors(&value).unwrap_or_else(|| error.to_string()))),
        };
        tariff.validate()?;
        Ok(tariff)
    }

    /// Decimals of the currency's minor unit.
    pub fn minor_units(&self) -> u32 {
        self.minor_units.unwrap_or_else(|| currency_minor_units(&self.currency))
    }

    /// Day type of a local date: holiday, then weekend, then weekday. A
    /// holiday is billed as weekend when no time-of-use period names holidays.
    pub fn day_type(&self, date: Date) -> DayType {
        if self.holidays.contains(&date) && self.prices_holidays() {
            return DayType::Holiday;
        }
        if self.holidays.contains(&date) || self.weekend.contains(&DayOfWeek::of(date.weekday())) {
            DayType::Weekend
        } else {
            DayType::Weekday
        }
    }

    fn prices_holidays(&self) -> bool {
        match &self.energy {
            EnergyCharge::TimeOfUse { periods } => periods.iter().any(|p| p.days.contains(&DayType::Holiday)),
            _ => false,
        }
    }

    /// Finds the time-of-use period of a day type and local hour (0 to 23).
    pub fn period_at(&self, day: DayType, hour: u8) -> Option<&TouPeriod> {
        let EnergyCharge::TimeOfUse { periods } = &self.energy else {
            return None;
        };
        periods.iter().find(|period| period.applies(day) && period.hours.iter().any(|[from, to]| *from <= hour && hour < *to))
    }

    /// Checks the whole tariff; the error lists every problem found.
    pub fn validate(&self) -> Result<(), EnergyError> {
        let mut problems = Vec::new();
        if !is_iso_currency(&self.currency) {
            problems.push(format!("currency {:?} is not an ISO 4217 code; use one such as TND, EUR or USD, in capital letters", self.currency));
        }
        if let Some(units) = self.minor_units {
            if units > 6 {
                problems.push(format!("minor_units {units} is too many; currencies use 0 to 3 decimals"));
            }
        }
        match &self.energy {
            EnergyCharge::Flat { price_per_kwh } => check_price(&mut problems, "energy.price_per_kwh", *price_per_kwh),
            EnergyCharge::TimeOfUse { periods } => self.check_time_of_use(&mut problems, periods),
            EnergyCharge::Tiered { blocks } => check_tiers(&mut problems, blocks),
        }
        if let Some(demand) = &self.demand {
            check_price(&mut problems, "demand.price_per_kw", demand.price_per_kw);
            if demand.interval_minutes == 0 || 60 % demand.interval_minutes != 0 {
                problems.push(format!("demand.interval_minutes {} must divide 60, such as 15 or 30", demand.interval_minutes));
            }
        }
        if let Some(fixed) = self.fixed_per_month {
            check_price(&mut problems, "fixed_per_month", fixed);
        }
        if let Some(factor) = self.co2_g_per_kwh {
            if !(factor.is_finite() && factor >= 0.0) {
                problems.push(format!("co2_g_per_kwh must be 0 or more grams per kWh, got {factor}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EnergyError::InvalidTariff { problems })
        }
    }

    fn check_time_of_use(&self, problems: &mut Vec<String>, periods: &[TouPeriod]) {
        if periods.is_empty() {
            problems.push("energy.periods is empty; list at least one time-of-use period".to_owned());
            return;
        }
        for period in periods {
            check_price(problems, &format!("period {:?} price_per_kwh", period.name), period.price_per_kwh);
            if period.days.is_empty() {
                problems.push(format!("period {:?} has no days; use weekday, weekend, holiday or all", period.name));
            }
            for [from, to] in &period.hours {
                if from >= to || *to > 24 {
                    problems.push(format!("period {:?} has hours [{from}, {to}]; use [from, to) with 0 <= from < to <= 24", period.name));
                }
            }
        }
        let mut day_types = vec![DayType::Weekday, DayType::Weekend];
        if self.prices_holidays() {
            day_types.push(DayType::Holiday);
        }
        for day in day_types {
            check_day_coverage(problems, periods, day);
        }
    }
}

impl TouPeriod {
    fn applies(&self, day: DayType) -> bool {
        self.days.contains(&day) || self.days.contains(&DayType::All)
    }
}

fn check_price(problems: &mut Vec<String>, name: &str, price: Decimal) {
    if price.is_sign_negative() && !price.is_zero() {
        problems.push(format!("{name} is {price}; prices cannot be negative"));
    }
}

fn day_name(day: DayType) -> &'static str {
    match day {
        DayType::Weekday => "weekday",
        DayType::Weekend => "weekend",
        DayType::Holiday => "holiday",
        DayType::All => "every day",
    }
}

/// Checks that each hour of a day type has exactly one period, and names
/// overlapping and uncovered hours as ranges (`08-12`).
fn check_day_coverage(problems: &mut Vec<String>, periods: &[TouPeriod], day: DayType) {
    let mut owners: Vec<Vec<&str>> = vec![Vec::new(); 24];
    for period in periods.iter().filter(|p| p.applies(day)) {
        for [from, to] in &period.hours {
            for hour in (*from).min(24)..(*to).min(24) {
                owners[usize::from(hour)].push(&period.name);
            }
        }
    }
    for (range, names) in hour_ranges(&owners) {
        match names.len() {
            0 => problems.push(format!("no time-of-use period covers {} hours {range}; add one", day_name(day))),
            1 => {}
            _ => problems.push(format!(
                "time-of-use periods {} all cover {} hours {range}; each hour of a day needs exactly one period",
                names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" and "),
                day_name(day)
            )),
        }
    }
}

/// Groups consecutive hours with the same owners into `HH-HH` ranges.
fn hour_ranges<'a>(owners: &[Vec<&'a str>]) -> Vec<(String, Vec<&'a str>)> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for hour in 1..=owners.len() {
        if hour == owners.len() || owners[hour] != owners[start] {
            ranges.push((format!("{start:02}-{hour:02}"), owners[start].clone()));
            start = hour;
        }
    }
    ranges
}

fn check_tiers(problems: &mut Vec<String>, blocks: &[TierBlock]) {
    if blocks.is_empty() {
        problems.push("energy.blocks is empty; list at least one block, the last with \"up_to_kwh\": null".to_owned());
        return;
    }
    let mut previous = Decimal::ZERO;
    for (index, block) in blocks.iter().enumerate() {
        check_price(problems, &format!("block {} price_per_kwh", index + 1), block.price_per_kwh);
        let last = index + 1 == blocks.len();
        match block.up_to_kwh {
            Some(limit) => {
                if limit <= previous {
                    problems.push(format!("block {} ends at {limit} kWh, not above the previous block's {previous} kWh; list blocks in increasing order", index + 1));
                } else {
                    previous = limit;
                }
                if last {
                    problems.push(format!("the last block ends at {limit} kWh; set its up_to_kwh to null so that every kWh has a price"));
                }
            }
            None if !last => problems.push(format!("block {} has no up_to_kwh but is not the last; only the last block is open-ended", index + 1)),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tou(periods: &str) -> String {
        format!(r#"{{"currency": "TND", "energy": {{"type": "time_of_use", "periods": [{periods}]}}}}"#)
    }

    #[test]
    fn overlapping_hours_are_named() {
        let text = tou(r#"{"name": "peak", "price_per_kwh": "0.350", "days": ["all"], "hours": [[8, 12]]},
                          {"name": "day", "price_per_kwh": "0.200", "days": ["all"], "hours": [[6, 10], [12, 24]]},
                          {"name": "night", "price_per_kwh": "0.120", "days": ["all"], "hours": [[0, 6], [10, 12]]}"#);
        let error = Tariff::from_json(&text).unwrap_err().to_string();
        assert!(error.contains("\"peak\" and \"day\" all cover weekday hours 08-10"), "{error}");
        assert!(error.contains("\"peak\" and \"night\" all cover weekday hours 10-12"), "{error}");
    }

    #[test]
    fn uncovered_hours_are_named() {
        let text = tou(r#"{"name": "day", "price_per_kwh": "0.2", "days": ["weekday"], "hours": [[0, 24]]},
                          {"name": "weekend", "price_per_kwh": "0.1", "days": ["weekend"], "hours": [[0, 20]]}"#);
        let error = Tariff::from_json(&text).unwrap_err().to_string();
        assert!(error.contains("no time-of-use period covers weekend hours 20-24"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"{"currency": "euro", "energy": {"type": "tiered", "blocks": [{"up_to_kwh": "100", "price_per_kwh": "-0.1"}, {"up_to_kwh": "50", "price_per_kwh": "0.2"}]}, "demand": {"price_per_kw": "10", "interval_minutes": 7}}"#;
        let EnergyError::InvalidTariff { problems } = Tariff::from_json(text).unwrap_err() else {
            panic!("expected InvalidTariff");
        };
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let error = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": 0.25, "vat": 0.2}}"#).unwrap_err();
        assert!(error.to_string().contains("vat"), "{error}");
    }

    #[test]
    fn numbers_parse_as_exact_decimals() {
        let tariff = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": 0.2345}}"#).unwrap();
        assert_eq!(tariff.energy, EnergyCharge::Flat { price_per_kwh: Decimal::new(2345, 4) });
    }

    #[test]
    fn wrong_types_listed_together() {
        let text = r#"{"currency": "TND", "energy": {"type": "flat", "price_per_kwh": "abc"}, "holidays": ["2025-02-30"], "weekend": ["funday"]}"#;
        let error = Tariff::from_json(text).unwrap_err().to_string();
        for field in ["energy: ", "holidays: ", "weekend: "] {
            assert!(error.contains(field), "names {field}: {error}");
        }
        let error = Tariff::from_json(r#"{"energy": {"type": "flat", "price_per_kwh": "1"}, "tarif": 3}"#).unwrap_err().to_string();
        assert!(error.contains("missing field `currency`"), "{error}");
        assert!(error.contains("unknown field `tarif`"), "{error}");
    }

    #[test]
    fn made_up_currency_rejected() {
        let error = Tariff::from_json(r#"{"currency": "XYZ", "energy": {"type": "flat", "price_per_kwh": "1"}}"#).unwrap_err().to_string();
        assert!(error.contains("\"XYZ\" is not an ISO 4217 code"), "{error}");
        assert!(is_iso_currency("TND"));
        assert!(!is_iso_currency("tnd"), "codes are capital letters");
    }

    #[test]
    fn minor_units_follow_currency() {
        let flat = |code: &str| Tariff::from_json(&format!(r#"{{"currency": "{code}", "energy": {{"type": "flat", "price_per_kwh": "1"}}}}"#)).unwrap();
        assert_eq!(flat("TND").minor_units(), 3);
        assert_eq!(flat("JPY").minor_units(), 0);
        assert_eq!(flat("EUR").minor_units(), 2);
    }

    #[test]
    fn holiday_falls_back_to_weekend() {
        let text = r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "1"}, "holidays": ["2024-05-01"]}"#;
        let tariff = Tariff::from_json(text).unwrap();
        assert_eq!(tariff.day_type(jiff::civil::date(2024, 5, 1)), DayType::Weekend);
        assert_eq!(tariff.day_type(jiff::civil::date(2024, 5, 2)), DayType::Weekday);
        assert_eq!(tariff.day_type(jiff::civil::date(2024, 5, 4)), DayType::Weekend);
    }
}
