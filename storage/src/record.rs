//! On-disk framing of one log entry.
//!
//! Every entry is written as a fixed 28-byte header followed by its payload. All integers are
//! little-endian.
//!
//! ```text
//! offset  size  field
//!      0     1  magic       0xA7, never zero in a written record
//!      1     1  version     RECORD_VERSION (1)
//!      2     2  reserved    zero
//!      4     4  record_len  header + payload length in bytes, so always >= 28
//!      8     8  index       Raft index, >= 1
//!     16     8  term        Raft term
//!     24     4  crc         CRC-32 (IEEE, crc32fast) of bytes 0..24 followed by the payload
//!     28     n  payload     opaque bytes encoded by the server
//! ```
//!
//! The end of the written data is recognised by a zero magic byte: segments are preallocated
//! with zeros, and a written record never has a zero magic, a zero `record_len` or a zero
//! `index`. The checksum value itself never marks the end, so a record whose CRC happens to be
//! 0 reads back like any other.

use std::fmt;

/// First byte of every record. Any non-zero value would do; zero must stay the end marker.
pub const RECORD_MAGIC: u8 = 0xA7;
/// Format version stored in byte 1 of every record.
pub const RECORD_VERSION: u8 = 1;
/// Length of the fixed record header in bytes.
pub const RECORD_HEADER_LEN: usize = 28;
/// Largest payload a record can frame, because `record_len` is a `u32`.
pub const MAX_PAYLOAD_LEN: usize = u32::MAX as usize - RECORD_HEADER_LEN;

/// Byte offset of the CRC field, which is also the length of the checksummed header prefix.
const CRC_OFFSET: usize = 24;

/// Decoded fixed header of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header plus payload length in bytes.
    pub record_len: u32,
    /// Raft index of the entry.
    pub index: u64,
    /// Raft term of the entry.
    pub term: u64,
    /// Stored CRC-32.
    pub crc: u32,
}

impl RecordHeader {
    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        self.record_len as usize - RECORD_HEADER_LEN
    }
}

/// Reason why the bytes at some offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// The magic byte is zero: preallocated space, the normal end of the data.
    Unwritten,
    /// Fewer bytes remain than the header or the declared record length needs.
    Truncated { needed: usize, available: usize },
    /// The magic byte is neither zero nor `RECORD_MAGIC`.
    BadMagic(u8),
    /// The version byte is not `RECORD_VERSION`.
    BadVersion(u8),
    /// The reserved bytes are not zero.
    BadReserved,
    /// `record_len` is smaller than the header.
    BadLength(u32),
    /// The index field is zero.
    ZeroIndex,
    /// The stored CRC does not match the header and payload.
    ChecksumMismatch { stored: u32, computed: u32 },
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::Unwritten => write!(f, "unwritten space (zero magic byte)"),
            RecordProblem::Truncated { needed, available } => {
                write!(f, "record needs {needed} bytes but only {available} remain")
            }
            RecordProblem::BadMagic(byte) => write!(f, "invalid magic byte {byte:#04x}"),
            RecordProblem::BadVersion(version) => write!(f, "unknown record version {version}"),
            RecordProblem::BadReserved => write!(f, "reserved header bytes are not zero"),
            RecordProblem::BadLength(len) => write!(f, "invalid record length {len}"),
            RecordProblem::ZeroIndex => write!(f, "record index is 0"),
            RecordProblem::ChecksumMismatch { stored, computed } => {
                write!(
                    f,
                    "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
        }
    }
}

/// Returns the encoded length of a record with a payload of `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Computes the record CRC from the 24 header bytes before the CRC field and the payload.
pub fn checksum(header_prefix: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header_prefix[..CRC_OFFSET]);
    hasher.update(payload);
    hasher.finalize()
}

/// Builds the 24 checksummed header bytes of a record.
pub fn header_prefix(index: u64, term: u64, payload_len: usize) -> [u8; CRC_OFFSET] {
    let record_len = encoded_len(payload_len) as u32;
    let mut prefix = [0u8; CRC_OFFSET];
    prefix[0] = RECORD_MAGIC;
    prefix[1] = RECORD_VERSION;
    prefix[4..8].copy_from_slice(&record_len.to_le_bytes());
    prefix[8..16].copy_from_slice(&index.to_le_bytes());
    prefix[16..24].copy_from_slice(&term.to_le_bytes());
    prefix
}

/// Appends one encoded record to `buf`.
///
/// The caller checks `payload.len() <= MAX_PAYLOAD_LEN` and `index >= 1`; both are asserted in
/// debug builds because a violation would write a record that recovery rejects.
pub fn encode(buf: &mut Vec<u8>, index: u64, term: u64, payload: &[u8]) {
    debug_assert!(
        payload.len() <= MAX_PAYLOAD_LEN,
        "payload too large to frame"
    );
    debug_assert!(index >= 1, "Raft indexes start at 1");

    let prefix = header_prefix(index, term, payload.len());
    let crc = checksum(&prefix, payload);
    buf.reserve(encoded_len(payload.len()));
    buf.extend_from_slice(&prefix);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Decodes and verifies the record at the start of `buf`, returning its header and payload.
pub fn decode(buf: &[u8]) -> Result<(RecordHeader, &[u8]), RecordProblem> {
    if buf.first() == Some(&0) {
        return Err(RecordProblem::Unwritten);
    }
    if buf.len() < RECORD_HEADER_LEN {
        return Err(RecordProblem::Truncated {
            needed: RECORD_HEADER_LEN,
            available: buf.len(),
        });
    }
    if buf[0] != RECORD_MAGIC {
        return Err(RecordProblem::BadMagic(buf[0]));
    }
    if buf[1] != RECORD_VERSION {
        return Err(RecordProblem::BadVersion(buf[1]));
    }
    if buf[2] != 0 || buf[3] != 0 {
        return Err(RecordProblem::BadReserved);
    }

    let record_len = u32::from_le_bytes(buf[4..8].try_into().expect("4-byte slice"));
    if (record_len as usize) < RECORD_HEADER_LEN {
        return Err(RecordProblem::BadLength(record_len));
    }
    if record_len as usize > buf.len() {
        return Err(RecordProblem::Truncated {
            needed: record_len as usize,
            available: buf.len(),
        });
    }
    let index = u64::from_le_bytes(buf[8..16].try_into().expect("8-byte slice"));
    if index == 0 {
        return Err(RecordProblem::ZeroIndex);
    }
    let term = u64::from_le_bytes(buf[16..24].try_into().expect("8-byte slice"));
    let stored = u32::from_le_bytes(buf[24..28].try_into().expect("4-byte slice"));

    let payload = &buf[RECORD_HEADER_LEN..record_len as usize];
    let computed = checksum(&buf[..CRC_OFFSET], payload);
    if computed != stored {
        return Err(RecordProblem::ChecksumMismatch { stored, computed });
    }

    let header = RecordHeader {
        record_len,
        index,
        term,
        crc: stored,
    };
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, 3, b"hello");
        let (header, payload) = decode(&buf).unwrap();
        assert_eq!(header.index, 7);
        assert_eq!(header.term, 3);
        assert_eq!(header.record_len as usize, RECORD_HEADER_LEN + 5);
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn empty_payload_roundtrip() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 1, b"");
        let (header, payload) = decode(&buf).unwrap();
        assert_eq!(header.payload_len(), 0);
        assert!(payload.is_empty());
    }

    #[test]
    fn zero_byte_is_unwritten() {
        assert_eq!(decode(&[0u8; 64]), Err(RecordProblem::Unwritten));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut clean = Vec::new();
        encode(&mut clean, 42, 9, b"some payload bytes");
        for position in 0..clean.len() {
            let mut damaged = clean.clone();
            damaged[position] ^= 0x40;
            assert!(
                decode(&damaged).is_err(),
                "flip at byte {position} was not detected"
            );
        }
    }

    #[test]
    fn short_buffer_is_truncated() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 1, b"abcdef");
        for cut in 1..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Err(RecordProblem::Truncated { .. })),
                "cut at {cut} not reported as truncated"
            );
        }
    }
}
