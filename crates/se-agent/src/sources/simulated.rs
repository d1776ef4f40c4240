//! Simulated GPUs for `--simulate`, driven by the power model of `se-sim`
//! (about 70 W idle to 300 W busy, with fast swings under load).

use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use se_sim::GpuModel;

use super::{GpuReading, GpuSource, PowerLimits};
use crate::AgentError;

/// Power limit range of a simulated card, in watts. The model never draws
/// more than 300 W, so a higher limit changes nothing.
const SIMULATED_LIMITS: PowerLimits = PowerLimits { current_w: 300.0, min_w: 100.0, max_w: 350.0, default_w: 300.0 };

/// Simulated GPUs. A lowered power limit caps the simulated draw.
pub struct SimulatedGpus {
    models: Vec<GpuModel>,
    limits: Vec<f64>,
    energy_wh: Vec<f64>,
    rng: StdRng,
    last_sample: Option<Instant>,
    /// Seconds assumed before the first sample.
    first_step_s: f64,
    uuid_prefix: String,
}

impl SimulatedGpus {
    /// Creates `count` GPUs. The same `seed` gives the same cards; `first_step_s`
    /// is the time step of the first sample (the sampling interval).
    pub fn new(count: u32, seed: u64, first_step_s: f64, device: &str) -> SimulatedGpus {
        let mut rng = StdRng::seed_from_u64(seed);
        let models = (0..count).map(|_| GpuModel::new(&mut rng)).collect();
        SimulatedGpus {
            models,
            limits: vec![SIMULATED_LIMITS.default_w; count as usize],
            energy_wh: vec![0.0; count as usize],
            rng,
            last_sample: None,
            first_step_s,
            uuid_prefix: format!("GPU-simulated-{device}"),
        }
    }

    fn check_index(&self, index: u32) -> Result<usize, AgentError> {
        let count = self.models.len() as u32;
        if index < count {
            Ok(index as usize)
        } else {
            Err(AgentError::UnknownGpu { index, count })
        }
    }
}

impl GpuSource for SimulatedGpus {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    fn count(&mut self) -> Result<u32, AgentError> {
        Ok(self.models.len() as u32)
    }

    fn sample(&mut self) -> Vec<GpuReading> {
        let now = Instant::now();
        let step_s = self.last_sample.map_or(self.first_step_s, |last| now.duration_since(last).as_secs_f64());
        self.last_sample = Some(now);
        let mut readings = Vec::with_capacity(self.models.len());
        for (index, model) in self.models.iter_mut().enumerate() {
            let sample = model.step(&mut self.rng, step_s);
            let limit = self.limits[index];
            let power_w = sample.power_w.min(limit);
            self.energy_wh[index] += power_w * step_s / 3600.0;
            readings.push(GpuReading {
                index: index as u32,
                uuid: Some(format!("{}-{index}", self.uuid_prefix)),
                name: Some("Simulated GPU".to_owned()),
                pci_bus: Some(index as u32 + 1),
                power_w: Some(power_w),
                energy_wh: Some(self.energy_wh[index]),
                utilization_pct: Some(sample.utilization_pct),
                temperature_c: Some(sample.temperature_c),
                fan_speed_pct: Some(sample.fan_speed_pct),
                limits: Some(PowerLimits { current_w: limit, ..SIMULATED_LIMITS }),
                clock_mhz: None,
                memory_clock_mhz: None,
                memory_used_mib: None,
            });
        }
        readings
    }

    fn power_limits(&mut self, index: u32) -> Result<PowerLimits, AgentError> {
        let position = self.check_index(index)?;
        Ok(PowerLimits { current_w: self.limits[position], ..SIMULATED_LIMITS })
    }

    fn set_power_limit(&mut self, index: u32, watts: f64) -> Result<(), AgentError> {
        let position = self.check_index(index)?;
        if !(SIMULATED_LIMITS.min_w..=SIMULATED_LIMITS.max_w).contains(&watts) {
            let reason = format!("{watts} W is outside {} to {} W", SIMULATED_LIMITS.min_w, SIMULATED_LIMITS.max_w);
            return Err(AgentError::Gpu { index, action: "set the power limit", reason });
        }
        self.limits[position] = watts;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::unknown_gpu_text;

    #[test]
    fn lowered_limit_caps_power() {
        let mut gpus = SimulatedGpus::new(4, 3, 1.0, "rig-01");
        for index in 0..4 {
            gpus.set_power_limit(index, 120.0).unwrap();
        }
        for _ in 0..50 {
            for reading in gpus.sample() {
                assert!(reading.power_w.unwrap() <= 120.0, "{reading:?}");
            }
        }
    }

    #[test]
    fn energy_counter_never_decreases() {
        let mut gpus = SimulatedGpus::new(1, 9, 5.0, "rig-01");
        let mut previous = 0.0;
        for _ in 0..10 {
            let energy = gpus.sample()[0].energy_wh.unwrap();
            assert!(energy >= previous, "{energy} < {previous}");
            previous = energy;
        }
    }

    #[test]
    fn unknown_index_names_range() {
        let mut gpus = SimulatedGpus::new(2, 1, 1.0, "rig-01");
        let error = gpus.power_limits(5).unwrap_err();
        assert_eq!(error.to_string(), unknown_gpu_text(5, 2));
    }
}
