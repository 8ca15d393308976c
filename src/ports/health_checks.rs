//! Health checks: Route 53's view of each region.
//!
//! A reading is the check's own configuration (type, `Inverted`,
//! `Disabled`, a calculated check's children and `HealthThreshold`) plus its
//! checkers' latest observations. What it means is decided in
//! `core::health::route53_effective`; this port only fetches. Route 53's
//! control plane lives in us-east-1 and is rate limited per account, so the
//! daemons read on a shared schedule and publish readings through the
//! control store (`control::signals`).
//!
//! Two sources (`health.route53_source`): the Route 53 API (`read`, two
//! calls per check), or CloudWatch's `AWS/Route53` `HealthCheckStatus`
//! metric (`status_metrics`, every check in one call), whose reading is
//! Route 53's own status of the check, flags applied.

use std::collections::BTreeMap;

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
    /// Not a check's type: a reading from the `HealthCheckStatus` metric,
    /// which carries Route 53's status of the check (`Inverted` and
    /// `Disabled` applied by Route 53, a calculated check's children
    /// counted by it), whatever type the check is. None: no data point in
    /// the window read.
    StatusMetric { point: Option<MetricPoint> },
}

/// The newest `HealthCheckStatus` data point of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// The data point's timestamp (the start of its period), ms since the epoch.
    pub at_ms: u64,
    /// The period's Minimum was 1 (healthy throughout), not 0.
    pub healthy: bool,
}

impl CheckReading {
    /// A reading from the metric (see [`CheckKind::StatusMetric`]).
    pub fn from_metric(point: Option<MetricPoint>) -> Self {
        Self {
            kind: CheckKind::StatusMetric { point },
            inverted: false,
            disabled: false,
            observations: Vec::new(),
        }
    }
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
    /// The newest `AWS/Route53` `HealthCheckStatus` data point (statistic
    /// Minimum, `period_secs` periods) of every check in `ids`, from
    /// `start_ms` to `end_ms`, in one call (CloudWatch `GetMetricData` in
    /// us-east-1, where Route 53 publishes its metrics). A check with no
    /// data point in the window maps to None.
    async fn status_metrics(
        &self,
        ids: &[String],
        start_ms: u64,
        end_ms: u64,
        period_secs: u32,
    ) -> Result<BTreeMap<String, Option<MetricPoint>>, PortError> {
        let _ = (ids, start_ms, end_ms, period_secs);
        Err(NoMetricReader::error())
    }
}

/// This implementation of the port reads no metric.
#[derive(Debug, thiserror::Error)]
#[error("this health-check reader has no CloudWatch client")]
pub struct NoMetricReader;

impl NoMetricReader {
    /// The port's error for a metric read it cannot make.
    pub fn error() -> PortError {
        PortError::new(
            "CloudWatch",
            "GetMetricData HealthCheckStatus",
            "us-east-1",
            super::ErrorKind::Other,
            NoMetricReader,
        )
    }
}
