//! The lab's model server: the SageMaker runtime `InvokeEndpoint` wire API
//! (restJson1) on loopback, with faults the drills can switch on and off.
//!
//! Why it exists: moto's `InvokeEndpoint` always succeeds, so nothing in the
//! lab could exercise cold starts, throttling or a regional outage. This
//! server answers `POST /endpoints/{name}/invocations` the way SageMaker
//! does, and errors exactly the way AWS encodes them for restJson1 (an
//! `x-amzn-errortype` header plus a `{"__type", "message"}` JSON body), so
//! the real Rust SDK maps them to its typed `InvokeEndpointError` variants.
//!
//! The region of a request is taken from the SigV4 credential scope in
//! `Authorization` (`Credential=AKID/20261126/us-east-1/sagemaker/aws4_request`),
//! else from an `x-lab-region` header, else it is `unknown`. A success
//! answers `{"region", "endpoint", "bytes", "echo"}` with the `Accept` type
//! as its `Content-Type`, and echoes `X-Amzn-SageMaker-Custom-Attributes`
//! back (as a model may). As in SageMaker, a payload over 6 MiB or an empty
//! endpoint name is a `ValidationError`.
//!
//! # Control API (JSON)
//!
//! - `PUT /_lab/behaviour` with `{"region": "us-east-1" | "*", "endpoint":
//!   "name" | "*", ...settings}` creates or updates a rule. Settings are all
//!   optional (missing = unchanged): `latency` ("20ms"),
//!   `cold_start_after_idle` (an endpoint idle this long, or never invoked,
//!   is cold; `null` = never cold), `cold_start` (how long the warm-up takes;
//!   the first call on a cold endpoint starts it and every call during it
//!   gets `ModelNotReadyException`), `error_rate` (0.0–1.0) with `error` (an
//!   error code, default `ThrottlingException`) and `seed` (default 1; the
//!   failure pattern is a deterministic function of seed and call number),
//!   `outage` (every call gets `ServiceUnavailable`), `model_error_status`
//!   (`ModelError`'s `OriginalStatusCode`, default 500), `slow_rate`
//!   (0.0–1.0) with `slow_latency` (that fraction of calls, drawn from the
//!   seed like errors, takes `slow_latency` instead of `latency`: a tail),
//!   `not_found` (the endpoint does not exist in the region: every call gets
//!   SageMaker's `ValidationError` "Endpoint {name} of account {id} not
//!   found."), `after_body` (`"reset"`: once the request was read and
//!   counted, the connection closes without an answer; `"cut"`: a 200 whose
//!   body breaks off half way; `null`: answer). A hang is a `latency`
//!   longer than any caller waits. The most
//!   specific rule wins, as a whole: (region, endpoint), (region, *),
//!   (*, endpoint), (*, *).
//! - `GET /_lab/behaviour`: the rules. `POST /_lab/reset`: forget rules,
//!   warm state, failure sequences and counters.
//! - `GET /_lab/stats`: `{region: {endpoint: {invocations, successes,
//!   errors: {code: n}}}}`.
//! - `GET /ping` and `GET /healthz`: 200.
//! - `PUT /_lab/components` with `{"region": "us-east-1" | "*", "endpoint":
//!   "name", "components": ["llm-ic", ...]}`: the inference components the
//!   endpoint hosts (an empty list: none; `--component
//!   REGION/ENDPOINT/COMPONENT` at start does the same). `GET
//!   /_lab/components`: them.
//!
//! # Inference components
//!
//! An endpoint that hosts components answers only calls that name one
//! (`X-Amzn-SageMaker-Inference-Component`, boto3's
//! `InferenceComponentName`): without the header, SageMaker's
//! `ValidationError` "Inference Component Name header is required for
//! endpoints to which you plan to deploy inference components. ..."; a
//! component it does not host, a `ValidationError` "Inference component
//! {name} of endpoint {endpoint} not found." (the wording is the lab's: we
//! have not seen AWS's). A component is a target of its own: its rules,
//! warm state and stats are kept under `{endpoint}/{component}` (a rule on
//! `lab-gpu/llm` is that component's; a rule on `lab-gpu` applies to its
//! components that have none), and a success says `"component"`. An
//! endpoint the lab was told no components of takes (and echoes) the
//! header as it always did.
//!
//! # Response streaming
//!
//! `POST /endpoints/{name}/invocations-response-stream`
//! (`InvokeEndpointWithResponseStream`) decides like a real-time call (its
//! errors before the stream are the same restJson1 errors), then answers
//! `200` `application/vnd.amazon.eventstream` with `stream_parts` (default
//! 3) `PayloadPart` events, each `{"region","endpoint","part"}` and a
//! newline, `stream_interval` apart. With `stream_fault_after: n` (fewer
//! than the parts) the stream fails after `n` parts: `stream_fault:
//! "model_stream_error"` (default) sends SageMaker's in-band
//! `ModelStreamError` event, `"cut"` closes the connection with no closing
//! event. The messages are encoded by the router's own encoder
//! (`failoverd::router::reply::event_stream`), which the SDK tests check.
//!
//! # Asynchronous inference
//!
//! `POST /endpoints/{name}/async-invocations` (`InvokeEndpointAsync`) reads
//! the payload from the S3 object named by `X-Amzn-SageMaker-InputLocation`
//! and answers `202` with `{"InferenceId", "OutputLocation",
//! "FailureLocation"}` (and the `X-Amzn-SageMaker-OutputLocation` /
//! `-FailureLocation` headers). After the rule's `latency` it writes the
//! result (the same JSON a real-time call answers) to
//! `s3://<input bucket>/async-output/<id>.out` (with the input's location
//! and the `RequestTTLSeconds` / `InvocationTimeoutSeconds` it received,
//! as `input` and `limits`), or, when the rule's
//! `error_rate` draws a failure, a message to `async-failures/<id>.out`. An
//! `outage` answers `ServiceUnavailable` at once. S3 is the emulator at
//! `--s3-endpoint` (moto in the lab); without it async calls fail with
//! `InternalFailure`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use failoverd::core::rand::{GOLDEN_GAMMA, splitmix64, unit};
use failoverd::http::{HttpResponse, json, percent_decode, text};
use failoverd::router::reply::event_stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use tracing::{error, info};

/// SageMaker's real-time payload limit.
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// The header a model may echo to its caller.
const CUSTOM_ATTRIBUTES: &str = "x-amzn-sagemaker-custom-attributes";
/// Control requests are small.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// `failoverd-lab model-server` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// After binding, write the bound port to this file (atomically).
    #[arg(long)]
    pub port_file: Option<PathBuf>,
    /// S3 endpoint for asynchronous invocations' inputs and outputs (moto).
    #[arg(long, env = "FAILOVERD_LAB_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// An inference component an endpoint hosts, `REGION/ENDPOINT/COMPONENT`
    /// (`*` for every region); repeat for more.
    #[arg(long = "component")]
    pub components: Vec<String>,
}

/// Serve until SIGTERM or SIGINT; the process exit code.
pub async fn main(args: Args) -> i32 {
    // Signals first: whoever sees the port file may stop us right away.
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install the SIGTERM handler");
            return 1;
        }
    };
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(listen = %args.listen, error = %e, "cannot bind");
            return 1;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            error!(error = %e, "cannot read the bound address");
            return 1;
        }
    };
    if let Some(path) = &args.port_file
        && let Err(e) = write_port_file(path, addr.port())
    {
        error!(path = %path.display(), error = %e, "cannot write the port file");
        return 1;
    }
    info!(%addr, "model server listening");

    let lab = Arc::new(Lab {
        s3_endpoint: args.s3_endpoint.clone(),
        ..Lab::default()
    });
    for c in &args.components {
        let mut parts = c.splitn(3, '/');
        let (Some(r), Some(e), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            error!(component = %c, "--component is REGION/ENDPOINT/COMPONENT");
            return 1;
        };
        lab.state()
            .components
            .entry((r.to_string(), e.to_string()))
            .or_default()
            .insert(name.to_string());
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve_lab(listener, lab, stop_rx));
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        r = tokio::signal::ctrl_c() => if r.is_ok() { "SIGINT" } else { "signal handler failure" },
    };
    info!(signal = why, "model server stopping");
    let _ = stop.send(true);
    let _ = server.await;
    0
}

/// A response body: whole, or streamed in parts (that may fail).
pub type LabBody = BoxBody<Bytes, std::io::Error>;

/// How the server answers one request: a response, or no answer at all.
enum Answer {
    Respond(Response<LabBody>),
    /// Close the connection without answering (after the body was read).
    Drop,
}

impl From<HttpResponse> for Answer {
    fn from(r: HttpResponse) -> Self {
        Answer::Respond(r.map(|b| b.map_err(|never| match never {}).boxed()))
    }
}

/// Accept until `stop`, one HTTP/1.1 connection task each. The lab's own
/// loop rather than `failoverd::http::serve`: its answers may stream, cut
/// off mid-body, or be no answer at all (the connection closed once the
/// request was read), which a whole-body response cannot express.
async fn serve_lab(
    listener: TcpListener,
    lab: Arc<Lab>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let lab = Arc::clone(&lab);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let lab = Arc::clone(&lab);
                async move {
                    match lab.handle(req).await {
                        Answer::Respond(r) => Ok(r),
                        // hyper closes the connection on a service error,
                        // without writing a response.
                        Answer::Drop => Err(std::io::Error::other("lab: dropped the connection")),
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Write `port` to `path` via a temporary file and a rename, so readers
/// never see a partial number.
fn write_port_file(path: &Path, port: u16) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)
}

/// The errors the server can answer with, named as SageMaker names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum ErrorCode {
    ModelNotReadyException,
    /// Not modelled by the SDK: surfaces as `Unhandled` with this code.
    ThrottlingException,
    ModelError,
    ServiceUnavailable,
    ValidationError,
    InternalFailure,
}

impl ErrorCode {
    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ModelNotReadyException => "ModelNotReadyException",
            Self::ThrottlingException => "ThrottlingException",
            Self::ModelError => "ModelError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::ValidationError => "ValidationError",
            Self::InternalFailure => "InternalFailure",
        }
    }

    /// The HTTP status SageMaker uses for it.
    pub fn status(self) -> StatusCode {
        match self {
            Self::ModelNotReadyException => StatusCode::TOO_MANY_REQUESTS,
            Self::ThrottlingException | Self::ValidationError => StatusCode::BAD_REQUEST,
            Self::ModelError => StatusCode::FAILED_DEPENDENCY,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalFailure => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// How invocations of the endpoints a rule covers behave.
#[derive(Clone, Debug, PartialEq)]
pub struct Behaviour {
    pub latency: Duration,
    pub cold_start_after_idle: Option<Duration>,
    pub cold_start: Duration,
    pub error_rate: f64,
    pub error: ErrorCode,
    pub seed: u64,
    pub outage: bool,
    pub model_error_status: u16,
    pub slow_rate: f64,
    pub slow_latency: Duration,
    /// Response streaming: parts per answer, the pause before each part,
    /// and a failure after that many parts (in-band `ModelStreamError`, or
    /// the connection cut).
    pub stream_parts: u32,
    pub stream_interval: Duration,
    pub stream_fault_after: Option<u32>,
    pub stream_fault: StreamFault,
    pub not_found: bool,
    /// What happens once a call was read and the model ran: nothing (an
    /// answer), or the connection fails.
    pub after_body: Option<AfterBody>,
}

/// A connection failure after the model ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterBody {
    /// The connection closes without an answer.
    Reset,
    /// A 200 head and part of the body, then the connection closes.
    Cut,
}

impl AfterBody {
    fn as_str(self) -> &'static str {
        match self {
            AfterBody::Reset => "reset",
            AfterBody::Cut => "cut",
        }
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            cold_start_after_idle: None,
            cold_start: Duration::ZERO,
            error_rate: 0.0,
            error: ErrorCode::ThrottlingException,
            seed: 1,
            outage: false,
            model_error_status: 500,
            slow_rate: 0.0,
            slow_latency: Duration::ZERO,
            stream_parts: 3,
            stream_interval: Duration::ZERO,
            stream_fault_after: None,
            stream_fault: StreamFault::ModelStreamError,
            not_found: false,
            after_body: None,
        }
    }
}

impl Behaviour {
    fn to_json(&self) -> Value {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        json!({
            "latency": d(self.latency),
            "cold_start_after_idle": self.cold_start_after_idle.map(d),
            "cold_start": d(self.cold_start),
            "error_rate": self.error_rate,
            "error": self.error.as_str(),
            "seed": self.seed,
            "outage": self.outage,
            "model_error_status": self.model_error_status,
            "slow_rate": self.slow_rate,
            "slow_latency": d(self.slow_latency),
            "stream_parts": self.stream_parts,
            "stream_interval": d(self.stream_interval),
            "stream_fault_after": self.stream_fault_after,
            "stream_fault": self.stream_fault.as_str(),
            "not_found": self.not_found,
            "after_body": self.after_body.map(AfterBody::as_str),
        })
    }
}

/// A `PUT /_lab/behaviour` body. `None` leaves a setting unchanged; only
/// `cold_start_after_idle` distinguishes `null` (never cold) from absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    region: String,
    endpoint: String,
    latency: Option<String>,
    #[serde(default, deserialize_with = "present")]
    cold_start_after_idle: Option<Option<String>>,
    cold_start: Option<String>,
    error_rate: Option<f64>,
    error: Option<ErrorCode>,
    seed: Option<u64>,
    outage: Option<bool>,
    model_error_status: Option<u16>,
    slow_rate: Option<f64>,
    slow_latency: Option<String>,
    stream_parts: Option<u32>,
    stream_interval: Option<String>,
    /// A number of parts, or `null` (no fault).
    #[serde(default, deserialize_with = "present_u32")]
    stream_fault_after: Option<Option<u32>>,
    stream_fault: Option<StreamFault>,
    not_found: Option<bool>,
    /// `"reset"`, `"cut"`, or `null` (answer normally).
    #[serde(default, deserialize_with = "present_after_body")]
    after_body: Option<Option<AfterBody>>,
}

fn present_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

/// How a response stream fails mid-way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFault {
    /// SageMaker's in-band `ModelStreamError` event (the container failed).
    ModelStreamError,
    /// The connection closes mid-stream, with no closing event.
    Cut,
}

impl StreamFault {
    fn as_str(self) -> &'static str {
        match self {
            StreamFault::ModelStreamError => "model_stream_error",
            StreamFault::Cut => "cut",
        }
    }
}

fn present_after_body<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<AfterBody>>, D::Error> {
    Option::<AfterBody>::deserialize(d).map(Some)
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn duration(field: &str, s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{field}: invalid duration {s:?}: {e}"))
}

impl Update {
    /// `base` with this update's settings applied, or why they are invalid.
    pub fn apply(&self, base: &Behaviour) -> Result<Behaviour, String> {
        if self.region.is_empty() || self.endpoint.is_empty() {
            return Err("region and endpoint must be names or \"*\"".into());
        }
        let mut b = base.clone();
        if let Some(s) = &self.latency {
            b.latency = duration("latency", s)?;
        }
        if let Some(v) = &self.cold_start_after_idle {
            b.cold_start_after_idle = v
                .as_deref()
                .map(|s| duration("cold_start_after_idle", s))
                .transpose()?;
        }
        if let Some(s) = &self.cold_start {
            b.cold_start = duration("cold_start", s)?;
        }
        if let Some(r) = self.error_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("error_rate must be within 0.0..=1.0, got {r}"));
            }
            b.error_rate = r;
        }
        if let Some(c) = self.error {
            b.error = c;
        }
        if let Some(s) = self.seed {
            b.seed = s;
        }
        if let Some(o) = self.outage {
            b.outage = o;
        }
        if let Some(r) = self.slow_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("slow_rate must be within 0.0..=1.0, got {r}"));
            }
            b.slow_rate = r;
        }
        if let Some(n) = self.stream_parts {
            b.stream_parts = n;
        }
        if let Some(s) = &self.stream_interval {
            b.stream_interval = duration("stream_interval", s)?;
        }
        if let Some(f) = self.stream_fault_after {
            b.stream_fault_after = f;
        }
        if let Some(f) = self.stream_fault {
            b.stream_fault = f;
        }
        if let Some(s) = &self.slow_latency {
            b.slow_latency = duration("slow_latency", s)?;
        }
        if let Some(a) = self.after_body {
            b.after_body = a;
        }
        if let Some(n) = self.not_found {
            b.not_found = n;
        }
        if let Some(s) = self.model_error_status {
            if !(100..=599).contains(&s) {
                return Err(format!(
                    "model_error_status must be an HTTP status (100..=599), got {s}"
                ));
            }
            b.model_error_status = s;
        }
        Ok(b)
    }
}

/// Rules keyed by (region, endpoint) patterns, `*` matching anything.
pub type Rules = BTreeMap<(String, String), Behaviour>;

/// The behaviour for a concrete (region, endpoint): the most specific rule.
pub fn resolve(rules: &Rules, region: &str, endpoint: &str) -> Behaviour {
    // An inference component (`endpoint/component`) falls back to its
    // endpoint's rule.
    let host = endpoint.split_once('/').map_or(endpoint, |(e, _)| e);
    [
        (region, endpoint),
        (region, host),
        (region, "*"),
        ("*", endpoint),
        ("*", host),
        ("*", "*"),
    ]
    .into_iter()
    .find_map(|(r, e)| rules.get(&(r.to_string(), e.to_string())))
    .cloned()
    .unwrap_or_default()
}

/// One endpoint's warm/cold state machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WarmState {
    /// When the endpoint last served a call (warm-up calls do not count).
    last_used: Option<Instant>,
    /// Set while warming up: ready from this instant.
    warming_until: Option<Instant>,
}

impl WarmState {
    /// Whether a call arriving at `now` may reach the model; `false` means
    /// `ModelNotReadyException`. A cold endpoint starts warming on its first
    /// call; the first call after the warm-up is served.
    pub fn admit(&mut self, now: Instant, b: &Behaviour) -> bool {
        if let Some(until) = self.warming_until {
            if now < until {
                return false;
            }
            self.warming_until = None;
        } else {
            let cold = b.cold_start_after_idle.is_some_and(|idle| {
                self.last_used
                    .is_none_or(|t| now.saturating_duration_since(t) >= idle)
            });
            if cold && !b.cold_start.is_zero() {
                self.warming_until = Some(now + b.cold_start);
                return false;
            }
        }
        self.last_used = Some(now);
        true
    }
}

/// Whether call number `n` fails at `rate` under `seed`: a counter-based
/// generator (splitmix64 of seed and n), so a sequence is reproducible.
pub fn fails(rate: f64, seed: u64, n: u64) -> bool {
    let z = splitmix64(seed ^ n.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    unit(z) < rate
}

/// Counters for one (region, endpoint).
#[derive(Debug, Default)]
struct Stats {
    invocations: u64,
    successes: u64,
    errors: BTreeMap<&'static str, u64>,
}

/// Everything the server knows about one (region, endpoint).
#[derive(Debug, Default)]
struct Target {
    warm: WarmState,
    /// Calls that reached the error roll: the failure sequence's index.
    draws: u64,
    /// Calls that reached the slowness roll.
    slow_draws: u64,
    stats: Stats,
}

/// Salt of the slowness roll, so slow calls and failing calls are drawn
/// independently from one seed.
const SLOW_SALT: u64 = 0x510e_527f_ade6_82d1;

/// The account id in the lab's messages and ARNs.
pub const LAB_ACCOUNT: &str = "000000000000";

/// A failed invocation.
#[derive(Debug)]
struct Fault {
    code: ErrorCode,
    message: String,
    model_error_status: u16,
}

impl Fault {
    fn validation(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::ValidationError,
            message: message.into(),
            model_error_status: 500,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Rules,
    targets: BTreeMap<(String, String), Target>,
    /// Open stateful sessions by (region, endpoint).
    sessions: BTreeMap<(String, String), std::collections::BTreeSet<String>>,
    /// Sessions opened so far (their ids' numbers).
    sessions_opened: u64,
    /// Inference components by (region or `*`, endpoint).
    components: BTreeMap<(String, String), std::collections::BTreeSet<String>>,
}

/// The server's state behind one mutex (never held across an await).
#[derive(Debug, Default)]
struct Lab {
    state: Mutex<State>,
    request_ids: AtomicU64,
    /// Where asynchronous invocations read and write S3 objects.
    s3_endpoint: Option<String>,
}

impl Lab {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn handle(&self, req: Request<Incoming>) -> Answer {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let allow = |allowed: &[Method]| -> Option<HttpResponse> {
            (!allowed.contains(&method)).then(|| {
                let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} not allowed on {path}"),
                );
                if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                    r.headers_mut().insert(ALLOW, v);
                }
                r
            })
        };
        let r = match path.as_str() {
            "/ping" | "/healthz" => {
                allow(&[Method::GET]).unwrap_or_else(|| text(StatusCode::OK, "ok\n"))
            }
            "/_lab/behaviour" => match allow(&[Method::GET, Method::PUT]) {
                Some(r) => r,
                None if method == Method::GET => json(StatusCode::OK, &self.rules_json()),
                None => self.put_behaviour(req).await,
            },
            "/_lab/reset" => allow(&[Method::POST]).unwrap_or_else(|| {
                *self.state() = State::default();
                info!("lab state reset");
                json(StatusCode::OK, &json!({"reset": true}))
            }),
            "/_lab/components" => match allow(&[Method::GET, Method::PUT]) {
                Some(r) => r,
                None if method == Method::GET => json(StatusCode::OK, &self.components_json()),
                None => self.put_components(req).await,
            },
            "/_lab/stats" => {
                allow(&[Method::GET]).unwrap_or_else(|| json(StatusCode::OK, &self.stats_json()))
            }
            p if p.starts_with("/endpoints/") && p.ends_with("/async-invocations") => {
                let name = &p["/endpoints/".len()..p.len() - "/async-invocations".len()];
                match allow(&[Method::POST]) {
                    Some(r) => r,
                    None if name.contains('/') => {
                        text(StatusCode::NOT_FOUND, format!("no such path: {p}"))
                    }
                    None => self.invoke_async(req, percent_decode(name)).await,
                }
            }
            p if p.starts_with("/endpoints/") && p.ends_with("/invocations-response-stream") => {
                let name = &p["/endpoints/".len()..p.len() - "/invocations-response-stream".len()];
                match allow(&[Method::POST]) {
                    Some(r) => r,
                    None if name.contains('/') => {
                        text(StatusCode::NOT_FOUND, format!("no such path: {p}"))
                    }
                    None => return self.invoke_stream(req, percent_decode(name)).await,
                }
            }
            p => match p
                .strip_prefix("/endpoints/")
                .and_then(|r| r.strip_suffix("/invocations"))
            {
                Some(name) if !name.contains('/') => match allow(&[Method::POST]) {
                    Some(r) => r,
                    None => return self.invoke(req, percent_decode(name)).await,
                },
                _ => text(StatusCode::NOT_FOUND, format!("no such path: {p}")),
            },
        };
        r.into()
    }

    async fn put_behaviour(&self, req: Request<Incoming>) -> HttpResponse {
        let bad = |m: String| {
            text(
                StatusCode::BAD_REQUEST,
                format!("bad behaviour request: {m}\n"),
            )
        };
        let body = match read_body(req.into_body(), MAX_CONTROL_BODY).await {
            Ok(b) => b,
            Err(e) => return bad(e),
        };
        let update: Update = match serde_json::from_slice(&body) {
            Ok(u) => u,
            Err(e) => return bad(e.to_string()),
        };
        let key = (update.region.clone(), update.endpoint.clone());
        let mut st = self.state();
        let base = st.rules.get(&key).cloned().unwrap_or_default();
        match update.apply(&base) {
            Ok(b) => {
                info!(region = %key.0, endpoint = %key.1, behaviour = ?b, "behaviour set");
                let out = rule_json(&key, &b);
                st.rules.insert(key, b);
                json(StatusCode::OK, &out)
            }
            Err(e) => bad(e),
        }
    }

    async fn put_components(&self, req: Request<Incoming>) -> HttpResponse {
        #[derive(Deserialize)]
        struct Put {
            region: String,
            endpoint: String,
            components: Vec<String>,
        }
        let bad = |m: String| {
            text(
                StatusCode::BAD_REQUEST,
                format!("bad components request: {m}\n"),
            )
        };
        let body = match read_body(req.into_body(), MAX_CONTROL_BODY).await {
            Ok(b) => b,
            Err(e) => return bad(e),
        };
        let put: Put = match serde_json::from_slice(&body) {
            Ok(u) => u,
            Err(e) => return bad(e.to_string()),
        };
        info!(region = %put.region, endpoint = %put.endpoint, components = ?put.components, "inference components set");
        let key = (put.region, put.endpoint);
        let mut st = self.state();
        if put.components.is_empty() {
            st.components.remove(&key);
        } else {
            st.components
                .insert(key, put.components.into_iter().collect());
        }
        drop(st);
        json(StatusCode::OK, &self.components_json())
    }

    fn components_json(&self) -> Value {
        let st = self.state();
        Value::Array(
            st.components
                .iter()
                .map(|((r, e), c)| json!({"region": r, "endpoint": e, "components": c}))
                .collect(),
        )
    }

    /// The target a call reaches: `endpoint`, or `endpoint/component` for
    /// an inference component the endpoint hosts; SageMaker's
    /// `ValidationError` for a component missing, unknown or not wanted.
    fn component_target(
        &self,
        region: &str,
        endpoint: &str,
        component: Option<&str>,
    ) -> Result<String, Fault> {
        let st = self.state();
        let hosted = st
            .components
            .get(&(region.to_string(), endpoint.to_string()))
            .or_else(|| st.components.get(&("*".to_string(), endpoint.to_string())));
        match (hosted, component) {
            (None, None) => Ok(endpoint.to_string()),
            // An endpoint told of no components takes the header as the
            // lab always did (it echoes it; the pass-through tests rely
            // on that).
            (None, Some(_)) => Ok(endpoint.to_string()),
            (Some(_), None) => Err(Fault::validation(
                "Inference Component Name header is required for endpoints to which you plan to deploy inference components. Please include Inference Component Name header or consider using SageMaker models.",
            )),
            (Some(set), Some(c)) if set.contains(c) => Ok(format!("{endpoint}/{c}")),
            (Some(_), Some(c)) => Err(Fault::validation(format!(
                "Inference component {c} of endpoint {endpoint} not found."
            ))),
        }
    }

    fn rules_json(&self) -> Value {
        let st = self.state();
        Value::Array(st.rules.iter().map(|(k, b)| rule_json(k, b)).collect())
    }

    fn stats_json(&self) -> Value {
        let st = self.state();
        let mut out = serde_json::Map::new();
        for ((region, endpoint), t) in &st.targets {
            let s = &t.stats;
            let by_region = out.entry(region.clone()).or_insert_with(|| json!({}));
            by_region[endpoint.as_str()] = json!({
                "invocations": s.invocations,
                "successes": s.successes,
                "errors": s.errors,
            });
        }
        Value::Object(out)
    }

    /// Decide a call's fate and count it; returns the latency to add (every
    /// call that passes validation gets the rule's latency, faults included).
    fn decide(
        &self,
        region: &str,
        endpoint: &str,
        invalid: Option<Fault>,
    ) -> (Duration, Result<Option<AfterBody>, Fault>) {
        let now = Instant::now();
        let mut st = self.state();
        let b = resolve(&st.rules, region, endpoint);
        let t = st
            .targets
            .entry((region.to_string(), endpoint.to_string()))
            .or_default();
        let mut latency = b.latency;
        if b.slow_rate > 0.0 {
            t.slow_draws += 1;
            if fails(b.slow_rate, b.seed ^ SLOW_SALT, t.slow_draws - 1) {
                latency = b.slow_latency;
            }
        }
        let outcome = if let Some(f) = invalid {
            latency = Duration::ZERO; // rejected before reaching the model
            Err(f)
        } else if b.not_found {
            latency = Duration::ZERO;
            Err(not_found(endpoint))
        } else if b.outage {
            Err(fault(
                ErrorCode::ServiceUnavailable,
                "the lab has an outage for this endpoint",
                &b,
            ))
        } else if !t.warm.admit(now, &b) {
            Err(fault(
                ErrorCode::ModelNotReadyException,
                "the model is warming up (lab cold start)",
                &b,
            ))
        } else {
            t.draws += 1;
            if fails(b.error_rate, b.seed, t.draws - 1) {
                Err(fault(b.error, "injected by the lab's error_rate", &b))
            } else {
                Ok(())
            }
        };
        t.stats.invocations += 1;
        match &outcome {
            Ok(()) => match b.after_body {
                None => t.stats.successes += 1,
                Some(a) => *t.stats.errors.entry(a.as_str()).or_default() += 1,
            },
            Err(f) => *t.stats.errors.entry(f.code.as_str()).or_default() += 1,
        }
        (latency, outcome.map(|()| b.after_body))
    }

    /// The session a call names, checked against (region, endpoint)'s
    /// open sessions: `NEW_SESSION` opens one (its id and expiry go back in
    /// `X-Amzn-SageMaker-New-Session-Id`), a known id is served (and closed
    /// if the body asks, `X-Amzn-SageMaker-Closed-Session-Id`), an unknown
    /// one is a `ValidationError`, which is what the lab takes SageMaker to
    /// answer.
    fn session(
        &self,
        region: &str,
        endpoint: &str,
        session: Option<&str>,
        body: &[u8],
    ) -> Result<SessionHeaders, Fault> {
        let Some(id) = session else {
            return Ok(SessionHeaders::default());
        };
        let mut st = self.state();
        let key = (region.to_string(), endpoint.to_string());
        if id == "NEW_SESSION" {
            st.sessions_opened += 1;
            let new = format!("lab-{region}-{}", st.sessions_opened);
            st.sessions.entry(key).or_default().insert(new.clone());
            return Ok(SessionHeaders {
                new: Some(format!("{new}; Expires=2099-01-01T00:00:00Z")),
                closed: None,
            });
        }
        let open = st.sessions.entry(key).or_default();
        if !open.contains(id) {
            return Err(Fault::validation(format!(
                "Invalid session ID: {id} is not an open session of endpoint {endpoint}"
            )));
        }
        let close = body.windows(5).any(|w| w == b"close");
        if close {
            open.remove(id);
        }
        Ok(SessionHeaders {
            new: None,
            closed: close.then(|| id.to_string()),
        })
    }

    async fn invoke(&self, req: Request<Incoming>, endpoint: String) -> Answer {
        let region = region_of(req.headers());
        let content_type = req
            .headers()
            .get(ACCEPT)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json"));
        let custom = req.headers().get(CUSTOM_ATTRIBUTES).cloned();
        let seen = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // The InvokeEndpoint headers the model saw, echoed in the answer.
        let echoed: serde_json::Map<String, Value> = ECHOED
            .iter()
            .filter_map(|h| Some((h.to_string(), Value::String(seen(h)?))))
            .collect();
        let variant = seen("x-amzn-sagemaker-target-variant");
        let session = seen("x-amzn-sagemaker-session-id");
        let component = seen("x-amzn-sagemaker-inference-component");
        let body = read_body(req.into_body(), MAX_PAYLOAD).await;
        let mut sessions = SessionHeaders::default();
        let target = self.component_target(&region, &endpoint, component.as_deref());
        let invalid = match (&body, &target) {
            _ if endpoint.is_empty() => Some(Fault::validation("endpoint name must not be empty")),
            (Err(e), _) => Some(Fault::validation(e.clone())),
            (_, Err(f)) => Some(Fault::validation(f.message.clone())),
            (Ok(b), Ok(t)) => match self.session(&region, t, session.as_deref(), b) {
                Ok(h) => {
                    sessions = h;
                    None
                }
                Err(f) => Some(f),
            },
        };
        let key = target.as_deref().unwrap_or(&endpoint).to_string();
        let (latency, outcome) = self.decide(&region, &key, invalid);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let request_id = format!(
            "lab-{:016x}",
            self.request_ids.fetch_add(1, Ordering::Relaxed)
        );
        let (after, body) = match (outcome, body) {
            (Ok(after), Ok(body)) => (after, body),
            (Err(f), _) => return error_response(&f, &region, &endpoint, &request_id).into(),
            (Ok(_), Err(e)) => {
                return error_response(&Fault::validation(e), &region, &endpoint, &request_id)
                    .into();
            }
        };
        let echo = String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned();
        let mut out = json!({"region": region, "endpoint": endpoint, "bytes": body.len(), "echo": echo, "headers": echoed});
        if let Some(c) = key.split_once('/').map(|(_, c)| c) {
            out["component"] = json!(c);
        }
        let out = Bytes::from(out.to_string());
        let mut r = Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, content_type)
            .header(
                "x-Amzn-Invoked-Production-Variant",
                variant.as_deref().unwrap_or("AllTraffic"),
            )
            .header("x-amzn-RequestId", &request_id);
        if let Some(c) = custom {
            r = r.header(CUSTOM_ATTRIBUTES, c);
        }
        if let Some(n) = &sessions.new {
            r = r.header("X-Amzn-SageMaker-New-Session-Id", n);
        }
        if let Some(c) = &sessions.closed {
            r = r.header("X-Amzn-SageMaker-Closed-Session-Id", c);
        }
        let body: LabBody = match after {
            None => Full::new(out).map_err(|never| match never {}).boxed(),
            Some(AfterBody::Reset) => return Answer::Drop,
            Some(AfterBody::Cut) => {
                // The full length announced, half of it sent, then a failure.
                r = r.header(hyper::header::CONTENT_LENGTH, out.len());
                let half = out.slice(..out.len() / 2);
                use futures_util::StreamExt;
                let first: Result<hyper::body::Frame<Bytes>, std::io::Error> =
                    Ok(hyper::body::Frame::data(half));
                // The head and the half go out before the failure: hyper
                // drops what it has not flushed when a body fails.
                let cut = futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(std::io::Error::other("lab: cut off mid-body"))
                });
                BodyExt::boxed(StreamBody::new(
                    futures_util::stream::iter([first]).chain(cut),
                ))
            }
        };
        match r.body(body) {
            Ok(r) => Answer::Respond(r),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into(),
        }
    }
}

impl Lab {
    /// `InvokeEndpointWithResponseStream`: the same decisions as a
    /// real-time call (errors before the stream are restJson1 errors), then
    /// `stream_parts` `PayloadPart` events, `stream_interval` apart, as
    /// `application/vnd.amazon.eventstream`; after `stream_fault_after`
    /// parts, an in-band `ModelStreamError` or a cut connection.
    async fn invoke_stream(&self, req: Request<Incoming>, endpoint: String) -> Answer {
        let region = region_of(req.headers());
        let accept = req
            .headers()
            .get("x-amzn-sagemaker-accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/jsonlines")
            .to_string();
        let component = req
            .headers()
            .get("x-amzn-sagemaker-inference-component")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_body(req.into_body(), MAX_PAYLOAD).await;
        let target = self.component_target(&region, &endpoint, component.as_deref());
        let invalid = match (&body, &target) {
            _ if endpoint.is_empty() => Some(Fault::validation("endpoint name must not be empty")),
            (Err(e), _) => Some(Fault::validation(e.clone())),
            (_, Err(f)) => Some(Fault::validation(f.message.clone())),
            _ => None,
        };
        // A component is a target of its own (rules, stats, parts).
        let endpoint = target.unwrap_or(endpoint);
        let (latency, outcome) = self.decide(&region, &endpoint, invalid);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let request_id = format!(
            "lab-{:016x}",
            self.request_ids.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(f) = outcome {
            return error_response(&f, &region, &endpoint, &request_id).into();
        }
        let b = {
            let st = self.state();
            resolve(&st.rules, &region, &endpoint)
        };
        let fault_at = b.stream_fault_after.filter(|&n| n < b.stream_parts);
        let (fault, interval, parts) = (b.stream_fault, b.stream_interval, b.stream_parts);
        let frames = futures_util::stream::unfold(0u32, move |i| {
            let region = region.clone();
            let endpoint = endpoint.clone();
            async move {
                if Some(i) == fault_at {
                    return match fault {
                        StreamFault::ModelStreamError => Some((
                            Ok(hyper::body::Frame::data(event_stream::exception(
                                "ModelStreamError",
                                &json!({"Message": "the lab's model failed mid-stream", "ErrorCode": "ModelStreamError"}),
                            ))),
                            u32::MAX,
                        )),
                        StreamFault::Cut => {
                            // Let the parts so far go out first: hyper drops
                            // what it has not flushed when a body fails.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Some((Err(std::io::Error::other("lab: stream cut")), u32::MAX))
                        }
                    };
                }
                if i >= parts {
                    return None;
                }
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let part = format!(
                    "{{\"region\":\"{region}\",\"endpoint\":\"{endpoint}\",\"part\":{i}}}\n"
                );
                Some((
                    Ok(hyper::body::Frame::data(event_stream::payload_part(
                        part.as_bytes(),
                    ))),
                    i + 1,
                ))
            }
        });
        let r = Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/vnd.amazon.eventstream")
            .header("X-Amzn-SageMaker-Content-Type", accept)
            .header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
            .header("x-amzn-RequestId", &request_id)
            .body(StreamBody::new(frames).boxed());
        match r {
            Ok(r) => Answer::Respond(r),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into(),
        }
    }
}

/// The InvokeEndpoint request headers the lab's model echoes back (in its
/// answer's `headers`), so tests can see what reached it.
const ECHOED: [&str; 7] = [
    "x-amzn-sagemaker-target-model",
    "x-amzn-sagemaker-target-variant",
    "x-amzn-sagemaker-target-container-hostname",
    "x-amzn-sagemaker-inference-id",
    "x-amzn-sagemaker-enable-explanations",
    "x-amzn-sagemaker-inference-component",
    "x-amzn-sagemaker-session-id",
];

/// The session headers of an answer.
#[derive(Debug, Default)]
struct SessionHeaders {
    new: Option<String>,
    closed: Option<String>,
}

impl Lab {
    /// `InvokeEndpointAsync`: accept, then write the result to S3 later.
    async fn invoke_async(&self, req: Request<Incoming>, endpoint: String) -> HttpResponse {
        let region = region_of(req.headers());
        let request_id = format!(
            "lab-{:016x}",
            self.request_ids.fetch_add(1, Ordering::Relaxed)
        );
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let input = header("x-amzn-sagemaker-inputlocation");
        let accept = header("x-amzn-sagemaker-accept");
        // The optional limits, echoed into the result (what a model sees
        // of them: the lab checks they arrive).
        let limits = json!({
            "ttl": header("x-amzn-sagemaker-requestttlseconds"),
            "timeout": header("x-amzn-sagemaker-invocationtimeoutseconds"),
        });
        let inference_id =
            header("x-amzn-sagemaker-inference-id").unwrap_or_else(|| request_id.clone());
        let location = input.as_deref().and_then(|i| {
            let rest = i.strip_prefix("s3://")?;
            let (bucket, key) = rest.split_once('/')?;
            (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_string(), key.to_string()))
        });
        let Some((bucket, key)) = location else {
            let f =
                Fault::validation("X-Amzn-SageMaker-InputLocation must be an s3://bucket/key URI");
            return error_response(&f, &region, &endpoint, &request_id);
        };
        let Some(url) = self.s3_endpoint.clone() else {
            let f = Fault {
                code: ErrorCode::InternalFailure,
                message: "the lab's model server has no --s3-endpoint".into(),
                model_error_status: 500,
            };
            return error_response(&f, &region, &endpoint, &request_id);
        };
        // Count the call; an outage refuses it at once, the error roll is
        // decided now and reported through the failure location.
        let (latency, fail) = {
            let mut st = self.state();
            let b = resolve(&st.rules, &region, &endpoint);
            let t = st
                .targets
                .entry((region.clone(), endpoint.clone()))
                .or_default();
            t.stats.invocations += 1;
            if b.not_found {
                *t.stats
                    .errors
                    .entry(ErrorCode::ValidationError.as_str())
                    .or_default() += 1;
                drop(st);
                return error_response(&not_found(&endpoint), &region, &endpoint, &request_id);
            }
            if b.outage {
                *t.stats
                    .errors
                    .entry(ErrorCode::ServiceUnavailable.as_str())
                    .or_default() += 1;
                drop(st);
                let f = fault(
                    ErrorCode::ServiceUnavailable,
                    "the lab has an outage for this endpoint",
                    &b,
                );
                return error_response(&f, &region, &endpoint, &request_id);
            }
            t.draws += 1;
            let fail = fails(b.error_rate, b.seed, t.draws - 1);
            if fail {
                *t.stats.errors.entry(b.error.as_str()).or_default() += 1;
            } else {
                t.stats.successes += 1;
            }
            (b.latency, fail)
        };
        let output = format!("s3://{bucket}/async-output/{inference_id}.out");
        let failure = format!("s3://{bucket}/async-failures/{inference_id}.out");
        let s3 = s3_client(&url, &region);
        let job = AsyncJob {
            region: region.clone(),
            endpoint: endpoint.clone(),
            bucket: bucket.clone(),
            key,
            accept,
            inference_id: inference_id.clone(),
            fail,
            limits,
        };
        tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            if let Err(e) = job.run(&s3).await {
                error!(inference_id = %job.inference_id, error = %e, "async invocation could not write its result");
            }
        });
        let body = json!({"InferenceId": inference_id, "OutputLocation": output, "FailureLocation": failure});
        Response::builder()
            .status(StatusCode::ACCEPTED)
            .header(CONTENT_TYPE, "application/json")
            .header("X-Amzn-SageMaker-OutputLocation", &output)
            .header("X-Amzn-SageMaker-FailureLocation", &failure)
            .header("x-amzn-RequestId", &request_id)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }
}

/// An accepted asynchronous invocation, to finish in the background.
struct AsyncJob {
    region: String,
    endpoint: String,
    bucket: String,
    key: String,
    accept: Option<String>,
    inference_id: String,
    fail: bool,
    /// `RequestTTLSeconds` and `InvocationTimeoutSeconds` as received.
    limits: Value,
}

impl AsyncJob {
    async fn run(&self, s3: &aws_sdk_s3::Client) -> Result<(), String> {
        let show = |e: &dyn std::fmt::Debug| format!("{e:?}");
        let input = s3
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| format!("GetObject {}/{}: {}", self.bucket, self.key, show(&e)))?;
        let body = input
            .body
            .collect()
            .await
            .map_err(|e| format!("reading the input: {e}"))?
            .into_bytes();
        let (key, content_type, out) = if self.fail {
            (
                format!("async-failures/{}.out", self.inference_id),
                "text/plain".to_string(),
                "injected by the lab's error_rate".to_string(),
            )
        } else {
            let echo = String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned();
            (
                format!("async-output/{}.out", self.inference_id),
                self.accept
                    .clone()
                    .unwrap_or_else(|| "application/json".into()),
                json!({"region": self.region, "endpoint": self.endpoint, "bytes": body.len(),
                    "echo": echo, "input": format!("s3://{}/{}", self.bucket, self.key),
                    "limits": self.limits})
                .to_string(),
            )
        };
        s3.put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(content_type)
            .body(out.into_bytes().into())
            .send()
            .await
            .map_err(|e| format!("PutObject {}/{key}: {}", self.bucket, show(&e)))?;
        info!(inference_id = %self.inference_id, %key, "async invocation finished");
        Ok(())
    }
}

/// An S3 client for the emulator at `url`, signing for `region`.
fn s3_client(url: &str, region: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .http_client(failoverd::aws::clients::https_client())
        .region(aws_sdk_s3::config::Region::new(region.to_string()))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "lab",
        ))
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// SageMaker's answer for an endpoint that does not exist in the region.
fn not_found(endpoint: &str) -> Fault {
    Fault::validation(format!(
        "Endpoint {endpoint} of account {LAB_ACCOUNT} not found."
    ))
}

fn fault(code: ErrorCode, message: &str, b: &Behaviour) -> Fault {
    Fault {
        code,
        message: message.to_string(),
        model_error_status: b.model_error_status,
    }
}

fn rule_json((region, endpoint): &(String, String), b: &Behaviour) -> Value {
    let mut v = b.to_json();
    v["region"] = json!(region);
    v["endpoint"] = json!(endpoint);
    v
}

/// An AWS restJson1 error: `x-amzn-errortype` plus `{"__type", "message"}`.
fn error_response(f: &Fault, region: &str, endpoint: &str, request_id: &str) -> HttpResponse {
    let mut body = json!({"__type": f.code.as_str(), "message": f.message});
    if f.code == ErrorCode::ModelError {
        body["OriginalStatusCode"] = json!(f.model_error_status);
        body["OriginalMessage"] =
            json!(format!("the lab's model answered {}", f.model_error_status));
        body["LogStreamArn"] = json!(format!(
            "arn:aws:logs:{region}:{LAB_ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
        ));
    }
    Response::builder()
        .status(f.code.status())
        .header("x-amzn-errortype", f.code.as_str())
        .header("x-amzn-RequestId", request_id)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Read at most `limit` bytes of a body.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(format!("payload too large: the limit is {limit} bytes"))
        }
        Err(e) => Err(format!("cannot read the request body: {e}")),
    }
}

/// The request's region: SigV4 credential scope, else `x-lab-region`, else `unknown`.
fn region_of(headers: &HeaderMap) -> String {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    header(AUTHORIZATION)
        .and_then(sigv4_region)
        .or_else(|| {
            header(hyper::header::HeaderName::from_static("x-lab-region")).filter(|r| !r.is_empty())
        })
        .unwrap_or("unknown")
        .to_string()
}

/// The region in `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
pub fn sigv4_region(authorization: &str) -> Option<&str> {
    let (_, rest) = authorization.split_once("Credential=")?;
    let scope = rest.split([',', ' ']).next()?;
    let parts: Vec<&str> = scope.split('/').collect();
    let region = *parts.get(parts.len().checked_sub(3)?)?;
    (parts.len() >= 5 && !region.is_empty()).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(entries: &[(&str, &str, u64)]) -> Rules {
        entries
            .iter()
            .map(|(r, e, seed)| {
                (
                    (r.to_string(), e.to_string()),
                    Behaviour {
                        seed: *seed,
                        ..Behaviour::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let all = rules(&[
            ("*", "*", 1),
            ("*", "ep", 2),
            ("r1", "*", 3),
            ("r1", "ep", 4),
        ]);
        assert_eq!(resolve(&all, "r1", "ep").seed, 4);
        assert_eq!(resolve(&all, "r1", "other").seed, 3);
        assert_eq!(resolve(&all, "r2", "ep").seed, 2);
        assert_eq!(resolve(&all, "r2", "other").seed, 1);
        // Region beats endpoint when only wildcards compete.
        let two = rules(&[("*", "ep", 2), ("r1", "*", 3)]);
        assert_eq!(resolve(&two, "r1", "ep").seed, 3);
        assert_eq!(resolve(&Rules::new(), "r1", "ep"), Behaviour::default());
    }

    #[test]
    fn a_component_falls_back_to_its_endpoints_rule() {
        let all = rules(&[("*", "*", 1), ("r1", "gpu", 2), ("r1", "gpu/llm", 3)]);
        assert_eq!(resolve(&all, "r1", "gpu/llm").seed, 3);
        assert_eq!(resolve(&all, "r1", "gpu/other").seed, 2);
        assert_eq!(resolve(&all, "r2", "gpu/llm").seed, 1);
    }

    #[test]
    fn components_are_named_or_refused_as_sagemaker_refuses() {
        let lab = Lab::default();
        lab.state()
            .components
            .insert(("*".into(), "gpu".into()), ["llm".to_string()].into());
        assert_eq!(
            lab.component_target("r1", "gpu", Some("llm")).unwrap(),
            "gpu/llm"
        );
        assert_eq!(lab.component_target("r1", "plain", None).unwrap(), "plain");
        let missing = lab.component_target("r1", "gpu", None).unwrap_err();
        assert_eq!(missing.code, ErrorCode::ValidationError);
        assert!(
            missing
                .message
                .starts_with("Inference Component Name header is required")
        );
        let unknown = lab.component_target("r1", "gpu", Some("nope")).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::ValidationError);
        assert!(unknown.message.contains("nope"), "{}", unknown.message);
        assert_eq!(
            lab.component_target("r1", "plain", Some("llm")).unwrap(),
            "plain"
        );
    }

    #[test]
    fn cold_endpoint_warms_up_then_goes_cold_when_idle() {
        let ms = Duration::from_millis;
        let b = Behaviour {
            cold_start_after_idle: Some(ms(1000)),
            cold_start: ms(300),
            ..Behaviour::default()
        };
        let t0 = Instant::now();
        let mut w = WarmState::default();
        assert!(!w.admit(t0, &b), "never invoked: cold, starts warming");
        assert!(!w.admit(t0 + ms(299), &b), "still warming");
        assert!(w.admit(t0 + ms(300), &b), "warm-up over");
        assert!(w.admit(t0 + ms(1299), &b), "used within the idle window");
        assert!(!w.admit(t0 + ms(2299), &b), "idle for 1 s: cold again");
        assert!(w.admit(t0 + ms(2599), &b));

        // Idle 0s: every call after the first served one is cold again.
        let zero = Behaviour {
            cold_start_after_idle: Some(ms(0)),
            ..b.clone()
        };
        let mut w = WarmState::default();
        assert!(!w.admit(t0, &zero));
        assert!(w.admit(t0 + ms(300), &zero));
        assert!(!w.admit(t0 + ms(301), &zero));

        // No idle threshold or no warm-up time: never cold.
        let mut w = WarmState::default();
        assert!(w.admit(t0, &Behaviour::default()));
        let instant = Behaviour {
            cold_start: Duration::ZERO,
            ..b
        };
        assert!(w.admit(t0 + ms(5000), &instant));
    }

    #[test]
    fn error_pattern_is_deterministic_and_near_the_rate() {
        let seq = |seed| (0..200).map(|n| fails(0.3, seed, n)).collect::<Vec<_>>();
        assert_eq!(seq(1), seq(1));
        assert_ne!(seq(1), seq(2));
        assert!((0..1000).all(|n| !fails(0.0, 7, n)));
        assert!((0..1000).all(|n| fails(1.0, 7, n)));
        let hits = (0..10_000).filter(|&n| fails(0.25, 42, n)).count();
        assert!(
            (2_250..=2_750).contains(&hits),
            "{hits} failures of 10000 at 0.25"
        );
    }

    #[test]
    fn updates_change_only_what_they_name() {
        let parse = |s: &str| serde_json::from_str::<Update>(s).map_err(|e| e.to_string());
        let base = Behaviour {
            cold_start_after_idle: Some(Duration::from_secs(5)),
            ..Behaviour::default()
        };
        let u = parse(r#"{"region":"*","endpoint":"*","latency":"20ms","error":"ModelError"}"#)
            .unwrap();
        let b = u.apply(&base).unwrap();
        assert_eq!(b.latency, Duration::from_millis(20));
        assert_eq!(b.error, ErrorCode::ModelError);
        assert_eq!(
            b.cold_start_after_idle,
            Some(Duration::from_secs(5)),
            "absent: unchanged"
        );
        let u = parse(r#"{"region":"*","endpoint":"*","cold_start_after_idle":null}"#).unwrap();
        assert_eq!(
            u.apply(&base).unwrap().cold_start_after_idle,
            None,
            "null: never cold"
        );

        let bad = |s: &str| {
            parse(s)
                .and_then(|u| u.apply(&base).map(|_| ()))
                .unwrap_err()
        };
        assert!(bad(r#"{"region":"*","endpoint":"*","latency":"soon"}"#).contains("latency"));
        assert!(bad(r#"{"region":"*","endpoint":"*","error_rate":1.5}"#).contains("error_rate"));
        assert!(bad(r#"{"region":"*","endpoint":"*","error":"Boom"}"#).contains("Boom"));
        assert!(bad(r#"{"region":"*","endpoint":"*","latnecy":"1s"}"#).contains("latnecy"));
        assert!(bad(r#"{"region":"","endpoint":"*"}"#).contains("region"));
        assert!(bad(r#"{"endpoint":"*"}"#).contains("region"));
    }

    #[test]
    fn region_comes_from_the_sigv4_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=testing/20261126/us-west-2/sagemaker/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(sigv4_region(auth), Some("us-west-2"));
        assert_eq!(sigv4_region("Bearer x"), None);
        assert_eq!(sigv4_region("AWS4-HMAC-SHA256 Credential=a/b"), None);
        let mut h = HeaderMap::new();
        assert_eq!(region_of(&h), "unknown");
        h.insert("x-lab-region", HeaderValue::from_static("eu-west-1"));
        assert_eq!(region_of(&h), "eu-west-1");
        h.insert(AUTHORIZATION, HeaderValue::from_static(auth));
        assert_eq!(region_of(&h), "us-west-2");
    }
}
