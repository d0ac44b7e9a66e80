use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use ringraft_loadgen::history::{HistoryRecord, OpKind, Outcome};

use super::*;

fn add(
    session: u32,
    id: u64,
    tag: &str,
    invoke_ns: u64,
    complete_ns: u64,
    outcome: Outcome,
) -> HistoryRecord {
    HistoryRecord {
        session,
        server_session: Some(session as u64 + 1),
        kind: OpKind::Add,
        sequence: id & 0xff_ffff,
        tag: tag.to_string(),
        id: Some(id),
        invoke_ns,
        complete_ns,
        outcome,
        output: None,
        index: None,
        error: None,
    }
}

fn query(
    session: u32,
    tag: &str,
    invoke_ns: u64,
    complete_ns: u64,
    output: &[u64],
) -> HistoryRecord {
    HistoryRecord {
        session,
        server_session: Some(session as u64 + 1),
        kind: OpKind::Query,
        sequence: 0,
        tag: tag.to_string(),
        id: None,
        invoke_ns,
        complete_ns,
        outcome: Outcome::Ok,
        output: Some(output.to_vec()),
        index: None,
        error: None,
    }
}

fn state(entries: &[(&str, &[u64])]) -> BTreeMap<String, Vec<u64>> {
    entries
        .iter()
        .map(|(tag, ids)| (tag.to_string(), ids.to_vec()))
        .collect()
}

/// A small valid history on two tags: Adds interleaved with Queries that see them.
fn valid_history() -> Vec<HistoryRecord> {
    vec![
        add(0, 1, "t1", 0, 10, Outcome::Ok),
        query(1, "t1", 20, 30, &[1]),
        add(2, 2, "t2", 25, 40, Outcome::Ok),
        add(0, 3, "t1", 35, 50, Outcome::Ok),
        // Concurrent with Add 3: may or may not see it.
        query(1, "t1", 45, 60, &[1]),
        query(2, "t2", 41, 70, &[2]),
        query(1, "t1", 51, 80, &[1, 3]),
    ]
}

#[test]
fn valid_history_passes() {
    let report = check(&valid_history(), &state(&[("t1", &[1, 3]), ("t2", &[2])]));
    assert!(report.valid, "{report:?}");
    assert_eq!(report.checked_ops, 7);
    assert_eq!(report.tags, 2);
    assert!(report.examples.is_empty(), "{:?}", report.examples);
}

#[test]
fn planted_lost_write_is_flagged() {
    let report = check(&valid_history(), &state(&[("t1", &[1]), ("t2", &[2])]));
    assert!(!report.valid);
    assert_eq!(report.lost_acked_adds, 1);
    assert_eq!(report.duplicate_applies, 0);
    assert!(report.examples[0].contains("id 3"), "{:?}", report.examples);
}

#[test]
fn planted_duplicate_in_final_state_is_flagged() {
    let report = check(
        &valid_history(),
        &state(&[("t1", &[1, 3, 1]), ("t2", &[2])]),
    );
    assert!(!report.valid);
    assert_eq!(report.duplicate_applies, 1);
    assert_eq!(report.lost_acked_adds, 0);
}

#[test]
fn planted_duplicate_in_query_is_flagged() {
    let mut history = valid_history();
    history.push(query(2, "t2", 90, 95, &[2, 2]));
    let report = check(&history, &state(&[("t1", &[1, 3]), ("t2", &[2])]));
    assert!(!report.valid);
    assert_eq!(report.duplicate_applies, 1);
}

#[test]
fn planted_stale_read_is_flagged() {
    let mut history = valid_history();
    // Starts after Add 3 was acknowledged at 50 ns but does not contain it.
    history.push(query(2, "t1", 55, 65, &[1]));
    let report = check(&history, &state(&[("t1", &[1, 3]), ("t2", &[2])]));
    assert!(!report.valid);
    assert_eq!(report.stale_reads, 1);
    assert_eq!(report.lost_acked_adds, 0);
    assert!(
        report.examples[0].contains("misses id 3"),
        "{:?}",
        report.examples
    );
}

#[test]
fn failed_add_present_is_flagged() {
    let mut history = valid_history();
    history.push(add(0, 4, "t2", 100, 110, Outcome::Failed));
    let report = check(&history, &state(&[("t1", &[1, 3]), ("t2", &[2, 4])]));
    assert!(!report.valid);
    assert_eq!(report.failed_adds_present, 1);
}

#[test]
fn indeterminate_add_may_go_either_way() {
    let mut history = valid_history();
    history.push(add(0, 4, "t2", 100, 110, Outcome::Indeterminate));
    history.push(add(0, 5, "t2", 120, 130, Outcome::Indeterminate));
    let report = check(&history, &state(&[("t1", &[1, 3]), ("t2", &[2, 4])]));
    assert!(report.valid, "{report:?}");
    assert_eq!(report.indeterminate_adds_applied, 1);
    assert_eq!(report.indeterminate_adds_absent, 1);
}

#[test]
fn unknown_id_in_state_is_flagged() {
    let report = check(
        &valid_history(),
        &state(&[("t1", &[1, 3, 99]), ("t2", &[2])]),
    );
    assert!(!report.valid);
    assert_eq!(report.unknown_ids, 1);
}

#[test]
fn failed_query_is_not_checked() {
    let mut history = valid_history();
    let mut failed = query(2, "t1", 55, 65, &[]);
    failed.outcome = Outcome::Failed;
    failed.output = None;
    history.push(failed);
    let report = check(&history, &state(&[("t1", &[1, 3]), ("t2", &[2])]));
    assert!(report.valid, "{report:?}");
}

/// Builds a random valid history of `adds` Adds over `tags` tags with a Query after each Add,
/// sequentially so every Query must see every earlier acknowledged Add of its tag.
fn random_history(
    seed: u64,
    adds: u64,
    tags: u64,
) -> (Vec<HistoryRecord>, BTreeMap<String, Vec<u64>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut history = Vec::new();
    let mut final_state: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut now = 0;
    for n in 0..adds {
        let session = rng.random_range(0..8u32);
        let tag = format!("t{}", rng.random_range(0..tags));
        let id = ((session as u64) << 40) | n;
        let outcome = match rng.random_range(0..20) {
            0 => Outcome::Failed,
            1 => Outcome::Indeterminate,
            _ => Outcome::Ok,
        };
        history.push(add(session, id, &tag, now, now + 5, outcome));
        now += 10;
        let ids = final_state.entry(tag.clone()).or_default();
        if outcome == Outcome::Ok || (outcome == Outcome::Indeterminate && rng.random_bool(0.5)) {
            ids.push(id);
        }
        history.push(query(session, &tag, now, now + 5, ids));
        now += 10;
    }
    (history, final_state)
}

#[test]
fn random_valid_histories_pass_and_mutations_fail() {
    for seed in 0..20u64 {
        let (history, final_state) = random_history(seed, 2_000, 16);
        let report = check(&history, &final_state);
        assert!(report.valid, "seed {seed}: {report:?}");

        // Drop the last id of one acknowledged tag from the final state: a lost write.
        let mut lossy = final_state.clone();
        let (tag, ids) = lossy.iter_mut().find(|(_, ids)| !ids.is_empty()).unwrap();
        let tag = tag.clone();
        let removed = ids.remove(0);
        let report = check(&history, &lossy);
        let acked = history
            .iter()
            .any(|r| r.id == Some(removed) && r.outcome == Outcome::Ok);
        if acked {
            assert_eq!(
                report.lost_acked_adds, 1,
                "seed {seed}, tag {tag}, id {removed}"
            );
        } else {
            assert!(
                report.valid,
                "seed {seed}: removing indeterminate id {removed} is allowed"
            );
        }
    }
}
