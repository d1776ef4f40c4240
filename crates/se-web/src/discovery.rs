//! Devices that announced themselves, under `/api/v1/discovered` (admin
//! only): the list of pending devices, approval with an optional site, and
//! ignoring.
//!
//! The store leaves pending and ignored devices out of its device lists, so
//! `GET /api/v1/devices`, site device lists and the dashboard show a
//! discovered device only once it is approved.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use se_core::DeviceId;
use se_store::{DiscoveredDevice, DiscoveryStatus, StoreError};
use serde::Deserialize;

use crate::auth::AdminUser;
use crate::error::ApiError;
use crate::extract::{ApiQuery, DevicePath};
use crate::sites::site_id;
use crate::WebState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoveredParams {
    /// `pending` (default), `approved`, `ignored` or `all`.
    status: Option<String>,
}

/// `GET /api/v1/discovered?status=pending|approved|ignored|all` (admin).
pub(crate) async fn list_discovered(
    State(state): State<WebState>,
    AdminUser(_admin): AdminUser,
    ApiQuery(params): ApiQuery<DiscoveredParams>,
) -> Result<Json<Vec<DiscoveredDevice>>, ApiError> {
    let status = match params.status.as_deref().unwrap_or("pending") {
        "all" => None,
        code => Some(DiscoveryStatus::from_code(code).ok_or_else(|| ApiError::InvalidDiscoveryStatus { value: code.to_owned() })?),
    };
    Ok(Json(state.store.discovered_devices(status).await?))
}

/// Optional body of `POST /api/v1/discovered/{id}/approve`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    site: Option<String>,
}

/// `POST /api/v1/discovered/{id}/approve` (admin), with an optional body
/// `{"site": "..."}` that also moves the device to that site.
pub(crate) async fn approve(
    State(state): State<WebState>,
    AdminUser(admin): AdminUser,
    DevicePath(device): DevicePath,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    // An empty body is allowed, so the JSON extractor, which requires one, is not used.
    let body: ApproveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| ApiError::InvalidJson { detail: error.to_string() })?
    };
    let site = body.site.as_deref().map(site_id).transpose()?;
    if let Some(site) = &site {
        if state.store.site(site).await?.is_none() {
            return Err(ApiError::SiteNotFound { value: site.clone() });
        }
    }
    ensure_discovered(&state, &device).await?;
    // The site comes first, so an approved device never shows in the wrong site.
    if let Some(site) = &site {
        state.store.assign_device(&device, site).await?;
    }
    state.store.set_discovery_status(&device, DiscoveryStatus::Approved).await.map_err(|error| not_discovered(error, &device))?;
    tracing::info!(device_id = %device, site_id = ?site, admin = %admin.username, "discovered device approved");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/discovered/{id}/ignore` (admin): the device stays hidden,
/// and its readings are still stored.
pub(crate) async fn ignore(
    State(state): State<WebState>,
    AdminUser(admin): AdminUser,
    DevicePath(device): DevicePath,
) -> Result<StatusCode, ApiError> {
    state.store.set_discovery_status(&device, DiscoveryStatus::Ignored).await.map_err(|error| not_discovered(error, &device))?;
    tracing::info!(device_id = %device, admin = %admin.username, "discovered device ignored");
    Ok(StatusCode::NO_CONTENT)
}

async fn ensure_discovered(state: &WebState, device: &DeviceId) -> Result<(), ApiError> {
    let known = state.store.discovered_devices(None).await?;
    if known.iter().any(|found| &found.device == device) {
        Ok(())
    } else {
        Err(ApiError::DiscoveredDeviceNotFound { value: device.to_string() })
    }
}

fn not_discovered(error: StoreError, device: &DeviceId) -> ApiError {
    match error {
        StoreError::NotFound { .. } => ApiError::DiscoveredDeviceNotFound { value: device.to_string() },
        other => ApiError::Store(other),
    }
}
