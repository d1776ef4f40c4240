mod firebase;

use clap::Subcommand;

pub use firebase::FirebaseCsvArgs;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import the prototype's Firebase CSV export (Current, Voltage, kWh, Temps).
    FirebaseCsv(FirebaseCsvArgs),
}

pub fn run(command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::FirebaseCsv(args) => firebase::run(args),
    }
}
