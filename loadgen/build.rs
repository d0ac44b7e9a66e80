//! Records the git commit the load generator was built from, for `summary.json`.
//!
//! Falls back to nothing (the summary then says "unknown") outside a git checkout or when git
//! is missing. A `-dirty` suffix marks a build with uncommitted changes to tracked files.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    // Rebuild when HEAD moves or the index changes (a commit, a checkout, a staged edit).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head_ref}");
        }
    }

    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    // Cargo.lock is left out: cargo itself rewrites it when a manifest is ahead of it, which
    // says nothing about the code that was built.
    let status = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ":/",
        ":(top,exclude)Cargo.lock",
    ]);
    let dirty = status.is_some_and(|s| !s.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=RINGRAFT_COMMIT={commit}{suffix}");
}
