//! CloudWatch adapter: the [`EndpointMetrics`] port over
//! `GetMetricStatistics` (`AWS/SageMaker`, `Invocations`, statistic `Sum`),
//! one call per variant, a client per region.
//!
//! The period is a minute for windows up to a day (at most 1,440 datapoints,
//! CloudWatch's limit per call) and an hour beyond (idle windows go up to 7
//! days: 168 datapoints). The sum over every datapoint returned is the
//! window's count; a variant with no datapoint had no invocation (SageMaker
//! publishes `Invocations` only for minutes with traffic).

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};

use crate::ports::PortError;
use crate::ports::endpoint_metrics::EndpointMetrics;

/// SageMaker's namespace in CloudWatch.
pub const NAMESPACE: &str = "AWS/SageMaker";
/// The metric: requests sent to a variant.
pub const INVOCATIONS: &str = "Invocations";

/// The period for a window of `window_ms`: a minute up to a day, else an hour.
pub fn period_secs(window_ms: u64) -> i32 {
    if window_ms <= 86_400_000 { 60 } else { 3600 }
}

fn date(ms: u64) -> DateTime {
    DateTime::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// The port over CloudWatch.
pub struct AwsEndpointMetrics {
    clients: std::sync::Arc<super::AwsClients>,
}

impl AwsEndpointMetrics {
    pub fn new(clients: std::sync::Arc<super::AwsClients>) -> Self {
        Self { clients }
    }
}

#[async_trait]
impl EndpointMetrics for AwsEndpointMetrics {
    async fn invocations(
        &self,
        region: &str,
        endpoint: &str,
        variants: &[String],
        start_ms: u64,
        end_ms: u64,
    ) -> Result<u64, PortError> {
        let client = self.clients.cloudwatch(region);
        let period = period_secs(end_ms.saturating_sub(start_ms));
        let mut total = 0u64;
        for variant in variants {
            let op = format!("GetMetricStatistics {INVOCATIONS} {endpoint}/{variant}");
            let out = client
                .get_metric_statistics()
                .namespace(NAMESPACE)
                .metric_name(INVOCATIONS)
                .dimensions(
                    Dimension::builder()
                        .name("EndpointName")
                        .value(endpoint)
                        .build(),
                )
                .dimensions(
                    Dimension::builder()
                        .name("VariantName")
                        .value(variant)
                        .build(),
                )
                .start_time(date(start_ms))
                .end_time(date(end_ms))
                .period(period)
                .statistics(Statistic::Sum)
                .send()
                .await
                .map_err(|e| super::errors::port_error("CloudWatch", op.clone(), region, e))?;
            for p in out.datapoints() {
                let sum = p.sum().unwrap_or(0.0);
                if !sum.is_finite() || sum < 0.0 {
                    return Err(PortError::malformed(
                        "CloudWatch",
                        op,
                        region,
                        format!("a datapoint's Sum is {sum}"),
                    ));
                }
                total = total.saturating_add(sum.ceil() as u64);
            }
        }
        Ok(total)
    }
}
