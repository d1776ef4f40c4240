//! Runs every detector over the devices of one site, as the server does.
//! [`scan_device`] reads each device's raw readings of the scanned window.
//! The daily pattern test and efficiency drift read each device's hourly
//! means over days. The same-model comparison puts each GPU next to the
//! same-model GPUs of the other rigs.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use se_core::{ChannelName, DeviceId, Metric, TimestampMs};

use super::pattern::DAY_MS;
use super::scan::{gpu_power_channels, WALL_CHANNEL};
use super::{
    detect_efficiency_drift, detect_pattern_deviation, detect_peer_excess, scan_device, Anomaly, AnomalyKind, DailyPatternConfig, DeviceSeries,
    EfficiencyDriftConfig, InputError, PeerConfig, PeerSeries, ScanConfig,
};

/// One device of a site with everything [`scan_site`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteDevice {
    /// Raw readings of the scanned window: `power_w`, `utilization_pct` and
    /// `power_limit_w`, as [`scan_device`] reads them.
    pub readings: DeviceSeries,
    /// Hourly means from [`SiteScanConfig::history_start_ms`] to the last
    /// complete hour, each point at the start of its hour: `power_w` of each
    /// channel and `hashrate_mhs` of the channels that report it. Empty when
    /// only the raw detectors should run.
    pub hours: DeviceSeries,
    /// Model of the device's GPUs, when known. Devices whose models are equal
    /// after trimming, collapsing spaces and ignoring case are peers.
    pub model: Option<String>,
}

/// Settings of [`scan_site`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteScanConfig {
    /// Settings of the detectors on each device's raw readings.
    pub device: ScanConfig,
    /// Settings of the comparison with same-model GPUs of other rigs. Its
    /// `rig_mates` is false, so the message names same-model peers.
    pub model_peers: PeerConfig,
    pub pattern: DailyPatternConfig,
    pub efficiency: EfficiencyDriftConfig,
    /// UTC days of hourly means that efficiency drift compares, the current
    /// day included. The first `baseline_buckets` days with enough busy
    /// hours are the baseline.
    pub efficiency_days: usize,
}

impl Default for SiteScanConfig {
    fn default() -> Self {
        Self {
            device: ScanConfig::default(),
            model_peers: PeerConfig { rig_mates: false, ..PeerConfig::default() },
            pattern: DailyPatternConfig::default(),
            efficiency: EfficiencyDriftConfig::default(),
            efficiency_days: 8,
        }
    }
}

impl SiteScanConfig {
    /// Start of the hourly means that [`scan_site`] reads for a window from
    /// `window_start_ms` to `now_ms`: the earlier of the starts that the
    /// daily pattern test and efficiency drift need.
    pub fn history_start_ms(&self, window_start_ms: TimestampMs, now_ms: TimestampMs) -> TimestampMs {
        self.pattern.history_start_ms(window_start_ms).min(self.efficiency_start_ms(now_ms))
    }

    fn efficiency_start_ms(&self, now_ms: TimestampMs) -> TimestampMs {
        now_ms.div_euclid(DAY_MS) * DAY_MS - (self.efficiency_days as i64 - 1) * DAY_MS
    }

    fn validate(&self) -> Result<(), InputError> {
        if self.efficiency_days == 0 || self.efficiency_days > 366 {
            let value = self.efficiency_days.to_string();
            return Err(InputError::InvalidSetting { name: "efficiency_days", value, expected: "1 to 366 days, such as 8" });
        }
        Ok(())
    }
}

/// Runs every detector over `devices` and returns their anomalies:
/// - [`scan_device`] on the raw readings of each device, which compares
///   each GPU with its rig mates;
/// - [`detect_pattern_deviation`] on the hourly power of each channel, in
///   `zone`, except the `wall` channel of a device whose GPUs report power,
///   because the wall reads their sum and would repeat their anomalies;
/// - [`detect_efficiency_drift`] on the hourly hashrate and power of each
///   channel with both, over the last `efficiency_days` UTC days;
/// - [`detect_peer_excess`] over the GPUs of all devices with the same
///   model, when at least two such devices have GPUs with power and
///   utilization.
///
/// A GPU that both peer comparisons flag keeps only the anomaly with the
/// higher score. Segments end at `now_ms` at the latest. The order is
/// unspecified; the caller sorts.
pub fn scan_site(
    devices: &[SiteDevice],
    window_start_ms: TimestampMs,
    now_ms: TimestampMs,
    zone: &TimeZone,
    config: &SiteScanConfig,
) -> Result<Vec<Anomaly>, InputError> {
    config.validate()?;
    let mut found = Vec::new();
    for device in devices {
        if !device.readings.is_empty() {
            found.extend(scan_device(&device.readings, now_ms, &config.device)?);
        }
        found.extend(scan_hours(&device.hours, window_start_ms, now_ms, zone, config)?);
    }
    found.extend(scan_model_peers(devices, &config.model_peers)?);
    Ok(keep_strongest_peer_excess(found))
}

/// Runs the detectors that read a device's hourly means.
fn scan_hours(hours: &DeviceSeries, window_start_ms: TimestampMs, now_ms: TimestampMs, zone: &TimeZone, config: &SiteScanConfig) -> Result<Vec<Anomaly>, InputError> {
    let mut found = Vec::new();
    let has_gpu_power = !gpu_power_channels(hours).is_empty();
    for channel in hours.channels_with(Metric::Power) {
        if has_gpu_power && channel.as_str() == WALL_CHANNEL {
            continue;
        }
        let key = hours.key(channel, Metric::Power);
        found.extend(detect_pattern_deviation(&key, hours.points(channel, Metric::Power), window_start_ms, now_ms, zone, &config.pattern)?);
    }

    let from_ms = config.efficiency_start_ms(now_ms);
    for channel in hours.channels_with(Metric::Hashrate) {
        let recent = |metric: Metric| -> Vec<super::Point> { hours.points(channel, metric).iter().copied().filter(|point| point.ts_ms >= from_ms).collect() };
        let power = recent(Metric::Power);
        if power.is_empty() {
            continue;
        }
        let key = hours.key(channel, Metric::Hashrate);
        for mut anomaly in detect_efficiency_drift(&key, &recent(Metric::Hashrate), &power, &config.efficiency)? {
            // The detector's segment runs to the end of the last UTC day.
            anomaly.segment.end_ms = anomaly.segment.end_ms.min(now_ms).max(anomaly.segment.start_ms);
            found.push(anomaly);
        }
    }
    Ok(found)
}

/// Comparable form of a model name: trimmed, single-spaced, lower case.
fn model_group(model: &str) -> String {
    model.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Returns whether two model names name the same GPU model for
/// [`scan_site`]: equal after trimming, collapsing spaces and ignoring case,
/// and not blank.
pub fn same_gpu_model(a: &str, b: &str) -> bool {
    let a = model_group(a);
    !a.is_empty() && a == model_group(b)
}

/// Compares the GPUs of each group of same-model devices.
fn scan_model_peers(devices: &[SiteDevice], config: &PeerConfig) -> Result<Vec<Anomaly>, InputError> {
    let mut by_model: BTreeMap<String, Vec<&DeviceSeries>> = BTreeMap::new();
    for device in devices {
        let Some(model) = device.model.as_deref().map(model_group).filter(|model| !model.is_empty()) else {
            continue;
        };
        by_model.entry(model).or_default().push(&device.readings);
    }

    let mut found = Vec::new();
    for rigs in by_model.values() {
        let mut keys = Vec::new();
        for rig in rigs {
            for channel in gpu_power_channels(rig) {
                if !rig.points(channel, Metric::Utilization).is_empty() {
                    keys.push((rig, channel, rig.key(channel, Metric::Power)));
                }
            }
        }
        let rigs_with_gpus: BTreeSet<&DeviceId> = keys.iter().map(|(rig, _, _)| rig.device()).collect();
        if rigs_with_gpus.len() < 2 {
            // One rig alone is the rig-mates comparison that scan_device runs.
            continue;
        }
        let group: Vec<PeerSeries<'_>> = keys
            .iter()
            .map(|(rig, channel, key)| PeerSeries { key, power: rig.points(channel, Metric::Power), load: rig.points(channel, Metric::Utilization) })
            .collect();
        found.extend(detect_peer_excess(&group, config)?);
    }
    Ok(found)
}

/// Keeps one peer-excess anomaly per series, the one with the highest score.
/// Other anomalies keep their order.
fn keep_strongest_peer_excess(found: Vec<Anomaly>) -> Vec<Anomaly> {
    let mut strongest: BTreeMap<(&DeviceId, &ChannelName, Metric), (usize, f64)> = BTreeMap::new();
    for (index, anomaly) in found.iter().enumerate().filter(|(_, anomaly)| anomaly.kind == AnomalyKind::PeerExcess) {
        let entry = strongest.entry((&anomaly.device, &anomaly.channel, anomaly.metric)).or_insert((index, anomaly.score));
        if anomaly.score > entry.1 {
            *entry = (index, anomaly.score);
        }
    }
    let strongest_indexes: BTreeSet<usize> = strongest.values().map(|(index, _)| *index).collect();
    found
        .into_iter()
        .enumerate()
        .filter(|(index, anomaly)| anomaly.kind != AnomalyKind::PeerExcess || strongest_indexes.contains(index))
        .map(|(_, anomaly)| anomaly)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::pattern::HOUR_MS;
    use crate::anomaly::testing::noisy_series;
    use crate::anomaly::{AnomalyReason, Point, Severity};

    /// 2024-12-02T00:00:00Z.
    const MIDNIGHT_MS: i64 = 1_733_097_600_000;
    const STEP_MS: i64 = 30_000;
    /// Two hours of readings every 30 s.
    const COUNT: usize = 240;

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn now_ms() -> i64 {
        MIDNIGHT_MS + 14 * HOUR_MS + COUNT as i64 * STEP_MS
    }

    /// Raw readings of a rig over the two hours before [`now_ms`]: GPU `n`
    /// draws `factors[n]` times about 200 W ± 20 W at 95 to 100 % utilization.
    fn rig(id: &str, factors: &[f64], seed: u64) -> DeviceSeries {
        let start = now_ms() - COUNT as i64 * STEP_MS;
        let mut rig = DeviceSeries::new(DeviceId::parse(id).unwrap());
        for (gpu, factor) in factors.iter().enumerate() {
            let seed = seed * 100 + gpu as u64;
            let power = noisy_series(start, STEP_MS, COUNT, 200.0, 20.0, seed).into_iter().map(|point| Point::new(point.ts_ms, point.value * factor)).collect();
            let name = channel(&format!("gpu{gpu}"));
            rig.insert(name.clone(), Metric::Power, power);
            rig.insert(name, Metric::Utilization, noisy_series(start, STEP_MS, COUNT, 97.5, 2.5, seed + 50));
        }
        rig
    }

    fn site_device(readings: DeviceSeries, model: Option<&str>) -> SiteDevice {
        let hours = DeviceSeries::new(readings.device().clone());
        SiteDevice { readings, hours, model: model.map(str::to_owned) }
    }

    fn scan(devices: &[SiteDevice]) -> Vec<Anomaly> {
        scan_site(devices, now_ms() - 6 * HOUR_MS, now_ms(), &TimeZone::UTC, &SiteScanConfig::default()).unwrap()
    }

    /// (device/channel, kind) of each anomaly, sorted.
    fn found_on(anomalies: &[Anomaly]) -> Vec<(String, AnomalyKind)> {
        let mut found: Vec<(String, AnomalyKind)> = anomalies.iter().map(|anomaly| (format!("{}/{}", anomaly.device, anomaly.channel), anomaly.kind)).collect();
        found.sort();
        found
    }

    fn peer_group_of(anomaly: &Anomaly) -> bool {
        let AnomalyReason::PeerExcess { rig_mates, .. } = anomaly.reason else { panic!("{:?}", anomaly.reason) };
        rig_mates
    }

    #[test]
    fn rig_above_same_model_rigs_is_flagged() {
        let devices = [
            site_device(rig("rig-a", &[1.0; 4], 1), Some("RTX 3070")),
            site_device(rig("rig-b", &[1.0; 4], 2), Some("RTX 3070")),
            site_device(rig("rig-c", &[1.2; 3], 3), Some("RTX 3070")),
        ];
        let found = scan(&devices);
        let expected: Vec<(String, AnomalyKind)> = (0..3).map(|gpu| (format!("rig-c/gpu{gpu}"), AnomalyKind::PeerExcess)).collect();
        assert_eq!(found_on(&found), expected);
        for anomaly in &found {
            assert!(!peer_group_of(anomaly), "{anomaly:?}");
            let AnomalyReason::PeerExcess { excess_pct, peers, .. } = anomaly.reason else { unreachable!() };
            assert!((12.0..30.0).contains(&excess_pct), "{excess_pct}");
            assert_eq!(peers, 10);
        }
        assert!(found[0].message(se_core::Lang::En).contains("more than same-model peers at the same utilization (10 peers)"), "{}", found[0].message(se_core::Lang::En));
    }

    #[test]
    fn rig_without_model_keeps_rig_mates() {
        let devices = [
            site_device(rig("rig-a", &[1.0; 4], 1), Some("RTX 3070")),
            site_device(rig("rig-b", &[1.0; 4], 2), Some("RTX 3070")),
            site_device(rig("rig-c", &[1.2; 3], 3), None),
            site_device(rig("rig-d", &[1.0, 1.0, 1.25, 1.0], 4), None),
        ];
        let found = scan(&devices);
        // rig-c draws more as a whole, which rig mates cannot show, and rig-d's GPU 2 draws more than its rig mates.
        assert_eq!(found_on(&found), vec![("rig-d/gpu2".to_owned(), AnomalyKind::PeerExcess)]);
        assert!(peer_group_of(&found[0]));
    }

    #[test]
    fn different_models_are_not_peers() {
        let devices = [
            site_device(rig("rig-a", &[1.0; 4], 1), Some("RTX 3070")),
            site_device(rig("rig-b", &[1.0; 4], 2), Some("RTX 3070")),
            site_device(rig("rig-c", &[1.2; 3], 3), Some("RTX 3080")),
        ];
        assert_eq!(found_on(&scan(&devices)), vec![]);
    }

    #[test]
    fn model_names_compare_loosely() {
        let devices = [
            site_device(rig("rig-a", &[1.0; 4], 1), Some("NVIDIA GeForce RTX 3070")),
            site_device(rig("rig-b", &[1.0; 4], 2), Some(" nvidia  geforce rtx 3070 ")),
            site_device(rig("rig-c", &[1.2; 3], 3), Some("NVIDIA GEFORCE RTX 3070")),
        ];
        assert_eq!(found_on(&scan(&devices)).len(), 3);
    }

    #[test]
    fn same_gpu_model_ignores_case_and_spaces() {
        assert!(same_gpu_model("NVIDIA GeForce RTX 3070", " nvidia  geforce\trtx 3070"));
        assert!(!same_gpu_model("RTX 3070", "RTX 3070 Ti"));
        assert!(!same_gpu_model("  ", " "));
    }

    #[test]
    fn gpu_flagged_by_both_groups_once() {
        let devices = [
            site_device(rig("rig-a", &[1.0; 4], 1), Some("RTX 3070")),
            site_device(rig("rig-b", &[1.0, 1.3, 1.0, 1.0], 2), Some("RTX 3070")),
        ];
        let found = scan(&devices);
        assert_eq!(found_on(&found), vec![("rig-b/gpu1".to_owned(), AnomalyKind::PeerExcess)]);
        // Both groups see it, so check that each alone does.
        let rig_mates = scan_device(&devices[1].readings, now_ms(), &ScanConfig::default()).unwrap();
        assert_eq!(rig_mates.len(), 1, "{rig_mates:?}");
        let same_model = scan_model_peers(&devices, &SiteScanConfig::default().model_peers).unwrap();
        assert_eq!(same_model.len(), 1, "{same_model:?}");
        let stronger = if rig_mates[0].score >= same_model[0].score { &rig_mates[0] } else { &same_model[0] };
        assert_eq!(&found[0], stronger);
    }

    #[test]
    fn healthy_same_model_rigs_have_no_anomaly() {
        for seed in 0..5 {
            let devices = [
                site_device(rig("rig-a", &[1.0; 4], seed * 3 + 1), Some("RTX 3070")),
                site_device(rig("rig-b", &[1.0; 4], seed * 3 + 2), Some("RTX 3070")),
                site_device(rig("rig-c", &[1.0; 3], seed * 3 + 3), Some("RTX 3070")),
            ];
            let found = scan(&devices);
            assert!(found.is_empty(), "seed {seed}: {:?}", found_on(&found));
        }
    }

    /// Hourly means of `days` days up to [`now_ms`]'s last complete hour:
    /// power 200 W with a 60 W daily swing, and hashrate 0.3 MH/s per W of it.
    fn hours_of(id: &str, days: i64) -> DeviceSeries {
        let last_hour = now_ms().div_euclid(HOUR_MS) * HOUR_MS - HOUR_MS;
        let count = days * 24;
        let mut power = Vec::new();
        let mut hashrate = Vec::new();
        for index in 0..count {
            let ts = last_hour - (count - 1 - index) * HOUR_MS;
            let hour_of_day = (ts.rem_euclid(DAY_MS) / HOUR_MS) as f64;
            let noise = 4.0 * ((index as f64 * 0.618_033_988_75).fract() - 0.5);
            let watts = 200.0 + 60.0 * (2.0 * std::f64::consts::PI * hour_of_day / 24.0).sin() + noise;
            power.push(Point::new(ts, watts));
            hashrate.push(Point::new(ts, 0.3 * watts));
        }
        let mut hours = DeviceSeries::new(DeviceId::parse(id).unwrap());
        hours.insert(channel("gpu0"), Metric::Power, power.clone());
        hours.insert(channel("gpu0"), Metric::Hashrate, hashrate);
        hours.insert(channel("wall"), Metric::Power, power.iter().map(|point| Point::new(point.ts_ms, point.value * 1.1 + 100.0)).collect());
        hours
    }

    fn hours_device(hours: DeviceSeries) -> SiteDevice {
        SiteDevice { readings: DeviceSeries::new(hours.device().clone()), hours, model: None }
    }

    fn update(hours: &mut DeviceSeries, name: &str, metric: Metric, change: impl Fn(usize, &mut Point)) {
        let mut points = hours.points(&channel(name), metric).to_vec();
        for (index, point) in points.iter_mut().enumerate() {
            change(index, point);
        }
        hours.insert(channel(name), metric, points);
    }

    #[test]
    fn usual_hours_have_no_anomaly() {
        let found = scan(&[hours_device(hours_of("rig-h", 16))]);
        assert!(found.is_empty(), "{:?}", found_on(&found));
    }

    #[test]
    fn departure_found_on_gpu_not_wall() {
        let mut hours = hours_of("rig-h", 16);
        let count = hours.points(&channel("gpu0"), Metric::Power).len();
        let departed = |index: usize, point: &mut Point| {
            if index >= count - 4 {
                point.value *= 0.45;
            }
        };
        update(&mut hours, "gpu0", Metric::Power, departed);
        update(&mut hours, "wall", Metric::Power, departed);
        let found = scan(&[hours_device(hours)]);
        assert_eq!(found_on(&found), vec![("rig-h/gpu0".to_owned(), AnomalyKind::ForecastDeviation)]);
        assert!(found[0].segment.end_ms <= now_ms(), "{:?}", found[0].segment);
    }

    #[test]
    fn falling_hashrate_per_watt_is_drift() {
        let mut hours = hours_of("rig-h", 16);
        let count = hours.points(&channel("gpu0"), Metric::Hashrate).len();
        // Over the last four days the hashrate falls by 4 % a day at the same power.
        update(&mut hours, "gpu0", Metric::Hashrate, |index, point| {
            let hours_into = index as i64 - (count as i64 - 96);
            if hours_into > 0 {
                point.value *= 1.0 - 0.04 * hours_into as f64 / 24.0;
            }
        });
        let found = scan(&[hours_device(hours)]);
        assert_eq!(found_on(&found), vec![("rig-h/gpu0".to_owned(), AnomalyKind::EfficiencyDrift)]);
        let drift = &found[0];
        assert_eq!(drift.metric, Metric::Hashrate);
        assert_eq!(drift.severity, Severity::Critical);
        assert_eq!(drift.segment.end_ms, now_ms());
        let AnomalyReason::EfficiencyDrift { baseline, drop_pct, .. } = drift.reason else { panic!("{:?}", drift.reason) };
        assert!((baseline - 0.3).abs() < 1e-6, "{baseline}");
        assert!((10.0..16.0).contains(&drop_pct), "{drop_pct}");
    }

    #[test]
    fn history_start_covers_pattern_and_efficiency() {
        let config = SiteScanConfig::default();
        let window_start = now_ms() - 6 * HOUR_MS;
        assert_eq!(config.history_start_ms(window_start, now_ms()), config.pattern.history_start_ms(window_start));
        let long = SiteScanConfig { efficiency_days: 30, ..config };
        assert_eq!(long.history_start_ms(window_start, now_ms()), MIDNIGHT_MS - 29 * DAY_MS);
    }

    #[test]
    fn zero_efficiency_days_is_rejected() {
        let config = SiteScanConfig { efficiency_days: 0, ..SiteScanConfig::default() };
        let error = scan_site(&[], 0, 0, &TimeZone::UTC, &config).unwrap_err();
        assert!(error.to_string().contains("efficiency_days = 0"), "{error}");
    }
}
