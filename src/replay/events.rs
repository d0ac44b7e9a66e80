//! Event extraction: walks the physical lines of a log and turns every entry into a timed
//! [`Event`], accounting for each line that is not one.
//!
//! Invariants:
//! - every non-blank line ends up in exactly one of: an event, a continuation of an event, or the
//!   uninterpreted list (counted in full, the first [`SHOWN_UNINTERPRETED`] kept with text);
//! - an entry whose record brackets are still open absorbs the following header-less lines, so a
//!   record wrapped over several lines is parsed whole;
//! - a timestamp step forward of more than [`EXCERPT_JUMP_MS`] or backward of more than
//!   [`BACKWARD_TOLERANCE_MS`] is an excerpt boundary, not a silence. Events after it get a new
//!   `segment`, and `active_ms` leaves the jumped time out so gaps never span two excerpts.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::line::{classify, Entry, Level, Line, Role};
use super::message::{parse_message, Message};
use super::record::has_unclosed_bracket;

/// Number of uninterpreted lines kept with their text; the rest are only counted.
pub const SHOWN_UNINTERPRETED: usize = 10;

/// Forward timestamp step treated as a cut between two excerpts of a log. A real stall of a
/// minute would outlast any usual session timeout (seconds), so a longer step is taken to be an
/// excerpt boundary.
pub const EXCERPT_JUMP_MS: i64 = 60_000;
/// Backward step tolerated as ordinary interleaving of threads writing the same file.
pub const BACKWARD_TOLERANCE_MS: i64 = 1_000;

/// Uninterpreted line length kept in reports.
const SHOWN_TEXT_CHARS: usize = 240;

/// One interpreted log entry.
#[derive(Debug, Clone)]
pub struct Event {
    pub line_no: usize,
    pub at: DateTime<FixedOffset>,
    pub at_text: String,
    /// Milliseconds since the first entry of the log, by wall clock.
    pub offset_ms: i64,
    /// Milliseconds since the first entry with excerpt jumps left out.
    pub active_ms: i64,
    /// Excerpt number, starting at 0 and incremented at each timestamp jump.
    pub segment: u32,
    pub server: Option<String>,
    pub level: Level,
    /// Role implied by the logger, or the last role the same server logged with.
    pub role: Option<Role>,
    pub message: Message,
}

/// A line the parser could not use.
#[derive(Debug, Clone, Serialize)]
pub struct UninterpretedLine {
    pub line: usize,
    pub reason: String,
    pub text: String,
}

/// A timestamp step between two consecutive entries that marks an excerpt boundary.
#[derive(Debug, Clone, Serialize)]
pub struct TimestampJump {
    pub line: usize,
    pub from: String,
    pub to: String,
    /// Signed step in milliseconds (negative when time goes backwards).
    pub step_ms: i64,
}

/// Line accounting for the whole file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LineCounts {
    pub total: usize,
    pub blank: usize,
    /// Entries whose header parsed, recognised or not.
    pub entries: usize,
    /// Entries whose message became an event.
    pub interpreted: usize,
    /// Header-less lines attached to the entry before them.
    pub continuation: usize,
    pub uninterpreted: usize,
}

/// Result of the extraction pass.
#[derive(Debug, Default)]
pub struct Extraction {
    pub events: Vec<Event>,
    pub counts: LineCounts,
    pub uninterpreted: Vec<UninterpretedLine>,
    pub jumps: Vec<TimestampJump>,
    pub first_timestamp: Option<(DateTime<FixedOffset>, String)>,
    pub last_timestamp: Option<(DateTime<FixedOffset>, String)>,
}

/// An entry whose header is parsed and whose message may still grow with continuation lines.
struct Pending<'a> {
    entry: Entry<'a>,
    message: String,
    first_line: &'a str,
}

/// Walks `text` line by line and extracts events.
pub fn extract(text: &str) -> Extraction {
    let mut out = Extraction::default();
    let mut walker = Walker::default();
    let mut pending: Option<Pending<'_>> = None;

    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        out.counts.total += 1;
        let open = pending
            .as_ref()
            .is_some_and(|p| has_unclosed_bracket(&p.message));

        match classify(line_no, raw, pending.is_some(), open) {
            Line::Blank => out.counts.blank += 1,
            Line::Continuation => {
                out.counts.continuation += 1;
                if let Some(p) = pending
                    .as_mut()
                    .filter(|p| has_unclosed_bracket(&p.message))
                {
                    p.message.push(' ');
                    p.message.push_str(raw.trim());
                }
            }
            Line::Uninterpreted(reason) => {
                if let Some(p) = pending.take() {
                    walker.finish(p, &mut out);
                }
                record_uninterpreted(&mut out, line_no, reason.to_string(), raw);
            }
            Line::Entry(entry) => {
                if let Some(p) = pending.take() {
                    walker.finish(p, &mut out);
                }
                out.counts.entries += 1;
                pending = Some(Pending {
                    message: entry.message.to_string(),
                    first_line: raw,
                    entry,
                });
            }
        }
    }
    if let Some(p) = pending.take() {
        walker.finish(p, &mut out);
    }

    out
}

fn record_uninterpreted(out: &mut Extraction, line_no: usize, reason: String, raw: &str) {
    out.counts.uninterpreted += 1;
    if out.uninterpreted.len() < SHOWN_UNINTERPRETED {
        out.uninterpreted.push(UninterpretedLine {
            line: line_no,
            reason,
            text: raw.chars().take(SHOWN_TEXT_CHARS).collect(),
        });
    }
}

/// Clock and role state carried from one entry to the next.
#[derive(Default)]
struct Walker {
    first: Option<DateTime<FixedOffset>>,
    previous: Option<DateTime<FixedOffset>>,
    jumped_ms: i64,
    segment: u32,
    roles: Vec<(Option<String>, Role)>,
}

impl Walker {
    fn finish(&mut self, pending: Pending<'_>, out: &mut Extraction) {
        let entry = &pending.entry;
        let at = entry.timestamp;

        // The clock advances for every entry with a header, recognised or not, so a gap is never
        // hidden behind an uninterpreted entry.
        let first = *self.first.get_or_insert(at);
        if let Some(previous) = self.previous {
            let step_ms = (at - previous).num_milliseconds();
            if !(-BACKWARD_TOLERANCE_MS..=EXCERPT_JUMP_MS).contains(&step_ms) {
                self.jumped_ms += step_ms;
                self.segment += 1;
                out.jumps.push(TimestampJump {
                    line: entry.line_no,
                    from: out
                        .last_timestamp
                        .as_ref()
                        .map(|(_, t)| t.clone())
                        .unwrap_or_default(),
                    to: entry.timestamp_text.to_string(),
                    step_ms,
                });
            }
        }
        self.previous = Some(at);
        if out.first_timestamp.is_none() {
            out.first_timestamp = Some((at, entry.timestamp_text.to_string()));
        }
        out.last_timestamp = Some((at, entry.timestamp_text.to_string()));

        let server = entry.server.map(str::to_string);
        let role = match Role::from_logger(entry.logger) {
            Some(role) => {
                self.set_role(&server, role);
                Some(role)
            }
            None => self
                .roles
                .iter()
                .find(|(s, _)| *s == server)
                .map(|(_, r)| *r),
        };

        match parse_message(&pending.message) {
            Ok(message) => {
                out.counts.interpreted += 1;
                let offset_ms = (at - first).num_milliseconds();
                out.events.push(Event {
                    line_no: entry.line_no,
                    at,
                    at_text: entry.timestamp_text.to_string(),
                    offset_ms,
                    active_ms: offset_ms - self.jumped_ms,
                    segment: self.segment,
                    server,
                    level: entry.level,
                    role,
                    message,
                });
            }
            Err(reason) => {
                record_uninterpreted(out, entry.line_no, reason, pending.first_line);
            }
        }
    }

    fn set_role(&mut self, server: &Option<String>, role: Role) {
        match self.roles.iter_mut().find(|(s, _)| s == server) {
            Some(slot) => slot.1 = role,
            None => self.roles.push((server.clone(), role)),
        }
    }
}
