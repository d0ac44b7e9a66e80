//! Scenario files: the settings of a bench run in TOML, merged with the command-line flags.
//!
//! A scenario has the cluster shape (`nodes`), the run length (`duration`) and the fault
//! schedule (`faults`). Its `[server]` table is passed to every `ringraft server` as flags. Its
//! `[workload]` table is passed to the load generator's `WorkloadArgs` unchanged, so every load
//! generator setting can appear there. A flag given on the command line replaces the file's
//! value, and `--fault` replaces the whole schedule.
//!
//! The four shipped scenarios are compiled into the binary as well, so `--scenario seed` works
//! from any directory. A file `bench/scenarios/<name>.toml` under the current directory takes
//! precedence over the built-in copy, so edits to the checked-out files take effect.
//!
//! Every check that can fail (unknown keys, a fault on a node that does not exist, a fault
//! after the end of the run, faults against an external cluster) runs here, before any server
//! process starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::args::BenchArgs;
use super::faults::{format_duration, parse_duration, FaultKind, FaultSpec, FaultTarget};

/// Built-in scenarios, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("seed", include_str!("../../bench/scenarios/seed.toml")),
    (
        "throughput",
        include_str!("../../bench/scenarios/throughput.toml"),
    ),
    (
        "failover",
        include_str!("../../bench/scenarios/failover.toml"),
    ),
    (
        "partition",
        include_str!("../../bench/scenarios/partition.toml"),
    ),
];

/// Name of the scenario run when `--scenario` is absent.
pub const DEFAULT_SCENARIO: &str = "seed";

/// A bench run's settings, as read from a scenario file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    #[serde(with = "duration_text")]
    pub duration: Duration,
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    #[serde(default)]
    pub server: ServerSettings,
    /// Load generator settings, passed through to its `WorkloadArgs`.
    #[serde(default)]
    pub workload: toml::Table,
}

fn default_nodes() -> usize {
    3
}

/// Settings passed to every server process as flags.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    #[serde(default = "default_storage")]
    pub storage: String,
    #[serde(default = "default_fsync")]
    pub fsync: String,
    #[serde(default = "default_cluster_id")]
    pub cluster_id: String,
    pub election_timeout_ms: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub session_timeout_ms: Option<u64>,
    pub max_append_entries: Option<u64>,
    pub max_append_bytes: Option<u64>,
    pub max_inflight: Option<u64>,
    /// Further flags appended to every server's command line unchanged.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn default_storage() -> String {
    "mmap".into()
}
fn default_fsync() -> String {
    "batch".into()
}
fn default_cluster_id() -> String {
    "ringraft".into()
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            storage: default_storage(),
            fsync: default_fsync(),
            cluster_id: default_cluster_id(),
            election_timeout_ms: None,
            heartbeat_ms: None,
            session_timeout_ms: None,
            max_append_entries: None,
            max_append_bytes: None,
            max_inflight: None,
            extra_args: Vec::new(),
        }
    }
}

impl ServerSettings {
    /// Server flags for these settings, without the per-node ones (id, addresses, data dir).
    pub fn flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--storage".to_string(),
            self.storage.clone(),
            "--fsync".to_string(),
            self.fsync.clone(),
            "--cluster-id".to_string(),
            self.cluster_id.clone(),
        ];
        let optional = [
            ("--election-timeout-ms", self.election_timeout_ms),
            ("--heartbeat-ms", self.heartbeat_ms),
            ("--session-timeout-ms", self.session_timeout_ms),
            ("--max-append-entries", self.max_append_entries),
            ("--max-append-bytes", self.max_append_bytes),
            ("--max-inflight", self.max_inflight),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                flags.push(flag.to_string());
                flags.push(value.to_string());
            }
        }
        flags.extend(self.extra_args.iter().cloned());
        flags
    }
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&super::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text)
            .map_err(|reason| serde::de::Error::custom(format!("invalid duration: {reason}")))
    }
}

/// Error loading or validating a scenario; each names the scenario or value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario file {path} not found; give an existing TOML file or one of the built-in scenarios: {builtin}")]
    NotFound { path: PathBuf, builtin: String },
    #[error("unknown scenario '{name}': no file bench/scenarios/{name}.toml here and no built-in scenario of that name; the built-in scenarios are {builtin}")]
    UnknownName { name: String, builtin: String },
    #[error("failed to read scenario file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid scenario {origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid --workload override '{text}': expected KEY=VALUE, for example --workload payload_bytes=128")]
    Override { text: String },
    #[error("invalid setting (scenario {origin} with the command-line flags): {reason}")]
    Invalid { origin: String, reason: String },
}

/// A scenario after merging the flags, with where it came from.
#[derive(Clone, Debug)]
pub struct ResolvedScenario {
    pub scenario: Scenario,
    /// The file it was read from, or `built-in seed` and the like.
    pub origin: String,
    /// Client addresses of an existing cluster (`--cluster`), empty when the harness starts one.
    pub external_cluster: Vec<String>,
}

fn builtin_names() -> String {
    BUILTIN
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds and parses the scenario `--scenario` names, without applying flags.
pub fn load(selector: Option<&str>) -> Result<(Scenario, String), ScenarioError> {
    let selector = selector.unwrap_or(DEFAULT_SCENARIO);
    let looks_like_path = selector.contains('/') || selector.ends_with(".toml");

    if looks_like_path {
        let path = PathBuf::from(selector);
        if !path.is_file() {
            return Err(ScenarioError::NotFound {
                path,
                builtin: builtin_names(),
            });
        }
        return parse_file(&path);
    }

    let local = Path::new("bench/scenarios").join(format!("{selector}.toml"));
    if local.is_file() {
        return parse_file(&local);
    }
    match BUILTIN.iter().find(|(name, _)| *name == selector) {
        Some((name, text)) => {
            let origin = format!("built-in {name}");
            parse_text(text, &origin).map(|scenario| (scenario, origin))
        }
        None => Err(ScenarioError::UnknownName {
            name: selector.to_string(),
            builtin: builtin_names(),
        }),
    }
}

fn parse_file(path: &Path) -> Result<(Scenario, String), ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    parse_text(&text, &origin).map(|scenario| (scenario, origin))
}

/// Parses a scenario from TOML text; `origin` names it in errors.
pub fn parse_text(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    toml::from_str(text).map_err(|source| ScenarioError::Parse {
        origin: origin.to_string(),
        source: Box::new(source),
    })
}

/// Loads the scenario the flags select, applies the flags on top and validates the result.
pub fn resolve(args: &BenchArgs) -> Result<ResolvedScenario, ScenarioError> {
    let (mut scenario, origin) = load(args.scenario.as_deref())?;
    apply_flags(&mut scenario, args)?;

    let resolved = ResolvedScenario {
        scenario,
        origin,
        external_cluster: args.cluster.clone(),
    };
    validate(&resolved)?;
    Ok(resolved)
}

fn apply_flags(scenario: &mut Scenario, args: &BenchArgs) -> Result<(), ScenarioError> {
    if let Some(nodes) = args.nodes {
        scenario.nodes = nodes;
    }
    if let Some(duration) = args.duration {
        scenario.duration = duration;
    }
    if args.no_faults {
        scenario.faults.clear();
    } else if !args.faults.is_empty() {
        scenario.faults = args.faults.clone();
    }

    let server = &mut scenario.server;
    if let Some(storage) = &args.storage {
        server.storage = storage.clone();
    }
    if let Some(fsync) = &args.fsync {
        server.fsync = fsync.clone();
    }
    if let Some(cluster_id) = &args.cluster_id {
        server.cluster_id = cluster_id.clone();
    }
    let numbers = [
        (&mut server.election_timeout_ms, args.election_timeout_ms),
        (&mut server.heartbeat_ms, args.heartbeat_ms),
        (&mut server.session_timeout_ms, args.session_timeout_ms),
        (&mut server.max_append_entries, args.max_append_entries),
        (&mut server.max_append_bytes, args.max_append_bytes),
        (&mut server.max_inflight, args.max_inflight),
    ];
    for (field, flag) in numbers {
        if flag.is_some() {
            *field = flag;
        }
    }

    let workload = &mut scenario.workload;
    if let Some(sessions) = args.sessions {
        workload.insert("sessions".into(), toml::Value::Integer(sessions as i64));
    }
    if let Some(rate) = args.rate {
        workload.insert("rate".into(), toml::Value::Float(rate));
    }
    if args.closed_loop {
        workload.remove("rate");
    }
    if let Some(seed) = args.seed {
        // TOML integers are signed; larger seeds travel as strings, which the workload accepts.
        let value = i64::try_from(seed)
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(seed.to_string()));
        workload.insert("seed".into(), value);
    }
    for text in &args.workload_overrides {
        let (key, value) = text
            .split_once('=')
            .filter(|(key, _)| !key.trim().is_empty())
            .ok_or_else(|| ScenarioError::Override { text: text.clone() })?;
        workload.insert(key.trim().to_string(), parse_override_value(value.trim()));
    }
    Ok(())
}

/// Reads an override value as a TOML value (number, boolean, array...), else as a string.
fn parse_override_value(text: &str) -> toml::Value {
    let document = format!("value = {text}");
    match toml::from_str::<toml::Table>(&document) {
        Ok(mut table) => table
            .remove("value")
            .unwrap_or(toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

fn validate(resolved: &ResolvedScenario) -> Result<(), ScenarioError> {
    let scenario = &resolved.scenario;
    let invalid = |reason: String| ScenarioError::Invalid {
        origin: resolved.origin.clone(),
        reason,
    };

    // Bounds of the load's length: shorter than a second measures nothing, and the upper
    // bound keeps the value within what the load generator's settings can carry.
    const MIN_DURATION: Duration = Duration::from_secs(1);
    const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
    if scenario.duration < MIN_DURATION || scenario.duration > MAX_DURATION {
        return Err(invalid(format!(
            "duration {} (--duration or `duration`) is outside 1s to 168h; give a value such as 20s",
            format_duration(scenario.duration)
        )));
    }
    if resolved.external_cluster.is_empty() && scenario.nodes == 0 {
        return Err(invalid("nodes must be at least 1".into()));
    }
    if !resolved.external_cluster.is_empty() && !scenario.faults.is_empty() {
        let specs: Vec<String> = scenario.faults.iter().map(ToString::to_string).collect();
        return Err(invalid(format!(
            "faults {} need control of the server processes, which --cluster does not give; \
             drop --cluster to let the harness start the cluster, or pass --no-faults",
            specs.join(", ")
        )));
    }

    // Check the values passed through to the servers here, so a typo fails before any
    // process starts instead of as a server that exits at once.
    if let Err(e) = scenario.server.storage.parse::<ringraft_storage::Backend>() {
        return Err(invalid(format!(
            "storage '{}' (--storage or [server] storage): {e}",
            scenario.server.storage
        )));
    }
    if let Err(e) = scenario
        .server
        .fsync
        .parse::<ringraft_storage::SyncPolicy>()
    {
        return Err(invalid(format!(
            "fsync '{}' (--fsync or [server] fsync): {e}",
            scenario.server.fsync
        )));
    }

    for fault in &scenario.faults {
        if fault.start >= scenario.duration {
            return Err(invalid(format!(
                "fault {fault} starts at or after the end of the {} run; start it earlier or raise --duration",
                format_duration(scenario.duration)
            )));
        }
        if let FaultTarget::Node(id) = fault.target {
            if id as usize > scenario.nodes {
                return Err(invalid(format!(
                    "fault {fault} targets node{id} but the cluster has {} nodes (node1..node{})",
                    scenario.nodes, scenario.nodes
                )));
            }
        }
        if fault.kind == FaultKind::Partition && scenario.nodes < 2 {
            return Err(invalid(format!(
                "fault {fault} needs at least two nodes to cut apart"
            )));
        }
    }
    Ok(())
}

impl Scenario {
    /// Whether the schedule has a partition, so the harness must route links through relays.
    pub fn needs_relays(&self) -> bool {
        self.faults.iter().any(|f| f.kind == FaultKind::Partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BenchArgs {
        BenchArgs::default()
    }

    #[test]
    fn builtin_scenarios_parse() {
        for (name, text) in BUILTIN {
            let scenario = parse_text(text, name).unwrap();
            assert_eq!(&scenario.name, name);
            assert!(scenario.nodes >= 1);
        }
    }

    #[test]
    fn duration_out_of_bounds_names_flag() {
        for duration in [
            Duration::from_millis(100),
            Duration::from_secs(8 * 24 * 3600),
        ] {
            let args = BenchArgs {
                duration: Some(duration),
                no_faults: true,
                ..BenchArgs::default()
            };
            let message = resolve(&args).unwrap_err().to_string();
            assert!(message.contains("--duration"), "{message}");
            assert!(message.contains("1s to 168h"), "{message}");
        }
    }

    #[test]
    fn default_is_seed_with_leader_pause() {
        let resolved = resolve(&args()).unwrap();
        let scenario = &resolved.scenario;
        assert_eq!(scenario.name, "seed");
        assert_eq!(scenario.nodes, 3);
        assert_eq!(scenario.server.storage, "mmap");
        assert_eq!(scenario.server.fsync, "batch");
        assert_eq!(scenario.faults.len(), 1);
        assert_eq!(scenario.faults[0].kind, FaultKind::Pause);
        assert_eq!(scenario.faults[0].target, FaultTarget::Leader);
        assert_eq!(
            scenario.faults[0].duration,
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn flags_override_file() {
        let mut args = args();
        args.nodes = Some(5);
        args.duration = Some(Duration::from_secs(4));
        args.faults = vec!["kill:node5@1s".parse().unwrap()];
        args.storage = Some("memory".into());
        args.heartbeat_ms = Some(50);
        args.sessions = Some(7);
        args.closed_loop = true;
        args.workload_overrides = vec![
            "payload_bytes=128".into(),
            "tag_distribution=zipfian:0.99".into(),
        ];

        let scenario = resolve(&args).unwrap().scenario;
        assert_eq!(scenario.nodes, 5);
        assert_eq!(scenario.duration, Duration::from_secs(4));
        assert_eq!(scenario.faults, args.faults);
        assert_eq!(scenario.server.storage, "memory");
        assert_eq!(scenario.server.fsync, "batch");
        assert_eq!(scenario.server.heartbeat_ms, Some(50));
        assert_eq!(scenario.workload["sessions"], toml::Value::Integer(7));
        assert!(!scenario.workload.contains_key("rate"));
        assert_eq!(
            scenario.workload["payload_bytes"],
            toml::Value::Integer(128)
        );
        assert_eq!(
            scenario.workload["tag_distribution"],
            toml::Value::String("zipfian:0.99".into())
        );
    }

    #[test]
    fn missing_file_is_named() {
        let mut args = args();
        args.scenario = Some("no/such/scenario.toml".into());
        let message = resolve(&args).unwrap_err().to_string();
        assert!(message.contains("no/such/scenario.toml"), "{message}");
        assert!(message.contains("not found"), "{message}");
    }

    #[test]
    fn unknown_name_lists_builtin() {
        let mut args = args();
        args.scenario = Some("nosuch".into());
        let message = resolve(&args).unwrap_err().to_string();
        assert!(message.contains("'nosuch'"), "{message}");
        assert!(message.contains("throughput"), "{message}");
    }

    #[test]
    fn fault_on_missing_node_rejected() {
        let mut args = args();
        args.faults = vec!["pause:node4@1s+1s".parse().unwrap()];
        let message = resolve(&args).unwrap_err().to_string();
        assert!(message.contains("node4"), "{message}");
        assert!(message.contains("3 nodes"), "{message}");
    }

    #[test]
    fn fault_after_end_rejected() {
        let mut args = args();
        args.duration = Some(Duration::from_secs(5));
        args.faults = vec!["pause:leader@6s+1s".parse().unwrap()];
        let message = resolve(&args).unwrap_err().to_string();
        assert!(message.contains("pause:leader@6s+1s"), "{message}");
    }

    #[test]
    fn external_cluster_rejects_faults() {
        let mut args = args();
        args.cluster = vec!["127.0.0.1:7001".into()];
        let message = resolve(&args).unwrap_err().to_string();
        assert!(message.contains("pause:leader"), "{message}");
        assert!(message.contains("--no-faults"), "{message}");

        args.no_faults = true;
        assert!(resolve(&args).is_ok());
    }

    #[test]
    fn unknown_key_rejected() {
        let error =
            parse_text("name = \"x\"\nduration = \"1s\"\nnodez = 3\n", "test.toml").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("test.toml"), "{message}");
        assert!(message.contains("nodez"), "{message}");
    }

    #[test]
    fn server_flags_listed() {
        let settings = ServerSettings {
            heartbeat_ms: Some(100),
            extra_args: vec!["--log-format".into(), "json".into()],
            ..ServerSettings::default()
        };
        let flags = settings.flags();
        assert_eq!(
            flags,
            [
                "--storage",
                "mmap",
                "--fsync",
                "batch",
                "--cluster-id",
                "ringraft",
                "--heartbeat-ms",
                "100",
                "--log-format",
                "json"
            ]
        );
    }
}
