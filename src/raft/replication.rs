//! Log replication: the leader's batched, pipelined AppendRequests, the follower's consistency
//! check and truncation, commit advancement and applying committed entries.
//!
//! Pipelining: the leader sends up to `max_inflight_appends` requests with entries to a follower
//! before hearing back, each capped at `max_append_entries` entries and about
//! `max_append_bytes` bytes, and advances `next_index` optimistically. A rejection clears the
//! pipeline and switches the follower to probing (one request at a time) until it accepts. A
//! pipeline with no answer for three heartbeat intervals is assumed lost and restarted from the
//! follower's match index; the follower skips entries it already has.
//!
//! Heartbeats are empty AppendRequests whose previous index is the follower's match index, so
//! they never fail the consistency check and never conflict with the pipeline. They bypass the
//! in-flight cap: check-quorum and read rounds depend on them.
//!
//! Follower rules: reject a request whose previous entry is missing or has another term (with
//! `conflict_term`), truncate only an uncommitted suffix that conflicts, advance the commit
//! index to `min(leader_commit, last index covered by the request)` and never backwards, and
//! acknowledge only entries the runtime reported durable.

use ringraft_protocol::{
    AppendRequest, AppendResponse, Command, EntryPayload, LogEntry, LogIndex, NodeId, PeerMessage,
    Role,
};

use super::{Inflight, Node, PendingAck};

/// Upper bound on unanswered requests remembered per follower for read rounds and leases.
const MAX_TRACKED_SENT: usize = 1024;

/// Estimated encoded size of an entry, used for the per-request byte cap.
fn entry_size_estimate(entry: &LogEntry) -> usize {
    let payload = match &entry.payload {
        EntryPayload::Configuration { members } => {
            members.iter().map(|member| member.addr.len() + 10).sum()
        }
        EntryPayload::Command {
            command: Command::Add { tag, payload, .. },
            ..
        } => tag.len() + payload.len() + 16,
        _ => 24,
    };
    payload + 24
}

impl Node {
    pub(super) fn tick_leader(&mut self, now_ms: u64) {
        self.check_quorum(now_ms);
        let Some(leader) = self.leader_state.as_ref() else {
            return;
        };
        if now_ms >= leader.heartbeat_due_ms {
            self.broadcast_append(now_ms, true);
        }
        self.expire_sessions(now_ms);
        self.after_input(now_ms);
    }

    /// Sends pending entries to every follower. With `heartbeat` it also starts a new leadership
    /// round and sends an empty AppendRequest to every follower that got no entries.
    pub(super) fn broadcast_append(&mut self, now_ms: u64, heartbeat: bool) {
        let heartbeat_ms = self.config.heartbeat_ms();
        let Some(leader) = self.leader_state.as_mut() else {
            return;
        };
        if heartbeat {
            leader.round += 1;
            leader.round_requested = false;
            leader.heartbeat_due_ms = now_ms + heartbeat_ms;
        }

        for peer in self.peers.clone() {
            self.restart_stalled_pipeline(now_ms, peer);
            let sent = self.send_entries(now_ms, peer);
            if heartbeat && !sent {
                self.send_heartbeat(now_ms, peer);
            }
        }
    }

    /// Sends entries to every follower that has room in its pipeline (called once per batch of
    /// inputs, so entries proposed together travel together).
    pub(super) fn replicate_pending(&mut self, now_ms: u64) {
        if self.role != Role::Leader {
            return;
        }
        for peer in self.peers.clone() {
            self.send_entries(now_ms, peer);
        }
    }

    fn restart_stalled_pipeline(&mut self, now_ms: u64, peer: NodeId) {
        let stall_ms = 3 * self.config.heartbeat_ms();
        let Some(progress) = self
            .leader_state
            .as_mut()
            .and_then(|leader| leader.progress.get_mut(&peer))
        else {
            return;
        };
        let stalled = progress
            .inflight
            .front()
            .is_some_and(|oldest| now_ms.saturating_sub(oldest.sent_ms) >= stall_ms);
        if stalled {
            tracing::debug!(
                node = self.id,
                peer,
                match_index = progress.match_index,
                "append pipeline got no answer, resending from the match index"
            );
            progress.inflight.clear();
            progress.next_index = progress.match_index + 1;
            progress.probing = true;
        }
    }

    /// Fills the follower's pipeline. Returns whether anything was sent.
    fn send_entries(&mut self, now_ms: u64, peer: NodeId) -> bool {
        let max_entries = self.config.max_append_entries.max(1);
        let max_bytes = self.config.max_append_bytes;
        let max_inflight = self.config.max_inflight_appends.max(1);
        let mut sent_any = false;
        loop {
            let Some(leader) = self.leader_state.as_mut() else {
                return sent_any;
            };
            let round = leader.round;
            let progress = leader
                .progress
                .get_mut(&peer)
                .expect("every peer has a progress");
            let cap = if progress.probing { 1 } else { max_inflight };
            if progress.inflight.len() >= cap || progress.next_index > self.log.last_index() {
                return sent_any;
            }

            let prev_log_index = progress.next_index - 1;
            let prev_log_term = self
                .log
                .term_at(prev_log_index)
                .expect("next_index never passes the end of the leader's log");
            let mut entries = Vec::new();
            let mut bytes = 0;
            for entry in self.log.range(progress.next_index, self.log.last_index()) {
                let size = entry_size_estimate(entry);
                if !entries.is_empty() && (entries.len() >= max_entries || bytes + size > max_bytes)
                {
                    break;
                }
                bytes += size;
                entries.push(entry.clone());
            }
            let last_index = prev_log_index + entries.len() as LogIndex;
            let seq = progress.next_seq;
            progress.next_seq += 1;
            progress.next_index = last_index + 1;
            progress.inflight.push_back(Inflight {
                seq,
                prev_log_index,
                sent_ms: now_ms,
            });
            track_sent(&mut progress.sent, seq, round, now_ms);

            let request = AppendRequest {
                term: self.term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit: self.commit_index,
                seq,
            };
            self.send(peer, PeerMessage::AppendRequest(request));
            sent_any = true;
        }
    }

    fn send_heartbeat(&mut self, now_ms: u64, peer: NodeId) {
        let Some(leader) = self.leader_state.as_mut() else {
            return;
        };
        let round = leader.round;
        let progress = leader
            .progress
            .get_mut(&peer)
            .expect("every peer has a progress");
        let seq = progress.next_seq;
        progress.next_seq += 1;
        track_sent(&mut progress.sent, seq, round, now_ms);
        let prev_log_index = progress.match_index;
        let request = AppendRequest {
            term: self.term,
            prev_log_index,
            prev_log_term: self.log.term_at(prev_log_index).unwrap_or(0),
            entries: Vec::new(),
            leader_commit: self.commit_index,
            seq,
        };
        self.send(peer, PeerMessage::AppendRequest(request));
    }

    pub(super) fn handle_append_request(
        &mut self,
        now_ms: u64,
        from: NodeId,
        request: AppendRequest,
    ) {
        if request.term < self.term {
            // A deposed leader: the response's higher term makes it step down.
            self.send_append_response(from, false, self.log.last_index(), None, request.seq);
            return;
        }
        assert!(
            !(self.role == Role::Leader && request.term == self.term),
            "election safety: two leaders ({} and {from}) in term {}",
            self.id,
            self.term
        );
        if request.term > self.term || self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now_ms, request.term, Some(from));
        }
        self.leader_contact_ms = Some(now_ms);
        self.reset_election_timer(now_ms);

        // Consistency check on the entry before the new ones.
        match self.log.term_at(request.prev_log_index) {
            None => {
                tracing::debug!(
                    node = self.id,
                    from,
                    prev_log_index = request.prev_log_index,
                    last_index = self.log.last_index(),
                    "rejected append: previous entry missing"
                );
                self.send_append_response(from, false, self.log.last_index(), None, request.seq);
                return;
            }
            Some(term) if term != request.prev_log_term => {
                tracing::debug!(
                    node = self.id,
                    from,
                    prev_log_index = request.prev_log_index,
                    local_term = term,
                    leader_term = request.prev_log_term,
                    "rejected append: previous entry has another term"
                );
                self.send_append_response(
                    from,
                    false,
                    self.log.last_index(),
                    Some(term),
                    request.seq,
                );
                return;
            }
            Some(_) => {}
        }

        let mut covered = request.prev_log_index;
        for entry in request.entries {
            assert_eq!(
                entry.index,
                covered + 1,
                "AppendRequest entries must be contiguous after prev_log_index"
            );
            covered = entry.index;
            match self.log.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => self.truncate_suffix(entry.index),
                None => {}
            }
            self.log.push(entry.clone());
            self.ready.entries.push(entry);
        }

        // Commit only what this request proved to match the leader, and never go backwards.
        let new_commit = request.leader_commit.min(covered);
        if new_commit > self.commit_index {
            self.commit_index = new_commit;
        }

        let covered_term = self.log.term_at(covered).unwrap_or(0);
        let ack = PendingAck {
            to: from,
            term: self.term,
            seq: request.seq,
            covered,
            covered_term,
        };
        if covered <= self.persisted_index {
            self.send_append_response(from, true, covered, None, request.seq);
        } else {
            self.pending_acks.push(ack);
        }
    }

    /// Removes the conflicting suffix from `from` on: in memory now, in storage through
    /// `Ready::truncate_from`.
    fn truncate_suffix(&mut self, from: LogIndex) {
        assert!(
            from > self.commit_index,
            "Raft never truncates committed entries: node {} asked to truncate from {from} with commit index {}",
            self.id,
            self.commit_index
        );
        tracing::info!(
            node = self.id,
            term = self.term,
            from,
            last_index = self.log.last_index(),
            commit_index = self.commit_index,
            "truncating conflicting log suffix"
        );
        self.log.truncate_from(from);
        self.ready.entries.retain(|entry| entry.index < from);
        self.ready.truncate_from = Some(self.ready.truncate_from.map_or(from, |t| t.min(from)));
        self.persisted_index = self.persisted_index.min(from - 1);
    }

    fn send_append_response(
        &mut self,
        to: NodeId,
        success: bool,
        last_log_index: LogIndex,
        conflict_term: Option<u64>,
        seq: u64,
    ) {
        let response = AppendResponse {
            term: self.term,
            success,
            last_log_index,
            conflict_term,
            seq,
        };
        self.send(to, PeerMessage::AppendResponse(response));
    }

    /// Sends the acknowledgements whose entries became durable.
    pub(super) fn flush_pending_acks(&mut self) {
        let pending = std::mem::take(&mut self.pending_acks);
        for ack in pending {
            if ack.term != self.term || self.log.term_at(ack.covered) != Some(ack.covered_term) {
                continue;
            }
            if ack.covered <= self.persisted_index {
                self.send_append_response(ack.to, true, ack.covered, None, ack.seq);
            } else {
                self.pending_acks.push(ack);
            }
        }
    }

    pub(super) fn handle_append_response(
        &mut self,
        now_ms: u64,
        from: NodeId,
        response: AppendResponse,
    ) {
        if response.term > self.term {
            tracing::info!(
                node = self.id,
                from,
                term = self.term,
                peer_term = response.term,
                "peer has a higher term, stepping down"
            );
            self.become_follower(now_ms, response.term, None);
            return;
        }
        if self.role != Role::Leader || response.term != self.term {
            return;
        }
        let Some(progress) = self
            .leader_state
            .as_mut()
            .and_then(|leader| leader.progress.get_mut(&from))
        else {
            return;
        };

        progress.last_response_ms = now_ms;
        if let Some(&(round, sent_ms)) = progress.sent.get(&response.seq) {
            progress.acked_round = progress.acked_round.max(round);
            progress.acked_sent_ms =
                Some(progress.acked_sent_ms.map_or(sent_ms, |t| t.max(sent_ms)));
            progress.sent = progress.sent.split_off(&(response.seq + 1));
        }
        let inflight = progress
            .inflight
            .iter()
            .position(|inflight| inflight.seq == response.seq)
            .and_then(|position| progress.inflight.remove(position));

        if response.success {
            progress.match_index = progress.match_index.max(response.last_log_index);
            progress.next_index = progress.next_index.max(progress.match_index + 1);
            if inflight.is_some() {
                progress.probing = false;
            }
        } else if let Some(inflight) = inflight.filter(|f| f.prev_log_index >= progress.match_index)
        {
            // Back up: at most to the follower's end, and past its whole conflicting term.
            let mut next = inflight.prev_log_index.min(response.last_log_index + 1);
            if let Some(conflict_term) = response.conflict_term {
                let at_most = inflight.prev_log_index.saturating_sub(1);
                next = next.min(
                    self.log
                        .last_index_with_term_at_most(conflict_term, at_most)
                        + 1,
                );
            }
            progress.next_index = next.max(progress.match_index + 1);
            progress.inflight.clear();
            progress.probing = true;
            tracing::debug!(node = self.id, peer = from, next_index = progress.next_index, conflict_term = ?response.conflict_term, "follower rejected append, backing up");
        }

        self.advance_leader_commit(now_ms);
        self.send_entries(now_ms, from);
    }

    /// Commits the highest index durable on a quorum (the leader counts only up to its own
    /// durable index), but only an entry of the current term: older entries commit with it.
    pub(super) fn advance_leader_commit(&mut self, _now_ms: u64) {
        let Some(leader) = self.leader_state.as_ref() else {
            return;
        };
        let mut matched: Vec<LogIndex> = leader
            .progress
            .values()
            .map(|progress| progress.match_index)
            .collect();
        matched.push(self.persisted_index);
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matched[self.quorum() - 1];
        if quorum_index > self.commit_index && self.log.term_at(quorum_index) == Some(self.term) {
            tracing::trace!(
                node = self.id,
                commit_index = quorum_index,
                "commit index advanced"
            );
            self.commit_index = quorum_index;
        }
    }

    /// Applies committed entries in order and replies to the clients waiting on them.
    pub(super) fn apply_committed(&mut self, now_ms: u64) {
        while self.state_machine.applied_index() < self.commit_index {
            let index = self.state_machine.applied_index() + 1;
            let entry = self
                .log
                .get(index)
                .expect("committed entries are in the log")
                .clone();
            let applied = self.state_machine.apply(&entry);
            self.on_applied(now_ms, &entry, applied);
        }
    }
}

fn track_sent(
    sent: &mut std::collections::BTreeMap<u64, (u64, u64)>,
    seq: u64,
    round: u64,
    now_ms: u64,
) {
    sent.insert(seq, (round, now_ms));
    while sent.len() > MAX_TRACKED_SENT {
        sent.pop_first();
    }
}
