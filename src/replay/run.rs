//! `ringraft replay <LOG> --run`: turn a log's analysis into a bench run and compare the two.
//!
//! The plan (sessions, Add:Query mix, arrival rate, the leader's longest silence as a pause
//! fault) becomes flags of `ringraft bench`; flags the user gave explicitly win. After the run,
//! `replay.md` and `replay.json` in the result directory put what the log showed next to what
//! ringraft did: latency per request type, the longest client outage and expired sessions.
//!
//! The run lasts at least five seconds past the end of the pause, even when the log excerpt
//! is shorter, so the failover can complete and be measured.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Analysis, ReplayPlan};
use crate::harness::{self, BenchArgs};

/// Time the cluster is given after the planned pause ends, so the failover shows in the run.
const AFTER_PAUSE: Duration = Duration::from_secs(5);
/// Shortest run, so a short excerpt still produces a few seconds of measurements.
const MIN_RUN: Duration = Duration::from_secs(5);

/// Errors of the run part of `ringraft replay`.
#[derive(Debug, thiserror::Error)]
pub enum ReplayRunError {
    #[error(transparent)]
    Plan(#[from] super::ReplayError),
    #[error("the log shows no client request, so there is no workload to replay")]
    NoWorkload,
    #[error("bench run failed: {0}")]
    Bench(#[from] harness::BenchError),
    #[error("cannot read {path}: {reason}")]
    Summary { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Fill `bench` from the plan where the user left a setting unset.
pub fn bench_args_for(
    plan: &ReplayPlan,
    log: &Path,
    mut bench: BenchArgs,
) -> Result<BenchArgs, ReplayRunError> {
    if plan.sessions == 0 || plan.rate_per_s <= 0.0 {
        return Err(ReplayRunError::NoWorkload);
    }

    bench.sessions.get_or_insert(plan.sessions as u64);
    if bench.rate.is_none() && !bench.closed_loop {
        bench.rate = Some(plan.rate_per_s);
    }
    let (adds, queries) = plan.mix;
    if !bench
        .workload_overrides
        .iter()
        .any(|o| o.starts_with("mix="))
    {
        bench
            .workload_overrides
            .push(format!("mix=\"{adds}:{queries}\""));
    }

    if bench.faults.is_empty() && !bench.no_faults {
        match &plan.pause {
            Some(pause) => {
                let spec = pause.fault_spec();
                let fault = spec.parse().map_err(|e| {
                    ReplayRunError::Plan(super::ReplayError::NotCopycatLog {
                        name: log.display().to_string(),
                        detail: format!("planned fault '{spec}' is invalid: {e}"),
                    })
                })?;
                bench.faults.push(fault);
            }
            None => bench.no_faults = true,
        }
    }

    if bench.duration.is_none() {
        let pause_end = plan
            .pause
            .as_ref()
            .map_or(Duration::ZERO, |p| p.at_offset + p.duration + AFTER_PAUSE);
        bench.duration = Some(plan.run_duration.max(pause_end).max(MIN_RUN));
    }

    if bench.out.is_none() {
        let stem = log
            .file_stem()
            .map_or("log".to_string(), |s| s.to_string_lossy().into_owned());
        let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
            .format("%Y-%m-%dT%H-%M-%SZ");
        bench.out = Some(PathBuf::from(format!("results/{now}-replay-{stem}")));
    }
    Ok(bench)
}

/// Run the plan on a local cluster and write the side-by-side comparison.
pub fn run_replay(
    analysis: &Analysis,
    log: &Path,
    speed: f64,
    bench: BenchArgs,
) -> Result<ExitCode, ReplayRunError> {
    let plan = analysis.plan(speed)?;
    let bench = bench_args_for(&plan, log, bench)?;
    let out = bench
        .out
        .clone()
        .expect("bench_args_for sets the output directory");

    let code = harness::run(bench)?;

    let summary_path = out.join("summary.json");
    let summary: Value = std::fs::read_to_string(&summary_path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        .map_err(|reason| ReplayRunError::Summary {
            path: summary_path.clone(),
            reason,
        })?;

    let comparison = compare(&plan, &summary, &out);
    let markdown = render_comparison(&plan, &comparison);
    write(&out.join("replay.md"), &markdown)?;
    let json_text = serde_json::to_string_pretty(&comparison).expect("JSON values always encode");
    write(&out.join("replay.json"), &json_text)?;
    print!("{markdown}");
    Ok(code)
}

fn write(path: &Path, text: &str) -> Result<(), ReplayRunError> {
    std::fs::write(path, text).map_err(|source| ReplayRunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the comparison of the log's figures with the run's, as JSON.
pub fn compare(plan: &ReplayPlan, summary: &Value, out: &Path) -> Value {
    let log_latency = |request: &str| {
        plan.log_latency.get(request).map(|p| {
            json!({ "count": p.count, "p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "max_ms": p.max_ms })
        })
    };
    let run_latency = |op: &str| {
        let l = &summary["ops"][op]["latency_us"];
        let ms = |key: &str| l[key].as_f64().map(|us| us / 1000.0);
        json!({ "count": l["count"], "p50_ms": ms("p50"), "p99_ms": ms("p99"), "max_ms": ms("max") })
    };
    let run_unavailable = summary["faults"].as_array().and_then(|faults| {
        faults
            .iter()
            .filter_map(|f| f["unavailable_ms"].as_f64())
            .reduce(f64::max)
    });

    json!({
        "log": {
            "source": plan.source,
            "sessions": plan.sessions,
            "rate_per_s": plan.rate_per_s / plan.speed,
            "command_latency": log_latency("CommandRequest"),
            "query_latency": log_latency("QueryRequest"),
            "unavailable_ms": plan.log_unavailable_ms,
            "unavailable_open_at_end": plan.log_unavailable_open_at_end,
            "sessions_expired": plan.log_sessions_expired,
        },
        "ringraft": {
            "result_dir": out.display().to_string(),
            "speed": plan.speed,
            "rate_per_s": plan.rate_per_s,
            "add_latency": run_latency("add"),
            "query_latency": run_latency("query"),
            "unavailable_ms": run_unavailable,
            "sessions_expired": summary["sessions"]["expired"],
            "check_valid": summary["check"]["valid"],
        },
    })
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.2}"),
            _ => n.to_string(),
        },
        Value::Array(items) if items.is_empty() => "none".to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string().trim_matches('"').to_string(),
    }
}

/// Renders the comparison as a Markdown table.
pub fn render_comparison(plan: &ReplayPlan, comparison: &Value) -> String {
    let log = &comparison["log"];
    let run = &comparison["ringraft"];
    let mut rows: Vec<(String, String, String)> = vec![
        (
            "sessions".into(),
            cell(&log["sessions"]),
            cell(&json!(plan.sessions)),
        ),
        (
            "request rate (per s)".into(),
            cell(&log["rate_per_s"]),
            cell(&run["rate_per_s"]),
        ),
    ];
    for (label, log_key, run_key) in [
        ("command / Add", "command_latency", "add_latency"),
        ("query", "query_latency", "query_latency"),
    ] {
        for field in ["p50_ms", "p99_ms", "max_ms"] {
            rows.push((
                format!("{label} latency {} (ms)", field.trim_end_matches("_ms")),
                cell(&log[log_key][field]),
                cell(&run[run_key][field]),
            ));
        }
    }
    let open = if log["unavailable_open_at_end"].as_bool() == Some(true) {
        " (still open at the end of the log)"
    } else {
        ""
    };
    rows.push((
        "longest client outage (ms)".into(),
        format!("{}{open}", cell(&log["unavailable_ms"])),
        cell(&run["unavailable_ms"]),
    ));
    rows.push((
        "sessions expired".into(),
        cell(&log["sessions_expired"]),
        cell(&run["sessions_expired"]),
    ));

    let mut text = format!(
        "# Replay of {} at speed {}\n\n| | Copycat log | ringraft |\n|---|---|---|\n",
        plan.source, plan.speed
    );
    for (label, log_value, run_value) in rows {
        text.push_str(&format!("| {label} | {log_value} | {run_value} |\n"));
    }
    text.push_str(&format!(
        "\nHistory check: {}. The ringraft latencies are measured from each request's intended send time (open loop).\n",
        if run["check_valid"].as_bool() == Some(true) { "passed" } else { "FAILED" }
    ));
    text
}
