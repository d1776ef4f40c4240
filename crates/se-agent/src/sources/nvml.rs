//! NVIDIA GPUs through NVML, loaded at run time from the driver's `libnvidia-ml`.

use std::collections::HashSet;
use std::ffi::OsStr;

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::{GpuReading, GpuSource, PowerLimits};
use crate::AgentError;

/// Library names tried in order. Driver packages install the versioned name;
/// the unversioned one often comes only with development packages.
const LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

/// GPUs read through NVML.
pub struct NvmlGpus {
    nvml: Nvml,
    /// (GPU index, field) pairs already reported as unreadable, to log each once.
    warned: HashSet<(u32, &'static str)>,
}

impl NvmlGpus {
    /// Loads NVML. Without an NVIDIA driver this returns [`AgentError::NvmlUnavailable`].
    pub fn init() -> Result<NvmlGpus, AgentError> {
        let mut first_error = None;
        for name in LIBRARY_NAMES {
            match Nvml::builder().lib_path(OsStr::new(name)).init() {
                Ok(nvml) => return Ok(NvmlGpus { nvml, warned: HashSet::new() }),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let reason = first_error.map_or_else(|| "initialisation failed".to_owned(), |error| describe_init_error(&error));
        Err(AgentError::NvmlUnavailable { reason })
    }

    fn device(&self, index: u32) -> Result<Device<'_>, AgentError> {
        self.nvml.device_by_index(index).map_err(|error| gpu_error(index, "open the device", error))
    }

    /// Returns the value, or `None` after logging the first failure of this field.
    fn field<T>(warned: &mut HashSet<(u32, &'static str)>, index: u32, field: &'static str, result: Result<T, NvmlError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(NvmlError::NotSupported) => None,
            Err(error) => {
                if warned.insert((index, field)) {
                    tracing::warn!(gpu = index, field, %error, "cannot read a GPU value; it is left out of the telemetry");
                }
                None
            }
        }
    }
}

fn describe_init_error(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(_) => format!("no NVIDIA driver: neither {} nor {} can be loaded", LIBRARY_NAMES[0], LIBRARY_NAMES[1]),
        NvmlError::DriverNotLoaded => "the NVIDIA kernel driver is not loaded".to_owned(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".to_owned(),
        other => format!("initialisation failed: {other}"),
    }
}

fn gpu_error(index: u32, action: &'static str, error: NvmlError) -> AgentError {
    let reason = match error {
        NvmlError::NoPermission => "permission denied by the driver; run the agent as root to change power limits".to_owned(),
        NvmlError::NotSupported => "not supported by this card".to_owned(),
        other => other.to_string(),
    };
    AgentError::Gpu { index, action, reason }
}

fn milliwatts_to_watts(milliwatts: u32) -> f64 {
    f64::from(milliwatts) / 1000.0
}

impl GpuSource for NvmlGpus {
    fn kind(&self) -> &'static str {
        "nvml"
    }

    fn count(&mut self) -> Result<u32, AgentError> {
        self.nvml
            .device_count()
            .map_err(|error| AgentError::Gpu { index: 0, action: "count the GPUs", reason: error.to_string() })
    }

    fn sample(&mut self) -> Vec<GpuReading> {
        let count = match self.nvml.device_count() {
            Ok(count) => count,
            Err(error) => {
                if self.warned.insert((u32::MAX, "device_count")) {
                    tracing::warn!(%error, "NVML cannot count the GPUs; GPU readings are left out");
                }
                return Vec::new();
            }
        };
        let mut readings = Vec::with_capacity(count as usize);
        for index in 0..count {
            let device = match self.nvml.device_by_index(index) {
                Ok(device) => device,
                Err(error) => {
                    if self.warned.insert((index, "device")) {
                        tracing::warn!(gpu = index, %error, "cannot open a GPU; its readings are left out");
                    }
                    continue;
                }
            };
            let warned = &mut self.warned;
            let limits = match (
                Self::field(warned, index, "power_limit", device.power_management_limit()),
                Self::field(warned, index, "power_limit_constraints", device.power_management_limit_constraints()),
                Self::field(warned, index, "power_limit_default", device.power_management_limit_default()),
            ) {
                (Some(current), Some(range), Some(default)) => Some(PowerLimits {
                    current_w: milliwatts_to_watts(current),
                    min_w: milliwatts_to_watts(range.min_limit),
                    max_w: milliwatts_to_watts(range.max_limit),
                    default_w: milliwatts_to_watts(default),
                }),
                _ => None,
            };
            readings.push(GpuReading {
                index,
                uuid: Self::field(warned, index, "uuid", device.uuid()),
                name: Self::field(warned, index, "name", device.name()),
                pci_bus: Self::field(warned, index, "pci_info", device.pci_info()).map(|info| info.bus),
                power_w: Self::field(warned, index, "power_usage", device.power_usage()).map(milliwatts_to_watts),
                // Millijoules to watt-hours.
                energy_wh: Self::field(warned, index, "total_energy", device.total_energy_consumption())
                    .map(|millijoules| millijoules as f64 / 3_600_000.0),
                utilization_pct: Self::field(warned, index, "utilization", device.utilization_rates()).map(|rates| f64::from(rates.gpu)),
                temperature_c: Self::field(warned, index, "temperature", device.temperature(TemperatureSensor::Gpu)).map(f64::from),
                fan_speed_pct: Self::field(warned, index, "fan_speed", device.fan_speed(0)).map(f64::from),
                limits,
                clock_mhz: Self::field(warned, index, "graphics_clock", device.clock_info(Clock::Graphics)).map(f64::from),
                memory_clock_mhz: Self::field(warned, index, "memory_clock", device.clock_info(Clock::Memory)).map(f64::from),
                memory_used_mib: Self::field(warned, index, "memory_info", device.memory_info())
                    .map(|memory| memory.used as f64 / (1024.0 * 1024.0)),
            });
        }
        readings
    }

    fn power_limits(&mut self, index: u32) -> Result<PowerLimits, AgentError> {
        let device = self.device(index)?;
        let current = device.power_management_limit().map_err(|error| gpu_error(index, "read the power limit", error))?;
        let range = device
            .power_management_limit_constraints()
            .map_err(|error| gpu_error(index, "read the power limit range", error))?;
        let default = device
            .power_management_limit_default()
            .map_err(|error| gpu_error(index, "read the default power limit", error))?;
        Ok(PowerLimits {
            current_w: milliwatts_to_watts(current),
            min_w: milliwatts_to_watts(range.min_limit),
            max_w: milliwatts_to_watts(range.max_limit),
            default_w: milliwatts_to_watts(default),
        })
    }

    fn set_power_limit(&mut self, index: u32, watts: f64) -> Result<(), AgentError> {
        let mut device = self.device(index)?;
        let milliwatts = (watts * 1000.0).round().clamp(0.0, f64::from(u32::MAX)) as u32;
        device
            .set_power_management_limit(milliwatts)
            .map_err(|error| gpu_error(index, "set the power limit", error))
    }
}
