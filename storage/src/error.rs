//! Error type of the storage crate.
//!
//! Variants are grouped by what the caller has to do. `Io` and `Corrupt` need an operator
//! (disk full, bad disk, run `ringraft log verify`). `Poisoned` means the process must restart
//! and recover from disk. The remaining variants are caller bugs or bad configuration.

use std::io;
use std::path::PathBuf;

/// Errors returned by the log, the metadata store and the log tool.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A system call failed on a file or directory.
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A system call failed at a known offset of a file.
    #[error("failed to {op} {path} at offset {offset}: {source}")]
    IoAt {
        op: &'static str,
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },

    /// Invalid data before the tail of the log. The log refuses to open so that no
    /// acknowledged entry is silently dropped.
    #[error(
        "corrupt log data in {path} at offset {offset}: {reason}; inspect it with \
         `ringraft log verify`, or open with repair enabled (`ringraft server --repair-log`) \
         to truncate the log at this offset"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// A segment file became shorter than the record being read, for example because
    /// another process truncated it.
    #[error(
        "segment {path} is {len} bytes long but the record at offset {offset} needs {needed} \
         bytes; another process may have truncated it"
    )]
    SegmentTruncated {
        path: PathBuf,
        len: u64,
        offset: u64,
        needed: u64,
    },

    /// The `dma` backend needs O_DIRECT, and the file system of the log directory rejects it.
    #[error(
        "the dma backend needs O_DIRECT, but the file system of {path} does not support it \
         ({source}); use the file or mmap backend, or put the log on a file system with \
         O_DIRECT support such as ext4 or XFS (tmpfs and some overlay file systems have none)"
    )]
    DirectIoUnsupported {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Another process holds the lock of the log directory.
    #[error("log directory {path} is locked by another process; stop it or use another directory")]
    Locked { path: PathBuf },

    /// An append did not continue the log.
    #[error("append of index {got} does not continue the log: expected index {expected}")]
    NotContiguous { expected: u64, got: u64 },

    /// An index argument is outside what the operation accepts.
    #[error("invalid index {index} for {op}: {reason}")]
    InvalidIndex {
        op: &'static str,
        index: u64,
        reason: String,
    },

    /// An entry payload is larger than the record format can frame.
    #[error("entry {index} has a {len}-byte payload; the maximum is {max} bytes")]
    EntryTooLarge { index: u64, len: usize, max: usize },

    /// An invalid configuration value.
    #[error("invalid storage configuration: {0}")]
    InvalidConfig(String),

    /// An earlier write or sync failed, so the on-disk state is unknown. After a failed
    /// fdatasync the kernel may have dropped the dirty pages, and a retry could then report
    /// data as durable that is not. The only safe continuation is to reopen and recover.
    #[error(
        "log is unusable after an earlier I/O failure ({0}); restart the node to recover from disk"
    )]
    Poisoned(String),
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn io_at(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset: u64,
        source: io::Error,
    ) -> Self {
        StorageError::IoAt {
            op,
            path: path.into(),
            offset,
            source,
        }
    }
}
