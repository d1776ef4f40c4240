//! Rolling-origin backtest.
//!
//! Origins are the local midnights of each day from the start date while a
//! full horizon of data follows. At each origin every model is fitted on all
//! hours before it (each model may keep only its own recent window) and
//! forecasts the next `horizon_hours` hours. Errors are measured on hours that
//! had readings; interpolated hours are forecast but not scored.
//!
//! The best model is the one with the lowest MAPE. When an actual value in
//! the scored hours is zero MAPE is undefined, so MAE decides instead. A model
//! that failed on any origin is reported but not chosen.

use jiff::civil::{Date, Time};
use jiff::Timestamp;
use serde::Serialize;

use crate::error::{AnalyticsError, Result};
use crate::forecast::{check_level, Forecaster, FutureFrame, HistoryWindow};
use crate::metrics::ErrorMetrics;
use crate::series::HourlySeries;

/// Start date, horizon and interval level of a backtest.
#[derive(Debug, Clone, Copy)]
pub struct BacktestConfig {
    /// Local date of the first origin.
    pub from: Date,
    pub horizon_hours: usize,
    /// Prediction interval level, such as 0.95.
    pub level: f64,
}

/// One forecast hour of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PredictionRow {
    pub origin: Timestamp,
    pub time: Timestamp,
    pub actual: f64,
    /// `false` when `actual` was interpolated over a gap in the data.
    pub observed: bool,
    pub predicted: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Results of one model over all origins.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    pub name: String,
    pub predictions: Vec<PredictionRow>,
    /// Errors over observed hours; `None` when no hour was scored.
    pub metrics: Option<ErrorMetrics>,
    /// Fraction of observed hours inside the prediction interval.
    pub interval_coverage: Option<f64>,
    /// Origins where fitting or predicting failed, with the reason.
    pub failures: Vec<(Timestamp, String)>,
}

/// Measure that chose the best model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SelectionMetric {
    Mape,
    /// Used when an actual value is zero, which leaves MAPE undefined.
    Mae,
}

/// Outcome of a backtest.
#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    pub origins: Vec<Timestamp>,
    pub horizon_hours: usize,
    pub level: f64,
    pub models: Vec<ModelResult>,
    pub selection: SelectionMetric,
    /// Index into `models` of the chosen model; `None` if every model failed.
    pub best: Option<usize>,
}

impl BacktestReport {
    pub fn best_model(&self) -> Option<&ModelResult> {
        self.best.and_then(|index| self.models.get(index))
    }
}

/// Progress of a running backtest, reported after each origin.
#[derive(Debug, Clone, Copy)]
pub struct BacktestProgress {
    pub origins_done: usize,
    pub origins_total: usize,
}

/// Series indices of the backtest origins: local midnights from `from` while
/// `horizon_hours` hours of data follow.
pub fn plan_origins(series: &HourlySeries, from: Date, horizon_hours: usize) -> Vec<usize> {
    let mut origins = Vec::new();
    let mut date = from;
    loop {
        let Ok(midnight) = date.to_zoned_datetime(series.time_zone().clone()) else {
            break;
        };
        let instant = midnight.timestamp();
        if let Some(index) = series.index_of(instant) {
            if index + horizon_hours > series.len() {
                break;
            }
            origins.push(index);
        } else if instant > series.timestamp_at(series.len()) {
            break;
        }
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    origins
}

/// Runs every model at every origin and scores them.
///
/// # Errors
/// An invalid level, no origin with a full horizon, or a first origin with
/// less history than a model needs. A model failing at an origin is recorded
/// in its [`ModelResult::failures`], not returned as an error.
pub fn run_backtest(
    series: &HourlySeries,
    models: &[Box<dyn Forecaster>],
    config: &BacktestConfig,
    progress: &mut dyn FnMut(BacktestProgress),
) -> Result<BacktestReport> {
    check_level(config.level)?;
    if config.horizon_hours == 0 {
        return Err(AnalyticsError::InvalidHorizon {
            value: "0h".to_string(),
        });
    }
    let origins = plan_origins(series, config.from, config.horizon_hours);
    let Some(&first_origin) = origins.first() else {
        return Err(AnalyticsError::NoBacktestWindows {
            from: config.from.to_string(),
            last: series.zoned_at(series.len().saturating_sub(1)).to_string(),
            horizon_hours: config.horizon_hours,
        });
    };
    check_history(series, models, first_origin)?;

    let mut results: Vec<ModelResult> = models
        .iter()
        .map(|model| ModelResult {
            name: model.name().to_string(),
            predictions: Vec::new(),
            metrics: None,
            interval_coverage: None,
            failures: Vec::new(),
        })
        .collect();
    for (done, &origin) in origins.iter().enumerate() {
        let history = HistoryWindow::new(series, 0..origin);
        let future = FutureFrame::new(series, origin..origin + config.horizon_hours);
        for (model, result) in models.iter().zip(results.iter_mut()) {
            run_one(
                series,
                model.as_ref(),
                &history,
                &future,
                origin,
                config.level,
                result,
            );
        }
        progress(BacktestProgress {
            origins_done: done + 1,
            origins_total: origins.len(),
        });
    }

    for result in &mut results {
        score(result);
        if let Some((origin, reason)) = result.failures.first() {
            tracing::warn!(
                model = %result.name,
                failures = result.failures.len(),
                first_origin = %origin,
                first_error = %reason,
                "model failed at some backtest origins"
            );
        }
    }
    let (selection, best) = choose_best(&results);
    Ok(BacktestReport {
        origins: origins
            .iter()
            .map(|&index| series.timestamp_at(index))
            .collect(),
        horizon_hours: config.horizon_hours,
        level: config.level,
        models: results,
        selection,
        best,
    })
}

fn check_history(
    series: &HourlySeries,
    models: &[Box<dyn Forecaster>],
    first_origin: usize,
) -> Result<()> {
    let Some(model) = models.iter().max_by_key(|model| model.min_history_hours()) else {
        return Err(AnalyticsError::UnknownModel {
            name: String::new(),
            known: crate::forecast::MODEL_NAMES
                .iter()
                .map(|name| name.to_string())
                .collect(),
        });
    };
    let needed = model.min_history_hours();
    if first_origin >= needed {
        return Ok(());
    }
    // Earliest valid start: the first local midnight at or after `needed` hours.
    let boundary = series.zoned_at(needed);
    let earliest = if boundary.time() == Time::midnight() {
        boundary.date()
    } else {
        boundary.date().tomorrow().unwrap_or(boundary.date())
    };
    Err(AnalyticsError::InsufficientHistory {
        model: model.name().to_string(),
        needed_hours: needed,
        available_hours: first_origin,
        earliest: earliest.to_string(),
    })
}

fn run_one(
    series: &HourlySeries,
    model: &dyn Forecaster,
    history: &HistoryWindow<'_>,
    future: &FutureFrame<'_>,
    origin: usize,
    level: f64,
    result: &mut ModelResult,
) {
    let origin_time = series.timestamp_at(origin);
    let forecast = model
        .fit(history)
        .and_then(|fitted| fitted.predict(future, level));
    let forecast = match forecast {
        Ok(forecast) => forecast,
        Err(error) => {
            result.failures.push((origin_time, error.to_string()));
            return;
        }
    };
    let steps = forecast.point.len().min(future.len());
    for step in 0..steps {
        let index = origin + step;
        result.predictions.push(PredictionRow {
            origin: origin_time,
            time: series.timestamp_at(index),
            actual: series.values()[index],
            observed: series.observed()[index],
            predicted: forecast.point[step],
            lower: forecast.lower[step],
            upper: forecast.upper[step],
        });
    }
}

fn score(result: &mut ModelResult) {
    let scored: Vec<&PredictionRow> = result
        .predictions
        .iter()
        .filter(|row| row.observed)
        .collect();
    let actual: Vec<f64> = scored.iter().map(|row| row.actual).collect();
    let predicted: Vec<f64> = scored.iter().map(|row| row.predicted).collect();
    result.metrics = ErrorMetrics::compute(&actual, &predicted);
    if !scored.is_empty() {
        let inside = scored
            .iter()
            .filter(|row| row.lower <= row.actual && row.actual <= row.upper)
            .count();
        result.interval_coverage = Some(inside as f64 / scored.len() as f64);
    }
}

fn choose_best(results: &[ModelResult]) -> (SelectionMetric, Option<usize>) {
    let candidates: Vec<(usize, ErrorMetrics)> = results
        .iter()
        .enumerate()
        .filter(|(_, result)| result.failures.is_empty())
        .filter_map(|(index, result)| result.metrics.map(|metrics| (index, metrics)))
        .collect();
    let all_have_mape = candidates.iter().all(|(_, metrics)| metrics.mape.is_some());
    let (selection, key): (SelectionMetric, fn(&ErrorMetrics) -> f64) = if all_have_mape {
        (SelectionMetric::Mape, |metrics| {
            metrics.mape.unwrap_or(f64::INFINITY)
        })
    } else {
        (SelectionMetric::Mae, |metrics| metrics.mae)
    };
    let best = candidates
        .iter()
        .min_by(|(_, a), (_, b)| key(a).total_cmp(&key(b)))
        .map(|(index, _)| *index);
    (selection, best)
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;
    use crate::forecast::{model_by_name, ModelOptions, DAY, WEEK};

    /// Hourly series from 2024-01-01 00:00 UTC: a daily sine of amplitude 50
    /// around 500 plus deterministic noise of about ±5.
    fn daily_sine(days: usize) -> HourlySeries {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let values = (0..days * DAY)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * (i % DAY) as f64 / DAY as f64;
                // Fractional part of i·φ (golden ratio) is evenly spread in [0, 1).
                let noise = 10.0 * ((i as f64 * 0.618_033_988_75).fract() - 0.5);
                500.0 + 50.0 * phase.sin() + noise
            })
            .collect();
        HourlySeries::from_hourly(start, TimeZone::UTC, values, Vec::new())
    }

    fn models(names: &[&str]) -> Vec<Box<dyn Forecaster>> {
        names
            .iter()
            .map(|name| model_by_name(name, &ModelOptions::default()).unwrap())
            .collect()
    }

    fn config(from: &str) -> BacktestConfig {
        BacktestConfig {
            from: from.parse().unwrap(),
            horizon_hours: 24,
            level: 0.95,
        }
    }

    fn mae(report: &BacktestReport, name: &str) -> f64 {
        let result = report
            .models
            .iter()
            .find(|result| result.name == name)
            .unwrap();
        result.metrics.unwrap().mae
    }

    #[test]
    fn origins_cover_each_full_day() {
        // 30 days of data: origins on Jan 20..=30 are the 11 midnights with 24 h after them.
        let series = daily_sine(30);
        let origins = plan_origins(&series, "2024-01-20".parse().unwrap(), 24);
        assert_eq!(origins.len(), 11);
        assert_eq!(origins[0], 19 * DAY);
    }

    #[test]
    fn longer_horizon_drops_last_origin() {
        let series = daily_sine(30);
        let origins = plan_origins(&series, "2024-01-20".parse().unwrap(), 48);
        assert_eq!(origins.len(), 10);
    }

    #[test]
    fn backtest_counts_windows_and_rows() {
        let series = daily_sine(30);
        let report = run_backtest(
            &series,
            &models(&["naive", "mean"]),
            &config("2024-01-20"),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(report.origins.len(), 11);
        assert_eq!(report.models[0].predictions.len(), 11 * 24);
    }

    #[test]
    fn progress_reaches_total() {
        let series = daily_sine(30);
        let mut last = None;
        run_backtest(
            &series,
            &models(&["naive"]),
            &config("2024-01-20"),
            &mut |progress| last = Some(progress),
        )
        .unwrap();
        let last = last.unwrap();
        assert_eq!(last.origins_done, last.origins_total);
    }

    #[test]
    fn seasonal_naive_beats_flat_mean() {
        let series = daily_sine(30);
        let report = run_backtest(
            &series,
            &models(&["naive", "mean"]),
            &config("2024-01-20"),
            &mut |_| {},
        )
        .unwrap();
        assert!(
            mae(&report, "naive") < mae(&report, "mean"),
            "{:?}",
            report.models[0].metrics
        );
    }

    #[test]
    fn mstl_beats_flat_mean() {
        // MSTL needs two weekly cycles, so 5 weeks of data and 2 weeks of origins.
        let series = daily_sine(35);
        let report = run_backtest(
            &series,
            &models(&["mstl", "mean"]),
            &config("2024-01-22"),
            &mut |_| {},
        )
        .unwrap();
        assert!(mae(&report, "mstl") < mae(&report, "mean"));
    }

    #[test]
    fn best_model_has_lowest_mape() {
        let series = daily_sine(30);
        let report = run_backtest(
            &series,
            &models(&["mean", "naive"]),
            &config("2024-01-20"),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(report.selection, SelectionMetric::Mape);
        assert_eq!(report.best_model().unwrap().name, "naive");
    }

    #[test]
    fn zero_actual_selects_by_mae() {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let values: Vec<f64> = (0..10 * DAY).map(|i| (i % DAY) as f64).collect();
        let series = HourlySeries::from_hourly(start, TimeZone::UTC, values, Vec::new());
        let report = run_backtest(
            &series,
            &models(&["mean", "naive"]),
            &config("2024-01-05"),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(report.selection, SelectionMetric::Mae);
    }

    #[test]
    fn early_start_names_earliest_date() {
        let series = daily_sine(30);
        let error = run_backtest(
            &series,
            &models(&["naive-weekly"]),
            &config("2024-01-03"),
            &mut |_| {},
        )
        .unwrap_err();
        match error {
            AnalyticsError::InsufficientHistory {
                needed_hours,
                earliest,
                ..
            } => {
                assert_eq!(needed_hours, 2 * WEEK);
                assert_eq!(earliest, "2024-01-15");
            }
            other => panic!("expected InsufficientHistory, got {other:?}"),
        }
    }

    #[test]
    fn start_after_data_rejected() {
        let series = daily_sine(30);
        let error = run_backtest(
            &series,
            &models(&["naive"]),
            &config("2024-03-01"),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(error, AnalyticsError::NoBacktestWindows { .. }));
    }

    #[test]
    fn interpolated_hours_are_not_scored() {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let values: Vec<f64> = (0..10 * DAY).map(|i| 1.0 + (i % DAY) as f64).collect();
        let mut series = HourlySeries::from_hourly(start, TimeZone::UTC, values, Vec::new());
        series.mark_unobserved(9 * DAY);
        let report = run_backtest(
            &series,
            &models(&["naive"]),
            &config("2024-01-10"),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(report.models[0].metrics.unwrap().count, 23);
    }
}
