//! Tests of the forecast and warning routes against a real server on
//! loopback and a real SQLite store seeded with generated power readings.

mod common;

use common::{add_owner, site, store_with_admin, TestServer, OWNER_PASSWORD};
use reqwest::StatusCode;
use se_core::{now_ms, DeviceId, Metric, Reading};
use se_store::Store;
use serde_json::{json, Value};

const HOUR_MS: i64 = 3_600_000;

fn device(id: &str) -> DeviceId {
    DeviceId::parse(id).unwrap()
}

/// Power of a device every 15 minutes over the `hours` hours before now: a
/// daily cycle between `base - 200` and `base + 200` W with small noise.
fn generated_power(id: &str, hours: i64, base: f64) -> Vec<Reading> {
    let now = now_ms();
    let steps = hours * 4;
    (0..steps)
        .map(|step| {
            let ts = now - (steps - step) * 900_000;
            let hour_of_day = (ts.rem_euclid(86_400_000)) as f64 / HOUR_MS as f64;
            let daily = (2.0 * std::f64::consts::PI * hour_of_day / 24.0).sin();
            let noise = 10.0 * ((step as f64 * 0.618_033_988_75).fract() - 0.5);
            Reading::new(device(id), "main", Metric::Power, ts, base + 200.0 * daily + noise)
        })
        .collect()
}

impl TestServer {
    /// Sites: `farm` (devices rig-1 and rig-2, 21 days of readings, owned by
    /// `owner`), `other` (owned by `neighbour`, device rig-9), `lab` (device
    /// fresh-1 with 20 hours of readings, too few for any backtest) and `empty` (no device).
    async fn start() -> TestServer {
        let (dir, store) = store_with_admin().await;
        for id in ["farm", "other", "lab", "empty"] {
            store.upsert_site(&site(id)).await.unwrap();
        }
        add_owner(&store, "owner", &["farm"]).await;
        add_owner(&store, "neighbour", &["other"]).await;
        let mut readings = generated_power("rig-1", 21 * 24, 600.0);
        readings.extend(generated_power("rig-2", 21 * 24, 400.0));
        readings.extend(generated_power("rig-9", 3 * 24, 300.0));
        readings.extend(generated_power("fresh-1", 20, 300.0));
        store.write_readings(&readings).await.unwrap();
        for (id, site_id) in [("rig-1", "farm"), ("rig-2", "farm"), ("rig-9", "other"), ("fresh-1", "lab")] {
            store.assign_device(&device(id), site_id).await.unwrap();
        }

        TestServer::serve(dir, store).await
    }
}

async fn get(client: &reqwest::Client, server: &TestServer, path: &str) -> (StatusCode, Value) {
    let response = client.get(server.url(path)).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Checks the shape of a forecast body: `hours` hourly points right after
/// the history, each with lower <= predicted <= upper.
fn assert_forecast_shape(body: &Value, hours: usize) {
    let forecast = body["forecast"].as_array().unwrap();
    assert_eq!(forecast.len(), hours, "{body}");
    assert_eq!(body["horizon_hours"], json!(hours));
    assert_eq!(body["unit"], "Wh");
    let history = body["history"].as_array().unwrap();
    assert!(!history.is_empty(), "{body}");
    let last_history = history.last().unwrap()["ts_ms"].as_i64().unwrap();
    let first_forecast = forecast[0]["ts_ms"].as_i64().unwrap();
    assert_eq!(first_forecast, last_history + HOUR_MS);
    for (index, point) in forecast.iter().enumerate() {
        let lower = point["lower"].as_f64().unwrap();
        let predicted = point["predicted"].as_f64().unwrap();
        let upper = point["upper"].as_f64().unwrap();
        assert!(lower <= predicted, "hour {index}: lower {lower} > predicted {predicted}");
        assert!(predicted <= upper, "hour {index}: predicted {predicted} > upper {upper}");
        assert_eq!(point["ts_ms"].as_i64().unwrap(), first_forecast + index as i64 * HOUR_MS);
    }
}

#[tokio::test]
async fn site_day_ahead_forecast() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm/forecast?horizon=24h").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_forecast_shape(&body, 24);
    // The forecast starts at the current hour (UTC site).
    let now = now_ms();
    assert_eq!(body["forecast"][0]["ts_ms"].as_i64().unwrap(), now - now.rem_euclid(HOUR_MS));
    let model = body["model"].as_str().unwrap();
    let accuracy = body["accuracy"].as_array().unwrap();
    assert_eq!(accuracy.len(), 5, "{body}");
    let chosen = accuracy.iter().find(|entry| entry["model"] == model).unwrap();
    assert!(chosen["mae"].as_f64().unwrap() >= 0.0);
    assert!(chosen["rmse"].as_f64().unwrap() >= chosen["mae"].as_f64().unwrap());
    assert!(chosen["mape"].as_f64().is_some(), "{chosen}");
    assert!(body["backtest_days"].as_u64().unwrap() >= 3, "{body}");
    assert_eq!(body["selection"], "mape");
    // The site is the sum of rig-1 (600 W) and rig-2 (400 W): about 1 kWh per hour.
    let mean: f64 = body["forecast"].as_array().unwrap().iter().map(|point| point["predicted"].as_f64().unwrap()).sum::<f64>() / 24.0;
    assert!((800.0..1200.0).contains(&mean), "mean forecast {mean} Wh");
}

#[tokio::test]
async fn site_week_ahead_skips_weekly_models() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm/forecast?horizon=168h").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_forecast_shape(&body, 168);
    assert_eq!(body["history"].as_array().unwrap().len(), 14 * 24);
    // 21 days leave too few week-long backtests for MSTL, which needs two weeks before the first.
    let notices = body["notices"].as_array().unwrap();
    let skipped: Vec<&Value> = notices.iter().filter(|notice| notice["code"] == "model_skipped").collect();
    assert!(skipped.iter().any(|notice| notice["message"].as_str().unwrap().contains("mstl")), "{notices:?}");
}

#[tokio::test]
async fn device_forecast_for_owner() {
    let server = TestServer::start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;

    let (status, body) = get(&owner, &server, "/api/v1/devices/rig-1/forecast?horizon=24h").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_forecast_shape(&body, 24);
    assert_eq!(body["device"], "rig-1");
    assert_eq!(body["site"], "farm");
}

#[tokio::test]
async fn other_owners_site_forbidden() {
    let server = TestServer::start().await;
    let neighbour = server.login("neighbour", OWNER_PASSWORD).await;

    for path in [
        "/api/v1/sites/farm/forecast?horizon=24h",
        "/api/v1/sites/farm/warnings",
        "/api/v1/devices/rig-1/forecast",
        "/api/v1/sites/no-such-site/forecast",
    ] {
        let (status, body) = get(&neighbour, &server, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, body) = get(&neighbour, &server, "/api/v1/sites/farm/forecast").await;
    assert_eq!(body["error"]["code"], "site_forbidden", "{status} {body}");

    // Their own site and device remain visible.
    let (status, body) = get(&neighbour, &server, "/api/v1/devices/rig-9/forecast").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn forecast_requires_session() {
    let server = TestServer::start().await;
    let anonymous = reqwest::Client::new();
    let (status, _) = get(&anonymous, &server, "/api/v1/sites/farm/forecast").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_horizon_names_allowed_values() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    for path in ["/api/v1/sites/farm/forecast?horizon=48h", "/api/v1/devices/rig-1/forecast?horizon=48h"] {
        let (status, body) = get(&admin, &server, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_horizon");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"48h\""), "{message}");
        assert!(message.contains("24h, 168h"), "{message}");
    }
    let (_, body) = get(&admin, &server, "/api/v1/sites/farm/forecast?horizon=1w&lang=fr").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Horizon \"1w\" invalide"), "{message}");
}

#[tokio::test]
async fn unknown_site_and_device_not_found_for_admin() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (status, _) = get(&admin, &server, "/api/v1/sites/nowhere/forecast").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&admin, &server, "/api/v1/devices/ghost-1/forecast").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn short_history_falls_back_with_notice() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/lab/forecast?horizon=24h&lang=fr").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_forecast_shape(&body, 24);
    assert_eq!(body["backtest_days"], 0);
    assert_eq!(body["accuracy"], json!([]));
    let notice = &body["notices"][0];
    assert_eq!(notice["code"], "no_backtest", "{body}");
    assert!(notice["message"].as_str().unwrap().contains("trop peu pour un backtest"), "{notice}");
}

#[tokio::test]
async fn site_without_readings_has_no_forecast() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/empty/forecast").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["forecast"], json!([]));
    assert_eq!(body["model"], Value::Null);
    assert_eq!(body["notices"][0]["code"], "no_data");

    let (status, body) = get(&admin, &server, "/api/v1/sites/empty/warnings").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warnings"], json!([]));
    // Zero, not -0.0, which JSON clients would print with its sign.
    assert_eq!(body["month_to_date_kwh"].to_string(), "0.0");
}

async fn put_limits(server: &TestServer, admin: &reqwest::Client, limits: Value) -> (StatusCode, Value) {
    let mut body = json!({ "name": "Site farm", "time_zone": "UTC", "currency": "EUR" });
    if let (Some(target), Some(extra)) = (body.as_object_mut(), limits.as_object()) {
        target.extend(extra.clone());
    }
    let response = admin.put(server.url("/api/v1/sites/farm")).json(&body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn warning_kinds(body: &Value) -> Vec<String> {
    body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|warning| warning["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn no_limits_no_warnings() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm/warnings").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warnings"], json!([]));
    assert!(body["month_to_date_kwh"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn generous_limits_no_warnings() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (status, body) = put_limits(&server, &admin, json!({ "monthly_budget_kwh": 1e9, "demand_limit_kw": 1000.0 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm/warnings").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(body["monthly_budget_kwh"], json!(1e9));
}

#[tokio::test]
async fn tight_limits_fire_warnings() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (_, before) = get(&admin, &server, "/api/v1/sites/farm/warnings").await;
    let used = before["month_to_date_kwh"].as_f64().unwrap();

    // The first forecast hour alone adds about 1 kWh, so half a kWh above
    // the month so far is passed in the current hour, which is in this month.
    let limits = json!({ "monthly_budget_kwh": used + 0.5, "demand_limit_kw": 0.1 });
    let (status, body) = put_limits(&server, &admin, limits).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["demand_limit_kw"], json!(0.1));

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm/warnings").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(warning_kinds(&body), ["budget_forecast", "demand_forecast"], "{body}");
    let budget = &body["warnings"][0];
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date().to_string();
    assert_eq!(budget["date"], today.as_str());
    assert!(budget["message"].as_str().unwrap().starts_with("At this rate the site will pass its monthly budget"), "{budget}");
    let demand = &body["warnings"][1];
    assert!(demand["peak_kw"].as_f64().unwrap() > 0.1, "{demand}");
    assert!(demand["message"].as_str().unwrap().contains("limit 0.1 kW"), "{demand}");

    let (_, french) = get(&admin, &server, "/api/v1/sites/farm/warnings?lang=fr").await;
    let message = french["warnings"][1]["message"].as_str().unwrap();
    assert!(message.starts_with("Le pic de demain dépassera la limite de puissance"), "{message}");
}

#[tokio::test]
async fn money_budget_needs_tariff() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (status, body) = put_limits(&server, &admin, json!({ "monthly_budget_amount": 0.01 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Without a tariff the money budget cannot be checked.
    let (_, body) = get(&admin, &server, "/api/v1/sites/farm/warnings").await;
    assert_eq!(body["warnings"], json!([]), "{body}");
    assert_eq!(body["month_to_date_cost"], Value::Null);

    let tariff = r#"{"currency":"EUR","energy":{"type":"flat","price_per_kwh":"0.25"}}"#;
    let response = admin.put(server.url("/api/v1/sites/farm/tariff")).body(tariff).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, body) = get(&admin, &server, "/api/v1/sites/farm/warnings").await;
    let kinds = warning_kinds(&body);
    assert_eq!(kinds.len(), 1, "{body}");
    assert!(kinds[0] == "budget_forecast" || kinds[0] == "budget_exceeded", "{body}");
    assert_eq!(body["warnings"][0]["unit"], "money");
    assert!(body["warnings"][0]["message"].as_str().unwrap().contains("0.01 EUR"), "{body}");
}

#[tokio::test]
async fn invalid_limit_rejected() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, body) = put_limits(&server, &admin, json!({ "demand_limit_kw": -5.0 })).await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_site_limit");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("demand_limit_kw"), "{message}");
    assert!(message.contains("-5"), "{message}");
    assert_eq!(server.store.site_limits("farm").await.unwrap(), Some(se_store::SiteLimits::default()));
}

#[tokio::test]
async fn site_view_lists_limits() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    put_limits(&server, &admin, json!({ "monthly_budget_kwh": 900.0 })).await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["monthly_budget_kwh"], json!(900.0));
    assert_eq!(body["monthly_budget_amount"], Value::Null);
    assert_eq!(body["demand_limit_kw"], Value::Null);
}
