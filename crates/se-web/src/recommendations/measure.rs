//! Measured usage of a recommendation's channel before and after it was
//! applied, and the achieved saving from them.
//!
//! Usage comes from the hourly mean power of the channel: an hour's mean in
//! W is its energy in Wh. Hours without readings count neither as energy
//! nor as time, so gaps do not look like savings. Spans run on UTC hour
//! boundaries.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use se_analytics::recommend::{measure_saving, Action, AchievedSaving, SavingEstimate, Usage};
use se_core::{Lang, Metric, TimestampMs};
use se_energy::{EnergyCharge, EnergyPiece, Tariff};
use se_store::{SeriesQuery, Store, StoredRecommendation, UsageSpan};
use serde::Serialize;

use crate::error::ApiError;
use crate::i18n::translate;

pub(crate) const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Days before applying that form the baseline, as long as the history the
/// recommenders read by default.
pub(crate) const BASELINE_DAYS: i64 = 7;

/// Days of readings needed after applying before the saving is measured:
/// one day is dominated by that day's workload.
pub(crate) const MIN_MEASURED_DAYS: i64 = 3;

/// The achieved saving of an applied recommendation, per 30-day month.
#[derive(Debug, Serialize)]
pub(crate) struct AchievedView {
    #[serde(flatten)]
    saving: AchievedSaving,
    /// Span measured after applying, `[from_ms, to_ms)`.
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    /// Days with readings in that span and in the baseline.
    measured_days: f64,
    baseline_days: f64,
    /// Whether energy was compared per megahash, so mining less does not count as saving.
    per_unit_of_work: bool,
}

/// Reason an applied recommendation has no achieved saving yet, in the request language.
#[derive(Debug, Serialize)]
pub(crate) struct NoteView {
    code: &'static str,
    message: String,
}

impl NoteView {
    fn new(code: &'static str, lang: Lang, args: &[(&str, String)]) -> Self {
        Self { code, message: translate(lang, &format!("recommendations.note_{code}"), args) }
    }
}

/// Start of the UTC hour that contains `ms`.
pub(crate) fn hour_floor(ms: TimestampMs) -> TimestampMs {
    ms - ms.rem_euclid(HOUR_MS)
}

fn hour_ceil(ms: TimestampMs) -> TimestampMs {
    let floor = hour_floor(ms);
    if floor == ms {
        ms
    } else {
        floor + HOUR_MS
    }
}

/// Whether the saving of an action is measured per unit of work: a power cap
/// or a serviced GPU must keep mining, so its energy per megahash counts.
fn counts_work(action: &Action) -> bool {
    matches!(action, Action::SetPowerLimit { .. } | Action::ServiceGpu { .. })
}

/// Returns the tariff limited to its energy charge, which applies hour by
/// hour to a single device. `None` for tiered prices, whose price depends on the rest
/// of the site's monthly energy.
fn energy_charge_only(tariff: &Tariff) -> Option<Tariff> {
    match tariff.energy {
        EnergyCharge::Flat { .. } | EnergyCharge::TimeOfUse { .. } => Some(Tariff { demand: None, fixed_per_month: None, ..tariff.clone() }),
        EnergyCharge::Tiered { .. } => None,
    }
}

/// Measures the usage of the recommendation's channel over `[from_ms, to_ms)`,
/// both on hour boundaries. `None` when no hour of the span has readings.
pub(crate) async fn usage_span(
    store: &dyn Store,
    recommendation: &StoredRecommendation,
    action: &Action,
    tariff: Option<&Tariff>,
    zone: &TimeZone,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
) -> Result<Option<UsageSpan>, ApiError> {
    if to_ms <= from_ms {
        return Ok(None);
    }
    let power = hourly_means(store, recommendation, Metric::Power, from_ms, to_ms).await?;
    let hashrate = if counts_work(action) { hourly_means(store, recommendation, Metric::Hashrate, from_ms, to_ms).await? } else { Vec::new() };

    // With work counted, only hours that have both power and hashrate count.
    let hashrate: HashMap<TimestampMs, f64> = hashrate.into_iter().collect();
    let paired: Vec<(TimestampMs, f64, f64)> = power.iter().filter_map(|(ts_ms, watts)| hashrate.get(ts_ms).map(|mhs| (*ts_ms, *watts, *mhs))).collect();
    let work_mh: f64 = paired.iter().map(|(_, _, mhs)| mhs * 3_600.0).sum();
    let (hours, work_mh): (Vec<(TimestampMs, f64)>, Option<f64>) = if work_mh > 0.0 {
        (paired.iter().map(|(ts_ms, watts, _)| (*ts_ms, *watts)).collect(), Some(work_mh))
    } else {
        (power, None)
    };
    if hours.is_empty() {
        return Ok(None);
    }

    let wh: f64 = hours.iter().map(|(_, watts)| watts).sum();
    let cost = match tariff.and_then(energy_charge_only) {
        Some(tariff) => {
            let pieces: Vec<EnergyPiece> = hours.iter().map(|(ts_ms, watts)| EnergyPiece { start_ms: *ts_ms, end_ms: ts_ms + HOUR_MS, wh: *watts }).collect();
            Some(se_energy::cost(&pieces, &tariff, zone).map_err(|error| ApiError::Energy { detail: error.to_string() })?.total)
        }
        None => None,
    };
    Ok(Some(UsageSpan { from_ms, to_ms, kwh: wh / 1000.0, covered_ms: hours.len() as i64 * HOUR_MS, cost, work_mh }))
}

/// Hourly means of one series of the recommendation's channel, as (hour start, mean).
async fn hourly_means(store: &dyn Store, recommendation: &StoredRecommendation, metric: Metric, from_ms: TimestampMs, to_ms: TimestampMs) -> Result<Vec<(TimestampMs, f64)>, ApiError> {
    let hours = u32::try_from((to_ms - from_ms) / HOUR_MS).unwrap_or(u32::MAX).max(1);
    let query = SeriesQuery { device: recommendation.device.clone(), channel: recommendation.channel.clone(), metric, from_ms, to_ms, max_points: hours };
    let points = store.query_series(&query).await?;
    // NOTE: negative means, from a meter that exports, are summed as they are.
    Ok(points.into_iter().filter(|point| point.mean.is_finite()).map(|point| (point.ts_ms, point.mean)).collect())
}

/// Returns the span before applying at `applied_ms` that is kept as its baseline.
pub(crate) fn baseline_bounds(applied_ms: TimestampMs) -> (TimestampMs, TimestampMs) {
    let to_ms = hour_floor(applied_ms);
    (to_ms - BASELINE_DAYS * DAY_MS, to_ms)
}

/// Formats a number of days with one decimal, with a decimal comma in French.
fn days_text(ms: i64, lang: Lang) -> String {
    let text = format!("{:.1}", ms as f64 / DAY_MS as f64);
    match lang {
        Lang::En => text,
        Lang::Fr => text.replace('.', ","),
    }
}

/// Measures the achieved saving of an applied recommendation so far, or
/// returns a note with the reason it cannot be measured yet.
pub(crate) async fn achieved(
    store: &dyn Store,
    recommendation: &StoredRecommendation,
    action: &Action,
    tariff: Option<&Tariff>,
    zone: &TimeZone,
    now_ms: TimestampMs,
    lang: Lang,
) -> Result<Result<AchievedView, NoteView>, ApiError> {
    let min_days = MIN_MEASURED_DAYS.to_string();
    if matches!(action, Action::CorrectPowerFactor { .. }) {
        return Ok(Err(NoteView::new("not_measurable", lang, &[])));
    }
    let Some(baseline) = &recommendation.baseline else {
        return Ok(Err(NoteView::new("no_baseline", lang, &[("days", BASELINE_DAYS.to_string())])));
    };
    let applied_ms = recommendation.decided_ms.unwrap_or(now_ms);
    let from_ms = hour_ceil(applied_ms);
    let to_ms = hour_floor(now_ms);
    let elapsed_ms = (to_ms - from_ms).max(0);
    if elapsed_ms < MIN_MEASURED_DAYS * DAY_MS {
        return Ok(Err(NoteView::new("too_early", lang, &[("days", days_text(elapsed_ms, lang)), ("min", min_days)])));
    }
    let after = usage_span(store, recommendation, action, tariff, zone, from_ms, to_ms).await?;
    let covered_ms = after.as_ref().map_or(0, |span| span.covered_ms);
    let Some(after) = after.filter(|_| covered_ms >= MIN_MEASURED_DAYS * DAY_MS) else {
        return Ok(Err(NoteView::new("few_readings", lang, &[("days", days_text(covered_ms, lang)), ("min", min_days)])));
    };

    let estimate = SavingEstimate {
        kwh_per_month: recommendation.kwh_per_month,
        money_per_month: recommendation.money_per_month.unwrap_or(Decimal::ZERO),
        currency: recommendation.currency.clone(),
    };
    let before_usage = usage_of(baseline);
    let after_usage = usage_of(&after);
    let per_unit_of_work = before_usage.work.is_some() && after_usage.work.is_some();
    match measure_saving(&before_usage, &after_usage, &estimate) {
        Ok(saving) => Ok(Ok(AchievedView {
            saving,
            from_ms,
            to_ms,
            measured_days: after.covered_ms as f64 / DAY_MS as f64,
            baseline_days: baseline.covered_ms as f64 / DAY_MS as f64,
            per_unit_of_work,
        })),
        Err(error) => {
            tracing::warn!(recommendation_id = recommendation.id, %error, "achieved saving could not be measured");
            Ok(Err(NoteView::new("measure_failed", lang, &[("detail", error.message(lang))])))
        }
    }
}

fn usage_of(span: &UsageSpan) -> Usage {
    Usage { kwh: span.kwh, duration_ms: span.covered_ms, cost: span.cost, work: span.work_mh }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_round_to_boundaries() {
        assert_eq!(hour_floor(7_250_000), 7_200_000);
        assert_eq!(hour_ceil(7_250_000), 10_800_000);
        assert_eq!(hour_ceil(7_200_000), 7_200_000);
    }

    #[test]
    fn baseline_is_seven_days_before() {
        let (from_ms, to_ms) = baseline_bounds(30 * DAY_MS + 1_800_000);
        assert_eq!(to_ms, 30 * DAY_MS);
        assert_eq!(from_ms, 23 * DAY_MS);
    }

    #[test]
    fn tiered_tariff_is_not_priced_per_device() {
        let tiered = Tariff::from_json(r#"{"currency": "TND", "energy": {"type": "tiered", "blocks": [{"up_to_kwh": null, "price_per_kwh": "0.2"}]}}"#).unwrap();
        let flat = Tariff::from_json(r#"{"currency": "EUR", "fixed_per_month": "12", "energy": {"type": "flat", "price_per_kwh": "0.2"}}"#).unwrap();
        assert!(energy_charge_only(&tiered).is_none());
        let energy_only = energy_charge_only(&flat).unwrap();
        assert_eq!(energy_only.fixed_per_month, None);
        assert_eq!(energy_only.energy, flat.energy);
    }

    #[test]
    fn days_use_decimal_comma_in_french() {
        assert_eq!(days_text(DAY_MS + DAY_MS / 2, Lang::En), "1.5");
        assert_eq!(days_text(DAY_MS + DAY_MS / 2, Lang::Fr), "1,5");
    }
}
