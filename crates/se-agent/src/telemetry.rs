//! Builds the native telemetry payload of one rig sample. No I/O.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use se_core::Metric;

use crate::sources::GpuReading;

/// Everything measured on the rig at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RigSample {
    pub gpus: Vec<GpuReading>,
    /// Hashrate in MH/s by GPU index.
    pub hashrates: BTreeMap<u32, f64>,
    /// Total CPU package power in watts.
    pub cpu_power_w: Option<f64>,
    /// Seconds since the agent started.
    pub agent_uptime_s: f64,
}

/// Channel name of GPU `index`.
pub fn gpu_channel(index: u32) -> String {
    format!("gpu{index}")
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn insert(object: &mut Map<String, Value>, metric: Metric, value: Option<f64>, decimals: i32) {
    if let Some(value) = value.filter(|value| value.is_finite()) {
        object.insert(metric.key().to_owned(), Value::from(round(value, decimals)));
    }
}

fn gpu_object(gpu: Option<&GpuReading>, index: u32, hashrate_mhs: Option<f64>) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("channel".to_owned(), Value::from(gpu_channel(index)));
    if let Some(gpu) = gpu {
        insert(&mut object, Metric::Power, gpu.power_w, 1);
        insert(&mut object, Metric::Energy, gpu.energy_wh, 3);
        insert(&mut object, Metric::Utilization, gpu.utilization_pct, 1);
        insert(&mut object, Metric::Temperature, gpu.temperature_c, 1);
        insert(&mut object, Metric::FanSpeed, gpu.fan_speed_pct, 1);
        insert(&mut object, Metric::PowerLimit, gpu.limits.map(|limits| limits.current_w), 1);
        insert(&mut object, Metric::Clock, gpu.clock_mhz, 0);
        insert(&mut object, Metric::MemoryUsed, gpu.memory_used_mib, 0);
    }
    insert(&mut object, Metric::Hashrate, hashrate_mhs, 3);
    object
}

/// Returns the JSON payload of `sample` as specified in docs/mqtt.md: one
/// `gpuN` channel per GPU, `cpu` for the CPU package power and `agent` with
/// the agent's uptime (so every message has at least one reading).
/// `site`, when set, is an extra top-level field.
pub fn telemetry_payload(seq: u64, ts_ms: i64, site: Option<&str>, sample: &RigSample) -> Vec<u8> {
    let mut readings = Vec::new();
    let mut indexes: Vec<u32> = sample.gpus.iter().map(|gpu| gpu.index).collect();
    indexes.extend(sample.hashrates.keys().copied());
    indexes.sort_unstable();
    indexes.dedup();
    for index in indexes {
        let gpu = sample.gpus.iter().find(|gpu| gpu.index == index);
        let object = gpu_object(gpu, index, sample.hashrates.get(&index).copied());
        // The channel name alone is not a reading.
        if object.len() > 1 {
            readings.push(Value::Object(object));
        }
    }
    if let Some(watts) = sample.cpu_power_w {
        let mut object = Map::new();
        object.insert("channel".to_owned(), Value::from("cpu"));
        insert(&mut object, Metric::Power, Some(watts), 1);
        readings.push(Value::Object(object));
    }
    let mut agent = Map::new();
    agent.insert("channel".to_owned(), Value::from("agent"));
    insert(&mut agent, Metric::Uptime, Some(sample.agent_uptime_s), 1);
    readings.push(Value::Object(agent));

    let mut root = Map::new();
    root.insert("seq".to_owned(), Value::from(seq));
    let ts = jiff::Timestamp::from_millisecond(ts_ms).map(|ts| Value::from(ts.to_string())).unwrap_or_else(|_| Value::from(ts_ms));
    root.insert("ts".to_owned(), ts);
    if let Some(site) = site {
        root.insert("site".to_owned(), Value::from(site));
    }
    root.insert("readings".to_owned(), Value::Array(readings));
    serde_json::to_vec(&Value::Object(root)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::PowerLimits;

    fn gpu(index: u32) -> GpuReading {
        GpuReading {
            index,
            power_w: Some(231.44),
            utilization_pct: Some(98.0),
            limits: Some(PowerLimits { current_w: 250.0, min_w: 100.0, max_w: 300.0, default_w: 250.0 }),
            ..GpuReading::default()
        }
    }

    #[test]
    fn payload_has_seq_ts_and_channels() {
        let mut sample = RigSample { gpus: vec![gpu(0), gpu(1)], cpu_power_w: Some(35.26), agent_uptime_s: 12.0, ..RigSample::default() };
        sample.hashrates.insert(1, 30.5);
        let payload: Value = serde_json::from_slice(&telemetry_payload(42, 1_733_000_000_000, Some("north"), &sample)).unwrap();
        assert_eq!(payload["seq"], 42);
        assert_eq!(payload["ts"], "2024-11-30T20:53:20Z");
        assert_eq!(payload["site"], "north");
        let channels: Vec<&str> = payload["readings"].as_array().unwrap().iter().map(|r| r["channel"].as_str().unwrap()).collect();
        assert_eq!(channels, vec!["gpu0", "gpu1", "cpu", "agent"]);
        assert_eq!(payload["readings"][0]["power_w"], 231.4);
        assert_eq!(payload["readings"][0]["power_limit_w"], 250.0);
        assert_eq!(payload["readings"][1]["hashrate_mhs"], 30.5);
        assert_eq!(payload["readings"][2]["power_w"], 35.3);
    }

    #[test]
    fn payload_decodes_without_rejections() {
        use se_decode::{Decoder, NativeDecoder};
        let mut full = gpu(0);
        full.energy_wh = Some(1234.5678);
        full.temperature_c = Some(61.0);
        full.fan_speed_pct = Some(55.0);
        full.clock_mhz = Some(1710.0);
        full.memory_used_mib = Some(4096.0);
        let mut sample = RigSample { gpus: vec![full], cpu_power_w: Some(40.0), agent_uptime_s: 3.0, ..RigSample::default() };
        sample.hashrates.insert(0, 61.2);
        let now = jiff::Timestamp::now().as_millisecond();
        let payload = telemetry_payload(5, now, Some("north"), &sample);
        let decoded = NativeDecoder.decode("smart-energy/v1/rig-01/telemetry", &payload, now);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        // gpu0: 9 metrics, cpu: 1, agent: 1.
        assert_eq!(decoded.readings.len(), 11);
        assert_eq!(decoded.seq, Some(5));
    }

    #[test]
    fn absent_values_are_left_out() {
        let sample = RigSample { gpus: vec![GpuReading { index: 0, ..GpuReading::default() }], ..RigSample::default() };
        let payload: Value = serde_json::from_slice(&telemetry_payload(1, 1_733_000_000_000, None, &sample)).unwrap();
        let readings = payload["readings"].as_array().unwrap();
        assert_eq!(readings.len(), 1);
        assert_eq!(readings[0]["channel"], "agent");
        assert!(payload.get("site").is_none());
    }

    #[test]
    fn hashrate_without_gpu_source_has_channel() {
        let mut sample = RigSample::default();
        sample.hashrates.insert(3, 12.0);
        let payload: Value = serde_json::from_slice(&telemetry_payload(1, 1_733_000_000_000, None, &sample)).unwrap();
        assert_eq!(payload["readings"][0], serde_json::json!({"channel": "gpu3", "hashrate_mhs": 12.0}));
    }
}
