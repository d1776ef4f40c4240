//! Listener, accept loop, shutdown and the public in-process API.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rumqttc::QoS;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::BrokerConfig;
use crate::connection;
use crate::internal::{deliver_internal, InternalSubscription};
use crate::message::Message;
use crate::rate_limit::RateLimiter;
use crate::router::Router;
use crate::stats::{BrokerStats, Counters};
use crate::topic::{is_valid_filter, is_valid_topic_name};
use crate::BrokerError;

/// Period of the sweep that removes expired offline sessions. A session may outlive its
/// MQTT 5 Session Expiry Interval by up to this time.
const SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Extra time after `shutdown_grace` before remaining connection tasks are aborted.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);
/// Pause after a failed accept (for example too many open files) before the next one.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Minimum time between two "authentication failed" warnings.
const AUTH_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// State shared by the accept loop, every connection task and every handle.
pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub router: Router,
    pub counters: Arc<Counters>,
    /// Cancelled when [`Broker::run`] starts its shutdown.
    pub shutdown: CancellationToken,
    next_connection_id: AtomicU64,
    next_client_number: AtomicU64,
    /// Prefix of assigned client identifiers, unique per broker start.
    client_id_prefix: String,
    auth_log: Mutex<RateLimiter>,
}

impl Shared {
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Returns a client identifier for a client that sent an empty one.
    pub fn generate_client_id(&self) -> String {
        let number = self.next_client_number.fetch_add(1, Ordering::Relaxed);
        format!("{}-{number}", self.client_id_prefix)
    }

    /// Returns `Some(rejections not logged since the last warning)` when an authentication
    /// rejection should be logged now.
    pub fn auth_rejection_log(&self) -> Option<u64> {
        self.auth_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(Instant::now())
    }
}

/// Embedded MQTT broker with a bound listener. Start serving with [`Broker::run`].
pub struct Broker {
    listener: TcpListener,
    handle: BrokerHandle,
}

/// Cloneable access to a broker's in-process API, usable while [`Broker::run`] runs.
#[derive(Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl Broker {
    /// Checks `config` and binds the TCP listener.
    ///
    /// # Errors
    /// [`BrokerError::AddrInUse`] when the address is taken, [`BrokerError::Bind`] for other
    /// bind failures, [`BrokerError::InvalidConfig`] for an out-of-range setting.
    pub async fn bind(config: BrokerConfig) -> Result<Broker, BrokerError> {
        config.validate()?;
        let addr = config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| bind_error(addr, source))?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| bind_error(addr, source))?;

        let counters = Arc::new(Counters::default());
        let shared = Shared {
            router: Router::new(Arc::clone(&counters), config.session_queue_capacity),
            config,
            counters,
            shutdown: CancellationToken::new(),
            next_connection_id: AtomicU64::new(1),
            next_client_number: AtomicU64::new(1),
            client_id_prefix: client_id_prefix(),
            auth_log: Mutex::new(RateLimiter::new(AUTH_WARN_INTERVAL)),
        };
        let handle = BrokerHandle {
            shared: Arc::new(shared),
            local_addr,
        };
        Ok(Broker { listener, handle })
    }

    /// Returns the bound address (with the real port when the configuration used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr
    }

    /// Returns a cloneable handle to the in-process API.
    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// See [`BrokerHandle::internal_subscriber`].
    pub fn internal_subscriber(
        &self,
        filters: &[&str],
        capacity: usize,
    ) -> Result<InternalSubscription, BrokerError> {
        self.handle.internal_subscriber(filters, capacity)
    }

    /// See [`BrokerHandle::publish`].
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), BrokerError> {
        self.handle.publish(topic, payload, qos, retain).await
    }

    /// See [`BrokerHandle::stats`].
    pub fn stats(&self) -> BrokerStats {
        self.handle.stats()
    }

    /// Accepts and serves connections until `shutdown` is cancelled. Then it stops accepting,
    /// lets each connection send the acknowledgements that internal subscribers settle within
    /// [`BrokerConfig::shutdown_grace`], closes all connections (MQTT 5 clients get DISCONNECT
    /// with reason 0x8B "server shutting down") and returns. Wills are not published at
    /// shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let Broker { listener, handle } = self;
        let shared = handle.shared;
        info!(addr = %handle.local_addr, "MQTT broker listening");

        let mut connections = JoinSet::new();
        let mut sweep = tokio::time::interval(SESSION_SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Err(error) = stream.set_nodelay(true) {
                            warn!(%peer, %error, "failed to set TCP_NODELAY; small packets may be delayed");
                        }
                        connections.spawn(connection::serve(stream, peer, Arc::clone(&shared)));
                    }
                    Err(error) => {
                        warn!(%error, "failed to accept an MQTT connection; retrying");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    }
                },
                _ = sweep.tick() => expire_sessions(&shared),
                Some(joined) = connections.join_next(), if !connections.is_empty() => log_task_end(joined),
            }
        }

        drop(listener);
        info!(connections = connections.len(), "MQTT broker shutting down");
        shared.shutdown.cancel();
        close_connections(
            &mut connections,
            shared.config.shutdown_grace + SHUTDOWN_MARGIN,
        )
        .await;
        info!("MQTT broker stopped");
    }
}

impl BrokerHandle {
    /// Returns the bound address of the broker.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Subscribes an in-process consumer to `filters`, with a buffer of `capacity` messages.
    ///
    /// The subscriber is durable: for every QoS 1 or QoS 2 PUBLISH it receives, the publisher
    /// gets its PUBACK (or PUBREC) only after [`crate::AckHandle::ack`] was called. When the
    /// buffer is full, the publishing connections wait (no message is dropped). Wildcards
    /// follow MQTT rules; `$`-topics need a filter that starts with `$`.
    ///
    /// # Errors
    /// [`BrokerError::InvalidFilter`] for an invalid filter, [`BrokerError::InvalidConfig`]
    /// when `capacity` is 0.
    pub fn internal_subscriber(
        &self,
        filters: &[&str],
        capacity: usize,
    ) -> Result<InternalSubscription, BrokerError> {
        if capacity == 0 {
            return Err(BrokerError::InvalidConfig {
                setting: "internal subscriber capacity",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        if let Some(invalid) = filters.iter().find(|filter| !is_valid_filter(filter)) {
            return Err(BrokerError::InvalidFilter {
                filter: (*invalid).to_owned(),
            });
        }
        let (sender, receiver) = mpsc::channel(capacity);
        let filters = filters.iter().map(|filter| (*filter).to_owned()).collect();
        self.shared.router.add_internal(filters, sender);
        Ok(InternalSubscription::new(receiver))
    }

    /// Publishes a message from inside the process, for example a command to a device.
    ///
    /// MQTT subscribers get it with at most the QoS of their subscription (and at most QoS 1).
    /// Internal subscribers get it with `client_id` empty and no [`crate::AckHandle`]. This
    /// waits while an internal subscriber's buffer is full.
    ///
    /// # Errors
    /// [`BrokerError::InvalidTopic`] when `topic` is empty or contains a wildcard.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), BrokerError> {
        if !is_valid_topic_name(topic) {
            return Err(BrokerError::InvalidTopic {
                topic: topic.to_owned(),
            });
        }
        let message = Message {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
        };
        let targets = self.shared.router.route(&message, None);
        deliver_internal(targets, &message, "", false, &self.shared.counters).await;
        Ok(())
    }

    /// Returns a snapshot of the broker counters.
    pub fn stats(&self) -> BrokerStats {
        let (sessions, retained) = self.shared.router.counts();
        self.shared.counters.snapshot(sessions, retained)
    }
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("local_addr", &self.handle.local_addr)
            .finish()
    }
}

impl fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

fn bind_error(addr: SocketAddr, source: io::Error) -> BrokerError {
    if source.kind() == io::ErrorKind::AddrInUse {
        BrokerError::AddrInUse {
            addr,
            suggestion: free_port_on(addr),
        }
    } else {
        BrokerError::Bind { addr, source }
    }
}

/// Returns a port on the same host that the system reported free a moment
/// ago, as an example for the error message. Falls back to the next port
/// when the system offers none.
fn free_port_on(addr: SocketAddr) -> SocketAddr {
    match std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).and_then(|probe| probe.local_addr()) {
        Ok(free) => free,
        Err(_) => SocketAddr::new(addr.ip(), addr.port().checked_add(1).unwrap_or(1884)),
    }
}

/// Returns a prefix for assigned client identifiers that differs between broker starts, so
/// that an assigned identifier never resumes a session from an earlier start.
fn client_id_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("se-auto-{:x}", nanos & 0xFFFF_FFFF_FFFF)
}

fn expire_sessions(shared: &Shared) {
    let expired = shared.router.expire_sessions(Instant::now());
    if expired > 0 {
        info!(expired, "removed expired MQTT sessions");
    }
}

fn log_task_end(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        if error.is_panic() {
            error!(%error, "MQTT connection task panicked; its client was disconnected");
        }
    }
}

/// Waits up to `limit` for the connection tasks to finish, then aborts the rest.
async fn close_connections(connections: &mut JoinSet<()>, limit: Duration) {
    let all_done = async {
        while let Some(joined) = connections.join_next().await {
            log_task_end(joined);
        }
    };
    if tokio::time::timeout(limit, all_done).await.is_err() {
        warn!(
            remaining = connections.len(),
            "MQTT connections did not close within the shutdown grace time; aborting them"
        );
        connections.shutdown().await;
    }
}
