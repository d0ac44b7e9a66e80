//! `ringraft bench` rejects bad input before any server starts.

use std::path::Path;

mod common;

use common::bench;

fn assert_no_server_started(out: &Path) {
    assert!(
        !out.join("nodes").exists(),
        "a server directory was created under {}",
        out.display()
    );
}

#[test]
fn bad_fault_spec_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = bench(&["--fault", "pause:leader@10"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("pause:leader@10"), "{stderr}");
    assert!(stderr.contains("KIND:TARGET@START"), "{stderr}");
    assert_no_server_started(&out);
}

#[test]
fn unknown_fault_kind_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = bench(&["--fault", "stall:leader@1s"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("unknown fault kind 'stall'"), "{stderr}");
    assert_no_server_started(&out);
}

#[test]
fn missing_scenario_file_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = bench(&["--scenario", "bench/scenarios/missing.toml"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("bench/scenarios/missing.toml"), "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
    assert_no_server_started(&out);
}

#[test]
fn fault_beyond_cluster_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = bench(&["--nodes", "3", "--fault", "kill:node4@1s"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("node4"), "{stderr}");
    assert_no_server_started(&out);
}

#[test]
fn external_cluster_rejects_faults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // The address is never dialled: the run is rejected while the flags are checked.
    let output = bench(
        &["--cluster", "127.0.0.1:9", "--fault", "pause:leader@1s+1s"],
        &out,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--cluster"), "{stderr}");
    assert!(stderr.contains("pause:leader@1s+1s"), "{stderr}");
    assert_no_server_started(&out);
}

#[test]
fn unknown_storage_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = bench(&["--storage", "bogus"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("storage 'bogus'"), "{stderr}");
    assert_no_server_started(&out);
}

#[test]
fn invalid_fsync_policy_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = bench(&["--fsync", "interval:soon"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("fsync 'interval:soon'"), "{stderr}");
    assert_no_server_started(&out);
}

#[test]
fn dma_on_tmpfs_rejected_before_servers_start() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: this machine has no /dev/shm");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let out = dir.path().join("run");
    let output = bench(&["--storage", "dma", "--no-faults"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("O_DIRECT"), "{stderr}");
    assert!(stderr.contains("--storage"), "{stderr}");
    assert!(!out.exists(), "the rejected run left {}", out.display());
}
