//! The embedded storage engine: one SQLite file, `<data_dir>/smart-energy.db`.
//!
//! # Schema
//!
//! Timestamps are milliseconds since the Unix epoch (UTC) in `*_ms` columns.
//! Values are in the canonical unit of their metric, and metrics are stored by
//! their key, such as `power_w`.
//!
//! - `devices(id, first_seen_ms, last_seen_ms, online, last_seq, lost,
//!   duplicates, restarts)`: one row per device. `first_seen_ms` and
//!   `last_seen_ms` are the oldest and newest reading timestamps, and an
//!   online report also moves `last_seen_ms` forward. `online` is NULL until
//!   the device or its MQTT Last Will reports a state. `last_seq` (stored as
//!   the bit pattern of the `u64`), `lost`, `duplicates` and `restarts` are the
//!   message counters that ingestion derives from sequence numbers.
//! - `series(id, device_id, channel, metric, reading_count)`: one row per
//!   (device, channel, metric), unique on those three. The integer `id` keeps
//!   `readings` small. `reading_count` counts the readings of the series in
//!   `readings` and in blocks, so statistics do not scan those tables.
//!   `stats` adds the rows of `staged_readings`.
//! - `readings(series_id, ts_ms, value)`: the head, the values that
//!   compaction has not yet moved into blocks. The primary key
//!   `(series_id, ts_ms)` allows at most one value per series and instant, so a
//!   replayed reading is ignored and counted as a duplicate. The table is
//!   `WITHOUT ROWID`, which makes a time range of one series one contiguous
//!   B-tree range.
//! - `staged_readings(series_id, ts_ms, value)`: the staging table of the
//!   head (schema version 8), with the same key. Readings of series with
//!   few readings in a batch land here, and the writer merges the table
//!   into `readings` in bulk. A reading is in at most one of the two tables,
//!   and readers read both. See the `staging` module and docs/storage.md.
//! - `latest(series_id, ts_ms, value)`: the newest value of each series in
//!   `readings` and blocks. A write replaces it only with a reading at least
//!   as new, so late readings do not hide the current value. Readers compare
//!   it with the newest row of the series in `staged_readings`.
//! - `ingest_errors(id, at_ms, device_id, topic, field, value, reason,
//!   detail)`: the newest rejected input values, for the operator. Only the
//!   newest 10,000 rows are kept. Each write deletes older rows by primary key
//!   range in the same transaction.
//! - `ingest_error_counts(device_id, reason, count, last_at_ms)`: rejection
//!   counters that never shrink, one row per device and reason. The empty
//!   string stands for "device unknown", as for an unknown topic.
//! - `users(id, username, password_hash, role, must_change_password,
//!   created_ms)`: accounts of the web interface. Usernames are unique
//!   without regard to ASCII case. Passwords are stored only as argon2 PHC
//!   strings.
//! - `sessions(token_hash, user_id, expires_ms)`: login sessions, keyed by
//!   the SHA-256 hash of the session token so a copy of the database does not
//!   contain usable tokens. Expired rows are deleted when a session is created.
//!
//! - `sites(id, name, time_zone, currency, tariff_json, co2_g_per_kwh)`:
//!   metered sites (schema version 2). `time_zone` is an IANA name, such as
//!   `Europe/Paris`, and sets the local day of energy totals. `tariff_json`
//!   is the tariff as the operator wrote it, validated by the web layer, or
//!   NULL for no tariff. The migration creates the site `default` (UTC, EUR,
//!   no tariff), which cannot be deleted.
//! - `device_sites(device_id, site_id)`: the site of a device. A device
//!   without a row belongs to the site `default`, so a new device is counted
//!   somewhere before an operator assigns it. Assigning a device to `default`
//!   deletes its row. `device_id` has no foreign key, so a device can be
//!   assigned before it first reports.
//! - `site_owners(site_id, user_id)`: building owners who may see a site.
//! - `device_commands(id, device_id, username, action, request_json,
//!   created_ms, status, ack_json, acked_ms)`: the audit trail of device
//!   commands (schema version 3). A row is written before the command is
//!   published, with status `sent`; the device's acknowledgement sets
//!   `succeeded` or `failed` and keeps the acknowledgement as received.
//! - `discovered_devices(device_id, format, name, model, payload,
//!   first_seen_ms, last_seen_ms, status)`: devices that announced themselves
//!   (schema version 4), with their latest announcement. `status` is
//!   `pending` on first sight and changes only by an operator's review
//!   (`approved` or `ignored`). Device lists leave out devices whose row is
//!   not `approved`, while their readings are stored as usual.
//! - `sites.monthly_budget_kwh`, `sites.monthly_budget_amount` (in the
//!   site's currency) and `sites.demand_limit_kw` (schema version 6): the
//!   limits that forecast warnings check, NULL when unset. They are read and
//!   written apart from the other site fields ([`crate::SiteLimits`]), so
//!   [`Store::upsert_site`] keeps them.
//! - `recommendations(id, site_id, device_id, channel, action_type,
//!   action_json, kwh_per_month, money_per_month, currency, status,
//!   created_ms, updated_ms, decided_ms, decided_by, baseline_json)`: savings
//!   recommendations of each site (schema version 7). `status` is `open`,
//!   `applied`, `dismissed`, or `withdrawn` when a later run no longer
//!   produced it, and a partial unique index allows one `open`
//!   row per site, device, channel and action type. `money_per_month` is
//!   decimal text in `currency`, NULL when the site had no tariff.
//!   `decided_ms` and `decided_by` are the time and the user of applying or
//!   dismissing it (the time alone for a withdrawal), and `baseline_json` is the usage measured before it was
//!   applied ([`crate::UsageSpan`]). Deleting a site deletes its rows.
//!
//! `PRAGMA user_version` contains the schema version. Opening applies the
//! missing migrations and rejects a file written by a newer version.
//!
//! # Durability
//!
//! The file uses write-ahead logging (WAL) with `synchronous=NORMAL`. A write
//! method returns after its transaction is committed to the WAL file, so its
//! data survives the end of the process, including SIGTERM and SIGKILL,
//! because the operating system still holds the written pages. On power loss
//! or an operating system crash, the last transactions before the failure may
//! be lost, but the database stays consistent. `synchronous=FULL` would close
//! that gap at the cost of one fsync per commit, which limits small batches
//! to the fsync rate of the disk.
//!
//! # Concurrency
//!
//! One writer connection behind a mutex runs every change, one transaction
//! per call. Reads use a pool of read-only connections. In WAL mode they read
//! a committed snapshot and neither block nor wait for the writer. All
//! SQLite calls run on tokio's blocking thread pool.

mod compact;
mod convert;
mod limits;
mod pool;
mod read;
mod recommendations;
mod schema;
mod series_read;
mod staging;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use se_core::{now_ms, DeviceId, Reading, Rejection, TimestampMs};
use tracing::{info, warn};

use self::pool::ReaderPool;
use self::write::Writer;
use crate::{CompactOutcome, EnergyTotal, PercentileReport, RetentionOutcome, Retention, SeriesKey, StorageStats, SumPoint, SumQuery, TopEntry, TopQuery, CommandRecord, CommandStatus, DiscoveredDevice, DiscoveryStatus, IngestBatch, 
    DeviceCounters, DeviceSummary, IngestErrorQuery, IngestErrorReport, NewUser, RawQuery,
    SeriesPoint, SeriesQuery, Site, SiteLimits, Store, StoreError, StoreStats, User, WriteOutcome,
    KeptChannel, NewRecommendation, RecommendationDecision, RecommendationStatus, RecommendationUpsert, StoredRecommendation,
};

/// Number of read-only connections. Reads are short, so a few suffice for
/// the web interface and analytics together.
const READ_CONNECTIONS: usize = 4;

/// How long a connection waits for a lock held by another connection, as
/// during a checkpoint, before it fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements cached per connection, more than any connection uses.
const STATEMENT_CACHE: usize = 32;

/// The SQLite storage engine. Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// Settings of the embedded engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    pub retention: Retention,
}

struct Inner {
    path: PathBuf,
    options: StoreOptions,
    // Fields drop in declaration order. The writer must close last: only a
    // read-write connection that closes last checkpoints the WAL into the
    // file and deletes it, and read-only readers cannot.
    readers: ReaderPool,
    writer: Mutex<Writer>,
}

impl SqliteStore {
    /// Compacts `series` in groups of [`compact::SERIES_PER_TRANSACTION`],
    /// one transaction per group, each taking the writer lock anew so
    /// ingestion interleaves with a long compaction.
    async fn compact_groups(&self, series: Vec<i64>) -> Result<CompactOutcome, StoreError> {
        let mut outcome = CompactOutcome::default();
        for group in series.chunks(compact::SERIES_PER_TRANSACTION) {
            let group = group.to_vec();
            let part = self.write("compact", move |writer| writer.compact_series(&group)).await?;
            outcome.series += part.series;
            outcome.readings += part.readings;
            outcome.duplicates += part.duplicates;
            outcome.blocks_written += part.blocks_written;
            outcome.pages_written += part.pages_written;
        }
        if outcome.readings > 0 {
            self.write("compact", |writer| writer.release_free_pages(compact::FREE_PAGE_RESERVE_BYTES)).await?;
        }
        Ok(outcome)
    }

    /// Name of the database file inside the data directory.
    pub const FILE_NAME: &'static str = "smart-energy.db";

    /// Schema version that this build creates and reads.
    pub const SCHEMA_VERSION: i64 = schema::SUPPORTED_VERSION;

    /// Rows kept in the list of recent rejected values.
    pub const MAX_INGEST_ERRORS: i64 = write::MAX_INGEST_ERRORS;

    /// Opens the store in `data_dir`, creating the directory and the
    /// database as needed and applying pending schema migrations.
    ///
    /// Blocks while it opens the file, so call it before serving requests or
    /// from `spawn_blocking`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(data_dir, StoreOptions::default())
    }

    /// Opens the store like [`SqliteStore::open`], with explicit settings.
    pub fn open_with(data_dir: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join(Self::FILE_NAME);
        let path_text = path.display().to_string();
        let open_error = |source| StoreError::Open {
            path: path_text.clone(),
            source,
        };

        if data_dir.exists() && !data_dir.is_dir() {
            return Err(StoreError::NotADirectory { path: data_dir.display().to_string() });
        }
        std::fs::create_dir_all(data_dir).map_err(|error| {
            open_error(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!(
                    "cannot create directory {}: {error}",
                    data_dir.display()
                )),
            ))
        })?;

        let mut conn = Connection::open(&path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let found = schema::check_not_newer(&conn, &path_text)?;
        configure_writer(&conn, &path_text)?;
        schema::migrate(&mut conn, &path_text, found)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);

        let readers = (0..READ_CONNECTIONS)
            .map(|_| open_reader(&path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(open_error)?;

        info!(path = %path_text, schema_version = Self::SCHEMA_VERSION, "opened SQLite store");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                options,
                writer: Mutex::new(Writer::new(conn)),
                readers: ReaderPool::new(readers),
            }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` with the writer connection on the blocking thread pool.
    async fn write<T, F>(&self, operation: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&mut inner.lock_writer()))
            .await
            .map_err(|error| StoreError::Worker(format!("{operation} did not finish: {error}")))?
    }

    /// Runs `work` with a read-only connection on the blocking thread pool,
    /// waiting asynchronously while all read connections are busy.
    async fn read<T, F>(&self, operation: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self.inner.readers.permit().await?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let result = inner
                .readers
                .take()
                .and_then(|mut lease| work(lease.conn()?));
            drop(permit);
            result
        })
        .await
        .map_err(|error| StoreError::Worker(format!("{operation} did not finish: {error}")))?
    }
}

impl Inner {
    /// Locks the writer. After a panic in an earlier write, SQLite has rolled
    /// that transaction back, so only the series id cache can be stale.
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        match self.writer.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                self.writer.clear_poison();
                let mut guard = poisoned.into_inner();
                guard.forget_cached_ids();
                guard
            }
        }
    }
}

/// Adds up the bucket sums and series counts of several parts of one site sum.
fn merge_sum_parts(parts: Vec<Vec<SumPoint>>) -> Vec<SumPoint> {
    let mut sums: std::collections::BTreeMap<TimestampMs, SumPoint> = std::collections::BTreeMap::new();
    for point in parts.into_iter().flatten() {
        let entry = sums.entry(point.ts_ms).or_insert(SumPoint { ts_ms: point.ts_ms, sum: 0.0, series: 0 });
        entry.sum += point.sum;
        entry.series += point.series;
    }
    sums.into_values().collect()
}

/// Runs `work` in a read transaction, so every statement in it reads the same snapshot.
fn in_snapshot<T>(conn: &mut Connection, operation: &'static str, work: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let tx = conn.transaction().map_err(convert::db(operation))?;
    let value = work(&tx)?;
    tx.finish().map_err(convert::db(operation))?;
    Ok(value)
}

/// Page cache of the writer connection, in KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

fn configure_writer(conn: &Connection, path: &str) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    // Compaction empties the head table on every pass, and incremental
    // vacuum lets it hand those pages back to the file system instead of
    // keeping the file at its largest size. SQLite accepts the setting only
    // on a new file, before WAL mode writes the header.
    let pages: i64 = conn.pragma_query_value(None, "page_count", |row| row.get(0)).map_err(open_error)?;
    if pages == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(open_error)?;
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(open_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some network file systems do not support WAL, and SQLite then keeps a rollback journal.
        warn!(path, journal_mode = %mode, "SQLite did not enable WAL mode, so reads wait for writes; put the data directory on a local disk");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_error)?;
    // Ingest batches touch the head, `latest` and `series` rows of thousands
    // of series at once. With SQLite's default 2 MiB cache, most of those
    // pages were read back from the file on every batch.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(open_error)?;
    // A large compaction pass can grow the WAL to hundreds of megabytes;
    // this truncates it back after each checkpoint.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(open_error)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open_error)?;
    Ok(())
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn write_readings(&self, readings: &[Reading]) -> Result<WriteOutcome, StoreError> {
        if readings.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let readings = readings.to_vec();
        self.write("write_readings", move |writer| {
            writer.write_readings(&readings)
        })
        .await
    }

    async fn write_ingest_batch(&self, batch: &IngestBatch) -> Result<WriteOutcome, StoreError> {
        let batch = batch.clone();
        self.write("write_ingest_batch", move |writer| writer.write_ingest_batch(&batch)).await
    }

    async fn record_command(&self, command: &CommandRecord) -> Result<(), StoreError> {
        let command = command.clone();
        self.write("record_command", move |writer| writer.record_command(&command)).await
    }

    async fn set_command_status(&self, id: &str, status: CommandStatus, ack_json: &str, at_ms: TimestampMs) -> Result<(), StoreError> {
        let (id, ack_json) = (id.to_owned(), ack_json.to_owned());
        self.write("set_command_status", move |writer| writer.set_command_status(&id, status, &ack_json, at_ms)).await
    }

    async fn device_commands(&self, device: &DeviceId, limit: u32) -> Result<Vec<CommandRecord>, StoreError> {
        let device = device.clone();
        self.read("device_commands", move |conn| read::device_commands(conn, &device, limit)).await
    }

    async fn record_rejections(
        &self,
        rejections: &[Rejection],
        at_ms: TimestampMs,
    ) -> Result<(), StoreError> {
        if rejections.is_empty() {
            return Ok(());
        }
        let rejections = rejections.to_vec();
        self.write("record_rejections", move |writer| {
            writer.record_rejections(&rejections, at_ms)
        })
        .await
    }

    async fn update_device_counters(
        &self,
        device: &DeviceId,
        counters: &DeviceCounters,
    ) -> Result<(), StoreError> {
        let device = device.clone();
        let counters = *counters;
        self.write("update_device_counters", move |writer| {
            writer.update_device_counters(&device, &counters)
        })
        .await
    }

    async fn set_device_online(
        &self,
        device: &DeviceId,
        online: bool,
        at_ms: TimestampMs,
    ) -> Result<(), StoreError> {
        let device = device.clone();
        self.write("set_device_online", move |writer| {
            writer.set_device_online(&device, online, at_ms)
        })
        .await
    }

    async fn list_devices(&self) -> Result<Vec<DeviceSummary>, StoreError> {
        self.read("list_devices", |conn| read::device_summaries(conn, None))
            .await
    }

    async fn device(&self, device: &DeviceId) -> Result<Option<DeviceSummary>, StoreError> {
        let device = device.clone();
        let found = self
            .read("device", move |conn| {
                read::device_summaries(conn, Some(&device))
            })
            .await?;
        Ok(found.into_iter().next())
    }

    /// Covers `[from_ms, to_ms)`. Each bucket starts at
    /// `from_ms + k * ceil((to_ms - from_ms) / max_points)`, and empty buckets
    /// are left out.
    async fn query_series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, StoreError> {
        let query = query.clone();
        let retention = self.inner.options.retention;
        self.read("query_series", move |conn| in_snapshot(conn, "query_series", |conn| series_read::query_series(conn, &query, now_ms(), &retention)))
            .await
    }

    /// Covers `[from_ms, to_ms)`, ordered by timestamp, channel and metric
    /// key. A `limit` of 0 returns every matching reading.
    async fn raw_readings(&self, query: &RawQuery) -> Result<Vec<Reading>, StoreError> {
        let query = query.clone();
        self.read("raw_readings", move |conn| in_snapshot(conn, "raw_readings", |conn| series_read::raw_readings(conn, &query)))
            .await
    }

    /// A `limit` of 0 returns 100 rows, and no call returns more than 1000.
    async fn ingest_errors(
        &self,
        query: &IngestErrorQuery,
    ) -> Result<IngestErrorReport, StoreError> {
        let query = query.clone();
        self.read("ingest_errors", move |conn| {
            read::ingest_errors(conn, &query)
        })
        .await
    }

    async fn query_sum(&self, query: &SumQuery) -> Result<Vec<SumPoint>, StoreError> {
        // A site chart decodes thousands of rollup pages, so its series are
        // split between reader connections that run on separate cores. Each
        // part reads its own snapshot, so a write that commits in between
        // may show in some series of a bucket and not yet in others.
        let retention = self.inner.options.retention;
        let now = now_ms();
        let parts = std::thread::available_parallelism().map_or(1, |cores| cores.get()).clamp(1, READ_CONNECTIONS);
        let chunk = query.series.len().div_ceil(parts).max(1);

        if query.series.is_empty() {
            // Still validate the range and point count.
            let part = query.clone();
            return self.read("query_sum", move |conn| series_read::query_sum(conn, &part, now, &retention)).await;
        }

        let mut tasks = tokio::task::JoinSet::new();
        for series in query.series.chunks(chunk) {
            let part = SumQuery { series: series.to_vec(), ..query.clone() };
            let store = self.clone();
            tasks.spawn(async move {
                store
                    .read("query_sum", move |conn| in_snapshot(conn, "query_sum", |conn| series_read::query_sum(conn, &part, now, &retention)))
                    .await
            });
        }

        let mut parts = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            parts.push(joined.map_err(|error| StoreError::Worker(format!("query_sum did not finish: {error}")))??);
        }
        Ok(merge_sum_parts(parts))
    }

    async fn top_series(&self, query: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
        let query = query.clone();
        let retention = self.inner.options.retention;
        self.read("top_series", move |conn| in_snapshot(conn, "top_series", |conn| series_read::top_series(conn, &query, now_ms(), &retention))).await
    }

    async fn series_energy(&self, series: &SeriesKey, from_ms: TimestampMs, to_ms: TimestampMs) -> Result<EnergyTotal, StoreError> {
        let series = series.clone();
        let retention = self.inner.options.retention;
        self.read("series_energy", move |conn| in_snapshot(conn, "series_energy", |conn| series_read::series_energy(conn, &series, from_ms, to_ms, now_ms(), &retention))).await
    }

    async fn series_percentiles(&self, series: &SeriesKey, from_ms: TimestampMs, to_ms: TimestampMs, quantiles: &[f64]) -> Result<PercentileReport, StoreError> {
        let (series, quantiles) = (series.clone(), quantiles.to_vec());
        let retention = self.inner.options.retention;
        self.read("series_percentiles", move |conn| {
            in_snapshot(conn, "series_percentiles", |conn| series_read::percentiles(conn, &series, from_ms, to_ms, &quantiles, now_ms(), &retention))
        })
        .await
    }

    async fn compact(&self, now_ms: TimestampMs) -> Result<CompactOutcome, StoreError> {
        let series = self.write("compact", |writer| writer.head_series()).await?;
        let _ = now_ms;
        let outcome = self.compact_groups(series).await?;
        // A full compaction is run by hand or before a measurement, so it
        // returns every free page instead of keeping the reserve.
        self.write("compact", |writer| writer.release_free_pages(0)).await?;
        Ok(outcome)
    }

    async fn compact_due(&self, now_ms: TimestampMs) -> Result<CompactOutcome, StoreError> {
        let series = self
            .write("compact", move |writer| writer.due_series(now_ms, compact::DUE_HEAD_READINGS, compact::DUE_HEAD_AGE_MS))
            .await?;
        self.compact_groups(series).await
    }

    async fn enforce_retention(&self, now_ms: TimestampMs) -> Result<RetentionOutcome, StoreError> {
        let retention = self.inner.options.retention;
        let outcome = self.write("enforce_retention", move |writer| writer.enforce_retention(now_ms, &retention)).await?;
        self.write("enforce_retention", |writer| writer.release_free_pages(compact::FREE_PAGE_RESERVE_BYTES)).await?;
        Ok(outcome)
    }

    async fn storage_stats(&self) -> Result<StorageStats, StoreError> {
        let path = self.inner.path.clone();
        self.read("storage_stats", move |conn| {
            let wal = PathBuf::from(format!("{}-wal", path.display()));
            let file_bytes = [path.as_path(), wal.as_path()].iter().filter_map(|file| std::fs::metadata(file).ok()).map(|meta| meta.len()).sum();
            in_snapshot(conn, "storage_stats", |conn| series_read::storage_stats(conn, file_bytes))
        })
        .await
    }

    fn retention(&self) -> Retention {
        self.inner.options.retention
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read("stats", |conn| read::stats(conn)).await
    }

    async fn discovered_devices(&self, status: Option<DiscoveryStatus>) -> Result<Vec<DiscoveredDevice>, StoreError> {
        self.read("discovered_devices", move |conn| read::discovered_devices(conn, status)).await
    }

    async fn set_discovery_status(&self, device: &DeviceId, status: DiscoveryStatus) -> Result<(), StoreError> {
        let device = device.clone();
        let what = format!("discovered device {device}");
        let found = self.write("set_discovery_status", move |writer| writer.set_discovery_status(&device, status)).await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound { what })
        }
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        self.read("count_users", |conn| read::count_users(conn))
            .await
    }

    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        let user = user.clone();
        self.write("create_user", move |writer| writer.create_user(&user))
            .await
    }

    /// Usernames compare without regard to ASCII case.
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_owned();
        self.read("user_by_name", move |conn| {
            read::user_by_name(conn, &username)
        })
        .await
    }

    /// Succeeds without change when no user has this id, and logs a warning.
    async fn reset_password(&self, user_id: i64, password_hash: &str) -> Result<(), StoreError> {
        let password_hash = password_hash.to_owned();
        let found = self.write("reset_password", move |writer| writer.reset_password(user_id, &password_hash)).await?;
        found.then_some(()).ok_or_else(|| StoreError::NotFound { what: format!("user {user_id}") })
    }

    async fn delete_user(&self, user_id: i64) -> Result<(), StoreError> {
        let found = self.write("delete_user", move |writer| writer.delete_user(user_id)).await?;
        found.then_some(()).ok_or_else(|| StoreError::NotFound { what: format!("user {user_id}") })
    }

    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<(), StoreError> {
        let password_hash = password_hash.to_owned();
        let found = self
            .write("set_password", move |writer| {
                writer.set_password(user_id, &password_hash)
            })
            .await?;
        if !found {
            // NOTE: the trait has no "not found" error, so a deleted user is only logged.
            warn!(user_id, "password not changed because no user has this id");
        }
        Ok(())
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        expires_ms: TimestampMs,
    ) -> Result<(), StoreError> {
        let token_hash = token_hash.to_owned();
        self.write("create_session", move |writer| {
            writer.create_session(&token_hash, user_id, expires_ms)
        })
        .await
    }

    async fn session_user(
        &self,
        token_hash: &str,
        now_ms: TimestampMs,
    ) -> Result<Option<User>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.read("session_user", move |conn| {
            read::session_user(conn, &token_hash, now_ms)
        })
        .await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let token_hash = token_hash.to_owned();
        self.write("delete_session", move |writer| {
            writer.delete_session(&token_hash)
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.read("list_users", |conn| read::list_users(conn)).await
    }

    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        self.read("list_sites", |conn| read::sites(conn, None)).await
    }

    async fn site(&self, site_id: &str) -> Result<Option<Site>, StoreError> {
        let site_id = site_id.to_owned();
        let found = self
            .read("site", move |conn| read::sites(conn, Some(&site_id)))
            .await?;
        Ok(found.into_iter().next())
    }

    async fn upsert_site(&self, site: &Site) -> Result<(), StoreError> {
        let site = site.clone();
        self.write("upsert_site", move |writer| writer.upsert_site(&site))
            .await
    }

    async fn delete_site(&self, site_id: &str) -> Result<bool, StoreError> {
        let site_id = site_id.to_owned();
        self.write("delete_site", move |writer| writer.delete_site(&site_id))
            .await
    }

    async fn assign_device(&self, device: &DeviceId, site_id: &str) -> Result<(), StoreError> {
        let device = device.clone();
        let site_id = site_id.to_owned();
        self.write("assign_device", move |writer| {
            writer.assign_device(&device, &site_id)
        })
        .await
    }

    async fn site_devices(&self, site_id: &str) -> Result<Vec<DeviceId>, StoreError> {
        let site_id = site_id.to_owned();
        self.read("site_devices", move |conn| {
            read::site_devices(conn, &site_id)
        })
        .await
    }

    async fn device_site(&self, device: &DeviceId) -> Result<String, StoreError> {
        let device = device.clone();
        self.read("device_site", move |conn| read::device_site(conn, &device))
            .await
    }

    async fn set_site_owner(&self, site_id: &str, user_id: i64, owner: bool) -> Result<(), StoreError> {
        let site_id = site_id.to_owned();
        self.write("set_site_owner", move |writer| {
            writer.set_site_owner(&site_id, user_id, owner)
        })
        .await
    }

    async fn sites_of_user(&self, user_id: i64) -> Result<Vec<Site>, StoreError> {
        self.read("sites_of_user", move |conn| read::sites_of_user(conn, user_id))
            .await
    }

    async fn site_limits(&self, site_id: &str) -> Result<Option<SiteLimits>, StoreError> {
        let site_id = site_id.to_owned();
        self.read("site_limits", move |conn| limits::site_limits(conn, &site_id)).await
    }

    async fn set_site_limits(&self, site_id: &str, site_limits: &SiteLimits) -> Result<(), StoreError> {
        let (site_id, site_limits) = (site_id.to_owned(), *site_limits);
        let what = format!("site {site_id}");
        let found = self
            .write("set_site_limits", move |writer| writer.set_site_limits(&site_id, &site_limits))
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound { what })
        }
    }

    async fn upsert_recommendation(&self, recommendation: &NewRecommendation) -> Result<RecommendationUpsert, StoreError> {
        let recommendation = recommendation.clone();
        self.write("upsert_recommendation", move |writer| writer.upsert_recommendation(&recommendation)).await
    }

    async fn site_recommendations(&self, site_id: &str, status: Option<RecommendationStatus>) -> Result<Vec<StoredRecommendation>, StoreError> {
        let site_id = site_id.to_owned();
        self.read("site_recommendations", move |conn| recommendations::site_recommendations(conn, &site_id, status)).await
    }

    async fn recommendation(&self, id: i64) -> Result<Option<StoredRecommendation>, StoreError> {
        self.read("recommendation", move |conn| recommendations::recommendation(conn, id)).await
    }

    async fn decide_recommendation(&self, id: i64, decision: &RecommendationDecision) -> Result<(), StoreError> {
        let decision = decision.clone();
        self.write("decide_recommendation", move |writer| writer.decide_recommendation(id, &decision)).await
    }

    async fn withdraw_recommendations(&self, site_id: &str, run_ms: TimestampMs, keep_open: &[KeptChannel]) -> Result<Vec<i64>, StoreError> {
        let (site_id, keep_open) = (site_id.to_owned(), keep_open.to_vec());
        self.write("withdraw_recommendations", move |writer| writer.withdraw_recommendations(&site_id, run_ms, &keep_open)).await
    }
}
