//! Errors of the load generator library.

use std::path::PathBuf;
use std::time::Duration;

use ringraft_protocol::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load configuration: {0}")]
    Config(String),
    #[error("{operation} {path} failed: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the interval log {path} failed: {reason}")]
    IntervalLog { path: PathBuf, reason: String },
    #[error("load executor {executor} failed: {reason}")]
    Executor { executor: usize, reason: String },
    #[error("connecting to {addr} failed: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr} rejected the handshake: {reason} (check --cluster-id)")]
    Rejected { addr: String, reason: String },
    #[error("no reply from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("protocol error from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("{addr} returned an error: {error}")]
    Request { addr: String, error: ClientError },
    #[error("no leader found in {cluster:?} within {timeout:?}; last error: {last_error}")]
    NoLeader {
        cluster: Vec<String>,
        timeout: Duration,
        last_error: String,
    },
}
