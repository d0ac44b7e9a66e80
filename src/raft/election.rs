//! Leader election: pre-vote, votes, role changes and check-quorum.
//!
//! A follower whose election timer fires becomes a pre-candidate and polls its peers for the
//! term it would move to, without changing its own term. Only when a majority accepts does it
//! increment its term, vote for itself and request votes. A node that was partitioned away or
//! restarted with a stale log therefore cannot raise the cluster's term and depose a live leader.
//!
//! Leader stickiness: a node that heard from a live leader less than one (minimum) election
//! timeout ago rejects polls and votes, and does not adopt the higher term of such a vote request.
//!
//! Check-quorum: a leader that has not heard from a quorum within one election timeout steps
//! down and fails its pending commands with `OutcomeUnknown`.

use std::collections::HashMap;

use ringraft_protocol::{
    EntryPayload, NodeId, PeerMessage, PollRequest, PollResponse, Role, Term, VoteRequest,
    VoteResponse,
};

use super::{LeaderState, Node, Progress};

impl Node {
    /// Whether this node heard from a live leader within the minimum election timeout.
    fn leader_is_live(&self, now_ms: u64) -> bool {
        if self.role == Role::Leader {
            return true;
        }
        self.leader_contact_ms.is_some_and(|contact| {
            now_ms.saturating_sub(contact) < self.config.election_timeout_ms()
        })
    }

    pub(super) fn start_pre_vote(&mut self, now_ms: u64) {
        self.set_role(Role::PreCandidate, None);
        self.reset_election_timer(now_ms);
        self.polls.clear();
        self.polls.insert(self.id);
        tracing::debug!(
            node = self.id,
            term = self.term + 1,
            "polling peers (pre-vote)"
        );
        if self.polls.len() >= self.quorum() {
            self.start_election(now_ms);
            return;
        }
        let request = PollRequest {
            term: self.term + 1,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        for peer in self.peers.clone() {
            self.send(peer, PeerMessage::PollRequest(request.clone()));
        }
    }

    pub(super) fn handle_poll_request(&mut self, now_ms: u64, from: NodeId, request: PollRequest) {
        let log_ok = self
            .log
            .is_up_to_date(request.last_log_index, request.last_log_term);
        let accepted = request.term > self.term && log_ok && !self.leader_is_live(now_ms);
        tracing::debug!(
            node = self.id,
            from,
            poll_term = request.term,
            term = self.term,
            accepted,
            "poll request"
        );
        self.send(
            from,
            PeerMessage::PollResponse(PollResponse {
                term: request.term,
                accepted,
            }),
        );
    }

    pub(super) fn handle_poll_response(
        &mut self,
        now_ms: u64,
        from: NodeId,
        response: PollResponse,
    ) {
        if self.role != Role::PreCandidate || response.term != self.term + 1 || !response.accepted {
            return;
        }
        self.polls.insert(from);
        if self.polls.len() >= self.quorum() {
            self.start_election(now_ms);
        }
    }

    fn start_election(&mut self, now_ms: u64) {
        self.term += 1;
        self.voted_for = Some(self.id);
        self.hard_state_dirty = true;
        self.elections_started += 1;
        self.leader_contact_ms = None;
        self.set_role(Role::Candidate, None);
        self.reset_election_timer(now_ms);
        tracing::info!(node = self.id, term = self.term, "starting election");

        self.votes.clear();
        self.votes.insert(self.id);
        if self.votes.len() >= self.quorum() {
            self.become_leader(now_ms);
            return;
        }
        let request = VoteRequest {
            term: self.term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        for peer in self.peers.clone() {
            self.send(peer, PeerMessage::VoteRequest(request.clone()));
        }
    }

    pub(super) fn handle_vote_request(&mut self, now_ms: u64, from: NodeId, request: VoteRequest) {
        // Leader stickiness: a live leader's followers neither vote nor adopt the new term.
        if request.term > self.term && self.leader_is_live(now_ms) {
            tracing::debug!(
                node = self.id,
                from,
                vote_term = request.term,
                "rejected vote: a live leader is known"
            );
            self.send(
                from,
                PeerMessage::VoteResponse(VoteResponse {
                    term: self.term,
                    granted: false,
                }),
            );
            return;
        }
        if request.term > self.term {
            self.become_follower(now_ms, request.term, None);
        }

        let log_ok = self
            .log
            .is_up_to_date(request.last_log_index, request.last_log_term);
        let granted = request.term == self.term
            && log_ok
            && self.voted_for.is_none_or(|candidate| candidate == from);
        if granted && self.voted_for.is_none() {
            self.voted_for = Some(from);
            self.hard_state_dirty = true;
        }
        if granted {
            self.reset_election_timer(now_ms);
        }
        tracing::debug!(
            node = self.id,
            from,
            term = self.term,
            granted,
            "vote request"
        );
        self.send(
            from,
            PeerMessage::VoteResponse(VoteResponse {
                term: self.term,
                granted,
            }),
        );
    }

    pub(super) fn handle_vote_response(
        &mut self,
        now_ms: u64,
        from: NodeId,
        response: VoteResponse,
    ) {
        if response.term > self.term {
            self.become_follower(now_ms, response.term, None);
            return;
        }
        if self.role != Role::Candidate || response.term != self.term || !response.granted {
            return;
        }
        self.votes.insert(from);
        if self.votes.len() >= self.quorum() {
            self.become_leader(now_ms);
        }
    }

    /// Moves to `term` (if higher) as a follower of `leader`. Fails everything a leader owed its
    /// clients.
    pub(super) fn become_follower(&mut self, now_ms: u64, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.hard_state_dirty = true;
            self.pending_acks.clear();
        }
        let old_leader_state = self.leader_state.take();
        self.set_role(Role::Follower, leader);
        if let Some(old_leader_state) = old_leader_state {
            self.fail_leader_waiters(old_leader_state);
        }
        self.reset_election_timer(now_ms);
    }

    fn become_leader(&mut self, now_ms: u64) {
        self.set_role(Role::Leader, Some(self.id));
        let next_index = self.log.last_index() + 1;
        let progress = self
            .peers
            .iter()
            .map(|&peer| {
                (
                    peer,
                    Progress {
                        next_index,
                        match_index: 0,
                        inflight: Default::default(),
                        sent: Default::default(),
                        next_seq: 1,
                        acked_round: 0,
                        acked_sent_ms: None,
                        last_response_ms: now_ms,
                        probing: false,
                    },
                )
            })
            .collect::<HashMap<_, _>>();
        self.leader_state = Some(LeaderState {
            progress,
            became_leader_ms: now_ms,
            heartbeat_due_ms: now_ms,
            ..LeaderState::default()
        });

        // The term's first entry: commits everything before it and resets session timers.
        let members = self.config.members.clone();
        let index = self.append_entry(now_ms, EntryPayload::Configuration { members });
        let leader = self
            .leader_state
            .as_mut()
            .expect("leader state was just set");
        leader.term_start_index = index;
        leader.expiry_barrier = index;
        self.rebuild_session_tracks();

        self.advance_leader_commit(now_ms);
        self.broadcast_append(now_ms, true);
    }

    /// Changes role and logs it; records the change for the runtime.
    pub(super) fn set_role(&mut self, role: Role, leader: Option<NodeId>) {
        let changed = role != self.role || leader != self.leader;
        if role != Role::Leader {
            self.leader_state = None;
        }
        self.role = role;
        self.leader = leader;
        if changed {
            tracing::info!(node = self.id, role = %role, term = self.term, leader = ?leader, "role changed");
            self.ready.role_change = Some((role, self.term));
        }
    }

    /// Steps down if a quorum has not answered within one election timeout.
    pub(super) fn check_quorum(&mut self, now_ms: u64) {
        let timeout = self.config.election_timeout_ms();
        let Some(leader) = self.leader_state.as_ref() else {
            return;
        };
        if now_ms.saturating_sub(leader.became_leader_ms) < timeout {
            return;
        }
        let live = 1 + leader
            .progress
            .values()
            .filter(|progress| now_ms.saturating_sub(progress.last_response_ms) < timeout)
            .count();
        if live < self.quorum() {
            tracing::info!(
                node = self.id,
                term = self.term,
                live,
                quorum = self.quorum(),
                "leader lost contact with a quorum, stepping down"
            );
            self.become_follower(now_ms, self.term, None);
        }
    }
}
