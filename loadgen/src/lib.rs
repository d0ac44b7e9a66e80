//! ringraft-loadgen: a client of the ringraft session protocol and a load generator that
//! replays the interleaved Add/Query session workload of a Copycat deployment.
//!
//! [`run`] spreads the sessions over glommio executors, drives them in a closed loop (each
//! session sends when its replies come back) or an open loop (a fixed schedule of intended
//! send times, latency measured from the intended time so stalls are not hidden), records
//! HDR histograms per executor and merges them, and writes the output files listed in
//! [`output`]. [`fetch_status`] and [`read_tags`] are blocking helpers for tooling.

pub mod args;
mod connection;
pub mod control;
pub mod error;
pub mod history;
pub mod output;
mod progress;
pub mod recorder;
mod run;
mod session;
pub mod stats;
mod status;
pub mod workload;

pub use args::{Mix, TagDistribution, WorkloadArgs};
pub use connection::ConnectError;
pub use control::RunControl;
pub use error::LoadError;
pub use output::{LatencySummary, OpSummary, RunReport, SecondRow};
pub use run::{run, LoadConfig};
pub use status::{fetch_status, read_tags, BlockingClient};
