use jiff::tz::TimeZone;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use se_core::{ChannelName, DeviceId, Lang};
use se_energy::{Decimal, Tariff};

use super::*;
use crate::anomaly::Point;

/// 2024-04-01T00:00:00Z, a Monday.
const APRIL_1: i64 = 1_711_929_600_000;

fn flat_pricing(price: &str) -> Pricing {
    let tariff = Tariff::from_json(&format!(r#"{{"currency": "EUR", "energy": {{"type": "flat", "price_per_kwh": "{price}"}}}}"#)).unwrap();
    Pricing { tariff, time_zone: TimeZone::UTC, month_start_ms: APRIL_1, site_base_w: 0.0 }
}

fn time_of_use_pricing() -> Pricing {
    let tariff = Tariff::from_json(
        r#"{"currency": "EUR", "energy": {"type": "time_of_use", "periods": [
            {"name": "peak", "price_per_kwh": "0.30", "days": ["all"], "hours": [[8, 22]]},
            {"name": "off-peak", "price_per_kwh": "0.10", "days": ["all"], "hours": [[0, 8], [22, 24]]}]}}"#,
    )
    .unwrap();
    Pricing { tariff, time_zone: TimeZone::UTC, month_start_ms: APRIL_1, site_base_w: 0.0 }
}

fn names(device: &str, channel: &str) -> (DeviceId, ChannelName) {
    (DeviceId::parse(device).unwrap(), ChannelName::parse(channel).unwrap())
}

/// Hashrate of a GPU that saturates with power: 60 x (1 - e^(-(P - 100) / 35)) MH/s.
fn hashrate_at(watts: f64) -> f64 {
    60.0 * (1.0 - (-(watts - 100.0) / 35.0).exp())
}

/// Generates a sweep of power limits from 150 to 300 W (20 readings each), then
/// `normal` readings at the default limit of 300 W (drawing about 295 W).
fn power_sweep(normal: usize, seed: u64) -> (Vec<Point>, Vec<Point>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut levels: Vec<f64> = (0..16).flat_map(|step| std::iter::repeat_n(150.0 + 10.0 * step as f64, 20)).collect();
    levels.extend(std::iter::repeat_n(295.0, normal));
    let mut power = Vec::new();
    let mut hashrate = Vec::new();
    for (index, level) in levels.iter().enumerate() {
        let ts = APRIL_1 + index as i64 * 60_000;
        let watts = level + rng.random_range(-3.0..3.0);
        power.push(Point::new(ts, watts));
        hashrate.push(Point::new(ts, hashrate_at(watts) + rng.random_range(-0.8..0.8)));
    }
    (power, hashrate)
}

#[test]
fn power_cap_keeps_97_percent_of_hashrate() {
    let (device, channel) = names("rig-01", "gpu3");
    let (power, hashrate) = power_sweep(600, 1);
    let recommendation = recommend_power_cap(&device, &channel, &power, &hashrate, &flat_pricing("0.20"), &PowerCapConfig::default()).unwrap().unwrap();
    let Action::SetPowerLimit { limit_w, current_typical_w, kept_hashrate_pct } = recommendation.action else { panic!("{recommendation:?}") };
    // The exact 97 % point of the curve is 219 W; bins are 5 W wide and the cap rounds up.
    assert!((215.0..=235.0).contains(&limit_w), "{limit_w}");
    assert!(kept_hashrate_pct >= 97.0, "{kept_hashrate_pct}");
    assert!(hashrate_at(limit_w) >= 0.965 * hashrate_at(300.0), "{limit_w}");
    assert!((290.0..300.0).contains(&current_typical_w), "{current_typical_w}");
    // About 600 of 920 readings run 70 W above a cap near 225 W, plus part of the sweep.
    assert!((30.0..50.0).contains(&recommendation.estimate.kwh_per_month), "{:?}", recommendation.estimate);
    let expected_money = Decimal::try_from(recommendation.estimate.kwh_per_month * 0.2).unwrap().round_dp(2);
    assert!((recommendation.estimate.money_per_month - expected_money).abs() <= Decimal::new(1, 2), "{:?}", recommendation.estimate);
    let message = recommendation.message(Lang::En);
    assert!(message.starts_with(&format!("Cap GPU 3 of rig-01 at {limit_w:.0} W (it now draws about")), "{message}");
    assert!(message.contains("keeping 9"), "{message}");
    let message = recommendation.message(Lang::Fr);
    assert!(message.starts_with(&format!("Limitez le GPU 3 de rig-01 à {limit_w:.0} W")), "{message}");
    assert!(message.contains("EUR) par mois"), "{message}");
}

#[test]
fn power_cap_needs_a_range_of_powers() {
    let (device, channel) = names("rig-01", "gpu3");
    let (power, hashrate) = power_sweep(600, 2);
    // Only the readings at the default limit: the curve below it is unknown.
    let at_limit = &power[320..];
    let hashes_at_limit = &hashrate[320..];
    let result = recommend_power_cap(&device, &channel, at_limit, hashes_at_limit, &flat_pricing("0.20"), &PowerCapConfig::default()).unwrap();
    assert!(result.is_none(), "{result:?}");
}

#[test]
fn power_cap_when_already_low() {
    let (device, channel) = names("rig-01", "gpu3");
    let (power, hashrate) = power_sweep(0, 3);
    // Only the low part of the sweep: the GPU already runs near its best cap.
    let result = recommend_power_cap(&device, &channel, &power[..140], &hashrate[..140], &flat_pricing("0.20"), &PowerCapConfig::default()).unwrap();
    if let Some(recommendation) = result {
        let Action::SetPowerLimit { limit_w, .. } = recommendation.action else { panic!() };
        assert!(limit_w <= 220.0, "{recommendation:?}");
    }
}

#[test]
fn power_cap_bad_input() {
    let (device, channel) = names("rig-01", "gpu3");
    let pricing = flat_pricing("0.20");
    assert!(recommend_power_cap(&device, &channel, &[], &[], &pricing, &PowerCapConfig::default()).unwrap().is_none());
    let (mut power, hashrate) = power_sweep(100, 4);
    power[5].value = f64::NAN;
    assert!(recommend_power_cap(&device, &channel, &power, &hashrate, &pricing, &PowerCapConfig::default()).unwrap().is_some());
    power.swap(10, 11);
    let error = recommend_power_cap(&device, &channel, &power, &hashrate, &pricing, &PowerCapConfig::default()).unwrap_err();
    assert!(error.to_string().contains("invalid power point 11"), "{error}");
    let config = PowerCapConfig { keep_share: 1.5, ..PowerCapConfig::default() };
    let error = recommend_power_cap(&device, &channel, &[], &[], &pricing, &config).unwrap_err();
    assert!(error.to_string().contains("keep_share 1.5"), "{error}");
}

#[test]
fn isotonic_pools_violations() {
    assert_eq!(cases_isotonic(&[(1.0, 1.0), (3.0, 1.0), (2.0, 1.0), (4.0, 1.0)]), vec![1.0, 2.5, 2.5, 4.0]);
}

fn cases_isotonic(values: &[(f64, f64)]) -> Vec<f64> {
    // The function is private to cases.rs; check it through a recommendation-free path.
    super::cases::isotonic_for_tests(values)
}

#[test]
fn off_peak_shift_moves_peak_load() {
    let (device, channel) = names("site", "water-heater");
    let mut profile_w = [0.0; 24];
    for watts in &mut profile_w[10..14] {
        *watts = 2_000.0;
    }
    let input = OffPeakInput { device: &device, channel: &channel, profile_w, max_power_w: 2_000.0, min_kwh_per_day: 0.5 };
    let recommendation = recommend_off_peak_shift(&input, &time_of_use_pricing()).unwrap().unwrap();
    let Action::ShiftToOffPeak { kwh_per_day, ref from_hours, ref to_hours } = recommendation.action else { panic!() };
    assert_eq!(kwh_per_day, 8.0);
    assert_eq!(from_hours, &vec![10, 11, 12, 13]);
    assert!(to_hours.iter().all(|hour| *hour < 8 || *hour >= 22), "{to_hours:?}");
    // 8 kWh a day for 30 days at 0.30 instead of 0.10.
    assert_eq!(recommendation.estimate.money_per_month, Decimal::new(4800, 2));
    assert!(recommendation.estimate.kwh_per_month.abs() < 1e-9);
    let message = recommendation.message(Lang::En);
    assert_eq!(message, "Move 8.0 kWh a day of channel water-heater of site from 10:00-14:00 to 00:00-04:00: saves about 48.00 EUR per month");
    let message = recommendation.message(Lang::Fr);
    assert_eq!(message, "Déplacez 8,0 kWh par jour du canal water-heater de site de 10:00-14:00 vers 00:00-04:00 : économie d'environ 48,00 EUR par mois");
}

#[test]
fn off_peak_shift_not_needed() {
    let (device, channel) = names("site", "pump");
    let mut profile_w = [0.0; 24];
    profile_w[12] = 1_000.0;
    let input = OffPeakInput { device: &device, channel: &channel, profile_w, max_power_w: 1_000.0, min_kwh_per_day: 0.5 };
    assert!(recommend_off_peak_shift(&input, &flat_pricing("0.2")).unwrap().is_none());

    let mut night = [0.0; 24];
    night[2] = 1_000.0;
    let input = OffPeakInput { profile_w: night, ..input };
    assert!(recommend_off_peak_shift(&input, &time_of_use_pricing()).unwrap().is_none());
}

#[test]
fn off_peak_shift_bad_input() {
    let (device, channel) = names("site", "pump");
    let mut profile_w = [0.0; 24];
    profile_w[3] = f64::NAN;
    let input = OffPeakInput { device: &device, channel: &channel, profile_w, max_power_w: 1_000.0, min_kwh_per_day: 0.5 };
    let error = recommend_off_peak_shift(&input, &time_of_use_pricing()).unwrap_err();
    assert!(error.to_string().contains("invalid profile_w NaN"), "{error}");
    let input = OffPeakInput { profile_w: [0.0; 24], max_power_w: 0.0, ..input };
    assert!(recommend_off_peak_shift(&input, &time_of_use_pricing()).is_err());
}

/// Generates readings every 10 min for 7 days: idle (0 % at `idle_w`) from 20:00 to
/// 08:00 UTC when `nightly_idle`, else busy (95 % at about 280 W).
fn week(nightly_idle: bool, idle_w: f64) -> (Vec<Point>, Vec<Point>) {
    let mut power = Vec::new();
    let mut utilization = Vec::new();
    for step in 0..7 * 144 {
        let ts = APRIL_1 + step * 600_000;
        let hour = (step % 144) / 6;
        let idle = nightly_idle && !(8..20).contains(&hour);
        power.push(Point::new(ts, if idle { idle_w + (step % 3) as f64 * 0.5 } else { 280.0 + (step % 5) as f64 }));
        utilization.push(Point::new(ts, if idle { 0.0 } else { 95.0 }));
    }
    (power, utilization)
}

#[test]
fn idle_device_with_standby_power_is_recommended() {
    let (device, channel) = names("rig-02", "main");
    let (power, utilization) = week(true, 80.0);
    let recommendation = recommend_idle_shutdown(&device, &channel, &power, &utilization, &flat_pricing("0.25"), &IdleConfig::default()).unwrap().unwrap();
    let Action::SwitchOffWhenIdle { standby_w, idle_hours_per_day } = recommendation.action else { panic!() };
    assert!((80.0..=81.0).contains(&standby_w), "{standby_w}");
    assert!((idle_hours_per_day - 12.0).abs() < 1e-9, "{idle_hours_per_day}");
    assert!((recommendation.estimate.kwh_per_month - standby_w * 12.0 * 30.0 / 1000.0).abs() < 1e-6);
    assert_eq!(recommendation.message(Lang::En).split(';').next().unwrap(), "rig-02 is idle about 12.0 h a day while drawing 80 W");
    assert!(recommendation.message(Lang::Fr).starts_with("L'appareil rig-02 est inactif environ 12,0 h par jour"));
}

#[test]
fn message_without_money_gives_kwh_only() {
    let (device, channel) = names("rig-02", "main");
    let (power, utilization) = week(true, 80.0);
    let recommendation = recommend_idle_shutdown(&device, &channel, &power, &utilization, &flat_pricing("0.25"), &IdleConfig::default()).unwrap().unwrap();
    let english = recommendation.message_without_money(Lang::En);
    let french = recommendation.message_without_money(Lang::Fr);
    let kwh = recommendation.estimate.kwh_per_month;
    assert!(english.starts_with("rig-02 is idle about 12.0 h a day while drawing 80 W"), "{english}");
    assert!(english.ends_with(&format!(": saves about {kwh:.1} kWh per month")), "{english}");
    assert!(!english.contains("EUR"), "{english}");
    assert!(french.ends_with(&format!(" : économie d'environ {} kWh par mois", format!("{kwh:.1}").replace('.', ","))), "{french}");
    assert!(!french.contains("EUR"), "{french}");
}

#[test]
fn busy_or_low_standby_device_is_not_recommended() {
    let (device, channel) = names("rig-02", "main");
    let (power, utilization) = week(false, 80.0);
    assert!(recommend_idle_shutdown(&device, &channel, &power, &utilization, &flat_pricing("0.25"), &IdleConfig::default()).unwrap().is_none());
    let (power, utilization) = week(true, 2.0);
    assert!(recommend_idle_shutdown(&device, &channel, &power, &utilization, &flat_pricing("0.25"), &IdleConfig::default()).unwrap().is_none());
    assert!(recommend_idle_shutdown(&device, &channel, &[], &[], &flat_pricing("0.25"), &IdleConfig::default()).unwrap().is_none());
}

#[test]
fn low_power_factor_is_recommended() {
    let (device, channel) = names("site", "main");
    let real: Vec<Point> = (0..100).map(|i| Point::new(i * 60_000, 800.0)).collect();
    let apparent: Vec<Point> = (0..100).map(|i| Point::new(i * 60_000, 1_000.0)).collect();
    let recommendation = recommend_power_factor(&device, &channel, &real, &apparent, &flat_pricing("0.20"), &PowerFactorConfig::default()).unwrap().unwrap();
    assert_eq!(recommendation.action, Action::CorrectPowerFactor { power_factor: 0.8, target: 0.97 });
    let saved_w = 800.0 * 0.02 * (1.0 - (0.8f64 / 0.97).powi(2));
    assert!((recommendation.estimate.kwh_per_month - saved_w * 0.72).abs() < 1e-9, "{:?}", recommendation.estimate);
    assert!(recommendation.message(Lang::En).starts_with("site has a power factor of 0.80; raise it to 0.97"));
    assert!(recommendation.message(Lang::Fr).contains("facteur de puissance de 0,80"));
}

#[test]
fn good_power_factor_is_not_recommended() {
    let (device, channel) = names("site", "main");
    let real: Vec<Point> = (0..100).map(|i| Point::new(i * 60_000, 950.0)).collect();
    let apparent: Vec<Point> = (0..100).map(|i| Point::new(i * 60_000, 1_000.0)).collect();
    assert!(recommend_power_factor(&device, &channel, &real, &apparent, &flat_pricing("0.20"), &PowerFactorConfig::default()).unwrap().is_none());
    let nan: Vec<Point> = (0..100).map(|i| Point::new(i * 60_000, f64::NAN)).collect();
    assert!(recommend_power_factor(&device, &channel, &nan, &apparent, &flat_pricing("0.20"), &PowerFactorConfig::default()).unwrap().is_none());
}

#[test]
fn drifted_gpu_service_is_recommended() {
    let (device, channel) = names("rig-05", "gpu2");
    let input = EfficiencyServiceInput { device: &device, channel: &channel, baseline_mhs_per_w: 0.30, recent_mhs_per_w: 0.27, mean_power_w: 200.0, min_drop_pct: 3.0 };
    let recommendation = recommend_efficiency_service(&input, &flat_pricing("0.20")).unwrap().unwrap();
    assert!((recommendation.estimate.kwh_per_month - 14.4).abs() < 1e-9, "{:?}", recommendation.estimate);
    assert_eq!(recommendation.estimate.money_per_month, Decimal::new(288, 2));
    let message = recommendation.message(Lang::En);
    assert!(message.starts_with("GPU 2 of rig-05 lost 10\u{a0}% of its hashrate per watt"), "{message}");
    assert!(message.ends_with("saves about 14.4 kWh (2.88 EUR) per month"), "{message}");

    let steady = EfficiencyServiceInput { recent_mhs_per_w: 0.295, ..input };
    assert!(recommend_efficiency_service(&steady, &flat_pricing("0.20")).unwrap().is_none());
    let broken = EfficiencyServiceInput { mean_power_w: f64::NAN, ..input };
    assert!(recommend_efficiency_service(&broken, &flat_pricing("0.20")).is_err());
}

#[test]
fn tiered_saving_at_marginal_price() {
    let tariff = Tariff::from_json(
        r#"{"currency": "TND", "energy": {"type": "tiered", "blocks": [{"up_to_kwh": "1000", "price_per_kwh": "0.100"}, {"up_to_kwh": null, "price_per_kwh": "0.300"}]}}"#,
    )
    .unwrap();
    let alone = Pricing { tariff: tariff.clone(), time_zone: TimeZone::UTC, month_start_ms: APRIL_1, site_base_w: 0.0 };
    let site = Pricing { site_base_w: 5_000.0, ..alone.clone() };
    let (device, channel) = names("rig-05", "gpu2");
    let input = EfficiencyServiceInput { device: &device, channel: &channel, baseline_mhs_per_w: 0.30, recent_mhs_per_w: 0.27, mean_power_w: 200.0, min_drop_pct: 3.0 };
    let alone = recommend_efficiency_service(&input, &alone).unwrap().unwrap();
    let site = recommend_efficiency_service(&input, &site).unwrap().unwrap();
    assert_eq!(alone.estimate.money_per_month, Decimal::new(1440, 3));
    assert_eq!(site.estimate.money_per_month, Decimal::new(4320, 3));
}

#[test]
fn recommendation_round_trips_through_json() {
    let (device, channel) = names("rig-05", "gpu2");
    let input = EfficiencyServiceInput { device: &device, channel: &channel, baseline_mhs_per_w: 0.30, recent_mhs_per_w: 0.27, mean_power_w: 200.0, min_drop_pct: 3.0 };
    let recommendation = recommend_efficiency_service(&input, &flat_pricing("0.20")).unwrap().unwrap();
    let json = serde_json::to_string(&recommendation).unwrap();
    assert!(json.contains(r#""type":"service_gpu""#), "{json}");
    assert!(json.contains(r#""money_per_month":"2.88""#), "{json}");
    let back: Recommendation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, recommendation);
}

#[test]
fn achieved_saving_scales_to_a_month() {
    let estimate = SavingEstimate { kwh_per_month: 60.0, money_per_month: Decimal::new(1200, 2), currency: "EUR".into() };
    let ten_days = 10 * 86_400_000;
    let before = Usage { kwh: 100.0, duration_ms: ten_days, cost: Some(Decimal::new(2000, 2)), work: None };
    let after = Usage { kwh: 80.0, duration_ms: ten_days, cost: Some(Decimal::new(1600, 2)), work: None };
    let achieved = measure_saving(&before, &after, &estimate).unwrap();
    assert!((achieved.kwh_per_month - 60.0).abs() < 1e-9, "{achieved:?}");
    assert_eq!(achieved.money_per_month, Some(Decimal::new(1200, 2)));
    assert!((achieved.kwh_share_of_estimate.unwrap() - 1.0).abs() < 1e-9);
    assert!((achieved.money_share_of_estimate.unwrap() - 1.0).abs() < 1e-9);
}

#[test]
fn achieved_saving_per_unit_of_work() {
    let estimate = SavingEstimate { kwh_per_month: 30.0, money_per_month: Decimal::ZERO, currency: "EUR".into() };
    let ten_days = 10 * 86_400_000;
    // After the change, the rig mined half as much: its energy per megahash fell by 10 %.
    let before = Usage { kwh: 100.0, duration_ms: ten_days, cost: None, work: Some(1_000.0) };
    let after = Usage { kwh: 45.0, duration_ms: ten_days, cost: None, work: Some(500.0) };
    let achieved = measure_saving(&before, &after, &estimate).unwrap();
    assert!((achieved.kwh_per_month - 15.0).abs() < 1e-9, "{achieved:?}");
    assert!((achieved.kwh_share_of_estimate.unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(achieved.money_per_month, None);
    assert_eq!(achieved.money_share_of_estimate, None);
}

#[test]
fn achieved_saving_bad_input() {
    let estimate = SavingEstimate { kwh_per_month: 30.0, money_per_month: Decimal::ZERO, currency: "EUR".into() };
    let good = Usage { kwh: 1.0, duration_ms: 1_000, cost: None, work: None };
    let empty = Usage { duration_ms: 0, ..good.clone() };
    let error = measure_saving(&good, &empty, &estimate).unwrap_err();
    assert_eq!(error.to_string(), "invalid usage after duration 0 ms; expected a span longer than 0 ms");
    let nan = Usage { kwh: f64::NAN, ..good.clone() };
    assert!(measure_saving(&nan, &good, &estimate).is_err());
    assert!(error.message(Lang::Fr).starts_with("usage after invalide"));
}
