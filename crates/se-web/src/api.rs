//! Handlers of the data routes under `/api/v1`. Each one extracts and
//! validates its input, calls the store and returns JSON; errors go through
//! [`ApiError`].

use std::collections::HashSet;

use axum::extract::State;
use axum::Json;
use se_core::{now_ms, DeviceId, Lang, RejectReason};
use se_store::{
    DeviceSummary, IngestErrorCount, IngestErrorQuery, IngestErrorRecord, RawQuery, Role, SeriesPoint,
    SeriesQuery, StoreStats,
};
use serde::{Deserialize, Serialize};

use crate::auth::{AdminUser, CurrentUser};
use crate::error::ApiError;
use crate::extract::{ApiQuery, DevicePath};
use crate::access::accessible_device_site;
use crate::i18n::{catalog, lang_from_code, RequestLang};
use crate::params;
use crate::WebState;

/// Every reject reason, for filters and error messages.
pub(crate) const ALL_REASONS: [RejectReason; 13] = [
    RejectReason::UnparsablePayload,
    RejectReason::UnknownTopic,
    RejectReason::InvalidDeviceId,
    RejectReason::InvalidChannel,
    RejectReason::UnknownMetric,
    RejectReason::WrongUnit,
    RejectReason::EmptyValue,
    RejectReason::NotANumber,
    RejectReason::Infinite,
    RejectReason::Negative,
    RejectReason::OutOfRange,
    RejectReason::InvalidTimestamp,
    RejectReason::NoReadings,
];

/// Fails to compile when se-core gains a reason that [`ALL_REASONS`] lacks.
#[allow(dead_code)]
fn all_reasons_is_exhaustive(reason: RejectReason) {
    use RejectReason::*;
    match reason {
        UnparsablePayload | UnknownTopic | InvalidDeviceId | InvalidChannel | UnknownMetric
        | WrongUnit | EmptyValue | NotANumber | Infinite | Negative | OutOfRange
        | InvalidTimestamp | NoReadings => {}
    }
}

/// Default and maximum number of chart buckets per series request.
const DEFAULT_POINTS: u32 = 500;
const MAX_POINTS: u32 = 10_000;

/// Default and maximum number of raw readings per request.
const DEFAULT_READINGS: u32 = 1000;
const MAX_READINGS: u32 = 100_000;

/// Default and maximum number of recent rejected values per request.
const DEFAULT_INGEST_ERRORS: u32 = 100;
const MAX_INGEST_ERRORS: u32 = 10_000;

/// `GET /api/v1/devices`
pub(crate) async fn list_devices(
    State(state): State<WebState>,
    user: CurrentUser,
) -> Result<Json<Vec<DeviceSummary>>, ApiError> {
    let mut devices = state.store.list_devices().await?;
    if let Some(owned) = owned_devices(&state, &user).await? {
        devices.retain(|device| owned.contains(&device.id));
    }
    Ok(Json(devices))
}

/// Returns the devices on a building owner's sites, or `None` for an admin,
/// who may read every device.
pub(crate) async fn owned_devices(state: &WebState, user: &CurrentUser) -> Result<Option<HashSet<DeviceId>>, ApiError> {
    if user.role != Role::BuildingOwner {
        return Ok(None);
    }
    let mut owned = HashSet::new();
    for site in state.store.sites_of_user(user.id).await? {
        owned.extend(state.store.site_devices(&site.id).await?);
    }
    Ok(Some(owned))
}

/// Returns the device if `user` may read it: an admin any known device, a
/// building owner only a device on one of their sites (`device_forbidden`
/// otherwise, as on the forecast routes).
pub(crate) async fn visible_device(state: &WebState, user: &CurrentUser, device: &DeviceId) -> Result<DeviceSummary, ApiError> {
    if user.role == Role::BuildingOwner {
        accessible_device_site(state, user, device).await?;
    }
    known_device(state, device).await
}

pub(crate) async fn known_device(state: &WebState, device: &DeviceId) -> Result<DeviceSummary, ApiError> {
    state
        .store
        .device(device)
        .await?
        .ok_or_else(|| ApiError::DeviceNotFound {
            value: device.to_string(),
        })
}

/// `GET /api/v1/devices/{id}`
pub(crate) async fn get_device(
    State(state): State<WebState>,
    user: CurrentUser,
    DevicePath(device): DevicePath,
) -> Result<Json<DeviceSummary>, ApiError> {
    Ok(Json(visible_device(&state, &user, &device).await?))
}

#[derive(Deserialize)]
pub(crate) struct SeriesParams {
    channel: Option<String>,
    metric: Option<String>,
    from: Option<String>,
    to: Option<String>,
    range: Option<String>,
    points: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct SeriesResponse {
    device: DeviceId,
    channel: se_core::ChannelName,
    metric: se_core::Metric,
    unit: &'static str,
    from_ms: i64,
    to_ms: i64,
    points: Vec<SeriesPoint>,
}

/// `GET /api/v1/devices/{id}/series?channel&metric&(range | from&to)&points`
pub(crate) async fn series(
    State(state): State<WebState>,
    user: CurrentUser,
    DevicePath(device): DevicePath,
    ApiQuery(query): ApiQuery<SeriesParams>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let channel = params::channel(
        query
            .channel
            .as_deref()
            .ok_or(ApiError::MissingParameter { name: "channel" })?,
    )?;
    let metric = params::metric(
        query
            .metric
            .as_deref()
            .ok_or(ApiError::MissingParameter { name: "metric" })?,
    )?;
    let (from_ms, to_ms) = params::time_span(
        query.range.as_deref(),
        query.from.as_deref(),
        query.to.as_deref(),
        now_ms(),
    )?;
    let max_points = params::bounded(
        "points",
        query.points.as_deref(),
        DEFAULT_POINTS,
        1,
        MAX_POINTS,
    )?;
    let summary = visible_device(&state, &user, &device).await?;
    // A typo in the channel or metric would otherwise draw an empty chart.
    if !summary.latest.iter().any(|latest| latest.channel == channel && latest.metric == metric) {
        let mut known: Vec<String> = summary.latest.iter().map(|latest| format!("{}/{}", latest.channel, latest.metric.key())).collect();
        known.sort();
        return Err(ApiError::SeriesNotFound {
            device: device.to_string(),
            value: format!("{channel}/{}", metric.key()),
            known: if known.is_empty() { "-".to_owned() } else { known.join(", ") },
        });
    }

    let series_query = SeriesQuery {
        device: device.clone(),
        channel: channel.clone(),
        metric,
        from_ms,
        to_ms,
        max_points,
    };
    let points = state.store.query_series(&series_query).await?;
    Ok(Json(SeriesResponse {
        device,
        channel,
        metric,
        unit: metric.unit(),
        from_ms,
        to_ms,
        points,
    }))
}

#[derive(Deserialize)]
pub(crate) struct ReadingsParams {
    channel: Option<String>,
    metric: Option<String>,
    from: Option<String>,
    to: Option<String>,
    range: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/devices/{id}/readings?[channel]&[metric]&(range | from&to)&limit`
pub(crate) async fn readings(
    State(state): State<WebState>,
    user: CurrentUser,
    DevicePath(device): DevicePath,
    ApiQuery(query): ApiQuery<ReadingsParams>,
) -> Result<Json<Vec<se_core::Reading>>, ApiError> {
    let channel = query.channel.as_deref().map(params::channel).transpose()?;
    let metric = query.metric.as_deref().map(params::metric).transpose()?;
    let (from_ms, to_ms) = params::time_span(
        query.range.as_deref(),
        query.from.as_deref(),
        query.to.as_deref(),
        now_ms(),
    )?;
    let limit = params::bounded(
        "limit",
        query.limit.as_deref(),
        DEFAULT_READINGS,
        1,
        MAX_READINGS,
    )?;
    visible_device(&state, &user, &device).await?;

    let raw_query = RawQuery {
        device,
        channel,
        metric,
        from_ms,
        to_ms,
        limit,
    };
    Ok(Json(state.store.raw_readings(&raw_query).await?))
}

#[derive(Deserialize)]
pub(crate) struct IngestErrorParams {
    device: Option<String>,
    reason: Option<String>,
    limit: Option<String>,
}

/// A reject reason with its description in the request language.
#[derive(Serialize)]
pub(crate) struct ReasonInfo {
    code: RejectReason,
    text: &'static str,
}

#[derive(Serialize)]
pub(crate) struct DescribedCount {
    #[serde(flatten)]
    count: IngestErrorCount,
    reason_text: &'static str,
}

#[derive(Serialize)]
pub(crate) struct DescribedRecord {
    #[serde(flatten)]
    record: IngestErrorRecord,
    reason_text: &'static str,
}

#[derive(Serialize)]
pub(crate) struct IngestErrorsResponse {
    counts: Vec<DescribedCount>,
    recent: Vec<DescribedRecord>,
    /// Every reason with its description, for filter menus.
    reasons: Vec<ReasonInfo>,
}

/// `GET /api/v1/ingest/errors?[device]&[reason]&[limit]`
pub(crate) async fn ingest_errors(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    ApiQuery(query): ApiQuery<IngestErrorParams>,
) -> Result<Json<IngestErrorsResponse>, ApiError> {
    let device = query
        .device
        .as_deref()
        .filter(|value| !value.is_empty())
        .map(params::device_id)
        .transpose()?;
    let reason = query
        .reason
        .as_deref()
        .filter(|value| !value.is_empty())
        .map(|value| {
            value
                .parse::<RejectReason>()
                .map_err(|_| ApiError::UnknownReason {
                    value: value.to_owned(),
                })
        })
        .transpose()?;
    let limit = params::bounded(
        "limit",
        query.limit.as_deref(),
        DEFAULT_INGEST_ERRORS,
        1,
        MAX_INGEST_ERRORS,
    )?;

    if let Some(device) = &device {
        if user.role == Role::BuildingOwner {
            accessible_device_site(&state, &user, device).await?;
        }
    }

    let mut report = state
        .store
        .ingest_errors(&IngestErrorQuery {
            device,
            reason,
            limit,
        })
        .await?;
    // A building owner sees only the rejected values of devices on their
    // sites, which leaves out those with no device id (unknown topics).
    if let Some(owned) = owned_devices(&state, &user).await? {
        let visible = |device: &Option<DeviceId>| device.as_ref().is_some_and(|id| owned.contains(id));
        report.counts.retain(|count| visible(&count.device));
        report.recent.retain(|record| visible(&record.device));
    }
    Ok(Json(describe_report(report, lang)))
}

fn describe_report(report: se_store::IngestErrorReport, lang: Lang) -> IngestErrorsResponse {
    let counts = report
        .counts
        .into_iter()
        .map(|count| DescribedCount {
            reason_text: count.reason.describe(lang),
            count,
        })
        .collect();
    let recent = report
        .recent
        .into_iter()
        .map(|record| DescribedRecord {
            reason_text: record.reason.describe(lang),
            record,
        })
        .collect();
    let reasons = ALL_REASONS
        .iter()
        .map(|reason| ReasonInfo {
            code: *reason,
            text: reason.describe(lang),
        })
        .collect();
    IngestErrorsResponse {
        counts,
        recent,
        reasons,
    }
}

/// `GET /api/v1/stats` (admin only): counts over the whole store, which
/// would tell a building owner about other owners' devices.
pub(crate) async fn stats(
    State(state): State<WebState>,
    AdminUser(_admin): AdminUser,
) -> Result<Json<StoreStats>, ApiError> {
    Ok(Json(state.store.stats().await?))
}

/// `GET /api/v1/i18n/{lang}`: every UI string of a language; no session needed.
pub(crate) async fn i18n(
    axum::extract::Path(code): axum::extract::Path<String>,
) -> Result<Json<&'static crate::i18n::Catalog>, ApiError> {
    let lang = lang_from_code(&code).ok_or(ApiError::UnknownLanguage { value: code })?;
    Ok(Json(catalog(lang)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_reason_codes_parse_back() {
        for reason in ALL_REASONS {
            assert_eq!(reason.code().parse::<RejectReason>(), Ok(reason));
        }
    }
}
