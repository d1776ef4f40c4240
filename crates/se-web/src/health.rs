//! Liveness of the parts `/healthz` reports on.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::i18n::{translate, RequestLang};
use crate::WebState;

/// Whether the broker, the store and the ingestion pipeline are running.
///
/// Each part sets its flag once it is ready and clears it when it stops.
/// All flags start cleared, so `/healthz` fails until start-up is complete.
#[derive(Debug, Default)]
pub struct Health {
    broker: AtomicBool,
    store: AtomicBool,
    ingest: AtomicBool,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_broker(&self, running: bool) {
        self.broker.store(running, Ordering::Release);
    }

    pub fn set_store(&self, running: bool) {
        self.store.store(running, Ordering::Release);
    }

    pub fn set_ingest(&self, running: bool) {
        self.ingest.store(running, Ordering::Release);
    }

    /// Names of the parts that are not running, empty when all are.
    pub fn not_running(&self) -> Vec<&'static str> {
        [
            ("broker", &self.broker),
            ("store", &self.store),
            ("ingest", &self.ingest),
        ]
        .into_iter()
        .filter(|(_, flag)| !flag.load(Ordering::Acquire))
        .map(|(name, _)| name)
        .collect()
    }
}

/// `GET /healthz`: 200 when every part runs, else 503 naming the parts that do not.
pub(crate) async fn healthz(
    State(state): State<WebState>,
    RequestLang(lang): RequestLang,
) -> Response {
    let not_running = state.health.not_running();
    let part_state = |name: &str| {
        if not_running.contains(&name) {
            "not_running"
        } else {
            "running"
        }
    };
    let parts = json!({
        "broker": part_state("broker"),
        "store": part_state("store"),
        "ingest": part_state("ingest"),
    });
    if not_running.is_empty() {
        let body =
            json!({ "status": "ok", "parts": parts, "message": translate(lang, "health.ok", &[]) });
        return (StatusCode::OK, Json(body)).into_response();
    }
    let message = translate(
        lang,
        "health.not_running",
        &[("parts", not_running.join(", "))],
    );
    let body = json!({ "status": "unavailable", "parts": parts, "not_running": not_running, "message": message });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
