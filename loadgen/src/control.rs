//! A handle shared between a running load generator and its observers (the harness, the
//! progress line).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ringraft_protocol::NodeId;

const NO_LEADER: u64 = u64::MAX;

/// Cheap to clone; every clone controls the same run.
#[derive(Clone, Debug)]
pub struct RunControl {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stopped: AtomicBool,
    leader: AtomicU64,
    start: Mutex<Instant>,
}

impl Default for RunControl {
    fn default() -> Self {
        Self::new()
    }
}

impl RunControl {
    pub fn new() -> Self {
        RunControl {
            inner: Arc::new(Inner {
                stopped: AtomicBool::new(false),
                leader: AtomicU64::new(NO_LEADER),
                start: Mutex::new(Instant::now()),
            }),
        }
    }

    /// Ask the run to end early. Sessions notice within about 100 ms, then the run writes its
    /// output as if the duration had elapsed.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Last leader a reply named, as shown on the progress line.
    pub fn current_leader(&self) -> Option<NodeId> {
        match self.inner.leader.load(Ordering::Relaxed) {
            NO_LEADER => None,
            id => Some(id),
        }
    }

    pub fn set_leader(&self, leader: Option<NodeId>) {
        self.inner
            .leader
            .store(leader.unwrap_or(NO_LEADER), Ordering::Relaxed);
    }

    /// Time 0 of the history and the time series: set by `run` when it starts the sessions.
    /// Before that it is the instant this handle was created.
    pub fn run_start(&self) -> Instant {
        *self
            .inner
            .start
            .lock()
            .expect("run start lock is never poisoned")
    }

    pub(crate) fn set_run_start(&self, start: Instant) {
        *self
            .inner
            .start
            .lock()
            .expect("run start lock is never poisoned") = start;
    }
}
