//! Endpoint metrics: what CloudWatch counted of a SageMaker endpoint.
//!
//! Idle detection counts invocations in the routers (`metrics::counts`), with
//! no CloudWatch round trip. The routers cannot see traffic that bypasses
//! them (a client calling `InvokeEndpoint` directly, a router cut off from
//! the control table whose counts are taken for dead), so idle detection
//! also asks CloudWatch for the endpoint's `AWS/SageMaker` `Invocations`
//! (`core::idle` rule 7, `cost.idle.cloudwatch`).
//!
//! CloudWatch keeps SageMaker's metrics per `EndpointName` *and*
//! `VariantName`; it does not add dimension combinations up, so the caller
//! names the variants (from `DescribeEndpoint`) and gets their sum. An
//! endpoint that hosts inference components publishes its calls under
//! `InferenceComponentName` alone, with no `EndpointName` dimension, so
//! the caller also names every component on the endpoint
//! (`ListInferenceComponents`) and gets theirs in the sum: asked by
//! endpoint and variant only, such an endpoint always reads as idle.
//! CloudWatch publishes them a minute or more after the fact: a window of
//! an hour (the default) makes that delay small, and the routers' own
//! counts have none.

use async_trait::async_trait;

use super::PortError;

/// CloudWatch's view of endpoints in any region.
#[async_trait]
pub trait EndpointMetrics: Send + Sync {
    /// `Invocations` of `endpoint`'s `variants` and of the inference
    /// `components` on it in `region`, summed over `[start_ms, end_ms)`
    /// (unix ms). No datapoint at all is zero.
    async fn invocations(
        &self,
        region: &str,
        endpoint: &str,
        variants: &[String],
        components: &[String],
        start_ms: u64,
        end_ms: u64,
    ) -> Result<u64, PortError>;
}
