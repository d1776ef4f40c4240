//! `serve --config`: sites and topic-to-device mappings from a file.

use std::time::Duration;

use rumqttc::QoS;
use serde_json::Value;

use se_testkit::{eventually, mqtt_client, ServeOptions, ServeProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");

const CONFIG: &str = r#"
[[sites]]
id = "farm-1"
name = "Farm 1"
time_zone = "Africa/Tunis"
currency = "TND"

[[sites.devices]]
topic = "Smart_Energie/#"
device = "esp32-room-1"

[[sites.devices]]
topic = "tele/tasmota_5E2A1C/#"
device = "plug-pump"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_topics_land_on_configured_devices() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("smart-energy.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let options = ServeOptions { extra_args: vec!["--config".into(), config.display().to_string()], ..ServeOptions::default() };
    let server = ServeProcess::start(BINARY, scratch.path(), options);

    let publisher = mqtt_client("mapped-devices", server.mqtt_port).await;
    let tasmota = r#"{"ENERGY":{"Total":1.5,"Power":42}}"#;
    publisher.publish("tele/tasmota_5E2A1C/SENSOR", QoS::AtLeastOnce, false, tasmota).await.unwrap();
    for (topic, value) in [
        ("Smart_Energie/data/Current", "0.42A"),
        ("Smart_Energie/data/Voltage", "230.00V"),
        ("Smart_Energie/data/kWh", "0.05359kWh"),
        ("Smart_Energie/temps", "0 Days, 00:11:00"),
    ] {
        publisher.publish(topic, QoS::AtLeastOnce, false, value).await.unwrap();
    }

    let client = server.admin_client().await;
    let site: Value = eventually(Duration::from_secs(20), "both mapped devices in farm-1", || async {
        let site: Value = client.get(format!("{}/api/v1/sites/farm-1", server.http)).send().await.ok()?.json().await.ok()?;
        let devices = site["devices"].as_array()?;
        (devices.len() == 2).then_some(site)
    })
    .await;
    assert_eq!(site["time_zone"], "Africa/Tunis");
    let devices: Vec<&str> = site["devices"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(devices.contains(&"esp32-room-1"), "{devices:?}");
    assert!(devices.contains(&"plug-pump"), "{devices:?}");

    let plug: Value = eventually(Duration::from_secs(20), "the plug's readings", || async {
        let device: Value = client.get(format!("{}/api/v1/devices/plug-pump", server.http)).send().await.ok()?.json().await.ok()?;
        (!device["latest"].as_array()?.is_empty()).then_some(device)
    })
    .await;
    let power = plug["latest"].as_array().unwrap().iter().find(|v| v["metric"] == "power_w").map(|v| v["value"].clone());
    assert_eq!(power, Some(Value::from(42.0)));
    let unmapped = client.get(format!("{}/api/v1/devices/tasmota_5E2A1C", server.http)).send().await.unwrap();
    assert_eq!(unmapped.status(), 404, "the decoder's own id is not used");
}

#[test]
fn invalid_config_lists_every_problem() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("bad.toml");
    std::fs::write(&config, "[[sites]]\nid = \"farm 1\"\nname = \"Farm\"\ntime_zone = \"Mars/Base\"\ncurrency = \"TND\"\n").unwrap();
    let output = std::process::Command::new(BINARY)
        .args(["serve", "--mqtt-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(scratch.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("sites[0].id \"farm 1\""), "{stderr}");
    assert!(stderr.contains("Mars/Base"), "{stderr}");
    assert!(!scratch.path().join("data").exists(), "nothing starts before the file is valid");
}
