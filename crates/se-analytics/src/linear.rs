//! Ordinary least squares through the singular value decomposition.
//!
//! Columns are scaled to unit norm before the SVD, so predictors of very
//! different magnitude (square metres next to 0/1 dummies) do not hide a rank
//! problem or lose precision. The SVD then gives the rank, the solution and the
//! factor needed for prediction intervals in one pass.

use distrs::StudentsT;
use nalgebra::{DMatrix, DVector};

use crate::error::{AnalyticsError, Result};

/// Ratio of smallest to largest singular value of the unit-norm design matrix
/// under which columns count as collinear. About 1e6 times f64 epsilon: a
/// smaller ratio makes coefficients meaningless even if a solution exists.
const COLLINEARITY_RATIO: f64 = 1e-10;

/// Weight in the null-space vector above which a column is named as one of
/// the collinear columns. Columns are unit-norm, so weights are comparable.
const NULL_SPACE_WEIGHT: f64 = 0.05;

/// A least-squares fit of `y ≈ X β`.
#[derive(Debug, Clone)]
pub struct LeastSquaresFit {
    coefficients: DVector<f64>,
    /// `A` such that `x₀ᵀ (XᵀX)⁻¹ x₀ = ‖A x₀‖²`, used for prediction variance.
    variance_factor: DMatrix<f64>,
    /// Sum of squared residuals over the degrees of freedom; 0 when n = p.
    residual_variance: f64,
    degrees_of_freedom: usize,
}

/// A point prediction with its prediction interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalPrediction {
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
}

impl LeastSquaresFit {
    /// Fits `y ≈ X β`. `names` labels the columns of `x` in collinearity errors.
    ///
    /// # Errors
    /// [`AnalyticsError::TooFewRows`] when `x` has fewer rows than columns and
    /// [`AnalyticsError::Collinear`] when its columns are not independent.
    pub fn fit(x: &DMatrix<f64>, y: &DVector<f64>, names: &[String]) -> Result<Self> {
        let (rows, parameters) = x.shape();
        if rows < parameters || rows == 0 {
            return Err(AnalyticsError::TooFewRows { rows, parameters });
        }

        let scales: Vec<f64> = x.column_iter().map(|column| column.norm()).collect();
        if let Some(zero) = scales.iter().position(|&scale| scale == 0.0) {
            return Err(AnalyticsError::Collinear {
                columns: vec![column_name(names, zero)],
            });
        }
        let mut scaled = x.clone();
        for (mut column, &scale) in scaled.column_iter_mut().zip(&scales) {
            column /= scale;
        }

        let svd = scaled.svd(true, true);
        let (Some(u), Some(v_t)) = (svd.u.as_ref(), svd.v_t.as_ref()) else {
            // nalgebra returns both factors when asked for them; treat the
            // impossible case as a degenerate design instead of panicking.
            return Err(AnalyticsError::Collinear {
                columns: names.to_vec(),
            });
        };
        let singular = &svd.singular_values;
        let largest = singular.max();
        let (smallest_index, smallest) = singular.argmin();
        if largest == 0.0 || smallest / largest < COLLINEARITY_RATIO {
            let null_vector = v_t.row(smallest_index);
            let columns = (0..parameters)
                .filter(|&j| null_vector[j].abs() > NULL_SPACE_WEIGHT)
                .map(|j| column_name(names, j))
                .collect();
            return Err(AnalyticsError::Collinear { columns });
        }

        // γ = V Σ⁻¹ Uᵀ y solves the scaled problem; β = D⁻¹ γ undoes the scaling.
        let inverse_singular = singular.map(|s| 1.0 / s);
        let projected = u.transpose() * y;
        let scaled_solution = v_t.transpose() * projected.component_mul(&inverse_singular);
        let coefficients = DVector::from_iterator(
            parameters,
            scaled_solution
                .iter()
                .zip(&scales)
                .map(|(gamma, scale)| gamma / scale),
        );

        // A = Σ⁻¹ Vᵀ D⁻¹, because (XᵀX)⁻¹ = D⁻¹ V Σ⁻² Vᵀ D⁻¹.
        let mut variance_factor = DMatrix::from_diagonal(&inverse_singular) * v_t;
        for (mut column, &scale) in variance_factor.column_iter_mut().zip(&scales) {
            column /= scale;
        }

        let residuals = y - x * &coefficients;
        let degrees_of_freedom = rows - parameters;
        let residual_variance = if degrees_of_freedom > 0 {
            residuals.norm_squared() / degrees_of_freedom as f64
        } else {
            0.0
        };
        Ok(Self {
            coefficients,
            variance_factor,
            residual_variance,
            degrees_of_freedom,
        })
    }

    pub fn coefficients(&self) -> &DVector<f64> {
        &self.coefficients
    }

    pub fn degrees_of_freedom(&self) -> usize {
        self.degrees_of_freedom
    }

    /// Residual standard error, in the unit of `y`.
    pub fn residual_standard_error(&self) -> f64 {
        self.residual_variance.sqrt()
    }

    /// Predicts `x₀ β` for one row of predictors.
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        row.iter()
            .zip(self.coefficients.iter())
            .map(|(x, beta)| x * beta)
            .sum()
    }

    /// Predicts `X β` for every row of `x`.
    pub fn predict(&self, x: &DMatrix<f64>) -> DVector<f64> {
        x * &self.coefficients
    }

    /// Predicts one row with a Student-t prediction interval at `level`
    /// (for example 0.95): `ŷ ± t · s · √(1 + x₀ᵀ(XᵀX)⁻¹x₀)`. With no degrees
    /// of freedom left the interval collapses to the point.
    pub fn predict_interval(&self, row: &[f64], level: f64) -> IntervalPrediction {
        let point = self.predict_row(row);
        if self.degrees_of_freedom == 0 {
            return IntervalPrediction {
                point,
                lower: point,
                upper: point,
            };
        }
        let x0 = DVector::from_column_slice(row);
        let leverage = (&self.variance_factor * x0).norm_squared();
        let t = StudentsT::ppf(0.5 + level / 2.0, self.degrees_of_freedom as f64);
        let half_width = t * (self.residual_variance * (1.0 + leverage)).sqrt();
        IntervalPrediction {
            point,
            lower: point - half_width,
            upper: point + half_width,
        }
    }
}

fn column_name(names: &[String], index: usize) -> String {
    names
        .get(index)
        .cloned()
        .unwrap_or_else(|| format!("#{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("x{i}")).collect()
    }

    #[test]
    fn exact_line_is_recovered() {
        let x = DMatrix::from_row_slice(4, 2, &[1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0]);
        let y = DVector::from_column_slice(&[3.0, 5.0, 7.0, 9.0]);
        let fit = LeastSquaresFit::fit(&x, &y, &names(2)).unwrap();
        assert!((fit.coefficients()[0] - 3.0).abs() < 1e-12);
        assert!((fit.coefficients()[1] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn noisy_fit_matches_normal_equations() {
        // y = 1 + 2x with residuals +1, −1, −1, +1: the closed form gives β = (1, 2).
        let x = DMatrix::from_row_slice(4, 2, &[1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0]);
        let y = DVector::from_column_slice(&[2.0, 2.0, 4.0, 8.0]);
        let fit = LeastSquaresFit::fit(&x, &y, &names(2)).unwrap();
        assert!(
            (fit.coefficients()[0] - 1.0).abs() < 1e-12,
            "{}",
            fit.coefficients()
        );
        assert!(
            (fit.coefficients()[1] - 2.0).abs() < 1e-12,
            "{}",
            fit.coefficients()
        );
    }

    #[test]
    fn duplicate_column_is_collinear() {
        let x = DMatrix::from_row_slice(3, 3, &[1.0, 1.0, 2.0, 1.0, 2.0, 4.0, 1.0, 3.0, 6.0]);
        let y = DVector::from_column_slice(&[1.0, 2.0, 3.0]);
        let error = LeastSquaresFit::fit(&x, &y, &names(3)).unwrap_err();
        match error {
            AnalyticsError::Collinear { columns } => assert_eq!(columns, vec!["x1", "x2"]),
            other => panic!("expected Collinear, got {other:?}"),
        }
    }

    #[test]
    fn fewer_rows_than_columns_rejected() {
        let x = DMatrix::from_row_slice(1, 2, &[1.0, 5.0]);
        let y = DVector::from_column_slice(&[1.0]);
        let error = LeastSquaresFit::fit(&x, &y, &names(2)).unwrap_err();
        assert!(matches!(
            error,
            AnalyticsError::TooFewRows {
                rows: 1,
                parameters: 2
            }
        ));
    }

    #[test]
    fn interval_widens_away_from_data() {
        let x = DMatrix::from_row_slice(5, 2, &[1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0, 1.0, 4.0]);
        let y = DVector::from_column_slice(&[0.1, 0.9, 2.2, 2.8, 4.1]);
        let fit = LeastSquaresFit::fit(&x, &y, &names(2)).unwrap();
        let near = fit.predict_interval(&[1.0, 2.0], 0.95);
        let far = fit.predict_interval(&[1.0, 40.0], 0.95);
        assert!(near.lower < near.point);
        assert!(near.point < near.upper);
        assert!(far.upper - far.lower > near.upper - near.lower);
    }

    #[test]
    fn interval_matches_closed_form() {
        // Intercept-only model: ŷ = mean, half width = t(n−1) · s · √(1 + 1/n).
        let y = [1.0, 2.0, 3.0, 4.0, 5.0];
        let x = DMatrix::from_element(5, 1, 1.0);
        let fit = LeastSquaresFit::fit(&x, &DVector::from_column_slice(&y), &names(1)).unwrap();
        let interval = fit.predict_interval(&[1.0], 0.95);
        let s = 2.5_f64.sqrt(); // sample variance of 1..5 is 2.5
        let t = 2.776_445_105_2; // Student t, 4 degrees of freedom, 97.5 %
        let expected = t * s * (1.0 + 1.0 / 5.0_f64).sqrt();
        assert!(
            (interval.upper - 3.0 - expected).abs() < 1e-6,
            "{interval:?}"
        );
    }
}
