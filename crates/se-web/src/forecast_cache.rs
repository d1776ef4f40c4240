//! Hourly energy forecasts of sites and devices: loading their history
//! from the store, computing with se-analytics, and caching the results.
//!
//! A series is the hourly mean power in W of a device (summed over its
//! channels) or of a site (summed over its devices), which equals its
//! hourly energy in Wh. Hours are local clock hours of the site's time
//! zone. The history is the last [`HISTORY_HOURS`] complete hours, and the
//! forecast starts at the current hour.
//!
//! A result stays valid until the clock passes into the next hour. A
//! background task computes the forecasts of every site, and refreshes the
//! device forecasts that were requested, shortly after each hour starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use se_analytics::auto_forecast::{forecast_auto, AutoForecast, AutoForecastConfig};
use se_analytics::HourlySeries;
use se_core::{now_ms, DeviceId, Metric, TimestampMs};
use se_store::{SeriesQuery, Store};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

const HOUR_MS: i64 = 3_600_000;

/// Hours of history read for a forecast: ten weeks, so MSTL (which fits on
/// up to eight weeks) can be backtested over the two weeks before now.
pub(crate) const HISTORY_HOURS: i64 = 10 * 7 * 24;

/// Delay after the start of an hour before the background refresh, so the
/// readings of the hour just ended have been written.
const REFRESH_DELAY_MS: i64 = 60_000;

/// Subject of a forecast: a site or a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Site(String),
    Device(DeviceId),
}

/// A computed forecast with the history it was made from.
#[derive(Debug)]
pub(crate) struct Computed {
    /// Start of the current hour when it was computed; the cache key's clock.
    pub hour_ms: TimestampMs,
    pub computed_at_ms: TimestampMs,
    pub time_zone: String,
    /// Start of the first history hour.
    pub history_start_ms: TimestampMs,
    /// Hourly energy in Wh, gaps filled by interpolation.
    pub history: Vec<f64>,
    /// `false` for hours without any reading.
    pub observed: Vec<bool>,
    /// `None` when there is no reading to forecast from.
    pub forecast: Option<AutoForecast>,
}

type Key = (Target, usize);

/// Forecast results by target and horizon, valid for the hour they were computed in.
pub struct ForecastCache {
    entries: Mutex<HashMap<Key, Arc<Computed>>>,
    /// Serializes computations: forecasts are CPU-bound, and a second request
    /// for the same target waits and then finds the result in the cache.
    compute: tokio::sync::Mutex<()>,
}

impl Default for ForecastCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ForecastCache {
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            compute: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self, key: &Key, hour_ms: TimestampMs) -> Option<Arc<Computed>> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(key).filter(|entry| entry.hour_ms == hour_ms).cloned()
    }

    fn insert(&self, key: Key, value: Arc<Computed>) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.insert(key, value);
    }

    fn device_keys(&self) -> Vec<Key> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.keys().filter(|(target, _)| matches!(target, Target::Device(_))).cloned().collect()
    }

    /// Returns the forecast of `target` for the current hour, computing it if needed.
    pub(crate) async fn get(
        &self,
        store: &dyn Store,
        target: &Target,
        time_zone: &str,
        horizon_hours: usize,
    ) -> Result<Arc<Computed>, ApiError> {
        let zone = TimeZone::get(time_zone).map_err(|_| ApiError::InvalidTimeZone {
            value: time_zone.to_owned(),
        })?;
        let now = now_ms();
        let hour_ms = local_hour_start(now, &zone);
        let key = (target.clone(), horizon_hours);
        if let Some(found) = self.cached(&key, hour_ms) {
            return Ok(found);
        }
        let _computing = self.compute.lock().await;
        if let Some(found) = self.cached(&key, hour_ms) {
            return Ok(found);
        }
        let computed = Arc::new(compute(store, target, time_zone, zone, hour_ms, horizon_hours).await?);
        self.insert(key, computed.clone());
        Ok(computed)
    }
}

/// Loads the history of `target` and forecasts it.
async fn compute(
    store: &dyn Store,
    target: &Target,
    time_zone: &str,
    zone: TimeZone,
    hour_ms: TimestampMs,
    horizon_hours: usize,
) -> Result<Computed, ApiError> {
    let from_ms = hour_ms - HISTORY_HOURS * HOUR_MS;
    let hours = match target {
        Target::Site(site) => site_hours(store, site, from_ms, hour_ms).await?,
        Target::Device(device) => device_hours(store, device, from_ms, hour_ms).await?,
    };
    // The series starts at the first hour with a reading, so a new device
    // does not get weeks of history copied from its first value.
    let first = hours.iter().position(Option::is_some);
    let mut computed = Computed {
        hour_ms,
        computed_at_ms: now_ms(),
        time_zone: time_zone.to_owned(),
        history_start_ms: hour_ms,
        history: Vec::new(),
        observed: Vec::new(),
        forecast: None,
    };
    let Some(first) = first else {
        return Ok(computed);
    };
    let start_ms = from_ms + first as i64 * HOUR_MS;
    let start = Timestamp::from_millisecond(start_ms).map_err(|error| ApiError::Internal(error.to_string()))?;
    let series = HourlySeries::from_hourly_gaps(start, zone, &hours[first..])
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    computed.history_start_ms = start_ms;
    computed.history = series.values().to_vec();
    computed.observed = series.observed().to_vec();
    if series.len() < 2 {
        // One hour of data: too little for any model, reported as no forecast.
        return Ok(computed);
    }

    let started = std::time::Instant::now();
    let forecast = tokio::task::spawn_blocking(move || forecast_auto(&series, &AutoForecastConfig::new(horizon_hours)))
        .await
        .map_err(|error| ApiError::Internal(format!("the forecast task did not finish: {error}")))?
        .map_err(|error| ApiError::ForecastFailed { detail: error.to_string() })?;
    tracing::info!(
        target = ?target,
        horizon_hours,
        hours = computed.history.len(),
        model = %forecast.model,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "forecast computed"
    );
    computed.forecast = Some(forecast);
    Ok(computed)
}

/// Hourly energy in Wh of a device over `[from_ms, to_ms)`: the sum over its
/// channels of their hourly mean power. `None` marks hours in which no
/// channel reported.
///
/// NOTE: an hour in which only some channels reported sums only those, so
/// it is low when a channel drops out for a whole hour.
pub(crate) async fn device_hours(
    store: &dyn Store,
    device: &DeviceId,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
) -> Result<Vec<Option<f64>>, ApiError> {
    let hours = usize::try_from((to_ms - from_ms) / HOUR_MS).unwrap_or(0);
    let mut sums: Vec<Option<f64>> = vec![None; hours];
    let Some(summary) = store.device(device).await? else {
        return Ok(sums);
    };
    let channels = summary.latest.iter().filter(|latest| latest.metric == Metric::Power).map(|latest| latest.channel.clone());
    for channel in channels {
        let query = SeriesQuery {
            device: device.clone(),
            channel,
            metric: Metric::Power,
            from_ms,
            to_ms,
            // Buckets are (to - from) / max_points wide: exactly one hour.
            max_points: u32::try_from(hours).unwrap_or(u32::MAX),
        };
        for point in store.query_series(&query).await? {
            let Ok(index) = usize::try_from((point.ts_ms - from_ms) / HOUR_MS) else {
                continue;
            };
            if let Some(slot) = sums.get_mut(index) {
                *slot = Some(slot.unwrap_or(0.0) + point.mean);
            }
        }
    }
    Ok(sums)
}

/// Hourly energy in Wh of a site: the sum of its devices' hours.
pub(crate) async fn site_hours(
    store: &dyn Store,
    site: &str,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
) -> Result<Vec<Option<f64>>, ApiError> {
    let hours = usize::try_from((to_ms - from_ms) / HOUR_MS).unwrap_or(0);
    let mut sums: Vec<Option<f64>> = vec![None; hours];
    for device in store.site_devices(site).await? {
        let device_sums = device_hours(store, &device, from_ms, to_ms).await?;
        for (slot, value) in sums.iter_mut().zip(device_sums) {
            if let Some(value) = value {
                *slot = Some(slot.unwrap_or(0.0) + value);
            }
        }
    }
    Ok(sums)
}

/// Start of the local clock hour that contains `ms`. It uses the UTC offset
/// in force at that instant, so zones with half-hour offsets get their own
/// hour boundaries.
pub(crate) fn local_hour_start(ms: TimestampMs, zone: &TimeZone) -> TimestampMs {
    let offset_ms = Timestamp::from_millisecond(ms)
        .map(|instant| i64::from(zone.to_offset(instant).seconds()) * 1000)
        .unwrap_or(0);
    let local = ms + offset_ms;
    local - local.rem_euclid(HOUR_MS) - offset_ms
}

/// Horizons the background task computes for every site.
const SITE_HORIZONS: [usize; 2] = [24, 168];

/// Recomputes the forecasts of every site, and of the devices whose
/// forecasts were requested, shortly after each hour starts, until `shutdown`.
pub(crate) async fn refresh_loop(store: Arc<dyn Store>, cache: Arc<ForecastCache>, shutdown: CancellationToken) {
    loop {
        let now = now_ms();
        let next = now - now.rem_euclid(HOUR_MS) + HOUR_MS + REFRESH_DELAY_MS;
        let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        refresh_once(store.as_ref(), &cache).await;
    }
}

async fn refresh_once(store: &dyn Store, cache: &ForecastCache) {
    let sites = match store.list_sites().await {
        Ok(sites) => sites,
        Err(error) => {
            tracing::warn!(%error, "forecast refresh could not list the sites; retrying next hour");
            return;
        }
    };
    let mut refreshed = 0_usize;
    for site in &sites {
        for horizon in SITE_HORIZONS {
            let target = Target::Site(site.id.clone());
            match cache.get(store, &target, &site.time_zone, horizon).await {
                Ok(_) => refreshed += 1,
                Err(error) => tracing::warn!(site_id = %site.id, horizon, %error, "forecast refresh failed"),
            }
        }
    }
    for (target, horizon) in cache.device_keys() {
        let Target::Device(device) = &target else { continue };
        let zone = match device_time_zone(store, device).await {
            Ok(zone) => zone,
            Err(error) => {
                tracing::warn!(device_id = %device, %error, "forecast refresh could not find the device's site");
                continue;
            }
        };
        match cache.get(store, &target, &zone, horizon).await {
            Ok(_) => refreshed += 1,
            Err(error) => tracing::warn!(device_id = %device, horizon, %error, "forecast refresh failed"),
        }
    }
    tracing::info!(forecasts = refreshed, "forecast refresh done");
}

/// Time zone of the site of a device; UTC when the site vanished meanwhile.
pub(crate) async fn device_time_zone(store: &dyn Store, device: &DeviceId) -> Result<String, ApiError> {
    let site_id = store.device_site(device).await?;
    Ok(store.site(&site_id).await?.map_or_else(|| "UTC".to_owned(), |site| site.time_zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_start_in_utc() {
        assert_eq!(local_hour_start(7_250_000, &TimeZone::UTC), 7_200_000);
    }

    #[test]
    fn hour_start_in_half_hour_zone() {
        // Asia/Kolkata is UTC+05:30, so its hours start at half past in UTC.
        let zone = TimeZone::get("Asia/Kolkata").unwrap();
        assert_eq!(local_hour_start(7_250_000, &zone), 5_400_000);
    }
}
