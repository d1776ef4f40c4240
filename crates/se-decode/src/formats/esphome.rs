//! ESPHome MQTT sensors: `<prefix>/sensor/<object_id>/state` with a plain
//! number, and `<prefix>/status` with `online` or `offline`.
//!
//! The prefix (ESPHome's `topic_prefix`, the node name by default) is the
//! device id. An object id is mapped to a metric by [`EsphomeConfig::objects`]
//! first, then by the default rules of [`default_object_rule`]. Values get the
//! receive time, since ESPHome sends no timestamp. `nan` (a sensor without a
//! reading) and `None` are rejected as [`RejectReason::NotANumber`]: counted,
//! not stored.

use std::collections::BTreeMap;

use serde::Deserialize;

use se_core::{Decoded, Metric, RejectReason, TimestampMs};

use super::common::{scaled, decode_availability, device_from_prefix, invalid_device, unit_scale, Batch};
use super::DecoderConfigError;
use crate::{parse_number, Decoder};

/// Storage rule of one ESPHome object id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsphomeObject {
    pub metric: Metric,
    /// Unit the sensor publishes in, such as `kWh`; the metric's canonical unit when absent.
    #[serde(default)]
    pub unit: Option<String>,
    /// Channel of the readings; [`EsphomeConfig::default_channel`] when absent.
    #[serde(default)]
    pub channel: Option<String>,
}

/// Settings of the ESPHome decoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsphomeConfig {
    /// Topic prefixes of the nodes. Empty: any single-level prefix is accepted.
    pub prefixes: Vec<String>,
    /// Mappings by exact object id, checked before the default rules.
    pub objects: BTreeMap<String, EsphomeObject>,
    /// Unit of objects that the default rules map to `energy_wh`. ESPHome's
    /// `total_daily_energy` and `integration` sensors publish Wh unless a
    /// filter rescales them, but most published configurations divide by 1000
    /// and publish kWh, so `kWh` is the default.
    pub energy_unit: String,
    /// Channel of objects without a channel of their own. Two objects of one
    /// node that map to the same metric need distinct channels in `objects`.
    pub default_channel: String,
    /// Object ids that are received and dropped without a rejection.
    pub ignore: Vec<String>,
}

impl Default for EsphomeConfig {
    fn default() -> Self {
        Self {
            prefixes: Vec::new(),
            objects: BTreeMap::new(),
            energy_unit: "kWh".to_owned(),
            default_channel: "main".to_owned(),
            ignore: vec!["wifi_signal".to_owned()],
        }
    }
}

/// Maps an object id to a metric by the words it contains, first match wins:
/// `apparent_power`, `reactive_power`, `power_factor`, `power` (W), `voltage`,
/// `current`, `energy` with `return` or `export` (returned energy), `energy`,
/// `frequency`, `temperature`, `humidity`, `uptime`.
pub fn default_object_rule(object_id: &str) -> Option<Metric> {
    let id = object_id.to_ascii_lowercase();
    let has = |word: &str| id.contains(word);
    let metric = if has("apparent_power") {
        Metric::ApparentPower
    } else if has("reactive_power") {
        Metric::ReactivePower
    } else if has("power_factor") {
        Metric::PowerFactor
    } else if has("power") {
        Metric::Power
    } else if has("voltage") {
        Metric::Voltage
    } else if has("current") {
        Metric::Current
    } else if has("energy") && (has("return") || has("export")) {
        Metric::ReturnedEnergy
    } else if has("energy") {
        Metric::Energy
    } else if has("frequency") {
        Metric::Frequency
    } else if has("temperature") {
        Metric::Temperature
    } else if has("humidity") {
        Metric::Humidity
    } else if has("uptime") {
        Metric::Uptime
    } else {
        return None;
    };
    Some(metric)
}

/// Decoder of ESPHome sensor states and node availability.
#[derive(Debug)]
pub struct EsphomeDecoder {
    config: EsphomeConfig,
    energy_scale: f64,
}

impl Default for EsphomeDecoder {
    fn default() -> Self {
        Self { config: EsphomeConfig::default(), energy_scale: 1000.0 }
    }
}

impl EsphomeDecoder {
    /// Builds the decoder, checking that every configured unit measures its metric.
    pub fn new(config: EsphomeConfig) -> Result<Self, DecoderConfigError> {
        let energy_scale = unit_scale(Metric::Energy, &config.energy_unit).ok_or_else(|| DecoderConfigError::UnknownUnit {
            setting: "esphome.energy_unit".to_owned(),
            unit: config.energy_unit.clone(),
            metric: Metric::Energy,
        })?;
        for (object, rule) in &config.objects {
            if let Some(unit) = &rule.unit {
                if unit_scale(rule.metric, unit).is_none() {
                    return Err(DecoderConfigError::UnknownUnit {
                        setting: format!("esphome.objects.{object}.unit"),
                        unit: unit.clone(),
                        metric: rule.metric,
                    });
                }
            }
        }
        Ok(Self { config, energy_scale })
    }

    fn prefix_allowed(&self, prefix: &str) -> bool {
        if self.config.prefixes.is_empty() {
            return !prefix.is_empty() && !prefix.contains('/');
        }
        self.config.prefixes.iter().any(|allowed| allowed == prefix)
    }

    /// Splits a topic into prefix and object id (`None` for the status topic).
    fn split_topic<'t>(&self, topic: &'t str) -> Option<(&'t str, Option<&'t str>)> {
        if let Some(prefix) = topic.strip_suffix("/status") {
            return self.prefix_allowed(prefix).then_some((prefix, None));
        }
        let rest = topic.strip_suffix("/state")?;
        let (prefix, object) = rest.rsplit_once("/sensor/")?;
        if object.is_empty() || object.contains('/') || !self.prefix_allowed(prefix) {
            return None;
        }
        Some((prefix, Some(object)))
    }

    /// Channel, metric and unit factor of an object id.
    fn rule(&self, object: &str) -> Option<(String, Metric, f64)> {
        if let Some(rule) = self.config.objects.get(object) {
            let scale = rule.unit.as_deref().and_then(|unit| unit_scale(rule.metric, unit)).unwrap_or(1.0);
            let channel = rule.channel.clone().unwrap_or_else(|| self.config.default_channel.clone());
            return Some((channel, rule.metric, scale));
        }
        // NOTE: two objects of one node that map to the same metric share this channel. The store
        // then keeps one value per instant, so give them distinct channels in `objects`.
        let metric = default_object_rule(object)?;
        let scale = if metric == Metric::Energy || metric == Metric::ReturnedEnergy { self.energy_scale } else { 1.0 };
        Some((self.config.default_channel.clone(), metric, scale))
    }
}

impl Decoder for EsphomeDecoder {
    fn name(&self) -> &'static str {
        "esphome"
    }

    fn topic_filters(&self) -> Vec<String> {
        if self.config.prefixes.is_empty() {
            return vec!["+/sensor/+/state".to_owned(), "+/status".to_owned()];
        }
        self.config.prefixes.iter().flat_map(|prefix| [format!("{prefix}/sensor/+/state"), format!("{prefix}/status")]).collect()
    }

    fn accepts(&self, topic: &str) -> bool {
        self.split_topic(topic).is_some()
    }

    fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
        let Some((prefix, object)) = self.split_topic(topic) else {
            return Decoded::default();
        };
        let device = match device_from_prefix(prefix) {
            Ok(device) => device,
            Err(error) => return invalid_device(topic, prefix, &error, "set a topic_prefix of letters, digits, '-', '_' and '.' in the ESPHome mqtt section"),
        };
        let Some(object) = object else {
            return decode_availability(device, topic, payload);
        };
        let mut batch = Batch::new(topic, Some(device));
        if self.config.ignore.iter().any(|ignored| ignored == object) {
            return batch.finish();
        }
        let raw = String::from_utf8_lossy(payload);
        match self.rule(object) {
            Some((channel, metric, scale)) => batch.push_parsed(&channel, metric, received_ms, scaled(parse_number(&raw), scale), object, &raw),
            None => {
                let detail = format!(
                    "ESPHome object {object:?} matches no metric; map it under esphome.objects, such as \"{object}\": {{\"metric\": \"power_w\", \"unit\": \"W\"}}, or list it in esphome.ignore"
                );
                batch.reject(RejectReason::UnknownMetric, Some(object), &raw, detail);
            }
        }
        batch.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_733_000_000_000;

    fn decode(topic: &str, payload: &str) -> Decoded {
        EsphomeDecoder::default().decode(topic, payload.as_bytes(), NOW)
    }

    fn only(decoded: &Decoded) -> (&str, Metric, f64) {
        assert_eq!(decoded.readings.len(), 1, "{decoded:?}");
        let reading = &decoded.readings[0];
        (reading.channel.as_str(), reading.metric, reading.value)
    }

    #[test]
    fn power_sensor_is_watts() {
        let decoded = decode("pow-r2/sensor/pow_r2_power/state", "231.4");
        assert_eq!(only(&decoded), ("main", Metric::Power, 231.4));
        assert_eq!(decoded.device.as_ref().map(|d| d.as_str()), Some("pow-r2"));
    }

    #[test]
    fn daily_energy_defaults_to_kwh() {
        let decoded = decode("pow-r2/sensor/total_daily_energy/state", "1.25");
        assert_eq!(only(&decoded), ("main", Metric::Energy, 1250.0));
    }

    #[test]
    fn energy_unit_is_configurable() {
        let config = EsphomeConfig { energy_unit: "Wh".to_owned(), ..EsphomeConfig::default() };
        let mut decoder = EsphomeDecoder::new(config).unwrap();
        let decoded = decoder.decode("pow-r2/sensor/total_daily_energy/state", b"1250", NOW);
        assert_eq!(only(&decoded).2, 1250.0);
    }

    #[test]
    fn object_table_overrides_defaults() {
        let mut config = EsphomeConfig::default();
        let rule = EsphomeObject { metric: Metric::Power, unit: Some("kW".to_owned()), channel: Some("pump".to_owned()) };
        config.objects.insert("pump_load".to_owned(), rule);
        let mut decoder = EsphomeDecoder::new(config).unwrap();
        let decoded = decoder.decode("boiler-room/sensor/pump_load/state", b"1.2", NOW);
        assert_eq!(only(&decoded), ("pump", Metric::Power, 1200.0));
    }

    #[test]
    fn unit_for_wrong_quantity_fails() {
        let mut config = EsphomeConfig::default();
        let rule = EsphomeObject { metric: Metric::Power, unit: Some("kWh".to_owned()), channel: None };
        config.objects.insert("load".to_owned(), rule);
        let error = EsphomeDecoder::new(config).unwrap_err();
        assert!(error.to_string().contains("esphome.objects.load.unit"), "{error}");
    }

    #[test]
    fn nan_is_rejected_not_stored() {
        for raw in ["nan", "None", "NaN"] {
            let decoded = decode("pow-r2/sensor/pow_r2_voltage/state", raw);
            assert!(decoded.readings.is_empty(), "{raw}");
            assert_eq!(decoded.rejections[0].reason, RejectReason::NotANumber, "{raw}");
        }
    }

    #[test]
    fn unknown_object_names_the_mapping() {
        let decoded = decode("pow-r2/sensor/co2_level/state", "415");
        assert_eq!(decoded.rejections[0].reason, RejectReason::UnknownMetric);
        assert!(decoded.rejections[0].detail.contains("esphome.objects"));
    }

    #[test]
    fn wifi_signal_is_ignored() {
        let decoded = decode("pow-r2/sensor/wifi_signal/state", "-61");
        assert!(decoded.readings.is_empty());
        assert!(decoded.rejections.is_empty());
    }

    #[test]
    fn status_sets_availability() {
        assert_eq!(decode("pow-r2/status", "offline").online, Some(false));
    }

    #[test]
    fn other_components_are_not_accepted() {
        let decoder = EsphomeDecoder::default();
        assert!(!decoder.accepts("pow-r2/switch/relay/state"));
        assert!(!decoder.accepts("pow-r2/sensor/power/command"));
        assert!(!decoder.accepts("pow-r2/binary_sensor/button/state"));
    }
}
