//! HTTP API tests against an in-process server on 127.0.0.1 with a real
//! SQLite store in a temporary directory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use se_core::{now_ms, DeviceId, Metric, Reading, RejectReason, Rejection};
use se_store::{CommandRecord, CommandStatus, NewUser, Role, SqliteStore, Store};
use se_web::{Health, LiveSender, LiveUpdate, LiveValue, WebState};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ADMIN_PASSWORD: &str = "admin-password-42";
const OWNER_PASSWORD: &str = "owner-password-42";

struct TestServer {
    base: String,
    store: Arc<SqliteStore>,
    live: LiveSender,
    health: Arc<Health>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), se_web::WebError>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        se_web::ensure_admin(store.as_ref(), Some(ADMIN_PASSWORD.to_owned()))
            .await
            .unwrap();
        let owner = NewUser {
            username: "owner".into(),
            password_hash: se_web::hash_password(OWNER_PASSWORD).unwrap(),
            role: Role::BuildingOwner,
            must_change_password: false,
        };
        store.create_user(&owner).await.unwrap();

        let live = se_web::live_channel();
        let health = Arc::new(Health::new());
        let state = WebState::new(store.clone(), live.clone(), health.clone());
        let listener = se_web::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(se_web::serve(listener, state, shutdown.clone()));
        TestServer {
            base,
            store,
            live,
            health,
            shutdown,
            task,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn login(&self, username: &str, password: &str) -> reqwest::Client {
        let client = client();
        let response = client
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "login of {username}");
        client
    }

    async fn admin(&self) -> reqwest::Client {
        self.login("admin", ADMIN_PASSWORD).await
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

fn rig() -> DeviceId {
    DeviceId::parse("rig-01").unwrap()
}

async fn write_rig_readings(store: &SqliteStore) -> i64 {
    let now = now_ms();
    let mut readings = Vec::new();
    for step in 0..10 {
        let ts = now - 600_000 + step * 60_000;
        readings.push(Reading::new(
            rig(),
            "gpu0",
            Metric::Power,
            ts,
            200.0 + step as f64,
        ));
        readings.push(Reading::new(rig(), "gpu1", Metric::Power, ts, 100.0));
    }
    store.write_readings(&readings).await.unwrap();
    now
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code, message)
}

#[tokio::test]
async fn login_sets_strict_session_cookie() {
    let server = TestServer::start().await;
    let response = client()
        .post(server.url("/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("se_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
}

#[tokio::test]
async fn session_identifies_user_in_me() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let me: Value = client
        .get(server.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["username"], "admin");
    assert_eq!(me["user"]["role"], "admin");
}

#[tokio::test]
async fn repeated_logins_are_throttled() {
    let server = TestServer::start().await;
    let attempt = |username: &'static str, password: &'static str| {
        client()
            .post(server.url("/api/v1/auth/login"))
            .header("Accept-Language", "fr")
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
    };
    for guess in 1..=10 {
        let response = attempt("admin", "not-the-password").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "guess {guess}");
    }

    // Over the limit even the right password waits, so guessing gains nothing.
    let throttled = attempt("admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry_after), "Retry-After {retry_after}");
    let (_, code, message) = error_of(throttled).await;
    assert_eq!(code, "too_many_login_attempts");
    assert!(message.starts_with("Trop de tentatives de connexion pour ce compte. Attendez"), "{message}");
    assert!(message.contains(&format!("{retry_after} s")), "{message}");

    // Another account is not affected.
    let other = attempt("nobody", "not-the-password").await.unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unanswered_command_becomes_overdue() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let now = now_ms();
    for (id, age_ms, status) in [("cmd-old", 600_000, CommandStatus::Sent), ("cmd-new", 1_000, CommandStatus::Sent), ("cmd-done", 600_000, CommandStatus::Succeeded)] {
        let record = CommandRecord {
            id: id.into(),
            device: rig(),
            username: "admin".into(),
            action: "stop_miner".into(),
            request_json: format!(r#"{{"id":"{id}","action":"stop_miner"}}"#),
            created_ms: now - age_ms,
            status,
            ack_json: None,
            acked_ms: None,
        };
        server.store.record_command(&record).await.unwrap();
    }
    let admin = server.admin().await;

    let listed: Value = admin.get(server.url("/api/v1/devices/rig-01/commands")).send().await.unwrap().json().await.unwrap();

    let overdue = |id: &str| listed.as_array().unwrap().iter().find(|command| command["id"] == id).map(|command| command["overdue"].clone());
    assert_eq!(overdue("cmd-old"), Some(Value::Bool(true)), "{listed}");
    assert_eq!(overdue("cmd-new"), Some(Value::Bool(false)), "{listed}");
    assert_eq!(overdue("cmd-done"), Some(Value::Bool(false)), "an answered command is never overdue: {listed}");
}

#[tokio::test]
async fn bad_credentials_share_one_message() {
    let server = TestServer::start().await;
    let attempt = |username: &'static str, password: &'static str| {
        client()
            .post(server.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
    };
    let (wrong_status, wrong_code, wrong_message) =
        error_of(attempt("admin", "not-the-password").await.unwrap()).await;
    let (unknown_status, _, unknown_message) =
        error_of(attempt("nobody", "not-the-password").await.unwrap()).await;
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_code, "bad_credentials");
    assert_eq!(wrong_message, unknown_message);
}

#[tokio::test]
async fn data_routes_require_session() {
    let server = TestServer::start().await;
    for path in [
        "/api/v1/devices",
        "/api/v1/stats",
        "/api/v1/ingest/errors",
        "/api/v1/live",
        "/api/v1/users",
    ] {
        let (status, code, _) =
            error_of(client().get(server.url(path)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(code, "not_authenticated", "{path}");
    }
}

#[tokio::test]
async fn logout_ends_the_session() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let logout = client
        .post(server.url("/api/v1/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let after = client
        .get(server.url("/api/v1/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn devices_list_shows_stored_readings() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;
    let devices: Value = client
        .get(server.url("/api/v1/devices"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = devices.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "rig-01");
    assert_eq!(list[0]["latest"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_device_returns_404() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let (status, code, message) = error_of(
        client
            .get(server.url("/api/v1/devices/rig-99"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code, "device_not_found");
    assert!(message.contains("\"rig-99\""), "{message}");
}

#[tokio::test]
async fn unknown_series_names_known_ones() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;

    let (status, code, message) = error_of(
        client
            .get(server.url("/api/v1/devices/rig-01/series?channel=gpu99&metric=power_w&range=24h&lang=fr"))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code, "series_not_found");
    assert!(message.starts_with("L'appareil \"rig-01\" n'a pas de série gpu99/power_w."), "{message}");
    assert!(message.contains("gpu0/power_w"), "lists the series that exist: {message}");
}

#[tokio::test]
async fn invalid_device_id_returns_400() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let (status, code, _) = error_of(
        client
            .get(server.url("/api/v1/devices/rig%20one"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "invalid_device_id");
}

#[tokio::test]
async fn series_with_range_returns_points() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;
    let response =
        client
            .get(server.url(
                "/api/v1/devices/rig-01/series?channel=gpu0&metric=power_w&range=1h&points=500",
            ))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let series: Value = response.json().await.unwrap();
    assert_eq!(series["unit"], "W");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 10);
    assert_eq!(points[0]["mean"], 200.0);
}

#[tokio::test]
async fn series_with_bounds_returns_window() {
    let server = TestServer::start().await;
    let now = write_rig_readings(&server.store).await;
    let client = server.admin().await;
    // The window contains the readings at now-600 s and now-540 s.
    let url = format!(
        "/api/v1/devices/rig-01/series?channel=gpu0&metric=power_w&from={}&to={}&points=500",
        now - 600_000,
        now - 500_000
    );
    let series: Value = client
        .get(server.url(&url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(series["points"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_metric_error_names_value() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;
    let response = client
        .get(server.url("/api/v1/devices/rig-01/series?channel=gpu0&metric=power_kw&range=1h"))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "unknown_metric");
    assert!(message.contains("\"power_kw\""), "{message}");
    assert!(message.contains("power_w"), "valid keys listed: {message}");
}

#[tokio::test]
async fn error_message_follows_lang_parameter() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;
    let response = client
        .get(
            server
                .url("/api/v1/devices/rig-01/series?channel=gpu0&metric=power_kw&range=1h&lang=fr"),
        )
        .send()
        .await
        .unwrap();
    let (_, _, message) = error_of(response).await;
    assert!(
        message.starts_with("Grandeur \"power_kw\" inconnue"),
        "{message}"
    );
}

#[tokio::test]
async fn error_message_follows_accept_language() {
    let server = TestServer::start().await;
    let response = client()
        .get(server.url("/api/v1/devices"))
        .header("Accept-Language", "fr-FR,fr;q=0.9")
        .send()
        .await
        .unwrap();
    let (_, _, message) = error_of(response).await;
    assert!(message.starts_with("Vous n'êtes pas connecté"), "{message}");
}

#[tokio::test]
async fn reversed_time_span_returns_400() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;
    let response = client
        .get(server.url("/api/v1/devices/rig-01/series?channel=gpu0&metric=power_w&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "empty_time_span");
}

#[tokio::test]
async fn readings_respect_limit() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;
    let readings: Value = client
        .get(server.url("/api/v1/devices/rig-01/readings?range=1h&limit=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(readings.as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn readings_limit_above_max_returns_400() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;
    let response = client
        .get(server.url("/api/v1/devices/rig-01/readings?limit=100001"))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "invalid_number");
    assert!(message.contains("100000"), "{message}");
}

#[tokio::test]
async fn ingest_errors_listed_with_descriptions() {
    let server = TestServer::start().await;
    let rejection = Rejection::new(
        RejectReason::NotANumber,
        "se/rig-01/gpu",
        "nan",
        "value \"nan\" is not a number",
    )
    .with_device(Some(rig()))
    .with_field("power_w");
    server
        .store
        .record_rejections(&[rejection], now_ms())
        .await
        .unwrap();
    let client = server.admin().await;
    let report: Value = client
        .get(server.url("/api/v1/ingest/errors?device=rig-01&lang=fr"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["counts"][0]["count"], 1);
    assert_eq!(report["recent"][0]["reason"], "not_a_number");
    assert_eq!(report["recent"][0]["value"], "nan");
    assert_eq!(
        report["recent"][0]["reason_text"],
        "la valeur n'est pas un nombre"
    );
}

#[tokio::test]
async fn unknown_reject_reason_returns_400() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let response = client
        .get(server.url("/api/v1/ingest/errors?reason=bogus"))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "unknown_reason");
    assert!(
        message.contains("not_a_number"),
        "valid codes listed: {message}"
    );
}

#[tokio::test]
async fn stats_count_stored_readings() {
    let server = TestServer::start().await;
    write_rig_readings(&server.store).await;
    let client = server.admin().await;
    let stats: Value = client
        .get(server.url("/api/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["readings"], 20);
    assert_eq!(stats["devices"], 1);
}

#[tokio::test]
async fn store_wide_routes_require_admin_role() {
    let server = TestServer::start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;
    let admin = server.admin().await;
    // Counts over the whole store would tell an owner about other owners' devices.
    for path in ["/api/v1/users", "/api/v1/stats"] {
        let (status, code, _) =
            error_of(owner.get(server.url(path)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(code, "forbidden", "{path}");
        let answer = admin.get(server.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn generated_password_must_be_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let password = se_web::ensure_admin(store.as_ref(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(password.chars().count() >= 16, "{password}");
    let state = WebState::new(
        store.clone(),
        se_web::live_channel(),
        Arc::new(Health::new()),
    );
    let listener = se_web::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(se_web::serve(listener, state, shutdown.clone()));

    let client = client();
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["user"]["must_change_password"], true);
    let (status, code, _) = error_of(
        client
            .get(format!("{base}/api/v1/devices"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code, "password_change_required");

    let change = client
        .post(format!("{base}/api/v1/auth/password"))
        .json(&serde_json::json!({ "current_password": password, "new_password": "a-new-long-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(change.status(), StatusCode::NO_CONTENT);
    let devices = client
        .get(format!("{base}/api/v1/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(devices.status(), StatusCode::OK);
    shutdown.cancel();
}

#[tokio::test]
async fn ensure_admin_runs_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let first = se_web::ensure_admin(&store, None).await.unwrap();
    let second = se_web::ensure_admin(&store, None).await.unwrap();
    assert!(first.is_some());
    assert_eq!(second, None);
}

#[tokio::test]
async fn short_new_password_returns_400() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let response = client
        .post(server.url("/api/v1/auth/password"))
        .json(&serde_json::json!({ "current_password": ADMIN_PASSWORD, "new_password": "short" }))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "password_too_short");
}

#[tokio::test]
async fn wrong_current_password_is_rejected() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let response = client
        .post(server.url("/api/v1/auth/password"))
        .json(&serde_json::json!({ "current_password": "not-the-password", "new_password": "another-long-one" }))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "current_password_incorrect");
}

#[tokio::test]
async fn malformed_login_body_returns_json_error() {
    let server = TestServer::start().await;
    let response = client()
        .post(server.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "invalid_json");
}

#[tokio::test]
async fn malformed_body_error_in_french() {
    let server = TestServer::start().await;
    let response = client()
        .post(server.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .header("Accept-Language", "fr-FR,fr;q=0.9")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "invalid_json");
    assert!(message.starts_with("Le corps de la requête"), "{message}");
    assert!(!message.contains("Failed to"), "{message}");
    assert!(message.contains("line 1"), "{message}");
}

#[tokio::test]
async fn unknown_api_route_returns_json_404() {
    let server = TestServer::start().await;
    let (status, code, message) = error_of(
        client()
            .get(server.url("/api/v1/nothing-here"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code, "route_not_found");
    assert!(message.contains("/api/v1/nothing-here"), "{message}");
}

#[tokio::test]
async fn wrong_method_and_content_type_named() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, code, message) = error_of(admin.delete(server.url("/api/v1/sites")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code, "method_not_allowed");
    assert!(message.starts_with("DELETE is not allowed on /api/v1/sites"), "{message}");

    let valid_json = r#"{"username": "x", "role": "admin"}"#;
    let (status, code, message) = error_of(admin.post(server.url("/api/v1/users?lang=fr")).body(valid_json).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(code, "missing_json_content_type");
    assert!(message.starts_with("La requête n'a pas d'en-tête Content-Type"), "{message}");
}

#[tokio::test]
async fn healthz_waits_for_every_part() {
    let server = TestServer::start().await;
    let before = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(before.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = before.json().await.unwrap();
    assert_eq!(
        body["not_running"],
        serde_json::json!(["broker", "store", "ingest"])
    );

    server.health.set_broker(true);
    server.health.set_store(true);
    let partial: Value = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(partial["not_running"], serde_json::json!(["ingest"]));

    server.health.set_ingest(true);
    let after = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

/// Reads an SSE response until `needle` appears, or fails after 10 s.
async fn read_until(response: &mut reqwest::Response, received: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !received.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in the stream within 10 s; got {received:?}"))
            .unwrap();
        let Some(chunk) = chunk else {
            panic!("stream ended before {needle:?}; got {received:?}");
        };
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn live_stream_delivers_broadcast_update() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let mut response = client.get(server.url("/api/v1/live")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut received = String::new();
    read_until(&mut response, &mut received, "event: ready").await;

    let update = LiveUpdate {
        device: rig(),
        ts_ms: 1_800_000_000_000,
        values: vec![LiveValue::new(
            se_core::ChannelName::parse("gpu0").unwrap(),
            Metric::Power,
            231.5,
        )],
    };
    server.live.send(update).unwrap();
    read_until(&mut response, &mut received, "231.5").await;
    assert!(received.contains("event: reading"), "{received}");
    assert!(received.contains("\"device\":\"rig-01\""), "{received}");
    assert!(received.contains("\"unit\":\"W\""), "{received}");
}

#[tokio::test]
async fn live_stream_filters_by_device() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let mut response = client
        .get(server.url("/api/v1/live?device=rig-02"))
        .send()
        .await
        .unwrap();
    let mut received = String::new();
    read_until(&mut response, &mut received, "event: ready").await;

    let value = || {
        vec![LiveValue::new(
            se_core::ChannelName::parse("main").unwrap(),
            Metric::Power,
            1.0,
        )]
    };
    server
        .live
        .send(LiveUpdate {
            device: rig(),
            ts_ms: 1,
            values: value(),
        })
        .unwrap();
    server
        .live
        .send(LiveUpdate {
            device: DeviceId::parse("rig-02").unwrap(),
            ts_ms: 2,
            values: value(),
        })
        .unwrap();
    read_until(&mut response, &mut received, "\"ts_ms\":2").await;
    assert!(!received.contains("rig-01"), "{received}");
}

#[tokio::test]
async fn live_stream_reports_lag_then_continues() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let mut response = client.get(server.url("/api/v1/live")).send().await.unwrap();
    let mut received = String::new();
    read_until(&mut response, &mut received, "event: ready").await;

    // This test runs on a single-threaded runtime, so the server cannot drain
    // the channel during this loop, and the subscriber falls behind for sure.
    let sent = se_web::LIVE_CHANNEL_CAPACITY as i64 + 500;
    for ts_ms in 0..sent {
        let values = vec![LiveValue::new(
            se_core::ChannelName::parse("main").unwrap(),
            Metric::Power,
            1.0,
        )];
        server
            .live
            .send(LiveUpdate {
                device: rig(),
                ts_ms,
                values,
            })
            .unwrap();
    }
    read_until(&mut response, &mut received, "event: lagged").await;
    assert!(received.contains("\"skipped\":500"), "{received}");
    read_until(
        &mut response,
        &mut received,
        &format!("\"ts_ms\":{}", sent - 1),
    )
    .await;
}

#[tokio::test]
async fn shutdown_ends_live_streams() {
    let server = TestServer::start().await;
    let client = server.admin().await;
    let mut response = client.get(server.url("/api/v1/live")).send().await.unwrap();
    let mut received = String::new();
    read_until(&mut response, &mut received, "event: ready").await;

    server.shutdown.cancel();
    let finished = tokio::time::timeout(Duration::from_secs(10), server.task).await;
    let result = finished.expect("server did not stop within 10 s").unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn address_in_use_names_http_listen() {
    let occupied = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = occupied.local_addr().unwrap();
    let error = se_web::bind(addr).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("--http-listen"), "{message}");
    assert!(error.message(se_core::Lang::Fr).contains("--http-listen"));
}

#[tokio::test]
async fn demo_account_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let result = se_web::ensure_demo_account(&store, "0.0.0.0:8080".parse().unwrap()).await;
    assert!(
        matches!(result, Err(se_web::WebError::DemoNotLoopback { .. })),
        "{result:?}"
    );
    assert_eq!(store.user_by_name("demo").await.unwrap(), None);
}

#[tokio::test]
async fn demo_account_logs_in_on_loopback() {
    let server = TestServer::start().await;
    let created =
        se_web::ensure_demo_account(server.store.as_ref(), "127.0.0.1:8080".parse().unwrap())
            .await
            .unwrap();
    assert!(created);
    let client = server.login("demo", "demo").await;
    let me: Value = client
        .get(server.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["role"], "building_owner");
}

#[tokio::test]
async fn locales_served_with_same_keys() {
    let server = TestServer::start().await;
    let english: serde_json::Map<String, Value> = client()
        .get(server.url("/api/v1/i18n/en"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let french: serde_json::Map<String, Value> = client()
        .get(server.url("/api/v1/i18n/fr"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let english_keys: Vec<_> = english.keys().collect();
    let french_keys: Vec<_> = french.keys().collect();
    assert_eq!(english_keys, french_keys);
    assert_eq!(french["col.power"], "Puissance");
}

#[tokio::test]
async fn unknown_locale_returns_404() {
    let server = TestServer::start().await;
    let (status, code, _) = error_of(
        client()
            .get(server.url("/api/v1/i18n/de"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code, "unknown_language");
}

#[tokio::test]
async fn pages_redirect_to_login_without_session() {
    let server = TestServer::start().await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/devices/rig-01", "/ingest-errors", "/password"] {
        let response = no_redirect.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()["location"], "/login", "{path}");
    }
}

#[tokio::test]
async fn assets_served_with_mime_and_etag() {
    let server = TestServer::start().await;
    let response = client()
        .get(server.url("/assets/vendor/uplot/uPlot.iife.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let etag = response.headers()["etag"].clone();
    let again = client()
        .get(server.url("/assets/vendor/uplot/uPlot.iife.min.js"))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn login_page_served_without_session() {
    let server = TestServer::start().await;
    let response = client().get(server.url("/login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    let body = response.text().await.unwrap();
    assert!(body.contains("id=\"login-form\""));
}

#[tokio::test]
async fn asset_path_cannot_leave_folder() {
    let server = TestServer::start().await;
    for path in [
        "/assets/%2e%2e/Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/%2e%2e%2fsrc%2flib.rs",
    ] {
        let response = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
