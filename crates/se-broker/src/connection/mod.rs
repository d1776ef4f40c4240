//! One client connection: CONNECT handshake, then a reader and a writer running side by side
//! in the same task.
//!
//! The reader decodes packets and routes messages. For each QoS 1 or QoS 2 PUBLISH it queues a
//! pending acknowledgement in a FIFO channel. The writer sends those acknowledgements strictly
//! in FIFO order, each only after the internal subscribers acknowledged the message, which
//! keeps PUBACKs in PUBLISH order (MQTT 3.1.1 section 4.6). It also sends control replies and
//! the session's queued messages.

mod handshake;
mod reader;
mod writer;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{field, info, info_span, warn, Instrument};

use crate::broker::Shared;
use crate::internal::deliver_internal;
use crate::protocol::{DisconnectReason, Outbound};
use crate::stats::ConnectionGauge;
use handshake::Accepted;

/// Capacity of the channel of control replies (SUBACK, UNSUBACK, PINGRESP, PUBCOMP) from the
/// reader to the writer. When full, the reader waits.
const CONTROL_CAPACITY: usize = 64;

/// Cause of the end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client sent DISCONNECT. With MQTT 5 reason 0x04 the will is published anyway.
    ClientDisconnected {
        publish_will: bool,
    },
    /// End of stream or read error without DISCONNECT.
    ConnectionLost(String),
    KeepAliveTimeout,
    ProtocolViolation(String),
    MalformedPacket(String),
    PacketTooLarge {
        size: usize,
        max: usize,
    },
    InvalidTopic(String),
    /// Another connection with the same client identifier took the session over.
    TakenOver,
    Shutdown,
    WriteFailed(String),
    /// An internal subscriber dropped a message without acknowledging it.
    AckWithdrawn,
}

impl CloseReason {
    /// Returns whether the will message is published: on every end except a DISCONNECT
    /// without MQTT 5 reason 0x04, and except broker shutdown.
    pub fn publishes_will(&self) -> bool {
        !matches!(
            self,
            Self::ClientDisconnected {
                publish_will: false
            } | Self::Shutdown
        )
    }

    /// Returns the reason to send in an MQTT 5 DISCONNECT before closing, if any.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        match self {
            Self::ClientDisconnected { .. } | Self::ConnectionLost(_) | Self::WriteFailed(_) => {
                None
            }
            Self::KeepAliveTimeout => Some(DisconnectReason::KeepAliveTimeout),
            Self::ProtocolViolation(_) => Some(DisconnectReason::ProtocolError),
            Self::MalformedPacket(_) => Some(DisconnectReason::MalformedPacket),
            Self::PacketTooLarge { .. } => Some(DisconnectReason::PacketTooLarge),
            Self::InvalidTopic(_) => Some(DisconnectReason::TopicNameInvalid),
            Self::TakenOver => Some(DisconnectReason::SessionTakenOver),
            Self::Shutdown => Some(DisconnectReason::ServerShuttingDown),
            Self::AckWithdrawn => Some(DisconnectReason::UnspecifiedError),
        }
    }

    fn is_fault(&self) -> bool {
        matches!(
            self,
            Self::ProtocolViolation(_)
                | Self::MalformedPacket(_)
                | Self::PacketTooLarge { .. }
                | Self::InvalidTopic(_)
                | Self::WriteFailed(_)
                | Self::AckWithdrawn
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientDisconnected { .. } => f.write_str("client sent DISCONNECT"),
            Self::ConnectionLost(detail) => write!(f, "connection lost: {detail}"),
            Self::KeepAliveTimeout => f.write_str("no packet within 1.5 times the keep alive"),
            Self::ProtocolViolation(detail) => write!(f, "protocol violation: {detail}"),
            Self::MalformedPacket(detail) => write!(f, "malformed packet: {detail}"),
            Self::PacketTooLarge { size, max } => {
                write!(
                    f,
                    "packet of {size} bytes exceeds max_packet_size of {max} bytes"
                )
            }
            Self::InvalidTopic(topic) => write!(f, "PUBLISH to invalid topic {topic:?}"),
            Self::TakenOver => f.write_str("another connection took over the session"),
            Self::Shutdown => f.write_str("broker shutdown"),
            Self::WriteFailed(detail) => write!(f, "write failed: {detail}"),
            Self::AckWithdrawn => f.write_str(
                "an internal subscriber dropped a message without acknowledging it; \
                 closing so that the client sends it again",
            ),
        }
    }
}

/// Close signal of one connection, shared with the session it is attached to.
#[derive(Debug)]
pub(crate) struct ConnectionControl {
    pub id: u64,
    closed: CancellationToken,
    reason: Mutex<Option<CloseReason>>,
}

impl ConnectionControl {
    pub fn new(id: u64) -> Self {
        Self {
            id,
            closed: CancellationToken::new(),
            reason: Mutex::new(None),
        }
    }

    /// Records `reason` (the first recorded reason wins) and stops the reader and the writer.
    pub fn close(&self, reason: CloseReason) {
        self.record(reason);
        self.closed.cancel();
    }

    /// Records `reason` without stopping anything. The first recorded reason wins.
    pub fn record(&self, reason: CloseReason) {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(reason);
    }

    pub fn reason(&self) -> Option<CloseReason> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }
}

/// Acknowledgement to send once the internal subscribers settled the message.
pub(crate) struct PendingAck {
    /// PUBACK or PUBREC.
    pub reply: Outbound,
    /// `None` when no internal subscriber received the message.
    pub outcome: Option<oneshot::Receiver<bool>>,
}

/// Serves one accepted TCP connection until it closes.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let span = info_span!("mqtt_connection", %peer, client_id = field::Empty);
    serve_inner(stream, &shared).instrument(span).await;
}

async fn serve_inner(mut stream: TcpStream, shared: &Shared) {
    let _gauge = ConnectionGauge::open(&shared.counters);
    let Some((accepted, leftover)) = handshake::run(&mut stream, shared).await else {
        return;
    };
    run_session(stream, &accepted, leftover, shared).await;
    finish(accepted, shared).await;
}

async fn run_session(stream: TcpStream, accepted: &Accepted, leftover: BytesMut, shared: &Shared) {
    let (read_half, write_half) = stream.into_split();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_CAPACITY);
    let (acks_tx, acks_rx) = mpsc::channel(usize::from(shared.config.max_pending_acks));

    let reader = reader::Reader::new(accepted, shared, read_half, leftover, control_tx, acks_tx);
    let writer = writer::Writer::new(accepted, shared, write_half, control_rx, acks_rx);
    tokio::join!(reader.run(), writer.run());
}

/// Logs the end, publishes the will when due, and detaches the session.
async fn finish(accepted: Accepted, shared: &Shared) {
    let reason = accepted
        .control
        .reason()
        .unwrap_or(CloseReason::ConnectionLost("unknown".into()));
    if reason.is_fault() {
        warn!(client_id = %accepted.client_id, %reason, "MQTT client disconnected");
    } else {
        info!(client_id = %accepted.client_id, %reason, "MQTT client disconnected");
    }

    if reason.publishes_will() {
        if let Some(will) = &accepted.will {
            let targets = shared.router.route(will, Some(&accepted.client_id));
            tokio::select! {
                _ = shared.shutdown.cancelled() => {}
                _ = deliver_internal(targets, will, &accepted.client_id, false, &shared.counters) => {}
            }
        }
    }
    shared
        .router
        .detach(&accepted.session, accepted.control.id, Instant::now());
}
