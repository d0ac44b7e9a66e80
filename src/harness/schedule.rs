//! Fault scheduler: injects and ends the faults of the schedule at their times.
//!
//! It runs on the harness's main thread, the thread that started the servers, because a
//! restarted server's `PR_SET_PDEATHSIG` is tied to the thread that spawns it.

use std::time::{Duration, Instant};

use ringraft_protocol::NodeId;

use super::cluster::{LocalCluster, NodeState};
use super::faults::{FaultKind, FaultSpec, FaultTarget};
use super::metrics::{FaultRecord, StatusPoller};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// End fault `i` (sorted before injections at the same time, so back-to-back faults on
    /// the same node do not overlap).
    End(usize),
    Inject(usize),
}

/// The schedule and what happened to each fault.
pub struct FaultScheduler {
    /// (time after the load start, step), sorted by time.
    steps: Vec<(Duration, Step)>,
    next: usize,
    pub records: Vec<FaultRecord>,
}

impl FaultScheduler {
    pub fn new(faults: &[FaultSpec]) -> FaultScheduler {
        let mut steps = Vec::new();
        for (i, fault) in faults.iter().enumerate() {
            steps.push((fault.start, Step::Inject(i)));
            if let Some(end) = fault.end() {
                steps.push((end, Step::End(i)));
            }
        }
        steps.sort();
        let records = faults
            .iter()
            .map(|spec| FaultRecord {
                spec: spec.clone(),
                injected_ns: spec.start.as_nanos() as u64,
                ended_ns: None,
                nodes: Vec::new(),
                leader: None,
                term: None,
                problem: None,
            })
            .collect();
        FaultScheduler {
            steps,
            next: 0,
            records,
        }
    }

    /// Time of the next step after the load start, if any is left.
    pub fn next_due(&self) -> Option<Duration> {
        self.steps.get(self.next).map(|(at, _)| *at)
    }

    /// Runs every step that is due at `elapsed` after the load start.
    pub fn run_due(
        &mut self,
        elapsed: Duration,
        cluster: &mut LocalCluster,
        poller: &StatusPoller,
    ) {
        while let Some(&(at, step)) = self.steps.get(self.next) {
            if at > elapsed {
                break;
            }
            self.next += 1;
            let now_ns = elapsed.as_nanos() as u64;
            match step {
                Step::Inject(i) => self.inject(i, now_ns, cluster, poller),
                Step::End(i) => self.end(i, now_ns, cluster),
            }
        }
    }

    fn inject(&mut self, i: usize, now_ns: u64, cluster: &mut LocalCluster, poller: &StatusPoller) {
        let record = &mut self.records[i];
        let leader = poller.current_leader();
        record.injected_ns = now_ns;
        record.leader = leader.map(|(node, _)| node);
        record.term = leader.map(|(_, term)| term).or_else(|| poller.max_term());

        let nodes = match resolve_target(record.spec.target, leader.map(|(node, _)| node), cluster)
        {
            Ok(nodes) => nodes,
            Err(reason) => {
                tracing::warn!(fault = %record.spec, %reason, "fault not injected");
                record.problem = Some(reason);
                return;
            }
        };
        tracing::info!(fault = %record.spec, ?nodes, leader = ?record.leader, "injecting fault");

        for &node in &nodes {
            let result = match record.spec.kind {
                FaultKind::Pause => cluster.pause(node),
                FaultKind::Kill => cluster.kill(node),
                FaultKind::Partition => match cluster.relays() {
                    Some(relays) => {
                        relays.isolate(node);
                        Ok(())
                    }
                    None => {
                        record.problem =
                            Some("no relays were started, so no partition is possible".into());
                        Ok(())
                    }
                },
            };
            if let Err(error) = result {
                tracing::error!(fault = %record.spec, node, %error, "fault injection failed");
                record.problem = Some(error.to_string());
            }
        }
        record.nodes = nodes;
    }

    fn end(&mut self, i: usize, now_ns: u64, cluster: &mut LocalCluster) {
        let record = &mut self.records[i];
        if record.nodes.is_empty() || record.ended_ns.is_some() {
            return;
        }
        record.ended_ns = Some(now_ns);
        tracing::info!(fault = %record.spec, nodes = ?record.nodes, "ending fault");
        for &node in &record.nodes {
            let result = match record.spec.kind {
                FaultKind::Pause => cluster.resume(node),
                FaultKind::Kill => cluster.restart(node),
                FaultKind::Partition => {
                    if let Some(relays) = cluster.relays() {
                        relays.heal(node);
                    }
                    Ok(())
                }
            };
            if let Err(error) = result {
                tracing::error!(fault = %record.spec, node, %error, "ending the fault failed");
                record.problem = Some(error.to_string());
            }
        }
    }

    /// Ends the faults still in effect, so the final state can be read: resumes paused nodes
    /// and heals partitions. A node killed without a duration stays down, as its spec requests.
    pub fn end_all(&mut self, elapsed: Duration, cluster: &mut LocalCluster) {
        let now_ns = elapsed.as_nanos() as u64;
        for i in 0..self.records.len() {
            let record = &self.records[i];
            let open = record.ended_ns.is_none() && !record.nodes.is_empty();
            let keep_down = record.spec.kind == FaultKind::Kill && record.spec.duration.is_none();
            if open && !keep_down {
                self.end(i, now_ns, cluster);
            }
        }
    }
}

/// Resolves a target to the nodes it names at this moment.
fn resolve_target(
    target: FaultTarget,
    leader: Option<NodeId>,
    cluster: &LocalCluster,
) -> Result<Vec<NodeId>, String> {
    let running: Vec<NodeId> = cluster
        .nodes()
        .filter(|node| node.state() == NodeState::Running)
        .map(|node| node.id)
        .collect();
    match target {
        FaultTarget::Leader => leader
            .map(|node| vec![node])
            .ok_or_else(|| "no leader was known when the fault was due".to_string()),
        FaultTarget::Follower => running
            .iter()
            .copied()
            .find(|&node| Some(node) != leader)
            .map(|node| vec![node])
            .ok_or_else(|| "no running follower when the fault was due".to_string()),
        FaultTarget::Node(id) => {
            if cluster.node(id).is_some() {
                Ok(vec![id])
            } else {
                Err(format!("node{id} does not exist"))
            }
        }
        FaultTarget::All => Ok(cluster.ids()),
    }
}

/// Sleeps until `deadline` or for at most `max`, whichever is sooner.
pub fn sleep_until(deadline: Option<Instant>, max: Duration) {
    let now = Instant::now();
    let wait = deadline
        .map(|deadline| deadline.saturating_duration_since(now))
        .unwrap_or(max)
        .min(max);
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}
