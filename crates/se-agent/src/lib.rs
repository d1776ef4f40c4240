//! The Smart Energy edge agent, run on each mining rig by `smart-energy agent`.
//!
//! Every interval the agent samples the rig's GPUs ([`sources::GpuSource`]:
//! NVML, simulated or fake), the CPU package power (Linux RAPL) and the
//! miner's per-GPU hashrate (T-Rex API). It writes one telemetry message per
//! rig to an on-disk buffer ([`buffer::DiskBuffer`]) and publishes it with
//! QoS 1 on `smart-energy/v1/<device>/telemetry`. A message leaves the buffer
//! only after its PUBACK, so a broker outage delays readings but loses none
//! until the buffer's byte bound is reached. The agent also carries out
//! commands ([`protocol`]) received on `smart-energy/v1/<device>/cmd`.
//!
//! ```no_run
//! use se_agent::{Agent, AgentConfig, AgentSources};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example() -> Result<(), se_agent::AgentError> {
//! let device = se_core::DeviceId::parse("rig-01").unwrap();
//! let config = AgentConfig::new(device, "127.0.0.1", 1883, std::path::Path::new("/var/lib/smart-energy-agent"));
//! let sources = AgentSources::from_config(&config);
//! Agent::new(config, sources)?.run(CancellationToken::new()).await
//! # }
//! ```

pub mod buffer;
pub mod commands;
pub mod config;
mod error;
pub mod protocol;
mod runtime;
pub mod sources;
pub mod telemetry;

pub use config::{AgentConfig, GpuMode, MinerSettings, MqttSettings, Overrides};
pub use error::AgentError;
pub use runtime::{Agent, AgentSources, AgentStatus};
