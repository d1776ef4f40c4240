//! `smart-energy forecast`: backtests of hourly forecasting models on a CSV file.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use se_analytics::backtest::{BacktestReport, PredictionRow};
use se_analytics::forecast::check_level;
use se_analytics::series::{parse_date, parse_horizon_hours, parse_time_zone};
use se_analytics::{
    model_by_name, run_backtest, AnalyticsError, BacktestConfig, Forecaster, HourlySeries,
    LoadSummary, ModelOptions, SelectionMetric, SeriesSpec,
};
use se_core::Lang;

use super::model::{format_number, label, open_file, operator_lang, write_stdout};

/// `DEFAULT_MODELS` as the comma-separated list that `--models` takes, so
/// that `--help` shows the default in the form the option accepts.
const DEFAULT_MODEL_LIST: &str = "naive,naive-weekly,regression,mstl";

#[derive(Debug, Subcommand)]
pub enum ForecastCommand {
    /// Rolling-origin backtest. At each local midnight from --from, every model
    /// is fitted on the data before it and forecasts the next --horizon. The
    /// report gives MAE, RMSE and MAPE per model and picks the model with the
    /// lowest MAPE, or the lowest MAE when an actual value is zero.
    Backtest(BacktestArgs),
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// CSV file with a header line; rows may be finer than hourly and are
    /// averaged per local hour.
    file: PathBuf,
    /// Column with the time of each row.
    #[arg(long)]
    time_column: String,
    /// Column with the value to forecast, such as power in W or kW.
    #[arg(long)]
    value_column: String,
    /// Comma-separated numeric columns, such as temperature, used by the
    /// regression model. Backtests read their recorded values at forecast
    /// time, as if the weather forecast were perfect.
    #[arg(long, value_delimiter = ',')]
    feature_columns: Vec<String>,
    /// strftime format of the time column, such as "%m/%d/%y %H:%M"; by
    /// default RFC 3339 or ISO 8601 (2017-01-31 13:00).
    #[arg(long)]
    time_format: Option<String>,
    /// IANA time zone of times without an offset, and of calendar features
    /// (hour of day, weekend, midnight origins).
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// Forecast length after each origin, a whole number of hours written in
    /// hours or days: 24h, 48h, 1d.
    #[arg(long, default_value = "24h")]
    horizon: String,
    /// Local date (YYYY-MM-DD) of the first origin.
    #[arg(long)]
    from: String,
    /// CSV file to write with columns time, actual, predicted, lower, upper and
    /// model. It has one row per model and forecast hour, and actual is empty
    /// for hours without readings.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Comma-separated models. mean: mean of the last 4 weeks. naive: same hour
    /// yesterday. naive-weekly: same hour last week. regression: hour of day,
    /// weekend, holidays and feature columns, fitted on the last 4 weeks.
    /// mstl: 24 h and 168 h seasons with a naive (random walk) trend, fitted
    /// on the last 8 weeks. ets: AutoETS without season.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_MODEL_LIST)]
    models: Vec<String>,
    /// Prediction interval level, as a fraction: 0.95 gives 95 % intervals.
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    /// Comma-separated local dates (YYYY-MM-DD) that the regression model
    /// treats as holidays.
    #[arg(long, value_delimiter = ',')]
    holidays: Vec<String>,
}

pub fn run(command: ForecastCommand) -> anyhow::Result<()> {
    let lang = operator_lang();
    match command {
        ForecastCommand::Backtest(args) => backtest(&args, lang),
    }
}

fn backtest(args: &BacktestArgs, lang: Lang) -> anyhow::Result<()> {
    let localize = |error: AnalyticsError| anyhow!(error.message(lang));

    // Check every option before reading the file, which may be large.
    let time_zone = parse_time_zone(&args.timezone).map_err(localize)?;
    let horizon_hours = parse_horizon_hours(&args.horizon).map_err(localize)?;
    let from = parse_date(&args.from).map_err(localize)?;
    let level = check_level(args.level).map_err(localize)?;
    let holidays = args
        .holidays
        .iter()
        .map(|text| parse_date(text))
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(localize)?;
    let options = ModelOptions { holidays };
    let models = args
        .models
        .iter()
        .map(|name| model_by_name(name, &options))
        .collect::<Result<Vec<Box<dyn Forecaster>>, _>>()
        .map_err(localize)?;

    let spec = SeriesSpec {
        time_column: args.time_column.clone(),
        value_column: args.value_column.clone(),
        feature_columns: args.feature_columns.clone(),
        time_format: args.time_format.clone(),
        time_zone,
    };
    let file = open_file(&args.file, lang)?;
    let (series, summary) = HourlySeries::read_csv(file, &spec).map_err(localize)?;
    tracing::info!(
        file = %args.file.display(),
        rows = summary.rows,
        hours = series.len(),
        interpolated_hours = summary.interpolated_hours,
        "series loaded"
    );

    let config = BacktestConfig {
        from,
        horizon_hours,
        level,
    };
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} origins, {elapsed} elapsed, {eta} left")
    {
        progress.set_style(style);
    }
    let report = run_backtest(&series, &models, &config, &mut |step| {
        progress.set_length(step.origins_total as u64);
        progress.set_position(step.origins_done as u64);
    })
    .map_err(localize)?;
    progress.finish_and_clear();

    let mut text = format_report(&report, &series, &summary, lang)?;
    if let Some(path) = &args.output {
        let rows = write_predictions(path, &report, &series, lang)?;
        let written = label(lang, "Predictions written to", "Prévisions écrites dans");
        text.push_str(&format!(
            "{written} {} ({rows} {})\n",
            path.display(),
            label(lang, "rows", "lignes")
        ));
    }
    write_stdout(&text, lang)
}

fn format_report(
    report: &BacktestReport,
    series: &HourlySeries,
    summary: &LoadSummary,
    lang: Lang,
) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    writeln!(
        out,
        "{}: {} {}, {} {}, {} {}",
        label(lang, "Data", "Données"),
        summary.rows,
        label(lang, "rows", "lignes"),
        series.len(),
        label(lang, "hours", "heures"),
        summary.interpolated_hours,
        label(
            lang,
            "hours without readings (interpolated, not scored)",
            "heures sans mesure (interpolées, non évaluées)"
        ),
    )?;
    if let (Some(first), Some(last)) = (report.origins.first(), report.origins.last()) {
        let zone = series.time_zone();
        writeln!(
            out,
            "{}: {} {} {} {} {}, {} {} h, {} {:.0} %",
            label(lang, "Backtest", "Backtest"),
            report.origins.len(),
            label(lang, "origins from", "origines du"),
            first.to_zoned_datetime(zone.clone()).date(),
            label(lang, "to", "au"),
            last.to_zoned_datetime(zone.clone()).date(),
            label(lang, "horizon", "horizon"),
            report.horizon_hours,
            label(lang, "prediction intervals", "intervalles de prévision"),
            report.level * 100.0,
        )?;
    }

    writeln!(
        out,
        "{:<14} {:>14} {:>14} {:>10} {:>10} {:>9}",
        label(lang, "model", "modèle"),
        "MAE",
        "RMSE",
        "MAPE %",
        label(lang, "coverage", "couverture"),
        label(lang, "failures", "échecs"),
    )?;
    for result in &report.models {
        let missing = || "-".to_string();
        let metrics = result.metrics;
        writeln!(
            out,
            "{:<14} {:>14} {:>14} {:>10} {:>10} {:>9}",
            result.name,
            metrics.map_or_else(missing, |m| format!("{:.3}", m.mae)),
            metrics.map_or_else(missing, |m| format!("{:.3}", m.rmse)),
            metrics
                .and_then(|m| m.mape)
                .map_or_else(missing, |mape| format!("{mape:.3}")),
            result
                .interval_coverage
                .map_or_else(missing, |coverage| format!("{:.1} %", coverage * 100.0)),
            result.failures.len(),
        )?;
        if let Some((origin, reason)) = result.failures.first() {
            writeln!(
                out,
                "  {} {origin}: {reason}",
                label(lang, "first failure at", "premier échec à")
            )?;
        }
    }

    let metric_name = match report.selection {
        SelectionMetric::Mape => "MAPE",
        SelectionMetric::Mae => label(
            lang,
            "MAE (an actual value is zero, so MAPE is undefined)",
            "MAE (une valeur réelle est nulle, le MAPE est donc indéfini)",
        ),
    };
    match report.best_model() {
        Some(best) => {
            let metrics = best.metrics;
            writeln!(
                out,
                "{} {metric_name}: {} (MAE {}, RMSE {}, MAPE {})",
                label(lang, "Best model by", "Meilleur modèle selon"),
                best.name,
                metrics.map_or_else(|| "-".to_string(), |m| format_number(m.mae)),
                metrics.map_or_else(|| "-".to_string(), |m| format_number(m.rmse)),
                metrics
                    .and_then(|m| m.mape)
                    .map_or_else(|| "-".to_string(), |mape| format!("{mape:.3} %")),
            )?;
        }
        None => writeln!(
            out,
            "{}",
            label(
                lang,
                "No model completed every origin, so none was chosen.",
                "Aucun modèle n'a réussi toutes les origines, aucun n'a donc été choisi."
            )
        )?,
    }
    Ok(out)
}

/// Writes one CSV row per model and forecast hour; returns the row count.
fn write_predictions(
    path: &PathBuf,
    report: &BacktestReport,
    series: &HourlySeries,
    lang: Lang,
) -> anyhow::Result<usize> {
    let context = || {
        match lang {
        Lang::En => format!("could not write {}; check that its folder exists and is writable", path.display()),
        Lang::Fr => format!("écriture de {} impossible ; vérifiez que son dossier existe et est accessible en écriture", path.display()),
    }
    };
    let file = File::create(path).with_context(context)?;
    let mut writer = csv::Writer::from_writer(file);
    writer
        .write_record(["time", "actual", "predicted", "lower", "upper", "model"])
        .with_context(context)?;
    let mut rows = 0;
    for result in &report.models {
        for row in &result.predictions {
            writer
                .write_record(prediction_record(row, &result.name, series))
                .with_context(context)?;
            rows += 1;
        }
    }
    writer.flush().with_context(context)?;
    Ok(rows)
}

fn prediction_record(row: &PredictionRow, model: &str, series: &HourlySeries) -> [String; 6] {
    let time = row
        .time
        .to_zoned_datetime(series.time_zone().clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let actual = if row.observed {
        row.actual.to_string()
    } else {
        String::new()
    };
    [
        time,
        actual,
        row.predicted.to_string(),
        row.lower.to_string(),
        row.upper.to_string(),
        model.to_string(),
    ]
}

#[cfg(test)]
mod default_model_tests {
    use se_analytics::forecast::DEFAULT_MODELS;

    use super::*;

    #[test]
    fn model_list_matches_default_models() {
        assert_eq!(DEFAULT_MODEL_LIST, DEFAULT_MODELS.join(","));
    }
}
