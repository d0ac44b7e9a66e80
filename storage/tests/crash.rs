//! Crash and corruption suite for the disk backends.
//!
//! Each case builds a log, closes it, damages the files the way a crash or a bad disk would,
//! and checks what reopening does. A torn tail of the last segment is cut and everything before
//! it survives. Damage anywhere else is rejected with the file and offset, and repair truncates
//! the log at the damage. Records are 55 bytes (27-byte payloads) so that they straddle 512-byte and
//! 4 KiB boundaries at many different offsets.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use common::*;
use ringraft_storage::record::{self, RECORD_HEADER_LEN};
use ringraft_storage::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use ringraft_storage::tool::{self, VerifyOutcome};
use ringraft_storage::{open_log, Entry, LogConfig, LogStore, StorageError};

const PAYLOAD_LEN: usize = 27;
const RECORD_LEN: u64 = (RECORD_HEADER_LEN + PAYLOAD_LEN) as u64;

/// Builds a log of `count` 55-byte entries appended in batches of 7, and returns the entries.
async fn build_log(dir: &Path, config: &LogConfig, count: u64) -> Vec<Entry> {
    let mut log = open(dir, config).await;
    let all = entries(1, count, 1, PAYLOAD_LEN);
    for batch in all.chunks(7) {
        log.append(batch).await.unwrap();
    }
    all
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "log"))
        .collect();
    paths.sort();
    paths
}

fn first_index_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Offset of the record with `index` in the segment starting at `first_index`, valid because
/// every record in these tests has the same length.
fn record_offset(first_index: u64, index: u64) -> u64 {
    SEGMENT_HEADER_LEN as u64 + (index - first_index) * RECORD_LEN
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

fn zero_range(path: &Path, from: u64, to: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[from as usize..to as usize].fill(0);
    fs::write(path, bytes).unwrap();
}

/// Opens the log, checks it contains exactly `expected`, appends one more entry, reopens and
/// checks the new entry survived.
async fn assert_recovers_to(dir: &Path, config: &LogConfig, expected: &[Entry], context: &str) {
    let mut log = open_log(dir, config)
        .await
        .unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
    assert_eq!(
        log.last_index(),
        expected.len() as u64,
        "{context}: last_index"
    );
    assert_log_matches(&log, expected).await;

    let next = entry(expected.len() as u64 + 1, 9, PAYLOAD_LEN);
    log.append(std::slice::from_ref(&next)).await.unwrap();
    drop(log);

    let log = open_log(dir, config)
        .await
        .unwrap_or_else(|e| panic!("{context}: second open failed: {e}"));
    let mut with_next = expected.to_vec();
    with_next.push(next);
    assert_log_matches(&log, &with_next).await;
}

async fn expect_corrupt(dir: &Path, config: &LogConfig, path: &Path, offset: u64, context: &str) {
    let error = open_log(dir, config)
        .await
        .err()
        .unwrap_or_else(|| panic!("{context}: open should fail"));
    match error {
        StorageError::Corrupt {
            path: got_path,
            offset: got_offset,
            ..
        } => {
            assert_eq!(got_path, path, "{context}: path");
            assert_eq!(got_offset, offset, "{context}: offset");
        }
        other => panic!("{context}: expected a corruption error, got {other}"),
    }
    let message = open_log(dir, config).await.err().unwrap().to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "{context}: message lacks the path: {message}"
    );
    assert!(
        message.contains(&format!("offset {offset}")),
        "{context}: message lacks the offset: {message}"
    );
}

fn verify_outcome(dir: &Path) -> VerifyOutcome {
    let mut report = Vec::new();
    tool::verify(dir, &mut report).unwrap()
}

async fn truncate_at_every_offset_of_tail(config: LogConfig) {
    let original = tempfile::tempdir().unwrap();
    let all = build_log(original.path(), &config, 200).await;
    let last_segment = segment_paths(original.path()).pop().unwrap();
    let first = first_index_of(&last_segment);
    assert!(first > 1, "the test needs several segments");

    let start = record_offset(first, 198);
    let end = record_offset(first, 201);
    for cut in start..=end {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let segment = dir.path().join(segment_file_name(first));
        set_len(&segment, cut);

        let complete = first - 1 + (cut - SEGMENT_HEADER_LEN as u64) / RECORD_LEN;
        assert_recovers_to(
            dir.path(),
            &config,
            &all[..complete as usize],
            &format!("cut at {cut}"),
        )
        .await;
    }
}

async fn zero_tail_from_sector_boundaries(config: LogConfig) {
    let original = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_size: 64 * 1024,
        ..config
    };
    let all = build_log(original.path(), &config, 300).await;
    let segment_name = segment_file_name(1);
    let data_end = record_offset(1, 301);

    for boundary in [512u64, 4096] {
        let mut zero_from = boundary;
        while zero_from < data_end {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(original.path(), dir.path());
            let segment = dir.path().join(&segment_name);
            zero_range(&segment, zero_from, data_end);

            let complete = (zero_from - SEGMENT_HEADER_LEN as u64) / RECORD_LEN;
            let context = format!("zeroed from {zero_from} ({boundary}-byte boundary)");
            assert!(verify_outcome(dir.path()).opens(), "{context}: verify");
            assert_recovers_to(dir.path(), &config, &all[..complete as usize], &context).await;
            zero_from += boundary;
        }
    }
}

async fn flipped_byte_in_last_record_is_cut(config: LogConfig) {
    let original = tempfile::tempdir().unwrap();
    let all = build_log(original.path(), &config, 100).await;
    let last_segment = segment_paths(original.path()).pop().unwrap();
    let first = first_index_of(&last_segment);
    let start = record_offset(first, 100);

    for offset in start..start + RECORD_LEN {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let segment = dir.path().join(last_segment.file_name().unwrap());
        flip_byte(&segment, offset);

        let context = format!("flip at {offset}");
        assert!(
            matches!(verify_outcome(dir.path()), VerifyOutcome::TornTail { offset: o, .. } if o == start),
            "{context}: verify should report a torn tail at {start}"
        );
        assert_recovers_to(dir.path(), &config, &all[..99], &context).await;
    }
}

async fn flipped_byte_in_middle_record_is_rejected(config: LogConfig) {
    let original = tempfile::tempdir().unwrap();
    let all = build_log(original.path(), &config, 200).await;
    let segments = segment_paths(original.path());
    let last_first = first_index_of(segments.last().unwrap());

    // One record in the middle of the last segment, one in the middle of the first segment.
    for (segment_first, index) in [(last_first, last_first + 5), (1, 10)] {
        for byte in [0, 5, 9, 20, 26, 30, 54] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(original.path(), dir.path());
            let segment = dir.path().join(segment_file_name(segment_first));
            let offset = record_offset(segment_first, index);
            flip_byte(&segment, offset + byte);

            let context = format!("flip at byte {byte} of record {index}");
            expect_corrupt(dir.path(), &config, &segment, offset, &context).await;
            match verify_outcome(dir.path()) {
                VerifyOutcome::Corrupt {
                    path, offset: got, ..
                } => {
                    assert_eq!(path, segment, "{context}: verify path");
                    assert_eq!(got, offset, "{context}: verify offset");
                }
                other => panic!("{context}: verify returned {other:?}"),
            }

            let repair = LogConfig {
                repair: true,
                ..config.clone()
            };
            assert_recovers_to(
                dir.path(),
                &repair,
                &all[..(index - 1) as usize],
                &format!("{context}, repaired"),
            )
            .await;
            assert_eq!(
                verify_outcome(dir.path()),
                VerifyOutcome::Healthy,
                "{context}: after repair"
            );
        }
    }
}

async fn torn_tail_of_earlier_segment_is_rejected(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), &config, 200).await;
    let first_segment = dir.path().join(segment_file_name(1));
    let second_first = first_index_of(&segment_paths(dir.path())[1]);
    let last_record = record_offset(1, second_first - 1);
    flip_byte(&first_segment, last_record + 40);
    expect_corrupt(
        dir.path(),
        &config,
        &first_segment,
        last_record,
        "torn end of first segment",
    )
    .await;
}

async fn damaged_segment_header_is_rejected(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), &config, 200).await;
    let second = segment_paths(dir.path())[1].clone();
    flip_byte(&second, 18);
    expect_corrupt(dir.path(), &config, &second, 0, "damaged header").await;
}

/// Finds the last four payload bytes that make the record CRC of (`index`, `term`, payload)
/// equal to `target`. CRC-32 is affine over GF(2) in the message bits, so this solves a 32x32
/// linear system.
fn force_crc(index: u64, term: u64, payload: &mut [u8], target: u32) {
    let len = payload.len();
    let prefix = record::header_prefix(index, term, len);
    let crc_with = |bits: u32, payload: &mut [u8]| {
        payload[len - 4..].copy_from_slice(&bits.to_le_bytes());
        record::checksum(&prefix, payload)
    };

    let base = crc_with(0, payload);
    let columns: Vec<u32> = (0..32)
        .map(|bit| crc_with(1 << bit, payload) ^ base)
        .collect();

    // Row i of the system: which unknown bits flip output bit i, and the wanted value.
    let mut rows: Vec<(u32, u32)> = (0..32)
        .map(|i| {
            let mask = (0..32).fold(0u32, |mask, j| mask | (((columns[j] >> i) & 1) << j));
            (mask, ((target ^ base) >> i) & 1)
        })
        .collect();
    let mut pivot_row = 0;
    let mut pivots = Vec::new();
    for column in 0..32 {
        let Some(found) = (pivot_row..32).find(|&r| rows[r].0 >> column & 1 == 1) else {
            continue;
        };
        rows.swap(pivot_row, found);
        for r in 0..32 {
            if r != pivot_row && rows[r].0 >> column & 1 == 1 {
                rows[r].0 ^= rows[pivot_row].0;
                rows[r].1 ^= rows[pivot_row].1;
            }
        }
        pivots.push((pivot_row, column));
        pivot_row += 1;
    }
    let solution = pivots
        .iter()
        .fold(0u32, |bits, &(row, column)| bits | (rows[row].1 << column));
    assert_eq!(crc_with(solution, payload), target, "CRC forcing failed");
}

async fn record_with_zero_crc_reads_back(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    let mut all = entries(1, 5, 1, PAYLOAD_LEN);
    let mut zero = entry(6, 1, PAYLOAD_LEN);
    force_crc(6, 1, &mut zero.payload, 0);
    all.push(zero);
    log.append(&all).await.unwrap();

    let segment = dir.path().join(segment_file_name(1));
    let bytes = fs::read(&segment).unwrap();
    let crc_at = (record_offset(1, 6) + 24) as usize;
    assert_eq!(
        &bytes[crc_at..crc_at + 4],
        &[0, 0, 0, 0],
        "stored CRC must be zero"
    );
    assert_log_matches(&log, &all).await;
    drop(log);

    // As the last record and then as a middle record.
    assert_recovers_to(dir.path(), &config, &all, "zero CRC as last record").await;
    let log = open(dir.path(), &config).await;
    assert_eq!(log.last_index(), 7);
    assert_eq!(log.read(6).await.unwrap().as_ref(), Some(&all[5]));
    assert_eq!(verify_outcome(dir.path()), VerifyOutcome::Healthy);
}

/// States a crash can leave while `truncate_suffix` removes segments newest first.
async fn torn_multi_segment_truncation(config: LogConfig) {
    let original = tempfile::tempdir().unwrap();
    let all = build_log(original.path(), &config, 300).await;
    let segments = segment_paths(original.path());
    assert!(segments.len() >= 4, "the test needs four or more segments");
    let from = first_index_of(&segments[1]) + 3;

    // Crash after removing the newest k segments, before cutting the kept one.
    for removed in 1..segments.len() - 1 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        for path in segments.iter().rev().take(removed) {
            fs::remove_file(dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let remaining_last = first_index_of(&segments[segments.len() - 1 - removed]);
        let next_first = first_index_of(&segments[segments.len() - removed]);
        assert!(remaining_last < next_first);

        let context = format!("crash after removing {removed} segment(s)");
        let mut log = open_log(dir.path(), &config)
            .await
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_log_matches(&log, &all[..(next_first - 1) as usize]).await;

        // Raft repeats the truncation after the restart.
        log.truncate_suffix(from).await.unwrap();
        drop(log);
        assert_recovers_to(dir.path(), &config, &all[..(from - 1) as usize], &context).await;
    }

    // Removing in the wrong order would leave a gap, which recovery must reject.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(original.path(), dir.path());
    fs::remove_file(dir.path().join(segments[2].file_name().unwrap())).unwrap();
    let after_gap = dir.path().join(segments[3].file_name().unwrap());
    expect_corrupt(dir.path(), &config, &after_gap, 0, "gap between segments").await;
}

async fn recovery_is_idempotent(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let all = build_log(dir.path(), &config, 100).await;
    let last_segment = segment_paths(dir.path()).pop().unwrap();
    let first = first_index_of(&last_segment);
    let torn_at = record_offset(first, 100) + 17;
    zero_range(&last_segment, torn_at, torn_at + 1);
    flip_byte(&last_segment, torn_at + 3);

    for attempt in 0..3 {
        let log = open_log(dir.path(), &config).await.unwrap();
        assert_eq!(log.last_index(), 99, "open {attempt}");
        assert_log_matches(&log, &all[..99]).await;
    }
    assert_eq!(verify_outcome(dir.path()), VerifyOutcome::Healthy);
}

async fn segment_truncated_underneath_is_an_error(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), &config, 50).await;
    let log = open(dir.path(), &config).await;
    let segment = dir.path().join(segment_file_name(1));
    set_len(&segment, record_offset(1, 20));

    let error = log.read(40).await.unwrap_err();
    assert!(
        matches!(error, StorageError::SegmentTruncated { .. }),
        "{error}"
    );
    let error = log.read_range(10, 50, usize::MAX).await.unwrap_err();
    assert!(
        matches!(error, StorageError::SegmentTruncated { .. }),
        "{error}"
    );
    assert_eq!(
        log.read(5).await.unwrap().map(|e| e.index),
        Some(5),
        "records before the cut stay readable"
    );
}

async fn dump_prints_requested_entries(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), &config, 120).await;
    let mut out = Vec::new();
    let printed = tool::dump(dir.path(), Some(70), Some(20), &mut out).unwrap();
    assert_eq!(printed, 20);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "{text}");
    assert!(
        lines[0].starts_with("index=70 term=1 len=27 "),
        "{}",
        lines[0]
    );
    assert!(lines[19].starts_with("index=89 "), "{}", lines[19]);

    let mut all = Vec::new();
    assert_eq!(tool::dump(dir.path(), None, None, &mut all).unwrap(), 120);
}

macro_rules! backend_suite {
    ($module:ident, $backend:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $case() {
                    let config = super::small_config($backend);
                    super::run(config.backend, super::$case(config));
                }
            )*
        }
    };
}

macro_rules! disk_backends {
    ($($case:ident),* $(,)?) => {
        backend_suite!(mmap, ringraft_storage::Backend::Mmap, [$($case),*]);
        backend_suite!(file, ringraft_storage::Backend::File, [$($case),*]);
        backend_suite!(dma, ringraft_storage::Backend::Dma, [$($case),*]);
    };
}

disk_backends!(
    truncate_at_every_offset_of_tail,
    zero_tail_from_sector_boundaries,
    flipped_byte_in_last_record_is_cut,
    flipped_byte_in_middle_record_is_rejected,
    torn_tail_of_earlier_segment_is_rejected,
    damaged_segment_header_is_rejected,
    record_with_zero_crc_reads_back,
    torn_multi_segment_truncation,
    recovery_is_idempotent,
    segment_truncated_underneath_is_an_error,
    dump_prints_requested_entries,
);
