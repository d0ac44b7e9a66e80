//! The client workload a log shows: sessions, their commands and queries with sequence
//! numbers, the operation mix, the arrival rate and the interleaving of sessions.
//!
//! Only requests the server received (`Received CommandRequest`/`QueryRequest`) count as
//! arrivals: a follower's log shows replicated entries, not client arrivals.
//! NOTE: a follower-only log therefore yields sessions but no arrival rate; deriving the
//! workload from replicated `CommandEntry` lines is not done yet.

use std::collections::BTreeMap;

use serde::Serialize;

use super::events::Event;
use super::message::Message;
use super::stats::Percentiles;

/// Fraction of arrivals a candidate interleaving cycle must reproduce to be reported as the
/// pattern.
const CYCLE_MATCH_THRESHOLD: f64 = 0.9;

/// Kind of a client operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// A `CommandRequest` (the Add operation in the Copycat workload).
    Command,
    /// A `QueryRequest`.
    Query,
}

impl OpKind {
    pub fn letter(self) -> char {
        match self {
            OpKind::Command => 'C',
            OpKind::Query => 'Q',
        }
    }
}

/// Sequence numbers seen for one kind of request, compressed into ranges.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sequences {
    pub count: u64,
    /// Distinct sequence numbers as inclusive ranges, ascending.
    pub ranges: Vec<(u64, u64)>,
    /// Requests that repeat a sequence number already seen (retries, or queries issued before
    /// the session's next command).
    pub repeated: u64,
}

impl Sequences {
    fn from_values(values: &[u64]) -> Sequences {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let before = sorted.len();
        sorted.dedup();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for value in sorted.iter().copied() {
            match ranges.last_mut() {
                Some((_, end)) if *end + 1 == value => *end = value,
                _ => ranges.push((value, value)),
            }
        }
        Sequences {
            count: before as u64,
            ranges,
            repeated: (before - sorted.len()) as u64,
        }
    }
}

/// Requests of one client session as the log shows them.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub id: u64,
    /// Command sequence numbers of the `CommandRequest`s received.
    pub commands: Sequences,
    /// The `sequence` field of the `QueryRequest`s received: the last command sequence the
    /// session had seen when it sent the query.
    pub queries: Sequences,
    /// Operation classes of the commands and queries (`AddCommand`, `QueryCommand`), counted.
    pub operations: BTreeMap<String, u64>,
    pub keep_alives: u64,
    /// Log lines that mention the session.
    pub first_line: usize,
    pub last_line: usize,
}

/// Arrival process of client commands and queries.
#[derive(Debug, Clone, Serialize)]
pub struct Arrivals {
    pub requests: u64,
    /// Offset of the first arrival from the start of the log, excerpt jumps left out.
    pub first_active_offset_ms: Option<i64>,
    /// Time from the first to the last arrival, excerpt jumps left out.
    pub span_ms: i64,
    /// Arrivals per second over the span.
    pub rate_per_s: f64,
    /// Time between consecutive arrivals within one excerpt.
    pub inter_arrival: Option<Percentiles>,
}

/// One step of the interleaving cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CycleStep {
    /// Position of the session in order of first arrival, from 0.
    pub session_slot: u32,
    pub session: u64,
    pub kind: OpKind,
}

/// Interleaving of arrivals across sessions.
#[derive(Debug, Clone, Serialize)]
pub struct Interleaving {
    /// Sessions in order of their first arrival.
    pub session_order: Vec<u64>,
    /// Shortest repeating pattern of (session, kind) arrivals that reproduces at least 90% of the
    /// sequence, rotated to start with the first session's command.
    pub cycle: Vec<CycleStep>,
    /// Fraction of arrivals equal to the arrival one cycle later, or for an inferred cycle, to
    /// the cycle step at the same position.
    pub cycle_match: f64,
    /// True when the log is too short or irregular to show a repeating pattern, so the cycle is
    /// built instead. In a built cycle sessions take turns in order of first arrival, and each
    /// session alternates commands and queries starting with its first observed operation.
    pub inferred: bool,
    /// Fraction of consecutive arrivals that move to the next session in `session_order`.
    pub round_robin: f64,
    /// Fraction of a session's consecutive operations that switch between command and query,
    /// or `None` when no session has two operations in the log.
    pub alternation: Option<f64>,
}

/// Workload section of the analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub sessions: Vec<SessionSummary>,
    pub commands: u64,
    pub queries: u64,
    /// Operation classes over all sessions.
    pub operations: BTreeMap<String, u64>,
    /// Commands over commands plus queries; 0 when there is neither.
    pub command_fraction: f64,
    pub arrivals: Arrivals,
    pub interleaving: Option<Interleaving>,
}

struct Arrival {
    session: u64,
    kind: OpKind,
    active_ms: i64,
    segment: u32,
}

/// Derives the workload from the events.
pub fn derive(events: &[Event]) -> Workload {
    let mut sessions: BTreeMap<u64, (Vec<u64>, Vec<u64>, SessionSummary)> = BTreeMap::new();
    let mut arrivals = Vec::new();

    for event in events {
        let (record, arrival_kind) = match &event.message {
            Message::Received { record, peer: None } => {
                let kind = match record.kind.as_str() {
                    "CommandRequest" => Some(OpKind::Command),
                    "QueryRequest" => Some(OpKind::Query),
                    _ => None,
                };
                (record, kind)
            }
            Message::Appended { record } | Message::Applying { record } => (record, None),
            Message::Sent { record, peer: None } if record.kind == "RegisterResponse" => {
                (record, None)
            }
            _ => continue,
        };
        let Some(session) = record.get_u64("session") else {
            continue;
        };
        if session == 0 {
            continue;
        }

        let (command_sequences, query_sequences, summary) =
            sessions.entry(session).or_insert_with(|| {
                (
                    Vec::new(),
                    Vec::new(),
                    SessionSummary {
                        id: session,
                        commands: Sequences::default(),
                        queries: Sequences::default(),
                        operations: BTreeMap::new(),
                        keep_alives: 0,
                        first_line: event.line_no,
                        last_line: event.line_no,
                    },
                )
            });
        summary.last_line = event.line_no;
        if record.kind == "KeepAliveRequest" {
            summary.keep_alives += 1;
        }

        let Some(kind) = arrival_kind else { continue };
        let (sequences, operation_field) = match kind {
            OpKind::Command => (command_sequences, "command"),
            OpKind::Query => (query_sequences, "query"),
        };
        if let Some(sequence) = record.get_u64("sequence") {
            sequences.push(sequence);
        }
        let operation = record
            .operation_class(operation_field)
            .unwrap_or_else(|| record.kind.clone());
        *summary.operations.entry(operation).or_default() += 1;
        arrivals.push(Arrival {
            session,
            kind,
            active_ms: event.active_ms,
            segment: event.segment,
        });
    }

    let sessions: Vec<SessionSummary> = sessions
        .into_values()
        .map(|(commands, queries, mut summary)| {
            summary.commands = Sequences::from_values(&commands);
            summary.queries = Sequences::from_values(&queries);
            summary
        })
        .collect();

    let commands = arrivals
        .iter()
        .filter(|a| a.kind == OpKind::Command)
        .count() as u64;
    let queries = arrivals.len() as u64 - commands;
    let mut operations = BTreeMap::new();
    for session in &sessions {
        for (name, count) in &session.operations {
            *operations.entry(name.clone()).or_default() += count;
        }
    }

    Workload {
        sessions,
        commands,
        queries,
        operations,
        command_fraction: if arrivals.is_empty() {
            0.0
        } else {
            commands as f64 / arrivals.len() as f64
        },
        arrivals: measure_arrivals(&arrivals),
        interleaving: interleave(&arrivals),
    }
}

fn measure_arrivals(arrivals: &[Arrival]) -> Arrivals {
    let gaps: Vec<i64> = arrivals
        .windows(2)
        .filter(|pair| pair[0].segment == pair[1].segment)
        .map(|pair| pair[1].active_ms - pair[0].active_ms)
        .collect();
    let span_ms = match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) => last.active_ms - first.active_ms,
        _ => 0,
    };

    // n arrivals delimit n - 1 intervals, so the rate over the span counts intervals.
    let rate_per_s = if span_ms > 0 {
        (arrivals.len() - 1) as f64 * 1_000.0 / span_ms as f64
    } else {
        0.0
    };

    Arrivals {
        requests: arrivals.len() as u64,
        first_active_offset_ms: arrivals.first().map(|a| a.active_ms),
        span_ms,
        rate_per_s,
        inter_arrival: Percentiles::from_ms(&gaps),
    }
}

fn interleave(arrivals: &[Arrival]) -> Option<Interleaving> {
    if arrivals.len() < 2 {
        return None;
    }

    let mut session_order: Vec<u64> = Vec::new();
    for arrival in arrivals {
        if !session_order.contains(&arrival.session) {
            session_order.push(arrival.session);
        }
    }
    let slot = |session: u64| {
        session_order
            .iter()
            .position(|s| *s == session)
            .unwrap_or(0) as u32
    };
    let steps: Vec<CycleStep> = arrivals
        .iter()
        .map(|a| CycleStep {
            session_slot: slot(a.session),
            session: a.session,
            kind: a.kind,
        })
        .collect();

    // Smallest period whose shifted copy agrees with the sequence often enough.
    let max_period = (steps.len() / 2).min(4 * session_order.len());
    let mut best: Option<(usize, f64)> = None;
    for period in 1..=max_period {
        let compared = steps.len() - period;
        let agreeing = (0..compared)
            .filter(|&i| steps[i] == steps[i + period])
            .count();
        let fraction = agreeing as f64 / compared as f64;
        if fraction >= CYCLE_MATCH_THRESHOLD {
            best = Some((period, fraction));
            break;
        }
    }

    let (cycle, cycle_match, inferred) = match best {
        Some((period, fraction)) => (observed_cycle(&steps, period), fraction, false),
        None => {
            let cycle = alternating_cycle(&steps, &session_order);
            let fraction = agreement(&steps, &cycle);
            (cycle, fraction, true)
        }
    };

    let sessions = session_order.len() as u32;
    let round_robin = fraction_of(steps.windows(2), |pair| {
        pair[1].session_slot == (pair[0].session_slot + 1) % sessions
    });
    let mut per_session: BTreeMap<u64, Vec<OpKind>> = BTreeMap::new();
    for step in &steps {
        per_session.entry(step.session).or_default().push(step.kind);
    }
    let (switches, pairs) =
        per_session
            .values()
            .fold((0usize, 0usize), |(switches, pairs), kinds| {
                let switched = kinds.windows(2).filter(|pair| pair[0] != pair[1]).count();
                (switches + switched, pairs + kinds.len().saturating_sub(1))
            });

    Some(Interleaving {
        session_order,
        cycle,
        cycle_match,
        inferred,
        round_robin,
        alternation: (pairs > 0).then(|| switches as f64 / pairs as f64),
    })
}

/// Extracts the repeating window of `period` steps where it first repeats exactly, so a ragged
/// start does not show, rotated to begin with the first session's command.
fn observed_cycle(steps: &[CycleStep], period: usize) -> Vec<CycleStep> {
    let start = (0..=steps.len() - 2 * period)
        .find(|&i| (0..period).all(|k| steps[i + k] == steps[i + period + k]))
        .unwrap_or(0);
    let mut cycle = steps[start..start + period].to_vec();
    let first = cycle
        .iter()
        .position(|s| s.session_slot == 0 && s.kind == OpKind::Command)
        .or_else(|| cycle.iter().position(|s| s.session_slot == 0))
        .unwrap_or(0);
    cycle.rotate_left(first);
    cycle
}

/// Sessions in turn, each alternating command and query from its first observed operation.
fn alternating_cycle(steps: &[CycleStep], session_order: &[u64]) -> Vec<CycleStep> {
    let mut cycle = Vec::with_capacity(2 * session_order.len());
    for round in 0..2 {
        for (slot, session) in session_order.iter().enumerate() {
            let first_kind = steps
                .iter()
                .find(|s| s.session == *session)
                .map_or(OpKind::Command, |s| s.kind);
            let kind = match (round, first_kind) {
                (0, kind) => kind,
                (_, OpKind::Command) => OpKind::Query,
                (_, OpKind::Query) => OpKind::Command,
            };
            cycle.push(CycleStep {
                session_slot: slot as u32,
                session: *session,
                kind,
            });
        }
    }
    cycle
}

/// Fraction of steps equal to the cycle step at the same position.
fn agreement(steps: &[CycleStep], cycle: &[CycleStep]) -> f64 {
    let agreeing = steps
        .iter()
        .zip(cycle.iter().cycle())
        .filter(|(step, expected)| step == expected)
        .count();
    agreeing as f64 / steps.len() as f64
}

fn fraction_of<'a, I>(items: I, predicate: impl Fn(&[CycleStep]) -> bool) -> f64
where
    I: Iterator<Item = &'a [CycleStep]>,
{
    let (hits, total) = items.fold((0usize, 0usize), |(hits, total), item| {
        (hits + predicate(item) as usize, total + 1)
    });
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}
