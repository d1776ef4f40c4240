//! Stored savings recommendations and the operator's decision on each.
//!
//! The store keeps what the recommenders of se-analytics computed, in plain
//! columns plus the action as JSON, so it does not depend on se-analytics.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use se_core::{ChannelName, DeviceId, TimestampMs};

/// Review state of a recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendationStatus {
    /// Computed and waiting for the operator; each run refreshes its estimate.
    Open,
    /// The operator recorded that it was carried out.
    Applied,
    /// The operator chose not to carry it out.
    Dismissed,
    /// A later run no longer produced it, so the readings stopped
    /// supporting it; a run that produces it again opens a new one.
    Withdrawn,
}

impl RecommendationStatus {
    pub const ALL: [RecommendationStatus; 4] =
        [RecommendationStatus::Open, RecommendationStatus::Applied, RecommendationStatus::Dismissed, RecommendationStatus::Withdrawn];

    pub fn code(self) -> &'static str {
        match self {
            RecommendationStatus::Open => "open",
            RecommendationStatus::Applied => "applied",
            RecommendationStatus::Dismissed => "dismissed",
            RecommendationStatus::Withdrawn => "withdrawn",
        }
    }

    pub fn from_code(code: &str) -> Option<RecommendationStatus> {
        Self::ALL.into_iter().find(|status| status.code() == code)
    }
}

/// A recommendation as a recommender computed it, before it is stored.
///
/// Site, device, channel and action type identify it: the store keeps at
/// most one open recommendation for each such key.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecommendation {
    pub site_id: String,
    pub device: DeviceId,
    pub channel: ChannelName,
    /// Action code, such as `set_power_limit` or `switch_off_when_idle`.
    pub action_type: String,
    /// The action with the numbers behind its estimate, as JSON.
    pub action_json: String,
    /// Estimated energy saved per 30-day month, in kWh.
    pub kwh_per_month: f64,
    /// Estimated money saved per 30-day month; `None` when the site has no tariff.
    pub money_per_month: Option<Decimal>,
    /// ISO 4217 code of `money_per_month`.
    pub currency: String,
    /// Time of the computation.
    pub computed_ms: TimestampMs,
}

/// Result of [`crate::Store::upsert_recommendation`] for a computed recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOutcome {
    /// No recommendation had this key: a new open one was stored.
    Created,
    /// The open recommendation with this key got the new action, estimate and update time.
    Refreshed,
    /// A recommendation with this key was already applied or dismissed, so
    /// nothing was stored and the operator's decision is kept.
    Decided,
}

/// Id of the recommendation that [`crate::Store::upsert_recommendation`]
/// stored or found, and what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecommendationUpsert {
    pub id: i64,
    pub outcome: UpsertOutcome,
}

/// A channel whose open recommendations a run keeps although it did not
/// produce them again, because a recommender failed on its readings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeptChannel {
    pub device: DeviceId,
    pub channel: ChannelName,
}

/// Energy of a recommendation's channel over a span, measured from its
/// hourly mean power. The span before applying is kept as the baseline of
/// the achieved saving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageSpan {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    pub kwh: f64,
    /// Milliseconds of the span in hours that have readings.
    pub covered_ms: i64,
    /// Cost of that energy in the site's currency; `None` when it could not be priced.
    pub cost: Option<Decimal>,
    /// Work done over the covered hours, in megahashes; `None` for a channel without hashrate.
    pub work_mh: Option<f64>,
}

/// The operator's decision on an open recommendation.
#[derive(Debug, Clone, PartialEq)]
pub enum RecommendationDecision {
    /// Carried out at `at_ms`. `baseline` is the usage before that time, or
    /// `None` when there were too few readings to measure one.
    Applied { at_ms: TimestampMs, by: String, baseline: Option<UsageSpan> },
    Dismissed { at_ms: TimestampMs, by: String },
}

impl RecommendationDecision {
    pub fn status(&self) -> RecommendationStatus {
        match self {
            RecommendationDecision::Applied { .. } => RecommendationStatus::Applied,
            RecommendationDecision::Dismissed { .. } => RecommendationStatus::Dismissed,
        }
    }
}

/// A stored recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRecommendation {
    pub id: i64,
    pub site_id: String,
    pub device: DeviceId,
    pub channel: ChannelName,
    pub action_type: String,
    pub action_json: String,
    pub kwh_per_month: f64,
    pub money_per_month: Option<Decimal>,
    pub currency: String,
    pub status: RecommendationStatus,
    /// First computation.
    pub created_ms: TimestampMs,
    /// Latest computation that produced it again, for an open recommendation.
    pub updated_ms: TimestampMs,
    /// Time it was applied, dismissed or withdrawn.
    pub decided_ms: Option<TimestampMs>,
    /// User who applied or dismissed it; `None` when a run withdrew it.
    pub decided_by: Option<String>,
    /// Usage before it was applied, for the achieved saving.
    pub baseline: Option<UsageSpan>,
}
