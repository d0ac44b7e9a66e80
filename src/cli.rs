//! Subcommand glue: argument structs that belong to no library module, tracing set-up, and
//! the mapping from results to exit codes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringraft_protocol::NodeStatus;
use tracing_subscriber::EnvFilter;

/// Set up tracing on stderr; `RUST_LOG` overrides `default`.
fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

pub fn server(args: ringraft::server::ServerArgs) -> ExitCode {
    init_tracing("info");
    match ringraft::server::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server stopped");
            fail(e)
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Members to ask, as HOST:PORT,HOST:PORT,...
    #[arg(long, value_delimiter = ',', required = true, value_parser = parse_host_port)]
    pub cluster: Vec<String>,
    /// Cluster name the servers were started with.
    #[arg(long, default_value = "ringraft")]
    pub cluster_id: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Per-member timeout in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

pub fn status(args: StatusArgs) -> ExitCode {
    init_tracing("warn");
    let timeout = Duration::from_millis(args.timeout_ms);
    let results: Vec<(String, Result<NodeStatus, String>)> = args
        .cluster
        .iter()
        .map(|addr| {
            let status = ringraft_loadgen::fetch_status(addr, &args.cluster_id, timeout)
                .map_err(|e| e.to_string());
            (addr.clone(), status)
        })
        .collect();
    let reachable = results.iter().filter(|(_, r)| r.is_ok()).count();

    if args.json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|(addr, result)| match result {
                Ok(status) => serde_json::json!({ "addr": addr, "status": status }),
                Err(e) => serde_json::json!({ "addr": addr, "error": e }),
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{:<22} {:>4} {:<13} {:>6} {:>7} {:>10} {:>10} {:>10} {:>8} {:<7} {:>10}",
            "ADDRESS",
            "ID",
            "ROLE",
            "TERM",
            "LEADER",
            "LAST",
            "COMMIT",
            "APPLIED",
            "SESSIONS",
            "STORAGE",
            "SYNCS"
        );
        for (addr, result) in &results {
            match result {
                Ok(s) => {
                    let leader = s.leader.map_or("-".to_string(), |l| l.to_string());
                    let _ = writeln!(
                        out,
                        "{:<22} {:>4} {:<13} {:>6} {:>7} {:>10} {:>10} {:>10} {:>8} {:<7} {:>10}",
                        addr,
                        s.id,
                        s.role.to_string(),
                        s.term,
                        leader,
                        s.last_log_index,
                        s.commit_index,
                        s.applied_index,
                        s.open_sessions,
                        s.storage.backend,
                        s.storage.data_syncs + s.storage.metadata_syncs
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "{addr:<22} no status: {e}");
                }
            }
        }
    }

    if reachable == 0 {
        return fail("no member of the cluster answered");
    }
    ExitCode::SUCCESS
}

#[derive(clap::Subcommand, Debug)]
pub enum LogCommand {
    /// Check every segment of a log directory; exit 0 if healthy or only the tail is torn.
    Verify {
        /// The server's --data-dir.
        dir: PathBuf,
    },
    /// Print entries of a log directory.
    Dump {
        dir: PathBuf,
        /// First index to print (default: the first in the log).
        #[arg(long)]
        from: Option<u64>,
        /// Maximum number of entries to print.
        #[arg(long, default_value_t = 100)]
        count: u64,
    },
}

pub fn log(command: LogCommand) -> ExitCode {
    init_tracing("warn");
    let mut out = std::io::stdout().lock();
    match command {
        LogCommand::Verify { dir } => match ringraft_storage::tool::verify(&dir, &mut out) {
            Ok(outcome) if outcome.opens() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => fail(e),
        },
        LogCommand::Dump { dir, from, count } => {
            match ringraft_storage::tool::dump(&dir, from, Some(count), &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Members of the cluster as HOST:PORT,HOST:PORT,...; any member will do.
    #[arg(long, value_delimiter = ',', required = true)]
    pub cluster: Vec<String>,
    /// Output directory for summary.json, the .hgrm and .hlog files, timeseries.csv and
    /// history.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Executor threads of the load generator (0: one per core, at most one per session).
    #[arg(long, default_value_t = 0)]
    pub executors: usize,
    /// Do not draw the live progress line.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub workload: ringraft_loadgen::WorkloadArgs,
}

pub fn load(args: LoadArgs) -> ExitCode {
    init_tracing("warn");
    let config = ringraft_loadgen::LoadConfig {
        cluster: args.cluster,
        workload: args.workload,
        out_dir: args.out.clone(),
        progress: !args.no_progress,
        executors: args.executors,
    };
    let control = ringraft_loadgen::RunControl::new();
    match ringraft_loadgen::run(&config, &control) {
        Ok(report) => {
            print_load_report(&report);
            println!("results written to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn print_load_report(report: &ringraft_loadgen::RunReport) {
    println!(
        "seed {}  measured {:.1} s  throughput {:.0} ops/s",
        report.seed,
        report.measured.as_secs_f64(),
        report.throughput_ops_per_s
    );
    for (name, op) in [("add", &report.add), ("query", &report.query)] {
        let c = &op.counts;
        let l = &op.latency;
        println!(
            "{name:<6} sent {} ok {} failed {} indeterminate {}  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
            c.sent, c.ok, c.failed, c.indeterminate, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
    }
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// A Copycat server DEBUG log.
    pub log: PathBuf,
    /// Print the analysis as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run the log's workload and failover on a local ringraft cluster and compare.
    #[arg(long)]
    pub run: bool,
    /// With --run: multiply the log's request rate (and divide its offsets) by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// With --run: any `ringraft bench` flag; it overrides what the log implies.
    #[command(flatten)]
    pub bench: ringraft::harness::BenchArgs,
}

pub fn replay(args: ReplayArgs) -> ExitCode {
    init_tracing("warn");
    let analysis = match ringraft::replay::analyze_file(&args.log) {
        Ok(analysis) => analysis,
        Err(e) => return fail(e),
    };
    if args.run {
        return match ringraft::replay::run_replay(&analysis, &args.log, args.speed, args.bench) {
            Ok(code) => code,
            Err(e) => fail(e),
        };
    }
    if args.json {
        match serde_json::to_string_pretty(&analysis) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(format!("cannot encode the analysis as JSON: {e}")),
        }
    } else {
        print!("{}", analysis.render_text());
    }
    ExitCode::SUCCESS
}

pub fn bench(args: ringraft::harness::BenchArgs) -> ExitCode {
    init_tracing("warn");
    ringraft::harness::main(args)
}

#[derive(clap::Args, Debug)]
pub struct DiskProbeArgs {
    /// Directory on the disk to measure, where the servers' --data-dir would be. It must exist.
    /// The probe writes up to about 1 GiB there and removes it again.
    pub dir: PathBuf,
    /// Time limit of each of the two measurements, like 3s or 500ms.
    #[arg(long, default_value = "3s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn disk_probe(args: DiskProbeArgs) -> ExitCode {
    init_tracing("warn");
    let config = ringraft_storage::probe::ProbeConfig {
        duration: args.duration,
        ..ringraft_storage::probe::ProbeConfig::default()
    };
    let report = match ringraft_storage::probe::probe(&args.dir, &config) {
        Ok(report) => report,
        Err(e) => return fail(e),
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(format!("cannot encode the probe report as JSON: {e}")),
        }
    } else {
        print!("{}", report.render_text());
    }
    ExitCode::SUCCESS
}

/// Parses a duration such as 3s or 500ms and rejects zero.
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = ringraft::harness::faults::parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!(
            "'{text}' is zero; give a positive duration such as 3s"
        ));
    }
    Ok(duration)
}

/// Accepts HOST:PORT with a port number, so that a typo fails before any member is asked.
fn parse_host_port(text: &str) -> Result<String, String> {
    let valid = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid {
        return Err(format!(
            "'{text}' is not HOST:PORT; give an address such as 127.0.0.1:7401"
        ));
    }
    Ok(text.to_string())
}
