//! Route 53 adapter: health checks. (Record sets are managed by deploy/.)

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_route53::Client;
use aws_sdk_route53::error::DisplayErrorContext;
use aws_sdk_route53::types::{HealthCheckConfig, HealthCheckType};

use super::clients::ROUTE53_REGION;
use super::errors::port_error;
use crate::ports::health_checks::{CheckKind, CheckReading, MetricPoint};
use crate::ports::{HealthChecks, PortError};

const SERVICE: &str = "Route 53";

/// A Route 53 call failed.
#[derive(Debug, thiserror::Error)]
#[error("Route 53 {op}: {detail}")]
pub struct Route53Error {
    pub op: &'static str,
    pub detail: String,
}

/// What to check.
#[derive(Debug, Clone)]
pub struct HealthCheckSpec {
    /// Unique per creation request (Route 53's idempotency key).
    pub caller_reference: String,
    pub fqdn: String,
    pub port: i32,
    pub resource_path: String,
}

/// Create an HTTPS health check and return its id.
pub async fn create_health_check(
    client: &Client,
    spec: &HealthCheckSpec,
) -> Result<String, Route53Error> {
    let cfg = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Https)
        .fully_qualified_domain_name(&spec.fqdn)
        .port(spec.port)
        .resource_path(&spec.resource_path)
        .request_interval(10)
        .failure_threshold(3)
        .enable_sni(true)
        .build()
        .map_err(|e| Route53Error {
            op: "CreateHealthCheck",
            detail: e.to_string(),
        })?;
    let out = client
        .create_health_check()
        .caller_reference(&spec.caller_reference)
        .health_check_config(cfg)
        .send()
        .await
        .map_err(|e| Route53Error {
            op: "CreateHealthCheck",
            detail: DisplayErrorContext(&e).to_string(),
        })?;
    out.health_check()
        .map(|h| h.id().to_string())
        .ok_or_else(|| Route53Error {
            op: "CreateHealthCheck",
            detail: "response carried no health check".into(),
        })
}

/// The [`HealthChecks`](crate::ports::HealthChecks) port over Route 53,
/// and over CloudWatch in us-east-1 for the `HealthCheckStatus` metric.
pub struct AwsHealthChecks {
    client: Client,
    metrics: Option<aws_sdk_cloudwatch::Client>,
}

impl AwsHealthChecks {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            metrics: None,
        }
    }

    /// Read the metric with `cloudwatch`, a client in us-east-1 (Route 53
    /// publishes its metrics there only, whatever the daemon's region).
    pub fn with_metrics(mut self, cloudwatch: aws_sdk_cloudwatch::Client) -> Self {
        self.metrics = Some(cloudwatch);
        self
    }

    async fn config(&self, id: &str) -> Result<HealthCheckConfig, PortError> {
        let hc = self
            .client
            .get_health_check()
            .health_check_id(id)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, format!("GetHealthCheck {id}"), ROUTE53_REGION, e))?;
        hc.health_check()
            .and_then(|h| h.health_check_config())
            .cloned()
            .ok_or_else(|| {
                PortError::malformed(
                    SERVICE,
                    format!("GetHealthCheck {id}"),
                    ROUTE53_REGION,
                    "the answer carries no health check configuration",
                )
            })
    }
}

fn kind_of(cfg: &HealthCheckConfig) -> CheckKind {
    match cfg.r#type() {
        HealthCheckType::Calculated => CheckKind::Calculated {
            children: cfg.child_health_checks().to_vec(),
            threshold: cfg.health_threshold().unwrap_or(0).max(0) as u32,
        },
        HealthCheckType::CloudwatchMetric => CheckKind::CloudWatchAlarm,
        HealthCheckType::Http
        | HealthCheckType::Https
        | HealthCheckType::HttpStrMatch
        | HealthCheckType::HttpsStrMatch
        | HealthCheckType::Tcp => CheckKind::Endpoint,
        other => CheckKind::Other {
            name: other.as_str().to_string(),
        },
    }
}

#[async_trait]
impl HealthChecks for AwsHealthChecks {
    async fn read(&self, id: &str) -> Result<CheckReading, PortError> {
        let cfg = self.config(id).await?;
        let kind = kind_of(&cfg);
        // A calculated check's status is its children's: Route 53 has no
        // checker observations for it, and the daemon evaluates the
        // children itself (core::health::route53_effective).
        let observations = if kind == CheckKind::Endpoint {
            let status = self
                .client
                .get_health_check_status()
                .health_check_id(id)
                .send()
                .await
                .map_err(|e| {
                    port_error(
                        SERVICE,
                        format!("GetHealthCheckStatus {id}"),
                        ROUTE53_REGION,
                        e,
                    )
                })?;
            status
                .health_check_observations()
                .iter()
                .filter_map(|o| o.status_report().and_then(|r| r.status()).map(String::from))
                .collect()
        } else {
            Vec::new()
        };
        Ok(CheckReading {
            kind,
            inverted: cfg.inverted().unwrap_or(false),
            disabled: cfg.disabled().unwrap_or(false),
            observations,
        })
    }

    async fn kind(&self, id: &str) -> Result<CheckKind, PortError> {
        Ok(kind_of(&self.config(id).await?))
    }

    async fn status_metrics(
        &self,
        ids: &[String],
        start_ms: u64,
        end_ms: u64,
        period_secs: u32,
    ) -> Result<BTreeMap<String, Option<MetricPoint>>, PortError> {
        let Some(cw) = &self.metrics else {
            return Err(crate::ports::health_checks::NoMetricReader::error());
        };
        super::cloudwatch::health_check_status(cw, ids, start_ms, end_ms, period_secs).await
    }
}

/// Set a check's `Inverted` flag (drills invert; disabling never fails over).
pub async fn set_inverted(client: &Client, id: &str, inverted: bool) -> Result<(), Route53Error> {
    client
        .update_health_check()
        .health_check_id(id)
        .inverted(inverted)
        .send()
        .await
        .map_err(|e| Route53Error {
            op: "UpdateHealthCheck",
            detail: DisplayErrorContext(&e).to_string(),
        })?;
    Ok(())
}
