//! The "resemble" index: the replicated state machine of the Copycat deployment that ringraft
//! reproduces.
//!
//! `Add { id, tag, payload }` appends `id` to the list of its tag, and `Query::Tag` returns that
//! list. Lists keep insertion order and keep duplicates on purpose: if the exactly-once machinery
//! ever applied a command twice, the id would appear twice and the history checker would see it.
//! The payload is ballast that only sizes the log entry, so it is not stored.

use std::collections::HashMap;

use ringraft_protocol::{Command, CommandResult, Query, QueryResult};

/// Ids by tag, each list in the order the commands were applied.
#[derive(Clone, Debug, Default)]
pub struct ResembleIndex {
    ids_by_tag: HashMap<String, Vec<u64>>,
    total_ids: u64,
}

impl ResembleIndex {
    /// Applies one command. Callers have already checked the session and the sequence.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        match command {
            Command::Add {
                id,
                tag,
                payload: _,
            } => {
                self.ids_by_tag.entry(tag.clone()).or_default().push(*id);
                self.total_ids += 1;
                CommandResult::Added
            }
        }
    }

    /// Runs a read-only query against the current state.
    pub fn query(&self, query: &Query) -> QueryResult {
        match query {
            Query::Tag { tag } => QueryResult::Ids(self.ids(tag).to_vec()),
        }
    }

    /// Ids stored under `tag` in insertion order, duplicates included; empty for an unknown tag.
    pub fn ids(&self, tag: &str) -> &[u64] {
        self.ids_by_tag.get(tag).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Number of distinct tags.
    pub fn tag_count(&self) -> usize {
        self.ids_by_tag.len()
    }

    /// Number of ids stored over all tags, duplicates included.
    pub fn id_count(&self) -> u64 {
        self.total_ids
    }
}
