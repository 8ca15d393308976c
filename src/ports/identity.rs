//! Identity: who the AWS credentials in use belong to (STS
//! `GetCallerIdentity`), so that an operator's change is recorded under the
//! principal that made it, not a name typed on the command line.
//!
//! `GetCallerIdentity` needs no IAM permission (an explicit deny cannot
//! block it), so it fails only when STS cannot be reached or the
//! credentials are bad; the CLI then falls back to `--operator`
//! (`cli::operator`).

use async_trait::async_trait;

use super::PortError;

/// The caller's AWS identity.
#[async_trait]
pub trait Identity: Send + Sync {
    /// The caller's ARN (`arn:aws:sts::123456789012:assumed-role/OnCall/alice`).
    async fn caller_arn(&self) -> Result<String, PortError>;
}
