//! Health checks: Route 53's view of each region.
//!
//! A reading is the check's own configuration (type, `Inverted`,
//! `Disabled`, a calculated check's children and `HealthThreshold`) plus its
//! checkers' latest observations. What it means is decided in
//! `core::health::route53_effective`; this port only fetches. Route 53's
//! control plane lives in us-east-1 and is rate limited per account, so the
//! daemons read on a shared schedule and publish readings through the
//! control store (`control::signals`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PortError;

/// What kind of health check this is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum CheckKind {
    /// HTTP(S)/TCP checks with checker observations.
    Endpoint,
    /// Healthy when at least `threshold` of `children` are healthy.
    Calculated {
        children: Vec<String>,
        threshold: u32,
    },
    /// A CloudWatch alarm decides (not evaluated by failoverd: refused).
    CloudWatchAlarm,
    /// Anything else Route 53 may add.
    Other { name: String },
}

/// One reading of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReading {
    pub kind: CheckKind,
    pub inverted: bool,
    pub disabled: bool,
    /// One status text per checker region (`Success: HTTP Status Code 200`).
    pub observations: Vec<String>,
}

/// Route 53 health checks (a global service).
#[async_trait]
pub trait HealthChecks: Send + Sync {
    /// GetHealthCheck, then (for endpoint checks) GetHealthCheckStatus.
    async fn read(&self, id: &str) -> Result<CheckReading, PortError>;
    /// GetHealthCheck only: the check's kind (for start-up validation).
    async fn kind(&self, id: &str) -> Result<CheckKind, PortError>;
}
