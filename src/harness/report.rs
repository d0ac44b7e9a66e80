//! The result files of a bench run besides the load generator's: `summary.json` (for
//! scripts), `summary.md` (for people, read first) and `latency.svg`.
//!
//! The load generator writes its own summary first under the same name. The harness moves it
//! to `load-summary.json` and embeds it as the `load` field of its own summary.
//!
//! Latencies in `summary.json` are in microseconds (`latency_us`) and measured from the
//! intended send time in an open loop, from the actual send in a closed loop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ringraft_loadgen::{LatencySummary, OpSummary, RunReport, WorkloadArgs};
use serde_json::{json, Value};

use super::checker::CheckReport;
use super::metrics::{spread, FaultMetrics, StatusSample};
use super::plot::{latency_series, write_latency_svg, Window};
use super::resources::ResourceUsage;
use super::scenario::ResolvedScenario;

pub const SUMMARY_FILE: &str = "summary.json";
pub const SUMMARY_MD_FILE: &str = "summary.md";
pub const LOAD_SUMMARY_FILE: &str = "load-summary.json";
pub const PLOT_FILE: &str = "latency.svg";

/// Everything the report is made of.
pub struct ReportInput<'a> {
    pub resolved: &'a ResolvedScenario,
    pub workload: &'a WorkloadArgs,
    pub out: &'a Path,
    pub started: SystemTime,
    pub server_bin: Option<&'a Path>,
    pub client_addrs: &'a [String],
    pub load: &'a RunReport,
    pub faults: &'a [FaultMetrics],
    pub samples: &'a [StatusSample],
    pub check: &'a CheckReport,
    pub final_state_error: Option<String>,
    pub unexpected_exits: Vec<String>,
    pub interrupted: bool,
    /// Server resource use during the load; `None` for an external cluster.
    pub resources: Option<&'a ResourceUsage>,
}

fn latency_us(latency: &LatencySummary) -> Value {
    // An operation that never completed has no latency, not a latency of zero.
    if latency.count == 0 {
        return json!({ "count": 0, "p50": null, "p90": null, "p99": null, "p999": null, "max": null, "mean": null });
    }
    let us = |ms: f64| (ms * 1000.0).round();
    json!({
        "count": latency.count,
        "p50": us(latency.p50_ms),
        "p90": us(latency.p90_ms),
        "p99": us(latency.p99_ms),
        "p999": us(latency.p999_ms),
        "max": us(latency.max_ms),
        "mean": us(latency.mean_ms),
    })
}

fn op_json(op: &OpSummary) -> Value {
    let counts = &op.counts;
    json!({
        "sent": counts.sent,
        "ok": counts.ok,
        "failed": counts.failed,
        // Operations still in flight when the load stopped have no known outcome either.
        "indeterminate": counts.indeterminate + counts.in_flight,
        "in_flight_at_end": counts.in_flight,
        "retries": counts.retries,
        "ok_per_s": op.throughput_ops_per_s,
        "latency_us": latency_us(&op.latency),
        "service_time_us": latency_us(&op.service_time),
    })
}

/// Sessions the servers expired: the largest count any node reported.
fn server_expired_sessions(samples: &[StatusSample]) -> u64 {
    samples
        .iter()
        .map(|s| s.status.expired_sessions)
        .max()
        .unwrap_or(0)
}

/// Builds the `summary.json` value.
pub fn summary_json(input: &ReportInput<'_>) -> Value {
    let scenario = &input.resolved.scenario;
    let load = input.load;
    let started: chrono::DateTime<chrono::Utc> = input.started.into();
    let network_path = if !input.resolved.external_cluster.is_empty() {
        "external cluster"
    } else if scenario.needs_relays() {
        "loopback through harness relays (one per link, for partitions)"
    } else {
        "direct loopback"
    };
    let leader_spread = spread(input.faults.iter().filter_map(|f| f.new_leader_after_ms));
    let unavailable_spread = spread(
        input
            .faults
            .iter()
            .filter(|f| !f.nodes.is_empty())
            .map(|f| f.unavailable_ms),
    );

    json!({
        "tool": "ringraft bench",
        "scenario": scenario.name,
        "config": {
            "scenario": scenario,
            "origin": input.resolved.origin,
            "workload": input.workload,
            "cluster": input.client_addrs,
            "external_cluster": !input.resolved.external_cluster.is_empty(),
            "server_bin": input.server_bin.map(|p| p.display().to_string()),
            "network_path": network_path,
            "command": std::env::args().collect::<Vec<_>>(),
        },
        "seed": load.seed,
        "commit": load.summary.get("commit").cloned().unwrap_or(Value::Null),
        "machine": load.summary.get("machine").cloned().unwrap_or(Value::Null),
        "started_utc": started.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "duration_s": load.measured.as_secs_f64(),
        "interrupted": input.interrupted,
        "throughput": {
            "ops_per_s": load.throughput_ops_per_s,
            "add_ok_per_s": load.add.throughput_ops_per_s,
            "query_ok_per_s": load.query.throughput_ops_per_s,
        },
        "latency_from": load.summary.get("latency_from").cloned().unwrap_or(Value::Null),
        "ops": {
            "add": op_json(&load.add),
            "query": op_json(&load.query),
        },
        "faults": input.faults,
        "failover": {
            "new_leader_after_ms": leader_spread,
            "unavailable_ms": unavailable_spread,
        },
        "sessions": {
            "expired": server_expired_sessions(input.samples),
            "expired_seen_by_clients": load.client.sessions_expired,
            "reregistrations": load.client.reregistrations,
        },
        "check": {
            "valid": input.check.valid,
            "lost_acked_adds": input.check.lost_acked_adds,
            "duplicate_applies": input.check.duplicate_applies,
            "stale_reads": input.check.stale_reads,
            "failed_adds_present": input.check.failed_adds_present,
            "unknown_ids": input.check.unknown_ids,
            "indeterminate_adds_applied": input.check.indeterminate_adds_applied,
            "indeterminate_adds_absent": input.check.indeterminate_adds_absent,
            "checked_ops": input.check.checked_ops,
            "tags": input.check.tags,
            "final_state_error": input.final_state_error,
            "examples": input.check.examples,
        },
        "resources": input.resources.map(ResourceUsage::to_json),
        "servers": {
            "unexpected_exits": input.unexpected_exits,
            "logs": "nodes/node<N>/server.log",
        },
        "files": {
            "summary_md": SUMMARY_MD_FILE,
            "plot": PLOT_FILE,
            "load_summary": LOAD_SUMMARY_FILE,
        },
        "load": load.summary,
    })
}

/// Formats one percentile of `latency`, or `-` when nothing was measured.
fn latency_ms(latency: &LatencySummary, value_ms: f64) -> String {
    if latency.count == 0 {
        return "-".to_string();
    }
    format!("{value_ms:.2} ms")
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.0} ms"))
}

/// Builds `summary.md`.
pub fn summary_markdown(input: &ReportInput<'_>, summary: &Value) -> String {
    let scenario = &input.resolved.scenario;
    let load = input.load;
    let check = input.check;
    let mut md = String::new();

    let verdict = if check.valid { "PASSED" } else { "FAILED" };
    let _ = writeln!(md, "# ringraft bench: {}\n", scenario.name);
    // The description is the scenario file's text, and flags may have changed the run. The
    // list below is built from the settings the run used.
    let _ = writeln!(
        md,
        "Scenario {}: {}\n\nThis run's settings, with any command-line overrides:\n",
        input.resolved.origin, scenario.description
    );
    let _ = writeln!(
        md,
        "- started: {} (UTC)",
        summary["started_utc"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "- commit: {}",
        summary["commit"].as_str().unwrap_or("unknown")
    );
    let _ = writeln!(
        md,
        "- machine: {} CPUs, {}",
        summary["machine"]["cpus"],
        summary["machine"]["cpu_model"]
            .as_str()
            .unwrap_or("unknown CPU")
    );
    let _ = writeln!(
        md,
        "- cluster: {} nodes, storage {}, fsync {}, network: {}",
        scenario.nodes,
        scenario.server.storage,
        scenario.server.fsync,
        summary["config"]["network_path"].as_str().unwrap_or("?")
    );
    let mode = match input.workload.rate {
        Some(rate) => format!("open loop at {rate} ops/s"),
        None => "closed loop".to_string(),
    };
    let _ = writeln!(
        md,
        "- load: {} sessions, mix {} (Add:Query), {mode}, {:.1} s measured, seed {}",
        input.workload.sessions,
        input.workload.mix,
        load.measured.as_secs_f64(),
        load.seed
    );
    let faults: Vec<String> = scenario.faults.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        md,
        "- faults: {}",
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(" ")
        }
    );
    // The description comes from the scenario file, and flags may have changed the run since.
    let _ = writeln!(
        md,
        "- command: `{}`",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    if input.interrupted {
        let _ = writeln!(md, "- **interrupted** with Ctrl-C before the end");
    }

    let _ = writeln!(md, "\n## History check: {verdict}\n");
    let _ = writeln!(md, "| checked ops | lost acked adds | duplicate applies | stale reads | failed adds present | unknown ids |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} |",
        check.checked_ops,
        check.lost_acked_adds,
        check.duplicate_applies,
        check.stale_reads,
        check.failed_adds_present,
        check.unknown_ids
    );
    for example in &check.examples {
        let _ = writeln!(md, "- {example}");
    }

    let _ = writeln!(md, "\n## Throughput and latency\n");
    let _ = writeln!(
        md,
        "{:.0} successful ops/s in total.\n",
        load.throughput_ops_per_s
    );
    let _ = writeln!(
        md,
        "| op | sent | ok | failed | indeterminate | p50 | p90 | p99 | p99.9 | max |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for (name, op) in [("Add", &load.add), ("Query", &load.query)] {
        let l = &op.latency;
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            op.counts.sent,
            op.counts.ok,
            op.counts.failed,
            op.counts.indeterminate + op.counts.in_flight,
            latency_ms(l, l.p50_ms),
            latency_ms(l, l.p90_ms),
            latency_ms(l, l.p99_ms),
            latency_ms(l, l.p999_ms),
            latency_ms(l, l.max_ms)
        );
    }
    let _ = writeln!(
        md,
        "\nLatency is measured from the {}.",
        summary["latency_from"].as_str().unwrap_or("send")
    );

    if !input.faults.is_empty() {
        let _ = writeln!(md, "\n## Faults\n");
        let _ = writeln!(md, "| fault | node | leader before | at | new leader after | unavailable | failed ops | indeterminate ops | sessions expired |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        for f in input.faults {
            let node = if f.nodes.is_empty() {
                format!("not injected: {}", f.problem.as_deref().unwrap_or("?"))
            } else {
                f.nodes
                    .iter()
                    .map(|n| format!("node{n}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let _ = writeln!(
                md,
                "| {} | {node} | {} | {:.2} s | {} | {:.0} ms | {} | {} | {} |",
                f.spec,
                f.leader.map_or("-".into(), |l| format!("node{l}")),
                f.at_s,
                ms(f.new_leader_after_ms),
                f.unavailable_ms,
                f.failed_ops,
                f.indeterminate_ops,
                f.sessions_expired
            );
        }
        let failover = &summary["failover"];
        let _ = writeln!(
            md,
            "\nNew leader after: worst {}, median {}. Client unavailability: worst {}, median {}.",
            ms(failover["new_leader_after_ms"]["worst"].as_f64()),
            ms(failover["new_leader_after_ms"]["median"].as_f64()),
            ms(failover["unavailable_ms"]["worst"].as_f64()),
            ms(failover["unavailable_ms"]["median"].as_f64()),
        );
        let _ = writeln!(md, "New-leader times come from status polls every 50 ms; unavailability is the longest gap between successful acknowledgements from the fault to the next fault or the end of the run.");
    }

    if let Some(usage) = input.resources {
        write_resources_markdown(&mut md, usage);
    }

    let _ = writeln!(
        md,
        "\n## Sessions\n\n{} expired on the servers, {} seen expired by the clients, {} re-registrations.",
        summary["sessions"]["expired"], load.client.sessions_expired, load.client.reregistrations
    );
    if !input.unexpected_exits.is_empty() {
        let _ = writeln!(
            md,
            "\nServers that exited on their own: {}",
            input.unexpected_exits.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\n## Files\n\n- `{PLOT_FILE}`: latency per second, fault windows shaded\n- `summary.json`: these figures for scripts\n- `{LOAD_SUMMARY_FILE}`, `add.hgrm`, `query.hgrm`, `latency.hlog`, `timeseries.csv`, `history.jsonl`: the load generator's output\n- `nodes/node<N>/server.log`: server logs"
    );
    md
}

fn optional(value: Option<f64>, decimals: usize, unit: &str) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.decimals$}{unit}"))
}

/// Writes the `Server resources` section of `summary.md`.
fn write_resources_markdown(md: &mut String, usage: &ResourceUsage) {
    let _ = writeln!(md, "\n## Server resources during the load\n");
    let _ = writeln!(
        md,
        "Sums over nodes {:?} for {:.1} s, {} entries committed.\n",
        usage.nodes_counted, usage.window_s, usage.committed_entries
    );
    let _ = writeln!(
        md,
        "| fsyncs/s | disk MiB/s | disk bytes/entry | log bytes/entry | CPU s | CPU µs/entry |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {:.2} | {} |",
        optional(usage.syncs_per_s(), 0, ""),
        optional(
            usage
                .disk_write_bytes_per_s()
                .map(|b| b / f64::from(1 << 20)),
            1,
            ""
        ),
        optional(usage.disk_bytes_per_entry(), 0, ""),
        optional(usage.log_bytes_per_entry(), 0, ""),
        usage.cpu_s,
        optional(usage.cpu_us_per_entry(), 1, ""),
    );
    for left_out in &usage.nodes_left_out {
        let _ = writeln!(md, "- left out: {left_out}");
    }
    let _ = writeln!(md, "\nDisk bytes are what the server processes sent to the block layer (`/proc/<pid>/io`), without the file system's journal; log bytes are the encoded records; every node writes every entry, so both count each entry once per node.");
}

/// Writes every report file and returns a short text for the terminal and the summary.
pub fn write(input: &ReportInput<'_>) -> Result<(String, Value), String> {
    let out = input.out;
    let path = |name: &str| -> PathBuf { out.join(name) };

    // The load generator's own summary.json keeps its content under another name.
    if path(SUMMARY_FILE).is_file() {
        std::fs::rename(path(SUMMARY_FILE), path(LOAD_SUMMARY_FILE)).map_err(|e| {
            format!(
                "failed to rename {} to {LOAD_SUMMARY_FILE}: {e}",
                path(SUMMARY_FILE).display()
            )
        })?;
    }

    let summary = summary_json(input);
    let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    std::fs::write(path(SUMMARY_FILE), format!("{text}\n"))
        .map_err(|e| format!("failed to write {}: {e}", path(SUMMARY_FILE).display()))?;

    let markdown = summary_markdown(input, &summary);
    std::fs::write(path(SUMMARY_MD_FILE), &markdown)
        .map_err(|e| format!("failed to write {}: {e}", path(SUMMARY_MD_FILE).display()))?;

    let end_s = input.load.measured.as_secs_f64() + input.workload.warmup.as_secs_f64();
    let windows: Vec<Window> = input
        .faults
        .iter()
        .filter(|f| !f.nodes.is_empty())
        .map(|f| Window {
            start_s: f.at_s,
            end_s: f.duration_s.map_or(end_s, |d| f.at_s + d),
            label: f.spec.clone(),
        })
        .collect();
    let title = format!(
        "ringraft bench {}: latency per second",
        input.resolved.scenario.name
    );
    let hlog = std::fs::read(path(ringraft_loadgen::output::HLOG_FILE)).ok();
    let series = latency_series(&input.load.timeseries, hlog.as_deref());
    write_latency_svg(&path(PLOT_FILE), &series, &windows, &title)?;

    let check = input.check;
    let mut short = format!(
        "check {}: {} ops checked, {} lost acked adds, {} duplicate applies, {} stale reads, {} failed adds present\nthroughput {:.0} ops/s; Add p99 {}, Query p99 {}",
        if check.valid { "passed" } else { "FAILED" },
        check.checked_ops,
        check.lost_acked_adds,
        check.duplicate_applies,
        check.stale_reads,
        check.failed_adds_present,
        input.load.throughput_ops_per_s,
        latency_ms(&input.load.add.latency, input.load.add.latency.p99_ms),
        latency_ms(&input.load.query.latency, input.load.query.latency.p99_ms),
    );
    for f in input.faults {
        let _ = write!(
            short,
            "\n{}: new leader after {}, unavailable {:.0} ms, {} failed, {} indeterminate",
            f.spec,
            ms(f.new_leader_after_ms),
            f.unavailable_ms,
            f.failed_ops,
            f.indeterminate_ops
        );
    }
    Ok((short, summary))
}
