//! Shared helpers: an embedded broker on loopback, a collecting subscriber and
//! an agent with fake GPUs and short timings.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use se_agent::sources::fake::{FakeGpus, FakeGpusHandle};
use se_agent::sources::PowerLimits;
use se_agent::{Agent, AgentConfig, AgentSources, AgentStatus, GpuMode};
use se_broker::{Broker, BrokerConfig, BrokerHandle};
use se_core::DeviceId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Power limit range of every fake card: 100 to 300 W, 250 W by default.
pub const CARD: PowerLimits = PowerLimits { current_w: 250.0, min_w: 100.0, max_w: 300.0, default_w: 250.0 };

/// An embedded broker running in a task.
pub struct RunningBroker {
    pub handle: BrokerHandle,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningBroker {
    /// Binds `addr` (retrying while the port is still held by a previous broker) and runs.
    pub async fn start(addr: SocketAddr) -> RunningBroker {
        let mut attempts = 0;
        let broker = loop {
            match Broker::bind(BrokerConfig::new(addr)).await {
                Ok(broker) => break broker,
                Err(error) if attempts < 50 => {
                    attempts += 1;
                    eprintln!("bind {addr} failed ({error}); retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("cannot bind the test broker on {addr}: {error}"),
            }
        };
        let handle = broker.handle();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(broker.run(shutdown.clone()));
        RunningBroker { handle, shutdown, task }
    }

    /// Stops the broker and waits until its connections are closed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Messages collected by [`collect`]: topic, payload and retain flag.
pub type Collected = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;

/// Subscribes in-process to `filter` and records every message, acknowledging
/// each after recording it (so the publisher's PUBACK means "recorded").
pub fn collect(broker: &BrokerHandle, filter: &str, into: Collected) {
    let mut subscription = broker.internal_subscriber(&[filter], 10_000).expect("internal subscription");
    tokio::spawn(async move {
        while let Some(mut message) = subscription.recv().await {
            into.lock().unwrap().push((message.topic.clone(), message.payload.to_vec(), message.retain));
            message.acknowledge();
        }
    });
}

/// Sequence numbers of the collected telemetry messages, in arrival order.
pub fn telemetry_seqs(collected: &Collected) -> Vec<u64> {
    collected
        .lock()
        .unwrap()
        .iter()
        .filter(|(topic, _, _)| topic.ends_with("/telemetry"))
        .map(|(_, payload, _)| {
            let json: serde_json::Value = serde_json::from_slice(payload).expect("telemetry is JSON");
            json["seq"].as_u64().expect("telemetry has a seq")
        })
        .collect()
}

/// Payloads collected on `topic`.
pub fn payloads_on(collected: &Collected, topic: &str) -> Vec<Vec<u8>> {
    collected.lock().unwrap().iter().filter(|(t, _, _)| t == topic).map(|(_, payload, _)| payload.clone()).collect()
}

/// Returns a configuration with a 100 ms interval and fast reconnection, without NVML or RAPL.
pub fn config(device: &str, port: u16, buffer_dir: &Path) -> AgentConfig {
    let mut config = AgentConfig::new(DeviceId::parse(device).unwrap(), "127.0.0.1", port, buffer_dir);
    config.interval = Duration::from_millis(100);
    config.mqtt.reconnect_min = Duration::from_millis(50);
    config.mqtt.reconnect_max = Duration::from_millis(300);
    config.mqtt.keep_alive = Duration::from_secs(5);
    config.gpu = GpuMode::Off;
    config.rapl = None;
    config
}

/// A started agent.
pub struct RunningAgent {
    pub status: Arc<AgentStatus>,
    pub gpus: FakeGpusHandle,
    shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), se_agent::AgentError>>,
}

impl RunningAgent {
    /// Starts an agent with `gpus` fake cards of range [`CARD`].
    pub fn start(config: AgentConfig, gpus: u32) -> RunningAgent {
        let (fake, handle) = FakeGpus::new(gpus, CARD);
        let sources = AgentSources { gpus: Some(Box::new(fake)), ..AgentSources::default() };
        let agent = Agent::new(config, sources).expect("open the agent buffer");
        let status = agent.status();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(agent.run(shutdown.clone()));
        RunningAgent { status, gpus: handle, shutdown, task }
    }

    /// Stops the agent cleanly and returns its result.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("agent stops within 10 s");
        result.expect("agent task").expect("agent ran without error");
    }
}

/// Polls `check` every 20 ms until it is true, or panics after `limit`.
pub async fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns a loopback address on a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], se_testkit::free_port()))
}
