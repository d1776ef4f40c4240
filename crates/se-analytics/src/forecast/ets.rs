//! Models from the `augurs` crate: MSTL with a naive or AutoETS trend, and
//! non-seasonal AutoETS.
//!
//! Periods are given explicitly: automatic period detection can return 23
//! instead of 24 on a clean daily cycle.

use augurs::ets::AutoETS;
use augurs::mstl::{MSTLModel, NaiveTrend};
use augurs::{Fit, Predict};
use jiff::Timestamp;

use super::{check_continuity, FittedForecaster, Forecast, Forecaster, FutureFrame, HistoryWindow};
use crate::error::{AnalyticsError, Result};

/// MSTL decomposition into one seasonal component per period plus a trend.
/// The trend model forecasts the trend plus the remainder, and the last cycle
/// of each seasonal component is repeated. Prediction intervals come from the
/// trend model, so they ignore uncertainty in the seasonal components.
#[derive(Debug, Clone)]
pub struct MstlForecaster {
    periods: Vec<usize>,
    window_hours: usize,
    trend: MstlTrend,
}

/// Model of the deseasonalised series (trend plus remainder) inside MSTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MstlTrend {
    /// Random walk: the last deseasonalised value, with intervals from the
    /// spread of its one-hour changes growing with √h.
    #[default]
    Naive,
    /// AutoETS without season (`ZZN` in augurs): additive or multiplicative
    /// error with no trend, an additive trend or a damped additive trend,
    /// whichever has the lowest AICc.
    AutoEts,
}

impl MstlForecaster {
    /// Creates an MSTL model with the [`MstlTrend::Naive`] trend.
    ///
    /// `window_hours` bounds the history used per fit, so fitting time stays
    /// flat as history grows and the seasonal shape follows recent weeks. It
    /// is raised to two cycles of the longest period if smaller.
    pub fn new(periods: Vec<usize>, window_hours: usize) -> Self {
        let longest = periods.iter().copied().max().unwrap_or(1);
        Self {
            periods,
            window_hours: window_hours.max(2 * longest),
            trend: MstlTrend::default(),
        }
    }

    /// Replaces the trend model.
    pub fn with_trend(mut self, trend: MstlTrend) -> Self {
        self.trend = trend;
        self
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
        // NOTE: the naive trend is the default because it matched the MAE and
        // MAPE of the AutoETS trend in day-ahead backtests on the two public
        // data sets of bench/FORECAST.md, in less than a tenth of the time per
        // fit (examples/mstl_trends.rs). A series with a steady slope over the
        // horizon could still do better with AutoEts, which can extrapolate it.
        let fitted = match self.trend {
            MstlTrend::Naive => MSTLModel::new(self.periods.clone(), NaiveTrend::new())
                .fit(values)
                .map_err(|error| failed(self.name(), error))?,
            MstlTrend::AutoEts => MSTLModel::new(
                self.periods.clone(),
                AutoETS::non_seasonal().into_trend_model(),
            )
            .fit(values)
            .map_err(|error| failed(self.name(), error))?,
        };
        Ok(Box::new(FittedAugurs {
            name: "mstl",
            model: Box::new(fitted),
            history_end: history.end_timestamp(),
        }))
    }
}

/// AutoETS search over error, trend and damping, without a seasonal
/// component, fitted on the last `window_hours` hours. augurs-ets 0.10 does
/// not implement seasonal ETS, so this is a level-and-trend baseline. The
/// seasonal model is `mstl`, which can use AutoETS for its trend
/// ([`MstlTrend::AutoEts`]).
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

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;
    use crate::forecast::{DAY, WEEK};
    use crate::series::HourlySeries;

    /// Four weeks of a daily and weekly pattern with a small deterministic
    /// wobble, from Monday 2024-01-01 00:00 UTC.
    fn seasonal_series() -> HourlySeries {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let values = (0..4 * WEEK)
            .map(|i| {
                let daily = (std::f64::consts::TAU * (i % DAY) as f64 / DAY as f64).sin();
                let weekend = if (i / DAY) % 7 >= 5 { -80.0 } else { 0.0 };
                let wobble = 4.0 * ((i as f64 * 0.618_033_988_75).fract() - 0.5);
                500.0 + 100.0 * daily + weekend + wobble
            })
            .collect();
        HourlySeries::from_hourly(start, TimeZone::UTC, values, Vec::new())
    }

    fn forecast_last_day(trend: MstlTrend) -> (Forecast, Vec<f64>) {
        let series = seasonal_series();
        let end = series.len();
        let model = MstlForecaster::new(vec![DAY, WEEK], 8 * WEEK).with_trend(trend);
        let fitted = model
            .fit(&HistoryWindow::new(&series, 0..end - DAY))
            .unwrap();
        let forecast = fitted
            .predict(&FutureFrame::new(&series, end - DAY..end), 0.95)
            .unwrap();
        (forecast, series.values()[end - DAY..].to_vec())
    }

    #[test]
    fn mstl_trends_follow_seasons() {
        for trend in [MstlTrend::Naive, MstlTrend::AutoEts] {
            let (forecast, actual) = forecast_last_day(trend);
            assert_eq!(forecast.point.len(), DAY, "{trend:?}");
            let mae = forecast
                .point
                .iter()
                .zip(&actual)
                .map(|(predicted, actual)| (predicted - actual).abs())
                .sum::<f64>()
                / DAY as f64;
            // The daily swing is ±100, so an MAE of 15 means both seasons were found.
            assert!(mae < 15.0, "{trend:?}: MAE {mae}");
        }
    }

    #[test]
    fn mstl_intervals_contain_points() {
        for trend in [MstlTrend::Naive, MstlTrend::AutoEts] {
            let (forecast, _) = forecast_last_day(trend);
            for step in 0..DAY {
                assert!(
                    forecast.lower[step] < forecast.point[step],
                    "{trend:?}: lower bound at step {step}"
                );
                assert!(
                    forecast.point[step] < forecast.upper[step],
                    "{trend:?}: upper bound at step {step}"
                );
            }
        }
    }
}
