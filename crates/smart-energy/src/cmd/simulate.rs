use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use se_ingest::ExternalSourceConfig;
use se_core::now_ms;
use se_sim::{run_simulator, Fault, FleetConfig, SimulatorConfig};

use super::parse_duration;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Broker to publish to, as mqtt://HOST:PORT.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Number of mining rigs.
    #[arg(long, default_value_t = 3)]
    pub rigs: usize,
    /// GPUs per rig.
    #[arg(long, default_value_t = 8)]
    pub gpus: usize,
    /// Time between two messages of a rig, such as 5s or 500ms.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Do not play the prototype ESP32 on the Smart_Energie/... topics.
    #[arg(long)]
    pub no_prototype: bool,
    /// Stop after this many intervals (default: run until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Seed of the random model; the same seed replays the same values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Device id prefix of the rigs.
    #[arg(long, default_value = "rig")]
    pub rig_prefix: String,
    /// Add a wall meter to each rig (channel `wall`, power in W).
    #[arg(long)]
    pub wall_meter: bool,
    /// Inject a fault, as KIND:DEVICE[/gpuN]@OFFSET with OFFSET after the start
    /// (ms, s, m or h): drift (+15 % power), stuck (power sensor repeats its
    /// value) or spike (one reading x2.5) on a GPU, such as drift:rig-01/gpu2@30m;
    /// offline or psu-loss (needs --wall-meter) on a rig, such as offline:rig-03@1h.
    /// Repeat the option for several faults.
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<Fault>,
    /// Write the injected faults (kind, device, channel, start time in ms) to
    /// this JSON file when the simulation starts.
    #[arg(long, value_name = "FILE")]
    pub truth_out: Option<PathBuf>,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let start_ms = now_ms();
    let fleet = FleetConfig {
        rigs: args.rigs,
        gpus_per_rig: args.gpus,
        rig_prefix: args.rig_prefix,
        prototype: !args.no_prototype,
        wall_meter: args.wall_meter,
        faults: args.faults,
        start_ms: Some(start_ms),
    };
    fleet.validate()?;
    if let Some(path) = &args.truth_out {
        let truth = serde_json::to_string_pretty(&fleet.ground_truth(start_ms)).context("failed to encode the fault list")?;
        std::fs::write(path, truth + "\n").with_context(|| format!("failed to write the fault list to {}; check that its directory exists and is writable", path.display()))?;
    }

    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        let endpoint = ExternalSourceConfig::from_url(&args.broker, "smart-energy-simulator", Vec::new())?;
        let config = SimulatorConfig {
            host: endpoint.host,
            port: endpoint.port,
            client_id: format!("smart-energy-simulator-{}", std::process::id()),
            interval: args.interval,
            fleet,
            seed: args.seed,
            steps: args.count,
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            super::wait_for_signal().await;
            stop.cancel();
        });
        let published = run_simulator(config, shutdown).await?;
        eprintln!("published {published} intervals");
        Ok(())
    })
}
