//! The five kinds of recommendation, each from measured series.

use jiff::Timestamp;

use se_core::{ChannelName, DeviceId, TimestampMs};
use se_energy::{DayType, EnergyCharge};

use crate::anomaly::{median, pair_finite, AnomalyReason, Point};

use super::{invalid, Action, Pricing, Recommendation, RecommendError};

/// Settings of [`recommend_power_cap`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerCapConfig {
    /// Share of the full hashrate the cap must keep.
    pub keep_share: f64,
    /// Width of the power bins in which hashrate is summarized, in W.
    pub bin_w: f64,
    /// The cap is rounded up to a multiple of this, in W.
    pub step_w: f64,
    /// Minimum number of busy readings (hashrate at least 20 % of its median).
    pub min_samples: usize,
    /// The observed powers must span at least this share of the highest one,
    /// or the curve of hashrate against power is unknown below the usual power.
    pub min_spread_share: f64,
    /// Smallest mean saving worth recommending, in W.
    pub min_saving_w: f64,
}

impl Default for PowerCapConfig {
    fn default() -> Self {
        Self { keep_share: 0.97, bin_w: 5.0, step_w: 5.0, min_samples: 50, min_spread_share: 0.15, min_saving_w: 3.0 }
    }
}

/// Recommends the lowest power limit that keeps `keep_share` of the GPU's
/// hashrate, from readings of power and hashrate taken at several power
/// levels (such as a sweep of power limits). Hashrate is summarized per
/// power bin by its median and made non-decreasing in power by isotonic
/// regression, because a higher limit never lowers the hashrate. The full
/// hashrate is the value at the highest bin. The saving is the mean of the
/// power above the cap over all readings, as if the GPU keeps its observed
/// duty. Returns `None` when the data cannot support a cap or the saving is
/// below `min_saving_w`.
pub fn recommend_power_cap(
    device: &DeviceId,
    channel: &ChannelName,
    power: &[Point],
    hashrate: &[Point],
    pricing: &Pricing,
    config: &PowerCapConfig,
) -> Result<Option<Recommendation>, RecommendError> {
    if !(config.keep_share > 0.0 && config.keep_share <= 1.0) {
        return Err(invalid("keep_share", config.keep_share, "a fraction above 0 and at most 1, such as 0.97"));
    }
    if !(config.bin_w > 0.0 && config.step_w > 0.0) {
        return Err(invalid("bin_w/step_w", format!("{}/{}", config.bin_w, config.step_w), "widths above 0 W, such as 5"));
    }
    check_sorted("power", power)?;
    check_sorted("hashrate", hashrate)?;

    let pairs: Vec<(f64, f64)> = pair_finite(power, hashrate).into_iter().filter(|p| p.1 > 0.0 && p.2 >= 0.0).map(|p| (p.1, p.2)).collect();
    let Some(typical_hashrate) = median(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()) else {
        return Ok(None);
    };
    let busy: Vec<(f64, f64)> = pairs.iter().copied().filter(|p| p.1 >= 0.2 * typical_hashrate).collect();
    if busy.len() < config.min_samples {
        return Ok(None);
    }

    // (median power, median hashrate, count) per power bin, in increasing power.
    let mut bins: std::collections::BTreeMap<i64, Vec<(f64, f64)>> = std::collections::BTreeMap::new();
    for (watts, hashes) in &busy {
        bins.entry((watts / config.bin_w).floor() as i64).or_default().push((*watts, *hashes));
    }
    let summary: Vec<(f64, f64, f64)> = bins
        .values()
        .filter(|bin| bin.len() >= 3)
        .filter_map(|bin| {
            let watts = median(&bin.iter().map(|p| p.0).collect::<Vec<_>>())?;
            let hashes = median(&bin.iter().map(|p| p.1).collect::<Vec<_>>())?;
            Some((watts, hashes, bin.len() as f64))
        })
        .collect();
    let (Some(lowest), Some(highest)) = (summary.first(), summary.last()) else {
        return Ok(None);
    };
    if (highest.0 - lowest.0) < config.min_spread_share * highest.0 {
        return Ok(None);
    }
    let fitted = isotonic(&summary.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>());
    let full = fitted[fitted.len() - 1];
    if full <= 0.0 {
        return Ok(None);
    }
    let Some(chosen) = fitted.iter().position(|h| *h >= config.keep_share * full) else {
        return Ok(None);
    };
    let limit_w = (summary[chosen].0 / config.step_w).ceil() * config.step_w;
    let kept_hashrate_pct = 100.0 * fitted[chosen] / full;

    let current_typical_w = median(&busy.iter().map(|p| p.0).collect::<Vec<_>>()).unwrap_or(0.0);
    let saved_w = pairs.iter().map(|(watts, _)| (watts - limit_w).max(0.0)).sum::<f64>() / pairs.len() as f64;
    if saved_w < config.min_saving_w {
        return Ok(None);
    }
    let estimate = pricing.estimate(&[saved_w; 24], &[0.0; 24])?;
    let action = Action::SetPowerLimit { limit_w, current_typical_w, kept_hashrate_pct };
    Ok(Some(Recommendation { device: device.clone(), channel: channel.clone(), action, estimate }))
}

/// Weighted isotonic (non-decreasing) regression by pool-adjacent-violators.
fn isotonic(values: &[(f64, f64)]) -> Vec<f64> {
    // Each block: (mean, weight, count of values).
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new();
    for (value, weight) in values {
        blocks.push((*value, *weight, 1));
        while blocks.len() >= 2 && blocks[blocks.len() - 2].0 > blocks[blocks.len() - 1].0 {
            let (Some(last), Some(previous)) = (blocks.pop(), blocks.pop()) else { break };
            let weight = previous.1 + last.1;
            blocks.push(((previous.0 * previous.1 + last.0 * last.1) / weight, weight, previous.2 + last.2));
        }
    }
    blocks.iter().flat_map(|(mean, _, count)| std::iter::repeat_n(*mean, *count)).collect()
}

/// A flexible load and the site's pricing, for [`recommend_off_peak_shift`].
#[derive(Debug, Clone)]
pub struct OffPeakInput<'a> {
    pub device: &'a DeviceId,
    pub channel: &'a ChannelName,
    /// Mean power of the flexible load for each local hour of a weekday, in W.
    pub profile_w: [f64; 24],
    /// Highest power the load can draw in one hour, in W; it caps how much
    /// energy one cheap hour can take.
    pub max_power_w: f64,
    /// Smallest energy worth moving, in kWh per day.
    pub min_kwh_per_day: f64,
}

/// Recommends moving a flexible load from expensive to cheap hours under a
/// time-of-use tariff. Energy moves from the most expensive weekday hours to
/// the cheapest ones, up to `max_power_w` in each hour, and only to hours with
/// a strictly lower price. Returns `None` for a tariff without time-of-use
/// prices or when less than `min_kwh_per_day` can move.
pub fn recommend_off_peak_shift(input: &OffPeakInput<'_>, pricing: &Pricing) -> Result<Option<Recommendation>, RecommendError> {
    if !(input.max_power_w.is_finite() && input.max_power_w > 0.0) {
        return Err(invalid("max_power_w", input.max_power_w, "the load's highest power in W, above 0"));
    }
    if let Some(bad) = input.profile_w.iter().find(|w| !w.is_finite() || **w < 0.0 || **w > input.max_power_w * 1.0001) {
        return Err(invalid("profile_w", bad, "mean powers from 0 W up to max_power_w for each hour"));
    }
    if !matches!(pricing.tariff.energy, EnergyCharge::TimeOfUse { .. }) {
        return Ok(None);
    }
    let mut prices = [se_energy::Decimal::ZERO; 24];
    for (hour, price) in prices.iter_mut().enumerate() {
        let Some(period) = pricing.tariff.period_at(DayType::Weekday, hour as u8) else {
            return Err(invalid("tariff", format!("hour {hour:02}"), "a time-of-use tariff that covers every weekday hour"));
        };
        *price = period.price_per_kwh;
    }

    let mut after = input.profile_w;
    let mut by_price_desc: Vec<usize> = (0..24).collect();
    by_price_desc.sort_by(|a, b| prices[*b].cmp(&prices[*a]).then(a.cmp(b)));
    let mut by_price_asc: Vec<usize> = (0..24).collect();
    by_price_asc.sort_by(|a, b| prices[*a].cmp(&prices[*b]).then(a.cmp(b)));
    let mut from_hours = Vec::new();
    let mut to_hours = Vec::new();
    let mut moved_wh = 0.0;
    for from in &by_price_desc {
        for to in &by_price_asc {
            if prices[*to] >= prices[*from] || after[*from] <= 0.0 {
                break;
            }
            let room = input.max_power_w - after[*to];
            if room <= 0.0 {
                continue;
            }
            let amount = room.min(after[*from]);
            after[*from] -= amount;
            after[*to] += amount;
            moved_wh += amount;
            from_hours.push(*from as u8);
            to_hours.push(*to as u8);
        }
    }
    let kwh_per_day = moved_wh / 1000.0;
    if kwh_per_day < input.min_kwh_per_day.max(1e-9) {
        return Ok(None);
    }
    let estimate = pricing.estimate(&input.profile_w, &after)?;
    from_hours.sort_unstable();
    from_hours.dedup();
    to_hours.sort_unstable();
    to_hours.dedup();
    let action = Action::ShiftToOffPeak { kwh_per_day, from_hours, to_hours };
    Ok(Some(Recommendation { device: input.device.clone(), channel: input.channel.clone(), action, estimate }))
}

/// Settings of [`recommend_idle_shutdown`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleConfig {
    /// A reading is idle below this utilization, in percent.
    pub idle_utilization_pct: f64,
    /// Standby power below this, in W, is not worth a recommendation.
    pub min_standby_w: f64,
    /// Minimum idle hours per day worth a recommendation.
    pub min_idle_hours_per_day: f64,
}

impl Default for IdleConfig {
    fn default() -> Self {
        Self { idle_utilization_pct: 5.0, min_standby_w: 5.0, min_idle_hours_per_day: 2.0 }
    }
}

/// Recommends switching off or suspending a device that is often idle while
/// drawing standby power. For each local hour of the day, the share of idle
/// readings gives the expected idle time of that hour. The standby power is
/// the median power of idle readings. The saving assumes the device draws
/// nothing when off.
pub fn recommend_idle_shutdown(
    device: &DeviceId,
    channel: &ChannelName,
    power: &[Point],
    utilization: &[Point],
    pricing: &Pricing,
    config: &IdleConfig,
) -> Result<Option<Recommendation>, RecommendError> {
    check_sorted("power", power)?;
    check_sorted("utilization", utilization)?;
    let pairs = pair_finite(power, utilization);
    let mut per_hour = [(0usize, 0usize); 24];
    let mut idle_watts = Vec::new();
    for (ts_ms, watts, load) in &pairs {
        let hour = local_hour(*ts_ms, pricing)?;
        per_hour[hour].0 += 1;
        if *load < config.idle_utilization_pct {
            per_hour[hour].1 += 1;
            idle_watts.push(*watts);
        }
    }
    let Some(standby_w) = median(&idle_watts) else {
        return Ok(None);
    };
    let shares: Vec<f64> = per_hour.iter().map(|(all, idle)| if *all == 0 { 0.0 } else { *idle as f64 / *all as f64 }).collect();
    let idle_hours_per_day: f64 = shares.iter().sum();
    if standby_w < config.min_standby_w || idle_hours_per_day < config.min_idle_hours_per_day {
        return Ok(None);
    }
    let mut before = [0.0; 24];
    for (hour, share) in shares.iter().enumerate() {
        before[hour] = standby_w * share;
    }
    let estimate = pricing.estimate(&before, &[0.0; 24])?;
    let action = Action::SwitchOffWhenIdle { standby_w, idle_hours_per_day };
    Ok(Some(Recommendation { device: device.clone(), channel: channel.clone(), action, estimate }))
}

/// Settings of [`recommend_power_factor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerFactorConfig {
    /// Power factors below this are recommended for correction.
    pub min_power_factor: f64,
    /// Power factor after correction.
    pub target: f64,
    /// Share of real power lost in the site's wiring at the present power
    /// factor, in percent. It is an assumption, not a measurement: 2 % is a
    /// common design figure for voltage drop in low-voltage installations.
    pub wiring_loss_pct: f64,
}

impl Default for PowerFactorConfig {
    fn default() -> Self {
        Self { min_power_factor: 0.9, target: 0.97, wiring_loss_pct: 2.0 }
    }
}

/// Recommends correcting a low power factor (real power over apparent
/// power, from energy-weighted sums of paired readings). Wiring loss goes
/// with the square of the current, and the current with 1 / power factor,
/// so raising the factor from `pf` to `target` cuts the loss by
/// `1 - (pf / target)²`.
// NOTE: se-energy tariffs have no reactive-energy or power-factor penalty, so
// the money saved counts only the kWh. Where the utility bills reactive
// energy, the real saving is larger.
pub fn recommend_power_factor(
    device: &DeviceId,
    channel: &ChannelName,
    real_power: &[Point],
    apparent_power: &[Point],
    pricing: &Pricing,
    config: &PowerFactorConfig,
) -> Result<Option<Recommendation>, RecommendError> {
    if !(config.min_power_factor > 0.0 && config.min_power_factor <= config.target && config.target <= 1.0) {
        return Err(invalid("power factor settings", format!("{}/{}", config.min_power_factor, config.target), "0 < min_power_factor <= target <= 1"));
    }
    if !(config.wiring_loss_pct.is_finite() && (0.0..=50.0).contains(&config.wiring_loss_pct)) {
        return Err(invalid("wiring_loss_pct", config.wiring_loss_pct, "a percentage from 0 to 50, such as 2"));
    }
    check_sorted("real power", real_power)?;
    check_sorted("apparent power", apparent_power)?;
    let pairs: Vec<_> = pair_finite(real_power, apparent_power).into_iter().filter(|p| p.2 > 0.0 && p.1 >= 0.0).collect();
    if pairs.is_empty() {
        return Ok(None);
    }
    let real: f64 = pairs.iter().map(|p| p.1).sum();
    let apparent: f64 = pairs.iter().map(|p| p.2).sum();
    let power_factor = (real / apparent).min(1.0);
    if power_factor >= config.min_power_factor {
        return Ok(None);
    }
    let mean_w = real / pairs.len() as f64;
    let saved_w = mean_w * config.wiring_loss_pct / 100.0 * (1.0 - (power_factor / config.target).powi(2));
    let estimate = pricing.estimate(&[saved_w; 24], &[0.0; 24])?;
    let action = Action::CorrectPowerFactor { power_factor, target: config.target };
    Ok(Some(Recommendation { device: device.clone(), channel: channel.clone(), action, estimate }))
}

/// A GPU whose efficiency drifted, for [`recommend_efficiency_service`].
#[derive(Debug, Clone)]
pub struct EfficiencyServiceInput<'a> {
    pub device: &'a DeviceId,
    pub channel: &'a ChannelName,
    /// Hashrate per watt before and now, in MH/s per W.
    pub baseline_mhs_per_w: f64,
    pub recent_mhs_per_w: f64,
    /// Mean power of the GPU, in W.
    pub mean_power_w: f64,
    /// Smallest drop worth a recommendation, in percent.
    pub min_drop_pct: f64,
}

impl<'a> EfficiencyServiceInput<'a> {
    /// Takes the efficiencies from an efficiency-drift anomaly; `None` for other kinds.
    pub fn from_anomaly(anomaly: &'a crate::anomaly::Anomaly, mean_power_w: f64) -> Option<Self> {
        let AnomalyReason::EfficiencyDrift { baseline, recent, .. } = anomaly.reason else {
            return None;
        };
        Some(Self { device: &anomaly.device, channel: &anomaly.channel, baseline_mhs_per_w: baseline, recent_mhs_per_w: recent, mean_power_w, min_drop_pct: 3.0 })
    }
}

/// Recommends servicing a GPU whose hashrate per watt dropped. Restoring the
/// baseline efficiency gives the same hashrate for `recent / baseline` of the
/// power, so the saving is `mean_power_w x (1 - recent / baseline)`.
pub fn recommend_efficiency_service(input: &EfficiencyServiceInput<'_>, pricing: &Pricing) -> Result<Option<Recommendation>, RecommendError> {
    for (name, value) in [("baseline_mhs_per_w", input.baseline_mhs_per_w), ("recent_mhs_per_w", input.recent_mhs_per_w), ("mean_power_w", input.mean_power_w)] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(invalid(name, value, "a finite value of 0 or more"));
        }
    }
    if input.baseline_mhs_per_w <= 0.0 {
        return Ok(None);
    }
    let remaining_share = input.recent_mhs_per_w / input.baseline_mhs_per_w;
    let drop_pct = 100.0 * (1.0 - remaining_share);
    if drop_pct < input.min_drop_pct {
        return Ok(None);
    }
    let saved_w = input.mean_power_w * (1.0 - remaining_share);
    let estimate = pricing.estimate(&[saved_w; 24], &[0.0; 24])?;
    let action = Action::ServiceGpu { drop_pct, mean_power_w: input.mean_power_w };
    Ok(Some(Recommendation { device: input.device.clone(), channel: input.channel.clone(), action, estimate }))
}

fn local_hour(ts_ms: TimestampMs, pricing: &Pricing) -> Result<usize, RecommendError> {
    let ts = Timestamp::from_millisecond(ts_ms).map_err(|_| invalid("reading time", ts_ms, "milliseconds since 1970 between the years -9999 and 9999"))?;
    Ok(usize::try_from(ts.to_zoned_datetime(pricing.time_zone.clone()).hour()).unwrap_or(0) % 24)
}

fn check_sorted(name: &'static str, points: &[Point]) -> Result<(), RecommendError> {
    match points.windows(2).position(|pair| pair[1].ts_ms < pair[0].ts_ms) {
        Some(index) => Err(invalid(name, format!("point {} at {} ms", index + 1, points[index + 1].ts_ms), "points sorted by time")),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(super) fn isotonic_for_tests(values: &[(f64, f64)]) -> Vec<f64> {
    isotonic(values)
}
