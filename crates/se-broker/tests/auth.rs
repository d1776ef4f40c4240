//! Authentication and rejected CONNECT packets.

mod common;

use std::sync::Arc;

use common::{loopback_config, raw, start_broker, v4, v5};
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet as RawPacket};
use rumqttc::{ConnectionError, Event, Packet};
use se_broker::{Auth, AuthDecision};

fn config_with_user() -> se_broker::BrokerConfig {
    let mut config = loopback_config();
    config.auth = Auth::users([("meter", "s3cret")]);
    config
}

#[tokio::test]
async fn v311_bad_password_gets_code_4() {
    let (broker, ()) = start_broker(config_with_user(), |_| ()).await;
    let mut options = v4::options("meter-1", broker.port());
    options.set_credentials("meter", "wrong");
    let (_client, mut events, _task) = v4::connect(options);

    let error = v4::next_error(&mut events).await;
    assert!(
        matches!(
            error,
            ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword)
        ),
        "{error:?}"
    );
    assert_eq!(broker.handle.stats().connections_rejected_total, 1);
    broker.stop().await;
}

#[tokio::test]
async fn v311_missing_credentials_get_code_5() {
    let (broker, ()) = start_broker(config_with_user(), |_| ()).await;
    let (_client, mut events, _task) = v4::connect(v4::options("meter-2", broker.port()));

    let error = v4::next_error(&mut events).await;
    assert!(
        matches!(
            error,
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
        ),
        "{error:?}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn v311_good_password_connects() {
    let (broker, ()) = start_broker(config_with_user(), |_| ()).await;
    let mut options = v4::options("meter-3", broker.port());
    options.set_credentials("meter", "s3cret");
    let (_client, mut events, _task) = v4::connect(options);

    let code = v4::next_matching(&mut events, |e| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ConnectReturnCode::Success);
    broker.stop().await;
}

#[tokio::test]
async fn v5_bad_password_gets_reason_0x86() {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as Code5;
    use rumqttc::v5::ConnectionError as Error5;

    let (broker, ()) = start_broker(config_with_user(), |_| ()).await;
    let mut options = v5::options("meter-5", broker.port());
    options.set_credentials("meter", "wrong");
    let (_client, mut events, _task) = v5::connect(options);

    let error = v5::next_error(&mut events).await;
    assert!(
        matches!(error, Error5::ConnectionRefused(Code5::BadUserNamePassword)),
        "{error:?}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn callback_decides_per_user() {
    let mut config = loopback_config();
    config.auth = Auth::Callback(Arc::new(|credentials| {
        match credentials.username.as_deref() {
            Some("gateway") => AuthDecision::Allow,
            _ => AuthDecision::NotAuthorized,
        }
    }));
    let (broker, ()) = start_broker(config, |_| ()).await;

    let mut allowed = v4::options("gw-1", broker.port());
    allowed.set_credentials("gateway", "any");
    let (_allowed, mut allowed_events, _t1) = v4::connect(allowed);
    let code = v4::next_matching(&mut allowed_events, |e| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ConnectReturnCode::Success);

    let mut rejected = v4::options("gw-2", broker.port());
    rejected.set_credentials("intruder", "any");
    let (_rejected, mut rejected_events, _t2) = v4::connect(rejected);
    let error = v4::next_error(&mut rejected_events).await;
    assert!(
        matches!(
            error,
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
        ),
        "{error:?}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn empty_id_without_clean_session_rejected() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let mut connect = Connect::new("");
    connect.clean_session = false;

    let (_stream, answer) = raw::connect(broker.port(), connect).await;

    let code = match answer {
        RawPacket::ConnAck(ack) => Some(ack.code),
        _ => None,
    };
    assert_eq!(code, Some(ConnectReturnCode::BadClientId));
    broker.stop().await;
}

#[tokio::test]
async fn empty_id_with_clean_session_accepted() {
    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (_stream, answer) = raw::connect(broker.port(), Connect::new("")).await;

    let code = match answer {
        RawPacket::ConnAck(ack) => Some(ack.code),
        _ => None,
    };
    assert_eq!(code, Some(ConnectReturnCode::Success));
    broker.stop().await;
}

#[tokio::test]
async fn v5_empty_id_gets_assigned_id() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::Event as E5;

    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let (_client, mut events, _task) = v5::connect(v5::options("", broker.port()));

    let assigned = v5::next_matching(&mut events, |e| match e {
        E5::Incoming(P5::ConnAck(ack)) => Some(
            ack.properties
                .as_ref()
                .and_then(|p| p.assigned_client_identifier.clone()),
        ),
        _ => None,
    })
    .await;
    let assigned = assigned.unwrap_or_default();
    assert!(assigned.starts_with("se-auto-"), "{assigned:?}");
    broker.stop().await;
}

#[tokio::test]
async fn unsupported_protocol_level_rejected() {
    use bytes::BytesMut;
    use tokio::io::AsyncWriteExt;

    let (broker, ()) = start_broker(loopback_config(), |_| ()).await;
    let mut buf = BytesMut::new();
    RawPacket::Connect(Connect::new("old-device"))
        .write(&mut buf, usize::MAX)
        .expect("encode CONNECT");
    // Fixed header (2 bytes), protocol name length (2) and "MQTT" (4) precede the level byte.
    assert_eq!(buf[8], 4);
    buf[8] = 3;

    let mut stream = tokio::net::TcpStream::connect(broker.addr)
        .await
        .expect("connect to broker");
    stream.write_all(&buf).await.expect("send CONNECT");
    let answer = raw::read_packet(&mut stream).await;

    let code = match answer {
        Some(RawPacket::ConnAck(ack)) => Some(ack.code),
        _ => None,
    };
    assert_eq!(code, Some(ConnectReturnCode::RefusedProtocolVersion));
    broker.stop().await;
}
