//! Cost and CO2 of energy under a tariff.
//!
//! [`cost`] is a pure function of stored energy pieces, a tariff and a time
//! zone, so a changed tariff is applied to past periods by calling it again
//! on their pieces. Energy is first summed per local slot: the demand
//! interval when the tariff has a demand charge, else the hour. A piece that
//! spans slots is split in proportion to time. Each slot is then priced by
//! its local start: month, day type and hour.
//!
//! Each line amount is rounded to the currency's minor unit (half away from
//! zero), and the total is the sum of the rounded lines, as on a bill.
//!
//! [`cost`] charges the fixed and demand charges of every month in full.
//! [`cost_of_span`] prices a report span such as one day: it charges the
//! share of the fixed charge that the span covers, and moves the demand
//! charge of a month the span covers only in part out of the total.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use se_core::TimestampMs;

use crate::calendar::{split_by_period, split_span, Period};
use crate::power::Window;
use crate::series::EnergyPiece;
use crate::tariff::{EnergyCharge, Tariff};
use crate::EnergyError;

/// Charge type of a cost line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostKind {
    Energy,
    Demand,
    Fixed,
}

/// One line of a bill, for one local calendar month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostLine {
    /// Local month, such as `2024-04`.
    pub month: String,
    pub kind: CostKind,
    /// `flat`, the time-of-use period name, `block N`, `peak demand` or `fixed`.
    pub label: String,
    pub quantity: Decimal,
    /// Unit of the quantity: `kWh`, `kW` or `month`.
    pub unit: &'static str,
    pub unit_price: Decimal,
    /// `quantity x unit_price`, rounded to the currency's minor unit.
    pub amount: Decimal,
}

/// Cost of a span of energy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostBreakdown {
    pub currency: String,
    /// Energy priced, in kWh, rounded to 6 decimals (mWh).
    pub energy_kwh: Decimal,
    /// Sum of the line amounts.
    pub total: Decimal,
    pub lines: Vec<CostLine>,
    /// Demand charges left out of `total`, one per local month that the
    /// priced span covers only in part (see [`cost_of_span`]). The quantity
    /// is the highest demand within the span. Always empty from [`cost`].
    pub excluded_demand: Vec<CostLine>,
    /// CO2 emitted, in kg, when the tariff has a grid factor.
    pub co2_kg: Option<f64>,
}

/// Energy and demand of one month, built slot by slot.
#[derive(Default)]
struct Month {
    /// Energy lines by label, in first-use order: (label, kWh, unit price).
    energy: Vec<(String, Decimal, Decimal)>,
    /// kWh already used this month, for tiered blocks.
    used_kwh: Decimal,
    peak_kw: Decimal,
}

impl Month {
    fn charge(&mut self, label: String, kwh: Decimal, price: Decimal) {
        match self.energy.iter_mut().find(|(existing, _, p)| *existing == label && *p == price) {
            Some(line) => line.1 += kwh,
            None => self.energy.push((label, kwh, price)),
        }
    }
}

/// Prices energy pieces (as returned in [`crate::EnergyResult::pieces`])
/// under `tariff`, with months, days and hours taken in `tz`.
pub fn cost(energy: &[EnergyPiece], tariff: &Tariff, tz: &TimeZone) -> Result<CostBreakdown, EnergyError> {
    tariff.validate()?;
    let slot_minutes = tariff.demand.as_ref().map_or(60, |demand| i64::from(demand.interval_minutes));
    let slots = energy_by_slot(energy, slot_minutes, tz)?;

    let mut months: BTreeMap<String, Month> = BTreeMap::new();
    let mut total_kwh = Decimal::ZERO;
    for (start_ms, wh) in slots {
        let zoned = Timestamp::from_millisecond(start_ms).map_err(|_| EnergyError::InvalidTime { ts_ms: start_ms })?.to_zoned_datetime(tz.clone());
        let kwh = to_decimal(wh / 1000.0, start_ms)?;
        total_kwh += kwh;
        let month = months.entry(format!("{:04}-{:02}", zoned.year(), zoned.month())).or_default();
        charge_energy(month, tariff, kwh, &zoned, start_ms)?;
        let kw = kwh * Decimal::from(60) / Decimal::from(slot_minutes);
        month.peak_kw = month.peak_kw.max(kw);
    }

    let minor_units = tariff.minor_units();
    let round = |amount: Decimal| amount.round_dp_with_strategy(minor_units, RoundingStrategy::MidpointAwayFromZero);
    let mut lines = Vec::new();
    for (month_name, month) in months {
        for (label, kwh, price) in month.energy {
            let quantity = kwh.round_dp(6);
            lines.push(CostLine { month: month_name.clone(), kind: CostKind::Energy, label, quantity, unit: "kWh", unit_price: price, amount: round(quantity * price) });
        }
        if let Some(demand) = &tariff.demand {
            let quantity = month.peak_kw.round_dp(3);
            let amount = round(quantity * demand.price_per_kw);
            lines.push(CostLine { month: month_name.clone(), kind: CostKind::Demand, label: "peak demand".to_owned(), quantity, unit: "kW", unit_price: demand.price_per_kw, amount });
        }
        if let Some(fixed) = tariff.fixed_per_month {
            lines.push(CostLine { month: month_name, kind: CostKind::Fixed, label: "fixed".to_owned(), quantity: Decimal::ONE, unit: "month", unit_price: fixed, amount: round(fixed) });
        }
    }

    let total = lines.iter().map(|line| line.amount).sum();
    let energy_kwh = total_kwh.round_dp(6);
    let co2_kg = tariff.co2_g_per_kwh.map(|grams| energy_kwh.to_f64().unwrap_or(0.0) * grams / 1000.0);
    Ok(CostBreakdown { currency: tariff.currency.clone(), energy_kwh, total, lines, excluded_demand: Vec::new(), co2_kg })
}

/// Prices energy pieces for the report span `[span.start_ms, span.end_ms)`,
/// such as one local day, with the pieces already clipped to the span.
///
/// Energy lines are those of [`cost`]. For each local month that the span
/// covers only in part:
/// - the fixed charge is prorated: its quantity is the share of the month's
///   duration inside the span (6 decimals), so the days of a month add up to
///   one fixed charge;
/// - the demand charge moves to [`CostBreakdown::excluded_demand`] and out
///   of the total, because it is billed on the highest demand of the whole
///   month, which a shorter span cannot know.
///
/// A month that the span covers in full keeps its fixed and demand lines
/// unchanged, as from [`cost`].
pub fn cost_of_span(energy: &[EnergyPiece], tariff: &Tariff, tz: &TimeZone, span: Window) -> Result<CostBreakdown, EnergyError> {
    if span.end_ms < span.start_ms {
        return Err(EnergyError::InvalidWindow { start_ms: span.start_ms, end_ms: span.end_ms });
    }
    let mut bill = cost(energy, tariff, tz)?;
    let shares = month_shares(span, tz)?;
    let minor_units = tariff.minor_units();
    let round = |amount: Decimal| amount.round_dp_with_strategy(minor_units, RoundingStrategy::MidpointAwayFromZero);

    let mut lines = Vec::with_capacity(bill.lines.len());
    for mut line in std::mem::take(&mut bill.lines) {
        // A month outside the span has a share of zero; pieces clipped to the span never create one.
        let share = shares.get(&line.month).copied().unwrap_or(Decimal::ZERO);
        match line.kind {
            CostKind::Energy => lines.push(line),
            _ if share >= Decimal::ONE => lines.push(line),
            CostKind::Fixed => {
                line.quantity = share.round_dp(6);
                line.amount = round(line.quantity * line.unit_price);
                lines.push(line);
            }
            CostKind::Demand => bill.excluded_demand.push(line),
        }
    }
    bill.total = lines.iter().map(|line| line.amount).sum();
    bill.lines = lines;
    Ok(bill)
}

/// Share of each local month's duration that lies inside `span`, by month
/// label (`2024-04`). A DST day therefore weighs 23 or 25 hours.
fn month_shares(span: Window, tz: &TimeZone) -> Result<BTreeMap<String, Decimal>, EnergyError> {
    let mut shares = BTreeMap::new();
    for (month, _) in split_by_period(span.start_ms, span.end_ms, Period::Month, tz)? {
        let inside = span.end_ms.min(month.end_ms).saturating_sub(span.start_ms.max(month.start_ms));
        let length = month.end_ms.saturating_sub(month.start_ms);
        let share = if length > 0 { Decimal::from(inside.max(0)) / Decimal::from(length) } else { Decimal::ZERO };
        shares.insert(month.label, share.min(Decimal::ONE));
    }
    Ok(shares)
}

fn charge_energy(month: &mut Month, tariff: &Tariff, kwh: Decimal, zoned: &jiff::ZonedDateTime, start_ms: TimestampMs) -> Result<(), EnergyError> {
    match &tariff.energy {
        EnergyCharge::Flat { price_per_kwh } => month.charge("flat".to_owned(), kwh, *price_per_kwh),
        EnergyCharge::TimeOfUse { .. } => {
            let day = tariff.day_type(zoned.date());
            let hour = u8::try_from(zoned.hour()).unwrap_or(0);
            let Some(period) = tariff.period_at(day, hour) else {
                let problem = format!("no time-of-use period covers {day:?} hour {hour:02} (slot starting at {start_ms} ms)");
                return Err(EnergyError::InvalidTariff { problems: vec![problem] });
            };
            month.charge(period.name.clone(), kwh, period.price_per_kwh);
        }
        EnergyCharge::Tiered { blocks } => {
            // Limits are cumulative monthly kWh, so a block's room is its limit minus what the month used.
            let mut left = kwh;
            for (index, block) in blocks.iter().enumerate() {
                if left <= Decimal::ZERO {
                    break;
                }
                let room = match block.up_to_kwh {
                    Some(limit) => (limit - month.used_kwh).max(Decimal::ZERO),
                    None => left,
                };
                let taken = left.min(room);
                if taken > Decimal::ZERO {
                    month.charge(format!("block {}", index + 1), taken, block.price_per_kwh);
                    month.used_kwh += taken;
                    left -= taken;
                }
            }
        }
    }
    Ok(())
}

/// Sums pieces into local slots of `slot_minutes`, aligned on the local hour.
fn energy_by_slot(energy: &[EnergyPiece], slot_minutes: i64, tz: &TimeZone) -> Result<BTreeMap<TimestampMs, f64>, EnergyError> {
    let slot_ms = slot_minutes * 60_000;
    let slot_of = |ts_ms: TimestampMs| -> Result<(TimestampMs, TimestampMs), EnergyError> {
        let zoned = Timestamp::from_millisecond(ts_ms).map_err(|_| EnergyError::InvalidTime { ts_ms })?.to_zoned_datetime(tz.clone());
        let into_slot = (i64::from(zoned.minute()) % slot_minutes) * 60_000 + i64::from(zoned.second()) * 1000 + i64::from(zoned.millisecond());
        let start = ts_ms - into_slot;
        Ok((start, start + slot_ms))
    };
    let mut slots = BTreeMap::new();
    for piece in energy {
        if !piece.wh.is_finite() || piece.end_ms < piece.start_ms {
            return Err(EnergyError::InvalidPiece { start_ms: piece.start_ms, end_ms: piece.end_ms, wh: piece.wh });
        }
        for ((start, _), share) in split_span(piece.start_ms, piece.end_ms, slot_of, |bounds| bounds.1)? {
            *slots.entry(start).or_insert(0.0) += piece.wh * share;
        }
    }
    Ok(slots)
}

fn to_decimal(value: f64, ts_ms: TimestampMs) -> Result<Decimal, EnergyError> {
    Decimal::from_f64(value).map(|d| d.round_dp(9)).ok_or(EnergyError::InvalidPiece { start_ms: ts_ms, end_ms: ts_ms, wh: value * 1000.0 })
}
