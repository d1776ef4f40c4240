//! Our side: the embedded SQLite store, called in process through the
//! `Store` trait, as `smart-energy serve` calls it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use se_core::{Reading, TimestampMs};
use se_store::{RawQuery, SeriesKey, SeriesQuery, SqliteStore, Store, SumQuery};
pub use se_store::TierStats;

use super::data::DataSet;
use super::{disk_usage, Progress, QueryCheck};

/// Readings per `write_readings` call, as a busy ingestion batch.
const READINGS_PER_WRITE: usize = 10_000;
/// Readings written between two calls to `compact`, standing in for the background task.
const READINGS_PER_COMPACT: u64 = 1_000_000;

/// Sizes of one loaded data set.
#[derive(Debug, Clone)]
pub struct OurFootprint {
    pub tiers: Vec<TierStats>,
    /// Disk blocks of the data directory after the store is closed, as `du` counts them.
    pub data_dir_allocated: u64,
}

pub struct Ours {
    pub dir: PathBuf,
    store: SqliteStore,
}

fn open(dir: &Path) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(dir).with_context(|| format!("open the store in {}", dir.display()))
}

fn series_key(set: &DataSet, index: usize) -> SeriesKey {
    let spec = &set.series[index];
    SeriesKey { device: spec.device.clone(), channel: spec.channel.clone(), metric: spec.metric }
}

impl Ours {
    /// Writes every point of `set` into a new store in `dir`, compacting as
    /// the background task would, then compacts everything written.
    pub async fn load(dir: &Path, set: &DataSet) -> anyhow::Result<(Ours, Duration)> {
        let store = open(dir)?;
        let started = Instant::now();
        let mut progress = Progress::new(format!("smart-energy {}", set.name), set.total_points);
        let mut since_compact = 0u64;
        for chunk in set.chunks() {
            let readings: Vec<Reading> = chunk
                .iter()
                .map(|point| {
                    let spec = &set.series[point.series as usize];
                    Reading { device: spec.device.clone(), channel: spec.channel.clone(), metric: spec.metric, ts_ms: point.ts_ms, value: point.value }
                })
                .collect();
            for batch in readings.chunks(READINGS_PER_WRITE) {
                store.write_readings(batch).await.context("write readings to the store")?;
            }
            since_compact += chunk.len() as u64;
            if since_compact >= READINGS_PER_COMPACT {
                store.compact_due(se_core::now_ms()).await.context("compact the store")?;
                since_compact = 0;
            }
            progress.add(chunk.len() as u64);
        }
        store.compact(se_core::now_ms()).await.context("compact the store")?;
        progress.finish();
        Ok((Ours { dir: dir.to_owned(), store }, started.elapsed()))
    }

    /// Returns the tier statistics, then closes the store to measure its
    /// directory without a WAL file and opens it again for queries.
    pub async fn footprint(self) -> anyhow::Result<(Ours, OurFootprint)> {
        let stats = self.store.storage_stats().await.context("read storage statistics")?;
        let dir = self.dir.clone();
        drop(self.store);
        for (path, metadata) in super::files_under(&dir)? {
            eprintln!("  [smart-energy] {}: {} bytes", path.display(), metadata.len());
        }
        let allocated = disk_usage(&dir)?.allocated;
        let store = open(&dir)?;
        Ok((Ours { dir, store }, OurFootprint { tiers: stats.tiers, data_dir_allocated: allocated }))
    }

    pub async fn site_chart(&self, set: &DataSet, from_ms: TimestampMs, to_ms: TimestampMs, points: u32) -> anyhow::Result<QueryCheck> {
        let query = SumQuery { series: (0..set.series.len()).map(|index| series_key(set, index)).collect(), from_ms, to_ms, max_points: points };
        let buckets = self.store.query_sum(&query).await.context("run query_sum")?;
        let mut check = QueryCheck::default();
        for bucket in buckets {
            check.add(bucket.sum);
        }
        Ok(check)
    }

    /// Raw points of one series through `query_series` with `max_points` 0, the chart path.
    pub async fn raw_series(&self, set: &DataSet, series: usize, from_ms: TimestampMs, to_ms: TimestampMs) -> anyhow::Result<QueryCheck> {
        let spec = &set.series[series];
        let query = SeriesQuery { device: spec.device.clone(), channel: spec.channel.clone(), metric: spec.metric, from_ms, to_ms, max_points: 0 };
        let points = self.store.query_series(&query).await.context("run query_series")?;
        let mut check = QueryCheck::default();
        for point in points {
            check.add(point.mean);
        }
        Ok(check)
    }

    /// Raw readings of one series through `raw_readings`, the export path.
    pub async fn raw_readings(&self, set: &DataSet, series: usize, from_ms: TimestampMs, to_ms: TimestampMs) -> anyhow::Result<QueryCheck> {
        let spec = &set.series[series];
        let query = RawQuery { device: spec.device.clone(), channel: Some(spec.channel.clone()), metric: Some(spec.metric), from_ms, to_ms, limit: u32::MAX };
        let readings = self.store.raw_readings(&query).await.context("run raw_readings")?;
        let mut check = QueryCheck::default();
        for reading in readings {
            check.add(reading.value);
        }
        Ok(check)
    }
}
