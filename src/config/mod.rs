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

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

mod constraints;
mod cost;
pub mod fleet;
mod load;
mod raw;
mod router;
pub mod serving;
mod tables;
pub mod tls;
mod validate;
pub mod workflow;

pub use constraints::MIN_AUTOMATIC_REGIONS;
pub use cost::{Advise, Cost, EndpointSchedule, Environment, Idle};
pub use load::{ConfigError, Problem, layers_for, load, load_layers};
pub use router::{CallerLimit, IamAuth, ModelConfig, Router};
pub use serving::{RegionServing, Serving, Via};
pub use tables::{Consistency, MRSC_REGION_SETS, Tables};
use validate::human_duration;

use crate::core::plan::{Approval, OnApprovalTimeout};
use crate::core::tier::Tier;

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
    /// This daemon's name among its region's daemons (`instance`): stable
    /// across restarts when configured; `None`: one is generated at start
    /// (`Config::instance_id`, docs/instances.md).
    pub instance: Option<String>,
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
    /// Cost controls and DR tiers (`[cost]`, config/cost.rs).
    pub cost: Cost,
    /// The files that were merged, in order (for `check-config` and logs).
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
    /// What loaded but an operator should see: constraints between settings
    /// that hold until one fault (config/constraints.rs). `check-config`
    /// prints them.
    #[serde(skip)]
    pub warnings: Vec<Problem>,
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
    /// ARN of the failover state machine this region's failovers run in:
    /// its own region's, or a replica region's where it holds no replica
    /// (config/workflow.rs, "Where the workflow runs").
    pub state_machine_arn: String,
    /// SageMaker endpoint names for the three inference paths.
    pub sagemaker: SageMakerEndpoints,
    /// The control-table replica this region's daemon uses, when the region
    /// has none of its own (MRSC tables live in one region set). Default:
    /// the region itself.
    pub control_replica: Option<String>,
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
    /// The prepare step's budget: how long the target may retry endpoints
    /// that are not ready (cold, unavailable, throttled, unreachable).
    #[serde(with = "human_duration")]
    pub prepare_budget: Duration,
    /// A claimed failover whose workflow has not marked the record within
    /// this long is settled as aborted (its execution did not start).
    #[serde(with = "human_duration")]
    pub start_timeout: Duration,
    /// A failover whose record shows no progress this long is settled.
    #[serde(with = "human_duration")]
    pub stuck_failover: Duration,
    /// First retry delay after an aborted automatic failover (doubles with
    /// each abort in a row, never beyond `min_failover_interval`).
    #[serde(with = "human_duration")]
    pub abort_retry: Duration,
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
    /// Whether an automatic failover needs an operator's approval
    /// (`"none"` or `"manual"`), for models whose tier has no entry in
    /// `approval_by_tier`.
    pub approval: Approval,
    /// Per DR tier overrides of `approval` (e.g. `{ tier1 = "none" }`).
    pub approval_by_tier: BTreeMap<Tier, Approval>,
    /// How long a proposed failover waits for `failoverd approve`/`reject`.
    #[serde(with = "human_duration")]
    pub approval_timeout: Duration,
    /// What an undecided proposal does at its timeout.
    pub on_approval_timeout: OnApprovalTimeout,
}

impl Policy {
    /// The approval rule of a tier.
    pub fn approval_for(&self, tier: Tier) -> Approval {
        self.approval_by_tier
            .get(&tier)
            .copied()
            .unwrap_or(self.approval)
    }
}

impl Config {
    /// The approval rule that governs the fleet's automatic failovers: the
    /// strictest of the configured models' tiers' (like the tier gate; the
    /// default tier's when there are no models). One record moves all the
    /// models at once, so one model that wants a human decides for all.
    pub fn fleet_approval(&self) -> Approval {
        self.models
            .iter()
            .map(|m| self.policy.approval_for(self.cost.tier_of(&m.name)))
            .max()
            .unwrap_or_else(|| self.policy.approval_for(self.cost.default_tier))
    }
}

/// Health signals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// Route 53 API calls per second for the whole fleet together (the
    /// account-wide GetHealthCheckStatus bucket is 4 burst, 1/s refill). The
    /// daemons take turns so their sum stays within it.
    pub route53_calls_per_second: f64,
    /// Where Route 53's view of the checks is read: the API (two calls a
    /// reading of one check) or the `HealthCheckStatus` metric in
    /// CloudWatch us-east-1 (one `GetMetricData` call for every check).
    /// Either way one budget, `route53_calls_per_second`, for the fleet.
    pub route53_source: crate::core::health::Route53Source,
    /// The metric's period (Route 53 publishes one data point a minute);
    /// a newest data point older than `METRIC_STALE_PERIODS` periods says
    /// nothing. Used with the `cloudwatch` source only.
    #[serde(with = "human_duration")]
    pub route53_metric_period: Duration,
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

/// Listen addresses and the admin credential.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listen {
    /// Inference router.
    pub router: SocketAddr,
    /// Admin: `/healthz`, `/readyz`, status, metrics.
    pub admin: SocketAddr,
    /// File holding the bearer token for admin mutations (contents never logged).
    pub admin_token_file: PathBuf,
    /// TLS on the router listener; `None` is plain HTTP (config/tls.rs).
    pub router_tls: Option<tls::TlsFiles>,
    /// TLS on the admin listener; `None` is plain HTTP.
    pub admin_tls: Option<tls::TlsFiles>,
}

impl Listen {
    /// The listeners that speak plain HTTP on an address other than
    /// loopback, by key: `check-config` and the daemon warn about each.
    pub fn plaintext_exposed(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut out = Vec::new();
        if self.router_tls.is_none() && !self.router.ip().is_loopback() {
            out.push(("listen.router", self.router));
        }
        if self.admin_tls.is_none() && !self.admin.ip().is_loopback() {
            out.push(("listen.admin", self.admin));
        }
        out
    }
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
    pub cloudwatch: Option<String>,
    /// Application Auto Scaling (readiness: the standby's scalable targets).
    pub application_autoscaling: Option<String>,
    /// Service Quotas (readiness: the applied endpoint-usage quotas).
    pub service_quotas: Option<String>,
    /// IAM (readiness: the policy simulator's dry run of prepare's calls).
    pub iam: Option<String>,
}

impl Config {
    /// On reload (SIGHUP): keep the restart-only settings of `current` in
    /// `self` (the new configuration) and name the ones that differed. The
    /// listeners are bound, and the tables and endpoint overrides are what
    /// the clients, the planner's consistency rule and the job store were
    /// built on: changing them under a running daemon is a restart. So are
    /// the router's listener limits (`router.max_connections`,
    /// `router.header_read_timeout`, `router.send_timeout`,
    /// `router.threads`), read as the router starts serving.
    pub fn hold_restart_only(&mut self, current: &Config) -> Vec<&'static str> {
        let mut pending = Vec::new();
        if self.listen != current.listen {
            pending.push("listen");
            self.listen = current.listen.clone();
        }
        if self.tables != current.tables {
            pending.push("tables");
            self.tables = current.tables.clone();
        }
        if self.instance != current.instance {
            pending.push("instance");
            self.instance = current.instance.clone();
        }
        if self.endpoints != current.endpoints {
            pending.push("endpoints");
            self.endpoints = current.endpoints.clone();
        }
        // The router's listener limits are read as it starts serving.
        if self.router.max_connections != current.router.max_connections {
            pending.push("router.max_connections");
            self.router.max_connections = current.router.max_connections;
        }
        if self.router.header_read_timeout != current.router.header_read_timeout {
            pending.push("router.header_read_timeout");
            self.router.header_read_timeout = current.router.header_read_timeout;
        }
        if self.router.send_timeout != current.router.send_timeout {
            pending.push("router.send_timeout");
            self.router.send_timeout = current.router.send_timeout;
        }
        if self.router.threads != current.router.threads {
            pending.push("router.threads");
            self.router.threads = current.router.threads;
        }
        pending
    }

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
            .or_else(|| {
                self.region(daemon_region)
                    .and_then(|r| r.control_replica.as_deref())
            })
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
            &mut redacted.endpoints.cloudwatch,
            &mut redacted.endpoints.application_autoscaling,
            &mut redacted.endpoints.service_quotas,
            &mut redacted.endpoints.iam,
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
        let print = fleet::Fingerprint::of(self);
        out.push_str(&format!(
            "# fleet fingerprint: {} (every daemon of the fleet must show the same; by group:",
            print.digest()
        ));
        for g in fleet::GROUPS {
            out.push_str(&format!(" {g} {}", print.group(g).unwrap_or("-")));
        }
        out.push_str(")\n");
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
