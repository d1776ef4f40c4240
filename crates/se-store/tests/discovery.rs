//! Discovered devices: recording announcements, review status and the
//! devices that lists leave out while they wait for review.

use se_core::{Announcement, DeviceId, Metric, Reading};
use se_store::{DiscoveryStatus, IngestBatch, Site, SqliteStore, Store, StoreError, DEFAULT_SITE_ID};
use tempfile::TempDir;

fn device(name: &str) -> DeviceId {
    DeviceId::parse(name).expect("test device id is valid")
}

fn open_temp() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("store opens in an empty directory");
    (dir, store)
}

fn announcement(name: &str, model: Option<&str>) -> Announcement {
    Announcement {
        device: device(name),
        format: "tasmota".to_owned(),
        name: Some(format!("{name} plug")),
        model: model.map(str::to_owned),
        payload: format!(r#"{{"t":"{name}"}}"#),
    }
}

/// Writes one announcement and one power reading of `name` at `at_ms`.
async fn announce_and_report(store: &SqliteStore, name: &str, at_ms: i64) {
    let batch = IngestBatch {
        readings: vec![Reading::new(device(name), "main", Metric::Power, at_ms, 42.0)],
        announcements: vec![(device(name), announcement(name, Some("Sonoff S31")), at_ms)],
        ..IngestBatch::default()
    };
    store.write_ingest_batch(&batch).await.expect("write batch");
}

async fn listed_ids(store: &SqliteStore) -> Vec<String> {
    store.list_devices().await.expect("list devices").into_iter().map(|d| d.id.to_string()).collect()
}

#[tokio::test]
async fn first_announcement_is_pending() {
    let (_dir, store) = open_temp();
    announce_and_report(&store, "plug-1", 1_000).await;

    let found = store.discovered_devices(None).await.expect("list discovered");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].device.as_str(), "plug-1");
    assert_eq!(found[0].status, DiscoveryStatus::Pending);
    assert_eq!(found[0].model.as_deref(), Some("Sonoff S31"));
    assert_eq!(found[0].name.as_deref(), Some("plug-1 plug"));
    assert_eq!(found[0].first_seen_ms, 1_000);
}

#[tokio::test]
async fn pending_device_is_not_listed() {
    let (_dir, store) = open_temp();
    announce_and_report(&store, "plug-1", 1_000).await;
    store.write_readings(&[Reading::new(device("rig-1"), "gpu0", Metric::Power, 1_000, 200.0)]).await.expect("write");

    assert_eq!(listed_ids(&store).await, vec!["rig-1"]);
    let default_site = store.site_devices(DEFAULT_SITE_ID).await.expect("site devices");
    assert_eq!(default_site, vec![device("rig-1")]);
}

#[tokio::test]
async fn pending_device_readings_are_stored() {
    let (_dir, store) = open_temp();
    announce_and_report(&store, "plug-1", 1_000).await;

    let summary = store.device(&device("plug-1")).await.expect("read device");
    assert_eq!(summary.map(|s| s.latest.len()), Some(1));
}

#[tokio::test]
async fn approved_device_is_listed() {
    let (_dir, store) = open_temp();
    announce_and_report(&store, "plug-1", 1_000).await;
    store.set_discovery_status(&device("plug-1"), DiscoveryStatus::Approved).await.expect("approve");

    assert_eq!(listed_ids(&store).await, vec!["plug-1"]);
}

#[tokio::test]
async fn ignored_device_stays_hidden() {
    let (_dir, store) = open_temp();
    announce_and_report(&store, "plug-1", 1_000).await;
    store.set_discovery_status(&device("plug-1"), DiscoveryStatus::Ignored).await.expect("ignore");
    announce_and_report(&store, "plug-1", 2_000).await;

    assert!(listed_ids(&store).await.is_empty());
    let ignored = store.discovered_devices(Some(DiscoveryStatus::Ignored)).await.expect("list ignored");
    assert_eq!(ignored.len(), 1);
    let pending = store.discovered_devices(Some(DiscoveryStatus::Pending)).await.expect("list pending");
    assert!(pending.is_empty());
}

#[tokio::test]
async fn new_announcement_keeps_approval() {
    let (_dir, store) = open_temp();
    announce_and_report(&store, "plug-1", 1_000).await;
    store.set_discovery_status(&device("plug-1"), DiscoveryStatus::Approved).await.expect("approve");
    let batch = IngestBatch { announcements: vec![(device("plug-1"), announcement("plug-1", None), 5_000)], ..IngestBatch::default() };
    store.write_ingest_batch(&batch).await.expect("write announcement");

    let found = store.discovered_devices(None).await.expect("list discovered");
    assert_eq!(found[0].status, DiscoveryStatus::Approved);
    assert_eq!(found[0].first_seen_ms, 1_000);
    assert_eq!(found[0].last_seen_ms, 5_000);
    assert_eq!(found[0].model.as_deref(), Some("Sonoff S31"), "a missing model keeps the known one");
}

#[tokio::test]
async fn approved_device_joins_its_site() {
    let (_dir, store) = open_temp();
    let farm = Site {
        id: "farm".to_owned(),
        name: "Farm".to_owned(),
        time_zone: "UTC".to_owned(),
        currency: "EUR".to_owned(),
        tariff_json: None,
        co2_g_per_kwh: None,
    };
    store.upsert_site(&farm).await.expect("create site");
    announce_and_report(&store, "plug-1", 1_000).await;
    store.assign_device(&device("plug-1"), "farm").await.expect("assign");
    assert!(store.site_devices("farm").await.expect("site devices").is_empty(), "hidden while pending");

    store.set_discovery_status(&device("plug-1"), DiscoveryStatus::Approved).await.expect("approve");
    assert_eq!(store.site_devices("farm").await.expect("site devices"), vec![device("plug-1")]);
}

#[tokio::test]
async fn unknown_device_status_not_found() {
    let (_dir, store) = open_temp();
    let result = store.set_discovery_status(&device("nobody"), DiscoveryStatus::Approved).await;
    assert!(matches!(result, Err(StoreError::NotFound { .. })), "{result:?}");
}
