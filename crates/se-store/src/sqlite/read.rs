//! Queries run on the read-only connections.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use se_core::{DeviceId, TimestampMs};

use super::convert::{
    channel_from_sql, count_from_sql, db, device_from_sql, metric_from_sql, reason_from_sql,
    role_from_sql, seq_from_sql,
};
use crate::{
    CommandRecord, CommandStatus, DeviceCounters, DeviceSummary, DiscoveredDevice, DiscoveryStatus, IngestErrorCount, IngestErrorQuery, IngestErrorRecord,
    IngestErrorReport, LatestValue, Site, StoreError,
    StoreStats, User, DEFAULT_SITE_ID,
};

/// Rows returned by `ingest_errors` when the query gives no limit.
pub(crate) const DEFAULT_INGEST_ERROR_LIMIT: u32 = 100;
/// Largest number of rows `ingest_errors` returns, whatever limit the query requests.
pub(crate) const MAX_INGEST_ERROR_LIMIT: u32 = 1000;

/// Lists devices with their latest values and error counts, all read in one
/// transaction so the three parts agree. `only` restricts it to one device.
pub(super) fn device_summaries(
    conn: &mut Connection,
    only: Option<&DeviceId>,
) -> Result<Vec<DeviceSummary>, StoreError> {
    const OP: &str = "list_devices";
    let only = only.map(DeviceId::as_str);
    let tx = conn.transaction().map_err(db(OP))?;

    let mut latest: HashMap<String, Vec<LatestValue>> = HashMap::new();
    {
        let mut select = tx.prepare_cached(SELECT_LATEST).map_err(db(OP))?;
        let rows = select
            .query_map([only], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, f64>(4)?,
                ))
            })
            .map_err(db(OP))?;
        for row in rows {
            let (device, channel, metric, ts_ms, value) = row.map_err(db(OP))?;
            let metric = metric_from_sql(OP, &metric)?;
            let value = LatestValue {
                channel: channel_from_sql(OP, &channel)?,
                metric,
                unit: metric.unit(),
                ts_ms,
                value,
            };
            latest.entry(device).or_default().push(value);
        }
    }

    let mut error_counts: HashMap<String, u64> = HashMap::new();
    {
        let mut select = tx.prepare_cached(SELECT_ERROR_TOTALS).map_err(db(OP))?;
        let rows = select
            .query_map([only], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(db(OP))?;
        for row in rows {
            let (device, total) = row.map_err(db(OP))?;
            error_counts.insert(
                device,
                count_from_sql(OP, "ingest_error_counts.count", total)?,
            );
        }
    }

    let mut devices = Vec::new();
    {
        let mut select = tx.prepare_cached(SELECT_DEVICES).map_err(db(OP))?;
        let rows = select
            .query_map([only], DeviceRow::from_row)
            .map_err(db(OP))?;
        for row in rows {
            let row = row.map_err(db(OP))?;
            let summary = DeviceSummary {
                id: device_from_sql(OP, &row.id)?,
                first_seen_ms: row.first_seen_ms,
                last_seen_ms: row.last_seen_ms,
                online: row.online,
                counters: DeviceCounters {
                    last_seq: row.last_seq.map(seq_from_sql),
                    lost: count_from_sql(OP, "devices.lost", row.lost)?,
                    duplicates: count_from_sql(OP, "devices.duplicates", row.duplicates)?,
                    restarts: count_from_sql(OP, "devices.restarts", row.restarts)?,
                },
                ingest_errors: error_counts.get(&row.id).copied().unwrap_or(0),
                latest: latest.remove(&row.id).unwrap_or_default(),
            };
            devices.push(summary);
        }
    }
    tx.commit().map_err(db(OP))?;
    Ok(devices)
}

struct DeviceRow {
    id: String,
    first_seen_ms: TimestampMs,
    last_seen_ms: TimestampMs,
    online: Option<bool>,
    last_seq: Option<i64>,
    lost: i64,
    duplicates: i64,
    restarts: i64,
}

impl DeviceRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            first_seen_ms: row.get(1)?,
            last_seen_ms: row.get(2)?,
            online: row.get(3)?,
            last_seq: row.get(4)?,
            lost: row.get(5)?,
            duplicates: row.get(6)?,
            restarts: row.get(7)?,
        })
    }
}

/// Reads error counters and the newest rejected values. Rows are newest
/// first in the order they were recorded. A limit of 0 means
/// [`DEFAULT_INGEST_ERROR_LIMIT`], and larger limits are capped at
/// [`MAX_INGEST_ERROR_LIMIT`].
pub(super) fn ingest_errors(
    conn: &mut Connection,
    query: &IngestErrorQuery,
) -> Result<IngestErrorReport, StoreError> {
    const OP: &str = "ingest_errors";
    let device = query.device.as_ref().map(DeviceId::as_str);
    let reason = query.reason.map(|reason| reason.code());
    let limit = match query.limit {
        0 => DEFAULT_INGEST_ERROR_LIMIT,
        limit => limit.min(MAX_INGEST_ERROR_LIMIT),
    };
    let tx = conn.transaction().map_err(db(OP))?;

    let mut counts = Vec::new();
    {
        let mut select = tx.prepare_cached(SELECT_ERROR_COUNTS).map_err(db(OP))?;
        let rows = select
            .query_map(params![device, reason], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(db(OP))?;
        for row in rows {
            let (device, reason, count, last_at_ms) = row.map_err(db(OP))?;
            counts.push(IngestErrorCount {
                device: optional_device(OP, &device)?,
                reason: reason_from_sql(OP, &reason)?,
                count: count_from_sql(OP, "ingest_error_counts.count", count)?,
                last_at_ms,
            });
        }
    }

    let mut recent = Vec::new();
    {
        let mut select = tx.prepare_cached(SELECT_RECENT_ERRORS).map_err(db(OP))?;
        let rows = select
            .query_map(params![device, reason, limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                ))
            })
            .map_err(db(OP))?;
        for row in rows {
            let (at_ms, device, topic, field, value, reason, detail) = row.map_err(db(OP))?;
            recent.push(IngestErrorRecord {
                at_ms,
                device: device
                    .as_deref()
                    .map(|device| device_from_sql(OP, device))
                    .transpose()?,
                topic,
                field,
                value,
                reason: reason_from_sql(OP, &reason)?,
                detail,
            });
        }
    }
    tx.commit().map_err(db(OP))?;
    Ok(IngestErrorReport { counts, recent })
}

/// Converts a `device_id` of the counters table, where the empty string
/// means "no device" because a primary key column cannot be NULL.
fn optional_device(operation: &'static str, value: &str) -> Result<Option<DeviceId>, StoreError> {
    if value.is_empty() {
        return Ok(None);
    }
    device_from_sql(operation, value).map(Some)
}

pub(super) fn stats(conn: &Connection) -> Result<StoreStats, StoreError> {
    const OP: &str = "stats";
    let (devices, series, readings) = conn
        .query_row(SELECT_STATS, [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .map_err(db(OP))?;
    Ok(StoreStats {
        devices: count_from_sql(OP, "count(devices)", devices)?,
        series: count_from_sql(OP, "count(series)", series)?,
        readings: count_from_sql(OP, "readings count", readings)?,
    })
}

pub(super) fn count_users(conn: &Connection) -> Result<u64, StoreError> {
    const OP: &str = "count_users";
    let count: i64 = conn
        .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
        .map_err(db(OP))?;
    count_from_sql(OP, "count(users)", count)
}

/// Columns id, username, password_hash, role and must_change_password of a `users` row.
type UserRow = (i64, String, String, String, bool);

fn user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn user_from_row(operation: &'static str, row: UserRow) -> Result<User, StoreError> {
    let (id, username, password_hash, role, must_change_password) = row;
    Ok(User {
        id,
        username,
        password_hash,
        role: role_from_sql(operation, &role)?,
        must_change_password,
    })
}

/// Finds a user by name; names compare case-insensitively for ASCII letters.
pub(super) fn user_by_name(conn: &Connection, username: &str) -> Result<Option<User>, StoreError> {
    const OP: &str = "user_by_name";
    let row = conn
        .prepare_cached(SELECT_USER_BY_NAME)
        .and_then(|mut select| select.query_row([username], user_row).optional())
        .map_err(db(OP))?;
    row.map(|row| user_from_row(OP, row)).transpose()
}

pub(super) fn user_by_id(
    conn: &Connection,
    operation: &'static str,
    id: i64,
) -> Result<Option<User>, StoreError> {
    let row = conn
        .prepare_cached(SELECT_USER_BY_ID)
        .and_then(|mut select| select.query_row([id], user_row).optional())
        .map_err(db(operation))?;
    row.map(|row| user_from_row(operation, row)).transpose()
}

pub(super) fn session_user(
    conn: &Connection,
    token_hash: &str,
    now_ms: TimestampMs,
) -> Result<Option<User>, StoreError> {
    const OP: &str = "session_user";
    let row = conn
        .prepare_cached(SELECT_SESSION_USER)
        .and_then(|mut select| {
            select
                .query_row(params![token_hash, now_ms], user_row)
                .optional()
        })
        .map_err(db(OP))?;
    row.map(|row| user_from_row(OP, row)).transpose()
}

pub(super) fn list_users(conn: &Connection) -> Result<Vec<User>, StoreError> {
    const OP: &str = "list_users";
    let rows = conn
        .prepare_cached(SELECT_USERS)
        .and_then(|mut select| select.query_map([], user_row)?.collect::<Result<Vec<_>, _>>())
        .map_err(db(OP))?;
    rows.into_iter().map(|row| user_from_row(OP, row)).collect()
}

fn site_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Site> {
    Ok(Site {
        id: row.get(0)?,
        name: row.get(1)?,
        time_zone: row.get(2)?,
        currency: row.get(3)?,
        tariff_json: row.get(4)?,
        co2_g_per_kwh: row.get(5)?,
    })
}

/// Lists every site, or only the one with id `only`.
pub(super) fn sites(conn: &Connection, only: Option<&str>) -> Result<Vec<Site>, StoreError> {
    conn.prepare_cached(SELECT_SITES)
        .and_then(|mut select| select.query_map([only], site_row)?.collect())
        .map_err(db("sites"))
}

pub(super) fn sites_of_user(conn: &Connection, user_id: i64) -> Result<Vec<Site>, StoreError> {
    conn.prepare_cached(SELECT_SITES_OF_USER)
        .and_then(|mut select| select.query_map([user_id], site_row)?.collect())
        .map_err(db("sites_of_user"))
}

pub(super) fn site_devices(conn: &Connection, site_id: &str) -> Result<Vec<DeviceId>, StoreError> {
    const OP: &str = "site_devices";
    let sql = if site_id == DEFAULT_SITE_ID {
        SELECT_UNASSIGNED_DEVICES
    } else {
        SELECT_SITE_DEVICES
    };
    let ids: Vec<String> = conn
        .prepare_cached(sql)
        .and_then(|mut select| select.query_map([site_id], |row| row.get(0))?.collect())
        .map_err(db(OP))?;
    ids.iter().map(|id| device_from_sql(OP, id)).collect()
}

pub(super) fn device_site(conn: &Connection, device: &DeviceId) -> Result<String, StoreError> {
    let site: Option<String> = conn
        .prepare_cached("SELECT site_id FROM device_sites WHERE device_id = ?1")
        .and_then(|mut select| select.query_row([device.as_str()], |row| row.get(0)).optional())
        .map_err(db("device_site"))?;
    Ok(site.unwrap_or_else(|| DEFAULT_SITE_ID.to_owned()))
}

// Device lists leave out a device whose `discovered_devices` row is not
// `approved`; a device that never announced itself has no row and is listed.
// `?1 IS NULL OR ...` makes one statement serve both "all devices" and "one
// device". A device asked for by id is returned whatever its discovery status.
const SELECT_DEVICES: &str = "
    SELECT id, first_seen_ms, last_seen_ms, online, last_seq, lost, duplicates, restarts
    FROM devices d
    WHERE (?1 IS NULL AND NOT EXISTS (SELECT 1 FROM discovered_devices h WHERE h.device_id = d.id AND h.status <> 'approved'))
       OR id = ?1
    ORDER BY id";

// `latest` does not cover staged readings until they are merged, so the
// newest staged reading of each series competes with it. With a single
// `max()`, SQLite takes the bare column `value` from the row with the
// maximum (SQLite documentation, "Bare columns in an aggregate query").
const SELECT_LATEST: &str = "
    WITH wanted AS (SELECT id, device_id, channel, metric FROM series WHERE ?1 IS NULL OR device_id = ?1),
    candidates AS (
        SELECT series_id, ts_ms, value FROM latest WHERE series_id IN (SELECT id FROM wanted)
        UNION ALL
        SELECT series_id, max(ts_ms), value FROM staged_readings
        WHERE series_id IN (SELECT id FROM wanted) GROUP BY series_id
    ),
    newest AS (SELECT series_id, max(ts_ms) AS ts_ms, value FROM candidates GROUP BY series_id)
    SELECT w.device_id, w.channel, w.metric, n.ts_ms, n.value
    FROM newest n JOIN wanted w ON w.id = n.series_id
    ORDER BY w.device_id, w.channel, w.metric";

const SELECT_ERROR_TOTALS: &str = "
    SELECT device_id, sum(count) FROM ingest_error_counts
    WHERE device_id <> '' AND (?1 IS NULL OR device_id = ?1)
    GROUP BY device_id";

const SELECT_ERROR_COUNTS: &str = "
    SELECT device_id, reason, count, last_at_ms FROM ingest_error_counts
    WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR reason = ?2)
    ORDER BY device_id, reason";

// At most MAX_INGEST_ERRORS rows exist, so scanning them without an index is cheap.
const SELECT_RECENT_ERRORS: &str = "
    SELECT at_ms, device_id, topic, field, value, reason, detail FROM ingest_errors
    WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR reason = ?2)
    ORDER BY id DESC LIMIT ?3";

// `reading_count` does not cover staged readings until they are merged.
const SELECT_STATS: &str = "
    SELECT (SELECT count(*) FROM devices),
           (SELECT count(*) FROM series),
           (SELECT coalesce(sum(reading_count), 0) FROM series) + (SELECT count(*) FROM staged_readings)";

const SELECT_USER_BY_NAME: &str =
    "SELECT id, username, password_hash, role, must_change_password FROM users WHERE username = ?1";

const SELECT_USER_BY_ID: &str =
    "SELECT id, username, password_hash, role, must_change_password FROM users WHERE id = ?1";

const SELECT_SESSION_USER: &str = "
    SELECT u.id, u.username, u.password_hash, u.role, u.must_change_password
    FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.token_hash = ?1 AND s.expires_ms > ?2";

const SELECT_USERS: &str =
    "SELECT id, username, password_hash, role, must_change_password FROM users ORDER BY id";

const SELECT_SITES: &str = "
    SELECT id, name, time_zone, currency, tariff_json, co2_g_per_kwh
    FROM sites WHERE ?1 IS NULL OR id = ?1 ORDER BY id";

const SELECT_SITES_OF_USER: &str = "
    SELECT s.id, s.name, s.time_zone, s.currency, s.tariff_json, s.co2_g_per_kwh
    FROM sites s JOIN site_owners o ON o.site_id = s.id
    WHERE o.user_id = ?1 ORDER BY s.id";

const SELECT_SITE_DEVICES: &str = "
    SELECT device_id FROM device_sites a
    WHERE site_id = ?1
      AND NOT EXISTS (SELECT 1 FROM discovered_devices h WHERE h.device_id = a.device_id AND h.status <> 'approved')
    ORDER BY device_id";

// `?1` is always 'default' here; it keeps both statements on one parameter list.
const SELECT_UNASSIGNED_DEVICES: &str = "
    SELECT d.id FROM devices d
    WHERE NOT EXISTS (SELECT 1 FROM device_sites a WHERE a.device_id = d.id AND a.site_id <> ?1)
      AND NOT EXISTS (SELECT 1 FROM discovered_devices h WHERE h.device_id = d.id AND h.status <> 'approved')
    ORDER BY d.id";

pub(super) fn discovered_devices(conn: &Connection, status: Option<DiscoveryStatus>) -> Result<Vec<DiscoveredDevice>, StoreError> {
    const OP: &str = "discovered_devices";
    let mut select = conn
        .prepare_cached(
            "SELECT device_id, format, name, model, payload, first_seen_ms, last_seen_ms, status
             FROM discovered_devices WHERE ?1 IS NULL OR status = ?1 ORDER BY device_id",
        )
        .map_err(db(OP))?;
    let rows = select
        .query_map([status.map(DiscoveryStatus::code)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, String>(7)?,
            ))
        })
        .map_err(db(OP))?;
    let mut devices = Vec::new();
    for row in rows {
        let (device, format, name, model, payload, first_seen_ms, last_seen_ms, status) = row.map_err(db(OP))?;
        let device = device_from_sql(OP, &device)?;
        let status = DiscoveryStatus::from_code(&status)
            .ok_or_else(|| StoreError::Corrupt { operation: OP, detail: format!("unknown discovery status {status:?}") })?;
        devices.push(DiscoveredDevice { device, format, name, model, payload, first_seen_ms, last_seen_ms, status });
    }
    Ok(devices)
}

pub(super) fn device_commands(conn: &Connection, device: &DeviceId, limit: u32) -> Result<Vec<CommandRecord>, StoreError> {
    const OP: &str = "device_commands";
    let mut select = conn
        .prepare_cached(
            "SELECT id, device_id, username, action, request_json, created_ms, status, ack_json, acked_ms
             FROM device_commands WHERE device_id = ?1 ORDER BY created_ms DESC, id DESC LIMIT ?2",
        )
        .map_err(db(OP))?;
    let rows = select
        .query_map(params![device.as_str(), limit], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<i64>>(8)?,
            ))
        })
        .map_err(db(OP))?;
    let mut commands = Vec::new();
    for row in rows {
        let (id, device_id, username, action, request_json, created_ms, status, ack_json, acked_ms) = row.map_err(db(OP))?;
        let corrupt = |detail: String| StoreError::Corrupt { operation: OP, detail };
        let device = DeviceId::parse(&device_id).map_err(|error| corrupt(error.to_string()))?;
        let status = CommandStatus::from_code(&status).ok_or_else(|| corrupt(format!("unknown command status {status:?}")))?;
        commands.push(CommandRecord { id, device, username, action, request_json, created_ms, status, ack_json, acked_ms });
    }
    Ok(commands)
}
