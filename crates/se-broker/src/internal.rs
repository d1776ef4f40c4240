//! In-process subscribers and the acknowledgements that gate PUBACKs.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use rumqttc::QoS;
use tokio::sync::{mpsc, oneshot};

use crate::message::Message;
use crate::stats::Counters;

/// Message delivered to an [`InternalSubscription`].
#[derive(Debug)]
pub struct InboundMessage {
    /// Topic the message was published to.
    pub topic: String,
    /// Payload as received.
    pub payload: Bytes,
    /// QoS of the PUBLISH as sent by the publisher.
    pub qos: QoS,
    /// Retain flag of the PUBLISH as sent by the publisher.
    pub retain: bool,
    /// Client identifier of the publisher. Empty for messages published with
    /// [`crate::Broker::publish`].
    pub client_id: String,
    /// Present when an MQTT client waits for this acknowledgement: a QoS 1 or QoS 2 PUBLISH
    /// from a client. Call [`AckHandle::ack`] once the message is stored; dropping the handle
    /// without calling it means "not stored".
    pub ack: Option<AckHandle>,
}

impl InboundMessage {
    /// Acknowledges the message as stored, if it carries an [`AckHandle`]; does nothing
    /// otherwise.
    pub fn acknowledge(&mut self) {
        if let Some(handle) = self.ack.take() {
            handle.ack();
        }
    }
}

/// Acknowledgement owed by an internal subscriber for one message.
///
/// The broker sends the PUBACK (or PUBREC for QoS 2) to the publisher only after every
/// internal subscriber that received the message called [`AckHandle::ack`]. Dropping a handle
/// without calling `ack` means the message was not stored: the broker then sends no
/// acknowledgement for it and closes the publisher's connection, so that the client sends the
/// message again after it reconnects.
pub struct AckHandle {
    group: Option<Arc<AckGroup>>,
}

impl AckHandle {
    /// Confirms that the message is stored.
    pub fn ack(mut self) {
        if let Some(group) = self.group.take() {
            group.settle(true);
        }
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            group.settle(false);
        }
    }
}

impl fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AckHandle")
    }
}

/// Joins the acknowledgements of all internal subscribers that received one message into a
/// single outcome: `true` when all acknowledged, `false` as soon as one handle is dropped.
struct AckGroup {
    pending: AtomicUsize,
    outcome: Mutex<Option<oneshot::Sender<bool>>>,
}

impl AckGroup {
    fn settle(&self, acknowledged: bool) {
        if !acknowledged {
            self.finish(false);
        } else if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish(true);
        }
    }

    fn finish(&self, acknowledged: bool) {
        let sender = self
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            // The receiver is gone when the publisher's connection closed: nothing to report.
            let _ = sender.send(acknowledged);
        }
    }
}

/// Creates `count` handles whose joint outcome arrives on the returned receiver.
pub(crate) fn ack_group(count: usize) -> (Vec<AckHandle>, oneshot::Receiver<bool>) {
    let (sender, receiver) = oneshot::channel();
    let group = Arc::new(AckGroup {
        pending: AtomicUsize::new(count),
        outcome: Mutex::new(Some(sender)),
    });
    let handles = (0..count)
        .map(|_| AckHandle {
            group: Some(Arc::clone(&group)),
        })
        .collect();
    (handles, receiver)
}

/// Sends `message` to each internal subscriber in `targets`, waiting while a subscriber's
/// buffer is full. With `want_ack`, each copy carries an [`AckHandle`] and the returned
/// receiver yields the joint outcome. Returns `None` when there is nothing to wait for.
pub(crate) async fn deliver_internal(
    targets: Vec<mpsc::Sender<InboundMessage>>,
    message: &Message,
    client_id: &str,
    want_ack: bool,
    counters: &Counters,
) -> Option<oneshot::Receiver<bool>> {
    if targets.is_empty() {
        return None;
    }
    let (handles, outcome) = if want_ack {
        let (handles, outcome) = ack_group(targets.len());
        (handles.into_iter().map(Some).collect(), Some(outcome))
    } else {
        (targets.iter().map(|_| None).collect::<Vec<_>>(), None)
    };

    for (target, ack) in targets.iter().zip(handles) {
        let inbound = InboundMessage {
            topic: message.topic.to_string(),
            payload: message.payload.clone(),
            qos: message.qos,
            retain: message.retain,
            client_id: client_id.to_owned(),
            ack,
        };
        // A send fails only when the subscriber was dropped meanwhile. The handle inside the
        // returned message is then dropped too, which fails the group (see `AckHandle::drop`).
        if target.send(inbound).await.is_ok() {
            Counters::add(&counters.messages_internal, 1);
        }
    }
    outcome
}

/// Receiving side of an internal subscriber created by [`crate::Broker::internal_subscriber`].
///
/// Dropping it removes the subscription. Messages already in its buffer are then dropped
/// unacknowledged, so their publishers get no PUBACK and send them again.
#[derive(Debug)]
pub struct InternalSubscription {
    receiver: mpsc::Receiver<InboundMessage>,
}

impl InternalSubscription {
    pub(crate) fn new(receiver: mpsc::Receiver<InboundMessage>) -> Self {
        Self { receiver }
    }

    /// Waits for the next message. Returns `None` once the broker, its handles and its
    /// connection tasks are all dropped.
    pub async fn recv(&mut self) -> Option<InboundMessage> {
        self.receiver.recv().await
    }

    /// Waits for at least one message and appends up to `limit` messages to `buffer`.
    /// Returns the number appended; 0 means the broker is gone (see [`Self::recv`]) or
    /// `limit` is 0.
    pub async fn recv_many(&mut self, buffer: &mut Vec<InboundMessage>, limit: usize) -> usize {
        self.receiver.recv_many(buffer, limit).await
    }

    /// Returns a message if one is buffered, without waiting.
    pub fn try_recv(&mut self) -> Option<InboundMessage> {
        self.receiver.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_succeeds_when_all_acked() {
        let (handles, mut receiver) = ack_group(2);
        let mut handles = handles.into_iter();
        handles.next().into_iter().for_each(AckHandle::ack);
        assert!(
            receiver.try_recv().is_err(),
            "outcome before the second ack"
        );
        handles.next().into_iter().for_each(AckHandle::ack);
        assert_eq!(receiver.try_recv().ok(), Some(true));
    }

    #[test]
    fn dropped_handle_fails_group() {
        let (handles, mut receiver) = ack_group(2);
        let mut handles = handles.into_iter();
        handles.next().into_iter().for_each(AckHandle::ack);
        drop(handles);
        assert_eq!(receiver.try_recv().ok(), Some(false));
    }
}
