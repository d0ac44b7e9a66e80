//! Percentile summaries of millisecond samples taken from a log.
//!
//! Samples go through an HDR histogram (3 significant digits) so the figures are computed the
//! same way as the load generator's. Copycat prints timestamps with millisecond resolution, so
//! every sample is a whole number of milliseconds and is recorded in millisecond units:
//! percentiles are exact below 2048 ms and round down by less than 0.1% above.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Distribution of a set of samples, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Summarises `samples_ms`; returns `None` when there is no sample. Negative samples (a
    /// clock stepping backwards) are clamped to zero.
    pub fn from_ms(samples_ms: &[i64]) -> Option<Percentiles> {
        if samples_ms.is_empty() {
            return None;
        }

        // `Histogram::new` auto-resizes, so recording a long silence cannot fail.
        let mut histogram =
            Histogram::<u64>::new(3).expect("3 significant digits is a valid precision");
        for &sample in samples_ms {
            histogram
                .record(u64::try_from(sample.max(0)).unwrap_or(0))
                .expect("auto-resizing histogram accepts any u64");
        }

        // Quantiles come back as the highest value of their bucket; the lowest is the sample itself
        // wherever buckets are one millisecond wide.
        let exact = |value: u64| histogram.lowest_equivalent(value) as f64;
        Some(Percentiles {
            count: histogram.len(),
            min_ms: exact(histogram.min()),
            mean_ms: histogram.mean(),
            p50_ms: exact(histogram.value_at_quantile(0.50)),
            p90_ms: exact(histogram.value_at_quantile(0.90)),
            p99_ms: exact(histogram.value_at_quantile(0.99)),
            p999_ms: exact(histogram.value_at_quantile(0.999)),
            max_ms: exact(histogram.max()),
        })
    }
}
