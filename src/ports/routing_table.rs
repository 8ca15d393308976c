//! The routing table of the seed: batch thresholds per traffic class.
//!
//! Items have `configKey` (hash key), `trafficClass` (S) and
//! `batchThreshold` (N, bytes). The router re-reads it every
//! `router.routing_refresh`; the adapter is `aws::jobs::DynamoJobs` (both
//! are the router's DynamoDB reads).

use std::collections::HashMap;

use async_trait::async_trait;

use super::inference::BoxError;
use super::jobs::TableRef;

/// The routing table could not be read, or holds an item that cannot be a
/// threshold.
#[derive(Debug, thiserror::Error)]
pub enum RoutingTableError {
    #[error("cannot read the routing table {table} in {region}")]
    Read {
        table: String,
        region: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "routing table item for class {class:?}: batchThreshold {value:?} is not a positive whole number of bytes"
    )]
    Malformed { class: String, value: String },
}

/// The seed's routing table.
#[async_trait]
pub trait RoutingTable: Send + Sync + 'static {
    /// Batch thresholds (bytes) by traffic class.
    async fn batch_thresholds(
        &self,
        table: TableRef<'_>,
    ) -> Result<HashMap<String, u64>, RoutingTableError>;
}
