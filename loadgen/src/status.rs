//! Blocking one-off requests for tooling: a member's status (`ringraft status`, the harness)
//! and a final linearizable read of tags (the correctness checker).
//!
//! These run outside any executor, so they use `std::net` with socket timeouts.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringraft_protocol::{
    decode_frame, decode_handshake_body, encode_frame, encode_handshake, ClientError,
    ClientErrorReply, ClientFrame, ClientRequest, ClientResponse, Consistency, Dialer, Hello,
    HelloReply, Member, NodeId, NodeStatus, Query, QueryResult, ServerFrame, DEFAULT_MAX_FRAME,
    MAX_HANDSHAKE_FRAME,
};

use crate::connection::resolve;
use crate::error::LoadError;

/// A blocking client connection, for tools and tests that send one request at a time.
pub struct BlockingClient {
    stream: TcpStream,
    addr: String,
    node: NodeId,
    next_request_id: u64,
}

impl BlockingClient {
    /// Connects to `addr` and completes the client handshake, each step within `timeout`.
    pub fn connect(addr: &str, cluster_id: &str, timeout: Duration) -> Result<Self, LoadError> {
        let connect_error = |reason: String| LoadError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let socket_addr = resolve(addr).map_err(|e| connect_error(e.to_string()))?;
        let stream = TcpStream::connect_timeout(&socket_addr, timeout)
            .map_err(|e| connect_error(e.to_string()))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .and_then(|_| stream.set_nodelay(true))
            .map_err(|e| connect_error(e.to_string()))?;

        let mut client = BlockingClient {
            stream,
            addr: addr.to_string(),
            node: 0,
            next_request_id: 1,
        };
        let mut out = Vec::new();
        encode_handshake(
            &Hello {
                cluster_id: cluster_id.to_string(),
                dialer: Dialer::Client,
            },
            &mut out,
        )
        .map_err(|e| client.protocol_error(e.to_string()))?;
        client.write_bytes(&out, timeout)?;

        let body = client.read_body(MAX_HANDSHAKE_FRAME, timeout)?;
        let reply: HelloReply =
            decode_handshake_body(&body).map_err(|e| client.protocol_error(e.to_string()))?;
        match reply {
            HelloReply::Accepted { node } => client.node = node,
            HelloReply::Rejected { reason } => {
                return Err(LoadError::Rejected {
                    addr: addr.to_string(),
                    reason,
                })
            }
        }
        Ok(client)
    }

    fn protocol_error(&self, reason: String) -> LoadError {
        LoadError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn io_error(&self, e: std::io::Error, timeout: Duration) -> LoadError {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => LoadError::Timeout {
                addr: self.addr.clone(),
                timeout,
            },
            _ => LoadError::Connect {
                addr: self.addr.clone(),
                reason: e.to_string(),
            },
        }
    }

    fn write_bytes(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), LoadError> {
        self.stream
            .write_all(bytes)
            .map_err(|e| self.io_error(e, timeout))
    }

    /// Read one frame body (without its length prefix).
    fn read_body(&mut self, max: usize, timeout: Duration) -> Result<Vec<u8>, LoadError> {
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .map_err(|e| self.io_error(e, timeout))?;
        let length = u32::from_be_bytes(prefix) as usize;
        if length > max {
            return Err(self.protocol_error(format!(
                "frame of {length} bytes exceeds the maximum of {max} bytes"
            )));
        }
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| self.io_error(e, timeout))?;
        Ok(body)
    }

    /// Returns the node id the member announced in its handshake reply.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Returns the socket, for tests that write raw bytes after the handshake.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends one request and waits for its reply.
    pub fn call(
        &mut self,
        request: ClientRequest,
        timeout: Duration,
    ) -> Result<Result<ClientResponse, ClientErrorReply>, LoadError> {
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
        .map_err(|e| self.protocol_error(e.to_string()))?;
        self.write_bytes(&out, timeout)?;

        loop {
            let body = self.read_body(DEFAULT_MAX_FRAME, timeout)?;
            let mut framed = Vec::with_capacity(body.len() + 4);
            framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
            framed.extend_from_slice(&body);
            let (frame, _) = decode_frame::<ServerFrame>(&framed, DEFAULT_MAX_FRAME)
                .map_err(|e| self.protocol_error(e.to_string()))?
                .ok_or_else(|| self.protocol_error("incomplete frame".to_string()))?;
            if frame.request_id == request_id {
                return Ok(frame.response);
            }
        }
    }
}

/// Fetch the status of one member (blocking).
pub fn fetch_status(
    addr: &str,
    cluster_id: &str,
    timeout: Duration,
) -> Result<NodeStatus, LoadError> {
    let mut client = BlockingClient::connect(addr, cluster_id, timeout)?;
    match client.call(ClientRequest::Status, timeout)? {
        Ok(ClientResponse::Status(status)) => Ok(status),
        Ok(other) => {
            Err(client.protocol_error(format!("unexpected response to Status: {other:?}")))
        }
        Err(reply) => Err(LoadError::Request {
            addr: addr.to_string(),
            error: reply.error,
        }),
    }
}

/// Read the ids stored under each tag with linearizable queries at the leader (blocking).
///
/// Registers a session (following redirects to the leader, and trying every member in turn
/// until `timeout` has passed), queries each tag, and unregisters. Used by the correctness
/// checker to read the final state.
pub fn read_tags(
    cluster: &[String],
    cluster_id: &str,
    tags: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, Vec<u64>>, LoadError> {
    if cluster.is_empty() {
        return Err(LoadError::Config("no cluster address given".into()));
    }
    let deadline = Instant::now() + timeout;
    let per_call = timeout.min(Duration::from_secs(2));
    let mut nodes: HashMap<NodeId, String> = HashMap::new();
    let mut leader_hint: Option<Member> = None;
    let mut cursor = 0usize;
    let mut last_error = String::from("no attempt finished");

    while Instant::now() < deadline {
        let addr = match leader_hint.take() {
            // Prefer the configured address of the leader's node id over the reply's address.
            Some(m) => nodes.get(&m.id).cloned().unwrap_or(m.addr),
            None => {
                let addr = cluster[cursor % cluster.len()].clone();
                cursor += 1;
                addr
            }
        };
        match read_tags_at(&addr, cluster_id, tags, per_call, &mut nodes) {
            Ok(result) => return Ok(result),
            Err(Attempt::Redirect(leader)) => {
                last_error = format!("{addr} is not the leader");
                leader_hint = leader;
                if leader_hint.is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(Attempt::Failed(e)) => {
                last_error = e.to_string();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Err(LoadError::NoLeader {
        cluster: cluster.to_vec(),
        timeout,
        last_error,
    })
}

enum Attempt {
    Redirect(Option<Member>),
    Failed(LoadError),
}

impl From<LoadError> for Attempt {
    fn from(e: LoadError) -> Self {
        Attempt::Failed(e)
    }
}

fn read_tags_at(
    addr: &str,
    cluster_id: &str,
    tags: &[String],
    timeout: Duration,
    nodes: &mut HashMap<NodeId, String>,
) -> Result<BTreeMap<String, Vec<u64>>, Attempt> {
    let mut client = BlockingClient::connect(addr, cluster_id, timeout)?;
    nodes.insert(client.node, addr.to_string());

    let register = ClientRequest::Register {
        client_id: rand::random(),
        timeout_ms: None,
    };
    let session = match client.call(register, timeout)? {
        Ok(ClientResponse::Register { session, .. }) => session,
        Ok(other) => {
            return Err(Attempt::Failed(client.protocol_error(format!(
                "unexpected response to Register: {other:?}"
            ))))
        }
        Err(reply) => return Err(rejected(addr, reply)),
    };

    let mut result = BTreeMap::new();
    for tag in tags {
        let query = ClientRequest::Query {
            session,
            sequence: 0,
            index: 0,
            consistency: Consistency::Linearizable,
            query: Query::Tag { tag: tag.clone() },
        };
        match client.call(query, timeout)? {
            Ok(ClientResponse::Query {
                result: QueryResult::Ids(ids),
                ..
            }) => {
                result.insert(tag.clone(), ids);
            }
            Ok(other) => {
                return Err(Attempt::Failed(client.protocol_error(format!(
                    "unexpected response to Query: {other:?}"
                ))))
            }
            Err(reply) => return Err(rejected(addr, reply)),
        }
    }

    // Best effort: an unanswered Unregister only leaves a session to expire.
    let _ = client.call(ClientRequest::Unregister { session }, timeout);
    Ok(result)
}

fn rejected(addr: &str, reply: ClientErrorReply) -> Attempt {
    match reply.error {
        ClientError::NotLeader | ClientError::NoLeader | ClientError::OutcomeUnknown => {
            Attempt::Redirect(reply.leader)
        }
        error => Attempt::Failed(LoadError::Request {
            addr: addr.to_string(),
            error,
        }),
    }
}
