//! Monthly budget and demand limit of a site, stored apart from its other fields.

use se_store::{Site, SiteLimits, SqliteStore, Store, StoreError};
use tempfile::TempDir;

fn open_temp() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("store opens in an empty directory");
    (dir, store)
}

fn farm() -> Site {
    Site {
        id: "farm".to_owned(),
        name: "Farm".to_owned(),
        time_zone: "Europe/Paris".to_owned(),
        currency: "EUR".to_owned(),
        tariff_json: None,
        co2_g_per_kwh: None,
    }
}

const LIMITS: SiteLimits = SiteLimits {
    monthly_budget_kwh: Some(1200.0),
    monthly_budget_amount: Some(300.5),
    demand_limit_kw: Some(12.0),
};

#[tokio::test]
async fn new_site_has_no_limits() {
    let (_dir, store) = open_temp();
    store.upsert_site(&farm()).await.unwrap();
    assert_eq!(store.site_limits("farm").await.unwrap(), Some(SiteLimits::default()));
}

#[tokio::test]
async fn limits_round_trip() {
    let (_dir, store) = open_temp();
    store.upsert_site(&farm()).await.unwrap();
    store.set_site_limits("farm", &LIMITS).await.unwrap();
    assert_eq!(store.site_limits("farm").await.unwrap(), Some(LIMITS));
}

#[tokio::test]
async fn upsert_site_keeps_limits() {
    let (_dir, store) = open_temp();
    store.upsert_site(&farm()).await.unwrap();
    store.set_site_limits("farm", &LIMITS).await.unwrap();
    let renamed = Site {
        name: "Renamed farm".to_owned(),
        ..farm()
    };
    store.upsert_site(&renamed).await.unwrap();
    assert_eq!(store.site_limits("farm").await.unwrap(), Some(LIMITS));
}

#[tokio::test]
async fn limits_cleared_with_none() {
    let (_dir, store) = open_temp();
    store.upsert_site(&farm()).await.unwrap();
    store.set_site_limits("farm", &LIMITS).await.unwrap();
    store.set_site_limits("farm", &SiteLimits::default()).await.unwrap();
    assert_eq!(store.site_limits("farm").await.unwrap(), Some(SiteLimits::default()));
}

#[tokio::test]
async fn missing_site_limits() {
    let (_dir, store) = open_temp();
    assert_eq!(store.site_limits("nowhere").await.unwrap(), None);
    let error = store.set_site_limits("nowhere", &LIMITS).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
}
