//! Wire types and the frame codec shared by the ringraft server and load generator.
//!
//! Every TCP connection to a ringraft node carries length-prefixed frames (see [`codec`]). The
//! first frame in each direction is a handshake ([`Hello`] / [`HelloReply`]) that checks the
//! protocol version and the cluster id, and says whether the dialer is a peer node or a client.
//! After the handshake a peer connection carries [`PeerEnvelope`]s and a client connection
//! carries [`ClientFrame`]s one way and [`ServerFrame`]s the other.
//!
//! The message set follows Atomix Copycat's server: Poll (pre-vote), Vote, Append, Accept
//! between servers; Register, Connect, KeepAlive, Unregister, Command and Query from clients,
//! plus a Status request for tooling. Log entries ([`EntryPayload`]) are Copycat's entry kinds:
//! configuration, register, keep-alive, unregister, connect and command.
//!
//! Not carried yet, because the server does not implement them: Publish (session events),
//! Install (snapshots), Join/Leave/Reconfigure (membership changes) and leadership transfer.
//! A message is added here only together with the code that handles it.

pub mod client;
pub mod codec;
pub mod peer;

pub use client::*;
pub use codec::*;
pub use peer::*;

use serde::{Deserialize, Serialize};

/// Identifier of a server in the cluster, as given by `ringraft server --id`.
pub type NodeId = u64;
/// Raft term.
pub type Term = u64;
/// Raft log index. Index 0 means "before the first entry".
pub type LogIndex = u64;
/// Client session identifier: the log index of the session's Register entry.
pub type SessionId = u64;

/// Version of the frame format and message set. A node rejects a handshake with another value.
pub const PROTOCOL_VERSION: u16 = 2;

/// A voting member of the cluster and the address it listens on (peers and clients alike).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
}

/// Role of a server in the Raft protocol.
///
/// JSON (`ringraft status --json`, result files) uses the same names as `Display`. The wire
/// encoding is unaffected: bincode encodes the variant's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Follower,
    /// Polling peers (pre-vote) without having incremented its term.
    PreCandidate,
    Candidate,
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_json_matches_display() {
        for role in [
            Role::Follower,
            Role::PreCandidate,
            Role::Candidate,
            Role::Leader,
        ] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
    }
}
