//! Tariff pricing: flat, time of use, tiers, demand, rounding and CO2.

use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use se_energy::{cost, cost_of_span, CostKind, Decimal, EnergyPiece, Tariff, Window};

const HOUR: i64 = 3_600_000;

fn ms(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_millisecond()
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

/// `kwh_per_hour` in each hour from `from` for `hours` hours.
fn hourly(from: &str, hours: i64, kwh_per_hour: f64) -> Vec<EnergyPiece> {
    let start = ms(from);
    (0..hours).map(|h| EnergyPiece { start_ms: start + h * HOUR, end_ms: start + (h + 1) * HOUR, wh: kwh_per_hour * 1000.0 }).collect()
}

const TIME_OF_USE: &str = r#"{
    "currency": "EUR",
    "energy": {"type": "time_of_use", "periods": [
        {"name": "peak", "price_per_kwh": "0.30", "days": ["weekday"], "hours": [[8, 20]]},
        {"name": "off_peak", "price_per_kwh": "0.10", "days": ["weekday"], "hours": [[0, 8], [20, 24]]},
        {"name": "weekend", "price_per_kwh": "0.05", "days": ["weekend"], "hours": [[0, 24]]},
        {"name": "holiday", "price_per_kwh": "0.01", "days": ["holiday"], "hours": [[0, 24]]}
    ]},
    "holidays": ["2024-05-01"]
}"#;

#[test]
fn flat_tariff_prices_every_kwh() {
    let tariff = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.25"}}"#).unwrap();
    let bill = cost(&hourly("2024-06-03T00:00Z", 10, 1.0), &tariff, &berlin()).unwrap();
    assert_eq!(bill.energy_kwh, dec("10"));
    assert_eq!(bill.total, dec("2.50"));
    assert_eq!(bill.currency, "EUR");
}

#[test]
fn time_of_use_follows_local_hours() {
    let tariff = Tariff::from_json(TIME_OF_USE).unwrap();
    // Monday 2024-06-03, local midnight to midnight (CEST, UTC+2).
    let bill = cost(&hourly("2024-06-02T22:00Z", 24, 1.0), &tariff, &berlin()).unwrap();
    let line = |label: &str| bill.lines.iter().find(|l| l.label == label).unwrap();
    assert_eq!(line("peak").quantity, dec("12"));
    assert_eq!(line("off_peak").quantity, dec("12"));
    assert_eq!(bill.total, dec("4.80"));
}

#[test]
fn weekend_and_holiday_prices_apply() {
    let tariff = Tariff::from_json(TIME_OF_USE).unwrap();
    // Saturday 2024-06-08 and Wednesday 2024-05-01 (a holiday), local days.
    let mut pieces = hourly("2024-06-07T22:00Z", 24, 1.0);
    pieces.extend(hourly("2024-04-30T22:00Z", 24, 1.0));
    let bill = cost(&pieces, &tariff, &berlin()).unwrap();
    let amount = |label: &str| bill.lines.iter().find(|l| l.label == label).unwrap().amount;
    assert_eq!(amount("weekend"), dec("1.20"));
    assert_eq!(amount("holiday"), dec("0.24"));
    assert!(bill.lines.iter().all(|l| l.label != "peak"));
}

#[test]
fn tiers_fill_in_order_each_month() {
    let tariff = Tariff::from_json(
        r#"{"currency": "TND", "energy": {"type": "tiered", "blocks": [
            {"up_to_kwh": "100", "price_per_kwh": "0.176"},
            {"up_to_kwh": "300", "price_per_kwh": "0.218"},
            {"up_to_kwh": null, "price_per_kwh": "0.341"}]}}"#,
    )
    .unwrap();
    // 150 kWh in May, then 50 kWh in June: June starts again in block 1.
    let mut pieces = hourly("2024-05-10T00:00Z", 150, 1.0);
    pieces.extend(hourly("2024-06-10T00:00Z", 50, 1.0));
    let bill = cost(&pieces, &tariff, &TimeZone::get("Africa/Tunis").unwrap()).unwrap();
    let quantities: Vec<(&str, &str, Decimal)> = bill.lines.iter().map(|l| (l.month.as_str(), l.label.as_str(), l.quantity)).collect();
    assert_eq!(quantities, vec![("2024-05", "block 1", dec("100")), ("2024-05", "block 2", dec("50")), ("2024-06", "block 1", dec("50"))]);
    // 100 x 0.176 + 50 x 0.218 + 50 x 0.176, in millimes.
    assert_eq!(bill.total, dec("37.300"));
}

#[test]
fn demand_charge_uses_peak_interval() {
    let tariff = Tariff::from_json(
        r#"{"currency": "USD", "energy": {"type": "flat", "price_per_kwh": "0.10"}, "demand": {"price_per_kw": "12.50", "interval_minutes": 15}}"#,
    )
    .unwrap();
    let mut pieces = hourly("2024-06-03T00:00Z", 4, 1.0);
    // 2 kWh within one 15-minute interval: 8 kW of demand.
    pieces.push(EnergyPiece { start_ms: ms("2024-06-03T05:00Z"), end_ms: ms("2024-06-03T05:15Z"), wh: 2000.0 });
    let bill = cost(&pieces, &tariff, &TimeZone::UTC).unwrap();
    let demand = bill.lines.iter().find(|l| l.kind == CostKind::Demand).unwrap();
    assert_eq!(demand.quantity, dec("8"));
    assert_eq!(demand.amount, dec("100.00"));
    assert_eq!(bill.total, dec("100.60"));
}

#[test]
fn amounts_round_to_minor_unit() {
    let tariff = Tariff::from_json(r#"{"currency": "TND", "energy": {"type": "flat", "price_per_kwh": "0.1234"}}"#).unwrap();
    let pieces = [EnergyPiece { start_ms: 0, end_ms: HOUR, wh: 1500.0 }];
    let bill = cost(&pieces, &tariff, &TimeZone::UTC).unwrap();
    // 1.5 x 0.1234 = 0.1851 TND, rounded to millimes.
    assert_eq!(bill.total, dec("0.185"));
}

#[test]
fn fixed_charge_per_month() {
    let tariff = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.2"}, "fixed_per_month": "9.99"}"#).unwrap();
    let mut pieces = hourly("2024-05-31T20:00Z", 1, 1.0);
    pieces.extend(hourly("2024-06-01T20:00Z", 1, 1.0));
    let bill = cost(&pieces, &tariff, &TimeZone::UTC).unwrap();
    let fixed = bill.lines.iter().filter(|l| l.kind == CostKind::Fixed).count();
    assert_eq!(fixed, 2);
    assert_eq!(bill.total, dec("20.38"));
}

#[test]
fn co2_from_grid_factor() {
    let tariff = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.2"}, "co2_g_per_kwh": 460}"#).unwrap();
    let bill = cost(&hourly("2024-06-03T00:00Z", 10, 1.0), &tariff, &TimeZone::UTC).unwrap();
    let co2 = bill.co2_kg.unwrap();
    assert!((co2 - 4.6).abs() < 1e-9, "{co2}");
}

#[test]
fn changed_tariff_recomputes_past_month() {
    let pieces = hourly("2024-03-01T00:00Z", 100, 1.0);
    let old = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.20"}}"#).unwrap();
    let new = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.25"}}"#).unwrap();
    assert_eq!(cost(&pieces, &old, &TimeZone::UTC).unwrap().total, dec("20.00"));
    assert_eq!(cost(&pieces, &new, &TimeZone::UTC).unwrap().total, dec("25.00"));
    assert_eq!(cost(&pieces, &old, &TimeZone::UTC).unwrap().total, dec("20.00"));
}

#[test]
fn piece_across_price_change_is_split() {
    let tariff = Tariff::from_json(TIME_OF_USE).unwrap();
    // 07:30 to 08:30 local on a Monday: half off-peak, half peak.
    let pieces = [EnergyPiece { start_ms: ms("2024-06-03T05:30Z"), end_ms: ms("2024-06-03T06:30Z"), wh: 2000.0 }];
    let bill = cost(&pieces, &tariff, &berlin()).unwrap();
    assert_eq!(bill.total, dec("0.40"));
}

#[test]
fn invalid_piece_is_an_error() {
    let tariff = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.2"}}"#).unwrap();
    let pieces = [EnergyPiece { start_ms: 0, end_ms: HOUR, wh: f64::NAN }];
    assert!(cost(&pieces, &tariff, &TimeZone::UTC).is_err());
}

#[test]
fn documented_tariff_example_is_valid() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/energy.md")).unwrap();
    let example = docs.split("```json").nth(1).and_then(|rest| rest.split("```").next()).unwrap();
    let tariff = Tariff::from_json(example).unwrap();
    assert_eq!(tariff.minor_units(), 3);
    let bill = cost(&hourly("2025-01-06T00:00Z", 24, 1.0), &tariff, &TimeZone::get("Africa/Tunis").unwrap()).unwrap();
    assert_eq!(bill.energy_kwh, dec("24"));
}

/// Time of use with a demand charge and a fixed charge, in Tunisian dinars.
const TND_WITH_CHARGES: &str = r#"{
    "currency": "TND",
    "energy": {"type": "time_of_use", "periods": [
        {"name": "peak", "price_per_kwh": "0.350", "days": ["all"], "hours": [[8, 20]]},
        {"name": "night", "price_per_kwh": "0.120", "days": ["all"], "hours": [[0, 8], [20, 24]]}
    ]},
    "demand": {"price_per_kw": "8.500", "interval_minutes": 15},
    "fixed_per_month": "4.000"
}"#;

fn tunis() -> TimeZone {
    TimeZone::get("Africa/Tunis").unwrap()
}

fn span(from: &str, to: &str) -> Window {
    Window { start_ms: ms(from), end_ms: ms(to) }
}

#[test]
fn day_span_prorates_fixed_charge() {
    let tariff = Tariff::from_json(TND_WITH_CHARGES).unwrap();
    // 2025-01-14 in Tunis (UTC+1), 1 kWh in each local hour.
    let day = span("2025-01-13T23:00Z", "2025-01-14T23:00Z");
    let bill = cost_of_span(&hourly("2025-01-13T23:00Z", 24, 1.0), &tariff, &tunis(), day).unwrap();
    let fixed = bill.lines.iter().find(|l| l.kind == CostKind::Fixed).unwrap();
    // One day of the 31 of January: 0.032258 month, 4.000 x 0.032258 = 0.129 TND.
    assert_eq!(fixed.quantity, dec("0.032258"));
    assert_eq!(fixed.unit, "month");
    assert_eq!(fixed.amount, dec("0.129"));
}

#[test]
fn day_span_leaves_demand_out_of_total() {
    let tariff = Tariff::from_json(TND_WITH_CHARGES).unwrap();
    let day = span("2025-01-13T23:00Z", "2025-01-14T23:00Z");
    let bill = cost_of_span(&hourly("2025-01-13T23:00Z", 24, 1.0), &tariff, &tunis(), day).unwrap();
    assert!(bill.lines.iter().all(|l| l.kind != CostKind::Demand), "{:?}", bill.lines);
    assert_eq!(bill.excluded_demand.len(), 1);
    // 1 kWh per hour is 1 kW in every 15-minute interval.
    assert_eq!(bill.excluded_demand[0].quantity, dec("1"));
    assert_eq!(bill.excluded_demand[0].amount, dec("8.500"));
    // 12 peak hours x 0.350 + 12 night hours x 0.120 + 0.129 fixed.
    assert_eq!(bill.total, dec("5.769"));
}

#[test]
fn total_is_sum_of_lines_for_day_span() {
    let tariff = Tariff::from_json(TND_WITH_CHARGES).unwrap();
    let day = span("2025-01-13T23:00Z", "2025-01-14T23:00Z");
    let bill = cost_of_span(&hourly("2025-01-13T23:00Z", 24, 1.0), &tariff, &tunis(), day).unwrap();
    let sum: Decimal = bill.lines.iter().map(|l| l.amount).sum();
    assert_eq!(bill.total, sum);
}

#[test]
fn month_span_keeps_full_charges() {
    let tariff = Tariff::from_json(TND_WITH_CHARGES).unwrap();
    let pieces = hourly("2025-01-13T23:00Z", 24, 1.0);
    let month = span("2024-12-31T23:00Z", "2025-01-31T23:00Z");
    let bill = cost_of_span(&pieces, &tariff, &tunis(), month).unwrap();
    assert_eq!(bill, cost(&pieces, &tariff, &tunis()).unwrap());
    assert!(bill.excluded_demand.is_empty());
    assert_eq!(bill.total, dec("18.140"));
}

#[test]
fn days_of_month_add_up_to_fixed_charge() {
    let tariff = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0"}, "fixed_per_month": "30.00"}"#).unwrap();
    // June 2024 in UTC has 30 days: each day carries 1.00 EUR of the fixed charge.
    let mut total = Decimal::ZERO;
    for day in 0..30 {
        let start = ms("2024-06-01T00:00Z") + day * 24 * HOUR;
        let pieces = [EnergyPiece { start_ms: start, end_ms: start + HOUR, wh: 1000.0 }];
        let bill = cost_of_span(&pieces, &tariff, &TimeZone::UTC, Window { start_ms: start, end_ms: start + 24 * HOUR }).unwrap();
        assert_eq!(bill.total, dec("1.00"), "day {day}");
        total += bill.total;
    }
    assert_eq!(total, dec("30.00"));
}

#[test]
fn span_across_months_prorates_each() {
    let tariff = Tariff::from_json(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0"}, "fixed_per_month": "31.00"}"#).unwrap();
    // 2024-05-31 and 2024-06-01 in UTC: 1/31 of May and 1/30 of June.
    let mut pieces = hourly("2024-05-31T10:00Z", 1, 1.0);
    pieces.extend(hourly("2024-06-01T10:00Z", 1, 1.0));
    let bill = cost_of_span(&pieces, &tariff, &TimeZone::UTC, span("2024-05-31T00:00Z", "2024-06-02T00:00Z")).unwrap();
    let fixed: Vec<(&str, Decimal, Decimal)> = bill.lines.iter().filter(|l| l.kind == CostKind::Fixed).map(|l| (l.month.as_str(), l.quantity, l.amount)).collect();
    assert_eq!(fixed, vec![("2024-05", dec("0.032258"), dec("1.00")), ("2024-06", dec("0.033333"), dec("1.03"))]);
}

#[test]
fn reversed_span_is_an_error() {
    let tariff = Tariff::from_json(TND_WITH_CHARGES).unwrap();
    assert!(cost_of_span(&[], &tariff, &tunis(), Window { start_ms: HOUR, end_ms: 0 }).is_err());
}
