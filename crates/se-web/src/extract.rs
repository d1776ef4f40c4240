//! Extractors whose rejections are [`ApiError`]s, so malformed input gets the
//! same localized JSON error as every other failure.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::Json;
use se_core::DeviceId;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; a missing content type or a malformed body gives `invalid_json`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|rejection| match rejection {
                // The body may be valid JSON; only the header is missing.
                JsonRejection::MissingJsonContentType(_) => ApiError::MissingJsonContentType,
                other => ApiError::InvalidJson {
                    detail: parser_detail(&other.body_text()),
                },
            })
    }
}

/// A query string; a malformed one gives `invalid_query`.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::InvalidQuery {
                detail: parser_detail(&rejection.body_text()),
            })
    }
}

/// The `{id}` segment of a device route, validated as a device id.
pub struct DevicePath(pub DeviceId);

impl<S: Send + Sync> FromRequestParts<S> for DevicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::InvalidDeviceId {
                value: rejection.body_text(),
            })?;
        crate::params::device_id(&raw).map(DevicePath)
    }
}

/// Removes axum's English lead-in ("Failed to deserialize query string: ...")
/// from a rejection's text. The rest is the parser's detail (field name, line
/// and column), which the localized message quotes as a technical detail.
fn parser_detail(text: &str) -> String {
    match text.split_once(": ") {
        Some((lead_in, detail)) if lead_in.starts_with("Failed to") && !detail.is_empty() => detail.to_string(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::parser_detail;

    #[test]
    fn parser_detail_drops_lead_in() {
        let text = "Failed to deserialize query string: duplicate field `hours`";
        assert_eq!(parser_detail(text), "duplicate field `hours`");
    }

    #[test]
    fn parser_detail_keeps_other_text() {
        assert_eq!(parser_detail("Expected request with `Content-Type: application/json`"), "Expected request with `Content-Type: application/json`");
    }
}
