//! Writing half of a connection: settled acknowledgements in FIFO order, control replies and
//! queued messages.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};
use tracing::{debug, warn};

use super::handshake::Accepted;
use super::{CloseReason, PendingAck};
use crate::broker::Shared;
use crate::protocol::{EncodeError, Outbound};
use crate::session::Delivery;
use crate::stats::Counters;

/// Maximum number of queued messages encoded into one write.
const DELIVERY_BATCH: usize = 64;

pub(super) struct Writer<'a> {
    accepted: &'a Accepted,
    shared: &'a Shared,
    stream: OwnedWriteHalf,
    buf: BytesMut,
    control_rx: mpsc::Receiver<Outbound>,
    acks_rx: mpsc::Receiver<PendingAck>,
    /// Head of the acknowledgement FIFO, taken from `acks_rx` and not yet settled.
    current: Option<PendingAck>,
}

/// Cause of the end of the writer's main loop.
enum Stop {
    Closed,
    Shutdown,
    Failed(CloseReason),
}

/// One unit of work chosen by the main loop.
enum Step {
    Ack(Option<(Outbound, bool)>),
    Control(Option<Outbound>),
    Deliver,
}

impl<'a> Writer<'a> {
    pub fn new(
        accepted: &'a Accepted,
        shared: &'a Shared,
        stream: OwnedWriteHalf,
        control_rx: mpsc::Receiver<Outbound>,
        acks_rx: mpsc::Receiver<PendingAck>,
    ) -> Self {
        Self {
            accepted,
            shared,
            stream,
            buf: BytesMut::with_capacity(4096),
            control_rx,
            acks_rx,
            current: None,
        }
    }

    pub async fn run(mut self) {
        let accepted = self.accepted;
        let control = &accepted.control;
        let stop = match self.resend_inflight().await {
            Ok(()) => self.serve().await,
            Err(reason) => Stop::Failed(reason),
        };
        match stop {
            Stop::Closed => {}
            Stop::Shutdown => {
                self.drain_acks().await;
                control.close(CloseReason::Shutdown);
            }
            Stop::Failed(reason) => control.close(reason),
        }

        if let Some(reason) = control
            .reason()
            .and_then(|reason| reason.disconnect_reason())
        {
            // Best effort: the connection closes right after, whether or not this arrives.
            let _ = self.write(Outbound::Disconnect(reason)).await;
        }
        let _ = self.stream.shutdown().await;
    }

    async fn serve(&mut self) -> Stop {
        // Messages queued while the client was offline wait for the first wake-up.
        self.accepted.session.notify.notify_one();
        loop {
            let step = tokio::select! {
                biased;
                _ = self.accepted.control.closed() => return Stop::Closed,
                _ = self.shared.shutdown.cancelled() => return Stop::Shutdown,
                settled = next_settled(&mut self.current, &mut self.acks_rx) => Step::Ack(settled),
                packet = self.control_rx.recv() => Step::Control(packet),
                _ = self.accepted.session.notify.notified() => Step::Deliver,
            };
            let result = match step {
                Step::Ack(None) | Step::Control(None) => return Stop::Closed,
                Step::Ack(Some((_, false))) => Err(CloseReason::AckWithdrawn),
                Step::Ack(Some((reply, true))) => self.write_settled(reply).await,
                Step::Control(Some(packet)) => self.write(packet).await,
                Step::Deliver => self.deliver_queued().await,
            };
            if let Err(reason) = result {
                return Stop::Failed(reason);
            }
        }
    }

    /// Sends the acknowledgements that settle within the shutdown grace time. The reader has
    /// stopped, so the FIFO only shrinks.
    async fn drain_acks(&mut self) {
        let deadline = Instant::now() + self.shared.config.shutdown_grace;
        loop {
            match timeout_at(deadline, next_settled(&mut self.current, &mut self.acks_rx)).await {
                Ok(None) | Ok(Some((_, false))) => return,
                Ok(Some((reply, true))) => {
                    if self.write_settled(reply).await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let pending = usize::from(self.current.is_some()) + self.acks_rx.len();
                    warn!(
                        pending,
                        grace = ?self.shared.config.shutdown_grace,
                        "shutdown grace time elapsed with unacknowledged messages; \
                         the client gets no PUBACK for them and will send them again"
                    );
                    return;
                }
            }
        }
    }

    async fn write_settled(&mut self, reply: Outbound) -> Result<(), CloseReason> {
        let pubrec_pkid = match &reply {
            Outbound::PubRec(pkid) => Some(*pkid),
            _ => None,
        };
        self.write(reply).await?;
        if let Some(pkid) = pubrec_pkid {
            // From now on the reader replies to a resend of this QoS 2 message without routing it.
            self.accepted.session.lock().incoming_qos2.insert(pkid);
        }
        Ok(())
    }

    /// Resends, with DUP set, the QoS 1 messages that an earlier connection of this session
    /// sent without getting a PUBACK.
    async fn resend_inflight(&mut self) -> Result<(), CloseReason> {
        let resends = {
            let inner = self.accepted.session.lock();
            if inner.is_owned_by(self.accepted.control.id) {
                inner.queue.inflight_resends()
            } else {
                Vec::new()
            }
        };
        self.write_deliveries(resends).await
    }

    /// Sends up to one batch of queued messages, as far as the inflight window allows.
    async fn deliver_queued(&mut self) -> Result<(), CloseReason> {
        let window = self.accepted.window;
        let (deliveries, more) = {
            let mut inner = self.accepted.session.lock();
            if !inner.is_owned_by(self.accepted.control.id) {
                return Ok(());
            }
            let mut deliveries = Vec::new();
            while deliveries.len() < DELIVERY_BATCH {
                match inner.queue.pop_ready(window) {
                    Some(delivery) => deliveries.push(delivery),
                    None => break,
                }
            }
            (deliveries, inner.queue.has_ready(window))
        };
        self.write_deliveries(deliveries).await?;
        if more {
            self.accepted.session.notify.notify_one();
        }
        Ok(())
    }

    async fn write_deliveries(&mut self, deliveries: Vec<Delivery>) -> Result<(), CloseReason> {
        let mut count = 0;
        for delivery in deliveries {
            let pkid = delivery.pkid;
            if self.encode(&Outbound::Publish(delivery)) {
                count += 1;
            } else if pkid != 0 {
                // Never sendable: release its inflight slot instead of waiting for a PUBACK.
                self.accepted.session.lock().queue.acknowledge(pkid);
            }
        }
        self.flush().await?;
        Counters::add(&self.shared.counters.messages_out, count);
        Ok(())
    }

    async fn write(&mut self, packet: Outbound) -> Result<(), CloseReason> {
        self.encode(&packet);
        self.flush().await
    }

    /// Appends `packet` to the write buffer. Returns `false`, after logging, when the packet
    /// cannot be encoded; the buffer is then left as it was.
    fn encode(&mut self, packet: &Outbound) -> bool {
        let mark = self.buf.len();
        match self.accepted.codec.encode(packet, &mut self.buf) {
            Ok(()) => true,
            Err(error) => {
                self.buf.truncate(mark);
                log_encode_error(&error);
                false
            }
        }
    }

    async fn flush(&mut self) -> Result<(), CloseReason> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let limit: Duration = self.shared.config.write_timeout;
        let written = timeout(limit, self.stream.write_all(&self.buf)).await;
        self.buf.clear();
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(CloseReason::WriteFailed(error.to_string())),
            Err(_) => Err(CloseReason::WriteFailed(format!(
                "timed out after {limit:?}"
            ))),
        }
    }
}

/// Waits until the head of the acknowledgement FIFO is settled and returns its reply and
/// whether every internal subscriber acknowledged. Returns `None` once the FIFO is closed and
/// empty.
///
/// Cancel safety: the head stays in `current` until its outcome is known, so a cancelled call
/// loses nothing.
async fn next_settled(
    current: &mut Option<PendingAck>,
    acks: &mut mpsc::Receiver<PendingAck>,
) -> Option<(Outbound, bool)> {
    if current.is_none() {
        *current = Some(acks.recv().await?);
    }
    let head = current.as_mut()?;
    let acknowledged = match head.outcome.as_mut() {
        None => true,
        Some(outcome) => outcome.await.unwrap_or(false),
    };
    let head = current.take()?;
    Some((head.reply, acknowledged))
}

fn log_encode_error(error: &EncodeError) {
    match error {
        EncodeError::TooLarge { size, max } => warn!(
            size,
            max, "dropped a message larger than the client's Maximum Packet Size"
        ),
        EncodeError::NotRepresentable(what) => {
            debug!(what, "packet has no form in this protocol version")
        }
        EncodeError::Failed(detail) => warn!(detail, "failed to encode a packet; dropped it"),
    }
}
