//! Workload flags of `ringraft load` (and the `[workload]` table of a bench scenario).
//!
//! One struct serves clap and serde so that a scenario file and the command line name the
//! same settings the same way. The defaults reproduce the shape of the Copycat seed cluster:
//! three sessions, each alternating an Add and a Query, one request in flight per session,
//! paced by the replies (closed loop).
//!
//! `Default` must agree with the clap defaults; a unit test parses an empty command line and
//! compares the two.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ringraft_protocol::Consistency;
use serde::{Deserialize, Serialize};

/// Add:Query mix of every session, as two integer weights (`1:1` alternates them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mix {
    pub add: u32,
    pub query: u32,
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("invalid mix '{s}': expected ADD:QUERY weights such as 1:1 or 3:1");
        let (add, query) = s.split_once(':').ok_or_else(invalid)?;
        let add: u32 = add.trim().parse().map_err(|_| invalid())?;
        let query: u32 = query.trim().parse().map_err(|_| invalid())?;
        if add == 0 && query == 0 {
            return Err(format!(
                "invalid mix '{s}': at least one weight must be positive"
            ));
        }
        Ok(Mix { add, query })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.add, self.query)
    }
}

impl TryFrom<String> for Mix {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Mix> for String {
    fn from(m: Mix) -> String {
        m.to_string()
    }
}

/// How Add and Query pick their tag among `--tags` tags.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TagDistribution {
    Uniform,
    /// Zipfian with exponent `s` (> 0): tag rank k is drawn with weight 1/k^s.
    Zipfian(f64),
}

impl FromStr for TagDistribution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "uniform" {
            return Ok(TagDistribution::Uniform);
        }
        let invalid = || {
            format!("invalid tag distribution '{s}': expected uniform or zipfian:<exponent>, such as zipfian:0.99")
        };
        let exponent = s.strip_prefix("zipfian:").ok_or_else(invalid)?;
        let exponent: f64 = exponent.parse().map_err(|_| invalid())?;
        if !(exponent > 0.0 && exponent.is_finite()) {
            return Err(format!(
                "invalid zipfian exponent {exponent} in '{s}': it must be a positive number"
            ));
        }
        Ok(TagDistribution::Zipfian(exponent))
    }
}

impl fmt::Display for TagDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagDistribution::Uniform => f.write_str("uniform"),
            TagDistribution::Zipfian(s) => write!(f, "zipfian:{s}"),
        }
    }
}

impl TryFrom<String> for TagDistribution {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TagDistribution> for String {
    fn from(d: TagDistribution) -> String {
        d.to_string()
    }
}

/// Serde of [`Consistency`] by its command-line spelling (`linearizable`, ...).
mod consistency_text {
    use ringraft_protocol::Consistency;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &Consistency, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(c)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Consistency, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration '{s}': {e} (examples: 500ms, 10s, 2m)"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .parse()
        .map_err(|_| format!("invalid rate '{s}': expected requests per second, such as 1000"))?;
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(format!(
            "invalid rate {rate}: it must be positive (leave --rate out for a closed loop)"
        ));
    }
    Ok(rate)
}

/// Workload, pacing and client settings of one load run.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadArgs {
    /// Number of client sessions; each runs its own Add/Query stream.
    #[arg(long, default_value_t = 3)]
    pub sessions: u32,

    /// Add:Query weights of every session's stream (1:1 alternates Add and Query).
    #[arg(long, default_value = "1:1")]
    pub mix: Mix,

    /// Consistency level of queries: linearizable, lease or sequential.
    #[arg(long, default_value = "linearizable")]
    #[serde(with = "consistency_text")]
    pub consistency: Consistency,

    /// Size of the opaque payload of every Add, in bytes.
    #[arg(long, default_value_t = 16)]
    pub payload_bytes: usize,

    /// Number of distinct tags (`t0` .. `t<N-1>`) that Adds write and Queries read.
    #[arg(long, default_value_t = 1000)]
    pub tags: u64,

    /// Distribution of tags over Adds: uniform or zipfian:<exponent> (for example zipfian:0.99).
    #[arg(long, default_value = "uniform")]
    pub tag_distribution: TagDistribution,

    /// Requests each session may have in flight at once (pipelining depth).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    /// Seed of the workload streams; absent: a random seed, printed in the results.
    #[arg(long)]
    #[serde(deserialize_with = "deserialize_seed")]
    pub seed: Option<u64>,

    /// Total target rate over all sessions, in requests per second (open loop). Absent: closed
    /// loop, each session sends as fast as its replies come back.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Length of the measured run, after the warm-up (for example 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub duration: Duration,

    /// Warm-up before the measured run; its requests are sent and written to the history but
    /// kept out of the latency histograms and counted apart.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,

    /// Time after which a request with no final reply is given up and recorded as
    /// indeterminate, measured from its first send.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,

    /// Give up on a member after this long without any reply while a request to it is
    /// outstanding: the session marks it unresponsive for a while, tries the other members and
    /// resends the request with the same sequence. This is how clients leave a paused leader
    /// before it wakes up. 0s disables it (requests then wait for --request-timeout).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub failover_timeout: Duration,

    /// Time allowed to open a TCP connection and complete the handshake with one member.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,

    /// Session timeout requested at registration; absent: the server's default.
    #[arg(long, value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub session_timeout: Option<Duration>,

    /// Interval between keep-alives of a session; absent or larger than a third of the session
    /// timeout the server granted: a third of that timeout.
    #[arg(long, value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub keepalive: Option<Duration>,

    /// Cluster id sent in the handshake; it must match the servers' --cluster-id.
    #[arg(long, default_value = "ringraft")]
    pub cluster_id: String,

    /// Pin executor i to CPU i (mod the CPU count). Off by default, because on a machine
    /// shared with the servers a pinned executor cannot move off a busy core.
    #[arg(long)]
    pub pin_executors: bool,
}

impl Default for WorkloadArgs {
    fn default() -> Self {
        WorkloadArgs {
            sessions: 3,
            mix: Mix { add: 1, query: 1 },
            consistency: Consistency::Linearizable,
            payload_bytes: 16,
            tags: 1000,
            tag_distribution: TagDistribution::Uniform,
            pipeline: 1,
            seed: None,
            rate: None,
            duration: Duration::from_secs(30),
            warmup: Duration::ZERO,
            request_timeout: Duration::from_secs(10),
            failover_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            session_timeout: None,
            keepalive: None,
            cluster_id: "ringraft".to_string(),
            pin_executors: false,
        }
    }
}

impl WorkloadArgs {
    /// Check the settings that clap and serde cannot check one by one.
    pub fn validate(&self) -> Result<(), String> {
        if self.sessions == 0 {
            return Err("--sessions must be at least 1".into());
        }
        if self.pipeline == 0 {
            return Err("--pipeline must be at least 1".into());
        }
        if self.tags == 0 {
            return Err("--tags must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be longer than zero".into());
        }
        if self.request_timeout.is_zero() {
            return Err("--request-timeout must be longer than zero".into());
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return Err(format!("--rate {rate} must be a positive number"));
            }
        }
        if self.mix.add == 0 && self.mix.query == 0 {
            return Err("--mix needs at least one positive weight".into());
        }
        Ok(())
    }
}

/// Reads a seed given as an integer or as a decimal string. TOML integers are signed 64-bit, so
/// a scenario file (or the harness) writes seeds above `i64::MAX` as strings.
fn deserialize_seed<'de, D>(deserializer: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Seed {
        Number(u64),
        Text(String),
    }

    match <Option<Seed> as serde::Deserialize>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Seed::Number(seed)) => Ok(Some(seed)),
        Some(Seed::Text(text)) => text.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "seed '{text}' is not a whole number from 0 to {}",
                u64::MAX
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        workload: WorkloadArgs,
    }

    #[test]
    fn clap_defaults_equal_default() {
        let cli = Cli::try_parse_from(["load"]).unwrap();
        assert_eq!(cli.workload, WorkloadArgs::default());
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "load",
            "--rate",
            "1000",
            "--mix",
            "3:1",
            "--tag-distribution",
            "zipfian:0.99",
            "--duration",
            "1m",
            "--consistency",
            "sequential",
        ])
        .unwrap();
        assert_eq!(cli.workload.rate, Some(1000.0));
        assert_eq!(cli.workload.mix, Mix { add: 3, query: 1 });
        assert_eq!(
            cli.workload.tag_distribution,
            TagDistribution::Zipfian(0.99)
        );
        assert_eq!(cli.workload.duration, Duration::from_secs(60));
        assert_eq!(cli.workload.consistency, Consistency::Sequential);
    }

    #[test]
    fn invalid_values_rejected() {
        assert!("0:0".parse::<Mix>().is_err());
        assert!("1".parse::<Mix>().is_err());
        assert!("zipfian:-1".parse::<TagDistribution>().is_err());
        assert!("pareto".parse::<TagDistribution>().is_err());
        assert!(Cli::try_parse_from(["load", "--rate", "0"]).is_err());
    }

    #[test]
    fn serde_round_trip() {
        let args = WorkloadArgs {
            rate: Some(500.0),
            session_timeout: Some(Duration::from_secs(5)),
            tag_distribution: TagDistribution::Zipfian(1.2),
            ..WorkloadArgs::default()
        };
        let json = serde_json::to_string(&args).unwrap();
        let back: WorkloadArgs = serde_json::from_str(&json).unwrap();
        assert_eq!(back, args);

        let partial: WorkloadArgs =
            serde_json::from_str(r#"{"sessions": 5, "duration": "10s"}"#).unwrap();
        assert_eq!(partial.sessions, 5);
        assert_eq!(partial.duration, Duration::from_secs(10));
        assert_eq!(partial.pipeline, 1);
    }
}
