//! Device commands: an authorised user asks for a command, the server records
//! it in the audit trail, then publishes it to the device. The device's
//! acknowledgement reaches the audit trail through ingestion.
//!
//! The web layer depends on neither the MQTT broker nor the command format.
//! The binary provides both through [`CommandPublisher`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use futures::future::BoxFuture;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use se_core::{now_ms, DeviceId};
use se_store::{CommandRecord, CommandStatus};

use crate::access::accessible_device_site;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, DevicePath};
use crate::{CurrentUser, WebState};

/// Maximum number of commands listed by `GET .../commands`.
const MAX_LISTED_COMMANDS: u32 = 500;

/// A command checked and encoded for publication.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedCommand {
    /// The `action` of the command, such as `set_power_limit`.
    pub action: String,
    /// The payload to publish, JSON, with the id the server chose.
    pub payload: String,
}

/// Validates and publishes device commands on the server's MQTT side.
pub trait CommandPublisher: Send + Sync {
    /// Checks a command request and encodes it with `id`. The error is an
    /// English sentence that names the problem and the fix.
    fn prepare(&self, id: &str, request: &Value) -> Result<PreparedCommand, String>;

    /// Publishes a prepared payload to the device, never retained.
    fn publish<'a>(&'a self, device: &'a DeviceId, payload: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// Shared handle stored in [`WebState`].
pub type SharedCommandPublisher = Arc<dyn CommandPublisher>;

/// Checks that `user` may control `device`, with the rules of
/// [`crate::access`]: an admin always, a building owner only for devices of
/// a site they own (403 `device_forbidden` otherwise).
async fn ensure_control(state: &WebState, user: &CurrentUser, device: &DeviceId) -> Result<(), ApiError> {
    accessible_device_site(state, user, device).await.map(|_| ())
}

fn new_command_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("cmd-{}", hex::encode(bytes))
}

/// `POST /api/v1/devices/{id}/commands`: records the command, then publishes
/// it. Returns 202 with the audit record; the outcome arrives later with the
/// device's acknowledgement.
pub(crate) async fn send_command(
    State(state): State<WebState>,
    user: CurrentUser,
    DevicePath(device): DevicePath,
    ApiJson(request): ApiJson<Value>,
) -> Result<(StatusCode, Json<CommandRecord>), ApiError> {
    ensure_control(&state, &user, &device).await?;
    let publisher = state.commands.clone().ok_or(ApiError::CommandsUnavailable)?;
    let id = new_command_id();
    let prepared = publisher.prepare(&id, &request).map_err(|detail| ApiError::InvalidCommand { detail })?;

    // The record is written first, so no published command is missing from the audit trail.
    let record = CommandRecord {
        id: id.clone(),
        device: device.clone(),
        username: user.username.clone(),
        action: prepared.action.clone(),
        request_json: prepared.payload.clone(),
        created_ms: now_ms(),
        status: CommandStatus::Sent,
        ack_json: None,
        acked_ms: None,
    };
    state.store.record_command(&record).await?;
    tracing::info!(device_id = device.as_str(), command_id = %id, action = %prepared.action, user = %user.username, "device command sent");

    if let Err(detail) = publisher.publish(&device, &prepared.payload).await {
        tracing::error!(device_id = device.as_str(), command_id = %id, error = %detail, "failed to publish a device command");
        let failure = serde_json::json!({ "error": detail }).to_string();
        let at_ms = now_ms();
        state.store.set_command_status(&id, CommandStatus::Failed, &failure, at_ms).await?;
        return Err(ApiError::CommandPublishFailed { detail });
    }
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// Query of the audit trail. `limit` stays text so that a bad value gets
/// the project's error naming it, not the query extractor's.
#[derive(Deserialize)]
pub(crate) struct CommandListParams {
    limit: Option<String>,
}

/// Time after which a command still `sent` is reported as overdue. The
/// agent acknowledges within seconds, so two minutes means no agent received it.
const ANSWER_WINDOW_MS: i64 = 120_000;

/// One command of the audit trail, with whether its acknowledgement is overdue.
#[derive(Serialize)]
pub(crate) struct CommandView {
    #[serde(flatten)]
    record: CommandRecord,
    /// True for a command still `sent` after [`ANSWER_WINDOW_MS`]: the device
    /// may be offline or run no agent. A late acknowledgement still updates it.
    overdue: bool,
}

/// `GET /api/v1/devices/{id}/commands`: the device's audit trail, newest first.
pub(crate) async fn list_commands(
    State(state): State<WebState>,
    user: CurrentUser,
    DevicePath(device): DevicePath,
    ApiQuery(params): ApiQuery<CommandListParams>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    ensure_control(&state, &user, &device).await?;
    let limit = crate::params::bounded("limit", params.limit.as_deref(), 100, 1, MAX_LISTED_COMMANDS)?;
    let now = now_ms();
    let views = state
        .store
        .device_commands(&device, limit)
        .await?
        .into_iter()
        .map(|record| {
            let overdue = record.status == CommandStatus::Sent && now - record.created_ms > ANSWER_WINDOW_MS;
            CommandView { record, overdue }
        })
        .collect();
    Ok(Json(views))
}
