//! Tests specific to the `dma` backend: directories shared with the other disk backends, the
//! rewrite of the partly filled tail block, and file systems without O_DIRECT.
//!
//! The conformance and crash suites also run for `dma`. Every test here needs its temporary
//! directory (`TMPDIR`, default /tmp) on a file system with O_DIRECT, such as ext4 or XFS.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use ringraft_storage::record::RECORD_HEADER_LEN;
use ringraft_storage::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use ringraft_storage::{open_log, Backend, Entry, LogConfig, LogStore, StorageError};

fn config(backend: Backend) -> LogConfig {
    small_config(backend)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "log"))
        .collect();
    paths.sort();
    paths
}

/// Appends `entries` in batches of `batch` entries.
async fn append_all(log: &mut ringraft_storage::Log, entries: &[Entry], batch: usize) {
    for chunk in entries.chunks(batch) {
        log.append(chunk).await.unwrap();
    }
}

/// Writes a log with `writer`, then reopens it with each backend in `readers` in turn. Each
/// reader checks everything written so far, truncates a few entries and appends more, so the
/// next backend reads a tail that another backend wrote.
async fn hand_over(writer: Backend, readers: &[Backend]) {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = entries(1, 150, 1, 45);
    let mut log = open(dir.path(), &config(writer)).await;
    append_all(&mut log, &expected, 11).await;
    drop(log);
    assert!(segment_files(dir.path()).len() >= 3, "several segments");

    for (round, backend) in readers.iter().enumerate() {
        let context = format!("{writer} then {backend}");
        let mut log = open_log(dir.path(), &config(*backend))
            .await
            .unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
        assert_log_matches(&log, &expected).await;

        let from = log.last_index() - 4;
        log.truncate_suffix(from).await.unwrap();
        expected.truncate((from - 1) as usize);
        let more = entries(from, 30, 2 + round as u64, 70);
        append_all(&mut log, &more, 7).await;
        expected.extend(more);
        assert_log_matches(&log, &expected).await;
    }

    let log = open(dir.path(), &config(writer)).await;
    assert_log_matches(&log, &expected).await;
}

#[test]
fn dma_log_opens_with_mmap_and_file() {
    run(
        Backend::Dma,
        hand_over(Backend::Dma, &[Backend::Mmap, Backend::File]),
    );
}

#[test]
fn mmap_and_file_logs_open_with_dma() {
    run(
        Backend::Dma,
        hand_over(Backend::Mmap, &[Backend::Dma, Backend::File, Backend::Dma]),
    );
    run(Backend::Dma, hand_over(Backend::File, &[Backend::Dma]));
}

/// Applies the same appends, truncation and compaction to a log of `backend` in `dir`.
async fn write_reference_log(dir: &Path, backend: Backend) {
    let config = LogConfig {
        segment_size: 10_000,
        ..config(backend)
    };
    let mut log = open(dir, &config).await;
    let mut next = 1;
    for (round, batch) in [1usize, 3, 40, 1, 7, 120, 2, 64].iter().enumerate() {
        let batch_entries = entries(next, *batch as u64, 1, 17 + round * 13);
        log.append(&batch_entries).await.unwrap();
        next += *batch as u64;
    }
    log.truncate_suffix(next - 50).await.unwrap();
    next -= 50;
    log.append(&entries(next, 90, 2, 33)).await.unwrap();
    log.compact_prefix(60).await.unwrap();
}

#[test]
fn dma_segments_match_file_segments() {
    let file_dir = tempfile::tempdir().unwrap();
    let dma_dir = tempfile::tempdir().unwrap();
    run(
        Backend::File,
        write_reference_log(file_dir.path(), Backend::File),
    );
    run(
        Backend::Dma,
        write_reference_log(dma_dir.path(), Backend::Dma),
    );

    let file_segments = segment_files(file_dir.path());
    let dma_segments = segment_files(dma_dir.path());
    let names = |paths: &[PathBuf]| -> Vec<_> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&dma_segments), names(&file_segments), "segment names");

    for (file_path, dma_path) in file_segments.iter().zip(&dma_segments) {
        let file_bytes = fs::read(file_path).unwrap();
        let dma_bytes = fs::read(dma_path).unwrap();
        let context = dma_path.display();
        assert!(dma_bytes.len() >= file_bytes.len(), "{context}: length");
        assert!(
            dma_bytes[..file_bytes.len()] == file_bytes[..],
            "{context}: content differs from the file backend's"
        );

        // Writing the last block rounds the file up to the O_DIRECT alignment with zeros.
        assert!(
            dma_bytes.len() - file_bytes.len() < 4096,
            "{context}: grew by {} bytes",
            dma_bytes.len() - file_bytes.len()
        );
        assert!(
            dma_bytes[file_bytes.len()..].iter().all(|&b| b == 0),
            "{context}: bytes past the segment size are not zero"
        );
    }
}

/// Appends to a segment whose data ends inside a block, then checks that the rewrite of that
/// block kept the synced bytes, and that a write torn at any 512-byte or 4 KiB boundary of the
/// rewritten range recovers every synced entry and a prefix of the new ones.
async fn tail_block_rewrite(dir: &Path) {
    const PAYLOAD: usize = 27;
    const RECORD: u64 = (RECORD_HEADER_LEN + PAYLOAD) as u64;
    let config = LogConfig {
        segment_size: 64 * 1024,
        ..config(Backend::Dma)
    };
    let synced = entries(1, 40, 1, PAYLOAD);
    let mut log = open(dir, &config).await;
    log.append(&synced).await.unwrap();
    drop(log);

    let segment = dir.join(segment_file_name(1));
    let synced_end = SEGMENT_HEADER_LEN as u64 + 40 * RECORD;
    assert_ne!(
        synced_end % 512,
        0,
        "the synced data must end inside a block"
    );
    let before = fs::read(&segment).unwrap();

    let mut all = synced.clone();
    all.extend(entries(41, 100, 1, PAYLOAD));
    let mut log = open(dir, &config).await;
    log.append(&all[40..]).await.unwrap();
    drop(log);
    let after = fs::read(&segment).unwrap();
    let data_end = SEGMENT_HEADER_LEN as u64 + 140 * RECORD;
    assert!(
        before[..synced_end as usize] == after[..synced_end as usize],
        "the rewrite changed bytes of synced records"
    );

    for sector in [512u64, 4096] {
        let mut tear = synced_end / sector * sector;
        while tear < data_end {
            let torn_dir = tempfile::tempdir().unwrap();
            let mut torn = after[..tear as usize].to_vec();
            torn.extend_from_slice(&before[tear as usize..]);
            fs::write(torn_dir.path().join(segment_file_name(1)), &torn).unwrap();

            let complete = (tear.max(synced_end) - SEGMENT_HEADER_LEN as u64) / RECORD;
            let context = format!("write torn at {tear} ({sector}-byte sectors)");
            let mut log = open_log(torn_dir.path(), &config)
                .await
                .unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
            assert_log_matches(&log, &all[..complete as usize]).await;

            // The next append rewrites the block the tear left partly filled.
            let next = entry(complete + 1, 3, PAYLOAD);
            log.append(std::slice::from_ref(&next)).await.unwrap();
            drop(log);
            let log = open(torn_dir.path(), &config).await;
            let mut expected = all[..complete as usize].to_vec();
            expected.push(next);
            assert_log_matches(&log, &expected).await;
            tear += sector;
        }
    }
}

#[test]
fn tail_block_rewrite_keeps_synced_records() {
    let dir = tempfile::tempdir().unwrap();
    run(Backend::Dma, tail_block_rewrite(dir.path()));
}

/// Appends multi-megabyte batches whose ends fall at odd offsets, across several segments whose
/// size is not a multiple of any block size, and reads them back with every disk backend.
async fn large_batches(dir: &Path) {
    let config = LogConfig {
        segment_size: 3 * 1024 * 1024 + 1000,
        ..config(Backend::Dma)
    };
    let mut expected = Vec::new();
    let mut log = open(dir, &config).await;
    let mut next = 1;
    for (round, count) in [37u64, 90, 3, 64, 128].into_iter().enumerate() {
        let batch = entries(next, count, 1, 24_411 + round * 4_977);
        log.append(&batch).await.unwrap();
        expected.extend(batch);
        next += count;
    }
    assert_log_matches(&log, &expected).await;
    drop(log);
    assert!(segment_files(dir).len() >= 3, "several segments");

    for backend in [Backend::Mmap, Backend::File, Backend::Dma] {
        let log = open_log(
            dir,
            &LogConfig {
                backend,
                ..config.clone()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("reopen with {backend}: {e}"));
        assert_log_matches(&log, &expected).await;
    }
}

#[test]
fn large_batches_read_back_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    run(Backend::Dma, large_batches(dir.path()));
}

/// Fills a segment up to its last byte and checks that the write covered whole file system
/// blocks: the file grows to the next multiple of `st_blksize`, with zeros.
async fn fill_segment_to_end(dir: &Path, block: u64) {
    let segment_size = 3 * 4096 + 100;
    let config = LogConfig {
        segment_size,
        ..config(Backend::Dma)
    };
    let payload_len = segment_size as usize - SEGMENT_HEADER_LEN - RECORD_HEADER_LEN;
    let first = entries(1, 1, 1, payload_len);
    let mut log = open(dir, &config).await;
    log.append(&first).await.unwrap();
    drop(log);

    let bytes = fs::read(dir.join(segment_file_name(1))).unwrap();
    assert_eq!(
        bytes.len() as u64,
        segment_size.next_multiple_of(block),
        "segment length after writing its last byte"
    );
    assert!(
        bytes[segment_size as usize..].iter().all(|&b| b == 0),
        "bytes past the segment size are not zero"
    );

    let log = open_log(
        dir,
        &LogConfig {
            backend: Backend::Mmap,
            ..config
        },
    )
    .await
    .unwrap();
    assert_log_matches(&log, &first).await;
}

#[test]
fn writes_cover_whole_file_system_blocks() {
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let block = fs::metadata(dir.path()).unwrap().blksize();
    if !block.is_power_of_two() || !(512..=64 * 1024).contains(&block) {
        eprintln!("skipped: st_blksize {block} is outside the range the dma backend aligns to");
        return;
    }
    run(Backend::Dma, fill_segment_to_end(dir.path(), block));
}

/// Returns whether `path` is the mount point of a tmpfs, from /proc/mounts.
fn is_tmpfs_mount(path: &str) -> bool {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 2 && fields[1] == path && fields[2] == "tmpfs"
    })
}

#[test]
fn tmpfs_is_rejected_with_advice() {
    if !is_tmpfs_mount("/dev/shm") {
        eprintln!("skipped: /dev/shm is not a tmpfs mount on this machine");
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let result = run(Backend::Dma, open_log(dir.path(), &config(Backend::Dma)));
    let error = result.err().expect("opening a dma log on tmpfs must fail");
    assert!(
        matches!(error, StorageError::DirectIoUnsupported { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("O_DIRECT"), "{message}");
    assert!(message.contains("file or mmap backend"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        segment_files(dir.path()).is_empty(),
        "no segment may be created before the check"
    );

    // The same directory works with a backend that does not need O_DIRECT.
    let mut log = open_log_or_panic(dir.path(), Backend::File);
    run(Backend::File, log.append(&entries(1, 3, 1, 8))).unwrap();
}

fn open_log_or_panic(dir: &Path, backend: Backend) -> ringraft_storage::Log {
    run(backend, open_log(dir, &config(backend)))
        .unwrap_or_else(|e| panic!("open {backend} log in {}: {e}", dir.display()))
}
