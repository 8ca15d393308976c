//! Checks against AWS before the daemon starts: what configuration alone
//! cannot tell.
//!
//! A Route 53 health check's *type* lives in Route 53: an HTTP(S)/TCP check
//! has checker observations, a calculated check is evaluated from its
//! children, but a CloudWatch-alarm check (or a type added later) is not
//! something failoverd evaluates. Rather than reading it as "unknown" for
//! ever, the daemon refuses it at start (exit 78, naming the check and the
//! key), and `failoverd check-config --aws` reports the same. If Route 53
//! cannot be reached at start the daemon starts anyway (Route 53 may be
//! down exactly when it is needed least) and reports an unsupported check
//! on `/readyz` once it reads it.

use std::time::Duration;

use crate::config::Config;
use crate::ports::HealthChecks;
use crate::ports::health_checks::CheckKind;

/// How long the preflight waits for Route 53.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// One refused health check: the config key, the id, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub key: String,
    pub id: String,
    pub why: String,
}

/// What the preflight found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Findings {
    pub refused: Vec<Refusal>,
    /// Checks that could not be read (and so could not be verified).
    pub unverified: Vec<(String, String)>,
}

/// Read every configured check's type (and a calculated check's children).
pub async fn health_checks(cfg: &Config, r53: &dyn HealthChecks) -> Findings {
    let mut out = Findings::default();
    for (i, region) in cfg.regions.iter().enumerate() {
        for (j, id) in region.health_check_ids.iter().enumerate() {
            let key = format!("regions[{i}].health_check_ids[{j}]");
            check(&key, id, r53, 0, &mut out).await;
        }
    }
    out
}

async fn check(key: &str, id: &str, r53: &dyn HealthChecks, depth: u32, out: &mut Findings) {
    let kind = match tokio::time::timeout(TIMEOUT, r53.kind(id)).await {
        Ok(Ok(k)) => k,
        Ok(Err(e)) => {
            out.unverified
                .push((id.to_string(), crate::error_chain(&e)));
            return;
        }
        Err(_) => {
            out.unverified
                .push((id.to_string(), format!("no answer within {TIMEOUT:?}")));
            return;
        }
    };
    let refuse = |why: String| Refusal {
        key: key.to_string(),
        id: id.to_string(),
        why,
    };
    match kind {
        // GetHealthCheck never answers a metric reading.
        CheckKind::Endpoint | CheckKind::StatusMetric { .. } => {}
        CheckKind::Calculated { children, .. } => {
            if depth >= 3 {
                out.refused
                    .push(refuse("calculated checks nested more than three deep".into()));
                return;
            }
            for child in children {
                Box::pin(check(key, &child, r53, depth + 1, out)).await;
            }
        }
        CheckKind::CloudWatchAlarm => out.refused.push(refuse(
            "a CloudWatch-alarm health check, which failoverd does not evaluate (its status is the alarm's, not the endpoint's); watch the endpoint with an HTTP(S) check or a probe_url, or combine checks in a calculated check".into(),
        )),
        CheckKind::Other { name } => out.refused.push(refuse(format!(
            "health check type {name}, which failoverd does not evaluate"
        ))),
    }
}
