//! `se-bench`: benchmarks of smart-energy, on 127.0.0.1 only.
//!
//! `smart-energy` and `mosquitto` measure MQTT ingestion: K publishers send N QoS 1
//! native telemetry messages (one GPU reading each) either to
//! `smart-energy serve`, where a PUBACK means the reading is committed, or to
//! Mosquitto with one subscriber counting what it receives. Each run starts
//! its own server on free ports and stops it afterwards.
//!
//! `storage` compares the store with InfluxDB and PostgreSQL (see
//! [`storage`]). `forecast` times model choice and day-ahead forecasts of
//! many generated hourly series, without any server. `detect` scores the
//! anomaly detectors on a simulated fleet with injected faults, in-process.

mod detect;
mod forecast;
mod generate;
mod load;
mod report;
mod servers;
mod storage;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

use load::{LoadPlan, PublisherOutcome, Subscriber};
use report::RunResult;
use servers::{Mosquitto, SmartEnergy};

#[derive(Parser)]
#[command(about = "Benchmarks of smart-energy against Mosquitto, InfluxDB and PostgreSQL, of forecasting and of anomaly detection, on 127.0.0.1 only")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish to `smart-energy serve` and count the stored readings.
    SmartEnergy {
        /// Path of the smart-energy binary, such as target/release/smart-energy.
        #[arg(long)]
        binary: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Publish to Mosquitto and count what one subscriber receives.
    Mosquitto {
        /// Path of the mosquitto binary.
        #[arg(long, default_value = "/usr/sbin/mosquitto")]
        binary: PathBuf,
        /// Queue limit per client: `default` keeps Mosquitto's (1000 in 2.0), `unlimited` sets 0.
        #[arg(long, value_enum, default_value_t = QueueLimit::Default)]
        max_queued_messages: QueueLimit,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Choose a model by backtest and forecast the next day for many
    /// generated hourly series, in parallel.
    Forecast(forecast::ForecastArgs),
    /// Inject faults into a simulated fleet in-process and score the anomaly detectors.
    Detect(detect::DetectArgs),
    /// Print medians and ratios of the runs recorded in a JSON lines file.
    Summarize {
        /// File written by --json-out.
        results: PathBuf,
    },
    /// Compare bytes per reading, query times and server memory with InfluxDB and PostgreSQL.
    Storage(storage::StorageArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum QueueLimit {
    Default,
    Unlimited,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Total messages, split evenly across publishers.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    messages: u64,
    /// Publisher clients, each with its own connection and device id.
    #[arg(long, short = 'k', default_value_t = 1)]
    publishers: usize,
    /// Unacknowledged QoS 1 messages each publisher keeps in flight.
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    /// Time limit of the publishing phase, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

impl LoadArgs {
    fn plan(&self, port: u16) -> anyhow::Result<LoadPlan> {
        if self.publishers == 0 || self.messages == 0 {
            bail!("--publishers and --messages must be at least 1");
        }
        if self.messages % self.publishers as u64 != 0 {
            bail!(
                "--messages {} is not a multiple of --publishers {}; pick a multiple so each publisher sends the same count",
                self.messages,
                self.publishers
            );
        }
        Ok(LoadPlan {
            port,
            publishers: self.publishers,
            messages_each: self.messages / self.publishers as u64,
            inflight: self.inflight,
            deadline: Instant::now() + Duration::from_secs(self.timeout_s),
        })
    }
}

/// Combined outcome of all publishers of one run.
struct PublishPhase {
    started: Instant,
    outcomes: Vec<PublisherOutcome>,
}

/// Connects every publisher, starts them together and waits for all of them.
async fn publish_all(plan: &LoadPlan, label: &str) -> anyhow::Result<PublishPhase> {
    let (start_tx, start_rx) = watch::channel(false);
    let acked = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..plan.publishers)
        .map(|index| tokio::spawn(load::run_publisher(plan.clone(), index, start_rx.clone(), acked.clone())))
        .collect();

    // Give every publisher time to connect, so they start together.
    let connected_by = Instant::now() + Duration::from_secs(2);
    tokio::time::sleep_until(connected_by.into()).await;
    let started = Instant::now();
    start_tx.send_replace(true);

    let total = plan.publishers as u64 * plan.messages_each;
    let progress_label = label.to_owned();
    let progress_acked = acked.clone();
    let progress = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let done = progress_acked.load(Ordering::Relaxed);
            eprintln!("  [{progress_label}] {done}/{total} PUBACKs after {:.1} s", started.elapsed().as_secs_f64());
        }
    });

    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("publisher task panicked")??);
    }
    progress.abort();
    Ok(PublishPhase { started, outcomes })
}

fn build_result(target: &str, args: &LoadArgs, phase: &PublishPhase, arrived: u64, last_arrival: Option<Instant>) -> RunResult {
    let mut latencies: Vec<Duration> = phase.outcomes.iter().flat_map(|outcome| outcome.latencies.iter().copied()).collect();
    latencies.sort_unstable();
    let last_ack = phase.outcomes.iter().filter_map(|outcome| outcome.last_ack).max();
    let finished = [last_ack, last_arrival].into_iter().flatten().max().unwrap_or(phase.started);
    let elapsed_s = (finished - phase.started).as_secs_f64();
    RunResult {
        target: target.to_owned(),
        publishers: args.publishers,
        messages: args.messages,
        inflight: args.inflight,
        acked: phase.outcomes.iter().map(|outcome| outcome.acked).sum(),
        arrived,
        lost: args.messages.saturating_sub(arrived),
        elapsed_s,
        messages_per_s: if elapsed_s > 0.0 { arrived as f64 / elapsed_s } else { 0.0 },
        ack_p50_ms: report::quantile_ms(&latencies, 0.50),
        ack_p99_ms: report::quantile_ms(&latencies, 0.99),
        ack_max_ms: latencies.last().map_or(0.0, |max| max.as_secs_f64() * 1_000.0),
        errors: phase.outcomes.iter().filter_map(|outcome| outcome.error.clone()).collect(),
    }
}

async fn bench_smart_energy(binary: PathBuf, args: &LoadArgs) -> anyhow::Result<RunResult> {
    let server = SmartEnergy::start(&binary).await?;
    let plan = args.plan(server.mqtt_port)?;
    let phase = publish_all(&plan, "smart-energy").await?;

    // Every PUBACK follows a commit, so the count should already be complete.
    // Poll a little longer in case a PUBACK was lost but the data was not.
    let mut stored = server.stored_readings().await?;
    let settle_until = Instant::now() + Duration::from_secs(5);
    while stored < args.messages && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = server.stored_readings().await?;
    }
    let mut result = build_result("smart-energy", args, &phase, stored, None);
    if !server.stop() {
        result.errors.push("smart-energy serve did not exit within 20 s of SIGTERM".to_owned());
    }
    Ok(result)
}

async fn bench_mosquitto(binary: PathBuf, limit: QueueLimit, args: &LoadArgs) -> anyhow::Result<RunResult> {
    let (target, max_queued) = match limit {
        QueueLimit::Default => ("mosquitto-default-queue", None),
        QueueLimit::Unlimited => ("mosquitto-unlimited-queue", Some(0)),
    };
    let broker = Mosquitto::start(&binary, max_queued)?;
    let plan = args.plan(broker.port)?;

    let subscriber = Subscriber::connect(broker.port).await?;
    let (done_tx, done_rx) = watch::channel(false);
    let collecting = tokio::spawn(subscriber.collect(plan.clone(), done_rx, Duration::from_secs(3)));
    let phase = publish_all(&plan, target).await?;
    done_tx.send_replace(true);
    let received = collecting.await.context("subscriber task panicked")?;

    let mut result = build_result(target, args, &phase, received.distinct, received.last_receive);
    if received.duplicates > 0 {
        result.errors.push(format!("subscriber received {} duplicate deliveries", received.duplicates));
    }
    if !broker.stop() {
        result.errors.push("mosquitto did not exit within 20 s of SIGTERM".to_owned());
    }
    Ok(result)
}

fn finish(result: &RunResult, args: &LoadArgs) -> anyhow::Result<()> {
    report::print_run(result);
    if let Some(path) = &args.json_out {
        report::append_json(path, result)?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::SmartEnergy { binary, load } => {
            let result = bench_smart_energy(binary, &load).await?;
            finish(&result, &load)
        }
        Command::Mosquitto { binary, max_queued_messages, load } => {
            let result = bench_mosquitto(binary, max_queued_messages, &load).await?;
            finish(&result, &load)
        }
        Command::Forecast(args) => forecast::run(&args),
        Command::Detect(args) => detect::run(&args),
        Command::Summarize { results } => {
            report::print_summary(&report::summarize(&results)?);
            Ok(())
        }
        Command::Storage(args) => storage::run(args).await,
    }
}
