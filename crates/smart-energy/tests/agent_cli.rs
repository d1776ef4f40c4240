//! `smart-energy agent` as a process: configuration errors, the missing NVIDIA
//! driver, and a broker outage through the real `smart-energy serve`.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use se_testkit::{eventually, free_port, ADMIN_PASSWORD};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");

/// Sends SIGTERM and waits up to 30 s; returns the exit code.
fn terminate(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("process {} did not stop within 30 s of SIGTERM", child.id());
}

/// Starts `serve` on fixed ports, so that a restart listens where the agent connects.
async fn start_serve(data_dir: &Path, http_port: u16, mqtt_port: u16, log: &Path) -> Child {
    let log = File::options().create(true).append(true).open(log).unwrap();
    let child = Command::new(BINARY)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--http-listen", &format!("127.0.0.1:{http_port}"), "--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")])
        .env("SMART_ENERGY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start smart-energy serve");
    let url = format!("http://127.0.0.1:{http_port}/healthz");
    eventually(Duration::from_secs(60), "serve to become healthy", || async {
        let response = reqwest::get(&url).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    child
}

async fn admin_client(http: &str) -> reqwest::Client {
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let response = client
        .post(format!("{http}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "admin login failed: {}", response.status());
    client
}

async fn device(client: &reqwest::Client, http: &str, id: &str) -> Option<Value> {
    let response = client.get(format!("{http}/api/v1/devices/{id}")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn last_seq(client: &reqwest::Client, http: &str, id: &str) -> u64 {
    device(client, http, id).await.and_then(|device| device["counters"]["last_seq"].as_u64()).unwrap_or(0)
}

#[test]
fn bad_config_lists_every_problem() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("agent.toml");
    std::fs::write(&path, "devise = \"rig-1\"\ninterval = \"fast\"\n[mqtt]\nbroker = \"http://broker\"\n[miner]\nstop_command = []\n").unwrap();
    let output = Command::new(BINARY).arg("agent").arg("--config").arg(&path).env("LC_ALL", "C").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for expected in ["devise: unknown field", "device: missing", "interval: invalid duration \"fast\"", "broker: invalid broker URL", "miner.stop_command"] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn french_locale_gets_french_report() {
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(BINARY)
        .args(["agent", "--broker", "mqtt://127.0.0.1:1883", "--interval", "50ms"])
        .arg("--buffer-dir")
        .arg(scratch.path())
        .env("LC_ALL", "fr_FR.UTF-8")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("configuration de l'agent invalide (options de la ligne de commande)"), "{stderr}");
    assert!(stderr.contains("device : manquant"), "{stderr}");
    assert!(stderr.contains("--interval : 50ms est hors de l'intervalle"), "{stderr}");
}

#[test]
fn missing_driver_prints_one_line() {
    if se_agent::sources::nvml::NvmlGpus::init().is_ok() {
        eprintln!("skipped: this machine has an NVIDIA driver");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let log_path = scratch.path().join("agent.log");
    let log = File::create(&log_path).unwrap();
    let mut agent = Command::new(BINARY)
        .args(["agent", "--broker", &format!("mqtt://127.0.0.1:{}", free_port()), "--device", "rig-nvml", "--interval", "200ms"])
        .arg("--buffer-dir")
        .arg(scratch.path().join("buffer"))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stderr(log)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let code = terminate(&mut agent);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(log.matches("NVML is not available").count(), 1, "{log}");
    assert!(log.contains("GPU metrics are off; CPU and miner sources continue"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_outage_stores_each_reading_once() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let serve_log = scratch.path().join("serve.log");
    let agent_log = scratch.path().join("agent.log");
    let (http_port, mqtt_port) = (free_port(), free_port());
    let http = format!("http://127.0.0.1:{http_port}");

    let mut serve = start_serve(&data_dir, http_port, mqtt_port, &serve_log).await;
    let mut agent = Command::new(BINARY)
        .args(["agent", "--broker", &format!("mqtt://127.0.0.1:{mqtt_port}"), "--device", "rig-e2e", "--interval", "200ms", "--simulate=2"])
        .arg("--buffer-dir")
        .arg(scratch.path().join("buffer"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(File::create(&agent_log).unwrap())
        .spawn()
        .unwrap();

    let client = admin_client(&http).await;
    eventually(Duration::from_secs(30), "3 stored messages", || async { (last_seq(&client, &http, "rig-e2e").await >= 3).then_some(()) }).await;
    let before_outage = last_seq(&client, &http, "rig-e2e").await;
    assert_eq!(terminate(&mut serve), Some(0), "serve must stop cleanly");
    // The agent keeps sampling every 200 ms while the server is down.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let mut serve = start_serve(&data_dir, http_port, mqtt_port, &serve_log).await;
    let client = admin_client(&http).await;
    let target = before_outage + 20;
    eventually(Duration::from_secs(30), "messages after the restart", || async { (last_seq(&client, &http, "rig-e2e").await >= target).then_some(()) }).await;
    let agent_code = terminate(&mut agent);
    let agent_output = std::fs::read_to_string(&agent_log).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let summary = device(&client, &http, "rig-e2e").await.expect("device summary");
    let url = format!("{http}/api/v1/devices/rig-e2e/readings?from=0&to=9999999999999&limit=100000");
    let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    let readings = body.as_array().or_else(|| body["readings"].as_array()).cloned().unwrap_or_default();
    assert_eq!(terminate(&mut serve), Some(0));

    let power: Vec<i64> = readings
        .iter()
        .filter(|reading| reading["channel"] == "gpu0" && reading["metric"] == "power_w")
        .filter_map(|reading| reading["ts_ms"].as_i64())
        .collect();
    let distinct: BTreeSet<i64> = power.iter().copied().collect();
    let stored_last_seq = summary["counters"]["last_seq"].as_u64().unwrap_or(0);

    assert_eq!(agent_code, Some(0), "agent log:\n{agent_output}");
    assert!(agent_output.contains("lost the broker connection"), "the agent never saw the outage:\n{agent_output}");
    assert!(agent_output.contains("buffered=0"), "readings were left unsent at stop:\n{agent_output}");
    assert_eq!(summary["counters"]["lost"], 0, "{summary}");
    assert_eq!(summary["counters"]["restarts"], 0, "{summary}");
    assert_eq!(summary["online"], false, "{summary}");
    assert_eq!(power.len(), distinct.len(), "a reading was stored twice");
    assert_eq!(power.len() as u64, stored_last_seq, "one gpu0 power reading per message 1..={stored_last_seq}");
}
