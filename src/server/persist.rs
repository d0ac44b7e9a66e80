//! The shard's durable state: the log and the term/vote record, and the mapping between the
//! core's typed entries and the storage crate's opaque records.
//!
//! A stored record's payload is the entry's leader timestamp and payload, encoded with the
//! protocol's body encoding; index and term live in the record header.

use std::path::Path;

use ringraft_protocol::{decode_value, encode_value, EntryPayload, LogEntry, StorageStatus};
use ringraft_storage::{open_log, Entry, Log, LogConfig, LogStore, MetaStore};

use super::args::ShardConfig;
use super::ServerError;
use crate::raft::HardState;

pub struct Durable {
    log: Log,
    meta: MetaStore,
    dir: String,
    fsync: String,
}

/// Durable state a shard recovers on start.
pub struct Recovered {
    pub durable: Durable,
    pub hard_state: HardState,
    pub entries: Vec<LogEntry>,
}

fn storage_error(dir: &Path) -> impl Fn(ringraft_storage::StorageError) -> ServerError + '_ {
    move |source| ServerError::Storage {
        dir: dir.display().to_string(),
        source,
    }
}

/// Open (or create) the data directory and read back everything in it.
pub async fn recover(config: &ShardConfig) -> Result<Recovered, ServerError> {
    let dir = config.data_dir.as_path();
    std::fs::create_dir_all(dir).map_err(|e| {
        ServerError::Config(format!("cannot create --data-dir {}: {e}", dir.display()))
    })?;

    let log_config = LogConfig {
        backend: config.storage,
        segment_size: config.segment_bytes,
        sync: config.fsync,
        repair: config.repair_log,
        ..LogConfig::default()
    };
    let log = open_log(dir, &log_config)
        .await
        .map_err(storage_error(dir))?;
    let meta = MetaStore::open(dir, config.storage).map_err(storage_error(dir))?;
    let stored = meta.load();
    let hard_state = HardState {
        term: stored.term,
        voted_for: stored.voted_for,
    };

    // NOTE: the whole log is decoded into memory because the core keeps it there until
    // snapshots exist. A long-lived node's start-up time and memory grow with its log.
    let mut entries = Vec::new();
    let (first, last) = (log.first_index(), log.last_index());
    let mut next = first;
    while last > 0 && next <= last {
        let batch = log
            .read_range(next, last + 1, 64 << 20)
            .await
            .map_err(storage_error(dir))?;
        if batch.is_empty() {
            break;
        }
        for record in batch {
            next = record.index + 1;
            entries.push(decode_entry(record, dir)?);
        }
    }

    Ok(Recovered {
        durable: Durable {
            log,
            meta,
            dir: dir.display().to_string(),
            fsync: config.fsync.to_string(),
        },
        hard_state,
        entries,
    })
}

fn decode_entry(record: Entry, dir: &Path) -> Result<LogEntry, ServerError> {
    let (timestamp_ms, payload): (u64, EntryPayload) =
        decode_value(&record.payload).map_err(|e| ServerError::CorruptEntry {
            dir: dir.display().to_string(),
            index: record.index,
            reason: e.to_string(),
        })?;
    Ok(LogEntry {
        index: record.index,
        term: record.term,
        timestamp_ms,
        payload,
    })
}

fn encode_entry(entry: &LogEntry) -> Entry {
    let payload = encode_value(&(entry.timestamp_ms, &entry.payload))
        .expect("log entries are plain data and always encode");
    Entry {
        index: entry.index,
        term: entry.term,
        payload,
    }
}

impl Durable {
    /// Returns the backend and the storage crate's process-wide I/O counters, for `Status` replies.
    pub fn storage_status(&self) -> StorageStatus {
        let counters = ringraft_storage::io_counters();
        StorageStatus {
            backend: self.log.backend().to_string(),
            fsync: self.fsync.clone(),
            data_syncs: counters.data_syncs,
            metadata_syncs: counters.metadata_syncs,
            log_bytes_written: counters.bytes_written,
        }
    }

    fn error(&self, source: ringraft_storage::StorageError) -> ServerError {
        ServerError::Storage {
            dir: self.dir.clone(),
            source,
        }
    }

    pub async fn save_hard_state(&mut self, state: &HardState) -> Result<(), ServerError> {
        let stored = ringraft_storage::HardState {
            term: state.term,
            voted_for: state.voted_for,
        };
        self.meta.save(&stored).await.map_err(|e| self.error(e))
    }

    /// Syncs if the `interval:<ms>` policy's deadline has passed. The log has no timer of its
    /// own, so without this the last batch before an idle period would stay unsynced.
    pub async fn sync_if_due(&mut self) -> Result<(), ServerError> {
        match self.log.sync_deadline() {
            Some(deadline) if deadline <= std::time::Instant::now() => {
                self.log.sync().await.map_err(|e| self.error(e))
            }
            _ => Ok(()),
        }
    }

    pub async fn truncate_from(&mut self, index: u64) -> Result<(), ServerError> {
        self.log
            .truncate_suffix(index)
            .await
            .map_err(|e| self.error(e))
    }

    /// Append entries; returns once they are durable as far as the sync policy promises.
    pub async fn append(&mut self, entries: &[LogEntry]) -> Result<(), ServerError> {
        let records: Vec<Entry> = entries.iter().map(encode_entry).collect();
        self.log.append(&records).await.map_err(|e| self.error(e))
    }
}
