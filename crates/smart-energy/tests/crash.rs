//! Crash recovery of `smart-energy serve`: the process is killed with
//! SIGKILL while a publisher streams QoS 1 messages and compaction runs
//! every 200 ms. After a restart, every reading whose PUBACK arrived must be
//! stored, and none twice, also after the publisher replays its messages.

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

/// Values of the device's power readings, as the API returns them.
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

    let restarted = ServeProcess::start(BINARY, scratch.path(), ServeOptions { data_dir: Some(server.data_dir.clone()), ..options });
    let stored = stored_values(&restarted).await;
    assert_no_duplicates(&stored, "after the restart");
    let stored_set: HashSet<u64> = stored.iter().copied().collect();
    let missing: Vec<u64> = acked.difference(&stored_set).copied().collect();
    assert!(missing.is_empty(), "{} acknowledged readings were lost, such as {:?}", missing.len(), missing.iter().take(5).collect::<Vec<_>>());

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
}
