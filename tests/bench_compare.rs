//! `ringraft bench --compare-storage`: one short run per backend and the comparison table, and
//! the bad input it must reject before any server starts.

use std::path::Path;

use serde_json::Value;

mod common;

use common::bench;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// Asserts that no backend directory has a server directory: nothing was started.
fn assert_nothing_started(out: &Path) {
    for backend in ["memory", "mmap", "file", "dma"] {
        let nodes = out.join(backend).join("nodes");
        assert!(!nodes.exists(), "{} was created", nodes.display());
    }
}

#[test]
fn compares_two_backends_with_one_seed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare");
    let output = bench(
        &[
            "--compare-storage",
            "memory,file",
            "--duration",
            "2s",
            "--no-faults",
            "--probe-duration",
            "200ms",
            "--seed",
            "11",
            "--quiet",
        ],
        &out,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );

    let compare = read_json(&out.join("compare.json"));
    assert_eq!(compare["seed"], 11);
    assert!(
        compare["disk_probe"]["fdatasync"]["per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let rows = compare["backends"].as_array().expect("backends list");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["memory", "file"]);
    for row in rows {
        assert_eq!(row["check_valid"], true, "{row}");
        assert!(
            row["throughput"]["add_ok_per_s"].as_f64().unwrap() > 0.0,
            "{row}"
        );
        assert!(row["committed_entries"].as_u64().unwrap() > 0, "{row}");
        assert!(row["cpu_us_per_entry"].as_f64().unwrap() > 0.0, "{row}");
    }

    // The memory backend never syncs; the file backend syncs every batch under fsync=batch.
    assert_eq!(rows[0]["syncs_per_s"].as_f64(), Some(0.0), "{}", rows[0]);
    assert!(
        rows[1]["syncs_per_s"].as_f64().unwrap() > 0.0,
        "{}",
        rows[1]
    );
    assert!(
        rows[1]["log_bytes_per_entry"].as_f64().unwrap() > 0.0,
        "{}",
        rows[1]
    );
    assert!(
        rows[1]["syncs_vs_disk_fdatasync"].as_f64().is_some(),
        "{}",
        rows[1]
    );

    // Each backend has its own full result, run with the shared seed and its own storage.
    for backend in ["memory", "file"] {
        let summary = read_json(&out.join(backend).join("summary.json"));
        assert_eq!(summary["seed"], 11, "{backend}");
        assert_eq!(summary["config"]["scenario"]["server"]["storage"], backend);
        assert_eq!(summary["resources"]["backend"], backend);
    }

    // The shared settings list every backend, and the latency note follows the run's loop.
    assert_eq!(
        compare["config"]["server"]["storage"],
        serde_json::json!(["memory", "file"])
    );
    assert_eq!(compare["interrupted"], false);

    let markdown = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        markdown.contains("measured from the intended send time"),
        "{markdown}"
    );
    assert!(markdown.contains("| memory | passed |"), "{markdown}");
    assert!(markdown.contains("| file | passed |"), "{markdown}");
    assert!(
        markdown.contains("fdatasync after each 4096 B write"),
        "{markdown}"
    );
}

#[test]
fn unknown_or_repeated_backend_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare");

    let output = bench(&["--compare-storage", "mmap,disk"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("\"disk\"") || stderr.contains("'disk'"),
        "{stderr}"
    );
    assert_nothing_started(&out);

    let output = bench(&["--compare-storage", "file,file"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("twice"), "{stderr}");
    assert_nothing_started(&out);
}

#[test]
fn compare_conflicts_with_storage_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare");
    let output = bench(
        &["--compare-storage", "mmap,file", "--storage", "dma"],
        &out,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--storage"), "{stderr}");
    assert!(
        !out.exists(),
        "nothing is written for a rejected command line"
    );
}

#[test]
fn dma_on_tmpfs_rejected_before_any_run() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: this machine has no /dev/shm");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let out = dir.path().join("compare");
    let output = bench(&["--compare-storage", "mmap,dma"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("dma"), "{stderr}");
    assert!(stderr.contains("O_DIRECT"), "{stderr}");
    assert!(
        !out.exists(),
        "the rejected comparison left {}",
        out.display()
    );
}
