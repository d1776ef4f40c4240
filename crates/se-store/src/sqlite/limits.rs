//! The budget and demand limit columns of `sites` (schema version 6).

use rusqlite::{params, Connection, OptionalExtension};

use super::convert::db;
use super::write::Writer;
use crate::{SiteLimits, StoreError};

pub(super) fn site_limits(conn: &Connection, site_id: &str) -> Result<Option<SiteLimits>, StoreError> {
    conn.prepare_cached(SELECT_LIMITS)
        .and_then(|mut select| {
            select
                .query_row([site_id], |row| {
                    Ok(SiteLimits {
                        monthly_budget_kwh: row.get(0)?,
                        monthly_budget_amount: row.get(1)?,
                        demand_limit_kw: row.get(2)?,
                    })
                })
                .optional()
        })
        .map_err(db("site_limits"))
}

impl Writer {
    /// Returns whether the site exists.
    pub(super) fn set_site_limits(&mut self, site_id: &str, limits: &SiteLimits) -> Result<bool, StoreError> {
        let updated = self
            .conn()
            .prepare_cached(UPDATE_LIMITS)
            .and_then(|mut update| {
                update.execute(params![
                    site_id,
                    limits.monthly_budget_kwh,
                    limits.monthly_budget_amount,
                    limits.demand_limit_kw
                ])
            })
            .map_err(db("set_site_limits"))?;
        Ok(updated > 0)
    }
}

const SELECT_LIMITS: &str =
    "SELECT monthly_budget_kwh, monthly_budget_amount, demand_limit_kw FROM sites WHERE id = ?1";

const UPDATE_LIMITS: &str = "
    UPDATE sites SET monthly_budget_kwh = ?2, monthly_budget_amount = ?3, demand_limit_kw = ?4
    WHERE id = ?1";
