//! SageMaker runtime adapter: the [`Inference`] port over the real SDK
//! client of each region, and the one place where `InvokeEndpoint`'s and
//! `InvokeEndpointAsync`'s errors become [`InvokeError`] kinds.
//!
//! The clients have their retries off (`AwsClients::sagemaker_runtime`):
//! the router is the only retry loop, so its budget really bounds the extra
//! load, and it bounds every attempt itself.
//!
//! SageMaker answers a missing endpoint with a plain `ValidationError`
//! whose message reads "Endpoint {name} of account {id} not found." That is
//! the only way to tell a regional misconfiguration (try the next region)
//! from a bad request (answer 400), so the message is matched here, once.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sagemakerruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint_async::InvokeEndpointAsyncError;
use aws_sdk_sagemakerruntime::primitives::Blob;
use bytes::Bytes;
use hyper::header::HeaderValue;

use super::AwsClients;
use super::errors::{ErrorKind, classify};
use crate::ports::inference::{
    Answer, AsyncAccepted, AsyncInvocation, Inference, Invocation, InvokeError, ModelFailure,
};

/// The [`Inference`] port over the SDK.
pub struct SageMakerRuntime {
    clients: Arc<AwsClients>,
}

impl SageMakerRuntime {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }
}

fn text(v: Option<&HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
}

fn header(s: Option<String>) -> Option<HeaderValue> {
    s.and_then(|s| HeaderValue::try_from(s).ok())
}

#[async_trait]
impl Inference for SageMakerRuntime {
    async fn invoke(
        &self,
        region: &str,
        endpoint: &str,
        inv: &Invocation,
    ) -> Result<Answer, InvokeError> {
        let out = self
            .clients
            .sagemaker_runtime(region)
            .invoke_endpoint()
            .endpoint_name(endpoint)
            .set_target_model(text(inv.target_model.as_ref()).map(str::to_string))
            .set_content_type(text(inv.content_type.as_ref()).map(str::to_string))
            .set_accept(text(inv.accept.as_ref()).map(str::to_string))
            .set_custom_attributes(text(inv.custom_attributes.as_ref()).map(str::to_string))
            .body(Blob::new(inv.body.clone()))
            .send()
            .await
            .map_err(invoke_error)?;
        Ok(Answer {
            body: out
                .body
                .map(|b| Bytes::from(b.into_inner()))
                .unwrap_or_default(),
            content_type: header(out.content_type),
            custom_attributes: header(out.custom_attributes),
            invoked_variant: header(out.invoked_production_variant),
        })
    }

    async fn invoke_async(
        &self,
        region: &str,
        endpoint: &str,
        inv: &AsyncInvocation<'_>,
    ) -> Result<AsyncAccepted, InvokeError> {
        let out = self
            .clients
            .sagemaker_runtime(region)
            .invoke_endpoint_async()
            .endpoint_name(endpoint)
            .input_location(inv.input_location)
            .inference_id(inv.inference_id)
            .set_content_type(text(inv.content_type).map(str::to_string))
            .set_accept(text(inv.accept).map(str::to_string))
            .set_custom_attributes(text(inv.custom_attributes).map(str::to_string))
            .send()
            .await
            .map_err(invoke_async_error)?;
        Ok(AsyncAccepted {
            output_location: out.output_location,
            failure_location: out.failure_location,
        })
    }
}

/// Whether a `ValidationError`'s message says the endpoint does not exist
/// ("Endpoint {name} of account {id} not found.").
pub fn is_endpoint_not_found(message: &str) -> bool {
    message.starts_with("Endpoint ") && message.contains(" not found")
}

/// `InvokeEndpoint`'s errors.
pub fn invoke_error(e: SdkError<InvokeEndpointError>) -> InvokeError {
    if let Some(se) = e.as_service_error() {
        match se {
            InvokeEndpointError::ModelNotReadyException(m) => {
                return InvokeError::ModelNotReady {
                    message: m.message().map(str::to_string),
                };
            }
            InvokeEndpointError::ModelError(m) => {
                return InvokeError::Model(ModelFailure {
                    original_status: m.original_status_code().and_then(|s| u16::try_from(s).ok()),
                    original_message: m.original_message().map(str::to_string),
                    log_stream_arn: m.log_stream_arn().map(str::to_string),
                    message: m.message().map(str::to_string),
                });
            }
            InvokeEndpointError::ValidationError(v) => {
                return validation(v.message());
            }
            _ => {}
        }
    }
    by_kind(e)
}

/// `InvokeEndpointAsync`'s errors.
pub fn invoke_async_error(e: SdkError<InvokeEndpointAsyncError>) -> InvokeError {
    if let Some(InvokeEndpointAsyncError::ValidationError(v)) = e.as_service_error() {
        return validation(v.message());
    }
    by_kind(e)
}

fn validation(message: Option<&str>) -> InvokeError {
    let message = message.unwrap_or("ValidationError").to_string();
    if is_endpoint_not_found(&message) {
        InvokeError::EndpointNotFound { message }
    } else {
        InvokeError::Validation { message }
    }
}

/// Everything not modelled above, by the shared classification
/// ([`super::errors::classify`]): throttling codes, 5xx, transport.
fn by_kind<E>(e: SdkError<E>) -> InvokeError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or("unknown").to_string();
    let message = e.message().map(str::to_string);
    match classify(&e) {
        ErrorKind::Throttled => InvokeError::Throttled { code, message },
        ErrorKind::Unavailable => InvokeError::Unavailable {
            code,
            source: Some(Box::new(e)),
        },
        ErrorKind::Transport => InvokeError::Transport {
            source: Box::new(e),
        },
        ErrorKind::Validation if e.as_service_error().is_some() => validation(message.as_deref()),
        _ => InvokeError::Other {
            source: Box::new(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_not_found_is_told_from_other_validation_errors() {
        assert!(is_endpoint_not_found(
            "Endpoint lab-provisioned of account 123456789012 not found."
        ));
        assert!(!is_endpoint_not_found("Request abc has oversize body."));
        assert!(matches!(
            validation(Some("Endpoint x of account 1 not found.")),
            InvokeError::EndpointNotFound { .. }
        ));
        assert!(matches!(validation(None), InvokeError::Validation { .. }));
    }
}
