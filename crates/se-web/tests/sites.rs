//! Tests of the site routes against a real server on loopback and a real
//! SQLite store in a temporary directory.

mod common;

use std::sync::Arc;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::StatusCode;
use se_core::{DeviceId, Metric, Reading};
use se_store::{NewUser, Role, SqliteStore, Store};
use serde_json::{json, Value};

const OWNER_PASSWORD: &str = "owner-password-42";
const FLAT_TARIFF: &str = r#"{"currency":"EUR","energy":{"type":"flat","price_per_kwh":"0.25"}}"#;

/// Starts a server with an `admin` and an `owner` account, and returns it
/// with the owner's user id.
async fn start() -> (TestServer, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    se_web::ensure_admin(store.as_ref(), Some(ADMIN_PASSWORD.to_owned()))
        .await
        .unwrap();
    let owner = store
        .create_user(&NewUser {
            username: "owner".into(),
            password_hash: se_web::hash_password(OWNER_PASSWORD).unwrap(),
            role: Role::BuildingOwner,
            must_change_password: false,
        })
        .await
        .unwrap();
    (TestServer::serve(dir, store).await, owner.id)
}

impl TestServer {
    async fn owner(&self) -> reqwest::Client {
        self.login("owner", OWNER_PASSWORD).await
    }

    async fn add_site(&self, id: &str) {
        self.store.upsert_site(&common::site(id)).await.unwrap();
    }
}

fn ms(rfc3339: &str) -> i64 {
    rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn device(id: &str) -> DeviceId {
    DeviceId::parse(id).unwrap()
}

/// 1000 W sampled every minute from 10:00 to 11:00 UTC: exactly 1 kWh in that hour.
async fn write_one_kwh_of_power(store: &SqliteStore, id: &str) {
    let start = ms("2026-01-05T10:00:00Z");
    let readings: Vec<Reading> = (0..=60)
        .map(|minute| Reading::new(device(id), "total", Metric::Power, start + minute * 60_000, 1000.0))
        .collect();
    store.write_readings(&readings).await.unwrap();
}

const HOUR_QUERY: &str = "from=2026-01-05T10:00:00Z&to=2026-01-05T11:00:00Z";

async fn energy(client: &reqwest::Client, server: &TestServer, site: &str, query: &str) -> (StatusCode, Value) {
    let response = client
        .get(server.url(&format!("/api/v1/sites/{site}/energy?{query}")))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn power_series_gives_one_kwh() {
    let (server, _) = start().await;
    write_one_kwh_of_power(&server.store, "rig-1").await;
    let admin = server.admin().await;

    let (status, body) = energy(&admin, &server, "default", HOUR_QUERY).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert!((body["kwh"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{body}");
    assert_eq!(body["known"], json!(true), "{body}");
    assert_eq!(body["cost"], Value::Null);
    assert_eq!(body["per_device"][0]["device"], json!("rig-1"));
}

#[tokio::test]
async fn counter_reset_counts_both_sides() {
    let (server, _) = start().await;
    let start = ms("2026-01-05T10:00:00Z");
    // Wh counter: +1000 Wh, then a reset to 0 and +600 Wh after it.
    let values = [1000.0, 1500.0, 2000.0, 0.0, 300.0, 600.0];
    let readings: Vec<Reading> = values
        .iter()
        .enumerate()
        .map(|(i, wh)| Reading::new(device("meter-1"), "main", Metric::Energy, start + i as i64 * 600_000, *wh))
        .collect();
    server.store.write_readings(&readings).await.unwrap();
    let admin = server.admin().await;

    let (status, body) = energy(&admin, &server, "default", HOUR_QUERY).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert!((body["kwh"].as_f64().unwrap() - 1.6).abs() < 1e-9, "{body}");
    assert_eq!(body["known"], json!(false), "a reset loses energy: {body}");
    assert_eq!(body["unknown_spans"][0]["cause"], json!("reset"), "{body}");
}

#[tokio::test]
async fn adjacent_periods_add_up_for_a_counter() {
    let (server, _) = start().await;
    // A Wh counter every 15 minutes on the quarter hours, +250 Wh each, for two days.
    let start = ms("2026-01-05T00:00:00Z");
    let readings: Vec<Reading> = (0..=192)
        .map(|i| Reading::new(device("meter-1"), "main", Metric::Energy, start + i * 900_000, 500_000.0 + 250.0 * i as f64))
        .collect();
    server.store.write_readings(&readings).await.unwrap();
    let admin = server.admin().await;
    let kwh = |body: &Value| body["kwh"].as_f64().unwrap();

    let (_, first_day) = energy(&admin, &server, "default", "from=2026-01-05T00:00:00Z&to=2026-01-06T00:00:00Z").await;
    let (_, second_day) = energy(&admin, &server, "default", "from=2026-01-06T00:00:00Z&to=2026-01-07T00:00:00Z").await;
    let (_, both) = energy(&admin, &server, "default", "from=2026-01-05T00:00:00Z&to=2026-01-07T00:00:00Z").await;
    let (_, noon) = energy(&admin, &server, "default", "from=2026-01-05T12:00:00Z&to=2026-01-05T13:00:00Z").await;

    // The reading at the end of a period closes its last quarter hour.
    assert!((kwh(&first_day) - 24.0).abs() < 1e-9, "{first_day}");
    assert!((kwh(&second_day) - 24.0).abs() < 1e-9, "{second_day}");
    assert!((kwh(&both) - 48.0).abs() < 1e-9, "{both}");
    assert!((kwh(&noon) - 1.0).abs() < 1e-9, "{noon}");
}

#[tokio::test]
async fn site_co2_factor_wins_everywhere() {
    let (server, _) = start().await;
    write_one_kwh_of_power(&server.store, "rig-1").await;
    let admin = server.admin().await;
    let tariff = r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.25"}, "co2_g_per_kwh": 460}"#;
    let saved = admin.put(server.url("/api/v1/sites/default/tariff")).body(tariff).send().await.unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    let settings = json!({"name": "Default site", "time_zone": "UTC", "currency": "EUR", "co2_g_per_kwh": 470.0});
    let updated = admin.put(server.url("/api/v1/sites/default")).json(&settings).send().await.unwrap();
    assert!(updated.status().is_success(), "{}", updated.status());

    let (status, body) = energy(&admin, &server, "default", HOUR_QUERY).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert!((body["co2_kg"].as_f64().unwrap() - 0.47).abs() < 1e-9, "{body}");
    assert_eq!(body["cost"]["co2_kg"], body["co2_kg"], "one factor for both: {body}");
}

#[tokio::test]
async fn flat_tariff_prices_energy() {
    let (server, _) = start().await;
    write_one_kwh_of_power(&server.store, "rig-1").await;
    let admin = server.admin().await;

    let saved = admin
        .put(server.url("/api/v1/sites/default/tariff"))
        .body(FLAT_TARIFF)
        .send()
        .await
        .unwrap();
    let (status, body) = energy(&admin, &server, "default", HOUR_QUERY).await;

    assert_eq!(saved.status(), StatusCode::OK);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cost"]["currency"], json!("EUR"), "{body}");
    assert_eq!(body["cost"]["total"], json!("0.25"), "{body}");
}

#[tokio::test]
async fn overlapping_tariff_hours_rejected() {
    let (server, _) = start().await;
    let admin = server.admin().await;
    let tariff = r#"{"currency":"EUR","energy":{"type":"time_of_use","periods":[
        {"name":"peak","price_per_kwh":"0.3","days":["all"],"hours":[[0,12]]},
        {"name":"rest","price_per_kwh":"0.1","days":["all"],"hours":[[10,24]]}]}}"#;

    let response = admin
        .put(server.url("/api/v1/sites/default/tariff?lang=fr"))
        .body(tariff)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("invalid_tariff"));
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Le tarif est invalide"), "{message}");
    assert!(message.contains("10-12"), "names the overlapping hours: {message}");
    let stored = server.store.site("default").await.unwrap().unwrap();
    assert_eq!(stored.tariff_json, None);
}

#[tokio::test]
async fn owner_cannot_see_foreign_site() {
    let (server, owner_id) = start().await;
    server.add_site("mine").await;
    server.add_site("theirs").await;
    server.store.set_site_owner("mine", owner_id, true).await.unwrap();
    let owner = server.owner().await;

    let foreign = owner.get(server.url("/api/v1/sites/theirs")).send().await.unwrap();
    let foreign_energy = owner.get(server.url("/api/v1/sites/theirs/energy")).send().await.unwrap();
    let own = owner.get(server.url("/api/v1/sites/mine")).send().await.unwrap();
    let list: Value = owner
        .get(server.url("/api/v1/sites"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let missing = owner.get(server.url("/api/v1/sites/nowhere")).send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(foreign_energy.status(), StatusCode::FORBIDDEN);
    let body: Value = foreign.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("site_forbidden"), "{body}");
    // A site that does not exist gets the same status, so site ids do not leak.
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], json!("mine"));
}

#[tokio::test]
async fn owner_cannot_read_foreign_device() {
    let (server, owner_id) = start().await;
    server.add_site("mine").await;
    server.add_site("theirs").await;
    server.store.set_site_owner("mine", owner_id, true).await.unwrap();
    write_one_kwh_of_power(&server.store, "meter-mine").await;
    write_one_kwh_of_power(&server.store, "meter-theirs").await;
    server.store.assign_device(&device("meter-mine"), "mine").await.unwrap();
    server.store.assign_device(&device("meter-theirs"), "theirs").await.unwrap();
    let owner = server.owner().await;
    let admin = server.admin().await;

    let list: Value = owner.get(server.url("/api/v1/devices")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = list.as_array().unwrap().iter().filter_map(|device| device["id"].as_str()).collect();
    assert_eq!(ids, ["meter-mine"], "{list}");
    let admin_list: Value = admin.get(server.url("/api/v1/devices")).send().await.unwrap().json().await.unwrap();
    assert_eq!(admin_list.as_array().map(Vec::len), Some(2), "{admin_list}");

    let foreign_paths = [
        "/api/v1/devices/meter-theirs".to_owned(),
        format!("/api/v1/devices/meter-theirs/series?channel=total&metric=power_w&{HOUR_QUERY}"),
        format!("/api/v1/devices/meter-theirs/readings?{HOUR_QUERY}"),
        "/api/v1/live?device=meter-theirs".to_owned(),
        "/api/v1/ingest/errors?device=meter-theirs".to_owned(),
    ];
    for path in &foreign_paths {
        let response = owner.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], json!("device_forbidden"), "{path}");
    }

    let own = owner
        .get(server.url(&format!("/api/v1/devices/meter-mine/readings?{HOUR_QUERY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    let readings: Value = own.json().await.unwrap();
    // The span is half-open, so the reading at 11:00 is left out.
    assert_eq!(readings.as_array().map(Vec::len), Some(60), "{readings}");
}

#[tokio::test]
async fn owner_cannot_change_tariff() {
    let (server, owner_id) = start().await;
    server.store.set_site_owner("default", owner_id, true).await.unwrap();
    let owner = server.owner().await;

    let response = owner
        .put(server.url("/api/v1/sites/default/tariff"))
        .body(FLAT_TARIFF)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn admin_creates_site_and_assigns_device() {
    let (server, _) = start().await;
    write_one_kwh_of_power(&server.store, "rig-1").await;
    let admin = server.admin().await;

    let created = admin
        .put(server.url("/api/v1/sites/farm"))
        .json(&json!({"name": "Farm", "time_zone": "Africa/Tunis", "currency": "TND", "co2_g_per_kwh": 500.0}))
        .send()
        .await
        .unwrap();
    let assigned = admin
        .put(server.url("/api/v1/devices/rig-1/site"))
        .json(&json!({"site": "farm"}))
        .send()
        .await
        .unwrap();
    let (_, body) = energy(&admin, &server, "farm", HOUR_QUERY).await;

    assert_eq!(created.status(), StatusCode::OK);
    assert_eq!(assigned.status(), StatusCode::NO_CONTENT);
    assert_eq!(body["per_device"][0]["device"], json!("rig-1"), "{body}");
    assert!((body["co2_kg"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{body}");
}

#[tokio::test]
async fn bad_site_settings_rejected() {
    let (server, _) = start().await;
    let admin = server.admin().await;
    let cases = [
        (json!({"name": "Farm", "time_zone": "Mars/Olympus", "currency": "EUR"}), "invalid_time_zone", "\"Mars/Olympus\""),
        (json!({"name": "Farm", "time_zone": "UTC", "currency": "XYZ"}), "invalid_currency", "\"XYZ\""),
    ];

    for (settings, code, named) in cases {
        let response = admin.put(server.url("/api/v1/sites/farm")).json(&settings).send().await.unwrap();

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{settings}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], json!(code), "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "names the value: {body}");
        assert!(server.store.site("farm").await.unwrap().is_none(), "nothing is stored for {settings}");
    }
}

#[tokio::test]
async fn site_without_devices_has_zero_kwh() {
    let (server, _) = start().await;
    server.add_site("bare").await;
    let admin = server.admin().await;

    let (status, body) = energy(&admin, &server, "bare", HOUR_QUERY).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    // Zero, not -0.0, which the dashboard would show as "-0 kWh".
    assert_eq!(body["kwh"].to_string(), "0.0");
}

/// Writes what the ESP32 prototype stores every 5 s from 09:55 to 11:00 UTC:
/// current, voltage, an apparent energy counter and apparent power of 120 VA,
/// so 120 VAh in the hour from 10:00, and no active power or energy.
async fn write_prototype_hour(store: &SqliteStore, id: &str) {
    let start = ms("2026-01-05T09:55:00Z");
    let mut readings = Vec::new();
    for step in 0..=(65 * 12) {
        let ts_ms = start + step * 5000;
        let vah = 53.59 + 120.0 * (step * 5) as f64 / 3600.0;
        readings.push(Reading::new(device(id), "main", Metric::Current, ts_ms, 0.52));
        readings.push(Reading::new(device(id), "main", Metric::Voltage, ts_ms, 230.0));
        readings.push(Reading::new(device(id), "main", Metric::ApparentEnergy, ts_ms, vah));
        readings.push(Reading::new(device(id), "main", Metric::ApparentPower, ts_ms, 120.0));
    }
    store.write_readings(&readings).await.unwrap();
}

#[tokio::test]
async fn apparent_energy_counts_as_estimate() {
    let (server, _) = start().await;
    write_prototype_hour(&server.store, "esp32-prototype").await;
    let admin = server.admin().await;

    let (status, body) = energy(&admin, &server, "default", HOUR_QUERY).await;

    // The reading at 11:00 closes the last 5 s of the hour, so the hour gets all of its 120 VAh.
    let expected_kwh = 0.12;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!((body["kwh"].as_f64().unwrap() - expected_kwh).abs() < 1e-9, "{body}");
    assert_eq!(body["known"], json!(true), "{body}");
    assert!((body["estimated_kwh"].as_f64().unwrap() - expected_kwh).abs() < 1e-9, "{body}");
    assert_eq!(body["unknown_spans"], json!([]), "{body}");
    let device = &body["per_device"][0];
    assert_eq!(device["device"], json!("esp32-prototype"), "{body}");
    assert_eq!(device["estimated"], json!(true), "{body}");
    assert_eq!(device["sources"], json!(["apparent_energy_vah"]), "{body}");
}

#[tokio::test]
async fn active_power_is_not_estimate() {
    let (server, _) = start().await;
    write_one_kwh_of_power(&server.store, "rig-1").await;
    let admin = server.admin().await;

    let (status, body) = energy(&admin, &server, "default", HOUR_QUERY).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["estimated_kwh"].to_string(), "0.0", "{body}");
    assert_eq!(body["per_device"][0]["estimated"], json!(false), "{body}");
    assert_eq!(body["per_device"][0]["sources"], json!(["power_w"]), "{body}");
}

/// Time of use with a demand charge of 8.500 TND per kW and a fixed charge
/// of 4.000 TND per month.
const TND_TARIFF: &str = r#"{"currency":"TND","energy":{"type":"time_of_use","periods":[
    {"name":"peak","price_per_kwh":"0.350","days":["all"],"hours":[[8,20]]},
    {"name":"night","price_per_kwh":"0.120","days":["all"],"hours":[[0,8],[20,24]]}]},
    "demand":{"price_per_kw":"8.500","interval_minutes":15},"fixed_per_month":"4.000"}"#;

async fn save_tariff(admin: &reqwest::Client, server: &TestServer, tariff: &str) {
    let saved = admin
        .put(server.url("/api/v1/sites/default/tariff"))
        .body(tariff.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
}

#[tokio::test]
async fn day_cost_prorates_fixed_charge() {
    let (server, _) = start().await;
    write_one_kwh_of_power(&server.store, "rig-1").await;
    let admin = server.admin().await;
    save_tariff(&admin, &server, TND_TARIFF).await;

    let day = "from=2026-01-05T00:00:00Z&to=2026-01-06T00:00:00Z";
    let (status, body) = energy(&admin, &server, "default", day).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let lines = body["cost"]["lines"].as_array().unwrap();
    let fixed = lines.iter().find(|line| line["kind"] == json!("fixed")).unwrap();
    // One day of January's 31: 4.000 x 0.032258 = 0.129 TND.
    assert_eq!(fixed["quantity"], json!("0.032258"), "{body}");
    assert_eq!(fixed["amount"], json!("0.129"), "{body}");
    assert!(lines.iter().all(|line| line["kind"] != json!("demand")), "{body}");
    let excluded = &body["cost"]["excluded_demand"];
    assert_eq!(excluded[0]["quantity"], json!("1.00"), "{body}");
    assert_eq!(excluded[0]["amount"], json!("8.500"), "{body}");
    // 1 kWh from 10:00 to 11:00 at the peak price, plus the day's fixed share.
    assert_eq!(body["cost"]["total"], json!("0.479"), "{body}");
}

#[tokio::test]
async fn month_cost_keeps_full_charges() {
    let (server, _) = start().await;
    write_one_kwh_of_power(&server.store, "rig-1").await;
    let admin = server.admin().await;
    save_tariff(&admin, &server, TND_TARIFF).await;

    let month = "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z";
    let (status, body) = energy(&admin, &server, "default", month).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cost"]["excluded_demand"], json!([]), "{body}");
    // 0.350 energy + 8.500 demand + 4.000 fixed.
    assert_eq!(body["cost"]["total"], json!("12.850"), "{body}");
}

#[tokio::test]
async fn unknown_device_assignment_is_404() {
    let (server, _) = start().await;
    server.add_site("farm2").await;
    let admin = server.admin().await;

    let response = admin
        .put(server.url("/api/v1/devices/nosuch/site"))
        .json(&json!({"site": "farm2"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("device_not_found"), "{body}");
    let site: Value = admin.get(server.url("/api/v1/sites/farm2")).send().await.unwrap().json().await.unwrap();
    assert_eq!(site["devices"], json!([]), "{site}");
}

#[tokio::test]
async fn unknown_device_error_in_french() {
    let (server, _) = start().await;
    server.add_site("farm2").await;
    let admin = server.admin().await;

    let response = admin
        .put(server.url("/api/v1/devices/nosuch/site"))
        .header("Accept-Language", "fr-FR")
        .json(&json!({"site": "farm2"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        json!("Aucun appareil \"nosuch\" n'est connu. Vérifiez l'identifiant dans la liste des appareils."),
        "{body}"
    );
}

#[tokio::test]
async fn device_with_readings_can_be_assigned() {
    let (server, _) = start().await;
    server.add_site("farm2").await;
    write_one_kwh_of_power(&server.store, "rig-9").await;
    let admin = server.admin().await;

    let response = admin
        .put(server.url("/api/v1/devices/rig-9/site"))
        .json(&json!({"site": "farm2"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let site: Value = admin.get(server.url("/api/v1/sites/farm2")).send().await.unwrap().json().await.unwrap();
    assert_eq!(site["devices"], json!(["rig-9"]), "{site}");
}
