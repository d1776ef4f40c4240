//! Ingestion: from MQTT messages to stored readings.
//!
//! Sources (the embedded broker, an external broker, an importer) hand
//! [`IngestMessage`]s to one channel. [`run_writer`] takes them in batches,
//! decodes them with the I/O-free [`IngestCore`], writes each batch to the
//! [`se_store::Store`] in one transaction and only then acknowledges the
//! messages, so that a source acknowledges to a device only what is durable.

mod core;
mod external;
mod writer;

pub use crate::core::{IngestCore, IngestCounters, Processed};
pub use external::{run_external_source, ExternalSourceConfig, ExternalSourceError};
pub use writer::{run_writer, IngestMessage, ReadingObserver, WriterConfig};
