//! `ringraft disk-probe`: measures a directory's disk and leaves nothing behind; rejects a
//! directory that does not exist and a bad duration.

use std::process::{Command, Output};

fn disk_probe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("disk-probe")
        .args(args)
        .output()
        .expect("running ringraft disk-probe")
}

#[test]
fn probe_reports_json_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let output = disk_probe(&[path, "--duration", "100ms", "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["dir"], path);
    assert!(
        report["fdatasync"]["writes"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        report["fdatasync"]["per_s"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // Either the O_DIRECT part ran or the report gives the reason it did not.
    let direct_ran = report["direct"]["mib_per_s"]
        .as_f64()
        .is_some_and(|v| v > 0.0);
    let skipped = report["direct_skipped"].as_str().is_some();
    assert!(direct_ran != skipped, "{report}");

    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn missing_directory_and_bad_duration_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let output = disk_probe(&[missing.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("no-such-dir"), "{stderr}");
    assert!(!missing.exists(), "the probe must not create the directory");

    let output = disk_probe(&[dir.path().to_str().unwrap(), "--duration", "3"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("no unit"), "{stderr}");

    let output = disk_probe(&[dir.path().to_str().unwrap(), "--duration", "0s"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("duration"), "{stderr}");
}
