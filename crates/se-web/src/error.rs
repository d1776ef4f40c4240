//! Errors of the web server: [`WebError`] for start-up and account set-up,
//! reported to the operator, and [`ApiError`] for one HTTP request, returned
//! to the client as localized JSON.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use se_core::Lang;
use se_store::StoreError;
use serde_json::json;

use crate::i18n::translate;

/// A failure while starting the web server or preparing its accounts.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("failed to listen on {addr}: the address is already in use. Stop the other program or choose another address with --http-listen")]
    AddressInUse { addr: SocketAddr },

    #[error("failed to listen on {addr}: {source}. Choose another address with --http-listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },

    #[error("the web server stopped with an error: {0}")]
    Serve(std::io::Error),

    #[error("failed to {operation} in the store: {source}")]
    Store {
        operation: &'static str,
        source: StoreError,
    },

    #[error("failed to hash a password: {0}")]
    PasswordHash(String),

    #[error("the initial admin password is too short: use at least {min} characters, or leave it unset to have one generated")]
    InitialPasswordTooShort { min: usize },

    #[error("refusing to create the demo account because {addr} is not a loopback address: its password is public. Listen on 127.0.0.1 or drop the demo option")]
    DemoNotLoopback { addr: SocketAddr },
}

impl WebError {
    /// Returns the message in the operator's language.
    pub fn message(&self, lang: Lang) -> String {
        if lang == Lang::En {
            return self.to_string();
        }
        match self {
            WebError::AddressInUse { addr } => format!(
                "impossible d'écouter sur {addr} : l'adresse est déjà utilisée. Arrêtez l'autre programme ou choisissez une autre adresse avec --http-listen"
            ),
            WebError::Bind { addr, source } => format!(
                "impossible d'écouter sur {addr} : {source}. Choisissez une autre adresse avec --http-listen"
            ),
            WebError::Serve(source) => format!("le serveur web s'est arrêté sur une erreur : {source}"),
            WebError::Store { operation, source } => {
                format!("échec de l'opération « {operation} » dans la base : {source}")
            }
            WebError::PasswordHash(detail) => format!("échec du hachage d'un mot de passe : {detail}"),
            WebError::InitialPasswordTooShort { min } => format!(
                "le mot de passe initial de l'administrateur est trop court : utilisez au moins {min} caractères, ou laissez-le vide pour qu'il soit généré"
            ),
            WebError::DemoNotLoopback { addr } => format!(
                "refus de créer le compte de démonstration car {addr} n'est pas une adresse locale (loopback) : son mot de passe est public. Écoutez sur 127.0.0.1 ou retirez l'option de démonstration"
            ),
        }
    }
}

/// A request that failed, with the HTTP status of its class and a message key.
///
/// The response body is `{"error": {"code", "message"}}`. The message is
/// rendered in English here, and the `localize_errors` middleware of
/// [`crate::router`] renders it again in the request's language, so every
/// route shares one mapping.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not authenticated")]
    NotAuthenticated,
    #[error("bad credentials")]
    BadCredentials,
    #[error("role {role} required")]
    Forbidden { role: &'static str },
    #[error("password change required")]
    PasswordChangeRequired,
    #[error("current password incorrect")]
    CurrentPasswordIncorrect,
    #[error("password shorter than {min} characters")]
    PasswordTooShort { min: usize },
    #[error("password longer than {max} characters")]
    PasswordTooLong { max: usize },
    #[error("new password equals the current one")]
    PasswordUnchanged,
    #[error("invalid JSON body: {detail}")]
    InvalidJson { detail: String },
    #[error("invalid query string: {detail}")]
    InvalidQuery { detail: String },
    #[error("invalid device id {value:?}")]
    InvalidDeviceId { value: String },
    #[error("invalid channel name {value:?}")]
    InvalidChannel { value: String },
    #[error("device {value:?} not found")]
    DeviceNotFound { value: String },
    #[error("missing parameter {name}")]
    MissingParameter { name: &'static str },
    #[error("unknown metric {value:?}")]
    UnknownMetric { value: String },
    #[error("unknown reject reason {value:?}")]
    UnknownReason { value: String },
    #[error("invalid time {value:?} for {name}")]
    InvalidTime { name: &'static str, value: String },
    #[error("invalid range {value:?}")]
    InvalidRange { value: String },
    #[error("both range and from/to given")]
    RangeAndBounds,
    #[error("start {from_ms} not before end {to_ms}")]
    EmptyTimeSpan { from_ms: i64, to_ms: i64 },
    #[error("invalid number {value:?} for {name}")]
    InvalidNumber {
        name: &'static str,
        value: String,
        min: u64,
        max: u64,
    },
    #[error("invalid site id {value:?}")]
    InvalidSiteId { value: String },
    #[error("site {value:?} not found")]
    SiteNotFound { value: String },
    #[error("invalid time zone {value:?}")]
    InvalidTimeZone { value: String },
    #[error("invalid currency {value:?}")]
    InvalidCurrency { value: String },
    #[error("invalid site name")]
    InvalidSiteName,
    #[error("invalid CO2 factor {value}")]
    InvalidCo2Factor { value: String },
    #[error("invalid tariff: {detail}")]
    InvalidTariff { detail: String },
    #[error("invalid period {value:?}")]
    InvalidPeriod { value: String },
    #[error("energy accounting failed: {detail}")]
    Energy { detail: String },
    #[error("unknown language {value:?}")]
    UnknownLanguage { value: String },
    #[error("no API route {value}")]
    RouteNotFound { value: String },
    #[error("line protocol writes are disabled")]
    WriteDisabled,
    #[error("write token missing")]
    WriteTokenMissing,
    #[error("write token invalid")]
    WriteTokenInvalid,
    #[error("invalid precision {value:?}")]
    InvalidPrecision { value: String, valid: &'static str },
    #[error("request body larger than {max_bytes} bytes")]
    BodyTooLarge { max_bytes: usize },
    #[error("unreadable request body: {detail}")]
    UnreadableBody { detail: String },
    #[error("invalid command: {detail}")]
    InvalidCommand { detail: String },
    #[error("device commands are not available on this server")]
    CommandsUnavailable,
    #[error("failed to publish the command: {detail}")]
    CommandPublishFailed { detail: String },
    #[error("device {value:?} never announced itself")]
    DiscoveredDeviceNotFound { value: String },
    #[error("invalid discovery status {value:?}")]
    InvalidDiscoveryStatus { value: String },
    #[error("site {value:?} is not one of your sites")]
    SiteForbidden { value: String },
    #[error("device {value:?} is not on one of your sites")]
    DeviceForbidden { value: String },
    #[error("invalid horizon {value:?}")]
    InvalidHorizon { value: String },
    #[error("invalid {name} {value}")]
    InvalidSiteLimit { name: &'static str, value: String },
    #[error("forecast failed: {detail}")]
    ForecastFailed { detail: String },
    #[error("invalid recommendation id {value:?}")]
    InvalidRecommendationId { value: String },
    #[error("invalid recommendation status {value:?}")]
    InvalidRecommendationStatus { value: String },
    #[error("recommendation {value} not found on site {site:?}")]
    RecommendationNotFound { value: i64, site: String },
    #[error("recommendation {value} is already {}", status.code())]
    RecommendationNotOpen { value: i64, status: se_store::RecommendationStatus },
    #[error("applied_at {value_ms} outside [{from_ms}, {to_ms}]")]
    InvalidAppliedTime { value_ms: i64, from_ms: i64, to_ms: i64 },
    #[error("device {device:?} has no series {value}")]
    SeriesNotFound { device: String, value: String, known: String },
    #[error("too many login attempts; wait {wait_s} s")]
    TooManyLoginAttempts { wait_s: u64 },
    #[error("invalid username {value:?}")]
    InvalidUsername { value: String },
    #[error("invalid role {value:?}")]
    InvalidRole { value: String },
    #[error("username {value:?} is taken")]
    UsernameTaken { value: String },
    #[error("user {value:?} not found")]
    UserNotFound { value: String },
    #[error("an admin owns no sites")]
    AdminSites,
    #[error("the request has no Content-Type: application/json header")]
    MissingJsonContentType,
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("an admin cannot delete their own account")]
    CannotDeleteSelf,
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Valid metric keys, for messages that reject a metric.
fn metric_keys() -> String {
    se_core::Metric::ALL
        .iter()
        .map(|metric| metric.key())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Valid reject reason codes, for messages that reject a reason.
pub(crate) fn reason_codes() -> String {
    crate::api::ALL_REASONS
        .iter()
        .map(|reason| reason.code())
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |ts| ts.to_string())
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            NotAuthenticated | BadCredentials | WriteTokenMissing | WriteTokenInvalid => {
                StatusCode::UNAUTHORIZED
            }
            Forbidden { .. }
            | SiteForbidden { .. }
            | DeviceForbidden { .. }
            | PasswordChangeRequired
            | WriteDisabled => StatusCode::FORBIDDEN,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            TooManyLoginAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            MissingJsonContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            DeviceNotFound { .. }
            | DiscoveredDeviceNotFound { .. }
            | RecommendationNotFound { .. }
            | SiteNotFound { .. }
            | UserNotFound { .. }
            | SeriesNotFound { .. }
            | UnknownLanguage { .. }
            | RouteNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            CommandsUnavailable | CommandPublishFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RecommendationNotOpen { .. } | UsernameTaken { .. } => StatusCode::CONFLICT,
            Store(StoreError::Conflict { .. }) => StatusCode::CONFLICT,
            Store(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            Store(StoreError::Invalid(_)) => StatusCode::BAD_REQUEST,
            Energy { .. } | ForecastFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Store(StoreError::Database { .. } | StoreError::Worker(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Store(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Stable machine-readable code; the message key is `error.<code>`.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            NotAuthenticated => "not_authenticated",
            BadCredentials => "bad_credentials",
            Forbidden { .. } => "forbidden",
            PasswordChangeRequired => "password_change_required",
            CurrentPasswordIncorrect => "current_password_incorrect",
            PasswordTooShort { .. } => "password_too_short",
            PasswordTooLong { .. } => "password_too_long",
            PasswordUnchanged => "password_unchanged",
            InvalidJson { .. } => "invalid_json",
            InvalidQuery { .. } => "invalid_query",
            InvalidDeviceId { .. } => "invalid_device_id",
            InvalidChannel { .. } => "invalid_channel",
            DeviceNotFound { .. } => "device_not_found",
            MissingParameter { .. } => "missing_parameter",
            UnknownMetric { .. } => "unknown_metric",
            UnknownReason { .. } => "unknown_reason",
            InvalidTime { .. } => "invalid_time",
            InvalidRange { .. } => "invalid_range",
            RangeAndBounds => "range_and_bounds",
            EmptyTimeSpan { .. } => "empty_time_span",
            InvalidNumber { .. } => "invalid_number",
            InvalidSiteId { .. } => "invalid_site_id",
            SiteNotFound { .. } => "site_not_found",
            InvalidTimeZone { .. } => "invalid_time_zone",
            InvalidCurrency { .. } => "invalid_currency",
            InvalidSiteName => "invalid_site_name",
            InvalidCo2Factor { .. } => "invalid_co2_factor",
            InvalidTariff { .. } => "invalid_tariff",
            InvalidPeriod { .. } => "invalid_period",
            Energy { .. } => "energy_failed",
            UnknownLanguage { .. } => "unknown_language",
            RouteNotFound { .. } => "route_not_found",
            WriteDisabled => "write_disabled",
            WriteTokenMissing => "write_token_missing",
            WriteTokenInvalid => "write_token_invalid",
            InvalidPrecision { .. } => "invalid_precision",
            BodyTooLarge { .. } => "body_too_large",
            UnreadableBody { .. } => "unreadable_body",
            InvalidCommand { .. } => "invalid_command",
            CommandsUnavailable => "commands_unavailable",
            CommandPublishFailed { .. } => "command_publish_failed",
            DiscoveredDeviceNotFound { .. } => "discovered_device_not_found",
            InvalidDiscoveryStatus { .. } => "invalid_discovery_status",
            SiteForbidden { .. } => "site_forbidden",
            DeviceForbidden { .. } => "device_forbidden",
            InvalidHorizon { .. } => "invalid_horizon",
            InvalidSiteLimit { .. } => "invalid_site_limit",
            ForecastFailed { .. } => "forecast_failed",
            InvalidRecommendationId { .. } => "invalid_recommendation_id",
            InvalidRecommendationStatus { .. } => "invalid_recommendation_status",
            RecommendationNotFound { .. } => "recommendation_not_found",
            // An open recommendation never gets this error, so the code names what it already is.
            RecommendationNotOpen { status: se_store::RecommendationStatus::Dismissed, .. } => "recommendation_already_dismissed",
            RecommendationNotOpen { status: se_store::RecommendationStatus::Withdrawn, .. } => "recommendation_withdrawn",
            RecommendationNotOpen { .. } => "recommendation_already_applied",
            InvalidAppliedTime { .. } => "invalid_applied_time",
            TooManyLoginAttempts { .. } => "too_many_login_attempts",
            SeriesNotFound { .. } => "series_not_found",
            InvalidUsername { .. } => "invalid_username",
            InvalidRole { .. } => "invalid_role",
            UsernameTaken { .. } => "username_taken",
            UserNotFound { .. } => "user_not_found",
            AdminSites => "admin_sites",
            MissingJsonContentType => "missing_json_content_type",
            MethodNotAllowed { .. } => "method_not_allowed",
            CannotDeleteSelf => "cannot_delete_self",
            Store(StoreError::Conflict { .. }) => "conflict",
            Store(StoreError::NotFound { .. }) => "not_found",
            Store(StoreError::Invalid(_)) => "store_rule",
            Store(StoreError::Database { .. } | StoreError::Worker(_)) => "store_unavailable",
            Store(_) | Internal(_) => "internal",
        }
    }

    /// Values for the placeholders of the message.
    fn args(&self) -> Vec<(&'static str, String)> {
        use ApiError::*;
        match self {
            Forbidden { role } => vec![("role", (*role).to_owned())],
            PasswordTooShort { min } => vec![("min", min.to_string())],
            PasswordTooLong { max } => vec![("max", max.to_string())],
            InvalidJson { detail } | InvalidQuery { detail } => vec![("detail", detail.clone())],
            InvalidDeviceId { value } | InvalidChannel { value } | DeviceNotFound { value } | DiscoveredDeviceNotFound { value } => {
                vec![("value", quoted(value))]
            }
            InvalidDiscoveryStatus { value } => vec![("value", quoted(value)), ("valid", "pending, approved, ignored, all".to_owned())],
            MissingParameter { name } => vec![("name", (*name).to_owned())],
            UnknownMetric { value } => vec![("value", quoted(value)), ("valid", metric_keys())],
            UnknownReason { value } => vec![("value", quoted(value)), ("valid", reason_codes())],
            InvalidTime { name, value } => {
                vec![("name", (*name).to_owned()), ("value", quoted(value))]
            }
            InvalidRange { value } => vec![
                ("value", quoted(value)),
                ("valid", crate::params::RANGE_NAMES.join(", ")),
            ],
            EmptyTimeSpan { from_ms, to_ms } => {
                vec![("from", format_ms(*from_ms)), ("to", format_ms(*to_ms))]
            }
            InvalidNumber {
                name,
                value,
                min,
                max,
            } => vec![
                ("name", (*name).to_owned()),
                ("value", quoted(value)),
                ("min", min.to_string()),
                ("max", max.to_string()),
            ],
            UnknownLanguage { value } => {
                let valid = crate::i18n::LANGUAGES
                    .iter()
                    .map(|lang| lang.code())
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![("value", quoted(value)), ("valid", valid)]
            }
            RouteNotFound { value } => vec![("value", value.clone())],
            Store(StoreError::Conflict { what }) | Store(StoreError::NotFound { what }) => {
                vec![("value", what.clone())]
            }
            Store(StoreError::Invalid(detail)) => vec![("detail", detail.clone())],
            InvalidSiteId { value }
            | SiteNotFound { value }
            | InvalidTimeZone { value }
            | InvalidCurrency { value }
            | InvalidPeriod { value } => vec![("value", quoted(value))],
            InvalidCo2Factor { value } => vec![("value", value.clone())],
            InvalidCommand { detail } | CommandPublishFailed { detail } => vec![("detail", detail.clone())],
            InvalidTariff { detail } | Energy { detail } | UnreadableBody { detail } => {
                vec![("detail", detail.clone())]
            }
            InvalidPrecision { value, valid } => {
                vec![("value", quoted(value)), ("valid", (*valid).to_owned())]
            }
            BodyTooLarge { max_bytes } => vec![("max", max_bytes.to_string())],
            SiteForbidden { value } | DeviceForbidden { value } => vec![("value", quoted(value))],
            InvalidHorizon { value } => vec![
                ("value", quoted(value)),
                ("valid", crate::forecast::HORIZON_NAMES.join(", ")),
            ],
            InvalidSiteLimit { name, value } => {
                vec![("name", (*name).to_owned()), ("value", value.clone())]
            }
            ForecastFailed { detail } => vec![("detail", detail.clone())],
            InvalidRecommendationId { value } => vec![("value", quoted(value))],
            InvalidRecommendationStatus { value } => vec![("value", quoted(value)), ("valid", crate::recommendations::STATUS_NAMES.to_owned())],
            RecommendationNotFound { value, site } => vec![("value", value.to_string()), ("site", quoted(site))],
            RecommendationNotOpen { value, .. } => vec![("value", value.to_string())],
            InvalidUsername { value } | UsernameTaken { value } | UserNotFound { value } => vec![("value", quoted(value))],
            InvalidRole { value } => vec![("value", quoted(value))],
            MethodNotAllowed { method, path } => vec![("method", method.clone()), ("path", path.clone())],
            TooManyLoginAttempts { wait_s } => vec![("seconds", wait_s.to_string())],
            SeriesNotFound { device, value, known } => vec![("device", quoted(device)), ("value", value.clone()), ("known", known.clone())],
            InvalidAppliedTime { value_ms, from_ms, to_ms } => {
                vec![("value", format_ms(*value_ms)), ("from", format_ms(*from_ms)), ("to", format_ms(*to_ms))]
            }
            _ => Vec::new(),
        }
    }

    /// Renders the error in `lang`.
    pub fn render(&self, lang: Lang) -> RenderedError {
        RenderedError {
            status: self.status(),
            code: self.code(),
            message: translate(lang, &format!("error.{}", self.code()), &self.args()),
            key_args: self.args(),
        }
    }
}

/// An [`ApiError`] turned into what the client receives. It is kept in the
/// response extensions, so that the `localize_errors` middleware of
/// [`crate::router`] can render it in another language.
#[derive(Debug, Clone)]
pub struct RenderedError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    key_args: Vec<(&'static str, String)>,
}

impl RenderedError {
    /// Renders the same error in `lang`.
    pub fn in_lang(&self, lang: Lang) -> RenderedError {
        RenderedError {
            message: translate(lang, &format!("error.{}", self.code), &self.key_args),
            ..self.clone()
        }
    }
}

impl IntoResponse for RenderedError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The client gets a generic message, so the cause must reach the log.
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(error = %self, "request failed because the store returned an error that may clear on retry");
            } else {
                tracing::error!(error = %self, "request failed with an internal error");
            }
        }
        self.render(Lang::En).into_response()
    }
}
