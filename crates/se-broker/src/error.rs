use std::net::SocketAddr;

/// Errors returned by the broker API.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Another process (often another MQTT broker) already listens on the address.
    #[error(
        "failed to listen on {addr}: the address is already in use, often by another MQTT broker. \
         Stop the other program or choose another address, such as --mqtt-listen {suggestion}"
    )]
    AddrInUse {
        /// Address that could not be bound.
        addr: SocketAddr,
        /// Same host with a port that was free when the error was made, offered as an example.
        suggestion: SocketAddr,
    },

    /// The listener could not be bound for another reason (permission, unknown address).
    #[error("failed to bind the MQTT listener on {addr}: {source}; check the address given with --mqtt-listen")]
    Bind {
        /// Address that could not be bound.
        addr: SocketAddr,
        /// Error returned by the operating system.
        source: std::io::Error,
    },

    /// A configuration value is out of range.
    #[error("invalid MQTT broker setting {setting} = {value}: {reason}")]
    InvalidConfig {
        /// Name of the setting.
        setting: &'static str,
        /// Value as configured.
        value: String,
        /// Rule that the value breaks.
        reason: &'static str,
    },

    /// A topic filter given to [`crate::Broker::internal_subscriber`] is invalid.
    #[error(
        "invalid MQTT topic filter {filter:?}: use '/' between levels, '+' only as a whole level \
         and '#' only as the whole last level"
    )]
    InvalidFilter {
        /// Filter as given.
        filter: String,
    },

    /// A topic given to [`crate::Broker::publish`] is invalid.
    #[error("invalid MQTT topic name {topic:?}: a topic to publish must be non-empty and contain no '+' or '#'")]
    InvalidTopic {
        /// Topic as given.
        topic: String,
    },
}
