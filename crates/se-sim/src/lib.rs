//! A simulated fleet: mining rigs whose GPU power follows utilization, and
//! one prototype ESP32 meter in the prototype firmware's topic format.
//!
//! [`Fleet`] is the I/O-free model: each [`Fleet::step`] returns the MQTT
//! messages of one interval. [`run_simulator`] publishes them to a broker.
//!
//! ```
//! use se_sim::{Fleet, FleetConfig};
//!
//! let mut fleet = Fleet::new(FleetConfig { rigs: 2, gpus_per_rig: 4, ..FleetConfig::default() }, 7);
//! let messages = fleet.step(1_733_000_000_000, 5.0);
//! assert_eq!(messages.iter().filter(|m| m.topic.ends_with("/telemetry")).count(), 2);
//! ```

mod gpu;
mod prototype;
mod publish;

pub use gpu::{GpuModel, GpuSample};
pub use prototype::PrototypeMeter;
pub use publish::{run_simulator, SimulatorConfig, SimulatorError};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use se_core::TimestampMs;

/// One MQTT message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMessage {
    pub topic: String,
    pub payload: String,
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub rigs: usize,
    pub gpus_per_rig: usize,
    /// Device id prefix; rigs are named `<prefix>-01`, `<prefix>-02`, ...
    pub rig_prefix: String,
    /// Also play one prototype ESP32 on the four `Smart_Energie/...` topics.
    pub prototype: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self { rigs: 3, gpus_per_rig: 8, rig_prefix: "rig".to_owned(), prototype: true }
    }
}

struct Rig {
    id: String,
    gpus: Vec<GpuModel>,
    seq: u64,
}

/// The simulated fleet.
pub struct Fleet {
    rigs: Vec<Rig>,
    prototype: Option<PrototypeMeter>,
    rng: StdRng,
}

impl Fleet {
    /// Builds a fleet; the same `seed` gives the same fleet and the same values.
    pub fn new(config: FleetConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let rigs = (1..=config.rigs)
            .map(|index| Rig {
                id: format!("{}-{index:02}", config.rig_prefix),
                gpus: (0..config.gpus_per_rig).map(|_| GpuModel::new(&mut rng)).collect(),
                seq: 0,
            })
            .collect();
        let prototype = config.prototype.then(PrototypeMeter::new);
        Self { rigs, prototype, rng }
    }

    /// Device ids of the rigs.
    pub fn rig_ids(&self) -> Vec<String> {
        self.rigs.iter().map(|rig| rig.id.clone()).collect()
    }

    /// Advances the fleet by `dt_s` seconds and returns one native telemetry
    /// message per rig (a whole rig in one message) and, with the prototype
    /// enabled, its four messages of one cycle.
    pub fn step(&mut self, now_ms: TimestampMs, dt_s: f64) -> Vec<SimMessage> {
        let mut messages = Vec::with_capacity(self.rigs.len() + 4);
        for rig in &mut self.rigs {
            rig.seq += 1;
            let readings: Vec<_> = rig
                .gpus
                .iter_mut()
                .enumerate()
                .map(|(index, gpu)| {
                    let sample = gpu.step(&mut self.rng, dt_s);
                    json!({
                        "channel": format!("gpu{index}"),
                        "power_w": round1(sample.power_w),
                        "utilization_pct": round1(sample.utilization_pct),
                        "temperature_c": round1(sample.temperature_c),
                        "fan_speed_pct": round1(sample.fan_speed_pct),
                        "power_limit_w": sample.power_limit_w,
                    })
                })
                .collect();
            let payload = json!({
                "seq": rig.seq,
                "ts": jiff::Timestamp::from_millisecond(now_ms).map(|ts| ts.to_string()).unwrap_or_default(),
                "readings": readings,
            });
            messages.push(SimMessage { topic: format!("smart-energy/v1/{}/telemetry", rig.id), payload: payload.to_string() });
        }
        if let Some(meter) = &mut self.prototype {
            messages.extend(meter.step(&mut self.rng, dt_s));
        }
        messages
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use se_decode::{DecoderSet, NativeDecoder, PrototypeDecoder};

    #[test]
    fn messages_decode_without_rejections() {
        let mut fleet = Fleet::new(FleetConfig { rigs: 2, gpus_per_rig: 8, ..FleetConfig::default() }, 1);
        let device = se_core::DeviceId::parse("esp32-prototype").unwrap();
        let mut decoders = DecoderSet::new(vec![Box::new(NativeDecoder), Box::new(PrototypeDecoder::new(device))]);
        let now = 1_733_000_000_000;
        let mut readings = 0;
        for step in 0..20 {
            for message in fleet.step(now + step * 5_000, 5.0) {
                let decoded = decoders.decode(&message.topic, message.payload.as_bytes(), now + step * 5_000);
                assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
                readings += decoded.readings.len();
            }
        }
        // 2 rigs x 8 GPUs x 5 metrics, plus 5 prototype metrics, per step.
        assert_eq!(readings, 20 * (2 * 8 * 5 + 5));
    }

    #[test]
    fn same_seed_gives_same_values() {
        let config = FleetConfig { rigs: 1, gpus_per_rig: 2, ..FleetConfig::default() };
        let mut first = Fleet::new(config.clone(), 42);
        let mut second = Fleet::new(config, 42);
        assert_eq!(first.step(0, 5.0), second.step(0, 5.0));
    }
}
