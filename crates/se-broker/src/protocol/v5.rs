//! Adapter to the MQTT 5 codec (`rumqttc::v5::mqttbytes::v5`).
//!
//! The codec reads every property, but the broker ignores those it does not act on (message
//! expiry, user properties, response topic, subscription identifiers). Outgoing PUBLISH
//! packets carry no properties.

use bytes::{Buf, Bytes, BytesMut};
use rumqttc::v5::mqttbytes::v5::{self, Packet};
use rumqttc::v5::mqttbytes::{Error, QoS as QoS5};
use rumqttc::QoS;

use super::{
    ConnAckInfo, ConnectCode, ConnectRequest, DecodeError, DisconnectReason, EncodeError, Inbound,
    Outbound, RetainHandling, SubscribeRequest, SubscribeResult,
};
use crate::message::Message;
use crate::session::SessionExpiry;

/// A DISCONNECT with remaining length 0 (reason "normal disconnection"). The codec rejects
/// it with `PayloadRequired`, so it is recognised here.
const SHORT_DISCONNECT: [u8; 2] = [0xE0, 0x00];

pub(super) fn decode_connect(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<ConnectRequest>, DecodeError> {
    let Some(packet) = read(buf, max)? else {
        return Ok(None);
    };
    let Packet::Connect(connect, will, login) = packet else {
        return Err(DecodeError::Malformed(
            "the first packet is not a CONNECT".into(),
        ));
    };

    let properties = connect.properties.unwrap_or_default();
    let will = will.map(will_message).transpose()?;
    let (username, password) = match login {
        Some(login) => (non_empty(login.username), non_empty(login.password)),
        None => (None, None),
    };
    Ok(Some(ConnectRequest {
        client_id: connect.client_id,
        clean_start: connect.clean_start,
        keep_alive: connect.keep_alive,
        session_expiry: SessionExpiry::from_interval(
            properties.session_expiry_interval.unwrap_or(0),
        ),
        will,
        username,
        password,
        receive_maximum: properties.receive_maximum,
        max_packet_size: properties.max_packet_size,
        authentication_method: properties.authentication_method,
    }))
}

pub(super) fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, DecodeError> {
    if buf.starts_with(&SHORT_DISCONNECT) {
        buf.advance(SHORT_DISCONNECT.len());
        return Ok(Some(Inbound::Disconnect {
            publish_will: false,
            session_expiry: None,
        }));
    }
    let Some(packet) = read(buf, max)? else {
        return Ok(None);
    };
    let inbound = match packet {
        Packet::Publish(publish) => publish_inbound(publish)?,
        Packet::PubAck(ack) => Inbound::PubAck(ack.pkid),
        Packet::PubRec(rec) => Inbound::PubRec(rec.pkid),
        Packet::PubRel(rel) => Inbound::PubRel(rel.pkid),
        Packet::PubComp(comp) => Inbound::PubComp(comp.pkid),
        Packet::Subscribe(subscribe) => Inbound::Subscribe {
            pkid: subscribe.pkid,
            requests: subscribe
                .filters
                .into_iter()
                .map(subscribe_request)
                .collect(),
        },
        Packet::Unsubscribe(unsubscribe) => Inbound::Unsubscribe {
            pkid: unsubscribe.pkid,
            filters: unsubscribe.filters,
        },
        Packet::PingReq(_) => Inbound::PingReq,
        Packet::Disconnect(disconnect) => Inbound::Disconnect {
            publish_will: disconnect.reason_code
                == v5::DisconnectReasonCode::DisconnectWithWillMessage,
            session_expiry: disconnect
                .properties
                .and_then(|p| p.session_expiry_interval),
        },
        Packet::Connect(..) => Inbound::Unexpected("CONNECT"),
        Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        Packet::PingResp(_) => Inbound::Unexpected("PINGRESP"),
        Packet::Auth(_) => Inbound::Unexpected("AUTH"),
    };
    Ok(Some(inbound))
}

pub(super) fn encode(
    packet: &Outbound,
    out: &mut BytesMut,
    max: Option<u32>,
) -> Result<(), EncodeError> {
    let packet = match packet {
        Outbound::ConnAck(info) => Packet::ConnAck(connack(info)),
        Outbound::Publish(delivery) => Packet::Publish(v5::Publish {
            dup: delivery.dup,
            qos: qos_to_v5(delivery.message.qos),
            retain: delivery.message.retain,
            topic: Bytes::copy_from_slice(delivery.message.topic.as_bytes()),
            pkid: delivery.pkid,
            payload: delivery.message.payload.clone(),
            properties: None,
        }),
        Outbound::PubAck(pkid) => Packet::PubAck(v5::PubAck::new(*pkid, None)),
        Outbound::PubRec(pkid) => Packet::PubRec(v5::PubRec::new(*pkid, None)),
        Outbound::PubComp(pkid) => Packet::PubComp(v5::PubComp::new(*pkid, None)),
        Outbound::SubAck { pkid, results } => Packet::SubAck(v5::SubAck {
            pkid: *pkid,
            return_codes: results.iter().map(|result| suback_code(*result)).collect(),
            properties: None,
        }),
        Outbound::UnsubAck { pkid, existed } => Packet::UnsubAck(v5::UnsubAck {
            pkid: *pkid,
            reasons: existed
                .iter()
                .map(|existed| unsuback_reason(*existed))
                .collect(),
            properties: None,
        }),
        Outbound::PingResp => Packet::PingResp(v5::PingResp),
        Outbound::Disconnect(reason) => {
            Packet::Disconnect(v5::Disconnect::new(disconnect_code(*reason)))
        }
    };
    match packet.write(out, max) {
        Ok(_) => Ok(()),
        Err(Error::OutgoingPacketTooLarge { pkt_size, max }) => Err(EncodeError::TooLarge {
            size: pkt_size as usize,
            max: max as usize,
        }),
        Err(error) => Err(EncodeError::Failed(error.to_string())),
    }
}

fn read(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, DecodeError> {
    let limit = u32::try_from(max).unwrap_or(u32::MAX);
    match Packet::read(buf, Some(limit)) {
        Ok(packet) => Ok(Some(packet)),
        Err(Error::InsufficientBytes(_)) => Ok(None),
        Err(Error::PayloadSizeLimitExceeded { pkt_size, .. }) => Err(DecodeError::TooLarge {
            size: pkt_size,
            max,
        }),
        Err(error) => Err(DecodeError::Malformed(error.to_string())),
    }
}

fn publish_inbound(publish: v5::Publish) -> Result<Inbound, DecodeError> {
    if publish.topic.is_empty() {
        // The broker announces no Topic Alias Maximum, so clients must not use aliases.
        return Err(DecodeError::Malformed(
            "PUBLISH with an empty topic (topic aliases are not supported)".into(),
        ));
    }
    let topic = utf8_topic(publish.topic)?;
    let message = Message {
        topic: topic.into(),
        payload: publish.payload,
        qos: qos_from_v5(publish.qos),
        retain: publish.retain,
    };
    Ok(Inbound::Publish {
        message,
        pkid: publish.pkid,
    })
}

fn will_message(will: v5::LastWill) -> Result<Message, DecodeError> {
    let topic = utf8_topic(will.topic)?;
    Ok(Message {
        topic: topic.into(),
        payload: will.message,
        qos: qos_from_v5(will.qos),
        retain: will.retain,
    })
}

fn utf8_topic(topic: Bytes) -> Result<String, DecodeError> {
    String::from_utf8(topic.to_vec())
        .map_err(|_| DecodeError::Malformed("topic is not valid UTF-8".into()))
}

fn subscribe_request(filter: v5::Filter) -> SubscribeRequest {
    let retain_handling = match filter.retain_forward_rule {
        v5::RetainForwardRule::OnEverySubscribe => RetainHandling::SendAlways,
        v5::RetainForwardRule::OnNewSubscribe => RetainHandling::SendIfNewSubscription,
        v5::RetainForwardRule::Never => RetainHandling::Never,
    };
    SubscribeRequest {
        filter: filter.path,
        qos: qos_from_v5(filter.qos),
        no_local: filter.nolocal,
        retain_as_published: filter.preserve_retain,
        retain_handling,
    }
}

fn connack(info: &ConnAckInfo) -> v5::ConnAck {
    let properties = (info.code == ConnectCode::Accepted).then(|| v5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: Some(info.receive_maximum),
        max_qos: None,
        retain_available: None,
        max_packet_size: Some(info.max_packet_size),
        assigned_client_identifier: info.assigned_client_id.clone(),
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: Some(0),
        shared_subscription_available: Some(0),
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    });
    v5::ConnAck {
        session_present: info.session_present,
        code: connect_code(info.code),
        properties,
    }
}

/// Maps to MQTT 5 reason codes. The codec panics on the MQTT 3.1.1-only variants of its
/// `ConnectReturnCode` (such as `BadClientId`), so only MQTT 5 variants are used.
fn connect_code(code: ConnectCode) -> v5::ConnectReturnCode {
    use v5::ConnectReturnCode as Code;
    match code {
        ConnectCode::Accepted => Code::Success,
        ConnectCode::UnsupportedProtocol => Code::UnsupportedProtocolVersion,
        ConnectCode::ClientIdRejected => Code::ClientIdentifierNotValid,
        ConnectCode::BadCredentials => Code::BadUserNamePassword,
        ConnectCode::NotAuthorized => Code::NotAuthorized,
        ConnectCode::BadAuthenticationMethod => Code::BadAuthenticationMethod,
        ConnectCode::TopicNameInvalid => Code::TopicNameInvalid,
    }
}

fn disconnect_code(reason: DisconnectReason) -> v5::DisconnectReasonCode {
    use v5::DisconnectReasonCode as Code;
    match reason {
        DisconnectReason::ServerShuttingDown => Code::ServerShuttingDown,
        DisconnectReason::PacketTooLarge => Code::PacketTooLarge,
        DisconnectReason::ProtocolError => Code::ProtocolError,
        DisconnectReason::MalformedPacket => Code::MalformedPacket,
        DisconnectReason::KeepAliveTimeout => Code::KeepAliveTimeout,
        DisconnectReason::SessionTakenOver => Code::SessionTakenOver,
        DisconnectReason::TopicNameInvalid => Code::TopicNameInvalid,
        DisconnectReason::UnspecifiedError => Code::UnspecifiedError,
    }
}

fn suback_code(result: SubscribeResult) -> v5::SubscribeReasonCode {
    match result {
        SubscribeResult::Granted(qos) => v5::SubscribeReasonCode::Success(qos_to_v5(qos)),
        SubscribeResult::InvalidFilter => v5::SubscribeReasonCode::TopicFilterInvalid,
        SubscribeResult::SharedNotSupported => {
            v5::SubscribeReasonCode::SharedSubscriptionsNotSupported
        }
    }
}

fn unsuback_reason(existed: bool) -> v5::UnsubAckReason {
    if existed {
        v5::UnsubAckReason::Success
    } else {
        v5::UnsubAckReason::NoSubscriptionExisted
    }
}

fn qos_to_v5(qos: QoS) -> QoS5 {
    match qos {
        QoS::AtMostOnce => QoS5::AtMostOnce,
        QoS::AtLeastOnce => QoS5::AtLeastOnce,
        QoS::ExactlyOnce => QoS5::ExactlyOnce,
    }
}

fn qos_from_v5(qos: QoS5) -> QoS {
    match qos {
        QoS5::AtMostOnce => QoS::AtMostOnce,
        QoS5::AtLeastOnce => QoS::AtLeastOnce,
        QoS5::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_disconnect_is_normal() {
        let mut buf = BytesMut::from(&SHORT_DISCONNECT[..]);
        let decoded = decode(&mut buf, 1024);
        assert!(
            matches!(
                decoded,
                Ok(Some(Inbound::Disconnect {
                    publish_will: false,
                    session_expiry: None
                }))
            ),
            "{decoded:?}"
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn session_expiry_property_is_read() {
        let mut properties = v5::ConnectProperties::new();
        properties.session_expiry_interval = Some(3600);
        let connect = v5::Connect {
            keep_alive: 10,
            client_id: "meter-5".into(),
            clean_start: false,
            properties: Some(properties),
        };
        let mut buf = BytesMut::new();
        let written = Packet::Connect(connect, None, None).write(&mut buf, None);
        assert!(written.is_ok(), "{written:?}");

        let request = decode_connect(&mut buf, 1024).ok().flatten();
        let expiry = request.map(|r| r.session_expiry);
        assert_eq!(
            expiry,
            Some(SessionExpiry::After(std::time::Duration::from_secs(3600)))
        );
    }

    #[test]
    fn rejection_codes_encode_without_panic() {
        let codes = [
            ConnectCode::UnsupportedProtocol,
            ConnectCode::ClientIdRejected,
            ConnectCode::BadCredentials,
            ConnectCode::NotAuthorized,
            ConnectCode::BadAuthenticationMethod,
            ConnectCode::TopicNameInvalid,
        ];
        for code in codes {
            let mut buf = BytesMut::new();
            let result = encode(
                &Outbound::ConnAck(ConnAckInfo::rejection(code)),
                &mut buf,
                None,
            );
            assert!(result.is_ok(), "{code:?}: {result:?}");
        }
    }
}
