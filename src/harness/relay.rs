//! TCP relays the harness owns, so it can partition nodes without root and without changing
//! the servers.
//!
//! When the fault schedule has a partition, every node dials each peer through its own relay
//! (one per directed link, `i -> j`), and the load generator reaches each node through a
//! client relay. Cutting a relay closes its live connections and closes every new connection
//! as soon as it is accepted, until the relay is healed. The servers see this as a peer or
//! client that keeps hanging up, which is how a partition with TCP resets looks to them.
//!
//! Each relayed connection uses two threads that copy bytes, with `TCP_NODELAY` on both sides.
//! The relays add one loopback hop to every message, so runs with a partition measure a slower
//! network path than runs without one (which connect directly).
//!
//! NOTE: a partition here rejects connections. It does not drop packets silently, so the
//! servers see a refused or reset connection instead of a timeout. A server also advertises
//! its own listen address (not its client relay) in the member list it sends to clients, so a
//! client that follows such a hint bypasses the client relay of that node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ringraft_protocol::NodeId;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

struct Shared {
    name: String,
    target: SocketAddr,
    cut: AtomicBool,
    stopping: AtomicBool,
    next_connection: AtomicU64,
    /// Both sockets of every live connection, so a cut can shut them down.
    connections: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl Shared {
    fn close_all(&self) {
        let connections = std::mem::take(&mut *self.connections.lock().unwrap());
        for (_, (client, server)) in connections {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    fn close(&self, id: u64) {
        if let Some((client, server)) = self.connections.lock().unwrap().remove(&id) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
}

/// A TCP relay from a local port to one target address.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on a free port of 127.0.0.1 that forwards to `target`.
    pub fn start(name: &str, target: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            target,
            cut: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            next_connection: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        });

        let accept_shared = shared.clone();
        let accept_thread = std::thread::Builder::new()
            .name(format!("relay {name}"))
            .spawn(move || accept_loop(listener, accept_shared))?;
        Ok(Relay {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// Address to dial instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every relayed connection and rejects new ones until [`Relay::heal`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.close_all();
        tracing::debug!(relay = %self.shared.name, "relay cut");
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
        tracing::debug!(relay = %self.shared.name, "relay healed");
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Relayed connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.lock().unwrap().len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread reads the flag.
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        self.shared.close_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let client = match incoming {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(relay = %shared.name, %error, "relay accept failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.cut.load(Ordering::SeqCst) {
            // Dropping the stream closes it, which is how the dialer experiences the partition.
            continue;
        }

        let server = match TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(relay = %shared.name, target = %shared.target, %error, "relay could not reach its target");
                continue;
            }
        };
        if let Err(error) = start_pumps(&shared, client, server) {
            tracing::warn!(relay = %shared.name, %error, "relay could not start a connection");
        }
    }
}

fn start_pumps(shared: &Arc<Shared>, client: TcpStream, server: TcpStream) -> io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    shared
        .connections
        .lock()
        .unwrap()
        .insert(id, (client.try_clone()?, server.try_clone()?));

    let directions = [
        (client.try_clone()?, server.try_clone()?, "to target"),
        (server, client, "from target"),
    ];
    for (mut from, mut to, direction) in directions {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("relay {} {direction}", shared.name))
            .spawn(move || {
                let _ = io::copy(&mut from, &mut to);
                // One direction ended: close the whole connection, as a cut link would.
                shared.close(id);
            })?;
    }
    Ok(())
}

/// Relays for every directed link between nodes and from the clients to every node.
pub struct RelayNetwork {
    peer_relays: BTreeMap<(NodeId, NodeId), Relay>,
    client_relays: BTreeMap<NodeId, Relay>,
    isolated: Mutex<BTreeSet<NodeId>>,
}

impl RelayNetwork {
    /// Starts the relays for nodes listening at `nodes` (id to listen address).
    pub fn start(nodes: &BTreeMap<NodeId, SocketAddr>) -> io::Result<RelayNetwork> {
        let mut peer_relays = BTreeMap::new();
        let mut client_relays = BTreeMap::new();
        for (&to, &target) in nodes {
            for &from in nodes.keys().filter(|&&from| from != to) {
                let relay = Relay::start(&format!("node{from}->node{to}"), target)?;
                peer_relays.insert((from, to), relay);
            }
            client_relays.insert(to, Relay::start(&format!("clients->node{to}"), target)?);
        }
        Ok(RelayNetwork {
            peer_relays,
            client_relays,
            isolated: Mutex::new(BTreeSet::new()),
        })
    }

    /// Address node `from` dials to reach node `to`.
    pub fn peer_addr(&self, from: NodeId, to: NodeId) -> Option<SocketAddr> {
        self.peer_relays.get(&(from, to)).map(Relay::addr)
    }

    /// Address clients dial to reach `node`.
    pub fn client_addr(&self, node: NodeId) -> Option<SocketAddr> {
        self.client_relays.get(&node).map(Relay::addr)
    }

    /// Cuts every link of `node`, to the other nodes and to the clients.
    pub fn isolate(&self, node: NodeId) {
        self.isolated.lock().unwrap().insert(node);
        self.apply();
    }

    /// Restores the links of `node`, except those to nodes that are still isolated.
    pub fn heal(&self, node: NodeId) {
        self.isolated.lock().unwrap().remove(&node);
        self.apply();
    }

    fn apply(&self) {
        let isolated = self.isolated.lock().unwrap();
        for (&(from, to), relay) in &self.peer_relays {
            set_cut(relay, isolated.contains(&from) || isolated.contains(&to));
        }
        for (node, relay) in &self.client_relays {
            set_cut(relay, isolated.contains(node));
        }
    }
}

fn set_cut(relay: &Relay, cut: bool) {
    if cut && !relay.is_cut() {
        relay.cut();
    } else if !cut && relay.is_cut() {
        relay.heal();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// An echo server on a free port; returns its address.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(16) {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let _ = io::copy(&mut reader, &mut stream);
                });
            }
        });
        addr
    }

    fn round_trip(stream: &mut TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text)?;
        let mut buf = vec![0; text.len()];
        stream.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    #[test]
    fn relay_forwards_both_ways() {
        let relay = Relay::start("test", echo_server()).unwrap();
        let mut stream = connect(relay.addr());
        assert_eq!(round_trip(&mut stream, b"hello").unwrap(), b"hello");
        assert_eq!(round_trip(&mut stream, b"again").unwrap(), b"again");
    }

    #[test]
    fn cut_closes_and_rejects_until_heal() {
        let relay = Relay::start("test", echo_server()).unwrap();
        let mut live = connect(relay.addr());
        assert_eq!(round_trip(&mut live, b"before").unwrap(), b"before");

        relay.cut();
        assert!(
            round_trip(&mut live, b"during").is_err(),
            "live connection must be closed"
        );
        let mut fresh = connect(relay.addr());
        assert!(
            round_trip(&mut fresh, b"during").is_err(),
            "new connection must be rejected"
        );

        relay.heal();
        let mut healed = connect(relay.addr());
        assert_eq!(round_trip(&mut healed, b"after").unwrap(), b"after");
    }

    #[test]
    fn isolating_node_cuts_only_its_links() {
        let nodes: BTreeMap<NodeId, SocketAddr> = (1..=3).map(|id| (id, echo_server())).collect();
        let network = RelayNetwork::start(&nodes).unwrap();

        network.isolate(2);
        for (&(from, to), relay) in &network.peer_relays {
            assert_eq!(relay.is_cut(), from == 2 || to == 2, "link {from}->{to}");
        }
        for (&node, relay) in &network.client_relays {
            assert_eq!(relay.is_cut(), node == 2, "clients->{node}");
        }
        let mut stream = connect(network.peer_addr(1, 3).unwrap());
        assert_eq!(round_trip(&mut stream, b"ok").unwrap(), b"ok");

        network.isolate(3);
        network.heal(2);
        assert!(!network.peer_relays[&(1, 2)].is_cut());
        assert!(
            network.peer_relays[&(2, 3)].is_cut(),
            "node3 is still isolated"
        );

        network.heal(3);
        assert!(network.peer_relays.values().all(|relay| !relay.is_cut()));
    }
}
