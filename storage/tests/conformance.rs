//! Conformance suite that every log backend passes.
//!
//! Each case takes a `LogConfig` and is instantiated once per backend by `backend_suite!`.
//! Cases that reopen the log check persistence only for backends that persist.

mod common;

use common::*;
use rand::Rng;
use ringraft_storage::{Backend, Entry, LogConfig, LogStore, StorageError, SyncPolicy};

fn persists(config: &LogConfig) -> bool {
    config.backend != Backend::Memory
}

fn segment_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

async fn fresh_log_is_empty(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &config).await;
    assert_eq!(log.first_index(), 1);
    assert_eq!(log.last_index(), 0);
    assert_eq!(log.last_term(), 0);
    assert_eq!(log.durable_index(), 0);
    assert_eq!(log.term(1), None);
    assert_eq!(log.read(1).await.unwrap(), None);
    assert!(log.read_range(1, 10, usize::MAX).await.unwrap().is_empty());
}

async fn append_then_read(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    let mut expected = entries(1, 10, 1, 40);
    expected.extend(entries(11, 5, 2, 0));
    expected.extend(entries(16, 3, 5, 300));
    for batch in expected.chunks(4) {
        log.append(batch).await.unwrap();
    }
    assert_log_matches(&log, &expected).await;
    assert_eq!(log.durable_index(), 18);
    assert_eq!(log.term(0), None);
    assert_eq!(log.term(19), None);
    assert_eq!(log.read(19).await.unwrap(), None);

    if persists(&config) {
        drop(log);
        let log = open(dir.path(), &config).await;
        assert_log_matches(&log, &expected).await;
        assert_eq!(log.durable_index(), 18);
    }
}

async fn append_rejects_gaps_and_overlaps(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    log.append(&entries(1, 3, 1, 8)).await.unwrap();

    let gap = log.append(&entries(5, 1, 1, 8)).await.unwrap_err();
    assert!(
        matches!(
            gap,
            StorageError::NotContiguous {
                expected: 4,
                got: 5
            }
        ),
        "{gap}"
    );
    let overlap = log.append(&entries(3, 1, 1, 8)).await.unwrap_err();
    assert!(
        matches!(
            overlap,
            StorageError::NotContiguous {
                expected: 4,
                got: 3
            }
        ),
        "{overlap}"
    );
    let inner_gap = vec![entry(4, 1, 8), entry(6, 1, 8)];
    assert!(log.append(&inner_gap).await.is_err());

    assert_eq!(
        log.last_index(),
        3,
        "rejected appends must not change the log"
    );
    log.append(&entries(4, 1, 1, 8)).await.unwrap();
    assert_eq!(log.last_index(), 4);
    log.append(&[]).await.unwrap();
    assert_eq!(log.last_index(), 4);
}

async fn append_rejects_index_zero(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    let error = log.append(&entries(0, 1, 1, 8)).await.unwrap_err();
    assert!(
        matches!(error, StorageError::InvalidIndex { index: 0, .. }),
        "{error}"
    );
}

async fn empty_log_accepts_any_first_index(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    log.append(&entries(100, 3, 4, 16)).await.unwrap();
    assert_eq!(log.first_index(), 100);
    assert_eq!(log.last_index(), 102);
    let expected = entries(100, 3, 4, 16);
    assert_log_matches(&log, &expected).await;
    if persists(&config) {
        drop(log);
        assert_log_matches(&open(dir.path(), &config).await, &expected).await;
    }
}

async fn durable_index_follows_policy(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        sync: SyncPolicy::Never,
        ..config
    };
    let mut log = open(dir.path(), &config).await;
    log.append(&entries(1, 5, 1, 8)).await.unwrap();
    if persists(&config) {
        assert_eq!(
            log.durable_index(),
            0,
            "never policy must not sync on append"
        );
    }
    log.sync().await.unwrap();
    assert_eq!(log.durable_index(), 5);
}

async fn read_range_respects_byte_budget(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    let expected = entries(1, 20, 1, 100);
    log.append(&expected).await.unwrap();

    let one = log.read_range(3, 20, 10).await.unwrap();
    assert_eq!(
        one,
        expected[2..3],
        "an entry larger than the budget is still returned alone"
    );
    let three = log.read_range(3, 20, 300).await.unwrap();
    assert_eq!(three, expected[2..5]);
    let clamped = log.read_range(0, 1000, usize::MAX).await.unwrap();
    assert_eq!(clamped, expected);
    assert!(log.read_range(5, 5, usize::MAX).await.unwrap().is_empty());
    assert!(log.read_range(21, 30, usize::MAX).await.unwrap().is_empty());
}

async fn exact_fill_rolls_boundary_entry(config: LogConfig) {
    // A 32-byte header plus 50 records of 80 bytes fill a 4032-byte segment exactly, so the
    // 51st record must be the first of the next segment.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_size: 32 + 50 * 80,
        ..config
    };
    let mut log = open(dir.path(), &config).await;
    let mut expected = entries(1, 50, 1, 80 - 28);
    log.append(&expected).await.unwrap();
    if persists(&config) {
        assert_eq!(
            segment_count(dir.path()),
            1,
            "50 records fit exactly in one segment"
        );
    }

    expected.extend(entries(51, 1, 1, 80 - 28));
    log.append(&expected[50..]).await.unwrap();
    if persists(&config) {
        assert_eq!(
            segment_count(dir.path()),
            2,
            "the boundary entry starts a new segment"
        );
    }
    assert_log_matches(&log, &expected).await;

    if persists(&config) {
        drop(log);
        let mut log = open(dir.path(), &config).await;
        assert_log_matches(&log, &expected).await;
        log.append(&entries(52, 1, 1, 10)).await.unwrap();
        assert_eq!(log.last_index(), 52);
    }
}

async fn max_entries_rolls_segment(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_entries_per_segment: 7,
        segment_size: 1 << 20,
        ..config
    };
    let mut log = open(dir.path(), &config).await;
    let expected = entries(1, 30, 3, 12);
    log.append(&expected).await.unwrap();
    if persists(&config) {
        assert_eq!(segment_count(dir.path()), 5, "30 entries at 7 per segment");
    }
    assert_log_matches(&log, &expected).await;
    if persists(&config) {
        drop(log);
        assert_log_matches(&open(dir.path(), &config).await, &expected).await;
    }
}

async fn oversized_entry_gets_own_segment(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    let mut expected = entries(1, 2, 1, 100);
    expected.push(entry(3, 1, 10_000));
    expected.push(entry(4, 1, 50));
    log.append(&expected[..2]).await.unwrap();
    log.append(&expected[2..]).await.unwrap();
    assert_log_matches(&log, &expected).await;

    // An oversized first entry of an empty log exercises the roll from an empty segment.
    let dir2 = tempfile::tempdir().unwrap();
    let mut log2 = open(dir2.path(), &config).await;
    let big = vec![entry(1, 1, 9000), entry(2, 1, 9000)];
    log2.append(&big).await.unwrap();
    assert_log_matches(&log2, &big).await;

    if persists(&config) {
        drop(log);
        drop(log2);
        assert_log_matches(&open(dir.path(), &config).await, &expected).await;
        assert_log_matches(&open(dir2.path(), &config).await, &big).await;
    }
}

async fn truncate_suffix_across_segments(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    let mut expected = entries(1, 200, 1, 60);
    log.append(&expected).await.unwrap();

    log.truncate_suffix(201).await.unwrap();
    assert_eq!(log.last_index(), 200, "truncating past the end is a no-op");

    log.truncate_suffix(37).await.unwrap();
    expected.truncate(36);
    assert_log_matches(&log, &expected).await;
    assert_eq!(log.durable_index(), 36);
    assert_eq!(log.term(37), None);

    let replacement = entries(37, 10, 2, 70);
    log.append(&replacement).await.unwrap();
    expected.extend(replacement);
    assert_log_matches(&log, &expected).await;

    if persists(&config) {
        drop(log);
        let log = open(dir.path(), &config).await;
        assert_log_matches(&log, &expected).await;
    }
}

async fn truncate_suffix_to_empty(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    log.append(&entries(1, 100, 1, 60)).await.unwrap();
    log.truncate_suffix(1).await.unwrap();
    assert_eq!(log.last_index(), 0);
    assert_eq!(log.first_index(), 1);
    assert_eq!(log.last_term(), 0);
    let fresh = entries(1, 3, 2, 5);
    log.append(&fresh).await.unwrap();
    assert_log_matches(&log, &fresh).await;
}

async fn truncate_suffix_rejects_compacted_index(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    log.append(&entries(1, 200, 1, 60)).await.unwrap();
    log.compact_prefix(150).await.unwrap();
    let first = log.first_index();
    assert!(first > 1);
    let error = log.truncate_suffix(first - 1).await.unwrap_err();
    assert!(
        matches!(error, StorageError::InvalidIndex { .. }),
        "{error}"
    );
}

async fn compact_prefix_keeps_suffix(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    let all = entries(1, 300, 1, 60);
    log.append(&all).await.unwrap();

    log.compact_prefix(0).await.unwrap();
    assert_eq!(log.first_index(), 1);
    log.compact_prefix(120).await.unwrap();
    let first = log.first_index();
    assert!(
        first <= 121,
        "entries after upto must stay: first_index {first}"
    );
    if persists(&config) {
        assert!(first > 1, "whole segments before upto are dropped");
    }
    assert_eq!(log.term(first - 1), None);
    assert_log_matches(&log, &all[(first - 1) as usize..]).await;

    if persists(&config) {
        drop(log);
        let log = open(dir.path(), &config).await;
        assert_eq!(log.first_index(), first);
        assert_log_matches(&log, &all[(first - 1) as usize..]).await;
    }
}

async fn compact_prefix_past_end_empties_log(config: LogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &config).await;
    log.append(&entries(1, 100, 1, 60)).await.unwrap();
    log.compact_prefix(500).await.unwrap();
    assert_eq!(log.first_index(), 501);
    assert_eq!(log.last_index(), 500);
    assert_eq!(log.last_term(), 0);
    assert_eq!(log.read(50).await.unwrap(), None);

    // The next entry after a snapshot install may start anywhere.
    let after = entries(700, 5, 3, 20);
    log.append(&after).await.unwrap();
    assert_log_matches(&log, &after).await;
    if persists(&config) {
        drop(log);
        assert_log_matches(&open(dir.path(), &config).await, &after).await;
    }
}

async fn second_open_is_locked(config: LogConfig) {
    if !persists(&config) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _log = open(dir.path(), &config).await;
    let error = ringraft_storage::open_log(dir.path(), &config)
        .await
        .err()
        .expect("second open must fail");
    assert!(matches!(error, StorageError::Locked { .. }), "{error}");
}

/// Random appends, truncations, compactions and reopens checked against a plain vector.
async fn random_operations_match_model(config: LogConfig) {
    let (_seed, mut rng) = seeded_rng(&format!(
        "random_operations_match_model[{}]",
        config.backend
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_size: 2048,
        max_entries_per_segment: rng.random_range(3..40),
        ..config
    };
    let mut log = open(dir.path(), &config).await;
    let mut model: Vec<Entry> = Vec::new();
    let mut term = 1;

    for _step in 0..150 {
        let last = log.last_index();
        match rng.random_range(0..10) {
            0..=5 => {
                let count = rng.random_range(1..20);
                let batch: Vec<Entry> = (0..count)
                    .map(|offset| entry(last + 1 + offset, term, random_len(&mut rng, 200)))
                    .collect();
                log.append(&batch).await.unwrap();
                model.extend(batch);
            }
            6 if !model.is_empty() => {
                let from = rng.random_range(log.first_index()..=last);
                log.truncate_suffix(from).await.unwrap();
                model.retain(|entry| entry.index < from);
                term += 1;
            }
            7 if !model.is_empty() => {
                let upto = rng.random_range(log.first_index()..=last);
                log.compact_prefix(upto).await.unwrap();
                let first = log.first_index();
                assert!(first <= upto + 1 || model.last().unwrap().index <= upto);
                model.retain(|entry| entry.index >= first);
            }
            8 if persists(&config) => {
                drop(log);
                log = open(dir.path(), &config).await;
            }
            _ => term += 1,
        }
        if model.is_empty() {
            assert_eq!(log.last_index() + 1, log.first_index());
        } else {
            assert_log_matches(&log, &model).await;
        }
    }
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

macro_rules! all_backends {
    ($($case:ident),* $(,)?) => {
        backend_suite!(memory, ringraft_storage::Backend::Memory, [$($case),*]);
        backend_suite!(mmap, ringraft_storage::Backend::Mmap, [$($case),*]);
        backend_suite!(file, ringraft_storage::Backend::File, [$($case),*]);
        backend_suite!(dma, ringraft_storage::Backend::Dma, [$($case),*]);
    };
}

all_backends!(
    fresh_log_is_empty,
    append_then_read,
    append_rejects_gaps_and_overlaps,
    append_rejects_index_zero,
    empty_log_accepts_any_first_index,
    durable_index_follows_policy,
    read_range_respects_byte_budget,
    exact_fill_rolls_boundary_entry,
    max_entries_rolls_segment,
    oversized_entry_gets_own_segment,
    truncate_suffix_across_segments,
    truncate_suffix_to_empty,
    truncate_suffix_rejects_compacted_index,
    compact_prefix_keeps_suffix,
    compact_prefix_past_end_empties_log,
    second_open_is_locked,
    random_operations_match_model,
);
