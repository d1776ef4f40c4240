//! The prototype ESP32 meter: four plain-text topics per cycle, values with
//! a unit suffix, and the uptime as its only clock.

use rand::Rng;

use crate::SimMessage;

/// State of the simulated prototype meter.
#[derive(Debug, Clone)]
pub struct PrototypeMeter {
    uptime_s: f64,
    energy_kwh: f64,
}

impl Default for PrototypeMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl PrototypeMeter {
    pub fn new() -> Self {
        Self { uptime_s: 0.0, energy_kwh: 0.0 }
    }

    /// Advances by `dt_s` seconds and returns one cycle of four messages.
    pub fn step(&mut self, rng: &mut impl Rng, dt_s: f64) -> Vec<SimMessage> {
        self.uptime_s += dt_s;
        let voltage = rng.random_range(225.0..235.0);
        let current: f64 = rng.random_range(0.1..1.8);
        // Like the firmware: energy from apparent power V x I.
        self.energy_kwh += voltage * current * dt_s / 3_600_000.0;
        let uptime = self.uptime_s as u64;
        let clock = format!(
            "{} Days, {:02}:{:02}:{:02}",
            uptime / 86_400,
            uptime % 86_400 / 3_600,
            uptime % 3_600 / 60,
            uptime % 60
        );
        vec![
            SimMessage { topic: "Smart_Energie/data/Current".into(), payload: format!("{current:.2}A") },
            SimMessage { topic: "Smart_Energie/data/Voltage".into(), payload: format!("{voltage:.2}V") },
            SimMessage { topic: "Smart_Energie/data/kWh".into(), payload: format!("{:.5}kWh", self.energy_kwh) },
            SimMessage { topic: "Smart_Energie/temps".into(), payload: clock },
        ]
    }
}
