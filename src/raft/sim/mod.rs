//! A deterministic simulated cluster that drives the real [`Node`] core.
//!
//! Everything runs on one thread from one seed: a simulated clock, a network with per-message
//! delay (hence reordering), loss, duplication and partitions, and per-node simulated storage
//! that follows the [`Ready`](super::Ready) contract. A Ready's hard state, truncation and entries
//! become durable only when its write completes after a simulated delay, and its messages leave
//! only then. A crash discards every write that had not completed, so a restarted node recovers
//! exactly the durable log and hard state.
//!
//! A [`Checker`](checker::Checker) watches every Ready and every commit index and panics, naming
//! the Raft property, on the first violation. The random workload with clients and faults is in
//! [`workload`]; scenario tests use [`Cluster`] directly.

pub mod checker;
pub mod workload;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringraft_protocol::{
    ClientErrorReply, ClientRequest, ClientResponse, LogEntry, Member, NodeId, PeerEnvelope, Role,
};

use super::{ClientRef, HardState, Node, RaftConfig};
use checker::Checker;

/// Simulated time at which every cluster starts, in milliseconds (reads like a wall clock).
pub const START_MS: u64 = 1_700_000_000_000;
/// Interval between `Node::tick` calls on every running node.
pub const TICK_MS: u64 = 10;

/// Network and storage behaviour of a simulated cluster.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Probability that a message (peer or client) is dropped.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplication: f64,
    /// Time a storage write (a Ready with hard state, truncation or entries) takes.
    pub io_delay_ms: u64,
}

impl NetworkConfig {
    /// Returns a network that loses and duplicates nothing, with 1-2 ms per message.
    pub fn reliable() -> Self {
        NetworkConfig {
            min_delay_ms: 1,
            max_delay_ms: 2,
            loss: 0.0,
            duplication: 0.0,
            io_delay_ms: 1,
        }
    }
}

/// A reply delivered to a simulated client.
pub type Reply = Result<ClientResponse, ClientErrorReply>;

#[derive(Debug)]
enum Event {
    Peer(PeerEnvelope),
    ClientRequest {
        to: NodeId,
        client: ClientRef,
        request: ClientRequest,
    },
    ClientReply {
        client: ClientRef,
        reply: Reply,
    },
    IoDone {
        node: NodeId,
        incarnation: u64,
    },
}

/// One storage write: a Ready's durable part plus the messages that wait for it.
#[derive(Debug)]
struct Write {
    hard_state: Option<HardState>,
    truncate_from: Option<u64>,
    entries: Vec<LogEntry>,
    messages: Vec<PeerEnvelope>,
}

/// State that survives a crash: the hard state and the durable log.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub hard_state: HardState,
    pub log: Vec<LogEntry>,
}

struct SimNode {
    config: RaftConfig,
    node: Option<Node>,
    durable: Durable,
    writes: VecDeque<Write>,
    incarnation: u64,
    paused_until: Option<u64>,
    next_tick_ms: u64,
}

/// A simulated cluster of real [`Node`]s.
pub struct Cluster {
    now_ms: u64,
    rng: StdRng,
    seed: u64,
    pub network: NetworkConfig,
    nodes: BTreeMap<NodeId, SimNode>,
    events: BinaryHeap<Reverse<(u64, u64, usize)>>,
    event_slots: Vec<Option<Event>>,
    free_slots: Vec<usize>,
    event_seq: u64,
    /// Directed links that drop every message.
    cut: HashSet<(NodeId, NodeId)>,
    /// Clients (by connection id) that are cut off from every node.
    replies: BTreeMap<u64, Vec<(ClientRef, Reply)>>,
    /// Replies to drop on purpose, by (conn, request_id).
    drop_replies: HashSet<(u64, u64)>,
    pub checker: Checker,
}

impl Cluster {
    /// Builds a cluster of `size` nodes (ids 1..=size) with `configure` applied to each config.
    pub fn new(
        size: usize,
        seed: u64,
        network: NetworkConfig,
        configure: impl Fn(&mut RaftConfig),
    ) -> Cluster {
        let members: Vec<Member> = (1..=size as NodeId)
            .map(|id| Member {
                id,
                addr: format!("127.0.0.1:{}", 7000 + id),
            })
            .collect();
        let mut nodes = BTreeMap::new();
        for member in &members {
            let mut config = RaftConfig::new(member.id, members.clone());
            config.election_timeout = std::time::Duration::from_millis(300);
            config.heartbeat_interval = std::time::Duration::from_millis(50);
            configure(&mut config);
            let node = Node::new(
                config.clone(),
                HardState::default(),
                Vec::new(),
                node_seed(seed, member.id, 0),
                START_MS,
            );
            nodes.insert(
                member.id,
                SimNode {
                    config,
                    node: Some(node),
                    durable: Durable::default(),
                    writes: VecDeque::new(),
                    incarnation: 0,
                    paused_until: None,
                    next_tick_ms: START_MS + member.id,
                },
            );
        }
        Cluster {
            now_ms: START_MS,
            rng: StdRng::seed_from_u64(seed),
            seed,
            network,
            nodes,
            events: BinaryHeap::new(),
            event_slots: Vec::new(),
            free_slots: Vec::new(),
            event_seq: 0,
            cut: HashSet::new(),
            replies: BTreeMap::new(),
            drop_replies: HashSet::new(),
            checker: Checker::new(size),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Returns the running node `id`, or `None` while it is down.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id).and_then(|sim| sim.node.as_ref())
    }

    pub fn durable(&self, id: NodeId) -> &Durable {
        &self.nodes[&id].durable
    }

    pub fn is_paused(&self, id: NodeId) -> bool {
        self.nodes[&id].paused_until.is_some()
    }

    /// Returns the leader with the highest term among running, unpaused nodes.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, sim)| sim.paused_until.is_none())
            .filter_map(|(&id, sim)| sim.node.as_ref().map(|node| (id, node)))
            .filter(|(_, node)| node.role() == Role::Leader)
            .max_by_key(|(_, node)| node.term())
            .map(|(id, _)| id)
    }

    // ----- faults -----

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, group: &[NodeId]) {
        let ids = self.ids();
        for &a in group {
            for &b in &ids {
                if !group.contains(&b) {
                    self.cut.insert((a, b));
                    self.cut.insert((b, a));
                }
            }
        }
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut_link(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    pub fn isolate(&mut self, id: NodeId) {
        self.partition(&[id]);
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Stops `id` from running for `duration_ms`: no ticks, messages wait until it resumes.
    pub fn pause(&mut self, id: NodeId, duration_ms: u64) {
        let until = self.now_ms + duration_ms;
        let sim = self.nodes.get_mut(&id).expect("known node");
        sim.paused_until = Some(sim.paused_until.map_or(until, |u| u.max(until)));
    }

    /// Kills `id`: everything not yet durable is lost.
    pub fn crash(&mut self, id: NodeId) {
        let sim = self.nodes.get_mut(&id).expect("known node");
        if sim.node.take().is_some() {
            sim.writes.clear();
            sim.incarnation += 1;
            sim.paused_until = None;
            self.checker.node_restarted(id);
        }
    }

    /// Starts a crashed node from its durable hard state and log.
    pub fn restart(&mut self, id: NodeId) {
        let now = self.now_ms;
        let seed = self.seed;
        let sim = self.nodes.get_mut(&id).expect("known node");
        if sim.node.is_some() {
            return;
        }
        let node = Node::new(
            sim.config.clone(),
            sim.durable.hard_state,
            sim.durable.log.clone(),
            node_seed(seed, id, sim.incarnation),
            now,
        );
        sim.node = Some(node);
        sim.next_tick_ms = now + TICK_MS;
    }

    // ----- clients -----

    /// Sends a client request to node `to` through the network.
    pub fn send_client(&mut self, to: NodeId, client: ClientRef, request: ClientRequest) {
        if self.rng.random_bool(self.network.loss) {
            return;
        }
        let delay = self.delay();
        self.schedule(
            delay,
            Event::ClientRequest {
                to,
                client,
                request,
            },
        );
    }

    /// Drops the reply to `(conn, request_id)` when it is produced, as if the connection lost it.
    pub fn drop_reply(&mut self, conn: u64, request_id: u64) {
        self.drop_replies.insert((conn, request_id));
    }

    /// Replies delivered to connection `conn` since the last call.
    pub fn take_replies(&mut self, conn: u64) -> Vec<(ClientRef, Reply)> {
        self.replies.remove(&conn).unwrap_or_default()
    }

    // ----- running -----

    /// Runs until simulated time reaches `now + duration_ms`.
    pub fn run_for(&mut self, duration_ms: u64) {
        let until = self.now_ms + duration_ms;
        while self.step(until) {}
    }

    /// Runs until `done` returns true (checked after every step) or `max_ms` pass. Returns
    /// whether `done` returned true.
    pub fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&mut Cluster) -> bool) -> bool {
        let until = self.now_ms + max_ms;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                return done(self);
            }
        }
    }

    /// Processes everything due at the next instant not after `until`. Returns false once
    /// `until` is reached.
    pub fn step(&mut self, until: u64) -> bool {
        let next_event = self.events.peek().map(|Reverse((at, _, _))| *at);
        let next_tick = self
            .nodes
            .values()
            .filter(|sim| sim.node.is_some())
            .map(|sim| {
                sim.paused_until
                    .map_or(sim.next_tick_ms, |u| u.max(sim.next_tick_ms))
            })
            .min();
        let next = [next_event, next_tick].into_iter().flatten().min();
        let Some(next) = next.filter(|&next| next <= until) else {
            self.now_ms = self.now_ms.max(until);
            return false;
        };
        self.now_ms = self.now_ms.max(next);
        let now = self.now_ms;

        for id in self.ids() {
            let sim = self.nodes.get_mut(&id).expect("known node");
            if sim.paused_until.is_some_and(|until| until <= now) {
                sim.paused_until = None;
            }
        }

        while let Some(&Reverse((at, _, slot))) = self.events.peek() {
            if at > now {
                break;
            }
            self.events.pop();
            let event = self.event_slots[slot].take().expect("scheduled event");
            self.free_slots.push(slot);
            self.deliver(event);
        }

        for id in self.ids() {
            let sim = self.nodes.get_mut(&id).expect("known node");
            if sim.node.is_none() || sim.paused_until.is_some() || sim.next_tick_ms > now {
                continue;
            }
            sim.next_tick_ms = now + TICK_MS;
            sim.node.as_mut().expect("running").tick(now);
            self.process_ready(id);
        }
        true
    }

    fn deliver(&mut self, event: Event) {
        let now = self.now_ms;
        let target = match &event {
            Event::Peer(envelope) => Some(envelope.to),
            Event::ClientRequest { to, .. } => Some(*to),
            Event::IoDone { node, .. } => Some(*node),
            Event::ClientReply { .. } => None,
        };
        if let Some(target) = target {
            let sim = &self.nodes[&target];
            if let Some(until) = sim.paused_until {
                // A paused process handles its input when it resumes.
                self.schedule(until - now, event);
                return;
            }
            if sim.node.is_none() {
                return;
            }
        }

        match event {
            Event::Peer(envelope) => {
                if self.cut.contains(&(envelope.from, envelope.to)) {
                    return;
                }
                let to = envelope.to;
                let node = self.running(to);
                node.step_peer(now, envelope.from, envelope.message);
                self.process_ready(to);
            }
            Event::ClientRequest {
                to,
                client,
                request,
            } => {
                let node = self.running(to);
                node.step_client(now, client, request);
                self.process_ready(to);
            }
            Event::ClientReply { client, reply } => {
                self.replies
                    .entry(client.conn)
                    .or_default()
                    .push((client, reply));
            }
            Event::IoDone { node, incarnation } => {
                if self.nodes[&node].incarnation == incarnation {
                    self.complete_write(node);
                }
            }
        }
    }

    fn running(&mut self, id: NodeId) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .and_then(|sim| sim.node.as_mut())
            .expect("node is running")
    }

    /// Drains the node's Ready: checks it, queues its durable part, routes replies.
    fn process_ready(&mut self, id: NodeId) {
        let sim = self.nodes.get_mut(&id).expect("known node");
        let Some(node) = sim.node.as_mut() else {
            return;
        };
        let ready = node.take_ready();
        self.checker
            .check_ready(id, self.nodes[&id].node.as_ref().expect("running"), &ready);

        for (client, reply) in ready.replies {
            if self.drop_replies.remove(&(client.conn, client.request_id))
                || self.rng.random_bool(self.network.loss)
            {
                continue;
            }
            let delay = self.delay();
            self.schedule(delay, Event::ClientReply { client, reply });
        }

        let write = Write {
            hard_state: ready.hard_state,
            truncate_from: ready.truncate_from,
            entries: ready.entries,
            messages: ready.messages,
        };
        let has_io = write.hard_state.is_some()
            || write.truncate_from.is_some()
            || !write.entries.is_empty();
        let sim = self.nodes.get_mut(&id).expect("known node");
        if !has_io && sim.writes.is_empty() {
            self.send_messages(write.messages);
            return;
        }
        if write.messages.is_empty() && !has_io {
            return;
        }
        sim.writes.push_back(write);
        if sim.writes.len() == 1 {
            let incarnation = sim.incarnation;
            let delay = self.network.io_delay_ms;
            self.schedule(
                delay,
                Event::IoDone {
                    node: id,
                    incarnation,
                },
            );
        }
    }

    /// Makes the oldest queued write durable, reports it to the node and sends its messages.
    fn complete_write(&mut self, id: NodeId) {
        let now = self.now_ms;
        let sim = self.nodes.get_mut(&id).expect("known node");
        let Some(write) = sim.writes.pop_front() else {
            return;
        };
        if let Some(hard_state) = write.hard_state {
            sim.durable.hard_state = hard_state;
        }
        if let Some(from) = write.truncate_from {
            sim.durable.log.truncate(from.saturating_sub(1) as usize);
        }
        for entry in &write.entries {
            assert_eq!(
                entry.index,
                sim.durable.log.len() as u64 + 1,
                "simulated storage: node {id} appended a non-contiguous entry"
            );
            sim.durable.log.push(entry.clone());
        }
        if !sim.writes.is_empty() {
            let incarnation = sim.incarnation;
            let delay = self.network.io_delay_ms;
            self.schedule(
                delay,
                Event::IoDone {
                    node: id,
                    incarnation,
                },
            );
        }
        let sim = self.nodes.get_mut(&id).expect("known node");
        if let (Some(last), Some(node)) = (write.entries.last(), sim.node.as_mut()) {
            node.persisted(now, last.index, last.term);
        }
        self.send_messages(write.messages);
        self.process_ready(id);
    }

    fn send_messages(&mut self, messages: Vec<PeerEnvelope>) {
        for envelope in messages {
            if self.cut.contains(&(envelope.from, envelope.to))
                || self.rng.random_bool(self.network.loss)
            {
                continue;
            }
            if self.rng.random_bool(self.network.duplication) {
                let delay = self.delay();
                self.schedule(delay, Event::Peer(envelope.clone()));
            }
            let delay = self.delay();
            self.schedule(delay, Event::Peer(envelope));
        }
    }

    fn delay(&mut self) -> u64 {
        let (min, max) = (self.network.min_delay_ms, self.network.max_delay_ms);
        if max <= min {
            min
        } else {
            self.rng.random_range(min..=max)
        }
    }

    fn schedule(&mut self, delay_ms: u64, event: Event) {
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.event_slots[slot] = Some(event);
                slot
            }
            None => {
                self.event_slots.push(Some(event));
                self.event_slots.len() - 1
            }
        };
        self.event_seq += 1;
        self.events
            .push(Reverse((self.now_ms + delay_ms, self.event_seq, slot)));
    }
}

fn node_seed(seed: u64, id: NodeId, incarnation: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ id.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ incarnation.wrapping_mul(0x94D0_49BB_1331_11EB)
}

#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tests;
