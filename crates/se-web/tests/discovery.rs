//! Tests of the discovered-device routes against a real server on loopback
//! and a real SQLite store in a temporary directory.

mod common;

use std::sync::Arc;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::StatusCode;
use se_core::{now_ms, Announcement, DeviceId, Metric, Reading};
use se_store::{IngestBatch, NewUser, Role, Site, SqliteStore, Store};
use serde_json::{json, Value};

const OWNER_PASSWORD: &str = "owner-password-42";

impl TestServer {
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        se_web::ensure_admin(store.as_ref(), Some(ADMIN_PASSWORD.to_owned())).await.unwrap();
        let owner = NewUser {
            username: "owner".into(),
            password_hash: se_web::hash_password(OWNER_PASSWORD).unwrap(),
            role: Role::BuildingOwner,
            must_change_password: false,
        };
        store.create_user(&owner).await.unwrap();
        let farm = Site {
            id: "farm".into(),
            name: "Farm".into(),
            time_zone: "UTC".into(),
            currency: "EUR".into(),
            tariff_json: None,
            co2_g_per_kwh: None,
        };
        store.upsert_site(&farm).await.unwrap();

        TestServer::serve(dir, store).await
    }

    /// Stores an announcement and one reading of `name`, as ingestion would.
    async fn announce(&self, name: &str) {
        let device = DeviceId::parse(name).unwrap();
        let now = now_ms();
        let announcement = Announcement {
            device: device.clone(),
            format: "tasmota".into(),
            name: Some("Rig plug".into()),
            model: Some("Sonoff Pow R2".into()),
            payload: format!(r#"{{"t":"{name}"}}"#),
        };
        let batch = IngestBatch {
            readings: vec![Reading::new(device.clone(), "main", Metric::Power, now, 45.0)],
            announcements: vec![(device, announcement, now)],
            ..IngestBatch::default()
        };
        self.store.write_ingest_batch(&batch).await.unwrap();
    }

    /// Stores an announcement of `name` and nothing else, as for a device
    /// that announced itself and has not reported yet.
    async fn announce_only(&self, name: &str) {
        let device = DeviceId::parse(name).unwrap();
        let announcement = Announcement {
            device: device.clone(),
            format: "tasmota".into(),
            name: None,
            model: None,
            payload: format!(r#"{{"t":"{name}"}}"#),
        };
        let batch = IngestBatch { announcements: vec![(device, announcement, now_ms())], ..IngestBatch::default() };
        self.store.write_ingest_batch(&batch).await.unwrap();
    }
}

async fn json_of(client: &reqwest::Client, url: String) -> Value {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array().unwrap().iter().map(|item| item[key].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn pending_device_is_listed_discovered() {
    let server = TestServer::start().await;
    server.announce("plug-1").await;
    let admin = server.admin().await;

    let discovered = json_of(&admin, server.url("/api/v1/discovered")).await;
    assert_eq!(ids(&discovered, "device"), vec!["plug-1"]);
    assert_eq!(discovered[0]["status"], "pending");
    assert_eq!(discovered[0]["model"], "Sonoff Pow R2");
    let devices = json_of(&admin, server.url("/api/v1/devices")).await;
    assert!(ids(&devices, "id").is_empty(), "{devices}");
}

#[tokio::test]
async fn approval_with_site_lists_device() {
    let server = TestServer::start().await;
    server.announce("plug-1").await;
    let admin = server.admin().await;

    let response = admin.post(server.url("/api/v1/discovered/plug-1/approve")).json(&json!({ "site": "farm" })).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let devices = json_of(&admin, server.url("/api/v1/devices")).await;
    assert_eq!(ids(&devices, "id"), vec!["plug-1"]);
    let farm = json_of(&admin, server.url("/api/v1/sites/farm")).await;
    assert_eq!(farm["devices"], json!(["plug-1"]));
    let pending = json_of(&admin, server.url("/api/v1/discovered")).await;
    assert!(ids(&pending, "device").is_empty());
}

#[tokio::test]
async fn approval_without_body_works() {
    let server = TestServer::start().await;
    server.announce("plug-1").await;
    let admin = server.admin().await;

    let response = admin.post(server.url("/api/v1/discovered/plug-1/approve")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let devices = json_of(&admin, server.url("/api/v1/devices")).await;
    assert_eq!(ids(&devices, "id"), vec!["plug-1"]);
}

#[tokio::test]
async fn ignored_device_stays_hidden() {
    let server = TestServer::start().await;
    server.announce("plug-1").await;
    let admin = server.admin().await;

    let response = admin.post(server.url("/api/v1/discovered/plug-1/ignore")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    server.announce("plug-1").await;

    let devices = json_of(&admin, server.url("/api/v1/devices")).await;
    assert!(ids(&devices, "id").is_empty());
    let ignored = json_of(&admin, server.url("/api/v1/discovered?status=ignored")).await;
    assert_eq!(ids(&ignored, "device"), vec!["plug-1"]);
}

#[tokio::test]
async fn unknown_discovered_device_returns_404() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let response = admin.post(server.url("/api/v1/discovered/nobody/approve?lang=fr")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "discovered_device_not_found");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ne s'est jamais annoncé"), "{message}");
}

#[tokio::test]
async fn approval_to_unknown_site_fails() {
    let server = TestServer::start().await;
    server.announce("plug-1").await;
    let admin = server.admin().await;

    let response = admin.post(server.url("/api/v1/discovered/plug-1/approve")).json(&json!({ "site": "moon" })).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let pending = json_of(&admin, server.url("/api/v1/discovered")).await;
    assert_eq!(ids(&pending, "device"), vec!["plug-1"], "a failed approval keeps the device pending");
}

#[tokio::test]
async fn invalid_status_filter_returns_400() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let response = admin.get(server.url("/api/v1/discovered?status=maybe")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_discovery_status");
}

#[tokio::test]
async fn discovered_routes_require_admin() {
    let server = TestServer::start().await;
    server.announce("plug-1").await;
    let owner = server.login("owner", OWNER_PASSWORD).await;

    let list = owner.get(server.url("/api/v1/discovered")).send().await.unwrap();
    assert_eq!(list.status(), StatusCode::FORBIDDEN);
    let approve = owner.post(server.url("/api/v1/discovered/plug-1/approve")).send().await.unwrap();
    assert_eq!(approve.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn announced_device_can_be_assigned() {
    let server = TestServer::start().await;
    server.announce_only("tasmota_silent").await;
    let admin = server.admin().await;

    let approved = admin.post(server.url("/api/v1/discovered/tasmota_silent/approve")).send().await.unwrap();
    let assigned = admin
        .put(server.url("/api/v1/devices/tasmota_silent/site"))
        .json(&json!({"site": "farm"}))
        .send()
        .await
        .unwrap();

    assert_eq!(approved.status(), StatusCode::NO_CONTENT);
    assert_eq!(assigned.status(), StatusCode::NO_CONTENT);
    let farm: Value = admin.get(server.url("/api/v1/sites/farm")).send().await.unwrap().json().await.unwrap();
    assert_eq!(farm["devices"], json!(["tasmota_silent"]), "{farm}");
}
