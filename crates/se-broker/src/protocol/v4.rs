//! Adapter to the MQTT 3.1.1 codec (`rumqttc::mqttbytes::v4`).

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{self, Packet};
use rumqttc::mqttbytes::Error;

use super::{
    ConnectCode, ConnectRequest, DecodeError, EncodeError, Inbound, Outbound, RetainHandling,
    SubscribeRequest, SubscribeResult,
};
use crate::message::Message;
use crate::session::SessionExpiry;

pub(super) fn decode_connect(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<ConnectRequest>, DecodeError> {
    let Some(packet) = read(buf, max)? else {
        return Ok(None);
    };
    let Packet::Connect(connect) = packet else {
        return Err(DecodeError::Malformed(
            "the first packet is not a CONNECT".into(),
        ));
    };

    let (username, password) = match connect.login {
        Some(login) => (non_empty(login.username), non_empty(login.password)),
        None => (None, None),
    };
    let will = connect.last_will.map(|will| Message {
        topic: will.topic.into(),
        payload: will.message,
        qos: will.qos,
        retain: will.retain,
    });
    let session_expiry = if connect.clean_session {
        SessionExpiry::AtDisconnect
    } else {
        SessionExpiry::Never
    };
    Ok(Some(ConnectRequest {
        client_id: connect.client_id,
        clean_start: connect.clean_session,
        keep_alive: connect.keep_alive,
        session_expiry,
        will,
        username,
        password,
        receive_maximum: None,
        max_packet_size: None,
        authentication_method: None,
    }))
}

pub(super) fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, DecodeError> {
    let Some(packet) = read(buf, max)? else {
        return Ok(None);
    };
    let inbound = match packet {
        Packet::Publish(publish) => Inbound::Publish {
            message: Message {
                topic: publish.topic.into(),
                payload: publish.payload,
                qos: publish.qos,
                retain: publish.retain,
            },
            pkid: publish.pkid,
        },
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
            filters: unsubscribe.topics,
        },
        Packet::PingReq => Inbound::PingReq,
        Packet::Disconnect => Inbound::Disconnect {
            publish_will: false,
            session_expiry: None,
        },
        Packet::Connect(_) => Inbound::Unexpected("CONNECT"),
        Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        Packet::PingResp => Inbound::Unexpected("PINGRESP"),
    };
    Ok(Some(inbound))
}

pub(super) fn encode(packet: &Outbound, out: &mut BytesMut) -> Result<(), EncodeError> {
    let packet = match packet {
        Outbound::ConnAck(info) => Packet::ConnAck(v4::ConnAck::new(
            return_code(info.code)?,
            info.session_present,
        )),
        Outbound::Publish(delivery) => Packet::Publish(v4::Publish {
            dup: delivery.dup,
            qos: delivery.message.qos,
            retain: delivery.message.retain,
            topic: delivery.message.topic.to_string(),
            pkid: delivery.pkid,
            payload: delivery.message.payload.clone(),
        }),
        Outbound::PubAck(pkid) => Packet::PubAck(v4::PubAck::new(*pkid)),
        Outbound::PubRec(pkid) => Packet::PubRec(v4::PubRec::new(*pkid)),
        Outbound::PubComp(pkid) => Packet::PubComp(v4::PubComp::new(*pkid)),
        Outbound::SubAck { pkid, results } => Packet::SubAck(v4::SubAck::new(
            *pkid,
            results.iter().map(|result| suback_code(*result)).collect(),
        )),
        Outbound::UnsubAck { pkid, .. } => Packet::UnsubAck(v4::UnsubAck::new(*pkid)),
        Outbound::PingResp => Packet::PingResp,
        Outbound::Disconnect(_) => return Ok(()),
    };
    packet
        .write(out, usize::MAX)
        .map(|_| ())
        .map_err(|error| EncodeError::Failed(error.to_string()))
}

fn read(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, DecodeError> {
    match Packet::read(buf, max) {
        Ok(packet) => Ok(Some(packet)),
        Err(Error::InsufficientBytes(_)) => Ok(None),
        Err(Error::PayloadSizeLimitExceeded(size)) => Err(DecodeError::TooLarge { size, max }),
        Err(error) => Err(DecodeError::Malformed(error.to_string())),
    }
}

fn subscribe_request(filter: v4::SubscribeFilter) -> SubscribeRequest {
    SubscribeRequest {
        filter: filter.path,
        qos: filter.qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: RetainHandling::SendAlways,
    }
}

fn return_code(code: ConnectCode) -> Result<v4::ConnectReturnCode, EncodeError> {
    use v4::ConnectReturnCode as Code;
    match code {
        ConnectCode::Accepted => Ok(Code::Success),
        ConnectCode::UnsupportedProtocol => Ok(Code::RefusedProtocolVersion),
        ConnectCode::ClientIdRejected => Ok(Code::BadClientId),
        ConnectCode::BadCredentials => Ok(Code::BadUserNamePassword),
        ConnectCode::NotAuthorized | ConnectCode::BadAuthenticationMethod => {
            Ok(Code::NotAuthorized)
        }
        ConnectCode::TopicNameInvalid => Err(EncodeError::NotRepresentable(
            "CONNACK for an invalid will topic",
        )),
    }
}

fn suback_code(result: SubscribeResult) -> v4::SubscribeReasonCode {
    match result {
        SubscribeResult::Granted(qos) => v4::SubscribeReasonCode::Success(qos),
        SubscribeResult::InvalidFilter | SubscribeResult::SharedNotSupported => {
            v4::SubscribeReasonCode::Failure
        }
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(packet: Packet) -> BytesMut {
        let mut buf = BytesMut::new();
        let written = packet.write(&mut buf, usize::MAX);
        assert!(written.is_ok(), "{written:?}");
        buf
    }

    #[test]
    fn connect_fields_are_mapped() {
        let mut connect = v4::Connect::new("meter-1");
        connect.clean_session = false;
        connect.keep_alive = 30;
        connect.set_login("user", "pass");
        connect.last_will = Some(v4::LastWill::new(
            "status/meter-1",
            "offline",
            rumqttc::QoS::AtLeastOnce,
            true,
        ));
        let mut buf = encoded(Packet::Connect(connect));

        let request = decode_connect(&mut buf, 1024).ok().flatten();
        let request = request.as_ref();
        assert_eq!(request.map(|r| r.client_id.as_str()), Some("meter-1"));
        assert_eq!(request.map(|r| r.clean_start), Some(false));
        assert_eq!(
            request.map(|r| r.session_expiry),
            Some(SessionExpiry::Never)
        );
        assert_eq!(request.and_then(|r| r.password.as_deref()), Some("pass"));
        assert_eq!(
            request.and_then(|r| r.will.as_ref()).map(|w| &*w.topic),
            Some("status/meter-1")
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_packet_reports_size() {
        let publish = v4::Publish::new("a/b", rumqttc::QoS::AtMostOnce, vec![0u8; 100]);
        let mut buf = encoded(Packet::Publish(publish));
        let result = decode(&mut buf, 50);
        assert!(
            matches!(result, Err(DecodeError::TooLarge { max: 50, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn partial_packet_asks_for_more() {
        let publish = v4::Publish::new("a/b", rumqttc::QoS::AtMostOnce, vec![1u8; 10]);
        let full = encoded(Packet::Publish(publish));
        let mut partial = BytesMut::from(&full[..full.len() - 1]);
        assert_eq!(
            decode(&mut partial, 1024).ok().map(|p| p.is_none()),
            Some(true)
        );
    }
}
