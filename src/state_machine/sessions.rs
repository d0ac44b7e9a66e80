//! Client sessions: the session table, command sequence tracking, the result cache and expiry.
//!
//! A session is opened by a Register entry and named by that entry's log index. Each session
//! keeps the highest command sequence applied and the result of every applied sequence the
//! client has not yet acknowledged. A keep-alive acknowledges results up to its
//! `command_sequence`, and only then are they dropped. So a retried command gets its result from
//! the cache and is never applied twice.
//!
//! Invariant: every sequence in `(released_sequence, last_applied_sequence]` has a cached
//! result, and no other sequence does. A keep-alive that acknowledges more than was applied
//! releases only up to `last_applied_sequence`.
//!
//! Time is the `timestamp_ms` of applied entries and nothing else, so every replica reaches the
//! same decision. The rules for leader changes live in the parent module, which calls
//! [`SessionTable::reset_timers`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use ringraft_protocol::{ClientError, CommandResult, LogIndex, NodeId, SessionId};

/// Maximum number of expired session ids remembered so that later requests of those sessions get
/// [`ClientError::SessionExpired`]. Beyond it the oldest are forgotten and their requests get
/// [`ClientError::UnknownSession`], after which the client also registers again. A client
/// normally learns of the expiry at its next keep-alive, well before 16 384 other sessions expire.
pub const MAX_REMEMBERED_EXPIRED: usize = 16_384;

/// State of one open session, the same on every replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Log index of the Register entry that opened the session.
    pub id: SessionId,
    /// Client that registered the session.
    pub client_id: u128,
    /// Session timeout, written into the log by the leader that accepted the Register request.
    pub timeout_ms: u64,
    /// Timestamp of the last entry that refreshed the session (Register, KeepAlive, Command), or
    /// of the last leader change if that came later. Leader-clock milliseconds.
    pub last_activity_ms: u64,
    /// Highest command sequence applied for this session; 0 before the first command.
    pub last_applied_sequence: u64,
    /// Highest command sequence whose result the client acknowledged in a keep-alive; the
    /// results up to it are dropped.
    pub released_sequence: u64,
    /// Highest session event index the client acknowledged in a keep-alive.
    pub acked_event_index: LogIndex,
    /// Server the client is connected to, from the last Connect entry of its client id.
    pub connected_to: Option<NodeId>,
}

impl SessionInfo {
    /// Leader-clock time after which the session counts as expired.
    pub fn expires_after_ms(&self) -> u64 {
        self.last_activity_ms.saturating_add(self.timeout_ms)
    }

    /// Returns whether the session has been idle for longer than its timeout at `now_ms`. A
    /// `now_ms` before the last activity (a clock behind the one that stamped it) never expires it.
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        now_ms > self.expires_after_ms()
    }
}

/// The result of an applied command, kept until the client acknowledges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResult {
    /// Log index of the entry that applied the command.
    pub index: LogIndex,
    pub result: CommandResult,
}

/// Classification of a command's sequence against what its session has applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next sequence: apply the command.
    Next,
    /// Already applied, and the result is still cached.
    Duplicate(CachedResult),
    /// Already applied, and the result was released by a keep-alive.
    Released,
    /// The sequence skips ahead of the next expected one.
    Gap { expected: u64 },
    /// Sequence 0, which no client sends because sequences start at 1.
    Zero,
}

/// One open session with its result cache.
#[derive(Clone, Debug)]
pub struct Session {
    info: SessionInfo,
    results: BTreeMap<u64, CachedResult>,
}

impl Session {
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Number of command results held for this session.
    pub fn cached_results(&self) -> usize {
        self.results.len()
    }

    /// Moves the last activity forward to `timestamp_ms`. Within one leader's term timestamps do
    /// not go backwards, so taking the maximum only matters for a misbehaving clock.
    pub fn touch(&mut self, timestamp_ms: u64) {
        self.info.last_activity_ms = self.info.last_activity_ms.max(timestamp_ms);
    }

    /// Classifies `sequence` against the applied sequences of this session.
    pub fn check_sequence(&self, sequence: u64) -> SequenceCheck {
        let next = self.info.last_applied_sequence + 1;
        if sequence == 0 {
            return SequenceCheck::Zero;
        }
        if sequence == next {
            return SequenceCheck::Next;
        }
        if sequence > next {
            return SequenceCheck::Gap { expected: next };
        }

        // By the invariant in the module doc, an applied sequence is either released or cached.
        match self.results.get(&sequence) {
            Some(cached) => SequenceCheck::Duplicate(cached.clone()),
            None => SequenceCheck::Released,
        }
    }

    /// Records the result of the next sequence. The caller has checked it with
    /// [`Session::check_sequence`].
    pub fn record_result(&mut self, sequence: u64, index: LogIndex, result: CommandResult) {
        debug_assert_eq!(sequence, self.info.last_applied_sequence + 1);
        self.info.last_applied_sequence = sequence;
        self.results
            .insert(sequence, CachedResult { index, result });
    }

    /// Applies a keep-alive: drops the results the client acknowledged and records the event
    /// index. Acknowledgements never move backwards, and never past what was applied.
    pub fn keep_alive(&mut self, command_sequence: u64, event_index: LogIndex) {
        let release_to = command_sequence.min(self.info.last_applied_sequence);
        if release_to > self.info.released_sequence {
            self.info.released_sequence = release_to;
            self.results = self.results.split_off(&(release_to + 1));
        }
        self.info.acked_event_index = self.info.acked_event_index.max(event_index);
    }

    /// Returns the cached result of `sequence`, if it was applied and not released.
    pub fn cached(&self, sequence: u64) -> Option<&CachedResult> {
        self.results.get(&sequence)
    }
}

/// Open sessions plus a bounded memory of expired ones.
#[derive(Clone, Debug, Default)]
pub struct SessionTable {
    /// Ordered by id so that listings are deterministic.
    open: BTreeMap<SessionId, Session>,
    /// Latest session registered by each client id, for Connect entries.
    by_client: HashMap<u128, SessionId>,
    expired: HashSet<SessionId>,
    /// The same ids as `expired`, oldest first, to forget the oldest beyond the bound.
    expired_order: VecDeque<SessionId>,
    expired_total: u64,
}

impl SessionTable {
    /// Opens session `id`, active as of `timestamp_ms`.
    pub fn register(&mut self, id: SessionId, client_id: u128, timeout_ms: u64, timestamp_ms: u64) {
        let info = SessionInfo {
            id,
            client_id,
            timeout_ms,
            last_activity_ms: timestamp_ms,
            last_applied_sequence: 0,
            released_sequence: 0,
            acked_event_index: 0,
            connected_to: None,
        };
        let session = Session {
            info,
            results: BTreeMap::new(),
        };
        let previous = self.open.insert(id, session);
        assert!(
            previous.is_none(),
            "session id {id} registered twice: session ids are log indexes and each index is \
             applied once"
        );
        self.by_client.insert(client_id, id);
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.open.get(&id)
    }

    /// Returns the open session `id`, or the error a request of that session gets.
    pub fn open_mut(&mut self, id: SessionId) -> Result<&mut Session, ClientError> {
        if let Some(session) = self.open.get_mut(&id) {
            return Ok(session);
        }
        if self.expired.contains(&id) {
            return Err(ClientError::SessionExpired { session: id });
        }
        Err(ClientError::UnknownSession { session: id })
    }

    /// Returns whether `id` is a remembered expired session (see [`MAX_REMEMBERED_EXPIRED`]).
    pub fn is_remembered_expired(&self, id: SessionId) -> bool {
        self.expired.contains(&id)
    }

    /// Closes a session at its client's request.
    pub fn unregister(&mut self, id: SessionId) -> Option<Session> {
        let session = self.open.remove(&id)?;
        self.forget_client(&session);
        Some(session)
    }

    /// Closes a session that expired and remembers its id.
    pub fn expire(&mut self, id: SessionId) -> Option<Session> {
        let session = self.open.remove(&id)?;
        self.forget_client(&session);
        self.expired_total += 1;

        if self.expired.insert(id) {
            self.expired_order.push_back(id);
        }
        while self.expired_order.len() > MAX_REMEMBERED_EXPIRED {
            if let Some(oldest) = self.expired_order.pop_front() {
                self.expired.remove(&oldest);
            }
        }
        Some(session)
    }

    fn forget_client(&mut self, session: &Session) {
        if self.by_client.get(&session.info.client_id) == Some(&session.info.id) {
            self.by_client.remove(&session.info.client_id);
        }
    }

    /// Records that `client_id` is connected to server `address`; returns its session, if open.
    pub fn connect(&mut self, client_id: u128, address: NodeId) -> Option<SessionId> {
        let id = *self.by_client.get(&client_id)?;
        let session = self.open.get_mut(&id)?;
        session.info.connected_to = Some(address);
        Some(id)
    }

    /// Sets the last activity of every open session to `timestamp_ms`, backwards included. Used
    /// when a new leader's clock becomes the time base.
    pub fn reset_timers(&mut self, timestamp_ms: u64) {
        for session in self.open.values_mut() {
            session.info.last_activity_ms = timestamp_ms;
        }
    }

    /// Open sessions idle for longer than their timeout at `now_ms`, in id order.
    pub fn expired_at(&self, now_ms: u64) -> Vec<SessionId> {
        self.open
            .values()
            .filter(|session| session.info.is_expired_at(now_ms))
            .map(|session| session.info.id)
            .collect()
    }

    pub fn open_count(&self) -> u64 {
        self.open.len() as u64
    }

    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    /// Open sessions in id order.
    pub fn iter(&self) -> impl Iterator<Item = &SessionInfo> {
        self.open.values().map(|session| &session.info)
    }
}
