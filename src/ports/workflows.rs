//! Workflows: the failover state machine in each region's Step Functions.
//!
//! Execution names are the idempotency key: starting a name that exists
//! with the same input while it runs returns it; a closed execution, or
//! different input, is `ExecutionAlreadyExists`, which the adapter resolves
//! by describing the existing execution ([`Started::Existing`] with its
//! input) so the caller can tell "started earlier" from a name collision.
//! Task callbacks go to the region whose execution issued the token; a
//! token that is already closed (`TaskTimedOut`, `InvalidToken`,
//! `TaskDoesNotExist`) is [`Callback::AlreadyClosed`], not an error.

use async_trait::async_trait;

use super::PortError;
use crate::core::plan::ExecutionStatus;

/// Outcome of StartExecution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Started now, or the same execution (same name and input) is running.
    Running { arn: String },
    /// An execution with this name already exists (closed, or with other
    /// input): its status and input, so the caller can compare.
    Existing {
        arn: String,
        status: ExecutionStatus,
        input: Option<String>,
    },
}

/// An execution as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub status: ExecutionStatus,
    pub input: Option<String>,
}

/// Outcome of a task callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    Accepted,
    /// `TaskTimedOut` / `InvalidToken` / `TaskDoesNotExist`: the task was
    /// already closed (by an earlier callback, a timeout, or the execution
    /// ending). Record the token as done; do not retry.
    AlreadyClosed,
}

/// The execution ARN for a state machine ARN and an execution name.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

pub use crate::core::control::arn_region;

/// Step Functions, in any region (the region is taken from the ARN, or
/// given for callbacks).
#[async_trait]
pub trait Workflows: Send + Sync {
    async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<Started, PortError>;
    /// `NotStarted` when no execution has this ARN.
    async fn describe(&self, execution_arn: &str) -> Result<Execution, PortError>;
    async fn stop(&self, execution_arn: &str, cause: &str) -> Result<(), PortError>;
    async fn send_task_success(
        &self,
        region: &str,
        token: &str,
        output: &str,
    ) -> Result<Callback, PortError>;
    async fn send_task_failure(
        &self,
        region: &str,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<Callback, PortError>;
    async fn send_task_heartbeat(&self, region: &str, token: &str) -> Result<Callback, PortError>;
}
