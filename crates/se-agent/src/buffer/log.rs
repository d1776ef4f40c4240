//! Append-only segment files in the buffer directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{check_header, decode_record, encode_header, encode_record, Decoded, HeaderError, Record, FORMAT_VERSION, HEADER_LEN};
use crate::AgentError;

/// File name extension of segment files.
const SEGMENT_EXTENSION: &str = "seg";

#[derive(Debug)]
struct Segment {
    number: u64,
    path: PathBuf,
    /// Highest sequence number written to the segment; `None` while empty.
    last_seq: Option<u64>,
}

#[derive(Debug)]
struct Active {
    file: File,
    bytes: u64,
}

/// The segment files of one buffer directory, oldest first.
#[derive(Debug)]
pub(crate) struct SegmentLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Open file of the last segment; `None` until the first append of this run.
    active: Option<Active>,
    segment_max_bytes: u64,
}

/// Returns a closure that wraps an I/O error on `path` while doing `action`.
pub(crate) fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> AgentError {
    let path = path.to_owned();
    move |source| AgentError::BufferIo { path, action, source }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.{SEGMENT_EXTENSION}"))
}

/// Flushes a directory entry change (file created, renamed or removed) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(io_error(dir, "flush the directory"))
}

impl SegmentLog {
    /// Opens the segments in `dir` (created if missing), reads their records in
    /// order and cuts off a torn or corrupt tail. Fails on a segment of another
    /// format version, and on a file with the segment extension that is not a segment.
    pub fn open(dir: &Path, segment_max_bytes: u64) -> Result<(SegmentLog, Vec<Record>), AgentError> {
        fs::create_dir_all(dir).map_err(io_error(dir, "create the buffer directory"))?;
        let mut numbered = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir, "list the buffer directory"))? {
            let path = entry.map_err(io_error(dir, "list the buffer directory"))?.path();
            if path.extension().and_then(|ext| ext.to_str()) != Some(SEGMENT_EXTENSION) {
                continue;
            }
            match path.file_stem().and_then(|stem| stem.to_str()).and_then(|stem| stem.parse::<u64>().ok()) {
                Some(number) => numbered.push((number, path)),
                None => tracing::warn!(path = %path.display(), "ignoring a .seg file whose name is not a segment number"),
            }
        }
        numbered.sort();

        let mut segments = Vec::with_capacity(numbered.len());
        let mut records = Vec::new();
        for (number, path) in numbered {
            let before = records.len();
            if !read_segment(&path, &mut records)? {
                continue;
            }
            let last_seq = records[before..].last().map(|record| record.seq);
            segments.push(Segment { number, path, last_seq });
        }
        Ok((SegmentLog { dir: dir.to_owned(), segments, active: None, segment_max_bytes }, records))
    }

    /// Appends one record and flushes it to disk. A new segment starts when
    /// the current one reached its size, and at the first append after opening.
    pub fn append(&mut self, record: &Record) -> Result<(), AgentError> {
        if self.active.as_ref().is_none_or(|active| active.bytes >= self.segment_max_bytes) {
            self.start_segment()?;
        }
        let bytes = encode_record(record);
        let Some(segment) = self.segments.last_mut() else {
            return Err(AgentError::BufferIo {
                path: self.dir.clone(),
                action: "append a record",
                source: std::io::Error::other("no active segment"),
            });
        };
        let Some(active) = self.active.as_mut() else {
            return Err(AgentError::BufferIo {
                path: segment.path.clone(),
                action: "append a record",
                source: std::io::Error::other("no open segment file"),
            });
        };
        let written = active.file.write_all(&bytes).and_then(|()| active.file.sync_data());
        if let Err(source) = written {
            // The file may end in a partial record now: write no more to it. The next
            // open cuts the partial record off.
            self.active = None;
            return Err(AgentError::BufferIo { path: segment.path.clone(), action: "append a record", source });
        }
        active.bytes += bytes.len() as u64;
        segment.last_seq = Some(record.seq);
        Ok(())
    }

    /// Returns whether [`SegmentLog::remove_through`] with `seq` would delete a file.
    pub fn has_removable(&self, seq: u64) -> bool {
        self.closed().any(|segment| segment.last_seq.is_none_or(|last| last <= seq))
    }

    /// Deletes the closed segments whose records all have a sequence number up to `seq`.
    pub fn remove_through(&mut self, seq: u64) -> Result<(), AgentError> {
        let closed = self.closed().count();
        let mut result = Ok(());
        let mut removed_any = false;
        let mut position = 0;
        self.segments.retain(|segment| {
            let is_closed = position < closed;
            position += 1;
            let removable = is_closed && segment.last_seq.is_none_or(|last| last <= seq);
            if !removable || result.is_err() {
                return true;
            }
            match fs::remove_file(&segment.path) {
                Ok(()) => {
                    removed_any = true;
                    false
                }
                Err(source) => {
                    result = Err(AgentError::BufferIo { path: segment.path.clone(), action: "delete a sent segment", source });
                    true
                }
            }
        });
        if removed_any {
            sync_dir(&self.dir)?;
        }
        result
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Segments that are not open for appending.
    fn closed(&self) -> impl Iterator<Item = &Segment> {
        let open = usize::from(self.active.is_some());
        self.segments.iter().take(self.segments.len() - open)
    }

    fn start_segment(&mut self) -> Result<(), AgentError> {
        let number = self.segments.last().map_or(1, |segment| segment.number + 1);
        let path = segment_path(&self.dir, number);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path, "create a segment"))?;
        file.write_all(&encode_header())
            .and_then(|()| file.sync_all())
            .map_err(io_error(&path, "write a segment header"))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment { number, path, last_seq: None });
        self.active = Some(Active { file, bytes: HEADER_LEN as u64 });
        Ok(())
    }
}

/// Reads the records of one segment into `records`. Returns false when the file
/// was only a torn header and has been deleted.
fn read_segment(path: &Path, records: &mut Vec<Record>) -> Result<bool, AgentError> {
    let bytes = fs::read(path).map_err(io_error(path, "read a segment"))?;
    match check_header(&bytes) {
        Ok(()) => {}
        Err(HeaderError::TooShort(length)) => {
            tracing::warn!(path = %path.display(), length, "deleting a segment torn while its header was written");
            fs::remove_file(path).map_err(io_error(path, "delete a torn segment"))?;
            return Ok(false);
        }
        Err(HeaderError::BadMagic) => {
            return Err(AgentError::BufferNotSegment { path: path.to_owned(), reason: "the file does not start with the segment magic bytes".to_owned() });
        }
        Err(HeaderError::UnsupportedVersion(found)) => {
            return Err(AgentError::BufferVersion { path: path.to_owned(), found, supported: FORMAT_VERSION });
        }
    }

    let mut offset = HEADER_LEN;
    loop {
        match decode_record(&bytes[offset..]) {
            Decoded::Record(record, length) => {
                records.push(record);
                offset += length;
            }
            Decoded::End => return Ok(true),
            Decoded::Torn => {
                let discarded = bytes.len() - offset;
                tracing::warn!(path = %path.display(), offset, discarded, "cutting off a record torn by a crash during its write");
                truncate(path, offset)?;
                return Ok(true);
            }
            Decoded::Corrupt(reason) => {
                let discarded = bytes.len() - offset;
                tracing::error!(path = %path.display(), offset, discarded, %reason, "buffer segment is damaged; the readings after this offset are lost");
                truncate(path, offset)?;
                return Ok(true);
            }
        }
    }
}

fn truncate(path: &Path, length: usize) -> Result<(), AgentError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io_error(path, "open a segment to cut a torn record"))?;
    file.set_len(length as u64)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path, "cut a torn record off a segment"))
}
