//! Device discovery end to end: a Tasmota plug announces itself over MQTT to
//! a real `smart-energy serve`, waits under discovered devices while its
//! readings are stored, and joins the device list and its site once an admin
//! approves it. An ignored device stays hidden.

use std::time::Duration;

use rumqttc::QoS;
use serde_json::{json, Value};

use se_testkit::{eventually, mqtt_client, ServeOptions, ServeProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");

fn discovery_config(topic: &str, mac: &str) -> String {
    json!({
        "ip": "192.168.1.50", "dn": format!("{topic} plug"), "hn": format!("tasmota-{mac}"), "mac": mac,
        "md": "Sonoff Pow R2", "sw": "13.2.0", "t": topic, "ft": "%prefix%/%topic%/", "tp": ["cmnd", "stat", "tele"]
    })
    .to_string()
}

/// Telemetry without `Time`, so the readings get the receive time.
const SENSOR: &str = r#"{"ENERGY":{"Total":152.304,"Power":45,"Voltage":231,"Current":0.261}}"#;

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let response = client.get(&url).send().await.unwrap();
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.json().await.unwrap()
}

fn field_values(list: &Value, key: &str) -> Vec<String> {
    list.as_array().map(|items| items.iter().filter_map(|item| item[key].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// Returns when the discovered device `topic` was last announced, if ever.
async fn last_announced(server: &ServeProcess, client: &reqwest::Client, topic: &str) -> Option<i64> {
    let discovered = get_json(client, format!("{}/api/v1/discovered?status=all", server.http)).await;
    let found = discovered.as_array()?.iter().find(|item| item["device"] == topic)?;
    found["last_seen_ms"].as_i64()
}

/// Publishes a retained discovery config and one telemetry message, then
/// waits until the new announcement and the readings are stored.
async fn announce_and_report(server: &ServeProcess, client: &reqwest::Client, mqtt: &rumqttc::AsyncClient, topic: &str, mac: &str) {
    let before = last_announced(server, client, topic).await;
    let config_topic = format!("tasmota/discovery/{mac}/config");
    mqtt.publish(config_topic, QoS::AtLeastOnce, true, discovery_config(topic, mac)).await.unwrap();
    mqtt.publish(format!("tele/{topic}/SENSOR"), QoS::AtLeastOnce, false, SENSOR).await.unwrap();
    eventually(Duration::from_secs(20), "the announcement and the readings", || async {
        let announced = last_announced(server, client, topic).await;
        let response = client.get(format!("{}/api/v1/devices/{topic}", server.http)).send().await.ok()?;
        (announced > before && response.status().is_success()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_device_waits_for_approval() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let client = server.admin_client().await;
    let mqtt = mqtt_client("discovery-test", server.mqtt_port).await;
    let site = json!({"name": "Farm", "time_zone": "UTC", "currency": "EUR", "co2_g_per_kwh": null});
    let response = client.put(format!("{}/api/v1/sites/farm", server.http)).json(&site).send().await.unwrap();
    assert!(response.status().is_success(), "create site: {}", response.status());

    announce_and_report(&server, &client, &mqtt, "tasmota_1A2B3C", "84CCA81A2B3C").await;

    let pending = get_json(&client, format!("{}/api/v1/discovered", server.http)).await;
    assert_eq!(field_values(&pending, "device"), vec!["tasmota_1A2B3C"]);
    assert_eq!(pending[0]["format"], "tasmota");
    assert_eq!(pending[0]["model"], "Sonoff Pow R2");
    let devices = get_json(&client, format!("{}/api/v1/devices", server.http)).await;
    assert!(!field_values(&devices, "id").contains(&"tasmota_1A2B3C".to_owned()), "pending device listed: {devices}");

    let approve = format!("{}/api/v1/discovered/tasmota_1A2B3C/approve", server.http);
    let response = client.post(approve).json(&json!({"site": "farm"})).send().await.unwrap();
    assert_eq!(response.status(), 204);

    let devices = get_json(&client, format!("{}/api/v1/devices", server.http)).await;
    assert!(field_values(&devices, "id").contains(&"tasmota_1A2B3C".to_owned()), "approved device missing: {devices}");
    let farm = get_json(&client, format!("{}/api/v1/sites/farm", server.http)).await;
    assert_eq!(farm["devices"], json!(["tasmota_1A2B3C"]));
    let device = get_json(&client, format!("{}/api/v1/devices/tasmota_1A2B3C", server.http)).await;
    let latest = device["latest"].as_array().map_or(0, Vec::len);
    assert_eq!(latest, 4, "readings sent while pending are kept: {device}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_device_stays_hidden() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let client = server.admin_client().await;
    let mqtt = mqtt_client("discovery-ignore-test", server.mqtt_port).await;

    announce_and_report(&server, &client, &mqtt, "tasmota_DDEEFF", "84CCA8DDEEFF").await;
    let ignore = format!("{}/api/v1/discovered/tasmota_DDEEFF/ignore", server.http);
    let response = client.post(ignore).send().await.unwrap();
    assert_eq!(response.status(), 204);

    // The device announces itself again, as on every reboot.
    announce_and_report(&server, &client, &mqtt, "tasmota_DDEEFF", "84CCA8DDEEFF").await;
    let devices = get_json(&client, format!("{}/api/v1/devices", server.http)).await;
    assert!(!field_values(&devices, "id").contains(&"tasmota_DDEEFF".to_owned()), "ignored device listed: {devices}");
    let ignored = get_json(&client, format!("{}/api/v1/discovered?status=ignored", server.http)).await;
    assert_eq!(field_values(&ignored, "device"), vec!["tasmota_DDEEFF"]);
    let pending = get_json(&client, format!("{}/api/v1/discovered", server.http)).await;
    assert!(field_values(&pending, "device").is_empty(), "ignored device back to pending: {pending}");
}
