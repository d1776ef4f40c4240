//! Generated hourly power series of buildings and mining rooms, in W.
//!
//! Each series has a daily and a weekly pattern that depends on its kind, a
//! level drawn log-uniformly between 500 W and 50 kW, a slow day-to-day drift
//! of the level, and autocorrelated multiplicative noise. Series start at
//! midnight on a Monday, so hour `i` is hour `i % 24` of weekday `i / 24 % 7`
//! (0 = Monday).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Usage pattern of a generated series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// Weekday working hours on a base load; weekends near the base.
    Office,
    /// Morning and evening peaks, later mornings at weekends.
    Home,
    /// Open 9:00 to 20:00 from Monday to Saturday.
    Shop,
    /// Flat GPU load with cooling that follows the day, and occasional
    /// outages of a few hours.
    MiningRoom,
}

impl SeriesKind {
    const ALL: [SeriesKind; 4] = [Self::Office, Self::Home, Self::Shop, Self::MiningRoom];

    /// Kind of series `index`, spread evenly and reproducibly over the kinds.
    pub fn pick(seed: u64, index: usize) -> Self {
        let mut rng = series_rng(seed, index);
        Self::ALL[rng.random_range(0..Self::ALL.len())]
    }
}

fn series_rng(seed: u64, index: usize) -> StdRng {
    // Distinct streams per series, so series can be generated in any order.
    StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64)
}

/// Bell curve of height 1 around `center` hours with width `width` hours.
fn bump(hour: f64, center: f64, width: f64) -> f64 {
    (-0.5 * ((hour - center) / width).powi(2)).exp()
}

/// Load relative to the base level at `hour` (0 to 23, fractional allowed) of
/// `weekday` (0 = Monday).
fn profile(kind: SeriesKind, shape: &Shape, hour: f64, weekday: usize) -> f64 {
    let weekend = weekday >= 5;
    match kind {
        SeriesKind::Office => {
            let working = bump(hour, 13.0, 3.5).min(1.0);
            let day = if weekend { shape.weekend_share } else { 1.0 };
            1.0 + shape.amplitude * day * working
        }
        SeriesKind::Home => {
            let morning_center = if weekend { 9.5 } else { 7.5 };
            let morning = bump(hour, morning_center, 1.2);
            let evening = bump(hour, 19.5, 2.0);
            let daytime = if weekend { 0.4 * bump(hour, 14.0, 3.0) } else { 0.0 };
            1.0 + shape.amplitude * (0.6 * morning + evening + daytime)
        }
        SeriesKind::Shop => {
            let open = weekday < 6 && (9.0..20.0).contains(&hour);
            let saturday = if weekday == 5 { 1.0 + shape.weekend_share } else { 1.0 };
            if open {
                1.0 + shape.amplitude * saturday
            } else {
                1.0
            }
        }
        SeriesKind::MiningRoom => {
            // Cooling draws more in the afternoon heat.
            let cooling = (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
            1.0 + 0.15 * shape.amplitude * cooling
        }
    }
}

/// Random parameters of one series.
struct Shape {
    /// Daily swing relative to the base level.
    amplitude: f64,
    /// Weekend activity relative to weekdays (office), or extra Saturday trade (shop).
    weekend_share: f64,
}

/// Generates `hours` hourly values of series `index`, in W.
pub fn generate_series(seed: u64, index: usize, hours: usize, kind: SeriesKind) -> Vec<f64> {
    let mut rng = series_rng(seed, index);
    // Skip the draw that chose the kind, so the streams do not overlap.
    let _: usize = rng.random_range(0..SeriesKind::ALL.len());

    let level = 500.0 * 100f64.powf(rng.random::<f64>());
    let shape = Shape {
        amplitude: rng.random_range(0.5..3.0),
        weekend_share: rng.random_range(0.1..0.4),
    };
    let noise_share = rng.random_range(0.02..0.08);
    // AR(1) noise with coefficient 0.7, scaled so its stationary standard
    // deviation is `noise_share` of the load.
    let ar = 0.7_f64;
    let innovation = noise_share * (1.0 - ar * ar).sqrt();

    let outage = (kind == SeriesKind::MiningRoom && rng.random_bool(0.3)).then(|| {
        let begin = rng.random_range(0..hours);
        let length = rng.random_range(2..12);
        begin..(begin + length).min(hours)
    });

    let mut values = Vec::with_capacity(hours);
    let mut drift = 1.0;
    let mut noise = 0.0;
    for hour_index in 0..hours {
        let hour = (hour_index % 24) as f64;
        let weekday = hour_index / 24 % 7;
        if hour_index % 24 == 0 {
            drift *= 1.0 + 0.01 * rng.sample::<f64, _>(StandardNormal);
        }
        noise = ar * noise + innovation * rng.sample::<f64, _>(StandardNormal);
        let mut value = level * drift * profile(kind, &shape, hour, weekday) * (1.0 + noise);
        if outage.as_ref().is_some_and(|range| range.contains(&hour_index)) {
            value = 0.05 * level;
        }
        // Keep every value positive, so MAPE is defined for every series.
        values.push(value.max(0.01 * level));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_series() {
        let kind = SeriesKind::pick(7, 3);
        assert_eq!(generate_series(7, 3, 48, kind), generate_series(7, 3, 48, kind));
    }

    #[test]
    fn values_positive_and_bounded() {
        for index in 0..200 {
            let kind = SeriesKind::pick(1, index);
            let values = generate_series(1, index, 28 * 24, kind);
            assert_eq!(values.len(), 28 * 24);
            assert!(values.iter().all(|&value| value > 0.0), "series {index} has a value <= 0");
            assert!(values.iter().all(|&value| value < 1.0e6), "series {index} exceeds 1 MW");
        }
    }

    #[test]
    fn every_kind_appears() {
        let kinds: Vec<SeriesKind> = (0..100).map(|index| SeriesKind::pick(1, index)).collect();
        for kind in SeriesKind::ALL {
            assert!(kinds.contains(&kind), "{kind:?} never picked");
        }
    }

    #[test]
    fn office_weekday_noon_above_night() {
        let shape = Shape { amplitude: 1.0, weekend_share: 0.2 };
        assert!(profile(SeriesKind::Office, &shape, 13.0, 2) > profile(SeriesKind::Office, &shape, 3.0, 2));
        assert!(profile(SeriesKind::Office, &shape, 13.0, 2) > profile(SeriesKind::Office, &shape, 13.0, 6));
    }
}
