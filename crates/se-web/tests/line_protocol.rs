//! InfluxDB line protocol write routes, against an in-process server on
//! 127.0.0.1 with a real SQLite store in a temporary directory.

use std::io::Write;
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::StatusCode;
use se_core::{now_ms, DeviceId, Metric, Reading, TimestampMs};
use se_store::{IngestErrorQuery, RawQuery, SqliteStore, Store};
use se_web::{Health, WebState, MAX_WRITE_BODY_BYTES};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "telegraf-write-token-1";

struct TestServer {
    base: String,
    store: Arc<SqliteStore>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), se_web::WebError>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(tokens: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let state = WebState::new(store.clone(), se_web::live_channel(), Arc::new(Health::new()))
            .with_write_tokens(tokens.iter().copied());
        let listener = se_web::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(se_web::serve(listener, state, shutdown.clone()));
        TestServer {
            base,
            store,
            shutdown,
            task,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends `body` to `/api/v2/write` with the test token.
    async fn write_v2(&self, precision: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let url = self.url(&format!(
            "/api/v2/write?org=farm&bucket=telegraf&precision={precision}"
        ));
        reqwest::Client::new()
            .post(url)
            .header("Authorization", format!("Token {TOKEN}"))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn readings(&self, device: &str, metric: Metric) -> Vec<Reading> {
        let query = RawQuery {
            device: DeviceId::parse(device).unwrap(),
            channel: None,
            metric: Some(metric),
            from_ms: 0,
            to_ms: now_ms() + 3_600_000,
            limit: 1000,
        };
        self.store.raw_readings(&query).await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Formats a line as Telegraf's `inputs.nvidia_smi` writes it, timestamp in ns.
fn nvidia_smi_line(host: &str, index: u32, power_w: f64, ts_ns: i64) -> String {
    format!(
        "nvidia_smi,compute_mode=Default,host={host},index={index},name=NVIDIA\\ GeForce\\ RTX\\ 3090,pstate=P2,uuid=GPU-5a3c1f7e-0000-4000-8000-00000000000{index} \
         clocks_current_sm=1695i,fan_speed=65i,memory_total=24576i,memory_used=2345i,power_draw={power_w},power_limit=300,temperature_gpu=63i,utilization_gpu=100i {ts_ns}\n"
    )
}

/// Returns a recent time in ms, which the decoder keeps as the device time.
fn recent_ms() -> TimestampMs {
    now_ms() - 120_000
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn json(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[tokio::test]
async fn nvidia_smi_line_is_stored() {
    let server = TestServer::start(&[TOKEN]).await;
    let ts_ms = recent_ms();
    let body = nvidia_smi_line("rig-07", 0, 285.42, ts_ms * 1_000_000);

    let response = server.write_v2("ns", body).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let power = server.readings("rig-07", Metric::Power).await;
    assert_eq!(power.len(), 1);
    assert_eq!(power[0].channel.as_str(), "gpu0");
    assert_eq!(power[0].value, 285.42);
    assert_eq!(power[0].ts_ms, ts_ms);
    let temperature = server.readings("rig-07", Metric::Temperature).await;
    assert_eq!(temperature.len(), 1);
    assert_eq!(temperature[0].value, 63.0);
    let limit = server.readings("rig-07", Metric::PowerLimit).await;
    assert_eq!(limit[0].value, 300.0);
    server.stop().await;
}

#[tokio::test]
async fn v1_write_accepts_all_credentials() {
    let server = TestServer::start(&[TOKEN]).await;
    let client = reqwest::Client::new();
    let ts_ns = recent_ms() * 1_000_000;

    let with_header = client
        .post(server.url("/write?db=telegraf&precision=n"))
        .header("Authorization", format!("Token {TOKEN}"))
        .body(nvidia_smi_line("rig-a", 0, 100.0, ts_ns))
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status(), StatusCode::NO_CONTENT, "Token header");

    let with_query = client
        .post(server.url(&format!("/write?db=telegraf&u=telegraf&p={TOKEN}")))
        .body(nvidia_smi_line("rig-b", 0, 110.0, ts_ns))
        .send()
        .await
        .unwrap();
    assert_eq!(with_query.status(), StatusCode::NO_CONTENT, "u and p parameters");

    let with_basic = client
        .post(server.url("/write?db=telegraf"))
        .basic_auth("telegraf", Some(TOKEN))
        .body(nvidia_smi_line("rig-c", 0, 120.0, ts_ns))
        .send()
        .await
        .unwrap();
    assert_eq!(with_basic.status(), StatusCode::NO_CONTENT, "HTTP Basic");

    for (device, watts) in [("rig-a", 100.0), ("rig-b", 110.0), ("rig-c", 120.0)] {
        let power = server.readings(device, Metric::Power).await;
        assert_eq!(power.len(), 1, "readings of {device}");
        assert_eq!(power[0].value, watts, "power of {device}");
    }
    server.stop().await;
}

#[tokio::test]
async fn v2_write_rejects_password_parameter() {
    let server = TestServer::start(&[TOKEN]).await;
    let response = reqwest::Client::new()
        .post(server.url(&format!("/api/v2/write?bucket=b&p={TOKEN}")))
        .body(nvidia_smi_line("rig-07", 0, 1.0, recent_ms() * 1_000_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn gzip_body_is_decompressed() {
    let server = TestServer::start(&[TOKEN]).await;
    let ts_ns = recent_ms() * 1_000_000;
    let lines = [
        nvidia_smi_line("rig-gz", 0, 201.5, ts_ns),
        nvidia_smi_line("rig-gz", 1, 202.5, ts_ns),
    ]
    .concat();

    let response = reqwest::Client::new()
        .post(server.url("/api/v2/write?org=farm&bucket=telegraf"))
        .header("Authorization", format!("Token {TOKEN}"))
        .header("Content-Encoding", "gzip")
        .body(gzip(lines.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let power = server.readings("rig-gz", Metric::Power).await;
    let values: Vec<f64> = power.iter().map(|reading| reading.value).collect();
    assert_eq!(values, vec![201.5, 202.5]);
    server.stop().await;
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let server = TestServer::start(&[TOKEN]).await;
    let response = reqwest::Client::new()
        .post(server.url("/api/v2/write?bucket=telegraf"))
        .header("Authorization", "Token not-the-token")
        .body(nvidia_smi_line("rig-07", 0, 1.0, recent_ms() * 1_000_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = json(response).await;
    assert_eq!(body["code"], "unauthorized");
    let stored = server.readings("rig-07", Metric::Power).await;
    assert!(stored.is_empty(), "stored {stored:?}");
    server.stop().await;
}

#[tokio::test]
async fn missing_token_is_unauthorized() {
    let server = TestServer::start(&[TOKEN]).await;
    let response = reqwest::Client::new()
        .post(server.url("/write?db=telegraf"))
        .body(nvidia_smi_line("rig-07", 0, 1.0, recent_ms() * 1_000_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = json(response).await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("Authorization: Token"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn no_configured_token_is_forbidden() {
    let server = TestServer::start(&[]).await;
    let response = reqwest::Client::new()
        .post(server.url("/api/v2/write?bucket=telegraf"))
        .header("Authorization", "Token anything")
        .body(nvidia_smi_line("rig-07", 0, 1.0, recent_ms() * 1_000_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = json(response).await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("--write-token"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn forbidden_message_in_french() {
    let server = TestServer::start(&[]).await;
    let response = reqwest::Client::new()
        .post(server.url("/api/v2/write?bucket=telegraf&lang=fr"))
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = json(response).await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("désactivées"), "{message}");
    assert!(body.get("error").is_none(), "InfluxDB 2 shape: {body}");
    server.stop().await;
}

#[tokio::test]
async fn bad_line_keeps_the_others() {
    let server = TestServer::start(&[TOKEN]).await;
    let ts_ns = recent_ms() * 1_000_000;
    let body = [
        nvidia_smi_line("rig-07", 0, 280.0, ts_ns),
        "this is not line protocol\n".to_owned(),
        nvidia_smi_line("rig-07", 1, 281.0, ts_ns),
    ]
    .concat();

    let response = server.write_v2("ns", body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reply = json(response).await;
    assert_eq!(reply["code"], "invalid");
    let message = reply["message"].as_str().unwrap();
    assert!(message.starts_with("partial write:"), "{message}");
    assert!(message.contains("line 2"), "{message}");

    let power = server.readings("rig-07", Metric::Power).await;
    let values: Vec<f64> = power.iter().map(|reading| reading.value).collect();
    assert_eq!(values, vec![280.0, 281.0]);
    let errors = server
        .store
        .ingest_errors(&IngestErrorQuery {
            limit: 10,
            ..IngestErrorQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(errors.recent.len(), 1, "{:?}", errors.recent);
    server.stop().await;
}

#[tokio::test]
async fn v1_partial_write_has_error_field() {
    let server = TestServer::start(&[TOKEN]).await;
    let response = reqwest::Client::new()
        .post(server.url("/write?db=telegraf"))
        .header("Authorization", format!("Token {TOKEN}"))
        .body("garbage\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reply = json(response).await;
    let error = reply["error"].as_str().unwrap();
    assert!(error.starts_with("partial write:"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn precision_sets_timestamp_unit() {
    let server = TestServer::start(&[TOKEN]).await;
    let seconds = recent_ms() / 1000;
    let millis = recent_ms() + 7;

    let in_seconds = format!("power,device=rig-s,channel=main power_w=10 {seconds}\n");
    let response = server.write_v2("s", in_seconds).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "precision s");
    let in_millis = format!("power,device=rig-ms,channel=main power_w=20 {millis}\n");
    let response = server.write_v2("ms", in_millis).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "precision ms");

    let stored_s = server.readings("rig-s", Metric::Power).await;
    assert_eq!(stored_s[0].ts_ms, seconds * 1000);
    let stored_ms = server.readings("rig-ms", Metric::Power).await;
    assert_eq!(stored_ms[0].ts_ms, millis);
    server.stop().await;
}

#[tokio::test]
async fn unknown_precision_is_rejected() {
    let server = TestServer::start(&[TOKEN]).await;
    let response = server.write_v2("h", "power,device=rig-h power_w=1\n").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let message = json(response).await["message"].as_str().unwrap().to_owned();
    assert!(message.contains("\"h\""), "{message}");
    assert!(message.contains("ns, us, ms, s"), "{message}");
    let stored = server.readings("rig-h", Metric::Power).await;
    assert!(stored.is_empty(), "stored {stored:?}");
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let server = TestServer::start(&[TOKEN]).await;
    let body = vec![b'\n'; MAX_WRITE_BODY_BYTES + 1];
    let response = server.write_v2("ns", body).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let message = json(response).await["message"].as_str().unwrap().to_owned();
    assert!(message.contains("metric_batch_size"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn oversized_gzip_content_is_rejected() {
    let server = TestServer::start(&[TOKEN]).await;
    let compressed = gzip(&vec![b'\n'; MAX_WRITE_BODY_BYTES + 1]);
    let response = reqwest::Client::new()
        .post(server.url("/api/v2/write?bucket=telegraf"))
        .header("Authorization", format!("Token {TOKEN}"))
        .header("Content-Encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    server.stop().await;
}

#[tokio::test]
async fn unsupported_encoding_is_rejected() {
    let server = TestServer::start(&[TOKEN]).await;
    let response = reqwest::Client::new()
        .post(server.url("/api/v2/write?bucket=telegraf"))
        .header("Authorization", format!("Token {TOKEN}"))
        .header("Content-Encoding", "br")
        .body("power,device=rig-br power_w=1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    server.stop().await;
}
