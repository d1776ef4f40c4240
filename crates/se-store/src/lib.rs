//! The storage contract of Smart Energy and its embedded SQLite engine.
//!
//! Ingestion, the HTTP API, analytics and alerting reach data only through
//! the [`Store`] trait, so the embedded engine ([`SqliteStore`]) and a future
//! PostgreSQL engine are interchangeable.

mod error;
mod recommendation;
mod sqlite;
mod tsdb;
mod types;

pub use error::StoreError;
pub use recommendation::*;
pub use sqlite::{SqliteStore, StoreOptions};
pub use tsdb::{Slot, Tier};
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

    /// Writes the readings, rejections, device counters and online reports of
    /// one ingestion batch in one transaction. Readings follow the rules of
    /// [`Store::write_readings`].
    async fn write_ingest_batch(&self, batch: &IngestBatch) -> Result<WriteOutcome, StoreError>;

    /// Adds a command to the audit trail, before it is published.
    async fn record_command(&self, command: &CommandRecord) -> Result<(), StoreError>;

    /// Sets the outcome of a command, as when it could not be published.
    /// Device acknowledgements arrive through [`Store::write_ingest_batch`].
    async fn set_command_status(&self, id: &str, status: CommandStatus, ack_json: &str, at_ms: TimestampMs) -> Result<(), StoreError>;

    /// Returns the newest commands of a device, newest first.
    async fn device_commands(&self, device: &DeviceId, limit: u32) -> Result<Vec<CommandRecord>, StoreError>;

    /// Records rejected input values and bumps the per-device, per-reason counters.
    async fn record_rejections(&self, rejections: &[Rejection], at_ms: TimestampMs) -> Result<(), StoreError>;

    /// Replaces the message counters of a device (lost, duplicates, restarts).
    async fn update_device_counters(&self, device: &DeviceId, counters: &DeviceCounters) -> Result<(), StoreError>;

    /// Marks a device online or offline, as an MQTT Last Will or status topic reports.
    async fn set_device_online(&self, device: &DeviceId, online: bool, at_ms: TimestampMs) -> Result<(), StoreError>;

    /// Lists every known device with its latest values and counters, except
    /// devices whose discovery status is `pending` or `ignored`.
    async fn list_devices(&self) -> Result<Vec<DeviceSummary>, StoreError>;

    /// Returns one device with its latest values, or `None` if it was never seen.
    async fn device(&self, device: &DeviceId) -> Result<Option<DeviceSummary>, StoreError>;

    /// Returns the points of one series over `[from_ms, to_ms)`, downsampled
    /// to at most `max_points` buckets (each with min, max, mean and count).
    /// The engine answers from the coarsest rollup tier that still fills the
    /// buckets; such buckets are aligned to multiples of their width since
    /// the epoch, so the first may start before `from_ms`. Raw buckets start
    /// at `from_ms`. `max_points` 0 returns raw readings.
    async fn query_series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, StoreError>;

    /// Returns the per-bucket sum of the means of several series, such as the
    /// power of a site, with the same bucket rules as [`Store::query_series`].
    async fn query_sum(&self, query: &SumQuery) -> Result<Vec<SumPoint>, StoreError>;

    /// Ranks series by their mean, maximum or energy over a period and
    /// returns the highest `n`. Series without data in the period are left out.
    async fn top_series(&self, query: &TopQuery) -> Result<Vec<TopEntry>, StoreError>;

    /// Returns the energy of a power series (metric `power_w`) over
    /// `[from_ms, to_ms)` by sample-and-hold.
    async fn series_energy(&self, series: &SeriesKey, from_ms: TimestampMs, to_ms: TimestampMs) -> Result<EnergyTotal, StoreError>;

    /// Returns percentiles (each `q` in `[0, 1]`) of a series over `[from_ms, to_ms)`.
    async fn series_percentiles(&self, series: &SeriesKey, from_ms: TimestampMs, to_ms: TimestampMs, quantiles: &[f64]) -> Result<PercentileReport, StoreError>;

    /// Moves every reading from the head into compressed blocks and brings
    /// the rollups they touch up to date. Queries are correct whether or not
    /// it has run.
    async fn compact(&self, now_ms: TimestampMs) -> Result<CompactOutcome, StoreError>;

    /// Compacts only the series that are due: those with many readings in
    /// the head, or whose head readings have waited long enough. The
    /// background task calls this; queries read the head as well, so results
    /// do not depend on when a series is compacted.
    async fn compact_due(&self, now_ms: TimestampMs) -> Result<CompactOutcome, StoreError>;

    /// Deletes blocks and rollup pages older than their retention.
    async fn enforce_retention(&self, now_ms: TimestampMs) -> Result<RetentionOutcome, StoreError>;

    /// Returns the size of each storage tier.
    async fn storage_stats(&self) -> Result<StorageStats, StoreError>;

    /// Returns the retention of each resolution, which the query planner also follows.
    fn retention(&self) -> Retention;

    /// Returns raw readings of a device in time order, for export and tests.
    async fn raw_readings(&self, query: &RawQuery) -> Result<Vec<Reading>, StoreError>;

    /// Returns the most recent rejected values, newest first, with the counters.
    async fn ingest_errors(&self, query: &IngestErrorQuery) -> Result<IngestErrorReport, StoreError>;

    /// Returns counts of readings, series and devices.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Lists devices that announced themselves, ordered by id; `status`
    /// restricts the list to one review status.
    async fn discovered_devices(&self, status: Option<DiscoveryStatus>) -> Result<Vec<DiscoveredDevice>, StoreError>;

    /// Sets the review status of a discovered device. Fails with
    /// [`StoreError::NotFound`] when the device never announced itself.
    async fn set_discovery_status(&self, device: &DeviceId, status: DiscoveryStatus) -> Result<(), StoreError>;

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

    /// Lists every user, ordered by id.
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Replaces a user's password hash with one set by an admin, sets
    /// `must_change_password` and ends the user's sessions. Fails with
    /// [`StoreError::NotFound`] when no user has this id.
    async fn reset_password(&self, user_id: i64, password_hash: &str) -> Result<(), StoreError>;
    /// Deletes a user with its sessions and site ownerships. Fails with
    /// [`StoreError::NotFound`] when no user has this id.
    async fn delete_user(&self, user_id: i64) -> Result<(), StoreError>;

    // Sites. A device without an assignment belongs to [`DEFAULT_SITE_ID`].

    /// Lists every site, ordered by id; the site `default` always exists.
    async fn list_sites(&self) -> Result<Vec<Site>, StoreError>;
    /// Returns one site, or `None` if no site has this id.
    async fn site(&self, site_id: &str) -> Result<Option<Site>, StoreError>;
    /// Creates a site or replaces every field of an existing one.
    async fn upsert_site(&self, site: &Site) -> Result<(), StoreError>;
    /// Deletes a site; its devices go back to `default` and its owners lose
    /// it. Returns whether the site existed. Deleting `default` fails with
    /// [`StoreError::Invalid`].
    async fn delete_site(&self, site_id: &str) -> Result<bool, StoreError>;
    /// Moves a device to a site. Fails with [`StoreError::NotFound`] when the
    /// site does not exist. The device need not have reported yet.
    async fn assign_device(&self, device: &DeviceId, site_id: &str) -> Result<(), StoreError>;
    /// Lists the devices of a site, ordered by id. For `default`, these are
    /// the known devices without an assignment. Like [`Store::list_devices`],
    /// it leaves out devices whose discovery status is `pending` or `ignored`.
    async fn site_devices(&self, site_id: &str) -> Result<Vec<DeviceId>, StoreError>;
    /// Returns the site id of a device: `default` when it has no assignment.
    async fn device_site(&self, device: &DeviceId) -> Result<String, StoreError>;
    /// Grants (`owner = true`) or removes a user's ownership of a site.
    /// Fails with [`StoreError::NotFound`] when the site or user does not exist.
    async fn set_site_owner(&self, site_id: &str, user_id: i64, owner: bool) -> Result<(), StoreError>;
    /// Lists the sites a user owns, ordered by id.
    async fn sites_of_user(&self, user_id: i64) -> Result<Vec<Site>, StoreError>;
    /// Returns the budget and demand limit of a site, or `None` if no site has this id.
    async fn site_limits(&self, site_id: &str) -> Result<Option<SiteLimits>, StoreError>;
    /// Replaces the budget and demand limit of a site. Fails with
    /// [`StoreError::NotFound`] when the site does not exist.
    async fn set_site_limits(&self, site_id: &str, limits: &SiteLimits) -> Result<(), StoreError>;

    // Savings recommendations.

    /// Stores a computed recommendation. The open recommendation with the
    /// same site, device, channel and action type gets the new action,
    /// estimate and `updated_ms`, so re-running adds no duplicate. When the
    /// newest one with that key is applied or dismissed, nothing is stored
    /// ([`UpsertOutcome::Decided`]). Fails with [`StoreError::NotFound`]
    /// when the site does not exist.
    async fn upsert_recommendation(&self, recommendation: &NewRecommendation) -> Result<RecommendationUpsert, StoreError>;
    /// Lists the recommendations of a site, ordered by id; `status`
    /// restricts the list to one status.
    async fn site_recommendations(&self, site_id: &str, status: Option<RecommendationStatus>) -> Result<Vec<StoredRecommendation>, StoreError>;
    /// Returns one recommendation, or `None` if no recommendation has this id.
    async fn recommendation(&self, id: i64) -> Result<Option<StoredRecommendation>, StoreError>;
    /// Records that an open recommendation was applied or dismissed, with
    /// the time and the user. Fails with [`StoreError::NotFound`] for an unknown id
    /// and with [`StoreError::Invalid`] when it is not open any more.
    async fn decide_recommendation(&self, id: i64, decision: &RecommendationDecision) -> Result<(), StoreError>;
    /// Withdraws the open recommendations of a site that the run at
    /// `run_ms` did not refresh (`updated_ms` before it), except those of
    /// the channels in `keep_open`. They get status withdrawn and `decided_ms =
    /// run_ms`. Returns the ids withdrawn, in id order.
    async fn withdraw_recommendations(&self, site_id: &str, run_ms: TimestampMs, keep_open: &[KeptChannel]) -> Result<Vec<i64>, StoreError>;
}
