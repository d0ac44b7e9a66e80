//! History checker: no acknowledged Add lost, none applied twice, no stale read.
//!
//! Input is the load generator's `history.jsonl` and the final state of every tag, read with a
//! linearizable query after the load stopped. The rules, for each tag:
//!
//! - **Lost write**: an Add acknowledged `ok` whose id is missing from the final state.
//! - **Duplicate apply**: an id that occurs more than once in the final state or in one Query
//!   result (the state machine keeps duplicates, so a double apply is visible).
//! - **Stale read**: an `ok` Query that started (`invoke_ns`) after an Add on its tag was
//!   acknowledged (`complete_ns`) but does not contain that Add's id.
//! - **Failed Add present**: an Add with outcome `failed` whose id shows up in the final state
//!   or in a Query result. An `indeterminate` Add may be present or absent.
//! - **Unknown id**: an id in the final state that no Add of the history inserted.
//!
//! Cost is linear in the size of the history: records are partitioned by tag, and within a tag
//! the acknowledged Adds are sorted by acknowledgement time, so the Adds a Query must contain
//! are a prefix of that list. Each Query result goes into a hash set once and the prefix is
//! scanned against it, stopping at the first miss. A valid Query result holds at least the
//! prefix, so the scan never costs more than reading the result did.
//!
//! Not checked: real-time order between Queries (a later Query seeing less than an earlier one
//! is only caught when an acknowledged Add explains it), and Queries that failed or are
//! indeterminate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;

use ringraft_loadgen::history::{HistoryRecord, OpKind, Outcome};
use serde::Serialize;

/// How many example violations of each rule the report lists.
const MAX_EXAMPLES: usize = 10;

/// Result of checking one history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub valid: bool,
    pub checked_ops: u64,
    pub lost_acked_adds: u64,
    pub duplicate_applies: u64,
    pub stale_reads: u64,
    pub failed_adds_present: u64,
    pub unknown_ids: u64,
    /// Indeterminate Adds found in the final state (applied) and not found (not applied).
    pub indeterminate_adds_applied: u64,
    pub indeterminate_adds_absent: u64,
    pub tags: u64,
    /// A few violations in words, for the summary a person reads.
    pub examples: Vec<String>,
}

/// Error reading a history file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("failed to read history {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid history record at {path}:{line}: {source}")]
    Parse {
        path: String,
        line: u64,
        source: serde_json::Error,
    },
}

/// Reads every record of a `history.jsonl` file.
pub fn read_history(path: &Path) -> Result<Vec<HistoryRecord>, HistoryError> {
    let io_error = |source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);

    let mut records = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(io_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            path: path.display().to_string(),
            line: number as u64 + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Tags that Adds or Queries of the history touched, sorted.
pub fn history_tags(history: &[HistoryRecord]) -> Vec<String> {
    let tags: std::collections::BTreeSet<&str> = history.iter().map(|r| r.tag.as_str()).collect();
    tags.into_iter().map(str::to_string).collect()
}

#[derive(Default)]
struct TagOps<'a> {
    adds: Vec<&'a HistoryRecord>,
    queries: Vec<&'a HistoryRecord>,
}

/// Checks a history against the final state of its tags.
///
/// `final_state` maps each tag to the ids the cluster stores under it. A tag missing from the
/// map is treated as empty, so pass every tag of [`history_tags`].
pub fn check(history: &[HistoryRecord], final_state: &BTreeMap<String, Vec<u64>>) -> CheckReport {
    let mut by_tag: HashMap<&str, TagOps<'_>> = HashMap::new();
    for record in history {
        let ops = by_tag.entry(record.tag.as_str()).or_default();
        match record.kind {
            OpKind::Add => ops.adds.push(record),
            OpKind::Query => ops.queries.push(record),
        }
    }

    let mut report = CheckReport {
        checked_ops: history.len() as u64,
        tags: by_tag.len() as u64,
        ..CheckReport::default()
    };
    let empty = Vec::new();
    let mut tags: Vec<&str> = by_tag.keys().copied().collect();
    tags.sort_unstable();
    for tag in tags {
        let ops = &by_tag[tag];
        let state = final_state.get(tag).unwrap_or(&empty);
        check_tag(tag, ops, state, &mut report);
    }

    report.valid = report.lost_acked_adds == 0
        && report.duplicate_applies == 0
        && report.stale_reads == 0
        && report.failed_adds_present == 0
        && report.unknown_ids == 0;
    report
}

fn check_tag(tag: &str, ops: &TagOps<'_>, state: &[u64], report: &mut CheckReport) {
    let example = |report: &mut CheckReport, text: String| {
        if report.examples.len() < MAX_EXAMPLES {
            report.examples.push(text);
        }
    };

    // Final state: count occurrences once, then compare every Add against it.
    let mut in_state: HashMap<u64, u32> = HashMap::with_capacity(state.len());
    for &id in state {
        *in_state.entry(id).or_default() += 1;
    }
    let mut add_outcomes: HashMap<u64, Outcome> = HashMap::with_capacity(ops.adds.len());
    for add in &ops.adds {
        let Some(id) = add.id else { continue };
        add_outcomes.insert(id, add.outcome);
        let present = in_state.contains_key(&id);
        match (add.outcome, present) {
            (Outcome::Ok, false) => {
                report.lost_acked_adds += 1;
                example(
                    report,
                    format!("lost write: Add id {id} on tag {tag} (session {}, sequence {}) was acknowledged but is not in the final state", add.session, add.sequence),
                );
            }
            (Outcome::Failed, true) => {
                report.failed_adds_present += 1;
                example(
                    report,
                    format!("failed Add id {id} on tag {tag} is present in the final state"),
                );
            }
            (Outcome::Indeterminate, true) => report.indeterminate_adds_applied += 1,
            (Outcome::Indeterminate, false) => report.indeterminate_adds_absent += 1,
            _ => {}
        }
    }

    let mut duplicated: HashSet<u64> = HashSet::new();
    for (&id, &count) in &in_state {
        if count > 1 && duplicated.insert(id) {
            example(
                report,
                format!(
                    "duplicate apply: id {id} occurs {count} times in the final state of tag {tag}"
                ),
            );
        }
        if !add_outcomes.contains_key(&id) {
            report.unknown_ids += 1;
            example(
                report,
                format!("unknown id {id} in the final state of tag {tag}: no Add of the history inserted it"),
            );
        }
    }

    // Stale reads: the Adds a Query must see are those acknowledged before it started, a
    // prefix of the acknowledged Adds sorted by acknowledgement time.
    let mut acked: Vec<(u64, u64)> = ops
        .adds
        .iter()
        .filter(|add| add.outcome == Outcome::Ok)
        .filter_map(|add| add.id.map(|id| (add.complete_ns, id)))
        .collect();
    acked.sort_unstable();

    let mut seen = HashSet::new();
    for query in &ops.queries {
        if query.outcome != Outcome::Ok {
            continue;
        }
        let output = query.output.as_deref().unwrap_or(&[]);
        seen.clear();
        for &id in output {
            if !seen.insert(id) && duplicated.insert(id) {
                example(
                    report,
                    format!("duplicate apply: id {id} occurs twice in a Query result on tag {tag} (session {}, invoked at {} ns)", query.session, query.invoke_ns),
                );
            }
            if add_outcomes.get(&id) == Some(&Outcome::Failed) {
                report.failed_adds_present += 1;
                example(
                    report,
                    format!(
                        "failed Add id {id} on tag {tag} is visible to a Query of session {}",
                        query.session
                    ),
                );
            }
        }

        let must_see = acked.partition_point(|&(acked_ns, _)| acked_ns < query.invoke_ns);
        if let Some(&(acked_ns, missing)) =
            acked[..must_see].iter().find(|(_, id)| !seen.contains(id))
        {
            report.stale_reads += 1;
            example(
                report,
                format!("stale read: Query on tag {tag} by session {} invoked at {} ns misses id {missing}, acknowledged at {acked_ns} ns", query.session, query.invoke_ns),
            );
        }
    }
    report.duplicate_applies += duplicated.len() as u64;
}

#[cfg(test)]
mod tests;
