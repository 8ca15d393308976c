//! Route 53 adapter: health checks. (Record sets are managed by deploy/.)

use aws_sdk_route53::Client;
use aws_sdk_route53::error::DisplayErrorContext;
use aws_sdk_route53::types::{HealthCheckConfig, HealthCheckType};

/// A Route 53 call failed.
#[derive(Debug, thiserror::Error)]
#[error("Route 53 {op}: {detail}")]
pub struct Route53Error {
    pub op: &'static str,
    pub detail: String,
}

/// What to check.
#[derive(Debug, Clone)]
pub struct HealthCheckSpec {
    /// Unique per creation request (Route 53's idempotency key).
    pub caller_reference: String,
    pub fqdn: String,
    pub port: i32,
    pub resource_path: String,
}

/// Create an HTTPS health check and return its id.
pub async fn create_health_check(
    client: &Client,
    spec: &HealthCheckSpec,
) -> Result<String, Route53Error> {
    let cfg = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Https)
        .fully_qualified_domain_name(&spec.fqdn)
        .port(spec.port)
        .resource_path(&spec.resource_path)
        .request_interval(10)
        .failure_threshold(3)
        .enable_sni(true)
        .build()
        .map_err(|e| Route53Error {
            op: "CreateHealthCheck",
            detail: e.to_string(),
        })?;
    let out = client
        .create_health_check()
        .caller_reference(&spec.caller_reference)
        .health_check_config(cfg)
        .send()
        .await
        .map_err(|e| Route53Error {
            op: "CreateHealthCheck",
            detail: DisplayErrorContext(&e).to_string(),
        })?;
    out.health_check()
        .map(|h| h.id().to_string())
        .ok_or_else(|| Route53Error {
            op: "CreateHealthCheck",
            detail: "response carried no health check".into(),
        })
}

/// A health check's effective-status inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReading {
    pub inverted: bool,
    pub disabled: bool,
    /// One status text per checker region.
    pub observations: Vec<String>,
}

/// Why a reading is missing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// `Throttling` / `PriorRequestNotComplete`: back off.
    #[error("Route 53 throttled {op}: {detail}")]
    Throttled { op: &'static str, detail: String },
    #[error(transparent)]
    Other(#[from] Route53Error),
}

fn classify<E>(op: &'static str, e: aws_sdk_route53::error::SdkError<E>) -> ReadError
where
    E: aws_sdk_route53::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = DisplayErrorContext(&e).to_string();
    match e.as_service_error().and_then(|s| s.code()) {
        Some("Throttling" | "ThrottlingException" | "PriorRequestNotComplete") => {
            ReadError::Throttled { op, detail }
        }
        _ => ReadError::Other(Route53Error { op, detail }),
    }
}

/// GetHealthCheck (Inverted, Disabled) + GetHealthCheckStatus (observations).
pub async fn read_check(client: &Client, id: &str) -> Result<CheckReading, ReadError> {
    let hc = client
        .get_health_check()
        .health_check_id(id)
        .send()
        .await
        .map_err(|e| classify("GetHealthCheck", e))?;
    let cfg = hc.health_check().and_then(|h| h.health_check_config());
    let status = client
        .get_health_check_status()
        .health_check_id(id)
        .send()
        .await
        .map_err(|e| classify("GetHealthCheckStatus", e))?;
    Ok(CheckReading {
        inverted: cfg.and_then(|c| c.inverted()).unwrap_or(false),
        disabled: cfg.and_then(|c| c.disabled()).unwrap_or(false),
        observations: status
            .health_check_observations()
            .iter()
            .filter_map(|o| o.status_report().and_then(|r| r.status()).map(String::from))
            .collect(),
    })
}

/// Set a check's `Inverted` flag (drills invert; disabling never fails over).
pub async fn set_inverted(client: &Client, id: &str, inverted: bool) -> Result<(), Route53Error> {
    client
        .update_health_check()
        .health_check_id(id)
        .inverted(inverted)
        .send()
        .await
        .map_err(|e| Route53Error {
            op: "UpdateHealthCheck",
            detail: DisplayErrorContext(&e).to_string(),
        })?;
    Ok(())
}
