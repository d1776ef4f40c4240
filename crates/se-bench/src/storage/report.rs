//! Result rows of the storage benchmark and their Markdown tables.

use std::time::Duration;

use serde::Serialize;

use super::data::DataSet;
use super::rss::RssOutcome;
use super::QueryCheck;
use crate::report::quantile_ms;

/// Size of one data set in one system, measured one way.
#[derive(Debug, Clone, Serialize)]
pub struct FootprintRow {
    pub data_set: String,
    pub description: String,
    pub system: String,
    /// What was measured, such as `pg_total_relation_size`.
    pub measure: String,
    pub readings: u64,
    pub bytes: u64,
    pub bytes_per_reading: f64,
    pub load_s: f64,
    pub readings_per_s: f64,
}

impl FootprintRow {
    pub fn new(set: &DataSet, system: &str, measure: &str, bytes: u64, load_time: Duration) -> FootprintRow {
        let readings = set.total_points;
        let load_s = load_time.as_secs_f64();
        FootprintRow {
            data_set: set.name.to_owned(),
            description: set.description.clone(),
            system: system.to_owned(),
            measure: measure.to_owned(),
            readings,
            bytes,
            bytes_per_reading: if readings > 0 { bytes as f64 / readings as f64 } else { 0.0 },
            load_s,
            readings_per_s: if load_s > 0.0 { readings as f64 / load_s } else { 0.0 },
        }
    }
}

/// One tier of our store after compaction.
#[derive(Debug, Clone, Serialize)]
pub struct TierRow {
    pub data_set: String,
    pub tier: String,
    pub series: u64,
    pub rows: u64,
    pub readings: u64,
    pub bytes: u64,
}

impl TierRow {
    pub fn new(set: &DataSet, tier: &super::ours::TierStats) -> TierRow {
        TierRow { data_set: set.name.to_owned(), tier: tier.tier.clone(), series: tier.series, rows: tier.rows, readings: tier.readings, bytes: tier.bytes }
    }
}

/// Repeated runs of one query in one system.
#[derive(Debug, Clone, Serialize)]
pub struct QueryRow {
    pub query: String,
    pub system: String,
    pub runs: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Points the last run returned.
    pub points: u64,
    /// Mean of the returned values, to compare the systems' answers.
    pub mean_value: f64,
}

impl QueryRow {
    /// Builds the row from sorted durations.
    pub fn new(query: &str, system: &str, sorted: &[Duration], check: QueryCheck) -> QueryRow {
        QueryRow {
            query: query.to_owned(),
            system: system.to_owned(),
            runs: sorted.len(),
            median_ms: quantile_ms(sorted, 0.5),
            p95_ms: quantile_ms(sorted, 0.95),
            min_ms: quantile_ms(sorted, 0.0),
            max_ms: sorted.last().map_or(0.0, |max| max.as_secs_f64() * 1_000.0),
            points: check.points,
            mean_value: check.mean(),
        }
    }
}

/// Memory of `serve` under many active series.
#[derive(Debug, Clone, Serialize)]
pub struct RssRow {
    pub series: usize,
    pub messages: u64,
    pub stored_readings: u64,
    pub peak_rss_mib: f64,
    pub final_rss_mib: f64,
    pub elapsed_s: f64,
}

impl From<&RssOutcome> for RssRow {
    fn from(outcome: &RssOutcome) -> RssRow {
        RssRow {
            series: outcome.series,
            messages: outcome.messages,
            stored_readings: outcome.stored_readings,
            peak_rss_mib: outcome.peak_rss_bytes as f64 / 1_048_576.0,
            final_rss_mib: outcome.final_rss_bytes as f64 / 1_048_576.0,
            elapsed_s: outcome.elapsed.as_secs_f64(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub footprint: Vec<FootprintRow>,
    pub tiers: Vec<TierRow>,
    pub queries: Vec<QueryRow>,
    /// Site chart span in days: loaded into our store, loaded into the peers.
    pub site_days: Option<(f64, f64)>,
    pub rss: Option<RssRow>,
}

/// The measure of our store that ratios use: the data directory on disk.
const OUR_DISK_MEASURE: &str = "data dir, du";

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 {
        format!("{:.3}", ours / theirs)
    } else {
        "n/a".to_owned()
    }
}

pub fn print(results: &Results) {
    if !results.footprint.is_empty() {
        println!();
        let mut described: Vec<(&str, &str)> = results.footprint.iter().map(|row| (row.data_set.as_str(), row.description.as_str())).collect();
        described.dedup();
        for (name, description) in described {
            println!("- {name}: {description}");
        }
        println!();
        println!("| data set | system | measure | readings | bytes | bytes/reading | load s | readings/s |");
        println!("|---|---|---|---|---|---|---|---|");
        for row in &results.footprint {
            println!(
                "| {} | {} | {} | {} | {} | {:.3} | {:.1} | {:.0} |",
                row.data_set, row.system, row.measure, row.readings, row.bytes, row.bytes_per_reading, row.load_s, row.readings_per_s
            );
        }
        println!();
        println!("| data set | versus | measure | ours / theirs, bytes per reading |");
        println!("|---|---|---|---|");
        for ours in results.footprint.iter().filter(|row| row.system == "smart-energy" && row.measure == OUR_DISK_MEASURE) {
            let name = &ours.data_set;
            for theirs in results.footprint.iter().filter(|row| row.system != "smart-energy" && row.data_set == *name) {
                println!("| {name} | {} | {} | {} |", theirs.system, theirs.measure, ratio(ours.bytes_per_reading, theirs.bytes_per_reading));
            }
        }
    }
    if !results.tiers.is_empty() {
        println!();
        println!("| data set | tier | series | rows | readings | bytes |");
        println!("|---|---|---|---|---|---|");
        for tier in &results.tiers {
            println!("| {} | {} | {} | {} | {} | {} |", tier.data_set, tier.tier, tier.series, tier.rows, tier.readings, tier.bytes);
        }
    }
    if !results.queries.is_empty() {
        println!();
        println!("| query | system | runs | median ms | p95 ms | min ms | max ms | points | mean value |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for row in &results.queries {
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.2} |",
                row.query, row.system, row.runs, row.median_ms, row.p95_ms, row.min_ms, row.max_ms, row.points, row.mean_value
            );
        }
        println!();
        println!("| query | versus | ours / theirs, median | ours / theirs, p95 |");
        println!("|---|---|---|---|");
        for ours in results.queries.iter().filter(|row| row.system == "smart-energy") {
            for theirs in results.queries.iter().filter(|row| row.system != "smart-energy" && row.query == ours.query) {
                println!("| {} | {} | {} | {} |", ours.query, theirs.system, ratio(ours.median_ms, theirs.median_ms), ratio(ours.p95_ms, theirs.p95_ms));
            }
        }
    }
    if let Some(rss) = &results.rss {
        println!();
        println!("| active series | messages | stored readings | peak RSS (VmHWM) MiB | final RSS MiB | run s |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            rss.series, rss.messages, rss.stored_readings, rss.peak_rss_mib, rss.final_rss_mib, rss.elapsed_s
        );
    }
}
