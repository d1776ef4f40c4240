//! `import nvidia-smi` on a generated log, read back through `serve`.

use std::fmt::Write;

use serde_json::Value;

use se_testkit::{ServeOptions, ServeProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");

/// Writes a log shaped like `nvidia-smi --query-gpu=timestamp,power.draw,utilization.gpu
/// --format=csv -lms 100` on 2 GPUs: no index column, units in the values, and
/// one "[Not Supported]" power reading.
fn generated_log() -> String {
    let mut log = String::from("timestamp, power.draw [W], utilization.gpu [%]\n");
    for poll in 0..5 {
        for gpu in 0..2 {
            let ms = 100 * poll + 3 * gpu;
            let power = if poll == 2 && gpu == 1 { "[Not Supported]".to_owned() } else { format!("{}.50 W", 100 + 10 * gpu + poll) };
            writeln!(log, "2025/07/27 10:00:00.{ms:03}, {power}, {} %", 50 + poll).unwrap();
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvidia_smi_log_is_imported_per_gpu() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("gpus.csv");
    std::fs::write(&file, generated_log()).unwrap();
    let data_dir = scratch.path().join("data");
    let output = std::process::Command::new(BINARY)
        .args(["import", "nvidia-smi"])
        .arg(&file)
        .args(["--device", "rig-9", "--timezone", "Europe/Paris", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("run the import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    // 10 rows x 2 metrics, less the unsupported power value.
    assert!(stdout.contains("values stored:      19"), "{stdout}");
    assert!(stdout.contains("values rejected:    1"), "{stdout}");
    assert!(stdout.contains("line 7"), "the rejection names its line: {stdout}");

    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(data_dir), ..ServeOptions::default() });
    let client = server.admin_client().await;
    let url = format!("{}/api/v1/devices/rig-9/readings?from=0&to=9999999999999&limit=1000&metric=power_w", server.http);
    let readings: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    let readings = readings.as_array().cloned().unwrap_or_default();
    let gpu1: Vec<f64> = readings.iter().filter(|r| r["channel"] == "gpu1").filter_map(|r| r["value"].as_f64()).collect();
    assert_eq!(gpu1, vec![110.5, 111.5, 113.5, 114.5]);
    // 10:00 in Paris on 27 July (UTC+2) is 08:00 UTC.
    let first = readings.iter().filter_map(|r| r["ts_ms"].as_i64()).min().unwrap();
    assert_eq!(first, 1_753_603_200_000);
}

/// Minutes between two polls of the history logs.
const POLL_MINUTES: i64 = 5;

/// Writes a log shaped like `nvidia-smi --query-gpu=timestamp,index,power.draw,utilization.gpu
/// --format=csv -l 300` on 3 GPUs: one poll every 5 minutes over `days` days,
/// the last one at `last_poll_ms`. As in real logs, the rows of one poll are a
/// few milliseconds apart, because nvidia-smi queries the GPUs one after another.
fn five_minute_log(last_poll_ms: i64, days: i64) -> String {
    let polls = days * 24 * 60 / POLL_MINUTES;
    let mut log = String::from("timestamp, index, power.draw [W], utilization.gpu [%]\n");
    for poll in 0..polls {
        let poll_ms = last_poll_ms - (polls - 1 - poll) * POLL_MINUTES * 60_000;
        for gpu in 0..3 {
            let row_ms = poll_ms + 7 * gpu;
            let time = jiff::Timestamp::from_millisecond(row_ms).unwrap();
            let power = 180 + (poll * 37 + gpu * 11) % 40;
            writeln!(log, "{}, {gpu}, {power}.25 W, {} %", time.strftime("%Y/%m/%d %H:%M:%S%.3f"), 90 + poll % 7).unwrap();
        }
    }
    log
}

fn import_log(scratch: &std::path::Path, data_dir: &std::path::Path, device: &str, log: &str) {
    let file = scratch.join(format!("{device}.csv"));
    std::fs::write(&file, log).unwrap();
    let output = std::process::Command::new(BINARY)
        .args(["import", "nvidia-smi"])
        .arg(&file)
        .args(["--device", device, "--timezone", "UTC", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run the import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("values rejected:    0"), "{stdout}");
}

/// A regular 5-minute log must give no silence, and a log that stopped two
/// hours ago must give one silence measured in 5-minute intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_minute_log_is_not_silent() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let now_ms = jiff::Timestamp::now().as_millisecond();
    import_log(scratch.path(), &data_dir, "rig-h1", &five_minute_log(now_ms - 60_000, 3));
    import_log(scratch.path(), &data_dir, "rig-h2", &five_minute_log(now_ms - 2 * 3_600_000, 3));

    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(data_dir), ..ServeOptions::default() });
    let client = server.admin_client().await;
    let url = format!("{}/api/v1/sites/default/anomalies?hours=48", server.http);
    let response = client.get(url).header("Accept-Language", "en").send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    let anomalies = body["anomalies"].as_array().cloned().unwrap_or_default();
    let silent: Vec<&Value> = anomalies.iter().filter(|anomaly| anomaly["kind"] == "silent").collect();

    assert_eq!(silent.len(), 1, "{body:#}");
    assert_eq!(silent[0]["device"], "rig-h2");
    assert_eq!(silent[0]["severity"], "critical");
    let message = silent[0]["message"].as_str().unwrap_or_default();
    assert!(message.ends_with("while it usually sends one every 5 min"), "{message}");
    for anomaly in &anomalies {
        let message = anomaly["message"].as_str().unwrap_or_default();
        assert!(!message.contains("every 0"), "{message}");
    }

    let url = format!("{}/api/v1/sites/default/anomalies?hours=48", server.http);
    let body: Value = client.get(url).header("Accept-Language", "fr").send().await.unwrap().json().await.unwrap();
    let anomalies = body["anomalies"].as_array().cloned().unwrap_or_default();
    let silent: Vec<&Value> = anomalies.iter().filter(|anomaly| anomaly["kind"] == "silent").collect();
    assert_eq!(silent.len(), 1, "{body:#}");
    let message = silent[0]["message"].as_str().unwrap_or_default();
    assert!(message.ends_with("toutes les 5 min d'habitude"), "{message}");
}

/// Runs `import nvidia-smi` on `log` with `extra` arguments; returns success, stdout and stderr.
fn import_with(scratch: &std::path::Path, log: &str, extra: &[&str]) -> (bool, String, String) {
    let file = scratch.join("log.csv");
    std::fs::write(&file, log).unwrap();
    let output = std::process::Command::new(BINARY)
        .args(["import", "nvidia-smi"])
        .arg(&file)
        .args(["--device", "rig-bad", "--timezone", "UTC", "--data-dir"])
        .arg(scratch.join("data"))
        .args(extra)
        .output()
        .expect("run the import");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn rejections_listed_by_line_in_file_order() {
    let scratch = tempfile::tempdir().unwrap();
    let log = "timestamp, index, power.draw [W], temperature.gpu\n\
               2025/07/27 10:00:00.000, 0, 120.00 W, 60\n\
               2025/07/27 10:00:00.003, 1, 121.00 W, 163000\n\
               yesterday, 0, 122.00 W, 61\n\
               2025/07/27 10:00:01.000, 0, 123.00 W, 62\n";

    let (succeeded, stdout, stderr) = import_with(scratch.path(), log, &[]);

    assert!(succeeded, "{stdout}{stderr}");
    assert!(stdout.contains("values rejected:    2"), "{stdout}");
    let temperature = stdout.find("line 3: ").unwrap_or_else(|| panic!("the value rejection names its line: {stdout}"));
    let timestamp = stdout.find("line 4").unwrap_or_else(|| panic!("the row rejection names its line: {stdout}"));
    assert!(temperature < timestamp, "listed in file order: {stdout}");
}

#[test]
fn file_without_header_fails() {
    let scratch = tempfile::tempdir().unwrap();
    let (succeeded, stdout, stderr) = import_with(scratch.path(), "2025/07/27 10:00:00.000, 0, 120.00 W\n", &[]);

    assert!(!succeeded, "an import that stored nothing succeeded: {stdout}");
    assert!(stdout.contains("line 1 is not an nvidia-smi CSV header"), "{stdout}");
    assert!(!stdout.contains("give the column names"), "names an option that does not exist: {stdout}");
    assert!(stderr.contains("no value of"), "{stderr}");
}

#[test]
fn zero_gpu_count_rejected() {
    let scratch = tempfile::tempdir().unwrap();
    let (succeeded, _, stderr) = import_with(scratch.path(), "timestamp, power.draw [W]\n", &["--gpu-count", "0"]);

    assert!(!succeeded);
    assert!(stderr.contains("--gpu-count"), "{stderr}");
    assert!(stderr.contains("1..=1024") || stderr.contains("1..1025"), "names the range: {stderr}");
}
