//! Batches that span many series, as a farm sends them: each series has a
//! few readings per batch, which the store writes to its staging table and
//! merges into the head table in bulk. These tests check that latest values,
//! reading counts and duplicate detection stay exact across both tables,
//! compaction, reopening and a crash.

use std::path::Path;
use std::process::Command;

use se_core::{DeviceId, Metric, Reading};
use se_store::{RawQuery, Retention, SeriesQuery, SqliteStore, Store, StoreOptions, WriteOutcome};
use tempfile::TempDir;

/// Metrics of each farm device, all on channel `gpu0`.
const METRICS: [Metric; 5] = [Metric::Power, Metric::Utilization, Metric::Temperature, Metric::FanSpeed, Metric::MemoryUsed];

/// Readings of one series per batch that go straight to the head table;
/// fewer are staged. Mirrors the store's constant.
const DIRECT_HEAD_READINGS: usize = 16;

/// Staged rows at which a write merges them into the head table. Mirrors the store's constant.
const MERGE_STAGED_READINGS: usize = 200_000;

fn device(name: &str) -> DeviceId {
    DeviceId::parse(name).expect("test device id is valid")
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open_with(dir, StoreOptions { retention: Retention::FOREVER }).expect("store opens")
}

fn open_temp() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path());
    (dir, store)
}

/// A farm of `devices` devices with five series each, reporting every second.
struct Farm {
    devices: usize,
}

impl Farm {
    fn device_name(index: usize) -> String {
        format!("farm-{index:04}")
    }

    fn value(device: usize, metric: usize, instant: usize) -> f64 {
        (device * 10 + metric) as f64 + instant as f64 / 1_000.0
    }

    fn ts_ms(instant: usize) -> i64 {
        1_000_000 + instant as i64 * 1_000
    }

    /// Readings of every series at each instant of `instants`, in time order.
    fn batch(&self, instants: std::ops::Range<usize>) -> Vec<Reading> {
        let mut batch = Vec::new();
        for instant in instants {
            for index in 0..self.devices {
                let name = device(&Self::device_name(index));
                for (metric_index, metric) in METRICS.iter().enumerate() {
                    batch.push(Reading::new(name.clone(), "gpu0", *metric, Self::ts_ms(instant), Self::value(index, metric_index, instant)));
                }
            }
        }
        batch
    }

    fn series(&self) -> usize {
        self.devices * METRICS.len()
    }
}

fn all_of(name: &str) -> RawQuery {
    RawQuery { device: device(name), channel: None, metric: None, from_ms: i64::MIN, to_ms: i64::MAX, limit: 0 }
}

/// Counts rows of a table by opening the database file directly.
fn count_rows(dir: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(SqliteStore::FILE_NAME)).expect("database file opens");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0)).expect("count query runs")
}

/// Checks the latest values of one farm device against the farm at `instant`.
async fn assert_latest(store: &SqliteStore, index: usize, instant: usize) {
    let name = Farm::device_name(index);
    let summary = store.device(&device(&name)).await.expect("device read").expect("device exists");
    assert_eq!(summary.latest.len(), METRICS.len(), "latest values of {name}");
    for latest in &summary.latest {
        let metric_index = METRICS.iter().position(|metric| *metric == latest.metric).expect("a farm metric");
        assert_eq!(latest.ts_ms, Farm::ts_ms(instant), "latest timestamp of {name} {}", latest.metric.key());
        assert_eq!(latest.value, Farm::value(index, metric_index, instant), "latest value of {name} {}", latest.metric.key());
    }
}

fn power_series(name: &str, ts_ms: i64, value: f64) -> Reading {
    Reading::new(device(name), "gpu0", Metric::Power, ts_ms, value)
}

#[tokio::test]
async fn wide_batches_count_and_latest() {
    let (dir, store) = open_temp();
    let farm = Farm { devices: 60 };

    let first = store.write_readings(&farm.batch(0..3)).await.expect("first batch");
    let second = store.write_readings(&farm.batch(3..6)).await.expect("second batch");
    let stats = store.stats().await.expect("stats");
    let staged = count_rows(dir.path(), "staged_readings");
    let head = count_rows(dir.path(), "readings");

    assert_eq!(first, WriteOutcome { stored: 900, duplicates: 0 });
    assert_eq!(second, WriteOutcome { stored: 900, duplicates: 0 });
    assert_eq!(staged, 1_800, "three readings per series and batch are staged");
    assert_eq!(head, 0);
    assert_eq!(stats.devices, 60);
    assert_eq!(stats.series, 300);
    assert_eq!(stats.readings, 1_800);
    assert_latest(&store, 0, 5).await;
    assert_latest(&store, 59, 5).await;

    let listed = store.list_devices().await.expect("list devices");
    assert_eq!(listed.len(), 60);
    for summary in &listed {
        assert_eq!(summary.latest.len(), METRICS.len(), "latest values of {}", summary.id);
        assert!(summary.latest.iter().all(|latest| latest.ts_ms == Farm::ts_ms(5)), "latest timestamps of {}", summary.id);
    }

    let readings = store.raw_readings(&all_of("farm-0007")).await.expect("raw readings");
    assert_eq!(readings.len(), 30);
    assert_eq!(readings.first().map(|reading| reading.ts_ms), Some(Farm::ts_ms(0)));
    let points = store
        .query_series(&SeriesQuery {
            device: device("farm-0007"),
            channel: se_core::ChannelName::parse("gpu0").expect("channel"),
            metric: Metric::Temperature,
            from_ms: Farm::ts_ms(0),
            to_ms: Farm::ts_ms(6),
            max_points: 0,
        })
        .await
        .expect("query series");
    let values: Vec<f64> = points.iter().map(|point| point.mean).collect();
    let expected: Vec<f64> = (0..6).map(|instant| Farm::value(7, 2, instant)).collect();
    assert_eq!(values, expected);

    let compacted = store.compact(se_core::now_ms()).await.expect("compact");
    let stats_after = store.stats().await.expect("stats after compaction");
    let tiers = store.storage_stats().await.expect("storage stats").tiers;

    assert_eq!(compacted.readings, 1_800);
    assert_eq!(count_rows(dir.path(), "staged_readings"), 0);
    assert_eq!(count_rows(dir.path(), "readings"), 0);
    assert_eq!(stats_after.readings, 1_800);
    assert_eq!(tiers.iter().find(|tier| tier.tier == "raw").map(|tier| tier.readings), Some(1_800));
    assert_eq!(tiers.iter().find(|tier| tier.tier == "head").map(|tier| tier.readings), Some(0));
    assert_latest(&store, 0, 5).await;
    assert_latest(&store, 59, 5).await;

    store.write_readings(&farm.batch(6..9)).await.expect("batch after compaction");
    assert_eq!(store.stats().await.expect("stats").readings, 2_700);
    assert_latest(&store, 31, 8).await;
}

#[tokio::test]
async fn replays_across_tables_are_duplicates() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let staged_pair = vec![power_series("rig-01", 1_000, 1.0), power_series("rig-01", 2_000, 2.0)];
    let direct_run: Vec<Reading> = (1..=20).map(|second| power_series("rig-01", second * 1_000, 100.0 + second as f64)).collect();
    let lone_replay = vec![power_series("rig-01", 5_000, 555.0)];

    {
        let store = open(dir.path());
        let staged = store.write_readings(&staged_pair).await.expect("staged pair");
        // Twenty readings of one series go straight to the head table, where
        // the primary key cannot see the two staged ones.
        let direct = store.write_readings(&direct_run).await.expect("direct run");
        // One reading is staged, where the primary key cannot see the head row.
        let replay = store.write_readings(&lone_replay).await.expect("lone replay");

        assert_eq!(staged, WriteOutcome { stored: 2, duplicates: 0 });
        assert_eq!(direct, WriteOutcome { stored: 18, duplicates: 2 });
        assert_eq!(replay, WriteOutcome { stored: 0, duplicates: 1 });
        assert_eq!(count_rows(dir.path(), "staged_readings"), 2);
        assert_eq!(count_rows(dir.path(), "readings"), 18);
    }

    // After reopening, the writer has no cached bounds for either table.
    let store = open(dir.path());
    let staged_again = store.write_readings(&staged_pair).await.expect("staged pair again");
    let direct_again = store.write_readings(&direct_run).await.expect("direct run again");
    let replay_again = store.write_readings(&lone_replay).await.expect("lone replay again");
    let stored = store.raw_readings(&all_of("rig-01")).await.expect("raw readings");
    let stats = store.stats().await.expect("stats");
    let summary = store.device(&device("rig-01")).await.expect("device read").expect("device exists");

    assert_eq!(staged_again, WriteOutcome { stored: 0, duplicates: 2 });
    assert_eq!(direct_again, WriteOutcome { stored: 0, duplicates: 20 });
    assert_eq!(replay_again, WriteOutcome { stored: 0, duplicates: 1 });
    let values: Vec<f64> = stored.iter().map(|reading| reading.value).collect();
    let mut expected = vec![1.0, 2.0];
    expected.extend((3..=20).map(|second| 100.0 + second as f64));
    assert_eq!(values, expected, "the first value of each instant is kept");
    assert_eq!(stats.readings, 20);
    assert_eq!((summary.latest[0].ts_ms, summary.latest[0].value), (20_000, 120.0));

    // A replay of compacted readings reaches the head and counts until the
    // next compaction drops it, whichever table it went to.
    store.compact(se_core::now_ms()).await.expect("compact");
    store.write_readings(&staged_pair).await.expect("staged pair after compaction");
    store.write_readings(&direct_run).await.expect("direct run after compaction");
    let compacted = store.compact(se_core::now_ms()).await.expect("compact the replays");
    let stored = store.raw_readings(&all_of("rig-01")).await.expect("raw readings after compaction");
    let stats = store.stats().await.expect("stats after compaction");

    assert_eq!(compacted.duplicates, 20);
    assert_eq!(stored.iter().map(|reading| reading.value).collect::<Vec<_>>(), expected);
    assert_eq!(stats.readings, 20);
}

#[tokio::test]
async fn staged_latest_competes_with_table() {
    let (_dir, store) = open_temp();
    let direct_run: Vec<Reading> = (1..=DIRECT_HEAD_READINGS as i64).map(|second| power_series("rig-01", second * 1_000, second as f64)).collect();
    let latest = |store: SqliteStore| async move {
        let summary = store.device(&device("rig-01")).await.expect("device read").expect("device exists");
        (summary.latest[0].ts_ms, summary.latest[0].value)
    };

    store.write_readings(&direct_run).await.expect("direct run");
    let after_direct = latest(store.clone()).await;
    let late = store.write_readings(&[power_series("rig-01", 500, -1.0)]).await.expect("late staged reading");
    let after_late = latest(store.clone()).await;
    store.write_readings(&[power_series("rig-01", 30_000, 300.0)]).await.expect("newer staged reading");
    let after_newer = latest(store.clone()).await;
    store.compact(se_core::now_ms()).await.expect("compact");
    let after_compaction = latest(store.clone()).await;
    let stats = store.stats().await.expect("stats");

    assert_eq!(after_direct, (16_000, 16.0));
    assert_eq!(late, WriteOutcome { stored: 1, duplicates: 0 });
    assert_eq!(after_late, (16_000, 16.0), "a late staged reading does not hide the newest value");
    assert_eq!(after_newer, (30_000, 300.0));
    assert_eq!(after_compaction, (30_000, 300.0));
    assert_eq!(stats.readings, 18);
}

#[tokio::test]
async fn second_writer_commits_are_seen() {
    // Two stores on one file stand for two processes, such as `serve` and
    // an import: each must notice the rows that the other wrote.
    let (dir, first) = open_temp();
    let second = open(dir.path());
    let direct_run: Vec<Reading> = (2..22).map(|second| power_series("rig-01", second * 1_000, second as f64)).collect();

    second.write_readings(&[power_series("rig-01", 1_000, 1.0)]).await.expect("staged by the second store");
    first.write_readings(&direct_run).await.expect("head rows by the first store");
    let replay = second.write_readings(&[power_series("rig-01", 3_000, 333.0)]).await.expect("replay by the second store");
    let stored = second.raw_readings(&all_of("rig-01")).await.expect("raw readings");
    let stats = second.stats().await.expect("stats");

    assert_eq!(replay, WriteOutcome { stored: 0, duplicates: 1 });
    assert_eq!(stored.len(), 21);
    assert_eq!(stored.iter().find(|reading| reading.ts_ms == 3_000).map(|reading| reading.value), Some(3.0));
    assert_eq!(stats.readings, 21);
}

/// Farm of the crash test: enough batches that one write merges the
/// staging table, and one more batch that stays staged.
const CRASH_FARM_DEVICES: usize = 400;
const CRASH_INSTANTS_PER_BATCH: usize = 5;
const CRASH_BATCHES: usize = MERGE_STAGED_READINGS / (CRASH_FARM_DEVICES * 5 * CRASH_INSTANTS_PER_BATCH) + 1;

/// Child half of `wide_writes_survive_abort`: writes farm batches and a
/// direct run, then aborts without running destructors, as SIGKILL would.
#[tokio::test]
async fn abort_child_writes_wide_batches() {
    let Ok(dir) = std::env::var("SE_STORE_WIDE_ABORT_CHILD_DIR") else {
        return; // Runs only when started by the parent test.
    };
    let store = open(Path::new(&dir));
    let farm = Farm { devices: CRASH_FARM_DEVICES };
    for batch in 0..CRASH_BATCHES {
        let first = batch * CRASH_INSTANTS_PER_BATCH;
        store.write_readings(&farm.batch(first..first + CRASH_INSTANTS_PER_BATCH)).await.expect("child writes a farm batch");
    }
    let direct_run: Vec<Reading> = (0..20).map(|second| power_series("rig-direct", second * 1_000, second as f64)).collect();
    store.write_readings(&direct_run).await.expect("child writes a direct run");
    std::process::abort();
}

#[tokio::test]
async fn wide_writes_survive_abort() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let test_binary = std::env::current_exe().expect("path of the test binary");
    let status = Command::new(test_binary)
        .args(["abort_child_writes_wide_batches", "--exact", "--test-threads=1"])
        .env("SE_STORE_WIDE_ABORT_CHILD_DIR", dir.path())
        .output()
        .expect("child test process starts")
        .status;
    assert!(!status.success(), "the child must end by abort, not by a normal exit");

    let farm = Farm { devices: CRASH_FARM_DEVICES };
    let per_batch = farm.series() * CRASH_INSTANTS_PER_BATCH;
    let farm_readings = per_batch * CRASH_BATCHES;
    let last_instant = CRASH_BATCHES * CRASH_INSTANTS_PER_BATCH - 1;
    // One write merged the staging table; the batches after it stay staged.
    let merged = (MERGE_STAGED_READINGS / per_batch + usize::from(MERGE_STAGED_READINGS % per_batch != 0)) * per_batch;
    assert_eq!(count_rows(dir.path(), "readings"), (merged + 20) as i64);
    assert_eq!(count_rows(dir.path(), "staged_readings"), (farm_readings - merged) as i64);

    let store = open(dir.path());
    let stats = store.stats().await.expect("stats after the crash");
    assert_eq!(stats.series, (farm.series() + 1) as u64);
    assert_eq!(stats.readings, (farm_readings + 20) as u64);
    for index in [0, 123, CRASH_FARM_DEVICES - 1] {
        assert_latest(&store, index, last_instant).await;
    }
    let direct = store.device(&device("rig-direct")).await.expect("device read").expect("device exists");
    assert_eq!((direct.latest[0].ts_ms, direct.latest[0].value), (19_000, 19.0));
    let readings = store.raw_readings(&all_of("farm-0123")).await.expect("raw readings");
    assert_eq!(readings.len(), METRICS.len() * (last_instant + 1));

    // Replays of a merged batch and of the staged one are all duplicates.
    let replay_merged = store.write_readings(&farm.batch(0..CRASH_INSTANTS_PER_BATCH)).await.expect("replay a merged batch");
    let replay_staged = store.write_readings(&farm.batch(last_instant + 1 - CRASH_INSTANTS_PER_BATCH..last_instant + 1)).await.expect("replay the staged batch");
    assert_eq!(replay_merged, WriteOutcome { stored: 0, duplicates: per_batch as u64 });
    assert_eq!(replay_staged, WriteOutcome { stored: 0, duplicates: per_batch as u64 });

    store.compact(se_core::now_ms()).await.expect("compact after the crash");
    let stats = store.stats().await.expect("stats after compaction");
    assert_eq!(stats.readings, (farm_readings + 20) as u64);
    assert_latest(&store, 123, last_instant).await;
}
