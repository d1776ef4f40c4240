use std::sync::atomic::{AtomicU64, Ordering};

/// Snapshot of the broker counters returned by [`crate::Broker::stats`].
///
/// Counters ending in `_total` and the message counters only grow while the broker runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// TCP connections open now, including those still in the CONNECT handshake.
    pub connections_current: u64,
    /// TCP connections accepted since the broker started.
    pub connections_total: u64,
    /// CONNECT packets rejected with a CONNACK return code other than 0 (bad credentials,
    /// rejected client identifier, unsupported protocol version).
    pub connections_rejected_total: u64,
    /// PUBLISH packets received from MQTT clients.
    pub messages_in: u64,
    /// PUBLISH packets sent to MQTT clients, resends included.
    pub messages_out: u64,
    /// Messages handed to internal subscribers.
    pub messages_internal: u64,
    /// Messages dropped because a session queue was full (the oldest message is dropped).
    pub session_queue_dropped: u64,
    /// Sessions kept by the broker, online and offline.
    pub sessions: u64,
    /// Retained messages kept by the broker.
    pub retained_messages: u64,
}

/// Live counters shared by all tasks of one broker.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections_current: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_rejected_total: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub messages_internal: AtomicU64,
    pub session_queue_dropped: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self, sessions: u64, retained_messages: u64) -> BrokerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BrokerStats {
            connections_current: load(&self.connections_current),
            connections_total: load(&self.connections_total),
            connections_rejected_total: load(&self.connections_rejected_total),
            messages_in: load(&self.messages_in),
            messages_out: load(&self.messages_out),
            messages_internal: load(&self.messages_internal),
            session_queue_dropped: load(&self.session_queue_dropped),
            sessions,
            retained_messages,
        }
    }
}

/// Decrements `connections_current` when a connection task ends, however it ends.
pub(crate) struct ConnectionGauge<'a>(&'a Counters);

impl<'a> ConnectionGauge<'a> {
    pub fn open(counters: &'a Counters) -> Self {
        Counters::add(&counters.connections_current, 1);
        Counters::add(&counters.connections_total, 1);
        Self(counters)
    }
}

impl Drop for ConnectionGauge<'_> {
    fn drop(&mut self) {
        self.0.connections_current.fetch_sub(1, Ordering::Relaxed);
    }
}
