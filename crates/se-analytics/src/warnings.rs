//! Budget and demand warnings of a site, from its month-to-date consumption
//! and its hourly forecast. No I/O: the caller passes the clock, the site's
//! time zone, the consumption and the forecast.
//!
//! - Monthly budget, in kWh or in money: the month-to-date amount plus the
//!   forecast hours of this month gives the date the budget is passed. After
//!   the last forecast hour, the mean hourly amount of the forecast continues
//!   to the end of the month ("at this rate").
//! - Demand limit, in kW: the highest forecast hour of tomorrow (local date)
//!   is compared with the limit. An hourly energy in kWh equals the mean
//!   power of that hour in kW.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use se_core::Lang;
use serde::Serialize;

/// One forecast hour of a site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastHour {
    /// Start of the hour.
    pub start: Timestamp,
    /// Energy of the hour in kWh, which is also its mean power in kW.
    pub kwh: f64,
    /// Cost of the hour's energy in the site's currency; `None` without a tariff.
    pub cost: Option<f64>,
}

/// Monthly budget and demand limit of a site. `None` disables a check.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Limits {
    pub monthly_budget_kwh: Option<f64>,
    /// Budget in `currency`.
    pub monthly_budget_amount: Option<f64>,
    pub demand_limit_kw: Option<f64>,
    /// ISO 4217 code of the site, shown with money amounts.
    pub currency: String,
}

/// Everything the warnings are computed from.
#[derive(Debug, Clone)]
pub struct WarningInput<'a> {
    pub now: Timestamp,
    pub time_zone: TimeZone,
    /// Energy from the start of the local month to the first forecast hour, in kWh.
    pub month_to_date_kwh: f64,
    /// Cost of that energy; `None` without a tariff.
    pub month_to_date_cost: Option<f64>,
    /// Forecast hours in time order, starting where the month-to-date amounts end.
    pub forecast: &'a [ForecastHour],
    pub limits: &'a Limits,
}

/// Unit of a monthly budget: energy or money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetUnit {
    Kwh,
    Money,
}

/// A warning for the site's operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// The month-to-date amount is already above the budget.
    BudgetExceeded {
        unit: BudgetUnit,
        budget: f64,
        used: f64,
        /// Currency of a money budget, else `None`.
        currency: Option<String>,
    },
    /// At the forecast rate, the budget is passed on `date`.
    BudgetForecast {
        unit: BudgetUnit,
        budget: f64,
        /// Local date of the hour in which the budget is passed.
        date: Date,
        /// Projected amount for the whole month.
        projected: f64,
        currency: Option<String>,
    },
    /// Tomorrow's highest forecast hour is above the demand limit.
    DemandForecast {
        /// Forecast mean power of the peak hour, in kW.
        peak_kw: f64,
        /// Start of the peak hour.
        at: Timestamp,
        /// Local hour of day of `at`, 0 to 23.
        hour: i8,
        limit_kw: f64,
    },
}

impl Warning {
    /// Formats the warning in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match self {
            Warning::BudgetExceeded { unit, budget, used, currency } => {
                let budget = amount(*budget, *unit, currency.as_deref(), lang);
                let used = amount(*used, *unit, currency.as_deref(), lang);
                match lang {
                    Lang::En => format!("The site has passed its monthly budget of {budget}: {used} used since the start of the month."),
                    Lang::Fr => format!("Le site a dépassé son budget mensuel de {budget} : {used} depuis le début du mois."),
                }
            }
            Warning::BudgetForecast { unit, budget, date, projected, currency } => {
                let budget = amount(*budget, *unit, currency.as_deref(), lang);
                let projected = amount(*projected, *unit, currency.as_deref(), lang);
                match lang {
                    Lang::En => format!("At this rate the site will pass its monthly budget of {budget} on {date} (forecast for the month: {projected})."),
                    Lang::Fr => format!("À ce rythme, le site dépassera son budget mensuel de {budget} le {date} (prévision pour le mois : {projected})."),
                }
            }
            Warning::DemandForecast { peak_kw, hour, limit_kw, .. } => {
                let peak = number(*peak_kw, 1, lang);
                let limit = number(*limit_kw, 1, lang);
                match lang {
                    Lang::En => format!("Tomorrow's peak will pass the demand limit (forecast {peak} kW at {hour:02}:00, limit {limit} kW)."),
                    Lang::Fr => format!("Le pic de demain dépassera la limite de puissance (prévision {peak} kW à {hour:02}:00, limite {limit} kW)."),
                }
            }
        }
    }
}

/// Computes every warning that applies, budgets first.
pub fn site_warnings(input: &WarningInput<'_>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let month_end = end_of_month(input.now, &input.time_zone);
    if let Some(budget) = input.limits.monthly_budget_kwh {
        let hourly: Vec<(Timestamp, f64)> = input.forecast.iter().map(|hour| (hour.start, hour.kwh)).collect();
        warnings.extend(budget_warning(BudgetUnit::Kwh, budget, input.month_to_date_kwh, &hourly, month_end, &input.time_zone, None));
    }
    if let Some(budget) = input.limits.monthly_budget_amount {
        let costs: Option<Vec<(Timestamp, f64)>> = input.forecast.iter().map(|hour| hour.cost.map(|cost| (hour.start, cost))).collect();
        if let (Some(used), Some(hourly)) = (input.month_to_date_cost, costs) {
            let currency = Some(input.limits.currency.clone());
            warnings.extend(budget_warning(BudgetUnit::Money, budget, used, &hourly, month_end, &input.time_zone, currency));
        }
    }
    if let Some(limit_kw) = input.limits.demand_limit_kw {
        warnings.extend(demand_warning(input, limit_kw));
    }
    warnings
}

fn budget_warning(
    unit: BudgetUnit,
    budget: f64,
    used: f64,
    hourly: &[(Timestamp, f64)],
    month_end: Option<Timestamp>,
    time_zone: &TimeZone,
    currency: Option<String>,
) -> Option<Warning> {
    if used > budget {
        return Some(Warning::BudgetExceeded { unit, budget, used, currency });
    }
    let month_end = month_end?;
    let in_month: Vec<(Timestamp, f64)> = hourly.iter().copied().filter(|(start, _)| *start < month_end).collect();

    let mut total = used;
    let mut crossing: Option<Timestamp> = None;
    for (start, value) in &in_month {
        total += value;
        if crossing.is_none() && total > budget {
            crossing = Some(*start);
        }
    }

    // After the forecast, continue at its mean hourly amount to the end of the month.
    let rate = if hourly.is_empty() {
        0.0
    } else {
        hourly.iter().map(|(_, value)| value).sum::<f64>() / hourly.len() as f64
    };
    let tail_start = in_month
        .last()
        .and_then(|(start, _)| start.checked_add(SignedDuration::from_hours(1)).ok())
        .or_else(|| hourly.first().map(|(start, _)| *start))?;
    let tail_hours = (month_end.as_second() - tail_start.as_second()).max(0) / 3600;
    if crossing.is_none() && rate > 0.0 {
        let hours_to_budget = ((budget - total) / rate).floor().max(0.0) as i64;
        if hours_to_budget < tail_hours {
            crossing = tail_start.checked_add(SignedDuration::from_hours(hours_to_budget)).ok();
        }
    }
    let projected = total + rate * tail_hours as f64;
    crossing.map(|at| Warning::BudgetForecast {
        unit,
        budget,
        date: at.to_zoned_datetime(time_zone.clone()).date(),
        projected,
        currency,
    })
}

fn demand_warning(input: &WarningInput<'_>, limit_kw: f64) -> Option<Warning> {
    let today = input.now.to_zoned_datetime(input.time_zone.clone()).date();
    let tomorrow = today.tomorrow().ok()?;
    let peak = input
        .forecast
        .iter()
        .filter(|hour| hour.start.to_zoned_datetime(input.time_zone.clone()).date() == tomorrow)
        .max_by(|a, b| a.kwh.total_cmp(&b.kwh))?;
    if peak.kwh <= limit_kw {
        return None;
    }
    Some(Warning::DemandForecast {
        peak_kw: peak.kwh,
        at: peak.start,
        hour: peak.start.to_zoned_datetime(input.time_zone.clone()).hour(),
        limit_kw,
    })
}

/// Start of the next local month after `now`, or `None` past the calendar's range.
fn end_of_month(now: Timestamp, time_zone: &TimeZone) -> Option<Timestamp> {
    let date = now.to_zoned_datetime(time_zone.clone()).date();
    let next = date.first_of_month().checked_add(1.month()).ok()?;
    next.to_zoned_datetime(time_zone.clone()).ok().map(|zoned| zoned.timestamp())
}

fn amount(value: f64, unit: BudgetUnit, currency: Option<&str>, lang: Lang) -> String {
    match unit {
        BudgetUnit::Kwh => format!("{} kWh", number(value, 0, lang)),
        BudgetUnit::Money => {
            // As many decimals as the currency's bills: 3 for TND, 0 for JPY.
            let decimals = currency.map_or(2, se_energy::currency_minor_units) as usize;
            format!("{} {}", number(value, decimals, lang), currency.unwrap_or("")).trim_end().to_string()
        }
    }
}

/// Formats a number with `decimals` digits, and a decimal comma in French.
fn number(value: f64, decimals: usize, lang: Lang) -> String {
    let text = format!("{value:.decimals$}");
    match lang {
        Lang::En => text,
        Lang::Fr => text.replace('.', ","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// `hours` forecast hours from `start`, each of `kwh` and costing 0.2 per kWh.
    fn flat(start: &str, hours: usize, kwh: f64) -> Vec<ForecastHour> {
        let start = at(start);
        (0..hours)
            .map(|hour| ForecastHour {
                start: start + SignedDuration::from_hours(hour as i64),
                kwh,
                cost: Some(kwh * 0.2),
            })
            .collect()
    }

    fn limits(kwh: Option<f64>, money: Option<f64>, demand: Option<f64>) -> Limits {
        Limits {
            monthly_budget_kwh: kwh,
            monthly_budget_amount: money,
            demand_limit_kw: demand,
            currency: "EUR".to_string(),
        }
    }

    fn input<'a>(now: &str, used_kwh: f64, forecast: &'a [ForecastHour], limits: &'a Limits) -> WarningInput<'a> {
        WarningInput {
            now: at(now),
            time_zone: TimeZone::UTC,
            month_to_date_kwh: used_kwh,
            month_to_date_cost: Some(used_kwh * 0.2),
            forecast,
            limits,
        }
    }

    #[test]
    fn budget_crossed_inside_forecast() {
        // 100 kWh used on March 10; 10 kWh per hour passes 400 kWh after 31 hours, on March 11.
        let forecast = flat("2026-03-10T00:00:00Z", 168, 10.0);
        let limits = limits(Some(400.0), None, None);
        let warnings = site_warnings(&input("2026-03-10T00:10:00Z", 100.0, &forecast, &limits));
        assert_eq!(warnings.len(), 1);
        match &warnings[0] {
            Warning::BudgetForecast { date, unit, .. } => {
                assert_eq!(*unit, BudgetUnit::Kwh);
                assert_eq!(date.to_string(), "2026-03-11");
            }
            other => panic!("expected a budget forecast, got {other:?}"),
        }
    }

    #[test]
    fn budget_crossed_after_forecast_by_rate() {
        // 24 h at 1 kWh/h from March 1, then the same rate: 500 kWh pass on hour 500, March 21 20:00.
        let forecast = flat("2026-03-01T00:00:00Z", 24, 1.0);
        let limits = limits(Some(500.0), None, None);
        let warnings = site_warnings(&input("2026-03-01T00:00:00Z", 0.0, &forecast, &limits));
        match &warnings[..] {
            [Warning::BudgetForecast { date, projected, .. }] => {
                assert_eq!(date.to_string(), "2026-03-21");
                assert!((projected - 744.0).abs() < 1e-9, "{projected}");
            }
            other => panic!("expected one budget forecast, got {other:?}"),
        }
    }

    #[test]
    fn budget_not_reached_this_month() {
        let forecast = flat("2026-03-20T00:00:00Z", 168, 1.0);
        let limits = limits(Some(1000.0), None, None);
        let warnings = site_warnings(&input("2026-03-20T00:00:00Z", 100.0, &forecast, &limits));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn forecast_hours_of_next_month_ignored() {
        // 100 kWh/h from March 31 20:00: four hours in March add 400 kWh, under the 500 left.
        let forecast = flat("2026-03-31T20:00:00Z", 168, 100.0);
        let limits = limits(Some(600.0), None, None);
        let warnings = site_warnings(&input("2026-03-31T20:00:00Z", 100.0, &forecast, &limits));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn budget_already_exceeded() {
        let forecast = flat("2026-03-10T00:00:00Z", 24, 1.0);
        let limits = limits(Some(50.0), None, None);
        let warnings = site_warnings(&input("2026-03-10T00:00:00Z", 80.0, &forecast, &limits));
        assert!(matches!(warnings[..], [Warning::BudgetExceeded { used, .. }] if used == 80.0), "{warnings:?}");
    }

    #[test]
    fn money_budget_uses_costs() {
        // 20 EUR used; 2 EUR per hour passes 60 EUR after 21 hours.
        let forecast = flat("2026-03-10T00:00:00Z", 168, 10.0);
        let limits = limits(None, Some(60.0), None);
        let warnings = site_warnings(&input("2026-03-10T00:00:00Z", 100.0, &forecast, &limits));
        match &warnings[..] {
            [Warning::BudgetForecast { unit: BudgetUnit::Money, date, currency, .. }] => {
                assert_eq!(date.to_string(), "2026-03-10");
                assert_eq!(currency.as_deref(), Some("EUR"));
            }
            other => panic!("expected one money warning, got {other:?}"),
        }
    }

    #[test]
    fn money_budget_skipped_without_tariff() {
        let mut forecast = flat("2026-03-10T00:00:00Z", 24, 10.0);
        for hour in &mut forecast {
            hour.cost = None;
        }
        let limits = limits(None, Some(1.0), None);
        let mut input = input("2026-03-10T00:00:00Z", 100.0, &forecast, &limits);
        input.month_to_date_cost = None;
        assert!(site_warnings(&input).is_empty());
    }

    #[test]
    fn demand_peak_tomorrow_fires() {
        let mut forecast = flat("2026-03-10T12:00:00Z", 168, 5.0);
        // Tomorrow (March 11) at 14:00 is hour 26 of the forecast.
        forecast[26].kwh = 12.4;
        let limits = limits(None, None, Some(10.0));
        let warnings = site_warnings(&input("2026-03-10T12:30:00Z", 0.0, &forecast, &limits));
        match &warnings[..] {
            [warning @ Warning::DemandForecast { hour, peak_kw, .. }] => {
                assert_eq!(*hour, 14);
                assert_eq!(*peak_kw, 12.4);
                assert_eq!(
                    warning.message(Lang::En),
                    "Tomorrow's peak will pass the demand limit (forecast 12.4 kW at 14:00, limit 10.0 kW)."
                );
                assert_eq!(
                    warning.message(Lang::Fr),
                    "Le pic de demain dépassera la limite de puissance (prévision 12,4 kW à 14:00, limite 10,0 kW)."
                );
            }
            other => panic!("expected one demand warning, got {other:?}"),
        }
    }

    #[test]
    fn demand_peak_today_ignored() {
        let mut forecast = flat("2026-03-10T12:00:00Z", 168, 5.0);
        forecast[2].kwh = 50.0;
        let limits = limits(None, None, Some(10.0));
        assert!(site_warnings(&input("2026-03-10T12:30:00Z", 0.0, &forecast, &limits)).is_empty());
    }

    #[test]
    fn demand_uses_local_tomorrow() {
        // In Pacific/Kiritimati (UTC+14), 2026-03-10T12:00Z is already March 11 02:00,
        // so "tomorrow" is March 12 local, which starts at 2026-03-11T10:00Z.
        let zone = TimeZone::get("Pacific/Kiritimati").unwrap();
        let mut forecast = flat("2026-03-10T12:00:00Z", 168, 5.0);
        forecast[20].kwh = 50.0; // 2026-03-11T08:00Z = March 11 22:00 local: not tomorrow.
        forecast[23].kwh = 20.0; // 2026-03-11T11:00Z = March 12 01:00 local.
        let limits = limits(None, None, Some(10.0));
        let mut input = input("2026-03-10T12:00:00Z", 0.0, &forecast, &limits);
        input.time_zone = zone;
        match &site_warnings(&input)[..] {
            [Warning::DemandForecast { hour, peak_kw, .. }] => {
                assert_eq!(*hour, 1);
                assert_eq!(*peak_kw, 20.0);
            }
            other => panic!("expected one demand warning, got {other:?}"),
        }
    }

    #[test]
    fn budget_message_in_both_languages() {
        let warning = Warning::BudgetForecast {
            unit: BudgetUnit::Money,
            budget: 300.0,
            date: "2026-03-14".parse().unwrap(),
            projected: 412.5,
            currency: Some("EUR".to_string()),
        };
        assert_eq!(
            warning.message(Lang::En),
            "At this rate the site will pass its monthly budget of 300.00 EUR on 2026-03-14 (forecast for the month: 412.50 EUR)."
        );
        assert_eq!(
            warning.message(Lang::Fr),
            "À ce rythme, le site dépassera son budget mensuel de 300,00 EUR le 2026-03-14 (prévision pour le mois : 412,50 EUR)."
        );
    }

    #[test]
    fn money_follows_currency_decimals() {
        let exceeded = |currency: &str| Warning::BudgetExceeded {
            unit: BudgetUnit::Money,
            budget: 5.0,
            used: 25.8734,
            currency: Some(currency.to_string()),
        };
        assert_eq!(exceeded("TND").message(Lang::Fr), "Le site a dépassé son budget mensuel de 5,000 TND : 25,873 TND depuis le début du mois.");
        assert_eq!(exceeded("JPY").message(Lang::En), "The site has passed its monthly budget of 5 JPY: 26 JPY used since the start of the month.");
    }
}
