//! Ports: the narrow traits through which the daemon reaches everything
//! outside itself (AWS and the clock).
//!
//! The reconcile loop, token workers, executor, CLI and router take these
//! traits, never SDK clients. `src/aws/` implements them over the real SDK
//! clients (the only implementation the binary uses); the deterministic
//! simulation (`tests/sim/`) implements them with fakes that fail the way
//! AWS documents, on a paused tokio clock. `src/core/` stays pure and knows
//! none of this.
//!
//! Conventions:
//! - one file per port, named for what it is to the daemon (the control
//!   store, workflows, health checks, inference, endpoints, blobs), not for
//!   the AWS service behind it;
//! - methods are `async` through `async_trait` so ports can be held as
//!   `Arc<dyn Port>`: one boxed future per call, negligible next to a
//!   network round trip;
//! - errors carry the failure *kind* the caller decides on ([`ErrorKind`]:
//!   throttled, conflict, not found, unavailable...) and keep their source
//!   for the log; adapters never flatten a source into a string;
//! - monotonic time is `tokio::time::Instant` (the simulation pauses it);
//!   wall time comes only from [`Clock`], randomness only from [`Entropy`].

pub mod blobs;
pub mod capacity;
pub mod clock;
pub mod endpoint_metrics;
pub mod endpoints;
pub mod health_checks;
pub mod identity;
pub mod inference;
pub mod jobs;
pub mod probes;
pub mod routing_table;
pub mod store;
pub mod traffic;
pub mod workflows;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use clock::{Clock, Entropy, SystemClock, SystemEntropy};
pub use endpoint_metrics::EndpointMetrics;
pub use endpoints::Endpoints;
pub use health_checks::HealthChecks;
pub use probes::Probes;
pub use store::ControlStore;
pub use traffic::InvocationCounts;
pub use workflows::Workflows;

/// What kind of failure a call met: what callers decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The service asked us to slow down.
    Throttled,
    /// A condition failed or a concurrent write won (DynamoDB
    /// `ConditionalCheckFailedException`, MRSC
    /// `ReplicatedWriteConflictException`, `TransactionConflictException`).
    Conflict,
    /// The thing named does not exist.
    NotFound,
    /// Credentials or permissions.
    AccessDenied,
    /// The request itself is wrong.
    Validation,
    /// The service answered with a server-side failure (5xx).
    Unavailable,
    /// No usable answer: connect failure, reset, timeout.
    Transport,
    /// The service answered, but what it returned cannot be decoded (an
    /// item missing a required attribute, an unknown state).
    Malformed,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Validation => "validation",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Transport => "transport",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Other => "other",
        }
    }

    /// Worth retrying later without changing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Transport
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A call through a control-plane port failed: which service, which
/// operation, where, what kind of failure, and the source.
#[derive(Debug, thiserror::Error)]
#[error("{service} {op} in {region}: {kind}")]
pub struct PortError {
    /// `DynamoDB`, `Step Functions`, `Route 53`, `SageMaker`, ...
    pub service: &'static str,
    /// The operation, with what it was for: `UpdateItem CONTROL (claim)`.
    pub op: String,
    /// The region the call went to (a replica, an issuing region...).
    pub region: String,
    pub kind: ErrorKind,
    #[source]
    pub source: Option<BoxError>,
}

impl PortError {
    /// An error with a source.
    pub fn new(
        service: &'static str,
        op: impl Into<String>,
        region: impl Into<String>,
        kind: ErrorKind,
        source: impl Into<BoxError>,
    ) -> Self {
        Self {
            service,
            op: op.into(),
            region: region.into(),
            kind,
            source: Some(source.into()),
        }
    }

    /// An item or answer that cannot be decoded.
    pub fn malformed(
        service: &'static str,
        op: impl Into<String>,
        region: impl Into<String>,
        what: impl Into<String>,
    ) -> Self {
        Self::new(service, op, region, ErrorKind::Malformed, what.into())
    }
}

/// Everything the control side of a daemon reaches outside itself. Cloned
/// freely (every field is an `Arc`).
#[derive(Clone)]
pub struct Ports {
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// The control-table replica this daemon uses.
    pub store: Arc<dyn ControlStore>,
    /// Every replica by region (eventual mode confirms the lease on a
    /// majority of them; strong mode has one record everywhere).
    pub replicas: BTreeMap<String, Arc<dyn ControlStore>>,
    pub workflows: Arc<dyn Workflows>,
    pub health_checks: Arc<dyn HealthChecks>,
    pub endpoints: Arc<dyn Endpoints>,
    /// CloudWatch's counts of endpoints (idle detection's fallback).
    pub endpoint_metrics: Arc<dyn EndpointMetrics>,
    pub probes: Arc<dyn Probes>,
    /// Application Auto Scaling's and Service Quotas' limits (readiness).
    pub capacity: Arc<dyn capacity::Capacity>,
}
