//! The prepare step: before traffic moves to this region, prove it can
//! serve.
//!
//! 1. Every configured endpoint must exist and be serving
//!    (`DescribeEndpoint`: InService, or Updating/SystemUpdating, which keep
//!    serving). A missing or failed endpoint fails the step, and with it the
//!    failover: traffic must not move to a region that cannot serve a path
//!    it claims. If the control plane itself cannot be asked, the warm-up
//!    decides (it is the stronger proof for real-time endpoints).
//! 2. Every real-time endpoint gets the configured warm-up body, once per
//!    model the router serves. Any model-level answer counts as serving: a
//!    real container given `{"warmup": true}` often answers `ModelError` or a
//!    validation error of its own, and that still proves the endpoint is up.
//!    Only "not ready" answers (cold start, unavailable, throttled, no
//!    connection) are retried, with backoff, within `timings.prepare_budget`
//!    (and never past the token's expiry); a refusal (endpoint missing,
//!    access denied) fails at once.
//!
//! Between the two, the capacity step (DR tiers, docs/cost-and-tiers.md):
//! this region's provisioned variants are scaled up to the active region's
//! *current* instance counts (`core::tier::prepare_plan`, never down) with
//! `UpdateEndpointWeightsAndCapacities`, and the step waits until the
//! endpoint is `InService` with those counts (`core::tier::prepare_progress`)
//! within `cost.prepare_budget`. A `tier2` standby idles at its minimum, so
//! this is its main work; a `tier1` standby already holds the active's need
//! and the plan is empty. When the active's endpoint cannot be read (its
//! region is down: the usual reason to fail over), the endpoint's schedule
//! says what it should hold now; without a schedule nothing is scaled and
//! the step says so. Past the budget:
//!
//! - the old region still serves (`old_region_healthy`, not ungraceful): the
//!   step fails and the failover aborts; the old region keeps serving and
//!   the scale-up it asked for carries on, so a retry finds more capacity;
//! - the old region is down: the step goes on and the switch happens onto
//!   what the target holds (journalled): fewer instances serve, a dead region
//!   serves nothing.
//!
//! What is scaled follows what each model runs on (config/serving.rs):
//! the region's shared provisioned endpoint as above; each model's own
//! provisioned endpoint the same way, matched with the model's own
//! endpoint in the active region and raised to the need measured over the
//! model's counterparts (`Config::counterparts`); and each inference
//! component's copies (`UpdateInferenceComponentRuntimeConfig`), matched
//! with the model's component in the active region and raised to the need
//! measured over the component's counterparts (a copy counted as an
//! instance is: `cost.instance_invocations_per_minute`), never lowered.
//! A model's own endpoint that hosts components is not scaled itself: its
//! components' copies are (SageMaker places them; managed instance
//! scaling, when the endpoint has it, adds the instances). The region's
//! shared endpoint is scaled as before even when it hosts components (its
//! need counts their traffic: `cost::provisioned_everywhere`). Everything is asked for at once
//! and waited for within the one budget; a refusal or a shortfall of any
//! of them is decided, journalled and reported as the shared endpoint's.
//!
//! Instance pools (`core::pools`): a variant on pools reaches the asked
//! count even when SageMaker fell back to a smaller type, so once it
//! reports the count, its capacity in units (`cost.capacity_units`) is
//! compared with the units it must hold: the fleet's measured need, read
//! as units, or the active's same variant's units when that runs on pools
//! too, whichever is higher. Short, more instances are asked for to cover
//! the shortfall at the units of the smallest type present
//! (`core::pools::fallback_top_up`), journalled as `prepare_pool_fallback`
//! ("AllTraffic fell back to ml.g5.xlarge: 5 units of 8; ask 4 -> 7
//! instances") and shown under the endpoint's `pools` in the report;
//! never lower, at most [`POOL_TOP_UPS`] rounds, within the same budget,
//! and refused or short as any other ask. The instance count asked first
//! is unchanged (the need as a count, each instance taken as one unit):
//! turning units into a count of the first-priority type needs the
//! endpoint config's priorities, which this step does not read.
//!
//! The budgets fit in the workflow's prepare timeout and under
//! `timings.stuck_failover`; check-config enforces both (config/cost.rs).

use std::time::Duration;

use serde_json::json;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::core::backoff::Backoff;
use crate::core::control::Phase;
use crate::core::mono::Mono;
use crate::core::pools::{self, CapacityUnits, PoolCount, TopUp};
use crate::core::tier::{self, PrepareProblem, PrepareProgress, ScaleUp, Tier, VariantCapacity};
use crate::ports::endpoints::{
    ComponentState, ComponentStatus, EndpointState, EndpointStatus, WarmUp,
};
use crate::ports::{ErrorKind, PortError, Ports};

use super::journal::journal;

/// The token's expiry, held on the monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Expiry(Mono);

impl Expiry {
    /// From a wall-clock expiry (unix ms), read against the clocks now.
    fn of(ports: &Ports, wall: u64) -> Self {
        Self(Mono::from_wall(
            wall,
            ports.clock.mono(),
            ports.clock.now_ms(),
        ))
    }

    /// Milliseconds left.
    fn left(self, ports: &Ports) -> u64 {
        self.0.since(ports.clock.mono())
    }
}

/// How often the capacity step reads the target endpoint while it scales.
const SCALE_POLL: Duration = Duration::from_secs(5);
/// Room left after the capacity step for the callback, on the token's clock.
const CALLBACK_ROOM_MS: u64 = 10_000;
/// At most this many rounds of more instances for a variant whose pools
/// fell back (`core::pools::fallback_top_up`): each round waits for the
/// asked count, so a fallback onto a third, smaller type is seen; the
/// budget bounds them too.
const POOL_TOP_UPS: usize = 3;

/// Why this region cannot take over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    #[error("endpoint {endpoint} does not exist in {region}")]
    Missing { region: String, endpoint: String },
    #[error("endpoint {endpoint} in {region} is {status}, not serving")]
    NotServing {
        region: String,
        endpoint: String,
        status: String,
    },
    #[error("endpoint {endpoint} in {region} refused the warm-up: {detail}")]
    Refused {
        region: String,
        endpoint: String,
        detail: String,
    },
    #[error(
        "endpoint {endpoint} in {region} was not ready within the prepare budget ({attempts} attempts): {detail}"
    )]
    NotReady {
        region: String,
        endpoint: String,
        attempts: u32,
        detail: String,
    },
    #[error("endpoint {endpoint} in {region} cannot take the active's capacity: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    MissingVariants {
        region: String,
        endpoint: String,
        problems: Vec<PrepareProblem>,
    },
    #[error(
        "endpoint {endpoint} in {region} refused the scale-up: {detail}; {active} still serves, so the failover stops here (variants short: {})",
        short.join(", ")
    )]
    ScaleRefused {
        region: String,
        endpoint: String,
        active: String,
        detail: String,
        short: Vec<String>,
    },
    #[error(
        "endpoint {endpoint} in {region} did not reach {active}'s capacity within {budget_s}s (cost.prepare_budget; variants short: {}); {active} still serves, so the failover stops here and the scale-up carries on",
        short.join(", ")
    )]
    CapacityNotReady {
        region: String,
        endpoint: String,
        active: String,
        short: Vec<String>,
        budget_s: u64,
    },
    #[error("inference component {component} (on {endpoint}) does not exist in {region}")]
    MissingComponent {
        region: String,
        endpoint: String,
        component: String,
    },
    #[error(
        "inference component {component} on {endpoint} in {region} refused more copies: {detail}; {active} still serves, so the failover stops here"
    )]
    ComponentRefused {
        region: String,
        endpoint: String,
        component: String,
        active: String,
        detail: String,
    },
    #[error(
        "inference component {component} on {endpoint} in {region} did not reach {copies} copies within {budget_s}s (cost.prepare_budget); {active} still serves, so the failover stops here and the copies carry on"
    )]
    ComponentNotReady {
        region: String,
        endpoint: String,
        component: String,
        active: String,
        copies: u32,
        budget_s: u64,
    },
}

/// The fleet's measured need over a set of (region, count label) pairs, as
/// the routers measured it (`state::fleet_need`): instances for an
/// endpoint, copies for an inference component. `None`: not measured.
pub type Need<'a> = &'a (dyn Fn(&[(&str, &str)]) -> Option<u32> + Sync);

/// Run the prepare step for this daemon's region; `deadline` is the
/// token's expiry (wall clock, unix ms); `need` what the fleet's traffic
/// over given (region, count label) pairs needs, as the routers measured
/// it (`state::fleet_need`).
pub async fn prepare(
    cfg: &Config,
    ports: &Ports,
    deadline: u64,
    need: Need<'_>,
) -> Result<serde_json::Value, PrepareError> {
    // The expiry on the monotonic clock from here on: a step of the wall
    // clock while the step runs neither cuts nor stretches its budgets.
    let deadline = Expiry::of(ports, deadline);
    let me = cfg.local();
    let region = me.name.clone();
    let mut statuses = serde_json::Map::new();
    // The region's shared endpoints and every model's own (config/serving.rs).
    let endpoints: Vec<String> = cfg
        .endpoints_in(&region)
        .into_iter()
        .map(|e| e.name)
        .collect();
    for ep in &endpoints {
        match ports.endpoints.status(&region, ep).await {
            Ok(Some(st)) if st.serves() => {
                statuses.insert(ep.clone(), st.as_str().into());
            }
            Ok(Some(st)) => {
                return Err(PrepareError::NotServing {
                    region,
                    endpoint: ep.clone(),
                    status: st.as_str().to_string(),
                });
            }
            Ok(None) => {
                return Err(PrepareError::Missing {
                    region,
                    endpoint: ep.clone(),
                });
            }
            Err(e) => {
                warn!(endpoint = %ep, error = %crate::error_chain(&e), "cannot read the endpoint's status; the warm-up decides");
                statuses.insert(ep.clone(), format!("unknown: {}", e.kind).into());
            }
        }
    }

    let capacity = scale_up(cfg, ports, deadline, need).await?;

    // The budget, on the monotonic clock; and never past the token's expiry
    // (minus room for the callback), on the wall clock.
    let started = ports.clock.monotonic();
    let budget = cfg.timings.prepare_budget;
    let wall_left = deadline.left(ports).saturating_sub(5_000);
    let stop_at = started + budget.min(Duration::from_millis(wall_left));

    let body = cfg.health.warmup_payload.as_bytes();
    let mut warmed = Vec::new();
    for (ep, target) in &warm_targets(cfg, &region) {
        {
            let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                match ports
                    .endpoints
                    .warm_up_target(&region, ep, target.as_ref(), body)
                    .await
                {
                    WarmUp::Answered { detail } => {
                        warmed.push(json!({"endpoint": ep, "target": target, "attempts": attempts, "answer": detail}));
                        break;
                    }
                    WarmUp::Refused { detail } => {
                        return Err(PrepareError::Refused {
                            region,
                            endpoint: ep.clone(),
                            detail,
                        });
                    }
                    WarmUp::NotReady { kind, detail } => {
                        let delay = backoff.next_delay(0.5);
                        if ports.clock.monotonic() + delay >= stop_at {
                            return Err(PrepareError::NotReady {
                                region,
                                endpoint: ep.clone(),
                                attempts,
                                detail,
                            });
                        }
                        debug!(endpoint = %ep, %kind, %detail, "warm-up: not ready yet; retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }
    Ok(json!({
        "region": region,
        "step": "prepare",
        "endpoints": statuses,
        "capacity": capacity.shared,
        "model_endpoints": capacity.endpoints,
        "components": capacity.components,
        "warmed": warmed,
    }))
}

/// What the warm-up calls in `region`: every model's real-time target
/// there (config/serving.rs), each (endpoint, header) once: a TargetModel,
/// an inference component or a variant once per endpoint; an endpoint
/// with no header once. With no models, the region's shared real-time
/// endpoints.
fn warm_targets(cfg: &Config, region: &str) -> Vec<(String, Option<crate::config::Via>)> {
    let mut out: Vec<(String, Option<crate::config::Via>)> = Vec::new();
    let mut add = |ep: &str, via: Option<&crate::config::Via>| {
        if !out.iter().any(|(e, v)| e == ep && v.as_ref() == via) {
            out.push((ep.to_string(), via.cloned()));
        }
    };
    for m in &cfg.models {
        let Some(s) = m.in_named(region) else {
            continue;
        };
        for t in [&s.serverless, &s.provisioned].into_iter().flatten() {
            add(&t.endpoint, t.via.as_ref());
        }
    }
    if cfg.models.is_empty()
        && let Some(r) = cfg.region(region)
    {
        for ep in r.sagemaker.realtime() {
            add(ep, None);
        }
    }
    out
}

/// What the capacity step scales in the target region.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scaled {
    /// A provisioned endpoint's variants, in instances: the region's
    /// shared one (`shared`), or a model's own.
    Endpoint { endpoint: String, shared: bool },
    /// An inference component's copies (one unit, [`COPIES`]).
    Component { endpoint: String, component: String },
}

/// The unit a component's plan counts in (where an endpoint's names a
/// variant): "scale copies 1 -> 3".
const COPIES: &str = "copies";

impl Scaled {
    /// How the journal and the errors name it: `endpoint`, or
    /// `endpoint/component` (the router counts' label).
    fn label(&self) -> String {
        match self {
            Scaled::Endpoint { endpoint, .. } => endpoint.clone(),
            Scaled::Component {
                endpoint,
                component,
            } => format!("{endpoint}/{component}"),
        }
    }

    /// `rest` (a JSON object) with the endpoint (and component) named.
    fn report(&self, rest: serde_json::Value) -> serde_json::Value {
        let mut out = rest;
        if let Some(o) = out.as_object_mut() {
            match self {
                Scaled::Endpoint { endpoint, .. } => {
                    o.insert("endpoint".into(), endpoint.as_str().into());
                }
                Scaled::Component {
                    endpoint,
                    component,
                } => {
                    o.insert("endpoint".into(), endpoint.as_str().into());
                    o.insert("component".into(), component.as_str().into());
                }
            }
        }
        out
    }

    /// The error for "it does not exist".
    fn missing(&self, region: &str) -> PrepareError {
        match self {
            Scaled::Endpoint { endpoint, .. } => PrepareError::Missing {
                region: region.to_string(),
                endpoint: endpoint.clone(),
            },
            Scaled::Component {
                endpoint,
                component,
            } => PrepareError::MissingComponent {
                region: region.to_string(),
                endpoint: endpoint.clone(),
                component: component.clone(),
            },
        }
    }

    /// Whether `t`, a model's provisioned target, is this.
    fn is(&self, t: &crate::config::Serving) -> bool {
        match self {
            Scaled::Endpoint { endpoint, .. } => t.endpoint == *endpoint,
            Scaled::Component {
                endpoint,
                component,
            } => t.endpoint == *endpoint && t.component() == Some(component.as_str()),
        }
    }
}

/// What the capacity step scales in `region` (config/serving.rs): the
/// region's shared provisioned endpoint (as before per-model endpoints,
/// whatever it hosts), each model's own provisioned endpoint that hosts no
/// inference component (on one that does, the components' copies are what
/// scale), and every inference component.
fn scaled_in(cfg: &Config, region: &str) -> Vec<Scaled> {
    let shared = cfg
        .region(region)
        .and_then(|r| r.sagemaker.provisioned.clone());
    let mut out = Vec::new();
    if let Some(e) = &shared {
        out.push(Scaled::Endpoint {
            endpoint: e.clone(),
            shared: true,
        });
    }
    let used = cfg.endpoints_in(region);
    for e in &used {
        if e.path == crate::core::routing::Path::Provisioned
            && Some(&e.name) != shared.as_ref()
            && e.components.is_empty()
        {
            out.push(Scaled::Endpoint {
                endpoint: e.name.clone(),
                shared: false,
            });
        }
    }
    for e in &used {
        for c in &e.components {
            out.push(Scaled::Component {
                endpoint: e.name.clone(),
                component: c.clone(),
            });
        }
    }
    out
}

/// The (region, count label) pairs whose traffic `s` in `region` must
/// carry: the shared endpoint's are every region's shared endpoint's
/// (`cost::provisioned_everywhere`, as the cost task reads them); a model's
/// own endpoint's, its counterparts (`Config::counterparts`); a
/// component's, its model's provisioned target in every region
/// (`Config::component_counterparts`).
fn need_pairs(cfg: &Config, region: &str, s: &Scaled) -> Vec<(String, String)> {
    match s {
        Scaled::Endpoint { shared: true, .. } => super::cost::provisioned_everywhere(cfg),
        Scaled::Endpoint { endpoint, .. } => cfg.counterparts(region, endpoint),
        Scaled::Component {
            endpoint,
            component,
        } => cfg.component_counterparts(region, endpoint, component),
    }
}

/// What carries `s`'s traffic in the active region now, to match: the
/// active's shared provisioned endpoint for the shared one; for a model's
/// own endpoint, the first of its models' own endpoint there (not the
/// active's shared endpoint, which carries every model, nor an endpoint
/// where the model is a component); for a component, its model's
/// component there. `None`: nothing comparable (the need alone decides).
fn counterpart(cfg: &Config, region: &str, s: &Scaled, active: &str) -> Option<Scaled> {
    if let Scaled::Endpoint { shared: true, .. } = s {
        let e = cfg.region(active)?.sagemaker.provisioned.clone()?;
        return Some(Scaled::Endpoint {
            endpoint: e,
            shared: true,
        });
    }
    let active_shared = cfg
        .region(active)
        .and_then(|r| r.sagemaker.provisioned.as_deref());
    cfg.models.iter().find_map(|m| {
        let here = m.in_named(region)?.provisioned.as_ref()?;
        if !s.is(here) {
            return None;
        }
        let there = m.in_named(active)?.provisioned.as_ref()?;
        match (s, there.component()) {
            (Scaled::Component { .. }, Some(c)) => Some(Scaled::Component {
                endpoint: there.endpoint.clone(),
                component: c.to_string(),
            }),
            (Scaled::Endpoint { .. }, None) if Some(there.endpoint.as_str()) != active_shared => {
                Some(Scaled::Endpoint {
                    endpoint: there.endpoint.clone(),
                    shared: false,
                })
            }
            _ => None,
        }
    })
}

/// The tier `s` is reported under: the fleet's for the shared endpoint,
/// else the strictest of the models on it.
fn tier_of(cfg: &Config, region: &str, s: &Scaled) -> Tier {
    let fleet = cfg.cost.fleet_tier(&cfg.models);
    if let Scaled::Endpoint { shared: true, .. } = s {
        return fleet;
    }
    tier::strictest(
        cfg.models
            .iter()
            .filter(|m| {
                m.in_named(region)
                    .and_then(|r| r.provisioned.as_ref())
                    .is_some_and(|t| s.is(t))
            })
            .map(|m| cfg.cost.tier_of(&m.name)),
    )
    .unwrap_or(fleet)
}

/// One read of what the capacity step scales, as `core::tier` takes it.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    /// `InService`: serving and not mid-update (SageMaker takes an update
    /// only then).
    in_service: bool,
    /// Each provisioned variant's instances now; a component's copies now.
    current: Vec<VariantCapacity>,
    /// What was last asked for, per unit (the current count when nothing
    /// was).
    desired: Vec<VariantCapacity>,
    /// `FailureReason` (SageMaker keeps the last one).
    failure_reason: Option<String>,
    /// Each variant on instance pools, with its pools' counts (none for a
    /// component).
    pools: Vec<(String, Vec<PoolCount>)>,
}

impl Reading {
    fn of_endpoint(st: &EndpointState) -> Self {
        Self {
            in_service: st.status == EndpointStatus::InService,
            current: st.provisioned(),
            desired: st
                .variants
                .iter()
                .filter(|v| !v.serverless)
                .map(|v| VariantCapacity {
                    variant: v.variant.clone(),
                    instances: v.asked(),
                })
                .collect(),
            failure_reason: st.failure_reason.clone(),
            pools: st.pooled(),
        }
    }

    fn of_component(c: &ComponentState) -> Self {
        let current = c.current_copies.unwrap_or(0);
        let unit = |instances| {
            vec![VariantCapacity {
                variant: COPIES.into(),
                instances,
            }]
        };
        Self {
            in_service: c.status == ComponentStatus::InService,
            current: unit(current),
            desired: unit(c.desired_copies.unwrap_or(current)),
            failure_reason: c.failure_reason.clone(),
            pools: Vec::new(),
        }
    }
}

/// Read `s` in `region` (`None`: it does not exist).
async fn read(ports: &Ports, region: &str, s: &Scaled) -> Result<Option<Reading>, PortError> {
    Ok(match s {
        Scaled::Endpoint { endpoint, .. } => ports
            .endpoints
            .describe(region, endpoint)
            .await?
            .map(|st| Reading::of_endpoint(&st)),
        Scaled::Component { component, .. } => ports
            .endpoints
            .describe_component(region, component)
            .await?
            .map(|c| Reading::of_component(&c)),
    })
}

/// What the capacity step did, for the step's output.
struct Capacity {
    /// The region's shared provisioned endpoint (`capacity`, as before
    /// per-model endpoints).
    shared: serde_json::Value,
    /// Each model's own provisioned endpoint (`model_endpoints`).
    endpoints: Vec<serde_json::Value>,
    /// Each inference component (`components`).
    components: Vec<serde_json::Value>,
}

impl Capacity {
    /// Sort each unit's report into its place.
    fn of(done: impl IntoIterator<Item = (Scaled, serde_json::Value)>) -> Self {
        let mut out = Capacity {
            shared: json!({"scaled": false, "why": "no provisioned endpoint"}),
            endpoints: Vec::new(),
            components: Vec::new(),
        };
        for (s, v) in done {
            match s {
                Scaled::Endpoint { shared: true, .. } => out.shared = v,
                Scaled::Endpoint { .. } => out.endpoints.push(v),
                Scaled::Component { .. } => out.components.push(v),
            }
        }
        out
    }
}

/// What the whole capacity step shares.
struct Step<'a> {
    cfg: &'a Config,
    ports: &'a Ports,
    deadline: Expiry,
    need: Need<'a>,
    region: &'a str,
    active: &'a str,
    epoch: u64,
    /// The old region is down (or the operator said not to wait for it).
    old_down: bool,
}

/// The capacity step (see the module doc): every endpoint and component
/// [`scaled_in`] this region at once, each within the same budget.
async fn scale_up(
    cfg: &Config,
    ports: &Ports,
    deadline: Expiry,
    need: Need<'_>,
) -> Result<Capacity, PrepareError> {
    let region = cfg.local().name.clone();
    let scaled = scaled_in(cfg, &region);
    let skip = |why: String| {
        for s in &scaled {
            warn!(endpoint = %s.label(), %why, "capacity step skipped; the warm-up decides");
        }
        Ok(Capacity::of(scaled.iter().map(|s| {
            (
                s.clone(),
                s.report(json!({"scaled": false, "why": why.clone()})),
            )
        })))
    };
    if scaled.is_empty() {
        return Ok(Capacity::of([]));
    }
    let record = match ports.store.read_record().await {
        Ok(Some(r)) => r,
        Ok(None) => return skip("no control record".into()),
        Err(e) => {
            return skip(format!(
                "the control record cannot be read ({})",
                crate::error_chain(&e)
            ));
        }
    };
    if record.active == region {
        return skip("this region is already active".into());
    }
    let step = Step {
        cfg,
        ports,
        deadline,
        need,
        region: &region,
        active: &record.active,
        epoch: record.epoch,
        // The old region is gone, or the operator said not to wait for it:
        // switching onto fewer instances beats staying on a dead region.
        old_down: record.phase == Phase::FailingOver
            && (record.ungraceful || !record.old_region_healthy),
    };
    let done =
        futures_util::future::try_join_all(scaled.iter().map(|s| scale_one(&step, s))).await?;
    Ok(Capacity::of(scaled.into_iter().zip(done)))
}

/// Scale `s` to what the active holds and the fleet needs, and wait for
/// it within the budget (see the module doc).
async fn scale_one(step: &Step<'_>, s: &Scaled) -> Result<serde_json::Value, PrepareError> {
    let Step {
        cfg,
        ports,
        region,
        active,
        old_down,
        ..
    } = *step;
    let label = s.label();
    let skip = |why: String| {
        warn!(endpoint = %label, %why, "capacity step skipped; the warm-up decides");
        Ok(s.report(json!({"scaled": false, "why": why})))
    };
    let tier = tier_of(cfg, region, s);
    let target = match read(ports, region, s).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err(s.missing(region)),
        Err(e) => {
            return skip(format!(
                "{label} cannot be read ({})",
                crate::error_chain(&e)
            ));
        }
    };
    // SageMaker keeps the last FailureReason: one already there before
    // this step asks for anything is an older update's, not ours.
    let earlier_failure = target.failure_reason.clone();

    let need = (step.need)(&super::cost::as_refs(&need_pairs(cfg, region, s)));
    let counterpart = counterpart(cfg, region, s, active);
    let (wanted, source, active_units) = match wanted_capacity(
        cfg,
        ports,
        active,
        s,
        counterpart.as_ref(),
        &target.current,
        need,
    )
    .await
    {
        Ok(w) => w,
        Err(why) => return skip(why),
    };
    let plan = tier::prepare_plan(&wanted, &target.current).map_err(|problems| {
        PrepareError::MissingVariants {
            region: region.to_string(),
            endpoint: label.clone(),
            problems,
        }
    })?;
    if plan.is_empty() && target.pools.is_empty() {
        return Ok(already_holds(s, &source, tier));
    }
    let units = &cfg.cost.capacity_units;
    let wanted_units = wanted_units(&target, need, &active_units);

    let ctx = Asking {
        ports,
        region,
        scaled: s,
        label: &label,
        source: &source,
        tier,
        epoch: step.epoch,
        active,
        old_down,
        plan: &plan,
        units,
        wanted_units: &wanted_units,
    };
    // Nothing to ask and no pool short of its units (or not in service
    // yet, so not judged): nothing to wait for either.
    if plan.is_empty() && top_ups(&ctx, &target).is_empty() {
        return Ok(already_holds(s, &source, tier));
    }
    scale_and_wait(
        &ctx,
        earlier_failure,
        capacity_budget(cfg, ports, step.deadline),
    )
    .await
}

/// Ask for `ctx.plan` and read the target until it holds it, AWS refuses,
/// or `budget` runs out (see the module doc). `earlier_failure`: the
/// target's FailureReason before anything was asked.
async fn scale_and_wait(
    ctx: &Asking<'_>,
    earlier_failure: Option<String>,
    budget: Duration,
) -> Result<serde_json::Value, PrepareError> {
    let Asking {
        ports,
        region,
        scaled: s,
        label,
        source,
        tier,
        old_down,
        ..
    } = *ctx;
    let budget_ms = budget.as_millis() as u64;
    let started = ports.clock.monotonic();
    let mut asked: Vec<String> = Vec::new();
    // Seen the target leave InService since the first ask: SageMaker took
    // the update, so a FailureReason after it is this update's.
    let mut updated_since_ask = false;
    // The plan grows when a variant's pools fell back (`top_ups`).
    let mut plan_now: Vec<ScaleUp> = ctx.plan.to_vec();
    let mut topped: Vec<(TopUp, String)> = Vec::new();
    let mut rounds = 0;
    loop {
        let ctx = &Asking {
            plan: &plan_now,
            ..*ctx
        };
        let plan = ctx.plan;
        let elapsed_ms = ports.clock.since(started).as_millis() as u64;
        let now = match read(ports, region, s).await {
            Ok(Some(st)) => Some(st),
            Ok(None) => return Err(s.missing(region)),
            Err(e) => {
                debug!(error = %crate::error_chain(&e), "capacity: cannot read the target; retrying");
                None
            }
        };
        let (in_service, current) = match &now {
            Some(st) => (st.in_service, st.current.clone()),
            None => (false, Vec::new()),
        };
        if !asked.is_empty()
            && let Some(st) = &now
        {
            updated_since_ask |= !st.in_service;
            // AWS said no (insufficient capacity): the target is back in
            // service with its old counts and a FailureReason. Decide now,
            // not at the end of the budget.
            if let Some(reason) =
                refused_capacity(st, earlier_failure.as_deref(), updated_since_ask)
            {
                let short = short_of(plan, &current);
                if !short.is_empty() {
                    return refuse(ctx, reason, short).await;
                }
            }
        }
        match tier::prepare_progress(plan, in_service, &current, 0, elapsed_ms, budget_ms) {
            PrepareProgress::Done => {
                let ups = match &now {
                    Some(st) if rounds < POOL_TOP_UPS => top_ups(ctx, st),
                    _ => Vec::new(),
                };
                if !ups.is_empty() {
                    rounds += 1;
                    let lines = journal_top_ups(ctx, &ups).await;
                    grow(&mut plan_now, &ups);
                    topped.extend(ups.into_iter().zip(lines));
                    continue;
                }
                if plan.is_empty() {
                    return Ok(already_holds(s, source, tier));
                }
                info!(endpoint = %label, %source, "capacity: scaled up to the active's");
                let mut out = json!({"scaled": true, "to_match": source, "plan": planned(plan), "tier": tier, "seconds": elapsed_ms / 1000});
                if !topped.is_empty() {
                    out["pools"] = topped
                        .iter()
                        .map(|(t, line)| json!({"variant": t.variant, "why": t.why(), "from": t.from, "to": t.to, "journal": line}))
                        .collect();
                }
                return Ok(s.report(out));
            }
            PrepareProgress::OverBudget { short } if old_down => {
                // The old region is gone: switching onto fewer instances
                // beats staying on a dead region; the scale-up carries on.
                journal_short(ctx, &short, budget).await;
                return Ok(s.report(
                    json!({"scaled": false, "short": short, "to_match": source, "plan": planned(plan), "tier": tier}),
                ));
            }
            PrepareProgress::OverBudget { short } => {
                return Err(not_ready(ctx, short, budget));
            }
            PrepareProgress::Waiting { remaining_ms, .. } => {
                match ask_for_missing(ctx, now.as_ref(), &mut asked).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    // AWS refused the call itself (ResourceLimitExceeded:
                    // the quota for the instance type; access denied).
                    Err(detail) => {
                        let short = short_of(plan, &current);
                        return refuse(ctx, detail, short).await;
                    }
                }
                tokio::time::sleep(SCALE_POLL.min(Duration::from_millis(remaining_ms.max(1))))
                    .await;
            }
        }
    }
}

/// The report of a target that already holds what it must.
fn already_holds(s: &Scaled, source: &str, tier: Tier) -> serde_json::Value {
    debug!(endpoint = %s.label(), %source, "capacity: the target already holds the active's capacity");
    s.report(json!({"scaled": false, "why": format!("already holds {source}"), "tier": tier}))
}

/// The units each of the target's variants on pools must hold: the
/// fleet's measured need (read as units, `core::pools`) or the active's
/// same variant's units when it runs on pools too, whichever is higher.
/// A variant with neither is left out (its instance count is the rule).
fn wanted_units(
    target: &Reading,
    need: Option<u32>,
    active_units: &[(String, f64)],
) -> Vec<(String, f64)> {
    target
        .pools
        .iter()
        .filter_map(|(variant, _)| {
            let active = active_units
                .iter()
                .find(|(v, _)| v == variant)
                .map(|(_, u)| *u);
            let need = need.map(f64::from);
            let units = match (need, active) {
                (Some(n), Some(a)) => n.max(a),
                (n, a) => n.or(a)?,
            };
            Some((variant.clone(), units))
        })
        .collect()
}

/// The variants whose pools fell back below their wanted units once
/// SageMaker reports the asked count (`core::pools::fallback_top_up`).
fn top_ups(ctx: &Asking<'_>, st: &Reading) -> Vec<TopUp> {
    top_ups_of(ctx.units, ctx.wanted_units, ctx.plan, st)
}

/// [`top_ups`] of `st` given the units table, the wanted units and the
/// plan asked.
fn top_ups_of(
    units: &CapacityUnits,
    wanted_units: &[(String, f64)],
    plan: &[ScaleUp],
    st: &Reading,
) -> Vec<TopUp> {
    if !st.in_service {
        return Vec::new();
    }
    st.pools
        .iter()
        .filter_map(|(variant, pools)| {
            let need = wanted_units.iter().find(|(v, _)| v == variant)?.1;
            let current = st.current.iter().find(|c| &c.variant == variant)?.instances;
            // What was asked: the plan's count, or a higher one SageMaker
            // is still working on (an earlier ask, autoscaling).
            let desired = st.desired.iter().find(|d| &d.variant == variant);
            let asked = plan
                .iter()
                .find(|p| &p.variant == variant)
                .map_or(current, |p| p.to)
                .max(desired.map_or(0, |d| d.instances));
            pools::fallback_top_up(units, variant, pools, asked, current, need)
        })
        .collect()
}

/// The plan with each top-up's count (never lower).
fn grow(plan: &mut Vec<ScaleUp>, ups: &[TopUp]) {
    for t in ups {
        match plan.iter_mut().find(|p| p.variant == t.variant) {
            Some(p) => p.to = p.to.max(t.to),
            None => plan.push(ScaleUp {
                variant: t.variant.clone(),
                from: t.from,
                to: t.to,
            }),
        }
    }
}

/// Journal why more instances are asked for (`prepare_pool_fallback`);
/// the lines, for the report.
async fn journal_top_ups(ctx: &Asking<'_>, ups: &[TopUp]) -> Vec<String> {
    let mut lines = Vec::new();
    for t in ups {
        let detail = format!(
            "{}/{}: {} {}; ask {} -> {} instances to cover the units (cost.capacity_units)",
            ctx.region,
            ctx.label,
            t.variant,
            t.why(),
            t.from,
            t.to,
        );
        warn!(%detail, "capacity: an instance pool fell back");
        journal(
            &*ctx.ports.store,
            ctx.ports.clock.now_ms(),
            ctx.region,
            "prepare_pool_fallback",
            Some(ctx.epoch),
            detail.clone(),
        )
        .await;
        lines.push(detail);
    }
    lines
}

/// The plan as the step's output shows it.
fn planned(plan: &[ScaleUp]) -> Vec<serde_json::Value> {
    plan.iter()
        .map(|p| json!({"variant": p.variant, "from": p.from, "to": p.to}))
        .collect()
}

/// The capacity step's budget on the monotonic clock: `cost.prepare_budget`,
/// never past the token's expiry (`deadline`) less the warm-up's
/// budget and the callback.
fn capacity_budget(cfg: &Config, ports: &Ports, deadline: Expiry) -> Duration {
    let wall_left = deadline
        .left(ports)
        .saturating_sub(cfg.timings.prepare_budget.as_millis() as u64 + CALLBACK_ROOM_MS);
    cfg.cost
        .prepare_budget
        .min(Duration::from_millis(wall_left))
}

/// What `s` must hold, per unit: the highest of what the active's
/// counterpart (`counterpart`: see [`counterpart`]) holds now and what the
/// fleet's traffic needs (`need`, the routers' measurement: a schedule
/// that lowered the active or the target at 18:00 does not lower what a
/// failover scales to). When the active's region cannot say, the need,
/// else the schedule's minimum for this endpoint now (a component has no
/// schedule). `Err` is why none is known (the capacity step is then
/// skipped for `s`).
async fn wanted_capacity(
    cfg: &Config,
    ports: &Ports,
    active: &str,
    s: &Scaled,
    counterpart: Option<&Scaled>,
    target_caps: &[VariantCapacity],
    need: Option<u32>,
) -> Result<(Vec<VariantCapacity>, String, Vec<(String, f64)>), String> {
    let each = |n: u32| -> Vec<VariantCapacity> {
        target_caps
            .iter()
            .map(|v| VariantCapacity {
                variant: v.variant.clone(),
                instances: n,
            })
            .collect()
    };
    let Some(a) = counterpart else {
        return match need {
            Some(n) => Ok((
                each(n),
                format!("the fleet's measured need ({n})"),
                Vec::new(),
            )),
            None => Err(match s {
                Scaled::Endpoint { shared: true, .. } => {
                    format!("{active} has no provisioned endpoint to match")
                }
                _ => format!(
                    "{active} has no counterpart of {} to match and the fleet's need is not measured",
                    s.label()
                ),
            }),
        };
    };
    let a_label = a.label();
    let why = match read(ports, active, a).await {
        Ok(Some(st)) => {
            // The active's variants on pools, in units: what the target
            // must match when its own pools fell back to a smaller type.
            let units = st
                .pools
                .iter()
                .map(|(v, p)| (v.clone(), cfg.cost.capacity_units.variant(p, None, 0)))
                .collect();
            let mut caps = st.current;
            let mut source = format!("{active}'s {a_label} now");
            if let Some(n) = need
                && caps.iter().any(|c| c.instances < n)
            {
                for c in &mut caps {
                    c.instances = c.instances.max(n);
                }
                source = format!("{source}, raised to the fleet's measured need ({n})");
            }
            return Ok((caps, source, units));
        }
        Ok(None) => format!("{a_label} does not exist in {active}"),
        Err(e) => format!(
            "{a_label} in {active} cannot be read ({})",
            crate::error_chain(&e)
        ),
    };
    let scheduled = match s {
        Scaled::Endpoint { endpoint, .. } => cfg
            .cost
            .schedule_for(endpoint)
            .map(|sch| sch.at(ports.clock.now_ms()).min),
        Scaled::Component { .. } => None,
    };
    let label = s.label();
    match (need, scheduled) {
        (Some(n), Some(min)) if min > n => Ok((
            each(min),
            format!(
                "the schedule's minimum now ({min}, above the fleet's measured need {n}), because {why}"
            ),
            Vec::new(),
        )),
        (Some(n), _) => Ok((
            each(n),
            format!("the fleet's measured need ({n}), because {why}"),
            Vec::new(),
        )),
        (None, Some(min)) => Ok((
            each(min),
            format!("the schedule's minimum now ({min}), because {why}"),
            Vec::new(),
        )),
        (None, None) => Err(format!(
            "{why}, the fleet's need is not measured, and {label} has no schedule to fall back on"
        )),
    }
}

/// Journal a switch with units `short` of what was wanted after `budget`.
async fn journal_short(ctx: &Asking<'_>, short: &[String], budget: Duration) {
    let detail = format!(
        "{}/{}: switching with {} of {} after {}s (cost.prepare_budget): {} is down, fewer {} serve, a dead region serves nothing; the scale-up carries on",
        ctx.region,
        ctx.label,
        ctx.shortfall(short),
        ctx.source,
        budget.as_secs(),
        ctx.active,
        ctx.what(),
    );
    warn!(%detail, "capacity: over budget");
    journal(
        &*ctx.ports.store,
        ctx.ports.clock.now_ms(),
        ctx.region,
        "prepare_capacity_short",
        Some(ctx.epoch),
        detail,
    )
    .await;
}

/// What one target's requests are about.
struct Asking<'a> {
    ports: &'a Ports,
    region: &'a str,
    scaled: &'a Scaled,
    /// `scaled`'s label (`endpoint` or `endpoint/component`).
    label: &'a str,
    source: &'a str,
    tier: Tier,
    epoch: u64,
    /// The active region the failover leaves.
    active: &'a str,
    /// The old region is down (or the operator said not to wait for it).
    old_down: bool,
    plan: &'a [ScaleUp],
    /// `cost.capacity_units`.
    units: &'a CapacityUnits,
    /// The units each variant on pools must hold (`wanted_units`).
    wanted_units: &'a [(String, f64)],
}

impl Asking<'_> {
    /// What is short: "variants AllTraffic short", or a component's
    /// "copies short".
    fn shortfall(&self, short: &[String]) -> String {
        match self.scaled {
            Scaled::Endpoint { .. } => format!("variants {} short", short.join(", ")),
            Scaled::Component { .. } => "copies short".to_string(),
        }
    }

    /// What fewer of serve.
    fn what(&self) -> &'static str {
        match self.scaled {
            Scaled::Endpoint { .. } => "instances",
            Scaled::Component { .. } => "copies",
        }
    }
}

/// Past the budget with the old region serving: the step fails.
fn not_ready(ctx: &Asking<'_>, short: Vec<String>, budget: Duration) -> PrepareError {
    match ctx.scaled {
        Scaled::Endpoint { endpoint, .. } => PrepareError::CapacityNotReady {
            region: ctx.region.to_string(),
            endpoint: endpoint.clone(),
            active: ctx.active.to_string(),
            short,
            budget_s: budget.as_secs(),
        },
        Scaled::Component {
            endpoint,
            component,
        } => PrepareError::ComponentNotReady {
            region: ctx.region.to_string(),
            endpoint: endpoint.clone(),
            component: component.clone(),
            active: ctx.active.to_string(),
            copies: ctx.plan.first().map_or(0, |p| p.to),
            budget_s: budget.as_secs(),
        },
    }
}

/// The FailureReason of a scale-up SageMaker could not serve, when `st`
/// says so: in service again with a FailureReason that is this step's (it
/// differs from the one there before the first ask, or the target was
/// seen updating since). SageMaker leaves an `InService` endpoint whose
/// update could not get instances with "Unable to provision requested ML
/// compute capacity due to InsufficientInstanceCapacity error".
fn refused_capacity(st: &Reading, earlier: Option<&str>, updated: bool) -> Option<String> {
    let reason = st.failure_reason.as_deref()?;
    (st.in_service && (updated || Some(reason) != earlier)).then(|| reason.to_string())
}

/// The planned units not yet at their count in `current`.
fn short_of(plan: &[ScaleUp], current: &[VariantCapacity]) -> Vec<String> {
    plan.iter()
        .filter(|p| {
            current
                .iter()
                .find(|c| c.variant == p.variant)
                .is_none_or(|c| c.instances < p.to)
        })
        .map(|p| p.variant.clone())
        .collect()
}

/// AWS refused the scale-up (`detail`: the FailureReason or the error):
/// decided at once, never by waiting out the budget. The old region still
/// serves: the step fails and the failover stops (the old region keeps
/// serving; the refusal is in the step's error, the journal and the
/// report). The old region is down: switch onto what the target holds,
/// journalled as `prepare_capacity_refused` with the shortfall: fewer
/// instances (copies) serve, a dead region serves nothing.
async fn refuse(
    ctx: &Asking<'_>,
    detail: String,
    short: Vec<String>,
) -> Result<serde_json::Value, PrepareError> {
    if !ctx.old_down {
        warn!(endpoint = %ctx.label, %detail, "capacity: AWS refused the scale-up; the failover stops here");
        return Err(match ctx.scaled {
            Scaled::Endpoint { endpoint, .. } => PrepareError::ScaleRefused {
                region: ctx.region.to_string(),
                endpoint: endpoint.clone(),
                active: ctx.active.to_string(),
                detail,
                short,
            },
            Scaled::Component {
                endpoint,
                component,
            } => PrepareError::ComponentRefused {
                region: ctx.region.to_string(),
                endpoint: endpoint.clone(),
                component: component.clone(),
                active: ctx.active.to_string(),
                detail,
            },
        });
    }
    let line = format!(
        "{}/{}: AWS refused the scale-up to match {} ({detail}); {} is down, so the switch goes ahead onto what {} holds ({})",
        ctx.region,
        ctx.label,
        ctx.source,
        ctx.active,
        ctx.region,
        match ctx.scaled {
            Scaled::Endpoint { .. } => format!("variants short: {}", short.join(", ")),
            Scaled::Component { .. } => "copies short".to_string(),
        },
    );
    warn!(detail = %line, "capacity: refused");
    journal(
        &*ctx.ports.store,
        ctx.ports.clock.now_ms(),
        ctx.region,
        "prepare_capacity_refused",
        Some(ctx.epoch),
        line,
    )
    .await;
    Ok(ctx.scaled.report(
        json!({"scaled": false, "refused": detail, "short": short, "to_match": ctx.source, "plan": planned(ctx.plan), "tier": ctx.tier}),
    ))
}

/// Ask for what is still missing, once the target takes updates: a unit
/// whose desired count is already there is only waiting for SageMaker.
/// `Ok(true)`: asked, read again at once; `Ok(false)`: nothing asked (or
/// not taken yet), wait a poll; `Err`: SageMaker refused.
async fn ask_for_missing(
    ctx: &Asking<'_>,
    now: Option<&Reading>,
    asked: &mut Vec<String>,
) -> Result<bool, String> {
    let Some(st) = now.filter(|st| st.in_service) else {
        return Ok(false);
    };
    let ask: Vec<&ScaleUp> = ctx
        .plan
        .iter()
        .filter(|p| {
            st.desired
                .iter()
                .find(|d| d.variant == p.variant)
                .is_some_and(|d| d.instances < p.to)
        })
        .collect();
    if ask.is_empty() {
        return Ok(false);
    }
    let r = match ctx.scaled {
        Scaled::Endpoint { endpoint, .. } => {
            let counts: Vec<(String, u32)> =
                ask.iter().map(|p| (p.variant.clone(), p.to)).collect();
            ctx.ports
                .endpoints
                .set_instance_counts(ctx.region, endpoint, &counts)
                .await
        }
        Scaled::Component { component, .. } => {
            let copies = ask.iter().map(|p| p.to).max().unwrap_or(0);
            ctx.ports
                .endpoints
                .set_copy_count(ctx.region, component, copies)
                .await
        }
    };
    match r {
        Ok(()) => {
            let what: Vec<String> = ask
                .iter()
                .map(|p| format!("{} {} -> {}", p.variant, p.from, p.to))
                .collect();
            let detail = format!(
                "{}/{}: scale {} to match {} before the switch ({})",
                ctx.region,
                ctx.label,
                what.join(", "),
                ctx.source,
                ctx.tier
            );
            info!(%detail, "capacity: scaling up");
            if !asked.contains(&detail) {
                journal(
                    &*ctx.ports.store,
                    ctx.ports.clock.now_ms(),
                    ctx.region,
                    "prepare_scale",
                    Some(ctx.epoch),
                    detail.clone(),
                )
                .await;
                asked.push(detail);
            }
            // Read again at once: SageMaker may have taken it already (and
            // otherwise says Updating).
            Ok(true)
        }
        // Throttled, or SageMaker still busy with an update that began
        // after our read: next poll.
        Err(e) if e.kind.is_transient() || e.kind == ErrorKind::Validation => {
            debug!(error = %crate::error_chain(&e), "capacity: update not taken yet; retrying");
            Ok(false)
        }
        Err(e) => Err(crate::error_chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvSource, Via};

    fn config(models: &str) -> Config {
        let dir = std::env::temp_dir().join(format!(
            "failoverd-prepare-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::from(
            "region = \"us-west-2\"\n[tables]\ncontrol = \"c\"\nrouting = \"r\"\nwitness = \"us-east-2\"\n",
        );
        for (i, r) in ["us-east-1", "us-west-2"].iter().enumerate() {
            text.push_str(&format!(
                "[[regions]]\nname = \"{r}\"\npriority = {}\nprobe_urls = [\"https://{r}.example/ping\"]\nstate_machine_arn = \"arn:aws:states:{r}:111122223333:stateMachine:f\"\nsagemaker = {{ provisioned = \"prov\", serverless = \"sls\", batch = \"async\" }}\n",
                i + 1
            ));
        }
        text.push_str(models);
        let f = dir.join("us-west-2.toml");
        std::fs::write(&f, text).unwrap();
        crate::config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()))
    }

    #[test]
    fn the_warm_up_calls_each_models_target_with_its_header() {
        let cfg = config(
            "[[models]]\nname = \"plain\"\n\
             [[models]]\nname = \"mme\"\ntarget_model = \"m.tar.gz\"\n\
             [[models]]\nname = \"llm\"\n[models.regions.us-west-2]\nendpoint = \"gpu-w\"\ninference_component = \"llm-w\"\n\
             [[models]]\nname = \"fraud\"\n[models.regions.us-west-2]\nprovisioned = \"fraud-w\"\nbatch = \"fraud-async\"\n",
        );
        let ic = Some(Via::InferenceComponent("llm-w".into()));
        let mme = Some(Via::TargetModel("m.tar.gz".into()));
        assert_eq!(
            warm_targets(&cfg, "us-west-2"),
            vec![
                ("sls".to_string(), None),
                ("prov".to_string(), None),
                ("sls".to_string(), mme.clone()),
                ("prov".to_string(), mme),
                ("gpu-w".to_string(), ic),
                ("fraud-w".to_string(), None),
            ]
        );
        // The status check walks the models' own endpoints too.
        let names: Vec<String> = cfg
            .endpoints_in("us-west-2")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            names,
            ["prov", "sls", "async", "gpu-w", "fraud-w", "fraud-async"]
        );
        // With no models, the shared real-time endpoints, once each.
        let cfg = config("");
        assert_eq!(
            warm_targets(&cfg, "us-west-2"),
            vec![("sls".to_string(), None), ("prov".to_string(), None)]
        );
    }

    const FLEET: &str = "[[models]]\nname = \"fraud\"\n\
         [models.regions.us-east-1]\nprovisioned = \"fraud-e\"\n\
         [models.regions.us-west-2]\nprovisioned = \"fraud-w\"\n\
         [[models]]\nname = \"llm\"\n\
         [models.regions.us-east-1]\nendpoint = \"gpu-e\"\ninference_component = \"llm-e\"\n\
         [models.regions.us-west-2]\nendpoint = \"gpu-w\"\ninference_component = \"llm-w\"\n\
         [[models]]\nname = \"embed\"\n\
         [models.regions.us-west-2]\nendpoint = \"gpu-w\"\ninference_component = \"embed-w\"\n\
         [[models]]\nname = \"ranker\"\n\
         [models.regions.us-west-2]\nprovisioned = \"ranker-w\"\n";

    fn endpoint(e: &str, shared: bool) -> Scaled {
        Scaled::Endpoint {
            endpoint: e.into(),
            shared,
        }
    }

    fn component(e: &str, c: &str) -> Scaled {
        Scaled::Component {
            endpoint: e.into(),
            component: c.into(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(r, l)| (r.to_string(), l.to_string()))
            .collect()
    }

    #[test]
    fn prepare_scales_the_shared_endpoint_each_models_own_and_each_component() {
        let cfg = config(FLEET);
        // An endpoint that hosts components (gpu-w) is not scaled itself:
        // its components' copies are.
        assert_eq!(
            scaled_in(&cfg, "us-west-2"),
            vec![
                endpoint("prov", true),
                endpoint("fraud-w", false),
                endpoint("ranker-w", false),
                component("gpu-w", "llm-w"),
                component("gpu-w", "embed-w"),
            ]
        );
        // Without a shared provisioned endpoint or models: nothing.
        assert_eq!(
            scaled_in(&config(""), "us-west-2"),
            vec![endpoint("prov", true)]
        );
    }

    #[test]
    fn each_is_matched_with_its_models_counterpart_in_the_active_region() {
        let cfg = config(FLEET);
        let at = |s: &Scaled| counterpart(&cfg, "us-west-2", s, "us-east-1");
        assert_eq!(
            at(&endpoint("prov", true)),
            Some(endpoint("prov", true)),
            "the shared endpoint: the active's shared one"
        );
        assert_eq!(
            at(&endpoint("fraud-w", false)),
            Some(endpoint("fraud-e", false))
        );
        // ranker runs on us-east-1's shared endpoint, which carries every
        // model: no count to match, the need alone decides.
        assert_eq!(at(&endpoint("ranker-w", false)), None);
        assert_eq!(
            at(&component("gpu-w", "llm-w")),
            Some(component("gpu-e", "llm-e"))
        );
        // embed is no component in us-east-1.
        assert_eq!(at(&component("gpu-w", "embed-w")), None);
    }

    #[test]
    fn the_need_is_measured_over_each_ones_counterparts() {
        let cfg = config(FLEET);
        let of = |s: &Scaled| need_pairs(&cfg, "us-west-2", s);
        // The shared endpoint's need is what the cost task reads.
        assert_eq!(
            of(&endpoint("prov", true)),
            super::super::cost::provisioned_everywhere(&cfg)
        );
        assert_eq!(
            of(&endpoint("fraud-w", false)),
            pairs(&[("us-east-1", "fraud-e"), ("us-west-2", "fraud-w")])
        );
        // A component's: its own model's targets, not its neighbours'.
        assert_eq!(
            of(&component("gpu-w", "llm-w")),
            pairs(&[("us-east-1", "gpu-e/llm-e"), ("us-west-2", "gpu-w/llm-w")])
        );
        assert_eq!(
            of(&component("gpu-w", "embed-w")),
            pairs(&[("us-east-1", "prov"), ("us-west-2", "gpu-w/embed-w")])
        );
    }

    #[test]
    fn a_components_copies_are_one_unit_and_its_refusal_reads_as_an_endpoints() {
        let mut c = ComponentState {
            arn: "arn:aws:sagemaker:us-west-2:111122223333:inference-component/llm-w".into(),
            endpoint: "gpu-w".into(),
            variant: Some("AllTraffic".into()),
            status: ComponentStatus::Updating,
            current_copies: Some(1),
            desired_copies: Some(3),
            spec: Default::default(),
            failure_reason: None,
        };
        let r = Reading::of_component(&c);
        let unit = |n| {
            vec![VariantCapacity {
                variant: COPIES.into(),
                instances: n,
            }]
        };
        assert!(!r.in_service);
        assert_eq!((r.current.clone(), r.desired.clone()), (unit(1), unit(3)));
        let plan = tier::prepare_plan(&unit(3), &r.current).unwrap();
        assert_eq!(short_of(&plan, &r.current), ["copies"]);
        assert_eq!(refused_capacity(&r, None, true), None, "still updating");
        // Back in service with its old copies and a FailureReason: refused.
        c.status = ComponentStatus::InService;
        c.failure_reason = Some("Unable to provision requested ML compute capacity".into());
        let r = Reading::of_component(&c);
        assert!(refused_capacity(&r, None, false).is_some());
        // The same reason as before the ask, never seen updating: an
        // older update's.
        assert_eq!(
            refused_capacity(&r, c.failure_reason.as_deref(), false),
            None
        );
        // A component that never reported copies counts as none.
        c.current_copies = None;
        c.desired_copies = None;
        assert_eq!(Reading::of_component(&c).desired, unit(0));
    }

    /// The prepare rule for a variant on pools: once SageMaker reports
    /// the asked count, units short of the wanted ones ask for more
    /// instances of the smallest type present; the plan only grows.
    #[test]
    fn a_variant_whose_pools_fell_back_is_topped_up_to_its_units() {
        use crate::ports::endpoints::VariantState;
        let pool = |t: &str, n| PoolCount {
            instance_type: t.into(),
            current: n,
        };
        let st = |current, desired, pools: Vec<PoolCount>| EndpointState {
            arn: "arn".into(),
            config: "c".into(),
            status: EndpointStatus::InService,
            variants: vec![VariantState {
                variant: "AllTraffic".into(),
                current_instances: Some(current),
                desired_instances: Some(desired),
                serverless: false,
                pools,
            }],
            failure_reason: None,
        };
        let units = CapacityUnits(
            [
                ("ml.g5.2xlarge".to_string(), 2.0),
                ("ml.g5.xlarge".to_string(), 1.0),
            ]
            .into(),
        );
        // Asked 4 to match an active of 4 big (8 units); 1 big and 3 small came.
        let r = Reading::of_endpoint(&st(
            4,
            4,
            vec![pool("ml.g5.2xlarge", 1), pool("ml.g5.xlarge", 3)],
        ));
        let active = [("AllTraffic".to_string(), 8.0)];
        let wanted = wanted_units(&r, None, &active);
        assert_eq!(
            wanted, active,
            "the active's units when the need is not measured"
        );
        assert_eq!(
            wanted_units(&r, Some(10), &active),
            [("AllTraffic".to_string(), 10.0)],
            "the higher of the need (as units) and the active's"
        );
        assert_eq!(
            wanted_units(&r, None, &[]),
            [],
            "neither: the instance count is the rule"
        );
        let mut plan = vec![ScaleUp {
            variant: "AllTraffic".into(),
            from: 1,
            to: 4,
        }];
        let ups = top_ups_of(&units, &wanted, &plan, &r);
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].why(), "fell back to ml.g5.xlarge: 5 units of 8");
        grow(&mut plan, &ups);
        assert_eq!((plan[0].from, plan[0].to), (1, 7));
        // Not settled yet (SageMaker reports 3 of the 4 asked): nothing.
        let settling = Reading::of_endpoint(&st(
            3,
            4,
            vec![pool("ml.g5.2xlarge", 1), pool("ml.g5.xlarge", 2)],
        ));
        assert_eq!(top_ups_of(&units, &wanted, &[], &settling), []);
        // Covered: 1 big and 6 small is 8 units.
        let covered = Reading::of_endpoint(&st(
            7,
            7,
            vec![pool("ml.g5.2xlarge", 1), pool("ml.g5.xlarge", 6)],
        ));
        assert_eq!(top_ups_of(&units, &wanted, &plan, &covered), []);
        // Never lower: a top-up below the plan leaves the plan.
        let mut higher = vec![ScaleUp {
            variant: "AllTraffic".into(),
            from: 1,
            to: 9,
        }];
        grow(&mut higher, &ups);
        assert_eq!(higher[0].to, 9);
        // A variant not in the plan (it already held the count) is added.
        let mut empty = Vec::new();
        grow(&mut empty, &ups);
        assert_eq!((empty[0].from, empty[0].to), (4, 7));
    }

    #[test]
    fn the_output_puts_each_in_its_place() {
        let done = [
            (endpoint("fraud-w", false), json!({"n": 1})),
            (component("gpu-w", "llm-w"), json!({"n": 2})),
            (endpoint("prov", true), json!({"n": 0})),
        ];
        let c = Capacity::of(done);
        assert_eq!(c.shared, json!({"n": 0}));
        assert_eq!(c.endpoints, [json!({"n": 1})]);
        assert_eq!(c.components, [json!({"n": 2})]);
        let none = Capacity::of([]);
        assert_eq!(none.shared["why"], "no provisioned endpoint");
        assert_eq!(
            component("gpu-w", "llm-w").report(json!({"scaled": true})),
            json!({"endpoint": "gpu-w", "component": "llm-w", "scaled": true})
        );
    }
}
