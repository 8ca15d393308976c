//! CloudWatch adapter: the [`EndpointMetrics`] port over
//! `GetMetricStatistics` (`AWS/SageMaker`, `Invocations`, statistic `Sum`),
//! one call per variant (`EndpointName`, `VariantName`) and one per
//! inference component on the endpoint (`InferenceComponentName` alone: the
//! dimension SageMaker publishes a component's calls under), a client per
//! region.
//!
//! The period is a minute for windows up to a day (at most 1,440 datapoints,
//! CloudWatch's limit per call) and an hour beyond (idle windows go up to 7
//! days: 168 datapoints). The sum over every datapoint returned is the
//! window's count; a variant with no datapoint had no invocation (SageMaker
//! publishes `Invocations` only for minutes with traffic).
//!
//! Also Route 53's `HealthCheckStatus` metric, the production signal AWS
//! documents for health checks (`health.route53_source = "cloudwatch"`):
//! [`health_check_status`].

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
        components: &[String],
        start_ms: u64,
        end_ms: u64,
    ) -> Result<u64, PortError> {
        let client = self.clients.cloudwatch(region);
        let period = period_secs(end_ms.saturating_sub(start_ms));
        let dim = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
        let series = variants
            .iter()
            .map(|v| {
                (
                    format!("{endpoint}/{v}"),
                    vec![dim("EndpointName", endpoint), dim("VariantName", v)],
                )
            })
            .chain(components.iter().map(|c| {
                (
                    format!("component {c}"),
                    vec![dim("InferenceComponentName", c)],
                )
            }));
        let mut total = 0u64;
        for (what, dimensions) in series {
            let op = format!("GetMetricStatistics {INVOCATIONS} {what}");
            let out = client
                .get_metric_statistics()
                .namespace(NAMESPACE)
                .metric_name(INVOCATIONS)
                .set_dimensions(Some(dimensions))
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

/// Route 53's namespace in CloudWatch (us-east-1 only).
pub const ROUTE53_NAMESPACE: &str = "AWS/Route53";
/// Route 53's status of a check: 1 healthy, 0 unhealthy (statistic Minimum).
pub const HEALTH_CHECK_STATUS: &str = "HealthCheckStatus";

/// The newest `HealthCheckStatus` data point of every check in `ids`, in
/// one `GetMetricData` call on `client` (a us-east-1 client: Route 53's
/// metrics are there only). One query per check (`Id` `c<index>`), newest
/// first (`ScanBy` `TimestampDescending`); the start is aligned down to the
/// period so that a data point keeps its timestamp from one call to the
/// next (the daemons count a data point once, by its timestamp). Only the
/// first page is read: newest first, it holds every check's newest point.
pub async fn health_check_status(
    client: &aws_sdk_cloudwatch::Client,
    ids: &[String],
    start_ms: u64,
    end_ms: u64,
    period_secs: u32,
) -> Result<
    std::collections::BTreeMap<String, Option<crate::ports::health_checks::MetricPoint>>,
    PortError,
> {
    use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, MetricStat, ScanBy};
    let region = super::clients::ROUTE53_REGION;
    let op = format!("GetMetricData {HEALTH_CHECK_STATUS} ({} checks)", ids.len());
    let period_ms = u64::from(period_secs.max(1)) * 1000;
    let start = start_ms - start_ms % period_ms;
    let mut req = client
        .get_metric_data()
        .start_time(date(start))
        .end_time(date(end_ms.max(start + 1000)))
        .scan_by(ScanBy::TimestampDescending);
    for (i, id) in ids.iter().enumerate() {
        req = req.metric_data_queries(
            MetricDataQuery::builder()
                .id(format!("c{i}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(ROUTE53_NAMESPACE)
                                .metric_name(HEALTH_CHECK_STATUS)
                                .dimensions(
                                    Dimension::builder().name("HealthCheckId").value(id).build(),
                                )
                                .build(),
                        )
                        .period(period_secs as i32)
                        .stat("Minimum")
                        .build(),
                )
                .return_data(true)
                .build(),
        );
    }
    let out = req
        .send()
        .await
        .map_err(|e| super::errors::port_error("CloudWatch", op.clone(), region, e))?;
    let mut found: std::collections::BTreeMap<String, Option<_>> =
        ids.iter().map(|id| (id.clone(), None)).collect();
    for r in out.metric_data_results() {
        let Some(i) = r
            .id()
            .and_then(|q| q.strip_prefix('c'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|i| *i < ids.len())
        else {
            return Err(PortError::malformed(
                "CloudWatch",
                op,
                region,
                format!("a result has an id we did not ask for: {:?}", r.id()),
            ));
        };
        if r.timestamps().len() != r.values().len() {
            return Err(PortError::malformed(
                "CloudWatch",
                op,
                region,
                format!(
                    "{} timestamps and {} values for {}",
                    r.timestamps().len(),
                    r.values().len(),
                    ids[i]
                ),
            ));
        }
        let points: Vec<(u64, f64)> = r
            .timestamps()
            .iter()
            .zip(r.values())
            .filter_map(|(t, v)| u64::try_from(t.to_millis().ok()?).ok().map(|ms| (ms, *v)))
            .collect();
        let newest = crate::core::health::newest_status(&points)
            .map(|(at_ms, healthy)| crate::ports::health_checks::MetricPoint { at_ms, healthy });
        found.insert(ids[i].clone(), newest);
    }
    Ok(found)
}
