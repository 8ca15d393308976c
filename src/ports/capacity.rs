//! Capacity limits around SageMaker endpoints, as far as readiness needs
//! them (issue 26; docs/readiness.md): Application Auto Scaling's scalable
//! targets of endpoint variants (`DescribeScalableTargets`), and Service
//! Quotas' applied endpoint-usage quotas (`ListServiceQuotas`). Read-only:
//! failoverd registers no target and requests no quota increase.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::PortError;

/// One variant's scalable target (namespace `sagemaker`, resource id
/// `endpoint/<endpoint>/variant/<variant>`, dimension
/// `sagemaker:variant:DesiredInstanceCount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalableVariant {
    pub variant: String,
    /// `MinCapacity`.
    pub min: u32,
    /// `MaxCapacity`.
    pub max: u32,
}

#[async_trait]
pub trait Capacity: Send + Sync {
    /// The scalable targets registered for `endpoint`'s `variants` in
    /// `region` (a variant with none is absent from the answer).
    async fn scalable_variants(
        &self,
        region: &str,
        endpoint: &str,
        variants: &[String],
    ) -> Result<Vec<ScalableVariant>, PortError>;

    /// SageMaker's applied quotas named `<instance type> for endpoint
    /// usage` in `region`, by instance type (every page of
    /// `ListServiceQuotas`, service code `sagemaker`). A quota Service
    /// Quotas does not list (no applied value available) is absent.
    async fn endpoint_quotas(&self, region: &str) -> Result<BTreeMap<String, f64>, PortError>;
}

/// No limits known: every read fails as unavailable (for ports built
/// without the capacity reads; readiness reports the checks `unknown`).
pub struct NoCapacity;

#[async_trait]
impl Capacity for NoCapacity {
    async fn scalable_variants(
        &self,
        region: &str,
        _: &str,
        _: &[String],
    ) -> Result<Vec<ScalableVariant>, PortError> {
        Err(PortError::new(
            "Application Auto Scaling",
            "DescribeScalableTargets",
            region,
            super::ErrorKind::Unavailable,
            "no capacity reads in this process",
        ))
    }

    async fn endpoint_quotas(&self, region: &str) -> Result<BTreeMap<String, f64>, PortError> {
        Err(PortError::new(
            "Service Quotas",
            "ListServiceQuotas",
            region,
            super::ErrorKind::Unavailable,
            "no capacity reads in this process",
        ))
    }
}
