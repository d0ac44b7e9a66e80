//! The process-wide I/O counters move with the writes and syncs a log really does.

use futures_lite::future::block_on;
use ringraft_storage::{io_counters, open_log, Backend, Entry, LogConfig, LogStore, SyncPolicy};

fn entries(first: u64, count: u64) -> Vec<Entry> {
    (first..first + count)
        .map(|index| Entry {
            index,
            term: 1,
            payload: vec![7; 100],
        })
        .collect()
}

#[test]
fn appends_count_syncs_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        backend: Backend::File,
        sync: SyncPolicy::Batch,
        ..LogConfig::default()
    };
    let before_open = io_counters();
    let mut log = block_on(open_log(dir.path(), &config)).unwrap();
    let opened = io_counters();
    // Creating the first segment syncs the new file and the directory.
    assert!(
        opened.metadata_syncs > before_open.metadata_syncs,
        "{opened:?}"
    );

    for batch in 0..5 {
        block_on(log.append(&entries(1 + batch * 10, 10))).unwrap();
    }
    let appended = io_counters();

    // Other tests of this binary may run at the same time, so the counters can only be
    // checked from below.
    assert!(
        appended.data_syncs >= opened.data_syncs + 5,
        "{opened:?} -> {appended:?}"
    );
    assert!(
        appended.bytes_written >= opened.bytes_written + 50 * 100,
        "{opened:?} -> {appended:?}"
    );
    assert_eq!(
        appended.syncs(),
        appended.data_syncs + appended.metadata_syncs
    );
}
