//! The live progress line: elapsed time, ops/s and p99 of the last complete second, errors
//! so far and the current leader. Drawn only when asked for and stdout is a terminal, so
//! logs and redirected output stay clean.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::control::RunControl;
use crate::stats::{IntervalStats, RunTimes};

pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    times: RunTimes,
    control: RunControl,
    last_line: String,
    errors: u64,
}

impl Progress {
    pub fn new(enabled: bool, times: RunTimes, control: RunControl) -> Self {
        let bar = (enabled && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .expect("constant template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            times,
            control,
            last_line: "starting".to_string(),
            errors: 0,
        }
    }

    /// Show the statistics of a second that every executor has reported.
    pub fn second_complete(&mut self, second: u64, stats: &IntervalStats) {
        let add = &stats.recorders.add;
        let query = &stats.recorders.query;
        let ok = add.counts.ok + query.counts.ok;
        self.errors += add.counts.failed
            + add.counts.indeterminate
            + query.counts.failed
            + query.counts.indeterminate;

        let mut both = add.intended.clone();
        both.add(&query.intended);
        let p99 = if both.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.2} ms",
                both.histogram().value_at_quantile(0.99) as f64 / 1e6
            )
        };
        self.last_line = format!("second {}: {ok} ops/s, p99 {p99}", second + 1);
        self.tick();
    }

    pub fn tick(&mut self) {
        let Some(bar) = &self.bar else {
            return;
        };
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.times.start).as_secs();
        let phase = if now < self.times.measure_start {
            "warm-up"
        } else {
            "measuring"
        };
        let leader = self
            .control
            .current_leader()
            .map_or("unknown".to_string(), |id| id.to_string());
        bar.set_message(format!(
            "{elapsed}s {phase} | {} | errors {} | leader {leader}",
            self.last_line, self.errors
        ));
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
