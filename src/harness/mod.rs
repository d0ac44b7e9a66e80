//! `ringraft bench`: one command that starts a local cluster (or uses an existing one), drives
//! it with the load generator, injects faults on a schedule, checks the recorded history and
//! writes a result directory.
//!
//! The parts, in the order a run uses them:
//! - [`args`] and [`scenario`]: flags and TOML scenario files, merged and validated before any
//!   process starts; [`faults`]: the `KIND:TARGET@START[+DURATION]` fault specs.
//! - [`cluster`]: server processes on 127.0.0.1 that never outlive the harness; [`relay`]:
//!   TCP relays per link, used only when the schedule has a partition.
//! - [`schedule`]: injects and ends faults on the harness's main thread while the load
//!   generator runs on another.
//! - [`checker`]: lost writes, duplicate applies, stale reads; [`metrics`]: failover figures
//!   per fault; [`report`] and [`plot`]: `summary.json`, `summary.md`, `latency.svg`.
//!
//! Entry point: [`main`] (prints errors, returns the exit code) or [`run`].

pub mod args;
pub mod checker;
pub mod cluster;
mod compare;
pub mod faults;
pub mod metrics;
pub mod plot;
pub mod relay;
pub mod report;
pub mod resources;
mod run;
pub mod scenario;
pub mod schedule;

pub use args::BenchArgs;
pub use run::{main, run, BenchError, EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_INTERRUPTED};
