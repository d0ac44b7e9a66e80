//! The replicated state machine: client sessions with exactly-once commands, over the
//! "resemble" index (tag -> ids).
//!
//! Every replica applies the same committed entries in the same order and must reach the same
//! state and the same replies. So this module is pure: it does no I/O, reads no clock, draws no
//! random numbers and never lets hash-map order show in a result. The only time it sees is the
//! leader timestamp (`timestamp_ms`) carried by each entry.
//!
//! # Sessions and exactly-once commands
//!
//! Register opens a session named by its entry's index, with the timeout the leader wrote into
//! the entry. A command carries `(session, sequence)`; sequences start at 1 and have no gaps.
//! The next sequence is applied and its result cached; a sequence at or below the last applied
//! one is a retry and gets the cached result without being applied again, or
//! [`ClientError::SequenceReleased`] once a keep-alive has acknowledged it. A sequence that skips
//! ahead is rejected with no effect: the leader holds such commands back until the gap is
//! filled, so one in the log means the leader broke that rule. See [`sessions`] for the cache.
//!
//! # Time and expiry
//!
//! Register, KeepAlive and Command entries refresh their session's last activity to the entry
//! timestamp. The leader proposes `Unregister { expired: true }` for the sessions that
//! [`StateMachine::expired_sessions`] lists at its own clock, and the entry takes effect only if
//! the session is still expired at the entry's own timestamp. So a keep-alive committed between
//! the leader's decision and the entry wins, and every replica decides the same way.
//!
//! Different leaders stamp entries with different machines' clocks, which may disagree in either
//! direction. Timestamps are therefore only compared within one time base. A new time base starts
//! at every Configuration entry (a new leader's first entry) and at the first entry of a higher
//! term, whichever comes first. At a new time base every open session's last activity is set to
//! that entry's timestamp, backwards included. Two consequences: a failover shorter than the
//! session timeout expires nothing, and a clock step between leaders can neither expire a session
//! nor keep it alive forever. Within one term the runtime guarantees timestamps that do not go
//! backwards. A timestamp before a session's last activity counts as no idle time at all.
//!
//! # Invariants (checked with a panic naming the rule)
//!
//! - Entries are applied in index order, each exactly once, starting at index 1.
//! - Entry terms do not decrease along the log.
//!
//! # Not done yet
//!
//! - Snapshots: the state lives in memory only and is rebuilt by replaying the log.
//! - Session events (Publish): `event_index` acknowledgements are recorded but nothing is
//!   published.

mod index;
pub mod sessions;

#[cfg(test)]
mod tests;

use ringraft_protocol::{
    ClientError, CommandResult, EntryPayload, LogEntry, LogIndex, Member, Query, QueryResult,
    SessionId, Term,
};
use tracing::{debug, info, warn};

pub use index::ResembleIndex;
pub use sessions::{SessionInfo, MAX_REMEMBERED_EXPIRED};

use sessions::{SequenceCheck, SessionTable};

/// The outcome of applying one entry, which the consensus core turns into the reply to the
/// client that proposed it. Variants that carry `index` carry the index of the entry just applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A leader's first entry; every open session's timer was reset.
    Configuration,
    /// A session was opened; its id is the entry's index.
    Registered { session: SessionId, timeout_ms: u64 },
    /// The session was refreshed and the acknowledged results were released.
    KeptAlive { session: SessionId },
    /// The session was closed by its client (`expired: false`) or by expiry (`expired: true`).
    Unregistered { session: SessionId, expired: bool },
    /// An `Unregister { expired: true }` had no effect because the session was refreshed after
    /// the leader decided to expire it: it was not expired at the entry's timestamp.
    ExpiryCancelled { session: SessionId },
    /// A Connect entry was recorded.
    Connected,
    /// A command was applied, or was a retry of an applied sequence. For a retry `result` is
    /// the cached result, or [`ClientError::SequenceReleased`]; the index at which the command
    /// was first applied is in [`StateMachine::command_status`].
    Command {
        session: SessionId,
        sequence: u64,
        index: LogIndex,
        result: Result<CommandResult, ClientError>,
    },
    /// The entry had no effect: its session is unknown or expired, or its command sequence is
    /// invalid. `error` is the reply for the client.
    Rejected {
        index: LogIndex,
        session: SessionId,
        error: ClientError,
    },
}

/// State of a `(session, sequence)` pair, used to reply to a retried command without proposing
/// it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandStatus {
    /// Applied at `index`, and the result is still cached.
    Applied {
        index: LogIndex,
        result: CommandResult,
    },
    /// Applied, but a keep-alive released the result.
    Released,
    /// Not applied yet (this includes sequences that skip ahead, and the invalid sequence 0).
    NotApplied,
    /// The session is not open and is not a remembered expired session.
    UnknownSession,
    /// The session expired (remembered for the last [`MAX_REMEMBERED_EXPIRED`] expiries).
    Expired,
}

/// Sessions plus the resemble index, advanced one committed entry at a time.
#[derive(Clone, Debug, Default)]
pub struct StateMachine {
    applied_index: LogIndex,
    applied_term: Term,
    /// Members named by the last Configuration entry applied.
    members: Vec<Member>,
    sessions: SessionTable,
    index: ResembleIndex,
}

impl StateMachine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the next committed entry.
    ///
    /// # Panics
    ///
    /// If `entry.index` is not `applied_index() + 1` or its term is lower than the previous
    /// entry's: both mean the caller broke the log, and continuing would diverge from the other
    /// replicas.
    pub fn apply(&mut self, entry: &LogEntry) -> Applied {
        let expected = self.applied_index + 1;
        assert!(
            entry.index == expected,
            "state machine entries must be applied in index order, each exactly once: \
             got entry index {} but the next index to apply is {expected}",
            entry.index
        );
        assert!(
            entry.term >= self.applied_term,
            "entry terms in a Raft log never decrease: entry {} has term {} after term {}",
            entry.index,
            entry.term,
            self.applied_term
        );

        // A new leader's clock becomes the time base before the entry itself is applied, so that
        // nothing below compares timestamps of two different leaders.
        let is_configuration = matches!(entry.payload, EntryPayload::Configuration { .. });
        if is_configuration || entry.term != self.applied_term {
            self.sessions.reset_timers(entry.timestamp_ms);
        }
        self.applied_index = entry.index;
        self.applied_term = entry.term;

        let now_ms = entry.timestamp_ms;
        match &entry.payload {
            EntryPayload::Configuration { members } => {
                debug!(
                    index = entry.index,
                    term = entry.term,
                    "applied configuration, session timers reset"
                );
                self.members = members.clone();
                Applied::Configuration
            }
            EntryPayload::Register {
                client_id,
                timeout_ms,
            } => {
                let session = entry.index;
                self.sessions
                    .register(session, *client_id, *timeout_ms, now_ms);
                debug!(session, client_id, timeout_ms, "session registered");
                Applied::Registered {
                    session,
                    timeout_ms: *timeout_ms,
                }
            }
            EntryPayload::KeepAlive {
                session,
                command_sequence,
                event_index,
            } => self.apply_keep_alive(
                entry.index,
                now_ms,
                *session,
                *command_sequence,
                *event_index,
            ),
            EntryPayload::Unregister { session, expired } => {
                self.apply_unregister(entry.index, now_ms, *session, *expired)
            }
            EntryPayload::Connect { client_id, address } => {
                let session = self.sessions.connect(*client_id, *address);
                debug!(client_id, address, ?session, "client connected");
                Applied::Connected
            }
            EntryPayload::Command {
                session,
                sequence,
                command,
            } => self.apply_command(entry.index, now_ms, *session, *sequence, command),
        }
    }

    fn apply_keep_alive(
        &mut self,
        index: LogIndex,
        now_ms: u64,
        session_id: SessionId,
        command_sequence: u64,
        event_index: LogIndex,
    ) -> Applied {
        let session = match self.sessions.open_mut(session_id) {
            Ok(session) => session,
            Err(error) => return reject(index, session_id, error),
        };
        session.touch(now_ms);
        session.keep_alive(command_sequence, event_index);
        Applied::KeptAlive {
            session: session_id,
        }
    }

    fn apply_unregister(
        &mut self,
        index: LogIndex,
        now_ms: u64,
        session_id: SessionId,
        expired: bool,
    ) -> Applied {
        let session = match self.sessions.open_mut(session_id) {
            Ok(session) => session,
            Err(error) => return reject(index, session_id, error),
        };

        if !expired {
            self.sessions.unregister(session_id);
            debug!(session = session_id, "session unregistered by its client");
            return Applied::Unregistered {
                session: session_id,
                expired: false,
            };
        }

        // The leader decided at its own clock; the entry's timestamp decides for every replica.
        let info = session.info().clone();
        if !info.is_expired_at(now_ms) {
            debug!(
                session = session_id,
                last_activity_ms = info.last_activity_ms,
                entry_timestamp_ms = now_ms,
                "session expiry cancelled: the session was refreshed after the leader decided"
            );
            return Applied::ExpiryCancelled {
                session: session_id,
            };
        }
        self.sessions.expire(session_id);
        info!(
            session = session_id,
            client_id = info.client_id,
            timeout_ms = info.timeout_ms,
            idle_ms = now_ms - info.last_activity_ms,
            "session expired"
        );
        Applied::Unregistered {
            session: session_id,
            expired: true,
        }
    }

    fn apply_command(
        &mut self,
        index: LogIndex,
        now_ms: u64,
        session_id: SessionId,
        sequence: u64,
        command: &ringraft_protocol::Command,
    ) -> Applied {
        let session = match self.sessions.open_mut(session_id) {
            Ok(session) => session,
            Err(error) => return reject(index, session_id, error),
        };

        let result = match session.check_sequence(sequence) {
            SequenceCheck::Next => {
                let result = self.index.apply(command);
                session.record_result(sequence, index, result.clone());
                Ok(result)
            }
            SequenceCheck::Duplicate(cached) => {
                debug!(
                    session = session_id,
                    sequence,
                    first_index = cached.index,
                    "retried command answered from the cache"
                );
                Ok(cached.result)
            }
            SequenceCheck::Released => {
                debug!(
                    session = session_id,
                    sequence, "retried command whose result was released"
                );
                Err(ClientError::SequenceReleased {
                    session: session_id,
                    sequence,
                })
            }
            SequenceCheck::Gap { expected } => {
                warn!(
                    index,
                    session = session_id,
                    sequence,
                    expected,
                    "rejected a committed command whose sequence skips ahead"
                );
                let error = ClientError::InvalidRequest(format!(
                    "command sequence {sequence} of session {session_id} skips ahead of the next \
                     expected sequence {expected}: send sequences in order without gaps"
                ));
                return reject(index, session_id, error);
            }
            SequenceCheck::Zero => {
                let error = ClientError::InvalidRequest(format!(
                    "command sequence 0 of session {session_id} is invalid: sequences start at 1"
                ));
                return reject(index, session_id, error);
            }
        };

        // Any command of the session, retries included, shows that the client is alive.
        session.touch(now_ms);
        Applied::Command {
            session: session_id,
            sequence,
            index,
            result,
        }
    }

    /// Index of the last entry applied; 0 before the first.
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// Term of the last entry applied; 0 before the first.
    pub fn applied_term(&self) -> Term {
        self.applied_term
    }

    /// Members named by the last Configuration entry applied.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Runs a read-only query against the state as of [`StateMachine::applied_index`].
    pub fn query(&self, query: &Query) -> QueryResult {
        self.index.query(query)
    }

    /// Returns the resemble index, for checkers and status.
    pub fn resemble_index(&self) -> &ResembleIndex {
        &self.index
    }

    /// Looks up `(session, sequence)` so that the leader can reply to a retried command
    /// without proposing it again.
    pub fn command_status(&self, session: SessionId, sequence: u64) -> CommandStatus {
        let Some(open) = self.sessions.get(session) else {
            if self.sessions.is_remembered_expired(session) {
                return CommandStatus::Expired;
            }
            return CommandStatus::UnknownSession;
        };

        match open.check_sequence(sequence) {
            SequenceCheck::Duplicate(cached) => CommandStatus::Applied {
                index: cached.index,
                result: cached.result,
            },
            SequenceCheck::Released => CommandStatus::Released,
            SequenceCheck::Next | SequenceCheck::Gap { .. } | SequenceCheck::Zero => {
                CommandStatus::NotApplied
            }
        }
    }

    /// Returns the open session `id`, if any.
    pub fn session(&self, id: SessionId) -> Option<&SessionInfo> {
        self.sessions.get(id).map(|session| session.info())
    }

    /// Open sessions in id order.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionInfo> {
        self.sessions.iter()
    }

    /// Number of command results cached for session `id` (0 for a session that is not open).
    pub fn cached_results(&self, id: SessionId) -> usize {
        self.sessions
            .get(id)
            .map_or(0, |session| session.cached_results())
    }

    /// Returns whether `id` expired and is still remembered (see [`MAX_REMEMBERED_EXPIRED`]).
    pub fn is_expired(&self, id: SessionId) -> bool {
        self.sessions.is_remembered_expired(id)
    }

    /// Open sessions whose last activity plus timeout is before `now_ms`, in id order. The
    /// leader proposes `Unregister { expired: true }` for each.
    ///
    /// `now_ms` must be on the clock of the leader whose Configuration entry has been applied:
    /// before that, last activities are on the previous leader's clock. A wrong call is safe,
    /// because each Unregister entry is checked again at its own timestamp, but it wastes
    /// entries.
    pub fn expired_sessions(&self, now_ms: u64) -> Vec<SessionId> {
        self.sessions.expired_at(now_ms)
    }

    /// Number of open sessions.
    pub fn open_sessions(&self) -> u64 {
        self.sessions.open_count()
    }

    /// Number of sessions expired since this state machine applied its first entry.
    pub fn expired_total(&self) -> u64 {
        self.sessions.expired_total()
    }
}

fn reject(index: LogIndex, session: SessionId, error: ClientError) -> Applied {
    debug!(index, session, %error, "entry rejected with no effect");
    Applied::Rejected {
        index,
        session,
        error,
    }
}
