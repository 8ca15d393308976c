//! Endpoints: SageMaker's control plane, as far as the daemon needs it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ErrorKind, PortError};

/// An endpoint's status (`DescribeEndpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    OutOfService,
    Creating,
    Updating,
    SystemUpdating,
    RollingBack,
    InService,
    Deleting,
    Failed,
    UpdateRollbackFailed,
    Other(String),
}

impl EndpointStatus {
    /// Whether the endpoint serves traffic in this status. `Updating` and
    /// `SystemUpdating` keep serving on the old variant while they work.
    pub fn serves(&self) -> bool {
        matches!(
            self,
            EndpointStatus::InService | EndpointStatus::Updating | EndpointStatus::SystemUpdating
        )
    }

    /// The status as SageMaker names it.
    pub fn as_str(&self) -> &str {
        match self {
            EndpointStatus::OutOfService => "OutOfService",
            EndpointStatus::Creating => "Creating",
            EndpointStatus::Updating => "Updating",
            EndpointStatus::SystemUpdating => "SystemUpdating",
            EndpointStatus::RollingBack => "RollingBack",
            EndpointStatus::InService => "InService",
            EndpointStatus::Deleting => "Deleting",
            EndpointStatus::Failed => "Failed",
            EndpointStatus::UpdateRollbackFailed => "UpdateRollbackFailed",
            EndpointStatus::Other(s) => s,
        }
    }

    /// Parse SageMaker's name.
    pub fn parse(s: &str) -> Self {
        match s {
            "OutOfService" => EndpointStatus::OutOfService,
            "Creating" => EndpointStatus::Creating,
            "Updating" => EndpointStatus::Updating,
            "SystemUpdating" => EndpointStatus::SystemUpdating,
            "RollingBack" => EndpointStatus::RollingBack,
            "InService" => EndpointStatus::InService,
            "Deleting" => EndpointStatus::Deleting,
            "Failed" => EndpointStatus::Failed,
            "UpdateRollbackFailed" => EndpointStatus::UpdateRollbackFailed,
            other => EndpointStatus::Other(other.to_string()),
        }
    }
}

/// How an endpoint answered a warm-up request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "answer")]
pub enum WarmUp {
    /// The endpoint answered at the model level: a success, or an error
    /// from the model container (`ModelError`, a validation error the
    /// container raised about the warm-up body). It serves.
    Answered { detail: String },
    /// Not ready yet: cold start (`ModelNotReadyException`), unavailable,
    /// throttled, or unreachable. Worth retrying within the budget.
    NotReady { kind: ErrorKind, detail: String },
    /// It cannot serve (the endpoint is missing, access is denied...):
    /// retrying will not help.
    Refused { detail: String },
}

/// SageMaker endpoints in any region: the control plane's view, and a
/// warm-up invocation (the proof that a real-time endpoint serves).
#[async_trait]
pub trait Endpoints: Send + Sync {
    /// The endpoint's status, or `None` if it does not exist.
    async fn status(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointStatus>, PortError>;
    /// Send one warm-up request (the configured payload).
    async fn warm_up(
        &self,
        region: &str,
        endpoint: &str,
        target_model: Option<&str>,
        body: &[u8],
    ) -> WarmUp;
}
