//! Adapters to AWS: one file per service, each implementing the port the
//! daemon uses (`crate::ports`). The clients are the real SDK clients
//! everywhere; the only thing that differs in the lab is the endpoint URL,
//! and that comes from the configuration's `[endpoints]` table, never from
//! code that knows about a lab.

pub mod capacity;
pub mod clients;
pub mod cloudwatch;
pub mod control_table;
pub mod dynamo;
pub mod errors;
pub mod jobs;
pub mod route53;
pub mod runtime;
pub mod s3;
pub mod sagemaker;
pub mod sfn;
pub mod sigv4;
pub mod sts;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use clients::AwsClients;

use crate::config::Config;
use crate::ports::{ControlStore, Ports, Probes, SystemClock, SystemEntropy};

/// The control-table replica in `region`.
pub fn control_store(cfg: &Config, clients: &AwsClients, region: &str) -> Arc<dyn ControlStore> {
    Arc::new(control_table::ControlTable::new(
        clients.dynamodb(region),
        &cfg.tables.control,
        region,
    ))
}

/// The control side's ports over AWS, for a daemon (or the CLI) in
/// `cfg.region`, with the given data-plane prober.
pub fn ports(cfg: &Config, clients: Arc<AwsClients>, probes: Arc<dyn Probes>) -> Ports {
    let own = cfg.control_region_for(&cfg.region).to_string();
    let replica_regions: Vec<String> = match &cfg.tables.control_region {
        Some(pinned) => vec![pinned.clone()],
        None => cfg.tables.replicas.clone(),
    };
    let mut replicas: BTreeMap<String, Arc<dyn ControlStore>> = replica_regions
        .iter()
        .map(|r| (r.clone(), control_store(cfg, &clients, r)))
        .collect();
    let store = replicas
        .entry(own.clone())
        .or_insert_with(|| control_store(cfg, &clients, &own))
        .clone();
    Ports {
        clock: Arc::new(SystemClock),
        entropy: Arc::new(SystemEntropy::default()),
        store,
        replicas,
        workflows: Arc::new(sfn::AwsWorkflows::new(clients.clone())),
        health_checks: Arc::new(
            route53::AwsHealthChecks::new(clients.route53())
                .with_metrics(clients.cloudwatch(clients::ROUTE53_REGION)),
        ),
        endpoints: Arc::new(sagemaker::AwsEndpoints::new(clients.clone())),
        endpoint_metrics: Arc::new(cloudwatch::AwsEndpointMetrics::new(clients.clone())),
        probes,
        capacity: Arc::new(capacity::AwsCapacity::new(clients)),
    }
}
