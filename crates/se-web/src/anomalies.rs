//! Anomaly routes:
//! - `GET /api/v1/sites/{id}/anomalies?hours=N`
//! - `GET /api/v1/devices/{id}/anomalies?hours=N`
//!
//! Each request reads the last `hours` hours of the power, utilization and
//! power limit readings of the devices and runs
//! [`se_analytics::anomaly::scan_device`] on each device. Nothing is cached,
//! so every request scans again. Access rules are those of the forecast
//! routes.

use std::cmp::Reverse;

use axum::extract::State;
use axum::Json;
use se_analytics::anomaly::{scan_device, Anomaly, AnomalyKind, DeviceSeries, ScanConfig, Severity};
use se_core::{now_ms, ChannelName, DeviceId, Lang, Metric, TimestampMs};
use se_store::RawQuery;
use serde::{Deserialize, Serialize};

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::extract::{ApiQuery, DevicePath};
use crate::forecast::{accessible_device_site, accessible_site};
use crate::i18n::RequestLang;
use crate::params;
use crate::sites::SitePath;
use crate::WebState;

const HOUR_MS: i64 = 3_600_000;

/// Window scanned when `hours=` is missing.
pub(crate) const DEFAULT_HOURS: u32 = 6;

/// Maximum of `hours=`. Raw readings are read and scanned on every request,
/// so this bounds the work of one request.
pub(crate) const MAX_HOURS: u32 = 48;

/// Metrics the detectors read; the others are not fetched.
const SCANNED_METRICS: [Metric; 3] = [Metric::Power, Metric::Utilization, Metric::PowerLimit];

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
    /// Scanned window `[from_ms, to_ms]`; `to_ms` is the time of the request.
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    /// Critical first, then warnings, then information; newest first within a severity.
    anomalies: Vec<AnomalyView>,
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
    let devices = state.store.site_devices(&site.id).await?;
    let to_ms = now_ms();
    let from_ms = to_ms - i64::from(hours) * HOUR_MS;
    let anomalies = scan_devices(&state, devices, from_ms, to_ms, lang).await?;
    Ok(Json(AnomaliesResponse { site: site.id, device: None, hours, from_ms, to_ms, anomalies }))
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
    let to_ms = now_ms();
    let from_ms = to_ms - i64::from(hours) * HOUR_MS;
    let anomalies = scan_devices(&state, vec![device.clone()], from_ms, to_ms, lang).await?;
    Ok(Json(AnomaliesResponse { site: site.id, device: Some(device), hours, from_ms, to_ms, anomalies }))
}

/// Reads the scanned metrics of each device over `[from_ms, to_ms]`, scans
/// them on a blocking thread and returns the anomalies in response order.
async fn scan_devices(state: &WebState, devices: Vec<DeviceId>, from_ms: TimestampMs, to_ms: TimestampMs, lang: Lang) -> Result<Vec<AnomalyView>, ApiError> {
    let mut grouped = Vec::with_capacity(devices.len());
    for device in devices {
        let mut readings = Vec::new();
        for metric in SCANNED_METRICS {
            let query = RawQuery {
                device: device.clone(),
                channel: None,
                metric: Some(metric),
                from_ms,
                // The store's end bound is exclusive, and a reading at `to_ms` counts.
                to_ms: to_ms.saturating_add(1),
                limit: 0,
            };
            readings.extend(state.store.raw_readings(&query).await?);
        }
        grouped.push(DeviceSeries::from_readings(device, &readings));
    }

    let scanned = tokio::task::spawn_blocking(move || {
        let config = ScanConfig::default();
        let mut found = Vec::new();
        for device in grouped.iter().filter(|device| !device.is_empty()) {
            let anomalies = scan_device(device, to_ms, &config).map_err(|error| (device.device().clone(), error))?;
            found.extend(anomalies);
        }
        Ok(found)
    })
    .await
    .map_err(|error| ApiError::Internal(format!("the anomaly scan task failed: {error}")))?;
    // `DeviceSeries::from_readings` sorts every series, so an input error
    // here is a bug; the client gets a 500 and the log gets the details.
    let mut anomalies = scanned.map_err(|(device, error)| ApiError::Internal(format!("anomaly scan of device {device} failed: {error}")))?;

    sort_for_operators(&mut anomalies);
    Ok(anomalies.iter().map(|anomaly| AnomalyView::new(anomaly, lang)).collect())
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
