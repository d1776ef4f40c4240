//! A deterministic GPU source for tests: fixed readings, and power limits that
//! the test can inspect through a [`FakeGpusHandle`].

use std::sync::{Arc, Mutex, PoisonError};

use super::{GpuReading, GpuSource, PowerLimits};
use crate::AgentError;

#[derive(Debug)]
struct Cards {
    limits: Vec<PowerLimits>,
    /// Number of `set_power_limit` calls.
    set_calls: usize,
}

/// GPUs with fixed readings: GPU `i` draws `150 + i` W, at 90 % utilization.
#[derive(Debug, Clone)]
pub struct FakeGpus {
    cards: Arc<Mutex<Cards>>,
}

/// Read access to the state of a [`FakeGpus`] from a test.
#[derive(Debug, Clone)]
pub struct FakeGpusHandle {
    cards: Arc<Mutex<Cards>>,
}

impl FakeGpus {
    /// Creates `count` cards that all have the power limit range `limits`.
    pub fn new(count: u32, limits: PowerLimits) -> (FakeGpus, FakeGpusHandle) {
        let cards = Arc::new(Mutex::new(Cards { limits: vec![limits; count as usize], set_calls: 0 }));
        (FakeGpus { cards: cards.clone() }, FakeGpusHandle { cards })
    }

    fn with_cards<T>(&self, action: impl FnOnce(&mut Cards) -> T) -> T {
        action(&mut self.cards.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl FakeGpusHandle {
    /// Power limit in force on GPU `index`, in watts.
    pub fn current_limit(&self, index: u32) -> Option<f64> {
        let cards = self.cards.lock().unwrap_or_else(PoisonError::into_inner);
        cards.limits.get(index as usize).map(|limits| limits.current_w)
    }

    /// Number of power limit changes made so far.
    pub fn set_calls(&self) -> usize {
        self.cards.lock().unwrap_or_else(PoisonError::into_inner).set_calls
    }
}

impl GpuSource for FakeGpus {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn count(&mut self) -> Result<u32, AgentError> {
        Ok(self.with_cards(|cards| cards.limits.len() as u32))
    }

    fn sample(&mut self) -> Vec<GpuReading> {
        self.with_cards(|cards| {
            cards
                .limits
                .iter()
                .enumerate()
                .map(|(index, limits)| GpuReading {
                    index: index as u32,
                    uuid: Some(format!("GPU-fake-{index}")),
                    name: Some("Fake GPU".to_owned()),
                    pci_bus: Some(index as u32 + 1),
                    power_w: Some((150.0 + index as f64).min(limits.current_w)),
                    energy_wh: None,
                    utilization_pct: Some(90.0),
                    temperature_c: Some(60.0),
                    fan_speed_pct: Some(50.0),
                    limits: Some(*limits),
                    clock_mhz: Some(1500.0),
                    memory_clock_mhz: None,
                    memory_used_mib: None,
                })
                .collect()
        })
    }

    fn power_limits(&mut self, index: u32) -> Result<PowerLimits, AgentError> {
        self.with_cards(|cards| {
            let count = cards.limits.len() as u32;
            cards.limits.get(index as usize).copied().ok_or(AgentError::UnknownGpu { index, count })
        })
    }

    fn set_power_limit(&mut self, index: u32, watts: f64) -> Result<(), AgentError> {
        self.with_cards(|cards| {
            let count = cards.limits.len() as u32;
            let limits = cards.limits.get_mut(index as usize).ok_or(AgentError::UnknownGpu { index, count })?;
            if !(limits.min_w..=limits.max_w).contains(&watts) {
                let reason = format!("{watts} W is outside {} to {} W", limits.min_w, limits.max_w);
                return Err(AgentError::Gpu { index, action: "set the power limit", reason });
            }
            limits.current_w = watts;
            cards.set_calls += 1;
            Ok(())
        })
    }
}
