//! Version-independent packet types and the adapters to the MQTT 3.1.1 and MQTT 5 codecs of
//! `rumqttc`. The codecs do all encoding and decoding; this module only maps fields.

mod v4;
mod v5;

use bytes::BytesMut;
use rumqttc::QoS;

use crate::message::Message;
use crate::session::{Delivery, SessionExpiry};

/// MQTT protocol version of a connection, chosen from the CONNECT packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5 (protocol level 5).
    V5,
}

impl Version {
    pub fn label(self) -> &'static str {
        match self {
            Self::V311 => "3.1.1",
            Self::V5 => "5",
        }
    }
}

/// Protocol found in the first bytes of a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Detected {
    /// More bytes are needed.
    Incomplete,
    Version(Version),
    /// A CONNECT of another protocol level, such as MQTT 3.1 (level 3).
    UnsupportedLevel(u8),
    /// Not an MQTT CONNECT packet.
    NotConnect,
}

/// Reads the protocol name and level of a CONNECT packet at the start of `buf`.
///
/// Layout: fixed header byte, remaining length (1 to 4 bytes, 7 bits each), then the protocol
/// name as a 2-byte length and UTF-8 bytes, then the protocol level byte.
pub(crate) fn detect_version(buf: &[u8]) -> Detected {
    const CONNECT_TYPE: u8 = 1;
    let Some(&first) = buf.first() else {
        return Detected::Incomplete;
    };
    if first >> 4 != CONNECT_TYPE {
        return Detected::NotConnect;
    }

    let mut position = 1;
    loop {
        match buf.get(position) {
            None => return Detected::Incomplete,
            Some(byte) if byte & 0x80 == 0 => break,
            Some(_) if position == 4 => return Detected::NotConnect,
            Some(_) => position += 1,
        }
    }

    let name_start = position + 3;
    let (Some(&high), Some(&low)) = (buf.get(position + 1), buf.get(position + 2)) else {
        return Detected::Incomplete;
    };
    let name_len = usize::from(u16::from_be_bytes([high, low]));
    let Some(name) = buf.get(name_start..name_start + name_len) else {
        return Detected::Incomplete;
    };
    let Some(&level) = buf.get(name_start + name_len) else {
        return Detected::Incomplete;
    };
    match (name, level) {
        (b"MQTT", 4) => Detected::Version(Version::V311),
        (b"MQTT", 5) => Detected::Version(Version::V5),
        (b"MQTT" | b"MQIsdp", other) => Detected::UnsupportedLevel(other),
        _ => Detected::NotConnect,
    }
}

/// Decoded CONNECT packet.
#[derive(Debug)]
pub(crate) struct ConnectRequest {
    pub client_id: String,
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    pub session_expiry: SessionExpiry,
    pub will: Option<Message>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT 5 Receive Maximum of the client.
    pub receive_maximum: Option<u16>,
    /// MQTT 5 Maximum Packet Size of the client.
    pub max_packet_size: Option<u32>,
    /// MQTT 5 Authentication Method (enhanced authentication), which this broker rejects.
    pub authentication_method: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetainHandling {
    SendAlways,
    SendIfNewSubscription,
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubscribeRequest {
    pub filter: String,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubscribeResult {
    Granted(QoS),
    InvalidFilter,
    SharedNotSupported,
}

/// Packet received from a connected client.
#[derive(Debug)]
pub(crate) enum Inbound {
    Publish {
        message: Message,
        pkid: u16,
    },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        pkid: u16,
        requests: Vec<SubscribeRequest>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect {
        publish_will: bool,
        session_expiry: Option<u32>,
    },
    /// A packet type that a client must not send once connected.
    Unexpected(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectCode {
    Accepted,
    UnsupportedProtocol,
    ClientIdRejected,
    BadCredentials,
    NotAuthorized,
    BadAuthenticationMethod,
    /// The will topic is invalid. MQTT 3.1.1 has no return code for it.
    TopicNameInvalid,
}

#[derive(Clone, Debug)]
pub(crate) struct ConnAckInfo {
    pub code: ConnectCode,
    pub session_present: bool,
    pub assigned_client_id: Option<String>,
    pub receive_maximum: u16,
    pub max_packet_size: u32,
}

impl ConnAckInfo {
    pub fn rejection(code: ConnectCode) -> Self {
        Self {
            code,
            session_present: false,
            assigned_client_id: None,
            receive_maximum: 0,
            max_packet_size: 0,
        }
    }
}

/// Reason sent in an MQTT 5 DISCONNECT from the broker. MQTT 3.1.1 clients only see the
/// connection close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DisconnectReason {
    ServerShuttingDown,
    PacketTooLarge,
    ProtocolError,
    MalformedPacket,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicNameInvalid,
    UnspecifiedError,
}

/// Packet sent to a client.
#[derive(Clone, Debug)]
pub(crate) enum Outbound {
    ConnAck(ConnAckInfo),
    Publish(Delivery),
    PubAck(u16),
    PubRec(u16),
    PubComp(u16),
    SubAck {
        pkid: u16,
        results: Vec<SubscribeResult>,
    },
    UnsubAck {
        pkid: u16,
        existed: Vec<bool>,
    },
    PingResp,
    Disconnect(DisconnectReason),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Remaining length larger than the configured maximum.
    #[error("packet of {size} bytes exceeds max_packet_size of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("malformed packet: {0}")]
    Malformed(String),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncodeError {
    /// Larger than the client's MQTT 5 Maximum Packet Size.
    #[error("packet of {size} bytes exceeds the client's Maximum Packet Size of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// The packet has no form in this protocol version.
    #[error("{0} has no form in this protocol version")]
    NotRepresentable(&'static str),
    #[error("encoding failed: {0}")]
    Failed(String),
}

/// Packet codec of one connection.
#[derive(Debug)]
pub(crate) struct Codec {
    pub version: Version,
    max_incoming: usize,
    max_outgoing: Option<u32>,
}

impl Codec {
    pub fn new(version: Version, max_incoming: usize) -> Self {
        Self {
            version,
            max_incoming,
            max_outgoing: None,
        }
    }

    /// Limits outgoing packets to the client's MQTT 5 Maximum Packet Size.
    pub fn set_max_outgoing(&mut self, max: Option<u32>) {
        self.max_outgoing = max;
    }

    /// Decodes a CONNECT from the start of `buf`. `Ok(None)` means more bytes are needed.
    pub fn decode_connect(
        &self,
        buf: &mut BytesMut,
    ) -> Result<Option<ConnectRequest>, DecodeError> {
        match self.version {
            Version::V311 => v4::decode_connect(buf, self.max_incoming),
            Version::V5 => v5::decode_connect(buf, self.max_incoming),
        }
    }

    /// Decodes one packet from the start of `buf`. `Ok(None)` means more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        match self.version {
            Version::V311 => v4::decode(buf, self.max_incoming),
            Version::V5 => v5::decode(buf, self.max_incoming),
        }
    }

    /// Appends the encoded `packet` to `out`. A DISCONNECT is skipped for MQTT 3.1.1, which
    /// has no DISCONNECT from the server.
    pub fn encode(&self, packet: &Outbound, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self.version {
            Version::V311 => v4::encode(packet, out),
            Version::V5 => v5::encode(packet, out, self.max_outgoing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_prefix(name: &[u8], level: u8) -> Vec<u8> {
        let mut bytes = vec![0x10, 0x20, 0x00, name.len() as u8];
        bytes.extend_from_slice(name);
        bytes.push(level);
        bytes
    }

    #[test]
    fn detects_both_protocol_levels() {
        assert_eq!(
            detect_version(&connect_prefix(b"MQTT", 4)),
            Detected::Version(Version::V311)
        );
        assert_eq!(
            detect_version(&connect_prefix(b"MQTT", 5)),
            Detected::Version(Version::V5)
        );
        assert_eq!(
            detect_version(&connect_prefix(b"MQIsdp", 3)),
            Detected::UnsupportedLevel(3)
        );
    }

    #[test]
    fn detection_waits_for_level_byte() {
        let bytes = connect_prefix(b"MQTT", 4);
        for end in 0..bytes.len() {
            assert_eq!(
                detect_version(&bytes[..end]),
                Detected::Incomplete,
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn non_connect_first_packet_detected() {
        assert_eq!(detect_version(&[0x30, 0x00]), Detected::NotConnect);
        assert_eq!(
            detect_version(&connect_prefix(b"HTTP", 4)),
            Detected::NotConnect
        );
        assert_eq!(
            detect_version(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Detected::NotConnect
        );
    }
}
