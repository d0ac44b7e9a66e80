//! Fault schedule specs: `KIND:TARGET@START[+DURATION]`.
//!
//! `KIND` is one of:
//! - `pause`: SIGSTOP, then SIGCONT after the duration.
//! - `kill`: SIGKILL, then a restart from the same data directory after the duration. Without
//!   a duration the node stays down.
//! - `partition`: every link between the target and the other nodes and the clients is cut
//!   for the duration.
//!
//! `TARGET` is `leader` or `follower` (both resolved when the fault fires), `node<N>` or `all`.
//! `START` is measured from the start of the load (time 0 of the recorded history, warm-up
//! included).
//!
//! Durations are a decimal number followed by a unit: `ms`, `s`, `m` or `h` (`2.5s`, `500ms`).
//! Parse errors name the spec and show the expected form, so a bad `--fault` is reported before
//! any server starts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Kind of fault: the action taken on the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Pause,
    Kill,
    Partition,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Pause => "pause",
            FaultKind::Kill => "kill",
            FaultKind::Partition => "partition",
        }
    }
}

/// Target of a fault: the node or nodes it hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultTarget {
    /// The node that is leader when the fault fires.
    Leader,
    /// A running node that is not the leader when the fault fires (the lowest such id).
    Follower,
    /// The node started with `--id N`.
    Node(u64),
    /// Every node.
    All,
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTarget::Leader => f.write_str("leader"),
            FaultTarget::Follower => f.write_str("follower"),
            FaultTarget::Node(id) => write!(f, "node{id}"),
            FaultTarget::All => f.write_str("all"),
        }
    }
}

/// One entry of the fault schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub target: FaultTarget,
    /// Time after the start of the load at which the fault fires.
    pub start: Duration,
    /// How long the fault lasts. `None` means until the end of the run (a `kill` is then
    /// never followed by a restart).
    pub duration: Option<Duration>,
}

impl FaultSpec {
    /// Returns when the fault ends, if it has a duration.
    pub fn end(&self) -> Option<Duration> {
        self.duration.map(|d| self.start + d)
    }
}

const SPEC_FORM: &str = "expected KIND:TARGET@START[+DURATION] with KIND pause|kill|partition, \
TARGET leader|follower|node<N>|all and durations like 10s, 2.5s or 500ms \
(for example pause:leader@10s+2.5s)";

/// Error parsing a fault spec; the message names the spec and the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault spec '{spec}': {reason}; {SPEC_FORM}")]
pub struct FaultSpecError {
    pub spec: String,
    pub reason: String,
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| FaultSpecError {
            spec: spec.to_string(),
            reason,
        };

        let (kind_text, rest) = spec
            .split_once(':')
            .ok_or_else(|| error("missing ':' after the fault kind".into()))?;
        let kind = match kind_text.trim() {
            "pause" => FaultKind::Pause,
            "kill" => FaultKind::Kill,
            "partition" => FaultKind::Partition,
            other => return Err(error(format!("unknown fault kind '{other}'"))),
        };

        let (target_text, timing) = rest
            .split_once('@')
            .ok_or_else(|| error("missing '@START' after the target".into()))?;
        let target = parse_target(target_text.trim()).map_err(error)?;

        let (start_text, duration_text) = match timing.split_once('+') {
            Some((start, duration)) => (start, Some(duration)),
            None => (timing, None),
        };
        let start = parse_duration(start_text.trim())
            .map_err(|reason| error(format!("start time: {reason}")))?;
        let duration = match duration_text {
            Some(text) => {
                let duration = parse_duration(text.trim())
                    .map_err(|reason| error(format!("duration: {reason}")))?;
                if duration.is_zero() {
                    return Err(error("the duration must be greater than zero".into()));
                }
                Some(duration)
            }
            None => None,
        };

        Ok(FaultSpec {
            kind,
            target,
            start,
            duration,
        })
    }
}

fn parse_target(text: &str) -> Result<FaultTarget, String> {
    match text {
        "leader" => Ok(FaultTarget::Leader),
        "follower" => Ok(FaultTarget::Follower),
        "all" => Ok(FaultTarget::All),
        _ => {
            let id = text
                .strip_prefix("node")
                .ok_or_else(|| format!("unknown target '{text}'"))?;
            let id: u64 = id
                .parse()
                .map_err(|_| format!("target '{text}' needs a node id after 'node', like node2"))?;
            if id == 0 {
                return Err("node ids start at 1 (node0 does not exist)".into());
            }
            Ok(FaultTarget::Node(id))
        }
    }
}

/// Parses a human duration: a non-negative decimal number followed by `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{text}' has no unit (use ms, s, m or h, as in 2.5s)"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("'{text}' is out of range"))
}

/// Formats a duration the way [`parse_duration`] reads it back.
pub fn format_duration(duration: Duration) -> String {
    // Whole milliseconds print exactly: a duration computed in floating point elsewhere (a
    // replayed log's pause, say) must not show as 2.5460000000000003s.
    let nanos = duration.as_nanos();
    if !nanos.is_multiple_of(1_000_000) {
        return format!("{}s", duration.as_secs_f64());
    }
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", ms as f64 / 1000.0)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}@{}",
            self.kind.as_str(),
            self.target,
            format_duration(self.start)
        )?;
        if let Some(duration) = self.duration {
            write!(f, "+{}", format_duration(duration))?;
        }
        Ok(())
    }
}

impl Serialize for FaultSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FaultSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_exactly() {
        assert_eq!(format_duration(Duration::from_millis(2546)), "2.546s");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(190)), "190ms");
        let spec: FaultSpec = "pause:leader@190ms+2546ms".parse().unwrap();
        assert_eq!(spec.to_string(), "pause:leader@190ms+2.546s");
    }

    #[test]
    fn parses_pause_with_duration() {
        let spec: FaultSpec = "pause:leader@10s+2.5s".parse().unwrap();
        assert_eq!(spec.kind, FaultKind::Pause);
        assert_eq!(spec.target, FaultTarget::Leader);
        assert_eq!(spec.start, Duration::from_secs(10));
        assert_eq!(spec.duration, Some(Duration::from_millis(2500)));
        assert_eq!(spec.end(), Some(Duration::from_millis(12_500)));
    }

    #[test]
    fn parses_kill_without_duration() {
        let spec: FaultSpec = "kill:node2@1500ms".parse().unwrap();
        assert_eq!(spec.kind, FaultKind::Kill);
        assert_eq!(spec.target, FaultTarget::Node(2));
        assert_eq!(spec.start, Duration::from_millis(1500));
        assert_eq!(spec.duration, None);
    }

    #[test]
    fn parses_every_target() {
        let cases = [
            ("partition:follower@1m+5s", FaultTarget::Follower),
            ("partition:all@1s+1s", FaultTarget::All),
            ("pause:node13@0s+1s", FaultTarget::Node(13)),
        ];
        for (text, target) in cases {
            let spec: FaultSpec = text.parse().unwrap();
            assert_eq!(spec.target, target, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "pause:leader@10s+2.5s",
            "kill:node2@1.5s",
            "partition:all@500ms+2m",
        ] {
            let spec: FaultSpec = text.parse().unwrap();
            let again: FaultSpec = spec.to_string().parse().unwrap();
            assert_eq!(spec, again, "{text} -> {spec}");
        }
    }

    #[test]
    fn errors_name_spec_and_reason() {
        let cases = [
            ("stall:leader@1s", "unknown fault kind 'stall'"),
            ("pause leader@1s", "missing ':'"),
            ("pause:leader", "missing '@START'"),
            ("pause:captain@1s", "unknown target 'captain'"),
            ("pause:nodeX@1s", "needs a node id"),
            ("pause:node0@1s", "node ids start at 1"),
            ("pause:leader@10", "has no unit"),
            ("pause:leader@10s+2.5x", "unknown unit 'x'"),
            ("pause:leader@10s+0s", "greater than zero"),
            ("pause:leader@-1s", "does not start with a number"),
        ];
        for (text, reason) in cases {
            let message = text.parse::<FaultSpec>().unwrap_err().to_string();
            assert!(message.contains(text), "{message} should name {text}");
            assert!(
                message.contains(reason),
                "{message} should contain {reason}"
            );
            assert!(message.contains("KIND:TARGET@START"), "{message}");
        }
    }
}
