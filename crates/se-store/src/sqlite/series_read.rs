//! The reader-side half of the time-series engine: raw readings merged from
//! blocks and the head table, rollup slots, the query planner's answers and
//! the aggregates that dashboards need.
//!
//! Every function here runs inside one read transaction of its caller, so it
//! sees one snapshot even while compaction moves rows from the head table
//! into blocks.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use se_core::{ChannelName, Metric, Reading, TimestampMs};

use super::compact::{blocks_overlapping, corrupt};
use super::convert::{channel_from_sql, db, metric_from_sql};
use crate::tsdb::rollup::{coarsen, decode_page_into, integrates_to_energy, minute_slots, Slot, Tier, MAX_HOLD_MS};
use crate::tsdb::{bucket_points, bucket_slots, merge_points, percentile, plan};
use crate::{
    EnergyTotal, PercentileReport, RawQuery, Resolution, Retention, SeriesKey, SeriesPoint, SeriesQuery, StorageStats, StoreError, SumPoint, SumQuery, TierStats, TopBy, TopEntry, TopQuery,
};

/// Clamp for query bounds, far from overflow in the arithmetic below.
const MIN_QUERY_TS: TimestampMs = i64::MIN / 4;
const MAX_QUERY_TS: TimestampMs = i64::MAX / 4;

fn clamp_range(from_ms: TimestampMs, to_ms: TimestampMs) -> (i64, i64) {
    (from_ms.clamp(MIN_QUERY_TS, MAX_QUERY_TS), to_ms.clamp(MIN_QUERY_TS, MAX_QUERY_TS))
}

pub(super) fn series_id(conn: &Connection, operation: &'static str, key: &SeriesKey) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT id FROM series WHERE device_id = ?1 AND channel = ?2 AND metric = ?3")
        .and_then(|mut select| select.query_row(params![key.device.as_str(), key.channel.as_str(), key.metric.key()], |row| row.get(0)).optional())
        .map_err(db(operation))
}

/// Readings of one series in `[from, to)`, in time order. Head readings come
/// from `readings` and its staging table, which never share a reading. A
/// head reading that repeats the instant of a block reading is a replay that
/// compaction has not yet dropped, so the block's value wins.
pub(super) fn series_points(conn: &Connection, operation: &'static str, series_id: i64, from: i64, to: i64) -> Result<Vec<(i64, f64)>, StoreError> {
    if to <= from {
        return Ok(Vec::new());
    }
    let mut stored: Vec<(i64, f64)> = Vec::new();
    for block in blocks_overlapping(conn, operation, series_id, from, to - 1)? {
        stored.extend(block.points.into_iter().filter(|point| point.0 >= from && point.0 < to));
    }
    let head: Vec<(i64, f64)> = {
        let mut select = conn
            .prepare_cached(
                "SELECT ts_ms, value FROM readings WHERE series_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
                 UNION ALL
                 SELECT ts_ms, value FROM staged_readings WHERE series_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
                 ORDER BY ts_ms",
            )
            .map_err(db(operation))?;
        let rows = select.query_map(params![series_id, from, to], |row| Ok((row.get(0)?, row.get(1)?))).map_err(db(operation))?;
        rows.collect::<Result<_, _>>().map_err(db(operation))?
    };
    if head.is_empty() {
        return Ok(stored);
    }
    Ok(merge_points(&stored, &head).0)
}

/// Rollup slots of `tier` for the buckets that overlap `[from, to)`.
///
/// Stored pages answer for buckets that compaction has brought up to date.
/// Buckets that readings still in the head table can change (those from
/// one hold before the oldest head reading onwards) are computed from raw
/// readings instead, so answers never lag ingestion.
pub(super) fn tier_slots(conn: &Connection, operation: &'static str, series_id: i64, tier: Tier, energy: bool, from: i64, to: i64) -> Result<Vec<(i64, Slot)>, StoreError> {
    let start = tier.floor(from);
    let end = tier.floor(to - 1) + tier.bucket_ms();
    let head_min: Option<i64> = conn
        .prepare_cached(
            "SELECT min(oldest) FROM (SELECT min(ts_ms) AS oldest FROM readings WHERE series_id = ?1
                                      UNION ALL SELECT min(ts_ms) FROM staged_readings WHERE series_id = ?1)",
        )
        .and_then(|mut select| select.query_row([series_id], |row| row.get(0)))
        .map_err(db(operation))?;
    let cut = head_min.map_or(end, |oldest| tier.floor(oldest - MAX_HOLD_MS)).clamp(start, end);

    let mut slots = Vec::new();
    if cut > start {
        let mut select = conn
            .prepare_cached("SELECT page_ms, data FROM rollup_pages WHERE series_id = ?1 AND tier = ?2 AND page_ms > ?3 AND page_ms < ?4 ORDER BY page_ms")
            .map_err(db(operation))?;
        let rows = select
            .query_map(params![series_id, tier.code(), start - tier.page_ms(), cut], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
            .map_err(db(operation))?;
        for row in rows {
            let (page_ms, data) = row.map_err(db(operation))?;
            decode_page_into(tier, page_ms, &data, start..cut, &mut slots).map_err(|error| corrupt(operation, series_id, error))?;
        }
    }
    if cut < end {
        let points = series_points(conn, operation, series_id, cut - MAX_HOLD_MS, end + MAX_HOLD_MS)?;
        let minutes = minute_slots(&points, cut, end, energy);
        let live = match tier {
            Tier::Minute => minutes,
            Tier::Hour => coarsen(Tier::Hour, &minutes),
            Tier::Day => coarsen(Tier::Day, &coarsen(Tier::Hour, &minutes)),
        };
        slots.extend(live);
    }
    Ok(slots)
}

/// Buckets of one series as the planner resolves them.
fn planned_points(conn: &Connection, operation: &'static str, series_id: i64, metric: Metric, from: i64, to: i64, max_points: u32, now_ms: i64, retention: &Retention) -> Result<Vec<SeriesPoint>, StoreError> {
    let plan = plan(from, to, max_points, now_ms, retention);
    match plan.resolution {
        Resolution::Raw => {
            let points = series_points(conn, operation, series_id, from, to)?;
            if plan.bucket_ms == 0 {
                return Ok(points.into_iter().map(|(ts_ms, value)| SeriesPoint { ts_ms, min: value, max: value, mean: value, count: 1 }).collect());
            }
            Ok(bucket_points(&points, from, plan.bucket_ms))
        }
        Resolution::Tier(tier) => {
            let slots = tier_slots(conn, operation, series_id, tier, integrates_to_energy(metric.key()), from, to)?;
            Ok(bucket_slots(&slots, plan.bucket_ms))
        }
    }
}

pub(super) fn query_series(conn: &Connection, query: &SeriesQuery, now_ms: i64, retention: &Retention) -> Result<Vec<SeriesPoint>, StoreError> {
    const OP: &str = "query_series";
    let (from, to) = clamp_range(query.from_ms, query.to_ms);
    if to <= from {
        return Ok(Vec::new());
    }
    let key = SeriesKey { device: query.device.clone(), channel: query.channel.clone(), metric: query.metric };
    let Some(id) = series_id(conn, OP, &key)? else {
        return Ok(Vec::new());
    };
    planned_points(conn, OP, id, query.metric, from, to, query.max_points, now_ms, retention)
}

/// Reads raw readings over `[from_ms, to_ms)` ordered by timestamp, channel
/// and metric key. A limit of 0 returns every matching reading.
pub(super) fn raw_readings(conn: &Connection, query: &RawQuery) -> Result<Vec<Reading>, StoreError> {
    const OP: &str = "raw_readings";
    let (from, to) = clamp_range(query.from_ms, query.to_ms);
    if to <= from {
        return Ok(Vec::new());
    }
    let series: Vec<(i64, String, String)> = {
        let mut select = conn
            .prepare_cached("SELECT id, channel, metric FROM series WHERE device_id = ?1 AND (?2 IS NULL OR channel = ?2) AND (?3 IS NULL OR metric = ?3)")
            .map_err(db(OP))?;
        let rows = select
            .query_map(params![query.device.as_str(), query.channel.as_ref().map(ChannelName::as_str), query.metric.map(|metric| metric.key())], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))?
    };

    let mut readings = Vec::new();
    for (id, channel, metric) in series {
        let channel = channel_from_sql(OP, &channel)?;
        let metric = metric_from_sql(OP, &metric)?;
        for (ts_ms, value) in series_points(conn, OP, id, from, to)? {
            readings.push(Reading { device: query.device.clone(), channel: channel.clone(), metric, ts_ms, value });
        }
    }
    readings.sort_by(|a, b| a.ts_ms.cmp(&b.ts_ms).then_with(|| a.channel.as_str().cmp(b.channel.as_str())).then_with(|| a.metric.key().cmp(b.metric.key())));
    if query.limit > 0 {
        readings.truncate(query.limit as usize);
    }
    Ok(readings)
}

pub(super) fn query_sum(conn: &Connection, query: &SumQuery, now_ms: i64, retention: &Retention) -> Result<Vec<SumPoint>, StoreError> {
    const OP: &str = "query_sum";
    let (from, to) = clamp_range(query.from_ms, query.to_ms);
    if to <= from {
        return Ok(Vec::new());
    }
    if query.max_points == 0 {
        return Err(StoreError::Invalid("max_points must be at least 1 for a sum of series; request 1000 for a chart".to_owned()));
    }
    let mut sums: BTreeMap<i64, SumPoint> = BTreeMap::new();
    for key in &query.series {
        let Some(id) = series_id(conn, OP, key)? else { continue };
        for point in planned_points(conn, OP, id, key.metric, from, to, query.max_points, now_ms, retention)? {
            let entry = sums.entry(point.ts_ms).or_insert(SumPoint { ts_ms: point.ts_ms, sum: 0.0, series: 0 });
            entry.sum += point.mean;
            entry.series += 1;
        }
    }
    Ok(sums.into_values().collect())
}

/// Energy of one power series over `[from, to)`. Whole hours come from the
/// hour rollups; the partial hours at both edges from raw readings while
/// they are kept, else from minute rollups.
pub(super) fn energy_between(conn: &Connection, operation: &'static str, series_id: i64, from: i64, to: i64, now_ms: i64, retention: &Retention) -> Result<EnergyTotal, StoreError> {
    let mut total = EnergyTotal { energy_wh: 0.0, covered_ms: 0, exact: true };
    if to <= from {
        return Ok(total);
    }
    let raw_kept = retention.raw_ms.is_none_or(|keep| from >= now_ms.saturating_sub(keep));
    let add_edge = |start: i64, end: i64, total: &mut EnergyTotal| -> Result<(), StoreError> {
        if end <= start {
            return Ok(());
        }
        let slots = if raw_kept {
            let points = series_points(conn, operation, series_id, start - MAX_HOLD_MS, end + MAX_HOLD_MS)?;
            minute_slots(&points, start, end, true).into_iter().collect()
        } else {
            total.exact = false;
            tier_slots(conn, operation, series_id, Tier::Minute, true, start, end)?
        };
        for (_, slot) in &slots {
            total.energy_wh += slot.energy_wh;
            total.covered_ms += slot.covered_ms;
        }
        Ok(())
    };

    let hour = Tier::Hour.bucket_ms();
    let first_hour = from.div_euclid(hour) * hour + if from.rem_euclid(hour) == 0 { 0 } else { hour };
    let last_hour = Tier::Hour.floor(to);
    if first_hour >= last_hour {
        add_edge(from, to, &mut total)?;
        return Ok(total);
    }
    add_edge(from, first_hour, &mut total)?;
    add_edge(last_hour, to, &mut total)?;
    for slot in tier_slots(conn, operation, series_id, Tier::Hour, true, first_hour, last_hour)?.iter().map(|(_, slot)| slot) {
        total.energy_wh += slot.energy_wh;
        total.covered_ms += slot.covered_ms;
    }
    Ok(total)
}

pub(super) fn series_energy(conn: &Connection, key: &SeriesKey, from: i64, to: i64, now_ms: i64, retention: &Retention) -> Result<EnergyTotal, StoreError> {
    const OP: &str = "series_energy";
    if !integrates_to_energy(key.metric.key()) {
        return Err(StoreError::Invalid(format!("metric {} is not a power in watts, so it has no energy; ask for power_w", key.metric.key())));
    }
    let (from, to) = clamp_range(from, to);
    match series_id(conn, OP, key)? {
        Some(id) => energy_between(conn, OP, id, from, to, now_ms, retention),
        None => Ok(EnergyTotal { energy_wh: 0.0, covered_ms: 0, exact: true }),
    }
}

pub(super) fn top_series(conn: &Connection, query: &TopQuery, now_ms: i64, retention: &Retention) -> Result<Vec<TopEntry>, StoreError> {
    const OP: &str = "top_series";
    let (from, to) = clamp_range(query.from_ms, query.to_ms);
    let mut entries = Vec::new();
    for key in &query.series {
        let Some(id) = series_id(conn, OP, key)? else { continue };
        let value = match query.by {
            TopBy::EnergyWh => {
                if !integrates_to_energy(key.metric.key()) {
                    continue;
                }
                energy_between(conn, OP, id, from, to, now_ms, retention)?.energy_wh
            }
            TopBy::Mean | TopBy::Max => {
                let points = planned_points(conn, OP, id, key.metric, from, to, 1000, now_ms, retention)?;
                let count: u64 = points.iter().map(|point| point.count).sum();
                if count == 0 {
                    continue;
                }
                if query.by == TopBy::Mean {
                    points.iter().map(|point| point.mean * point.count as f64).sum::<f64>() / count as f64
                } else {
                    points.iter().map(|point| point.max).fold(f64::NEG_INFINITY, f64::max)
                }
            }
        };
        entries.push(TopEntry { series: key.clone(), value });
    }
    entries.sort_by(|a, b| b.value.total_cmp(&a.value).then_with(|| a.series.cmp(&b.series)));
    entries.truncate(query.n as usize);
    Ok(entries)
}

pub(super) fn percentiles(conn: &Connection, key: &SeriesKey, from: i64, to: i64, quantiles: &[f64], now_ms: i64, retention: &Retention) -> Result<PercentileReport, StoreError> {
    const OP: &str = "percentiles";
    if let Some(bad) = quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(StoreError::Invalid(format!("percentile {bad} is outside [0, 1]; write the 95th percentile as 0.95")));
    }
    let (from, to) = clamp_range(from, to);
    let Some(id) = series_id(conn, OP, key)? else {
        return Ok(PercentileReport { values: Vec::new(), count: 0, exact: true });
    };
    let exact = retention.raw_ms.is_none_or(|keep| from >= now_ms.saturating_sub(keep));
    let mut values: Vec<f64> = if exact {
        series_points(conn, OP, id, from, to)?.into_iter().map(|point| point.1).collect()
    } else {
        tier_slots(conn, OP, id, Tier::Minute, false, from, to)?.iter().filter_map(|(_, slot)| slot.mean()).collect()
    };
    values.sort_by(f64::total_cmp);
    let report = quantiles.iter().filter_map(|q| percentile(&values, *q).map(|value| (*q, value))).collect();
    Ok(PercentileReport { values: report, count: values.len() as u64, exact })
}

/// Bytes of the named tables and indexes, from SQLite's `dbstat` table.
fn table_bytes(conn: &Connection, names: &[&str]) -> Result<u64, StoreError> {
    let mut total = 0u64;
    for name in names {
        let bytes: Option<i64> = conn
            .prepare_cached("SELECT sum(pgsize) FROM dbstat WHERE name = ?1")
            .and_then(|mut select| select.query_row([name], |row| row.get(0)))
            .map_err(db("storage_stats"))?;
        total += bytes.unwrap_or(0).max(0) as u64;
    }
    Ok(total)
}

pub(super) fn storage_stats(conn: &Connection, file_bytes: u64) -> Result<StorageStats, StoreError> {
    const OP: &str = "storage_stats";
    let count = |sql: &str| -> Result<(u64, u64, u64), StoreError> {
        conn.prepare_cached(sql)
            .and_then(|mut select| select.query_row([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64, row.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64))))
            .map_err(db(OP))
    };
    let (head_series, head_rows, head_readings) = count(
        "SELECT count(DISTINCT series_id), count(*), count(*)
         FROM (SELECT series_id FROM readings UNION ALL SELECT series_id FROM staged_readings)",
    )?;
    let (raw_series, raw_rows, raw_readings) = count("SELECT count(DISTINCT series_id), count(*), sum(count) FROM blocks")?;
    let mut tiers = vec![
        TierStats { tier: "head".to_owned(), series: head_series, rows: head_rows, readings: head_readings, bytes: table_bytes(conn, &["readings", "staged_readings"])? },
        TierStats { tier: "raw".to_owned(), series: raw_series, rows: raw_rows, readings: raw_readings, bytes: table_bytes(conn, &["blocks", "blocks_by_series"])? },
    ];

    // The rollup tiers share one table, so its pages are split between them
    // in proportion to their payload bytes.
    let pages_bytes = table_bytes(conn, &["rollup_pages", "rollup_pages_by_series"])?;
    let mut per_tier = Vec::new();
    for tier in Tier::ALL {
        let (series, rows, readings, payload): (i64, i64, Option<i64>, Option<i64>) = conn
            .prepare_cached("SELECT count(DISTINCT series_id), count(*), sum(readings), sum(length(data)) FROM rollup_pages WHERE tier = ?1")
            .and_then(|mut select| select.query_row([tier.code()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))))
            .map_err(db(OP))?;
        per_tier.push((tier, series as u64, rows as u64, readings.unwrap_or(0) as u64, payload.unwrap_or(0) as u64));
    }
    let total_payload: u64 = per_tier.iter().map(|entry| entry.4).sum();
    for (tier, series, rows, readings, payload) in per_tier {
        let bytes = if total_payload == 0 { 0 } else { (pages_bytes as f64 * payload as f64 / total_payload as f64).round() as u64 };
        tiers.push(TierStats { tier: tier.name().to_owned(), series, rows, readings, bytes });
    }
    Ok(StorageStats { tiers, file_bytes })
}
