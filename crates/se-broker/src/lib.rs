//! Embedded MQTT broker of Smart Energy.
//!
//! Devices publish readings over MQTT 3.1.1 or MQTT 5 to this broker, which runs inside the
//! `smart-energy` process. Ingestion consumes the messages in-process through an
//! [`InternalSubscription`] instead of a second MQTT connection.
//!
//! # Acknowledgement gating
//!
//! A QoS 1 PUBLISH is acknowledged to its publisher only once it is stored:
//!
//! 1. The broker hands the message to every matching internal subscriber, each copy with an
//!    [`AckHandle`]. When a subscriber's buffer is full, the publisher's connection waits and
//!    stops reading, so TCP flow control slows the publisher down; nothing is dropped.
//! 2. The connection queues a pending PUBACK in a FIFO. Its writer sends the PUBACKs strictly
//!    in that order, each only after every handle of that message was acknowledged with
//!    [`AckHandle::ack`]. PUBACKs to one client thus follow the order of its PUBLISH packets
//!    (MQTT 3.1.1 section 4.6), even when subscribers acknowledge out of order.
//! 3. If a handle is dropped without `ack`, the message counts as not stored. The broker then
//!    sends no PUBACK for it or for any later message on that connection. It closes the
//!    connection instead, so the client sends the unacknowledged messages again after it
//!    reconnects.
//! 4. At shutdown, the broker stops reading, waits up to [`BrokerConfig::shutdown_grace`] for
//!    pending acknowledgements, sends the PUBACKs that settled, then closes the connections.
//!    A message whose PUBACK was not sent is resent by the client later.
//!
//! So a PUBACK that a client receives always means that every durable consumer stored the
//! message. Keep the internal subscription alive, and acknowledging, until
//! [`Broker::run`] has returned. A message that matches no internal subscriber is
//! acknowledged at once, as in any MQTT broker. QoS 0 messages carry no handle.
//!
//! # Protocol support
//!
//! - MQTT 3.1.1 and MQTT 5 over TCP, chosen per connection from the CONNECT packet. MQTT 3.1
//!   (protocol level 3) is rejected with CONNACK return code 1 (unacceptable protocol version).
//! - QoS 0 and 1 in both directions. An incoming QoS 2 PUBLISH is accepted with the full
//!   PUBREC, PUBREL, PUBCOMP exchange (the PUBREC is gated like a PUBACK, and a resend after
//!   the PUBREC is not routed again). Outgoing delivery is at most QoS 1: a QoS 2
//!   subscription is granted QoS 1, with a warning in the log.
//! - Persistent sessions (MQTT 3.1.1 clean session off; MQTT 5 Session Expiry Interval),
//!   kept in memory only, with a bounded queue per session
//!   ([`BrokerConfig::session_queue_capacity`]). A full queue drops its oldest message,
//!   counts it in [`BrokerStats::session_queue_dropped`] and logs a rate-limited warning.
//! - Retained messages (in memory), Last Will, keep alive (1.5 times the client's value),
//!   configurable maximum packet size, user name and password authentication.
//! - Not supported: TLS, WebSocket, shared subscriptions, topic aliases, MQTT 5 enhanced
//!   authentication, subscription identifiers, message expiry, will delay.
//!
//! # Example
//!
//! ```no_run
//! use se_broker::{Broker, BrokerConfig, QoS};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example() -> Result<(), se_broker::BrokerError> {
//! let config = BrokerConfig::new("127.0.0.1:1884".parse().unwrap());
//! let broker = Broker::bind(config).await?;
//! let mut readings = broker.internal_subscriber(&["devices/+/telemetry"], 1024)?;
//! let handle = broker.handle();
//!
//! let shutdown = CancellationToken::new();
//! let server = tokio::spawn(broker.run(shutdown.clone()));
//!
//! tokio::spawn(async move {
//!     while let Some(mut message) = readings.recv().await {
//!         // Store message.payload durably first, then acknowledge it.
//!         message.acknowledge();
//!     }
//! });
//!
//! handle.publish("devices/rig-01/commands", "reboot", QoS::AtLeastOnce, false).await?;
//! shutdown.cancel();
//! let _ = server.await;
//! # Ok(())
//! # }
//! ```

mod broker;
mod config;
mod connection;
mod error;
mod internal;
mod message;
mod protocol;
mod rate_limit;
mod router;
mod session;
mod stats;
pub use se_core::topic;

pub use broker::{Broker, BrokerHandle};
pub use config::{Auth, AuthCallback, AuthDecision, BrokerConfig, Credentials};
pub use error::BrokerError;
pub use internal::{AckHandle, InboundMessage, InternalSubscription};
pub use rumqttc::QoS;
pub use stats::BrokerStats;
