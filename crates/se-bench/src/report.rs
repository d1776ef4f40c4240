//! Run results as JSON lines, and medians across repeated runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One run against one broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// `smart-energy`, `mosquitto-default-queue` or `mosquitto-unlimited-queue`.
    pub target: String,
    pub publishers: usize,
    pub messages: u64,
    pub inflight: u16,
    pub acked: u64,
    /// Stored readings (smart-energy) or distinct messages the subscriber received (Mosquitto).
    pub arrived: u64,
    /// `messages - arrived`.
    pub lost: u64,
    /// From the start signal to the last PUBACK or last arrival, whichever is later.
    pub elapsed_s: f64,
    /// `arrived / elapsed_s`.
    pub messages_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    /// Publisher errors and timeouts; empty when the run completed.
    pub errors: Vec<String>,
}

/// Returns the `quantile` (0 to 1) of sorted durations in milliseconds, by the
/// nearest-rank method, or 0 for an empty slice.
pub fn quantile_ms(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1_000.0
}

/// Appends `result` to `path` as one JSON line.
pub fn append_json<T: Serialize>(path: &Path, result: &T) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {} to append the result", path.display()))?;
    let line = serde_json::to_string(result).context("encode the result as JSON")?;
    writeln!(file, "{line}").with_context(|| format!("append to {}", path.display()))
}

const HEADER: &str = "| target | K | runs | messages/s | ack p50 ms | ack p99 ms | lost (median) | lost (max) |";
const RULE: &str = "|---|---|---|---|---|---|---|---|";

pub fn print_run(result: &RunResult) {
    println!("{HEADER}");
    println!("{RULE}");
    println!(
        "| {} | {} | 1 | {:.0} | {:.2} | {:.2} | {} | {} |",
        result.target, result.publishers, result.messages_per_s, result.ack_p50_ms, result.ack_p99_ms, result.lost, result.lost
    );
    for error in &result.errors {
        println!("error: {error}");
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Medians of the runs of one (target, publishers) pair.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub target: String,
    pub publishers: usize,
    pub runs: usize,
    pub messages_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub lost_median: f64,
    pub lost_max: u64,
    pub runs_with_loss: usize,
    pub runs_with_errors: usize,
}

pub fn summarize(path: &Path) -> anyhow::Result<Vec<Summary>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read results from {}", path.display()))?;
    let mut groups: BTreeMap<(usize, String), Vec<RunResult>> = BTreeMap::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let result: RunResult = serde_json::from_str(line)
            .with_context(|| format!("line {} of {} is not a run result", number + 1, path.display()))?;
        groups.entry((result.publishers, result.target.clone())).or_default().push(result);
    }
    let summaries = groups
        .into_iter()
        .map(|((publishers, target), runs)| Summary {
            target,
            publishers,
            runs: runs.len(),
            messages_per_s: median(runs.iter().map(|run| run.messages_per_s).collect()),
            ack_p50_ms: median(runs.iter().map(|run| run.ack_p50_ms).collect()),
            ack_p99_ms: median(runs.iter().map(|run| run.ack_p99_ms).collect()),
            lost_median: median(runs.iter().map(|run| run.lost as f64).collect()),
            lost_max: runs.iter().map(|run| run.lost).max().unwrap_or(0),
            runs_with_loss: runs.iter().filter(|run| run.lost > 0).count(),
            runs_with_errors: runs.iter().filter(|run| !run.errors.is_empty()).count(),
        })
        .collect();
    Ok(summaries)
}

/// Prints the medians and the throughput ratio of smart-energy to each
/// Mosquitto configuration, as Markdown tables.
pub fn print_summary(summaries: &[Summary]) {
    println!("| target | K | runs | messages/s (median) | ack p50 ms | ack p99 ms | lost (median) | lost (max) | runs with loss | runs with errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for summary in summaries {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {} | {} | {} |",
            summary.target,
            summary.publishers,
            summary.runs,
            summary.messages_per_s,
            summary.ack_p50_ms,
            summary.ack_p99_ms,
            summary.lost_median,
            summary.lost_max,
            summary.runs_with_loss,
            summary.runs_with_errors
        );
    }

    println!();
    println!("| K | versus | smart-energy / Mosquitto, messages/s |");
    println!("|---|---|---|");
    for ours in summaries.iter().filter(|summary| summary.target == "smart-energy") {
        for theirs in summaries
            .iter()
            .filter(|summary| summary.publishers == ours.publishers && summary.target != "smart-energy")
        {
            let ratio = if theirs.messages_per_s > 0.0 { ours.messages_per_s / theirs.messages_per_s } else { f64::NAN };
            println!("| {} | {} | {:.2} |", ours.publishers, theirs.target, ratio);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_uses_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&sorted, 0.5), 50.0);
        assert_eq!(quantile_ms(&sorted, 0.99), 99.0);
    }

    #[test]
    fn median_of_even_count_averages() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
