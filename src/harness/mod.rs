//! `ringraft bench`: run a cluster under load, inject faults, check the history, write results.

pub mod args;
pub mod checker;
pub mod cluster;
pub mod faults;
pub mod relay;
pub mod scenario;

pub use args::BenchArgs;
