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

mod builder;
mod outage;

use serde::Serialize;

use super::events::{Event, TimestampJump};
use super::latency::ClientOutcome;
use super::line::Role;
use builder::{register_ids, Builder};

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
    /// Members that requested votes or pre-votes for this term.
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

    let leader_silence = outage::find_leader_silence(events, &builder.terms, &builder.ids);
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
        longest_unserved: outage::find_unserved(events, outcomes),
        expired_sessions,
        member_ids: builder.ids.into_values().collect(),
    }
}
