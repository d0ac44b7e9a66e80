//! Parsing of one physical line of a Copycat server log.
//!
//! Copycat servers log through logback with the layout
//! `<ISO-8601 timestamp> [<thread>] <LEVEL> <logger> - <server address> - <message>`, for example
//! `2017-05-05T16:35:29.155+08:00 [copycat-server-/127.0.0.11:8701-copycat] DEBUG
//! i.a.c.server.state.LeaderState - /127.0.0.11:8701 - Received CommandRequest[...]`.
//! This module splits such a line into its header fields and the message text. It does not
//! interpret the message: that is `message.rs`.
//!
//! A line that is not an entry header is classified so the caller can account for it:
//! continuation lines of a multi-line entry (stack traces, wrapped records) and everything else,
//! which the analysis reports as uninterpreted. Nothing here drops a line.

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset};
use regex::Regex;

/// Entry header in the logback layout Copycat servers use.
static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}[.,]\d{1,9}(?:Z|[+-]\d{2}:?\d{2})?) \[([^\]]*)\] (TRACE|DEBUG|INFO|WARN|ERROR)\s+(\S+) - (.*)$",
    )
    .expect("header pattern is valid")
});

/// Start of a line that carries an ISO-8601 timestamp, used to tell a cut header apart from a
/// line of another format.
static TIMESTAMP_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}").expect("prefix pattern is valid")
});

/// Server prefix Copycat puts in front of every server message: the address (`/host:port - `
/// or `hostname/ip:port - `) in the versions that log addresses, the numeric member id in those
/// that log ids.
static SERVER_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([\w.-]*/[^\s]+:\d+|\d+) - (.*)$").expect("server pattern is valid")
});

/// First line of a Java exception (`java.net.ConnectException: ...`) or a stack frame.
static JAVA_TRACE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[A-Za-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable)\b|^Caused by: |^\s+at |^\s*\.\.\. \d+ more")
        .expect("trace pattern is valid")
});

/// Logback level of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Header fields and message of one log entry.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// 1-based line number in the file.
    pub line_no: usize,
    pub timestamp: DateTime<FixedOffset>,
    /// Timestamp as written in the log, kept so reports show the log's own text.
    pub timestamp_text: &'a str,
    pub level: Level,
    /// Logger name, abbreviated by logback (`i.a.c.server.state.LeaderState`).
    pub logger: &'a str,
    /// Address (or member id) of the server that wrote the line, when the message carries it.
    pub server: Option<&'a str>,
    pub message: &'a str,
}

/// Classification of one physical line.
#[derive(Debug)]
pub enum Line<'a> {
    Entry(Entry<'a>),
    Blank,
    /// A line without a header that belongs to the previous entry (stack trace, wrapped text).
    Continuation,
    /// A line the parser cannot use, with the reason.
    Uninterpreted(&'static str),
}

/// Classifies one line. `inside_entry` is true when a previous entry exists that a header-less
/// line may continue, and `entry_open` when that entry's message has unclosed brackets.
pub fn classify(line_no: usize, text: &str, inside_entry: bool, entry_open: bool) -> Line<'_> {
    if text.trim().is_empty() {
        return Line::Blank;
    }

    if let Some(entry) = parse_entry(line_no, text) {
        return Line::Entry(entry);
    }

    if TIMESTAMP_PREFIX.is_match(text) {
        return Line::Uninterpreted(
            "starts with a timestamp but the header is incomplete (line cut?)",
        );
    }

    // Only lines that look like the tail of a Java entry attach to the previous entry. Anything
    // else is another format, so it is reported rather than absorbed.
    if inside_entry
        && (entry_open || text.starts_with(char::is_whitespace) || JAVA_TRACE.is_match(text))
    {
        return Line::Continuation;
    }

    Line::Uninterpreted("not in the Copycat logback layout")
}

fn parse_entry(line_no: usize, text: &str) -> Option<Entry<'_>> {
    let captures = HEADER.captures(text)?;
    let timestamp_text = captures.get(1)?.as_str();
    let timestamp = parse_timestamp(timestamp_text)?;
    let level = match captures.get(3)?.as_str() {
        "TRACE" => Level::Trace,
        "DEBUG" => Level::Debug,
        "INFO" => Level::Info,
        "WARN" => Level::Warn,
        _ => Level::Error,
    };
    let rest = captures.get(5)?.as_str();
    let (server, message) = match SERVER_PREFIX.captures(rest) {
        Some(prefixed) => (Some(prefixed.get(1)?.as_str()), prefixed.get(2)?.as_str()),
        None => (None, rest),
    };

    Some(Entry {
        line_no,
        timestamp,
        timestamp_text,
        level,
        logger: captures.get(4)?.as_str(),
        server,
        message,
    })
}

/// Parses the layout's timestamp: ISO 8601 with an offset as in `%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX}`,
/// or logback's default `%d` (`2017-05-05 16:35:29,155`, local time without an offset).
fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(timestamp) = DateTime::parse_from_rfc3339(text) {
        return Some(timestamp);
    }

    // NOTE: a timestamp without an offset is read as UTC because the log does not name its zone.
    // Gaps and offsets are unaffected, and reports show the log's own text.
    let normalized = text.replacen(' ', "T", 1).replacen(',', ".", 1);
    if let Ok(timestamp) = DateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(timestamp);
    }
    let naive = chrono::NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(naive.and_utc().fixed_offset())
}

/// Server role implied by the logger: Copycat logs from one class per server state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Inactive,
    Reserve,
    Passive,
    Follower,
    Candidate,
    Leader,
}

impl Role {
    /// Derives the role from the logger's class name (`LeaderState`, `LeaderAppender`, ...),
    /// or `None` for loggers shared by all states (`ServerStateMachine`, `ServerContext`).
    pub fn from_logger(logger: &str) -> Option<Role> {
        let class = logger.rsplit('.').next().unwrap_or(logger);
        match class {
            "LeaderState" | "LeaderAppender" => Some(Role::Leader),
            "FollowerState" | "FollowerAppender" => Some(Role::Follower),
            "CandidateState" => Some(Role::Candidate),
            "PassiveState" => Some(Role::Passive),
            "ReserveState" => Some(Role::Reserve),
            "InactiveState" => Some(Role::Inactive),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Inactive => "inactive",
            Role::Reserve => "reserve",
            Role::Passive => "passive",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}
