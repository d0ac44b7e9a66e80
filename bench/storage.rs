//! Criterion benchmarks of the storage backends.
//!
//! Groups:
//! - `append`: append throughput by entry size (64 B, 1 KiB, 16 KiB) and batch size (1, 16,
//!   256) with `SyncPolicy::Never`, so the figure is the cost of framing and copying alone.
//! - `append_sync`: append plus sync latency under `SyncPolicy::Batch` for 64-byte entries.
//!   One iteration is one group commit, so iterations per second compare directly with the
//!   disk's fdatasync rate.
//! - `sequential_read`: `read_range` over 16 MiB of 1 KiB entries in 1 MiB steps.
//! - `recovery`: `open_log` on 64 MiB of 1 KiB entries, reported in bytes of log per second.
//!   The files are in the page cache, so this measures scanning and CRC checking, not the disk.
//!
//! Logs live in a temporary directory under `RINGRAFT_BENCH_DIR` (default: the system temporary
//! directory), so point it at the disk you want to measure. Run with
//! `cargo bench --bench storage`, or `cargo bench --bench storage -- append_sync` for one group.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_lite::future::block_on;
use ringraft_storage::{open_log, Backend, Entry, Log, LogConfig, LogStore, SyncPolicy};

const BACKENDS: [Backend; 3] = [Backend::Memory, Backend::Mmap, Backend::File];

/// Log bytes kept before the append benchmarks drop the prefix, so they do not fill the disk.
const RETAINED_BYTES: u64 = 64 * 1024 * 1024;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("RINGRAFT_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(PathBuf::from(base))
            .expect("create directory under RINGRAFT_BENCH_DIR"),
        None => tempfile::tempdir().expect("create temporary directory"),
    }
}

fn config(backend: Backend, sync: SyncPolicy) -> LogConfig {
    LogConfig {
        backend,
        sync,
        ..LogConfig::default()
    }
}

fn batch(first_index: u64, count: usize, payload_len: usize) -> Vec<Entry> {
    (0..count as u64)
        .map(|offset| Entry {
            index: first_index + offset,
            term: 1,
            payload: vec![0x5a; payload_len],
        })
        .collect()
}

/// Appends `iters` batches and returns the time spent in `append` only; dropping old segments
/// happens outside the timed section.
fn timed_appends(log: &mut Log, iters: u64, count: usize, payload_len: usize) -> Duration {
    let mut template = batch(1, count, payload_len);
    let retained_entries = RETAINED_BYTES / (payload_len as u64 + 28);
    let mut elapsed = Duration::ZERO;

    for _ in 0..iters {
        let first = log.last_index() + 1;
        for (offset, entry) in template.iter_mut().enumerate() {
            entry.index = first + offset as u64;
        }

        let start = Instant::now();
        block_on(log.append(&template)).expect("append");
        elapsed += start.elapsed();

        if log.last_index() - log.first_index() > retained_entries {
            let upto = log.last_index() - retained_entries / 2;
            block_on(log.compact_prefix(upto)).expect("compact_prefix");
        }
    }
    elapsed
}

fn append_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    for backend in BACKENDS {
        for payload_len in [64usize, 1024, 16 * 1024] {
            for count in [1usize, 16, 256] {
                let dir = bench_dir();
                let mut log = block_on(open_log(dir.path(), &config(backend, SyncPolicy::Never)))
                    .expect("open log");
                group.throughput(Throughput::Bytes((payload_len * count) as u64));
                let id =
                    BenchmarkId::new(backend.to_string(), format!("{payload_len}B/batch{count}"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| timed_appends(&mut log, iters, count, payload_len))
                });
            }
        }
    }
    group.finish();
}

fn append_sync_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_sync");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    for backend in [Backend::Mmap, Backend::File] {
        for count in [1usize, 16, 256] {
            let dir = bench_dir();
            let mut log = block_on(open_log(dir.path(), &config(backend, SyncPolicy::Batch)))
                .expect("open log");
            group.throughput(Throughput::Elements(count as u64));
            let id = BenchmarkId::new(backend.to_string(), format!("64B/batch{count}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| timed_appends(&mut log, iters, count, 64))
            });
        }
    }
    group.finish();
}

/// Fills a log in `dir` with `total_bytes` of 1 KiB entries and closes it.
fn fill(dir: &std::path::Path, backend: Backend, total_bytes: u64) -> u64 {
    let mut log = block_on(open_log(dir, &config(backend, SyncPolicy::Never))).expect("open log");
    let count = total_bytes / 1024;
    for chunk_start in (1..=count).step_by(256) {
        let len = 256.min(count + 1 - chunk_start) as usize;
        block_on(log.append(&batch(chunk_start, len, 1024))).expect("append");
    }
    block_on(log.sync()).expect("sync");
    count
}

fn sequential_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("sequential_read");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let total_bytes = 16 * 1024 * 1024;

    for backend in BACKENDS {
        let dir = bench_dir();
        let log = if backend == Backend::Memory {
            let mut log = block_on(open_log(dir.path(), &config(backend, SyncPolicy::Never)))
                .expect("open log");
            for chunk_start in (1..=total_bytes / 1024).step_by(256) {
                block_on(log.append(&batch(chunk_start, 256, 1024))).expect("append");
            }
            log
        } else {
            fill(dir.path(), backend, total_bytes);
            block_on(open_log(dir.path(), &config(backend, SyncPolicy::Never))).expect("open log")
        };

        group.throughput(Throughput::Bytes(total_bytes));
        group.bench_function(BenchmarkId::new(backend.to_string(), "1KiB"), |b| {
            b.iter(|| {
                let mut next = log.first_index();
                let mut bytes = 0usize;
                while next <= log.last_index() {
                    let entries = block_on(log.read_range(next, log.last_index() + 1, 1024 * 1024))
                        .expect("read_range");
                    next += entries.len() as u64;
                    bytes += entries
                        .iter()
                        .map(|entry| entry.payload.len())
                        .sum::<usize>();
                }
                bytes
            })
        });
    }
    group.finish();
}

fn recovery_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("recovery");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let total_bytes = 64 * 1024 * 1024;

    for backend in [Backend::Mmap, Backend::File] {
        let dir = bench_dir();
        let count = fill(dir.path(), backend, total_bytes);
        group.throughput(Throughput::Bytes(count * (1024 + 28)));
        group.bench_function(BenchmarkId::new(backend.to_string(), "64MiB"), |b| {
            b.iter(|| {
                let log = block_on(open_log(dir.path(), &config(backend, SyncPolicy::Never)))
                    .expect("open log");
                assert_eq!(log.last_index(), count);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    append_throughput,
    append_sync_latency,
    sequential_read,
    recovery_scan
);
criterion_main!(benches);
