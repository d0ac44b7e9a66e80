//! Process control tests with a stand-in server: a shell script that ignores its arguments.
//! They check that no process outlives the cluster on drop, on stop, on error and when the
//! spawning thread ends.

use std::os::unix::fs::PermissionsExt;

use super::*;

/// Writes an executable script that runs `body` and returns its path.
fn fake_server(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-ringraft");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn config(dir: &Path, bin: PathBuf, nodes: usize) -> ClusterConfig {
    ClusterConfig {
        bin,
        nodes,
        server: ServerSettings::default(),
        dir: dir.join("nodes"),
        relays: false,
        env: Vec::new(),
    }
}

fn unreachable_status() -> StatusFn {
    Arc::new(|addr: &str, _timeout: Duration| Err(format!("{addr}: connection refused")))
}

/// Waits up to two seconds for every pid to be gone.
fn all_gone(pids: &[u32]) -> bool {
    for _ in 0..200 {
        if pids.iter().all(|&pid| !process_alive(pid)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.trim_start().chars().next().unwrap()
}

/// Whether the process reaches (or leaves, with `stopped` false) the stopped state within
/// two seconds; signals are delivered asynchronously.
fn becomes_stopped(pid: u32, stopped: bool) -> bool {
    for _ in 0..200 {
        if (process_state(pid) == 'T') == stopped {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn drop_kills_every_server() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_server(dir.path(), "exec sleep 600");
    let cluster = LocalCluster::start(&config(dir.path(), bin, 3)).unwrap();
    let pids = cluster.pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&pid| process_alive(pid)));

    drop(cluster);
    assert!(all_gone(&pids), "servers outlived the cluster: {pids:?}");
}

#[test]
fn server_arguments_name_peers_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    // The script writes its arguments into the log, then waits.
    let bin = fake_server(dir.path(), "echo \"$@\"\nexec sleep 600");
    let cluster = LocalCluster::start(&config(dir.path(), bin, 3)).unwrap();
    let node = cluster.node(2).unwrap();

    let mut logged = String::new();
    for _ in 0..200 {
        logged = std::fs::read_to_string(&node.log_path).unwrap_or_default();
        if !logged.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let peer1 = cluster.node(1).unwrap().listen;
    assert!(
        logged.starts_with("server --id 2 --listen 127.0.0.1:"),
        "{logged}"
    );
    assert!(logged.contains(&format!("--peer 1={peer1}")), "{logged}");
    assert!(logged.contains("--storage mmap --fsync batch"), "{logged}");
    assert!(
        logged.contains(&format!("--data-dir {}", node.data_dir.display())),
        "{logged}"
    );
    assert!(node.data_dir.is_dir());
}

#[test]
fn leader_timeout_error_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_server(dir.path(), "exec sleep 600");
    let mut cluster = LocalCluster::start(&config(dir.path(), bin, 3)).unwrap();
    let pids = cluster.pids();

    let error = cluster
        .wait_for_leader(&unreachable_status(), Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(error, ClusterError::NoLeader { .. }), "{error}");
    assert!(error.to_string().contains("connection refused"), "{error}");

    drop(cluster);
    assert!(all_gone(&pids), "{pids:?}");
}

#[test]
fn exited_server_is_reported_with_log() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_server(dir.path(), "echo 'bind failed: address in use' >&2\nexit 3");
    let mut cluster = LocalCluster::start(&config(dir.path(), bin, 2)).unwrap();

    let error = cluster
        .wait_for_leader(&unreachable_status(), Duration::from_secs(10))
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ClusterError::Exited { .. }), "{message}");
    assert!(message.contains("bind failed: address in use"), "{message}");
}

#[test]
fn pause_resume_kill_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_server(dir.path(), "exec sleep 600");
    let mut cluster = LocalCluster::start(&config(dir.path(), bin, 2)).unwrap();
    let pid = cluster.node(1).unwrap().pid().unwrap();

    cluster.pause(1).unwrap();
    assert!(becomes_stopped(pid, true), "state {}", process_state(pid));
    assert_eq!(cluster.node(1).unwrap().state(), NodeState::Paused);

    cluster.resume(1).unwrap();
    assert!(becomes_stopped(pid, false), "state {}", process_state(pid));
    assert_eq!(cluster.node(1).unwrap().state(), NodeState::Running);

    cluster.pause(1).unwrap();
    cluster.kill(1).unwrap();
    assert!(!process_alive(pid));
    assert_eq!(cluster.node(1).unwrap().pid(), None);
    assert_eq!(cluster.node(1).unwrap().state(), NodeState::Killed);

    cluster.restart(1).unwrap();
    let new_pid = cluster.node(1).unwrap().pid().unwrap();
    assert_ne!(new_pid, pid);
    assert!(process_alive(new_pid));

    let pids = cluster.pids();
    drop(cluster);
    assert!(all_gone(&pids), "{pids:?}");
}

#[test]
fn stop_ends_paused_servers() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_server(dir.path(), "exec sleep 600");
    let mut cluster = LocalCluster::start(&config(dir.path(), bin, 3)).unwrap();
    let pids = cluster.pids();
    cluster.pause(2).unwrap();

    cluster.stop();
    assert!(cluster.pids().is_empty());
    assert!(all_gone(&pids), "{pids:?}");
}

#[test]
fn spawning_thread_exit_kills_servers() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_server(dir.path(), "exec sleep 600");
    let config = config(dir.path(), bin, 2);

    // The cluster is leaked, so only PR_SET_PDEATHSIG can end its servers when the thread
    // that spawned them exits, as it would when the harness process is killed.
    let pids = std::thread::spawn(move || {
        let cluster = LocalCluster::start(&config).unwrap();
        let pids = cluster.pids();
        std::mem::forget(cluster);
        pids
    })
    .join()
    .unwrap();
    assert!(
        all_gone(&pids),
        "servers survived their parent thread: {pids:?}"
    );
}

#[test]
fn relayed_cluster_dials_peers_through_relays() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_server(dir.path(), "echo \"$@\"\nexec sleep 600");
    let mut config = config(dir.path(), bin, 2);
    config.relays = true;
    let cluster = LocalCluster::start(&config).unwrap();

    let relays = cluster.relays().unwrap();
    let relay_1_to_2 = relays.peer_addr(1, 2).unwrap();
    let client_to_1 = relays.client_addr(1).unwrap().to_string();
    assert!(cluster.client_addrs().contains(&client_to_1));

    let log_path = cluster.node(1).unwrap().log_path.clone();
    let mut logged = String::new();
    for _ in 0..200 {
        logged = std::fs::read_to_string(&log_path).unwrap_or_default();
        if !logged.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        logged.contains(&format!("--peer 2={relay_1_to_2}")),
        "{logged}"
    );
}

#[test]
fn agreed_leader_needs_majority() {
    let status = |id: NodeId, role: Role, term: Term, leader: Option<NodeId>| NodeStatus {
        id,
        role,
        term,
        leader,
        commit_index: 0,
        applied_index: 0,
        last_log_index: 0,
        members: Vec::new(),
        open_sessions: 0,
        expired_sessions: 0,
        elections_started: 0,
        storage: Default::default(),
    };
    let lone = [status(1, Role::Leader, 2, Some(1))];
    assert_eq!(agreed_leader(&lone, 3), None);

    let agreed = [
        status(1, Role::Leader, 2, Some(1)),
        status(2, Role::Follower, 2, Some(1)),
    ];
    assert_eq!(agreed_leader(&agreed, 3), Some((1, 2)));

    let stale = [
        status(1, Role::Leader, 2, Some(1)),
        status(2, Role::Follower, 3, None),
        status(3, Role::Candidate, 3, None),
    ];
    assert_eq!(agreed_leader(&stale, 3), None);
}
