//! Savings recommendation routes:
//! - `GET /api/v1/sites/{id}/recommendations?status=open|applied|dismissed|withdrawn|all`
//! - `POST /api/v1/sites/{id}/recommendations/run`
//! - `POST /api/v1/sites/{id}/recommendations/{rec_id}/apply`
//! - `POST /api/v1/sites/{id}/recommendations/{rec_id}/dismiss`
//!
//! Access rules are those of the forecast routes: an admin reaches every
//! site, a building owner only the sites they own. Applying records that the
//! operator carried the recommendation out, with the time and the usage of
//! the week before as the baseline of the achieved saving. The server sends
//! no device command for it.

mod engine;
mod measure;

use std::cmp::Reverse;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::Json;
use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use se_analytics::recommend::{Action, Recommendation, SavingEstimate};
use se_core::{now_ms, ChannelName, DeviceId, Lang, TimestampMs};
use se_energy::Tariff;
use se_store::{RecommendationDecision, RecommendationStatus, Site, StoreError, StoredRecommendation, UsageSpan};
use serde::{Deserialize, Serialize};

pub use engine::{run_all_sites, run_recommendations, run_site, RecommendationSchedule, SiteRun};

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::access::accessible_site;
use crate::i18n::RequestLang;
use crate::sites::{site_id, SitePath};
use crate::{params, WebState};
use measure::{achieved, baseline_bounds, usage_span, AchievedView, NoteView};

/// Values accepted by `status=`, for error messages.
pub(crate) const STATUS_NAMES: &str = "open, applied, dismissed, withdrawn, all";

/// The `{id}` and `{rec_id}` segments of a recommendation route.
pub(crate) struct RecommendationPath {
    site: String,
    id: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for RecommendationPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((site, id)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::InvalidRecommendationId { value: rejection.body_text() })?;
        let site = site_id(&site)?;
        Ok(RecommendationPath { site, id: recommendation_id(&id)? })
    }
}

/// Parses a recommendation id: a whole number from 1.
fn recommendation_id(value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::InvalidRecommendationId { value: value.to_owned() })
}

/// Query of the list route. Other parameters, such as `lang`, are ignored.
#[derive(Deserialize)]
pub(crate) struct ListParams {
    status: Option<String>,
}

fn status_filter(value: Option<&str>) -> Result<Option<RecommendationStatus>, ApiError> {
    match value.unwrap_or("all") {
        "all" => Ok(None),
        code => RecommendationStatus::from_code(code)
            .map(Some)
            .ok_or_else(|| ApiError::InvalidRecommendationStatus { value: code.to_owned() }),
    }
}

#[derive(Serialize)]
pub(crate) struct EstimateView {
    kwh_per_month: f64,
    /// `null` when the site had no tariff.
    money_per_month: Option<Decimal>,
    currency: String,
}

/// One recommendation with its message in the request language.
#[derive(Serialize)]
pub(crate) struct RecommendationView {
    id: i64,
    device: DeviceId,
    channel: ChannelName,
    action: Action,
    message: String,
    estimate: EstimateView,
    status: RecommendationStatus,
    created_ms: TimestampMs,
    updated_ms: TimestampMs,
    /// Time and user of applying or dismissing it.
    decided_ms: Option<TimestampMs>,
    decided_by: Option<String>,
    /// Usage over the week before it was applied.
    baseline: Option<UsageSpan>,
    /// Achieved saving of an applied recommendation, once measurable.
    achieved: Option<AchievedView>,
    /// Reason an applied recommendation has no achieved saving yet.
    achieved_note: Option<NoteView>,
}

#[derive(Serialize)]
pub(crate) struct ListResponse {
    site: String,
    /// Whether the site has a tariff, so estimates carry money.
    priced: bool,
    currency: String,
    /// Open ones first, largest saving first; then applied and dismissed, newest decision first.
    recommendations: Vec<RecommendationView>,
}

/// Tariff and time zone of a site, for measuring achieved savings.
struct SiteCalendar {
    tariff: Option<Tariff>,
    zone: TimeZone,
}

impl SiteCalendar {
    fn of(site: &Site) -> Result<SiteCalendar, ApiError> {
        let zone = TimeZone::get(&site.time_zone).map_err(|_| ApiError::InvalidTimeZone { value: site.time_zone.clone() })?;
        let tariff = site
            .tariff_json
            .as_deref()
            .map(Tariff::from_json)
            .transpose()
            .map_err(|error| ApiError::InvalidTariff { detail: error.to_string() })?;
        Ok(SiteCalendar { tariff, zone })
    }
}

/// Reads the stored action, so the message and the JSON come from one typed value.
fn stored_action(recommendation: &StoredRecommendation) -> Result<Action, ApiError> {
    serde_json::from_str(&recommendation.action_json)
        .map_err(|error| ApiError::Internal(format!("recommendation {} has an unreadable action: {error}", recommendation.id)))
}

fn message(recommendation: &StoredRecommendation, action: &Action, lang: Lang) -> String {
    let typed = Recommendation {
        device: recommendation.device.clone(),
        channel: recommendation.channel.clone(),
        action: action.clone(),
        estimate: SavingEstimate {
            kwh_per_month: recommendation.kwh_per_month,
            money_per_month: recommendation.money_per_month.unwrap_or(Decimal::ZERO),
            currency: recommendation.currency.clone(),
        },
    };
    match recommendation.money_per_month {
        Some(_) => typed.message(lang),
        None => typed.message_without_money(lang),
    }
}

async fn view(state: &WebState, recommendation: StoredRecommendation, calendar: &SiteCalendar, lang: Lang) -> Result<RecommendationView, ApiError> {
    let action = stored_action(&recommendation)?;
    let (achieved, achieved_note) = if recommendation.status == RecommendationStatus::Applied {
        match achieved(state.store.as_ref(), &recommendation, &action, calendar.tariff.as_ref(), &calendar.zone, now_ms(), lang).await? {
            Ok(view) => (Some(view), None),
            Err(note) => (None, Some(note)),
        }
    } else {
        (None, None)
    };
    Ok(RecommendationView {
        id: recommendation.id,
        device: recommendation.device.clone(),
        channel: recommendation.channel.clone(),
        message: message(&recommendation, &action, lang),
        action,
        estimate: EstimateView {
            kwh_per_month: recommendation.kwh_per_month,
            money_per_month: recommendation.money_per_month,
            currency: recommendation.currency.clone(),
        },
        status: recommendation.status,
        created_ms: recommendation.created_ms,
        updated_ms: recommendation.updated_ms,
        decided_ms: recommendation.decided_ms,
        decided_by: recommendation.decided_by,
        baseline: recommendation.baseline,
        achieved,
        achieved_note,
    })
}

/// Orders open recommendations by money saved, then kWh, largest first; then
/// applied, dismissed and withdrawn ones, the newest decision first.
fn sort_for_operators(recommendations: &mut [StoredRecommendation]) {
    let rank = |status: RecommendationStatus| match status {
        RecommendationStatus::Open => 0,
        RecommendationStatus::Applied => 1,
        RecommendationStatus::Dismissed => 2,
        RecommendationStatus::Withdrawn => 3,
    };
    recommendations.sort_by(|a, b| {
        let within_status = if a.status == RecommendationStatus::Open {
            // `None` (no tariff) sorts below every amount.
            Reverse(a.money_per_month).cmp(&Reverse(b.money_per_month)).then_with(|| b.kwh_per_month.total_cmp(&a.kwh_per_month))
        } else {
            Reverse(a.decided_ms).cmp(&Reverse(b.decided_ms))
        };
        rank(a.status).cmp(&rank(b.status)).then(within_status).then_with(|| a.id.cmp(&b.id))
    });
}

/// `GET /api/v1/sites/{id}/recommendations?status=open|applied|dismissed|withdrawn|all`
pub(crate) async fn list(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    SitePath(id): SitePath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ListResponse>, ApiError> {
    let status = status_filter(params.status.as_deref())?;
    let site = accessible_site(&state, &user, &id).await?;
    let calendar = SiteCalendar::of(&site)?;
    let mut stored = state.store.site_recommendations(&site.id, status).await?;
    sort_for_operators(&mut stored);
    let mut recommendations = Vec::with_capacity(stored.len());
    for recommendation in stored {
        let id = recommendation.id;
        match view(&state, recommendation, &calendar, lang).await {
            Ok(view) => recommendations.push(view),
            // One unreadable row must not hide the others; the log names it.
            Err(ApiError::Internal(detail)) => tracing::error!(site_id = %site.id, recommendation_id = id, %detail, "recommendation left out of the list"),
            Err(error) => return Err(error),
        }
    }
    Ok(Json(ListResponse { priced: site.tariff_json.is_some(), currency: site.currency.clone(), site: site.id, recommendations }))
}

/// `POST /api/v1/sites/{id}/recommendations/run`: runs the recommenders of
/// the site now, over the configured history, and returns what they stored.
pub(crate) async fn run_now(State(state): State<WebState>, user: CurrentUser, SitePath(id): SitePath) -> Result<Json<SiteRun>, ApiError> {
    let site = accessible_site(&state, &user, &id).await?;
    let run = run_site(state.store.as_ref(), &site, state.recommendation_history, now_ms()).await?;
    tracing::info!(
        site_id = %site.id,
        user = %user.username,
        recommendations = run.recommendations,
        created = run.created,
        refreshed = run.refreshed,
        already_decided = run.decided,
        recommender_failures = run.failures,
        "recommendation run requested"
    );
    Ok(Json(run))
}

/// Optional body of the apply route.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyBody {
    /// When the operator carried it out: RFC 3339 text or milliseconds since 1970; now when missing.
    applied_at: Option<serde_json::Value>,
}

fn applied_at(value: Option<&serde_json::Value>, created_ms: TimestampMs, now: TimestampMs) -> Result<TimestampMs, ApiError> {
    let at_ms = match value {
        None | Some(serde_json::Value::Null) => return Ok(now),
        Some(serde_json::Value::String(text)) => params::instant("applied_at", text)?,
        Some(serde_json::Value::Number(number)) => number.as_i64().ok_or_else(|| ApiError::InvalidTime { name: "applied_at", value: number.to_string() })?,
        Some(other) => return Err(ApiError::InvalidTime { name: "applied_at", value: other.to_string() }),
    };
    if at_ms < created_ms || at_ms > now {
        return Err(ApiError::InvalidAppliedTime { value_ms: at_ms, from_ms: created_ms, to_ms: now });
    }
    Ok(at_ms)
}

/// Returns the recommendation `path.id` of the site, which must be open.
async fn open_recommendation(state: &WebState, site: &Site, id: i64) -> Result<StoredRecommendation, ApiError> {
    let recommendation = state
        .store
        .recommendation(id)
        .await?
        .filter(|found| found.site_id == site.id)
        .ok_or_else(|| ApiError::RecommendationNotFound { value: id, site: site.id.clone() })?;
    if recommendation.status != RecommendationStatus::Open {
        return Err(ApiError::RecommendationNotOpen { value: id, status: recommendation.status });
    }
    Ok(recommendation)
}

/// Stores the decision; a decision that raced another one gets the same
/// error as when the recommendation was already decided.
async fn decide(state: &WebState, site: &Site, id: i64, decision: RecommendationDecision) -> Result<StoredRecommendation, ApiError> {
    match state.store.decide_recommendation(id, &decision).await {
        Ok(()) => {}
        Err(StoreError::Invalid(_)) => {
            let found = state.store.recommendation(id).await?;
            return Err(match found {
                Some(found) => ApiError::RecommendationNotOpen { value: id, status: found.status },
                None => ApiError::RecommendationNotFound { value: id, site: site.id.clone() },
            });
        }
        Err(StoreError::NotFound { .. }) => return Err(ApiError::RecommendationNotFound { value: id, site: site.id.clone() }),
        Err(error) => return Err(error.into()),
    }
    state.store.recommendation(id).await?.ok_or_else(|| ApiError::RecommendationNotFound { value: id, site: site.id.clone() })
}

/// `POST /api/v1/sites/{id}/recommendations/{rec_id}/apply` with an optional
/// body `{"applied_at": ...}`.
pub(crate) async fn apply(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    path: RecommendationPath,
    body: Bytes,
) -> Result<Json<RecommendationView>, ApiError> {
    // An empty body is allowed, so the JSON extractor, which requires one, is not used.
    let body: ApplyBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApplyBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| ApiError::InvalidJson { detail: error.to_string() })?
    };
    let site = accessible_site(&state, &user, &path.site).await?;
    let recommendation = open_recommendation(&state, &site, path.id).await?;
    let at_ms = applied_at(body.applied_at.as_ref(), recommendation.created_ms, now_ms())?;
    let calendar = SiteCalendar::of(&site)?;
    let action = stored_action(&recommendation)?;
    let (from_ms, to_ms) = baseline_bounds(at_ms);
    let baseline = usage_span(state.store.as_ref(), &recommendation, &action, calendar.tariff.as_ref(), &calendar.zone, from_ms, to_ms).await?;

    let has_baseline = baseline.is_some();
    let decision = RecommendationDecision::Applied { at_ms, by: user.username.clone(), baseline };
    let decided = decide(&state, &site, path.id, decision).await?;
    tracing::info!(site_id = %site.id, recommendation_id = path.id, user = %user.username, applied_ms = at_ms, has_baseline, "recommendation applied");
    Ok(Json(view(&state, decided, &calendar, lang).await?))
}

/// `POST /api/v1/sites/{id}/recommendations/{rec_id}/dismiss`
pub(crate) async fn dismiss(
    State(state): State<WebState>,
    user: CurrentUser,
    RequestLang(lang): RequestLang,
    path: RecommendationPath,
) -> Result<Json<RecommendationView>, ApiError> {
    let site = accessible_site(&state, &user, &path.site).await?;
    open_recommendation(&state, &site, path.id).await?;
    let calendar = SiteCalendar::of(&site)?;
    let decision = RecommendationDecision::Dismissed { at_ms: now_ms(), by: user.username.clone() };
    let decided = decide(&state, &site, path.id, decision).await?;
    tracing::info!(site_id = %site.id, recommendation_id = path.id, user = %user.username, "recommendation dismissed");
    Ok(Json(view(&state, decided, &calendar, lang).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_whole_numbers() {
        assert_eq!(recommendation_id("7").unwrap(), 7);
        for value in ["0", "-3", "abc", "", "1.5", "99999999999999999999"] {
            assert!(matches!(recommendation_id(value), Err(ApiError::InvalidRecommendationId { .. })), "{value}");
        }
    }

    #[test]
    fn status_filter_accepts_codes_and_all() {
        assert_eq!(status_filter(None).unwrap(), None);
        assert_eq!(status_filter(Some("all")).unwrap(), None);
        assert_eq!(status_filter(Some("applied")).unwrap(), Some(RecommendationStatus::Applied));
        assert!(matches!(status_filter(Some("closed")), Err(ApiError::InvalidRecommendationStatus { .. })));
    }

    #[test]
    fn applied_time_within_creation_and_now() {
        let created = 1_000_000;
        let now = 9_000_000;
        assert_eq!(applied_at(None, created, now).unwrap(), now);
        assert_eq!(applied_at(Some(&serde_json::json!(2_000_000)), created, now).unwrap(), 2_000_000);
        assert_eq!(applied_at(Some(&serde_json::json!("1970-01-01T00:30:00Z")), created, now).unwrap(), 1_800_000);
        assert!(matches!(applied_at(Some(&serde_json::json!(10_000_000)), created, now), Err(ApiError::InvalidAppliedTime { .. })));
        assert!(matches!(applied_at(Some(&serde_json::json!(999_999)), created, now), Err(ApiError::InvalidAppliedTime { .. })));
        assert!(matches!(applied_at(Some(&serde_json::json!("yesterday")), created, now), Err(ApiError::InvalidTime { .. })));
        assert!(matches!(applied_at(Some(&serde_json::json!(true)), created, now), Err(ApiError::InvalidTime { .. })));
    }

    fn stored(id: i64, status: RecommendationStatus, money: Option<i64>, kwh: f64, decided_ms: Option<i64>) -> StoredRecommendation {
        StoredRecommendation {
            id,
            site_id: "farm".into(),
            device: DeviceId::parse("rig-1").unwrap(),
            channel: ChannelName::parse("main").unwrap(),
            action_type: "switch_off_when_idle".into(),
            action_json: "{}".into(),
            kwh_per_month: kwh,
            money_per_month: money.map(|cents| Decimal::new(cents, 2)),
            currency: "EUR".into(),
            status,
            created_ms: 0,
            updated_ms: 0,
            decided_ms,
            decided_by: None,
            baseline: None,
        }
    }

    #[test]
    fn open_first_by_saving_then_newest_decision() {
        let mut list = vec![
            stored(1, RecommendationStatus::Dismissed, Some(900), 90.0, Some(5)),
            stored(2, RecommendationStatus::Open, Some(100), 10.0, None),
            stored(3, RecommendationStatus::Applied, Some(500), 50.0, Some(1)),
            stored(4, RecommendationStatus::Open, Some(700), 5.0, None),
            stored(5, RecommendationStatus::Applied, Some(50), 5.0, Some(9)),
            stored(6, RecommendationStatus::Open, None, 40.0, None),
        ];
        sort_for_operators(&mut list);
        let order: Vec<i64> = list.iter().map(|recommendation| recommendation.id).collect();
        assert_eq!(order, [4, 2, 6, 5, 3, 1]);
    }
}
