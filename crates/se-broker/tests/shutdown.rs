//! Shutdown while a client publishes: no PUBACK without a stored message.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{loopback_config, start_broker, within};
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::mpsc;

/// Number of messages the consumer stores before it stalls.
const STORED_BEFORE_STALL: usize = 300;
/// Number of messages the stalled consumer keeps unacknowledged before the broker is shut down. The
/// publisher's inflight window (100 in rumqttc) lets this many arrive after the stall.
const HELD_BEFORE_SHUTDOWN: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_loses_no_acknowledged_message() {
    let mut config = loopback_config();
    config.shutdown_grace = Duration::from_millis(500);
    let (broker, mut internal) = start_broker(config, |b| {
        b.internal_subscriber(&["meters/#"], 64)
            .expect("valid filter")
    })
    .await;

    // Consumer: records each payload as stored, then acknowledges it. After
    // STORED_BEFORE_STALL messages it stalls like a stuck database writer: it keeps receiving
    // but neither stores nor acknowledges, so those messages must get no PUBACK.
    let stored = Arc::new(Mutex::new(HashSet::new()));
    let (reached_tx, mut reached_rx) = mpsc::channel::<()>(1);
    let consumer_stored = Arc::clone(&stored);
    let consumer = tokio::spawn(async move {
        let mut batch = Vec::new();
        let mut stalled = Vec::new();
        while internal.recv_many(&mut batch, 8).await > 0 {
            for mut message in batch.drain(..) {
                let count = consumer_stored.lock().expect("stored set lock").len();
                if count < STORED_BEFORE_STALL {
                    let payload = String::from_utf8_lossy(&message.payload).into_owned();
                    consumer_stored
                        .lock()
                        .expect("stored set lock")
                        .insert(payload);
                    message.acknowledge();
                    continue;
                }
                stalled.push(message);
                if stalled.len() == HELD_BEFORE_SHUTDOWN {
                    let _ = reached_tx.try_send(());
                }
            }
        }
    });

    // Publisher: sends QoS 1 messages until its connection fails. Its event loop maps each
    // PUBACK back to the payload that was sent with that packet identifier.
    let (client, mut eventloop) =
        AsyncClient::new(common::v4::options("busy-publisher", broker.port()), 100);
    let publisher = tokio::spawn(async move {
        for i in 0u64.. {
            if client
                .publish("meters/m1/power", QoS::AtLeastOnce, false, format!("r{i}"))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let events = tokio::spawn(async move {
        let mut sent = 0u64;
        let mut in_flight: HashMap<u16, String> = HashMap::new();
        let mut acknowledged = HashSet::new();
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    in_flight.insert(pkid, format!("r{sent}"));
                    sent += 1;
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(payload) = in_flight.remove(&ack.pkid) {
                        acknowledged.insert(payload);
                    }
                }
                Ok(_) => {}
                Err(_) => return acknowledged,
            }
        }
    });

    within(reached_rx.recv())
        .await
        .expect("consumer reached the shutdown point");
    broker.shutdown.cancel();
    within(broker.task).await.expect("broker task");
    let acknowledged = within(events).await.expect("event task");
    within(publisher).await.expect("publisher task");
    consumer.abort();

    let stored = stored.lock().expect("stored set lock").clone();
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(
        acknowledged.len() >= STORED_BEFORE_STALL / 2,
        "only {} PUBACKs seen",
        acknowledged.len()
    );
    assert!(lost.is_empty(), "PUBACKed but never stored: {lost:?}");
}

#[tokio::test]
async fn run_returns_after_cancel() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    broker.shutdown.cancel();
    within(broker.task)
        .await
        .expect("broker task ends without panic");
}
