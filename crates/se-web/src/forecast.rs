//! Forecast and warning routes:
//! - `GET /api/v1/sites/{id}/forecast?horizon=24h|168h`
//! - `GET /api/v1/devices/{id}/forecast?horizon=24h|168h`
//! - `GET /api/v1/sites/{id}/warnings`
//!
//! Access follows [`crate::access`].

use axum::extract::State;
use axum::Json;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::prelude::ToPrimitive;
use se_analytics::auto_forecast::{ModelAccuracy, AutoForecast};
use se_analytics::backtest::SelectionMetric;
use se_analytics::warnings::{site_warnings, ForecastHour, Limits, Warning, WarningInput};
use se_core::{now_ms, DeviceId, Lang, TimestampMs};
use se_energy::{EnergyPiece, Tariff};
use se_store::Site;
use serde::{Deserialize, Serialize};

use crate::access::{accessible_device_site, accessible_site};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::extract::{ApiQuery, DevicePath};
use crate::forecast_cache::{Computed, Target};
use crate::i18n::{translate, RequestLang};
use crate::sites::SitePath;
use crate::WebState;

const HOUR_MS: i64 = 3_600_000;

/// Values accepted by `horizon=`, with their length in hours.
const HORIZONS: [(&str, usize); 2] = [("24h", 24), ("168h", 168)];

/// Values accepted by `horizon=`, for error messages.
pub(crate) const HORIZON_NAMES: [&str; 2] = [HORIZONS[0].0, HORIZONS[1].0];

/// Horizon of the forecast that warnings use: a week covers all of
/// tomorrow and most of the month's remaining days.
const WARNING_HORIZON_HOURS: usize = 168;

/// Parses `horizon=`; the day-ahead forecast when it is missing.
fn horizon_hours(value: Option<&str>) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(HORIZONS[0].1);
    };
    HORIZONS
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, hours)| *hours)
        .ok_or_else(|| ApiError::InvalidHorizon { value: value.to_owned() })
}

#[derive(Deserialize)]
pub(crate) struct ForecastParams {
    horizon: Option<String>,
}

/// One measured hour.
#[derive(Serialize)]
pub(crate) struct HistoryPoint {
    /// Start of the hour.
    ts_ms: TimestampMs,
    /// Energy of the hour in Wh, interpolated when `observed` is false.
    wh: f64,
    observed: bool,
}

/// One forecast hour, in Wh.
#[derive(Serialize)]
pub(crate) struct ForecastPoint {
    ts_ms: TimestampMs,
    predicted: f64,
    lower: f64,
    upper: f64,
}

#[derive(Serialize)]
pub(crate) struct NoticeView {
    code: String,
    message: String,
}

#[derive(Serialize)]
pub(crate) struct ForecastResponse {
    site: String,
    device: Option<DeviceId>,
    time_zone: String,
    /// Unit of every value: energy per hour.
    unit: &'static str,
    horizon_hours: usize,
    computed_at_ms: TimestampMs,
    /// The last hours of history, up to the start of the forecast.
    history: Vec<HistoryPoint>,
    forecast: Vec<ForecastPoint>,
    /// Prediction interval level, such as 0.95; `null` without a forecast.
    level: Option<f64>,
    /// Model that made the forecast; `null` without a forecast.
    model: Option<String>,
    /// Days of rolling-origin backtests behind `accuracy`.
    backtest_days: usize,
    /// Measure that chose the model (`mape`, or `mae` when an actual value is zero).
    selection: Option<&'static str>,
    accuracy: Vec<ModelAccuracy>,
    notices: Vec<NoticeView>,
}

/// Hours of history returned with a forecast: a week for the day-ahead
/// forecast, two weeks for the week-ahead one.
fn shown_history_hours(horizon_hours: usize) -> usize {
    if horizon_hours > 24 {
        14 * 24
    } else {
        7 * 24
    }
}

fn forecast_response(computed: &Computed, site: &Site, device: Option<DeviceId>, horizon_hours: usize, lang: Lang) -> ForecastResponse {
    let shown_hours = shown_history_hours(horizon_hours).min(computed.history.len());
    let skip = computed.history.len() - shown_hours;
    let history = computed.history[skip..]
        .iter()
        .zip(&computed.observed[skip..])
        .enumerate()
        .map(|(offset, (&wh, &observed))| HistoryPoint {
            ts_ms: computed.history_start_ms + (skip + offset) as i64 * HOUR_MS,
            wh,
            observed,
        })
        .collect();

    let mut response = ForecastResponse {
        site: site.id.clone(),
        device,
        time_zone: computed.time_zone.clone(),
        unit: "Wh",
        horizon_hours,
        computed_at_ms: computed.computed_at_ms,
        history,
        forecast: Vec::new(),
        level: None,
        model: None,
        backtest_days: 0,
        selection: None,
        accuracy: Vec::new(),
        notices: Vec::new(),
    };
    let Some(forecast) = &computed.forecast else {
        response.notices.push(NoticeView {
            code: "no_data".to_owned(),
            message: translate(lang, "forecast.no_data", &[]),
        });
        return response;
    };

    response.forecast = forecast_points(forecast);
    response.level = Some(forecast.level);
    response.model = Some(forecast.model.clone());
    response.backtest_days = forecast.backtest_days;
    response.selection = forecast.selection.map(|selection| match selection {
        SelectionMetric::Mape => "mape",
        SelectionMetric::Mae => "mae",
    });
    response.accuracy = forecast.accuracy.clone();
    response.notices = forecast
        .notices
        .iter()
        .map(|notice| NoticeView {
            code: notice_code(notice),
            message: notice.message(lang),
        })
        .collect();
    response
}

fn notice_code(notice: &se_analytics::auto_forecast::ForecastNotice) -> String {
    serde_json::to_value(notice)
        .ok()
        .and_then(|value| value.get("code").and_then(|code| code.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

fn forecast_points(forecast: &AutoForecast) -> Vec<ForecastPoint> {
    let start_ms = forecast.start.as_millisecond();
    (0..forecast.point.len())
        .map(|step| ForecastPoint {
            ts_ms: start_ms + step as i64 * HOUR_MS,
            predicted: forecast.point[step],
            lower: forecast.lower[step],
            upper: forecast.upper[step],
        })
        .collect()
}

/// `GET /api/v1/sites/{id}/forecast?horizon=24h|168h`
pub(crate) async fn site_forecast(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    SitePath(id): SitePath,
    ApiQuery(params): ApiQuery<ForecastParams>,
) -> Result<Json<ForecastResponse>, ApiError> {
    let horizon = horizon_hours(params.horizon.as_deref())?;
    let site = accessible_site(&state, &user, &id).await?;
    let target = Target::Site(site.id.clone());
    let computed = state.forecasts.get(state.store.as_ref(), &target, &site.time_zone, horizon).await?;
    Ok(Json(forecast_response(&computed, &site, None, horizon, lang)))
}

/// `GET /api/v1/devices/{id}/forecast?horizon=24h|168h`
pub(crate) async fn device_forecast(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    DevicePath(device): DevicePath,
    ApiQuery(params): ApiQuery<ForecastParams>,
) -> Result<Json<ForecastResponse>, ApiError> {
    let horizon = horizon_hours(params.horizon.as_deref())?;
    let site = accessible_device_site(&state, &user, &device).await?;
    let target = Target::Device(device.clone());
    let computed = state.forecasts.get(state.store.as_ref(), &target, &site.time_zone, horizon).await?;
    Ok(Json(forecast_response(&computed, &site, Some(device), horizon, lang)))
}

#[derive(Serialize)]
pub(crate) struct WarningView {
    #[serde(flatten)]
    warning: Warning,
    message: String,
}

#[derive(Serialize)]
pub(crate) struct WarningsResponse {
    site: String,
    #[serde(flatten)]
    limits: se_store::SiteLimits,
    currency: String,
    /// Energy from the start of the local month to the current hour, in kWh.
    month_to_date_kwh: f64,
    /// Cost of that energy; `null` without a tariff.
    month_to_date_cost: Option<f64>,
    computed_at_ms: TimestampMs,
    warnings: Vec<WarningView>,
}

/// `GET /api/v1/sites/{id}/warnings`: monthly budget and demand limit
/// warnings from the week-ahead forecast.
pub(crate) async fn site_warnings_route(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    SitePath(id): SitePath,
) -> Result<Json<WarningsResponse>, ApiError> {
    let site = accessible_site(&state, &user, &id).await?;
    let limits = state.store.site_limits(&site.id).await?.unwrap_or_default();
    let target = Target::Site(site.id.clone());
    let computed = state
        .forecasts
        .get(state.store.as_ref(), &target, &site.time_zone, WARNING_HORIZON_HOURS)
        .await?;
    let zone = TimeZone::get(&site.time_zone).map_err(|_| ApiError::InvalidTimeZone {
        value: site.time_zone.clone(),
    })?;
    let tariff = site
        .tariff_json
        .as_deref()
        .map(Tariff::from_json)
        .transpose()
        .map_err(|error| ApiError::InvalidTariff { detail: error.to_string() })?;

    let now = Timestamp::from_millisecond(now_ms()).map_err(|error| ApiError::Internal(error.to_string()))?;
    let month_start_ms = month_start(now, &zone)?;
    let month_pieces = month_to_date_pieces(&computed, month_start_ms);
    // A fold from 0.0, because `sum` of no floats is -0.0.
    let month_to_date_kwh = month_pieces.iter().fold(0.0, |total, piece| total + piece.wh) / 1000.0;
    let forecast_hours = match &computed.forecast {
        Some(forecast) => hours_with_costs(forecast, &month_pieces, tariff.as_ref(), &zone)?,
        None => Vec::new(),
    };
    let month_to_date_cost = tariff.as_ref().map(|tariff| total_cost(&month_pieces, tariff, &zone)).transpose()?;

    let input = WarningInput {
        now,
        time_zone: zone,
        month_to_date_kwh,
        month_to_date_cost,
        forecast: &forecast_hours,
        limits: &Limits {
            monthly_budget_kwh: limits.monthly_budget_kwh,
            monthly_budget_amount: limits.monthly_budget_amount,
            demand_limit_kw: limits.demand_limit_kw,
            currency: site.currency.clone(),
        },
    };
    let warnings = site_warnings(&input)
        .into_iter()
        .map(|warning| WarningView {
            message: warning.message(lang),
            warning,
        })
        .collect();
    Ok(Json(WarningsResponse {
        site: site.id,
        limits,
        currency: site.currency,
        month_to_date_kwh,
        month_to_date_cost,
        computed_at_ms: computed.computed_at_ms,
        warnings,
    }))
}

fn month_start(now: Timestamp, zone: &TimeZone) -> Result<TimestampMs, ApiError> {
    now.to_zoned_datetime(zone.clone())
        .date()
        .first_of_month()
        .to_zoned_datetime(zone.clone())
        .map(|zoned| zoned.timestamp().as_millisecond())
        .map_err(|error| ApiError::Internal(error.to_string()))
}

/// History hours from `month_start_ms` on, as energy pieces.
fn month_to_date_pieces(computed: &Computed, month_start_ms: TimestampMs) -> Vec<EnergyPiece> {
    computed
        .history
        .iter()
        .enumerate()
        .map(|(index, &wh)| {
            let start_ms = computed.history_start_ms + index as i64 * HOUR_MS;
            EnergyPiece {
                start_ms,
                end_ms: start_ms + HOUR_MS,
                wh,
            }
        })
        .filter(|piece| piece.start_ms >= month_start_ms)
        .collect()
}

fn total_cost(pieces: &[EnergyPiece], tariff: &Tariff, zone: &TimeZone) -> Result<f64, ApiError> {
    let breakdown = se_energy::cost(pieces, tariff, zone).map_err(|error| ApiError::Energy { detail: error.to_string() })?;
    Ok(breakdown.total.to_f64().unwrap_or(0.0))
}

/// Forecast hours in kWh, each with the cost it adds to the month so far.
/// The cost of hour k is the month's cost with hours up to k minus the cost
/// up to k − 1, so demand charges and time-of-use prices of the tariff count.
fn hours_with_costs(
    forecast: &AutoForecast,
    month_pieces: &[EnergyPiece],
    tariff: Option<&Tariff>,
    zone: &TimeZone,
) -> Result<Vec<ForecastHour>, ApiError> {
    let start_ms = forecast.start.as_millisecond();
    let mut pieces = month_pieces.to_vec();
    let mut previous_total = match tariff {
        Some(tariff) => total_cost(&pieces, tariff, zone)?,
        None => 0.0,
    };
    let mut hours = Vec::with_capacity(forecast.point.len());
    for (step, &wh) in forecast.point.iter().enumerate() {
        let hour_ms = start_ms + step as i64 * HOUR_MS;
        let start = Timestamp::from_millisecond(hour_ms).map_err(|error| ApiError::Internal(error.to_string()))?;
        let cost = match tariff {
            Some(tariff) => {
                pieces.push(EnergyPiece {
                    start_ms: hour_ms,
                    end_ms: hour_ms + HOUR_MS,
                    wh,
                });
                let total = total_cost(&pieces, tariff, zone)?;
                let added = total - previous_total;
                previous_total = total;
                Some(added)
            }
            None => None,
        };
        hours.push(ForecastHour {
            start,
            kwh: wh / 1000.0,
            cost,
        });
    }
    Ok(hours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizon_accepts_both_values() {
        assert_eq!(horizon_hours(Some("24h")).unwrap(), 24);
        assert_eq!(horizon_hours(Some("168h")).unwrap(), 168);
        assert_eq!(horizon_hours(None).unwrap(), 24);
    }

    #[test]
    fn horizon_rejects_other_values() {
        for value in ["48h", "1d", "", "24"] {
            assert!(matches!(horizon_hours(Some(value)), Err(ApiError::InvalidHorizon { .. })), "{value}");
        }
    }
}
