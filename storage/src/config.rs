//! Log configuration: backend choice, segment geometry, sync policy and repair.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::segment::SEGMENT_HEADER_LEN;
use crate::StorageError;

/// Default segment file size: 32 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 32 * 1024 * 1024;
/// Default maximum number of entries per segment.
pub const DEFAULT_MAX_ENTRIES_PER_SEGMENT: u64 = 1 << 20;
/// Smallest accepted segment size in bytes.
pub const MIN_SEGMENT_SIZE: u64 = 128;

/// When appended entries are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Sync once per `append` call before it returns (group commit).
    Batch,
    /// Sync on the first append after the interval has elapsed since the last sync. The caller
    /// also calls `sync` when `Log::sync_deadline` passes, so idle periods are covered.
    Interval(Duration),
    /// Sync only on explicit `sync` calls, segment rolls and truncations.
    Never,
}

impl FromStr for SyncPolicy {
    type Err = StorageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            StorageError::InvalidConfig(format!(
                "invalid sync policy {text:?}: {why}; expected batch, never or interval:<ms> \
                 (for example interval:10)"
            ))
        };

        match text {
            "batch" => Ok(SyncPolicy::Batch),
            "never" => Ok(SyncPolicy::Never),
            _ => {
                let Some(millis) = text.strip_prefix("interval:") else {
                    return Err(invalid("unknown policy"));
                };
                let millis: u64 = millis
                    .parse()
                    .map_err(|_| invalid("the interval is not a whole number of milliseconds"))?;
                if millis == 0 {
                    return Err(invalid(
                        "the interval must be at least 1 ms; use batch to sync every append",
                    ));
                }
                Ok(SyncPolicy::Interval(Duration::from_millis(millis)))
            }
        }
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Batch => write!(f, "batch"),
            SyncPolicy::Never => write!(f, "never"),
            SyncPolicy::Interval(interval) => write!(f, "interval:{}", interval.as_millis()),
        }
    }
}

/// Storage backend of the log and the metadata store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Entries in memory only. Nothing survives a restart; the ceiling to compare against.
    Memory,
    /// Segments mapped with mmap; writes are memory copies, syncs are msync.
    Mmap,
    /// Segments written with pwrite through the page cache; syncs are fdatasync.
    File,
    /// Segments written with O_DIRECT through io_uring (glommio DMA files); syncs are
    /// fdatasync through io_uring. The log must be opened and used on a glommio executor.
    Dma,
}

impl FromStr for Backend {
    type Err = StorageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "memory" => Ok(Backend::Memory),
            "mmap" => Ok(Backend::Mmap),
            "file" => Ok(Backend::File),
            "dma" => Ok(Backend::Dma),
            _ => Err(StorageError::InvalidConfig(format!(
                "unknown storage backend {text:?}; expected memory, mmap, file or dma"
            ))),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Backend::Memory => "memory",
            Backend::Mmap => "mmap",
            Backend::File => "file",
            Backend::Dma => "dma",
        };
        f.write_str(name)
    }
}

/// Settings of one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub backend: Backend,
    /// Size in bytes each segment file is preallocated to. A record larger than this gets a
    /// segment of its own, sized to fit.
    pub segment_size: u64,
    /// Number of entries after which a segment is rolled even if it has space left.
    pub max_entries_per_segment: u64,
    pub sync: SyncPolicy,
    /// Truncate the log at the first invalid record before the tail instead of refusing to
    /// open. Entries after that point are deleted, including acknowledged ones.
    pub repair: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            backend: Backend::Mmap,
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_entries_per_segment: DEFAULT_MAX_ENTRIES_PER_SEGMENT,
            sync: SyncPolicy::Batch,
            repair: false,
        }
    }
}

impl LogConfig {
    /// Checks the values that would make the log unusable.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.segment_size < MIN_SEGMENT_SIZE {
            return Err(StorageError::InvalidConfig(format!(
                "segment size {} bytes is below the minimum of {MIN_SEGMENT_SIZE} bytes",
                self.segment_size
            )));
        }
        debug_assert!(MIN_SEGMENT_SIZE > SEGMENT_HEADER_LEN as u64);
        if self.max_entries_per_segment == 0 {
            return Err(StorageError::InvalidConfig(
                "max_entries_per_segment is 0; it must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policy_parses() {
        assert_eq!("batch".parse::<SyncPolicy>().unwrap(), SyncPolicy::Batch);
        assert_eq!("never".parse::<SyncPolicy>().unwrap(), SyncPolicy::Never);
        assert_eq!(
            "interval:25".parse::<SyncPolicy>().unwrap(),
            SyncPolicy::Interval(Duration::from_millis(25))
        );
    }

    #[test]
    fn sync_policy_rejects_bad_values() {
        for text in [
            "",
            "Batch",
            "interval",
            "interval:",
            "interval:x",
            "interval:0",
            "always",
        ] {
            let error = text.parse::<SyncPolicy>().unwrap_err().to_string();
            assert!(error.contains("interval:<ms>"), "{text:?}: {error}");
        }
    }

    #[test]
    fn sync_policy_display_roundtrips() {
        for policy in [
            SyncPolicy::Batch,
            SyncPolicy::Never,
            SyncPolicy::Interval(Duration::from_millis(7)),
        ] {
            assert_eq!(policy.to_string().parse::<SyncPolicy>().unwrap(), policy);
        }
    }

    #[test]
    fn backend_parses() {
        assert_eq!("memory".parse::<Backend>().unwrap(), Backend::Memory);
        assert_eq!("mmap".parse::<Backend>().unwrap(), Backend::Mmap);
        assert_eq!("file".parse::<Backend>().unwrap(), Backend::File);
        assert_eq!("dma".parse::<Backend>().unwrap(), Backend::Dma);
        assert_eq!(Backend::Dma.to_string(), "dma");
        let error = "disk".parse::<Backend>().unwrap_err().to_string();
        assert!(error.contains("\"disk\""), "{error}");
    }

    #[test]
    fn config_rejects_tiny_segments() {
        let config = LogConfig {
            segment_size: 16,
            ..LogConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
