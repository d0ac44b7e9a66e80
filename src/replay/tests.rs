//! Tests of the Copycat log analysis on the real fixtures and on damaged input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::message::{parse_message, Message};
use super::record::{parse_java_duration_ms, Record, RecordError};
use super::*;

const STEADY: &str = "steady-leader.log";
const STALL: &str = "leader-stall-and-step-down.log";
const FOLLOWER: &str = "follower-elections.log";

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/copycat-logs")
        .join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).expect("fixture is readable")
}

fn fixture(name: &str) -> Analysis {
    analyze_file(&fixture_path(name)).expect("fixture analyses")
}

fn events_of<'a>(
    analysis: &'a Analysis,
    predicate: impl Fn(&TimelineKind) -> bool + 'a,
) -> Vec<&'a TimelineEvent> {
    analysis
        .timeline
        .events
        .iter()
        .filter(|e| predicate(&e.kind))
        .collect()
}

fn session_ids(analysis: &Analysis) -> Vec<u64> {
    analysis.workload.sessions.iter().map(|s| s.id).collect()
}

// --- one line -----------------------------------------------------------------------------

#[test]
fn record_parses_nested_values() {
    let text = "ConfigureRequest[term=3, leader=176061669, members=[ServerMember[type=ACTIVE, serverAddress=/127.0.0.12:8701], ServerMember[type=ACTIVE, serverAddress=/127.0.0.13:8701]]] tail";
    let (record, rest) = Record::parse_prefix(text).unwrap();
    assert_eq!(record.kind, "ConfigureRequest");
    assert_eq!(record.get_u64("term"), Some(3));
    assert_eq!(record.get_u64("leader"), Some(176061669));
    assert_eq!(record.get_list("members").unwrap().len(), 2);
    assert_eq!(rest, " tail");
}

#[test]
fn record_unclosed_is_error() {
    let cut = "CommandRequest[session=4, sequence=42356, command=com.exa";
    assert_eq!(
        Record::parse_prefix(cut).unwrap_err(),
        RecordError::Unclosed
    );
    assert_eq!(
        Record::parse_prefix("no record here").unwrap_err(),
        RecordError::NotARecord
    );
}

#[test]
fn operation_class_strips_package_and_hash() {
    let (record, _) =
        Record::parse_prefix("CommandRequest[session=9, sequence=1, command=com.example.resemble.copycat.AddCommand@28977d12]")
            .unwrap();
    assert_eq!(
        record.operation_class("command").as_deref(),
        Some("AddCommand")
    );
}

#[test]
fn java_duration_to_ms() {
    assert_eq!(parse_java_duration_ms("PT0.762S"), Some(762));
    assert_eq!(parse_java_duration_ms("PT1.377S"), Some(1377));
    assert_eq!(parse_java_duration_ms("PT1M2.5S"), Some(62_500));
    assert_eq!(parse_java_duration_ms("0.75"), None);
    assert_eq!(parse_java_duration_ms("PT0.75"), None);
}

#[test]
fn message_forms_are_recognised() {
    let verdict = parse_message(
        "Rejected VoteRequest[term=2, candidate=176062743, logIndex=129248, logTerm=1]: candidate's last log entry (129248) is at a lower index than the local log (129250)",
    )
    .unwrap();
    match verdict {
        Message::Verdict {
            accepted,
            record,
            reason,
        } => {
            assert!(!accepted);
            assert_eq!(record.kind, "VoteRequest");
            assert!(reason.starts_with("candidate's last log entry"));
        }
        other => panic!("expected a verdict, got {other:?}"),
    }

    let sent = parse_message("Sent AppendRequest[term=1, leader=176061172, logIndex=36936, entries=[0]] to /127.0.0.12:8701").unwrap();
    assert!(matches!(sent, Message::Sent { peer: Some(ref p), .. } if p == "/127.0.0.12:8701"));

    let polling = parse_message(
        "Polling ServerMember[type=ACTIVE, status=AVAILABLE, serverAddress=/127.0.0.12:8701, clientAddress=null] for next term 4",
    )
    .unwrap();
    assert_eq!(
        polling,
        Message::PollingMember {
            member: "/127.0.0.12:8701".to_string(),
            next_term: 4
        }
    );

    assert_eq!(
        parse_message("Cancelling append timer").unwrap(),
        Message::AppendTimerCancelled
    );
    assert_eq!(
        parse_message("Received greater term").unwrap(),
        Message::ReceivedGreaterTerm
    );
    assert!(parse_message("Something Copycat never logs").is_err());
}

// --- steady-leader.log --------------------------------------------------------------------

#[test]
fn steady_sessions_and_mix() {
    let analysis = fixture(STEADY);
    assert_eq!(session_ids(&analysis), vec![4, 9, 19]);
    assert_eq!(analysis.workload.commands, 1);
    assert_eq!(analysis.workload.queries, 2);
    assert_eq!(analysis.lines.uninterpreted, 0);
    assert_eq!(analysis.lines.interpreted, 20);
}

#[test]
fn steady_command_latency_pairs_by_index() {
    let analysis = fixture(STEADY);
    let commands = analysis
        .latency
        .iter()
        .find(|s| s.request == "CommandRequest")
        .unwrap();

    // The first CommandResponse belongs to a command from before the excerpt.
    assert_eq!(commands.unmatched_responses, 1);
    let latency = commands.latency.as_ref().unwrap();
    assert_eq!(latency.count, 1);
    assert_eq!(latency.max_ms, 2.0);
}

#[test]
fn steady_maps_leader_id_to_address() {
    let analysis = fixture(STEADY);
    let member = analysis
        .timeline
        .member_ids
        .iter()
        .find(|m| m.id == 176061172)
        .unwrap();
    assert_eq!(member.address.as_deref(), Some("/127.0.0.11:8701"));
    let term = &analysis.timeline.terms[0];
    assert_eq!(term.term, 1);
    assert_eq!(term.leader.as_ref().unwrap().id, Some(176061172));
}

#[test]
fn steady_short_log_infers_cycle() {
    let analysis = fixture(STEADY);
    let interleaving = analysis.workload.interleaving.as_ref().unwrap();
    assert!(interleaving.inferred);
    assert_eq!(interleaving.alternation, None);
    assert_eq!(interleaving.session_order, vec![4, 9, 19]);
    assert_eq!(interleaving.cycle.len(), 6);
    let plan = analysis.plan(1.0).unwrap();
    assert!(plan.pause.is_none());
    assert_eq!(plan.mix, (1, 2));
}

// --- leader-stall-and-step-down.log -------------------------------------------------------

#[test]
fn stall_sessions_4_9_19() {
    let analysis = fixture(STALL);
    assert_eq!(session_ids(&analysis), vec![4, 9, 19]);
    let session4 = &analysis.workload.sessions[0];
    assert_eq!(session4.commands.ranges, vec![(42356, 42362)]);
    assert_eq!(session4.commands.count, 7);
    assert_eq!(analysis.workload.commands, 17);
    assert_eq!(analysis.workload.queries, 17);
    assert_eq!(analysis.workload.operations.get("AddCommand"), Some(&17));
    assert_eq!(analysis.workload.operations.get("QueryCommand"), Some(&17));
}

#[test]
fn stall_leader_silence_2546ms() {
    let analysis = fixture(STALL);
    let silence = analysis.timeline.leader_silence.as_ref().unwrap();
    assert_eq!(silence.duration_ms, 2546);
    assert_eq!(silence.start.time, "2017-05-05T16:35:29.155+08:00");
    assert_eq!(silence.end.time, "2017-05-05T16:35:31.701+08:00");
    assert_eq!(silence.start.offset_ms, 193);
    assert_eq!(silence.leader.address.as_deref(), Some("/127.0.0.11:8701"));
    assert_eq!(silence.term, Some(1));
}

#[test]
fn stall_poll_for_term_2_rejected() {
    let analysis = fixture(STALL);
    let polls = events_of(&analysis, |k| {
        matches!(k, TimelineKind::PollReceived { .. })
    });
    assert_eq!(polls.len(), 1);
    match &polls[0].kind {
        TimelineKind::PollReceived {
            candidate,
            term,
            accepted,
            ..
        } => {
            assert_eq!(*candidate, Some(176062743));
            // A PollRequest carries the candidate's current term; the election is for the next.
            assert_eq!(*term, Some(1));
            assert_eq!(*accepted, Some(false));
        }
        _ => unreachable!(),
    }
    let term2 = analysis
        .timeline
        .terms
        .iter()
        .find(|t| t.term == 2)
        .unwrap();
    assert_eq!(term2.candidates, vec![176062743]);
}

#[test]
fn stall_vote_for_term_2_rejected_with_reason() {
    let analysis = fixture(STALL);
    let votes = events_of(&analysis, |k| {
        matches!(k, TimelineKind::VoteReceived { .. })
    });
    assert_eq!(votes.len(), 1);
    match &votes[0].kind {
        TimelineKind::VoteReceived {
            candidate,
            term,
            granted,
            reason,
            log_index,
            ..
        } => {
            assert_eq!(*candidate, Some(176062743));
            assert_eq!(*term, Some(2));
            assert_eq!(*log_index, Some(129248));
            assert_eq!(*granted, Some(false));
            assert_eq!(
                reason.as_deref(),
                Some("candidate's last log entry (129248) is at a lower index than the local log (129250)")
            );
        }
        _ => unreachable!(),
    }
    assert_eq!(votes[0].at.time, "2017-05-05T16:35:31.704+08:00");
}

#[test]
fn stall_leader_steps_down() {
    let analysis = fixture(STALL);
    let step_downs = events_of(&analysis, |k| matches!(k, TimelineKind::StepDown { .. }));
    assert_eq!(step_downs.len(), 1);
    assert_eq!(step_downs[0].at.time, "2017-05-05T16:35:31.704+08:00");
    match &step_downs[0].kind {
        TimelineKind::StepDown { server, term, .. } => {
            assert_eq!(server.as_deref(), Some("/127.0.0.11:8701"));
            assert_eq!(*term, Some(1));
        }
        _ => unreachable!(),
    }
    let changes = events_of(&analysis, |k| {
        matches!(
            k,
            TimelineKind::TermChange {
                from: Some(1),
                to: 2,
                ..
            }
        )
    });
    assert_eq!(changes.len(), 1);
    assert_eq!(
        events_of(&analysis, |k| matches!(
            k,
            TimelineKind::ReceivedGreaterTerm { .. }
        ))
        .len(),
        1
    );
}

#[test]
fn stall_latency_shows_stalled_command() {
    let analysis = fixture(STALL);
    let commands = analysis
        .latency
        .iter()
        .find(|s| s.request == "CommandRequest")
        .unwrap();
    let latency = commands.latency.as_ref().unwrap();
    assert_eq!(latency.count, 17);
    assert_eq!(latency.max_ms, 2546.0);
    assert_eq!(latency.p50_ms, 3.0);
    let window = analysis.timeline.longest_unserved.as_ref().unwrap();
    assert_eq!(window.duration_ms, 2546);
    assert!(!window.open_at_end);
}

#[test]
fn stall_interleaving_cycle_of_six() {
    let analysis = fixture(STALL);
    let interleaving = analysis.workload.interleaving.as_ref().unwrap();
    assert!(!interleaving.inferred);
    let cycle: Vec<(u64, OpKind)> = interleaving
        .cycle
        .iter()
        .map(|s| (s.session, s.kind))
        .collect();
    assert_eq!(
        cycle,
        vec![
            (4, OpKind::Command),
            (9, OpKind::Query),
            (19, OpKind::Command),
            (4, OpKind::Query),
            (9, OpKind::Command),
            (19, OpKind::Query),
        ]
    );
    assert!(interleaving.cycle_match >= 0.9);
    assert_eq!(interleaving.round_robin, 1.0);
    assert!(interleaving.alternation.unwrap() > 0.9);
}

#[test]
fn stall_plan_scales_with_speed() {
    let analysis = fixture(STALL);
    let normal = analysis.plan(1.0).unwrap();
    assert_eq!(normal.sessions, 3);
    assert_eq!(normal.session_ids, vec![4, 9, 19]);
    assert_eq!(normal.add_fraction, 0.5);
    assert_eq!(normal.mix, (1, 1));
    let pause = normal.pause.unwrap();
    // The load starts at the first arrival (16:35:28.965); the silence starts 190 ms later.
    assert_eq!(pause.at_offset, Duration::from_millis(190));
    assert_eq!(pause.duration, Duration::from_millis(2546));
    assert_eq!(normal.log_unavailable_ms, Some(2546));
    assert!(normal.log_sessions_expired.is_empty());
    assert_eq!(normal.log_latency["CommandRequest"].max_ms, 2546.0);

    assert_eq!(pause.fault_spec(), "pause:leader@190ms+2546ms");

    let fast = analysis.plan(10.0).unwrap();
    assert!((fast.rate_per_s - normal.rate_per_s * 10.0).abs() < 1e-9);
    assert_eq!(fast.pause.unwrap().at_offset, Duration::from_millis(19));
    assert_eq!(fast.pause.unwrap().duration, Duration::from_millis(2546));
    assert_eq!(fast.log_duration, normal.log_duration);
}

#[test]
fn plan_rejects_invalid_speed() {
    let analysis = fixture(STALL);
    for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let error = analysis.plan(speed).unwrap_err();
        assert!(
            matches!(error, ReplayError::InvalidSpeed { .. }),
            "speed {speed}"
        );
        assert!(error.to_string().contains("greater than 0"));
    }
}

#[test]
fn stall_report_text_names_the_incident() {
    let text = fixture(STALL).render_text();
    assert!(text.contains("sessions: 3 (4, 9, 19)"), "{text}");
    assert!(
        text.contains("2.546 s from 2017-05-05T16:35:29.155+08:00"),
        "{text}"
    );
    assert!(
        text.contains("PollRequest term=1 from candidate 176062743 (pre-vote for term 2"),
        "{text}"
    );
    assert!(
        text.contains("VoteRequest term=2 from candidate 176062743"),
        "{text}"
    );
    assert!(
        text.contains("is at a lower index than the local log (129250)"),
        "{text}"
    );
    assert!(text.contains("steps down"), "{text}");
}

// --- follower-elections.log ---------------------------------------------------------------

#[test]
fn follower_failed_polls() {
    let analysis = fixture(FOLLOWER);
    let rounds: Vec<(Option<u64>, PollOutcome, u64)> = analysis
        .timeline
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::PollRound {
                next_term,
                outcome,
                failed_requests,
                ..
            } => Some((*next_term, outcome.clone(), *failed_requests)),
            _ => None,
        })
        .collect();
    assert_eq!(
        rounds,
        vec![
            (Some(1), PollOutcome::NoMajority { after_ms: 750 }, 0),
            (Some(1), PollOutcome::NoMajority { after_ms: 750 }, 0),
            (Some(1), PollOutcome::NoMajority { after_ms: 750 }, 0),
            (Some(1), PollOutcome::Majority, 0),
            (Some(4), PollOutcome::Rejected, 2),
        ]
    );
    assert_eq!(
        events_of(&analysis, |k| matches!(
            k,
            TimelineKind::HeartbeatTimeout { .. }
        ))
        .len(),
        5
    );
}

#[test]
fn follower_mismatched_term_rejections() {
    let analysis = fixture(FOLLOWER);
    let rejections: Vec<(Option<u64>, Option<u64>, Option<u64>)> = analysis
        .timeline
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::AppendRejected {
                prev_index,
                prev_term,
                local_term,
                reason,
                ..
            } => {
                assert!(reason.contains("does not match local log term 1"));
                Some((*prev_index, *prev_term, *local_term))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rejections,
        vec![
            (Some(129249), Some(2), Some(1)),
            (Some(129250), Some(3), Some(1))
        ]
    );
}

#[test]
fn follower_truncation_of_term_1_entries() {
    let analysis = fixture(FOLLOWER);
    let truncations = events_of(&analysis, |k| matches!(k, TimelineKind::Truncation { .. }));
    assert_eq!(truncations.len(), 1);
    assert_eq!(truncations[0].at.time, "2017-05-05T16:35:31.788+08:00");
    match &truncations[0].kind {
        TimelineKind::Truncation {
            first_removed_index,
            removed,
            leader,
            term,
            ..
        } => {
            assert_eq!(*first_removed_index, Some(129249));
            assert_eq!(removed, &vec![(129249, 1), (129250, 1)]);
            assert_eq!(*leader, Some(176061669));
            assert_eq!(*term, Some(3));
        }
        _ => unreachable!(),
    }
}

#[test]
fn follower_term_3_leader() {
    let analysis = fixture(FOLLOWER);
    let term3 = analysis
        .timeline
        .terms
        .iter()
        .find(|t| t.term == 3)
        .unwrap();
    assert_eq!(term3.leader.as_ref().unwrap().id, Some(176061669));
    // No line of this log ties the id to an address.
    assert_eq!(term3.leader.as_ref().unwrap().address, None);
    let term2 = analysis
        .timeline
        .terms
        .iter()
        .find(|t| t.term == 2)
        .unwrap();
    assert_eq!(term2.leader.as_ref().unwrap().id, Some(176062743));
    let unmapped = analysis
        .timeline
        .member_ids
        .iter()
        .filter(|m| m.address.is_none())
        .count();
    assert_eq!(unmapped, 2);
}

#[test]
fn follower_expired_session_4() {
    let analysis = fixture(FOLLOWER);
    assert_eq!(analysis.timeline.expired_sessions, vec![4]);
    let unregistered = events_of(&analysis, |k| {
        matches!(k, TimelineKind::SessionUnregistered { .. })
    });
    assert_eq!(unregistered.len(), 1);
    assert_eq!(unregistered[0].at.time, "2017-05-05T16:35:34.418+08:00");
    assert_eq!(analysis.plan(1.0).unwrap().log_sessions_expired, vec![4]);
}

#[test]
fn follower_configuration_entries() {
    let analysis = fixture(FOLLOWER);
    let entries: Vec<(Option<u64>, Option<u64>, usize)> = analysis
        .timeline
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::ConfigurationEntry {
                index,
                term,
                members,
                ..
            } => Some((*index, *term, members.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        entries,
        vec![(Some(129249), Some(2), 3), (Some(129250), Some(3), 3)]
    );
}

#[test]
fn follower_excerpt_jump_is_not_silence() {
    let analysis = fixture(FOLLOWER);
    assert_eq!(analysis.excerpt_jumps.len(), 1);
    assert_eq!(analysis.excerpt_jumps[0].line, 25);
    let silence = analysis.timeline.leader_silence.as_ref().unwrap();
    assert!(silence.duration_ms < EXCERPT_JUMP_MS);
    assert_eq!(silence.duration_ms, 2609);
    assert_eq!(silence.leader.id, Some(176061669));
    assert_eq!(
        analysis.active_duration_ms,
        analysis.duration_ms - analysis.excerpt_jumps[0].step_ms
    );
}

// --- damaged and foreign input ------------------------------------------------------------

#[test]
fn empty_file_is_error() {
    for text in ["", "\n\n  \n"] {
        let error = analyze_str(text, "empty.log").unwrap_err();
        assert!(matches!(error, ReplayError::Empty { .. }));
        assert!(error.to_string().contains("empty.log"));
    }
}

#[test]
fn other_format_is_not_copycat_log() {
    let access_log = "127.0.0.1 - - [04/Dec/2026:19:50:01 +0000] \"GET / HTTP/1.1\" 200 612\n\
                      127.0.0.1 - - [04/Dec/2026:19:50:02 +0000] \"GET /favicon.ico HTTP/1.1\" 404 153\n";
    let error = analyze_str(access_log, "access.log").unwrap_err();
    assert!(matches!(error, ReplayError::NotCopycatLog { .. }));
    let message = error.to_string();
    assert!(
        message.contains("access.log is not a Copycat server log"),
        "{message}"
    );
    assert!(message.contains("expected"), "{message}");
}

#[test]
fn other_logback_app_is_not_copycat_log() {
    let text = "2017-05-05T16:35:29.155+08:00 [main] INFO  c.e.Application - Started Application in 3.2 seconds\n";
    let error = analyze_str(text, "app.log").unwrap_err();
    assert!(matches!(error, ReplayError::NotCopycatLog { .. }));
    assert!(error
        .to_string()
        .contains("none carries a Copycat server message"));
}

#[test]
fn unreadable_file_names_path() {
    let error = analyze_file(Path::new("/nonexistent/copycat.log")).unwrap_err();
    assert!(matches!(error, ReplayError::Read { .. }));
    assert!(error.to_string().contains("/nonexistent/copycat.log"));
}

#[test]
fn cut_lines_are_reported_not_skipped() {
    let mut lines: Vec<String> = fixture_text(STALL).lines().map(str::to_string).collect();
    let record_cut = lines[49].find("sequence=").unwrap();
    lines[49].truncate(record_cut + 5);
    lines[59].truncate(60);
    let damaged = lines.join("\n");

    let analysis = analyze_str(&damaged, "cut.log").unwrap();
    assert_eq!(analysis.lines.uninterpreted, 2);
    assert_eq!(analysis.uninterpreted[0].line, 50);
    assert!(
        analysis.uninterpreted[0].reason.contains("never close"),
        "{:?}",
        analysis.uninterpreted[0]
    );
    assert_eq!(analysis.uninterpreted[1].line, 60);
    assert!(
        analysis.uninterpreted[1]
            .reason
            .contains("header is incomplete"),
        "{:?}",
        analysis.uninterpreted[1]
    );
    assert_eq!(analysis.lines.interpreted, 98);

    // The rest of the log is still analysed.
    assert_eq!(session_ids(&analysis), vec![4, 9, 19]);
    assert_eq!(
        analysis
            .timeline
            .leader_silence
            .as_ref()
            .unwrap()
            .duration_ms,
        2546
    );
    assert!(analysis
        .render_text()
        .contains("uninterpreted lines (first 2 of 2)"));
}

#[test]
fn foreign_lines_are_counted() {
    let mut text =
        String::from("[2.345s][info][gc] GC(12) Pause Young (Normal) 512M->128M 2546.1ms\n");
    text.push_str(&fixture_text(STEADY));
    text.push_str("\nplain text someone pasted\n");
    let analysis = analyze_str(&text, "mixed.log").unwrap();
    assert_eq!(analysis.lines.uninterpreted, 2);
    assert_eq!(analysis.lines.interpreted, 20);
    assert_eq!(analysis.uninterpreted[0].line, 1);
    // The fixture ends with a newline, so the pasted text follows one blank line.
    assert_eq!(analysis.lines.blank, 1);
    assert_eq!(analysis.uninterpreted[1].line, 23);
}

#[test]
fn only_first_uninterpreted_lines_kept() {
    let mut text = fixture_text(STEADY);
    for i in 0..25 {
        text.push_str(&format!("\nnoise {i}"));
    }
    let analysis = analyze_str(&text, "noisy.log").unwrap();
    assert_eq!(analysis.lines.uninterpreted, 25);
    assert_eq!(analysis.uninterpreted.len(), SHOWN_UNINTERPRETED);
}

#[test]
fn multi_line_entries_are_tolerated() {
    let prefix = "2017-05-05T16:35:32.751+08:00 [copycat-server-/127.0.0.11:8701-copycat]";
    let text = format!(
        "{prefix} WARN  i.a.c.server.state.FollowerState - /127.0.0.11:8701 - request timed out\n\
         java.net.ConnectException: connection refused\n\
         \tat io.atomix.catalyst.transport.netty.NettyClient.connect(NettyClient.java:101)\n\
         Caused by: java.io.IOException: reset\n\
         \t... 12 more\n\
         {prefix} INFO  i.a.c.server.state.FollowerState - /127.0.0.11:8701 - Polling members [ServerMember[type=ACTIVE, status=AVAILABLE, serverAddress=/127.0.0.12:8701, clientAddress=null],\n\
         ServerMember[type=ACTIVE, status=AVAILABLE, serverAddress=/127.0.0.13:8701, clientAddress=null]]\n"
    );
    let analysis = analyze_str(&text, "multiline.log").unwrap();
    assert_eq!(
        analysis.lines.uninterpreted, 0,
        "{:?}",
        analysis.uninterpreted
    );
    assert_eq!(analysis.lines.continuation, 5);
    assert_eq!(analysis.lines.interpreted, 2);
    let rounds = events_of(&analysis, |k| matches!(k, TimelineKind::PollRound { .. }));
    match &rounds[0].kind {
        TimelineKind::PollRound { polled, .. } => {
            assert_eq!(
                polled,
                &vec![
                    "/127.0.0.12:8701".to_string(),
                    "/127.0.0.13:8701".to_string()
                ]
            );
        }
        _ => unreachable!(),
    }
}

#[test]
fn backward_timestamp_starts_new_excerpt() {
    let lines: Vec<&str> = fixture_text(STEADY).leak().lines().collect();
    let mut text = lines[10..].join("\n");
    text.push('\n');
    text.push_str(&lines[..10].join("\n"));
    let analysis = analyze_str(&text, "reordered.log").unwrap();
    assert_eq!(
        analysis.excerpt_jumps.len(),
        0,
        "16 ms backwards is ordinary interleaving"
    );

    let shifted = fixture_text(STEADY).replace("16:16:17.08", "16:14:17.08");
    let analysis = analyze_str(&shifted, "shifted.log").unwrap();
    assert_eq!(analysis.excerpt_jumps.len(), 1);
    assert!(analysis.excerpt_jumps[0].step_ms > EXCERPT_JUMP_MS);
}

#[test]
fn analysis_serializes_to_json() {
    let analysis = fixture(FOLLOWER);
    let json = serde_json::to_value(&analysis).unwrap();
    assert_eq!(json["timeline"]["expired_sessions"], serde_json::json!([4]));
    let kinds: Vec<&str> = json["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"truncation"));
    assert!(kinds.contains(&"poll_round"));
    let poll = json["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "poll_round")
        .unwrap();
    assert_eq!(poll["outcome"], "no_majority");
    assert!(serde_json::to_string(&analysis.plan(2.0).unwrap()).is_ok());
}

#[test]
fn member_id_prefix_is_accepted() {
    let text = fixture_text(STEADY).replace(" - /127.0.0.11:8701 - ", " - 176061172 - ");
    let analysis = analyze_str(&text, "id-prefix.log").unwrap();
    assert_eq!(analysis.lines.uninterpreted, 0);
    assert_eq!(analysis.servers, vec!["176061172".to_string()]);
    assert_eq!(session_ids(&analysis), vec![4, 9, 19]);
}

#[test]
fn repeated_client_errors_collapse() {
    let prefix = "2017-05-05T16:35:33.906+08:00 [copycat-server-/127.0.0.11:8701-copycat] DEBUG i.a.c.server.state.FollowerState - /127.0.0.11:8701 -";
    let mut text = String::new();
    for _ in 0..3 {
        text.push_str(&format!(
            "{prefix} Received ConnectRequest[client=86631390]\n"
        ));
        text.push_str(&format!(
            "{prefix} Sent ConnectResponse[status=ERROR, leader=null, members=null]\n"
        ));
    }
    text.push_str(&format!("{prefix} Sent KeepAliveResponse[status=ERROR, error=NO_LEADER_ERROR, leader=null, members=null]\n"));
    let analysis = analyze_str(&text, "errors.log").unwrap();
    let errors: Vec<(String, u64)> = analysis
        .timeline
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::ClientError {
                response, count, ..
            } => Some((response.clone(), *count)),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            ("ConnectResponse".to_string(), 3),
            ("KeepAliveResponse".to_string(), 1)
        ]
    );
}

#[test]
fn logback_default_timestamps_parse() {
    let text = fixture_text(STALL)
        .replace("2017-05-05T", "2017-05-05 ")
        .replace("+08:00 [", " [");
    let text = text.replacen("16:35:28.962", "16:35:28,962", 1);
    let analysis = analyze_str(&text, "default-layout.log").unwrap();
    assert_eq!(analysis.lines.uninterpreted, 0);
    assert_eq!(analysis.first_timestamp, "2017-05-05 16:35:28,962");
    let silence = analysis.timeline.leader_silence.as_ref().unwrap();
    assert_eq!(silence.duration_ms, 2546);
    assert_eq!(silence.start.time, "2017-05-05 16:35:29.155");
    assert!(analysis.render_text().contains("+193 ms  16:35:29.155"));
}
