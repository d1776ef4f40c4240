//! PUBACKs wait for the acknowledgement of the internal (durable) subscriber.

mod common;

use bytes::Bytes;
use common::{loopback_config, start_broker, v4, within};
use rumqttc::{Event, Packet, QoS};
use se_broker::{AckHandle, InboundMessage, InternalSubscription};
use tokio::sync::mpsc;

/// One entry of a log that the test and the publisher's event task write to, so that the
/// order of entries is the order in which things happened.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Acked(u16),
    PubAck(u16),
    SubAck,
}

async fn next_internal(subscription: &mut InternalSubscription) -> InboundMessage {
    within(subscription.recv())
        .await
        .expect("internal subscription open")
}

/// Returns the entries logged up to and including the next `SubAck`.
async fn entries_until_suback(log: &mut mpsc::UnboundedReceiver<Entry>) -> Vec<Entry> {
    let mut entries = Vec::new();
    loop {
        let entry = within(log.recv()).await.expect("log open");
        let done = entry == Entry::SubAck;
        entries.push(entry);
        if done {
            return entries;
        }
    }
}

fn spawn_event_logger(
    mut events: mpsc::UnboundedReceiver<Result<Event, rumqttc::ConnectionError>>,
    log: mpsc::UnboundedSender<Entry>,
) {
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.recv().await {
            let entry = match event {
                Event::Incoming(Packet::PubAck(ack)) => Entry::PubAck(ack.pkid),
                Event::Incoming(Packet::SubAck(_)) => Entry::SubAck,
                _ => continue,
            };
            if log.send(entry).is_err() {
                return;
            }
        }
    });
}

#[tokio::test]
async fn puback_waits_for_internal_ack() {
    let (broker, mut internal) = start_broker(loopback_config(), |b| {
        b.internal_subscriber(&["meters/#"], 16)
            .expect("valid filter")
    })
    .await;
    let (publisher, events, _task) = v4::connect(v4::options("gated-publisher", broker.port()));
    let (log, mut log_rx) = mpsc::unbounded_channel();
    spawn_event_logger(events, log.clone());

    for i in 1..=3 {
        publisher
            .publish("meters/m1/power", QoS::AtLeastOnce, false, format!("m{i}"))
            .await
            .expect("queue publish");
    }
    let mut handles: Vec<AckHandle> = Vec::new();
    for i in 1..=3 {
        let mut message = next_internal(&mut internal).await;
        assert_eq!(message.payload, Bytes::from(format!("m{i}")));
        assert_eq!(message.client_id, "gated-publisher");
        handles.push(
            message
                .ack
                .take()
                .expect("QoS 1 message carries an ack handle"),
        );
    }

    // A SUBSCRIBE sent after the publishes: a PUBACK sent without waiting would come before
    // its SUBACK.
    publisher
        .subscribe("barrier/1", QoS::AtMostOnce)
        .await
        .expect("queue subscribe");
    assert_eq!(entries_until_suback(&mut log_rx).await, vec![Entry::SubAck]);

    // Acknowledging the third message first releases nothing: PUBACKs keep publish order.
    let third = handles.pop().expect("three handles");
    log.send(Entry::Acked(3)).expect("log open");
    third.ack();
    publisher
        .subscribe("barrier/2", QoS::AtMostOnce)
        .await
        .expect("queue subscribe");
    assert_eq!(
        entries_until_suback(&mut log_rx).await,
        vec![Entry::Acked(3), Entry::SubAck]
    );

    for (pkid, handle) in (1u16..).zip(handles) {
        log.send(Entry::Acked(pkid)).expect("log open");
        handle.ack();
    }
    let mut entries = Vec::new();
    while entries
        .iter()
        .filter(|e| matches!(e, Entry::PubAck(_)))
        .count()
        < 3
    {
        entries.push(within(log_rx.recv()).await.expect("log open"));
    }
    let pubacks: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e, Entry::PubAck(_)))
        .collect();
    assert_eq!(
        pubacks,
        vec![&Entry::PubAck(1), &Entry::PubAck(2), &Entry::PubAck(3)]
    );
    for pkid in 1..=2 {
        let acked_at = entries.iter().position(|e| *e == Entry::Acked(pkid));
        let puback_at = entries.iter().position(|e| *e == Entry::PubAck(pkid));
        assert!(
            acked_at < puback_at,
            "ack {pkid} must precede its PUBACK: {entries:?}"
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn dropped_ack_closes_publisher() {
    let (broker, mut internal) = start_broker(loopback_config(), |b| {
        b.internal_subscriber(&["meters/#"], 16)
            .expect("valid filter")
    })
    .await;
    let (publisher, mut events, _task) = v4::connect(v4::options("dropped-ack", broker.port()));
    publisher
        .publish("meters/m1/power", QoS::AtLeastOnce, false, "not stored")
        .await
        .expect("queue publish");

    let message = next_internal(&mut internal).await;
    drop(message);

    let outcome = within(async {
        loop {
            match events.recv().await {
                Some(Ok(Event::Incoming(Packet::PubAck(_)))) => return "puback",
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return "closed",
            }
        }
    })
    .await;
    assert_eq!(outcome, "closed");
    broker.stop().await;
}

#[tokio::test]
async fn full_internal_buffer_applies_backpressure() {
    const COUNT: usize = 50;
    let (broker, mut internal) = start_broker(loopback_config(), |b| {
        b.internal_subscriber(&["meters/#"], 1)
            .expect("valid filter")
    })
    .await;
    let (publisher, mut events, _task) = v4::connect(v4::options("fast-publisher", broker.port()));
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            publisher
                .publish("meters/m1/power", QoS::AtLeastOnce, false, i.to_string())
                .await
                .expect("queue publish");
        }
        publisher
    });

    for i in 0..COUNT {
        let mut message = next_internal(&mut internal).await;
        assert_eq!(message.payload, Bytes::from(i.to_string()));
        message.acknowledge();
    }
    for _ in 0..COUNT {
        v4::next_matching(&mut events, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
        })
        .await;
    }
    let _publisher = within(sender).await.expect("sender task");
    broker.stop().await;
}

#[tokio::test]
async fn qos2_publish_completes_after_ack() {
    let (broker, mut internal) = start_broker(loopback_config(), |b| {
        b.internal_subscriber(&["meters/#"], 16)
            .expect("valid filter")
    })
    .await;
    let (publisher, mut events, _task) = v4::connect(v4::options("qos2-publisher", broker.port()));
    publisher
        .publish("meters/m1/power", QoS::ExactlyOnce, false, "exactly once")
        .await
        .expect("queue publish");

    let mut message = next_internal(&mut internal).await;
    assert_eq!(message.qos, QoS::ExactlyOnce);
    message.acknowledge();
    v4::next_matching(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(())
    })
    .await;

    // The next internal message is the marker, so the QoS 2 message was delivered once.
    publisher
        .publish("meters/marker", QoS::AtLeastOnce, false, "marker")
        .await
        .expect("queue publish");
    let mut next = next_internal(&mut internal).await;
    assert_eq!(next.payload, Bytes::from("marker"));
    next.acknowledge();
    broker.stop().await;
}

#[tokio::test]
async fn qos0_message_has_no_ack_handle() {
    let (broker, mut internal) = start_broker(loopback_config(), |b| {
        b.internal_subscriber(&["meters/#"], 16)
            .expect("valid filter")
    })
    .await;
    let (publisher, _events, _task) = v4::connect(v4::options("qos0-publisher", broker.port()));
    publisher
        .publish("meters/m1/power", QoS::AtMostOnce, false, "fire and forget")
        .await
        .expect("queue publish");

    let message = next_internal(&mut internal).await;
    assert!(message.ack.is_none());
    broker.stop().await;
}

#[tokio::test]
async fn invalid_internal_filter_rejected() {
    let (broker, result) = start_broker(loopback_config(), |b| {
        b.internal_subscriber(&["meters/#/power"], 16)
    })
    .await;
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("meters/#/power"), "{message}");
    broker.stop().await;
}
