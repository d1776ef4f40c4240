//! Ordinary least squares through the singular value decomposition, or
//! through the normal equations when they are well conditioned.
//!
//! Columns are scaled to unit norm before the SVD, so predictors of very
//! different magnitude (square metres next to 0/1 dummies) do not hide a rank
//! problem or lose precision. The SVD then gives the rank, the solution and the
//! factor needed for prediction intervals in one pass.
//!
//! [`LeastSquaresFit::fit_normal_equations`] gets the same three from the
//! eigendecomposition of the scaled p × p Gram matrix instead, which costs far
//! less than the SVD of a tall n × p matrix. It falls back to the SVD when
//! the Gram matrix is too badly conditioned for the normal equations.

use distrs::StudentsT;
use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::error::{AnalyticsError, Result};

/// Ratio of smallest to largest singular value of the unit-norm design matrix
/// under which columns count as collinear. About 1e6 times f64 epsilon: a
/// smaller ratio makes coefficients meaningless even if a solution exists.
const COLLINEARITY_RATIO: f64 = 1e-10;

/// Weight in the null-space vector above which a column is named as one of
/// the collinear columns. Columns are unit-norm, so weights are comparable.
const NULL_SPACE_WEIGHT: f64 = 0.05;

/// Ratio of smallest to largest eigenvalue of the scaled Gram matrix under
/// which [`LeastSquaresFit::fit_normal_equations`] falls back to the SVD.
/// Solving the normal equations loses about log10 of the inverse ratio in
/// significant digits, so above this ratio at least 10 of the 16 digits of
/// an f64 remain.
const NORMAL_EQUATIONS_MIN_RATIO: f64 = 1e-6;

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
        Ok(Self::with_residuals(x, y, coefficients, variance_factor))
    }

    /// Fits `y ≈ X β` like [`LeastSquaresFit::fit`], through the normal
    /// equations `XᵀX β = Xᵀy` when they are well conditioned.
    ///
    /// With D the diagonal of column norms, the scaled Gram matrix
    /// C = D⁻¹ XᵀX D⁻¹ = V Λ Vᵀ has the eigenvalues Λ = Σ² and the same V as
    /// the SVD of the scaled X (up to the order and signs of its columns), so
    /// the solution and the prediction intervals follow from the same
    /// formulas. Forming C costs at most O(n p²) and the eigendecomposition
    /// O(p³), against a much larger constant for the SVD of the n × p matrix. When the eigenvalue ratio is below
    /// [`NORMAL_EQUATIONS_MIN_RATIO`], this calls [`LeastSquaresFit::fit`],
    /// so rank problems are detected and reported the same way.
    ///
    /// # Errors
    /// The errors of [`LeastSquaresFit::fit`].
    pub fn fit_normal_equations(
        x: &DMatrix<f64>,
        y: &DVector<f64>,
        names: &[String],
    ) -> Result<Self> {
        let (rows, parameters) = x.shape();
        if rows < parameters || rows == 0 {
            return Err(AnalyticsError::TooFewRows { rows, parameters });
        }

        let (gram, moments) = cross_products(x, y);
        let scales: Vec<f64> = gram
            .diagonal()
            .iter()
            .map(|squared| squared.sqrt())
            .collect();
        if scales
            .iter()
            .any(|&scale| scale == 0.0 || !scale.is_finite())
        {
            return Self::fit(x, y, names);
        }
        let scaled_gram = DMatrix::from_fn(parameters, parameters, |i, j| {
            gram[(i, j)] / (scales[i] * scales[j])
        });
        let eigen = SymmetricEigen::new(scaled_gram);
        let largest = eigen.eigenvalues.max();
        let smallest = eigen.eigenvalues.min();
        if !(smallest > 0.0 && smallest / largest >= NORMAL_EQUATIONS_MIN_RATIO) {
            return Self::fit(x, y, names);
        }

        // γ = V Λ⁻¹ Vᵀ D⁻¹ Xᵀy solves the scaled problem, and β = D⁻¹ γ undoes the scaling.
        let scaled_moments = DVector::from_iterator(
            parameters,
            moments.iter().zip(&scales).map(|(m, scale)| m / scale),
        );
        let vectors = &eigen.eigenvectors;
        let projected = vectors
            .tr_mul(&scaled_moments)
            .component_div(&eigen.eigenvalues);
        let scaled_solution = vectors * projected;
        let coefficients = DVector::from_iterator(
            parameters,
            scaled_solution
                .iter()
                .zip(&scales)
                .map(|(gamma, scale)| gamma / scale),
        );

        // A = Λ^(-1/2) Vᵀ D⁻¹, the same factor as Σ⁻¹ Vᵀ D⁻¹ in the SVD path.
        let mut variance_factor = vectors.transpose();
        for (mut row, eigenvalue) in variance_factor.row_iter_mut().zip(eigen.eigenvalues.iter()) {
            row /= eigenvalue.sqrt();
        }
        for (mut column, &scale) in variance_factor.column_iter_mut().zip(&scales) {
            column /= scale;
        }
        Ok(Self::with_residuals(x, y, coefficients, variance_factor))
    }

    /// Completes a fit from its coefficients and variance factor with the
    /// residual variance on `x` and `y`.
    fn with_residuals(
        x: &DMatrix<f64>,
        y: &DVector<f64>,
        coefficients: DVector<f64>,
        variance_factor: DMatrix<f64>,
    ) -> Self {
        let residuals = y - x * &coefficients;
        let degrees_of_freedom = x.nrows() - x.ncols();
        let residual_variance = if degrees_of_freedom > 0 {
            residuals.norm_squared() / degrees_of_freedom as f64
        } else {
            0.0
        };
        Self {
            coefficients,
            variance_factor,
            residual_variance,
            degrees_of_freedom,
        }
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

/// Computes XᵀX and Xᵀy in one pass over the rows of `x`. Zero entries are
/// skipped, because they add nothing and make up most of a design with
/// dummy columns.
fn cross_products(x: &DMatrix<f64>, y: &DVector<f64>) -> (DMatrix<f64>, DVector<f64>) {
    let (rows, parameters) = x.shape();
    let mut gram = DMatrix::zeros(parameters, parameters);
    let mut moments = DVector::zeros(parameters);
    let mut nonzero: Vec<(usize, f64)> = Vec::with_capacity(parameters);
    for i in 0..rows {
        nonzero.clear();
        nonzero.extend(
            (0..parameters)
                .map(|j| (j, x[(i, j)]))
                .filter(|&(_, value)| value != 0.0),
        );
        for (position, &(j, x_j)) in nonzero.iter().enumerate() {
            moments[j] += x_j * y[i];
            for &(k, x_k) in &nonzero[position..] {
                gram[(j, k)] += x_j * x_k;
            }
        }
    }
    // The loop filled the upper triangle (j ≤ k), so copy it to the lower one.
    for j in 0..parameters {
        for k in 0..j {
            gram[(j, k)] = gram[(k, j)];
        }
    }
    (gram, moments)
}

fn column_name(names: &[String], index: usize) -> String {
    names
        .get(index)
        .cloned()
        .unwrap_or_else(|| format!("#{index}"))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("x{i}")).collect()
    }

    /// Intercept, two dummies and `numeric` uniform columns of different
    /// magnitudes, with y linear in them plus uniform noise.
    fn random_problem(rows: usize, numeric: usize, seed: u64) -> (DMatrix<f64>, DVector<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let width = 3 + numeric;
        let x = DMatrix::from_fn(rows, width, |i, j| match j {
            0 => 1.0,
            1 => f64::from(i % 3 == 0),
            2 => f64::from(i % 5 == 1),
            _ => rng.random_range(-1.0..1.0) * 10f64.powi(j as i32 - 3),
        });
        let beta = DVector::from_fn(width, |j, _| (j as f64 + 1.0) * 0.7);
        let noise = DVector::from_fn(rows, |_, _| rng.random_range(-0.5..0.5));
        let y = &x * beta + noise;
        (x, y)
    }

    fn relative_difference(a: f64, b: f64) -> f64 {
        (a - b).abs() / a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn normal_equations_match_svd() {
        for seed in 0..20 {
            let rows = 30 + 10 * seed as usize;
            let (x, y) = random_problem(rows, 1 + seed as usize % 4, seed);
            let width = x.ncols();
            let svd = LeastSquaresFit::fit(&x, &y, &names(width)).unwrap();
            let normal = LeastSquaresFit::fit_normal_equations(&x, &y, &names(width)).unwrap();
            for j in 0..width {
                let (a, b) = (svd.coefficients()[j], normal.coefficients()[j]);
                assert!(
                    relative_difference(a, b) < 1e-10,
                    "seed {seed}, β{j}: SVD {a}, normal {b}"
                );
            }
            assert_eq!(svd.degrees_of_freedom(), normal.degrees_of_freedom());
            let (a, b) = (
                svd.residual_standard_error(),
                normal.residual_standard_error(),
            );
            assert!(
                relative_difference(a, b) < 1e-10,
                "seed {seed}, s: SVD {a}, normal {b}"
            );
            let row: Vec<f64> = (0..width).map(|j| x[(rows / 2, j)] * 1.5).collect();
            let (a, b) = (
                svd.predict_interval(&row, 0.9),
                normal.predict_interval(&row, 0.9),
            );
            assert!(
                relative_difference(a.lower, b.lower) < 1e-10,
                "seed {seed}: SVD {a:?}, normal {b:?}"
            );
            assert!(
                relative_difference(a.upper, b.upper) < 1e-10,
                "seed {seed}: SVD {a:?}, normal {b:?}"
            );
        }
    }

    #[test]
    fn normal_equations_report_collinear_columns() {
        // x2 = 2·x1, as in duplicate_column_is_collinear, with more rows.
        let x = DMatrix::from_fn(8, 3, |i, j| match j {
            0 => 1.0,
            1 => i as f64,
            _ => 2.0 * i as f64,
        });
        let y = DVector::from_fn(8, |i, _| (i * i) as f64);
        let error = LeastSquaresFit::fit_normal_equations(&x, &y, &names(3)).unwrap_err();
        match error {
            AnalyticsError::Collinear { columns } => assert_eq!(columns, vec!["x1", "x2"]),
            other => panic!("expected Collinear, got {other:?}"),
        }
    }

    #[test]
    fn normal_equations_ill_conditioned_use_svd() {
        // x2 differs from x1 by at most 1e-4: full rank, but the scaled Gram
        // matrix has an eigenvalue ratio near 1e-12, far below the limit of 1e-6.
        let mut rng = StdRng::seed_from_u64(7);
        let x = DMatrix::from_fn(40, 3, |i, j| match j {
            0 => 1.0,
            1 => i as f64,
            _ => i as f64 + rng.random_range(-1e-4..1e-4),
        });
        let y = DVector::from_fn(40, |i, _| {
            3.0 + 0.5 * i as f64 + rng.random_range(-0.1..0.1)
        });
        let svd = LeastSquaresFit::fit(&x, &y, &names(3)).unwrap();
        let normal = LeastSquaresFit::fit_normal_equations(&x, &y, &names(3)).unwrap();
        // The fallback runs the SVD path itself, so the results are identical.
        assert_eq!(svd.coefficients(), normal.coefficients());
        assert_eq!(
            svd.residual_standard_error(),
            normal.residual_standard_error()
        );
    }

    #[test]
    fn normal_equations_reject_too_few_rows() {
        let x = DMatrix::from_row_slice(1, 2, &[1.0, 5.0]);
        let y = DVector::from_column_slice(&[1.0]);
        let error = LeastSquaresFit::fit_normal_equations(&x, &y, &names(2)).unwrap_err();
        assert!(matches!(
            error,
            AnalyticsError::TooFewRows {
                rows: 1,
                parameters: 2
            }
        ));
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
