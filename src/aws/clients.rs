//! One SDK client per (service, region), built on first use and cached.
//!
//! A daemon talks to other regions' APIs (Step Functions callbacks go to the
//! region that issued the token; the router invokes another region's
//! endpoints), so clients are keyed by region. Credentials come from the
//! SDK's default provider chain (environment, profile, SSO, credential
//! process, instance role) and never from failoverd's files.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::EndpointOverrides;

/// Route 53's control plane lives in us-east-1 whatever region calls it.
pub const ROUTE53_REGION: &str = "us-east-1";

/// Bounds on every control-plane call (DynamoDB, Step Functions, Route 53).
/// Without them a black-holed endpoint (packets dropped, no reset) would hang
/// a reconcile round forever; with them the round fails, the daemon reports
/// why, and it recovers on its own once the path is back. An attempt is
/// bounded, and so is the whole call with the SDK's own retries.
pub fn control_plane_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(5))
        .operation_timeout(std::time::Duration::from_secs(15))
        .build()
}

/// Bounds for one-off deploy and provisioning work (creating tables, state
/// machines, stacks): these calls can take seconds on a cold service, and
/// nothing waits on them the way a reconcile round does.
pub fn provisioning_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(60))
        .operation_timeout(std::time::Duration::from_secs(180))
        .build()
}

/// The HTTP client every SDK client uses: hyper with rustls on ring and the
/// platform's trust roots. The SDK crates' `default-https-client` feature
/// would bring the same client on aws-lc, whose C build is a seventh of a
/// clean release build; it is off, so an `SdkConfig` without this client
/// has none (`AwsClients::new` fills it in).
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Cache of SDK clients, keyed by region.
pub struct AwsClients {
    base: SdkConfig,
    /// Timeouts of the control-plane clients (not the runtime's: the router
    /// bounds its own attempts).
    timeouts: aws_config::timeout::TimeoutConfig,
    endpoints: EndpointOverrides,
    dynamodb: Mutex<HashMap<String, aws_sdk_dynamodb::Client>>,
    sfn: Mutex<HashMap<String, aws_sdk_sfn::Client>>,
    sagemaker_runtime: Mutex<HashMap<String, aws_sdk_sagemakerruntime::Client>>,
    sagemaker: Mutex<HashMap<String, aws_sdk_sagemaker::Client>>,
    s3: Mutex<HashMap<String, aws_sdk_s3::Client>>,
    cloudwatch: Mutex<HashMap<String, aws_sdk_cloudwatch::Client>>,
    route53: Mutex<Option<aws_sdk_route53::Client>>,
}

fn cached<C: Clone>(map: &Mutex<HashMap<String, C>>, region: &str, build: impl FnOnce() -> C) -> C {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(region.to_string()).or_insert_with(build).clone()
}

impl AwsClients {
    /// Load the SDK's default credential chain and build the cache.
    pub async fn from_default_chain(endpoints: EndpointOverrides) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .load()
            .await;
        Self::new(base, endpoints)
    }

    /// Build from an explicit SDK config (tests hand static credentials).
    /// A config without an HTTP client gets `https_client()`.
    pub fn new(base: SdkConfig, endpoints: EndpointOverrides) -> Self {
        let base = match base.http_client() {
            Some(_) => base,
            None => base.into_builder().http_client(https_client()).build(),
        };
        Self {
            base,
            timeouts: control_plane_timeouts(),
            endpoints,
            dynamodb: Mutex::default(),
            sfn: Mutex::default(),
            sagemaker_runtime: Mutex::default(),
            sagemaker: Mutex::default(),
            s3: Mutex::default(),
            cloudwatch: Mutex::default(),
            route53: Mutex::default(),
        }
    }

    /// The same clients with other control-plane timeouts (provisioning).
    pub fn with_timeouts(mut self, timeouts: aws_config::timeout::TimeoutConfig) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The shared SDK configuration (credentials, retry, timeouts).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.base
    }

    /// The endpoint overrides in force.
    pub fn endpoints(&self) -> &EndpointOverrides {
        &self.endpoints
    }

    /// DynamoDB in `region`.
    pub fn dynamodb(&self, region: &str) -> aws_sdk_dynamodb::Client {
        cached(&self.dynamodb, region, || {
            let mut b = aws_sdk_dynamodb::config::Builder::from(&self.base)
                .region(Region::new(region.to_string()))
                .timeout_config(self.timeouts.clone());
            if let Some(url) = &self.endpoints.dynamodb {
                b = b.endpoint_url(url);
            }
            aws_sdk_dynamodb::Client::from_conf(b.build())
        })
    }

    /// Step Functions in `region`.
    pub fn sfn(&self, region: &str) -> aws_sdk_sfn::Client {
        cached(&self.sfn, region, || {
            let mut b = aws_sdk_sfn::config::Builder::from(&self.base)
                .region(Region::new(region.to_string()))
                .timeout_config(self.timeouts.clone());
            if let Some(url) = &self.endpoints.sfn {
                b = b.endpoint_url(url);
            }
            aws_sdk_sfn::Client::from_conf(b.build())
        })
    }

    /// SageMaker runtime in `region`. The inference router is the only retry
    /// loop for invocations, so SDK retries are off on these clients.
    pub fn sagemaker_runtime(&self, region: &str) -> aws_sdk_sagemakerruntime::Client {
        cached(&self.sagemaker_runtime, region, || {
            let mut b = aws_sdk_sagemakerruntime::config::Builder::from(&self.base)
                .region(Region::new(region.to_string()))
                .retry_config(aws_config::retry::RetryConfig::disabled());
            if let Some(url) = &self.endpoints.sagemaker_runtime {
                b = b.endpoint_url(url);
            }
            aws_sdk_sagemakerruntime::Client::from_conf(b.build())
        })
    }

    /// CloudWatch in `region` (endpoints' `Invocations`, idle detection's
    /// fallback).
    pub fn cloudwatch(&self, region: &str) -> aws_sdk_cloudwatch::Client {
        cached(&self.cloudwatch, region, || {
            let mut b = aws_sdk_cloudwatch::config::Builder::from(&self.base)
                .region(Region::new(region.to_string()))
                .timeout_config(self.timeouts.clone());
            if let Some(url) = &self.endpoints.cloudwatch {
                b = b.endpoint_url(url);
            }
            aws_sdk_cloudwatch::Client::from_conf(b.build())
        })
    }

    /// SageMaker's control plane in `region` (endpoint status; provisioning).
    pub fn sagemaker(&self, region: &str) -> aws_sdk_sagemaker::Client {
        cached(&self.sagemaker, region, || {
            let mut b = aws_sdk_sagemaker::config::Builder::from(&self.base)
                .region(Region::new(region.to_string()))
                .timeout_config(self.timeouts.clone());
            if let Some(url) = &self.endpoints.sagemaker {
                b = b.endpoint_url(url);
            }
            aws_sdk_sagemaker::Client::from_conf(b.build())
        })
    }

    /// S3 in `region` (the router's batch payloads and results). With an
    /// endpoint override (the lab), path-style addressing: the emulator has
    /// no per-bucket host names.
    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        cached(&self.s3, region, || {
            let mut b = aws_sdk_s3::config::Builder::from(&self.base)
                .region(Region::new(region.to_string()));
            if let Some(url) = &self.endpoints.s3 {
                b = b.endpoint_url(url).force_path_style(true);
            }
            aws_sdk_s3::Client::from_conf(b.build())
        })
    }

    /// Route 53 (global service, signed for us-east-1).
    pub fn route53(&self) -> aws_sdk_route53::Client {
        let mut slot = self.route53.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| {
            let mut b = aws_sdk_route53::config::Builder::from(&self.base)
                .region(Region::new(ROUTE53_REGION))
                .timeout_config(self.timeouts.clone());
            if let Some(url) = &self.endpoints.route53 {
                b = b.endpoint_url(url);
            }
            aws_sdk_route53::Client::from_conf(b.build())
        })
        .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_an_http_client_gets_the_ring_one() {
        let bare = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        assert!(bare.http_client().is_none());
        let clients = AwsClients::new(bare, EndpointOverrides::default());
        assert!(clients.sdk_config().http_client().is_some());
    }

    /// aws-lc's C build was a seventh of a clean release build; nothing in
    /// the tree may bring it back (an SDK crate's `default-https-client`
    /// feature would).
    #[test]
    fn the_build_has_no_aws_lc() {
        let lock = include_str!("../../Cargo.lock");
        assert!(lock.contains("name = \"ring\""));
        assert!(
            !lock.contains("name = \"aws-lc-sys\""),
            "aws-lc-sys is back in Cargo.lock: `cargo tree -i aws-lc-sys` shows who brings it"
        );
    }
}
