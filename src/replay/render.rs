//! Human-readable report of an [`Analysis`], for `ringraft replay <LOG>`.
//!
//! The report has the sections a reader checks in order: what was read (and what was not),
//! the workload, the latency the log shows, the failover timeline, terms and member ids. Offsets
//! are from the first line of the log; the timestamp column repeats the log's own clock so a
//! reader can find each line.

use std::fmt::Write;

use super::line::Role;
use super::stats::Percentiles;
use super::timeline::{Member, PollOutcome, TimelineKind};
use super::workload::Sequences;
use super::Analysis;

impl Analysis {
    /// Formats the analysis as a plain-text report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        self.render_header(&mut out);
        self.render_workload(&mut out);
        self.render_latency(&mut out);
        self.render_timeline(&mut out);
        self.render_terms(&mut out);
        out
    }

    fn render_header(&self, out: &mut String) {
        let _ = writeln!(out, "Copycat log {}", self.source);
        let _ = writeln!(
            out,
            "  servers:  {}",
            if self.servers.is_empty() {
                "(no address prefix)".to_string()
            } else {
                self.servers.join(", ")
            }
        );
        let _ = writeln!(
            out,
            "  span:     {} to {} ({})",
            self.first_timestamp,
            self.last_timestamp,
            format_ms(self.duration_ms)
        );
        for jump in &self.excerpt_jumps {
            let _ = writeln!(
                out,
                "  excerpt jump at line {}: {} -> {} ({}); gaps, latencies and silences do not span it",
                jump.line,
                jump.from,
                jump.to,
                format_signed_ms(jump.step_ms)
            );
        }
        if !self.excerpt_jumps.is_empty() {
            let _ = writeln!(
                out,
                "  active time (jumps left out): {}",
                format_ms(self.active_duration_ms)
            );
        }

        let counts = &self.lines;
        let _ = writeln!(
            out,
            "  lines:    {} total, {} interpreted, {} continuation, {} blank, {} uninterpreted",
            counts.total,
            counts.interpreted,
            counts.continuation,
            counts.blank,
            counts.uninterpreted
        );
        if counts.uninterpreted > 0 {
            let _ = writeln!(
                out,
                "  uninterpreted lines (first {} of {}):",
                self.uninterpreted.len(),
                counts.uninterpreted
            );
            for line in &self.uninterpreted {
                let _ = writeln!(
                    out,
                    "    line {}: {}: {}",
                    line.line, line.reason, line.text
                );
            }
        }
    }

    fn render_workload(&self, out: &mut String) {
        let workload = &self.workload;
        let _ = writeln!(out, "\nWorkload");
        let ids: Vec<String> = workload.sessions.iter().map(|s| s.id.to_string()).collect();
        let _ = writeln!(
            out,
            "  sessions: {} ({})",
            workload.sessions.len(),
            ids.join(", ")
        );
        for session in &workload.sessions {
            let _ = writeln!(
                out,
                "    session {:>6}: {} commands{}, {} queries{}, {} keep-alives",
                session.id,
                session.commands.count,
                sequence_text(&session.commands),
                session.queries.count,
                sequence_text(&session.queries),
                session.keep_alives
            );
        }

        let total = workload.commands + workload.queries;
        if total == 0 {
            let _ = writeln!(
                out,
                "  no client command or query arrives at these servers in this log"
            );
            return;
        }
        let operations: Vec<String> = workload
            .operations
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let _ = writeln!(
            out,
            "  mix:      {} commands : {} queries ({:.1}% commands; {})",
            workload.commands,
            workload.queries,
            workload.command_fraction * 100.0,
            operations.join(", ")
        );
        let arrivals = &workload.arrivals;
        let _ = writeln!(
            out,
            "  arrivals: {} over {} = {:.1}/s",
            arrivals.requests,
            format_ms(arrivals.span_ms),
            arrivals.rate_per_s
        );
        if let Some(gaps) = &arrivals.inter_arrival {
            let _ = writeln!(out, "  inter-arrival: {}", percentiles_text(gaps));
        }
        if let Some(interleaving) = &workload.interleaving {
            let cycle: Vec<String> = interleaving
                .cycle
                .iter()
                .map(|step| format!("{}{}", step.kind.letter(), step.session))
                .collect();
            let order: Vec<String> = interleaving
                .session_order
                .iter()
                .map(u64::to_string)
                .collect();
            let source = if interleaving.inferred {
                "too few or irregular arrivals to show a cycle, so it is built from the session order; it matches"
            } else {
                "reproduces"
            };
            let _ = writeln!(
                out,
                "  interleaving: cycle of {} [{}] {source} {:.0}% of arrivals (C = command, Q = query, number = session)",
                interleaving.cycle.len(),
                cycle.join(" "),
                interleaving.cycle_match * 100.0
            );
            let alternation = match interleaving.alternation {
                Some(fraction) => format!(
                    "each session alternates command and query {:.0}% of the time",
                    fraction * 100.0
                ),
                None => "no session has two operations, so alternation is not measured".to_string(),
            };
            let _ = writeln!(
                out,
                "    sessions take turns in order {} for {:.0}% of arrivals; {alternation}",
                order.join(" -> "),
                interleaving.round_robin * 100.0
            );
        }
    }

    fn render_latency(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nLatency in the log (Received -> Sent on the same server, ms)"
        );
        if self.latency.is_empty() {
            let _ = writeln!(out, "  no request/response pair in this log");
            return;
        }
        let _ = writeln!(
            out,
            "  {:<24} {:<8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7}  notes",
            "request", "dir", "pairs", "p50", "p90", "p99", "max", "mean"
        );
        for stats in &self.latency {
            let figures = match &stats.latency {
                Some(p) => format!(
                    "{:>7} {:>7} {:>7} {:>7} {:>7.1}",
                    trim_ms(p.p50_ms),
                    trim_ms(p.p90_ms),
                    trim_ms(p.p99_ms),
                    trim_ms(p.max_ms),
                    p.mean_ms
                ),
                None => format!("{:>7} {:>7} {:>7} {:>7} {:>7}", "-", "-", "-", "-", "-"),
            };
            let mut notes = Vec::new();
            for (error, count) in &stats.errors {
                notes.push(format!("{count} {error}"));
            }
            if stats.unanswered > 0 {
                notes.push(format!("{} unanswered", stats.unanswered));
            }
            if stats.unmatched_responses > 0 {
                notes.push(format!(
                    "{} responses to requests before the log",
                    stats.unmatched_responses
                ));
            }
            if stats.across_excerpts > 0 {
                notes.push(format!("{} across an excerpt jump", stats.across_excerpts));
            }
            let _ = writeln!(
                out,
                "  {:<24} {:<8} {:>6} {}  {}",
                stats.request,
                stats.direction,
                stats.latency.as_ref().map_or(0, |p| p.count),
                figures,
                notes.join(", ")
            );
        }
    }

    fn render_timeline(&self, out: &mut String) {
        let timeline = &self.timeline;
        let _ = writeln!(out, "\nFailover timeline (offset from the first line)");
        match &timeline.leader_silence {
            Some(silence) => {
                let _ = writeln!(
                    out,
                    "  longest leader silence: {} from {} to {} (leader {}{}; {})",
                    format_ms(silence.duration_ms),
                    silence.start.time,
                    silence.end.time,
                    member_text(&silence.leader),
                    silence
                        .term
                        .map(|t| format!(", term {t}"))
                        .unwrap_or_default(),
                    silence.observed
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  longest leader silence: no leader activity in this log"
                );
            }
        }
        if let Some(window) = &timeline.longest_unserved {
            let _ = writeln!(
                out,
                "  longest time without a successful client response: {} from {} to {}{}",
                format_ms(window.duration_ms),
                window.start.time,
                window.end.time,
                if window.open_at_end {
                    " (still open where the log ends, so a lower bound)"
                } else {
                    ""
                }
            );
        }
        let expired: Vec<String> = timeline
            .expired_sessions
            .iter()
            .map(u64::to_string)
            .collect();
        let _ = writeln!(
            out,
            "  sessions expired: {}",
            if expired.is_empty() {
                "none".to_string()
            } else {
                expired.join(", ")
            }
        );

        for event in &timeline.events {
            let _ = writeln!(
                out,
                "  {:>11}  {}  line {:>5}  {}",
                format_signed_ms(event.at.offset_ms),
                clock_of(&event.at.time),
                event.at.line,
                describe(&event.kind)
            );
        }
    }

    fn render_terms(&self, out: &mut String) {
        let _ = writeln!(out, "\nTerms");
        for info in &self.timeline.terms {
            let leader = match (&info.leader, &info.leader_evidence) {
                (Some(leader), Some(evidence)) => {
                    format!("leader {} ({evidence})", member_text(leader))
                }
                _ => "leader not shown in this log".to_string(),
            };
            let candidates: Vec<String> = info.candidates.iter().map(u64::to_string).collect();
            let candidates = if candidates.is_empty() {
                String::new()
            } else {
                format!("; candidates {}", candidates.join(", "))
            };
            let _ = writeln!(
                out,
                "  term {:>3}: first seen {}, {leader}{candidates}",
                info.term,
                clock_of(&info.first_seen.time)
            );
        }

        let _ = writeln!(out, "\nMember ids");
        if self.timeline.member_ids.is_empty() {
            let _ = writeln!(out, "  the log names no member id");
        }
        for member in &self.timeline.member_ids {
            match &member.address {
                Some(address) => {
                    let _ = writeln!(out, "  {} = {address} ({})", member.id, member.evidence);
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  {} = address unknown: {}",
                        member.id, member.evidence
                    );
                }
            }
        }
    }
}

fn describe(kind: &TimelineKind) -> String {
    match kind {
        TimelineKind::ExcerptJump { step_ms } => {
            format!("log jumps by {}: a new excerpt starts", format_signed_ms(*step_ms))
        }
        TimelineKind::LeaderSilence { leader, term, duration_ms, until } => format!(
            "leader {}{} silent for {} (until {})",
            member_text(leader),
            term.map(|t| format!(" of term {t}")).unwrap_or_default(),
            format_ms(*duration_ms),
            clock_of(until)
        ),
        TimelineKind::HeartbeatTimeout { server, after_ms } => {
            format!("{}heartbeat timed out after {after_ms} ms", server_prefix(server))
        }
        TimelineKind::PollRound { server, next_term, polled, accepted_by, rejected_by, failed_requests, outcome } => {
            let outcome = match outcome {
                PollOutcome::Majority => "a majority accepted".to_string(),
                PollOutcome::NoMajority { after_ms } => format!("failed to reach a majority within {after_ms} ms"),
                PollOutcome::Rejected => "no majority possible (rejections and failed requests)".to_string(),
                PollOutcome::Unresolved => "unresolved in this log".to_string(),
            };
            let mut replies = Vec::new();
            if !accepted_by.is_empty() {
                replies.push(format!("accepted by {}", accepted_by.join(", ")));
            }
            if !rejected_by.is_empty() {
                replies.push(format!("rejected by {}", rejected_by.join(", ")));
            }
            if *failed_requests > 0 {
                replies.push(format!("{failed_requests} requests timed out"));
            }
            format!(
                "{}poll for term {} of {}: {outcome}{}",
                server_prefix(server),
                next_term.map_or("?".to_string(), |t| t.to_string()),
                polled.join(", "),
                if replies.is_empty() { String::new() } else { format!(" ({})", replies.join("; ")) }
            )
        }
        TimelineKind::PollReceived { server, candidate, term, log_index, log_term, accepted, reason } => format!(
            "{}PollRequest term={} from candidate {} (pre-vote for term {}, last entry {}/term {}): {}{}",
            server_prefix(server),
            option_text(term),
            option_text(candidate),
            term.map_or("?".to_string(), |t| (t + 1).to_string()),
            option_text(log_index),
            option_text(log_term),
            verdict_text(*accepted, "accepted", "rejected"),
            reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
        TimelineKind::VoteReceived { server, candidate, term, log_index, log_term, granted, reason } => format!(
            "{}VoteRequest term={} from candidate {} (last entry {}/term {}): {}{}",
            server_prefix(server),
            option_text(term),
            option_text(candidate),
            option_text(log_index),
            option_text(log_term),
            verdict_text(*granted, "granted", "rejected"),
            reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
        TimelineKind::ReceivedGreaterTerm { server } => format!("{}received a greater term", server_prefix(server)),
        TimelineKind::TermChange { from, to, evidence } => {
            format!("term {} -> {to} ({evidence})", option_text(from))
        }
        TimelineKind::RoleChange { server, from, to, evidence } => format!(
            "{}{} -> {} ({evidence})",
            server_prefix(server),
            role_text(*from),
            role_text(*to)
        ),
        TimelineKind::StepDown { server, term, evidence } => format!(
            "{}leader{} steps down ({evidence})",
            server_prefix(server),
            term.map(|t| format!(" of term {t}")).unwrap_or_default()
        ),
        TimelineKind::AppendRejected { server, leader, term, prev_index, prev_term, reason, .. } => format!(
            "{}rejected AppendRequest term={} from leader {} at previous entry {}/term {}: {reason}",
            server_prefix(server),
            option_text(term),
            option_text(leader),
            option_text(prev_index),
            option_text(prev_term)
        ),
        TimelineKind::RequestRejected { server, request, reason } => {
            format!("{}rejected {request}: {reason}", server_prefix(server))
        }
        TimelineKind::Truncation { server, leader, term, first_removed_index, removed } => {
            let removed_text = if removed.is_empty() {
                "no removed entry is shown in this log".to_string()
            } else {
                let entries: Vec<String> = removed.iter().map(|(index, term)| format!("{index} (term {term})")).collect();
                format!("entries {}", entries.join(", "))
            };
            format!(
                "{}truncated its log from index {} on AppendRequest term={} from leader {}: {removed_text}",
                server_prefix(server),
                option_text(first_removed_index),
                option_text(term),
                option_text(leader)
            )
        }
        TimelineKind::ConfigurationEntry { server, index, term, members } => format!(
            "{}appended ConfigurationEntry index={} term={}: members {}",
            server_prefix(server),
            option_text(index),
            option_text(term),
            members.join(", ")
        ),
        TimelineKind::ConfigureRequest { server, leader, term, index, members } => format!(
            "{}ConfigureRequest term={} from leader {} for configuration index {}: members {}",
            server_prefix(server),
            option_text(term),
            option_text(leader),
            option_text(index),
            members.join(", ")
        ),
        TimelineKind::SessionUnregistered { session, expired, index, term } => format!(
            "session {session} unregistered{} (UnregisterEntry index={} term={})",
            if *expired { " as expired" } else { "" },
            option_text(index),
            option_text(term)
        ),
        TimelineKind::ClientError { server, response, error, count, last } => {
            let repeated =
                if *count > 1 { format!(" {count} times, the last at {}", clock_of(last)) } else { String::new() };
            format!("{}sent a client {response} {error}{repeated}", server_prefix(server))
        }
        TimelineKind::RequestTimedOut { server } => format!("{}a request to a peer timed out", server_prefix(server)),
    }
}

fn member_text(member: &Member) -> String {
    match (&member.address, member.id) {
        (Some(address), Some(id)) => format!("{address} (id {id})"),
        (Some(address), None) => address.clone(),
        (None, Some(id)) => format!("id {id} (address not in this log)"),
        (None, None) => "unknown".to_string(),
    }
}

fn sequence_text(sequences: &Sequences) -> String {
    if sequences.ranges.is_empty() {
        return String::new();
    }
    let ranges: Vec<String> = sequences
        .ranges
        .iter()
        .map(|(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect();
    let repeated = if sequences.repeated > 0 {
        format!(", {} repeated", sequences.repeated)
    } else {
        String::new()
    };
    format!(" (seq {}{repeated})", ranges.join(", "))
}

fn percentiles_text(p: &Percentiles) -> String {
    format!(
        "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} gaps)",
        trim_ms(p.p50_ms),
        trim_ms(p.p90_ms),
        trim_ms(p.p99_ms),
        trim_ms(p.max_ms),
        p.count
    )
}

fn verdict_text(outcome: Option<bool>, yes: &str, no: &str) -> String {
    match outcome {
        Some(true) => yes.to_string(),
        Some(false) => no.to_string(),
        None => "outcome not in this log".to_string(),
    }
}

fn role_text(role: Option<Role>) -> &'static str {
    role.map_or("(state not shown)", Role::name)
}

fn server_prefix(server: &Option<String>) -> String {
    server.as_ref().map(|s| format!("{s} ")).unwrap_or_default()
}

fn option_text(value: &Option<u64>) -> String {
    value.map_or("?".to_string(), |v| v.to_string())
}

/// Time of day part of a log timestamp (`16:35:29.155`).
fn clock_of(timestamp: &str) -> &str {
    let time = timestamp
        .split_once(['T', ' '])
        .map_or(timestamp, |(_, time)| time);
    time.get(..12).unwrap_or(time)
}

fn trim_ms(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn format_ms(ms: i64) -> String {
    if ms.abs() < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.3} s", ms as f64 / 1_000.0)
    }
}

fn format_signed_ms(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "+" };
    format!("{sign}{}", format_ms(ms.abs()))
}
