//! Anomaly routes:
//! - `GET /api/v1/sites/{id}/anomalies?hours=N`
//! - `GET /api/v1/devices/{id}/anomalies?hours=N`
//!
//! A scan reads the last `hours` hours of raw readings of the devices and
//! their hourly means over the days before, and runs
//! [`se_analytics::anomaly::scan_site`]. A device route scans the device
//! with the same-model devices of its site as peers and returns the
//! device's anomalies. Scans are cached for a minute by site or device and
//! window ([`cache`]). Access rules are those of the forecast routes.

mod cache;
mod load;

use std::cmp::Reverse;

use axum::extract::State;
use axum::Json;
use jiff::tz::TimeZone;
use se_analytics::anomaly::{same_gpu_model, scan_site, Anomaly, AnomalyKind, SiteScanConfig, Severity};
use se_core::{now_ms, ChannelName, DeviceId, Lang, Metric, TimestampMs};
use se_store::Site;
use serde::{Deserialize, Serialize};

pub(crate) use cache::AnomalyCache;
use cache::{Scan, Scope};
use load::{HourRange, HOUR_MS};

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::extract::{ApiQuery, DevicePath};
use crate::access::{accessible_device_site, accessible_site};
use crate::i18n::RequestLang;
use crate::params;
use crate::sites::SitePath;
use crate::WebState;

/// Window scanned when `hours=` is missing.
pub(crate) const DEFAULT_HOURS: u32 = 6;

/// Maximum of `hours=`. A scan reads every raw reading of the window, so
/// this bounds the work of one scan.
pub(crate) const MAX_HOURS: u32 = 48;

#[derive(Deserialize)]
pub(crate) struct AnomalyParams {
    hours: Option<String>,
}

/// One anomaly with its message in the request language.
#[derive(Debug, Serialize)]
pub(crate) struct AnomalyView {
    device: DeviceId,
    channel: ChannelName,
    metric: Metric,
    kind: AnomalyKind,
    severity: Severity,
    score: f64,
    start_ms: TimestampMs,
    end_ms: TimestampMs,
    message: String,
}

impl AnomalyView {
    fn new(anomaly: &Anomaly, lang: Lang) -> Self {
        Self {
            device: anomaly.device.clone(),
            channel: anomaly.channel.clone(),
            metric: anomaly.metric,
            kind: anomaly.kind,
            severity: anomaly.severity,
            score: anomaly.score,
            start_ms: anomaly.segment.start_ms,
            end_ms: anomaly.segment.end_ms,
            message: anomaly.message(lang),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct AnomaliesResponse {
    site: String,
    /// The device of a device route; `null` for a site.
    device: Option<DeviceId>,
    hours: u32,
    /// Scanned window of raw readings `[from_ms, to_ms]`. `to_ms` is the
    /// time the scan started, and a cached response keeps it.
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    /// Critical first, then warnings, then information; newest first within a severity.
    anomalies: Vec<AnomalyView>,
}

impl AnomaliesResponse {
    fn new(site: String, device: Option<DeviceId>, hours: u32, scan: &Scan, lang: Lang) -> Self {
        let anomalies = scan.anomalies.iter().map(|anomaly| AnomalyView::new(anomaly, lang)).collect();
        Self { site, device, hours, from_ms: scan.from_ms, to_ms: scan.to_ms, anomalies }
    }
}

fn window_hours(value: Option<&str>) -> Result<u32, ApiError> {
    params::bounded("hours", value, DEFAULT_HOURS, 1, MAX_HOURS)
}

/// `GET /api/v1/sites/{id}/anomalies?hours=N`
pub(crate) async fn site_anomalies(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    SitePath(id): SitePath,
    ApiQuery(query): ApiQuery<AnomalyParams>,
) -> Result<Json<AnomaliesResponse>, ApiError> {
    let hours = window_hours(query.hours.as_deref())?;
    let site = accessible_site(&state, &user, &id).await?;
    let scope = Scope::Site(site.id.clone());
    let scan = state.anomalies.get_or_scan(scope, hours, || scan_site_devices(&state, &site, None, hours)).await?;
    Ok(Json(AnomaliesResponse::new(site.id, None, hours, &scan, lang)))
}

/// `GET /api/v1/devices/{id}/anomalies?hours=N`
pub(crate) async fn device_anomalies(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    DevicePath(device): DevicePath,
    ApiQuery(query): ApiQuery<AnomalyParams>,
) -> Result<Json<AnomaliesResponse>, ApiError> {
    let hours = window_hours(query.hours.as_deref())?;
    let site = accessible_device_site(&state, &user, &device).await?;
    let scope = Scope::Device(device.clone());
    let scan = state.anomalies.get_or_scan(scope, hours, || scan_site_devices(&state, &site, Some(&device), hours)).await?;
    Ok(Json(AnomaliesResponse::new(site.id, Some(device), hours, &scan, lang)))
}

/// Scans the devices of `site` over the last `hours` hours, or only `device`
/// with the same-model devices of the site as peers, and returns the
/// anomalies in response order.
async fn scan_site_devices(state: &WebState, site: &Site, device: Option<&DeviceId>, hours: u32) -> Result<Scan, ApiError> {
    let started = std::time::Instant::now();
    let zone = TimeZone::get(&site.time_zone).map_err(|_| ApiError::InvalidTimeZone { value: site.time_zone.clone() })?;
    let config = SiteScanConfig::default();
    let to_ms = now_ms();
    let from_ms = to_ms - i64::from(hours) * HOUR_MS;
    let history = HourRange::complete_hours(config.history_start_ms(from_ms, to_ms), to_ms);

    let store = state.store.as_ref();
    let mut models = load::device_models(store).await?;
    let mut devices = Vec::new();
    match device {
        None => {
            for id in store.site_devices(&site.id).await? {
                let model = models.remove(&id);
                devices.push(load::site_device(store, id, model, from_ms, to_ms, Some(history)).await?);
            }
        }
        Some(scanned) => {
            let model = models.get(scanned).cloned();
            devices.push(load::site_device(store, scanned.clone(), model.clone(), from_ms, to_ms, Some(history)).await?);
            if let Some(model) = model {
                // Same-model peers need only their raw readings.
                for id in store.site_devices(&site.id).await?.into_iter().filter(|id| id != scanned) {
                    if let Some(peer_model) = models.remove(&id).filter(|peer_model| same_gpu_model(peer_model, &model)) {
                        devices.push(load::site_device(store, id, Some(peer_model), from_ms, to_ms, None).await?);
                    }
                }
            }
        }
    }

    let site_id = site.id.clone();
    let scanned = tokio::task::spawn_blocking(move || scan_site(&devices, from_ms, to_ms, &zone, &config))
        .await
        .map_err(|error| ApiError::Internal(format!("the anomaly scan task failed: {error}")))?;
    // The loaders sort every series, so an input error here is a bug; the
    // client gets a 500 and the log gets the details.
    let mut anomalies = scanned.map_err(|error| ApiError::Internal(format!("anomaly scan of site {site_id} failed: {error}")))?;
    if let Some(scanned) = device {
        anomalies.retain(|anomaly| &anomaly.device == scanned);
    }
    tracing::debug!(site_id = %site.id, device_id = ?device, hours, anomalies = anomalies.len(), elapsed_ms = started.elapsed().as_millis() as u64, "anomaly scan done");

    sort_for_operators(&mut anomalies);
    Ok(Scan { from_ms, to_ms, anomalies })
}

/// Sorts critical anomalies first, then newest first; ties by device and channel.
fn sort_for_operators(anomalies: &mut [Anomaly]) {
    anomalies.sort_by(|a, b| {
        (Reverse(a.severity), Reverse(a.segment.end_ms), &a.device, &a.channel, a.kind).cmp(&(Reverse(b.severity), Reverse(b.segment.end_ms), &b.device, &b.channel, b.kind))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use se_analytics::anomaly::{AnomalyReason, Segment};

    fn anomaly(device: &str, severity: Severity, end_ms: i64) -> Anomaly {
        let reason = AnomalyReason::Silent { gap_ms: 600_000, usual_interval_ms: 30_000, ongoing: false };
        let json = serde_json::json!({
            "device": device,
            "channel": "gpu0",
            "metric": "power_w",
            "kind": "silent",
            "severity": severity,
            "score": 20.0,
            "segment": Segment::new(end_ms - 600_000, end_ms),
            "reason": reason,
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn hours_accepts_range_and_default() {
        assert_eq!(window_hours(None).unwrap(), DEFAULT_HOURS);
        assert_eq!(window_hours(Some("1")).unwrap(), 1);
        assert_eq!(window_hours(Some("48")).unwrap(), 48);
    }

    #[test]
    fn hours_rejects_other_values() {
        for value in ["0", "49", "-1", "abc", "", "6.5"] {
            let error = window_hours(Some(value)).unwrap_err();
            assert!(matches!(error, ApiError::InvalidNumber { name: "hours", .. }), "{value}: {error:?}");
        }
    }

    #[test]
    fn severity_first_then_newest() {
        let mut anomalies = vec![
            anomaly("rig-1", Severity::Warning, 5_000_000),
            anomaly("rig-2", Severity::Critical, 1_000_000),
            anomaly("rig-3", Severity::Warning, 9_000_000),
            anomaly("rig-4", Severity::Info, 9_900_000),
            anomaly("rig-5", Severity::Critical, 2_000_000),
        ];
        sort_for_operators(&mut anomalies);
        let order: Vec<&str> = anomalies.iter().map(|anomaly| anomaly.device.as_str()).collect();
        assert_eq!(order, ["rig-5", "rig-2", "rig-3", "rig-1", "rig-4"]);
    }
}
