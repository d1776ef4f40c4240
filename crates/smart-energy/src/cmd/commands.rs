//! The server's side of device commands: validation with the agent's own
//! protocol types, and publication on `smart-energy/v1/<device>/cmd` through
//! the embedded broker or an external one. Commands are never retained, so a
//! device never acts on a stale command when it reconnects.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;

use se_agent::protocol::{command_topic, parse_command};
use se_broker::BrokerHandle;
use se_core::DeviceId;
use se_ingest::ExternalSourceConfig;
use se_web::{CommandPublisher, PreparedCommand};

/// Destination of published commands.
enum Route {
    Embedded(BrokerHandle),
    /// A client of its own, because one rumqttc client that both consumes and
    /// publishes under heavy load can stall.
    External(AsyncClient),
}

/// Publishes device commands for the web layer.
pub struct MqttCommandPublisher {
    route: Route,
}

impl MqttCommandPublisher {
    pub fn embedded(broker: BrokerHandle) -> Arc<Self> {
        Arc::new(Self { route: Route::Embedded(broker) })
    }

    /// Connects a publishing client to the external broker; its event loop
    /// runs in a background task and reconnects by itself.
    pub fn external(config: &ExternalSourceConfig, client_id: String) -> Arc<Self> {
        let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
        options.set_keep_alive(Duration::from_secs(30));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            options.set_credentials(user.clone(), password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        tokio::spawn(async move {
            let mut outage_logged = false;
            loop {
                match eventloop.poll().await {
                    Ok(_) => outage_logged = false,
                    Err(error) => {
                        if !outage_logged {
                            tracing::warn!(%error, "the command publisher lost the external broker; reconnecting");
                            outage_logged = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Arc::new(Self { route: Route::External(client) })
    }
}

impl CommandPublisher for MqttCommandPublisher {
    fn prepare(&self, id: &str, request: &Value) -> Result<PreparedCommand, String> {
        let Value::Object(fields) = request else {
            return Err("the command must be a JSON object such as {\"action\": \"set_power_limit\", \"gpu\": 0, \"watts\": 220}".to_owned());
        };
        // The server chooses the id, so that it is unique in the audit trail.
        let mut fields = fields.clone();
        fields.insert("id".to_owned(), Value::String(id.to_owned()));
        let encoded = Value::Object(fields).to_string();
        let message = parse_command(encoded.as_bytes()).map_err(|rejected| rejected.error.to_string())?;
        let payload = serde_json::to_string(&message).map_err(|error| format!("failed to encode the command: {error}"))?;
        Ok(PreparedCommand { action: message.command.action().to_owned(), payload })
    }

    fn publish<'a>(&'a self, device: &'a DeviceId, payload: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let topic = command_topic(device.as_str());
            match &self.route {
                Route::Embedded(broker) => broker
                    .publish(&topic, payload.to_owned(), QoS::AtLeastOnce, false)
                    .await
                    .map_err(|error| error.to_string()),
                Route::External(client) => client
                    .publish(topic, QoS::AtLeastOnce, false, payload.to_owned())
                    .await
                    .map_err(|error| error.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> MqttCommandPublisher {
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("test", "127.0.0.1", 1), 10);
        MqttCommandPublisher { route: Route::External(client) }
    }

    #[test]
    fn prepare_sets_server_id() {
        let request = serde_json::json!({"id": "mine", "action": "set_power_limit", "gpu": 2, "watts": 220});
        let prepared = publisher().prepare("cmd-1", &request).unwrap();
        let payload: Value = serde_json::from_str(&prepared.payload).unwrap();
        assert_eq!(prepared.action, "set_power_limit");
        assert_eq!(payload["id"], "cmd-1");
        assert_eq!(payload["gpu"], 2);
    }

    #[test]
    fn prepare_rejects_unknown_action() {
        let error = publisher().prepare("cmd-2", &serde_json::json!({"action": "overclock"})).unwrap_err();
        assert!(error.contains("overclock"), "{error}");
        assert!(error.contains("set_power_limit"), "{error}");
    }

    #[test]
    fn prepare_rejects_non_object() {
        let error = publisher().prepare("cmd-3", &serde_json::json!([1, 2])).unwrap_err();
        assert!(error.contains("JSON object"), "{error}");
    }
}
