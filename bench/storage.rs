//! Criterion benchmarks of the storage backends.
//!
//! Groups:
//! - `append`: append throughput by entry size (64 B, 1 KiB, 16 KiB) and batch size (1, 16,
//!   256) with `SyncPolicy::Never`, so the figure is the cost of framing and copying alone.
//! - `append_sync`: append plus sync latency under `SyncPolicy::Batch` for 64-byte entries.
//!   One iteration is one group commit, so iterations per second compare directly with the
//!   disk's fdatasync rate.
//! - `group_commit`: append plus sync throughput under `SyncPolicy::Batch` for 16 KiB entries in
//!   batches of 1 MiB (64 entries) and 4 MiB (256 entries), reported in payload bytes per
//!   second.
//! - `sequential_read`: `read_range` over 16 MiB of 1 KiB entries in 1 MiB steps.
//! - `recovery`: `open_log` on 64 MiB of 1 KiB entries, reported in bytes of log per second.
//!   For mmap and file the segments are in the page cache, so this measures scanning and CRC
//!   checking. dma reads with O_DIRECT, so its rows include the device reads.
//!
//! The `dma` rows run on a glommio `LocalExecutor` created per benchmark, because the backend's
//! futures wait for io_uring completions.
//! Its `append` rows with `SyncPolicy::Never` still write every batch to the device with
//! O_DIRECT, so `dma/16384B/batch256` compares with the disk's sequential O_DIRECT bandwidth.
//! Three details matter for that comparison:
//! - Every append row also syncs once per 32 MiB segment, because a segment is synced before
//!   the next one is created. On a disk with a volatile write cache
//!   (`/sys/block/<device>/queue/write_cache` reads `write back`), an O_DIRECT write completes
//!   once it reaches that cache, so fio without `--fdatasync` can report several times the
//!   bandwidth that survives a sync.
//! - A log only ever writes into freshly preallocated space, while a `--time_based` fio run
//!   over a smaller file overwrites blocks that are already written.
//! - fio's `--fdatasync=N` counts writes, not bytes.
//!
//! So the matching reference for these rows is one pass over a new file with a sync every
//! 32 MiB: `fio --name=seq --rw=write --direct=1 --ioengine=io_uring --bs=4M --size=1G
//! --fdatasync=8`. For the `group_commit` rows it is the same with the batch size as `--bs`
//! and `--fdatasync=1`.
//!
//! Logs live in a temporary directory under `RINGRAFT_BENCH_DIR` (default: the system temporary
//! directory), so point it at the disk you want to measure. The dma backend needs a file system
//! with O_DIRECT there (not tmpfs). Run with `cargo bench --bench storage`, or
//! `cargo bench --bench storage -- append_sync` for one group.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder};
use ringraft_storage::{open_log, Backend, Entry, Log, LogConfig, LogStore, SyncPolicy};

const BACKENDS: [Backend; 4] = [Backend::Memory, Backend::Mmap, Backend::File, Backend::Dma];
const DISK_BACKENDS: [Backend; 3] = [Backend::Mmap, Backend::File, Backend::Dma];

/// Runs storage futures: on a glommio executor for `dma`, with a plain block_on otherwise
/// (the other backends never suspend).
struct Runner {
    executor: Option<LocalExecutor>,
}

impl Runner {
    fn new(backend: Backend) -> Runner {
        // NOTE: glommio 0.9 can park forever when its preemption timer fires before it has run
        // a runnable task queue. A benchmark has one task, so a one-hour timer costs nothing.
        let executor = (backend == Backend::Dma).then(|| {
            LocalExecutorBuilder::default()
                .preempt_timer(Duration::from_secs(3600))
                .make()
                .expect("create a glommio executor for the dma backend")
        });
        Runner { executor }
    }

    fn run<T>(&self, future: impl Future<Output = T>) -> T {
        match &self.executor {
            Some(executor) => executor.run(future),
            None => futures_lite::future::block_on(future),
        }
    }

    fn open(&self, dir: &std::path::Path, config: &LogConfig) -> Log {
        self.run(open_log(dir, config)).expect("open log")
    }

    /// Drops `log` on the executor, so that glommio closes its files there.
    fn close(&self, log: Log) {
        self.run(async move { drop(log) });
    }
}

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
async fn timed_appends(log: &mut Log, iters: u64, count: usize, payload_len: usize) -> Duration {
    let mut template = batch(1, count, payload_len);
    let retained_entries = RETAINED_BYTES / (payload_len as u64 + 28);
    let mut elapsed = Duration::ZERO;

    for _ in 0..iters {
        let first = log.last_index() + 1;
        for (offset, entry) in template.iter_mut().enumerate() {
            entry.index = first + offset as u64;
        }

        let start = Instant::now();
        log.append(&template).await.expect("append");
        elapsed += start.elapsed();

        if log.last_index() - log.first_index() > retained_entries {
            let upto = log.last_index() - retained_entries / 2;
            log.compact_prefix(upto).await.expect("compact_prefix");
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
                let runner = Runner::new(backend);
                let mut log = runner.open(dir.path(), &config(backend, SyncPolicy::Never));
                group.throughput(Throughput::Bytes((payload_len * count) as u64));
                let id =
                    BenchmarkId::new(backend.to_string(), format!("{payload_len}B/batch{count}"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        runner.run(timed_appends(&mut log, iters, count, payload_len))
                    })
                });
                runner.close(log);
            }
        }
    }
    group.finish();
}

fn group_commit_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let payload_len = 16 * 1024;

    for backend in DISK_BACKENDS {
        for count in [64usize, 256] {
            let dir = bench_dir();
            let runner = Runner::new(backend);
            let mut log = runner.open(dir.path(), &config(backend, SyncPolicy::Batch));
            group.throughput(Throughput::Bytes((payload_len * count) as u64));
            let id = BenchmarkId::new(backend.to_string(), format!("{payload_len}B/batch{count}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    runner.run(timed_appends(&mut log, iters, count, payload_len))
                })
            });
            runner.close(log);
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

    for backend in DISK_BACKENDS {
        for count in [1usize, 16, 256] {
            let dir = bench_dir();
            let runner = Runner::new(backend);
            let mut log = runner.open(dir.path(), &config(backend, SyncPolicy::Batch));
            group.throughput(Throughput::Elements(count as u64));
            let id = BenchmarkId::new(backend.to_string(), format!("64B/batch{count}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| runner.run(timed_appends(&mut log, iters, count, 64)))
            });
            runner.close(log);
        }
    }
    group.finish();
}

/// Fills a log in `dir` with `total_bytes` of 1 KiB entries and closes it.
fn fill(runner: &Runner, dir: &std::path::Path, backend: Backend, total_bytes: u64) -> u64 {
    let mut log = runner.open(dir, &config(backend, SyncPolicy::Never));
    let count = total_bytes / 1024;
    runner.run(async {
        for chunk_start in (1..=count).step_by(256) {
            let len = 256.min(count + 1 - chunk_start) as usize;
            log.append(&batch(chunk_start, len, 1024))
                .await
                .expect("append");
        }
        log.sync().await.expect("sync");
    });
    runner.close(log);
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
        let runner = Runner::new(backend);
        let log = if backend == Backend::Memory {
            let mut log = runner.open(dir.path(), &config(backend, SyncPolicy::Never));
            for chunk_start in (1..=total_bytes / 1024).step_by(256) {
                runner
                    .run(log.append(&batch(chunk_start, 256, 1024)))
                    .expect("append");
            }
            log
        } else {
            fill(&runner, dir.path(), backend, total_bytes);
            runner.open(dir.path(), &config(backend, SyncPolicy::Never))
        };

        group.throughput(Throughput::Bytes(total_bytes));
        group.bench_function(BenchmarkId::new(backend.to_string(), "1KiB"), |b| {
            b.iter(|| runner.run(read_all(&log)))
        });
        runner.close(log);
    }
    group.finish();
}

/// Reads the whole log with `read_range` in 1 MiB steps and returns the payload bytes read.
async fn read_all(log: &Log) -> usize {
    let mut next = log.first_index();
    let mut bytes = 0usize;
    while next <= log.last_index() {
        let entries = log
            .read_range(next, log.last_index() + 1, 1024 * 1024)
            .await
            .expect("read_range");
        next += entries.len() as u64;
        bytes += entries
            .iter()
            .map(|entry| entry.payload.len())
            .sum::<usize>();
    }
    bytes
}

fn recovery_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("recovery");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let total_bytes = 64 * 1024 * 1024;

    for backend in DISK_BACKENDS {
        let dir = bench_dir();
        let runner = Runner::new(backend);
        let count = fill(&runner, dir.path(), backend, total_bytes);
        group.throughput(Throughput::Bytes(count * (1024 + 28)));
        group.bench_function(BenchmarkId::new(backend.to_string(), "64MiB"), |b| {
            b.iter(|| {
                let log = runner.open(dir.path(), &config(backend, SyncPolicy::Never));
                assert_eq!(log.last_index(), count);
                runner.close(log);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    append_throughput,
    append_sync_latency,
    group_commit_throughput,
    sequential_read,
    recovery_scan
);
criterion_main!(benches);
