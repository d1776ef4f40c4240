//! Publish and subscribe over real TCP with MQTT 3.1.1 and MQTT 5 clients.

mod common;

use bytes::Bytes;
use common::{loopback_config, start_broker, v4, v5, within};
use rumqttc::{Event, Packet, QoS};

#[tokio::test]
async fn v311_qos0_and_qos1_delivered() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;

    let (subscriber, mut sub_events, _sub_task) =
        v4::connect(v4::options("sub-311", broker.port()));
    subscriber
        .subscribe("meters/+/power", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    v4::next_matching(&mut sub_events, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;

    let (publisher, mut pub_events, _pub_task) = v4::connect(v4::options("pub-311", broker.port()));
    publisher
        .publish("meters/m1/power", QoS::AtMostOnce, false, "q0")
        .await
        .expect("queue publish");
    publisher
        .publish("meters/m1/power", QoS::AtLeastOnce, false, "q1")
        .await
        .expect("queue publish");
    v4::next_matching(&mut pub_events, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;

    let mut received = Vec::new();
    while received.len() < 2 {
        let publish = v4::next_matching(&mut sub_events, |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await;
        received.push((publish.payload, publish.qos, publish.topic));
    }
    assert_eq!(
        received[0],
        (
            Bytes::from("q0"),
            QoS::AtMostOnce,
            "meters/m1/power".to_string()
        )
    );
    assert_eq!(
        received[1],
        (
            Bytes::from("q1"),
            QoS::AtLeastOnce,
            "meters/m1/power".to_string()
        )
    );

    let stats = broker.handle.stats();
    assert_eq!(stats.messages_in, 2);
    assert_eq!(stats.messages_out, 2);
    broker.stop().await;
}

#[tokio::test]
async fn v5_qos0_and_qos1_delivered() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::Event as E5;

    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;

    let (subscriber, mut sub_events, _sub_task) = v5::connect(v5::options("sub-5", broker.port()));
    subscriber
        .subscribe("meters/#", Q5::AtLeastOnce)
        .await
        .expect("queue subscribe");
    v5::next_matching(&mut sub_events, |e| {
        matches!(e, E5::Incoming(P5::SubAck(_))).then_some(())
    })
    .await;

    let (publisher, mut pub_events, _pub_task) = v5::connect(v5::options("pub-5", broker.port()));
    publisher
        .publish("meters/m2/energy", Q5::AtMostOnce, false, "q0")
        .await
        .expect("queue publish");
    publisher
        .publish("meters/m2/energy", Q5::AtLeastOnce, false, "q1")
        .await
        .expect("queue publish");
    v5::next_matching(&mut pub_events, |e| {
        matches!(e, E5::Incoming(P5::PubAck(_))).then_some(())
    })
    .await;

    let mut received = Vec::new();
    while received.len() < 2 {
        let publish = v5::next_matching(&mut sub_events, |e| match e {
            E5::Incoming(P5::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await;
        received.push((publish.payload, publish.qos, publish.topic));
    }
    assert_eq!(
        received[0],
        (
            Bytes::from("q0"),
            Q5::AtMostOnce,
            Bytes::from("meters/m2/energy")
        )
    );
    assert_eq!(
        received[1],
        (
            Bytes::from("q1"),
            Q5::AtLeastOnce,
            Bytes::from("meters/m2/energy")
        )
    );
    broker.stop().await;
}

#[tokio::test]
async fn v5_publisher_reaches_v311_subscriber() {
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (subscriber, mut sub_events, _sub_task) =
        v4::connect(v4::options("sub-mixed", broker.port()));
    subscriber
        .subscribe("mixed/#", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    v4::next_matching(&mut sub_events, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;

    let (publisher, _pub_events, _pub_task) = v5::connect(v5::options("pub-mixed", broker.port()));
    publisher
        .publish("mixed/a", Q5::AtLeastOnce, false, "from v5")
        .await
        .expect("queue publish");

    let payload = v4::next_matching(&mut sub_events, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(payload, Bytes::from("from v5"));
    broker.stop().await;
}

#[tokio::test]
async fn qos2_subscription_granted_qos1() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (subscriber, mut events, _task) = v4::connect(v4::options("sub-qos2", broker.port()));
    subscriber
        .subscribe("a/b", QoS::ExactlyOnce)
        .await
        .expect("queue subscribe");

    let codes = v4::next_matching(&mut events, |e| match e {
        Event::Incoming(Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        codes,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    broker.stop().await;
}

#[tokio::test]
async fn in_process_publish_reaches_subscriber() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (subscriber, mut events, _task) = v4::connect(v4::options("device-7", broker.port()));
    subscriber
        .subscribe("devices/device-7/commands", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    v4::next_matching(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;

    within(broker.handle.publish(
        "devices/device-7/commands",
        "reboot",
        QoS::AtLeastOnce,
        false,
    ))
    .await
    .expect("publish a valid topic");

    let publish = v4::next_matching(&mut events, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(publish.payload, Bytes::from("reboot"));
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    broker.stop().await;
}

#[tokio::test]
async fn in_process_publish_rejects_wildcard_topic() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let error = broker
        .handle
        .publish("devices/+/commands", "x", QoS::AtMostOnce, false)
        .await
        .err();
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("devices/+/commands"), "{message}");
    broker.stop().await;
}

#[tokio::test]
async fn oversized_packet_disconnects_client() {
    let mut config = loopback_config();
    config.max_packet_size = 1024;
    let (broker, ()) = start_broker(config, |_| ()).await;

    let (publisher, mut events, _task) = v4::connect(v4::options("big-sender", broker.port()));
    v4::next_matching(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await;
    publisher
        .publish("a/b", QoS::AtMostOnce, false, vec![0u8; 4096])
        .await
        .expect("queue publish");

    let error = v4::next_error(&mut events).await;
    let closed_by_broker = matches!(
        error,
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted)
            | rumqttc::ConnectionError::Io(_)
    );
    assert!(closed_by_broker, "{error:?}");
    broker.stop().await;
}
