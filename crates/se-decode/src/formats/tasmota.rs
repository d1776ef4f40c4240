//! Tasmota telemetry, with the default full topic `%prefix%/%topic%/`.
//!
//! - `tele/<topic>/SENSOR`: JSON with `"Time"` and an `"ENERGY"` object, plus
//!   any temperature or humidity sensors, each under its own key.
//! - `tele/<topic>/ENERGY`: older firmware sends the `ENERGY` fields at the
//!   top level of the JSON, next to `"Time"`.
//! - `tele/<topic>/LWT`: `Online` or `Offline`, the MQTT Last Will.
//! - `tasmota/discovery/<MAC>/config`: the retained discovery config that
//!   Tasmota 9.2 and later publish at boot (unless `SetOption19 1`). It
//!   becomes a [`se_core::Announcement`] for the device named by its `"t"`
//!   field, the topic its telemetry uses. An empty payload clears a retained
//!   config and is ignored.
//!
//! `ENERGY` fields stored: `Total` (kWh, stored as the counter `energy_wh`),
//! `ExportActive` (kWh, `returned_energy_wh`), `Power` (W), `ApparentPower`
//! (VA), `ReactivePower` (VAr), `Factor`, `Voltage` (V), `Current` (A) and
//! `Frequency` (Hz). A scalar goes to channel `main`; an array, as sent by
//! multi-channel devices (`"Power": [12.1, 0]`), goes to `ch0`, `ch1`, ...
//!
//! Fields not stored:
//! - `Today` and `Yesterday`: Tasmota's own day split follows the device
//!   clock and zone, while Smart Energy derives days from `Total` in the site
//!   time zone.
//! - `Period`, the Wh since the previous telemetry: one lost message would
//!   lose its energy for good, while deltas of `Total` survive a loss.
//! - `TotalStartTime`, and fields that firmware builds add, ignored silently.
//!
//! `Time` is local time without a zone unless `SetOption52` adds the offset.
//! Without an offset it is read in the configured time zone. A device whose
//! clock is unset reports `1970-01-01T...`: its readings get the receive time
//! and a rejection records the substitution (see [`crate::choose_timestamp`]).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::{Map, Value};

use se_core::{Announcement, Decoded, DeviceId, Metric, RejectReason, Rejection, TimestampMs};

use super::common::{scaled, decode_availability, invalid_device, json_number, Batch};
use crate::{choose_timestamp, Decoder};

/// Settings of the Tasmota decoder.
#[derive(Debug, Clone)]
pub struct TasmotaConfig {
    /// First topic level of telemetry, `tele` unless the device's `Prefix3` was changed.
    pub prefix: String,
    /// Time zone of the device clock, used when `Time` has no offset.
    pub time_zone: TimeZone,
}

impl Default for TasmotaConfig {
    fn default() -> Self {
        Self { prefix: "tele".to_owned(), time_zone: TimeZone::UTC }
    }
}

/// Decoder of Tasmota `SENSOR`, `ENERGY` and `LWT` messages.
#[derive(Debug, Default)]
pub struct TasmotaDecoder {
    config: TasmotaConfig,
}

impl TasmotaDecoder {
    pub fn new(config: TasmotaConfig) -> Self {
        Self { config }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sensor,
    Energy,
    Lwt,
    Discovery,
}

/// Topic prefix of Tasmota discovery configs, fixed in the firmware.
pub const TASMOTA_DISCOVERY_PREFIX: &str = "tasmota/discovery";

/// `ENERGY` fields that are stored, with their metric and unit factor.
const ENERGY_FIELDS: [(&str, Metric, f64); 9] = [
    ("Total", Metric::Energy, 1000.0),
    ("ExportActive", Metric::ReturnedEnergy, 1000.0),
    ("Power", Metric::Power, 1.0),
    ("ApparentPower", Metric::ApparentPower, 1.0),
    ("ReactivePower", Metric::ReactivePower, 1.0),
    ("Factor", Metric::PowerFactor, 1.0),
    ("Voltage", Metric::Voltage, 1.0),
    ("Current", Metric::Current, 1.0),
    ("Frequency", Metric::Frequency, 1.0),
];

/// Maximum length of a channel name, in characters.
const MAX_CHANNEL_LEN: usize = 64;

/// Top-level keys of a `SENSOR` message that are not sensors.
const NON_SENSOR_KEYS: [&str; 3] = ["Time", "ENERGY", "TempUnit"];

impl TasmotaDecoder {
    /// Splits a topic into its device part and kind. For a discovery
    /// topic the device part is the MAC address, not the device id.
    fn split_topic<'t>(&self, topic: &'t str) -> Option<(&'t str, Kind)> {
        if let Some(rest) = topic.strip_prefix(TASMOTA_DISCOVERY_PREFIX).and_then(|rest| rest.strip_prefix('/')) {
            let mac = rest.strip_suffix("/config").filter(|mac| !mac.is_empty() && !mac.contains('/'))?;
            return Some((mac, Kind::Discovery));
        }
        let rest = topic.strip_prefix(self.config.prefix.as_str())?.strip_prefix('/')?;
        let (device, leaf) = rest.split_once('/')?;
        let kind = match leaf {
            "SENSOR" => Kind::Sensor,
            "ENERGY" => Kind::Energy,
            "LWT" => Kind::Lwt,
            _ => return None,
        };
        Some((device, kind))
    }

    /// Reads `Time` as an instant: RFC 3339 with an offset, or local civil
    /// time in the configured zone.
    fn device_time(&self, batch: &mut Batch<'_>, root: &Map<String, Value>) -> Option<TimestampMs> {
        let value = root.get("Time")?;
        let text = value.as_str().unwrap_or_default();
        if let Ok(ts) = text.parse::<Timestamp>() {
            return Some(ts.as_millisecond());
        }
        let local = text.parse::<DateTime>().ok().and_then(|dt| self.config.time_zone.to_ambiguous_timestamp(dt).compatible().ok());
        if local.is_none() {
            let detail = format!("\"Time\" {value} is not a date such as \"2024-11-30T21:00:00\"; the receive time was used");
            batch.reject(RejectReason::InvalidTimestamp, Some("Time"), &value.to_string(), detail);
        }
        local.map(|ts| ts.as_millisecond())
    }
}

impl Decoder for TasmotaDecoder {
    fn name(&self) -> &'static str {
        "tasmota"
    }

    fn topic_filters(&self) -> Vec<String> {
        let prefix = &self.config.prefix;
        vec![
            format!("{prefix}/+/SENSOR"),
            format!("{prefix}/+/ENERGY"),
            format!("{prefix}/+/LWT"),
            format!("{TASMOTA_DISCOVERY_PREFIX}/+/config"),
        ]
    }

    fn accepts(&self, topic: &str) -> bool {
        self.split_topic(topic).is_some()
    }

    fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
        let Some((device, kind)) = self.split_topic(topic) else {
            return Decoded::default();
        };
        if kind == Kind::Discovery {
            return decode_discovery(topic, payload);
        }
        let device = match DeviceId::parse(device) {
            Ok(device) => device,
            Err(error) => return invalid_device(topic, device, &error, "rename the Tasmota Topic"),
        };
        if kind == Kind::Lwt {
            return decode_availability(device, topic, payload);
        }

        let mut batch = Batch::new(topic, Some(device));
        let root = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(root)) => root,
            _ => {
                let raw = String::from_utf8_lossy(payload);
                let detail = "Tasmota telemetry must be a JSON object such as {\"Time\":\"2024-11-30T21:00:00\",\"ENERGY\":{\"Power\":45}}";
                batch.reject(RejectReason::UnparsablePayload, None, &raw, detail);
                return batch.finish();
            }
        };

        let device_ms = self.device_time(&mut batch, &root);
        let (ts_ms, substitution) = choose_timestamp(device_ms, received_ms, topic);
        batch.note(substitution);

        match kind {
            Kind::Energy => decode_energy(&mut batch, &root, ts_ms, ""),
            _ => decode_sensor(&mut batch, &root, ts_ms),
        }
        if batch.decoded.readings.is_empty() && batch.decoded.rejections.iter().all(|r| r.reason == RejectReason::InvalidTimestamp) {
            let detail = "the message has no ENERGY field and no temperature or humidity sensor; nothing was stored";
            batch.reject(RejectReason::NoReadings, None, &String::from_utf8_lossy(payload), detail);
        }
        batch.finish()
    }
}

/// Reads a discovery config into an announcement of the device named by `"t"`.
fn decode_discovery(topic: &str, payload: &[u8]) -> Decoded {
    if payload.is_empty() {
        return Decoded::default();
    }
    let raw = String::from_utf8_lossy(payload);
    let reject = |reason, value: &str, detail: String| Decoded::rejected(Rejection::new(reason, topic, value, detail));
    let root = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(root)) => root,
        _ => {
            let detail = "a Tasmota discovery config must be a JSON object such as {\"t\":\"plug-1\",\"dn\":\"Plug\",\"md\":\"Sonoff S31\"}";
            return reject(RejectReason::UnparsablePayload, &raw, detail.to_owned());
        }
    };
    let Some(topic_name) = root.get("t").and_then(Value::as_str) else {
        let detail = "the discovery config has no \"t\" (Tasmota Topic) field, so its telemetry topic is unknown; update Tasmota to 9.2 or later".to_owned();
        return reject(RejectReason::InvalidDeviceId, &raw, detail);
    };
    let device = match DeviceId::parse(topic_name) {
        Ok(device) => device,
        Err(error) => return invalid_device(topic, topic_name, &error, "rename the Tasmota Topic"),
    };
    let text = |key: &str| root.get(key).and_then(Value::as_str).filter(|text| !text.is_empty()).map(str::to_owned);
    let announcement = Announcement {
        device: device.clone(),
        format: "tasmota".to_owned(),
        name: text("dn").or_else(|| text("hn")),
        model: text("md"),
        payload: Announcement::excerpt(&raw),
    };
    Decoded { device: Some(device), announcement: Some(announcement), ..Decoded::default() }
}

fn decode_sensor(batch: &mut Batch<'_>, root: &Map<String, Value>, ts_ms: TimestampMs) {
    match root.get("ENERGY") {
        Some(Value::Object(energy)) => decode_energy(batch, energy, ts_ms, "ENERGY."),
        Some(other) => {
            let detail = "\"ENERGY\" must be an object such as {\"Total\":1.2,\"Power\":45}";
            batch.reject(RejectReason::UnparsablePayload, Some("ENERGY"), &other.to_string(), detail);
        }
        None => {}
    }
    let fahrenheit = root.get("TempUnit").and_then(Value::as_str) == Some("F");
    for (name, value) in root.iter().filter(|(key, _)| !NON_SENSOR_KEYS.contains(&key.as_str())) {
        if let Value::Object(sensor) = value {
            decode_climate_sensor(batch, name, sensor, ts_ms, fahrenheit);
        }
    }
}

fn decode_energy(batch: &mut Batch<'_>, energy: &Map<String, Value>, ts_ms: TimestampMs, field_prefix: &str) {
    for (key, metric, scale) in ENERGY_FIELDS {
        let Some(value) = energy.get(key) else {
            continue;
        };
        let field = format!("{field_prefix}{key}");
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let field = format!("{field}[{index}]");
                    batch.push_parsed(&format!("ch{index}"), metric, ts_ms, scaled(json_number(item), scale), &field, &item.to_string());
                }
            }
            _ => batch.push_parsed("main", metric, ts_ms, scaled(json_number(value), scale), &field, &value.to_string()),
        }
    }
}

/// Stores `Temperature` and `Humidity` of a sensor such as `"DS18B20":
/// {"Temperature": 21.5}` on a channel named after the sensor key.
fn decode_climate_sensor(batch: &mut Batch<'_>, name: &str, sensor: &Map<String, Value>, ts_ms: TimestampMs, fahrenheit: bool) {
    let channel = sensor_channel(name);
    if let Some(value) = sensor.get("Temperature") {
        let field = format!("{name}.Temperature");
        let celsius = json_number(value).map(|t| if fahrenheit { (t - 32.0) * 5.0 / 9.0 } else { t });
        let celsius = celsius.map(|t| (t * 100.0).round() / 100.0);
        batch.push_parsed(&channel, Metric::Temperature, ts_ms, celsius, &field, &value.to_string());
    }
    if let Some(value) = sensor.get("Humidity") {
        let field = format!("{name}.Humidity");
        batch.push_parsed(&channel, Metric::Humidity, ts_ms, json_number(value), &field, &value.to_string());
    }
}

/// Channel name of a Tasmota sensor key: lower case, with characters that a
/// channel name cannot contain replaced by `_`.
fn sensor_channel(name: &str) -> String {
    name.chars()
        .take(MAX_CHANNEL_LEN)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c.to_ascii_lowercase() } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_733_000_000_000;

    fn decode(topic: &str, payload: &str) -> Decoded {
        let config = TasmotaConfig { time_zone: TimeZone::get("Europe/Berlin").unwrap(), ..TasmotaConfig::default() };
        TasmotaDecoder::new(config).decode(topic, payload.as_bytes(), NOW)
    }

    fn value(decoded: &Decoded, channel: &str, metric: Metric) -> Option<f64> {
        decoded.readings.iter().find(|r| r.channel.as_str() == channel && r.metric == metric).map(|r| r.value)
    }

    const PLUG: &str = r#"{"Time":"2024-11-30T21:00:00","ENERGY":{"TotalStartTime":"2023-01-07T10:11:12","Total":152.304,"Yesterday":1.204,"Today":0.532,"Period":3,"Power":45,"ApparentPower":60,"ReactivePower":40,"Factor":0.75,"Voltage":231,"Current":0.261}}"#;

    #[test]
    fn plug_energy_fields_are_stored() {
        let decoded = decode("tele/plug-1/SENSOR", PLUG);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        assert_eq!(value(&decoded, "main", Metric::Energy), Some(152_304.0));
        assert_eq!(value(&decoded, "main", Metric::Power), Some(45.0));
        assert_eq!(value(&decoded, "main", Metric::ApparentPower), Some(60.0));
        assert_eq!(value(&decoded, "main", Metric::ReactivePower), Some(40.0));
        assert_eq!(value(&decoded, "main", Metric::PowerFactor), Some(0.75));
        assert_eq!(value(&decoded, "main", Metric::Voltage), Some(231.0));
        assert_eq!(value(&decoded, "main", Metric::Current), Some(0.261));
        assert_eq!(decoded.readings.len(), 7);
    }

    #[test]
    fn local_time_uses_configured_zone() {
        let decoded = decode("tele/plug-1/SENSOR", PLUG);
        // 21:00 in Berlin in November (UTC+1) is 20:00Z.
        let expected: Timestamp = "2024-11-30T20:00:00Z".parse().unwrap();
        assert_eq!(decoded.readings[0].ts_ms, expected.as_millisecond());
    }

    #[test]
    fn time_with_offset_is_read_as_is() {
        let decoded = decode("tele/plug-1/SENSOR", r#"{"Time":"2024-11-30T21:00:00+03:00","ENERGY":{"Power":5}}"#);
        let expected: Timestamp = "2024-11-30T18:00:00Z".parse().unwrap();
        assert_eq!(decoded.readings[0].ts_ms, expected.as_millisecond());
    }

    #[test]
    fn unset_clock_uses_receive_time() {
        let decoded = decode("tele/plug-1/SENSOR", r#"{"Time":"1970-01-01T00:03:12","ENERGY":{"Total":0.5,"Power":5}}"#);
        assert_eq!(decoded.readings.len(), 2);
        assert!(decoded.readings.iter().all(|r| r.ts_ms == NOW));
        assert_eq!(decoded.rejections.len(), 1);
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidTimestamp);
        assert_eq!(decoded.rejections[0].device.as_ref().map(|d| d.as_str()), Some("plug-1"));
    }

    #[test]
    fn arrays_become_numbered_channels() {
        let payload = r#"{"Time":"2024-11-30T21:00:00","ENERGY":{"Total":3.5,"Power":[12.1,0],"Voltage":230,"Current":[0.06,0]}}"#;
        let decoded = decode("tele/dual/SENSOR", payload);
        assert_eq!(value(&decoded, "ch0", Metric::Power), Some(12.1));
        assert_eq!(value(&decoded, "ch1", Metric::Power), Some(0.0));
        assert_eq!(value(&decoded, "ch1", Metric::Current), Some(0.0));
        assert_eq!(value(&decoded, "main", Metric::Energy), Some(3500.0));
        assert_eq!(value(&decoded, "main", Metric::Voltage), Some(230.0));
    }

    #[test]
    fn old_energy_topic_is_decoded() {
        let payload = r#"{"Time":"2019-05-01T10:00:00","Total":1.002,"Yesterday":0.1,"Today":0.05,"Period":1,"Power":20,"Factor":0.91,"Voltage":229,"Current":0.096}"#;
        let decoded = decode("tele/old-plug/ENERGY", payload);
        assert_eq!(value(&decoded, "main", Metric::Energy), Some(1002.0));
        assert_eq!(value(&decoded, "main", Metric::Power), Some(20.0));
    }

    #[test]
    fn lwt_reports_online_state() {
        assert_eq!(decode("tele/plug-1/LWT", "Offline").online, Some(false));
        assert_eq!(decode("tele/plug-1/LWT", "Online").online, Some(true));
    }

    #[test]
    fn bad_factor_is_rejected_alone() {
        let decoded = decode("tele/plug-1/SENSOR", r#"{"Time":"2024-11-30T21:00:00","ENERGY":{"Power":45,"Factor":1.7,"Voltage":null}}"#);
        let reasons: Vec<_> = decoded.rejections.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, vec![RejectReason::OutOfRange, RejectReason::NotANumber]);
        assert_eq!(value(&decoded, "main", Metric::Power), Some(45.0));
    }

    #[test]
    fn temperature_sensor_gets_its_channel() {
        let payload = r#"{"Time":"2024-11-30T21:00:00","DS18B20":{"Id":"01144F2D","Temperature":70.7},"TempUnit":"F"}"#;
        let decoded = decode("tele/th-1/SENSOR", payload);
        assert_eq!(value(&decoded, "ds18b20", Metric::Temperature), Some(21.5));
    }

    #[test]
    fn message_without_values_is_rejected() {
        let decoded = decode("tele/th-1/SENSOR", r#"{"Time":"2024-11-30T21:00:00","Switch1":"ON"}"#);
        assert_eq!(decoded.rejections[0].reason, RejectReason::NoReadings);
    }

    const DISCOVERY: &str = r#"{"ip":"192.168.1.50","dn":"Rig plug","fn":["Tasmota",null,null,null,null,null,null,null],"hn":"tasmota-1A2B3C-2876","mac":"84CCA81A2B3C","md":"Sonoff Pow R2","ty":0,"if":0,"ofln":"Offline","onln":"Online","state":["OFF","ON","TOGGLE","HOLD"],"sw":"13.2.0","t":"tasmota_1A2B3C","ft":"%prefix%/%topic%/","tp":["cmnd","stat","tele"],"rl":[1,0,0,0,0,0,0,0],"swc":[-1,-1,-1,-1,-1,-1,-1,-1],"swn":[null,null,null,null,null,null,null,null],"btn":[0,0,0,0,0,0,0,0],"so":{"4":0,"11":0,"13":0,"17":0,"20":0,"30":0,"68":0,"73":0,"82":0,"114":0,"117":0},"lk":0,"lt_st":0,"sho":[0,0,0,0],"ver":1}"#;

    #[test]
    fn discovery_config_announces_topic_device() {
        let decoded = decode("tasmota/discovery/84CCA81A2B3C/config", DISCOVERY);
        let announcement = decoded.announcement.expect("an announcement");
        assert_eq!(announcement.device.as_str(), "tasmota_1A2B3C");
        assert_eq!(announcement.format, "tasmota");
        assert_eq!(announcement.name.as_deref(), Some("Rig plug"));
        assert_eq!(announcement.model.as_deref(), Some("Sonoff Pow R2"));
        assert!(decoded.readings.is_empty());
        assert!(decoded.rejections.is_empty());
    }

    #[test]
    fn empty_discovery_payload_is_ignored() {
        let decoded = decode("tasmota/discovery/84CCA81A2B3C/config", "");
        assert!(decoded.is_empty());
    }

    #[test]
    fn discovery_without_topic_is_rejected() {
        let decoded = decode("tasmota/discovery/84CCA81A2B3C/config", r#"{"dn":"Plug","md":"Sonoff S31"}"#);
        assert!(decoded.announcement.is_none());
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidDeviceId);
    }

    #[test]
    fn discovery_with_bad_topic_is_rejected() {
        let decoded = decode("tasmota/discovery/84CCA81A2B3C/config", r#"{"t":"bad topic","dn":"Plug"}"#);
        assert!(decoded.announcement.is_none());
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidDeviceId);
    }

    #[test]
    fn other_leaves_are_not_accepted() {
        let decoder = TasmotaDecoder::default();
        assert!(!decoder.accepts("tele/plug-1/STATE"));
        assert!(!decoder.accepts("tele/plug-1/SENSOR/extra"));
        assert!(!decoder.accepts("stat/plug-1/SENSOR"));
        assert!(decoder.accepts("tele/plug-1/SENSOR"));
        assert!(decoder.accepts("tasmota/discovery/84CCA81A2B3C/config"));
        assert!(!decoder.accepts("tasmota/discovery/84CCA81A2B3C/sensors"));
        assert!(!decoder.accepts("tasmota/discovery//config"));
    }
}
