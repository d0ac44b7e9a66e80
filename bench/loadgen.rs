//! Load generator benchmarks.
//!
//! - `loadgen/closed_loop_one_executor`: requests per second that one executor drives, closed
//!   loop, against a trivial responder on 127.0.0.1 that replies to every request at once. Each
//!   sample runs the generator for one second; the figure is reported per request, so
//!   criterion's throughput line is requests per second.
//! - `loadgen/record_value`: the cost of recording one latency value in a recorder.
//!
//! Run: `cargo bench --bench loadgen`. The responder runs in the same process on its own
//! threads, so on a 2-core machine it competes with the generator; the figure is a lower
//! bound of what one generator core can drive.

use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringraft_loadgen::recorder::LatencyRecorder;
use ringraft_loadgen::{run, LoadConfig, RunControl, WorkloadArgs};
use ringraft_protocol::{
    decode_frame, decode_handshake_body, encode_frame, encode_handshake, ClientFrame,
    ClientRequest, ClientResponse, CommandResult, Hello, HelloReply, QueryResult, ServerFrame,
    DEFAULT_MAX_FRAME,
};

/// A member that replies to every request immediately with a fixed response.
struct Responder {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Responder {
    fn start() -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        std::thread::spawn(move || {
            while !stop_flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || serve(stream));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(_) => return,
                }
            }
        });
        Responder { addr, stop }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_frame(reader: &mut impl Read) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).ok()?;
    let mut framed = prefix.to_vec();
    framed.resize(4 + u32::from_be_bytes(prefix) as usize, 0);
    reader.read_exact(&mut framed[4..]).ok()?;
    Some(framed)
}

fn serve(stream: TcpStream) {
    stream.set_nonblocking(false).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = BufWriter::new(stream);

    let Some(hello) = read_frame(&mut reader) else {
        return;
    };
    let _: Hello = decode_handshake_body(&hello[4..]).unwrap();
    let mut out = Vec::new();
    encode_handshake(&HelloReply::Accepted { node: 1 }, &mut out).unwrap();
    writer.write_all(&out).unwrap();
    writer.flush().unwrap();

    let mut index = 0u64;
    while let Some(framed) = read_frame(&mut reader) {
        let (frame, _) = decode_frame::<ClientFrame>(&framed, DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        index += 1;
        let response = match frame.request {
            ClientRequest::Register { .. } => ClientResponse::Register {
                session: index,
                timeout_ms: 60_000,
                leader: None,
                members: Vec::new(),
            },
            ClientRequest::KeepAlive { .. } => ClientResponse::KeepAlive {
                leader: None,
                members: Vec::new(),
            },
            ClientRequest::Unregister { .. } => ClientResponse::Unregister,
            ClientRequest::Command { .. } => ClientResponse::Command {
                index,
                result: CommandResult::Added,
            },
            ClientRequest::Query { .. } => ClientResponse::Query {
                index,
                result: QueryResult::Ids(Vec::new()),
            },
            other => panic!("the benchmark responder does not handle {other:?}"),
        };
        out.clear();
        encode_frame(
            &ServerFrame {
                request_id: frame.request_id,
                response: Ok(response),
            },
            &mut out,
        )
        .unwrap();
        if writer.write_all(&out).is_err() {
            return;
        }
        // Flush once the client has nothing more buffered, so pipelined requests share
        // one write.
        if reader.buffer().is_empty() && writer.flush().is_err() {
            return;
        }
    }
}

fn closed_loop_one_executor(c: &mut Criterion) {
    let responder = Responder::start();
    let out = std::env::temp_dir().join(format!("ringraft-loadgen-bench-{}", std::process::id()));
    let mut group = c.benchmark_group("loadgen");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(12));
    group.throughput(Throughput::Elements(1));
    group.bench_function("closed_loop_one_executor", |b| {
        b.iter_custom(|iters| {
            let run_for = Duration::from_secs(1);
            let config = LoadConfig {
                cluster: vec![responder.addr.clone()],
                workload: WorkloadArgs {
                    sessions: 4,
                    pipeline: 32,
                    duration: run_for,
                    seed: Some(1),
                    ..WorkloadArgs::default()
                },
                out_dir: out.clone(),
                progress: false,
                executors: 1,
            };
            let report = run(&config, &RunControl::new()).expect("benchmark run failed");
            let done = (report.total.ok).max(1);
            // Time per request, scaled to the number of iterations criterion asked for.
            report.measured.mul_f64(iters as f64 / done as f64)
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&out);
}

fn record_value(c: &mut Criterion) {
    let mut group = c.benchmark_group("loadgen");
    group.throughput(Throughput::Elements(1));
    let mut recorder = LatencyRecorder::new();
    let mut value = 1_000u64;
    group.bench_function("record_value", |b| {
        b.iter(|| {
            // Values sweep 1 µs .. ~1 s so the recorder touches many buckets.
            value = if value > 1_000_000_000 {
                1_000
            } else {
                value * 3 / 2 + 7
            };
            recorder.record(black_box(value));
        })
    });
    group.finish();
    black_box(recorder.len());
}

criterion_group!(benches, closed_loop_one_executor, record_value);
criterion_main!(benches);
