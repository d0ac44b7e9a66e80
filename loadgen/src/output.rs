//! Output files of a run and the report returned to the caller.
//!
//! - `summary.json`: configuration, seed, commit, machine, counts with the accounting
//!   identity, throughput and percentiles per operation, generator lag and backlog episodes.
//! - `add.hgrm`, `query.hgrm`: HdrHistogram's percentile distribution text format
//!   (Value, Percentile, TotalCount, 1/(1-Percentile)) of the intended-time latency, values
//!   in milliseconds.
//! - `latency.hlog`: HdrHistogram interval log (format version 1.3), one line per tag per
//!   second, written by hdrhistogram's own V2 + DEFLATE serializer and interval log writer.
//!   Tags: `add` and `query` (latency from intended send time), `add-service` and
//!   `query-service` (from the actual send). Values are nanoseconds.
//! - `timeseries.csv`: one row per second of the run, with explicit zero rows for seconds
//!   in which nothing completed.
//! - `history.jsonl`: one [`HistoryRecord`](crate::history::HistoryRecord) per operation.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::LoadError;
use crate::recorder::{new_histogram, LatencyRecorder, OpCounts, OpRecorder, SIGNIFICANT_FIGURES};
use crate::run::{total_counts, LoadConfig, RunData};
use crate::stats::{BehindStats, ClientCounters, IntervalStats};

pub const SUMMARY_FILE: &str = "summary.json";
pub const ADD_HGRM_FILE: &str = "add.hgrm";
pub const QUERY_HGRM_FILE: &str = "query.hgrm";
pub const HLOG_FILE: &str = "latency.hlog";
pub const TIMESERIES_FILE: &str = "timeseries.csv";
pub const HISTORY_FILE: &str = "history.jsonl";

/// Latency percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Values above the histogram range, recorded as its maximum.
    pub overflow: u64,
}

impl LatencySummary {
    pub fn of(recorder: &LatencyRecorder) -> Self {
        let h = recorder.histogram();
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_percentile(50.0)),
            p90_ms: ms(h.value_at_percentile(90.0)),
            p99_ms: ms(h.value_at_percentile(99.0)),
            p999_ms: ms(h.value_at_percentile(99.9)),
            p9999_ms: ms(h.value_at_percentile(99.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e6,
            overflow: recorder.overflow(),
        }
    }
}

/// Results of one operation kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpSummary {
    pub counts: OpCounts,
    /// Successful operations per second of the measured period.
    pub throughput_ops_per_s: f64,
    /// Latency from the intended send time (open loop) or the send (closed loop).
    pub latency: LatencySummary,
    /// Latency from the actual send of the last attempt.
    pub service_time: LatencySummary,
}

/// One second of `timeseries.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecondRow {
    /// Seconds since the start of the run (warm-up included).
    pub second: u64,
    pub warmup: bool,
    pub sent: u64,
    pub add: OpCounts,
    pub query: OpCounts,
    pub add_p50_ms: Option<f64>,
    pub add_p99_ms: Option<f64>,
    pub query_p50_ms: Option<f64>,
    pub query_p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Result of `run`: the figures of `summary.json` as Rust values, the merged histograms, and
/// the summary itself.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub out_dir: PathBuf,
    /// Length of the measured period (shorter than the duration if the run was stopped).
    pub measured: Duration,
    pub add: OpSummary,
    pub query: OpSummary,
    /// Both kinds together.
    pub total: OpCounts,
    pub throughput_ops_per_s: f64,
    pub warmup_add: OpCounts,
    pub warmup_query: OpCounts,
    /// Generator lag: first actual send minus intended send time, open loop only.
    pub generator_lag: LatencySummary,
    pub behind: BehindStats,
    pub client: ClientCounters,
    pub timeseries: Vec<SecondRow>,
    /// Merged intended-time latency histograms (nanoseconds).
    pub add_histogram: Histogram<u64>,
    pub query_histogram: Histogram<u64>,
    pub summary: Value,
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LoadError {
    let path = path.to_path_buf();
    move |source| LoadError::Io {
        operation,
        path,
        source,
    }
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), LoadError> {
    std::fs::write(path, contents).map_err(io_error("write", path))
}

fn op_summary(op: &OpRecorder, measured: Duration) -> OpSummary {
    let seconds = measured.as_secs_f64();
    OpSummary {
        counts: op.counts,
        throughput_ops_per_s: if seconds > 0.0 {
            op.counts.ok as f64 / seconds
        } else {
            0.0
        },
        latency: LatencySummary::of(&op.intended),
        service_time: LatencySummary::of(&op.service),
    }
}

/// Write every output file and build the report.
pub(crate) fn write_all(config: &LoadConfig, data: &RunData) -> Result<RunReport, LoadError> {
    let dir = &config.out_dir;
    let measured_period = data
        .stopped_at
        .saturating_duration_since(data.times.measure_start);
    let totals = &data.totals;

    let add = op_summary(&totals.measured.add, measured_period);
    let query = op_summary(&totals.measured.query, measured_period);
    let total = total_counts(&add.counts, &query.counts);
    let throughput = add.throughput_ops_per_s + query.throughput_ops_per_s;
    let timeseries = build_timeseries(data);

    write_file(
        &dir.join(ADD_HGRM_FILE),
        percentile_distribution(totals.measured.add.intended.histogram(), 1e6).as_bytes(),
    )?;
    write_file(
        &dir.join(QUERY_HGRM_FILE),
        percentile_distribution(totals.measured.query.intended.histogram(), 1e6).as_bytes(),
    )?;
    write_interval_log(&dir.join(HLOG_FILE), data)?;
    write_timeseries(&dir.join(TIMESERIES_FILE), &timeseries)?;
    write_history(&dir.join(HISTORY_FILE), data)?;

    let mut report = RunReport {
        seed: data.seed,
        out_dir: dir.clone(),
        measured: measured_period,
        add,
        query,
        total,
        throughput_ops_per_s: throughput,
        warmup_add: totals.warmup[0],
        warmup_query: totals.warmup[1],
        generator_lag: LatencySummary::of(&totals.lag),
        behind: totals.behind,
        client: totals.client,
        timeseries,
        add_histogram: totals.measured.add.intended.histogram().clone(),
        query_histogram: totals.measured.query.intended.histogram().clone(),
        summary: Value::Null,
    };
    report.summary = summary_json(config, data, &report);
    let text = serde_json::to_string_pretty(&report.summary).expect("summary is plain JSON");
    write_file(&dir.join(SUMMARY_FILE), format!("{text}\n").as_bytes())?;
    Ok(report)
}

fn accounting(counts: &OpCounts) -> Value {
    json!({
        "sent": counts.sent,
        "ok": counts.ok,
        "failed": counts.failed,
        "indeterminate": counts.indeterminate,
        "in_flight": counts.in_flight,
        "retries": counts.retries,
        "identity": "sent = ok + failed + indeterminate + in_flight",
        "balanced": counts.balanced(),
    })
}

fn latency_json(s: &LatencySummary) -> Value {
    json!({
        "count": s.count,
        "p50": s.p50_ms,
        "p90": s.p90_ms,
        "p99": s.p99_ms,
        "p99.9": s.p999_ms,
        "p99.99": s.p9999_ms,
        "max": s.max_ms,
        "mean": s.mean_ms,
        "overflow": s.overflow,
    })
}

fn op_json(op: &OpSummary) -> Value {
    json!({
        "accounting": accounting(&op.counts),
        "throughput_ops_per_s": op.throughput_ops_per_s,
        "latency_ms": latency_json(&op.latency),
        "service_time_ms": latency_json(&op.service_time),
    })
}

fn summary_json(config: &LoadConfig, data: &RunData, report: &RunReport) -> Value {
    let args = &config.workload;
    let start_unix = data
        .wall_start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    json!({
        "tool": "ringraft load",
        "version": env!("CARGO_PKG_VERSION"),
        "commit": commit(),
        "machine": machine(),
        "seed": data.seed,
        "mode": if args.rate.is_some() { "open-loop" } else { "closed-loop" },
        "target_rate_ops_per_s": args.rate,
        "config": {
            "cluster": config.cluster,
            "executors": data.executors,
            "workload": args,
        },
        "start_unix_s": start_unix,
        "warmup_s": args.warmup.as_secs_f64(),
        "measured_s": report.measured.as_secs_f64(),
        "stopped_early": data.stopped_at < data.times.end,
        "latency_unit": "ms",
        "latency_from": if args.rate.is_some() { "intended send time" } else { "actual send time (closed loop)" },
        "operations": {
            "add": op_json(&report.add),
            "query": op_json(&report.query),
        },
        "total": accounting(&report.total),
        "throughput_ops_per_s": report.throughput_ops_per_s,
        "warmup": {
            "add": accounting(&report.warmup_add),
            "query": accounting(&report.warmup_query),
        },
        "generator": {
            "lag_ms": latency_json(&report.generator_lag),
            "behind": report.behind,
        },
        "client": report.client,
        "files": {
            "add_percentiles": ADD_HGRM_FILE,
            "query_percentiles": QUERY_HGRM_FILE,
            "interval_log": HLOG_FILE,
            "interval_log_tags": ["add", "query", "add-service", "query-service"],
            "timeseries": TIMESERIES_FILE,
            "history": HISTORY_FILE,
        },
    })
}

/// Commit of the build: `RINGRAFT_COMMIT` at build time, else `git rev-parse HEAD` in the
/// working directory, else "unknown".
fn commit() -> String {
    if let Some(c) = option_env!("RINGRAFT_COMMIT") {
        return c.to_string();
    }
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn machine() -> Value {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let cpu_model = read("/proc/cpuinfo").and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    json!({
        "hostname": read("/proc/sys/kernel/hostname"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpu_model": cpu_model,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// HdrHistogram's percentile distribution text, as `outputPercentileDistribution` prints it
/// with 5 ticks per half distance; values divided by `unit_ratio`. The 100th percentile is
/// printed once, without the infinite last column.
pub fn percentile_distribution(h: &Histogram<u64>, unit_ratio: f64) -> String {
    let digits = SIGNIFICANT_FIGURES as usize;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );

    // The iterator ends with the 100th percentile; it is printed once, after the loop,
    // without the infinite 1/(1-Percentile) column.
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            let quantile = v.quantile_iterated_to();
            if quantile >= 1.0 {
                break;
            }
            total += v.count_since_last_iteration();
            let _ = writeln!(
                out,
                "{:>12.digits$} {:>2.12} {:>10} {:>14.2}",
                v.value_iterated_to() as f64 / unit_ratio,
                quantile,
                total,
                1.0 / (1.0 - quantile)
            );
        }
        let max = h.highest_equivalent(h.max());
        let _ = writeln!(
            out,
            "{:>12.digits$} {:>2.12} {:>10}",
            max as f64 / unit_ratio,
            1.0,
            h.len()
        );
    }

    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean() / unit_ratio, h.stdev() / unit_ratio)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.digits$}, Total count    = {:>12}]",
        h.max() as f64 / unit_ratio,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        (2 * 10u64.pow(u32::from(SIGNIFICANT_FIGURES))).next_power_of_two()
    );
    out
}

fn write_interval_log(path: &Path, data: &RunData) -> Result<(), LoadError> {
    let log_error = |reason: String| LoadError::IntervalLog {
        path: path.to_path_buf(),
        reason,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        // The builder writes comments and the StartTime line. The legend must follow them and
        // is not a comment, so it is appended between the header and the intervals.
        IntervalLogWriterBuilder::new()
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[Written by ringraft load; values in nanoseconds]")
            .with_start_time(data.wall_start)
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(|e| log_error(e.to_string()))?;
    }
    buf.extend_from_slice(b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n");

    let first = data.times.second_of(data.times.measure_start);
    let last = last_second(data);
    let empty = IntervalStats::default();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(|e| log_error(e.to_string()))?;
        let empty_histogram = new_histogram();
        for second in first..=last {
            let stats = data.intervals.get(&second).unwrap_or(&empty);
            let entries: [(&str, &Histogram<u64>); 4] = [
                ("add", stats.recorders.add.intended.histogram()),
                ("query", stats.recorders.query.intended.histogram()),
                ("add-service", stats.recorders.add.service.histogram()),
                ("query-service", stats.recorders.query.service.histogram()),
            ];
            for (tag, histogram) in entries {
                let histogram = if histogram.is_empty() {
                    &empty_histogram
                } else {
                    histogram
                };
                writer
                    .write_histogram(
                        histogram,
                        Duration::from_secs(second),
                        Duration::from_secs(1),
                        Tag::new(tag),
                    )
                    .map_err(|e| log_error(e.to_string()))?;
            }
        }
    }
    write_file(path, &buf)
}

/// Last second of the run: the one the run stopped in, or a later one that has data.
fn last_second(data: &RunData) -> u64 {
    let span = data.stopped_at.saturating_duration_since(data.times.start);
    let covered = span.as_secs() + u64::from(span.subsec_nanos() > 0);
    let data_last = data.intervals.keys().next_back().copied().unwrap_or(0);
    covered.saturating_sub(1).max(data_last)
}

fn build_timeseries(data: &RunData) -> Vec<SecondRow> {
    let warmup_seconds = data
        .times
        .measure_start
        .saturating_duration_since(data.times.start);
    let empty = IntervalStats::default();
    (0..=last_second(data))
        .map(|second| {
            let stats = data.intervals.get(&second).unwrap_or(&empty);
            let add = &stats.recorders.add;
            let query = &stats.recorders.query;
            let quantile = |r: &LatencyRecorder, q: f64| {
                (!r.is_empty()).then(|| r.histogram().value_at_quantile(q) as f64 / 1e6)
            };
            let mut both = add.intended.clone();
            both.add(&query.intended);
            SecondRow {
                second,
                warmup: Duration::from_secs(second + 1) <= warmup_seconds,
                sent: stats.sent,
                add: add.counts,
                query: query.counts,
                add_p50_ms: quantile(&add.intended, 0.5),
                add_p99_ms: quantile(&add.intended, 0.99),
                query_p50_ms: quantile(&query.intended, 0.5),
                query_p99_ms: quantile(&query.intended, 0.99),
                max_ms: quantile(&both, 1.0),
            }
        })
        .collect()
}

fn write_timeseries(path: &Path, rows: &[SecondRow]) -> Result<(), LoadError> {
    let mut out = String::from(
        "second,phase,sent,add_ok,add_failed,add_indeterminate,query_ok,query_failed,query_indeterminate,ok_per_s,add_p50_ms,add_p99_ms,query_p50_ms,query_p99_ms,max_ms\n",
    );
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.second,
            if r.warmup { "warmup" } else { "measure" },
            r.sent,
            r.add.ok,
            r.add.failed,
            r.add.indeterminate,
            r.query.ok,
            r.query.failed,
            r.query.indeterminate,
            r.add.ok + r.query.ok,
            cell(r.add_p50_ms),
            cell(r.add_p99_ms),
            cell(r.query_p50_ms),
            cell(r.query_p99_ms),
            cell(r.max_ms),
        );
    }
    write_file(path, out.as_bytes())
}

fn write_history(path: &Path, data: &RunData) -> Result<(), LoadError> {
    let file = File::create(path).map_err(io_error("create", path))?;
    let mut writer = BufWriter::new(file);
    for record in &data.totals.history {
        serde_json::to_writer(&mut writer, record).map_err(|e| LoadError::Io {
            operation: "write",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        writer.write_all(b"\n").map_err(io_error("write", path))?;
    }
    writer.flush().map_err(io_error("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_file_layout() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1_000).unwrap();
        }
        let text = percentile_distribution(&h, 1e6);
        println!("{text}");
        let lines: Vec<&str> = text.lines().collect();

        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        let rows: Vec<&str> = lines[2..]
            .iter()
            .copied()
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(rows[0].split_whitespace().count(), 4);
        let last = rows.last().unwrap();
        let fields: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(fields, ["1.000", "1.000000000000", "1000"]);
        assert_eq!(
            rows.iter()
                .filter(|r| r.contains(" 1.000000000000 "))
                .count(),
            1,
            "the 100th percentile row appears once"
        );
        assert!(text.contains("#[Max     =        1.000, Total count    =         1000]"));
        assert!(text.contains("#[Buckets =           23, SubBuckets     =         2048]"));
    }
}
