//! Queries at three consistency levels.
//!
//! - Linearizable: the read index is the commit index when the query arrives, raised to the
//!   index of this term's first entry (a leader learns the true commit index only once an entry
//!   of its term commits). The leader then confirms it is still leader with one quorum round: a
//!   round starts with a heartbeat broadcast, and every AppendRequest carries the round that was
//!   current when it was sent. Queries that arrive while a round is in flight join the next
//!   round together, so one broadcast serves a whole batch. The query is answered once its round
//!   is confirmed and the applied index reached the read index.
//! - Lease: the leader answers without a round while its lease holds. The lease starts at the
//!   send time of the latest request a quorum acknowledged: each of those followers heard from
//!   the leader at or after that time and rejects polls and votes for one minimum election
//!   timeout after. The lease ends `LEASE_DRIFT_PERCENT` of the election timeout before that, a
//!   margin for clocks of different nodes running at different rates (not for clock steps: the
//!   runtime's clock is monotonic). Without a valid lease the query takes the linearizable path.
//! - Sequential: any node answers once it has applied the client's last seen index.

use ringraft_protocol::{ClientResponse, Consistency, LogIndex, Query, Role, SessionId};

use super::{ClientRef, Node, PendingRead};

/// Share of the election timeout a lease gives up as a margin for clock rate differences.
pub const LEASE_DRIFT_PERCENT: u64 = 10;

impl Node {
    pub(super) fn handle_query(
        &mut self,
        now_ms: u64,
        client: ClientRef,
        session: SessionId,
        index: LogIndex,
        consistency: Consistency,
        query: Query,
    ) {
        if consistency == Consistency::Sequential || self.role != Role::Leader {
            // NOTE: a sequential query waits without a deadline for the node to apply `index`.
            // The runtime's request timeout or a disconnect (client_disconnected) removes it.
            let read = PendingRead {
                client,
                query,
                index,
                round: 0,
            };
            self.sequential_reads.push(read);
            return;
        }
        if let Some(error) = self.closed_session_error(session) {
            self.reply(client, Err(error));
            return;
        }

        let lease = consistency == Consistency::Lease && self.lease_valid(now_ms);
        let commit_index = self.commit_index;
        let leader = self
            .leader_state
            .as_mut()
            .expect("checked: this node leads");
        let read_index = commit_index.max(leader.term_start_index);
        let round = if lease {
            0
        } else {
            leader.round_requested = true;
            leader.round + 1
        };
        tracing::trace!(
            node = self.id,
            conn = client.conn,
            request_id = client.request_id,
            read_index,
            round,
            lease,
            "query waits for its read index"
        );
        leader.reads.push(PendingRead {
            client,
            query,
            index: read_index,
            round,
        });
    }

    /// Highest round a quorum (this leader included) has confirmed.
    fn confirmed_round(&self) -> u64 {
        let Some(leader) = self.leader_state.as_ref() else {
            return 0;
        };
        let mut rounds: Vec<u64> = leader.progress.values().map(|p| p.acked_round).collect();
        rounds.push(leader.round);
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds[self.quorum() - 1]
    }

    /// Returns whether this leader's lease is valid at `now_ms` (see the module documentation).
    pub(super) fn lease_valid(&self, now_ms: u64) -> bool {
        let Some(leader) = self.leader_state.as_ref() else {
            return false;
        };
        let mut sent: Vec<u64> = leader
            .progress
            .values()
            .filter_map(|progress| progress.acked_sent_ms)
            .collect();
        sent.push(now_ms);
        if sent.len() < self.quorum() {
            return false;
        }
        sent.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_sent_ms = sent[self.quorum() - 1];
        let timeout = self.config.election_timeout_ms();
        let lease_ms = timeout - timeout * LEASE_DRIFT_PERCENT / 100;
        now_ms < quorum_sent_ms + lease_ms
    }

    /// Starts a read round if a query waits for one and none is in flight.
    pub(super) fn start_requested_round(&mut self, now_ms: u64) {
        let in_flight = match self.leader_state.as_ref() {
            Some(leader) if leader.round_requested => self.confirmed_round() < leader.round,
            _ => return,
        };
        if !in_flight {
            self.broadcast_append(now_ms, true);
        }
    }

    /// Answers every parked query whose conditions now hold.
    pub(super) fn serve_ready_reads(&mut self) {
        let applied = self.state_machine.applied_index();
        let confirmed = self.confirmed_round();
        let mut ready = Vec::new();
        if let Some(leader) = self.leader_state.as_mut() {
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut leader.reads)
                .into_iter()
                .partition(|read| read.round <= confirmed && read.index <= applied);
            leader.reads = later;
            ready.extend(now);
        }
        if !self.sequential_reads.is_empty() {
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sequential_reads)
                .into_iter()
                .partition(|read| read.index <= applied);
            self.sequential_reads = later;
            ready.extend(now);
        }
        for read in ready {
            let result = self.state_machine.query(&read.query);
            let response = ClientResponse::Query {
                index: applied,
                result,
            };
            self.reply(read.client, Ok(response));
        }
    }
}
