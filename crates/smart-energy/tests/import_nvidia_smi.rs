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
