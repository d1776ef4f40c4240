//! The web UI: HTML pages and static assets embedded in the binary.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

use crate::auth::session_user;
use crate::i18n::{translate, RequestLang};
use crate::WebState;

/// Files under `assets/`: pages, scripts, styles and the vendored uPlot.
///
/// NOTE: release builds embed the files. Debug builds read them from this
/// crate's `assets/` folder at run time (rust-embed 8 default), so a debug
/// binary moved to another machine serves no UI.
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Serves an embedded file with its MIME type and an ETag, so browsers
/// revalidate instead of downloading again.
fn embedded(path: &str, request_headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let matches = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.data.into_owned().into_response()
    };
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /assets/{*path}`
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    embedded(&path, &headers)
}

/// Serves a page that needs a session: without one the browser goes to the
/// login page, and with a generated password to the password page first.
async fn protected_page(state: &WebState, headers: &HeaderMap, file: &str) -> Response {
    match session_user(state, headers).await {
        Ok(Some(user)) if user.must_change_password => Redirect::to("/password").into_response(),
        Ok(Some(_)) => embedded(file, headers),
        Ok(None) => Redirect::to("/login").into_response(),
        Err(error) => error.into_response(),
    }
}

pub(crate) async fn dashboard_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    protected_page(&state, &headers, "index.html").await
}

pub(crate) async fn device_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    protected_page(&state, &headers, "device.html").await
}

pub(crate) async fn site_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    protected_page(&state, &headers, "site.html").await
}

pub(crate) async fn ingest_errors_page(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Response {
    protected_page(&state, &headers, "ingest-errors.html").await
}

/// `GET /admin/sites`: a building owner is sent to the dashboard, as the
/// API routes behind the page would refuse them.
pub(crate) async fn admin_sites_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match session_user(&state, &headers).await {
        Ok(Some(user)) if user.role != se_store::Role::Admin => Redirect::to("/").into_response(),
        _ => protected_page(&state, &headers, "admin-sites.html").await,
    }
}

/// `GET /admin/accounts`: like the sites page, for admins only.
pub(crate) async fn admin_accounts_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match session_user(&state, &headers).await {
        Ok(Some(user)) if user.role != se_store::Role::Admin => Redirect::to("/").into_response(),
        _ => protected_page(&state, &headers, "admin-accounts.html").await,
    }
}

pub(crate) async fn password_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match session_user(&state, &headers).await {
        Ok(Some(_)) => embedded("password.html", &headers),
        Ok(None) => Redirect::to("/login").into_response(),
        Err(error) => error.into_response(),
    }
}

pub(crate) async fn login_page(headers: HeaderMap) -> Response {
    embedded("login.html", &headers)
}

/// Fallback outside the API: a plain-text 404 in the request language.
pub(crate) async fn page_not_found(RequestLang(lang): RequestLang, uri: Uri) -> Response {
    let message = translate(
        lang,
        "error.page_not_found",
        &[("value", uri.path().to_owned())],
    );
    (StatusCode::NOT_FOUND, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_embedded() {
        for page in [
            "index.html",
            "device.html",
            "ingest-errors.html",
            "login.html",
            "password.html",
            "admin-sites.html",
            "admin-accounts.html",
        ] {
            assert!(Assets::get(page).is_some(), "{page} missing");
        }
    }

    #[test]
    fn uplot_is_vendored() {
        for file in [
            "vendor/uplot/uPlot.iife.min.js",
            "vendor/uplot/uPlot.min.css",
            "vendor/uplot/LICENSE",
        ] {
            assert!(Assets::get(file).is_some(), "{file} missing");
        }
    }
}
