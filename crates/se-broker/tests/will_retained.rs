//! Last Will, keep alive and retained messages.

mod common;

use bytes::Bytes;
use common::{loopback_config, raw, start_broker, v4, TestBroker};
use rumqttc::mqttbytes::v4::{Connect, LastWill as RawWill, Packet as RawPacket};
use rumqttc::{ConnectionError, Event, LastWill, Packet, Publish, QoS};
use tokio::sync::mpsc;

type Events = mpsc::UnboundedReceiver<Result<Event, ConnectionError>>;

async fn subscribe(broker: &TestBroker, id: &str, filter: &str) -> (rumqttc::AsyncClient, Events) {
    let (client, mut events, _task) = v4::connect(v4::options(id, broker.port()));
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    v4::next_matching(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
    (client, events)
}

async fn next_publish(events: &mut Events) -> Publish {
    v4::next_matching(events, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await
}

async fn publish_and_wait(broker: &TestBroker, topic: &str, payload: &'static str, retain: bool) {
    let (publisher, mut events, _task) = v4::connect(v4::options("publisher", broker.port()));
    publisher
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .expect("queue publish");
    v4::next_matching(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn will_published_on_abnormal_disconnect() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (_watcher, mut watcher_events) = subscribe(&broker, "watcher", "status/#").await;

    let mut options = v4::options("device-1", broker.port());
    options.set_last_will(LastWill::new(
        "status/device-1",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let (_device, mut device_events, device_task) = v4::connect(options);
    v4::next_matching(&mut device_events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await;
    // Dropping the event loop closes the socket without DISCONNECT.
    device_task.abort();

    let will = next_publish(&mut watcher_events).await;
    assert_eq!(will.topic, "status/device-1");
    assert_eq!(will.payload, Bytes::from("offline"));
    broker.stop().await;
}

#[tokio::test]
async fn will_skipped_on_clean_disconnect() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (_watcher, mut watcher_events) = subscribe(&broker, "watcher", "status/#").await;

    let mut options = v4::options("device-2", broker.port());
    options.set_last_will(LastWill::new(
        "status/device-2",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let (device, mut device_events, _task) = v4::connect(options);
    v4::next_matching(&mut device_events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await;
    device.disconnect().await.expect("queue disconnect");
    let _ = v4::next_error(&mut device_events).await;

    publish_and_wait(&broker, "status/marker", "marker", false).await;
    let next = next_publish(&mut watcher_events).await;
    assert_eq!(next.topic, "status/marker");
    broker.stop().await;
}

#[tokio::test]
async fn silent_client_times_out_and_will_published() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (_watcher, mut watcher_events) = subscribe(&broker, "watcher", "status/#").await;

    let mut connect = Connect::new("silent-device");
    connect.keep_alive = 1;
    connect.last_will = Some(RawWill::new(
        "status/silent-device",
        "timed out",
        QoS::AtMostOnce,
        false,
    ));
    let (mut stream, answer) = raw::connect(broker.port(), connect).await;
    assert!(matches!(answer, RawPacket::ConnAck(_)), "{answer:?}");

    // The client sends nothing more; the broker closes after 1.5 keep alive periods.
    let after_timeout = raw::read_packet(&mut stream).await;
    assert_eq!(after_timeout, None);
    let will = next_publish(&mut watcher_events).await;
    assert_eq!(will.payload, Bytes::from("timed out"));
    broker.stop().await;
}

#[tokio::test]
async fn retained_message_reaches_late_subscriber() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    publish_and_wait(&broker, "site/tariff", "peak", true).await;

    let (_late, mut events) = subscribe(&broker, "late-subscriber", "site/+").await;
    let retained = next_publish(&mut events).await;
    assert_eq!(retained.topic, "site/tariff");
    assert_eq!(retained.payload, Bytes::from("peak"));
    assert!(retained.retain);
    assert_eq!(broker.handle.stats().retained_messages, 1);
    broker.stop().await;
}

#[tokio::test]
async fn empty_retained_payload_deletes() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    publish_and_wait(&broker, "site/tariff", "peak", true).await;
    publish_and_wait(&broker, "site/tariff", "", true).await;
    assert_eq!(broker.handle.stats().retained_messages, 0);

    let (_late, mut events) = subscribe(&broker, "late-subscriber", "site/+").await;
    publish_and_wait(&broker, "site/marker", "marker", false).await;
    let next = next_publish(&mut events).await;
    assert_eq!(next.topic, "site/marker");
    broker.stop().await;
}
