//! Conversions between SQLite column values and domain types.

use se_core::{ChannelName, DeviceId, Metric, RejectReason};

use crate::{Role, StoreError};

/// Wraps a rusqlite error with the name of the operation that failed.
pub(super) fn db(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError::Database { operation, source }
}

/// Returns whether an error is a UNIQUE or PRIMARY KEY constraint violation.
pub(super) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        ),
        _ => false,
    }
}

/// Converts a counter for storage. SQLite integers are signed 64-bit, so a
/// count above `i64::MAX` is stored as `i64::MAX`.
pub(super) fn count_to_sql(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

pub(super) fn count_from_sql(
    operation: &'static str,
    column: &str,
    value: i64,
) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        operation,
        detail: format!("column {column} holds the negative count {value}"),
    })
}

/// Stores a sequence number as the two's-complement bit pattern of the `u64`,
/// so every value round-trips, at the price of numbers above `i64::MAX`
/// looking negative in SQL.
pub(super) fn seq_to_sql(seq: u64) -> i64 {
    seq as i64
}

pub(super) fn seq_from_sql(value: i64) -> u64 {
    value as u64
}

pub(super) fn device_from_sql(
    operation: &'static str,
    value: &str,
) -> Result<DeviceId, StoreError> {
    DeviceId::parse(value).map_err(|error| StoreError::Corrupt {
        operation,
        detail: error.to_string(),
    })
}

pub(super) fn channel_from_sql(
    operation: &'static str,
    value: &str,
) -> Result<ChannelName, StoreError> {
    ChannelName::parse(value).map_err(|error| StoreError::Corrupt {
        operation,
        detail: error.to_string(),
    })
}

pub(super) fn metric_from_sql(operation: &'static str, value: &str) -> Result<Metric, StoreError> {
    value
        .parse()
        .map_err(|error: se_core::UnknownMetric| StoreError::Corrupt {
            operation,
            detail: error.to_string(),
        })
}

pub(super) fn reason_from_sql(
    operation: &'static str,
    value: &str,
) -> Result<RejectReason, StoreError> {
    value
        .parse()
        .map_err(|detail| StoreError::Corrupt { operation, detail })
}

pub(super) fn role_from_sql(operation: &'static str, value: &str) -> Result<Role, StoreError> {
    Role::from_code(value).ok_or_else(|| StoreError::Corrupt {
        operation,
        detail: format!("unknown user role {value:?}"),
    })
}
