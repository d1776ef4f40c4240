//! Commands and acknowledgements over a real broker on loopback, with fake GPUs.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{collect, config, free_addr, payloads_on, wait_for, Collected, RunningAgent, RunningBroker};
use se_agent::protocol::{Ack, AckCode};
use se_broker::QoS;

const DEVICE: &str = "rig-cmd";
const CMD_TOPIC: &str = "smart-energy/v1/rig-cmd/cmd";
const ACK_TOPIC: &str = "smart-energy/v1/rig-cmd/ack";
const STATUS_TOPIC: &str = "smart-energy/v1/rig-cmd/status";

struct Setup {
    broker: RunningBroker,
    agent: RunningAgent,
    received: Collected,
    _scratch: tempfile::TempDir,
}

/// Starts a broker and an agent with 4 fake cards, and waits until the agent
/// is subscribed (it announces `online` after subscribing).
async fn setup(before_agent: impl AsyncFnOnce(&RunningBroker)) -> Setup {
    let addr = free_addr();
    let scratch = tempfile::tempdir().unwrap();
    let received: Collected = Arc::new(Mutex::new(Vec::new()));
    let broker = RunningBroker::start(addr).await;
    collect(&broker.handle, "smart-energy/v1/+/ack", received.clone());
    collect(&broker.handle, "smart-energy/v1/+/status", received.clone());
    before_agent(&broker).await;
    let agent = RunningAgent::start(config(DEVICE, addr.port(), &scratch.path().join("buffer")), 4);
    wait_for(Duration::from_secs(10), "the agent to come online", || !payloads_on(&received, STATUS_TOPIC).is_empty()).await;
    Setup { broker, agent, received, _scratch: scratch }
}

impl Setup {
    async fn send(&self, command: serde_json::Value) {
        self.broker.handle.publish(CMD_TOPIC, command.to_string(), QoS::AtLeastOnce, false).await.expect("publish a command");
    }

    fn acks(&self) -> Vec<Ack> {
        payloads_on(&self.received, ACK_TOPIC)
            .iter()
            .map(|payload| serde_json::from_slice(payload).expect("an ack is valid JSON"))
            .collect()
    }

    async fn ack_for(&self, id: &str) -> Ack {
        wait_for(Duration::from_secs(10), &format!("the ack of {id}"), || self.acks().iter().any(|ack| ack.id.as_deref() == Some(id))).await;
        self.acks().into_iter().find(|ack| ack.id.as_deref() == Some(id)).unwrap()
    }

    async fn stop(self) {
        self.agent.stop().await;
        self.broker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn power_limit_round_trip() {
    let setup = setup(async |_| {}).await;
    setup.send(serde_json::json!({"id": "c1", "action": "set_power_limit", "gpu": 3, "watts": 220})).await;
    let ack = setup.ack_for("c1").await;
    let limit = setup.agent.gpus.current_limit(3);
    setup.stop().await;

    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.code, AckCode::Done);
    assert_eq!(ack.applied_watts, Some(220.0));
    assert!(!ack.clamped);
    assert_eq!(limit, Some(220.0));
    assert!(ack.message_fr.contains("220 W"), "{}", ack.message_fr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_limit_request_is_clamped() {
    let setup = setup(async |_| {}).await;
    setup.send(serde_json::json!({"id": "c2", "action": "set_power_limit", "gpu": 0, "watts": 400})).await;
    let ack = setup.ack_for("c2").await;
    let limit = setup.agent.gpus.current_limit(0);
    setup.stop().await;

    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.applied_watts, Some(300.0));
    assert!(ack.clamped);
    assert_eq!(limit, Some(300.0));
    assert!(ack.message.contains("100 W to 300 W"), "{}", ack.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_gpu_is_rejected() {
    let setup = setup(async |_| {}).await;
    setup.send(serde_json::json!({"id": "c3", "action": "set_power_limit", "gpu": 9, "watts": 200})).await;
    let ack = setup.ack_for("c3").await;
    let calls = setup.agent.gpus.set_calls();
    setup.stop().await;

    assert!(!ack.ok);
    assert_eq!(ack.code, AckCode::UnknownGpu);
    assert_eq!(ack.message, "no GPU with index 9: valid indexes are 0 to 3");
    assert_eq!(ack.message_fr, "aucun GPU d'indice 9 : les indices valides vont de 0 à 3");
    assert_eq!(ack.applied_watts, None);
    assert_eq!(calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_command_gets_error_ack() {
    let setup = setup(async |_| {}).await;
    setup.send(serde_json::json!({"id": "c4", "action": "reboot"})).await;
    let ack = setup.ack_for("c4").await;
    setup.stop().await;

    assert!(!ack.ok);
    assert_eq!(ack.code, AckCode::InvalidCommand);
    assert!(ack.message.contains("set_power_limit"), "{}", ack.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retained_command_is_ignored() {
    let retained = serde_json::json!({"id": "stale", "action": "set_power_limit", "gpu": 1, "watts": 120});
    let setup = setup(async |broker: &RunningBroker| {
        broker.handle.publish(CMD_TOPIC, retained.to_string(), QoS::AtLeastOnce, true).await.expect("publish a retained command");
    })
    .await;
    // A live command after the retained one: once its ack is there, the
    // retained command has been seen and handled.
    setup.send(serde_json::json!({"id": "live", "action": "set_power_limit", "gpu": 2, "watts": 200})).await;
    let live = setup.ack_for("live").await;
    let acks = setup.acks();
    let stale_limit = setup.agent.gpus.current_limit(1);
    setup.stop().await;

    assert!(live.ok, "{live:?}");
    assert_eq!(stale_limit, Some(250.0), "the retained command changed the power limit");
    assert!(acks.iter().all(|ack| ack.id.as_deref() != Some("stale")), "the retained command got an ack: {acks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_are_not_retained() {
    let setup = setup(async |_| {}).await;
    setup.send(serde_json::json!({"id": "c5", "action": "restore_default_limits"})).await;
    let ack = setup.ack_for("c5").await;
    let retain_flags: Vec<bool> = setup.received.lock().unwrap().iter().filter(|(topic, _, _)| topic == ACK_TOPIC).map(|(_, _, retain)| *retain).collect();
    setup.stop().await;

    assert!(ack.ok, "{ack:?}");
    assert_eq!(retain_flags, vec![false]);
}
