//! Interpretation of the message text of one Copycat server log entry.
//!
//! Each message Copycat 1.x servers log at DEBUG/INFO/WARN that matters for the workload or the
//! failover timeline becomes a [`Message`]. The forms recognised are the request/response
//! traces (`Received X[...]`, `Sent X[...] to addr`), vote and poll verdicts with their reasons,
//! log appends and applications, the follower's heartbeat and poll messages, and the state
//! timers whose start and cancellation mark role changes. A message that matches none of them
//! is returned as an error so the analysis can count and show it.

use super::record::{member_address, parse_java_duration_ms, Record, RecordError};

/// One interpreted server message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `Received XRequest[...]`, or `Received XResponse[...] from /addr`.
    Received {
        record: Record,
        peer: Option<String>,
    },
    /// `Sent XResponse[...]`, or `Sent XRequest[...] to /addr`.
    Sent {
        record: Record,
        peer: Option<String>,
    },
    /// `Accepted XRequest[...]: reason` or `Rejected XRequest[...]: reason`.
    Verdict {
        accepted: bool,
        record: Record,
        reason: String,
    },
    /// `Appended XEntry[...]`, optionally followed by `to log at index N`.
    Appended { record: Record },
    /// `Applying XEntry[...]` from the state machine.
    Applying { record: Record },
    /// `Heartbeat timed out in PT0.762S`.
    HeartbeatTimedOut { after_ms: u64 },
    /// `Polling members [ServerMember[...], ...]`: start of a pre-vote round.
    PollingMembers { members: Vec<String> },
    /// `Polling ServerMember[...] for next term N`.
    PollingMember { member: String, next_term: u64 },
    /// `Failed to poll a majority of the cluster in PT0.75S`.
    PollFailed { after_ms: u64 },
    /// `Received accepted poll from ...`, `Received rejected poll from ...`, or
    /// `Received accepted poll for a different term from ...` (which counts as a rejection).
    PollReply {
        member: String,
        accepted: bool,
        other_term: bool,
    },
    /// `Received greater term`: the server saw a higher term and leaves its role.
    ReceivedGreaterTerm,
    /// `Starting heartbeat timer`: the server opened the follower state.
    HeartbeatTimerStarted,
    /// `Cancelling heartbeat timer`: the server closed the follower state.
    HeartbeatTimerCancelled,
    /// `Cancelling append timer`: the server closed the leader state.
    AppendTimerCancelled,
    /// `Appended entry term does not match local log, removing incorrect entries`.
    RemovingIncorrectEntries,
    /// `request timed out`, logged at WARN when a request to a peer got no response.
    RequestTimedOut,
    /// `Transitioning to FOLLOWER` and similar, logged by the server context.
    Transitioning { state: String },
}

/// Interprets `text`, the part of the line after the server address.
pub fn parse_message(text: &str) -> Result<Message, String> {
    let text = text.trim_end();

    if let Some(rest) = text.strip_prefix("Received ") {
        return parse_received(rest);
    }
    if let Some(rest) = text.strip_prefix("Sent ") {
        let (record, tail) = Record::parse_prefix(rest).map_err(describe)?;
        let peer = tail
            .trim()
            .strip_prefix("to ")
            .map(|p| p.trim().to_string());
        return Ok(Message::Sent { record, peer });
    }
    if let Some(rest) = text.strip_prefix("Accepted ") {
        return parse_verdict(rest, true);
    }
    if let Some(rest) = text.strip_prefix("Rejected ") {
        return parse_verdict(rest, false);
    }
    if text == "Appended entry term does not match local log, removing incorrect entries" {
        return Ok(Message::RemovingIncorrectEntries);
    }
    if let Some(rest) = text.strip_prefix("Appended ") {
        let (record, _) = Record::parse_prefix(rest).map_err(describe)?;
        return Ok(Message::Appended { record });
    }
    if let Some(rest) = text.strip_prefix("Applying ") {
        let (record, _) = Record::parse_prefix(rest).map_err(describe)?;
        return Ok(Message::Applying { record });
    }
    if let Some(rest) = text.strip_prefix("Heartbeat timed out in ") {
        let after_ms =
            parse_java_duration_ms(rest).ok_or_else(|| format!("invalid duration {rest:?}"))?;
        return Ok(Message::HeartbeatTimedOut { after_ms });
    }
    if let Some(rest) = text.strip_prefix("Failed to poll a majority of the cluster in ") {
        let after_ms =
            parse_java_duration_ms(rest).ok_or_else(|| format!("invalid duration {rest:?}"))?;
        return Ok(Message::PollFailed { after_ms });
    }
    if let Some(rest) = text.strip_prefix("Polling members ") {
        return parse_polling_members(rest);
    }
    if let Some(rest) = text.strip_prefix("Polling ") {
        let (member, tail) = rest
            .rsplit_once(" for next term ")
            .ok_or_else(|| "poll message without 'for next term'".to_string())?;
        let next_term = tail
            .trim()
            .parse()
            .map_err(|_| format!("invalid term {tail:?}"))?;
        return Ok(Message::PollingMember {
            member: address_or_text(member),
            next_term,
        });
    }
    if let Some(rest) = text.strip_prefix("Transitioning to ") {
        return Ok(Message::Transitioning {
            state: rest.trim().to_string(),
        });
    }

    match text {
        "Starting heartbeat timer" => Ok(Message::HeartbeatTimerStarted),
        "Cancelling heartbeat timer" => Ok(Message::HeartbeatTimerCancelled),
        "Cancelling append timer" => Ok(Message::AppendTimerCancelled),
        "request timed out" => Ok(Message::RequestTimedOut),
        _ => Err("message not recognised".to_string()),
    }
}

fn parse_received(rest: &str) -> Result<Message, String> {
    if rest == "greater term" {
        return Ok(Message::ReceivedGreaterTerm);
    }
    for (prefix, accepted, other_term) in [
        ("accepted poll for a different term from ", true, true),
        ("accepted poll from ", true, false),
        ("rejected poll from ", false, false),
    ] {
        if let Some(member) = rest.strip_prefix(prefix) {
            return Ok(Message::PollReply {
                member: address_or_text(member),
                accepted,
                other_term,
            });
        }
    }

    let (record, tail) = Record::parse_prefix(rest).map_err(describe)?;
    let peer = tail
        .trim()
        .strip_prefix("from ")
        .map(|p| p.trim().to_string());
    Ok(Message::Received { record, peer })
}

fn parse_verdict(rest: &str, accepted: bool) -> Result<Message, String> {
    let (record, tail) = Record::parse_prefix(rest).map_err(describe)?;
    let reason = tail.trim().trim_start_matches(':').trim().to_string();
    Ok(Message::Verdict {
        accepted,
        record,
        reason,
    })
}

fn parse_polling_members(rest: &str) -> Result<Message, String> {
    let inner = rest
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| RecordError::Unclosed.to_string())?;
    let wrapped = format!("Members[list=[{inner}]]");
    let (record, _) = Record::parse_prefix(&wrapped).map_err(describe)?;
    let members = record
        .get_list("list")
        .unwrap_or_default()
        .iter()
        .map(|m| address_or_text(m))
        .collect();
    Ok(Message::PollingMembers { members })
}

/// Server address of a printed member, or the text itself when it is not a `ServerMember`.
fn address_or_text(text: &str) -> String {
    member_address(text).unwrap_or_else(|| text.trim().to_string())
}

fn describe(error: RecordError) -> String {
    error.to_string()
}
