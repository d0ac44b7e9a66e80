//! The operation history a run records, one JSON object per line (`history.jsonl`).
//!
//! The harness's checker reads it to verify that no acknowledged Add was lost, none was
//! applied twice and no Query returned a stale result. Times are nanoseconds since the start
//! of the run on the load generator's monotonic clock, so they are comparable across sessions
//! of one load generator process.
//!
//! `invoke_ns` is when the first attempt of the operation was actually written to a socket
//! (not its intended send time): a stale-read verdict must compare real send and
//! acknowledgement instants. `complete_ns` is when the final outcome was known.

use serde::{Deserialize, Serialize};

/// Kind of operation in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Add,
    Query,
}

/// Final outcome of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged by the cluster.
    Ok,
    /// Definitely not applied (rejected before it could take effect).
    Failed,
    /// Unknown: the request may or may not have been applied (connection lost after sending,
    /// "not leader, outcome unknown", timed out, or still in flight when the run ended).
    Indeterminate,
}

/// One line of `history.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Load generator's session number (0-based, stable for the whole run even if the
    /// session had to register again with the cluster).
    pub session: u32,
    /// Server-side session id the operation was sent under, when one was registered.
    pub server_session: Option<u64>,
    pub kind: OpKind,
    /// Command sequence number (Add) or the session's last command sequence (Query).
    pub sequence: u64,
    pub tag: String,
    /// The id inserted by an Add.
    pub id: Option<u64>,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
    /// Ids returned by a successful Query.
    pub output: Option<Vec<u64>>,
    /// Log index the cluster reported with a successful reply.
    pub index: Option<u64>,
    /// Error text for failed and indeterminate outcomes.
    pub error: Option<String>,
}
