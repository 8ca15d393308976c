//! The inference router's settings and the models it serves: types, raw
//! shape and validation, in one place.
//!
//! Per-attempt timeouts have a router-wide default (a fraction of the time
//! left before the deadline, bounded: `router.attempt_timeout_{fraction,
//! min,max}`) that a model may replace with a fixed `attempt_timeout`.
//! Whether a timed-out request may be sent again, and whether it may be
//! hedged, is each model's choice (`retry_on_timeout`, `hedge_after`):
//! only the model's owner knows whether running it twice is harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::human_duration;
use super::serving::{RawServing, RegionServing};
use super::validate::Validator;
use crate::core::retry::HedgeAfter;

/// The inference router's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Router {
    /// Requests in flight above this are shed with 503 and `Retry-After`.
    pub max_in_flight: u32,
    /// Time allowed to read a request body.
    #[serde(with = "human_duration")]
    pub body_read_timeout: Duration,
    /// Deadline of a request that sets none (`X-Deadline-Ms`).
    #[serde(with = "human_duration")]
    pub default_deadline: Duration,
    /// `ModelNotReadyException` retries before falling back (seed: 2).
    pub cold_start_retries: u32,
    /// Delay unit between cold-start retries: `delay × attempt` (seed: 3s).
    #[serde(with = "human_duration")]
    pub cold_start_delay: Duration,
    /// Extra load throttling retries may add, as a fraction of requests (0.2 = 20%).
    pub retry_budget: f64,
    /// How often the routing table is re-read.
    #[serde(with = "human_duration")]
    pub routing_refresh: Duration,
    /// Batch threshold (bytes) when the routing table has no entry for a class.
    pub default_batch_threshold: u64,
    /// S3 bucket (per region: `<bucket>-<region>`) for batch payloads and results.
    pub batch_bucket_prefix: String,
    /// Largest request body accepted at all (bytes); above the real-time
    /// limits only the batch path can take it.
    pub max_batch_payload: u64,
    /// Largest deadline a request may ask for (`X-Deadline-Ms`).
    #[serde(with = "human_duration")]
    pub max_deadline: Duration,
    /// Throttling retries of one request (each also needs the retry budget).
    pub throttle_retries: u32,
    /// Throttling backoff: full jitter on `base × 2^n`, at most `max`.
    #[serde(with = "human_duration")]
    pub throttle_base_delay: Duration,
    #[serde(with = "human_duration")]
    pub throttle_max_delay: Duration,
    /// Consecutive failures that eject a (region, endpoint) target.
    pub breaker_failures: u32,
    /// First ejection's length; the n-th lasts n times as long, up to the max.
    #[serde(with = "human_duration")]
    pub breaker_ejection: Duration,
    #[serde(with = "human_duration")]
    pub breaker_max_ejection: Duration,
    /// Default per-attempt timeout: this fraction of the time left before
    /// the request's deadline...
    pub attempt_timeout_fraction: f64,
    /// ...at least this...
    #[serde(with = "human_duration")]
    pub attempt_timeout_min: Duration,
    /// ...and at most this.
    #[serde(with = "human_duration")]
    pub attempt_timeout_max: Duration,
    /// Client connections the router's listener holds open at most; one
    /// more is answered 503 `ServiceUnavailable` and closed (issue 22 item 5).
    pub max_connections: u32,
    /// How long a connection may take to send a request's head, counted
    /// from when it starts waiting for one: so it closes both slow-header
    /// senders and idle keep-alive connections (hyper has one timer for
    /// both).
    #[serde(with = "human_duration")]
    pub header_read_timeout: Duration,
    /// How long writing an answer to a client may make no progress (the
    /// client does not read) before the connection is closed; counted
    /// between two writes that progress, as nginx's `send_timeout`.
    #[serde(with = "human_duration")]
    pub send_timeout: Duration,
    /// The router's threads, each serving its share of the connections on
    /// a runtime of its own (docs/router-performance.md); `None`: one per
    /// core the process may use. Fewer leave cores to other work on a
    /// shared host.
    pub threads: Option<u32>,
    /// The fraction of requests that get an access-log line (0 to 1; 1:
    /// every request, 0: none).
    pub access_log_sample: f64,
    /// Serve callers the listener did not authenticate on an address that
    /// is not loopback (issue 22 item 3). Off: such a router needs an
    /// identity method (`listen.router_tls.client_ca`) to start.
    pub allow_anonymous: bool,
    /// Per model, the caller identities allowed to invoke it: patterns
    /// where `*` matches any run of characters (`spiffe://prod/fraud/*`,
    /// `*.svc.example.com`; `arn:aws:sts::*:assumed-role/Scorer/*` for IAM callers). A model not listed: every
    /// caller the listener authenticated. Taken on reload.
    pub allow: BTreeMap<String, Vec<String>>,
    /// Limits of a caller not in `callers` (issue 22 item 4); unset: none.
    pub caller_default: Option<CallerLimit>,
    /// Limits per caller identity (exact), instead of `caller_default`.
    pub callers: BTreeMap<String, CallerLimit>,
    /// Caller identity from AWS IAM (`[router.iam]`, router::iam); unset:
    /// the router reads no IAM token.
    pub iam: Option<IamAuth>,
}

/// `[router.iam]`: callers prove their IAM identity with a presigned
/// `sts:GetCallerIdentity` (router::iam).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IamAuth {
    /// The value of `x-failoverd-fleet` the callers sign: a token made
    /// for another fleet does not verify here.
    pub fleet: String,
    /// STS endpoints accepted besides AWS's public ones, as origins
    /// (`https://vpce-....sts.us-east-1.vpce.amazonaws.com`; `http://`
    /// only on loopback).
    pub sts_endpoints: Vec<String>,
}

/// One caller's limits (`router.caller_default`, `router.callers`): over
/// either, a request is answered `ThrottlingException` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CallerLimit {
    /// Requests of this caller in flight at most.
    pub max_in_flight: Option<u32>,
    /// Requests a second on average (a token bucket holding one second's
    /// worth, at least one request).
    pub rate: Option<f64>,
}

/// A model the router serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    pub name: String,
    /// `serverless_preferred`, `standard`, ... (the routing table's classes).
    pub traffic_class: String,
    /// SageMaker `TargetModel` to send (multi-model endpoints); unset for
    /// single-model endpoints, which reject the header.
    pub target_model: Option<String>,
    /// Whether a request may run twice. `false`: it is sent again only
    /// when the router knows the first attempt never reached the model
    /// (the connection was refused, nothing was written); after a 5xx, a
    /// reset once the request was written, a timeout or an answer cut off,
    /// the client gets a `ModelError` saying the outcome is unknown. Never
    /// hedged. Defaults to `retry_on_timeout`'s value.
    pub idempotent: bool,
    /// Whether a request whose attempt timed out may be sent again (to the
    /// next region). Off for models that must not run twice: the attempt
    /// then keeps waiting until the deadline instead. Always off when
    /// `idempotent` is.
    pub retry_on_timeout: bool,
    /// Send a second attempt to the next region when the first has not
    /// answered after this long (fixed, or a quantile of what the router
    /// has observed for the target, written `"p95"`). Unset: no hedging.
    #[serde(serialize_with = "hedge_after_text")]
    pub hedge_after: Option<HedgeAfter>,
    /// A fixed per-attempt timeout for this model, instead of the router's
    /// fraction of the deadline.
    #[serde(with = "optional_duration")]
    pub attempt_timeout: Option<Duration>,
    /// When the region a request went to answers throttling or not-ready,
    /// send it to another region that is warm instead (docs/router.md,
    /// "Spill-over"). Off by default.
    #[serde(skip_serializing_if = "SpillOver::is_off")]
    pub spill_over: SpillOver,
    /// How the model is served in each region, in `Config::regions`'
    /// order (config/serving.rs): resolved at load from
    /// `[models.regions.<region>]`, else the region's shared endpoints.
    pub serving: Vec<RegionServing>,
}

impl ModelConfig {
    /// The model's serving in `regions[i]`.
    pub fn in_region(&self, i: usize) -> Option<&RegionServing> {
        self.serving.get(i)
    }

    /// The model's serving in the region named `region`.
    pub fn in_named(&self, region: &str) -> Option<&RegionServing> {
        self.serving.iter().find(|s| s.region == region)
    }
}

/// What moves a model's request to another, warm region (`spill_over`,
/// written as a list of `"throttling"` and `"not_ready"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillOver {
    /// `ThrottlingException` (429).
    pub throttling: bool,
    /// `ModelNotReadyException` (a cold start).
    pub not_ready: bool,
}

impl SpillOver {
    /// Neither cause (the default).
    pub fn is_off(&self) -> bool {
        *self == SpillOver::default()
    }

    /// The causes, as written in the configuration.
    pub fn causes(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.throttling {
            v.push("throttling");
        }
        if self.not_ready {
            v.push("not_ready");
        }
        v
    }
}

impl Serialize for SpillOver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.causes().serialize(s)
    }
}

fn hedge_after_text<S: Serializer>(h: &Option<HedgeAfter>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        None => s.serialize_none(),
        Some(HedgeAfter::Fixed(d)) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        Some(HedgeAfter::Quantile(q)) => {
            s.serialize_str(&format!("p{}", (q * 1000.0).round() / 10.0))
        }
    }
}

mod optional_duration {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

/// Why a `hedge_after` value is refused (the validator adds file and key).
#[derive(Debug, thiserror::Error)]
enum HedgeAfterError {
    #[error("{text:?}: a quantile is written p50 to p99.9 (above 0, below 100)")]
    Quantile { text: String },
    #[error("{text:?} is out of range: must be between 1ms and 1h")]
    OutOfRange { text: String },
    #[error("{text:?} is neither a quantile (\"p95\") nor a duration (\"250ms\")")]
    Neither {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
}

/// `"p95"`, `"p99.9"` (a quantile), or a duration (`"250ms"`).
fn parse_hedge_after(text: &str) -> Result<HedgeAfter, HedgeAfterError> {
    let t = text.trim();
    if let Some(p) = t.strip_prefix('p') {
        return match p.parse::<f64>() {
            Ok(q) if q > 0.0 && q < 100.0 => Ok(HedgeAfter::Quantile(q / 100.0)),
            _ => Err(HedgeAfterError::Quantile { text: text.into() }),
        };
    }
    match humantime::parse_duration(t) {
        Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(3600) => {
            Ok(HedgeAfter::Fixed(d))
        }
        Ok(_) => Err(HedgeAfterError::OutOfRange { text: text.into() }),
        Err(source) => Err(HedgeAfterError::Neither {
            text: text.into(),
            source,
        }),
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawRouter {
    pub(super) max_in_flight: Option<i64>,
    pub(super) body_read_timeout: Option<String>,
    pub(super) default_deadline: Option<String>,
    pub(super) cold_start_retries: Option<i64>,
    pub(super) cold_start_delay: Option<String>,
    pub(super) retry_budget: Option<f64>,
    pub(super) routing_refresh: Option<String>,
    pub(super) default_batch_threshold: Option<i64>,
    pub(super) batch_bucket_prefix: Option<String>,
    pub(super) max_batch_payload: Option<i64>,
    pub(super) max_deadline: Option<String>,
    pub(super) throttle_retries: Option<i64>,
    pub(super) throttle_base_delay: Option<String>,
    pub(super) throttle_max_delay: Option<String>,
    pub(super) breaker_failures: Option<i64>,
    pub(super) breaker_ejection: Option<String>,
    pub(super) breaker_max_ejection: Option<String>,
    pub(super) attempt_timeout_fraction: Option<f64>,
    pub(super) attempt_timeout_min: Option<String>,
    pub(super) attempt_timeout_max: Option<String>,
    pub(super) max_connections: Option<i64>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) send_timeout: Option<String>,
    pub(super) threads: Option<i64>,
    pub(super) access_log_sample: Option<f64>,
    pub(super) allow_anonymous: Option<bool>,
    pub(super) allow: Option<BTreeMap<String, Vec<String>>>,
    pub(super) caller_default: Option<RawCallerLimit>,
    pub(super) callers: Option<BTreeMap<String, RawCallerLimit>>,
    pub(super) iam: Option<RawIam>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawIam {
    pub(super) fleet: Option<String>,
    pub(super) sts_endpoints: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawCallerLimit {
    pub(super) max_in_flight: Option<i64>,
    pub(super) rate: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawModel {
    pub(super) name: Option<String>,
    pub(super) traffic_class: Option<String>,
    pub(super) target_model: Option<String>,
    pub(super) idempotent: Option<bool>,
    pub(super) retry_on_timeout: Option<bool>,
    pub(super) hedge_after: Option<String>,
    pub(super) attempt_timeout: Option<String>,
    pub(super) spill_over: Option<RawSpillOver>,
    /// `[models.regions.<region>]` (config/serving.rs).
    #[serde(default)]
    pub(super) regions: BTreeMap<String, RawServing>,
}

/// `spill_over = true` (both causes), `false`, or a list of causes.
#[derive(Debug)]
pub(super) enum RawSpillOver {
    All(bool),
    Causes(Vec<String>),
}

impl<'de> Deserialize<'de> for RawSpillOver {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSpillOver;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "true, false, or a list of spill-over causes (\"throttling\", \"not_ready\")",
                )
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<RawSpillOver, E> {
                Ok(RawSpillOver::All(b))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawSpillOver, A::Error> {
                let mut causes = Vec::new();
                while let Some(c) = seq.next_element::<String>()? {
                    causes.push(c);
                }
                Ok(RawSpillOver::Causes(causes))
            }
        }
        d.deserialize_any(V)
    }
}

impl Validator<'_> {
    /// The `[router]` table, in the order of [`Router`]'s fields.
    pub(super) fn router(&mut self, rr: RawRouter) -> Option<Router> {
        let (max_in_flight, body_read_timeout, default_deadline) =
            self.router_requests(rr.max_in_flight, rr.body_read_timeout, rr.default_deadline);
        let (cold_start_retries, cold_start_delay) =
            self.router_cold_start(rr.cold_start_retries, rr.cold_start_delay);
        let retry_budget = self.router_retry_budget(rr.retry_budget);
        let routing_refresh = self.duration(
            "router.routing_refresh",
            rr.routing_refresh,
            "30s",
            Duration::from_millis(100),
            Duration::from_secs(86400),
        );
        let (default_batch_threshold, batch_bucket_prefix, max_batch_payload) = self.router_batch(
            rr.default_batch_threshold,
            rr.batch_bucket_prefix,
            rr.max_batch_payload,
        );
        let max_deadline = self.router_max_deadline(rr.max_deadline, default_deadline);
        let (throttle_retries, throttle_base_delay, throttle_max_delay) = self.router_throttle(
            rr.throttle_retries,
            rr.throttle_base_delay,
            rr.throttle_max_delay,
        );
        let (breaker_failures, breaker_ejection, breaker_max_ejection) = self.router_breaker(
            rr.breaker_failures,
            rr.breaker_ejection,
            rr.breaker_max_ejection,
        );
        let (attempt_timeout_fraction, attempt_timeout_min, attempt_timeout_max) = self
            .router_attempt_timeouts(
                rr.attempt_timeout_fraction,
                rr.attempt_timeout_min,
                rr.attempt_timeout_max,
            );
        let (max_connections, header_read_timeout) =
            self.router_connections(rr.max_connections, rr.header_read_timeout);
        let send_timeout = self.duration(
            "router.send_timeout",
            rr.send_timeout,
            "60s",
            Duration::from_millis(100),
            Duration::from_secs(3600),
        );
        let threads = match rr.threads {
            None => Some(None),
            t => self.in_range("router.threads", t, 1, 1, 1024).map(Some),
        };
        let access_log_sample =
            self.fraction("router.access_log_sample", rr.access_log_sample, 1.0);
        let allow = self.router_allow(rr.allow.unwrap_or_default());
        let caller_default = rr
            .caller_default
            .map(|l| self.caller_limit("router.caller_default", l));
        let callers: BTreeMap<String, CallerLimit> = rr
            .callers
            .unwrap_or_default()
            .into_iter()
            .map(|(id, l)| {
                let limit = self.caller_limit(&format!("router.callers.{id:?}"), l);
                (id, limit)
            })
            .collect();
        let iam = rr.iam.and_then(|r| self.router_iam(r));
        Some(Router {
            max_in_flight: max_in_flight?,
            body_read_timeout: body_read_timeout?,
            default_deadline: default_deadline?,
            cold_start_retries: cold_start_retries?,
            cold_start_delay: cold_start_delay?,
            retry_budget,
            routing_refresh: routing_refresh?,
            default_batch_threshold: default_batch_threshold as u64,
            batch_bucket_prefix,
            max_batch_payload: max_batch_payload as u64,
            max_deadline: max_deadline?,
            throttle_retries: throttle_retries?,
            throttle_base_delay: throttle_base_delay?,
            throttle_max_delay: throttle_max_delay?,
            breaker_failures: breaker_failures?,
            breaker_ejection: breaker_ejection?,
            breaker_max_ejection: breaker_max_ejection?,
            attempt_timeout_fraction,
            attempt_timeout_min: attempt_timeout_min?,
            attempt_timeout_max: attempt_timeout_max?,
            max_connections: max_connections?,
            header_read_timeout: header_read_timeout?,
            send_timeout: send_timeout?,
            threads: threads?,
            access_log_sample,
            allow_anonymous: rr.allow_anonymous.unwrap_or(false),
            allow,
            caller_default,
            callers,
            iam,
        })
    }

    /// `[router.iam]`: a `fleet` that can be a header value (visible ASCII,
    /// at most 128 bytes) and `sts_endpoints` that are origins, `https`, or
    /// `http` on loopback only (a presigned URL is a credential while it is
    /// valid).
    fn router_iam(&mut self, raw: RawIam) -> Option<IamAuth> {
        let fleet = match raw.fleet {
            None => {
                self.err(
                    "router.iam.fleet",
                    "missing: the name callers sign in x-failoverd-fleet",
                );
                None
            }
            Some(f)
                if f.is_empty() || f.len() > 128 || !f.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                self.err(
                    "router.iam.fleet",
                    format!("{f:?}: 1 to 128 visible ASCII characters"),
                );
                None
            }
            Some(f) => Some(f),
        };
        let mut sts_endpoints = Vec::new();
        for (i, e) in raw
            .sts_endpoints
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let key = format!("router.iam.sts_endpoints[{i}]");
            match url::Url::parse(&e) {
                Ok(u) if u.path() == "/" && u.query().is_none() && u.username().is_empty() => {
                    let loopback = match u.host() {
                        Some(url::Host::Ipv4(a)) => a.is_loopback(),
                        Some(url::Host::Ipv6(a)) => a.is_loopback(),
                        Some(url::Host::Domain(d)) => d == "localhost",
                        None => false,
                    };
                    match u.scheme() {
                        "https" => sts_endpoints.push(u.origin().ascii_serialization()),
                        "http" if loopback => sts_endpoints.push(u.origin().ascii_serialization()),
                        "http" => self.err(&key, format!("{e:?}: plain http only on loopback (the presigned URLs sent there are credentials)")),
                        _ => self.err(&key, format!("{e:?}: not an http(s) origin")),
                    }
                }
                _ => self.err(&key, format!("{e:?}: not an origin (scheme://host[:port])")),
            }
        }
        Some(IamAuth {
            fleet: fleet?,
            sts_endpoints,
        })
    }

    /// One caller's limits at `key`: `max_in_flight` in 1..=1,000,000,
    /// `rate` above 0 and at most 1,000,000 a second; at least one set.
    fn caller_limit(&mut self, key: &str, raw: RawCallerLimit) -> CallerLimit {
        if raw.max_in_flight.is_none() && raw.rate.is_none() {
            self.err(key, "sets no limit: give max_in_flight, rate or both");
        }
        let max_in_flight = raw.max_in_flight.and_then(|n| {
            let k = format!("{key}.max_in_flight");
            self.in_range(&k, Some(n), 1, 1, 1_000_000)
        });
        let rate = raw.rate.filter(|r| {
            let ok = r.is_finite() && *r > 0.0 && *r <= 1_000_000.0;
            if !ok {
                self.err(
                    &format!("{key}.rate"),
                    format!("{r} is out of range: requests a second, above 0 and at most 1000000"),
                );
            }
            ok
        });
        CallerLimit {
            max_in_flight,
            rate,
        }
    }

    /// `router.allow`: per model, identity patterns, each non-empty
    /// visible text without whitespace.
    fn router_allow(
        &mut self,
        raw: BTreeMap<String, Vec<String>>,
    ) -> BTreeMap<String, Vec<String>> {
        for (model, patterns) in &raw {
            for (i, p) in patterns.iter().enumerate() {
                if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    self.err(
                        &format!("router.allow.{model}[{i}]"),
                        format!("{p:?} is not an identity pattern (visible text, `*` for any run of characters)"),
                    );
                }
            }
        }
        raw
    }

    /// Between `[router]`, `[[models]]` and `[listen]` (issue 22 item 3):
    /// a router off loopback needs an identity method unless
    /// `router.allow_anonymous`; `router.allow` names configured models
    /// and needs an identity method.
    pub(super) fn router_access(
        &mut self,
        router: &Router,
        models: &[ModelConfig],
        listen: &super::Listen,
    ) {
        let identified = router.iam.is_some()
            || listen
                .router_tls
                .as_ref()
                .is_some_and(|t| t.client_ca.is_some());
        if !identified && !router.allow_anonymous && !listen.router.ip().is_loopback() {
            self.err(
                "listen.router",
                format!(
                    "{} is not loopback and the router has no caller identity: anyone who reaches it invokes with the daemon's role; set listen.router_tls with a client_ca or [router.iam], or router.allow_anonymous = true to accept that (docs/threat-model.md)",
                    listen.router
                ),
            );
        }
        for model in router.allow.keys() {
            if !models.iter().any(|m| &m.name == model) {
                self.err(
                    &format!("router.allow.{model}"),
                    "not a model in [[models]]",
                );
            } else if !identified {
                self.err(
                    &format!("router.allow.{model}"),
                    "needs caller identity: set listen.router_tls with a client_ca, or [router.iam]",
                );
            }
        }
    }

    /// `router.max_connections` and `router.header_read_timeout`: each
    /// within its bounds.
    fn router_connections(
        &mut self,
        max_connections: Option<i64>,
        header_read_timeout: Option<String>,
    ) -> (Option<u32>, Option<Duration>) {
        let max_connections = self.in_range(
            "router.max_connections",
            max_connections,
            10_000,
            1,
            1_000_000,
        );
        let header_read_timeout = self.duration(
            "router.header_read_timeout",
            header_read_timeout,
            "10s",
            Duration::from_millis(100),
            Duration::from_secs(600),
        );
        (max_connections, header_read_timeout)
    }

    /// A fraction from 0 to 1 at `key`.
    fn fraction(&mut self, key: &str, raw: Option<f64>, default: f64) -> f64 {
        let v = raw.unwrap_or(default);
        if !(0.0..=1.0).contains(&v) {
            self.err(key, format!("{v} is out of range: must be between 0 and 1"));
        }
        v
    }

    /// `router.max_in_flight`, `router.body_read_timeout` and
    /// `router.default_deadline`: each within its bounds.
    fn router_requests(
        &mut self,
        max_in_flight: Option<i64>,
        body_read_timeout: Option<String>,
        default_deadline: Option<String>,
    ) -> (Option<u32>, Option<Duration>, Option<Duration>) {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let max_in_flight = self.in_range("router.max_in_flight", max_in_flight, 512, 1, 1_000_000);
        let body_read_timeout = self.duration(
            "router.body_read_timeout",
            body_read_timeout,
            "10s",
            ms(10),
            s(600),
        );
        let default_deadline = self.duration(
            "router.default_deadline",
            default_deadline,
            "70s",
            ms(10),
            s(3600),
        );
        (max_in_flight, body_read_timeout, default_deadline)
    }

    /// `router.cold_start_retries` and `router.cold_start_delay`: each
    /// within its bounds.
    fn router_cold_start(
        &mut self,
        retries: Option<i64>,
        delay: Option<String>,
    ) -> (Option<u32>, Option<Duration>) {
        let retries = self.in_range("router.cold_start_retries", retries, 2, 0, 20);
        let delay = self.duration(
            "router.cold_start_delay",
            delay,
            "3s",
            Duration::from_millis(0),
            Duration::from_secs(60),
        );
        (retries, delay)
    }

    /// `router.retry_budget`: a fraction from 0 to 1.
    fn router_retry_budget(&mut self, raw: Option<f64>) -> f64 {
        let retry_budget = raw.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&retry_budget) {
            self.err(
                "router.retry_budget",
                format!("{retry_budget} is out of range: must be between 0 and 1"),
            );
        }
        retry_budget
    }

    /// `router.default_batch_threshold` (1 byte to 1 GiB), the batch
    /// bucket's prefix and `router.max_batch_payload` (6 MiB to 1 GiB).
    fn router_batch(
        &mut self,
        default_batch_threshold: Option<i64>,
        batch_bucket_prefix: Option<String>,
        max_batch_payload: Option<i64>,
    ) -> (i64, String, i64) {
        let default_batch_threshold = default_batch_threshold.unwrap_or(4 * 1024 * 1024);
        if !(1..=1024 * 1024 * 1024).contains(&default_batch_threshold) {
            self.err(
                "router.default_batch_threshold",
                format!("{default_batch_threshold} is out of range: 1 byte to 1 GiB"),
            );
        }
        let batch_bucket_prefix = batch_bucket_prefix.unwrap_or_else(|| "failoverd-batch".into());
        let max_batch_payload = max_batch_payload.unwrap_or(32 * 1024 * 1024);
        if !(6 * 1024 * 1024..=1024 * 1024 * 1024).contains(&max_batch_payload) {
            self.err(
                "router.max_batch_payload",
                format!(
                    "{max_batch_payload} is out of range: 6 MiB (the real-time limit) to 1 GiB"
                ),
            );
        }
        (
            default_batch_threshold,
            batch_bucket_prefix,
            max_batch_payload,
        )
    }

    /// `router.max_deadline`: within its bounds and not below
    /// `router.default_deadline`.
    fn router_max_deadline(
        &mut self,
        raw: Option<String>,
        default_deadline: Option<Duration>,
    ) -> Option<Duration> {
        let max_deadline = self.duration(
            "router.max_deadline",
            raw,
            "15m",
            Duration::from_secs(1),
            Duration::from_secs(86400),
        );
        self.not_above(
            "router.default_deadline",
            default_deadline,
            "router.max_deadline",
            max_deadline,
        );
        max_deadline
    }

    /// `router.throttle_*`: the retries and the backoff's base and cap,
    /// the base not above the cap.
    fn router_throttle(
        &mut self,
        retries: Option<i64>,
        base_delay: Option<String>,
        max_delay: Option<String>,
    ) -> (Option<u32>, Option<Duration>, Option<Duration>) {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let retries = self.in_range("router.throttle_retries", retries, 3, 0, 20);
        let base_delay = self.duration(
            "router.throttle_base_delay",
            base_delay,
            "100ms",
            ms(1),
            s(60),
        );
        let max_delay = self.duration("router.throttle_max_delay", max_delay, "2s", ms(1), s(600));
        self.not_above(
            "router.throttle_base_delay",
            base_delay,
            "router.throttle_max_delay",
            max_delay,
        );
        (retries, base_delay, max_delay)
    }

    /// `router.breaker_*`: the failures that eject a target and the first
    /// and longest ejection, the first not above the longest.
    fn router_breaker(
        &mut self,
        failures: Option<i64>,
        ejection: Option<String>,
        max_ejection: Option<String>,
    ) -> (Option<u32>, Option<Duration>, Option<Duration>) {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let failures = self.in_range("router.breaker_failures", failures, 5, 1, 1000);
        let ejection = self.duration("router.breaker_ejection", ejection, "5s", ms(10), s(3600));
        let max_ejection = self.duration(
            "router.breaker_max_ejection",
            max_ejection,
            "5m",
            ms(10),
            s(86400),
        );
        self.not_above(
            "router.breaker_ejection",
            ejection,
            "router.breaker_max_ejection",
            max_ejection,
        );
        (failures, ejection, max_ejection)
    }

    /// `router.attempt_timeout_*`: a fraction above 0 and at most 1, and
    /// bounds with the minimum not above the maximum.
    fn router_attempt_timeouts(
        &mut self,
        fraction: Option<f64>,
        min: Option<String>,
        max: Option<String>,
    ) -> (f64, Option<Duration>, Option<Duration>) {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let fraction = fraction.unwrap_or(0.5);
        if !(fraction > 0.0 && fraction <= 1.0) {
            self.err(
                "router.attempt_timeout_fraction",
                format!("{fraction} is out of range: must be above 0 and at most 1"),
            );
        }
        let min = self.duration("router.attempt_timeout_min", min, "1s", ms(1), s(3600));
        let max = self.duration("router.attempt_timeout_max", max, "60s", ms(1), s(86400));
        self.not_above(
            "router.attempt_timeout_min",
            min,
            "router.attempt_timeout_max",
            max,
        );
        (fraction, min, max)
    }

    /// The `[[models]]` list.
    pub(super) fn models(
        &mut self,
        raw: Vec<RawModel>,
        regions: &[super::RegionConfig],
    ) -> Vec<ModelConfig> {
        let mut models = Vec::new();
        let mut indices = Vec::new();
        let mut seen_models = BTreeSet::new();
        for (i, m) in raw.into_iter().enumerate() {
            let k = |f: &str| format!("models[{i}].{f}");
            let name = self.required(&k("name"), m.name);
            let class = m.traffic_class.unwrap_or_else(|| "standard".into());
            // `retry_on_timeout = false` was the documented setting for a
            // model that must not run twice: alone, it means not idempotent.
            let idempotent = m.idempotent.unwrap_or(m.retry_on_timeout.unwrap_or(true));
            let retry_on_timeout = m.retry_on_timeout.unwrap_or(idempotent);
            if !idempotent && retry_on_timeout {
                self.err(
                    &k("retry_on_timeout"),
                    "a model with idempotent = false is never sent again after a timeout; drop retry_on_timeout or set it to false",
                );
            }
            let hedge_after = match m.hedge_after.as_deref().map(parse_hedge_after) {
                None => Ok(None),
                Some(Ok(h)) => Ok(Some(h)),
                Some(Err(e)) => {
                    self.err(&k("hedge_after"), crate::error_chain(&e));
                    Err(())
                }
            };
            if hedge_after.as_ref().is_ok_and(Option::is_some) && !retry_on_timeout {
                self.err(
                    &k("hedge_after"),
                    "a hedge sends the request a second time; a model with idempotent = false or retry_on_timeout = false must not be hedged",
                );
            }
            let attempt_timeout = match m.attempt_timeout {
                None => Some(None),
                Some(t) => self
                    .duration(
                        &k("attempt_timeout"),
                        Some(t),
                        "",
                        Duration::from_millis(1),
                        Duration::from_secs(3600),
                    )
                    .map(Some),
            };
            if let (Ok(Some(HedgeAfter::Fixed(h))), Some(Some(t))) = (&hedge_after, attempt_timeout)
                && *h >= t
            {
                self.err(
                        &k("hedge_after"),
                        format!(
                            "{} is not shorter than models[{i}].attempt_timeout ({}): the attempt would time out before the hedge",
                            humantime::format_duration(*h),
                            humantime::format_duration(t)
                        ),
                    );
            }
            let mut spill_over = SpillOver::default();
            let causes = match m.spill_over {
                None | Some(RawSpillOver::All(false)) => Vec::new(),
                Some(RawSpillOver::All(true)) => vec!["throttling".into(), "not_ready".into()],
                Some(RawSpillOver::Causes(c)) => c,
            };
            for cause in &causes {
                match cause.as_str() {
                    "throttling" => spill_over.throttling = true,
                    "not_ready" => spill_over.not_ready = true,
                    other => self.err(
                        &k("spill_over"),
                        format!(
                            "{other:?} is not a spill-over cause: write \"throttling\", \"not_ready\" or both"
                        ),
                    ),
                }
            }
            let Some(n) = name else { continue };
            if !seen_models.insert(n.clone()) {
                self.err(&k("name"), format!("duplicate model {n:?}"));
            }
            let target_model = m.target_model.filter(|t| !t.is_empty());
            let serving = self.model_serving(i, &n, target_model.as_deref(), m.regions, regions);
            let (Ok(hedge_after), Some(attempt_timeout), Some(serving)) =
                (hedge_after, attempt_timeout, serving)
            else {
                continue;
            };
            indices.push(i);
            models.push(ModelConfig {
                name: n,
                traffic_class: class,
                target_model,
                idempotent,
                retry_on_timeout,
                hedge_after,
                attempt_timeout,
                spill_over,
                serving,
            });
        }
        let rows: Vec<(usize, &str, &[super::serving::RegionServing])> = indices
            .iter()
            .zip(&models)
            .map(|(i, m)| (*i, m.name.as_str(), m.serving.as_slice()))
            .collect();
        self.endpoints_agree(&rows, regions);
        models
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvSource, load};

    /// Load the lab's base file with `region_file` as the region layer.
    fn load_with(region_file: &str) -> Result<crate::config::Config, String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!(
            "failoverd-config-router-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(root.join("regions/lab/base.toml"), dir.join("base.toml")).unwrap();
        std::fs::write(dir.join("us-east-1.toml"), region_file).unwrap();
        let out = load(&dir.join("us-east-1.toml"), &EnvSource::new()).map_err(|e| e.report());
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    #[test]
    fn hedge_after_errors_are_typed_and_keep_the_parsers_reason() {
        assert!(matches!(
            parse_hedge_after("p0"),
            Err(HedgeAfterError::Quantile { .. })
        ));
        assert!(matches!(
            parse_hedge_after("2h"),
            Err(HedgeAfterError::OutOfRange { .. })
        ));
        let e = parse_hedge_after("soonish").unwrap_err();
        assert!(matches!(e, HedgeAfterError::Neither { .. }), "{e:?}");
        let full = crate::error_chain(&e);
        assert!(full.starts_with("\"soonish\" is neither"), "{full}");
        assert!(
            full.len() > e.to_string().len() + 2,
            "humantime's reason follows as the source: {full}"
        );
    }

    /// (A region file's `[[models]]` replaces the base file's list, so the
    /// indices count from the region file's first model.)
    #[test]
    fn hedging_and_attempt_settings_are_validated_with_file_and_key() {
        let report = load_with(
            "region = \"us-east-1\"\n\
             [router]\nattempt_timeout_fraction = 0\nattempt_timeout_min = \"2m\"\nattempt_timeout_max = \"1m\"\n\
             [[models]]\nname = \"once\"\nretry_on_timeout = false\nhedge_after = \"p95\"\n\
             [[models]]\nname = \"odd\"\nhedge_after = \"p100\"\n\
             [[models]]\nname = \"slow\"\nhedge_after = \"2s\"\nattempt_timeout = \"1s\"\n\
             [[models]]\nname = \"vague\"\nhedge_after = \"soonish\"\nattempt_timeout = \"forever\"\n\
             [[models]]\nname = \"torn\"\nidempotent = false\nretry_on_timeout = true\n\
             [[models]]\nname = \"spilly\"\nspill_over = [\"throttling\", \"throttle\"]\n",
        )
        .unwrap_err();
        for line in [
            "router.attempt_timeout_fraction: 0 is out of range",
            "router.attempt_timeout_min: 2m is longer than router.attempt_timeout_max (1m)",
            "models[0].hedge_after: a hedge sends the request a second time",
            "models[1].hedge_after: \"p100\": a quantile is written p50 to p99.9",
            "models[2].hedge_after: 2s is not shorter than models[2].attempt_timeout (1s)",
            "models[3].hedge_after: \"soonish\" is neither a quantile",
            "models[3].attempt_timeout: \"forever\" is not a duration",
            "models[4].retry_on_timeout: a model with idempotent = false is never sent again",
            "models[5].spill_over: \"throttle\" is not a spill-over cause",
        ] {
            assert!(report.contains(line), "no {line:?} in:\n{report}");
        }
        assert!(
            report.contains("us-east-1.toml"),
            "names the file: {report}"
        );
    }

    #[test]
    fn a_spill_over_of_the_wrong_type_is_named_with_its_key() {
        let report =
            load_with("region = \"us-east-1\"\n[[models]]\nname = \"a\"\nspill_over = 3\n")
                .unwrap_err();
        assert!(
            report.contains("spill_over")
                && report.contains("true, false, or a list of spill-over causes")
                && report.contains("us-east-1.toml"),
            "{report}"
        );
    }

    #[test]
    fn hedging_settings_parse_and_default() {
        let c = load_with(
            "region = \"us-east-1\"\n\
             [[models]]\nname = \"q\"\nhedge_after = \"p99.5\"\n\
             [[models]]\nname = \"f\"\nhedge_after = \"250ms\"\nattempt_timeout = \"2s\"\n\
             [[models]]\nname = \"once\"\nretry_on_timeout = false\n\
             [[models]]\nname = \"twice_ok\"\nidempotent = true\nretry_on_timeout = false\n\
             [[models]]\nname = \"pay\"\nidempotent = false\nspill_over = [\"throttling\"]\n\
             [[models]]\nname = \"spill_all\"\nspill_over = true\n",
        )
        .unwrap();
        let m = |n: &str| c.models.iter().find(|m| m.name == n).unwrap();
        assert_eq!(m("q").hedge_after, Some(HedgeAfter::Quantile(0.995)));
        assert!(m("q").retry_on_timeout, "on by default");
        assert_eq!(
            m("f").hedge_after,
            Some(HedgeAfter::Fixed(Duration::from_millis(250)))
        );
        assert_eq!(m("f").attempt_timeout, Some(Duration::from_secs(2)));
        assert!(!m("once").retry_on_timeout);
        assert!(m("q").idempotent, "on by default");
        assert!(
            !m("once").idempotent,
            "retry_on_timeout = false alone: not idempotent"
        );
        assert!(m("twice_ok").idempotent && !m("twice_ok").retry_on_timeout);
        assert!(!m("pay").idempotent && !m("pay").retry_on_timeout);
        assert_eq!(m("once").hedge_after, None);
        assert_eq!(m("q").spill_over, SpillOver::default(), "off by default");
        assert_eq!(
            m("pay").spill_over,
            SpillOver {
                throttling: true,
                not_ready: false
            }
        );
        assert_eq!(
            m("spill_all").spill_over,
            SpillOver {
                throttling: true,
                not_ready: true
            }
        );
        assert_eq!(c.router.attempt_timeout_fraction, 0.5);
        assert_eq!(c.router.attempt_timeout_min, Duration::from_secs(1));
        assert_eq!(c.router.attempt_timeout_max, Duration::from_secs(60));
        // check-config renders them.
        let text = c.to_redacted_toml();
        assert!(text.contains("hedge_after = \"p99.5\""), "{text}");
        assert!(text.contains("hedge_after = \"250ms\""), "{text}");
        assert!(
            text.contains("spill_over = [\"throttling\"]")
                && text.matches("spill_over").count() == 2,
            "{text}"
        );
    }
}
