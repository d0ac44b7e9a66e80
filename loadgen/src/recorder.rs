//! Latency recording: HDR histograms with a fixed range and an explicit overflow count.
//!
//! Every executor owns its own recorders (no locks or atomics on the recording path); the run
//! merges them with `Histogram::add`, never by combining percentiles. Values are nanoseconds.
//! The range is 1 µs to 1 hour at 3 significant figures. A value above the range is clamped
//! to the maximum and counted in `overflow`, so it still counts as a request and shows up as
//! the maximum. Recording never panics and never drops a value.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::history::{OpKind, Outcome};

/// Smallest value the histograms tell apart: 1 µs in nanoseconds.
pub const LOWEST_DISCERNIBLE_NS: u64 = 1_000;
/// Largest value recorded as is: 1 hour in nanoseconds. Larger values are clamped to it.
pub const HIGHEST_TRACKABLE_NS: u64 = 3_600 * 1_000_000_000;
/// Significant decimal digits kept by every histogram.
pub const SIGNIFICANT_FIGURES: u8 = 3;

/// Create an empty histogram with the range every recorder uses.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(
        LOWEST_DISCERNIBLE_NS,
        HIGHEST_TRACKABLE_NS,
        SIGNIFICANT_FIGURES,
    )
    .expect("constant histogram bounds are valid")
}

/// One latency histogram and the count of values clamped into it.
#[derive(Clone, Debug)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
    overflow: u64,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        LatencyRecorder {
            histogram: new_histogram(),
            overflow: 0,
        }
    }

    /// Record one value in nanoseconds, clamping it to [`HIGHEST_TRACKABLE_NS`].
    #[inline]
    pub fn record(&mut self, value_ns: u64) {
        let value = if value_ns > HIGHEST_TRACKABLE_NS {
            self.overflow += 1;
            HIGHEST_TRACKABLE_NS
        } else {
            value_ns
        };
        // Cannot fail: the value is within the histogram's trackable range and the count of
        // one bucket would need 2^64 records to overflow.
        let _ = self.histogram.record(value);
    }

    /// Add every value of `other` (the merge of two executors' recorders).
    pub fn add(&mut self, other: &LatencyRecorder) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with the same bounds always add");
        self.overflow += other.overflow;
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// Values that were above the range and recorded as [`HIGHEST_TRACKABLE_NS`].
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }
}

/// Outcome counts of the requests of one operation kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    /// Operations whose first attempt was written to a socket.
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub indeterminate: u64,
    /// Sent operations with no outcome when the run ended (filled in at the end).
    pub in_flight: u64,
    /// Attempts beyond the first (redirects, reconnects, outcome-unknown retries).
    pub retries: u64,
}

impl OpCounts {
    pub fn add(&mut self, other: &OpCounts) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.failed += other.failed;
        self.indeterminate += other.indeterminate;
        self.in_flight += other.in_flight;
        self.retries += other.retries;
    }

    pub fn count_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Indeterminate => self.indeterminate += 1,
        }
    }

    /// Check the accounting identity sent = ok + failed + indeterminate + in flight.
    pub fn balanced(&self) -> bool {
        self.sent == self.ok + self.failed + self.indeterminate + self.in_flight
    }
}

/// Histograms and counts of one operation kind.
#[derive(Clone, Debug, Default)]
pub struct OpRecorder {
    /// Latency from the intended send time (open loop) or the actual send (closed loop) to the
    /// successful reply.
    pub intended: LatencyRecorder,
    /// Latency from the last attempt's actual send to the successful reply.
    pub service: LatencyRecorder,
    pub counts: OpCounts,
}

impl OpRecorder {
    pub fn add(&mut self, other: &OpRecorder) {
        self.intended.add(&other.intended);
        self.service.add(&other.service);
        self.counts.add(&other.counts);
    }
}

/// Recorders of both operation kinds.
#[derive(Clone, Debug, Default)]
pub struct RecorderSet {
    pub add: OpRecorder,
    pub query: OpRecorder,
}

impl RecorderSet {
    pub fn op(&self, kind: OpKind) -> &OpRecorder {
        match kind {
            OpKind::Add => &self.add,
            OpKind::Query => &self.query,
        }
    }

    pub fn op_mut(&mut self, kind: OpKind) -> &mut OpRecorder {
        match kind {
            OpKind::Add => &mut self.add,
            OpKind::Query => &mut self.query,
        }
    }

    pub fn add(&mut self, other: &RecorderSet) {
        self.add.add(&other.add);
        self.query.add(&other.query);
    }

    /// Record a finished operation: the outcome always, the latencies only for a success
    /// (errors and indeterminate outcomes never enter the latency histograms).
    pub fn record_outcome(
        &mut self,
        kind: OpKind,
        outcome: Outcome,
        intended_latency_ns: u64,
        service_ns: u64,
    ) {
        let op = self.op_mut(kind);
        op.counts.count_outcome(outcome);
        if outcome == Outcome::Ok {
            op.intended.record(intended_latency_ns);
            op.service.record(service_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn merge_equals_single_recorder() {
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

        let mut all = LatencyRecorder::new();
        let mut first = LatencyRecorder::new();
        let mut second = LatencyRecorder::new();
        for i in 0..20_000 {
            let value = rng.random_range(500..5_000_000_000u64);
            all.record(value);
            if i % 3 == 0 {
                first.record(value);
            } else {
                second.record(value);
            }
        }
        first.add(&second);

        assert_eq!(first.histogram(), all.histogram(), "seed {seed}");
        assert_eq!(first.len(), 20_000, "seed {seed}");
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                first.histogram().value_at_quantile(q),
                all.histogram().value_at_quantile(q),
                "quantile {q}, seed {seed}"
            );
        }
    }

    #[test]
    fn value_beyond_range_is_clamped_and_counted() {
        let mut recorder = LatencyRecorder::new();
        recorder.record(HIGHEST_TRACKABLE_NS * 10);
        recorder.record(u64::MAX);
        recorder.record(1_000_000);

        assert_eq!(recorder.len(), 3);
        assert_eq!(recorder.overflow(), 2);
        assert!(recorder.histogram().max() >= HIGHEST_TRACKABLE_NS);
    }

    #[test]
    fn one_hour_keeps_three_figures() {
        let mut recorder = LatencyRecorder::new();
        recorder.record(HIGHEST_TRACKABLE_NS);
        let max = recorder.histogram().max();
        let error = max.abs_diff(HIGHEST_TRACKABLE_NS) as f64 / HIGHEST_TRACKABLE_NS as f64;
        assert!(error < 0.001, "max {max}");
        assert_eq!(recorder.overflow(), 0);
    }

    #[test]
    fn failures_stay_out_of_latency() {
        let mut set = RecorderSet::default();
        set.record_outcome(OpKind::Add, Outcome::Ok, 2_000_000, 1_000_000);
        set.record_outcome(OpKind::Add, Outcome::Failed, 9_000_000_000, 1);
        set.record_outcome(OpKind::Add, Outcome::Indeterminate, 9_000_000_000, 1);

        assert_eq!(set.add.intended.len(), 1);
        assert_eq!(set.add.service.len(), 1);
        assert_eq!(set.add.counts.ok, 1);
        assert_eq!(set.add.counts.failed, 1);
        assert_eq!(set.add.counts.indeterminate, 1);
        assert!(set.query.intended.is_empty());
    }
}
