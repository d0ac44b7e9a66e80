//! One load generator session: a client of the ringraft session protocol driving its share
//! of the workload.
//!
//! The session keeps one connection and registers a server session on it. Then each round
//! makes the operations that are due (by the fixed schedule in open loop, whenever a
//! pipeline slot is free in closed loop), sends them while fewer than `pipeline` are in
//! flight, sends a keep-alive when one is due, and waits for the next reply or deadline.
//!
//! Rules that keep the cluster's exactly-once guarantee and the history honest:
//! - A retry (after a redirect, a reconnect or "not leader, outcome unknown") resends the same
//!   (session, sequence). Commands are resent in their sequence order, because the server
//!   applies a session's commands only in order and without gaps.
//! - An attempt whose reply was never seen makes the operation *ambiguous*. A later definite
//!   rejection of an ambiguous operation is recorded as indeterminate, not failed. A later
//!   success is a success, because the server returns the cached result of a retried
//!   sequence instead of applying it again.
//! - A request with no final reply within `request_timeout` of its first send is
//!   indeterminate. A command timing out or being rejected leaves a gap in the session's
//!   sequence that no later command could pass, so the session then registers a new server
//!   session (and unregisters the old one, best effort).
//! - Operations of a server session that is gone (expired, unknown, abandoned) are never
//!   resent. Each is concluded by its own reply, its timeout, or the end of the run.
//!
//! NOTE: the server does not publish session events yet, so keep-alives acknowledge no
//! event beyond the session's register index.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringraft_protocol::{
    ClientError, ClientErrorReply, ClientFrame, ClientRequest, ClientResponse, Command, Member,
    Query, QueryResult, ServerFrame, SessionId,
};
use tracing::{debug, info, trace, warn};

use crate::args::WorkloadArgs;
use crate::connection::{ClusterView, ConnEvent, Connection};
use crate::control::RunControl;
use crate::history::{HistoryRecord, OpKind, Outcome};
use crate::stats::{Completion, ExecutorStats, RunTimes};
use crate::workload::{PlannedOp, Schedule, SessionStream};

/// Pause before resending after "no leader" or "unavailable", and the first reconnect delay.
const RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// Maximum pause between connection attempts.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// How long the session waits for the reply to its Unregister at the end of the run.
const UNREGISTER_WAIT: Duration = Duration::from_millis(500);

/// State shared by the sessions of one executor.
pub(crate) struct Shared {
    pub args: WorkloadArgs,
    pub seed: u64,
    pub times: RunTimes,
    pub control: RunControl,
    pub cluster: RefCell<ClusterView>,
    pub stats: RefCell<ExecutorStats>,
}

/// An operation that has been sent at least once, or is waiting to be sent again.
struct Pending {
    op: PlannedOp,
    intended: Instant,
    measured: bool,
    /// Order of first sends in this session, so resends keep the original order.
    order: u64,
    first_send: Instant,
    last_send: Instant,
    deadline: Instant,
    /// Server session the operation belongs to; an Add's sequence is meaningful only in it.
    server_session: SessionId,
    /// Command sequence of an Add (0 for a Query until it is sent).
    sequence: u64,
    ambiguous: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registration {
    None,
    /// A Register request is in flight under this request id.
    Pending {
        request_id: u64,
        deadline: Instant,
    },
    Active {
        session: SessionId,
        timeout: Duration,
    },
}

/// An open-loop backlog episode in progress.
struct Behind {
    since: Instant,
    resumed: Option<Instant>,
}

pub(crate) struct SessionDriver {
    index: u32,
    shared: Rc<Shared>,
    stream: SessionStream,
    schedule: Option<Schedule>,
    scheduled: u64,
    client_id: u128,

    conn: Option<Connection>,
    registration: Registration,
    /// Server sessions this session gave up; replies for their operations still conclude them.
    next_sequence: u64,
    seen_index: u64,
    next_request_id: u64,
    next_order: u64,
    keepalive_due: Option<Instant>,
    keepalive_request: Option<u64>,
    /// When the keep-alive in flight was sent; one without a reply is resent after an interval.
    keepalive_sent: Option<Instant>,
    /// When the current connection last delivered a frame (or was opened).
    last_frame_at: Option<Instant>,
    /// Target of the next connection, set when a redirect or a failure requires a new one.
    reconnect_to: Option<Option<String>>,
    failed_connects_in_row: u32,
    retry_not_before: Option<Instant>,
    lost_sessions: u64,
    /// Abandoned server sessions to unregister with the next write.
    unregister_queue: Vec<SessionId>,
    /// Address of the connection that was closed last, tried last when reconnecting.
    last_closed_addr: Option<String>,

    /// Due operations not sent yet, with their intended send time and measured flag.
    backlog: VecDeque<(PlannedOp, Instant, bool)>,
    resend: Vec<Pending>,
    in_flight: HashMap<u64, Pending>,
    behind: Option<Behind>,
}

impl SessionDriver {
    pub fn new(index: u32, shared: Rc<Shared>) -> Result<Self, String> {
        let args = &shared.args;
        let stream = SessionStream::new(args, shared.seed, index)?;
        let schedule = args
            .rate
            .map(|rate| Schedule::new(shared.times.start, rate, args.sessions, index));
        Ok(SessionDriver {
            index,
            stream,
            schedule,
            scheduled: 0,
            client_id: rand::random(),
            conn: None,
            registration: Registration::None,
            next_sequence: 1,
            seen_index: 0,
            next_request_id: 1,
            next_order: 0,
            keepalive_due: None,
            keepalive_request: None,
            keepalive_sent: None,
            last_frame_at: None,
            reconnect_to: None,
            failed_connects_in_row: 0,
            retry_not_before: None,
            lost_sessions: 0,
            unregister_queue: Vec::new(),
            last_closed_addr: None,
            backlog: VecDeque::new(),
            resend: Vec::new(),
            in_flight: HashMap::new(),
            behind: None,
            shared,
        })
    }

    fn open_loop(&self) -> bool {
        self.schedule.is_some()
    }

    fn pipeline(&self) -> usize {
        self.shared.args.pipeline
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    fn active_session(&self) -> Option<SessionId> {
        match self.registration {
            Registration::Active { session, .. } => Some(session),
            _ => None,
        }
    }

    /// Run the session until the end of the run or until the run is stopped.
    pub async fn run(mut self) {
        loop {
            let now = Instant::now();
            if now >= self.shared.times.end || self.shared.control.is_stopped() {
                break;
            }

            if let Some(target) = self.reconnect_to.take() {
                self.drop_connection("redirected or failed");
                self.connect(target).await;
                continue;
            }
            if self.conn.is_none() {
                self.connect(None).await;
                continue;
            }

            self.expire(now);
            self.check_unresponsive(now);
            if self.reconnect_to.is_some() {
                continue;
            }
            self.make_due_ops(now);
            if let Err(reason) = self.send_ready(now).await {
                self.connection_failed(reason);
                continue;
            }
            self.track_behind(Instant::now());

            let wake = self.next_wake(Instant::now());
            let Some(conn) = self.conn.as_ref() else {
                continue;
            };
            let wait = wake.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                // Let the reader task and the other sessions run before the next round.
                futures_lite::future::yield_now().await;
            }
            let event = futures_lite::future::or(async { Some(conn.events.recv().await) }, async {
                glommio::timer::sleep(wait).await;
                None
            })
            .await;
            let Some(first) = event else {
                continue;
            };
            self.handle_event(first);

            // Handle every reply that is already queued before the next round of sending,
            // so a burst of replies refills the pipeline with one write.
            while let Some(conn) = self.conn.as_ref() {
                if self.reconnect_to.is_some() {
                    break;
                }
                match futures_lite::future::poll_once(conn.events.recv()).await {
                    Some(event) => self.handle_event(event),
                    None => break,
                }
            }
        }

        self.finish().await;
    }

    fn handle_event(&mut self, event: Option<ConnEvent>) {
        match event {
            Some(ConnEvent::Frame(frame)) => self.on_frame(frame, Instant::now()),
            Some(ConnEvent::Closed(reason)) => self.connection_failed(reason),
            None => self.connection_failed("reader stopped".to_string()),
        }
    }

    // ----- connection management -----

    async fn connect(&mut self, target: Option<String>) {
        let failed_addr = self.last_closed_addr.take();
        let addr = match target {
            Some(addr) => addr,
            None => self
                .shared
                .cluster
                .borrow_mut()
                .next_target(failed_addr.as_deref()),
        };

        let args = &self.shared.args;
        let attempt = Connection::open(&addr, &args.cluster_id, args.connect_timeout);
        let remaining = self
            .shared
            .times
            .end
            .saturating_duration_since(Instant::now());
        let result = futures_lite::future::or(async { Some(attempt.await) }, async {
            glommio::timer::sleep(remaining).await;
            None
        })
        .await;

        match result {
            Some(Ok(conn)) => {
                debug!(session = self.index, addr = %addr, node = conn.node, "connected");
                self.shared
                    .cluster
                    .borrow_mut()
                    .learn_node(&addr, conn.node);
                self.shared.stats.borrow_mut().result.client.connects += 1;
                self.failed_connects_in_row = 0;
                self.conn = Some(conn);
                self.after_connect(Instant::now());
            }
            Some(Err(e)) => {
                self.shared
                    .stats
                    .borrow_mut()
                    .result
                    .client
                    .connect_failures += 1;
                if self.failed_connects_in_row == 0 {
                    warn!(session = self.index, addr = %addr, error = %e, "connection attempt failed; trying other members");
                } else {
                    debug!(session = self.index, addr = %addr, error = %e, "connection attempt failed");
                }
                self.failed_connects_in_row += 1;
                {
                    let mut cluster = self.shared.cluster.borrow_mut();
                    if let Some(leader) = cluster.leader() {
                        cluster.forget_leader(leader);
                    }
                }
                let backoff =
                    (RETRY_BACKOFF * self.failed_connects_in_row).min(MAX_RECONNECT_BACKOFF);
                let until = (Instant::now() + backoff).min(self.shared.times.end);
                glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
            }
            None => {}
        }
    }

    /// On a new connection: register if needed, and queue everything that was in flight.
    fn after_connect(&mut self, now: Instant) {
        self.last_frame_at = Some(now);
        if let Registration::Pending { .. } = self.registration {
            self.registration = Registration::None;
        }
        if self.active_session().is_some() {
            self.keepalive_due = Some(now);
        }
        self.keepalive_request = None;
    }

    /// Close the connection; everything in flight on it becomes ambiguous and waits for a
    /// resend.
    fn drop_connection(&mut self, reason: &str) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        debug!(session = self.index, addr = %conn.addr, reason, "closing connection");
        self.last_closed_addr = Some(conn.addr.clone());
        for (_, mut pending) in self.in_flight.drain() {
            pending.ambiguous = true;
            self.resend.push(pending);
        }
        self.keepalive_request = None;
        if let Registration::Pending { .. } = self.registration {
            // A Register whose reply is lost may still have opened a session on the cluster;
            // it will expire there unused.
            self.registration = Registration::None;
        }
    }

    fn connection_failed(&mut self, reason: String) {
        let addr = self
            .conn
            .as_ref()
            .map(|c| c.addr.clone())
            .unwrap_or_default();
        let node = self.conn.as_ref().map(|c| c.node);
        warn!(session = self.index, addr = %addr, in_flight = self.in_flight.len(), %reason, "connection lost; reconnecting");
        self.shared.stats.borrow_mut().result.client.disconnects += 1;
        if let Some(node) = node {
            self.shared.cluster.borrow_mut().forget_leader(node);
        }
        self.reconnect_to = Some(None);
    }

    /// Follow the leader a reply named, if it is not the member this connection reaches.
    fn follow_leader(&mut self, leader: Option<&Member>) {
        // A member that just left requests unanswered may still call itself leader (a paused
        // leader's followers do until they elect another): do not go back to it yet.
        let now = Instant::now();
        let leader = leader.filter(|m| !self.shared.cluster.borrow().is_suspect(m.id, now));
        let changed = self.shared.cluster.borrow_mut().observe_leader(leader);
        if changed {
            self.shared.control.set_leader(leader.map(|m| m.id));
            if let Some(m) = leader {
                info!(session = self.index, leader = m.id, addr = %m.addr, "leader changed");
            }
        }
        let Some(leader) = leader else {
            return;
        };
        let Some(conn) = &self.conn else {
            return;
        };
        if conn.node != leader.id && self.reconnect_to.is_none() {
            self.shared.stats.borrow_mut().result.client.redirects += 1;
            let target = self.shared.cluster.borrow_mut().next_target(None);
            self.reconnect_to = Some(Some(target));
        }
    }

    // ----- sending -----

    /// Move operations that are due into the backlog.
    fn make_due_ops(&mut self, now: Instant) {
        let times = self.shared.times;
        match self.schedule {
            Some(schedule) => loop {
                let intended = schedule.intended(self.scheduled);
                if intended > now || intended >= times.end {
                    break;
                }
                let op = self.stream.next_op();
                self.backlog
                    .push_back((op, intended, intended >= times.measure_start));
                self.scheduled += 1;
            },
            None => {
                if self.active_session().is_none() || now < times.start {
                    return;
                }
                let busy = self.in_flight.len() + self.resend.len() + self.backlog.len();
                for _ in busy..self.pipeline() {
                    let op = self.stream.next_op();
                    self.backlog
                        .push_back((op, now, now >= times.measure_start));
                }
            }
        }
    }

    /// Queue everything that may be sent now (unregisters, registration, keep-alive,
    /// resends, due operations) and write it in one flush.
    async fn send_ready(&mut self, now: Instant) -> Result<(), String> {
        let queued = self.queue_ready(now);
        let flushed = self.flush().await;
        queued.and(flushed)
    }

    fn queue_ready(&mut self, now: Instant) -> Result<(), String> {
        for session in std::mem::take(&mut self.unregister_queue) {
            let request_id = self.request_id();
            self.write(ClientFrame {
                request_id,
                request: ClientRequest::Unregister { session },
            })?;
        }

        let Some(session) = self.active_session() else {
            if self.registration == Registration::None {
                self.send_register(now)?;
            }
            return Ok(());
        };

        if self.keepalive_due.is_some_and(|due| due <= now) && self.keepalive_request.is_none() {
            self.send_keepalive(session)?;
        }

        let backing_off = self.retry_not_before.is_some_and(|t| t > now);
        if !backing_off {
            self.retry_not_before = None;
            self.resend.sort_by_key(|p| p.order);
            while self.in_flight.len() < self.pipeline() && !self.resend.is_empty() {
                let pending = self.resend.remove(0);
                if pending.server_session != session {
                    self.conclude_gone(
                        pending,
                        "the session it was sent in is gone",
                        Instant::now(),
                    );
                    continue;
                }
                self.shared
                    .stats
                    .borrow_mut()
                    .retried(pending.op.kind, pending.measured);
                self.transmit(pending)?;
            }
        }

        while self.in_flight.len() < self.pipeline() && self.resend.is_empty() {
            let Some((op, intended, measured)) = self.backlog.pop_front() else {
                break;
            };
            let now = Instant::now();
            if let Some(behind) = &mut self.behind {
                behind.resumed.get_or_insert(now);
            }
            let sequence = match op.kind {
                OpKind::Add => {
                    let s = self.next_sequence;
                    self.next_sequence += 1;
                    s
                }
                OpKind::Query => 0,
            };
            self.shared
                .stats
                .borrow_mut()
                .sent(op.kind, intended, now, measured, self.open_loop());
            let order = self.next_order;
            self.next_order += 1;
            let pending = Pending {
                op,
                intended,
                measured,
                order,
                first_send: now,
                last_send: now,
                deadline: now + self.shared.args.request_timeout,
                server_session: session,
                sequence,
                ambiguous: false,
            };
            self.transmit(pending)?;
        }
        Ok(())
    }

    /// Write one attempt of `pending` and track it in flight. On a write error the attempt
    /// counts as sent (it may have reached the server) and the error is returned.
    fn transmit(&mut self, mut pending: Pending) -> Result<(), String> {
        let request_id = self.request_id();
        let request = match pending.op.kind {
            OpKind::Add => ClientRequest::Command {
                session: pending.server_session,
                sequence: pending.sequence,
                command: Command::Add {
                    id: pending.op.id.unwrap_or_default(),
                    tag: pending.op.tag.clone(),
                    payload: pending.op.payload.clone(),
                },
            },
            OpKind::Query => {
                // The query observes at least the session's latest command and the highest
                // index this session has seen (read-your-writes).
                pending.sequence = self.next_sequence - 1;
                ClientRequest::Query {
                    session: pending.server_session,
                    sequence: pending.sequence,
                    index: self.seen_index,
                    consistency: self.shared.args.consistency,
                    query: Query::Tag {
                        tag: pending.op.tag.clone(),
                    },
                }
            }
        };
        pending.last_send = Instant::now();
        trace!(session = self.index, request_id, kind = ?pending.op.kind, sequence = pending.sequence, "sending");
        self.in_flight.insert(request_id, pending);
        self.write(ClientFrame {
            request_id,
            request,
        })
    }

    /// Queue one frame on the connection; `send_ready` flushes the queue once per round.
    fn write(&mut self, frame: ClientFrame) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".to_string());
        };
        conn.queue(&frame)
    }

    async fn flush(&mut self) -> Result<(), String> {
        match self.conn.as_mut() {
            Some(conn) => conn.flush().await,
            None => Err("not connected".to_string()),
        }
    }

    fn send_register(&mut self, now: Instant) -> Result<(), String> {
        if self.retry_not_before.is_some_and(|t| t > now) {
            return Ok(());
        }
        // A backoff that has passed must not stay set: next_wake would keep returning it and
        // the session loop would spin without ever parking, which starves glommio's I/O
        // completions (seen as replies sitting unread in the socket's receive queue).
        self.retry_not_before = None;
        let request_id = self.request_id();
        self.registration = Registration::Pending {
            request_id,
            deadline: now + self.shared.args.request_timeout,
        };
        let timeout_ms = self
            .shared
            .args
            .session_timeout
            .map(|t| t.as_millis() as u64);
        self.write(ClientFrame {
            request_id,
            request: ClientRequest::Register {
                client_id: self.client_id,
                timeout_ms,
            },
        })
    }

    /// Return the highest command sequence up to which every command of the session has its
    /// result. The keep-alive lets the server release those results.
    fn acknowledged_sequence(&self, session: SessionId) -> u64 {
        let outstanding = self
            .in_flight
            .values()
            .chain(self.resend.iter())
            .filter(|p| p.op.kind == OpKind::Add && p.server_session == session)
            .map(|p| p.sequence)
            .min();
        match outstanding {
            Some(lowest) => lowest - 1,
            None => self.next_sequence - 1,
        }
    }

    fn send_keepalive(&mut self, session: SessionId) -> Result<(), String> {
        let request_id = self.request_id();
        self.keepalive_request = Some(request_id);
        self.keepalive_sent = Some(Instant::now());
        self.keepalive_due = None;
        self.shared.stats.borrow_mut().result.client.keepalives_sent += 1;
        let command_sequence = self.acknowledged_sequence(session);
        self.write(ClientFrame {
            request_id,
            request: ClientRequest::KeepAlive {
                session,
                command_sequence,
                // No session events exist yet (the server does not publish any), so the
                // session acknowledges the index it was registered at, before which it
                // cannot have had events.
                event_index: session,
            },
        })
    }

    fn keepalive_interval(&self, timeout: Duration) -> Duration {
        let third = timeout / 3;
        match self.shared.args.keepalive {
            Some(configured) if configured <= third => configured,
            _ => third,
        }
    }

    // ----- receiving -----

    fn on_frame(&mut self, frame: ServerFrame, now: Instant) {
        self.last_frame_at = Some(now);
        let ServerFrame {
            request_id,
            response,
        } = frame;

        if let Some(pending) = self.in_flight.remove(&request_id) {
            self.on_op_reply(pending, response, now);
        } else if matches!(self.registration, Registration::Pending { request_id: r, .. } if r == request_id)
        {
            self.on_register_reply(response, now);
        } else if self.keepalive_request == Some(request_id) {
            self.keepalive_request = None;
            self.on_keepalive_reply(response, now);
        } else {
            debug!(
                session = self.index,
                request_id, "reply to a request no longer tracked"
            );
        }
    }

    fn on_register_reply(
        &mut self,
        response: Result<ClientResponse, ClientErrorReply>,
        now: Instant,
    ) {
        match response {
            Ok(ClientResponse::Register {
                session,
                timeout_ms,
                leader,
                ..
            }) => {
                let timeout = Duration::from_millis(timeout_ms);
                info!(
                    session = self.index,
                    server_session = session,
                    timeout_ms,
                    "registered"
                );
                let mut stats = self.shared.stats.borrow_mut();
                stats.result.client.registrations += 1;
                if self.lost_sessions > 0 {
                    stats.result.client.reregistrations += 1;
                }
                drop(stats);
                self.registration = Registration::Active { session, timeout };
                self.next_sequence = 1;
                self.keepalive_due = Some(now + self.keepalive_interval(timeout));
                self.follow_leader(leader.as_ref());
            }
            Ok(other) => {
                warn!(session = self.index, response = ?other, "unexpected response to Register; registering again");
                self.registration = Registration::None;
                self.retry_not_before = Some(now + RETRY_BACKOFF);
            }
            Err(reply) => {
                debug!(session = self.index, error = %reply.error, "Register rejected");
                self.registration = Registration::None;
                self.retry_not_before = Some(now + RETRY_BACKOFF);
                self.follow_leader(reply.leader.as_ref());
                if reply.error == ClientError::NotLeader && reply.leader.is_none() {
                    self.reconnect_to = Some(None);
                }
            }
        }
    }

    fn on_keepalive_reply(
        &mut self,
        response: Result<ClientResponse, ClientErrorReply>,
        now: Instant,
    ) {
        let Registration::Active { session, timeout } = self.registration else {
            return;
        };
        match response {
            Ok(ClientResponse::KeepAlive { leader, .. }) => {
                self.keepalive_due = Some(now + self.keepalive_interval(timeout));
                self.follow_leader(leader.as_ref());
            }
            Ok(other) => {
                warn!(session = self.index, response = ?other, "unexpected response to KeepAlive");
                self.keepalive_due = Some(now + RETRY_BACKOFF);
            }
            Err(reply) => {
                self.shared
                    .stats
                    .borrow_mut()
                    .result
                    .client
                    .keepalives_failed += 1;
                match reply.error {
                    ClientError::SessionExpired { .. } | ClientError::UnknownSession { .. } => {
                        self.session_lost(session, &reply.error.to_string());
                    }
                    _ => {
                        debug!(session = self.index, server_session = session, error = %reply.error, "keep-alive rejected; retrying");
                        self.keepalive_due = Some(now + RETRY_BACKOFF);
                        self.follow_leader(reply.leader.as_ref());
                    }
                }
            }
        }
    }

    fn on_op_reply(
        &mut self,
        mut pending: Pending,
        response: Result<ClientResponse, ClientErrorReply>,
        now: Instant,
    ) {
        match response {
            Ok(ClientResponse::Command { index, .. }) if pending.op.kind == OpKind::Add => {
                self.seen_index = self.seen_index.max(index);
                self.conclude(pending, Outcome::Ok, None, Some(index), None, now);
            }
            Ok(ClientResponse::Query {
                index,
                result: QueryResult::Ids(ids),
            }) if pending.op.kind == OpKind::Query => {
                self.seen_index = self.seen_index.max(index);
                self.conclude(pending, Outcome::Ok, Some(ids), Some(index), None, now);
            }
            Ok(other) => {
                warn!(session = self.index, kind = ?pending.op.kind, response = ?other, "response does not match the request");
                let error = format!("unexpected response {other:?}");
                self.conclude_rejected(pending, error, now);
            }
            Err(reply) => {
                let error = reply.error.clone();
                match error {
                    ClientError::NotLeader
                    | ClientError::NoLeader
                    | ClientError::Unavailable(_) => {
                        // Nothing was done: resend after a pause or at the leader.
                        self.retry_not_before = Some(now + RETRY_BACKOFF);
                        self.resend.push(pending);
                        self.follow_leader(reply.leader.as_ref());
                        if error == ClientError::NotLeader && reply.leader.is_none() {
                            self.reconnect_to.get_or_insert(None);
                        }
                    }
                    ClientError::OutcomeUnknown => {
                        pending.ambiguous = true;
                        self.retry_not_before = Some(now + RETRY_BACKOFF);
                        self.resend.push(pending);
                        self.follow_leader(reply.leader.as_ref());
                    }
                    ClientError::SessionExpired { .. } | ClientError::UnknownSession { .. } => {
                        let session = pending.server_session;
                        self.conclude_rejected(pending, error.to_string(), now);
                        self.session_lost(session, &error.to_string());
                    }
                    ClientError::SequenceReleased { .. } => {
                        // The server applied this sequence earlier and has released the result.
                        self.conclude(
                            pending,
                            Outcome::Indeterminate,
                            None,
                            None,
                            Some(error.to_string()),
                            now,
                        );
                    }
                    ClientError::InvalidRequest(_) => {
                        warn!(session = self.index, kind = ?pending.op.kind, error = %error, "request rejected as invalid");
                        self.conclude_rejected(pending, error.to_string(), now);
                    }
                }
            }
        }
    }

    // ----- concluding operations -----

    /// Conclude an operation the cluster definitely did not apply in this attempt.
    fn conclude_rejected(&mut self, pending: Pending, error: String, now: Instant) {
        let outcome = if pending.ambiguous {
            Outcome::Indeterminate
        } else {
            Outcome::Failed
        };
        let breaks_sequence =
            pending.op.kind == OpKind::Add && Some(pending.server_session) == self.active_session();
        let session = pending.server_session;
        self.conclude(pending, outcome, None, None, Some(error), now);
        if breaks_sequence {
            self.abandon_session(session, "a command was rejected");
        }
    }

    /// Conclude an operation that would need a resend in a session that no longer exists.
    fn conclude_gone(&mut self, pending: Pending, error: &str, now: Instant) {
        let outcome = if pending.ambiguous {
            Outcome::Indeterminate
        } else {
            Outcome::Failed
        };
        self.conclude(pending, outcome, None, None, Some(error.to_string()), now);
    }

    fn conclude(
        &mut self,
        pending: Pending,
        outcome: Outcome,
        output: Option<Vec<u64>>,
        index: Option<u64>,
        error: Option<String>,
        now: Instant,
    ) {
        let times = self.shared.times;
        let record = HistoryRecord {
            session: self.index,
            server_session: Some(pending.server_session),
            kind: pending.op.kind,
            sequence: pending.sequence,
            tag: pending.op.tag,
            id: pending.op.id,
            invoke_ns: times.since_start_ns(pending.first_send),
            complete_ns: times.since_start_ns(now),
            outcome,
            output,
            index,
            error,
        };
        self.shared.stats.borrow_mut().complete(Completion {
            record,
            intended: pending.intended,
            last_send: pending.last_send,
            completed: now,
            measured: pending.measured,
        });
    }

    /// Conclude operations whose request timeout passed.
    /// Send time of the oldest request on the current connection still waiting for a reply.
    fn oldest_outstanding(&self) -> Option<Instant> {
        let register = match self.registration {
            Registration::Pending { deadline, .. } => {
                deadline.checked_sub(self.shared.args.request_timeout)
            }
            _ => None,
        };
        let keepalive = self
            .keepalive_sent
            .filter(|_| self.keepalive_request.is_some());
        self.in_flight
            .values()
            .map(|p| p.last_send)
            .chain(register)
            .chain(keepalive)
            .min()
    }

    /// When the failover timeout of the current connection runs out, if it is armed.
    fn failover_deadline(&self) -> Option<Instant> {
        let limit = self.shared.args.failover_timeout;
        if limit.is_zero() || self.conn.is_none() || self.reconnect_to.is_some() {
            return None;
        }
        let oldest = self.oldest_outstanding()?;
        let quiet_since = self.last_frame_at.map_or(oldest, |t| t.max(oldest));
        Some(quiet_since + limit)
    }

    /// Leave a member that has answered nothing for the failover timeout while requests
    /// wait: a stopped or partitioned leader keeps its connections open, so without this the
    /// session would wait for the request timeout. Requests in flight are resent elsewhere
    /// with their sequence numbers, so none is applied twice.
    fn check_unresponsive(&mut self, now: Instant) {
        let Some(deadline) = self.failover_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let limit = self.shared.args.failover_timeout;
        info!(
            session = self.index,
            node = conn.node,
            addr = %conn.addr,
            in_flight = self.in_flight.len(),
            failover_timeout = ?limit,
            "no reply from member within the failover timeout; trying the others"
        );
        // Skip it for a few timeouts: long enough for the others to elect a new leader, short
        // enough that a member that was only slow is used again soon.
        self.shared
            .cluster
            .borrow_mut()
            .suspect(conn.node, now + limit * 4);
        self.shared.control.set_leader(None);
        self.reconnect_to = Some(None);
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut timed_out: Vec<Pending> = expired
            .into_iter()
            .filter_map(|id| self.in_flight.remove(&id))
            .collect();
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.resend)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.resend = keep;
        timed_out.extend(late);

        let timeout = self.shared.args.request_timeout;
        for pending in timed_out {
            let breaks_sequence = pending.op.kind == OpKind::Add
                && Some(pending.server_session) == self.active_session();
            let session = pending.server_session;
            debug!(session = self.index, kind = ?pending.op.kind, sequence = pending.sequence, "request timed out");
            let error = format!("no reply within the request timeout of {timeout:?}");
            self.conclude(
                pending,
                Outcome::Indeterminate,
                None,
                None,
                Some(error),
                now,
            );
            if breaks_sequence {
                self.abandon_session(session, "a command timed out");
            }
        }

        if let (Registration::Active { session, timeout }, Some(sent)) =
            (self.registration, self.keepalive_sent)
        {
            let interval = self.keepalive_interval(timeout);
            if self.keepalive_request.is_some() && sent + interval <= now {
                warn!(
                    session = self.index,
                    server_session = session,
                    "no reply to a keep-alive; sending another"
                );
                self.shared
                    .stats
                    .borrow_mut()
                    .result
                    .client
                    .keepalives_failed += 1;
                self.keepalive_request = None;
                self.keepalive_due = Some(now);
            }
        }

        if let Registration::Pending { deadline, .. } = self.registration {
            if deadline <= now {
                warn!(
                    session = self.index,
                    "no reply to Register; trying another member"
                );
                self.registration = Registration::None;
                self.reconnect_to = Some(None);
            }
        }
    }

    /// Register a new session because the cluster no longer has `session`.
    fn session_lost(&mut self, session: SessionId, reason: &str) {
        if self.active_session() != Some(session) {
            return;
        }
        warn!(
            session = self.index,
            server_session = session,
            reason,
            "session lost; registering a new one"
        );
        self.shared
            .stats
            .borrow_mut()
            .result
            .client
            .sessions_expired += 1;
        self.lost_sessions += 1;
        self.registration = Registration::None;
        self.keepalive_due = None;
        self.keepalive_request = None;
    }

    /// Give up `session` because its command sequence has a gap, and register a new one.
    fn abandon_session(&mut self, session: SessionId, reason: &str) {
        if self.active_session() != Some(session) {
            return;
        }
        warn!(
            session = self.index,
            server_session = session,
            reason,
            "abandoning the session; registering a new one"
        );
        self.lost_sessions += 1;
        self.registration = Registration::None;
        self.keepalive_due = None;
        self.keepalive_request = None;

        // Best effort: tell the cluster the old session is done so it does not count as
        // expired later. The reply is not tracked.
        self.unregister_queue.push(session);
    }

    // ----- timing -----

    fn next_wake(&self, now: Instant) -> Instant {
        // Times already passed were handled in this round or cannot be acted on yet (for
        // example a keep-alive while not registered). Waiting for them would spin and starve
        // the other tasks of the executor.
        let mut wake = self.shared.times.end;
        let mut consider = |t: Instant| {
            if t > now && t < wake {
                wake = t;
            }
        };

        if now < self.shared.times.start {
            consider(self.shared.times.start);
        }

        if let Some(schedule) = self.schedule {
            if self.in_flight.len() < self.pipeline() {
                consider(schedule.intended(self.scheduled));
            }
        }
        if let Some(due) = self.keepalive_due {
            consider(due);
        }
        if let (Registration::Active { timeout, .. }, Some(sent), Some(_)) = (
            self.registration,
            self.keepalive_sent,
            self.keepalive_request,
        ) {
            consider(sent + self.keepalive_interval(timeout));
        }
        for p in self.in_flight.values().chain(self.resend.iter()) {
            consider(p.deadline);
        }
        if let Some(t) = self.retry_not_before.filter(|t| *t > now) {
            consider(t);
        }
        if let Registration::Pending { deadline, .. } = self.registration {
            consider(deadline);
        }
        if let Some(deadline) = self.failover_deadline() {
            consider(deadline);
        }
        // Check the run's stop flag at least every 100 ms.
        consider(now + Duration::from_millis(100));
        wake.max(now)
    }

    fn track_behind(&mut self, now: Instant) {
        if !self.open_loop() {
            return;
        }
        let backlog = self.backlog.len() as u64;
        if backlog > 0 {
            let oldest = self.backlog.front().map(|(_, t, _)| *t).unwrap_or(now);
            self.behind.get_or_insert(Behind {
                since: oldest,
                resumed: None,
            });
            let mut stats = self.shared.stats.borrow_mut();
            stats.result.behind.max_backlog = stats.result.behind.max_backlog.max(backlog);
        } else if let Some(behind) = self.behind.take() {
            let resumed = behind.resumed.unwrap_or(now);
            let stall = resumed.saturating_duration_since(behind.since);
            let catch_up = now.saturating_duration_since(resumed);
            self.shared
                .stats
                .borrow_mut()
                .result
                .behind
                .record_episode(stall, catch_up);
        }
    }

    // ----- end of the run -----

    async fn finish(&mut self) {
        let now = Instant::now();
        let times = self.shared.times;

        let unfinished: Vec<Pending> = self
            .in_flight
            .drain()
            .map(|(_, p)| p)
            .chain(self.resend.drain(..))
            .collect();
        for pending in unfinished {
            let record = HistoryRecord {
                session: self.index,
                server_session: Some(pending.server_session),
                kind: pending.op.kind,
                sequence: pending.sequence,
                tag: pending.op.tag,
                id: pending.op.id,
                invoke_ns: times.since_start_ns(pending.first_send),
                complete_ns: times.since_start_ns(now),
                outcome: Outcome::Indeterminate,
                output: None,
                index: None,
                error: Some("still in flight when the run ended".to_string()),
            };
            self.shared
                .stats
                .borrow_mut()
                .in_flight_at_end(record, pending.measured);
        }
        if let Some(behind) = self.behind.take() {
            let resumed = behind.resumed.unwrap_or(now);
            self.shared.stats.borrow_mut().result.behind.record_episode(
                resumed.saturating_duration_since(behind.since),
                now.saturating_duration_since(resumed),
            );
        }
        self.shared.stats.borrow_mut().result.client.unsent_at_end += self.backlog.len() as u64;

        self.unregister().await;
    }

    /// Close the server session so it does not expire later and count as a lost session.
    async fn unregister(&mut self) {
        let Some(session) = self.active_session() else {
            return;
        };
        let request_id = self.request_id();
        let frame = ClientFrame {
            request_id,
            request: ClientRequest::Unregister { session },
        };
        if self.write(frame).is_err() || self.flush().await.is_err() {
            return;
        }
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let deadline = Instant::now() + UNREGISTER_WAIT;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                debug!(
                    session = self.index,
                    server_session = session,
                    "no reply to Unregister"
                );
                return;
            }
            let event = futures_lite::future::or(async { conn.events.recv().await }, async {
                glommio::timer::sleep(wait).await;
                None
            })
            .await;
            match event {
                Some(ConnEvent::Frame(frame)) if frame.request_id == request_id => {
                    if let Err(reply) = frame.response {
                        debug!(session = self.index, server_session = session, error = %reply.error, "Unregister rejected");
                    }
                    return;
                }
                Some(ConnEvent::Frame(_)) => {}
                Some(ConnEvent::Closed(_)) | None => return,
            }
        }
    }
}
