//! The embedded inference router (docs/design.md §6, docs/router.md).
//!
//! Every daemon serves the SageMaker runtime wire API
//! (`POST /endpoints/{model}/invocations`: an existing SageMaker client
//! points its endpoint URL here and gets what `InvokeEndpoint` gives, typed
//! errors included) and a small native API (`POST /v1/models/{model}/invoke`,
//! which adds the durable batch path, and `GET /v1/jobs/{id}`). For each
//! request it:
//!
//! 1. sheds load above `router.max_in_flight` (503 + `Retry-After`) and
//!    while the daemon stops (503; requests already in flight complete);
//! 2. parses the route, model, traffic class, deadline and body
//!    ([`request`]);
//! 3. ranks the regions from the control record and health the reconcile
//!    loop last saw and from the circuit breakers ([`targets`]), and runs
//!    the routing loop ([`route`]): paths per region, cold-start retries
//!    and fallback, throttling backoff within the retry budget, per-attempt
//!    timeouts, hedging, the next region on an outage;
//! 4. answers ([`reply`]: every error typed, mapped to status and AWS error
//!    code in one place).
//!
//! Every response carries `x-failoverd-path`, `x-failoverd-region`,
//! `x-failoverd-attempts` (`none`/`none`/`0` when refused before a call) and
//! an `x-amzn-RequestId`.
//!
//! Access log (issue 22 item 6): one `tracing` event per request, target
//! `failoverd::access`, for `router.access_log_sample` of the requests:
//! caller identity (the client certificate's SAN under mutual TLS,
//! `anonymous` without), the
//! configured model, region and path served, attempts, status, latency and
//! the request id the client got. Never a body, a header value or a token;
//! an unknown model's name (client-chosen text) is not logged either. A
//! request sampled out costs no allocation and no clock read (one atomic
//! add at fractional rates, nothing at 0 or 1); a sampled one borrows every
//! field. Filter it like any target: `FAILOVERD_LOG=info,failoverd::access=off`.
//!
//! The router reaches SageMaker runtime, S3 and its DynamoDB items only
//! through ports ([`Ports`]), handed to [`Router::new`]: the daemon's
//! composition root builds the AWS adapters (`daemon::router_ports`); the
//! simulation builds a router over fakes and calls [`Router::handle`]
//! directly with a `Request<Full<Bytes>>`, no listener needed. Decisions live in
//! `core::routing` and `core::retry` (pure, property tested).

pub mod auth;
pub mod batch;
pub mod iam;
pub mod jobs;
pub mod limits;
pub mod reply;
pub mod request;
mod route;
pub mod targets;
pub mod tls;
mod wire_async;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use hyper::Request;
use hyper::header::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::{Config, RegionServing, Serving};
use crate::core::rand;
use crate::core::retry::RetryBudget;
use crate::core::routing::{Available, Path};
use crate::error_chain;
use crate::http::{HttpResponse, Identity, ShutdownRx, shutdown_signalled};
use crate::metrics::callers::CallerResult;
use crate::metrics::router::{CallResult, Metrics};
use crate::ports::blobs::Blobs;
use crate::ports::clock::Clock;
use crate::ports::inference::{Inference, InvokeError};
use crate::ports::jobs::{JobStore, TableRef};
use crate::ports::routing_table::RoutingTable;
use crate::state::Shared;
use reply::{Reply, RouterError};
use request::{Api, Route};

/// Whether the batch (asynchronous) path is served. When off, regions
/// count as having no batch endpoint.
pub const BATCH_SUPPORTED: bool = true;
/// Retries the budget allows per second however little traffic there is.
pub const BUDGET_FLOOR_PER_SEC: f64 = 1.0;
/// Most retry tokens the budget banks.
pub const BUDGET_MAX_BALANCE: f64 = 10.0;

/// Everything outside the router that it reaches.
#[derive(Clone)]
pub struct Ports {
    pub inference: Arc<dyn Inference>,
    pub blobs: Arc<dyn Blobs>,
    pub jobs: Arc<dyn JobStore>,
    pub routing_table: Arc<dyn RoutingTable>,
    pub clock: Arc<dyn Clock>,
}

/// The router's one clock. Monotonic time is tokio's (the simulation pauses
/// and advances it): deadlines, backoffs, hedges and latency as instants,
/// and, as milliseconds since the router started, the breakers and the
/// retry budget (the metrics registry counts from the same origin). Wall
/// time is the `Clock` port's, for what is shared or shown: the counts
/// published in votes, per-model observations, job ids.
pub struct RouterClock {
    origin: Instant,
    clock: Arc<dyn Clock>,
}

impl RouterClock {
    /// `clock`'s readings, with monotonic milliseconds counted from `origin`.
    pub fn new(clock: Arc<dyn Clock>, origin: Instant) -> Self {
        Self { origin, clock }
    }

    /// Now, for deadlines and durations.
    pub fn now(&self) -> Instant {
        self.clock.monotonic()
    }

    /// How long since `earlier`.
    pub fn since(&self, earlier: Instant) -> Duration {
        self.clock.since(earlier)
    }

    /// Milliseconds since the router started (breakers, retry budget).
    pub fn mono_ms(&self) -> u64 {
        self.mono_ms_at(self.now())
    }

    /// [`RouterClock::mono_ms`] at `now`, a reading of [`RouterClock::now`]
    /// (one reading of the clock for several uses).
    pub fn mono_ms_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// `now`, a reading of [`RouterClock::now`], as the daemon's lease
    /// counts (`Clock::mono_at`).
    pub fn lease_mono(&self, now: Instant) -> crate::core::mono::Mono {
        self.clock.mono_at(now)
    }

    /// Unix milliseconds on this host's clock.
    pub fn wall_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// The router's state, shared by every request.
pub struct Router {
    config: watch::Receiver<Arc<Config>>,
    ports: Ports,
    /// The one clock every request reads.
    clock: RouterClock,
    shared: Arc<Shared>,
    /// The registry admin's `GET /metrics` renders.
    pub metrics: Arc<Metrics>,
    stopping: AtomicBool,
    budget: Mutex<RetryBudget>,
    targets: targets::Targets,
    /// Batch thresholds by traffic class, from the routing table.
    thresholds: RwLock<HashMap<String, u64>>,
    /// Counter behind backoff jitter and request ids.
    jitter: AtomicU64,
    /// Counter behind the access log's sampling.
    access_seq: AtomicU64,
    /// Per-caller limits' state (issue 22 item 4).
    callers: limits::Callers,
    /// The IAM identity verifier (`router.iam`), built on first use.
    iam: std::sync::OnceLock<iam::Verifier>,
}

/// Decrements the in-flight gauge when a request ends, however it ends.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Router {
    /// A router over `config` (reloads take effect per request), calling
    /// AWS through the daemon's SDK `clients`, routing by what `shared`
    /// last saw.
    /// A router over any implementation of its ports: the AWS adapters the
    /// daemon's composition root builds (`daemon::router_ports`), or the
    /// simulation's fakes.
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        ports: Ports,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        let cfg = config.borrow().clone();
        let regions: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
        let metrics = Arc::new(Metrics::new(&regions, ports.clock.clone()));
        let _ = metrics
            .callers
            .set(crate::metrics::callers::CallerMetrics::new(
                cfg.router.callers.keys().cloned().chain(
                    cfg.router
                        .allow
                        .values()
                        .flatten()
                        .filter(|p| !p.contains('*'))
                        .cloned(),
                ),
            ));
        let clock = RouterClock::new(ports.clock.clone(), metrics.origin());
        let seed = clock.wall_ms() ^ u64::from(std::process::id()).rotate_left(32);
        // Counting starts with the router: its gap-free start.
        shared.traffic.start(clock.lease_mono(clock.now()));
        shared.models.start(clock.wall_ms());
        Arc::new(Self {
            budget: Mutex::new(RetryBudget::new(
                cfg.router.retry_budget,
                BUDGET_FLOOR_PER_SEC,
                BUDGET_MAX_BALANCE,
            )),
            config,
            ports,
            shared,
            metrics,
            clock,
            stopping: AtomicBool::new(false),
            targets: targets::Targets::default(),
            thresholds: RwLock::default(),
            jitter: AtomicU64::new(seed),
            access_seq: AtomicU64::new(seed.rotate_left(17)),
            callers: limits::Callers::default(),
            iam: std::sync::OnceLock::new(),
        })
    }

    /// Restart the sequence behind backoff jitter and request ids from
    /// `seed`. The simulation does, so that a seed replays exactly in any
    /// process (the default start mixes in the process id).
    pub fn reseed(&self, seed: u64) {
        self.jitter.store(seed, Ordering::Relaxed);
        self.access_seq
            .store(seed.rotate_left(17), Ordering::Relaxed);
    }

    /// Start refusing new requests (503); requests in flight carry on.
    pub fn begin_drain(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether the router is draining.
    pub fn is_draining(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    fn budget(&self) -> MutexGuard<'_, RetryBudget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh `x-amzn-RequestId` (16 hex digits).
    fn request_id(&self) -> HeaderValue {
        let n = self.jitter.fetch_add(rand::GOLDEN_GAMMA, Ordering::Relaxed);
        let z = rand::splitmix64(n ^ 0x5eed);
        let mut buf = [0u8; 16];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = b"0123456789abcdef"[((z >> (60 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
    }

    fn batch_threshold(&self, cfg: &Config, class: &str) -> u64 {
        self.thresholds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(class)
            .copied()
            .unwrap_or(cfg.router.default_batch_threshold)
    }

    /// Handle one request, whatever its body type: hyper's `Incoming` from
    /// the listener, or a complete `Full<Bytes>` (the simulation, tests).
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> HttpResponse
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = self.clock.now();
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let _guard = InFlight(&self.metrics.in_flight);
        let cfg = self.config.borrow().clone();
        let mut job_region = String::new();
        let mut model = None;
        // The listener's authentication (mutual TLS); none on a listener
        // without client certificates (no clone, no lookup cost but the
        // extension map's emptiness check).
        let mut identity = req.extensions().get::<Identity>().cloned();
        // An IAM token, on a router that takes them, names the caller
        // instead (router::iam); a bad one is refused before anything else.
        let mut refused = None;
        if let Some(iam_cfg) = &cfg.router.iam
            && let Some(token) = req.headers().get(iam::HEADER)
        {
            let verifier = self.iam.get_or_init(iam::Verifier::new);
            let mono = self.clock.lease_mono(self.clock.now());
            match verifier
                .identify(iam_cfg, token, self.clock.wall_ms(), mono)
                .await
            {
                Ok(id) => identity = Some(id),
                Err(e) => refused = Some(RouterError::Iam(e)),
            }
        }
        let reply = match refused {
            Some(e) => e.into(),
            None => {
                self.reply(
                    &cfg,
                    req,
                    identity.as_ref(),
                    started,
                    &mut job_region,
                    &mut model,
                )
                .await
            }
        };
        let took = self.clock.since(started);
        self.metrics.request(
            reply.path,
            reply.region,
            reply.outcome,
            reply.attempts,
            took,
        );
        let id = self.request_id();
        if self.access_sampled(cfg.router.access_log_sample) {
            access_log(&reply, identity.as_ref(), model, took, &id);
        }
        reply.into_response(id)
    }

    /// Whether this request gets an access-log line, at `rate` (0 to 1).
    fn access_sampled(&self, rate: f64) -> bool {
        if rate >= 1.0 {
            return true;
        }
        if rate <= 0.0 {
            return false;
        }
        let n = self
            .access_seq
            .fetch_add(rand::GOLDEN_GAMMA, Ordering::Relaxed);
        rand::unit(rand::splitmix64(n)) < rate
    }

    async fn reply<'c, B>(
        &self,
        cfg: &'c Config,
        req: Request<B>,
        identity: Option<&Identity>,
        started: Instant,
        job_region: &'c mut String,
        logged_model: &mut Option<&'c str>,
    ) -> Reply<'c>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let (api, model, wire_async) = match Route::of(&parts.method, parts.uri.path()) {
            Err(e) => return e.into(),
            Ok(Route::Ping) => return Reply::ok_text("ok\n"),
            Ok(Route::Job(id)) => {
                return jobs::poll(&*self.ports.blobs, &*self.ports.jobs, cfg, id, job_region)
                    .await;
            }
            Ok(Route::Invoke { api, model }) => (api, model, false),
            Ok(Route::Async { model }) => (Api::SageMaker, model, true),
        };
        if self.is_draining() {
            return RouterError::Draining.into();
        }
        if self.metrics.in_flight.load(Ordering::Relaxed) > u64::from(cfg.router.max_in_flight) {
            return RouterError::OverCapacity(cfg.router.max_in_flight).into();
        }
        let Some(model_cfg) = cfg.models.iter().find(|m| m.name == model) else {
            return RouterError::UnknownModel(model).into();
        };
        *logged_model = Some(&model_cfg.name);
        // Per-caller checks only where there is a caller to tell apart or
        // a limit to apply: a plain router skips them (no lock, no count).
        let per_caller = identity.is_some()
            || cfg.router.caller_default.is_some()
            || !cfg.router.callers.is_empty();
        let caller = identity.map_or(limits::ANONYMOUS, |i| &*i.0);
        let count = |r| {
            if let Some(m) = self.metrics.callers.get() {
                m.count(caller, r);
            }
        };
        if !auth::allowed(cfg, &model_cfg.name, identity) {
            if per_caller {
                count(CallerResult::Denied);
            }
            return RouterError::AccessDenied {
                identity: identity.map_or_else(|| "anonymous".into(), |i| i.0.to_string()),
                model,
            }
            .into();
        }
        let limit = if per_caller {
            limits::limit_of(&cfg.router, caller)
        } else {
            None
        };
        let _admitted = match limit {
            None => {
                if per_caller {
                    count(CallerResult::Admitted);
                }
                None
            }
            Some(limit) => match self.callers.admit(caller, limit, self.clock.now()) {
                Ok(a) => {
                    count(CallerResult::Admitted);
                    Some(a)
                }
                Err(refused) => {
                    count(match refused {
                        limits::Refused::Concurrency(_) => CallerResult::ThrottledConcurrency,
                        limits::Refused::Rate { .. } => CallerResult::ThrottledRate,
                    });
                    return caller_throttled(caller, refused);
                }
            },
        };
        if wire_async {
            // The payload is in S3 (`InputLocation`); the body is not read.
            drop(body);
            return self
                .route_async(cfg, model_cfg, &parts.headers, started)
                .await;
        }
        let thresholds = |class: &str| {
            self.thresholds
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(class)
        };
        let known = || {
            let mut k: Vec<String> = [
                crate::core::routing::SERVERLESS_PREFERRED,
                crate::core::routing::STANDARD,
            ]
            .into_iter()
            .map(str::to_string)
            .chain(cfg.models.iter().map(|m| m.traffic_class.clone()))
            .chain(
                self.thresholds
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .cloned(),
            )
            .collect();
            k.sort();
            k.dedup();
            k
        };
        let mut ask = match request::parse_head(
            cfg,
            api,
            model_cfg,
            &parts.headers,
            started,
            &thresholds,
            &known,
        ) {
            Ok(a) => a,
            Err(e) => return e.into(),
        };
        if let Err(e) = request::read_body(cfg, &mut ask, body).await {
            return e.into();
        }
        // Accepted: what clients ask of this model (`failoverd advise`).
        self.shared.models.request(
            &ask.model.name,
            ask.inv.body.len() as u64,
            self.clock.wall_ms(),
        );
        self.route(cfg, &ask).await
    }

    /// Re-read the routing table (batch thresholds by class) every
    /// `router.routing_refresh` until shutdown. A failed read keeps the
    /// last thresholds.
    pub async fn refresh_routing_table(self: Arc<Self>, mut shutdown: ShutdownRx) {
        let mut failing = false;
        loop {
            let cfg = self.config.borrow().clone();
            let table = TableRef {
                name: &cfg.tables.routing,
                region: &cfg.region,
            };
            match self.ports.routing_table.batch_thresholds(table).await {
                Ok(t) => {
                    if failing || *self.thresholds.read().unwrap_or_else(|p| p.into_inner()) != t {
                        info!(thresholds = ?t, "routing table read");
                    }
                    failing = false;
                    *self.thresholds.write().unwrap_or_else(|p| p.into_inner()) = t;
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %error_chain(&e), "cannot read the routing table; keeping the last thresholds");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.router.routing_refresh) => {}
                _ = shutdown_signalled(&mut shutdown) => return,
            }
        }
    }
}

/// The answer to a request over its caller's limits: the router's
/// throttling reply (429 `ThrottlingException`), with a `Retry-After` of
/// when the caller's next request can pass.
fn caller_throttled<'c>(caller: &str, refused: limits::Refused) -> Reply<'c> {
    let mut reply: Reply<'c> = RouterError::CallerThrottled {
        caller: caller.to_string(),
        why: match refused {
            limits::Refused::Concurrency(n) => format!("{n} requests in flight"),
            limits::Refused::Rate { .. } => "its request rate".to_string(),
        },
    }
    .into();
    let secs = refused.retry_after_secs();
    let value = HeaderValue::from(secs);
    match reply
        .headers
        .iter_mut()
        .find(|(k, _)| k == hyper::header::RETRY_AFTER)
    {
        Some((_, v)) => *v = value,
        None => reply.headers.push((hyper::header::RETRY_AFTER, value)),
    }
    reply
}

/// One access-log line (see the module doc): borrowed fields only.
fn access_log(
    reply: &Reply<'_>,
    identity: Option<&Identity>,
    model: Option<&str>,
    took: Duration,
    id: &HeaderValue,
) {
    info!(
        target: "failoverd::access",
        identity = identity.map_or("anonymous", |i| &*i.0),
        model = model.unwrap_or("-"),
        region = reply.region.unwrap_or("none"),
        path = reply.path.map_or("none", Path::as_str),
        attempts = reply.attempts,
        status = reply.status.as_u16(),
        outcome = reply.outcome.as_str(),
        latency_ms = took.as_secs_f64() * 1000.0,
        request_id = id.to_str().unwrap_or("-"),
        "request"
    );
}

/// The metrics label of an invocation error.
fn call_result(e: &InvokeError) -> CallResult {
    match e {
        InvokeError::ModelNotReady { .. } => CallResult::ModelNotReady,
        InvokeError::Throttled { .. } => CallResult::Throttled,
        InvokeError::Model(_) => CallResult::ModelError,
        InvokeError::Validation { .. } => CallResult::Validation,
        InvokeError::EndpointNotFound { .. } => CallResult::EndpointNotFound,
        InvokeError::Unavailable { .. } => CallResult::Unavailable,
        InvokeError::Transport { .. } => CallResult::Connection,
        InvokeError::Other { .. } => CallResult::Other,
    }
}

/// Which paths the model has an endpoint for in a region (its row of the
/// serving table, config/serving.rs) that the router serves.
pub fn available(serving: &RegionServing) -> Available {
    Available {
        serverless: serving.serverless.is_some(),
        provisioned: serving.provisioned.is_some(),
        batch: BATCH_SUPPORTED && serving.batch.is_some(),
    }
}

/// The model's target on `path` in a region.
pub fn endpoint(serving: &RegionServing, path: Path) -> Option<&Serving> {
    serving.path(path)
}

/// `inv` as sent to `target`: with the header that picks the model there
/// (built at load). The mapping's inference component and production
/// variant replace the client's (a client cannot know the name in the
/// region that answers), and so does a `TargetModel` the region's mapping
/// names; a `TargetModel` the client sent wins over the model's default
/// (`[[models]] target_model`), as before the mapping. Borrowed when
/// nothing changes.
pub fn for_target<'a>(
    inv: &'a crate::ports::inference::Invocation,
    target: &Serving,
) -> std::borrow::Cow<'a, crate::ports::inference::Invocation> {
    use crate::config::Via;
    use std::borrow::Cow;
    let (Some(via), Some(h)) = (&target.via, &target.header) else {
        return Cow::Borrowed(inv);
    };
    match via {
        Via::TargetModel(_) if inv.target_model.is_some() && !target.pinned => Cow::Borrowed(inv),
        Via::TargetModel(_) if inv.target_model.as_ref() == Some(h) => Cow::Borrowed(inv),
        Via::TargetModel(_) => {
            let mut i = inv.clone();
            i.target_model = Some(h.clone());
            Cow::Owned(i)
        }
        Via::InferenceComponent(_) if inv.passed.inference_component.as_ref() == Some(h) => {
            Cow::Borrowed(inv)
        }
        Via::InferenceComponent(_) => {
            let mut i = inv.clone();
            i.passed.inference_component = Some(h.clone());
            Cow::Owned(i)
        }
        Via::TargetVariant(_) if inv.passed.target_variant.as_ref() == Some(h) => {
            Cow::Borrowed(inv)
        }
        Via::TargetVariant(_) => {
            let mut i = inv.clone();
            i.passed.target_variant = Some(h.clone());
            Cow::Owned(i)
        }
    }
}

/// Descriptors kept for everything but the router's client connections
/// (the admin listener's cap, upstream connections, AWS clients, files):
/// this many, or half the limit if that is less.
const RESERVED_FILES: u64 = 1024;

/// The router listener's limits from `cfg` (read once, at start): the
/// connection cap, lowered to fit the open-file limit with
/// [`RESERVED_FILES`] to spare (a cap the descriptors cannot honour would
/// leave `EMFILE`, not the cap, deciding who gets in), and a refusal in
/// SageMaker's error shape. Logs the open-file limit found at start.
fn connection_limits(cfg: &Config) -> crate::http::ConnLimits {
    let wanted = u64::from(cfg.router.max_connections);
    let max = match crate::http::raise_open_file_limit() {
        Ok(f) => {
            let fits = f.soft - RESERVED_FILES.min(f.soft / 2);
            info!(
                soft_before = f.soft_before,
                soft = f.soft,
                hard = f.hard,
                "open-file limit (soft raised to hard at start)"
            );
            if wanted > fits {
                warn!(
                    max_connections = wanted,
                    open_files = f.soft,
                    cap = fits,
                    "router.max_connections does not fit the open-file limit; capping lower (raise LimitNOFILE)"
                );
            }
            wanted.min(fits)
        }
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open-file limit");
            wanted
        }
    };
    let body = serde_json::json!({
        "__type": "ServiceUnavailable",
        "message": format!("too many connections to this router (router.max_connections: {max}); retry later"),
    })
    .to_string();
    crate::http::ConnLimits {
        max_connections: max as usize,
        header_read_timeout: cfg.router.header_read_timeout,
        send_timeout: cfg.router.send_timeout,
        refusal: crate::http::refusal_text(
            "application/json",
            "x-amzn-errortype: ServiceUnavailable\r\nx-failoverd-path: none\r\nx-failoverd-region: none\r\nx-failoverd-attempts: 0\r\n",
            &body,
        ),
        tls: None,
    }
}

/// Serve `router` on `listener` until `shutdown`; then refuse new requests
/// and let those in flight finish within `grace`. Also keeps the routing
/// table fresh while it runs.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    shutdown: ShutdownRx,
    grace: Duration,
) {
    let refresh = tokio::spawn(router.clone().refresh_routing_table(shutdown.clone()));
    let drain = {
        let router = router.clone();
        let mut rx = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signalled(&mut rx).await;
            router.begin_drain();
        })
    };
    let mut limits = connection_limits(&router.config.borrow());
    let cfg = router.config.borrow().clone();
    // Checked as the configuration loaded, before binding; failing here
    // means the files changed since: serve nothing rather than plaintext.
    let reload = match tls::cell(&cfg, tls::router_files) {
        Ok(None) => None,
        Ok(Some(cell)) => {
            limits.tls = Some(cell.clone());
            Some(tokio::spawn(tls::keep_current(
                cell,
                router.config.clone(),
                tls::router_files,
                "router",
                shutdown.clone(),
            )))
        }
        Err(e) => {
            error!(file = %e.path.display(), key = %format!("listen.router_tls.{}", e.which), error = %e.message, "router TLS files do not load; not serving");
            drop(listener);
            let _ = drain.await;
            let _ = refresh.await;
            return;
        }
    };
    // InvokeEndpointWithResponseStream answers with a stream; every other
    // route with a whole body (no box on that path).
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        async move {
            if Router::is_stream(&req) {
                router
                    .handle_stream(req)
                    .await
                    .map(http_body_util::Either::Right)
            } else {
                router.handle(req).await.map(http_body_util::Either::Left)
            }
        }
    };
    // Thread-per-core unless configured: see docs/router-performance.md.
    let threads = cfg
        .router
        .threads
        .map_or_else(crate::http::cores, |n| n as usize);
    crate::http::serve_per_core(
        listener, handler, shutdown, grace, "router", threads, limits,
    )
    .await;
    let _ = drain.await;
    let _ = refresh.await;
    if let Some(r) = reload {
        let _ = r.await;
    }
}
