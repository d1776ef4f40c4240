//! PostgreSQL peer: one plain table per data set, `(series_id, ts, value)`
//! with its primary key, loaded with binary COPY. The benchmark script
//! creates a fresh database for the run and drops it afterwards.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use super::data::DataSet;
use super::{Progress, QueryCheck};
use se_core::TimestampMs;

pub struct Postgres {
    client: Client,
}

/// Returns the table name of a data set: its name with `-` replaced, which is a valid identifier.
pub fn table_name(set: &DataSet) -> String {
    set.name.replace('-', "_")
}

fn system_time(ts_ms: TimestampMs) -> SystemTime {
    if ts_ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ts_ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ts_ms.unsigned_abs())
    }
}

impl Postgres {
    /// Connects to `url` (such as `host=127.0.0.1 user=postgres dbname=x`).
    pub async fn connect(url: &str) -> anyhow::Result<Postgres> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .with_context(|| format!("connect to PostgreSQL with `{url}`; check that the server runs and the database exists"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("PostgreSQL connection closed with an error: {error}");
            }
        });
        Ok(Postgres { client })
    }

    /// Creates the data set's table (replacing it), copies every point into it
    /// and runs `VACUUM ANALYZE`, which also writes the visibility map that
    /// index-only scans need.
    pub async fn load(&self, set: &DataSet) -> anyhow::Result<Duration> {
        let table = table_name(set);
        self.client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (series_id integer NOT NULL, ts timestamptz NOT NULL, value double precision NOT NULL, PRIMARY KEY (series_id, ts))"
            ))
            .await
            .with_context(|| format!("create table {table}"))?;

        let started = Instant::now();
        let mut progress = Progress::new(format!("postgresql {}", set.name), set.total_points);
        let sink = self
            .client
            .copy_in(&format!("COPY {table} (series_id, ts, value) FROM STDIN (FORMAT binary)"))
            .await
            .with_context(|| format!("start COPY into {table}"))?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::TIMESTAMPTZ, Type::FLOAT8]);
        pin_mut!(writer);
        for chunk in set.chunks() {
            for point in &chunk {
                let series = point.series as i32;
                let ts = system_time(point.ts_ms);
                writer
                    .as_mut()
                    .write(&[&series, &ts, &point.value])
                    .await
                    .with_context(|| format!("COPY a row into {table}"))?;
            }
            progress.add(chunk.len() as u64);
        }
        writer.finish().await.with_context(|| format!("finish COPY into {table}"))?;
        progress.finish();

        eprintln!("  [postgresql {}] VACUUM ANALYZE {table}", set.name);
        self.client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .with_context(|| format!("VACUUM ANALYZE {table}"))?;
        Ok(started.elapsed())
    }

    /// Drops the data set's table to free its disk space.
    pub async fn drop_table(&self, set: &DataSet) -> anyhow::Result<()> {
        let table = table_name(set);
        self.client.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await.with_context(|| format!("drop table {table}"))
    }

    /// Returns `pg_total_relation_size` of the data set's table: heap, primary key index, TOAST and maps.
    pub async fn total_relation_size(&self, set: &DataSet) -> anyhow::Result<u64> {
        let table = table_name(set);
        let row = self
            .client
            .query_one(&format!("SELECT pg_total_relation_size('{table}')"), &[])
            .await
            .with_context(|| format!("read the size of {table}"))?;
        let bytes: i64 = row.get(0);
        Ok(bytes.max(0) as u64)
    }

    /// Site chart: the sum over series of each series' mean per bucket.
    pub async fn site_chart(&self, set: &DataSet, series: &[i32], from_ms: TimestampMs, to_ms: TimestampMs, points: u32) -> anyhow::Result<QueryCheck> {
        let table = table_name(set);
        let bucket_ms = super::influx::bucket_ms(from_ms, to_ms, points);
        let query = format!(
            "SELECT bucket, sum(mean) FROM ( \
               SELECT series_id, date_bin(interval '{bucket_ms} milliseconds', ts, $2) AS bucket, avg(value) AS mean \
               FROM {table} WHERE series_id = ANY($1) AND ts >= $2 AND ts < $3 GROUP BY 1, 2) AS per_series \
             GROUP BY bucket ORDER BY bucket"
        );
        let from = system_time(from_ms);
        let to = system_time(to_ms);
        let rows = self.client.query(&query, &[&series, &from, &to]).await.context("run the site chart query on PostgreSQL")?;
        let mut check = QueryCheck::default();
        for row in rows {
            let sum: f64 = row.get(1);
            check.add(sum);
        }
        Ok(check)
    }

    /// Raw values of one series between two instants, in time order.
    pub async fn raw_series(&self, set: &DataSet, series: i32, from_ms: TimestampMs, to_ms: TimestampMs) -> anyhow::Result<QueryCheck> {
        let table = table_name(set);
        let query = format!("SELECT ts, value FROM {table} WHERE series_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts");
        let from = system_time(from_ms);
        let to = system_time(to_ms);
        let rows = self.client.query(&query, &[&series, &from, &to]).await.context("run the raw series query on PostgreSQL")?;
        let mut check = QueryCheck::default();
        for row in rows {
            let _ts: SystemTime = row.get(0);
            let value: f64 = row.get(1);
            check.add(value);
        }
        Ok(check)
    }
}
