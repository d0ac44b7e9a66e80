//! Client requests and the leader's side of sessions: command gating, replies after apply,
//! failing pending requests on step-down, and session expiry.
//!
//! Command gating: the leader appends a command only when its sequence is the next one for its
//! session, counting commands already in the log but not applied. A retried sequence attaches to
//! the pending entry or gets the cached result. A sequence that skips ahead waits in a bounded
//! buffer (`max_pending_commands` over all sessions) until the gap fills. It fails with
//! `Unavailable` when the buffer is full, or with the session's error when the session closes.
//!
//! Expiry: only the leader proposes `Unregister { expired: true }`, for the sessions the state
//! machine lists at the leader's clock, and only once the state machine has applied an entry of
//! this leader that reset every session timer: the term's first entry, or a fresh Configuration
//! entry appended after the leader noticed it had been paused longer than an election timeout.
//! A pause or a failover shorter than the session timeout therefore expires nothing.

use ringraft_protocol::{
    AcceptRequest, ClientError, ClientRequest, ClientResponse, Command, EntryPayload, LogEntry,
    NodeId, PeerMessage, Role, SessionId,
};

use super::{BufferedCommand, ClientRef, LeaderState, Node, Waiter};
use crate::state_machine::{Applied, CommandStatus};

impl Node {
    pub(super) fn handle_client_request(
        &mut self,
        now_ms: u64,
        client: ClientRef,
        request: ClientRequest,
    ) {
        match request {
            ClientRequest::Status => {
                let status = self.status();
                self.reply(client, Ok(ClientResponse::Status(status)));
            }
            ClientRequest::Query {
                session,
                sequence: _,
                index,
                consistency,
                query,
            } => {
                if Self::consistency_needs_leader(consistency) && self.role != Role::Leader {
                    let error = self.not_leader_error();
                    self.reply(client, Err(error));
                    return;
                }
                self.handle_query(now_ms, client, session, index, consistency, query);
            }
            ClientRequest::Connect { client_id } => self.handle_connect(now_ms, client, client_id),
            _ if self.role != Role::Leader => {
                let error = self.not_leader_error();
                self.reply(client, Err(error));
            }
            ClientRequest::Register {
                client_id,
                timeout_ms,
            } => {
                let timeout_ms =
                    timeout_ms.unwrap_or(self.config.default_session_timeout.as_millis() as u64);
                let index = self.append_entry(
                    now_ms,
                    EntryPayload::Register {
                        client_id,
                        timeout_ms,
                    },
                );
                self.add_waiter(index, client);
            }
            ClientRequest::KeepAlive {
                session,
                command_sequence,
                event_index,
            } => {
                if let Some(error) = self.closed_session_error(session) {
                    self.reply(client, Err(error));
                    return;
                }
                let index = self.append_entry(
                    now_ms,
                    EntryPayload::KeepAlive {
                        session,
                        command_sequence,
                        event_index,
                    },
                );
                self.add_waiter(index, client);
            }
            ClientRequest::Unregister { session } => {
                if let Some(error) = self.closed_session_error(session) {
                    self.reply(client, Err(error));
                    return;
                }
                let index = self.append_entry(
                    now_ms,
                    EntryPayload::Unregister {
                        session,
                        expired: false,
                    },
                );
                self.add_waiter(index, client);
            }
            ClientRequest::Command {
                session,
                sequence,
                command,
            } => self.handle_command(now_ms, client, session, sequence, command),
        }
    }

    /// Returns the error for a request of a session that this node's state machine has closed.
    /// A session whose Register entry is not applied yet passes, and its entries are checked
    /// when applied.
    pub(super) fn closed_session_error(&self, session: SessionId) -> Option<ClientError> {
        if session > self.state_machine.applied_index() {
            return None;
        }
        match self.state_machine.command_status(session, 0) {
            CommandStatus::UnknownSession => Some(ClientError::UnknownSession { session }),
            CommandStatus::Expired => Some(ClientError::SessionExpired { session }),
            _ => None,
        }
    }

    fn handle_connect(&mut self, now_ms: u64, client: ClientRef, client_id: u128) {
        match (self.role, self.leader) {
            (Role::Leader, _) => {
                let address = self.id;
                self.append_entry(now_ms, EntryPayload::Connect { client_id, address });
            }
            (_, Some(leader)) => {
                let address = self.id;
                self.send(
                    leader,
                    PeerMessage::AcceptRequest(AcceptRequest { client_id, address }),
                );
            }
            (_, None) => {
                self.reply(client, Err(ClientError::NoLeader));
                return;
            }
        }
        // NOTE: the reply does not wait for the Connect entry to commit: the binding only tells
        // the cluster where the client is attached, which nothing depends on until session
        // events are published.
        let response = ClientResponse::Connect {
            leader: self.leader_member(),
            members: self.config.members.clone(),
        };
        self.reply(client, Ok(response));
    }

    pub(super) fn handle_accept_request(
        &mut self,
        now_ms: u64,
        from: NodeId,
        request: AcceptRequest,
    ) {
        if self.role != Role::Leader {
            tracing::debug!(
                node = self.id,
                from,
                client_id = request.client_id,
                "dropped AcceptRequest: not the leader"
            );
            return;
        }
        self.append_entry(
            now_ms,
            EntryPayload::Connect {
                client_id: request.client_id,
                address: request.address,
            },
        );
    }

    fn handle_command(
        &mut self,
        now_ms: u64,
        client: ClientRef,
        session: SessionId,
        sequence: u64,
        command: Command,
    ) {
        if sequence == 0 {
            let error = ClientError::InvalidRequest(format!(
                "command sequence 0 of session {session}: sequences start at 1"
            ));
            self.reply(client, Err(error));
            return;
        }
        if let Some(error) = self.closed_session_error(session) {
            self.reply(client, Err(error));
            return;
        }

        let applied_sequence = self
            .state_machine
            .session(session)
            .map_or(0, |info| info.last_applied_sequence);
        if sequence <= applied_sequence {
            self.reply_applied_command(client, session, sequence);
            return;
        }

        let leader = self
            .leader_state
            .as_mut()
            .expect("only the leader gates commands");
        if let Some(&index) = leader.logged_commands.get(&(session, sequence)) {
            leader
                .waiters
                .entry(index)
                .or_default()
                .push(Waiter::Client(client));
            return;
        }
        let track = leader.sessions.entry(session).or_default();
        let next = track.last_logged.max(applied_sequence) + 1;
        if sequence < next {
            // In the log but not in logged_commands. rebuild_session_tracks records every
            // unapplied command, so only a bookkeeping bug leads here.
            tracing::warn!(
                node = self.id,
                session,
                sequence,
                "logged command sequence is not tracked"
            );
            let error = ClientError::Unavailable(format!(
                "session {session} sequence {sequence} is in the log but not tracked; retry"
            ));
            self.reply(client, Err(error));
            return;
        }
        if sequence > next {
            if let Some(buffered) = track.buffered.get_mut(&sequence) {
                buffered.clients.push(client);
                return;
            }
            if leader.buffered_total >= self.config.max_pending_commands {
                let error = ClientError::Unavailable(format!(
                    "command buffer full ({} commands wait for earlier sequences); session {session} sequence {sequence} waits for {next}, retry after sending it",
                    leader.buffered_total
                ));
                self.reply(client, Err(error));
                return;
            }
            tracing::debug!(
                node = self.id,
                session,
                sequence,
                expected = next,
                "command waits for an earlier sequence"
            );
            track.buffered.insert(
                sequence,
                BufferedCommand {
                    clients: vec![client],
                    command,
                },
            );
            leader.buffered_total += 1;
            return;
        }

        self.append_command(now_ms, session, sequence, command, vec![client]);

        // Commands that waited for this one follow in order.
        loop {
            let leader = self.leader_state.as_mut().expect("still the leader");
            let track = leader.sessions.entry(session).or_default();
            let next = track.last_logged + 1;
            let Some(buffered) = track.buffered.remove(&next) else {
                break;
            };
            leader.buffered_total -= 1;
            self.append_command(now_ms, session, next, buffered.command, buffered.clients);
        }
    }

    fn append_command(
        &mut self,
        now_ms: u64,
        session: SessionId,
        sequence: u64,
        command: Command,
        clients: Vec<ClientRef>,
    ) {
        let index = self.append_entry(
            now_ms,
            EntryPayload::Command {
                session,
                sequence,
                command,
            },
        );
        let leader = self.leader_state.as_mut().expect("only the leader appends");
        leader.logged_commands.insert((session, sequence), index);
        leader.sessions.entry(session).or_default().last_logged = sequence;
        let waiters = leader.waiters.entry(index).or_default();
        waiters.extend(clients.into_iter().map(Waiter::Client));
    }

    /// Answers a retry of an applied sequence from the state machine's cache.
    fn reply_applied_command(&mut self, client: ClientRef, session: SessionId, sequence: u64) {
        let response = match self.state_machine.command_status(session, sequence) {
            CommandStatus::Applied { index, result } => {
                Ok(ClientResponse::Command { index, result })
            }
            CommandStatus::Released => Err(ClientError::SequenceReleased { session, sequence }),
            CommandStatus::UnknownSession => Err(ClientError::UnknownSession { session }),
            CommandStatus::Expired => Err(ClientError::SessionExpired { session }),
            CommandStatus::NotApplied => Err(ClientError::Unavailable(format!(
                "session {session} sequence {sequence} is not applied yet; retry"
            ))),
        };
        self.reply(client, response);
    }

    fn add_waiter(&mut self, index: u64, client: ClientRef) {
        let leader = self
            .leader_state
            .as_mut()
            .expect("only the leader has waiters");
        leader
            .waiters
            .entry(index)
            .or_default()
            .push(Waiter::Client(client));
    }

    /// Rebuilds the per-session sequence tracking of a new leader from the unapplied part of its
    /// log: every entry there will commit (it is in the leader's log), so its commands count as
    /// logged.
    pub(super) fn rebuild_session_tracks(&mut self) {
        let from = self.state_machine.applied_index() + 1;
        let mut logged: Vec<(SessionId, u64, u64)> = Vec::new();
        for entry in self.log.range(from, self.log.last_index()) {
            if let EntryPayload::Command {
                session, sequence, ..
            } = entry.payload
            {
                logged.push((session, sequence, entry.index));
            }
        }
        let leader = self
            .leader_state
            .as_mut()
            .expect("called on becoming leader");
        for (session, sequence, index) in logged {
            leader.logged_commands.insert((session, sequence), index);
            let track = leader.sessions.entry(session).or_default();
            track.last_logged = track.last_logged.max(sequence);
        }
    }

    /// Answers the clients waiting on an applied entry and updates the leader's bookkeeping.
    pub(super) fn on_applied(&mut self, now_ms: u64, entry: &LogEntry, applied: Applied) {
        let _ = now_ms;
        if let Some(leader) = self.leader_state.as_mut() {
            if let EntryPayload::Command {
                session, sequence, ..
            } = entry.payload
            {
                leader.logged_commands.remove(&(session, sequence));
            }
            if let EntryPayload::Unregister {
                session,
                expired: true,
            } = entry.payload
            {
                leader.expiring.remove(&session);
            }
        }

        let response = match applied {
            Applied::Configuration | Applied::Connected => None,
            Applied::ExpiryCancelled { session } => {
                tracing::info!(
                    node = self.id,
                    session,
                    index = entry.index,
                    "session expiry cancelled: the session was refreshed"
                );
                None
            }
            Applied::Registered {
                session,
                timeout_ms,
            } => Some(Ok(ClientResponse::Register {
                session,
                timeout_ms,
                leader: self.leader_member(),
                members: self.config.members.clone(),
            })),
            Applied::KeptAlive { .. } => Some(Ok(ClientResponse::KeepAlive {
                leader: self.leader_member(),
                members: self.config.members.clone(),
            })),
            Applied::Unregistered { session, expired } => {
                if expired {
                    tracing::info!(
                        node = self.id,
                        session,
                        index = entry.index,
                        "session expired"
                    );
                }
                self.fail_buffered_commands(session, expired);
                Some(Ok(ClientResponse::Unregister))
            }
            Applied::Command { index, result, .. } => {
                Some(result.map(|result| ClientResponse::Command { index, result }))
            }
            Applied::Rejected { session, error, .. } => {
                self.fail_buffered_commands(session, false);
                Some(Err(error))
            }
        };

        let waiters = self
            .leader_state
            .as_mut()
            .and_then(|leader| leader.waiters.remove(&entry.index))
            .unwrap_or_default();
        if let Some(response) = response {
            for Waiter::Client(client) in waiters {
                self.reply(client, response.clone());
            }
        }
    }

    /// Fails the commands buffered for a session that closed: they can never be appended.
    fn fail_buffered_commands(&mut self, session: SessionId, expired: bool) {
        let Some(leader) = self.leader_state.as_mut() else {
            return;
        };
        let Some(track) = leader.sessions.remove(&session) else {
            return;
        };
        leader.buffered_total -= track.buffered.len();
        let error = if expired {
            ClientError::SessionExpired { session }
        } else {
            ClientError::UnknownSession { session }
        };
        for buffered in track.buffered.into_values() {
            for client in buffered.clients {
                self.reply(client, Err(error.clone()));
            }
        }
    }

    /// Fails everything a leader that lost its role owed its clients: requests with an entry in
    /// the log get `OutcomeUnknown` (the entry may still commit under the next leader), requests
    /// never appended and reads get `NotLeader`.
    pub(super) fn fail_leader_waiters(&mut self, leader: LeaderState) {
        let failed = leader.waiters.values().map(Vec::len).sum::<usize>()
            + leader.reads.len()
            + leader.buffered_total;
        if failed > 0 {
            tracing::info!(
                node = self.id,
                term = self.term,
                failed,
                "failing pending client requests after losing leadership"
            );
        }
        for waiters in leader.waiters.into_values() {
            for Waiter::Client(client) in waiters {
                self.reply(client, Err(ClientError::OutcomeUnknown));
            }
        }
        for read in leader.reads {
            let error = self.not_leader_error();
            self.reply(read.client, Err(error));
        }
        for track in leader.sessions.into_values() {
            for buffered in track.buffered.into_values() {
                for client in buffered.clients {
                    let error = self.not_leader_error();
                    self.reply(client, Err(error));
                }
            }
        }
    }

    /// Proposes `Unregister { expired: true }` for every session the state machine finds expired
    /// at this leader's clock, once this leader's timer-resetting entry is applied.
    pub(super) fn expire_sessions(&mut self, now_ms: u64) {
        let Some(leader) = self.leader_state.as_ref() else {
            return;
        };
        if self.state_machine.applied_index() < leader.expiry_barrier {
            return;
        }
        let expired: Vec<SessionId> = self
            .state_machine
            .expired_sessions(now_ms)
            .into_iter()
            .filter(|session| !leader.expiring.contains(session))
            .collect();
        for session in expired {
            let info = self.state_machine.session(session).cloned();
            tracing::info!(node = self.id, term = self.term, session, last_activity_ms = ?info.as_ref().map(|i| i.last_activity_ms), timeout_ms = ?info.as_ref().map(|i| i.timeout_ms), now_ms, "proposing session expiry");
            self.append_entry(
                now_ms,
                EntryPayload::Unregister {
                    session,
                    expired: true,
                },
            );
            if let Some(leader) = self.leader_state.as_mut() {
                leader.expiring.insert(session);
            }
        }
    }

    /// A leader that was paused longer than an election timeout appends a fresh Configuration
    /// entry: its application resets every session timer, and expiry waits for it. Contact
    /// clocks restart too, so check-quorum gives followers one election timeout to answer
    /// before deciding this node lost the quorum; a newer leader deposes it sooner through its
    /// higher term.
    pub(super) fn leader_resumed_after_pause(&mut self, now_ms: u64) {
        let members = self.config.members.clone();
        let index = self.append_entry(now_ms, EntryPayload::Configuration { members });
        let Some(leader) = self.leader_state.as_mut() else {
            return;
        };
        leader.expiry_barrier = index;
        leader.became_leader_ms = now_ms;
        for progress in leader.progress.values_mut() {
            progress.last_response_ms = now_ms;
        }
        tracing::info!(
            node = self.id,
            term = self.term,
            index,
            "leader resumed after a pause: session expiry waits for a fresh Configuration entry"
        );
    }
}
