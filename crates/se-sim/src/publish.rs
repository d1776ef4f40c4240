use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use se_core::now_ms;

use crate::{Fleet, FleetConfig};

#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub interval: Duration,
    pub fleet: FleetConfig,
    pub seed: u64,
    /// Number of intervals to publish; `None` runs until cancelled.
    pub steps: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("the broker at {host}:{port} could not be reached: {reason}. Start a broker there or pass --broker mqtt://HOST:PORT")]
    Unreachable { host: String, port: u16, reason: String },
}

/// Publishes the fleet every `interval` until `steps` are done or `shutdown`
/// is cancelled. Rig telemetry goes out at QoS 1, the prototype's topics at
/// QoS 0 as its firmware does. Rigs announce `online`/`offline` on their
/// retained status topic.
pub async fn run_simulator(config: SimulatorConfig, shutdown: CancellationToken) -> Result<u64, SimulatorError> {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);

    // Wait for the first CONNACK so that a wrong address fails clearly.
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return Err(SimulatorError::Unreachable { host: config.host, port: config.port, reason }),
        Err(_) => {
            let reason = "no CONNACK within 10 s".to_owned();
            return Err(SimulatorError::Unreachable { host: config.host, port: config.port, reason });
        }
    }

    let poller_stop = CancellationToken::new();
    let poller = tokio::spawn(poll_events(eventloop, poller_stop.clone()));

    let mut fleet = Fleet::new(config.fleet.clone(), config.seed);
    set_status(&client, &fleet, "online").await;
    tracing::info!(rigs = config.fleet.rigs, gpus_per_rig = config.fleet.gpus_per_rig, interval_ms = config.interval.as_millis() as u64, "simulator publishing");

    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        for message in fleet.step(now_ms(), config.interval.as_secs_f64()) {
            let qos = if message.topic.starts_with("Smart_Energie/") { QoS::AtMostOnce } else { QoS::AtLeastOnce };
            if client.publish(message.topic, qos, false, message.payload).await.is_err() {
                break;
            }
        }
        published += 1;
        if config.steps.is_some_and(|steps| published >= steps) {
            break;
        }
    }

    set_status(&client, &fleet, "offline").await;
    let _ = client.disconnect().await;
    // Give the event loop time to flush what is queued, then stop it.
    let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
    poller_stop.cancel();
    Ok(published)
}

async fn set_status(client: &AsyncClient, fleet: &Fleet, status: &str) {
    for rig in fleet.rig_ids() {
        let topic = format!("smart-energy/v1/{rig}/status");
        let _ = client.publish(topic, QoS::AtLeastOnce, true, status.to_owned()).await;
    }
}

async fn poll_events(mut eventloop: rumqttc::EventLoop, stop: CancellationToken) {
    let mut outage_logged = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            event = eventloop.poll() => match event {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => outage_logged = false,
                Err(error) => {
                    if !outage_logged {
                        tracing::warn!(%error, "simulator lost the broker; reconnecting");
                        outage_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
