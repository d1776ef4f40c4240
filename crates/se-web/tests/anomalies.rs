//! Tests of the anomaly routes against a real server on loopback and a real
//! SQLite store seeded with generated rig readings.

mod common;

use common::{add_owner, site, store_with_admin, TestServer, OWNER_PASSWORD};
use reqwest::StatusCode;
use se_core::{now_ms, Announcement, DeviceId, Metric, Reading};
use se_store::{DiscoveryStatus, IngestBatch, Store};
use serde_json::Value;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
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

impl TestServer {
    /// Sites: `farm` (owned by `owner`) with rig-1, whose GPU 1 is stuck and
    /// GPU 2 spiked; `calm` (owned by `owner`) with the healthy rig-2;
    /// `other` (owned by `neighbour`) with the healthy rig-9.
    async fn start() -> TestServer {
        let (dir, store) = store_with_admin().await;
        for id in ["farm", "calm", "other"] {
            store.upsert_site(&site(id)).await.unwrap();
        }
        add_owner(&store, "owner", &["farm", "calm"]).await;
        add_owner(&store, "neighbour", &["other"]).await;
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

// Detectors over days of hourly means and across same-model rigs.

/// Model that the rigs of `fleet` and `steady` announce.
const GPU_MODEL: &str = "NVIDIA GeForce RTX 3070";

/// A generated rig with days of readings.
#[derive(Clone, Copy)]
struct HistoryRig {
    /// Days of readings before now.
    days: i64,
    gpus: usize,
    /// Multiplies the power of every GPU.
    power_factor: f64,
    /// GPU drawing 45 % of its usual power over the last 5 hours.
    departed_gpu: Option<usize>,
    /// GPU whose hashrate falls by 6 % a day over the last 4 days, at the same power.
    drifting_gpu: Option<usize>,
}

impl HistoryRig {
    fn healthy(days: i64) -> Self {
        Self { days, gpus: 4, power_factor: 1.0, departed_gpu: None, drifting_gpu: None }
    }
}

/// Golden-ratio steps spread the noise evenly in [-0.5, 0.5) without a random generator.
fn spread(index: i64, offset: f64) -> f64 {
    (index as f64 * 0.618_033_988_75 + offset).fract() - 0.5
}

/// Readings of a rig up to now: every 15 minutes until 7 hours ago, then
/// every minute, so a window of up to 6 hours contains evenly spaced readings.
/// GPU `n` draws about 200 W, 50 W more at 06:00 UTC and 50 W less at
/// 18:00 as a daily schedule, times 0.97 to 1.03 for the card, with ±5 W of
/// noise, at about 95 % utilization. Its hashrate is 0.3 MH/s per watt.
fn history_rig(id: &str, rig: HistoryRig) -> Vec<Reading> {
    const CARD_FACTORS: [f64; 4] = [1.0, 0.97, 1.03, 1.01];
    let device = DeviceId::parse(id).unwrap();
    let now = now_ms();
    let fine_from = now - 7 * HOUR_MS;
    let coarse = (1..=rig.days * 96).rev().map(|step| fine_from - step * 900_000);
    let fine = (0..=420).rev().map(|step| now - step * 60_000);

    let mut readings = Vec::new();
    for (index, ts) in coarse.chain(fine).enumerate() {
        let index = index as i64;
        let hour_of_day = ts.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
        let usual = 200.0 + 50.0 * (2.0 * std::f64::consts::PI * hour_of_day / 24.0).sin();
        for gpu in 0..rig.gpus {
            let mut watts = usual * CARD_FACTORS[gpu % 4] * rig.power_factor + 10.0 * spread(index, 0.13 * gpu as f64);
            if rig.departed_gpu == Some(gpu) && ts > now - 5 * HOUR_MS {
                watts *= 0.45;
            }
            let mut hashrate = 0.3 * watts;
            let drift_days = (ts - (now - 4 * DAY_MS)) as f64 / DAY_MS as f64;
            if rig.drifting_gpu == Some(gpu) && drift_days > 0.0 {
                hashrate *= 1.0 - 0.06 * drift_days;
            }
            let channel = format!("gpu{gpu}");
            readings.push(Reading::new(device.clone(), &channel, Metric::Power, ts, round1(watts)));
            readings.push(Reading::new(device.clone(), &channel, Metric::Utilization, ts, round1(95.0 + 4.0 * spread(index, 0.29 + 0.1 * gpu as f64))));
            readings.push(Reading::new(device.clone(), &channel, Metric::Hashrate, ts, (hashrate * 1000.0).round() / 1000.0));
        }
    }
    readings
}

/// Stores an approved Home Assistant announcement of `device` with `model`.
async fn announce_model(store: &se_store::SqliteStore, device: &str, model: &str) {
    let device = DeviceId::parse(device).unwrap();
    let announcement = Announcement {
        device: device.clone(),
        format: "home_assistant".into(),
        name: Some(format!("Mining rig {device}")),
        model: Some(model.into()),
        payload: format!(r#"{{"device":{{"identifiers":["{device}"],"model":"{model}"}}}}"#),
    };
    let batch = IngestBatch { announcements: vec![(device.clone(), announcement, now_ms())], ..IngestBatch::default() };
    store.write_ingest_batch(&batch).await.unwrap();
    store.set_discovery_status(&device, DiscoveryStatus::Approved).await.unwrap();
}

impl TestServer {
    /// Sites, each rig with 4 GPUs:
    /// - `pattern`: rig-p with 15 days of readings; GPU 1 draws 45 % of its
    ///   usual power over the last 5 hours;
    /// - `drift`: rig-d with 15 days of readings; GPU 2's hashrate per watt
    ///   falls over the last 4 days;
    /// - `fleet`: rig-a and rig-b, and rig-c drawing 20 % more on every GPU,
    ///   all announced as [`GPU_MODEL`], with 7 hours of readings;
    /// - `steady`: the healthy rig-s1, rig-s2 and rig-s3 announced as
    ///   [`GPU_MODEL`], with 15 days of readings.
    async fn start_history() -> TestServer {
        let (dir, store) = store_with_admin().await;
        let rigs = [
            ("pattern", "rig-p", HistoryRig { departed_gpu: Some(1), ..HistoryRig::healthy(15) }),
            ("drift", "rig-d", HistoryRig { drifting_gpu: Some(2), ..HistoryRig::healthy(15) }),
            ("fleet", "rig-a", HistoryRig::healthy(0)),
            ("fleet", "rig-b", HistoryRig::healthy(0)),
            ("fleet", "rig-c", HistoryRig { power_factor: 1.2, ..HistoryRig::healthy(0) }),
            ("steady", "rig-s1", HistoryRig::healthy(15)),
            ("steady", "rig-s2", HistoryRig::healthy(15)),
            ("steady", "rig-s3", HistoryRig::healthy(15)),
        ];
        for site_id in ["pattern", "drift", "fleet", "steady"] {
            store.upsert_site(&site(site_id)).await.unwrap();
        }
        for (site_id, id, rig) in rigs {
            store.write_readings(&history_rig(id, rig)).await.unwrap();
            if site_id == "fleet" || site_id == "steady" {
                announce_model(&store, id, GPU_MODEL).await;
            }
            store.assign_device(&DeviceId::parse(id).unwrap(), site_id).await.unwrap();
        }
        TestServer::serve(dir, store).await
    }
}

/// Anomalies of one kind, as (device/channel, severity).
fn of_kind(body: &Value, kind: &str) -> Vec<(String, String)> {
    let list = body["anomalies"].as_array().unwrap_or_else(|| panic!("no anomalies list in {body}"));
    let mut found: Vec<(String, String)> = list
        .iter()
        .filter(|anomaly| anomaly["kind"] == kind)
        .map(|anomaly| (format!("{}/{}", anomaly["device"].as_str().unwrap(), anomaly["channel"].as_str().unwrap()), anomaly["severity"].as_str().unwrap().to_owned()))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn departure_from_daily_pattern_flagged() {
    let server = TestServer::start_history().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/pattern/anomalies", "en").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(summary(&body), vec![triple("gpu1", "forecast_deviation", "critical")], "{body}");

    let anomaly = &body["anomalies"][0];
    assert_eq!(anomaly["device"], "rig-p");
    assert_eq!(anomaly["metric"], "power_w");
    // The segment covers whole hours. The departure began 5 hours before
    // the seeding, so the first flagged hour is the one that contains that
    // time, or the next one when only a few minutes of it had departed.
    let start_ms = anomaly["start_ms"].as_i64().unwrap();
    let departed_ms = body["to_ms"].as_i64().unwrap() - 5 * HOUR_MS;
    let departed_hour_ms = departed_ms - departed_ms.rem_euclid(HOUR_MS);
    assert_eq!(start_ms.rem_euclid(HOUR_MS), 0, "{anomaly}");
    assert!(start_ms == departed_hour_ms || start_ms == departed_hour_ms + HOUR_MS, "{anomaly}");
    assert!(anomaly["end_ms"].as_i64().unwrap() <= body["to_ms"].as_i64().unwrap(), "{anomaly}");
    let message = anomaly["message"].as_str().unwrap();
    assert!(message.starts_with("GPU 1 of rig-p: power differed from its usual daily pattern for "), "{message}");

    let (_, french) = get(&admin, &server, "/api/v1/devices/rig-p/anomalies", "fr").await;
    let message = french["anomalies"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("Le GPU 1 de rig-p : la puissance s'écarte de son profil journalier habituel"), "{message}");
}

#[tokio::test]
async fn falling_hashrate_per_watt_flagged() {
    let server = TestServer::start_history().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/drift/anomalies", "en").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(summary(&body), vec![triple("gpu2", "efficiency_drift", "critical")], "{body}");

    let anomaly = &body["anomalies"][0];
    assert_eq!(anomaly["device"], "rig-d");
    assert_eq!(anomaly["metric"], "hashrate_mhs");
    // The recent days end at the scan, not at the end of the UTC day.
    assert!(anomaly["end_ms"].as_i64().unwrap() <= body["to_ms"].as_i64().unwrap(), "{anomaly}");
    assert!(anomaly["start_ms"].as_i64().unwrap() < body["from_ms"].as_i64().unwrap(), "{anomaly}");
    let message = anomaly["message"].as_str().unwrap();
    // The 2 recent days lost 15 to 21 % of the hashrate per watt, depending on the time of day.
    assert!(message.starts_with("GPU 2 of rig-d: hashrate per watt fell by "), "{message}");
    assert!(message.contains(" from 0.300 to 0.2"), "{message}");
}

#[tokio::test]
async fn rig_above_same_model_rigs_flagged() {
    let server = TestServer::start_history().await;
    let admin = server.admin().await;

    let (status, body) = get(&admin, &server, "/api/v1/sites/fleet/anomalies", "en").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Each GPU of rig-c draws like its rig mates, so only the other rigs show the excess.
    let flagged: Vec<String> = of_kind(&body, "peer_excess").into_iter().map(|(series, _)| series).collect();
    assert_eq!(flagged, ["rig-c/gpu0", "rig-c/gpu1", "rig-c/gpu2", "rig-c/gpu3"], "{body}");
    assert_eq!(summary(&body).len(), 4, "{body}");
    for anomaly in body["anomalies"].as_array().unwrap() {
        let message = anomaly["message"].as_str().unwrap();
        assert!(message.contains("more than same-model peers at the same utilization (11 peers)"), "{message}");
    }

    // The device route compares the device with the same-model rigs of its site too.
    let (status, body) = get(&admin, &server, "/api/v1/devices/rig-c/anomalies?hours=1", "fr").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(of_kind(&body, "peer_excess").len(), 4, "{body}");
    let message = body["anomalies"][0]["message"].as_str().unwrap();
    assert!(message.contains("de plus que ses pairs du même modèle à utilisation égale (11 pairs)"), "{message}");
    let (_, body) = get(&admin, &server, "/api/v1/devices/rig-a/anomalies", "en").await;
    assert_eq!(summary(&body), vec![], "{body}");
}

#[tokio::test]
async fn steady_site_has_no_anomaly() {
    let server = TestServer::start_history().await;
    let admin = server.admin().await;
    // The rigs have the inputs of every detector: days of hourly power and
    // hashrate, and same-model peers.
    let hour_ms = now_ms() - now_ms().rem_euclid(HOUR_MS);
    for id in ["rig-s1", "rig-s2", "rig-s3"] {
        let query = se_store::SeriesQuery {
            device: DeviceId::parse(id).unwrap(),
            channel: se_core::ChannelName::parse("gpu0").unwrap(),
            metric: Metric::Hashrate,
            from_ms: hour_ms - 15 * DAY_MS,
            to_ms: hour_ms,
            max_points: 15 * 24,
        };
        let hours = server.store.query_series(&query).await.unwrap();
        assert!(hours.len() >= 14 * 24, "{id}: {} hours", hours.len());
    }

    for hours in [1, 6] {
        let path = format!("/api/v1/sites/steady/anomalies?hours={hours}");
        let (status, body) = get(&admin, &server, &path, "en").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["anomalies"], serde_json::json!([]), "{path}");
    }
}

#[tokio::test]
async fn repeated_request_served_from_cache() {
    let server = TestServer::start_history().await;
    let admin = server.admin().await;

    let (_, first) = get(&admin, &server, "/api/v1/sites/fleet/anomalies", "en").await;
    let (_, again) = get(&admin, &server, "/api/v1/sites/fleet/anomalies", "fr").await;
    // One scan serves both requests: same window, messages in each language.
    assert_eq!(again["to_ms"], first["to_ms"]);
    assert_eq!(summary(&again), summary(&first));
    let message = again["anomalies"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("Le GPU "), "{message}");

    // Another window is another scan.
    let (_, other) = get(&admin, &server, "/api/v1/sites/fleet/anomalies?hours=2", "en").await;
    assert_eq!(other["hours"], 2);
    assert_eq!(other["to_ms"].as_i64().unwrap() - other["from_ms"].as_i64().unwrap(), 2 * HOUR_MS);
}
