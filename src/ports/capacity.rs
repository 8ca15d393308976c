//! Capacity limits around SageMaker endpoints, as far as readiness needs
//! them (issue 26; docs/readiness.md): Application Auto Scaling's scalable
//! targets of endpoint variants (`DescribeScalableTargets`), and Service
//! Quotas' applied endpoint-usage quotas (`ListServiceQuotas`), and IAM's
//! policy simulator (`SimulatePrincipalPolicy`) for the calls prepare would
//! make. Read-only: failoverd registers no target, requests no quota
//! increase and changes no policy.

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

/// How IAM's policy simulator judged one action on one resource
/// (`EvaluationResults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// `sagemaker:UpdateEndpointWeightsAndCapacities`.
    pub action: String,
    /// The resource's ARN, or `*`.
    pub resource: String,
    /// `EvalDecision`: `allowed`, `explicitDeny` or `implicitDeny`.
    pub decision: String,
}

impl Judged {
    pub fn allowed(&self) -> bool {
        self.decision == "allowed"
    }
}

fn no_simulator(region: &str, op: &'static str) -> PortError {
    PortError::new(
        "IAM",
        op,
        region,
        super::ErrorKind::Unavailable,
        "no IAM policy simulator in this process",
    )
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

    /// The principal (an IAM role's or user's ARN) whose policies
    /// [`Capacity::simulate`] judges: the caller's own identity, an
    /// assumed role's session named by its role. `region` only says which
    /// regional endpoint asks.
    async fn own_principal(&self, region: &str) -> Result<String, PortError> {
        Err(no_simulator(region, "GetCallerIdentity"))
    }

    /// IAM's policy simulator: is `principal` allowed each of `actions` on
    /// each of `resources` (every pair, every page)? Identity-based
    /// policies and permissions boundaries count; resource policies and
    /// what the simulator cannot see (an organisation's SCPs outside this
    /// account's view, session policies) do not.
    async fn simulate(
        &self,
        region: &str,
        principal: &str,
        actions: &[&str],
        resources: &[String],
    ) -> Result<Vec<Judged>, PortError> {
        let _ = (principal, actions, resources);
        Err(no_simulator(region, "SimulatePrincipalPolicy"))
    }
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
