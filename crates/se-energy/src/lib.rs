//! Energy accounting for Smart Energy, without I/O.
//!
//! Every function here is a pure function of stored samples and settings, so
//! late, out-of-order and replayed readings are handled by recomputing from
//! the sorted set, and a changed tariff is applied to past periods by
//! calling [`cost`] again. The rules are written in docs/energy.md.
//!
//! - [`counter_energy`]: energy from a cumulative counter, with resets,
//!   wraps, false zeros and rounding dips.
//! - [`power_energy`]: energy from power samples by sample-and-hold, with
//!   gaps reported as unknown.
//! - [`channel_energy`]: energy of one device channel in a report window,
//!   from its best [`EnergySource`]; apparent power or energy is an upper bound.
//! - [`totals_by_period`]: totals per local hour, day, week, month or year.
//! - [`Tariff`] and [`cost`]: prices, demand charges and CO2; [`cost_of_span`]
//!   prorates the monthly charges for a report span such as one day.
//!
//! ```
//! use se_energy::{counter_energy, CounterConfig, CounterSample};
//!
//! // kWh readings one minute apart; the zero is a restart that came back.
//! let samples: Vec<CounterSample> = [152.30, 0.0, 152.31, 152.40]
//!     .iter()
//!     .enumerate()
//!     .map(|(i, kwh)| CounterSample::new(i as i64 * 60_000, *kwh))
//!     .collect();
//! let config = CounterConfig { wh_per_unit: 1000.0, ..CounterConfig::default() };
//! let result = counter_energy(&samples, &config).unwrap();
//! assert!((result.kwh() - 0.10).abs() < 1e-9);
//! ```

mod calendar;
mod cost;
mod counter;
mod power;
mod series;
mod source;
mod tariff;

pub use calendar::{period_of, totals_by_period, totals_of_pieces, Period, PeriodBounds, PeriodTotal};
pub use cost::{cost, cost_of_span, CostBreakdown, CostKind, CostLine};
pub use counter::{counter_energy, kwh_to_wh, watt_minutes_to_wh, CounterConfig, PHYSICAL_MAX_WH};
pub use power::{power_energy, PowerConfig, Window, DEFAULT_SENTINELS, PHYSICAL_MAX_W};
pub use source::{channel_energy, EnergySource};
pub use series::{CounterEvent, CounterSample, EnergyPiece, EnergyResult, EventKind, PowerSample, UnknownCause, UnknownSpan};
pub use tariff::{currency_minor_units, is_iso_currency, DayOfWeek, DayType, DemandCharge, EnergyCharge, Tariff, TierBlock, TouPeriod};

pub use rust_decimal::Decimal;

use se_core::TimestampMs;

/// Errors of the energy core. Each names the value at fault and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnergyError {
    #[error("invalid {what} settings: {}", problems.join("; "))]
    InvalidConfig { what: &'static str, problems: Vec<String> },
    #[error("invalid tariff: {}", problems.join("; "))]
    InvalidTariff { problems: Vec<String> },
    #[error("tariff JSON could not be read: {0}; see the tariff format in docs/energy.md")]
    TariffJson(String),
    #[error("window ends at {end_ms} ms, before its start at {start_ms} ms; swap the bounds")]
    InvalidWindow { start_ms: TimestampMs, end_ms: TimestampMs },
    #[error("time {ts_ms} ms since 1970 is outside the supported calendar range (years -9999 to 9999)")]
    InvalidTime { ts_ms: TimestampMs },
    #[error("energy piece from {start_ms} to {end_ms} ms with {wh} Wh is invalid: the energy must be finite and the end not before the start")]
    InvalidPiece { start_ms: TimestampMs, end_ms: TimestampMs, wh: f64 },
}
