//! Byte layout of buffer segment files, version 1. No I/O.
//!
//! A segment starts with a 16-byte header, followed by records:
//!
//! ```text
//! header: magic "SEAGBUF\n" (8 bytes) | version u32 LE | reserved u32 LE (0)
//! record: body length u32 LE | CRC-32 (IEEE) of the body u32 LE | body
//! body:   seq u64 LE | ts_ms i64 LE | topic length u16 LE | topic (UTF-8) | payload
//! ```
//!
//! A record cut short at the end of a file is a torn write from a crash. A
//! record whose CRC does not match is corrupt. Readers stop at either.

/// First bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"SEAGBUF\n";
/// Format version written by this agent, and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header in bytes.
pub const HEADER_LEN: usize = 16;
/// Size of the length and CRC fields in front of each record body.
pub const RECORD_PREFIX_LEN: usize = 8;
/// Size of the fixed fields at the start of a body (seq, ts, topic length).
const BODY_FIXED_LEN: usize = 8 + 8 + 2;
/// Largest body accepted when reading; a larger length field means corruption.
pub const MAX_BODY_LEN: usize = 16 * 1024 * 1024;

/// One buffered telemetry message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number of the message, also in its payload.
    pub seq: u64,
    /// Measurement time in milliseconds since 1970.
    pub ts_ms: i64,
    /// MQTT topic to publish to.
    pub topic: String,
    /// MQTT payload (the telemetry JSON).
    pub payload: Vec<u8>,
}

impl Record {
    /// Size of the record in a segment, prefix included, in bytes.
    pub fn encoded_len(&self) -> u64 {
        (RECORD_PREFIX_LEN + BODY_FIXED_LEN + self.topic.len() + self.payload.len()) as u64
    }
}

/// Returns the header of a new segment.
pub fn encode_header() -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Problem found in a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header: a segment torn at creation.
    TooShort(usize),
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// A version other than [`FORMAT_VERSION`].
    UnsupportedVersion(u32),
}

/// Checks the header at the start of `bytes`.
pub fn check_header(bytes: &[u8]) -> Result<(), HeaderError> {
    if bytes.len() < HEADER_LEN {
        return Err(HeaderError::TooShort(bytes.len()));
    }
    if bytes[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let version = read_u32(&bytes[8..12]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    Ok(())
}

/// Encodes `record` with its length and CRC prefix.
///
/// Topics are at most 65,535 bytes; MQTT topics of this agent are far shorter.
pub fn encode_record(record: &Record) -> Vec<u8> {
    let topic = record.topic.as_bytes();
    let topic_len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
    let topic = &topic[..usize::from(topic_len)];
    let mut body = Vec::with_capacity(BODY_FIXED_LEN + topic.len() + record.payload.len());
    body.extend_from_slice(&record.seq.to_le_bytes());
    body.extend_from_slice(&record.ts_ms.to_le_bytes());
    body.extend_from_slice(&topic_len.to_le_bytes());
    body.extend_from_slice(topic);
    body.extend_from_slice(&record.payload);

    let mut bytes = Vec::with_capacity(RECORD_PREFIX_LEN + body.len());
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// Result of reading one record from the front of a byte slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid record and the number of bytes it took.
    Record(Record, usize),
    /// No bytes left: the clean end of a segment.
    End,
    /// The bytes end inside a record: a torn write.
    Torn,
    /// The record is damaged.
    Corrupt(String),
}

/// Reads the record at the front of `bytes`.
pub fn decode_record(bytes: &[u8]) -> Decoded {
    if bytes.is_empty() {
        return Decoded::End;
    }
    if bytes.len() < RECORD_PREFIX_LEN {
        return Decoded::Torn;
    }
    let body_len = read_u32(&bytes[0..4]) as usize;
    let expected_crc = read_u32(&bytes[4..8]);
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Decoded::Corrupt(format!("record length {body_len} is outside {BODY_FIXED_LEN} to {MAX_BODY_LEN}"));
    }
    let Some(body) = bytes.get(RECORD_PREFIX_LEN..RECORD_PREFIX_LEN + body_len) else {
        return Decoded::Torn;
    };
    let actual_crc = crc32fast::hash(body);
    if actual_crc != expected_crc {
        return Decoded::Corrupt(format!("CRC mismatch: stored {expected_crc:08x}, computed {actual_crc:08x}"));
    }

    let seq = read_u64(&body[0..8]);
    let ts_ms = read_u64(&body[8..16]) as i64;
    let topic_len = usize::from(u16::from_le_bytes([body[16], body[17]]));
    let Some(topic) = body.get(BODY_FIXED_LEN..BODY_FIXED_LEN + topic_len) else {
        return Decoded::Corrupt(format!("topic length {topic_len} exceeds the record body"));
    };
    let Ok(topic) = std::str::from_utf8(topic) else {
        return Decoded::Corrupt("topic is not UTF-8".to_owned());
    };
    let payload = body[BODY_FIXED_LEN + topic_len..].to_vec();
    let record = Record { seq, ts_ms, topic: topic.to_owned(), payload };
    Decoded::Record(record, RECORD_PREFIX_LEN + body_len)
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(array)
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record { seq, ts_ms: 1_733_000_000_000 + seq as i64, topic: "smart-energy/v1/rig-01/telemetry".to_owned(), payload: format!("{{\"seq\":{seq}}}").into_bytes() }
    }

    #[test]
    fn record_round_trips() {
        let original = record(7);
        let bytes = encode_record(&original);
        assert_eq!(decode_record(&bytes), Decoded::Record(original.clone(), bytes.len()));
        assert_eq!(original.encoded_len(), bytes.len() as u64);
    }

    #[test]
    fn every_cut_is_torn() {
        let bytes = encode_record(&record(1));
        for cut in 1..bytes.len() {
            assert_eq!(decode_record(&bytes[..cut]), Decoded::Torn, "cut at {cut}");
        }
    }

    #[test]
    fn flipped_byte_is_corrupt() {
        let mut bytes = encode_record(&record(1));
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(matches!(decode_record(&bytes), Decoded::Corrupt(_)));
    }

    #[test]
    fn header_accepts_own_version() {
        assert_eq!(check_header(&encode_header()), Ok(()));
    }

    #[test]
    fn header_rejects_other_version() {
        let mut header = encode_header();
        header[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(check_header(&header), Err(HeaderError::UnsupportedVersion(2)));
    }

    #[test]
    fn header_rejects_other_magic() {
        assert_eq!(check_header(b"PK\x03\x04 zip file data"), Err(HeaderError::BadMagic));
    }
}
