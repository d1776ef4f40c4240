//! The running agent: a sampler task, a command executor task, and the main
//! loop that owns the buffer and the MQTT connection.
//!
//! Each connection gets a fresh rumqttc client with a clean session. When a
//! connection drops, every record in flight goes back to pending and is
//! published again, in order, on the next connection. A record leaves the
//! buffer only when its PUBACK arrives. rumqttc's own resend queue is never
//! used, so each PUBACK maps to exactly one buffered record.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::{BufferOptions, DiskBuffer, Record};
use crate::commands::{with_gpus, CommandExecutor, SharedGpus};
use crate::config::{AgentConfig, GpuMode};
use crate::protocol::{self, Ack, AckCode, CommandMessage};
use crate::sources::miner::{assign_hashrates, MinerApi};
use crate::sources::nvml::NvmlGpus;
use crate::sources::rapl::RaplReader;
use crate::sources::simulated::SimulatedGpus;
use crate::sources::GpuSource;
use crate::telemetry::{telemetry_payload, RigSample};
use crate::AgentError;

/// Telemetry records published and not yet acknowledged, at most.
const PUBLISH_WINDOW: usize = 32;
/// Capacity of the rumqttc request channel; above the window plus acks and status.
const REQUEST_CAPACITY: usize = 256;
/// Acknowledgements kept while the broker is unreachable, at most.
const MAX_PENDING_ACKS: usize = 100;
/// Commands waiting for the executor, at most.
const COMMAND_QUEUE: usize = 64;
/// Time between two writes of the buffer state file.
const STATE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);
/// Minimum time between two log lines about the same repeated problem.
const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Time given at shutdown for in-flight records to be acknowledged.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// The sources an agent reads.
#[derive(Default)]
pub struct AgentSources {
    pub gpus: Option<Box<dyn GpuSource>>,
    pub rapl: Option<RaplReader>,
    pub miner: Option<MinerApi>,
}

impl AgentSources {
    /// Opens the sources that the configuration enables. A source that is not
    /// available is logged in one line and left out, and the others continue.
    pub fn from_config(config: &AgentConfig) -> AgentSources {
        let gpus: Option<Box<dyn GpuSource>> = match config.gpu {
            GpuMode::Nvml => match NvmlGpus::init() {
                Ok(nvml) => Some(Box::new(nvml)),
                Err(AgentError::NvmlUnavailable { reason }) => {
                    tracing::warn!("NVML is not available ({reason}): GPU metrics are off; CPU and miner sources continue");
                    None
                }
                Err(error) => {
                    tracing::warn!("{error}. GPU metrics are off; CPU and miner sources continue");
                    None
                }
            },
            GpuMode::Simulate { gpus } => {
                let seed = device_seed(config.device.as_str());
                Some(Box::new(SimulatedGpus::new(gpus, seed, config.interval.as_secs_f64(), config.device.as_str())))
            }
            GpuMode::Off => None,
        };
        let rapl = config.rapl.as_ref().and_then(|dir| match RaplReader::open(dir) {
            Ok(reader) => Some(reader),
            Err(error) => {
                tracing::warn!("{error}. CPU power is off; GPU and miner sources continue");
                None
            }
        });
        let miner = config.miner.api.as_ref().and_then(|url| match MinerApi::new(url, config.miner.api_timeout) {
            Ok(api) => Some(api),
            Err(error) => {
                tracing::warn!("{error}. Hashrate is off; the other sources continue");
                None
            }
        });
        AgentSources { gpus, rapl, miner }
    }
}

/// Seed of the simulated GPUs, stable for a device id (FNV-1a).
fn device_seed(device: &str) -> u64 {
    device.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Live counters of a running agent, readable from other tasks.
#[derive(Debug, Default)]
pub struct AgentStatus {
    connected: AtomicBool,
    last_seq: AtomicU64,
    buffered: AtomicU64,
    dropped: AtomicU64,
    acked: AtomicU64,
}

impl AgentStatus {
    /// Returns whether the agent has a broker connection now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Sequence number of the last message taken (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Messages in the buffer, sent or not, waiting for their PUBACK.
    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Messages dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages acknowledged by the broker since the agent started.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    fn update(&self, buffer: &DiskBuffer) {
        let stats = buffer.stats();
        self.buffered.store(stats.records as u64, Ordering::Relaxed);
        self.dropped.store(stats.dropped_total, Ordering::Relaxed);
    }
}

/// One rig sample and its measurement time.
struct Sample {
    ts_ms: i64,
    rig: RigSample,
}

/// An edge agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    buffer: DiskBuffer,
    sources: AgentSources,
    status: Arc<AgentStatus>,
}

impl Agent {
    /// Opens the buffer directory; fails on an unreadable buffer or one of another format version.
    pub fn new(config: AgentConfig, sources: AgentSources) -> Result<Agent, AgentError> {
        let buffer = DiskBuffer::open(&config.buffer_dir, BufferOptions::new(config.buffer_max_bytes))?;
        let status = Arc::new(AgentStatus::default());
        status.update(&buffer);
        status.last_seq.store(buffer.stats().next_seq.saturating_sub(1), Ordering::Relaxed);
        Ok(Agent { config, buffer, sources, status })
    }

    /// Counters that stay readable while [`Agent::run`] runs.
    pub fn status(&self) -> Arc<AgentStatus> {
        self.status.clone()
    }

    /// Samples, buffers and publishes until `shutdown` is cancelled, then
    /// publishes `offline` and disconnects.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let Agent { config, buffer, sources, status } = self;
        let gpus: Option<SharedGpus> = sources.gpus.map(|gpus| Arc::new(Mutex::new(gpus)));
        log_start(&config, gpus.as_ref(), sources.rapl.as_ref(), sources.miner.as_ref()).await;

        let (sample_tx, sample_rx) = mpsc::channel(16);
        let (command_tx, mut command_rx) = mpsc::channel::<CommandMessage>(COMMAND_QUEUE);
        let (ack_tx, ack_rx) = mpsc::channel::<Ack>(COMMAND_QUEUE);

        let sampler = tokio::spawn(run_sampler(gpus.clone(), sources.rapl, sources.miner, config.interval, sample_tx));
        let mut executor = CommandExecutor::new(gpus, config.miner.clone());
        let executor_task = tokio::spawn(async move {
            while let Some(command) = command_rx.recv().await {
                let ack = executor.execute(command).await;
                if ack_tx.send(ack).await.is_err() {
                    break;
                }
            }
        });

        let mut main = MainLoop::new(config, buffer, status, command_tx);
        let result = main.run(shutdown, sample_rx, ack_rx).await;
        sampler.abort();
        executor_task.abort();
        result
    }
}

async fn log_start(config: &AgentConfig, gpus: Option<&SharedGpus>, rapl: Option<&RaplReader>, miner: Option<&MinerApi>) {
    tracing::info!(
        device_id = %config.device,
        broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
        interval_ms = config.interval.as_millis() as u64,
        buffer_dir = %config.buffer_dir.display(),
        "agent starting"
    );
    if let Some(gpus) = gpus {
        let described = with_gpus(gpus, |source| Ok((source.kind(), source.sample()))).await;
        if let Ok((kind, readings)) = described {
            tracing::info!(source = kind, gpus = readings.len(), "GPU source ready");
            for gpu in readings {
                tracing::info!(
                    gpu = gpu.index,
                    name = gpu.name.as_deref().unwrap_or("unknown"),
                    uuid = gpu.uuid.as_deref().unwrap_or("unknown"),
                    power_limit_w = gpu.limits.map(|limits| limits.current_w),
                    "GPU found"
                );
            }
        }
    }
    if let Some(rapl) = rapl {
        tracing::info!(zones = ?rapl.zone_names(), "CPU package power from RAPL");
    }
    if let Some(miner) = miner {
        tracing::info!(url = miner.url(), "miner hashrate from the T-Rex API");
    }
}

async fn run_sampler(
    gpus: Option<SharedGpus>,
    mut rapl: Option<RaplReader>,
    mut miner: Option<MinerApi>,
    interval: Duration,
    samples: mpsc::Sender<Sample>,
) {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let ts_ms = se_core::now_ms();
        let gpu_readings = match &gpus {
            Some(gpus) => with_gpus(gpus, |source| Ok(source.sample())).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let cpu_power_w = rapl.as_mut().and_then(RaplReader::sample);
        let hashrates = match miner.as_mut() {
            Some(miner) => miner.poll().await.map(|miner_gpus| assign_hashrates(&gpu_readings, &miner_gpus)).unwrap_or_default(),
            None => Default::default(),
        };
        let rig = RigSample { gpus: gpu_readings, hashrates, cpu_power_w, agent_uptime_s: started.elapsed().as_secs_f64() };
        if samples.send(Sample { ts_ms, rig }).await.is_err() {
            return;
        }
    }
}

/// Content of a QoS 1 publish of this connection.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Telemetry(u64),
    Other,
}

/// One broker connection: a rumqttc client whose event loop runs in its own task.
struct Connection {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, ConnectionError>>,
    poller: JoinHandle<()>,
    /// True once the CONNACK arrived.
    connected: bool,
    /// QoS 1 publishes requested and not yet given a packet id, in request order.
    requested: VecDeque<Sent>,
    /// QoS 1 publishes sent, by packet id, waiting for their PUBACK.
    awaiting: HashMap<u16, Sent>,
    telemetry_in_flight: usize,
}

impl Connection {
    fn start(config: &AgentConfig) -> Connection {
        let device = config.device.as_str();
        let mut options = MqttOptions::new(format!("smart-energy-agent-{device}"), config.mqtt.host.clone(), config.mqtt.port);
        // rumqttc rejects keep-alive intervals under one second.
        options.set_keep_alive(config.mqtt.keep_alive.max(Duration::from_secs(1)));
        options.set_clean_session(true);
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        options.set_last_will(LastWill::new(protocol::status_topic(device), protocol::STATUS_OFFLINE, QoS::AtLeastOnce, true));
        if let Some(username) = &config.mqtt.username {
            options.set_credentials(username.clone(), config.mqtt.password.clone().unwrap_or_default());
        }

        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let (event_tx, events) = mpsc::channel(REQUEST_CAPACITY);
        let poller = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let last = event.is_err() || matches!(event, Ok(Event::Outgoing(Outgoing::Disconnect)));
                if event_tx.send(event).await.is_err() || last {
                    return;
                }
            }
        });

        Connection {
            client,
            events,
            poller,
            connected: false,
            requested: VecDeque::new(),
            awaiting: HashMap::new(),
            telemetry_in_flight: 0,
        }
    }

    /// Queues a QoS 1 publish that is not telemetry. Returns false if the request channel is full.
    fn publish_other(&mut self, topic: String, payload: Vec<u8>, retain: bool) -> bool {
        let queued = self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload).is_ok();
        if queued {
            self.requested.push_back(Sent::Other);
        }
        queued
    }

    /// Publishes pending records while the window has room.
    fn pump(&mut self, buffer: &mut DiskBuffer) {
        while self.connected && self.telemetry_in_flight < PUBLISH_WINDOW {
            let Some(record) = buffer.next_pending() else { break };
            if self.client.try_publish(record.topic, QoS::AtLeastOnce, false, record.payload).is_err() {
                break;
            }
            buffer.mark_in_flight(record.seq);
            self.requested.push_back(Sent::Telemetry(record.seq));
            self.telemetry_in_flight += 1;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// Decides when to log a repeated event: at the first one, then at most once
/// per [`REPEAT_LOG_INTERVAL`] with the number of events since the last line.
#[derive(Debug, Default)]
struct LogLimiter {
    last: Option<Instant>,
    pending: u64,
}

impl LogLimiter {
    /// Adds `count` events; returns the number to log now, if a line is due.
    fn record(&mut self, count: u64) -> Option<u64> {
        self.pending += count;
        if self.pending == 0 || self.last.is_some_and(|last| last.elapsed() < REPEAT_LOG_INTERVAL) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.pending))
    }
}

/// State owned by the main loop.
struct MainLoop {
    config: AgentConfig,
    buffer: DiskBuffer,
    status: Arc<AgentStatus>,
    commands: mpsc::Sender<CommandMessage>,
    connection: Option<Connection>,
    retry_at: tokio::time::Instant,
    backoff: Duration,
    /// When the broker became unreachable; `None` while connected and before the first attempt.
    outage_since: Option<Instant>,
    pending_acks: VecDeque<Ack>,
    last_state_flush: Instant,
    drop_log: LogLimiter,
    disk_error_log: LogLimiter,
    telemetry_topic: String,
    command_topic: String,
    /// Set at shutdown: no new record is published.
    stopping: bool,
}

/// Waits for the next event of `connection`, or forever without one.
async fn next_event(connection: &mut Option<Connection>) -> Option<Result<Event, ConnectionError>> {
    match connection {
        Some(connection) => connection.events.recv().await,
        None => std::future::pending().await,
    }
}

impl MainLoop {
    fn new(config: AgentConfig, buffer: DiskBuffer, status: Arc<AgentStatus>, commands: mpsc::Sender<CommandMessage>) -> MainLoop {
        let device = config.device.as_str().to_owned();
        let backoff = config.mqtt.reconnect_min;
        MainLoop {
            config,
            buffer,
            status,
            commands,
            connection: None,
            retry_at: tokio::time::Instant::now(),
            backoff,
            outage_since: None,
            pending_acks: VecDeque::new(),
            last_state_flush: Instant::now(),
            drop_log: LogLimiter::default(),
            disk_error_log: LogLimiter::default(),
            telemetry_topic: protocol::telemetry_topic(&device),
            command_topic: protocol::command_topic(&device),
            stopping: false,
        }
    }

    async fn run(&mut self, shutdown: CancellationToken, mut samples: mpsc::Receiver<Sample>, mut acks: mpsc::Receiver<Ack>) -> Result<(), AgentError> {
        loop {
            let can_connect = self.connection.is_none();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(sample) = samples.recv() => {
                    self.store(sample);
                    self.pump();
                }
                Some(ack) = acks.recv() => {
                    self.queue_ack(ack);
                    self.send_acks();
                }
                event = next_event(&mut self.connection) => self.handle_event(event),
                _ = tokio::time::sleep_until(self.retry_at), if can_connect => {
                    self.connection = Some(Connection::start(&self.config));
                }
            }
        }
        self.shut_down().await;
        self.buffer.flush_state()
    }

    /// Takes a sequence number, builds the message and writes it to the buffer.
    fn store(&mut self, sample: Sample) {
        let seq = self.buffer.allocate_seq();
        let payload = telemetry_payload(seq, sample.ts_ms, self.config.site.as_deref(), &sample.rig);
        let record = Record { seq, ts_ms: sample.ts_ms, topic: self.telemetry_topic.clone(), payload };
        let dropped = match self.buffer.append(record.clone()) {
            Ok(outcome) => outcome.dropped.len() as u64,
            Err(error @ AgentError::RecordTooLarge { .. }) => {
                tracing::error!(device_id = %self.config.device, seq, %error, "a reading is lost");
                0
            }
            Err(error) => {
                if let Some(count) = self.disk_error_log.record(1) {
                    tracing::error!(
                        device_id = %self.config.device,
                        seq,
                        readings = count,
                        %error,
                        "cannot write readings to the buffer directory; they are kept in memory only and are lost if the agent stops before they are sent"
                    );
                }
                self.buffer.append_in_memory(record).dropped.len() as u64
            }
        };
        if let Some(count) = self.drop_log.record(dropped) {
            tracing::error!(
                device_id = %self.config.device,
                dropped = count,
                dropped_total = self.buffer.stats().dropped_total,
                max_bytes = self.config.buffer_max_bytes,
                "buffer full: the oldest readings were dropped and are lost; restore the broker connection or raise buffer.max_bytes"
            );
        }
        self.status.last_seq.store(seq, Ordering::Relaxed);
        self.status.update(&self.buffer);
        if self.last_state_flush.elapsed() >= STATE_FLUSH_INTERVAL {
            self.flush_state();
        }
    }

    fn flush_state(&mut self) {
        self.last_state_flush = Instant::now();
        if let Err(error) = self.buffer.flush_state() {
            tracing::warn!(%error, "cannot save the buffer state; after a crash some readings may be sent twice");
        }
    }

    fn pump(&mut self) {
        if self.stopping {
            return;
        }
        if let Some(connection) = self.connection.as_mut() {
            connection.pump(&mut self.buffer);
        }
    }

    fn queue_ack(&mut self, ack: Ack) {
        self.pending_acks.push_back(ack);
        while self.pending_acks.len() > MAX_PENDING_ACKS {
            if let Some(lost) = self.pending_acks.pop_front() {
                tracing::warn!(command_id = ?lost.id, "dropping an ack that could not be sent while the broker was unreachable");
            }
        }
    }

    fn send_acks(&mut self) {
        let Some(connection) = self.connection.as_mut().filter(|connection| connection.connected) else { return };
        let topic = protocol::ack_topic(self.config.device.as_str());
        while let Some(ack) = self.pending_acks.front() {
            let payload = serde_json::to_vec(ack).unwrap_or_default();
            if !connection.publish_other(topic.clone(), payload, false) {
                break;
            }
            self.pending_acks.pop_front();
        }
    }

    fn handle_event(&mut self, event: Option<Result<Event, ConnectionError>>) {
        match event {
            Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => self.on_connected(),
            Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if let Some(connection) = self.connection.as_mut() {
                    if let Some(sent) = connection.requested.pop_front() {
                        connection.awaiting.insert(pkid, sent);
                    }
                }
            }
            Some(Ok(Event::Incoming(Packet::PubAck(puback)))) => self.on_puback(puback.pkid),
            Some(Ok(Event::Incoming(Packet::Publish(publish)))) => self.on_command(publish),
            Some(Ok(Event::Incoming(Packet::SubAck(suback)))) => {
                if suback.return_codes.iter().any(|code| matches!(code, SubscribeReasonCode::Failure)) {
                    tracing::error!(topic = %self.command_topic, "the broker rejected the command subscription, so commands will not reach this rig. Check the broker's access rules");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => self.on_disconnected(Some(error)),
            None => self.on_disconnected(None),
        }
    }

    fn on_connected(&mut self) {
        let device = self.config.device.as_str().to_owned();
        let Some(connection) = self.connection.as_mut() else { return };
        connection.connected = true;
        self.backoff = self.config.mqtt.reconnect_min;
        self.status.connected.store(true, Ordering::Relaxed);
        let outage = self.outage_since.take().map(|since| since.elapsed());
        tracing::info!(
            device_id = %device,
            outage_s = outage.map(|outage| outage.as_secs_f64()),
            buffered = self.buffer.stats().records,
            "connected to the broker"
        );
        // Subscribe before announcing `online`, so that a server that receives `online` can send commands at once.
        if connection.client.try_subscribe(self.command_topic.clone(), QoS::AtLeastOnce).is_err() {
            tracing::warn!(topic = %self.command_topic, "cannot subscribe to commands on this connection");
        }
        connection.publish_other(protocol::status_topic(&device), protocol::STATUS_ONLINE.as_bytes().to_vec(), true);
        self.buffer.requeue_in_flight();
        self.pump();
        self.send_acks();
    }

    fn on_puback(&mut self, pkid: u16) {
        let Some(connection) = self.connection.as_mut() else { return };
        let Some(Sent::Telemetry(seq)) = connection.awaiting.remove(&pkid) else { return };
        connection.telemetry_in_flight = connection.telemetry_in_flight.saturating_sub(1);
        match self.buffer.ack(seq) {
            Ok(_) => {
                self.status.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, seq, "cannot remove a sent segment from the buffer"),
        }
        self.status.update(&self.buffer);
        self.pump();
    }

    fn on_disconnected(&mut self, error: Option<ConnectionError>) {
        let was_connected = self.connection.as_ref().is_some_and(|connection| connection.connected);
        self.connection = None;
        self.status.connected.store(false, Ordering::Relaxed);
        self.buffer.requeue_in_flight();
        let reason = error.map_or_else(|| "the connection task ended".to_owned(), |error| error.to_string());
        let broker = format!("{}:{}", self.config.mqtt.host, self.config.mqtt.port);
        if was_connected {
            tracing::warn!(device_id = %self.config.device, %broker, %reason, "lost the broker connection; readings are buffered on disk until it is back");
            self.outage_since = Some(Instant::now());
        } else if self.outage_since.is_none() {
            tracing::warn!(device_id = %self.config.device, %broker, %reason, "cannot reach the broker; readings are buffered on disk until it is reachable");
            self.outage_since = Some(Instant::now());
        } else {
            tracing::debug!(%broker, %reason, retry_in_ms = self.backoff.as_millis() as u64, "broker still unreachable");
        }
        self.retry_at = tokio::time::Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.mqtt.reconnect_max);
    }

    fn on_command(&mut self, publish: Publish) {
        if publish.topic != self.command_topic {
            return;
        }
        if publish.retain {
            tracing::warn!(
                device_id = %self.config.device,
                topic = %publish.topic,
                "ignoring a retained command: commands are carried out only when published live. Clear it by publishing an empty retained message on this topic"
            );
            return;
        }
        match protocol::parse_command(&publish.payload) {
            Ok(command) => {
                let id = command.id.clone();
                if self.commands.try_send(command).is_err() {
                    let busy = Ack::new(
                        Some(id),
                        false,
                        AckCode::CommandFailed,
                        format!("the agent already has {COMMAND_QUEUE} commands waiting; send the command again later"),
                        format!("l'agent a déjà {COMMAND_QUEUE} commandes en attente ; renvoyez la commande plus tard"),
                    );
                    self.queue_ack(busy);
                }
            }
            Err(rejected) => {
                tracing::warn!(device_id = %self.config.device, command_id = ?rejected.id, error = %rejected.error, "rejected an invalid command");
                self.queue_ack(Ack::invalid(rejected.id, &rejected.error));
            }
        }
        self.send_acks();
    }

    /// Waits briefly for in-flight records, then publishes `offline` and disconnects.
    async fn shut_down(&mut self) {
        let device = self.config.device.as_str().to_owned();
        self.stopping = true;
        if self.connection.as_ref().is_some_and(|connection| connection.connected) {
            self.drain_in_flight().await;
        }
        if let Some(connection) = self.connection.as_mut().filter(|connection| connection.connected) {
            connection.publish_other(protocol::status_topic(&device), protocol::STATUS_OFFLINE.as_bytes().to_vec(), true);
            let _ = connection.client.try_disconnect();
            // The event task ends after sending DISCONNECT; wait for it so the packets go out.
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN, async {
                while let Some(Ok(_)) = connection.events.recv().await {}
            })
            .await;
        }
        self.connection = None;
        self.status.connected.store(false, Ordering::Relaxed);
        tracing::info!(device_id = %device, buffered = self.buffer.stats().records, "agent stopped");
    }

    /// Handles PUBACKs until no record is in flight or [`SHUTDOWN_DRAIN`] has passed.
    async fn drain_in_flight(&mut self) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
        while self.connection.as_ref().is_some_and(|connection| connection.telemetry_in_flight > 0) {
            match tokio::time::timeout_at(deadline, next_event(&mut self.connection)).await {
                Ok(event @ Some(Ok(Event::Incoming(Packet::PubAck(_)) | Event::Outgoing(Outgoing::Publish(_))))) => self.handle_event(event),
                Ok(Some(Ok(_))) => {}
                Ok(other) => {
                    self.handle_event(other);
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_logs_first_then_waits() {
        let mut limiter = LogLimiter::default();
        assert_eq!(limiter.record(0), None);
        assert_eq!(limiter.record(3), Some(3));
        assert_eq!(limiter.record(2), None);
        limiter.last = Instant::now().checked_sub(REPEAT_LOG_INTERVAL);
        assert_eq!(limiter.record(0), Some(2));
    }

    #[test]
    fn device_seed_is_stable() {
        assert_eq!(device_seed("rig-01"), device_seed("rig-01"));
        assert_ne!(device_seed("rig-01"), device_seed("rig-02"));
    }
}
