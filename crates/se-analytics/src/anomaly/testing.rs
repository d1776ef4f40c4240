//! Generated series for the detector tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use se_core::Metric;

use super::{Point, SeriesKey};

pub fn gpu_key(device: &str, gpu: usize) -> SeriesKey {
    SeriesKey::parse(device, &format!("gpu{gpu}"), Metric::Power).unwrap()
}

pub fn key(device: &str, channel: &str, metric: Metric) -> SeriesKey {
    SeriesKey::parse(device, channel, metric).unwrap()
}

/// `count` points every `step_ms` from `start_ms`, uniformly distributed in
/// `level ± spread`, rounded to 0.1 as devices report them.
pub fn noisy_series(start_ms: i64, step_ms: i64, count: usize, level: f64, spread: f64, seed: u64) -> Vec<Point> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|index| {
            let noise = if spread > 0.0 { rng.random_range(-spread..spread) } else { 0.0 };
            Point::new(start_ms + index as i64 * step_ms, ((level + noise) * 10.0).round() / 10.0)
        })
        .collect()
}
