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

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::Config;
use crate::core::backoff::Backoff;
use crate::ports::Ports;
use crate::ports::endpoints::WarmUp;

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
}

/// Run the prepare step for this daemon's region; `deadline` is the
/// token's expiry (wall clock, unix ms).
pub async fn prepare(
    cfg: &Config,
    ports: &Ports,
    deadline: u64,
) -> Result<serde_json::Value, PrepareError> {
    let me = cfg.local();
    let region = me.name.clone();
    let mut statuses = serde_json::Map::new();
    for ep in me.sagemaker.all() {
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

    // The budget, on the monotonic clock; and never past the token's expiry
    // (minus room for the callback), on the wall clock.
    let started = Instant::now();
    let budget = cfg.timings.prepare_budget;
    let wall_left = deadline
        .saturating_sub(ports.clock.now_ms())
        .saturating_sub(5_000);
    let stop_at = started + budget.min(Duration::from_millis(wall_left));

    // Every model the router serves: each TargetModel once per endpoint (a
    // single-model endpoint, with no TargetModel, once).
    let mut targets: Vec<Option<String>> =
        cfg.models.iter().map(|m| m.target_model.clone()).collect();
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        targets.push(None);
    }
    let body = cfg.health.warmup_payload.as_bytes();
    let mut warmed = Vec::new();
    for ep in me.sagemaker.realtime() {
        for target in &targets {
            let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                match ports
                    .endpoints
                    .warm_up(&region, ep, target.as_deref(), body)
                    .await
                {
                    WarmUp::Answered { detail } => {
                        warmed.push(json!({"endpoint": ep, "target_model": target, "attempts": attempts, "answer": detail}));
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
                        if Instant::now() + delay >= stop_at {
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
    Ok(json!({"region": region, "step": "prepare", "endpoints": statuses, "warmed": warmed}))
}
