//! Compaction and retention: the writer-side half of the time-series engine.
//!
//! New readings land in the `readings` head table inside the ingest
//! transaction, which is what makes an acknowledged reading durable.
//! Compaction later moves each series' head rows into pco-compressed
//! `blocks` and rebuilds the rollup slots those readings touch, in one
//! transaction per group of series, so a crash leaves either the head rows
//! or the blocks, never both or neither.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, OptionalExtension, Transaction};
use se_core::TimestampMs;

use super::convert::db;
use crate::tsdb::codec::{decode_block, encode_block, CodecError};
use crate::tsdb::rollup::{coarsen, decode_page, encode_page, integrates_to_energy, minute_slots, Slot, Tier, MAX_HOLD_MS};
use crate::tsdb::{chunk_sizes, merge_points};
use crate::{CompactOutcome, Resolution, Retention, RetentionOutcome, StoreError};

/// Readings per block. pco needs a few thousand numbers per chunk to reach
/// its best ratio; larger blocks cost more to rewrite when a series appends.
pub(crate) const BLOCK_READINGS: usize = 4096;

/// Longest time span a block grows to by appends. Retention deletes whole
/// blocks, so this bounds how long raw readings outlive their retention.
pub(crate) const MAX_APPEND_SPAN_MS: i64 = 86_400_000;

/// Head readings that make a series due for compaction. Appending to a block
/// rewrites it and its rollup pages, so a series that reports every few
/// seconds is compacted in batches of this size instead of every pass.
pub(crate) const DUE_HEAD_READINGS: u64 = 1024;

/// Wall-clock time after which head readings are compacted however few they
/// are, so a slow series reaches its blocks within this delay.
pub(crate) const DUE_HEAD_AGE_MS: i64 = 3_600_000;

/// Free space kept in the database file after compaction and retention,
/// so the next batches reuse it before the file grows again.
pub(crate) const FREE_PAGE_RESERVE_BYTES: i64 = 1 << 20;

/// Series compacted per transaction, which bounds how long ingestion waits
/// for the writer connection.
pub(crate) const SERIES_PER_TRANSACTION: usize = 128;

const OP: &str = "compact";

pub(super) fn corrupt(operation: &'static str, series_id: i64, error: CodecError) -> StoreError {
    StoreError::Corrupt { operation, detail: format!("series {series_id}: {error}; restore the database from a backup") }
}

/// Series that have rows in the head table, with their row counts.
pub(super) fn head_series(tx: &Transaction<'_>) -> Result<Vec<i64>, StoreError> {
    let mut select = tx.prepare_cached("SELECT DISTINCT series_id FROM readings").map_err(db(OP))?;
    let ids = select.query_map([], |row| row.get(0)).map_err(db(OP))?;
    ids.collect::<Result<_, _>>().map_err(db(OP))
}

/// Rows in the head table and its staging table per series. Scans both, so
/// it runs once per open, not per compaction pass.
pub(super) fn head_counts(tx: &Transaction<'_>) -> Result<Vec<(i64, u64)>, StoreError> {
    let mut select = tx
        .prepare_cached(
            "SELECT series_id, count(*) FROM (SELECT series_id FROM readings UNION ALL SELECT series_id FROM staged_readings)
             GROUP BY series_id",
        )
        .map_err(db(OP))?;
    let rows = select.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))).map_err(db(OP))?;
    rows.collect::<Result<_, _>>().map_err(db(OP))
}

/// A stored block, decoded.
pub(super) struct Block {
    pub id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub points: Vec<(i64, f64)>,
}

/// Decodes the blocks of a series that overlap `[from, to]` (inclusive), in time order.
pub(super) fn blocks_overlapping(conn: &rusqlite::Connection, operation: &'static str, series_id: i64, from: i64, to: i64) -> Result<Vec<Block>, StoreError> {
    // Blocks never overlap, so the one starting before `from` is found
    // by the start bound below together with the end check.
    let mut select = conn
        .prepare_cached(
            "SELECT id, start_ms, end_ms, data FROM blocks
             WHERE series_id = ?1 AND start_ms <= ?3 AND end_ms >= ?2
             ORDER BY start_ms",
        )
        .map_err(db(operation))?;
    let rows = select
        .query_map(params![series_id, from, to], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?, row.get::<_, Vec<u8>>(3)?)))
        .map_err(db(operation))?;
    let mut blocks = Vec::new();
    for row in rows {
        let (id, start_ms, end_ms, data) = row.map_err(db(operation))?;
        let (ts, values) = decode_block(&data).map_err(|error| corrupt(operation, series_id, error))?;
        blocks.push(Block { id, start_ms, end_ms, points: ts.into_iter().zip(values).collect() });
    }
    Ok(blocks)
}

fn last_block(tx: &Transaction<'_>, series_id: i64) -> Result<Option<(i64, i64, i64, usize)>, StoreError> {
    tx.prepare_cached("SELECT id, start_ms, end_ms, count FROM blocks WHERE series_id = ?1 ORDER BY start_ms DESC LIMIT 1")
        .and_then(|mut select| {
            select
                .query_row([series_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get::<_, i64>(3)? as usize)))
                .optional()
        })
        .map_err(db(OP))
}

fn block_by_id(tx: &Transaction<'_>, series_id: i64, id: i64) -> Result<Block, StoreError> {
    let (start_ms, end_ms, data): (i64, i64, Vec<u8>) = tx
        .prepare_cached("SELECT start_ms, end_ms, data FROM blocks WHERE id = ?1")
        .and_then(|mut select| select.query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))))
        .map_err(db(OP))?;
    let (ts, values) = decode_block(&data).map_err(|error| corrupt(OP, series_id, error))?;
    Ok(Block { id, start_ms, end_ms, points: ts.into_iter().zip(values).collect() })
}

fn metric_key(tx: &Transaction<'_>, series_id: i64) -> Result<String, StoreError> {
    tx.prepare_cached("SELECT metric FROM series WHERE id = ?1")
        .and_then(|mut select| select.query_row([series_id], |row| row.get(0)))
        .map_err(db(OP))
}

/// Moves the head rows of one series into blocks and rebuilds the rollups
/// they touch. Adds what it did to `outcome`.
pub(super) fn compact_series(tx: &Transaction<'_>, series_id: i64, outcome: &mut CompactOutcome) -> Result<(), StoreError> {
    let head: Vec<(i64, f64)> = {
        let mut select = tx.prepare_cached("SELECT ts_ms, value FROM readings WHERE series_id = ?1 ORDER BY ts_ms").map_err(db(OP))?;
        let rows = select.query_map([series_id], |row| Ok((row.get(0)?, row.get(1)?))).map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))?
    };
    let (Some(&(first, _)), Some(&(last, _))) = (head.first(), head.last()) else {
        return Ok(());
    };

    // Context: every block whose readings can change a rollup slot that the
    // new readings touch, because a hold reaches at most MAX_HOLD_MS.
    let margin = MAX_HOLD_MS + Tier::Minute.bucket_ms();
    let context = blocks_overlapping(tx, OP, series_id, first.saturating_sub(margin), last.saturating_add(margin))?;

    // Blocks to rewrite: those overlapping the new readings, so blocks never
    // overlap; when none does, the newest block if it still has room, so
    // appends grow it instead of leaving small blocks behind.
    let mut rewrite: Vec<i64> = context.iter().filter(|block| block.end_ms >= first && block.start_ms <= last).map(|block| block.id).collect();
    let mut appended: Option<Block> = None;
    if rewrite.is_empty() {
        if let Some((id, start_ms, end_ms, count)) = last_block(tx, series_id)? {
            if end_ms < first && count < BLOCK_READINGS && last - start_ms <= MAX_APPEND_SPAN_MS {
                rewrite.push(id);
                if !context.iter().any(|block| block.id == id) {
                    appended = Some(block_by_id(tx, series_id, id)?);
                }
            }
        }
    }

    let mut stored: Vec<(i64, f64)> = context
        .iter()
        .chain(appended.iter())
        .filter(|block| rewrite.contains(&block.id))
        .flat_map(|block| block.points.iter().copied())
        .collect();
    stored.sort_unstable_by_key(|point| point.0);
    let (merged, duplicates) = merge_points(&stored, &head);

    {
        let mut delete = tx.prepare_cached("DELETE FROM blocks WHERE id = ?1").map_err(db(OP))?;
        for id in &rewrite {
            delete.execute([id]).map_err(db(OP))?;
        }
        let mut insert = tx.prepare_cached("INSERT INTO blocks (series_id, start_ms, end_ms, count, data) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(db(OP))?;
        let mut offset = 0;
        for size in chunk_sizes(merged.len(), BLOCK_READINGS) {
            let chunk = &merged[offset..offset + size];
            offset += size;
            let ts: Vec<i64> = chunk.iter().map(|point| point.0).collect();
            let values: Vec<f64> = chunk.iter().map(|point| point.1).collect();
            let data = encode_block(&ts, &values).map_err(|error| corrupt(OP, series_id, error))?;
            insert.execute(params![series_id, ts[0], ts[ts.len() - 1], size as i64, data]).map_err(db(OP))?;
            outcome.blocks_written += 1;
        }
    }
    tx.prepare_cached("DELETE FROM readings WHERE series_id = ?1").and_then(|mut delete| delete.execute([series_id])).map_err(db(OP))?;
    if duplicates > 0 {
        tx.prepare_cached("UPDATE series SET reading_count = max(reading_count - ?2, 0) WHERE id = ?1")
            .and_then(|mut update| update.execute(params![series_id, duplicates as i64]))
            .map_err(db(OP))?;
    }
    outcome.series += 1;
    outcome.readings += head.len() as u64;
    outcome.duplicates += duplicates as u64;

    // Every reading near the new ones, now that they are merged.
    let others: Vec<(i64, f64)> = context.iter().filter(|block| !rewrite.contains(&block.id)).flat_map(|block| block.points.iter().copied()).collect();
    let (nearby, _) = merge_points(&others, &merged);

    // The first minute to rebuild holds the reading before the new ones,
    // whose hold the first new reading may cut short; the last holds the
    // reading that ends the hold of the newest new reading.
    let before = nearby.iter().rev().find(|point| point.0 < first && first - point.0 <= MAX_HOLD_MS).map_or(first, |point| point.0);
    let after = nearby.iter().find(|point| point.0 > last && point.0 - last <= MAX_HOLD_MS).map_or(last, |point| point.0);
    let start = Tier::Minute.floor(before);
    let end = Tier::Minute.floor(after) + Tier::Minute.bucket_ms();
    let energy = integrates_to_energy(&metric_key(tx, series_id)?);
    let minutes = minute_slots(&nearby, start, end, energy);
    outcome.pages_written += rebuild_rollups(tx, series_id, start, end, minutes)?;
    Ok(())
}

/// Replaces the minute slots of `[start, end)` with `minutes`, then rebuilds
/// the hour and day slots that contain them. Returns the pages written.
fn rebuild_rollups(tx: &Transaction<'_>, series_id: i64, start: i64, end: i64, minutes: BTreeMap<i64, Slot>) -> Result<u64, StoreError> {
    let mut pages = PageCache::default();
    let mut written = 0;
    let mut computed = minutes;
    let (mut start, mut end) = (start, end);
    for tier in Tier::ALL {
        if let Some(finer) = tier.finer() {
            // Widen the range to whole buckets of this tier and rebuild them
            // from every finer slot inside, stored or just computed.
            start = tier.floor(start);
            end = tier.floor(end - 1) + tier.bucket_ms();
            let finer_slots = pages.slots(tx, series_id, finer, start, end)?;
            computed = coarsen(tier, &finer_slots);
        }
        written += pages.replace(tx, series_id, tier, start, end, &computed)?;
    }
    Ok(written)
}

/// Rollup pages of one series, read once and written back as they change.
#[derive(Default)]
struct PageCache {
    pages: HashMap<(Tier, i64), BTreeMap<i64, Slot>>,
}

impl PageCache {
    fn load(&mut self, tx: &Transaction<'_>, series_id: i64, tier: Tier, page_ms: i64) -> Result<&mut BTreeMap<i64, Slot>, StoreError> {
        if !self.pages.contains_key(&(tier, page_ms)) {
            let data: Option<Vec<u8>> = tx
                .prepare_cached("SELECT data FROM rollup_pages WHERE series_id = ?1 AND tier = ?2 AND page_ms = ?3")
                .and_then(|mut select| select.query_row(params![series_id, tier.code(), page_ms], |row| row.get(0)).optional())
                .map_err(db(OP))?;
            let slots = match data {
                Some(data) => decode_page(tier, page_ms, &data).map_err(|error| corrupt(OP, series_id, error))?,
                None => BTreeMap::new(),
            };
            self.pages.insert((tier, page_ms), slots);
        }
        self.pages
            .get_mut(&(tier, page_ms))
            .ok_or_else(|| StoreError::Worker("rollup page vanished from the cache".to_owned()))
    }

    /// Slots of `tier` in `[start, end)`.
    fn slots(&mut self, tx: &Transaction<'_>, series_id: i64, tier: Tier, start: i64, end: i64) -> Result<BTreeMap<i64, Slot>, StoreError> {
        let mut out = BTreeMap::new();
        let mut page_ms = tier.page_of(start);
        while page_ms < end {
            let page = self.load(tx, series_id, tier, page_ms)?;
            out.extend(page.range(start..end).map(|(key, slot)| (*key, *slot)));
            page_ms += tier.page_ms();
        }
        Ok(out)
    }

    /// Replaces the slots of `[start, end)` and writes the changed pages.
    fn replace(&mut self, tx: &Transaction<'_>, series_id: i64, tier: Tier, start: i64, end: i64, computed: &BTreeMap<i64, Slot>) -> Result<u64, StoreError> {
        let mut written = 0;
        let mut page_ms = tier.page_of(start);
        while page_ms < end {
            let page_end = page_ms + tier.page_ms();
            let page = self.load(tx, series_id, tier, page_ms)?;
            page.retain(|key, _| *key < start || *key >= end);
            page.extend(computed.range(start.max(page_ms)..end.min(page_end)).filter(|(_, slot)| !slot.is_empty()).map(|(key, slot)| (*key, *slot)));
            write_page(tx, series_id, tier, page_ms, page)?;
            written += 1;
            page_ms = page_end;
        }
        Ok(written)
    }
}

fn write_page(tx: &Transaction<'_>, series_id: i64, tier: Tier, page_ms: i64, slots: &BTreeMap<i64, Slot>) -> Result<(), StoreError> {
    if slots.is_empty() {
        tx.prepare_cached("DELETE FROM rollup_pages WHERE series_id = ?1 AND tier = ?2 AND page_ms = ?3")
            .and_then(|mut delete| delete.execute(params![series_id, tier.code(), page_ms]))
            .map_err(db(OP))?;
        return Ok(());
    }
    let data = encode_page(tier, page_ms, slots).map_err(|error| corrupt(OP, series_id, error))?;
    let readings: u64 = slots.values().map(|slot| slot.count).sum();
    tx.prepare_cached(
        "INSERT INTO rollup_pages (series_id, tier, page_ms, slots, readings, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (series_id, tier, page_ms) DO UPDATE SET slots = excluded.slots, readings = excluded.readings, data = excluded.data",
    )
    .and_then(|mut upsert| upsert.execute(params![series_id, tier.code(), page_ms, slots.len() as i64, readings as i64, data]))
    .map_err(db(OP))?;
    Ok(())
}

/// Deletes blocks and rollup pages that lie wholly before their resolution's
/// retention cutoff. Blocks are deleted whole, so raw readings may outlive
/// the cutoff by up to one block, normally at most a day.
pub(super) fn enforce_retention(tx: &Transaction<'_>, now_ms: TimestampMs, retention: &Retention) -> Result<RetentionOutcome, StoreError> {
    const OP: &str = "enforce_retention";
    let mut outcome = RetentionOutcome::default();
    if let Some(keep) = retention.raw_ms {
        let cutoff = now_ms.saturating_sub(keep);
        let expired: Vec<(i64, i64)> = {
            let mut select = tx.prepare_cached("SELECT series_id, sum(count) FROM blocks WHERE end_ms < ?1 GROUP BY series_id").map_err(db(OP))?;
            let rows = select.query_map([cutoff], |row| Ok((row.get(0)?, row.get(1)?))).map_err(db(OP))?;
            rows.collect::<Result<_, _>>().map_err(db(OP))?
        };
        let mut update = tx.prepare_cached("UPDATE series SET reading_count = max(reading_count - ?2, 0) WHERE id = ?1").map_err(db(OP))?;
        for (series_id, count) in &expired {
            update.execute(params![series_id, count]).map_err(db(OP))?;
            outcome.readings_deleted += *count as u64;
        }
        outcome.blocks_deleted = tx.prepare_cached("DELETE FROM blocks WHERE end_ms < ?1").and_then(|mut delete| delete.execute([cutoff])).map_err(db(OP))? as u64;
    }
    for tier in Tier::ALL {
        if let Some(keep) = retention.keep_ms(Resolution::Tier(tier)) {
            let cutoff = now_ms.saturating_sub(keep);
            outcome.pages_deleted += tx
                .prepare_cached("DELETE FROM rollup_pages WHERE tier = ?1 AND page_ms + ?2 <= ?3")
                .and_then(|mut delete| delete.execute(params![tier.code(), tier.page_ms(), cutoff]))
                .map_err(db(OP))? as u64;
        }
    }
    Ok(outcome)
}
