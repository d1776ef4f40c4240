//! Sites under `/api/v1/sites`: listing with role-based visibility, settings
//! and tariffs (admin only), device assignment, and energy per site.
//!
//! Energy and cost are computed on request from the stored readings by
//! se-energy, so a changed tariff applies to past periods at once.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use jiff::tz::TimeZone;
use se_core::{now_ms, ChannelName, DeviceId, Metric, Reading, TimestampMs};
use se_energy::{
    channel_energy, cost_of_span, period_of, CostBreakdown, EnergyPiece, EnergySource, Period,
    Tariff, UnknownCause, Window,
};
use se_store::{site_rules, RawQuery, Role, Site, SiteLimits};
use serde::{Deserialize, Serialize};

use crate::access::accessible_site;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, DevicePath};
use crate::{params, WebState};

/// How far before a period readings are fetched, so the last power sample
/// before the period can hold into it and a counter has a base value.
const LOOKBACK_MS: i64 = 3_600_000;

/// How far after a period readings are fetched, so the counter interval
/// that ends at or spans the period's end is counted, in proportion.
const LOOKAHEAD_MS: i64 = 3_600_000;

/// The `{id}` segment of a site route, validated as a site id.
pub struct SitePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SitePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::InvalidSiteId {
                value: rejection.body_text(),
            })?;
        site_id(&raw).map(SitePath)
    }
}

/// Checks a site id: 1 to 64 ASCII letters, digits, `-` or `_`.
pub(crate) fn site_id(value: &str) -> Result<String, ApiError> {
    if site_rules::is_valid_site_id(value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::InvalidSiteId {
            value: value.to_owned(),
        })
    }
}

fn time_zone(name: &str) -> Result<TimeZone, ApiError> {
    TimeZone::get(name).map_err(|_| ApiError::InvalidTimeZone {
        value: name.to_owned(),
    })
}

/// A site with its devices, as the API returns it.
#[derive(Serialize)]
pub(crate) struct SiteView {
    #[serde(flatten)]
    site: Site,
    #[serde(flatten)]
    limits: SiteLimits,
    devices: Vec<DeviceId>,
}

async fn site_view(state: &WebState, site: Site) -> Result<SiteView, ApiError> {
    let devices = state.store.site_devices(&site.id).await?;
    let limits = state.store.site_limits(&site.id).await?.unwrap_or_default();
    Ok(SiteView { site, limits, devices })
}

/// `GET /api/v1/sites`: every site for an admin, owned sites for a building owner.
pub(crate) async fn list_sites(
    State(state): State<WebState>,
    user: CurrentUser,
) -> Result<Json<Vec<SiteView>>, ApiError> {
    let sites = match user.role {
        Role::Admin => state.store.list_sites().await?,
        Role::BuildingOwner => state.store.sites_of_user(user.id).await?,
    };
    let mut views = Vec::with_capacity(sites.len());
    for site in sites {
        views.push(site_view(&state, site).await?);
    }
    Ok(Json(views))
}

/// `GET /api/v1/sites/{id}`
pub(crate) async fn get_site(
    State(state): State<WebState>,
    user: CurrentUser,
    SitePath(id): SitePath,
) -> Result<Json<SiteView>, ApiError> {
    let site = accessible_site(&state, &user, &id).await?;
    Ok(Json(site_view(&state, site).await?))
}

/// Body of `PUT /api/v1/sites/{id}`. The tariff has its own route.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteSettings {
    name: String,
    time_zone: String,
    currency: String,
    #[serde(default)]
    co2_g_per_kwh: Option<f64>,
    /// Monthly energy budget in kWh; missing or `null` disables it.
    #[serde(default)]
    monthly_budget_kwh: Option<f64>,
    /// Monthly cost budget in the site's currency; missing or `null` disables it.
    #[serde(default)]
    monthly_budget_amount: Option<f64>,
    /// Demand limit in kW; missing or `null` disables it.
    #[serde(default)]
    demand_limit_kw: Option<f64>,
}

fn validate_settings(settings: &SiteSettings) -> Result<(), ApiError> {
    if !site_rules::is_valid_site_name(&settings.name) {
        return Err(ApiError::InvalidSiteName);
    }
    time_zone(&settings.time_zone)?;
    if !site_rules::is_valid_currency(&settings.currency) {
        return Err(ApiError::InvalidCurrency {
            value: settings.currency.clone(),
        });
    }
    if let Some(factor) = settings.co2_g_per_kwh {
        if !site_rules::is_valid_co2_factor(factor) {
            return Err(ApiError::InvalidCo2Factor {
                value: factor.to_string(),
            });
        }
    }
    let limits = [
        ("monthly_budget_kwh", settings.monthly_budget_kwh),
        ("monthly_budget_amount", settings.monthly_budget_amount),
        ("demand_limit_kw", settings.demand_limit_kw),
    ];
    for (name, value) in limits {
        if let Some(value) = value.filter(|value| !site_rules::is_valid_limit(*value)) {
            return Err(ApiError::InvalidSiteLimit {
                name,
                value: value.to_string(),
            });
        }
    }
    Ok(())
}

/// `PUT /api/v1/sites/{id}` (admin): creates the site or replaces its
/// settings and limits, keeping its tariff.
pub(crate) async fn put_site(
    State(state): State<WebState>,
    AdminUser(_admin): AdminUser,
    SitePath(id): SitePath,
    ApiJson(settings): ApiJson<SiteSettings>,
) -> Result<Json<SiteView>, ApiError> {
    validate_settings(&settings)?;
    let tariff_json = state.store.site(&id).await?.and_then(|site| site.tariff_json);
    let site = Site {
        id,
        name: settings.name.trim().to_owned(),
        time_zone: settings.time_zone,
        currency: settings.currency,
        tariff_json,
        co2_g_per_kwh: settings.co2_g_per_kwh,
    };
    state.store.upsert_site(&site).await?;
    let limits = SiteLimits {
        monthly_budget_kwh: settings.monthly_budget_kwh,
        monthly_budget_amount: settings.monthly_budget_amount,
        demand_limit_kw: settings.demand_limit_kw,
    };
    state.store.set_site_limits(&site.id, &limits).await?;
    tracing::info!(site_id = %site.id, "site settings saved");
    Ok(Json(site_view(&state, site).await?))
}

/// `PUT /api/v1/sites/{id}/tariff` (admin): the body is the tariff JSON
/// (format in docs/energy.md), or empty or `null` to remove the tariff. The
/// site takes the tariff's currency, so costs and the site agree.
pub(crate) async fn put_tariff(
    State(state): State<WebState>,
    AdminUser(_admin): AdminUser,
    SitePath(id): SitePath,
    body: Bytes,
) -> Result<Json<SiteView>, ApiError> {
    let mut site = state
        .store
        .site(&id)
        .await?
        .ok_or(ApiError::SiteNotFound { value: id.clone() })?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::InvalidTariff {
        detail: "the body is not UTF-8 text".to_owned(),
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "null" {
        site.tariff_json = None;
    } else {
        let tariff = Tariff::from_json(trimmed).map_err(|error| ApiError::InvalidTariff {
            detail: match error {
                se_energy::EnergyError::InvalidTariff { problems } => problems.join("; "),
                other => other.to_string(),
            },
        })?;
        site.currency = tariff.currency.clone();
        site.tariff_json = Some(trimmed.to_owned());
    }
    state.store.upsert_site(&site).await?;
    tracing::info!(site_id = %site.id, has_tariff = site.tariff_json.is_some(), "site tariff saved");
    Ok(Json(site_view(&state, site).await?))
}

/// Body of `PUT /api/v1/devices/{id}/site`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceSiteBody {
    site: String,
}

/// `PUT /api/v1/devices/{id}/site` (admin): moves a device to a site;
/// `default` removes its assignment. Fails with `device_not_found` for a
/// device that never sent a message or announced itself.
pub(crate) async fn put_device_site(
    State(state): State<WebState>,
    AdminUser(_admin): AdminUser,
    DevicePath(device): DevicePath,
    ApiJson(body): ApiJson<DeviceSiteBody>,
) -> Result<StatusCode, ApiError> {
    let site = site_id(&body.site)?;
    require_seen_device(&state, &device).await?;
    if state.store.site(&site).await?.is_none() {
        return Err(ApiError::SiteNotFound { value: site });
    }
    state.store.assign_device(&device, &site).await?;
    tracing::info!(device_id = %device, site_id = %site, "device assigned to site");
    Ok(StatusCode::NO_CONTENT)
}

/// Fails with `device_not_found` unless the device is in the device table
/// (it sent a reading, counters or a status) or announced itself, whatever
/// its discovery status. An announced device may have no row in the device
/// table yet, and an operator can place it on a site before it reports.
async fn require_seen_device(state: &WebState, device: &DeviceId) -> Result<(), ApiError> {
    if state.store.device(device).await?.is_some() {
        return Ok(());
    }
    let discovered = state.store.discovered_devices(None).await?;
    if discovered.iter().any(|found| &found.device == device) {
        return Ok(());
    }
    Err(ApiError::DeviceNotFound { value: device.to_string() })
}

#[derive(Deserialize)]
pub(crate) struct EnergyParams {
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A span of unknown energy of one device channel.
#[derive(Serialize)]
pub(crate) struct DeviceUnknownSpan {
    device: DeviceId,
    channel: Option<ChannelName>,
    start_ms: TimestampMs,
    end_ms: TimestampMs,
    cause: UnknownCause,
}

#[derive(Serialize)]
pub(crate) struct DeviceEnergy {
    device: DeviceId,
    /// Energy of the known spans, in kWh.
    kwh: f64,
    known: bool,
    /// True when some channel's energy comes from apparent energy or power,
    /// which is an upper bound of the active energy.
    estimated: bool,
    /// Metrics the energy was computed from, one per source used by the
    /// device's channels, such as `energy_wh` or `apparent_energy_vah`.
    sources: Vec<Metric>,
}

#[derive(Serialize)]
pub(crate) struct SiteEnergy {
    site: String,
    time_zone: String,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    /// Energy of the known spans of every device, in kWh.
    kwh: f64,
    /// False when any part of the period is unknown for any device; `kwh`
    /// then leaves that part out.
    known: bool,
    /// Part of `kwh` computed from apparent energy or power, for channels
    /// without active energy or power. The active energy of that part is at
    /// most this value.
    estimated_kwh: f64,
    unknown_spans: Vec<DeviceUnknownSpan>,
    /// Cost of the known energy, or `null` when the site has no tariff. For
    /// a period shorter than a local month, the fixed charge is prorated and
    /// the demand charge is left out of the total (see docs/energy.md).
    cost: Option<CostBreakdown>,
    /// CO2 of the known energy, or `null` when no emission factor is set.
    co2_kg: Option<f64>,
    per_device: Vec<DeviceEnergy>,
}

/// Bounds of the requested period.
struct EnergySpan {
    from_ms: TimestampMs,
    /// End capped at the time of the request, so today's energy is not
    /// marked unknown for hours that have not happened.
    to_ms: TimestampMs,
    /// End as requested, which prorates the monthly charges: a whole
    /// local day carries one day's share even while it runs.
    requested_to_ms: TimestampMs,
}

/// Resolves `period=today|yesterday|month` (local days of the site) or
/// `from`/`to`.
fn energy_span(
    query: &EnergyParams,
    tz: &TimeZone,
    now: TimestampMs,
) -> Result<EnergySpan, ApiError> {
    let energy_error = |error: se_energy::EnergyError| ApiError::Energy {
        detail: error.to_string(),
    };
    let (from_ms, to_ms) = if query.from.is_some() || query.to.is_some() {
        if query.period.is_some() {
            return Err(ApiError::RangeAndBounds);
        }
        params::time_span(None, query.from.as_deref(), query.to.as_deref(), now)?
    } else {
        match query.period.as_deref().unwrap_or("today") {
            "today" => {
                let day = period_of(now, Period::Day, tz).map_err(energy_error)?;
                (day.start_ms, day.end_ms)
            }
            "yesterday" => {
                let today = period_of(now, Period::Day, tz).map_err(energy_error)?;
                let day = period_of(today.start_ms - 1, Period::Day, tz).map_err(energy_error)?;
                (day.start_ms, day.end_ms)
            }
            "month" => {
                let month = period_of(now, Period::Month, tz).map_err(energy_error)?;
                (month.start_ms, month.end_ms)
            }
            other => {
                return Err(ApiError::InvalidPeriod {
                    value: other.to_owned(),
                })
            }
        }
    };
    Ok(EnergySpan {
        from_ms,
        to_ms: to_ms.min(now.max(from_ms)),
        requested_to_ms: to_ms,
    })
}

/// `GET /api/v1/sites/{id}/energy?period=today|yesterday|month` or `?from&to`
pub(crate) async fn site_energy(
    State(state): State<WebState>,
    user: CurrentUser,
    SitePath(id): SitePath,
    ApiQuery(query): ApiQuery<EnergyParams>,
) -> Result<Json<SiteEnergy>, ApiError> {
    let site = accessible_site(&state, &user, &id).await?;
    let tz = time_zone(&site.time_zone)?;
    let span = energy_span(&query, &tz, now_ms())?;
    let (from_ms, to_ms) = (span.from_ms, span.to_ms);

    let mut pieces = Vec::new();
    let mut unknown_spans = Vec::new();
    let mut per_device = Vec::new();
    let mut estimated_wh = 0.0;
    for device in state.store.site_devices(&site.id).await? {
        let readings = state
            .store
            .raw_readings(&RawQuery {
                device: device.clone(),
                channel: None,
                metric: None,
                from_ms: from_ms.saturating_sub(LOOKBACK_MS),
                // The raw query's end is exclusive: a reading at `to_ms` closes the last interval.
                to_ms: to_ms.saturating_add(LOOKAHEAD_MS),
                limit: 0,
            })
            .await?;
        let energy = device_energy(&device, &readings, from_ms, to_ms)?;
        estimated_wh += energy.estimated_wh;
        per_device.push(DeviceEnergy {
            device,
            kwh: energy.wh / 1000.0,
            known: energy.unknown.is_empty(),
            estimated: energy.sources.iter().any(|source| source.is_upper_bound()),
            sources: energy.sources.iter().map(|source| source.metric()).collect(),
        });
        pieces.extend(energy.pieces);
        unknown_spans.extend(energy.unknown);
    }

    // A fold from 0.0, because `sum` of no floats is -0.0, shown as "-0 kWh".
    let wh = per_device.iter().fold(0.0, |total, device| total + device.kwh * 1000.0);
    let kwh = wh / 1000.0;
    let tariff = site
        .tariff_json
        .as_deref()
        .map(Tariff::from_json)
        .transpose()
        .map_err(|error| ApiError::InvalidTariff {
            detail: error.to_string(),
        })?;
    let cost = tariff
        .as_ref()
        .map(|tariff| {
            let requested = Window {
                start_ms: from_ms,
                end_ms: span.requested_to_ms,
            };
            cost_of_span(&pieces, tariff, &tz, requested)
        })
        .transpose()
        .map_err(|error| ApiError::Energy {
            detail: error.to_string(),
        })?;
    // The site's own factor overrides the tariff's, in both places of the response.
    let co2_factor = site
        .co2_g_per_kwh
        .or_else(|| tariff.as_ref().and_then(|tariff| tariff.co2_g_per_kwh));
    let co2_kg = co2_factor.map(|grams| kwh * grams / 1000.0);
    let cost = cost.map(|cost| CostBreakdown { co2_kg, ..cost });
    Ok(Json(SiteEnergy {
        site: site.id,
        time_zone: site.time_zone,
        from_ms,
        to_ms,
        kwh,
        known: unknown_spans.is_empty(),
        estimated_kwh: estimated_wh / 1000.0,
        unknown_spans,
        cost,
        co2_kg,
        per_device,
    }))
}

/// Energy of one device over `[from_ms, to_ms)`.
struct DeviceTotal {
    wh: f64,
    /// Part of `wh` from apparent energy or power (an upper bound).
    estimated_wh: f64,
    /// Sources used by the device's channels, most preferred first.
    sources: Vec<EnergySource>,
    pieces: Vec<EnergyPiece>,
    unknown: Vec<DeviceUnknownSpan>,
}

/// Sums the energy of each channel of a device, each from its most
/// preferred series (see [`EnergySource`]): the `energy_wh` counter, else
/// `power_w`, else the `apparent_energy_vah` counter, else
/// `apparent_power_va`. A device without any of them is unknown for the
/// whole span.
fn device_energy(
    device: &DeviceId,
    readings: &[Reading],
    from_ms: TimestampMs,
    to_ms: TimestampMs,
) -> Result<DeviceTotal, ApiError> {
    let energy_error = |error: se_energy::EnergyError| ApiError::Energy {
        detail: format!("device {device}: {error}"),
    };
    let mut channels: Vec<&ChannelName> = readings.iter().map(|reading| &reading.channel).collect();
    channels.sort();
    channels.dedup();
    let channel_sources: Vec<(&ChannelName, EnergySource)> = channels
        .into_iter()
        .filter_map(|channel| {
            let mut metrics: Vec<Metric> = readings
                .iter()
                .filter(|reading| &reading.channel == channel)
                .map(|reading| reading.metric)
                .collect();
            metrics.sort();
            metrics.dedup();
            EnergySource::choose(&metrics).map(|source| (channel, source))
        })
        .collect();

    let mut total = DeviceTotal {
        wh: 0.0,
        estimated_wh: 0.0,
        sources: Vec::new(),
        pieces: Vec::new(),
        unknown: Vec::new(),
    };
    if channel_sources.is_empty() && to_ms > from_ms {
        total.unknown.push(DeviceUnknownSpan {
            device: device.clone(),
            channel: None,
            start_ms: from_ms,
            end_ms: to_ms,
            cause: UnknownCause::NoData,
        });
        return Ok(total);
    }

    let window = Window {
        start_ms: from_ms,
        end_ms: to_ms,
    };
    for (channel, source) in channel_sources {
        let samples: Vec<(TimestampMs, f64)> = readings
            .iter()
            .filter(|r| &r.channel == channel && r.metric == source.metric())
            .map(|r| (r.ts_ms, r.value))
            .collect();
        let result = channel_energy(source, &samples, window).map_err(energy_error)?;

        total.wh += result.wh;
        if source.is_upper_bound() {
            total.estimated_wh += result.wh;
        }
        if !total.sources.contains(&source) {
            total.sources.push(source);
        }
        total.pieces.extend(result.pieces);
        for span in result.unknown_spans {
            total.unknown.push(DeviceUnknownSpan {
                device: device.clone(),
                channel: Some(channel.clone()),
                start_ms: span.start_ms,
                end_ms: span.end_ms,
                cause: span.cause,
            });
        }
    }
    total.sources.sort();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_id_rejects_slash() {
        assert!(site_id("a/b").is_err());
    }

    #[test]
    fn site_id_accepts_default() {
        assert_eq!(site_id("default").ok().as_deref(), Some("default"));
    }
}
