//! Persistent and clean sessions, bounded session queues and session takeover.

mod common;

use bytes::Bytes;
use common::{loopback_config, start_broker, v4, v5, TestBroker};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

type Events = mpsc::UnboundedReceiver<Result<Event, ConnectionError>>;

async fn wait_suback(events: &mut Events) {
    v4::next_matching(events, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
}

async fn wait_session_present(events: &mut Events) -> bool {
    v4::next_matching(events, |e| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.session_present),
        _ => None,
    })
    .await
}

async fn next_payload(events: &mut Events) -> Bytes {
    v4::next_matching(events, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.payload.clone()),
        _ => None,
    })
    .await
}

/// Sends DISCONNECT and waits until the event loop reports the closed connection.
async fn disconnect(client: &AsyncClient, events: &mut Events) {
    client.disconnect().await.expect("queue disconnect");
    v4::next_matching(events, |e| {
        matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)).then_some(())
    })
    .await;
}

/// Publishes `payloads` with QoS 1 from a fresh client and waits for all PUBACKs.
async fn publish_all(broker: &TestBroker, topic: &str, payloads: &[String]) {
    let (publisher, mut events, _task) = v4::connect(v4::options("publisher", broker.port()));
    for payload in payloads {
        publisher
            .publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .expect("queue publish");
    }
    for _ in payloads {
        v4::next_matching(&mut events, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
        })
        .await;
    }
}

fn persistent_options(id: &str, broker: &TestBroker) -> MqttOptions {
    let mut options = v4::options(id, broker.port());
    options.set_clean_session(false);
    options
}

#[tokio::test]
async fn persistent_session_receives_offline_messages() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let options = persistent_options("sub-offline", &broker);

    let (subscriber, mut events, _task) = v4::connect(options.clone());
    subscriber
        .subscribe("meters/#", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    wait_suback(&mut events).await;
    disconnect(&subscriber, &mut events).await;

    let payloads: Vec<String> = (0..20).map(|i| format!("reading-{i}")).collect();
    publish_all(&broker, "meters/m1/power", &payloads).await;

    let (_subscriber, mut events, _task) = v4::connect(options);
    assert!(wait_session_present(&mut events).await);
    for expected in &payloads {
        assert_eq!(
            next_payload(&mut events).await,
            Bytes::from(expected.clone())
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn v5_session_expiry_keeps_queue() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::Event as E5;

    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let mut options = v5::options("sub-v5-offline", broker.port());
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(3600));

    let (subscriber, mut events, _task) = v5::connect(options.clone());
    subscriber
        .subscribe("meters/#", Q5::AtLeastOnce)
        .await
        .expect("queue subscribe");
    v5::next_matching(&mut events, |e| {
        matches!(e, E5::Incoming(P5::SubAck(_))).then_some(())
    })
    .await;
    subscriber.disconnect().await.expect("queue disconnect");
    v5::next_matching(&mut events, |e| {
        matches!(e, E5::Outgoing(rumqttc::Outgoing::Disconnect)).then_some(())
    })
    .await;

    let payloads: Vec<String> = (0..5).map(|i| format!("v5-{i}")).collect();
    publish_all(&broker, "meters/m5/power", &payloads).await;

    let (_subscriber, mut events, _task) = v5::connect(options);
    for expected in &payloads {
        let payload = v5::next_matching(&mut events, |e| match e {
            E5::Incoming(P5::Publish(p)) => Some(p.payload.clone()),
            _ => None,
        })
        .await;
        assert_eq!(payload, Bytes::from(expected.clone()));
    }
    broker.stop().await;
}

#[tokio::test]
async fn full_session_queue_counts_drops() {
    let mut config = loopback_config();
    config.session_queue_capacity = 5;
    let (broker, ()) = start_broker(config, |_| ()).await;
    let options = persistent_options("sub-full", &broker);

    let (subscriber, mut events, _task) = v4::connect(options.clone());
    subscriber
        .subscribe("meters/#", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    wait_suback(&mut events).await;
    disconnect(&subscriber, &mut events).await;

    let payloads: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    publish_all(&broker, "meters/m1/power", &payloads).await;
    assert_eq!(broker.handle.stats().session_queue_dropped, 3);

    let (_subscriber, mut events, _task) = v4::connect(options);
    for expected in &payloads[3..] {
        assert_eq!(
            next_payload(&mut events).await,
            Bytes::from(expected.clone())
        );
    }
    // The next message after the five kept ones is the marker: nothing else was queued.
    publish_all(&broker, "meters/marker", &["marker".to_string()]).await;
    assert_eq!(next_payload(&mut events).await, Bytes::from("marker"));
    broker.stop().await;
}

#[tokio::test]
async fn clean_session_forgets_subscriptions() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (subscriber, mut events, _task) = v4::connect(v4::options("sub-clean", broker.port()));
    subscriber
        .subscribe("meters/#", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    wait_suback(&mut events).await;
    disconnect(&subscriber, &mut events).await;

    publish_all(&broker, "meters/m1/power", &["lost".to_string()]).await;

    let (subscriber, mut events, _task) = v4::connect(v4::options("sub-clean", broker.port()));
    assert!(!wait_session_present(&mut events).await);
    subscriber
        .subscribe("marker", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    wait_suback(&mut events).await;
    publish_all(&broker, "marker", &["marker".to_string()]).await;
    assert_eq!(next_payload(&mut events).await, Bytes::from("marker"));
    broker.stop().await;
}

#[tokio::test]
async fn second_connection_takes_session_over() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (_first, mut first_events, _t1) = v4::connect(v4::options("same-id", broker.port()));
    v4::next_matching(&mut first_events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await;

    let (_second, mut second_events, _t2) = v4::connect(v4::options("same-id", broker.port()));
    v4::next_matching(&mut second_events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await;

    let error = v4::next_error(&mut first_events).await;
    let closed = matches!(
        error,
        ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted) | ConnectionError::Io(_)
    );
    assert!(closed, "{error:?}");
    broker.stop().await;
}

#[tokio::test]
async fn unacked_message_resent_with_dup() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let mut options = persistent_options("sub-no-ack", &broker);
    options.set_manual_acks(true);

    let (subscriber, mut events, task) = v4::connect(options.clone());
    subscriber
        .subscribe("meters/#", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    wait_suback(&mut events).await;
    publish_all(&broker, "meters/m1/power", &["unacked".to_string()]).await;
    let first = v4::next_matching(&mut events, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert!(!first.dup);
    // Drop the connection without PUBACK and without DISCONNECT.
    task.abort();

    let (_subscriber, mut events, _task) = v4::connect(options);
    let resent = v4::next_matching(&mut events, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(resent.payload, Bytes::from("unacked"));
    assert!(resent.dup);
    assert_eq!(resent.pkid, first.pkid);
    broker.stop().await;
}
