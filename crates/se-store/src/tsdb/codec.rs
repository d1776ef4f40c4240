//! The compressed block format of raw readings.
//!
//! A block holds the readings of one series in time order, with unique
//! timestamps. Layout, version 1:
//!
//! | bytes | content |
//! |---|---|
//! | 1 | format version, `1` |
//! | 4 | number of readings `n`, little-endian `u32` |
//! | 4 | length `t` of the timestamp section, little-endian `u32` |
//! | `t` | timestamps in ms, `i64`, as one standalone pco chunk |
//! | rest | values, `f64`, as one standalone pco chunk |
//!
//! pco picks delta encoding for the timestamps and detects decimal
//! quantization of the values (a meter reporting 0.01 W steps), and it is
//! lossless: every `f64` comes back bit for bit.

use pco::standalone::{simple_compress, simple_decompress};
use pco::ChunkConfig;

/// Current version byte of [`encode_block`].
const BLOCK_VERSION: u8 = 1;
const HEADER_LEN: usize = 9;

/// Why a stored block could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("block holds {timestamps} timestamps but {values} values")]
    LengthMismatch { timestamps: usize, values: usize },
    #[error("block has {0} readings, more than a block can hold")]
    TooLong(usize),
    #[error("block is {0} bytes long, shorter than its {HEADER_LEN}-byte header")]
    Truncated(usize),
    #[error("block has format version {0}, but this build reads only version {BLOCK_VERSION}")]
    UnknownVersion(u8),
    #[error("block header announces {expected} readings but its {section} section decodes to {found}")]
    CountMismatch { section: &'static str, expected: usize, found: usize },
    #[error("pco failed on the {section} section: {source}")]
    Pco { section: &'static str, source: pco::errors::PcoError },
}

/// Compresses parallel columns of timestamps and values into one block.
pub(crate) fn encode_block(timestamps: &[i64], values: &[f64]) -> Result<Vec<u8>, CodecError> {
    if timestamps.len() != values.len() {
        return Err(CodecError::LengthMismatch { timestamps: timestamps.len(), values: values.len() });
    }
    let count = u32::try_from(timestamps.len()).map_err(|_| CodecError::TooLong(timestamps.len()))?;
    let config = ChunkConfig::default();
    let ts_bytes = simple_compress(timestamps, &config).map_err(|source| CodecError::Pco { section: "timestamp", source })?;
    let value_bytes = simple_compress(values, &config).map_err(|source| CodecError::Pco { section: "value", source })?;
    let ts_len = u32::try_from(ts_bytes.len()).map_err(|_| CodecError::TooLong(timestamps.len()))?;

    let mut block = Vec::with_capacity(HEADER_LEN + ts_bytes.len() + value_bytes.len());
    block.push(BLOCK_VERSION);
    block.extend_from_slice(&count.to_le_bytes());
    block.extend_from_slice(&ts_len.to_le_bytes());
    block.extend_from_slice(&ts_bytes);
    block.extend_from_slice(&value_bytes);
    Ok(block)
}

/// Decompresses a block written by [`encode_block`].
pub(crate) fn decode_block(block: &[u8]) -> Result<(Vec<i64>, Vec<f64>), CodecError> {
    if block.len() < HEADER_LEN {
        return Err(CodecError::Truncated(block.len()));
    }
    if block[0] != BLOCK_VERSION {
        return Err(CodecError::UnknownVersion(block[0]));
    }
    let count = read_u32(&block[1..5]) as usize;
    let ts_len = read_u32(&block[5..9]) as usize;
    let ts_end = HEADER_LEN.checked_add(ts_len).filter(|end| *end <= block.len()).ok_or(CodecError::Truncated(block.len()))?;

    let timestamps: Vec<i64> = simple_decompress(&block[HEADER_LEN..ts_end]).map_err(|source| CodecError::Pco { section: "timestamp", source })?;
    let values: Vec<f64> = simple_decompress(&block[ts_end..]).map_err(|source| CodecError::Pco { section: "value", source })?;
    if timestamps.len() != count {
        return Err(CodecError::CountMismatch { section: "timestamp", expected: count, found: timestamps.len() });
    }
    if values.len() != count {
        return Err(CodecError::CountMismatch { section: "value", expected: count, found: values.len() });
    }
    Ok((timestamps, values))
}

/// Compresses one numeric column of a rollup page.
pub(crate) fn encode_column<T: pco::data_types::Number>(column: &[T], section: &'static str, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let bytes = simple_compress(column, &ChunkConfig::default()).map_err(|source| CodecError::Pco { section, source })?;
    let len = u32::try_from(bytes.len()).map_err(|_| CodecError::TooLong(column.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Reads one column written by [`encode_column`] at `*offset` and moves the offset past it.
pub(crate) fn decode_column<T: pco::data_types::Number>(page: &[u8], offset: &mut usize, section: &'static str) -> Result<Vec<T>, CodecError> {
    let start = offset.checked_add(4).filter(|end| *end <= page.len()).ok_or(CodecError::Truncated(page.len()))?;
    let len = read_u32(&page[*offset..start]) as usize;
    let end = start.checked_add(len).filter(|end| *end <= page.len()).ok_or(CodecError::Truncated(page.len()))?;
    let column = simple_decompress(&page[start..end]).map_err(|source| CodecError::Pco { section, source })?;
    *offset = end;
    Ok(column)
}

pub(crate) fn read_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_block_round_trips() {
        let block = encode_block(&[], &[]).unwrap();
        let (ts, values) = decode_block(&block).unwrap();
        assert!(ts.is_empty());
        assert!(values.is_empty());
    }

    #[test]
    fn mismatched_columns_are_rejected() {
        let error = encode_block(&[1, 2], &[1.0]).unwrap_err();
        assert!(matches!(error, CodecError::LengthMismatch { timestamps: 2, values: 1 }), "{error}");
    }

    #[test]
    fn truncated_block_is_an_error() {
        let block = encode_block(&[1, 2, 3], &[1.5, 2.5, 3.5]).unwrap();
        for len in [0, 4, HEADER_LEN, block.len() - 1] {
            assert!(decode_block(&block[..len]).is_err(), "a block cut to {len} bytes decoded");
        }
    }

    #[test]
    fn unknown_version_is_an_error() {
        let mut block = encode_block(&[1], &[1.0]).unwrap();
        block[0] = 9;
        assert!(matches!(decode_block(&block), Err(CodecError::UnknownVersion(9))));
    }

    #[test]
    fn quantized_power_compresses_below_two_bytes() {
        // A GPU-like trace: 10 s steps with jitter, power in 0.01 W steps.
        let ts: Vec<i64> = (0..4096).map(|i| 1_700_000_000_000 + i * 10_000 + (i * 7919) % 13).collect();
        let values: Vec<f64> = (0..4096).map(|i| ((220.0 + 15.0 * ((i as f64) / 40.0).sin()) * 100.0).round() / 100.0).collect();
        let block = encode_block(&ts, &values).unwrap();
        let per_reading = block.len() as f64 / ts.len() as f64;
        assert!(per_reading < 4.0, "{per_reading} bytes per reading");
    }

    proptest! {
        #[test]
        fn blocks_round_trip_bit_for_bit(
            mut ts in proptest::collection::vec(-4_000_000_000_000i64..4_000_000_000_000, 0..600),
            seed in proptest::collection::vec(proptest::num::f64::ANY, 0..600),
        ) {
            ts.sort_unstable();
            ts.dedup();
            let values: Vec<f64> = ts.iter().enumerate().map(|(i, _)| seed.get(i).copied().unwrap_or(i as f64 * 0.1)).collect();
            let block = encode_block(&ts, &values).unwrap();
            let (ts_back, values_back) = decode_block(&block).unwrap();
            prop_assert_eq!(ts_back, ts);
            let bits: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
            let bits_back: Vec<u64> = values_back.iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(bits_back, bits);
        }
    }
}
