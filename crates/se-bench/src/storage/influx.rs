//! InfluxDB 1.x peer: loads a data set over the HTTP line protocol API,
//! waits for its cold full compaction, measures its files and runs the two
//! benchmark queries in InfluxQL. bench/storage_compare.sh starts the server
//! on 127.0.0.1 with its data in a temp directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::data::{DataSet, Point};
use super::{disk_usage, Progress, QueryCheck};
use se_core::TimestampMs;

/// Measurement that holds every series; `device` and `channel` are tags and the metric key is the field.
const MEASUREMENT: &str = "gpu";
/// Lines per write request. InfluxDB 1.x documentation recommends batches of 5,000 to 10,000 points.
const LINES_PER_WRITE: usize = 10_000;

pub struct Influx {
    base: String,
    /// Directory given as `[data] dir` in the server's configuration.
    data_dir: PathBuf,
    /// Directory given as `[data] wal-dir`.
    wal_dir: PathBuf,
    http: reqwest::Client,
}

/// Sizes of one database after its full compaction.
#[derive(Debug, Clone, Copy)]
pub struct InfluxFootprint {
    /// Disk blocks allocated to the database's data and WAL directories, as `du` counts them.
    pub allocated_bytes: u64,
    /// Length of its TSM files alone.
    pub tsm_bytes: u64,
    /// Whether every shard reached a single TSM generation before the time limit.
    pub compacted: bool,
}

impl Influx {
    pub fn new(url: &str, data_dir: &Path, wal_dir: &Path) -> anyhow::Result<Influx> {
        let http = reqwest::Client::builder().build().context("build the HTTP client for InfluxDB")?;
        Ok(Influx { base: url.trim_end_matches('/').to_owned(), data_dir: data_dir.to_owned(), wal_dir: wal_dir.to_owned(), http })
    }

    /// Runs a statement such as `CREATE DATABASE` and fails on an InfluxQL error.
    async fn execute(&self, statement: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/query", self.base))
            .form(&[("q", statement)])
            .send()
            .await
            .with_context(|| format!("send `{statement}` to InfluxDB at {}", self.base))?;
        let status = response.status();
        let body = response.text().await.context("read the InfluxDB response")?;
        if !status.is_success() || body.contains("\"error\"") {
            bail!("InfluxDB rejected `{statement}` with HTTP {status}: {body}");
        }
        Ok(())
    }

    /// Drops and creates `database`, then writes every point of `set` into it.
    pub async fn load(&self, database: &str, set: &DataSet) -> anyhow::Result<Duration> {
        self.execute(&format!("DROP DATABASE \"{database}\"")).await?;
        self.execute(&format!("CREATE DATABASE \"{database}\"")).await?;
        let started = Instant::now();
        let mut progress = Progress::new(format!("influxdb {}", set.name), set.total_points);
        let mut body = String::new();
        let mut lines = 0;
        for chunk in set.chunks() {
            let mut rest: &[Point] = &chunk;
            while !rest.is_empty() {
                rest = append_line(&mut body, set, rest);
                lines += 1;
                if lines == LINES_PER_WRITE {
                    self.write(database, std::mem::take(&mut body)).await?;
                    lines = 0;
                }
            }
            progress.add(chunk.len() as u64);
        }
        if lines > 0 {
            self.write(database, body).await?;
        }
        progress.finish();
        Ok(started.elapsed())
    }

    async fn write(&self, database: &str, body: String) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/write", self.base))
            .query(&[("db", database), ("precision", "ms")])
            .body(body)
            .send()
            .await
            .context("send a line protocol write to InfluxDB")?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("InfluxDB write to database {database} failed with HTTP {status}: {text}");
        }
        Ok(())
    }

    /// Waits until every shard of `database` is written out of the cache and
    /// compacted to one TSM generation, and its files stop changing; then
    /// returns its sizes. Gives up after `limit` and marks the result.
    pub async fn wait_for_full_compaction(&self, database: &str, limit: Duration) -> anyhow::Result<InfluxFootprint> {
        let deadline = Instant::now() + limit;
        let started = Instant::now();
        let mut previous: Option<(u64, u64)> = None;
        let mut stable_polls = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let shards = shard_generations(&self.data_dir.join(database))?;
            let one_generation = !shards.is_empty() && shards.iter().all(|generations| generations.len() == 1);
            let wal_bytes = wal_segment_bytes(&self.wal_dir.join(database))?;
            let footprint = self.footprint(database, false)?;
            let sizes = (footprint.allocated_bytes, footprint.tsm_bytes);
            stable_polls = if previous == Some(sizes) { stable_polls + 1 } else { 0 };
            previous = Some(sizes);
            let done = one_generation && wal_bytes == 0 && stable_polls >= 2;
            eprintln!(
                "  [influxdb {database}] waiting for full compaction: {} shards, {} with one generation, WAL {} bytes, TSM {} bytes, {:.0} s",
                shards.len(),
                shards.iter().filter(|generations| generations.len() == 1).count(),
                wal_bytes,
                footprint.tsm_bytes,
                started.elapsed().as_secs_f64()
            );
            if done {
                return self.footprint(database, true);
            }
            if Instant::now() >= deadline {
                eprintln!("  [influxdb {database}] compaction did not finish within {limit:?}; measuring the files as they are");
                return self.footprint(database, false);
            }
        }
    }

    fn footprint(&self, database: &str, compacted: bool) -> anyhow::Result<InfluxFootprint> {
        let data = disk_usage(&self.data_dir.join(database))?;
        let wal = disk_usage(&self.wal_dir.join(database))?;
        let tsm_bytes = files_with_extension(&self.data_dir.join(database), "tsm")?.iter().map(|(_, length)| length).sum();
        Ok(InfluxFootprint { allocated_bytes: data.allocated + wal.allocated, tsm_bytes, compacted })
    }

    /// Site chart: the sum over series of each series' mean per bucket.
    pub async fn site_chart(&self, database: &str, from_ms: TimestampMs, to_ms: TimestampMs, points: u32) -> anyhow::Result<QueryCheck> {
        let bucket_ms = bucket_ms(from_ms, to_ms, points);
        // The offset makes buckets start at `from_ms`, not at a multiple of the bucket since 1970.
        let offset_ms = from_ms.rem_euclid(bucket_ms);
        let range = format!("time >= {from_ms}ms AND time < {to_ms}ms");
        let query = format!(
            "SELECT sum(m) FROM (SELECT mean(power_w) AS m FROM {MEASUREMENT} WHERE {range} GROUP BY time({bucket_ms}ms, {offset_ms}ms), device, channel) WHERE {range} GROUP BY time({bucket_ms}ms, {offset_ms}ms)"
        );
        self.query(database, &query).await
    }

    /// Raw values of one series between two instants.
    pub async fn raw_series(&self, database: &str, device: &str, channel: &str, field: &str, from_ms: TimestampMs, to_ms: TimestampMs) -> anyhow::Result<QueryCheck> {
        let query = format!(
            "SELECT \"{field}\" FROM {MEASUREMENT} WHERE device = '{device}' AND channel = '{channel}' AND time >= {from_ms}ms AND time < {to_ms}ms"
        );
        self.query(database, &query).await
    }

    /// Runs a query and decodes every returned row, so the timing includes
    /// what a client must do to use the result.
    async fn query(&self, database: &str, query: &str) -> anyhow::Result<QueryCheck> {
        let response = self
            .http
            .get(format!("{}/query", self.base))
            .query(&[("db", database), ("q", query), ("epoch", "ms")])
            .send()
            .await
            .context("send a query to InfluxDB")?;
        let status = response.status();
        let body: Value = response.json().await.context("decode the InfluxDB query response")?;
        if !status.is_success() {
            bail!("InfluxDB query failed with HTTP {status}: {body}");
        }
        let result = &body["results"][0];
        if let Some(error) = result.get("error") {
            bail!("InfluxDB query `{query}` failed: {error}");
        }
        let mut check = QueryCheck::default();
        for series in result["series"].as_array().into_iter().flatten() {
            for row in series["values"].as_array().into_iter().flatten() {
                if let Some(value) = row.get(1).and_then(Value::as_f64) {
                    check.add(value);
                }
            }
        }
        Ok(check)
    }
}

/// Bucket width that splits `[from_ms, to_ms)` into at most `points` buckets.
pub fn bucket_ms(from_ms: TimestampMs, to_ms: TimestampMs, points: u32) -> i64 {
    let span = (to_ms - from_ms).max(1);
    (span + i64::from(points.max(1)) - 1) / i64::from(points.max(1))
}

/// Appends one line for the leading points that share a series' device,
/// channel and timestamp, and returns the points after them.
fn append_line<'a>(body: &mut String, set: &DataSet, points: &'a [Point]) -> &'a [Point] {
    use std::fmt::Write;

    let first = points[0];
    let spec = &set.series[first.series as usize];
    let _ = write!(body, "{MEASUREMENT},channel={},device={} ", spec.channel, spec.device);
    let mut taken = 0;
    for point in points {
        let other = &set.series[point.series as usize];
        if point.ts_ms != first.ts_ms || other.device != spec.device || other.channel != spec.channel {
            break;
        }
        if taken > 0 {
            body.push(',');
        }
        let _ = write!(body, "{}={}", other.metric.key(), point.value);
        taken += 1;
    }
    let _ = writeln!(body, " {}", first.ts_ms);
    &points[taken..]
}

/// TSM generations of each shard directory under a database directory.
fn shard_generations(database_dir: &Path) -> anyhow::Result<Vec<Vec<u64>>> {
    let mut shards: std::collections::BTreeMap<PathBuf, Vec<u64>> = Default::default();
    for (path, _) in files_with_extension(database_dir, "tsm")? {
        let Some(parent) = path.parent() else { continue };
        let generation = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.split('-').next())
            .and_then(|generation| generation.parse::<u64>().ok())
            .unwrap_or(0);
        let generations = shards.entry(parent.to_owned()).or_default();
        if !generations.contains(&generation) {
            generations.push(generation);
        }
    }
    // A shard being compacted also has .tsm.tmp files; count it as not done.
    for (path, _) in files_with_extension(database_dir, "tmp")? {
        if let Some(parent) = path.parent() {
            shards.entry(parent.to_owned()).or_default().push(u64::MAX);
        }
    }
    Ok(shards.into_values().collect())
}

fn wal_segment_bytes(database_wal_dir: &Path) -> anyhow::Result<u64> {
    Ok(files_with_extension(database_wal_dir, "wal")?.iter().map(|(_, length)| length).sum())
}

/// Files under `dir` (recursively) whose name ends with `.extension`, with their lengths.
fn files_with_extension(dir: &Path, extension: &str) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let files = super::files_under(dir)?;
    Ok(files
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|found| found == extension))
        .map(|(path, metadata)| (path, metadata.len()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_groups_fields_of_one_instant() {
        let set = DataSet::farm(1, 2, 0.001, 10_000, 1_700_000_000_000).unwrap();
        let points: Vec<Point> = set.chunks().next().unwrap();
        let mut body = String::new();
        let rest = append_line(&mut body, &set, &points);
        assert_eq!(points.len() - rest.len(), 5);
        assert!(body.starts_with("gpu,channel=gpu0,device=farm-rig-001 power_w="), "{body}");
        assert!(body.contains(",power_limit_w="), "{body}");
        assert!(body.trim_end().ends_with(&points[0].ts_ms.to_string()), "{body}");
    }

    #[test]
    fn bucket_covers_span() {
        assert_eq!(bucket_ms(0, 1_000, 1_000), 1);
        assert_eq!(bucket_ms(0, 1_001, 1_000), 2);
    }
}
