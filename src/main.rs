//! The `ringraft` command: server, load generator, benchmark harness and tools.
//!
//! `ringraft bench` with no arguments is the first thing to run. It starts a three-node
//! cluster on 127.0.0.1 and replays the seed Copycat workload with a 2.5 s leader pause in the
//! middle. Then it checks the history and writes a result directory under `results/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser, Debug)]
#[command(
    name = "ringraft",
    version,
    about = "Thread-per-core Raft server, Copycat session load generator and failover benchmark harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a cluster under load, inject faults, check the history and write a result directory.
    Bench(Box<ringraft::harness::BenchArgs>),
    /// Run one server of a cluster.
    Server(ringraft::server::ServerArgs),
    /// Drive an existing cluster with the session workload and record latencies.
    Load(Box<cli::LoadArgs>),
    /// Show each member's role, term, leader, log, commit and applied index, open sessions,
    /// storage backend, and the syncs (fdatasync, msync and fsync) it issued since it started.
    Status(cli::StatusArgs),
    /// Verify or dump a log directory.
    #[command(subcommand)]
    Log(cli::LogCommand),
    /// Analyse a Copycat server log (and optionally run its workload and failover on ringraft).
    Replay(Box<cli::ReplayArgs>),
    /// Measure a directory's disk: fdatasync rate for small writes and O_DIRECT bandwidth.
    DiskProbe(cli::DiskProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => cli::bench(*args),
        Command::Server(args) => cli::server(args),
        Command::Load(args) => cli::load(*args),
        Command::Status(args) => cli::status(args),
        Command::Log(command) => cli::log(command),
        Command::Replay(args) => cli::replay(*args),
        Command::DiskProbe(args) => cli::disk_probe(args),
    }
}
