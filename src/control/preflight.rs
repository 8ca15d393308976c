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
//!
//! `check-config --aws` also asks SageMaker whether every endpoint the
//! files route to exists, in every region ([`endpoints`]): a model mapped
//! to an endpoint name that is misspelt in one region loads fine and fails
//! only when that region must serve it. The daemon does not refuse to
//! start on this (idle detection may have stopped a standby's endpoint on
//! purpose, and prepare reports a missing target when it matters).

use std::time::Duration;

use crate::config::Config;
use crate::ports::health_checks::CheckKind;
use crate::ports::{Endpoints, HealthChecks};

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

/// An endpoint a region's traffic is routed to (config/serving.rs) that
/// SageMaker does not know, or does not serve on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFinding {
    pub region: String,
    pub endpoint: String,
    /// The path it is used on, and the inference components it hosts.
    pub path: &'static str,
    pub components: Vec<String>,
    /// `None`: it does not exist. `Some(status)`: it exists but does not
    /// serve in that status.
    pub status: Option<String>,
    /// Set when the finding is about this inference component on the
    /// endpoint rather than the endpoint itself.
    pub component: Option<String>,
}

/// What [`endpoints`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointFindings {
    pub missing: Vec<EndpointFinding>,
    pub not_serving: Vec<EndpointFinding>,
    /// (region/endpoint, why) for endpoints that could not be read.
    pub unverified: Vec<(String, String)>,
}

/// Read every endpoint the configuration routes to, in every region
/// (`Config::endpoints_in`: the region's shared endpoints and each model's
/// own), with `DescribeEndpoint`, and each inference component mapped onto
/// one with `DescribeInferenceComponent`.
pub async fn endpoints(cfg: &Config, sagemaker: &dyn Endpoints) -> EndpointFindings {
    let mut out = EndpointFindings::default();
    for region in &cfg.regions {
        for used in cfg.endpoints_in(&region.name) {
            let finding = |status: Option<String>, component: Option<&String>| EndpointFinding {
                region: region.name.clone(),
                endpoint: used.name.clone(),
                path: used.path.as_str(),
                components: used.components.clone(),
                status,
                component: component.cloned(),
            };
            match tokio::time::timeout(TIMEOUT, sagemaker.status(&region.name, &used.name)).await {
                Ok(Ok(None)) => out.missing.push(finding(None, None)),
                Ok(Ok(Some(s))) => {
                    if !s.serves() {
                        out.not_serving
                            .push(finding(Some(s.as_str().to_string()), None));
                    }
                    // Each inference component the files map onto it
                    // (`DescribeInferenceComponent`): one on another
                    // endpoint is as missing as one that does not exist.
                    for c in &used.components {
                        let read = tokio::time::timeout(
                            TIMEOUT,
                            sagemaker.describe_component(&region.name, c),
                        )
                        .await;
                        match read {
                            Ok(Ok(Some(ic))) if ic.endpoint != used.name => out
                                .missing
                                .push(finding(Some(format!("on {}", ic.endpoint)), Some(c))),
                            Ok(Ok(Some(ic))) if !ic.status.serves() => out
                                .not_serving
                                .push(finding(Some(ic.status.as_str().to_string()), Some(c))),
                            Ok(Ok(Some(_))) => {}
                            Ok(Ok(None)) => out.missing.push(finding(None, Some(c))),
                            Ok(Err(e)) => out.unverified.push((
                                format!("{}/{}/{c}", region.name, used.name),
                                crate::error_chain(&e),
                            )),
                            Err(_) => out.unverified.push((
                                format!("{}/{}/{c}", region.name, used.name),
                                format!("no answer within {TIMEOUT:?}"),
                            )),
                        }
                    }
                }
                Ok(Err(e)) => out.unverified.push((
                    format!("{}/{}", region.name, used.name),
                    crate::error_chain(&e),
                )),
                Err(_) => out.unverified.push((
                    format!("{}/{}", region.name, used.name),
                    format!("no answer within {TIMEOUT:?}"),
                )),
            }
        }
    }
    out
}
