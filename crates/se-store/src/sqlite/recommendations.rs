//! The `recommendations` table (schema version 7).

use std::str::FromStr;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use se_core::TimestampMs;
use rust_decimal::Decimal;

use super::convert::{channel_from_sql, db, device_from_sql};
use super::write::Writer;
use crate::{KeptChannel, NewRecommendation, RecommendationDecision, RecommendationStatus, RecommendationUpsert, StoreError, StoredRecommendation, UpsertOutcome, UsageSpan};

const COLUMNS: &str = "id, site_id, device_id, channel, action_type, action_json, kwh_per_month, money_per_month, currency,
    status, created_ms, updated_ms, decided_ms, decided_by, baseline_json";

pub(super) fn site_recommendations(conn: &Connection, site_id: &str, status: Option<RecommendationStatus>) -> Result<Vec<StoredRecommendation>, StoreError> {
    const OP: &str = "site_recommendations";
    let sql = format!("SELECT {COLUMNS} FROM recommendations WHERE site_id = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id");
    let mut select = conn.prepare_cached(&sql).map_err(db(OP))?;
    let rows = select.query_map(params![site_id, status.map(RecommendationStatus::code)], RawRow::read).map_err(db(OP))?;
    let mut found = Vec::new();
    for row in rows {
        found.push(row.map_err(db(OP))?.convert(OP)?);
    }
    Ok(found)
}

pub(super) fn recommendation(conn: &Connection, id: i64) -> Result<Option<StoredRecommendation>, StoreError> {
    const OP: &str = "recommendation";
    let sql = format!("SELECT {COLUMNS} FROM recommendations WHERE id = ?1");
    let row = conn
        .prepare_cached(&sql)
        .and_then(|mut select| select.query_row([id], RawRow::read).optional())
        .map_err(db(OP))?;
    row.map(|row| row.convert(OP)).transpose()
}

impl Writer {
    /// Refreshes the open recommendation with the same key, or inserts one
    /// unless a recommendation with that key was already decided.
    pub(super) fn upsert_recommendation(&mut self, new: &NewRecommendation) -> Result<RecommendationUpsert, StoreError> {
        const OP: &str = "upsert_recommendation";
        let tx = self.conn().transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db(OP))?;
        let site_exists = tx
            .prepare_cached("SELECT 1 FROM sites WHERE id = ?1")
            .and_then(|mut select| select.exists([&new.site_id]))
            .map_err(db(OP))?;
        if !site_exists {
            return Err(StoreError::NotFound { what: format!("site {:?}", new.site_id) });
        }

        let upsert = match existing_with_key(&tx, new)? {
            Some((id, status)) if status == RecommendationStatus::Open.code() => {
                tx.prepare_cached(
                    "UPDATE recommendations SET action_json = ?2, kwh_per_month = ?3, money_per_month = ?4, currency = ?5, updated_ms = ?6
                     WHERE id = ?1",
                )
                .and_then(|mut update| {
                    update.execute(params![id, new.action_json, new.kwh_per_month, new.money_per_month.map(|money| money.to_string()), new.currency, new.computed_ms])
                })
                .map_err(db(OP))?;
                RecommendationUpsert { id, outcome: UpsertOutcome::Refreshed }
            }
            // Applied or dismissed: the operator's decision is kept.
            Some((id, status)) if status != RecommendationStatus::Withdrawn.code() => RecommendationUpsert { id, outcome: UpsertOutcome::Decided },
            // None, or withdrawn by a run: the readings support it again.
            _ => {
                tx.prepare_cached(
                    "INSERT INTO recommendations (site_id, device_id, channel, action_type, action_json, kwh_per_month, money_per_month, currency,
                         status, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?9)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        new.site_id,
                        new.device.as_str(),
                        new.channel.as_str(),
                        new.action_type,
                        new.action_json,
                        new.kwh_per_month,
                        new.money_per_month.map(|money| money.to_string()),
                        new.currency,
                        new.computed_ms
                    ])
                })
                .map_err(db(OP))?;
                RecommendationUpsert { id: tx.last_insert_rowid(), outcome: UpsertOutcome::Created }
            }
        };
        tx.commit().map_err(db(OP))?;
        Ok(upsert)
    }

    /// Sets an open recommendation to applied or dismissed. Fails with
    /// [`StoreError::NotFound`] for an unknown id and [`StoreError::Invalid`]
    /// when it is no longer open.
    pub(super) fn decide_recommendation(&mut self, id: i64, decision: &RecommendationDecision) -> Result<(), StoreError> {
        const OP: &str = "decide_recommendation";
        let (at_ms, by, baseline) = match decision {
            RecommendationDecision::Applied { at_ms, by, baseline } => (*at_ms, by, baseline.as_ref()),
            RecommendationDecision::Dismissed { at_ms, by } => (*at_ms, by, None),
        };
        let baseline_json = baseline
            .map(serde_json::to_string)
            .transpose()
            .map_err(|error| StoreError::Invalid(format!("the baseline of recommendation {id} cannot be stored: {error}")))?;

        let tx = self.conn().transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db(OP))?;
        let current: Option<String> = tx
            .prepare_cached("SELECT status FROM recommendations WHERE id = ?1")
            .and_then(|mut select| select.query_row([id], |row| row.get(0)).optional())
            .map_err(db(OP))?;
        match current.as_deref() {
            None => return Err(StoreError::NotFound { what: format!("recommendation {id}") }),
            Some(status) if status != RecommendationStatus::Open.code() => {
                return Err(StoreError::Invalid(format!(
                    "recommendation {id} is already {status}; only an open recommendation can be applied or dismissed"
                )));
            }
            Some(_) => {}
        }
        tx.prepare_cached("UPDATE recommendations SET status = ?2, decided_ms = ?3, decided_by = ?4, baseline_json = ?5 WHERE id = ?1")
            .and_then(|mut update| update.execute(params![id, decision.status().code(), at_ms, by, baseline_json]))
            .map_err(db(OP))?;
        tx.commit().map_err(db(OP))
    }

    /// Sets the open recommendations of `site_id` not refreshed at `run_ms`
    /// to withdrawn, except those of the channels in `keep_open`, and returns their ids.
    pub(super) fn withdraw_recommendations(&mut self, site_id: &str, run_ms: TimestampMs, keep_open: &[KeptChannel]) -> Result<Vec<i64>, StoreError> {
        const OP: &str = "withdraw_recommendations";
        let tx = self.conn().transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db(OP))?;
        let stale: Vec<(i64, String, String)> = tx
            .prepare_cached("SELECT id, device_id, channel FROM recommendations WHERE site_id = ?1 AND status = 'open' AND updated_ms < ?2 ORDER BY id")
            .and_then(|mut select| select.query_map(params![site_id, run_ms], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect())
            .map_err(db(OP))?;
        let mut withdrawn = Vec::new();
        {
            let mut update = tx
                .prepare_cached("UPDATE recommendations SET status = 'withdrawn', decided_ms = ?2, decided_by = NULL WHERE id = ?1")
                .map_err(db(OP))?;
            for (id, device, channel) in stale {
                if keep_open.iter().any(|open| open.device.as_str() == device && open.channel.as_str() == channel) {
                    continue;
                }
                update.execute(params![id, run_ms]).map_err(db(OP))?;
                withdrawn.push(id);
            }
        }
        tx.commit().map_err(db(OP))?;
        Ok(withdrawn)
    }
}

/// Id and status of the recommendation with the key of `new`: the open one
/// if there is one, else the newest decided or withdrawn one.
fn existing_with_key(tx: &Transaction<'_>, new: &NewRecommendation) -> Result<Option<(i64, String)>, StoreError> {
    tx.prepare_cached(
        "SELECT id, status FROM recommendations
         WHERE site_id = ?1 AND device_id = ?2 AND channel = ?3 AND action_type = ?4
         ORDER BY status = 'open' DESC, id DESC LIMIT 1",
    )
    .and_then(|mut select| {
        select
            .query_row(params![new.site_id, new.device.as_str(), new.channel.as_str(), new.action_type], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
    })
    .map_err(db("upsert_recommendation"))
}

/// One row as SQLite returns it, converted to domain types afterwards so
/// that a bad value becomes [`StoreError::Corrupt`] with its column.
struct RawRow {
    id: i64,
    site_id: String,
    device: String,
    channel: String,
    action_type: String,
    action_json: String,
    kwh_per_month: f64,
    money_per_month: Option<String>,
    currency: String,
    status: String,
    created_ms: i64,
    updated_ms: i64,
    decided_ms: Option<i64>,
    decided_by: Option<String>,
    baseline_json: Option<String>,
}

impl RawRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            id: row.get(0)?,
            site_id: row.get(1)?,
            device: row.get(2)?,
            channel: row.get(3)?,
            action_type: row.get(4)?,
            action_json: row.get(5)?,
            kwh_per_month: row.get(6)?,
            money_per_month: row.get(7)?,
            currency: row.get(8)?,
            status: row.get(9)?,
            created_ms: row.get(10)?,
            updated_ms: row.get(11)?,
            decided_ms: row.get(12)?,
            decided_by: row.get(13)?,
            baseline_json: row.get(14)?,
        })
    }

    fn convert(self, operation: &'static str) -> Result<StoredRecommendation, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt { operation, detail };
        let status = RecommendationStatus::from_code(&self.status).ok_or_else(|| corrupt(format!("unknown recommendation status {:?}", self.status)))?;
        let money_per_month = self
            .money_per_month
            .map(|text| Decimal::from_str(&text).map_err(|_| corrupt(format!("recommendation {} has the invalid amount {text:?}", self.id))))
            .transpose()?;
        let baseline = self
            .baseline_json
            .map(|json| serde_json::from_str::<UsageSpan>(&json).map_err(|error| corrupt(format!("recommendation {} has an unreadable baseline: {error}", self.id))))
            .transpose()?;
        Ok(StoredRecommendation {
            id: self.id,
            site_id: self.site_id,
            device: device_from_sql(operation, &self.device)?,
            channel: channel_from_sql(operation, &self.channel)?,
            action_type: self.action_type,
            action_json: self.action_json,
            kwh_per_month: self.kwh_per_month,
            money_per_month,
            currency: self.currency,
            status,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            decided_ms: self.decided_ms,
            decided_by: self.decided_by,
            baseline,
        })
    }
}
