//! Running a load test: executors, merging, and the report.
//!
//! Sessions are spread round-robin over glommio `LocalExecutor`s, one thread each, unpinned
//! unless `--pin-executors` is given (on a shared machine several processes compete for the
//! same cores, and a pinned executor cannot move away from a busy one). Each executor records
//! into its own histograms; every second it sends its finished per-second intervals to the
//! calling thread, which drives the progress line. At the end the executors return their
//! totals and histories, and the calling thread adds the histograms together and writes the
//! output files.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use glommio::{LocalExecutorBuilder, Placement};
use tracing::{info, warn};

use crate::args::WorkloadArgs;
use crate::connection::{resolve, ClusterView};
use crate::control::RunControl;
use crate::error::LoadError;
use crate::output;
use crate::progress::Progress;
use crate::recorder::OpCounts;
use crate::session::{SessionDriver, Shared};
use crate::stats::{ExecutorResult, ExecutorStats, IntervalStats, RunTimes};

/// Time given to the sessions to connect and register before the first request is due.
const STARTUP_GRACE: Duration = Duration::from_millis(200);

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Member addresses (host:port); any member will do, the client finds the leader.
    pub cluster: Vec<String>,
    pub workload: WorkloadArgs,
    /// Directory for summary.json, add.hgrm, query.hgrm, latency.hlog, timeseries.csv and
    /// history.jsonl; created if missing.
    pub out_dir: PathBuf,
    /// Show the live progress line (only drawn when stdout is a terminal).
    pub progress: bool,
    /// Executor threads; 0 picks one per available core, and never more than sessions.
    pub executors: usize,
}

/// Messages from executors to the calling thread.
enum Message {
    Interval {
        second: u64,
        stats: Box<IntervalStats>,
    },
    Done {
        executor: usize,
        result: Box<ExecutorResult>,
    },
}

/// Merged data of a finished run, before it is written out.
pub(crate) struct RunData {
    pub seed: u64,
    pub executors: usize,
    pub times: RunTimes,
    pub wall_start: SystemTime,
    /// When the run actually stopped sending (the end of the duration, or an early stop).
    pub stopped_at: Instant,
    pub totals: ExecutorResult,
    pub intervals: BTreeMap<u64, IntervalStats>,
}

/// Run the load test described by `config`, blocking until it ends, and write its output
/// files. `control` can stop it early from another thread.
pub fn run(config: &LoadConfig, control: &RunControl) -> Result<crate::RunReport, LoadError> {
    let args = &config.workload;
    args.validate().map_err(LoadError::Config)?;
    if config.cluster.is_empty() {
        return Err(LoadError::Config(
            "no cluster address given: pass --cluster HOST:PORT[,HOST:PORT...]".into(),
        ));
    }
    for addr in &config.cluster {
        resolve(addr).map_err(|e| LoadError::Config(e.to_string()))?;
    }
    std::fs::create_dir_all(&config.out_dir).map_err(|source| LoadError::Io {
        operation: "create output directory",
        path: config.out_dir.clone(),
        source,
    })?;

    let seed = args.seed.unwrap_or_else(rand::random);
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let executors = match config.executors {
        0 => available,
        n => n,
    }
    .min(args.sessions as usize)
    .max(1);

    let start = Instant::now() + STARTUP_GRACE;
    let wall_start = SystemTime::now() + STARTUP_GRACE;
    let times = RunTimes {
        start,
        measure_start: start + args.warmup,
        end: start + args.warmup + args.duration,
    };
    control.set_run_start(start);
    info!(
        seed,
        executors,
        sessions = args.sessions,
        rate = ?args.rate,
        duration = ?args.duration,
        warmup = ?args.warmup,
        cluster = ?config.cluster,
        "load run starting"
    );

    let (sender, receiver) = mpsc::channel::<Message>();
    let mut handles = Vec::with_capacity(executors);
    for executor in 0..executors {
        let sessions: Vec<u32> = (0..args.sessions)
            .filter(|s| *s as usize % executors == executor)
            .collect();
        let placement = if args.pin_executors {
            Placement::Fixed(executor % available)
        } else {
            Placement::Unbound
        };
        let args = args.clone();
        let cluster = config.cluster.clone();
        let control = control.clone();
        let sender = sender.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("loadgen-{executor}"))
            .spawn(move || async move {
                run_executor(
                    executor, sessions, args, cluster, seed, times, control, sender,
                )
                .await
            })
            .map_err(|e| LoadError::Executor {
                executor,
                reason: e.to_string(),
            })?;
        handles.push(handle);
    }
    drop(sender);

    let mut progress = Progress::new(config.progress, times, control.clone());
    let mut intervals: BTreeMap<u64, IntervalStats> = BTreeMap::new();
    let mut reports_per_second: BTreeMap<u64, usize> = BTreeMap::new();
    let mut totals = ExecutorResult::default();
    let mut done = 0;
    let mut stopped_at = None;
    while done < executors {
        match receiver.recv_timeout(Duration::from_millis(250)) {
            Ok(Message::Interval { second, stats }) => {
                intervals.entry(second).or_default().add(&stats);
                let reports = reports_per_second.entry(second).or_default();
                *reports += 1;
                if *reports == executors {
                    progress.second_complete(second, &intervals[&second]);
                }
            }
            Ok(Message::Done { executor, result }) => {
                info!(
                    executor,
                    operations = result.history.len(),
                    "executor finished"
                );
                merge_result(&mut totals, *result);
                done += 1;
                stopped_at.get_or_insert_with(Instant::now);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => progress.tick(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    progress.finish();

    for (executor, handle) in handles.into_iter().enumerate() {
        handle.join().map_err(|e| LoadError::Executor {
            executor,
            reason: e.to_string(),
        })?;
    }
    if done < executors {
        return Err(LoadError::Executor {
            executor: done,
            reason: "an executor stopped without returning its results".into(),
        });
    }

    totals
        .history
        .sort_by_key(|r| (r.invoke_ns, r.session, r.sequence));
    let stopped_at = stopped_at.unwrap_or_else(Instant::now).min(times.end);
    let data = RunData {
        seed,
        executors,
        times,
        wall_start,
        stopped_at,
        totals,
        intervals,
    };
    let report = output::write_all(config, &data)?;
    for (name, counts) in [
        ("add", &data.totals.measured.add.counts),
        ("query", &data.totals.measured.query.counts),
    ] {
        if !counts.balanced() {
            warn!(
                operation = name,
                ?counts,
                "request accounting does not balance"
            );
        }
    }
    Ok(report)
}

fn merge_result(totals: &mut ExecutorResult, result: ExecutorResult) {
    totals.measured.add(&result.measured);
    for (total, part) in totals.warmup.iter_mut().zip(result.warmup.iter()) {
        total.add(part);
    }
    totals.lag.add(&result.lag);
    totals.behind.add(&result.behind);
    totals.client.add(&result.client);
    totals.history.extend(result.history);
}

#[allow(clippy::too_many_arguments)]
async fn run_executor(
    executor: usize,
    sessions: Vec<u32>,
    args: WorkloadArgs,
    cluster: Vec<String>,
    seed: u64,
    times: RunTimes,
    control: RunControl,
    sender: mpsc::Sender<Message>,
) {
    let shared = Rc::new(Shared {
        cluster: RefCell::new(ClusterView::new(cluster, executor)),
        args,
        seed,
        times,
        control,
        stats: RefCell::new(ExecutorStats::new(times)),
    });

    let mut tasks = Vec::with_capacity(sessions.len());
    for index in sessions {
        match SessionDriver::new(index, shared.clone()) {
            Ok(driver) => tasks.push(glommio::spawn_local(driver.run())),
            Err(e) => warn!(session = index, error = %e, "session not started"),
        }
    }

    // Hand finished seconds to the calling thread shortly after each second boundary.
    let flusher = {
        let shared = shared.clone();
        let sender = sender.clone();
        glommio::spawn_local(async move {
            let mut next_second = 1u64;
            loop {
                let boundary =
                    times.start + Duration::from_secs(next_second) + Duration::from_millis(5);
                glommio::timer::sleep(boundary.saturating_duration_since(Instant::now())).await;
                let finished = shared.stats.borrow_mut().take_intervals_before(next_second);
                for (second, stats) in finished {
                    let _ = sender.send(Message::Interval {
                        second,
                        stats: Box::new(stats),
                    });
                }
                next_second += 1;
            }
        })
    };

    for task in tasks {
        task.await;
    }
    drop(flusher);

    let mut stats = shared.stats.borrow_mut();
    for (second, interval) in stats.take_intervals_before(u64::MAX) {
        let _ = sender.send(Message::Interval {
            second,
            stats: Box::new(interval),
        });
    }
    let result = std::mem::take(&mut stats.result);
    let _ = sender.send(Message::Done {
        executor,
        result: Box::new(result),
    });
}

/// Sum of the counts of both operation kinds.
pub(crate) fn total_counts(a: &OpCounts, b: &OpCounts) -> OpCounts {
    let mut total = *a;
    total.add(b);
    total
}
