//! The [`Capacity`] port over Application Auto Scaling
//! (`DescribeScalableTargets`) and Service Quotas (`ListServiceQuotas`),
//! one client per (service, region), built on first use. Readiness reads
//! them once per round for the standby's own endpoints
//! (docs/readiness.md, "The cost").
//!
//! Application Auto Scaling: namespace `sagemaker`, resource ids
//! `endpoint/<endpoint>/variant/<variant>` (up to 50 per call, as the API
//! takes them), dimension `sagemaker:variant:DesiredInstanceCount`; every
//! page. Service Quotas: every page of SageMaker's applied quotas (service
//! code `sagemaker`, 100 a page), of which those named `<instance type> for
//! endpoint usage` are kept.
//!
//! IAM (readiness's dry run): STS `GetCallerIdentity` names the daemons'
//! own principal (an assumed role's session becomes its role's ARN), and
//! `SimulatePrincipalPolicy` judges every (action, resource) pair for it,
//! every page. IAM is global; the client signs for the daemon's region and
//! the SDK's resolver sends it to the partition's IAM endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::Region;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};

use crate::ports::PortError;
use crate::ports::capacity::{Capacity, Judged, ScalableVariant};

const AAS: &str = "Application Auto Scaling";
const SQ: &str = "Service Quotas";
const IAM: &str = "IAM";
/// What Service Quotas calls SageMaker.
pub const SERVICE_CODE: &str = "sagemaker";
/// The end of an endpoint-usage quota's name (`ml.g5.xlarge for endpoint
/// usage`).
pub const ENDPOINT_USAGE: &str = " for endpoint usage";

/// The resource id of a variant's scalable target.
pub fn resource_id(endpoint: &str, variant: &str) -> String {
    format!("endpoint/{endpoint}/variant/{variant}")
}

/// The port over AWS.
pub struct AwsCapacity {
    clients: Arc<super::AwsClients>,
    autoscaling: Mutex<HashMap<String, aws_sdk_applicationautoscaling::Client>>,
    quotas: Mutex<HashMap<String, aws_sdk_servicequotas::Client>>,
    iam: Mutex<HashMap<String, aws_sdk_iam::Client>>,
}

impl AwsCapacity {
    pub fn new(clients: Arc<super::AwsClients>) -> Self {
        Self {
            clients,
            autoscaling: Mutex::default(),
            quotas: Mutex::default(),
            iam: Mutex::default(),
        }
    }

    fn iam(&self, region: &str) -> aws_sdk_iam::Client {
        let mut m = self.iam.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_iam::config::Builder::from(self.clients.sdk_config())
                    .region(Region::new(region.to_string()))
                    .timeout_config(super::clients::control_plane_timeouts());
                if let Some(url) = &self.clients.endpoints().iam {
                    b = b.endpoint_url(url);
                }
                aws_sdk_iam::Client::from_conf(b.build())
            })
            .clone()
    }

    fn autoscaling(&self, region: &str) -> aws_sdk_applicationautoscaling::Client {
        let mut m = self.autoscaling.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_applicationautoscaling::config::Builder::from(
                    self.clients.sdk_config(),
                )
                .region(Region::new(region.to_string()))
                .timeout_config(super::clients::control_plane_timeouts());
                if let Some(url) = &self.clients.endpoints().application_autoscaling {
                    b = b.endpoint_url(url);
                }
                aws_sdk_applicationautoscaling::Client::from_conf(b.build())
            })
            .clone()
    }

    fn service_quotas(&self, region: &str) -> aws_sdk_servicequotas::Client {
        let mut m = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_servicequotas::config::Builder::from(self.clients.sdk_config())
                    .region(Region::new(region.to_string()))
                    .timeout_config(super::clients::control_plane_timeouts());
                if let Some(url) = &self.clients.endpoints().service_quotas {
                    b = b.endpoint_url(url);
                }
                aws_sdk_servicequotas::Client::from_conf(b.build())
            })
            .clone()
    }
}

/// The instance type of an endpoint-usage quota's name, if it is one.
pub fn endpoint_usage_type(quota_name: &str) -> Option<&str> {
    quota_name
        .strip_suffix(ENDPOINT_USAGE)
        .filter(|t| t.starts_with("ml."))
}

#[async_trait]
impl Capacity for AwsCapacity {
    async fn scalable_variants(
        &self,
        region: &str,
        endpoint: &str,
        variants: &[String],
    ) -> Result<Vec<ScalableVariant>, PortError> {
        let client = self.autoscaling(region);
        let mut out = Vec::new();
        let op = format!("DescribeScalableTargets {endpoint}");
        for chunk in variants.chunks(50) {
            let ids: Vec<String> = chunk.iter().map(|v| resource_id(endpoint, v)).collect();
            let mut pages = client
                .describe_scalable_targets()
                .service_namespace(ServiceNamespace::Sagemaker)
                .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
                .set_resource_ids(Some(ids.clone()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| super::errors::port_error(AAS, op.clone(), region, e))?;
                for t in page.scalable_targets() {
                    let Some(i) = ids.iter().position(|id| id == t.resource_id()) else {
                        continue;
                    };
                    let (min, max) = (t.min_capacity(), t.max_capacity());
                    if min < 0 || max < 0 {
                        return Err(PortError::malformed(
                            AAS,
                            op,
                            region,
                            format!("{}: MinCapacity {min}, MaxCapacity {max}", t.resource_id()),
                        ));
                    }
                    out.push(ScalableVariant {
                        variant: chunk[i].clone(),
                        min: min as u32,
                        max: max as u32,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn endpoint_quotas(&self, region: &str) -> Result<BTreeMap<String, f64>, PortError> {
        let client = self.service_quotas(region);
        let op = "ListServiceQuotas sagemaker";
        let mut out = BTreeMap::new();
        let mut pages = client
            .list_service_quotas()
            .service_code(SERVICE_CODE)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| super::errors::port_error(SQ, op, region, e))?;
            for q in page.quotas() {
                let (Some(name), Some(value)) = (q.quota_name(), q.value()) else {
                    continue;
                };
                if let Some(t) = endpoint_usage_type(name) {
                    out.insert(t.to_string(), value);
                }
            }
        }
        Ok(out)
    }

    async fn own_principal(&self, region: &str) -> Result<String, PortError> {
        use crate::ports::identity::Identity;
        let caller = super::sts::AwsIdentity::new(&self.clients, region)
            .caller_arn()
            .await?;
        crate::core::permissions::principal_of(&caller).ok_or_else(|| {
            PortError::malformed(
                "STS",
                "GetCallerIdentity",
                region,
                format!("{caller} is neither an IAM user, a role nor an assumed role's session"),
            )
        })
    }

    async fn simulate(
        &self,
        region: &str,
        principal: &str,
        actions: &[&str],
        resources: &[String],
    ) -> Result<Vec<Judged>, PortError> {
        let client = self.iam(region);
        let op = format!("SimulatePrincipalPolicy {principal}");
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        // Every page: the simulator pages by evaluation result (MaxItems,
        // 100 by default), and a page may stop inside one action's resources.
        for _ in 0..100 {
            let page = client
                .simulate_principal_policy()
                .policy_source_arn(principal)
                .set_action_names(Some(actions.iter().map(|a| a.to_string()).collect()))
                .set_resource_arns(Some(resources.to_vec()))
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| super::errors::port_error(IAM, op.clone(), region, e))?;
            for r in page.evaluation_results() {
                out.push(Judged {
                    action: r.eval_action_name().to_string(),
                    resource: r.eval_resource_name().unwrap_or("*").to_string(),
                    decision: r.eval_decision().as_str().to_string(),
                });
            }
            match (page.is_truncated(), page.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                (true, None) => {
                    return Err(PortError::malformed(
                        IAM,
                        op,
                        region,
                        "IsTruncated without a Marker",
                    ));
                }
                (false, _) => return Ok(out),
            }
        }
        Err(PortError::malformed(IAM, op, region, "more than 100 pages"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_aws_spells_them() {
        assert_eq!(
            resource_id("prov", "AllTraffic"),
            "endpoint/prov/variant/AllTraffic"
        );
        assert_eq!(
            endpoint_usage_type("ml.g5.xlarge for endpoint usage"),
            Some("ml.g5.xlarge")
        );
        assert_eq!(
            endpoint_usage_type("ml.g5.xlarge for training job usage"),
            None
        );
        assert_eq!(endpoint_usage_type("Number of endpoints"), None);
    }
}
