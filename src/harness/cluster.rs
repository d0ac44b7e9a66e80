//! A local cluster of `ringraft server` processes that the harness controls.
//!
//! Each node listens on a free port of 127.0.0.1 and keeps its data directory and log file
//! under `<out>/nodes/node<N>/`. The harness can pause (SIGSTOP), resume (SIGCONT), kill
//! (SIGKILL) and restart a node from the same data directory and port.
//!
//! No server may outlive the harness:
//! - [`LocalCluster`] kills and reaps every process it started when it is dropped, so an error
//!   or a panic unwinding through the run takes the servers down.
//! - Each server runs in its own process group, so a Ctrl-C in the terminal reaches only the
//!   harness, which then stops the load, checks the history and stops the servers itself.
//! - Each child requests SIGKILL from the kernel when its parent dies (`PR_SET_PDEATHSIG`), which
//!   covers a harness killed with SIGKILL. Linux sends that signal when the *thread* that
//!   spawned the child exits, so servers must be started and restarted from a thread that
//!   lives as long as the cluster (the harness uses its main thread).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringraft_protocol::{NodeId, NodeStatus, Role, Term};

use super::relay::RelayNetwork;
use super::scenario::ServerSettings;

/// Fetches the status of the node at an address, within a timeout.
pub type StatusFn = Arc<dyn Fn(&str, Duration) -> Result<NodeStatus, String> + Send + Sync>;

/// How long a stopping server gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Interval between status polls while waiting for a leader.
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes of a server's log shown when it exits unexpectedly.
const LOG_TAIL_BYTES: u64 = 2048;

/// Error starting or controlling the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("failed to {operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start server binary {bin} for node{node}: {source}; pass --server-bin or set RINGRAFT_BIN to a ringraft binary")]
    Spawn {
        bin: PathBuf,
        node: NodeId,
        source: std::io::Error,
    },
    #[error("node{node} exited with {status} before the cluster was ready; the end of its log {log}:\n{tail}")]
    Exited {
        node: NodeId,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "no leader elected within {timeout:?}; last status: {last}; server logs are under {dir}"
    )]
    NoLeader {
        timeout: Duration,
        last: String,
        dir: PathBuf,
    },
    #[error("failed to send {signal} to node{node} (pid {pid}): {source}")]
    Signal {
        signal: &'static str,
        node: NodeId,
        pid: u32,
        source: std::io::Error,
    },
    #[error("failed to start the relays for the partition faults: {0}")]
    Relay(std::io::Error),
    #[error("node{0} does not exist")]
    UnknownNode(NodeId),
}

/// State of a node's process, as the harness last set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    Paused,
    Killed,
}

/// One server process and its files.
pub struct ServerNode {
    pub id: NodeId,
    pub listen: SocketAddr,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    state: NodeState,
    /// Exit statuses of processes of this node that ended before the cluster stopped them.
    pub unexpected_exits: Vec<ExitStatus>,
}

impl ServerNode {
    pub fn state(&self) -> NodeState {
        self.state
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Settings to start a local cluster with.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub bin: PathBuf,
    pub nodes: usize,
    pub server: ServerSettings,
    /// Directory for `node<N>/` subdirectories.
    pub dir: PathBuf,
    /// Route peer and client traffic through relays the harness can cut.
    pub relays: bool,
    /// Extra environment for the servers (RUST_LOG, for instance).
    pub env: Vec<(String, String)>,
}

/// A running local cluster. Dropping it kills every server process.
pub struct LocalCluster {
    bin: PathBuf,
    env: Vec<(String, String)>,
    nodes: BTreeMap<NodeId, ServerNode>,
    relays: Option<RelayNetwork>,
}

impl LocalCluster {
    /// Starts every node. Does not wait for a leader: see [`LocalCluster::wait_for_leader`].
    pub fn start(config: &ClusterConfig) -> Result<LocalCluster, ClusterError> {
        let ids: Vec<NodeId> = (1..=config.nodes as NodeId).collect();
        let reserve_error = |source| ClusterError::Io {
            operation: "reserve a port on",
            path: PathBuf::from("127.0.0.1"),
            source,
        };
        // The reserving listeners stay open until their node is about to start, so the relays
        // (which bind ports of their own) cannot be given the same port numbers.
        let mut reserved = free_ports(ids.len()).map_err(reserve_error)?;
        let listens: Vec<SocketAddr> = reserved
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<_, _>>()
            .map_err(reserve_error)?;
        let listen_by_id: BTreeMap<NodeId, SocketAddr> =
            ids.iter().copied().zip(listens.iter().copied()).collect();

        let relays = if config.relays {
            Some(RelayNetwork::start(&listen_by_id).map_err(ClusterError::Relay)?)
        } else {
            None
        };

        let mut cluster = LocalCluster {
            bin: config.bin.clone(),
            env: config.env.clone(),
            nodes: BTreeMap::new(),
            relays,
        };
        for (&id, &listen) in &listen_by_id {
            let dir = config.dir.join(format!("node{id}"));
            let data_dir = dir.join("data");
            std::fs::create_dir_all(&data_dir).map_err(|source| ClusterError::Io {
                operation: "create data directory",
                path: data_dir.clone(),
                source,
            })?;

            let mut args = vec![
                "server".to_string(),
                "--id".to_string(),
                id.to_string(),
                "--listen".to_string(),
                listen.to_string(),
                "--data-dir".to_string(),
                data_dir.display().to_string(),
            ];
            for (&peer, &peer_listen) in listen_by_id.iter().filter(|(&peer, _)| peer != id) {
                let dial = cluster
                    .relays
                    .as_ref()
                    .and_then(|relays| relays.peer_addr(id, peer))
                    .unwrap_or(peer_listen);
                args.push("--peer".to_string());
                args.push(format!("{peer}={dial}"));
            }
            args.extend(config.server.flags());

            let node = ServerNode {
                id,
                listen,
                log_path: dir.join("server.log"),
                dir,
                data_dir,
                args,
                child: None,
                state: NodeState::Killed,
                unexpected_exits: Vec::new(),
            };
            cluster.nodes.insert(id, node);
            drop(reserved.remove(0));
            // On error the cluster built so far is dropped, which kills the nodes started.
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, id: NodeId) -> Result<(), ClusterError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ClusterError::UnknownNode(id))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|source| ClusterError::Io {
                operation: "open server log",
                path: node.log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| ClusterError::Io {
            operation: "duplicate the handle of",
            path: node.log_path.clone(),
            source,
        })?;

        let mut command = Command::new(&self.bin);
        command
            .args(&node.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        die_with_parent(&mut command);

        let child = command.spawn().map_err(|source| ClusterError::Spawn {
            bin: self.bin.clone(),
            node: id,
            source,
        })?;
        tracing::info!(node = id, pid = child.id(), listen = %node.listen, "server started");
        node.child = Some(child);
        node.state = NodeState::Running;
        Ok(())
    }

    pub fn nodes(&self) -> impl Iterator<Item = &ServerNode> {
        self.nodes.values()
    }

    pub fn node(&self, id: NodeId) -> Option<&ServerNode> {
        self.nodes.get(&id)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Addresses the harness polls status at (direct, never through a relay).
    pub fn status_addrs(&self) -> BTreeMap<NodeId, String> {
        self.nodes
            .values()
            .map(|node| (node.id, node.listen.to_string()))
            .collect()
    }

    /// Addresses the load generator dials: the client relays when there are relays.
    pub fn client_addrs(&self) -> Vec<String> {
        self.nodes
            .values()
            .map(|node| {
                self.relays
                    .as_ref()
                    .and_then(|relays| relays.client_addr(node.id))
                    .unwrap_or(node.listen)
                    .to_string()
            })
            .collect()
    }

    pub fn relays(&self) -> Option<&RelayNetwork> {
        self.relays.as_ref()
    }

    /// Process ids of the running or paused servers.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.values().filter_map(ServerNode::pid).collect()
    }

    fn signal(
        &self,
        id: NodeId,
        signal: libc::c_int,
        name: &'static str,
    ) -> Result<(), ClusterError> {
        let node = self.nodes.get(&id).ok_or(ClusterError::UnknownNode(id))?;
        let Some(pid) = node.pid() else {
            return Ok(());
        };
        // SAFETY: kill(2) has no memory-safety preconditions. The pid is a child that has not
        // been reaped yet (reaping clears `child`), so it cannot have been reused.
        let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
        if result != 0 {
            return Err(ClusterError::Signal {
                signal: name,
                node: id,
                pid,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Stops a node's process with SIGSTOP, as a long GC pause or a stalled VM would.
    pub fn pause(&mut self, id: NodeId) -> Result<(), ClusterError> {
        self.signal(id, libc::SIGSTOP, "SIGSTOP")?;
        self.set_state(id, NodeState::Paused);
        Ok(())
    }

    /// Continues a paused node with SIGCONT.
    pub fn resume(&mut self, id: NodeId) -> Result<(), ClusterError> {
        self.signal(id, libc::SIGCONT, "SIGCONT")?;
        self.set_state(id, NodeState::Running);
        Ok(())
    }

    /// Kills a node with SIGKILL and reaps it. Its data directory stays for a restart.
    pub fn kill(&mut self, id: NodeId) -> Result<(), ClusterError> {
        self.signal(id, libc::SIGKILL, "SIGKILL")?;
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ClusterError::UnknownNode(id))?;
        if let Some(mut child) = node.child.take() {
            let _ = child.wait();
        }
        node.state = NodeState::Killed;
        Ok(())
    }

    /// Starts a killed node again with the same arguments, port and data directory.
    pub fn restart(&mut self, id: NodeId) -> Result<(), ClusterError> {
        let node = self.nodes.get(&id).ok_or(ClusterError::UnknownNode(id))?;
        if node.child.is_some() {
            return Ok(());
        }
        self.spawn(id)
    }

    fn set_state(&mut self, id: NodeId, state: NodeState) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.state = state;
        }
    }

    /// Checks for servers that exited on their own; records and returns them.
    pub fn reap_exited(&mut self) -> Vec<(NodeId, ExitStatus)> {
        let mut exited = Vec::new();
        for node in self.nodes.values_mut() {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                tracing::error!(node = node.id, %status, log = %node.log_path.display(), "server exited unexpectedly");
                node.unexpected_exits.push(status);
                node.child = None;
                node.state = NodeState::Killed;
                exited.push((node.id, status));
            }
        }
        exited
    }

    /// Polls every node's status until one is leader and a majority of the nodes that answer
    /// agree on it. Fails early if a server exits.
    pub fn wait_for_leader(
        &mut self,
        status: &StatusFn,
        timeout: Duration,
    ) -> Result<(NodeId, Term), ClusterError> {
        let deadline = Instant::now() + timeout;
        let addrs = self.status_addrs();
        let mut last = String::from("no node answered");
        loop {
            if let Some((id, status)) = self.reap_exited().into_iter().next() {
                let node = &self.nodes[&id];
                return Err(ClusterError::Exited {
                    node: id,
                    status,
                    log: node.log_path.clone(),
                    tail: log_tail(&node.log_path),
                });
            }

            let mut statuses = Vec::new();
            let mut errors = Vec::new();
            for (id, addr) in &addrs {
                match status(addr, LEADER_POLL_INTERVAL * 4) {
                    Ok(node_status) => statuses.push(node_status),
                    Err(error) => errors.push(format!("node{id}: {error}")),
                }
            }
            if let Some(leader) = agreed_leader(&statuses, addrs.len()) {
                tracing::info!(leader = leader.0, term = leader.1, "cluster has a leader");
                return Ok(leader);
            }
            last = describe_statuses(&statuses, &errors).unwrap_or(last);

            if Instant::now() >= deadline {
                let dir = self
                    .nodes
                    .values()
                    .next()
                    .and_then(|node| node.dir.parent().map(Path::to_path_buf))
                    .unwrap_or_default();
                return Err(ClusterError::NoLeader { timeout, last, dir });
            }
            std::thread::sleep(LEADER_POLL_INTERVAL);
        }
    }

    /// Stops every server: SIGCONT (a paused process cannot act on SIGTERM), SIGTERM, then
    /// SIGKILL for those still running after a grace period. Reaps them all.
    pub fn stop(&mut self) {
        let ids = self.ids();
        for &id in &ids {
            let _ = self.signal(id, libc::SIGCONT, "SIGCONT");
            let _ = self.signal(id, libc::SIGTERM, "SIGTERM");
        }

        let deadline = Instant::now() + STOP_GRACE;
        for node in self.nodes.values_mut() {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        tracing::info!(node = node.id, %status, "server stopped");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        tracing::warn!(
                            node = node.id,
                            "server did not stop after SIGTERM; sending SIGKILL"
                        );
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            node.state = NodeState::Killed;
        }
    }

    /// Deletes every node's data directory (the logs stay).
    pub fn remove_data(&self) {
        for node in self.nodes.values() {
            if let Err(error) = std::fs::remove_dir_all(&node.data_dir) {
                tracing::warn!(node = node.id, path = %node.data_dir.display(), %error, "failed to remove data directory");
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Makes the child die with the harness and leave the terminal's process group.
fn die_with_parent(command: &mut Command) {
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec, so it only calls async-signal-safe
    // functions (prctl, getppid, setpgid, _exit) and does not allocate.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then no signal will come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Reserves `count` distinct free ports on 127.0.0.1 by binding listeners to them.
///
/// NOTE: each port is released just before its server binds it (and again across a kill and
/// restart), so another process could take it in between. The server then fails to start and
/// the harness reports its log.
fn free_ports(count: usize) -> std::io::Result<Vec<TcpListener>> {
    (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect()
}

/// The leader that a majority of the cluster agrees on, with its term.
fn agreed_leader(statuses: &[NodeStatus], cluster_size: usize) -> Option<(NodeId, Term)> {
    let leader = statuses
        .iter()
        .filter(|status| status.role == Role::Leader)
        .max_by_key(|status| status.term)?;
    let agreeing = statuses
        .iter()
        .filter(|status| {
            status.term == leader.term
                && (status.leader == Some(leader.id) || status.id == leader.id)
        })
        .count();
    (agreeing > cluster_size / 2).then_some((leader.id, leader.term))
}

fn describe_statuses(statuses: &[NodeStatus], errors: &[String]) -> Option<String> {
    let mut parts: Vec<String> = statuses
        .iter()
        .map(|s| {
            format!(
                "node{} {} in term {} (leader {:?})",
                s.id, s.role, s.term, s.leader
            )
        })
        .collect();
    parts.extend(errors.iter().cloned());
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The last few lines of a server log, for error messages.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(cannot open {})", path.display());
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)));
    let mut tail = String::new();
    let _ = file.read_to_string(&mut tail);
    tail
}

/// Whether a process with this id still exists (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
