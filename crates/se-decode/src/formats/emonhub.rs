//! emonhub (OpenEnergyMonitor) MQTT output.
//!
//! - `emon/<node>/<key>`: one bare number per key (emonhub `node_format_enable`),
//!   stamped with the receive time.
//! - `emon/<node>`: a JSON object of keys (emonhub `node_JSON_enable`), with
//!   `"time"` in seconds since 1970 as the timestamp.
//!
//! The node name is the device id. Keys are mapped by [`EmonhubConfig::keys`]
//! first, then by [`default_key_rule`]; a key that neither maps is rejected as
//! [`RejectReason::UnknownMetric`] with the setting that maps it. The key
//! `MSG` (emonTx4 message counter) becomes the message sequence number.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use se_core::{Decoded, DeviceId, Metric, RejectReason, TimestampMs};

use super::common::{scaled, invalid_device, json_number, unit_scale, Batch};
use super::DecoderConfigError;
use crate::{choose_timestamp, parse_number, Decoder};

/// Storage rule of one emonhub key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmonKey {
    pub metric: Metric,
    /// Channel of the readings; `main` when absent.
    #[serde(default)]
    pub channel: Option<String>,
    /// Unit the node sends, such as `kWh`; the metric's canonical unit when absent.
    #[serde(default)]
    pub unit: Option<String>,
}

/// Settings of the emonhub decoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmonhubConfig {
    /// First topic level, `emon` unless emonhub's `basetopic` was changed.
    pub base_topic: String,
    /// Mappings by key, compared without regard to case, checked before the default rules.
    pub keys: BTreeMap<String, EmonKey>,
    /// Keys that are received and dropped without a rejection, compared without regard to case.
    pub ignore: Vec<String>,
}

impl Default for EmonhubConfig {
    fn default() -> Self {
        Self { base_topic: "emon".to_owned(), keys: BTreeMap::new(), ignore: vec!["rssi".to_owned()] }
    }
}

/// Maps an emonhub key, compared in lower case, to a channel and metric:
///
/// - `powerN` or `pN`: `chN`, `power_w`;
/// - `energyN` or `eN` (Wh): `chN`, `energy_wh`;
/// - `irmsN` or `iN`: `chN`, `current_a`;
/// - `pfN`: `chN`, `power_factor`;
/// - `vrms` or `v`: `main`, `voltage_v`;
/// - `tempN` or `tN`: `tN`, `temperature_c`;
/// - `temperature` and `humidity`: `main`.
pub fn default_key_rule(key: &str) -> Option<(String, Metric)> {
    let key = key.to_ascii_lowercase();
    match key.as_str() {
        "vrms" | "v" => return Some(("main".to_owned(), Metric::Voltage)),
        "temperature" => return Some(("main".to_owned(), Metric::Temperature)),
        "humidity" => return Some(("main".to_owned(), Metric::Humidity)),
        _ => {}
    }
    let split = key.find(|c: char| c.is_ascii_digit())?;
    let (word, number) = key.split_at(split);
    if number.len() > 3 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (channel, metric) = match word {
        "power" | "p" => (format!("ch{number}"), Metric::Power),
        "energy" | "e" => (format!("ch{number}"), Metric::Energy),
        "irms" | "i" => (format!("ch{number}"), Metric::Current),
        "pf" => (format!("ch{number}"), Metric::PowerFactor),
        "temp" | "t" => (format!("t{number}"), Metric::Temperature),
        _ => return None,
    };
    Some((channel, metric))
}

/// Decoder of emonhub node topics.
#[derive(Debug, Default)]
pub struct EmonhubDecoder {
    config: EmonhubConfig,
    /// `keys` with lower-case names, for lookups without regard to case.
    keys: BTreeMap<String, (String, Metric, f64)>,
}

impl EmonhubDecoder {
    /// Builds the decoder, checking that every configured unit measures its metric.
    pub fn new(config: EmonhubConfig) -> Result<Self, DecoderConfigError> {
        let mut keys = BTreeMap::new();
        for (key, rule) in &config.keys {
            let scale = match &rule.unit {
                None => 1.0,
                Some(unit) => unit_scale(rule.metric, unit).ok_or_else(|| DecoderConfigError::UnknownUnit {
                    setting: format!("emonhub.keys.{key}.unit"),
                    unit: unit.clone(),
                    metric: rule.metric,
                })?,
            };
            let channel = rule.channel.clone().unwrap_or_else(|| "main".to_owned());
            keys.insert(key.to_ascii_lowercase(), (channel, rule.metric, scale));
        }
        Ok(Self { config, keys })
    }

    /// Splits a topic into node and key (`None` for the JSON topic).
    fn split_topic<'t>(&self, topic: &'t str) -> Option<(&'t str, Option<&'t str>)> {
        let rest = topic.strip_prefix(self.config.base_topic.as_str())?.strip_prefix('/')?;
        match rest.split_once('/') {
            None if !rest.is_empty() => Some((rest, None)),
            Some((node, key)) if !node.is_empty() && !key.is_empty() && !key.contains('/') => Some((node, Some(key))),
            _ => None,
        }
    }

    fn rule(&self, key: &str) -> Option<(String, Metric, f64)> {
        self.keys.get(&key.to_ascii_lowercase()).cloned().or_else(|| default_key_rule(key).map(|(channel, metric)| (channel, metric, 1.0)))
    }

    fn ignored(&self, key: &str) -> bool {
        self.config.ignore.iter().any(|ignored| ignored.eq_ignore_ascii_case(key))
    }

    fn decode_value(&self, batch: &mut Batch<'_>, key: &str, parsed: Result<f64, RejectReason>, raw: &str, ts_ms: TimestampMs) {
        if key.eq_ignore_ascii_case("msg") {
            match parsed {
                Ok(seq) if seq >= 0.0 && seq.fract() == 0.0 && seq < u64::MAX as f64 => batch.decoded.seq = Some(seq as u64),
                _ => {
                    let detail = format!("MSG must be a whole message counter, got {raw:?}");
                    batch.reject(RejectReason::UnparsablePayload, Some(key), raw, detail);
                }
            }
            return;
        }
        if self.ignored(key) {
            return;
        }
        match self.rule(key) {
            Some((channel, metric, scale)) => batch.push_parsed(&channel, metric, ts_ms, scaled(parsed, scale), key, raw),
            None => {
                let detail = format!(
                    "emonhub key {key:?} matches no metric; map it under emonhub.keys, such as \"{key}\": {{\"metric\": \"power_w\", \"channel\": \"ch1\"}}, or list it in emonhub.ignore"
                );
                batch.reject(RejectReason::UnknownMetric, Some(key), raw, detail);
            }
        }
    }

    fn decode_json(&self, batch: &mut Batch<'_>, payload: &[u8], received_ms: TimestampMs) {
        let root = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(root)) => root,
            _ => {
                let raw = String::from_utf8_lossy(payload);
                let detail = "emonhub JSON must be an object such as {\"time\": 1733000000, \"P1\": 120.5, \"Vrms\": 231.2}";
                batch.reject(RejectReason::UnparsablePayload, None, &raw, detail);
                return;
            }
        };
        let device_ms = match root.get("time") {
            None => None,
            Some(value) => match value.as_f64().filter(|s| s.is_finite() && s.abs() < 1e12) {
                Some(seconds) => Some((seconds * 1000.0).round() as TimestampMs),
                None => {
                    let detail = format!("\"time\" {value} is not seconds since 1970; the receive time was used");
                    batch.reject(RejectReason::InvalidTimestamp, Some("time"), &value.to_string(), detail);
                    None
                }
            },
        };
        let (ts_ms, substitution) = choose_timestamp(device_ms, received_ms, batch.topic);
        batch.note(substitution);
        let mut keys = 0;
        for (key, value) in root.iter().filter(|(key, _)| key.as_str() != "time") {
            self.decode_value(batch, key, json_number(value), &value.to_string(), ts_ms);
            keys += 1;
        }
        if keys == 0 {
            let detail = "emonhub JSON has no key besides \"time\"; nothing was stored";
            batch.reject(RejectReason::NoReadings, None, &String::from_utf8_lossy(payload), detail);
        }
    }
}

impl Decoder for EmonhubDecoder {
    fn name(&self) -> &'static str {
        "emonhub"
    }

    fn topic_filters(&self) -> Vec<String> {
        let base = &self.config.base_topic;
        vec![format!("{base}/+"), format!("{base}/+/+")]
    }

    fn accepts(&self, topic: &str) -> bool {
        self.split_topic(topic).is_some()
    }

    fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
        let Some((node, key)) = self.split_topic(topic) else {
            return Decoded::default();
        };
        let device = match DeviceId::parse(node) {
            Ok(device) => device,
            Err(error) => return invalid_device(topic, node, &error, "rename the node in emonhub.conf"),
        };
        let mut batch = Batch::new(topic, Some(device));
        match key {
            Some(key) => {
                let raw = String::from_utf8_lossy(payload);
                self.decode_value(&mut batch, key, parse_number(&raw), &raw, received_ms);
            }
            None => self.decode_json(&mut batch, payload, received_ms),
        }
        batch.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_733_000_000_000;

    fn decode(topic: &str, payload: &str) -> Decoded {
        EmonhubDecoder::default().decode(topic, payload.as_bytes(), NOW)
    }

    fn value(decoded: &Decoded, channel: &str, metric: Metric) -> Option<f64> {
        decoded.readings.iter().find(|r| r.channel.as_str() == channel && r.metric == metric).map(|r| r.value)
    }

    #[test]
    fn key_topic_maps_power_channel() {
        let decoded = decode("emon/emontx3/power1", "120.5");
        assert_eq!(value(&decoded, "ch1", Metric::Power), Some(120.5));
        assert_eq!(decoded.readings[0].ts_ms, NOW);
    }

    #[test]
    fn defaults_cover_common_keys() {
        for (key, channel, metric) in [
            ("vrms", "main", Metric::Voltage),
            ("Vrms", "main", Metric::Voltage),
            ("temp1", "t1", Metric::Temperature),
            ("T2", "t2", Metric::Temperature),
            ("P3", "ch3", Metric::Power),
            ("E1", "ch1", Metric::Energy),
            ("I2", "ch2", Metric::Current),
            ("humidity", "main", Metric::Humidity),
        ] {
            let decoded = decode(&format!("emon/node-1/{key}"), "12.5");
            assert_eq!(value(&decoded, channel, metric), Some(12.5), "{key}");
        }
    }

    #[test]
    fn json_node_uses_its_time() {
        let payload = r#"{"time":1732999990,"MSG":1523,"Vrms":231.2,"P1":120.5,"P2":0,"E1":45210,"T1":21.4,"rssi":-48}"#;
        let decoded = decode("emon/emontx4", payload);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        assert_eq!(decoded.seq, Some(1523));
        assert_eq!(decoded.readings.len(), 5);
        assert!(decoded.readings.iter().all(|r| r.ts_ms == 1_732_999_990_000));
        assert_eq!(value(&decoded, "ch1", Metric::Energy), Some(45210.0));
    }

    #[test]
    fn unknown_key_names_the_setting() {
        let decoded = decode("emon/emontx3/pulsecount", "771");
        assert_eq!(decoded.rejections[0].reason, RejectReason::UnknownMetric);
        assert!(decoded.rejections[0].detail.contains("emonhub.keys"), "{}", decoded.rejections[0].detail);
        assert_eq!(decoded.rejections[0].field.as_deref(), Some("pulsecount"));
    }

    #[test]
    fn configured_key_with_unit() {
        let mut config = EmonhubConfig::default();
        config.keys.insert("import_kwh".to_owned(), EmonKey { metric: Metric::Energy, channel: Some("grid".to_owned()), unit: Some("kWh".to_owned()) });
        let mut decoder = EmonhubDecoder::new(config).unwrap();
        let decoded = decoder.decode("emon/meter/Import_kWh", b"12.5", NOW);
        assert_eq!(value(&decoded, "grid", Metric::Energy), Some(12500.0));
    }

    #[test]
    fn bad_key_is_rejected_alone() {
        let decoded = decode("emon/emontx4", r#"{"time":1732999990,"P1":"nan","P2":80,"X9":1}"#);
        let reasons: Vec<_> = decoded.rejections.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, vec![RejectReason::NotANumber, RejectReason::UnknownMetric]);
        assert_eq!(value(&decoded, "ch2", Metric::Power), Some(80.0));
    }

    #[test]
    fn empty_json_is_rejected() {
        let decoded = decode("emon/emontx4", r#"{"time":1732999990}"#);
        assert_eq!(decoded.rejections.len(), 1);
        assert_eq!(decoded.rejections[0].reason, RejectReason::NoReadings);
    }

    #[test]
    fn deeper_topics_are_not_accepted() {
        let decoder = EmonhubDecoder::default();
        assert!(!decoder.accepts("emon/node/p1/extra"));
        assert!(!decoder.accepts("emon"));
        assert!(!decoder.accepts("emoncms/node/p1"));
    }
}
