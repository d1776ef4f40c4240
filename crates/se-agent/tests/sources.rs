//! GPU and miner sources: NVML on this machine, the T-Rex API against a local HTTP server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::{collect, config, free_addr, wait_for, Collected, RunningBroker};
use se_agent::sources::miner::MinerApi;
use se_agent::sources::nvml::NvmlGpus;
use se_agent::sources::GpuSource;
use se_agent::{AgentError, AgentSources, GpuMode};

/// A T-Rex `/summary` response for two GPUs on PCI buses 2 and 1.
const SUMMARY: &str = r#"{
    "algorithm": "ethash",
    "hashrate": 61000000,
    "gpus": [
        {"device_id": 0, "gpu_id": 0, "pci_bus": 2, "hashrate": 31000000, "power": 120, "temperature": 60},
        {"device_id": 1, "gpu_id": 1, "pci_bus": 1, "hashrate": 30000000, "power": 118, "temperature": 58}
    ]
}"#;

/// Serves `SUMMARY` on `/summary` and a 500 error on `/broken`, on a free loopback port.
async fn miner_server() -> String {
    let app = Router::new()
        .route("/summary", get(|| async { ([("content-type", "application/json")], SUMMARY) }))
        .route("/broken", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "miner crashed") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[test]
fn nvml_reports_missing_driver() {
    match NvmlGpus::init() {
        Err(error @ AgentError::NvmlUnavailable { .. }) => {
            let message = error.to_string();
            assert!(message.starts_with("NVML is not available ("), "{message}");
            assert!(message.contains("--simulate"), "{message}");
        }
        // A machine with an NVIDIA driver: the real path must then count the GPUs.
        Ok(mut gpus) => assert!(gpus.count().is_ok()),
        Err(other) => panic!("unexpected NVML error: {other}"),
    }
}

#[test]
fn missing_nvml_leaves_gpus_off() {
    if NvmlGpus::init().is_ok() {
        eprintln!("skipped: this machine has an NVIDIA driver");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut config = config("rig-nvml", 1883, scratch.path());
    config.gpu = GpuMode::Nvml;
    let sources = AgentSources::from_config(&config);
    assert!(sources.gpus.is_none());
}

#[tokio::test]
async fn trex_summary_is_fetched() {
    let base = miner_server().await;
    let api = MinerApi::new(&format!("{base}/summary"), Duration::from_secs(2)).unwrap();
    let gpus = api.fetch().await.unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0].pci_bus, Some(2));
    assert_eq!(gpus[0].hashrate_hs, 31_000_000.0);
}

#[tokio::test]
async fn trex_error_status_is_reported() {
    let base = miner_server().await;
    let api = MinerApi::new(&format!("{base}/broken"), Duration::from_secs(2)).unwrap();
    let error = api.fetch().await.unwrap_err();
    assert!(error.to_string().contains("500"), "{error}");
}

#[tokio::test]
async fn unreachable_miner_is_an_error() {
    let addr = free_addr();
    let api = MinerApi::new(&format!("http://{addr}/summary"), Duration::from_secs(2)).unwrap();
    assert!(api.fetch().await.is_err());
}

#[test]
fn https_miner_url_is_rejected() {
    let error = MinerApi::new("https://127.0.0.1:4067/summary", Duration::from_secs(1)).err().unwrap();
    assert!(error.to_string().contains("http://"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telemetry_carries_hashrate_per_gpu() {
    let base = miner_server().await;
    let addr = free_addr();
    let scratch = tempfile::tempdir().unwrap();
    let received: Collected = Arc::new(Mutex::new(Vec::new()));
    let broker = RunningBroker::start(addr).await;
    collect(&broker.handle, "smart-energy/v1/+/telemetry", received.clone());

    let mut config = config("rig-hash", addr.port(), &scratch.path().join("buffer"));
    config.miner.api = Some(format!("{base}/summary"));
    let mut sources = AgentSources::from_config(&config);
    let (fake, _handle) = se_agent::sources::fake::FakeGpus::new(2, common::CARD);
    sources.gpus = Some(Box::new(fake));
    let agent = se_agent::Agent::new(config, sources).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(agent.run(shutdown.clone()));
    wait_for(Duration::from_secs(10), "a telemetry message", || !received.lock().unwrap().is_empty()).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    broker.stop().await;

    let payload = received.lock().unwrap()[0].1.clone();
    let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let readings = json["readings"].as_array().unwrap();
    // The fake GPU i sits on PCI bus i + 1, so the miner's bus 2 is GPU 1.
    assert_eq!(readings[0]["channel"], "gpu0");
    assert_eq!(readings[0]["hashrate_mhs"], 30.0);
    assert_eq!(readings[1]["hashrate_mhs"], 31.0);
    assert_eq!(readings[0]["power_w"], 150.0);
}
