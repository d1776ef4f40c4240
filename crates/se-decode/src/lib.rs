//! Decoders that turn device messages into [`se_core::Reading`]s.
//!
//! Each device format has its own decoder behind the [`Decoder`] trait. A
//! decoder has no I/O. It takes a topic, a payload and the receive time, and
//! returns the readings it could build. Every value it could not use becomes
//! a [`se_core::Rejection`], so one bad value never costs the rest of its
//! message. [`DecoderSet`] routes a topic to the first decoder that accepts it.
//!
//! ```
//! use se_decode::{DecoderSet, NativeDecoder};
//!
//! let mut decoders = DecoderSet::new(vec![Box::new(NativeDecoder::default())]);
//! let payload = br#"{"seq": 1, "readings": [{"channel": "gpu0", "power_w": 231.5}]}"#;
//! let decoded = decoders.decode("smart-energy/v1/rig-01/telemetry", payload, 1_700_000_000_000);
//! assert_eq!(decoded.readings.len(), 1);
//! assert!(decoded.rejections.is_empty());
//! ```

mod formats;
mod mapping;
mod native;
mod prototype;
mod value;

pub use mapping::{apply_mappings, DeviceMapping, InvalidMapping};
pub use native::{NativeDecoder, NATIVE_TOPIC_PREFIX};
pub use prototype::{parse_uptime, PrototypeDecoder, PROTOTYPE_TOPICS};
pub use value::{check_range, parse_number, parse_with_unit};

pub use formats::emonhub::{default_key_rule, EmonKey, EmonhubConfig, EmonhubDecoder};
pub use formats::esphome::{default_object_rule, EsphomeConfig, EsphomeDecoder, EsphomeObject};
pub use formats::home_assistant::{HomeAssistantConfig, HomeAssistantDecoder};
pub use formats::influx::{decode_line_protocol, decode_line_protocol_with, LineProtocolOptions, Precision};
pub use formats::nvidia_smi::{parse_nvidia_smi_csv, NvidiaSmiOptions, DEFAULT_BURST_TOLERANCE_MS};
pub use formats::shelly::{EmeterEnergySource, ShellyGen1Config, ShellyGen1Decoder, ShellyGen2Config, ShellyGen2Decoder};
pub use formats::tasmota::{TasmotaConfig, TasmotaDecoder, TASMOTA_DISCOVERY_PREFIX};
pub use formats::{unit_scale, DecoderConfigError};

use se_core::{Decoded, RejectReason, Rejection, TimestampMs};

/// Earliest device time accepted as a real clock reading: 2016-01-01T00:00:00Z.
/// Devices whose clock is unset report 1970 or 2000; their readings get the
/// receive time instead.
pub const EARLIEST_DEVICE_TIME_MS: TimestampMs = 1_451_606_400_000;

/// How far a device clock may run ahead of the receive time, in milliseconds.
pub const MAX_CLOCK_AHEAD_MS: TimestampMs = 5 * 60 * 1000;

/// A device message format.
pub trait Decoder: Send {
    /// Short name for logs and metrics, such as `native` or `tasmota`.
    fn name(&self) -> &'static str;

    /// MQTT topic filters that cover every topic the decoder accepts.
    fn topic_filters(&self) -> Vec<String>;

    /// Returns whether the decoder handles messages on `topic`.
    fn accepts(&self, topic: &str) -> bool;

    /// Decodes one message received at `received_ms`.
    fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded;
}

/// The decoders of one server, tried in order.
pub struct DecoderSet {
    decoders: Vec<Box<dyn Decoder>>,
    mappings: Vec<DeviceMapping>,
}

impl DecoderSet {
    pub fn new(decoders: Vec<Box<dyn Decoder>>) -> Self {
        Self { decoders, mappings: Vec::new() }
    }

    /// Stores messages of topics that match a rule under the rule's device.
    pub fn with_mappings(mut self, mappings: Vec<DeviceMapping>) -> Self {
        self.mappings = mappings;
        self
    }

    /// Topic filters of every decoder, without repeats.
    pub fn topic_filters(&self) -> Vec<String> {
        let mut filters: Vec<String> = self.decoders.iter().flat_map(|d| d.topic_filters()).collect();
        filters.sort();
        filters.dedup();
        filters
    }

    /// Decodes a message with the first decoder that accepts its topic, or
    /// rejects it as an unknown topic.
    pub fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
        let mut decoded = match self.decoders.iter_mut().find(|d| d.accepts(topic)) {
            Some(decoder) => decoder.decode(topic, payload, received_ms),
            None => Decoded::rejected(Rejection::new(
                RejectReason::UnknownTopic,
                topic,
                &String::from_utf8_lossy(payload),
                format!("no decoder handles topic {topic:?}; publish native telemetry to smart-energy/v1/<device>/telemetry or configure a device format for this topic"),
            )),
        };
        apply_mappings(&self.mappings, topic, &mut decoded);
        decoded
    }
}

/// Picks the timestamp of a reading: the device time when it is plausible,
/// else the receive time. Returns the chosen time and, when the device time
/// was replaced, a rejection that records the substitution.
pub fn choose_timestamp(
    device_ms: Option<TimestampMs>,
    received_ms: TimestampMs,
    topic: &str,
) -> (TimestampMs, Option<Rejection>) {
    let Some(device_ms) = device_ms else {
        return (received_ms, None);
    };
    if device_ms < EARLIEST_DEVICE_TIME_MS {
        let detail = format!(
            "device time {device_ms} ms is before 2016-01-01, so its clock is unset; the receive time was used. Set the device clock (NTP)"
        );
        return (received_ms, Some(Rejection::new(RejectReason::InvalidTimestamp, topic, &device_ms.to_string(), detail).with_field("ts")));
    }
    if device_ms > received_ms + MAX_CLOCK_AHEAD_MS {
        let ahead_s = (device_ms - received_ms) / 1000;
        let detail = format!(
            "device time is {ahead_s} s ahead of the receive time (more than 5 minutes); the receive time was used. Check the device clock (NTP)"
        );
        return (received_ms, Some(Rejection::new(RejectReason::InvalidTimestamp, topic, &device_ms.to_string(), detail).with_field("ts")));
    }
    (device_ms, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_733_000_000_000;

    #[test]
    fn unknown_topic_is_rejected() {
        let mut set = DecoderSet::new(vec![Box::new(NativeDecoder::default())]);
        let decoded = set.decode("some/other/topic", b"1", NOW);
        assert_eq!(decoded.rejections.len(), 1);
        assert_eq!(decoded.rejections[0].reason, RejectReason::UnknownTopic);
    }

    #[test]
    fn unset_clock_uses_receive_time() {
        let (ts, note) = choose_timestamp(Some(1_000), NOW, "t");
        assert_eq!(ts, NOW);
        assert_eq!(note.map(|n| n.reason), Some(RejectReason::InvalidTimestamp));
    }

    #[test]
    fn clock_far_ahead_uses_receive_time() {
        let (ts, note) = choose_timestamp(Some(NOW + 6 * 60 * 1000), NOW, "t");
        assert_eq!(ts, NOW);
        assert!(note.is_some());
    }

    #[test]
    fn plausible_clock_is_kept() {
        let (ts, note) = choose_timestamp(Some(NOW - 10_000), NOW, "t");
        assert_eq!(ts, NOW - 10_000);
        assert!(note.is_none());
    }
}
