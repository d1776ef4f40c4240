use serde::{Deserialize, Serialize};

use crate::{ChannelName, DeviceId, Metric, Rejection};

/// Milliseconds since the Unix epoch, UTC.
pub type TimestampMs = i64;

/// Returns the current time in milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    jiff::Timestamp::now().as_millisecond()
}

/// One value of one metric of one channel of a device at one instant.
///
/// A series is identified by `(device, channel, metric)`. A series stores at
/// most one value per timestamp, which is how replays are stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub device: DeviceId,
    pub channel: ChannelName,
    pub metric: Metric,
    pub ts_ms: TimestampMs,
    /// Value in the metric's canonical unit ([`Metric::unit`]).
    pub value: f64,
}

impl Reading {
    /// Builds a reading; panics only if `channel` is not a valid channel name,
    /// so call it with literals or names that were already validated.
    pub fn new(device: DeviceId, channel: &str, metric: Metric, ts_ms: TimestampMs, value: f64) -> Self {
        let channel = ChannelName::parse(channel).unwrap_or_else(|error| panic!("{error}"));
        Self { device, channel, metric, ts_ms, value }
    }
}

/// The outcome of decoding one MQTT message or one imported row.
///
/// Valid values and rejected values of the same message travel together, so
/// one bad value never costs the rest of its message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// Device the message belongs to, when the decoder could tell.
    pub device: Option<DeviceId>,
    /// Per-device message sequence number, for loss and duplicate counting.
    pub seq: Option<u64>,
    pub readings: Vec<Reading>,
    pub rejections: Vec<Rejection>,
    /// Device state announced by the message, such as an MQTT Last Will.
    pub online: Option<bool>,
    /// The device reported a reboot (its uptime or counter started over).
    pub restarted: bool,
    /// The device's acknowledgement of a command, from its `ack` topic.
    pub command_ack: Option<CommandAck>,
    /// The device announced itself, as with Tasmota or Home Assistant discovery.
    pub announcement: Option<Announcement>,
}

/// A device that announced itself on a discovery topic, so an operator can
/// approve it before it shows on the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// Device id that the device's telemetry uses.
    pub device: DeviceId,
    /// Announcement format: `tasmota`, `shelly` or `home_assistant`.
    pub format: String,
    /// Name the device gives itself, if any.
    pub name: Option<String>,
    /// Hardware model, if the device reports one.
    pub model: Option<String>,
    /// The announcement as received, cut to [`Announcement::MAX_PAYLOAD_LEN`] bytes.
    pub payload: String,
}

impl Announcement {
    /// Maximum length of the stored payload excerpt, in bytes, because a
    /// discovery config can be several kB.
    pub const MAX_PAYLOAD_LEN: usize = 2048;

    /// Cuts `payload` to at most [`Announcement::MAX_PAYLOAD_LEN`] bytes on a character boundary.
    pub fn excerpt(payload: &str) -> String {
        let mut end = payload.len().min(Self::MAX_PAYLOAD_LEN);
        while !payload.is_char_boundary(end) {
            end -= 1;
        }
        payload[..end].to_owned()
    }
}

/// A device's answer to one command, kept for the command audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandAck {
    /// Id the server gave the command.
    pub id: String,
    /// Whether the device carried out the command.
    pub ok: bool,
    /// The acknowledgement as the device sent it, JSON.
    pub payload: String,
}

impl Decoded {
    pub fn rejected(rejection: Rejection) -> Self {
        Self { device: rejection.device.clone(), rejections: vec![rejection], ..Self::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.rejections.is_empty() && self.online.is_none() && self.command_ack.is_none()
            && self.announcement.is_none()
    }
}
