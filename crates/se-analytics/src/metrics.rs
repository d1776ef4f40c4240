//! Point-forecast and regression error measures.

use serde::Serialize;

/// Error measures of predictions against actual values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ErrorMetrics {
    /// Number of (actual, predicted) pairs measured.
    pub count: usize,
    /// Mean absolute error, in the unit of the values.
    pub mae: f64,
    /// Mean squared error, in the unit of the values squared.
    pub mse: f64,
    /// Root mean squared error, in the unit of the values.
    pub rmse: f64,
    /// Mean absolute percentage error, in percent; `None` when an actual value
    /// is zero, because the ratio is then undefined.
    pub mape: Option<f64>,
}

impl ErrorMetrics {
    /// Computes the measures over paired slices; extra items of the longer slice
    /// are ignored. Returns `None` for empty input.
    pub fn compute(actual: &[f64], predicted: &[f64]) -> Option<Self> {
        let count = actual.len().min(predicted.len());
        if count == 0 {
            return None;
        }
        let mut absolute_sum = 0.0;
        let mut squared_sum = 0.0;
        let mut percentage_sum = 0.0;
        let mut has_zero_actual = false;
        for (&a, &p) in actual.iter().zip(predicted) {
            let error = a - p;
            absolute_sum += error.abs();
            squared_sum += error * error;
            if a == 0.0 {
                has_zero_actual = true;
            } else {
                percentage_sum += (error / a).abs();
            }
        }
        let n = count as f64;
        let mse = squared_sum / n;
        Some(Self {
            count,
            mae: absolute_sum / n,
            mse,
            rmse: mse.sqrt(),
            mape: (!has_zero_actual).then(|| 100.0 * percentage_sum / n),
        })
    }
}

/// Coefficient of determination: 1 − SS_res / SS_tot. Returns `None` when the
/// actual values are all equal (SS_tot = 0) or the input is empty.
pub fn r_squared(actual: &[f64], predicted: &[f64]) -> Option<f64> {
    let count = actual.len().min(predicted.len());
    if count == 0 {
        return None;
    }
    let mean = actual[..count].iter().sum::<f64>() / count as f64;
    let total: f64 = actual[..count].iter().map(|a| (a - mean).powi(2)).sum();
    let residual: f64 = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).powi(2))
        .sum();
    (total > 0.0).then(|| 1.0 - residual / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTUAL: [f64; 4] = [10.0, 20.0, 40.0, 50.0];
    const PREDICTED: [f64; 4] = [12.0, 18.0, 44.0, 50.0];

    #[test]
    fn mae_matches_hand_computation() {
        // |−2| + |2| + |−4| + 0 = 8, over 4 pairs.
        let metrics = ErrorMetrics::compute(&ACTUAL, &PREDICTED).unwrap();
        assert_eq!(metrics.mae, 2.0);
    }

    #[test]
    fn rmse_matches_hand_computation() {
        // 4 + 4 + 16 + 0 = 24, over 4 pairs, so MSE 6 and RMSE √6.
        let metrics = ErrorMetrics::compute(&ACTUAL, &PREDICTED).unwrap();
        assert_eq!(metrics.mse, 6.0);
        assert!((metrics.rmse - 6.0_f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn mape_matches_hand_computation() {
        // 2/10 + 2/20 + 4/40 + 0/50 = 0.4, over 4 pairs, is 10 %.
        let metrics = ErrorMetrics::compute(&ACTUAL, &PREDICTED).unwrap();
        let mape = metrics.mape.unwrap();
        assert!((mape - 10.0).abs() < 1e-12, "MAPE was {mape}");
    }

    #[test]
    fn mape_undefined_with_zero_actual() {
        let metrics = ErrorMetrics::compute(&[0.0, 1.0], &[1.0, 1.0]).unwrap();
        assert_eq!(metrics.mape, None);
    }

    #[test]
    fn metrics_of_empty_input_are_none() {
        assert!(ErrorMetrics::compute(&[], &[]).is_none());
    }

    #[test]
    fn r_squared_of_perfect_fit_is_one() {
        assert_eq!(r_squared(&ACTUAL, &ACTUAL), Some(1.0));
    }

    #[test]
    fn r_squared_matches_hand_computation() {
        // Mean 30, SS_tot = 400 + 100 + 100 + 400 = 1000, SS_res = 24.
        let r2 = r_squared(&ACTUAL, &PREDICTED).unwrap();
        assert!((r2 - 0.976).abs() < 1e-12, "R² was {r2}");
    }

    #[test]
    fn r_squared_of_constant_actuals_is_none() {
        assert_eq!(r_squared(&[3.0, 3.0], &[3.0, 2.0]), None);
    }
}
