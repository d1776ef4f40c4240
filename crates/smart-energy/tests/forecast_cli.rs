//! End-to-end tests of `smart-energy forecast backtest` on generated series.

use std::path::Path;
use std::process::{Command, Output};

/// Days of generated data, starting Sunday 2023-01-01.
const DAYS: usize = 21;

/// Ten-minute readings written like the common "1/1/17 0:00" export style:
/// a daily cycle of load around 30 000 W, lower at weekends and rising with
/// a temperature column.
fn generated_series() -> String {
    let mut csv = String::from("DateTime,Temperature,Power\n");
    let start: jiff::civil::DateTime = "2023-01-01T00:00".parse().unwrap();
    for step in 0..DAYS * 24 * 6 {
        let time = start
            .checked_add(jiff::SignedDuration::from_mins(10 * step as i64))
            .unwrap();
        let hour = f64::from(time.hour()) + f64::from(time.minute()) / 60.0;
        let phase = 2.0 * std::f64::consts::PI * hour / 24.0;
        let weekend = matches!(
            time.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        );
        // Deterministic noise of ±300 W from the golden-ratio sequence.
        let noise = 600.0 * ((step as f64 * 0.618_033_988_75).fract() - 0.5);
        // The daily offset keeps temperature from being a function of the
        // hour alone, which would make it collinear with the hour columns.
        let day = step / (24 * 6);
        let temperature = 15.0 - 5.0 * phase.cos() + ((day * 3) % 7) as f64;
        let power = 25_000.0 - 8_000.0 * phase.cos() - if weekend { 3_000.0 } else { 0.0 }
            + 300.0 * temperature
            + noise;
        let stamp = time.strftime("%-m/%-d/%y %-H:%M");
        csv.push_str(&format!("{stamp},{temperature:.3},{power:.3}\n"));
    }
    csv
}

fn write_series(dir: &Path) -> String {
    let path = dir.join("power.csv");
    std::fs::write(&path, generated_series()).unwrap();
    path.display().to_string()
}

fn smart_energy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smart-energy"))
        .args(args)
        .env("LANG", "C")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .output()
        .unwrap()
}

fn backtest_args<'a>(file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "forecast",
        "backtest",
        file,
        "--time-column",
        "DateTime",
        "--value-column",
        "Power",
        "--time-format",
        "%m/%d/%y %H:%M",
        "--timezone",
        "Africa/Casablanca",
    ];
    args.extend_from_slice(extra);
    args
}

/// MAE printed on the row of `model` in the metrics table.
fn mae(stdout: &str, model: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(model))
        .unwrap_or_else(|| panic!("no row for {model} in:\n{stdout}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn backtest_writes_prediction_rows() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_series(dir.path());
    let output_path = dir.path().join("predictions.csv").display().to_string();
    let args = backtest_args(
        &file,
        &[
            "--from",
            "2023-01-15",
            "--models",
            "mean,naive,regression",
            "--feature-columns",
            "Temperature",
            "--output",
            &output_path,
        ],
    );
    let output = smart_energy(&args);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Origins 2023-01-15 ..= 2023-01-21: 7 days, 24 hours, 3 models.
    let written = std::fs::read_to_string(&output_path).unwrap();
    let mut lines = written.lines();
    assert_eq!(
        lines.next(),
        Some("time,actual,predicted,lower,upper,model")
    );
    assert_eq!(lines.count(), 7 * 24 * 3);
}

#[test]
fn prediction_rows_are_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_series(dir.path());
    let output_path = dir.path().join("predictions.csv").display().to_string();
    let args = backtest_args(
        &file,
        &[
            "--from",
            "2023-01-21",
            "--models",
            "naive",
            "--output",
            &output_path,
        ],
    );
    let output = smart_energy(&args);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let written = std::fs::read_to_string(&output_path).unwrap();
    let first = written.lines().nth(1).unwrap();
    let fields: Vec<&str> = first.split(',').collect();
    // Casablanca was on UTC+1 all year in 2023.
    assert_eq!(fields[0], "2023-01-21T00:00:00+01:00");
    let (actual, predicted, lower, upper): (f64, f64, f64, f64) = (
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
        fields[3].parse().unwrap(),
        fields[4].parse().unwrap(),
    );
    assert!(lower < predicted, "{first}");
    assert!(predicted < upper, "{first}");
    assert!(actual > 0.0, "{first}");
    assert_eq!(fields[5], "naive");
}

#[test]
fn seasonal_models_beat_flat_mean() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_series(dir.path());
    let args = backtest_args(
        &file,
        &["--from", "2023-01-15", "--models", "mean,naive,regression"],
    );
    let output = smart_energy(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(mae(&stdout, "naive") < mae(&stdout, "mean"), "{stdout}");
    assert!(
        mae(&stdout, "regression") < mae(&stdout, "mean"),
        "{stdout}"
    );
}

#[test]
fn best_model_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_series(dir.path());
    let args = backtest_args(
        &file,
        &["--from", "2023-01-15", "--models", "mean,regression"],
    );
    let output = smart_energy(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Best model by MAPE: regression"),
        "{stdout}"
    );
}

#[test]
fn unknown_value_column_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_series(dir.path());
    let mut args = backtest_args(&file, &["--from", "2023-01-15"]);
    args[6] = "Zone 1 Power Consumption";
    let output = smart_energy(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("\"Zone 1 Power Consumption\" given by --value-column was not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"Power\""),
        "available columns are listed: {stderr}"
    );
}

#[test]
fn invalid_from_date_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_series(dir.path());
    let output = smart_energy(&backtest_args(&file, &["--from", "15/01/2023"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("invalid date \"15/01/2023\""), "{stderr}");
    assert!(stderr.contains("YYYY-MM-DD"), "{stderr}");
}

#[test]
fn wrong_time_format_names_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_series(dir.path());
    let mut args = backtest_args(&file, &["--from", "2023-01-15"]);
    args[8] = "%Y-%m-%d %H:%M";
    let output = smart_energy(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("invalid time \"1/1/23 0:00\" at line 2"),
        "{stderr}"
    );
}

#[test]
fn too_early_start_names_earliest_date() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_series(dir.path());
    let output = smart_energy(&backtest_args(
        &file,
        &["--from", "2023-01-03", "--models", "naive-weekly"],
    ));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("pass --from 2023-01-15 or later"),
        "{stderr}"
    );
}
