//! Helpers for integration tests that start real `ringraft server` processes on 127.0.0.1.
//!
//! Every process is killed when its `Cluster` is dropped, so a failing test leaves nothing
//! behind. Loops are bounded by deadlines.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use ringraft_loadgen::BlockingClient;
use ringraft_protocol::{
    ClientErrorReply, ClientRequest, ClientResponse, NodeId, NodeStatus, Role,
};

pub const CLUSTER_ID: &str = "ringraft-test";

/// Runs `ringraft bench ARGS --out OUT` to completion and returns what it printed.
pub fn bench(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("running ringraft bench")
}

/// Ports that were free a moment ago on 127.0.0.1.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub struct Cluster {
    pub dir: PathBuf,
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    extra_args: Vec<String>,
}

impl Cluster {
    /// Start `n` nodes with ids 1..=n, data under `dir`.
    pub fn start(n: usize, dir: &Path, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            ports: free_ports(n),
            children: (0..n).map(|_| None).collect(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n as u64 {
            cluster.spawn(id);
        }
        cluster
    }

    /// Flags added to every server started from now on.
    pub fn set_extra_args(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
    }

    /// Wait for node `id` to exit by itself; returns its exit status.
    pub fn wait_exit(
        &mut self,
        id: NodeId,
        deadline: Duration,
    ) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + deadline;
        let child = self.children[id as usize - 1].as_mut()?;
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn addr(&self, id: NodeId) -> String {
        format!("127.0.0.1:{}", self.ports[id as usize - 1])
    }

    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.ports.len() as u64).collect()
    }

    /// Start (or restart) node `id` from its data directory.
    pub fn spawn(&mut self, id: NodeId) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringraft"));
        cmd.arg("server")
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(self.addr(id))
            .arg("--data-dir")
            .arg(self.dir.join(format!("node{id}")))
            .arg("--cluster-id")
            .arg(CLUSTER_ID);
        for peer in self.ids().into_iter().filter(|p| *p != id) {
            cmd.arg("--peer").arg(format!("{peer}={}", self.addr(peer)));
        }
        cmd.args(&self.extra_args);
        let log = std::fs::File::create(self.dir.join(format!("node{id}.log"))).unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("start ringraft server");
        self.children[id as usize - 1] = Some(child);
    }

    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.children[id as usize - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait until some live node reports itself leader and a majority agrees on it.
    pub fn wait_for_leader(&self, among: &[NodeId], deadline: Duration) -> NodeId {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            let statuses: Vec<NodeStatus> = among
                .iter()
                .filter_map(|id| status(&self.addr(*id)).ok())
                .collect();
            if let Some(leader) = statuses.iter().find(|s| s.role == Role::Leader) {
                let agree = statuses
                    .iter()
                    .filter(|s| s.leader == Some(leader.id) && s.term == leader.term)
                    .count();
                if agree * 2 > self.ports.len() {
                    return leader.id;
                }
            }
            sleep(Duration::from_millis(50));
        }
        panic!(
            "no leader among nodes {among:?} within {deadline:?}; logs are in {}",
            self.dir.display()
        );
    }

    pub fn node_log(&self, id: NodeId) -> String {
        std::fs::read_to_string(self.dir.join(format!("node{id}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
    }
}

/// Time a test client waits for each reply.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A blocking client of the session protocol, for tests: the load generator's
/// [`BlockingClient`] with the test cluster's id and `std::io` errors.
pub struct TestClient {
    inner: BlockingClient,
}

impl TestClient {
    pub fn connect(addr: &str) -> std::io::Result<TestClient> {
        let inner = BlockingClient::connect(addr, CLUSTER_ID, CLIENT_TIMEOUT)
            .map_err(std::io::Error::other)?;
        Ok(TestClient { inner })
    }

    /// Sends one request and waits for its reply.
    pub fn call(
        &mut self,
        request: ClientRequest,
    ) -> std::io::Result<Result<ClientResponse, ClientErrorReply>> {
        self.inner
            .call(request, CLIENT_TIMEOUT)
            .map_err(std::io::Error::other)
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.inner.stream_mut()
    }
}

pub fn status(addr: &str) -> std::io::Result<NodeStatus> {
    ringraft_loadgen::fetch_status(addr, CLUSTER_ID, CLIENT_TIMEOUT).map_err(std::io::Error::other)
}
