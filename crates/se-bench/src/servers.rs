//! Child processes under test: `smart-energy serve` and Mosquitto, each on
//! free loopback ports with its own temp directory. Both are stopped with
//! SIGTERM on drop, and killed if they do not exit within 20 s.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

/// Admin password given to the benchmark server; it lives only in a temp dir.
const ADMIN_PASSWORD: &str = "se-bench-admin-password";
const START_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// Returns a port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr().context("read the free port")?.port())
}

/// A child process that is stopped when dropped.
struct Guarded {
    name: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Guarded {
    fn spawn(name: &'static str, mut command: Command, log_path: PathBuf) -> anyhow::Result<Guarded> {
        let log = File::create(&log_path).with_context(|| format!("create log file {}", log_path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone the log file handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {name}; check the binary path"))?;
        Ok(Guarded { name, child: Some(child), log_path })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let start = text.len().saturating_sub(2_000);
        text.get(start..).unwrap_or_default().to_owned()
    }

    /// Fails if the process already exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{} exited early with {status}; log tail:\n{}", self.name, self.log_tail());
            }
        }
        Ok(())
    }

    /// Waits until a TCP connection to `port` succeeds.
    fn wait_for_port(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            self.check_running()?;
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} did not listen on 127.0.0.1:{port} within {START_LIMIT:?}; log tail:\n{}", self.name, self.log_tail())
    }

    /// Sends SIGTERM, then SIGKILL after [`STOP_LIMIT`]. Returns whether the
    /// process exited on SIGTERM.
    fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not exit within {STOP_LIMIT:?} of SIGTERM; killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `smart-energy serve` with the embedded broker, on a fresh data directory.
pub struct SmartEnergy {
    process: Guarded,
    pub mqtt_port: u16,
    http_base: String,
    http: reqwest::Client,
    _scratch: tempfile::TempDir,
}

#[derive(Deserialize)]
struct Stats {
    readings: u64,
}

impl SmartEnergy {
    pub async fn start(binary: &Path) -> anyhow::Result<SmartEnergy> {
        let scratch = tempfile::tempdir().context("create a temp dir for the server")?;
        let mqtt_port = free_port()?;
        let http_port = free_port()?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(scratch.path().join("data"))
            .arg("--mqtt-listen")
            .arg(format!("127.0.0.1:{mqtt_port}"))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{http_port}"))
            .env("SMART_ENERGY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "warn");
        let mut process = Guarded::spawn("smart-energy serve", command, scratch.path().join("serve.log"))?;
        process.wait_for_port(http_port)?;
        process.wait_for_port(mqtt_port)?;

        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .context("build the HTTP client")?;
        let http_base = format!("http://127.0.0.1:{http_port}");
        let response = http
            .post(format!("{http_base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .context("send the admin login request")?;
        if !response.status().is_success() {
            bail!("admin login to {http_base} failed with HTTP {}", response.status());
        }
        Ok(SmartEnergy { process, mqtt_port, http_base, http, _scratch: scratch })
    }

    /// Returns the number of stored readings from `GET /api/v1/stats`.
    pub async fn stored_readings(&self) -> anyhow::Result<u64> {
        let response = self
            .http
            .get(format!("{}/api/v1/stats", self.http_base))
            .send()
            .await
            .context("request /api/v1/stats")?;
        if !response.status().is_success() {
            return Err(anyhow!("/api/v1/stats returned HTTP {}", response.status()));
        }
        let stats: Stats = response.json().await.context("decode /api/v1/stats")?;
        Ok(stats.readings)
    }

    /// Process id of the running server, for reading its memory use from /proc.
    pub fn pid(&self) -> Option<u32> {
        self.process.child.as_ref().map(Child::id)
    }

    /// Stops the server; returns whether it exited on SIGTERM.
    pub fn stop(mut self) -> bool {
        self.process.stop()
    }
}

/// Mosquitto with a minimal loopback configuration.
pub struct Mosquitto {
    process: Guarded,
    pub port: u16,
    _scratch: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts Mosquitto. `max_queued_messages` of `None` keeps its default
    /// (1000 in Mosquitto 2.0); `Some(0)` removes the limit.
    pub fn start(binary: &Path, max_queued_messages: Option<u32>) -> anyhow::Result<Mosquitto> {
        let scratch = tempfile::tempdir().context("create a temp dir for Mosquitto")?;
        let port = free_port()?;
        let mut config = format!("listener {port} 127.0.0.1\nallow_anonymous true\n");
        if let Some(limit) = max_queued_messages {
            config.push_str(&format!("max_queued_messages {limit}\n"));
        }
        let config_path = scratch.path().join("mosquitto.conf");
        std::fs::write(&config_path, config).with_context(|| format!("write {}", config_path.display()))?;

        let mut command = Command::new(binary);
        command.arg("-c").arg(&config_path);
        let mut process = Guarded::spawn("mosquitto", command, scratch.path().join("mosquitto.log"))?;
        process.wait_for_port(port)?;
        Ok(Mosquitto { process, port, _scratch: scratch })
    }

    pub fn stop(mut self) -> bool {
        self.process.stop()
    }
}
