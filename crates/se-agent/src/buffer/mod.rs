//! Store-and-forward buffer: every telemetry message is written to disk before
//! it is published, and leaves the buffer only after its PUBACK.
//!
//! [`BufferCore`] is the I/O-free queue; [`DiskBuffer`] adds the segment files
//! (format in [`format`]) and a small `state.json` with the next sequence
//! number and the highest sequence number already removed. After a crash, the
//! records removed since `state.json` was last written are published again;
//! the server drops them as duplicates by their `seq`.

pub mod core;
pub mod format;
mod log;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::core::{BufferCore, PushOutcome};
pub use self::format::{Record, FORMAT_VERSION};
use self::log::{io_error, sync_dir, SegmentLog};
use crate::AgentError;

/// Name of the state file in the buffer directory.
pub const STATE_FILE: &str = "state.json";
/// Smallest segment file size, in bytes.
const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
/// Largest segment file size, in bytes.
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Size limits of a [`DiskBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferOptions {
    /// Maximum bytes of unsent records (as encoded on disk). When full, the oldest are dropped.
    pub max_bytes: u64,
    /// Size after which a new segment file starts. Disk use stays below about
    /// `max_bytes` plus two segments.
    pub segment_bytes: u64,
}

impl BufferOptions {
    /// Options for `max_bytes`, with segments of a sixteenth of it, between 64 KiB and 8 MiB.
    pub fn new(max_bytes: u64) -> Self {
        BufferOptions { max_bytes, segment_bytes: (max_bytes / 16).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES) }
    }
}

/// Contents of `state.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Sequence number of the next message.
    next_seq: u64,
    /// Highest sequence number already acknowledged or dropped.
    removed_through: u64,
}

/// Counters of a buffer, for status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    pub records: usize,
    pub bytes: u64,
    pub in_flight: usize,
    pub dropped_total: u64,
    pub next_seq: u64,
    pub segments: usize,
}

/// The on-disk store-and-forward buffer of one agent.
#[derive(Debug)]
pub struct DiskBuffer {
    core: BufferCore,
    log: SegmentLog,
    dir: PathBuf,
    next_seq: u64,
    max_bytes: u64,
    /// State last written to `state.json`.
    persisted: Option<State>,
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `dir` and loads the unsent records.
    pub fn open(dir: &Path, options: BufferOptions) -> Result<DiskBuffer, AgentError> {
        let (log, records) = SegmentLog::open(dir, options.segment_bytes)?;
        let state = read_state(dir);
        let removed_through = state.map_or(0, |state| state.removed_through);
        let last_logged = records.last().map_or(0, |record| record.seq);
        let next_seq = [state.map_or(1, |state| state.next_seq), last_logged + 1, removed_through + 1]
            .into_iter()
            .max()
            .unwrap_or(1);

        let mut core = BufferCore::new(options.max_bytes, removed_through);
        let mut dropped = 0usize;
        for record in records.into_iter().filter(|record| record.seq > removed_through) {
            dropped += core.push(record).dropped.len();
        }
        if dropped > 0 {
            tracing::error!(dropped, max_bytes = options.max_bytes, "buffer contains more than buffer.max_bytes; the oldest readings were dropped and are lost");
        }
        if !core.is_empty() {
            tracing::info!(records = core.len(), bytes = core.bytes(), next_seq, "buffer has unsent readings from an earlier run");
        }

        let mut buffer = DiskBuffer { core, log, dir: dir.to_owned(), next_seq, max_bytes: options.max_bytes, persisted: state };
        buffer.remove_sent_segments()?;
        Ok(buffer)
    }

    /// Returns the sequence number of the next message and advances it.
    pub fn allocate_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Writes `record` to disk, then queues it. Its `seq` must come from
    /// [`DiskBuffer::allocate_seq`]. The outcome lists the oldest records dropped to make room.
    pub fn append(&mut self, record: Record) -> Result<PushOutcome, AgentError> {
        let size = record.encoded_len();
        if size > self.max_bytes {
            return Err(AgentError::RecordTooLarge { size, max_bytes: self.max_bytes });
        }
        self.next_seq = self.next_seq.max(record.seq + 1);
        self.log.append(&record)?;
        let outcome = self.core.push(record);
        if !outcome.dropped.is_empty() {
            self.remove_sent_segments()?;
        }
        Ok(outcome)
    }

    /// Queues `record` without writing it to disk, after [`DiskBuffer::append`]
    /// failed on a disk error: the record is still published, but lost if the
    /// agent stops before its PUBACK.
    pub fn append_in_memory(&mut self, record: Record) -> PushOutcome {
        self.next_seq = self.next_seq.max(record.seq + 1);
        let outcome = self.core.push(record);
        if !outcome.dropped.is_empty() {
            if let Err(error) = self.remove_sent_segments() {
                tracing::warn!(%error, "cannot delete sent buffer segments");
            }
        }
        outcome
    }

    /// Returns a copy of the oldest record not yet sent on this connection.
    pub fn next_pending(&mut self) -> Option<Record> {
        self.core.next_pending().cloned()
    }

    /// Marks `seq` as published and waiting for its PUBACK.
    pub fn mark_in_flight(&mut self, seq: u64) {
        self.core.mark_in_flight(seq);
    }

    /// Records the PUBACK of `seq`. Returns false if `seq` is not buffered.
    pub fn ack(&mut self, seq: u64) -> Result<bool, AgentError> {
        let known = self.core.ack(seq);
        if known {
            self.remove_sent_segments()?;
        }
        Ok(known)
    }

    /// Makes every in-flight record pending again, after a disconnection.
    pub fn requeue_in_flight(&mut self) {
        self.core.requeue_in_flight();
    }

    /// Writes `state.json` if it changed since the last write.
    pub fn flush_state(&mut self) -> Result<(), AgentError> {
        let state = State { next_seq: self.next_seq, removed_through: self.core.removed_through() };
        if self.persisted == Some(state) {
            return Ok(());
        }
        write_state(&self.dir, state)?;
        self.persisted = Some(state);
        Ok(())
    }

    /// Sequence numbers of the buffered records, oldest first.
    pub fn seqs(&self) -> Vec<u64> {
        self.core.seqs()
    }

    pub fn stats(&self) -> BufferStats {
        BufferStats {
            records: self.core.len(),
            bytes: self.core.bytes(),
            in_flight: self.core.in_flight(),
            dropped_total: self.core.dropped_total(),
            next_seq: self.next_seq,
            segments: self.log.segment_count(),
        }
    }

    /// Deletes segments whose records were all removed, after saving the state
    /// so that the sequence numbers never go back after a restart.
    fn remove_sent_segments(&mut self) -> Result<(), AgentError> {
        let removed_through = self.core.removed_through();
        if !self.log.has_removable(removed_through) {
            return Ok(());
        }
        self.flush_state()?;
        self.log.remove_through(removed_through)
    }
}

/// Reads `state.json`; a missing or unreadable file yields `None`, and the
/// sequence numbers are then recovered from the segments.
fn read_state(dir: &Path) -> Option<State> {
    let path = dir.join(STATE_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the buffer state; recovering sequence numbers from the segments");
            return None;
        }
    };
    match serde_json::from_slice(&text) {
        Ok(state) => Some(state),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "buffer state is not valid JSON; recovering sequence numbers from the segments");
            None
        }
    }
}

/// Replaces `state.json` atomically: write a temporary file, flush, rename.
fn write_state(dir: &Path, state: State) -> Result<(), AgentError> {
    let path = dir.join(STATE_FILE);
    let temporary = dir.join(format!("{STATE_FILE}.tmp"));
    let text = serde_json::to_vec(&state).unwrap_or_default();
    let mut file = fs::File::create(&temporary).map_err(io_error(&temporary, "create the state file"))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temporary, "write the state file"))?;
    fs::rename(&temporary, &path).map_err(io_error(&path, "replace the state file"))?;
    sync_dir(dir)
}
