//! Shelly devices: Gen1 (one value per topic) and Gen2/Gen3 (JSON status).
//!
//! Gen1 topics, with bare numbers as payloads and the receive time as timestamp:
//!
//! | topic under `shellies/<id>/` | channel | metric |
//! |---|---|---|
//! | `relay/N/power` | `relayN` | `power_w` |
//! | `relay/N/energy` (watt-minutes, restarts at 0 on reboot) | `relayN` | `energy_wh` (value / 60) |
//! | `emeter/N/power`, `voltage`, `current`, `pf`, `reactive_power` | `emeterN` | `power_w`, `voltage_v`, `current_a`, `power_factor`, `reactive_power_var` |
//! | `emeter/N/total`, `total_returned` (Wh, kept across reboots) | `emeterN` | `energy_wh`, `returned_energy_wh` |
//! | `emeter/N/energy`, `returned_energy` (watt-minutes, restart at 0) | `emeterN` | see [`EmeterEnergySource`] |
//! | `temperature` (device temperature, °C) | `device` | `temperature_c` |
//! | `online` (`true`/`false`) | | availability |
//!
//! `shellies/announce` carries the JSON a Gen1 device publishes when it
//! connects (`{"id", "model", "mac", "ip", "fw_ver"}`). It becomes a
//! [`se_core::Announcement`] for the device `id`, the same id as in
//! `shellies/<id>/...`.
//!
//! An emeter publishes its energy twice, as `total` in Wh and as `energy` in
//! watt-minutes. Both would land in the same series, so only the source chosen
//! by [`EmeterEnergySource`] is stored and the other topic is accepted and
//! ignored.
//!
//! Gen2/Gen3 topics `<prefix>/status/<component>:N` carry the component status
//! as JSON; see [`ShellyGen2Decoder`].

use serde::Deserialize;
use serde_json::{Map, Value};

use se_core::{Announcement, Decoded, DeviceId, Metric, RejectReason, Rejection, TimestampMs};

use super::common::{scaled, decode_availability, device_from_prefix, invalid_device, is_index, json_number, Batch};
use crate::{parse_number, Decoder};

/// Source topic of the `energy_wh` counter of a Gen1 emeter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmeterEnergySource {
    /// `total` and `total_returned`, in Wh, kept across reboots by the device.
    #[default]
    Total,
    /// `energy` and `returned_energy`, in watt-minutes, restarted at 0 on reboot.
    WattMinutes,
}

/// Settings of the Shelly Gen1 decoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShellyGen1Config {
    /// First topic level, `shellies` unless the device's MQTT prefix was changed.
    pub prefix: String,
    pub emeter_energy: EmeterEnergySource,
}

impl Default for ShellyGen1Config {
    fn default() -> Self {
        Self { prefix: "shellies".to_owned(), emeter_energy: EmeterEnergySource::Total }
    }
}

/// Decoder of Shelly Gen1 relay, emeter, temperature and availability topics.
#[derive(Debug, Default)]
pub struct ShellyGen1Decoder {
    config: ShellyGen1Config,
}

impl ShellyGen1Decoder {
    pub fn new(config: ShellyGen1Config) -> Self {
        Self { config }
    }
}

/// Content of one Gen1 topic.
#[derive(Debug, Clone, PartialEq)]
enum Gen1Topic {
    Online,
    /// `<prefix>/announce`, which names the device in its payload.
    Announce,
    /// A value to store: channel, metric and factor from the device unit.
    Value { channel: String, metric: Metric, scale: f64 },
    /// A known topic whose value is not stored with the current settings.
    Ignored,
}

const WATT_MINUTES_TO_WH: f64 = 1.0 / 60.0;

impl ShellyGen1Decoder {
    fn split_topic<'t>(&self, topic: &'t str) -> Option<(&'t str, Gen1Topic)> {
        let rest = topic.strip_prefix(self.config.prefix.as_str())?.strip_prefix('/')?;
        if rest == "announce" {
            return Some(("", Gen1Topic::Announce));
        }
        let mut levels = rest.split('/');
        let device = levels.next()?;
        let parts: Vec<&str> = levels.collect();
        let watt_minutes = self.config.emeter_energy == EmeterEnergySource::WattMinutes;
        let kind = match parts.as_slice() {
            ["online"] => Gen1Topic::Online,
            ["temperature"] => Gen1Topic::Value { channel: "device".to_owned(), metric: Metric::Temperature, scale: 1.0 },
            ["relay", index, leaf] if is_index(index) => {
                let (metric, scale) = match *leaf {
                    "power" => (Metric::Power, 1.0),
                    "energy" => (Metric::Energy, WATT_MINUTES_TO_WH),
                    _ => return None,
                };
                Gen1Topic::Value { channel: format!("relay{index}"), metric, scale }
            }
            ["emeter", index, leaf] if is_index(index) => {
                let value = |metric, scale| Gen1Topic::Value { channel: format!("emeter{index}"), metric, scale };
                match *leaf {
                    "power" => value(Metric::Power, 1.0),
                    "reactive_power" => value(Metric::ReactivePower, 1.0),
                    "voltage" => value(Metric::Voltage, 1.0),
                    "current" => value(Metric::Current, 1.0),
                    "pf" => value(Metric::PowerFactor, 1.0),
                    "total" if !watt_minutes => value(Metric::Energy, 1.0),
                    "total_returned" if !watt_minutes => value(Metric::ReturnedEnergy, 1.0),
                    "energy" if watt_minutes => value(Metric::Energy, WATT_MINUTES_TO_WH),
                    "returned_energy" if watt_minutes => value(Metric::ReturnedEnergy, WATT_MINUTES_TO_WH),
                    "total" | "total_returned" | "energy" | "returned_energy" => Gen1Topic::Ignored,
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some((device, kind))
    }
}

impl Decoder for ShellyGen1Decoder {
    fn name(&self) -> &'static str {
        "shelly-gen1"
    }

    fn topic_filters(&self) -> Vec<String> {
        let prefix = &self.config.prefix;
        vec![
            format!("{prefix}/+/online"),
            format!("{prefix}/announce"),
            format!("{prefix}/+/temperature"),
            format!("{prefix}/+/relay/+/power"),
            format!("{prefix}/+/relay/+/energy"),
            format!("{prefix}/+/emeter/+/+"),
        ]
    }

    fn accepts(&self, topic: &str) -> bool {
        self.split_topic(topic).is_some()
    }

    fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
        let Some((device, kind)) = self.split_topic(topic) else {
            return Decoded::default();
        };
        if kind == Gen1Topic::Announce {
            return decode_announce(topic, payload);
        }
        let device = match DeviceId::parse(device) {
            Ok(device) => device,
            Err(error) => return invalid_device(topic, device, &error, "set a valid MQTT id on the Shelly"),
        };
        match kind {
            Gen1Topic::Online => decode_availability(device, topic, payload),
            Gen1Topic::Announce => Decoded::default(),
            Gen1Topic::Ignored => Decoded { device: Some(device), ..Decoded::default() },
            Gen1Topic::Value { channel, metric, scale } => {
                let raw = String::from_utf8_lossy(payload);
                let field = topic.rsplit('/').next().unwrap_or(topic);
                let mut batch = Batch::new(topic, Some(device));
                batch.push_parsed(&channel, metric, received_ms, scaled(parse_number(&raw), scale), field, &raw);
                batch.finish()
            }
        }
    }
}

/// Reads a Gen1 announce message into an announcement of the device `id`.
fn decode_announce(topic: &str, payload: &[u8]) -> Decoded {
    if payload.is_empty() {
        return Decoded::default();
    }
    let raw = String::from_utf8_lossy(payload);
    let root = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(root)) => root,
        _ => {
            let detail = "a Shelly announce message must be a JSON object such as {\"id\":\"shellyplug-s-7A1B2C\",\"model\":\"SHPLG-S\"}";
            return Decoded::rejected(Rejection::new(RejectReason::UnparsablePayload, topic, &raw, detail));
        }
    };
    let Some(id) = root.get("id").and_then(Value::as_str) else {
        let detail = "the announce message has no \"id\" field, so the device's topics are unknown; check the Shelly firmware";
        return Decoded::rejected(Rejection::new(RejectReason::InvalidDeviceId, topic, &raw, detail));
    };
    let device = match DeviceId::parse(id) {
        Ok(device) => device,
        Err(error) => return invalid_device(topic, id, &error, "set a valid MQTT id on the Shelly"),
    };
    let text = |key: &str| root.get(key).and_then(Value::as_str).filter(|text| !text.is_empty()).map(str::to_owned);
    let announcement = Announcement {
        device: device.clone(),
        format: "shelly".to_owned(),
        name: text("name"),
        model: text("model"),
        payload: Announcement::excerpt(&raw),
    };
    Decoded { device: Some(device), announcement: Some(announcement), ..Decoded::default() }
}

/// Settings of the Shelly Gen2/Gen3 decoder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShellyGen2Config {
    /// MQTT prefixes of the devices, such as `shellyplus1pm-a8032ab12345` or
    /// `site1/shelly-pump`. Empty: any single-level prefix is accepted.
    pub prefixes: Vec<String>,
}

/// Decoder of Shelly Gen2/Gen3 `<prefix>/status/<component>:N` messages.
///
/// Components `switch:N` and `pm1:N` go to channels `switchN` and `pm1_N`:
/// `apower` (W), `voltage` (V), `current` (A), `freq` (Hz), `pf`,
/// `aenergy.total` (Wh, stored as the `energy_wh` counter),
/// `ret_aenergy.total` (Wh, `returned_energy_wh`) and `temperature.tC`.
/// Component `em1:N` (EM Gen2) goes to `em1_N`: `act_power`, `aprt_power`,
/// `voltage`, `current`, `freq`, `pf`; `em1data:N` adds `total_act_energy`
/// and `total_act_ret_energy` (Wh).
///
/// `aenergy.by_minute` (mWh per minute) is not stored. Its index 0 is the
/// current minute, still incomplete, and indexes 1 and 2 repeat what the
/// deltas of `aenergy.total` already give. The status has no measurement
/// time (`minute_ts` is the start of the current minute), so readings get
/// the receive time. The device id is the prefix, with `/` replaced by `.`;
/// a prefix that is still not a valid device id is rejected.
#[derive(Debug, Default)]
pub struct ShellyGen2Decoder {
    config: ShellyGen2Config,
}

impl ShellyGen2Decoder {
    pub fn new(config: ShellyGen2Config) -> Self {
        Self { config }
    }
}

enum Gen2Topic<'t> {
    Online,
    Status { channel: String, component: &'t str },
}

const GEN2_COMPONENTS: [&str; 4] = ["switch", "pm1", "em1", "em1data"];

impl ShellyGen2Decoder {
    fn prefix_allowed(&self, prefix: &str) -> bool {
        if self.config.prefixes.is_empty() {
            return !prefix.is_empty() && !prefix.contains('/');
        }
        self.config.prefixes.iter().any(|allowed| allowed == prefix)
    }

    fn split_topic<'t>(&self, topic: &'t str) -> Option<(&'t str, Gen2Topic<'t>)> {
        if let Some(prefix) = topic.strip_suffix("/online") {
            return self.prefix_allowed(prefix).then_some((prefix, Gen2Topic::Online));
        }
        let (prefix, component) = topic.rsplit_once("/status/")?;
        let (name, index) = component.split_once(':')?;
        if !GEN2_COMPONENTS.contains(&name) || !is_index(index) || !self.prefix_allowed(prefix) {
            return None;
        }
        let channel = match name {
            "switch" => format!("switch{index}"),
            "em1data" => format!("em1_{index}"),
            _ => format!("{name}_{index}"),
        };
        Some((prefix, Gen2Topic::Status { channel, component: name }))
    }
}

impl Decoder for ShellyGen2Decoder {
    fn name(&self) -> &'static str {
        "shelly-gen2"
    }

    fn topic_filters(&self) -> Vec<String> {
        if self.config.prefixes.is_empty() {
            return vec!["+/status/+".to_owned(), "+/online".to_owned()];
        }
        self.config.prefixes.iter().flat_map(|prefix| [format!("{prefix}/status/+"), format!("{prefix}/online")]).collect()
    }

    fn accepts(&self, topic: &str) -> bool {
        self.split_topic(topic).is_some()
    }

    fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
        let Some((prefix, kind)) = self.split_topic(topic) else {
            return Decoded::default();
        };
        let device = match device_from_prefix(prefix) {
            Ok(device) => device,
            Err(error) => return invalid_device(topic, prefix, &error, "set a topic prefix of letters, digits, '-', '_' and '.' on the Shelly"),
        };
        let (channel, component) = match kind {
            Gen2Topic::Online => return decode_availability(device, topic, payload),
            Gen2Topic::Status { channel, component } => (channel, component),
        };
        let mut batch = Batch::new(topic, Some(device));
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(status)) => decode_gen2_status(&mut batch, &channel, component, &status, received_ms),
            _ => {
                let raw = String::from_utf8_lossy(payload);
                let detail = "Shelly status must be a JSON object such as {\"id\":0,\"apower\":8.9,\"aenergy\":{\"total\":6.532}}";
                batch.reject(RejectReason::UnparsablePayload, None, &raw, detail);
            }
        }
        batch.finish()
    }
}

fn decode_gen2_status(batch: &mut Batch<'_>, channel: &str, component: &str, status: &Map<String, Value>, ts_ms: TimestampMs) {
    let fields: &[(&str, Metric)] = match component {
        "em1" => &[
            ("act_power", Metric::Power),
            ("aprt_power", Metric::ApparentPower),
            ("voltage", Metric::Voltage),
            ("current", Metric::Current),
            ("freq", Metric::Frequency),
            ("pf", Metric::PowerFactor),
        ],
        "em1data" => &[("total_act_energy", Metric::Energy), ("total_act_ret_energy", Metric::ReturnedEnergy)],
        _ => &[
            ("apower", Metric::Power),
            ("voltage", Metric::Voltage),
            ("current", Metric::Current),
            ("freq", Metric::Frequency),
            ("pf", Metric::PowerFactor),
        ],
    };
    for (key, metric) in fields {
        if let Some(value) = status.get(*key) {
            batch.push_parsed(channel, *metric, ts_ms, json_number(value), key, &value.to_string());
        }
    }
    let nested = [("aenergy", "total", Metric::Energy), ("ret_aenergy", "total", Metric::ReturnedEnergy), ("temperature", "tC", Metric::Temperature)];
    for (object, key, metric) in nested {
        if let Some(value) = status.get(object).and_then(|inner| inner.get(key)) {
            let field = format!("{object}.{key}");
            batch.push_parsed(channel, metric, ts_ms, json_number(value), &field, &value.to_string());
        }
    }
    if batch.decoded.readings.is_empty() && batch.decoded.rejections.is_empty() {
        let detail = format!("status of {component} has none of the stored fields ({})", fields.iter().map(|(key, _)| *key).collect::<Vec<_>>().join(", "));
        batch.reject(RejectReason::NoReadings, None, &Value::Object(status.clone()).to_string(), detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_733_000_000_000;

    fn gen1(config: ShellyGen1Config, topic: &str, payload: &str) -> Decoded {
        ShellyGen1Decoder::new(config).decode(topic, payload.as_bytes(), NOW)
    }

    fn only_value(decoded: &Decoded) -> (String, Metric, f64) {
        assert_eq!(decoded.readings.len(), 1, "{decoded:?}");
        let reading = &decoded.readings[0];
        (reading.channel.to_string(), reading.metric, reading.value)
    }

    #[test]
    fn announce_names_device_and_model() {
        let payload = r#"{"id":"shellyplug-s-7A1B2C","model":"SHPLG-S","mac":"C45BBE7A1B2C","ip":"192.168.1.20","new_fw":false,"fw_ver":"20230913-112003/v1.14.0-gcb84623"}"#;
        let decoded = gen1(ShellyGen1Config::default(), "shellies/announce", payload);
        let announcement = decoded.announcement.expect("an announcement");
        assert_eq!(announcement.device.as_str(), "shellyplug-s-7A1B2C");
        assert_eq!(announcement.format, "shelly");
        assert_eq!(announcement.model.as_deref(), Some("SHPLG-S"));
        assert_eq!(announcement.name, None);
        assert!(decoded.rejections.is_empty());
    }

    #[test]
    fn announce_without_id_is_rejected() {
        let decoded = gen1(ShellyGen1Config::default(), "shellies/announce", r#"{"model":"SHPLG-S"}"#);
        assert!(decoded.announcement.is_none());
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidDeviceId);
    }

    #[test]
    fn announce_topic_is_accepted_alone() {
        let decoder = ShellyGen1Decoder::default();
        assert!(decoder.accepts("shellies/announce"));
        assert!(!decoder.accepts("shellies/announce/extra"));
    }

    #[test]
    fn relay_energy_is_watt_minutes() {
        let decoded = gen1(ShellyGen1Config::default(), "shellies/shellyplug-s-7A1B2C/relay/0/energy", "2400");
        assert_eq!(only_value(&decoded), ("relay0".to_owned(), Metric::Energy, 40.0));
        assert_eq!(decoded.readings[0].ts_ms, NOW);
    }

    #[test]
    fn relay_power_is_watts() {
        let decoded = gen1(ShellyGen1Config::default(), "shellies/shelly1pm-84CCA8/relay/0/power", "41.37");
        assert_eq!(only_value(&decoded), ("relay0".to_owned(), Metric::Power, 41.37));
    }

    #[test]
    fn emeter_watt_minutes_when_configured() {
        let config = ShellyGen1Config { emeter_energy: EmeterEnergySource::WattMinutes, ..ShellyGen1Config::default() };
        let decoded = gen1(config.clone(), "shellies/shellyem-B9E3AC/emeter/1/energy", "40");
        let (channel, metric, value) = only_value(&decoded);
        assert_eq!((channel.as_str(), metric), ("emeter1", Metric::Energy));
        assert!((value - 0.667).abs() < 0.0005, "{value}");
        let ignored = gen1(config, "shellies/shellyem-B9E3AC/emeter/1/total", "1234.5");
        assert!(ignored.readings.is_empty());
        assert!(ignored.rejections.is_empty());
    }

    #[test]
    fn emeter_total_is_default_counter() {
        let decoded = gen1(ShellyGen1Config::default(), "shellies/shellyem3-C45BBE/emeter/2/total", "13843.4");
        assert_eq!(only_value(&decoded), ("emeter2".to_owned(), Metric::Energy, 13843.4));
        let returned = gen1(ShellyGen1Config::default(), "shellies/shellyem3-C45BBE/emeter/2/total_returned", "0.0");
        assert_eq!(only_value(&returned).1, Metric::ReturnedEnergy);
        let ignored = gen1(ShellyGen1Config::default(), "shellies/shellyem3-C45BBE/emeter/2/energy", "40");
        assert!(ignored.readings.is_empty());
        assert_eq!(ignored.device.as_ref().map(|d| d.as_str()), Some("shellyem3-C45BBE"));
    }

    #[test]
    fn emeter_gauges_are_decoded() {
        for (leaf, metric, raw) in [("voltage", Metric::Voltage, "231.85"), ("current", Metric::Current, "0.52"), ("pf", Metric::PowerFactor, "0.93"), ("power", Metric::Power, "-35.2")] {
            let decoded = gen1(ShellyGen1Config::default(), &format!("shellies/shellyem-B9E3AC/emeter/0/{leaf}"), raw);
            assert_eq!(only_value(&decoded).1, metric, "{leaf}");
        }
    }

    #[test]
    fn online_flag_sets_availability() {
        assert_eq!(gen1(ShellyGen1Config::default(), "shellies/shelly1-1/online", "false").online, Some(false));
        assert_eq!(gen1(ShellyGen1Config::default(), "shellies/shelly1-1/online", "true").online, Some(true));
    }

    #[test]
    fn gen1_rejects_non_numbers() {
        let decoded = gen1(ShellyGen1Config::default(), "shellies/shelly1pm-1/relay/0/power", "overpower");
        assert_eq!(decoded.rejections[0].reason, RejectReason::NotANumber);
        assert_eq!(decoded.rejections[0].device.as_ref().map(|d| d.as_str()), Some("shelly1pm-1"));
    }

    #[test]
    fn gen1_ignores_other_topics() {
        let decoder = ShellyGen1Decoder::default();
        assert!(!decoder.accepts("shellies/shelly1-1/relay/0"));
        assert!(!decoder.accepts("shellies/shelly1-1/relay/0/command"));
        assert!(!decoder.accepts("shellies/shelly1-1/relay/x/power"));
        assert!(!decoder.accepts("shellies/shelly1-1/announce"));
    }

    const SWITCH_STATUS: &str = r#"{"id":0,"source":"init","output":true,"apower":8.9,"voltage":237.5,"freq":50.0,"current":0.068,"pf":0.56,"aenergy":{"total":6.532,"by_minute":[45.199,47.141,88.397],"minute_ts":1654511972},"temperature":{"tC":23.5,"tF":74.4}}"#;

    fn gen2(topic: &str, payload: &str) -> Decoded {
        ShellyGen2Decoder::default().decode(topic, payload.as_bytes(), NOW)
    }

    #[test]
    fn gen2_switch_status_is_decoded() {
        let decoded = gen2("shellyplus1pm-a8032ab12345/status/switch:0", SWITCH_STATUS);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        let value = |metric| decoded.readings.iter().find(|r| r.metric == metric).map(|r| r.value);
        assert_eq!(value(Metric::Power), Some(8.9));
        assert_eq!(value(Metric::Voltage), Some(237.5));
        assert_eq!(value(Metric::Current), Some(0.068));
        assert_eq!(value(Metric::Frequency), Some(50.0));
        assert_eq!(value(Metric::PowerFactor), Some(0.56));
        assert_eq!(value(Metric::Energy), Some(6.532));
        assert_eq!(value(Metric::Temperature), Some(23.5));
        assert_eq!(decoded.readings.len(), 7);
        assert!(decoded.readings.iter().all(|r| r.channel.as_str() == "switch0"));
    }

    #[test]
    fn gen2_configured_prefix_becomes_device() {
        let config = ShellyGen2Config { prefixes: vec!["site1/pump".to_owned()] };
        let mut decoder = ShellyGen2Decoder::new(config);
        let decoded = decoder.decode("site1/pump/status/switch:1", SWITCH_STATUS.as_bytes(), NOW);
        assert_eq!(decoded.device.as_ref().map(|d| d.as_str()), Some("site1.pump"));
        assert!(!decoder.accepts("site2/pump/status/switch:1"));
    }

    #[test]
    fn gen2_invalid_prefix_is_rejected() {
        let decoded = gen2("shelly plus/status/switch:0", SWITCH_STATUS);
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidDeviceId);
        assert!(decoded.readings.is_empty());
    }

    #[test]
    fn gen2_online_sets_availability() {
        assert_eq!(gen2("shellyplus1pm-a8032ab12345/online", "false").online, Some(false));
    }

    #[test]
    fn gen2_em1_data_gives_counters() {
        let decoded = gen2("shellyproem50-1/status/em1data:1", r#"{"id":1,"total_act_energy":1520.57,"total_act_ret_energy":3.1}"#);
        let channels: Vec<_> = decoded.readings.iter().map(|r| (r.channel.as_str(), r.metric)).collect();
        assert_eq!(channels, vec![("em1_1", Metric::Energy), ("em1_1", Metric::ReturnedEnergy)]);
    }

    #[test]
    fn gen2_unknown_components_are_not_accepted() {
        let decoder = ShellyGen2Decoder::default();
        assert!(!decoder.accepts("shellyplus1pm-1/status/sys"));
        assert!(!decoder.accepts("shellyplus1pm-1/status/cover:0"));
        assert!(!decoder.accepts("a/b/status/switch:0"));
    }
}
