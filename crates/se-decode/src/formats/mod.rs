//! Decoders of third-party device formats and of bulk imports.
//!
//! Each MQTT format has one module with a [`crate::Decoder`]; the line
//! protocol and nvidia-smi parsers are plain functions over a request body
//! or a file. Formats that share topic shapes must be ordered in a
//! [`crate::DecoderSet`]: see docs/formats.md.

mod common;
pub mod emonhub;
pub mod esphome;
pub mod home_assistant;
pub mod influx;
pub mod nvidia_smi;
pub mod shelly;
pub mod tasmota;

pub use common::unit_scale;

use se_core::Metric;

/// A decoder setting that cannot work, found when the decoder is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecoderConfigError {
    #[error("{setting}: unit {unit:?} does not measure {metric} (unit {canonical}); use {canonical} or a multiple of it such as k{canonical}", canonical = metric.unit())]
    UnknownUnit { setting: String, unit: String, metric: Metric },
}
