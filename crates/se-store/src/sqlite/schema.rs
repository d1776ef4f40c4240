//! Schema migrations, tracked with `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};
use tracing::info;

use crate::StoreError;

/// Migration `i` (counted from 0) moves `user_version` from `i` to `i + 1`.
/// Append new migrations at the end and never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // Version 1: the initial schema, described in the module documentation of `sqlite`.
    r#"
    CREATE TABLE devices (
        id            TEXT PRIMARY KEY NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms  INTEGER NOT NULL,
        online        INTEGER NULL,
        last_seq      INTEGER NULL,
        lost          INTEGER NOT NULL DEFAULT 0,
        duplicates    INTEGER NOT NULL DEFAULT 0,
        restarts      INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE series (
        id            INTEGER PRIMARY KEY,
        device_id     TEXT NOT NULL REFERENCES devices(id),
        channel       TEXT NOT NULL,
        metric        TEXT NOT NULL,
        reading_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (device_id, channel, metric)
    );

    CREATE TABLE readings (
        series_id INTEGER NOT NULL,
        ts_ms     INTEGER NOT NULL,
        value     REAL NOT NULL,
        PRIMARY KEY (series_id, ts_ms)
    ) WITHOUT ROWID;

    CREATE TABLE latest (
        series_id INTEGER PRIMARY KEY,
        ts_ms     INTEGER NOT NULL,
        value     REAL NOT NULL
    );

    CREATE TABLE ingest_errors (
        id        INTEGER PRIMARY KEY,
        at_ms     INTEGER NOT NULL,
        device_id TEXT NULL,
        topic     TEXT NOT NULL,
        field     TEXT NULL,
        value     TEXT NOT NULL,
        reason    TEXT NOT NULL,
        detail    TEXT NOT NULL
    );

    CREATE TABLE ingest_error_counts (
        device_id  TEXT NOT NULL DEFAULT '',
        reason     TEXT NOT NULL,
        count      INTEGER NOT NULL,
        last_at_ms INTEGER NOT NULL,
        PRIMARY KEY (device_id, reason)
    ) WITHOUT ROWID;

    CREATE TABLE users (
        id                   INTEGER PRIMARY KEY,
        username             TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash        TEXT NOT NULL,
        role                 TEXT NOT NULL,
        must_change_password INTEGER NOT NULL,
        created_ms           INTEGER NOT NULL
    );

    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY NOT NULL,
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE INDEX sessions_by_expiry ON sessions (expires_ms);
    "#,
    // Version 2: sites, the site of each device and the owners of each site.
    // A device without a `device_sites` row belongs to the site `default`.
    r#"
    CREATE TABLE sites (
        id            TEXT PRIMARY KEY NOT NULL,
        name          TEXT NOT NULL,
        time_zone     TEXT NOT NULL,
        currency      TEXT NOT NULL,
        tariff_json   TEXT NULL,
        co2_g_per_kwh REAL NULL
    );

    INSERT INTO sites (id, name, time_zone, currency) VALUES ('default', 'Default site', 'UTC', 'EUR');

    CREATE TABLE device_sites (
        device_id TEXT PRIMARY KEY NOT NULL,
        site_id   TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE
    ) WITHOUT ROWID;

    CREATE INDEX device_sites_by_site ON device_sites (site_id);

    CREATE TABLE site_owners (
        site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (site_id, user_id)
    ) WITHOUT ROWID;

    CREATE INDEX site_owners_by_user ON site_owners (user_id);
    "#,
    // Version 3: the audit trail of device commands and their acknowledgements.
    r#"
    CREATE TABLE device_commands (
        id           TEXT PRIMARY KEY NOT NULL,
        device_id    TEXT NOT NULL,
        username     TEXT NOT NULL,
        action       TEXT NOT NULL,
        request_json TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        status       TEXT NOT NULL,
        ack_json     TEXT NULL,
        acked_ms     INTEGER NULL
    );

    CREATE INDEX device_commands_by_device ON device_commands (device_id, created_ms);
    "#,
    // Version 4: devices that announced themselves, and their review status.
    r#"
    CREATE TABLE discovered_devices (
        device_id     TEXT PRIMARY KEY NOT NULL,
        format        TEXT NOT NULL,
        name          TEXT NULL,
        model         TEXT NULL,
        payload       TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms  INTEGER NOT NULL,
        status        TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // Version 5: compressed blocks of raw readings and rollup pages. The
    // `readings` table becomes the head: readings land there in the ingest
    // transaction, and compaction moves them into `blocks`. Both tables keep
    // a rowid because their rows carry blobs of several kilobytes.
    r#"
    CREATE TABLE blocks (
        id        INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL,
        start_ms  INTEGER NOT NULL,
        end_ms    INTEGER NOT NULL,
        count     INTEGER NOT NULL,
        data      BLOB NOT NULL
    );

    CREATE UNIQUE INDEX blocks_by_series ON blocks (series_id, start_ms);

    CREATE TABLE rollup_pages (
        id        INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL,
        tier      INTEGER NOT NULL,
        page_ms   INTEGER NOT NULL,
        slots     INTEGER NOT NULL,
        readings  INTEGER NOT NULL,
        data      BLOB NOT NULL
    );

    CREATE UNIQUE INDEX rollup_pages_by_series ON rollup_pages (series_id, tier, page_ms);
    "#,
    // Version 6: the monthly budget and demand limit of each site, checked
    // against forecasts. NULL disables a check.
    r#"
    ALTER TABLE sites ADD COLUMN monthly_budget_kwh REAL NULL;
    ALTER TABLE sites ADD COLUMN monthly_budget_amount REAL NULL;
    ALTER TABLE sites ADD COLUMN demand_limit_kw REAL NULL;
    "#,
    // Version 7: savings recommendations and the operator's decision on each.
    // The partial unique index allows one open recommendation per site,
    // device, channel and action type.
    r#"
    CREATE TABLE recommendations (
        id              INTEGER PRIMARY KEY,
        site_id         TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        device_id       TEXT NOT NULL,
        channel         TEXT NOT NULL,
        action_type     TEXT NOT NULL,
        action_json     TEXT NOT NULL,
        kwh_per_month   REAL NOT NULL,
        money_per_month TEXT NULL,
        currency        TEXT NOT NULL,
        status          TEXT NOT NULL,
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL,
        decided_ms      INTEGER NULL,
        decided_by      TEXT NULL,
        baseline_json   TEXT NULL
    );

    CREATE INDEX recommendations_by_key ON recommendations (site_id, device_id, channel, action_type);

    CREATE UNIQUE INDEX recommendations_open ON recommendations (site_id, device_id, channel, action_type)
        WHERE status = 'open';
    "#,
    // Version 8: the staging table of the head. Readings of series with few
    // readings in a batch land here, and the writer merges them into
    // `readings` in bulk. A reading is in at most one of the two tables.
    r#"
    CREATE TABLE staged_readings (
        series_id INTEGER NOT NULL,
        ts_ms     INTEGER NOT NULL,
        value     REAL NOT NULL,
        PRIMARY KEY (series_id, ts_ms)
    ) WITHOUT ROWID;
    "#,
];

/// Highest schema version this binary can read and write.
pub(crate) const SUPPORTED_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads the schema version of an open database.
pub(super) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Rejects a database written by a newer binary, before anything is changed in it.
pub(super) fn check_not_newer(conn: &Connection, path: &str) -> Result<i64, StoreError> {
    let found = version(conn).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    if found > SUPPORTED_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SUPPORTED_VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::Corrupt {
            operation: "open",
            detail: format!(
                "{path} has the negative schema version {found}; restore the file from a backup"
            ),
        });
    }
    Ok(found)
}

/// Applies every migration above `current`, each in its own transaction
/// together with its `user_version` bump, so a crash leaves a known version.
pub(super) fn migrate(conn: &mut Connection, path: &str, current: i64) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let first_pending = usize::try_from(current).unwrap_or(usize::MAX);

    for (index, sql) in MIGRATIONS.iter().enumerate().skip(first_pending) {
        let target = index as i64 + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_error)?;
        tx.execute_batch(sql).map_err(open_error)?;
        tx.pragma_update(None, "user_version", target)
            .map_err(open_error)?;
        tx.commit().map_err(open_error)?;
        info!(
            path,
            schema_version = target,
            "applied store schema migration"
        );
    }
    Ok(())
}
