//! Sessions, the [`CurrentUser`] extractor, role guards and the `/auth` routes.
//!
//! A session token is 32 random bytes sent to the browser in the `se_session`
//! cookie. The store keeps only its SHA-256 hash, so a copy of the database
//! does not let anyone sign in.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cookie::{Cookie, SameSite};
use se_core::{now_ms, TimestampMs};
use se_store::{Role, User};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accounts::{hash_password, verify_password, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::WebState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "se_session";

/// Lifetime of a session from login.
pub const SESSION_TTL_MS: TimestampMs = 7 * 24 * 3600 * 1000;

/// The signed-in user of a request.
///
/// Declaring it as a handler argument makes the route require a session:
/// without a valid `se_session` cookie the request fails with 401. Use
/// [`AdminUser`] for routes reserved to administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub must_change_password: bool,
}

impl From<User> for CurrentUser {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            role: user.role,
            must_change_password: user.must_change_password,
        }
    }
}

/// Returns the hex SHA-256 of a session token, the form the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Returns the session token of the request's `Cookie` headers, if any.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| Cookie::split_parse(value.to_owned()))
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == SESSION_COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

/// Looks up the user of the request's session; `None` without a valid session.
pub(crate) async fn session_user(
    state: &WebState,
    headers: &HeaderMap,
) -> Result<Option<CurrentUser>, ApiError> {
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    let user = state
        .store
        .session_user(&token_hash(&token), now_ms())
        .await?;
    Ok(user.map(CurrentUser::from))
}

impl FromRequestParts<WebState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        // `require_session` has already looked the session up on protected routes.
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        let user = session_user(state, &parts.headers)
            .await?
            .ok_or(ApiError::NotAuthenticated)?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// A signed-in user with the admin role; any other role gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<WebState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.role != Role::Admin {
            return Err(ApiError::Forbidden {
                role: Role::Admin.code(),
            });
        }
        Ok(AdminUser(user))
    }
}

/// Middleware for every API route except `/auth/*` and `/i18n/*`: requires a
/// session, and a password change first when the server generated the password.
/// The user is put in the request extensions for [`CurrentUser`].
pub async fn require_session(
    State(state): State<WebState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let user = session_user(&state, request.headers())
        .await?
        .ok_or(ApiError::NotAuthenticated)?;
    if user.must_change_password {
        return Err(ApiError::PasswordChangeRequired);
    }
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}

/// Middleware for admin routes; place it inside [`require_session`].
pub async fn require_admin(AdminUser(_): AdminUser, request: Request, next: Next) -> Response {
    next.run(request).await
}

fn session_cookie(token: &str, max_age_s: i64, secure: bool) -> Option<HeaderValue> {
    // The server speaks plain HTTP, so `Secure` is set only when the operator
    // says a TLS reverse proxy serves the UI (`serve --secure-cookies`).
    let cookie = Cookie::build((SESSION_COOKIE, token.to_owned()))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_s))
        .build();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

#[derive(Deserialize)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
}

/// `POST /api/v1/auth/login`: checks the password and opens a session.
pub(crate) async fn login(
    State(state): State<WebState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    if let Err(throttled) = state.login_limiter.attempt(&request.username) {
        // Whole seconds, rounded up, so a client that waits that long is let in.
        let wait_s = throttled.wait.as_millis().div_ceil(1000).max(1) as u64;
        if throttled.log {
            tracing::warn!(username = %request.username, wait_s, "login throttled after repeated attempts; further throttled attempts for this username are logged once a minute");
        }
        let mut response = ApiError::TooManyLoginAttempts { wait_s }.into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
        return Ok(response);
    }
    let user = state.store.user_by_name(&request.username).await?;

    // Verify against a fixed hash for an unknown user too, so the response time
    // does not tell which usernames exist.
    let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
    let password = request.password;
    let valid = tokio::task::spawn_blocking(move || match stored_hash {
        Some(hash) => verify_password(&password, &hash),
        None => {
            crate::accounts::verify_dummy(&password);
            false
        }
    })
    .await
    .map_err(|error| ApiError::Internal(format!("password check task failed: {error}")))?;

    let Some(user) = user.filter(|_| valid) else {
        tracing::info!(username = %request.username, "login failed");
        return Err(ApiError::BadCredentials);
    };

    let token = new_token();
    let expires_ms = now_ms() + SESSION_TTL_MS;
    state
        .store
        .create_session(&token_hash(&token), user.id, expires_ms)
        .await?;
    tracing::info!(username = %user.username, "user logged in");

    let mut response = Json(serde_json::json!({ "user": CurrentUser::from(user) })).into_response();
    if let Some(cookie) = session_cookie(&token, SESSION_TTL_MS / 1000, state.secure_cookies) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /api/v1/auth/logout`: ends the session, if any, and clears the cookie.
pub(crate) async fn logout(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        state.store.delete_session(&token_hash(&token)).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = session_cookie("", 0, state.secure_cookies) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `GET /api/v1/auth/me`: the signed-in user.
pub(crate) async fn me(user: CurrentUser) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "user": user }))
}

#[derive(Deserialize)]
pub(crate) struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// Checks the length rules of a new password, counted in characters.
pub(crate) fn validate_new_password(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Err(ApiError::PasswordTooShort {
            min: MIN_PASSWORD_CHARS,
        });
    }
    if length > MAX_PASSWORD_CHARS {
        return Err(ApiError::PasswordTooLong {
            max: MAX_PASSWORD_CHARS,
        });
    }
    Ok(())
}

/// `POST /api/v1/auth/password`: replaces the password after checking the current one.
pub(crate) async fn change_password(
    State(state): State<WebState>,
    user: CurrentUser,
    ApiJson(request): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    validate_new_password(&request.new_password)?;
    if request.new_password == request.current_password {
        return Err(ApiError::PasswordUnchanged);
    }
    let stored = state
        .store
        .user_by_name(&user.username)
        .await?
        .ok_or(ApiError::NotAuthenticated)?;

    let ChangePasswordRequest {
        current_password,
        new_password,
    } = request;
    let new_hash = tokio::task::spawn_blocking(move || {
        if !verify_password(&current_password, &stored.password_hash) {
            return Ok(None);
        }
        hash_password(&new_password).map(Some)
    })
    .await
    .map_err(|error| ApiError::Internal(format!("password hashing task failed: {error}")))?
    .map_err(ApiError::Internal)?;

    let Some(new_hash) = new_hash else {
        return Err(ApiError::CurrentPasswordIncorrect);
    };
    // TODO: end the user's other sessions once the store can delete sessions by user.
    state.store.set_password(user.id, &new_hash).await?;
    tracing::info!(username = %user.username, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn new_tokens_differ() {
        assert_ne!(new_token(), new_token());
    }

    #[test]
    fn session_token_found_among_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; se_session=abc123; x=1"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc123"));
    }

    #[test]
    fn session_cookie_is_strict_and_http_only() {
        let cookie = session_cookie("tok", 60, false).unwrap();
        let text = cookie.to_str().unwrap();
        assert!(text.contains("HttpOnly"), "{text}");
        assert!(text.contains("SameSite=Strict"), "{text}");
        assert!(text.contains("Path=/"), "{text}");
        assert!(!text.contains("Secure"), "{text}");
    }

    #[test]
    fn secure_cookie_behind_https_proxy() {
        let cookie = session_cookie("tok", 60, true).unwrap();
        let text = cookie.to_str().unwrap();
        assert!(text.contains("; Secure"), "{text}");
        assert!(text.contains("HttpOnly"), "{text}");
    }

    #[test]
    fn short_password_is_rejected() {
        assert!(matches!(
            validate_new_password("123456789"),
            Err(ApiError::PasswordTooShort { min: 10 })
        ));
    }

    #[test]
    fn ten_accented_characters_are_enough() {
        assert!(validate_new_password("éééééééééé").is_ok());
    }
}
