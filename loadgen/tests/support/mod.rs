//! A scripted fake ringraft member for the load generator's tests.
//!
//! It is a real TCP listener on 127.0.0.1 that speaks the wire protocol (handshake, frames,
//! Register/KeepAlive/Unregister/Command/Query/Status) and keeps a tiny Add/Query state. Its
//! timing is scripted. Every reply is written a fixed service time after its request was
//! read, and a freeze window delays every reply until the window ends. Every n-th Query can
//! get an error reply, and a refusal window closes the listener and every connection.
//! Windows are relative to the load run's start (`RunControl::run_start`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringraft_loadgen::RunControl;
use ringraft_protocol::{
    decode_frame, decode_handshake_body, encode_frame, encode_handshake, ClientError,
    ClientErrorReply, ClientFrame, ClientRequest, ClientResponse, Command, CommandResult,
    HelloReply, Member, NodeStatus, Query, QueryResult, Role, ServerFrame, DEFAULT_MAX_FRAME,
};

#[derive(Clone, Debug)]
pub struct Script {
    pub node: u64,
    pub service_time: Duration,
    /// Hold every reply from `.0` to `.1` after the run start.
    pub freeze: Option<(Duration, Duration)>,
    /// Close every connection and refuse new ones from `.0` to `.1` after the run start.
    pub refuse: Option<(Duration, Duration)>,
    /// Reply `InvalidRequest` to every n-th Query of a connection.
    pub query_error_every: Option<u64>,
    pub session_timeout_ms: u64,
    /// Act as a follower: reply `NotLeader` naming this leader to every client request.
    pub redirect_to: Option<Member>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            node: 1,
            service_time: Duration::from_millis(1),
            freeze: None,
            refuse: None,
            query_error_every: None,
            session_timeout_ms: 5_000,
            redirect_to: None,
        }
    }
}

#[derive(Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub registers: AtomicU64,
    pub keepalives: AtomicU64,
    pub unregisters: AtomicU64,
    pub commands: AtomicU64,
    pub queries: AtomicU64,
    pub query_errors_sent: AtomicU64,
    pub duplicate_commands: AtomicU64,
    pub redirects_sent: AtomicU64,
}

#[derive(Default)]
struct State {
    next_session: u64,
    index: u64,
    last_sequence: HashMap<u64, u64>,
    tags: HashMap<String, Vec<u64>>,
}

pub struct FakeServer {
    pub addr: String,
    pub counters: Arc<Counters>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    script: Script,
    control: RunControl,
    counters: Arc<Counters>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    addr: String,
}

impl Shared {
    fn in_window(&self, window: Option<(Duration, Duration)>, now: Instant) -> Option<Instant> {
        let (from, to) = window?;
        let start = self.control.run_start();
        (now >= start + from && now < start + to).then_some(start + to)
    }
}

impl FakeServer {
    pub fn start(script: Script, control: RunControl) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let counters = Arc::new(Counters::default());
        let state = Arc::new(Mutex::new(State {
            next_session: 1,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            script,
            control,
            counters: counters.clone(),
            state: state.clone(),
            stop: stop.clone(),
            addr: addr.clone(),
        });
        let acceptor = std::thread::spawn(move || accept_loop(listener, shared));
        FakeServer {
            addr,
            counters,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Ids stored under every tag.
    pub fn tags(&self) -> HashMap<String, Vec<u64>> {
        self.state.lock().unwrap().tags.clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    let mut connections = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if shared.in_window(shared.script.refuse, now).is_some() {
            // Closing the listener makes connection attempts fail with "connection refused".
            listener = None;
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let l = listener.get_or_insert_with(|| {
            TcpListener::bind(&shared.addr).expect("rebinding the fake server's port failed")
        });
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                shared.counters.connections.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                connections.push(std::thread::spawn(move || serve(stream, shared)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("fake server accept failed: {e}"),
        }
    }
    for c in connections {
        let _ = c.join();
    }
}

fn read_body(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    let mut have = 0;
    while have < 4 {
        match stream.read(&mut prefix[have..]) {
            Ok(0) => return Ok(None),
            Ok(n) => have += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                if have == 0 {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let length = u32::from_be_bytes(prefix) as usize;
    let mut body = vec![0u8; length];
    let mut have = 0;
    while have < length {
        match stream.read(&mut body[have..]) {
            Ok(0) => return Ok(None),
            Ok(n) => have += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(body))
}

fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    stream.set_nodelay(true).unwrap();
    let Ok(Some(body)) = read_body(&mut stream) else {
        return;
    };
    let _hello: ringraft_protocol::Hello = decode_handshake_body(&body).unwrap();
    let mut out = Vec::new();
    encode_handshake(
        &HelloReply::Accepted {
            node: shared.script.node,
        },
        &mut out,
    )
    .unwrap();
    stream.write_all(&out).unwrap();

    let (sender, receiver) = mpsc::channel::<(Instant, ServerFrame)>();
    let mut write_stream = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut out = Vec::new();
        while let Ok((due, frame)) = receiver.recv() {
            wait_until(due);
            out.clear();
            encode_frame(&frame, &mut out).unwrap();
            if write_stream.write_all(&out).is_err() {
                return;
            }
        }
    });

    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut queries = 0u64;
    loop {
        let now = Instant::now();
        if shared.stop.load(Ordering::SeqCst)
            || shared.in_window(shared.script.refuse, now).is_some()
        {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            break;
        }
        let body = match read_body(&mut stream) {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                continue
            }
            Err(_) => break,
        };
        let received = Instant::now();
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        let (frame, _) = decode_frame::<ClientFrame>(&framed, DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();

        let response = respond(&shared, frame.request, &mut queries);
        let mut due = received + shared.script.service_time;
        if let Some(end) = shared.in_window(shared.script.freeze, received) {
            due = end + shared.script.service_time;
        } else if let Some(end) = shared.in_window(shared.script.freeze, due) {
            due = end + shared.script.service_time;
        }
        if sender
            .send((
                due,
                ServerFrame {
                    request_id: frame.request_id,
                    response,
                },
            ))
            .is_err()
        {
            break;
        }
    }
    drop(sender);
    let _ = writer.join();
}

/// Sleep until `due`, spinning for the last 200 µs so the reply leaves on time.
fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(200));
        } else {
            std::hint::spin_loop();
        }
    }
}

fn member(shared: &Shared) -> Member {
    Member {
        id: shared.script.node,
        addr: shared.addr.clone(),
    }
}

fn respond(
    shared: &Shared,
    request: ClientRequest,
    queries: &mut u64,
) -> Result<ClientResponse, ClientErrorReply> {
    let counters = &shared.counters;
    let mut state = shared.state.lock().unwrap();
    let leader = Some(member(shared));
    let members = vec![member(shared)];
    if let Some(leader) = &shared.script.redirect_to {
        if request != ClientRequest::Status {
            counters.redirects_sent.fetch_add(1, Ordering::SeqCst);
            return Err(ClientErrorReply {
                error: ClientError::NotLeader,
                leader: Some(leader.clone()),
                members,
            });
        }
    }
    match request {
        ClientRequest::Register { .. } => {
            counters.registers.fetch_add(1, Ordering::SeqCst);
            state.index += 1;
            let session = state.index;
            state.next_session += 1;
            state.last_sequence.insert(session, 0);
            Ok(ClientResponse::Register {
                session,
                timeout_ms: shared.script.session_timeout_ms,
                leader,
                members,
            })
        }
        ClientRequest::KeepAlive { .. } => {
            counters.keepalives.fetch_add(1, Ordering::SeqCst);
            Ok(ClientResponse::KeepAlive { leader, members })
        }
        ClientRequest::Unregister { session } => {
            counters.unregisters.fetch_add(1, Ordering::SeqCst);
            state.last_sequence.remove(&session);
            Ok(ClientResponse::Unregister)
        }
        ClientRequest::Command {
            session,
            sequence,
            command: Command::Add { id, tag, .. },
        } => {
            counters.commands.fetch_add(1, Ordering::SeqCst);
            let Some(last) = state.last_sequence.get(&session).copied() else {
                return Err(ClientErrorReply {
                    error: ClientError::UnknownSession { session },
                    leader,
                    members,
                });
            };
            if sequence <= last {
                counters.duplicate_commands.fetch_add(1, Ordering::SeqCst);
            } else {
                assert_eq!(sequence, last + 1, "session {session} skipped a sequence");
                state.last_sequence.insert(session, sequence);
                state.tags.entry(tag).or_default().push(id);
            }
            state.index += 1;
            Ok(ClientResponse::Command {
                index: state.index,
                result: CommandResult::Added,
            })
        }
        ClientRequest::Query {
            query: Query::Tag { tag },
            ..
        } => {
            counters.queries.fetch_add(1, Ordering::SeqCst);
            *queries += 1;
            if let Some(every) = shared.script.query_error_every {
                if (*queries).is_multiple_of(every) {
                    counters.query_errors_sent.fetch_add(1, Ordering::SeqCst);
                    return Err(ClientErrorReply {
                        error: ClientError::InvalidRequest("scripted error".into()),
                        leader,
                        members,
                    });
                }
            }
            Ok(ClientResponse::Query {
                index: state.index,
                result: QueryResult::Ids(state.tags.get(&tag).cloned().unwrap_or_default()),
            })
        }
        ClientRequest::Status => Ok(ClientResponse::Status(NodeStatus {
            id: shared.script.node,
            role: Role::Leader,
            term: 1,
            leader: Some(shared.script.node),
            commit_index: state.index,
            applied_index: state.index,
            last_log_index: state.index,
            members,
            open_sessions: state.last_sequence.len() as u64,
            expired_sessions: 0,
            elections_started: 1,
            storage: Default::default(),
        })),
        ClientRequest::Connect { .. } => Ok(ClientResponse::Connect { leader, members }),
    }
}
