//! The embedded inference router (DESIGN §6).
//!
//! Every daemon serves the SageMaker runtime wire API
//! (`POST /endpoints/{model}/invocations`, so existing SageMaker clients can
//! point their endpoint URL here) and a small native API
//! (`POST /v1/models/{model}/invoke`). For each request it:
//!
//! 1. sheds load above `router.max_in_flight` (503 + `Retry-After`) and
//!    while the daemon stops (503; requests already in flight complete);
//! 2. finds the model (404), the traffic class (`X-Traffic-Class` overrides
//!    the model's default; unknown or malformed: 400) and the deadline
//!    (`X-Deadline-Ms`, else `router.default_deadline`);
//! 3. reads the body within `router.body_read_timeout` (408) and the
//!    largest payload any path takes (413);
//! 4. ranks the regions ([`crate::core::routing::region_order`]) from the
//!    control record and health the reconcile loop last saw, and picks the
//!    path per region ([`crate::core::routing::choose_path`]);
//! 5. calls SageMaker (the model name is the `TargetModel`) with the
//!    region's own client, and decides on each failure
//!    ([`invoke::CallError`]): cold start → retry `delay × attempt` while
//!    the deadline allows, then fall back down the path chain; throttling →
//!    exponential backoff within the retry budget, else 429; model error →
//!    its status passed through; validation → 400; outage or no connection
//!    → the next region; deadline → 504.
//!
//! Every response carries `x-failoverd-path`, `x-failoverd-region` and
//! `x-failoverd-attempts` (`none`/`none`/`0` when refused before a call).
//! The SDK clients have their retries off: this is the only retry loop, so
//! the budget really bounds the extra load.
//!
//! Decisions live in `core::routing` and `core::retry` (pure, property
//! tested); this module only gathers inputs, sleeps, calls and answers.
//! The batch path ([`batch`]) stores the payload in S3 and the job in
//! DynamoDB before answering `202` + `Location: /v1/jobs/{id}`; `GET
//! /v1/jobs/{id}` answers `202` while it runs and the result once SageMaker
//! has written it.

pub mod batch;
pub mod invoke;
pub mod metrics;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::aws::AwsClients;
use crate::config::{Config, ModelConfig, RegionConfig};
use crate::core::control;
use crate::core::health::Verdict;
use crate::core::quorum::Consensus;
use crate::core::retry::{self, Breaker, BreakerPolicy, RetryBudget};
use crate::core::routing::{self, Available, Health, NoPath, Path, RegionInputs, RegionState};
use crate::http::{HttpResponse, ShutdownRx, shutdown_signalled};
use crate::state::Shared;
use invoke::{CallError, Invocation};
use metrics::{Metrics, Outcome};

/// Whether the batch (asynchronous) path is served. When off, regions
/// count as having no batch endpoint.
pub const BATCH_SUPPORTED: bool = true;
/// Retries the budget allows per second however little traffic there is.
pub const BUDGET_FLOOR_PER_SEC: f64 = 1.0;
/// Most retry tokens the budget banks.
pub const BUDGET_MAX_BALANCE: f64 = 10.0;
/// `Retry-After` seconds on shed and unavailable answers.
pub const RETRY_AFTER_SECS: &str = "1";

const H_PATH: HeaderName = HeaderName::from_static("x-failoverd-path");
const H_REGION: HeaderName = HeaderName::from_static("x-failoverd-region");
const H_ATTEMPTS: HeaderName = HeaderName::from_static("x-failoverd-attempts");
const H_CLASS: HeaderName = HeaderName::from_static("x-traffic-class");
const H_DEADLINE: HeaderName = HeaderName::from_static("x-deadline-ms");
const H_CUSTOM: HeaderName = HeaderName::from_static("x-amzn-sagemaker-custom-attributes");
const H_VARIANT: HeaderName = HeaderName::from_static("x-amzn-invoked-production-variant");
const H_ERRORTYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
const H_JOB_STATUS: HeaderName = HeaderName::from_static("x-failoverd-job-status");

/// The router's state, shared by every request.
pub struct Router {
    config: watch::Receiver<Arc<Config>>,
    clients: Arc<AwsClients>,
    shared: Arc<Shared>,
    /// The registry admin's `GET /metrics` renders.
    pub metrics: Arc<Metrics>,
    stopping: AtomicBool,
    budget: Mutex<RetryBudget>,
    breakers: Mutex<HashMap<(String, String), Breaker>>,
    /// Batch thresholds by traffic class, from the routing table.
    thresholds: RwLock<HashMap<String, u64>>,
    /// Origin of the milliseconds the pure core gets.
    origin: Instant,
    jitter: AtomicU64,
}

/// What the handler decided, before it becomes a response.
struct Reply {
    status: StatusCode,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    path: Option<Path>,
    region: Option<String>,
    attempts: u32,
    outcome: Outcome,
}

impl Reply {
    /// An error in the AWS restJson1 shape (`x-amzn-errortype` and a
    /// `{"__type", "message"}` body), so SageMaker SDK clients pointed at
    /// the router get typed errors.
    fn error(outcome: Outcome, status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        let body = serde_json::json!({"__type": code, "message": message.into()});
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        if let Ok(v) = HeaderValue::from_str(code) {
            headers.push((H_ERRORTYPE, v));
        }
        if matches!(
            outcome,
            Outcome::Shed | Outcome::Unavailable | Outcome::Throttled
        ) {
            headers.push((RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS)));
        }
        Self {
            status,
            body: Bytes::from(body.to_string()),
            headers,
            path: None,
            region: None,
            attempts: 0,
            outcome,
        }
    }

    fn at(mut self, path: Option<Path>, region: Option<&str>, attempts: u32) -> Self {
        self.path = path;
        self.region = region.map(str::to_string);
        self.attempts = attempts;
        self
    }

    fn into_response(self) -> HttpResponse {
        let mut r = Response::new(Full::new(self.body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        h.insert(
            H_PATH,
            HeaderValue::from_static(self.path.map_or("none", Path::as_str)),
        );
        h.insert(
            H_REGION,
            self.region
                .as_deref()
                .and_then(|r| HeaderValue::from_str(r).ok())
                .unwrap_or(HeaderValue::from_static("none")),
        );
        h.insert(H_ATTEMPTS, HeaderValue::from(self.attempts));
        r
    }
}

/// A parsed, body-complete request.
struct Ask {
    class: String,
    deadline: Instant,
    inv: Invocation,
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
    /// SageMaker through `clients`, routing by what `shared` last saw.
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        clients: Arc<AwsClients>,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        let cfg = config.borrow().clone();
        let regions: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
        Arc::new(Self {
            budget: Mutex::new(RetryBudget::new(
                cfg.router.retry_budget,
                BUDGET_FLOOR_PER_SEC,
                BUDGET_MAX_BALANCE,
            )),
            config,
            clients,
            shared,
            metrics: Arc::new(Metrics::new(&regions)),
            stopping: AtomicBool::new(false),
            breakers: Mutex::default(),
            thresholds: RwLock::default(),
            origin: Instant::now(),
            jitter: AtomicU64::new(0x5eed),
        })
    }

    /// Start refusing new requests (503); requests in flight carry on.
    pub fn begin_drain(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether the router is draining.
    pub fn is_draining(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// A number in `[0, 1)` for backoff jitter (splitmix64 of a counter).
    fn jitter(&self) -> f64 {
        let mut z = self
            .jitter
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Handle one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let _guard = InFlight(&self.metrics.in_flight);
        let reply = self.reply(req, started).await;
        self.metrics.request(
            reply.path,
            reply.region.as_deref(),
            reply.outcome,
            reply.attempts,
            started.elapsed(),
        );
        reply.into_response()
    }

    async fn reply(&self, req: Request<Incoming>, started: Instant) -> Reply {
        let cfg = self.config.borrow().clone();
        let path = req.uri().path();
        let model = if let Some(name) = path
            .strip_prefix("/endpoints/")
            .and_then(|r| r.strip_suffix("/invocations"))
        {
            percent_decode(name)
        } else if let Some(name) = path
            .strip_prefix("/v1/models/")
            .and_then(|r| r.strip_suffix("/invoke"))
        {
            percent_decode(name)
        } else if let Some(id) = path.strip_prefix("/v1/jobs/") {
            if req.method() != Method::GET {
                let mut r = Reply::error(
                    Outcome::MethodNotAllowed,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "use GET",
                );
                r.headers
                    .push((hyper::header::ALLOW, HeaderValue::from_static("GET")));
                return r;
            }
            return self.job(&cfg, id).await;
        } else if path == "/ping" && req.method() == Method::GET {
            return Reply {
                status: StatusCode::OK,
                body: Bytes::from_static(b"ok\n"),
                headers: vec![],
                path: None,
                region: None,
                attempts: 0,
                outcome: Outcome::Ok,
            };
        } else {
            return Reply::error(
                Outcome::NotFound,
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no such route: {path}"),
            );
        };
        if req.method() != Method::POST {
            let mut r = Reply::error(
                Outcome::MethodNotAllowed,
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "use POST",
            );
            r.headers
                .push((hyper::header::ALLOW, HeaderValue::from_static("POST")));
            return r;
        }
        if self.is_draining() {
            return Reply::error(
                Outcome::Shed,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "this router is shutting down; retry on another",
            );
        }
        let in_flight = self.metrics.in_flight.load(Ordering::Relaxed);
        if in_flight > u64::from(cfg.router.max_in_flight) {
            return Reply::error(
                Outcome::Shed,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!(
                    "over capacity: more than {} requests in flight",
                    cfg.router.max_in_flight
                ),
            );
        }
        let Some(model_cfg) = cfg.models.iter().find(|m| m.name == model) else {
            return Reply::error(
                Outcome::NotFound,
                StatusCode::NOT_FOUND,
                "ValidationError",
                format!("no such model: {model:?}"),
            );
        };
        let ask = match self.parse(&cfg, model_cfg, req, started).await {
            Ok(a) => a,
            Err(r) => return r,
        };
        self.route(&cfg, ask).await
    }

    /// Headers and body into an [`Ask`], or the refusal.
    async fn parse(
        &self,
        cfg: &Config,
        model_cfg: &ModelConfig,
        req: Request<Incoming>,
        started: Instant,
    ) -> Result<Ask, Reply> {
        let default_class = model_cfg.traffic_class.as_str();
        let bad = |m: String| {
            Reply::error(
                Outcome::BadRequest,
                StatusCode::BAD_REQUEST,
                "ValidationError",
                m,
            )
        };
        let headers = req.headers();
        let text = |name: &HeaderName| -> Result<Option<String>, Reply> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_string()))
                    .map_err(|_| bad(format!("{name}: not visible ASCII"))),
            }
        };
        let class = match text(&H_CLASS)? {
            None => default_class.to_string(),
            Some(c) if self.known_classes(cfg).contains(c.as_str()) => c,
            Some(c) => {
                return Err(bad(format!(
                    "X-Traffic-Class: unknown traffic class {c:?}; known: {:?}",
                    self.known_classes(cfg)
                )));
            }
        };
        let max_deadline_ms = cfg.router.max_deadline.as_millis() as u64;
        let deadline = match text(&H_DEADLINE)? {
            None => cfg.router.default_deadline,
            Some(d) => match d.parse::<u64>() {
                Ok(ms) if (1..=max_deadline_ms).contains(&ms) => Duration::from_millis(ms),
                _ => {
                    return Err(bad(format!(
                        "X-Deadline-Ms: {d:?} is not a number of milliseconds in 1..={max_deadline_ms}"
                    )));
                }
            },
        };
        let content_type = text(&CONTENT_TYPE)?;
        let accept = text(&hyper::header::ACCEPT)?;
        let custom_attributes = text(&H_CUSTOM)?;
        let limit = self.max_payload(cfg);
        let too_large = || {
            Reply::error(
                Outcome::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                "ValidationError",
                format!("payload too large: the limit is {limit} bytes"),
            )
        };
        if let Some(len) = text(&CONTENT_LENGTH)? {
            if len.parse::<u64>().is_ok_and(|l| l > limit) {
                return Err(too_large());
            }
        }
        let body = Limited::new(req.into_body(), limit as usize);
        let body = match tokio::time::timeout(cfg.router.body_read_timeout, body.collect()).await {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Ok(Err(e)) => return Err(bad(format!("cannot read the request body: {e}"))),
            Err(_) => {
                return Err(Reply::error(
                    Outcome::BodyTimeout,
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeout",
                    format!(
                        "the body did not arrive within {:?}",
                        cfg.router.body_read_timeout
                    ),
                ));
            }
        };
        Ok(Ask {
            class,
            deadline: started + deadline,
            inv: Invocation {
                model: model_cfg.name.clone(),
                target_model: model_cfg.target_model.clone(),
                body,
                content_type,
                accept,
                custom_attributes,
            },
        })
    }

    /// Traffic classes a client may name.
    fn known_classes(&self, cfg: &Config) -> BTreeSet<String> {
        let mut known: BTreeSet<String> = [routing::SERVERLESS_PREFERRED, routing::STANDARD]
            .into_iter()
            .map(str::to_string)
            .collect();
        known.extend(cfg.models.iter().map(|m| m.traffic_class.clone()));
        known.extend(
            self.thresholds
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        known
    }

    /// The largest payload some region's path takes.
    fn max_payload(&self, cfg: &Config) -> u64 {
        cfg.regions
            .iter()
            .flat_map(|r| {
                let a = available(r);
                Path::ALL
                    .into_iter()
                    .filter(move |&p| a.has(p))
                    .map(Path::max_payload)
            })
            .max()
            .unwrap_or(routing::REALTIME_MAX_PAYLOAD)
            .min(cfg.router.max_batch_payload)
    }

    fn batch_threshold(&self, cfg: &Config, class: &str) -> u64 {
        self.thresholds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(class)
            .copied()
            .unwrap_or(cfg.router.default_batch_threshold)
    }

    /// Rank the regions from the last round the reconcile loop saw.
    fn regions_in_order(&self, cfg: &Config, ask: &Ask) -> Vec<String> {
        let len = ask.inv.body.len() as u64;
        let threshold = self.batch_threshold(cfg, &ask.class);
        let now = self.now_ms();
        let (active, health): (Option<String>, HashMap<String, Health>) = self.shared.read(|st| {
            let health = cfg
                .regions
                .iter()
                .map(|r| {
                    let quorum = st
                        .tally
                        .as_ref()
                        .filter(|t| t.no_quorum.is_none())
                        .and_then(|t| t.regions.get(&r.name).copied());
                    let seen = st.trackers.get(&r.name).map(|t| t.verdict);
                    let h = match (quorum, seen) {
                        (Some(Consensus::Down), _) | (_, Some(Verdict::Down)) => Health::Down,
                        (Some(Consensus::Up), _) | (_, Some(Verdict::Up)) => Health::Up,
                        _ => Health::Unknown,
                    };
                    (r.name.clone(), h)
                })
                .collect();
            let role = st.role_at(crate::aws::control_table::now_ms());
            let active = control::routing_active(st.record.as_ref(), role.as_ref());
            (active.map(str::to_string), health)
        });
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let states: Vec<RegionState> = cfg
            .regions
            .iter()
            .map(|r| {
                let ejected = routing::choose_path(&ask.class, len, threshold, available(r))
                    .ok()
                    .and_then(|p| endpoint(r, p))
                    .and_then(|ep| breakers.get(&(r.name.clone(), ep.to_string())))
                    .is_some_and(|b| b.is_ejected(now));
                RegionState {
                    name: r.name.clone(),
                    priority: r.priority,
                    health: health.get(&r.name).copied().unwrap_or(Health::Unknown),
                    ejected,
                }
            })
            .collect();
        drop(breakers);
        routing::region_order(&RegionInputs {
            local: &cfg.region,
            active: active.as_deref(),
            local_draining: self.shared.draining.load(Ordering::Relaxed),
            regions: &states,
        })
    }

    fn breaker_result(&self, cfg: &Config, region: &str, endpoint: &str, path: Path, ok: bool) {
        let now = self.now_ms();
        let policy = BreakerPolicy {
            consecutive_failures: cfg.router.breaker_failures,
            base_ejection_ms: cfg.router.breaker_ejection.as_millis() as u64,
            max_ejection_ms: cfg.router.breaker_max_ejection.as_millis() as u64,
        };
        let mut b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let entry = b
            .entry((region.to_string(), endpoint.to_string()))
            .or_default();
        if ok {
            entry.on_success(now, &policy);
        } else if entry.on_failure(now, &policy) {
            warn!(%region, %endpoint, ejections = entry.ejections(), "circuit breaker ejected a target");
            self.metrics.ejection(path, region);
        }
    }

    /// Try regions and paths until one answers or the deadline passes.
    async fn route(&self, cfg: &Config, ask: Ask) -> Reply {
        self.budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_request(self.now_ms());
        let len = ask.inv.body.len() as u64;
        let threshold = self.batch_threshold(cfg, &ask.class);
        let order = self.regions_in_order(cfg, &ask);
        let mut attempts = 0u32;
        let mut last: Option<(Path, String, CallError)> = None;
        let mut too_large: Option<u64> = None;
        let mut job_id: Option<String> = None;
        let deadline_reply = |path: Option<Path>, region: Option<&str>, attempts: u32| {
            Reply::error(
                Outcome::DeadlineExceeded,
                StatusCode::GATEWAY_TIMEOUT,
                "DeadlineExceeded",
                "the request's deadline passed before a region answered",
            )
            .at(path, region, attempts)
        };

        for region_name in &order {
            let Some(region) = cfg.region(region_name) else {
                continue;
            };
            let avail = available(region);
            let mut path = match routing::choose_path(&ask.class, len, threshold, avail) {
                Ok(p) => p,
                Err(NoPath::TooLarge { limit }) => {
                    too_large = Some(limit);
                    continue;
                }
                Err(NoPath::NoEndpoint) => continue,
            };
            let client = self.clients.sagemaker_runtime(region_name);
            'path: loop {
                let Some(ep) = endpoint(region, path) else {
                    break 'path;
                };
                if path == Path::Batch {
                    attempts += 1;
                    let id = job_id.get_or_insert_with(batch::new_job_id).clone();
                    let submit = batch::submit(&self.clients, cfg, region_name, ep, &id, &ask.inv);
                    let err = match tokio::time::timeout_at(ask.deadline, submit).await {
                        Err(_) => return deadline_reply(Some(path), Some(region_name), attempts),
                        Ok(Ok(job)) => {
                            self.metrics
                                .call(path, region_name, metrics::CallResult::Ok);
                            self.breaker_result(cfg, region_name, ep, path, true);
                            return accepted(&job).at(Some(path), Some(region_name), attempts);
                        }
                        Ok(Err(e)) => e,
                    };
                    self.metrics.call(path, region_name, err.result());
                    if err.is_target_failure() {
                        self.breaker_result(cfg, region_name, ep, path, false);
                    }
                    warn!(region = %region_name, endpoint = ep, job = %id, error = %err.detail(), "batch submission failed");
                    if let CallError::Validation(m) = &err {
                        return Reply::error(
                            Outcome::BadRequest,
                            StatusCode::BAD_REQUEST,
                            "ValidationError",
                            m.clone(),
                        )
                        .at(Some(path), Some(region_name), attempts);
                    }
                    last = Some((path, region_name.clone(), err));
                    break 'path;
                }
                let (mut cold, mut throttled) = (0u32, 0u32);
                loop {
                    if Instant::now() >= ask.deadline {
                        return deadline_reply(Some(path), Some(region_name), attempts);
                    }
                    attempts += 1;
                    let call = invoke::invoke(&client, ep, &ask.inv);
                    let result = match tokio::time::timeout_at(ask.deadline, call).await {
                        Ok(r) => r,
                        Err(_) => return deadline_reply(Some(path), Some(region_name), attempts),
                    };
                    let err = match result {
                        Ok(answer) => {
                            self.metrics
                                .call(path, region_name, metrics::CallResult::Ok);
                            self.breaker_result(cfg, region_name, ep, path, true);
                            let mut headers = Vec::new();
                            let ct = answer
                                .content_type
                                .as_deref()
                                .and_then(|c| HeaderValue::from_str(c).ok())
                                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                            headers.push((CONTENT_TYPE, ct));
                            if let Some(v) = answer
                                .custom_attributes
                                .as_deref()
                                .and_then(|c| HeaderValue::from_str(c).ok())
                            {
                                headers.push((H_CUSTOM, v));
                            }
                            if let Some(v) = answer
                                .invoked_variant
                                .as_deref()
                                .and_then(|c| HeaderValue::from_str(c).ok())
                            {
                                headers.push((H_VARIANT, v));
                            }
                            return Reply {
                                status: StatusCode::OK,
                                body: answer.body,
                                headers,
                                outcome: Outcome::Ok,
                                path: None,
                                region: None,
                                attempts: 0,
                            }
                            .at(
                                Some(path),
                                Some(region_name),
                                attempts,
                            );
                        }
                        Err(e) => e,
                    };
                    self.metrics.call(path, region_name, err.result());
                    if err.is_target_failure() {
                        self.breaker_result(cfg, region_name, ep, path, false);
                    }
                    debug!(region = %region_name, endpoint = ep, path = path.as_str(), attempts, error = %err.detail(), "attempt failed");
                    match &err {
                        CallError::ModelNotReady => {
                            cold += 1;
                            if cold <= cfg.router.cold_start_retries {
                                let delay =
                                    retry::cold_start_delay(cfg.router.cold_start_delay, cold);
                                if Instant::now() + delay < ask.deadline {
                                    tokio::time::sleep(delay).await;
                                    continue;
                                }
                            }
                            last = Some((path, region_name.clone(), err));
                            match routing::fallback_after(path, len, avail) {
                                Some(next) => {
                                    info!(region = %region_name, from = path.as_str(), to = next.as_str(), "cold start: falling back");
                                    path = next;
                                    continue 'path;
                                }
                                None => break 'path,
                            }
                        }
                        CallError::Throttled(_) => {
                            throttled += 1;
                            let affordable = throttled <= cfg.router.throttle_retries
                                && self
                                    .budget
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .try_withdraw(self.now_ms());
                            if affordable {
                                let delay = retry::throttle_delay(
                                    cfg.router.throttle_base_delay,
                                    cfg.router.throttle_max_delay,
                                    throttled,
                                    self.jitter(),
                                );
                                if Instant::now() + delay < ask.deadline {
                                    tokio::time::sleep(delay).await;
                                    continue;
                                }
                            } else if throttled <= cfg.router.throttle_retries {
                                self.metrics.budget_refusal();
                            }
                            return Reply::error(
                                Outcome::Throttled,
                                StatusCode::TOO_MANY_REQUESTS,
                                "ThrottlingException",
                                format!("throttled by {region_name}; the retry budget is spent"),
                            )
                            .at(
                                Some(path),
                                Some(region_name),
                                attempts,
                            );
                        }
                        CallError::Model { status, message } => {
                            let status =
                                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
                            let mut r = Reply::error(
                                Outcome::ModelError,
                                status,
                                "ModelError",
                                message.clone(),
                            );
                            let body = serde_json::json!({
                                "__type": "ModelError",
                                "message": message,
                                "OriginalStatusCode": status.as_u16(),
                                "OriginalMessage": message,
                            });
                            r.body = Bytes::from(body.to_string());
                            return r.at(Some(path), Some(region_name), attempts);
                        }
                        CallError::Validation(m) => {
                            return Reply::error(
                                Outcome::BadRequest,
                                StatusCode::BAD_REQUEST,
                                "ValidationError",
                                m.clone(),
                            )
                            .at(
                                Some(path),
                                Some(region_name),
                                attempts,
                            );
                        }
                        CallError::Unavailable(_) | CallError::Connection(_) => {
                            last = Some((path, region_name.clone(), err));
                            break 'path;
                        }
                        CallError::Other(m) => {
                            return Reply::error(
                                Outcome::BadGateway,
                                StatusCode::BAD_GATEWAY,
                                "BadGateway",
                                m.clone(),
                            )
                            .at(
                                Some(path),
                                Some(region_name),
                                attempts,
                            );
                        }
                    }
                }
            }
        }
        match (last, too_large) {
            (None, Some(limit)) => Reply::error(
                Outcome::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                "ValidationError",
                format!("payload of {len} bytes is over every path's limit ({limit} bytes)"),
            ),
            (Some((path, region, err)), _) => Reply::error(
                Outcome::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!(
                    "no region could serve the request; last: {region} {}: {}",
                    path.as_str(),
                    err.detail()
                ),
            )
            .at(Some(path), Some(&region), attempts),
            (None, None) => Reply::error(
                Outcome::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "no region has an endpoint for this request",
            ),
        }
    }

    /// `GET /v1/jobs/{id}`: 202 while the job runs, 200 with the result,
    /// 502 with the failure, 404 for no such job.
    async fn job(&self, cfg: &Config, id: &str) -> Reply {
        if !batch::is_job_id(id) {
            return Reply::error(
                Outcome::NotFound,
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no such job: {id:?}"),
            );
        }
        match batch::poll(&self.clients, cfg, id).await {
            Ok(None) => Reply::error(
                Outcome::NotFound,
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no such job: {id}"),
            ),
            Ok(Some(batch::JobState::Pending(job))) => {
                let mut r = accepted(&job);
                r.headers
                    .push((RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS)));
                r.at(Some(Path::Batch), Some(&job.region), 0)
            }
            Ok(Some(batch::JobState::Done {
                job,
                body,
                content_type,
            })) => {
                let ct = content_type
                    .as_deref()
                    .and_then(|c| HeaderValue::from_str(c).ok())
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                Reply {
                    status: StatusCode::OK,
                    body,
                    headers: vec![
                        (CONTENT_TYPE, ct),
                        (H_JOB_STATUS, HeaderValue::from_static("completed")),
                    ],
                    path: None,
                    region: None,
                    attempts: 0,
                    outcome: Outcome::Ok,
                }
                .at(Some(Path::Batch), Some(&job.region), 0)
            }
            Ok(Some(batch::JobState::Failed { job, body })) => {
                let mut r = Reply::error(
                    Outcome::ModelError,
                    StatusCode::BAD_GATEWAY,
                    "ModelError",
                    String::from_utf8_lossy(&body).into_owned(),
                );
                r.headers
                    .push((H_JOB_STATUS, HeaderValue::from_static("failed")));
                r.at(Some(Path::Batch), Some(&job.region), 0)
            }
            Err(e) => {
                warn!(job = id, error = %e, "cannot read a batch job");
                Reply::error(
                    Outcome::Unavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    format!("cannot read the job now: {e}"),
                )
            }
        }
    }

    /// Re-read the routing table (batch thresholds by class) every
    /// `router.routing_refresh` until shutdown. A failed read keeps the
    /// last thresholds.
    pub async fn refresh_routing_table(self: Arc<Self>, mut shutdown: ShutdownRx) {
        let mut failing = false;
        loop {
            let cfg = self.config.borrow().clone();
            match read_thresholds(&self.clients, &cfg).await {
                Ok(t) => {
                    if failing || *self.thresholds.read().unwrap_or_else(|p| p.into_inner()) != t {
                        info!(thresholds = ?t, "routing table read");
                    }
                    failing = false;
                    *self.thresholds.write().unwrap_or_else(|p| p.into_inner()) = t;
                }
                Err(e) => {
                    if !failing {
                        warn!(table = %cfg.tables.routing, error = %e, "cannot read the routing table; keeping the last thresholds");
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

/// Scan the routing table: items with `trafficClass` (S) and
/// `batchThreshold` (N, bytes).
async fn read_thresholds(
    clients: &AwsClients,
    cfg: &Config,
) -> Result<HashMap<String, u64>, String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let client = clients.dynamodb(&cfg.region);
    let mut out = HashMap::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(&cfg.tables.routing)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())?;
        for item in page.items() {
            let class = match item.get("trafficClass") {
                Some(AttributeValue::S(s)) => s.clone(),
                _ => continue,
            };
            if let Some(AttributeValue::N(n)) = item.get("batchThreshold") {
                if let Ok(t) = n.parse::<u64>() {
                    out.insert(class, t.max(1));
                }
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(out),
        }
    }
}

/// `202 Accepted` for a stored, submitted (or still running) job.
fn accepted(job: &batch::Job) -> Reply {
    let location = format!("/v1/jobs/{}", job.id);
    let body = serde_json::json!({
        "id": job.id,
        "status": "in_progress",
        "location": location,
        "region": job.region,
    });
    let mut headers = vec![
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (H_JOB_STATUS, HeaderValue::from_static("in_progress")),
    ];
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.push((hyper::header::LOCATION, v));
    }
    Reply {
        status: StatusCode::ACCEPTED,
        body: Bytes::from(body.to_string()),
        headers,
        path: Some(Path::Batch),
        region: Some(job.region.clone()),
        attempts: 0,
        outcome: Outcome::Accepted,
    }
}

/// Which paths `region` has an endpoint for that the router serves.
pub fn available(region: &RegionConfig) -> Available {
    Available {
        serverless: region.sagemaker.serverless.is_some(),
        provisioned: region.sagemaker.provisioned.is_some(),
        batch: BATCH_SUPPORTED && region.sagemaker.batch.is_some(),
    }
}

/// The endpoint name of `path` in `region`.
pub fn endpoint(region: &RegionConfig, path: Path) -> Option<&str> {
    match path {
        Path::Serverless => region.sagemaker.serverless.as_deref(),
        Path::Provisioned => region.sagemaker.provisioned.as_deref(),
        Path::Batch => region.sagemaker.batch.as_deref(),
    }
}

/// Undo percent-encoding of a path segment (SDKs encode the endpoint label).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    let handler = move |req| router.clone().handle(req);
    crate::http::serve(listener, handler, shutdown, grace, "router").await;
    let _ = drain.await;
    let _ = refresh.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_are_percent_decoded() {
        assert_eq!(percent_decode("default"), "default");
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
