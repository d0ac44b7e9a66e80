//! Messages between servers and the log entries they replicate.
//!
//! Pre-vote follows Copycat: a node whose election timer fires sends `PollRequest` for the term
//! it would move to, without changing its own term; only after a majority accepts does it
//! increment its term and send `VoteRequest`. That keeps a node that was partitioned away (or
//! restarted with a stale log) from disrupting a live quorum.
//!
//! `AppendRequest` doubles as the heartbeat. Its `seq` is echoed in the response so the leader
//! can match a response to the request it answers when several are in flight to one follower,
//! and so a read-index round can tell which heartbeats were sent after the read arrived.

use serde::{Deserialize, Serialize};

use crate::{LogIndex, Member, NodeId, SessionId, Term};

/// A message from one server to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerEnvelope {
    pub from: NodeId,
    pub to: NodeId,
    pub message: PeerMessage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerMessage {
    PollRequest(PollRequest),
    PollResponse(PollResponse),
    VoteRequest(VoteRequest),
    VoteResponse(VoteResponse),
    AppendRequest(AppendRequest),
    AppendResponse(AppendResponse),
    /// A follower forwards a client's connection to the leader (Copycat's AcceptRequest), so the
    /// leader records in the log which server the client is attached to.
    AcceptRequest(AcceptRequest),
}

impl PeerMessage {
    /// Returns the term the message carries, if it has one.
    pub fn term(&self) -> Option<Term> {
        match self {
            PeerMessage::PollRequest(m) => Some(m.term),
            PeerMessage::PollResponse(m) => Some(m.term),
            PeerMessage::VoteRequest(m) => Some(m.term),
            PeerMessage::VoteResponse(m) => Some(m.term),
            PeerMessage::AppendRequest(m) => Some(m.term),
            PeerMessage::AppendResponse(m) => Some(m.term),
            PeerMessage::AcceptRequest(_) => None,
        }
    }
}

/// Pre-vote: "would you vote for me in `term`?" The sender's own term is `term - 1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRequest {
    pub term: Term,
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResponse {
    /// The term the poll was for, echoed so stale responses can be ignored.
    pub term: Term,
    pub accepted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    pub term: Term,
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteResponse {
    pub term: Term,
    pub granted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppendRequest {
    pub term: Term,
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub entries: Vec<LogEntry>,
    pub leader_commit: LogIndex,
    /// Per-follower request number, echoed in the response.
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResponse {
    pub term: Term,
    pub success: bool,
    /// On success: the last index covered by the request, now durable on the follower.
    /// On failure: the follower's last log index, a hint for where the leader should back up to.
    pub last_log_index: LogIndex,
    /// On failure because of a term mismatch: the term of the follower's entry at
    /// `prev_log_index`, so the leader can skip the whole conflicting term at once.
    pub conflict_term: Option<Term>,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptRequest {
    pub client_id: u128,
    /// The server the client is connected to.
    pub address: NodeId,
}

/// One replicated log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub index: LogIndex,
    pub term: Term,
    /// Wall-clock time of the leader that appended the entry, in milliseconds since the Unix
    /// epoch. Session expiry is computed from these timestamps only, never from a follower's
    /// clock, so every replica reaches the same decision.
    pub timestamp_ms: u64,
    pub payload: EntryPayload,
}

/// The kinds of entry in the replicated log (Copycat's entry types).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader as the first entry of its term (Copycat's
    /// ConfigurationEntry). It commits the leader's term and resets every session's timer.
    Configuration { members: Vec<Member> },
    /// Opens a client session; the session id is this entry's index.
    Register { client_id: u128, timeout_ms: u64 },
    /// Keeps a session alive and releases cached command results up to `command_sequence`.
    KeepAlive {
        session: SessionId,
        command_sequence: u64,
        event_index: LogIndex,
    },
    /// Closes a session, by the client's request or (`expired`) by the leader's decision.
    Unregister { session: SessionId, expired: bool },
    /// Records which server a client is connected to (Copycat's ConnectEntry).
    Connect { client_id: u128, address: NodeId },
    /// A state-machine command with its exactly-once key `(session, sequence)`.
    Command {
        session: SessionId,
        sequence: u64,
        command: Command,
    },
}

/// A command of the replicated state machine: the "resemble" index of the Copycat deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Insert `id` under `tag`. `payload` is opaque ballast whose size the load generator sets.
    Add {
        id: u64,
        tag: String,
        /// Encoded as one byte string rather than a sequence of u8 values, which decodes
        /// several times faster.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
}

/// A read-only query of the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Return every id stored under `tag`, in insertion order (duplicates included, so a
    /// command applied twice is visible).
    Tag { tag: String },
}
