//! Local calendar totals, including DST days and a Tasmota with an unset clock.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use se_core::Metric;
use se_decode::{Decoder, TasmotaConfig, TasmotaDecoder};
use se_energy::{counter_energy, period_of, totals_by_period, CounterConfig, CounterSample, Period, PeriodTotal};

const HOUR: i64 = 3_600_000;

fn ms(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_millisecond()
}

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

/// Builds samples of a counter that gains 1 kWh every hour, sampled on the hour.
fn one_kwh_per_hour(from: &str, to: &str) -> Vec<CounterSample> {
    let (start, end) = (ms(from), ms(to));
    (0..=(end - start) / HOUR).map(|hour| CounterSample::new(start + hour * HOUR, 1000.0 * hour as f64)).collect()
}

fn day_totals(samples: &[CounterSample], period: Period) -> Vec<PeriodTotal> {
    let result = counter_energy(samples, &CounterConfig::default()).unwrap();
    totals_by_period(&result, period, &berlin()).unwrap()
}

fn find<'a>(totals: &'a [PeriodTotal], label: &str) -> &'a PeriodTotal {
    totals.iter().find(|t| t.label == label).unwrap_or_else(|| panic!("no period {label} in {totals:?}"))
}

#[test]
fn spring_dst_day_has_23_kwh() {
    let totals = day_totals(&one_kwh_per_hour("2024-03-29T00:00Z", "2024-04-02T00:00Z"), Period::Day);
    let day = find(&totals, "2024-03-31");
    assert!((day.wh - 23_000.0).abs() < 1e-6, "{day:?}");
    assert_eq!(day.end_ms - day.start_ms, 23 * HOUR);
}

#[test]
fn autumn_dst_day_has_25_kwh() {
    let totals = day_totals(&one_kwh_per_hour("2024-10-25T00:00Z", "2024-10-29T00:00Z"), Period::Day);
    let day = find(&totals, "2024-10-27");
    assert!((day.wh - 25_000.0).abs() < 1e-6, "{day:?}");
}

#[test]
fn berlin_april_starts_in_march_utc() {
    let bounds = period_of(ms("2024-04-10T12:00Z"), Period::Month, &berlin()).unwrap();
    assert_eq!(bounds.label, "2024-04");
    assert_eq!(bounds.start_ms, ms("2024-03-31T22:00Z"));
    assert_eq!(bounds.end_ms, ms("2024-04-30T22:00Z"));
    let totals = day_totals(&one_kwh_per_hour("2024-03-31T12:00Z", "2024-04-01T12:00Z"), Period::Month);
    assert!((find(&totals, "2024-03").wh - 10_000.0).abs() < 1e-6);
    assert!((find(&totals, "2024-04").wh - 14_000.0).abs() < 1e-6);
}

#[test]
fn fold_hours_are_separate_periods() {
    let totals = day_totals(&one_kwh_per_hour("2024-10-26T22:00Z", "2024-10-27T03:00Z"), Period::Hour);
    let labels: Vec<&str> = totals.iter().map(|t| t.label.as_str()).collect();
    assert!(labels.contains(&"2024-10-27T02:00+02:00"), "{labels:?}");
    assert!(labels.contains(&"2024-10-27T02:00+01:00"), "{labels:?}");
    assert!(totals.iter().all(|t| (t.wh - 1000.0).abs() < 1e-6));
}

#[test]
fn weeks_start_on_monday() {
    let bounds = period_of(ms("2024-03-31T12:00Z"), Period::Week, &berlin()).unwrap();
    assert_eq!(bounds.label, "2024-W13");
    assert_eq!(bounds.start_ms, ms("2024-03-24T23:00Z"));
    assert_eq!(bounds.end_ms, ms("2024-03-31T22:00Z"));
}

#[test]
fn piece_across_midnight_is_split() {
    // One sample at 23:00 and the next at 01:00 local: half the energy each side.
    let samples = [CounterSample::new(ms("2024-06-01T21:00Z"), 0.0), CounterSample::new(ms("2024-06-01T23:00Z"), 2000.0)];
    let totals = day_totals(&samples, Period::Day);
    assert!((find(&totals, "2024-06-01").wh - 1000.0).abs() < 1e-6);
    assert!((find(&totals, "2024-06-02").wh - 1000.0).abs() < 1e-6);
}

#[test]
fn unknown_time_is_reported_per_day() {
    let samples = [CounterSample::new(ms("2024-06-01T10:00Z"), 500.0), CounterSample::new(ms("2024-06-01T11:00Z"), 0.0), CounterSample::new(ms("2024-06-01T12:00Z"), 100.0)];
    let totals = day_totals(&samples, Period::Day);
    let day = find(&totals, "2024-06-01");
    assert_eq!(day.unknown_ms, HOUR);
    assert_eq!(day.total_wh(), None);
}

#[test]
fn unset_clock_days_from_total() {
    // A Tasmota plug with an unset clock reports 1970 times; the receive time is used.
    let mut decoder = TasmotaDecoder::new(TasmotaConfig { time_zone: berlin(), ..TasmotaConfig::default() });
    let receive_times = ["2024-06-01T21:30Z", "2024-06-01T21:50Z", "2024-06-01T22:10Z", "2024-06-01T22:30Z"];
    let totals_kwh = [10.000, 10.200, 10.400, 10.600];
    let mut samples = Vec::new();
    for (index, (received, total)) in receive_times.iter().zip(totals_kwh).enumerate() {
        let payload = format!(r#"{{"Time":"1970-01-01T00:{:02}:00","ENERGY":{{"Total":{total},"Today":0.1,"Power":600}}}}"#, index * 20);
        let decoded = decoder.decode("tele/plug-1/SENSOR", payload.as_bytes(), ms(received));
        let reading = decoded.readings.iter().find(|r| r.metric == Metric::Energy).unwrap();
        assert_eq!(reading.ts_ms, ms(received));
        samples.push(CounterSample::new(reading.ts_ms, reading.value));
    }
    let totals = day_totals(&samples, Period::Day);
    // Local midnight is 22:00Z: 21:30 to 22:00Z goes to June 1, the rest to June 2.
    assert!((find(&totals, "2024-06-01").wh - 300.0).abs() < 1e-6, "{totals:?}");
    assert!((find(&totals, "2024-06-02").wh - 300.0).abs() < 1e-6, "{totals:?}");
}
