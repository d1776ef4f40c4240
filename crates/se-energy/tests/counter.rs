//! Counter rules, one test per case of docs/energy.md.

use se_energy::{counter_energy, watt_minutes_to_wh, CounterConfig, CounterSample, EnergyError, EventKind, UnknownCause};

const MINUTE: i64 = 60_000;

/// Samples one minute apart.
fn every_minute(values: &[f64]) -> Vec<CounterSample> {
    values.iter().enumerate().map(|(i, value)| CounterSample::new(i as i64 * MINUTE, *value)).collect()
}

fn kwh_config() -> CounterConfig {
    CounterConfig { wh_per_unit: 1000.0, ..CounterConfig::default() }
}

fn assert_close(actual: f64, expected: f64, tolerance: f64) {
    assert!((actual - expected).abs() <= tolerance, "got {actual}, expected {expected} ± {tolerance}");
}

#[test]
fn false_zero_restart_is_ignored() {
    let result = counter_energy(&every_minute(&[152.30, 0.0, 152.31, 152.40]), &kwh_config()).unwrap();
    assert_close(result.kwh(), 0.10, 1e-9);
    assert_eq!(result.count(EventKind::FalseDrop), 1);
    assert_eq!(result.count(EventKind::Reset), 0);
    assert_eq!(result.total_wh().map(|wh| (wh * 1e6).round()), Some(100.0 * 1e6));
}

#[test]
fn power_loss_reset_counts_both_sides() {
    let result = counter_energy(&every_minute(&[250.0, 250.5, 0.0, 0.3]), &kwh_config()).unwrap();
    assert_close(result.kwh(), 0.8, 1e-9);
    assert_eq!(result.count(EventKind::Reset), 1);
    assert_eq!(result.unknown_spans.len(), 1);
    assert_eq!(result.unknown_spans[0].cause, UnknownCause::Reset);
}

#[test]
fn rounding_dip_is_not_a_reset() {
    let result = counter_energy(&every_minute(&[544.587493, 544.587, 544.590]), &kwh_config()).unwrap();
    assert_close(result.kwh(), 0.002507, 1e-9);
    assert_eq!(result.count(EventKind::Reset), 0);
    assert_eq!(result.count(EventKind::RoundingDip), 1);
    assert!(result.unknown_spans.is_empty());
}

#[test]
fn wrap_near_top_adds_remainder() {
    let config = CounterConfig { modulus: Some(838_860.8), ..CounterConfig::default() };
    let result = counter_energy(&every_minute(&[838_857.6, 12.3]), &config).unwrap();
    assert_close(result.wh, 15.5, 1e-6);
    assert_eq!(result.count(EventKind::Wrap), 1);
    assert!(result.unknown_spans.is_empty());
}

#[test]
fn wrap_needs_previous_near_top() {
    let config = CounterConfig { modulus: Some(838_860.8), ..CounterConfig::default() };
    let result = counter_energy(&every_minute(&[400_000.0, 12.3, 20.0]), &config).unwrap();
    assert_eq!(result.count(EventKind::Wrap), 0);
    assert_eq!(result.count(EventKind::Reset), 1);
    // The 12.3 Wh after the reset and the 7.7 Wh after it; never the 438,873 Wh a wrap would add.
    assert_close(result.wh, 20.0, 1e-6);
}

#[test]
fn chip_reset_is_not_a_wrap() {
    let config = CounterConfig { wh_per_unit: 1000.0 / 5347.5, modulus: Some(16_777_216.0), ..CounterConfig::default() };
    let result = counter_energy(&every_minute(&[2636.0, 0.0, 50.0]), &config).unwrap();
    assert_close(result.kwh(), 0.00935, 0.000005);
    assert_eq!(result.count(EventKind::Wrap), 0);
    assert_eq!(result.count(EventKind::Reset), 1);
}

#[test]
fn returning_zero_run_adds_nothing() {
    let result = counter_energy(&every_minute(&[500.0, 0.0, 0.0, 0.0, 500.0]), &CounterConfig::default()).unwrap();
    assert_eq!(result.wh, 0.0);
    assert_eq!(result.count(EventKind::Reset), 0);
}

#[test]
fn repeated_value_after_restart_adds_nothing() {
    let result = counter_energy(&every_minute(&[500.0, 0.0, 500.0, 500.0]), &CounterConfig::default()).unwrap();
    assert_eq!(result.wh, 0.0);
    assert!(result.unknown_spans.is_empty());
}

#[test]
fn late_return_without_counting_is_false() {
    // The device went quiet for an hour after the false zero: still no spike.
    let samples = vec![CounterSample::new(0, 500.0), CounterSample::new(MINUTE, 0.0), CounterSample::new(61 * MINUTE, 520.0)];
    let result = counter_energy(&samples, &CounterConfig::default()).unwrap();
    assert_close(result.wh, 20.0, 1e-9);
}

#[test]
fn counting_up_past_window_is_reset() {
    // Counts up from the new zero for longer than the restart window, then passes the old value.
    let samples: Vec<CounterSample> =
        [500.0, 0.0, 200.0, 400.0, 600.0].iter().enumerate().map(|(i, v)| CounterSample::new(i as i64 * 10 * MINUTE, *v)).collect();
    let result = counter_energy(&samples, &CounterConfig::default()).unwrap();
    assert_eq!(result.count(EventKind::Reset), 1);
    assert_close(result.wh, 600.0, 1e-9);
}

#[test]
fn boot_jitter_within_window_is_false() {
    // While booting, the device sent 0 and then a partial value before its saved counter.
    let result = counter_energy(&every_minute(&[152_300.0, 0.0, 3.0, 152_310.0]), &CounterConfig::default()).unwrap();
    assert_close(result.wh, 10.0, 1e-9);
    assert_eq!(result.count(EventKind::Reset), 0);
}

#[test]
fn restored_backup_adds_no_spike() {
    // A restart restored an older saved value: no energy is invented.
    let result = counter_energy(&every_minute(&[152_300.0, 152_100.0, 152_110.0, 152_120.0]), &CounterConfig::default()).unwrap();
    assert_close(result.wh, 20.0, 1e-9);
    assert_eq!(result.count(EventKind::Reset), 1);
    assert_eq!(result.total_wh(), None);
}

#[test]
fn glitch_above_max_power_is_ignored() {
    let config = CounterConfig { max_power_w: Some(3000.0), ..CounterConfig::default() };
    let result = counter_energy(&every_minute(&[1000.0, 51_000.0, 1010.0]), &config).unwrap();
    assert_close(result.wh, 10.0, 1e-9);
    assert_eq!(result.count(EventKind::Glitch), 1);
}

#[test]
fn lasting_jump_becomes_new_base() {
    let config = CounterConfig { max_power_w: Some(3000.0), ..CounterConfig::default() };
    let result = counter_energy(&every_minute(&[1000.0, 90_000.0, 90_010.0, 90_020.0]), &config).unwrap();
    assert_close(result.wh, 20.0, 1e-9);
    assert_eq!(result.count(EventKind::Rebase), 1);
    assert_eq!(result.unknown_spans[0].cause, UnknownCause::Jump);
}

#[test]
fn trailing_drop_waits_for_more() {
    let result = counter_energy(&every_minute(&[400.0, 500.0, 0.0]), &CounterConfig::default()).unwrap();
    assert_close(result.wh, 100.0, 1e-9);
    assert_eq!(result.count(EventKind::Unresolved), 1);
}

#[test]
fn same_time_repeats_count_once() {
    let mut samples = every_minute(&[100.0, 110.0, 120.0]);
    samples.push(CounterSample::new(MINUTE, 110.0));
    samples.push(CounterSample::new(2 * MINUTE, 120.0));
    let result = counter_energy(&samples, &CounterConfig::default()).unwrap();
    assert_close(result.wh, 20.0, 1e-9);
    assert_eq!(result.duplicates, 2);
}

#[test]
fn replayed_sequence_counts_once() {
    let sample = |ts, value, seq| CounterSample { ts_ms: ts, value, seq: Some(seq) };
    // A replay of seq 2 received later, stamped with its receive time.
    let samples = [sample(0, 100.0, 1), sample(MINUTE, 110.0, 2), sample(2 * MINUTE, 120.0, 3), sample(3 * MINUTE, 110.0, 2)];
    let result = counter_energy(&samples, &CounterConfig::default()).unwrap();
    assert_close(result.wh, 20.0, 1e-9);
    assert_eq!(result.duplicates, 1);
    assert!(result.events.is_empty());
}

#[test]
fn out_of_order_matches_sorted() {
    let sorted = every_minute(&[10.0, 12.0, 0.0, 3.0, 7.0, 7.5]);
    let mut shuffled = sorted.clone();
    shuffled.reverse();
    shuffled.swap(1, 4);
    let config = CounterConfig::default();
    assert_eq!(counter_energy(&shuffled, &config).unwrap(), counter_energy(&sorted, &config).unwrap());
}

#[test]
fn late_reading_lands_in_place() {
    let mut samples = every_minute(&[100.0, 110.0, 130.0]);
    let before = counter_energy(&samples, &CounterConfig::default()).unwrap();
    samples.push(CounterSample::new(MINUTE + MINUTE / 2, 115.0));
    let after = counter_energy(&samples, &CounterConfig::default()).unwrap();
    assert_close(after.wh, before.wh, 1e-9);
    assert_eq!(after.pieces.len(), 3);
    assert_eq!(after.pieces[1].end_ms, MINUTE + MINUTE / 2);
}

#[test]
fn shelly_watt_minutes_convert_to_wh() {
    assert_close(watt_minutes_to_wh(40.0), 0.667, 0.0005);
    assert_close(watt_minutes_to_wh(2400.0), 40.0, 1e-9);
    let config = CounterConfig { wh_per_unit: 1.0 / 60.0, ..CounterConfig::default() };
    let emeter = counter_energy(&every_minute(&[0.0, 40.0]), &config).unwrap();
    assert_close(emeter.wh, 0.667, 0.0005);
    let relay = counter_energy(&every_minute(&[0.0, 2400.0]), &config).unwrap();
    assert_close(relay.wh, 40.0, 1e-9);
}

#[test]
fn impossible_values_are_rejected() {
    let samples = every_minute(&[100.0, f64::NAN, -5.0, 110.0, f64::INFINITY]);
    let result = counter_energy(&samples, &CounterConfig::default()).unwrap();
    assert_close(result.wh, 10.0, 1e-9);
    assert_eq!(result.rejected_samples, 3);
}

#[test]
fn invalid_settings_are_all_listed() {
    let config = CounterConfig { wh_per_unit: 0.0, wrap_zone: 0.7, max_power_w: Some(-1.0), ..CounterConfig::default() };
    let Err(EnergyError::InvalidConfig { problems, .. }) = counter_energy(&[], &config) else {
        panic!("expected InvalidConfig");
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
}
