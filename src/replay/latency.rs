//! Request latency as the log shows it: from each `Received XRequest` to the matching
//! `Sent XResponse` on the same server, and from each `Sent XRequest to peer` to the matching
//! `Received XResponse from peer`.
//!
//! Copycat's responses do not carry a request id, so matching is first-in first-out per server
//! and request type, the order in which its single server thread sends responses. Commands are matched
//! exactly where the log allows: the leader logs `Appended CommandEntry[index, session,
//! sequence]`, and the `CommandResponse` carries that index. A pair whose two lines lie in
//! different excerpts of the log is not a latency and is counted apart.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::Serialize;

use super::events::Event;
use super::message::Message;
use super::stats::Percentiles;

/// Request types a client sends; their outcomes define when clients were served.
pub const CLIENT_REQUESTS: [&str; 6] = [
    "CommandRequest",
    "QueryRequest",
    "KeepAliveRequest",
    "RegisterRequest",
    "UnregisterRequest",
    "ConnectRequest",
];

/// Latency of one request type on the servers of the log.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyStats {
    /// Request type, such as `CommandRequest`.
    pub request: String,
    /// `incoming` for requests the server received, `outgoing` for requests it sent to a peer.
    pub direction: &'static str,
    pub matched: u64,
    /// Responses with `status=ERROR`, by error name.
    pub errors: BTreeMap<String, u64>,
    /// Requests with no response before the log ends.
    pub unanswered: u64,
    /// Responses whose request is not in the log (it came before the excerpt starts).
    pub unmatched_responses: u64,
    /// Pairs whose request and response lie in different excerpts.
    pub across_excerpts: u64,
    pub latency: Option<Percentiles>,
}

/// Outcome of one client request, used to find when clients went unserved.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    pub request_event: usize,
    /// Index of the response event, when the log has one.
    pub response_event: Option<usize>,
    pub succeeded: bool,
}

/// Latency per request type plus the outcome of every client request.
#[derive(Debug, Default)]
pub struct LatencyReport {
    pub stats: Vec<LatencyStats>,
    pub client_outcomes: Vec<ClientOutcome>,
}

#[derive(Default)]
struct Accumulator {
    samples: Vec<i64>,
    errors: BTreeMap<String, u64>,
    unmatched_responses: u64,
    across_excerpts: u64,
}

struct Open {
    event: usize,
    session_sequence: Option<(u64, u64)>,
}

/// Matches requests with responses over all events.
pub fn measure(events: &[Event]) -> LatencyReport {
    let mut pending: HashMap<(Option<String>, String, Option<String>), VecDeque<Open>> =
        HashMap::new();
    let mut accumulators: BTreeMap<(String, &'static str), Accumulator> = BTreeMap::new();
    let mut command_index: HashMap<(Option<String>, u64), (u64, u64)> = HashMap::new();
    let mut appending_servers: HashSet<Option<String>> = HashSet::new();
    let mut outcomes = Vec::new();

    for (position, event) in events.iter().enumerate() {
        match &event.message {
            Message::Received { record, peer: None } if record.kind.ends_with("Request") => {
                let session_sequence = record.get_u64("session").zip(record.get_u64("sequence"));
                let key = (event.server.clone(), record.kind.clone(), None);
                pending.entry(key).or_default().push_back(Open {
                    event: position,
                    session_sequence,
                });
            }
            Message::Sent {
                record,
                peer: Some(peer),
            } if record.kind.ends_with("Request") => {
                let key = (
                    event.server.clone(),
                    record.kind.clone(),
                    Some(peer.clone()),
                );
                pending.entry(key).or_default().push_back(Open {
                    event: position,
                    session_sequence: None,
                });
            }
            Message::Appended { record } if record.kind == "CommandEntry" => {
                if let (Some(index), Some(session), Some(sequence)) = (
                    record.get_u64("index"),
                    record.get_u64("session"),
                    record.get_u64("sequence"),
                ) {
                    command_index.insert((event.server.clone(), index), (session, sequence));
                    appending_servers.insert(event.server.clone());
                }
            }
            Message::Sent { record, peer: None }
            | Message::Received {
                record,
                peer: Some(_),
            } if record.kind.ends_with("Response") => {
                let (peer, direction) = match &event.message {
                    Message::Received { peer, .. } => (peer.clone(), "outgoing"),
                    _ => (None, "incoming"),
                };
                let request = format!("{}Request", record.kind.trim_end_matches("Response"));
                let accumulator = accumulators
                    .entry((request.clone(), direction))
                    .or_default();
                let queue = pending
                    .entry((event.server.clone(), request.clone(), peer))
                    .or_default();

                // A CommandResponse names the log index of its command; prefer that pairing.
                let exact = (request == "CommandRequest")
                    .then(|| record.get_u64("index"))
                    .flatten()
                    .and_then(|index| command_index.get(&(event.server.clone(), index)))
                    .and_then(|wanted| {
                        queue
                            .iter()
                            .position(|open| open.session_sequence == Some(*wanted))
                    });
                // On a server that logs its command appends, a CommandResponse with an unknown
                // index belongs to a command from before the excerpt, so FIFO would mis-pair it.
                let exact_only =
                    request == "CommandRequest" && appending_servers.contains(&event.server);
                let open = match exact {
                    Some(found) => queue.remove(found),
                    None if exact_only => None,
                    None => queue.pop_front(),
                };

                let failed = record.get("status").is_some_and(|s| s == "ERROR");
                if failed {
                    let name = record
                        .get("error")
                        .filter(|e| *e != "null")
                        .unwrap_or("ERROR")
                        .to_string();
                    *accumulator.errors.entry(name).or_default() += 1;
                }

                match open {
                    None => accumulator.unmatched_responses += 1,
                    Some(open) => {
                        let request_event = &events[open.event];
                        if request_event.segment == event.segment {
                            accumulator
                                .samples
                                .push((event.at - request_event.at).num_milliseconds());
                        } else {
                            accumulator.across_excerpts += 1;
                        }
                        if direction == "incoming" && CLIENT_REQUESTS.contains(&request.as_str()) {
                            outcomes.push(ClientOutcome {
                                request_event: open.event,
                                response_event: Some(position),
                                succeeded: !failed,
                            });
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // Whatever is still open never got a response in this log.
    for ((_, request, peer), queue) in &pending {
        let direction = if peer.is_some() {
            "outgoing"
        } else {
            "incoming"
        };
        if queue.is_empty() {
            continue;
        }
        accumulators
            .entry((request.clone(), direction))
            .or_default();
        if direction == "incoming" && CLIENT_REQUESTS.contains(&request.as_str()) {
            for open in queue {
                outcomes.push(ClientOutcome {
                    request_event: open.event,
                    response_event: None,
                    succeeded: false,
                });
            }
        }
    }
    outcomes.sort_by_key(|outcome| outcome.request_event);

    let stats = accumulators
        .into_iter()
        .map(|((request, direction), accumulator)| {
            let unanswered = pending
                .iter()
                .filter(|((_, kind, peer), _)| {
                    *kind == request && (peer.is_some() == (direction == "outgoing"))
                })
                .map(|(_, queue)| queue.len() as u64)
                .sum();
            LatencyStats {
                request,
                direction,
                matched: accumulator.samples.len() as u64 + accumulator.across_excerpts,
                errors: accumulator.errors,
                unanswered,
                unmatched_responses: accumulator.unmatched_responses,
                across_excerpts: accumulator.across_excerpts,
                latency: Percentiles::from_ms(&accumulator.samples),
            }
        })
        .collect();

    LatencyReport {
        stats,
        client_outcomes: outcomes,
    }
}
