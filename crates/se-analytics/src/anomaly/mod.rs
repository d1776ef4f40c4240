//! Anomaly detectors over series handed in by the caller.
//!
//! Every detector is a pure function of time-stamped values, settings and,
//! where it needs one, the current time passed in by the caller. Each returns
//! [`Anomaly`] values that name the series, the kind, a severity, a score, the
//! time segment that shows the anomaly and a reason with its numbers, in
//! English and French ([`Anomaly::message`]). [`scan_device`] runs every
//! detector that applies to one device's readings of a window, and
//! [`scan_site`] adds the detectors that read days of hourly means or other
//! rigs, as the server does.
//!
//! Input rules shared by all detectors:
//! - times must be in non-decreasing order, or the detector returns
//!   [`InputError::UnsortedTimes`] naming the first offending point;
//! - an empty series, or one too short for a detector's statistics, yields no
//!   anomaly;
//! - NaN and infinite values are skipped by every detector except
//!   [`detect_impossible`], which reports them.
//!
//! The rules and thresholds are explained in docs/anomalies.md.

mod efficiency;
mod impossible;
mod pattern;
mod peer;
mod psu;
mod reason;
mod residual;
mod scan;
mod silence;
mod site;
mod spike;
mod stats;
mod stuck;

use serde::{Deserialize, Serialize};

use se_core::{ChannelName, DeviceId, Lang, Metric, TimestampMs};

pub use efficiency::{detect_efficiency_drift, EfficiencyDriftConfig};
pub(crate) use efficiency::pair_finite;
pub use impossible::{detect_impossible, ValueLimits};
pub use pattern::{detect_pattern_deviation, expected_from_earlier_days, DailyPatternConfig};
pub use peer::{detect_peer_excess, PeerConfig, PeerSeries};
pub use psu::{detect_psu_loss, PsuLossConfig};
pub use reason::{AnomalyReason, Bound};
pub use residual::{detect_forecast_deviation, rolling_median, Direction, ResidualConfig};
pub use scan::{gpu_index, scan_device, DeviceSeries, ScanConfig, WALL_CHANNEL};
pub use silence::{detect_silence, detect_silence_with_interval, usual_interval_ms, SilenceConfig};
pub use site::{same_gpu_model, scan_site, SiteDevice, SiteScanConfig};
pub use spike::{detect_load_spikes, detect_spikes, SpikeConfig};
pub use stats::{mad, median};
pub use stuck::{detect_stuck, StuckConfig};

/// One time-stamped value of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub ts_ms: TimestampMs,
    pub value: f64,
}

impl Point {
    pub fn new(ts_ms: TimestampMs, value: f64) -> Self {
        Self { ts_ms, value }
    }
}

/// Identity of a stored series: device, channel and metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub device: DeviceId,
    pub channel: ChannelName,
    pub metric: Metric,
}

impl SeriesKey {
    pub fn new(device: DeviceId, channel: ChannelName, metric: Metric) -> Self {
        Self { device, channel, metric }
    }

    /// Builds a key from text, for tests and tools; invalid names are returned as errors.
    pub fn parse(device: &str, channel: &str, metric: Metric) -> Result<Self, se_core::InvalidName> {
        Ok(Self { device: DeviceId::parse(device)?, channel: ChannelName::parse(channel)?, metric })
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.device, self.channel, self.metric)
    }
}

/// Urgency of an anomaly for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Kind of anomaly, one per detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Readings far from the forecast, or hourly means far from the same
    /// hours on earlier days, by robust residual score.
    ForecastDeviation,
    /// A reading far from the readings on both sides of it.
    Spike,
    /// A value that stopped changing while the series or its peers vary.
    Stuck,
    /// A value outside the possible range of its metric or device, or NaN.
    Impossible,
    /// No reading for several of the device's usual intervals.
    Silent,
    /// A device drawing more than its peers at the same load.
    PeerExcess,
    /// Hashrate per watt fell compared with the device's own past.
    EfficiencyDrift,
    /// The share of wall power not reaching the GPUs grew.
    PsuLoss,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 8] = [
        AnomalyKind::ForecastDeviation,
        AnomalyKind::Spike,
        AnomalyKind::Stuck,
        AnomalyKind::Impossible,
        AnomalyKind::Silent,
        AnomalyKind::PeerExcess,
        AnomalyKind::EfficiencyDrift,
        AnomalyKind::PsuLoss,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AnomalyKind::ForecastDeviation => "forecast_deviation",
            AnomalyKind::Spike => "spike",
            AnomalyKind::Stuck => "stuck",
            AnomalyKind::Impossible => "impossible",
            AnomalyKind::Silent => "silent",
            AnomalyKind::PeerExcess => "peer_excess",
            AnomalyKind::EfficiencyDrift => "efficiency_drift",
            AnomalyKind::PsuLoss => "psu_loss",
        }
    }

    /// Short name for people, in their language.
    pub fn describe(self, lang: Lang) -> &'static str {
        use AnomalyKind::*;
        match (self, lang) {
            (ForecastDeviation, Lang::En) => "far from forecast",
            (ForecastDeviation, Lang::Fr) => "écart à la prévision",
            (Spike, Lang::En) => "spike",
            (Spike, Lang::Fr) => "pic",
            (Stuck, Lang::En) => "stuck sensor",
            (Stuck, Lang::Fr) => "capteur figé",
            (Impossible, Lang::En) => "impossible value",
            (Impossible, Lang::Fr) => "valeur impossible",
            (Silent, Lang::En) => "device silent",
            (Silent, Lang::Fr) => "appareil muet",
            (PeerExcess, Lang::En) => "draws more than its peers",
            (PeerExcess, Lang::Fr) => "consomme plus que ses pairs",
            (EfficiencyDrift, Lang::En) => "efficiency drift",
            (EfficiencyDrift, Lang::Fr) => "dérive du rendement",
            (PsuLoss, Lang::En) => "growing power supply loss",
            (PsuLoss, Lang::Fr) => "pertes d'alimentation en hausse",
        }
    }
}

impl std::str::FromStr for AnomalyKind {
    type Err = String;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        AnomalyKind::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
            .ok_or_else(|| format!("unknown anomaly kind {code:?}"))
    }
}

/// Closed time interval `[start_ms, end_ms]` that shows an anomaly, for a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub start_ms: TimestampMs,
    pub end_ms: TimestampMs,
}

impl Segment {
    pub fn new(start_ms: TimestampMs, end_ms: TimestampMs) -> Self {
        Self { start_ms: start_ms.min(end_ms), end_ms: start_ms.max(end_ms) }
    }
}

/// One detected anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub device: DeviceId,
    pub channel: ChannelName,
    pub metric: Metric,
    pub kind: AnomalyKind,
    pub severity: Severity,
    /// Strength of the evidence; each detector documents its scale, and a
    /// larger score is always stronger.
    pub score: f64,
    pub segment: Segment,
    /// The facts behind the anomaly, with numbers; [`Anomaly::message`] renders it.
    pub reason: AnomalyReason,
}

impl Anomaly {
    pub(crate) fn new(key: &SeriesKey, kind: AnomalyKind, severity: Severity, score: f64, segment: Segment, reason: AnomalyReason) -> Self {
        Self { device: key.device.clone(), channel: key.channel.clone(), metric: key.metric, kind, severity, score, segment, reason }
    }

    /// Plain-language reason in `lang`, naming the device and the numbers.
    pub fn message(&self, lang: Lang) -> String {
        self.reason.message(&self.device, &self.channel, self.metric, lang)
    }
}

/// Input a detector cannot use. Each message names the value and the fix.
#[derive(Debug, Clone, PartialEq)]
pub enum InputError {
    /// A point's time is earlier than the one before it.
    UnsortedTimes { series: String, index: usize, ts_ms: TimestampMs, previous_ms: TimestampMs },
    /// A setting is outside its valid range.
    InvalidSetting { name: &'static str, value: String, expected: &'static str },
}

impl InputError {
    /// Formats the message in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (InputError::UnsortedTimes { series, index, ts_ms, previous_ms }, Lang::En) => format!(
                "series {series} is not sorted by time: point {index} at {ts_ms} ms comes after {previous_ms} ms; sort the points by time before detection"
            ),
            (InputError::UnsortedTimes { series, index, ts_ms, previous_ms }, Lang::Fr) => format!(
                "la série {series} n'est pas triée par date : le point {index} à {ts_ms} ms suit {previous_ms} ms ; triez les points par date avant la détection"
            ),
            (InputError::InvalidSetting { name, value, expected }, Lang::En) => {
                format!("invalid detector setting {name} = {value}; expected {expected}")
            }
            (InputError::InvalidSetting { name, value, expected }, Lang::Fr) => {
                format!("réglage de détecteur invalide {name} = {value} ; attendu : {expected}")
            }
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message(Lang::En))
    }
}

impl std::error::Error for InputError {}

/// Checks that `points` are in non-decreasing time order.
pub(crate) fn check_sorted(series: &SeriesKey, points: &[Point]) -> Result<(), InputError> {
    for (index, pair) in points.windows(2).enumerate() {
        if pair[1].ts_ms < pair[0].ts_ms {
            return Err(InputError::UnsortedTimes {
                series: series.to_string(),
                index: index + 1,
                ts_ms: pair[1].ts_ms,
                previous_ms: pair[0].ts_ms,
            });
        }
    }
    Ok(())
}

/// Checks that a setting is a finite number within `[min, max]`.
pub(crate) fn check_setting(name: &'static str, value: f64, min: f64, max: f64, expected: &'static str) -> Result<(), InputError> {
    if value.is_finite() && value >= min && value <= max {
        Ok(())
    } else {
        Err(InputError::InvalidSetting { name, value: value.to_string(), expected })
    }
}

/// Points with a finite value, in their order.
pub(crate) fn finite(points: &[Point]) -> Vec<Point> {
    points.iter().copied().filter(|point| point.value.is_finite()).collect()
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use testing::gpu_key;

    #[test]
    fn anomaly_round_trips_through_json() {
        let key = gpu_key("rig-01", 3);
        let reason = AnomalyReason::PeerExcess { excess_pct: 18.0, baseline_excess_pct: None, load: Metric::Utilization, peers: 7, rig_mates: true };
        let anomaly = Anomaly::new(&key, AnomalyKind::PeerExcess, Severity::Warning, 1.5, Segment::new(10, 20), reason);
        let json = serde_json::to_string(&anomaly).unwrap();
        assert!(json.contains(r#""kind":"peer_excess""#), "{json}");
        assert!(json.contains(r#""metric":"power_w""#), "{json}");
        assert!(json.contains(r#""reason":{"type":"peer_excess""#), "{json}");
        let back: Anomaly = serde_json::from_str(&json).unwrap();
        assert_eq!(back, anomaly);
        assert_eq!(anomaly.message(Lang::En), "GPU 3 of rig-01 draws 18\u{a0}% more than its rig mates at the same utilization (7 peers)");
        assert_eq!(anomaly.message(Lang::Fr), "Le GPU 3 de rig-01 consomme 18\u{a0}% de plus que les autres GPU de sa machine à utilisation égale (7 pairs)");
    }

    #[test]
    fn kind_codes_parse_back() {
        for kind in AnomalyKind::ALL {
            assert_eq!(kind.code().parse::<AnomalyKind>(), Ok(kind));
            assert!(!kind.describe(Lang::Fr).is_empty());
        }
    }
}
