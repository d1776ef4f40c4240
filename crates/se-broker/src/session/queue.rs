//! Outbound message queue of one session, without I/O: bounded queue, QoS 1 inflight window
//! and packet identifiers.

use std::collections::VecDeque;

use rumqttc::QoS;

use crate::message::Message;

/// One PUBLISH to send to the session's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub message: Message,
    /// Packet identifier; 0 for QoS 0.
    pub pkid: u16,
    /// Set on a resend of a QoS 1 message that was sent before.
    pub dup: bool,
}

#[derive(Debug)]
pub(crate) struct DeliveryQueue {
    queued: VecDeque<Message>,
    capacity: usize,
    /// QoS 1 messages sent and not yet acknowledged, in send order.
    inflight: VecDeque<(u16, Message)>,
    last_pkid: u16,
}

impl DeliveryQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            queued: VecDeque::new(),
            capacity,
            inflight: VecDeque::new(),
            last_pkid: 0,
        }
    }

    /// Appends `message`. When the queue is full, drops the oldest queued message and returns
    /// `true`.
    pub fn push(&mut self, message: Message) -> bool {
        let dropped = self.queued.len() >= self.capacity && self.queued.pop_front().is_some();
        self.queued.push_back(message);
        dropped
    }

    /// Returns whether [`Self::pop_ready`] would return a delivery.
    pub fn has_ready(&self, window: usize) -> bool {
        match self.queued.front() {
            None => false,
            Some(message) => message.qos == QoS::AtMostOnce || self.inflight.len() < window,
        }
    }

    /// Takes the next message to send, in queue order. A QoS 1 message gets a packet
    /// identifier and moves to the inflight list. While `window` messages are inflight, the
    /// next QoS 1 message waits, and so do the messages queued behind it.
    pub fn pop_ready(&mut self, window: usize) -> Option<Delivery> {
        if !self.has_ready(window) {
            return None;
        }
        let message = self.queued.pop_front()?;
        if message.qos == QoS::AtMostOnce {
            return Some(Delivery {
                message,
                pkid: 0,
                dup: false,
            });
        }
        let pkid = self.allocate_pkid();
        self.inflight.push_back((pkid, message.clone()));
        Some(Delivery {
            message,
            pkid,
            dup: false,
        })
    }

    /// Removes the inflight message with `pkid`. Returns whether it was inflight.
    pub fn acknowledge(&mut self, pkid: u16) -> bool {
        // PUBACKs usually arrive in send order, so the front is checked first.
        let position = match self.inflight.front() {
            Some((front, _)) if *front == pkid => Some(0),
            _ => self.inflight.iter().position(|(id, _)| *id == pkid),
        };
        position
            .and_then(|index| self.inflight.remove(index))
            .is_some()
    }

    /// Returns the inflight messages as resends (DUP set), in their original send order.
    pub fn inflight_resends(&self) -> Vec<Delivery> {
        self.inflight
            .iter()
            .map(|(pkid, message)| Delivery {
                message: message.clone(),
                pkid: *pkid,
                dup: true,
            })
            .collect()
    }

    #[cfg(test)]
    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    /// Returns the next free packet identifier. The inflight list is shorter than the
    /// identifier space (a window is at most 65,535), so the search ends.
    fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            let in_use = self.inflight.iter().any(|(id, _)| *id == self.last_pkid);
            if !in_use {
                return self.last_pkid;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, qos: QoS) -> Message {
        Message {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos,
            retain: false,
        }
    }

    #[test]
    fn full_queue_drops_oldest() {
        let mut queue = DeliveryQueue::new(2);
        assert!(!queue.push(message("a", QoS::AtLeastOnce)));
        assert!(!queue.push(message("b", QoS::AtLeastOnce)));
        assert!(queue.push(message("c", QoS::AtLeastOnce)));

        let first = queue.pop_ready(10).map(|d| d.message.topic.to_string());
        assert_eq!(first.as_deref(), Some("b"));
        assert_eq!(queue.queued_len(), 1);
    }

    #[test]
    fn window_limits_qos1_inflight() {
        let mut queue = DeliveryQueue::new(10);
        for topic in ["a", "b", "c"] {
            queue.push(message(topic, QoS::AtLeastOnce));
        }

        let first = queue.pop_ready(2).map(|d| d.pkid);
        let second = queue.pop_ready(2).map(|d| d.pkid);
        assert_eq!(first, Some(1));
        assert_eq!(second, Some(2));
        assert_eq!(queue.pop_ready(2), None);

        assert!(queue.acknowledge(1));
        assert_eq!(queue.pop_ready(2).map(|d| d.pkid), Some(3));
    }

    #[test]
    fn qos0_behind_blocked_qos1_waits() {
        let mut queue = DeliveryQueue::new(10);
        queue.push(message("a", QoS::AtLeastOnce));
        queue.push(message("b", QoS::AtLeastOnce));
        queue.push(message("c", QoS::AtMostOnce));

        assert!(queue.pop_ready(1).is_some());
        assert!(!queue.has_ready(1));
    }

    #[test]
    fn resends_keep_order_and_set_dup() {
        let mut queue = DeliveryQueue::new(10);
        queue.push(message("a", QoS::AtLeastOnce));
        queue.push(message("b", QoS::AtLeastOnce));
        queue.pop_ready(10);
        queue.pop_ready(10);

        let resends = queue.inflight_resends();
        let topics: Vec<&str> = resends.iter().map(|d| &*d.message.topic).collect();
        assert_eq!(topics, ["a", "b"]);
        assert!(resends.iter().all(|d| d.dup));
    }

    #[test]
    fn pkid_skips_zero_and_ids_in_use() {
        let mut queue = DeliveryQueue::new(10);
        queue.last_pkid = u16::MAX - 1;
        queue.push(message("a", QoS::AtLeastOnce));
        queue.push(message("b", QoS::AtLeastOnce));
        assert_eq!(queue.pop_ready(10).map(|d| d.pkid), Some(u16::MAX));
        assert_eq!(queue.pop_ready(10).map(|d| d.pkid), Some(1));

        queue.last_pkid = 0;
        queue.push(message("c", QoS::AtLeastOnce));
        assert_eq!(queue.pop_ready(10).map(|d| d.pkid), Some(2));
    }

    #[test]
    fn unknown_ack_is_ignored() {
        let mut queue = DeliveryQueue::new(10);
        assert!(!queue.acknowledge(7));
    }
}
