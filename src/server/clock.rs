//! The millisecond clock the core runs on.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds at start plus monotonic time elapsed since, so readings look like
/// Unix timestamps (they become entry timestamps) but never go backwards, even if the system
/// clock is stepped. A process stopped with SIGSTOP sees the stop as elapsed time, which is how
/// a paused leader notices its own stall.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_wall_ms: u64,
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        let base_wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            base_wall_ms,
            start: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.base_wall_ms + self.start.elapsed().as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
