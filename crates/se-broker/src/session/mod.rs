//! Per-client session state: subscriptions, outbound queue and expiry.

mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rumqttc::QoS;
use tokio::sync::Notify;
use tracing::warn;

use crate::connection::ConnectionControl;
use crate::message::Message;
use crate::rate_limit::RateLimiter;
use crate::stats::Counters;

pub(crate) use queue::Delivery;
use queue::DeliveryQueue;

/// Minimum time between two "session queue full" warnings of one session.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// When a session ends after its client disconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionExpiry {
    /// Clean session (MQTT 3.1.1) or Session Expiry Interval 0 (MQTT 5).
    AtDisconnect,
    /// MQTT 5 Session Expiry Interval.
    After(Duration),
    /// Persistent MQTT 3.1.1 session, or MQTT 5 interval 0xFFFFFFFF.
    Never,
}

impl SessionExpiry {
    /// Maps an MQTT 5 Session Expiry Interval in seconds.
    pub fn from_interval(seconds: u32) -> Self {
        match seconds {
            0 => Self::AtDisconnect,
            u32::MAX => Self::Never,
            other => Self::After(Duration::from_secs(u64::from(other))),
        }
    }
}

/// Options of one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SubscriptionOptions {
    /// Granted QoS (at most 1).
    pub qos: QoS,
    /// MQTT 5 No Local: messages from this client are not sent back to it.
    pub no_local: bool,
    /// MQTT 5 Retain As Published: forwarded messages keep their retain flag.
    pub retain_as_published: bool,
}

pub(crate) struct Session {
    pub client_id: Arc<str>,
    inner: Mutex<SessionInner>,
    /// Wakes the writer of the attached connection when a delivery may be ready.
    pub notify: Notify,
}

pub(crate) struct SessionInner {
    /// Connection attached now; `None` while the client is offline.
    pub owner: Option<Arc<ConnectionControl>>,
    pub queue: DeliveryQueue,
    pub subscriptions: HashMap<String, SubscriptionOptions>,
    /// Packet identifiers of QoS 2 publishes that got a PUBREC and wait for their PUBREL.
    pub incoming_qos2: HashSet<u16>,
    pub expiry: SessionExpiry,
    /// Set while offline with [`SessionExpiry::After`].
    pub expires_at: Option<Instant>,
    dropped_total: u64,
    drop_log: RateLimiter,
}

impl SessionInner {
    /// Returns whether the connection with `connection_id` is attached to this session.
    pub fn is_owned_by(&self, connection_id: u64) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|owner| owner.id == connection_id)
    }
}

impl Session {
    pub fn new(
        client_id: Arc<str>,
        queue_capacity: usize,
        expiry: SessionExpiry,
        owner: Arc<ConnectionControl>,
    ) -> Self {
        let inner = SessionInner {
            owner: Some(owner),
            queue: DeliveryQueue::new(queue_capacity),
            subscriptions: HashMap::new(),
            incoming_qos2: HashSet::new(),
            expiry,
            expires_at: None,
            dropped_total: 0,
            drop_log: RateLimiter::new(DROP_WARN_INTERVAL),
        };
        Self {
            client_id,
            inner: Mutex::new(inner),
            notify: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SessionInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `message` for the client. QoS 0 messages are not queued while the client is
    /// offline. A full queue drops its oldest message, counts it and logs a rate-limited
    /// warning.
    pub fn offer(&self, message: Message, counters: &Counters) {
        let mut inner = self.lock();
        let online = inner.owner.is_some();
        if !online && message.qos == QoS::AtMostOnce {
            return;
        }
        if inner.queue.push(message) {
            Counters::add(&counters.session_queue_dropped, 1);
            inner.dropped_total += 1;
            if let Some(suppressed) = inner.drop_log.check(Instant::now()) {
                warn!(
                    client_id = %self.client_id,
                    dropped_total = inner.dropped_total,
                    suppressed_warnings = suppressed,
                    online,
                    "session queue is full, dropped its oldest message; \
                     the client reads too slowly or stays offline too long \
                     (raise session_queue_capacity to keep more)"
                );
            }
        }
        drop(inner);
        if online {
            self.notify.notify_one();
        }
    }
}
