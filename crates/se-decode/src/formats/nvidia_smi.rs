//! CSV written by `nvidia-smi --query-gpu=... --format=csv` (with or without
//! `nounits`), for the `import nvidia-smi` command. A pure parser: the caller
//! opens the file and stores the readings.
//!
//! Header names such as `power.draw [W]` give the column and its unit; values
//! may carry the unit (`231.45 W`) or not (`nounits`). Stored columns:
//!
//! | column | metric |
//! |---|---|
//! | `power.draw` (else `power.draw.average`, else `power.draw.instant`) | `power_w` |
//! | `enforced.power.limit` (else `power.limit`) | `power_limit_w` |
//! | `temperature.gpu` | `temperature_c` |
//! | `utilization.gpu` | `utilization_pct` |
//! | `fan.speed` | `fan_speed_pct` |
//! | `clocks.sm` (else `clocks.current.sm`) | `clock_mhz` |
//! | `memory.used` | `memory_used_mib` |
//!
//! Other columns are ignored. A bracketed value such as `[Not Supported]`,
//! `[N/A]` or `[GPU is lost]` is a missing value: it is rejected as
//! [`RejectReason::NotANumber`], nothing is stored, and energy accounting
//! treats the span without power samples as unknown.
//!
//! `timestamp` (`2025/07/27 00:22:27.858`) is local time without a zone, read
//! in [`NvidiaSmiOptions::time_zone`]. In the hour that repeats after a DST
//! change, the earlier instant is taken. When that instant would go back in
//! time from the previous row, the later one is taken instead.
//!
//! Which GPU a row belongs to:
//! 1. the `index` column gives channel `gpuN`;
//! 2. else the `uuid` column: each new UUID gets the next `gpuN`, in order of
//!    first appearance;
//! 3. else row order within a burst. nvidia-smi writes one row per GPU at each
//!    poll, so a burst is a run of rows whose timestamps are within
//!    [`NvidiaSmiOptions::burst_tolerance_ms`] of the burst's first row. The
//!    GPU count is [`NvidiaSmiOptions::gpu_count`], or else the size of the
//!    first burst. A burst also ends when it has as many rows as there are
//!    GPUs. The k-th row of a burst is GPU k. A burst with fewer rows than
//!    GPUs cannot be mapped safely, so its rows are rejected.

use std::collections::HashMap;
use std::io::Read;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use se_core::{DeviceId, Decoded, Metric, RejectReason, TimestampMs};

use super::common::{scaled, unit_scale, Batch};
use crate::{parse_with_unit, EARLIEST_DEVICE_TIME_MS, MAX_CLOCK_AHEAD_MS};

/// Settings of one nvidia-smi CSV import.
#[derive(Debug, Clone)]
pub struct NvidiaSmiOptions {
    /// The rig the GPUs belong to.
    pub device: DeviceId,
    /// Time zone of the machine that ran nvidia-smi.
    pub time_zone: TimeZone,
    /// Column names, in order, for output written with `--format=csv,noheader`.
    pub columns: Option<Vec<String>>,
    /// Number of GPUs, when there is no `index` or `uuid` column and the first
    /// burst may be incomplete.
    pub gpu_count: Option<usize>,
    /// Largest time difference, in milliseconds, between rows of one poll.
    pub burst_tolerance_ms: i64,
    /// Time of the import: the timestamp of rows without a timestamp column,
    /// and the bound for timestamps in the future.
    pub received_ms: TimestampMs,
}

/// Default burst tolerance. nvidia-smi queries GPUs one after another, a few
/// milliseconds each (an 8-GPU H100 poll spanned 18 ms), and logs are often
/// written every 100 ms (`-lms 100`), so the tolerance must stay well below
/// the poll period.
pub const DEFAULT_BURST_TOLERANCE_MS: i64 = 50;

impl NvidiaSmiOptions {
    pub fn new(device: DeviceId, time_zone: TimeZone, received_ms: TimestampMs) -> Self {
        Self { device, time_zone, columns: None, gpu_count: None, burst_tolerance_ms: DEFAULT_BURST_TOLERANCE_MS, received_ms }
    }
}

/// Columns that are stored, by metric, in order of preference.
const METRIC_COLUMNS: [(Metric, &[&str]); 7] = [
    (Metric::Power, &["power.draw", "power.draw.average", "power.draw.instant"]),
    (Metric::PowerLimit, &["enforced.power.limit", "power.limit"]),
    (Metric::Temperature, &["temperature.gpu"]),
    (Metric::Utilization, &["utilization.gpu"]),
    (Metric::FanSpeed, &["fan.speed"]),
    (Metric::Clock, &["clocks.sm", "clocks.current.sm"]),
    (Metric::MemoryUsed, &["memory.used"]),
];

/// A stored column: position, metric, query name and unit factor.
struct MetricColumn {
    position: usize,
    metric: Metric,
    name: String,
    unit: String,
    scale: Option<f64>,
}

struct Columns {
    timestamp: Option<usize>,
    index: Option<usize>,
    uuid: Option<usize>,
    metrics: Vec<MetricColumn>,
}

/// Splits `power.draw [W]` into `power.draw` and `W`.
fn split_header(header: &str) -> (String, String) {
    let header = header.trim();
    match header.split_once(" [") {
        Some((name, unit)) => (name.trim().to_owned(), unit.trim_end_matches(']').trim().to_owned()),
        None => (header.to_owned(), String::new()),
    }
}

impl Columns {
    fn from_headers(headers: &[String]) -> Option<Columns> {
        let parsed: Vec<(String, String)> = headers.iter().map(|h| split_header(h)).collect();
        let position = |wanted: &str| parsed.iter().position(|(name, _)| name == wanted);
        let mut metrics = Vec::new();
        for (metric, names) in METRIC_COLUMNS {
            let found = names.iter().find_map(|name| position(name));
            if let Some(position) = found {
                let (name, unit) = parsed[position].clone();
                let unit = if unit.is_empty() { metric.unit().to_owned() } else { unit };
                let scale = unit_scale(metric, &unit);
                metrics.push(MetricColumn { position, metric, name, unit, scale });
            }
        }
        let columns = Columns { timestamp: position("timestamp"), index: position("index"), uuid: position("uuid"), metrics };
        let known = columns.timestamp.is_some() || columns.index.is_some() || !columns.metrics.is_empty();
        known.then_some(columns)
    }
}

/// One data row before its GPU is known.
struct Row {
    line: u64,
    /// `None` when the timestamp was invalid and the row is rejected.
    ts_ms: Option<TimestampMs>,
    cells: Vec<String>,
}

/// Parses nvidia-smi CSV output into readings of `options.device`.
///
/// Returns every valid value as a reading and one rejection per bad row or
/// value, whose topic is `line N` (N counts from 1).
pub fn parse_nvidia_smi_csv<R: Read>(reader: R, options: &NvidiaSmiOptions) -> Decoded {
    let mut out = Decoded { device: Some(options.device.clone()), ..Decoded::default() };
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(reader);

    let mut columns = options.columns.as_ref().and_then(|names| Columns::from_headers(names));
    let mut header_cells: Option<Vec<String>> = options.columns.clone();
    let mut rows = Vec::new();
    let mut previous_ts = None;
    for record in csv.byte_records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                let topic = format!("line {line}");
                let mut batch = Batch::new(&topic, Some(options.device.clone()));
                batch.reject(RejectReason::UnparsablePayload, None, "", format!("line {line}: reading the CSV failed ({error}); the rest of the file was not read"));
                out.rejections.extend(batch.finish().rejections);
                break;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let cells: Vec<String> = record.iter().map(|cell| String::from_utf8_lossy(cell).into_owned()).collect();
        if cells.iter().all(|cell| cell.is_empty()) {
            continue;
        }
        // A header, or a header repeated where several runs were appended to one file.
        if header_cells.as_ref().is_some_and(|header| *header == cells) {
            continue;
        }
        if columns.is_none() {
            columns = Columns::from_headers(&cells);
            header_cells = Some(cells.clone());
            if columns.is_none() {
                let topic = format!("line {line}");
                let mut batch = Batch::new(&topic, Some(options.device.clone()));
                let detail = format!("line {line} is not an nvidia-smi CSV header; run nvidia-smi with --format=csv (not noheader), or add its header line, such as timestamp, index, power.draw [W], to the top of the file");
                batch.reject(RejectReason::UnparsablePayload, None, &cells.join(", "), detail);
                out.rejections.extend(batch.finish().rejections);
                return out;
            }
            continue;
        }
        let Some(columns) = columns.as_ref() else {
            continue;
        };
        let topic = format!("line {line}");
        let mut batch = Batch::new(&topic, Some(options.device.clone()));
        let ts_ms = row_timestamp(&mut batch, columns, &cells, options, previous_ts);
        if ts_ms.is_some() {
            previous_ts = ts_ms;
        }
        out.rejections.extend(batch.finish().rejections);
        rows.push(Row { line, ts_ms, cells });
    }
    let Some(columns) = columns else {
        return out;
    };

    let channels = assign_gpus(&columns, &rows, options, &mut out);
    for (row, channel) in rows.iter().zip(channels) {
        let (Some(channel), Some(ts_ms)) = (channel, row.ts_ms) else {
            continue;
        };
        let topic = format!("line {}", row.line);
        let mut batch = Batch::new(&topic, Some(options.device.clone()));
        for column in &columns.metrics {
            decode_cell(&mut batch, column, row, &channel, ts_ms);
        }
        let decoded = batch.finish();
        out.readings.extend(decoded.readings);
        out.rejections.extend(decoded.rejections);
    }
    out
}

/// Parses the row's timestamp and checks that it is plausible; rejects the
/// row's time otherwise.
fn row_timestamp(batch: &mut Batch<'_>, columns: &Columns, cells: &[String], options: &NvidiaSmiOptions, previous_ts: Option<TimestampMs>) -> Option<TimestampMs> {
    let Some(position) = columns.timestamp else {
        return Some(options.received_ms);
    };
    let raw = cells.get(position).map(String::as_str).unwrap_or("");
    let parsed = DateTime::strptime("%Y/%m/%d %H:%M:%S%.f", raw).ok().and_then(|dt| {
        let ambiguous = options.time_zone.to_ambiguous_timestamp(dt);
        let earlier = ambiguous.earlier().ok()?;
        let goes_back = previous_ts.is_some_and(|previous| earlier.as_millisecond() < previous - options.burst_tolerance_ms);
        if ambiguous.is_ambiguous() && goes_back {
            ambiguous.later().ok()
        } else {
            ambiguous.compatible().ok()
        }
    });
    let Some(ts) = parsed else {
        let detail = format!("{}: timestamp {raw:?} is not like 2025/07/27 00:22:27.858; the row was not stored", batch.topic);
        batch.reject(RejectReason::InvalidTimestamp, Some("timestamp"), raw, detail);
        return None;
    };
    let ts_ms = ts.as_millisecond();
    if ts_ms < EARLIEST_DEVICE_TIME_MS || ts_ms > options.received_ms + MAX_CLOCK_AHEAD_MS {
        let detail = format!("{}: timestamp {raw} is before 2016 or in the future, so the clock of the machine was wrong; the row was not stored", batch.topic);
        batch.reject(RejectReason::InvalidTimestamp, Some("timestamp"), raw, detail);
        return None;
    }
    Some(ts_ms)
}

/// Returns the channel of each row, `None` for a row whose GPU is unknown
/// (each such row gets a rejection in `out`).
fn assign_gpus(columns: &Columns, rows: &[Row], options: &NvidiaSmiOptions, out: &mut Decoded) -> Vec<Option<String>> {
    let mut reject = |row: &Row, field: &str, value: &str, detail: String| {
        let topic = format!("line {}", row.line);
        let mut batch = Batch::new(&topic, Some(options.device.clone()));
        batch.reject(RejectReason::InvalidChannel, Some(field), value, detail);
        out.rejections.extend(batch.finish().rejections);
    };

    if let Some(position) = columns.index {
        return rows
            .iter()
            .map(|row| {
                let raw = row.cells.get(position).map(String::as_str).unwrap_or("");
                if super::common::is_index(raw) {
                    Some(format!("gpu{raw}"))
                } else {
                    reject(row, "index", raw, format!("line {}: GPU index {raw:?} is not a number; the row was not stored", row.line));
                    None
                }
            })
            .collect();
    }

    if let Some(position) = columns.uuid {
        let mut known: HashMap<String, usize> = HashMap::new();
        return rows
            .iter()
            .map(|row| {
                let uuid = row.cells.get(position).cloned().unwrap_or_default();
                let next = known.len();
                let gpu = *known.entry(uuid).or_insert(next);
                Some(format!("gpu{gpu}"))
            })
            .collect();
    }

    let tolerance = options.burst_tolerance_ms;
    let gpu_count = options.gpu_count.unwrap_or_else(|| first_burst_len(rows, tolerance)).max(1);
    let mut channels = vec![None; rows.len()];
    let mut start = 0;
    while start < rows.len() {
        let first_ts = rows[start].ts_ms;
        let mut end = start + 1;
        while end < rows.len() && end - start < gpu_count && within(first_ts, rows[end].ts_ms, tolerance) {
            end += 1;
        }
        if end - start == gpu_count {
            for (k, channel) in channels[start..end].iter_mut().enumerate() {
                *channel = Some(format!("gpu{k}"));
            }
        } else {
            for row in &rows[start..end] {
                let detail = format!(
                    "line {}: the poll starting at line {} has {} rows but there are {gpu_count} GPUs, so the GPU of each row is unknown; add index to --query-gpu",
                    row.line,
                    rows[start].line,
                    end - start
                );
                reject(row, "index", "", detail);
            }
        }
        start = end;
    }
    channels
}

/// Checks whether two row times belong to one poll. A row without a valid
/// time stays in the current poll, so that it keeps its place in the order.
fn within(first: Option<TimestampMs>, other: Option<TimestampMs>, tolerance: i64) -> bool {
    match (first, other) {
        (Some(first), Some(other)) => (other - first).abs() <= tolerance,
        _ => true,
    }
}

fn first_burst_len(rows: &[Row], tolerance: i64) -> usize {
    let Some(first) = rows.first() else {
        return 1;
    };
    rows.iter().take_while(|row| within(first.ts_ms, row.ts_ms, tolerance)).count()
}

fn decode_cell(batch: &mut Batch<'_>, column: &MetricColumn, row: &Row, channel: &str, ts_ms: TimestampMs) {
    let raw = row.cells.get(column.position).map(String::as_str).unwrap_or("");
    let field = format!("{channel}.{}", column.metric.key());
    if raw.starts_with('[') {
        let detail = format!(
            "{}: {} of {channel} is {raw}; nothing was stored, and energy for this time is unknown rather than zero",
            batch.topic, column.name
        );
        batch.reject(RejectReason::NotANumber, Some(&field), raw, detail);
        return;
    }
    let Some(scale) = column.scale else {
        let detail = format!("{}: column {} is in {}, which is not a unit of {}", batch.topic, column.name, column.unit, column.metric.key());
        batch.reject(RejectReason::WrongUnit, Some(&field), raw, detail);
        return;
    };
    batch.push_parsed(channel, column.metric, ts_ms, scaled(parse_with_unit(raw, &column.unit), scale), &field, raw);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-07-27T00:00:00Z, after every timestamp in the samples.
    const IMPORT_MS: TimestampMs = 1_753_600_000_000;

    fn options() -> NvidiaSmiOptions {
        NvidiaSmiOptions::new(DeviceId::parse("rig-01").unwrap(), TimeZone::UTC, IMPORT_MS)
    }

    fn parse(text: &str, options: &NvidiaSmiOptions) -> Decoded {
        parse_nvidia_smi_csv(text.as_bytes(), options)
    }

    fn powers(decoded: &Decoded) -> Vec<(String, f64)> {
        decoded.readings.iter().filter(|r| r.metric == Metric::Power).map(|r| (r.channel.to_string(), r.value)).collect()
    }

    const WITH_UNITS: &str = "timestamp, index, power.draw [W], temperature.gpu, utilization.gpu [%], fan.speed [%], clocks.sm [MHz], memory.used [MiB]
2025/07/26 22:22:27.858, 0, 231.45 W, 61, 98 %, 55 %, 1830 MHz, 4012 MiB
2025/07/26 22:22:27.871, 1, 229.10 W, 63, 97 %, 57 %, 1815 MHz, 4010 MiB
";

    #[test]
    fn units_in_values_are_read() {
        let decoded = parse(WITH_UNITS, &options());
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        assert_eq!(decoded.readings.len(), 12);
        assert_eq!(powers(&decoded), vec![("gpu0".to_owned(), 231.45), ("gpu1".to_owned(), 229.1)]);
        let expected: jiff::Timestamp = "2025-07-26T22:22:27.858Z".parse().unwrap();
        assert_eq!(decoded.readings[0].ts_ms, expected.as_millisecond());
    }

    #[test]
    fn nounits_output_is_read() {
        let text = "timestamp, index, power.draw [W], utilization.gpu [%]\n2025/07/26 22:22:27.858, 0, 231.45, 98\n";
        let decoded = parse(text, &options());
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        assert_eq!(powers(&decoded), vec![("gpu0".to_owned(), 231.45)]);
    }

    #[test]
    fn local_time_uses_given_zone() {
        let mut options = options();
        options.time_zone = TimeZone::get("Europe/Paris").unwrap();
        let decoded = parse("timestamp, index, power.draw [W]\n2025/07/27 00:22:27.858, 0, 231.45 W\n", &options);
        let expected: jiff::Timestamp = "2025-07-26T22:22:27.858Z".parse().unwrap();
        assert_eq!(decoded.readings[0].ts_ms, expected.as_millisecond());
    }

    #[test]
    fn not_supported_is_missing_value() {
        let text = "timestamp, index, power.draw [W], temperature.gpu\n2025/07/26 22:22:27.858, 0, [Not Supported], 45\n2025/07/26 22:22:27.870, 1, [N/A], 46\n";
        let decoded = parse(text, &options());
        assert!(powers(&decoded).is_empty());
        assert_eq!(decoded.readings.len(), 2);
        assert_eq!(decoded.rejections.len(), 2);
        assert_eq!(decoded.rejections[0].reason, RejectReason::NotANumber);
        assert_eq!(decoded.rejections[0].topic, "line 2");
        assert_eq!(decoded.rejections[0].field.as_deref(), Some("gpu0.power_w"));
        assert!(decoded.rejections[0].detail.contains("unknown"));
    }

    #[test]
    fn rows_without_index_follow_bursts() {
        let text = "timestamp, power.draw [W]
2025/07/26 22:00:00.010, 100
2025/07/26 22:00:00.020, 200
2025/07/26 22:00:00.030, 300
2025/07/26 22:00:01.010, 101
2025/07/26 22:00:01.020, 201
2025/07/26 22:00:01.030, 301
";
        let decoded = parse(text, &options());
        let expected: Vec<(String, f64)> = [("gpu0", 100.0), ("gpu1", 200.0), ("gpu2", 300.0), ("gpu0", 101.0), ("gpu1", 201.0), ("gpu2", 301.0)]
            .iter()
            .map(|(c, v)| (c.to_string(), *v))
            .collect();
        assert_eq!(powers(&decoded), expected);
    }

    #[test]
    fn short_burst_is_rejected() {
        let text = "timestamp, power.draw [W]
2025/07/26 22:00:00.010, 100
2025/07/26 22:00:00.020, 200
2025/07/26 22:00:01.010, 101
2025/07/26 22:00:02.010, 102
2025/07/26 22:00:02.020, 202
";
        let decoded = parse(text, &options());
        assert_eq!(powers(&decoded).len(), 4);
        assert_eq!(decoded.rejections.len(), 1);
        assert_eq!(decoded.rejections[0].reason, RejectReason::InvalidChannel);
        assert_eq!(decoded.rejections[0].topic, "line 4");
    }

    #[test]
    fn gpu_count_splits_fast_polls() {
        let mut options = options();
        options.gpu_count = Some(2);
        let text = "timestamp, power.draw [W]
2025/07/26 22:00:00.010, 100
2025/07/26 22:00:00.020, 200
2025/07/26 22:00:00.110, 101
2025/07/26 22:00:00.120, 201
";
        let channels: Vec<String> = powers(&parse(text, &options)).into_iter().map(|(c, _)| c).collect();
        assert_eq!(channels, vec!["gpu0", "gpu1", "gpu0", "gpu1"]);
    }

    #[test]
    fn uuid_column_numbers_gpus() {
        let text = "timestamp, uuid, power.draw [W]\n2025/07/26 22:00:00.010, GPU-aaa, 100\n2025/07/26 22:00:00.020, GPU-bbb, 200\n2025/07/26 22:00:01.010, GPU-aaa, 101\n";
        let channels: Vec<String> = powers(&parse(text, &options())).into_iter().map(|(c, _)| c).collect();
        assert_eq!(channels, vec!["gpu0", "gpu1", "gpu0"]);
    }

    #[test]
    fn bad_row_keeps_the_others() {
        let text = "timestamp, index, power.draw [W]\n2025/07/26 22:00:00.010, 0, 100\nyesterday, 0, 100\n2025/07/26 22:00:01.010, 0, 12 kW\n2025/07/26 22:00:02.010, 0, 102\n";
        let decoded = parse(text, &options());
        let reasons: Vec<_> = decoded.rejections.iter().map(|r| (r.topic.as_str(), r.reason)).collect();
        assert_eq!(reasons, vec![("line 3", RejectReason::InvalidTimestamp), ("line 4", RejectReason::WrongUnit)]);
        assert_eq!(powers(&decoded).len(), 2);
    }

    #[test]
    fn repeated_header_is_skipped() {
        let text = format!("{WITH_UNITS}{WITH_UNITS}");
        let decoded = parse(&text, &options());
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        assert_eq!(powers(&decoded).len(), 4);
    }

    #[test]
    fn noheader_needs_column_names() {
        let decoded = parse("2025/07/26 22:00:00.010, 0, 100\n", &options());
        assert_eq!(decoded.rejections[0].reason, RejectReason::UnparsablePayload);
        let mut options = options();
        options.columns = Some(vec!["timestamp".to_owned(), "index".to_owned(), "power.draw [W]".to_owned()]);
        let decoded = parse("2025/07/26 22:00:00.010, 0, 100\n", &options);
        assert_eq!(powers(&decoded), vec![("gpu0".to_owned(), 100.0)]);
    }

    #[test]
    fn fold_hour_keeps_time_moving_forward() {
        let mut options = options();
        options.time_zone = TimeZone::get("Europe/Berlin").unwrap();
        options.received_ms = 1_800_000_000_000;
        // 2024-10-27: 02:00-03:00 local happens twice in Berlin.
        let text = "timestamp, index, power.draw [W]\n2024/10/27 02:59:59.000, 0, 1\n2024/10/27 02:00:01.000, 0, 2\n";
        let decoded = parse(text, &options);
        let times: Vec<_> = decoded.readings.iter().map(|r| r.ts_ms).collect();
        assert_eq!(times[1] - times[0], 2_000);
    }
}
