//! End-to-end tests of `smart-energy serve`: real MQTT clients over loopback,
//! the real binary, its SQLite store in a temporary directory, and the HTTP API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;

use se_testkit::{eventually, mqtt_client, port_open, require_service, ServeOptions, ServeProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/prototype_export.csv");
const PROTOTYPE_TOPICS: [&str; 4] =
    ["Smart_Energie/data/Current", "Smart_Energie/data/Voltage", "Smart_Energie/data/kWh", "Smart_Energie/temps"];

/// One row of the prototype export, as printed by the firmware.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    current: String,
    voltage: String,
    kwh: String,
    uptime: String,
}

fn fixture_rows() -> Vec<Row> {
    let mut reader = csv::Reader::from_path(FIXTURE).expect("open the fixture");
    reader
        .records()
        .map(|record| {
            let record = record.expect("fixture row");
            Row { current: record[0].into(), voltage: record[1].into(), kwh: record[2].into(), uptime: record[3].into() }
        })
        .collect()
}

/// Stored values of one instant of the prototype device, printed with the
/// firmware's precision: current and voltage `%.2f`, energy in kWh `%.5f`.
fn printed(values: &HashMap<String, f64>) -> (String, String, String) {
    (
        format!("{:.2}A", values["current_a"]),
        format!("{:.2}V", values["voltage_v"]),
        format!("{:.5}kWh", values["apparent_energy_vah"] / 1000.0),
    )
}

/// Reads every raw reading of `device` and groups the values by timestamp.
async fn readings_by_instant(client: &reqwest::Client, http: &str, device: &str) -> BTreeMap<i64, HashMap<String, f64>> {
    let url = format!("{http}/api/v1/devices/{device}/readings?from=0&to=9999999999999&limit=100000");
    let response = client.get(url).send().await.expect("GET readings");
    if !response.status().is_success() {
        return BTreeMap::new();
    }
    let body: Value = response.json().await.expect("readings JSON");
    let mut instants: BTreeMap<i64, HashMap<String, f64>> = BTreeMap::new();
    for reading in body.as_array().or_else(|| body["readings"].as_array()).cloned().unwrap_or_default() {
        let ts = reading["ts_ms"].as_i64().expect("ts_ms");
        let metric = reading["metric"].as_str().expect("metric").to_owned();
        let value = reading["value"].as_f64().expect("value");
        instants.entry(ts).or_default().insert(metric, value);
    }
    instants
}

async fn publish_prototype_rows(client: &AsyncClient, rows: &[Row]) {
    for row in rows {
        let values = [&row.current, &row.voltage, &row.kwh, &row.uptime];
        for (topic, value) in PROTOTYPE_TOPICS.iter().zip(values) {
            client.publish(*topic, QoS::AtMostOnce, false, value.clone()).await.expect("queue publish");
        }
    }
}

/// Asserts that the stored instants hold exactly the distinct rows of the file.
fn assert_matches_fixture(instants: &BTreeMap<i64, HashMap<String, f64>>, rows: &[Row]) {
    assert_eq!(instants.len(), 28, "28 distinct readings expected (rows 7 and 8 are one)");
    let mut expected: Vec<(String, String, String)> = Vec::new();
    for row in rows {
        let key = (row.current.clone(), row.voltage.clone(), row.kwh.clone());
        if expected.last() != Some(&key) {
            expected.push(key);
        }
    }
    let stored: Vec<(String, String, String)> = instants.values().map(printed).collect();
    assert_eq!(stored, expected);
}

async fn wait_for_instants(server: &ServeProcess, client: &reqwest::Client, device: &str, count: usize) -> BTreeMap<i64, HashMap<String, f64>> {
    eventually(Duration::from_secs(20), "the prototype readings to be stored", || async {
        let instants = readings_by_instant(client, &server.http, device).await;
        (instants.len() >= count && instants.values().all(|v| v.len() >= 5)).then_some(instants)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prototype_messages_are_stored_once() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let rows = fixture_rows();
    assert_eq!(rows.len(), 29);

    let publisher = mqtt_client("esp32-firmware", server.mqtt_port).await;
    publish_prototype_rows(&publisher, &rows).await;

    let client = server.admin_client().await;
    let instants = wait_for_instants(&server, &client, "esp32-prototype", 28).await;
    // Give a straggling duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let instants_after = readings_by_instant(&client, &server.http, "esp32-prototype").await;
    assert_eq!(instants, instants_after);
    assert_matches_fixture(&instants, &rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_gives_same_readings_as_mqtt() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("imported");
    let output = std::process::Command::new(BINARY)
        .args(["import", "firebase-csv", FIXTURE, "--device", "esp32-proto", "--start", "2024-05-01T10:00:00Z", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("run the import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "import failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("rows read:          29"), "{stdout}");
    assert!(stdout.contains("rows stored:        28"), "{stdout}");
    assert!(stdout.contains("duplicates skipped: 1"), "{stdout}");
    assert!(stdout.contains("rows rejected:      0"), "{stdout}");

    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(data_dir), ..ServeOptions::default() });
    let client = server.admin_client().await;
    let instants = readings_by_instant(&client, &server.http, "esp32-proto").await;
    assert_matches_fixture(&instants, &fixture_rows());
    let first = *instants.keys().next().unwrap();
    assert_eq!(first, 1_714_557_600_000, "the first row is placed at --start");
}

#[test]
fn import_rejects_future_start() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("future");
    let output = std::process::Command::new(BINARY)
        .args(["import", "firebase-csv", FIXTURE, "--device", "esp32-proto", "--start", "2099-05-01T10:00:00Z", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("run the import");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a start in 2099 was accepted");
    assert!(stderr.contains("--start 2099-05-01T10:00:00Z is in the future"), "{stderr}");
    assert!(!data_dir.join("smart-energy.db").exists(), "nothing is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_rejected_rows_by_line() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("bad.csv");
    std::fs::write(
        &file,
        "Current,Voltage,kWh,Temps\n0.10A,230.00V,0.10000kWh,\"0 Days, 00:00:05\"\n0.10V,230.00V,0.10001kWh,\"0 Days, 00:00:10\"\nnan,230.00V,0.10002kWh,\"0 Days, 00:00:15\"\n0.10A,230.00V,0.10003kWh,yesterday\n0.12A,230.00V,0.10004kWh,\"0 Days, 00:00:20\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(BINARY)
        .args(["import", "firebase-csv"])
        .arg(&file)
        .args(["--device", "esp32-proto", "--start", "2024-05-01T10:00:00Z", "--data-dir"])
        .arg(scratch.path().join("data"))
        .output()
        .expect("run the import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("rows stored:        2"), "{stdout}");
    assert!(stdout.contains("rows rejected:      3"), "{stdout}");
    assert!(stdout.contains("line 3:"), "{stdout}");
    assert!(stdout.contains("line 4:"), "{stdout}");
    assert!(stdout.contains("line 5: Temps \"yesterday\""), "{stdout}");
}

fn rig_message(seq: u64, nan_gpu: Option<usize>) -> String {
    let readings: Vec<String> = (0..8)
        .map(|gpu| {
            let power = if nan_gpu == Some(gpu) { "\"nan\"".to_owned() } else { format!("{}.5", 200 + gpu) };
            format!(r#"{{"channel":"gpu{gpu}","power_w":{power},"temperature_c":6{gpu},"utilization_pct":9{gpu},"fan_speed_pct":5{gpu}}}"#)
        })
        .collect();
    format!(r#"{{"seq":{seq},"readings":[{}]}}"#, readings.join(","))
}

async fn device_readings(client: &reqwest::Client, http: &str, device: &str) -> Vec<Value> {
    let url = format!("{http}/api/v1/devices/{device}/readings?from=0&to=9999999999999&limit=100000");
    match client.get(url).send().await {
        Ok(response) if response.status().is_success() => {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            body.as_array().or_else(|| body["readings"].as_array()).cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rig_message_stores_32_values_and_one_error() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let publisher = mqtt_client("rig-firmware", server.mqtt_port).await;
    publisher.publish("smart-energy/v1/rig-a/telemetry", QoS::AtLeastOnce, false, rig_message(1, None)).await.unwrap();
    publisher.publish("smart-energy/v1/rig-b/telemetry", QoS::AtLeastOnce, false, rig_message(1, Some(3))).await.unwrap();
    let client = server.admin_client().await;

    let full = eventually(Duration::from_secs(20), "rig-a readings", || async {
        let readings = device_readings(&client, &server.http, "rig-a").await;
        (readings.len() >= 32).then_some(readings)
    })
    .await;
    assert_eq!(full.len(), 32);

    let partial = eventually(Duration::from_secs(20), "rig-b readings", || async {
        let readings = device_readings(&client, &server.http, "rig-b").await;
        (readings.len() >= 31).then_some(readings)
    })
    .await;
    assert_eq!(partial.len(), 31);
    assert!(!partial.iter().any(|r| r["channel"] == "gpu3" && r["metric"] == "power_w"));

    let errors: Value = client.get(format!("{}/api/v1/ingest/errors?device=rig-b", server.http)).send().await.unwrap().json().await.unwrap();
    let recent = errors["recent"].as_array().expect("recent errors");
    assert_eq!(recent.len(), 1, "{errors}");
    assert_eq!(recent[0]["reason"], "not_a_number");
    assert_eq!(recent[0]["field"], "gpu3.power_w");
    let counts = errors["counts"].as_array().expect("error counts");
    assert_eq!(counts.len(), 1, "{errors}");
    assert_eq!(counts[0]["count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_stops_ingestion() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let publisher = mqtt_client("messy-device", server.mqtt_port).await;
    let bad: [(&str, &[u8]); 7] = [
        ("smart-energy/v1/rig-c/telemetry", b"{not json"),
        ("smart-energy/v1/rig-c/telemetry", b"\xff\xfe\x00"),
        ("some/unknown/topic", b"42"),
        ("smart-energy/v1/rig-c/telemetry", br#"{"readings":[{"power_w":"None","voltage_v":"","current_a":-1,"power_kw":2}]}"#),
        ("Smart_Energie/data/Current", b"0.42V"),
        ("Smart_Energie/data/Current", b"-0.02A"),
        ("smart-energy/v1/rig-c/telemetry", br#"{"readings":[]}"#),
    ];
    for (topic, payload) in bad {
        publisher.publish(topic, QoS::AtLeastOnce, false, payload.to_vec()).await.unwrap();
    }
    publisher.publish("smart-energy/v1/rig-c/telemetry", QoS::AtLeastOnce, false, r#"{"readings":[{"power_w":12.5}]}"#).await.unwrap();
    let client = server.admin_client().await;
    let readings = eventually(Duration::from_secs(20), "the good reading after the bad ones", || async {
        let readings = device_readings(&client, &server.http, "rig-c").await;
        (!readings.is_empty()).then_some(readings)
    })
    .await;
    assert_eq!(readings.len(), 1);
    assert_eq!(readings[0]["value"], 12.5);

    let errors: Value = eventually(Duration::from_secs(10), "all ingest errors", || async {
        let errors: Value = client.get(format!("{}/api/v1/ingest/errors?limit=100", server.http)).send().await.ok()?.json().await.ok()?;
        (errors["recent"].as_array()?.len() >= 10).then_some(errors)
    })
    .await;
    let reasons: HashSet<&str> = errors["recent"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    for reason in ["unparsable_payload", "unknown_topic", "not_a_number", "empty_value", "negative", "wrong_unit", "no_readings"] {
        assert!(reasons.contains(reason), "missing {reason} in {reasons:?}");
    }
    let french: Value = client
        .get(format!("{}/api/v1/ingest/errors?limit=1", server.http))
        .header("Accept-Language", "fr-FR")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let unparsable = french["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|count| count["reason"] == "unparsable_payload")
        .expect("a count for unparsable payloads");
    assert_eq!(unparsable["reason_text"], "message illisible");
    assert_eq!(unparsable["count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_stored_readings() {
    let scratch = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let publisher = mqtt_client("rig-before-restart", server.mqtt_port).await;
    for seq in 1..=5 {
        publisher.publish("smart-energy/v1/rig-d/telemetry", QoS::AtLeastOnce, false, rig_message(seq, None)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = server.admin_client().await;
    let before = eventually(Duration::from_secs(20), "five messages stored", || async {
        let readings = device_readings(&client, &server.http, "rig-d").await;
        (readings.len() >= 5 * 32).then_some(readings)
    })
    .await;
    assert_eq!(server.stop(), Some(0), "serve must exit cleanly on SIGTERM; log:\n{}", server.log());

    let data_dir = server.data_dir.clone();
    let restarted = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(data_dir), ..ServeOptions::default() });
    let client = restarted.admin_client().await;
    let after = device_readings(&client, &restarted.http, "rig-d").await;
    assert_eq!(after, before);
}

/// Publishes numbered QoS 1 messages until stopped and returns the sequence
/// numbers whose PUBACK arrived.
async fn publish_until_stopped(port: u16, stop: tokio::sync::watch::Receiver<bool>) -> HashSet<u64> {
    let mut options = MqttOptions::new("acked-publisher", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(50);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    // Each message has its own device time, because a series stores one value per instant.
    let start_ms = jiff::Timestamp::now().as_millisecond();
    let publisher = tokio::spawn(async move {
        let mut seq = 0u64;
        while !*stop.borrow() {
            seq += 1;
            let ts = start_ms + seq as i64;
            let payload = format!(r#"{{"seq":{seq},"ts":{ts},"readings":[{{"channel":"gpu0","power_w":{seq}}}]}}"#);
            if client.publish("smart-energy/v1/rig-e/telemetry", QoS::AtLeastOnce, false, payload).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let tally = se_testkit::poll_until_closed(&mut eventloop).await;
    publisher.abort();
    tally.acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_loses_no_acknowledged_reading() {
    let scratch = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let publishing = tokio::spawn(publish_until_stopped(server.mqtt_port, stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.stop(), Some(0), "serve must exit cleanly; log:\n{}", server.log());
    let _ = stop_tx.send(true);
    let acked = publishing.await.unwrap();
    assert!(acked.len() > 10, "the publisher got only {} PUBACKs", acked.len());

    let restarted = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(server.data_dir.clone()), ..ServeOptions::default() });
    let client = restarted.admin_client().await;
    let stored: HashSet<u64> = device_readings(&client, &restarted.http, "rig-e").await.iter().filter_map(|r| r["value"].as_f64()).map(|v| v as u64).collect();
    let missing: Vec<u64> = acked.difference(&stored).copied().collect();
    assert!(missing.is_empty(), "{} acknowledged readings were lost, such as {:?}", missing.len(), missing.iter().take(5).collect::<Vec<_>>());
}

fn serve_with_busy_port(flag: &str, busy: &std::net::TcpListener, scratch: &Path) -> (bool, String) {
    let busy_addr = busy.local_addr().unwrap().to_string();
    let other = format!("127.0.0.1:{}", se_testkit::free_port());
    let (mqtt, http) = if flag == "--mqtt-listen" { (busy_addr.clone(), other) } else { (other, busy_addr.clone()) };
    let output = std::process::Command::new(BINARY)
        .args(["serve", "--mqtt-listen", &mqtt, "--http-listen", &http, "--data-dir"])
        .arg(scratch.join(flag.trim_start_matches('-')))
        .env("SMART_ENERGY_ADMIN_PASSWORD", se_testkit::ADMIN_PASSWORD)
        .output()
        .expect("run serve");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn busy_ports_fail_with_the_flag_to_change() {
    let scratch = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    for flag in ["--mqtt-listen", "--http-listen"] {
        let (succeeded, stderr) = serve_with_busy_port(flag, &busy, scratch.path());
        assert!(!succeeded, "serve must fail when {flag} is busy");
        assert!(stderr.contains(&port), "error must name port {port}: {stderr}");
        assert!(stderr.contains(flag), "error must name {flag}: {stderr}");
    }
}

#[test]
fn one_address_for_both_listeners_is_named() {
    let scratch = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", se_testkit::free_port());
    let output = std::process::Command::new(BINARY)
        .args(["serve", "--mqtt-listen", &addr, "--http-listen", &addr, "--data-dir"])
        .arg(scratch.path().join("data"))
        .env("SMART_ENERGY_ADMIN_PASSWORD", se_testkit::ADMIN_PASSWORD)
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "serve started with one address for both listeners");
    assert!(stderr.contains(&format!("--mqtt-listen and --http-listen both name {addr}")), "{stderr}");
    assert!(!stderr.contains("another MQTT broker"), "blames another program: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_flag_marks_session_cookie() {
    let scratch = tempfile::tempdir().unwrap();
    let options = ServeOptions { extra_args: vec!["--secure-cookies".into()], ..ServeOptions::default() };
    let server = ServeProcess::start(BINARY, scratch.path(), options);

    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", server.http))
        .json(&serde_json::json!({"username": "admin", "password": se_testkit::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();

    assert!(response.status().is_success(), "{}", response.status());
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
}

#[test]
fn demo_sizes_out_of_range_named() {
    let scratch = tempfile::tempdir().unwrap();
    for (flag, value, range) in [("--demo-rigs", "0", "1..=10000"), ("--demo-gpus", "1000", "1..=64")] {
        let output = std::process::Command::new(BINARY)
            .args(["serve", "--demo", flag, value, "--data-dir"])
            .arg(scratch.path().join("data"))
            .output()
            .expect("run serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} {value} was accepted");
        assert!(stderr.contains(flag), "names {flag}: {stderr}");
        assert!(stderr.contains(range), "names the range {range}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_admin_password_reset_from_cli() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    // The first start creates the admin account; then the server stops.
    drop(ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(data_dir.clone()), ..ServeOptions::default() }));

    let unknown = std::process::Command::new(BINARY).args(["store", "reset-password", "root", "--data-dir"]).arg(&data_dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success());
    assert!(stderr.contains("no account named \"root\""), "{stderr}");
    assert!(stderr.contains("the accounts are: admin"), "lists the accounts: {stderr}");

    let output = std::process::Command::new(BINARY).args(["store", "reset-password", "admin", "--data-dir"]).arg(&data_dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let password = stdout.lines().find_map(|line| line.strip_prefix("New one-time password for admin: ")).unwrap_or_else(|| panic!("{stdout}")).to_owned();

    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(data_dir), ..ServeOptions::default() });
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let login = |password: String| client.post(format!("{}/api/v1/auth/login", server.http)).json(&serde_json::json!({"username": "admin", "password": password})).send();
    assert_eq!(login(se_testkit::ADMIN_PASSWORD.to_owned()).await.unwrap().status(), 401, "the old password no longer works");
    assert_eq!(login(password).await.unwrap().status(), 200);
    let devices = client.get(format!("{}/api/v1/devices", server.http)).send().await.unwrap();
    assert_eq!(devices.status(), 403, "the new password must be changed first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prototype_through_external_mosquitto() {
    if !require_service("Mosquitto on 127.0.0.1:1883", port_open("127.0.0.1:1883"), "apt-get install mosquitto and start it") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let client_id = format!("se-test-{}", std::process::id());
    let options = ServeOptions {
        mqtt_url: Some("mqtt://127.0.0.1:1883".to_owned()),
        extra_args: vec!["--mqtt-client-id".into(), client_id, "--prototype-device".into(), "esp32-interop".into()],
        ..ServeOptions::default()
    };
    let server = ServeProcess::start(BINARY, scratch.path(), options);
    let rows = fixture_rows();
    let publisher = mqtt_client(&format!("se-test-firmware-{}", std::process::id()), 1883).await;
    publish_prototype_rows(&publisher, &rows).await;

    let client = server.admin_client().await;
    let instants = wait_for_instants(&server, &client, "esp32-interop", 28).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_matches_fixture(&instants, &rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasmota_plug_is_stored_by_serve() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let plug = mqtt_client("tasmota-plug", server.mqtt_port).await;
    // Tasmota with its clock unset reports 1970: the receive time is used instead.
    let payload = r#"{"Time":"1970-01-01T00:03:12","ENERGY":{"Total":152.304,"Power":45,"Voltage":231,"Current":0.261,"Factor":0.75}}"#;
    plug.publish("tele/plug-7/SENSOR", QoS::AtLeastOnce, false, payload).await.unwrap();
    let client = server.admin_client().await;
    let readings = eventually(Duration::from_secs(20), "the Tasmota readings", || async {
        let readings = device_readings(&client, &server.http, "plug-7").await;
        (readings.len() >= 5).then_some(readings)
    })
    .await;
    let value = |metric: &str| readings.iter().find(|r| r["metric"] == metric).and_then(|r| r["value"].as_f64());
    assert_eq!(value("power_w"), Some(45.0));
    assert_eq!(value("energy_wh"), Some(152_304.0));
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let ts = readings[0]["ts_ms"].as_i64().unwrap();
    assert!((now_ms - ts).abs() < 60_000, "stored at the receive time, not 1970: {ts}");
}

/// Publishes `{"seq":N,...}` for each number in order and returns the device's
/// `counters` from `GET /api/v1/devices` once its `last_seq` is the last number.
async fn counters_after_seqs(server: &ServeProcess, client_id: &str, device: &str, seqs: &[u64]) -> Value {
    let publisher = mqtt_client(client_id, server.mqtt_port).await;
    let topic = format!("smart-energy/v1/{device}/telemetry");
    for seq in seqs {
        publisher.publish(topic.as_str(), QoS::AtLeastOnce, false, format!(r#"{{"seq":{seq},"readings":[{{"power_w":9}}]}}"#)).await.unwrap();
    }
    let client = server.admin_client().await;
    let last = seqs.last().copied().unwrap();
    eventually(Duration::from_secs(20), "the last seq stored", || async {
        let devices: Value = client.get(format!("{}/api/v1/devices", server.http)).send().await.ok()?.json().await.ok()?;
        let counters = devices.as_array()?.iter().find(|d| d["id"] == device)?["counters"].clone();
        (counters["last_seq"].as_u64() == Some(last)).then_some(counters)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_reset_and_jump_counters() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());

    let reset = counters_after_seqs(&server, "seq-reset", "clean-01", &[1, 2, 3, 0]).await;
    assert_eq!(reset["restarts"], 1, "{reset}");
    assert_eq!(reset["lost"], 0, "{reset}");

    let jump = counters_after_seqs(&server, "seq-jump", "clean-02", &[5, u64::MAX, 0]).await;
    assert_eq!(jump["lost"], 0, "{jump}");
    assert_eq!(jump["restarts"], 2, "{jump}");

    let far = counters_after_seqs(&server, "seq-far", "clean-03", &[1, 999_999_999]).await;
    assert_eq!(far["lost"], 0, "{far}");
    assert_eq!(far["restarts"], 1, "{far}");
}
