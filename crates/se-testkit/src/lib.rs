//! The shared test environment: free loopback ports, a `smart-energy serve`
//! process with its own data directory, MQTT helpers, and the rule for tests
//! that need an outside service.
//!
//! Outside services (Mosquitto, PostgreSQL, Chromium) are used where present.
//! Where one is missing, [`require_service`] prints why the test is skipped,
//! unless `SMART_ENERGY_REQUIRE_SERVICES=1` is set, as CI does: there a
//! missing service fails the test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet};

/// Password given to the first admin account of every test server.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local address of an ephemeral listener").port()
}

/// Decides whether a test that needs an outside service runs. Returns false
/// (after printing the reason) when the service is missing, except under
/// `SMART_ENERGY_REQUIRE_SERVICES=1`, where a missing service panics.
pub fn require_service(name: &str, available: bool, how_to_get_it: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var("SMART_ENERGY_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{name} is required (SMART_ENERGY_REQUIRE_SERVICES=1) but not available: {how_to_get_it}");
    }
    eprintln!("skipped: {name} is not available ({how_to_get_it})");
    false
}

/// Returns whether something accepts TCP connections at `addr`.
pub fn port_open(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .ok()
        .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok())
        .is_some()
}

/// Sends a plain HTTP/1.0 GET with std sockets and returns the status code.
/// It works both inside and outside an async runtime, unlike reqwest's
/// blocking client.
pub fn http_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr: SocketAddr = host.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0u8; 32];
    let read = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..read]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A running `smart-energy serve` process, stopped with SIGTERM on drop.
pub struct ServeProcess {
    child: Option<Child>,
    pub http: String,
    pub mqtt_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
}

/// Options of [`ServeProcess::start`].
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Use this data directory instead of a new one.
    pub data_dir: Option<PathBuf>,
    /// Subscribe to this external broker instead of running the embedded one.
    pub mqtt_url: Option<String>,
    pub extra_args: Vec<String>,
}

impl ServeProcess {
    /// Starts the binary on free ports and waits until `/healthz` returns 200.
    /// `scratch` must outlive the process; the data directory is created in it
    /// unless `options.data_dir` is set.
    pub fn start(binary: &str, scratch: &Path, options: ServeOptions) -> ServeProcess {
        let data_dir = options.data_dir.clone().unwrap_or_else(|| scratch.join("data"));
        let http_port = free_port();
        let mqtt_port = free_port();
        let log_path = scratch.join(format!("serve-{http_port}.log"));
        let log = std::fs::File::create(&log_path).expect("create the server log file");
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{http_port}"))
            .env("SMART_ENERGY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log);
        match &options.mqtt_url {
            Some(url) => command.arg("--mqtt-url").arg(url),
            None => command.arg("--mqtt-listen").arg(format!("127.0.0.1:{mqtt_port}")),
        };
        command.args(&options.extra_args);
        let child = command.spawn().expect("start smart-energy serve");
        let mut process = ServeProcess { child: Some(child), http: format!("http://127.0.0.1:{http_port}"), mqtt_port, data_dir, log_path };
        process.wait_healthy(Duration::from_secs(60));
        process
    }

    fn wait_healthy(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let url = format!("{}/healthz", self.http);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("smart-energy serve exited early with {status}; log:\n{}", self.log());
            }
            if http_status(&url) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("smart-energy serve did not become healthy within {limit:?}; log:\n{}", self.log());
    }

    /// Returns the server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("smart-energy serve did not stop within 30 s of SIGTERM; log:\n{}", self.log());
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Returns an HTTP client logged in as the admin.
    pub async fn admin_client(&self) -> reqwest::Client {
        let client = reqwest::Client::builder().cookie_store(true).build().expect("build an HTTP client");
        let response = client
            .post(format!("{}/api/v1/auth/login", self.http))
            .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("send the login request");
        assert!(response.status().is_success(), "admin login failed: {}", response.status());
        client
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// Connects an MQTT client to 127.0.0.1:`port` and waits for its CONNACK.
/// The event loop is polled in a background task for the client's lifetime.
pub async fn mqtt_client(client_id: &str, port: u16) -> AsyncClient {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 1_000);
    wait_connack(&mut eventloop).await;
    tokio::spawn(async move {
        while eventloop.poll().await.is_ok() {}
    });
    client
}

async fn wait_connack(eventloop: &mut EventLoop) {
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return,
                Ok(_) => {}
                Err(error) => panic!("MQTT connection failed: {error}"),
            }
        }
    })
    .await;
    assert!(connected.is_ok(), "no CONNACK within 10 s");
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Acknowledgements seen by [`poll_until_closed`].
#[derive(Debug, Default)]
pub struct PublishTally {
    /// PUBLISH packets sent, QoS 1 ones counted from 1 in sending order.
    pub sent: u64,
    /// Sending positions (from 1) whose PUBACK arrived.
    pub acked: std::collections::HashSet<u64>,
}

/// Polls `eventloop` until the connection fails or stays idle for 5 s, and
/// records which QoS 1 publishes were acknowledged. rumqttc sends publishes
/// in the order they were queued, so a client that queues sequence numbers
/// 1, 2, 3, ... gets back exactly the sequence numbers the broker acknowledged.
pub async fn poll_until_closed(eventloop: &mut EventLoop) -> PublishTally {
    use rumqttc::Outgoing;

    let mut tally = PublishTally::default();
    let mut in_flight = std::collections::HashMap::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                tally.sent += 1;
                in_flight.insert(pkid, tally.sent);
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(position) = in_flight.remove(&ack.pkid) {
                    tally.acked.insert(position);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return tally,
        }
    }
}
