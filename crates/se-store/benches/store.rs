//! Write and query throughput of the SQLite engine, on a file in a temp dir.
//!
//! Writes use a generated mining rig: each message carries 8 GPUs with 5
//! metrics each (40 readings at one timestamp), one second apart. Every
//! timed batch contains new timestamps, so nothing is skipped as a duplicate.
//! The `write_farm` group writes a farm instead: 100 rigs of 8 GPUs with 5
//! metrics each (4,000 series) reporting every 10 s, in time order, so each
//! batch contains two or three readings of every series.
//! Run with `cargo bench -p se-store`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use se_core::{DeviceId, Metric, Reading, TimestampMs};
use se_store::{DeviceCounters, IngestBatch, SeriesQuery, SqliteStore, Store};
use tokio::runtime::Runtime;

const GPUS: usize = 8;
const METRICS: [Metric; 5] = [
    Metric::Power,
    Metric::Utilization,
    Metric::Temperature,
    Metric::FanSpeed,
    Metric::MemoryUsed,
];
const READINGS_PER_MESSAGE: usize = GPUS * METRICS.len();
const BATCH_SIZES: [usize; 3] = [100, 1_000, 10_000];

/// 2026-12-01T00:00:00Z in milliseconds.
const START_MS: TimestampMs = 1_796_083_200_000;
const DAY_POINTS: usize = 86_400;

/// Generates the readings of consecutive rig messages, 1 s apart.
struct RigGenerator {
    device: DeviceId,
    channels: Vec<String>,
    message: u64,
}

impl RigGenerator {
    fn new(device: &str) -> Self {
        Self {
            device: DeviceId::parse(device).expect("bench device id is valid"),
            channels: (0..GPUS).map(|gpu| format!("gpu{gpu}")).collect(),
            message: 0,
        }
    }

    /// Returns the next `count` readings; a message may span two batches.
    fn next_batch(&mut self, count: usize, position: &mut usize) -> Vec<Reading> {
        let mut batch = Vec::with_capacity(count);
        while batch.len() < count {
            let index = *position % READINGS_PER_MESSAGE;
            let gpu = index / METRICS.len();
            let metric = METRICS[index % METRICS.len()];
            let ts_ms = START_MS + self.message as TimestampMs * 1_000;
            batch.push(Reading::new(
                self.device.clone(),
                &self.channels[gpu],
                metric,
                ts_ms,
                sample_value(metric, gpu, self.message),
            ));
            *position += 1;
            if *position % READINGS_PER_MESSAGE == 0 {
                self.message += 1;
            }
        }
        batch
    }
}

/// Returns a plausible value with some noise, so SQLite stores varied doubles.
fn sample_value(metric: Metric, gpu: usize, message: u64) -> f64 {
    let wobble = ((message * 7 + gpu as u64 * 13) % 50) as f64 / 10.0;
    match metric {
        Metric::Power => 220.0 + wobble,
        Metric::Utilization => 95.0 + wobble / 2.0,
        Metric::Temperature => 60.0 + wobble,
        Metric::FanSpeed => 55.0 + wobble,
        _ => 7_800.0 + wobble,
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime for the benchmark")
}

fn bench_writes(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("write");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));

    for &size in &BATCH_SIZES {
        group.throughput(Throughput::Elements(size as u64));

        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("open store");
        let mut rig = RigGenerator::new("rig-readings");
        let mut position = 0;
        group.bench_with_input(BenchmarkId::new("write_readings", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                // Batches are built before the clock starts: only the store is timed.
                let batches: Vec<_> = (0..iters).map(|_| rig.next_batch(size, &mut position)).collect();
                let started = Instant::now();
                runtime.block_on(async {
                    for batch in &batches {
                        let outcome = store.write_readings(batch).await.expect("write_readings");
                        assert_eq!(outcome.stored, batch.len() as u64, "every reading is new");
                    }
                });
                started.elapsed()
            });
        });

        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("open store");
        let mut rig = RigGenerator::new("rig-ingest");
        let mut position = 0;
        group.bench_with_input(BenchmarkId::new("write_ingest_batch", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                // Like the ingest writer: readings plus the device's updated counters.
                let batches: Vec<_> = (0..iters)
                    .map(|_| {
                        let readings = rig.next_batch(size, &mut position);
                        let counters = DeviceCounters {
                            last_seq: Some(rig.message),
                            ..DeviceCounters::default()
                        };
                        IngestBatch {
                            readings,
                            counters: vec![(rig.device.clone(), counters)],
                            ..IngestBatch::default()
                        }
                    })
                    .collect();
                let started = Instant::now();
                runtime.block_on(async {
                    for batch in &batches {
                        let outcome = store.write_ingest_batch(batch).await.expect("write_ingest_batch");
                        assert_eq!(outcome.stored, batch.readings.len() as u64, "every reading is new");
                    }
                });
                started.elapsed()
            });
        });
    }
    group.finish();
}

const FARM_RIGS: usize = 100;
const FARM_SERIES: usize = FARM_RIGS * READINGS_PER_MESSAGE;
const FARM_INTERVAL_MS: TimestampMs = 10_000;
const FARM_BATCH: usize = 10_000;
/// Readings per series written before timing starts, so the head already
/// spreads over many pages as it does between two compactions of a farm.
const FARM_PREFILL_PER_SERIES: usize = 100;

/// Generates farm readings in time order: every series at one instant, then
/// every series at the next instant, 10 s later.
struct FarmGenerator {
    series: Vec<(DeviceId, String, Metric, usize)>,
    position: usize,
}

impl FarmGenerator {
    fn new() -> Self {
        let mut series = Vec::with_capacity(FARM_SERIES);
        for rig in 0..FARM_RIGS {
            let device = DeviceId::parse(&format!("farm-rig-{rig:03}")).expect("bench device id is valid");
            for gpu in 0..GPUS {
                for metric in METRICS {
                    series.push((device.clone(), format!("gpu{gpu}"), metric, gpu));
                }
            }
        }
        Self { series, position: 0 }
    }

    fn next_batch(&mut self, count: usize) -> Vec<Reading> {
        let mut batch = Vec::with_capacity(count);
        for _ in 0..count {
            let (device, channel, metric, gpu) = &self.series[self.position % FARM_SERIES];
            let instant = (self.position / FARM_SERIES) as u64;
            let ts_ms = START_MS + instant as TimestampMs * FARM_INTERVAL_MS;
            batch.push(Reading::new(device.clone(), channel, *metric, ts_ms, sample_value(*metric, *gpu, instant)));
            self.position += 1;
        }
        batch
    }
}

fn bench_farm_writes(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("write_farm");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(FARM_BATCH as u64));

    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open store");
    let mut farm = FarmGenerator::new();
    runtime.block_on(async {
        for _ in 0..FARM_SERIES * FARM_PREFILL_PER_SERIES / FARM_BATCH {
            store.write_readings(&farm.next_batch(FARM_BATCH)).await.expect("prefill the head");
        }
    });
    group.bench_function(BenchmarkId::new("write_readings_4000_series", FARM_BATCH), |b| {
        b.iter_custom(|iters| {
            let batches: Vec<_> = (0..iters).map(|_| farm.next_batch(FARM_BATCH)).collect();
            let started = Instant::now();
            runtime.block_on(async {
                for batch in &batches {
                    let outcome = store.write_readings(batch).await.expect("write_readings");
                    assert_eq!(outcome.stored, batch.len() as u64, "every reading is new");
                }
            });
            started.elapsed()
        });
    });
    group.finish();
}

fn bench_queries(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open store");
    let device = DeviceId::parse("rig-query").expect("bench device id is valid");

    // One series, 24 h at 1 s, written in batches of 10,000.
    let day: Vec<Reading> = (0..DAY_POINTS)
        .map(|second| {
            let ts_ms = START_MS + second as TimestampMs * 1_000;
            Reading::new(device.clone(), "gpu0", Metric::Power, ts_ms, sample_value(Metric::Power, 0, second as u64))
        })
        .collect();
    runtime.block_on(async {
        for chunk in day.chunks(10_000) {
            store.write_readings(chunk).await.expect("load the day of readings");
        }
        // Queries then read compressed blocks and rollups, as they do once
        // the background compaction has run.
        store.compact(START_MS).await.expect("compact the day of readings");
    });

    let mut group = c.benchmark_group("query_series_24h_1s");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(DAY_POINTS as u64));

    // The planner answers 1,000 points over a day from the minute rollups
    // in epoch-aligned buckets of 2 minutes: 720 points.
    for (name, max_points, expected) in [("downsampled_1000", 1_000u32, 720usize), ("raw", 0, DAY_POINTS)] {
        let query = SeriesQuery {
            device: device.clone(),
            channel: se_core::ChannelName::parse("gpu0").expect("bench channel is valid"),
            metric: Metric::Power,
            from_ms: START_MS,
            to_ms: START_MS + DAY_POINTS as TimestampMs * 1_000,
            max_points,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let points = runtime.block_on(store.query_series(&query)).expect("query_series");
                assert_eq!(points.len(), expected, "points returned by {name}");
                points
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_writes, bench_farm_writes, bench_queries);
criterion_main!(benches);
