//! Helpers shared by the device-format decoders: collecting readings and
//! rejections of one message, unit scaling and device ids from topics.

use serde_json::Value;

use se_core::{ChannelName, Decoded, DeviceId, Metric, RejectReason, Reading, Rejection, TimestampMs};

use crate::{check_range, parse_number};

/// Readings and rejections of one message, all tagged with its device.
pub(crate) struct Batch<'t> {
    pub topic: &'t str,
    pub decoded: Decoded,
}

impl<'t> Batch<'t> {
    pub fn new(topic: &'t str, device: Option<DeviceId>) -> Self {
        Self { topic, decoded: Decoded { device, ..Decoded::default() } }
    }

    pub fn reject(&mut self, reason: RejectReason, field: Option<&str>, value: &str, detail: impl Into<String>) {
        let mut rejection = Rejection::new(reason, self.topic, value, detail).with_device(self.decoded.device.clone());
        if let Some(field) = field {
            rejection = rejection.with_field(field);
        }
        self.decoded.rejections.push(rejection);
    }

    /// Records a device time that was replaced by the receive time.
    pub fn note(&mut self, substitution: Option<Rejection>) {
        if let Some(rejection) = substitution {
            let rejection = rejection.with_device(self.decoded.device.clone());
            self.decoded.rejections.push(rejection);
        }
    }

    /// Checks `value` (already in the metric's canonical unit) against the
    /// metric's range and stores it, or rejects it naming `field`.
    pub fn push(&mut self, channel: &str, metric: Metric, ts_ms: TimestampMs, value: f64, field: &str) {
        let Some(device) = self.decoded.device.clone() else {
            return;
        };
        let channel = match ChannelName::parse(channel) {
            Ok(channel) => channel,
            Err(error) => {
                let detail = format!("{field}: {error}");
                self.reject(RejectReason::InvalidChannel, Some(field), channel, detail);
                return;
            }
        };
        match check_range(metric, value) {
            Ok(value) => self.decoded.readings.push(Reading { device, channel, metric, ts_ms, value }),
            Err(reason) => {
                let detail = value_detail(reason, metric, field, &value.to_string());
                self.reject(reason, Some(field), &value.to_string(), detail);
            }
        }
    }

    /// Stores a parsed value (already in the metric's canonical unit, see
    /// [`scaled`]), or rejects the parse failure naming `field` and `raw`.
    pub fn push_parsed(&mut self, channel: &str, metric: Metric, ts_ms: TimestampMs, parsed: Result<f64, RejectReason>, field: &str, raw: &str) {
        match parsed {
            Ok(value) => self.push(channel, metric, ts_ms, value, field),
            Err(reason) => {
                let detail = value_detail(reason, metric, field, raw);
                self.reject(reason, Some(field), raw, detail);
            }
        }
    }

    pub fn finish(self) -> Decoded {
        self.decoded
    }
}

/// Explains a rejected value: which field, which rule, and what to do.
pub(crate) fn value_detail(reason: RejectReason, metric: Metric, field: &str, raw: &str) -> String {
    let key = metric.key();
    let unit = metric.unit();
    match reason {
        RejectReason::NotANumber => {
            format!("{field} has no numeric value ({raw:?}); the device reported no measurement, so nothing was stored for {key}")
        }
        RejectReason::EmptyValue => format!("{field} is empty; the device reported no measurement for {key}"),
        RejectReason::Infinite => format!("{field} is infinite ({raw}); check the sensor, nothing was stored for {key}"),
        RejectReason::Negative => {
            format!("{field} ({key}) cannot be negative, got {raw}; check the sensor wiring or calibration")
        }
        RejectReason::OutOfRange => {
            let (min, max) = metric.range();
            format!("{field} ({key}) must be between {min} and {max} {unit}, got {raw}")
        }
        RejectReason::WrongUnit => format!("{field} ({key}) must be a number in {unit} or a bare number, got {raw:?}"),
        _ => format!("{field} ({key}) must be a number, got {raw:?}"),
    }
}

/// Reads a JSON value as a number: JSON numbers, and strings that
/// [`parse_number`] accepts. `null` is "no value".
pub(crate) fn json_number(value: &Value) -> Result<f64, RejectReason> {
    match value {
        Value::Number(number) => number.as_f64().ok_or(RejectReason::NotANumber),
        Value::String(text) => parse_number(text),
        Value::Null => Err(RejectReason::NotANumber),
        _ => Err(RejectReason::UnparsablePayload),
    }
}

/// Converts a parsed device value to the canonical unit by `scale`.
pub(crate) fn scaled(parsed: Result<f64, RejectReason>, scale: f64) -> Result<f64, RejectReason> {
    parsed.map(|value| scale_value(value, scale))
}

/// Multiplies by a unit factor and rounds to 1e-6, so that unit conversion
/// noise (0.1 kWh x 1000 = 100.00000000000001) is not stored.
pub(crate) fn scale_value(value: f64, scale: f64) -> f64 {
    if scale == 1.0 {
        return value;
    }
    let scaled = value * scale;
    let rounded = (scaled * 1e6).round() / 1e6;
    if rounded.is_finite() {
        rounded
    } else {
        scaled
    }
}

/// Factor that converts a value in `unit` to the canonical unit of `metric`,
/// such as 1000 for `kWh` to `energy_wh`. Units are matched exactly (`mW`
/// and `MW` differ). Returns `None` for a unit that does not measure the
/// metric's quantity.
pub fn unit_scale(metric: Metric, unit: &str) -> Option<f64> {
    let unit = unit.trim();
    if unit == metric.unit() {
        return Some(1.0);
    }
    let energy = matches!(metric, Metric::Energy | Metric::ReturnedEnergy);
    let scale = match (metric, unit) {
        (Metric::Power | Metric::PowerLimit, "mW") => 0.001,
        (Metric::Power | Metric::PowerLimit, "kW") => 1000.0,
        (Metric::Power | Metric::PowerLimit, "MW") => 1_000_000.0,
        (_, "mWh") if energy => 0.001,
        (_, "kWh") if energy => 1000.0,
        (_, "MWh") if energy => 1_000_000.0,
        // Watt-minutes, the energy unit of Shelly Gen1 counters.
        (_, "Wmin") if energy => 1.0 / 60.0,
        (Metric::ApparentEnergy, "kVAh") => 1000.0,
        (Metric::ApparentPower, "kVA") => 1000.0,
        (Metric::ReactivePower, "kVAr" | "kvar") => 1000.0,
        (Metric::ReactivePower, "var") => 1.0,
        (Metric::Current, "mA") => 0.001,
        (Metric::Voltage, "mV") => 0.001,
        (Metric::Voltage, "kV") => 1000.0,
        (Metric::Frequency, "mHz") => 0.001,
        (Metric::Clock, "GHz") => 1000.0,
        (Metric::MemoryUsed, "GiB") => 1024.0,
        (Metric::Uptime, "min") => 60.0,
        (Metric::Uptime, "h") => 3600.0,
        (Metric::PowerFactor | Metric::Utilization | Metric::FanSpeed | Metric::Humidity, "") => 1.0,
        _ => return None,
    };
    Some(scale)
}

/// Builds a device id from a topic prefix. MQTT levels are joined with `.`
/// because `/` is not allowed in a device id.
pub(crate) fn device_from_prefix(prefix: &str) -> Result<DeviceId, se_core::InvalidName> {
    DeviceId::parse(&prefix.replace('/', "."))
}

/// Rejects a whole message whose topic names an invalid device.
pub(crate) fn invalid_device(topic: &str, raw: &str, error: &se_core::InvalidName, hint: &str) -> Decoded {
    let detail = format!("{error}; {hint}");
    Decoded::rejected(Rejection::new(RejectReason::InvalidDeviceId, topic, raw, detail))
}

/// Reads an availability payload: `online`/`offline` (any case) or
/// `true`/`false`, as Tasmota, ESPHome and Shelly send them.
pub(crate) fn parse_availability(payload: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(payload);
    match text.trim().to_ascii_lowercase().as_str() {
        "online" | "true" | "1" => Some(true),
        "offline" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Decodes an availability message, or rejects a payload that is neither
/// online nor offline.
pub(crate) fn decode_availability(device: DeviceId, topic: &str, payload: &[u8]) -> Decoded {
    match parse_availability(payload) {
        Some(online) => Decoded { device: Some(device), online: Some(online), ..Decoded::default() },
        None => {
            let text = String::from_utf8_lossy(payload);
            let detail = format!("availability {text:?} is none of online, offline, true or false");
            Decoded::rejected(Rejection::new(RejectReason::UnparsablePayload, topic, &text, detail).with_device(Some(device)))
        }
    }
}

/// Checks that `text` is 1 to 3 ASCII digits, as in `relay/0`.
pub(crate) fn is_index(text: &str) -> bool {
    !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_scale_converts_energy_units() {
        assert_eq!(unit_scale(Metric::Energy, "kWh"), Some(1000.0));
        assert_eq!(unit_scale(Metric::Energy, "Wh"), Some(1.0));
        assert_eq!(unit_scale(Metric::Energy, "mWh"), Some(0.001));
        assert_eq!(unit_scale(Metric::Energy, "W"), None);
    }

    #[test]
    fn scale_value_removes_conversion_noise() {
        assert_eq!(scale_value(0.1, 1000.0), 100.0);
        assert_eq!(scale_value(152.304, 1000.0), 152_304.0);
        assert_eq!(scale_value(40.0, 1.0 / 60.0), 0.666667);
    }

    #[test]
    fn prefix_levels_become_dots() {
        assert_eq!(device_from_prefix("home/shelly-1").map(|d| d.to_string()), Ok("home.shelly-1".to_owned()));
        assert!(device_from_prefix("bad prefix").is_err());
    }
}
