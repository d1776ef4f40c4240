//! Data sets of the storage benchmark, produced in time-ordered chunks so
//! that each system loads exactly the same values without holding a year of
//! readings in memory.
//!
//! - `gpu-trace`: an nvidia-smi CSV file, read with the project's own decoder.
//! - `farm`: rigs of the fleet simulator's GPU model, five metrics per GPU.
//! - `site`: power of many GPUs over a long span, for the site chart query.
//!
//! The generated sets use one seeded random generator stepped in a fixed
//! order, so a data set is the same every time it is generated.

use std::path::Path;

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::SeedableRng;

use se_core::{ChannelName, DeviceId, Metric, TimestampMs};
use se_decode::{parse_nvidia_smi_csv, NvidiaSmiOptions};
use se_sim::GpuModel;

/// The metrics of one simulated GPU, in the order the fleet simulator sends them.
pub const FARM_METRICS: [Metric; 5] = [Metric::Power, Metric::Utilization, Metric::Temperature, Metric::FanSpeed, Metric::PowerLimit];

/// One stored series: the key every system stores it under.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub device: DeviceId,
    pub channel: ChannelName,
    pub metric: Metric,
}

/// One reading of the series at index `series` of the data set.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub series: u32,
    pub ts_ms: TimestampMs,
    pub value: f64,
}

/// A data set: its series and a way to produce its points chunk by chunk.
pub struct DataSet {
    pub name: &'static str,
    pub description: String,
    pub series: Vec<SeriesSpec>,
    pub total_points: u64,
    pub from_ms: TimestampMs,
    /// Exclusive end: every point is before it.
    pub to_ms: TimestampMs,
    source: Source,
}

enum Source {
    /// A file small enough to keep in memory.
    Loaded(Vec<Point>),
    Simulated(SimulatedPlan),
}

#[derive(Clone)]
struct SimulatedPlan {
    gpus_per_rig: usize,
    /// Number of GPUs actually used (the last rig may be partly filled).
    gpus: usize,
    metrics: Vec<Metric>,
    steps: u64,
    interval_ms: i64,
    seed: u64,
}

/// Produces the chunks of one data set; each call to [`DataSet::chunks`] starts over.
pub struct Chunks<'a> {
    set: &'a DataSet,
    position: u64,
    gpus: Vec<GpuModel>,
    rng: StdRng,
}

/// Points per chunk, about: small enough to keep memory low, large enough for fast batched writes.
const CHUNK_POINTS: usize = 100_000;

impl DataSet {
    /// Reads an nvidia-smi CSV file (GPUs in bursts, no index column) as device `gpu-trace`.
    pub fn gpu_trace(path: &Path) -> anyhow::Result<DataSet> {
        let file = std::fs::File::open(path).with_context(|| format!("open the GPU trace {}; pass --gpu-trace PATH", path.display()))?;
        let device = DeviceId::parse("gpu-trace").context("device id gpu-trace")?;
        let options = NvidiaSmiOptions::new(device, jiff::tz::TimeZone::UTC, se_core::now_ms());
        let decoded = parse_nvidia_smi_csv(std::io::BufReader::new(file), &options);
        if decoded.readings.is_empty() {
            bail!("{} contains no readings; it must be nvidia-smi --format=csv output", path.display());
        }
        if !decoded.rejections.is_empty() {
            // The decoder rejects, among others, the rows of a burst with fewer rows than GPUs.
            eprintln!("  gpu-trace: the decoder rejected {} rows or values of {}; they are left out", decoded.rejections.len(), path.display());
        }

        let mut series: Vec<SeriesSpec> = Vec::new();
        let mut points = Vec::with_capacity(decoded.readings.len());
        for reading in &decoded.readings {
            let index = match series.iter().position(|spec| spec.channel == reading.channel && spec.metric == reading.metric) {
                Some(index) => index,
                None => {
                    series.push(SeriesSpec { device: reading.device.clone(), channel: reading.channel.clone(), metric: reading.metric });
                    series.len() - 1
                }
            };
            points.push(Point { series: index as u32, ts_ms: reading.ts_ms, value: reading.value });
        }
        // One value per series and instant, as every compared system keeps it.
        points.sort_by_key(|point| (point.ts_ms, point.series));
        let decoded_count = points.len();
        points.dedup_by(|later, earlier| later.ts_ms == earlier.ts_ms && later.series == earlier.series);
        if points.len() < decoded_count {
            eprintln!("  gpu-trace: left out {} readings that repeat a series and timestamp", decoded_count - points.len());
        }
        let from_ms = points.first().map_or(0, |point| point.ts_ms);
        let to_ms = points.last().map_or(0, |point| point.ts_ms) + 1;
        Ok(DataSet {
            name: "gpu-trace",
            description: format!("{}: {} series, {} readings", path.display(), series.len(), points.len()),
            series,
            total_points: points.len() as u64,
            from_ms,
            to_ms,
            source: Source::Loaded(points),
        })
    }

    /// A farm of `rigs` rigs with `gpus_per_rig` GPUs each, five metrics per
    /// GPU every `interval_ms`, for `days` days ending at `end_ms`.
    pub fn farm(rigs: usize, gpus_per_rig: usize, days: f64, interval_ms: i64, end_ms: TimestampMs) -> anyhow::Result<DataSet> {
        let gpus = rigs * gpus_per_rig;
        let plan = simulated_plan(rigs, gpus_per_rig, gpus, FARM_METRICS.to_vec(), days, interval_ms, 11)?;
        let description = format!("{rigs} rigs x {gpus_per_rig} GPUs x {} metrics every {} s for {days} days", FARM_METRICS.len(), interval_ms / 1000);
        Ok(simulated_set("farm", description, "farm", plan, end_ms))
    }

    /// GPU power of `series` GPUs (8 per rig) every `interval_ms` for `days` days ending at `end_ms`.
    pub fn site(series: usize, days: f64, interval_ms: i64, end_ms: TimestampMs) -> anyhow::Result<DataSet> {
        let rigs = series.div_ceil(8);
        let plan = simulated_plan(rigs, 8, series, vec![Metric::Power], days, interval_ms, 23)?;
        let description = format!("{series} GPU power series every {} s for {days} days", interval_ms / 1000);
        Ok(simulated_set("site", description, "site", plan, end_ms))
    }

    /// Starts producing the points from the beginning.
    pub fn chunks(&self) -> Chunks<'_> {
        let (gpus, rng) = match &self.source {
            Source::Loaded(_) => (Vec::new(), StdRng::seed_from_u64(0)),
            Source::Simulated(plan) => {
                let mut rng = StdRng::seed_from_u64(plan.seed);
                let gpus = (0..plan.gpus).map(|_| GpuModel::new(&mut rng)).collect();
                (gpus, rng)
            }
        };
        Chunks { set: self, position: 0, gpus, rng }
    }

}

fn simulated_plan(
    rigs: usize,
    gpus_per_rig: usize,
    gpus: usize,
    metrics: Vec<Metric>,
    days: f64,
    interval_ms: i64,
    seed: u64,
) -> anyhow::Result<SimulatedPlan> {
    if rigs == 0 || gpus == 0 {
        bail!("a simulated data set needs at least one rig and one GPU, got {rigs} rigs and {gpus} GPUs");
    }
    if !(days > 0.0) || interval_ms <= 0 {
        bail!("a simulated data set needs a positive span and interval, got {days} days every {interval_ms} ms");
    }
    let steps = (days * 86_400_000.0 / interval_ms as f64).floor() as u64;
    Ok(SimulatedPlan { gpus_per_rig, gpus, metrics, steps, interval_ms, seed })
}

fn simulated_set(name: &'static str, description: String, prefix: &str, plan: SimulatedPlan, end_ms: TimestampMs) -> DataSet {
    let mut series = Vec::with_capacity(plan.gpus * plan.metrics.len());
    for gpu in 0..plan.gpus {
        let rig = gpu / plan.gpus_per_rig;
        // Names are ASCII letters, digits and dashes, which both parsers accept.
        let device = DeviceId::parse(&format!("{prefix}-rig-{:03}", rig + 1)).unwrap_or_else(|error| unreachable!("{error}"));
        let channel = ChannelName::parse(&format!("gpu{}", gpu % plan.gpus_per_rig)).unwrap_or_else(|error| unreachable!("{error}"));
        for metric in &plan.metrics {
            series.push(SeriesSpec { device: device.clone(), channel: channel.clone(), metric: *metric });
        }
    }
    let span = plan.steps as i64 * plan.interval_ms;
    let from_ms = end_ms - span;
    let total_points = plan.steps * series.len() as u64;
    DataSet { name, description, series, total_points, from_ms, to_ms: end_ms, source: Source::Simulated(plan) }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

impl Iterator for Chunks<'_> {
    type Item = Vec<Point>;

    fn next(&mut self) -> Option<Vec<Point>> {
        match &self.set.source {
            Source::Loaded(points) => {
                let start = self.position as usize;
                if start >= points.len() {
                    return None;
                }
                let end = (start + CHUNK_POINTS).min(points.len());
                self.position = end as u64;
                Some(points[start..end].to_vec())
            }
            Source::Simulated(plan) => {
                if self.position >= plan.steps {
                    return None;
                }
                let per_step = plan.gpus * plan.metrics.len();
                let steps = (CHUNK_POINTS / per_step).max(1) as u64;
                let last = (self.position + steps).min(plan.steps);
                let dt_s = plan.interval_ms as f64 / 1000.0;
                let mut points = Vec::with_capacity((last - self.position) as usize * per_step);
                for step in self.position..last {
                    let ts_ms = self.set.from_ms + step as i64 * plan.interval_ms;
                    for (gpu_index, gpu) in self.gpus.iter_mut().enumerate() {
                        let sample = gpu.step(&mut self.rng, dt_s);
                        for (metric_index, metric) in plan.metrics.iter().enumerate() {
                            // Rounded to 0.1 as the fleet simulator publishes them.
                            let value = match metric {
                                Metric::Power => round1(sample.power_w),
                                Metric::Utilization => round1(sample.utilization_pct),
                                Metric::Temperature => round1(sample.temperature_c),
                                Metric::FanSpeed => round1(sample.fan_speed_pct),
                                Metric::PowerLimit => sample.power_limit_w,
                                _ => 0.0,
                            };
                            let series = (gpu_index * plan.metrics.len() + metric_index) as u32;
                            points.push(Point { series, ts_ms, value });
                        }
                    }
                }
                self.position = last;
                Some(points)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_set_is_reproducible() {
        let set = DataSet::site(10, 0.01, 10_000, 1_700_000_000_000).unwrap();
        let first: Vec<f64> = set.chunks().flatten().map(|point| point.value).collect();
        let second: Vec<f64> = set.chunks().flatten().map(|point| point.value).collect();
        assert_eq!(first.len() as u64, set.total_points);
        assert_eq!(first, second);
    }

    #[test]
    fn farm_points_stay_in_span() {
        let set = DataSet::farm(2, 4, 0.02, 10_000, 1_700_000_000_000).unwrap();
        assert_eq!(set.series.len(), 2 * 4 * 5);
        let points: Vec<Point> = set.chunks().flatten().collect();
        assert_eq!(points.len() as u64, set.total_points);
        assert!(points.iter().all(|point| point.ts_ms >= set.from_ms && point.ts_ms < set.to_ms));
        assert!(points.iter().all(|point| (point.series as usize) < set.series.len()));
    }

    #[test]
    fn simulated_set_rejects_empty_span() {
        assert!(DataSet::site(10, 0.0, 10_000, 0).is_err());
        assert!(DataSet::farm(0, 8, 1.0, 10_000, 0).is_err());
    }
}
