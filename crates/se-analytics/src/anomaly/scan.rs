//! Runs every detector that applies to one device's readings, as the server
//! and the detection benchmark both do.
//!
//! The channel names decide which detectors run:
//! - `gpu<N>` channels (`gpu0`, `gpu1`, …) are GPUs, and their power series
//!   form the peer group and the components of the wall balance;
//! - a `wall` channel with `power_w` is the rig's wall meter;
//! - every other channel with `power_w` is a plain power series (a plug, a
//!   meter), which gets the per-series detectors only.

use std::collections::BTreeMap;

use se_core::{ChannelName, DeviceId, Metric, Reading, TimestampMs};

use super::{
    detect_impossible, detect_load_spikes, detect_peer_excess, detect_psu_loss, detect_silence_with_interval, detect_spikes, detect_stuck, Anomaly, Direction,
    InputError, PeerConfig, PeerSeries, Point, PsuLossConfig, SeriesKey, SilenceConfig, SpikeConfig, StuckConfig, ValueLimits,
};

/// Channel of a rig's wall meter.
pub const WALL_CHANNEL: &str = "wall";

/// Every series of one device over a window, by channel and metric, each
/// sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSeries {
    device: DeviceId,
    series: BTreeMap<(ChannelName, Metric), Vec<Point>>,
}

impl DeviceSeries {
    pub fn new(device: DeviceId) -> Self {
        Self { device, series: BTreeMap::new() }
    }

    /// Groups readings by channel and metric and sorts each series by time.
    /// Readings of other devices are left out.
    pub fn from_readings(device: DeviceId, readings: &[Reading]) -> Self {
        let mut grouped = Self::new(device.clone());
        for reading in readings.iter().filter(|reading| reading.device == device) {
            grouped.push(&reading.channel, reading.metric, Point::new(reading.ts_ms, reading.value));
        }
        for points in grouped.series.values_mut() {
            points.sort_by_key(|point| point.ts_ms);
        }
        grouped
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Sets the points of one series, replacing any it had.
    pub fn insert(&mut self, channel: ChannelName, metric: Metric, points: Vec<Point>) {
        self.series.insert((channel, metric), points);
    }

    /// Appends one point to a series. The caller keeps the points in time order.
    pub fn push(&mut self, channel: &ChannelName, metric: Metric, point: Point) {
        self.series.entry((channel.clone(), metric)).or_default().push(point);
    }

    /// Points of one series, empty when the device has none.
    pub fn points(&self, channel: &ChannelName, metric: Metric) -> &[Point] {
        self.series.get(&(channel.clone(), metric)).map_or(&[], Vec::as_slice)
    }

    /// Returns whether the device has no point in any series.
    pub fn is_empty(&self) -> bool {
        self.series.values().all(Vec::is_empty)
    }

    pub(super) fn key(&self, channel: &ChannelName, metric: Metric) -> SeriesKey {
        SeriesKey::new(self.device.clone(), channel.clone(), metric)
    }

    /// Channels with a non-empty series of `metric`, in channel name order.
    pub(super) fn channels_with(&self, metric: Metric) -> Vec<&ChannelName> {
        self.series.iter().filter(|((_, series_metric), points)| *series_metric == metric && !points.is_empty()).map(|((channel, _), _)| channel).collect()
    }
}

/// Index of a GPU channel (`gpu3` is 3), or `None` for any other channel.
pub fn gpu_index(channel: &ChannelName) -> Option<usize> {
    let digits = channel.as_str().strip_prefix("gpu")?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Settings of [`scan_device`]: one per detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanConfig {
    pub silence: SilenceConfig,
    /// Settings of load spikes on channels with utilization and of plain spikes on the others.
    pub spikes: SpikeConfig,
    /// Settings of the stuck test of every power series. The default
    /// `rest_value` of 0 W keeps a switched-off load from counting as stuck.
    pub stuck: StuckConfig,
    pub peers: PeerConfig,
    pub psu: PsuLossConfig,
    /// Highest possible power of a channel, as a multiple of its largest
    /// `power_limit_w` reading in the window.
    pub power_limit_margin: f64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            silence: SilenceConfig::default(),
            // A drop of power is a GPU going idle far more often than a
            // fault, so only rises count.
            spikes: SpikeConfig { direction: Direction::Above, ..SpikeConfig::default() },
            stuck: StuckConfig { rest_value: Some(0.0), ..StuckConfig::default() },
            peers: PeerConfig::default(),
            psu: PsuLossConfig::default(),
            // GPUs pass their configured limit for short moments, so a
            // reading counts as impossible only 10 % above it.
            power_limit_margin: 1.1,
        }
    }
}

/// Runs every detector that applies to `device` and returns their anomalies:
/// - silence over the timestamps of all series (a gap counts only when the
///   device sent nothing on any channel), ongoing until `now_ms`, measured in
///   usual intervals of the series with the most readings and reported on it;
/// - impossible values of each power series: 0 W up to `power_limit_margin`
///   times the largest `power_limit_w` of the channel, or only NaN and
///   infinite values ([`ValueLimits::of_metric`]) without a limit;
/// - load spikes of each power series against the channel's
///   `utilization_pct`, or plain spikes where the channel has none, except
///   on the `wall` channel of a rig whose GPUs report utilization;
/// - stuck power series, with the device's other power series as peers;
/// - peer excess across the GPU channels that have power and utilization;
/// - PSU loss between the `wall` channel and the GPU power series.
///
/// Anomalies come in that order; the caller sorts them. Forecast deviation
/// and efficiency drift need days of hourly means, and the comparison with
/// same-model GPUs needs the other rigs, so [`super::scan_site`] runs them.
pub fn scan_device(device: &DeviceSeries, now_ms: TimestampMs, config: &ScanConfig) -> Result<Vec<Anomaly>, InputError> {
    check_margin(config.power_limit_margin)?;
    let mut found = scan_silence(device, now_ms, &config.silence)?;

    let power_channels = device.channels_with(Metric::Power);
    for channel in &power_channels {
        found.extend(scan_power_channel(device, channel, &power_channels, config)?);
    }

    let gpus = gpu_power_channels(device);
    let gpu_keys: Vec<SeriesKey> = gpus.iter().map(|channel| device.key(channel, Metric::Power)).collect();
    let group: Vec<PeerSeries<'_>> = gpus
        .iter()
        .zip(&gpu_keys)
        .map(|(channel, key)| PeerSeries { key, power: device.points(channel, Metric::Power), load: device.points(channel, Metric::Utilization) })
        .filter(|member| !member.load.is_empty())
        .collect();
    if !group.is_empty() {
        found.extend(detect_peer_excess(&group, &config.peers)?);
    }

    let wall = power_channels.iter().find(|channel| channel.as_str() == WALL_CHANNEL);
    if let (Some(wall), false) = (wall, gpus.is_empty()) {
        let gpu_power: Vec<&[Point]> = gpus.iter().map(|channel| device.points(channel, Metric::Power)).collect();
        found.extend(detect_psu_loss(&device.key(wall, Metric::Power), device.points(wall, Metric::Power), &gpu_power, &config.psu)?);
    }
    Ok(found)
}

fn check_margin(margin: f64) -> Result<(), InputError> {
    super::check_setting("power_limit_margin", margin, 1.0, 10.0, "a multiple of the power limit from 1 to 10, such as 1.1")
}

/// Silence of the whole device: the times of all its series merged into one
/// list, measured against the usual interval of its busiest series.
fn scan_silence(device: &DeviceSeries, now_ms: TimestampMs, config: &SilenceConfig) -> Result<Vec<Anomaly>, InputError> {
    super::silence::check_config(config)?;
    // The first series with the most readings names the anomaly.
    let mut busiest: Option<(&(ChannelName, Metric), &[Point])> = None;
    for (id, points) in &device.series {
        if busiest.is_none_or(|(_, most)| points.len() > most.len()) {
            busiest = Some((id, points.as_slice()));
        }
    }
    let Some(((channel, metric), busiest_points)) = busiest else {
        return Ok(Vec::new());
    };
    for ((channel, metric), points) in &device.series {
        super::check_sorted(&device.key(channel, *metric), points)?;
    }
    if busiest_points.len() < config.min_points.max(2) {
        return Ok(Vec::new());
    }
    // The interval comes from one series because the rows of one nvidia-smi
    // poll are a few milliseconds apart, one per GPU. With 3 GPUs, two of
    // every three steps between merged times are that short, so their median
    // would be milliseconds instead of the poll period.
    let Some(usual_ms) = super::usual_interval_ms(busiest_points) else {
        return Ok(Vec::new());
    };

    let mut times: Vec<TimestampMs> = device.series.values().flatten().map(|point| point.ts_ms).collect();
    times.sort_unstable();
    times.dedup();
    // Only the times matter to the silence detector, because any value, even NaN, is a reading.
    let readings: Vec<Point> = times.into_iter().map(|ts_ms| Point::new(ts_ms, 0.0)).collect();
    detect_silence_with_interval(&device.key(channel, *metric), &readings, usual_ms, Some(now_ms), config)
}

/// Impossible values, spikes and stuck runs of one power series.
fn scan_power_channel(device: &DeviceSeries, channel: &ChannelName, power_channels: &[&ChannelName], config: &ScanConfig) -> Result<Vec<Anomaly>, InputError> {
    let key = device.key(channel, Metric::Power);
    let power = device.points(channel, Metric::Power);
    let mut found = Vec::new();

    let limit_w = device.points(channel, Metric::PowerLimit).iter().map(|point| point.value).filter(|value| value.is_finite() && *value > 0.0).reduce(f64::max);
    let limits = match limit_w {
        Some(limit_w) => ValueLimits::consumer_power(limit_w * config.power_limit_margin)?,
        None => ValueLimits::of_metric(Metric::Power),
    };
    found.extend(detect_impossible(&key, power, &limits)?);

    let utilization = device.points(channel, Metric::Utilization);
    if !utilization.is_empty() {
        found.extend(detect_load_spikes(&key, power, utilization, Metric::Utilization, &config.spikes)?);
    } else if !(channel.as_str() == WALL_CHANNEL && has_gpu_load(device)) {
        // The wall meter reads the sum of the GPUs, so a burst of GPU load
        // makes it rise for one reading without a fault. With plain spikes
        // on the wall, `se-bench detect --seed 1` raised 8 wall spikes, and 6
        // of them were on healthy rigs. A real GPU spike shows on its GPU.
        found.extend(detect_spikes(&key, power, &config.spikes)?);
    }

    let peers: Vec<&[Point]> = power_channels.iter().filter(|other| **other != channel).map(|other| device.points(other, Metric::Power)).collect();
    found.extend(detect_stuck(&key, power, &peers, &config.stuck)?);
    Ok(found)
}

/// Returns whether some GPU channel of the device reports utilization.
fn has_gpu_load(device: &DeviceSeries) -> bool {
    device.channels_with(Metric::Utilization).into_iter().any(|channel| gpu_index(channel).is_some())
}

/// GPU channels with a power series, in GPU index order (`gpu2` before `gpu10`).
pub(super) fn gpu_power_channels(device: &DeviceSeries) -> Vec<&ChannelName> {
    let mut gpus: Vec<(usize, &ChannelName)> = device.channels_with(Metric::Power).into_iter().filter_map(|channel| gpu_index(channel).map(|index| (index, channel))).collect();
    gpus.sort();
    gpus.into_iter().map(|(_, channel)| channel).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::testing::noisy_series;
    use crate::anomaly::{AnomalyKind, AnomalyReason, Severity};

    const START_MS: i64 = 1_733_000_000_000;
    const STEP_MS: i64 = 30_000;
    /// Two hours of readings every 30 s.
    const COUNT: usize = 240;

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn end_ms() -> i64 {
        START_MS + (COUNT as i64 - 1) * STEP_MS
    }

    /// A healthy rig of `gpus` GPUs: power about 200 W ± 20 W at 95 to 100 %
    /// utilization, with a power limit of 250 W. Its wall meter reads the GPU
    /// sum plus 8 % of it plus 150 W for the rest of the rig.
    fn healthy_rig(gpus: usize) -> DeviceSeries {
        let mut rig = DeviceSeries::new(DeviceId::parse("rig-07").unwrap());
        let mut gpu_sum = vec![0.0; COUNT];
        for gpu in 0..gpus {
            let power = noisy_series(START_MS, STEP_MS, COUNT, 200.0, 20.0, 100 + gpu as u64);
            for (sum, point) in gpu_sum.iter_mut().zip(&power) {
                *sum += point.value;
            }
            let name = channel(&format!("gpu{gpu}"));
            rig.insert(name.clone(), Metric::Power, power);
            rig.insert(name.clone(), Metric::Utilization, noisy_series(START_MS, STEP_MS, COUNT, 97.5, 2.5, 200 + gpu as u64));
            rig.insert(name, Metric::PowerLimit, vec![Point::new(START_MS, 250.0)]);
        }
        let wall = gpu_sum.iter().enumerate().map(|(index, sum)| Point::new(START_MS + index as i64 * STEP_MS, round1(sum * 1.08 + 150.0))).collect();
        rig.insert(channel(WALL_CHANNEL), Metric::Power, wall);
        rig
    }

    fn round1(value: f64) -> f64 {
        (value * 10.0).round() / 10.0
    }

    fn kinds(anomalies: &[Anomaly]) -> Vec<(String, AnomalyKind)> {
        anomalies.iter().map(|anomaly| (anomaly.channel.to_string(), anomaly.kind)).collect()
    }

    #[test]
    fn healthy_rig_has_no_anomaly() {
        let rig = healthy_rig(6);
        let found = scan_device(&rig, end_ms() + STEP_MS, &ScanConfig::default()).unwrap();
        assert!(found.is_empty(), "{:#?}", kinds(&found));
    }

    #[test]
    fn stuck_gpu_found_on_channel() {
        let mut rig = healthy_rig(6);
        let gpu = channel("gpu2");
        let mut power = rig.points(&gpu, Metric::Power).to_vec();
        // The sensor repeats its reading for the last 30 minutes.
        let frozen = power[COUNT - 61].value;
        for point in &mut power[COUNT - 60..] {
            point.value = frozen;
        }
        rig.insert(gpu, Metric::Power, power);

        let found = scan_device(&rig, end_ms() + STEP_MS, &ScanConfig::default()).unwrap();
        let stuck: Vec<&Anomaly> = found.iter().filter(|anomaly| anomaly.kind == AnomalyKind::Stuck).collect();
        assert_eq!(stuck.len(), 1, "{:#?}", kinds(&found));
        assert_eq!(stuck[0].channel.as_str(), "gpu2");
        assert_eq!(stuck[0].segment.end_ms, end_ms());
        assert!(found.iter().all(|anomaly| anomaly.channel.as_str() == "gpu2"), "{:#?}", kinds(&found));
    }

    #[test]
    fn growing_wall_loss_found() {
        let mut rig = healthy_rig(6);
        let wall = channel(WALL_CHANNEL);
        let mut power = rig.points(&wall, Metric::Power).to_vec();
        // Over the last 40 minutes the wall draws up to 12 % more for the same GPU power.
        for (offset, point) in power[COUNT - 80..].iter_mut().enumerate() {
            let extra = 0.12 * (offset as f64 / 80.0).clamp(0.5, 1.0);
            point.value = round1(point.value * (1.0 + extra));
        }
        rig.insert(wall, Metric::Power, power);

        let found = scan_device(&rig, end_ms() + STEP_MS, &ScanConfig::default()).unwrap();
        let loss: Vec<&Anomaly> = found.iter().filter(|anomaly| anomaly.kind == AnomalyKind::PsuLoss).collect();
        assert_eq!(loss.len(), 1, "{:#?}", kinds(&found));
        assert_eq!(loss[0].channel.as_str(), WALL_CHANNEL);
        assert_eq!(loss[0].metric, Metric::Power);
        assert!(loss[0].segment.end_ms >= end_ms() - 5 * 60_000, "{:?}", loss[0].segment);
    }

    #[test]
    fn silent_rig_is_critical() {
        let rig = healthy_rig(4);
        let now = end_ms() + 30 * 60_000;
        let found = scan_device(&rig, now, &ScanConfig::default()).unwrap();
        let silent: Vec<&Anomaly> = found.iter().filter(|anomaly| anomaly.kind == AnomalyKind::Silent).collect();
        assert_eq!(silent.len(), 1, "{:#?}", kinds(&found));
        assert_eq!(silent[0].severity, Severity::Critical);
        assert_eq!(silent[0].segment, crate::anomaly::Segment::new(end_ms(), now));
    }

    /// Five-minute polls of 3 GPUs over 48 hours, ending at `last_poll_ms`,
    /// as `import nvidia-smi` stores them: each GPU's row of a poll is 7 ms
    /// after the previous GPU's, and each row gives power and utilization.
    fn staggered_rig(last_poll_ms: i64) -> DeviceSeries {
        const POLL_MS: i64 = 300_000;
        const POLLS: i64 = 48 * 12;
        let mut rig = DeviceSeries::new(DeviceId::parse("rig-h1").unwrap());
        for gpu in 0..3 {
            let first_ms = last_poll_ms - (POLLS - 1) * POLL_MS + 7 * gpu;
            let name = channel(&format!("gpu{gpu}"));
            rig.insert(name.clone(), Metric::Power, noisy_series(first_ms, POLL_MS, POLLS as usize, 200.0, 20.0, 300 + gpu as u64));
            rig.insert(name, Metric::Utilization, noisy_series(first_ms, POLL_MS, POLLS as usize, 97.5, 2.5, 400 + gpu as u64));
        }
        rig
    }

    #[test]
    fn staggered_gpu_rows_not_silent() {
        let rig = staggered_rig(end_ms());
        let found = scan_device(&rig, end_ms() + 60_000, &ScanConfig::default()).unwrap();
        assert!(found.iter().all(|anomaly| anomaly.kind != AnomalyKind::Silent), "{:#?}", kinds(&found));
    }

    #[test]
    fn staggered_rig_silence_in_polls() {
        let rig = staggered_rig(end_ms());
        let now = end_ms() + 2 * 3_600_000;
        let found = scan_device(&rig, now, &ScanConfig::default()).unwrap();
        let silent: Vec<&Anomaly> = found.iter().filter(|anomaly| anomaly.kind == AnomalyKind::Silent).collect();
        assert_eq!(silent.len(), 1, "{:#?}", kinds(&found));
        assert_eq!(silent[0].severity, Severity::Critical);
        // The last reading is GPU 2's row of the last poll, 14 ms after the poll.
        assert_eq!(silent[0].segment, crate::anomaly::Segment::new(end_ms() + 14, now));
        let expected = AnomalyReason::Silent { gap_ms: 2 * 3_600_000 - 14, usual_interval_ms: 300_000, ongoing: true };
        assert_eq!(silent[0].reason, expected);
        let message = silent[0].message(se_core::Lang::En);
        assert!(message.ends_with("while it usually sends one every 5 min"), "{message}");
    }

    #[test]
    fn one_channel_gap_not_silence() {
        let mut rig = healthy_rig(4);
        let gpu = channel("gpu1");
        let power: Vec<Point> = rig.points(&gpu, Metric::Power).iter().copied().filter(|point| point.ts_ms < START_MS + 3_600_000 || point.ts_ms > START_MS + 4_200_000).collect();
        rig.insert(gpu, Metric::Power, power);
        let found = scan_device(&rig, end_ms() + STEP_MS, &ScanConfig::default()).unwrap();
        assert!(found.iter().all(|anomaly| anomaly.kind != AnomalyKind::Silent), "{:#?}", kinds(&found));
    }

    #[test]
    fn power_above_limit_is_impossible() {
        let mut rig = healthy_rig(4);
        let gpu = channel("gpu3");
        let mut power = rig.points(&gpu, Metric::Power).to_vec();
        power[100].value = 400.0;
        rig.insert(gpu, Metric::Power, power);
        let found = scan_device(&rig, end_ms() + STEP_MS, &ScanConfig::default()).unwrap();
        let impossible: Vec<&Anomaly> = found.iter().filter(|anomaly| anomaly.kind == AnomalyKind::Impossible).collect();
        assert_eq!(impossible.len(), 1, "{:#?}", kinds(&found));
        assert_eq!(impossible[0].channel.as_str(), "gpu3");
        assert_eq!(impossible[0].segment.start_ms, START_MS + 100 * STEP_MS);
    }

    #[test]
    fn plug_gets_plain_spikes() {
        let mut plug = DeviceSeries::new(DeviceId::parse("plug-1").unwrap());
        let mut power = noisy_series(START_MS, STEP_MS, 120, 80.0, 4.0, 7);
        power[60].value = 400.0;
        plug.insert(channel("main"), Metric::Power, power);
        let found = scan_device(&plug, START_MS + 120 * STEP_MS, &ScanConfig::default()).unwrap();
        assert_eq!(kinds(&found), vec![("main".to_owned(), AnomalyKind::Spike)]);
        assert_eq!(found[0].segment.start_ms, START_MS + 60 * STEP_MS);
    }

    #[test]
    fn wall_rise_is_no_spike() {
        let mut rig = healthy_rig(4);
        let wall = channel(WALL_CHANNEL);
        let mut power = rig.points(&wall, Metric::Power).to_vec();
        power[120].value += 600.0;
        rig.insert(wall, Metric::Power, power);
        let found = scan_device(&rig, end_ms() + STEP_MS, &ScanConfig::default()).unwrap();
        assert!(found.is_empty(), "{:#?}", kinds(&found));
    }

    #[test]
    fn from_readings_groups_and_sorts() {
        let rig = DeviceId::parse("rig-1").unwrap();
        let other = DeviceId::parse("rig-2").unwrap();
        let readings = vec![
            Reading::new(rig.clone(), "gpu0", Metric::Power, 2_000, 110.0),
            Reading::new(rig.clone(), "gpu0", Metric::Power, 1_000, 100.0),
            Reading::new(rig.clone(), "gpu0", Metric::Utilization, 1_000, 90.0),
            Reading::new(other, "gpu0", Metric::Power, 1_000, 5.0),
        ];
        let grouped = DeviceSeries::from_readings(rig, &readings);
        assert_eq!(grouped.points(&channel("gpu0"), Metric::Power), &[Point::new(1_000, 100.0), Point::new(2_000, 110.0)]);
        assert_eq!(grouped.points(&channel("gpu0"), Metric::Utilization), &[Point::new(1_000, 90.0)]);
        assert!(grouped.points(&channel("gpu1"), Metric::Power).is_empty());
    }

    #[test]
    fn unsorted_series_is_an_error() {
        let mut rig = healthy_rig(3);
        rig.insert(channel("gpu0"), Metric::Power, vec![Point::new(2_000, 1.0), Point::new(1_000, 1.0)]);
        let error = scan_device(&rig, end_ms(), &ScanConfig::default()).unwrap_err();
        assert!(matches!(error, InputError::UnsortedTimes { .. }), "{error:?}");
    }

    #[test]
    fn gpu_index_reads_gpu_channels_only() {
        assert_eq!(gpu_index(&channel("gpu0")), Some(0));
        assert_eq!(gpu_index(&channel("gpu12")), Some(12));
        assert_eq!(gpu_index(&channel("gpu")), None);
        assert_eq!(gpu_index(&channel("gpu-a")), None);
        assert_eq!(gpu_index(&channel("wall")), None);
    }
}
