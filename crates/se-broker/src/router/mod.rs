//! Shared broker state: sessions, subscriptions, retained messages and internal subscribers.
//!
//! Lock order: the router lock is taken before any session lock, never after.

mod table;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rumqttc::QoS;
use tokio::sync::mpsc;

use crate::connection::{CloseReason, ConnectionControl};
use crate::internal::InboundMessage;
use crate::message::{min_qos, Message};
use crate::protocol::{RetainHandling, SubscribeRequest, SubscribeResult};
use crate::session::{Session, SessionExpiry, SubscriptionOptions};
use crate::stats::Counters;
use crate::topic::{filter_matches, is_shared_subscription, is_valid_filter};
use table::SubscriptionTable;

/// Highest QoS the broker delivers with; QoS 2 subscriptions are granted QoS 1.
const MAX_DELIVERY_QOS: QoS = QoS::AtLeastOnce;

pub(crate) struct Router {
    state: Mutex<RouterState>,
    counters: Arc<Counters>,
    queue_capacity: usize,
}

#[derive(Default)]
struct RouterState {
    sessions: HashMap<Arc<str>, Arc<Session>>,
    table: SubscriptionTable,
    /// Retained message per topic.
    retained: HashMap<Arc<str>, Message>,
    internal: Vec<InternalRoute>,
}

struct InternalRoute {
    filters: Vec<String>,
    sender: mpsc::Sender<InboundMessage>,
}

pub(crate) struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
}

/// Result of a SUBSCRIBE: one result per filter, and the retained messages to send after the
/// SUBACK.
pub(crate) struct Subscribed {
    pub results: Vec<SubscribeResult>,
    pub retained: Vec<Message>,
}

impl Router {
    pub fn new(counters: Arc<Counters>, queue_capacity: usize) -> Self {
        Self {
            state: Mutex::new(RouterState::default()),
            counters,
            queue_capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attaches the connection `control` to the session of `client_id`. The session is created
    /// when there is none or when `clean_start` is set. A connection already attached to that
    /// session is closed (session takeover).
    pub fn attach(
        &self,
        client_id: &str,
        clean_start: bool,
        expiry: SessionExpiry,
        control: Arc<ConnectionControl>,
    ) -> Attached {
        let mut state = self.lock();
        if let Some(existing) = state.sessions.get(client_id).cloned() {
            let previous_owner = existing.lock().owner.take();
            if let Some(previous) = previous_owner {
                previous.close(CloseReason::TakenOver);
            }
            if !clean_start {
                let mut inner = existing.lock();
                inner.owner = Some(control);
                inner.expiry = expiry;
                inner.expires_at = None;
                return Attached {
                    session: Arc::clone(&existing),
                    session_present: true,
                };
            }
            state.remove_session(&existing);
        }

        let client_id: Arc<str> = client_id.into();
        let session = Arc::new(Session::new(
            Arc::clone(&client_id),
            self.queue_capacity,
            expiry,
            control,
        ));
        state.sessions.insert(client_id, Arc::clone(&session));
        Attached {
            session,
            session_present: false,
        }
    }

    /// Detaches connection `connection_id` from `session` when it is still the owner, then
    /// ends the session or starts its expiry timer.
    pub fn detach(&self, session: &Arc<Session>, connection_id: u64, now: Instant) {
        let mut state = self.lock();
        let mut inner = session.lock();
        if !inner.is_owned_by(connection_id) {
            return;
        }
        inner.owner = None;
        match inner.expiry {
            SessionExpiry::AtDisconnect => {
                drop(inner);
                state.remove_session(session);
            }
            SessionExpiry::After(duration) => inner.expires_at = Some(now + duration),
            SessionExpiry::Never => inner.expires_at = None,
        }
    }

    /// Removes offline sessions whose expiry time is past. Returns how many were removed.
    pub fn expire_sessions(&self, now: Instant) -> usize {
        let mut state = self.lock();
        let expired: Vec<Arc<Session>> = state
            .sessions
            .values()
            .filter(|session| {
                let inner = session.lock();
                inner.owner.is_none() && inner.expires_at.is_some_and(|at| at <= now)
            })
            .cloned()
            .collect();
        for session in &expired {
            state.remove_session(session);
        }
        expired.len()
    }

    /// Stores `message` if retained, queues it for every matching MQTT subscriber, and returns
    /// the channels of the matching internal subscribers. `publisher` is the client identifier
    /// of the sender, used for MQTT 5 No Local.
    pub fn route(
        &self,
        message: &Message,
        publisher: Option<&str>,
    ) -> Vec<mpsc::Sender<InboundMessage>> {
        let mut state = self.lock();
        if message.retain {
            state.store_retained(message);
        }

        for (client, options) in state.table.matching(&message.topic) {
            if options.no_local && publisher == Some(&*client) {
                continue;
            }
            if let Some(session) = state.sessions.get(&client) {
                let outgoing = Message {
                    topic: Arc::clone(&message.topic),
                    payload: message.payload.clone(),
                    qos: min_qos(message.qos, options.qos),
                    retain: options.retain_as_published && message.retain,
                };
                session.offer(outgoing, &self.counters);
            }
        }

        state.internal.retain(|route| !route.sender.is_closed());
        state
            .internal
            .iter()
            .filter(|route| {
                route
                    .filters
                    .iter()
                    .any(|filter| filter_matches(filter, &message.topic))
            })
            .map(|route| route.sender.clone())
            .collect()
    }

    /// Adds the subscriptions of a SUBSCRIBE to `session`.
    pub fn subscribe(&self, session: &Session, requests: &[SubscribeRequest]) -> Subscribed {
        let mut state = self.lock();
        let mut inner = session.lock();
        let mut subscribed = Subscribed {
            results: Vec::with_capacity(requests.len()),
            retained: Vec::new(),
        };
        for request in requests {
            if is_shared_subscription(&request.filter) {
                subscribed.results.push(SubscribeResult::SharedNotSupported);
                continue;
            }
            if !is_valid_filter(&request.filter) {
                subscribed.results.push(SubscribeResult::InvalidFilter);
                continue;
            }
            let options = SubscriptionOptions {
                qos: min_qos(request.qos, MAX_DELIVERY_QOS),
                no_local: request.no_local,
                retain_as_published: request.retain_as_published,
            };
            let existed = state
                .table
                .insert(&request.filter, &session.client_id, options);
            inner.subscriptions.insert(request.filter.clone(), options);
            subscribed
                .results
                .push(SubscribeResult::Granted(options.qos));

            let send_retained = match request.retain_handling {
                RetainHandling::SendAlways => true,
                RetainHandling::SendIfNewSubscription => !existed,
                RetainHandling::Never => false,
            };
            if send_retained {
                subscribed
                    .retained
                    .extend(state.retained_matching(&request.filter, options.qos));
            }
        }
        subscribed
    }

    /// Removes subscriptions of `session`. Returns, per filter, whether it existed.
    pub fn unsubscribe(&self, session: &Session, filters: &[String]) -> Vec<bool> {
        let mut state = self.lock();
        let mut inner = session.lock();
        filters
            .iter()
            .map(|filter| {
                inner.subscriptions.remove(filter);
                state.table.remove(filter, &session.client_id)
            })
            .collect()
    }

    pub fn add_internal(&self, filters: Vec<String>, sender: mpsc::Sender<InboundMessage>) {
        self.lock().internal.push(InternalRoute { filters, sender });
    }

    /// Returns the number of sessions and of retained messages.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.sessions.len() as u64, state.retained.len() as u64)
    }
}

impl RouterState {
    /// Removes `session` and its subscriptions, if it is the session stored for its client.
    fn remove_session(&mut self, session: &Arc<Session>) {
        let is_current = self
            .sessions
            .get(&session.client_id)
            .is_some_and(|stored| Arc::ptr_eq(stored, session));
        if !is_current {
            return;
        }
        self.sessions.remove(&session.client_id);
        let filters: Vec<String> = session
            .lock()
            .subscriptions
            .drain()
            .map(|(filter, _)| filter)
            .collect();
        for filter in filters {
            self.table.remove(&filter, &session.client_id);
        }
    }

    /// Stores a retained message, or deletes the one of its topic when the payload is empty.
    fn store_retained(&mut self, message: &Message) {
        if message.payload.is_empty() {
            self.retained.remove(&message.topic);
            return;
        }
        let stored = Message {
            qos: min_qos(message.qos, MAX_DELIVERY_QOS),
            retain: true,
            ..message.clone()
        };
        self.retained.insert(Arc::clone(&message.topic), stored);
    }

    fn retained_matching(&self, filter: &str, granted: QoS) -> Vec<Message> {
        self.retained
            .values()
            .filter(|message| filter_matches(filter, &message.topic))
            .map(|message| Message {
                qos: min_qos(message.qos, granted),
                ..message.clone()
            })
            .collect()
    }
}
