//! The lenient shape of the files: every value optional, durations and
//! addresses as strings, so validation can report every problem at once.

use serde::Deserialize;

use super::cost::RawCost;
use super::router::{RawModel, RawRouter};

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawConfig {
    pub(super) region: Option<String>,
    pub(super) instance: Option<String>,
    #[serde(default)]
    pub(super) regions: Vec<RawRegion>,
    #[serde(default)]
    pub(super) tables: RawTables,
    #[serde(default)]
    pub(super) timings: RawTimings,
    #[serde(default)]
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) health: RawHealth,
    #[serde(default)]
    pub(super) router: RawRouter,
    #[serde(default)]
    pub(super) models: Vec<RawModel>,
    #[serde(default)]
    pub(super) listen: RawListen,
    #[serde(default)]
    pub(super) endpoints: RawEndpoints,
    #[serde(default)]
    pub(super) cost: RawCost,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawRegion {
    pub(super) name: Option<String>,
    pub(super) priority: Option<i64>,
    #[serde(default)]
    pub(super) health_check_ids: Vec<String>,
    #[serde(default)]
    pub(super) probe_urls: Vec<String>,
    pub(super) probe_match: Option<String>,
    pub(super) state_machine_arn: Option<String>,
    #[serde(default)]
    pub(super) sagemaker: RawSageMaker,
    pub(super) control_replica: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawSageMaker {
    pub(super) serverless: Option<String>,
    pub(super) provisioned: Option<String>,
    pub(super) batch: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawTables {
    pub(super) control: Option<String>,
    pub(super) consistency: Option<String>,
    pub(super) routing: Option<String>,
    pub(super) control_region: Option<String>,
    pub(super) replicas: Option<Vec<String>>,
    pub(super) witness: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawTimings {
    pub(super) poll_interval: Option<String>,
    pub(super) failure_threshold: Option<i64>,
    pub(super) recovery_threshold: Option<i64>,
    pub(super) vote_freshness: Option<String>,
    pub(super) lease: Option<String>,
    pub(super) min_failover_interval: Option<String>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) prepare_budget: Option<String>,
    pub(super) start_timeout: Option<String>,
    pub(super) stuck_failover: Option<String>,
    pub(super) abort_retry: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawPolicy {
    pub(super) auto_failback: Option<bool>,
    pub(super) wait_out_lease: Option<bool>,
    pub(super) approval: Option<String>,
    #[serde(default)]
    pub(super) approval_by_tier: std::collections::BTreeMap<String, String>,
    pub(super) approval_timeout: Option<String>,
    pub(super) on_approval_timeout: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawHealth {
    pub(super) route53_calls_per_second: Option<f64>,
    pub(super) route53_source: Option<String>,
    pub(super) route53_metric_period: Option<String>,
    pub(super) probe_connect_timeout: Option<String>,
    pub(super) probe_response_timeout: Option<String>,
    pub(super) warmup_payload: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawListen {
    pub(super) router: Option<String>,
    pub(super) admin: Option<String>,
    pub(super) admin_token_file: Option<String>,
    pub(super) router_tls: Option<RawTls>,
    pub(super) admin_tls: Option<RawTls>,
}

/// `listen.router_tls` / `listen.admin_tls` (config/tls.rs).
#[derive(Debug, Deserialize, Default)]
pub(super) struct RawTls {
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
    pub(super) client_ca: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawEndpoints {
    pub(super) dynamodb: Option<String>,
    pub(super) route53: Option<String>,
    pub(super) sfn: Option<String>,
    pub(super) sagemaker_runtime: Option<String>,
    pub(super) sagemaker: Option<String>,
    pub(super) s3: Option<String>,
    pub(super) cloudwatch: Option<String>,
    pub(super) application_autoscaling: Option<String>,
    pub(super) service_quotas: Option<String>,
    pub(super) iam: Option<String>,
}
