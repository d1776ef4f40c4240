//! `se-bench forecast`: time to choose a model for, and forecast, many hourly
//! series.
//!
//! Each generated series gets what the server does for a real one, in two
//! timed phases. First, a rolling-origin backtest over its last
//! `--selection-days` days chooses the model with the lowest MAPE among
//! `--models`. Then that model is fitted on the whole history and forecasts
//! the next 24 hours with 95 % intervals. Series run in parallel on a rayon
//! pool. Generating the series is timed apart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use rayon::prelude::*;
use se_analytics::forecast::{FutureFrame, HistoryWindow, DAY, DEFAULT_MODELS};
use se_analytics::{model_by_name, run_backtest, BacktestConfig, Forecaster, HourlySeries, ModelOptions};
use serde::Serialize;

use crate::generate::{generate_series, SeriesKind};
use crate::report::{append_json, quantile_ms};

#[derive(Args, Clone)]
pub struct ForecastArgs {
    /// Number of generated hourly series.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Days of hourly history per series.
    #[arg(long, default_value_t = 28)]
    days: usize,
    /// Days of day-ahead backtest that choose each series' model; 0 skips the
    /// choice and forecasts with the first of --models.
    #[arg(long, default_value_t = 7)]
    selection_days: usize,
    /// Comma-separated candidate models, as in `smart-energy forecast backtest`.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_MODELS.map(String::from))]
    models: Vec<String>,
    /// Worker threads; by default one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Seed of the series generator; the same seed gives the same series.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// Forecast horizon and interval level, as the server's day-ahead forecast.
const HORIZON_HOURS: usize = DAY;
const LEVEL: f64 = 0.95;

/// Midnight UTC of Monday 2024-01-01, the start of every generated series.
const SERIES_START: &str = "2024-01-01T00:00:00Z";

/// Model choice of one series.
struct Choice {
    elapsed: Duration,
    cpu: Duration,
    /// Index into the candidate models.
    model: usize,
    /// Set when the backtest failed or no candidate completed it, so the
    /// first candidate forecasts.
    fallback: Option<String>,
}

/// Day-ahead forecast of one series.
struct Outcome {
    elapsed: Duration,
    cpu: Duration,
    /// Set when the forecast failed or returned non-finite or unordered
    /// bounds; the message names the series and the reason.
    error: Option<String>,
}

/// Total and per-series times of one phase. Wall-clock times grow when other
/// processes compete for the cores; CPU times much less so.
#[derive(Debug, Serialize)]
pub struct PhaseTimes {
    pub total_s: f64,
    /// CPU time of all threads of the process during the phase.
    pub cpu_s: f64,
    pub series_per_s: f64,
    pub per_series_p50_ms: f64,
    pub per_series_p90_ms: f64,
    pub per_series_max_ms: f64,
    /// CPU time of the worker thread per series.
    pub per_series_cpu_p50_ms: f64,
    pub per_series_cpu_p90_ms: f64,
}

impl PhaseTimes {
    fn new(total: Duration, cpu: Duration, mut durations: Vec<Duration>, mut cpu_durations: Vec<Duration>) -> Self {
        durations.sort_unstable();
        cpu_durations.sort_unstable();
        let total_s = total.as_secs_f64();
        Self {
            total_s,
            cpu_s: cpu.as_secs_f64(),
            series_per_s: durations.len() as f64 / total_s,
            per_series_p50_ms: quantile_ms(&durations, 0.50),
            per_series_p90_ms: quantile_ms(&durations, 0.90),
            per_series_max_ms: durations.last().map_or(0.0, |max| max.as_secs_f64() * 1_000.0),
            per_series_cpu_p50_ms: quantile_ms(&cpu_durations, 0.50),
            per_series_cpu_p90_ms: quantile_ms(&cpu_durations, 0.90),
        }
    }
}

/// CPU time used so far by the calling thread.
fn thread_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time used so far by all threads of the process.
fn process_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Reads a CPU clock; returns zero if the clock is not available.
fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `time` is a valid, writable timespec for the duration of the call.
    let status = unsafe { libc::clock_gettime(clock, &mut time) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(time.tv_sec).unwrap_or(0), u32::try_from(time.tv_nsec).unwrap_or(0))
}

/// Result of one benchmark run, one JSON line with --json-out.
#[derive(Debug, Serialize)]
pub struct ForecastRun {
    pub series: usize,
    pub days: usize,
    pub selection_days: usize,
    pub models: Vec<String>,
    pub threads: usize,
    pub generate_s: f64,
    /// Backtests that choose each series' model; `None` with --selection-days 0.
    pub choice: Option<PhaseTimes>,
    /// Fit of the chosen model on the whole history and 24-hour forecast.
    pub forecast: PhaseTimes,
    /// How many series chose each model.
    pub chosen: Vec<(String, usize)>,
    pub fallbacks: usize,
    pub errors: usize,
}

pub fn run(args: &ForecastArgs) -> anyhow::Result<()> {
    check_args(args)?;
    let models = build_models(&args.models)?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("start the worker threads")?;
    let start: Timestamp = SERIES_START.parse().context("parse the series start")?;
    let history_hours = args.days * DAY;

    eprintln!("generating {} series of {} days on {threads} threads", args.series, args.days);
    let generating = Instant::now();
    let series: Vec<Vec<f64>> = pool.install(|| {
        (0..args.series)
            .into_par_iter()
            .map(|index| generate_series(args.seed, index, history_hours, SeriesKind::pick(args.seed, index)))
            .collect()
    });
    let generate_s = generating.elapsed().as_secs_f64();

    let (choices, choice_times) = if args.selection_days > 0 {
        let selection_from = start
            .to_zoned_datetime(TimeZone::UTC)
            .date()
            .checked_add(((args.days - args.selection_days) as i64).days())
            .context("compute the first backtest date")?;
        eprintln!("choosing a model per series by {} days of backtest", args.selection_days);
        let progress = progress_bar(args.series as u64);
        let choosing = Instant::now();
        let choosing_cpu = process_cpu_time();
        let choices: Vec<Choice> = pool.install(|| {
            series
                .par_iter()
                .enumerate()
                .map(|(index, values)| {
                    let choice = choose_model(index, start, values, &models, selection_from);
                    progress.inc(1);
                    choice
                })
                .collect()
        });
        let elapsed = choosing.elapsed();
        let cpu = process_cpu_time().saturating_sub(choosing_cpu);
        progress.finish_and_clear();
        let durations = choices.iter().map(|choice| choice.elapsed).collect();
        let cpu_durations = choices.iter().map(|choice| choice.cpu).collect();
        (choices, Some(PhaseTimes::new(elapsed, cpu, durations, cpu_durations)))
    } else {
        let first = |_| Choice {
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            model: 0,
            fallback: None,
        };
        ((0..args.series).map(first).collect(), None)
    };

    eprintln!("forecasting the next {HORIZON_HOURS} hours of every series with its model");
    let progress = progress_bar(args.series as u64);
    let forecasting = Instant::now();
    let forecasting_cpu = process_cpu_time();
    let outcomes: Vec<Outcome> = pool.install(|| {
        series
            .par_iter()
            .zip(&choices)
            .enumerate()
            .map(|(index, (values, choice))| {
                let outcome = forecast_next_day(index, start, values, models[choice.model].as_ref());
                progress.inc(1);
                outcome
            })
            .collect()
    });
    let forecast_elapsed = forecasting.elapsed();
    let forecast_cpu = process_cpu_time().saturating_sub(forecasting_cpu);
    progress.finish_and_clear();

    let mut chosen: Vec<(String, usize)> = models.iter().map(|model| (model.name().to_string(), 0)).collect();
    for choice in &choices {
        chosen[choice.model].1 += 1;
    }
    let result = ForecastRun {
        series: args.series,
        days: args.days,
        selection_days: args.selection_days,
        models: chosen.iter().map(|(name, _)| name.clone()).collect(),
        threads,
        generate_s,
        choice: choice_times,
        forecast: PhaseTimes::new(
            forecast_elapsed,
            forecast_cpu,
            outcomes.iter().map(|outcome| outcome.elapsed).collect(),
            outcomes.iter().map(|outcome| outcome.cpu).collect(),
        ),
        chosen,
        fallbacks: choices.iter().filter(|choice| choice.fallback.is_some()).count(),
        errors: outcomes.iter().filter(|outcome| outcome.error.is_some()).count(),
    };
    print_run(&result);
    let messages = choices
        .iter()
        .filter_map(|choice| choice.fallback.as_ref())
        .chain(outcomes.iter().filter_map(|outcome| outcome.error.as_ref()));
    for message in messages.take(5) {
        println!("{message}");
    }
    if let Some(path) = &args.json_out {
        append_json(path, &result)?;
    }
    Ok(())
}

fn check_args(args: &ForecastArgs) -> anyhow::Result<()> {
    if args.series == 0 {
        bail!("--series must be at least 1");
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if args.selection_days >= args.days {
        bail!(
            "--selection-days {} must be smaller than --days {}, so the backtest has history to fit on",
            args.selection_days,
            args.days
        );
    }
    Ok(())
}

fn build_models(names: &[String]) -> anyhow::Result<Vec<Box<dyn Forecaster>>> {
    if names.is_empty() {
        bail!("--models is empty; name at least one model, such as naive,regression,mstl");
    }
    names
        .iter()
        .map(|name| model_by_name(name, &ModelOptions::default()).map_err(|error| anyhow!("--models: {error}")))
        .collect()
}

fn progress_bar(total: u64) -> ProgressBar {
    let progress = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} series, {elapsed} elapsed, {eta} left") {
        progress.set_style(style);
    }
    progress
}

/// Chooses the model of one series: the candidate with the lowest MAPE (or
/// MAE) over day-ahead backtests from `selection_from` to the end.
fn choose_model(
    index: usize,
    start: Timestamp,
    values: &[f64],
    models: &[Box<dyn Forecaster>],
    selection_from: Date,
) -> Choice {
    let started = Instant::now();
    let started_cpu = thread_cpu_time();
    let history = HourlySeries::from_hourly(start, TimeZone::UTC, values.to_vec(), Vec::new());
    let config = BacktestConfig {
        from: selection_from,
        horizon_hours: HORIZON_HOURS,
        level: LEVEL,
    };
    let (model, fallback) = match run_backtest(&history, models, &config, &mut |_| {}) {
        Ok(report) => match report.best {
            Some(best) => (best, None),
            None => (0, Some(format!("series {index}: every candidate failed the backtest"))),
        },
        Err(error) => (0, Some(format!("series {index}: backtest failed: {error}"))),
    };
    Choice {
        elapsed: started.elapsed(),
        cpu: thread_cpu_time().saturating_sub(started_cpu),
        model,
        fallback,
    }
}

/// Fits `model` on the whole history and forecasts the next 24 hours.
fn forecast_next_day(index: usize, start: Timestamp, values: &[f64], model: &dyn Forecaster) -> Outcome {
    let started = Instant::now();
    let started_cpu = thread_cpu_time();
    let history_hours = values.len();
    // The forecast hours have no values yet. NaN placeholders make any model
    // that reads them return a non-finite forecast, which is counted below.
    let mut extended = Vec::with_capacity(history_hours + HORIZON_HOURS);
    extended.extend_from_slice(values);
    extended.resize(history_hours + HORIZON_HOURS, f64::NAN);
    let series = HourlySeries::from_hourly(start, TimeZone::UTC, extended, Vec::new());
    let forecast = model
        .fit(&HistoryWindow::new(&series, 0..history_hours))
        .and_then(|fitted| fitted.predict(&FutureFrame::new(&series, history_hours..series.len()), LEVEL));
    let error = match forecast {
        Err(error) => Some(format!("series {index}: {} failed: {error}", model.name())),
        Ok(forecast) => {
            let valid = forecast.point.len() == HORIZON_HOURS
                && (0..HORIZON_HOURS).all(|step| {
                    let (lower, point, upper) = (forecast.lower[step], forecast.point[step], forecast.upper[step]);
                    lower.is_finite() && upper.is_finite() && lower <= point && point <= upper
                });
            (!valid).then(|| format!("series {index}: {} returned non-finite or unordered bounds", model.name()))
        }
    };
    Outcome {
        elapsed: started.elapsed(),
        cpu: thread_cpu_time().saturating_sub(started_cpu),
        error,
    }
}

fn print_phase(name: &str, times: &PhaseTimes) {
    println!(
        "{name}: {:.1} s wall, {:.0} series/s, {:.1} s CPU of all threads",
        times.total_s, times.series_per_s, times.cpu_s
    );
    println!(
        "  per series, wall: median {:.2} ms, p90 {:.2} ms, max {:.2} ms; thread CPU: median {:.2} ms, p90 {:.2} ms",
        times.per_series_p50_ms,
        times.per_series_p90_ms,
        times.per_series_max_ms,
        times.per_series_cpu_p50_ms,
        times.per_series_cpu_p90_ms
    );
}

fn print_run(run: &ForecastRun) {
    println!(
        "{} series of {} days, candidates {}, {} threads",
        run.series,
        run.days,
        run.models.join(","),
        run.threads
    );
    println!("generation: {:.1} s", run.generate_s);
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the end (1, 5, 15 min): {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    }
    match &run.choice {
        Some(times) => print_phase(&format!("model choice ({} days of backtest)", run.selection_days), times),
        None => println!("model choice: skipped, every series uses {}", run.models[0]),
    }
    print_phase("day-ahead forecast with 95 % intervals", &run.forecast);
    if let Some(choice) = &run.choice {
        println!("choice and forecast together: {:.1} s", choice.total_s + run.forecast.total_s);
    }
    let chosen: Vec<String> = run.chosen.iter().map(|(name, count)| format!("{name} {count}")).collect();
    println!("chosen models: {}", chosen.join(", "));
    println!("fallbacks to the first candidate: {}, failed forecasts: {}", run.fallbacks, run.errors);
}
