//! Offline inspection of a log directory: `ringraft log verify` and `ringraft log dump`.
//!
//! Both functions only read. They take no lock and cut nothing, so they are safe on a copy of
//! a damaged directory and on the directory of a stopped node. On a running node they may see
//! the tail of a write in progress and report it as torn.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::meta::read_hard_state;
use crate::record;
use crate::segment::{self, SegmentScan, Tail};
use crate::StorageError;

/// Result of `verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Every segment is valid to its end.
    Healthy,
    /// The only problem is a torn tail of the last segment, which opening the log cuts.
    TornTail {
        path: PathBuf,
        offset: u64,
        dropped_bytes: u64,
    },
    /// Invalid data before the tail; opening the log fails unless repair is enabled.
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl VerifyOutcome {
    /// Returns true if the log opens without repair (healthy or torn tail only).
    pub fn opens(&self) -> bool {
        !matches!(self, VerifyOutcome::Corrupt { .. })
    }
}

fn write_error(error: std::io::Error) -> StorageError {
    StorageError::io("write report to", "output", error)
}

/// Checks every segment in `dir` and prints one line per segment, the index range, the hard
/// state and every problem found to `out`.
pub fn verify(dir: &Path, out: &mut impl Write) -> Result<VerifyOutcome, StorageError> {
    let names = segment::list_segments(dir, false)?;
    writeln!(
        out,
        "log directory {}: {} segment(s)",
        dir.display(),
        names.len()
    )
    .map_err(write_error)?;

    let mut outcome = VerifyOutcome::Healthy;
    let mut first_index = None;
    let mut next_index: Option<u64> = None;
    let mut buf = Vec::new();

    for (position, name) in names.iter().enumerate() {
        let is_last = position + 1 == names.len();
        segment::read_whole_file(&name.path, &mut buf)?;
        let file_name = name.path.file_name().unwrap_or_default().to_string_lossy();

        let scan = match segment::scan_segment(&buf) {
            Ok(scan) => scan,
            Err(reason) => {
                writeln!(out, "  {file_name}: invalid header: {reason}").map_err(write_error)?;
                outcome = corrupt(outcome, &name.path, 0, reason);
                continue;
            }
        };
        print_segment(out, &file_name, buf.len(), &scan)?;

        if scan.first_index != name.first_index {
            let reason = format!(
                "header first index {} does not match the file name",
                scan.first_index
            );
            writeln!(out, "    problem: {reason}").map_err(write_error)?;
            outcome = corrupt(outcome, &name.path, 0, reason);
        }
        if let Some(expected) = next_index {
            if expected != scan.first_index {
                let reason = format!(
                    "gap in the log: expected index {expected}, segment starts at {}",
                    scan.first_index
                );
                writeln!(out, "    problem: {reason}").map_err(write_error)?;
                outcome = corrupt(outcome, &name.path, 0, reason);
            }
        }
        first_index.get_or_insert(scan.first_index);
        next_index = Some(scan.last_index() + 1);

        match scan.tail {
            Tail::Clean => {}
            Tail::Torn {
                garbage_end,
                problem,
            } => {
                let dropped_bytes = garbage_end - scan.valid_end;
                writeln!(
                    out,
                    "    torn tail at offset {}: {problem}; {dropped_bytes} byte(s) would be cut on open",
                    scan.valid_end
                )
                .map_err(write_error)?;
                if is_last {
                    if outcome == VerifyOutcome::Healthy {
                        outcome = VerifyOutcome::TornTail {
                            path: name.path.clone(),
                            offset: scan.valid_end,
                            dropped_bytes,
                        };
                    }
                } else {
                    let reason = format!("{problem} in a segment that is not the last one");
                    outcome = corrupt(outcome, &name.path, scan.valid_end, reason);
                }
            }
            Tail::Corrupt { offset, reason } => {
                writeln!(out, "    problem at offset {offset}: {reason}").map_err(write_error)?;
                outcome = corrupt(outcome, &name.path, offset, reason);
            }
        }
    }

    print_summary(out, dir, first_index, next_index, &outcome)?;
    Ok(outcome)
}

/// Keeps the first corruption found, which is the one that stops the log from opening.
fn corrupt(outcome: VerifyOutcome, path: &Path, offset: u64, reason: String) -> VerifyOutcome {
    match outcome {
        VerifyOutcome::Corrupt { .. } => outcome,
        _ => VerifyOutcome::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        },
    }
}

fn print_segment(
    out: &mut impl Write,
    file_name: &str,
    file_len: usize,
    scan: &SegmentScan,
) -> Result<(), StorageError> {
    let data_bytes = scan.valid_end - segment::SEGMENT_HEADER_LEN as u64;
    if scan.records.is_empty() {
        return writeln!(
            out,
            "  {file_name}: {file_len} bytes, empty (next index {})",
            scan.first_index
        )
        .map_err(write_error);
    }
    let first_term = scan.records[0].term;
    let last_term = scan.records[scan.records.len() - 1].term;
    writeln!(
        out,
        "  {file_name}: {file_len} bytes, {} entries, indexes {}..={}, terms {first_term}..={last_term}, {data_bytes} bytes of records",
        scan.records.len(),
        scan.first_index,
        scan.last_index(),
    )
    .map_err(write_error)
}

fn print_summary(
    out: &mut impl Write,
    dir: &Path,
    first_index: Option<u64>,
    next_index: Option<u64>,
    outcome: &VerifyOutcome,
) -> Result<(), StorageError> {
    match (first_index, next_index) {
        (Some(first), Some(next)) if next > first => {
            writeln!(out, "first index {first}, last index {}", next - 1).map_err(write_error)?
        }
        _ => writeln!(out, "no entries").map_err(write_error)?,
    }
    if let Some(state) = read_hard_state(dir) {
        let vote = state
            .voted_for
            .map_or("none".to_string(), |id| id.to_string());
        writeln!(out, "hard state: term {}, voted for {vote}", state.term).map_err(write_error)?;
    }
    let verdict = match outcome {
        VerifyOutcome::Healthy => "healthy".to_string(),
        VerifyOutcome::TornTail {
            path,
            offset,
            dropped_bytes,
        } => format!(
            "torn tail in {} at offset {offset} ({dropped_bytes} bytes); the log opens and cuts it",
            path.display()
        ),
        VerifyOutcome::Corrupt {
            path,
            offset,
            reason,
        } => format!(
            "CORRUPT: {} at offset {offset}: {reason}; the log will not open without repair",
            path.display()
        ),
    };
    writeln!(out, "result: {verdict}").map_err(write_error)
}

/// Number of payload bytes `dump` prints per entry, as hex.
pub const DUMP_PAYLOAD_PREVIEW: usize = 32;

/// Prints the valid entries of `dir` starting at index `from` (default: the first), at most
/// `count` of them (default: all), one per line: index, term, payload length, CRC and the first
/// `DUMP_PAYLOAD_PREVIEW` payload bytes in hex. Stops at the first invalid record and prints a line naming it.
/// Returns the number of entries printed.
pub fn dump(
    dir: &Path,
    from: Option<u64>,
    count: Option<u64>,
    out: &mut impl Write,
) -> Result<u64, StorageError> {
    let names = segment::list_segments(dir, false)?;
    let from = from.unwrap_or(0);
    let limit = count.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut buf = Vec::new();

    for (position, name) in names.iter().enumerate() {
        if printed >= limit {
            break;
        }
        // Skip segments that end before `from` without reading them.
        if let Some(next) = names.get(position + 1) {
            if next.first_index <= from {
                continue;
            }
        }

        segment::read_whole_file(&name.path, &mut buf)?;
        let scan = match segment::scan_segment(&buf) {
            Ok(scan) => scan,
            Err(reason) => {
                writeln!(
                    out,
                    "# {}: invalid header: {reason}; stopping",
                    name.path.display()
                )
                .map_err(write_error)?;
                break;
            }
        };
        for (slot, loc) in scan.records.iter().enumerate() {
            let index = scan.first_index + slot as u64;
            if index < from {
                continue;
            }
            if printed >= limit {
                break;
            }
            let bytes = &buf[loc.offset as usize..(loc.offset + loc.len as u64) as usize];
            let (header, payload) = record::decode(bytes).expect("scan validated this record");
            let preview: String = payload
                .iter()
                .take(DUMP_PAYLOAD_PREVIEW)
                .map(|b| format!("{b:02x}"))
                .collect();
            let ellipsis = if payload.len() > DUMP_PAYLOAD_PREVIEW {
                "..."
            } else {
                ""
            };
            writeln!(
                out,
                "index={index} term={} len={} crc={:#010x} payload={preview}{ellipsis}",
                header.term,
                payload.len(),
                header.crc
            )
            .map_err(write_error)?;
            printed += 1;
        }
        let problem = match scan.tail {
            Tail::Clean => continue,
            Tail::Torn { problem, .. } => format!("torn tail: {problem}"),
            Tail::Corrupt { reason, .. } => reason,
        };
        writeln!(
            out,
            "# {} at offset {}: {problem}; stopping",
            name.path.display(),
            scan.valid_end
        )
        .map_err(write_error)?;
        break;
    }
    Ok(printed)
}
