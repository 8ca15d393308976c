//! SageMaker control-plane adapter: the [`Endpoints`](crate::ports::Endpoints)
//! port (DescribeEndpoint for the prepare step and the cost task, a warm-up
//! invocation, `UpdateEndpointWeightsAndCapacities`, `ListTags`,
//! `DeleteEndpoint`, `DescribeInferenceComponent`, `ListInferenceComponents`,
//! `UpdateInferenceComponentRuntimeConfig`), and idempotent creation of a
//! model, endpoint config and endpoint for each of the three inference paths,
//! and of an inference component (the lab's provisioning and first deploys).

use aws_sdk_sagemaker::Client;
use aws_sdk_sagemaker::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemaker::types::{
    AsyncInferenceConfig, AsyncInferenceOutputConfig, ContainerDefinition, EndpointStatus,
    ProductionVariant, ProductionVariantInstanceType, ProductionVariantServerlessConfig,
};

/// The three kinds of endpoint the router uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// Serverless inference (scales to zero; cold starts).
    Serverless,
    /// Real-time on provisioned instances.
    Provisioned,
    /// Asynchronous inference: results land in S3 under `output`.
    Async,
}

/// What to create for one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointSpec<'a> {
    pub endpoint: &'a str,
    pub kind: EndpointKind,
    /// Container image of the model.
    pub image: &'a str,
    /// Role SageMaker assumes to run the model.
    pub execution_role_arn: &'a str,
    /// `s3://bucket/prefix` for asynchronous results (Async only).
    pub async_output: Option<&'a str>,
}

/// Whether an endpoint serves traffic in this status. `Updating` and
/// `SystemUpdating` keep serving on the old variant while they work.
pub fn serves(status: &EndpointStatus) -> bool {
    matches!(
        status,
        EndpointStatus::InService | EndpointStatus::Updating | EndpointStatus::SystemUpdating
    )
}

/// SageMaker answers a missing resource with a `ValidationException`
/// ("Could not find ..."), not a typed not-found error.
fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.as_service_error().is_some_and(|s| {
        s.code() == Some("ValidationException")
            && s.message().is_some_and(|m| m.contains("Could not find"))
    })
}

/// Creating or describing an endpoint for provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointSetupError {
    /// A SageMaker call failed (the SDK's error, with its chain, is the source).
    #[error("SageMaker {op} {endpoint}")]
    Call {
        op: &'static str,
        endpoint: String,
        #[source]
        source: crate::ports::BoxError,
    },
    #[error("SageMaker CreateEndpointConfig {endpoint}: an async endpoint needs an S3 output path")]
    NoAsyncOutput { endpoint: String },
    #[error("SageMaker CreateEndpoint {endpoint}: the endpoint is still missing after creation")]
    MissingAfterCreate { endpoint: String },
    #[error(
        "SageMaker CreateInferenceComponent {component}: the component is still missing after creation"
    )]
    ComponentMissingAfterCreate { component: String },
}

impl EndpointSetupError {
    fn call<E>(op: &'static str, endpoint: &str, e: SdkError<E>) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self::Call {
            op,
            endpoint: endpoint.to_string(),
            source: Box::new(e),
        }
    }
}

/// The endpoint's status, or `None` if it does not exist.
pub async fn endpoint_status(
    client: &Client,
    endpoint: &str,
) -> Result<Option<EndpointStatus>, EndpointSetupError> {
    match client
        .describe_endpoint()
        .endpoint_name(endpoint)
        .send()
        .await
    {
        Ok(d) => Ok(d.endpoint_status().cloned()),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(EndpointSetupError::call("DescribeEndpoint", endpoint, e)),
    }
}

/// Create the model, endpoint config and endpoint of `spec` unless they
/// exist (each is named after the endpoint). Returns the endpoint's status.
pub async fn ensure_endpoint(
    client: &Client,
    spec: &EndpointSpec<'_>,
) -> Result<EndpointStatus, EndpointSetupError> {
    let name = spec.endpoint;
    use EndpointSetupError as E;

    match client.describe_model().model_name(name).send().await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            client
                .create_model()
                .model_name(name)
                .execution_role_arn(spec.execution_role_arn)
                .primary_container(ContainerDefinition::builder().image(spec.image).build())
                .send()
                .await
                .map_err(|e| E::call("CreateModel", name, e))?;
        }
        Err(e) => return Err(E::call("DescribeModel", name, e)),
    }

    match client
        .describe_endpoint_config()
        .endpoint_config_name(name)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            let variant = ProductionVariant::builder()
                .variant_name("AllTraffic")
                .model_name(name);
            let variant = match spec.kind {
                EndpointKind::Serverless => variant.serverless_config(
                    ProductionVariantServerlessConfig::builder()
                        .memory_size_in_mb(2048)
                        .max_concurrency(20)
                        .build(),
                ),
                EndpointKind::Provisioned | EndpointKind::Async => variant
                    .instance_type(ProductionVariantInstanceType::MlM5Large)
                    .initial_instance_count(1),
            };
            let mut req = client
                .create_endpoint_config()
                .endpoint_config_name(name)
                .production_variants(variant.build());
            if spec.kind == EndpointKind::Async {
                let output =
                    spec.async_output
                        .ok_or_else(|| EndpointSetupError::NoAsyncOutput {
                            endpoint: name.to_string(),
                        })?;
                req = req.async_inference_config(
                    AsyncInferenceConfig::builder()
                        .output_config(
                            AsyncInferenceOutputConfig::builder()
                                .s3_output_path(output)
                                .build(),
                        )
                        .build(),
                );
            }
            req.send()
                .await
                .map_err(|e| E::call("CreateEndpointConfig", name, e))?;
        }
        Err(e) => return Err(E::call("DescribeEndpointConfig", name, e)),
    }

    if let Some(status) = endpoint_status(client, name).await? {
        return Ok(status);
    }
    client
        .create_endpoint()
        .endpoint_name(name)
        .endpoint_config_name(name)
        .send()
        .await
        .map_err(|e| E::call("CreateEndpoint", name, e))?;
    endpoint_status(client, name)
        .await?
        .ok_or_else(|| EndpointSetupError::MissingAfterCreate {
            endpoint: name.to_string(),
        })
}

/// What to create for one inference component (provisioning).
#[derive(Debug, Clone)]
pub struct ComponentSpec<'a> {
    pub component: &'a str,
    /// The endpoint it runs on (created first, with `ensure_endpoint`).
    pub endpoint: &'a str,
    /// The endpoint's production variant.
    pub variant: &'a str,
    /// Container image of the component's model.
    pub image: &'a str,
    /// What each copy reserves on an instance.
    pub min_memory_mb: u32,
    /// Copies to start with.
    pub copies: u32,
}

/// Create the inference component of `spec` unless it exists (its own
/// container, no SageMaker model). Returns its status.
pub async fn ensure_inference_component(
    client: &Client,
    spec: &ComponentSpec<'_>,
) -> Result<aws_sdk_sagemaker::types::InferenceComponentStatus, EndpointSetupError> {
    use EndpointSetupError as E;
    use aws_sdk_sagemaker::types::{
        InferenceComponentComputeResourceRequirements, InferenceComponentContainerSpecification,
        InferenceComponentRuntimeConfig, InferenceComponentSpecification, InferenceComponentStatus,
    };
    let name = spec.component;
    let describe = || async {
        match client
            .describe_inference_component()
            .inference_component_name(name)
            .send()
            .await
        {
            Ok(d) => Ok(Some(
                d.inference_component_status()
                    .cloned()
                    .unwrap_or(InferenceComponentStatus::Creating),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(E::call("DescribeInferenceComponent", name, e)),
        }
    };
    if let Some(status) = describe().await? {
        return Ok(status);
    }
    let copies = i32::try_from(spec.copies).unwrap_or(1);
    let memory = i32::try_from(spec.min_memory_mb).unwrap_or(1024);
    client
        .create_inference_component()
        .inference_component_name(name)
        .endpoint_name(spec.endpoint)
        .variant_name(spec.variant)
        .specification(
            InferenceComponentSpecification::builder()
                .container(
                    InferenceComponentContainerSpecification::builder()
                        .image(spec.image)
                        .build(),
                )
                .compute_resource_requirements(
                    InferenceComponentComputeResourceRequirements::builder()
                        .number_of_cpu_cores_required(1.0)
                        .min_memory_required_in_mb(memory)
                        .build(),
                )
                .build(),
        )
        .runtime_config(
            InferenceComponentRuntimeConfig::builder()
                .copy_count(copies)
                .build(),
        )
        .send()
        .await
        .map_err(|e| E::call("CreateInferenceComponent", name, e))?;
    describe()
        .await?
        .ok_or_else(|| EndpointSetupError::ComponentMissingAfterCreate {
            component: name.to_string(),
        })
}

/// A variant's instance pools as `DescribeEndpoint` reports them (empty
/// without pools); a pool without a type is left out, one without a count
/// counts none.
fn pools_of(
    v: &aws_sdk_sagemaker::types::ProductionVariantSummary,
) -> Vec<crate::core::pools::PoolCount> {
    v.instance_pools()
        .iter()
        .filter_map(|p| {
            Some(crate::core::pools::PoolCount {
                instance_type: p.instance_type()?.as_str().to_string(),
                current: p
                    .current_instance_count()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
            })
        })
        .collect()
}

/// The [`Endpoints`](crate::ports::Endpoints) port over SageMaker's control
/// plane, a client per region.
pub struct AwsEndpoints {
    clients: std::sync::Arc<super::AwsClients>,
}

impl AwsEndpoints {
    pub fn new(clients: std::sync::Arc<super::AwsClients>) -> Self {
        Self { clients }
    }
}

/// `DescribeModel`: the model's containers in order (primary container,
/// then `Containers`), each (image, model data URL); `None` if there is no
/// such model.
async fn model_containers(
    sm: &Client,
    region: &str,
    model: &str,
) -> Result<Option<Vec<(String, Option<String>)>>, crate::ports::PortError> {
    let m = match sm.describe_model().model_name(model).send().await {
        Ok(m) => m,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => {
            return Err(super::errors::port_error(
                "SageMaker",
                format!("DescribeModel {model}"),
                region,
                e,
            ));
        }
    };
    Ok(Some(
        m.primary_container()
            .into_iter()
            .chain(m.containers())
            .map(|c| {
                (
                    c.image().unwrap_or_default().to_string(),
                    c.model_data_url().map(str::to_string),
                )
            })
            .collect(),
    ))
}

#[async_trait::async_trait]
impl crate::ports::Endpoints for AwsEndpoints {
    async fn served(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<Vec<crate::ports::endpoints::ServedVariant>>, crate::ports::PortError> {
        use crate::ports::endpoints::ServedVariant;
        let sm = self.clients.sagemaker(region);
        let d = match sm.describe_endpoint().endpoint_name(endpoint).send().await {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(super::errors::port_error(
                    "SageMaker",
                    format!("DescribeEndpoint {endpoint}"),
                    region,
                    e,
                ));
            }
        };
        let Some(config) = d.endpoint_config_name() else {
            return Err(crate::ports::PortError::malformed(
                "SageMaker",
                format!("DescribeEndpoint {endpoint}"),
                region,
                "no EndpointConfigName",
            ));
        };
        let c = sm
            .describe_endpoint_config()
            .endpoint_config_name(config)
            .send()
            .await
            .map_err(|e| {
                super::errors::port_error(
                    "SageMaker",
                    format!("DescribeEndpointConfig {config}"),
                    region,
                    e,
                )
            })?;
        let mut served = Vec::new();
        for v in c.production_variants() {
            let model = v.model_name().unwrap_or_default().to_string();
            // An inference-component endpoint names no model on its
            // variants: nothing to compare here.
            let containers = if model.is_empty() {
                Vec::new()
            } else {
                // A variant's model that is gone is no model at all.
                model_containers(&sm, region, &model)
                    .await?
                    .unwrap_or_default()
            };
            served.push(ServedVariant {
                variant: v.variant_name().unwrap_or_default().to_string(),
                model,
                containers,
                instance_type: v.instance_type().map(|t| t.as_str().to_string()),
                pools: v
                    .instance_pools()
                    .iter()
                    .filter_map(|p| Some((p.instance_type()?.as_str().to_string(), p.priority()?)))
                    .collect(),
            });
        }
        Ok(Some(served))
    }

    async fn model_containers(
        &self,
        region: &str,
        model: &str,
    ) -> Result<Option<Vec<(String, Option<String>)>>, crate::ports::PortError> {
        model_containers(&self.clients.sagemaker(region), region, model).await
    }

    async fn describe_component(
        &self,
        region: &str,
        component: &str,
    ) -> Result<Option<crate::ports::endpoints::ComponentState>, crate::ports::PortError> {
        use crate::ports::endpoints::{ComponentSpecification, ComponentState, ComponentStatus};
        let op = || format!("DescribeInferenceComponent {component}");
        let d = match self
            .clients
            .sagemaker(region)
            .describe_inference_component()
            .inference_component_name(component)
            .send()
            .await
        {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(super::errors::port_error("SageMaker", op(), region, e)),
        };
        let malformed =
            |what: &str| crate::ports::PortError::malformed("SageMaker", op(), region, what);
        let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
        let spec = d.specification();
        let container = spec.and_then(|s| s.container());
        let compute = spec.and_then(|s| s.compute_resource_requirements());
        Ok(Some(ComponentState {
            arn: d
                .inference_component_arn()
                .ok_or_else(|| malformed("no InferenceComponentArn"))?
                .to_string(),
            endpoint: d
                .endpoint_name()
                .ok_or_else(|| malformed("no EndpointName"))?
                .to_string(),
            variant: d.variant_name().map(str::to_string),
            status: d
                .inference_component_status()
                .map(|s| ComponentStatus::parse(s.as_str()))
                .ok_or_else(|| malformed("no InferenceComponentStatus"))?,
            current_copies: count(d.runtime_config().and_then(|r| r.current_copy_count())),
            desired_copies: count(d.runtime_config().and_then(|r| r.desired_copy_count())),
            spec: ComponentSpecification {
                model: spec.and_then(|s| s.model_name()).map(str::to_string),
                // Readiness reads the model when it compares (DescribeModel).
                model_read: None,
                image: container
                    .and_then(|c| c.deployed_image())
                    .and_then(|i| i.specified_image().or(i.resolved_image()))
                    .map(str::to_string),
                artifact_url: container.and_then(|c| c.artifact_url()).map(str::to_string),
                cpu_cores: compute.and_then(|c| c.number_of_cpu_cores_required()),
                accelerators: compute.and_then(|c| c.number_of_accelerator_devices_required()),
                min_memory_mb: count(compute.and_then(|c| c.min_memory_required_in_mb())),
                max_memory_mb: count(compute.and_then(|c| c.max_memory_required_in_mb())),
            },
            failure_reason: d.failure_reason().map(str::to_string),
        }))
    }

    async fn components_on(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Vec<String>, crate::ports::PortError> {
        let op = || format!("ListInferenceComponents EndpointNameEquals={endpoint}");
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        // A page is at most 100 names; a cap on pages keeps a service that
        // keeps answering a token from holding the round.
        for _ in 0..100 {
            let out = self
                .clients
                .sagemaker(region)
                .list_inference_components()
                .endpoint_name_equals(endpoint)
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| super::errors::port_error("SageMaker", op(), region, e))?;
            for c in out.inference_components() {
                // An empty name would count every component's metric.
                match c.inference_component_name() {
                    Some(n) if !n.is_empty() => names.push(n.to_string()),
                    _ => {
                        return Err(crate::ports::PortError::malformed(
                            "SageMaker",
                            op(),
                            region,
                            "a component without InferenceComponentName",
                        ));
                    }
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(names),
            }
        }
        Err(crate::ports::PortError::malformed(
            "SageMaker",
            op(),
            region,
            "more than 100 pages",
        ))
    }

    async fn set_copy_count(
        &self,
        region: &str,
        component: &str,
        copies: u32,
    ) -> Result<(), crate::ports::PortError> {
        use aws_sdk_sagemaker::types::InferenceComponentRuntimeConfig;
        let op = format!("UpdateInferenceComponentRuntimeConfig {component} (CopyCount={copies})");
        let n = i32::try_from(copies).map_err(|_| {
            crate::ports::PortError::new(
                "SageMaker",
                op.clone(),
                region,
                crate::ports::ErrorKind::Validation,
                format!("{copies} copies is out of range"),
            )
        })?;
        self.clients
            .sagemaker(region)
            .update_inference_component_runtime_config()
            .inference_component_name(component)
            .desired_runtime_config(
                InferenceComponentRuntimeConfig::builder()
                    .copy_count(n)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| super::errors::port_error("SageMaker", op, region, e))
    }

    async fn status(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<crate::ports::endpoints::EndpointStatus>, crate::ports::PortError> {
        match self
            .clients
            .sagemaker(region)
            .describe_endpoint()
            .endpoint_name(endpoint)
            .send()
            .await
        {
            Ok(d) => Ok(d
                .endpoint_status()
                .map(|s| crate::ports::endpoints::EndpointStatus::parse(s.as_str()))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(super::errors::port_error(
                "SageMaker",
                format!("DescribeEndpoint {endpoint}"),
                region,
                e,
            )),
        }
    }

    async fn warm_up(
        &self,
        region: &str,
        endpoint: &str,
        target_model: Option<&str>,
        body: &[u8],
    ) -> crate::ports::endpoints::WarmUp {
        let via = target_model.map(|t| crate::config::Via::TargetModel(t.to_string()));
        self.warm_up_target(region, endpoint, via.as_ref(), body)
            .await
    }

    async fn warm_up_target(
        &self,
        region: &str,
        endpoint: &str,
        via: Option<&crate::config::Via>,
        body: &[u8],
    ) -> crate::ports::endpoints::WarmUp {
        use crate::config::Via;
        use crate::ports::ErrorKind;
        use crate::ports::endpoints::WarmUp;
        let pick = |want: fn(&Via) -> Option<&String>| via.and_then(want).cloned();
        let r = self
            .clients
            .sagemaker_runtime(region)
            .invoke_endpoint()
            .endpoint_name(endpoint)
            .set_target_model(pick(|v| match v {
                Via::TargetModel(t) => Some(t),
                _ => None,
            }))
            .set_target_variant(pick(|v| match v {
                Via::TargetVariant(t) => Some(t),
                _ => None,
            }))
            .set_inference_component_name(pick(|v| match v {
                Via::InferenceComponent(t) => Some(t),
                _ => None,
            }))
            .content_type("application/json")
            .body(aws_sdk_sagemakerruntime::primitives::Blob::new(
                body.to_vec(),
            ))
            .send()
            .await;
        let e = match r {
            Ok(_) => {
                return WarmUp::Answered {
                    detail: "200".into(),
                };
            }
            Err(e) => e,
        };
        let detail = aws_sdk_sagemakerruntime::error::DisplayErrorContext(&e).to_string();
        let code = e
            .as_service_error()
            .and_then(aws_sdk_sagemakerruntime::error::ProvideErrorMetadata::code)
            .map(String::from);
        let message = e
            .as_service_error()
            .and_then(aws_sdk_sagemakerruntime::error::ProvideErrorMetadata::message)
            .unwrap_or_default()
            .to_ascii_lowercase();
        match code.as_deref() {
            // The container answered: the endpoint serves, whatever it
            // thinks of the warm-up body.
            Some("ModelError") => WarmUp::Answered { detail },
            // "Endpoint ... not found" is also a ValidationError.
            Some("ValidationError") if message.contains("not found") => WarmUp::Refused { detail },
            Some("ValidationError") => WarmUp::Answered { detail },
            Some("ModelNotReadyException") => WarmUp::NotReady {
                kind: ErrorKind::Unavailable,
                detail,
            },
            _ => match super::errors::classify(&e) {
                kind @ (ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Transport) => {
                    WarmUp::NotReady { kind, detail }
                }
                _ => WarmUp::Refused { detail },
            },
        }
    }

    async fn describe(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<crate::ports::endpoints::EndpointState>, crate::ports::PortError> {
        use crate::ports::endpoints::{EndpointState, VariantState};
        let op = || format!("DescribeEndpoint {endpoint}");
        let d = match self
            .clients
            .sagemaker(region)
            .describe_endpoint()
            .endpoint_name(endpoint)
            .send()
            .await
        {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(super::errors::port_error("SageMaker", op(), region, e)),
        };
        let malformed =
            |what: &str| crate::ports::PortError::malformed("SageMaker", op(), region, what);
        let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
        Ok(Some(EndpointState {
            arn: d
                .endpoint_arn()
                .ok_or_else(|| malformed("no EndpointArn"))?
                .to_string(),
            config: d.endpoint_config_name().unwrap_or_default().to_string(),
            failure_reason: d.failure_reason().map(str::to_string),
            status: d
                .endpoint_status()
                .map(|s| crate::ports::endpoints::EndpointStatus::parse(s.as_str()))
                .ok_or_else(|| malformed("no EndpointStatus"))?,
            variants: d
                .production_variants()
                .iter()
                .map(|v| {
                    Ok(VariantState {
                        variant: v
                            .variant_name()
                            .ok_or_else(|| malformed("a production variant without a VariantName"))?
                            .to_string(),
                        current_instances: count(v.current_instance_count()),
                        desired_instances: count(v.desired_instance_count()),
                        serverless: v.current_serverless_config().is_some()
                            || v.desired_serverless_config().is_some(),
                        pools: pools_of(v),
                    })
                })
                .collect::<Result<_, crate::ports::PortError>>()?,
        }))
    }

    async fn set_instance_counts(
        &self,
        region: &str,
        endpoint: &str,
        counts: &[(String, u32)],
    ) -> Result<(), crate::ports::PortError> {
        use aws_sdk_sagemaker::types::DesiredWeightAndCapacity;
        let wanted: Vec<String> = counts.iter().map(|(v, n)| format!("{v}={n}")).collect();
        let op = format!(
            "UpdateEndpointWeightsAndCapacities {endpoint} ({})",
            wanted.join(", ")
        );
        let mut req = self
            .clients
            .sagemaker(region)
            .update_endpoint_weights_and_capacities()
            .endpoint_name(endpoint);
        for (variant, n) in counts {
            let n = i32::try_from(*n).map_err(|_| {
                crate::ports::PortError::new(
                    "SageMaker",
                    op.clone(),
                    region,
                    crate::ports::ErrorKind::Validation,
                    format!("{n} instances is out of range"),
                )
            })?;
            req = req.desired_weights_and_capacities(
                DesiredWeightAndCapacity::builder()
                    .variant_name(variant)
                    .desired_instance_count(n)
                    .build(),
            );
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| super::errors::port_error("SageMaker", op, region, e))
    }

    async fn tags(
        &self,
        region: &str,
        arn: &str,
    ) -> Result<Vec<(String, String)>, crate::ports::PortError> {
        let mut pages = self
            .clients
            .sagemaker(region)
            .list_tags()
            .resource_arn(arn)
            .into_paginator()
            .send();
        let mut tags = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                super::errors::port_error("SageMaker", format!("ListTags {arn}"), region, e)
            })?;
            tags.extend(page.tags().iter().filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            }));
        }
        Ok(tags)
    }

    async fn delete(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<crate::ports::endpoints::Deleted, crate::ports::PortError> {
        use crate::ports::endpoints::Deleted;
        match self
            .clients
            .sagemaker(region)
            .delete_endpoint()
            .endpoint_name(endpoint)
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Started),
            Err(e) if is_not_found(&e) => Ok(Deleted::Absent),
            Err(e) => Err(super::errors::port_error(
                "SageMaker",
                format!("DeleteEndpoint {endpoint}"),
                region,
                e,
            )),
        }
    }
}
