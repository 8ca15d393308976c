//! The router's DynamoDB items: batch jobs in the control table (the
//! [`JobStore`] port) and the seed's routing table (the [`RoutingTable`]
//! port), over the real SDK client of the table's region.
//!
//! Job item: `pk = "JOB"`, `sk = <id>`, with `model`, `region`,
//! `endpoint`, `input` (S), `created_at` (N, unix ms), `ttl` (N, unix
//! seconds: DynamoDB's TTL deletes the item 30 days after its creation,
//! and a reader ignores it from then on, since TTL deletion can lag) and,
//! once SageMaker accepted the job, `output` and `failure` (S). An item missing
//! a required attribute is an error ([`JobStoreError::Malformed`]), never
//! read as an empty default.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::AwsClients;
use crate::ports::Clock;
use crate::ports::jobs::{Job, JobStore, JobStoreError, TableRef};
use crate::ports::routing_table::{RoutingTable, RoutingTableError};
use crate::ports::store::{is_live, ttl_for};

/// The control table's partition for jobs.
pub const JOB_PK: &str = "JOB";

/// The [`JobStore`] and [`RoutingTable`] ports over DynamoDB.
pub struct DynamoJobs {
    clients: Arc<AwsClients>,
    /// Wall time, for the items' TTL (DynamoDB deletes expired items late).
    clock: Arc<dyn Clock>,
}

impl DynamoJobs {
    pub fn new(clients: Arc<AwsClients>, clock: Arc<dyn Clock>) -> Self {
        Self { clients, clock }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

/// Whether a job item's `ttl` (if any) has not passed at `now_ms`.
fn live(item: &HashMap<String, AttributeValue>, now_ms: u64) -> bool {
    let ttl = match item.get("ttl") {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    };
    is_live(ttl, now_ms)
}

/// Decode a job item.
pub fn job_from_item(
    id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<Job, JobStoreError> {
    let malformed = |attribute, expected| JobStoreError::Malformed {
        id: id.to_string(),
        attribute,
        expected,
    };
    let required = |k: &'static str| match item.get(k) {
        Some(AttributeValue::S(v)) if !v.is_empty() => Ok(v.clone()),
        _ => Err(malformed(k, "non-empty string")),
    };
    let optional = |k: &'static str| match item.get(k) {
        None => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(_) => Err(malformed(k, "string")),
    };
    let created_at = match item.get("created_at") {
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| malformed("created_at", "whole number"))?,
        _ => return Err(malformed("created_at", "number")),
    };
    Ok(Job {
        id: id.to_string(),
        model: required("model")?,
        region: required("region")?,
        endpoint: required("endpoint")?,
        input: required("input")?,
        output: optional("output")?,
        failure: optional("failure")?,
        created_at,
    })
}

#[async_trait]
impl JobStore for DynamoJobs {
    async fn put(&self, table: TableRef<'_>, job: &Job) -> Result<(), JobStoreError> {
        let mut req = self
            .clients
            .dynamodb(table.region)
            .put_item()
            .table_name(table.name)
            .item("pk", s(JOB_PK))
            .item("sk", s(&job.id))
            .item("model", s(&job.model))
            .item("region", s(&job.region))
            .item("endpoint", s(&job.endpoint))
            .item("input", s(&job.input))
            .item("created_at", AttributeValue::N(job.created_at.to_string()))
            .item(
                "ttl",
                AttributeValue::N(ttl_for(job.created_at).to_string()),
            );
        if let Some(o) = &job.output {
            req = req.item("output", s(o));
        }
        if let Some(f) = &job.failure {
            req = req.item("failure", s(f));
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| JobStoreError::Write {
                id: job.id.clone(),
                table: table.name.to_string(),
                region: table.region.to_string(),
                source: Box::new(e),
            })
    }

    async fn get(&self, table: TableRef<'_>, id: &str) -> Result<Option<Job>, JobStoreError> {
        let out = self
            .clients
            .dynamodb(table.region)
            .get_item()
            .table_name(table.name)
            .key("pk", s(JOB_PK))
            .key("sk", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| JobStoreError::Read {
                id: id.to_string(),
                table: table.name.to_string(),
                region: table.region.to_string(),
                source: Box::new(e),
            })?;
        out.item
            .filter(|item| live(item, self.clock.now_ms()))
            .map(|item| job_from_item(id, &item))
            .transpose()
    }
}

#[async_trait]
impl RoutingTable for DynamoJobs {
    /// Scan the table: items with `trafficClass` (S) and `batchThreshold`
    /// (N). Items without both are other settings and are skipped; a
    /// threshold that is not a positive whole number is an error.
    async fn batch_thresholds(
        &self,
        table: TableRef<'_>,
    ) -> Result<HashMap<String, u64>, RoutingTableError> {
        let client = self.clients.dynamodb(table.region);
        let mut out = HashMap::new();
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(table.name)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| RoutingTableError::Read {
                    table: table.name.to_string(),
                    region: table.region.to_string(),
                    source: Box::new(e),
                })?;
            for item in page.items() {
                let (Some(AttributeValue::S(class)), Some(threshold)) =
                    (item.get("trafficClass"), item.get("batchThreshold"))
                else {
                    continue;
                };
                let value = match threshold {
                    AttributeValue::N(n) => n.clone(),
                    other => format!("{other:?}"),
                };
                match value.parse::<u64>() {
                    Ok(t) if t > 0 => {
                        out.insert(class.clone(), t);
                    }
                    _ => {
                        return Err(RoutingTableError::Malformed {
                            class: class.clone(),
                            value,
                        });
                    }
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_past_its_ttl_is_not_read() {
        let created = 1_700_000_000_000u64;
        let ttl = ttl_for(created);
        let item: HashMap<String, AttributeValue> =
            [("ttl".to_string(), AttributeValue::N(ttl.to_string()))].into();
        assert!(live(&item, created));
        assert!(live(&item, ttl * 1000 - 1));
        assert!(!live(&item, ttl * 1000));
        assert!(live(&HashMap::new(), u64::MAX), "an item without ttl stays");
    }

    #[test]
    fn a_job_item_decodes_or_says_what_is_wrong() {
        let mut item: HashMap<String, AttributeValue> = [
            ("model", "default"),
            ("region", "us-east-1"),
            ("endpoint", "lab-async"),
            ("input", "s3://b/k"),
            ("output", "s3://b/o"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), s(v)))
        .collect();
        item.insert("created_at".into(), AttributeValue::N("17".into()));
        let job = job_from_item("ab", &item).unwrap();
        assert_eq!(job.region, "us-east-1");
        assert_eq!(job.output.as_deref(), Some("s3://b/o"));
        assert_eq!(job.failure, None);
        assert_eq!(job.created_at, 17);

        item.remove("region");
        let e = job_from_item("ab", &item).unwrap_err();
        assert!(e.to_string().contains("\"region\""), "{e}");
        item.insert("region".into(), s("us-east-1"));
        item.insert("created_at".into(), AttributeValue::S("17".into()));
        assert!(matches!(
            job_from_item("ab", &item),
            Err(JobStoreError::Malformed {
                attribute: "created_at",
                ..
            })
        ));
    }
}
