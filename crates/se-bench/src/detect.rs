//! `se-bench detect`: runs the se-sim fleet model in-process with randomly
//! injected faults on some rigs, runs `se_analytics::anomaly::scan_device`
//! (the detectors the server runs) on sliding windows, and scores the alerts
//! against the ground truth.
//!
//! Scoring rules:
//! - An alert is the first anomaly of one (device, channel, kind); later
//!   anomalies of the same triple repeat it and are not counted again.
//! - A fault is detected by the first alert, at or after its start, on its
//!   rig and its channel (`gpuN` for GPU faults, `wall` for power supply
//!   loss, any channel for a rig gone offline). Time to detect is the time of
//!   the evaluation that raised that alert minus the fault's start.
//! - An alert is correct when its rig has a fault that started at or before
//!   the alert. A fault on one GPU can raise alerts on its rig mates or the
//!   wall meter too, so the report also counts the alerts on the fault's
//!   own channel.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use se_analytics::anomaly::{scan_device, Anomaly, AnomalyKind, DeviceSeries, Point, ScanConfig, WALL_CHANNEL};
use se_core::{ChannelName, DeviceId, Lang, Metric};
use se_sim::{Fault, FaultKind, FaultRecord, Fleet, FleetConfig};

/// Settings of one detection benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub struct DetectArgs {
    /// Simulated rigs.
    #[arg(long, default_value_t = 200)]
    pub rigs: usize,
    /// GPUs per rig.
    #[arg(long, default_value_t = 8)]
    pub gpus: usize,
    /// Share of rigs that get one fault; the others stay healthy.
    #[arg(long, default_value_t = 0.5)]
    pub faulty_share: f64,
    /// Simulated time, in hours.
    #[arg(long, default_value_t = 4.0)]
    pub hours: f64,
    /// Time between two messages of a rig, in seconds.
    #[arg(long, default_value_t = 30)]
    pub interval_s: u64,
    /// Time between two runs of the detectors, in minutes of simulated time.
    #[arg(long, default_value_t = 2)]
    pub evaluate_every_min: u64,
    /// History each run of the detectors reads, in minutes.
    #[arg(long, default_value_t = 120)]
    pub window_min: u64,
    /// Seed of the fleet and of the fault draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print every alert with its message and whether it is correct.
    #[arg(long)]
    pub verbose: bool,
}

/// Stored readings of one rig, as the server would read them back.
#[derive(Default)]
struct RigData {
    power: Vec<Vec<Point>>,
    utilization: Vec<Vec<Point>>,
    limit_w: Vec<f64>,
    wall: Vec<Point>,
}

/// First detection time and message of each (device, channel, kind).
type Alerts = BTreeMap<(String, String, AnomalyKind), (i64, String)>;

const START_MS: i64 = 1_733_000_000_000;

pub fn run(args: &DetectArgs) -> anyhow::Result<()> {
    if args.rigs == 0 || args.gpus < 3 || args.interval_s == 0 || args.evaluate_every_min == 0 || !(0.0..=1.0).contains(&args.faulty_share) {
        anyhow::bail!("invalid settings: use --rigs 1 or more, --gpus 3 or more (peer comparison needs rig mates), --interval-s and --evaluate-every-min above 0, and --faulty-share from 0 to 1");
    }
    let duration_ms = (args.hours * 3_600_000.0) as i64;
    let warm_up_ms = 60 * 60_000;
    if duration_ms < warm_up_ms + 45 * 60_000 {
        anyhow::bail!("--hours {} is too short: faults start after 1 h of history and need 45 min to show; use 2 or more", args.hours);
    }

    let faults = draw_faults(args, duration_ms, warm_up_ms);
    let config = FleetConfig {
        rigs: args.rigs,
        gpus_per_rig: args.gpus,
        prototype: false,
        wall_meter: true,
        faults: faults.clone(),
        start_ms: Some(START_MS),
        ..FleetConfig::default()
    };
    config.validate()?;
    let truth = config.ground_truth(START_MS);
    let mut fleet = Fleet::new(config.clone(), args.seed);

    let rig_ids: Vec<String> = (1..=args.rigs).map(|index| config.rig_id(index)).collect();
    let mut data: HashMap<String, RigData> = rig_ids
        .iter()
        .map(|id| {
            let rig = RigData { power: vec![Vec::new(); args.gpus], utilization: vec![Vec::new(); args.gpus], ..RigData::default() };
            (id.clone(), rig)
        })
        .collect();

    let interval_ms = args.interval_s as i64 * 1000;
    let evaluate_ms = args.evaluate_every_min as i64 * 60_000;
    let window_ms = args.window_min as i64 * 60_000;
    let mut alerts: Alerts = BTreeMap::new();
    let mut evaluations = 0usize;
    let started = std::time::Instant::now();
    let mut detect_time = std::time::Duration::ZERO;
    let mut now = START_MS;
    let mut next_evaluation = START_MS + warm_up_ms;
    while now <= START_MS + duration_ms {
        for frame in fleet.step_frames(now, args.interval_s as f64) {
            let rig = data.get_mut(&frame.rig).expect("frames name fleet rigs");
            for (index, sample) in frame.gpus.iter().enumerate() {
                // Messages carry one decimal, so stored values do too.
                rig.power[index].push(Point::new(now, round1(sample.power_w)));
                rig.utilization[index].push(Point::new(now, round1(sample.utilization_pct)));
                if rig.limit_w.len() <= index {
                    rig.limit_w.push(sample.power_limit_w);
                }
            }
            if let Some(wall) = frame.wall_w {
                rig.wall.push(Point::new(now, round1(wall)));
            }
        }
        if now >= next_evaluation {
            let timer = std::time::Instant::now();
            for id in &rig_ids {
                let found = evaluate_rig(id, &data[id], now, window_ms, evaluate_ms)?;
                for anomaly in found {
                    let key = (anomaly.device.to_string(), anomaly.channel.to_string(), anomaly.kind);
                    alerts.entry(key).or_insert_with(|| (now, anomaly.message(Lang::En)));
                }
            }
            detect_time += timer.elapsed();
            evaluations += 1;
            next_evaluation += evaluate_ms;
        }
        now += interval_ms;
    }

    let readings: usize = data.values().map(|rig| rig.power.iter().map(Vec::len).sum::<usize>() * 2 + rig.wall.len()).sum();
    println!(
        "detect: {} rigs x {} GPUs, {} faulty, {:.1} h at {} s, detectors every {} min on {} min windows, seed {}",
        args.rigs,
        args.gpus,
        faults.len(),
        args.hours,
        args.interval_s,
        args.evaluate_every_min,
        args.window_min,
        args.seed
    );
    println!(
        "{readings} readings; {evaluations} evaluations of every rig took {:.2} s in total ({:.2} s for the whole run)",
        detect_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    print_scores(&truth, &alerts);
    if args.verbose {
        print_alerts(&truth, &alerts);
    }
    Ok(())
}

/// Picks `faulty_share` of the rigs and gives each one fault of a random
/// kind, GPU and start between the warm-up and 45 min before the end.
fn draw_faults(args: &DetectArgs, duration_ms: i64, warm_up_ms: i64) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed_fa17);
    let config = FleetConfig { rig_prefix: "rig".to_owned(), ..FleetConfig::default() };
    let mut faults = Vec::new();
    for index in 1..=args.rigs {
        if !rng.random_bool(args.faulty_share) {
            continue;
        }
        let kind = FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())];
        let gpu = kind.is_gpu_fault().then(|| rng.random_range(0..args.gpus));
        let offset_ms = rng.random_range(warm_up_ms..duration_ms - 45 * 60_000);
        faults.push(Fault { kind, rig: config.rig_id(index), gpu, offset_ms: offset_ms / 1000 * 1000 });
    }
    faults
}

/// Runs [`scan_device`], the detectors the server runs, on the rig's readings
/// in `[now - window_ms, now]`. Point anomalies (impossible values, spikes)
/// count only when they end in the last `fresh_ms`, as a server that runs
/// every `fresh_ms` would see them.
fn evaluate_rig(id: &str, rig: &RigData, now: i64, window_ms: i64, fresh_ms: i64) -> anyhow::Result<Vec<Anomaly>> {
    let from = now - window_ms;
    let window = |points: &[Point]| -> Vec<Point> {
        let start = points.partition_point(|p| p.ts_ms < from);
        let end = points.partition_point(|p| p.ts_ms <= now);
        points[start..end].to_vec()
    };
    let mut device = DeviceSeries::new(DeviceId::parse(id)?);
    for (index, (power, utilization)) in rig.power.iter().zip(&rig.utilization).enumerate() {
        let channel = ChannelName::parse(&format!("gpu{index}"))?;
        device.insert(channel.clone(), Metric::Power, window(power));
        device.insert(channel.clone(), Metric::Utilization, window(utilization));
        if let Some(limit_w) = rig.limit_w.get(index) {
            device.insert(channel, Metric::PowerLimit, vec![Point::new(now, *limit_w)]);
        }
    }
    device.insert(ChannelName::parse(WALL_CHANNEL)?, Metric::Power, window(&rig.wall));

    let config = ScanConfig::default();
    // A spike is scored once it has min_side_points successors, so it is new
    // when it ends in the period before them.
    let spike_delay_ms = config.spikes.min_side_points as i64 * rig_interval_ms(rig);
    let is_new = |anomaly: &Anomaly| match anomaly.kind {
        AnomalyKind::Impossible => anomaly.segment.end_ms > now - fresh_ms,
        AnomalyKind::Spike => anomaly.segment.end_ms > now - fresh_ms - spike_delay_ms,
        _ => true,
    };
    Ok(scan_device(&device, now, &config)?.into_iter().filter(is_new).collect())
}

/// Time between the rig's first two readings, or 30 s before it has two.
fn rig_interval_ms(rig: &RigData) -> i64 {
    match rig.power.first().map(Vec::as_slice) {
        Some([first, second, ..]) => second.ts_ms - first.ts_ms,
        _ => 30_000,
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Prints recall and median time to detect per fault kind, and precision per anomaly kind.
fn print_scores(truth: &[FaultRecord], alerts: &Alerts) {
    let mut by_kind: BTreeMap<FaultKind, (usize, usize, Vec<f64>)> = BTreeMap::new();
    let mut all_delays = Vec::new();
    for fault in truth {
        let entry = by_kind.entry(fault.kind).or_default();
        entry.0 += 1;
        let first = alerts
            .iter()
            .filter(|((device, channel, _), (at, _))| {
                let channel_matches = fault.kind == FaultKind::Offline || fault.channel.as_deref() == Some(channel.as_str());
                *device == fault.device && *at >= fault.start_ms && channel_matches
            })
            .map(|(_, (at, _))| *at)
            .min();
        if let Some(at) = first {
            entry.1 += 1;
            let minutes = (at - fault.start_ms) as f64 / 60_000.0;
            entry.2.push(minutes);
            all_delays.push(minutes);
        }
    }

    println!();
    println!("{:<12} {:>8} {:>8} {:>7} {:>16}", "fault", "injected", "detected", "recall", "median TTD (min)");
    let (mut injected, mut detected) = (0, 0);
    for (kind, (count, hits, delays)) in &by_kind {
        injected += count;
        detected += hits;
        println!("{:<12} {:>8} {:>8} {:>7.3} {:>16}", kind.code(), count, hits, *hits as f64 / *count as f64, median_text(delays));
    }
    let recall = if injected == 0 { f64::NAN } else { detected as f64 / injected as f64 };
    println!("{:<12} {:>8} {:>8} {:>7.3} {:>16}", "overall", injected, detected, recall, median_text(&all_delays));

    // (alerts, correct on the rig, correct on the fault's channel) per anomaly kind.
    let mut by_anomaly: BTreeMap<AnomalyKind, (usize, usize, usize)> = BTreeMap::new();
    for ((device, channel, kind), (at, _)) in alerts {
        let entry = by_anomaly.entry(*kind).or_default();
        entry.0 += 1;
        entry.1 += usize::from(is_correct(truth, device, *at));
        entry.2 += usize::from(is_on_fault_channel(truth, device, channel, *at));
    }
    println!();
    println!("{:<20} {:>7} {:>8} {:>10} {:>10} {:>10}", "anomaly kind", "alerts", "correct", "precision", "on channel", "precision");
    let (mut total, mut correct, mut on_channel) = (0, 0, 0);
    for (kind, (count, hits, exact)) in &by_anomaly {
        total += count;
        correct += hits;
        on_channel += exact;
        let share = |part: &usize| *part as f64 / *count as f64;
        println!("{:<20} {:>7} {:>8} {:>10.3} {:>10} {:>10.3}", kind.code(), count, hits, share(hits), exact, share(exact));
    }
    let share = |part: usize| if total == 0 { f64::NAN } else { part as f64 / total as f64 };
    println!("{:<20} {:>7} {:>8} {:>10.3} {:>10} {:>10.3}", "overall", total, correct, share(correct), on_channel, share(on_channel));
    println!("(correct: the rig has a fault that started before the alert; on channel: the alert is also on the fault's channel)");
}

/// Returns whether the alert is on the channel of a fault of its rig that started before it.
fn is_on_fault_channel(truth: &[FaultRecord], device: &str, channel: &str, at: i64) -> bool {
    truth.iter().any(|fault| {
        let channel_matches = fault.kind == FaultKind::Offline || fault.channel.as_deref() == Some(channel);
        fault.device == device && fault.start_ms <= at && channel_matches
    })
}

fn is_correct(truth: &[FaultRecord], device: &str, at: i64) -> bool {
    truth.iter().any(|fault| fault.device == device && fault.start_ms <= at)
}

fn print_alerts(truth: &[FaultRecord], alerts: &Alerts) {
    println!();
    for fault in truth {
        println!("fault {:<9} {}/{} at +{:.1} min", fault.kind.code(), fault.device, fault.channel.as_deref().unwrap_or("-"), (fault.start_ms - START_MS) as f64 / 60_000.0);
    }
    println!();
    for ((device, _, kind), (at, message)) in alerts {
        let verdict = if is_correct(truth, device, *at) { "correct" } else { "FALSE" };
        println!("{verdict:<7} +{:>6.1} min {:<18} {message}", (at - START_MS) as f64 / 60_000.0, kind.code());
    }
}

fn median_text(values: &[f64]) -> String {
    se_analytics::anomaly::median(values).map_or("-".to_owned(), |median| format!("{median:.1}"))
}
