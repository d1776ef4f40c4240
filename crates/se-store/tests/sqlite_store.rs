//! Tests of the SQLite engine against real database files in temporary directories.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use se_core::{now_ms, ChannelName, CommandAck, DeviceId, Metric, Reading, RejectReason, Rejection};
use se_store::{Retention, StoreOptions, 
    CommandRecord, CommandStatus, DeviceCounters, IngestBatch, IngestErrorQuery, NewUser, RawQuery, Role, SeriesPoint, SeriesQuery, Site,
    SqliteStore, Store, StoreError, WriteOutcome, DEFAULT_SITE_ID,
};
use tempfile::TempDir;

fn device(name: &str) -> DeviceId {
    DeviceId::parse(name).expect("test device id is valid")
}

fn reading(dev: &str, channel: &str, metric: Metric, ts_ms: i64, value: f64) -> Reading {
    Reading::new(device(dev), channel, metric, ts_ms, value)
}

/// Opens a store that keeps every resolution forever: these tests write
/// readings near 1970, which the default retention would answer from rollups.
fn open_temp() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_with(dir.path(), StoreOptions { retention: Retention::FOREVER }).expect("store opens in an empty directory");
    (dir, store)
}

fn all_of(dev: &str) -> RawQuery {
    RawQuery {
        device: device(dev),
        channel: None,
        metric: None,
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        limit: 0,
    }
}

fn series(
    dev: &str,
    channel: &str,
    metric: Metric,
    from_ms: i64,
    to_ms: i64,
    max_points: u32,
) -> SeriesQuery {
    SeriesQuery {
        device: device(dev),
        channel: ChannelName::parse(channel).expect("test channel is valid"),
        metric,
        from_ms,
        to_ms,
        max_points,
    }
}

fn rejection(dev: Option<&str>, reason: RejectReason, value: &str) -> Rejection {
    Rejection::new(
        reason,
        "se/test/topic",
        value,
        format!("test rejection of {value}"),
    )
    .with_device(dev.map(device))
    .with_field("power_w")
}

fn new_user(username: &str) -> NewUser {
    NewUser {
        username: username.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        role: Role::Admin,
        must_change_password: true,
    }
}

/// Counts rows of a table by opening the database file directly.
fn count_rows(data_dir: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(data_dir.join(SqliteStore::FILE_NAME))
        .expect("database file opens");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .expect("count query runs")
}

#[tokio::test]
async fn written_readings_read_back_equal() {
    let (_dir, store) = open_temp();
    // Written out of order, so the read order comes from the query.
    let written = vec![
        reading("rig-01", "gpu1", Metric::Power, 2_000, 180.25),
        reading("rig-01", "gpu0", Metric::Temperature, 1_000, 61.5),
        reading("rig-01", "gpu0", Metric::Power, 1_000, 231.5),
        reading("rig-01", "gpu0", Metric::Power, 2_000, -0.125),
        reading("rig-02", "main", Metric::Energy, 1_000, 12_345.678),
    ];

    let outcome = store
        .write_readings(&written)
        .await
        .expect("write succeeds");
    let rig1 = store
        .raw_readings(&all_of("rig-01"))
        .await
        .expect("read succeeds");

    assert_eq!(
        outcome,
        WriteOutcome {
            stored: 5,
            duplicates: 0
        }
    );
    let expected = vec![
        written[2].clone(), // 1000 gpu0 power_w
        written[1].clone(), // 1000 gpu0 temperature_c
        written[3].clone(), // 2000 gpu0 power_w
        written[0].clone(), // 2000 gpu1 power_w
    ];
    assert_eq!(rig1, expected);
}

#[tokio::test]
async fn raw_readings_filter_and_limit() {
    let (_dir, store) = open_temp();
    let written: Vec<Reading> = (0..10)
        .flat_map(|i| {
            [
                reading("rig-01", "gpu0", Metric::Power, i * 1000, i as f64),
                reading("rig-01", "gpu1", Metric::Power, i * 1000, 100.0 + i as f64),
            ]
        })
        .collect();
    store
        .write_readings(&written)
        .await
        .expect("write succeeds");

    let query = RawQuery {
        channel: Some(ChannelName::parse("gpu1").expect("valid channel")),
        metric: Some(Metric::Power),
        from_ms: 2_000,
        to_ms: 6_000,
        limit: 3,
        ..all_of("rig-01")
    };
    let found = store.raw_readings(&query).await.expect("read succeeds");

    let timestamps: Vec<i64> = found.iter().map(|reading| reading.ts_ms).collect();
    assert_eq!(timestamps, vec![2_000, 3_000, 4_000]);
    assert!(found
        .iter()
        .all(|reading| reading.channel.as_str() == "gpu1"));
}

#[tokio::test]
async fn duplicate_reading_stored_once() {
    let (_dir, store) = open_temp();
    let first = reading("rig-01", "gpu0", Metric::Power, 1_000, 200.0);
    let replay = reading("rig-01", "gpu0", Metric::Power, 1_000, 999.0);
    let other = reading("rig-01", "gpu0", Metric::Power, 2_000, 210.0);

    let initial = store
        .write_readings(&[first.clone(), first.clone()])
        .await
        .expect("first write");
    let replayed = store
        .write_readings(&[replay, other.clone()])
        .await
        .expect("second write");
    let stored = store
        .raw_readings(&all_of("rig-01"))
        .await
        .expect("read succeeds");
    let stats = store.stats().await.expect("stats");

    assert_eq!(
        initial,
        WriteOutcome {
            stored: 1,
            duplicates: 1
        }
    );
    assert_eq!(
        replayed,
        WriteOutcome {
            stored: 1,
            duplicates: 1
        }
    );
    assert_eq!(
        stored,
        vec![first, other],
        "the first value of a timestamp is kept"
    );
    assert_eq!(stats.readings, 2);
}

#[tokio::test]
async fn data_survives_store_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let written = vec![
        reading("rig-01", "gpu0", Metric::Power, 1_000, 230.0),
        reading("rig-01", "gpu0", Metric::Power, 2_000, 231.0),
    ];
    {
        let store = SqliteStore::open(dir.path()).expect("first open");
        store
            .write_readings(&written)
            .await
            .expect("write succeeds");
    }

    let store = SqliteStore::open(dir.path()).expect("second open");
    let read_back = store
        .raw_readings(&all_of("rig-01"))
        .await
        .expect("read succeeds");
    // The series id cache is empty after reopening, so this write must find the stored series.
    let outcome = store
        .write_readings(&[
            written[1].clone(),
            reading("rig-01", "gpu0", Metric::Power, 3_000, 232.0),
        ])
        .await
        .expect("write after reopen");
    let stats = store.stats().await.expect("stats");

    assert_eq!(read_back, written);
    assert_eq!(
        outcome,
        WriteOutcome {
            stored: 1,
            duplicates: 1
        }
    );
    assert_eq!(stats.series, 1);
    assert_eq!(stats.readings, 3);
}

/// Child half of `writes_survive_process_abort`: writes, then aborts the
/// process without running destructors, as a crash or SIGKILL would.
#[tokio::test]
async fn abort_child_writes_then_aborts() {
    let Ok(dir) = std::env::var("SE_STORE_ABORT_CHILD_DIR") else {
        return; // Runs only when started by the parent test.
    };
    let store = SqliteStore::open(Path::new(&dir)).expect("child opens store");
    let batch: Vec<Reading> = (0..500)
        .map(|i| reading("rig-01", "gpu0", Metric::Power, i * 1000, i as f64))
        .collect();
    store
        .write_readings(&batch)
        .await
        .expect("child write succeeds");
    std::process::abort();
}

#[tokio::test]
async fn writes_survive_process_abort() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let test_binary = std::env::current_exe().expect("path of the test binary");

    let status = Command::new(test_binary)
        .args([
            "abort_child_writes_then_aborts",
            "--exact",
            "--test-threads=1",
        ])
        .env("SE_STORE_ABORT_CHILD_DIR", dir.path())
        .output()
        .expect("child test process starts")
        .status;
    let store = SqliteStore::open(dir.path()).expect("store opens after the crash");
    let stats = store.stats().await.expect("stats");

    assert!(
        !status.success(),
        "the child must end by abort, not by a normal exit"
    );
    assert_eq!(stats.readings, 500);
}

#[tokio::test]
async fn latest_ignores_older_readings() {
    let (_dir, store) = open_temp();
    let rig = device("rig-01");

    store
        .write_readings(&[reading("rig-01", "gpu0", Metric::Power, 2_000, 220.0)])
        .await
        .expect("write");
    store
        .write_readings(&[reading("rig-01", "gpu0", Metric::Power, 1_000, 110.0)])
        .await
        .expect("late write");
    let after_late = store
        .device(&rig)
        .await
        .expect("device read")
        .expect("device exists");
    store
        .write_readings(&[reading("rig-01", "gpu0", Metric::Power, 3_000, 330.0)])
        .await
        .expect("newer write");
    let after_newer = store
        .device(&rig)
        .await
        .expect("device read")
        .expect("device exists");

    assert_eq!(after_late.latest.len(), 1);
    assert_eq!(
        (after_late.latest[0].ts_ms, after_late.latest[0].value),
        (2_000, 220.0)
    );
    assert_eq!(
        (after_newer.latest[0].ts_ms, after_newer.latest[0].value),
        (3_000, 330.0)
    );
    assert_eq!(after_newer.latest[0].unit, "W");
}

#[tokio::test]
async fn latest_takes_newest_within_batch() {
    let (_dir, store) = open_temp();
    let batch = [
        reading("rig-01", "gpu0", Metric::Power, 5_000, 500.0),
        reading("rig-01", "gpu0", Metric::Power, 9_000, 900.0),
        reading("rig-01", "gpu0", Metric::Power, 7_000, 700.0),
    ];

    store.write_readings(&batch).await.expect("write");
    let summary = store
        .device(&device("rig-01"))
        .await
        .expect("device read")
        .expect("device exists");

    assert_eq!(
        (summary.latest[0].ts_ms, summary.latest[0].value),
        (9_000, 900.0)
    );
    assert_eq!(summary.first_seen_ms, 5_000);
    assert_eq!(summary.last_seen_ms, 9_000);
}

#[tokio::test]
async fn query_series_buckets_are_exact() {
    let (_dir, store) = open_temp();
    // [0, 100) in 4 buckets of 25 ms: {0,10,20}, {30,40}, {50,60,70}, {80,90}.
    let values = [
        (0, 1.0),
        (10, 5.0),
        (20, 3.0),
        (30, -2.0),
        (40, 4.0),
        (50, 6.0),
        (60, 6.0),
        (70, 9.0),
        (80, 0.5),
        (90, 1.5),
    ];
    let batch: Vec<Reading> = values
        .iter()
        .map(|&(ts, value)| reading("meter-1", "main", Metric::Power, ts, value))
        .collect();
    store.write_readings(&batch).await.expect("write");

    let points = store
        .query_series(&series("meter-1", "main", Metric::Power, 0, 100, 4))
        .await
        .expect("query");

    let expected = vec![
        SeriesPoint {
            ts_ms: 0,
            min: 1.0,
            max: 5.0,
            mean: 3.0,
            count: 3,
        },
        SeriesPoint {
            ts_ms: 25,
            min: -2.0,
            max: 4.0,
            mean: 1.0,
            count: 2,
        },
        SeriesPoint {
            ts_ms: 50,
            min: 6.0,
            max: 9.0,
            mean: 7.0,
            count: 3,
        },
        SeriesPoint {
            ts_ms: 75,
            min: 0.5,
            max: 1.5,
            mean: 1.0,
            count: 2,
        },
    ];
    assert_eq!(points, expected);
}

#[tokio::test]
async fn query_series_rounds_bucket_up() {
    let (_dir, store) = open_temp();
    let batch: Vec<Reading> = (0..10)
        .map(|ts| reading("meter-1", "main", Metric::Power, ts, ts as f64))
        .collect();
    store.write_readings(&batch).await.expect("write");

    // 10 ms in at most 3 buckets: ceil(10 / 3) = 4 ms per bucket.
    let points = store
        .query_series(&series("meter-1", "main", Metric::Power, 0, 10, 3))
        .await
        .expect("query");

    let starts: Vec<i64> = points.iter().map(|point| point.ts_ms).collect();
    let counts: Vec<u64> = points.iter().map(|point| point.count).collect();
    assert_eq!(starts, vec![0, 4, 8]);
    assert_eq!(counts, vec![4, 4, 2]);
}

#[tokio::test]
async fn query_series_raw_points_when_zero() {
    let (_dir, store) = open_temp();
    let batch = [
        reading("meter-1", "main", Metric::Voltage, 100, 230.5),
        reading("meter-1", "main", Metric::Voltage, 200, 229.5),
        reading("meter-1", "main", Metric::Voltage, 300, 231.0),
    ];
    store.write_readings(&batch).await.expect("write");

    let points = store
        .query_series(&series("meter-1", "main", Metric::Voltage, 100, 300, 0))
        .await
        .expect("query");

    let expected = vec![
        SeriesPoint {
            ts_ms: 100,
            min: 230.5,
            max: 230.5,
            mean: 230.5,
            count: 1,
        },
        SeriesPoint {
            ts_ms: 200,
            min: 229.5,
            max: 229.5,
            mean: 229.5,
            count: 1,
        },
    ];
    assert_eq!(points, expected, "to_ms is exclusive");
}

#[tokio::test]
async fn query_series_unknown_series_empty() {
    let (_dir, store) = open_temp();

    let points = store
        .query_series(&series("nobody", "main", Metric::Power, 0, 1_000, 10))
        .await
        .expect("query");
    let reversed = store
        .query_series(&series("nobody", "main", Metric::Power, 1_000, 0, 10))
        .await
        .expect("query");

    assert!(points.is_empty());
    assert!(reversed.is_empty());
}

#[tokio::test]
async fn query_series_accepts_extreme_bounds() {
    let (_dir, store) = open_temp();
    store
        .write_readings(&[reading(
            "meter-1",
            "main",
            Metric::Power,
            1_700_000_000_000,
            42.0,
        )])
        .await
        .expect("write");

    let points = store
        .query_series(&series(
            "meter-1",
            "main",
            Metric::Power,
            i64::MIN,
            i64::MAX,
            1,
        ))
        .await
        .expect("query with the widest range");

    assert_eq!(points.len(), 1);
    assert_eq!(points[0].count, 1);
    assert_eq!(points[0].mean, 42.0);
}

#[tokio::test]
async fn non_finite_values_skipped_rest_kept() {
    let (_dir, store) = open_temp();
    let batch = [
        reading("rig-01", "gpu0", Metric::Power, 1_000, f64::NAN),
        reading("rig-01", "gpu0", Metric::Power, 2_000, 200.0),
        reading("rig-01", "gpu0", Metric::Power, 3_000, f64::INFINITY),
    ];

    let outcome = store
        .write_readings(&batch)
        .await
        .expect("write keeps the finite reading");
    let stored = store.raw_readings(&all_of("rig-01")).await.expect("read");

    assert_eq!(
        outcome,
        WriteOutcome {
            stored: 1,
            duplicates: 0
        }
    );
    assert_eq!(stored, vec![batch[1].clone()]);
}

#[tokio::test]
async fn device_counters_and_online_round_trip() {
    let (_dir, store) = open_temp();
    let rig = device("rig-01");
    let counters = DeviceCounters {
        last_seq: Some(u64::MAX - 1),
        lost: 3,
        duplicates: 2,
        restarts: 1,
    };

    store
        .write_readings(&[reading("rig-01", "gpu0", Metric::Power, 1_000, 1.0)])
        .await
        .expect("write");
    let before = store
        .device(&rig)
        .await
        .expect("read")
        .expect("device exists");
    store
        .update_device_counters(&rig, &counters)
        .await
        .expect("counters");
    store
        .set_device_online(&rig, false, 5_000)
        .await
        .expect("offline");
    let after = store
        .device(&rig)
        .await
        .expect("read")
        .expect("device exists");
    let unknown = store.device(&device("rig-99")).await.expect("read");

    assert_eq!(before.online, None);
    assert_eq!(after.counters, counters);
    assert_eq!(after.online, Some(false));
    assert_eq!(
        after.last_seen_ms, 1_000,
        "an offline report is not a sign of life"
    );
    assert_eq!(unknown, None);
}

#[tokio::test]
async fn ingest_batch_writes_every_part() {
    let (_dir, store) = open_temp();
    let rig = device("rig-07");
    let counters = DeviceCounters { last_seq: Some(12), lost: 2, duplicates: 1, restarts: 0 };
    let batch = IngestBatch {
        readings: vec![
            reading("rig-07", "gpu0", Metric::Power, 1_000, 210.0),
            reading("rig-07", "gpu0", Metric::Power, 1_000, 210.0),
            reading("rig-07", "gpu1", Metric::Power, 1_000, f64::NAN),
        ],
        rejections: vec![rejection(Some("rig-07"), RejectReason::NotANumber, "nan")],
        rejected_at_ms: 2_000,
        counters: vec![(rig.clone(), counters)],
        online: vec![(rig.clone(), true, 1_500)],
        command_acks: Vec::new(),
        announcements: Vec::new(),
    };

    let outcome = store.write_ingest_batch(&batch).await.expect("write batch");
    let summary = store.device(&rig).await.expect("read").expect("device exists");
    let stored = store.raw_readings(&all_of("rig-07")).await.expect("raw");

    assert_eq!(outcome, WriteOutcome { stored: 1, duplicates: 1 });
    assert_eq!(stored.len(), 1, "the NaN reading is skipped, the duplicate stored once");
    assert_eq!(summary.counters, counters);
    assert_eq!(summary.online, Some(true));
    assert_eq!(summary.ingest_errors, 1);
}

#[tokio::test]
async fn online_report_creates_device() {
    let (_dir, store) = open_temp();

    store
        .set_device_online(&device("plug-7"), true, 42_000)
        .await
        .expect("online");
    let devices = store.list_devices().await.expect("list");

    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].online, Some(true));
    assert_eq!(devices[0].last_seen_ms, 42_000);
    assert!(devices[0].latest.is_empty());
}

#[tokio::test]
async fn list_devices_sorted_with_latest() {
    let (_dir, store) = open_temp();
    let batch = [
        reading("rig-02", "gpu0", Metric::Power, 1_000, 2.0),
        reading("rig-01", "gpu1", Metric::Power, 1_000, 11.0),
        reading("rig-01", "gpu0", Metric::Power, 1_000, 10.0),
    ];
    store.write_readings(&batch).await.expect("write");

    let devices = store.list_devices().await.expect("list");

    let ids: Vec<&str> = devices.iter().map(|summary| summary.id.as_str()).collect();
    let rig1_channels: Vec<&str> = devices[0]
        .latest
        .iter()
        .map(|value| value.channel.as_str())
        .collect();
    assert_eq!(ids, vec!["rig-01", "rig-02"]);
    assert_eq!(rig1_channels, vec!["gpu0", "gpu1"]);
    assert_eq!(devices[1].latest.len(), 1);
}

#[tokio::test]
async fn ingest_errors_counted_per_device_reason() {
    let (_dir, store) = open_temp();
    store
        .write_readings(&[reading("rig-01", "gpu0", Metric::Power, 1_000, 1.0)])
        .await
        .expect("write");
    let batch = [
        rejection(Some("rig-01"), RejectReason::NotANumber, "nan"),
        rejection(Some("rig-01"), RejectReason::NotANumber, "None"),
        rejection(Some("rig-01"), RejectReason::Negative, "-5"),
        rejection(Some("rig-02"), RejectReason::NotANumber, "null"),
        rejection(None, RejectReason::UnknownTopic, "{}"),
    ];
    store
        .record_rejections(&batch[..2], 1_000)
        .await
        .expect("first batch");
    store
        .record_rejections(&batch[2..], 2_000)
        .await
        .expect("second batch");

    let all = store
        .ingest_errors(&IngestErrorQuery::default())
        .await
        .expect("report");
    let rig1_nan = store
        .ingest_errors(&IngestErrorQuery {
            device: Some(device("rig-01")),
            reason: Some(RejectReason::NotANumber),
            limit: 0,
        })
        .await
        .expect("filtered report");
    let summary = store
        .device(&device("rig-01"))
        .await
        .expect("read")
        .expect("device exists");

    let counts: Vec<(Option<&str>, RejectReason, u64)> = all
        .counts
        .iter()
        .map(|count| {
            (
                count.device.as_ref().map(DeviceId::as_str),
                count.reason,
                count.count,
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            (None, RejectReason::UnknownTopic, 1),
            (Some("rig-01"), RejectReason::Negative, 1),
            (Some("rig-01"), RejectReason::NotANumber, 2),
            (Some("rig-02"), RejectReason::NotANumber, 1),
        ]
    );
    assert_eq!(rig1_nan.counts.len(), 1);
    assert_eq!(rig1_nan.counts[0].last_at_ms, 1_000);
    assert_eq!(rig1_nan.recent.len(), 2);
    assert_eq!(summary.ingest_errors, 3);
}

#[tokio::test]
async fn recent_errors_newest_first_limited() {
    let (_dir, store) = open_temp();
    for i in 0..5 {
        let batch = [rejection(
            Some("rig-01"),
            RejectReason::OutOfRange,
            &format!("v{i}"),
        )];
        store
            .record_rejections(&batch, 1_000 + i)
            .await
            .expect("record");
    }

    let report = store
        .ingest_errors(&IngestErrorQuery {
            device: None,
            reason: None,
            limit: 3,
        })
        .await
        .expect("report");

    let values: Vec<&str> = report
        .recent
        .iter()
        .map(|record| record.value.as_str())
        .collect();
    assert_eq!(values, vec!["v4", "v3", "v2"]);
    assert_eq!(report.recent[0].at_ms, 1_004);
    assert_eq!(report.recent[0].field.as_deref(), Some("power_w"));
    assert_eq!(report.recent[0].device, Some(device("rig-01")));
}

#[tokio::test]
async fn recent_errors_limit_defaults_and_caps() {
    let (_dir, store) = open_temp();
    let batch: Vec<Rejection> = (0..1_200)
        .map(|i| rejection(None, RejectReason::UnparsablePayload, &format!("p{i}")))
        .collect();
    store
        .record_rejections(&batch, 1_000)
        .await
        .expect("record");

    let default = store
        .ingest_errors(&IngestErrorQuery::default())
        .await
        .expect("report");
    let huge = store
        .ingest_errors(&IngestErrorQuery {
            limit: u32::MAX,
            ..IngestErrorQuery::default()
        })
        .await
        .expect("report");

    assert_eq!(default.recent.len(), 100);
    assert_eq!(huge.recent.len(), 1_000);
}

#[tokio::test]
async fn ingest_error_rows_capped() {
    let (dir, store) = open_temp();
    let total = SqliteStore::MAX_INGEST_ERRORS + 50;
    let all: Vec<Rejection> = (0..total)
        .map(|i| rejection(Some("rig-01"), RejectReason::WrongUnit, &format!("v{i}")))
        .collect();
    for chunk in all.chunks(1_000) {
        store.record_rejections(chunk, 5_000).await.expect("record");
    }

    let report = store
        .ingest_errors(&IngestErrorQuery {
            limit: 1,
            ..IngestErrorQuery::default()
        })
        .await
        .expect("report");
    let conn =
        rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME)).expect("open file");
    let oldest_kept: String = conn
        .query_row(
            "SELECT value FROM ingest_errors ORDER BY id LIMIT 1",
            [],
            |row| row.get(0),
        )
        .expect("oldest row");

    assert_eq!(
        count_rows(dir.path(), "ingest_errors"),
        SqliteStore::MAX_INGEST_ERRORS
    );
    assert_eq!(oldest_kept, "v50");
    assert_eq!(report.recent[0].value, format!("v{}", total - 1));
    assert_eq!(
        report.counts[0].count, total as u64,
        "counters are not capped"
    );
}

#[tokio::test]
async fn user_created_and_found_by_name() {
    let (_dir, store) = open_temp();

    let created = store.create_user(&new_user("admin")).await.expect("create");
    let found = store.user_by_name("admin").await.expect("lookup");
    let missing = store.user_by_name("nobody").await.expect("lookup");
    let count = store.count_users().await.expect("count");

    assert_eq!(found, Some(created.clone()));
    assert_eq!(created.role, Role::Admin);
    assert!(created.must_change_password);
    assert_eq!(missing, None);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn duplicate_username_is_conflict() {
    let (_dir, store) = open_temp();
    store.create_user(&new_user("owner")).await.expect("create");

    let same = store.create_user(&new_user("owner")).await;
    let other_case = store.create_user(&new_user("OWNER")).await;

    assert!(matches!(same, Err(StoreError::Conflict { .. })), "{same:?}");
    assert!(
        matches!(other_case, Err(StoreError::Conflict { .. })),
        "{other_case:?}"
    );
}

#[tokio::test]
async fn set_password_clears_change_flag() {
    let (_dir, store) = open_temp();
    let created = store.create_user(&new_user("admin")).await.expect("create");

    store
        .set_password(created.id, "$argon2id$new")
        .await
        .expect("set password");
    let updated = store
        .user_by_name("admin")
        .await
        .expect("lookup")
        .expect("user exists");

    assert_eq!(updated.password_hash, "$argon2id$new");
    assert!(!updated.must_change_password);
}

#[tokio::test]
async fn sessions_expire_and_delete() {
    let (_dir, store) = open_temp();
    let user = store.create_user(&new_user("admin")).await.expect("create");
    // Creating a session deletes sessions expired by the wall clock, so expiry lies in the future.
    let expires = now_ms() + 60_000;
    store
        .create_session("hash-a", user.id, expires)
        .await
        .expect("session a");
    store
        .create_session("hash-b", user.id, expires)
        .await
        .expect("session b");

    let before_expiry = store
        .session_user("hash-a", expires - 1)
        .await
        .expect("lookup");
    let at_expiry = store.session_user("hash-a", expires).await.expect("lookup");
    store.delete_session("hash-b").await.expect("delete");
    let deleted = store
        .session_user("hash-b", now_ms())
        .await
        .expect("lookup");
    let unknown = store
        .session_user("hash-z", now_ms())
        .await
        .expect("lookup");

    assert_eq!(before_expiry, Some(user));
    assert_eq!(at_expiry, None);
    assert_eq!(deleted, None);
    assert_eq!(unknown, None);
}

#[tokio::test]
async fn expired_sessions_purged_on_create() {
    let (dir, store) = open_temp();
    let user = store.create_user(&new_user("admin")).await.expect("create");

    store
        .create_session("old", user.id, 1)
        .await
        .expect("expired session");
    store
        .create_session("new", user.id, i64::MAX)
        .await
        .expect("live session");

    assert_eq!(count_rows(dir.path(), "sessions"), 1);
}

#[tokio::test]
async fn newer_schema_is_rejected() {
    let dir = tempfile::tempdir().expect("temporary directory");
    {
        let conn = rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME))
            .expect("create file");
        conn.pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION + 1)
            .expect("set version");
    }

    let opened = SqliteStore::open(dir.path());

    match opened {
        Err(StoreError::SchemaTooNew {
            found, supported, ..
        }) => {
            assert_eq!(found, SqliteStore::SCHEMA_VERSION + 1);
            assert_eq!(supported, SqliteStore::SCHEMA_VERSION);
        }
        Err(other) => panic!("expected SchemaTooNew, got {other}"),
        Ok(_) => panic!("expected SchemaTooNew, but the store opened"),
    }
}

#[tokio::test]
async fn new_store_has_current_schema() {
    let (dir, _store) = open_temp();

    let conn =
        rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME)).expect("open file");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("version");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal mode");

    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn open_fails_when_dir_is_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"not a directory").expect("write file");

    let opened = SqliteStore::open(&not_a_dir);

    let Err(error) = opened else { panic!("a file opened as a data directory") };
    assert!(matches!(error, StoreError::NotADirectory { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("plain-file is a file, not a directory"), "{message}");
    assert!(message.contains("--data-dir"), "names the fix: {message}");
    assert_eq!(std::fs::read(&not_a_dir).unwrap(), b"not a directory", "the file is left as it was");
}

#[tokio::test]
async fn open_fails_on_non_database_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join(SqliteStore::FILE_NAME), vec![b'x'; 4096])
        .expect("write garbage");

    let opened = SqliteStore::open(dir.path());

    assert!(
        matches!(opened, Err(StoreError::Open { .. })),
        "{:?}",
        opened.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writer_and_readers_agree() {
    let (_dir, store) = open_temp();
    let store = Arc::new(store);
    const BATCHES: i64 = 50;
    const PER_BATCH: i64 = 200;

    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for batch in 0..BATCHES {
                let readings: Vec<Reading> = (0..PER_BATCH)
                    .map(|i| {
                        let ts = (batch * PER_BATCH + i) * 1000;
                        reading(
                            "rig-01",
                            if i % 2 == 0 { "gpu0" } else { "gpu1" },
                            Metric::Power,
                            ts,
                            i as f64,
                        )
                    })
                    .collect();
                store.write_readings(&readings).await?;
            }
            Ok::<_, StoreError>(())
        })
    };
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut reads = 0_u32;
                let mut last_seen = 0;
                while reads < 40 {
                    let stats = store.stats().await?;
                    // Counts only grow: each read runs on a committed snapshot.
                    assert!(stats.readings >= last_seen);
                    last_seen = stats.readings;
                    store.list_devices().await?;
                    store
                        .query_series(&series(
                            "rig-01",
                            "gpu0",
                            Metric::Power,
                            0,
                            i64::MAX / 4,
                            100,
                        ))
                        .await?;
                    reads += 1;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();

    writer
        .await
        .expect("writer task joins")
        .expect("writer succeeds");
    for reader in readers {
        reader
            .await
            .expect("reader task joins")
            .expect("reader succeeds");
    }
    let stats = store.stats().await.expect("stats");
    let stored = store.raw_readings(&all_of("rig-01")).await.expect("read");

    assert_eq!(stats.readings, (BATCHES * PER_BATCH) as u64);
    assert_eq!(stored.len(), (BATCHES * PER_BATCH) as usize);
}

#[tokio::test]
async fn large_batch_commits() {
    let (_dir, store) = open_temp();
    let batch: Vec<Reading> = (0..10_000)
        .map(|i| {
            reading(
                &format!("rig-{:02}", i % 10),
                "gpu0",
                Metric::Power,
                i * 1000,
                (i % 300) as f64,
            )
        })
        .collect();

    let outcome = store.write_readings(&batch).await.expect("write");
    let stats = store.stats().await.expect("stats");

    assert_eq!(
        outcome,
        WriteOutcome {
            stored: 10_000,
            duplicates: 0
        }
    );
    assert_eq!(stats.devices, 10);
    assert_eq!(stats.readings, 10_000);
}

fn site(id: &str) -> Site {
    Site {
        id: id.to_owned(),
        name: format!("Site {id}"),
        time_zone: "Africa/Tunis".to_owned(),
        currency: "TND".to_owned(),
        tariff_json: Some(r#"{"currency":"TND","energy":{"type":"flat","price_per_kwh":"0.2"}}"#.to_owned()),
        co2_g_per_kwh: Some(450.0),
    }
}

#[tokio::test]
async fn default_site_exists_after_open() {
    let (_dir, store) = open_temp();

    let default = store.site(DEFAULT_SITE_ID).await.expect("site");

    let default = default.expect("default site exists");
    assert_eq!(default.time_zone, "UTC");
    assert_eq!(default.currency, "EUR");
    assert_eq!(default.tariff_json, None);
}

#[tokio::test]
async fn upserted_site_reads_back_equal() {
    let (_dir, store) = open_temp();
    let mut farm = site("farm");
    store.upsert_site(&farm).await.expect("insert");
    farm.name = "Farm renamed".to_owned();
    farm.tariff_json = None;

    store.upsert_site(&farm).await.expect("update");

    assert_eq!(store.site("farm").await.expect("site"), Some(farm.clone()));
    let ids: Vec<String> = store
        .list_sites()
        .await
        .expect("list")
        .into_iter()
        .map(|site| site.id)
        .collect();
    assert_eq!(ids, vec!["default".to_owned(), "farm".to_owned()]);
}

#[tokio::test]
async fn unassigned_devices_belong_to_default() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.expect("site");
    store
        .write_readings(&[
            reading("rig-1", "total", Metric::Power, 1000, 5.0),
            reading("rig-2", "total", Metric::Power, 1000, 5.0),
        ])
        .await
        .expect("write");

    store.assign_device(&device("rig-2"), "farm").await.expect("assign");

    assert_eq!(
        store.site_devices(DEFAULT_SITE_ID).await.expect("default devices"),
        vec![device("rig-1")]
    );
    assert_eq!(
        store.site_devices("farm").await.expect("farm devices"),
        vec![device("rig-2")]
    );
    assert_eq!(store.device_site(&device("rig-2")).await.expect("site"), "farm");
    assert_eq!(store.device_site(&device("rig-1")).await.expect("site"), DEFAULT_SITE_ID);
}

#[tokio::test]
async fn assign_to_default_removes_assignment() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.expect("site");
    store
        .write_readings(&[reading("rig-1", "total", Metric::Power, 1000, 5.0)])
        .await
        .expect("write");
    store.assign_device(&device("rig-1"), "farm").await.expect("assign");

    store
        .assign_device(&device("rig-1"), DEFAULT_SITE_ID)
        .await
        .expect("assign back");

    assert_eq!(
        store.site_devices(DEFAULT_SITE_ID).await.expect("devices"),
        vec![device("rig-1")]
    );
    assert!(store.site_devices("farm").await.expect("devices").is_empty());
}

#[tokio::test]
async fn assign_to_unknown_site_fails() {
    let (_dir, store) = open_temp();

    let result = store.assign_device(&device("rig-1"), "nowhere").await;

    assert!(matches!(result, Err(StoreError::NotFound { .. })), "{result:?}");
}

#[tokio::test]
async fn deleted_site_returns_devices_to_default() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.expect("site");
    store
        .write_readings(&[reading("rig-1", "total", Metric::Power, 1000, 5.0)])
        .await
        .expect("write");
    store.assign_device(&device("rig-1"), "farm").await.expect("assign");

    let existed = store.delete_site("farm").await.expect("delete");

    assert!(existed);
    assert_eq!(store.site("farm").await.expect("site"), None);
    assert_eq!(store.device_site(&device("rig-1")).await.expect("site"), DEFAULT_SITE_ID);
}

#[tokio::test]
async fn default_site_cannot_be_deleted() {
    let (_dir, store) = open_temp();

    let result = store.delete_site(DEFAULT_SITE_ID).await;

    assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
}

#[tokio::test]
async fn site_owners_see_their_sites() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.expect("site");
    store.upsert_site(&site("office")).await.expect("site");
    let owner = store.create_user(&new_user("owner")).await.expect("user");
    let other = store.create_user(&new_user("other")).await.expect("user");

    store.set_site_owner("farm", owner.id, true).await.expect("grant");
    store.set_site_owner("office", owner.id, true).await.expect("grant");
    store.set_site_owner("office", owner.id, false).await.expect("revoke");

    let owned: Vec<String> = store
        .sites_of_user(owner.id)
        .await
        .expect("sites")
        .into_iter()
        .map(|site| site.id)
        .collect();
    assert_eq!(owned, vec!["farm".to_owned()]);
    assert!(store.sites_of_user(other.id).await.expect("sites").is_empty());
}

#[tokio::test]
async fn owner_of_unknown_user_fails() {
    let (_dir, store) = open_temp();

    let result = store.set_site_owner(DEFAULT_SITE_ID, 4242, true).await;

    assert!(matches!(result, Err(StoreError::NotFound { .. })), "{result:?}");
}

#[tokio::test]
async fn list_users_returns_all_by_id() {
    let (_dir, store) = open_temp();
    store.create_user(&new_user("bob")).await.expect("user");
    store.create_user(&new_user("alice")).await.expect("user");

    let names: Vec<String> = store
        .list_users()
        .await
        .expect("users")
        .into_iter()
        .map(|user| user.username)
        .collect();

    assert_eq!(names, vec!["bob".to_owned(), "alice".to_owned()]);
}

/// The schema of version 1 as it shipped, frozen here so the test keeps
/// checking the upgrade path after later migrations are added.
const SCHEMA_V1: &str = r#"
    CREATE TABLE devices (
        id            TEXT PRIMARY KEY NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms  INTEGER NOT NULL,
        online        INTEGER NULL,
        last_seq      INTEGER NULL,
        lost          INTEGER NOT NULL DEFAULT 0,
        duplicates    INTEGER NOT NULL DEFAULT 0,
        restarts      INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE series (
        id            INTEGER PRIMARY KEY,
        device_id     TEXT NOT NULL REFERENCES devices(id),
        channel       TEXT NOT NULL,
        metric        TEXT NOT NULL,
        reading_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (device_id, channel, metric)
    );

    CREATE TABLE readings (
        series_id INTEGER NOT NULL,
        ts_ms     INTEGER NOT NULL,
        value     REAL NOT NULL,
        PRIMARY KEY (series_id, ts_ms)
    ) WITHOUT ROWID;

    CREATE TABLE latest (
        series_id INTEGER PRIMARY KEY,
        ts_ms     INTEGER NOT NULL,
        value     REAL NOT NULL
    );

    CREATE TABLE ingest_errors (
        id        INTEGER PRIMARY KEY,
        at_ms     INTEGER NOT NULL,
        device_id TEXT NULL,
        topic     TEXT NOT NULL,
        field     TEXT NULL,
        value     TEXT NOT NULL,
        reason    TEXT NOT NULL,
        detail    TEXT NOT NULL
    );

    CREATE TABLE ingest_error_counts (
        device_id  TEXT NOT NULL DEFAULT '',
        reason     TEXT NOT NULL,
        count      INTEGER NOT NULL,
        last_at_ms INTEGER NOT NULL,
        PRIMARY KEY (device_id, reason)
    ) WITHOUT ROWID;

    CREATE TABLE users (
        id                   INTEGER PRIMARY KEY,
        username             TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash        TEXT NOT NULL,
        role                 TEXT NOT NULL,
        must_change_password INTEGER NOT NULL,
        created_ms           INTEGER NOT NULL
    );

    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY NOT NULL,
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE INDEX sessions_by_expiry ON sessions (expires_ms);
    "#;

#[tokio::test]
async fn version_one_file_migrates() {
    let dir = tempfile::tempdir().expect("temporary directory");
    {
        let conn = rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME))
            .expect("create file");
        conn.execute_batch(SCHEMA_V1).expect("v1 schema");
        conn.execute(
            "INSERT INTO devices (id, first_seen_ms, last_seen_ms) VALUES ('old-rig', 1, 2)",
            [],
        )
        .expect("v1 device");
        conn.pragma_update(None, "user_version", 1).expect("set version");
    }

    let store = SqliteStore::open(dir.path()).expect("v1 file opens");

    let conn =
        rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME)).expect("open file");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("version");
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    assert!(store.site(DEFAULT_SITE_ID).await.expect("site").is_some());
    assert_eq!(
        store.site_devices(DEFAULT_SITE_ID).await.expect("devices"),
        vec![device("old-rig")]
    );
}

fn command(id: &str, device_name: &str, created_ms: i64) -> CommandRecord {
    CommandRecord {
        id: id.to_owned(),
        device: device(device_name),
        username: "admin".to_owned(),
        action: "set_power_limit".to_owned(),
        request_json: format!(r#"{{"id":"{id}","action":"set_power_limit","gpu":0,"watts":220}}"#),
        created_ms,
        status: CommandStatus::Sent,
        ack_json: None,
        acked_ms: None,
    }
}

#[tokio::test]
async fn command_ack_completes_audit_record() {
    let (_dir, store) = open_temp();
    let rig = device("rig-03");
    store.record_command(&command("c-1", "rig-03", 1_000)).await.expect("record c-1");
    store.record_command(&command("c-2", "rig-03", 2_000)).await.expect("record c-2");
    let ack = CommandAck { id: "c-1".to_owned(), ok: true, payload: r#"{"id":"c-1","ok":true}"#.to_owned() };
    // An acknowledgement of another device's command id must not touch c-2.
    let stray = CommandAck { id: "c-2".to_owned(), ok: false, payload: "{}".to_owned() };
    let batch = IngestBatch {
        command_acks: vec![(rig.clone(), ack, 1_500), (device("rig-04"), stray, 1_600)],
        ..IngestBatch::default()
    };
    store.write_ingest_batch(&batch).await.expect("write acks");

    let commands = store.device_commands(&rig, 10).await.expect("list commands");
    assert_eq!(commands.len(), 2);
    assert_eq!(commands[0].id, "c-2", "newest first");
    assert_eq!(commands[0].status, CommandStatus::Sent);
    assert_eq!(commands[1].status, CommandStatus::Succeeded);
    assert_eq!(commands[1].ack_json.as_deref(), Some(r#"{"id":"c-1","ok":true}"#));
    assert_eq!(commands[1].acked_ms, Some(1_500));
}

#[tokio::test]
async fn command_status_marks_publish_failure() {
    let (_dir, store) = open_temp();
    store.record_command(&command("c-9", "rig-05", 1_000)).await.expect("record");
    store
        .set_command_status("c-9", CommandStatus::Failed, r#"{"error":"broker unreachable"}"#, 1_100)
        .await
        .expect("set status");
    let commands = store.device_commands(&device("rig-05"), 10).await.expect("list");
    assert_eq!(commands[0].status, CommandStatus::Failed);
    assert_eq!(commands[0].acked_ms, Some(1_100));
}

#[tokio::test]
async fn duplicate_command_id_conflicts() {
    let (_dir, store) = open_temp();
    store.record_command(&command("c-7", "rig-06", 1_000)).await.expect("first");
    let error = store.record_command(&command("c-7", "rig-06", 2_000)).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
}
