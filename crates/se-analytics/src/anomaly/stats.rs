//! Robust statistics shared by the detectors.

use std::collections::BTreeMap;

use se_core::TimestampMs;

use super::Point;

/// Scale factor that makes the MAD a consistent estimate of the standard
/// deviation for normally distributed data (1 / Φ⁻¹(3/4)).
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Median of the finite values, or `None` when there is none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 0 { (sorted[middle - 1] + sorted[middle]) / 2.0 } else { sorted[middle] })
}

/// Median absolute deviation from the median (unscaled), or `None` when
/// there is no finite value.
pub fn mad(values: &[f64]) -> Option<f64> {
    let center = median(values)?;
    let deviations: Vec<f64> = values.iter().filter(|v| v.is_finite()).map(|v| (v - center).abs()).collect();
    median(&deviations)
}

/// Mean of the finite values of each bucket of `bucket_ms`, keyed by the
/// bucket's start (aligned on multiples of `bucket_ms` since the epoch).
pub(crate) fn bucket_means(points: &[Point], bucket_ms: i64) -> BTreeMap<TimestampMs, f64> {
    let mut sums: BTreeMap<TimestampMs, (f64, usize)> = BTreeMap::new();
    for point in points.iter().filter(|p| p.value.is_finite()) {
        let entry = sums.entry(point.ts_ms.div_euclid(bucket_ms) * bucket_ms).or_insert((0.0, 0));
        entry.0 += point.value;
        entry.1 += 1;
    }
    sums.into_iter().map(|(start, (sum, count))| (start, sum / count as f64)).collect()
}

/// Least-squares line `y = intercept + slope * x`; the slope is 0 when `x`
/// has no spread, so the line is then the mean of `y`.
pub(crate) fn fit_line(pairs: &[(f64, f64)]) -> Option<(f64, f64)> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mean_x = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pairs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = pairs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let spread = (sxx / n).sqrt();
    let slope = if spread > 1e-9 * mean_x.abs().max(1.0) { sxy / sxx } else { 0.0 };
    Some((mean_y - slope * mean_x, slope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn median_skips_nan() {
        assert_eq!(median(&[f64::NAN, 5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn mad_ignores_one_outlier() {
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 1000.0]), Some(1.0));
    }

    #[test]
    fn fit_line_without_spread_is_mean() {
        assert_eq!(fit_line(&[(5.0, 1.0), (5.0, 3.0)]), Some((2.0, 0.0)));
        let (intercept, slope) = fit_line(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((intercept - 1.0).abs() < 1e-12, "intercept {intercept}");
        assert!((slope - 2.0).abs() < 1e-12, "slope {slope}");
    }
}
