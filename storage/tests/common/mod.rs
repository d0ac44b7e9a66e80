//! Helpers shared by the storage integration tests.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::future::Future;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringraft_storage::{open_log, Backend, Entry, Log, LogConfig, LogStore, SyncPolicy};

/// Runs a storage future to completion. The mmap, file and memory backends never suspend, so
/// a plain block_on is enough for them. The dma backend needs the io_uring reactor of a glommio
/// executor, so its cases run on a fresh `LocalExecutor` on the test thread.
///
/// NOTE: glommio 0.9 can park forever when its preemption timer fires before it has run a
/// runnable task queue (`run_task_queues` returns false after a preemption, and the executor
/// parks with no wakeup pending). Test bodies do long synchronous file work between awaits, so
/// under load they hit this. The one-hour timer keeps the tests away from preemption.
pub fn run<F: Future>(backend: Backend, future: F) -> F::Output {
    if backend == Backend::Dma {
        glommio::LocalExecutorBuilder::default()
            .preempt_timer(std::time::Duration::from_secs(3600))
            .make()
            .expect("create a glommio executor for the dma backend")
            .run(future)
    } else {
        futures_lite::future::block_on(future)
    }
}

/// Configuration with small segments so tests cross segment boundaries quickly.
pub fn small_config(backend: Backend) -> LogConfig {
    LogConfig {
        backend,
        segment_size: 4096,
        max_entries_per_segment: 1 << 20,
        sync: SyncPolicy::Batch,
        repair: false,
    }
}

/// Payload derived from index and term so every entry's content can be checked after reads.
pub fn payload(index: u64, term: u64, len: usize) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ term.rotate_left(17);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        index,
        term,
        payload: payload(index, term, len),
    }
}

/// Entries `first..first + count` of one term with `len`-byte payloads.
pub fn entries(first: u64, count: u64, term: u64, len: usize) -> Vec<Entry> {
    (first..first + count)
        .map(|index| entry(index, term, len))
        .collect()
}

pub async fn open(dir: &Path, config: &LogConfig) -> Log {
    open_log(dir, config)
        .await
        .unwrap_or_else(|e| panic!("open {} failed: {e}", dir.display()))
}

/// Checks that `log` contains exactly `expected`, through every read path.
pub async fn assert_log_matches(log: &Log, expected: &[Entry]) {
    let Some(first) = expected.first() else {
        assert_eq!(
            log.last_index() + 1,
            log.first_index(),
            "log should be empty"
        );
        return;
    };
    let last = expected.last().unwrap();
    assert_eq!(log.first_index(), first.index, "first_index");
    assert_eq!(log.last_index(), last.index, "last_index");
    assert_eq!(log.last_term(), last.term, "last_term");

    for entry in expected {
        assert_eq!(
            log.term(entry.index),
            Some(entry.term),
            "term({})",
            entry.index
        );
        let read = log.read(entry.index).await.unwrap();
        assert_eq!(read.as_ref(), Some(entry), "read({})", entry.index);
    }
    let all = log
        .read_range(first.index, last.index + 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), expected.len(), "read_range length");
    assert!(all == expected, "read_range content differs");
}

/// Seed from `RINGRAFT_TEST_SEED` or the clock, printed so a failure can be replayed.
pub fn seeded_rng(test: &str) -> (u64, StdRng) {
    let seed = std::env::var("RINGRAFT_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: seed {seed} (replay with RINGRAFT_TEST_SEED={seed})");
    (seed, StdRng::seed_from_u64(seed))
}

pub fn random_len(rng: &mut StdRng, max: usize) -> usize {
    rng.random_range(0..=max)
}
