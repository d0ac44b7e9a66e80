//! Outage measures over the events: the leader's longest silence and the longest time clients
//! went without a successful response. Neither gap ever spans an excerpt boundary.

use std::collections::{BTreeMap, HashMap};

use super::{At, LeaderSilence, Member, MemberId, TermInfo, UnservedWindow};
use crate::replay::events::Event;
use crate::replay::latency::ClientOutcome;
use crate::replay::line::Role;
use crate::replay::message::Message;

/// Finds the longest gap between two lines a server logged as leader, or between two requests
/// a follower received from the same leader in the same term.
pub(super) fn find_leader_silence(
    events: &[Event],
    terms: &BTreeMap<u64, TermInfo>,
    ids: &BTreeMap<u64, MemberId>,
) -> Option<LeaderSilence> {
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
                    let term = terms
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
                        let address = ids.get(&leader).and_then(|m| m.address.clone());
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
pub(super) fn find_unserved(
    events: &[Event],
    outcomes: &[ClientOutcome],
) -> Option<UnservedWindow> {
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
