//! Three real `ringraft server` processes on 127.0.0.1: sessions, adds and queries, a killed
//! leader, and bad input on the wire.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{status, Cluster, TestClient};
use ringraft_protocol::{
    encode_handshake, ClientError, ClientRequest, ClientResponse, Command, Consistency, Dialer,
    Hello, NodeId, Query, QueryResult, SessionId,
};

const ELECTION: Duration = Duration::from_secs(15);

/// A client bound to whichever node is leader, following redirects.
struct Session {
    client: TestClient,
    session: SessionId,
    sequence: u64,
}

fn connect_leader(cluster: &Cluster, leader: NodeId) -> TestClient {
    TestClient::connect(&cluster.addr(leader)).expect("connect to the leader")
}

fn register(client: &mut TestClient) -> SessionId {
    let reply = client
        .call(ClientRequest::Register {
            client_id: 7,
            timeout_ms: Some(10_000),
        })
        .expect("register");
    match reply {
        Ok(ClientResponse::Register { session, .. }) => session,
        other => panic!("register failed: {other:?}"),
    }
}

impl Session {
    fn add(&mut self, id: u64, tag: &str) {
        self.sequence += 1;
        let reply = self
            .client
            .call(ClientRequest::Command {
                session: self.session,
                sequence: self.sequence,
                command: Command::Add {
                    id,
                    tag: tag.into(),
                    payload: vec![1; 32],
                },
            })
            .expect("send add");
        assert!(
            matches!(reply, Ok(ClientResponse::Command { .. })),
            "add {id} failed: {reply:?}"
        );
    }

    fn query(&mut self, tag: &str, consistency: Consistency) -> Vec<u64> {
        let reply = self
            .client
            .call(ClientRequest::Query {
                session: self.session,
                sequence: self.sequence,
                index: 0,
                consistency,
                query: Query::Tag { tag: tag.into() },
            })
            .expect("send query");
        match reply {
            Ok(ClientResponse::Query {
                result: QueryResult::Ids(ids),
                ..
            }) => ids,
            other => panic!("query of {tag} failed: {other:?}"),
        }
    }
}

#[test]
fn cluster_survives_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(3, dir.path(), &[]);
    let leader = cluster.wait_for_leader(&cluster.ids(), ELECTION);

    let mut client = connect_leader(&cluster, leader);
    let session = register(&mut client);
    let mut s = Session {
        client,
        session,
        sequence: 0,
    };
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for id in 1..=40u64 {
        let tag = format!("t{}", id % 4);
        s.add(id, &tag);
        expected.entry(tag.clone()).or_default().push(id);
        if id % 5 == 0 {
            let seen = s.query(&tag, Consistency::Linearizable);
            assert_eq!(seen, expected[&tag], "query of {tag} after add {id}");
        }
    }

    // Status carries the storage counters: 40 acknowledged adds under fsync=batch were synced.
    let before_kill = status(&cluster.addr(leader)).unwrap();
    assert_eq!(before_kill.storage.backend, "mmap", "{before_kill:?}");
    assert_eq!(before_kill.storage.fsync, "batch", "{before_kill:?}");
    assert!(before_kill.storage.data_syncs > 0, "{before_kill:?}");
    assert!(before_kill.storage.log_bytes_written > 0, "{before_kill:?}");

    cluster.kill(leader);
    let survivors: Vec<NodeId> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let new_leader = cluster.wait_for_leader(&survivors, ELECTION);
    assert_ne!(new_leader, leader);

    // The same session carries on at the new leader: the failover was shorter than its
    // timeout, so it must not have expired.
    s.client = connect_leader(&cluster, new_leader);
    for (tag, ids) in &expected {
        let seen = s.query(tag, Consistency::Linearizable);
        assert_eq!(
            &seen, ids,
            "acknowledged adds of {tag} after the leader was killed"
        );
    }
    s.add(1000, "t0");
    assert_eq!(s.query("t0", Consistency::Lease).last(), Some(&1000));

    // The killed node restarts from its data directory and catches up.
    cluster.spawn(leader);
    let target = status(&cluster.addr(new_leader)).unwrap().commit_index;
    let deadline = Instant::now() + ELECTION;
    loop {
        if let Ok(st) = status(&cluster.addr(leader)) {
            if st.applied_index >= target {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "restarted node {leader} did not catch up to {target}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut follower = TestClient::connect(&cluster.addr(leader)).unwrap();
    let reply = follower
        .call(ClientRequest::Query {
            session: s.session,
            sequence: s.sequence,
            index: target,
            consistency: Consistency::Sequential,
            query: Query::Tag { tag: "t1".into() },
        })
        .unwrap();
    match reply {
        Ok(ClientResponse::Query {
            result: QueryResult::Ids(ids),
            ..
        }) => assert_eq!(ids, expected["t1"], "sequential read on the restarted node"),
        other => panic!("sequential query on the restarted node failed: {other:?}"),
    }
}

#[test]
fn follower_redirects_commands() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(3, dir.path(), &["--storage", "file"]);
    let leader = cluster.wait_for_leader(&cluster.ids(), ELECTION);
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    let mut client = TestClient::connect(&cluster.addr(follower)).unwrap();
    let reply = client
        .call(ClientRequest::Register {
            client_id: 1,
            timeout_ms: None,
        })
        .unwrap();
    let error = reply.expect_err("a follower must not register sessions");
    assert_eq!(error.error, ClientError::NotLeader);
    assert_eq!(error.leader.map(|m| m.id), Some(leader));
    assert_eq!(error.members.len(), 3);
}

#[test]
fn unknown_session_gets_explicit_error() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(3, dir.path(), &["--storage", "memory"]);
    let leader = cluster.wait_for_leader(&cluster.ids(), ELECTION);
    let mut client = connect_leader(&cluster, leader);
    let reply = client
        .call(ClientRequest::Command {
            session: 999_999,
            sequence: 1,
            command: Command::Add {
                id: 1,
                tag: "t".into(),
                payload: vec![],
            },
        })
        .unwrap();
    let error = reply.expect_err("a command for an unknown session must fail");
    assert_eq!(
        error.error,
        ClientError::UnknownSession { session: 999_999 }
    );
}

/// Read until the server closes the connection (or a deadline passes).
fn expect_closed(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection was not closed by the server: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "connection was not closed by the server"
        );
    }
}

#[test]
fn bad_frames_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(3, dir.path(), &["--storage", "memory"]);
    let leader = cluster.wait_for_leader(&cluster.ids(), ELECTION);
    let addr = cluster.addr(leader);

    // Not a ringraft handshake at all.
    let mut garbage = TcpStream::connect(&addr).unwrap();
    garbage.write_all(b"\x00\x00\x00\x08GET / HTTP").unwrap();
    expect_closed(&mut garbage);

    // Another cluster's id.
    let mut foreign = TcpStream::connect(&addr).unwrap();
    let mut hello = Vec::new();
    encode_handshake(
        &Hello {
            cluster_id: "another-cluster".into(),
            dialer: Dialer::Node(2),
        },
        &mut hello,
    )
    .unwrap();
    foreign.write_all(&hello).unwrap();
    expect_closed(&mut foreign);

    // A valid handshake followed by a frame claiming 1 GiB.
    let mut client = TestClient::connect(&addr).unwrap();
    client
        .stream()
        .write_all(&(1u32 << 30).to_be_bytes())
        .unwrap();
    expect_closed(client.stream());

    // A valid handshake followed by a frame whose body is not a request.
    let mut client = TestClient::connect(&addr).unwrap();
    client
        .stream()
        .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .unwrap();
    expect_closed(client.stream());

    // A frame cut in the middle, then the connection closed by the client.
    let mut client = TestClient::connect(&addr).unwrap();
    client.stream().write_all(&[0, 0, 0, 100, 1, 2]).unwrap();
    drop(client);

    // The node still serves everyone else.
    let mut client = TestClient::connect(&addr).unwrap();
    let session = register(&mut client);
    assert!(session > 0);
    let st = status(&addr).unwrap();
    assert_eq!(st.id, leader);
    let log = cluster.node_log(leader);
    assert!(
        log.contains("handshake"),
        "handshake errors are logged:\n{log}"
    );
    assert!(
        log.contains("bad frame from client"),
        "bad frames are logged:\n{log}"
    );
}

#[test]
fn bad_flags_exit_nonzero_naming_the_flag() {
    let cases: [(&[&str], &str); 4] = [
        (&["--id", "0", "--data-dir", "/tmp/unused"], "--id"),
        (
            &["--id", "1", "--data-dir", "/tmp/unused", "--peer", "2"],
            "peer",
        ),
        (
            &[
                "--id",
                "1",
                "--data-dir",
                "/tmp/unused",
                "--fsync",
                "sometimes",
            ],
            "sometimes",
        ),
        (
            &[
                "--id",
                "1",
                "--data-dir",
                "/tmp/unused",
                "--heartbeat-ms",
                "400",
            ],
            "--heartbeat-ms",
        ),
    ];
    for (args, needle) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .arg("server")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: error must name {needle}: {stderr}"
        );
    }
}

#[test]
fn corrupt_log_refused_then_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(1, dir.path(), &["--storage", "file"]);
    let leader = cluster.wait_for_leader(&[1], ELECTION);
    let mut client = connect_leader(&cluster, leader);
    for _ in 0..5 {
        register(&mut client);
    }
    drop(client);
    cluster.kill(1);

    // Flip a byte inside the first record: valid records follow it, so this is corruption
    // in the middle of the log, not a torn tail.
    let data_dir = dir.path().join("node1");
    let segment = data_dir.join(ringraft_storage::segment::segment_file_name(1));
    let mut bytes = std::fs::read(&segment).expect("first segment exists");
    let offset = ringraft_storage::segment::SEGMENT_HEADER_LEN + 20;
    bytes[offset] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    cluster.spawn(1);
    let status = cluster
        .wait_exit(1, Duration::from_secs(10))
        .expect("a node with a corrupt log must exit");
    assert!(!status.success());
    let log = cluster.node_log(1);
    assert!(log.contains("corrupt log data"), "{log}");
    assert!(
        log.contains(&segment.display().to_string()),
        "the error names the file: {log}"
    );
    assert!(
        log.contains("--repair-log"),
        "the error names the fix: {log}"
    );

    cluster.set_extra_args(&["--storage", "file", "--repair-log"]);
    cluster.spawn(1);
    assert_eq!(cluster.wait_for_leader(&[1], ELECTION), 1);
}

#[test]
fn status_rejects_bad_address_and_timeout() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .arg("status")
            .args(args)
            .output()
            .expect("running ringraft status")
    };

    let output = run(&["--cluster", "127.0.0.1:7401,nonsense"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("'nonsense' is not HOST:PORT"), "{stderr}");

    let output = run(&["--cluster", "127.0.0.1:7401", "--timeout-ms", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--timeout-ms"), "{stderr}");
}
