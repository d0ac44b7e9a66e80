//! The steps of one bench run, in order: resolve the scenario, start the cluster, run the
//! load with the fault schedule, read the final state, check the history, write the results.
//!
//! Everything that can be rejected up front (flags, scenario file, fault specs, workload
//! settings, the server binary) is checked before any process starts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ringraft_loadgen::history::Outcome;
use ringraft_loadgen::{LoadConfig, LoadError, RunControl, WorkloadArgs};

use super::args::BenchArgs;
use super::checker::{self, HistoryError};
use super::cluster::{ClusterConfig, ClusterError, LocalCluster, StatusFn};
use super::compare;
use super::metrics::{fault_metrics, StatusPoller};
use super::report::{self, ReportInput};
use super::resources;
use super::scenario::{self, ResolvedScenario, ScenarioError};
use super::schedule::{sleep_until, FaultScheduler};

/// Default time to wait for the first leader.
const DEFAULT_LEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for the final-state read after the load stops.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Maximum sleep of the scheduling loop, so Ctrl-C and the end of the load are noticed quickly.
const LOOP_TICK: Duration = Duration::from_millis(10);

/// Exit code when the history check fails.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code when the run could not be set up or did not finish.
pub const EXIT_ERROR: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT), when the partial history checked out.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Error that stops a bench run; the message names the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("invalid [workload] settings in scenario {origin}: {reason}")]
    Workload { origin: String, reason: String },
    #[error("cannot find the server binary: {0}")]
    ServerBin(String),
    #[error("failed to {operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("load generator failed: {0}")]
    Load(#[from] LoadError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("failed to install the Ctrl-C handler: {0}")]
    Signal(std::io::Error),
    #[error("failed to write the results: {0}")]
    Report(String),
    /// A setting rejected before any server starts. The message names it and the fix.
    #[error("{0}")]
    Invalid(String),
}

/// Runs `ringraft bench` and prints errors: the entry point for `main`.
pub fn main(args: BenchArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Outcome of a finished run.
pub struct RunOutcome {
    /// Success, check failed, or interrupted.
    pub code: ExitCode,
    /// The content of `summary.json`.
    pub summary: serde_json::Value,
    pub interrupted: bool,
}

/// Runs `ringraft bench`: one run, or one per backend with `--compare-storage`. Returns the
/// exit code for finished runs (success, check failed, interrupted) and an error when a run
/// could not be set up or did not finish.
pub fn run(args: BenchArgs) -> Result<ExitCode, BenchError> {
    if !args.compare_storage.is_empty() {
        return compare::run(args);
    }
    run_one(args).map(|outcome| outcome.code)
}

/// Runs one bench run with `args` as given.
pub(super) fn run_one(args: BenchArgs) -> Result<RunOutcome, BenchError> {
    let resolved = scenario::resolve(&args)?;
    let workload = workload_args(&resolved)?;
    let external = !resolved.external_cluster.is_empty();
    let server_bin = if external {
        None
    } else {
        Some(server_bin(&args)?)
    };
    let started_wall = SystemTime::now();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(&resolved.scenario.name, started_wall));
    let out_existed = out.exists();
    std::fs::create_dir_all(&out).map_err(|source| BenchError::Io {
        operation: "create result directory",
        path: out.clone(),
        source,
    })?;

    // The servers keep their data under the result directory: a backend that cannot live
    // there (dma on tmpfs) is rejected here rather than by three failing servers.
    if !external {
        let backend: ringraft_storage::Backend = resolved
            .scenario
            .server
            .storage
            .parse()
            .map_err(|e| BenchError::Invalid(format!("--storage: {e}")))?;
        if let Err(e) = ringraft_storage::check_backend_dir(backend, &out) {
            if !out_existed {
                let _ = std::fs::remove_dir(&out);
            }
            return Err(BenchError::Invalid(format!(
                "storage {backend} cannot run under {}: {e}; pass --out with a directory on \
                 another file system or choose another --storage",
                out.display()
            )));
        }
    }

    let faults: Vec<String> = resolved
        .scenario
        .faults
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "ringraft bench: scenario {} ({}), {}, {} of load, faults: {}; results in {}",
        resolved.scenario.name,
        resolved.origin,
        if external {
            format!("existing cluster {}", resolved.external_cluster.join(","))
        } else {
            format!("{} local nodes", resolved.scenario.nodes)
        },
        super::faults::format_duration(resolved.scenario.duration),
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(" ")
        },
        out.display()
    );

    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C exits at once; the servers then die through PR_SET_PDEATHSIG.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            EXIT_INTERRUPTED as i32,
            interrupted.clone(),
        )
        .map_err(BenchError::Signal)?;
        signal_hook::flag::register(signal, interrupted.clone()).map_err(BenchError::Signal)?;
    }
    let cluster_id = resolved.scenario.server.cluster_id.clone();
    let status: StatusFn = {
        let cluster_id = cluster_id.clone();
        Arc::new(move |addr: &str, timeout: Duration| {
            ringraft_loadgen::fetch_status(addr, &cluster_id, timeout).map_err(|e| e.to_string())
        })
    };

    // The cluster: started here, or the one given with --cluster.
    let mut cluster = match &server_bin {
        Some(bin) => {
            flush_page_cache();
            let config = ClusterConfig {
                bin: bin.clone(),
                nodes: resolved.scenario.nodes,
                server: resolved.scenario.server.clone(),
                dir: out.join("nodes"),
                relays: resolved.scenario.needs_relays(),
                env: Vec::new(),
            };
            let mut cluster = LocalCluster::start(&config)?;
            let timeout = args.leader_timeout.unwrap_or(DEFAULT_LEADER_TIMEOUT);
            cluster.wait_for_leader(&status, timeout)?;
            Some(cluster)
        }
        None => None,
    };
    let (client_addrs, status_addrs) = match &cluster {
        Some(cluster) => (cluster.client_addrs(), cluster.status_addrs()),
        None => {
            let addrs = resolved.external_cluster.clone();
            let by_index = (1..).zip(addrs.iter().cloned()).collect();
            (addrs, by_index)
        }
    };
    let direct_addrs: Vec<String> = status_addrs.values().cloned().collect();
    let poller = StatusPoller::start(&status_addrs, status.clone());

    // The load runs on its own thread; this thread injects the faults on schedule.
    let control = RunControl::new();
    let load_config = LoadConfig {
        cluster: client_addrs.clone(),
        workload: workload.clone(),
        out_dir: out.clone(),
        progress: !args.quiet,
        executors: 0,
    };
    // Resource use is measured over the load window, so set-up and shutdown are not in it.
    let resources_start = cluster.as_ref().map(|c| resources::sample(c, &status));
    let load_thread = {
        let control = control.clone();
        std::thread::Builder::new()
            .name("load".into())
            .spawn(move || ringraft_loadgen::run(&load_config, &control))
            .map_err(|source| BenchError::Io {
                operation: "start the load thread for",
                path: out.clone(),
                source,
            })?
    };

    let mut scheduler = FaultScheduler::new(&resolved.scenario.faults);
    while !load_thread.is_finished() {
        if interrupted.load(Ordering::Relaxed) && !control.is_stopped() {
            tracing::warn!("interrupted: stopping the load, then checking what was recorded");
            control.stop();
        }
        let run_start = control.run_start();
        let elapsed = Instant::now().saturating_duration_since(run_start);
        if let Some(cluster) = cluster.as_mut() {
            scheduler.run_due(elapsed, cluster, &poller);
            for (node, status) in cluster.reap_exited() {
                tracing::error!(node, %status, "server exited during the run");
            }
        }
        if let Some((leader, _)) = poller.current_leader() {
            control.set_leader(Some(leader));
        }
        let next = scheduler.next_due().map(|at| run_start + at);
        sleep_until(next, LOOP_TICK);
    }
    let run_start = control.run_start();
    let load_result = load_thread.join().expect("the load thread does not panic");
    let load_end = Instant::now().saturating_duration_since(run_start);
    if let Some(cluster) = cluster.as_mut() {
        scheduler.end_all(load_end, cluster);
    }
    let resources = cluster
        .as_ref()
        .zip(resources_start.as_ref())
        .map(|(cluster, start)| resources::usage(start, &resources::sample(cluster, &status)));
    let load = load_result?;

    // Final state and check.
    let history_path = out.join(ringraft_loadgen::output::HISTORY_FILE);
    let history = checker::read_history(&history_path)?;
    let tags = checker::history_tags(&history);
    let final_state =
        ringraft_loadgen::read_tags(&direct_addrs, &cluster_id, &tags, FINAL_READ_TIMEOUT);
    let check = match &final_state {
        Ok(state) => checker::check(&history, state),
        Err(error) => {
            tracing::error!(%error, "failed to read the final state; the check fails");
            checker::CheckReport {
                checked_ops: history.len() as u64,
                examples: vec![format!("final state could not be read: {error}")],
                ..checker::CheckReport::default()
            }
        }
    };
    // A run in which nothing was acknowledged checks nothing, so it does not pass.
    let mut check = check;
    if !history.iter().any(|record| record.outcome == Outcome::Ok) {
        check.valid = false;
        check.examples.push(format!(
            "no operation was acknowledged in {} recorded; see the server logs under {}",
            history.len(),
            out.join("nodes").display()
        ));
    }
    let samples = poller.finish();
    let run_end_ns = (load.measured + workload.warmup).as_nanos() as u64;
    let faults = fault_metrics(
        &scheduler.records,
        &samples,
        &history,
        run_start,
        run_end_ns,
    );

    // Stop the servers before writing, so their logs are complete.
    let mut unexpected_exits = Vec::new();
    if let Some(cluster) = cluster.as_mut() {
        cluster.stop();
        for node in cluster.nodes() {
            for status in &node.unexpected_exits {
                unexpected_exits.push(format!("node{}: {status}", node.id));
            }
        }
        if !args.keep_data {
            cluster.remove_data();
        }
    }
    drop(cluster);

    let input = ReportInput {
        resolved: &resolved,
        workload: &workload,
        out: &out,
        started: started_wall,
        server_bin: server_bin.as_deref(),
        client_addrs: &client_addrs,
        load: &load,
        faults: &faults,
        samples: &samples,
        check: &check,
        final_state_error: final_state.as_ref().err().map(ToString::to_string),
        unexpected_exits,
        interrupted: interrupted.load(Ordering::Relaxed),
        resources: resources.as_ref(),
    };
    let (short, summary) = report::write(&input).map_err(BenchError::Report)?;
    println!("{short}");
    println!("results: {}", out.display());

    let code = if !check.valid {
        ExitCode::from(EXIT_CHECK_FAILED)
    } else if input.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    };
    Ok(RunOutcome {
        code,
        summary,
        interrupted: input.interrupted,
    })
}

/// Flushes every dirty page of the machine before the servers start.
///
/// A large writeback competes with the servers' fdatasyncs for the disk. On the reference
/// machine (ext4), a 30 s throughput run left 1 GB of `history.jsonl` in the page cache. When
/// the kernel wrote it back 12 s into the next run, durable commits stopped for 3 s. A run
/// must not pay for writeback that earlier work caused.
fn flush_page_cache() {
    // SAFETY: sync(2) takes no arguments and touches no memory of this process.
    unsafe { libc::sync() };
}

/// Builds the load generator's settings from the scenario's `[workload]` table.
fn workload_args(resolved: &ResolvedScenario) -> Result<WorkloadArgs, BenchError> {
    let scenario = &resolved.scenario;
    let invalid = |reason: String| BenchError::Workload {
        origin: resolved.origin.clone(),
        reason,
    };
    let mut table = scenario.workload.clone();
    if table.contains_key("duration") {
        return Err(invalid(
            "set the run length with the top-level `duration` key or --duration, not in [workload]"
                .into(),
        ));
    }
    table.insert(
        "duration".into(),
        toml::Value::String(format!("{}ms", scenario.duration.as_millis())),
    );
    table
        .entry("cluster_id")
        .or_insert_with(|| toml::Value::String(scenario.server.cluster_id.clone()));

    let workload: WorkloadArgs = table
        .try_into()
        .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
    workload.validate().map_err(invalid)?;
    Ok(workload)
}

/// Finds the `ringraft` binary to start servers with: --server-bin, $RINGRAFT_BIN, or this
/// program when it is `ringraft`.
fn server_bin(args: &BenchArgs) -> Result<PathBuf, BenchError> {
    let chosen = args
        .server_bin
        .clone()
        .or_else(|| std::env::var_os("RINGRAFT_BIN").map(PathBuf::from));
    if let Some(path) = chosen {
        if !path.is_file() {
            return Err(BenchError::ServerBin(format!(
                "{} does not exist; pass --server-bin or RINGRAFT_BIN with the path of a ringraft binary",
                path.display()
            )));
        }
        return Ok(path);
    }

    let current = std::env::current_exe().map_err(|e| {
        BenchError::ServerBin(format!(
            "current executable unknown ({e}); pass --server-bin"
        ))
    })?;
    let is_ringraft = current
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name == "ringraft");
    if !is_ringraft {
        return Err(BenchError::ServerBin(format!(
            "{} is not the ringraft binary; pass --server-bin or set RINGRAFT_BIN",
            current.display()
        )));
    }
    Ok(current)
}

/// `results/<UTC start time>-<scenario>`, for example `results/2026-12-04T20-10-00Z-seed`.
pub(super) fn default_out_dir(scenario: &str, started: SystemTime) -> PathBuf {
    let time: chrono::DateTime<chrono::Utc> = started.into();
    Path::new("results").join(format!("{}-{scenario}", time.format("%Y-%m-%dT%H-%M-%SZ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_dir_names_utc_time_and_scenario() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_415_000);
        let dir = default_out_dir("seed", time);
        assert_eq!(dir, Path::new("results/2026-12-04T20-10-00Z-seed"));
    }

    #[test]
    fn workload_from_seed_scenario() {
        let resolved = scenario::resolve(&BenchArgs::default()).unwrap();
        let workload = workload_args(&resolved).unwrap();
        assert_eq!(workload.sessions, 3);
        assert_eq!(workload.rate, Some(180.0));
        assert_eq!(workload.duration, Duration::from_secs(20));
        assert_eq!(workload.cluster_id, "ringraft");
    }

    #[test]
    fn workload_keeps_seeds_above_i64_max() {
        for seed in [0, 42, i64::MAX as u64, u64::MAX] {
            let args = BenchArgs {
                seed: Some(seed),
                ..BenchArgs::default()
            };
            let resolved = scenario::resolve(&args).unwrap();
            assert_eq!(workload_args(&resolved).unwrap().seed, Some(seed));
        }

        let args = BenchArgs {
            workload_overrides: vec!["seed=\"not a seed\"".into()],
            ..BenchArgs::default()
        };
        let resolved = scenario::resolve(&args).unwrap();
        let message = workload_args(&resolved).unwrap_err().to_string();
        assert!(message.contains("not a seed"), "{message}");
    }

    #[test]
    fn workload_rejects_unknown_key() {
        let args = BenchArgs {
            workload_overrides: vec!["sesions=4".into()],
            ..BenchArgs::default()
        };
        let resolved = scenario::resolve(&args).unwrap();
        let message = workload_args(&resolved).unwrap_err().to_string();
        assert!(message.contains("sesions"), "{message}");
    }
}
