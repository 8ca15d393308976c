//! Endpoints: SageMaker's control plane, as far as the daemon needs it.
//!
//! Read: an endpoint's status, and its production variants with their
//! instance counts (`DescribeEndpoint`); its tags (`ListTags`: `ListEndpoints`
//! returns none, whatever the seed's code assumes). Write, for the prepare
//! step and the cost task only: a variant's instance count
//! (`UpdateEndpointWeightsAndCapacities`) and deleting an endpoint
//! (`DeleteEndpoint`, idle detection outside production; the endpoint config
//! stays, so the endpoint can be recreated from it). Nothing here creates
//! endpoints: that is provisioning's job.
//!
//! Inference components (a model on an endpoint that hosts several, each
//! with its own copies): `DescribeInferenceComponent` (status, copy counts,
//! what it runs, `FailureReason`) and, for the prepare step only, a copy
//! count (`UpdateInferenceComponentRuntimeConfig`). The prepare step never
//! lowers one; nothing here creates or deletes components.

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

/// One production variant as `DescribeEndpoint` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantState {
    /// `VariantName`.
    pub variant: String,
    /// `CurrentInstanceCount`; `None` for a serverless variant (or while
    /// SageMaker has not reported one).
    pub current_instances: Option<u32>,
    /// `DesiredInstanceCount`: what was last asked for. Differs from the
    /// current count while the endpoint is `Updating`.
    pub desired_instances: Option<u32>,
    /// A serverless variant (`CurrentServerlessConfig`): it has no instance
    /// count to scale.
    pub serverless: bool,
    /// `InstancePools`: each pool's instance type and current count, as
    /// SageMaker lists them; empty for a variant on one instance type
    /// (`core::pools`).
    #[serde(default)]
    pub pools: Vec<crate::core::pools::PoolCount>,
}

impl VariantState {
    /// The count last asked for (`DesiredInstanceCount`), or the current
    /// one when none is reported; 0 when neither is.
    pub fn asked(&self) -> u32 {
        self.desired_instances
            .or(self.current_instances)
            .unwrap_or(0)
    }
}

/// An endpoint as `DescribeEndpoint` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointState {
    /// `EndpointArn` (what `ListTags` takes).
    pub arn: String,
    /// `EndpointConfigName`: what to recreate a deleted endpoint from.
    pub config: String,
    pub status: EndpointStatus,
    pub variants: Vec<VariantState>,
    /// `FailureReason`: why the last create or update failed. SageMaker
    /// keeps it on an endpoint that went back to `InService` after an
    /// update that could not get instances (insufficient capacity), which
    /// is how a refused scale-up shows.
    pub failure_reason: Option<String>,
}

impl EndpointState {
    /// The provisioned variants (those with an instance count) and their
    /// current counts, as `core::tier` takes them.
    pub fn provisioned(&self) -> Vec<crate::core::tier::VariantCapacity> {
        self.variants
            .iter()
            .filter(|v| !v.serverless)
            .filter_map(|v| {
                Some(crate::core::tier::VariantCapacity {
                    variant: v.variant.clone(),
                    instances: v.current_instances?,
                })
            })
            .collect()
    }

    /// The variant named `name`.
    pub fn variant(&self, name: &str) -> Option<&VariantState> {
        self.variants.iter().find(|v| v.variant == name)
    }

    /// Each variant on instance pools, with its pools' counts.
    pub fn pooled(&self) -> Vec<(String, Vec<crate::core::pools::PoolCount>)> {
        self.variants
            .iter()
            .filter(|v| !v.pools.is_empty())
            .map(|v| (v.variant.clone(), v.pools.clone()))
            .collect()
    }
}

/// What `DeleteEndpoint` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deleted {
    /// The deletion started (the endpoint goes `Deleting`, then is gone).
    Started,
    /// There was no such endpoint (already deleted): nothing to do.
    Absent,
}

/// What one production variant runs (`DescribeEndpointConfig`, then
/// `DescribeModel` of the variant's model): what a standby is compared on
/// with the active before it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedVariant {
    pub variant: String,
    pub model: String,
    /// The model's containers, in order: (image, model data URL).
    pub containers: Vec<(String, Option<String>)>,
    /// `InstanceType`; `None` for a serverless variant or one on pools.
    pub instance_type: Option<String>,
    /// `InstancePools`: (instance type, priority, 1 the highest), as the
    /// endpoint config lists them; empty without pools.
    #[serde(default)]
    pub pools: Vec<(String, i32)>,
}

/// An inference component's status (`InferenceComponentStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    InService,
    Creating,
    Updating,
    Failed,
    Deleting,
    Other(String),
}

impl ComponentStatus {
    /// Whether the component serves in this status: `Updating` keeps
    /// serving on the copies it has while more are placed.
    pub fn serves(&self) -> bool {
        matches!(self, ComponentStatus::InService | ComponentStatus::Updating)
    }

    /// The status as SageMaker names it.
    pub fn as_str(&self) -> &str {
        match self {
            ComponentStatus::InService => "InService",
            ComponentStatus::Creating => "Creating",
            ComponentStatus::Updating => "Updating",
            ComponentStatus::Failed => "Failed",
            ComponentStatus::Deleting => "Deleting",
            ComponentStatus::Other(s) => s,
        }
    }

    /// Parse SageMaker's name.
    pub fn parse(s: &str) -> Self {
        match s {
            "InService" => ComponentStatus::InService,
            "Creating" => ComponentStatus::Creating,
            "Updating" => ComponentStatus::Updating,
            "Failed" => ComponentStatus::Failed,
            "Deleting" => ComponentStatus::Deleting,
            other => ComponentStatus::Other(other.to_string()),
        }
    }
}

/// What an inference component runs (`Specification`): what a standby's
/// component is compared on with the active's. The type readiness judges
/// (`core::standby`), so the adapter's reading is compared as it is.
pub use crate::core::standby::ComponentSpec as ComponentSpecification;

/// An inference component as `DescribeInferenceComponent` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentState {
    /// `InferenceComponentArn`.
    pub arn: String,
    /// `EndpointName`: the endpoint it runs on.
    pub endpoint: String,
    /// `VariantName`: the endpoint's variant it runs on.
    pub variant: Option<String>,
    pub status: ComponentStatus,
    /// `RuntimeConfig.CurrentCopyCount`: copies placed and serving.
    pub current_copies: Option<u32>,
    /// `RuntimeConfig.DesiredCopyCount`: what was last asked for. Differs
    /// from the current count while SageMaker places copies.
    pub desired_copies: Option<u32>,
    pub spec: ComponentSpecification,
    /// `FailureReason`: why the last create or update failed (SageMaker
    /// keeps the last one).
    pub failure_reason: Option<String>,
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
    /// Send one warm-up request to one model on `endpoint`, picked by
    /// `via` (an inference component, a `TargetModel`, a production
    /// variant: config/serving.rs). The default sends the `TargetModel`
    /// only, through [`Endpoints::warm_up`] (fakes that know no
    /// components); the AWS adapter sends each header.
    async fn warm_up_target(
        &self,
        region: &str,
        endpoint: &str,
        via: Option<&crate::config::Via>,
        body: &[u8],
    ) -> WarmUp {
        let target_model = match via {
            Some(crate::config::Via::TargetModel(t)) => Some(t.as_str()),
            _ => None,
        };
        self.warm_up(region, endpoint, target_model, body).await
    }
    /// The endpoint's status, variants and instance counts, or `None` if
    /// it does not exist.
    async fn describe(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointState>, PortError>;
    /// Ask for `instances` on each named variant
    /// (`UpdateEndpointWeightsAndCapacities` with `DesiredInstanceCount`
    /// only: weights are left as they are). The endpoint goes `Updating`
    /// and SageMaker refuses another update until it is `InService` again.
    async fn set_instance_counts(
        &self,
        region: &str,
        endpoint: &str,
        counts: &[(String, u32)],
    ) -> Result<(), PortError>;
    /// The endpoint's tags (`ListTags` on its ARN, every page).
    async fn tags(&self, region: &str, arn: &str) -> Result<Vec<(String, String)>, PortError>;
    /// Delete the endpoint (`DeleteEndpoint`). Its endpoint config and
    /// model stay.
    async fn delete(&self, region: &str, endpoint: &str) -> Result<Deleted, PortError>;
    /// What each production variant of the endpoint runs (its endpoint
    /// config's variants and their models), or `None` if the endpoint does
    /// not exist.
    async fn served(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<Vec<ServedVariant>>, PortError>;
    /// The inference component `component` (names are unique in a region),
    /// or `None` if it does not exist (`DescribeInferenceComponent`).
    async fn describe_component(
        &self,
        region: &str,
        component: &str,
    ) -> Result<Option<ComponentState>, PortError>;
    /// The containers of SageMaker model `model` (`DescribeModel`: its
    /// primary container, then `Containers`, each (image, model data
    /// URL)), or `None` if there is no such model. Readiness reads the
    /// model an inference component runs. The default reads nothing
    /// (fakes without models): unavailable.
    async fn model_containers(
        &self,
        region: &str,
        model: &str,
    ) -> Result<Option<Vec<(String, Option<String>)>>, PortError> {
        Err(PortError::new(
            "SageMaker",
            format!("DescribeModel {model}"),
            region,
            super::ErrorKind::Unavailable,
            "this Endpoints port reads no models",
        ))
    }
    /// The names of every inference component on `endpoint`, whoever
    /// deployed them (`ListInferenceComponents` with `EndpointNameEquals`,
    /// every page). The default knows none (fakes without components).
    async fn components_on(&self, region: &str, endpoint: &str) -> Result<Vec<String>, PortError> {
        let _ = (region, endpoint);
        Ok(Vec::new())
    }
    /// Ask for `copies` copies of the component
    /// (`UpdateInferenceComponentRuntimeConfig`, `DesiredRuntimeConfig.CopyCount`).
    /// The component goes `Updating` while SageMaker places them.
    async fn set_copy_count(
        &self,
        region: &str,
        component: &str,
        copies: u32,
    ) -> Result<(), PortError>;
}
