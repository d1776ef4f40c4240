//! HTTP API and embedded web UI of Smart Energy.
//!
//! [`router`] builds every route: `/healthz`, the JSON API under `/api/v1`
//! and the pages of the web UI, whose files are embedded in the binary.
//! [`serve`] runs it until a cancellation token fires. Start-up helpers create
//! the first admin account ([`ensure_admin`]) and a local demo account
//! ([`ensure_demo_account`]).
//!
//! Every message a user can read exists in English and French
//! (`locales/*.json`). API errors are JSON `{"error": {"code", "message"}}`
//! with the message in the language of `?lang=` or `Accept-Language`.

mod access;
mod accounts;
mod anomalies;
mod api;
mod commands;
mod discovery;
mod auth;
mod error;
mod extract;
mod forecast;
mod forecast_cache;
mod health;
mod i18n;
mod line_protocol;
mod live;
mod login_limit;
mod pages;
mod params;
mod recommendations;
mod sites;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use se_core::Lang;
use se_store::Store;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use accounts::{
    ensure_admin, ensure_demo_account, generate_password, hash_password, verify_password,
    ADMIN_USERNAME, DEMO_PASSWORD, DEMO_USERNAME, GENERATED_PASSWORD_CHARS, MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
};
pub use auth::{
    require_admin, require_session, token_hash, AdminUser, CurrentUser, SESSION_COOKIE,
    SESSION_TTL_MS,
};
pub use error::{ApiError, RenderedError, WebError};
pub use forecast_cache::ForecastCache;
pub use commands::{CommandPublisher, PreparedCommand, SharedCommandPublisher};
pub use health::Health;
pub use i18n::{catalog, translate, Catalog, RequestLang, LANGUAGES};
pub use line_protocol::MAX_BODY_BYTES as MAX_WRITE_BODY_BYTES;
pub use live::{live_channel, LiveSender, LiveUpdate, LiveValue, LIVE_CHANNEL_CAPACITY};
pub use recommendations::{run_all_sites, run_recommendations, run_site, RecommendationSchedule, SiteRun};

/// Shared state of every handler: the store, the live channel and the health flags.
#[derive(Clone)]
pub struct WebState {
    pub store: Arc<dyn Store>,
    pub live: LiveSender,
    pub health: Arc<Health>,
    /// Tokens accepted by the line protocol write routes; none disables them.
    pub write_tokens: Vec<String>,
    /// Fires when the server shuts down; ends the live streams.
    shutdown: CancellationToken,
    /// Publisher of device commands; `None` disables the command routes.
    pub commands: Option<commands::SharedCommandPublisher>,
    /// Forecasts of sites and devices, refreshed hourly while the server runs.
    pub forecasts: Arc<ForecastCache>,
    /// Anomaly scans of the last minute.
    pub(crate) anomalies: Arc<anomalies::AnomalyCache>,
    /// Readings before now that a run of the recommenders reads.
    pub recommendation_history: std::time::Duration,
    /// Login attempts per username, to slow down password guessing.
    pub(crate) login_limiter: Arc<login_limit::LoginLimiter>,
    /// Marks the session cookie `Secure`, for a server reached through an
    /// HTTPS reverse proxy.
    pub secure_cookies: bool,
}

impl WebState {
    pub fn new(store: Arc<dyn Store>, live: LiveSender, health: Arc<Health>) -> Self {
        Self {
            store,
            live,
            health,
            write_tokens: Vec::new(),
            shutdown: CancellationToken::new(),
            commands: None,
            forecasts: Arc::new(ForecastCache::new()),
            anomalies: Arc::new(anomalies::AnomalyCache::new()),
            recommendation_history: RecommendationSchedule::DEFAULT_HISTORY,
            login_limiter: Arc::new(login_limit::LoginLimiter::default()),
            secure_cookies: false,
        }
    }

    /// Sets the history that the run-now route of recommendations reads,
    /// to match the background task.
    pub fn with_recommendation_history(mut self, history: std::time::Duration) -> Self {
        self.recommendation_history = history;
        self
    }

    /// Enables the device command routes with this publisher.
    pub fn with_commands(mut self, publisher: commands::SharedCommandPublisher) -> Self {
        self.commands = Some(publisher);
        self
    }

    /// Marks the session cookie `Secure`: browsers then send it over HTTPS
    /// only, which is right once a TLS reverse proxy serves the UI.
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// Sets the tokens of the line protocol write routes, dropping blank ones.
    pub fn with_write_tokens<T: Into<String>>(mut self, tokens: impl IntoIterator<Item = T>) -> Self {
        self.write_tokens = tokens
            .into_iter()
            .map(Into::into)
            .map(|token| token.trim().to_owned())
            .filter(|token| !token.is_empty())
            .collect();
        self
    }
}

/// Binds the HTTP listener. An address in use returns [`WebError::AddressInUse`],
/// whose message names `--http-listen` as the way to choose another address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, WebError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            WebError::AddressInUse { addr }
        } else {
            WebError::Bind { addr, source }
        }
    })
}

/// Builds every route of the server.
pub fn router(state: WebState) -> Router {
    let traced = Router::new()
        .nest("/api/v1", api_router(&state))
        // InfluxDB write routes: token auth, no session.
        .merge(line_protocol::routes())
        .route("/", get(pages::dashboard_page))
        .route("/devices/{id}", get(pages::device_page))
        .route("/sites/{id}", get(pages::site_page))
        .route("/ingest-errors", get(pages::ingest_errors_page))
        .route("/admin/sites", get(pages::admin_sites_page))
        .route("/admin/accounts", get(pages::admin_accounts_page))
        .route("/password", get(pages::password_page))
        .route("/login", get(pages::login_page))
        .route("/assets/{*path}", get(pages::asset))
        .fallback(pages::page_not_found)
        .layer(TraceLayer::new_for_http());
    // Health probes stay out of the request trace: a load balancer polls
    // them every few seconds, and each 503 would log an ERROR line.
    Router::new()
        .route("/healthz", get(health::healthz))
        .merge(traced)
        .layer(middleware::from_fn(localize_errors))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .with_state(state)
}

fn api_router(state: &WebState) -> Router<WebState> {
    // Routes reachable without a session, or with a password still to change.
    let open = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/auth/password", post(auth::change_password))
        .route("/i18n/{lang}", get(api::i18n));

    let signed_in = Router::new()
        .route("/devices", get(api::list_devices))
        .route("/devices/{id}", get(api::get_device))
        .route("/devices/{id}/series", get(api::series))
        .route("/devices/{id}/readings", get(api::readings))
        .route("/ingest/errors", get(api::ingest_errors))
        .route("/stats", get(api::stats))
        .route("/sites", get(sites::list_sites))
        .route("/sites/{id}", get(sites::get_site))
        .route("/sites/{id}/energy", get(sites::site_energy))
        .route("/sites/{id}/forecast", get(forecast::site_forecast))
        .route("/sites/{id}/warnings", get(forecast::site_warnings_route))
        .route("/devices/{id}/forecast", get(forecast::device_forecast))
        .route("/sites/{id}/anomalies", get(anomalies::site_anomalies))
        .route("/devices/{id}/anomalies", get(anomalies::device_anomalies))
        .route("/sites/{id}/recommendations", get(recommendations::list))
        .route("/sites/{id}/recommendations/run", post(recommendations::run_now))
        .route("/sites/{id}/recommendations/{rec_id}/apply", post(recommendations::apply))
        .route("/sites/{id}/recommendations/{rec_id}/dismiss", post(recommendations::dismiss))
        .route("/live", get(live::live))
        .route("/devices/{id}/commands", get(commands::list_commands).post(commands::send_command))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));

    // Layers run outside in, so the session check runs before the role check.
    let admin = Router::new()
        .route("/users", get(users::list).post(users::create))
        .route("/users/{name}", delete(users::delete))
        .route("/users/{name}/sites", put(users::put_sites))
        .route("/users/{name}/password", post(users::reset_password))
        .route("/sites/{id}", put(sites::put_site))
        .route("/sites/{id}/tariff", put(sites::put_tariff))
        .route("/devices/{id}/site", put(sites::put_device_site))
        .route("/discovered", get(discovery::list_discovered))
        .route("/discovered/{id}/approve", post(discovery::approve))
        .route("/discovered/{id}/ignore", post(discovery::ignore))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));

    open.merge(signed_in)
        .merge(admin)
        .fallback(api_not_found)
        .method_not_allowed_fallback(api_method_not_allowed)
}

async fn api_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        value: format!("/api/v1{}", uri.path()),
    }
}

/// Gives a known route called with another method a JSON error, instead
/// of axum's empty 405.
async fn api_method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: format!("/api/v1{}", uri.path()),
    }
}

/// Renders API errors again in the request's language. Handlers return
/// [`ApiError`], which renders in English and leaves a [`RenderedError`] in the
/// response extensions for this middleware.
async fn localize_errors(request: Request, next: Next) -> Response {
    let lang = i18n::request_lang(request.uri().query(), request.headers());
    let response = next.run(request).await;
    if lang == Lang::En {
        return response;
    }
    let Some(rendered) = response.extensions().get::<RenderedError>().cloned() else {
        return response;
    };
    let mut localized = rendered.in_lang(lang).into_response();
    // Only the body changes language. Headers the handler set, such as
    // Retry-After, stay; the new body brings its own length and type.
    let own: Vec<_> = localized.headers().keys().cloned().collect();
    for (name, value) in response.headers() {
        if !own.contains(name) {
            localized.headers_mut().append(name, value.clone());
        }
    }
    localized
}

/// Content Security Policy of every response: scripts, styles and API calls
/// come only from this server, and no other site may frame the UI.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Serves `router(state)` on `listener` until `shutdown` fires, then stops
/// accepting, ends the live streams and waits for requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut state: WebState,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    state.shutdown = shutdown.clone();
    let refresh = tokio::spawn(forecast_cache::refresh_loop(
        state.store.clone(),
        state.forecasts.clone(),
        shutdown.clone(),
    ));
    let local = listener
        .local_addr()
        .map_or_else(|error| format!("unknown ({error})"), |address| address.to_string());
    tracing::info!(address = %local, "web server listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
        .await
        .map_err(WebError::Serve)?;
    refresh.abort();
    tracing::info!(address = %local, "web server stopped");
    Ok(())
}
