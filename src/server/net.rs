//! Connections of a shard: the listener, one outbound link per peer, and client connections.
//!
//! Peer traffic is one-way per connection: a node sends on the connection it dialed and
//! receives on the connections its peers dialed. That keeps each link a plain queue (and lets
//! a harness relay cut one direction of a link without touching the other).
//!
//! A malformed, oversized, truncated or wrong-version frame closes only that connection, and
//! the error is logged with the connection's id and address. The node keeps serving everyone
//! else.
//! Messages queued for a peer while its link is down are dropped: Raft retransmits what
//! matters, and a stale backlog would only delay the current state.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future::poll_once;
use futures_lite::io::{split, AsyncWriteExt, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use ringraft_protocol::{
    encode_frame, write_handshake, ClientError, ClientErrorReply, ClientFrame, ClientResponse,
    CodecError, Dialer, FrameReader, Hello, HelloReply, Member, NodeId, PeerEnvelope, Role,
    ServerFrame, Term,
};
use tracing::{debug, error, info, warn};

use super::args::ShardConfig;
use super::shard::Event;
use crate::raft::ClientRef;

/// Delay before redialing a peer whose connection failed.
const REDIAL_DELAY: Duration = Duration::from_millis(100);
/// Most frames written to one socket in one write call.
const MAX_FRAMES_PER_WRITE: usize = 256;
/// Connect and write timeout on peer links.
const PEER_IO_TIMEOUT: Duration = Duration::from_millis(1000);
/// Largest handshake reply accepted.
const MAX_HANDSHAKE_REPLY: usize = 4096;

pub struct Network {
    id: NodeId,
    cluster_id: String,
    max_frame: usize,
    members: Vec<Member>,
    inbox: Rc<LocalSender<Event>>,
    peers: RefCell<HashMap<NodeId, LocalSender<PeerEnvelope>>>,
    peer_receivers: RefCell<Vec<(Member, LocalReceiver<PeerEnvelope>)>>,
    clients: RefCell<HashMap<u64, LocalSender<ServerFrame>>>,
    next_conn: Cell<u64>,
    role: Cell<(Role, Term)>,
}

impl Network {
    pub fn new(config: &ShardConfig, inbox: Rc<LocalSender<Event>>) -> Self {
        let mut peers = HashMap::new();
        let mut peer_receivers = Vec::new();
        for member in config.members.iter().filter(|m| m.id != config.id) {
            let (tx, rx) = local_channel::new_unbounded();
            peers.insert(member.id, tx);
            peer_receivers.push((member.clone(), rx));
        }
        Network {
            id: config.id,
            cluster_id: config.cluster_id.clone(),
            max_frame: config.max_frame_bytes,
            members: config.members.clone(),
            inbox,
            peers: RefCell::new(peers),
            peer_receivers: RefCell::new(peer_receivers),
            clients: RefCell::new(HashMap::new()),
            next_conn: Cell::new(1),
            role: Cell::new((Role::Follower, 0)),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.id
    }

    pub fn set_role(&self, role: Role, term: Term) {
        self.role.set((role, term));
    }

    /// Start one task per peer that dials it and writes its queue.
    pub fn start_peer_links(self: &Rc<Self>) {
        let receivers = std::mem::take(&mut *self.peer_receivers.borrow_mut());
        for (member, queue) in receivers {
            glommio::spawn_local(peer_link(self.clone(), member, queue)).detach();
        }
    }

    pub fn send_peer(&self, envelope: PeerEnvelope) {
        let peers = self.peers.borrow();
        let Some(queue) = peers.get(&envelope.to) else {
            error!(
                node = self.id,
                to = envelope.to,
                "message for a node that is not a member; dropped"
            );
            return;
        };
        // The queue is unbounded, so try_send fails only if the link task ended.
        if queue.try_send(envelope).is_err() {
            debug!(node = self.id, "peer link task gone; message dropped");
        }
    }

    pub fn reply(&self, client: ClientRef, response: Result<ClientResponse, ClientErrorReply>) {
        let clients = self.clients.borrow();
        let Some(queue) = clients.get(&client.conn) else {
            debug!(
                node = self.id,
                conn = client.conn,
                request_id = client.request_id,
                "reply for a closed connection dropped"
            );
            return;
        };
        let frame = ServerFrame {
            request_id: client.request_id,
            response,
        };
        if queue.try_send(frame).is_err() {
            debug!(
                node = self.id,
                conn = client.conn,
                "client writer gone; reply dropped"
            );
        }
    }

    pub async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let conn = self.next_conn.get();
                    self.next_conn.set(conn + 1);
                    glommio::spawn_local(self.clone().serve_connection(conn, stream)).detach();
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    error!(node = self.id, error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn serve_connection(self: Rc<Self>, conn: u64, stream: TcpStream) {
        let remote = stream
            .peer_addr()
            .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
        if let Err(e) = stream.set_nodelay(true) {
            warn!(node = self.id, conn, remote, error = %e, "cannot set TCP_NODELAY");
        }
        let (reader, mut writer) = split(stream);
        let mut reader = FrameReader::new(reader, self.max_frame);

        let hello: Hello = match reader.next_handshake().await {
            Ok(Some(hello)) => hello,
            Ok(None) => return,
            Err(e) => {
                warn!(node = self.id, conn, remote, error = %e, "handshake failed; closing connection");
                let reply = HelloReply::Rejected {
                    reason: e.to_string(),
                };
                let _ = write_handshake(&mut writer, &reply).await;
                return;
            }
        };

        if let Err(reason) = self.check_hello(&hello) {
            warn!(node = self.id, conn, remote, reason, "handshake rejected");
            let _ = write_handshake(&mut writer, &HelloReply::Rejected { reason }).await;
            return;
        }
        let accepted = HelloReply::Accepted { node: self.id };
        if let Err(e) = write_handshake(&mut writer, &accepted).await {
            debug!(node = self.id, conn, remote, error = %e, "connection closed during handshake");
            return;
        }

        match hello.dialer {
            Dialer::Node(peer) => self.serve_peer(conn, peer, &remote, reader).await,
            Dialer::Client => self.serve_client(conn, &remote, reader, writer).await,
        }
    }

    fn check_hello(&self, hello: &Hello) -> Result<(), String> {
        if hello.cluster_id != self.cluster_id {
            return Err(format!(
                "cluster id '{}' does not match this node's cluster id '{}'",
                hello.cluster_id, self.cluster_id
            ));
        }
        if let Dialer::Node(peer) = hello.dialer {
            if peer == self.id || !self.members.iter().any(|m| m.id == peer) {
                let ids: Vec<NodeId> = self.members.iter().map(|m| m.id).collect();
                return Err(format!(
                    "node id {peer} is not a peer of node {} (members: {ids:?})",
                    self.id
                ));
            }
        }
        Ok(())
    }

    async fn serve_peer<R>(&self, conn: u64, peer: NodeId, remote: &str, mut reader: FrameReader<R>)
    where
        R: futures_lite::AsyncRead + Unpin,
    {
        debug!(node = self.id, conn, peer, remote, "peer connected");
        loop {
            match reader.next::<PeerEnvelope>().await {
                Ok(Some(envelope)) => {
                    if envelope.from != peer || envelope.to != self.id {
                        error!(
                            node = self.id,
                            conn,
                            peer,
                            from = envelope.from,
                            to = envelope.to,
                            "peer message with wrong sender or recipient; closing connection"
                        );
                        return;
                    }
                    let event = Event::Peer {
                        from: peer,
                        message: envelope.message,
                    };
                    if self.inbox.send(event).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    debug!(node = self.id, conn, peer, "peer closed connection");
                    return;
                }
                Err(CodecError::Io(e)) => {
                    debug!(node = self.id, conn, peer, remote, error = %e, "peer connection failed");
                    return;
                }
                Err(e) => {
                    error!(node = self.id, conn, peer, remote, error = %e, "bad frame from peer; closing connection");
                    return;
                }
            }
        }
    }

    async fn serve_client<R>(
        &self,
        conn: u64,
        remote: &str,
        mut reader: FrameReader<R>,
        writer: WriteHalf<TcpStream>,
    ) where
        R: futures_lite::AsyncRead + Unpin,
    {
        debug!(node = self.id, conn, remote, "client connected");
        let (tx, rx) = local_channel::new_unbounded();
        self.clients.borrow_mut().insert(conn, tx);
        let node = self.id;
        let writer_task =
            glommio::spawn_local(async move { write_frames(&rx, writer, node, conn).await });

        loop {
            match reader.next::<ClientFrame>().await {
                Ok(Some(frame)) => {
                    let event = Event::Client {
                        client: ClientRef {
                            conn,
                            request_id: frame.request_id,
                        },
                        request: frame.request,
                    };
                    if self.inbox.send(event).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(CodecError::Io(e)) => {
                    debug!(node = self.id, conn, remote, error = %e, "client connection failed");
                    break;
                }
                Err(e) => {
                    error!(node = self.id, conn, remote, error = %e, "bad frame from client; closing connection");
                    let reply = ServerFrame {
                        request_id: 0,
                        response: Err(ClientErrorReply {
                            error: ClientError::InvalidRequest(e.to_string()),
                            leader: None,
                            members: self.members.clone(),
                        }),
                    };
                    if let Some(queue) = self.clients.borrow().get(&conn) {
                        let _ = queue.try_send(reply);
                    }
                    break;
                }
            }
        }

        // Dropping the sender ends the writer task once it has flushed what is queued.
        self.clients.borrow_mut().remove(&conn);
        let _ = self.inbox.send(Event::ClientClosed { conn }).await;
        writer_task.await;
        debug!(node = self.id, conn, remote, "client disconnected");
    }
}

/// Reason a writer stopped.
enum WriterEnd {
    QueueClosed,
    WriteFailed,
}

/// Write frames from a queue to a socket, coalescing whatever is queued into one write.
async fn write_frames<T, W>(
    queue: &LocalReceiver<T>,
    mut writer: W,
    node: NodeId,
    conn: u64,
) -> WriterEnd
where
    T: serde::Serialize,
    W: futures_lite::AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = queue.recv().await {
        buf.clear();
        if let Err(e) = encode_frame(&first, &mut buf) {
            error!(node, conn, error = %e, "cannot encode frame; dropped");
        }
        let mut frames = 1;
        while frames < MAX_FRAMES_PER_WRITE {
            match poll_once(queue.recv()).await {
                Some(Some(next)) => {
                    if let Err(e) = encode_frame(&next, &mut buf) {
                        error!(node, conn, error = %e, "cannot encode frame; dropped");
                    }
                    frames += 1;
                }
                _ => break,
            }
        }
        if let Err(e) = writer.write_all(&buf).await {
            debug!(node, conn, error = %e, "write failed; closing writer");
            return WriterEnd::WriteFailed;
        }
    }
    let _ = writer.close().await;
    WriterEnd::QueueClosed
}

/// Dial a peer, handshake, and write its queue until the connection breaks; then redial.
async fn peer_link(network: Rc<Network>, member: Member, queue: LocalReceiver<PeerEnvelope>) {
    let node = network.id;
    let mut reported_unreachable = false;
    loop {
        match dial_peer(&network, &member).await {
            Ok(stream) => {
                info!(node, peer = member.id, addr = %member.addr, "connected to peer");
                reported_unreachable = false;
                // Anything queued while the link was down is stale by now.
                while let Some(Some(_)) = poll_once(queue.recv()).await {}
                match write_frames(&queue, stream, node, member.id).await {
                    WriterEnd::QueueClosed => return,
                    WriterEnd::WriteFailed => {
                        warn!(node, peer = member.id, addr = %member.addr, "connection to peer lost; redialing")
                    }
                }
            }
            Err(reason) => {
                if !reported_unreachable {
                    warn!(node, peer = member.id, addr = %member.addr, reason, "cannot reach peer; retrying every 100 ms");
                    reported_unreachable = true;
                }
                while let Some(Some(_)) = poll_once(queue.recv()).await {}
                glommio::timer::sleep(REDIAL_DELAY).await;
            }
        }
    }
}

/// Connect to a peer and complete the handshake.
async fn dial_peer(network: &Network, member: &Member) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(member.addr.as_str(), PEER_IO_TIMEOUT)
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    // A peer that stops reading (SIGSTOP, a cut relay) must not block this link forever:
    // after the timeout the write fails, the link redials and the backlog is dropped.
    stream
        .set_write_timeout(Some(PEER_IO_TIMEOUT))
        .map_err(|e| format!("cannot set write timeout: {e}"))?;
    stream
        .set_read_timeout(Some(PEER_IO_TIMEOUT))
        .map_err(|e| format!("cannot set read timeout: {e}"))?;

    let hello = Hello {
        cluster_id: network.cluster_id.clone(),
        dialer: Dialer::Node(network.id),
    };
    let mut reader = FrameReader::new(stream, MAX_HANDSHAKE_REPLY);
    write_handshake(reader.get_mut(), &hello)
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    match reader.next_handshake::<HelloReply>().await {
        Ok(Some(HelloReply::Accepted { node })) if node == member.id => Ok(reader.into_inner()),
        Ok(Some(HelloReply::Accepted { node })) => Err(format!(
            "address {} belongs to node {node}, not node {}: check the --peer flags",
            member.addr, member.id
        )),
        Ok(Some(HelloReply::Rejected { reason })) => {
            error!(
                node = network.id,
                peer = member.id,
                reason,
                "peer rejected handshake"
            );
            Err(format!("rejected: {reason}"))
        }
        Ok(None) => Err("closed during handshake".to_string()),
        Err(e) => Err(format!("handshake failed: {e}")),
    }
}
