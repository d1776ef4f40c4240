//! Invariants of the energy core on generated series.

use jiff::tz::TimeZone;
use proptest::prelude::*;

use se_energy::{counter_energy, power_energy, totals_by_period, CounterConfig, CounterSample, Period, PowerConfig, PowerSample};

/// Strictly increasing timestamps, 1 s to 10 min apart.
fn timestamps(len: usize) -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(1_000i64..600_000, len).prop_map(|steps| {
        steps
            .iter()
            .scan(1_700_000_000_000i64, |ts, step| {
                *ts += step;
                Some(*ts)
            })
            .collect()
    })
}

/// Generates a counter that only rises, so its true energy is last minus first.
fn rising_counter() -> impl Strategy<Value = Vec<CounterSample>> {
    (2usize..60).prop_flat_map(|len| (timestamps(len), prop::collection::vec(0.0f64..500.0, len))).prop_map(|(times, rises)| {
        let mut value = 10_000.0;
        times
            .iter()
            .zip(rises)
            .map(|(ts, rise)| {
                value += rise;
                CounterSample::new(*ts, value)
            })
            .collect()
    })
}

fn true_energy(samples: &[CounterSample]) -> f64 {
    samples.last().map_or(0.0, |last| last.value - samples[0].value)
}

/// Reorders by a seed, the way late messages arrive.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut out = items.to_vec();
    let mut state = seed | 1;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

proptest! {
    #[test]
    fn counter_energy_is_never_negative(
        values in prop::collection::vec(prop_oneof![any::<f64>(), 0.0f64..1e6], 0..40),
        times in prop::collection::vec(any::<i64>(), 40),
    ) {
        let samples: Vec<CounterSample> = values.iter().zip(&times).map(|(v, t)| CounterSample::new(*t, *v)).collect();
        let result = counter_energy(&samples, &CounterConfig::default()).unwrap();
        prop_assert!(result.wh >= 0.0 && result.wh.is_finite(), "{}", result.wh);
        prop_assert!(result.pieces.iter().all(|p| p.wh > 0.0));
    }

    #[test]
    fn counter_order_does_not_matter(samples in rising_counter(), seed in any::<u64>()) {
        let config = CounterConfig::default();
        let sorted = counter_energy(&samples, &config).unwrap();
        let late = counter_energy(&shuffled(&samples, seed), &config).unwrap();
        prop_assert_eq!(sorted, late);
    }

    #[test]
    fn rising_counter_gives_its_increase(samples in rising_counter()) {
        let result = counter_energy(&samples, &CounterConfig::default()).unwrap();
        prop_assert!((result.wh - true_energy(&samples)).abs() < 1e-6);
        prop_assert!(result.events.is_empty());
    }

    #[test]
    fn false_zero_adds_no_spike(samples in rising_counter(), at in any::<prop::sample::Index>()) {
        // A restart that reports 0 once between two real samples.
        let mut glitched = samples.clone();
        let index = at.index(samples.len() - 1);
        let zero_ts = (samples[index].ts_ms + samples[index + 1].ts_ms) / 2;
        if zero_ts > samples[index].ts_ms {
            glitched.push(CounterSample::new(zero_ts, 0.0));
        }
        let result = counter_energy(&glitched, &CounterConfig::default()).unwrap();
        prop_assert!(result.wh <= true_energy(&samples) + 1e-6, "{} > {}", result.wh, true_energy(&samples));
        prop_assert!(result.wh >= 0.0);
    }

    #[test]
    fn real_reset_adds_no_spike(samples in rising_counter(), at in any::<prop::sample::Index>(), restored in prop_oneof![Just(0.0), 0.5f64..1.0]) {
        // From `index` on, the counter restarted from a lower value: zero,
        // or an older saved value at `restored` times the old one. A saved
        // value below half the old one reads as counting from zero (see the
        // reset rule), so it is not generated.
        let index = 1 + at.index(samples.len() - 1);
        let offset = samples[index - 1].value * (1.0 - restored);
        let reset: Vec<CounterSample> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| if i >= index { CounterSample::new(s.ts_ms, (s.value - offset).max(0.0)) } else { *s })
            .collect();
        let result = counter_energy(&reset, &CounterConfig::default()).unwrap();
        prop_assert!(result.wh <= true_energy(&samples) + 1e-6, "{} > {}", result.wh, true_energy(&samples));
        prop_assert!(result.wh >= 0.0);
    }

    #[test]
    fn power_energy_is_never_negative(
        watts in prop::collection::vec(prop::option::of(prop_oneof![any::<f64>(), 0.0f64..5000.0]), 0..40),
        times in prop::collection::vec(any::<i32>(), 40),
    ) {
        let samples: Vec<PowerSample> = watts
            .iter()
            .zip(&times)
            .map(|(w, t)| PowerSample { ts_ms: i64::from(*t), watts: w.map(f64::abs), seq: None })
            .collect();
        let result = power_energy(&samples, None, &PowerConfig::default()).unwrap();
        prop_assert!(result.wh >= 0.0 && result.wh.is_finite(), "{}", result.wh);
    }

    #[test]
    fn power_order_does_not_matter(len in 2usize..50, seed in any::<u64>()) {
        let samples: Vec<PowerSample> = (0..len)
            .map(|i| PowerSample::new(i as i64 * 10_000 + (i as i64 % 3) * 4_000, (i * 37 % 500) as f64))
            .collect();
        let config = PowerConfig::default();
        let sorted = power_energy(&samples, None, &config).unwrap();
        let late = power_energy(&shuffled(&samples, seed), None, &config).unwrap();
        prop_assert_eq!(sorted, late);
    }

    #[test]
    fn power_energy_is_bounded_by_peak(watts in prop::collection::vec(0.0f64..3000.0, 2..50), times in timestamps(50)) {
        let samples: Vec<PowerSample> = watts.iter().zip(&times).map(|(w, t)| PowerSample::new(*t, *w)).collect();
        let result = power_energy(&samples, None, &PowerConfig::default()).unwrap();
        let span_h = (samples[samples.len() - 1].ts_ms - samples[0].ts_ms) as f64 / 3_600_000.0;
        let peak = watts.iter().cloned().fold(0.0, f64::max);
        prop_assert!(result.wh <= peak * span_h + 1e-6);
    }

    #[test]
    fn daily_totals_keep_the_energy(samples in rising_counter(), zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "Africa/Tunis", "America/New_York", "Asia/Kolkata"])) {
        let result = counter_energy(&samples, &CounterConfig::default()).unwrap();
        let tz = TimeZone::get(zone).unwrap();
        for period in [Period::Hour, Period::Day, Period::Week, Period::Month] {
            let totals = totals_by_period(&result, period, &tz).unwrap();
            let sum: f64 = totals.iter().map(|t| t.wh).sum();
            prop_assert!((sum - result.wh).abs() < 1e-6 * result.wh.max(1.0), "{period:?}: {sum} vs {}", result.wh);
        }
    }
}
