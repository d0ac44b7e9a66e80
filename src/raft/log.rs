//! The in-memory Raft log of one node.
//!
//! Entries are kept in a `Vec` indexed from 1 with no gaps. The runtime owns durability: the core
//! hands new entries and truncations to it through `Ready` and learns what is durable through
//! `Node::persisted`.
//!
//! NOTE: the whole log stays in memory because there are no snapshots yet, so memory grows with
//! the number of entries ever written.

use ringraft_protocol::{LogEntry, LogIndex, Term};

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    entries: Vec<LogEntry>,
}

impl RaftLog {
    /// Builds the log from entries recovered from storage.
    ///
    /// # Panics
    /// If the entries do not start at index 1 or have a gap: storage returns a contiguous log.
    pub fn from_entries(entries: Vec<LogEntry>) -> Self {
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                position as LogIndex + 1,
                "recovered log must be contiguous from index 1"
            );
        }
        RaftLog { entries }
    }

    pub fn last_index(&self) -> LogIndex {
        self.entries.len() as LogIndex
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(0, |entry| entry.term)
    }

    /// Term of the entry at `index`: 0 for index 0, `None` past the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == 0 {
            return Some(0);
        }
        self.get(index).map(|entry| entry.term)
    }

    pub fn get(&self, index: LogIndex) -> Option<&LogEntry> {
        if index == 0 {
            return None;
        }
        self.entries.get(index as usize - 1)
    }

    /// Entries in `[from, to]`, both inclusive and clamped to the log.
    pub fn range(&self, from: LogIndex, to: LogIndex) -> &[LogEntry] {
        let start = from.max(1) as usize - 1;
        let end = (to.min(self.last_index()) as usize).max(start);
        &self.entries[start.min(self.entries.len())..end]
    }

    /// Appends one entry, which must carry the next index.
    pub fn push(&mut self, entry: LogEntry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log entries are appended at the next index"
        );
        self.entries.push(entry);
    }

    /// Removes every entry at `from` and after.
    pub fn truncate_from(&mut self, from: LogIndex) {
        self.entries.truncate(from.saturating_sub(1) as usize);
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up to date as this one
    /// (the Raft voting rule: compare last terms, then lengths).
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Largest index at or below `at_most` whose term is at most `term`, used by the leader to
    /// skip a follower's whole conflicting term at once.
    pub fn last_index_with_term_at_most(&self, term: Term, at_most: LogIndex) -> LogIndex {
        let mut index = at_most.min(self.last_index());
        while index > 0 && self.term_at(index).unwrap_or(0) > term {
            index -= 1;
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft_protocol::EntryPayload;

    fn entry(index: LogIndex, term: Term) -> LogEntry {
        LogEntry {
            index,
            term,
            timestamp_ms: 0,
            payload: EntryPayload::Configuration { members: vec![] },
        }
    }

    #[test]
    fn range_clamps_to_log() {
        let log = RaftLog::from_entries(vec![entry(1, 1), entry(2, 1), entry(3, 2)]);
        assert_eq!(log.range(2, 10).len(), 2);
        assert_eq!(log.range(4, 10).len(), 0);
        assert_eq!(log.range(1, 0).len(), 0);
    }

    #[test]
    fn truncate_and_terms() {
        let mut log = RaftLog::from_entries(vec![entry(1, 1), entry(2, 1), entry(3, 2)]);
        assert_eq!(log.last_index_with_term_at_most(1, 3), 2);
        log.truncate_from(2);
        assert_eq!(log.last_index(), 1);
        assert_eq!(log.term_at(2), None);
        assert!(log.is_up_to_date(1, 1));
        assert!(!log.is_up_to_date(0, 0));
    }
}
