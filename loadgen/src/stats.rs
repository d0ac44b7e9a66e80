//! Per-executor recording state and the merge of executors.
//!
//! Sessions of an executor share one `ExecutorStats` (single thread, no locks). Completed
//! operations go to the run-wide recorders (measured phase only), to the interval of the
//! second they completed in (for the interval log, the time series and the progress line),
//! and to the history. Every second the executor hands its finished intervals to the main
//! thread, which merges them by adding histograms.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::history::{HistoryRecord, OpKind, Outcome};
use crate::recorder::{LatencyRecorder, OpCounts, RecorderSet};

/// Times that divide a run, shared by every executor.
#[derive(Clone, Copy, Debug)]
pub struct RunTimes {
    /// Time 0 of the history and the time series.
    pub start: Instant,
    /// End of the warm-up: operations intended from here on are measured.
    pub measure_start: Instant,
    /// No operation is intended at or after this instant.
    pub end: Instant,
}

impl RunTimes {
    pub fn since_start_ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    pub fn second_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_secs()
    }
}

/// Recorders of the operations that completed within one second of the run.
#[derive(Clone, Debug, Default)]
pub struct IntervalStats {
    pub recorders: RecorderSet,
    /// Operations first sent during this second.
    pub sent: u64,
}

impl IntervalStats {
    pub fn add(&mut self, other: &IntervalStats) {
        self.recorders.add(&other.recorders);
        self.sent += other.sent;
    }
}

/// Periods when an open-loop session had due requests it could not send yet.
///
/// An episode starts when a request becomes due and cannot be sent (every pipeline slot is
/// taken, or the session has no connection or no registered session), and ends when the
/// session has sent everything that is due. `stall` is the part until the first due request
/// could be sent again. `catch_up` is the rest, while the session sends its backlog as fast
/// as the pipeline allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct BehindStats {
    pub episodes: u64,
    pub total_behind_ms: f64,
    pub max_behind_ms: f64,
    pub total_stall_ms: f64,
    pub max_stall_ms: f64,
    pub total_catch_up_ms: f64,
    pub max_catch_up_ms: f64,
    /// Maximum number of due but unsent requests of one session at one time.
    pub max_backlog: u64,
}

impl BehindStats {
    /// Count one finished episode. Episodes shorter than a millisecond are normal jitter of
    /// a full pipeline and are not counted.
    pub fn record_episode(&mut self, stall: Duration, catch_up: Duration) {
        let behind = stall + catch_up;
        if behind < Duration::from_millis(1) {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.episodes += 1;
        self.total_behind_ms += ms(behind);
        self.max_behind_ms = self.max_behind_ms.max(ms(behind));
        self.total_stall_ms += ms(stall);
        self.max_stall_ms = self.max_stall_ms.max(ms(stall));
        self.total_catch_up_ms += ms(catch_up);
        self.max_catch_up_ms = self.max_catch_up_ms.max(ms(catch_up));
    }

    pub fn add(&mut self, other: &BehindStats) {
        self.episodes += other.episodes;
        self.total_behind_ms += other.total_behind_ms;
        self.max_behind_ms = self.max_behind_ms.max(other.max_behind_ms);
        self.total_stall_ms += other.total_stall_ms;
        self.max_stall_ms = self.max_stall_ms.max(other.max_stall_ms);
        self.total_catch_up_ms += other.total_catch_up_ms;
        self.max_catch_up_ms = self.max_catch_up_ms.max(other.max_catch_up_ms);
        self.max_backlog = self.max_backlog.max(other.max_backlog);
    }
}

/// Client-side events that are not operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientCounters {
    /// Sessions registered, including the first registration of every session.
    pub registrations: u64,
    /// Registrations after a session was lost (expired, unknown to the cluster, or abandoned
    /// after a command timed out or was rejected).
    pub reregistrations: u64,
    pub sessions_expired: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub redirects: u64,
    pub keepalives_sent: u64,
    pub keepalives_failed: u64,
    /// Ops the open-loop schedule had made due but that were never sent by the end of the run.
    pub unsent_at_end: u64,
}

impl ClientCounters {
    pub fn add(&mut self, o: &ClientCounters) {
        self.registrations += o.registrations;
        self.reregistrations += o.reregistrations;
        self.sessions_expired += o.sessions_expired;
        self.connects += o.connects;
        self.connect_failures += o.connect_failures;
        self.disconnects += o.disconnects;
        self.redirects += o.redirects;
        self.keepalives_sent += o.keepalives_sent;
        self.keepalives_failed += o.keepalives_failed;
        self.unsent_at_end += o.unsent_at_end;
    }
}

/// Everything an executor hands back at the end of the run.
#[derive(Debug, Default)]
pub struct ExecutorResult {
    pub measured: RecorderSet,
    pub warmup: [OpCounts; 2],
    /// Generator lag of measured open-loop requests: first actual send minus intended time.
    pub lag: LatencyRecorder,
    pub behind: BehindStats,
    pub client: ClientCounters,
    pub history: Vec<HistoryRecord>,
}

/// Per-executor recording state.
pub(crate) struct ExecutorStats {
    pub times: RunTimes,
    pub result: ExecutorResult,
    pub intervals: BTreeMap<u64, IntervalStats>,
}

fn kind_index(kind: OpKind) -> usize {
    match kind {
        OpKind::Add => 0,
        OpKind::Query => 1,
    }
}

/// A finished operation as the session reports it.
pub(crate) struct Completion {
    pub record: HistoryRecord,
    pub intended: Instant,
    pub last_send: Instant,
    pub completed: Instant,
    pub measured: bool,
}

impl ExecutorStats {
    pub fn new(times: RunTimes) -> Self {
        ExecutorStats {
            times,
            result: ExecutorResult::default(),
            intervals: BTreeMap::new(),
        }
    }

    /// Count the first send of an operation.
    pub fn sent(
        &mut self,
        kind: OpKind,
        intended: Instant,
        now: Instant,
        measured: bool,
        open_loop: bool,
    ) {
        if measured {
            self.result.measured.op_mut(kind).counts.sent += 1;
            if open_loop {
                self.result
                    .lag
                    .record(now.saturating_duration_since(intended).as_nanos() as u64);
            }
        } else {
            self.result.warmup[kind_index(kind)].sent += 1;
        }
        let second = self.times.second_of(now);
        self.intervals.entry(second).or_default().sent += 1;
    }

    pub fn retried(&mut self, kind: OpKind, measured: bool) {
        if measured {
            self.result.measured.op_mut(kind).counts.retries += 1;
        } else {
            self.result.warmup[kind_index(kind)].retries += 1;
        }
    }

    /// Record a final outcome.
    pub fn complete(&mut self, done: Completion) {
        let kind = done.record.kind;
        let outcome = done.record.outcome;
        let intended_ns = done
            .completed
            .saturating_duration_since(done.intended)
            .as_nanos() as u64;
        let service_ns = done
            .completed
            .saturating_duration_since(done.last_send)
            .as_nanos() as u64;

        if done.measured {
            self.result
                .measured
                .record_outcome(kind, outcome, intended_ns, service_ns);
            let second = self.times.second_of(done.completed);
            self.intervals
                .entry(second)
                .or_default()
                .recorders
                .record_outcome(kind, outcome, intended_ns, service_ns);
        } else {
            self.result.warmup[kind_index(kind)].count_outcome(outcome);
        }
        self.result.history.push(done.record);
    }

    /// Record an operation still in flight when the run ended (indeterminate in the history).
    pub fn in_flight_at_end(&mut self, record: HistoryRecord, measured: bool) {
        debug_assert_eq!(record.outcome, Outcome::Indeterminate);
        let kind = record.kind;
        if measured {
            self.result.measured.op_mut(kind).counts.in_flight += 1;
        } else {
            self.result.warmup[kind_index(kind)].in_flight += 1;
        }
        self.result.history.push(record);
    }

    /// Remove and return the intervals of every second before `second`.
    pub fn take_intervals_before(&mut self, second: u64) -> Vec<(u64, IntervalStats)> {
        let later = self.intervals.split_off(&second);
        let done = std::mem::replace(&mut self.intervals, later);
        done.into_iter().collect()
    }
}
