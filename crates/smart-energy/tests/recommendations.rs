//! The background task of `serve` computes savings recommendations for a
//! site shortly after start, with the schedule of the configuration file.

use std::time::Duration;

use serde_json::Value;

use se_core::{now_ms, DeviceId, Metric, Reading};
use se_store::{SqliteStore, Store};
use se_testkit::{eventually, ServeOptions, ServeProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");
const DAY_MS: i64 = 86_400_000;

const CONFIG: &str = r#"
[recommendations]
first_run_after = "1s"
interval = "1h"
history = "7d"

[[sites]]
id = "farm"
name = "Farm"
time_zone = "UTC"
currency = "EUR"

[[sites.devices]]
topic = "tele/rig_idle/#"
device = "rig-idle"
"#;

/// Generates a week of readings every 10 minutes: busy at 280 W from 08:00 to 20:00
/// UTC, idle at 0 % utilization on 80 W of standby otherwise.
fn idle_week(device: &DeviceId) -> Vec<Reading> {
    let now = now_ms();
    let mut readings = Vec::new();
    let mut ts = now - 7 * DAY_MS;
    while ts < now {
        let busy = (8..20).contains(&(ts.rem_euclid(DAY_MS) / 3_600_000));
        readings.push(Reading::new(device.clone(), "main", Metric::Power, ts, if busy { 280.0 } else { 80.0 }));
        readings.push(Reading::new(device.clone(), "main", Metric::Utilization, ts, if busy { 95.0 } else { 0.0 }));
        ts += 600_000;
    }
    readings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_run_stores_recommendation() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    {
        let store = SqliteStore::open(&data_dir).unwrap();
        store.write_readings(&idle_week(&DeviceId::parse("rig-idle").unwrap())).await.unwrap();
    }
    let config = scratch.path().join("smart-energy.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let options = ServeOptions {
        data_dir: Some(data_dir),
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..ServeOptions::default()
    };
    let mut server = ServeProcess::start(BINARY, scratch.path(), options);
    let client = server.admin_client().await;

    let body: Value = eventually(Duration::from_secs(30), "a stored recommendation for farm", || async {
        let body: Value = client.get(format!("{}/api/v1/sites/farm/recommendations", server.http)).send().await.ok()?.json().await.ok()?;
        (body["recommendations"].as_array()?.len() == 1).then_some(body)
    })
    .await;

    let recommendation = &body["recommendations"][0];
    assert_eq!(recommendation["device"], "rig-idle", "{body}");
    assert_eq!(recommendation["action"]["type"], "switch_off_when_idle", "{body}");
    assert_eq!(recommendation["status"], "open");
    // The site has no tariff, so the estimate is in kWh only: 80 W for 12 h a day over 30 days.
    assert_eq!(recommendation["estimate"]["money_per_month"], Value::Null);
    let kwh = recommendation["estimate"]["kwh_per_month"].as_f64().unwrap();
    assert!((kwh - 28.8).abs() < 0.5, "{body}");
    let log = server.log();
    assert!(log.contains("recommendation run done"), "{log}");
    assert!(log.contains("sites=2"), "the run covers the sites default and farm: {log}");

    assert_eq!(server.stop(), Some(0));
    let log = server.log();
    assert!(log.contains("recommendation task stopped"), "{log}");
}
