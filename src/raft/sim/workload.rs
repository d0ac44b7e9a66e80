//! The random workload of the simulation: clients with sessions issuing commands, keep-alives
//! and queries with retries, against a cluster suffering partitions, pauses, crashes, message
//! loss, duplication and reordering.
//!
//! Clients follow the rules of a real client. Each has one request outstanding at a time. A
//! command is retried with the same (session, sequence) after a timeout or an `OutcomeUnknown`,
//! at the leader named in a reply or else at the next node. If its session is gone, the
//! command's outcome is unknown and the client registers a new session. Every command adds a fresh id under the
//! client's tag, so the final state shows any command applied twice.
//!
//! Checks besides the [`Checker`](super::checker::Checker) ones: every acknowledged command is
//! applied exactly once on every node and no id is applied twice; a query observes every
//! command its client had acknowledged before sending it; at the end the healed cluster elects
//! a leader and every node applies the same log.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use ringraft_protocol::{
    ClientError, ClientRequest, ClientResponse, Command, Consistency, LogIndex, NodeId, Query,
    QueryResult, SessionId,
};

use super::{Cluster, NetworkConfig, Reply};
use crate::raft::ClientRef;

/// Shape of one simulation run.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub nodes: usize,
    pub clients: usize,
    /// Simulated time with faults, in milliseconds.
    pub duration_ms: u64,
    /// Quiet time after healing every fault, in which the cluster must converge.
    pub settle_ms: u64,
    pub network: NetworkConfig,
    /// Mean time between fault injections, in milliseconds.
    pub mean_fault_interval_ms: u64,
}

impl WorkloadConfig {
    pub fn new(nodes: usize) -> Self {
        WorkloadConfig {
            nodes,
            clients: 3,
            duration_ms: 8_000,
            settle_ms: 4_000,
            network: NetworkConfig {
                min_delay_ms: 1,
                max_delay_ms: 15,
                loss: 0.02,
                duplication: 0.02,
                io_delay_ms: 2,
            },
            mean_fault_interval_ms: 700,
        }
    }
}

/// Counts from one run, so that tests can assert the run was not vacuous.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub acknowledged_commands: usize,
    pub queries_checked: usize,
    pub committed_entries: usize,
    pub terms_with_leader: usize,
    pub faults: usize,
}

const REQUEST_TIMEOUT_MS: u64 = 400;
const KEEPALIVE_INTERVAL_MS: u64 = 1_000;

#[derive(Debug)]
struct Outstanding {
    request_id: u64,
    request: ClientRequest,
    sent_ms: u64,
    /// Ids of this client acknowledged before the request was sent (for queries).
    acked_before: usize,
}

#[derive(Debug)]
struct SimClient {
    conn: u64,
    tag: String,
    target: NodeId,
    session: Option<SessionId>,
    next_sequence: u64,
    /// Highest sequence whose reply arrived (released through keep-alives).
    acked_sequence: u64,
    last_index: LogIndex,
    next_request_id: u64,
    outstanding: Option<Outstanding>,
    retry_at_ms: u64,
    last_keepalive_ms: u64,
    /// The command being sent (sequence, id) until it is acknowledged or abandoned.
    command: Option<(u64, u64)>,
    next_id: u64,
    acked_ids: Vec<u64>,
    /// Ids sent whose outcome is unknown because their session closed.
    abandoned_ids: Vec<u64>,
}

/// Runs one seeded simulation and panics, naming the violated property, on the first failure.
pub fn run(seed: u64, config: &WorkloadConfig) -> SimReport {
    let mut cluster = Cluster::new(config.nodes, seed, config.network.clone(), |raft| {
        raft.max_append_entries = 8;
        raft.max_inflight_appends = 2;
        raft.default_session_timeout = std::time::Duration::from_millis(5_000);
        raft.max_pending_commands = 64;
    });
    let ids = cluster.ids();
    let mut clients: Vec<SimClient> = (0..config.clients)
        .map(|k| SimClient {
            conn: k as u64 + 1,
            tag: format!("t{k}"),
            target: ids[k % ids.len()],
            session: None,
            next_sequence: 1,
            acked_sequence: 0,
            last_index: 0,
            next_request_id: 1,
            outstanding: None,
            retry_at_ms: 0,
            last_keepalive_ms: cluster.now_ms(),
            command: None,
            next_id: 1,
            acked_ids: Vec::new(),
            abandoned_ids: Vec::new(),
        })
        .collect();
    let mut report = SimReport::default();

    let start = cluster.now_ms();
    let end = start + config.duration_ms;
    let mut next_fault = start + 500;
    let mut heal_at: Option<u64> = None;
    let mut crashed: BTreeSet<NodeId> = BTreeSet::new();
    while cluster.now_ms() < end {
        let now = cluster.now_ms();
        if heal_at.is_some_and(|at| now >= at) {
            heal_at = None;
            cluster.heal();
            for id in std::mem::take(&mut crashed) {
                cluster.restart(id);
            }
        }
        if now >= next_fault && heal_at.is_none() {
            inject_fault(&mut cluster, &mut crashed, &mut report);
            heal_at = Some(now + cluster.rng().random_range(200..2_000));
            let interval = config.mean_fault_interval_ms;
            next_fault = now + cluster.rng().random_range(interval / 2..interval * 3 / 2);
        }

        for client in &mut clients {
            drive_client(&mut cluster, client, &ids, &mut report, true);
        }
        cluster.step(now + 5);
    }

    // Heal everything and let the cluster converge while clients finish.
    cluster.heal();
    for id in crashed {
        cluster.restart(id);
    }
    let settle_end = cluster.now_ms() + config.settle_ms;
    while cluster.now_ms() < settle_end {
        let now = cluster.now_ms();
        for client in &mut clients {
            drive_client(&mut cluster, client, &ids, &mut report, false);
        }
        cluster.step(now + 5);
    }
    cluster.network.loss = 0.0;
    let converged = cluster.run_until(10_000, |cluster| {
        let Some(leader) = cluster.leader() else {
            return false;
        };
        let commit = cluster.node(leader).expect("leader runs").commit_index();
        let last = cluster
            .node(leader)
            .expect("leader runs")
            .log()
            .last_index();
        commit == last
            && cluster.ids().iter().all(|&id| {
                cluster
                    .node(id)
                    .is_some_and(|node| node.state_machine().applied_index() == commit)
            })
    });
    assert!(
        converged,
        "liveness: the healed cluster did not elect a leader and apply the same log within 10 s"
    );

    check_exactly_once(&cluster, &clients);
    report.committed_entries = cluster.checker.committed().len();
    report.terms_with_leader = cluster.checker.leaders().len();
    report
}

fn inject_fault(cluster: &mut Cluster, crashed: &mut BTreeSet<NodeId>, report: &mut SimReport) {
    let ids = cluster.ids();
    let victim = ids[cluster.rng().random_range(0..ids.len())];
    let victim = if cluster.rng().random_bool(0.5) {
        cluster.leader().unwrap_or(victim)
    } else {
        victim
    };
    report.faults += 1;
    match cluster.rng().random_range(0..5) {
        0 => cluster.isolate(victim),
        1 => {
            let mut group: Vec<NodeId> = ids
                .iter()
                .copied()
                .filter(|_| cluster.rng().random_bool(0.5))
                .collect();
            if group.is_empty() {
                group.push(victim);
            }
            cluster.partition(&group);
        }
        2 => {
            let duration = cluster.rng().random_range(100..2_500);
            cluster.pause(victim, duration);
        }
        _ => {
            cluster.crash(victim);
            crashed.insert(victim);
        }
    }
}

fn drive_client(
    cluster: &mut Cluster,
    client: &mut SimClient,
    ids: &[NodeId],
    report: &mut SimReport,
    issue_new: bool,
) {
    let now = cluster.now_ms();
    for (reply_to, reply) in cluster.take_replies(client.conn) {
        let matches = client
            .outstanding
            .as_ref()
            .is_some_and(|outstanding| outstanding.request_id == reply_to.request_id);
        if matches {
            let outstanding = client.outstanding.take().expect("matched");
            handle_reply(client, outstanding, reply, ids, report, now);
        }
    }

    if let Some(outstanding) = &client.outstanding {
        if now.saturating_sub(outstanding.sent_ms) >= REQUEST_TIMEOUT_MS {
            // Timed out: retry the same request at the next node.
            let outstanding = client.outstanding.take().expect("checked");
            client.target = next_node(ids, client.target);
            resend(
                cluster,
                client,
                outstanding.request,
                outstanding.acked_before,
            );
        }
        return;
    }
    if now < client.retry_at_ms {
        return;
    }

    let request = match client.session {
        None => {
            if let Some((_, id)) = client.command.take() {
                client.abandoned_ids.push(id);
            }
            ClientRequest::Register {
                client_id: client.conn as u128,
                timeout_ms: None,
            }
        }
        Some(session) if now.saturating_sub(client.last_keepalive_ms) >= KEEPALIVE_INTERVAL_MS => {
            client.last_keepalive_ms = now;
            ClientRequest::KeepAlive {
                session,
                command_sequence: client.acked_sequence,
                event_index: 0,
            }
        }
        Some(session) => {
            if client.command.is_none() {
                if !issue_new {
                    return;
                }
                if cluster.rng().random_bool(0.2) {
                    let consistency = match cluster.rng().random_range(0..3) {
                        0 => Consistency::Linearizable,
                        1 => Consistency::Lease,
                        _ => Consistency::Sequential,
                    };
                    let request = ClientRequest::Query {
                        session,
                        sequence: client.acked_sequence,
                        index: client.last_index,
                        consistency,
                        query: Query::Tag {
                            tag: client.tag.clone(),
                        },
                    };
                    let acked_before = client.acked_ids.len();
                    resend(cluster, client, request, acked_before);
                    return;
                }
                let id = (client.conn << 40) | client.next_id;
                client.next_id += 1;
                client.command = Some((client.next_sequence, id));
                client.next_sequence += 1;
            }
            let (sequence, id) = client.command.expect("set above");
            ClientRequest::Command {
                session,
                sequence,
                command: Command::Add {
                    id,
                    tag: client.tag.clone(),
                    payload: vec![0; 16],
                },
            }
        }
    };
    let acked_before = client.acked_ids.len();
    resend(cluster, client, request, acked_before);
}

fn resend(
    cluster: &mut Cluster,
    client: &mut SimClient,
    request: ClientRequest,
    acked_before: usize,
) {
    let request_id = client.next_request_id;
    client.next_request_id += 1;
    let now = cluster.now_ms();
    cluster.send_client(
        client.target,
        ClientRef {
            conn: client.conn,
            request_id,
        },
        request.clone(),
    );
    client.outstanding = Some(Outstanding {
        request_id,
        request,
        sent_ms: now,
        acked_before,
    });
}

fn next_node(ids: &[NodeId], current: NodeId) -> NodeId {
    let position = ids.iter().position(|&id| id == current).unwrap_or(0);
    ids[(position + 1) % ids.len()]
}

fn handle_reply(
    client: &mut SimClient,
    outstanding: Outstanding,
    reply: Reply,
    ids: &[NodeId],
    report: &mut SimReport,
    now: u64,
) {
    match reply {
        Ok(ClientResponse::Register { session, .. }) => {
            client.session = Some(session);
            client.next_sequence = 1;
            client.acked_sequence = 0;
            client.last_keepalive_ms = now;
            client.last_index = client.last_index.max(session);
        }
        Ok(ClientResponse::Command { index, .. }) => {
            let ClientRequest::Command {
                sequence,
                command: Command::Add { id, .. },
                ..
            } = outstanding.request
            else {
                panic!("command reply to a {:?}", outstanding.request);
            };
            assert_eq!(
                client.command,
                Some((sequence, id)),
                "reply to the current command"
            );
            client.command = None;
            client.acked_ids.push(id);
            client.acked_sequence = sequence;
            client.last_index = client.last_index.max(index);
            report.acknowledged_commands += 1;
        }
        Ok(ClientResponse::Query {
            index,
            result: QueryResult::Ids(found),
        }) => {
            for id in &client.acked_ids[..outstanding.acked_before] {
                assert!(
                    found.contains(id),
                    "query {:?} at index {index} misses id {id:#x}, acknowledged before the query was sent",
                    outstanding.request
                );
            }
            client.last_index = client.last_index.max(index);
            report.queries_checked += 1;
        }
        Ok(ClientResponse::KeepAlive { .. }) | Ok(ClientResponse::Unregister) => {}
        Ok(other) => panic!("unexpected reply {other:?} to {:?}", outstanding.request),
        Err(error) => match error.error {
            ClientError::NotLeader | ClientError::NoLeader => {
                client.target = match error.leader {
                    Some(leader) => leader.id,
                    None => next_node(ids, client.target),
                };
                client.retry_at_ms = now + 20;
            }
            ClientError::OutcomeUnknown | ClientError::Unavailable(_) => {
                client.retry_at_ms = now + 20;
            }
            ClientError::UnknownSession { .. } | ClientError::SessionExpired { .. } => {
                client.session = None;
            }
            other => panic!(
                "client {} got {other:?} for {:?}",
                client.conn, outstanding.request
            ),
        },
    }
}

fn check_exactly_once(cluster: &Cluster, clients: &[SimClient]) {
    for id in cluster.ids() {
        let node = cluster.node(id).expect("every node runs at the end");
        for client in clients {
            let QueryResult::Ids(found) = node.state_machine().query(&Query::Tag {
                tag: client.tag.clone(),
            });
            let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
            for value in &found {
                *counts.entry(*value).or_default() += 1;
            }
            for (value, count) in &counts {
                assert_eq!(
                    *count, 1,
                    "exactly-once violated: node {id} applied id {value:#x} of client {} {count} times",
                    client.conn
                );
            }
            for acked in &client.acked_ids {
                assert!(
                    counts.contains_key(acked),
                    "acknowledged command lost: node {id} never applied id {acked:#x} of client {}",
                    client.conn
                );
            }
        }
    }
}
