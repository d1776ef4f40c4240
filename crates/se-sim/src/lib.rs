//! A simulated fleet: mining rigs whose GPU power follows utilization, an
//! optional wall meter per rig, and one prototype ESP32 meter in the
//! prototype firmware's topic format. Faults ([`Fault`]) can be injected to
//! test anomaly detection.
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

mod fault;
mod gpu;
mod prototype;
mod publish;

pub use fault::{Fault, FaultError, FaultKind, FaultRecord, DRIFT_RAMP_MS, DRIFT_SHARE, PSU_LOSS_MAX_PP, PSU_LOSS_PP_PER_MINUTE, SPIKE_FACTOR};
pub use gpu::{GpuModel, GpuSample};
pub use prototype::PrototypeMeter;
pub use publish::{run_simulator, SimulatorConfig, SimulatorError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    /// Add a wall meter per rig: channel `wall`, metric `power_w`, the power
    /// the rig draws from the socket (GPUs, the rest of the rig, and the
    /// power supply's conversion loss).
    pub wall_meter: bool,
    /// Faults to inject; a `psu-loss` fault needs `wall_meter`.
    pub faults: Vec<Fault>,
    /// Time from which fault offsets count; the first step's time when `None`.
    pub start_ms: Option<TimestampMs>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self { rigs: 3, gpus_per_rig: 8, rig_prefix: "rig".to_owned(), prototype: true, wall_meter: false, faults: Vec::new(), start_ms: None }
    }
}

impl FleetConfig {
    /// Device id of the rig with 1-based `index`.
    pub fn rig_id(&self, index: usize) -> String {
        format!("{}-{index:02}", self.rig_prefix)
    }

    /// Checks that every fault names a rig and GPU of this fleet, and that
    /// `psu-loss` faults have a wall meter to show on.
    pub fn validate(&self) -> Result<(), FaultError> {
        for fault in &self.faults {
            let value = fault.to_string();
            let known = (1..=self.rigs).any(|index| self.rig_id(index) == fault.rig);
            if !known {
                let hint = format!("rigs are named {} to {}", self.rig_id(1), self.rig_id(self.rigs.max(1)));
                return Err(FaultError::UnknownTarget { value, target: format!("rig {:?}", fault.rig), hint });
            }
            if let Some(gpu) = fault.gpu.filter(|gpu| *gpu >= self.gpus_per_rig) {
                let hint = format!("each rig has gpu0 to gpu{}", self.gpus_per_rig.saturating_sub(1));
                return Err(FaultError::UnknownTarget { value, target: format!("gpu{gpu}"), hint });
            }
            if fault.kind == FaultKind::PsuLoss && !self.wall_meter {
                let hint = "enable the wall meter (--wall-meter) so the loss shows".to_owned();
                return Err(FaultError::UnknownTarget { value, target: "a wall meter".to_owned(), hint });
            }
        }
        Ok(())
    }

    /// Ground truth of the faults for a simulation that starts at `start_ms`.
    pub fn ground_truth(&self, start_ms: TimestampMs) -> Vec<FaultRecord> {
        self.faults.iter().map(|fault| fault.record(self.start_ms.unwrap_or(start_ms))).collect()
    }
}

/// Per-GPU fault state.
#[derive(Debug, Clone, Copy, Default)]
struct GpuFaults {
    drift_from_ms: Option<TimestampMs>,
    stuck_from_ms: Option<TimestampMs>,
    spike_at_ms: Option<TimestampMs>,
    /// Value the stuck sensor repeats, once the fault started.
    frozen_w: Option<f64>,
    spiked: bool,
}

struct Rig {
    id: String,
    gpus: Vec<GpuModel>,
    faults: Vec<GpuFaults>,
    offline_from_ms: Option<TimestampMs>,
    psu_loss_from_ms: Option<TimestampMs>,
    /// Power of the rest of the rig (CPU, board, fans), in W; with a wall meter only.
    overhead_w: f64,
    seq: u64,
}

/// Efficiency of a healthy rig power supply at its usual load (80 PLUS Gold class).
const PSU_EFFICIENCY: f64 = 0.92;

/// One interval of one rig, as [`Fleet::step_frames`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct RigFrame {
    pub rig: String,
    pub seq: u64,
    /// GPU samples as the rig reports them, faults included.
    pub gpus: Vec<GpuSample>,
    /// Wall meter power in W, when the fleet has wall meters.
    pub wall_w: Option<f64>,
}

/// The simulated fleet.
pub struct Fleet {
    rigs: Vec<Rig>,
    prototype: Option<PrototypeMeter>,
    rng: StdRng,
    start_ms: Option<TimestampMs>,
    faults: Vec<Fault>,
    wall_meter: bool,
}

impl Fleet {
    /// Builds a fleet; the same `seed` gives the same fleet and the same values.
    pub fn new(config: FleetConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let rigs = (1..=config.rigs)
            .map(|index| {
                let gpus: Vec<GpuModel> = (0..config.gpus_per_rig).map(|_| GpuModel::new(&mut rng)).collect();
                let overhead_w = if config.wall_meter { rng.random_range(40.0..80.0) } else { 0.0 };
                Rig {
                    id: config.rig_id(index),
                    faults: vec![GpuFaults::default(); gpus.len()],
                    gpus,
                    offline_from_ms: None,
                    psu_loss_from_ms: None,
                    overhead_w,
                    seq: 0,
                }
            })
            .collect();
        let prototype = config.prototype.then(PrototypeMeter::new);
        Self { rigs, prototype, rng, start_ms: config.start_ms, faults: config.faults, wall_meter: config.wall_meter }
    }

    /// Sets the absolute start of each fault once the simulation start is known.
    fn arm_faults(&mut self, start_ms: TimestampMs) {
        for fault in &self.faults {
            let Some(rig) = self.rigs.iter_mut().find(|rig| rig.id == fault.rig) else {
                continue;
            };
            let at = start_ms + fault.offset_ms;
            let gpu = fault.gpu.and_then(|index| rig.faults.get_mut(index));
            match (fault.kind, gpu) {
                (FaultKind::Drift, Some(gpu)) => gpu.drift_from_ms = Some(at),
                (FaultKind::Stuck, Some(gpu)) => gpu.stuck_from_ms = Some(at),
                (FaultKind::Spike, Some(gpu)) => gpu.spike_at_ms = Some(at),
                (FaultKind::Offline, _) => rig.offline_from_ms = Some(at),
                (FaultKind::PsuLoss, _) => rig.psu_loss_from_ms = Some(at),
                _ => {}
            }
        }
    }

    /// Device ids of the rigs.
    pub fn rig_ids(&self) -> Vec<String> {
        self.rigs.iter().map(|rig| rig.id.clone()).collect()
    }

    /// Advances the fleet by `dt_s` seconds and returns one native telemetry
    /// message per rig (a whole rig in one message) and, with the prototype
    /// enabled, its four messages of one cycle.
    pub fn step(&mut self, now_ms: TimestampMs, dt_s: f64) -> Vec<SimMessage> {
        let frames = self.step_frames(now_ms, dt_s);
        let mut messages = Vec::with_capacity(frames.len() + 4);
        for frame in frames {
            let mut readings: Vec<_> = frame
                .gpus
                .iter()
                .enumerate()
                .map(|(index, sample)| {
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
            if let Some(wall_w) = frame.wall_w {
                readings.push(json!({ "channel": "wall", "power_w": round1(wall_w) }));
            }
            let payload = json!({
                "seq": frame.seq,
                "ts": jiff::Timestamp::from_millisecond(now_ms).map(|ts| ts.to_string()).unwrap_or_default(),
                "readings": readings,
            });
            messages.push(SimMessage { topic: format!("smart-energy/v1/{}/telemetry", frame.rig), payload: payload.to_string() });
        }
        if let Some(meter) = &mut self.prototype {
            messages.extend(meter.step(&mut self.rng, dt_s));
        }
        messages
    }

    /// Advances the rigs by `dt_s` seconds and returns their samples, faults
    /// applied, without formatting them; offline rigs return nothing. The
    /// prototype meter does not advance.
    pub fn step_frames(&mut self, now_ms: TimestampMs, dt_s: f64) -> Vec<RigFrame> {
        if self.start_ms.is_none() {
            self.start_ms = Some(now_ms);
        }
        if let Some(start_ms) = self.start_ms.filter(|_| !self.faults.is_empty()) {
            self.arm_faults(start_ms);
            self.faults.clear();
        }
        let mut frames = Vec::with_capacity(self.rigs.len());
        for rig in &mut self.rigs {
            let true_samples: Vec<GpuSample> = rig.gpus.iter_mut().map(|gpu| gpu.step(&mut self.rng, dt_s)).collect();
            if rig.offline_from_ms.is_some_and(|from| now_ms >= from) {
                continue;
            }
            rig.seq += 1;
            let mut drawn_w = 0.0;
            let mut reported = Vec::with_capacity(true_samples.len());
            for (sample, faults) in true_samples.into_iter().zip(rig.faults.iter_mut()) {
                let mut sample = sample;
                if let Some(from) = faults.drift_from_ms.filter(|from| now_ms >= *from) {
                    let ramp = ((now_ms - from) as f64 / DRIFT_RAMP_MS as f64).min(1.0);
                    sample.power_w *= 1.0 + DRIFT_SHARE * ramp;
                }
                drawn_w += sample.power_w;
                if faults.stuck_from_ms.is_some_and(|from| now_ms >= from) {
                    sample.power_w = *faults.frozen_w.get_or_insert(round1(sample.power_w));
                }
                if faults.spike_at_ms.is_some_and(|at| now_ms >= at) && !faults.spiked {
                    faults.spiked = true;
                    sample.power_w *= SPIKE_FACTOR;
                }
                reported.push(sample);
            }
            let wall_w = self.wall_meter.then(|| {
                let loss_pp = rig
                    .psu_loss_from_ms
                    .filter(|from| now_ms >= *from)
                    .map_or(0.0, |from| ((now_ms - from) as f64 / 60_000.0 * PSU_LOSS_PP_PER_MINUTE).min(PSU_LOSS_MAX_PP));
                let efficiency = PSU_EFFICIENCY - loss_pp / 100.0;
                (drawn_w + rig.overhead_w) / efficiency * (1.0 + self.rng.random_range(-0.003..0.003))
            });
            frames.push(RigFrame { rig: rig.id.clone(), seq: rig.seq, gpus: reported, wall_w });
        }
        frames
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

    fn faulty_fleet(faults: &[&str]) -> Fleet {
        let faults = faults.iter().map(|text| text.parse().unwrap()).collect();
        let config = FleetConfig { rigs: 2, gpus_per_rig: 4, prototype: false, wall_meter: true, faults, start_ms: Some(0), ..FleetConfig::default() };
        config.validate().unwrap();
        Fleet::new(config, 11)
    }

    #[test]
    fn wall_meter_reads_more_than_gpus() {
        let mut fleet = faulty_fleet(&[]);
        for step in 0..50 {
            for frame in fleet.step_frames(step * 30_000, 30.0) {
                let gpus: f64 = frame.gpus.iter().map(|g| g.power_w).sum();
                let wall = frame.wall_w.unwrap();
                assert!(wall > gpus + 40.0, "wall {wall}, GPUs {gpus}");
                assert!(wall < (gpus + 80.0) / 0.9, "wall {wall}, GPUs {gpus}");
            }
        }
        let messages = fleet.step(50 * 30_000, 30.0);
        assert!(messages[0].payload.contains(r#""channel":"wall""#), "{}", messages[0].payload);
    }

    #[test]
    fn stuck_spike_and_offline_faults_apply() {
        let mut fleet = faulty_fleet(&["stuck:rig-01/gpu1@5m", "spike:rig-01/gpu2@5m", "offline:rig-02@10m"]);
        let mut stuck = Vec::new();
        let mut rig_02_frames = 0;
        let mut spikes = 0;
        for step in 0..40 {
            let now = step * 30_000;
            for frame in fleet.step_frames(now, 30.0) {
                if frame.rig == "rig-02" {
                    rig_02_frames += 1;
                    continue;
                }
                if now >= 300_000 {
                    stuck.push(frame.gpus[1].power_w);
                }
                if frame.gpus[2].power_w > frame.gpus[2].power_limit_w {
                    spikes += 1;
                }
            }
        }
        assert!(stuck.windows(2).all(|pair| pair[0] == pair[1]), "{stuck:?}");
        assert_eq!(stuck.len(), 30);
        // Offline from 10 min: steps at 0, 0.5, ..., 9.5 min.
        assert_eq!(rig_02_frames, 20);
        assert!(spikes <= 1, "{spikes}");
    }

    #[test]
    fn drift_raises_power_by_fifteen_percent() {
        let healthy = FleetConfig { rigs: 1, gpus_per_rig: 2, prototype: false, start_ms: Some(0), ..FleetConfig::default() };
        let drifting = FleetConfig { faults: vec!["drift:rig-01/gpu0@0".parse().unwrap()], ..healthy.clone() };
        let mut healthy = Fleet::new(healthy, 5);
        let mut drifting = Fleet::new(drifting, 5);
        for step in 0..40 {
            let now = step * 30_000;
            let base = healthy.step_frames(now, 30.0)[0].gpus[0].power_w;
            let drifted = drifting.step_frames(now, 30.0)[0].gpus[0].power_w;
            if now >= DRIFT_RAMP_MS {
                assert!((drifted / base - 1.15).abs() < 1e-9, "{drifted} vs {base}");
            }
        }
    }

    #[test]
    fn psu_loss_raises_wall_power() {
        let mut healthy = faulty_fleet(&[]);
        let mut lossy = faulty_fleet(&["psu-loss:rig-01@0"]);
        let mut ratios = Vec::new();
        for step in 0..60 {
            let now = step * 30_000;
            let a = healthy.step_frames(now, 30.0)[0].wall_w.unwrap();
            let b = lossy.step_frames(now, 30.0)[0].wall_w.unwrap();
            ratios.push(b / a);
        }
        // After 30 min the supply lost the maximum 12 points: 0.92 / 0.80 = 1.15, within the meter noise.
        let last = ratios[ratios.len() - 1];
        assert!((last - 1.15).abs() < 0.01, "{last}");
    }

    #[test]
    fn faults_must_name_fleet_devices() {
        let config = FleetConfig { rigs: 2, gpus_per_rig: 4, faults: vec!["drift:rig-07/gpu0@1m".parse().unwrap()], ..FleetConfig::default() };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("rig \"rig-07\", which the simulated fleet does not have; rigs are named rig-01 to rig-02"), "{error}");
        let config = FleetConfig { faults: vec!["drift:rig-01/gpu4@1m".parse().unwrap()], ..config };
        assert!(config.validate().unwrap_err().to_string().contains("gpu0 to gpu3"));
        let config = FleetConfig { faults: vec!["psu-loss:rig-01@1m".parse().unwrap()], ..config };
        assert!(config.validate().unwrap_err().to_string().contains("--wall-meter"));
    }

    #[test]
    fn same_seed_gives_same_values() {
        let config = FleetConfig { rigs: 1, gpus_per_rig: 2, ..FleetConfig::default() };
        let mut first = Fleet::new(config.clone(), 42);
        let mut second = Fleet::new(config, 42);
        assert_eq!(first.step(0, 5.0), second.step(0, 5.0));
    }
}
