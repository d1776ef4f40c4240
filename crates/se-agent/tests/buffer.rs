//! The on-disk buffer against real files in temporary directories.

use std::fs;
use std::path::{Path, PathBuf};

use se_agent::buffer::format::{decode_record, Decoded, HEADER_LEN};
use se_agent::buffer::{BufferOptions, DiskBuffer, Record, STATE_FILE};
use se_agent::AgentError;

const TOPIC: &str = "smart-energy/v1/rig-01/telemetry";

fn options(max_bytes: u64) -> BufferOptions {
    BufferOptions { max_bytes, segment_bytes: 4 * 1024 }
}

fn append(buffer: &mut DiskBuffer, payload_len: usize) -> u64 {
    let seq = buffer.allocate_seq();
    let record = Record { seq, ts_ms: 1_733_000_000_000 + seq as i64, topic: TOPIC.to_owned(), payload: vec![b'p'; payload_len] };
    buffer.append(record).unwrap();
    seq
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    paths.sort();
    paths
}

/// Sends every pending record and acknowledges it, as a healthy connection would.
fn send_and_ack_all(buffer: &mut DiskBuffer) {
    while let Some(record) = buffer.next_pending() {
        buffer.mark_in_flight(record.seq);
        buffer.ack(record.seq).unwrap();
    }
}

#[test]
fn records_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    for _ in 0..20 {
        append(&mut buffer, 100);
    }
    drop(buffer);
    let mut reopened = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(reopened.seqs(), (1..=20).collect::<Vec<_>>());
    let mut replayed = Vec::new();
    while let Some(record) = reopened.next_pending() {
        reopened.mark_in_flight(record.seq);
        replayed.push(record.seq);
    }
    assert_eq!(replayed, (1..=20).collect::<Vec<_>>());
}

#[test]
fn seq_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    for _ in 0..5 {
        append(&mut buffer, 10);
    }
    send_and_ack_all(&mut buffer);
    buffer.flush_state().unwrap();
    drop(buffer);
    let mut reopened = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert!(reopened.seqs().is_empty());
    assert_eq!(reopened.allocate_seq(), 6);
}

#[test]
fn seq_recovered_without_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    for _ in 0..7 {
        append(&mut buffer, 10);
    }
    drop(buffer);
    let _ = fs::remove_file(dir.path().join(STATE_FILE));
    let mut reopened = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(reopened.allocate_seq(), 8);
}

#[test]
fn acknowledged_records_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    for _ in 0..6 {
        append(&mut buffer, 10);
    }
    for seq in 1..=3 {
        buffer.mark_in_flight(seq);
        buffer.ack(seq).unwrap();
    }
    buffer.flush_state().unwrap();
    drop(buffer);
    let reopened = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(reopened.seqs(), vec![4, 5, 6]);
}

#[test]
fn sent_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    // About 1 KiB per record and 4 KiB segments: several segments.
    for _ in 0..20 {
        append(&mut buffer, 1_000);
    }
    assert!(segments(dir.path()).len() >= 4, "{:?}", segments(dir.path()));
    send_and_ack_all(&mut buffer);
    // Only the segment still open for appending remains.
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn full_buffer_drops_oldest_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let record_size = Record { seq: 1, ts_ms: 0, topic: TOPIC.to_owned(), payload: vec![0; 500] }.encoded_len();
    let max_bytes = record_size * 10;
    let mut buffer = DiskBuffer::open(dir.path(), options(max_bytes)).unwrap();
    for _ in 0..30 {
        append(&mut buffer, 500);
    }
    assert_eq!(buffer.seqs(), (21..=30).collect::<Vec<_>>());
    assert_eq!(buffer.stats().dropped_total, 20);
    drop(buffer);
    let reopened = DiskBuffer::open(dir.path(), options(max_bytes)).unwrap();
    assert_eq!(reopened.seqs(), (21..=30).collect::<Vec<_>>());
    let on_disk: u64 = segments(dir.path()).iter().map(|path| fs::metadata(path).unwrap().len()).sum();
    assert!(on_disk <= max_bytes + 2 * 4 * 1024 + 2 * record_size, "{on_disk} bytes on disk");
}

#[test]
fn torn_write_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    for _ in 0..5 {
        append(&mut buffer, 50);
    }
    drop(buffer);
    let segment = segments(dir.path()).pop().unwrap();
    let length = fs::metadata(&segment).unwrap().len();
    // Cut the last record in the middle, as a crash during its write would.
    let file = fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(length - 20).unwrap();
    drop(file);

    let mut reopened = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(reopened.seqs(), vec![1, 2, 3, 4]);
    let record_size = length - HEADER_LEN as u64;
    assert_eq!(fs::metadata(&segment).unwrap().len(), HEADER_LEN as u64 + record_size / 5 * 4);
    // The torn record was never published, so its number is given again.
    assert_eq!(reopened.allocate_seq(), 5);
}

#[test]
fn corrupt_record_keeps_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    for _ in 0..3 {
        append(&mut buffer, 50);
    }
    drop(buffer);
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&segment, &bytes).unwrap();
    let reopened = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(reopened.seqs(), vec![1, 2]);
}

#[test]
fn unknown_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    append(&mut buffer, 10);
    drop(buffer);
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&segment, &bytes).unwrap();

    let error = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap_err();
    assert!(matches!(error, AgentError::BufferVersion { found: 7, supported: 1, .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("format version 7"), "{message}");
    assert!(message.contains("version 1 only"), "{message}");
    assert!(error.message_fr().contains("format version 7"), "{}", error.message_fr());
    // The segment is left untouched for a newer agent.
    assert_eq!(fs::read(&segment).unwrap(), bytes);
}

#[test]
fn foreign_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("00000000000000000001.seg"), b"this is not a buffer segment").unwrap();
    let error = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap_err();
    assert!(matches!(error, AgentError::BufferNotSegment { .. }), "{error}");
}

#[test]
fn torn_header_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("00000000000000000001.seg"), b"SEAG").unwrap();
    let buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert!(buffer.seqs().is_empty());
    assert!(segments(dir.path()).is_empty());
}

#[test]
fn memory_only_record_is_sent_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    append(&mut buffer, 10);
    let seq = buffer.allocate_seq();
    buffer.append_in_memory(Record { seq, ts_ms: 0, topic: TOPIC.to_owned(), payload: b"{}".to_vec() });
    assert_eq!(buffer.seqs(), vec![1, 2]);
    drop(buffer);
    let reopened = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(reopened.seqs(), vec![1]);
}

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/buffer-v1.seg")
}

/// The checked-in segment was written by the version 1 encoder; it must keep
/// decoding byte for byte.
#[test]
fn v1_fixture_still_decodes() {
    let bytes = fs::read(fixture_path()).unwrap();
    let mut offset = HEADER_LEN;
    let mut records = Vec::new();
    while let Decoded::Record(record, length) = decode_record(&bytes[offset..]) {
        records.push(record);
        offset += length;
    }
    assert_eq!(offset, bytes.len());
    assert_eq!(records.len(), 3);
    for (index, record) in records.iter().enumerate() {
        let seq = index as u64 + 1;
        let ts_ms = 1_733_000_000_000 + index as i64 * 5_000;
        assert_eq!(record.seq, seq);
        assert_eq!(record.ts_ms, ts_ms);
        assert_eq!(record.topic, "smart-energy/v1/rig-fixture/telemetry");
        let payload = format!(r#"{{"seq":{seq},"ts":{ts_ms},"readings":[{{"channel":"gpu0","power_w":{}}}]}}"#, 200 + index);
        assert_eq!(String::from_utf8_lossy(&record.payload), payload);
    }
}

#[test]
fn v1_fixture_opens_as_buffer() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(fixture_path(), dir.path().join("00000000000000000001.seg")).unwrap();
    let mut buffer = DiskBuffer::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(buffer.seqs(), vec![1, 2, 3]);
    assert_eq!(buffer.allocate_seq(), 4);
}
