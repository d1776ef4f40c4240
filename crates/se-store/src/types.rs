use serde::{Deserialize, Serialize};

use se_core::{ChannelName, DeviceId, Metric, RejectReason, TimestampMs};

/// Result of writing one batch of readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteOutcome {
    pub stored: u64,
    pub duplicates: u64,
}

/// Everything one ingestion batch produced, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestBatch {
    pub readings: Vec<se_core::Reading>,
    pub rejections: Vec<se_core::Rejection>,
    /// Time at which the rejections were recorded.
    pub rejected_at_ms: TimestampMs,
    /// New message counters of the devices whose counters changed.
    pub counters: Vec<(DeviceId, DeviceCounters)>,
    /// Online state reports: device, online, time of the report.
    pub online: Vec<(DeviceId, bool, TimestampMs)>,
    /// Command acknowledgements: device, acknowledgement, time received.
    pub command_acks: Vec<(DeviceId, se_core::CommandAck, TimestampMs)>,
    /// Devices that announced themselves: device, announcement, time received.
    pub announcements: Vec<(DeviceId, se_core::Announcement, TimestampMs)>,
}

/// Review state of a device that announced itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryStatus {
    /// Announced, not reviewed yet: hidden from device lists until approved.
    Pending,
    /// Approved by an operator: listed like any other device.
    Approved,
    /// Rejected by an operator: its readings are stored but it stays hidden.
    Ignored,
}

impl DiscoveryStatus {
    pub fn code(self) -> &'static str {
        match self {
            DiscoveryStatus::Pending => "pending",
            DiscoveryStatus::Approved => "approved",
            DiscoveryStatus::Ignored => "ignored",
        }
    }

    pub fn from_code(code: &str) -> Option<DiscoveryStatus> {
        match code {
            "pending" => Some(DiscoveryStatus::Pending),
            "approved" => Some(DiscoveryStatus::Approved),
            "ignored" => Some(DiscoveryStatus::Ignored),
            _ => None,
        }
    }
}

/// A device that announced itself, with its latest announcement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveredDevice {
    pub device: DeviceId,
    /// Announcement format: `tasmota`, `shelly` or `home_assistant`.
    pub format: String,
    pub name: Option<String>,
    pub model: Option<String>,
    /// Latest announcement as received, cut to 2 kB.
    pub payload: String,
    pub first_seen_ms: TimestampMs,
    pub last_seen_ms: TimestampMs,
    pub status: DiscoveryStatus,
}

/// State of a device command in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Published, no acknowledgement yet.
    Sent,
    /// The device acknowledged it as carried out.
    Succeeded,
    /// The device reported a failure, or the command could not be published.
    Failed,
}

impl CommandStatus {
    pub fn code(self) -> &'static str {
        match self {
            CommandStatus::Sent => "sent",
            CommandStatus::Succeeded => "succeeded",
            CommandStatus::Failed => "failed",
        }
    }

    pub fn from_code(code: &str) -> Option<CommandStatus> {
        match code {
            "sent" => Some(CommandStatus::Sent),
            "succeeded" => Some(CommandStatus::Succeeded),
            "failed" => Some(CommandStatus::Failed),
            _ => None,
        }
    }
}

/// One device command in the audit trail: who sent what, when, and the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRecord {
    pub id: String,
    pub device: DeviceId,
    /// User who sent the command.
    pub username: String,
    pub action: String,
    /// The command exactly as published, JSON.
    pub request_json: String,
    pub created_ms: TimestampMs,
    pub status: CommandStatus,
    /// The device's acknowledgement as received, JSON.
    pub ack_json: Option<String>,
    pub acked_ms: Option<TimestampMs>,
}

/// Message counters of one device, kept by ingestion from sequence numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounters {
    pub last_seq: Option<u64>,
    pub lost: u64,
    pub duplicates: u64,
    pub restarts: u64,
}

/// The latest value of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestValue {
    pub channel: ChannelName,
    pub metric: Metric,
    pub unit: &'static str,
    pub ts_ms: TimestampMs,
    pub value: f64,
}

/// A device with its latest values and its counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceSummary {
    pub id: DeviceId,
    pub first_seen_ms: TimestampMs,
    pub last_seen_ms: TimestampMs,
    pub online: Option<bool>,
    pub counters: DeviceCounters,
    /// Rejected values of this device, all reasons together.
    pub ingest_errors: u64,
    pub latest: Vec<LatestValue>,
}

/// A request for one series, downsampled for a chart.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SeriesQuery {
    pub device: DeviceId,
    pub channel: ChannelName,
    pub metric: Metric,
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    /// Maximum number of buckets returned. 0 requests raw points.
    pub max_points: u32,
}

/// One bucket of a downsampled series. For raw points, min = max = mean and count = 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the bucket.
    pub ts_ms: TimestampMs,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

/// A request for raw readings of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct RawQuery {
    pub device: DeviceId,
    pub channel: Option<ChannelName>,
    pub metric: Option<Metric>,
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    pub limit: u32,
}

/// Filter for the list of rejected values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestErrorQuery {
    pub device: Option<DeviceId>,
    pub reason: Option<RejectReason>,
    pub limit: u32,
}

/// One rejected value as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestErrorRecord {
    pub at_ms: TimestampMs,
    /// `None` when the device is unknown, as for an unknown topic.
    pub device: Option<DeviceId>,
    pub topic: String,
    pub field: Option<String>,
    pub value: String,
    pub reason: RejectReason,
    pub detail: String,
}

/// Count of rejected values of one device for one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestErrorCount {
    pub device: Option<DeviceId>,
    pub reason: RejectReason,
    pub count: u64,
    pub last_at_ms: TimestampMs,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestErrorReport {
    pub counts: Vec<IngestErrorCount>,
    pub recent: Vec<IngestErrorRecord>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub devices: u64,
    pub series: u64,
    pub readings: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    BuildingOwner,
}

impl Role {
    pub fn code(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::BuildingOwner => "building_owner",
        }
    }

    pub fn from_code(code: &str) -> Option<Role> {
        match code {
            "admin" => Some(Role::Admin),
            "building_owner" => Some(Role::BuildingOwner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    /// The password was generated by the server and must be changed at first login.
    pub must_change_password: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    /// PHC string produced by argon2.
    pub password_hash: String,
    pub role: Role,
    pub must_change_password: bool,
}

/// Id of the site of every device that has no assignment.
pub const DEFAULT_SITE_ID: &str = "default";

/// A metered site: a building, a farm or a room, with its own time zone and tariff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub id: String,
    pub name: String,
    /// IANA time zone name, such as `Europe/Paris`; sets the local day of totals.
    pub time_zone: String,
    /// ISO 4217 code shown when the site has no tariff.
    pub currency: String,
    /// Tariff JSON as the operator wrote it (format in docs/energy.md), or `None`.
    pub tariff_json: Option<String>,
    /// Grid emission factor in grams of CO2 per kWh; overrides the tariff's factor.
    pub co2_g_per_kwh: Option<f64>,
}

/// Monthly budget and demand limit of a site, checked against its forecast.
/// `None` disables a check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteLimits {
    /// Energy budget per local calendar month, in kWh.
    pub monthly_budget_kwh: Option<f64>,
    /// Cost budget per local calendar month, in the site's currency.
    pub monthly_budget_amount: Option<f64>,
    /// Highest acceptable mean power over one hour, in kW.
    pub demand_limit_kw: Option<f64>,
}

/// Rules a site must follow, shared by the HTTP API and the configuration file.
pub mod site_rules {
    /// Maximum length of a site id, in characters.
    pub const MAX_SITE_ID_CHARS: usize = 64;
    /// Maximum length of a site name, in characters.
    pub const MAX_SITE_NAME_CHARS: usize = 200;
    /// Maximum accepted grid emission factor, in g/kWh. Coal-fired grids are
    /// roughly 1000 (an estimate), so higher values are typos.
    pub const MAX_CO2_G_PER_KWH: f64 = 5000.0;

    /// Returns whether `id` has 1 to 64 ASCII letters, digits, `-` or `_`.
    pub fn is_valid_site_id(id: &str) -> bool {
        !id.is_empty()
            && id.chars().count() <= MAX_SITE_ID_CHARS
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }

    /// Returns whether `name` has 1 to 200 characters besides surrounding spaces.
    pub fn is_valid_site_name(name: &str) -> bool {
        let chars = name.trim().chars().count();
        chars > 0 && chars <= MAX_SITE_NAME_CHARS
    }

    /// Returns whether `name` is an IANA time zone known to the bundled database.
    pub fn is_valid_time_zone(name: &str) -> bool {
        jiff::tz::TimeZone::get(name).is_ok()
    }

    /// Returns whether `code` is an ISO 4217 currency code, such as EUR or TND.
    pub fn is_valid_currency(code: &str) -> bool {
        iso_currency::Currency::from_code(code).is_some()
    }

    /// Maximum accepted budget or demand limit. Larger values are typos.
    pub const MAX_LIMIT: f64 = 1e12;

    /// Returns whether `value` is a finite positive number no larger than [`MAX_LIMIT`],
    /// as a budget or demand limit must be.
    pub fn is_valid_limit(value: f64) -> bool {
        value.is_finite() && value > 0.0 && value <= MAX_LIMIT
    }

    /// Returns whether `factor` is a finite number of g/kWh from 0 to [`MAX_CO2_G_PER_KWH`].
    pub fn is_valid_co2_factor(factor: f64) -> bool {
        factor.is_finite() && (0.0..=MAX_CO2_G_PER_KWH).contains(&factor)
    }
}

/// The resolution a series query reads: raw readings or one rollup tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    Raw,
    Tier(crate::tsdb::Tier),
}

impl Resolution {
    /// Name used in statistics, configuration and logs: `raw`, `1m`, `1h` or `1d`.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::Tier(tier) => tier.name(),
        }
    }
}

/// How long each resolution is kept, counted back from the current time.
/// `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: Option<i64>,
    pub minute_ms: Option<i64>,
    pub hour_ms: Option<i64>,
    pub day_ms: Option<i64>,
}

impl Retention {
    const DAY_MS: i64 = 86_400_000;

    /// Keeps everything: the engine never deletes on its own.
    pub const FOREVER: Retention = Retention { raw_ms: None, minute_ms: None, hour_ms: None, day_ms: None };

    /// Raw readings for 30 days, minute rollups for 366 days, hours and days forever.
    pub const DEFAULT: Retention = Retention {
        raw_ms: Some(30 * Self::DAY_MS),
        minute_ms: Some(366 * Self::DAY_MS),
        hour_ms: None,
        day_ms: None,
    };

    pub fn keep_ms(&self, resolution: Resolution) -> Option<i64> {
        match resolution {
            Resolution::Raw => self.raw_ms,
            Resolution::Tier(crate::tsdb::Tier::Minute) => self.minute_ms,
            Resolution::Tier(crate::tsdb::Tier::Hour) => self.hour_ms,
            Resolution::Tier(crate::tsdb::Tier::Day) => self.day_ms,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CompactOutcome {
    /// Series whose new readings moved into blocks.
    pub series: u64,
    /// Readings moved from the write-ahead head table into blocks.
    pub readings: u64,
    /// Readings dropped because a block already held their series and instant.
    pub duplicates: u64,
    pub blocks_written: u64,
    pub pages_written: u64,
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionOutcome {
    pub blocks_deleted: u64,
    pub readings_deleted: u64,
    pub pages_deleted: u64,
}

/// Size of one storage tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStats {
    /// `head` (new readings not yet compressed), `raw` (compressed blocks),
    /// `1m`, `1h` or `1d`.
    pub tier: String,
    pub series: u64,
    /// Rows of the tier's table: readings for `head`, blocks for `raw`, pages for rollups.
    pub rows: u64,
    /// Readings stored in the tier (for rollups: readings summarized).
    pub readings: u64,
    /// Bytes on disk of the tier's table and indexes, from SQLite's page statistics.
    pub bytes: u64,
}

impl TierStats {
    pub fn bytes_per_reading(&self) -> Option<f64> {
        (self.readings > 0).then(|| self.bytes as f64 / self.readings as f64)
    }
}

/// Sizes of every tier, and of the whole database file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageStats {
    pub tiers: Vec<TierStats>,
    /// Size of the database file and its write-ahead log.
    pub file_bytes: u64,
}

/// One series, named by its device, channel and metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SeriesKey {
    pub device: DeviceId,
    pub channel: ChannelName,
    pub metric: Metric,
}

/// The per-bucket sum of the means of several series, such as the power of a site.
#[derive(Debug, Clone, PartialEq)]
pub struct SumQuery {
    pub series: Vec<SeriesKey>,
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    /// Maximum number of buckets; must be at least 1.
    pub max_points: u32,
}

/// One bucket of a [`SumQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SumPoint {
    pub ts_ms: TimestampMs,
    /// Sum over the series of their mean in the bucket.
    pub sum: f64,
    /// Number of series with at least one reading in the bucket.
    pub series: u32,
}

/// Ranking used by [`TopQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    Mean,
    Max,
    EnergyWh,
}

/// The `n` series with the highest mean, maximum or energy over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct TopQuery {
    pub series: Vec<SeriesKey>,
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    pub by: TopBy,
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopEntry {
    pub series: SeriesKey,
    pub value: f64,
}

/// Energy of one power series over `[from_ms, to_ms)`, by sample-and-hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EnergyTotal {
    pub energy_wh: f64,
    /// Milliseconds of the period with a known power value.
    pub covered_ms: i64,
    /// Whether the edges of the period were computed from raw readings; when
    /// raw readings are past retention, the edges use minute rollups.
    pub exact: bool,
}

/// Percentiles of one series over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PercentileReport {
    /// `(q, value)` for each requested `q` in `[0, 1]`.
    pub values: Vec<(f64, f64)>,
    /// Number of values the percentiles were taken over.
    pub count: u64,
    /// `true` when computed over raw readings; `false` when raw readings are
    /// past retention and minute means were used instead.
    pub exact: bool,
}
