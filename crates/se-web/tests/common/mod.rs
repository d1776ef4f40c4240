//! A web server on loopback over a real SQLite store, shared by the API
//! test files that use it.

use std::sync::Arc;

use reqwest::StatusCode;
use se_store::SqliteStore;
use se_web::{Health, WebState};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Password of the `admin` account that [`TestServer::serve`] expects.
pub const ADMIN_PASSWORD: &str = "admin-password-42";

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
