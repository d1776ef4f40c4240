//! A web server on loopback over a real SQLite store, and the seeding
//! steps that several API test files share.

// Each test file compiles this module and uses only a part of it.
#![allow(dead_code)]

use std::sync::Arc;

use reqwest::StatusCode;
use se_store::{NewUser, Role, Site, SqliteStore, Store};
use se_web::{Health, WebState};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Password of the `admin` account that [`TestServer::serve`] expects.
pub const ADMIN_PASSWORD: &str = "admin-password-42";

/// Password of the building owners that [`add_owner`] creates.
pub const OWNER_PASSWORD: &str = "owner-password-42";

/// Opens a SQLite store in a new temporary directory and creates the
/// `admin` account with [`ADMIN_PASSWORD`].
pub async fn store_with_admin() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    se_web::ensure_admin(store.as_ref(), Some(ADMIN_PASSWORD.to_owned())).await.unwrap();
    (dir, store)
}

/// Builds a site in UTC, billed in EUR, named after its id.
pub fn site(id: &str) -> Site {
    Site {
        id: id.to_owned(),
        name: format!("Site {id}"),
        time_zone: "UTC".to_owned(),
        currency: "EUR".to_owned(),
        tariff_json: None,
        co2_g_per_kwh: None,
    }
}

/// Creates the building owner `username` with [`OWNER_PASSWORD`], owning `sites`.
pub async fn add_owner(store: &SqliteStore, username: &str, sites: &[&str]) {
    let user = store
        .create_user(&NewUser {
            username: username.into(),
            password_hash: se_web::hash_password(OWNER_PASSWORD).unwrap(),
            role: Role::BuildingOwner,
            must_change_password: false,
        })
        .await
        .unwrap();
    for site_id in sites {
        store.set_site_owner(site_id, user.id, true).await.unwrap();
    }
}

/// `se_web::serve` on 127.0.0.1 with an ephemeral port, stopped on drop.
pub struct TestServer {
    pub base: String,
    pub store: Arc<SqliteStore>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestServer {
    /// Serves `store`, which lives in `dir`. The caller has created the
    /// `admin` account with [`ADMIN_PASSWORD`] and any other data.
    pub async fn serve(dir: tempfile::TempDir, store: Arc<SqliteStore>) -> TestServer {
        let state = WebState::new(store.clone(), se_web::live_channel(), Arc::new(Health::new()));
        let listener = se_web::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(se_web::serve(listener, state, shutdown.clone()));
        TestServer { base, store, shutdown, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Logs in and returns a client that keeps the session cookie.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Client {
        let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let response = client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "login of {username}");
        client
    }

    pub async fn admin(&self) -> reqwest::Client {
        self.login("admin", ADMIN_PASSWORD).await
    }
}
