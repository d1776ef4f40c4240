//! Topic-to-device mapping: messages on matching topics are stored under a
//! device id chosen by the operator, whatever id the decoder derived. This
//! names devices whose topics carry no id (the prototype firmware) or an
//! unhelpful one (`tele/tasmota_5E2A1C/SENSOR`).

use serde::Deserialize;

use se_core::topic::{filter_matches, is_valid_filter};
use se_core::{Decoded, DeviceId};

/// One mapping rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceMapping {
    /// MQTT topic filter, with `+` and `#` wildcards, such as `tele/tasmota_5E2A1C/#`.
    pub topic: String,
    /// Device id stored for messages on matching topics.
    pub device: DeviceId,
}

/// A mapping rule whose topic filter is not a valid MQTT filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic filter {filter:?}: levels are separated by '/', '+' must fill a whole level and '#' must be the last level, such as tele/plug-1/#")]
pub struct InvalidMapping {
    pub filter: String,
}

impl DeviceMapping {
    /// Builds a rule, checking the topic filter.
    pub fn new(topic: &str, device: DeviceId) -> Result<Self, InvalidMapping> {
        let mapping = Self { topic: topic.to_owned(), device };
        mapping.validate()?;
        Ok(mapping)
    }

    /// Checks the topic filter, for rules read from a file.
    pub fn validate(&self) -> Result<(), InvalidMapping> {
        if is_valid_filter(&self.topic) {
            Ok(())
        } else {
            Err(InvalidMapping { filter: self.topic.clone() })
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        filter_matches(&self.topic, topic)
    }
}

/// Stores `decoded` under the device of the first rule that matches `topic`.
pub fn apply_mappings(mappings: &[DeviceMapping], topic: &str, decoded: &mut Decoded) {
    let Some(mapping) = mappings.iter().find(|mapping| mapping.matches(topic)) else {
        return;
    };
    let device = &mapping.device;
    decoded.device = Some(device.clone());
    for reading in &mut decoded.readings {
        reading.device = device.clone();
    }
    for rejection in &mut decoded.rejections {
        rejection.device = Some(device.clone());
    }
    if let Some(announcement) = &mut decoded.announcement {
        announcement.device = device.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use se_core::{Metric, Reading, RejectReason, Rejection};

    fn device(name: &str) -> DeviceId {
        DeviceId::parse(name).unwrap()
    }

    #[test]
    fn matching_topic_renames_everything() {
        let rules = vec![DeviceMapping::new("tele/tasmota_5E2A1C/#", device("salon-plug")).unwrap()];
        let mut decoded = Decoded {
            device: Some(device("tasmota_5E2A1C")),
            readings: vec![Reading::new(device("tasmota_5E2A1C"), "main", Metric::Power, 0, 5.0)],
            rejections: vec![Rejection::new(RejectReason::NotANumber, "t", "nan", "d").with_device(Some(device("tasmota_5E2A1C")))],
            ..Decoded::default()
        };
        apply_mappings(&rules, "tele/tasmota_5E2A1C/SENSOR", &mut decoded);
        assert_eq!(decoded.device, Some(device("salon-plug")));
        assert_eq!(decoded.readings[0].device, device("salon-plug"));
        assert_eq!(decoded.rejections[0].device, Some(device("salon-plug")));
    }

    #[test]
    fn announcement_takes_mapped_device() {
        let rules = vec![DeviceMapping::new("tasmota/discovery/5E2A1C/config", device("salon-plug")).unwrap()];
        let announcement = se_core::Announcement {
            device: device("tasmota_5E2A1C"),
            format: "tasmota".to_owned(),
            name: None,
            model: None,
            payload: "{}".to_owned(),
        };
        let mut decoded = Decoded { announcement: Some(announcement), ..Decoded::default() };
        apply_mappings(&rules, "tasmota/discovery/5E2A1C/config", &mut decoded);
        assert_eq!(decoded.announcement.map(|a| a.device), Some(device("salon-plug")));
    }

    #[test]
    fn other_topics_are_untouched() {
        let rules = vec![DeviceMapping::new("tele/plug-1/+", device("kitchen")).unwrap()];
        let mut decoded = Decoded { device: Some(device("plug-2")), ..Decoded::default() };
        apply_mappings(&rules, "tele/plug-2/SENSOR", &mut decoded);
        assert_eq!(decoded.device, Some(device("plug-2")));
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = vec![
            DeviceMapping::new("Smart_Energie/#", device("esp32-salon")).unwrap(),
            DeviceMapping::new("#", device("catch-all")).unwrap(),
        ];
        let mut decoded = Decoded::default();
        apply_mappings(&rules, "Smart_Energie/temps", &mut decoded);
        assert_eq!(decoded.device, Some(device("esp32-salon")));
    }

    #[test]
    fn invalid_filter_is_rejected() {
        let error = DeviceMapping::new("tele/#/SENSOR", device("x")).unwrap_err();
        assert_eq!(error.filter, "tele/#/SENSOR");
        assert!(error.to_string().contains("last level"));
    }
}
