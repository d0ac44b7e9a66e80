//! One client connection to a cluster member, and the executor's view of the cluster.
//!
//! A connection is split in two: a reader task owns the read half and forwards every decoded
//! [`ServerFrame`] into a local channel, and the session that owns the connection writes on
//! the other half. The frame reader is not cancel-safe (a read cancelled halfway would lose
//! buffered bytes), so it runs in its own task and the session waits on the channel, which is
//! safe to race against timers.
//!
//! NOTE: with glommio 0.9 on the 6.18 kernel of the development VM, a reply is noticed about
//! 1 ms later than a blocking `std::net` read notices it. With a 1 ms server delay the p50
//! was 2.0 ms against 1.03 ms (debug build, loaded 2-core machine). The extra time is part
//! of every measured latency. The cause is not found yet. One suspect is the membarrier call
//! that glommio makes before each executor sleep.
//!
//! [`ClusterView`] is shared by the sessions of one executor: it maps node ids to the
//! configured addresses (learned from each handshake) and remembers the last known leader, so
//! one redirect teaches every session of the executor.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use futures_lite::io::{split, WriteHalf};
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use glommio::Task;
use ringraft_protocol::{
    encode_frame, write_handshake, ClientFrame, Dialer, FrameReader, Hello, HelloReply, Member,
    NodeId, ServerFrame, DEFAULT_MAX_FRAME,
};

/// Event the reader task forwards to the session.
pub(crate) enum ConnEvent {
    Frame(ServerFrame),
    /// The connection ended, for the reason in the text.
    Closed(String),
}

/// Failure to open a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve address '{addr}': {reason}")]
    Resolve { addr: String, reason: String },
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("handshake with {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("{addr} rejected the handshake: {reason} (check --cluster-id)")]
    Rejected { addr: String, reason: String },
    #[error("no handshake reply from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

pub(crate) fn resolve(addr: &str) -> Result<SocketAddr, ConnectError> {
    addr.to_socket_addrs()
        .map_err(|e| ConnectError::Resolve {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ConnectError::Resolve {
            addr: addr.to_string(),
            reason: "no address found".to_string(),
        })
}

/// An open, handshaken client connection.
pub(crate) struct Connection {
    writer: WriteHalf<TcpStream>,
    pub events: LocalReceiver<ConnEvent>,
    /// Node id the member announced in its handshake reply.
    pub node: NodeId,
    pub addr: String,
    out: Vec<u8>,
    _reader: Task<()>,
}

impl Connection {
    /// Connect to `addr`, send the client handshake and wait for the member's reply, all
    /// within `timeout`.
    pub async fn open(
        addr: &str,
        cluster_id: &str,
        timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let socket_addr = resolve(addr)?;
        let stream = TcpStream::connect_timeout(socket_addr, timeout)
            .await
            .map_err(|e| ConnectError::Connect {
                addr: addr.to_string(),
                source: e.into(),
            })?;
        // Requests are small and latency is what we measure: do not let Nagle hold them.
        stream
            .set_nodelay(true)
            .map_err(|e| ConnectError::Connect {
                addr: addr.to_string(),
                source: e.into(),
            })?;
        let (read_half, mut writer) = split(stream);

        let hello = Hello {
            cluster_id: cluster_id.to_string(),
            dialer: Dialer::Client,
        };
        let handshake_error = |reason: String| ConnectError::Handshake {
            addr: addr.to_string(),
            reason,
        };
        write_handshake(&mut writer, &hello)
            .await
            .map_err(|e| handshake_error(e.to_string()))?;

        let mut reader = FrameReader::new(read_half, DEFAULT_MAX_FRAME);
        let reply = futures_lite::future::or(
            async { Some(reader.next_handshake::<HelloReply>().await) },
            async {
                glommio::timer::sleep(timeout).await;
                None
            },
        )
        .await;
        let node = match reply {
            None => {
                return Err(ConnectError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                })
            }
            Some(Err(e)) => return Err(handshake_error(e.to_string())),
            Some(Ok(None)) => return Err(handshake_error("connection closed".to_string())),
            Some(Ok(Some(HelloReply::Rejected { reason }))) => {
                return Err(ConnectError::Rejected {
                    addr: addr.to_string(),
                    reason,
                })
            }
            Some(Ok(Some(HelloReply::Accepted { node }))) => node,
        };

        let (sender, events) = local_channel::new_unbounded();
        let reader_task = glommio::spawn_local(async move {
            loop {
                let event = match reader.next::<ServerFrame>().await {
                    Ok(Some(frame)) => ConnEvent::Frame(frame),
                    Ok(None) => ConnEvent::Closed("closed by the server".to_string()),
                    Err(e) => ConnEvent::Closed(e.to_string()),
                };
                let closed = matches!(event, ConnEvent::Closed(_));
                if sender.try_send(event).is_err() || closed {
                    break;
                }
            }
        });

        Ok(Connection {
            writer,
            events,
            node,
            addr: addr.to_string(),
            out: Vec::with_capacity(4096),
            _reader: reader_task,
        })
    }

    /// Append one request frame to the write buffer; [`Connection::flush`] sends it.
    pub fn queue(&mut self, frame: &ClientFrame) -> Result<(), String> {
        encode_frame(frame, &mut self.out).map_err(|e| e.to_string())
    }

    /// Write every queued frame in one go, so a burst of pipelined requests costs one
    /// system call instead of one per request.
    pub async fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.writer.write_all(&self.out).await;
        self.out.clear();
        result.map_err(|e| format!("write to {} failed: {e}", self.addr))
    }
}

/// What the sessions of one executor know about the cluster.
#[derive(Debug)]
pub(crate) struct ClusterView {
    /// Configured member addresses (`--cluster`).
    addrs: Vec<String>,
    /// Node id of each configured address, once a handshake told it.
    nodes: Vec<Option<NodeId>>,
    leader: Option<NodeId>,
    /// Address of the leader as a reply gave it, used only while the leader's node id is not
    /// matched to a configured address.
    leader_addr_hint: Option<String>,
    cursor: usize,
    /// Members that left a request unanswered for the failover timeout, with the time until
    /// which they are skipped and their leader claims ignored.
    suspects: Vec<(NodeId, Instant)>,
}

impl ClusterView {
    pub fn new(addrs: Vec<String>, first: usize) -> Self {
        let count = addrs.len();
        ClusterView {
            addrs,
            nodes: vec![None; count],
            leader: None,
            suspects: Vec::new(),
            leader_addr_hint: None,
            cursor: first % count.max(1),
        }
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Record the node id a configured address announced.
    pub fn learn_node(&mut self, addr: &str, node: NodeId) {
        if let Some(i) = self.addrs.iter().position(|a| a == addr) {
            self.nodes[i] = Some(node);
        }
    }

    /// Take the leader from a reply. Returns true when it changed.
    pub fn observe_leader(&mut self, leader: Option<&Member>) -> bool {
        let new = leader.map(|m| m.id);
        self.leader_addr_hint = leader.map(|m| m.addr.clone());
        let changed = new != self.leader;
        self.leader = new;
        changed
    }

    /// Skip `node` and ignore replies naming it leader until `until`.
    pub fn suspect(&mut self, node: NodeId, until: Instant) {
        self.suspects.retain(|(n, _)| *n != node);
        self.suspects.push((node, until));
        self.forget_leader(node);
    }

    /// Whether `node` is skipped at `now` because it left a request unanswered.
    pub fn is_suspect(&self, node: NodeId, now: Instant) -> bool {
        self.suspects
            .iter()
            .any(|(n, until)| *n == node && *until > now)
    }

    fn addr_is_suspect(&self, i: usize, now: Instant) -> bool {
        self.nodes[i].is_some_and(|node| self.is_suspect(node, now))
    }

    pub fn forget_leader(&mut self, node: NodeId) {
        if self.leader == Some(node) {
            self.leader = None;
            self.leader_addr_hint = None;
        }
    }

    /// Address to connect to next: the leader's configured address if known, else the
    /// address a reply gave for the leader, else the next configured member in turn,
    /// skipping `avoid` (the member that just failed) when there is another.
    pub fn next_target(&mut self, avoid: Option<&str>) -> String {
        if let Some(leader) = self.leader {
            if let Some(i) = self.nodes.iter().position(|n| *n == Some(leader)) {
                if Some(self.addrs[i].as_str()) != avoid {
                    return self.addrs[i].clone();
                }
            } else if let Some(hint) = &self.leader_addr_hint {
                if Some(hint.as_str()) != avoid {
                    return hint.clone();
                }
            }
        }

        // Prefer members that are neither the one to avoid nor suspected of being stalled;
        // fall back to any other member, then to anything.
        let now = Instant::now();
        for strict in [true, false] {
            for _ in 0..self.addrs.len() {
                let i = self.cursor;
                self.cursor = (self.cursor + 1) % self.addrs.len();
                let avoided = Some(self.addrs[i].as_str()) == avoid;
                if avoided && self.addrs.len() > 1 {
                    continue;
                }
                if strict && self.addr_is_suspect(i, now) {
                    continue;
                }
                return self.addrs[i].clone();
            }
        }
        self.addrs[0].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_prefers_configured_address() {
        let mut view = ClusterView::new(vec!["a:1".into(), "b:1".into(), "c:1".into()], 0);
        view.learn_node("b:1", 2);
        view.observe_leader(Some(&Member {
            id: 2,
            addr: "10.0.0.2:1".into(),
        }));
        assert_eq!(view.next_target(None), "b:1");

        view.observe_leader(Some(&Member {
            id: 3,
            addr: "c-from-reply:1".into(),
        }));
        assert_eq!(view.next_target(None), "c-from-reply:1");
    }

    #[test]
    fn round_robin_skips_failed_member() {
        let mut view = ClusterView::new(vec!["a:1".into(), "b:1".into()], 0);
        assert_eq!(view.next_target(Some("a:1")), "b:1");
        assert_eq!(view.next_target(Some("b:1")), "a:1");
    }

    #[test]
    fn suspect_member_skipped_until_expiry() {
        let mut view = ClusterView::new(vec!["a:1".into(), "b:1".into(), "c:1".into()], 0);
        view.learn_node("a:1", 1);
        view.learn_node("b:1", 2);
        view.learn_node("c:1", 3);
        view.observe_leader(Some(&Member {
            id: 1,
            addr: "a:1".into(),
        }));

        let now = Instant::now();
        view.suspect(1, now + Duration::from_secs(60));
        assert!(view.is_suspect(1, now));
        assert_eq!(view.leader(), None, "a suspect is no longer the leader");
        for _ in 0..6 {
            assert_ne!(view.next_target(None), "a:1", "a suspect member is skipped");
        }

        view.suspect(1, now);
        assert!(!view.is_suspect(1, now), "the suspicion has expired");
        let targets: Vec<String> = (0..3).map(|_| view.next_target(None)).collect();
        assert!(targets.contains(&"a:1".to_string()), "{targets:?}");
    }

    #[test]
    fn only_suspects_left_still_yields_a_target() {
        let mut view = ClusterView::new(vec!["a:1".into()], 0);
        view.learn_node("a:1", 1);
        view.suspect(1, Instant::now() + Duration::from_secs(60));
        assert_eq!(view.next_target(None), "a:1");
    }
}
