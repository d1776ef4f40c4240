//! Baselines: the flat mean and the seasonal naive forecast.

use jiff::Timestamp;

use super::{
    check_continuity, normal_quantile, FittedForecaster, Forecast, Forecaster, FutureFrame,
    HistoryWindow,
};
use crate::error::{AnalyticsError, Result};

/// Forecasts the mean of the last `window_hours` hours for every future hour.
#[derive(Debug, Clone)]
pub struct MeanForecaster {
    window_hours: usize,
}

impl MeanForecaster {
    pub fn new(window_hours: usize) -> Self {
        Self {
            window_hours: window_hours.max(2),
        }
    }
}

impl Forecaster for MeanForecaster {
    fn name(&self) -> &str {
        "mean"
    }

    fn min_history_hours(&self) -> usize {
        2
    }

    fn fit(&self, history: &HistoryWindow<'_>) -> Result<Box<dyn FittedForecaster>> {
        let values = history.tail(self.window_hours).values();
        if values.len() < 2 {
            return Err(too_short(self.name(), 2, values.len()));
        }
        let count = values.len() as f64;
        let mean = values.iter().sum::<f64>() / count;
        let variance = values
            .iter()
            .map(|value| (value - mean).powi(2))
            .sum::<f64>()
            / (count - 1.0);
        Ok(Box::new(FittedMean {
            mean,
            // Variance of a new observation around an estimated mean.
            spread: (variance * (1.0 + 1.0 / count)).sqrt(),
            history_end: history.end_timestamp(),
        }))
    }
}

struct FittedMean {
    mean: f64,
    spread: f64,
    history_end: Timestamp,
}

impl FittedForecaster for FittedMean {
    fn predict(&self, future: &FutureFrame<'_>, level: f64) -> Result<Forecast> {
        check_continuity("mean", self.history_end, future)?;
        let half_width = normal_quantile(level) * self.spread;
        let hours = future.len();
        Ok(Forecast {
            point: vec![self.mean; hours],
            lower: vec![self.mean - half_width; hours],
            upper: vec![self.mean + half_width; hours],
            level,
        })
    }
}

/// Repeats the last observed season: the forecast for an hour is the value
/// `period` hours earlier (for a horizon beyond one period, the last period
/// repeats).
///
/// The interval uses the standard deviation σ of the in-sample one-season
/// differences `y[t] − y[t − period]`, with a normal quantile. At step h it
/// is widened by √(⌊(h − 1) / period⌋ + 1), the seasonal naive variance under
/// a seasonal random walk.
#[derive(Debug, Clone)]
pub struct SeasonalNaive {
    name: String,
    period: usize,
}

impl SeasonalNaive {
    pub fn new(name: &str, period: usize) -> Self {
        Self {
            name: name.to_string(),
            period: period.max(1),
        }
    }
}

impl Forecaster for SeasonalNaive {
    fn name(&self) -> &str {
        &self.name
    }

    /// Returns two periods: one to repeat and one of differences for σ.
    fn min_history_hours(&self) -> usize {
        2 * self.period
    }

    fn fit(&self, history: &HistoryWindow<'_>) -> Result<Box<dyn FittedForecaster>> {
        let values = history.values();
        if values.len() < self.min_history_hours() {
            return Err(too_short(
                &self.name,
                self.min_history_hours(),
                values.len(),
            ));
        }
        let differences: Vec<f64> = values
            .windows(self.period + 1)
            .map(|window| window[self.period] - window[0])
            .collect();
        let sigma =
            (differences.iter().map(|d| d * d).sum::<f64>() / differences.len() as f64).sqrt();
        Ok(Box::new(FittedSeasonalNaive {
            name: self.name.clone(),
            last_season: values[values.len() - self.period..].to_vec(),
            sigma,
            history_end: history.end_timestamp(),
        }))
    }
}

struct FittedSeasonalNaive {
    name: String,
    last_season: Vec<f64>,
    sigma: f64,
    history_end: Timestamp,
}

impl FittedForecaster for FittedSeasonalNaive {
    fn predict(&self, future: &FutureFrame<'_>, level: f64) -> Result<Forecast> {
        check_continuity(&self.name, self.history_end, future)?;
        let period = self.last_season.len();
        let quantile = normal_quantile(level);
        let mut forecast = Forecast {
            point: Vec::new(),
            lower: Vec::new(),
            upper: Vec::new(),
            level,
        };
        for step in 0..future.len() {
            let point = self.last_season[step % period];
            let seasons_ahead = (step / period) as f64;
            let half_width = quantile * self.sigma * (seasons_ahead + 1.0).sqrt();
            forecast.point.push(point);
            forecast.lower.push(point - half_width);
            forecast.upper.push(point + half_width);
        }
        Ok(forecast)
    }
}

fn too_short(model: &str, needed: usize, available: usize) -> AnalyticsError {
    AnalyticsError::ModelFailed {
        model: model.to_string(),
        reason: format!("it needs {needed} hours of history but got {available}"),
    }
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;
    use crate::series::HourlySeries;

    fn series(values: Vec<f64>) -> HourlySeries {
        HourlySeries::from_hourly(Timestamp::UNIX_EPOCH, TimeZone::UTC, values, Vec::new())
    }

    #[test]
    fn seasonal_naive_repeats_last_period() {
        let values: Vec<f64> = (0..12).map(f64::from).collect();
        let series = series(values);
        let model = SeasonalNaive::new("naive", 4);
        let fitted = model.fit(&HistoryWindow::new(&series, 0..8)).unwrap();
        let forecast = fitted
            .predict(&FutureFrame::new(&series, 8..12), 0.95)
            .unwrap();
        assert_eq!(forecast.point, vec![4.0, 5.0, 6.0, 7.0]);
    }

    #[test]
    fn seasonal_naive_interval_uses_differences() {
        // Every one-period difference is 4, so σ = 4 and the 95 % half width is 1.96 · 4.
        let values: Vec<f64> = (0..12).map(f64::from).collect();
        let series = series(values);
        let fitted = SeasonalNaive::new("naive", 4)
            .fit(&HistoryWindow::new(&series, 0..8))
            .unwrap();
        let forecast = fitted
            .predict(&FutureFrame::new(&series, 8..12), 0.95)
            .unwrap();
        let half_width = forecast.upper[0] - forecast.point[0];
        assert!(
            (half_width - 1.959_964 * 4.0).abs() < 1e-4,
            "half width {half_width}"
        );
    }

    #[test]
    fn forecast_must_follow_history() {
        let series = series((0..12).map(f64::from).collect());
        let fitted = SeasonalNaive::new("naive", 4)
            .fit(&HistoryWindow::new(&series, 0..8))
            .unwrap();
        let error = fitted
            .predict(&FutureFrame::new(&series, 9..12), 0.95)
            .unwrap_err();
        assert!(matches!(error, AnalyticsError::ModelFailed { .. }));
    }

    #[test]
    fn mean_forecast_is_flat() {
        let series = series(vec![1.0, 3.0, 5.0, 7.0, 0.0, 0.0]);
        let fitted = MeanForecaster::new(100)
            .fit(&HistoryWindow::new(&series, 0..4))
            .unwrap();
        let forecast = fitted
            .predict(&FutureFrame::new(&series, 4..6), 0.8)
            .unwrap();
        assert_eq!(forecast.point, vec![4.0, 4.0]);
    }
}
