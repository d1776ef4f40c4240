mod firebase;
mod nvidia_smi;

use clap::Subcommand;

pub use firebase::FirebaseCsvArgs;
pub use nvidia_smi::NvidiaSmiArgs;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import the prototype's Firebase CSV export (Current, Voltage, kWh, Temps).
    FirebaseCsv(FirebaseCsvArgs),
    /// Import GPU logs written by nvidia-smi --query-gpu=... --format=csv.
    NvidiaSmi(NvidiaSmiArgs),
}

pub fn run(command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::FirebaseCsv(args) => firebase::run(args),
        ImportCommand::NvidiaSmi(args) => nvidia_smi::run(args),
    }
}
