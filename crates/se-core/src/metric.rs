use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A measured quantity with its one canonical unit.
///
/// The wire key of a metric ends with its unit (`power_w`, `energy_wh`), so a
/// value never travels without its unit. Decoders convert device units (kWh,
/// watt-minutes, mWh) into these canonical units before a reading is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Metric {
    /// Active power in watts.
    Power,
    /// Apparent power in volt-amperes.
    ApparentPower,
    /// Reactive power in volt-amperes reactive.
    ReactivePower,
    /// RMS voltage in volts.
    Voltage,
    /// RMS current in amperes.
    Current,
    /// Power factor, a ratio from -1 to 1.
    PowerFactor,
    /// Grid frequency in hertz.
    Frequency,
    /// Cumulative active energy counter in watt-hours.
    Energy,
    /// Cumulative energy returned to the grid, in watt-hours.
    ReturnedEnergy,
    /// Cumulative apparent energy counter in volt-ampere-hours.
    ApparentEnergy,
    /// Temperature in degrees Celsius.
    Temperature,
    /// Utilization in percent (0 to 100).
    Utilization,
    /// Fan speed in percent of maximum (0 to 100).
    FanSpeed,
    /// Configured power limit in watts.
    PowerLimit,
    /// Clock frequency in megahertz.
    Clock,
    /// Memory in use in mebibytes.
    MemoryUsed,
    /// Hashrate in megahashes per second.
    Hashrate,
    /// Relative humidity in percent.
    Humidity,
    /// Time since the device booted, in seconds.
    Uptime,
}

/// Unit and range facts of one metric.
struct Spec {
    key: &'static str,
    unit: &'static str,
    min: f64,
    max: f64,
}

impl Metric {
    pub const ALL: [Metric; 19] = [
        Metric::Power,
        Metric::ApparentPower,
        Metric::ReactivePower,
        Metric::Voltage,
        Metric::Current,
        Metric::PowerFactor,
        Metric::Frequency,
        Metric::Energy,
        Metric::ReturnedEnergy,
        Metric::ApparentEnergy,
        Metric::Temperature,
        Metric::Utilization,
        Metric::FanSpeed,
        Metric::PowerLimit,
        Metric::Clock,
        Metric::MemoryUsed,
        Metric::Hashrate,
        Metric::Humidity,
        Metric::Uptime,
    ];

    fn spec(self) -> Spec {
        let (key, unit, min, max) = match self {
            // Active power may be negative where a meter measures export.
            Metric::Power => ("power_w", "W", f64::MIN, f64::MAX),
            Metric::ApparentPower => ("apparent_power_va", "VA", 0.0, f64::MAX),
            Metric::ReactivePower => ("reactive_power_var", "VAr", f64::MIN, f64::MAX),
            Metric::Voltage => ("voltage_v", "V", 0.0, f64::MAX),
            Metric::Current => ("current_a", "A", 0.0, f64::MAX),
            Metric::PowerFactor => ("power_factor", "", -1.0, 1.0),
            Metric::Frequency => ("frequency_hz", "Hz", 0.0, f64::MAX),
            Metric::Energy => ("energy_wh", "Wh", 0.0, f64::MAX),
            Metric::ReturnedEnergy => ("returned_energy_wh", "Wh", 0.0, f64::MAX),
            Metric::ApparentEnergy => ("apparent_energy_vah", "VAh", 0.0, f64::MAX),
            // Below absolute zero is impossible; the upper bound is far above any silicon limit.
            Metric::Temperature => ("temperature_c", "°C", -273.15, 1000.0),
            Metric::Utilization => ("utilization_pct", "%", 0.0, 100.0),
            Metric::FanSpeed => ("fan_speed_pct", "%", 0.0, 100.0),
            Metric::PowerLimit => ("power_limit_w", "W", 0.0, f64::MAX),
            Metric::Clock => ("clock_mhz", "MHz", 0.0, f64::MAX),
            Metric::MemoryUsed => ("memory_used_mib", "MiB", 0.0, f64::MAX),
            Metric::Hashrate => ("hashrate_mhs", "MH/s", 0.0, f64::MAX),
            Metric::Humidity => ("humidity_pct", "%", 0.0, 100.0),
            Metric::Uptime => ("uptime_s", "s", 0.0, f64::MAX),
        };
        Spec { key, unit, min, max }
    }

    /// Wire and storage key, such as `power_w`.
    pub fn key(self) -> &'static str {
        self.spec().key
    }

    /// Unit symbol, such as `W`; empty for a dimensionless ratio.
    pub fn unit(self) -> &'static str {
        self.spec().unit
    }

    /// Physically possible range of the metric, inclusive.
    pub fn range(self) -> (f64, f64) {
        let spec = self.spec();
        (spec.min, spec.max)
    }

    /// Returns whether the metric is a cumulative counter rather than a gauge.
    pub fn is_counter(self) -> bool {
        matches!(
            self,
            Metric::Energy | Metric::ReturnedEnergy | Metric::ApparentEnergy | Metric::Uptime
        )
    }

    /// Finds the metric whose key has the same quantity prefix as `key`, to
    /// suggest the right unit when a sender used another one (`power_kw`).
    pub fn with_same_quantity(key: &str) -> Option<Metric> {
        let quantity = key.rsplit_once('_').map_or(key, |(head, _)| head);
        Metric::ALL.into_iter().find(|metric| {
            let own = metric.key();
            own.rsplit_once('_').map_or(own, |(head, _)| head) == quantity
        })
    }
}

/// A metric key that Smart Energy does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric {key:?}")]
pub struct UnknownMetric {
    pub key: String,
}

impl FromStr for Metric {
    type Err = UnknownMetric;
    fn from_str(key: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|metric| metric.key() == key)
            .ok_or_else(|| UnknownMetric { key: key.to_owned() })
    }
}

impl TryFrom<String> for Metric {
    type Error = UnknownMetric;
    fn try_from(key: String) -> Result<Self, Self::Error> {
        key.parse()
    }
}

impl From<Metric> for &'static str {
    fn from(metric: Metric) -> Self {
        metric.key()
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_from_str() {
        for metric in Metric::ALL {
            assert_eq!(metric.key().parse::<Metric>(), Ok(metric));
        }
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<_> = Metric::ALL.iter().map(|m| m.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), Metric::ALL.len());
    }

    #[test]
    fn same_quantity_suggests_canonical_unit() {
        assert_eq!(Metric::with_same_quantity("power_kw"), Some(Metric::Power));
        assert_eq!(Metric::with_same_quantity("energy_kwh"), Some(Metric::Energy));
        assert_eq!(Metric::with_same_quantity("pressure_pa"), None);
    }
}
