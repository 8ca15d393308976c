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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::Region;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};

use crate::ports::PortError;
use crate::ports::capacity::{Capacity, ScalableVariant};

const AAS: &str = "Application Auto Scaling";
const SQ: &str = "Service Quotas";
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
}

impl AwsCapacity {
    pub fn new(clients: Arc<super::AwsClients>) -> Self {
        Self {
            clients,
            autoscaling: Mutex::default(),
            quotas: Mutex::default(),
        }
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
