//! Safety checks run by the simulation after every step.
//!
//! - Election safety: at most one leader per term.
//! - Log matching: two entries with the same index and term are identical and follow entries
//!   of the same term (checked on every entry a node appends, which by induction makes the whole
//!   prefixes equal).
//! - Leader completeness: a new leader of term T has every entry committed in a term before T.
//!   (A leader of an old term can still win late, for example with votes that reached a paused
//!   candidate after the cluster moved on; it need not have later commits.)
//! - State-machine safety: every node commits (and so applies) the same entry at each index.
//! - A node's commit index never goes backwards while it runs (a restart starts it from 0).

use std::collections::{BTreeMap, HashMap};

use ringraft_protocol::{LogEntry, LogIndex, NodeId, Role, Term};

use crate::raft::{Node, Ready};

#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// First copy seen of each (index, term), with the term of the entry before it.
    entries: HashMap<(LogIndex, Term), (Term, LogEntry)>,
    /// The committed prefix, as first learned from any node.
    committed: Vec<LogEntry>,
    /// Term of the leader that committed each entry of `committed`.
    commit_terms: Vec<Term>,
    commit_seen: BTreeMap<NodeId, LogIndex>,
}

impl Checker {
    pub fn new(_size: usize) -> Self {
        Checker::default()
    }

    /// Entries committed so far, from index 1.
    pub fn committed(&self) -> &[LogEntry] {
        &self.committed
    }

    /// Terms in which some node became leader, with that node.
    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    pub fn node_restarted(&mut self, id: NodeId) {
        self.commit_seen.insert(id, 0);
    }

    /// Checks a Ready just taken from `node` (whose state is after the Ready was produced).
    pub fn check_ready(&mut self, id: NodeId, node: &Node, ready: &Ready) {
        for entry in &ready.entries {
            let prev_term = node.log().term_at(entry.index - 1).unwrap_or_else(|| {
                panic!(
                    "node {id} hands out entry {} without the entry before it",
                    entry.index
                )
            });
            let key = (entry.index, entry.term);
            match self.entries.get(&key) {
                Some((seen_prev, seen)) => {
                    assert!(
                        *seen_prev == prev_term && seen == entry,
                        "log matching violated: node {id} has entry {entry:?} after term {prev_term}, another node has {seen:?} after term {seen_prev}"
                    );
                }
                None => {
                    self.entries.insert(key, (prev_term, entry.clone()));
                }
            }
        }

        if node.role() == Role::Leader {
            let term = node.term();
            match self.leaders.get(&term) {
                Some(&other) => assert_eq!(
                    other, id,
                    "election safety violated: nodes {other} and {id} are both leader in term {term}"
                ),
                None => {
                    self.leaders.insert(term, id);
                    let earlier = self.commit_terms.iter().take_while(|&&t| t < term).count();
                    for entry in &self.committed[..earlier] {
                        let local = node.log().get(entry.index);
                        assert!(
                            local == Some(entry),
                            "leader completeness violated: node {id}, leader of term {term}, lacks committed entry {entry:?} (has {local:?})"
                        );
                    }
                }
            }
        }

        let commit = node.commit_index();
        let seen = self.commit_seen.entry(id).or_insert(0);
        assert!(
            commit >= *seen,
            "commit index of node {id} went backwards from {seen} to {commit}"
        );
        let from = *seen + 1;
        *seen = commit;
        for index in from..=commit {
            let entry = node
                .log()
                .get(index)
                .unwrap_or_else(|| panic!("node {id} committed index {index} beyond its log"));
            match self.committed.get(index as usize - 1) {
                Some(committed) => assert!(
                    committed == entry,
                    "state machine safety violated: node {id} commits {entry:?} at index {index}, another node committed {committed:?}"
                ),
                None => {
                    assert_eq!(
                        index as usize,
                        self.committed.len() + 1,
                        "committed prefix must grow contiguously"
                    );
                    // The first node to report a commit is the leader that decided it: followers
                    // learn commit indexes from it.
                    self.committed.push(entry.clone());
                    self.commit_terms.push(node.term());
                }
            }
        }
    }
}
