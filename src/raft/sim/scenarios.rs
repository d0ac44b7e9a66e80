//! Scenario tests: specific failure stories replayed on the simulated cluster, each checking the
//! outcome a client and an operator would see.

use std::time::Duration;

use ringraft_protocol::{
    ClientError, ClientRequest, ClientResponse, Command, Consistency, EntryPayload, LogIndex,
    NodeId, Query, QueryResult, Role, SessionId,
};

use super::{Cluster, NetworkConfig, Reply};
use crate::raft::{ClientRef, RaftConfig};

fn cluster(size: usize, seed: u64, configure: impl Fn(&mut RaftConfig)) -> Cluster {
    Cluster::new(size, seed, NetworkConfig::reliable(), configure)
}

fn wait_leader(cluster: &mut Cluster) -> NodeId {
    assert!(
        cluster.run_until(5_000, |c| c.leader().is_some()),
        "no leader elected within 5 s"
    );
    cluster.leader().expect("checked")
}

/// Sends `request` to `to` and runs until its reply arrives.
fn request(cluster: &mut Cluster, to: NodeId, client: ClientRef, request: ClientRequest) -> Reply {
    cluster.send_client(to, client, request);
    let mut reply = None;
    cluster.run_until(3_000, |c| {
        for (to, r) in c.take_replies(client.conn) {
            if to == client {
                reply = Some(r);
            }
        }
        reply.is_some()
    });
    reply.unwrap_or_else(|| panic!("no reply to request {client:?} within 3 s"))
}

fn register(cluster: &mut Cluster, to: NodeId, conn: u64) -> SessionId {
    let client = ClientRef {
        conn,
        request_id: 1,
    };
    let register = ClientRequest::Register {
        client_id: conn as u128,
        timeout_ms: None,
    };
    match request(cluster, to, client, register) {
        Ok(ClientResponse::Register { session, .. }) => session,
        other => panic!("register failed: {other:?}"),
    }
}

fn add(session: SessionId, sequence: u64, id: u64) -> ClientRequest {
    ClientRequest::Command {
        session,
        sequence,
        command: Command::Add {
            id,
            tag: "t".to_string(),
            payload: vec![7; 8],
        },
    }
}

fn ids_on(cluster: &Cluster, node: NodeId) -> Vec<u64> {
    let QueryResult::Ids(ids) = cluster
        .node(node)
        .expect("node runs")
        .state_machine()
        .query(&Query::Tag {
            tag: "t".to_string(),
        });
    ids
}

#[test]
fn deposed_leader_adopts_new_entry() {
    let mut cluster = cluster(3, 11, |_| {});
    let old = wait_leader(&mut cluster);
    let session = register(&mut cluster, old, 1);
    let old_term = cluster.node(old).expect("runs").term();

    // The isolated leader appends a command it can never commit.
    cluster.isolate(old);
    let index: LogIndex = cluster.node(old).expect("runs").log().last_index() + 1;
    let command = ClientRef {
        conn: 1,
        request_id: 2,
    };
    cluster.send_client(old, command, add(session, 1, 42));
    cluster.run_for(20);
    let stale = cluster.node(old).expect("runs").log().get(index).cloned();
    assert!(
        matches!(
            stale.as_ref().map(|e| &e.payload),
            Some(EntryPayload::Command { .. })
        ),
        "isolated leader should hold the command at index {index}, has {stale:?}"
    );

    // The majority elects a new leader, whose first entry lands at the same index.
    assert!(
        cluster.run_until(5_000, |c| c.leader().is_some_and(|leader| leader != old)),
        "the majority did not elect a new leader"
    );
    let new = cluster.leader().expect("checked");
    let new_term = cluster.node(new).expect("runs").term();
    assert!(new_term > old_term);

    cluster.heal();
    assert!(
        cluster.run_until(5_000, |c| {
            let adopted = c.node(old).expect("runs").log().get(index).cloned();
            adopted.is_some() && adopted == c.node(new).expect("runs").log().get(index).cloned()
        }),
        "the deposed leader did not adopt the new leader's entry at index {index}"
    );
    let adopted = cluster
        .node(old)
        .expect("runs")
        .log()
        .get(index)
        .cloned()
        .expect("checked");
    assert_eq!(
        adopted.term, new_term,
        "entry at {index} must come from the new term"
    );
    assert!(matches!(
        adopted.payload,
        EntryPayload::Configuration { .. }
    ));
    assert_eq!(cluster.node(old).expect("runs").role(), Role::Follower);

    // The client learned that the outcome is unknown, and the dropped command was never applied.
    let replies = cluster.take_replies(1);
    assert!(
        replies.iter().any(|(to, r)| *to == command
            && matches!(r, Err(e) if e.error == ClientError::OutcomeUnknown)),
        "pending command should fail with OutcomeUnknown, replies: {replies:?}"
    );
    cluster.run_for(500);
    for id in cluster.ids() {
        assert!(
            ids_on(&cluster, id).is_empty(),
            "node {id} applied the dropped command"
        );
    }
}

#[test]
fn isolated_leader_fails_pending_commands() {
    let mut cluster = cluster(3, 12, |_| {});
    let old = wait_leader(&mut cluster);
    let session = register(&mut cluster, old, 1);
    let term = cluster.node(old).expect("runs").term();

    cluster.isolate(old);
    let pending = ClientRef {
        conn: 1,
        request_id: 2,
    };
    cluster.send_client(old, pending, add(session, 1, 1));

    // Check-quorum: without hearing from a quorum for an election timeout, it steps down by
    // itself (the partition hides every higher term from it).
    let stepped_down =
        cluster.run_until(2_000, |c| c.node(old).expect("runs").role() != Role::Leader);
    assert!(
        stepped_down,
        "isolated leader {old} is still leader after 2 s"
    );
    cluster.run_for(50);
    assert_eq!(
        cluster.node(old).expect("runs").term(),
        term,
        "the leader stepped down by check-quorum, not because of a higher term"
    );
    let replies = cluster.take_replies(1);
    assert!(
        replies.iter().any(|(to, r)| *to == pending
            && matches!(r, Err(e) if e.error == ClientError::OutcomeUnknown)),
        "pending command should fail with OutcomeUnknown, replies: {replies:?}"
    );

    // The isolated node keeps redirecting instead of accepting work.
    let reply = request(
        &mut cluster,
        old,
        ClientRef {
            conn: 1,
            request_id: 3,
        },
        add(session, 1, 1),
    );
    assert!(
        matches!(&reply, Err(e) if matches!(e.error, ClientError::NotLeader | ClientError::NoLeader)),
        "isolated former leader should redirect, got {reply:?}"
    );
}

#[test]
fn leader_pause_expires_no_session() {
    let mut cluster = cluster(3, 13, |config| {
        config.default_session_timeout = Duration::from_millis(5_000);
    });
    let old = wait_leader(&mut cluster);
    let sessions: Vec<SessionId> = (1..=3)
        .map(|conn| register(&mut cluster, old, conn))
        .collect();
    cluster.run_for(1_000);

    // A 2.5 s stall of the leader, as a long GC pause would cause.
    cluster.pause(old, 2_500);
    assert!(
        cluster.run_until(2_000, |c| c.leader().is_some_and(|leader| leader != old)),
        "no new leader while the old one was paused"
    );
    let new = cluster.leader().expect("checked");
    cluster.run_for(2_600);
    assert!(!cluster.is_paused(old), "the old leader has resumed");

    // Clients keep their sessions alive at the new leader.
    for (conn, &session) in (1..=3).zip(&sessions) {
        let keepalive = ClientRequest::KeepAlive {
            session,
            command_sequence: 0,
            event_index: 0,
        };
        let reply = request(
            &mut cluster,
            new,
            ClientRef {
                conn,
                request_id: 10,
            },
            keepalive,
        );
        assert!(
            matches!(reply, Ok(ClientResponse::KeepAlive { .. })),
            "keep-alive failed: {reply:?}"
        );
    }
    cluster.run_for(1_000);

    for id in cluster.ids() {
        let node = cluster.node(id).expect("runs");
        assert_eq!(
            node.state_machine().expired_total(),
            0,
            "node {id} expired a session"
        );
        assert_eq!(
            node.state_machine().open_sessions(),
            3,
            "node {id} lost a session"
        );
    }
    let reply = request(
        &mut cluster,
        new,
        ClientRef {
            conn: 1,
            request_id: 11,
        },
        add(sessions[0], 1, 5),
    );
    assert!(
        matches!(reply, Ok(ClientResponse::Command { .. })),
        "new leader did not serve: {reply:?}"
    );
}

#[test]
fn paused_single_leader_expires_no_session() {
    // The whole cluster (one node) stops for longer than the session timeout: on resuming, the
    // leader must reset session timers through the log before deciding any expiry.
    let mut cluster = cluster(1, 14, |config| {
        config.default_session_timeout = Duration::from_millis(2_000);
    });
    let leader = wait_leader(&mut cluster);
    let session = register(&mut cluster, leader, 1);
    cluster.pause(leader, 3_000);
    cluster.run_for(3_100);
    let keepalive = ClientRequest::KeepAlive {
        session,
        command_sequence: 0,
        event_index: 0,
    };
    let reply = request(
        &mut cluster,
        leader,
        ClientRef {
            conn: 1,
            request_id: 2,
        },
        keepalive,
    );
    assert!(
        matches!(reply, Ok(ClientResponse::KeepAlive { .. })),
        "keep-alive failed: {reply:?}"
    );
    let node = cluster.node(leader).expect("runs");
    assert_eq!(
        node.state_machine().expired_total(),
        0,
        "the pause expired a session"
    );

    // Expiry itself still works once the client goes quiet.
    cluster.run_for(3_000);
    let node = cluster.node(leader).expect("runs");
    assert_eq!(
        node.state_machine().expired_total(),
        1,
        "an idle session must expire"
    );
}

#[test]
fn retried_command_applies_once() {
    let mut cluster = cluster(3, 15, |_| {});
    let leader = wait_leader(&mut cluster);
    let session = register(&mut cluster, leader, 1);

    // The first reply is lost on the way back.
    cluster.drop_reply(1, 2);
    cluster.send_client(
        leader,
        ClientRef {
            conn: 1,
            request_id: 2,
        },
        add(session, 1, 100),
    );
    cluster.run_for(500);
    assert!(
        cluster.take_replies(1).is_empty(),
        "the reply should have been dropped"
    );
    assert_eq!(ids_on(&cluster, leader), vec![100]);

    // The retry carries the same (session, sequence) and gets the cached result.
    let reply = request(
        &mut cluster,
        leader,
        ClientRef {
            conn: 1,
            request_id: 3,
        },
        add(session, 1, 100),
    );
    assert!(
        matches!(reply, Ok(ClientResponse::Command { .. })),
        "retry failed: {reply:?}"
    );
    cluster.run_for(500);
    for id in cluster.ids() {
        assert_eq!(
            ids_on(&cluster, id),
            vec![100],
            "node {id} applied the command twice"
        );
    }
}

#[test]
fn out_of_order_sequences_wait_for_gap() {
    let mut cluster = cluster(3, 16, |_| {});
    let leader = wait_leader(&mut cluster);
    let session = register(&mut cluster, leader, 1);

    let third = ClientRef {
        conn: 1,
        request_id: 3,
    };
    cluster.send_client(leader, third, add(session, 2, 2));
    cluster.run_for(200);
    assert!(
        cluster.take_replies(1).is_empty(),
        "sequence 2 must wait for sequence 1"
    );
    assert!(ids_on(&cluster, leader).is_empty());

    let reply = request(
        &mut cluster,
        leader,
        ClientRef {
            conn: 1,
            request_id: 4,
        },
        add(session, 1, 1),
    );
    assert!(
        matches!(reply, Ok(ClientResponse::Command { .. })),
        "sequence 1 failed: {reply:?}"
    );
    cluster.run_for(200);
    assert_eq!(
        ids_on(&cluster, leader),
        vec![1, 2],
        "commands must apply in sequence order"
    );
}

#[test]
fn command_for_unknown_session_fails() {
    let mut cluster = cluster(3, 17, |_| {});
    let leader = wait_leader(&mut cluster);
    cluster.run_for(100);
    let reply = request(
        &mut cluster,
        leader,
        ClientRef {
            conn: 1,
            request_id: 1,
        },
        add(1, 1, 1),
    );
    assert!(
        matches!(&reply, Err(e) if e.error == ClientError::UnknownSession { session: 1 }),
        "expected UnknownSession, got {reply:?}"
    );
}

#[test]
fn concurrent_linearizable_reads_share_round() {
    let mut cluster = cluster(3, 18, |_| {});
    let leader = wait_leader(&mut cluster);
    let session = register(&mut cluster, leader, 1);
    let reply = request(
        &mut cluster,
        leader,
        ClientRef {
            conn: 1,
            request_id: 2,
        },
        add(session, 1, 9),
    );
    assert!(matches!(reply, Ok(ClientResponse::Command { .. })));

    let read = |request_id| {
        (
            ClientRef {
                conn: 2,
                request_id,
            },
            ClientRequest::Query {
                session,
                sequence: 1,
                index: 0,
                consistency: Consistency::Linearizable,
                query: Query::Tag {
                    tag: "t".to_string(),
                },
            },
        )
    };
    let rounds_before = cluster.node(leader).expect("runs").leader_round();
    for request_id in 1..=10 {
        let (client, query) = read(request_id);
        cluster.send_client(leader, client, query);
    }
    let mut replies = Vec::new();
    cluster.run_until(1_000, |c| {
        replies.extend(c.take_replies(2));
        replies.len() == 10
    });
    assert_eq!(replies.len(), 10, "every read is answered");
    for (_, reply) in &replies {
        assert!(
            matches!(reply, Ok(ClientResponse::Query { result: QueryResult::Ids(ids), .. }) if ids == &vec![9]),
            "read must see the acknowledged add: {reply:?}"
        );
    }
    // One round per read would take 10; batching needs at most two plus a heartbeat.
    let rounds = cluster.node(leader).expect("runs").leader_round() - rounds_before;
    assert!(
        rounds <= 3,
        "10 concurrent reads used {rounds} leadership rounds"
    );
}

#[test]
fn restarted_stale_node_does_not_disrupt() {
    let mut cluster = cluster(5, 19, |_| {});
    let first = wait_leader(&mut cluster);
    let stale = cluster
        .ids()
        .into_iter()
        .find(|&id| id != first)
        .expect("5 nodes");
    cluster.crash(stale);

    // The others move to a higher term while the stale node is down.
    cluster.pause(first, 1_500);
    assert!(
        cluster.run_until(3_000, |c| c.leader().is_some_and(|leader| leader != first)),
        "no new leader while the first one was paused"
    );
    let leader = cluster.leader().expect("checked");
    cluster.run_for(2_000);
    let term = cluster.node(leader).expect("runs").term();
    assert!(cluster.durable(stale).hard_state.term < term);

    // Restarted with its old term and unable to hear the leader, it polls the others, who still
    // hear from the leader and reject it.
    cluster.cut_link(stale, leader);
    cluster.restart(stale);
    cluster.run_for(3_000);
    let node = cluster.node(leader).expect("runs");
    assert_eq!(node.role(), Role::Leader, "the live leader was deposed");
    assert_eq!(
        node.term(),
        term,
        "the stale node raised the cluster's term"
    );
    assert!(cluster.node(stale).expect("runs").term() <= term);
}

#[test]
fn follower_forwards_connect_and_redirects() {
    let mut cluster = cluster(3, 20, |_| {});
    let leader = wait_leader(&mut cluster);
    cluster.run_for(200);
    let follower = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("3 nodes");

    // Connect at a follower: answered there, recorded in the log by the leader.
    let connect = ClientRequest::Connect { client_id: 77 };
    let reply = request(
        &mut cluster,
        follower,
        ClientRef {
            conn: 1,
            request_id: 1,
        },
        connect,
    );
    match reply {
        Ok(ClientResponse::Connect {
            leader: Some(member),
            members,
        }) => {
            assert_eq!(member.id, leader);
            assert_eq!(members.len(), 3);
        }
        other => panic!("connect at a follower failed: {other:?}"),
    }
    let recorded = cluster.run_until(1_000, |c| {
        c.checker.committed().iter().any(|entry| {
            entry.payload
                == EntryPayload::Connect {
                    client_id: 77,
                    address: follower,
                }
        })
    });
    assert!(
        recorded,
        "the leader did not commit a Connect entry for the follower"
    );

    // Commands at a follower are redirected to the leader, with the member list.
    let reply = request(
        &mut cluster,
        follower,
        ClientRef {
            conn: 1,
            request_id: 2,
        },
        add(1, 1, 1),
    );
    let Err(error) = reply else {
        panic!("a follower accepted a command: {reply:?}");
    };
    assert_eq!(error.error, ClientError::NotLeader);
    assert_eq!(error.leader.map(|member| member.id), Some(leader));
    assert_eq!(error.members.len(), 3);

    // Status is served by every node.
    let reply = request(
        &mut cluster,
        follower,
        ClientRef {
            conn: 1,
            request_id: 3,
        },
        ClientRequest::Status,
    );
    let Ok(ClientResponse::Status(status)) = reply else {
        panic!("status failed: {reply:?}");
    };
    assert_eq!(status.id, follower);
    assert_eq!(status.role, Role::Follower);
    assert_eq!(status.leader, Some(leader));
}
