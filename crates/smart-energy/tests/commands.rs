//! Device commands end to end: an authorised user sends a command through
//! the HTTP API, `serve` records and publishes it, a real `smart-energy agent`
//! with simulated GPUs carries it out, and its acknowledgement completes the
//! audit record.

use std::fs::File;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{json, Value};

use se_testkit::{eventually, ServeOptions, ServeProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_smart-energy");

/// Kills the agent when the test ends, even on failure.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(server: &ServeProcess, scratch: &std::path::Path, device: &str) -> AgentProcess {
    let log = File::create(scratch.join(format!("agent-{device}.log"))).unwrap();
    let child = Command::new(BINARY)
        .args(["agent", "--broker", &format!("mqtt://127.0.0.1:{}", server.mqtt_port), "--device", device])
        .args(["--interval", "200ms", "--simulate=2", "--buffer-dir"])
        .arg(scratch.join(format!("buffer-{device}")))
        .stderr(log)
        .spawn()
        .expect("start the agent");
    AgentProcess(child)
}

async fn commands_of(client: &reqwest::Client, http: &str, device: &str) -> Vec<Value> {
    let response = client.get(format!("{http}/api/v1/devices/{device}/commands")).send().await.unwrap();
    response.json::<Value>().await.unwrap().as_array().cloned().unwrap_or_default()
}

async fn wait_for_device(client: &reqwest::Client, http: &str, device: &str) {
    eventually(Duration::from_secs(30), "the agent's first readings", || async {
        let response = client.get(format!("{http}/api/v1/devices/{device}")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_limit_command_is_acknowledged_and_audited() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let _agent = start_agent(&server, scratch.path(), "rig-cmd");
    let client = server.admin_client().await;
    wait_for_device(&client, &server.http, "rig-cmd").await;

    let url = format!("{}/api/v1/devices/rig-cmd/commands", server.http);
    let response = client.post(&url).json(&json!({"action": "set_power_limit", "gpu": 1, "watts": 150})).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let sent: Value = response.json().await.unwrap();
    let id = sent["id"].as_str().expect("a command id").to_owned();
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["username"], "admin");
    assert_eq!(sent["action"], "set_power_limit");

    let done = eventually(Duration::from_secs(20), "the agent's acknowledgement", || async {
        let commands = commands_of(&client, &server.http, "rig-cmd").await;
        commands.into_iter().find(|c| c["id"] == id.as_str() && c["status"] != "sent")
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let ack: Value = serde_json::from_str(done["ack_json"].as_str().expect("ack JSON")).unwrap();
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["applied_watts"], 150.0);

    // The agent reports an unknown GPU as a failure, and the audit trail keeps it.
    let response = client.post(&url).json(&json!({"action": "set_power_limit", "gpu": 9, "watts": 150})).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let failed_id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let failed = eventually(Duration::from_secs(20), "the failure acknowledgement", || async {
        let commands = commands_of(&client, &server.http, "rig-cmd").await;
        commands.into_iter().find(|c| c["id"] == failed_id.as_str() && c["status"] != "sent")
    })
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["ack_json"].as_str().unwrap().contains("unknown_gpu"), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_command_is_rejected_unrecorded() {
    let scratch = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(BINARY, scratch.path(), ServeOptions::default());
    let _agent = start_agent(&server, scratch.path(), "rig-bad");
    let client = server.admin_client().await;
    wait_for_device(&client, &server.http, "rig-bad").await;

    let url = format!("{}/api/v1/devices/rig-bad/commands", server.http);
    let response = client.post(&url).header("Accept-Language", "fr").json(&json!({"action": "overclock"})).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_command");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Commande invalide"), "{message}");
    assert!(message.contains("overclock"), "{message}");
    assert!(commands_of(&client, &server.http, "rig-bad").await.is_empty());

    let unknown = client.post(format!("{}/api/v1/devices/rig-nowhere/commands", server.http)).json(&json!({"action": "stop_miner"})).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_need_control_of_the_site() {
    let scratch = tempfile::tempdir().unwrap();
    let options = ServeOptions { extra_args: vec!["--demo".into(), "--demo-rigs".into(), "1".into(), "--demo-gpus".into(), "1".into()], ..ServeOptions::default() };
    let server = ServeProcess::start(BINARY, scratch.path(), options);
    let admin = server.admin_client().await;
    wait_for_device(&admin, &server.http, "rig-01").await;

    let demo = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let login = demo.post(format!("{}/api/v1/auth/login", server.http)).json(&json!({"username": "demo", "password": "demo"})).send().await.unwrap();
    assert!(login.status().is_success());
    let url = format!("{}/api/v1/devices/rig-01/commands", server.http);
    // The demo owner owns the default site, where rig-01 is.
    let allowed = demo.get(&url).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    let too_many = demo.get(format!("{url}?limit=501")).send().await.unwrap();
    assert_eq!(too_many.status(), 400);
    let body: serde_json::Value = too_many.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_number", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("500"), "names the maximum: {body}");

    // Moved to a site the owner does not own, the rig is out of reach.
    let site = admin.put(format!("{}/api/v1/sites/plant-2", server.http)).json(&json!({"name": "Plant 2", "time_zone": "UTC", "currency": "EUR"})).send().await.unwrap();
    assert!(site.status().is_success(), "{}", site.text().await.unwrap());
    let moved = admin.put(format!("{}/api/v1/devices/rig-01/site", server.http)).json(&json!({"site": "plant-2"})).send().await.unwrap();
    assert!(moved.status().is_success());
    let denied = demo.post(&url).json(&json!({"action": "stop_miner"})).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    let body: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "device_forbidden", "{body}");
    let listed = demo.get(&url).send().await.unwrap();
    assert_eq!(listed.status(), 403);
    // An unknown device would belong to the default site, which this owner
    // owns, so it gets 404 as it would for an admin.
    let unknown = demo.get(format!("{}/api/v1/devices/rig-99/commands", server.http)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}
