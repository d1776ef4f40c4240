//! Exponential smoothing models from the `augurs` crate: MSTL with an AutoETS
//! trend, and non-seasonal AutoETS.
//!
//! Periods are given explicitly: automatic period detection can return 23
//! instead of 24 on a clean daily cycle.

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Predict};
use jiff::Timestamp;

use super::{check_continuity, FittedForecaster, Forecast, Forecaster, FutureFrame, HistoryWindow};
use crate::error::{AnalyticsError, Result};

/// MSTL decomposition into one seasonal component per period plus a trend.
/// AutoETS without season forecasts the trend (with the remainder), and the
/// last cycle of each seasonal component is repeated. Prediction intervals
/// come from the trend model, so they ignore uncertainty in the seasonal
/// components.
#[derive(Debug, Clone)]
pub struct MstlForecaster {
    periods: Vec<usize>,
    window_hours: usize,
}

impl MstlForecaster {
    /// `window_hours` bounds the history used per fit, so fitting time stays
    /// flat as history grows and the seasonal shape follows recent weeks. It
    /// is raised to two cycles of the longest period if smaller.
    pub fn new(periods: Vec<usize>, window_hours: usize) -> Self {
        let longest = periods.iter().copied().max().unwrap_or(1);
        Self {
            periods,
            window_hours: window_hours.max(2 * longest),
        }
    }
}

impl Forecaster for MstlForecaster {
    fn name(&self) -> &str {
        "mstl"
    }

    /// STL needs two full cycles of the longest period.
    fn min_history_hours(&self) -> usize {
        2 * self.periods.iter().copied().max().unwrap_or(1)
    }

    fn fit(&self, history: &HistoryWindow<'_>) -> Result<Box<dyn FittedForecaster>> {
        let values = history.tail(self.window_hours).values();
        let model = MSTLModel::new(
            self.periods.clone(),
            AutoETS::non_seasonal().into_trend_model(),
        );
        let fitted = model
            .fit(values)
            .map_err(|error| failed(self.name(), error))?;
        Ok(Box::new(FittedAugurs {
            name: "mstl",
            model: Box::new(fitted),
            history_end: history.end_timestamp(),
        }))
    }
}

/// AutoETS search over error, trend and damping, without a seasonal
/// component, fitted on the last `window_hours` hours. augurs-ets 0.10 does
/// not implement seasonal ETS, so this is a level-and-trend baseline; `mstl`
/// is the seasonal model built on it.
#[derive(Debug, Clone)]
pub struct EtsForecaster {
    window_hours: usize,
}

impl EtsForecaster {
    pub fn new(window_hours: usize) -> Self {
        Self {
            window_hours: window_hours.max(MIN_ETS_HISTORY),
        }
    }
}

/// Enough points for AutoETS to fit a damped trend (it requires more than
/// four points beyond its parameter count).
const MIN_ETS_HISTORY: usize = 24;

impl Forecaster for EtsForecaster {
    fn name(&self) -> &str {
        "ets"
    }

    fn min_history_hours(&self) -> usize {
        MIN_ETS_HISTORY
    }

    fn fit(&self, history: &HistoryWindow<'_>) -> Result<Box<dyn FittedForecaster>> {
        let values = history.tail(self.window_hours).values();
        let fitted = AutoETS::non_seasonal()
            .fit(values)
            .map_err(|error| failed(self.name(), error))?;
        Ok(Box::new(FittedAugurs {
            name: "ets",
            model: Box::new(fitted),
            history_end: history.end_timestamp(),
        }))
    }
}

/// Object-safe view of an augurs fitted model.
trait AugursPredict: Send + Sync {
    fn forecast(&self, horizon: usize, level: f64)
        -> std::result::Result<augurs::Forecast, String>;
}

impl<T> AugursPredict for T
where
    T: Predict + Send + Sync,
{
    fn forecast(
        &self,
        horizon: usize,
        level: f64,
    ) -> std::result::Result<augurs::Forecast, String> {
        self.predict(horizon, level)
            .map_err(|error| error.to_string())
    }
}

struct FittedAugurs {
    name: &'static str,
    model: Box<dyn AugursPredict>,
    history_end: Timestamp,
}

impl FittedForecaster for FittedAugurs {
    fn predict(&self, future: &FutureFrame<'_>, level: f64) -> Result<Forecast> {
        check_continuity(self.name, self.history_end, future)?;
        let forecast = self
            .model
            .forecast(future.len(), level)
            .map_err(|reason| failed(self.name, reason))?;
        // NOTE: augurs returns intervals whenever a level is given; if a
        // future version does not, the interval collapses to the point.
        let (lower, upper) = match forecast.intervals {
            Some(intervals) => (intervals.lower, intervals.upper),
            None => (forecast.point.clone(), forecast.point.clone()),
        };
        Ok(Forecast {
            point: forecast.point,
            lower,
            upper,
            level,
        })
    }
}

fn failed(model: &str, reason: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::ModelFailed {
        model: model.to_string(),
        reason: reason.to_string(),
    }
}
