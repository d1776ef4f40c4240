//! `import firebase-csv`: the prototype's CSV export, one row per cycle with
//! the columns Current (`0.42A`), Voltage (`18.64V`), kWh (`0.05359kWh`) and
//! Temps (uptime, `"0 Days, 00:11:00"`).
//!
//! Rows go through the same decoder as the prototype's MQTT topics, so an
//! import and a live feed store the same readings. The first row is placed at
//! `--start`; later rows follow the uptime. After an uptime reset the reboot
//! is assumed to have happened right after the previous row.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use se_core::{DeviceId, Reading, TimestampMs};
use se_decode::{parse_uptime, Decoder, PrototypeDecoder, PROTOTYPE_TOPICS};
use se_store::{RawQuery, SqliteStore, Store};

use crate::cmd::DEFAULT_DATA_DIR;

/// Rows written per transaction.
const BATCH_ROWS: usize = 5_000;

#[derive(Debug, clap::Args)]
pub struct FirebaseCsvArgs {
    /// CSV file exported from the prototype's Firebase node.
    pub file: PathBuf,
    /// Device id to store the readings under.
    #[arg(long)]
    pub device: String,
    /// Wall-clock time of the first row, RFC 3339 (2024-05-01T10:00:00Z or with an offset).
    #[arg(long)]
    pub start: String,
    /// Data directory of the store.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "SMART_ENERGY_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Counts printed at the end of an import.
#[derive(Debug, Default)]
struct Summary {
    rows: u64,
    stored: u64,
    duplicates: u64,
    rejected: Vec<(u64, String)>,
}

/// One decoded row waiting to be written.
struct Row {
    line: u64,
    ts_ms: TimestampMs,
    readings: Vec<Reading>,
}

pub fn run(args: FirebaseCsvArgs) -> anyhow::Result<()> {
    let device = DeviceId::parse(&args.device).map_err(|error| anyhow::anyhow!("--device: {error}"))?;
    let start: jiff::Timestamp = args
        .start
        .parse()
        .map_err(|_| anyhow::anyhow!("--start {:?} is not an RFC 3339 time; use a form such as 2024-05-01T10:00:00Z", args.start))?;
    if start > jiff::Timestamp::now() {
        anyhow::bail!("--start {} is in the future; give the time of the export's first row, such as 2024-05-01T10:00:00Z", args.start);
    }
    let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);

    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    let store = SqliteStore::open(&args.data_dir)?;

    let progress = ProgressBar::new(size);
    progress.set_style(
        ProgressStyle::with_template("{spinner} importing [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(file);
    let columns = header_columns(&mut reader)?;
    let mut importer = Importer::new(device, start.as_millisecond());
    let mut summary = Summary::default();
    let mut pending: Vec<Row> = Vec::new();

    let mut record = csv::StringRecord::new();
    let mut line = 1u64;
    loop {
        let result = reader.read_record(&mut record);
        line = record.position().map_or(line + 1, |position| position.line());
        match result {
            Ok(false) => break,
            Ok(true) => {
                summary.rows += 1;
                match importer.decode_row(line, &record, &columns) {
                    // A row at an instant already seen in this file repeats a cycle.
                    Ok(row) if !importer.seen.insert(row.ts_ms) => summary.duplicates += 1,
                    Ok(row) => pending.push(row),
                    Err(reason) => summary.rejected.push((line, reason)),
                }
            }
            Err(error) if matches!(error.kind(), csv::ErrorKind::Io(_)) => {
                return Err(error).with_context(|| format!("failed to read {}", args.file.display()));
            }
            Err(error) => {
                summary.rows += 1;
                summary.rejected.push((line, format!("unreadable CSV row: {error}")));
            }
        }
        if pending.len() >= BATCH_ROWS {
            runtime.block_on(write_rows(&store, &importer.device, std::mem::take(&mut pending), &mut summary))?;
            progress.set_position(reader.position().byte());
            progress.set_message(format!("{} rows", summary.rows));
        }
    }
    runtime.block_on(write_rows(&store, &importer.device, pending, &mut summary))?;
    progress.finish_and_clear();
    print_summary(&summary);
    Ok(())
}

/// Positions of the four columns, found by header name.
struct Columns {
    current: usize,
    voltage: usize,
    energy: usize,
    uptime: usize,
}

fn header_columns(reader: &mut csv::Reader<File>) -> anyhow::Result<Columns> {
    let headers = reader.headers().context("cannot read the CSV header")?.clone();
    let find = |name: &str| {
        headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name)).ok_or_else(|| {
            anyhow::anyhow!(
                "the CSV header has no {name:?} column (found {:?}); the prototype export has Current,Voltage,kWh,Temps",
                headers.iter().collect::<Vec<_>>()
            )
        })
    };
    Ok(Columns { current: find("Current")?, voltage: find("Voltage")?, energy: find("kWh")?, uptime: find("Temps")? })
}

/// Turns rows into readings through the prototype decoder, placing them in time.
struct Importer {
    device: DeviceId,
    decoder: PrototypeDecoder,
    start_ms: TimestampMs,
    previous: Option<(u64, TimestampMs)>,
    seen: HashSet<TimestampMs>,
}

impl Importer {
    fn new(device: DeviceId, start_ms: TimestampMs) -> Self {
        let decoder = PrototypeDecoder::new(device.clone());
        Self { device, decoder, start_ms, previous: None, seen: HashSet::new() }
    }

    /// Decodes one row. A row with any rejected value is rejected whole, with
    /// the reasons, because a cycle with a missing value cannot be trusted.
    fn decode_row(&mut self, line: u64, record: &csv::StringRecord, columns: &Columns) -> Result<Row, String> {
        let field = |index: usize| record.get(index).unwrap_or("").trim().to_owned();
        let values = [field(columns.current), field(columns.voltage), field(columns.energy), field(columns.uptime)];
        let uptime_s = parse_uptime(&values[3])
            .ok_or_else(|| format!("Temps {:?} is not an uptime like \"0 Days, 00:11:00\"", values[3]))?;
        let received_ms = self.arrival_time(uptime_s);

        let mut readings = Vec::new();
        let mut reasons = Vec::new();
        for (topic, value) in PROTOTYPE_TOPICS.iter().zip(values.iter()) {
            let decoded = self.decoder.decode(topic, value.as_bytes(), received_ms);
            readings.extend(decoded.readings);
            reasons.extend(decoded.rejections.into_iter().map(|r| r.detail));
        }
        if !reasons.is_empty() {
            return Err(reasons.join("; "));
        }
        let ts_ms = readings.first().map(|r| r.ts_ms).ok_or_else(|| "the row produced no reading".to_owned())?;
        self.previous = Some((uptime_s, ts_ms));
        Ok(Row { line, ts_ms, readings })
    }

    /// Returns the time at which the row would have arrived over MQTT. The
    /// decoder uses it to anchor the boot on the first row and after a reset.
    fn arrival_time(&self, uptime_s: u64) -> TimestampMs {
        match self.previous {
            None => self.start_ms,
            Some((previous_uptime, previous_ms)) if uptime_s >= previous_uptime => {
                previous_ms + (uptime_s - previous_uptime) as i64 * 1000
            }
            Some((_, previous_ms)) => previous_ms + uptime_s as i64 * 1000,
        }
    }
}

/// Writes rows, counting as duplicates those whose instant is already stored
/// for the device, as when a file is imported twice.
async fn write_rows(store: &SqliteStore, device: &DeviceId, rows: Vec<Row>, summary: &mut Summary) -> anyhow::Result<()> {
    let (Some(from), Some(to)) = (rows.iter().map(|r| r.ts_ms).min(), rows.iter().map(|r| r.ts_ms).max()) else {
        return Ok(());
    };
    let query = RawQuery { device: device.clone(), channel: None, metric: None, from_ms: from, to_ms: to + 1, limit: u32::MAX };
    let stored: HashSet<TimestampMs> = store.raw_readings(&query).await?.into_iter().map(|r| r.ts_ms).collect();
    let mut fresh = Vec::new();
    for row in rows {
        if stored.contains(&row.ts_ms) {
            summary.duplicates += 1;
            tracing::debug!(line = row.line, "duplicate row skipped");
            continue;
        }
        summary.stored += 1;
        fresh.extend(row.readings);
    }
    store.write_readings(&fresh).await?;
    Ok(())
}

fn print_summary(summary: &Summary) {
    println!("rows read:          {}", summary.rows);
    println!("rows stored:        {}", summary.stored);
    println!("duplicates skipped: {}", summary.duplicates);
    println!("rows rejected:      {}", summary.rejected.len());
    for (line, reason) in &summary.rejected {
        println!("  line {line}: {reason}");
    }
}
