//! In-memory log: the `memory` backend.
//!
//! Nothing is written to disk and nothing survives a restart. It exists as the ceiling the
//! disk backends are measured against and for tests of code above the log. `durable_index`
//! reports the last index because there is no slower medium to wait for.

use std::collections::VecDeque;

use crate::record::MAX_PAYLOAD_LEN;
use crate::{Entry, StorageError};

/// Log entries held in a deque, with the index of the front entry.
pub(crate) struct MemoryLog {
    entries: VecDeque<Entry>,
    /// Index of `entries[0]`, or of the next append while the log is empty.
    first_index: u64,
}

impl MemoryLog {
    pub(crate) fn new() -> Self {
        MemoryLog {
            entries: VecDeque::new(),
            first_index: 1,
        }
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.first_index
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries.back().map_or(0, |entry| entry.term)
    }

    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        self.get(index).map(|entry| entry.term)
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let slot = index.checked_sub(self.first_index)?;
        self.entries.get(usize::try_from(slot).ok()?)
    }

    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index == 0 {
            return Err(StorageError::InvalidIndex {
                op: "append",
                index: 0,
                reason: "Raft indexes start at 1".to_string(),
            });
        }

        let expected = if self.entries.is_empty() {
            first.index
        } else {
            self.last_index() + 1
        };
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index != expected + offset as u64 {
                return Err(StorageError::NotContiguous {
                    expected: expected + offset as u64,
                    got: entry.index,
                });
            }
            if entry.payload.len() > MAX_PAYLOAD_LEN {
                return Err(StorageError::EntryTooLarge {
                    index: entry.index,
                    len: entry.payload.len(),
                    max: MAX_PAYLOAD_LEN,
                });
            }
        }

        if self.entries.is_empty() {
            self.first_index = first.index;
        }
        self.entries.extend(entries.iter().cloned());
        Ok(())
    }

    pub(crate) fn read(&self, index: u64) -> Option<Entry> {
        self.get(index).cloned()
    }

    pub(crate) fn read_range(&self, from: u64, to_exclusive: u64, max_bytes: usize) -> Vec<Entry> {
        let mut result = Vec::new();
        let mut bytes = 0usize;
        let from = from.max(self.first_index);
        let to_exclusive = to_exclusive.min(self.last_index() + 1);
        for index in from..to_exclusive {
            let entry = self.get(index).expect("index inside the log");
            if !result.is_empty() && bytes + entry.payload.len() > max_bytes {
                break;
            }
            bytes += entry.payload.len();
            result.push(entry.clone());
        }
        result
    }

    pub(crate) fn truncate_suffix(&mut self, from: u64) -> Result<(), StorageError> {
        if from > self.last_index() {
            return Ok(());
        }
        if from < self.first_index {
            return Err(StorageError::InvalidIndex {
                op: "truncate_suffix",
                index: from,
                reason: format!(
                    "entries before the first index {} were compacted and cannot be truncated",
                    self.first_index
                ),
            });
        }
        self.entries.truncate((from - self.first_index) as usize);
        Ok(())
    }

    pub(crate) fn compact_prefix(&mut self, upto: u64) {
        if upto < self.first_index {
            return;
        }
        if upto >= self.last_index() {
            self.entries.clear();
            self.first_index = upto + 1;
            return;
        }
        let drop = (upto + 1 - self.first_index) as usize;
        self.entries.drain(..drop);
        self.first_index = upto + 1;
    }
}
