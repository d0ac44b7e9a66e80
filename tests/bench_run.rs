//! A short `ringraft bench` run against real server processes: a leader pause and a follower
//! kill under load. Checks the exit code, the history check, the fault metrics and that no
//! server outlives the command.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Process ids whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

fn read_summary(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

#[test]
fn short_run_with_pause_and_kill() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args([
            "bench",
            "--duration",
            "8s",
            "--fault",
            "pause:leader@2s+1.5s",
            "--fault",
            "kill:follower@5s+1s",
            "--seed",
            "7",
            "--quiet",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("running ringraft bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let leftover = processes_mentioning(&out.display().to_string());
    assert!(
        leftover.is_empty(),
        "server processes left behind: {leftover:?}"
    );
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );

    let summary = read_summary(&out);
    assert_eq!(summary["check"]["valid"], true, "{}", summary["check"]);
    assert_eq!(summary["check"]["lost_acked_adds"], 0);
    assert_eq!(summary["check"]["duplicate_applies"], 0);
    assert_eq!(summary["check"]["stale_reads"], 0);
    assert!(summary["check"]["checked_ops"].as_u64().unwrap() > 0);
    assert!(summary["ops"]["add"]["ok"].as_u64().unwrap() > 0);
    assert!(summary["ops"]["query"]["ok"].as_u64().unwrap() > 0);
    assert_eq!(summary["seed"], 7);

    let faults = summary["faults"].as_array().expect("faults list");
    assert_eq!(faults.len(), 2);
    let pause = &faults[0];
    assert_eq!(pause["kind"], "pause");
    assert_eq!(pause["target"], "leader");
    assert_eq!(pause["node"], pause["leader"], "the pause hits the leader");
    let at = pause["at_s"].as_f64().unwrap();
    assert!((2.0..3.0).contains(&at), "pause injected at {at} s");
    let unavailable = pause["unavailable_ms"].as_f64().unwrap();
    // The clients must be served by a new leader before the paused one resumes after 1.5 s:
    // they give up on it after the failover timeout instead of waiting it out.
    assert!(
        unavailable > 0.0 && unavailable < 1500.0,
        "unavailable {unavailable} ms: the clients waited for the paused leader"
    );

    assert_eq!(
        summary["sessions"]["expired"], 0,
        "a pause shorter than the session timeout must expire no session"
    );

    let kill = &faults[1];
    assert_eq!(kill["kind"], "kill");
    assert!(kill["node"].as_u64().is_some(), "{kill}");
    assert_ne!(kill["node"], kill["leader"], "a follower is killed");

    // The restarted follower's counters started again from zero, so it is left out of the
    // resource totals, and the report names it.
    let resources = &summary["resources"];
    let counted = resources["nodes_counted"]
        .as_array()
        .expect("nodes_counted");
    assert_eq!(counted.len(), 2, "{resources}");
    assert!(!counted.contains(&kill["node"]), "{resources}");
    let left_out = resources["nodes_left_out"][0].as_str().unwrap_or_default();
    assert!(left_out.contains("restarted"), "{resources}");
    assert_eq!(resources["backend"], "mmap");
    assert!(
        resources["committed_entries"].as_u64().unwrap() > 0,
        "{resources}"
    );
    assert!(resources["data_syncs"].as_u64().unwrap() > 0, "{resources}");
    assert!(
        resources["server_cpu_s"].as_f64().unwrap() > 0.0,
        "{resources}"
    );

    for file in [
        "summary.md",
        "latency.svg",
        "history.jsonl",
        "add.hgrm",
        "load-summary.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    assert!(
        !out.join("nodes/node1/data").exists(),
        "data directories are removed by default"
    );
    assert!(out.join("nodes/node1/server.log").is_file());
}

/// Starts `ringraft bench` writing to `out` and waits until its three servers run.
fn start_bench(out: &Path) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["bench", "--duration", "30s", "--no-faults", "--quiet"])
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting ringraft bench");
    // Only the servers' command lines name the nodes directory (their --data-dir).
    let needle = out.join("nodes").display().to_string();
    for _ in 0..300 {
        if processes_mentioning(&needle).len() >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        processes_mentioning(&needle).len(),
        3,
        "three servers expected"
    );
    child
}

/// Waits up to ten seconds for every process mentioning `needle` to end.
fn wait_until_gone(needle: &str) -> Vec<u32> {
    for _ in 0..500 {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    processes_mentioning(needle)
}

#[test]
fn ctrl_c_stops_every_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut bench = start_bench(&out);
    std::thread::sleep(std::time::Duration::from_secs(2));

    // SAFETY: kill(2) on the pid of a child that has not been reaped yet.
    unsafe { libc::kill(bench.id() as libc::pid_t, libc::SIGINT) };
    let status = bench.wait().unwrap();
    assert!(
        !status.success(),
        "an interrupted run does not exit 0: {status}"
    );
    let left = wait_until_gone(&out.join("nodes").display().to_string());
    assert!(left.is_empty(), "servers outlived Ctrl-C: {left:?}");
    assert!(
        out.join("summary.json").is_file(),
        "an interrupted run still writes its summary"
    );
}

#[test]
fn killed_harness_takes_servers_down() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut bench = start_bench(&out);

    bench.kill().unwrap();
    bench.wait().unwrap();
    let left = wait_until_gone(&out.join("nodes").display().to_string());
    assert!(
        left.is_empty(),
        "servers outlived a SIGKILLed harness: {left:?}"
    );
}
