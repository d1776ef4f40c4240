//! Domain types shared by every Smart Energy crate.
//!
//! This crate has no I/O. It defines what a reading is ([`Reading`]), which
//! quantities exist and in which unit ([`Metric`]), how devices are named
//! ([`DeviceId`]), why an input value is rejected ([`RejectReason`]), and how
//! lost messages are counted from sequence numbers ([`SequenceTracker`]).
//!
//! ```
//! use se_core::{DeviceId, Metric, Reading};
//!
//! let device = DeviceId::parse("rig-01").unwrap();
//! let reading = Reading::new(device, "gpu0", Metric::Power, 1_700_000_000_000, 231.5);
//! assert_eq!(reading.metric.key(), "power_w");
//! ```

mod device;
mod lang;
mod metric;
mod reading;
mod reject;
mod sequence;
pub mod topic;

pub use device::{ChannelName, DeviceId, InvalidName};
pub use lang::Lang;
pub use metric::{Metric, UnknownMetric};
pub use reading::{now_ms, Announcement, CommandAck, Decoded, Reading, TimestampMs};
pub use reject::{RejectReason, Rejection};
pub use sequence::{SequenceOutcome, SequenceTracker, MAX_GAP};
