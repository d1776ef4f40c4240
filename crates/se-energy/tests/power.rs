//! Power integration rules, one test per case of docs/energy.md.

use se_energy::{power_energy, PowerConfig, PowerSample, UnknownCause, Window};

const SECOND: i64 = 1000;
const HOUR: i64 = 3_600_000;

fn assert_close(actual: f64, expected: f64, tolerance: f64) {
    assert!((actual - expected).abs() <= tolerance, "got {actual}, expected {expected} ± {tolerance}");
}

/// Samples `step_ms` apart starting at 0; `None` is a sample without a value.
fn series(step_ms: i64, watts: &[Option<f64>]) -> Vec<PowerSample> {
    watts.iter().enumerate().map(|(i, w)| PowerSample { ts_ms: i as i64 * step_ms, watts: *w, seq: None }).collect()
}

#[test]
fn long_gap_is_unknown_not_energy() {
    let t0 = 1_700_000_000_000;
    let samples = [PowerSample::new(t0, 0.0), PowerSample::new(t0 + 80 * HOUR, 700.0), PowerSample::new(t0 + 80 * HOUR + 10 * SECOND, 0.0)];
    let result = power_energy(&samples, None, &PowerConfig::default()).unwrap();
    assert_close(result.wh, 1.944, 0.0005);
    assert_eq!(result.unknown_spans.len(), 1);
    assert_eq!(result.unknown_spans[0].cause, UnknownCause::Gap);
    assert_eq!(result.unknown_ms(), 80 * HOUR);
    assert_eq!(result.total_wh(), None);
}

#[test]
fn nan_sample_holds_previous_power() {
    let samples = series(10 * SECOND, &[Some(120.5), None, Some(118.0)]);
    let window = Window { start_ms: 0, end_ms: 30 * SECOND };
    let result = power_energy(&samples, Some(window), &PowerConfig::default()).unwrap();
    assert_close(result.wh, 0.997, 0.0005);
    assert_eq!(result.missing_samples, 1);
    assert!(result.unknown_spans.is_empty());
}

#[test]
fn sentinel_spike_is_rejected() {
    let samples = series(15 * SECOND, &[Some(4.4), Some(4.1), Some(6553.5), Some(4.2)]);
    let result = power_energy(&samples, None, &PowerConfig::default()).unwrap();
    assert_close(result.wh, 0.0525, 1e-9);
    assert_eq!(result.rejected_samples, 1);
}

#[test]
fn spike_above_device_maximum_is_rejected() {
    let samples = series(15 * SECOND, &[Some(4.4), Some(4.1), Some(900.0), Some(4.2)]);
    let config = PowerConfig { max_power_w: Some(60.0), ..PowerConfig::default() };
    let result = power_energy(&samples, None, &config).unwrap();
    assert_close(result.wh, 0.0525, 1e-9);
    assert_eq!(result.rejected_samples, 1);
}

#[test]
fn unsupported_power_is_unknown_energy() {
    // nvidia-smi reported "[Not Supported]" at every poll.
    let samples = series(SECOND, &[None, None, None, None]);
    let window = Window { start_ms: 0, end_ms: 4 * SECOND };
    let result = power_energy(&samples, Some(window), &PowerConfig::default()).unwrap();
    assert_eq!(result.total_wh(), None);
    assert_eq!(result.unknown_spans.len(), 1);
    assert_eq!(result.unknown_spans[0].cause, UnknownCause::NoData);
    assert_eq!(result.unknown_ms(), 4 * SECOND);
    assert_eq!(result.missing_samples, 4);
}

#[test]
fn missing_run_beyond_gap_is_unknown() {
    let samples = series(10 * SECOND, &[Some(100.0), None, None, None, None, Some(100.0), Some(100.0)]);
    let result = power_energy(&samples, None, &PowerConfig::default()).unwrap();
    assert_close(result.wh, 100.0 * 10.0 / 3600.0, 1e-9);
    assert_eq!(result.unknown_ms(), 50 * SECOND);
}

#[test]
fn late_sample_lands_in_place() {
    let mut samples = vec![PowerSample::new(0, 100.0), PowerSample::new(20 * SECOND, 100.0)];
    let before = power_energy(&samples, None, &PowerConfig::default()).unwrap();
    assert_close(before.wh, 100.0 * 20.0 / 3600.0, 1e-9);
    samples.push(PowerSample::new(10 * SECOND, 300.0));
    let after = power_energy(&samples, None, &PowerConfig::default()).unwrap();
    assert_close(after.wh, (100.0 * 10.0 + 300.0 * 10.0) / 3600.0, 1e-9);
}

#[test]
fn replayed_samples_count_once() {
    let mut samples = series(10 * SECOND, &[Some(50.0), Some(60.0), Some(70.0)]);
    let once = power_energy(&samples, None, &PowerConfig::default()).unwrap();
    samples.extend(samples.clone());
    let twice = power_energy(&samples, None, &PowerConfig::default()).unwrap();
    assert_eq!(twice.wh, once.wh);
    assert_eq!(twice.duplicates, 3);
}

#[test]
fn window_clips_held_power() {
    let samples = series(10 * SECOND, &[Some(360.0), Some(360.0), Some(360.0)]);
    let window = Window { start_ms: 5 * SECOND, end_ms: 15 * SECOND };
    let result = power_energy(&samples, Some(window), &PowerConfig::default()).unwrap();
    assert_close(result.wh, 1.0, 1e-9);
    assert!(result.unknown_spans.is_empty());
}

#[test]
fn window_before_first_sample_is_unknown() {
    let samples = series(10 * SECOND, &[Some(360.0), Some(360.0)]);
    let window = Window { start_ms: -10 * SECOND, end_ms: 10 * SECOND };
    let result = power_energy(&samples, Some(window), &PowerConfig::default()).unwrap();
    assert_close(result.wh, 1.0, 1e-9);
    assert_eq!(result.unknown_spans[0].cause, UnknownCause::NoData);
    assert_eq!(result.unknown_ms(), 10 * SECOND);
}

#[test]
fn configured_gap_overrides_measured_interval() {
    let samples = vec![PowerSample::new(0, 100.0), PowerSample::new(HOUR, 100.0)];
    let measured = power_energy(&samples, Some(Window { start_ms: 0, end_ms: 2 * HOUR }), &PowerConfig::default()).unwrap();
    assert_close(measured.wh, 200.0, 1e-9);
    let strict = PowerConfig { max_gap_ms: Some(5 * 60 * SECOND), ..PowerConfig::default() };
    let result = power_energy(&samples, None, &strict).unwrap();
    assert_eq!(result.wh, 0.0);
    assert_eq!(result.unknown_ms(), HOUR);
}

#[test]
fn export_power_counts_negative() {
    let samples = series(HOUR, &[Some(-500.0), Some(-500.0)]);
    let result = power_energy(&samples, None, &PowerConfig::default()).unwrap();
    assert_close(result.wh, -500.0, 1e-9);
}

#[test]
fn reversed_window_is_an_error() {
    let error = power_energy(&[], Some(Window { start_ms: 10, end_ms: 0 }), &PowerConfig::default()).unwrap_err();
    assert!(error.to_string().contains("swap"), "{error}");
}
