//! ringraft-storage: the Raft log and the durable term/vote record of a ringraft node.
//!
//! The log is a directory of preallocated segment files holding CRC-checked records (byte
//! layouts in `record` and `segment`). Four backends sit behind one interface, `LogStore`:
//!
//! - `memory`: entries in a deque, nothing durable; the ceiling for comparisons.
//! - `mmap`: segments mapped with memmap2, appends are memory copies, syncs are msync.
//! - `file`: pwrite through the page cache and fdatasync.
//! - `dma`: O_DIRECT writes, reads and fdatasync through io_uring (glommio DMA files).
//!
//! The interface is asynchronous and batch-at-a-time: the server calls it from glommio
//! executors, and its futures need not be `Send`. The `mmap` and `file` backends complete their
//! futures without suspending, doing their system calls inline (see `disk` for why that is
//! acceptable). The `dma` backend suspends on io_uring completions, so it must run on a glommio
//! executor. The three disk backends share the on-disk format: each opens a directory written
//! by another.
//!
//! Guarantees, for the disk backends:
//! - Under `SyncPolicy::Batch`, entries are durable when `append` returns, with one sync per
//!   call (group commit). `truncate_suffix` and `compact_prefix` are durable on return under
//!   every policy.
//! - Opening a log cuts a torn tail of the last segment (logged at `warn`) and rejects invalid
//!   data anywhere else with an error naming the file and offset, unless `LogConfig::repair`
//!   is set.
//! - `MetaStore::save` is durable on return and atomic under crashes. Like the log, it goes
//!   through io_uring on `dma` and runs its system calls inline on `mmap` and `file`.

#![allow(async_fn_in_trait)] // LogStore futures are deliberately not Send: glommio is thread-per-core.

mod config;
mod disk;
mod dma;
mod error;
mod io;
mod memory;
mod meta;
pub mod probe;
pub mod record;
pub mod segment;
pub mod stats;
pub mod tool;

use std::path::Path;
use std::time::Instant;

pub use config::{
    Backend, LogConfig, SyncPolicy, DEFAULT_MAX_ENTRIES_PER_SEGMENT, DEFAULT_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
};
pub use disk::LOCK_FILE_NAME;
pub use error::StorageError;
pub use meta::{HardState, MetaStore, HARD_STATE_FILE_NAME};
pub use stats::{io_counters, IoCounters};

use disk::SegmentedLog;
use dma::DmaSegment;
use io::{FileSegment, MmapSegment, SegmentFile};
use memory::MemoryLog;

/// One Raft log entry. The payload is opaque to the storage layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

/// Operations of a Raft log, implemented by every backend.
///
/// Index conventions: an empty log has `last_index() == first_index() - 1` and
/// `last_term() == 0`. A fresh log starts at index 1; an empty log accepts any first index
/// (after `compact_prefix` past the end, for example).
pub trait LogStore {
    /// Appends entries that continue the log: the first has index `last_index() + 1`, or any
    /// index >= 1 if the log is empty. Under `SyncPolicy::Batch` the entries are durable on
    /// return, with one sync for the whole slice.
    async fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Makes everything appended so far durable.
    async fn sync(&mut self) -> Result<(), StorageError>;

    /// Highest index known to be durable. Equals `last_index()` after an append under
    /// `SyncPolicy::Batch`, and lags behind it under the other policies until a sync.
    fn durable_index(&self) -> u64;

    /// Index of the first readable entry.
    fn first_index(&self) -> u64;

    /// Index of the last entry.
    fn last_index(&self) -> u64;

    /// Term of the last entry, 0 for an empty log.
    fn last_term(&self) -> u64;

    /// Term of the entry at `index` from the in-memory index, without I/O.
    fn term(&self, index: u64) -> Option<u64>;

    /// Reads the entry at `index`, `None` if it is outside `first_index()..=last_index()`.
    async fn read(&self, index: u64) -> Result<Option<Entry>, StorageError>;

    /// Reads the entries in `from..to_exclusive` (clamped to the log) until their payloads
    /// would exceed `max_bytes`. Returns at least one entry if any is in the range.
    async fn read_range(
        &self,
        from: u64,
        to_exclusive: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError>;

    /// Removes the entries `from..=last_index()`, durably before returning. Does nothing if
    /// `from > last_index()`; fails if `from < first_index()`.
    async fn truncate_suffix(&mut self, from: u64) -> Result<(), StorageError>;

    /// Drops the entries up to and including `upto`, durably before returning. Disk backends
    /// delete whole segments only, so entries before `upto` in the first kept segment stay
    /// readable and `first_index()` reports where reading starts. If `upto >= last_index()`,
    /// the log becomes empty with `first_index() == upto + 1`.
    async fn compact_prefix(&mut self, upto: u64) -> Result<(), StorageError>;
}

enum Inner {
    Memory(MemoryLog),
    Mmap(SegmentedLog<MmapSegment>),
    File(SegmentedLog<FileSegment>),
    Dma(SegmentedLog<DmaSegment>),
}

/// A Raft log on one of the backends, chosen at open time.
///
/// A struct over an enum rather than `dyn LogStore`, because traits with async methods cannot
/// be used as trait objects.
pub struct Log {
    inner: Inner,
}

/// Opens the log in `dir` (created if missing) with `config`, recovering from a crash.
///
/// The memory backend ignores `dir`. Disk backends take an exclusive lock on `dir` for the
/// lifetime of the `Log`.
pub async fn open_log(dir: &Path, config: &LogConfig) -> Result<Log, StorageError> {
    config.validate()?;
    let inner = match config.backend {
        Backend::Memory => Inner::Memory(MemoryLog::new()),
        Backend::Mmap => Inner::Mmap(SegmentedLog::open(dir, config).await?),
        Backend::File => Inner::File(SegmentedLog::open(dir, config).await?),
        Backend::Dma => Inner::Dma(SegmentedLog::open(dir, config).await?),
    };
    Ok(Log { inner })
}

/// Checks that logs of `backend` can live under `dir` (an existing directory) without opening
/// one. Today that means a file system that performs O_DIRECT for `dma`, and the other
/// backends accept any directory.
///
/// Tools call this before they start anything that would fail later on the same check, such as
/// the server processes of a bench run. The check runs in a scratch subdirectory that it
/// removes again, so `dir` itself is left as it was.
pub fn check_backend_dir(backend: Backend, dir: &Path) -> Result<(), StorageError> {
    let scratch = dir.join(format!(".ringraft-check-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| StorageError::io("create check directory", &scratch, e))?;
    let result = std::fs::File::create(scratch.join(LOCK_FILE_NAME))
        .map_err(|e| StorageError::io("create check file in", &scratch, e))
        .and_then(|_| match backend {
            Backend::Memory => Ok(()),
            Backend::Mmap => MmapSegment::check_dir(&scratch),
            Backend::File => FileSegment::check_dir(&scratch),
            Backend::Dma => DmaSegment::check_dir(&scratch),
        });
    if let Err(error) = std::fs::remove_dir_all(&scratch) {
        tracing::warn!(path = %scratch.display(), %error, "failed to remove check directory");
    }

    // The error names the directory the caller gave, not the scratch directory.
    result.map_err(|error| match error {
        StorageError::DirectIoUnsupported { source, .. } => StorageError::DirectIoUnsupported {
            path: dir.to_path_buf(),
            source,
        },
        other => other,
    })
}

/// Calls the same method on whichever disk backend `inner` holds, or `$memory` for memory.
macro_rules! delegate {
    ($self:expr, $disk:ident => $call:expr, $memory:ident => $memory_call:expr) => {
        match &$self.inner {
            Inner::Memory($memory) => $memory_call,
            Inner::Mmap($disk) => $call,
            Inner::File($disk) => $call,
            Inner::Dma($disk) => $call,
        }
    };
}

macro_rules! delegate_mut {
    ($self:expr, $disk:ident => $call:expr, $memory:ident => $memory_call:expr) => {
        match &mut $self.inner {
            Inner::Memory($memory) => $memory_call,
            Inner::Mmap($disk) => $call,
            Inner::File($disk) => $call,
            Inner::Dma($disk) => $call,
        }
    };
}

impl Log {
    /// Backend this log was opened with.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Memory(_) => Backend::Memory,
            Inner::Mmap(_) => Backend::Mmap,
            Inner::File(_) => Backend::File,
            Inner::Dma(_) => Backend::Dma,
        }
    }

    /// Time by which the caller should call `sync` under `SyncPolicy::Interval`, or `None` if
    /// nothing is waiting for a sync. The log syncs on appends after the interval by itself,
    /// but it has no timer, so an idle log relies on the caller for the last batch.
    pub fn sync_deadline(&self) -> Option<Instant> {
        delegate!(self, log => log.sync_deadline(), _memory => None)
    }
}

impl LogStore for Log {
    async fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        delegate_mut!(self, log => log.append(entries).await, memory => memory.append(entries))
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        delegate_mut!(self, log => log.sync().await, _memory => Ok(()))
    }

    fn durable_index(&self) -> u64 {
        delegate!(self, log => log.durable_index(), memory => memory.last_index())
    }

    fn first_index(&self) -> u64 {
        delegate!(self, log => log.first_index(), memory => memory.first_index())
    }

    fn last_index(&self) -> u64 {
        delegate!(self, log => log.last_index(), memory => memory.last_index())
    }

    fn last_term(&self) -> u64 {
        delegate!(self, log => log.last_term(), memory => memory.last_term())
    }

    fn term(&self, index: u64) -> Option<u64> {
        delegate!(self, log => log.term(index), memory => memory.term(index))
    }

    async fn read(&self, index: u64) -> Result<Option<Entry>, StorageError> {
        delegate!(self, log => log.read(index).await, memory => Ok(memory.read(index)))
    }

    async fn read_range(
        &self,
        from: u64,
        to_exclusive: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        delegate!(
            self,
            log => log.read_range(from, to_exclusive, max_bytes).await,
            memory => Ok(memory.read_range(from, to_exclusive, max_bytes))
        )
    }

    async fn truncate_suffix(&mut self, from: u64) -> Result<(), StorageError> {
        delegate_mut!(self, log => log.truncate_suffix(from).await, memory => memory.truncate_suffix(from))
    }

    async fn compact_prefix(&mut self, upto: u64) -> Result<(), StorageError> {
        delegate_mut!(
            self,
            log => log.compact_prefix(upto).await,
            memory => {
                memory.compact_prefix(upto);
                Ok(())
            }
        )
    }
}
