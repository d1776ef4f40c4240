//! `smart-energy`: measure, store, show and forecast the electricity use of
//! GPU mining facilities and metered buildings, from one binary.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "smart-energy", version, about = "Measure, store, show and forecast electricity use of mining farms and buildings")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: MQTT broker, ingestion, storage, HTTP API and web UI.
    Serve(cmd::serve::ServeArgs),
    /// Publish a simulated fleet of mining rigs and one prototype ESP32 to an MQTT broker.
    Simulate(cmd::simulate::SimulateArgs),
    /// Import recorded data files into the store.
    #[command(subcommand)]
    Import(cmd::import::ImportCommand),
    /// Fit and evaluate forecasting models.
    #[command(subcommand)]
    Forecast(cmd::forecast::ForecastCommand),
    /// Fit regression models to tables.
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Inspect and maintain the embedded store.
    #[command(subcommand)]
    Store(cmd::store::StoreCommand),
    /// Run the edge agent on a mining rig: measure GPUs, buffer while offline, carry out commands.
    Agent(cmd::agent::AgentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = matches!(cli.command, Command::Serve(_) | Command::Simulate(_) | Command::Agent(_));
    cmd::init_logging(if service { "info" } else { "warn" });
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Import(command) => cmd::import::run(command),
        Command::Forecast(command) => cmd::forecast::run(command),
        Command::Model(command) => cmd::model::run(command),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Store(command) => cmd::store::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
