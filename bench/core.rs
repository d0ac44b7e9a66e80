//! Benchmarks of the consensus core alone and of the wire codec.
//!
//! - `core/commit`: commands committed and applied per second through a simulated 3-node
//!   cluster (`ringraft::raft::sim::Cluster`): real `Node`s, an in-memory network and simulated
//!   storage, no I/O and no sleeping. The figure includes the simulator's own cost (event queue,
//!   message clones), so it is a lower bound for the core. Each iteration submits a batch of
//!   commands to the leader and runs until the leader has applied all of them.
//! - `codec/*`: encoding and decoding of one frame (`encode_frame` / `decode_frame`).
//!
//! Run with `cargo bench --bench core`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringraft::raft::sim::{Cluster, NetworkConfig};
use ringraft::raft::ClientRef;
use ringraft_protocol::{
    decode_frame, encode_frame, AppendRequest, ClientFrame, ClientRequest, ClientResponse, Command,
    EntryPayload, LogEntry, PeerEnvelope, PeerMessage, DEFAULT_MAX_FRAME,
};

const BATCH: u64 = 1_000;

struct CommitBench {
    cluster: Cluster,
    leader: u64,
    session: u64,
    next_sequence: u64,
    next_request_id: u64,
}

impl CommitBench {
    fn new(max_append_entries: usize, max_inflight_appends: usize) -> Self {
        let network = NetworkConfig {
            min_delay_ms: 0,
            max_delay_ms: 0,
            loss: 0.0,
            duplication: 0.0,
            io_delay_ms: 0,
        };
        let mut cluster = Cluster::new(3, 1, network, |config| {
            config.max_append_entries = max_append_entries;
            config.max_inflight_appends = max_inflight_appends;
            config.max_pending_commands = BATCH as usize * 2;
        });
        assert!(
            cluster.run_until(5_000, |c| c.leader().is_some()),
            "no leader"
        );
        let leader = cluster.leader().expect("checked");
        let client = ClientRef {
            conn: 1,
            request_id: 1,
        };
        cluster.send_client(
            leader,
            client,
            ClientRequest::Register {
                client_id: 1,
                timeout_ms: Some(u64::MAX / 4),
            },
        );
        let mut session = None;
        cluster.run_until(1_000, |c| {
            for (_, reply) in c.take_replies(1) {
                if let Ok(ClientResponse::Register { session: s, .. }) = reply {
                    session = Some(s);
                }
            }
            session.is_some()
        });
        CommitBench {
            cluster,
            leader,
            session: session.expect("registered"),
            next_sequence: 1,
            next_request_id: 2,
        }
    }

    /// Submits BATCH commands and runs until the leader applied them all.
    fn run_batch(&mut self) {
        for _ in 0..BATCH {
            let request = ClientRequest::Command {
                session: self.session,
                sequence: self.next_sequence,
                command: Command::Add {
                    id: self.next_sequence,
                    tag: "t1".to_string(),
                    payload: vec![0; 100],
                },
            };
            let client = ClientRef {
                conn: 1,
                request_id: self.next_request_id,
            };
            self.next_sequence += 1;
            self.next_request_id += 1;
            self.cluster.send_client(self.leader, client, request);
        }
        let target_sequence = self.next_sequence - 1;
        let leader = self.leader;
        let session = self.session;
        let done = self.cluster.run_until(60_000, |c| {
            c.take_replies(1);
            c.node(leader)
                .and_then(|node| node.state_machine().session(session))
                .is_some_and(|info| info.last_applied_sequence >= target_sequence)
        });
        assert!(done, "batch did not commit");
    }
}

fn bench_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/commit");
    group.throughput(Throughput::Elements(BATCH));
    group.measurement_time(Duration::from_secs(5));
    for (entries, inflight) in [(64, 2), (1024, 4)] {
        let mut bench = CommitBench::new(entries, inflight);
        let id = BenchmarkId::new("3-node", format!("entries{entries}-inflight{inflight}"));
        group.bench_function(id, |b| b.iter(|| bench.run_batch()));
    }
    group.finish();
}

fn append_request(entries: u64) -> PeerEnvelope {
    let entries = (1..=entries)
        .map(|index| LogEntry {
            index,
            term: 3,
            timestamp_ms: 1_700_000_000_000 + index,
            payload: EntryPayload::Command {
                session: 7,
                sequence: index,
                command: Command::Add {
                    id: index,
                    tag: "t12".to_string(),
                    payload: vec![0xAB; 64],
                },
            },
        })
        .collect();
    PeerEnvelope {
        from: 1,
        to: 2,
        message: PeerMessage::AppendRequest(AppendRequest {
            term: 3,
            prev_log_index: 0,
            prev_log_term: 0,
            entries,
            leader_commit: 0,
            seq: 1,
        }),
    }
}

fn bench_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for entries in [1, 16, 256] {
        let message = append_request(entries);
        let mut frame = Vec::new();
        encode_frame(&message, &mut frame).expect("encodes");
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(BenchmarkId::new("encode/append", entries), |b| {
            let mut out = Vec::with_capacity(frame.len());
            b.iter(|| {
                out.clear();
                encode_frame(black_box(&message), &mut out).expect("encodes");
            })
        });
        group.bench_function(BenchmarkId::new("decode/append", entries), |b| {
            b.iter(|| {
                decode_frame::<PeerEnvelope>(black_box(&frame), DEFAULT_MAX_FRAME)
                    .expect("decodes")
                    .expect("whole frame")
            })
        });
    }

    let command = ClientFrame {
        request_id: 42,
        request: ClientRequest::Command {
            session: 7,
            sequence: 1_000,
            command: Command::Add {
                id: 1_000,
                tag: "t12".to_string(),
                payload: vec![0xAB; 100],
            },
        },
    };
    let mut frame = Vec::new();
    encode_frame(&command, &mut frame).expect("encodes");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode/client_command", |b| {
        let mut out = Vec::with_capacity(frame.len());
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&command), &mut out).expect("encodes");
        })
    });
    group.bench_function("decode/client_command", |b| {
        b.iter(|| {
            decode_frame::<ClientFrame>(black_box(&frame), DEFAULT_MAX_FRAME)
                .expect("decodes")
                .expect("whole frame")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_commit, bench_codec);
criterion_main!(benches);
