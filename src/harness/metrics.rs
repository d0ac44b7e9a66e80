//! Failover metrics: status polling during the run, and per-fault figures computed afterwards
//! from the status samples and the recorded history.
//!
//! A poller thread per node requests the node's status every [`POLL_INTERVAL`] (directly, never
//! through a relay) and keeps every sample. The harness resolves `leader` and `follower` fault
//! targets from the latest samples, and after the run it derives, for each fault:
//!
//! - `new_leader_after_ms`: time from the injection until a sample first shows a leader in a
//!   higher term than the one at injection. Resolution is the poll interval. `None` when no
//!   election happened before the next fault (a paused leader that wakes up before the
//!   followers time out keeps its term, for instance).
//! - `unavailable_ms`: the longest gap between consecutive successful acknowledgements in the
//!   history from the last acknowledgement before the injection to the end of the fault's
//!   window (the next fault's injection or the end of the run).
//! - failed and indeterminate operations completed within the window, and sessions the
//!   servers expired within it (the largest `expired_sessions` any node reports).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringraft_loadgen::history::{HistoryRecord, Outcome};
use ringraft_protocol::{NodeId, NodeStatus, Role, Term};
use serde::Serialize;

use super::cluster::StatusFn;
use super::faults::FaultSpec;

/// Interval between two status requests to one node.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Timeout of one status request; a paused node makes every request wait this long.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// A sample older than this no longer counts for the current leader.
const FRESH: Duration = Duration::from_millis(600);

/// One status reply.
#[derive(Clone, Debug)]
pub struct StatusSample {
    pub at: Instant,
    pub node: NodeId,
    pub status: NodeStatus,
}

#[derive(Default)]
struct PollerState {
    samples: Vec<StatusSample>,
    latest: BTreeMap<NodeId, StatusSample>,
}

/// Threads that poll every node's status until stopped.
pub struct StatusPoller {
    state: Arc<Mutex<PollerState>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl StatusPoller {
    pub fn start(addrs: &BTreeMap<NodeId, String>, status: StatusFn) -> StatusPoller {
        let state = Arc::new(Mutex::new(PollerState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (&node, addr) in addrs {
            let (state, stop, status, addr) =
                (state.clone(), stop.clone(), status.clone(), addr.clone());
            let thread = std::thread::Builder::new()
                .name(format!("status node{node}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        match status(&addr, POLL_TIMEOUT) {
                            Ok(node_status) => {
                                // The id the node reports, so an external cluster's ids are
                                // right even though its addresses were numbered in order.
                                let sample = StatusSample {
                                    at: Instant::now(),
                                    node: node_status.id,
                                    status: node_status,
                                };
                                let mut state = state.lock().unwrap();
                                state.latest.insert(sample.node, sample.clone());
                                state.samples.push(sample);
                            }
                            Err(error) => {
                                tracing::trace!(node, %addr, %error, "status request failed");
                            }
                        }
                        std::thread::sleep(POLL_INTERVAL.saturating_sub(started.elapsed()));
                    }
                })
                .expect("spawning a status thread");
            threads.push(thread);
        }
        StatusPoller {
            state,
            stop,
            threads,
        }
    }

    /// Returns the leader in the highest term among recent samples, with that term.
    pub fn current_leader(&self) -> Option<(NodeId, Term)> {
        let state = self.state.lock().unwrap();
        let now = Instant::now();
        state
            .latest
            .values()
            .filter(|sample| now.duration_since(sample.at) < FRESH)
            .filter(|sample| sample.status.role == Role::Leader)
            .map(|sample| (sample.node, sample.status.term))
            .max_by_key(|&(_, term)| term)
    }

    /// Returns the highest term any node has reported so far.
    pub fn max_term(&self) -> Option<Term> {
        let state = self.state.lock().unwrap();
        state.latest.values().map(|sample| sample.status.term).max()
    }

    /// Stops the threads and returns every sample, oldest first.
    pub fn finish(mut self) -> Vec<StatusSample> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let mut samples = std::mem::take(&mut self.state.lock().unwrap().samples);
        samples.sort_by_key(|sample| sample.at);
        samples
    }
}

impl Drop for StatusPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Record of one fault of the schedule: when and where the harness injected it.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub spec: FaultSpec,
    /// Injection time, nanoseconds after the start of the load.
    pub injected_ns: u64,
    /// When the harness ended it (resume, restart, heal), if it did.
    pub ended_ns: Option<u64>,
    pub nodes: Vec<NodeId>,
    /// Leader and term as the status samples showed them at injection.
    pub leader: Option<NodeId>,
    pub term: Option<Term>,
    /// Reason the fault was not injected, or the error from injecting or ending it.
    pub problem: Option<String>,
}

/// Figures of one fault for `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct FaultMetrics {
    pub kind: &'static str,
    pub target: String,
    pub spec: String,
    /// The node the fault hit (the first, when it hit several).
    pub node: Option<NodeId>,
    pub nodes: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub term: Option<Term>,
    pub at_s: f64,
    pub duration_s: Option<f64>,
    pub new_leader: Option<NodeId>,
    pub new_leader_after_ms: Option<f64>,
    pub unavailable_ms: f64,
    pub failed_ops: u64,
    pub indeterminate_ops: u64,
    pub sessions_expired: u64,
    pub problem: Option<String>,
}

/// Computes per-fault metrics. `run_start` is time 0 of the history and `run_end_ns` the end
/// of the load on the same scale.
pub fn fault_metrics(
    faults: &[FaultRecord],
    samples: &[StatusSample],
    history: &[HistoryRecord],
    run_start: Instant,
    run_end_ns: u64,
) -> Vec<FaultMetrics> {
    let mut acks: Vec<u64> = history
        .iter()
        .filter(|record| record.outcome == Outcome::Ok)
        .map(|record| record.complete_ns)
        .collect();
    acks.sort_unstable();
    let sample_ns =
        |sample: &StatusSample| sample.at.saturating_duration_since(run_start).as_nanos() as u64;

    let mut metrics = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        let start = fault.injected_ns;
        let window_end = faults[i + 1..]
            .iter()
            .map(|next| next.injected_ns)
            .find(|&next| next > start)
            .unwrap_or(run_end_ns)
            .max(start);

        let new_leader = fault.term.and_then(|term| {
            samples
                .iter()
                .filter(|s| s.status.role == Role::Leader && s.status.term > term)
                .map(|s| (sample_ns(s), s.node))
                .find(|&(at, _)| at >= start && at <= window_end)
        });

        let (failed_ops, indeterminate_ops) = history
            .iter()
            .filter(|record| record.complete_ns >= start && record.complete_ns <= window_end)
            .fold((0, 0), |(failed, indeterminate), record| {
                match record.outcome {
                    Outcome::Failed => (failed + 1, indeterminate),
                    Outcome::Indeterminate => (failed, indeterminate + 1),
                    Outcome::Ok => (failed, indeterminate),
                }
            });

        let expired = |from: u64, to: u64| {
            samples
                .iter()
                .filter(|s| (from..=to).contains(&sample_ns(s)))
                .map(|s| s.status.expired_sessions)
                .max()
        };
        let before = expired(0, start).unwrap_or(0);
        let sessions_expired = expired(start, window_end)
            .unwrap_or(before)
            .saturating_sub(before);

        let skipped = fault.nodes.is_empty();
        metrics.push(FaultMetrics {
            kind: fault.spec.kind.as_str(),
            target: fault.spec.target.to_string(),
            spec: fault.spec.to_string(),
            node: fault.nodes.first().copied(),
            nodes: fault.nodes.clone(),
            leader: fault.leader,
            term: fault.term,
            at_s: start as f64 / 1e9,
            duration_s: fault
                .ended_ns
                .map(|end| end.saturating_sub(start) as f64 / 1e9)
                .or(fault.spec.duration.map(|d| d.as_secs_f64())),
            new_leader: new_leader.map(|(_, node)| node),
            new_leader_after_ms: new_leader.map(|(at, _)| (at - start) as f64 / 1e6),
            unavailable_ms: if skipped {
                0.0
            } else {
                longest_gap(&acks, start, window_end) as f64 / 1e6
            },
            failed_ops,
            indeterminate_ops,
            sessions_expired,
            problem: fault.problem.clone(),
        });
    }
    metrics
}

/// Longest interval without an acknowledgement between the last acknowledgement at or before
/// `start` (or `start` itself) and `end`, in nanoseconds. `acks` is sorted.
pub fn longest_gap(acks: &[u64], start: u64, end: u64) -> u64 {
    let first_after = acks.partition_point(|&ack| ack <= start);
    let mut previous = if first_after > 0 {
        acks[first_after - 1]
    } else {
        start
    };
    let mut longest = 0;
    for &ack in acks[first_after..].iter().take_while(|&&ack| ack <= end) {
        longest = longest.max(ack - previous);
        previous = ack;
    }
    longest.max(end.saturating_sub(previous))
}

/// Worst and median of a set of values.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Spread {
    pub worst: f64,
    pub median: f64,
    pub count: usize,
}

/// Worst (largest) and median of the values; `None` for none.
pub fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut values: Vec<f64> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some(Spread {
        worst: values[n - 1],
        median,
        count: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_gap_spans_fault() {
        let acks = [0, 10, 20, 30, 100, 110, 120];
        // Last ack before 25 is 20; the gap 30 -> 100 is the longest.
        assert_eq!(longest_gap(&acks, 25, 120), 70);
        // Window that ends before the recovery: the gap runs to the window's end.
        assert_eq!(longest_gap(&acks, 25, 90), 60);
        // No ack at all: the whole window.
        assert_eq!(longest_gap(&[], 5, 50), 45);
    }

    #[test]
    fn spread_of_values() {
        assert_eq!(spread(Vec::<f64>::new()), None);
        let s = spread([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.worst, s.median, s.count), (3.0, 2.0, 3));
        let s = spread([4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.worst, s.median), (4.0, 2.5));
    }

    fn status(id: NodeId, role: Role, term: Term, expired: u64) -> NodeStatus {
        NodeStatus {
            id,
            role,
            term,
            leader: None,
            commit_index: 0,
            applied_index: 0,
            last_log_index: 0,
            members: Vec::new(),
            open_sessions: 0,
            expired_sessions: expired,
            elections_started: 0,
            storage: Default::default(),
        }
    }

    fn op(complete_ms: u64, outcome: Outcome) -> HistoryRecord {
        HistoryRecord {
            session: 0,
            server_session: None,
            kind: ringraft_loadgen::history::OpKind::Add,
            sequence: 1,
            tag: "t1".into(),
            id: Some(complete_ms),
            invoke_ns: complete_ms * 1_000_000 - 1,
            complete_ns: complete_ms * 1_000_000,
            outcome,
            output: None,
            index: None,
            error: None,
        }
    }

    #[test]
    fn pause_metrics_from_samples_and_history() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let samples = vec![
            StatusSample {
                at: at(900),
                node: 1,
                status: status(1, Role::Leader, 1, 0),
            },
            StatusSample {
                at: at(1500),
                node: 2,
                status: status(2, Role::Candidate, 2, 0),
            },
            StatusSample {
                at: at(1800),
                node: 2,
                status: status(2, Role::Leader, 2, 0),
            },
            StatusSample {
                at: at(1920),
                node: 3,
                status: status(3, Role::Follower, 2, 1),
            },
        ];
        let history = vec![
            op(950, Outcome::Ok),
            op(990, Outcome::Ok),
            op(1700, Outcome::Indeterminate),
            op(1750, Outcome::Failed),
            op(1900, Outcome::Ok),
            op(1910, Outcome::Ok),
        ];
        let faults = vec![FaultRecord {
            spec: "pause:leader@1s+2.5s".parse().unwrap(),
            injected_ns: 1_000_000_000,
            ended_ns: Some(3_500_000_000),
            nodes: vec![1],
            leader: Some(1),
            term: Some(1),
            problem: None,
        }];

        let metrics = fault_metrics(&faults, &samples, &history, start, 1_950_000_000);
        let m = &metrics[0];
        assert_eq!(m.node, Some(1));
        assert_eq!(m.new_leader, Some(2));
        assert_eq!(m.new_leader_after_ms, Some(800.0));
        // Acks at 990 ms and 1900 ms: 910 ms without one.
        assert_eq!(m.unavailable_ms, 910.0);
        assert_eq!(m.failed_ops, 1);
        assert_eq!(m.indeterminate_ops, 1);
        assert_eq!(m.sessions_expired, 1);
        assert_eq!(m.duration_s, Some(2.5));
    }
}
