//! CONNECT handshake: protocol detection, client identifier, authentication and CONNACK.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tracing::{debug, info, warn, Span};

use super::ConnectionControl;
use crate::broker::Shared;
use crate::config::{AuthDecision, Credentials};
use crate::message::Message;
use crate::protocol::{
    detect_version, Codec, ConnAckInfo, ConnectCode, ConnectRequest, Detected, EncodeError,
    Outbound, Version,
};
use crate::session::Session;
use crate::stats::Counters;
use crate::topic::is_valid_topic_name;

/// Connection state agreed in the handshake.
pub(crate) struct Accepted {
    pub client_id: String,
    pub codec: Codec,
    pub session: Arc<Session>,
    pub control: Arc<ConnectionControl>,
    pub will: Option<Message>,
    /// Keep alive in seconds; 0 disables the check.
    pub keep_alive: u16,
    /// Maximum number of QoS 1 messages inflight to the client.
    pub window: usize,
}

/// Runs the handshake. Returns the accepted connection and the bytes read after the CONNECT,
/// or `None` when the connection was rejected or closed.
pub(super) async fn run(stream: &mut TcpStream, shared: &Shared) -> Option<(Accepted, BytesMut)> {
    let (codec, request, leftover) = read_connect(stream, shared).await?;

    let Some((client_id, assigned)) = choose_client_id(codec.version, &request, shared) else {
        info!("rejected MQTT 3.1.1 client: empty client identifier with clean session off");
        reject_connect(stream, &codec, ConnectCode::ClientIdRejected, shared).await;
        return None;
    };
    Span::current().record("client_id", client_id.as_str());

    if let Some(code) = rejection_code(&client_id, &request, shared).await {
        reject_connect(stream, &codec, code, shared).await;
        return None;
    }
    let accepted = accept(stream, codec, request, client_id, assigned, shared).await?;
    Some((accepted, leftover))
}

/// Returns the CONNACK code that rejects this CONNECT, or `None` when it is accepted.
async fn rejection_code(
    client_id: &str,
    request: &ConnectRequest,
    shared: &Shared,
) -> Option<ConnectCode> {
    if let Some(code) = check_request(request) {
        return Some(code);
    }
    match authenticate(client_id, request, shared).await {
        AuthDecision::Allow => None,
        AuthDecision::BadCredentials => Some(ConnectCode::BadCredentials),
        AuthDecision::NotAuthorized => Some(ConnectCode::NotAuthorized),
    }
}

/// Attaches the session and sends the CONNACK.
async fn accept(
    stream: &mut TcpStream,
    mut codec: Codec,
    request: ConnectRequest,
    client_id: String,
    assigned: bool,
    shared: &Shared,
) -> Option<Accepted> {
    codec.set_max_outgoing(request.max_packet_size);
    let control = Arc::new(ConnectionControl::new(shared.next_connection_id()));
    let attached = shared.router.attach(
        &client_id,
        request.clean_start,
        request.session_expiry,
        Arc::clone(&control),
    );
    let connack = ConnAckInfo {
        code: ConnectCode::Accepted,
        session_present: attached.session_present,
        assigned_client_id: assigned.then(|| client_id.clone()),
        receive_maximum: shared.config.max_pending_acks,
        max_packet_size: u32::try_from(shared.config.max_packet_size).unwrap_or(u32::MAX),
    };
    if let Err(error) = write_packet(
        stream,
        &codec,
        &Outbound::ConnAck(connack),
        shared.config.write_timeout,
    )
    .await
    {
        debug!(%error, "failed to send CONNACK");
        shared
            .router
            .detach(&attached.session, control.id, std::time::Instant::now());
        return None;
    }

    info!(
        client_id = %client_id,
        protocol = codec.version.label(),
        clean_start = request.clean_start,
        session_present = attached.session_present,
        keep_alive_s = request.keep_alive,
        "MQTT client connected"
    );
    let client_window = request.receive_maximum.unwrap_or(u16::MAX);
    let window = usize::from(shared.config.max_inflight.min(client_window).max(1));
    Some(Accepted {
        client_id,
        codec,
        session: attached.session,
        control,
        will: request.will,
        keep_alive: request.keep_alive,
        window,
    })
}

/// Reads until a whole CONNECT is buffered, choosing the codec from its protocol level.
async fn read_connect(
    stream: &mut TcpStream,
    shared: &Shared,
) -> Option<(Codec, ConnectRequest, BytesMut)> {
    let deadline = Instant::now() + shared.config.connect_timeout;
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match detect_version(&buf) {
            Detected::Incomplete => {}
            Detected::Version(version) => {
                let codec = Codec::new(version, shared.config.max_packet_size);
                match codec.decode_connect(&mut buf) {
                    Ok(Some(request)) => return Some((codec, request, buf)),
                    Ok(None) => {}
                    Err(error) => {
                        warn!(%error, "invalid MQTT CONNECT packet; closing the connection");
                        return None;
                    }
                }
            }
            Detected::UnsupportedLevel(level) => {
                info!(level, "rejected MQTT CONNECT: unsupported protocol level (supported: 4 = 3.1.1, 5 = 5)");
                let codec = Codec::new(Version::V311, shared.config.max_packet_size);
                reject_connect(stream, &codec, ConnectCode::UnsupportedProtocol, shared).await;
                return None;
            }
            Detected::NotConnect => {
                warn!("first packet is not an MQTT CONNECT; closing the connection");
                return None;
            }
        }
        if !read_more(stream, &mut buf, deadline, shared).await {
            return None;
        }
    }
}

async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
    shared: &Shared,
) -> bool {
    tokio::select! {
        _ = shared.shutdown.cancelled() => false,
        read = timeout_at(deadline, stream.read_buf(buf)) => match read {
            Ok(Ok(0)) => false,
            Ok(Ok(_)) => true,
            Ok(Err(error)) => {
                debug!(%error, "read failed before CONNECT");
                false
            }
            Err(_) => {
                info!(timeout = ?shared.config.connect_timeout, "no CONNECT packet within connect_timeout; closing the connection");
                false
            }
        },
    }
}

/// Returns the client identifier and whether the broker assigned it. `None` means the
/// identifier must be rejected: MQTT 3.1.1 allows an empty identifier only with a clean
/// session (section 3.1.3.1), MQTT 5 always allows it.
fn choose_client_id(
    version: Version,
    request: &ConnectRequest,
    shared: &Shared,
) -> Option<(String, bool)> {
    if !request.client_id.is_empty() {
        return Some((request.client_id.clone(), false));
    }
    if version == Version::V311 && !request.clean_start {
        return None;
    }
    Some((shared.generate_client_id(), true))
}

/// Checks what the broker does not support or what is invalid in the CONNECT itself.
fn check_request(request: &ConnectRequest) -> Option<ConnectCode> {
    if let Some(method) = &request.authentication_method {
        info!(
            method,
            "rejected MQTT 5 client: enhanced authentication is not supported"
        );
        return Some(ConnectCode::BadAuthenticationMethod);
    }
    let will_topic = request.will.as_ref().map(|will| &*will.topic);
    if let Some(topic) = will_topic.filter(|topic| !is_valid_topic_name(topic)) {
        warn!(
            will_topic = topic,
            "rejected MQTT client: invalid will topic"
        );
        return Some(ConnectCode::TopicNameInvalid);
    }
    None
}

/// Checks the credentials and logs a rejection, at most one line per 10 s with a count of
/// the rejections not logged.
async fn authenticate(client_id: &str, request: &ConnectRequest, shared: &Shared) -> AuthDecision {
    let decision = shared
        .config
        .auth
        .check(credentials(client_id, request))
        .await;
    if decision == AuthDecision::Allow {
        return decision;
    }
    if let Some(suppressed) = shared.auth_rejection_log() {
        warn!(
            client_id,
            username = request.username.as_deref().unwrap_or(""),
            ?decision,
            rejections_not_logged = suppressed,
            "rejected MQTT client: authentication failed"
        );
    }
    decision
}

fn credentials(client_id: &str, request: &ConnectRequest) -> Credentials {
    Credentials {
        client_id: client_id.to_owned(),
        username: request.username.clone(),
        password: request.password.clone(),
    }
}

/// Sends a rejecting CONNACK (when the protocol version has a code for it) and closes.
async fn reject_connect(stream: &mut TcpStream, codec: &Codec, code: ConnectCode, shared: &Shared) {
    Counters::add(&shared.counters.connections_rejected_total, 1);
    let connack = Outbound::ConnAck(ConnAckInfo::rejection(code));
    if let Err(error) = write_packet(stream, codec, &connack, shared.config.write_timeout).await {
        debug!(%error, "failed to send the rejecting CONNACK");
    }
    // The connection is dropped right after; a failed shutdown changes nothing.
    let _ = stream.shutdown().await;
}

async fn write_packet(
    stream: &mut TcpStream,
    codec: &Codec,
    packet: &Outbound,
    limit: Duration,
) -> Result<(), String> {
    let mut buf = BytesMut::new();
    match codec.encode(packet, &mut buf) {
        Ok(()) => {}
        Err(EncodeError::NotRepresentable(_)) => return Ok(()),
        Err(error) => return Err(error.to_string()),
    }
    match timeout(limit, stream.write_all(&buf)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("write timed out after {limit:?}")),
    }
}
