//! Helpers for integration tests that start real `ringraft server` processes on 127.0.0.1.
//!
//! Every process is killed when its `Cluster` is dropped, so a failing test leaves nothing
//! behind. Loops are bounded by deadlines.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use ringraft_protocol::{
    decode_frame, decode_handshake_body, encode_frame, encode_handshake, ClientErrorReply,
    ClientFrame, ClientRequest, ClientResponse, Dialer, Hello, HelloReply, NodeId, NodeStatus,
    Role, ServerFrame, DEFAULT_MAX_FRAME,
};

pub const CLUSTER_ID: &str = "ringraft-test";

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

/// A blocking client of the session protocol, for tests.
pub struct TestClient {
    stream: TcpStream,
    buf: Vec<u8>,
    next_request_id: u64,
    pub node: NodeId,
}

impl TestClient {
    pub fn connect(addr: &str) -> std::io::Result<TestClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut client = TestClient {
            stream,
            buf: Vec::new(),
            next_request_id: 1,
            node: 0,
        };
        let mut hello = Vec::new();
        encode_handshake(
            &Hello {
                cluster_id: CLUSTER_ID.into(),
                dialer: Dialer::Client,
            },
            &mut hello,
        )
        .unwrap();
        client.stream.write_all(&hello)?;
        let body = client.read_raw_frame()?;
        match decode_handshake_body::<HelloReply>(&body) {
            Ok(HelloReply::Accepted { node }) => client.node = node,
            other => {
                return Err(std::io::Error::other(format!(
                    "handshake failed: {other:?}"
                )));
            }
        }
        Ok(client)
    }

    fn read_raw_frame(&mut self) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(body)
    }

    /// Send one request and wait for its reply.
    pub fn call(
        &mut self,
        request: ClientRequest,
    ) -> std::io::Result<Result<ClientResponse, ClientErrorReply>> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let mut out = Vec::new();
        encode_frame(
            &ClientFrame {
                request_id,
                request,
            },
            &mut out,
        )
        .unwrap();
        self.stream.write_all(&out)?;
        loop {
            if let Some((frame, used)) = decode_frame::<ServerFrame>(&self.buf, DEFAULT_MAX_FRAME)
                .map_err(std::io::Error::other)?
            {
                self.buf.drain(..used);
                if frame.request_id == request_id {
                    return Ok(frame.response);
                }
                continue;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

pub fn status(addr: &str) -> std::io::Result<NodeStatus> {
    let mut client = TestClient::connect(addr)?;
    match client.call(ClientRequest::Status)? {
        Ok(ClientResponse::Status(status)) => Ok(status),
        other => Err(std::io::Error::other(format!(
            "unexpected status reply {other:?}"
        ))),
    }
}
