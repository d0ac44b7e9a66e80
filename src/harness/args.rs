//! Command-line flags of `ringraft bench`.
//!
//! Every flag is optional: an absent flag keeps the scenario file's value, and the scenario
//! file (or the built-in seed scenario) supplies the rest. See [`super::scenario`] for how the
//! two merge.

use std::path::PathBuf;
use std::time::Duration;

use super::faults::{parse_duration, FaultSpec};

/// Flags of `ringraft bench`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BenchArgs {
    /// Scenario to run: a name under bench/scenarios/ (seed, throughput, failover, partition)
    /// or a path to a TOML file. Default: the seed scenario.
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,

    /// Result directory. Default: results/<UTC start time>-<scenario>/.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Number of server processes to start on 127.0.0.1.
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,

    /// Drive an existing cluster at these client addresses instead of starting one. Faults
    /// are rejected then, because they need control of the server processes.
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',')]
    pub cluster: Vec<String>,

    /// Fault to inject, KIND:TARGET@START[+DURATION], for example pause:leader@10s+2.5s.
    /// Repeatable; replaces the scenario's fault schedule.
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<FaultSpec>,

    /// Run without the scenario's faults.
    #[arg(long, conflicts_with = "faults")]
    pub no_faults: bool,

    /// Length of the load, like 20s or 2m (warm-up not included).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Keep the servers' data directories after the run (they are deleted by default; the
    /// server logs are always kept).
    #[arg(long)]
    pub keep_data: bool,

    /// The `ringraft` binary to start servers with. Default: $RINGRAFT_BIN, else this binary.
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,

    /// Storage backend of the servers: memory, mmap, file or dma (O_DIRECT through io_uring).
    #[arg(long, value_name = "BACKEND")]
    pub storage: Option<String>,

    /// Run the scenario once per storage backend, with the same seed and load, and write
    /// compare.md and compare.json next to one result directory per backend. Example:
    /// memory,mmap,file,dma. The disk under the result directory is probed first.
    #[arg(long, value_name = "BACKEND,...", value_delimiter = ',', conflicts_with_all = ["storage", "cluster"])]
    pub compare_storage: Vec<String>,

    /// With --compare-storage: time limit of each part of the disk probe, like 3s; 0s skips
    /// the probe.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "compare_storage")]
    pub probe_duration: Option<Duration>,

    /// Fsync policy of the servers: batch, never or interval:<ms>.
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<String>,

    /// Minimum election timeout of the servers, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub election_timeout_ms: Option<u64>,

    /// Heartbeat interval of the servers, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,

    /// Default session timeout of the servers, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub session_timeout_ms: Option<u64>,

    /// Maximum entries per AppendRequest.
    #[arg(long, value_name = "N")]
    pub max_append_entries: Option<u64>,

    /// Maximum bytes per AppendRequest.
    #[arg(long, value_name = "BYTES")]
    pub max_append_bytes: Option<u64>,

    /// Maximum AppendRequests in flight per follower.
    #[arg(long, value_name = "N")]
    pub max_inflight: Option<u64>,

    /// Cluster id the servers and clients use in the handshake.
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,

    /// Client sessions of the load generator.
    #[arg(long, value_name = "N")]
    pub sessions: Option<u64>,

    /// Open-loop request rate over all sessions, in operations per second.
    #[arg(long, value_name = "OPS", conflicts_with = "closed_loop")]
    pub rate: Option<f64>,

    /// Closed loop: each session sends its next request when the previous one completes.
    #[arg(long)]
    pub closed_loop: bool,

    /// Seed of the workload's random choices.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Any other load generator setting, KEY=VALUE with the key as in the scenario's
    /// [workload] table (the value is read as TOML, falling back to a string). Repeatable.
    #[arg(long = "workload", value_name = "KEY=VALUE")]
    pub workload_overrides: Vec<String>,

    /// Maximum time to wait for the cluster to elect its first leader.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub leader_timeout: Option<Duration>,

    /// Do not show the live progress line.
    #[arg(long)]
    pub quiet: bool,
}
