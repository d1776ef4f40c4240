//! Reading half of a connection: decodes packets, routes messages and queues replies.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::QoS;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::handshake::Accepted;
use super::{CloseReason, PendingAck};
use crate::broker::Shared;
use crate::internal::deliver_internal;
use crate::message::Message;
use crate::protocol::{DecodeError, Inbound, Outbound, SubscribeRequest, SubscribeResult};
use crate::session::SessionExpiry;
use crate::stats::Counters;
use crate::topic::is_valid_topic_name;

pub(super) struct Reader<'a> {
    accepted: &'a Accepted,
    shared: &'a Shared,
    stream: OwnedReadHalf,
    buf: BytesMut,
    /// Read timeout of 1.5 times the keep alive (MQTT 3.1.1 section 3.1.2.10). `None` when
    /// the client disabled keep alive.
    keep_alive_timeout: Option<Duration>,
    control_tx: mpsc::Sender<Outbound>,
    acks_tx: mpsc::Sender<PendingAck>,
}

impl<'a> Reader<'a> {
    pub fn new(
        accepted: &'a Accepted,
        shared: &'a Shared,
        stream: OwnedReadHalf,
        leftover: BytesMut,
        control_tx: mpsc::Sender<Outbound>,
        acks_tx: mpsc::Sender<PendingAck>,
    ) -> Self {
        let keep_alive_ms = u64::from(accepted.keep_alive) * 1500;
        let keep_alive_timeout = (keep_alive_ms > 0).then(|| Duration::from_millis(keep_alive_ms));
        Self {
            accepted,
            shared,
            stream,
            buf: leftover,
            keep_alive_timeout,
            control_tx,
            acks_tx,
        }
    }

    /// Reads and handles packets until the connection closes or the broker shuts down. On
    /// shutdown it records the reason without closing, so that the writer can still send the
    /// acknowledgements that settle within the grace time.
    pub async fn run(mut self) {
        let (accepted, shared) = (self.accepted, self.shared);
        loop {
            let step = match accepted.codec.decode(&mut self.buf) {
                Ok(Some(packet)) => {
                    until_stopped(accepted, shared, self.parts().handle(packet)).await
                }
                Ok(None) => self.read_more().await,
                Err(error) => Some(Err(decode_close_reason(error))),
            };
            match step {
                None => return,
                Some(Ok(())) => {}
                Some(Err(reason)) => {
                    accepted.control.close(reason);
                    return;
                }
            }
        }
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            accepted: self.accepted,
            shared: self.shared,
            control_tx: &self.control_tx,
            acks_tx: &self.acks_tx,
        }
    }

    /// Reads more bytes into the buffer. `None` means the connection closed or the broker
    /// shuts down.
    async fn read_more(&mut self) -> Option<Result<(), CloseReason>> {
        let limit = self.keep_alive_timeout;
        let stream = &mut self.stream;
        let buf = &mut self.buf;
        let read = async move {
            match limit {
                Some(limit) => tokio::time::timeout(limit, stream.read_buf(buf)).await.ok(),
                None => Some(stream.read_buf(buf).await),
            }
        };
        let outcome = until_stopped(self.accepted, self.shared, read).await?;
        Some(match outcome {
            None => Err(CloseReason::KeepAliveTimeout),
            Some(Ok(0)) => Err(CloseReason::ConnectionLost(
                "closed by the client without DISCONNECT".into(),
            )),
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(CloseReason::ConnectionLost(error.to_string())),
        })
    }
}

/// Runs `work` unless the connection closes or the broker shuts down first (`None`).
async fn until_stopped<T>(
    accepted: &Accepted,
    shared: &Shared,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = accepted.control.closed() => None,
        _ = shared.shutdown.cancelled() => {
            accepted.control.record(CloseReason::Shutdown);
            None
        }
        output = work => Some(output),
    }
}

/// The parts of a reader that packet handling needs; borrowed separately from the read buffer.
struct Parts<'a> {
    accepted: &'a Accepted,
    shared: &'a Shared,
    control_tx: &'a mpsc::Sender<Outbound>,
    acks_tx: &'a mpsc::Sender<PendingAck>,
}

impl Parts<'_> {
    async fn handle(&self, packet: Inbound) -> Result<(), CloseReason> {
        let session = &self.accepted.session;
        match packet {
            Inbound::Publish { message, pkid } => self.handle_publish(message, pkid).await,
            Inbound::PubAck(pkid) => {
                session.lock().queue.acknowledge(pkid);
                session.notify.notify_one();
                Ok(())
            }
            Inbound::PubRec(pkid) | Inbound::PubComp(pkid) => {
                debug!(
                    pkid,
                    "ignored PUBREC or PUBCOMP: the broker sends no QoS 2 messages"
                );
                Ok(())
            }
            Inbound::PubRel(pkid) => {
                session.lock().incoming_qos2.remove(&pkid);
                self.send_control(Outbound::PubComp(pkid)).await
            }
            Inbound::Subscribe { pkid, requests } => self.handle_subscribe(pkid, &requests).await,
            Inbound::Unsubscribe { pkid, filters } => {
                let existed = self.shared.router.unsubscribe(session, &filters);
                self.send_control(Outbound::UnsubAck { pkid, existed })
                    .await
            }
            Inbound::PingReq => self.send_control(Outbound::PingResp).await,
            Inbound::Disconnect {
                publish_will,
                session_expiry,
            } => {
                if let Some(seconds) = session_expiry {
                    session.lock().expiry = SessionExpiry::from_interval(seconds);
                }
                Err(CloseReason::ClientDisconnected { publish_will })
            }
            Inbound::Unexpected(name) => Err(CloseReason::ProtocolViolation(format!(
                "unexpected {name} packet"
            ))),
        }
    }

    async fn send_control(&self, packet: Outbound) -> Result<(), CloseReason> {
        self.control_tx
            .send(packet)
            .await
            .map_err(|_| CloseReason::ConnectionLost("writer stopped".into()))
    }

    /// Routes a PUBLISH. For QoS 1 and 2, queues the PUBACK or PUBREC behind the
    /// acknowledgement of every internal subscriber that received the message.
    async fn handle_publish(&self, message: Message, pkid: u16) -> Result<(), CloseReason> {
        Counters::add(&self.shared.counters.messages_in, 1);
        if !is_valid_topic_name(&message.topic) {
            return Err(CloseReason::InvalidTopic(message.topic.to_string()));
        }
        let session = &self.accepted.session;
        let reply = match message.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Outbound::PubAck(pkid)),
            QoS::ExactlyOnce => Some(Outbound::PubRec(pkid)),
        };

        // A QoS 2 resend whose PUBREC already went out was routed before, so only reply.
        let already_received =
            message.qos == QoS::ExactlyOnce && session.lock().incoming_qos2.contains(&pkid);
        if already_received {
            return self
                .queue_ack(PendingAck {
                    reply: Outbound::PubRec(pkid),
                    outcome: None,
                })
                .await;
        }

        let client_id = &self.accepted.client_id;
        let targets = self.shared.router.route(&message, Some(client_id));
        let outcome = deliver_internal(
            targets,
            &message,
            client_id,
            reply.is_some(),
            &self.shared.counters,
        )
        .await;
        match reply {
            Some(reply) => self.queue_ack(PendingAck { reply, outcome }).await,
            None => Ok(()),
        }
    }

    async fn queue_ack(&self, pending: PendingAck) -> Result<(), CloseReason> {
        self.acks_tx
            .send(pending)
            .await
            .map_err(|_| CloseReason::ConnectionLost("writer stopped".into()))
    }

    async fn handle_subscribe(
        &self,
        pkid: u16,
        requests: &[SubscribeRequest],
    ) -> Result<(), CloseReason> {
        let session = &self.accepted.session;
        let subscribed = self.shared.router.subscribe(session, requests);
        for (request, result) in requests.iter().zip(&subscribed.results) {
            log_subscription(request, *result);
        }
        self.send_control(Outbound::SubAck {
            pkid,
            results: subscribed.results,
        })
        .await?;
        for message in subscribed.retained {
            session.offer(message, &self.shared.counters);
        }
        Ok(())
    }
}

fn log_subscription(request: &SubscribeRequest, result: SubscribeResult) {
    let filter = request.filter.as_str();
    match result {
        SubscribeResult::Granted(granted) if request.qos == QoS::ExactlyOnce => warn!(
            filter,
            ?granted,
            "QoS 2 subscription granted as QoS 1: this broker delivers with QoS 0 or 1 only"
        ),
        SubscribeResult::Granted(granted) => debug!(filter, ?granted, "subscribed"),
        SubscribeResult::InvalidFilter => {
            warn!(filter, "rejected subscription: invalid topic filter")
        }
        SubscribeResult::SharedNotSupported => {
            warn!(
                filter,
                "rejected subscription: shared subscriptions are not supported"
            )
        }
    }
}

fn decode_close_reason(error: DecodeError) -> CloseReason {
    match error {
        DecodeError::TooLarge { size, max } => CloseReason::PacketTooLarge { size, max },
        DecodeError::Malformed(detail) => CloseReason::MalformedPacket(detail),
    }
}
