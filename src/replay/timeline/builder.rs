//! The walk over events that builds the timeline. One [`Builder`] observes every event in log
//! order. It keeps the state the timeline needs: the current term, each server's role, the open
//! pre-vote round, local entries known to exist and the last AppendRequest each server received.

use std::collections::{BTreeMap, HashMap};

use super::{At, Member, MemberId, PollOutcome, TermInfo, TimelineEvent, TimelineKind};
use crate::replay::events::Event;
use crate::replay::line::Role;
use crate::replay::message::Message;
use crate::replay::record::{member_address, Record};

/// Pre-vote round in progress.
pub(super) struct OpenPoll {
    event: usize,
    polled: usize,
}

#[derive(Default)]
pub(super) struct Builder {
    pub(super) events: Vec<TimelineEvent>,
    pub(super) terms: BTreeMap<u64, TermInfo>,
    pub(super) current_term: Option<u64>,
    pub(super) ids: BTreeMap<u64, MemberId>,
    pub(super) roles: HashMap<Option<String>, Role>,
    /// Role whose close the server logged, so its class's late lines do not reopen it.
    pub(super) closed: HashMap<Option<String>, Role>,
    pub(super) open_poll: Option<OpenPoll>,
    /// Local log entries known to exist, per server, as index to term.
    pub(super) local_entries: HashMap<Option<String>, BTreeMap<u64, u64>>,
    pub(super) last_append_request: HashMap<Option<String>, Record>,
    /// Sessions unregistered, as (session, entry index, expired).
    pub(super) unregistered: Vec<(u64, Option<u64>, bool)>,
}

impl Builder {
    pub(super) fn push(&mut self, event: &Event, kind: TimelineKind) -> usize {
        self.events.push(TimelineEvent {
            at: At::of(event),
            kind,
        });
        self.events.len() - 1
    }

    pub(super) fn observe(&mut self, event: &Event) {
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

    pub(super) fn close_poll(&mut self, result: PollOutcome) {
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
                // During a long outage every request gets the same error, so one item covers the run.
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
pub(super) fn register_ids(builder: &mut Builder) {
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
