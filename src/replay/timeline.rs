//! The failover timeline: what the log shows of elections, terms, leadership, log truncation,
//! configuration and session expiry, each with its time offset from the start of the log.
//!
//! Copycat logs member ids (`leader=176061669`, `candidate=...`) but addresses in its line
//! prefixes and member lists. An id is mapped to an address only on direct evidence: a server
//! that sends `AppendRequest[leader=X]` or a poll or vote request naming itself `candidate=X`
//! is member X. Other ids stay unmapped and are reported as such.
//!
//! Role changes come from three signals, in this order of trust. First, the state timers Copycat
//! opens and closes with each state: `Starting heartbeat timer` opens the follower state,
//! `Cancelling heartbeat timer` closes it, and `Cancelling append timer` closes the leader state.
//! Second, `Transitioning to X`. Third, a change of the state class that logs the lines
//! (`LeaderState` to `FollowerState`).
//!
//! The leader's longest silence is the longest gap either between two lines a server logged as
//! leader, or between two requests a follower received from the same leader in the same term.
//! Gaps never span an excerpt boundary.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::events::{Event, TimestampJump};
use super::latency::ClientOutcome;
use super::line::Role;
use super::message::Message;
use super::record::{member_address, Record};

/// Position of a timeline item in the log.
#[derive(Debug, Clone, Serialize)]
pub struct At {
    pub line: usize,
    /// Timestamp as written in the log.
    pub time: String,
    /// Milliseconds since the first line, by wall clock.
    pub offset_ms: i64,
    /// Milliseconds since the first line with excerpt jumps left out.
    pub active_offset_ms: i64,
}

impl At {
    pub fn of(event: &Event) -> At {
        At {
            line: event.line_no,
            time: event.at_text.clone(),
            offset_ms: event.offset_ms,
            active_offset_ms: event.active_ms,
        }
    }
}

/// A cluster member as the log identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub id: Option<u64>,
    pub address: Option<String>,
}

/// Outcome of a pre-vote round this server started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum PollOutcome {
    /// A majority accepted, counting the server's own vote.
    Majority,
    /// No majority within the election timeout (`Failed to poll a majority of the cluster`).
    NoMajority { after_ms: u64 },
    /// Enough members rejected the poll or failed to respond that no majority was possible.
    Rejected,
    /// The log ends, or the next round starts, before the round resolves.
    Unresolved,
}

/// One timeline item.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimelineKind {
    ExcerptJump {
        step_ms: i64,
    },
    LeaderSilence {
        leader: Member,
        term: Option<u64>,
        duration_ms: i64,
        until: String,
    },
    HeartbeatTimeout {
        server: Option<String>,
        after_ms: u64,
    },
    PollRound {
        server: Option<String>,
        next_term: Option<u64>,
        polled: Vec<String>,
        accepted_by: Vec<String>,
        rejected_by: Vec<String>,
        failed_requests: u64,
        #[serde(flatten)]
        outcome: PollOutcome,
    },
    /// A pre-vote request this server received. `term` is the candidate's current term, and the
    /// election it precedes is for `term + 1`.
    PollReceived {
        server: Option<String>,
        candidate: Option<u64>,
        term: Option<u64>,
        log_index: Option<u64>,
        log_term: Option<u64>,
        accepted: Option<bool>,
        reason: Option<String>,
    },
    VoteReceived {
        server: Option<String>,
        candidate: Option<u64>,
        term: Option<u64>,
        log_index: Option<u64>,
        log_term: Option<u64>,
        granted: Option<bool>,
        reason: Option<String>,
    },
    ReceivedGreaterTerm {
        server: Option<String>,
    },
    TermChange {
        from: Option<u64>,
        to: u64,
        evidence: String,
    },
    RoleChange {
        server: Option<String>,
        from: Option<Role>,
        to: Option<Role>,
        evidence: String,
    },
    StepDown {
        server: Option<String>,
        term: Option<u64>,
        evidence: String,
    },
    AppendRejected {
        server: Option<String>,
        leader: Option<u64>,
        term: Option<u64>,
        prev_index: Option<u64>,
        prev_term: Option<u64>,
        /// Term of the local entry at `prev_index`, when the reason names it.
        local_term: Option<u64>,
        reason: String,
    },
    RequestRejected {
        server: Option<String>,
        request: String,
        reason: String,
    },
    Truncation {
        server: Option<String>,
        leader: Option<u64>,
        term: Option<u64>,
        first_removed_index: Option<u64>,
        /// Removed entries the log shows to have existed, as (index, term).
        removed: Vec<(u64, u64)>,
    },
    ConfigurationEntry {
        server: Option<String>,
        index: Option<u64>,
        term: Option<u64>,
        members: Vec<String>,
    },
    ConfigureRequest {
        server: Option<String>,
        leader: Option<u64>,
        term: Option<u64>,
        index: Option<u64>,
        members: Vec<String>,
    },
    SessionUnregistered {
        session: u64,
        expired: bool,
        index: Option<u64>,
        term: Option<u64>,
    },
    /// Error responses to clients, consecutive ones of the same kind counted in one item.
    ClientError {
        server: Option<String>,
        response: String,
        error: String,
        count: u64,
        /// Timestamp of the last error of the run.
        last: String,
    },
    RequestTimedOut {
        server: Option<String>,
    },
}

/// One dated timeline item.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    pub at: At,
    #[serde(flatten)]
    pub kind: TimelineKind,
}

/// Leader and candidates of one term, as far as the log shows them.
#[derive(Debug, Clone, Serialize)]
pub struct TermInfo {
    pub term: u64,
    pub first_seen: At,
    pub leader: Option<Member>,
    /// Evidence for the leader.
    pub leader_evidence: Option<String>,
    /// Members that asked for votes or pre-votes for this term.
    pub candidates: Vec<u64>,
}

/// Maximum silence of a leader.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderSilence {
    pub leader: Member,
    pub term: Option<u64>,
    pub start: At,
    pub end: At,
    pub duration_ms: i64,
    /// Measurement method of the silence.
    pub observed: String,
}

/// Maximum time clients went without a successful response from the servers of the log.
#[derive(Debug, Clone, Serialize)]
pub struct UnservedWindow {
    pub start: At,
    pub end: At,
    pub duration_ms: i64,
    /// True when the window is still open where the log ends, so the real outage is longer.
    pub open_at_end: bool,
}

/// A member id and the address it maps to, when the log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberId {
    pub id: u64,
    pub address: Option<String>,
    pub evidence: String,
}

/// The failover section of the analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub events: Vec<TimelineEvent>,
    pub terms: Vec<TermInfo>,
    pub leader_silence: Option<LeaderSilence>,
    pub longest_unserved: Option<UnservedWindow>,
    pub expired_sessions: Vec<u64>,
    pub member_ids: Vec<MemberId>,
}

/// Pre-vote round in progress.
struct OpenPoll {
    event: usize,
    polled: usize,
}

#[derive(Default)]
struct Builder {
    events: Vec<TimelineEvent>,
    terms: BTreeMap<u64, TermInfo>,
    current_term: Option<u64>,
    ids: BTreeMap<u64, MemberId>,
    roles: HashMap<Option<String>, Role>,
    /// Role whose close the server logged, so its class's late lines do not reopen it.
    closed: HashMap<Option<String>, Role>,
    open_poll: Option<OpenPoll>,
    /// Local log entries known to exist, per server, as index to term.
    local_entries: HashMap<Option<String>, BTreeMap<u64, u64>>,
    last_append_request: HashMap<Option<String>, Record>,
    /// Sessions unregistered, as (session, entry index, expired).
    unregistered: Vec<(u64, Option<u64>, bool)>,
}

/// Builds the timeline from the events, the excerpt jumps and the client request outcomes.
pub fn build(events: &[Event], jumps: &[TimestampJump], outcomes: &[ClientOutcome]) -> Timeline {
    let mut builder = Builder::default();
    for jump in jumps {
        if let Some(event) = events.iter().find(|e| e.line_no >= jump.line) {
            builder.push(
                event,
                TimelineKind::ExcerptJump {
                    step_ms: jump.step_ms,
                },
            );
        }
    }
    for event in events {
        builder.observe(event);
    }
    builder.close_poll(PollOutcome::Unresolved);
    register_ids(&mut builder);

    let leader_silence = find_leader_silence(events, &builder);
    if let Some(silence) = &leader_silence {
        builder.events.push(TimelineEvent {
            at: silence.start.clone(),
            kind: TimelineKind::LeaderSilence {
                leader: silence.leader.clone(),
                term: silence.term,
                duration_ms: silence.duration_ms,
                until: silence.end.time.clone(),
            },
        });
    }
    builder
        .events
        .sort_by_key(|e| (e.at.active_offset_ms, e.at.line));

    let expired_sessions = builder
        .unregistered
        .iter()
        .filter(|(_, _, expired)| *expired)
        .map(|(session, _, _)| *session)
        .collect();

    Timeline {
        events: builder.events,
        terms: builder.terms.into_values().collect(),
        leader_silence,
        longest_unserved: find_unserved(events, outcomes),
        expired_sessions,
        member_ids: builder.ids.into_values().collect(),
    }
}

impl Builder {
    fn push(&mut self, event: &Event, kind: TimelineKind) -> usize {
        self.events.push(TimelineEvent {
            at: At::of(event),
            kind,
        });
        self.events.len() - 1
    }

    fn observe(&mut self, event: &Event) {
        let server = event.server.clone();
        self.track_role(event);

        match &event.message {
            Message::Received { record, peer: None } => self.on_request(event, record),
            Message::Received {
                record,
                peer: Some(_),
            } => self.note_term(event, record, "response"),
            Message::Sent { record, peer } => self.on_sent(event, record, peer.is_some()),
            Message::Verdict {
                accepted,
                record,
                reason,
            } => self.on_verdict(event, *accepted, record, reason),
            Message::Appended { record } | Message::Applying { record } => {
                self.on_entry(event, record)
            }
            Message::HeartbeatTimedOut { after_ms } => {
                self.push(
                    event,
                    TimelineKind::HeartbeatTimeout {
                        server,
                        after_ms: *after_ms,
                    },
                );
            }
            Message::PollingMembers { members } => {
                self.close_poll(PollOutcome::Unresolved);
                let index = self.push(
                    event,
                    TimelineKind::PollRound {
                        server,
                        next_term: None,
                        polled: members.clone(),
                        accepted_by: Vec::new(),
                        rejected_by: Vec::new(),
                        failed_requests: 0,
                        outcome: PollOutcome::Unresolved,
                    },
                );
                self.open_poll = Some(OpenPoll {
                    event: index,
                    polled: members.len(),
                });
            }
            Message::PollingMember { member, next_term } => {
                // The server polls for the term after its current one.
                self.raise_term(
                    event,
                    next_term.saturating_sub(1),
                    "term the server polled from",
                );
                if let Some(TimelineKind::PollRound {
                    next_term: term,
                    polled,
                    ..
                }) = self.open_poll_kind()
                {
                    *term = Some(*next_term);
                    if !polled.contains(member) {
                        polled.push(member.clone());
                    }
                }
            }
            Message::PollReply {
                member,
                accepted,
                other_term,
            } => {
                let counted_as_accept = *accepted && !*other_term;
                if let Some(TimelineKind::PollRound {
                    accepted_by,
                    rejected_by,
                    ..
                }) = self.open_poll_kind()
                {
                    if counted_as_accept {
                        accepted_by.push(member.clone());
                    } else {
                        rejected_by.push(member.clone());
                    }
                }
                self.resolve_poll_if_decided();
            }
            Message::PollFailed { after_ms } => self.close_poll(PollOutcome::NoMajority {
                after_ms: *after_ms,
            }),
            Message::RequestTimedOut => {
                if let Some(TimelineKind::PollRound {
                    failed_requests, ..
                }) = self.open_poll_kind()
                {
                    *failed_requests += 1;
                    self.resolve_poll_if_decided();
                } else {
                    self.push(event, TimelineKind::RequestTimedOut { server });
                }
            }
            Message::ReceivedGreaterTerm => {
                self.push(event, TimelineKind::ReceivedGreaterTerm { server });
            }
            Message::HeartbeatTimerStarted => {
                self.closed.remove(&server);
                self.change_role(
                    event,
                    Some(Role::Follower),
                    "heartbeat timer started as the follower state opened",
                );
            }
            Message::HeartbeatTimerCancelled => {
                self.change_role(
                    event,
                    None,
                    "heartbeat timer cancelled as the follower state closed",
                );
                self.closed.insert(server, Role::Follower);
            }
            Message::AppendTimerCancelled => {
                self.step_down(event, "append timer cancelled as the leader state closed");
                self.closed.insert(server, Role::Leader);
            }
            Message::RemovingIncorrectEntries => self.on_truncation(event),
            Message::Transitioning { state } => {
                let role = Role::from_logger(&format!("{}State", title_case(state)));
                self.closed.remove(&server);
                self.change_role(event, role, &format!("Transitioning to {state}"));
            }
        }
    }

    fn open_poll_kind(&mut self) -> Option<&mut TimelineKind> {
        let index = self.open_poll.as_ref()?.event;
        self.events.get_mut(index).map(|e| &mut e.kind)
    }

    fn resolve_poll_if_decided(&mut self) {
        let Some(open) = &self.open_poll else { return };
        let polled = open.polled;
        let Some(TimelineKind::PollRound {
            accepted_by,
            rejected_by,
            failed_requests,
            ..
        }) = self.open_poll_kind()
        else {
            return;
        };

        // The cluster is the polled members plus this server, whose own vote counts.
        let cluster = polled + 1;
        let quorum = cluster / 2 + 1;
        let accepted = accepted_by.len() + 1;
        let lost = rejected_by.len() + *failed_requests as usize;
        if accepted >= quorum {
            self.close_poll(PollOutcome::Majority);
        } else if lost > cluster - quorum {
            self.close_poll(PollOutcome::Rejected);
        }
    }

    fn close_poll(&mut self, result: PollOutcome) {
        if self.open_poll.is_none() {
            return;
        }
        if let Some(TimelineKind::PollRound { outcome, .. }) = self.open_poll_kind() {
            *outcome = result;
        }
        self.open_poll = None;
    }

    fn track_role(&mut self, event: &Event) {
        let Some(role) = event.role else { return };
        if self.closed.get(&event.server) == Some(&role) {
            return;
        }
        if self.roles.get(&event.server) != Some(&role) {
            let class = format!("{}State", title_case(role.name()));
            let evidence = if self.roles.contains_key(&event.server)
                || self.closed.contains_key(&event.server)
            {
                format!("first line logged by {class}")
            } else {
                format!("role at the start of the log, from {class} lines")
            };
            self.change_role(event, Some(role), &evidence);
        }
    }

    fn change_role(&mut self, event: &Event, to: Option<Role>, evidence: &str) {
        if self.roles.get(&event.server).copied() == to {
            return;
        }
        // Leaving the leader role is reported as a step-down, which clears the role.
        self.step_down(event, evidence);
        let from = self.roles.get(&event.server).copied();
        if from.is_none() && to.is_none() {
            return;
        }
        match to {
            Some(role) => self.roles.insert(event.server.clone(), role),
            None => self.roles.remove(&event.server),
        };
        self.push(
            event,
            TimelineKind::RoleChange {
                server: event.server.clone(),
                from,
                to,
                evidence: evidence.to_string(),
            },
        );

        // A server that logs as leader leads the current term.
        if to == Some(Role::Leader) {
            if let Some(term) = self.current_term {
                self.set_leader(
                    event,
                    term,
                    Member {
                        id: None,
                        address: event.server.clone(),
                    },
                    "lines logged by LeaderState",
                );
            }
        }
    }

    fn step_down(&mut self, event: &Event, evidence: &str) {
        if self.roles.get(&event.server) != Some(&Role::Leader) {
            return;
        }
        self.roles.remove(&event.server);
        let term = self.terms.iter().rev().find(|(_, info)| {
            info.leader
                .as_ref()
                .is_some_and(|leader| leader.address == event.server)
        });
        let term = term.map(|(term, _)| *term);
        self.push(
            event,
            TimelineKind::StepDown {
                server: event.server.clone(),
                term,
                evidence: evidence.to_string(),
            },
        );
    }

    fn on_request(&mut self, event: &Event, record: &Record) {
        let server = event.server.clone();
        self.note_term(event, record, &record.kind);
        let term = record.get_u64("term");
        let candidate = record.get_u64("candidate");

        match record.kind.as_str() {
            "PollRequest" => {
                if let (Some(term), Some(candidate)) = (term, candidate) {
                    self.add_candidate(event, term + 1, candidate);
                }
                self.push(
                    event,
                    TimelineKind::PollReceived {
                        server,
                        candidate,
                        term,
                        log_index: record.get_u64("logIndex"),
                        log_term: record.get_u64("logTerm"),
                        accepted: None,
                        reason: None,
                    },
                );
            }
            "VoteRequest" => {
                if let (Some(term), Some(candidate)) = (term, candidate) {
                    self.add_candidate(event, term, candidate);
                }
                self.push(
                    event,
                    TimelineKind::VoteReceived {
                        server,
                        candidate,
                        term,
                        log_index: record.get_u64("logIndex"),
                        log_term: record.get_u64("logTerm"),
                        granted: None,
                        reason: None,
                    },
                );
            }
            "AppendRequest" | "ConfigureRequest" | "InstallRequest" => {
                if let (Some(term), Some(leader)) = (term, record.get_u64("leader")) {
                    let evidence = format!("{} from leader {leader}", record.kind);
                    let address = self.address_of(leader);
                    self.set_leader(
                        event,
                        term,
                        Member {
                            id: Some(leader),
                            address,
                        },
                        &evidence,
                    );
                }
                if record.kind == "AppendRequest" {
                    self.last_append_request
                        .insert(server.clone(), record.clone());
                }
                if record.kind == "ConfigureRequest" {
                    self.push(
                        event,
                        TimelineKind::ConfigureRequest {
                            server,
                            leader: record.get_u64("leader"),
                            term,
                            index: record.get_u64("index"),
                            members: members_of(record),
                        },
                    );
                }
            }
            _ => {}
        }
    }

    fn on_sent(&mut self, event: &Event, record: &Record, to_peer: bool) {
        let server = event.server.clone();
        self.note_term(event, record, &record.kind);

        // A server naming itself as leader or candidate in its own request reveals its id.
        if to_peer {
            let own_id = match record.kind.as_str() {
                "AppendRequest" | "ConfigureRequest" | "InstallRequest" => record.get_u64("leader"),
                "PollRequest" | "VoteRequest" => record.get_u64("candidate"),
                _ => None,
            };
            if let (Some(id), Some(address)) = (own_id, &server) {
                self.map_id(id, address, &format!("{} sent by {address}", record.kind));
            }
            if let (Some(term), Some(leader), true) = (
                record.get_u64("term"),
                record.get_u64("leader"),
                record.kind == "AppendRequest",
            ) {
                self.set_leader(
                    event,
                    term,
                    Member {
                        id: Some(leader),
                        address: server,
                    },
                    "AppendRequest it sent",
                );
            }
            return;
        }

        match record.kind.as_str() {
            "PollResponse" => self.fill_verdict(true, record.get_bool("accepted"), None),
            "VoteResponse" => self.fill_verdict(false, record.get_bool("voted"), None),
            kind if record.get("status") == Some("ERROR") && is_client_response(kind) => {
                let error = record
                    .get("error")
                    .filter(|e| *e != "null")
                    .unwrap_or("ERROR")
                    .to_string();
                // A long outage answers every request with the same error: keep one item per run.
                if let Some(TimelineEvent {
                    kind:
                        TimelineKind::ClientError {
                            server: last_server,
                            response: last_response,
                            error: last_error,
                            count,
                            last,
                        },
                    ..
                }) = self.events.last_mut()
                {
                    if *last_server == server && last_response == kind && *last_error == error {
                        *count += 1;
                        *last = event.at_text.clone();
                        return;
                    }
                }
                self.push(
                    event,
                    TimelineKind::ClientError {
                        server,
                        response: kind.to_string(),
                        error,
                        count: 1,
                        last: event.at_text.clone(),
                    },
                );
            }
            _ => {}
        }
    }

    fn on_verdict(&mut self, event: &Event, accepted: bool, record: &Record, reason: &str) {
        let server = event.server.clone();
        self.note_term(event, record, &record.kind);

        match record.kind.as_str() {
            "PollRequest" => self.fill_verdict(true, Some(accepted), Some(reason)),
            "VoteRequest" => self.fill_verdict(false, Some(accepted), Some(reason)),
            "AppendRequest" if !accepted => {
                let local_term = local_term_in(reason);
                if let (Some(index), Some(term)) = (record.get_u64("logIndex"), local_term) {
                    self.local_entries
                        .entry(server.clone())
                        .or_default()
                        .insert(index, term);
                }
                self.push(
                    event,
                    TimelineKind::AppendRejected {
                        server,
                        leader: record.get_u64("leader"),
                        term: record.get_u64("term"),
                        prev_index: record.get_u64("logIndex"),
                        prev_term: record.get_u64("logTerm"),
                        local_term,
                        reason: reason.to_string(),
                    },
                );
            }
            _ if !accepted => {
                self.push(
                    event,
                    TimelineKind::RequestRejected {
                        server,
                        request: record.kind.clone(),
                        reason: reason.to_string(),
                    },
                );
            }
            _ => {}
        }
    }

    /// Completes the most recent poll or vote received that has no outcome yet.
    fn fill_verdict(&mut self, poll: bool, outcome: Option<bool>, reason_text: Option<&str>) {
        let target = self
            .events
            .iter_mut()
            .rev()
            .find_map(|e| match &mut e.kind {
                TimelineKind::PollReceived {
                    accepted, reason, ..
                } if poll => Some((accepted, reason)),
                TimelineKind::VoteReceived {
                    granted, reason, ..
                } if !poll => Some((granted, reason)),
                _ => None,
            });
        if let Some((result, reason)) = target {
            if result.is_none() {
                *result = outcome;
            }
            if let Some(text) = reason_text {
                *reason = Some(text.to_string());
            }
        }
    }

    fn on_entry(&mut self, event: &Event, record: &Record) {
        let server = event.server.clone();
        self.note_term(event, record, &record.kind);
        let index = record.get_u64("index");
        let term = record.get_u64("term");
        if let (Some(index), Some(term), Message::Appended { .. }) = (index, term, &event.message) {
            self.local_entries
                .entry(server.clone())
                .or_default()
                .insert(index, term);
        }

        // An entry appended by the leader state belongs to the term that server leads.
        if let (Some(term), Some(Role::Leader), Message::Appended { .. }) =
            (term, event.role, &event.message)
        {
            self.set_leader(
                event,
                term,
                Member {
                    id: None,
                    address: server.clone(),
                },
                "entries it appended as leader",
            );
        }

        match record.kind.as_str() {
            "ConfigurationEntry" if matches!(event.message, Message::Appended { .. }) => {
                self.push(
                    event,
                    TimelineKind::ConfigurationEntry {
                        server,
                        index,
                        term,
                        members: members_of(record),
                    },
                );
            }
            "UnregisterEntry" => {
                let Some(session) = record.get_u64("session") else {
                    return;
                };
                // Appended and Applying lines of one entry describe one unregistration.
                if self
                    .unregistered
                    .iter()
                    .any(|(s, i, _)| *s == session && *i == index)
                {
                    return;
                }
                let expired = record.get_bool("expired").unwrap_or(false);
                self.unregistered.push((session, index, expired));
                self.push(
                    event,
                    TimelineKind::SessionUnregistered {
                        session,
                        expired,
                        index,
                        term,
                    },
                );
            }
            _ => {}
        }
    }

    fn on_truncation(&mut self, event: &Event) {
        let server = event.server.clone();
        let request = self.last_append_request.get(&server).cloned();
        let first_removed_index = request
            .as_ref()
            .and_then(|r| r.get_u64("logIndex"))
            .map(|prev| prev + 1);
        let removed: Vec<(u64, u64)> =
            match (first_removed_index, self.local_entries.get_mut(&server)) {
                (Some(first), Some(entries)) => {
                    let removed: Vec<(u64, u64)> =
                        entries.range(first..).map(|(i, t)| (*i, *t)).collect();
                    entries.retain(|index, _| *index < first);
                    removed
                }
                _ => Vec::new(),
            };
        self.push(
            event,
            TimelineKind::Truncation {
                server,
                leader: request.as_ref().and_then(|r| r.get_u64("leader")),
                term: request.as_ref().and_then(|r| r.get_u64("term")),
                first_removed_index,
                removed,
            },
        );
    }

    fn note_term(&mut self, event: &Event, record: &Record, source: &str) {
        // A PollRequest carries the candidate's current term, not a new one.
        if let Some(term) = record.get_u64("term") {
            let evidence = match record.get_u64("candidate").or(record.get_u64("leader")) {
                Some(id) => format!("{source} naming member {id}"),
                None => source.to_string(),
            };
            self.raise_term(event, term, &evidence);
        }
    }

    fn raise_term(&mut self, event: &Event, term: u64, evidence: &str) {
        self.term_info(event, term);
        match self.current_term {
            Some(current) if current >= term => {}
            previous => {
                self.current_term = Some(term);
                if previous.is_some() {
                    self.push(
                        event,
                        TimelineKind::TermChange {
                            from: previous,
                            to: term,
                            evidence: evidence.to_string(),
                        },
                    );
                }
            }
        }
    }

    fn term_info(&mut self, event: &Event, term: u64) -> &mut TermInfo {
        self.terms.entry(term).or_insert_with(|| TermInfo {
            term,
            first_seen: At::of(event),
            leader: None,
            leader_evidence: None,
            candidates: Vec::new(),
        })
    }

    fn add_candidate(&mut self, event: &Event, term: u64, candidate: u64) {
        let info = self.term_info(event, term);
        if !info.candidates.contains(&candidate) {
            info.candidates.push(candidate);
        }
    }

    fn set_leader(&mut self, event: &Event, term: u64, member: Member, evidence: &str) {
        let info = self.term_info(event, term);
        match &mut info.leader {
            None => {
                info.leader = Some(member);
                info.leader_evidence = Some(evidence.to_string());
            }
            Some(known) => {
                // Merge id and address learnt from different lines about the same leader.
                if known.id.is_none() && member.address.is_some() && known.address == member.address
                {
                    known.id = member.id;
                }
                if known.address.is_none() && known.id == member.id {
                    known.address = member.address;
                }
            }
        }
    }

    fn map_id(&mut self, id: u64, address: &str, evidence: &str) {
        self.ids.entry(id).or_insert_with(|| MemberId {
            id,
            address: Some(address.to_string()),
            evidence: evidence.to_string(),
        });
        for info in self.terms.values_mut() {
            if let Some(leader) = &mut info.leader {
                if leader.id == Some(id) && leader.address.is_none() {
                    leader.address = Some(address.to_string());
                }
                if leader.address.as_deref() == Some(address) && leader.id.is_none() {
                    leader.id = Some(id);
                }
            }
        }
    }

    fn address_of(&mut self, id: u64) -> Option<String> {
        let known = self.ids.entry(id).or_insert_with(|| MemberId {
            id,
            address: None,
            evidence: "the log names the id but no line ties it to an address".to_string(),
        });
        known.address.clone()
    }
}

/// Records every candidate and leader id in the member table, mapped or not.
fn register_ids(builder: &mut Builder) {
    let ids: Vec<u64> = builder
        .terms
        .values()
        .flat_map(|info| {
            info.candidates
                .iter()
                .copied()
                .chain(info.leader.as_ref().and_then(|l| l.id))
        })
        .collect();
    for id in ids {
        builder.address_of(id);
    }
}

fn find_leader_silence(events: &[Event], builder: &Builder) -> Option<LeaderSilence> {
    let mut best: Option<LeaderSilence> = None;
    let mut consider = |candidate: LeaderSilence| {
        if best
            .as_ref()
            .is_none_or(|b| candidate.duration_ms > b.duration_ms)
        {
            best = Some(candidate);
        }
    };

    // Gaps between consecutive lines of a server logging as leader.
    let mut previous_leader_line: HashMap<Option<String>, &Event> = HashMap::new();
    // Gaps between consecutive requests a follower received from one leader in one term.
    let mut previous_from_leader: HashMap<(Option<String>, u64, u64), &Event> = HashMap::new();

    for event in events {
        if event.role == Some(Role::Leader) {
            if let Some(previous) = previous_leader_line.insert(event.server.clone(), event) {
                if previous.segment == event.segment {
                    let term = builder
                        .terms
                        .iter()
                        .rev()
                        .find(|(_, info)| {
                            info.leader
                                .as_ref()
                                .is_some_and(|l| l.address == event.server)
                        })
                        .map(|(term, _)| *term);
                    consider(LeaderSilence {
                        leader: Member {
                            id: None,
                            address: event.server.clone(),
                        },
                        term,
                        start: At::of(previous),
                        end: At::of(event),
                        duration_ms: (event.at - previous.at).num_milliseconds(),
                        observed: "gap between two lines the leader logged".to_string(),
                    });
                }
            }
        } else {
            previous_leader_line.remove(&event.server);
        }

        if let Message::Received { record, peer: None } = &event.message {
            let from_leader = matches!(
                record.kind.as_str(),
                "AppendRequest" | "ConfigureRequest" | "InstallRequest"
            );
            if let (true, Some(term), Some(leader)) = (
                from_leader,
                record.get_u64("term"),
                record.get_u64("leader"),
            ) {
                let key = (event.server.clone(), leader, term);
                if let Some(previous) = previous_from_leader.insert(key, event) {
                    if previous.segment == event.segment {
                        let address = builder.ids.get(&leader).and_then(|m| m.address.clone());
                        consider(LeaderSilence {
                            leader: Member {
                                id: Some(leader),
                                address,
                            },
                            term: Some(term),
                            start: At::of(previous),
                            end: At::of(event),
                            duration_ms: (event.at - previous.at).num_milliseconds(),
                            observed: format!(
                                "gap between two requests {} received from the leader",
                                event.server.as_deref().unwrap_or("the server")
                            ),
                        });
                    }
                }
            }
        }
    }
    best
}

/// Finds the longest window without a successful client response. A window starts at the last
/// success (or at the first failing request of an excerpt) and ends at the next success, or at
/// the end of the excerpt when requests kept failing or went unanswered.
fn find_unserved(events: &[Event], outcomes: &[ClientOutcome]) -> Option<UnservedWindow> {
    let mut best: Option<UnservedWindow> = None;
    let mut consider = |start: &Event, end: &Event, open_at_end: bool| {
        let duration_ms = (end.at - start.at).num_milliseconds();
        if best.as_ref().is_none_or(|b| duration_ms > b.duration_ms) {
            best = Some(UnservedWindow {
                start: At::of(start),
                end: At::of(end),
                duration_ms,
                open_at_end,
            });
        }
    };

    let segments = events.last().map_or(0, |e| e.segment);
    for segment in 0..=segments {
        let in_segment: Vec<&ClientOutcome> = outcomes
            .iter()
            .filter(|o| events[o.request_event].segment == segment)
            .collect();
        let Some(last_event) = events.iter().rev().find(|e| e.segment == segment) else {
            continue;
        };

        let mut last_success: Option<&Event> = None;
        let mut first_failure: Option<&Event> = None;
        let mut successes: Vec<&Event> = in_segment
            .iter()
            .filter(|o| o.succeeded)
            .filter_map(|o| o.response_event.map(|r| &events[r]))
            .collect();
        successes.sort_by_key(|e| e.line_no);
        for success in &successes {
            match (last_success, first_failure) {
                (Some(previous), _) => consider(previous, success, false),
                (None, Some(failure)) if failure.line_no < success.line_no => {
                    consider(failure, success, false)
                }
                _ => {}
            }
            last_success = Some(success);
        }

        // Requests after the last success that failed or got no response keep the window open.
        for outcome in in_segment.iter().filter(|o| !o.succeeded) {
            let request = &events[outcome.request_event];
            if first_failure.is_none() {
                first_failure = Some(request);
            }
            let after_last_success = last_success.is_none_or(|s| request.line_no > s.line_no);
            if after_last_success {
                consider(last_success.unwrap_or(request), last_event, true);
                break;
            }
        }
        if let (None, Some(failure)) = (last_success, first_failure) {
            consider(failure, last_event, true);
        }
    }
    best
}

fn members_of(record: &Record) -> Vec<String> {
    record
        .get_list("members")
        .unwrap_or_default()
        .iter()
        .map(|m| member_address(m).unwrap_or_else(|| m.clone()))
        .collect()
}

/// Term of the local entry named by a Copycat append rejection such as `Request log term does
/// not match local log term 1 for the same entry`.
fn local_term_in(reason: &str) -> Option<u64> {
    let rest = reason.split("local log term ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn is_client_response(kind: &str) -> bool {
    matches!(
        kind,
        "CommandResponse"
            | "QueryResponse"
            | "KeepAliveResponse"
            | "RegisterResponse"
            | "UnregisterResponse"
            | "ConnectResponse"
    )
}

fn title_case(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}
