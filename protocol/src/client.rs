//! Messages between clients and servers.
//!
//! A client may pipeline requests on one connection; every request carries a `request_id` that
//! the server echoes, and responses may arrive in any order.
//!
//! Replies carry the leader and the member list (as Copycat's do) so a client that reached a
//! follower finds the leader without a separate discovery step. A follower answers Command,
//! Register, KeepAlive, Unregister and non-sequential Query requests with
//! [`ClientError::NotLeader`]; it serves sequential queries itself.

use serde::{Deserialize, Serialize};

use crate::{Command, LogIndex, Member, NodeId, Query, Role, SessionId, Term};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    pub request_id: u64,
    pub request: ClientRequest,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerFrame {
    pub request_id: u64,
    pub response: Result<ClientResponse, ClientErrorReply>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Open a session. `timeout_ms` of `None` takes the server's default session timeout.
    Register {
        client_id: u128,
        timeout_ms: Option<u64>,
    },
    /// Attach an existing client to this server (any member); a follower forwards it to the
    /// leader as an AcceptRequest.
    Connect {
        client_id: u128,
    },
    /// Keep the session alive; acknowledges command results up to `command_sequence` (the
    /// server may release them) and session events up to `event_index`.
    KeepAlive {
        session: SessionId,
        command_sequence: u64,
        event_index: LogIndex,
    },
    Unregister {
        session: SessionId,
    },
    /// Sequences start at 1 and have no gaps per session; a retry reuses its sequence.
    Command {
        session: SessionId,
        sequence: u64,
        command: Command,
    },
    /// `sequence` is the session's last command sequence and `index` the highest log index the
    /// client has seen: the query observes at least that state (read-your-writes).
    Query {
        session: SessionId,
        sequence: u64,
        index: LogIndex,
        consistency: Consistency,
        query: Query,
    },
    /// Describe this server; answered by every server, leader or not.
    Status,
}

/// Consistency level of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Consistency {
    /// The leader confirms it is still leader with a quorum round (batched across concurrent
    /// reads) and answers once it has applied up to the read index.
    Linearizable,
    /// The leader answers from its state while its lease (quorum contact within the election
    /// timeout, discounted for clock drift) holds.
    Lease,
    /// Any server answers once it has applied the client's last seen index.
    Sequential,
}

impl std::str::FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "sequential" => Ok(Consistency::Sequential),
            other => Err(format!(
                "invalid consistency level '{other}': expected linearizable, lease or sequential"
            )),
        }
    }
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Sequential => "sequential",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientResponse {
    Register {
        session: SessionId,
        timeout_ms: u64,
        leader: Option<Member>,
        members: Vec<Member>,
    },
    Connect {
        leader: Option<Member>,
        members: Vec<Member>,
    },
    KeepAlive {
        leader: Option<Member>,
        members: Vec<Member>,
    },
    Unregister,
    Command {
        /// Log index at which the command was applied.
        index: LogIndex,
        result: CommandResult,
    },
    Query {
        /// The state the query observed: every entry up to `index` was applied.
        index: LogIndex,
        result: QueryResult,
    },
    Status(NodeStatus),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The add was applied (or, for a retried sequence, had been applied before).
    Added,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryResult {
    /// Ids stored under the queried tag, in insertion order.
    Ids(Vec<u64>),
}

/// An error reply, with what the client needs to find the leader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientErrorReply {
    pub error: ClientError,
    pub leader: Option<Member>,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientError {
    /// This server is not the leader; nothing was done. Retry at `leader` if known.
    NotLeader,
    /// No leader is known (an election is in progress); nothing was done. Retry later.
    NoLeader,
    /// The server lost leadership after accepting the request: it may or may not have been
    /// committed. A retry with the same (session, sequence) is safe.
    OutcomeUnknown,
    /// The session is not registered (never was, or was unregistered).
    UnknownSession { session: SessionId },
    /// The session expired; the client must register a new one.
    SessionExpired { session: SessionId },
    /// The command sequence was already released by a keep-alive, so its result is gone.
    SequenceReleased { session: SessionId, sequence: u64 },
    /// The server refused the request as malformed; the text gives the reason.
    InvalidRequest(String),
    /// The server is shutting down or overloaded; nothing was done.
    Unavailable(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotLeader => write!(f, "not leader"),
            ClientError::NoLeader => write!(f, "no leader"),
            ClientError::OutcomeUnknown => write!(f, "not leader, outcome unknown"),
            ClientError::UnknownSession { session } => write!(f, "unknown session {session}"),
            ClientError::SessionExpired { session } => write!(f, "session {session} expired"),
            ClientError::SequenceReleased { session, sequence } => write!(
                f,
                "result of session {session} sequence {sequence} was already released"
            ),
            ClientError::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            ClientError::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// Status of one server, as `ringraft status` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit_index: LogIndex,
    pub applied_index: LogIndex,
    pub last_log_index: LogIndex,
    pub members: Vec<Member>,
    /// Sessions currently open in this server's state machine.
    pub open_sessions: u64,
    /// Sessions this server's state machine has seen expire since it started applying.
    pub expired_sessions: u64,
    /// Elections this server has started (pre-votes that reached a majority) since it started.
    pub elections_started: u64,
    /// The server process's storage and its counters. The server runtime fills it in, because
    /// the consensus core does no I/O and leaves it at the default.
    pub storage: StorageStatus,
}

/// Storage of one server process and the durable I/O it has issued since the process started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// Backend name as given to `--storage` (memory, mmap, file or dma).
    pub backend: String,
    /// Fsync policy as given to `--fsync`.
    pub fsync: String,
    /// fdatasync or msync calls that made log data durable.
    pub data_syncs: u64,
    /// Other fsync calls: segment creation and truncation, directories, the term/vote file.
    pub metadata_syncs: u64,
    /// Bytes of log records written, before padding or page-sized writeback.
    pub log_bytes_written: u64,
}
