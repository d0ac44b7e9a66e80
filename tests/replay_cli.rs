//! `ringraft replay` as a user runs it: the analysis of a fixture, a file that is not a
//! Copycat log, and `--run` of a short excerpt on a local cluster at high speed.

use std::path::Path;
use std::process::Command;

const STALL_LOG: &str = "tests/fixtures/copycat-logs/leader-stall-and-step-down.log";

fn ringraft() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringraft"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

#[test]
fn analysis_reports_the_stall() {
    let out = ringraft().args(["replay", STALL_LOG]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sessions: 3 (4, 9, 19)"), "{text}");
    assert!(text.contains("2.546 s"), "{text}");
    assert!(text.contains("16:35:29.155"), "{text}");
}

#[test]
fn analysis_as_json() {
    let out = ringraft()
        .args(["replay", STALL_LOG, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert!(value.is_object());
}

#[test]
fn other_format_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(
        &path,
        "127.0.0.1 - - [05/May/2017:16:35:28 +0800] \"GET / HTTP/1.1\" 200 612\n",
    )
    .unwrap();
    let out = ringraft().arg("replay").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("access.log"),
        "the error names the file: {stderr}"
    );
}

#[test]
fn run_replays_excerpt_at_speed() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("replay");
    let out = ringraft()
        .args([
            "replay",
            STALL_LOG,
            "--run",
            "--speed",
            "5",
            "--duration",
            "5s",
            "--quiet",
        ])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let table = std::fs::read_to_string(out_dir.join("replay.md")).expect("replay.md written");
    assert!(table.contains("| sessions | 3 | 3 |"), "{table}");
    assert!(table.contains("longest client outage (ms)"), "{table}");
    assert!(table.contains("History check: passed"), "{table}");

    let comparison: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("replay.json")).unwrap())
            .unwrap();
    assert_eq!(comparison["log"]["unavailable_ms"], 2546);
    assert_eq!(comparison["ringraft"]["check_valid"], true);
    assert!(
        comparison["ringraft"]["unavailable_ms"].as_f64().is_some(),
        "{comparison}"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    let faults = summary["faults"].as_array().expect("faults listed");
    assert_eq!(
        faults.len(),
        1,
        "the log's stall becomes one pause: {faults:?}"
    );
    assert_eq!(faults[0]["kind"], "pause");
    assert!(Path::new(&out_dir.join("history.jsonl")).is_file());
}
