//! Unit tests of the state machine: each builds a log by hand and applies it in order.

use ringraft_protocol::{
    ClientError, Command, CommandResult, EntryPayload, LogEntry, LogIndex, Member, Query,
    QueryResult, SessionId, Term,
};

use super::{Applied, CommandStatus, StateMachine, MAX_REMEMBERED_EXPIRED};

const TIMEOUT_MS: u64 = 5_000;

/// Builds a log one entry at a time and applies each entry as it is appended.
struct Log {
    machine: StateMachine,
    term: Term,
    entries: Vec<LogEntry>,
}

impl Log {
    fn new() -> Self {
        Log {
            machine: StateMachine::new(),
            term: 1,
            entries: Vec::new(),
        }
    }

    fn next_index(&self) -> LogIndex {
        self.machine.applied_index() + 1
    }

    fn apply(&mut self, timestamp_ms: u64, payload: EntryPayload) -> Applied {
        let entry = LogEntry {
            index: self.next_index(),
            term: self.term,
            timestamp_ms,
            payload,
        };
        let applied = self.machine.apply(&entry);
        self.entries.push(entry);
        applied
    }

    /// Starts a new leader's term with its Configuration entry.
    fn new_leader(&mut self, timestamp_ms: u64) -> Applied {
        self.term += 1;
        self.apply(
            timestamp_ms,
            EntryPayload::Configuration {
                members: vec![Member {
                    id: 1,
                    addr: "127.0.0.1:7001".to_string(),
                }],
            },
        )
    }

    fn register(&mut self, timestamp_ms: u64) -> SessionId {
        let index = self.next_index();
        let applied = self.apply(
            timestamp_ms,
            EntryPayload::Register {
                client_id: 42,
                timeout_ms: TIMEOUT_MS,
            },
        );
        assert_eq!(
            applied,
            Applied::Registered {
                session: index,
                timeout_ms: TIMEOUT_MS
            }
        );
        index
    }

    fn add(&mut self, timestamp_ms: u64, session: SessionId, sequence: u64, id: u64) -> Applied {
        self.apply(
            timestamp_ms,
            EntryPayload::Command {
                session,
                sequence,
                command: Command::Add {
                    id,
                    tag: "t1".to_string(),
                    payload: vec![0; 16],
                },
            },
        )
    }

    fn keep_alive(
        &mut self,
        timestamp_ms: u64,
        session: SessionId,
        command_sequence: u64,
    ) -> Applied {
        self.apply(
            timestamp_ms,
            EntryPayload::KeepAlive {
                session,
                command_sequence,
                event_index: 0,
            },
        )
    }

    fn expire(&mut self, timestamp_ms: u64, session: SessionId) -> Applied {
        self.apply(
            timestamp_ms,
            EntryPayload::Unregister {
                session,
                expired: true,
            },
        )
    }

    fn ids(&self, tag: &str) -> Vec<u64> {
        let QueryResult::Ids(ids) = self.machine.query(&Query::Tag {
            tag: tag.to_string(),
        });
        ids
    }
}

/// Builds a log with a Configuration entry at index 1 and one session registered at index 2.
fn log_with_session() -> (Log, SessionId) {
    let mut log = Log::new();
    log.apply(1_000, EntryPayload::Configuration { members: vec![] });
    let session = log.register(1_000);
    (log, session)
}

#[test]
fn register_command_query() {
    let (mut log, session) = log_with_session();

    let first = log.add(1_010, session, 1, 100);
    let second = log.add(1_020, session, 2, 101);

    assert_eq!(
        first,
        Applied::Command {
            session,
            sequence: 1,
            index: 3,
            result: Ok(CommandResult::Added)
        }
    );
    assert_eq!(
        second,
        Applied::Command {
            session,
            sequence: 2,
            index: 4,
            result: Ok(CommandResult::Added)
        }
    );
    assert_eq!(log.ids("t1"), vec![100, 101]);
    assert_eq!(log.ids("t2"), Vec::<u64>::new());
    assert_eq!(log.machine.applied_index(), 4);
    assert_eq!(log.machine.open_sessions(), 1);

    let info = log.machine.session(session).expect("session is open");
    assert_eq!(info.last_applied_sequence, 2);
    assert_eq!(info.timeout_ms, TIMEOUT_MS);
    assert_eq!(info.last_activity_ms, 1_020);
}

#[test]
fn duplicate_command_returns_cached_result() {
    let (mut log, session) = log_with_session();
    log.add(1_010, session, 1, 100);

    let retry = log.add(1_020, session, 1, 100);

    assert_eq!(
        retry,
        Applied::Command {
            session,
            sequence: 1,
            index: 4,
            result: Ok(CommandResult::Added)
        }
    );
    assert_eq!(
        log.ids("t1"),
        vec![100],
        "a retried add must not be applied twice"
    );
    assert_eq!(
        log.machine.command_status(session, 1),
        CommandStatus::Applied {
            index: 3,
            result: CommandResult::Added
        }
    );
    assert_eq!(
        log.machine.command_status(session, 2),
        CommandStatus::NotApplied
    );
    assert_eq!(
        log.machine.session(session).unwrap().last_activity_ms,
        1_020
    );
}

#[test]
fn index_keeps_duplicate_ids() {
    // Two sessions adding the same id is not a retry: both adds are applied, and the index shows
    // the id twice so that a checker can see it.
    let (mut log, first) = log_with_session();
    let second = log.register(1_000);

    log.add(1_010, first, 1, 7);
    log.add(1_020, second, 1, 7);

    assert_eq!(log.ids("t1"), vec![7, 7]);
    assert_eq!(log.machine.resemble_index().id_count(), 2);
}

#[test]
fn keep_alive_releases_results() {
    let (mut log, session) = log_with_session();
    for sequence in 1..=3 {
        log.add(1_000 + sequence, session, sequence, 100 + sequence);
    }
    assert_eq!(log.machine.cached_results(session), 3);

    let kept = log.keep_alive(1_100, session, 2);

    assert_eq!(kept, Applied::KeptAlive { session });
    assert_eq!(log.machine.cached_results(session), 1);
    assert_eq!(
        log.machine.command_status(session, 1),
        CommandStatus::Released
    );
    assert_eq!(
        log.machine.command_status(session, 2),
        CommandStatus::Released
    );
    assert!(matches!(
        log.machine.command_status(session, 3),
        CommandStatus::Applied { .. }
    ));

    let retry = log.add(1_200, session, 2, 102);
    assert_eq!(
        retry,
        Applied::Command {
            session,
            sequence: 2,
            index: log.machine.applied_index(),
            result: Err(ClientError::SequenceReleased {
                session,
                sequence: 2
            })
        }
    );
    assert_eq!(log.ids("t1"), vec![101, 102, 103]);
}

#[test]
fn keep_alive_ahead_of_applied_releases_only_applied() {
    let (mut log, session) = log_with_session();
    log.add(1_010, session, 1, 100);

    log.keep_alive(1_020, session, 5);
    let next = log.add(1_030, session, 2, 101);

    assert!(matches!(next, Applied::Command { result: Ok(_), .. }));
    assert_eq!(log.machine.session(session).unwrap().released_sequence, 1);
    assert!(
        matches!(
            log.machine.command_status(session, 2),
            CommandStatus::Applied { .. }
        ),
        "a result applied after an over-reaching keep-alive must still be cached"
    );
}

#[test]
fn keep_alive_never_moves_release_backwards() {
    let (mut log, session) = log_with_session();
    log.add(1_010, session, 1, 100);
    log.add(1_020, session, 2, 101);

    log.keep_alive(1_030, session, 2);
    log.keep_alive(1_040, session, 1);

    assert_eq!(log.machine.session(session).unwrap().released_sequence, 2);
    assert_eq!(log.machine.cached_results(session), 0);
}

#[test]
fn sequence_gap_rejected() {
    let (mut log, session) = log_with_session();
    log.add(1_010, session, 1, 100);

    let index = log.next_index();
    let skipped = log.add(1_020, session, 3, 102);

    let Applied::Rejected {
        index: rejected_index,
        session: rejected_session,
        error: ClientError::InvalidRequest(message),
    } = skipped
    else {
        panic!("expected a rejection with InvalidRequest, got {skipped:?}");
    };
    assert_eq!(rejected_index, index);
    assert_eq!(rejected_session, session);
    assert!(message.contains("sequence 3"), "message: {message}");
    assert!(
        message.contains("expected sequence 2"),
        "message: {message}"
    );
    assert_eq!(log.ids("t1"), vec![100]);
    assert_eq!(
        log.machine.session(session).unwrap().last_applied_sequence,
        1
    );
    assert_eq!(
        log.machine.command_status(session, 3),
        CommandStatus::NotApplied
    );

    // The gap is filled later and both commands apply in order.
    assert!(matches!(
        log.add(1_030, session, 2, 101),
        Applied::Command { result: Ok(_), .. }
    ));
    assert!(matches!(
        log.add(1_040, session, 3, 102),
        Applied::Command { result: Ok(_), .. }
    ));
    assert_eq!(log.ids("t1"), vec![100, 101, 102]);
}

#[test]
fn sequence_zero_rejected() {
    let (mut log, session) = log_with_session();

    let applied = log.add(1_010, session, 0, 100);

    assert!(
        matches!(
            applied,
            Applied::Rejected {
                error: ClientError::InvalidRequest(_),
                ..
            }
        ),
        "got {applied:?}"
    );
    assert_eq!(log.ids("t1"), Vec::<u64>::new());
}

#[test]
fn unknown_session_rejected() {
    let (mut log, _session) = log_with_session();
    let unknown = 99;

    let command = log.add(1_010, unknown, 1, 100);
    let keep_alive = log.keep_alive(1_020, unknown, 0);
    let unregister = log.apply(
        1_030,
        EntryPayload::Unregister {
            session: unknown,
            expired: false,
        },
    );

    for applied in [command, keep_alive, unregister] {
        let Applied::Rejected { session, error, .. } = applied else {
            panic!("expected a rejection, got {applied:?}");
        };
        assert_eq!(session, unknown);
        assert_eq!(error, ClientError::UnknownSession { session: unknown });
    }
    assert_eq!(log.ids("t1"), Vec::<u64>::new());
    assert_eq!(
        log.machine.command_status(unknown, 1),
        CommandStatus::UnknownSession
    );
}

#[test]
fn unregistered_session_is_unknown() {
    let (mut log, session) = log_with_session();
    log.add(1_010, session, 1, 100);

    let closed = log.apply(
        1_020,
        EntryPayload::Unregister {
            session,
            expired: false,
        },
    );
    let after = log.add(1_030, session, 2, 101);

    assert_eq!(
        closed,
        Applied::Unregistered {
            session,
            expired: false
        }
    );
    assert!(matches!(
        after,
        Applied::Rejected {
            error: ClientError::UnknownSession { .. },
            ..
        }
    ));
    assert_eq!(log.machine.open_sessions(), 0);
    assert_eq!(log.machine.expired_total(), 0);
}

#[test]
fn expired_session_rejected() {
    let (mut log, session) = log_with_session();
    log.add(1_010, session, 1, 100);

    assert_eq!(
        log.machine.expired_sessions(1_010 + TIMEOUT_MS),
        Vec::<u64>::new()
    );
    assert_eq!(
        log.machine.expired_sessions(1_011 + TIMEOUT_MS),
        vec![session]
    );

    let expired = log.expire(1_011 + TIMEOUT_MS, session);
    assert_eq!(
        expired,
        Applied::Unregistered {
            session,
            expired: true
        }
    );
    assert_eq!(log.machine.open_sessions(), 0);
    assert_eq!(log.machine.expired_total(), 1);
    assert!(log.machine.is_expired(session));
    assert_eq!(
        log.machine.command_status(session, 1),
        CommandStatus::Expired
    );

    let command = log.add(7_000, session, 2, 101);
    let keep_alive = log.keep_alive(7_010, session, 1);
    let expired_again = log.expire(7_020, session);
    for applied in [command, keep_alive, expired_again] {
        let Applied::Rejected { error, .. } = applied else {
            panic!("expected a rejection, got {applied:?}");
        };
        assert_eq!(error, ClientError::SessionExpired { session });
    }
    assert_eq!(log.ids("t1"), vec![100]);
    assert_eq!(log.machine.expired_total(), 1);
}

#[test]
fn expired_sessions_are_remembered_up_to_bound() {
    let mut log = Log::new();
    log.apply(0, EntryPayload::Configuration { members: vec![] });
    let first = log.register(0);
    let mut last = first;
    for _ in 0..MAX_REMEMBERED_EXPIRED {
        last = log.register(0);
    }

    for session in first..=last {
        let applied = log.expire(TIMEOUT_MS + 1, session);
        assert!(matches!(
            applied,
            Applied::Unregistered { expired: true, .. }
        ));
    }

    // One more than the bound expired, so the oldest is forgotten.
    assert_eq!(
        log.machine.expired_total(),
        MAX_REMEMBERED_EXPIRED as u64 + 1
    );
    assert_eq!(
        log.machine.command_status(first, 1),
        CommandStatus::UnknownSession
    );
    assert_eq!(
        log.machine.command_status(first + 1, 1),
        CommandStatus::Expired
    );
    assert_eq!(log.machine.command_status(last, 1), CommandStatus::Expired);
}

#[test]
fn configuration_after_long_gap_resets_timers() {
    let (mut log, session) = log_with_session();
    log.add(1_010, session, 1, 100);

    // The next leader's first entry comes long after the session's timeout.
    let late = 1_010 + 10 * TIMEOUT_MS;
    assert_eq!(log.new_leader(late), Applied::Configuration);

    assert_eq!(log.machine.session(session).unwrap().last_activity_ms, late);
    assert_eq!(
        log.machine.expired_sessions(late + TIMEOUT_MS),
        Vec::<u64>::new()
    );
    let expiry = log.expire(late + 1, session);
    assert_eq!(expiry, Applied::ExpiryCancelled { session });
    assert_eq!(log.machine.open_sessions(), 1);
    assert_eq!(log.machine.expired_total(), 0);

    // The timeout still counts from the reset.
    assert_eq!(
        log.machine.expired_sessions(late + TIMEOUT_MS + 1),
        vec![session]
    );
}

#[test]
fn leader_clock_behind_does_not_keep_session_forever() {
    let (mut log, session) = log_with_session();
    log.add(60_000, session, 1, 100);

    // The new leader's clock is a minute behind the old leader's.
    let behind = 1_000;
    log.new_leader(behind);

    assert_eq!(
        log.machine.session(session).unwrap().last_activity_ms,
        behind
    );
    assert_eq!(
        log.machine.expired_sessions(behind + TIMEOUT_MS + 1),
        vec![session]
    );
    let expiry = log.expire(behind + TIMEOUT_MS + 1, session);
    assert_eq!(
        expiry,
        Applied::Unregistered {
            session,
            expired: true
        }
    );
}

#[test]
fn new_term_without_configuration_resets_timers() {
    let (mut log, session) = log_with_session();
    log.add(1_010, session, 1, 100);

    // A higher term's first entry is a new time base even if it is not a Configuration entry.
    log.term += 1;
    let late = 1_010 + 10 * TIMEOUT_MS;
    let expiry = log.expire(late, session);

    assert_eq!(expiry, Applied::ExpiryCancelled { session });
    assert_eq!(log.machine.session(session).unwrap().last_activity_ms, late);
}

#[test]
fn expiry_loses_race_to_keep_alive() {
    let (mut log, session) = log_with_session();

    // The leader decides at its clock that the session has expired...
    let decided_at = 1_000 + TIMEOUT_MS + 1;
    assert_eq!(log.machine.expired_sessions(decided_at), vec![session]);

    // ...but a keep-alive is committed before the Unregister entry.
    log.keep_alive(decided_at + 5, session, 0);
    let expiry = log.expire(decided_at + 10, session);

    assert_eq!(expiry, Applied::ExpiryCancelled { session });
    assert_eq!(log.machine.open_sessions(), 1);
    assert_eq!(log.machine.expired_total(), 0);
    assert!(!log.machine.is_expired(session));
    assert!(matches!(
        log.add(decided_at + 20, session, 1, 100),
        Applied::Command { result: Ok(_), .. }
    ));
}

#[test]
fn expiry_boundary_is_strict() {
    let (mut log, session) = log_with_session();

    // Idle for exactly the timeout is not expired; one millisecond more is.
    let at_timeout = log.expire(1_000 + TIMEOUT_MS, session);
    let past_timeout = log.expire(1_001 + TIMEOUT_MS, session);

    assert_eq!(at_timeout, Applied::ExpiryCancelled { session });
    assert_eq!(
        past_timeout,
        Applied::Unregistered {
            session,
            expired: true
        }
    );
}

#[test]
fn connect_records_server() {
    let (mut log, session) = log_with_session();

    let connected = log.apply(
        1_010,
        EntryPayload::Connect {
            client_id: 42,
            address: 3,
        },
    );

    assert_eq!(connected, Applied::Connected);
    assert_eq!(log.machine.session(session).unwrap().connected_to, Some(3));
}

#[test]
fn replicas_reach_same_state() {
    let (mut log, session) = log_with_session();
    let mut outcomes = Vec::new();
    for sequence in 1..=5 {
        outcomes.push(log.add(1_000 + sequence * 10, session, sequence, sequence));
    }
    outcomes.push(log.keep_alive(1_100, session, 3));
    outcomes.push(log.add(1_110, session, 4, 4));
    outcomes.push(log.add(1_120, session, 2, 2));
    outcomes.push(log.new_leader(500));
    outcomes.push(log.expire(5_501, session));

    // A second replica applying the same entries returns the same outcomes and ends in the same
    // state.
    let mut replica = StateMachine::new();
    let replayed: Vec<Applied> = log
        .entries
        .iter()
        .map(|entry| replica.apply(entry))
        .collect();

    assert_eq!(&replayed[2..], &outcomes[..]);
    assert_eq!(replica.applied_index(), log.machine.applied_index());
    assert_eq!(replica.session(session), log.machine.session(session));
    assert_eq!(
        replica.cached_results(session),
        log.machine.cached_results(session)
    );
    assert_eq!(replica.expired_total(), 1);
    let query = Query::Tag {
        tag: "t1".to_string(),
    };
    assert_eq!(replica.query(&query), log.machine.query(&query));
}

#[test]
#[should_panic(expected = "must be applied in index order")]
fn out_of_order_apply_panics() {
    let mut machine = StateMachine::new();
    machine.apply(&LogEntry {
        index: 1,
        term: 1,
        timestamp_ms: 0,
        payload: EntryPayload::Configuration { members: vec![] },
    });

    machine.apply(&LogEntry {
        index: 3,
        term: 1,
        timestamp_ms: 0,
        payload: EntryPayload::Configuration { members: vec![] },
    });
}

#[test]
#[should_panic(expected = "must be applied in index order")]
fn repeated_apply_panics() {
    let mut machine = StateMachine::new();
    let entry = LogEntry {
        index: 1,
        term: 1,
        timestamp_ms: 0,
        payload: EntryPayload::Configuration { members: vec![] },
    };
    machine.apply(&entry);

    machine.apply(&entry);
}

#[test]
#[should_panic(expected = "entry terms in a Raft log never decrease")]
fn decreasing_term_panics() {
    let mut machine = StateMachine::new();
    machine.apply(&LogEntry {
        index: 1,
        term: 2,
        timestamp_ms: 0,
        payload: EntryPayload::Configuration { members: vec![] },
    });

    machine.apply(&LogEntry {
        index: 2,
        term: 1,
        timestamp_ms: 0,
        payload: EntryPayload::Configuration { members: vec![] },
    });
}
