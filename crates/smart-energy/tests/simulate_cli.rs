//! `smart-energy simulate` with injected faults, published to a real
//! `smart-energy serve` on loopback and read back through the HTTP API.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use se_testkit::{eventually, ServeOptions, ServeProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(BINARY).arg("simulate").args(args).output().expect("run smart-energy simulate")
}

#[test]
fn bad_fault_names_value_and_form() {
    let output = simulate(&["--broker", "mqtt://127.0.0.1:1", "--fault", "melt:rig-01/gpu0@1m"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(r#"invalid fault "melt:rig-01/gpu0@1m": unknown kind "melt""#), "{stderr}");
    assert!(stderr.contains("expected KIND:DEVICE[/gpuN]@OFFSET such as drift:rig-01/gpu2@30m"), "{stderr}");
}

#[test]
fn fault_on_missing_rig_is_rejected_before_connecting() {
    let output = simulate(&["--broker", "mqtt://127.0.0.1:1", "--rigs", "2", "--fault", "offline:rig-09@1m"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(r#"fault "offline:rig-09@60000ms" names rig "rig-09""#), "{stderr}");
    assert!(stderr.contains("rigs are named rig-01 to rig-02"), "{stderr}");
    assert!(!stderr.contains("could not be reached"), "{stderr}");

    let output = simulate(&["--broker", "mqtt://127.0.0.1:1", "--fault", "psu-loss:rig-01@1m"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("--wall-meter"));
}

/// Fetches the values of one series, in time order.
async fn series(client: &reqwest::Client, http: &str, device: &str, channel: &str) -> Vec<f64> {
    let url = format!("{http}/api/v1/devices/{device}/readings?from=0&to=9999999999999&channel={channel}&metric=power_w&limit=100000");
    let response = client.get(url).send().await.expect("GET readings");
    if !response.status().is_success() {
        return Vec::new();
    }
    let body: Value = response.json().await.expect("readings JSON");
    let mut readings: Vec<(i64, f64)> = body
        .as_array()
        .or_else(|| body["readings"].as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|reading| (reading["ts_ms"].as_i64().expect("ts_ms"), reading["value"].as_f64().expect("value")))
        .collect();
    readings.sort_by_key(|reading| reading.0);
    readings.into_iter().map(|reading| reading.1).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_reach_the_server_and_truth_file() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let truth_path = scratch.path().join("truth.json");
    let broker = format!("mqtt://127.0.0.1:{}", server.mqtt_port);
    let args = [
        "--broker", &broker, "--rigs", "2", "--gpus", "2", "--no-prototype", "--count", "8", "--interval", "100ms", "--wall-meter",
        "--fault", "stuck:rig-01/gpu1@0", "--fault", "offline:rig-02@0", "--truth-out", truth_path.to_str().unwrap(),
    ];
    // The server runs in its own process, so blocking this test's thread is harmless.
    let output = simulate(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let truth: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    let records = truth.as_array().expect("a JSON array");
    assert_eq!(records.len(), 2, "{truth}");
    assert_eq!(records[0]["kind"], "stuck");
    assert_eq!(records[0]["device"], "rig-01");
    assert_eq!(records[0]["channel"], "gpu1");
    assert_eq!(records[1]["kind"], "offline");
    assert!(records[1].get("channel").is_none(), "{truth}");
    assert!(records[0]["start_ms"].as_i64().unwrap() > 1_700_000_000_000);

    let client = server.admin_client().await;
    let stuck = eventually(Duration::from_secs(20), "8 readings of rig-01/gpu1", || {
        let client = client.clone();
        let http = server.http.clone();
        async move {
            let values = series(&client, &http, "rig-01", "gpu1").await;
            (values.len() == 8).then_some(values)
        }
    })
    .await;
    assert!(stuck.windows(2).all(|pair| pair[0] == pair[1]), "{stuck:?}");
    let healthy = series(&client, &server.http, "rig-01", "gpu0").await;
    assert!(healthy.windows(2).any(|pair| pair[0] != pair[1]), "{healthy:?}");
    let wall = series(&client, &server.http, "rig-01", "wall").await;
    assert_eq!(wall.len(), 8);
    assert!(series(&client, &server.http, "rig-02", "gpu0").await.is_empty());
}
