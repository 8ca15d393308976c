//! The inference router's settings and the models it serves: types, raw
//! shape and validation, in one place.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::human_duration;
use super::validate::Validator;

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
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawModel {
    pub(super) name: Option<String>,
    pub(super) traffic_class: Option<String>,
    pub(super) target_model: Option<String>,
}

impl Validator<'_> {
    /// The `[router]` table.
    pub(super) fn router(&mut self, rr: RawRouter) -> Option<Router> {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let max_in_flight =
            self.in_range("router.max_in_flight", rr.max_in_flight, 512, 1, 1_000_000);
        let body_read_timeout = self.duration(
            "router.body_read_timeout",
            rr.body_read_timeout,
            "10s",
            ms(10),
            s(600),
        );
        let default_deadline = self.duration(
            "router.default_deadline",
            rr.default_deadline,
            "70s",
            ms(10),
            s(3600),
        );
        let cold_start_retries =
            self.in_range("router.cold_start_retries", rr.cold_start_retries, 2, 0, 20);
        let cold_start_delay = self.duration(
            "router.cold_start_delay",
            rr.cold_start_delay,
            "3s",
            ms(0),
            s(60),
        );
        let retry_budget = rr.retry_budget.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&retry_budget) {
            self.err(
                "router.retry_budget",
                format!("{retry_budget} is out of range: must be between 0 and 1"),
            );
        }
        let routing_refresh = self.duration(
            "router.routing_refresh",
            rr.routing_refresh,
            "30s",
            ms(100),
            s(86400),
        );
        let default_batch_threshold = rr.default_batch_threshold.unwrap_or(4 * 1024 * 1024);
        if !(1..=1024 * 1024 * 1024).contains(&default_batch_threshold) {
            self.err(
                "router.default_batch_threshold",
                format!("{default_batch_threshold} is out of range: 1 byte to 1 GiB"),
            );
        }
        let batch_bucket_prefix = rr
            .batch_bucket_prefix
            .unwrap_or_else(|| "failoverd-batch".into());
        let max_batch_payload = rr.max_batch_payload.unwrap_or(32 * 1024 * 1024);
        if !(6 * 1024 * 1024..=1024 * 1024 * 1024).contains(&max_batch_payload) {
            self.err(
                "router.max_batch_payload",
                format!(
                    "{max_batch_payload} is out of range: 6 MiB (the real-time limit) to 1 GiB"
                ),
            );
        }
        let max_deadline = self.duration(
            "router.max_deadline",
            rr.max_deadline,
            "15m",
            s(1),
            s(86400),
        );
        self.not_above(
            "router.default_deadline",
            default_deadline,
            "router.max_deadline",
            max_deadline,
        );
        let throttle_retries =
            self.in_range("router.throttle_retries", rr.throttle_retries, 3, 0, 20);
        let throttle_base_delay = self.duration(
            "router.throttle_base_delay",
            rr.throttle_base_delay,
            "100ms",
            ms(1),
            s(60),
        );
        let throttle_max_delay = self.duration(
            "router.throttle_max_delay",
            rr.throttle_max_delay,
            "2s",
            ms(1),
            s(600),
        );
        self.not_above(
            "router.throttle_base_delay",
            throttle_base_delay,
            "router.throttle_max_delay",
            throttle_max_delay,
        );
        let breaker_failures =
            self.in_range("router.breaker_failures", rr.breaker_failures, 5, 1, 1000);
        let breaker_ejection = self.duration(
            "router.breaker_ejection",
            rr.breaker_ejection,
            "5s",
            ms(10),
            s(3600),
        );
        let breaker_max_ejection = self.duration(
            "router.breaker_max_ejection",
            rr.breaker_max_ejection,
            "5m",
            ms(10),
            s(86400),
        );
        self.not_above(
            "router.breaker_ejection",
            breaker_ejection,
            "router.breaker_max_ejection",
            breaker_max_ejection,
        );
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
        })
    }

    /// The `[[models]]` list.
    pub(super) fn models(&mut self, raw: Vec<RawModel>) -> Vec<ModelConfig> {
        let mut models = Vec::new();
        let mut seen_models = BTreeSet::new();
        for (i, m) in raw.into_iter().enumerate() {
            let name = self.required(&format!("models[{i}].name"), m.name);
            let class = m.traffic_class.unwrap_or_else(|| "standard".into());
            if let Some(n) = name {
                if !seen_models.insert(n.clone()) {
                    self.err(
                        &format!("models[{i}].name"),
                        format!("duplicate model {n:?}"),
                    );
                }
                models.push(ModelConfig {
                    name: n,
                    traffic_class: class,
                    target_model: m.target_model.filter(|t| !t.is_empty()),
                });
            }
        }
        models
    }
}
