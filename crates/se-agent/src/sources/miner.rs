//! Per-GPU hashrate from the HTTP API of the T-Rex miner.
//!
//! T-Rex serves `GET http://127.0.0.1:4067/summary` by default (its
//! `--api-bind-http` option moves it). The agent reads these fields of the
//! JSON response and ignores the rest:
//!
//! | field | meaning |
//! |---|---|
//! | `gpus[].hashrate` | hashrate of the GPU in H/s |
//! | `gpus[].pci_bus` | PCI bus number of the GPU |
//! | `gpus[].gpu_id` | CUDA index of the GPU |
//!
//! A miner GPU is matched to the NVML GPU with the same PCI bus number, and
//! to NVML index `gpu_id` when no bus number matches. The hashrate is
//! published as `hashrate_mhs` on the GPU's channel, next to `power_w`, so the
//! server can compute joules per megahash.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::GpuReading;
use crate::AgentError;

/// Default URL of the T-Rex summary.
pub const DEFAULT_TREX_URL: &str = "http://127.0.0.1:4067/summary";

/// Hashrate of one GPU as the miner reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerGpu {
    pub gpu_id: Option<u32>,
    pub pci_bus: Option<u32>,
    /// Hashes per second.
    pub hashrate_hs: f64,
}

#[derive(Debug, Deserialize)]
struct Summary {
    #[serde(default)]
    gpus: Vec<SummaryGpu>,
}

#[derive(Debug, Deserialize)]
struct SummaryGpu {
    gpu_id: Option<u32>,
    pci_bus: Option<u32>,
    hashrate: Option<f64>,
}

/// Parses a T-Rex `/summary` response. GPUs without a valid hashrate are left out.
pub fn parse_trex_summary(body: &[u8]) -> Result<Vec<MinerGpu>, String> {
    let summary: Summary = serde_json::from_slice(body).map_err(|error| format!("the response is not a T-Rex summary: {error}"))?;
    Ok(summary
        .gpus
        .into_iter()
        .filter_map(|gpu| {
            let hashrate_hs = gpu.hashrate.filter(|rate| rate.is_finite() && *rate >= 0.0)?;
            Some(MinerGpu { gpu_id: gpu.gpu_id, pci_bus: gpu.pci_bus, hashrate_hs })
        })
        .collect())
}

/// Maps each miner GPU to a GPU index and returns its hashrate in MH/s.
pub fn assign_hashrates(gpus: &[GpuReading], miner: &[MinerGpu]) -> BTreeMap<u32, f64> {
    let mut hashrates = BTreeMap::new();
    for miner_gpu in miner {
        let by_bus = miner_gpu
            .pci_bus
            .and_then(|bus| gpus.iter().find(|gpu| gpu.pci_bus == Some(bus)))
            .map(|gpu| gpu.index);
        if let Some(index) = by_bus.or(miner_gpu.gpu_id) {
            hashrates.insert(index, miner_gpu.hashrate_hs / 1_000_000.0);
        }
    }
    hashrates
}

/// Client of one miner API URL.
pub struct MinerApi {
    url: String,
    client: reqwest::Client,
    /// Whether the last request failed, to log an outage once.
    failing: bool,
}

impl MinerApi {
    /// Creates a client for `url` (plain HTTP), with a per-request `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<MinerApi, AgentError> {
        let error = |reason: String| AgentError::MinerApi { url: url.to_owned(), reason };
        if !url.starts_with("http://") {
            return Err(error("the URL must start with http://".to_owned()));
        }
        // The miner runs on the rig itself: never route its API through a proxy.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|source| error(format!("cannot build the HTTP client: {source}")))?;
        Ok(MinerApi { url: url.to_owned(), client, failing: false })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches and parses the summary.
    pub async fn fetch(&self) -> Result<Vec<MinerGpu>, AgentError> {
        let error = |reason: String| AgentError::MinerApi { url: self.url.clone(), reason };
        let response = self.client.get(&self.url).send().await.map_err(|source| error(format!("request failed: {source}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error(format!("HTTP status {status}")));
        }
        let body = response.bytes().await.map_err(|source| error(format!("cannot read the response: {source}")))?;
        parse_trex_summary(&body).map_err(error)
    }

    /// Fetches the summary; logs the first failure of an outage and the recovery.
    pub async fn poll(&mut self) -> Option<Vec<MinerGpu>> {
        match self.fetch().await {
            Ok(gpus) => {
                if self.failing {
                    tracing::info!(url = %self.url, "miner API responds again");
                    self.failing = false;
                }
                Some(gpus)
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, "cannot read the miner hashrate; hashrate_mhs is left out until the miner API responds");
                    self.failing = true;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{
        "hashrate": 61000000,
        "gpus": [
            {"device_id": 0, "gpu_id": 0, "pci_bus": 3, "hashrate": 30500000, "power": 120},
            {"device_id": 1, "gpu_id": 1, "pci_bus": 1, "hashrate": 30500000.5},
            {"device_id": 2, "gpu_id": 2, "hashrate": null}
        ]
    }"#;

    #[test]
    fn summary_parses_gpus_with_hashrate() {
        let gpus = parse_trex_summary(SUMMARY.as_bytes()).unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0], MinerGpu { gpu_id: Some(0), pci_bus: Some(3), hashrate_hs: 30_500_000.0 });
    }

    #[test]
    fn hashrate_matches_by_pci_bus() {
        let gpus: Vec<GpuReading> = [(0, 1), (1, 3)]
            .into_iter()
            .map(|(index, bus)| GpuReading { index, pci_bus: Some(bus), ..GpuReading::default() })
            .collect();
        let miner = parse_trex_summary(SUMMARY.as_bytes()).unwrap();
        let hashrates = assign_hashrates(&gpus, &miner);
        // The miner's gpu_id 0 sits on bus 3, which NVML numbers 1.
        assert_eq!(hashrates.get(&1), Some(&30.5));
        assert_eq!(hashrates.get(&0), Some(&30.5000005));
    }

    #[test]
    fn hashrate_falls_back_to_gpu_id() {
        let miner = [MinerGpu { gpu_id: Some(4), pci_bus: None, hashrate_hs: 2_000_000.0 }];
        assert_eq!(assign_hashrates(&[], &miner).get(&4), Some(&2.0));
    }

    #[test]
    fn non_json_answer_is_an_error() {
        assert!(parse_trex_summary(b"<html>").is_err());
    }
}
