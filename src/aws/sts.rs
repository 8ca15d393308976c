//! STS adapter: [`Identity`] over `GetCallerIdentity`.
//!
//! The client is built from the shared SDK configuration, so its endpoint
//! follows the SDK's own settings (`AWS_ENDPOINT_URL_STS` or the profile's
//! `endpoint_url`, which is how the lab points it at its emulator) and its
//! region is the one the command runs for (regional STS endpoints). Bounded
//! tighter than the control plane, and not retried: an operator waits for
//! it, and without it the CLI falls back to `--operator`.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::Region;

use super::AwsClients;
use super::errors::port_error;
use crate::ports::identity::Identity;
use crate::ports::{ErrorKind, PortError};

/// STS in one region.
pub struct AwsIdentity {
    client: aws_sdk_sts::Client,
    region: String,
}

impl AwsIdentity {
    pub fn new(clients: &AwsClients, region: &str) -> Self {
        let conf = aws_sdk_sts::config::Builder::from(clients.sdk_config())
            .region(Region::new(region.to_string()))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        Self {
            client: aws_sdk_sts::Client::from_conf(conf),
            region: region.to_string(),
        }
    }
}

#[async_trait]
impl Identity for AwsIdentity {
    async fn caller_arn(&self) -> Result<String, PortError> {
        let out = self
            .client
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| port_error("STS", "GetCallerIdentity", &self.region, e))?;
        out.arn().map(str::to_string).ok_or_else(|| {
            PortError::new(
                "STS",
                "GetCallerIdentity",
                &self.region,
                ErrorKind::Malformed,
                "the answer has no Arn",
            )
        })
    }
}
