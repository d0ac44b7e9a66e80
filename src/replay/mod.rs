//! Analysis of Atomix Copycat server DEBUG logs, for `ringraft replay`.
//!
//! A Copycat log is the record a real deployment leaves of its workload and of its failovers.
//! This module reads one and derives:
//! - the client workload: sessions, their commands and queries with sequence numbers, the
//!   command/query mix, the arrival rate and distribution, and how sessions interleave;
//! - the latency each request shows in the log, from `Received` to the matching `Sent`;
//! - the failover timeline, each item with its offset from the start of the log: the leader's
//!   longest silence, heartbeat timeouts, polls and votes with their outcome and reason, term
//!   changes and each term's leader, truncated entries, configuration entries, expired sessions;
//! - a [`ReplayPlan`] that a benchmark scenario can be built from.
//!
//! The pipeline is one pass per concept: `line` splits a physical line into header and message,
//! `record` and `message` interpret the message, `events` turns entries into timed events and
//! accounts for every line, then `workload`, `latency` and `timeline` read the events and
//! `render` formats the result. Nothing is dropped silently: every non-blank line is either an
//! event, a continuation of one, or counted as uninterpreted, and the first few uninterpreted
//! lines are kept with their text and the reason.
//!
//! Logs are often excerpts, so a timestamp jump of more than a minute (or backwards by more than
//! a second) is treated as a cut between excerpts: gaps, latencies and silences never span one.
//!
//! Not done yet: member ids are mapped to addresses only where a line ties them together (most
//! ids stay unmapped in a follower's log); the workload of a follower-only log is not derived
//! from replicated entries; Copycat 2 (Atomix Raft) message forms are not recognised.

mod events;
mod latency;
mod line;
mod message;
mod plan;
mod record;
mod render;
mod run;
mod stats;
mod timeline;
mod workload;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use events::{
    LineCounts, TimestampJump, UninterpretedLine, EXCERPT_JUMP_MS, SHOWN_UNINTERPRETED,
};
pub use latency::LatencyStats;
pub use line::{Level, Role};
pub use plan::{PlannedOp, PlannedPause, ReplayPlan, MIN_PAUSE_MS};
pub use run::{bench_args_for, compare, render_comparison, run_replay, ReplayRunError};
pub use stats::Percentiles;
pub use timeline::{
    At, LeaderSilence, Member, MemberId, PollOutcome, TermInfo, Timeline, TimelineEvent,
    TimelineKind, UnservedWindow,
};
pub use workload::{
    Arrivals, CycleStep, Interleaving, OpKind, Sequences, SessionSummary, Workload,
};

/// Expected layout, quoted in the error for a file of another format.
const EXPECTED_LAYOUT: &str =
    "lines like '2017-05-05T16:35:29.155+08:00 [copycat-server-...] DEBUG i.a.c.server.state.LeaderState - /host:port - Received CommandRequest[...]'";

/// Error of a log analysis or of a replay plan.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("failed to read Copycat log {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} is empty: give a Copycat server DEBUG log")]
    Empty { name: String },
    #[error("{name} is not a Copycat server log: {detail}; expected {EXPECTED_LAYOUT}")]
    NotCopycatLog { name: String, detail: String },
    #[error("invalid replay speed {speed}: it must be a finite number greater than 0 (1 replays at the log's own rate)")]
    InvalidSpeed { speed: f64 },
}

/// Everything derived from one Copycat log.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// File name or label the log was read from.
    pub source: String,
    /// Addresses of the servers whose lines the log contains.
    pub servers: Vec<String>,
    pub first_timestamp: String,
    pub last_timestamp: String,
    /// Wall-clock time from the first to the last entry.
    pub duration_ms: i64,
    /// Time the log covers with excerpt jumps left out.
    pub active_duration_ms: i64,
    pub lines: LineCounts,
    /// The first [`SHOWN_UNINTERPRETED`] uninterpreted lines; `lines.uninterpreted` counts all.
    pub uninterpreted: Vec<UninterpretedLine>,
    pub excerpt_jumps: Vec<TimestampJump>,
    pub workload: Workload,
    /// Latency per request type, from the log's own timestamps.
    pub latency: Vec<LatencyStats>,
    pub timeline: Timeline,
}

/// Reads and analyses the Copycat log at `path`.
pub fn analyze_file(path: &Path) -> Result<Analysis, ReplayError> {
    let bytes = std::fs::read(path).map_err(|source| ReplayError::Read {
        path: path.to_path_buf(),
        source,
    })?;

    // A stray invalid byte must not make the whole log unreadable. It becomes U+FFFD in its line,
    // and that line is reported if it cannot be interpreted.
    let text = String::from_utf8_lossy(&bytes);
    analyze_str(&text, &path.display().to_string())
}

/// Analyses a Copycat log held in memory; `name` labels it in the report and in errors.
pub fn analyze_str(text: &str, name: &str) -> Result<Analysis, ReplayError> {
    if text.trim().is_empty() {
        return Err(ReplayError::Empty {
            name: name.to_string(),
        });
    }

    let extraction = events::extract(text);
    if extraction.counts.entries == 0 {
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        let first_line: String = first.chars().take(120).collect();
        return Err(ReplayError::NotCopycatLog {
            name: name.to_string(),
            detail: format!("no line has the logback entry header (first line: {first_line:?})"),
        });
    }
    if extraction.events.is_empty() {
        return Err(ReplayError::NotCopycatLog {
            name: name.to_string(),
            detail: format!(
                "{} lines have the logback header but none carries a Copycat server message",
                extraction.counts.entries
            ),
        });
    }

    let events = &extraction.events;
    let mut servers: Vec<String> = events.iter().filter_map(|e| e.server.clone()).collect();
    servers.sort();
    servers.dedup();

    let latency = latency::measure(events);
    let workload = workload::derive(events);
    let timeline = timeline::build(events, &extraction.jumps, &latency.client_outcomes);

    let (first_at, first_text) = extraction.first_timestamp.clone().unwrap_or_default();
    let (last_at, last_text) = extraction.last_timestamp.clone().unwrap_or_default();
    let duration_ms = (last_at - first_at).num_milliseconds();
    let jumped_ms: i64 = extraction.jumps.iter().map(|j| j.step_ms).sum();

    Ok(Analysis {
        source: name.to_string(),
        servers,
        first_timestamp: first_text,
        last_timestamp: last_text,
        duration_ms,
        active_duration_ms: duration_ms - jumped_ms,
        lines: extraction.counts,
        uninterpreted: extraction.uninterpreted,
        excerpt_jumps: extraction.jumps,
        workload,
        latency: latency.stats,
        timeline,
    })
}
