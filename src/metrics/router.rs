//! The router's metrics: plain atomics in fixed tables, rendered in the
//! Prometheus text format on the admin listener's `GET /metrics`.
//!
//! Every label set is known when the router starts (paths, outcomes, the
//! configured regions, attempt buckets), so each counter is one `AtomicU64`
//! in a flat array and the hot path never takes a lock or allocates. We
//! rejected the `prometheus`/`metrics` crates: a dozen series do not need a
//! dependency, a registry and a global. A region added by a reload lands in
//! the `other` column until the next restart.
//!
//! The registry also keeps the router's monotonic clock origin, so that
//! `failoverd_router_ejected` (is a target ejected right now) can be
//! rendered from the breakers' ejection ends without asking the router.
//! That gauge is kept per target (`region/endpoint[/component]`, the
//! breakers' own key), not per (path, region): one ejected inference
//! component must not read as its whole region ejected. Ejections are rare,
//! so that table sits behind a lock the hot path never takes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::routing::Path;
use crate::ports::Clock;

/// How a request ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 from a real-time path.
    Ok,
    /// 202: stored for batch.
    Accepted,
    /// The model answered an error; its status passed through.
    ModelError,
    /// 400: a malformed request or a SageMaker `ValidationError`.
    BadRequest,
    /// 404: unknown model or route.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 403: the caller may not invoke the model (`router.allow`).
    Denied,
    /// 408: the body did not arrive in time.
    BodyTimeout,
    /// 413.
    TooLarge,
    /// 429: throttled and the retry budget is spent.
    Throttled,
    /// 429: every region that could serve was still cold
    /// (`ModelNotReadyException`).
    ModelNotReady,
    /// 503: shed (in-flight cap or draining).
    Shed,
    /// 503: no region could serve (outages, cold starts exhausted).
    Unavailable,
    /// 504: the request's deadline passed.
    DeadlineExceeded,
    /// 502: an answer the router does not understand.
    BadGateway,
}

impl Outcome {
    pub const ALL: [Outcome; 15] = [
        Outcome::Ok,
        Outcome::Accepted,
        Outcome::ModelError,
        Outcome::BadRequest,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::Denied,
        Outcome::BodyTimeout,
        Outcome::TooLarge,
        Outcome::Throttled,
        Outcome::ModelNotReady,
        Outcome::Shed,
        Outcome::Unavailable,
        Outcome::DeadlineExceeded,
        Outcome::BadGateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Accepted => "accepted",
            Outcome::ModelError => "model_error",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::Denied => "denied",
            Outcome::BodyTimeout => "body_timeout",
            Outcome::TooLarge => "too_large",
            Outcome::Throttled => "throttled",
            Outcome::ModelNotReady => "model_not_ready",
            Outcome::Shed => "shed",
            Outcome::Unavailable => "unavailable",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::BadGateway => "bad_gateway",
        }
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// What one upstream call returned (the `result` label of upstream calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    Ok,
    ModelNotReady,
    Throttled,
    ModelError,
    Validation,
    /// The endpoint does not exist in the region.
    EndpointNotFound,
    Unavailable,
    Connection,
    /// The attempt's own timeout fired.
    Timeout,
    Other,
}

impl CallResult {
    pub const ALL: [CallResult; 10] = [
        CallResult::Ok,
        CallResult::ModelNotReady,
        CallResult::Throttled,
        CallResult::ModelError,
        CallResult::Validation,
        CallResult::EndpointNotFound,
        CallResult::Unavailable,
        CallResult::Connection,
        CallResult::Timeout,
        CallResult::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::ModelNotReady => "model_not_ready",
            CallResult::Throttled => "throttled",
            CallResult::ModelError => "model_error",
            CallResult::Validation => "validation",
            CallResult::EndpointNotFound => "endpoint_not_found",
            CallResult::Unavailable => "unavailable",
            CallResult::Connection => "connection",
            CallResult::Timeout => "timeout",
            CallResult::Other => "other",
        }
    }

    fn index(self) -> usize {
        CallResult::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Path label values: the three paths, then `none` (refused before a path).
const PATHS: usize = 4;
/// Attempt buckets: 0, 1, 2, 3, 4+.
const ATTEMPTS: [&str; 5] = ["0", "1", "2", "3", "4+"];
/// Latency histogram bounds, seconds.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

fn path_index(p: Option<Path>) -> usize {
    match p {
        Some(Path::Serverless) => 0,
        Some(Path::Provisioned) => 1,
        Some(Path::Batch) => 2,
        None => 3,
    }
}

fn path_label(i: usize) -> &'static str {
    match i {
        0 => "serverless",
        1 => "provisioned",
        2 => "batch",
        _ => "none",
    }
}

/// Why a request spilled over to another region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpillCause {
    Throttling = 0,
    NotReady = 1,
}

impl SpillCause {
    pub const ALL: [SpillCause; 2] = [SpillCause::Throttling, SpillCause::NotReady];

    pub fn as_str(self) -> &'static str {
        match self {
            SpillCause::Throttling => "throttling",
            SpillCause::NotReady => "not_ready",
        }
    }
}

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// The router's registry.
pub struct Metrics {
    /// Configured regions, then `other`; the last column also takes `none`.
    regions: Vec<String>,
    /// [path][region][outcome][attempts]
    requests: Box<[AtomicU64]>,
    /// [path][region][result]
    calls: Box<[AtomicU64]>,
    /// [path][region]
    ejections: Box<[AtomicU64]>,
    /// (path, region, target) -> end of the target's latest ejection, ms
    /// since `origin`; targets never ejected are absent.
    ejected_until: Mutex<BTreeMap<(usize, usize, String), u64>>,
    /// [region]: hedges sent to the region, and hedges whose answer won.
    hedges_sent: Box<[AtomicU64]>,
    hedges_won: Box<[AtomicU64]>,
    /// [from region][to region][cause]: requests spilled over.
    spills: Box<[AtomicU64]>,
    /// The router's monotonic clock origin.
    origin: Instant,
    clock: Arc<dyn Clock>,
    /// Cumulative buckets are computed at render time; these are per bucket
    /// (the last is +Inf).
    latency_buckets: Box<[AtomicU64]>,
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    /// Retries the budget refused.
    budget_refusals: AtomicU64,
    /// Requests being handled now.
    pub in_flight: AtomicU64,
    /// Requests per caller (metrics/callers.rs), set once by the router
    /// from its configuration; unset, nothing is rendered.
    pub callers: std::sync::OnceLock<super::callers::CallerMetrics>,
}

impl Metrics {
    /// A registry for `regions` (in configuration order), whose monotonic
    /// milliseconds count from now on `clock` (the router's clock,
    /// `router::RouterClock`, shares the origin).
    pub fn new(regions: &[String], clock: Arc<dyn Clock>) -> Self {
        let origin = clock.monotonic();
        let mut regions = regions.to_vec();
        regions.push("other".into());
        let r = regions.len();
        Self {
            requests: counters(PATHS * r * Outcome::ALL.len() * ATTEMPTS.len()),
            calls: counters(PATHS * r * CallResult::ALL.len()),
            ejections: counters(PATHS * r),
            ejected_until: Mutex::new(BTreeMap::new()),
            hedges_sent: counters(r),
            hedges_won: counters(r),
            spills: counters(r * r * SpillCause::ALL.len()),
            origin,
            clock,
            latency_buckets: counters(BUCKETS.len() + 1),
            latency_sum_us: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            budget_refusals: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            callers: std::sync::OnceLock::new(),
            regions,
        }
    }

    fn region_index(&self, region: Option<&str>) -> usize {
        region
            .and_then(|r| self.regions.iter().position(|x| x == r))
            .unwrap_or(self.regions.len() - 1)
    }

    /// One finished request.
    pub fn request(
        &self,
        path: Option<Path>,
        region: Option<&str>,
        outcome: Outcome,
        attempts: u32,
        elapsed: Duration,
    ) {
        let r = self.regions.len();
        let a = (attempts as usize).min(ATTEMPTS.len() - 1);
        let i = ((path_index(path) * r + self.region_index(region)) * Outcome::ALL.len()
            + outcome.index())
            * ATTEMPTS.len()
            + a;
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(BUCKETS.len());
        self.latency_buckets[b].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// One upstream call.
    pub fn call(&self, path: Path, region: &str, result: CallResult) {
        let i = (path_index(Some(path)) * self.regions.len() + self.region_index(Some(region)))
            * CallResult::ALL.len()
            + result.index();
        self.calls[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Milliseconds on the router's monotonic clock (since this registry
    /// was made).
    pub fn now_ms(&self) -> u64 {
        self.clock.since(self.origin).as_millis() as u64
    }

    /// Where [`Self::now_ms`] counts from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// A breaker ejected `target` (on `path` in `region`) until `until_ms`
    /// (see [`Self::now_ms`]).
    pub fn ejection(&self, path: Path, region: &str, target: &str, until_ms: u64) {
        let (p, r) = (path_index(Some(path)), self.region_index(Some(region)));
        self.ejections[p * self.regions.len() + r].fetch_add(1, Ordering::Relaxed);
        let mut ejected = self.ejected_until.lock().unwrap_or_else(|e| e.into_inner());
        let until = ejected.entry((p, r, target.to_string())).or_insert(0);
        *until = (*until).max(until_ms.max(1));
    }

    /// A hedge went to `region`.
    pub fn hedge_sent(&self, region: &str) {
        self.hedges_sent[self.region_index(Some(region))].fetch_add(1, Ordering::Relaxed);
    }

    /// A hedge to `region` answered first.
    pub fn hedge_won(&self, region: &str) {
        self.hedges_won[self.region_index(Some(region))].fetch_add(1, Ordering::Relaxed);
    }

    /// A request `from` throttled or cold there went to `to` instead.
    pub fn spill(&self, from: &str, to: &str, cause: SpillCause) {
        let r = self.regions.len();
        let i = (self.region_index(Some(from)) * r + self.region_index(Some(to)))
            * SpillCause::ALL.len()
            + cause as usize;
        self.spills[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Spills so far, all labels summed (for tests).
    pub fn spills(&self) -> u64 {
        self.spills.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Hedges (sent, won) so far, all regions (for tests and benchmarks).
    pub fn hedges(&self) -> (u64, u64) {
        let sum = |c: &[AtomicU64]| c.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        (sum(&self.hedges_sent), sum(&self.hedges_won))
    }

    /// The retry budget refused a retry.
    pub fn budget_refusal(&self) {
        self.budget_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted so far with `outcome` (all labels summed; for tests).
    pub fn count(&self, outcome: Outcome) -> u64 {
        let n = Outcome::ALL.len();
        let a = ATTEMPTS.len();
        self.requests
            .iter()
            .enumerate()
            .filter(|(i, _)| (i / a) % n == outcome.index())
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The Prometheus text exposition (version 0.0.4). Zero series are left out.
    pub fn render(&self) -> String {
        self.render_at(self.now_ms())
    }

    fn render_at(&self, now: u64) -> String {
        let mut out = String::new();
        let r = self.regions.len();
        let region_label = |i: usize| {
            if i == r - 1 {
                "other"
            } else {
                self.regions[i].as_str()
            }
        };
        out.push_str(
            "# HELP failoverd_router_requests_total Requests by path, region, outcome and attempts.\n\
             # TYPE failoverd_router_requests_total counter\n",
        );
        for (i, c) in self.requests.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            let a = i % ATTEMPTS.len();
            let rest = i / ATTEMPTS.len();
            let o = rest % Outcome::ALL.len();
            let rest = rest / Outcome::ALL.len();
            let reg = rest % r;
            let p = rest / r;
            let _ = writeln!(
                out,
                "failoverd_router_requests_total{{path=\"{}\",region=\"{}\",outcome=\"{}\",attempts=\"{}\"}} {v}",
                path_label(p),
                region_label(reg),
                Outcome::ALL[o].as_str(),
                ATTEMPTS[a]
            );
        }
        out.push_str(
            "# HELP failoverd_router_upstream_calls_total SageMaker runtime calls by path, region and result.\n\
             # TYPE failoverd_router_upstream_calls_total counter\n",
        );
        for (i, c) in self.calls.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            let res = i % CallResult::ALL.len();
            let rest = i / CallResult::ALL.len();
            let _ = writeln!(
                out,
                "failoverd_router_upstream_calls_total{{path=\"{}\",region=\"{}\",result=\"{}\"}} {v}",
                path_label(rest / r),
                region_label(rest % r),
                CallResult::ALL[res].as_str()
            );
        }
        out.push_str(
            "# HELP failoverd_router_ejections_total Circuit-breaker ejections by path and region.\n\
             # TYPE failoverd_router_ejections_total counter\n",
        );
        for (i, c) in self.ejections.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v != 0 {
                let _ = writeln!(
                    out,
                    "failoverd_router_ejections_total{{path=\"{}\",region=\"{}\"}} {v}",
                    path_label(i / r),
                    region_label(i % r)
                );
            }
        }
        out.push_str(
            "# HELP failoverd_router_ejected Whether a target (region/endpoint[/component] on a path) is ejected now (1) or not (0); targets never ejected are left out.\n\
             # TYPE failoverd_router_ejected gauge\n",
        );
        let ejected = self
            .ejected_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((p, reg, target), until) in ejected {
            let _ = writeln!(
                out,
                "failoverd_router_ejected{{path=\"{}\",region=\"{}\",target=\"{}\"}} {}",
                path_label(p),
                region_label(reg),
                super::meter::label(&target),
                u8::from(now < until)
            );
        }
        for (name, help, counts) in [
            (
                "failoverd_router_hedges_sent_total",
                "Hedged attempts sent, by the region they went to.",
                &self.hedges_sent,
            ),
            (
                "failoverd_router_hedges_won_total",
                "Hedged attempts whose answer won, by region.",
                &self.hedges_won,
            ),
        ] {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
            for (i, c) in counts.iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                if v != 0 {
                    let _ = writeln!(out, "{name}{{region=\"{}\"}} {v}", region_label(i));
                }
            }
        }
        out.push_str(
            "# HELP failoverd_router_spills_total Requests a region throttled or found cold that went to another, warm region (spill-over), by region pair and cause.\n\
             # TYPE failoverd_router_spills_total counter\n",
        );
        for (i, c) in self.spills.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v != 0 {
                let cause = SpillCause::ALL[i % SpillCause::ALL.len()];
                let pair = i / SpillCause::ALL.len();
                let _ = writeln!(
                    out,
                    "failoverd_router_spills_total{{from=\"{}\",to=\"{}\",cause=\"{}\"}} {v}",
                    region_label(pair / r),
                    region_label(pair % r),
                    cause.as_str()
                );
            }
        }
        let _ = write!(
            out,
            "# HELP failoverd_router_retry_budget_refusals_total Retries refused by the retry budget.\n\
             # TYPE failoverd_router_retry_budget_refusals_total counter\n\
             failoverd_router_retry_budget_refusals_total {}\n\
             # HELP failoverd_router_in_flight Requests being handled.\n\
             # TYPE failoverd_router_in_flight gauge\n\
             failoverd_router_in_flight {}\n",
            self.budget_refusals.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP failoverd_router_request_duration_seconds Time from request to response.\n\
             # TYPE failoverd_router_request_duration_seconds histogram\n",
        );
        let mut cumulative = 0;
        for (i, c) in self.latency_buckets.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "failoverd_router_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "failoverd_router_request_duration_seconds_sum {}\nfailoverd_router_request_duration_seconds_count {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            self.latency_count.load(Ordering::Relaxed)
        );
        if let Some(c) = self.callers.get() {
            c.render(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::new(
            &["us-east-1".into(), "us-west-2".into()],
            Arc::new(crate::ports::SystemClock),
        );
        let ms = Duration::from_millis;
        m.request(
            Some(Path::Provisioned),
            Some("us-west-2"),
            Outcome::Ok,
            2,
            ms(3),
        );
        m.request(None, None, Outcome::NotFound, 0, ms(0));
        m.request(
            Some(Path::Serverless),
            Some("eu-central-1"),
            Outcome::Ok,
            9,
            ms(700),
        );
        m.call(Path::Serverless, "us-east-1", CallResult::ModelNotReady);
        m.ejection(Path::Provisioned, "us-east-1", "us-east-1/gpu/llm", 60_000);
        m.ejection(
            Path::Serverless,
            "us-west-2",
            "us-west-2/inference-serverless",
            1_000,
        );
        m.hedge_sent("us-west-2");
        m.hedge_sent("us-west-2");
        m.hedge_won("us-west-2");
        m.spill("us-east-1", "us-west-2", SpillCause::Throttling);
        m.spill("us-east-1", "us-west-2", SpillCause::Throttling);
        m.spill("us-west-2", "us-east-1", SpillCause::NotReady);
        let text = m.render_at(30_000);
        assert!(text.contains(
            "failoverd_router_spills_total{from=\"us-east-1\",to=\"us-west-2\",cause=\"throttling\"} 2"
        ));
        assert!(text.contains(
            "failoverd_router_spills_total{from=\"us-west-2\",to=\"us-east-1\",cause=\"not_ready\"} 1"
        ));
        assert_eq!(m.spills(), 3);
        assert!(text.contains(
            "failoverd_router_ejected{path=\"provisioned\",region=\"us-east-1\",target=\"us-east-1/gpu/llm\"} 1"
        ));
        assert!(text.contains(
            "failoverd_router_ejected{path=\"serverless\",region=\"us-west-2\",target=\"us-west-2/inference-serverless\"} 0"
        ));
        // One gauge per target: the region's other targets are not ejected.
        assert_eq!(text.matches("failoverd_router_ejected{").count(), 2);
        assert!(!text.contains("failoverd_router_ejected{path=\"batch\""));
        assert!(text.contains("failoverd_router_hedges_sent_total{region=\"us-west-2\"} 2"));
        assert!(text.contains("failoverd_router_hedges_won_total{region=\"us-west-2\"} 1"));
        assert_eq!(m.hedges(), (2, 1));
        assert!(text.contains(
            "failoverd_router_requests_total{path=\"provisioned\",region=\"us-west-2\",outcome=\"ok\",attempts=\"2\"} 1"
        ));
        assert!(text.contains(
            "failoverd_router_requests_total{path=\"none\",region=\"other\",outcome=\"not_found\",attempts=\"0\"} 1"
        ));
        assert!(text.contains(
            "failoverd_router_requests_total{path=\"serverless\",region=\"other\",outcome=\"ok\",attempts=\"4+\"} 1"
        ));
        assert!(text.contains(
            "failoverd_router_upstream_calls_total{path=\"serverless\",region=\"us-east-1\",result=\"model_not_ready\"} 1"
        ));
        assert!(text.contains("failoverd_router_request_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("failoverd_router_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("failoverd_router_request_duration_seconds_count 3"));
        assert_eq!(m.count(Outcome::Ok), 2);
        assert_eq!(m.count(Outcome::NotFound), 1);
    }
}
