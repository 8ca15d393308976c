//! The standby readiness task (issue 26; docs/readiness.md): every
//! `cost.readiness_interval`, a standby daemon compares each of its
//! region's endpoints with the active region's endpoint of the same kind
//! (`core::standby::judge`) and keeps the findings where `/metrics` shows
//! them; a change of its summary is journalled (`readiness`), which is
//! where `failoverd status` and every other daemon read it.
//!
//! Budget: per round, for each configured endpoint of this region and its
//! counterpart in the active region, one `DescribeEndpoint` plus one
//! `DescribeEndpointConfig` and one `DescribeModel` per variant: about six
//! SageMaker control-plane reads for three endpoints every five minutes;
//! plus, per model served as an inference component, one
//! `DescribeInferenceComponent` of its component here and one of its
//! component in the active region. Each endpoint and component is read
//! once a round, however many models or rows name it (`Reads`).
//! The active region's daemon does not check (nothing to compare with).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::core::permissions;
use crate::core::routing::Path;
use crate::core::standby::{self, Bounds, Described, Finding, Reached, Seen, Variant};
use crate::http::{ShutdownRx, shutdown_signalled};
use crate::ports::Ports;
use crate::state::Shared;

use super::journal::journal;

/// The measured need of the standby's endpoints: each provisioned
/// endpoint's own (`Config::counterparts`: the traffic its models carry
/// wherever it lands), and the fleet's for the others (the need before
/// per-model endpoints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub by_endpoint: BTreeMap<String, Option<u32>>,
    /// Each inference component's need in copies, by (endpoint,
    /// component): its model's traffic wherever it lands
    /// (`Config::component_counterparts`, as prepare reads it).
    pub by_component: BTreeMap<(String, String), Option<u32>>,
    pub fleet: Option<u32>,
}

impl Needs {
    /// The same need everywhere (tests, and a fleet with one endpoint).
    pub fn all(need: Option<u32>) -> Self {
        Self {
            by_endpoint: BTreeMap::new(),
            by_component: BTreeMap::new(),
            fleet: need,
        }
    }

    /// `endpoint`'s need.
    pub fn of(&self, endpoint: &str) -> Option<u32> {
        match self.by_endpoint.get(endpoint) {
            Some(n) => *n,
            None => self.fleet,
        }
    }

    /// The copies component `component` on `endpoint` needs (the fleet's
    /// figure when it was not measured on its own: tests' [`Needs::all`]).
    pub fn of_component(&self, endpoint: &str, component: &str) -> Option<u32> {
        match self
            .by_component
            .get(&(endpoint.to_string(), component.to_string()))
        {
            Some(n) => *n,
            None => self.fleet,
        }
    }

    /// The daemon's: from its router's counts and the votes.
    pub fn measured(cfg: &Config, shared: &Shared, now: crate::metrics::counts::Now) -> Self {
        let pairs = super::cost::provisioned_everywhere(cfg);
        let fleet = crate::state::fleet_need(cfg, shared, &super::cost::as_refs(&pairs), now);
        let by_endpoint = cfg
            .provisioned_in(&cfg.region)
            .into_iter()
            .map(|e| {
                let pairs = cfg.counterparts(&cfg.region, &e);
                let need =
                    crate::state::fleet_need(cfg, shared, &super::cost::as_refs(&pairs), now);
                (e, need)
            })
            .collect();
        let by_component = cfg
            .endpoints_in(&cfg.region)
            .into_iter()
            .flat_map(|e| {
                e.components
                    .iter()
                    .map(|c| (e.name.clone(), c.clone()))
                    .collect::<Vec<_>>()
            })
            .map(|(e, c)| {
                let pairs = cfg.component_counterparts(&cfg.region, &e, &c);
                let need =
                    crate::state::fleet_need(cfg, shared, &super::cost::as_refs(&pairs), now);
                ((e, c), need)
            })
            .collect();
        Self {
            by_endpoint,
            by_component,
            fleet,
        }
    }
}

/// One model's endpoint on one path in the standby, and the model's
/// endpoint on the same path in the active region (where the router would
/// send the traffic instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub model: String,
    pub path: Path,
    pub endpoint: String,
    pub reached: Reached,
    pub counterpart: Option<String>,
    /// The inference component the model is served as here, and the
    /// model's component on the same path in the active region (`None`:
    /// it is not a component there).
    pub component: Option<String>,
    pub counterpart_component: Option<String>,
}

/// What readiness compares for `cfg.region` against `active`: each model's
/// own targets (config/serving.rs), then the region's shared endpoints no
/// model uses, under [`standby::SHARED`].
pub fn rows(cfg: &Config, active: &str) -> Vec<Row> {
    let paths = [Path::Provisioned, Path::Serverless, Path::Batch];
    let mut out: Vec<Row> = Vec::new();
    for m in &cfg.models {
        let Some(mine) = m.in_named(&cfg.region) else {
            continue;
        };
        let theirs = m.in_named(active);
        for p in paths {
            let Some(t) = mine.path(p) else { continue };
            out.push(Row {
                model: m.name.clone(),
                path: p,
                endpoint: t.endpoint.clone(),
                reached: if t.component().is_some() {
                    Reached::Component
                } else {
                    Reached::Variants
                },
                counterpart: theirs.and_then(|s| s.path(p)).map(|s| s.endpoint.clone()),
                component: t.component().map(str::to_string),
                counterpart_component: theirs
                    .and_then(|s| s.path(p))
                    .and_then(|s| s.component())
                    .map(str::to_string),
            });
        }
    }
    let shared = |region: &str, p: Path| {
        cfg.region(region).and_then(|r| match p {
            Path::Provisioned => r.sagemaker.provisioned.clone(),
            Path::Serverless => r.sagemaker.serverless.clone(),
            Path::Batch => r.sagemaker.batch.clone(),
        })
    };
    for p in paths {
        let Some(e) = shared(&cfg.region, p) else {
            continue;
        };
        // A shared endpoint only components use is still judged as an
        // endpoint (its instances: prepare scales it, entry 125).
        if out
            .iter()
            .any(|r| r.endpoint == e && r.reached == Reached::Variants)
        {
            continue;
        }
        out.push(Row {
            model: standby::SHARED.to_string(),
            path: p,
            endpoint: e,
            reached: Reached::Variants,
            counterpart: shared(active, p),
            component: None,
            counterpart_component: None,
        });
    }
    out
}

/// Read one endpoint: `DescribeEndpoint`, then what its variants run;
/// its capacity in `units` when a variant runs on pools or units are
/// configured ([`units_of`]).
pub async fn observe(
    ports: &Ports,
    region: &str,
    endpoint: &str,
    units: &crate::core::pools::CapacityUnits,
) -> Seen {
    let state = match ports.endpoints.describe(region, endpoint).await {
        Err(e) => Err(crate::error_chain(&e)),
        Ok(None) => Ok(None),
        Ok(Some(st)) => {
            let variants = match ports.endpoints.served(region, endpoint).await {
                Ok(Some(v)) => Ok(v
                    .into_iter()
                    .map(|v| Variant {
                        name: v.variant,
                        containers: v.containers,
                        // A variant on pools is compared by its pools in
                        // priority order (the `instance_type` check).
                        instance_type: v.instance_type.or_else(|| pools_by_priority(v.pools)),
                    })
                    .collect()),
                Ok(None) => Err("gone between two reads".to_string()),
                Err(e) => Err(crate::error_chain(&e)),
            };
            let provisioned = st.provisioned();
            Ok(Some(Described {
                status: st.status.as_str().to_string(),
                serves: st.status.serves(),
                failure_reason: st.failure_reason.clone(),
                instances: (!provisioned.is_empty())
                    .then(|| provisioned.iter().map(|v| v.instances).sum()),
                counts: provisioned
                    .iter()
                    .map(|v| (v.variant.clone(), v.instances))
                    .collect(),
                units: units_of(&st, variants.as_ref().ok(), units),
                pools: st.pooled(),
                variants,
            }))
        }
    };
    Seen {
        endpoint: endpoint.to_string(),
        state,
    }
}

/// An endpoint config's pools as the `instance_type` check compares them:
/// `pools ml.g5.2xlarge > ml.g5.xlarge` (priority order); `None` without.
fn pools_by_priority(mut pools: Vec<(String, i32)>) -> Option<String> {
    if pools.is_empty() {
        return None;
    }
    pools.sort_by_key(|(_, p)| *p);
    let types: Vec<String> = pools.into_iter().map(|(t, _)| t).collect();
    Some(format!("pools {}", types.join(" > ")))
}

/// The instance type whose quota a variant's scale-up uses: its type, or
/// for a variant on pools ([`pools_by_priority`]'s label) the
/// highest-priority pool's, where SageMaker places new instances first.
/// The quota check does not follow a fallback onto the next pool.
fn quota_type(instance_type: &str) -> &str {
    match instance_type.strip_prefix("pools ") {
        Some(pools) => pools.split(" > ").next().unwrap_or(pools),
        None => instance_type,
    }
}

/// The endpoint's provisioned capacity in units (`core::pools`), when a
/// variant runs on pools or `cost.capacity_units` is set: a variant on
/// pools by its pools' counts, another by its count and instance type
/// (`variants`, from its endpoint config). `None`: count instances, as
/// when nothing is configured, or a variant's type is not known.
fn units_of(
    st: &crate::ports::endpoints::EndpointState,
    variants: Option<&Vec<Variant>>,
    units: &crate::core::pools::CapacityUnits,
) -> Option<f64> {
    let provisioned = st.variants.iter().filter(|v| !v.serverless);
    if !units.configured() && st.variants.iter().all(|v| v.pools.is_empty()) {
        return None;
    }
    let mut total = 0.0;
    for v in provisioned {
        let n = v.current_instances.unwrap_or(0);
        if v.pools.is_empty() {
            let itype = variants?
                .iter()
                .find(|x| x.name == v.variant)?
                .instance_type
                .clone()?;
            total += units.variant(&[], Some(&itype), n);
        } else {
            total += units.variant(&v.pools, None, n);
        }
    }
    Some(total)
}

/// Read one inference component (`DescribeInferenceComponent`, and
/// `DescribeModel` of the SageMaker model it runs, if it runs one), mapped
/// onto `endpoint`.
pub async fn observe_component(
    ports: &Ports,
    region: &str,
    endpoint: &str,
    component: &str,
) -> standby::ComponentSeen {
    let state = match ports.endpoints.describe_component(region, component).await {
        Err(e) => Err(crate::error_chain(&e)),
        Ok(None) => Ok(None),
        Ok(Some(mut c)) => {
            // A component that runs a SageMaker model: what it runs is
            // that model's containers (`DescribeModel`).
            if let (Some(m), None) = (&c.spec.model, &c.spec.image) {
                c.spec.model_read = Some(match ports.endpoints.model_containers(region, m).await {
                    Ok(Some(v)) => standby::ModelRead::Containers(v),
                    Ok(None) => standby::ModelRead::Missing,
                    Err(e) => standby::ModelRead::Failed(crate::error_chain(&e)),
                });
            }
            Ok(Some(standby::ComponentDescribed {
                on_endpoint: c.endpoint,
                status: c.status.as_str().to_string(),
                failure_reason: c.failure_reason,
                copies: c.current_copies,
                spec: c.spec,
            }))
        }
    };
    standby::ComponentSeen {
        endpoint: endpoint.to_string(),
        component: component.to_string(),
        state,
    }
}

/// The provisioned variants of a read endpoint (none when it was not read).
fn provisioned_variants(seen: &Seen) -> Vec<String> {
    match &seen.state {
        Ok(Some(d)) => d.counts.iter().map(|(v, _)| v.clone()).collect(),
        _ => Vec::new(),
    }
}

/// (instance type, instances) of each provisioned variant, or why not.
fn typed_counts(seen: &Seen) -> Result<Vec<(String, u32)>, String> {
    let ep = &seen.endpoint;
    match &seen.state {
        Err(e) => Err(format!("{ep} could not be read: {e}")),
        Ok(None) => Ok(Vec::new()),
        Ok(Some(d)) => {
            let vs = d
                .variants
                .as_ref()
                .map_err(|e| format!("{ep}'s instance types could not be read: {e}"))?;
            d.counts
                .iter()
                .map(|(v, n)| {
                    vs.iter()
                        .find(|x| &x.name == v)
                        .and_then(|x| x.instance_type.as_deref())
                        .map(|t| (quota_type(t).to_string(), *n))
                        .ok_or_else(|| format!("{ep}'s variant {v} names no instance type"))
                })
                .collect()
        }
    }
}

/// What one round read, each thing once: endpoints by (region, name),
/// inference components by (region, name), scalable targets by (region,
/// endpoint).
#[derive(Default)]
struct Reads {
    /// `cost.capacity_units`, for what an endpoint holds in units.
    units: crate::core::pools::CapacityUnits,
    seen: HashMap<(String, String), Seen>,
    components: HashMap<(String, String), standby::ComponentSeen>,
    bounds: HashMap<(String, String), Result<Vec<Bounds>, String>>,
}

impl Reads {
    async fn component(
        &mut self,
        ports: &Ports,
        region: &str,
        endpoint: &str,
        component: &str,
    ) -> standby::ComponentSeen {
        let k = (region.to_string(), component.to_string());
        if let Some(c) = self.components.get(&k) {
            return c.clone();
        }
        let c = observe_component(ports, region, endpoint, component).await;
        self.components.insert(k, c.clone());
        c
    }

    async fn seen(&mut self, ports: &Ports, region: &str, endpoint: &str) -> Seen {
        let k = (region.to_string(), endpoint.to_string());
        if let Some(s) = self.seen.get(&k) {
            return s.clone();
        }
        let s = observe(ports, region, endpoint, &self.units).await;
        self.seen.insert(k, s.clone());
        s
    }

    async fn bounds(
        &mut self,
        ports: &Ports,
        region: &str,
        endpoint: &str,
        variants: &[String],
    ) -> Result<Vec<Bounds>, String> {
        let k = (region.to_string(), endpoint.to_string());
        if let Some(b) = self.bounds.get(&k) {
            return b.clone();
        }
        let b = match ports
            .capacity
            .scalable_variants(region, endpoint, variants)
            .await
        {
            Ok(v) => Ok(v
                .into_iter()
                .map(|s| Bounds {
                    variant: s.variant,
                    min: s.min,
                    max: s.max,
                })
                .collect()),
            Err(e) => Err(crate::error_chain(&e)),
        };
        self.bounds.insert(k, b.clone());
        b
    }
}

/// One round for `cfg.region` against `active`: every finding, row by row
/// ([`rows`]), each row's checks in [`Check::ALL`](standby::Check::ALL)
/// order. Empty when this region is the active one.
pub async fn check(cfg: &Config, ports: &Ports, active: &str, needs: &Needs) -> Vec<Finding> {
    if active == cfg.region {
        return Vec::new();
    }
    let tier = cfg.cost.fleet_tier(&cfg.models);
    let region = cfg.region.as_str();
    let rows = rows(cfg, active);
    let mut reads = Reads {
        units: cfg.cost.capacity_units.clone(),
        ..Reads::default()
    };
    // The quota check's inputs: the region's provisioned endpoints after
    // prepare's scale-up, and one listing of the applied quotas.
    let provisioned = cfg.provisioned_in(region);
    let mut usage: Vec<standby::Usage> = Vec::new();
    let mut usage_err: Option<String> = None;
    for e in &provisioned {
        let seen = reads.seen(ports, region, e).await;
        match typed_counts(&seen) {
            Ok(variants) => usage.push(standby::Usage {
                endpoint: e.clone(),
                variants,
                need: needs.of(e),
            }),
            Err(why) => usage_err = usage_err.or(Some(why)),
        }
    }
    let usage = match usage_err {
        Some(why) => Err(why),
        None => standby::usage_after(&usage),
    };
    let quotas = if provisioned.is_empty() {
        Ok(BTreeMap::new())
    } else {
        ports
            .capacity
            .endpoint_quotas(region)
            .await
            .map_err(|e| crate::error_chain(&e))
    };
    let iam = IamRound::run(cfg, ports, region, &rows).await;
    let mut out = Vec::new();
    for row in &rows {
        let seen = reads.seen(ports, region, &row.endpoint).await;
        let other = match &row.counterpart {
            Some(e) => Some(reads.seen(ports, active, e).await),
            None => None,
        };
        let need = needs.of(&row.endpoint);
        out.extend(standby::judge(
            &row.model,
            row.reached,
            &seen,
            other.as_ref(),
            tier,
            need,
        ));
        if let Some(c) = &row.component {
            let mine = reads.component(ports, region, &row.endpoint, c).await;
            let theirs = match (&row.counterpart, &row.counterpart_component) {
                (Some(e), Some(c)) => Some(reads.component(ports, active, e, c).await),
                _ => None,
            };
            out.extend(standby::judge_component(
                &row.model,
                &mine,
                theirs.as_ref(),
                cfg.cost.tier_of(&row.model),
                needs.of_component(&row.endpoint, c),
            ));
        }
        let variants = provisioned_variants(&seen);
        let mine = if variants.is_empty() {
            Ok(Vec::new())
        } else {
            reads.bounds(ports, region, &row.endpoint, &variants).await
        };
        // The active's targets only matter for a variant without one here.
        let bare = match &mine {
            Ok(m) => variants.iter().any(|v| !m.iter().any(|b| &b.variant == v)),
            Err(_) => false,
        };
        let theirs = match (&other, bare) {
            (Some(o), true) => match &o.state {
                Ok(Some(_)) => Some(reads.bounds(ports, active, &o.endpoint, &variants).await),
                Err(e) => Some(Err(format!("{} could not be read: {e}", o.endpoint))),
                Ok(None) => None,
            },
            _ => None,
        };
        out.push(standby::judge_autoscaling(
            &row.model,
            &row.endpoint,
            &variants,
            &mine,
            theirs.as_ref(),
            need,
        ));
        // Endpoint-usage quotas are judged for the real-time provisioned
        // path, whose scale-up prepare makes (an async endpoint's
        // instances count in the same quota but are not scaled by it).
        let (types, row_usage) = match (row.path, typed_counts(&seen)) {
            (Path::Provisioned, Ok(v)) => (v.into_iter().map(|(t, _)| t).collect(), usage.clone()),
            (Path::Provisioned, Err(why)) => (variants.clone(), Err(why)),
            _ => (Vec::new(), usage.clone()),
        };
        out.push(standby::judge_quota(
            &row.model,
            &row.endpoint,
            &types,
            &row_usage,
            &quotas,
        ));
        let w = iam.wanted(region, row);
        out.push(permissions::judge(
            &row.model,
            &row.endpoint,
            &iam.principal,
            &w,
            &iam.decisions,
        ));
    }
    out
}

/// Readiness's IAM dry run for one round (`core::permissions`): whose
/// policies, and the simulator's decisions on every target's calls (one
/// `SimulatePrincipalPolicy` per set of actions, every page).
struct IamRound {
    principal: Result<String, String>,
    decisions: Result<permissions::Decisions, String>,
}

impl IamRound {
    fn wanted(&self, region: &str, row: &Row) -> Vec<permissions::Wanted> {
        let Ok(p) = &self.principal else {
            return Vec::new();
        };
        permissions::wanted(p, region, &row.endpoint, target(row))
    }

    async fn run(cfg: &Config, ports: &Ports, region: &str, rows: &[Row]) -> Self {
        let principal = match &cfg.cost.readiness_principal {
            Some(p) => Ok(p.clone()),
            None => ports
                .capacity
                .own_principal(region)
                .await
                .map_err(|e| crate::error_chain(&e)),
        };
        let Ok(p) = &principal else {
            return Self {
                principal,
                decisions: Err("no principal".into()),
            };
        };
        // The pairs, grouped by the set of actions asked on a resource:
        // the simulator judges every action on every resource of a call.
        let mut groups: BTreeMap<Vec<&'static str>, Vec<String>> = BTreeMap::new();
        let mut by_resource: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for row in rows {
            for w in permissions::wanted(p, region, &row.endpoint, target(row)) {
                let acts = by_resource.entry(w.resource).or_default();
                if !acts.contains(&w.action) {
                    acts.push(w.action);
                }
            }
        }
        for (resource, mut actions) in by_resource {
            actions.sort_unstable();
            groups.entry(actions).or_default().push(resource);
        }
        let mut decisions = permissions::Decisions::new();
        for (actions, resources) in &groups {
            match ports.capacity.simulate(region, p, actions, resources).await {
                Ok(judged) => {
                    for j in judged {
                        decisions.insert((j.action, j.resource), j.decision);
                    }
                }
                Err(e) => {
                    return Self {
                        principal,
                        decisions: Err(crate::error_chain(&e)),
                    };
                }
            }
        }
        Self {
            principal,
            decisions: Ok(decisions),
        }
    }
}

/// How `row`'s target is reached, for what it needs allowed: its inference
/// component, or its endpoint (scaled by prepare when provisioned).
fn target(row: &Row) -> permissions::Target<'_> {
    match (row.reached, &row.component) {
        (Reached::Component, Some(c)) => permissions::Target::Component(c),
        _ => permissions::Target::Endpoint {
            scaled: row.path == Path::Provisioned,
            asynchronous: row.path == Path::Batch,
        },
    }
}

/// Each region's latest `readiness` journal line, ordered by region, from
/// journal entries given newest first (`failoverd status`, the status page).
pub fn latest_lines<'a>(
    newest_first: impl IntoIterator<Item = &'a crate::ports::store::Event>,
) -> Vec<&'a crate::ports::store::Event> {
    let mut latest: Vec<&crate::ports::store::Event> = Vec::new();
    for e in newest_first.into_iter().filter(|e| e.kind == "readiness") {
        if !latest.iter().any(|l| l.who == e.who) {
            latest.push(e);
        }
    }
    latest.sort_by(|a, b| a.who.cmp(&b.who));
    latest
}

/// The task: a round every `cost.readiness_interval` (the first one at
/// once after the reconcile loop has read a record), until shutdown.
pub struct StandbyTask {
    config: watch::Receiver<Arc<Config>>,
    ports: Ports,
    shared: Arc<Shared>,
    /// The last summary journalled, so only a change is.
    last: Option<String>,
}

impl StandbyTask {
    pub fn new(config: watch::Receiver<Arc<Config>>, ports: Ports, shared: Arc<Shared>) -> Self {
        Self {
            config,
            ports,
            shared,
            last: None,
        }
    }

    pub async fn run(mut self, mut shutdown: ShutdownRx) {
        // Woken every few seconds to notice a switch at once (a region that
        // became active has nothing to compare; a new active is the new
        // reference); otherwise a round every `cost.readiness_interval`,
        // on the monotonic clock.
        const NOTICE: std::time::Duration = std::time::Duration::from_secs(5);
        let mut n = 0u64;
        let mut checked: Option<(String, crate::core::mono::Mono)> = None;
        loop {
            let cfg = self.config.borrow().clone();
            let active = self
                .shared
                .read(|st| st.record.as_ref().map(|r| r.active.clone()));
            let now = self.ports.clock.mono();
            let due = match (&active, &checked) {
                (None, _) => false,
                (Some(a), Some((was, at))) => {
                    a != was || now.since(*at) >= cfg.cost.readiness_interval.as_millis() as u64
                }
                (Some(_), None) => true,
            };
            if let (true, Some(active)) = (due, active) {
                n += 1;
                tokio::select! {
                    biased;
                    _ = shutdown_signalled(&mut shutdown) => return,
                    () = self.round(&cfg, &active).instrument(info_span!("standby", n)) => {}
                }
                checked = Some((active, now));
            }
            tokio::select! {
                biased;
                _ = shutdown_signalled(&mut shutdown) => return,
                // Until the first record is read, look again soon.
                _ = tokio::time::sleep(if checked.is_none() {
                    std::time::Duration::from_millis(500)
                } else {
                    NOTICE.min(cfg.cost.readiness_interval)
                }) => {}
            }
        }
    }

    async fn round(&mut self, cfg: &Config, active: &str) {
        let needs = Needs::measured(
            cfg,
            &self.shared,
            crate::metrics::counts::Now::of(&*self.ports.clock),
        );
        let findings = check(cfg, &self.ports, active, &needs).await;
        // The line ends with the matrix row (the worst per model), which
        // the status page and `failoverd status` read back.
        let summary = if active == cfg.region {
            "active: nothing to compare with".to_string()
        } else {
            format!(
                "{}{}",
                standby::summary(&findings),
                standby::cells_text(&standby::cells(&findings))
            )
        };
        if self.last.as_deref() != Some(summary.as_str()) {
            if standby::worst(&findings) > standby::Severity::Info {
                warn!(%summary, "standby readiness");
            } else {
                info!(%summary, "standby readiness");
            }
            let detail = format!("{} against {active}: {summary}", cfg.region);
            journal(
                &*self.ports.store,
                self.ports.clock.now_ms(),
                &cfg.region,
                "readiness",
                None,
                detail,
            )
            .await;
            self.last = Some(summary);
        }
        self.shared.set_standby(findings);
        *self
            .shared
            .standby_round
            .lock()
            .unwrap_or_else(|p| p.into_inner()) =
            Some((active.to_string(), self.ports.clock.mono()));
    }
}

/// What this region's vote publishes of its readiness at `now`: the last
/// round's findings, against which active and how long ago; `None` before
/// the first round and while this region is the one judged against (the
/// active checks nothing).
pub fn published(
    region: &str,
    shared: &Shared,
    now: crate::core::mono::Mono,
) -> Option<standby::Published> {
    let (against, at) = shared
        .standby_round
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()?;
    if against == region {
        return None;
    }
    Some(standby::Published::of(
        &against,
        &shared.standby(),
        now.since(at),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvSource;

    fn config(models: &str) -> Config {
        let dir = std::env::temp_dir().join(format!(
            "failoverd-standby-unit-{}-{:?}",
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
        text.push_str(models);
        let f = dir.join("us-west-2.toml");
        std::fs::write(&f, text).unwrap();
        crate::config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()))
    }

    fn row(model: &str, path: Path, endpoint: &str, reached: Reached, theirs: &str) -> Row {
        Row {
            model: model.into(),
            path,
            endpoint: endpoint.into(),
            reached,
            counterpart: Some(theirs.into()),
            component: None,
            counterpart_component: None,
        }
    }

    #[test]
    fn each_model_is_compared_on_its_own_endpoints_with_its_counterparts() {
        let cfg = config(
            "[[models]]\nname = \"plain\"\n\
             [[models]]\nname = \"fraud\"\n[models.regions.us-west-2]\nprovisioned = \"fraud-w\"\n[models.regions.us-east-1]\nprovisioned = \"fraud-e\"\n\
             [[models]]\nname = \"llm\"\n[models.regions.us-west-2]\nendpoint = \"gpu-w\"\ninference_component = \"llm-w\"\n[models.regions.us-east-1]\nendpoint = \"gpu-e\"\ninference_component = \"llm-e\"\n",
        );
        let v = Reached::Variants;
        assert_eq!(
            rows(&cfg, "us-east-1"),
            vec![
                row("plain", Path::Provisioned, "prov", v, "prov"),
                row("plain", Path::Serverless, "sls", v, "sls"),
                row("fraud", Path::Provisioned, "fraud-w", v, "fraud-e"),
                Row {
                    component: Some("llm-w".into()),
                    counterpart_component: Some("llm-e".into()),
                    ..row(
                        "llm",
                        Path::Provisioned,
                        "gpu-w",
                        Reached::Component,
                        "gpu-e",
                    )
                },
            ]
        );
        // Every model on its own endpoints: the shared ones are still
        // checked, under `*`.
        let cfg = config(
            "[[models]]\nname = \"fraud\"\n[models.regions.us-west-2]\nprovisioned = \"fraud-w\"\n[models.regions.us-east-1]\nprovisioned = \"fraud-e\"\n",
        );
        assert_eq!(
            rows(&cfg, "us-east-1"),
            vec![
                row("fraud", Path::Provisioned, "fraud-w", v, "fraud-e"),
                row(standby::SHARED, Path::Provisioned, "prov", v, "prov"),
                row(standby::SHARED, Path::Serverless, "sls", v, "sls"),
            ]
        );
    }

    #[test]
    fn a_shared_endpoint_only_components_use_is_still_judged_as_an_endpoint() {
        let cfg = config(
            "[[models]]\nname = \"llm\"\n[models.regions.us-west-2]\nendpoint = \"prov\"\ninference_component = \"llm-w\"\n[models.regions.us-east-1]\nendpoint = \"prov\"\ninference_component = \"llm-e\"\n",
        );
        let rows = rows(&cfg, "us-east-1");
        let on_prov: Vec<(&str, Reached, Option<&str>)> = rows
            .iter()
            .filter(|r| r.endpoint == "prov")
            .map(|r| (r.model.as_str(), r.reached, r.component.as_deref()))
            .collect();
        assert_eq!(
            on_prov,
            vec![
                ("llm", Reached::Component, Some("llm-w")),
                (standby::SHARED, Reached::Variants, None)
            ]
        );
    }

    #[test]
    fn each_mapped_component_has_its_own_measured_need() {
        let cfg = config(
            "[[models]]\nname = \"llm\"\n[models.regions.us-west-2]\nendpoint = \"gpu-w\"\ninference_component = \"llm-w\"\n[models.regions.us-east-1]\nendpoint = \"gpu-e\"\ninference_component = \"llm-e\"\n",
        );
        let needs = Needs::measured(
            &cfg,
            &Shared::default(),
            crate::metrics::counts::Now {
                wall_ms: 0,
                mono: crate::core::mono::Mono(0),
            },
        );
        // Keyed as the rows name it, so the fleet's figure never stands in.
        for r in rows(&cfg, "us-east-1") {
            if let Some(c) = &r.component {
                assert!(
                    needs
                        .by_component
                        .contains_key(&(r.endpoint.clone(), c.clone())),
                    "{needs:?}"
                );
            }
        }
        assert_eq!(needs.by_component.len(), 1, "{needs:?}");
    }

    #[test]
    fn an_endpoint_without_its_own_need_takes_the_fleets() {
        let n = Needs {
            by_endpoint: BTreeMap::from([("fraud-w".to_string(), Some(2)), ("prov".into(), None)]),
            by_component: BTreeMap::from([(("gpu-w".to_string(), "llm-w".to_string()), None)]),
            fleet: Some(5),
        };
        assert_eq!(n.of("fraud-w"), Some(2));
        assert_eq!(n.of("prov"), None, "measured as unmeasured stays so");
        assert_eq!(n.of("sls"), Some(5));
        assert_eq!(n.of_component("gpu-w", "llm-w"), None);
    }

    /// A variant on pools is compared by its pools in priority order and
    /// counted against its first-priority type's quota; an endpoint's
    /// units are counted only when pools or units are set.
    #[test]
    fn a_variant_on_pools_is_compared_by_its_pools_and_counted_in_units() {
        use crate::core::pools::{CapacityUnits, PoolCount};
        use crate::ports::endpoints::{EndpointState, EndpointStatus, VariantState};
        let label = pools_by_priority(vec![
            ("ml.g5.xlarge".into(), 2),
            ("ml.g5.2xlarge".into(), 1),
        ]);
        assert_eq!(label.as_deref(), Some("pools ml.g5.2xlarge > ml.g5.xlarge"));
        assert_eq!(pools_by_priority(Vec::new()), None);
        assert_eq!(quota_type(label.as_deref().unwrap()), "ml.g5.2xlarge");
        assert_eq!(quota_type("ml.m5.large"), "ml.m5.large");

        let state = |pools: Vec<PoolCount>| EndpointState {
            arn: "arn".into(),
            config: "c".into(),
            status: EndpointStatus::InService,
            variants: vec![VariantState {
                variant: "AllTraffic".into(),
                current_instances: Some(4),
                desired_instances: Some(4),
                serverless: false,
                pools,
            }],
            failure_reason: None,
        };
        let typed = vec![Variant {
            name: "AllTraffic".into(),
            containers: Vec::new(),
            instance_type: Some("ml.g5.2xlarge".into()),
        }];
        let none = CapacityUnits::default();
        let units = CapacityUnits([("ml.g5.2xlarge".to_string(), 2.0)].into());
        // Nothing configured, no pools: instances are counted.
        assert_eq!(units_of(&state(Vec::new()), Some(&typed), &none), None);
        // Units configured: count x the type's units.
        assert_eq!(
            units_of(&state(Vec::new()), Some(&typed), &units),
            Some(8.0)
        );
        // The type unknown (its endpoint config not read): instances.
        assert_eq!(units_of(&state(Vec::new()), None, &units), None);
        // Pools: their counts, even with nothing configured (1 each).
        let pools = vec![
            PoolCount {
                instance_type: "ml.g5.2xlarge".into(),
                current: 1,
            },
            PoolCount {
                instance_type: "ml.g5.xlarge".into(),
                current: 3,
            },
        ];
        assert_eq!(units_of(&state(pools.clone()), None, &none), Some(4.0));
        assert_eq!(units_of(&state(pools), None, &units), Some(5.0));
    }
}
