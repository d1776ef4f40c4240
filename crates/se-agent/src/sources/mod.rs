//! Sources of readings: GPUs (NVML, simulated or fake), CPU package
//! power (Linux RAPL) and the miner's hashrate (T-Rex HTTP API).

pub mod fake;
pub mod miner;
pub mod nvml;
pub mod rapl;
pub mod simulated;

use crate::AgentError;

/// Power limit range of one GPU, in watts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLimits {
    /// Limit in force now.
    pub current_w: f64,
    /// Lowest limit the card accepts.
    pub min_w: f64,
    /// Highest limit the card accepts.
    pub max_w: f64,
    /// Limit the card has after a reset.
    pub default_w: f64,
}

/// One sample of one GPU. A field is `None` when the card or driver does not report it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuReading {
    /// Index as the driver numbers the GPUs (NVML order, by PCI bus).
    pub index: u32,
    pub uuid: Option<String>,
    pub name: Option<String>,
    /// PCI bus number, used to match the miner's per-GPU statistics.
    pub pci_bus: Option<u32>,
    /// Power draw in watts.
    pub power_w: Option<f64>,
    /// Total energy counter in watt-hours since the driver loaded (NVML reports mJ).
    pub energy_wh: Option<f64>,
    /// GPU utilization in percent.
    pub utilization_pct: Option<f64>,
    /// Core temperature in degrees Celsius.
    pub temperature_c: Option<f64>,
    /// Speed of the first fan in percent.
    pub fan_speed_pct: Option<f64>,
    pub limits: Option<PowerLimits>,
    /// Graphics clock in MHz.
    pub clock_mhz: Option<f64>,
    /// Memory clock in MHz.
    pub memory_clock_mhz: Option<f64>,
    /// Memory in use in MiB.
    pub memory_used_mib: Option<f64>,
}

/// A set of GPUs that can be measured and whose power limit can be set.
///
/// Calls block (NVML talks to the driver), so the agent runs them on a
/// blocking thread.
pub trait GpuSource: Send {
    /// Short name for logs, such as `nvml`.
    fn kind(&self) -> &'static str;

    /// Number of GPUs; valid indexes are `0..count`.
    fn count(&mut self) -> Result<u32, AgentError>;

    /// Samples every GPU. A GPU or a field that cannot be read is left out.
    fn sample(&mut self) -> Vec<GpuReading>;

    /// Power limit range of GPU `index`.
    fn power_limits(&mut self, index: u32) -> Result<PowerLimits, AgentError>;

    /// Sets the power limit of GPU `index` to `watts`, which the caller has
    /// already clamped to [`GpuSource::power_limits`].
    fn set_power_limit(&mut self, index: u32, watts: f64) -> Result<(), AgentError>;
}
