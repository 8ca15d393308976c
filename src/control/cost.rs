//! The cost task: scheduled capacity (`core::schedule`) and idle detection
//! (`core::idle`) applied to this region's endpoints every `cost.interval`
//! (a minute), next to failover.
//!
//! Each round: read (the control record, fresh from the table; each
//! endpoint's variants with `DescribeEndpoint` and its tags with `ListTags`),
//! decide ([`decide`]: pure, one [`EndpointPlan`] per endpoint with its
//! reason, acted on or not), act (`UpdateEndpointWeightsAndCapacities`, or
//! `DeleteEndpoint` for an idle `tier3` endpoint outside production), and
//! journal every action and every failure. `failoverd cost --dry-run`
//! (`cli::cost`) runs the same read and [`decide`] and stops there.
//!
//! The rules next to failover (docs/cost-and-tiers.md), in the order they
//! are checked:
//!
//! 1. hold back entirely when this daemon's last reconcile round had no
//!    quorum or is older than three poll intervals, or this region is
//!    draining: a daemon that cannot see the fleet does nothing automatic
//!    (the same rule as failover's);
//! 2. only provisioned endpoints are touched (serverless scales itself; an
//!    asynchronous endpoint scales with its own policy);
//! 3. nothing without a readable control record; nothing while a failover
//!    is in flight (the prepare step and the switch own every region until
//!    it settles); nothing while the fleet is paused (operators have it);
//! 4. nothing on an endpoint that is not `InService` (a change is under
//!    way; SageMaker refuses another until it ends);
//! 5. idle detection (when `cost.idle.enabled`): `core::idle::decide`,
//!    which leaves the active region, the failover target, `tier1`,
//!    protected endpoints (`ProtectedFromAutoStop=true`, or tags unread) and
//!    anything the router has not counted for a whole window;
//! 6. the schedule, per variant, for endpoints that have one (and `tier1`
//!    standbys, which hold the active's measured need):
//!    `core::schedule::desired_minimum`, which never lowers the active
//!    region below what the router measured it needs, nor at all while that
//!    need is unknown. On top of it, the daemon never *lowers* a protected
//!    endpoint (or one whose tags it could not read); raising is always
//!    allowed, as the safe direction.
//!
//! The daemon owns the instance count of a scheduled endpoint (it sets
//! `DesiredInstanceCount`, as the seed's crons set the minimum). Teams that
//! run Application Auto Scaling on a variant should deploy
//! `deploy/cloudformation/scheduled-capacity.yaml` for it instead and leave
//! it out of `[[cost.schedules]]`: two controllers on one count fight.
//!
//! Router counts come through [`InvocationCounts`]: the daemon passes
//! `state::FleetCounts`, the fleet's sum (its own router's live
//! counts and every peer's from its vote). An endpoint is counted only once
//! every configured region's router has published counts; until then
//! nothing is idle, and no standby is lowered (it may be serving). The
//! fleet's need (its traffic's busiest minute over every region's
//! provisioned endpoint) is measured only when
//! `cost.instance_invocations_per_minute` is set; without it the active
//! region is never lowered. A region that serves or is about to (a standby
//! the routers send traffic to, the target of an open proposal, a new
//! active in its first hour: `core::tier::Guard`) is never lowered.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::Config;
use crate::core::control::{ControlRecord, Mode, Phase};
use crate::core::idle::{self, EndpointKind, IdleAction, IdleDecision, IdleEndpoint};
use crate::core::schedule::{self, CapacityDecision, CapacityInputs, Schedule};
use crate::core::tier::{self, Guard, RegionRole, StandbyHolds, Tier, VariantCapacity};
use crate::http::{ShutdownRx, shutdown_signalled};
use crate::ports::Ports;
use crate::ports::endpoints::{Deleted, EndpointState, EndpointStatus};
use crate::ports::traffic::InvocationCounts;
use crate::state::Shared;

use super::journal::journal;

/// What `DescribeEndpoint` said of one endpoint, if it was asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "described", rename_all = "snake_case")]
pub enum Described {
    /// Not asked: only provisioned endpoints are read.
    NotRead,
    /// No such endpoint.
    Absent,
    /// The call failed.
    Unreadable {
        error: String,
    },
    Found {
        state: EndpointState,
    },
}

/// One endpoint as read this round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seen {
    pub endpoint: String,
    pub kind: EndpointKind,
    pub described: Described,
    /// `ListTags`, read when the endpoint was found: the tags, or the error.
    pub tags: Option<Result<Vec<(String, String)>, String>>,
    /// CloudWatch `Invocations` over the idle window (summed over the
    /// provisioned variants), read when idle detection and
    /// `cost.idle.cloudwatch` are on and the endpoint was found: the count,
    /// or the error.
    #[serde(default)]
    pub cloudwatch: Option<Result<u64, String>>,
}

/// Everything one round's decisions are made from, for one region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub region: String,
    pub now_ms: u64,
    /// The control record (`Ok(None)`: none yet), or why it could not be read.
    pub record: Result<Option<ControlRecord>, String>,
    /// Why this daemon holds back this round whatever it reads (no quorum,
    /// a stale round, draining); `None` to go on.
    pub hold: Option<String>,
    pub endpoints: Vec<Seen>,
}

/// One variant's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScaleChange {
    pub variant: String,
    pub from: u32,
    pub to: u32,
}

/// What to do with one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CostAction {
    None,
    /// `UpdateEndpointWeightsAndCapacities` with these counts.
    Scale {
        changes: Vec<ScaleChange>,
    },
    /// `DeleteEndpoint`; `config` (its endpoint config) stays, to recreate it.
    Stop {
        config: String,
    },
}

/// The schedule's answer for one variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariantSchedule {
    pub variant: String,
    pub decision: CapacityDecision,
}

/// One endpoint's decision this round, with everything that led to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointPlan {
    pub region: String,
    pub endpoint: String,
    pub kind: EndpointKind,
    /// The strictest tier of the configured models (every endpoint serves
    /// every model).
    pub tier: Tier,
    /// The region's role; `None` when the control record is unknown.
    pub role: Option<RegionRole>,
    /// `EndpointStatus`, when read.
    pub status: Option<String>,
    /// What it holds now: each provisioned variant's `CurrentInstanceCount`.
    pub holds: Vec<VariantCapacity>,
    /// `ProtectedFromAutoStop=true`; `None` when the tags were not read.
    pub protected: Option<bool>,
    pub schedule: Vec<VariantSchedule>,
    pub idle: Option<IdleDecision>,
    pub action: CostAction,
    /// Why, in words: the reason that decided, and what the other rule said.
    pub why: String,
}

fn role_name(role: Option<RegionRole>) -> &'static str {
    match role {
        Some(RegionRole::Active) => "active",
        Some(RegionRole::FailoverTarget) => "failover target",
        Some(RegionRole::Standby) => "standby",
        None => "role unknown",
    }
}

/// `AllTraffic=2, Canary=1`, or `-` when nothing was read.
pub fn holdings(holds: &[VariantCapacity]) -> String {
    if holds.is_empty() {
        return "-".into();
    }
    holds
        .iter()
        .map(|v| format!("{}={}", v.variant, v.instances))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for EndpointPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} [{}, {}, holds {}]: ",
            self.region,
            self.endpoint,
            self.tier,
            role_name(self.role),
            holdings(&self.holds)
        )?;
        match &self.action {
            CostAction::None => f.write_str("leave")?,
            CostAction::Scale { changes } => {
                let c: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{} {} -> {}", c.variant, c.from, c.to))
                    .collect();
                write!(f, "scale {}", c.join(", "))?;
            }
            CostAction::Stop { config } => write!(
                f,
                "stop (delete the endpoint; its endpoint config {config} stays)"
            )?,
        }
        write!(f, " ({})", self.why)
    }
}

/// The region's role as the cost rules see it.
pub fn role_of(region: &str, r: &ControlRecord) -> RegionRole {
    if r.phase == Phase::FailingOver && r.target.as_deref() == Some(region) {
        RegionRole::FailoverTarget
    } else if r.active == region {
        RegionRole::Active
    } else {
        RegionRole::Standby
    }
}

/// The configured endpoints of `region` with their kinds: the region's
/// shared ones and every model's own (`Config::endpoints_in`).
fn endpoints_of(cfg: &Config, region: &str) -> Vec<(String, EndpointKind)> {
    use crate::core::routing::Path;
    cfg.endpoints_in(region)
        .into_iter()
        .map(|e| {
            let kind = match e.path {
                Path::Provisioned => EndpointKind::Provisioned,
                Path::Serverless => EndpointKind::Serverless,
                Path::Batch => EndpointKind::Batch,
            };
            (e.name, kind)
        })
        .collect()
}

/// The router counts as the cost task asks for them, by endpoint: an
/// endpoint's invocations are the sum over its count labels (itself and
/// each inference component on it, `Config::count_labels`), counted since
/// the latest of their gap-free starts; the measured need of an endpoint
/// is over its counterparts (`Config::counterparts`).
struct ByEndpoint<'a> {
    cfg: &'a Config,
    inner: &'a dyn InvocationCounts,
}

impl InvocationCounts for ByEndpoint<'_> {
    fn invocations(
        &self,
        region: &str,
        endpoint: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Option<crate::ports::traffic::Counted> {
        let mut total = crate::ports::traffic::Counted {
            since_ms: 0,
            invocations: 0,
        };
        for label in self.cfg.count_labels(region, endpoint) {
            let c = self.inner.invocations(region, &label, window_ms, now_ms)?;
            total.since_ms = total.since_ms.max(c.since_ms);
            total.invocations += c.invocations;
        }
        Some(total)
    }

    fn fleet_need(&self, endpoints: &[(&str, &str)]) -> Option<u32> {
        self.inner.fleet_need(endpoints)
    }
}

/// Read what the decisions need for `region`'s endpoints: the record from
/// this daemon's replica, then `DescribeEndpoint` and `ListTags` for each
/// provisioned endpoint, and CloudWatch `Invocations` over the idle window
/// when idle detection reads it. Never fails: what could not be read says
/// so.
pub async fn observe(
    cfg: &Config,
    ports: &Ports,
    region: &str,
    hold: Option<String>,
) -> Observation {
    let record = ports
        .store
        .read_record()
        .await
        .map_err(|e| crate::error_chain(&e));
    let mut endpoints = Vec::new();
    for (endpoint, kind) in endpoints_of(cfg, region) {
        let mut seen = Seen {
            endpoint,
            kind,
            described: Described::NotRead,
            tags: None,
            cloudwatch: None,
        };
        if kind == EndpointKind::Provisioned {
            seen.described = match ports.endpoints.describe(region, &seen.endpoint).await {
                Ok(Some(state)) => Described::Found { state },
                Ok(None) => Described::Absent,
                Err(e) => Described::Unreadable {
                    error: crate::error_chain(&e),
                },
            };
            if let Described::Found { state } = &seen.described {
                seen.tags = Some(
                    ports
                        .endpoints
                        .tags(region, &state.arn)
                        .await
                        .map_err(|e| crate::error_chain(&e)),
                );
                if cfg.cost.idle.enabled && cfg.cost.idle.cloudwatch {
                    let variants: Vec<String> = state
                        .variants
                        .iter()
                        .filter(|v| !v.serverless)
                        .map(|v| v.variant.clone())
                        .collect();
                    let now = ports.clock.now_ms();
                    let window = cfg.cost.idle_policy().window_ms;
                    seen.cloudwatch = Some(
                        match components_on(cfg, ports, region, &seen.endpoint).await {
                            Ok(components) => ports
                                .endpoint_metrics
                                .invocations(
                                    region,
                                    &seen.endpoint,
                                    &variants,
                                    &components,
                                    now.saturating_sub(window),
                                    now,
                                )
                                .await
                                .map_err(|e| crate::error_chain(&e)),
                            Err(e) => Err(e),
                        },
                    );
                }
            }
        }
        endpoints.push(seen);
    }
    Observation {
        region: region.to_string(),
        now_ms: ports.clock.now_ms(),
        record,
        hold,
        endpoints,
    }
}

/// The inference components whose calls CloudWatch counts for
/// `endpoint`: every one SageMaker lists on it (whoever deployed it) and
/// every one the configuration maps there (listed or not: a listing that
/// lags a create must not hide a mapped component's calls). SageMaker
/// publishes a component's calls under `InferenceComponentName` alone, so
/// without them an endpoint that hosts components reads as idle.
async fn components_on(
    cfg: &Config,
    ports: &Ports,
    region: &str,
    endpoint: &str,
) -> Result<Vec<String>, String> {
    let mut names = ports
        .endpoints
        .components_on(region, endpoint)
        .await
        .map_err(|e| crate::error_chain(&e))?;
    for e in cfg.endpoints_in(region) {
        if e.name == endpoint {
            for c in &e.components {
                if !names.contains(c) {
                    names.push(c.clone());
                }
            }
        }
    }
    Ok(names)
}

/// One decision per endpoint of the observation, in configuration order.
/// Pure: the counts are a read of memory.
pub fn decide(cfg: &Config, obs: &Observation, counts: &dyn InvocationCounts) -> Vec<EndpointPlan> {
    let tier = cfg.cost.fleet_tier(&cfg.models);
    let counts = &ByEndpoint { cfg, inner: counts };
    obs.endpoints
        .iter()
        .map(|seen| decide_one(cfg, obs, seen, tier, counts))
        .collect()
}

fn decide_one(
    cfg: &Config,
    obs: &Observation,
    seen: &Seen,
    tier: Tier,
    counts: &dyn InvocationCounts,
) -> EndpointPlan {
    let now = obs.now_ms;
    let record = obs.record.as_ref().ok().and_then(Option::as_ref);
    let role = record.map(|r| role_of(&obs.region, r));
    let state = match &seen.described {
        Described::Found { state } => Some(state),
        _ => None,
    };
    let protected = match &seen.tags {
        Some(Ok(tags)) => Some(idle::protected_by_tags(
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )),
        _ => None,
    };
    let mut plan = EndpointPlan {
        region: obs.region.clone(),
        endpoint: seen.endpoint.clone(),
        kind: seen.kind,
        tier,
        role,
        status: state.map(|s| s.status.as_str().to_string()),
        holds: state.map(EndpointState::provisioned).unwrap_or_default(),
        protected,
        schedule: Vec::new(),
        idle: None,
        action: CostAction::None,
        why: String::new(),
    };
    let leave = |mut plan: EndpointPlan, why: String| {
        plan.why = why;
        plan
    };

    let (role, state, variants) = match gate(obs, seen, record) {
        Ok(g) => g,
        Err(why) => return leave(plan, why),
    };
    let sched = cfg.cost.schedule_for(&seen.endpoint);
    let guard = record.and_then(|r| guard_of(obs, &seen.endpoint, r, counts));
    // What each variant may be reduced to: the schedule's minimum now, else
    // one instance (production variants cannot scale to zero).
    let variant_min = sched.map_or(1, |s| s.at(now).min).max(1);
    let mut notes: Vec<String> = Vec::new();

    let j = Judged {
        cfg,
        obs,
        seen,
        counts,
        role,
        tier,
        protected,
        guard,
    };
    if cfg.cost.idle.enabled {
        match idle_step(&j, &mut plan, state, &variants, variant_min) {
            Ok(note) => notes.push(note),
            Err(why) => return leave(plan, why),
        }
    }
    let changes = schedule_step(&j, sched, &variants, &mut plan, &mut notes);
    if !changes.is_empty() {
        plan.action = CostAction::Scale { changes };
    }
    leave(plan, notes.join("; "))
}

/// Past the gate: this region's role, the endpoint's state, its provisioned
/// variants with their instance counts.
type Gated<'a> = (RegionRole, &'a EndpointState, Vec<(&'a str, u32)>);

/// The ladder of reasons to leave an endpoint alone before any rule runs:
/// a hold, a kind that scales itself, no readable record, a failover in
/// flight, a paused fleet, an endpoint absent, unreadable or mid-change, no
/// provisioned variant. `Ok`: this region's role, the endpoint's state and
/// its provisioned variants with their instance counts.
fn gate<'a>(
    obs: &Observation,
    seen: &'a Seen,
    record: Option<&ControlRecord>,
) -> Result<Gated<'a>, String> {
    if let Some(hold) = &obs.hold {
        return Err(format!("holding back: {hold}"));
    }
    if seen.kind != EndpointKind::Provisioned {
        return Err(format!(
            "{:?} endpoints scale themselves; only provisioned variants are scaled",
            seen.kind
        ));
    }
    let record = match (&obs.record, record) {
        (Err(e), _) => {
            return Err(format!(
                "the control record cannot be read ({e}): not acting blind"
            ));
        }
        (Ok(_), None) => return Err("no control record yet".into()),
        (Ok(_), Some(r)) => r,
    };
    if record.phase == Phase::FailingOver {
        return Err(format!(
            "{} ({} -> {}, step {})",
            schedule::LeaveReason::FailoverInFlight,
            record.previous.as_deref().unwrap_or(&record.active),
            record.target.as_deref().unwrap_or("?"),
            record.step.as_str()
        ));
    }
    if record.mode == Mode::Paused {
        return Err(
            "the fleet is paused: operators have it; no cost action until it resumes".into(),
        );
    }
    let role = role_of(&obs.region, record);
    let state = match &seen.described {
        Described::Found { state } => state,
        Described::Absent => {
            return Err(
                "the endpoint does not exist (stopped? recreate it from its endpoint config)"
                    .into(),
            );
        }
        Described::Unreadable { error } => {
            return Err(format!("DescribeEndpoint failed ({error})"));
        }
        Described::NotRead => return Err("not read".into()),
    };
    if state.status != EndpointStatus::InService {
        return Err(format!(
            "{}: a change is under way; SageMaker takes no other until it ends",
            state.status.as_str()
        ));
    }
    let variants: Vec<(&str, u32)> = state
        .variants
        .iter()
        .filter(|v| !v.serverless)
        .filter_map(|v| Some((v.variant.as_str(), v.current_instances?)))
        .collect();
    if variants.is_empty() {
        return Err("no provisioned variant with an instance count".into());
    }
    Ok((role, state, variants))
}

/// One endpoint as the rules judge it, past the gate.
struct Judged<'a> {
    cfg: &'a Config,
    obs: &'a Observation,
    seen: &'a Seen,
    counts: &'a dyn InvocationCounts,
    role: RegionRole,
    tier: Tier,
    /// `Some(true)`: tagged protected; `None`: tags not read.
    protected: Option<bool>,
    /// Why the region must not be lowered now.
    guard: Option<Guard>,
}

/// The guard on this endpoint's region now (`core::tier::guard`): whether
/// the fleet's routers sent it traffic in the last
/// [`tier::SERVING_WINDOW_MS`] (unknown while a router has not counted that
/// long), an open proposal naming it, or a switch to it within the last
/// need window.
fn guard_of(
    obs: &Observation,
    endpoint: &str,
    record: &ControlRecord,
    counts: &dyn InvocationCounts,
) -> Option<Guard> {
    let now = obs.now_ms;
    let window = tier::SERVING_WINDOW_MS;
    let serving = match counts.invocations(&obs.region, endpoint, window, now) {
        Some(c) if c.invocations > 0 => Some(true),
        Some(c) if now.saturating_sub(c.since_ms) >= window => Some(false),
        _ => None,
    };
    tier::guard(
        &obs.region,
        record,
        now,
        serving,
        crate::metrics::counts::NEED_WINDOW_MS,
    )
}

/// The (region, count label) pairs that carry the traffic of the regions'
/// shared provisioned endpoints: the measured need is their traffic
/// summed, wherever it landed (a need survives a switch, and per-region
/// endpoint names). With inference components on a shared endpoint, the
/// routers count each component's calls under `endpoint/component`
/// (`config::serving`), so those labels are in too
/// (`Config::counterparts`), as the cost task's schedule step reads them.
pub fn provisioned_everywhere(cfg: &Config) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in &cfg.regions {
        let Some(e) = r.sagemaker.provisioned.as_deref() else {
            continue;
        };
        for pair in cfg.counterparts(&r.name, e) {
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}

/// `pairs` borrowed, as the count readers take them.
pub fn as_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(r, l)| (r.as_str(), l.as_str()))
        .collect()
}

/// Idle detection for one endpoint (when enabled): a stop or a reduction
/// becomes the plan's action and `Err(why)` ends the decision; otherwise
/// `Ok(note)` for the plan's reasons.
fn idle_step(
    j: &Judged<'_>,
    plan: &mut EndpointPlan,
    state: &EndpointState,
    variants: &[(&str, u32)],
    variant_min: u32,
) -> Result<String, String> {
    let Judged {
        cfg,
        obs,
        seen,
        counts,
        role,
        tier,
        protected,
        guard,
    } = *j;
    let now = obs.now_ms;
    let policy = cfg.cost.idle_policy();
    let counted = counts.invocations(&obs.region, &seen.endpoint, policy.window_ms, now);
    let e = IdleEndpoint {
        endpoint: seen.endpoint.clone(),
        region: obs.region.clone(),
        kind: seen.kind,
        role,
        tier,
        protected,
        counted_since_ms: counted.map_or(now, |c| c.since_ms),
        router_invocations: counted.map_or(0, |c| c.invocations),
        cloudwatch_invocations: seen
            .cloudwatch
            .as_ref()
            .and_then(|r| r.as_ref().ok().copied()),
        instances: variants.iter().map(|(_, n)| n).sum(),
        minimum: variant_min * variants.len() as u32,
        guard,
    };
    let d = idle::decide(now, false, &policy, &[e]).remove(0);
    let why = match (&d.why, &seen.cloudwatch) {
        _ if counted.is_none() => format!(
            "idle: {} (not every region's router has published counts yet)",
            d.why
        ),
        (idle::IdleReason::CloudWatchUnread, Some(Err(e))) => {
            format!("idle: {} ({e})", d.why)
        }
        _ => format!("idle: {}", d.why),
    };
    plan.idle = Some(d.clone());
    match d.action {
        IdleAction::Stop => {
            plan.action = CostAction::Stop {
                config: state.config.clone(),
            };
            Err(why)
        }
        IdleAction::Reduce { .. } => {
            plan.action = CostAction::Scale {
                changes: variants
                    .iter()
                    .filter(|(_, n)| *n > variant_min)
                    .map(|(v, n)| ScaleChange {
                        variant: v.to_string(),
                        from: *n,
                        to: variant_min,
                    })
                    .collect(),
            };
            Err(why)
        }
        IdleAction::None => Ok(why),
    }
}

/// The schedule (and a standby's measured need) for each provisioned
/// variant: the changes to make, with a note per variant.
fn schedule_step(
    j: &Judged<'_>,
    sched: Option<&Schedule>,
    variants: &[(&str, u32)],
    plan: &mut EndpointPlan,
    notes: &mut Vec<String>,
) -> Vec<ScaleChange> {
    let (role, tier, protected, now) = (j.role, j.tier, j.protected, j.obs.now_ms);
    let counts = j.counts;
    let holds_need = role == RegionRole::Standby
        && (j.guard.is_some() || tier.standby_holds() == StandbyHolds::ActiveNeed);
    let mut changes = Vec::new();
    if sched.is_some() || holds_need {
        // The traffic this endpoint carries wherever it lands: the
        // models on it, in every region (per-model endpoints).
        let pairs = j.cfg.counterparts(&j.obs.region, &j.seen.endpoint);
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(r, l)| (r.as_str(), l.as_str()))
            .collect();
        let need = counts.fleet_need(&pairs);
        for (variant, current) in variants {
            let d = schedule::desired_minimum(&CapacityInputs {
                now_ms: now,
                schedule: sched,
                floor: 1,
                role,
                tier,
                active_need: need,
                current_min: Some(*current),
                failover_in_flight: false,
                guard: j.guard,
            });
            match &d {
                CapacityDecision::Set { min, why } if *min == *current => {
                    notes.push(format!("schedule: {variant} at {min} ({why})"));
                }
                CapacityDecision::Set { min, why }
                    if *min < *current && protected != Some(false) =>
                {
                    let because = if protected.is_some() {
                        format!("tagged {}=true", idle::PROTECTED_TAG)
                    } else {
                        "tags not read: treated as protected".to_string()
                    };
                    notes.push(format!(
                        "schedule: {variant} would go {current} -> {min} ({why}), but {because}: the daemon never lowers it"
                    ));
                }
                CapacityDecision::Set { min, why } => {
                    notes.push(format!("schedule: {variant} {current} -> {min} ({why})"));
                    changes.push(ScaleChange {
                        variant: variant.to_string(),
                        from: *current,
                        to: *min,
                    });
                }
                CapacityDecision::Leave { why } => {
                    notes.push(format!("schedule: {variant} left at {current} ({why})"));
                }
            }
            plan.schedule.push(VariantSchedule {
                variant: variant.to_string(),
                decision: d,
            });
        }
    } else {
        notes.push("no schedule".into());
    }
    changes
}

/// Perform the plans' actions; journal each, and each failure once until
/// its text changes (`failures` remembers, per endpoint, the last one
/// journalled: a call refused every minute must not flood the journal).
/// Returns, per plan, whether its action was taken (AWS accepted it).
pub async fn act(
    ports: &Ports,
    who: &str,
    epoch: Option<u64>,
    plans: &[EndpointPlan],
    failures: &mut HashMap<String, String>,
) -> Vec<bool> {
    let mut taken = vec![false; plans.len()];
    for (i, p) in plans.iter().enumerate() {
        let key = format!("{}/{}", p.region, p.endpoint);
        let result =
            match &p.action {
                CostAction::None => continue,
                CostAction::Scale { changes } => {
                    let counts: Vec<(String, u32)> =
                        changes.iter().map(|c| (c.variant.clone(), c.to)).collect();
                    ports
                        .endpoints
                        .set_instance_counts(&p.region, &p.endpoint, &counts)
                        .await
                        .map(|()| ("cost_scale", String::new()))
                }
                CostAction::Stop { .. } => ports
                    .endpoints
                    .delete(&p.region, &p.endpoint)
                    .await
                    .map(|d| match d {
                        Deleted::Started => ("cost_stop", String::new()),
                        Deleted::Absent => ("cost_stop", " (it was already gone)".to_string()),
                    }),
            };
        let now = ports.clock.now_ms();
        match result {
            Ok((kind, note)) => {
                taken[i] = true;
                failures.remove(&key);
                info!(endpoint = %p.endpoint, action = kind, "{p}{note}");
                journal(&*ports.store, now, who, kind, epoch, format!("{p}{note}")).await;
            }
            Err(e) => {
                let error = crate::error_chain(&e);
                warn!(endpoint = %p.endpoint, %error, "cost action failed; retried next round");
                if failures.get(&key) != Some(&error) {
                    journal(
                        &*ports.store,
                        now,
                        who,
                        "cost_failed",
                        epoch,
                        format!("{p}: failed: {error}"),
                    )
                    .await;
                    failures.insert(key, error);
                }
            }
        }
    }
    taken
}

/// Why the daemon holds back this round, from its reconcile loop's last
/// round: no quorum, a round older than three poll intervals (the loop is
/// stuck on an unreachable table), or the region draining.
pub fn hold_reason(cfg: &Config, shared: &Shared, now_ms: u64) -> Option<String> {
    if shared.draining.load(Ordering::Relaxed) {
        return Some("this region is draining".into());
    }
    let (at, quorum) = shared.read(|st| (st.at, st.tally.as_ref().map(|t| t.no_quorum.clone())));
    let stale = cfg.timings.poll_interval.as_millis() as u64 * 3;
    if at == 0 {
        return Some("no reconcile round has completed yet".into());
    }
    if now_ms.saturating_sub(at) > stale {
        return Some(format!(
            "the last reconcile round is {}s old",
            now_ms.saturating_sub(at) / 1000
        ));
    }
    match quorum {
        Some(None) => None,
        Some(Some(q)) => Some(format!("no quorum: {q:?}")),
        None => Some("the last round has no tally".into()),
    }
}

/// The daemon's cost task.
pub struct CostTask {
    config: watch::Receiver<Arc<Config>>,
    ports: Ports,
    shared: Arc<Shared>,
    counts: Arc<dyn InvocationCounts>,
    failures: HashMap<String, String>,
    /// The last round's plans, as text: logged at debug when they change.
    last: Vec<String>,
    /// Lowerings that raced a claim, to put back ([`Raced`]).
    raced: Vec<Raced>,
}

/// How soon a lowering to put back is tried again: SageMaker refuses a
/// change while the lowering is under way (`Updating`).
const RACED_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a put-back is tried before the task gives up on it (said in
/// the journal): by then prepare, or the new active's own cost rules, own
/// the region's capacity.
const RACED_GIVE_UP_MS: u64 = 15 * 60 * 1000;

/// A lowering this task made that may have raced a failover: decided on
/// one record while another region's claim (or proposal) naming this
/// region had not yet replicated here. The check before acting cannot see
/// such a claim, and SageMaker cannot make the call conditional on the
/// record, so the record is read again once the lowering has landed:
///
/// - it names this region (the failover target, the active, or the target
///   of a live proposal) where the decided one did not: the counts the
///   lowering took away are put back (raised, never lowered), retried every
///   [`RACED_RETRY`] until SageMaker takes it, the record no longer names
///   the region, or for [`RACED_GIVE_UP_MS`]; journalled `cost_raced`;
/// - it cannot be read: the lowering is checked again at the next try.
///
/// Together with the prepare step this closes the race: prepare runs only
/// once the claim is in this region's replica, and reads the endpoint
/// after that. A lowering that lands before prepare's read is raised by
/// prepare (its plan is from the active's counts); one that lands after is
/// followed by this read, which then sees the claim.
#[derive(Debug, Clone)]
struct Raced {
    endpoint: String,
    /// Each lowered variant and the count it had.
    back: Vec<(String, u32)>,
    /// The record the lowering was decided on.
    decided: ControlRecord,
    /// Why it is put back, and since when (ms) it is tried; `None` until
    /// a read of the record says so.
    why: Option<(String, u64)>,
    /// An endpoint deleted (idle `tier3`): nothing to scale back; said once.
    deleted: Option<String>,
}

/// Whether `now` names `region` as a region that serves or is about to
/// where `decided` (the record a lowering was decided on) did not.
pub fn names_since(region: &str, decided: &ControlRecord, now: &ControlRecord) -> Option<String> {
    if now.version == decided.version {
        return None;
    }
    match (role_of(region, decided), role_of(region, now)) {
        (was, RegionRole::FailoverTarget) if was != RegionRole::FailoverTarget => Some(format!(
            "a failover to {region} was claimed (epoch {}) before the lowering landed",
            now.epoch
        )),
        (was, RegionRole::Active) if was != RegionRole::Active => Some(format!(
            "{region} became the active region (epoch {}) before the lowering landed",
            now.epoch
        )),
        _ if now.proposes(region) && !decided.proposes(region) => Some(format!(
            "a failover to {region} was proposed before the lowering landed"
        )),
        _ => None,
    }
}

impl CostTask {
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        ports: Ports,
        shared: Arc<Shared>,
        counts: Arc<dyn InvocationCounts>,
    ) -> Self {
        Self {
            config,
            ports,
            shared,
            counts,
            failures: HashMap::new(),
            last: Vec::new(),
            raced: Vec::new(),
        }
    }

    /// Run rounds until shutdown. The first comes one interval after the
    /// start: a restarted daemon lets its reconcile loop see the fleet first.
    pub async fn run(mut self, mut shutdown: ShutdownRx) {
        let mut n = 0u64;
        let mut due = self.ports.clock.monotonic() + self.config.borrow().cost.interval;
        loop {
            // Between rounds, a lowering to put back is tried every
            // RACED_RETRY.
            let wake = if self.raced.is_empty() {
                due
            } else {
                due.min(self.ports.clock.monotonic() + RACED_RETRY)
            };
            tokio::select! {
                biased;
                _ = shutdown_signalled(&mut shutdown) => return,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if self.ports.clock.monotonic() < due {
                tokio::select! {
                    biased;
                    _ = shutdown_signalled(&mut shutdown) => return,
                    _ = self.put_back().instrument(info_span!("cost", n)) => {}
                }
                continue;
            }
            due = self.ports.clock.monotonic() + self.config.borrow().cost.interval;
            n += 1;
            tokio::select! {
                biased;
                _ = shutdown_signalled(&mut shutdown) => return,
                plans = self.round().instrument(info_span!("cost", n)) => {
                    let text: Vec<String> = plans.iter().map(ToString::to_string).collect();
                    if text != self.last {
                        for t in &text {
                            debug!("{t}");
                        }
                        self.last = text;
                    }
                }
            }
        }
    }

    /// One round: observe, decide, act. Returns the plans.
    pub async fn round(&mut self) -> Vec<EndpointPlan> {
        let cfg = self.config.borrow().clone();
        let hold = hold_reason(&cfg, &self.shared, self.ports.clock.now_ms());
        let obs = observe(&cfg, &self.ports, &cfg.region, hold).await;
        let mut plans = decide(&cfg, &obs, &*self.counts);
        let read = obs.record.as_ref().ok().and_then(Option::as_ref);
        if plans.iter().any(|p| p.action != CostAction::None) {
            // A failover may have started since the read: look again right
            // before acting, and act only on the record the plans were made
            // from. (The prepare step scales its target up whatever a late
            // action did, so the window left is harmless, only wasteful.)
            let again = self.ports.store.read_record().await;
            let same = matches!((&again, read), (Ok(Some(a)), Some(r)) if a.version == r.version);
            if !same {
                for p in &mut plans {
                    if p.action != CostAction::None {
                        p.action = CostAction::None;
                        p.why = format!(
                            "the control record changed during the round; decided again next round ({})",
                            p.why
                        );
                    }
                }
            }
        }
        let epoch = read.map(|r| r.epoch);
        let taken = act(&self.ports, &cfg.region, epoch, &plans, &mut self.failures).await;
        if let Some(decided) = read {
            for (p, _) in plans.iter().zip(taken).filter(|(_, t)| *t) {
                let (back, deleted) = match &p.action {
                    CostAction::Scale { changes } => (
                        changes
                            .iter()
                            .filter(|c| c.to < c.from)
                            .map(|c| (c.variant.clone(), c.from))
                            .collect::<Vec<_>>(),
                        None,
                    ),
                    CostAction::Stop { config } => (Vec::new(), Some(config.clone())),
                    CostAction::None => continue,
                };
                if back.is_empty() && deleted.is_none() {
                    continue;
                }
                self.raced.retain(|r| r.endpoint != p.endpoint);
                self.raced.push(Raced {
                    endpoint: p.endpoint.clone(),
                    back,
                    decided: decided.clone(),
                    why: None,
                    deleted,
                });
            }
        }
        self.put_back().await;
        plans
    }

    /// Read the record for the lowerings not yet judged ([`Raced`]); put
    /// back those it says raced a claim, and forget the others.
    async fn put_back(&mut self) {
        if self.raced.is_empty() {
            return;
        }
        let region = self.config.borrow().region.clone();
        let now = match self.ports.store.read_record().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.raced.clear();
                return;
            }
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "cannot read the control record to check a lowering against it; tried again");
                return;
            }
        };
        let mut keep = Vec::new();
        for mut r in std::mem::take(&mut self.raced) {
            let Some(why) = names_since(&region, &r.decided, &now) else {
                // Decided on the record still in force (or one that no
                // longer names this region): the lowering stands.
                if r.why.is_some() {
                    debug!(endpoint = %r.endpoint, "the record no longer names this region; the lowering is not put back");
                }
                continue;
            };
            let clock = self.ports.clock.now_ms();
            let first = r.why.is_none();
            let since = r.why.as_ref().map_or(clock, |(_, at)| *at);
            r.why = Some((why.clone(), since));
            let said = |detail: String| {
                journal(
                    &*self.ports.store,
                    clock,
                    &region,
                    "cost_raced",
                    Some(now.epoch),
                    format!("{region}/{}: {detail}", r.endpoint),
                )
            };
            if let Some(config) = &r.deleted {
                warn!(endpoint = %r.endpoint, "{why}: the endpoint was deleted as idle; recreate it from its endpoint config {config}");
                said(format!("deleted as idle while {why}; it cannot be put back by scaling: recreate it from its endpoint config {config}")).await;
                continue;
            }
            match self.scale_back(&region, &r).await {
                Ok(text) => {
                    info!(endpoint = %r.endpoint, "{text}");
                    said(format!("{why}: {text}")).await;
                }
                Err(error) if clock.saturating_sub(since) >= RACED_GIVE_UP_MS => {
                    warn!(endpoint = %r.endpoint, %error, "{why}: the lowering could not be put back; gave up");
                    said(format!(
                        "{why}: the lowering could not be put back in {} minutes; gave up: {error}",
                        RACED_GIVE_UP_MS / 60_000
                    ))
                    .await;
                }
                Err(error) => {
                    if first {
                        warn!(endpoint = %r.endpoint, %error, "{why}: putting the lowering back failed; tried again");
                    }
                    keep.push(r);
                }
            }
        }
        self.raced = keep;
    }

    /// Raise each variant `r` lowered back to its count (never lower: one
    /// already raised, by prepare, is left).
    async fn scale_back(&self, region: &str, r: &Raced) -> Result<String, String> {
        let state = self
            .ports
            .endpoints
            .describe(region, &r.endpoint)
            .await
            .map_err(|e| crate::error_chain(&e))?;
        let Some(state) = state else {
            return Ok("the endpoint is gone: nothing to put back".into());
        };
        let low: Vec<(String, u32)> = r
            .back
            .iter()
            .filter(|(variant, n)| state.variant(variant).is_some_and(|v| v.asked() < *n))
            .cloned()
            .collect();
        if low.is_empty() {
            return Ok("the lowering is already made up (prepare raised it)".into());
        }
        self.ports
            .endpoints
            .set_instance_counts(region, &r.endpoint, &low)
            .await
            .map_err(|e| crate::error_chain(&e))?;
        let c: Vec<String> = low.iter().map(|(v, n)| format!("{v} -> {n}")).collect();
        Ok(format!("the lowering is put back: scale {}", c.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvSource;
    use crate::core::control::Step;
    use crate::ports::endpoints::VariantState;
    use crate::ports::traffic::{Counted, NotCounted};
    use proptest::prelude::*;

    /// Monday 2025-01-06 00:00 UTC.
    const MONDAY: u64 = 1_736_121_600_000;
    const HOUR: u64 = 3_600_000;

    /// A configuration: us-east-1 and us-west-2 with a provisioned endpoint
    /// `prov` (scheduled MON-FRI 09:00-18:00 at 3, off hours 1, UTC), a
    /// serverless one, and the `[cost]` lines given.
    fn config(cost: &str) -> Config {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "failoverd-cost-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let regions = ["us-east-1", "us-west-2"]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "[[regions]]\nname = \"{r}\"\npriority = {}\nprobe_urls = [\"https://{r}.example/ping\"]\nstate_machine_arn = \"arn:aws:states:{r}:111122223333:stateMachine:f\"\nsagemaker = {{ provisioned = \"prov\", serverless = \"sls\" }}\n",
                    i + 1
                )
            })
            .collect::<String>();
        let text = format!(
            "region = \"us-west-2\"\n[tables]\ncontrol = \"c\"\nrouting = \"r\"\nwitness = \"us-east-2\"\n{regions}[[models]]\nname = \"fraud\"\n[[models]]\nname = \"chat\"\n[cost]\n{cost}\n[[cost.schedules]]\nendpoint = \"prov\"\ntimezone = \"UTC\"\noff_hours_min = 1\nwindows = [{{ days = \"MON-FRI\", start = \"09:00\", end = \"18:00\", min = 3 }}]\n"
        );
        let f = dir.join("us-west-2.toml");
        std::fs::write(&f, text).unwrap();
        crate::config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()))
    }

    /// Two regions whose shared provisioned endpoint `prov` hosts `llm`
    /// as inference components, and `fraud` on endpoints of its own.
    fn models_config() -> Config {
        let dir = std::env::temp_dir().join(format!(
            "failoverd-cost-models-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::from(
            "region = \"us-west-2\"\n[tables]\ncontrol = \"c\"\nrouting = \"r\"\nwitness = \"us-east-2\"\n",
        );
        for (i, r) in ["us-east-1", "us-west-2"].iter().enumerate() {
            text.push_str(&format!(
                "[[regions]]\nname = \"{r}\"\npriority = {}\nprobe_urls = [\"https://{r}.example/ping\"]\nstate_machine_arn = \"arn:aws:states:{r}:111122223333:stateMachine:f\"\nsagemaker = {{ provisioned = \"prov\", serverless = \"sls\" }}\n",
                i + 1
            ));
        }
        text.push_str(
            "[[models]]\nname = \"llm\"\n[models.regions.us-east-1]\ninference_component = \"llm-e\"\n[models.regions.us-west-2]\ninference_component = \"llm-w\"\n\
             [[models]]\nname = \"fraud\"\n[models.regions.us-east-1]\nprovisioned = \"fraud-e\"\n[models.regions.us-west-2]\nprovisioned = \"fraud-w\"\n",
        );
        let f = dir.join("us-west-2.toml");
        std::fs::write(&f, text).unwrap();
        crate::config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()))
    }

    /// Counts by (region, label).
    struct ByLabel(Vec<(&'static str, &'static str, u64)>);

    impl InvocationCounts for ByLabel {
        fn invocations(&self, region: &str, label: &str, _: u64, _: u64) -> Option<Counted> {
            Some(Counted {
                since_ms: 0,
                invocations: self
                    .0
                    .iter()
                    .filter(|(r, l, _)| *r == region && *l == label)
                    .map(|(_, _, n)| n)
                    .sum(),
            })
        }
        fn fleet_need(&self, _: &[(&str, &str)]) -> Option<u32> {
            None
        }
    }

    #[test]
    fn the_cost_task_follows_each_models_endpoints() {
        let cfg = models_config();
        assert_eq!(
            endpoints_of(&cfg, "us-west-2"),
            vec![
                ("prov".to_string(), EndpointKind::Provisioned),
                ("sls".to_string(), EndpointKind::Serverless),
                ("fraud-w".to_string(), EndpointKind::Provisioned),
            ]
        );
        // An endpoint's calls are its own and its components'.
        let counts = ByLabel(vec![
            ("us-west-2", "prov/llm-w", 4),
            ("us-west-2", "prov", 1),
        ]);
        let by = ByEndpoint {
            cfg: &cfg,
            inner: &counts,
        };
        assert_eq!(
            by.invocations("us-west-2", "prov", 1, 1)
                .unwrap()
                .invocations,
            5
        );
        assert_eq!(
            by.invocations("us-west-2", "fraud-w", 1, 1)
                .unwrap()
                .invocations,
            0
        );
        // The need of a model's own endpoint is that model's traffic in
        // every region; the shared one's, the shared endpoints' and the
        // components' on them.
        let pairs = |r: &str, e: &str| cfg.counterparts(r, e);
        assert_eq!(
            pairs("us-west-2", "fraud-w"),
            vec![
                ("us-east-1".to_string(), "fraud-e".to_string()),
                ("us-west-2".to_string(), "fraud-w".to_string())
            ]
        );
        assert_eq!(
            pairs("us-west-2", "prov"),
            vec![
                ("us-east-1".to_string(), "prov".to_string()),
                ("us-west-2".to_string(), "prov".to_string()),
                ("us-east-1".to_string(), "prov/llm-e".to_string()),
                ("us-west-2".to_string(), "prov/llm-w".to_string())
            ]
        );
    }

    fn record(active: &str, phase: Phase, mode: Mode) -> ControlRecord {
        ControlRecord {
            version: 7,
            incarnation: "x".into(),
            epoch: 3,
            active: active.into(),
            mode,
            phase,
            target: (phase == Phase::FailingOver).then(|| "us-west-2".to_string()),
            execution: None,
            initiator: None,
            state_machine: None,
            previous: None,
            changed_by: "us-east-1".into(),
            changed_at: 0,
            reason: "test".into(),
            last_failover_at: None,
            switched_at: None,
            step: Step::Mark,
            aborts: 0,
            ungraceful: false,
            old_region_healthy: true,
            forced: false,
            proposal: None,
        }
    }

    fn seen(status: EndpointStatus, instances: u32, tags: Option<&[(&str, &str)]>) -> Seen {
        Seen {
            endpoint: "prov".into(),
            kind: EndpointKind::Provisioned,
            described: Described::Found {
                state: EndpointState {
                    arn: "arn:aws:sagemaker:us-west-2:111122223333:endpoint/prov".into(),
                    config: "prov-config".into(),
                    status,
                    variants: vec![VariantState {
                        variant: "AllTraffic".into(),
                        current_instances: Some(instances),
                        desired_instances: Some(instances),
                        serverless: false,
                        pools: Vec::new(),
                    }],
                    failure_reason: None,
                },
            },
            tags: tags.map(|t| {
                Ok(t.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect())
            }),
            cloudwatch: Some(Ok(0)),
        }
    }

    fn obs(region: &str, now_ms: u64, record: ControlRecord, seen: Seen) -> Observation {
        Observation {
            region: region.into(),
            now_ms,
            record: Ok(Some(record)),
            hold: None,
            endpoints: vec![
                seen,
                Seen {
                    endpoint: "sls".into(),
                    kind: EndpointKind::Serverless,
                    described: Described::NotRead,
                    tags: None,
                    cloudwatch: None,
                },
            ],
        }
    }

    /// Counts the test sets: idle since long ago, or busy, and a need.
    struct Fake {
        invocations: Option<Counted>,
        need: Option<u32>,
    }

    impl InvocationCounts for Fake {
        fn invocations(&self, _: &str, _: &str, _: u64, _: u64) -> Option<Counted> {
            self.invocations
        }
        fn fleet_need(&self, _: &[(&str, &str)]) -> Option<u32> {
            self.need
        }
    }

    /// Counted since Monday 00:00 (the whole day): `invocations` in every
    /// window asked for, and `need`.
    fn counted(invocations: u64, need: Option<u32>) -> Fake {
        Fake {
            invocations: Some(Counted {
                since_ms: MONDAY,
                invocations,
            }),
            need,
        }
    }

    const UNTAGGED: Option<&[(&str, &str)]> = Some(&[]);

    fn scale(plan: &EndpointPlan) -> Option<(u32, u32)> {
        match &plan.action {
            CostAction::Scale { changes } => Some((changes[0].from, changes[0].to)),
            _ => None,
        }
    }

    #[test]
    fn the_schedule_raises_at_business_hours_and_lowers_the_standby_after() {
        let cfg = config("");
        let steady = record("us-east-1", Phase::Steady, Mode::Auto);
        let at10 = obs(
            "us-west-2",
            MONDAY + 10 * HOUR,
            steady.clone(),
            seen(EndpointStatus::InService, 1, UNTAGGED),
        );
        let plans = decide(&cfg, &at10, &NotCounted);
        assert_eq!(plans.len(), 2, "one decision per endpoint");
        assert_eq!(scale(&plans[0]), Some((1, 3)), "{}", plans[0]);
        assert_eq!(
            plans[1].action,
            CostAction::None,
            "serverless is left alone"
        );
        let at19 = obs(
            "us-west-2",
            MONDAY + 19 * HOUR,
            steady,
            seen(EndpointStatus::InService, 3, UNTAGGED),
        );
        // The routers counted no traffic to it all day: the 18:00 rule.
        let quiet = counted(0, None);
        let plans = decide(&cfg, &at19, &quiet);
        assert_eq!(scale(&plans[0]), Some((3, 1)), "{}", plans[0]);
        assert_eq!(
            plans[0].to_string(),
            "us-west-2/prov [tier2, standby, holds AllTraffic=3]: scale AllTraffic 3 -> 1 (schedule: AllTraffic 3 -> 1 (off hours: minimum 1))"
        );
        // Without counts nobody can say it does not serve: never lowered blind.
        let p = decide(&cfg, &at19, &NotCounted).remove(0);
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("may be serving"), "{p}");
    }

    /// Issue 19 item 5: a failover held back (approval pending, rejected,
    /// `min_failover_interval`, tier3, eventual mode) while the routers
    /// already send the fleet's traffic to the standby; the target of an
    /// open proposal; a new active in its first hour: none is lowered at
    /// 19:00, and a serving standby is raised to the fleet's need.
    #[test]
    fn the_region_that_serves_or_is_about_to_is_never_lowered() {
        let cfg = config("");
        let at19 = MONDAY + 19 * HOUR;
        let steady = record("us-east-1", Phase::Steady, Mode::Auto);
        let busy = counted(120, Some(5));
        let quiet = counted(0, Some(5));
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                at19,
                steady.clone(),
                seen(EndpointStatus::InService, 3, UNTAGGED),
            ),
            &busy,
        )
        .remove(0);
        assert_eq!(
            scale(&p),
            Some((3, 5)),
            "a serving standby holds the fleet's need: {p}"
        );
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                at19,
                steady.clone(),
                seen(EndpointStatus::InService, 6, UNTAGGED),
            ),
            &busy,
        )
        .remove(0);
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("it serves, so it is never lowered"), "{p}");

        let mut proposed = steady.clone();
        proposed.proposal = Some(crate::core::control::Proposal {
            id: "p1".into(),
            epoch: 4,
            from: "us-east-1".into(),
            target: "us-west-2".into(),
            proposer: "us-west-2".into(),
            proposed_at: at19,
            reason: "test".into(),
            state: crate::core::control::ProposalState::Proposed,
            decided_by: None,
            decided_at: None,
            decision: None,
        });
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                at19,
                proposed,
                seen(EndpointStatus::InService, 6, UNTAGGED),
            ),
            &quiet,
        )
        .remove(0);
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("open failover proposal"), "{p}");

        let mut switched = record("us-west-2", Phase::Steady, Mode::Auto);
        switched.switched_at = Some(at19 - 10 * 60_000);
        let counts = Fake {
            need: Some(1),
            ..quiet
        };
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                at19,
                switched.clone(),
                seen(EndpointStatus::InService, 3, UNTAGGED),
            ),
            &counts,
        )
        .remove(0);
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("first whole measurement window"), "{p}");
        // An hour on, the need it measured holds it.
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                at19 + HOUR,
                switched,
                seen(EndpointStatus::InService, 3, UNTAGGED),
            ),
            &counts,
        )
        .remove(0);
        assert_eq!(scale(&p), Some((3, 1)), "{p}");
    }

    #[test]
    fn the_active_is_raised_but_never_lowered_below_its_need_or_blind() {
        let cfg = config("");
        let steady = record("us-west-2", Phase::Steady, Mode::Auto);
        let evening = |n| {
            obs(
                "us-west-2",
                MONDAY + 19 * HOUR,
                steady.clone(),
                seen(EndpointStatus::InService, n, UNTAGGED),
            )
        };
        let p = &decide(&cfg, &evening(4), &NotCounted)[0];
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("not measured yet"), "{p}");
        let need = Fake {
            invocations: None,
            need: Some(2),
        };
        assert_eq!(
            scale(&decide(&cfg, &evening(4), &need)[0]),
            Some((4, 2)),
            "down to the need, not to 1"
        );
        let morning = obs(
            "us-west-2",
            MONDAY + 10 * HOUR,
            steady,
            seen(EndpointStatus::InService, 1, UNTAGGED),
        );
        assert_eq!(
            scale(&decide(&cfg, &morning, &NotCounted)[0]),
            Some((1, 3)),
            "raising is always safe"
        );
    }

    /// The read after a lowering: which records name the region where
    /// the one it was decided on did not (`names_since`).
    #[test]
    fn a_lowering_is_put_back_only_when_the_record_since_names_the_region() {
        let decided = record("us-east-1", Phase::Steady, Mode::Auto);
        let moved = |mut r: ControlRecord| {
            r.version = decided.version + 1;
            r.epoch += 1;
            r
        };
        // The same record: the lowering stands.
        assert_eq!(names_since("us-west-2", &decided, &decided), None);
        // Claimed for us-west-2 (the target), or switched to it.
        let claimed = moved(record("us-east-1", Phase::FailingOver, Mode::Auto));
        assert!(
            names_since("us-west-2", &decided, &claimed)
                .is_some_and(|w| w.starts_with("a failover to us-west-2 was claimed (epoch 4)"))
        );
        let switched = moved(record("us-west-2", Phase::Steady, Mode::Auto));
        assert!(
            names_since("us-west-2", &decided, &switched)
                .is_some_and(|w| w.starts_with("us-west-2 became the active region"))
        );
        // Another region's business: us-east-1 lowered (to its need) while
        // a failover claims us-west-2, or the fleet paused.
        assert_eq!(names_since("us-east-1", &decided, &claimed), None);
        let paused = moved(record("us-east-1", Phase::Steady, Mode::Paused));
        assert_eq!(names_since("us-west-2", &decided, &paused), None);
        // A proposal naming it, live; not one decided already.
        let mut proposed = moved(decided.clone());
        proposed.proposal = Some(crate::core::control::Proposal {
            id: "p1".into(),
            epoch: 4,
            from: "us-east-1".into(),
            target: "us-west-2".into(),
            proposer: "us-west-2".into(),
            proposed_at: 0,
            reason: "test".into(),
            state: crate::core::control::ProposalState::Proposed,
            decided_by: None,
            decided_at: None,
            decision: None,
        });
        assert!(names_since("us-west-2", &decided, &proposed).is_some());
        let mut rejected = proposed.clone();
        if let Some(p) = rejected.proposal.as_mut() {
            p.state = crate::core::control::ProposalState::Rejected;
        }
        assert_eq!(names_since("us-west-2", &decided, &rejected), None);
        // Already the target when decided (a lowering the gate would have
        // refused): not a race this read is for.
        assert_eq!(
            names_since("us-west-2", &claimed, &moved(claimed.clone())),
            None
        );
    }

    #[test]
    fn nothing_moves_during_a_failover_a_pause_an_update_or_a_hold() {
        let cfg = config("");
        let at19 = MONDAY + 19 * HOUR;
        let quiet = |o: Observation| {
            let p = decide(&cfg, &o, &NotCounted).remove(0);
            assert_eq!(p.action, CostAction::None, "{p}");
            p.why
        };
        let busy = seen(EndpointStatus::InService, 3, UNTAGGED);
        let why = quiet(obs(
            "us-west-2",
            at19,
            record("us-east-1", Phase::FailingOver, Mode::Auto),
            busy.clone(),
        ));
        assert!(why.contains("a failover is in flight"), "{why}");
        let why = quiet(obs(
            "us-west-2",
            at19,
            record("us-east-1", Phase::Steady, Mode::Paused),
            busy.clone(),
        ));
        assert!(why.contains("paused"), "{why}");
        let why = quiet(obs(
            "us-west-2",
            at19,
            record("us-east-1", Phase::Steady, Mode::Auto),
            seen(EndpointStatus::Updating, 3, UNTAGGED),
        ));
        assert!(why.starts_with("Updating"), "{why}");
        let mut held = obs(
            "us-west-2",
            at19,
            record("us-east-1", Phase::Steady, Mode::Auto),
            busy.clone(),
        );
        held.hold = Some("no quorum".into());
        assert_eq!(quiet(held), "holding back: no quorum");
        let mut blind = obs(
            "us-west-2",
            at19,
            record("us-east-1", Phase::Steady, Mode::Auto),
            busy,
        );
        blind.record = Err("timeout".into());
        assert!(quiet(blind).contains("not acting blind"));
    }

    #[test]
    fn a_protected_or_unread_endpoint_is_raised_but_never_lowered() {
        let cfg = config("");
        let steady = record("us-east-1", Phase::Steady, Mode::Auto);
        // Counted all day, no traffic: only the tags hold it.
        let quiet = counted(0, None);
        for tags in [Some(&[("ProtectedFromAutoStop", "true")][..]), None] {
            let p = decide(
                &cfg,
                &obs(
                    "us-west-2",
                    MONDAY + 19 * HOUR,
                    steady.clone(),
                    seen(EndpointStatus::InService, 3, tags),
                ),
                &quiet,
            )
            .remove(0);
            assert_eq!(p.action, CostAction::None, "{p}");
            assert!(p.why.contains("never lowers it"), "{p}");
            let p = decide(
                &cfg,
                &obs(
                    "us-west-2",
                    MONDAY + 10 * HOUR,
                    steady.clone(),
                    seen(EndpointStatus::InService, 1, tags),
                ),
                &NotCounted,
            )
            .remove(0);
            assert_eq!(scale(&p), Some((1, 3)), "{p}");
        }
    }

    #[test]
    fn idle_reduces_in_production_and_stops_tier3_outside_it() {
        let idle = Fake {
            invocations: Some(Counted {
                since_ms: 0,
                invocations: 0,
            }),
            need: None,
        };
        let at10 = MONDAY + 10 * HOUR;
        let steady = record("us-east-1", Phase::Steady, Mode::Auto);
        let cfg = config("[cost.idle]\nenabled = true");
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                at10,
                steady.clone(),
                seen(EndpointStatus::InService, 5, UNTAGGED),
            ),
            &idle,
        )
        .remove(0);
        assert_eq!(
            scale(&p),
            Some((5, 3)),
            "to the schedule's minimum now: {p}"
        );
        assert!(p.why.contains("production reduces, never stops"), "{p}");
        // No counts at all: never idle, whatever the window.
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                MONDAY + 19 * HOUR,
                steady.clone(),
                seen(EndpointStatus::InService, 5, UNTAGGED),
            ),
            &NotCounted,
        )
        .remove(0);
        assert!(
            p.why
                .contains("not every region's router has published counts yet"),
            "{p}"
        );
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(
            p.why.contains("may be serving"),
            "nor lowered by the schedule: {p}"
        );

        let cfg = config(
            "environment = \"staging\"\ndefault_tier = \"tier3\"\n[cost.idle]\nenabled = true\nstop_outside_production = true",
        );
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                at10,
                steady.clone(),
                seen(EndpointStatus::InService, 5, UNTAGGED),
            ),
            &idle,
        )
        .remove(0);
        assert_eq!(
            p.action,
            CostAction::Stop {
                config: "prov-config".into()
            },
            "{p}"
        );
        let p = decide(
            &cfg,
            &obs(
                "us-west-2",
                at10,
                steady,
                seen(
                    EndpointStatus::InService,
                    5,
                    Some(&[("ProtectedFromAutoStop", "true")]),
                ),
            ),
            &idle,
        )
        .remove(0);
        assert_ne!(
            p.action,
            CostAction::Stop {
                config: "prov-config".into()
            },
            "{p}"
        );
        assert!(scale(&p).is_none_or(|(from, to)| to >= from), "{p}");
        let p = decide(
            &cfg,
            &obs(
                "us-east-1",
                at10,
                record("us-east-1", Phase::Steady, Mode::Auto),
                seen(EndpointStatus::InService, 5, UNTAGGED),
            ),
            &idle,
        )
        .remove(0);
        assert_eq!(
            p.action,
            CostAction::None,
            "the active region is never idle-stopped: {p}"
        );
    }

    fn tier_config(t: usize) -> &'static Config {
        static CFGS: std::sync::OnceLock<Vec<Config>> = std::sync::OnceLock::new();
        &CFGS.get_or_init(|| {
            ["tier1", "tier2", "tier3"]
                .iter()
                .map(|t| {
                    config(&format!(
                        "environment = \"staging\"\ndefault_tier = \"{t}\"\n[cost.idle]\nenabled = true\nstop_outside_production = true"
                    ))
                })
                .collect()
        })[t]
    }

    proptest! {
        /// Whatever the inputs, no action: touches a region while a
        /// failover is in flight, the fleet is paused, the daemon holds
        /// back or the endpoint is updating; lowers the active below its
        /// measured need or without one; lowers or stops a protected (or
        /// unread) endpoint; stops anything but an idle tier3 standby.
        #[test]
        fn no_action_breaks_a_rule_next_to_failover(
            t in 0usize..3,
            here_active: bool, in_flight: bool, paused: bool, hold: bool, updating: bool,
            tags in 0u8..3, instances in 1u32..8,
            hours in 0u64..(7 * 24),
            counted in prop::option::of((0u64..3, 0u64..2 * 24 * HOUR)),
            need in prop::option::of(1u32..6),
            proposed_here: bool,
            switched_ago in prop::option::of(0u64..3 * HOUR),
        ) {
            let cfg = tier_config(t);
            let region = "us-west-2";
            let active = if here_active { region } else { "us-east-1" };
            let mut rec = record(
                active,
                if in_flight { Phase::FailingOver } else { Phase::Steady },
                if paused { Mode::Paused } else { Mode::Auto },
            );
            let now = MONDAY + hours * HOUR;
            rec.switched_at = switched_ago.map(|a| now.saturating_sub(a));
            if proposed_here && !here_active {
                rec.proposal = Some(crate::core::control::Proposal {
                    id: "p".into(),
                    epoch: rec.epoch + 1,
                    from: active.into(),
                    target: region.into(),
                    proposer: region.into(),
                    proposed_at: now,
                    reason: "test".into(),
                    state: crate::core::control::ProposalState::Proposed,
                    decided_by: None,
                    decided_at: None,
                    decision: None,
                });
            }
            let tags: Option<&[(&str, &str)]> = match tags {
                0 => None,
                1 => Some(&[("ProtectedFromAutoStop", "true")]),
                _ => UNTAGGED,
            };
            let status = if updating { EndpointStatus::Updating } else { EndpointStatus::InService };
            let mut o = obs(region, now, rec, seen(status, instances, tags));
            if hold {
                o.hold = Some("no quorum".into());
            }
            let counts = Fake {
                invocations: counted.map(|(n, age)| Counted { since_ms: now.saturating_sub(age), invocations: n }),
                need,
            };
            for p in decide(cfg, &o, &counts) {
                if p.action == CostAction::None {
                    continue;
                }
                prop_assert!(!in_flight && !paused && !hold && !updating, "{}", p);
                prop_assert_eq!(p.kind, EndpointKind::Provisioned);
                match &p.action {
                    CostAction::Stop { .. } => {
                        prop_assert!(!here_active && tags == UNTAGGED && t == 2, "{}", p);
                    }
                    CostAction::Scale { changes } => {
                        for c in changes {
                            prop_assert_ne!(c.from, c.to);
                            prop_assert!(c.to >= 1);
                            if c.to < c.from {
                                prop_assert!(tags == UNTAGGED, "lowered a protected endpoint: {}", p);
                                if here_active {
                                    prop_assert!(need.is_some_and(|n| c.to >= n), "lowered the active blind or below its need: {}", p);
                                    prop_assert!(switched_ago.is_none_or(|a| a >= HOUR), "lowered a new active: {}", p);
                                } else {
                                    prop_assert!(!proposed_here, "lowered a proposal's target: {}", p);
                                    prop_assert!(
                                        counted.is_some_and(|(n, age)| n == 0 && age >= tier::SERVING_WINDOW_MS),
                                        "lowered a standby that serves, or without counts: {}", p
                                    );
                                }
                            }
                        }
                    }
                    CostAction::None => unreachable!(),
                }
            }
        }
    }
}
