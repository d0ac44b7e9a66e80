//! The server runtime: glommio, TCP and storage around the sans-IO consensus core.
//!
//! Design: thread-per-core. A [`Shard`](shard) is one Raft group with its own log directory,
//! listen address, peer links and core [`Node`](crate::raft::Node), owned by one glommio
//! executor. Nothing is shared between executors. This version runs one shard per process
//! (`ringraft server` starts a single executor), but no part of the runtime assumes there is
//! only one: the clock, the network and the storage handles all live inside the shard.
//!
//! Inside a shard, every connection task and the ticker push [`Event`](shard::Event)s into one
//! channel. A single driver task feeds them to the core in batches and then carries out the
//! core's `Ready` in the order the core requires: the hard state is made durable first, then a
//! leader's AppendRequests go out, then log truncation and appends are made durable (one sync
//! for the whole batch: group commit), then every other message is sent. While a batch is
//! being synced, new events queue up and form the next batch.
//!
//! Not done yet: several shards per process (one group per core), CPU pinning beyond the
//! single executor, snapshots (the core keeps its log in memory), membership changes.

mod args;
mod clock;
mod net;
mod persist;
mod shard;

pub use args::ServerArgs;
pub use clock::Clock;

use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info};

/// Errors that stop a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("storage error in {dir}: {source}")]
    Storage {
        dir: String,
        #[source]
        source: ringraft_storage::StorageError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("log entry {index} in {dir} cannot be decoded: {reason}")]
    CorruptEntry {
        dir: String,
        index: u64,
        reason: String,
    },
    #[error("executor failed: {0}")]
    Executor(String),
}

/// Run a server until it is stopped by a signal or a fatal error.
pub fn run(args: ServerArgs) -> Result<(), ServerError> {
    let config = args.validate()?;
    install_signal_handlers();

    let placement = match config.pin_cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let name = format!("ringraft-node-{}", config.id);
    // NOTE: glommio 0.9 can park an executor that still has a runnable task queue when its
    // preemption flag is already set (fixed upstream after 0.9). It hung a storage test under
    // load; no server run has shown it, and the default preemption timer is kept.
    let handle = LocalExecutorBuilder::new(placement)
        .name(&name)
        // Parking after a short spin keeps the tail latency of a lone request low without
        // burning a core that other nodes of a local cluster need.
        .spin_before_park(Duration::from_micros(50))
        .spawn(move || async move { shard::run_shard(config).await })
        .map_err(|e| ServerError::Executor(e.to_string()))?;

    match handle.join() {
        Ok(result) => result,
        Err(e) => Err(ServerError::Executor(format!("{e:?}"))),
    }
}

/// SIGTERM and SIGINT end the process after a log line. Nothing needs flushing: under the
/// `batch` policy every acknowledged entry is already durable, and under `interval`/`never`
/// the operator chose to lose the unsynced tail on a crash anyway.
fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};

    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers; SIGTERM will stop the server without a log line");
            return;
        }
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            info!(signal, "stopping on signal");
            std::process::exit(0);
        }
    });
}
