//! Home Assistant MQTT discovery configs, as published by Tasmota
//! (`SetOption19 1`), ESPHome, Zigbee2MQTT and many other firmwares.
//!
//! Topic: `homeassistant/<component>/[<node_id>/]<object_id>/config`, with a
//! JSON config such as `{"name", "state_topic", "unique_id", "device":
//! {"identifiers", "name", "model", "manufacturer"}}`. Home Assistant also
//! accepts abbreviated keys (`dev`, `ids`, `mdl`, `mf`, `uniq_id`), which are
//! read too.
//!
//! A config produces no reading, only a [`se_core::Announcement`]. The
//! device id is the `node_id` of the topic, else the first
//! `device.identifiers`, with characters that a device id cannot contain
//! replaced by `_` and cut to 64 characters. An empty payload removes a
//! retained config and is ignored.

use serde_json::{Map, Value};

use se_core::{Announcement, Decoded, DeviceId, RejectReason, Rejection, TimestampMs};

use crate::Decoder;

/// Settings of the Home Assistant discovery decoder.
#[derive(Debug, Clone)]
pub struct HomeAssistantConfig {
    /// Discovery prefix, `homeassistant` unless changed in Home Assistant.
    pub prefix: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self { prefix: "homeassistant".to_owned() }
    }
}

/// Decoder of Home Assistant MQTT discovery configs into announcements.
#[derive(Debug, Default)]
pub struct HomeAssistantDecoder {
    config: HomeAssistantConfig,
}

impl HomeAssistantDecoder {
    pub fn new(config: HomeAssistantConfig) -> Self {
        Self { config }
    }

    /// Returns the `node_id` of a config topic (`None` when the topic has
    /// none), or `None` overall when the topic is not a config topic.
    fn split_topic<'t>(&self, topic: &'t str) -> Option<Option<&'t str>> {
        let rest = topic.strip_prefix(self.config.prefix.as_str())?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        if levels.iter().any(|level| level.is_empty()) {
            return None;
        }
        match levels.as_slice() {
            [_component, _object_id, "config"] => Some(None),
            [_component, node_id, _object_id, "config"] => Some(Some(node_id)),
            _ => None,
        }
    }
}

impl Decoder for HomeAssistantDecoder {
    fn name(&self) -> &'static str {
        "home-assistant"
    }

    fn topic_filters(&self) -> Vec<String> {
        let prefix = &self.config.prefix;
        vec![format!("{prefix}/+/+/config"), format!("{prefix}/+/+/+/config")]
    }

    fn accepts(&self, topic: &str) -> bool {
        self.split_topic(topic).is_some()
    }

    fn decode(&mut self, topic: &str, payload: &[u8], _received_ms: TimestampMs) -> Decoded {
        let Some(node_id) = self.split_topic(topic) else {
            return Decoded::default();
        };
        if payload.is_empty() {
            return Decoded::default();
        }
        let node_device = node_id.and_then(sanitize_device_id);
        let raw = String::from_utf8_lossy(payload);
        let reject = |reason, detail: &str| {
            Decoded::rejected(Rejection::new(reason, topic, &raw, detail).with_device(node_device.clone()))
        };
        let root = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(root)) => root,
            _ => {
                let detail = "a Home Assistant discovery config must be a JSON object such as {\"name\":\"Power\",\"device\":{\"identifiers\":[\"plug-1\"]}}";
                return reject(RejectReason::UnparsablePayload, detail);
            }
        };
        let device_info = field(&root, "device", "dev").and_then(Value::as_object);
        let device = node_device.clone().or_else(|| device_info.and_then(first_identifier).and_then(|id| sanitize_device_id(&id)));
        let Some(device) = device else {
            let detail = "the config has no node_id in its topic and no device.identifiers, so its device is unknown; publish it as <prefix>/<component>/<node_id>/<object_id>/config";
            return reject(RejectReason::InvalidDeviceId, detail);
        };

        let device_text = |long: &str, short: &str| device_info.and_then(|info| text(info, long, short));
        let announcement = Announcement {
            device: device.clone(),
            format: "home_assistant".to_owned(),
            name: device_text("name", "name").or_else(|| text(&root, "name", "name")),
            model: device_text("model", "mdl"),
            payload: Announcement::excerpt(&raw),
        };
        Decoded { device: Some(device), announcement: Some(announcement), ..Decoded::default() }
    }
}

/// Reads a key that Home Assistant also accepts in abbreviated form.
fn field<'v>(map: &'v Map<String, Value>, long: &str, short: &str) -> Option<&'v Value> {
    map.get(long).or_else(|| map.get(short))
}

fn text(map: &Map<String, Value>, long: &str, short: &str) -> Option<String> {
    field(map, long, short).and_then(Value::as_str).map(str::trim).filter(|text| !text.is_empty()).map(str::to_owned)
}

/// First entry of `identifiers`, which may be a list or a single string.
fn first_identifier(info: &Map<String, Value>) -> Option<String> {
    match field(info, "identifiers", "ids")? {
        Value::String(id) => Some(id.clone()),
        Value::Array(ids) => ids.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Maximum length of a device id, in characters.
const MAX_DEVICE_ID_LEN: usize = 64;

/// Turns a Home Assistant id into a device id: characters a device id cannot
/// contain become `_`, and the result is cut to 64 characters. Returns
/// `None` for an id with nothing left.
pub(crate) fn sanitize_device_id(id: &str) -> Option<DeviceId> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    let cleaned: String = id.trim().chars().map(|c| if valid(c) { c } else { '_' }).take(MAX_DEVICE_ID_LEN).collect();
    if cleaned.chars().all(|c| c == '_') {
        return None;
    }
    DeviceId::parse(&cleaned).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_733_000_000_000;

    fn decode(topic: &str, payload: &str) -> Decoded {
        HomeAssistantDecoder::default().decode(topic, payload.as_bytes(), NOW)
    }

    const POWER_CONFIG: &str = r#"{"name":"Power","state_topic":"tele/tasmota_1A2B3C/SENSOR","value_template":"{{ value_json.ENERGY.Power }}","unit_of_measurement":"W","device_class":"power","unique_id":"84CCA81A2B3C_ENERGY_Power","device":{"identifiers":["84CCA81A2B3C"],"name":"Rig plug","model":"Sonoff Pow R2","manufacturer":"Tasmota"}}"#;

    #[test]
    fn node_id_names_the_device() {
        let decoded = decode("homeassistant/sensor/rig-plug/power/config", POWER_CONFIG);
        let announcement = decoded.announcement.expect("an announcement");
        assert_eq!(announcement.device.as_str(), "rig-plug");
        assert_eq!(announcement.format, "home_assistant");
        assert_eq!(announcement.name.as_deref(), Some("Rig plug"));
        assert_eq!(announcement.model.as_deref(), Some("Sonoff Pow R2"));
        assert!(decoded.readings.is_empty());
        assert!(decoded.rejections.is_empty());
    }

    #[test]
    fn identifiers_name_device_without_node() {
        let decoded = decode("homeassistant/sensor/84CCA81A2B3C_power/config", POWER_CONFIG);
        assert_eq!(decoded.announcement.map(|a| a.device.to_string()), Some("84CCA81A2B3C".to_owned()));
    }

    #[test]
    fn abbreviated_keys_are_read() {
        let payload = r#"{"name":"Energy","stat_t":"zigbee2mqtt/meter","uniq_id":"0x00158d0001_energy","dev":{"ids":"zigbee2mqtt_0x00158d0001","mdl":"SP 120","mf":"innr","name":"Desk meter"}}"#;
        let decoded = decode("homeassistant/sensor/0x00158d0001/energy/config", payload);
        let announcement = decoded.announcement.expect("an announcement");
        assert_eq!(announcement.device.as_str(), "0x00158d0001");
        assert_eq!(announcement.model.as_deref(), Some("SP 120"));
        assert_eq!(announcement.name.as_deref(), Some("Desk meter"));
    }

    #[test]
    fn invalid_characters_are_replaced() {
        let payload = r#"{"name":"Power","device":{"identifiers":["esp home/kitchen#1"]}}"#;
        let decoded = decode("homeassistant/sensor/power/config", payload);
        assert_eq!(decoded.announcement.map(|a| a.device.to_string()), Some("esp_home_kitchen_1".to_owned()));
    }

    #[test]
    fn empty_payload_is_ignored() {
        assert!(decode("homeassistant/sensor/rig-plug/power/config", "").is_empty());
    }

    #[test]
    fn config_without_device_is_rejected() {
        let decoded = decode("homeassistant/sensor/power/config", r#"{"name":"Power","state_topic":"x/y"}"#);
        assert!(decoded.announcement.is_none());
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidDeviceId);
    }

    #[test]
    fn unparsable_config_names_node_device() {
        let decoded = decode("homeassistant/sensor/rig-plug/power/config", "{not json");
        assert_eq!(decoded.rejections[0].reason, RejectReason::UnparsablePayload);
        assert_eq!(decoded.rejections[0].device.as_ref().map(|d| d.as_str()), Some("rig-plug"));
    }

    #[test]
    fn only_config_topics_are_accepted() {
        let decoder = HomeAssistantDecoder::default();
        assert!(decoder.accepts("homeassistant/sensor/power/config"));
        assert!(decoder.accepts("homeassistant/sensor/node/power/config"));
        assert!(!decoder.accepts("homeassistant/sensor/node/power/state"));
        assert!(!decoder.accepts("homeassistant/sensor/config"));
        assert!(!decoder.accepts("homeassistant/sensor/a/b/c/config"));
        assert!(!decoder.accepts("homeassistant/sensor//power/config"));
    }
}
