//! The staging table of the head, which keeps batches that span thousands
//! of series cheap to commit.
//!
//! `readings` is ordered by series, so a batch with two readings of each of
//! 4,000 series changes at least one page per series. The commit writes
//! every changed page to the WAL, about 4,500 pages (18 MiB) per batch of
//! 10,000 readings in the `write_farm` bench. Readings of a series with
//! few readings in the batch therefore go to `staged_readings`, a table with
//! the same key that stays small. The writer merges it into `readings` when
//! it reaches [`MERGE_STAGED_READINGS`] rows and before each compaction
//! transaction, so each page of `readings` is written once per merge
//! instead of once per batch. A series with many readings in the batch
//! fills whole pages, so its readings go straight to `readings`.
//!
//! A reading is in at most one of the two tables, so readers take the union
//! of both, and the merge moves rows without conflicts. `latest` and
//! `series.reading_count` cover only `readings` and blocks. The merge adds
//! the staged rows to them in the same transaction, and readers add the
//! staged rows themselves, so neither a reader nor a restart after a crash
//! finds them behind.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction};
use se_core::TimestampMs;
use tracing::warn;

use super::convert::db;
use crate::StoreError;

/// Readings of one series in one batch from which the batch writes them
/// straight into `readings`: about a tenth of a 4 KiB page of rows, so the
/// page they change is not written for a handful of rows.
pub(super) const DIRECT_HEAD_READINGS: usize = 16;

/// Staged rows at which a write merges the staging table into `readings`.
/// A batch changes up to every page of the staging table (about 1,200 pages
/// at this size), and a merge changes three to four pages per series in
/// `readings`, page splits included. With batches of 10,000 readings of
/// 4,000 series (the `write_farm` bench), this size wrote fewer pages per
/// batch than 100,000 or 400,000: about 1,350 against 1,600.
pub(super) const MERGE_STAGED_READINGS: u64 = 200_000;

const OP: &str = "write_readings (staging)";

/// The table a reading is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Head,
    Staged,
}

impl Table {
    pub(super) fn other(self) -> Table {
        match self {
            Table::Head => Table::Staged,
            Table::Staged => Table::Head,
        }
    }
}

/// Upper bounds of the timestamps of one series in each table, `None` when
/// the table has no row of the series. A reading newer than the bound of a
/// table cannot be in it, so in-order readings need no lookup. Compaction
/// deletes head rows without lowering the bound, which stays an upper bound.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Newest {
    pub head: Option<TimestampMs>,
    pub staged: Option<TimestampMs>,
}

/// The writer's cache of the staging table. It is dropped after a failed
/// transaction and when another connection has committed, and then read
/// again from the database.
#[derive(Default)]
pub(super) struct Staging {
    newest: HashMap<i64, Newest>,
    /// Rows in `staged_readings`, or `None` when not read yet.
    rows: Option<u64>,
    /// `PRAGMA data_version` at the start of the last transaction.
    data_version: Option<i64>,
}

impl Staging {
    pub(super) fn forget(&mut self) {
        self.newest.clear();
        self.rows = None;
        self.data_version = None;
    }

    /// Drops the cache if another connection, such as a second process on
    /// the same file, committed since this writer's last transaction. Call
    /// it at the start of each write transaction.
    pub(super) fn check_data_version(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let version: i64 = tx.pragma_query_value(None, "data_version", |row| row.get(0)).map_err(db(OP))?;
        if self.data_version != Some(version) {
            self.forget();
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// Records `rows` readings of `series_id` written to `target`, the
    /// newest at `newest_ts`.
    pub(super) fn note_stored(&mut self, series_id: i64, target: Table, newest_ts: TimestampMs, rows: u64) {
        let newest = self.newest.entry(series_id).or_default();
        let bound = match target {
            Table::Head => &mut newest.head,
            Table::Staged => &mut newest.staged,
        };
        *bound = Some(bound.map_or(newest_ts, |old| old.max(newest_ts)));
        if target == Table::Staged {
            if let Some(staged) = &mut self.rows {
                *staged += rows;
            }
        }
    }

    /// Returns the rows in the staging table.
    pub(super) fn rows(&mut self, tx: &Transaction<'_>) -> Result<u64, StoreError> {
        if let Some(rows) = self.rows {
            return Ok(rows);
        }
        let rows: i64 = tx.query_row("SELECT count(*) FROM staged_readings", [], |row| row.get(0)).map_err(db(OP))?;
        let rows = rows.max(0) as u64;
        self.rows = Some(rows);
        Ok(rows)
    }

    /// Returns the bounds of a series, reading them from the database on
    /// first use.
    pub(super) fn newest(&mut self, tx: &Transaction<'_>, series_id: i64) -> Result<Newest, StoreError> {
        if let Some(newest) = self.newest.get(&series_id) {
            return Ok(*newest);
        }
        let max_ts = |sql: &str| -> Result<Option<TimestampMs>, StoreError> {
            tx.prepare_cached(sql)
                .and_then(|mut select| select.query_row([series_id], |row| row.get(0)).optional())
                .map(Option::flatten)
                .map_err(db(OP))
        };
        let newest = Newest {
            head: max_ts("SELECT max(ts_ms) FROM readings WHERE series_id = ?1")?,
            staged: max_ts("SELECT max(ts_ms) FROM staged_readings WHERE series_id = ?1")?,
        };
        self.newest.insert(series_id, newest);
        Ok(newest)
    }
}

/// Returns whether `table` contains a reading of `series_id` at `ts_ms`.
pub(super) fn contains(tx: &Transaction<'_>, table: Table, series_id: i64, ts_ms: TimestampMs) -> Result<bool, StoreError> {
    let sql = match table {
        Table::Head => "SELECT 1 FROM readings WHERE series_id = ?1 AND ts_ms = ?2",
        Table::Staged => "SELECT 1 FROM staged_readings WHERE series_id = ?1 AND ts_ms = ?2",
    };
    tx.prepare_cached(sql).and_then(|mut select| select.exists([series_id, ts_ms])).map_err(db(OP))
}

/// Moves every staged row into `readings` and adds them to `latest` and
/// `series.reading_count`, inside the caller's transaction. Returns the rows
/// moved.
pub(super) fn merge(tx: &Transaction<'_>, staging: &mut Staging) -> Result<u64, StoreError> {
    const OP: &str = "merge_staged";
    if staging.rows(tx)? == 0 {
        return Ok(0);
    }
    let run = |sql: &str| tx.prepare_cached(sql).and_then(|mut statement| statement.execute([])).map_err(db(OP));
    run(ADD_STAGED_COUNTS)?;
    run(UPSERT_STAGED_LATEST)?;
    let moved = run(MOVE_STAGED)?;
    let staged = run("DELETE FROM staged_readings")?;
    if moved != staged {
        // NOTE: the writer keeps the two tables disjoint, so this means a
        // bug. The rows stay correct, but `reading_count` is then too high
        // by the difference.
        warn!(moved, staged, "staged readings were already in the head table; the reading count of their series is too high");
    }

    for newest in staging.newest.values_mut() {
        if let Some(staged) = newest.staged.take() {
            newest.head = Some(newest.head.map_or(staged, |head| head.max(staged)));
        }
    }
    staging.rows = Some(0);
    Ok(moved as u64)
}

const ADD_STAGED_COUNTS: &str = "
    UPDATE series SET reading_count = reading_count + staged.rows
    FROM (SELECT series_id, count(*) AS rows FROM staged_readings GROUP BY series_id) AS staged
    WHERE series.id = staged.series_id";

/// With a single `max()`, SQLite takes the bare column `value` from the row
/// with the maximum (SQLite documentation, "Bare columns in an aggregate
/// query"). `WHERE true` keeps `ON CONFLICT` from being read
/// as a join constraint.
const UPSERT_STAGED_LATEST: &str = "
    INSERT INTO latest (series_id, ts_ms, value)
    SELECT series_id, max(ts_ms), value FROM staged_readings WHERE true GROUP BY series_id
    ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value
    WHERE excluded.ts_ms >= latest.ts_ms";

const MOVE_STAGED: &str = "
    INSERT OR IGNORE INTO readings (series_id, ts_ms, value)
    SELECT series_id, ts_ms, value FROM staged_readings ORDER BY series_id, ts_ms";
