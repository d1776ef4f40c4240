//! `se-bench storage`: bytes per reading, query times and server memory of
//! the embedded store, against InfluxDB 1.x and PostgreSQL on the same data.
//!
//! Every peer runs on 127.0.0.1; bench/storage_compare.sh starts InfluxDB and
//! creates the PostgreSQL database, then passes their addresses here.

mod data;
mod influx;
mod ours;
mod pg;
mod report;
mod rss;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use data::DataSet;
use report::{FootprintRow, QueryRow, Results, RssRow, TierRow};

/// A measurement of the storage benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Bytes per reading of the GPU trace and the simulated farm.
    Footprint,
    /// Site chart and raw series query times.
    Query,
    /// Peak RSS of `smart-energy serve` with many active series.
    Rss,
}

#[derive(Args, Clone, Debug)]
pub struct StorageArgs {
    /// Measurements to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Part::Footprint, Part::Query, Part::Rss])]
    parts: Vec<Part>,
    /// nvidia-smi CSV trace for the footprint measurement.
    #[arg(long, default_value = "../shared/data/public/gpu_power_trace_8gpu_100ms.csv")]
    gpu_trace: PathBuf,
    /// Directory for our stores; each data set gets a temp directory inside it.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Base URL of the InfluxDB 1.x HTTP API, such as http://127.0.0.1:18086. Without it InfluxDB is left out.
    #[arg(long, requires_all = ["influx_data_dir", "influx_wal_dir"])]
    influx_url: Option<String>,
    /// `[data] dir` of that InfluxDB server.
    #[arg(long)]
    influx_data_dir: Option<PathBuf>,
    /// `[data] wal-dir` of that InfluxDB server.
    #[arg(long)]
    influx_wal_dir: Option<PathBuf>,
    /// Time limit, in seconds, for InfluxDB to finish its full compaction of one database.
    #[arg(long, default_value_t = 900)]
    influx_compaction_limit_s: u64,
    /// PostgreSQL connection string of an empty database, such as "host=127.0.0.1 user=postgres dbname=bench". Without it PostgreSQL is left out.
    #[arg(long)]
    postgres: Option<String>,
    /// Rigs of the simulated farm.
    #[arg(long, default_value_t = 100)]
    farm_rigs: usize,
    /// GPUs per rig of the simulated farm.
    #[arg(long, default_value_t = 8)]
    farm_gpus: usize,
    /// Span of the simulated farm, in days.
    #[arg(long, default_value_t = 7.0)]
    farm_days: f64,
    /// Interval between readings of the simulated sets, in seconds.
    #[arg(long, default_value_t = 10)]
    interval_s: u64,
    /// Power series summed by the site chart.
    #[arg(long, default_value_t = 100)]
    site_series: usize,
    /// Span loaded into our store for the site chart, in days.
    #[arg(long, default_value_t = 365.0)]
    site_days: f64,
    /// Span loaded into the peers for the site chart, in days, when loading the full span takes too long. Defaults to --site-days.
    #[arg(long)]
    peer_site_days: Option<f64>,
    /// Points of the site chart.
    #[arg(long, default_value_t = 1_000)]
    chart_points: u32,
    /// Repetitions of each query.
    #[arg(long, default_value_t = 30)]
    repeat: usize,
    /// Time, in seconds, after which a query stops being repeated (after at least 3 runs).
    #[arg(long, default_value_t = 120)]
    query_budget_s: u64,
    /// Path of the smart-energy binary for the memory measurement, such as target/release/smart-energy.
    #[arg(long)]
    smart_energy: Option<PathBuf>,
    /// Rigs published to `serve` in the memory measurement; each has --rss-gpus GPUs of five metrics.
    #[arg(long, default_value_t = 250)]
    rss_rigs: usize,
    /// GPUs per rig in the memory measurement.
    #[arg(long, default_value_t = 8)]
    rss_gpus: usize,
    /// Intervals of --interval-s published in the memory measurement.
    #[arg(long, default_value_t = 60)]
    rss_steps: u64,
    /// Write every result as JSON to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// Prints load progress to stderr at most every 5 seconds.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    next_report: Instant,
}

impl Progress {
    pub fn new(label: String, total: u64) -> Progress {
        eprintln!("  [{label}] loading {total} readings");
        let started = Instant::now();
        Progress { label, total, done: 0, started, next_report: started + Duration::from_secs(5) }
    }

    pub fn add(&mut self, count: u64) {
        self.done += count;
        if Instant::now() >= self.next_report {
            self.next_report = Instant::now() + Duration::from_secs(5);
            self.report();
        }
    }

    fn report(&self) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 { self.done as f64 / elapsed } else { 0.0 };
        let percent = if self.total > 0 { 100.0 * self.done as f64 / self.total as f64 } else { 100.0 };
        let remaining = if rate > 0.0 { (self.total - self.done.min(self.total)) as f64 / rate } else { 0.0 };
        eprintln!(
            "  [{}] {}/{} readings ({percent:.1} %), {:.0} readings/s, {elapsed:.0} s elapsed, about {remaining:.0} s left",
            self.label, self.done, self.total, rate
        );
    }

    pub fn finish(&self) {
        self.report();
    }
}

/// Count and sum of the values a query returned, to check that the systems agree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueryCheck {
    pub points: u64,
    pub sum: f64,
}

impl QueryCheck {
    pub fn add(&mut self, value: f64) {
        self.points += 1;
        self.sum += value;
    }

    pub fn mean(&self) -> f64 {
        if self.points == 0 {
            0.0
        } else {
            self.sum / self.points as f64
        }
    }
}

/// Sizes of a directory tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskUsage {
    /// Sum of file lengths.
    pub apparent: u64,
    /// Disk blocks allocated to the files, as `du` counts them; less than
    /// `apparent` for sparse files such as InfluxDB's preallocated series files.
    pub allocated: u64,
}

/// Files under `dir`, recursively, with their metadata; none for a missing directory.
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut files = Vec::new();
    if !dir.exists() {
        return Ok(files);
    }
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        if entry.file_type().is_file() {
            let metadata = entry.metadata().with_context(|| format!("stat {}", entry.path().display()))?;
            files.push((entry.into_path(), metadata));
        }
    }
    Ok(files)
}

/// Measures the files under `dir`; a missing directory has size 0.
pub fn disk_usage(dir: &Path) -> anyhow::Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;

    let mut usage = DiskUsage::default();
    for (_, metadata) in files_under(dir)? {
        usage.apparent += metadata.len();
        usage.allocated += metadata.blocks() * 512;
    }
    Ok(usage)
}

/// Runs `query` up to `repeat` times, stopping early once `budget` has passed
/// after at least 3 runs, and returns the durations (sorted) and the last check.
async fn time_query<F, Fut>(label: &str, repeat: usize, budget: Duration, mut query: F) -> anyhow::Result<(Vec<Duration>, QueryCheck)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<QueryCheck>>,
{
    let started = Instant::now();
    let mut durations = Vec::with_capacity(repeat);
    let mut check = QueryCheck::default();
    for _ in 0..repeat.max(1) {
        let one = Instant::now();
        check = query().await.with_context(|| format!("query {label}"))?;
        durations.push(one.elapsed());
        if durations.len() >= 3 && started.elapsed() >= budget {
            eprintln!("  [{label}] stopped after {} runs: the {budget:?} budget is spent", durations.len());
            break;
        }
    }
    durations.sort_unstable();
    eprintln!(
        "  [{label}] {} runs, median {:.2} ms, {} points, mean value {:.2}",
        durations.len(),
        crate::report::quantile_ms(&durations, 0.5),
        check.points,
        check.mean()
    );
    Ok((durations, check))
}

/// Peers reached in this run.
struct Peers {
    influx: Option<influx::Influx>,
    postgres: Option<pg::Postgres>,
    compaction_limit: Duration,
}

impl Peers {
    async fn connect(args: &StorageArgs) -> anyhow::Result<Peers> {
        let influx = match (&args.influx_url, &args.influx_data_dir, &args.influx_wal_dir) {
            (Some(url), Some(data), Some(wal)) => Some(influx::Influx::new(url, data, wal)?),
            _ => None,
        };
        let postgres = match &args.postgres {
            Some(url) => Some(pg::Postgres::connect(url).await?),
            None => None,
        };
        Ok(Peers { influx, postgres, compaction_limit: Duration::from_secs(args.influx_compaction_limit_s) })
    }
}

fn database_name(set: &DataSet) -> String {
    set.name.replace('-', "_")
}

/// Loads `set` into every system and records its sizes. Returns our store for queries.
async fn footprint(set: &DataSet, work_dir: &Path, peers: &Peers, results: &mut Results) -> anyhow::Result<(tempfile::TempDir, ours::Ours)> {
    eprintln!("== {}: {}", set.name, set.description);
    let dir = tempfile::Builder::new().prefix(&format!("store-{}-", set.name)).tempdir_in(work_dir).context("create a temp dir for our store")?;
    let (store, load_time) = ours::Ours::load(dir.path(), set).await?;
    let (store, sizes) = store.footprint().await?;
    let tier_bytes: u64 = sizes.tiers.iter().map(|tier| tier.bytes).sum();
    for tier in &sizes.tiers {
        eprintln!("  [smart-energy {}] tier {}: {} series, {} rows, {} readings, {} bytes", set.name, tier.tier, tier.series, tier.rows, tier.readings, tier.bytes);
    }
    results.footprint.push(FootprintRow::new(set, "smart-energy", "storage_stats, all tiers", tier_bytes, load_time));
    results.footprint.push(FootprintRow::new(set, "smart-energy", "data dir, du", sizes.data_dir_allocated, load_time));
    results.tiers.extend(sizes.tiers.iter().map(|tier| TierRow::new(set, tier)));
    peer_footprint(set, peers, results).await?;
    Ok((dir, store))
}

async fn run_footprints(args: &StorageArgs, work_dir: &Path, peers: &Peers, results: &mut Results) -> anyhow::Result<()> {
    let trace = DataSet::gpu_trace(&args.gpu_trace)?;
    footprint(&trace, work_dir, peers, results).await?;
    drop(trace);

    let interval_ms = (args.interval_s * 1000) as i64;
    let farm = DataSet::farm(args.farm_rigs, args.farm_gpus, args.farm_days, interval_ms, day_end())?;
    footprint(&farm, work_dir, peers, results).await?;
    if let Some(postgres) = &peers.postgres {
        postgres.drop_table(&farm).await?;
    }
    Ok(())
}

/// End of the simulated spans: the start of the current UTC hour, so that
/// the last day is recent and nothing lies in the future.
fn day_end() -> i64 {
    let now = se_core::now_ms();
    now - now.rem_euclid(3_600_000)
}

async fn run_queries(args: &StorageArgs, work_dir: &Path, peers: &Peers, results: &mut Results) -> anyhow::Result<()> {
    let interval_ms = (args.interval_s * 1000) as i64;
    let end = day_end();
    let ours_set = DataSet::site(args.site_series, args.site_days, interval_ms, end)?;
    let end = ours_set.to_ms;
    let peer_days = args.peer_site_days.unwrap_or(args.site_days);
    if peer_days > args.site_days {
        bail!("--peer-site-days {peer_days} is longer than --site-days {}; give at most the same span", args.site_days);
    }
    let (_dir, store) = footprint_ours_only(&ours_set, work_dir, results).await?;
    let peer_set = if peer_days < args.site_days { Some(DataSet::site(args.site_series, peer_days, interval_ms, end)?) } else { None };
    let peer_data = peer_set.as_ref().unwrap_or(&ours_set);
    peer_footprint(peer_data, peers, results).await?;

    let budget = Duration::from_secs(args.query_budget_s);
    let raw_from = end - 86_400_000;
    let raw_series = 0;
    let spec = &ours_set.series[raw_series];
    let (device, channel, field) = (spec.device.to_string(), spec.channel.to_string(), spec.metric.key());

    // Our store over its full span, then every system over the peers' span.
    let spans: Vec<(f64, i64)> = if peer_days < args.site_days {
        vec![(args.site_days, ours_set.from_ms), (peer_days, peer_data.from_ms)]
    } else {
        vec![(args.site_days, ours_set.from_ms)]
    };
    for (index, (days, from)) in spans.iter().copied().enumerate() {
        let name = format!("site chart, {days} days, {} series, {} points", args.site_series, args.chart_points);
        let (durations, check) = time_query("smart-energy site chart", args.repeat, budget, || store.site_chart(&ours_set, from, end, args.chart_points)).await?;
        results.queries.push(QueryRow::new(&name, "smart-energy", &durations, check));
        let peers_measured_here = index == spans.len() - 1;
        if !peers_measured_here {
            continue;
        }
        if let Some(influx) = &peers.influx {
            let database = database_name(peer_data);
            let (durations, check) = time_query("influxdb site chart", args.repeat, budget, || influx.site_chart(&database, from, end, args.chart_points)).await?;
            results.queries.push(QueryRow::new(&name, "influxdb", &durations, check));
        }
        if let Some(postgres) = &peers.postgres {
            let ids: Vec<i32> = (0..peer_data.series.len() as i32).collect();
            let (durations, check) = time_query("postgresql site chart", args.repeat, budget, || postgres.site_chart(peer_data, &ids, from, end, args.chart_points)).await?;
            results.queries.push(QueryRow::new(&name, "postgresql", &durations, check));
        }
    }

    let name = "raw series, last 24 h".to_owned();
    let (durations, check) = time_query("smart-energy raw (query_series)", args.repeat, budget, || store.raw_series(&ours_set, raw_series, raw_from, end)).await?;
    results.queries.push(QueryRow::new(&name, "smart-energy", &durations, check));
    let (durations, check) = time_query("smart-energy raw (raw_readings)", args.repeat, budget, || store.raw_readings(&ours_set, raw_series, raw_from, end)).await?;
    results.queries.push(QueryRow::new(&format!("{name} (raw_readings)"), "smart-energy", &durations, check));
    if let Some(influx) = &peers.influx {
        let database = database_name(peer_data);
        let (durations, check) = time_query("influxdb raw", args.repeat, budget, || influx.raw_series(&database, &device, &channel, field, raw_from, end)).await?;
        results.queries.push(QueryRow::new(&name, "influxdb", &durations, check));
    }
    if let Some(postgres) = &peers.postgres {
        let (durations, check) = time_query("postgresql raw", args.repeat, budget, || postgres.raw_series(peer_data, raw_series as i32, raw_from, end)).await?;
        results.queries.push(QueryRow::new(&name, "postgresql", &durations, check));
    }
    results.site_days = Some((args.site_days, peer_days));
    Ok(())
}

async fn footprint_ours_only(set: &DataSet, work_dir: &Path, results: &mut Results) -> anyhow::Result<(tempfile::TempDir, ours::Ours)> {
    let none = Peers { influx: None, postgres: None, compaction_limit: Duration::ZERO };
    footprint(set, work_dir, &none, results).await
}

async fn peer_footprint(set: &DataSet, peers: &Peers, results: &mut Results) -> anyhow::Result<()> {
    if peers.influx.is_none() && peers.postgres.is_none() {
        return Ok(());
    }
    eprintln!("== {} for the peers: {}", set.name, set.description);
    if let Some(influx) = &peers.influx {
        let database = database_name(set);
        let load_time = influx.load(&database, set).await?;
        let sizes = influx.wait_for_full_compaction(&database, peers.compaction_limit).await?;
        let note = if sizes.compacted { "" } else { ", compaction unfinished" };
        results.footprint.push(FootprintRow::new(set, "influxdb", &format!("data+wal dirs, du{note}"), sizes.allocated_bytes, load_time));
        results.footprint.push(FootprintRow::new(set, "influxdb", &format!("TSM files{note}"), sizes.tsm_bytes, load_time));
    }
    if let Some(postgres) = &peers.postgres {
        let load_time = postgres.load(set).await?;
        let bytes = postgres.total_relation_size(set).await?;
        results.footprint.push(FootprintRow::new(set, "postgresql", "pg_total_relation_size", bytes, load_time));
    }
    Ok(())
}

async fn run_rss(args: &StorageArgs, results: &mut Results) -> anyhow::Result<()> {
    let Some(binary) = &args.smart_energy else {
        bail!("the rss measurement needs --smart-energy PATH, such as target/release/smart-energy");
    };
    eprintln!("== rss: {} rigs x {} GPUs x 5 metrics, {} intervals", args.rss_rigs, args.rss_gpus, args.rss_steps);
    let outcome = rss::measure(binary, args.rss_rigs, args.rss_gpus, args.rss_steps, args.interval_s).await?;
    results.rss = Some(RssRow::from(&outcome));
    Ok(())
}

/// Runs the requested parts, prints the tables and writes the JSON file.
pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    let work_dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&work_dir).with_context(|| format!("create the work directory {}", work_dir.display()))?;
    let peers = Peers::connect(&args).await?;
    let mut results = Results::default();
    if args.parts.contains(&Part::Footprint) {
        run_footprints(&args, &work_dir, &peers, &mut results).await?;
    }
    if args.parts.contains(&Part::Query) {
        run_queries(&args, &work_dir, &peers, &mut results).await?;
    }
    if args.parts.contains(&Part::Rss) {
        run_rss(&args, &mut results).await?;
    }
    report::print(&results);
    if let Some(path) = &args.json_out {
        let text = serde_json::to_string_pretty(&results).context("encode the results as JSON")?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
