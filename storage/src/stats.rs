//! Process-wide counters of the durable I/O this crate issues, for benchmarks and status.
//!
//! The harness compares backends by fsyncs per second and bytes written per committed entry,
//! so the counts must include every flush, not only the group-commit syncs of appends. They are
//! kept per process rather than per `Log`, because some flushes (directory syncs, segment
//! creation, the hard-state file) happen in free functions with no log at hand, and a server
//! process has exactly one log and one hard-state file.
//!
//! Invariants: counters only grow; each is updated once per successful call of the operation
//! it names, with relaxed atomics (they order nothing).
//!
//! What the counters cannot see: the file system's own journal writes and the device's cache
//! flushes. `bytes_written` counts record bytes handed to segment writes. What reaches the disk
//! (page-sized writebacks, rewritten O_DIRECT tail blocks) is larger, so the harness reads that
//! from `/proc/<pid>/io` instead.

use std::sync::atomic::{AtomicU64, Ordering};

static DATA_SYNCS: AtomicU64 = AtomicU64::new(0);
static METADATA_SYNCS: AtomicU64 = AtomicU64::new(0);
static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// fdatasync or msync calls that made log segment data durable.
    pub data_syncs: u64,
    /// fsync calls for everything else: new and cut segments, directories after a create,
    /// rename or removal, and the hard-state file.
    pub metadata_syncs: u64,
    /// Bytes of encoded log records written to segments (before any padding or rewrite).
    pub bytes_written: u64,
}

impl IoCounters {
    /// Counts all flushes, data and metadata.
    pub fn syncs(&self) -> u64 {
        self.data_syncs + self.metadata_syncs
    }
}

/// Reads the counters.
pub fn io_counters() -> IoCounters {
    IoCounters {
        data_syncs: DATA_SYNCS.load(Ordering::Relaxed),
        metadata_syncs: METADATA_SYNCS.load(Ordering::Relaxed),
        bytes_written: BYTES_WRITTEN.load(Ordering::Relaxed),
    }
}

pub(crate) fn count_data_sync() {
    DATA_SYNCS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_metadata_sync() {
    METADATA_SYNCS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_bytes_written(bytes: usize) {
    BYTES_WRITTEN.fetch_add(bytes as u64, Ordering::Relaxed);
}
