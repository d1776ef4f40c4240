//! InfluxDB line protocol write endpoints, so Telegraf and other InfluxDB
//! clients can send readings over HTTP.
//!
//! - `POST /api/v2/write?org=&bucket=&precision=ns|us|ms|s` (InfluxDB 2),
//!   authenticated by `Authorization: Token <token>`.
//! - `POST /write?db=&precision=n|u|ms|s` (InfluxDB 1.x), authenticated by
//!   `Authorization: Token <token>`, `?u=<any>&p=<token>` or HTTP Basic with
//!   the token as password.
//!
//! Both are mounted at the root, outside the session-protected `/api/v1`,
//! and only accept the tokens of [`WebState::write_tokens`]. `org`, `bucket`
//! and `db` are accepted and ignored: each line names its device by tag.
//! Gzip bodies are decompressed by tower-http, and the body is limited to
//! [`MAX_BODY_BYTES`] after decompression. Errors use InfluxDB's shape
//! `{"code", "message"}` (plus `error` on the 1.x route, which Telegraf's
//! `outputs.influxdb` reads), so clients log the message.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use se_core::{now_ms, Lang, Rejection};
use se_decode::{decode_line_protocol, Precision};
use se_store::IngestBatch;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::decompression::RequestDecompressionLayer;

use crate::error::ApiError;
use crate::i18n::{translate, RequestLang};
use crate::live::LiveUpdate;
use crate::WebState;

/// Maximum size of one write body in bytes, after decompression: 10 MiB.
/// Telegraf splits its batch and retries when it gets 413.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Number of rejected values named in a partial write message.
const NAMED_REJECTIONS: usize = 3;

/// Precision spellings listed in messages, per API version.
const V2_PRECISIONS: &str = "ns, us, ms, s";
const V1_PRECISIONS: &str = "n, u, ms, s";

/// InfluxDB API version of a request, which sets the accepted credentials,
/// the precision names in messages and the error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiVersion {
    V1,
    V2,
}

impl ApiVersion {
    fn precisions(self) -> &'static str {
        match self {
            ApiVersion::V1 => V1_PRECISIONS,
            ApiVersion::V2 => V2_PRECISIONS,
        }
    }
}

/// Query parameters of both write routes; unknown ones (`org`, `bucket`,
/// `db`, `rp`, `consistency`) are ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WriteParams {
    precision: Option<String>,
    /// InfluxDB 1.x password parameter, which carries the token.
    p: Option<String>,
}

/// Routes of the write endpoints, with gzip decompression and the body limit.
pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v2/write", post(write_v2))
        .route("/write", post(write_v1))
        .layer(RequestDecompressionLayer::new())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// `POST /api/v2/write`
async fn write_v2(
    State(state): State<WebState>,
    RequestLang(lang): RequestLang,
    params: Result<Query<WriteParams>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    write(state, lang, ApiVersion::V2, params, request).await
}

/// `POST /write`
async fn write_v1(
    State(state): State<WebState>,
    RequestLang(lang): RequestLang,
    params: Result<Query<WriteParams>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    write(state, lang, ApiVersion::V1, params, request).await
}

async fn write(
    state: WebState,
    lang: Lang,
    version: ApiVersion,
    params: Result<Query<WriteParams>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    // The token is checked before the query and the body, so that an
    // unauthenticated client learns nothing and costs no body read.
    let params = params.map(|Query(params)| params);
    let presented = presented_token(
        request.headers(),
        params.as_ref().ok().and_then(|params| params.p.as_deref()),
        version,
    );
    if let Err(error) = check_token(&state.write_tokens, presented.as_deref()) {
        return error_response(error, lang, version);
    }
    let params = match params {
        Ok(params) => params,
        Err(rejection) => {
            let error = ApiError::InvalidQuery {
                detail: rejection.body_text(),
            };
            return error_response(error, lang, version);
        }
    };
    let precision = match parse_precision(params.precision.as_deref(), version) {
        Ok(precision) => precision,
        Err(error) => return error_response(error, lang, version),
    };
    let body = match Bytes::from_request(request, &state).await {
        Ok(body) => body,
        Err(rejection) => return error_response(body_error(rejection), lang, version),
    };

    // Invalid UTF-8 becomes U+FFFD, so only the lines that contain it are rejected.
    let text = String::from_utf8_lossy(&body);
    let received_ms = now_ms();
    let decoded = decode_line_protocol(&text, precision, received_ms);
    let batch = IngestBatch {
        readings: decoded.readings,
        rejections: decoded.rejections,
        rejected_at_ms: received_ms,
        ..IngestBatch::default()
    };
    if let Err(error) = state.store.write_ingest_batch(&batch).await {
        return error_response(ApiError::Store(error), lang, version);
    }
    for update in LiveUpdate::from_readings(&batch.readings) {
        // No receiver (no open dashboard) is normal.
        let _ = state.live.send(update);
    }
    tracing::debug!(
        readings = batch.readings.len(),
        rejections = batch.rejections.len(),
        "line protocol write stored"
    );

    if batch.rejections.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let message = partial_write_message(&batch.rejections, lang);
    influx_error_response(StatusCode::BAD_REQUEST, message, version)
}

fn parse_precision(value: Option<&str>, version: ApiVersion) -> Result<Precision, ApiError> {
    match value {
        None | Some("") => Ok(Precision::Nanoseconds),
        Some(text) => Precision::from_str(text).map_err(|_| ApiError::InvalidPrecision {
            value: text.to_owned(),
            valid: version.precisions(),
        }),
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge {
            max_bytes: MAX_BODY_BYTES,
        }
    } else {
        ApiError::UnreadableBody {
            detail: rejection.body_text(),
        }
    }
}

/// Returns the token a request presents: `Authorization: Token <token>`, and
/// on the 1.x route also HTTP Basic (token as password) or `?p=<token>`.
fn presented_token(
    headers: &HeaderMap,
    password_param: Option<&str>,
    version: ApiVersion,
) -> Option<String> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    if let Some((scheme, credentials)) = authorization.and_then(|value| value.split_once(' ')) {
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("token") {
            return Some(credentials.to_owned());
        }
        if version == ApiVersion::V1 && scheme.eq_ignore_ascii_case("basic") {
            return basic_password(credentials);
        }
    }
    match version {
        ApiVersion::V1 => password_param.map(str::to_owned),
        ApiVersion::V2 => None,
    }
}

/// Decodes `base64(user:password)` and returns the password.
fn basic_password(credentials: &str) -> Option<String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, password)| password.to_owned())
}

/// Checks a presented token against the configured ones. Empty tokens are
/// never valid. Both sides are hashed first, so the constant-time comparison
/// is always of 32 bytes and does not depend on where the tokens differ.
fn check_token(configured: &[String], presented: Option<&str>) -> Result<(), ApiError> {
    let configured: Vec<&str> = configured
        .iter()
        .map(|token| token.trim())
        .filter(|token| !token.is_empty())
        .collect();
    if configured.is_empty() {
        return Err(ApiError::WriteDisabled);
    }
    let Some(presented) = presented.filter(|token| !token.is_empty()) else {
        return Err(ApiError::WriteTokenMissing);
    };
    let presented_hash = Sha256::digest(presented.as_bytes());
    let mut matched = subtle::Choice::from(0);
    for token in configured {
        matched |= Sha256::digest(token.as_bytes()).ct_eq(&presented_hash);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(ApiError::WriteTokenInvalid)
    }
}

/// Builds the `partial write: ...` message naming the first rejected values.
fn partial_write_message(rejections: &[Rejection], lang: Lang) -> String {
    let mut lines: Vec<&str> = rejections.iter().map(|r| r.topic.as_str()).collect();
    lines.sort_unstable();
    lines.dedup();
    let named = rejections
        .iter()
        .take(NAMED_REJECTIONS)
        .map(|rejection| describe_rejection(rejection, lang))
        .collect::<Vec<_>>()
        .join("; ");
    let args = [
        ("rejected", rejections.len().to_string()),
        ("lines", lines.len().to_string()),
        ("first", named),
    ];
    translate(lang, "write.partial_write", &args)
}

/// Formats one rejected value. English uses the decoder's detail, which names
/// the fix, and other languages get the line, the reason and the value.
fn describe_rejection(rejection: &Rejection, lang: Lang) -> String {
    if lang == Lang::En {
        return if rejection.detail.starts_with(&rejection.topic) {
            rejection.detail.clone()
        } else {
            format!("{}: {}", rejection.topic, rejection.detail)
        };
    }
    let number = rejection.topic.strip_prefix("line ").unwrap_or(&rejection.topic);
    let args = [
        ("line", number.to_owned()),
        ("reason", rejection.reason.describe(lang).to_owned()),
        ("value", format!("\"{}\"", rejection.value)),
    ];
    translate(lang, "write.rejected_value", &args)
}

/// Renders an [`ApiError`] in InfluxDB's error shape, in the request's language.
fn error_response(error: ApiError, lang: Lang, version: ApiVersion) -> Response {
    let status = error.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(%error, "line protocol write failed because the store returned an error that may clear on retry");
    } else if status.is_server_error() {
        tracing::error!(%error, "line protocol write failed with an internal error");
    }
    influx_error_response(status, error.render(lang).message, version)
}

fn influx_error_response(status: StatusCode, message: String, version: ApiVersion) -> Response {
    let code = influx_code(status);
    let body = match version {
        ApiVersion::V2 => serde_json::json!({ "code": code, "message": message }),
        ApiVersion::V1 => {
            serde_json::json!({ "code": code, "message": message, "error": message })
        }
    };
    (status, Json(body)).into_response()
}

/// InfluxDB 2 error code of an HTTP status.
fn influx_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "request too large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<String> {
        vec!["alpha-token".to_owned(), "beta-token".to_owned()]
    }

    #[test]
    fn any_configured_token_is_accepted() {
        assert!(check_token(&tokens(), Some("beta-token")).is_ok());
    }

    #[test]
    fn wrong_token_is_invalid() {
        let result = check_token(&tokens(), Some("alpha-token2"));
        assert!(matches!(result, Err(ApiError::WriteTokenInvalid)));
    }

    #[test]
    fn empty_configured_tokens_disable_writes() {
        let result = check_token(&[" ".to_owned()], Some(""));
        assert!(matches!(result, Err(ApiError::WriteDisabled)));
    }

    #[test]
    fn empty_presented_token_is_missing() {
        let result = check_token(&tokens(), Some(""));
        assert!(matches!(result, Err(ApiError::WriteTokenMissing)));
    }

    #[test]
    fn basic_password_is_the_token() {
        let mut headers = HeaderMap::new();
        // base64("telegraf:alpha-token")
        headers.insert(
            header::AUTHORIZATION,
            "Basic dGVsZWdyYWY6YWxwaGEtdG9rZW4=".parse().unwrap(),
        );
        let token = presented_token(&headers, None, ApiVersion::V1);
        assert_eq!(token.as_deref(), Some("alpha-token"));
    }

    #[test]
    fn v2_ignores_password_parameter() {
        let token = presented_token(&HeaderMap::new(), Some("alpha-token"), ApiVersion::V2);
        assert_eq!(token, None);
    }

    #[test]
    fn unknown_precision_lists_valid_ones() {
        let error = parse_precision(Some("h"), ApiVersion::V1).unwrap_err();
        let message = error.render(Lang::En).message;
        assert!(message.contains("\"h\""), "{message}");
        assert!(message.contains(V1_PRECISIONS), "{message}");
    }

    #[test]
    fn french_rejection_names_line() {
        let rejection = Rejection::new(
            se_core::RejectReason::UnknownMetric,
            "line 2",
            "12",
            "line 2: unknown field",
        );
        let text = describe_rejection(&rejection, Lang::Fr);
        assert!(text.contains("ligne 2"), "{text}");
    }
}
