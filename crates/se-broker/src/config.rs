use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::BrokerError;

/// Settings of an embedded broker. Build it with [`BrokerConfig::new`] and change fields as
/// needed; [`crate::Broker::bind`] checks the values.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// TCP address to listen on. Port 0 picks a free port (see [`crate::Broker::local_addr`]).
    pub listen: SocketAddr,
    /// Client authentication.
    pub auth: Auth,
    /// Maximum size in bytes of an incoming packet, counted without its 2 to 5 byte fixed
    /// header. A client that sends a larger packet is disconnected.
    pub max_packet_size: usize,
    /// Maximum number of messages queued per session (offline persistent sessions and slow
    /// online subscribers). When full, the oldest message is dropped and counted in
    /// [`crate::BrokerStats::session_queue_dropped`].
    pub session_queue_capacity: usize,
    /// Maximum number of QoS 1 messages sent to one client and not yet acknowledged by it.
    /// An MQTT 5 client's Receive Maximum lowers it.
    pub max_inflight: u16,
    /// Maximum number of QoS 1 and QoS 2 publishes from one client that wait for their
    /// acknowledgement. When reached, the broker stops reading from that client until
    /// acknowledgements go out. Sent to MQTT 5 clients as Receive Maximum.
    pub max_pending_acks: u16,
    /// Time a new TCP connection has to send its CONNECT packet.
    pub connect_timeout: Duration,
    /// Time one write to a client may take before the connection is closed.
    pub write_timeout: Duration,
    /// Time [`crate::Broker::run`] waits at shutdown for internal subscribers to acknowledge
    /// messages that are already delivered, so that their PUBACKs can still be sent.
    pub shutdown_grace: Duration,
}

impl BrokerConfig {
    /// Returns a configuration that listens on `listen` with anonymous access and the default
    /// limits.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            auth: Auth::Anonymous,
            max_packet_size: 1024 * 1024,
            session_queue_capacity: 100_000,
            max_inflight: 100,
            max_pending_acks: 1024,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), BrokerError> {
        let checks: [(&'static str, u64, bool, &'static str); 4] = [
            (
                "max_packet_size",
                self.max_packet_size as u64,
                self.max_packet_size >= 16,
                "must be at least 16 bytes",
            ),
            (
                "session_queue_capacity",
                self.session_queue_capacity as u64,
                self.session_queue_capacity > 0,
                "must be at least 1",
            ),
            (
                "max_inflight",
                u64::from(self.max_inflight),
                self.max_inflight > 0,
                "must be at least 1",
            ),
            (
                "max_pending_acks",
                u64::from(self.max_pending_acks),
                self.max_pending_acks > 0,
                "must be at least 1",
            ),
        ];
        for (setting, value, valid, reason) in checks {
            if !valid {
                return Err(BrokerError::InvalidConfig {
                    setting,
                    value: value.to_string(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

impl Default for BrokerConfig {
    /// Listens on 127.0.0.1:1883, the standard MQTT port on loopback.
    fn default() -> Self {
        Self::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1883)))
    }
}

/// Credentials sent in a CONNECT packet.
#[derive(Clone)]
pub struct Credentials {
    /// Client identifier, after the broker assigned one to an empty identifier.
    pub client_id: String,
    /// User name, if the client sent one.
    pub username: Option<String>,
    /// Password, if the client sent one.
    pub password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Outcome of an authentication check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// The client may connect.
    Allow,
    /// Wrong user name or password: CONNACK return code 4 (MQTT 3.1.1) or reason 0x86 (MQTT 5).
    BadCredentials,
    /// The client may not connect, for example because it sent no credentials: CONNACK return
    /// code 5 (MQTT 3.1.1) or reason 0x87 (MQTT 5).
    NotAuthorized,
}

/// Function that checks credentials. It runs on a blocking thread
/// (`tokio::task::spawn_blocking`), so it may verify a slow password hash.
pub type AuthCallback = Arc<dyn Fn(&Credentials) -> AuthDecision + Send + Sync>;

/// Client authentication method.
#[derive(Clone, Default)]
pub enum Auth {
    /// Every client may connect, with or without credentials.
    #[default]
    Anonymous,
    /// Clients must send a user name and password from this map (user name to password in
    /// plain text). A missing user name gives [`AuthDecision::NotAuthorized`], a wrong pair
    /// [`AuthDecision::BadCredentials`].
    Users(Arc<HashMap<String, String>>),
    /// A function decides, for example against hashed passwords in a database.
    Callback(AuthCallback),
}

impl Auth {
    /// Returns an [`Auth::Users`] built from `(user name, password)` pairs.
    pub fn users<U, P>(pairs: impl IntoIterator<Item = (U, P)>) -> Self
    where
        U: Into<String>,
        P: Into<String>,
    {
        let map = pairs
            .into_iter()
            .map(|(user, password)| (user.into(), password.into()))
            .collect();
        Self::Users(Arc::new(map))
    }

    /// Checks `credentials`. Callbacks run on a blocking thread; a callback that panics
    /// rejects the client as not authorized.
    pub(crate) async fn check(&self, credentials: Credentials) -> AuthDecision {
        match self {
            Self::Anonymous => AuthDecision::Allow,
            Self::Users(users) => check_users(users, &credentials),
            Self::Callback(callback) => {
                let callback = Arc::clone(callback);
                tokio::task::spawn_blocking(move || callback(&credentials))
                    .await
                    .unwrap_or(AuthDecision::NotAuthorized)
            }
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Users(users) => write!(f, "Users({} users)", users.len()),
            Self::Callback(_) => f.write_str("Callback"),
        }
    }
}

fn check_users(users: &HashMap<String, String>, credentials: &Credentials) -> AuthDecision {
    let Some(username) = credentials.username.as_deref() else {
        return AuthDecision::NotAuthorized;
    };
    let password = credentials.password.as_deref().unwrap_or("");
    match users.get(username) {
        Some(expected) if constant_time_eq(expected.as_bytes(), password.as_bytes()) => {
            AuthDecision::Allow
        }
        _ => AuthDecision::BadCredentials,
    }
}

/// Compares two byte strings in a time that depends only on their lengths, so that response
/// times do not reveal how many leading bytes of a password were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(username: Option<&str>, password: Option<&str>) -> Credentials {
        Credentials {
            client_id: "meter-1".into(),
            username: username.map(Into::into),
            password: password.map(Into::into),
        }
    }

    #[test]
    fn user_map_checks_password() {
        let users: HashMap<String, String> = [("meter".to_string(), "secret".to_string())].into();
        assert_eq!(
            check_users(&users, &credentials(Some("meter"), Some("secret"))),
            AuthDecision::Allow
        );
        assert_eq!(
            check_users(&users, &credentials(Some("meter"), Some("wrong"))),
            AuthDecision::BadCredentials
        );
        assert_eq!(
            check_users(&users, &credentials(Some("other"), Some("secret"))),
            AuthDecision::BadCredentials
        );
        assert_eq!(
            check_users(&users, &credentials(None, None)),
            AuthDecision::NotAuthorized
        );
    }

    #[test]
    fn zero_queue_capacity_is_rejected() {
        let config = BrokerConfig {
            session_queue_capacity: 0,
            ..BrokerConfig::default()
        };
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("session_queue_capacity"), "{error}");
    }

    #[test]
    fn credentials_debug_hides_password() {
        let text = format!("{:?}", credentials(Some("meter"), Some("secret")));
        assert!(!text.contains("secret"), "{text}");
    }
}
