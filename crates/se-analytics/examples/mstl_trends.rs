//! Compares the trend models of the `mstl` forecaster on one CSV series:
//! day-ahead MAPE, MAE, RMSE and 95 % interval coverage over a rolling-origin
//! backtest, and the wall time per fit and forecast. Seasonal naive (same hour
//! yesterday) is the reference.
//!
//! ```text
//! cargo run --release -p se-analytics --example mstl_trends -- \
//!     FILE TIME_COLUMN VALUE_COLUMN FROM_DATE [TIME_FORMAT]
//! ```
//!
//! Times are read as UTC, as `bench/forecast_compare.py` does. Run it on an
//! otherwise idle machine, because the times are wall-clock times on one
//! thread.

use std::fs::File;
use std::process::ExitCode;
use std::time::Instant;

use jiff::tz::TimeZone;
use se_analytics::forecast::{MstlForecaster, MstlTrend, SeasonalNaive, DAY, WEEK};
use se_analytics::series::parse_date;
use se_analytics::{run_backtest, BacktestConfig, Forecaster, HourlySeries, SeriesSpec};

const USAGE: &str = "usage: mstl_trends FILE TIME_COLUMN VALUE_COLUMN FROM_DATE [TIME_FORMAT]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(4..=5).contains(&args.len()) {
        return Err(format!(
            "expected 4 or 5 arguments, got {}\n{USAGE}",
            args.len()
        ));
    }
    let spec = SeriesSpec {
        time_column: args[1].clone(),
        value_column: args[2].clone(),
        feature_columns: Vec::new(),
        time_format: args.get(4).cloned(),
        time_zone: TimeZone::UTC,
    };
    let file = File::open(&args[0]).map_err(|error| format!("cannot open {}: {error}", args[0]))?;
    let (series, _) = HourlySeries::read_csv(file, &spec).map_err(|error| error.to_string())?;
    let config = BacktestConfig {
        from: parse_date(&args[3]).map_err(|error| error.to_string())?,
        horizon_hours: DAY,
        level: 0.95,
    };

    let candidates: Vec<(&str, Box<dyn Forecaster>)> = vec![
        (
            "seasonal naive (24 h)",
            Box::new(SeasonalNaive::new("naive", DAY)),
        ),
        (
            "mstl, naive trend",
            Box::new(MstlForecaster::new(vec![DAY, WEEK], 8 * WEEK).with_trend(MstlTrend::Naive)),
        ),
        (
            "mstl, AutoETS trend",
            Box::new(MstlForecaster::new(vec![DAY, WEEK], 8 * WEEK).with_trend(MstlTrend::AutoEts)),
        ),
    ];

    println!("| model | origins | MAE | RMSE | MAPE % | coverage of 95 % interval | ms per fit and forecast |");
    println!("|---|---|---|---|---|---|---|");
    for (label, model) in candidates {
        // One model per backtest, so each time covers only that model.
        let started = Instant::now();
        let report = run_backtest(&series, std::slice::from_ref(&model), &config, &mut |_| {})
            .map_err(|error| format!("{label}: {error}"))?;
        let elapsed = started.elapsed();
        let result = &report.models[0];
        if let Some((origin, reason)) = result.failures.first() {
            return Err(format!("{label} failed at {origin}: {reason}"));
        }
        let metrics = result
            .metrics
            .ok_or_else(|| format!("{label}: no hour was scored"))?;
        let mape = metrics
            .mape
            .map_or("undefined".to_string(), |mape| format!("{mape:.2}"));
        let coverage = result.interval_coverage.unwrap_or(f64::NAN) * 100.0;
        let per_origin_ms = elapsed.as_secs_f64() * 1_000.0 / report.origins.len() as f64;
        println!(
            "| {label} | {} | {:.1} | {:.1} | {mape} | {coverage:.1} % | {per_origin_ms:.2} |",
            report.origins.len(),
            metrics.mae,
            metrics.rmse,
        );
    }
    Ok(())
}
