//! Tests of the savings recommendation routes against a real server on
//! loopback and a real SQLite store seeded with generated readings.

mod common;

use std::str::FromStr;
use std::sync::Arc;

use common::{TestServer, ADMIN_PASSWORD, OWNER_PASSWORD};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use se_core::{now_ms, ChannelName, DeviceId, Metric, Reading};
use se_store::{NewRecommendation, RecommendationStatus, Site, SqliteStore, Store};
use serde_json::{json, Value};

const STEP_MS: i64 = 600_000;
const DAY_MS: i64 = 86_400_000;
const FLAT_TARIFF: &str = r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.25"}}"#;

/// How a generated device behaves from 20:00 to 08:00 UTC.
#[derive(Clone, Copy)]
enum Nights {
    /// Idle (0 % utilization) while drawing about 80 W.
    Standby,
    /// Switched off: 0 W at 0 % utilization.
    Off,
}

/// Readings every 10 minutes on channel `main` over `[from_ms, to_ms)`:
/// 95 % utilization at 280 W from 08:00 to 20:00 UTC, and `nights` otherwise.
/// With `jitter`, the power varies by up to 2 W.
fn generated_device(id: &str, from_ms: i64, to_ms: i64, nights: Nights, jitter: bool) -> Vec<Reading> {
    let device = DeviceId::parse(id).unwrap();
    let mut readings = Vec::new();
    let mut ts = from_ms - from_ms.rem_euclid(STEP_MS);
    while ts < to_ms {
        let step = ts / STEP_MS;
        let hour = ts.rem_euclid(DAY_MS) / 3_600_000;
        let busy = (8..20).contains(&hour);
        let spread = if jitter { (step % 5) as f64 * 0.5 } else { 0.0 };
        let (watts, load) = match (busy, nights) {
            (true, _) => (280.0 + spread, 95.0),
            (false, Nights::Standby) => (80.0 + spread, 0.0),
            (false, Nights::Off) => (0.0, 0.0),
        };
        readings.push(Reading::new(device.clone(), "main", Metric::Power, ts, watts));
        readings.push(Reading::new(device.clone(), "main", Metric::Utilization, ts, load));
        ts += STEP_MS;
    }
    readings
}

/// Hashrate of a GPU that saturates with power: 60 x (1 - e^(-(P - 100) / 35)) MH/s.
fn hashrate_at(watts: f64) -> f64 {
    60.0 * (1.0 - (-(watts - 100.0) / 35.0).exp())
}

/// Readings every 5 minutes of GPU 0 of `id` over the 7 days before `now`:
/// a sweep of power limits from 150 to 300 W (20 readings each), then
/// about 295 W at the default limit. The hashrate follows [`hashrate_at`].
fn power_sweep(id: &str, now: i64) -> Vec<Reading> {
    let device = DeviceId::parse(id).unwrap();
    let step_ms = 300_000;
    let start = now - now.rem_euclid(step_ms) - 7 * DAY_MS;
    let mut readings = Vec::new();
    for index in 0..7 * 288 {
        let level = if index < 320 { 150.0 + 10.0 * (index / 20) as f64 } else { 295.0 };
        // Golden-ratio steps spread the noise evenly without a random generator.
        let noise = (index as f64 * 0.618_033_988_75).fract() - 0.5;
        let watts = level + 6.0 * noise;
        let ts = start + index * step_ms;
        readings.push(Reading::new(device.clone(), "gpu0", Metric::Power, ts, watts));
        readings.push(Reading::new(device.clone(), "gpu0", Metric::Hashrate, ts, hashrate_at(watts) + noise));
    }
    readings
}

fn site(id: &str, tariff_json: Option<&str>) -> Site {
    Site {
        id: id.to_owned(),
        name: format!("Site {id}"),
        time_zone: "UTC".to_owned(),
        currency: "EUR".to_owned(),
        tariff_json: tariff_json.map(str::to_owned),
        co2_g_per_kwh: None,
    }
}

/// Starts a server with four sites:
/// - `farm` (flat 0.25 EUR/kWh, owned by `owner`) with rig-1, idle on
///   standby every night of the last 7 days;
/// - `calm` (no tariff, owned by `owner`) with rig-2, which behaves the same;
/// - `other` (owned by `neighbour`) with rig-9, which behaves the same;
/// - `mine` (admin only) with rig-3, whose GPU 0 went through a sweep of power limits.
async fn start() -> TestServer {
    let (dir, store) = common::store_with_admin().await;
    store.upsert_site(&site("farm", Some(FLAT_TARIFF))).await.unwrap();
    store.upsert_site(&site("calm", None)).await.unwrap();
    store.upsert_site(&site("other", Some(FLAT_TARIFF))).await.unwrap();
    store.upsert_site(&site("mine", Some(FLAT_TARIFF))).await.unwrap();
    common::add_owner(&store, "owner", &["farm", "calm"]).await;
    common::add_owner(&store, "neighbour", &["other"]).await;
    let now = now_ms();
    for (id, site_id) in [("rig-1", "farm"), ("rig-2", "calm"), ("rig-9", "other")] {
        store.write_readings(&generated_device(id, now - 7 * DAY_MS, now, Nights::Standby, true)).await.unwrap();
        store.assign_device(&DeviceId::parse(id).unwrap(), site_id).await.unwrap();
    }
    store.write_readings(&power_sweep("rig-3", now)).await.unwrap();
    store.assign_device(&DeviceId::parse("rig-3").unwrap(), "mine").await.unwrap();
    TestServer::serve(dir, store).await
}

async fn get(client: &reqwest::Client, server: &TestServer, path: &str, lang: &str) -> (StatusCode, Value) {
    let response = client.get(server.url(path)).header("Accept-Language", lang).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn post(client: &reqwest::Client, server: &TestServer, path: &str, body: Option<Value>, lang: &str) -> (StatusCode, Value) {
    let mut request = client.post(server.url(path)).header("Accept-Language", lang);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn number(value: &Value) -> f64 {
    value.as_f64().or_else(|| value.as_str().and_then(|text| text.parse().ok())).unwrap_or_else(|| panic!("not a number: {value}"))
}

/// Runs the recommenders of `site` and returns the id of its only recommendation.
async fn run_and_single_id(client: &reqwest::Client, server: &TestServer, site: &str) -> i64 {
    let (status, run) = post(client, server, &format!("/api/v1/sites/{site}/recommendations/run"), None, "en").await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let (status, body) = get(client, server, &format!("/api/v1/sites/{site}/recommendations"), "en").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["recommendations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "run {run}, list {body}");
    list[0]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn run_now_finds_idle_standby() {
    let server = start().await;
    let admin = server.admin().await;

    let (status, run) = post(&admin, &server, "/api/v1/sites/farm/recommendations/run", None, "en").await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["site"], "farm");
    assert_eq!(run["devices"], 1);
    assert_eq!(run["recommendations"], 1, "{run}");
    assert_eq!(run["created"], 1);
    assert_eq!(run["failures"], 0);

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm/recommendations", "en").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["site"], "farm");
    assert_eq!(body["priced"], true);
    let list = body["recommendations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    let recommendation = &list[0];
    assert_eq!(recommendation["device"], "rig-1");
    assert_eq!(recommendation["channel"], "main");
    assert_eq!(recommendation["status"], "open");
    assert_eq!(recommendation["action"]["type"], "switch_off_when_idle");
    let standby_w = number(&recommendation["action"]["standby_w"]);
    assert!((80.0..=82.0).contains(&standby_w), "{recommendation}");
    let idle_hours = number(&recommendation["action"]["idle_hours_per_day"]);
    assert!((idle_hours - 12.0).abs() < 0.2, "{recommendation}");
    // About 81 W for 12 h a day over 30 days, at 0.25 EUR/kWh.
    let kwh = number(&recommendation["estimate"]["kwh_per_month"]);
    assert!((28.5..=29.6).contains(&kwh), "{recommendation}");
    let money = number(&recommendation["estimate"]["money_per_month"]);
    assert!((money - kwh * 0.25).abs() <= 0.01, "{recommendation}");
    assert_eq!(recommendation["estimate"]["currency"], "EUR");
    let message = recommendation["message"].as_str().unwrap();
    assert!(message.starts_with("rig-1 is idle about 12.0 h a day while drawing 8"), "{message}");
    assert!(message.contains("switch it off or suspend it when idle"), "{message}");
    assert!(message.ends_with("EUR) per month"), "{message}");
    assert_eq!(recommendation["achieved"], Value::Null);
}

#[tokio::test]
async fn run_now_finds_power_cap() {
    let server = start().await;
    let admin = server.admin().await;
    run_and_single_id(&admin, &server, "mine").await;

    let (_, body) = get(&admin, &server, "/api/v1/sites/mine/recommendations", "en").await;

    let recommendation = &body["recommendations"][0];
    assert_eq!(recommendation["channel"], "gpu0");
    assert_eq!(recommendation["action"]["type"], "set_power_limit", "{recommendation}");
    // The 97 % point of the curve is 219 W; 5 W bins and rounding up put the cap a little above.
    let limit_w = number(&recommendation["action"]["limit_w"]);
    assert!((215.0..=240.0).contains(&limit_w), "{recommendation}");
    assert!(number(&recommendation["action"]["kept_hashrate_pct"]) >= 97.0, "{recommendation}");
    assert!(hashrate_at(limit_w) >= 0.965 * hashrate_at(295.0), "{recommendation}");
    // Most readings draw about 295 W, some 60 to 75 W above the cap.
    let kwh = number(&recommendation["estimate"]["kwh_per_month"]);
    assert!((30.0..=55.0).contains(&kwh), "{recommendation}");
    let message = recommendation["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("Cap GPU 0 of rig-3 at {limit_w:.0} W")), "{message}");
}

#[tokio::test]
async fn rerun_refreshes_instead_of_duplicating() {
    let server = start().await;
    let admin = server.admin().await;
    let first_id = run_and_single_id(&admin, &server, "farm").await;
    let (_, before) = get(&admin, &server, "/api/v1/sites/farm/recommendations", "en").await;

    let (status, run) = post(&admin, &server, "/api/v1/sites/farm/recommendations/run", None, "en").await;

    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["created"], 0, "{run}");
    assert_eq!(run["refreshed"], 1, "{run}");
    let (_, after) = get(&admin, &server, "/api/v1/sites/farm/recommendations", "en").await;
    let list = after["recommendations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{after}");
    assert_eq!(list[0]["id"].as_i64(), Some(first_id));
    assert_eq!(list[0]["created_ms"], before["recommendations"][0]["created_ms"]);
    assert!(list[0]["updated_ms"].as_i64() >= before["recommendations"][0]["updated_ms"].as_i64());
}

#[tokio::test]
async fn messages_in_french() {
    let server = start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;
    run_and_single_id(&owner, &server, "farm").await;

    let (status, body) = get(&owner, &server, "/api/v1/sites/farm/recommendations", "fr-FR,fr;q=0.9").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let message = body["recommendations"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("L'appareil rig-1 est inactif environ 12,0 h par jour"), "{message}");
    assert!(message.contains("économie d'environ"), "{message}");

    let (_, body) = get(&owner, &server, "/api/v1/sites/farm/recommendations?lang=fr", "en").await;
    let message = body["recommendations"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("L'appareil rig-1"), "{message}");
}

#[tokio::test]
async fn site_without_tariff_has_kwh_only() {
    let server = start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;
    run_and_single_id(&owner, &server, "calm").await;

    let (_, body) = get(&owner, &server, "/api/v1/sites/calm/recommendations", "en").await;

    assert_eq!(body["priced"], false);
    let recommendation = &body["recommendations"][0];
    assert_eq!(recommendation["estimate"]["money_per_month"], Value::Null, "{recommendation}");
    let message = recommendation["message"].as_str().unwrap();
    assert!(message.ends_with(" kWh per month"), "{message}");
    assert!(!message.contains("EUR"), "{message}");
}

#[tokio::test]
async fn apply_records_time_and_baseline() {
    let server = start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;
    let id = run_and_single_id(&owner, &server, "farm").await;
    let before_apply = now_ms();

    let (status, applied) = post(&owner, &server, &format!("/api/v1/sites/farm/recommendations/{id}/apply"), None, "en").await;

    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["status"], "applied");
    assert_eq!(applied["decided_by"], "owner");
    let decided_ms = applied["decided_ms"].as_i64().unwrap();
    assert!(decided_ms >= before_apply, "{applied}");
    assert!(decided_ms <= now_ms(), "{applied}");
    // The baseline covers the 7 days before the hour of applying: about
    // 12 h at 81 W and 12 h at 281 W a day, less the hours before the first reading.
    let baseline = &applied["baseline"];
    let covered_days = baseline["covered_ms"].as_i64().unwrap() as f64 / DAY_MS as f64;
    assert!((6.9..=7.0).contains(&covered_days), "{baseline}");
    let kwh = number(&baseline["kwh"]);
    assert!((kwh / covered_days - 4.35).abs() < 0.1, "{baseline}");
    assert!((number(&baseline["cost"]) - kwh * 0.25).abs() < 0.02, "{baseline}");
    assert_eq!(applied["achieved"], Value::Null);
    assert_eq!(applied["achieved_note"]["code"], "too_early");
    assert_eq!(
        applied["achieved_note"]["message"],
        "Not measured yet: 0.0 days since it was applied; the achieved saving is shown after 3 days."
    );
    let stored = server.store.recommendation(id).await.unwrap().unwrap();
    assert_eq!(stored.status, RecommendationStatus::Applied);
    assert_eq!(stored.decided_ms, Some(decided_ms));

    let (status, again) = post(&owner, &server, &format!("/api/v1/sites/farm/recommendations/{id}/apply"), None, "fr").await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "recommendation_already_applied");
    assert_eq!(
        again["error"]["message"],
        format!("La recommandation {id} est déjà appliquée ; seules les recommandations à traiter peuvent être appliquées ou écartées.")
    );

    let (_, run) = post(&owner, &server, "/api/v1/sites/farm/recommendations/run", None, "en").await;
    assert_eq!(run["decided"], 1, "{run}");
    assert_eq!(run["created"], 0, "{run}");
    let (_, open) = get(&owner, &server, "/api/v1/sites/farm/recommendations?status=open", "en").await;
    assert_eq!(open["recommendations"], json!([]));
}

#[tokio::test]
async fn dismissed_stays_dismissed() {
    let server = start().await;
    let admin = server.admin().await;
    let id = run_and_single_id(&admin, &server, "farm").await;

    let (status, dismissed) = post(&admin, &server, &format!("/api/v1/sites/farm/recommendations/{id}/dismiss"), None, "en").await;

    assert_eq!(status, StatusCode::OK, "{dismissed}");
    assert_eq!(dismissed["status"], "dismissed");
    assert_eq!(dismissed["decided_by"], "admin");
    assert_eq!(dismissed["baseline"], Value::Null);
    let (_, run) = post(&admin, &server, "/api/v1/sites/farm/recommendations/run", None, "en").await;
    assert_eq!(run["recommendations"], 1, "{run}");
    assert_eq!(run["decided"], 1, "{run}");
    let (_, open) = get(&admin, &server, "/api/v1/sites/farm/recommendations?status=open", "en").await;
    assert_eq!(open["recommendations"], json!([]));
    let (_, listed) = get(&admin, &server, "/api/v1/sites/farm/recommendations?status=dismissed", "en").await;
    assert_eq!(listed["recommendations"].as_array().unwrap().len(), 1, "{listed}");
    let (status, apply) = post(&admin, &server, &format!("/api/v1/sites/farm/recommendations/{id}/apply"), None, "en").await;
    assert_eq!(status, StatusCode::CONFLICT, "{apply}");
    assert_eq!(apply["error"]["code"], "recommendation_already_dismissed");
}

/// Starts a server with a recommendation computed 10 days ago for rig-5,
/// which idled on standby every night until 7 days ago and has been
/// switched off at night since.
async fn start_with_applied_history() -> (TestServer, i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    se_web::ensure_admin(store.as_ref(), Some(ADMIN_PASSWORD.to_owned())).await.unwrap();
    store.upsert_site(&site("farm", Some(FLAT_TARIFF))).await.unwrap();
    let now = now_ms();
    let switched_ms = now - 7 * DAY_MS;
    let rig = DeviceId::parse("rig-5").unwrap();
    store.write_readings(&generated_device("rig-5", now - 15 * DAY_MS, switched_ms, Nights::Standby, false)).await.unwrap();
    store.write_readings(&generated_device("rig-5", switched_ms, now, Nights::Off, false)).await.unwrap();
    store.assign_device(&rig, "farm").await.unwrap();
    let recommendation = NewRecommendation {
        site_id: "farm".to_owned(),
        device: rig,
        channel: ChannelName::parse("main").unwrap(),
        action_type: "switch_off_when_idle".to_owned(),
        action_json: r#"{"type":"switch_off_when_idle","standby_w":80.0,"idle_hours_per_day":12.0}"#.to_owned(),
        kwh_per_month: 28.8,
        money_per_month: Some(Decimal::from_str("7.20").unwrap()),
        currency: "EUR".to_owned(),
        computed_ms: now - 10 * DAY_MS,
    };
    let id = store.upsert_recommendation(&recommendation).await.unwrap().id;
    (TestServer::serve(dir, store).await, id, switched_ms)
}

#[tokio::test]
async fn run_withdraws_what_readings_no_longer_support() {
    // rig-5 has been switched off at night for the 7 days a run reads, so
    // the open recommendation computed 10 days ago is not produced again.
    let (server, id, _) = start_with_applied_history().await;
    let admin = server.admin().await;

    let (status, run) = post(&admin, &server, "/api/v1/sites/farm/recommendations/run", None, "en").await;

    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["recommendations"], 0, "{run}");
    assert_eq!(run["withdrawn"], 1, "{run}");
    let (_, open) = get(&admin, &server, "/api/v1/sites/farm/recommendations?status=open", "en").await;
    assert_eq!(open["recommendations"], json!([]));
    let (_, withdrawn) = get(&admin, &server, "/api/v1/sites/farm/recommendations?status=withdrawn", "en").await;
    let list = withdrawn["recommendations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{withdrawn}");
    assert_eq!(list[0]["id"].as_i64(), Some(id));
    assert_eq!(list[0]["decided_by"], Value::Null);
    assert_eq!(list[0]["decided_ms"].as_i64(), run["computed_at_ms"].as_i64());
    let stored = server.store.recommendation(id).await.unwrap().unwrap();
    assert_eq!(stored.status, RecommendationStatus::Withdrawn);

    let (status, apply) = post(&admin, &server, &format!("/api/v1/sites/farm/recommendations/{id}/apply"), None, "fr").await;
    assert_eq!(status, StatusCode::CONFLICT, "{apply}");
    assert_eq!(apply["error"]["code"], "recommendation_withdrawn");
    let message = apply["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("La recommandation {id} a été retirée")), "{message}");

    // The next run finds nothing new to withdraw.
    let (_, again) = post(&admin, &server, "/api/v1/sites/farm/recommendations/run", None, "en").await;
    assert_eq!(again["withdrawn"], 0, "{again}");
}

#[tokio::test]
async fn achieved_saving_after_a_week() {
    let (server, id, switched_ms) = start_with_applied_history().await;
    let admin = server.admin().await;

    let body = json!({ "applied_at": switched_ms });
    let (status, applied) = post(&admin, &server, &format!("/api/v1/sites/farm/recommendations/{id}/apply"), Some(body), "en").await;

    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["decided_ms"].as_i64(), Some(switched_ms));
    // Before: 12 h at 80 W and 12 h at 280 W a day; after: 12 h at 280 W.
    let baseline = &applied["baseline"];
    assert!((number(&baseline["kwh"]) - 7.0 * 4.32).abs() < 1e-6, "{baseline}");
    let achieved = &applied["achieved"];
    assert_eq!(applied["achieved_note"], Value::Null, "{applied}");
    let kwh = number(&achieved["kwh_per_month"]);
    assert!((kwh - 28.8).abs() < 1.0, "{achieved}");
    let money = number(&achieved["money_per_month"]);
    assert!((money - 7.2).abs() < 0.25, "{achieved}");
    let share = number(&achieved["kwh_share_of_estimate"]);
    assert!((share - 1.0).abs() < 0.04, "{achieved}");
    let measured_days = number(&achieved["measured_days"]);
    assert!((6.9..=7.0).contains(&measured_days), "{achieved}");
    assert_eq!(achieved["per_unit_of_work"], false);

    let (_, listed) = get(&admin, &server, "/api/v1/sites/farm/recommendations?status=applied", "en").await;
    assert_eq!(listed["recommendations"][0]["achieved"], *achieved);
}

#[tokio::test]
async fn applied_time_outside_span_rejected() {
    let (server, id, _) = start_with_applied_history().await;
    let admin = server.admin().await;
    let path = format!("/api/v1/sites/farm/recommendations/{id}/apply");

    let future = json!({ "applied_at": now_ms() + DAY_MS });
    let (status, body) = post(&admin, &server, &path, Some(future), "en").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_applied_time");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("Invalid applied_at "), "{body}");

    let before_creation = json!({ "applied_at": now_ms() - 11 * DAY_MS });
    let (status, body) = post(&admin, &server, &path, Some(before_creation), "fr").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("premier calcul de la recommandation"), "{body}");

    let (status, body) = post(&admin, &server, &path, Some(json!({ "applied_at": "last week" })), "en").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_time");

    let (status, body) = post(&admin, &server, &path, Some(json!({ "applied": 1 })), "en").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_json");
    assert_eq!(server.store.recommendation(id).await.unwrap().unwrap().status, RecommendationStatus::Open);
}

#[tokio::test]
async fn other_owner_forbidden() {
    let server = start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;
    let id = run_and_single_id(&owner, &server, "farm").await;
    let neighbour = server.login("neighbour", OWNER_PASSWORD).await;

    let (status, body) = get(&neighbour, &server, "/api/v1/sites/farm/recommendations", "en").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "site_forbidden");
    let (status, _) = post(&neighbour, &server, "/api/v1/sites/farm/recommendations/run", None, "en").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for verb in ["apply", "dismiss"] {
        let (status, body) = post(&neighbour, &server, &format!("/api/v1/sites/farm/recommendations/{id}/{verb}"), None, "en").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{verb}: {body}");
    }
    // An unknown site gets 403 too, so owners cannot probe for site ids.
    let (status, _) = get(&neighbour, &server, "/api/v1/sites/nowhere/recommendations", "en").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A recommendation of another site is not found through one's own site.
    let (status, body) = post(&neighbour, &server, &format!("/api/v1/sites/other/recommendations/{id}/apply"), None, "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "recommendation_not_found");
    assert_eq!(server.store.recommendation(id).await.unwrap().unwrap().status, RecommendationStatus::Open);

    let anonymous = reqwest::Client::new();
    let (status, _) = get(&anonymous, &server, "/api/v1/sites/farm/recommendations", "en").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_unknown_site_not_found() {
    let server = start().await;
    let admin = server.admin().await;
    let (status, body) = get(&admin, &server, "/api/v1/sites/nowhere/recommendations", "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "site_not_found");
    let (status, body) = post(&admin, &server, "/api/v1/sites/nowhere/recommendations/run", None, "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn bad_ids_and_status_named() {
    let server = start().await;
    let admin = server.admin().await;

    let (status, body) = post(&admin, &server, "/api/v1/sites/farm/recommendations/abc/apply", None, "en").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_recommendation_id");
    assert_eq!(body["error"]["message"], "Invalid recommendation id \"abc\": use the number of a recommendation from the list.");
    let (status, body) = post(&admin, &server, "/api/v1/sites/farm/recommendations/-4/dismiss", None, "fr").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["message"],
        "Identifiant de recommandation \"-4\" invalide : utilisez le numéro d'une recommandation de la liste."
    );

    let (status, body) = post(&admin, &server, "/api/v1/sites/farm/recommendations/999/dismiss", None, "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "recommendation_not_found");
    assert_eq!(body["error"]["message"], "No recommendation 999 on site \"farm\". Reload the list of recommendations.");

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm/recommendations?status=closed", "en").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_recommendation_status");
    assert_eq!(body["error"]["message"], "Invalid recommendation status \"closed\". Use one of: open, applied, dismissed, withdrawn, all.");

    let (status, body) = get(&admin, &server, "/api/v1/sites/bad%20id/recommendations", "en").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_site_id");
}
