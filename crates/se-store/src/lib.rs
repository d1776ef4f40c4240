//! The storage contract of Smart Energy and its embedded SQLite engine.
//!
//! Ingestion, the HTTP API, analytics and alerting reach data only through
//! the [`Store`] trait, so the embedded engine ([`SqliteStore`]) and a future
//! PostgreSQL engine are interchangeable.

mod error;
mod sqlite;
mod types;

pub use error::StoreError;
pub use sqlite::SqliteStore;
pub use types::*;

use async_trait::async_trait;
use se_core::{DeviceId, Reading, Rejection, TimestampMs};

/// Everything the rest of the system may ask of storage.
///
/// Implementations must be safe to share between tasks. A write method returns
/// only once its data is durable: for the SQLite engine, committed to the WAL.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a batch of readings in one transaction. A reading whose series
    /// already has a value at the same timestamp is skipped and counted as a
    /// duplicate, so replays are stored once.
    async fn write_readings(&self, readings: &[Reading]) -> Result<WriteOutcome, StoreError>;

    /// Records rejected input values and bumps the per-device, per-reason counters.
    async fn record_rejections(&self, rejections: &[Rejection], at_ms: TimestampMs) -> Result<(), StoreError>;

    /// Replaces the message counters of a device (lost, duplicates, restarts).
    async fn update_device_counters(&self, device: &DeviceId, counters: &DeviceCounters) -> Result<(), StoreError>;

    /// Marks a device online or offline, as an MQTT Last Will or status topic reports.
    async fn set_device_online(&self, device: &DeviceId, online: bool, at_ms: TimestampMs) -> Result<(), StoreError>;

    /// Lists every known device with its latest values and counters.
    async fn list_devices(&self) -> Result<Vec<DeviceSummary>, StoreError>;

    /// Returns one device with its latest values, or `None` if it was never seen.
    async fn device(&self, device: &DeviceId) -> Result<Option<DeviceSummary>, StoreError>;

    /// Returns the points of one series between two instants, downsampled to at
    /// most `max_points` buckets (each with min, max, mean and count).
    async fn query_series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, StoreError>;

    /// Returns raw readings of a device in time order, for export and tests.
    async fn raw_readings(&self, query: &RawQuery) -> Result<Vec<Reading>, StoreError>;

    /// Returns the most recent rejected values, newest first, with the counters.
    async fn ingest_errors(&self, query: &IngestErrorQuery) -> Result<IngestErrorReport, StoreError>;

    /// Returns counts of readings, series and devices.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    // Users and sessions.

    async fn count_users(&self) -> Result<u64, StoreError>;
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// Replaces a user's password hash and clears `must_change_password`.
    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<(), StoreError>;
    /// Stores a session under the SHA-256 hash of its token, never the token itself.
    async fn create_session(&self, token_hash: &str, user_id: i64, expires_ms: TimestampMs) -> Result<(), StoreError>;
    /// Returns the user of an unexpired session.
    async fn session_user(&self, token_hash: &str, now_ms: TimestampMs) -> Result<Option<User>, StoreError>;
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
}
