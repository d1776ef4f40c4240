//! The single writer connection and every statement that changes data.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use se_core::{now_ms, Announcement, ChannelName, CommandAck, DeviceId, Metric, Reading, Rejection, TimestampMs};
use tracing::warn;

use super::convert::{count_to_sql, db, is_unique_violation, seq_to_sql};
use super::read::user_by_id;
use super::staging::{self, Staging, Table, DIRECT_HEAD_READINGS, MERGE_STAGED_READINGS};
use crate::{CompactOutcome, Retention, RetentionOutcome, CommandRecord, CommandStatus, DeviceCounters, DiscoveryStatus, IngestBatch, NewUser, Site, StoreError, User, WriteOutcome, DEFAULT_SITE_ID};

/// Rows kept in `ingest_errors`; older rows are deleted as new ones arrive.
pub(crate) const MAX_INGEST_ERRORS: i64 = 10_000;

/// Series ids by device, channel and metric. Nested maps let a lookup borrow
/// the reading's names instead of cloning them into a key.
#[derive(Default)]
struct SeriesCache {
    ids: HashMap<DeviceId, HashMap<ChannelName, HashMap<Metric, i64>>>,
    /// Head rows written per series since its last compaction, and when the
    /// first of them arrived (wall clock, ms). Filled from the table on the
    /// first compaction after open. A rolled-back batch leaves its rows
    /// counted, which only makes that series due a little early.
    head: HashMap<i64, HeadState>,
    head_loaded: bool,
    staging: Staging,
}

#[derive(Debug, Clone, Copy)]
struct HeadState {
    rows: u64,
    since_ms: TimestampMs,
}

impl SeriesCache {
    fn get(&self, reading: &Reading) -> Option<i64> {
        self.ids
            .get(&reading.device)?
            .get(&reading.channel)?
            .get(&reading.metric)
            .copied()
    }

    fn insert(&mut self, reading: &Reading, id: i64) {
        self.ids
            .entry(reading.device.clone())
            .or_default()
            .entry(reading.channel.clone())
            .or_default()
            .insert(reading.metric, id);
    }

    /// Drops the series ids and the staging cache, which may describe rows
    /// of a rolled-back transaction.
    fn clear(&mut self) {
        self.ids.clear();
        self.staging.forget();
    }
}

/// One series of a batch: the table its readings go to and what they changed.
struct BatchSeries {
    id: i64,
    readings: usize,
    target: Table,
    /// Upper bound of the series' timestamps in the table other than `target`.
    other_newest: Option<TimestampMs>,
    stored: u64,
    /// Timestamp and value of the newest stored reading.
    newest: Option<(TimestampMs, f64)>,
}

pub(super) struct Writer {
    conn: Connection,
    series: SeriesCache,
}

impl Writer {
    pub(super) fn new(conn: Connection) -> Self {
        Self {
            conn,
            series: SeriesCache::default(),
        }
    }

    /// Drops cached series ids and the staging cache, which may describe
    /// rows of a rolled-back transaction after an error or a panic.
    pub(super) fn forget_cached_ids(&mut self) {
        self.series.clear();
    }

    /// Returns the writer connection, for write methods defined in sibling modules.
    pub(super) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn begin(&mut self, operation: &'static str) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(operation))
    }

    pub(super) fn write_readings(
        &mut self,
        readings: &[Reading],
    ) -> Result<WriteOutcome, StoreError> {
        let finite = finite_readings(readings);
        if finite.is_empty() {
            return Ok(WriteOutcome::default());
        }

        let result = self.in_transaction("write_readings", |tx, series| insert_readings(tx, series, &finite));
        if result.is_err() {
            self.series.clear();
        }
        result
    }

    /// Writes everything one ingestion batch produced in one transaction, so
    /// the batch costs one commit and its counters never lag its readings.
    pub(super) fn write_ingest_batch(&mut self, batch: &IngestBatch) -> Result<WriteOutcome, StoreError> {
        const OP: &str = "write_ingest_batch";
        let finite = finite_readings(&batch.readings);
        let result = self.in_transaction(OP, |tx, series| {
            let outcome = if finite.is_empty() { WriteOutcome::default() } else { insert_readings(tx, series, &finite)? };
            insert_rejections(tx, &batch.rejections, batch.rejected_at_ms)?;
            for (device, counters) in &batch.counters {
                upsert_counters(tx, device, counters)?;
            }
            for (device, online, at_ms) in &batch.online {
                upsert_online(tx, device, *online, *at_ms)?;
            }
            for (device, ack, at_ms) in &batch.command_acks {
                apply_command_ack(tx, device, ack, *at_ms)?;
            }
            for (device, announcement, at_ms) in &batch.announcements {
                upsert_announcement(tx, device, announcement, *at_ms)?;
            }
            Ok(outcome)
        });
        if result.is_err() {
            self.series.clear();
        }
        result
    }

    /// Runs `work` in an immediate transaction and commits it when `work`
    /// succeeds. On failure the staging cache is dropped, because `work`
    /// may have updated it for rows that were rolled back.
    fn in_transaction<T>(
        &mut self,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>, &mut SeriesCache) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Writer { conn, series } = self;
        let result = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db(operation)).and_then(|tx| {
            series.staging.check_data_version(&tx)?;
            let value = work(&tx, series)?;
            tx.commit().map_err(db(operation))?;
            Ok(value)
        });
        if result.is_err() {
            series.staging.forget();
        }
        result
    }

    /// Merges the staging table, then lists the series that have readings
    /// in the head table.
    pub(super) fn head_series(&mut self) -> Result<Vec<i64>, StoreError> {
        self.in_transaction("compact", |tx, series| {
            staging::merge(tx, &mut series.staging)?;
            super::compact::head_series(tx)
        })
    }

    /// Lists the series whose head holds at least `min_rows` readings, or
    /// has held readings for `max_age_ms` of wall-clock time by `now_ms`.
    pub(super) fn due_series(&mut self, now_ms: TimestampMs, min_rows: u64, max_age_ms: i64) -> Result<Vec<i64>, StoreError> {
        if !self.series.head_loaded {
            // After a restart the head may hold rows of an earlier run; they
            // count as arriving now.
            let counts = self.in_transaction("compact", |tx, _| super::compact::head_counts(tx))?;
            for (series_id, rows) in counts {
                self.series.head.insert(series_id, HeadState { rows, since_ms: now_ms });
            }
            self.series.head_loaded = true;
        }
        let mut due: Vec<i64> = self
            .series
            .head
            .iter()
            .filter(|(_, head)| head.rows >= min_rows || now_ms.saturating_sub(head.since_ms) >= max_age_ms)
            .map(|(series_id, _)| *series_id)
            .collect();
        due.sort_unstable();
        Ok(due)
    }

    /// Compacts the given series in one transaction, after merging the
    /// staging table so that compaction finds every head reading in `readings`.
    pub(super) fn compact_series(&mut self, series: &[i64]) -> Result<CompactOutcome, StoreError> {
        self.in_transaction("compact", |tx, cache| {
            staging::merge(tx, &mut cache.staging)?;
            let mut outcome = CompactOutcome::default();
            for id in series {
                super::compact::compact_series(tx, *id, &mut outcome)?;
            }
            Ok(outcome)
        })
        .inspect(|_| {
            for id in series {
                self.series.head.remove(id);
            }
        })
    }

    /// Returns free pages beyond `reserve_bytes` to the file system. A no-op
    /// on files created before incremental vacuum was enabled.
    pub(super) fn release_free_pages(&mut self, reserve_bytes: i64) -> Result<(), StoreError> {
        const OP: &str = "release_free_pages";
        let free: i64 = self.conn.pragma_query_value(None, "freelist_count", |row| row.get(0)).map_err(db(OP))?;
        let page_size: i64 = self.conn.pragma_query_value(None, "page_size", |row| row.get(0)).map_err(db(OP))?;
        let excess = free - reserve_bytes / page_size.max(1);
        if excess > 0 {
            // SQLite frees one page per step of this statement, so every row must be read.
            let mut vacuum = self.conn.prepare(&format!("PRAGMA incremental_vacuum({excess})")).map_err(db(OP))?;
            let mut rows = vacuum.query([]).map_err(db(OP))?;
            while rows.next().map_err(db(OP))?.is_some() {}
        }
        Ok(())
    }

    pub(super) fn enforce_retention(&mut self, now_ms: TimestampMs, retention: &Retention) -> Result<RetentionOutcome, StoreError> {
        self.in_transaction("enforce_retention", |tx, _| super::compact::enforce_retention(tx, now_ms, retention))
    }

    pub(super) fn record_rejections(
        &mut self,
        rejections: &[Rejection],
        at_ms: TimestampMs,
    ) -> Result<(), StoreError> {
        if rejections.is_empty() {
            return Ok(());
        }
        self.in_transaction("record_rejections", |tx, _| insert_rejections(tx, rejections, at_ms))
    }

    pub(super) fn update_device_counters(
        &mut self,
        device: &DeviceId,
        counters: &DeviceCounters,
    ) -> Result<(), StoreError> {
        self.in_transaction("update_device_counters", |tx, _| upsert_counters(tx, device, counters))
    }

    pub(super) fn set_device_online(
        &mut self,
        device: &DeviceId,
        online: bool,
        at_ms: TimestampMs,
    ) -> Result<(), StoreError> {
        self.in_transaction("set_device_online", |tx, _| upsert_online(tx, device, online, at_ms))
    }

    pub(super) fn record_command(&mut self, command: &CommandRecord) -> Result<(), StoreError> {
        const OP: &str = "record_command";
        self.in_transaction(OP, |tx, _| {
            let inserted = tx
                .prepare_cached(INSERT_COMMAND)
                .and_then(|mut insert| {
                    insert.execute(params![
                        command.id,
                        command.device.as_str(),
                        command.username,
                        command.action,
                        command.request_json,
                        command.created_ms,
                        command.status.code(),
                        command.ack_json,
                        command.acked_ms
                    ])
                });
            match inserted {
                Ok(_) => Ok(()),
                Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict { what: format!("command {:?}", command.id) }),
                Err(error) => Err(db(OP)(error)),
            }
        })
    }

    pub(super) fn set_command_status(&mut self, id: &str, status: CommandStatus, ack_json: &str, at_ms: TimestampMs) -> Result<(), StoreError> {
        const OP: &str = "set_command_status";
        self.in_transaction(OP, |tx, _| {
            tx.prepare_cached(UPDATE_COMMAND_STATUS)
                .and_then(|mut update| update.execute(params![id, status.code(), ack_json, at_ms]))
                .map_err(db(OP))?;
            Ok(())
        })
    }

    pub(super) fn create_user(&mut self, user: &NewUser) -> Result<User, StoreError> {
        const OP: &str = "create_user";
        let inserted = self
            .conn
            .prepare_cached(INSERT_USER)
            .and_then(|mut insert| {
                insert.execute(params![
                    user.username,
                    user.password_hash,
                    user.role.code(),
                    user.must_change_password,
                    now_ms()
                ])
            });
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict {
                    what: format!("user {:?}", user.username),
                });
            }
            Err(error) => return Err(db(OP)(error)),
        }
        let id = self.conn.last_insert_rowid();
        user_by_id(&self.conn, OP, id)?.ok_or_else(|| StoreError::Corrupt {
            operation: OP,
            detail: format!("user {id} was not found right after it was inserted"),
        })
    }

    /// Returns whether a user with this id existed.
    pub(super) fn set_password(
        &mut self,
        user_id: i64,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_password";
        let updated = self
            .conn
            .prepare_cached(SET_PASSWORD)
            .and_then(|mut update| update.execute(params![user_id, password_hash]))
            .map_err(db(OP))?;
        Ok(updated > 0)
    }

    /// Sets an admin-chosen password hash that must be changed at the next
    /// login, and ends the user's sessions; false when no user has the id.
    pub(super) fn reset_password(&mut self, user_id: i64, password_hash: &str) -> Result<bool, StoreError> {
        self.in_transaction("reset_password", |tx, _| {
            let updated = tx
                .prepare_cached("UPDATE users SET password_hash = ?2, must_change_password = 1 WHERE id = ?1")
                .and_then(|mut update| update.execute(params![user_id, password_hash]))
                .map_err(db("reset_password"))?;
            tx.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")
                .and_then(|mut delete| delete.execute([user_id]))
                .map_err(db("reset_password"))?;
            Ok(updated > 0)
        })
    }

    /// Deletes a user; sessions and site ownerships go with it by foreign
    /// key. False when no user has the id.
    pub(super) fn delete_user(&mut self, user_id: i64) -> Result<bool, StoreError> {
        self.in_transaction("delete_user", |tx, _| {
            tx.prepare_cached("DELETE FROM users WHERE id = ?1")
                .and_then(|mut delete| delete.execute([user_id]))
                .map(|deleted| deleted > 0)
                .map_err(db("delete_user"))
        })
    }

    /// Stores a session and deletes expired ones, so the table does not grow
    /// with sessions that ended without a logout.
    pub(super) fn create_session(
        &mut self,
        token_hash: &str,
        user_id: i64,
        expires_ms: TimestampMs,
    ) -> Result<(), StoreError> {
        const OP: &str = "create_session";
        let tx = self.begin(OP)?;
        tx.prepare_cached(DELETE_EXPIRED_SESSIONS)
            .and_then(|mut delete| delete.execute([now_ms()]))
            .map_err(db(OP))?;
        let inserted = tx
            .prepare_cached(INSERT_SESSION)
            .and_then(|mut insert| insert.execute(params![token_hash, user_id, expires_ms]));
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict {
                    what: "a session with this token".to_owned(),
                });
            }
            Err(error) => return Err(db(OP)(error)),
        }
        tx.commit().map_err(db(OP))
    }

    pub(super) fn delete_session(&mut self, token_hash: &str) -> Result<(), StoreError> {
        const OP: &str = "delete_session";
        self.conn
            .prepare_cached(DELETE_SESSION)
            .and_then(|mut delete| delete.execute([token_hash]))
            .map_err(db(OP))?;
        Ok(())
    }
}

/// Returns the readings with finite values. Decoders reject NaN and
/// infinities first, and SQLite would turn NaN into NULL and fail the whole
/// batch, so any that slip through are skipped with one warning.
fn finite_readings(readings: &[Reading]) -> Vec<&Reading> {
    let finite: Vec<&Reading> = readings.iter().filter(|reading| reading.value.is_finite()).collect();
    let skipped = readings.len() - finite.len();
    if skipped > 0 {
        let first = readings.iter().find(|reading| !reading.value.is_finite());
        warn!(
            skipped,
            device_id = first.map(|reading| reading.device.as_str()),
            "skipped readings with NaN or infinite values; the decoder should have rejected them"
        );
    }
    finite
}

fn insert_readings(tx: &Transaction<'_>, series: &mut SeriesCache, readings: &[&Reading]) -> Result<WriteOutcome, StoreError> {
    const OP: &str = "write_readings";

    // Devices first, because series rows reference them.
    let mut seen: HashMap<&DeviceId, (TimestampMs, TimestampMs)> = HashMap::new();
    for reading in readings {
        let span = seen.entry(&reading.device).or_insert((reading.ts_ms, reading.ts_ms));
        span.0 = span.0.min(reading.ts_ms);
        span.1 = span.1.max(reading.ts_ms);
    }
    {
        let mut upsert = tx.prepare_cached(UPSERT_DEVICE_SEEN).map_err(db(OP))?;
        for (device, (first, last)) in &seen {
            upsert.execute(params![device.as_str(), first, last]).map_err(db(OP))?;
        }
    }

    // The series of each reading, and how many readings of each series the
    // batch holds, which decides the table its readings go to.
    let mut batch_series: Vec<BatchSeries> = Vec::new();
    let mut slot_of_id: HashMap<i64, usize> = HashMap::new();
    let mut slots = Vec::with_capacity(readings.len());
    for reading in readings {
        let series_id = match series.get(reading) {
            Some(id) => id,
            None => {
                let id = find_or_create_series(tx, reading)?;
                // The caller clears the cache if this transaction fails.
                series.insert(reading, id);
                id
            }
        };
        let slot = *slot_of_id.entry(series_id).or_insert_with(|| {
            batch_series.push(BatchSeries { id: series_id, readings: 0, target: Table::Staged, other_newest: None, stored: 0, newest: None });
            batch_series.len() - 1
        });
        batch_series[slot].readings += 1;
        slots.push(slot);
    }
    for entry in &mut batch_series {
        let newest = series.staging.newest(tx, entry.id)?;
        (entry.target, entry.other_newest) = if entry.readings >= DIRECT_HEAD_READINGS {
            (Table::Head, newest.staged)
        } else {
            (Table::Staged, newest.head)
        };
    }

    let mut outcome = WriteOutcome::default();
    {
        let mut insert_head = tx.prepare_cached(INSERT_READING).map_err(db(OP))?;
        let mut insert_staged = tx.prepare_cached(INSERT_STAGED_READING).map_err(db(OP))?;
        for (reading, &slot) in readings.iter().zip(&slots) {
            let entry = &mut batch_series[slot];
            // The primary key of the target table cannot see a reading in
            // the other table. A reading newer than that table's bound is not there.
            if entry.other_newest.is_some_and(|newest| reading.ts_ms <= newest) && staging::contains(tx, entry.target.other(), entry.id, reading.ts_ms)? {
                outcome.duplicates += 1;
                continue;
            }
            let insert = match entry.target {
                Table::Head => &mut insert_head,
                Table::Staged => &mut insert_staged,
            };
            let inserted = insert.execute(params![entry.id, reading.ts_ms, reading.value]).map_err(db(OP))?;
            if inserted == 0 {
                outcome.duplicates += 1;
                continue;
            }
            outcome.stored += 1;
            entry.stored += 1;
            if entry.newest.is_none_or(|(newest_ts, _)| reading.ts_ms > newest_ts) {
                entry.newest = Some((reading.ts_ms, reading.value));
            }
        }
    }

    // Staged rows reach `latest` and the reading count when they are merged.
    {
        let mut latest = tx.prepare_cached(UPSERT_LATEST).map_err(db(OP))?;
        let mut count = tx.prepare_cached(ADD_READING_COUNT).map_err(db(OP))?;
        for entry in batch_series.iter().filter(|entry| entry.target == Table::Head) {
            if let Some((ts_ms, value)) = entry.newest {
                latest.execute(params![entry.id, ts_ms, value]).map_err(db(OP))?;
                count.execute(params![entry.id, entry.stored as i64]).map_err(db(OP))?;
            }
        }
    }
    let arrived_ms = now_ms();
    for entry in &batch_series {
        if let Some((ts_ms, _)) = entry.newest {
            series.staging.note_stored(entry.id, entry.target, ts_ms, entry.stored);
            let head = series.head.entry(entry.id).or_insert(HeadState { rows: 0, since_ms: arrived_ms });
            head.rows += entry.stored;
        }
    }

    if series.staging.rows(tx)? >= MERGE_STAGED_READINGS {
        staging::merge(tx, &mut series.staging)?;
    }
    Ok(outcome)
}

fn insert_rejections(tx: &Transaction<'_>, rejections: &[Rejection], at_ms: TimestampMs) -> Result<(), StoreError> {
    const OP: &str = "record_rejections";
    if rejections.is_empty() {
        return Ok(());
    }
    let mut newest_id = 0;
    {
        let mut insert = tx.prepare_cached(INSERT_INGEST_ERROR).map_err(db(OP))?;
        let mut count = tx.prepare_cached(BUMP_INGEST_ERROR_COUNT).map_err(db(OP))?;
        for rejection in rejections {
            let device = rejection.device.as_ref().map(DeviceId::as_str);
            let reason = rejection.reason.code();
            insert
                .execute(params![at_ms, device, rejection.topic, rejection.field, rejection.value, reason, rejection.detail])
                .map_err(db(OP))?;
            newest_id = tx.last_insert_rowid();
            count.execute(params![device.unwrap_or(""), reason, at_ms]).map_err(db(OP))?;
        }
    }
    // Row ids grow by one per insert, so the newest MAX_INGEST_ERRORS rows
    // are exactly those above this bound; the delete is a primary key range.
    let keep_above = newest_id.saturating_sub(MAX_INGEST_ERRORS);
    tx.prepare_cached(TRIM_INGEST_ERRORS).and_then(|mut trim| trim.execute([keep_above])).map_err(db(OP))?;
    Ok(())
}

fn upsert_counters(tx: &Transaction<'_>, device: &DeviceId, counters: &DeviceCounters) -> Result<(), StoreError> {
    const OP: &str = "update_device_counters";
    tx.prepare_cached(UPSERT_DEVICE_COUNTERS)
        .and_then(|mut upsert| {
            upsert.execute(params![
                device.as_str(),
                now_ms(),
                counters.last_seq.map(seq_to_sql),
                count_to_sql(counters.lost),
                count_to_sql(counters.duplicates),
                count_to_sql(counters.restarts)
            ])
        })
        .map_err(db(OP))?;
    Ok(())
}

/// Stores a device's acknowledgement on its command. An acknowledgement
/// whose id no command of that device has is logged and skipped, because a
/// device may answer a command sent by another server or before a reset.
fn apply_command_ack(tx: &Transaction<'_>, device: &DeviceId, ack: &CommandAck, at_ms: TimestampMs) -> Result<(), StoreError> {
    const OP: &str = "apply_command_ack";
    let status = if ack.ok { CommandStatus::Succeeded } else { CommandStatus::Failed };
    let updated = tx
        .prepare_cached(APPLY_COMMAND_ACK)
        .and_then(|mut update| update.execute(params![ack.id, device.as_str(), status.code(), ack.payload, at_ms]))
        .map_err(db(OP))?;
    if updated == 0 {
        warn!(device_id = device.as_str(), command_id = %ack.id, "acknowledgement of an unknown command skipped");
    }
    Ok(())
}

/// Records an announcement. A new device starts `pending`; a known one keeps
/// its status, so a repeated announcement never undoes an operator's review.
fn upsert_announcement(tx: &Transaction<'_>, device: &DeviceId, announcement: &Announcement, at_ms: TimestampMs) -> Result<(), StoreError> {
    tx.prepare_cached(UPSERT_DISCOVERED_DEVICE)
        .and_then(|mut upsert| {
            upsert.execute(params![
                device.as_str(),
                announcement.format,
                announcement.name,
                announcement.model,
                announcement.payload,
                at_ms,
                DiscoveryStatus::Pending.code()
            ])
        })
        .map_err(db("record_announcement"))?;
    Ok(())
}

fn upsert_online(tx: &Transaction<'_>, device: &DeviceId, online: bool, at_ms: TimestampMs) -> Result<(), StoreError> {
    const OP: &str = "set_device_online";
    tx.prepare_cached(UPSERT_DEVICE_ONLINE)
        .and_then(|mut upsert| upsert.execute(params![device.as_str(), at_ms, online]))
        .map_err(db(OP))?;
    Ok(())
}

impl Writer {
    pub(super) fn upsert_site(&mut self, site: &Site) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(UPSERT_SITE)
            .and_then(|mut upsert| {
                upsert.execute(params![
                    site.id,
                    site.name,
                    site.time_zone,
                    site.currency,
                    site.tariff_json,
                    site.co2_g_per_kwh
                ])
            })
            .map_err(db("upsert_site"))?;
        Ok(())
    }

    /// Returns whether the site existed. Its `device_sites` and
    /// `site_owners` rows go with it (ON DELETE CASCADE), so its devices
    /// fall back to `default`.
    pub(super) fn delete_site(&mut self, site_id: &str) -> Result<bool, StoreError> {
        if site_id == DEFAULT_SITE_ID {
            return Err(StoreError::Invalid(format!(
                "the site {DEFAULT_SITE_ID:?} cannot be deleted because unassigned devices belong to it; rename it instead"
            )));
        }
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM sites WHERE id = ?1")
            .and_then(|mut delete| delete.execute([site_id]))
            .map_err(db("delete_site"))?;
        Ok(deleted > 0)
    }

    /// Returns whether the device has a discovery row.
    pub(super) fn set_discovery_status(&mut self, device: &DeviceId, status: DiscoveryStatus) -> Result<bool, StoreError> {
        let updated = self
            .conn
            .prepare_cached("UPDATE discovered_devices SET status = ?2 WHERE device_id = ?1")
            .and_then(|mut update| update.execute(params![device.as_str(), status.code()]))
            .map_err(db("set_discovery_status"))?;
        Ok(updated > 0)
    }

    pub(super) fn assign_device(&mut self, device: &DeviceId, site_id: &str) -> Result<(), StoreError> {
        const OP: &str = "assign_device";
        let tx = self.begin(OP)?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM sites WHERE id = ?1")
            .and_then(|mut select| select.exists([site_id]))
            .map_err(db(OP))?;
        if !exists {
            return Err(StoreError::NotFound {
                what: format!("site {site_id:?}"),
            });
        }
        if site_id == DEFAULT_SITE_ID {
            tx.prepare_cached("DELETE FROM device_sites WHERE device_id = ?1")
                .and_then(|mut delete| delete.execute([device.as_str()]))
                .map_err(db(OP))?;
        } else {
            tx.prepare_cached(UPSERT_DEVICE_SITE)
                .and_then(|mut upsert| upsert.execute([device.as_str(), site_id]))
                .map_err(db(OP))?;
        }
        tx.commit().map_err(db(OP))
    }

    pub(super) fn set_site_owner(&mut self, site_id: &str, user_id: i64, owner: bool) -> Result<(), StoreError> {
        const OP: &str = "set_site_owner";
        let tx = self.begin(OP)?;
        let site_exists = tx
            .prepare_cached("SELECT 1 FROM sites WHERE id = ?1")
            .and_then(|mut select| select.exists([site_id]))
            .map_err(db(OP))?;
        if !site_exists {
            return Err(StoreError::NotFound {
                what: format!("site {site_id:?}"),
            });
        }
        let user_exists = tx
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")
            .and_then(|mut select| select.exists([user_id]))
            .map_err(db(OP))?;
        if !user_exists {
            return Err(StoreError::NotFound {
                what: format!("user {user_id}"),
            });
        }
        let sql = if owner {
            "INSERT OR IGNORE INTO site_owners (site_id, user_id) VALUES (?1, ?2)"
        } else {
            "DELETE FROM site_owners WHERE site_id = ?1 AND user_id = ?2"
        };
        tx.prepare_cached(sql)
            .and_then(|mut statement| statement.execute(params![site_id, user_id]))
            .map_err(db(OP))?;
        tx.commit().map_err(db(OP))
    }
}

fn find_or_create_series(tx: &Transaction<'_>, reading: &Reading) -> Result<i64, StoreError> {
    const OP: &str = "write_readings (series lookup)";
    let key = params![
        reading.device.as_str(),
        reading.channel.as_str(),
        reading.metric.key()
    ];
    let found = tx
        .prepare_cached(SELECT_SERIES_ID)
        .and_then(|mut select| select.query_row(key, |row| row.get(0)).optional())
        .map_err(db(OP))?;
    if let Some(id) = found {
        return Ok(id);
    }
    tx.prepare_cached(INSERT_SERIES)
        .and_then(|mut insert| insert.execute(key))
        .map_err(db(OP))?;
    Ok(tx.last_insert_rowid())
}

/// First and last seen are reading timestamps, so an import of old data
/// moves `first_seen_ms` back and never moves `last_seen_ms` back.
const UPSERT_DEVICE_SEEN: &str = "
    INSERT INTO devices (id, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3)
    ON CONFLICT (id) DO UPDATE SET
        first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
        last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)";

/// A device reported only by its counters gets the wall clock as first and last seen.
const UPSERT_DEVICE_COUNTERS: &str = "
    INSERT INTO devices (id, first_seen_ms, last_seen_ms, last_seq, lost, duplicates, restarts)
    VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (id) DO UPDATE SET
        last_seq = excluded.last_seq,
        lost = excluded.lost,
        duplicates = excluded.duplicates,
        restarts = excluded.restarts";

/// An online report counts as a sign of life and moves `last_seen_ms`
/// forward. An offline report does not, because a broker often sends it on
/// the device's behalf (MQTT Last Will) long after the device went quiet.
const UPSERT_DEVICE_ONLINE: &str = "
    INSERT INTO devices (id, first_seen_ms, last_seen_ms, online) VALUES (?1, ?2, ?2, ?3)
    ON CONFLICT (id) DO UPDATE SET
        online = excluded.online,
        last_seen_ms = CASE WHEN excluded.online THEN max(last_seen_ms, excluded.last_seen_ms)
                            ELSE last_seen_ms END";

// A late announcement (older `at_ms`) still updates the details but never moves
// `last_seen_ms` back; `status` is set only on insert.
const UPSERT_DISCOVERED_DEVICE: &str = "
    INSERT INTO discovered_devices (device_id, format, name, model, payload, first_seen_ms, last_seen_ms, status)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
    ON CONFLICT (device_id) DO UPDATE SET
        format = excluded.format,
        name = coalesce(excluded.name, name),
        model = coalesce(excluded.model, model),
        payload = excluded.payload,
        first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
        last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)";

const SELECT_SERIES_ID: &str =
    "SELECT id FROM series WHERE device_id = ?1 AND channel = ?2 AND metric = ?3";

const INSERT_SERIES: &str = "INSERT INTO series (device_id, channel, metric) VALUES (?1, ?2, ?3)";

const INSERT_READING: &str =
    "INSERT OR IGNORE INTO readings (series_id, ts_ms, value) VALUES (?1, ?2, ?3)";

const INSERT_STAGED_READING: &str =
    "INSERT OR IGNORE INTO staged_readings (series_id, ts_ms, value) VALUES (?1, ?2, ?3)";

const UPSERT_LATEST: &str = "
    INSERT INTO latest (series_id, ts_ms, value) VALUES (?1, ?2, ?3)
    ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value
    WHERE excluded.ts_ms >= latest.ts_ms";

const ADD_READING_COUNT: &str =
    "UPDATE series SET reading_count = reading_count + ?2 WHERE id = ?1";

const INSERT_INGEST_ERROR: &str = "
    INSERT INTO ingest_errors (at_ms, device_id, topic, field, value, reason, detail)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const BUMP_INGEST_ERROR_COUNT: &str = "
    INSERT INTO ingest_error_counts (device_id, reason, count, last_at_ms) VALUES (?1, ?2, 1, ?3)
    ON CONFLICT (device_id, reason) DO UPDATE SET
        count = count + 1,
        last_at_ms = max(last_at_ms, excluded.last_at_ms)";

const TRIM_INGEST_ERRORS: &str = "DELETE FROM ingest_errors WHERE id <= ?1";

const INSERT_USER: &str = "
    INSERT INTO users (username, password_hash, role, must_change_password, created_ms)
    VALUES (?1, ?2, ?3, ?4, ?5)";

const SET_PASSWORD: &str =
    "UPDATE users SET password_hash = ?2, must_change_password = 0 WHERE id = ?1";

const DELETE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE expires_ms <= ?1";

const INSERT_SESSION: &str =
    "INSERT INTO sessions (token_hash, user_id, expires_ms) VALUES (?1, ?2, ?3)";

const DELETE_SESSION: &str = "DELETE FROM sessions WHERE token_hash = ?1";

const UPSERT_SITE: &str = "
    INSERT INTO sites (id, name, time_zone, currency, tariff_json, co2_g_per_kwh)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (id) DO UPDATE SET
        name = excluded.name,
        time_zone = excluded.time_zone,
        currency = excluded.currency,
        tariff_json = excluded.tariff_json,
        co2_g_per_kwh = excluded.co2_g_per_kwh";

const UPSERT_DEVICE_SITE: &str = "
    INSERT INTO device_sites (device_id, site_id) VALUES (?1, ?2)
    ON CONFLICT (device_id) DO UPDATE SET site_id = excluded.site_id";

const INSERT_COMMAND: &str = "
    INSERT INTO device_commands (id, device_id, username, action, request_json, created_ms, status, ack_json, acked_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const UPDATE_COMMAND_STATUS: &str =
    "UPDATE device_commands SET status = ?2, ack_json = ?3, acked_ms = ?4 WHERE id = ?1";

const APPLY_COMMAND_ACK: &str =
    "UPDATE device_commands SET status = ?3, ack_json = ?4, acked_ms = ?5 WHERE id = ?1 AND device_id = ?2";
