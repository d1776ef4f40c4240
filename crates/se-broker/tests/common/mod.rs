//! Helpers shared by the integration tests: a broker on 127.0.0.1 with port 0, and rumqttc
//! clients whose event loops run in their own tasks.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use se_broker::{Broker, BrokerConfig, BrokerHandle};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single wait in a test, so that a bug fails the test instead of hanging
/// it. Not a speed assertion.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestBroker {
    pub addr: SocketAddr,
    pub handle: BrokerHandle,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl TestBroker {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = within(self.task).await;
    }
}

pub fn loopback_config() -> BrokerConfig {
    BrokerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Binds a broker on a free loopback port and runs it in a task. `internal` may create
/// internal subscribers before the broker starts.
pub async fn start_broker<T>(
    config: BrokerConfig,
    internal: impl FnOnce(&Broker) -> T,
) -> (TestBroker, T) {
    let broker = Broker::bind(config)
        .await
        .expect("bind broker on a free loopback port");
    let extra = internal(&broker);
    let addr = broker.local_addr();
    let handle = broker.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(broker.run(shutdown.clone()));
    (
        TestBroker {
            addr,
            handle,
            shutdown,
            task,
        },
        extra,
    )
}

/// Awaits `future` for at most [`WAIT`], panicking with a clear message on timeout.
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("test step did not finish within 10 s")
}

pub mod v4 {
    use super::*;
    use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions};

    pub fn options(id: &str, port: u16) -> MqttOptions {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    /// Starts a client whose event loop forwards every event into the returned channel and
    /// stops at the first connection error (which it forwards too).
    pub fn connect(
        options: MqttOptions,
    ) -> (
        AsyncClient,
        mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
        JoinHandle<()>,
    ) {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event).is_err() || failed {
                    return;
                }
            }
        });
        (client, receiver, task)
    }

    /// Waits for the next event matching `select`, skipping others. Panics on a connection
    /// error or when the event loop ended.
    pub async fn next_matching<T>(
        events: &mut mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
        mut select: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        within(async {
            loop {
                match events.recv().await {
                    Some(Ok(event)) => {
                        if let Some(found) = select(&event) {
                            return found;
                        }
                    }
                    Some(Err(error)) => {
                        panic!("connection error while waiting for an event: {error}")
                    }
                    None => panic!("event loop ended while waiting for an event"),
                }
            }
        })
        .await
    }

    /// Waits for the first connection error and returns it.
    pub async fn next_error(
        events: &mut mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    ) -> ConnectionError {
        within(async {
            loop {
                match events.recv().await {
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return error,
                    None => panic!("event loop ended without an error"),
                }
            }
        })
        .await
    }
}

pub mod v5 {
    use super::*;
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};

    pub fn options(id: &str, port: u16) -> MqttOptions {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    /// Same as [`super::v4::connect`] for MQTT 5.
    pub fn connect(
        options: MqttOptions,
    ) -> (
        AsyncClient,
        mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
        JoinHandle<()>,
    ) {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event).is_err() || failed {
                    return;
                }
            }
        });
        (client, receiver, task)
    }

    pub async fn next_matching<T>(
        events: &mut mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
        mut select: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        within(async {
            loop {
                match events.recv().await {
                    Some(Ok(event)) => {
                        if let Some(found) = select(&event) {
                            return found;
                        }
                    }
                    Some(Err(error)) => {
                        panic!("connection error while waiting for an event: {error}")
                    }
                    None => panic!("event loop ended while waiting for an event"),
                }
            }
        })
        .await
    }

    pub async fn next_error(
        events: &mut mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    ) -> ConnectionError {
        within(async {
            loop {
                match events.recv().await {
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return error,
                    None => panic!("event loop ended without an error"),
                }
            }
        })
        .await
    }
}

pub mod raw {
    use super::*;
    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4::{Connect, Packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Opens a TCP connection, sends `connect` encoded by the rumqttc MQTT 3.1.1 codec and
    /// returns the stream with the first packet the broker sends back.
    pub async fn connect(port: u16, connect: Connect) -> (TcpStream, Packet) {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to broker");
        let mut buf = BytesMut::new();
        Packet::Connect(connect)
            .write(&mut buf, usize::MAX)
            .expect("encode CONNECT");
        stream.write_all(&buf).await.expect("send CONNECT");
        let packet = read_packet(&mut stream)
            .await
            .expect("broker answered CONNECT");
        (stream, packet)
    }

    /// Reads one packet; `None` when the broker closed the connection first.
    pub async fn read_packet(stream: &mut TcpStream) -> Option<Packet> {
        let mut buf = BytesMut::new();
        within(async {
            loop {
                if let Ok(packet) = Packet::read(&mut buf, 1 << 20) {
                    return Some(packet);
                }
                match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }
}
