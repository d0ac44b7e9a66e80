//! The replay plan: the parameters a benchmark scenario needs to reproduce a Copycat log on
//! ringraft, next to the figures the log showed so the two runs can be compared.
//!
//! Time runs from the first client arrival in the log, with excerpt jumps left out. The speed
//! factor multiplies the arrival rate and divides the offsets and the run length. A replay at
//! speed 10 thus issues the same operations in a tenth of the time, and pauses the leader after
//! the same number of operations.
//!
//! The pause duration is not scaled: election and session timeouts run on the wall clock, and a
//! 2.5 s stall shrunk to 0.25 s would no longer trigger the failover the log recorded.
//! Figures prefixed `log_` are what the log showed and are never scaled.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::latency::CLIENT_REQUESTS;
use super::stats::Percentiles;
use super::workload::OpKind;
use super::{Analysis, ReplayError};

/// Minimum leader silence replayed as a pause: 250 ms, a common Raft heartbeat interval. A
/// shorter gap is treated as scheduling jitter that no follower would notice.
pub const MIN_PAUSE_MS: i64 = 250;

/// One step of the interleaving cycle, by session slot (0 is the session that sent first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlannedOp {
    pub session_slot: u32,
    pub kind: OpKind,
}

/// A leader pause to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlannedPause {
    /// Time from the start of the load, already divided by the speed factor.
    pub at_offset: Duration,
    /// Length of the pause as observed, not scaled.
    pub duration: Duration,
}

impl PlannedPause {
    /// Formats the pause as a bench fault spec, such as `pause:leader@190ms+2546ms`.
    pub fn fault_spec(&self) -> String {
        format!(
            "pause:leader@{}ms+{}ms",
            self.at_offset.as_millis(),
            self.duration.as_millis()
        )
    }
}

/// Parameters of a replay run, next to the figures the log showed.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayPlan {
    pub source: String,
    pub speed: f64,
    /// Client sessions to open: as many as the log shows.
    pub sessions: u32,
    /// The log's session id for each slot, slots first in order of first arrival.
    pub session_ids: Vec<u64>,
    /// Fraction of operations that are Add commands; the rest are queries.
    pub add_fraction: f64,
    /// Add:Query weights in lowest terms (17 commands and 17 queries give 1:1), ready for the
    /// load generator's `--mix`. Both are 0 when the log has no client operation.
    pub mix: (u64, u64),
    /// Total arrival rate over all sessions, already multiplied by the speed factor.
    pub rate_per_s: f64,
    /// Repeating (session, operation) pattern of arrivals. It is empty when the log has fewer than
    /// two arrivals, and then sessions should take turns alternating Add and Query.
    pub interleave: Vec<PlannedOp>,
    /// Fraction of the log's arrivals the cycle reproduces.
    pub interleave_match: f64,
    /// True when the cycle was built from the session order because the log shows no repeating
    /// pattern.
    pub interleave_inferred: bool,
    pub pause: Option<PlannedPause>,
    /// Length of the load, already divided by the speed factor.
    pub run_duration: Duration,
    /// Latency percentiles per client request type, as the log showed them.
    pub log_latency: BTreeMap<String, Percentiles>,
    /// Maximum time without a successful client response in the log.
    pub log_unavailable_ms: Option<i64>,
    /// True when that window was still open where the log ends, so it is a lower bound.
    pub log_unavailable_open_at_end: bool,
    pub log_sessions_expired: Vec<u64>,
    /// Time the log covers, excerpt jumps left out.
    pub log_duration: Duration,
}

impl Analysis {
    /// Derives the replay plan at `speed` (1 replays at the log's own rate).
    pub fn plan(&self, speed: f64) -> Result<ReplayPlan, ReplayError> {
        if !(speed.is_finite() && speed > 0.0) {
            return Err(ReplayError::InvalidSpeed { speed });
        }

        let workload = &self.workload;
        let mut session_ids: Vec<u64> = workload
            .interleaving
            .as_ref()
            .map(|i| i.session_order.clone())
            .unwrap_or_default();
        for session in &workload.sessions {
            if !session_ids.contains(&session.id) {
                session_ids.push(session.id);
            }
        }

        let (interleave, interleave_match, interleave_inferred) = match &workload.interleaving {
            Some(interleaving) => (
                interleaving
                    .cycle
                    .iter()
                    .map(|step| PlannedOp {
                        session_slot: step.session_slot,
                        kind: step.kind,
                    })
                    .collect(),
                interleaving.cycle_match,
                interleaving.inferred,
            ),
            None => (Vec::new(), 0.0, false),
        };

        // The load starts at the first arrival; before it the log shows no client traffic.
        let origin_ms = workload.arrivals.first_active_offset_ms.unwrap_or(0);
        let scaled = |ms: i64| Duration::from_secs_f64(ms.max(0) as f64 / 1_000.0 / speed);
        let pause = self
            .timeline
            .leader_silence
            .as_ref()
            .filter(|s| s.duration_ms >= MIN_PAUSE_MS)
            .map(|silence| PlannedPause {
                at_offset: scaled(silence.start.active_offset_ms - origin_ms),
                duration: Duration::from_millis(silence.duration_ms.max(0) as u64),
            });

        let log_latency = self
            .latency
            .iter()
            .filter(|stats| {
                stats.direction == "incoming" && CLIENT_REQUESTS.contains(&stats.request.as_str())
            })
            .filter_map(|stats| {
                stats
                    .latency
                    .clone()
                    .map(|latency| (stats.request.clone(), latency))
            })
            .collect();
        let unserved = self.timeline.longest_unserved.as_ref();

        Ok(ReplayPlan {
            source: self.source.clone(),
            speed,
            sessions: session_ids.len() as u32,
            session_ids,
            add_fraction: workload.command_fraction,
            mix: lowest_terms(workload.commands, workload.queries),
            rate_per_s: workload.arrivals.rate_per_s * speed,
            interleave,
            interleave_match,
            interleave_inferred,
            pause,
            run_duration: scaled(self.active_duration_ms - origin_ms),
            log_latency,
            log_unavailable_ms: unserved.map(|w| w.duration_ms),
            log_unavailable_open_at_end: unserved.is_some_and(|w| w.open_at_end),
            log_sessions_expired: self.timeline.expired_sessions.clone(),
            log_duration: Duration::from_millis(self.active_duration_ms.max(0) as u64),
        })
    }
}

/// Divides both counts by their greatest common divisor.
fn lowest_terms(adds: u64, queries: u64) -> (u64, u64) {
    let (mut a, mut b) = (adds, queries);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    if a == 0 {
        return (0, 0);
    }
    (adds / a, queries / a)
}
