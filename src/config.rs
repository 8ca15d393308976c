//! Typed configuration: layered load, then validation that reports every
//! problem at once.
//!
//! Layers, later wins:
//! 1. `base.toml` beside the region file (shared by every region),
//! 2. the region file named by `--config` (`regions/us-east-1.toml`),
//! 3. environment variables `FAILOVERD__<SECTION>__<KEY>` (for example
//!    `FAILOVERD__TIMINGS__POLL_INTERVAL=2s`).
//!
//! Loading is two passes. The `config` crate merges the layers into a tree
//! that remembers which file each value came from; a *raw* pass deserializes
//! that tree into lenient structs (durations and addresses as strings,
//! unknown keys collected with `serde_ignored` rather than failing on the
//! first), and a *validation* pass turns the raw structs into [`Config`],
//! collecting every problem with the file and key it belongs to. We rejected
//! `#[serde(deny_unknown_fields)]` with typed fields because it stops at the
//! first error, and an operator fixing a file wants the whole list.
//!
//! The environment is passed in as a map ([`EnvSource`]) so that tests never
//! mutate the process environment.
//!
//! Credentials never come from these files: the AWS clients use the SDK's
//! default chain (environment, profile, SSO, instance role).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Exit code for an invalid configuration (sysexits.h `EX_CONFIG`).
pub const EX_CONFIG: i32 = 78;

/// Prefix of environment variables that override file settings.
pub const ENV_PREFIX: &str = "FAILOVERD";

/// Environment variables visible to the loader, as a map. Production passes
/// `std::env::vars()`; tests pass exactly what they mean.
pub type EnvSource = HashMap<String, String>;

/// The validated configuration of one daemon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The region this daemon runs in; must be one of `regions`.
    pub region: String,
    /// Every serving region, in the order written.
    pub regions: Vec<RegionConfig>,
    /// DynamoDB tables.
    pub tables: Tables,
    /// Detection and protocol timings.
    pub timings: Timings,
    /// Failover policy switches.
    pub policy: Policy,
    /// Health signals: Route 53 budget, probe timeouts.
    pub health: Health,
    /// The embedded inference router.
    pub router: Router,
    /// Models clients may call (the SageMaker `TargetModel` on each path's
    /// endpoint), with their default traffic class.
    pub models: Vec<ModelConfig>,
    /// Listen addresses.
    pub listen: Listen,
    /// Per-service endpoint URL overrides: for the local lab only, empty in
    /// production files.
    pub endpoints: EndpointOverrides,
    /// The files that were merged, in order (for `check-config` and logs).
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
}

/// One serving region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionConfig {
    /// AWS region name, e.g. `us-east-1`.
    pub name: String,
    /// Lower number = preferred failover target. Unique across regions.
    pub priority: u32,
    /// Route 53 health checks that watch this region's serving endpoint.
    pub health_check_ids: Vec<String>,
    /// URLs this daemon probes itself (data plane), independent of Route 53.
    pub probe_urls: Vec<String>,
    /// Optional string that a probe's body (first 5120 bytes) must contain.
    pub probe_match: Option<String>,
    /// ARN of this region's failover state machine (state machines are regional).
    pub state_machine_arn: String,
    /// SageMaker endpoint names for the three inference paths.
    pub sagemaker: SageMakerEndpoints,
}

/// SageMaker endpoint names of one region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SageMakerEndpoints {
    pub serverless: Option<String>,
    pub provisioned: Option<String>,
    pub batch: Option<String>,
}

impl SageMakerEndpoints {
    /// The real-time endpoints (serverless, provisioned) that are configured.
    pub fn realtime(&self) -> impl Iterator<Item = &String> {
        [&self.serverless, &self.provisioned].into_iter().flatten()
    }

    /// Every configured endpoint, the batch one included.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.realtime().chain(&self.batch)
    }
}

/// DynamoDB tables and the consistency the control table offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tables {
    /// The control table (global table): control record, votes, tokens, journal.
    pub control: String,
    /// `strong` (MRSC) or `eventual` (MREC).
    pub consistency: Consistency,
    /// The routing table of the seed (`configKey` hash key, `trafficClass` index).
    pub routing: String,
    /// Region of the control-table replica every daemon reads and writes.
    /// Unset (the default): each daemon uses the replica in its own region (a
    /// global table has one in every serving region). Set it to share a
    /// single replica, e.g. where the store does not replicate.
    pub control_region: Option<String>,
}

/// Consistency mode of the control table's global replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Multi-region strong consistency: one linearizable record.
    Strong,
    /// Multi-region eventual consistency: per-region replicas, last writer wins.
    Eventual,
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Consistency::Strong => "strong",
            Consistency::Eventual => "eventual",
        })
    }
}

/// Detection and protocol timings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timings {
    /// Time between health rounds.
    #[serde(with = "human_duration")]
    pub poll_interval: Duration,
    /// Consecutive bad rounds before a region is seen down.
    pub failure_threshold: u32,
    /// Consecutive good rounds before a down region is seen up again.
    pub recovery_threshold: u32,
    /// A vote older than this does not count towards a quorum.
    #[serde(with = "human_duration")]
    pub vote_freshness: Duration,
    /// How long an active region may go without confirming the control record.
    #[serde(with = "human_duration")]
    pub lease: Duration,
    /// Minimum time between two automatic failovers.
    #[serde(with = "human_duration")]
    pub min_failover_interval: Duration,
    /// How long a stopping daemon waits for in-flight work.
    #[serde(with = "human_duration")]
    pub shutdown_grace: Duration,
}

/// Failover policy switches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Fail back automatically to a higher-priority region once it recovers.
    pub auto_failback: bool,
    /// A region that just became active waits until the old active's lease
    /// has run out before acting as active (safety over speed). See
    /// docs/lease.md for the trade-off.
    pub wait_out_lease: bool,
}

/// Health signals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// Route 53 API calls per second for the whole fleet together (the
    /// account-wide GetHealthCheckStatus bucket is 4 burst, 1/s refill). The
    /// daemons take turns so their sum stays within it.
    pub route53_calls_per_second: f64,
    /// Probe connect timeout.
    #[serde(with = "human_duration")]
    pub probe_connect_timeout: Duration,
    /// Probe response timeout (after connecting).
    #[serde(with = "human_duration")]
    pub probe_response_timeout: Duration,
    /// Body sent to each SageMaker endpoint to warm it when this region is
    /// asked to prepare for a failover.
    pub warmup_payload: String,
}

/// The inference router's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Router {
    /// Requests in flight above this are shed with 503 and `Retry-After`.
    pub max_in_flight: u32,
    /// Time allowed to read a request body.
    #[serde(with = "human_duration")]
    pub body_read_timeout: Duration,
    /// Deadline of a request that sets none (`X-Deadline-Ms`).
    #[serde(with = "human_duration")]
    pub default_deadline: Duration,
    /// `ModelNotReadyException` retries before falling back (seed: 2).
    pub cold_start_retries: u32,
    /// Delay unit between cold-start retries: `delay × attempt` (seed: 3s).
    #[serde(with = "human_duration")]
    pub cold_start_delay: Duration,
    /// Extra load throttling retries may add, as a fraction of requests (0.2 = 20%).
    pub retry_budget: f64,
    /// How often the routing table is re-read.
    #[serde(with = "human_duration")]
    pub routing_refresh: Duration,
    /// Batch threshold (bytes) when the routing table has no entry for a class.
    pub default_batch_threshold: u64,
    /// S3 bucket (per region: `<bucket>-<region>`) for batch payloads and results.
    pub batch_bucket_prefix: String,
    /// Largest request body accepted at all (bytes); above the real-time
    /// limits only the batch path can take it.
    pub max_batch_payload: u64,
    /// Largest deadline a request may ask for (`X-Deadline-Ms`).
    #[serde(with = "human_duration")]
    pub max_deadline: Duration,
    /// Throttling retries of one request (each also needs the retry budget).
    pub throttle_retries: u32,
    /// Throttling backoff: full jitter on `base × 2^n`, at most `max`.
    #[serde(with = "human_duration")]
    pub throttle_base_delay: Duration,
    #[serde(with = "human_duration")]
    pub throttle_max_delay: Duration,
    /// Consecutive failures that eject a (region, endpoint) target.
    pub breaker_failures: u32,
    /// First ejection's length; the n-th lasts n times as long, up to the max.
    #[serde(with = "human_duration")]
    pub breaker_ejection: Duration,
    #[serde(with = "human_duration")]
    pub breaker_max_ejection: Duration,
}

/// A model the router serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    pub name: String,
    /// `serverless_preferred`, `standard`, ... (the routing table's classes).
    pub traffic_class: String,
    /// SageMaker `TargetModel` to send (multi-model endpoints); unset for
    /// single-model endpoints, which reject the header.
    pub target_model: Option<String>,
}

/// Listen addresses and the admin credential.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listen {
    /// Inference router.
    pub router: SocketAddr,
    /// Admin: `/healthz`, `/readyz`, status, metrics.
    pub admin: SocketAddr,
    /// File holding the bearer token for admin mutations (contents never logged).
    pub admin_token_file: PathBuf,
}

/// Endpoint URL overrides per service (lab only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EndpointOverrides {
    pub dynamodb: Option<String>,
    pub route53: Option<String>,
    pub sfn: Option<String>,
    pub sagemaker_runtime: Option<String>,
    pub sagemaker: Option<String>,
    pub s3: Option<String>,
}

impl Config {
    /// The configuration of `name`, if it is one of ours.
    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Region of the control-table replica that `daemon_region`'s daemon
    /// (and its state machine) uses.
    pub fn control_region_for<'a>(&'a self, daemon_region: &'a str) -> &'a str {
        self.tables
            .control_region
            .as_deref()
            .unwrap_or(daemon_region)
    }

    /// This daemon's own region.
    pub fn local(&self) -> &RegionConfig {
        self.region(&self.region)
            .expect("validated: the local region is in the list")
    }

    /// Render for `check-config`: TOML with secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut redacted = self.clone();
        for url in [
            &mut redacted.endpoints.dynamodb,
            &mut redacted.endpoints.route53,
            &mut redacted.endpoints.sfn,
            &mut redacted.endpoints.sagemaker_runtime,
            &mut redacted.endpoints.sagemaker,
            &mut redacted.endpoints.s3,
        ]
        .into_iter()
        .flatten()
        {
            *url = redact_userinfo(url);
        }
        for r in &mut redacted.regions {
            for u in &mut r.probe_urls {
                *u = redact_userinfo(u);
            }
        }
        let mut out = String::new();
        out.push_str("# resolved failoverd configuration (secrets redacted)\n");
        for s in &self.sources {
            out.push_str(&format!("# layer: {}\n", s.display()));
        }
        out.push_str(&format!(
            "# admin token: read from {} at start (contents not shown)\n",
            self.listen.admin_token_file.display()
        ));
        out.push_str(&toml::to_string_pretty(&redacted).unwrap_or_else(|e| format!("# {e}\n")));
        out
    }
}

/// `https://user:pass@host/` -> `https://***@host/`.
fn redact_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the offending value came from: a file, or `environment (VAR)`.
    pub origin: String,
    /// Dotted key, e.g. `timings.poll_interval` or `regions[1].name`.
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed at all.
    #[error("cannot load configuration from {path}")]
    Load {
        path: PathBuf,
        #[source]
        source: config::ConfigError,
    },
    /// The layers parsed, but the values are not acceptable.
    #[error("invalid configuration ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every problem, one per line, for the operator.
    pub fn report(&self) -> String {
        match self {
            ConfigError::Load { path, source } => {
                format!("error: {}: {source}", path.display())
            }
            ConfigError::Invalid(problems) => problems
                .iter()
                .map(|p| format!("error: {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The file layers for a region file: `base.toml` beside it (if present and
/// not the file itself), then the file.
pub fn layers_for(region_file: &Path) -> Vec<PathBuf> {
    let mut layers = Vec::new();
    let base = region_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("base.toml");
    if base.is_file() && base.file_name() != region_file.file_name() {
        layers.push(base);
    }
    layers.push(region_file.to_path_buf());
    layers
}

/// Load `region_file` with its base layer and the environment, and validate.
pub fn load(region_file: &Path, env: &EnvSource) -> Result<Config, ConfigError> {
    load_layers(&layers_for(region_file), env)
}

/// Load explicit file layers (in order) plus the environment, and validate.
pub fn load_layers(files: &[PathBuf], env: &EnvSource) -> Result<Config, ConfigError> {
    let mut builder = config::Config::builder();
    for f in files {
        // Parse each file alone first so that a syntax error names its file.
        let single = config::Config::builder()
            .add_source(config::File::from(f.as_path()).format(config::FileFormat::Toml))
            .build();
        if let Err(source) = single {
            return Err(ConfigError::Load {
                path: f.clone(),
                source,
            });
        }
        builder =
            builder.add_source(config::File::from(f.as_path()).format(config::FileFormat::Toml));
    }
    let env_map: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("regions")
            .try_parsing(false)
            .source(Some(env_map)),
    );
    let merged = builder.build().map_err(|source| ConfigError::Load {
        path: files.last().cloned().unwrap_or_default(),
        source,
    })?;

    let origins = Origins {
        merged: &merged,
        files: files
            .iter()
            .map(|f| (f.clone(), std::fs::canonicalize(f).ok()))
            .collect(),
    };
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    let raw: Result<RawConfig, _> = serde_ignored::deserialize(merged.clone(), |path| {
        unknown.push(config_path(&path));
    });
    for key in unknown {
        problems.push(origins.problem(
            &key,
            "unknown key (misspelt, or not a failoverd setting)".into(),
        ));
    }
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(Problem {
                origin: files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
                key: "(structure)".into(),
                message: e.to_string(),
            });
            return Err(ConfigError::Invalid(problems));
        }
    };
    let mut v = Validator { origins, problems };
    let config = v.validate(raw, files);
    if v.problems.is_empty() {
        Ok(config.expect("no problems means a complete config"))
    } else {
        Err(ConfigError::Invalid(v.problems))
    }
}

/// Turn a `serde_ignored` path into the `config` crate's path syntax.
fn config_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", config_path(parent)),
        P::Map { parent, key } => {
            let p = config_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            config_path(parent)
        }
    }
}

/// Finds which layer a key's value came from.
struct Origins<'a> {
    merged: &'a config::Config,
    /// The layers as the caller named them, with their canonical paths.
    files: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Origins<'_> {
    fn of(&self, key: &str) -> String {
        match lookup(&self.merged.cache, key).and_then(first_origin) {
            Some("the environment") => format!("environment ({})", env_var_name(key)),
            Some(o) => {
                // The crate reports paths relative to the working directory;
                // show the path the way the operator wrote it.
                let canon = std::fs::canonicalize(o).ok();
                self.files
                    .iter()
                    .find(|(_, c)| c.is_some() && *c == canon)
                    .map(|(f, _)| f.display().to_string())
                    .unwrap_or_else(|| o.to_string())
            }
            None => "(default)".into(),
        }
    }

    fn problem(&self, key: &str, message: String) -> Problem {
        Problem {
            origin: self.of(key),
            key: key.to_string(),
            message,
        }
    }
}

/// Walk the merged tree by a key like `regions[1].name`. The tree keeps each
/// value's origin; `config::Config::get` would deserialize and lose it.
fn lookup<'v>(root: &'v config::Value, key: &str) -> Option<&'v config::Value> {
    let mut cur = root;
    for segment in key.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            match &cur.kind {
                config::ValueKind::Table(t) => cur = t.get(name)?,
                _ => return None,
            }
        }
        for idx in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let i: usize = idx.parse().ok()?;
            match &cur.kind {
                config::ValueKind::Array(a) => cur = a.get(i)?,
                _ => return None,
            }
        }
    }
    Some(cur)
}

/// A value's origin; for a table or array (which carry none), the origin of
/// its first leaf.
fn first_origin(v: &config::Value) -> Option<&str> {
    if let Some(o) = v.origin() {
        return Some(o);
    }
    match &v.kind {
        config::ValueKind::Table(t) => t.values().find_map(first_origin),
        config::ValueKind::Array(a) => a.iter().find_map(first_origin),
        _ => None,
    }
}

/// `timings.poll_interval` -> `FAILOVERD__TIMINGS__POLL_INTERVAL`.
fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

// ----- raw (lenient) shape of the files -----

#[derive(Debug, Deserialize, Default)]
struct RawConfig {
    region: Option<String>,
    #[serde(default)]
    regions: Vec<RawRegion>,
    #[serde(default)]
    tables: RawTables,
    #[serde(default)]
    timings: RawTimings,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    router: RawRouter,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    endpoints: RawEndpoints,
}

#[derive(Debug, Deserialize, Default)]
struct RawRegion {
    name: Option<String>,
    priority: Option<i64>,
    #[serde(default)]
    health_check_ids: Vec<String>,
    #[serde(default)]
    probe_urls: Vec<String>,
    probe_match: Option<String>,
    state_machine_arn: Option<String>,
    #[serde(default)]
    sagemaker: RawSageMaker,
}

#[derive(Debug, Deserialize, Default)]
struct RawSageMaker {
    serverless: Option<String>,
    provisioned: Option<String>,
    batch: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawTables {
    control: Option<String>,
    consistency: Option<String>,
    routing: Option<String>,
    control_region: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawTimings {
    poll_interval: Option<String>,
    failure_threshold: Option<i64>,
    recovery_threshold: Option<i64>,
    vote_freshness: Option<String>,
    lease: Option<String>,
    min_failover_interval: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawPolicy {
    auto_failback: Option<bool>,
    wait_out_lease: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
struct RawHealth {
    route53_calls_per_second: Option<f64>,
    probe_connect_timeout: Option<String>,
    probe_response_timeout: Option<String>,
    warmup_payload: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawRouter {
    max_in_flight: Option<i64>,
    body_read_timeout: Option<String>,
    default_deadline: Option<String>,
    cold_start_retries: Option<i64>,
    cold_start_delay: Option<String>,
    retry_budget: Option<f64>,
    routing_refresh: Option<String>,
    default_batch_threshold: Option<i64>,
    batch_bucket_prefix: Option<String>,
    max_batch_payload: Option<i64>,
    max_deadline: Option<String>,
    throttle_retries: Option<i64>,
    throttle_base_delay: Option<String>,
    throttle_max_delay: Option<String>,
    breaker_failures: Option<i64>,
    breaker_ejection: Option<String>,
    breaker_max_ejection: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawModel {
    name: Option<String>,
    traffic_class: Option<String>,
    target_model: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawListen {
    router: Option<String>,
    admin: Option<String>,
    admin_token_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawEndpoints {
    dynamodb: Option<String>,
    route53: Option<String>,
    sfn: Option<String>,
    sagemaker_runtime: Option<String>,
    sagemaker: Option<String>,
    s3: Option<String>,
}

// ----- validation -----

struct Validator<'a> {
    origins: Origins<'a>,
    problems: Vec<Problem>,
}

/// Defaults for settings a file may leave out. Regions, tables and the local
/// region have no defaults: a failover daemon must be told what it guards.
mod defaults {
    pub const POLL_INTERVAL: &str = "5s";
    pub const FAILURE_THRESHOLD: i64 = 3;
    pub const RECOVERY_THRESHOLD: i64 = 3;
    pub const VOTE_FRESHNESS: &str = "30s";
    pub const LEASE: &str = "30s";
    pub const MIN_FAILOVER_INTERVAL: &str = "10m";
    pub const SHUTDOWN_GRACE: &str = "20s";
    pub const ROUTER: &str = "0.0.0.0:8080";
    pub const ADMIN: &str = "127.0.0.1:9090";
    pub const ADMIN_TOKEN_FILE: &str = "/etc/failoverd/admin-token";
}

impl Validator<'_> {
    fn err(&mut self, key: &str, message: impl Into<String>) {
        let p = self.origins.problem(key, message.into());
        self.problems.push(p);
    }

    fn required(&mut self, key: &str, v: Option<String>) -> Option<String> {
        match v {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.err(key, "must not be empty");
                None
            }
            None => {
                self.problems.push(Problem {
                    origin: "(every layer)".into(),
                    key: key.into(),
                    message: "missing; this setting has no default".into(),
                });
                None
            }
        }
    }

    fn duration(
        &mut self,
        key: &str,
        v: Option<String>,
        default: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let text = v.unwrap_or_else(|| default.to_string());
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d < min || d > max => {
                self.err(
                    key,
                    format!(
                        "{text:?} is out of range: must be between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    key,
                    format!("{text:?} is not a duration ({e}); write it like \"10s\", \"500ms\" or \"5m\""),
                );
                None
            }
        }
    }

    /// `lo` (at `lo_key`) must not exceed `hi` (at `hi_key`).
    fn not_above(
        &mut self,
        lo_key: &str,
        lo: Option<Duration>,
        hi_key: &str,
        hi: Option<Duration>,
    ) {
        if let (Some(l), Some(h)) = (lo, hi) {
            if l > h {
                self.err(
                    lo_key,
                    format!(
                        "{} is longer than {hi_key} ({})",
                        humantime::format_duration(l),
                        humantime::format_duration(h)
                    ),
                );
            }
        }
    }

    fn in_range(
        &mut self,
        key: &str,
        v: Option<i64>,
        default: i64,
        lo: i64,
        hi: i64,
    ) -> Option<u32> {
        let n = v.unwrap_or(default);
        if n < lo || n > hi {
            self.err(
                key,
                format!("{n} is out of range: must be between {lo} and {hi}"),
            );
            None
        } else {
            Some(n as u32)
        }
    }

    fn addr(&mut self, key: &str, v: Option<String>, default: &str) -> Option<SocketAddr> {
        let text = v.unwrap_or_else(|| default.to_string());
        match text.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                self.err(
                    key,
                    format!(
                        "{text:?} is not a listen address ({e}); write it like \"127.0.0.1:9090\""
                    ),
                );
                None
            }
        }
    }

    fn url(&mut self, key: &str, v: &str) -> bool {
        let ok = v
            .parse::<hyper::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if ok.is_none() {
            self.err(key, format!("{v:?} is not an http(s) URL"));
            false
        } else {
            true
        }
    }

    fn optional_url(&mut self, key: &str, v: Option<String>) -> Option<String> {
        let v = v.filter(|s| !s.trim().is_empty())?;
        self.url(key, &v).then_some(v)
    }

    fn validate(&mut self, raw: RawConfig, files: &[PathBuf]) -> Option<Config> {
        let region = self.required("region", raw.region);

        // Regions.
        if raw.regions.len() < 2 {
            self.problems.push(Problem {
                origin: self.origins.of("regions"),
                key: "regions".into(),
                message: format!(
                    "{} region(s) listed; failover needs at least 2 ([[regions]] entries)",
                    raw.regions.len()
                ),
            });
        }
        let mut regions = Vec::new();
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        let mut seen_prio: HashMap<u32, String> = HashMap::new();
        for (i, r) in raw.regions.into_iter().enumerate() {
            let k = |f: &str| format!("regions[{i}].{f}");
            let name = self.required(&k("name"), r.name);
            if let Some(n) = &name {
                if !is_region_name(n) {
                    self.err(
                        &k("name"),
                        format!("{n:?} is not an AWS region name like \"us-east-1\""),
                    );
                }
                if let Some(first) = seen_names.insert(n.clone(), i) {
                    self.err(
                        &k("name"),
                        format!("duplicate region {n:?}: already listed as regions[{first}]"),
                    );
                }
            }
            let priority = match r.priority {
                None => {
                    self.err(
                        &k("priority"),
                        "missing; give every region a unique priority (1 = preferred)",
                    );
                    None
                }
                Some(p) => self.in_range(&k("priority"), Some(p), 0, 1, 1000),
            };
            if let (Some(p), Some(n)) = (priority, &name) {
                if let Some(other) = seen_prio.insert(p, n.clone()) {
                    self.err(
                        &k("priority"),
                        format!("priority {p} is also used by {other:?}; priorities must be unique so the failover target is unambiguous"),
                    );
                }
            }
            for (j, id) in r.health_check_ids.iter().enumerate() {
                if id.trim().is_empty() {
                    self.err(
                        &format!("regions[{i}].health_check_ids[{j}]"),
                        "must not be empty",
                    );
                }
            }
            for (j, u) in r.probe_urls.iter().enumerate() {
                self.url(&format!("regions[{i}].probe_urls[{j}]"), u);
            }
            if r.health_check_ids.is_empty() && r.probe_urls.is_empty() {
                self.problems.push(Problem {
                    origin: self.origins.of(&format!("regions[{i}]")),
                    key: format!("regions[{i}]"),
                    message:
                        "no health_check_ids and no probe_urls: nothing would watch this region"
                            .into(),
                });
            }
            if let Some(m) = &r.probe_match {
                if m.is_empty() || m.len() > 5120 {
                    self.err(
                        &k("probe_match"),
                        "must be 1 to 5120 bytes (probes read the first 5120 bytes of the body)",
                    );
                }
            }
            let arn = self.required(&k("state_machine_arn"), r.state_machine_arn);
            if let (Some(a), Some(n)) = (&arn, &name) {
                let parts: Vec<&str> = a.split(':').collect();
                if parts.len() < 7
                    || parts[0] != "arn"
                    || parts[2] != "states"
                    || parts[5] != "stateMachine"
                {
                    self.err(
                        &k("state_machine_arn"),
                        format!("{a:?} is not a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME)"),
                    );
                } else if parts[3] != n {
                    self.err(
                        &k("state_machine_arn"),
                        format!("{a:?} is in region {:?}, but state machines are regional and this entry is {n:?}", parts[3]),
                    );
                }
            }
            let sm = SageMakerEndpoints {
                serverless: r.sagemaker.serverless.filter(|s| !s.is_empty()),
                provisioned: r.sagemaker.provisioned.filter(|s| !s.is_empty()),
                batch: r.sagemaker.batch.filter(|s| !s.is_empty()),
            };
            if sm.serverless.is_none() && sm.provisioned.is_none() && sm.batch.is_none() {
                self.problems.push(Problem {
                    origin: self.origins.of(&format!("regions[{i}]")),
                    key: k("sagemaker"),
                    message: "no SageMaker endpoint (serverless, provisioned or batch): this region could not serve".into(),
                });
            }
            if let (Some(name), Some(priority), Some(state_machine_arn)) = (name, priority, arn) {
                regions.push(RegionConfig {
                    name,
                    priority,
                    health_check_ids: r.health_check_ids,
                    probe_urls: r.probe_urls,
                    probe_match: r.probe_match,
                    state_machine_arn,
                    sagemaker: sm,
                });
            }
        }
        if let Some(local) = &region {
            if !seen_names.contains_key(local) {
                let listed: Vec<&str> = seen_names
                    .keys()
                    .map(String::as_str)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                self.err(
                    "region",
                    format!("local region {local:?} is missing from the region list {listed:?}"),
                );
            }
        }

        // Tables.
        let control = self.required("tables.control", raw.tables.control);
        let routing = self.required("tables.routing", raw.tables.routing);
        let consistency = match raw.tables.consistency.as_deref().unwrap_or("strong") {
            "strong" => Some(Consistency::Strong),
            "eventual" => Some(Consistency::Eventual),
            other => {
                self.err(
                    "tables.consistency",
                    format!("{other:?} is not a consistency mode: use \"strong\" or \"eventual\""),
                );
                None
            }
        };

        let control_region = raw.tables.control_region.filter(|s| !s.is_empty());
        if let Some(cr) = &control_region {
            if !seen_names.contains_key(cr) {
                self.err(
                    "tables.control_region",
                    format!("{cr:?} is not one of the listed regions"),
                );
            }
        }

        // Timings.
        let t = raw.timings;
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let poll = self.duration(
            "timings.poll_interval",
            t.poll_interval,
            defaults::POLL_INTERVAL,
            ms(100),
            s(3600),
        );
        let failure = self.in_range(
            "timings.failure_threshold",
            t.failure_threshold,
            defaults::FAILURE_THRESHOLD,
            1,
            100,
        );
        let recovery = self.in_range(
            "timings.recovery_threshold",
            t.recovery_threshold,
            defaults::RECOVERY_THRESHOLD,
            1,
            100,
        );
        let fresh = self.duration(
            "timings.vote_freshness",
            t.vote_freshness,
            defaults::VOTE_FRESHNESS,
            ms(200),
            s(86400),
        );
        let lease = self.duration("timings.lease", t.lease, defaults::LEASE, ms(100), s(86400));
        let min_fo = self.duration(
            "timings.min_failover_interval",
            t.min_failover_interval,
            defaults::MIN_FAILOVER_INTERVAL,
            ms(0),
            s(7 * 86400),
        );
        let grace = self.duration(
            "timings.shutdown_grace",
            t.shutdown_grace,
            defaults::SHUTDOWN_GRACE,
            ms(0),
            s(600),
        );
        if let (Some(p), Some(f)) = (poll, fresh) {
            if f < p * 2 {
                self.err(
                    "timings.vote_freshness",
                    format!(
                        "{} is shorter than two poll intervals ({}): every vote would be stale before the next one is written",
                        humantime::format_duration(f),
                        humantime::format_duration(p * 2)
                    ),
                );
            }
        }
        if let (Some(p), Some(l)) = (poll, lease) {
            if l < p * 2 {
                self.err(
                    "timings.lease",
                    format!(
                        "{} is shorter than two poll intervals ({}): the active region could not renew it in time",
                        humantime::format_duration(l),
                        humantime::format_duration(p * 2)
                    ),
                );
            }
        }

        // Health.
        let h = raw.health;
        let r53 = h.route53_calls_per_second.unwrap_or(0.5);
        if !(0.01..=100.0).contains(&r53) {
            self.err("health.route53_calls_per_second", format!("{r53} is out of range: must be between 0.01 and 100 (AWS allows 1/s per account)"));
        }
        let connect = self.duration(
            "health.probe_connect_timeout",
            h.probe_connect_timeout,
            "4s",
            ms(10),
            s(60),
        );
        let response = self.duration(
            "health.probe_response_timeout",
            h.probe_response_timeout,
            "2s",
            ms(10),
            s(60),
        );
        let warmup_payload = h
            .warmup_payload
            .unwrap_or_else(|| "{\"warmup\": true}".into());

        // Router.
        let rr = raw.router;
        let max_in_flight =
            self.in_range("router.max_in_flight", rr.max_in_flight, 512, 1, 1_000_000);
        let body_read_timeout = self.duration(
            "router.body_read_timeout",
            rr.body_read_timeout,
            "10s",
            ms(10),
            s(600),
        );
        let default_deadline = self.duration(
            "router.default_deadline",
            rr.default_deadline,
            "70s",
            ms(10),
            s(3600),
        );
        let cold_start_retries =
            self.in_range("router.cold_start_retries", rr.cold_start_retries, 2, 0, 20);
        let cold_start_delay = self.duration(
            "router.cold_start_delay",
            rr.cold_start_delay,
            "3s",
            ms(0),
            s(60),
        );
        let retry_budget = rr.retry_budget.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&retry_budget) {
            self.err(
                "router.retry_budget",
                format!("{retry_budget} is out of range: must be between 0 and 1"),
            );
        }
        let routing_refresh = self.duration(
            "router.routing_refresh",
            rr.routing_refresh,
            "30s",
            ms(100),
            s(86400),
        );
        let default_batch_threshold = rr.default_batch_threshold.unwrap_or(4 * 1024 * 1024);
        if !(1..=1024 * 1024 * 1024).contains(&default_batch_threshold) {
            self.err(
                "router.default_batch_threshold",
                format!("{default_batch_threshold} is out of range: 1 byte to 1 GiB"),
            );
        }
        let batch_bucket_prefix = rr
            .batch_bucket_prefix
            .unwrap_or_else(|| "failoverd-batch".into());
        let max_batch_payload = rr.max_batch_payload.unwrap_or(32 * 1024 * 1024);
        if !(6 * 1024 * 1024..=1024 * 1024 * 1024).contains(&max_batch_payload) {
            self.err(
                "router.max_batch_payload",
                format!(
                    "{max_batch_payload} is out of range: 6 MiB (the real-time limit) to 1 GiB"
                ),
            );
        }
        let max_deadline = self.duration(
            "router.max_deadline",
            rr.max_deadline,
            "15m",
            s(1),
            s(86400),
        );
        self.not_above(
            "router.default_deadline",
            default_deadline,
            "router.max_deadline",
            max_deadline,
        );
        let throttle_retries =
            self.in_range("router.throttle_retries", rr.throttle_retries, 3, 0, 20);
        let throttle_base_delay = self.duration(
            "router.throttle_base_delay",
            rr.throttle_base_delay,
            "100ms",
            ms(1),
            s(60),
        );
        let throttle_max_delay = self.duration(
            "router.throttle_max_delay",
            rr.throttle_max_delay,
            "2s",
            ms(1),
            s(600),
        );
        self.not_above(
            "router.throttle_base_delay",
            throttle_base_delay,
            "router.throttle_max_delay",
            throttle_max_delay,
        );
        let breaker_failures =
            self.in_range("router.breaker_failures", rr.breaker_failures, 5, 1, 1000);
        let breaker_ejection = self.duration(
            "router.breaker_ejection",
            rr.breaker_ejection,
            "5s",
            ms(10),
            s(3600),
        );
        let breaker_max_ejection = self.duration(
            "router.breaker_max_ejection",
            rr.breaker_max_ejection,
            "5m",
            ms(10),
            s(86400),
        );
        self.not_above(
            "router.breaker_ejection",
            breaker_ejection,
            "router.breaker_max_ejection",
            breaker_max_ejection,
        );
        let mut models = Vec::new();
        let mut seen_models = BTreeSet::new();
        for (i, m) in raw.models.into_iter().enumerate() {
            let name = self.required(&format!("models[{i}].name"), m.name);
            let class = m.traffic_class.unwrap_or_else(|| "standard".into());
            if let Some(n) = name {
                if !seen_models.insert(n.clone()) {
                    self.err(
                        &format!("models[{i}].name"),
                        format!("duplicate model {n:?}"),
                    );
                }
                models.push(ModelConfig {
                    name: n,
                    traffic_class: class,
                    target_model: m.target_model.filter(|t| !t.is_empty()),
                });
            }
        }

        // Listen.
        let router = self.addr("listen.router", raw.listen.router, defaults::ROUTER);
        let admin = self.addr("listen.admin", raw.listen.admin, defaults::ADMIN);
        if let (Some(r), Some(a)) = (router, admin) {
            if r == a && r.port() != 0 {
                self.err("listen.admin", format!("{a} is also the router's address"));
            }
        }
        let token_file = raw
            .listen
            .admin_token_file
            .unwrap_or_else(|| defaults::ADMIN_TOKEN_FILE.into());
        if token_file.trim().is_empty() {
            self.err("listen.admin_token_file", "must not be empty");
        }

        // Endpoint overrides.
        let e = raw.endpoints;
        let endpoints = EndpointOverrides {
            dynamodb: self.optional_url("endpoints.dynamodb", e.dynamodb),
            route53: self.optional_url("endpoints.route53", e.route53),
            sfn: self.optional_url("endpoints.sfn", e.sfn),
            sagemaker_runtime: self
                .optional_url("endpoints.sagemaker_runtime", e.sagemaker_runtime),
            sagemaker: self.optional_url("endpoints.sagemaker", e.sagemaker),
            s3: self.optional_url("endpoints.s3", e.s3),
        };

        if !self.problems.is_empty() {
            return None;
        }
        let region = region?;
        Some(Config {
            region: region.clone(),
            regions,
            tables: Tables {
                control: control?,
                consistency: consistency?,
                routing: routing?,
                control_region,
            },
            timings: Timings {
                poll_interval: poll?,
                failure_threshold: failure?,
                recovery_threshold: recovery?,
                vote_freshness: fresh?,
                lease: lease?,
                min_failover_interval: min_fo?,
                shutdown_grace: grace?,
            },
            policy: Policy {
                auto_failback: raw.policy.auto_failback.unwrap_or(false),
                wait_out_lease: raw.policy.wait_out_lease.unwrap_or(true),
            },
            router: Router {
                max_in_flight: max_in_flight?,
                body_read_timeout: body_read_timeout?,
                default_deadline: default_deadline?,
                cold_start_retries: cold_start_retries?,
                cold_start_delay: cold_start_delay?,
                retry_budget,
                routing_refresh: routing_refresh?,
                default_batch_threshold: default_batch_threshold as u64,
                batch_bucket_prefix,
                max_batch_payload: max_batch_payload as u64,
                max_deadline: max_deadline?,
                throttle_retries: throttle_retries?,
                throttle_base_delay: throttle_base_delay?,
                throttle_max_delay: throttle_max_delay?,
                breaker_failures: breaker_failures?,
                breaker_ejection: breaker_ejection?,
                breaker_max_ejection: breaker_max_ejection?,
            },
            models,
            health: Health {
                route53_calls_per_second: r53,
                probe_connect_timeout: connect?,
                probe_response_timeout: response?,
                warmup_payload,
            },
            listen: Listen {
                router: router?,
                admin: admin?,
                admin_token_file: PathBuf::from(token_file),
            },
            endpoints,
            sources: files.to_vec(),
        })
    }
}

/// `us-east-1`, `eu-west-2`, `ap-southeast-1`, `us-gov-west-1`.
fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// Serialize durations the way operators write them (`10s`, `1m 30s`).
mod human_duration {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}
