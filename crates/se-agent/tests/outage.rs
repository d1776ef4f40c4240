//! Store-and-forward against a real broker on loopback that goes away and comes back.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{collect, config, free_addr, payloads_on, telemetry_seqs, wait_for, Collected, RunningAgent, RunningBroker};

const TELEMETRY: &str = "smart-energy/v1/+/telemetry";

/// Counts the sequence numbers received more than once.
fn duplicates(seqs: &[u64]) -> usize {
    seqs.len() - seqs.iter().collect::<BTreeSet<_>>().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_loses_no_reading() {
    let addr = free_addr();
    let scratch = tempfile::tempdir().unwrap();
    let received: Collected = Arc::new(Mutex::new(Vec::new()));

    let broker = RunningBroker::start(addr).await;
    collect(&broker.handle, TELEMETRY, received.clone());
    let agent = RunningAgent::start(config("rig-outage", addr.port(), &scratch.path().join("buffer")), 2);
    wait_for(Duration::from_secs(10), "5 messages before the outage", || telemetry_seqs(&received).len() >= 5).await;

    broker.stop().await;
    let status = agent.status.clone();
    wait_for(Duration::from_secs(10), "the agent to notice the outage", || !status.connected()).await;
    let seq_at_outage = status.last_seq();
    wait_for(Duration::from_secs(10), "10 readings taken during the outage", || status.last_seq() >= seq_at_outage + 10).await;
    let buffered_during_outage = status.buffered();
    let received_during_outage = telemetry_seqs(&received);

    let broker = RunningBroker::start(addr).await;
    collect(&broker.handle, TELEMETRY, received.clone());
    let last = status.last_seq() + 5;
    let expected: BTreeSet<u64> = (1..=last).collect();
    wait_for(Duration::from_secs(20), "every seq up to the target after the restart", || {
        let seqs: BTreeSet<u64> = telemetry_seqs(&received).into_iter().collect();
        expected.is_subset(&seqs)
    })
    .await;
    agent.stop().await;
    broker.stop().await;

    assert!(buffered_during_outage >= 10, "only {buffered_during_outage} readings were buffered during the outage");
    assert!(
        received_during_outage.iter().all(|seq| *seq <= seq_at_outage),
        "readings taken during the outage arrived before the broker was back"
    );
    let seqs = telemetry_seqs(&received);
    eprintln!("outage at seq {seq_at_outage}, {buffered_during_outage} buffered, target {last}, {} received, {} duplicates", seqs.len(), duplicates(&seqs));
    let distinct: BTreeSet<u64> = seqs.iter().copied().filter(|seq| *seq <= last).collect();
    assert_eq!(distinct, expected, "some sequence numbers never arrived");
    // QoS 1 is at-least-once: a copy whose PUBACK was lost in the outage may
    // arrive twice, and the server drops it by seq. At most one window of copies.
    assert!(duplicates(&seqs) <= 32, "{} duplicates in {seqs:?}", duplicates(&seqs));
    assert_eq!(status.buffered(), 0, "readings left in the buffer after everything was acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_agent_sends_buffered_readings() {
    let addr = free_addr();
    let scratch = tempfile::tempdir().unwrap();
    let buffer_dir = scratch.path().join("buffer");

    // No broker yet: the first agent only buffers.
    let first = RunningAgent::start(config("rig-restart", addr.port(), &buffer_dir), 1);
    let status = first.status.clone();
    wait_for(Duration::from_secs(10), "8 buffered readings", || status.buffered() >= 8).await;
    first.stop().await;
    let buffered_seq = status.last_seq();

    let received: Collected = Arc::new(Mutex::new(Vec::new()));
    let broker = RunningBroker::start(addr).await;
    collect(&broker.handle, TELEMETRY, received.clone());
    let second = RunningAgent::start(config("rig-restart", addr.port(), &buffer_dir), 1);
    let last = buffered_seq + 5;
    wait_for(Duration::from_secs(20), "buffered and new readings", || {
        let seqs: BTreeSet<u64> = telemetry_seqs(&received).into_iter().collect();
        (1..=last).all(|seq| seqs.contains(&seq))
    })
    .await;
    second.stop().await;
    broker.stop().await;

    let seqs = telemetry_seqs(&received);
    assert_eq!(seqs.iter().take(buffered_seq as usize).copied().collect::<Vec<_>>(), (1..=buffered_seq).collect::<Vec<_>>(), "buffered readings were not replayed first and in order");
    assert!(seqs.iter().all(|seq| *seq >= 1), "seq restarted at 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_is_online_then_offline() {
    let addr = free_addr();
    let scratch = tempfile::tempdir().unwrap();
    let received: Collected = Arc::new(Mutex::new(Vec::new()));
    let broker = RunningBroker::start(addr).await;
    collect(&broker.handle, "smart-energy/v1/+/status", received.clone());
    let status_topic = "smart-energy/v1/rig-status/status";

    let agent = RunningAgent::start(config("rig-status", addr.port(), &scratch.path().join("buffer")), 1);
    wait_for(Duration::from_secs(10), "online status", || !payloads_on(&received, status_topic).is_empty()).await;
    agent.stop().await;
    wait_for(Duration::from_secs(10), "offline status", || payloads_on(&received, status_topic).len() >= 2).await;
    broker.stop().await;

    let statuses = payloads_on(&received, status_topic);
    assert_eq!(statuses, vec![b"online".to_vec(), b"offline".to_vec()]);
    let retained: Vec<bool> = received.lock().unwrap().iter().map(|(_, _, retain)| *retain).collect();
    assert_eq!(retained, vec![true, true], "status messages must be retained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_connection_triggers_last_will() {
    let addr = free_addr();
    let scratch = tempfile::tempdir().unwrap();
    let received: Collected = Arc::new(Mutex::new(Vec::new()));
    let broker = RunningBroker::start(addr).await;
    collect(&broker.handle, "smart-energy/v1/+/status", received.clone());
    let status_topic = "smart-energy/v1/rig-will/status";

    let agent = RunningAgent::start(config("rig-will", addr.port(), &scratch.path().join("buffer")), 1);
    wait_for(Duration::from_secs(10), "online status", || !payloads_on(&received, status_topic).is_empty()).await;
    // Abort without DISCONNECT, as a crash or a cut cable would.
    agent.task.abort();
    wait_for(Duration::from_secs(10), "the Last Will", || payloads_on(&received, status_topic).len() >= 2).await;
    broker.stop().await;

    assert_eq!(payloads_on(&received, status_topic).last().map(Vec::as_slice), Some(&b"offline"[..]));
}
