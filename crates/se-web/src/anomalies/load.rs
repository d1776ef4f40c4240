//! Reads what the anomaly scan needs from the store: raw readings of the
//! window, hourly means from the hour rollups, and the GPU model of each
//! device from its discovery announcement.

use std::collections::HashMap;

use se_analytics::anomaly::{DeviceSeries, Point, SiteDevice};
use se_core::{DeviceId, Metric, TimestampMs};
use se_store::{RawQuery, SeriesQuery, Store};

use crate::error::ApiError;

pub(super) const HOUR_MS: i64 = 3_600_000;

/// Metrics of the raw readings that the window detectors read.
const RAW_METRICS: [Metric; 3] = [Metric::Power, Metric::Utilization, Metric::PowerLimit];

/// Metrics of the hourly means that the daily pattern and efficiency drift read.
const HOURLY_METRICS: [Metric; 2] = [Metric::Power, Metric::Hashrate];

/// Period of hourly means to read, `[from_ms, to_ms)`, both on hour starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct HourRange {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
}

impl HourRange {
    /// Returns the complete hours from the hour that contains `from_ms` to
    /// the last one that ended by `now_ms`.
    pub(super) fn complete_hours(from_ms: TimestampMs, now_ms: TimestampMs) -> Self {
        Self { from_ms: from_ms.div_euclid(HOUR_MS) * HOUR_MS, to_ms: now_ms.div_euclid(HOUR_MS) * HOUR_MS }
    }
}

/// Returns the GPU model of every device that announced one. Only the
/// discovery announcement names a model, because the agent's telemetry
/// carries none.
pub(super) async fn device_models(store: &dyn Store) -> Result<HashMap<DeviceId, String>, ApiError> {
    let announced = store.discovered_devices(None).await?;
    Ok(announced.into_iter().filter_map(|device| device.model.map(|model| (device.device, model))).collect())
}

/// Reads one device: its raw readings over `[from_ms, to_ms]` and, when
/// `hours` is given, its hourly means over that range.
pub(super) async fn site_device(
    store: &dyn Store,
    device: DeviceId,
    model: Option<String>,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    hours: Option<HourRange>,
) -> Result<SiteDevice, ApiError> {
    let mut readings = Vec::new();
    for metric in RAW_METRICS {
        let query = RawQuery {
            device: device.clone(),
            channel: None,
            metric: Some(metric),
            from_ms,
            // The store's end bound is exclusive, and a reading at `to_ms` counts.
            to_ms: to_ms.saturating_add(1),
            limit: 0,
        };
        readings.extend(store.raw_readings(&query).await?);
    }
    let readings = DeviceSeries::from_readings(device.clone(), &readings);
    let hours = match hours {
        Some(range) => hourly_means(store, &device, range).await?,
        None => DeviceSeries::new(device),
    };
    Ok(SiteDevice { readings, hours, model })
}

/// Hourly means of the device's power and hashrate series over `range`,
/// each point at the start of its hour. Hours without a reading are missing.
async fn hourly_means(store: &dyn Store, device: &DeviceId, range: HourRange) -> Result<DeviceSeries, ApiError> {
    let mut hours = DeviceSeries::new(device.clone());
    let count = (range.to_ms - range.from_ms) / HOUR_MS;
    let Ok(max_points) = u32::try_from(count) else {
        return Ok(hours);
    };
    if max_points == 0 {
        return Ok(hours);
    }
    let Some(summary) = store.device(device).await? else {
        return Ok(hours);
    };
    for latest in summary.latest.iter().filter(|latest| HOURLY_METRICS.contains(&latest.metric)) {
        let query = SeriesQuery {
            device: device.clone(),
            channel: latest.channel.clone(),
            metric: latest.metric,
            from_ms: range.from_ms,
            to_ms: range.to_ms,
            // Buckets are (to - from) / max_points wide: one hour, which the
            // store reads from its hour rollups.
            max_points,
        };
        let mut points: Vec<Point> = store
            .query_series(&query)
            .await?
            .into_iter()
            .filter(|point| point.count > 0 && point.ts_ms >= range.from_ms && point.ts_ms < range.to_ms)
            .map(|point| Point::new(point.ts_ms, point.mean))
            .collect();
        points.sort_by_key(|point| point.ts_ms);
        hours.insert(latest.channel.clone(), latest.metric, points);
    }
    Ok(hours)
}
