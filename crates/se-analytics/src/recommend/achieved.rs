//! The saving achieved once a recommendation is applied, from energy
//! measured before and after.

use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use se_energy::Decimal;

use super::{invalid, RecommendError, SavingEstimate, HOURS_PER_MONTH};

/// Energy a device used over a span, and optionally its cost and its work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub kwh: f64,
    /// Length of the span, in milliseconds.
    pub duration_ms: i64,
    /// Cost of the span under the site's tariff, when known.
    pub cost: Option<Decimal>,
    /// Work done in the span, such as megahashes. With work on both sides, the
    /// saving is measured per unit of work, so mining less is not counted as saving.
    pub work: Option<f64>,
}

/// Saving measured after applying a recommendation, per month of 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AchievedSaving {
    pub kwh_per_month: f64,
    /// Present when both spans have a cost; rounded to 4 decimals.
    pub money_per_month: Option<Decimal>,
    /// Achieved kWh over estimated kWh; `None` when the estimate saves no energy (a shift).
    pub kwh_share_of_estimate: Option<f64>,
    /// Achieved money over estimated money; `None` without costs or without an estimated saving.
    pub money_share_of_estimate: Option<f64>,
}

/// Measures the monthly saving between `before` and `after`. Each span is
/// scaled to a 30-day month. With work on both sides, the energy and cost
/// per unit of work of each span are applied to the work rate after.
pub fn measure_saving(before: &Usage, after: &Usage, estimate: &SavingEstimate) -> Result<AchievedSaving, RecommendError> {
    for (name, usage) in [("usage before", before), ("usage after", after)] {
        if usage.duration_ms <= 0 {
            return Err(invalid(name, format!("duration {} ms", usage.duration_ms), "a span longer than 0 ms"));
        }
        if !(usage.kwh.is_finite() && usage.kwh >= 0.0) {
            return Err(invalid(name, format!("{} kWh", usage.kwh), "a finite energy of 0 kWh or more"));
        }
        if let Some(work) = usage.work {
            if !(work.is_finite() && work > 0.0) {
                return Err(invalid(name, format!("work {work}"), "work above 0, or no work"));
            }
        }
    }
    let month_ms = HOURS_PER_MONTH * 3_600_000.0;
    let per_month = |usage: &Usage| month_ms / usage.duration_ms as f64;

    // Factors that turn each span's kWh and cost into a monthly figure.
    let (factor_before, factor_after) = match (before.work, after.work) {
        (Some(work_before), Some(work_after)) => {
            let work_per_month = work_after * per_month(after);
            (work_per_month / work_before, work_per_month / work_after)
        }
        _ => (per_month(before), per_month(after)),
    };
    let kwh_per_month = before.kwh * factor_before - after.kwh * factor_after;

    let money_per_month = match (before.cost, after.cost) {
        (Some(cost_before), Some(cost_after)) => {
            let scale = |value: f64| Decimal::try_from(value).map_err(|_| invalid("scale factor", value, "a span short enough to scale to a month"));
            Some((cost_before * scale(factor_before)? - cost_after * scale(factor_after)?).round_dp(4))
        }
        _ => None,
    };

    let kwh_share_of_estimate = (estimate.kwh_per_month.abs() > 1e-9).then(|| kwh_per_month / estimate.kwh_per_month);
    let money_share_of_estimate = match money_per_month {
        Some(money) if !estimate.money_per_month.is_zero() => {
            (money / estimate.money_per_month).to_f64()
        }
        _ => None,
    };
    Ok(AchievedSaving { kwh_per_month, money_per_month, kwh_share_of_estimate, money_share_of_estimate })
}
