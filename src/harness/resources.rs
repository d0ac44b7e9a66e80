//! What the servers spent during the load: CPU time, bytes written to storage, fsyncs, and the
//! entries they committed, so a run can be stated per committed entry.
//!
//! The harness samples each server process at the start and at the end of the load window and
//! reports the difference:
//! - CPU time (user plus system) from `/proc/<pid>/stat`. Threads that exited during the window
//!   are included, because the kernel folds them into the process's totals. Resolution is one
//!   clock tick (10 ms).
//! - Bytes written from `/proc/<pid>/io` (`write_bytes`): what the process caused to be sent to
//!   the block layer, counted when a page is dirtied or an O_DIRECT write is submitted. The file
//!   system's journal, written by a kernel thread, is not in it.
//! - fsyncs and record bytes from the server's own counters (`StorageStatus` in its status).
//! - Committed entries: the growth of the highest commit index any node reports.
//!
//! Invariant: a node whose process changed between the two samples (killed and restarted), or
//! that could not be read, is left out of the totals. The usage lists those nodes, so a partial
//! figure is never presented as a whole one.
//!
//! Not done yet: the load generator's own CPU time is not reported, and clusters given with
//! `--cluster` are not sampled (their processes are not ours to read).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringraft_protocol::{NodeId, StorageStatus};
use serde::Serialize;

use super::cluster::{LocalCluster, StatusFn};

/// Time allowed for each status request of a sample. Generous, because a server that syncs
/// inline (`file`, `mmap`) can be stuck in one long fdatasync right after a heavy load.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Status requests per node before its figures are given up.
const STATUS_ATTEMPTS: usize = 3;

/// One node at one moment.
#[derive(Clone, Debug)]
struct NodeSample {
    pid: u32,
    cpu: Option<Duration>,
    write_bytes: Option<u64>,
    storage: Option<StorageStatus>,
    commit_index: Option<u64>,
}

/// Every node of a local cluster at one moment.
#[derive(Clone, Debug)]
pub struct ResourceSample {
    at: Instant,
    nodes: BTreeMap<NodeId, NodeSample>,
}

/// Samples every running or paused server of `cluster`.
pub fn sample(cluster: &LocalCluster, status: &StatusFn) -> ResourceSample {
    // The /proc figures of every node first: they are read at once, while a status request
    // may wait for a busy server.
    let at = Instant::now();
    let mut nodes = BTreeMap::new();
    for node in cluster.nodes() {
        let Some(pid) = node.pid() else {
            continue;
        };
        nodes.insert(
            node.id,
            NodeSample {
                pid,
                cpu: process_cpu(pid),
                write_bytes: process_write_bytes(pid),
                commit_index: None,
                storage: None,
            },
        );
    }

    for (id, sample) in nodes.iter_mut() {
        let Some(node) = cluster.node(*id) else {
            continue;
        };
        let addr = node.listen.to_string();
        let reply = (1..=STATUS_ATTEMPTS).find_map(|attempt| {
            status(&addr, STATUS_TIMEOUT)
                .inspect_err(|error| {
                    tracing::warn!(node = id, attempt, %error, "no status for the resource sample")
                })
                .ok()
        });
        sample.commit_index = reply.as_ref().map(|s| s.commit_index);
        sample.storage = reply.map(|s| s.storage);
    }
    ResourceSample { at, nodes }
}

/// The servers' usage between two samples, summed over the nodes that could be counted.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ResourceUsage {
    pub window_s: f64,
    /// Nodes whose figures are in the totals.
    pub nodes_counted: Vec<NodeId>,
    /// Nodes left out, with the reason (restarted, unreadable).
    pub nodes_left_out: Vec<String>,
    /// Growth of the highest commit index: entries of every kind (commands, session
    /// registrations and keep-alives, configuration).
    pub committed_entries: u64,
    pub cpu_s: f64,
    pub disk_write_bytes: u64,
    pub log_bytes_written: u64,
    pub data_syncs: u64,
    pub metadata_syncs: u64,
    /// Storage backend and fsync policy the nodes reported.
    pub backend: Option<String>,
    pub fsync: Option<String>,
}

impl ResourceUsage {
    pub fn syncs(&self) -> u64 {
        self.data_syncs + self.metadata_syncs
    }

    pub fn syncs_per_s(&self) -> Option<f64> {
        (self.window_s > 0.0).then(|| self.syncs() as f64 / self.window_s)
    }

    pub fn disk_write_bytes_per_s(&self) -> Option<f64> {
        (self.window_s > 0.0).then(|| self.disk_write_bytes as f64 / self.window_s)
    }

    fn per_entry(&self, total: f64) -> Option<f64> {
        (self.committed_entries > 0).then(|| total / self.committed_entries as f64)
    }

    pub fn disk_bytes_per_entry(&self) -> Option<f64> {
        self.per_entry(self.disk_write_bytes as f64)
    }

    pub fn log_bytes_per_entry(&self) -> Option<f64> {
        self.per_entry(self.log_bytes_written as f64)
    }

    pub fn cpu_us_per_entry(&self) -> Option<f64> {
        self.per_entry(self.cpu_s * 1e6)
    }

    /// Builds the `resources` value of `summary.json`, with the derived figures.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "window_s": self.window_s,
            "nodes_counted": self.nodes_counted,
            "nodes_left_out": self.nodes_left_out,
            "backend": self.backend,
            "fsync": self.fsync,
            "committed_entries": self.committed_entries,
            "server_cpu_s": self.cpu_s,
            "disk_write_bytes": self.disk_write_bytes,
            "log_bytes_written": self.log_bytes_written,
            "data_syncs": self.data_syncs,
            "metadata_syncs": self.metadata_syncs,
            "syncs_per_s": self.syncs_per_s(),
            "disk_write_bytes_per_s": self.disk_write_bytes_per_s(),
            "disk_bytes_per_entry": self.disk_bytes_per_entry(),
            "log_bytes_per_entry": self.log_bytes_per_entry(),
            "cpu_us_per_entry": self.cpu_us_per_entry(),
            "notes": "sums over the counted nodes; disk bytes are /proc/<pid>/io write_bytes (file system journal not included); CPU is user+system time of the server processes",
        })
    }
}

/// Computes the usage between `start` and `end`.
pub fn usage(start: &ResourceSample, end: &ResourceSample) -> ResourceUsage {
    let mut usage = ResourceUsage {
        window_s: end.at.saturating_duration_since(start.at).as_secs_f64(),
        ..ResourceUsage::default()
    };
    let commit = |sample: &ResourceSample| {
        sample
            .nodes
            .values()
            .filter_map(|node| node.commit_index)
            .max()
    };
    if let (Some(before), Some(after)) = (commit(start), commit(end)) {
        usage.committed_entries = after.saturating_sub(before);
    }

    let ids: std::collections::BTreeSet<NodeId> = start
        .nodes
        .keys()
        .chain(end.nodes.keys())
        .copied()
        .collect();
    for id in ids {
        let (Some(before), Some(after)) = (start.nodes.get(&id), end.nodes.get(&id)) else {
            usage
                .nodes_left_out
                .push(format!("node{id}: not running at both ends of the window"));
            continue;
        };
        if before.pid != after.pid {
            usage.nodes_left_out.push(format!(
                "node{id}: restarted during the window (pid {} then {})",
                before.pid, after.pid
            ));
            continue;
        }
        let figures = (
            before.cpu.zip(after.cpu),
            before.write_bytes.zip(after.write_bytes),
            before.storage.as_ref().zip(after.storage.as_ref()),
        );
        let (Some((cpu0, cpu1)), Some((w0, w1)), Some((s0, s1))) = figures else {
            usage.nodes_left_out.push(format!(
                "node{id}: /proc or status unreadable at one end of the window"
            ));
            continue;
        };
        usage.nodes_counted.push(id);
        usage.cpu_s += cpu1.saturating_sub(cpu0).as_secs_f64();
        usage.disk_write_bytes += w1.saturating_sub(w0);
        usage.data_syncs += s1.data_syncs.saturating_sub(s0.data_syncs);
        usage.metadata_syncs += s1.metadata_syncs.saturating_sub(s0.metadata_syncs);
        usage.log_bytes_written += s1.log_bytes_written.saturating_sub(s0.log_bytes_written);
        usage.backend.get_or_insert_with(|| s1.backend.clone());
        usage.fsync.get_or_insert_with(|| s1.fsync.clone());
    }
    usage
}

/// User plus system CPU time of a process, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat, clock_ticks_per_second())
}

/// Fields 14 (utime) and 15 (stime) of a stat line, in clock ticks. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu(stat: &str, ticks_per_s: u64) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at position N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / ticks_per_s.max(1),
    ))
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// `write_bytes` of `/proc/<pid>/io`.
fn process_write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    parse_io_field(&io, "write_bytes")
}

fn parse_io_field(io: &str, name: &str) -> Option<u64> {
    io.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_after_the_command_name() {
        // A command name with a space and a parenthesis must not shift the fields.
        let stat =
            "4242 (ring raft) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 6 0 1000 0 0";
        let cpu = parse_stat_cpu(stat, 100).unwrap();
        assert_eq!(cpu, Duration::from_millis(3800));
        assert_eq!(parse_stat_cpu("4242 (x) S 1", 100), None);
    }

    #[test]
    fn io_field_is_read_by_name() {
        let io = "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 81920\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io_field(io, "write_bytes"), Some(81920));
        assert_eq!(parse_io_field(io, "read_bytes"), Some(4096));
        assert_eq!(parse_io_field(io, "missing"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(process_cpu(pid).is_some());
        assert!(process_write_bytes(pid).is_some());
    }

    fn node(pid: u32, cpu_ms: u64, written: u64, syncs: u64, commit: u64) -> NodeSample {
        NodeSample {
            pid,
            cpu: Some(Duration::from_millis(cpu_ms)),
            write_bytes: Some(written),
            storage: Some(StorageStatus {
                backend: "file".into(),
                fsync: "batch".into(),
                data_syncs: syncs,
                metadata_syncs: 1,
                log_bytes_written: written / 2,
            }),
            commit_index: Some(commit),
        }
    }

    #[test]
    fn usage_sums_nodes_and_leaves_out_restarted_ones() {
        let now = Instant::now();
        let start = ResourceSample {
            at: now,
            nodes: BTreeMap::from([
                (1, node(10, 100, 1000, 5, 50)),
                (2, node(20, 100, 1000, 5, 48)),
                (3, node(30, 100, 1000, 5, 50)),
            ]),
        };
        let end = ResourceSample {
            at: now + Duration::from_secs(2),
            nodes: BTreeMap::from([
                (1, node(10, 600, 5000, 105, 250)),
                (2, node(20, 400, 3000, 55, 249)),
                (3, node(31, 50, 10, 1, 240)),
            ]),
        };
        let usage = usage(&start, &end);

        assert_eq!(usage.nodes_counted, vec![1, 2]);
        assert_eq!(usage.nodes_left_out.len(), 1);
        assert!(
            usage.nodes_left_out[0].contains("node3"),
            "{:?}",
            usage.nodes_left_out
        );
        assert_eq!(usage.committed_entries, 200);
        assert!((usage.cpu_s - 0.8).abs() < 1e-9);
        assert_eq!(usage.disk_write_bytes, 6000);
        assert_eq!(usage.data_syncs, 150);
        assert_eq!(usage.syncs_per_s(), Some(75.0));
        assert_eq!(usage.disk_bytes_per_entry(), Some(30.0));
        assert_eq!(usage.cpu_us_per_entry(), Some(4000.0));
        assert_eq!(usage.backend.as_deref(), Some("file"));
    }
}
