//! Tests of the anomaly routes against a real server on loopback and a real
//! SQLite store seeded with generated rig readings.

mod common;

use std::sync::Arc;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::StatusCode;
use se_core::{now_ms, DeviceId, Metric, Reading};
use se_store::{NewUser, Role, Site, SqliteStore, Store};
use serde_json::Value;

const OWNER_PASSWORD: &str = "owner-password-42";
const STEP_MS: i64 = 30_000;
/// Two hours of readings every 30 s.
const STEPS: i64 = 240;
const GPUS: usize = 4;

/// Faults written into a generated rig.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// GPU whose power sensor repeats 200 W over the last 30 minutes.
    stuck_gpu: Option<usize>,
    /// GPU with one reading of 520 W 20 minutes ago, at its usual
    /// utilization. It is also impossible, because the maximum is 1.1 times
    /// the 250 W limit.
    spike_gpu: Option<usize>,
}

/// Readings of a rig up to now. Each GPU draws about 200 W ± 20 W at
/// 95 % ± 2.5 % utilization with a limit of 250 W. The wall meter reads the
/// GPU sum plus 8 % and 150 W.
fn generated_rig(id: &str, faults: Faults) -> Vec<Reading> {
    let device = DeviceId::parse(id).unwrap();
    let now = now_ms();
    let mut readings = Vec::new();
    for step in 0..STEPS {
        let ts = now - (STEPS - 1 - step) * STEP_MS;
        let mut gpu_sum = 0.0;
        for gpu in 0..GPUS {
            // Golden-ratio steps spread the noise evenly without a random generator.
            let noise = ((step as f64 + 37.0 * gpu as f64) * 0.618_033_988_75).fract() - 0.5;
            let load_noise = ((step as f64 * 0.414_213_562_37) + 0.25 * gpu as f64).fract() - 0.5;
            let mut watts = round1(200.0 + 40.0 * noise);
            if faults.stuck_gpu == Some(gpu) && step >= STEPS - 60 {
                watts = 200.0;
            }
            if faults.spike_gpu == Some(gpu) && step == STEPS - 40 {
                watts = 520.0;
            }
            gpu_sum += watts;
            let channel = format!("gpu{gpu}");
            readings.push(Reading::new(device.clone(), &channel, Metric::Power, ts, watts));
            readings.push(Reading::new(device.clone(), &channel, Metric::Utilization, ts, round1(95.0 + 5.0 * load_noise)));
            readings.push(Reading::new(device.clone(), &channel, Metric::PowerLimit, ts, 250.0));
        }
        readings.push(Reading::new(device.clone(), "wall", Metric::Power, ts, round1(gpu_sum * 1.08 + 150.0)));
    }
    readings
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn site(id: &str) -> Site {
    Site {
        id: id.to_owned(),
        name: format!("Site {id}"),
        time_zone: "UTC".to_owned(),
        currency: "EUR".to_owned(),
        tariff_json: None,
        co2_g_per_kwh: None,
    }
}

impl TestServer {
    /// Sites: `farm` (owned by `owner`) with rig-1, whose GPU 1 is stuck and
    /// GPU 2 spiked; `calm` (owned by `owner`) with the healthy rig-2;
    /// `other` (owned by `neighbour`) with the healthy rig-9.
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        se_web::ensure_admin(store.as_ref(), Some(ADMIN_PASSWORD.to_owned())).await.unwrap();
        for id in ["farm", "calm", "other"] {
            store.upsert_site(&site(id)).await.unwrap();
        }
        for (username, sites) in [("owner", &["farm", "calm"][..]), ("neighbour", &["other"][..])] {
            let user = store
                .create_user(&NewUser {
                    username: username.into(),
                    password_hash: se_web::hash_password(OWNER_PASSWORD).unwrap(),
                    role: Role::BuildingOwner,
                    must_change_password: false,
                })
                .await
                .unwrap();
            for site_id in sites {
                store.set_site_owner(site_id, user.id, true).await.unwrap();
            }
        }
        let mut readings = generated_rig("rig-1", Faults { stuck_gpu: Some(1), spike_gpu: Some(2) });
        readings.extend(generated_rig("rig-2", Faults::default()));
        readings.extend(generated_rig("rig-9", Faults::default()));
        store.write_readings(&readings).await.unwrap();
        for (id, site_id) in [("rig-1", "farm"), ("rig-2", "calm"), ("rig-9", "other")] {
            store.assign_device(&DeviceId::parse(id).unwrap(), site_id).await.unwrap();
        }
        TestServer::serve(dir, store).await
    }
}

async fn get(client: &reqwest::Client, server: &TestServer, path: &str, lang: &str) -> (StatusCode, Value) {
    let response = client.get(server.url(path)).header("Accept-Language", lang).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// (channel, kind, severity) of each anomaly, in response order.
fn summary(body: &Value) -> Vec<(String, String, String)> {
    body["anomalies"]
        .as_array()
        .unwrap_or_else(|| panic!("no anomalies list in {body}"))
        .iter()
        .map(|anomaly| {
            let field = |name: &str| anomaly[name].as_str().unwrap_or_default().to_owned();
            (field("channel"), field("kind"), field("severity"))
        })
        .collect()
}

fn triple(channel: &str, kind: &str, severity: &str) -> (String, String, String) {
    (channel.to_owned(), kind.to_owned(), severity.to_owned())
}

#[tokio::test]
async fn site_lists_stuck_and_spike() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/farm/anomalies", "en").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["site"], "farm");
    assert_eq!(body["hours"], 6);
    assert_eq!(body["to_ms"].as_i64().unwrap() - body["from_ms"].as_i64().unwrap(), 6 * 3_600_000);
    // Critical first: the 520 W reading scores far above the critical score
    // and is above 1.1 × the 250 W limit. The newer stuck run is a warning.
    assert_eq!(
        summary(&body),
        vec![triple("gpu2", "spike", "critical"), triple("gpu2", "impossible", "critical"), triple("gpu1", "stuck", "warning")]
    );

    let spike = &body["anomalies"][0];
    assert_eq!(spike["device"], "rig-1");
    assert_eq!(spike["metric"], "power_w");
    assert!(spike["score"].as_f64().unwrap() >= 12.0, "{spike}");
    assert_eq!(spike["start_ms"], spike["end_ms"], "{spike}");
    let message = spike["message"].as_str().unwrap();
    assert!(message.starts_with("GPU 2 of rig-1"), "{message}");
    assert!(message.contains("520"), "{message}");

    let impossible = &body["anomalies"][1];
    assert_eq!(impossible["start_ms"], spike["start_ms"], "{impossible}");
    assert!(impossible["message"].as_str().unwrap().contains("275.0 W"), "{impossible}");

    let stuck = &body["anomalies"][2];
    let duration_ms = stuck["end_ms"].as_i64().unwrap() - stuck["start_ms"].as_i64().unwrap();
    assert_eq!(duration_ms, 59 * STEP_MS, "{stuck}");
    assert!(stuck["message"].as_str().unwrap().contains("exactly 200.0 W"), "{stuck}");
}

#[tokio::test]
async fn messages_follow_accept_language() {
    let server = TestServer::start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;

    let (status, body) = get(&owner, &server, "/api/v1/sites/farm/anomalies?hours=3", "fr-FR,fr;q=0.9").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hours"], 3);
    assert_eq!(summary(&body).len(), 3, "{body}");
    let spike = body["anomalies"][0]["message"].as_str().unwrap();
    assert!(spike.starts_with("Le GPU 2 de rig-1 : pic de la puissance à 520,0 W"), "{spike}");
    let stuck = body["anomalies"][2]["message"].as_str().unwrap();
    assert!(stuck.starts_with("Le GPU 1 de rig-1 : la puissance reste à exactement 200,0 W"), "{stuck}");
}

#[tokio::test]
async fn device_route_scans_one_device() {
    let server = TestServer::start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;

    let (status, body) = get(&owner, &server, "/api/v1/devices/rig-1/anomalies?hours=48", "en").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["site"], "farm");
    assert_eq!(body["device"], "rig-1");
    let kinds: Vec<String> = summary(&body).into_iter().map(|(_, kind, _)| kind).collect();
    assert_eq!(kinds, ["spike", "impossible", "stuck"]);

    let (status, body) = get(&owner, &server, "/api/v1/devices/rig-2/anomalies", "en").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(summary(&body), vec![]);
}

#[tokio::test]
async fn healthy_site_has_empty_list() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    // The list must be empty because the rigs are healthy, not because they have no readings.
    for id in ["rig-2", "rig-9"] {
        let query = se_store::RawQuery {
            device: DeviceId::parse(id).unwrap(),
            channel: None,
            metric: Some(Metric::Power),
            from_ms: now_ms() - 3 * 3_600_000,
            to_ms: now_ms() + 1,
            limit: 0,
        };
        let readings = server.store.raw_readings(&query).await.unwrap();
        assert_eq!(readings.len(), STEPS as usize * (GPUS + 1), "{id}");
    }

    for path in ["/api/v1/sites/calm/anomalies", "/api/v1/sites/other/anomalies?hours=48"] {
        let (status, body) = get(&admin, &server, path, "en").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["anomalies"], serde_json::json!([]), "{path}");
    }
}

#[tokio::test]
async fn owner_forbidden_on_foreign_ids() {
    let server = TestServer::start().await;
    let owner = server.login("owner", OWNER_PASSWORD).await;

    let (status, body) = get(&owner, &server, "/api/v1/sites/other/anomalies", "en").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "site_forbidden");
    // An unknown site gets 403 too, so owners cannot probe for site ids.
    let (status, _) = get(&owner, &server, "/api/v1/sites/nowhere/anomalies", "en").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = get(&owner, &server, "/api/v1/devices/rig-9/anomalies", "en").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "device_forbidden");
}

#[tokio::test]
async fn admin_unknown_ids_not_found() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/nowhere/anomalies", "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "site_not_found");
    let (status, body) = get(&admin, &server, "/api/v1/devices/ghost-1/anomalies", "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn invalid_hours_names_value() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    for value in ["0", "abc", "49"] {
        let path = format!("/api/v1/sites/farm/anomalies?hours={value}");
        let (status, body) = get(&admin, &server, &path, "en").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}: {body}");
        assert_eq!(body["error"]["code"], "invalid_number");
        let message = body["error"]["message"].as_str().unwrap();
        assert_eq!(message, format!("Invalid value \"{value}\" for hours: use a whole number from 1 to 48."));
    }

    let (status, body) = get(&admin, &server, "/api/v1/devices/rig-1/anomalies?hours=0", "fr").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(message, "Valeur \"0\" invalide pour hours : utilisez un nombre entier de 1 à 48.");
}

#[tokio::test]
async fn anomalies_need_a_session() {
    let server = TestServer::start().await;
    let anonymous = reqwest::Client::new();
    let (status, body) = get(&anonymous, &server, "/api/v1/sites/farm/anomalies", "en").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}
