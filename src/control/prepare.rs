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
//! The budgets fit in the workflow's prepare timeout and under
//! `timings.stuck_failover`; check-config enforces both (config/cost.rs).

use std::time::Duration;

use serde_json::json;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::core::backoff::Backoff;
use crate::core::control::Phase;
use crate::core::tier::{self, PrepareProblem, PrepareProgress, ScaleUp, Tier, VariantCapacity};
use crate::ports::endpoints::{EndpointState, EndpointStatus, WarmUp};
use crate::ports::{ErrorKind, Ports};

use super::journal::journal;

/// How often the capacity step reads the target endpoint while it scales.
const SCALE_POLL: Duration = Duration::from_secs(5);
/// Room left after the capacity step for the callback, on the token's clock.
const CALLBACK_ROOM_MS: u64 = 10_000;

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
}

/// Run the prepare step for this daemon's region; `deadline` is the
/// token's expiry (wall clock, unix ms); `need` the instances the fleet's
/// traffic needs as the routers measured it (`state::fleet_need`), if
/// measured.
pub async fn prepare(
    cfg: &Config,
    ports: &Ports,
    deadline: u64,
    need: Option<u32>,
) -> Result<serde_json::Value, PrepareError> {
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
    let wall_left = deadline
        .saturating_sub(ports.clock.now_ms())
        .saturating_sub(5_000);
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
    Ok(
        json!({"region": region, "step": "prepare", "endpoints": statuses, "capacity": capacity, "warmed": warmed}),
    )
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
    if cfg.models.is_empty() {
        if let Some(r) = cfg.region(region) {
            for ep in r.sagemaker.realtime() {
                add(ep, None);
            }
        }
    }
    out
}

/// The capacity step (see the module doc). Returns what it did, for the
/// step's output.
async fn scale_up(
    cfg: &Config,
    ports: &Ports,
    deadline: u64,
    need: Option<u32>,
) -> Result<serde_json::Value, PrepareError> {
    let me = cfg.local();
    let region = me.name.clone();
    let Some(endpoint) = me.sagemaker.provisioned.clone() else {
        return Ok(json!({"scaled": false, "why": "no provisioned endpoint"}));
    };
    let skip = |why: String| {
        warn!(%endpoint, %why, "capacity step skipped; the warm-up decides");
        Ok(json!({"endpoint": endpoint, "scaled": false, "why": why}))
    };
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
    let active = record.active.clone();
    // The old region is gone, or the operator said not to wait for it:
    // switching onto fewer instances beats staying on a dead region.
    let old_down =
        record.phase == Phase::FailingOver && (record.ungraceful || !record.old_region_healthy);
    let tier = cfg.cost.fleet_tier(&cfg.models);

    let target = match ports.endpoints.describe(&region, &endpoint).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(PrepareError::Missing { region, endpoint });
        }
        Err(e) => {
            return skip(format!(
                "{endpoint} cannot be read ({})",
                crate::error_chain(&e)
            ));
        }
    };
    let target_caps = target.provisioned();
    // SageMaker keeps an endpoint's last FailureReason: one already there
    // before this step asks for anything is an older update's, not ours.
    let earlier_failure = target.failure_reason.clone();

    let (wanted, source) =
        match wanted_capacity(cfg, ports, &active, &endpoint, &target_caps, need).await {
            Ok(w) => w,
            Err(why) => return skip(why),
        };
    let plan = tier::prepare_plan(&wanted, &target_caps).map_err(|problems| {
        PrepareError::MissingVariants {
            region: region.clone(),
            endpoint: endpoint.clone(),
            problems,
        }
    })?;
    let planned = |plan: &[ScaleUp]| -> Vec<serde_json::Value> {
        plan.iter()
            .map(|p| json!({"variant": p.variant, "from": p.from, "to": p.to}))
            .collect()
    };
    if plan.is_empty() {
        debug!(%endpoint, %source, "capacity: the target already holds the active's capacity");
        return Ok(
            json!({"endpoint": endpoint, "scaled": false, "why": format!("already holds {source}"), "tier": tier}),
        );
    }

    let budget = capacity_budget(cfg, ports, deadline);
    let budget_ms = budget.as_millis() as u64;
    let started = ports.clock.monotonic();
    let mut asked: Vec<String> = Vec::new();
    // Seen the endpoint leave InService since the first ask: SageMaker took
    // the update, so a FailureReason after it is this update's.
    let mut updated_since_ask = false;
    let ctx = Asking {
        ports,
        region: &region,
        endpoint: &endpoint,
        source: &source,
        tier,
        epoch: record.epoch,
        active: &active,
        old_down,
        plan: &plan,
    };
    loop {
        let elapsed_ms = ports.clock.since(started).as_millis() as u64;
        let now = match ports.endpoints.describe(&region, &endpoint).await {
            Ok(Some(st)) => Some(st),
            Ok(None) => {
                return Err(PrepareError::Missing {
                    region: region.clone(),
                    endpoint: endpoint.clone(),
                });
            }
            Err(e) => {
                debug!(error = %crate::error_chain(&e), "capacity: cannot read the target; retrying");
                None
            }
        };
        let (in_service, current) = match &now {
            Some(st) => (st.status == EndpointStatus::InService, st.provisioned()),
            None => (false, Vec::new()),
        };
        if !asked.is_empty()
            && let Some(st) = &now
        {
            updated_since_ask |= st.status != EndpointStatus::InService;
            // AWS said no (insufficient capacity): the endpoint is back in
            // service with its old counts and a FailureReason. Decide now,
            // not at the end of the budget.
            if let Some(reason) =
                refused_capacity(st, earlier_failure.as_deref(), updated_since_ask)
            {
                let short = short_of(&plan, &current);
                if !short.is_empty() {
                    return refuse(&ctx, reason, short).await;
                }
            }
        }
        match tier::prepare_progress(&plan, in_service, &current, 0, elapsed_ms, budget_ms) {
            PrepareProgress::Done => {
                info!(%endpoint, %source, "capacity: scaled up to the active's");
                return Ok(
                    json!({"endpoint": endpoint, "scaled": true, "to_match": source, "plan": planned(&plan), "tier": tier, "seconds": elapsed_ms / 1000}),
                );
            }
            PrepareProgress::OverBudget { short } if old_down => {
                // The old region is gone: switching onto fewer instances
                // beats staying on a dead region; the scale-up carries on.
                journal_short(&ctx, &active, &short, budget).await;
                return Ok(
                    json!({"endpoint": endpoint, "scaled": false, "short": short, "to_match": source, "plan": planned(&plan), "tier": tier}),
                );
            }
            PrepareProgress::OverBudget { short } => {
                return Err(PrepareError::CapacityNotReady {
                    region: region.clone(),
                    endpoint: endpoint.clone(),
                    active,
                    short,
                    budget_s: budget.as_secs(),
                });
            }
            PrepareProgress::Waiting { remaining_ms, .. } => {
                match ask_for_missing(&ctx, &plan, now.as_ref(), &mut asked).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    // AWS refused the call itself (ResourceLimitExceeded:
                    // the quota for the instance type; access denied).
                    Err(detail) => {
                        let short = short_of(&plan, &current);
                        return refuse(&ctx, detail, short).await;
                    }
                }
                tokio::time::sleep(SCALE_POLL.min(Duration::from_millis(remaining_ms.max(1))))
                    .await;
            }
        }
    }
}

/// The capacity step's budget on the monotonic clock: `cost.prepare_budget`,
/// never past the token's expiry (`deadline`, wall clock) less the warm-up's
/// budget and the callback.
fn capacity_budget(cfg: &Config, ports: &Ports, deadline: u64) -> Duration {
    let wall_left = deadline
        .saturating_sub(ports.clock.now_ms())
        .saturating_sub(cfg.timings.prepare_budget.as_millis() as u64 + CALLBACK_ROOM_MS);
    cfg.cost
        .prepare_budget
        .min(Duration::from_millis(wall_left))
}

/// What the target must hold, per variant: the highest of what the
/// active's endpoint holds now and what the fleet's traffic needs (`need`,
/// the routers' measurement: a schedule that lowered the active or the
/// target at 18:00 does not lower what a failover scales to). When the
/// active's region cannot say, the need, else the schedule's minimum for
/// this endpoint now. `Err` is why none is known (the capacity step is
/// then skipped).
async fn wanted_capacity(
    cfg: &Config,
    ports: &Ports,
    active: &str,
    endpoint: &str,
    target_caps: &[VariantCapacity],
    need: Option<u32>,
) -> Result<(Vec<VariantCapacity>, String), String> {
    let each = |n: u32| -> Vec<VariantCapacity> {
        target_caps
            .iter()
            .map(|v| VariantCapacity {
                variant: v.variant.clone(),
                instances: n,
            })
            .collect()
    };
    let Some(a) = cfg
        .region(active)
        .and_then(|r| r.sagemaker.provisioned.clone())
    else {
        return match need {
            Some(n) => Ok((each(n), format!("the fleet's measured need ({n})"))),
            None => Err(format!("{active} has no provisioned endpoint to match")),
        };
    };
    let why = match ports.endpoints.describe(active, &a).await {
        Ok(Some(st)) => {
            let mut caps = st.provisioned();
            let mut source = format!("{active}'s {a} now");
            if let Some(n) = need
                && caps.iter().any(|c| c.instances < n)
            {
                for c in &mut caps {
                    c.instances = c.instances.max(n);
                }
                source = format!("{source}, raised to the fleet's measured need ({n})");
            }
            return Ok((caps, source));
        }
        Ok(None) => format!("{a} does not exist in {active}"),
        Err(e) => format!(
            "{a} in {active} cannot be read ({})",
            crate::error_chain(&e)
        ),
    };
    let scheduled = cfg
        .cost
        .schedule_for(endpoint)
        .map(|s| s.at(ports.clock.now_ms()).min);
    match (need, scheduled) {
        (Some(n), Some(min)) if min > n => Ok((
            each(min),
            format!(
                "the schedule's minimum now ({min}, above the fleet's measured need {n}), because {why}"
            ),
        )),
        (Some(n), _) => Ok((
            each(n),
            format!("the fleet's measured need ({n}), because {why}"),
        )),
        (None, Some(min)) => Ok((
            each(min),
            format!("the schedule's minimum now ({min}), because {why}"),
        )),
        (None, None) => Err(format!(
            "{why}, the fleet's need is not measured, and {endpoint} has no schedule to fall back on"
        )),
    }
}

/// Journal a switch with variants `short` of what was wanted after `budget`.
async fn journal_short(ctx: &Asking<'_>, active: &str, short: &[String], budget: Duration) {
    let detail = format!(
        "{}/{}: switching with variants {} short of {} after {}s (cost.prepare_budget): {active} is down, fewer instances serve, a dead region serves nothing; the scale-up carries on",
        ctx.region,
        ctx.endpoint,
        short.join(", "),
        ctx.source,
        budget.as_secs()
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

/// What the capacity step's requests are about.
struct Asking<'a> {
    ports: &'a Ports,
    region: &'a str,
    endpoint: &'a str,
    source: &'a str,
    tier: Tier,
    epoch: u64,
    /// The active region the failover leaves.
    active: &'a str,
    /// The old region is down (or the operator said not to wait for it).
    old_down: bool,
    plan: &'a [ScaleUp],
}

/// The FailureReason of a scale-up SageMaker could not serve, when `st`
/// says so: in service again with a FailureReason that is this step's (it
/// differs from the one there before the first ask, or the endpoint was
/// seen updating since). SageMaker leaves an `InService` endpoint whose
/// update could not get instances with "Unable to provision requested ML
/// compute capacity due to InsufficientInstanceCapacity error".
fn refused_capacity(st: &EndpointState, earlier: Option<&str>, updated: bool) -> Option<String> {
    let reason = st.failure_reason.as_deref()?;
    (st.status == EndpointStatus::InService && (updated || Some(reason) != earlier))
        .then(|| reason.to_string())
}

/// The planned variants not yet at their count in `current`.
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
/// instances serve, a dead region serves nothing.
async fn refuse(
    ctx: &Asking<'_>,
    detail: String,
    short: Vec<String>,
) -> Result<serde_json::Value, PrepareError> {
    if !ctx.old_down {
        warn!(endpoint = %ctx.endpoint, %detail, "capacity: AWS refused the scale-up; the failover stops here");
        return Err(PrepareError::ScaleRefused {
            region: ctx.region.to_string(),
            endpoint: ctx.endpoint.to_string(),
            active: ctx.active.to_string(),
            detail,
            short,
        });
    }
    let line = format!(
        "{}/{}: AWS refused the scale-up to match {} ({detail}); {} is down, so the switch goes ahead onto what {} holds (variants short: {})",
        ctx.region,
        ctx.endpoint,
        ctx.source,
        ctx.active,
        ctx.region,
        short.join(", ")
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
    let planned: Vec<serde_json::Value> = ctx
        .plan
        .iter()
        .map(|p| json!({"variant": p.variant, "from": p.from, "to": p.to}))
        .collect();
    Ok(
        json!({"endpoint": ctx.endpoint, "scaled": false, "refused": detail, "short": short, "to_match": ctx.source, "plan": planned, "tier": ctx.tier}),
    )
}

/// Ask for what is still missing, once the endpoint takes updates: a
/// variant whose desired count is already there is only waiting for
/// SageMaker. `Ok(true)`: asked, read again at once; `Ok(false)`: nothing
/// asked (or not taken yet), wait a poll; `Err`: SageMaker refused.
async fn ask_for_missing(
    ctx: &Asking<'_>,
    plan: &[ScaleUp],
    now: Option<&EndpointState>,
    asked: &mut Vec<String>,
) -> Result<bool, String> {
    let Some(st) = now.filter(|st| st.status == EndpointStatus::InService) else {
        return Ok(false);
    };
    let ask: Vec<&ScaleUp> = plan
        .iter()
        .filter(|p| {
            st.variant(&p.variant)
                .is_some_and(|v| v.desired_instances.or(v.current_instances).unwrap_or(0) < p.to)
        })
        .collect();
    if ask.is_empty() {
        return Ok(false);
    }
    let counts: Vec<(String, u32)> = ask.iter().map(|p| (p.variant.clone(), p.to)).collect();
    match ctx
        .ports
        .endpoints
        .set_instance_counts(ctx.region, ctx.endpoint, &counts)
        .await
    {
        Ok(()) => {
            let what: Vec<String> = ask
                .iter()
                .map(|p| format!("{} {} -> {}", p.variant, p.from, p.to))
                .collect();
            let detail = format!(
                "{}/{}: scale {} to match {} before the switch ({})",
                ctx.region,
                ctx.endpoint,
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
}
