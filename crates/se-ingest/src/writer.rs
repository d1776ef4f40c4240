use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use se_core::{now_ms, Reading, TimestampMs};
use se_store::{IngestBatch, Store, StoreError};

use crate::core::{IngestCore, IngestCounters, Processed};

/// One message from any source. `ack` is called once the message's readings
/// and rejections are durable, never before.
pub struct IngestMessage {
    pub topic: String,
    pub payload: Bytes,
    pub received_ms: TimestampMs,
    pub ack: Option<Box<dyn FnOnce() + Send>>,
}

impl IngestMessage {
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self { topic: topic.into(), payload: payload.into(), received_ms: now_ms(), ack: None }
    }
}

/// Called with every batch of stored readings, such as to push them to
/// dashboards. It must not block.
pub type ReadingObserver = Arc<dyn Fn(&[Reading]) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Maximum messages per transaction. Larger batches amortize the commit.
    pub max_batch: usize,
    /// Attempts to write a batch before giving up on it.
    pub max_attempts: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self { max_batch: 2_000, max_attempts: 5 }
    }
}

/// Stores messages from `messages` until every sender is dropped and the
/// channel is drained, then returns the totals.
///
/// Each loop takes what is waiting (up to `max_batch`), writes it in one
/// transaction (group commit) and then acknowledges it.
pub async fn run_writer(
    mut core: IngestCore,
    store: Arc<dyn Store>,
    mut messages: mpsc::Receiver<IngestMessage>,
    observer: Option<ReadingObserver>,
    config: WriterConfig,
) -> IngestCounters {
    restore_counters(&mut core, store.as_ref()).await;
    let mut batch: Vec<IngestMessage> = Vec::with_capacity(config.max_batch);
    loop {
        let received = messages.recv_many(&mut batch, config.max_batch).await;
        if received == 0 {
            break;
        }
        let mut processed = core.process(batch.iter().map(|m| (m.topic.as_str(), m.payload.as_ref(), m.received_ms)));
        log_rejections(&processed);
        processed.batch.rejected_at_ms = now_ms();
        match write_with_retry(store.as_ref(), &processed.batch, config.max_attempts).await {
            Ok(()) => {
                if let Some(observer) = &observer {
                    if !processed.batch.readings.is_empty() {
                        observer(&processed.batch.readings);
                    }
                }
                for message in batch.drain(..) {
                    if let Some(ack) = message.ack {
                        ack();
                    }
                }
            }
            Err(error) => {
                // The messages stay unacknowledged, so a QoS 1 sender resends them.
                tracing::error!(%error, messages = batch.len(), "failed to store a batch; its messages were not acknowledged");
                batch.clear();
            }
        }
    }
    tracing::info!(
        messages = core.counters.messages,
        readings = core.counters.readings,
        rejected_values = core.counters.rejected_values,
        "ingestion stopped"
    );
    core.counters
}

async fn restore_counters(core: &mut IngestCore, store: &dyn Store) {
    match store.list_devices().await {
        Ok(devices) => {
            for device in devices {
                core.restore_counters(device.id, &device.counters);
            }
        }
        Err(error) => tracing::warn!(%error, "could not load device counters; loss counting starts from zero"),
    }
}

fn log_rejections(processed: &Processed) {
    for rejection in &processed.to_log {
        tracing::warn!(
            device_id = rejection.device.as_ref().map(|d| d.as_str()).unwrap_or("-"),
            topic = %rejection.topic,
            reason = rejection.reason.code(),
            value = %rejection.value,
            "rejected value: {} (repeats of this device and reason are not logged for a minute)",
            rejection.detail
        );
    }
}

async fn write_with_retry(store: &dyn Store, batch: &IngestBatch, max_attempts: u32) -> Result<(), StoreError> {
    let mut attempt = 1;
    loop {
        match store.write_ingest_batch(batch).await {
            Ok(_) => return Ok(()),
            Err(error) if attempt < max_attempts => {
                let delay = Duration::from_millis(50 * 2u64.pow(attempt));
                tracing::warn!(%error, attempt, retry_in_ms = delay.as_millis() as u64, "storing a batch failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
