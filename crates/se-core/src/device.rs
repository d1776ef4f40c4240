use std::fmt;

use serde::{Deserialize, Serialize};

/// Maximum length of a device id or a channel name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A name that is not a valid device id or channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: use 1 to 64 characters among letters, digits, '-', '_', '.' and ':'")]
pub struct InvalidName {
    pub kind: &'static str,
    pub value: String,
}

fn validate(kind: &'static str, value: &str) -> Result<(), InvalidName> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if value.is_empty() || value.len() > MAX_NAME_LEN || !value.chars().all(valid_char) {
        return Err(InvalidName {
            kind,
            value: value.chars().take(MAX_NAME_LEN + 8).collect(),
        });
    }
    Ok(())
}

/// Identifier of a device: a rig, a meter, a plug or a sensor node.
///
/// Device ids appear in MQTT topics, so they exclude the MQTT separators `/`,
/// `+` and `#`, and whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// Parses a device id, rejecting empty, over-long and non-topic-safe names.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        validate("device id", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        validate("device id", &value)?;
        Ok(Self(value))
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Name of one measured channel of a device, such as `gpu0`, `main` or `relay1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelName(String);

impl ChannelName {
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        validate("channel name", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChannelName {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        validate("channel name", &value)?;
        Ok(Self(value))
    }
}

impl From<ChannelName> for String {
    fn from(name: ChannelName) -> Self {
        name.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_accepts_topic_safe_names() {
        for name in ["rig-01", "esp32_proto", "site1.meter", "shelly:ab12"] {
            assert!(DeviceId::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn device_id_rejects_separators_and_blanks() {
        for name in ["", "a/b", "rig+", "rig#", "rig 1", &"x".repeat(65)] {
            let error = DeviceId::parse(name).unwrap_err();
            assert_eq!(error.kind, "device id");
        }
    }
}
