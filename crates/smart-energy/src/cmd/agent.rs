//! `smart-energy agent`: the edge agent of a mining rig (see docs/agent.md).

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use se_agent::config::{self, ParsedFile};
use se_agent::{Agent, AgentError, AgentSources, Overrides};
use se_core::Lang;

use super::parse_duration;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Broker to publish to, as mqtt://HOST:PORT or mqtt://USER:PASSWORD@HOST:PORT.
    #[arg(long)]
    pub broker: Option<String>,
    /// Device id of this rig: 1 to 64 letters, digits, '-', '_', '.' or ':'.
    #[arg(long)]
    pub device: Option<String>,
    /// Site name added to every message.
    #[arg(long)]
    pub site: Option<String>,
    /// Time between two messages, such as 5s or 500ms [default: 5s].
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Configuration file (TOML); the flags given here override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the store-and-forward buffer [default: smart-energy-agent-data].
    #[arg(long, value_name = "DIR")]
    pub buffer_dir: Option<PathBuf>,
    /// Maximum bytes of unsent messages kept on disk; the oldest are dropped beyond it [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub buffer_max_bytes: Option<u64>,
    /// Simulate GPUS GPUs instead of reading NVML (--simulate alone: 8).
    #[arg(long, value_name = "GPUS", num_args = 0..=1, require_equals = true, default_missing_value = "8")]
    pub simulate: Option<u32>,
    /// URL of the T-Rex miner API, such as http://127.0.0.1:4067/summary, for the hashrate.
    #[arg(long, value_name = "URL")]
    pub miner_api: Option<String>,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let lang = super::model::operator_lang();
    run_agent(args, lang).map_err(|error| match lang {
        Lang::Fr => anyhow::anyhow!(error.message_fr()),
        Lang::En => anyhow::anyhow!(error),
    })
}

fn run_agent(args: AgentArgs, lang: Lang) -> Result<(), AgentError> {
    let flags = match lang {
        Lang::En => "command-line flags",
        Lang::Fr => "options de la ligne de commande",
    };
    let (parsed, origin) = match &args.config {
        Some(path) => (config::load_file(path)?, format!("{} + {flags}", path.display())),
        None => (ParsedFile::default(), flags.to_owned()),
    };
    let overrides = Overrides {
        broker: args.broker,
        device: args.device,
        site: args.site,
        interval: args.interval,
        buffer_dir: args.buffer_dir,
        buffer_max_bytes: args.buffer_max_bytes,
        simulate: args.simulate,
        miner_api: args.miner_api,
    };
    let config = config::resolve(parsed, overrides, &origin)?;

    let runtime = tokio::runtime::Runtime::new().map_err(|error| AgentError::Task(format!("cannot start the async runtime: {error}")))?;
    runtime.block_on(async move {
        let sources = AgentSources::from_config(&config);
        let agent = Agent::new(config, sources)?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            super::wait_for_signal().await;
            stop.cancel();
        });
        agent.run(shutdown).await
    })
}
