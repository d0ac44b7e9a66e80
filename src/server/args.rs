//! `ringraft server` flags and their validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ringraft_protocol::{Member, NodeId};
use ringraft_storage::{Backend, SyncPolicy};

use super::ServerError;
use crate::raft::RaftConfig;

/// Flags of `ringraft server`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// This server's node id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub id: NodeId,

    /// Address to listen on for peers and clients. Loopback unless you mean otherwise.
    #[arg(long, default_value = "127.0.0.1:7401")]
    pub listen: SocketAddr,

    /// Another member of the cluster as ID=HOST:PORT; repeat for each peer.
    #[arg(long = "peer", value_name = "ID=ADDR", value_parser = parse_peer)]
    pub peers: Vec<(NodeId, String)>,

    /// Directory for the log segments and the term/vote record (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,

    /// Log storage backend: memory (no durability), mmap, file or dma (O_DIRECT through
    /// io_uring; needs a file system that supports O_DIRECT).
    #[arg(long, default_value = "mmap")]
    pub storage: Backend,

    /// When appends become durable: batch (fsync before acknowledging each batch),
    /// interval:<ms> or never.
    #[arg(long, default_value = "batch")]
    pub fsync: SyncPolicy,

    /// Truncate the log at the first invalid record before its tail instead of refusing to
    /// start. Every entry after that point is deleted, acknowledged ones included, so use it
    /// only on a node whose peers still hold those entries.
    #[arg(long)]
    pub repair_log: bool,

    /// Log segment size in MiB.
    #[arg(long, default_value_t = 32)]
    pub segment_mib: u64,

    /// Cluster name; peers and clients with another name are rejected at handshake.
    #[arg(long, default_value = "ringraft")]
    pub cluster_id: String,

    /// Minimum election timeout in milliseconds (randomized in [T, 2T)). Also the
    /// check-quorum window of a leader.
    #[arg(long, default_value_t = 300)]
    pub election_timeout_ms: u64,

    /// Leader heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_ms: u64,

    /// Session timeout in milliseconds for clients that do not ask for one.
    #[arg(long, default_value_t = 5000)]
    pub session_timeout_ms: u64,

    /// Maximum entries in one AppendRequest.
    #[arg(long, default_value_t = 1024)]
    pub max_append_entries: usize,

    /// Maximum payload bytes in one AppendRequest (at least one entry is always sent).
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_append_bytes: usize,

    /// Maximum AppendRequests in flight to one follower.
    #[arg(long, default_value_t = 4)]
    pub max_inflight: usize,

    /// Maximum frame size accepted from peers and clients, in bytes.
    #[arg(long, default_value_t = ringraft_protocol::DEFAULT_MAX_FRAME)]
    pub max_frame_bytes: usize,

    /// Pin the executor to this CPU. Off by default: local clusters share cores.
    #[arg(long)]
    pub pin_cpu: Option<usize>,
}

fn parse_peer(text: &str) -> Result<(NodeId, String), String> {
    let Some((id, addr)) = text.split_once('=') else {
        return Err(format!(
            "invalid peer '{text}': expected ID=HOST:PORT, for example 2=127.0.0.1:7402"
        ));
    };
    let id: NodeId = id
        .parse()
        .map_err(|_| format!("invalid peer id '{id}' in '{text}': expected a positive integer"))?;
    if id == 0 {
        return Err(format!(
            "invalid peer id 0 in '{text}': node ids start at 1"
        ));
    }
    if addr.is_empty() {
        return Err(format!(
            "missing address in peer '{text}': expected ID=HOST:PORT"
        ));
    }
    Ok((id, addr.to_string()))
}

/// Everything a shard needs, checked.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    pub members: Vec<Member>,
    pub data_dir: PathBuf,
    pub storage: Backend,
    pub fsync: SyncPolicy,
    pub segment_bytes: u64,
    pub repair_log: bool,
    pub cluster_id: String,
    pub max_frame_bytes: usize,
    pub pin_cpu: Option<usize>,
    pub raft: RaftConfig,
}

impl ServerArgs {
    /// Check the flags against each other and build the shard configuration.
    pub fn validate(&self) -> Result<ShardConfig, ServerError> {
        let bad = |msg: String| Err(ServerError::Config(msg));

        if self.id == 0 {
            return bad("--id 0 is invalid: node ids start at 1".into());
        }
        let mut members = vec![Member {
            id: self.id,
            addr: self.listen.to_string(),
        }];
        for (id, addr) in &self.peers {
            if members.iter().any(|m| m.id == *id) {
                return bad(format!(
                    "--peer {id}={addr}: node id {id} appears twice (this server is --id {})",
                    self.id
                ));
            }
            members.push(Member {
                id: *id,
                addr: addr.clone(),
            });
        }
        members.sort_by_key(|m| m.id);

        if self.election_timeout_ms < 10 {
            return bad(format!(
                "--election-timeout-ms {} is too small: use at least 10",
                self.election_timeout_ms
            ));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 2 > self.election_timeout_ms {
            return bad(format!(
                "--heartbeat-ms {} must be positive and at most half of --election-timeout-ms {}",
                self.heartbeat_ms, self.election_timeout_ms
            ));
        }
        if self.session_timeout_ms < 2 * self.election_timeout_ms {
            return bad(format!(
                "--session-timeout-ms {} must be at least twice --election-timeout-ms {}, or every election would expire sessions",
                self.session_timeout_ms, self.election_timeout_ms
            ));
        }
        if self.max_append_entries == 0 || self.max_inflight == 0 || self.max_append_bytes == 0 {
            return bad(
                "--max-append-entries, --max-append-bytes and --max-inflight must be positive"
                    .into(),
            );
        }
        if self.max_append_bytes + 64 * 1024 > self.max_frame_bytes {
            return bad(format!(
                "--max-append-bytes {} does not fit in --max-frame-bytes {} with room for headers: raise the frame size or lower the append size",
                self.max_append_bytes, self.max_frame_bytes
            ));
        }
        if self.segment_mib == 0 || self.segment_mib > 4096 {
            return bad(format!(
                "--segment-mib {} is out of range: use 1 to 4096",
                self.segment_mib
            ));
        }

        let raft = RaftConfig {
            id: self.id,
            members: members.clone(),
            election_timeout: Duration::from_millis(self.election_timeout_ms),
            heartbeat_interval: Duration::from_millis(self.heartbeat_ms),
            max_append_entries: self.max_append_entries,
            max_append_bytes: self.max_append_bytes,
            max_inflight_appends: self.max_inflight,
            default_session_timeout: Duration::from_millis(self.session_timeout_ms),
            max_pending_commands: 100_000,
        };
        Ok(ShardConfig {
            id: self.id,
            listen: self.listen,
            members,
            data_dir: self.data_dir.clone(),
            storage: self.storage,
            fsync: self.fsync,
            segment_bytes: self.segment_mib << 20,
            repair_log: self.repair_log,
            cluster_id: self.cluster_id.clone(),
            max_frame_bytes: self.max_frame_bytes,
            pin_cpu: self.pin_cpu,
            raft,
        })
    }
}
