//! Rollups: per-bucket aggregates of a series at 1 minute, 1 hour and 1 day.
//!
//! Minute slots are computed from raw readings, hour slots from the minute
//! slots of the hour, and day slots from the hour slots of the (UTC) day, so
//! the tiers always agree with each other.
//!
//! Energy follows the sample-and-hold rule of the energy accounting: a power
//! reading holds until the next reading of its series, unless the next one is
//! more than [`MAX_HOLD_MS`] later, in which case the gap is unknown and adds
//! no energy. A hold that crosses a bucket boundary is split between the
//! buckets. Each slot also records `covered_ms`, the time its energy covers,
//! so a reader can tell zero power from missing data.

use std::collections::BTreeMap;

use super::codec::{decode_column, encode_column, read_u32, CodecError};

/// Longest time a power reading holds. Tasmota's default telemetry period
/// is 300 s, so the limit leaves room for three missed reports.
pub(crate) const MAX_HOLD_MS: i64 = 15 * 60_000;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// A rollup resolution. The discriminant is stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Minute = 0,
    Hour = 1,
    Day = 2,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Minute, Tier::Hour, Tier::Day];

    /// Width of one bucket.
    pub fn bucket_ms(self) -> i64 {
        match self {
            Tier::Minute => MINUTE_MS,
            Tier::Hour => HOUR_MS,
            Tier::Day => DAY_MS,
        }
    }

    /// Span of one stored page of slots: a minute page is one UTC day, an
    /// hour page 30 days. Each bucket of the next coarser tier lies inside
    /// one page of this tier, so one page rebuilds a coarser slot.
    pub(crate) fn page_ms(self) -> i64 {
        match self {
            Tier::Minute => DAY_MS,
            Tier::Hour => 30 * DAY_MS,
            Tier::Day => 360 * DAY_MS,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Minute => "1m",
            Tier::Hour => "1h",
            Tier::Day => "1d",
        }
    }

    pub(crate) fn code(self) -> i64 {
        self as i64
    }

    /// The tier whose slots this tier is built from, if any.
    pub(crate) fn finer(self) -> Option<Tier> {
        match self {
            Tier::Minute => None,
            Tier::Hour => Some(Tier::Minute),
            Tier::Day => Some(Tier::Hour),
        }
    }

    pub(crate) fn floor(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.bucket_ms()) * self.bucket_ms()
    }

    pub(crate) fn page_of(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.page_ms()) * self.page_ms()
    }
}

/// Aggregates of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    /// Number of readings whose timestamp falls in the bucket.
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    /// Energy in Wh for power metrics, 0 for others.
    pub energy_wh: f64,
    /// Milliseconds of the bucket that held a known power value.
    pub covered_ms: i64,
}

impl Slot {
    pub(crate) const EMPTY: Slot = Slot { count: 0, min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0, energy_wh: 0.0, covered_ms: 0 };

    fn add_reading(&mut self, value: f64) {
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
    }

    pub(crate) fn merge(&mut self, other: &Slot) {
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.energy_wh += other.energy_wh;
        self.covered_ms += other.covered_ms;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0 && self.covered_ms == 0
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Whether a metric key names a power in watts, whose integral is energy.
pub(crate) fn integrates_to_energy(metric_key: &str) -> bool {
    metric_key == "power_w" || metric_key.ends_with("_power_w")
}

/// Computes the minute slots of `[start, end)` (both on minute boundaries)
/// from sorted, unique readings. `points` must include the readings up to
/// [`MAX_HOLD_MS`] before `start`, whose holds reach into the range, and
/// the first reading after `end`, which ends the last hold.
pub(crate) fn minute_slots(points: &[(i64, f64)], start: i64, end: i64, energy: bool) -> BTreeMap<i64, Slot> {
    let mut slots: BTreeMap<i64, Slot> = BTreeMap::new();
    for (index, &(ts, value)) in points.iter().enumerate() {
        if ts >= start && ts < end {
            slots.entry(Tier::Minute.floor(ts)).or_insert(Slot::EMPTY).add_reading(value);
        }
        if !energy {
            continue;
        }
        let Some(&(next_ts, _)) = points.get(index + 1) else { continue };
        if next_ts - ts > MAX_HOLD_MS {
            continue;
        }
        // Split the hold [ts, next_ts) over the minutes it crosses inside the range.
        let mut from = ts.max(start);
        let until = next_ts.min(end);
        while from < until {
            let minute = Tier::Minute.floor(from);
            let to = (minute + MINUTE_MS).min(until);
            let slot = slots.entry(minute).or_insert(Slot::EMPTY);
            slot.energy_wh += value * (to - from) as f64 / HOUR_MS as f64;
            slot.covered_ms += to - from;
            from = to;
        }
    }
    slots
}

/// Combines the slots of `finer` into slots of `tier`.
pub(crate) fn coarsen(tier: Tier, finer: &BTreeMap<i64, Slot>) -> BTreeMap<i64, Slot> {
    let mut slots: BTreeMap<i64, Slot> = BTreeMap::new();
    for (start, slot) in finer {
        slots.entry(tier.floor(*start)).or_insert(Slot::EMPTY).merge(slot);
    }
    slots
}

/// Current version byte of [`encode_page`].
const PAGE_VERSION: u8 = 1;

/// Compresses the slots of one page. Keys are bucket start times inside the page.
pub(crate) fn encode_page(tier: Tier, page_ms: i64, slots: &BTreeMap<i64, Slot>) -> Result<Vec<u8>, CodecError> {
    let n = slots.len();
    let mut index = Vec::with_capacity(n);
    let mut count = Vec::with_capacity(n);
    let (mut min, mut max, mut sum, mut energy, mut covered) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for (start, slot) in slots {
        index.push((start - page_ms) / tier.bucket_ms());
        count.push(slot.count as i64);
        // An empty min/max is infinite; store 0 so the column stays compressible.
        min.push(if slot.count > 0 { slot.min } else { 0.0 });
        max.push(if slot.count > 0 { slot.max } else { 0.0 });
        sum.push(slot.sum);
        energy.push(slot.energy_wh);
        covered.push(slot.covered_ms);
    }
    let mut page = vec![PAGE_VERSION];
    page.extend_from_slice(&(n as u32).to_le_bytes());
    encode_column(&index, "slot index", &mut page)?;
    encode_column(&count, "count", &mut page)?;
    encode_column(&min, "min", &mut page)?;
    encode_column(&max, "max", &mut page)?;
    encode_column(&sum, "sum", &mut page)?;
    encode_column(&energy, "energy", &mut page)?;
    encode_column(&covered, "covered", &mut page)?;
    Ok(page)
}

/// Decompresses a page written by [`encode_page`] into slots keyed by bucket start.
pub(crate) fn decode_page(tier: Tier, page_ms: i64, page: &[u8]) -> Result<BTreeMap<i64, Slot>, CodecError> {
    let mut slots = Vec::new();
    decode_page_into(tier, page_ms, page, i64::MIN..i64::MAX, &mut slots)?;
    Ok(slots.into_iter().collect())
}

/// Decompresses a page like [`decode_page`] and appends the slots whose
/// bucket start lies in `range` to `out`, in time order. Queries use this to
/// avoid building a map per page.
pub(crate) fn decode_page_into(tier: Tier, page_ms: i64, page: &[u8], range: std::ops::Range<i64>, out: &mut Vec<(i64, Slot)>) -> Result<(), CodecError> {
    if page.len() < 5 {
        return Err(CodecError::Truncated(page.len()));
    }
    if page[0] != PAGE_VERSION {
        return Err(CodecError::UnknownVersion(page[0]));
    }
    let n = read_u32(&page[1..5]) as usize;
    let mut offset = 5;
    let index: Vec<i64> = decode_column(page, &mut offset, "slot index")?;
    let count: Vec<i64> = decode_column(page, &mut offset, "count")?;
    let min: Vec<f64> = decode_column(page, &mut offset, "min")?;
    let max: Vec<f64> = decode_column(page, &mut offset, "max")?;
    let sum: Vec<f64> = decode_column(page, &mut offset, "sum")?;
    let energy: Vec<f64> = decode_column(page, &mut offset, "energy")?;
    let covered: Vec<i64> = decode_column(page, &mut offset, "covered")?;
    for (section, len) in [("slot index", index.len()), ("count", count.len()), ("min", min.len()), ("max", max.len()), ("sum", sum.len()), ("energy", energy.len()), ("covered", covered.len())] {
        if len != n {
            return Err(CodecError::CountMismatch { section, expected: n, found: len });
        }
    }

    // encode_page writes slots in key order, so the index column is sorted.
    out.reserve(n);
    for i in 0..n {
        let start = page_ms + index[i] * tier.bucket_ms();
        if !range.contains(&start) {
            continue;
        }
        let count = count[i].max(0) as u64;
        let (min, max) = if count > 0 { (min[i], max[i]) } else { (f64::INFINITY, f64::NEG_INFINITY) };
        out.push((start, Slot { count, min, max, sum: sum[i], energy_wh: energy[i], covered_ms: covered[i] }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_006_400_000; // a UTC midnight

    #[test]
    fn tiers_nest_inside_pages() {
        assert_eq!(T0 % DAY_MS, 0);
        for tier in Tier::ALL {
            assert_eq!(tier.page_ms() % tier.bucket_ms(), 0, "{tier:?}");
            if let Some(finer) = tier.finer() {
                assert_eq!(finer.page_ms() % tier.bucket_ms(), 0, "a {tier:?} bucket must fit in one {finer:?} page");
            }
        }
    }

    #[test]
    fn hold_splits_across_minutes() {
        // 600 W from 00:00:30 to 00:01:30, then the next reading.
        let points = [(T0 + 30_000, 600.0), (T0 + 90_000, 0.0)];
        let slots = minute_slots(&points, T0, T0 + 3 * MINUTE_MS, true);
        let first = slots[&T0];
        let second = slots[&(T0 + MINUTE_MS)];
        assert_eq!(first.count, 1);
        assert_eq!(first.covered_ms, 30_000);
        assert!((first.energy_wh - 5.0).abs() < 1e-9, "{}", first.energy_wh);
        assert_eq!(second.count, 1);
        assert!((second.energy_wh - 5.0).abs() < 1e-9, "{}", second.energy_wh);
    }

    #[test]
    fn long_gap_adds_no_energy() {
        let points = [(T0, 1000.0), (T0 + MAX_HOLD_MS + 1, 1000.0)];
        let slots = minute_slots(&points, T0, T0 + DAY_MS, true);
        let energy: f64 = slots.values().map(|slot| slot.energy_wh).sum();
        assert_eq!(energy, 0.0);
        assert_eq!(slots.values().map(|slot| slot.count).sum::<u64>(), 2);
    }

    #[test]
    fn non_power_metrics_have_no_energy() {
        let points = [(T0, 50.0), (T0 + 10_000, 60.0)];
        let slots = minute_slots(&points, T0, T0 + MINUTE_MS, false);
        assert_eq!(slots[&T0].energy_wh, 0.0);
        assert_eq!(slots[&T0].count, 2);
        assert_eq!(slots[&T0].mean(), Some(55.0));
    }

    #[test]
    fn energy_detection_by_metric_key() {
        assert!(integrates_to_energy("power_w"));
        assert!(integrates_to_energy("apparent_power_w"));
        assert!(!integrates_to_energy("apparent_power_va"));
        assert!(!integrates_to_energy("energy_wh"));
    }

    #[test]
    fn page_round_trips() {
        let points: Vec<(i64, f64)> = (0..500).map(|i| (T0 + i * 7_000, 100.0 + (i % 9) as f64)).collect();
        let slots = minute_slots(&points, T0, T0 + DAY_MS, true);
        let page = encode_page(Tier::Minute, T0, &slots).unwrap();
        let back = decode_page(Tier::Minute, T0, &page).unwrap();
        assert_eq!(back, slots);
    }

    #[test]
    fn coarsening_keeps_totals() {
        let points: Vec<(i64, f64)> = (0..2000).map(|i| (T0 + i * 45_000, (i % 17) as f64 * 10.0)).collect();
        let minutes = minute_slots(&points, T0, T0 + 2 * DAY_MS, true);
        let hours = coarsen(Tier::Hour, &minutes);
        let days = coarsen(Tier::Day, &hours);
        let total = |slots: &BTreeMap<i64, Slot>| (slots.values().map(|s| s.count).sum::<u64>(), slots.values().map(|s| s.energy_wh).sum::<f64>());
        let (count_m, energy_m) = total(&minutes);
        let (count_d, energy_d) = total(&days);
        assert_eq!(count_m, 2000);
        assert_eq!(count_d, 2000);
        assert!((energy_m - energy_d).abs() < 1e-6);
    }
}
