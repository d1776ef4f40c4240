//! Crash recovery of `smart-energy serve`: the process is killed with
//! SIGKILL while a publisher streams QoS 1 messages and compaction runs
//! every 200 ms. After a restart, every reading whose PUBACK arrived must be
//! stored, and none twice, also after the publisher replays its messages.
//! The latest value and the store's reading count must match what is stored.

use std::collections::HashSet;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;

use se_testkit::{eventually, ServeOptions, ServeProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");
const DEVICE: &str = "rig-crash";

fn payload(start_ms: i64, seq: u64) -> String {
    let ts = start_ms + seq as i64 * 10;
    format!(r#"{{"seq":{seq},"ts":{ts},"readings":[{{"channel":"gpu0","power_w":{seq}}}]}}"#)
}

/// Publishes numbered messages until the connection breaks and returns the
/// sequence numbers whose PUBACK arrived and the highest number sent.
async fn publish_until_broken(port: u16, start_ms: i64) -> (HashSet<u64>, u64) {
    let mut options = MqttOptions::new("crash-publisher", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 200);
    let publisher = tokio::spawn(async move {
        for seq in 1u64.. {
            if client.publish(format!("smart-energy/v1/{DEVICE}/telemetry"), QoS::AtLeastOnce, false, payload(start_ms, seq)).await.is_err() {
                break;
            }
        }
    });
    let tally = se_testkit::poll_until_closed(&mut eventloop).await;
    publisher.abort();
    (tally.acked, tally.sent)
}

/// Values of the device's power readings, as the API returns them. On an
/// idle machine the publisher gets more PUBACKs than one page contains, so the
/// readings are read page by page, each starting after the last timestamp
/// of the one before.
async fn stored_values(server: &ServeProcess) -> Vec<u64> {
    // The route returns at most 100,000 readings per request, in time order,
    // and a fast machine stores more before the kill, so read page by page.
    const PAGE: usize = 100_000;
    let client = server.admin_client().await;
    let mut values = Vec::new();
    let mut from_ms = 0i64;
    loop {
        let url = format!("{}/api/v1/devices/{DEVICE}/readings?from={from_ms}&to=9999999999999&limit={PAGE}", server.http);
        let response = client.get(url).send().await.expect("readings request");
        assert!(response.status().is_success(), "readings request failed with {}", response.status());
        let body: Value = response.json().await.expect("readings JSON");
        let rows = body.as_array().cloned().unwrap_or_default();
        values.extend(rows.iter().filter_map(|row| row["value"].as_f64()).map(|value| value as u64));
        let Some(last_ms) = rows.last().and_then(|row| row["ts_ms"].as_i64()) else { break };
        if rows.len() < PAGE {
            break;
        }
        from_ms = last_ms + 1;
    }
    values
}

/// The latest power reading of the device (timestamp and value) and the
/// store's reading count, as the API returns them.
async fn latest_and_count(server: &ServeProcess) -> ((i64, f64), u64) {
    let client = server.admin_client().await;
    let response = client.get(format!("{}/api/v1/devices/{DEVICE}", server.http)).send().await.expect("device request");
    assert!(response.status().is_success(), "device request failed with {}", response.status());
    let device: Value = response.json().await.expect("device JSON");
    let latest = device["latest"]
        .as_array()
        .and_then(|values| values.iter().find(|value| value["channel"] == "gpu0" && value["metric"] == "power_w"))
        .unwrap_or_else(|| panic!("no latest power value in {device}"));
    let latest = (latest["ts_ms"].as_i64().expect("latest ts_ms"), latest["value"].as_f64().expect("latest value"));

    let response = client.get(format!("{}/api/v1/stats", server.http)).send().await.expect("stats request");
    assert!(response.status().is_success(), "stats request failed with {}", response.status());
    let stats: Value = response.json().await.expect("stats JSON");
    (latest, stats["readings"].as_u64().expect("stats readings"))
}

/// Returns the timestamp and value of message `seq`, as `payload` writes them.
fn reading_of(start_ms: i64, seq: u64) -> (i64, f64) {
    (start_ms + seq as i64 * 10, seq as f64)
}

fn assert_no_duplicates(values: &[u64], when: &str) {
    let distinct: HashSet<u64> = values.iter().copied().collect();
    assert_eq!(distinct.len(), values.len(), "{when}: {} readings stored twice", values.len() - distinct.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_reading() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("fast-compaction.toml");
    std::fs::write(&config, "[store]\ncompact_interval = \"200ms\"\n").unwrap();
    let options = ServeOptions { extra_args: vec!["--config".into(), config.display().to_string()], ..ServeOptions::default() };
    let mut server = ServeProcess::start(BINARY, scratch.path(), options.clone());
    let start_ms = jiff::Timestamp::now().as_millisecond() - 3_600_000;

    let publishing = tokio::spawn(publish_until_broken(server.mqtt_port, start_ms));
    // Let several batches and compaction passes go by, then crash.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill();
    let (acked, sent) = publishing.await.unwrap();
    assert!(acked.len() > 100, "the publisher got only {} PUBACKs before the kill", acked.len());

    let mut restarted = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(server.data_dir.clone()), ..options.clone() });
    let stored = stored_values(&restarted).await;
    assert_no_duplicates(&stored, "after the restart");
    let stored_set: HashSet<u64> = stored.iter().copied().collect();
    let missing: Vec<u64> = acked.difference(&stored_set).copied().collect();
    assert!(missing.is_empty(), "{} acknowledged readings were lost, such as {:?}", missing.len(), missing.iter().take(5).collect::<Vec<_>>());
    let newest = stored.iter().copied().max().expect("stored readings");
    let (latest, count) = latest_and_count(&restarted).await;
    assert_eq!(latest, reading_of(start_ms, newest), "latest value after the restart");
    assert_eq!(count, stored.len() as u64, "reading count after the restart");

    // The client replays everything it sent, acknowledged or not, as a
    // device with a persistent session would after a reconnect.
    let replay = se_testkit::mqtt_client("crash-replayer", restarted.mqtt_port).await;
    for seq in 1..=sent {
        replay.publish(format!("smart-energy/v1/{DEVICE}/telemetry"), QoS::AtLeastOnce, false, payload(start_ms, seq)).await.unwrap();
    }
    let after_replay = eventually(Duration::from_secs(60), "every sent message stored", || async {
        let values = stored_values(&restarted).await;
        (values.len() as u64 >= sent).then_some(values)
    })
    .await;
    assert_no_duplicates(&after_replay, "after the replay");
    assert_eq!(after_replay.len() as u64, sent, "each sent message is stored exactly once");
    let (latest, _) = latest_and_count(&restarted).await;
    assert_eq!(latest, reading_of(start_ms, sent), "latest value after the replay");

    // Replays of readings that were compacted before the crash count until
    // compaction drops them, so the count is checked after a full
    // compaction, which follows a second crash.
    restarted.kill();
    let compact = std::process::Command::new(BINARY)
        .args(["store", "compact", "--data-dir"])
        .arg(&restarted.data_dir)
        .output()
        .expect("run smart-energy store compact");
    assert!(compact.status.success(), "store compact failed: {}", String::from_utf8_lossy(&compact.stderr));
    let compacted = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(restarted.data_dir.clone()), ..options });
    let (latest, count) = latest_and_count(&compacted).await;
    assert_eq!(latest, reading_of(start_ms, sent), "latest value after compaction");
    assert_eq!(count, sent, "reading count after compaction");
}
