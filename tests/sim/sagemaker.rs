//! SageMaker behind the daemon's `Endpoints` port: the control plane's
//! `DescribeEndpoint`, and warm-up invocations (`InvokeEndpoint`) with the
//! faults the lab's model server offers (`chaos/lab/model_server.rs`):
//! latency, cold starts (`ModelNotReadyException` while an idle endpoint
//! warms), throttling (`ThrottlingException` at a rate), model errors
//! (`ModelError`: the container answered), an outage
//! (`ServiceUnavailable`), and a hang (the call never answers; the runtime
//! client has no timeout, as `aws::clients::sagemaker_runtime` builds it).
//!
//! Answers map to `WarmUp` exactly as `aws::sagemaker::AwsEndpoints` maps
//! the SDK's errors: a model-level answer is `Answered`, not-ready codes
//! and transport failures are `NotReady`, a missing endpoint is `Refused`.
//!
//! The router's side, the `Inference` port ([`SmRuntime`]), runs the same
//! model behaviour and answers with the `InvokeError` kinds
//! `aws::runtime` maps SageMaker's answers to: `ModelNotReadyException`
//! (cold), `ThrottlingException`, `ModelError` (424 from the container),
//! `ServiceUnavailable` (outage), "Endpoint ... not found" (a missing
//! endpoint: `EndpointNotFound`), a transport failure (a refused link), and
//! no answer at all (a hang, a black-holed link: the runtime client has no
//! timeout; the router bounds every attempt). An endpoint that exists but
//! is not in a serving status (`Failed`, `OutOfService`, `Creating`) is
//! answered `ServiceUnavailable`: AWS does not document that answer, and
//! this is the reading that moves the router to the next region, as a
//! regional failure should.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use failoverd::ports::endpoints::{
    ComponentSpecification, ComponentState, ComponentStatus, Deleted, EndpointState as Described,
    EndpointStatus, Endpoints, VariantState, WarmUp,
};
use failoverd::ports::inference::{
    Answer, AsyncAccepted, AsyncInvocation, Delivery, Inference, Invocation, InvokeError,
    ModelFailure,
};
use failoverd::ports::{ErrorKind, PortError};
use hyper::header::HeaderValue;
use tokio::time::Instant;

use super::world::{Caller, Fault, Link, NetError, Rng, Svc, World};

/// `cost.readiness_interval` in the simulation (`fleet::with_cost`): the
/// period within which a drifted standby must be reported.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(60);

/// How a scale-up is refused, as SageMaker refuses one (issue 26).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `UpdateEndpointWeightsAndCapacities` answers 400
    /// `ResourceLimitExceeded` (the account's quota for the instance type
    /// in the region).
    Quota,
    /// The call is taken; the endpoint goes `Updating`, then back
    /// `InService` with its old counts and a `FailureReason`
    /// (InsufficientInstanceCapacity).
    Capacity,
}

/// A refused scale-up.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Simulated ms of the call.
    pub at_ms: u64,
    pub region: String,
    pub endpoint: String,
    pub kind: Refused,
    /// Instances asked for, and held.
    pub asked: u32,
    pub held: u32,
}

/// A standby's model drifted: its endpoint runs another image from
/// `from_ms` to `to_ms` (simulated ms).
#[derive(Debug, Clone)]
pub struct Drift {
    pub region: String,
    pub endpoint: String,
    pub from_ms: u64,
    pub to_ms: u64,
}

/// The `FailureReason` SageMaker leaves on an endpoint whose update could
/// not get instances.
pub const NO_CAPACITY: &str =
    "Unable to provision requested ML compute capacity due to InsufficientInstanceCapacity error";
/// How long a capacity-refused update shows `Updating` (longer than the
/// prepare step's poll, as a real update's minutes are).
const REFUSED_UPDATE_MS: u64 = 10_000;
/// How long SageMaker takes to place an inference component's new copies
/// (the component shows `Updating` until then).
const COPIES_PLACED_MS: u64 = 20_000;
/// A region short of capacity or quota refuses every scale-up for this long.
const SHORTAGE_MS: u64 = 180_000;
/// Chance that a scale-up opens a shortage in its region.
const SHORTAGE_CHANCE: f64 = 0.1;

/// How a region's models behave (the lab's `Behaviour`).
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Extra latency of each invocation.
    pub latency: Duration,
    /// An endpoint idle this long (or never invoked) is cold.
    pub cold_after_idle: Option<Duration>,
    /// How long a cold endpoint takes to warm.
    pub cold_start: Duration,
    /// Fraction of invocations throttled.
    pub throttle_rate: f64,
    /// Every invocation is answered with `ModelError` (the container ran).
    pub model_error: bool,
    /// Every call gets `ServiceUnavailable`.
    pub outage: bool,
    /// Calls never answer.
    pub hang: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(30),
            cold_after_idle: None,
            cold_start: Duration::ZERO,
            throttle_rate: 0.0,
            model_error: false,
            outage: false,
            hang: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct EndpointState {
    last_invoked: Option<Instant>,
    warming_until: Option<Instant>,
}

struct State {
    /// (region, endpoint) -> status; missing = the endpoint does not exist.
    status: BTreeMap<(String, String), EndpointStatus>,
    warm: BTreeMap<(String, String), EndpointState>,
    /// (region, endpoint) -> instances of its one provisioned variant,
    /// `AllTraffic` (1 unless set).
    instances: BTreeMap<(String, String), u32>,
    behaviour: BTreeMap<String, Behaviour>,
    /// Invocations answered by a model (not errors), by region.
    answered: BTreeMap<String, u64>,
    /// (region, endpoint) -> the image its model runs (`sim-model:1`
    /// unless set: a drifted standby runs another).
    images: BTreeMap<(String, String), String>,
    /// (region, endpoint) -> when (simulated ms) invocations arrived, the
    /// last ten minutes' (the cost invariant's ground truth of "serving"):
    /// the routers' calls, not prepare's warm-up (a warm-up is not traffic
    /// the routers sent, and a superseded failover's target it warmed is a
    /// standby like any other; seeds 4076, 11601, 16809).
    invoked: BTreeMap<(String, String), std::collections::VecDeque<u64>>,
    /// Every instance count lowered, in order.
    lowered: Vec<Lowering>,
    /// The fake's own random stream (forked from the world's, so the
    /// world's draws are not shifted).
    rng: Rng,
    /// Region -> until when (simulated ms) its scale-ups are refused, and how.
    shortage: BTreeMap<String, (u64, Refused)>,
    /// (region, endpoint) -> until when a refused update shows `Updating`.
    updating_until: BTreeMap<(String, String), u64>,
    /// (region, endpoint) -> its `FailureReason`.
    failure: BTreeMap<(String, String), String>,
    refusals: Vec<Refusal>,
    drifts: Vec<Drift>,
    /// (region, component) -> the inference component (none unless a test
    /// creates one: the simulated fleet maps no component).
    components: BTreeMap<(String, String), Component>,
}

/// One inference component: its copies as SageMaker places them.
#[derive(Debug, Clone)]
struct Component {
    endpoint: String,
    /// Copies placed and serving.
    current: u32,
    /// Copies asked for; placed at `placed_at_ms` (simulated ms).
    desired: u32,
    placed_at_ms: u64,
}

impl Component {
    /// The component as it stands at `at` (simulated ms): copies asked for
    /// are placed once their time has come.
    fn at(&mut self, at: u64) -> ComponentStatus {
        if self.current != self.desired && at >= self.placed_at_ms {
            self.current = self.desired;
        }
        if self.current == self.desired {
            ComponentStatus::InService
        } else {
            ComponentStatus::Updating
        }
    }
}

/// An instance count lowered by `UpdateEndpointWeightsAndCapacities`.
#[derive(Debug, Clone)]
pub struct Lowering {
    /// Simulated ms.
    pub at_ms: u64,
    pub region: String,
    pub endpoint: String,
    pub from: u32,
    pub to: u32,
}

/// SageMaker in every region.
pub struct FakeSageMaker {
    world: Arc<World>,
    state: Mutex<State>,
}

impl FakeSageMaker {
    pub fn new(world: Arc<World>) -> Arc<Self> {
        let mut rng = world.with_rng(|r| r.fork(0x5A6E_0026));
        // Half the seeds drift one region's provisioned model for five
        // minutes, at a random moment of the run's first ten.
        let drifts = if rng.chance(0.5) {
            let from_ms = rng.range(60_000, 600_000);
            vec![Drift {
                region: rng.pick(&super::schedule::REGIONS).to_string(),
                endpoint: "inference-provisioned".into(),
                from_ms,
                to_ms: from_ms + 300_000,
            }]
        } else {
            Vec::new()
        };
        Arc::new(Self {
            world,
            state: Mutex::new(State {
                rng,
                shortage: BTreeMap::new(),
                updating_until: BTreeMap::new(),
                failure: BTreeMap::new(),
                refusals: Vec::new(),
                drifts,
                status: BTreeMap::new(),
                warm: BTreeMap::new(),
                instances: BTreeMap::new(),
                behaviour: BTreeMap::new(),
                answered: BTreeMap::new(),
                images: BTreeMap::new(),
                invoked: BTreeMap::new(),
                lowered: Vec::new(),
                components: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create(&self, region: &str, endpoint: &str) {
        self.lock().status.insert(
            (region.to_string(), endpoint.to_string()),
            EndpointStatus::InService,
        );
    }

    /// Create inference component `component` on `endpoint` with `copies`
    /// copies, in service.
    pub fn create_component(&self, region: &str, endpoint: &str, component: &str, copies: u32) {
        self.lock().components.insert(
            (region.to_string(), component.to_string()),
            Component {
                endpoint: endpoint.to_string(),
                current: copies,
                desired: copies,
                placed_at_ms: 0,
            },
        );
    }

    /// Set an endpoint's status (`None`: delete it).
    pub fn set_status(&self, region: &str, endpoint: &str, s: Option<EndpointStatus>) {
        let k = (region.to_string(), endpoint.to_string());
        let mut g = self.lock();
        match s {
            Some(s) => g.status.insert(k, s),
            None => g.status.remove(&k),
        };
    }

    pub fn set_behaviour(&self, region: &str, b: Behaviour) {
        self.lock().behaviour.insert(region.to_string(), b);
    }

    pub fn behaviour(&self, region: &str) -> Behaviour {
        self.lock()
            .behaviour
            .get(region)
            .cloned()
            .unwrap_or_default()
    }

    fn err(op: &str, region: &str, kind: ErrorKind, msg: String) -> PortError {
        PortError::new(
            "SageMaker",
            op.to_string(),
            region.to_string(),
            kind,
            Fault(msg),
        )
    }
}

/// What the model does with one invocation, decided when it arrives.
#[derive(Debug, Clone)]
enum Outcome {
    /// The endpoint does not exist.
    Missing,
    /// The endpoint exists but is not in a serving status.
    NotServing(EndpointStatus),
    Outage,
    Throttled,
    /// Cold: `ModelNotReadyException` while it warms.
    Cold,
    ModelError,
    Ok,
}

impl FakeSageMaker {
    /// `endpoint`'s instance count in `region` (1 when never set).
    pub fn instances(&self, region: &str, endpoint: &str) -> u32 {
        self.lock()
            .instances
            .get(&(region.to_string(), endpoint.to_string()))
            .copied()
            .unwrap_or(1)
    }

    /// Whether `endpoint` in `region` exists in a status that serves.
    pub fn serves(&self, region: &str, endpoint: &str) -> bool {
        self.lock()
            .status
            .get(&(region.to_string(), endpoint.to_string()))
            .is_some_and(EndpointStatus::serves)
    }

    /// Invocations the models answered successfully, by region.
    pub fn answered(&self) -> BTreeMap<String, u64> {
        self.lock().answered.clone()
    }

    /// The refused scale-ups from the `from`-th on.
    pub fn refused_since(&self, from: usize) -> Vec<Refusal> {
        self.lock()
            .refusals
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// The drifts drawn for this run.
    pub fn drifts(&self) -> Vec<Drift> {
        self.lock().drifts.clone()
    }

    /// The lowerings from the `from`-th on.
    pub fn lowered_since(&self, from: usize) -> Vec<Lowering> {
        self.lock()
            .lowered
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// Whether an invocation of `endpoint` in `region` arrived in
    /// `[from_ms, to_ms]` (simulated ms; the last ten minutes are kept).
    pub fn invoked_between(&self, region: &str, endpoint: &str, from_ms: u64, to_ms: u64) -> bool {
        self.lock()
            .invoked
            .get(&(region.to_string(), endpoint.to_string()))
            .is_some_and(|q| q.iter().any(|t| (from_ms..=to_ms).contains(t)))
    }

    /// The model's decision for an invocation arriving now under `b`.
    /// `status_matters`: a real invocation is refused by an endpoint not
    /// in service; the warm-up (kept as the daemon's tests know it) only
    /// asks that the endpoint exist.
    fn decide(&self, region: &str, endpoint: &str, b: &Behaviour, status_matters: bool) -> Outcome {
        let key = (region.to_string(), endpoint.to_string());
        let at = self.world.elapsed_ms();
        let mut g = self.lock();
        if status_matters {
            let q = g.invoked.entry(key.clone()).or_default();
            q.push_back(at);
            while q.front().is_some_and(|t| at.saturating_sub(*t) > 600_000) {
                q.pop_front();
            }
        }
        let Some(status) = g.status.get(&key).cloned() else {
            return Outcome::Missing;
        };
        if status_matters && !status.serves() {
            return Outcome::NotServing(status);
        }
        if b.outage {
            return Outcome::Outage;
        }
        if b.throttle_rate > 0.0 && self.world.with_rng(|r| r.chance(b.throttle_rate)) {
            return Outcome::Throttled;
        }
        let now = Instant::now();
        let st = g.warm.entry(key).or_default();
        let cold = st.warming_until.is_some_and(|u| now < u)
            || b.cold_after_idle.is_some_and(|idle| {
                st.warming_until.is_none()
                    && st
                        .last_invoked
                        .is_none_or(|l| now.duration_since(l) >= idle)
            });
        if cold && !b.cold_start.is_zero() {
            if st.warming_until.is_none_or(|u| now >= u) {
                st.warming_until = Some(now + b.cold_start);
            }
            return Outcome::Cold;
        }
        st.warming_until = None;
        st.last_invoked = Some(now);
        if b.model_error {
            return Outcome::ModelError;
        }
        Outcome::Ok
    }
}

impl SmClient {
    /// One control-plane call: the network round trip (throttling and
    /// transport faults as the world decides), `f` applied to the state at
    /// the moment the request arrives.
    async fn control<T>(
        &self,
        op: &str,
        region: &str,
        f: impl FnOnce(&mut State) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let world = &self.sm.world;
        let a = world
            .send(&self.caller, Svc::SageMaker)
            .await
            .map_err(|e| match e {
                NetError::Throttled => FakeSageMaker::err(
                    op,
                    region,
                    ErrorKind::Throttled,
                    "ThrottlingException".into(),
                ),
                NetError::Transport(t) => FakeSageMaker::err(op, region, ErrorKind::Transport, t),
            })?;
        let out = f(&mut self.sm.lock());
        world
            .reply(a, false)
            .await
            .map_err(|e| FakeSageMaker::err(op, region, ErrorKind::Transport, format!("{e:?}")))?;
        out
    }
}

/// The `Endpoints` port of one caller.
pub struct SmClient {
    pub sm: Arc<FakeSageMaker>,
    pub caller: Caller,
}

#[async_trait]
impl Endpoints for SmClient {
    async fn served(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<Vec<failoverd::ports::endpoints::ServedVariant>>, PortError> {
        let k = (region.to_string(), endpoint.to_string());
        self.control(
            &format!("DescribeEndpointConfig {endpoint}"),
            region,
            |st| {
                if !st.status.contains_key(&k) {
                    return Ok(None);
                }
                let at = self.sm.world.elapsed_ms();
                let drifted = st.drifts.iter().any(|d| {
                    d.region == region
                        && d.endpoint == endpoint
                        && (d.from_ms..d.to_ms).contains(&at)
                });
                let image = match st.images.get(&k) {
                    Some(i) => i.clone(),
                    None if drifted => "sim-model:0".into(),
                    None => "sim-model:1".into(),
                };
                Ok(Some(vec![failoverd::ports::endpoints::ServedVariant {
                    variant: "AllTraffic".into(),
                    model: endpoint.to_string(),
                    containers: vec![(image, None)],
                    instance_type: Some("ml.m5.large".into()),
                    pools: Vec::new(),
                }]))
            },
        )
        .await
    }
    async fn status(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointStatus>, PortError> {
        let k = (region.to_string(), endpoint.to_string());
        self.control(&format!("DescribeEndpoint {endpoint}"), region, |st| {
            Ok(st.status.get(&k).cloned())
        })
        .await
    }

    async fn warm_up(
        &self,
        region: &str,
        endpoint: &str,
        _target_model: Option<&str>,
        _body: &[u8],
    ) -> WarmUp {
        let world = &self.sm.world;
        // The runtime client has no timeout: a black-holed link hangs the
        // call until the link heals.
        while world.link(&self.caller.site(), Svc::SageMaker) == Link::Blackhole {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let a = match world.send(&self.caller, Svc::SageMaker).await {
            Ok(a) => a,
            Err(NetError::Throttled) => {
                return WarmUp::NotReady {
                    kind: ErrorKind::Throttled,
                    detail: "ThrottlingException: Rate exceeded".into(),
                };
            }
            Err(NetError::Transport(t)) => {
                return WarmUp::NotReady {
                    kind: ErrorKind::Transport,
                    detail: t,
                };
            }
        };
        let b = self.sm.behaviour(region);
        while self.sm.behaviour(region).hang {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::time::sleep(b.latency).await;
        let answer = match self.sm.decide(region, endpoint, &b, false) {
            Outcome::Missing | Outcome::NotServing(_) => WarmUp::Refused {
                detail: format!(
                    "ValidationError: Endpoint {endpoint} of account 111122223333 not found."
                ),
            },
            Outcome::Outage => WarmUp::NotReady {
                kind: ErrorKind::Unavailable,
                detail: "ServiceUnavailable: the service is unavailable".into(),
            },
            Outcome::Throttled => WarmUp::NotReady {
                kind: ErrorKind::Throttled,
                detail: "ThrottlingException: Rate exceeded".into(),
            },
            Outcome::Cold => WarmUp::NotReady {
                kind: ErrorKind::Unavailable,
                detail: "ModelNotReadyException: the model is not ready yet".into(),
            },
            Outcome::ModelError => WarmUp::Answered {
                detail: "ModelError: Received server error (500) from primary".into(),
            },
            Outcome::Ok => WarmUp::Answered {
                detail: "200".into(),
            },
        };
        match world.reply(a, false).await {
            Ok(()) => answer,
            Err(NetError::Transport(t)) => WarmUp::NotReady {
                kind: ErrorKind::Transport,
                detail: t,
            },
            Err(NetError::Throttled) => WarmUp::NotReady {
                kind: ErrorKind::Throttled,
                detail: "throttled".into(),
            },
        }
    }

    async fn describe(&self, region: &str, endpoint: &str) -> Result<Option<Described>, PortError> {
        let k = (region.to_string(), endpoint.to_string());
        self.control(&format!("DescribeEndpoint {endpoint}"), region, |st| {
            let Some(status) = st.status.get(&k).cloned() else {
                return Ok(None);
            };
            let n = st.instances.get(&k).copied().unwrap_or(1);
            // A capacity-refused update: Updating for a while, then back
            // InService with the old counts and a FailureReason.
            let at = self.sm.world.elapsed_ms();
            let status = match st.updating_until.get(&k) {
                Some(until) if at < *until && status == EndpointStatus::InService => {
                    EndpointStatus::Updating
                }
                _ => status,
            };
            let failure_reason = match st.updating_until.get(&k) {
                Some(until) if at < *until => None,
                _ => st.failure.get(&k).cloned(),
            };
            Ok(Some(Described {
                arn: format!("arn:aws:sagemaker:{region}:000000000000:endpoint/{endpoint}"),
                config: endpoint.to_string(),
                status,
                variants: vec![VariantState {
                    variant: "AllTraffic".into(),
                    current_instances: Some(n),
                    desired_instances: Some(n),
                    serverless: false,
                    // The simulation does not model instance pools.
                    pools: Vec::new(),
                }],
                failure_reason,
            }))
        })
        .await
    }

    async fn set_instance_counts(
        &self,
        region: &str,
        endpoint: &str,
        counts: &[(String, u32)],
    ) -> Result<(), PortError> {
        let k = (region.to_string(), endpoint.to_string());
        let op = format!("UpdateEndpointWeightsAndCapacities {endpoint}");
        self.control(&op, region, |st| {
            if !st.status.contains_key(&k) {
                return Err(FakeSageMaker::err(
                    &op,
                    region,
                    ErrorKind::Validation,
                    format!("Could not find endpoint \"{endpoint}\"."),
                ));
            }
            let at = self.sm.world.elapsed_ms();
            if st.updating_until.get(&k).is_some_and(|u| at < *u) {
                return Err(FakeSageMaker::err(
                    &op,
                    region,
                    ErrorKind::Validation,
                    format!("Cannot update in-progress endpoint \"{endpoint}\"."),
                ));
            }
            // A scale-up may be refused, as SageMaker refuses one: a
            // region short of capacity or quota refuses every scale-up
            // for a while.
            let held = st.instances.get(&k).copied().unwrap_or(1);
            let asked = counts
                .iter()
                .find(|(v, _)| v == "AllTraffic")
                .map_or(held, |(_, n)| *n);
            if asked > held {
                if st.shortage.get(region).is_none_or(|(u, _)| at >= *u)
                    && st.rng.chance(SHORTAGE_CHANCE)
                {
                    let kind = if st.rng.chance(0.5) {
                        Refused::Quota
                    } else {
                        Refused::Capacity
                    };
                    st.shortage
                        .insert(region.to_string(), (at + SHORTAGE_MS, kind));
                }
                if let Some((_, kind)) = st.shortage.get(region).filter(|(u, _)| at < *u).cloned() {
                    st.refusals.push(Refusal {
                        at_ms: at,
                        region: region.to_string(),
                        endpoint: endpoint.to_string(),
                        kind,
                        asked,
                        held,
                    });
                    return match kind {
                        Refused::Quota => Err(FakeSageMaker::err(
                            &op,
                            region,
                            ErrorKind::Other,
                            "ResourceLimitExceeded: The account-level service limit 'ml.m5.large for endpoint usage' is 1 Instances, with current utilization of 1 Instances and a request delta of 2 Instances.".into(),
                        )),
                        Refused::Capacity => {
                            st.updating_until.insert(k.clone(), at + REFUSED_UPDATE_MS);
                            st.failure.insert(k.clone(), NO_CAPACITY.into());
                            Ok(())
                        }
                    };
                }
            }
            st.failure.remove(&k);
            // The fake's endpoints scale at once (no `Updating` window).
            if let Some((_, n)) = counts.iter().find(|(v, _)| v == "AllTraffic") {
                let from = st.instances.insert(k.clone(), *n).unwrap_or(1);
                if *n < from {
                    self.sm.world.trace(format!(
                        "sm[{region}] {endpoint} lowered {from} -> {n}"
                    ));
                    st.lowered.push(Lowering {
                        at_ms: self.sm.world.elapsed_ms(),
                        region: region.to_string(),
                        endpoint: endpoint.to_string(),
                        from,
                        to: *n,
                    });
                }
            }
            Ok(())
        })
        .await
    }

    async fn tags(&self, region: &str, _arn: &str) -> Result<Vec<(String, String)>, PortError> {
        self.control("ListTags", region, |_| Ok(Vec::new())).await
    }

    async fn describe_component(
        &self,
        region: &str,
        component: &str,
    ) -> Result<Option<ComponentState>, PortError> {
        let k = (region.to_string(), component.to_string());
        self.control(
            &format!("DescribeInferenceComponent {component}"),
            region,
            |st| {
                let Some(c) = st.components.get_mut(&k) else {
                    return Ok(None);
                };
                let status = c.at(self.sm.world.elapsed_ms());
                Ok(Some(ComponentState {
                    arn: format!(
                        "arn:aws:sagemaker:{region}:000000000000:inference-component/{component}"
                    ),
                    endpoint: c.endpoint.clone(),
                    variant: Some("AllTraffic".into()),
                    status,
                    current_copies: Some(c.current),
                    desired_copies: Some(c.desired),
                    spec: ComponentSpecification {
                        image: Some("sim-model:1".into()),
                        min_memory_mb: Some(1024),
                        ..ComponentSpecification::default()
                    },
                    failure_reason: None,
                }))
            },
        )
        .await
    }

    async fn set_copy_count(
        &self,
        region: &str,
        component: &str,
        copies: u32,
    ) -> Result<(), PortError> {
        let k = (region.to_string(), component.to_string());
        let op = format!("UpdateInferenceComponentRuntimeConfig {component}");
        self.control(&op, region, |st| {
            let at = self.sm.world.elapsed_ms();
            let Some(c) = st.components.get_mut(&k) else {
                return Err(FakeSageMaker::err(
                    &op,
                    region,
                    ErrorKind::Validation,
                    format!("Could not find inference component \"{component}\"."),
                ));
            };
            if c.at(at) != ComponentStatus::InService {
                return Err(FakeSageMaker::err(
                    &op,
                    region,
                    ErrorKind::Validation,
                    format!("Cannot update in-progress inference component \"{component}\"."),
                ));
            }
            c.desired = copies;
            c.placed_at_ms = at + COPIES_PLACED_MS;
            Ok(())
        })
        .await
    }

    async fn delete(&self, region: &str, endpoint: &str) -> Result<Deleted, PortError> {
        let k = (region.to_string(), endpoint.to_string());
        self.control(&format!("DeleteEndpoint {endpoint}"), region, |st| {
            st.instances.remove(&k);
            Ok(match st.status.remove(&k) {
                Some(_) => Deleted::Started,
                None => Deleted::Absent,
            })
        })
        .await
    }
}

/// CloudWatch unreachable, for the seeds that do not draw idle detection
/// (the cost task is its only reader): every read fails, which idle
/// detection takes as "bypassing traffic not ruled out" (never idle).
pub struct NoCloudWatch;

#[async_trait]
impl failoverd::ports::EndpointMetrics for NoCloudWatch {
    async fn invocations(
        &self,
        region: &str,
        endpoint: &str,
        _: &[String],
        _: &[String],
        _: u64,
        _: u64,
    ) -> Result<u64, PortError> {
        Err(PortError::new(
            "CloudWatch",
            format!("GetMetricStatistics {endpoint}"),
            region,
            ErrorKind::Transport,
            "CloudWatch is not simulated",
        ))
    }
}

/// CloudWatch's `AWS/SageMaker` `Invocations`, from the invocations the
/// models received (the routers' and any other caller's), published 90 s
/// after the fact as CloudWatch does it (a minute or more): a read of a
/// window ending now misses the last 90 s. The invocation log keeps ten
/// minutes, longer than the idle window the simulation uses (3 minutes).
pub struct FakeCloudWatch {
    pub sm: Arc<FakeSageMaker>,
}

/// CloudWatch's publication delay in the simulation.
pub const CLOUDWATCH_DELAY_MS: u64 = 90_000;

#[async_trait]
impl failoverd::ports::EndpointMetrics for FakeCloudWatch {
    async fn invocations(
        &self,
        region: &str,
        endpoint: &str,
        _: &[String],
        _: &[String],
        start_ms: u64,
        end_ms: u64,
    ) -> Result<u64, PortError> {
        let now = self.sm.world.elapsed_ms();
        let to_sim = |unix: u64| unix.saturating_sub(super::world::EPOCH_MS);
        let (from, to) = (
            to_sim(start_ms),
            to_sim(end_ms).min(now.saturating_sub(CLOUDWATCH_DELAY_MS)),
        );
        let g = self.sm.lock();
        Ok(g.invoked
            .get(&(region.to_string(), endpoint.to_string()))
            .map_or(0, |q| {
                q.iter().filter(|t| (from..to).contains(t)).count() as u64
            }))
    }
}

/// The `Inference` port (SageMaker runtime) of one caller: a region's
/// router, calling as its daemon's process.
pub struct SmRuntime {
    pub sm: Arc<FakeSageMaker>,
    pub caller: Caller,
}

impl SmRuntime {
    /// The way there: a black-holed link hangs (no client timeout), a
    /// refused one fails after the world's reconnects, throttling answers.
    async fn arrive(&self) -> Result<super::world::Arrived, InvokeError> {
        let world = &self.sm.world;
        while world.link(&self.caller.site(), Svc::SageMaker) == Link::Blackhole {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        world
            .send(&self.caller, Svc::SageMaker)
            .await
            .map_err(|e| match e {
                NetError::Throttled => InvokeError::Throttled {
                    code: "ThrottlingException".into(),
                    message: Some("Rate exceeded".into()),
                },
                // Refused on the way there: nothing reached the model.
                NetError::Transport(t) => InvokeError::Transport {
                    delivery: Delivery::NotSent,
                    source: Box::new(Fault(t)),
                },
            })
    }

    /// The model's work under the region's behaviour: a hang holds the
    /// call while it lasts; then the behaviour's latency.
    async fn work(&self, region: &str) -> Behaviour {
        while self.sm.behaviour(region).hang {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let b = self.sm.behaviour(region);
        tokio::time::sleep(b.latency).await;
        b
    }

    async fn back<T>(&self, a: super::world::Arrived, answer: T) -> Result<T, InvokeError> {
        self.sm
            .world
            .reply(a, false)
            .await
            .map(|()| answer)
            .map_err(|e| InvokeError::Transport {
                // The answer was lost: the model ran.
                delivery: Delivery::Unknown,
                source: Box::new(Fault(format!("{e:?}"))),
            })
    }
}

fn refusal(endpoint: &str, o: Outcome) -> InvokeError {
    match o {
        Outcome::Missing => InvokeError::EndpointNotFound {
            message: format!("Endpoint {endpoint} of account 111122223333 not found."),
        },
        Outcome::NotServing(status) => InvokeError::Unavailable {
            code: "ServiceUnavailable".into(),
            source: Some(Box::new(Fault(format!(
                "endpoint {endpoint} is {}",
                status.as_str()
            )))),
        },
        Outcome::Outage => InvokeError::Unavailable {
            code: "ServiceUnavailable".into(),
            source: None,
        },
        Outcome::Throttled => InvokeError::Throttled {
            code: "ThrottlingException".into(),
            message: Some("Rate exceeded".into()),
        },
        Outcome::Cold => InvokeError::ModelNotReady {
            message: Some("Model is not ready yet".into()),
        },
        Outcome::ModelError => InvokeError::Model(ModelFailure {
            original_status: Some(500),
            original_message: Some("the model failed".into()),
            log_stream_arn: None,
            message: None,
        }),
        Outcome::Ok => InvokeError::Other {
            source: Box::new(Fault("not a refusal".into())),
        },
    }
}

#[async_trait]
impl Inference for SmRuntime {
    async fn invoke(
        &self,
        region: &str,
        endpoint: &str,
        inv: &Invocation,
    ) -> Result<Answer, InvokeError> {
        let a = self.arrive().await?;
        let b = self.work(region).await;
        let answer = match self.sm.decide(region, endpoint, &b, true) {
            Outcome::Ok => {
                *self
                    .sm
                    .lock()
                    .answered
                    .entry(region.to_string())
                    .or_insert(0) += 1;
                Ok(Answer {
                    body: bytes::Bytes::from(format!(
                        "{{\"region\":\"{region}\",\"endpoint\":\"{endpoint}\",\"bytes\":{}}}",
                        inv.body.len()
                    )),
                    content_type: Some(HeaderValue::from_static("application/json")),
                    custom_attributes: None,
                    invoked_variant: Some(HeaderValue::from_static("AllTraffic")),
                    ..Answer::default()
                })
            }
            other => Err(refusal(endpoint, other)),
        };
        self.back(a, answer).await?
    }

    async fn invoke_async(
        &self,
        region: &str,
        endpoint: &str,
        inv: &AsyncInvocation<'_>,
    ) -> Result<AsyncAccepted, InvokeError> {
        let a = self.arrive().await?;
        let b = self.work(region).await;
        // An asynchronous endpoint queues the request: a cold model is no
        // refusal, and the container's errors land in the failure location.
        let answer = match self.sm.decide(region, endpoint, &b, true) {
            Outcome::Ok | Outcome::Cold | Outcome::ModelError => Ok(AsyncAccepted {
                output_location: Some(format!(
                    "s3://failoverd-batch-{region}/async-results/{}.out",
                    inv.inference_id
                )),
                failure_location: Some(format!(
                    "s3://failoverd-batch-{region}/async-failures/{}.err",
                    inv.inference_id
                )),
            }),
            other => Err(refusal(endpoint, other)),
        };
        self.back(a, answer).await?
    }
}

/// Application Auto Scaling and Service Quotas behind the `Capacity` port
/// (standby readiness, issue 26): a simple fake with no scalable target
/// registered anywhere and an applied endpoint-usage quota of 1,000 for the
/// one instance type the fake's endpoints run (`ml.m5.large`), so readiness
/// judges both checks `ok` and the drift invariant stays about the model.
/// IAM's simulator allows every call (the simulated fleet's role grants
/// what prepare needs; the denials are the lab's, tests/lab_cost.rs).
pub struct FakeCapacity;

#[async_trait]
impl failoverd::ports::capacity::Capacity for FakeCapacity {
    async fn scalable_variants(
        &self,
        _: &str,
        _: &str,
        _: &[String],
    ) -> Result<Vec<failoverd::ports::capacity::ScalableVariant>, PortError> {
        Ok(Vec::new())
    }

    async fn endpoint_quotas(&self, _: &str) -> Result<BTreeMap<String, f64>, PortError> {
        Ok(BTreeMap::from([("ml.m5.large".to_string(), 1000.0)]))
    }

    async fn own_principal(&self, _: &str) -> Result<String, PortError> {
        Ok("arn:aws:iam::111122223333:role/failoverd-daemon".to_string())
    }

    async fn simulate(
        &self,
        _: &str,
        _: &str,
        actions: &[&str],
        resources: &[String],
    ) -> Result<Vec<failoverd::ports::capacity::Judged>, PortError> {
        Ok(actions
            .iter()
            .flat_map(|a| {
                resources
                    .iter()
                    .map(move |r| failoverd::ports::capacity::Judged {
                        action: a.to_string(),
                        resource: r.clone(),
                        decision: "allowed".to_string(),
                    })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    fn fixture(seed: u64) -> (Arc<World>, Arc<FakeSageMaker>, SmClient) {
        let world = World::new(seed);
        let sm = FakeSageMaker::new(world.clone());
        sm.create("us-west-2", "ep");
        let c = SmClient {
            sm: sm.clone(),
            caller: Caller::Harness,
        };
        (world, sm, c)
    }

    #[test]
    fn status_and_missing_endpoints() {
        rt().block_on(async {
            let (_w, sm, c) = fixture(1);
            assert_eq!(
                c.status("us-west-2", "ep").await.unwrap(),
                Some(EndpointStatus::InService)
            );
            assert_eq!(c.status("us-west-2", "nope").await.unwrap(), None);
            assert!(matches!(
                c.warm_up("us-west-2", "nope", None, b"{}").await,
                WarmUp::Refused { .. }
            ));
            sm.set_status("us-west-2", "ep", Some(EndpointStatus::Updating));
            assert!(c.status("us-west-2", "ep").await.unwrap().unwrap().serves());
        });
    }

    #[test]
    fn a_components_copies_are_placed_after_a_while_and_one_update_at_a_time() {
        rt().block_on(async {
            let (_w, sm, c) = fixture(4);
            assert_eq!(
                c.describe_component("us-west-2", "llm").await.unwrap(),
                None
            );
            assert_eq!(
                c.set_copy_count("us-west-2", "llm", 2)
                    .await
                    .unwrap_err()
                    .kind,
                ErrorKind::Validation
            );
            sm.create_component("us-west-2", "ep", "llm", 1);
            let d = c
                .describe_component("us-west-2", "llm")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (
                    d.status,
                    d.current_copies,
                    d.desired_copies,
                    d.endpoint.as_str()
                ),
                (ComponentStatus::InService, Some(1), Some(1), "ep")
            );
            c.set_copy_count("us-west-2", "llm", 3).await.unwrap();
            let d = c
                .describe_component("us-west-2", "llm")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (d.status, d.current_copies, d.desired_copies),
                (ComponentStatus::Updating, Some(1), Some(3))
            );
            // One update at a time, as SageMaker takes them.
            assert_eq!(
                c.set_copy_count("us-west-2", "llm", 4)
                    .await
                    .unwrap_err()
                    .kind,
                ErrorKind::Validation
            );
            tokio::time::sleep(Duration::from_millis(COPIES_PLACED_MS)).await;
            let d = c
                .describe_component("us-west-2", "llm")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (d.status, d.current_copies, d.desired_copies),
                (ComponentStatus::InService, Some(3), Some(3))
            );
        });
    }

    #[test]
    fn a_cold_endpoint_answers_not_ready_until_warm() {
        rt().block_on(async {
            let (_w, sm, c) = fixture(2);
            sm.set_behaviour(
                "us-west-2",
                Behaviour {
                    cold_after_idle: Some(Duration::from_secs(600)),
                    cold_start: Duration::from_secs(20),
                    ..Behaviour::default()
                },
            );
            let t0 = Instant::now();
            let mut not_ready = 0;
            loop {
                match c.warm_up("us-west-2", "ep", None, b"{}").await {
                    WarmUp::NotReady {
                        kind: ErrorKind::Unavailable,
                        detail,
                    } => {
                        assert!(detail.starts_with("ModelNotReadyException"));
                        not_ready += 1;
                    }
                    WarmUp::Answered { .. } => break,
                    other => panic!("{other:?}"),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            assert!(not_ready >= 9, "{not_ready}");
            assert!(t0.elapsed() >= Duration::from_secs(20));
            // Warm now: answers at once; idle again past the limit: cold again.
            assert!(matches!(
                c.warm_up("us-west-2", "ep", None, b"{}").await,
                WarmUp::Answered { .. }
            ));
            tokio::time::sleep(Duration::from_secs(601)).await;
            assert!(matches!(
                c.warm_up("us-west-2", "ep", None, b"{}").await,
                WarmUp::NotReady { .. }
            ));
        });
    }

    #[test]
    fn faults_answer_as_the_adapter_maps_them() {
        rt().block_on(async {
            let (world, sm, c) = fixture(3);
            let set = |b: Behaviour| sm.set_behaviour("us-west-2", b);
            set(Behaviour { model_error: true, ..Behaviour::default() });
            assert!(matches!(c.warm_up("us-west-2", "ep", None, b"{}").await, WarmUp::Answered { detail } if detail.starts_with("ModelError")));
            set(Behaviour { outage: true, ..Behaviour::default() });
            assert!(matches!(
                c.warm_up("us-west-2", "ep", None, b"{}").await,
                WarmUp::NotReady { kind: ErrorKind::Unavailable, .. }
            ));
            set(Behaviour { throttle_rate: 1.0, ..Behaviour::default() });
            assert!(matches!(
                c.warm_up("us-west-2", "ep", None, b"{}").await,
                WarmUp::NotReady { kind: ErrorKind::Throttled, .. }
            ));
            set(Behaviour { throttle_rate: 0.5, ..Behaviour::default() });
            let mut throttled = 0;
            for _ in 0..200 {
                if matches!(c.warm_up("us-west-2", "ep", None, b"{}").await, WarmUp::NotReady { .. }) {
                    throttled += 1;
                }
            }
            assert!((60..140).contains(&throttled), "{throttled}");
            // Latency: each call takes at least the behaviour's latency.
            set(Behaviour { latency: Duration::from_secs(3), ..Behaviour::default() });
            let t0 = Instant::now();
            c.warm_up("us-west-2", "ep", None, b"{}").await;
            assert!(t0.elapsed() >= Duration::from_secs(3));
            // A hang: no answer for as long as it lasts.
            set(Behaviour { hang: true, ..Behaviour::default() });
            let r = tokio::time::timeout(Duration::from_secs(300), c.warm_up("us-west-2", "ep", None, b"{}")).await;
            assert!(r.is_err(), "a hung endpoint never answers");
            // A black-holed runtime link: no answer either.
            set(Behaviour::default());
            world.set_link("harness", Svc::SageMaker, Link::Blackhole);
            let r = tokio::time::timeout(Duration::from_secs(300), c.warm_up("us-west-2", "ep", None, b"{}")).await;
            assert!(r.is_err());
            world.set_link("harness", Svc::SageMaker, Link::Refused);
            assert!(matches!(
                c.warm_up("us-west-2", "ep", None, b"{}").await,
                WarmUp::NotReady { kind: ErrorKind::Transport, .. }
            ));
        });
    }

    fn runtime(seed: u64) -> (Arc<World>, Arc<FakeSageMaker>, SmRuntime) {
        let (world, sm, _) = fixture(seed);
        let rt = SmRuntime {
            sm: sm.clone(),
            caller: Caller::Harness,
        };
        (world, sm, rt)
    }

    fn inv() -> Invocation {
        Invocation {
            body: bytes::Bytes::from_static(b"{}"),
            ..Invocation::default()
        }
    }

    #[test]
    fn invocations_answer_with_the_kinds_the_runtime_adapter_maps() {
        rt().block_on(async {
            let (world, sm, c) = runtime(4);
            let ok = c.invoke("us-west-2", "ep", &inv()).await.unwrap();
            assert!(String::from_utf8_lossy(&ok.body).contains("us-west-2"));
            assert_eq!(sm.answered().get("us-west-2"), Some(&1));
            assert!(matches!(
                c.invoke("us-west-2", "nope", &inv()).await,
                Err(InvokeError::EndpointNotFound { .. })
            ));
            sm.set_status("us-west-2", "ep", Some(EndpointStatus::Failed));
            assert!(matches!(
                c.invoke("us-west-2", "ep", &inv()).await,
                Err(InvokeError::Unavailable { .. })
            ));
            sm.set_status("us-west-2", "ep", Some(EndpointStatus::Updating));
            assert!(
                c.invoke("us-west-2", "ep", &inv()).await.is_ok(),
                "updating serves"
            );
            let set = |b: Behaviour| sm.set_behaviour("us-west-2", b);
            set(Behaviour {
                outage: true,
                ..Behaviour::default()
            });
            let e = c.invoke("us-west-2", "ep", &inv()).await.unwrap_err();
            assert!(matches!(e, InvokeError::Unavailable { .. }) && e.is_target_failure());
            set(Behaviour {
                throttle_rate: 1.0,
                ..Behaviour::default()
            });
            assert!(matches!(
                c.invoke("us-west-2", "ep", &inv()).await,
                Err(InvokeError::Throttled { .. })
            ));
            set(Behaviour {
                model_error: true,
                ..Behaviour::default()
            });
            let e = c.invoke("us-west-2", "ep", &inv()).await.unwrap_err();
            assert!(matches!(e, InvokeError::Model(_)) && !e.is_target_failure());
            set(Behaviour {
                cold_after_idle: Some(Duration::from_secs(60)),
                cold_start: Duration::from_secs(10),
                ..Behaviour::default()
            });
            tokio::time::sleep(Duration::from_secs(61)).await;
            assert!(matches!(
                c.invoke("us-west-2", "ep", &inv()).await,
                Err(InvokeError::ModelNotReady { .. })
            ));
            tokio::time::sleep(Duration::from_secs(11)).await;
            assert!(
                c.invoke("us-west-2", "ep", &inv()).await.is_ok(),
                "warm again"
            );
            // A hang and a black-holed link never answer; a refused link
            // is a transport failure.
            set(Behaviour {
                hang: true,
                ..Behaviour::default()
            });
            let r = tokio::time::timeout(
                Duration::from_secs(300),
                c.invoke("us-west-2", "ep", &inv()),
            )
            .await;
            assert!(r.is_err(), "a hung model never answers");
            set(Behaviour::default());
            world.set_link("harness", Svc::SageMaker, Link::Blackhole);
            let r = tokio::time::timeout(
                Duration::from_secs(300),
                c.invoke("us-west-2", "ep", &inv()),
            )
            .await;
            assert!(r.is_err());
            world.set_link("harness", Svc::SageMaker, Link::Refused);
            assert!(matches!(
                c.invoke("us-west-2", "ep", &inv()).await,
                Err(InvokeError::Transport { .. })
            ));
        });
    }

    #[test]
    fn asynchronous_invocations_queue_on_a_cold_model_but_not_on_an_outage() {
        rt().block_on(async {
            let (_w, sm, c) = runtime(5);
            let ask = AsyncInvocation {
                input_location: "s3://b/k",
                inference_id: "j1",
                content_type: None,
                accept: None,
                custom_attributes: None,
            };
            sm.set_behaviour(
                "us-west-2",
                Behaviour {
                    cold_after_idle: Some(Duration::from_secs(1)),
                    cold_start: Duration::from_secs(30),
                    ..Behaviour::default()
                },
            );
            let a = c.invoke_async("us-west-2", "ep", &ask).await.unwrap();
            assert!(a.output_location.unwrap().ends_with("j1.out"));
            sm.set_behaviour(
                "us-west-2",
                Behaviour {
                    outage: true,
                    ..Behaviour::default()
                },
            );
            assert!(matches!(
                c.invoke_async("us-west-2", "ep", &ask).await,
                Err(InvokeError::Unavailable { .. })
            ));
            assert!(matches!(
                c.invoke_async("us-west-2", "gone", &ask).await,
                Err(InvokeError::EndpointNotFound { .. })
            ));
        });
    }
}
