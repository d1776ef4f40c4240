//! Short-lived cache of anomaly scans, so that reloading a page, or opening
//! it in another language, within a minute does not read and scan the
//! readings again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use se_analytics::anomaly::Anomaly;
use se_core::{DeviceId, TimestampMs};

use crate::error::ApiError;

/// Time a scan is served from the cache.
pub(crate) const TTL: Duration = Duration::from_secs(60);

/// Maximum number of cached scans. One entry contains the anomalies of one
/// site or device for one window, usually a few kB.
pub(crate) const MAX_ENTRIES: usize = 256;

/// Subject of a scan: a whole site or one device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Site(String),
    Device(DeviceId),
}

/// A scan and the window it covered, before the messages are rendered in
/// the request's language.
#[derive(Debug)]
pub(crate) struct Scan {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    /// In response order.
    pub anomalies: Vec<Anomaly>,
}

type Key = (Scope, u32);

/// Scans by scope and window length in hours, each kept for [`TTL`].
pub(crate) struct AnomalyCache {
    entries: Mutex<HashMap<Key, (Instant, Arc<Scan>)>>,
    /// Serializes scans: they are CPU-bound, and a second request for the
    /// same key waits and then finds the result in the cache.
    scanning: tokio::sync::Mutex<()>,
}

impl Default for AnomalyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl AnomalyCache {
    pub(crate) fn new() -> Self {
        Self { entries: Mutex::new(HashMap::new()), scanning: tokio::sync::Mutex::new(()) }
    }

    /// Returns the cached scan of `scope` over `hours`, or runs `scan` and
    /// caches its result. Errors are not cached.
    pub(crate) async fn get_or_scan<F, Fut>(&self, scope: Scope, hours: u32, scan: F) -> Result<Arc<Scan>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Scan, ApiError>>,
    {
        let key = (scope, hours);
        if let Some(found) = self.fresh(&key, Instant::now()) {
            return Ok(found);
        }
        let _scanning = self.scanning.lock().await;
        if let Some(found) = self.fresh(&key, Instant::now()) {
            return Ok(found);
        }
        let result = Arc::new(scan().await?);
        self.insert(key, result.clone(), Instant::now());
        Ok(result)
    }

    fn fresh(&self, key: &Key, now: Instant) -> Option<Arc<Scan>> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(key).filter(|(stored, _)| now.saturating_duration_since(*stored) < TTL).map(|(_, scan)| scan.clone())
    }

    /// Stores `scan`, after removing the expired entries and, when the cache
    /// is still full, the oldest one.
    fn insert(&self, key: Key, scan: Arc<Scan>, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|_, (stored, _)| now.saturating_duration_since(*stored) < TTL);
        while entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            let Some(oldest) = entries.iter().min_by_key(|(_, (stored, _))| *stored).map(|(key, _)| key.clone()) else { break };
            entries.remove(&oldest);
        }
        entries.insert(key, (now, scan));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(to_ms: TimestampMs) -> Arc<Scan> {
        Arc::new(Scan { from_ms: to_ms - 3_600_000, to_ms, anomalies: Vec::new() })
    }

    fn site(id: &str, hours: u32) -> Key {
        (Scope::Site(id.to_owned()), hours)
    }

    #[test]
    fn entry_fresh_until_ttl() {
        let cache = AnomalyCache::new();
        let start = Instant::now();
        cache.insert(site("farm", 6), scan(1_000), start);

        let found = cache.fresh(&site("farm", 6), start + TTL - Duration::from_millis(1));
        assert_eq!(found.map(|scan| scan.to_ms), Some(1_000));
        assert!(cache.fresh(&site("farm", 6), start + TTL).is_none());
    }

    #[test]
    fn key_includes_scope_and_hours() {
        let cache = AnomalyCache::new();
        let start = Instant::now();
        cache.insert(site("farm", 6), scan(1_000), start);

        assert!(cache.fresh(&site("farm", 24), start).is_none());
        assert!(cache.fresh(&site("calm", 6), start).is_none());
        let device = (Scope::Device(DeviceId::parse("farm").unwrap()), 6);
        assert!(cache.fresh(&device, start).is_none());
    }

    #[test]
    fn full_cache_drops_oldest() {
        let cache = AnomalyCache::new();
        let start = Instant::now();
        for index in 0..MAX_ENTRIES {
            cache.insert(site(&format!("site-{index}"), 6), scan(index as i64), start + Duration::from_millis(index as u64));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);

        let later = start + Duration::from_secs(1);
        cache.insert(site("new", 6), scan(9_999), later);
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(cache.fresh(&site("site-0", 6), later).is_none());
        assert!(cache.fresh(&site("site-1", 6), later).is_some());
        assert!(cache.fresh(&site("new", 6), later).is_some());
    }

    #[test]
    fn insert_prunes_expired_entries() {
        let cache = AnomalyCache::new();
        let start = Instant::now();
        for index in 0..10 {
            cache.insert(site(&format!("site-{index}"), 6), scan(index), start);
        }
        cache.insert(site("late", 6), scan(99), start + TTL);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn get_or_scan_caches_successes_only() {
        let cache = AnomalyCache::new();
        let failed = cache.get_or_scan(Scope::Site("farm".into()), 6, || async { Err(ApiError::Internal("store down".into())) }).await;
        assert!(failed.is_err());
        assert_eq!(cache.len(), 0);

        let first = cache.get_or_scan(Scope::Site("farm".into()), 6, || async { Ok(Scan { from_ms: 0, to_ms: 1, anomalies: Vec::new() }) }).await.unwrap();
        let second = cache.get_or_scan(Scope::Site("farm".into()), 6, || async { Ok(Scan { from_ms: 0, to_ms: 2, anomalies: Vec::new() }) }).await.unwrap();
        assert_eq!(first.to_ms, 1);
        assert_eq!(second.to_ms, 1);
    }
}
