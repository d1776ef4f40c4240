//! Runs the savings recommenders of se-analytics on a site's recent
//! readings and stores what they find. The background task and the run-now
//! route share [`run_site`].
//!
//! The series of every channel with power readings are read as 5-minute
//! means over the history window. Each recommender runs on the channels that
//! have the series it needs:
//! - power cap and GPU service: power and hashrate;
//! - switch off when idle: power and utilization;
//! - power factor: power and apparent power;
//! - off-peak shift: power alone, on channels other than `gpuN`, and only
//!   under a time-of-use tariff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use se_analytics::anomaly::{detect_efficiency_drift, gpu_index, EfficiencyDriftConfig, Point, SeriesKey};
use se_analytics::recommend::{
    recommend_efficiency_service, recommend_idle_shutdown, recommend_off_peak_shift, recommend_power_cap, recommend_power_factor, Action,
    EfficiencyServiceInput, IdleConfig, OffPeakInput, PowerCapConfig, PowerFactorConfig, Pricing, Recommendation, RecommendError,
};
use se_core::{now_ms, ChannelName, DeviceId, Metric, TimestampMs};
use se_energy::{DayType, Tariff};
use se_store::{KeptChannel, NewRecommendation, SeriesQuery, Site, Store, UpsertOutcome};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// Width of the means the recommenders read. Five minutes keeps a week of
/// one series at 2016 points while idle spells and power levels still show.
const BUCKET_MS: i64 = 5 * 60_000;

/// Smallest energy an off-peak shift must move to be recommended, in kWh per day.
const MIN_SHIFT_KWH_PER_DAY: f64 = 1.0;

/// When the background task runs, and how much history each run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecommendationSchedule {
    /// Delay from server start to the first run.
    pub first_run_after: Duration,
    /// Time between the start of one run and the next.
    pub interval: Duration,
    /// Readings read before the time of a run.
    pub history: Duration,
}

impl RecommendationSchedule {
    pub const DEFAULT_FIRST_RUN_AFTER: Duration = Duration::from_secs(60);
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3_600);
    pub const DEFAULT_HISTORY: Duration = Duration::from_secs(7 * 86_400);
}

impl Default for RecommendationSchedule {
    fn default() -> Self {
        Self { first_run_after: Self::DEFAULT_FIRST_RUN_AFTER, interval: Self::DEFAULT_INTERVAL, history: Self::DEFAULT_HISTORY }
    }
}

/// Outcome of one run for one site.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SiteRun {
    pub site: String,
    /// Devices of the site that were read.
    pub devices: usize,
    /// Recommendations the recommenders produced.
    pub recommendations: usize,
    /// Of those, stored as new open recommendations.
    pub created: usize,
    /// Of those, refreshing an open recommendation.
    pub refreshed: usize,
    /// Of those, not stored because the operator already applied or dismissed the same recommendation.
    pub decided: usize,
    /// Recommenders that failed on a channel's readings; each failure is logged.
    pub failures: usize,
    /// Open recommendations that this run did not produce again, now
    /// withdrawn. Those of a channel where a recommender failed stay open.
    pub withdrawn: usize,
    pub computed_at_ms: TimestampMs,
}

/// Runs every recommender on the site's readings of the `history` before
/// `now_ms` and stores the results.
pub async fn run_site(store: &dyn Store, site: &Site, history: Duration, now_ms: TimestampMs) -> Result<SiteRun, ApiError> {
    let pricing = SitePricing::of(site, now_ms)?;
    let to_ms = now_ms - now_ms.rem_euclid(BUCKET_MS);
    let history_ms = i64::try_from(history.as_millis()).unwrap_or(i64::MAX);
    let from_ms = to_ms.saturating_sub(history_ms);
    let from_ms = from_ms - from_ms.rem_euclid(BUCKET_MS);

    let devices = store.site_devices(&site.id).await?;
    let mut inputs = Vec::new();
    for device in &devices {
        inputs.extend(load_device(store, device, from_ms, to_ms).await?);
    }

    let site_id = site.id.clone();
    let (found, failures, failed_channels) = tokio::task::spawn_blocking(move || compute(&site_id, &inputs, &pricing))
        .await
        .map_err(|error| ApiError::Internal(format!("the recommendation task did not finish: {error}")))?;

    let mut run = SiteRun { site: site.id.clone(), devices: devices.len(), recommendations: found.len(), failures, computed_at_ms: now_ms, ..SiteRun::default() };
    for recommendation in found {
        let upsert = store.upsert_recommendation(&recommendation.into_new(&site.id, now_ms)).await?;
        match upsert.outcome {
            UpsertOutcome::Created => run.created += 1,
            UpsertOutcome::Refreshed => run.refreshed += 1,
            UpsertOutcome::Decided => run.decided += 1,
        }
    }
    run.withdrawn = store.withdraw_recommendations(&site.id, now_ms, &failed_channels).await?.len();
    Ok(run)
}

/// Runs [`run_site`] for every site. A site that fails is logged with its
/// id, and the others still run.
pub async fn run_all_sites(store: &dyn Store, history: Duration) {
    let started = std::time::Instant::now();
    let sites = match store.list_sites().await {
        Ok(sites) => sites,
        Err(error) => {
            tracing::error!(%error, "recommendation run could not list the sites; retrying at the next run");
            return;
        }
    };
    let mut totals = SiteRun::default();
    let mut failed_sites = 0_usize;
    for site in &sites {
        match run_site(store, site, history, now_ms()).await {
            Ok(run) => {
                totals.recommendations += run.recommendations;
                totals.created += run.created;
                totals.refreshed += run.refreshed;
                totals.decided += run.decided;
                totals.failures += run.failures;
                totals.withdrawn += run.withdrawn;
            }
            Err(error) => {
                failed_sites += 1;
                tracing::error!(site_id = %site.id, %error, "recommendation run failed for a site");
            }
        }
    }
    tracing::info!(
        sites = sites.len(),
        failed_sites,
        recommendations = totals.recommendations,
        created = totals.created,
        refreshed = totals.refreshed,
        already_decided = totals.decided,
        recommender_failures = totals.failures,
        withdrawn = totals.withdrawn,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recommendation run done"
    );
}

/// Runs the recommenders of every site `schedule.first_run_after` after the
/// start, then every `schedule.interval`, until `shutdown`.
pub async fn run_recommendations(store: Arc<dyn Store>, schedule: RecommendationSchedule, shutdown: CancellationToken) {
    tracing::info!(
        first_run_after_s = schedule.first_run_after.as_secs(),
        interval_s = schedule.interval.as_secs(),
        history_h = schedule.history.as_secs() / 3_600,
        "recommendation task started"
    );
    let start = tokio::time::Instant::now() + schedule.first_run_after;
    let mut ticks = tokio::time::interval_at(start, schedule.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A run stops at shutdown too: each recommendation is stored in its
        // own transaction, so an interrupted run leaves no partial row.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = run_all_sites(store.as_ref(), schedule.history) => {}
        }
    }
    tracing::info!("recommendation task stopped");
}

/// The tariff and calendar every estimate of a site is priced with.
struct SitePricing {
    tariff: Tariff,
    /// False when the site has no tariff: estimates are then priced at 0 and stored without money.
    priced: bool,
    zone: TimeZone,
    /// Local midnight of the run's day: the priced 30 days start there.
    month_start_ms: TimestampMs,
}

impl SitePricing {
    fn of(site: &Site, now_ms: TimestampMs) -> Result<SitePricing, ApiError> {
        let zone = TimeZone::get(&site.time_zone).map_err(|_| ApiError::InvalidTimeZone { value: site.time_zone.clone() })?;
        let (tariff, priced) = match &site.tariff_json {
            Some(json) => (Tariff::from_json(json).map_err(|error| ApiError::InvalidTariff { detail: error.to_string() })?, true),
            None => (unpriced_tariff(&site.currency)?, false),
        };
        let month_start_ms = Timestamp::from_millisecond(now_ms)
            .and_then(|now| now.to_zoned_datetime(zone.clone()).start_of_day())
            .map(|midnight| midnight.timestamp().as_millisecond())
            .map_err(|error| ApiError::Internal(format!("local midnight of {now_ms} ms: {error}")))?;
        Ok(SitePricing { tariff, priced, zone, month_start_ms })
    }

    fn for_channel(&self, site_base_w: f64) -> Pricing {
        Pricing { tariff: self.tariff.clone(), time_zone: self.zone.clone(), month_start_ms: self.month_start_ms, site_base_w }
    }
}

/// Builds a flat tariff of 0 per kWh, so a site without a tariff still gets its kWh estimates.
fn unpriced_tariff(currency: &str) -> Result<Tariff, ApiError> {
    Tariff::from_json(&format!(r#"{{"currency": "{currency}", "energy": {{"type": "flat", "price_per_kwh": "0"}}}}"#))
        .map_err(|error| ApiError::InvalidCurrency { value: format!("{currency} ({error})") })
}

/// A recommendation ready to store, with whether its amount of money is meaningful.
struct Found {
    recommendation: Recommendation,
    priced: bool,
}

impl Found {
    fn into_new(self, site_id: &str, computed_ms: TimestampMs) -> NewRecommendation {
        let Recommendation { device, channel, action, estimate } = self.recommendation;
        NewRecommendation {
            site_id: site_id.to_owned(),
            device,
            channel,
            action_type: action.code().to_owned(),
            // `compute` keeps only actions whose JSON reads back, so serializing here succeeds.
            action_json: serde_json::to_string(&action).unwrap_or_default(),
            kwh_per_month: estimate.kwh_per_month,
            money_per_month: self.priced.then_some(estimate.money_per_month),
            currency: estimate.currency,
            computed_ms,
        }
    }
}

/// The series of one power channel over the window, as 5-minute means.
struct ChannelInput {
    device: DeviceId,
    channel: ChannelName,
    power: Vec<Point>,
    utilization: Vec<Point>,
    hashrate: Vec<Point>,
    apparent_power: Vec<Point>,
}

impl ChannelInput {
    /// Mean power over the window, in W.
    fn mean_w(&self) -> f64 {
        let finite: Vec<f64> = self.power.iter().map(|point| point.value).filter(|value| value.is_finite()).collect();
        if finite.is_empty() {
            return 0.0;
        }
        finite.iter().sum::<f64>() / finite.len() as f64
    }
}

/// Reads the series of each power channel of a device that the recommenders
/// can use. Only series the device reported are queried.
async fn load_device(store: &dyn Store, device: &DeviceId, from_ms: TimestampMs, to_ms: TimestampMs) -> Result<Vec<ChannelInput>, ApiError> {
    let Some(summary) = store.device(device).await? else {
        return Ok(Vec::new());
    };
    let mut metrics: BTreeMap<ChannelName, Vec<Metric>> = BTreeMap::new();
    for latest in &summary.latest {
        metrics.entry(latest.channel.clone()).or_default().push(latest.metric);
    }
    let mut inputs = Vec::new();
    for (channel, has) in metrics {
        if !has.contains(&Metric::Power) {
            continue;
        }
        let mut series = BTreeMap::new();
        for metric in [Metric::Power, Metric::Utilization, Metric::Hashrate, Metric::ApparentPower] {
            let points = if has.contains(&metric) { means(store, device, &channel, metric, from_ms, to_ms).await? } else { Vec::new() };
            series.insert(metric.key(), points);
        }
        let mut take = |metric: Metric| series.remove(metric.key()).unwrap_or_default();
        let power = take(Metric::Power);
        if power.is_empty() {
            continue;
        }
        inputs.push(ChannelInput {
            device: device.clone(),
            channel,
            power,
            utilization: take(Metric::Utilization),
            hashrate: take(Metric::Hashrate),
            apparent_power: take(Metric::ApparentPower),
        });
    }
    Ok(inputs)
}

/// 5-minute means of one series over `[from_ms, to_ms)`, both multiples of
/// [`BUCKET_MS`], so every series of a run has the same bucket starts and
/// the recommenders can pair them by time.
async fn means(store: &dyn Store, device: &DeviceId, channel: &ChannelName, metric: Metric, from_ms: TimestampMs, to_ms: TimestampMs) -> Result<Vec<Point>, ApiError> {
    let buckets = u32::try_from((to_ms - from_ms) / BUCKET_MS).unwrap_or(u32::MAX).max(1);
    let query = SeriesQuery { device: device.clone(), channel: channel.clone(), metric, from_ms, to_ms, max_points: buckets };
    let points = store.query_series(&query).await?;
    Ok(points.into_iter().map(|point| Point::new(point.ts_ms, point.mean)).collect())
}

/// Mean power of the whole site, in W. A device with a `wall` channel
/// counts that channel alone, because its GPU channels are part of it.
fn site_mean_w(inputs: &[ChannelInput]) -> f64 {
    let mut by_device: BTreeMap<&DeviceId, (Option<f64>, f64)> = BTreeMap::new();
    for input in inputs {
        let entry = by_device.entry(&input.device).or_insert((None, 0.0));
        if input.channel.as_str() == se_analytics::anomaly::WALL_CHANNEL {
            entry.0 = Some(input.mean_w());
        } else {
            entry.1 += input.mean_w();
        }
    }
    by_device.values().map(|(wall, channels)| wall.unwrap_or(*channels)).sum()
}

/// Runs the recommenders on every channel. Returns the recommendations and
/// the number of recommenders that failed, each of which is logged.
fn compute(site_id: &str, inputs: &[ChannelInput], pricing: &SitePricing) -> (Vec<Found>, usize, Vec<KeptChannel>) {
    let site_w = site_mean_w(inputs);
    let mut found = Vec::new();
    let mut failures = 0;
    let mut failed_channels = Vec::new();
    for input in inputs {
        let failures_before = failures;
        let channel_pricing = pricing.for_channel((site_w - input.mean_w()).max(0.0));
        for (recommender, result) in run_channel(input, &channel_pricing, &pricing.tariff) {
            match result {
                Ok(Some(recommendation)) if action_round_trips(&recommendation.action) => found.push(Found { recommendation, priced: pricing.priced }),
                Ok(Some(recommendation)) => {
                    failures += 1;
                    tracing::warn!(site_id, device_id = %input.device, channel = %input.channel, recommender, action = ?recommendation.action, "recommendation dropped because its action has a number that is not finite");
                }
                Ok(None) => {}
                Err(error) => {
                    failures += 1;
                    tracing::warn!(site_id, device_id = %input.device, channel = %input.channel, recommender, %error, "recommender failed on the channel's readings");
                }
            }
        }
        if failures > failures_before {
            // A failed recommender gives no evidence against its recommendation, so the open one is not withdrawn.
            failed_channels.push(KeptChannel { device: input.device.clone(), channel: input.channel.clone() });
        }
    }
    (found, failures, failed_channels)
}

type Outcome = Result<Option<Recommendation>, RecommendError>;

/// Runs each recommender whose series the channel has, named for the log.
fn run_channel(input: &ChannelInput, pricing: &Pricing, tariff: &Tariff) -> Vec<(&'static str, Outcome)> {
    let (device, channel) = (&input.device, &input.channel);
    let mut outcomes = Vec::new();
    if !input.hashrate.is_empty() {
        outcomes.push(("power_cap", recommend_power_cap(device, channel, &input.power, &input.hashrate, pricing, &PowerCapConfig::default())));
        outcomes.push(("efficiency_service", efficiency_service(input, pricing)));
    }
    if !input.utilization.is_empty() {
        outcomes.push(("idle_shutdown", recommend_idle_shutdown(device, channel, &input.power, &input.utilization, pricing, &IdleConfig::default())));
    }
    if !input.apparent_power.is_empty() {
        outcomes.push(("power_factor", recommend_power_factor(device, channel, &input.power, &input.apparent_power, pricing, &PowerFactorConfig::default())));
    }
    // NOTE: the server cannot tell which loads may run at other hours, so
    // every non-GPU power channel is a candidate and the operator dismisses
    // shifts of loads that must run when they do. GPU channels are left out
    // because their rig's wall or main channel carries the same load.
    if gpu_index(channel).is_none() {
        if let Some((profile_w, max_power_w)) = weekday_profile(&input.power, tariff, &pricing.time_zone) {
            let shift = OffPeakInput { device, channel, profile_w, max_power_w, min_kwh_per_day: MIN_SHIFT_KWH_PER_DAY };
            outcomes.push(("off_peak_shift", recommend_off_peak_shift(&shift, pricing)));
        }
    }
    outcomes
}

/// Recommends servicing a GPU when its hashrate per watt drifted down over
/// the window, as the efficiency drift detector measures it.
fn efficiency_service(input: &ChannelInput, pricing: &Pricing) -> Outcome {
    let key = SeriesKey::new(input.device.clone(), input.channel.clone(), Metric::Hashrate);
    let anomalies = detect_efficiency_drift(&key, &input.hashrate, &input.power, &EfficiencyDriftConfig::default())
        .map_err(|error| RecommendError::InvalidInput { name: "hashrate and power", value: error.to_string(), expected: "series sorted by time" })?;
    let Some(service) = anomalies.iter().find_map(|anomaly| EfficiencyServiceInput::from_anomaly(anomaly, input.mean_w())) else {
        return Ok(None);
    };
    recommend_efficiency_service(&service, pricing)
}

/// Mean power per local hour of tariff weekdays, and the highest mean of
/// any single hour, from 5-minute means. `None` unless every hour of a
/// weekday has readings and no power is negative, such as a meter that
/// exports.
fn weekday_profile(power: &[Point], tariff: &Tariff, zone: &TimeZone) -> Option<([f64; 24], f64)> {
    let mut per_hour = [(0.0_f64, 0_usize); 24];
    let mut per_clock_hour: BTreeMap<TimestampMs, (f64, usize)> = BTreeMap::new();
    for point in power.iter().filter(|point| point.value.is_finite()) {
        let local = Timestamp::from_millisecond(point.ts_ms).ok()?.to_zoned_datetime(zone.clone());
        if tariff.day_type(local.date()) != DayType::Weekday {
            continue;
        }
        let hour = usize::try_from(local.hour()).ok()? % 24;
        per_hour[hour].0 += point.value;
        per_hour[hour].1 += 1;
        let clock_hour = point.ts_ms - point.ts_ms.rem_euclid(3_600_000);
        let entry = per_clock_hour.entry(clock_hour).or_insert((0.0, 0));
        entry.0 += point.value;
        entry.1 += 1;
    }
    let mut profile = [0.0; 24];
    for (hour, (sum, count)) in per_hour.iter().enumerate() {
        if *count == 0 {
            return None;
        }
        profile[hour] = sum / *count as f64;
    }
    if profile.iter().any(|watts| *watts < 0.0) {
        return None;
    }
    let max_power_w = per_clock_hour.values().map(|(sum, count)| sum / *count as f64).fold(0.0, f64::max);
    (max_power_w > 0.0).then_some((profile, max_power_w))
}

/// Returns whether the action's JSON reads back as an action. A number that
/// is not finite is written as `null`, which does not read back. The last
/// digit of a number may differ, because serde_json parses floats fast
/// rather than exactly, so the values are not compared.
fn action_round_trips(action: &Action) -> bool {
    serde_json::to_string(action).ok().and_then(|json| serde_json::from_str::<Action>(&json).ok()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(device: &str, channel: &str, watts: f64) -> ChannelInput {
        ChannelInput {
            device: DeviceId::parse(device).unwrap(),
            channel: ChannelName::parse(channel).unwrap(),
            power: (0..4).map(|step| Point::new(step * BUCKET_MS, watts)).collect(),
            utilization: Vec::new(),
            hashrate: Vec::new(),
            apparent_power: Vec::new(),
        }
    }

    #[test]
    fn site_power_counts_wall_once() {
        let inputs = [input("rig-1", "wall", 1000.0), input("rig-1", "gpu0", 400.0), input("rig-1", "gpu1", 400.0), input("plug-1", "main", 50.0)];
        assert_eq!(site_mean_w(&inputs), 1050.0);
    }

    #[test]
    fn site_power_sums_channels_without_wall() {
        let inputs = [input("rig-2", "gpu0", 200.0), input("rig-2", "gpu1", 210.0)];
        assert_eq!(site_mean_w(&inputs), 410.0);
    }

    #[test]
    fn weekday_profile_needs_every_hour() {
        let tariff = unpriced_tariff("EUR").unwrap();
        // 2024-04-01 is a Monday.
        let monday = 1_711_929_600_000;
        let full_day: Vec<Point> = (0..288).map(|step| Point::new(monday + step * BUCKET_MS, if step < 144 { 100.0 } else { 300.0 })).collect();
        let (profile, max_w) = weekday_profile(&full_day, &tariff, &TimeZone::UTC).unwrap();
        assert_eq!(profile[0], 100.0);
        assert_eq!(profile[23], 300.0);
        assert_eq!(max_w, 300.0);
        assert!(weekday_profile(&full_day[..200], &tariff, &TimeZone::UTC).is_none());
    }

    #[test]
    fn action_with_nan_is_dropped() {
        let finite = Action::SwitchOffWhenIdle { standby_w: 80.5, idle_hours_per_day: 12.0 };
        let broken = Action::SwitchOffWhenIdle { standby_w: f64::NAN, idle_hours_per_day: 12.0 };
        assert!(action_round_trips(&finite));
        assert!(!action_round_trips(&broken));
    }

    #[test]
    fn weekend_readings_are_left_out() {
        let tariff = unpriced_tariff("EUR").unwrap();
        // 2024-04-06 is a Saturday.
        let saturday = 1_712_361_600_000;
        let weekend: Vec<Point> = (0..288).map(|step| Point::new(saturday + step * BUCKET_MS, 100.0)).collect();
        assert!(weekday_profile(&weekend, &tariff, &TimeZone::UTC).is_none());
    }
}
