//! Forecasts of one hourly series with the model chosen by a backtest on
//! that series, as the server runs them for sites and devices.
//!
//! The candidates are the flat mean, the daily and weekly seasonal naive
//! forecasts, the calendar regression and MSTL. A rolling-origin backtest
//! over the most recent local midnights scores them, and the best one is
//! then fitted on the whole series to forecast the hours right after it.
//! Models that need more history than the series has are left out, and the
//! result lists each one in a [`ForecastNotice`] with an English and a
//! French message.

use jiff::Timestamp;
use se_core::Lang;
use serde::Serialize;

use crate::backtest::{plan_origins, run_backtest, BacktestConfig, BacktestReport, SelectionMetric};
use crate::error::{AnalyticsError, Result};
use crate::forecast::{check_level, model_by_name, Forecaster, FutureFrame, HistoryWindow, ModelOptions};
use crate::series::HourlySeries;

/// Candidate models, by name as [`model_by_name`] accepts them.
pub const CANDIDATE_MODELS: [&str; 5] = ["mean", "naive", "regression", "naive-weekly", "mstl"];

/// Horizon, interval level and backtest size of an automatic forecast.
#[derive(Debug, Clone, Copy)]
pub struct AutoForecastConfig {
    pub horizon_hours: usize,
    /// Prediction interval level, such as 0.95.
    pub level: f64,
    /// Most recent backtest origins (one per local midnight) to score on.
    pub max_backtest_days: usize,
    /// A model is left out when keeping it would leave fewer origins than
    /// this for every model, unless it is the only model left.
    pub min_backtest_days: usize,
}

impl AutoForecastConfig {
    /// Fourteen days of backtests at most, three at least, 95 % intervals.
    pub fn new(horizon_hours: usize) -> Self {
        Self {
            horizon_hours,
            level: 0.95,
            max_backtest_days: 14,
            min_backtest_days: 3,
        }
    }
}

/// Backtest accuracy of one candidate model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAccuracy {
    pub model: String,
    /// Mean absolute error, in the unit of the series.
    pub mae: Option<f64>,
    /// Root mean squared error, in the unit of the series.
    pub rmse: Option<f64>,
    /// Mean absolute percentage error in percent; `None` when an actual value is zero.
    pub mape: Option<f64>,
    /// Fraction of observed hours inside the prediction interval.
    pub interval_coverage: Option<f64>,
    /// Backtest origins where the model failed to fit or predict.
    pub failures: usize,
}

/// Fact about how a forecast was made, shown to the operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum ForecastNotice {
    /// A candidate model needs more history than the series has.
    ModelSkipped {
        model: String,
        /// Hours the model needs for the minimum number of backtest days (an estimate:
        /// origins fall on local midnights, which can add up to 23 hours).
        needed_hours: usize,
        available_hours: usize,
    },
    /// No backtest origin fits in the series, so the model was chosen without accuracy figures.
    NoBacktest { model: String, available_hours: usize },
    /// The best model failed on the whole series, and the next one was used.
    ModelFailed { model: String, used: String },
}

impl ForecastNotice {
    /// Formats the notice in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (ForecastNotice::ModelSkipped { model, needed_hours, available_hours }, Lang::En) => format!(
                "Model {model} was left out: it needs about {needed_hours} hours of history for its backtests, and the series has {available_hours}."
            ),
            (ForecastNotice::ModelSkipped { model, needed_hours, available_hours }, Lang::Fr) => format!(
                "Le modèle {model} a été écarté : il lui faut environ {needed_hours} heures d'historique pour ses backtests, et la série en a {available_hours}."
            ),
            (ForecastNotice::NoBacktest { model, available_hours }, Lang::En) => format!(
                "The series has only {available_hours} hours, too few for a backtest, so model {model} was used without accuracy figures."
            ),
            (ForecastNotice::NoBacktest { model, available_hours }, Lang::Fr) => format!(
                "La série n'a que {available_hours} heures, trop peu pour un backtest : le modèle {model} a été utilisé sans mesure de précision."
            ),
            (ForecastNotice::ModelFailed { model, used }, Lang::En) => format!(
                "Model {model} had the best backtest but failed on the whole history, so model {used} was used."
            ),
            (ForecastNotice::ModelFailed { model, used }, Lang::Fr) => format!(
                "Le modèle {model} avait le meilleur backtest mais a échoué sur tout l'historique : le modèle {used} a été utilisé."
            ),
        }
    }
}

/// A forecast of the hours right after a series, with the backtest behind it.
#[derive(Debug, Clone, Serialize)]
pub struct AutoForecast {
    /// Model that made `point`, `lower` and `upper`.
    pub model: String,
    /// Start of the first forecast hour, right after the series.
    pub start: Timestamp,
    pub horizon_hours: usize,
    pub level: f64,
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// Number of backtest origins (days) behind `accuracy`; 0 without a backtest.
    pub backtest_days: usize,
    /// Measure that chose the model; `None` without a backtest.
    pub selection: Option<SelectionMetric>,
    /// Accuracy of every model that took part in the backtest.
    pub accuracy: Vec<ModelAccuracy>,
    pub notices: Vec<ForecastNotice>,
}

impl AutoForecast {
    /// Accuracy of the model that made the forecast, if it was backtested.
    pub fn chosen_accuracy(&self) -> Option<&ModelAccuracy> {
        self.accuracy.iter().find(|accuracy| accuracy.model == self.model)
    }
}

/// Chooses a model by backtest and forecasts the `horizon_hours` hours after `series`.
///
/// Forecast values below zero are raised to zero, because the series are
/// energy or power drawn, which is never negative.
///
/// # Errors
/// An invalid level or horizon, a series of fewer than 2 hours
/// ([`AnalyticsError::InsufficientHistory`]), or every model failing on
/// the whole series ([`AnalyticsError::ModelFailed`] of the last one tried).
pub fn forecast_auto(series: &HourlySeries, config: &AutoForecastConfig) -> Result<AutoForecast> {
    let level = check_level(config.level)?;
    let horizon = config.horizon_hours;
    if horizon == 0 {
        return Err(AnalyticsError::InvalidHorizon { value: "0h".to_string() });
    }
    let options = ModelOptions::default();
    let mut candidates = CANDIDATE_MODELS
        .iter()
        .map(|name| model_by_name(name, &options))
        .collect::<Result<Vec<_>>>()?;
    candidates.sort_by_key(|model| model.min_history_hours());
    let shortest = candidates.first().map_or(2, |model| model.min_history_hours());
    if series.len() < shortest {
        return Err(AnalyticsError::InsufficientHistory {
            model: "mean".to_string(),
            needed_hours: shortest,
            available_hours: series.len(),
            earliest: series.zoned_at(shortest).date().to_string(),
        });
    }

    let mut notices = Vec::new();
    let (report, origins) = backtest_candidates(series, &mut candidates, config, &mut notices)?;
    let order = fit_order(&candidates, report.as_ref(), series.len(), &mut notices);
    let (model, forecast) = fit_first_that_works(series, &candidates, &order, horizon, level, &mut notices)?;

    let clamp = |values: Vec<f64>| values.into_iter().map(|value| value.max(0.0)).collect();
    Ok(AutoForecast {
        model,
        start: series.timestamp_at(series.len()),
        horizon_hours: horizon,
        level,
        point: clamp(forecast.point),
        lower: clamp(forecast.lower),
        upper: clamp(forecast.upper),
        backtest_days: origins,
        selection: report.as_ref().map(|report| report.selection),
        accuracy: report.as_ref().map(accuracy_of).unwrap_or_default(),
        notices,
    })
}

/// Runs the backtest on the most demanding set of candidates that still
/// leaves enough origins, dropping the others from `candidates`. Returns
/// `None` when not even the least demanding model has an origin.
fn backtest_candidates(
    series: &HourlySeries,
    candidates: &mut Vec<Box<dyn Forecaster>>,
    config: &AutoForecastConfig,
    notices: &mut Vec<ForecastNotice>,
) -> Result<(Option<BacktestReport>, usize)> {
    let first_date = series.zoned_at(0).date();
    let all_origins = plan_origins(series, first_date, config.horizon_hours);
    let recent = &all_origins[all_origins.len().saturating_sub(config.max_backtest_days)..];
    let usable = |needed: usize| recent.iter().copied().filter(|&origin| origin >= needed).collect::<Vec<_>>();

    while let Some(most_demanding) = candidates.last() {
        let needed = most_demanding.min_history_hours();
        let origins = usable(needed);
        let enough = origins.len() >= config.min_backtest_days.max(1);
        if enough || (candidates.len() == 1 && !origins.is_empty()) {
            let from = series.zoned_at(origins[0]).date();
            let backtest = BacktestConfig {
                from,
                horizon_hours: config.horizon_hours,
                level: config.level,
            };
            let report = run_backtest(series, candidates, &backtest, &mut |_| {})?;
            let count = report.origins.len();
            return Ok((Some(report), count));
        }
        if candidates.len() == 1 {
            // One notice that no backtest was possible replaces the list of skipped models.
            notices.retain(|notice| !matches!(notice, ForecastNotice::ModelSkipped { .. }));
            return Ok((None, 0));
        }
        let needed_hours = needed + (config.min_backtest_days.max(1) - 1) * 24 + config.horizon_hours;
        notices.push(ForecastNotice::ModelSkipped {
            model: most_demanding.name().to_string(),
            needed_hours,
            available_hours: series.len(),
        });
        candidates.pop();
    }
    Ok((None, 0))
}

/// Indices into `candidates` in the order to try them on the whole series:
/// by backtest score, failed models last. Without a backtest, the most
/// demanding model that the series supports comes first.
fn fit_order(
    candidates: &[Box<dyn Forecaster>],
    report: Option<&BacktestReport>,
    available_hours: usize,
    notices: &mut Vec<ForecastNotice>,
) -> Vec<usize> {
    let Some(report) = report else {
        let mut order: Vec<usize> = (0..candidates.len())
            .filter(|&index| candidates[index].min_history_hours() <= available_hours)
            .collect();
        order.reverse();
        if let Some(&first) = order.first() {
            notices.push(ForecastNotice::NoBacktest {
                model: candidates[first].name().to_string(),
                available_hours,
            });
        }
        return order;
    };
    let score = |index: usize| -> f64 {
        let result = &report.models[index];
        if !result.failures.is_empty() {
            return f64::INFINITY;
        }
        result.metrics.map_or(f64::INFINITY, |metrics| match report.selection {
            SelectionMetric::Mape => metrics.mape.unwrap_or(f64::INFINITY),
            SelectionMetric::Mae => metrics.mae,
        })
    };
    let mut order: Vec<usize> = (0..report.models.len()).collect();
    order.sort_by(|&a, &b| score(a).total_cmp(&score(b)));
    // The report's own choice wins ties, so the result names the model the backtest chose.
    if let Some(best) = report.best {
        order.retain(|&index| index != best);
        order.insert(0, best);
    }
    order
}

fn fit_first_that_works(
    series: &HourlySeries,
    candidates: &[Box<dyn Forecaster>],
    order: &[usize],
    horizon: usize,
    level: f64,
    notices: &mut Vec<ForecastNotice>,
) -> Result<(String, crate::Forecast)> {
    // The models read only times from the future frame, so the extra hours
    // repeat the last value as a placeholder.
    let mut values = series.values().to_vec();
    let last = values.last().copied().unwrap_or(0.0);
    values.extend(std::iter::repeat_n(last, horizon));
    let extended = HourlySeries::from_hourly(series.timestamp_at(0), series.time_zone().clone(), values, Vec::new());
    let history = HistoryWindow::new(&extended, 0..series.len());
    let future = FutureFrame::new(&extended, series.len()..series.len() + horizon);

    let mut first_failed: Option<String> = None;
    let mut last_error: Option<AnalyticsError> = None;
    for &index in order {
        let model = &candidates[index];
        let outcome = model.fit(&history).and_then(|fitted| fitted.predict(&future, level));
        match outcome {
            Ok(forecast) => {
                if let Some(failed) = first_failed {
                    notices.push(ForecastNotice::ModelFailed {
                        model: failed,
                        used: model.name().to_string(),
                    });
                }
                return Ok((model.name().to_string(), forecast));
            }
            Err(error) => {
                tracing::warn!(model = model.name(), %error, "model failed on the whole series; trying the next one");
                first_failed.get_or_insert_with(|| model.name().to_string());
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| AnalyticsError::ModelFailed {
        model: "mean".to_string(),
        reason: "no model supports a series this short".to_string(),
    }))
}

fn accuracy_of(report: &BacktestReport) -> Vec<ModelAccuracy> {
    report
        .models
        .iter()
        .map(|result| ModelAccuracy {
            model: result.name.clone(),
            mae: result.metrics.map(|metrics| metrics.mae),
            rmse: result.metrics.map(|metrics| metrics.rmse),
            mape: result.metrics.and_then(|metrics| metrics.mape),
            interval_coverage: result.interval_coverage,
            failures: result.failures.len(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;
    use crate::forecast::{DAY, WEEK};

    /// Hourly series from 2024-01-01 00:00 UTC: a daily cycle between 300 and
    /// 700 with a weekday/weekend step and small deterministic noise.
    fn load(hours: usize) -> HourlySeries {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let values = (0..hours)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * (i % DAY) as f64 / DAY as f64;
                let weekend = if (i / DAY) % 7 >= 5 { -100.0 } else { 0.0 };
                let noise = 8.0 * ((i as f64 * 0.618_033_988_75).fract() - 0.5);
                500.0 + 200.0 * phase.sin() + weekend + noise
            })
            .collect();
        HourlySeries::from_hourly(start, TimeZone::UTC, values, Vec::new())
    }

    #[test]
    fn long_series_backtests_every_candidate() {
        let series = load(6 * WEEK);
        let result = forecast_auto(&series, &AutoForecastConfig::new(DAY)).unwrap();
        assert_eq!(result.accuracy.len(), CANDIDATE_MODELS.len());
        assert_eq!(result.backtest_days, 14);
        assert!(result.notices.is_empty(), "{:?}", result.notices);
        assert_ne!(result.model, "mean");
    }

    #[test]
    fn forecast_has_horizon_and_ordered_interval() {
        let series = load(5 * WEEK);
        let result = forecast_auto(&series, &AutoForecastConfig::new(WEEK)).unwrap();
        assert_eq!(result.point.len(), WEEK);
        assert_eq!(result.lower.len(), WEEK);
        assert_eq!(result.upper.len(), WEEK);
        for step in 0..WEEK {
            assert!(result.lower[step] <= result.point[step], "step {step}");
            assert!(result.point[step] <= result.upper[step], "step {step}");
        }
        assert_eq!(result.start, series.timestamp_at(series.len()));
    }

    #[test]
    fn chosen_model_has_lowest_score() {
        let series = load(6 * WEEK);
        let result = forecast_auto(&series, &AutoForecastConfig::new(DAY)).unwrap();
        let chosen = result.chosen_accuracy().unwrap().mape.unwrap();
        for accuracy in &result.accuracy {
            assert!(chosen <= accuracy.mape.unwrap(), "{} beats {}", accuracy.model, result.model);
        }
    }

    #[test]
    fn ten_days_skip_weekly_models() {
        let series = load(10 * DAY);
        let result = forecast_auto(&series, &AutoForecastConfig::new(DAY)).unwrap();
        let skipped: Vec<&str> = result
            .notices
            .iter()
            .filter_map(|notice| match notice {
                ForecastNotice::ModelSkipped { model, .. } => Some(model.as_str()),
                _ => None,
            })
            .collect();
        assert!(skipped.contains(&"mstl"), "{skipped:?}");
        assert!(skipped.contains(&"naive-weekly"), "{skipped:?}");
        assert!(result.backtest_days >= 3);
        assert!(result.accuracy.iter().any(|accuracy| accuracy.model == "naive"));
    }

    #[test]
    fn thirty_hours_use_mean_without_backtest() {
        let series = load(30);
        let result = forecast_auto(&series, &AutoForecastConfig::new(DAY)).unwrap();
        assert_eq!(result.model, "mean");
        assert_eq!(result.backtest_days, 0);
        assert!(result.accuracy.is_empty());
        assert!(
            matches!(result.notices[..], [ForecastNotice::NoBacktest { .. }]),
            "{:?}",
            result.notices
        );
        assert_eq!(result.point.len(), DAY);
    }

    #[test]
    fn one_hour_is_rejected() {
        let series = load(1);
        let error = forecast_auto(&series, &AutoForecastConfig::new(DAY)).unwrap_err();
        assert!(matches!(error, AnalyticsError::InsufficientHistory { .. }), "{error:?}");
    }

    #[test]
    fn negative_values_clamped_to_zero() {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let values = (0..4 * DAY).map(|i| if i % 2 == 0 { 0.0 } else { 40.0 }).collect();
        let series = HourlySeries::from_hourly(start, TimeZone::UTC, values, Vec::new());
        let result = forecast_auto(&series, &AutoForecastConfig::new(DAY)).unwrap();
        assert!(result.lower.iter().all(|&value| value >= 0.0));
    }

    #[test]
    fn notices_have_french_text() {
        let notice = ForecastNotice::NoBacktest {
            model: "mean".to_string(),
            available_hours: 30,
        };
        assert!(notice.message(Lang::Fr).contains("30 heures"));
        assert!(notice.message(Lang::En).contains("30 hours"));
    }
}
