//! The Smart Energy telemetry format, specified in docs/mqtt.md.
//!
//! Topic `smart-energy/v1/<device>/telemetry`, payload:
//! `{"seq": 42, "ts": "2026-12-04T20:00:00Z", "readings": [{"channel": "gpu0", "power_w": 231.5}]}`.
//! Status topic `smart-energy/v1/<device>/status` with `online` or `offline`.

use serde_json::{Map, Value};

use se_core::{ChannelName, CommandAck, Decoded, DeviceId, Metric, RejectReason, Reading, Rejection, TimestampMs};

use crate::{check_range, choose_timestamp, parse_with_unit, Decoder};

/// First topic level of every native topic.
pub const NATIVE_TOPIC_PREFIX: &str = "smart-energy/v1/";

/// Keys of a reading object that are not metrics.
const READING_FIELDS: [&str; 2] = ["channel", "ts"];

/// Decoder of the native telemetry and status topics.
#[derive(Debug, Default)]
pub struct NativeDecoder;

enum Kind {
    Telemetry,
    Status,
    /// Commands published by the server: not readings, so they are accepted
    /// here (not counted as unknown topics) and produce nothing.
    Command,
    /// A device's acknowledgement of a command, for the audit trail.
    Ack,
}

fn split_topic(topic: &str) -> Option<(&str, Kind)> {
    let rest = topic.strip_prefix(NATIVE_TOPIC_PREFIX)?;
    let (device, leaf) = rest.split_once('/')?;
    match leaf {
        "telemetry" => Some((device, Kind::Telemetry)),
        "status" => Some((device, Kind::Status)),
        "cmd" => Some((device, Kind::Command)),
        "ack" => Some((device, Kind::Ack)),
        _ => None,
    }
}

impl Decoder for NativeDecoder {
    fn name(&self) -> &'static str {
        "native"
    }

    fn topic_filters(&self) -> Vec<String> {
        vec![
            format!("{NATIVE_TOPIC_PREFIX}+/telemetry"),
            format!("{NATIVE_TOPIC_PREFIX}+/status"),
            format!("{NATIVE_TOPIC_PREFIX}+/ack"),
        ]
    }

    fn accepts(&self, topic: &str) -> bool {
        split_topic(topic).is_some()
    }

    fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
        let Some((device, kind)) = split_topic(topic) else {
            return Decoded::default();
        };
        let device = match DeviceId::parse(device) {
            Ok(device) => device,
            Err(error) => {
                return Decoded::rejected(Rejection::new(RejectReason::InvalidDeviceId, topic, device, error.to_string()));
            }
        };
        match kind {
            Kind::Command => Decoded::default(),
            Kind::Ack => decode_ack(device, topic, payload),
            Kind::Status => decode_status(device, topic, payload),
            Kind::Telemetry => decode_telemetry(device, topic, payload, received_ms),
        }
    }
}

fn decode_status(device: DeviceId, topic: &str, payload: &[u8]) -> Decoded {
    let text = String::from_utf8_lossy(payload);
    let online = match text.trim().to_ascii_lowercase().as_str() {
        "online" => true,
        "offline" => false,
        _ => {
            let detail = format!("status {text:?} is neither \"online\" nor \"offline\"");
            let rejection = Rejection::new(RejectReason::UnparsablePayload, topic, &text, detail);
            return Decoded::rejected(rejection.with_device(Some(device)));
        }
    };
    Decoded { device: Some(device), online: Some(online), ..Decoded::default() }
}

/// Reads `{"id": "...", "ok": true, ...}` from a device's ack topic. The
/// whole payload is kept for the audit trail.
fn decode_ack(device: DeviceId, topic: &str, payload: &[u8]) -> Decoded {
    let text = String::from_utf8_lossy(payload);
    let parsed = serde_json::from_slice::<Value>(payload).ok();
    let id = parsed.as_ref().and_then(|ack| ack.get("id")).and_then(Value::as_str);
    let ok = parsed.as_ref().and_then(|ack| ack.get("ok")).and_then(Value::as_bool);
    let (Some(id), Some(ok)) = (id, ok) else {
        let detail = "a command acknowledgement must be a JSON object with a string \"id\" and a boolean \"ok\"; see docs/agent.md".to_owned();
        let rejection = Rejection::new(RejectReason::UnparsablePayload, topic, &text, detail);
        return Decoded::rejected(rejection.with_device(Some(device)));
    };
    let command_ack = CommandAck { id: id.to_owned(), ok, payload: text.into_owned() };
    Decoded { device: Some(device), command_ack: Some(command_ack), ..Decoded::default() }
}

/// Collects readings and rejections of one message.
struct Builder<'a> {
    device: DeviceId,
    topic: &'a str,
    decoded: Decoded,
}

impl Builder<'_> {
    fn reject(&mut self, reason: RejectReason, field: Option<&str>, value: &str, detail: String) {
        let mut rejection = Rejection::new(reason, self.topic, value, detail).with_device(Some(self.device.clone()));
        if let Some(field) = field {
            rejection = rejection.with_field(field);
        }
        self.decoded.rejections.push(rejection);
    }
}

fn decode_telemetry(device: DeviceId, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
    let mut builder = Builder {
        device: device.clone(),
        topic,
        decoded: Decoded { device: Some(device), ..Decoded::default() },
    };
    let root = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(root)) => root,
        Ok(_) => {
            let detail = "payload must be a JSON object with \"readings\"; see docs/mqtt.md".to_owned();
            builder.reject(RejectReason::UnparsablePayload, None, &String::from_utf8_lossy(payload), detail);
            return builder.decoded;
        }
        Err(error) => {
            let detail = format!("payload is not valid JSON ({error}); send a JSON object as described in docs/mqtt.md");
            builder.reject(RejectReason::UnparsablePayload, None, &String::from_utf8_lossy(payload), detail);
            return builder.decoded;
        }
    };

    builder.decoded.seq = read_seq(&mut builder, &root);
    let message_ts = read_ts(&mut builder, root.get("ts"), received_ms);

    let readings = match root.get("readings") {
        Some(Value::Array(readings)) if !readings.is_empty() => readings,
        Some(other) => {
            let detail = "\"readings\" must be a non-empty array of objects such as {\"channel\": \"gpu0\", \"power_w\": 231.5}".to_owned();
            builder.reject(RejectReason::NoReadings, Some("readings"), &other.to_string(), detail);
            return builder.decoded;
        }
        None => {
            let detail = "the payload has no \"readings\" array; see docs/mqtt.md".to_owned();
            builder.reject(RejectReason::NoReadings, Some("readings"), "", detail);
            return builder.decoded;
        }
    };
    for (index, reading) in readings.iter().enumerate() {
        decode_reading(&mut builder, index, reading, message_ts, received_ms);
    }
    builder.decoded
}

fn read_seq(builder: &mut Builder<'_>, root: &Map<String, Value>) -> Option<u64> {
    let value = root.get("seq")?;
    match value.as_u64() {
        Some(seq) => Some(seq),
        None => {
            let detail = format!("\"seq\" must be a whole number from 0 to 2^64-1, got {value}");
            builder.reject(RejectReason::UnparsablePayload, Some("seq"), &value.to_string(), detail);
            None
        }
    }
}

/// Reads a `ts` field (RFC 3339 text or milliseconds since the epoch) and
/// applies the device clock rules; falls back to `default_ms`.
fn read_ts(builder: &mut Builder<'_>, value: Option<&Value>, default_ms: TimestampMs) -> TimestampMs {
    let Some(value) = value else {
        return default_ms;
    };
    let device_ms = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.parse::<jiff::Timestamp>().ok().map(|ts| ts.as_millisecond()),
        _ => None,
    };
    let Some(device_ms) = device_ms else {
        let detail = format!("\"ts\" {value} is neither RFC 3339 text (2026-12-04T20:00:00Z) nor whole milliseconds since 1970; the receive time was used");
        builder.reject(RejectReason::InvalidTimestamp, Some("ts"), &value.to_string(), detail);
        return default_ms;
    };
    let (ts, substitution) = choose_timestamp(Some(device_ms), default_ms, builder.topic);
    if let Some(substitution) = substitution {
        builder.decoded.rejections.push(substitution.with_device(Some(builder.device.clone())));
    }
    ts
}

fn decode_reading(builder: &mut Builder<'_>, index: usize, reading: &Value, message_ts: TimestampMs, received_ms: TimestampMs) {
    let Value::Object(fields) = reading else {
        let detail = format!("readings[{index}] must be an object such as {{\"channel\": \"gpu0\", \"power_w\": 231.5}}");
        builder.reject(RejectReason::UnparsablePayload, Some("readings"), &reading.to_string(), detail);
        return;
    };
    let channel_text = match fields.get("channel") {
        None => "main".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    let channel = match ChannelName::parse(&channel_text) {
        Ok(channel) => channel,
        Err(error) => {
            builder.reject(RejectReason::InvalidChannel, Some("channel"), &channel_text, error.to_string());
            return;
        }
    };
    // A reading may carry its own time; otherwise the message time applies.
    let ts = match fields.get("ts") {
        Some(value) => read_ts(builder, Some(value), received_ms),
        None => message_ts,
    };
    let before = builder.decoded.readings.len();
    for (key, value) in fields.iter().filter(|(key, _)| !READING_FIELDS.contains(&key.as_str())) {
        decode_metric(builder, &channel, key, value, ts);
    }
    if builder.decoded.readings.len() == before && fields.len() <= READING_FIELDS.len() {
        let detail = format!("readings[{index}] (channel {channel}) has no metric; add one such as \"power_w\"");
        builder.reject(RejectReason::NoReadings, Some("readings"), &reading.to_string(), detail);
    }
}

fn decode_metric(builder: &mut Builder<'_>, channel: &ChannelName, key: &str, value: &Value, ts: TimestampMs) {
    let field = format!("{channel}.{key}");
    let metric = match key.parse::<Metric>() {
        Ok(metric) => metric,
        Err(_) => {
            let (reason, detail) = match Metric::with_same_quantity(key) {
                Some(metric) => (
                    RejectReason::WrongUnit,
                    format!("metric {key:?} uses an unsupported unit; send {} in {} as {:?}", key, metric.unit(), metric.key()),
                ),
                None => (
                    RejectReason::UnknownMetric,
                    format!("unknown metric {key:?}; known metrics are listed in docs/mqtt.md (power_w, energy_wh, temperature_c, ...)"),
                ),
            };
            builder.reject(reason, Some(&field), &value.to_string(), detail);
            return;
        }
    };
    let parsed = match value {
        Value::Number(number) => number.as_f64().ok_or(RejectReason::NotANumber),
        Value::String(text) => parse_with_unit(text, metric.unit()),
        Value::Null => Err(RejectReason::NotANumber),
        _ => Err(RejectReason::UnparsablePayload),
    };
    match parsed.and_then(|number| check_range(metric, number)) {
        Ok(number) => builder.decoded.readings.push(Reading {
            device: builder.device.clone(),
            channel: channel.clone(),
            metric,
            ts_ms: ts,
            value: number,
        }),
        Err(reason) => {
            let detail = value_detail(reason, metric, value);
            builder.reject(reason, Some(&field), &value.to_string(), detail);
        }
    }
}

fn value_detail(reason: RejectReason, metric: Metric, value: &Value) -> String {
    let key = metric.key();
    let unit = metric.unit();
    match reason {
        RejectReason::WrongUnit => format!("{key} takes a number in {unit}, got {value}; convert it to {unit} or send a bare number"),
        RejectReason::Negative => format!("{key} cannot be negative, got {value}; check the sensor wiring or calibration"),
        RejectReason::OutOfRange => {
            let (min, max) = metric.range();
            format!("{key} must be between {min} and {max} {unit}, got {value}")
        }
        RejectReason::EmptyValue => format!("{key} is empty; omit the metric when there is no value"),
        _ => format!("{key} must be a number in {unit}, got {value}; omit the metric when there is no value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_733_000_000_000;
    const TOPIC: &str = "smart-energy/v1/rig-01/telemetry";

    fn decode(payload: &str) -> Decoded {
        NativeDecoder.decode(TOPIC, payload.as_bytes(), NOW)
    }

    fn rig_payload(gpus: usize, nan_at: Option<usize>) -> String {
        let readings: Vec<String> = (0..gpus)
            .map(|gpu| {
                let power = if nan_at == Some(gpu) { "\"nan\"".to_owned() } else { format!("{}", 200 + gpu) };
                format!(r#"{{"channel":"gpu{gpu}","power_w":{power},"temperature_c":60,"utilization_pct":98,"fan_speed_pct":55}}"#)
            })
            .collect();
        format!(r#"{{"seq":7,"ts":"2024-11-30T20:00:00Z","readings":[{}]}}"#, readings.join(","))
    }

    #[test]
    fn whole_rig_gives_32_values() {
        let decoded = decode(&rig_payload(8, None));
        assert_eq!(decoded.readings.len(), 32);
        assert!(decoded.rejections.is_empty());
        assert_eq!(decoded.seq, Some(7));
        assert_eq!(decoded.readings[0].ts_ms, 1_732_996_800_000);
    }

    #[test]
    fn one_nan_keeps_the_other_31() {
        let decoded = decode(&rig_payload(8, Some(3)));
        assert_eq!(decoded.readings.len(), 31);
        assert_eq!(decoded.rejections.len(), 1);
        assert_eq!(decoded.rejections[0].reason, RejectReason::NotANumber);
        assert_eq!(decoded.rejections[0].field.as_deref(), Some("gpu3.power_w"));
    }

    #[test]
    fn bad_values_are_rejected_alone() {
        let payload = r#"{"readings":[{"channel":"main","power_w":"None","voltage_v":"","current_a":-0.5,"energy_kwh":1.2,"power_factor":0.9,"temperature_c":"21 K"}]}"#;
        let decoded = decode(payload);
        let reasons: Vec<_> = decoded.rejections.iter().map(|r| r.reason).collect();
        assert_eq!(decoded.readings.len(), 1, "{reasons:?}");
        assert_eq!(decoded.readings[0].metric, Metric::PowerFactor);
        assert!(reasons.contains(&RejectReason::NotANumber));
        assert!(reasons.contains(&RejectReason::EmptyValue));
        assert!(reasons.contains(&RejectReason::Negative));
        assert!(reasons.contains(&RejectReason::WrongUnit));
        assert_eq!(reasons.len(), 5);
    }

    #[test]
    fn unparsable_payload_is_one_rejection() {
        let decoded = decode("{not json");
        assert!(decoded.readings.is_empty());
        assert_eq!(decoded.rejections[0].reason, RejectReason::UnparsablePayload);
        assert_eq!(decoded.device.as_ref().map(|d| d.as_str()), Some("rig-01"));
    }

    #[test]
    fn missing_ts_uses_receive_time() {
        let decoded = decode(r#"{"readings":[{"power_w":5}]}"#);
        assert_eq!(decoded.readings[0].ts_ms, NOW);
        assert_eq!(decoded.readings[0].channel.as_str(), "main");
    }

    #[test]
    fn unset_device_clock_is_recorded() {
        let decoded = decode(r#"{"ts":"1970-01-01T00:00:10Z","readings":[{"power_w":5}]}"#);
        assert_eq!(decoded.readings[0].ts_ms, NOW);
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidTimestamp);
    }

    #[test]
    fn status_reports_online_state() {
        let decoded = NativeDecoder.decode("smart-energy/v1/rig-01/status", b"offline", NOW);
        assert_eq!(decoded.online, Some(false));
    }

    #[test]
    fn command_topic_is_ignored() {
        let decoded = NativeDecoder.decode("smart-energy/v1/rig-01/cmd", br#"{"id":"c1","action":"stop_miner"}"#, NOW);
        assert!(decoded.is_empty(), "{decoded:?}");
    }

    #[test]
    fn ack_topic_gives_command_ack() {
        let payload = br#"{"id":"c1","ok":false,"code":"unknown_gpu"}"#;
        let decoded = NativeDecoder.decode("smart-energy/v1/rig-01/ack", payload, NOW);
        let ack = decoded.command_ack.expect("a command ack");
        assert_eq!(ack.id, "c1");
        assert!(!ack.ok);
        assert_eq!(ack.payload.as_bytes(), payload);
        assert!(decoded.rejections.is_empty());
    }

    #[test]
    fn ack_without_id_is_rejected() {
        let decoded = NativeDecoder.decode("smart-energy/v1/rig-01/ack", br#"{"id":null,"ok":false}"#, NOW);
        assert!(decoded.command_ack.is_none());
        assert_eq!(decoded.rejections[0].reason, RejectReason::UnparsablePayload);
    }

    #[test]
    fn invalid_device_in_topic_is_rejected() {
        let decoded = NativeDecoder.decode("smart-energy/v1/bad id/telemetry", b"{}", NOW);
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidDeviceId);
    }
}
