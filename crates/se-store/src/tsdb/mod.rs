//! The I/O-free core of the time-series engine: the block codec, rollup
//! arithmetic, merging of late readings and the query planner. The SQLite
//! engine stores what these functions produce; everything here is tested
//! without a database.

pub(crate) mod codec;
pub(crate) mod rollup;


use crate::{Resolution, Retention, SeriesPoint};
pub use rollup::{Slot, Tier};

/// Merges two runs of readings, each sorted by time with unique timestamps.
/// Where both have a reading at the same instant, `stored` wins, because a
/// replayed reading must not replace the one already kept. Returns the
/// merged run and how many readings of `incoming` were dropped as duplicates.
pub(crate) fn merge_points(stored: &[(i64, f64)], incoming: &[(i64, f64)]) -> (Vec<(i64, f64)>, usize) {
    let mut merged = Vec::with_capacity(stored.len() + incoming.len());
    let (mut i, mut j, mut duplicates) = (0, 0, 0);
    while i < stored.len() && j < incoming.len() {
        let (a, b) = (stored[i], incoming[j]);
        if a.0 < b.0 {
            merged.push(a);
            i += 1;
        } else if b.0 < a.0 {
            merged.push(b);
            j += 1;
        } else {
            merged.push(a);
            duplicates += 1;
            i += 1;
            j += 1;
        }
    }
    merged.extend_from_slice(&stored[i..]);
    merged.extend_from_slice(&incoming[j..]);
    (merged, duplicates)
}

/// Splits a sorted run into consecutive chunks of at most `target` readings,
/// of nearly equal size.
pub(crate) fn chunk_sizes(len: usize, target: usize) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    let target = target.max(1);
    let chunks = len.div_ceil(target);
    let base = len / chunks;
    let extra = len % chunks;
    (0..chunks).map(|i| base + usize::from(i < extra)).collect()
}

/// How a series query will be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub resolution: Resolution,
    /// Width of an output bucket; 0 for raw points.
    pub bucket_ms: i64,
}

/// Picks the coarsest resolution that still fills `max_points` buckets over
/// `[from, to)`, among the resolutions whose retention still covers `from`.
/// `max_points == 0` asks for raw points.
pub(crate) fn plan(from: i64, to: i64, max_points: u32, now_ms: i64, retention: &Retention) -> Plan {
    if max_points == 0 {
        return Plan { resolution: Resolution::Raw, bucket_ms: 0 };
    }
    let span = (to - from).max(1);
    let points = i64::from(max_points);
    let wanted = span / points + i64::from(span % points != 0);
    let covers = |resolution: Resolution| retention.keep_ms(resolution).is_none_or(|keep| from >= now_ms.saturating_sub(keep));

    for tier in [Tier::Day, Tier::Hour, Tier::Minute] {
        if tier.bucket_ms() <= wanted && covers(Resolution::Tier(tier)) {
            return Plan { resolution: Resolution::Tier(tier), bucket_ms: tier_bucket(tier, from, to, wanted, points) };
        }
    }
    if covers(Resolution::Raw) {
        return Plan { resolution: Resolution::Raw, bucket_ms: wanted };
    }
    // The span is too short for any tier to fill the points, but raw
    // readings are past retention: the finest tier that is kept is the best answer.
    let tier = [Tier::Minute, Tier::Hour, Tier::Day].into_iter().find(|tier| covers(Resolution::Tier(*tier))).unwrap_or(Tier::Day);
    Plan { resolution: Resolution::Tier(tier), bucket_ms: tier.bucket_ms() }
}

/// A multiple of the tier's bucket, at least `wanted`, that yields at most
/// `points` epoch-aligned buckets over `[from, to)`; for `points` 1, at most two.
fn tier_bucket(tier: Tier, from: i64, to: i64, wanted: i64, points: i64) -> i64 {
    let step = tier.bucket_ms();
    let round_up = |width: i64| width.saturating_add(step - 1) / step * step;
    let fits = |width: i64| (to - 1).div_euclid(width) - from.div_euclid(width) < points;
    let width = round_up(wanted);
    if fits(width) {
        return width;
    }
    // Any span of length `span` touches at most span / width + 2 buckets,
    // so this width always fits when `points` is at least 2.
    if points >= 2 {
        let span = to - from;
        let safe = round_up(span / (points - 1) + 1);
        if fits(safe) {
            return safe;
        }
    }
    // One point: grow the bucket until the span fits in one. A span that
    // crosses a multiple of every width (such as the epoch) never fits, so
    // the growth stops and the answer has two buckets.
    let mut width = width;
    for _ in 0..64 {
        if fits(width) {
            break;
        }
        width = width.saturating_mul(2);
    }
    width
}

/// Groups rollup slots into output buckets of `bucket_ms` aligned to the
/// epoch. Buckets without readings are left out.
/// `slots` must be sorted by bucket start, as [`crate::sqlite`] reads them.
pub(crate) fn bucket_slots(slots: &[(i64, Slot)], bucket_ms: i64) -> Vec<SeriesPoint> {
    let mut buckets: Vec<(i64, Slot)> = Vec::new();
    for (start, slot) in slots {
        let bucket = start.div_euclid(bucket_ms) * bucket_ms;
        match buckets.last_mut() {
            Some((last, merged)) if *last == bucket => merged.merge(slot),
            _ => {
                let mut merged = Slot::EMPTY;
                merged.merge(slot);
                buckets.push((bucket, merged));
            }
        }
    }
    buckets
        .into_iter()
        .filter_map(|(ts_ms, slot)| {
            let mean = slot.mean()?;
            Some(SeriesPoint { ts_ms, min: slot.min, max: slot.max, mean, count: slot.count })
        })
        .collect()
}

/// Groups raw readings into buckets of `bucket_ms` counted from `from`.
pub(crate) fn bucket_points(points: &[(i64, f64)], from: i64, bucket_ms: i64) -> Vec<SeriesPoint> {
    let mut out: Vec<SeriesPoint> = Vec::new();
    let mut sum = 0.0;
    for &(ts, value) in points {
        let start = from + (ts - from).div_euclid(bucket_ms) * bucket_ms;
        match out.last_mut() {
            Some(last) if last.ts_ms == start => {
                last.min = last.min.min(value);
                last.max = last.max.max(value);
                last.count += 1;
                sum += value;
                last.mean = sum / last.count as f64;
            }
            _ => {
                sum = value;
                out.push(SeriesPoint { ts_ms: start, min: value, max: value, mean: value, count: 1 });
            }
        }
    }
    out
}

/// Percentile of sorted values by linear interpolation between closest
/// ranks (the default of NumPy and R type 7). `q` is in `[0, 1]`.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    Some(sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_800_000_000_000;

    fn keep_all() -> Retention {
        Retention { raw_ms: None, minute_ms: None, hour_ms: None, day_ms: None }
    }

    #[test]
    fn merge_keeps_stored_value_on_collision() {
        let (merged, duplicates) = merge_points(&[(1, 1.0), (3, 3.0)], &[(2, 20.0), (3, 30.0), (4, 40.0)]);
        assert_eq!(merged, vec![(1, 1.0), (2, 20.0), (3, 3.0), (4, 40.0)]);
        assert_eq!(duplicates, 1);
    }

    #[test]
    fn chunks_are_balanced_and_bounded() {
        assert_eq!(chunk_sizes(0, 10), Vec::<usize>::new());
        assert_eq!(chunk_sizes(10, 10), vec![10]);
        assert_eq!(chunk_sizes(11, 10), vec![6, 5]);
        let sizes = chunk_sizes(10_001, 4096);
        assert_eq!(sizes.iter().sum::<usize>(), 10_001);
        assert!(sizes.iter().all(|size| *size <= 4096));
    }

    #[test]
    fn year_chart_uses_hours() {
        let plan = plan(NOW - 365 * DAY, NOW, 1000, NOW, &keep_all());
        assert_eq!(plan.resolution, Resolution::Tier(Tier::Hour));
        assert_eq!(plan.bucket_ms % 3_600_000, 0);
        let buckets = (NOW - 1).div_euclid(plan.bucket_ms) - (NOW - 365 * DAY).div_euclid(plan.bucket_ms) + 1;
        assert!(buckets <= 1000, "{buckets} buckets");
        assert!(buckets >= 500, "{buckets} buckets do not fill the chart");
    }

    #[test]
    fn huge_spans_plan_quickly() {
        for points in [1, 2, 1000] {
            let plan = plan(i64::MIN / 4, i64::MAX / 4, points, NOW, &keep_all());
            assert_eq!(plan.resolution, Resolution::Tier(Tier::Day));
            let buckets = (i64::MAX / 4 - 1).div_euclid(plan.bucket_ms) - (i64::MIN / 4).div_euclid(plan.bucket_ms) + 1;
            assert!(buckets <= i64::from(points.max(2)), "{buckets} buckets for {points} points");
        }
    }

    #[test]
    fn short_span_uses_raw_and_long_span_days() {
        assert_eq!(plan(NOW - 3_600_000, NOW, 1000, NOW, &keep_all()).resolution, Resolution::Raw);
        assert_eq!(plan(NOW - 5 * 365 * DAY, NOW, 200, NOW, &keep_all()).resolution, Resolution::Tier(Tier::Day));
        assert_eq!(plan(NOW - DAY, NOW, 1000, NOW, &keep_all()).resolution, Resolution::Tier(Tier::Minute));
        assert_eq!(plan(NOW - DAY, NOW, 0, NOW, &keep_all()).resolution, Resolution::Raw);
    }

    #[test]
    fn expired_raw_falls_back_to_a_kept_tier() {
        let retention = Retention { raw_ms: Some(30 * DAY), minute_ms: Some(365 * DAY), hour_ms: None, day_ms: None };
        let old_hour = plan(NOW - 40 * DAY, NOW - 40 * DAY + 3_600_000, 1000, NOW, &retention);
        assert_eq!(old_hour.resolution, Resolution::Tier(Tier::Minute));
        let ancient = plan(NOW - 400 * DAY, NOW - 399 * DAY, 1000, NOW, &retention);
        assert_eq!(ancient.resolution, Resolution::Tier(Tier::Hour));
    }

    #[test]
    fn raw_buckets_start_at_from() {
        let points = [(100, 1.0), (150, 3.0), (260, 5.0)];
        let buckets = bucket_points(&points, 100, 100);
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[0].ts_ms, 100);
        assert_eq!(buckets[0].mean, 2.0);
        assert_eq!(buckets[1].ts_ms, 200);
        assert_eq!(buckets[1].count, 1);
    }

    #[test]
    fn percentiles_interpolate() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&sorted, 0.0), Some(1.0));
        assert_eq!(percentile(&sorted, 1.0), Some(4.0));
        assert_eq!(percentile(&sorted, 0.5), Some(2.5));
        assert_eq!(percentile(&sorted, 1.5), None);
        assert_eq!(percentile(&[], 0.5), None);
    }
}
