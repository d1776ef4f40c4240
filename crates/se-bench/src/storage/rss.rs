//! Peak memory of `smart-energy serve` while many series are active: the
//! fleet simulator's rigs publish to the embedded broker on a free loopback
//! port, and the server's `VmHWM` (peak resident set) is read from
//! /proc/PID/status once every message is acknowledged.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use se_sim::{Fleet, FleetConfig};

use crate::servers::SmartEnergy;

/// Memory figures of one run, in bytes.
#[derive(Debug, Clone)]
pub struct RssOutcome {
    pub series: usize,
    pub messages: u64,
    pub stored_readings: u64,
    /// `VmHWM`: the peak resident set size.
    pub peak_rss_bytes: u64,
    /// `VmRSS` at the end of the run.
    pub final_rss_bytes: u64,
    pub elapsed: Duration,
}

/// Reads a `kB` field such as `VmHWM` from /proc/PID/status, in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_status_kb(&text, field).map(|kb| kb * 1024).ok_or_else(|| anyhow!("{path} has no {field} line"))
}

fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts `serve`, publishes `steps` intervals of a fleet of `rigs` rigs with
/// `gpus_per_rig` GPUs (five metrics each, so `rigs * gpus_per_rig * 5`
/// series), waits until every reading is stored and reads the peak RSS.
pub async fn measure(binary: &Path, rigs: usize, gpus_per_rig: usize, steps: u64, interval_s: u64) -> anyhow::Result<RssOutcome> {
    if rigs == 0 || gpus_per_rig == 0 || steps == 0 {
        bail!("the memory run needs at least one rig, one GPU and one step, got {rigs} rigs, {gpus_per_rig} GPUs and {steps} steps");
    }
    let server = SmartEnergy::start(binary).await?;
    let pid = server.pid().ok_or_else(|| anyhow!("smart-energy serve has no process id"))?;
    eprintln!("  [rss] serve runs as pid {pid}; VmRSS at start {} MiB", proc_status_bytes(pid, "VmRSS")? / (1 << 20));

    let config = FleetConfig { rigs, gpus_per_rig, rig_prefix: "rss".to_owned(), prototype: false, ..FleetConfig::default() };
    let mut fleet = Fleet::new(config, 5);
    let series = rigs * gpus_per_rig * 5;
    let interval_ms = (interval_s * 1000) as i64;
    // Timestamps end now, so the server accepts every one of them as not in the future.
    let first_ms = se_core::now_ms() - steps as i64 * interval_ms;

    let mut options = MqttOptions::new(format!("se-bench-rss-{}", std::process::id()), "127.0.0.1", server.mqtt_port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 1_000);

    let total = steps * rigs as u64;
    let producer_client = client.clone();
    let producer = tokio::spawn(async move {
        for step in 0..steps {
            let now_ms = first_ms + step as i64 * interval_ms;
            for message in fleet.step(now_ms, interval_s as f64) {
                producer_client.publish(message.topic, QoS::AtLeastOnce, false, message.payload).await?;
            }
        }
        Ok::<(), rumqttc::ClientError>(())
    });

    let started = Instant::now();
    let mut acked = 0u64;
    let mut next_report = Instant::now() + Duration::from_secs(5);
    let deadline = Instant::now() + Duration::from_secs(1_800);
    while acked < total {
        let polled = tokio::time::timeout_at(deadline.into(), eventloop.poll()).await;
        match polled {
            Err(_) => bail!("timed out after {acked} of {total} PUBACKs"),
            Ok(Err(error)) => bail!("MQTT connection to serve failed after {acked} of {total} PUBACKs: {error}"),
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(Event::Outgoing(Outgoing::Publish(_)))) | Ok(Ok(_)) => {}
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(5);
            let rss = proc_status_bytes(pid, "VmRSS")?;
            eprintln!(
                "  [rss] {acked}/{total} messages acknowledged, VmRSS {} MiB, {:.0} s",
                rss / (1 << 20),
                started.elapsed().as_secs_f64()
            );
        }
    }
    producer.await.context("publisher task panicked")?.context("queue a publish")?;
    let _ = client.try_disconnect();

    let expected = total * (gpus_per_rig as u64) * 5;
    let mut stored = server.stored_readings().await?;
    let settle_until = Instant::now() + Duration::from_secs(10);
    while stored < expected && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = server.stored_readings().await?;
    }
    let peak_rss_bytes = proc_status_bytes(pid, "VmHWM")?;
    let final_rss_bytes = proc_status_bytes(pid, "VmRSS")?;
    let elapsed = started.elapsed();
    if !server.stop() {
        eprintln!("  [rss] smart-energy serve did not exit within 20 s of SIGTERM");
    }
    Ok(RssOutcome { series, messages: total, stored_readings: stored, peak_rss_bytes, final_rss_bytes, elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_field_is_read_in_bytes() {
        let text = "Name:\tsmart-energy\nVmHWM:\t  123456 kB\nVmRSS:\t   100 kB\n";
        assert_eq!(parse_status_kb(text, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_kb(text, "VmRSS"), Some(100));
        assert_eq!(parse_status_kb(text, "VmSwap"), None);
    }
}
