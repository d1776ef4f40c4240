//! `import nvidia-smi`: logs written by
//! `nvidia-smi --query-gpu=timestamp,index,power.draw,... --format=csv`,
//! with or without units and with or without an index column.

use std::fs::File;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use se_core::{now_ms, DeviceId};
use se_decode::{parse_nvidia_smi_csv, NvidiaSmiOptions};
use se_store::{SqliteStore, Store};

use crate::cmd::DEFAULT_DATA_DIR;

/// Readings written per transaction.
const BATCH: usize = 50_000;

#[derive(Debug, clap::Args)]
pub struct NvidiaSmiArgs {
    /// CSV file written by nvidia-smi --format=csv (with or without units).
    pub file: PathBuf,
    /// Device id of the rig the GPUs belong to.
    #[arg(long)]
    pub device: String,
    /// IANA time zone of the machine that ran nvidia-smi, such as Europe/Paris;
    /// nvidia-smi prints local time without a zone.
    #[arg(long)]
    pub timezone: String,
    /// Number of GPUs, for files without an index column whose first burst may be incomplete.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub gpu_count: Option<u16>,
    /// Largest time difference between rows of one poll, in milliseconds;
    /// keep it below the logging period.
    #[arg(long, default_value_t = se_decode::DEFAULT_BURST_TOLERANCE_MS)]
    pub burst_tolerance_ms: i64,
    /// Data directory of the store.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "SMART_ENERGY_DATA_DIR")]
    pub data_dir: PathBuf,
}

pub fn run(args: NvidiaSmiArgs) -> anyhow::Result<()> {
    let device = DeviceId::parse(&args.device).map_err(|error| anyhow::anyhow!("--device: {error}"))?;
    let time_zone = jiff::tz::TimeZone::get(&args.timezone).map_err(|_| {
        anyhow::anyhow!("--timezone {:?} is not an IANA time zone; use a name such as Europe/Paris or UTC", args.timezone)
    })?;
    let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);

    let progress = ProgressBar::new(size);
    progress.set_style(
        ProgressStyle::with_template("{spinner} reading [{bar:30}] {bytes}/{total_bytes}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut options = NvidiaSmiOptions::new(device, time_zone, now_ms());
    options.gpu_count = args.gpu_count.map(usize::from);
    options.burst_tolerance_ms = args.burst_tolerance_ms;
    let decoded = parse_nvidia_smi_csv(progress.wrap_read(file), &options);
    progress.finish_and_clear();

    let store = SqliteStore::open(&args.data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    let writing = ProgressBar::new(decoded.readings.len() as u64);
    writing.set_style(ProgressStyle::with_template("{spinner} storing [{bar:30}] {pos}/{len} values").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let (mut stored, mut duplicates) = (0u64, 0u64);
    for chunk in decoded.readings.chunks(BATCH) {
        let outcome = runtime.block_on(store.write_readings(chunk))?;
        stored += outcome.stored;
        duplicates += outcome.duplicates;
        writing.inc(chunk.len() as u64);
    }
    writing.finish_and_clear();
    if !decoded.rejections.is_empty() {
        runtime.block_on(store.record_rejections(&decoded.rejections, now_ms()))?;
    }

    println!("values stored:      {stored}");
    println!("duplicates skipped: {duplicates}");
    println!("values rejected:    {}", decoded.rejections.len());
    // In file order, each with its line, because the decoder reports
    // whole-row problems before the values of the rows it kept.
    let mut rejections: Vec<_> = decoded.rejections.iter().collect();
    rejections.sort_by_key(|rejection| line_number(&rejection.topic));
    for rejection in rejections.iter().take(50) {
        if rejection.detail.starts_with(&rejection.topic) {
            println!("  {} ({})", rejection.detail, rejection.reason.code());
        } else {
            println!("  {}: {} ({})", rejection.topic, rejection.detail, rejection.reason.code());
        }
    }
    if rejections.len() > 50 {
        println!("  ... and {} more, listed at GET /api/v1/ingest/errors", rejections.len() - 50);
    }
    if stored == 0 && duplicates == 0 && !rejections.is_empty() {
        anyhow::bail!("no value of {} was stored: fix the rejected lines above and import the file again", args.file.display());
    }
    Ok(())
}

/// Line number of a rejection's topic, such as `line 12`; files without one sort first.
fn line_number(topic: &str) -> u64 {
    topic.strip_prefix("line ").and_then(|number| number.parse().ok()).unwrap_or(0)
}
