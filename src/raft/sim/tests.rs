//! Seeded simulations of 3- and 5-node clusters driving the real consensus core under
//! partitions, pauses, crashes with restarts, message loss, duplication and reordering.
//!
//! The normal test run covers a fixed set of seeds. `RINGRAFT_SIM_SEEDS=N` runs N seeds per
//! cluster size instead (for long runs, preferably with `--release`), and
//! `RINGRAFT_SIM_SEED=S` replays one seed with tracing output (`RUST_LOG=debug` for detail).

use super::workload::{self, WorkloadConfig};

const DEFAULT_SEEDS: u64 = 40;

fn seeds() -> std::ops::Range<u64> {
    let count = std::env::var("RINGRAFT_SIM_SEEDS")
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("RINGRAFT_SIM_SEEDS={value:?} is not a number"))
        })
        .unwrap_or(DEFAULT_SEEDS);
    0..count
}

fn run_seeds(nodes: usize) {
    let config = WorkloadConfig::new(nodes);
    let mut acknowledged = 0;
    for seed in seeds() {
        let seed = seed + 1000 * nodes as u64;
        let outcome = std::panic::catch_unwind(|| workload::run(seed, &config));
        match outcome {
            Ok(report) => {
                assert!(
                    report.committed_entries > 0 && report.terms_with_leader > 0,
                    "seed {seed}: the cluster never committed anything: {report:?}"
                );
                acknowledged += report.acknowledged_commands;
            }
            Err(panic) => {
                eprintln!(
                    "simulation failed with {nodes} nodes, seed {seed}; replay with: \
                     RINGRAFT_SIM_SEED={seed} RINGRAFT_SIM_NODES={nodes} cargo test --lib raft::sim::tests::replay_one_seed -- --nocapture"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    assert!(acknowledged > 0, "no command was acknowledged in any seed");
}

#[test]
fn three_node_seeds() {
    run_seeds(3);
}

#[test]
fn five_node_seeds() {
    run_seeds(5);
}

/// Replays `RINGRAFT_SIM_SEED` with logs; does nothing when it is unset.
#[test]
fn replay_one_seed() {
    let Ok(seed) = std::env::var("RINGRAFT_SIM_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("RINGRAFT_SIM_SEED must be a number");
    let nodes = std::env::var("RINGRAFT_SIM_NODES").ok().map_or(3, |value| {
        value.parse().expect("RINGRAFT_SIM_NODES must be a number")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
    let report = workload::run(seed, &WorkloadConfig::new(nodes));
    println!("seed {seed}: {report:?}");
}
