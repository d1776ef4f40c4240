//! `smart-energy store`: inspect and maintain the embedded store.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use se_store::{SqliteStore, Store, StoreOptions};

use super::config::ServerConfig;
use super::DEFAULT_DATA_DIR;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print the series, readings and bytes per reading of each storage tier.
    Stats(StoreArgs),
    /// Move new readings into compressed blocks and update the rollups now,
    /// instead of waiting for the server's next background pass.
    Compact(StoreArgs),
    /// Give an account a new one-time password, for a lost admin password.
    /// The account must change it at its next login; its sessions end.
    ResetPassword(ResetPasswordArgs),
}

#[derive(Debug, Args)]
pub struct ResetPasswordArgs {
    /// Account whose password is reset, such as admin.
    username: String,
    /// Directory of the embedded database.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "SMART_ENERGY_DATA_DIR")]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Directory of the embedded database.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "SMART_ENERGY_DATA_DIR")]
    data_dir: PathBuf,
    /// Configuration file whose [store] section sets retention.
    #[arg(long, env = "SMART_ENERGY_CONFIG")]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(command: StoreCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async {
        match command {
            StoreCommand::Stats(args) => stats(&args).await,
            StoreCommand::Compact(args) => compact(&args).await,
            StoreCommand::ResetPassword(args) => reset_password(&args).await,
        }
    })
}

/// Generates a password for `args.username`, stores its hash and prints it once.
async fn reset_password(args: &ResetPasswordArgs) -> anyhow::Result<()> {
    if !args.data_dir.join(SqliteStore::FILE_NAME).exists() {
        anyhow::bail!("no store found in {}: pass the --data-dir that `smart-energy serve` uses", args.data_dir.display());
    }
    let store = SqliteStore::open(&args.data_dir)?;
    let Some(user) = store.user_by_name(&args.username).await? else {
        let names: Vec<String> = store.list_users().await?.into_iter().map(|user| user.username).collect();
        anyhow::bail!("no account named {:?}; the accounts are: {}", args.username, names.join(", "));
    };
    let password = se_web::generate_password();
    let hash = se_web::hash_password(&password).map_err(|error| anyhow::anyhow!("failed to hash the new password: {error}"))?;
    store.reset_password(user.id, &hash).await?;
    println!("New one-time password for {}: {password}", user.username);
    println!("Log in with it and change it; it is not shown again.");
    Ok(())
}

fn open(args: &StoreArgs) -> anyhow::Result<SqliteStore> {
    if !args.data_dir.join(SqliteStore::FILE_NAME).exists() {
        anyhow::bail!(
            "no store found in {}: pass the --data-dir that `smart-energy serve` uses",
            args.data_dir.display()
        );
    }
    let config = match &args.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    let retention = config.store.retention().map_err(|error| anyhow::anyhow!("store.retention: {error}"))?;
    Ok(SqliteStore::open_with(&args.data_dir, StoreOptions { retention })?)
}

async fn stats(args: &StoreArgs) -> anyhow::Result<()> {
    let store = open(args)?;
    let stats = store.storage_stats().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!("{:<6} {:>8} {:>10} {:>14} {:>14} {:>10}", "tier", "series", "rows", "readings", "bytes", "B/reading");
    for tier in &stats.tiers {
        let per_reading = tier.bytes_per_reading().map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"));
        println!("{:<6} {:>8} {:>10} {:>14} {:>14} {:>10}", tier.tier, tier.series, tier.rows, tier.readings, tier.bytes, per_reading);
    }
    println!("database file and write-ahead log: {} bytes", stats.file_bytes);
    println!("Rollup readings count the raw readings each tier summarizes; head readings are not compressed yet.");
    Ok(())
}

async fn compact(args: &StoreArgs) -> anyhow::Result<()> {
    let store = open(args)?;
    let spinner = indicatif::ProgressBar::new_spinner().with_message("compacting");
    spinner.enable_steady_tick(Duration::from_millis(200));
    let compacted = store.compact(se_core::now_ms()).await;
    spinner.finish_and_clear();
    let outcome = compacted?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    println!(
        "compacted {} readings of {} series into {} blocks ({} duplicates dropped, {} rollup pages written)",
        outcome.readings, outcome.series, outcome.blocks_written, outcome.duplicates, outcome.pages_written
    );
    Ok(())
}
