//! Hourly forecasting models behind one interface.
//!
//! A [`Forecaster`] is an unfitted model specification. [`Forecaster::fit`]
//! reads a window of history and returns a [`FittedForecaster`] that contains
//! everything it needs to predict, because it gets no access to the history
//! again. Its [`FittedForecaster::predict`] gets a [`FutureFrame`] that
//! exposes the times and feature values (such as temperature) of the hours
//! to forecast, but not their actual values.

mod ets;
mod naive;
mod regression;

use std::collections::BTreeSet;
use std::ops::Range;

use distrs::Normal;
use jiff::civil::Date;
use jiff::{Timestamp, ZonedDateTime};
use serde::Serialize;

use crate::error::{AnalyticsError, Result};
use crate::series::HourlySeries;

pub use ets::{EtsForecaster, MstlForecaster, MstlTrend};
pub use naive::{MeanForecaster, SeasonalNaive};
pub use regression::CalendarRegression;

/// Hours per day and per week, the seasonal periods of hourly energy data.
pub const DAY: usize = 24;
pub const WEEK: usize = 168;

/// Point forecasts with a prediction interval at `level` (for example 0.95
/// for a 95 % interval), one entry per forecast hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub level: f64,
}

/// An unfitted model.
pub trait Forecaster: Send + Sync {
    /// Short name used on the command line and in reports.
    fn name(&self) -> &str;

    /// Minimum hours of history that [`Forecaster::fit`] accepts.
    fn min_history_hours(&self) -> usize;

    /// Fits the model on `history`.
    fn fit(&self, history: &HistoryWindow<'_>) -> Result<Box<dyn FittedForecaster>>;
}

/// A fitted model: it predicts the hours that directly follow its history.
pub trait FittedForecaster: Send + Sync {
    /// Forecasts every hour of `future` with intervals at `level`.
    ///
    /// # Errors
    /// [`AnalyticsError::ModelFailed`] when `future` does not start right after
    /// the history, or when the underlying library fails.
    fn predict(&self, future: &FutureFrame<'_>, level: f64) -> Result<Forecast>;
}

/// Hours `range` of a series, with values, used for fitting.
#[derive(Debug, Clone, Copy)]
pub struct HistoryWindow<'a> {
    series: &'a HourlySeries,
    range: (usize, usize),
}

impl<'a> HistoryWindow<'a> {
    /// Creates a window over `range`, clamped to the series.
    pub fn new(series: &'a HourlySeries, range: Range<usize>) -> Self {
        let end = range.end.min(series.len());
        Self {
            series,
            range: (range.start.min(end), end),
        }
    }

    pub fn len(&self) -> usize {
        self.range.1 - self.range.0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn values(&self) -> &'a [f64] {
        &self.series.values()[self.range.0..self.range.1]
    }

    /// Values of each feature column over the window, in series order.
    pub fn feature_values(&self) -> Vec<(&'a str, &'a [f64])> {
        self.series
            .features()
            .iter()
            .map(|feature| {
                (
                    feature.name.as_str(),
                    &feature.values[self.range.0..self.range.1],
                )
            })
            .collect()
    }

    /// Local start time of the `offset`-th hour of the window.
    pub fn zoned_at(&self, offset: usize) -> ZonedDateTime {
        self.series.zoned_at(self.range.0 + offset)
    }

    /// Returns the last `hours` hours of this window (all of it if shorter).
    pub fn tail(&self, hours: usize) -> Self {
        let start = self.range.1.saturating_sub(hours).max(self.range.0);
        Self {
            series: self.series,
            range: (start, self.range.1),
        }
    }

    /// Instant of the hour right after the window, where a forecast starts.
    pub fn end_timestamp(&self) -> Timestamp {
        self.series.timestamp_at(self.range.1)
    }
}

/// Hours to forecast: times and feature values, without actual values.
#[derive(Debug, Clone, Copy)]
pub struct FutureFrame<'a> {
    series: &'a HourlySeries,
    range: (usize, usize),
}

impl<'a> FutureFrame<'a> {
    pub fn new(series: &'a HourlySeries, range: Range<usize>) -> Self {
        let end = range.end.min(series.len());
        Self {
            series,
            range: (range.start.min(end), end),
        }
    }

    pub fn len(&self) -> usize {
        self.range.1 - self.range.0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn start_timestamp(&self) -> Timestamp {
        self.series.timestamp_at(self.range.0)
    }

    pub fn zoned_at(&self, offset: usize) -> ZonedDateTime {
        self.series.zoned_at(self.range.0 + offset)
    }

    /// Values of each feature column over the frame, in series order.
    pub fn feature_values(&self) -> Vec<(&'a str, &'a [f64])> {
        self.series
            .features()
            .iter()
            .map(|feature| {
                (
                    feature.name.as_str(),
                    &feature.values[self.range.0..self.range.1],
                )
            })
            .collect()
    }
}

/// Checks that a forecast starts where the fitted history ended.
fn check_continuity(model: &str, history_end: Timestamp, future: &FutureFrame<'_>) -> Result<()> {
    if future.start_timestamp() != history_end {
        return Err(AnalyticsError::ModelFailed {
            model: model.to_string(),
            reason: format!(
                "the forecast starts at {} but the history ended at {history_end}; fit on the hours right before the forecast",
                future.start_timestamp()
            ),
        });
    }
    Ok(())
}

/// Two-sided standard normal quantile for `level`, such as 1.96 for 0.95.
fn normal_quantile(level: f64) -> f64 {
    Normal::ppf(0.5 + level / 2.0, 0.0, 1.0)
}

/// Validates a prediction interval level.
pub fn check_level(level: f64) -> Result<f64> {
    if level > 0.0 && level < 1.0 {
        Ok(level)
    } else {
        Err(AnalyticsError::InvalidLevel { value: level })
    }
}

/// Options shared by the models that [`model_by_name`] builds.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Local dates treated as holidays by the calendar regression.
    pub holidays: BTreeSet<Date>,
}

/// Model names accepted by [`model_by_name`].
pub const MODEL_NAMES: [&str; 6] = ["mean", "naive", "naive-weekly", "regression", "mstl", "ets"];

/// Models run when the operator names none.
pub const DEFAULT_MODELS: [&str; 4] = ["naive", "naive-weekly", "regression", "mstl"];

/// Builds a model from its command-line name:
/// - `mean`: mean of the last four weeks, a flat baseline;
/// - `naive`: seasonal naive with a daily period (same hour yesterday);
/// - `naive-weekly`: seasonal naive with a weekly period (same hour last week);
/// - `regression`: least squares on hour of day, weekend, holidays and the
///   feature columns, fitted on the last four weeks;
/// - `mstl`: MSTL decomposition with 24 h and 168 h periods and a naive
///   (random walk) trend, fitted on the last eight weeks;
/// - `ets`: AutoETS without season (augurs has no seasonal ETS), a level
///   and trend baseline.
pub fn model_by_name(name: &str, options: &ModelOptions) -> Result<Box<dyn Forecaster>> {
    let model: Box<dyn Forecaster> = match name.trim() {
        "mean" => Box::new(MeanForecaster::new(4 * WEEK)),
        "naive" => Box::new(SeasonalNaive::new("naive", DAY)),
        "naive-weekly" => Box::new(SeasonalNaive::new("naive-weekly", WEEK)),
        "regression" => Box::new(CalendarRegression::new(4 * WEEK, options.holidays.clone())),
        "mstl" => Box::new(MstlForecaster::new(vec![DAY, WEEK], 8 * WEEK)),
        "ets" => Box::new(EtsForecaster::new(4 * WEEK)),
        other => {
            return Err(AnalyticsError::UnknownModel {
                name: other.to_string(),
                known: MODEL_NAMES.iter().map(|name| name.to_string()).collect(),
            })
        }
    };
    Ok(model)
}
