//! The time-series engine against naive references: compressed blocks,
//! rollups, late data, retention and the aggregates, on a real SQLite file.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use se_core::{ChannelName, DeviceId, Metric, Reading, TimestampMs};
use se_store::{Retention, SeriesKey, SeriesQuery, SqliteStore, Store, StoreOptions, SumQuery, TopBy, TopQuery};
use tempfile::TempDir;

/// 2023-11-15T00:00:00Z, a UTC midnight.
const T0: TimestampMs = 1_700_006_400_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// The hold limit of sample-and-hold, as documented by the engine.
const MAX_HOLD: i64 = 15 * MINUTE;

fn open(retention: Retention) -> (TempDir, SqliteStore) {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open_with(dir.path(), StoreOptions { retention }).unwrap();
    (dir, store)
}

fn key(device: &str, channel: &str, metric: Metric) -> SeriesKey {
    SeriesKey { device: DeviceId::parse(device).unwrap(), channel: ChannelName::parse(channel).unwrap(), metric }
}

fn reading(device: &str, channel: &str, ts: TimestampMs, value: f64) -> Reading {
    Reading::new(DeviceId::parse(device).unwrap(), channel, Metric::Power, ts, value)
}

/// Naive per-bucket aggregates: (count, min, max, sum).
fn naive_buckets(points: &BTreeMap<i64, f64>, bucket: i64) -> BTreeMap<i64, (u64, f64, f64, f64)> {
    let mut out: BTreeMap<i64, (u64, f64, f64, f64)> = BTreeMap::new();
    for (&ts, &value) in points {
        let entry = out.entry(ts.div_euclid(bucket) * bucket).or_insert((0, f64::INFINITY, f64::NEG_INFINITY, 0.0));
        entry.0 += 1;
        entry.1 = entry.1.min(value);
        entry.2 = entry.2.max(value);
        entry.3 += value;
    }
    out
}

/// Naive sample-and-hold energy in Wh over `[from, to)`, integrating one millisecond grid at a time per hold.
fn naive_energy(points: &BTreeMap<i64, f64>, from: i64, to: i64) -> f64 {
    let sorted: Vec<(i64, f64)> = points.iter().map(|(ts, value)| (*ts, *value)).collect();
    let mut energy = 0.0;
    for pair in sorted.windows(2) {
        let ((t1, v1), (t2, _)) = (pair[0], pair[1]);
        if t2 - t1 > MAX_HOLD {
            continue;
        }
        let start = t1.max(from);
        let end = t2.min(to);
        if end > start {
            energy += v1 * (end - start) as f64 / HOUR as f64;
        }
    }
    energy
}

async fn assert_matches_reference(store: &SqliteStore, points: &BTreeMap<i64, f64>, label: &str) {
    let series = key("rig-1", "gpu0", Metric::Power);
    let from = T0;
    let to = T0 + 6 * HOUR;
    for (bucket, max_points) in [(MINUTE, (6 * HOUR / MINUTE) as u32), (HOUR, 6)] {
        let query = SeriesQuery { device: series.device.clone(), channel: series.channel.clone(), metric: Metric::Power, from_ms: from, to_ms: to, max_points };
        let got = store.query_series(&query).await.unwrap();
        let want = naive_buckets(&points.range(from..to).map(|(t, v)| (*t, *v)).collect(), bucket);
        assert_eq!(got.len(), want.len(), "{label}: bucket count at {bucket} ms");
        for (point, (start, (count, min, max, sum))) in got.iter().zip(&want) {
            assert_eq!(point.ts_ms, *start, "{label}: bucket start");
            assert_eq!(point.count, *count, "{label}: count of bucket {start}");
            assert_eq!(point.min, *min, "{label}: min of bucket {start}");
            assert_eq!(point.max, *max, "{label}: max of bucket {start}");
            assert!((point.mean - sum / *count as f64).abs() < 1e-9, "{label}: mean of bucket {start}");
        }
    }
    let energy = store.series_energy(&series, from + 7 * MINUTE + 13_000, to - 5_000).await.unwrap();
    let want = naive_energy(points, from + 7 * MINUTE + 13_000, to - 5_000);
    assert!((energy.energy_wh - want).abs() < 1e-6 * want.max(1.0), "{label}: energy {} Wh, reference {want} Wh", energy.energy_wh);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Readings arrive in shuffled batches with replays, and compaction runs
    /// at random points; every answer must equal the naive reference.
    #[test]
    fn rollups_match_naive_reference(
        steps in proptest::collection::vec((1i64..120_000, 0u32..5000), 50..400),
        batch_sizes in proptest::collection::vec(1usize..60, 1..40),
        compact_after in proptest::collection::vec(any::<bool>(), 1..40),
        shuffle_seed in any::<u64>(),
    ) {
        // Build one series with gaps, some longer than the hold limit.
        let mut points = BTreeMap::new();
        let mut ts = T0 + 5_000;
        for (i, (step, value)) in steps.iter().enumerate() {
            ts += if i % 97 == 50 { MAX_HOLD + step } else { *step };
            if ts >= T0 + 6 * HOUR { break; }
            points.insert(ts, f64::from(*value) / 10.0);
        }
        let mut arrivals: Vec<(i64, f64)> = points.iter().map(|(t, v)| (*t, *v)).collect();
        // Deterministic shuffle, then replay a tenth of the readings with other values.
        let mut state = shuffle_seed | 1;
        for i in (1..arrivals.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            arrivals.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let replays: Vec<(i64, f64)> = arrivals.iter().step_by(10).map(|(t, v)| (*t, v + 1000.0)).collect();

        runtime().block_on(async {
            let (_dir, store) = open(Retention::FOREVER);
            let mut queue: Vec<(i64, f64)> = arrivals.clone();
            queue.extend(replays);
            let mut offset = 0;
            let mut step = 0;
            while offset < queue.len() {
                let size = batch_sizes[step % batch_sizes.len()].min(queue.len() - offset);
                let batch: Vec<Reading> = queue[offset..offset + size].iter().map(|(t, v)| reading("rig-1", "gpu0", *t, *v)).collect();
                store.write_readings(&batch).await.unwrap();
                if compact_after[step % compact_after.len()] {
                    store.compact(T0).await.unwrap();
                }
                offset += size;
                step += 1;
            }
            assert_matches_reference(&store, &points, "before the last compaction").await;
            store.compact(T0).await.unwrap();
            assert_matches_reference(&store, &points, "after compaction").await;
            let stats = store.storage_stats().await.unwrap();
            let head = stats.tiers.iter().find(|tier| tier.tier == "head").unwrap();
            let raw = stats.tiers.iter().find(|tier| tier.tier == "raw").unwrap();
            assert_eq!(head.readings, 0, "compaction leaves the head empty");
            assert_eq!(raw.readings, points.len() as u64, "replays are not stored twice");
        });
    }
}

#[tokio::test]
async fn late_data_corrects_rollups() {
    let (_dir, store) = open(Retention::FOREVER);
    let mut points = BTreeMap::new();
    // Two hours at 10 s, but with a hole of 20 minutes in the first hour.
    let on_time: Vec<Reading> = (0..720)
        .map(|i| T0 + i * 10_000)
        .filter(|ts| !(T0 + 20 * MINUTE..T0 + 40 * MINUTE).contains(ts))
        .map(|ts| {
            points.insert(ts, 500.0);
            reading("rig-1", "gpu0", ts, 500.0)
        })
        .collect();
    store.write_readings(&on_time).await.unwrap();
    store.compact(T0 + 2 * HOUR).await.unwrap();
    let hole_energy = store.series_energy(&key("rig-1", "gpu0", Metric::Power), T0, T0 + HOUR).await.unwrap();
    assert!(hole_energy.energy_wh < 500.0 * 0.75, "the 20-minute gap must not be counted: {} Wh", hole_energy.energy_wh);

    // The buffered readings of the hole arrive late, out of order, at 1 000 W.
    let late: Vec<Reading> = (0..120)
        .rev()
        .map(|i| T0 + 20 * MINUTE + i * 10_000)
        .map(|ts| {
            points.insert(ts, 1000.0);
            reading("rig-1", "gpu0", ts, 1000.0)
        })
        .collect();
    store.write_readings(&late).await.unwrap();
    assert_matches_reference(&store, &points, "late data before compaction").await;
    let outcome = store.compact(T0 + 2 * HOUR).await.unwrap();
    assert_eq!(outcome.readings, 120);
    assert_matches_reference(&store, &points, "late data after compaction").await;

    let hour = store.series_energy(&key("rig-1", "gpu0", Metric::Power), T0, T0 + HOUR).await.unwrap();
    let want = 500.0 * 40.0 / 60.0 + 1000.0 * 20.0 / 60.0;
    assert!((hour.energy_wh - want).abs() < 1e-6, "{} Wh, expected {want} Wh", hour.energy_wh);
    assert_eq!(hour.covered_ms, HOUR);
}

#[tokio::test]
async fn replayed_readings_after_compaction_are_dropped() {
    let (_dir, store) = open(Retention::FOREVER);
    let batch: Vec<Reading> = (0..100).map(|i| reading("rig-1", "gpu0", T0 + i * 1000, i as f64)).collect();
    store.write_readings(&batch).await.unwrap();
    store.compact(T0).await.unwrap();
    let replay: Vec<Reading> = batch.iter().map(|r| Reading { value: r.value + 1.0, ..r.clone() }).collect();
    store.write_readings(&replay).await.unwrap();

    let raw = store.raw_readings(&se_store::RawQuery { device: DeviceId::parse("rig-1").unwrap(), channel: None, metric: None, from_ms: T0, to_ms: T0 + DAY, limit: 0 }).await.unwrap();
    assert_eq!(raw.len(), 100, "a replay of compacted readings is read once");
    assert!(raw.iter().enumerate().all(|(i, r)| r.value == i as f64), "the first stored value wins");
    let outcome = store.compact(T0).await.unwrap();
    assert_eq!(outcome.duplicates, 100);
    assert_eq!(store.stats().await.unwrap().readings, 100);
}

#[tokio::test]
async fn site_sum_top_and_percentiles() {
    let (_dir, store) = open(Retention::FOREVER);
    let mut batch = Vec::new();
    for gpu in 0..4 {
        for i in 0..360 {
            batch.push(reading("rig-1", &format!("gpu{gpu}"), T0 + i * 10_000, 100.0 * (gpu + 1) as f64));
        }
    }
    store.write_readings(&batch).await.unwrap();
    store.compact(T0).await.unwrap();
    let series: Vec<SeriesKey> = (0..4).map(|gpu| key("rig-1", &format!("gpu{gpu}"), Metric::Power)).collect();

    let sum = store.query_sum(&SumQuery { series: series.clone(), from_ms: T0, to_ms: T0 + HOUR, max_points: 60 }).await.unwrap();
    assert_eq!(sum.len(), 60);
    assert!(sum.iter().all(|point| point.sum == 1000.0 && point.series == 4), "{:?}", sum[0]);

    let top = store.top_series(&TopQuery { series: series.clone(), from_ms: T0, to_ms: T0 + HOUR, by: TopBy::EnergyWh, n: 2 }).await.unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(top[0].series, series[3]);
    assert_eq!(top[1].series, series[2]);
    // 400 W held over the hour except the last reading's open hold.
    assert!((top[0].value - 400.0 * 3590.0 / 3600.0).abs() < 1e-6, "{}", top[0].value);

    let report = store.series_percentiles(&series[0], T0, T0 + HOUR, &[0.5, 0.95]).await.unwrap();
    assert!(report.exact);
    assert_eq!(report.count, 360);
    assert_eq!(report.values, vec![(0.5, 100.0), (0.95, 100.0)]);
    let error = store.series_percentiles(&series[0], T0, T0 + HOUR, &[95.0]).await.unwrap_err();
    assert!(error.to_string().contains("0.95"), "{error}");
}

#[tokio::test]
async fn retention_deletes_old_tiers_under_concurrent_writes() {
    let retention = Retention { raw_ms: Some(DAY), minute_ms: Some(2 * DAY), hour_ms: None, day_ms: None };
    let (_dir, store) = open(retention);
    let store = Arc::new(store);
    let now = T0 + 10 * DAY;

    // Old data: 5 days ago, a day of one reading per minute.
    let old: Vec<Reading> = (0..1440).map(|i| reading("rig-1", "gpu0", now - 5 * DAY + i * MINUTE, 200.0)).collect();
    store.write_readings(&old).await.unwrap();
    store.compact(now).await.unwrap();

    // New readings keep arriving while compaction and retention run.
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for batch in 0..200 {
                let readings: Vec<Reading> = (0..50).map(|i| reading("rig-1", "gpu0", now - HOUR + (batch * 50 + i) * 100, 300.0)).collect();
                store.write_readings(&readings).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let maintenance = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..20 {
                store.compact(now).await.unwrap();
                store.enforce_retention(now).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    writer.await.unwrap();
    maintenance.await.unwrap();
    store.compact(now).await.unwrap();
    let outcome = store.enforce_retention(now).await.unwrap();
    assert_eq!(outcome.blocks_deleted, 0, "earlier passes already deleted the old blocks");

    let device = DeviceId::parse("rig-1").unwrap();
    let recent = store.raw_readings(&se_store::RawQuery { device: device.clone(), channel: None, metric: None, from_ms: now - DAY, to_ms: now + DAY, limit: 0 }).await.unwrap();
    assert_eq!(recent.len(), 10_000, "every recent reading survives retention exactly once");
    let old_raw = store.raw_readings(&se_store::RawQuery { device, channel: None, metric: None, from_ms: now - 6 * DAY, to_ms: now - 4 * DAY, limit: 0 }).await.unwrap();
    assert!(old_raw.is_empty(), "raw readings older than a day are deleted");

    // The old day is still visible through the hour rollups, kept forever.
    let hours = store
        .query_series(&SeriesQuery { device: key("rig-1", "gpu0", Metric::Power).device, channel: ChannelName::parse("gpu0").unwrap(), metric: Metric::Power, from_ms: now - 5 * DAY, to_ms: now - 4 * DAY, max_points: 24 })
        .await
        .unwrap();
    assert_eq!(hours.len(), 24);
    assert!(hours.iter().all(|point| point.count == 60 && point.mean == 200.0));
    let stats = store.storage_stats().await.unwrap();
    let minute = stats.tiers.iter().find(|tier| tier.tier == "1m").unwrap();
    assert_eq!(minute.readings, 10_000, "only the recent day remains at minute resolution");
}

fn head_readings(stats: &se_store::StorageStats) -> u64 {
    stats.tiers.iter().find(|tier| tier.tier == "head").map(|tier| tier.readings).unwrap()
}

#[tokio::test]
async fn compact_due_waits_for_batch_or_age() {
    let (_dir, store) = open(Retention::FOREVER);
    // A busy series past the batch size, and a slow one with a few readings.
    let busy: Vec<Reading> = (0..1500).map(|i| reading("rig-busy", "gpu0", T0 + i * 10_000, 200.0 + i as f64)).collect();
    let slow: Vec<Reading> = (0..5).map(|i| reading("plug-slow", "main", T0 + i * 300_000, 40.0)).collect();
    store.write_readings(&busy).await.unwrap();
    store.write_readings(&slow).await.unwrap();
    let query = SeriesQuery { device: DeviceId::parse("plug-slow").unwrap(), channel: ChannelName::parse("main").unwrap(), metric: Metric::Power, from_ms: T0, to_ms: T0 + DAY, max_points: 0 };
    let before = store.query_series(&query).await.unwrap();

    let now = se_core::now_ms();
    let first = store.compact_due(now).await.unwrap();
    assert_eq!(first.series, 1, "only the busy series is due");
    assert_eq!(first.readings, 1500);
    assert_eq!(head_readings(&store.storage_stats().await.unwrap()), 5);
    assert_eq!(store.query_series(&query).await.unwrap(), before, "head readings are still queried");

    let second = store.compact_due(now + 59 * MINUTE).await.unwrap();
    assert_eq!(second.readings, 0, "the slow series is not due before an hour");

    let third = store.compact_due(now + HOUR).await.unwrap();
    assert_eq!(third.readings, 5);
    assert_eq!(head_readings(&store.storage_stats().await.unwrap()), 0);
    assert_eq!(store.query_series(&query).await.unwrap(), before);
}

#[tokio::test]
async fn compaction_shrinks_database_file() {
    let (dir, store) = open(Retention::FOREVER);
    let readings: Vec<Reading> = (0..200_000).map(|i| reading(&format!("rig-{}", i % 20), "gpu0", T0 + (i / 20) * 1_000, (i % 997) as f64)).collect();
    for batch in readings.chunks(10_000) {
        store.write_readings(batch).await.unwrap();
    }
    // Closing the last connection checkpoints the WAL into the file and deletes it.
    drop(store);
    let file = dir.path().join(SqliteStore::FILE_NAME);
    let before = std::fs::metadata(&file).unwrap().len();

    let store = SqliteStore::open_with(dir.path(), StoreOptions { retention: Retention::FOREVER }).unwrap();
    store.compact(T0).await.unwrap();
    drop(store);
    let after = std::fs::metadata(&file).unwrap().len();
    assert!(after * 4 < before, "file {before} bytes before compaction, {after} after");
}
