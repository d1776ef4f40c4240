//! Least squares on calendar features and feature columns.
//!
//! Predictors: an intercept, one 0/1 column per hour of day except midnight
//! (the baseline), a weekend column (Saturday or Sunday), a holiday column
//! when holidays are given, and each feature column (such as temperature) as
//! a linear term. Columns that are constant over the training window (a
//! holiday column with no holiday in it, say) are dropped for that fit, since
//! the intercept already carries them.
//!
//! Forecasting reads feature columns at the forecast hours. In a backtest
//! these are the recorded values, so a temperature term is scored as if the
//! weather forecast were perfect.

use std::collections::BTreeSet;

use jiff::civil::{Date, Weekday};
use jiff::{Timestamp, ZonedDateTime};
use nalgebra::{DMatrix, DVector};

use super::{
    check_continuity, FittedForecaster, Forecast, Forecaster, FutureFrame, HistoryWindow, WEEK,
};
use crate::error::{AnalyticsError, Result};
use crate::linear::LeastSquaresFit;

/// Calendar and feature regression fitted on the last `window_hours` hours.
#[derive(Debug, Clone)]
pub struct CalendarRegression {
    window_hours: usize,
    holidays: BTreeSet<Date>,
}

impl CalendarRegression {
    pub fn new(window_hours: usize, holidays: BTreeSet<Date>) -> Self {
        Self {
            window_hours: window_hours.max(WEEK),
            holidays,
        }
    }

    fn column_names(&self, features: &[(&str, &[f64])]) -> Vec<String> {
        let mut names = vec!["(intercept)".to_string()];
        names.extend((1..24).map(|hour| format!("hour {hour:02}")));
        names.push("weekend".to_string());
        if !self.holidays.is_empty() {
            names.push("holiday".to_string());
        }
        names.extend(features.iter().map(|(name, _)| name.to_string()));
        names
    }
}

/// Appends one row of predictors for the hour starting at `time`.
fn push_row(
    time: &ZonedDateTime,
    holidays: &BTreeSet<Date>,
    features: &[(&str, &[f64])],
    offset: usize,
    row: &mut Vec<f64>,
) {
    row.push(1.0);
    let hour = time.hour();
    row.extend((1..24).map(|h| if h == hour { 1.0 } else { 0.0 }));
    let weekend = matches!(time.weekday(), Weekday::Saturday | Weekday::Sunday);
    row.push(if weekend { 1.0 } else { 0.0 });
    if !holidays.is_empty() {
        row.push(if holidays.contains(&time.date()) {
            1.0
        } else {
            0.0
        });
    }
    row.extend(features.iter().map(|(_, values)| values[offset]));
}

impl Forecaster for CalendarRegression {
    fn name(&self) -> &str {
        "regression"
    }

    /// Returns one week, so that every hour of day and both weekday and weekend appear.
    fn min_history_hours(&self) -> usize {
        WEEK
    }

    fn fit(&self, history: &HistoryWindow<'_>) -> Result<Box<dyn FittedForecaster>> {
        let window = history.tail(self.window_hours);
        let features = window.feature_values();
        let names = self.column_names(&features);
        let width = names.len();
        let rows = window.len();

        let mut values = Vec::with_capacity(rows * width);
        for offset in 0..rows {
            push_row(
                &window.zoned_at(offset),
                &self.holidays,
                &features,
                offset,
                &mut values,
            );
        }

        // Keep the intercept and every column that varies in this window.
        let varies = |j: usize| (1..rows).any(|i| values[i * width + j] != values[j]);
        let kept: Vec<usize> = (0..width).filter(|&j| j == 0 || varies(j)).collect();
        let design = DMatrix::from_fn(rows, kept.len(), |i, column| {
            values[i * width + kept[column]]
        });
        let kept_names: Vec<String> = kept.iter().map(|&j| names[j].clone()).collect();
        let target = DVector::from_column_slice(window.values());
        // A backtest fits this model once per origin, so it uses the cheaper
        // normal equations, which fall back to the SVD when the columns are
        // nearly collinear.
        let fit = LeastSquaresFit::fit_normal_equations(&design, &target, &kept_names).map_err(
            |error| AnalyticsError::ModelFailed {
                model: self.name().to_string(),
                reason: error.to_string(),
            },
        )?;
        Ok(Box::new(FittedRegression {
            fit,
            kept,
            width,
            holidays: self.holidays.clone(),
            history_end: history.end_timestamp(),
        }))
    }
}

struct FittedRegression {
    fit: LeastSquaresFit,
    /// Indices of the full predictor row that the fit uses.
    kept: Vec<usize>,
    width: usize,
    holidays: BTreeSet<Date>,
    history_end: Timestamp,
}

impl FittedForecaster for FittedRegression {
    fn predict(&self, future: &FutureFrame<'_>, level: f64) -> Result<Forecast> {
        check_continuity("regression", self.history_end, future)?;
        let features = future.feature_values();
        let mut forecast = Forecast {
            point: Vec::new(),
            lower: Vec::new(),
            upper: Vec::new(),
            level,
        };
        let mut full_row = Vec::with_capacity(self.width);
        for offset in 0..future.len() {
            full_row.clear();
            push_row(
                &future.zoned_at(offset),
                &self.holidays,
                &features,
                offset,
                &mut full_row,
            );
            let row: Vec<f64> = self.kept.iter().map(|&j| full_row[j]).collect();
            let prediction = self.fit.predict_interval(&row, level);
            forecast.point.push(prediction.point);
            forecast.lower.push(prediction.lower);
            forecast.upper.push(prediction.upper);
        }
        Ok(forecast)
    }
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;
    use crate::series::{Feature, HourlySeries};

    /// 2024-01-01T00:00Z, a Monday.
    fn monday() -> Timestamp {
        "2024-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn calendar_and_temperature_effects_are_recovered() {
        // load = 100 + 3·hour + 40·weekend + 2·temperature, exactly.
        let hours = 3 * WEEK;
        let temperature: Vec<f64> = (0..hours).map(|i| 10.0 + ((i * 7) % 13) as f64).collect();
        let series_start = monday();
        let values: Vec<f64> = (0..hours)
            .map(|i| {
                let hour = (i % 24) as f64;
                let weekend = if (i / 24) % 7 >= 5 { 1.0 } else { 0.0 };
                100.0 + 3.0 * hour + 40.0 * weekend + 2.0 * temperature[i]
            })
            .collect();
        let features = vec![Feature {
            name: "temp".to_string(),
            values: temperature,
        }];
        let series =
            HourlySeries::from_hourly(series_start, TimeZone::UTC, values.clone(), features);
        let model = CalendarRegression::new(2 * WEEK, BTreeSet::new());
        let fitted = model
            .fit(&HistoryWindow::new(&series, 0..hours - 24))
            .unwrap();
        let forecast = fitted
            .predict(&FutureFrame::new(&series, hours - 24..hours), 0.95)
            .unwrap();
        for (predicted, actual) in forecast.point.iter().zip(&values[hours - 24..]) {
            assert!(
                (predicted - actual).abs() < 1e-6,
                "predicted {predicted}, actual {actual}"
            );
        }
    }

    #[test]
    fn forecast_matches_svd_fit() {
        // Noisy load with a temperature term, so the residuals and intervals are not trivial.
        let hours = 3 * WEEK;
        let temperature: Vec<f64> = (0..hours)
            .map(|i| 15.0 + 5.0 * ((i as f64) * 0.37).sin())
            .collect();
        let values: Vec<f64> = (0..hours)
            .map(|i| {
                let noise = 30.0 * ((i as f64 * 0.618_033_988_75).fract() - 0.5);
                400.0 + 10.0 * (i % 24) as f64 + 3.0 * temperature[i] + noise
            })
            .collect();
        let features = vec![Feature {
            name: "temp".to_string(),
            values: temperature.clone(),
        }];
        let series = HourlySeries::from_hourly(monday(), TimeZone::UTC, values.clone(), features);
        let history_end = hours - 24;
        let fitted = CalendarRegression::new(2 * WEEK, BTreeSet::new())
            .fit(&HistoryWindow::new(&series, 0..history_end))
            .unwrap();
        let forecast = fitted
            .predict(&FutureFrame::new(&series, history_end..hours), 0.95)
            .unwrap();

        // The same design built row by row and solved through the SVD.
        let row_of = |index: usize| {
            let mut row = Vec::new();
            let time = series.zoned_at(index);
            push_row(
                &time,
                &BTreeSet::new(),
                &[("temp", &temperature)],
                index,
                &mut row,
            );
            row
        };
        let window = history_end - 2 * WEEK..history_end;
        let width = row_of(0).len();
        let rows: Vec<f64> = window.clone().flat_map(row_of).collect();
        let design = DMatrix::from_row_slice(window.len(), width, &rows);
        let target = DVector::from_column_slice(&values[window]);
        let names: Vec<String> = (0..width).map(|j| format!("x{j}")).collect();
        let svd = LeastSquaresFit::fit(&design, &target, &names).unwrap();
        for step in 0..24 {
            let expected = svd.predict_interval(&row_of(history_end + step), 0.95);
            let scale = expected.point.abs();
            assert!(
                (forecast.point[step] - expected.point).abs() < 1e-9 * scale,
                "step {step}: point"
            );
            assert!(
                (forecast.lower[step] - expected.lower).abs() < 1e-9 * scale,
                "step {step}: lower"
            );
            assert!(
                (forecast.upper[step] - expected.upper).abs() < 1e-9 * scale,
                "step {step}: upper"
            );
        }
    }

    #[test]
    fn holiday_column_dropped_when_absent() {
        let hours = 2 * WEEK;
        let values: Vec<f64> = (0..hours).map(|i| (i % 24) as f64).collect();
        let series = HourlySeries::from_hourly(monday(), TimeZone::UTC, values, Vec::new());
        let holidays = BTreeSet::from(["2030-01-01".parse::<Date>().unwrap()]);
        let model = CalendarRegression::new(2 * WEEK, holidays);
        let fitted = model.fit(&HistoryWindow::new(&series, 0..hours - 24));
        assert!(fitted.is_ok());
    }
}
