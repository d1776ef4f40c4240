//! Savings recommendations in the SQLite store: one open recommendation per
//! key, refreshed by each run, and the operator's decisions.

use std::str::FromStr;

use rust_decimal::Decimal;
use se_core::{ChannelName, DeviceId, Metric, Reading};
use se_store::{
    KeptChannel, NewRecommendation, RecommendationDecision, RecommendationStatus, Site, SiteLimits, SqliteStore, Store, StoreError, UpsertOutcome, UsageSpan,
};
use tempfile::TempDir;

fn open_temp() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("store opens in an empty directory");
    (dir, store)
}

fn site(id: &str) -> Site {
    Site {
        id: id.to_owned(),
        name: format!("Site {id}"),
        time_zone: "Europe/Paris".to_owned(),
        currency: "EUR".to_owned(),
        tariff_json: None,
        co2_g_per_kwh: None,
    }
}

fn idle_recommendation(site_id: &str, device: &str, kwh_per_month: f64, computed_ms: i64) -> NewRecommendation {
    NewRecommendation {
        site_id: site_id.to_owned(),
        device: DeviceId::parse(device).unwrap(),
        channel: ChannelName::parse("main").unwrap(),
        action_type: "switch_off_when_idle".to_owned(),
        action_json: format!(r#"{{"type":"switch_off_when_idle","standby_w":80.0,"idle_hours_per_day":{}}}"#, kwh_per_month / 2.4),
        kwh_per_month,
        money_per_month: Some(Decimal::from_str("7.20").unwrap()),
        currency: "EUR".to_owned(),
        computed_ms,
    }
}

fn baseline() -> UsageSpan {
    UsageSpan {
        from_ms: 1_000,
        to_ms: 605_801_000,
        kwh: 40.32,
        covered_ms: 604_800_000,
        cost: Some(Decimal::from_str("10.08").unwrap()),
        work_mh: None,
    }
}

#[tokio::test]
async fn rerun_refreshes_open_recommendation() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.unwrap();

    let first = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 28.8, 1_000)).await.unwrap();
    let mut refreshed = idle_recommendation("farm", "rig-1", 30.0, 5_000);
    refreshed.money_per_month = Some(Decimal::from_str("7.50").unwrap());
    let second = store.upsert_recommendation(&refreshed).await.unwrap();

    assert_eq!(first.outcome, UpsertOutcome::Created);
    assert_eq!(second.outcome, UpsertOutcome::Refreshed);
    assert_eq!(second.id, first.id);
    let listed = store.site_recommendations("farm", None).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let stored = &listed[0];
    assert_eq!(stored.kwh_per_month, 30.0);
    assert_eq!(stored.money_per_month, Some(Decimal::from_str("7.50").unwrap()));
    assert_eq!(stored.action_json, refreshed.action_json);
    assert_eq!(stored.created_ms, 1_000);
    assert_eq!(stored.updated_ms, 5_000);
    assert_eq!(stored.status, RecommendationStatus::Open);
    assert_eq!(stored.decided_ms, None);
}

#[tokio::test]
async fn run_withdraws_what_it_did_not_refresh() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.unwrap();
    store.upsert_site(&site("home")).await.unwrap();
    let stale = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 28.8, 1_000)).await.unwrap().id;
    let failed = store.upsert_recommendation(&idle_recommendation("farm", "rig-2", 28.8, 1_000)).await.unwrap().id;
    let decided = store.upsert_recommendation(&idle_recommendation("farm", "rig-3", 28.8, 1_000)).await.unwrap().id;
    let other_site = store.upsert_recommendation(&idle_recommendation("home", "rig-1", 28.8, 1_000)).await.unwrap().id;
    store.decide_recommendation(decided, &RecommendationDecision::Dismissed { at_ms: 2_000, by: "admin".into() }).await.unwrap();
    // The run at 5,000 refreshes rig-4 only, and a recommender failed on rig-2's channel.
    let fresh = store.upsert_recommendation(&idle_recommendation("farm", "rig-4", 28.8, 5_000)).await.unwrap().id;
    let keep_open = [KeptChannel { device: DeviceId::parse("rig-2").unwrap(), channel: ChannelName::parse("main").unwrap() }];

    let withdrawn = store.withdraw_recommendations("farm", 5_000, &keep_open).await.unwrap();

    assert_eq!(withdrawn, vec![stale]);
    let status = |id: i64| {
        let store = &store;
        async move { store.recommendation(id).await.unwrap().unwrap() }
    };
    let withdrawn_row = status(stale).await;
    assert_eq!(withdrawn_row.status, RecommendationStatus::Withdrawn);
    assert_eq!(withdrawn_row.decided_ms, Some(5_000));
    assert_eq!(withdrawn_row.decided_by, None);
    assert_eq!(status(failed).await.status, RecommendationStatus::Open, "a failed channel keeps its recommendation");
    assert_eq!(status(decided).await.status, RecommendationStatus::Dismissed, "the operator's decision stands");
    assert_eq!(status(fresh).await.status, RecommendationStatus::Open);
    assert_eq!(status(other_site).await.status, RecommendationStatus::Open, "other sites are left alone");
    assert_eq!(store.site_recommendations("farm", Some(RecommendationStatus::Withdrawn)).await.unwrap().len(), 1);

    // When the readings support it again, a new open recommendation appears.
    let again = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 30.0, 9_000)).await.unwrap();
    assert_eq!(again.outcome, UpsertOutcome::Created);
    assert_ne!(again.id, stale);
    assert_eq!(status(stale).await.status, RecommendationStatus::Withdrawn, "the withdrawn row stays as history");
    // A second run that refreshes everything withdraws nothing.
    assert_eq!(store.withdraw_recommendations("farm", 1_000, &[]).await.unwrap(), Vec::<i64>::new());
}

#[tokio::test]
async fn distinct_keys_are_separate() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.unwrap();
    store.upsert_site(&site("home")).await.unwrap();

    let base = idle_recommendation("farm", "rig-1", 28.8, 1_000);
    let other_channel = NewRecommendation { channel: ChannelName::parse("gpu0").unwrap(), ..base.clone() };
    let other_action = NewRecommendation { action_type: "set_power_limit".to_owned(), ..base.clone() };
    let other_device = idle_recommendation("farm", "rig-2", 28.8, 1_000);
    let other_site = idle_recommendation("home", "rig-1", 28.8, 1_000);
    for recommendation in [&base, &other_channel, &other_action, &other_device, &other_site] {
        let upsert = store.upsert_recommendation(recommendation).await.unwrap();
        assert_eq!(upsert.outcome, UpsertOutcome::Created, "{recommendation:?}");
    }

    assert_eq!(store.site_recommendations("farm", None).await.unwrap().len(), 4);
    assert_eq!(store.site_recommendations("home", None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn apply_keeps_time_user_and_baseline() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.unwrap();
    let id = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 28.8, 1_000)).await.unwrap().id;

    let decision = RecommendationDecision::Applied { at_ms: 605_801_000, by: "owner".to_owned(), baseline: Some(baseline()) };
    store.decide_recommendation(id, &decision).await.unwrap();

    let stored = store.recommendation(id).await.unwrap().expect("stored recommendation");
    assert_eq!(stored.status, RecommendationStatus::Applied);
    assert_eq!(stored.decided_ms, Some(605_801_000));
    assert_eq!(stored.decided_by.as_deref(), Some("owner"));
    assert_eq!(stored.baseline, Some(baseline()));
    let applied = store.site_recommendations("farm", Some(RecommendationStatus::Applied)).await.unwrap();
    assert_eq!(applied.len(), 1);
    assert!(store.site_recommendations("farm", Some(RecommendationStatus::Open)).await.unwrap().is_empty());
}

#[tokio::test]
async fn decided_key_is_not_created_again() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.unwrap();
    let dismissed = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 28.8, 1_000)).await.unwrap().id;
    let applied = store.upsert_recommendation(&idle_recommendation("farm", "rig-2", 28.8, 1_000)).await.unwrap().id;
    store.decide_recommendation(dismissed, &RecommendationDecision::Dismissed { at_ms: 2_000, by: "admin".to_owned() }).await.unwrap();
    store.decide_recommendation(applied, &RecommendationDecision::Applied { at_ms: 2_000, by: "admin".to_owned(), baseline: None }).await.unwrap();

    let again_dismissed = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 31.0, 3_000)).await.unwrap();
    let again_applied = store.upsert_recommendation(&idle_recommendation("farm", "rig-2", 31.0, 3_000)).await.unwrap();

    assert_eq!(again_dismissed.outcome, UpsertOutcome::Decided);
    assert_eq!(again_dismissed.id, dismissed);
    assert_eq!(again_applied.outcome, UpsertOutcome::Decided);
    assert_eq!(again_applied.id, applied);
    let listed = store.site_recommendations("farm", None).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let dismissed_row = store.recommendation(dismissed).await.unwrap().unwrap();
    assert_eq!(dismissed_row.status, RecommendationStatus::Dismissed);
    assert_eq!(dismissed_row.kwh_per_month, 28.8, "a decided recommendation keeps its estimate");
    assert_eq!(dismissed_row.baseline, None);
}

#[tokio::test]
async fn decision_needs_open_recommendation() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.unwrap();
    let id = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 28.8, 1_000)).await.unwrap().id;
    store.decide_recommendation(id, &RecommendationDecision::Dismissed { at_ms: 2_000, by: "admin".to_owned() }).await.unwrap();

    let twice = store
        .decide_recommendation(id, &RecommendationDecision::Applied { at_ms: 3_000, by: "admin".to_owned(), baseline: None })
        .await
        .unwrap_err();
    let unknown = store.decide_recommendation(id + 100, &RecommendationDecision::Dismissed { at_ms: 3_000, by: "admin".to_owned() }).await.unwrap_err();

    assert!(matches!(&twice, StoreError::Invalid(detail) if detail.contains("already dismissed")), "{twice:?}");
    assert!(matches!(unknown, StoreError::NotFound { .. }), "{unknown:?}");
    assert_eq!(store.recommendation(id).await.unwrap().unwrap().decided_ms, Some(2_000));
    assert_eq!(store.recommendation(id + 100).await.unwrap(), None);
}

#[tokio::test]
async fn unknown_site_rejected() {
    let (_dir, store) = open_temp();
    let error = store.upsert_recommendation(&idle_recommendation("nowhere", "rig-1", 28.8, 1_000)).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
    assert!(store.site_recommendations("nowhere", None).await.unwrap().is_empty());
}

#[tokio::test]
async fn amount_without_tariff_is_none() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.unwrap();
    let unpriced = NewRecommendation { money_per_month: None, ..idle_recommendation("farm", "rig-1", 28.8, 1_000) };
    let id = store.upsert_recommendation(&unpriced).await.unwrap().id;
    assert_eq!(store.recommendation(id).await.unwrap().unwrap().money_per_month, None);
}

#[tokio::test]
async fn deleting_site_deletes_recommendations() {
    let (_dir, store) = open_temp();
    store.upsert_site(&site("farm")).await.unwrap();
    let id = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 28.8, 1_000)).await.unwrap().id;
    assert!(store.delete_site("farm").await.unwrap());
    assert_eq!(store.recommendation(id).await.unwrap(), None);
}

/// Turns the file back into a schema version 6 database: version 7 only
/// added the recommendations table and its indexes, and version 8 the empty
/// staging table of the head.
fn downgrade_to_version_6(dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(dir.join(SqliteStore::FILE_NAME)).expect("open file");
    let staged: i64 = conn.query_row("SELECT count(*) FROM staged_readings", [], |row| row.get(0)).expect("count staged readings");
    assert_eq!(staged, 0, "the downgrade drops the staging table, so it must be empty");
    conn.execute_batch("DROP TABLE recommendations; DROP TABLE staged_readings;").expect("drop the version 7 and 8 tables");
    conn.pragma_update(None, "user_version", 6).expect("set version");
}

#[tokio::test]
async fn version_six_file_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let rig = DeviceId::parse("rig-1").unwrap();
    let limits = SiteLimits { monthly_budget_kwh: Some(900.0), monthly_budget_amount: None, demand_limit_kw: Some(4.5) };
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.upsert_site(&site("farm")).await.unwrap();
        store.set_site_limits("farm", &limits).await.unwrap();
        store.assign_device(&rig, "farm").await.unwrap();
        // 20 readings of one series in one batch go straight to the head
        // table, so the staging table that the downgrade drops stays empty.
        let readings: Vec<Reading> = (0..20).map(|step| Reading::new(rig.clone(), "main", Metric::Power, 1_000 + step * 60_000, 80.0)).collect();
        store.write_readings(&readings).await.unwrap();
    }
    downgrade_to_version_6(dir.path());

    let store = SqliteStore::open(dir.path()).expect("version 6 file opens");

    let conn = rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    assert_eq!(version, 8);
    assert_eq!(store.site("farm").await.unwrap(), Some(site("farm")));
    assert_eq!(store.site_limits("farm").await.unwrap(), Some(limits));
    assert_eq!(store.site_devices("farm").await.unwrap(), vec![rig.clone()]);
    assert_eq!(store.stats().await.unwrap().readings, 20);
    let upsert = store.upsert_recommendation(&idle_recommendation("farm", "rig-1", 28.8, 1_000)).await.unwrap();
    assert_eq!(upsert.outcome, UpsertOutcome::Created);
}
