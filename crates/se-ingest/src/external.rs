use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use se_core::now_ms;

use crate::writer::IngestMessage;

/// Connection settings for an external broker such as Mosquitto or EMQX.
#[derive(Debug, Clone)]
pub struct ExternalSourceConfig {
    pub host: String,
    pub port: u16,
    /// Stable client id: with a persistent session, the broker queues QoS 1
    /// messages for this id while the server is down.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub topic_filters: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExternalSourceError {
    #[error("invalid MQTT URL {url:?}: {reason}. Use mqtt://HOST:PORT, such as mqtt://127.0.0.1:1883")]
    InvalidUrl { url: String, reason: String },
}

impl ExternalSourceConfig {
    /// Parses `mqtt://[user:password@]host[:port]`; the port defaults to 1883.
    pub fn from_url(url: &str, client_id: &str, topic_filters: Vec<String>) -> Result<Self, ExternalSourceError> {
        let invalid = |reason: &str| ExternalSourceError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
        let rest = url.strip_prefix("mqtt://").ok_or_else(|| invalid("the scheme must be mqtt://"))?;
        let rest = rest.trim_end_matches('/');
        let (credentials, host_port) = match rest.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, rest),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| invalid("the port must be a number from 1 to 65535"))?),
            None => (host_port, 1883),
        };
        if host.is_empty() {
            return Err(invalid("the host is missing"));
        }
        let (username, password) = match credentials.map(|c| c.split_once(':')) {
            Some(Some((user, password))) => (Some(user.to_owned()), Some(password.to_owned())),
            Some(None) => (credentials.map(str::to_owned), None),
            None => (None, None),
        };
        Ok(Self { host: host.to_owned(), port, client_id: client_id.to_owned(), username, password, topic_filters })
    }
}

/// Subscribes to an external broker with a persistent session and forwards
/// each message to ingestion. The PUBACK is sent only once ingestion has
/// stored the message (manual acknowledgements), so a crash of the server
/// makes the broker redeliver instead of losing the message.
///
/// Returns when `shutdown` is cancelled. Connection errors are retried with
/// a back-off, logged once per outage.
pub async fn run_external_source(config: ExternalSourceConfig, sink: mpsc::Sender<IngestMessage>, shutdown: CancellationToken, connected: impl Fn(bool) + Send) {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        options.set_credentials(user.clone(), password.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1_000);
    let mut outage_logged = false;
    // Until the first event the broker was never reached, so an error then is not a loss.
    let mut ever_connected = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = eventloop.poll() => match event {
                Ok(event) => {
                    outage_logged = false;
                    ever_connected = true;
                    handle_event(event, &client, &config, &sink, &connected).await;
                }
                Err(error) => {
                    connected(false);
                    if !outage_logged {
                        if ever_connected {
                            tracing::error!(host = %config.host, port = config.port, %error, "lost the external MQTT broker; retrying every second");
                        } else {
                            tracing::error!(host = %config.host, port = config.port, %error, "cannot reach the external MQTT broker; check --mqtt-url and that the broker runs; retrying every second");
                        }
                        outage_logged = true;
                    }
                    if is_refused(&error) {
                        tracing::error!(%error, "the external broker refused the connection; check the credentials in --mqtt-url");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
    let _ = client.disconnect().await;
    drain(&mut eventloop).await;
}

async fn handle_event(event: Event, client: &AsyncClient, config: &ExternalSourceConfig, sink: &mpsc::Sender<IngestMessage>, connected: &(impl Fn(bool) + Send)) {
    match event {
        Event::Incoming(Packet::ConnAck(connack)) => {
            tracing::info!(host = %config.host, port = config.port, session_present = connack.session_present, "connected to the external MQTT broker");
            for filter in &config.topic_filters {
                if let Err(error) = client.subscribe(filter.clone(), QoS::AtLeastOnce).await {
                    tracing::error!(%error, filter, "failed to subscribe");
                }
            }
        }
        // Ready once the broker confirmed the subscriptions, so nothing published after this is missed.
        Event::Incoming(Packet::SubAck(_)) => connected(true),
        Event::Incoming(Packet::Publish(publish)) => {
            let ack_client = client.clone();
            let ack_publish = publish.clone();
            let message = IngestMessage {
                topic: publish.topic.clone(),
                payload: Bytes::from(publish.payload.to_vec()),
                received_ms: now_ms(),
                ack: Some(Box::new(move || {
                    if let Err(error) = ack_client.try_ack(&ack_publish) {
                        tracing::warn!(%error, "failed to acknowledge a stored message; the broker may resend it (stored once)");
                    }
                })),
            };
            if sink.send(message).await.is_err() {
                tracing::warn!("ingestion stopped; a message from the external broker was not taken");
            }
        }
        _ => {}
    }
}

fn is_refused(error: &ConnectionError) -> bool {
    matches!(error, ConnectionError::ConnectionRefused(_))
}

/// Polls until the DISCONNECT is sent, bounded in time.
async fn drain(eventloop: &mut EventLoop) {
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok(event) = eventloop.poll().await {
            if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_port_and_credentials_parses() {
        let config = ExternalSourceConfig::from_url("mqtt://user:secret@127.0.0.1:1884", "id", vec![]).unwrap();
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 1884);
        assert_eq!(config.username.as_deref(), Some("user"));
        assert_eq!(config.password.as_deref(), Some("secret"));
    }

    #[test]
    fn url_without_port_defaults_to_1883() {
        let config = ExternalSourceConfig::from_url("mqtt://broker.local", "id", vec![]).unwrap();
        assert_eq!(config.port, 1883);
    }

    #[test]
    fn bad_urls_are_rejected() {
        for url in ["http://x:1", "mqtt://:1883", "mqtt://host:port"] {
            let error = ExternalSourceConfig::from_url(url, "id", vec![]).unwrap_err();
            assert!(error.to_string().contains("mqtt://HOST:PORT"), "{error}");
        }
    }
}
