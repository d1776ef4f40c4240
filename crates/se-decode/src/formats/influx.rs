//! InfluxDB line protocol, as Telegraf and many meters write it, turned into
//! readings. A pure function over a request body: the HTTP endpoint that
//! receives `/write` requests calls [`decode_line_protocol`].
//!
//! Lines are parsed with the `influxdb-line-protocol` crate. Each line maps
//! by its measurement:
//!
//! - `nvidia_smi` (Telegraf `inputs.nvidia_smi`): channel `gpuN` from the
//!   `index` tag, else the `uuid` tag in lower case. Fields `power_draw` (W),
//!   `temperature_gpu` (°C), `utilization_gpu` (%), `fan_speed` (%),
//!   `power_limit` or `enforced_power_limit` (W), `clocks_current_sm` (MHz)
//!   and `memory_used` (MiB) are stored; other fields are ignored.
//! - `ipmi_sensor` (Telegraf `inputs.ipmi_sensor`): field `value`, channel
//!   from the `name` tag, metric from the `unit` tag (`watts`, `degrees_c`,
//!   `volts`, `amps`). Other units (`rpm`, `percent`, `discrete`) are ignored.
//! - `modbus` (Telegraf `inputs.modbus`): channel from the `name` tag, else
//!   `slave<slave_id>`; fields as for any other measurement.
//! - any other measurement: channel from the `channel` tag, else `main`.
//!   A field named by a metric key (`power_w`) is stored as is. A field with
//!   the same quantity in another unit (`power_kw`, `energy_kwh`,
//!   `current_ma`) is converted. The fields `voltage`, `current`,
//!   `frequency` and `power` are read in V, A, Hz and W. Other fields are
//!   rejected as unknown metrics.
//!
//! The device id is the `device` tag, else the `host` tag, else the
//! default device of [`LineProtocolOptions`]. A line without a timestamp gets
//! the receive time. Each bad line or value gives one rejection whose topic is
//! `line N` (N counts from 1), and the other lines are kept.

use std::str::FromStr;

use influxdb_line_protocol::{FieldValue, ParsedLine};

use se_core::{Decoded, DeviceId, Metric, RejectReason, TimestampMs};

use super::common::{scaled, unit_scale, Batch};
use crate::{choose_timestamp, parse_number};

/// Unit of the timestamps of a line protocol body, the `precision` query
/// parameter of an InfluxDB `/write` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl FromStr for Precision {
    type Err = String;

    /// Parses `ns`, `us`, `ms` or `s`, and the InfluxDB 1.x spellings `n` and `u`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ns" | "n" => Ok(Precision::Nanoseconds),
            "us" | "u" | "µs" => Ok(Precision::Microseconds),
            "ms" => Ok(Precision::Milliseconds),
            "s" => Ok(Precision::Seconds),
            other => Err(format!("invalid precision {other:?}: use ns, us, ms or s")),
        }
    }
}

impl Precision {
    /// Converts a timestamp in this precision to milliseconds, rounding down.
    /// Returns `None` when the value does not fit.
    pub fn to_millis(self, value: i64) -> Option<TimestampMs> {
        match self {
            Precision::Nanoseconds => Some(value.div_euclid(1_000_000)),
            Precision::Microseconds => Some(value.div_euclid(1_000)),
            Precision::Milliseconds => Some(value),
            Precision::Seconds => value.checked_mul(1_000),
        }
    }
}

/// Settings of one line protocol body.
#[derive(Debug, Clone, Default)]
pub struct LineProtocolOptions {
    pub precision: Precision,
    /// Device of lines that have neither a `device` nor a `host` tag.
    pub default_device: Option<DeviceId>,
}

/// Decodes a line protocol body whose lines name their device by tag.
pub fn decode_line_protocol(body: &str, precision: Precision, received_ms: TimestampMs) -> Decoded {
    decode_line_protocol_with(body, &LineProtocolOptions { precision, default_device: None }, received_ms)
}

/// Decodes a line protocol body. `Decoded::device` is set when every line
/// that named a device named the same one.
pub fn decode_line_protocol_with(body: &str, options: &LineProtocolOptions, received_ms: TimestampMs) -> Decoded {
    let mut out = Decoded::default();
    let mut devices: Vec<DeviceId> = Vec::new();
    let mut line_number = 1;
    for line in influxdb_line_protocol::split_lines(body) {
        let this_line = line_number;
        line_number += 1 + line.matches('\n').count();
        let line = line.strip_suffix('\r').unwrap_or(line);
        let topic = format!("line {this_line}");
        let decoded = decode_line(line, &topic, options, received_ms);
        if let Some(device) = &decoded.device {
            if !devices.contains(device) {
                devices.push(device.clone());
            }
        }
        out.readings.extend(decoded.readings);
        out.rejections.extend(decoded.rejections);
    }
    if devices.len() == 1 {
        out.device = devices.pop();
    }
    out
}

fn decode_line(line: &str, topic: &str, options: &LineProtocolOptions, received_ms: TimestampMs) -> Decoded {
    let parsed = match influxdb_line_protocol::parse_lines(line).next() {
        None => return Decoded::default(),
        Some(Ok(parsed)) => parsed,
        Some(Err(error)) => {
            let mut batch = Batch::new(topic, None);
            let detail = format!("{topic} is not valid line protocol ({error}); write measurement,tag=value field=1.5 1733000000000000000");
            batch.reject(RejectReason::UnparsablePayload, None, line, detail);
            return batch.finish();
        }
    };

    let tag = |key: &str| parsed.tag_value(key).map(|value| value.as_str().to_owned());
    let device = match tag("device").or_else(|| tag("host")) {
        Some(name) => match DeviceId::parse(&name) {
            Ok(device) => device,
            Err(error) => {
                let mut batch = Batch::new(topic, None);
                let detail = format!("{topic}: {error}; fix the device or host tag");
                batch.reject(RejectReason::InvalidDeviceId, Some("device"), &name, detail);
                return batch.finish();
            }
        },
        None => match &options.default_device {
            Some(device) => device.clone(),
            None => {
                let mut batch = Batch::new(topic, None);
                let detail = format!("{topic} has neither a device nor a host tag; add device=<id> to the line");
                batch.reject(RejectReason::InvalidDeviceId, Some("device"), line, detail);
                return batch.finish();
            }
        },
    };

    let mut batch = Batch::new(topic, Some(device));
    let ts_ms = line_timestamp(&mut batch, &parsed, options.precision, received_ms);
    match parsed.series.measurement.as_str() {
        "nvidia_smi" => decode_nvidia_smi(&mut batch, &parsed, ts_ms),
        "ipmi_sensor" => decode_ipmi(&mut batch, &parsed, ts_ms),
        "modbus" => {
            let channel = tag("name").or_else(|| tag("slave_id").map(|id| format!("slave{id}"))).unwrap_or_else(|| "main".to_owned());
            decode_generic(&mut batch, &parsed, &sanitize_channel(&channel), ts_ms);
        }
        _ => {
            let channel = tag("channel").unwrap_or_else(|| "main".to_owned());
            decode_generic(&mut batch, &parsed, &channel, ts_ms);
        }
    }
    batch.finish()
}

fn line_timestamp(batch: &mut Batch<'_>, parsed: &ParsedLine<'_>, precision: Precision, received_ms: TimestampMs) -> TimestampMs {
    let Some(raw) = parsed.timestamp else {
        return received_ms;
    };
    let Some(device_ms) = precision.to_millis(raw) else {
        let detail = format!("{}: timestamp {raw} does not fit in milliseconds at precision {precision:?}; the receive time was used", batch.topic);
        batch.reject(RejectReason::InvalidTimestamp, Some("timestamp"), &raw.to_string(), detail);
        return received_ms;
    };
    let (ts_ms, substitution) = choose_timestamp(Some(device_ms), received_ms, batch.topic);
    batch.note(substitution);
    ts_ms
}

fn field_number(value: &FieldValue<'_>) -> Result<f64, RejectReason> {
    match value {
        FieldValue::F64(number) if number.is_nan() => Err(RejectReason::NotANumber),
        FieldValue::F64(number) if number.is_infinite() => Err(RejectReason::Infinite),
        FieldValue::F64(number) => Ok(*number),
        FieldValue::I64(number) => Ok(*number as f64),
        FieldValue::U64(number) => Ok(*number as f64),
        FieldValue::String(text) => parse_number(text),
        FieldValue::Boolean(_) => Err(RejectReason::NotANumber),
    }
}

/// Telegraf `nvidia_smi` fields that are stored.
const NVIDIA_SMI_FIELDS: [(&str, Metric); 8] = [
    ("power_draw", Metric::Power),
    ("temperature_gpu", Metric::Temperature),
    ("utilization_gpu", Metric::Utilization),
    ("fan_speed", Metric::FanSpeed),
    ("power_limit", Metric::PowerLimit),
    ("enforced_power_limit", Metric::PowerLimit),
    ("clocks_current_sm", Metric::Clock),
    ("memory_used", Metric::MemoryUsed),
];

fn decode_nvidia_smi(batch: &mut Batch<'_>, parsed: &ParsedLine<'_>, ts_ms: TimestampMs) {
    let index = parsed.tag_value("index").map(|value| value.as_str().to_owned());
    let channel = match (index, parsed.tag_value("uuid")) {
        (Some(index), _) if super::common::is_index(&index) => format!("gpu{index}"),
        (None, Some(uuid)) => sanitize_channel(&uuid.as_str().to_ascii_lowercase()),
        (index, _) => {
            let detail = format!("{}: nvidia_smi line needs a numeric index tag or a uuid tag, got index {index:?}", batch.topic);
            batch.reject(RejectReason::InvalidChannel, Some("index"), index.as_deref().unwrap_or(""), detail);
            return;
        }
    };
    let mut limit_seen = false;
    for (key, metric) in NVIDIA_SMI_FIELDS {
        let Some(value) = parsed.field_value(key) else {
            continue;
        };
        // Newer Telegraf sends both power limit fields; the first one wins.
        if metric == Metric::PowerLimit {
            if limit_seen {
                continue;
            }
            limit_seen = true;
        }
        let field = format!("{channel}.{key}");
        batch.push_parsed(&channel, metric, ts_ms, field_number(value), &field, &value.to_string());
    }
}

fn decode_ipmi(batch: &mut Batch<'_>, parsed: &ParsedLine<'_>, ts_ms: TimestampMs) {
    let unit = parsed.tag_value("unit").map(|value| value.as_str().to_owned()).unwrap_or_default();
    let metric = match unit.as_str() {
        "watts" => Metric::Power,
        "degrees_c" => Metric::Temperature,
        "volts" => Metric::Voltage,
        "amps" => Metric::Current,
        // Fan speeds, percentages and discrete states have no metric.
        _ => return,
    };
    let name = parsed.tag_value("name").map(|value| value.as_str().to_owned()).unwrap_or_else(|| "main".to_owned());
    let channel = sanitize_channel(&name);
    let Some(value) = parsed.field_value("value") else {
        let detail = format!("{}: ipmi_sensor line for {name:?} has no value field", batch.topic);
        batch.reject(RejectReason::NoReadings, Some(&name), "", detail);
        return;
    };
    batch.push_parsed(&channel, metric, ts_ms, field_number(value), &name, &value.to_string());
}

/// Metric and unit factor of a generic field name.
fn generic_field_metric(name: &str) -> Result<(Metric, f64), RejectReason> {
    if let Ok(metric) = name.parse::<Metric>() {
        return Ok((metric, 1.0));
    }
    match name {
        "voltage" => return Ok((Metric::Voltage, 1.0)),
        "current" => return Ok((Metric::Current, 1.0)),
        "frequency" => return Ok((Metric::Frequency, 1.0)),
        "power" | "active_power" => return Ok((Metric::Power, 1.0)),
        _ => {}
    }
    let Some(metric) = Metric::with_same_quantity(name) else {
        return Err(RejectReason::UnknownMetric);
    };
    let suffix = name.rsplit_once('_').map_or("", |(_, unit)| unit);
    let unit = match suffix {
        "kwh" => "kWh",
        "kw" => "kW",
        "mw" => "mW",
        "ma" => "mA",
        "mv" => "mV",
        "kva" => "kVA",
        "kvar" => "kVAr",
        "wmin" => "Wmin",
        other => other,
    };
    unit_scale(metric, unit).map(|scale| (metric, scale)).ok_or(RejectReason::WrongUnit)
}

fn decode_generic(batch: &mut Batch<'_>, parsed: &ParsedLine<'_>, channel: &str, ts_ms: TimestampMs) {
    for (key, value) in &parsed.field_set {
        let key = key.as_str();
        match generic_field_metric(key) {
            Ok((metric, scale)) => batch.push_parsed(channel, metric, ts_ms, scaled(field_number(value), scale), key, &value.to_string()),
            Err(reason) => {
                let detail = match reason {
                    RejectReason::WrongUnit => format!("{}: field {key:?} has a unit that Smart Energy does not convert; name it after a metric key such as power_w or energy_wh", batch.topic),
                    _ => format!("{}: field {key:?} is not a metric; name fields after metric keys such as power_w, energy_wh or temperature_c", batch.topic),
                };
                batch.reject(reason, Some(key), &value.to_string(), detail);
            }
        }
    }
}

/// Turns a tag value into a channel name: characters that a channel name
/// cannot contain become `_`, and the name is cut to 64 characters.
fn sanitize_channel(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "main".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_733_000_000_000;

    fn reasons(decoded: &Decoded) -> Vec<RejectReason> {
        decoded.rejections.iter().map(|r| r.reason).collect()
    }

    #[test]
    fn telegraf_nvidia_smi_line_is_decoded() {
        let body = "nvidia_smi,compute_mode=Default,host=rig-01,index=3,name=NVIDIA\\ GeForce\\ RTX\\ 3090,pstate=P2,uuid=GPU-8c2b5e1e-2d2e-4e2f-9a7d-000000000003 fan_speed=55i,memory_free=20000i,memory_total=24576i,memory_used=4576i,power_draw=231.45,temperature_gpu=61i,utilization_gpu=98i,clocks_current_sm=1830i 1732999990000000000\n";
        let decoded = decode_line_protocol(body, Precision::Nanoseconds, NOW);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        assert_eq!(decoded.device.as_ref().map(|d| d.as_str()), Some("rig-01"));
        let power = decoded.readings.iter().find(|r| r.metric == Metric::Power).unwrap();
        assert_eq!(power.channel.as_str(), "gpu3");
        assert_eq!(power.value, 231.45);
        assert_eq!(power.ts_ms, 1_732_999_990_000);
        assert_eq!(decoded.readings.len(), 6);
    }

    #[test]
    fn bad_line_keeps_the_others() {
        let body = "power,device=meter-1 power_w=120.5 1732999990\nthis is not line protocol\n\n# comment\npower,device=meter-1 power_w=121.0 1732999991\n";
        let decoded = decode_line_protocol(body, Precision::Seconds, NOW);
        assert_eq!(decoded.readings.len(), 2);
        assert_eq!(reasons(&decoded), vec![RejectReason::UnparsablePayload]);
        assert_eq!(decoded.rejections[0].topic, "line 2");
    }

    #[test]
    fn precision_scales_timestamps() {
        for (precision, raw) in [
            (Precision::Seconds, "1732999990"),
            (Precision::Milliseconds, "1732999990000"),
            (Precision::Microseconds, "1732999990000000"),
            (Precision::Nanoseconds, "1732999990000000000"),
        ] {
            let decoded = decode_line_protocol(&format!("m,host=h power_w=1 {raw}"), precision, NOW);
            assert_eq!(decoded.readings[0].ts_ms, 1_732_999_990_000, "{precision:?}");
        }
    }

    #[test]
    fn precision_parses_query_values() {
        assert_eq!("ms".parse::<Precision>(), Ok(Precision::Milliseconds));
        assert_eq!("u".parse::<Precision>(), Ok(Precision::Microseconds));
        assert!("minutes".parse::<Precision>().is_err());
    }

    #[test]
    fn units_in_field_names_convert() {
        let decoded = decode_line_protocol("meter,device=main-meter,channel=grid energy_kwh=12.5,power_kw=1.2,voltage=230.1", Precision::Seconds, NOW);
        let value = |metric| decoded.readings.iter().find(|r| r.metric == metric).map(|r| r.value);
        assert_eq!(value(Metric::Energy), Some(12_500.0));
        assert_eq!(value(Metric::Power), Some(1_200.0));
        assert_eq!(value(Metric::Voltage), Some(230.1));
        assert!(decoded.readings.iter().all(|r| r.channel.as_str() == "grid" && r.ts_ms == NOW));
    }

    #[test]
    fn unknown_field_is_rejected_alone() {
        let decoded = decode_line_protocol("meter,device=m1 power_w=5,pressure_pa=101325,status=\"ok\"", Precision::Seconds, NOW);
        assert_eq!(decoded.readings.len(), 1);
        assert_eq!(reasons(&decoded), vec![RejectReason::UnknownMetric, RejectReason::UnknownMetric]);
        assert_eq!(decoded.rejections[0].device.as_ref().map(|d| d.as_str()), Some("m1"));
    }

    #[test]
    fn line_without_device_is_rejected() {
        let decoded = decode_line_protocol("meter power_w=5", Precision::Seconds, NOW);
        assert_eq!(reasons(&decoded), vec![RejectReason::InvalidDeviceId]);
        let options = LineProtocolOptions { default_device: Some(DeviceId::parse("m2").unwrap()), ..LineProtocolOptions::default() };
        let decoded = decode_line_protocol_with("meter power_w=5", &options, NOW);
        assert_eq!(decoded.readings.len(), 1);
    }

    #[test]
    fn ipmi_sensor_uses_unit_tag() {
        let body = "ipmi_sensor,host=node-7,name=ps1_input_power,unit=watts status=1i,value=420 1732999990000000000\nipmi_sensor,host=node-7,name=fan1a,unit=rpm status=1i,value=5400 1732999990000000000\nipmi_sensor,host=node-7,name=inlet_temp,unit=degrees_c status=1i,value=23 1732999990000000000";
        let decoded = decode_line_protocol(body, Precision::Nanoseconds, NOW);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        let channels: Vec<_> = decoded.readings.iter().map(|r| (r.channel.as_str(), r.metric)).collect();
        assert_eq!(channels, vec![("ps1_input_power", Metric::Power), ("inlet_temp", Metric::Temperature)]);
    }

    #[test]
    fn modbus_channel_from_name_tag() {
        let decoded = decode_line_protocol("modbus,host=gw-1,name=Main\\ Meter,slave_id=1,type=holding_register voltage=229.7,current=12.1,energy_kwh=10234.5", Precision::Seconds, NOW);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        assert!(decoded.readings.iter().all(|r| r.channel.as_str() == "Main_Meter"));
        assert_eq!(decoded.readings.len(), 3);
    }

    #[test]
    fn windows_line_endings_are_accepted() {
        let decoded = decode_line_protocol("m,host=h power_w=1 1732999990\r\nm,host=h power_w=2 1732999991\r\n", Precision::Seconds, NOW);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        assert_eq!(decoded.readings.len(), 2);
    }

    #[test]
    fn two_devices_leave_device_unset() {
        let decoded = decode_line_protocol("m,host=a power_w=1\nm,host=b power_w=2", Precision::Seconds, NOW);
        assert_eq!(decoded.readings.len(), 2);
        assert!(decoded.device.is_none());
    }
}
