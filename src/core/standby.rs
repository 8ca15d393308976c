//! Standby readiness: can this region take over, judged before it is
//! needed (issue 26; docs/readiness.md). Pure: what the daemon read is
//! passed in.
//!
//! The classic failed failover is a standby that cannot take the load: its
//! endpoint runs last month's model, it was never scaled for the traffic,
//! or its last update failed. The prepare step finds some of that out at
//! the worst moment; this module lets each standby daemon find it out every
//! `cost.readiness_interval`, comparing each of its region's endpoints with
//! the active region's endpoint of the same kind (provisioned with
//! provisioned, ...: what the router would send there instead).
//!
//! Every check gives one [`Finding`] each time, `ok` included, so that a
//! gauge per check goes back to 0 when the problem is fixed:
//!
//! | check | critical | warning | info |
//! |---|---|---|---|
//! | `exists` | the endpoint does not exist | | |
//! | `serving` | not in a serving status (`Failed`, `OutOfService`, ...) | `Updating` / `SystemUpdating` (serves on the old variant) | |
//! | `last_update` | | `FailureReason` set: the last update failed (a scale-up refused for capacity shows so) | |
//! | `model` | a variant runs other images or model data than the active's | | |
//! | `instance_type` | | other instance types than the active's | |
//! | `capacity` | `tier1`: fewer instances than the fleet's measured need | | `tier2`/`tier3`: fewer than the need (prepare scales it up) |
//!
//! A model served by an inference component is also judged on the
//! component ([`judge_component`], findings keyed `endpoint/component`):
//! it exists on the mapped endpoint, is `InService`, runs the active's
//! component's image, model data and compute requirements, and holds its
//! copies against the need and the active's copies.
//!
//! A read that failed makes its checks `unknown`, never `ok`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::quorum::Vote;
use super::tier::{StandbyHolds, Tier};

/// How bad a finding is. Ordered: the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Info,
    /// Could not be judged (a read failed).
    Unknown,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Unknown => "unknown",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parse [`Severity::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Ok,
            Severity::Info,
            Severity::Unknown,
            Severity::Warning,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// The gauge's value: 0 ok, 1 info, 2 warning, 3 critical; -1 unknown.
    pub fn gauge(self) -> i64 {
        match self {
            Severity::Ok => 0,
            Severity::Info => 1,
            Severity::Warning => 2,
            Severity::Critical => 3,
            Severity::Unknown => -1,
        }
    }
}

/// What is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Exists,
    Serving,
    LastUpdate,
    Model,
    InstanceType,
    Capacity,
    /// Application Auto Scaling's bounds of the provisioned variants.
    Autoscaling,
    /// Service Quotas' applied endpoint-usage quota of the instance types.
    Quota,
    /// IAM's policy simulator: may the daemons make prepare's calls on it
    /// (`core::permissions`).
    Iam,
}

impl Check {
    pub const ALL: [Check; 9] = [
        Check::Exists,
        Check::Serving,
        Check::LastUpdate,
        Check::Model,
        Check::InstanceType,
        Check::Capacity,
        Check::Autoscaling,
        Check::Quota,
        Check::Iam,
    ];

    /// The checks [`judge`] gives (the endpoint's own reads); the last two
    /// come from [`judge_autoscaling`] and [`judge_quota`].
    pub const ENDPOINT: [Check; 6] = [
        Check::Exists,
        Check::Serving,
        Check::LastUpdate,
        Check::Model,
        Check::InstanceType,
        Check::Capacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Exists => "exists",
            Check::Serving => "serving",
            Check::LastUpdate => "last_update",
            Check::Model => "model",
            Check::InstanceType => "instance_type",
            Check::Capacity => "capacity",
            Check::Autoscaling => "autoscaling",
            Check::Quota => "quota",
            Check::Iam => "iam",
        }
    }
}

/// The model name of findings about endpoints no configured model maps
/// (the region's shared endpoints when no model is configured, or when
/// every model has its own).
pub const SHARED: &str = "*";

/// One check of one model's endpoint: findings are keyed by (model,
/// endpoint, check). A shared endpoint gives the same finding for each
/// model it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub model: String,
    pub endpoint: String,
    pub check: Check,
    pub severity: Severity,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} ({})",
            self.endpoint,
            self.check.as_str(),
            self.severity.as_str(),
            self.detail
        )
    }
}

/// One variant as compared: its name, its containers (image, model data)
/// and instance type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub containers: Vec<(String, Option<String>)>,
    pub instance_type: Option<String>,
}

/// One region's endpoint as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub endpoint: String,
    /// `Err`: the read failed (why); `Ok(None)`: the endpoint does not exist.
    pub state: Result<Option<Described>, String>,
}

/// A found endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// `EndpointStatus` as SageMaker names it.
    pub status: String,
    /// Whether that status serves (`InService`, `Updating`, `SystemUpdating`).
    pub serves: bool,
    pub failure_reason: Option<String>,
    /// Instances of its provisioned variants, summed; `None` for an
    /// endpoint without one (serverless).
    pub instances: Option<u32>,
    /// Each provisioned variant's current instances, by variant name.
    pub counts: Vec<(String, u32)>,
    /// What its variants run; `Err` when that read failed.
    pub variants: Result<Vec<Variant>, String>,
    /// Each variant on instance pools, with its pools' counts
    /// (`core::pools`); empty without pools.
    pub pools: Vec<(String, Vec<crate::core::pools::PoolCount>)>,
    /// Its provisioned variants' capacity in units (`cost.capacity_units`),
    /// when either a variant runs on pools or units are configured: the
    /// `capacity` check then compares units, not instances. `None`: count
    /// instances.
    pub units: Option<f64>,
}

/// How a model is reached on its endpoint, where that changes what can be
/// judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The endpoint's variants run the model (or a TargetModel / variant
    /// on them): images, model data and instances are the model's.
    Variants,
    /// An inference component: its artefacts, image and copies are the
    /// component's ([`judge_component`]); the endpoint gives no `capacity`
    /// finding for it (its instances are not what the model scales by).
    Component,
}

/// Judge `standby` (this region's endpoint of `model`) against `active`
/// (the model's endpoint of the same kind in the active region, if it has
/// one), for a fleet of `tier` whose measured need on that endpoint is
/// `need` instances. For a model `reached` as an inference component the
/// endpoint's `capacity` is left out: the component's copies are judged
/// instead ([`judge_component`]), and its variants' own containers are
/// still compared (`model`).
pub fn judge(
    model: &str,
    reached: Reached,
    standby: &Seen,
    active: Option<&Seen>,
    tier: Tier,
    need: Option<u32>,
) -> Vec<Finding> {
    let mut out = judge_endpoint(standby, active, tier, need);
    if reached == Reached::Component {
        out.retain(|f| f.check != Check::Capacity);
    }
    for f in &mut out {
        f.model = model.to_string();
    }
    out
}

/// What an inference component runs, as compared with the active's
/// (`DescribeInferenceComponent`'s `Specification`; the Endpoints port
/// reports it as this type).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentSpec {
    /// `ModelName`, when it runs a SageMaker model (its containers are in
    /// [`ComponentSpec::model_read`] once read).
    pub model: Option<String>,
    /// What `DescribeModel` said of [`ComponentSpec::model`]; `None` while
    /// not read (a component with its own container has nothing to read).
    #[serde(default)]
    pub model_read: Option<ModelRead>,
    /// `Container.DeployedImage.SpecifiedImage` (else `ResolvedImage`),
    /// when the component names its own container.
    pub image: Option<String>,
    /// The container's `ArtifactUrl` (model data).
    pub artifact_url: Option<String>,
    /// `ComputeResourceRequirements`: what each copy reserves.
    pub cpu_cores: Option<f32>,
    pub accelerators: Option<f32>,
    pub min_memory_mb: Option<u32>,
    pub max_memory_mb: Option<u32>,
}

/// A SageMaker model as `DescribeModel` reports it, for a component that
/// runs one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRead {
    /// Its containers in order (primary container, then `Containers`):
    /// (image, model data URL).
    Containers(Vec<(String, Option<String>)>),
    /// No such model: the copies running keep serving, but SageMaker has
    /// nothing to start a new copy from.
    Missing,
    /// The read failed (why).
    Failed(String),
}

/// One region's inference component as read.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentSeen {
    /// The endpoint the configuration maps it onto.
    pub endpoint: String,
    pub component: String,
    /// `Err`: the read failed (why); `Ok(None)`: it does not exist.
    pub state: Result<Option<ComponentDescribed>, String>,
}

impl ComponentSeen {
    /// The findings' endpoint: `endpoint/component`, the label the
    /// router's counts and metrics know it by.
    pub fn label(&self) -> String {
        format!("{}/{}", self.endpoint, self.component)
    }
}

/// A found inference component.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentDescribed {
    /// `EndpointName`: the endpoint it sits on.
    pub on_endpoint: String,
    /// `InferenceComponentStatus` as SageMaker names it.
    pub status: String,
    pub failure_reason: Option<String>,
    /// `CurrentCopyCount`: copies placed and serving.
    pub copies: Option<u32>,
    pub spec: ComponentSpec,
}

/// The checks [`judge_component`] gives, in order.
pub const COMPONENT: [Check; 5] = [
    Check::Exists,
    Check::Serving,
    Check::LastUpdate,
    Check::Model,
    Check::Capacity,
];

const UNMEASURED: &str =
    "the need is not measured (cost.instance_invocations_per_minute, a whole hour of counts)";

/// Judge `standby`, the inference component `model` is mapped to in this
/// region, against `active`, the same model's component in the active
/// region (`None`: it is not a component there), for `tier` whose measured
/// need on it is `need` copies. Findings are keyed by `endpoint/component`:
///
/// - `exists`: critical when it does not exist or sits on another endpoint
///   than the mapped one;
/// - `serving`: critical unless `InService` (`Updating`: warning, it
///   serves on the copies it has);
/// - `last_update`: warning with a `FailureReason`;
/// - `model`: critical when its image, model data (`ArtifactUrl`) or
///   compute requirements differ from the active's, naming each; unknown
///   when either runs a SageMaker model (its containers are not read);
/// - `capacity`: its current copies against the need (`tier1`: critical
///   below it; `tier2`/`tier3`: info, prepare scales it up; unmeasured:
///   unknown) and against the active's copies (fewer: info, prepare
///   scales it up to them); the worst of the two.
pub fn judge_component(
    model: &str,
    standby: &ComponentSeen,
    active: Option<&ComponentSeen>,
    tier: Tier,
    need: Option<u32>,
) -> Vec<Finding> {
    let label = standby.label();
    let f = |check, (severity, detail): Judged| Finding {
        model: model.to_string(),
        endpoint: label.clone(),
        check,
        severity,
        detail,
    };
    let d = match &standby.state {
        Err(e) => {
            return COMPONENT
                .iter()
                .map(|c| {
                    f(
                        *c,
                        (
                            Severity::Unknown,
                            format!("DescribeInferenceComponent failed: {e}"),
                        ),
                    )
                })
                .collect();
        }
        Ok(None) => {
            let mut out = vec![f(
                Check::Exists,
                (
                    Severity::Critical,
                    format!(
                        "no inference component {}: the router and prepare have nothing to send {model}'s traffic to here",
                        standby.component
                    ),
                ),
            )];
            out.extend(COMPONENT[1..].iter().map(|c| {
                f(
                    *c,
                    (
                        Severity::Unknown,
                        "the inference component does not exist".into(),
                    ),
                )
            }));
            return out;
        }
        Ok(Some(d)) => d,
    };
    let mut out = Vec::new();
    out.push(f(
        Check::Exists,
        if d.on_endpoint == standby.endpoint {
            (Severity::Ok, format!("exists on {}", standby.endpoint))
        } else {
            (
                Severity::Critical,
                format!(
                    "sits on endpoint {}, not on {} where it is mapped: calls to {} naming it are refused",
                    d.on_endpoint, standby.endpoint, standby.endpoint
                ),
            )
        },
    ));
    out.push(f(
        Check::Serving,
        match d.status.as_str() {
            "InService" => (Severity::Ok, "InService".into()),
            "Updating" => (
                Severity::Warning,
                "Updating: serves on the copies it has while it changes".into(),
            ),
            s => (Severity::Critical, format!("{s}: not in service")),
        },
    ));
    out.push(f(
        Check::LastUpdate,
        match &d.failure_reason {
            Some(r) => (Severity::Warning, format!("the last update failed: {r}")),
            None => (Severity::Ok, "no failure".into()),
        },
    ));
    // The active's component as read: `None` when there is nothing to
    // compare with, `Err` when it could not be read.
    let theirs: Option<Result<&ComponentDescribed, String>> = match active.map(|a| (a, &a.state)) {
        None => None,
        Some((_, Ok(None))) => None,
        Some((a, Err(e))) => Some(Err(format!(
            "the active's component {} could not be read: {e}",
            a.component
        ))),
        Some((_, Ok(Some(a)))) => Some(Ok(a)),
    };
    out.push(f(
        Check::Model,
        compare_components(&d.spec, theirs.as_ref()),
    ));
    out.push(f(
        Check::Capacity,
        component_copies(d.copies, theirs.as_ref(), tier, need),
    ));
    out
}

/// The component's `model` check: image, model data and compute
/// requirements against the active's.
fn compare_components(
    mine: &ComponentSpec,
    theirs: Option<&Result<&ComponentDescribed, String>>,
) -> Judged {
    let a = match theirs {
        None => {
            return (
                Severity::Ok,
                "the active region has no such component to compare with".into(),
            );
        }
        Some(Err(e)) => return (Severity::Unknown, e.clone()),
        Some(Ok(a)) => &a.spec,
    };
    fn show<T: fmt::Display>(v: &Option<T>) -> String {
        v.as_ref().map_or("none".to_string(), |v| v.to_string())
    }
    let mut parts: Vec<Judged> = Vec::new();
    let mut unread: Option<Judged> = None;
    let mut differ = |what: &str, m: String, t: String| {
        if m != t {
            parts.push((Severity::Critical, format!("{what} {m}, the active's {t}")));
        }
    };
    // A component runs its own container or a SageMaker model (whose name
    // may differ per region): what is compared is the containers either
    // way, an image and its model data.
    let runs_model = |s: &ComponentSpec| s.image.is_none() && s.model.is_some();
    if !runs_model(mine) && !runs_model(a) {
        differ("image", show(&mine.image), show(&a.image));
        differ(
            "model data",
            show(&mine.artifact_url),
            show(&a.artifact_url),
        );
    } else {
        match (containers_of("it", mine), containers_of("the active's", a)) {
            (Ok(m), Ok(t)) => differ("containers", show_containers(&m), show_containers(&t)),
            (Err(e), _) | (_, Err(e)) => unread = Some(e),
        }
    }
    differ("CPU cores", show(&mine.cpu_cores), show(&a.cpu_cores));
    differ(
        "accelerators",
        show(&mine.accelerators),
        show(&a.accelerators),
    );
    differ(
        "min memory MB",
        show(&mine.min_memory_mb),
        show(&a.min_memory_mb),
    );
    differ(
        "max memory MB",
        show(&mine.max_memory_mb),
        show(&a.max_memory_mb),
    );
    parts.extend(unread);
    combine(
        parts,
        "the same image, model data and compute requirements as the active's".into(),
    )
}

/// The containers a component runs: its own (image, model data), or its
/// SageMaker model's as read; `Err` when they cannot be told (`who` names
/// the side in the finding).
fn containers_of(who: &str, s: &ComponentSpec) -> Result<Vec<(String, Option<String>)>, Judged> {
    if let Some(image) = &s.image {
        return Ok(vec![(image.clone(), s.artifact_url.clone())]);
    }
    let Some(m) = &s.model else {
        return Ok(Vec::new());
    };
    match &s.model_read {
        Some(ModelRead::Containers(c)) => Ok(c.clone()),
        Some(ModelRead::Missing) => Err((
            Severity::Critical,
            format!(
                "{who} runs SageMaker model {m}, which does not exist: SageMaker has nothing to start another copy from"
            ),
        )),
        Some(ModelRead::Failed(e)) => Err((
            Severity::Unknown,
            format!("{who} runs SageMaker model {m}, which could not be read: {e}"),
        )),
        None => Err((
            Severity::Unknown,
            format!("{who} runs SageMaker model {m}, whose containers were not read"),
        )),
    }
}

fn show_containers(c: &[(String, Option<String>)]) -> String {
    if c.is_empty() {
        return "none".into();
    }
    c.iter()
        .map(|(image, data)| match data {
            Some(d) => format!("{image} with {d}"),
            None => image.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The component's `capacity` check: its copies against the need and
/// against the active's copies.
fn component_copies(
    copies: Option<u32>,
    theirs: Option<&Result<&ComponentDescribed, String>>,
    tier: Tier,
    need: Option<u32>,
) -> Judged {
    let Some(n) = copies else {
        return (Severity::Unknown, "no CurrentCopyCount reported".into());
    };
    let mut parts: Vec<Judged> = Vec::new();
    let mut oks: Vec<String> = Vec::new();
    match need {
        None => parts.push((Severity::Unknown, format!("holds {n} copies; {UNMEASURED}"))),
        Some(need) if n >= need => oks.push(format!("holds {n} copies, the need is {need}")),
        Some(need) if tier.standby_holds() == StandbyHolds::ActiveNeed => parts.push((
            Severity::Critical,
            format!(
                "holds {n} copies, the need is {need}, and {tier} keeps its standby at the need"
            ),
        )),
        Some(need) => parts.push((
            Severity::Info,
            format!("holds {n} copies, the need is {need}: prepare scales it up ({tier})"),
        )),
    }
    match theirs {
        None => {}
        Some(Err(e)) => parts.push((Severity::Unknown, e.clone())),
        Some(Ok(a)) => match a.copies {
            Some(m) if n < m => parts.push((
                Severity::Info,
                format!("holds {n} copies, the active's {m}: prepare scales it up to them"),
            )),
            Some(m) => oks.push(format!("the active's holds {m}")),
            None => parts.push((
                Severity::Unknown,
                "the active's component reports no CurrentCopyCount".into(),
            )),
        },
    }
    combine(parts, oks.join("; "))
}

fn judge_endpoint(
    standby: &Seen,
    active: Option<&Seen>,
    tier: Tier,
    need: Option<u32>,
) -> Vec<Finding> {
    let ep = standby.endpoint.as_str();
    let f = |check, severity, detail: String| Finding {
        model: String::new(),
        endpoint: ep.to_string(),
        check,
        severity,
        detail,
    };
    let d = match &standby.state {
        Err(e) => {
            return Check::ENDPOINT
                .iter()
                .map(|c| {
                    f(
                        *c,
                        Severity::Unknown,
                        format!("DescribeEndpoint failed: {e}"),
                    )
                })
                .collect();
        }
        Ok(None) => {
            let mut out = vec![f(
                Check::Exists,
                Severity::Critical,
                "does not exist: the router and prepare have nothing to send to here".into(),
            )];
            out.extend(
                Check::ENDPOINT[1..]
                    .iter()
                    .map(|c| f(*c, Severity::Unknown, "the endpoint does not exist".into())),
            );
            return out;
        }
        Ok(Some(d)) => d,
    };
    let mut out = vec![f(Check::Exists, Severity::Ok, "exists".into())];
    out.push(match (d.serves, d.status.as_str()) {
        (true, "InService") => f(Check::Serving, Severity::Ok, "InService".into()),
        (true, s) => f(
            Check::Serving,
            Severity::Warning,
            format!("{s}: serves on its old variants while it changes"),
        ),
        (false, s) => f(
            Check::Serving,
            Severity::Critical,
            format!("{s}: not serving"),
        ),
    });
    out.push(match &d.failure_reason {
        Some(r) => f(
            Check::LastUpdate,
            Severity::Warning,
            format!("the last update failed: {r}"),
        ),
        None => f(Check::LastUpdate, Severity::Ok, "no failure".into()),
    });
    let (model, itype) = compare_variants(d, active);
    out.push(f(Check::Model, model.0, model.1));
    out.push(f(Check::InstanceType, itype.0, itype.1));
    out.push(match (d.instances, need) {
        (None, _) => f(
            Check::Capacity,
            Severity::Ok,
            "no provisioned variant (scales itself)".into(),
        ),
        (Some(_), None) => f(
            Check::Capacity,
            Severity::Unknown,
            "the fleet's need is not measured (cost.instance_invocations_per_minute, a whole hour of counts)".into(),
        ),
        (Some(n), Some(need)) => capacity(d, n, need, tier, &f),
    });
    out
}

/// The endpoint's `capacity` finding: what it holds (instances, or units
/// when [`Described::units`] is set, naming the pools) against the need.
fn capacity(
    d: &Described,
    instances: u32,
    need: u32,
    tier: Tier,
    f: &dyn Fn(Check, Severity, String) -> Finding,
) -> Finding {
    use crate::core::pools::{pools_text, units_text};
    let (have, holds, needs) = match d.units {
        None => (
            f64::from(instances),
            format!("{instances}"),
            format!("{need}"),
        ),
        Some(u) => {
            let pools: Vec<String> = d
                .pools
                .iter()
                .map(|(v, p)| format!("{v}: {}", pools_text(p)))
                .collect();
            let on = if pools.is_empty() {
                format!("{instances} instances")
            } else {
                format!("pools {}", pools.join("; "))
            };
            (
                u,
                format!("{} units ({on})", units_text(u)),
                format!("{need} units"),
            )
        }
    };
    if have + 1e-9 >= f64::from(need) {
        f(
            Check::Capacity,
            Severity::Ok,
            format!("holds {holds}, the fleet needs {needs}"),
        )
    } else if tier.standby_holds() == StandbyHolds::ActiveNeed {
        f(
            Check::Capacity,
            Severity::Critical,
            format!(
                "holds {holds}, the fleet needs {needs}, and {tier} keeps its standby at the need"
            ),
        )
    } else {
        f(
            Check::Capacity,
            Severity::Info,
            format!("holds {holds}, the fleet needs {needs}: prepare scales it up ({tier})"),
        )
    }
}

/// One provisioned variant's scalable target as Application Auto Scaling
/// registers it (`DescribeScalableTargets`, dimension
/// `sagemaker:variant:DesiredInstanceCount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub variant: String,
    pub min: u32,
    pub max: u32,
}

fn finding(model: &str, endpoint: &str, check: Check, (severity, detail): Judged) -> Finding {
    Finding {
        model: model.to_string(),
        endpoint: endpoint.to_string(),
        check,
        severity,
        detail,
    }
}

/// The worst of several parts, with the details of the worst ones; `ok`
/// with `ok_detail` when there are none.
fn combine(parts: Vec<Judged>, ok_detail: String) -> Judged {
    let Some(w) = parts.iter().map(|p| p.0).max() else {
        return (Severity::Ok, ok_detail);
    };
    if w == Severity::Ok {
        return (Severity::Ok, ok_detail);
    }
    let details: Vec<String> = parts
        .into_iter()
        .filter(|p| p.0 == w)
        .map(|p| p.1)
        .collect();
    (w, details.join("; "))
}

/// The `autoscaling` check of `model`'s endpoint `endpoint` in the standby:
/// each of its provisioned `variants` against its scalable target in
/// `mine` and the active's same-named variant's in `theirs` (`None`: the
/// active region has no such endpoint). Critical when a variant's
/// `MaxCapacity` is below `need` (Application Auto Scaling keeps the
/// desired count within its bounds, so prepare's scale-up to the need would
/// not hold); warning when no target is registered here but the active's
/// variant has one (the standby would not scale with its load after the
/// switch); unknown when a read failed or, with a target registered, the
/// need is unmeasured.
pub fn judge_autoscaling(
    model: &str,
    endpoint: &str,
    variants: &[String],
    mine: &Result<Vec<Bounds>, String>,
    theirs: Option<&Result<Vec<Bounds>, String>>,
    need: Option<u32>,
) -> Finding {
    let at = |j| finding(model, endpoint, Check::Autoscaling, j);
    if variants.is_empty() {
        return at((
            Severity::Ok,
            "no provisioned variant (nothing to scale)".into(),
        ));
    }
    let mine = match mine {
        Ok(m) => m,
        Err(e) => {
            return at((
                Severity::Unknown,
                format!("DescribeScalableTargets failed: {e}"),
            ));
        }
    };
    let mut parts: Vec<Judged> = Vec::new();
    let mut oks: Vec<String> = Vec::new();
    for v in variants {
        match (mine.iter().find(|b| &b.variant == v), need) {
            (Some(b), None) => parts.push((
                Severity::Unknown,
                format!(
                    "{v}: MaxCapacity {}, but the need is not measured (cost.instance_invocations_per_minute, a whole hour of counts)",
                    b.max
                ),
            )),
            (Some(b), Some(n)) if b.max < n => parts.push((
                Severity::Critical,
                format!(
                    "{v}: MaxCapacity {} is below the need {n}: Application Auto Scaling would scale prepare's scale-up back to {}",
                    b.max, b.max
                ),
            )),
            (Some(b), Some(n)) => oks.push(format!("{v}: {}..{} allows {n}", b.min, b.max)),
            (None, _) => match theirs {
                Some(Err(e)) => parts.push((
                    Severity::Unknown,
                    format!("{v}: no scalable target here; the active's could not be read: {e}"),
                )),
                Some(Ok(t)) => match t.iter().find(|b| &b.variant == v) {
                    Some(b) => parts.push((
                        Severity::Warning,
                        format!(
                            "{v}: no scalable target registered, the active's variant has one ({}..{}): after a switch it would not scale with the load",
                            b.min, b.max
                        ),
                    )),
                    None => oks.push(format!("{v}: not autoscaled, nor is the active's")),
                },
                None => oks.push(format!("{v}: not autoscaled")),
            },
        }
    }
    at(combine(parts, oks.join("; ")))
}

/// One provisioned endpoint of the standby region as the quota check counts
/// it: each variant's instance type and current instances, and the
/// endpoint's measured need (`None`: unmeasured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub endpoint: String,
    /// (instance type, current instances) per provisioned variant.
    pub variants: Vec<(String, u32)>,
    pub need: Option<u32>,
}

/// Instances of each type the region's provisioned endpoints would hold
/// once prepare scaled each variant up to its endpoint's need (a variant
/// above it keeps its count, as prepare never lowers). `Err` names an
/// endpoint whose need is not measured.
pub fn usage_after(endpoints: &[Usage]) -> Result<BTreeMap<String, u32>, String> {
    let mut out: BTreeMap<String, u32> = BTreeMap::new();
    for e in endpoints {
        let Some(need) = e.need else {
            return Err(format!(
                "the need of {} is not measured (cost.instance_invocations_per_minute, a whole hour of counts)",
                e.endpoint
            ));
        };
        for (t, n) in &e.variants {
            *out.entry(t.clone()).or_default() += (*n).max(need);
        }
    }
    Ok(out)
}

/// The quota Service Quotas names for an instance type's endpoints.
pub fn quota_name(instance_type: &str) -> String {
    format!("{instance_type} for endpoint usage")
}

/// The `quota` check of `model`'s endpoint `endpoint`: for each of its
/// `types` (instance types of its provisioned variants), the applied quota
/// (`quotas`: by instance type, from `ListServiceQuotas`) against what the
/// region's endpoints would use after prepare's scale-up (`usage`, from
/// [`usage_after`]). Critical below it; warning when the use is within 10%
/// of the quota (at least 90% of it); unknown when a read failed, the need
/// is unmeasured, or the quota is not listed.
pub fn judge_quota(
    model: &str,
    endpoint: &str,
    types: &[String],
    usage: &Result<BTreeMap<String, u32>, String>,
    quotas: &Result<BTreeMap<String, f64>, String>,
) -> Finding {
    let at = |j| finding(model, endpoint, Check::Quota, j);
    if types.is_empty() {
        return at((
            Severity::Ok,
            "no provisioned variant (no instance quota)".into(),
        ));
    }
    let quotas = match quotas {
        Ok(q) => q,
        Err(e) => return at((Severity::Unknown, format!("ListServiceQuotas failed: {e}"))),
    };
    let usage = match usage {
        Ok(u) => u,
        Err(e) => return at((Severity::Unknown, e.clone())),
    };
    let mut parts: Vec<Judged> = Vec::new();
    let mut oks: Vec<String> = Vec::new();
    let mut seen: Vec<&String> = Vec::new();
    for t in types {
        if seen.contains(&t) {
            continue;
        }
        seen.push(t);
        let used = usage.get(t).copied().unwrap_or(0);
        match quotas.get(t) {
            None => parts.push((
                Severity::Unknown,
                format!("no applied quota {:?} listed", quota_name(t)),
            )),
            Some(q) if (used as f64) > *q => parts.push((
                Severity::Critical,
                format!(
                    "{:?} is {q}, below the {used} the region's endpoints would use scaled up to the need",
                    quota_name(t)
                ),
            )),
            Some(q) if (used as f64) >= 0.9 * q => parts.push((
                Severity::Warning,
                format!(
                    "{:?} is {q}: scaled up to the need the region's endpoints would use {used}, within 10% of it",
                    quota_name(t)
                ),
            )),
            Some(q) => oks.push(format!("{t}: would use {used} of {q}")),
        }
    }
    at(combine(parts, oks.join("; ")))
}

type Judged = (Severity, String);

/// The `model` and `instance_type` checks: variant by variant (by name),
/// the images and model data, and the instance types, against the active's.
fn compare_variants(d: &Described, active: Option<&Seen>) -> (Judged, Judged) {
    let unknown = |why: String| ((Severity::Unknown, why.clone()), (Severity::Unknown, why));
    let mine = match &d.variants {
        Ok(v) => v,
        Err(e) => return unknown(format!("its models could not be read: {e}")),
    };
    let theirs = match active.map(|a| &a.state) {
        None => {
            return (
                (
                    Severity::Ok,
                    "the active region has no such endpoint to compare with".into(),
                ),
                (Severity::Ok, "nothing to compare with".into()),
            );
        }
        Some(Err(e)) => {
            let why = format!("the active's endpoint could not be read: {e}");
            return unknown(why);
        }
        Some(Ok(None)) => {
            return (
                (
                    Severity::Ok,
                    "the active region's endpoint does not exist".into(),
                ),
                (Severity::Ok, "nothing to compare with".into()),
            );
        }
        Some(Ok(Some(a))) => match &a.variants {
            Ok(v) => v,
            Err(e) => {
                return unknown(format!("the active's models could not be read: {e}"));
            }
        },
    };
    let image_of = |v: &Variant| -> String {
        v.containers
            .iter()
            .map(|(image, data)| match data {
                Some(d) => format!("{image} with {d}"),
                None => image.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut model_diffs = Vec::new();
    let mut type_diffs = Vec::new();
    for a in theirs {
        match mine.iter().find(|m| m.name == a.name) {
            None => model_diffs.push(format!("no variant {} (the active has it)", a.name)),
            Some(m) => {
                // An inference-component variant names no containers on
                // either side: nothing to compare.
                if m.containers != a.containers {
                    model_diffs.push(format!(
                        "{} runs {}, the active runs {}",
                        a.name,
                        image_of(m),
                        image_of(a)
                    ));
                }
                if m.instance_type != a.instance_type {
                    type_diffs.push(format!(
                        "{} on {}, the active on {}",
                        a.name,
                        m.instance_type.as_deref().unwrap_or("serverless"),
                        a.instance_type.as_deref().unwrap_or("serverless")
                    ));
                }
            }
        }
    }
    let model = if model_diffs.is_empty() {
        (
            Severity::Ok,
            "the same images and model data as the active".into(),
        )
    } else {
        (Severity::Critical, model_diffs.join("; "))
    };
    let itype = if type_diffs.is_empty() {
        (Severity::Ok, "the same instance types as the active".into())
    } else {
        (Severity::Warning, type_diffs.join("; "))
    };
    (model, itype)
}

/// The worst severity of `findings` (`Ok` for none).
pub fn worst(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// One line for the journal and `failoverd status`: `ready`, or the worst
/// severity and every finding that is neither ok nor info, each once with
/// the models it concerns (`[chat, fraud]`) when a shared endpoint gives
/// the same finding for several.
pub fn summary(findings: &[Finding]) -> String {
    let mut groups: Vec<(&Finding, Vec<&str>)> = Vec::new();
    for f in findings.iter().filter(|f| f.severity > Severity::Info) {
        match groups.iter_mut().find(|(g, _)| {
            g.endpoint == f.endpoint
                && g.check == f.check
                && g.severity == f.severity
                && g.detail == f.detail
        }) {
            Some((_, models)) => {
                if !models.contains(&f.model.as_str()) {
                    models.push(&f.model);
                }
            }
            None => groups.push((f, vec![f.model.as_str()])),
        }
    }
    if groups.is_empty() {
        return "ready".to_string();
    }
    let bad: Vec<String> = groups
        .iter()
        .map(|(f, models)| {
            let named: Vec<&str> = models
                .iter()
                .copied()
                .filter(|m| !m.is_empty() && *m != SHARED)
                .collect();
            if named.is_empty() {
                f.to_string()
            } else {
                format!("{f} [{}]", named.join(", "))
            }
        })
        .collect();
    format!("{}: {}", worst(findings).as_str(), bad.join("; "))
}

/// The readiness matrix's row for one region: the worst severity of each
/// model's findings (the status page's cells, `failoverd status`'s
/// per-model summary).
pub fn cells(findings: &[Finding]) -> BTreeMap<String, Severity> {
    let mut out: BTreeMap<String, Severity> = BTreeMap::new();
    for f in findings {
        let c = out.entry(f.model.clone()).or_insert(Severity::Ok);
        *c = (*c).max(f.severity);
    }
    out
}

/// Where a `readiness` journal line's per-model cells start.
pub const CELLS_MARK: &str = " | models: ";

/// The cells as the journal line ends: ` | models: chat=critical fraud=ok`.
pub fn cells_text(cells: &BTreeMap<String, Severity>) -> String {
    let parts: Vec<String> = cells
        .iter()
        .map(|(m, s)| format!("{m}={}", s.as_str()))
        .collect();
    format!("{CELLS_MARK}{}", parts.join(" "))
}

/// The cells of a `readiness` journal line ([`cells_text`]); `None` for a
/// line without them (an older daemon's, the active's).
pub fn cells_of_line(detail: &str) -> Option<BTreeMap<String, Severity>> {
    let (_, tail) = detail.rsplit_once(CELLS_MARK)?;
    tail.split_whitespace()
        .map(|kv| {
            let (m, s) = kv.rsplit_once('=')?;
            Some((m.to_string(), Severity::parse(s)?))
        })
        .collect()
}

/// What a standby daemon publishes of its last readiness round in its vote
/// (`core::quorum::Vote::readiness`), so that every daemon's planner sees
/// every standby's readiness: against which active region it was judged,
/// the worst severity, the critical findings (`endpoint check` each), and
/// how long before the vote was written the round ended, on the writer's
/// monotonic clock (so the reader's judgement of its age needs no
/// agreement between clocks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub against: String,
    pub worst: Severity,
    pub critical: Vec<String>,
    pub checked_ago_ms: u64,
}

impl Published {
    /// From a round's findings (`critical` lists the critical ones).
    pub fn of(against: &str, findings: &[Finding], checked_ago_ms: u64) -> Self {
        Self {
            against: against.to_string(),
            worst: worst(findings),
            critical: findings
                .iter()
                .filter(|f| f.severity == Severity::Critical)
                .map(|f| format!("{} {}", f.endpoint, f.check.as_str()))
                .fold(Vec::new(), |mut v, c| {
                    if !v.contains(&c) {
                        v.push(c);
                    }
                    v
                }),
            checked_ago_ms,
        }
    }
}

/// A region's readiness as the planner takes it (`core::plan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "readiness", content = "why")]
pub enum Ready {
    /// Its latest reading, fresh and against the current active region,
    /// has no critical finding.
    Ready,
    /// Its latest fresh reading against the current active region has a
    /// critical finding (which ones).
    Unready(String),
    /// No reading the planner may use: none published, stale, judged
    /// against another active region, or from a vote that is not fresh.
    /// Taken as ready: the planner never demotes a region on a reading it
    /// does not have.
    Unknown,
}

impl Ready {
    pub fn is_unready(&self) -> bool {
        matches!(self, Ready::Unready(_))
    }
}

/// Every standby's readiness, by region (absent: [`Ready::Unknown`]).
pub type FleetReadiness = BTreeMap<String, Ready>;

/// The fleet's readiness from the votes: only fresh observers' (`fresh`,
/// the tally's), only readings judged against `active` (the record's
/// active region) and at most `stale_after_ms` old when the vote was
/// written. A stale reading is unknown, never unready. A region whose
/// daemon's vote is not fresh cannot take over anyway (`core::plan`).
pub fn fleet_readiness(
    votes: &[Vote],
    fresh: &[String],
    active: &str,
    stale_after_ms: u64,
) -> FleetReadiness {
    votes
        .iter()
        .filter(|v| fresh.contains(&v.observer) && v.observer != active)
        .map(|v| {
            let r = match &v.readiness {
                Some(p) if p.against == active && p.checked_ago_ms <= stale_after_ms => {
                    if p.worst == Severity::Critical {
                        Ready::Unready(if p.critical.is_empty() {
                            "critical".to_string()
                        } else {
                            p.critical.join(", ")
                        })
                    } else {
                        Ready::Ready
                    }
                }
                _ => Ready::Unknown,
            };
            (v.observer.clone(), r)
        })
        .collect()
}

/// How old a published reading may be and still count: two rounds.
pub fn stale_after_ms(readiness_interval: std::time::Duration) -> u64 {
    (readiness_interval.as_millis() as u64).saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(image: &str, itype: &str) -> Variant {
        Variant {
            name: "AllTraffic".into(),
            containers: vec![(image.into(), Some("s3://m/model.tar.gz".into()))],
            instance_type: Some(itype.into()),
        }
    }

    fn seen(image: &str, itype: &str, instances: u32) -> Seen {
        Seen {
            endpoint: "prov".into(),
            state: Ok(Some(Described {
                status: "InService".into(),
                serves: true,
                failure_reason: None,
                instances: Some(instances),
                counts: vec![("AllTraffic".into(), instances)],
                variants: Ok(vec![variant(image, itype)]),
                pools: Vec::new(),
                units: None,
            })),
        }
    }

    fn of(fs: &[Finding], c: Check) -> &Finding {
        fs.iter().find(|f| f.check == c).unwrap()
    }

    #[test]
    fn a_matching_standby_is_ready_and_every_check_reports() {
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let fs = judge(
            "chat",
            Reached::Variants,
            &seen("img:2", "ml.g5.xlarge", 4),
            Some(&a),
            Tier::Tier1,
            Some(4),
        );
        assert_eq!(fs.len(), Check::ENDPOINT.len());
        assert_eq!(worst(&fs), Severity::Ok, "{fs:?}");
        assert_eq!(summary(&fs), "ready");
    }

    /// With pools (or units configured) the `capacity` check compares
    /// units: a standby that holds the need's count of instances but fell
    /// back to a smaller type is short, and the finding names the pools.
    #[test]
    fn capacity_is_judged_in_units_when_the_standby_runs_on_pools() {
        use crate::core::pools::PoolCount;
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let mut mine = seen("img:2", "ml.g5.xlarge", 4);
        let Ok(Some(d)) = &mut mine.state else {
            unreachable!()
        };
        d.pools = vec![(
            "AllTraffic".into(),
            vec![
                PoolCount {
                    instance_type: "ml.g5.2xlarge".into(),
                    current: 1,
                },
                PoolCount {
                    instance_type: "ml.g5.xlarge".into(),
                    current: 3,
                },
            ],
        )];
        d.units = Some(5.0);
        let judged =
            |tier, need| judge("chat", Reached::Variants, &mine, Some(&a), tier, Some(need));
        let fs = judged(Tier::Tier1, 8);
        let c = of(&fs, Check::Capacity);
        assert_eq!(c.severity, Severity::Critical, "{c:?}");
        assert_eq!(
            c.detail,
            "holds 5 units (pools AllTraffic: ml.g5.2xlarge 1, ml.g5.xlarge 3), the fleet needs 8 units, and tier1 keeps its standby at the need"
        );
        assert_eq!(
            of(&judged(Tier::Tier2, 8), Check::Capacity).severity,
            Severity::Info
        );
        // 4 instances, the need's count, but units decide: 5 of 4 is ok.
        assert_eq!(
            of(&judged(Tier::Tier1, 4), Check::Capacity).severity,
            Severity::Ok
        );
        assert_eq!(
            of(&judged(Tier::Tier1, 5), Check::Capacity).severity,
            Severity::Ok
        );
        assert_eq!(
            of(&judged(Tier::Tier1, 6), Check::Capacity).severity,
            Severity::Critical
        );
    }

    #[test]
    fn drift_and_shortfalls_are_found_with_their_severity() {
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let fs = judge(
            "chat",
            Reached::Variants,
            &seen("img:1", "ml.g5.xlarge", 4),
            Some(&a),
            Tier::Tier2,
            Some(4),
        );
        let m = of(&fs, Check::Model);
        assert_eq!(m.severity, Severity::Critical);
        assert!(
            m.detail
                .contains("runs img:1 with s3://m/model.tar.gz, the active runs img:2"),
            "{m}"
        );
        let fs = judge(
            "chat",
            Reached::Variants,
            &seen("img:2", "ml.m5.large", 1),
            Some(&a),
            Tier::Tier2,
            Some(4),
        );
        assert_eq!(of(&fs, Check::InstanceType).severity, Severity::Warning);
        assert_eq!(
            of(&fs, Check::Capacity).severity,
            Severity::Info,
            "tier2: prepare scales"
        );
        let fs = judge(
            "chat",
            Reached::Variants,
            &seen("img:2", "ml.g5.xlarge", 1),
            Some(&a),
            Tier::Tier1,
            Some(4),
        );
        assert_eq!(
            of(&fs, Check::Capacity).severity,
            Severity::Critical,
            "tier1 holds the need"
        );
        assert!(
            summary(&fs).starts_with("critical: prov capacity"),
            "{}",
            summary(&fs)
        );
        let fs = judge(
            "chat",
            Reached::Variants,
            &seen("img:2", "ml.g5.xlarge", 1),
            Some(&a),
            Tier::Tier1,
            None,
        );
        assert_eq!(
            of(&fs, Check::Capacity).severity,
            Severity::Unknown,
            "never ok unmeasured"
        );
    }

    #[test]
    fn a_failed_update_a_missing_endpoint_and_unread_sides_are_never_ok() {
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let mut failed = seen("img:2", "ml.g5.xlarge", 4);
        if let Ok(Some(d)) = &mut failed.state {
            d.failure_reason = Some("Unable to provision requested ML compute capacity".into());
        }
        let fs = judge(
            "chat",
            Reached::Variants,
            &failed,
            Some(&a),
            Tier::Tier2,
            Some(4),
        );
        assert_eq!(of(&fs, Check::LastUpdate).severity, Severity::Warning);

        let missing = Seen {
            endpoint: "prov".into(),
            state: Ok(None),
        };
        let fs = judge(
            "chat",
            Reached::Variants,
            &missing,
            Some(&a),
            Tier::Tier2,
            Some(4),
        );
        assert_eq!(of(&fs, Check::Exists).severity, Severity::Critical);
        assert_eq!(fs.len(), Check::ENDPOINT.len());

        let unread = Seen {
            endpoint: "prov".into(),
            state: Err("timeout".into()),
        };
        let fs = judge(
            "chat",
            Reached::Variants,
            &unread,
            Some(&a),
            Tier::Tier2,
            Some(4),
        );
        assert!(fs.iter().all(|f| f.severity == Severity::Unknown), "{fs:?}");

        let active_unread = Seen {
            endpoint: "prov".into(),
            state: Err("us-east-1 is down".into()),
        };
        let fs = judge(
            "chat",
            Reached::Variants,
            &seen("img:2", "ml.g5.xlarge", 4),
            Some(&active_unread),
            Tier::Tier2,
            Some(4),
        );
        assert_eq!(of(&fs, Check::Model).severity, Severity::Unknown);
        assert_eq!(of(&fs, Check::InstanceType).severity, Severity::Unknown);
    }

    #[test]
    fn findings_are_keyed_by_model_and_a_components_endpoint_leaves_capacity_to_it() {
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let fs = judge(
            "llm",
            Reached::Component,
            &seen("img:1", "ml.g5.xlarge", 1),
            Some(&a),
            Tier::Tier1,
            Some(4),
        );
        assert!(fs.iter().all(|f| f.model == "llm"), "{fs:?}");
        // A drifted variant image is still critical (the variant's own
        // containers).
        assert_eq!(of(&fs, Check::Model).severity, Severity::Critical);
        // The endpoint's instances are not the component's capacity.
        assert!(fs.iter().all(|f| f.check != Check::Capacity), "{fs:?}");
        assert_eq!(fs.len(), Check::ENDPOINT.len() - 1);
    }

    fn spec(image: &str) -> ComponentSpec {
        ComponentSpec {
            model: None,
            model_read: None,
            image: Some(image.into()),
            artifact_url: Some("s3://m/llm.tar.gz".into()),
            cpu_cores: Some(1.0),
            accelerators: None,
            min_memory_mb: Some(1024),
            max_memory_mb: None,
        }
    }

    fn comp(component: &str, image: &str, copies: u32) -> ComponentSeen {
        ComponentSeen {
            endpoint: "gpu".into(),
            component: component.into(),
            state: Ok(Some(ComponentDescribed {
                on_endpoint: "gpu".into(),
                status: "InService".into(),
                failure_reason: None,
                copies: Some(copies),
                spec: spec(image),
            })),
        }
    }

    fn described(c: &mut ComponentSeen) -> &mut ComponentDescribed {
        c.state.as_mut().unwrap().as_mut().unwrap()
    }

    fn jc(
        mine: &ComponentSeen,
        theirs: Option<&ComponentSeen>,
        tier: Tier,
        need: Option<u32>,
    ) -> Vec<Finding> {
        let fs = judge_component("llm", mine, theirs, tier, need);
        assert_eq!(
            fs.iter().map(|f| f.check).collect::<Vec<_>>(),
            COMPONENT.to_vec(),
            "every check, in order"
        );
        assert!(
            fs.iter()
                .all(|f| f.model == "llm" && f.endpoint == format!("gpu/{}", mine.component)),
            "{fs:?}"
        );
        fs
    }

    #[test]
    fn a_matching_component_is_ready() {
        let a = comp("llm-e", "img:2", 2);
        let fs = jc(&comp("llm-w", "img:2", 2), Some(&a), Tier::Tier1, Some(2));
        assert_eq!(worst(&fs), Severity::Ok, "{fs:?}");
        assert_eq!(summary(&fs), "ready");
    }

    #[test]
    fn a_component_missing_elsewhere_or_not_in_service_is_critical() {
        let a = comp("llm-e", "img:2", 2);
        let missing = ComponentSeen {
            endpoint: "gpu".into(),
            component: "llm-w".into(),
            state: Ok(None),
        };
        let fs = jc(&missing, Some(&a), Tier::Tier2, Some(2));
        let e = of(&fs, Check::Exists);
        assert_eq!(e.severity, Severity::Critical, "{e}");
        assert!(e.detail.contains("no inference component llm-w"), "{e}");
        assert!(
            fs[1..].iter().all(|f| f.severity == Severity::Unknown),
            "{fs:?}"
        );

        let mut moved = comp("llm-w", "img:2", 2);
        described(&mut moved).on_endpoint = "other".into();
        let fs = jc(&moved, Some(&a), Tier::Tier2, Some(2));
        let e = of(&fs, Check::Exists);
        assert_eq!(e.severity, Severity::Critical, "{e}");
        assert!(
            e.detail.contains("sits on endpoint other, not on gpu"),
            "{e}"
        );

        for (status, severity) in [
            ("Creating", Severity::Critical),
            ("Failed", Severity::Critical),
            ("Deleting", Severity::Critical),
            ("Updating", Severity::Warning),
        ] {
            let mut c = comp("llm-w", "img:2", 2);
            described(&mut c).status = status.into();
            let s = of(&jc(&c, Some(&a), Tier::Tier2, Some(2)), Check::Serving).clone();
            assert_eq!(s.severity, severity, "{s}");
            assert!(s.detail.starts_with(status), "{s}");
        }

        let mut failed = comp("llm-w", "img:2", 2);
        described(&mut failed).failure_reason = Some("InsufficientInstanceCapacity".into());
        let fs = jc(&failed, Some(&a), Tier::Tier2, Some(2));
        assert_eq!(of(&fs, Check::LastUpdate).severity, Severity::Warning);

        let unread = ComponentSeen {
            endpoint: "gpu".into(),
            component: "llm-w".into(),
            state: Err("throttled".into()),
        };
        let fs = jc(&unread, Some(&a), Tier::Tier2, Some(2));
        assert!(fs.iter().all(|f| f.severity == Severity::Unknown), "{fs:?}");
    }

    #[test]
    fn a_component_with_other_artefacts_is_critical_naming_what_differs() {
        let a = comp("llm-e", "img:2", 2);
        let fs = jc(&comp("llm-w", "img:1", 2), Some(&a), Tier::Tier2, Some(2));
        let m = of(&fs, Check::Model);
        assert_eq!(m.severity, Severity::Critical, "{m}");
        assert_eq!(m.detail, "image img:1, the active's img:2");
        assert!(
            summary(&fs).contains("gpu/llm-w model: critical"),
            "{}",
            summary(&fs)
        );

        let mut data = comp("llm-w", "img:2", 2);
        described(&mut data).spec.artifact_url = Some("s3://m/llm-old.tar.gz".into());
        let m = of(&jc(&data, Some(&a), Tier::Tier2, Some(2)), Check::Model).clone();
        assert_eq!(m.severity, Severity::Critical, "{m}");
        assert!(
            m.detail
                .contains("model data s3://m/llm-old.tar.gz, the active's s3://m/llm.tar.gz"),
            "{m}"
        );

        let mut compute = comp("llm-w", "img:2", 2);
        described(&mut compute).spec.min_memory_mb = Some(512);
        described(&mut compute).spec.accelerators = Some(1.0);
        let m = of(&jc(&compute, Some(&a), Tier::Tier2, Some(2)), Check::Model).clone();
        assert_eq!(m.severity, Severity::Critical, "{m}");
        assert!(
            m.detail.contains("accelerators 1, the active's none"),
            "{m}"
        );
        assert!(
            m.detail.contains("min memory MB 512, the active's 1024"),
            "{m}"
        );

        // Nothing to compare with; the active unread; a SageMaker model.
        let fs = jc(&comp("llm-w", "img:1", 2), None, Tier::Tier2, Some(2));
        assert_eq!(of(&fs, Check::Model).severity, Severity::Ok);
        let unread = ComponentSeen {
            endpoint: "gpu".into(),
            component: "llm-e".into(),
            state: Err("us-east-1 is down".into()),
        };
        let fs = jc(
            &comp("llm-w", "img:2", 2),
            Some(&unread),
            Tier::Tier2,
            Some(2),
        );
        assert_eq!(of(&fs, Check::Model).severity, Severity::Unknown);
        let mut by_model = comp("llm-w", "img:2", 2);
        described(&mut by_model).spec = ComponentSpec {
            model: Some("llm-model".into()),
            ..spec("x")
        };
        described(&mut by_model).spec.image = None;
        let mut a_by_model = a.clone();
        described(&mut a_by_model).spec = described(&mut by_model).spec.clone();
        let m = of(
            &jc(&by_model, Some(&a_by_model), Tier::Tier2, Some(2)),
            Check::Model,
        )
        .clone();
        assert_eq!(m.severity, Severity::Unknown, "never ok unread: {m}");
        assert!(m.detail.contains("whose containers were not read"), "{m}");

        // A SageMaker model's containers, once read, are compared: the
        // models' names differ per region, their containers must not.
        let model = |name: &str, read: ModelRead| {
            let mut c = comp("llm-w", "x", 2);
            described(&mut c).spec = ComponentSpec {
                model: Some(name.into()),
                model_read: Some(read),
                image: None,
                artifact_url: None,
                ..spec("x")
            };
            c
        };
        let v1 = || ModelRead::Containers(vec![("img:1".into(), Some("s3://m/a".into()))]);
        let v2 = || ModelRead::Containers(vec![("img:2".into(), Some("s3://m/a".into()))]);
        let judge = |mine: &ComponentSeen, theirs: &ComponentSeen| {
            of(&jc(mine, Some(theirs), Tier::Tier2, Some(2)), Check::Model).clone()
        };
        let m = judge(&model("llm-w-model", v1()), &model("llm-e-model", v1()));
        assert_eq!(m.severity, Severity::Ok, "{m}");
        let m = judge(&model("llm-w-model", v1()), &model("llm-e-model", v2()));
        assert_eq!(m.severity, Severity::Critical, "{m}");
        assert!(
            m.detail
                .contains("containers img:1 with s3://m/a, the active's img:2 with s3://m/a"),
            "{m}"
        );
        // A model against the active's own container: the same container is
        // the same model.
        let mut own = comp("llm-e", "img:1", 2);
        described(&mut own).spec.artifact_url = Some("s3://m/a".into());
        let m = judge(&model("llm-w-model", v1()), &own);
        assert_eq!(m.severity, Severity::Ok, "{m}");
        let m = judge(&model("llm-w-model", v2()), &own);
        assert_eq!(m.severity, Severity::Critical, "{m}");
        // A model gone: no new copy can start.
        let m = judge(&model("llm-w-model", ModelRead::Missing), &own);
        assert_eq!(m.severity, Severity::Critical, "{m}");
        assert!(m.detail.contains("which does not exist"), "{m}");
        let m = judge(
            &model("llm-w-model", ModelRead::Failed("throttled".into())),
            &own,
        );
        assert_eq!(m.severity, Severity::Unknown, "{m}");
        assert!(m.detail.contains("could not be read: throttled"), "{m}");
    }

    #[test]
    fn a_components_copies_are_judged_against_the_need_and_the_actives() {
        let a = comp("llm-e", "img:2", 3);
        let cap = |mine: u32, theirs: Option<&ComponentSeen>, tier, need| {
            of(
                &jc(&comp("llm-w", "img:2", mine), theirs, tier, need),
                Check::Capacity,
            )
            .clone()
        };
        let f = cap(3, Some(&a), Tier::Tier1, Some(3));
        assert_eq!(f.severity, Severity::Ok, "{f}");
        let f = cap(1, Some(&a), Tier::Tier1, Some(2));
        assert_eq!(f.severity, Severity::Critical, "tier1 holds the need: {f}");
        assert!(f.detail.contains("holds 1 copies, the need is 2"), "{f}");
        let f = cap(1, Some(&a), Tier::Tier2, Some(2));
        assert_eq!(f.severity, Severity::Info, "tier2: prepare scales: {f}");
        // At the need but below the active's copies: prepare raises it to
        // them, for every tier.
        let f = cap(2, Some(&a), Tier::Tier1, Some(2));
        assert_eq!(f.severity, Severity::Info, "{f}");
        assert!(f.detail.contains("the active's 3"), "{f}");
        // Unmeasured: unknown, whatever the active's copies.
        for theirs in [Some(&a), None] {
            let f = cap(3, theirs, Tier::Tier1, None);
            assert_eq!(f.severity, Severity::Unknown, "{f}");
            assert!(f.detail.contains("the need is not measured"), "{f}");
        }
        let unread = ComponentSeen {
            endpoint: "gpu".into(),
            component: "llm-e".into(),
            state: Err("down".into()),
        };
        assert_eq!(
            cap(3, Some(&unread), Tier::Tier1, Some(3)).severity,
            Severity::Unknown
        );
        assert_eq!(
            cap(1, Some(&unread), Tier::Tier1, Some(3)).severity,
            Severity::Critical
        );
        assert_eq!(cap(1, None, Tier::Tier1, Some(1)).severity, Severity::Ok);
    }

    #[test]
    fn the_summary_names_each_shared_finding_once_with_its_models_and_cells_round_trip() {
        let a = seen("img:2", "ml.g5.xlarge", 4);
        let mut fs = Vec::new();
        for m in ["chat", "fraud"] {
            fs.extend(judge(
                m,
                Reached::Variants,
                &seen("img:1", "ml.g5.xlarge", 4),
                Some(&a),
                Tier::Tier2,
                Some(4),
            ));
        }
        fs.extend(judge(
            "ocr",
            Reached::Variants,
            &seen("img:2", "ml.g5.xlarge", 4),
            Some(&a),
            Tier::Tier2,
            Some(4),
        ));
        let s = summary(&fs);
        assert_eq!(s.matches("prov model: critical").count(), 1, "{s}");
        assert!(s.ends_with("[chat, fraud]"), "{s}");
        let p = Published::of("us-east-1", &fs, 0);
        assert_eq!(p.critical, vec!["prov model".to_string()]);
        let c = cells(&fs);
        assert_eq!(c["chat"], Severity::Critical);
        assert_eq!(c["ocr"], Severity::Ok);
        let line = format!("us-west-2 against us-east-1: {s}{}", cells_text(&c));
        assert_eq!(cells_of_line(&line), Some(c));
        assert_eq!(cells_of_line("us-west-2 against us-east-1: ready"), None);
    }

    fn bounds(max: u32) -> Result<Vec<Bounds>, String> {
        Ok(vec![Bounds {
            variant: "AllTraffic".into(),
            min: 1,
            max,
        }])
    }

    #[test]
    fn autoscaling_bounds_below_the_need_are_critical_and_a_missing_target_warns() {
        fn j(
            mine: Result<Vec<Bounds>, String>,
            theirs: Option<&Result<Vec<Bounds>, String>>,
            need: Option<u32>,
        ) -> Finding {
            let v = vec!["AllTraffic".to_string()];
            judge_autoscaling("chat", "prov", &v, &mine, theirs, need)
        }
        let f = j(bounds(2), Some(&bounds(8)), Some(4));
        assert_eq!(f.severity, Severity::Critical, "{f}");
        assert!(
            f.detail.contains("MaxCapacity 2 is below the need 4"),
            "{f}"
        );
        assert_eq!(f.check, Check::Autoscaling);
        assert_eq!(f.model, "chat");
        assert_eq!(
            j(bounds(4), Some(&bounds(8)), Some(4)).severity,
            Severity::Ok
        );
        let f = j(Ok(vec![]), Some(&bounds(8)), Some(4));
        assert_eq!(f.severity, Severity::Warning, "{f}");
        assert_eq!(
            j(Ok(vec![]), Some(&Ok(vec![])), Some(4)).severity,
            Severity::Ok
        );
        assert_eq!(j(Ok(vec![]), None, None).severity, Severity::Ok);
        assert_eq!(
            j(Err("denied".into()), Some(&bounds(8)), Some(4)).severity,
            Severity::Unknown
        );
        assert_eq!(
            j(bounds(8), Some(&bounds(8)), None).severity,
            Severity::Unknown
        );
        assert_eq!(
            j(Ok(vec![]), Some(&Err("down".into())), Some(4)).severity,
            Severity::Unknown
        );
        let none: Vec<String> = Vec::new();
        assert_eq!(
            judge_autoscaling("chat", "sls", &none, &Err("x".into()), None, None).severity,
            Severity::Ok,
            "serverless: nothing to scale"
        );
    }

    #[test]
    fn the_quota_is_judged_against_the_regions_use_after_the_scale_up() {
        let usage = usage_after(&[
            Usage {
                endpoint: "prov".into(),
                variants: vec![("ml.g5.xlarge".into(), 1)],
                need: Some(4),
            },
            Usage {
                endpoint: "other".into(),
                variants: vec![("ml.g5.xlarge".into(), 3), ("ml.m5.large".into(), 1)],
                need: Some(2),
            },
        ]);
        assert_eq!(
            usage,
            Ok(BTreeMap::from([
                ("ml.g5.xlarge".to_string(), 7),
                ("ml.m5.large".to_string(), 2)
            ]))
        );
        let types = vec!["ml.g5.xlarge".to_string()];
        let q = |v: f64| Ok(BTreeMap::from([("ml.g5.xlarge".to_string(), v)]));
        let j = |quotas: Result<BTreeMap<String, f64>, String>| {
            judge_quota("chat", "prov", &types, &usage, &quotas)
        };
        let f = j(q(6.0));
        assert_eq!(f.severity, Severity::Critical, "{f}");
        assert!(
            f.detail
                .contains("\"ml.g5.xlarge for endpoint usage\" is 6, below the 7"),
            "{f}"
        );
        assert_eq!(j(q(7.0)).severity, Severity::Warning, "use at the quota");
        assert_eq!(j(q(7.7)).severity, Severity::Warning, "within 10%");
        assert_eq!(j(q(8.0)).severity, Severity::Ok);
        assert_eq!(
            j(Ok(BTreeMap::new())).severity,
            Severity::Unknown,
            "not listed"
        );
        assert_eq!(j(Err("throttled".into())).severity, Severity::Unknown);
        let unmeasured = usage_after(&[Usage {
            endpoint: "prov".into(),
            variants: vec![("ml.g5.xlarge".into(), 1)],
            need: None,
        }]);
        assert_eq!(
            judge_quota("chat", "prov", &types, &unmeasured, &q(100.0)).severity,
            Severity::Unknown
        );
    }
}
