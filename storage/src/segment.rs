//! Segment files: naming, header, creation, scanning and cutting.
//!
//! A log directory contains segment files named `<first index, 20 digits>.log`. Each file
//! starts with a 32-byte header, followed by records (see `record`) up to the first zero magic
//! byte. The rest of the file is preallocated zeros.
//!
//! ```text
//! offset  size  field
//!      0     8  magic          b"RRLOGSEG"
//!      8     4  version        SEGMENT_VERSION (1), little-endian
//!     12     4  reserved       zero
//!     16     8  first_index    index of the first record, equal to the file name
//!     24     4  crc            CRC-32 of bytes 0..24
//!     28     4  reserved       zero
//! ```
//!
//! Invariants kept by the writers in this crate:
//! - A file with a segment name always has a valid, synced header: segments are created under
//!   a temporary name, preallocated, synced and then renamed.
//! - Every segment except the last ends cleanly: the writer syncs a segment before it creates
//!   the next one, so torn writes can only sit at the tail of the last segment.
//! - Cutting a segment back (`cut_segment`) is one ftruncate followed by a new fallocate, so a
//!   crash leaves either the old bytes or a shorter file, never a half-zeroed range.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::record::{self, RecordProblem, RECORD_HEADER_LEN};
use crate::{stats, StorageError};

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RRLOGSEG";
/// Segment header format version.
pub const SEGMENT_VERSION: u32 = 1;
/// Length of the segment header in bytes; the first record starts here.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// File name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".log";
/// File name suffix of segments that are still being created.
const TEMP_SUFFIX: &str = ".log.tmp";

/// Returns the file name of the segment whose first record has index `first_index`.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back to its first index.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a segment header.
pub fn encode_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32fast::hash(&header[0..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Decodes a segment header and returns its first index.
pub fn decode_header(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte segment header",
            bytes.len()
        ));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("segment header magic is not RRLOGSEG".to_string());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4-byte slice"));
    if version != SEGMENT_VERSION {
        return Err(format!("unknown segment format version {version}"));
    }
    let stored = u32::from_le_bytes(bytes[24..28].try_into().expect("4-byte slice"));
    let computed = crc32fast::hash(&bytes[0..24]);
    if stored != computed {
        return Err(format!(
            "segment header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    Ok(u64::from_le_bytes(
        bytes[16..24].try_into().expect("8-byte slice"),
    ))
}

/// A segment file found in a log directory.
#[derive(Clone, Debug)]
pub struct SegmentName {
    pub first_index: u64,
    pub path: PathBuf,
}

/// Lists the segment files of `dir` in index order and removes leftover temporary files of an
/// interrupted segment creation.
pub fn list_segments(dir: &Path, remove_temporary: bool) -> Result<Vec<SegmentName>, StorageError> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };

        if name.ends_with(TEMP_SUFFIX) && remove_temporary {
            // A crash during creation leaves the temporary file; it was never part of the log.
            tracing::warn!(path = %entry.path().display(), "removing unfinished segment file");
            fs::remove_file(entry.path())
                .map_err(|e| StorageError::io("remove unfinished segment", entry.path(), e))?;
            continue;
        }
        if let Some(first_index) = parse_segment_file_name(name) {
            segments.push(SegmentName {
                first_index,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|segment| segment.first_index);
    Ok(segments)
}

/// Syncs a directory so that creations, renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle = File::open(dir).map_err(|e| StorageError::io("open directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| StorageError::io("fsync directory", dir, e))?;
    stats::count_metadata_sync();
    Ok(())
}

/// Preallocates `len` bytes of `file`, so that a full disk fails here with ENOSPC instead of
/// failing a later write or raising SIGBUS on a mapped page.
///
/// NOTE: on ext4 and XFS, the first write to a preallocated (unwritten) extent can still need
/// a little metadata space, so this narrows the window rather than closing it completely.
pub fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), StorageError> {
    // SAFETY: posix_fallocate only reads its integer arguments; the descriptor is owned by
    // `file` and stays open for the duration of the call.
    let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if code != 0 {
        return Err(StorageError::io_at(
            "preallocate",
            path,
            len,
            std::io::Error::from_raw_os_error(code),
        ));
    }
    Ok(())
}

/// Creates segment `first_index` in `dir` with `size` preallocated bytes, durably.
///
/// The file is written under a temporary name and renamed into place, so an existing segment
/// of the same name (an empty one being resized) is replaced atomically.
pub fn create_segment(dir: &Path, first_index: u64, size: u64) -> Result<PathBuf, StorageError> {
    let path = dir.join(segment_file_name(first_index));
    let temp = dir.join(format!("{first_index:020}{TEMP_SUFFIX}"));

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| StorageError::io("create segment", &temp, e))?;
    preallocate(&file, &temp, size)?;
    file.write_all_at(&encode_header(first_index), 0)
        .map_err(|e| StorageError::io_at("write segment header", &temp, 0, e))?;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync new segment", &temp, e))?;
    stats::count_metadata_sync();
    drop(file);

    fs::rename(&temp, &path).map_err(|e| StorageError::io("rename new segment", &temp, e))?;
    sync_dir(dir)?;
    tracing::debug!(path = %path.display(), first_index, size, "created segment");
    Ok(path)
}

/// Removes a segment file and syncs the directory before returning, so that removals of
/// several segments become durable in the order they were made.
pub fn remove_segment(dir: &Path, path: &Path) -> Result<(), StorageError> {
    fs::remove_file(path).map_err(|e| StorageError::io("remove segment", path, e))?;
    sync_dir(dir)
}

/// Cuts a segment back to `offset` bytes of data and restores its preallocated length.
///
/// The ftruncate is one metadata transaction, so a crash leaves either the old content or a
/// file that ends at `offset`, and both scan to the same records. Zeroing the range with
/// writes instead could leave zeros followed by old valid records, which recovery would have
/// to treat as corruption.
pub fn cut_segment(file: &File, path: &Path, offset: u64, size: u64) -> Result<(), StorageError> {
    file.set_len(offset)
        .map_err(|e| StorageError::io_at("truncate segment", path, offset, e))?;
    preallocate(file, path, size)?;
    file.sync_all()
        .map_err(|e| StorageError::io_at("fsync cut segment", path, offset, e))?;
    stats::count_metadata_sync();
    Ok(())
}

/// Location of one valid record inside a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLoc {
    pub offset: u64,
    pub len: u32,
    pub term: u64,
}

/// State of the bytes after the last valid record of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Only zeros or the end of the file.
    Clean,
    /// Invalid bytes up to `garbage_end` with no valid record among them: an interrupted write.
    Torn {
        garbage_end: u64,
        problem: RecordProblem,
    },
    /// An invalid or out-of-sequence record followed by valid data: damage, not a torn write.
    Corrupt { offset: u64, reason: String },
}

/// Result of scanning one segment.
#[derive(Clone, Debug)]
pub struct SegmentScan {
    pub first_index: u64,
    pub records: Vec<RecordLoc>,
    /// Offset just after the last valid record.
    pub valid_end: u64,
    pub tail: Tail,
}

impl SegmentScan {
    /// Index of the last valid record, or `first_index - 1` for an empty segment.
    pub fn last_index(&self) -> u64 {
        self.first_index + self.records.len() as u64 - 1
    }
}

/// Scans the bytes of a whole segment file.
///
/// Returns `Err(reason)` if the header itself is invalid.
pub fn scan_segment(data: &[u8]) -> Result<SegmentScan, String> {
    let first_index = decode_header(data)?;
    if first_index == 0 {
        return Err("segment header has first index 0".to_string());
    }

    let mut records = Vec::new();
    let mut position = SEGMENT_HEADER_LEN;
    let mut expected_index = first_index;
    let tail = loop {
        if position >= data.len() {
            break Tail::Clean;
        }
        match record::decode(&data[position..]) {
            Ok((header, _payload)) => {
                if header.index != expected_index {
                    break Tail::Corrupt {
                        offset: position as u64,
                        reason: format!(
                            "record has index {} but index {expected_index} was expected",
                            header.index
                        ),
                    };
                }
                records.push(RecordLoc {
                    offset: position as u64,
                    len: header.record_len,
                    term: header.term,
                });
                position += header.record_len as usize;
                expected_index += 1;
            }
            Err(problem) => break classify_invalid(data, position, problem),
        }
    };

    Ok(SegmentScan {
        first_index,
        records,
        valid_end: position as u64,
        tail,
    })
}

/// Decides whether invalid bytes at `position` are the end of data, a torn write or damage.
fn classify_invalid(data: &[u8], position: usize, problem: RecordProblem) -> Tail {
    let Some(last_nonzero) = last_nonzero_byte(&data[position..]) else {
        return Tail::Clean;
    };
    let garbage_end = position + last_nonzero + 1;

    // A valid record after the invalid one means the bytes in between were damaged after they
    // were written. A torn write does not leave a complete record behind a broken one, except
    // in the case noted on `find_valid_record`.
    match find_valid_record(data, position + 1, garbage_end) {
        Some(_) => Tail::Corrupt {
            offset: position as u64,
            reason: problem.to_string(),
        },
        None => Tail::Torn {
            garbage_end: garbage_end as u64,
            problem,
        },
    }
}

/// Returns the offset of the first valid record that starts in `start..end`.
///
/// NOTE: a crash during an unsynced write can persist a later page of the write but not an
/// earlier one. That leaves a hole followed by valid but never acknowledged records, which this
/// check reports as corruption; opening with repair truncates at the hole.
fn find_valid_record(data: &[u8], start: usize, end: usize) -> Option<usize> {
    let mut offset = start;
    while offset + RECORD_HEADER_LEN <= end {
        let found = data[offset..end]
            .iter()
            .position(|&b| b == record::RECORD_MAGIC)?;
        offset += found;
        if record::decode(&data[offset..end]).is_ok() {
            return Some(offset);
        }
        offset += 1;
    }
    None
}

/// Returns the position of the last non-zero byte. The preallocated tail of an active segment
/// can be tens of megabytes of zeros, so whole 64-byte blocks are tested with an OR reduction
/// that the compiler vectorizes.
fn last_nonzero_byte(data: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let blocks_end = data.len() - data.len() % BLOCK;
    if let Some(position) = data[blocks_end..].iter().rposition(|&b| b != 0) {
        return Some(blocks_end + position);
    }

    let mut end = blocks_end;
    while end >= BLOCK {
        let block = &data[end - BLOCK..end];
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            let position = block.iter().rposition(|&b| b != 0)?;
            return Some(end - BLOCK + position);
        }
        end -= BLOCK;
    }
    None
}

/// Reads a whole file into `buf`, replacing its content.
pub fn read_whole_file(path: &Path, buf: &mut Vec<u8>) -> Result<(), StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io("open segment", path, e))?;
    read_file_into(&file, path, buf)
}

/// Reads all of `file` into `buf` with positioned reads.
pub fn read_file_into(file: &File, path: &Path, buf: &mut Vec<u8>) -> Result<(), StorageError> {
    let len = file
        .metadata()
        .map_err(|e| StorageError::io("stat segment", path, e))?
        .len() as usize;
    buf.clear();
    buf.resize(len, 0);
    file.read_exact_at(buf, 0)
        .map_err(|e| StorageError::io_at("read segment", path, 0, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_with(records: &[(u64, u64, &[u8])], size: usize) -> Vec<u8> {
        let mut data = encode_header(records.first().map_or(1, |r| r.0)).to_vec();
        for (index, term, payload) in records {
            record::encode(&mut data, *index, *term, payload);
        }
        data.resize(size, 0);
        data
    }

    #[test]
    fn file_name_roundtrip() {
        let name = segment_file_name(42);
        assert_eq!(name, "00000000000000000042.log");
        assert_eq!(parse_segment_file_name(&name), Some(42));
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log.tmp"),
            None
        );
    }

    #[test]
    fn header_detects_damage() {
        let mut header = encode_header(9);
        assert_eq!(decode_header(&header), Ok(9));
        header[17] ^= 1;
        assert!(decode_header(&header).is_err());
    }

    #[test]
    fn scan_clean_segment() {
        let data = segment_with(&[(5, 1, b"a"), (6, 1, b"bb"), (7, 2, b"")], 4096);
        let scan = scan_segment(&data).unwrap();
        assert_eq!(scan.first_index, 5);
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.last_index(), 7);
        assert_eq!(scan.tail, Tail::Clean);
    }

    #[test]
    fn scan_torn_last_record() {
        let mut data = segment_with(&[(1, 1, b"first"), (2, 1, b"second")], 4096);
        let second = SEGMENT_HEADER_LEN + record::encoded_len(5);
        data[second + 30] ^= 0xff;
        let scan = scan_segment(&data).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.valid_end, second as u64);
        assert!(matches!(scan.tail, Tail::Torn { .. }), "{:?}", scan.tail);
    }

    #[test]
    fn scan_flags_damage_before_valid_record() {
        let mut data = segment_with(&[(1, 1, b"first"), (2, 1, b"second"), (3, 1, b"x")], 4096);
        data[SEGMENT_HEADER_LEN + 29] ^= 0xff;
        let scan = scan_segment(&data).unwrap();
        assert!(scan.records.is_empty());
        assert_eq!(
            scan.tail,
            Tail::Corrupt {
                offset: SEGMENT_HEADER_LEN as u64,
                reason: scan_reason(&scan.tail)
            }
        );
    }

    fn scan_reason(tail: &Tail) -> String {
        match tail {
            Tail::Corrupt { reason, .. } => reason.clone(),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn scan_flags_index_out_of_sequence() {
        let data = segment_with(&[(1, 1, b"a"), (3, 1, b"b")], 4096);
        let scan = scan_segment(&data).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert!(scan_reason(&scan.tail).contains("index 3"));
    }

    #[test]
    fn last_nonzero_byte_finds_each_position() {
        for len in 0..150 {
            for position in 0..len {
                let mut data = vec![0u8; len];
                data[position] = 1;
                assert_eq!(last_nonzero_byte(&data), Some(position), "len {len}");
            }
            assert_eq!(last_nonzero_byte(&vec![0u8; len]), None);
        }
    }
}
