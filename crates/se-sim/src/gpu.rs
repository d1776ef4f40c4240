//! A GPU whose power follows its utilization.
//!
//! Calibrated on an 8-GPU nvidia-smi trace sampled every 100 ms during
//! training: about 70 W at idle, up to about 300 W under load, with swings of
//! tens of watts between consecutive samples while busy.

use rand::Rng;

/// Power at 0 % utilization, in watts.
const IDLE_W: f64 = 70.0;
/// Power at 100 % utilization with the default limit, in watts.
const FULL_W: f64 = 300.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSample {
    pub power_w: f64,
    pub utilization_pct: f64,
    pub temperature_c: f64,
    pub fan_speed_pct: f64,
    pub power_limit_w: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Busy,
}

/// State of one simulated GPU.
#[derive(Debug, Clone)]
pub struct GpuModel {
    phase: Phase,
    utilization_pct: f64,
    temperature_c: f64,
    power_limit_w: f64,
    /// Per-card offset: no two cards draw exactly the same.
    efficiency: f64,
}

impl GpuModel {
    pub fn new(rng: &mut impl Rng) -> Self {
        Self {
            phase: if rng.random_bool(0.8) { Phase::Busy } else { Phase::Idle },
            utilization_pct: 0.0,
            temperature_c: 35.0,
            power_limit_w: FULL_W,
            efficiency: rng.random_range(0.95..1.05),
        }
    }

    /// Advances by `dt_s` seconds and returns the new sample.
    pub fn step(&mut self, rng: &mut impl Rng, dt_s: f64) -> GpuSample {
        // Phases last minutes: switch with a probability scaled by the step.
        let switch = (dt_s / 300.0).min(1.0);
        if rng.random_bool(switch) {
            self.phase = match self.phase {
                Phase::Idle => Phase::Busy,
                Phase::Busy => Phase::Idle,
            };
        }
        let target = match self.phase {
            Phase::Idle => rng.random_range(0.0..3.0),
            Phase::Busy if rng.random_bool(0.1) => rng.random_range(40.0..80.0),
            Phase::Busy => rng.random_range(92.0..100.0),
        };
        self.utilization_pct = (0.3 * self.utilization_pct + 0.7 * target).clamp(0.0, 100.0);

        let load = self.utilization_pct / 100.0;
        let swing = if self.phase == Phase::Busy { rng.random_range(-25.0..25.0) } else { rng.random_range(-2.0..2.0) };
        let demand_w = ((IDLE_W + (FULL_W - IDLE_W) * load) * self.efficiency + swing).max(IDLE_W * 0.9);
        // A card at its limit regulates a few watts below it rather than reading the limit exactly.
        let power_w = if demand_w > self.power_limit_w { self.power_limit_w - rng.random_range(0.0..4.0) } else { demand_w };

        // Temperature approaches an equilibrium set by power, with a time constant of about a minute.
        let equilibrium = 30.0 + power_w * 0.16;
        let alpha = (dt_s / 60.0).min(1.0);
        self.temperature_c += (equilibrium - self.temperature_c) * alpha;
        let fan_speed_pct = ((self.temperature_c - 30.0) * 1.6).clamp(20.0, 100.0);

        GpuSample {
            power_w,
            utilization_pct: self.utilization_pct,
            temperature_c: self.temperature_c,
            fan_speed_pct,
            power_limit_w: self.power_limit_w,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn power_stays_between_idle_and_limit() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut gpu = GpuModel::new(&mut rng);
        for _ in 0..10_000 {
            let sample = gpu.step(&mut rng, 1.0);
            assert!(sample.power_w >= 60.0, "{}", sample.power_w);
            assert!(sample.power_w <= 300.0, "{}", sample.power_w);
            assert!((0.0..=100.0).contains(&sample.utilization_pct));
        }
    }

    #[test]
    fn busy_gpus_draw_more_than_idle_ones() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut busy = GpuModel::new(&mut rng);
        busy.phase = Phase::Busy;
        let mut idle = busy.clone();
        idle.phase = Phase::Idle;
        // A step of 0 s never switches phase.
        let busy_mean: f64 = (0..200).map(|_| busy.step(&mut rng, 0.0).power_w).sum::<f64>() / 200.0;
        let idle_mean: f64 = (0..200).map(|_| idle.step(&mut rng, 0.0).power_w).sum::<f64>() / 200.0;
        assert!(busy_mean > 230.0, "busy mean {busy_mean}");
        assert!(idle_mean < 85.0, "idle mean {idle_mean}");
    }
}
