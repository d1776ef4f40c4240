//! `serve`: broker, ingestion, storage, HTTP API and web UI in one process.
//!
//! Start-up order: open the store, bind every listening port (so a busy port
//! fails before anything runs), start ingestion, then the sources and the web
//! server. Shutdown runs the other way: sources stop taking messages, the
//! writer drains and commits what it accepted, then the process exits.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use se_broker::{Broker, BrokerConfig, InternalSubscription};
use se_core::DeviceId;
use se_decode::{
    Decoder, DecoderSet, EmonhubConfig, EmonhubDecoder, EsphomeConfig, EsphomeDecoder, NativeDecoder, PrototypeDecoder,
    ShellyGen1Config, ShellyGen1Decoder, ShellyGen2Config, ShellyGen2Decoder, TasmotaConfig, TasmotaDecoder,
};
use se_ingest::{run_external_source, run_writer, ExternalSourceConfig, IngestCore, IngestMessage, ReadingObserver, WriterConfig};
use se_sim::{run_simulator, FleetConfig, SimulatorConfig};
use se_store::{SqliteStore, Store, StoreOptions};
use se_web::{Health, LiveSender, LiveUpdate, WebState};

use super::commands::MqttCommandPublisher;
use super::config::ServerConfig;
use super::{parse_duration, wait_for_signal, DEFAULT_DATA_DIR};

const DEFAULT_MQTT_PORT: u16 = 1883;
const DEFAULT_HTTP_PORT: u16 = 8080;

/// Messages waiting for the writer. When full, sources wait, so the
/// broker stops reading from publishers instead of dropping messages.
const INGEST_QUEUE: usize = 20_000;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file with sites and topic-to-device mappings (see smart-energy.example.toml).
    #[arg(long, env = "SMART_ENERGY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database; created if missing.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "SMART_ENERGY_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the embedded MQTT broker [default: 127.0.0.1:1883].
    #[arg(long, conflicts_with = "mqtt_url", value_parser = parse_listen_address)]
    pub mqtt_listen: Option<SocketAddr>,
    /// Use this external broker (mqtt://[USER:PASSWORD@]HOST:PORT) instead of the embedded one.
    #[arg(long, env = "SMART_ENERGY_MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// Client id used with --mqtt-url. The external broker keeps the persistent
    /// session under this id, so give each server instance its own.
    #[arg(long, requires = "mqtt_url")]
    pub mqtt_client_id: Option<String>,
    /// Address of the HTTP API and web UI [default: 127.0.0.1:8080].
    #[arg(long, value_parser = parse_listen_address)]
    pub http_listen: Option<SocketAddr>,
    /// Device id given to the prototype ESP32, whose topics carry no id.
    #[arg(long, default_value = "esp32-prototype")]
    pub prototype_device: String,
    /// Password of the first admin account, used only when the database has
    /// no user. Without it a one-time password is generated and printed.
    #[arg(long, env = "SMART_ENERGY_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Run the fleet simulator in the same process and create the demo account
    /// (loopback only). Busy default ports are replaced by free ones.
    #[arg(long)]
    pub demo: bool,
    /// Simulated rigs in demo mode, 1 to 10000.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub demo_rigs: u16,
    /// GPUs per simulated rig in demo mode, 1 to 64.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub demo_gpus: u8,
    /// Interval of the simulated rigs in demo mode, such as 2s.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub demo_interval: Duration,
    /// Token accepted by the InfluxDB line protocol write routes (/api/v2/write
    /// and /write); repeat for several. Without one, those routes answer 403.
    #[arg(long = "write-token", value_name = "TOKEN", env = "SMART_ENERGY_WRITE_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub write_tokens: Vec<String>,
    /// Mark the session cookie Secure, so browsers send it over HTTPS only.
    /// Use it when a TLS reverse proxy serves the UI: over plain HTTP to another host,
    /// browsers drop the session cookie, so every page returns to the login form.
    #[arg(long, env = "SMART_ENERGY_SECURE_COOKIES")]
    pub secure_cookies: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(serve(args))
}

/// The MQTT side of the server: an embedded broker or an external one.
enum Source {
    Embedded(Broker),
    External(ExternalSourceConfig),
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let prototype_device = DeviceId::parse(&args.prototype_device).map_err(|error| anyhow::anyhow!("--prototype-device: {error}"))?;
    if let (Some(mqtt), Some(http)) = (args.mqtt_listen, args.http_listen) {
        // Otherwise the second bind fails with a message that blames another program.
        if mqtt.port() != 0 && mqtt == http {
            anyhow::bail!("--mqtt-listen and --http-listen both name {mqtt}; give them different ports, such as --mqtt-listen {} --http-listen {}", mqtt, http_example(http));
        }
    }
    let health = Arc::new(Health::new());
    let config = match &args.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };

    let retention = config.store.retention().map_err(|error| anyhow::anyhow!("store.retention: {error}"))?;
    let recommendation_schedule = config.recommendations.schedule().map_err(|error| anyhow::anyhow!("recommendations: {error}"))?;
    let store = SqliteStore::open_with(&args.data_dir, StoreOptions { retention })?;
    let store: Arc<dyn Store> = Arc::new(store);
    config.apply(store.as_ref()).await?;
    health.set_store(true);

    let http_listener = bind_http(&args).await?;
    let http_addr = http_listener.local_addr().context("reading the HTTP listen address")?;

    let decoders = DecoderSet::new(default_decoders(prototype_device)?).with_mappings(config.mappings());
    let core = IngestCore::new(decoders);
    let topic_filters = core.topic_filters();
    let source = match &args.mqtt_url {
        Some(url) => Source::External(ExternalSourceConfig::from_url(url, &args.mqtt_client_id.clone().unwrap_or_else(external_client_id), topic_filters.clone())?),
        None => Source::Embedded(bind_broker(&args).await?),
    };

    // Accounts come after every port is bound, so a failed start does not
    // spend the one-time admin password.
    announce_accounts(store.as_ref(), &args).await?;
    if args.demo {
        create_demo_account(store.as_ref(), http_addr).await?;
    }

    let shutdown = CancellationToken::new();
    let live = se_web::live_channel();
    let (sink, messages) = mpsc::channel::<IngestMessage>(INGEST_QUEUE);
    let writer = tokio::spawn(run_writer(core, store.clone(), messages, Some(live_observer(live.clone())), WriterConfig::default()));
    health.set_ingest(true);

    let commands = match &source {
        Source::Embedded(broker) => MqttCommandPublisher::embedded(broker.handle()),
        Source::External(config) => MqttCommandPublisher::external(config, format!("{}-commands", config.client_id)),
    };
    let (source_task, broker_task, mqtt_addr) = start_source(source, sink, &health, &shutdown).await?;

    let web_state = WebState::new(store.clone(), live, health.clone())
        .with_write_tokens(args.write_tokens.clone())
        .with_secure_cookies(args.secure_cookies)
        .with_commands(commands)
        .with_recommendation_history(recommendation_schedule.history);
    let web_shutdown = CancellationToken::new();
    let web_task = tokio::spawn(se_web::serve(http_listener, web_state, web_shutdown.clone()));
    println!("Smart Energy is running: dashboard at http://{http_addr}/");
    if let Some(mqtt_addr) = mqtt_addr {
        println!("MQTT broker listening on {mqtt_addr}");
    }

    // The simulator has its own token, so it stops first and publishes its
    // offline statuses and DISCONNECT while the broker still runs.
    let simulator_shutdown = CancellationToken::new();
    let simulator = args.demo.then(|| start_simulator(&args, mqtt_addr, simulator_shutdown.clone()));
    let maintenance = tokio::spawn(run_store_maintenance(
        store.clone(),
        config.store.compact_interval().map_err(anyhow::Error::msg)?,
        config.store.retention_interval().map_err(anyhow::Error::msg)?,
        shutdown.clone(),
    ));
    let recommendations = tokio::spawn(se_web::run_recommendations(store.clone(), recommendation_schedule, shutdown.clone()));

    wait_for_signal().await;
    tracing::info!("shutting down: stopping sources, then storing what was accepted");
    simulator_shutdown.cancel();
    if let Some(simulator) = simulator {
        let _ = simulator.await;
    }
    shutdown.cancel();
    // Sources end first, dropping their senders, so the writer drains and stops.
    if let Some(task) = source_task {
        let _ = task.await;
    }
    if let Some(task) = broker_task {
        let _ = task.await;
    }
    let _ = maintenance.await;
    let _ = recommendations.await;
    let totals = writer.await.context("the ingestion writer failed")?;
    web_shutdown.cancel();
    let _ = web_task.await;
    tracing::info!(messages = totals.messages, readings = totals.readings, "stopped; every accepted reading is stored");
    Ok(())
}

/// Compacts the store and enforces retention in the background until shutdown.
/// Compaction only moves data between tables, so a missed pass costs space,
/// never readings; failures are logged and the next pass retries.
async fn run_store_maintenance(store: Arc<dyn Store>, compact_every: Duration, retention_every: Duration, shutdown: CancellationToken) {
    let mut compact_tick = tokio::time::interval_at(tokio::time::Instant::now() + compact_every, compact_every);
    let mut retention_tick = tokio::time::interval_at(tokio::time::Instant::now() + retention_every, retention_every);
    compact_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retention_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = compact_tick.tick() => {
                let started = std::time::Instant::now();
                match store.compact_due(se_core::now_ms()).await {
                    Ok(outcome) if outcome.readings > 0 => tracing::debug!(series = outcome.series, readings = outcome.readings, duplicates = outcome.duplicates, elapsed_ms = started.elapsed().as_millis() as u64, "compacted the store"),
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "store compaction failed; new readings stay in the head table until the next pass"),
                }
            }
            _ = retention_tick.tick() => {
                match store.enforce_retention(se_core::now_ms()).await {
                    Ok(outcome) if outcome.blocks_deleted + outcome.pages_deleted > 0 => tracing::info!(blocks = outcome.blocks_deleted, readings = outcome.readings_deleted, pages = outcome.pages_deleted, "deleted data past retention"),
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "enforcing retention failed; old data stays until the next pass"),
                }
            }
        }
    }
}

/// Builds one decoder per device format, with default settings, in the order
/// that docs/formats.md gives. A topic goes to the first decoder that accepts it.
fn default_decoders(prototype_device: DeviceId) -> anyhow::Result<Vec<Box<dyn Decoder>>> {
    Ok(vec![
        Box::new(NativeDecoder),
        Box::new(PrototypeDecoder::new(prototype_device)),
        Box::new(TasmotaDecoder::new(TasmotaConfig::default())),
        Box::new(ShellyGen1Decoder::new(ShellyGen1Config::default())),
        Box::new(se_decode::HomeAssistantDecoder::default()),
        Box::new(EmonhubDecoder::new(EmonhubConfig::default()).context("emonhub decoder settings")?),
        Box::new(ShellyGen2Decoder::new(ShellyGen2Config { prefixes: Vec::new() })),
        Box::new(EsphomeDecoder::new(EsphomeConfig::default()).context("ESPHome decoder settings")?),
    ])
}

/// Creates the first admin account and prints its password once.
async fn announce_accounts(store: &dyn Store, args: &ServeArgs) -> anyhow::Result<()> {
    if let Some(password) = se_web::ensure_admin(store, args.admin_password.clone()).await? {
        if args.admin_password.is_none() {
            println!("Created the admin account. User: admin  One-time password: {password}");
            println!("Log in and change it now; it is not shown again.");
        }
    }
    Ok(())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Creates the demo account and lets it see the default site, where every
/// unassigned device is.
async fn create_demo_account(store: &dyn Store, http_addr: SocketAddr) -> anyhow::Result<()> {
    se_web::ensure_demo_account(store, http_addr).await?;
    println!("Demo account: user demo, password demo (loopback only).");
    if let Some(demo) = store.user_by_name("demo").await? {
        store.set_site_owner(se_store::DEFAULT_SITE_ID, demo.id, true).await?;
    }
    Ok(())
}

/// Parses a listen address given as IP:PORT. `localhost` stands for
/// 127.0.0.1; other host names are rejected so that no name lookup decides
/// which interface the server exposes.
fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(loopback(port));
        }
    }
    Err(format!("'{text}' is not an IP address and port; give one such as 127.0.0.1:1884"))
}

/// Returns `addr` with another port, as an example for a clash of the two listeners.
fn http_example(addr: SocketAddr) -> SocketAddr {
    let port = if addr.port() == DEFAULT_HTTP_PORT { DEFAULT_HTTP_PORT + 1 } else { DEFAULT_HTTP_PORT };
    SocketAddr::new(addr.ip(), port)
}

/// Binds the HTTP port. In demo mode a busy default port is replaced by a free one.
async fn bind_http(args: &ServeArgs) -> anyhow::Result<tokio::net::TcpListener> {
    if let Some(addr) = args.http_listen {
        return Ok(se_web::bind(addr).await?);
    }
    match se_web::bind(loopback(DEFAULT_HTTP_PORT)).await {
        Ok(listener) => Ok(listener),
        Err(error) if args.demo => {
            tracing::warn!(%error, "port {DEFAULT_HTTP_PORT} is busy; the demo uses a free port instead");
            Ok(se_web::bind(loopback(0)).await?)
        }
        Err(error) => Err(error.into()),
    }
}

/// Binds the embedded broker. In demo mode a busy default port (such as
/// another broker on 1883) is replaced by a free one.
async fn bind_broker(args: &ServeArgs) -> anyhow::Result<Broker> {
    if let Some(addr) = args.mqtt_listen {
        return Ok(Broker::bind(BrokerConfig::new(addr)).await?);
    }
    match Broker::bind(BrokerConfig::new(loopback(DEFAULT_MQTT_PORT))).await {
        Ok(broker) => Ok(broker),
        Err(error) if args.demo => {
            tracing::warn!(%error, "port {DEFAULT_MQTT_PORT} is busy; the demo broker uses a free port instead");
            Ok(Broker::bind(BrokerConfig::new(loopback(0))).await?)
        }
        Err(error) => Err(error.into()),
    }
}

type Task = Option<JoinHandle<()>>;

/// Starts the MQTT side and returns its tasks and, for the embedded broker, its address.
async fn start_source(
    source: Source,
    sink: mpsc::Sender<IngestMessage>,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Task, Task, Option<SocketAddr>)> {
    match source {
        Source::Embedded(broker) => {
            let addr = broker.local_addr();
            // Every topic goes to ingestion, so unknown topics are counted too.
            let subscription = broker.internal_subscriber(&["#"], INGEST_QUEUE)?;
            let broker_stopped = CancellationToken::new();
            let forward = tokio::spawn(forward_embedded(subscription, sink, broker_stopped.clone()));
            let broker_shutdown = shutdown.clone();
            let broker_task = tokio::spawn(async move {
                broker.run(broker_shutdown).await;
                broker_stopped.cancel();
            });
            health.set_broker(true);
            Ok((Some(forward), Some(broker_task), Some(addr)))
        }
        Source::External(config) => {
            let health = health.clone();
            let task = tokio::spawn(run_external_source(config, sink, shutdown.clone(), move |up| health.set_broker(up)));
            Ok((Some(task), None, None))
        }
    }
}

/// Hands messages of the embedded broker to ingestion. The broker's ack
/// handle travels with the message, so the PUBACK waits for the commit.
///
/// It keeps forwarding while the broker shuts down, so that the broker can
/// still send the PUBACKs of messages stored during its grace period.
async fn forward_embedded(mut subscription: InternalSubscription, sink: mpsc::Sender<IngestMessage>, broker_stopped: CancellationToken) {
    loop {
        let inbound = tokio::select! {
            inbound = subscription.recv() => inbound,
            _ = broker_stopped.cancelled() => subscription.try_recv(),
        };
        let Some(inbound) = inbound else { break };
        let ack = inbound.ack.map(|handle| Box::new(move || handle.ack()) as Box<dyn FnOnce() + Send>);
        let message = IngestMessage { topic: inbound.topic, payload: inbound.payload, received_ms: se_core::now_ms(), ack };
        if sink.send(message).await.is_err() {
            break;
        }
    }
}

fn live_observer(live: LiveSender) -> ReadingObserver {
    Arc::new(move |readings| {
        for update in LiveUpdate::from_readings(readings) {
            // No receiver (no open dashboard) is normal.
            let _ = live.send(update);
        }
    })
}

fn external_client_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    format!("smart-energy-ingest-{host}")
}

fn start_simulator(args: &ServeArgs, mqtt_addr: Option<SocketAddr>, shutdown: CancellationToken) -> JoinHandle<()> {
    let (host, port) = match (mqtt_addr, &args.mqtt_url) {
        (Some(addr), _) => (addr.ip().to_string(), addr.port()),
        (None, Some(url)) => match ExternalSourceConfig::from_url(url, "", Vec::new()) {
            Ok(config) => (config.host, config.port),
            Err(_) => ("127.0.0.1".to_owned(), DEFAULT_MQTT_PORT),
        },
        (None, None) => ("127.0.0.1".to_owned(), DEFAULT_MQTT_PORT),
    };
    let config = SimulatorConfig {
        host,
        port,
        client_id: "smart-energy-demo-simulator".to_owned(),
        interval: args.demo_interval,
        fleet: FleetConfig { rigs: usize::from(args.demo_rigs), gpus_per_rig: usize::from(args.demo_gpus), ..FleetConfig::default() },
        seed: 1,
        steps: None,
    };
    tokio::spawn(async move {
        if let Err(error) = run_simulator(config, shutdown).await {
            tracing::error!(%error, "the demo simulator stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_takes_ip_and_port() {
        assert_eq!(parse_listen_address("127.0.0.1:1884"), Ok(loopback(1884)));
        assert_eq!(parse_listen_address("[::1]:8080"), Ok("[::1]:8080".parse().unwrap()));
    }

    #[test]
    fn listen_address_maps_localhost() {
        assert_eq!(parse_listen_address("localhost:18831"), Ok(loopback(18831)));
    }

    #[test]
    fn listen_address_rejects_names_with_hint() {
        let error = parse_listen_address("example.org:1884").unwrap_err();
        assert!(error.contains("'example.org:1884'"), "{error}");
        assert!(error.contains("127.0.0.1:1884"), "{error}");
        assert!(parse_listen_address("localhost").is_err());
        assert!(parse_listen_address("localhost:99999").is_err());
    }
}
