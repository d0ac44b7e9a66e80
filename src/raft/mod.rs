//! The sans-IO Raft consensus core.
//!
//! [`Node`] is a deterministic state machine: the runtime feeds it peer messages, client requests,
//! ticks and storage completions, each with the current time in milliseconds, and drains a
//! [`Ready`] that lists what to persist, what to send and which clients to answer. There are no
//! sockets, threads, clocks, files or global random numbers inside: the election timeout is drawn
//! from a generator seeded at construction, so a simulation with the same seed and inputs replays
//! exactly.
//!
//! The protocol is Raft with the extensions Atomix Copycat used: pre-vote (PollRequest before
//! VoteRequest), check-quorum, a Configuration entry appended by each new leader, client sessions
//! with exactly-once commands and three query consistency levels. The code is split by concept:
//! `election` (pre-vote, votes, role changes), `replication` (append pipeline, commit, apply),
//! `read` (read index and lease queries), `sessions` (client requests, command gating, expiry).
//!
//! Invariants the runtime relies on (see [`Ready`]):
//! - term and vote are handed out for persistence before any message that depends on them;
//! - a follower acknowledges entries only after the runtime reports them durable
//!   ([`Node::persisted`]), and a leader counts itself in a quorum only up to its own durable index;
//! - committed entries are never truncated (asserted).
//!
//! NOTE: no snapshots, no membership changes and no leadership transfer yet: the member list is
//! fixed at construction and the whole log stays in memory.

mod election;
mod log;
mod read;
mod replication;
mod sessions;
pub mod sim;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringraft_protocol::{
    ClientError, ClientErrorReply, ClientRequest, ClientResponse, Consistency, EntryPayload,
    LogEntry, LogIndex, Member, NodeId, NodeStatus, PeerEnvelope, PeerMessage, Query, Role,
    SessionId, StorageStatus, Term,
};

use crate::state_machine::StateMachine;

pub use self::log::RaftLog;

/// Settings of one Raft node. Durations are rounded down to milliseconds.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    pub id: NodeId,
    /// Every voting member, this node included.
    pub members: Vec<Member>,
    /// Minimum election timeout; each timer is drawn uniformly from `[min, 2 * min)`.
    pub election_timeout: Duration,
    /// Interval between leader heartbeats; keep it well below the election timeout.
    pub heartbeat_interval: Duration,
    /// Maximum number of entries in one AppendRequest.
    pub max_append_entries: usize,
    /// Maximum encoded payload bytes (estimated) in one AppendRequest; one entry is always sent
    /// even if it is larger.
    pub max_append_bytes: usize,
    /// Maximum AppendRequests carrying entries in flight to one follower.
    pub max_inflight_appends: usize,
    /// Session timeout written into Register entries that do not ask for one.
    pub default_session_timeout: Duration,
    /// Maximum commands buffered by the leader while they wait for an earlier sequence of their
    /// session (summed over all sessions).
    pub max_pending_commands: usize,
}

impl RaftConfig {
    /// Builds a configuration with ringraft's defaults for the given node and members.
    pub fn new(id: NodeId, members: Vec<Member>) -> Self {
        RaftConfig {
            id,
            members,
            election_timeout: Duration::from_millis(1000),
            heartbeat_interval: Duration::from_millis(100),
            max_append_entries: 1024,
            max_append_bytes: 256 * 1024,
            max_inflight_appends: 4,
            default_session_timeout: Duration::from_millis(5000),
            max_pending_commands: 4096,
        }
    }

    fn election_timeout_ms(&self) -> u64 {
        self.election_timeout.as_millis() as u64
    }

    fn heartbeat_ms(&self) -> u64 {
        self.heartbeat_interval.as_millis() as u64
    }
}

/// Term and vote, which must be durable before any message that depends on them is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
}

/// The client connection and request a reply goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientRef {
    pub conn: u64,
    pub request_id: u64,
}

pub type ClientReply = (ClientRef, Result<ClientResponse, ClientErrorReply>);

/// Output of a node since the last [`Node::take_ready`], in the order the runtime must act on it.
/// First persist `hard_state`, then truncate from `truncate_from`, then append `entries` and call
/// [`Node::persisted`] once they are durable. Send `messages` only after those three steps are
/// durable. `replies` may be sent at once, because the core replies to a client only for
/// entries already committed or for reads already confirmed.
#[derive(Debug, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    pub truncate_from: Option<LogIndex>,
    pub entries: Vec<LogEntry>,
    pub messages: Vec<PeerEnvelope>,
    pub replies: Vec<ClientReply>,
    pub role_change: Option<(Role, Term)>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.replies.is_empty()
            && self.role_change.is_none()
    }
}

/// Client that gets a reply once the entry at some index is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    Client(ClientRef),
}

/// A query parked until the node's state is recent enough.
#[derive(Clone, Debug)]
struct PendingRead {
    client: ClientRef,
    query: Query,
    /// The query is served once `applied_index >= index`.
    index: LogIndex,
    /// Leadership round that must be confirmed by a quorum first (0 = none needed).
    round: u64,
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
struct Progress {
    /// Next index to send.
    next_index: LogIndex,
    /// Highest index known to be durable on the follower.
    match_index: LogIndex,
    /// AppendRequests with entries that got no response yet.
    inflight: VecDeque<Inflight>,
    /// Every request sent without a response yet, by seq: (leadership round, send time).
    sent: BTreeMap<u64, (u64, u64)>,
    next_seq: u64,
    /// Latest round confirmed by a response of this follower.
    acked_round: u64,
    /// Send time of the latest request this follower answered in this term (lease basis).
    acked_sent_ms: Option<u64>,
    /// Time the last response from this follower arrived (check-quorum).
    last_response_ms: u64,
    /// After a rejection: send one request at a time until the follower accepts again.
    probing: bool,
}

#[derive(Clone, Copy, Debug)]
struct Inflight {
    seq: u64,
    prev_log_index: LogIndex,
    sent_ms: u64,
}

/// Per-session command bookkeeping on the leader.
#[derive(Clone, Debug, Default)]
struct SessionTrack {
    /// Highest sequence appended to the log (applied or not) for this session.
    last_logged: u64,
    /// Commands whose sequence skips ahead, waiting for the gap to fill.
    buffered: BTreeMap<u64, BufferedCommand>,
}

#[derive(Clone, Debug)]
struct BufferedCommand {
    clients: Vec<ClientRef>,
    command: ringraft_protocol::Command,
}

/// State that exists only while this node leads.
#[derive(Debug, Default)]
struct LeaderState {
    progress: HashMap<NodeId, Progress>,
    /// Index of this term's first entry; nothing from older terms commits before it does.
    term_start_index: LogIndex,
    /// Session expiry decisions wait until the entry at this index is applied: it resets every
    /// session timer (the term's first entry, or a fresh one after a pause).
    expiry_barrier: LogIndex,
    /// Sessions with an expiry Unregister in the log, not applied yet.
    expiring: HashSet<SessionId>,
    /// Clients waiting for the entry at an index to be applied.
    waiters: BTreeMap<LogIndex, Vec<Waiter>>,
    /// Index of each logged, unapplied command by (session, sequence), so a retry attaches to it.
    logged_commands: HashMap<(SessionId, u64), LogIndex>,
    sessions: HashMap<SessionId, SessionTrack>,
    buffered_total: usize,
    /// Leadership round: bumped by every heartbeat broadcast; a read joins the next one.
    round: u64,
    /// Reads waiting for a round to be confirmed or for the apply index.
    reads: Vec<PendingRead>,
    /// A read is waiting for a round that has not started yet.
    round_requested: bool,
    heartbeat_due_ms: u64,
    became_leader_ms: u64,
}

/// Follower acknowledgement deferred until the entries it covers are durable.
#[derive(Clone, Copy, Debug)]
struct PendingAck {
    to: NodeId,
    term: Term,
    seq: u64,
    covered: LogIndex,
    covered_term: Term,
}

/// One Raft node. See the module documentation.
pub struct Node {
    config: RaftConfig,
    id: NodeId,
    peers: Vec<NodeId>,
    rng: StdRng,

    term: Term,
    voted_for: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,

    log: RaftLog,
    commit_index: LogIndex,
    /// Highest index the runtime reported durable for the current log contents.
    persisted_index: LogIndex,
    state_machine: StateMachine,

    election_deadline_ms: u64,
    /// When this node last heard from a live leader (AppendRequest of the current term).
    leader_contact_ms: Option<u64>,
    /// Largest `now_ms` seen in any call, for detecting pauses.
    last_seen_ms: u64,
    polls: HashSet<NodeId>,
    votes: HashSet<NodeId>,
    elections_started: u64,

    leader_state: Option<LeaderState>,
    pending_acks: Vec<PendingAck>,
    /// Sequential queries waiting for the apply index (any role).
    sequential_reads: Vec<PendingRead>,

    ready: Ready,
    hard_state_dirty: bool,
}

impl Node {
    /// Creates a node from its durable state: term and vote, and the log recovered from storage.
    /// Every recovered entry counts as durable. The node starts as a follower with commit index 0
    /// and replays the log into its state machine as it learns the commit index.
    pub fn new(
        config: RaftConfig,
        hard_state: HardState,
        log: Vec<LogEntry>,
        rng_seed: u64,
        now_ms: u64,
    ) -> Node {
        assert!(
            config.members.iter().any(|member| member.id == config.id),
            "node {} must be in the member list",
            config.id
        );
        let id = config.id;
        let peers = config
            .members
            .iter()
            .map(|member| member.id)
            .filter(|&member| member != id)
            .collect();
        let log = RaftLog::from_entries(log);
        let persisted_index = log.last_index();
        let mut node = Node {
            config,
            id,
            peers,
            rng: StdRng::seed_from_u64(rng_seed),
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            role: Role::Follower,
            leader: None,
            log,
            commit_index: 0,
            persisted_index,
            state_machine: StateMachine::new(),
            election_deadline_ms: 0,
            leader_contact_ms: None,
            last_seen_ms: now_ms,
            polls: HashSet::new(),
            votes: HashSet::new(),
            elections_started: 0,
            leader_state: None,
            pending_acks: Vec::new(),
            sequential_reads: Vec::new(),
            ready: Ready::default(),
            hard_state_dirty: false,
        };
        node.reset_election_timer(now_ms);
        node
    }

    /// Advances timers: elections on followers and candidates; heartbeats, check-quorum and
    /// session expiry on the leader.
    pub fn tick(&mut self, now_ms: u64) {
        self.observe_time(now_ms);
        match self.role {
            Role::Leader => self.tick_leader(now_ms),
            _ => {
                if now_ms >= self.election_deadline_ms {
                    self.start_pre_vote(now_ms);
                }
            }
        }
    }

    /// Handles one message from a peer.
    pub fn step_peer(&mut self, now_ms: u64, from: NodeId, message: PeerMessage) {
        self.observe_time(now_ms);
        if from == self.id || !self.peers.contains(&from) {
            tracing::warn!(
                node = self.id,
                from,
                "dropped message from a node that is not a peer"
            );
            return;
        }
        tracing::trace!(node = self.id, from, ?message, "received peer message");
        match message {
            PeerMessage::PollRequest(request) => self.handle_poll_request(now_ms, from, request),
            PeerMessage::PollResponse(response) => {
                self.handle_poll_response(now_ms, from, response)
            }
            PeerMessage::VoteRequest(request) => self.handle_vote_request(now_ms, from, request),
            PeerMessage::VoteResponse(response) => {
                self.handle_vote_response(now_ms, from, response)
            }
            PeerMessage::AppendRequest(request) => {
                self.handle_append_request(now_ms, from, request)
            }
            PeerMessage::AppendResponse(response) => {
                self.handle_append_response(now_ms, from, response)
            }
            PeerMessage::AcceptRequest(request) => {
                self.handle_accept_request(now_ms, from, request)
            }
        }
        self.after_input(now_ms);
    }

    /// Handles one client request; the reply comes out in a later or the same [`Ready`].
    pub fn step_client(&mut self, now_ms: u64, client: ClientRef, request: ClientRequest) {
        self.observe_time(now_ms);
        tracing::debug!(
            node = self.id,
            conn = client.conn,
            request_id = client.request_id,
            ?request,
            "client request"
        );
        self.handle_client_request(now_ms, client, request);
        self.after_input(now_ms);
    }

    /// Drops every waiter of connection `conn`: its replies could not be delivered. Commands it
    /// sent stay in the log and apply anyway.
    pub fn client_disconnected(&mut self, conn: u64) {
        if let Some(leader) = self.leader_state.as_mut() {
            for waiters in leader.waiters.values_mut() {
                waiters.retain(|Waiter::Client(client)| client.conn != conn);
            }
            leader.waiters.retain(|_, waiters| !waiters.is_empty());
            leader.reads.retain(|read| read.client.conn != conn);
            for track in leader.sessions.values_mut() {
                for buffered in track.buffered.values_mut() {
                    buffered.clients.retain(|client| client.conn != conn);
                }
            }
        }
        self.sequential_reads
            .retain(|read| read.client.conn != conn);
    }

    /// Records that entries up to `index`, whose entry at `index` has `term`, are durable. A
    /// report for entries that were truncated and replaced since is ignored.
    pub fn persisted(&mut self, now_ms: u64, index: LogIndex, term: Term) {
        self.observe_time(now_ms);
        if self.log.term_at(index) != Some(term) || index <= self.persisted_index {
            return;
        }
        self.persisted_index = index;
        self.flush_pending_acks();
        if self.role == Role::Leader {
            self.advance_leader_commit(now_ms);
        }
        self.after_input(now_ms);
    }

    /// Drains everything produced since the last call.
    pub fn take_ready(&mut self) -> Ready {
        self.replicate_pending(self.last_seen_ms);
        if self.hard_state_dirty {
            self.hard_state_dirty = false;
            self.ready.hard_state = Some(self.hard_state());
        }
        std::mem::take(&mut self.ready)
    }

    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            id: self.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit_index: self.commit_index,
            applied_index: self.state_machine.applied_index(),
            last_log_index: self.log.last_index(),
            members: self.config.members.clone(),
            open_sessions: self.state_machine.open_sessions(),
            expired_sessions: self.state_machine.expired_total(),
            elections_started: self.elections_started,
            storage: StorageStatus::default(),
        }
    }

    pub fn state_machine(&self) -> &StateMachine {
        &self.state_machine
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }

    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// Leadership rounds (heartbeat broadcasts) this leader started in its term; 0 on other
    /// roles. Read batching shows in it: concurrent linearizable reads share rounds.
    pub fn leader_round(&self) -> u64 {
        self.leader_state.as_ref().map_or(0, |leader| leader.round)
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
        }
    }

    // ----- shared helpers -----

    fn quorum(&self) -> usize {
        let members = self.peers.len() + 1;
        members / 2 + 1
    }

    fn reset_election_timer(&mut self, now_ms: u64) {
        let min = self.config.election_timeout_ms().max(1);
        self.election_deadline_ms = now_ms + self.rng.random_range(min..2 * min);
    }

    /// Notices a pause: a gap between calls longer than the election timeout (a GC stall, a
    /// stopped process or VM). A leader must not treat the gap as session inactivity.
    fn observe_time(&mut self, now_ms: u64) {
        let gap = now_ms.saturating_sub(self.last_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        if gap > self.config.election_timeout_ms() {
            tracing::info!(node = self.id, gap_ms = gap, role = %self.role, term = self.term, "node was paused longer than the election timeout");
            if self.role == Role::Leader {
                self.leader_resumed_after_pause(now_ms);
            }
        }
    }

    /// Work shared by every input: apply what committed, answer reads that became ready, start
    /// a read round that some read waits for.
    fn after_input(&mut self, now_ms: u64) {
        self.apply_committed(now_ms);
        self.serve_ready_reads();
        self.start_requested_round(now_ms);
    }

    fn send(&mut self, to: NodeId, message: PeerMessage) {
        tracing::trace!(node = self.id, to, ?message, "sending peer message");
        self.ready.messages.push(PeerEnvelope {
            from: self.id,
            to,
            message,
        });
    }

    fn member(&self, id: NodeId) -> Option<Member> {
        self.config
            .members
            .iter()
            .find(|member| member.id == id)
            .cloned()
    }

    fn leader_member(&self) -> Option<Member> {
        self.leader.and_then(|leader| self.member(leader))
    }

    fn error_reply(&self, error: ClientError) -> ClientErrorReply {
        ClientErrorReply {
            error,
            leader: self.leader_member(),
            members: self.config.members.clone(),
        }
    }

    fn reply(&mut self, client: ClientRef, response: Result<ClientResponse, ClientError>) {
        let response = response.map_err(|error| self.error_reply(error));
        tracing::debug!(
            node = self.id,
            conn = client.conn,
            request_id = client.request_id,
            ?response,
            "client reply"
        );
        self.ready.replies.push((client, response));
    }

    /// Returns the error for a request that only the leader serves.
    fn not_leader_error(&self) -> ClientError {
        if self.leader.is_some() {
            ClientError::NotLeader
        } else {
            ClientError::NoLeader
        }
    }

    /// Appends an entry of the current term to the leader's log and hands it to the runtime.
    fn append_entry(&mut self, now_ms: u64, payload: EntryPayload) -> LogIndex {
        debug_assert_eq!(self.role, Role::Leader);
        let index = self.log.last_index() + 1;
        let entry = LogEntry {
            index,
            term: self.term,
            timestamp_ms: now_ms,
            payload,
        };
        self.log.push(entry.clone());
        self.ready.entries.push(entry);
        index
    }

    fn consistency_needs_leader(consistency: Consistency) -> bool {
        consistency != Consistency::Sequential
    }
}
