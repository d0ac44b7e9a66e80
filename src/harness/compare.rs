//! `ringraft bench --compare-storage`: the same scenario once per storage backend, and one table.
//!
//! Each backend gets an ordinary bench run in `<out>/<backend>/`, with the same scenario,
//! flags and workload seed, so the runs differ only in `--storage`. Before the runs, the disk
//! under `<out>` (where the servers keep their data) is probed for its own limits, so the table
//! shows how close each backend gets to the disk. `compare.json` carries every figure and
//! `compare.md` is the page to read.
//!
//! Design choices:
//! - Everything that can be rejected is rejected before the first server starts: unknown or
//!   repeated backends, a scenario or flag error for any backend, and a directory whose file
//!   system cannot hold one of the backends (O_DIRECT for `dma`).
//! - Every run flushes the machine's dirty pages before its servers start (see
//!   `super::run`), so a backend does not pay for its predecessor's writeback.
//! - A backend whose run fails is reported in the table and the others still run; Ctrl-C stops
//!   after the current run.
//!
//! Not done yet: each backend runs once, so the table shows no run-to-run spread. Repeat the
//! command to see it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use ringraft_storage::probe::{ProbeConfig, ProbeReport};
use ringraft_storage::Backend;
use serde_json::{json, Value};

use super::args::BenchArgs;
use super::run::{run_one, BenchError, EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_INTERRUPTED};
use super::scenario;

pub const COMPARE_JSON_FILE: &str = "compare.json";
pub const COMPARE_MD_FILE: &str = "compare.md";

/// Default time limit of each part of the disk probe.
const DEFAULT_PROBE_DURATION: Duration = Duration::from_secs(3);

/// One backend's line of the table: the figures taken from its `summary.json`, or the error
/// that stopped its run.
struct Row {
    backend: Backend,
    dir: PathBuf,
    outcome: Result<Value, String>,
}

/// Runs the comparison, called from [`super::run`].
pub fn run(args: BenchArgs) -> Result<ExitCode, BenchError> {
    let backends = parse_backends(&args.compare_storage)?;

    // Resolve the scenario for every backend now, so that a bad flag fails before any run.
    let base = BenchArgs {
        compare_storage: Vec::new(),
        probe_duration: None,
        ..args.clone()
    };
    let mut resolved = None;
    for backend in &backends {
        let with_backend = BenchArgs {
            storage: Some(backend.to_string()),
            ..base.clone()
        };
        resolved = Some(scenario::resolve(&with_backend)?);
    }
    let resolved = resolved.expect("parse_backends returns at least one backend");

    // One seed for every run: the flag's, the scenario's, or a fresh one.
    let seed = args
        .seed
        .or_else(|| {
            resolved
                .scenario
                .workload
                .get("seed")
                .and_then(|seed| match seed {
                    toml::Value::Integer(seed) => u64::try_from(*seed).ok(),
                    toml::Value::String(seed) => seed.trim().parse().ok(),
                    _ => None,
                })
        })
        .unwrap_or_else(rand::random);

    let started = SystemTime::now();
    let out = args.out.clone().unwrap_or_else(|| {
        super::run::default_out_dir(&format!("compare-{}", resolved.scenario.name), started)
    });
    let out_existed = out.exists();
    if out.join(COMPARE_JSON_FILE).exists() {
        tracing::warn!(
            out = %out.display(),
            "the directory contains an earlier comparison: its files are overwritten, and directories of backends not in this run stay"
        );
    }
    std::fs::create_dir_all(&out).map_err(|source| BenchError::Io {
        operation: "create result directory",
        path: out.clone(),
        source,
    })?;
    for backend in &backends {
        if let Err(e) = ringraft_storage::check_backend_dir(*backend, &out) {
            // A rejected command leaves nothing behind: the directory was made only for it.
            if !out_existed {
                let _ = std::fs::remove_dir(&out);
            }
            return Err(BenchError::Invalid(format!(
                "backend {backend} cannot run under {}: {e}; pass --out with a directory on \
                 another file system or leave {backend} out of --compare-storage",
                out.display()
            )));
        }
    }

    let probe_duration = args.probe_duration.unwrap_or(DEFAULT_PROBE_DURATION);
    let probe = if probe_duration.is_zero() {
        None
    } else {
        println!(
            "ringraft bench: probing the disk under {} ({} per part)",
            out.display(),
            super::faults::format_duration(probe_duration)
        );
        let config = ProbeConfig {
            duration: probe_duration,
            ..ProbeConfig::default()
        };
        let report = ringraft_storage::probe::probe(&out, &config)
            .map_err(|e| BenchError::Invalid(format!("disk probe failed: {e}")))?;
        print!("{}", report.render_text());
        Some(report)
    };

    let mut rows = Vec::new();
    let mut interrupted = false;
    for backend in &backends {
        let dir = out.join(backend.to_string());
        let run_args = BenchArgs {
            storage: Some(backend.to_string()),
            seed: Some(seed),
            out: Some(dir.clone()),
            ..base.clone()
        };
        println!(
            "\nringraft bench: storage {backend} ({} of {})",
            rows.len() + 1,
            backends.len()
        );
        let outcome = match run_one(run_args) {
            Ok(outcome) => {
                interrupted = outcome.interrupted;
                Ok(outcome.summary)
            }
            Err(error) => {
                tracing::error!(%backend, %error, "bench run failed");
                eprintln!("error: storage {backend}: {error}");
                Err(error.to_string())
            }
        };
        rows.push(Row {
            backend: *backend,
            dir,
            outcome,
        });
        if interrupted {
            tracing::warn!("interrupted: the remaining backends are not run");
            break;
        }
    }

    let skipped: Vec<String> = backends[rows.len()..]
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut compare = compare_json(&rows, probe.as_ref(), seed, started);
    compare["interrupted"] = Value::Bool(interrupted);
    compare["skipped_backends"] = json!(skipped);
    let text = serde_json::to_string_pretty(&compare)
        .map_err(|e| BenchError::Report(format!("cannot encode {COMPARE_JSON_FILE}: {e}")))?;
    write_file(&out.join(COMPARE_JSON_FILE), &format!("{text}\n"))?;
    let markdown = compare_markdown(&compare, &out);
    write_file(&out.join(COMPARE_MD_FILE), &markdown)?;
    println!("\n{}", table(&compare));
    println!("results: {}", out.join(COMPARE_MD_FILE).display());

    if rows.iter().any(|row| row.outcome.is_err()) {
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    let all_valid = rows.iter().all(|row| {
        row.outcome
            .as_ref()
            .is_ok_and(|summary| summary["check"]["valid"].as_bool() == Some(true))
    });
    if !all_valid {
        return Ok(ExitCode::from(EXIT_CHECK_FAILED));
    }
    if interrupted {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses the backend list: known names, each once, at least one.
fn parse_backends(names: &[String]) -> Result<Vec<Backend>, BenchError> {
    let mut backends = Vec::new();
    for name in names {
        let backend = Backend::from_str(name.trim())
            .map_err(|e| BenchError::Invalid(format!("--compare-storage: {e}")))?;
        if backends.contains(&backend) {
            return Err(BenchError::Invalid(format!(
                "--compare-storage names {backend} twice; list each backend once, for example \
                 memory,mmap,file,dma"
            )));
        }
        backends.push(backend);
    }
    if backends.is_empty() {
        return Err(BenchError::Invalid(
            "--compare-storage needs at least one backend, for example memory,mmap,file,dma".into(),
        ));
    }
    Ok(backends)
}

fn write_file(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(|source| BenchError::Io {
        operation: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn ratio(part: Option<f64>, whole: Option<f64>) -> Option<f64> {
    match (part, whole) {
        (Some(part), Some(whole)) if whole > 0.0 => Some(part / whole),
        _ => None,
    }
}

/// Builds the `compare.json` value: the probe, then one object per backend.
fn compare_json(
    rows: &[Row],
    probe: Option<&ProbeReport>,
    seed: u64,
    started: SystemTime,
) -> Value {
    let started: chrono::DateTime<chrono::Utc> = started.into();
    let fdatasync_per_s = probe.map(|p| p.fdatasync.per_s);
    let direct_bytes_per_s = probe
        .and_then(|p| p.direct.as_ref())
        .map(|d| d.mib_per_s * f64::from(1 << 20));
    let first = rows.iter().find_map(|row| row.outcome.as_ref().ok());

    let backends: Vec<Value> = rows
        .iter()
        .map(|row| {
            let dir = row.dir.display().to_string();
            let summary = match &row.outcome {
                Ok(summary) => summary,
                Err(error) => {
                    return json!({ "backend": row.backend.to_string(), "dir": dir, "error": error })
                }
            };
            let resources = &summary["resources"];
            let syncs_per_s = resources["syncs_per_s"].as_f64();
            let disk_bytes_per_s = resources["disk_write_bytes_per_s"].as_f64();
            let latency = |op: &str| {
                let l = &summary["ops"][op]["latency_us"];
                json!({ "count": l["count"], "p50": l["p50"], "p99": l["p99"], "p999": l["p999"], "max": l["max"] })
            };
            json!({
                "backend": row.backend.to_string(),
                "dir": dir,
                "check_valid": summary["check"]["valid"],
                "duration_s": summary["duration_s"],
                "throughput": summary["throughput"],
                "latency_us": { "add": latency("add"), "query": latency("query") },
                "committed_entries": resources["committed_entries"],
                "syncs_per_s": syncs_per_s,
                "syncs_vs_disk_fdatasync": ratio(syncs_per_s, fdatasync_per_s),
                "disk_write_bytes_per_s": disk_bytes_per_s,
                "disk_write_vs_direct_bandwidth": ratio(disk_bytes_per_s, direct_bytes_per_s),
                "disk_bytes_per_entry": resources["disk_bytes_per_entry"],
                "log_bytes_per_entry": resources["log_bytes_per_entry"],
                "cpu_us_per_entry": resources["cpu_us_per_entry"],
                "resources": resources,
            })
        })
        .collect();

    json!({
        "tool": "ringraft bench --compare-storage",
        "command": std::env::args().collect::<Vec<_>>(),
        "started_utc": started.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "seed": seed,
        "scenario": first.map_or(Value::Null, |s| s["scenario"].clone()),
        "config": first.map_or(Value::Null, |s| {
            // The settings shared by every run. The storage differs per run, as `backends` shows.
            let mut config = s["config"]["scenario"].clone();
            config["server"]["storage"] = json!(rows.iter().map(|r| r.backend.to_string()).collect::<Vec<_>>());
            config
        }),
        "latency_from": first.map_or(Value::Null, |s| s["latency_from"].clone()),
        "commit": first.map_or(Value::Null, |s| s["commit"].clone()),
        "machine": first.map_or(Value::Null, |s| s["machine"].clone()),
        "disk_probe": probe,
        "backends": backends,
    })
}

fn number(value: &Value, decimals: usize) -> String {
    value
        .as_f64()
        .map_or("-".to_string(), |v| format_grouped(v, decimals))
}

/// Formats a number with thousands separators, for large counts.
fn format_grouped(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(frac) => format!("{sign}{grouped}.{frac}"),
        None => format!("{sign}{grouped}"),
    }
}

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0))
}

fn latency_ms(latency: &Value) -> String {
    // An operation the workload never sent has no latency, not a latency of zero.
    if latency["count"].as_u64() == Some(0) {
        return "-".to_string();
    }
    let ms = |v: &Value| {
        v.as_f64()
            .map_or("-".to_string(), |us| format!("{:.2}", us / 1000.0))
    };
    format!(
        "{} / {} / {}",
        ms(&latency["p50"]),
        ms(&latency["p99"]),
        ms(&latency["p999"])
    )
}

/// Renders the main table as Markdown.
fn table(compare: &Value) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "| backend | check | Adds/s | Queries/s | Add p50 / p99 / p99.9 ms | Query p50 / p99 / p99.9 ms | fsyncs/s | of disk fdatasync/s | disk MiB/s | of O_DIRECT MiB/s | disk bytes/entry | log bytes/entry | CPU µs/entry |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in compare["backends"].as_array().into_iter().flatten() {
        let backend = row["backend"].as_str().unwrap_or("?");
        if let Some(error) = row["error"].as_str() {
            // A Markdown table cell is one line without a bar.
            let error = error.replace('\n', " ").replace('|', "\\|");
            let _ = writeln!(
                md,
                "| {backend} | run failed: {error} | | | | | | | | | | | |"
            );
            continue;
        }
        let check = match row["check_valid"].as_bool() {
            Some(true) => "passed",
            _ => "FAILED",
        };
        let disk_mib = row["disk_write_bytes_per_s"]
            .as_f64()
            .map(|b| Value::from(b / f64::from(1 << 20)))
            .unwrap_or(Value::Null);
        let _ = writeln!(
            md,
            "| {backend} | {check} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            number(&row["throughput"]["add_ok_per_s"], 0),
            number(&row["throughput"]["query_ok_per_s"], 0),
            latency_ms(&row["latency_us"]["add"]),
            latency_ms(&row["latency_us"]["query"]),
            number(&row["syncs_per_s"], 0),
            percent(&row["syncs_vs_disk_fdatasync"]),
            number(&disk_mib, 1),
            percent(&row["disk_write_vs_direct_bandwidth"]),
            number(&row["disk_bytes_per_entry"], 0),
            number(&row["log_bytes_per_entry"], 0),
            number(&row["cpu_us_per_entry"], 1),
        );
    }
    md
}

/// Renders `compare.md`: what was run, the disk's limits, the table, and how to read it.
fn compare_markdown(compare: &Value, out: &Path) -> String {
    let mut md = String::new();
    let scenario = compare["scenario"].as_str().unwrap_or("?");
    let _ = writeln!(md, "# ringraft bench --compare-storage: {scenario}\n");
    let _ = writeln!(
        md,
        "- started: {} (UTC)",
        compare["started_utc"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "- commit: {}",
        compare["commit"].as_str().unwrap_or("unknown")
    );
    let machine = &compare["machine"];
    let _ = writeln!(
        md,
        "- machine: {} CPUs, {}",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("unknown CPU")
    );
    let _ = writeln!(
        md,
        "- command: `{}`",
        compare["command"]
            .as_array()
            .map(|args| args
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "- workload seed: {} (the same for every backend)",
        compare["seed"]
    );
    let config = &compare["config"];
    let _ = writeln!(
        md,
        "- cluster: {} nodes, fsync {}, faults: {}",
        config["nodes"],
        config["server"]["fsync"].as_str().unwrap_or("?"),
        config["faults"]
            .as_array()
            .filter(|f| !f.is_empty())
            .map_or("none".to_string(), |f| {
                f.iter()
                    .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    );

    let _ = writeln!(md, "\n## The disk under `{}`\n", out.display());
    match compare["disk_probe"].as_object() {
        Some(probe) => {
            let sync = &probe["fdatasync"];
            let _ = writeln!(
                md,
                "- fdatasync after each {} B write: {}/s (p50 {} µs, p99 {} µs), one writer",
                sync["write_size"],
                number(&sync["per_s"], 0),
                sync["p50_us"],
                sync["p99_us"]
            );
            match probe["direct"].as_object() {
                Some(direct) => {
                    let _ = writeln!(
                        md,
                        "- sequential O_DIRECT writes of {} KiB, {} in flight, flushed at the end: {} MiB/s",
                        direct["block_size"].as_u64().unwrap_or(0) / 1024,
                        direct["depth"],
                        number(&direct["mib_per_s"], 0)
                    );
                }
                None => {
                    let _ = writeln!(
                        md,
                        "- sequential O_DIRECT writes: not measured ({})",
                        probe["direct_skipped"].as_str().unwrap_or("unknown reason")
                    );
                }
            }
            if let Some(warning) = probe["warning"].as_str() {
                let _ = writeln!(md, "- **warning**: {warning}");
            }
            let _ = writeln!(md, "\nMeasured by the harness just before the runs, as one sample of a few seconds. A shared or virtual disk can vary several times over between samples: run `ringraft disk-probe` a few times on the same directory to see its spread.");
        }
        None => {
            let _ = writeln!(md, "Not probed (`--probe-duration 0s`).");
        }
    }

    let _ = writeln!(md, "\n## Results\n");
    if compare["interrupted"].as_bool() == Some(true) {
        let _ = writeln!(
            md,
            "**Interrupted** with Ctrl-C; not run: {}.\n",
            compare["skipped_backends"]
                .as_array()
                .filter(|s| !s.is_empty())
                .map_or("none".to_string(), |s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
        );
    }
    md.push_str(&table(compare));
    let _ = writeln!(
        md,
        "\nEach backend's full result is in its directory: `<backend>/summary.md`.\n"
    );
    let _ = writeln!(md, "How to read the columns:");
    let _ = writeln!(
        md,
        "- Adds/s and Queries/s are acknowledged operations per second over the measured load; latencies are measured from the {}.",
        compare["latency_from"].as_str().unwrap_or("send time")
    );
    let _ = writeln!(md, "- fsyncs/s, disk MiB/s, bytes and CPU are summed over all server processes during the load, so every entry is counted once per node. Entries are all committed log entries, session keep-alives and registrations included.");
    let _ = writeln!(md, "- \"of disk fdatasync/s\" compares the cluster's fsyncs with one writer's fdatasync rate on the same disk; several nodes syncing at once can go above 100% when the device serves concurrent flushes.");
    let _ = writeln!(md, "- Disk bytes come from `/proc/<pid>/io` (`write_bytes`) and leave out the file system's journal; log bytes are the encoded records the servers appended.");
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_parsed_once_each() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let backends = parse_backends(&names(&["memory", "mmap", "file", "dma"])).unwrap();
        assert_eq!(
            backends,
            vec![Backend::Memory, Backend::Mmap, Backend::File, Backend::Dma]
        );

        let error = parse_backends(&names(&["mmap", "disk"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("disk"), "{error}");
        let error = parse_backends(&names(&["file", "file"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("twice"), "{error}");
        assert!(parse_backends(&[]).is_err());
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(format_grouped(91136.4, 0), "91,136");
        assert_eq!(format_grouped(1234567.891, 1), "1,234,567.9");
        assert_eq!(format_grouped(999.0, 0), "999");
        assert_eq!(format_grouped(-4200.0, 0), "-4,200");
    }

    #[test]
    fn failed_runs_stay_in_the_table() {
        let rows = vec![
            Row {
                backend: Backend::Mmap,
                dir: PathBuf::from("out/mmap"),
                outcome: Ok(json!({
                    "check": { "valid": true },
                    "throughput": { "add_ok_per_s": 1000.0, "query_ok_per_s": 10.0 },
                    "ops": { "add": { "latency_us": { "p50": 1500.0, "p99": 3000.0, "p999": 4000.0 } } },
                    "resources": { "syncs_per_s": 500.0, "disk_write_bytes_per_s": 1048576.0 },
                })),
            },
            Row {
                backend: Backend::Dma,
                dir: PathBuf::from("out/dma"),
                outcome: Err("no leader elected".into()),
            },
        ];
        let compare = compare_json(&rows, None, 7, SystemTime::UNIX_EPOCH);
        let text = table(&compare);

        assert!(
            text.contains("| mmap | passed | 1,000 | 10 | 1.50 / 3.00 / 4.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| dma | run failed: no leader elected"),
            "{text}"
        );
        // Without a probe there is nothing to compare with.
        assert_eq!(
            compare["backends"][0]["syncs_vs_disk_fdatasync"],
            Value::Null
        );
    }
}
