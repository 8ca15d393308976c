//! One SageMaker runtime `InvokeEndpoint` call, and the one place where the
//! SDK's errors become the router's [`CallError`] kinds (which in turn
//! decide retry, fallback, next region, or an answer to the client).

use aws_sdk_sagemakerruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::primitives::Blob;
use bytes::Bytes;

use super::metrics::CallResult;

/// What the client sent that the model should see.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The configured model name (recorded with batch jobs).
    pub model: String,
    /// The SageMaker `TargetModel` to send, if the model names one.
    pub target_model: Option<String>,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub custom_attributes: Option<String>,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub custom_attributes: Option<String>,
    pub invoked_variant: Option<String>,
}

/// Why a call failed, as far as the router's decisions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// `ModelNotReadyException`: a cold start; retry with growing delay,
    /// then fall back.
    ModelNotReady,
    /// `ThrottlingException`: back off within the retry budget.
    Throttled(String),
    /// The model container answered an error: passed through, no retry.
    Model { status: u16, message: String },
    /// `ValidationError`: the request is wrong; 400, no retry.
    Validation(String),
    /// `ServiceUnavailable`, `InternalFailure`, `InternalDependencyException`
    /// or another 5xx: this region cannot serve now; try the next.
    Unavailable(String),
    /// No answer at all (connect failure, reset, timeout): try the next region.
    Connection(String),
    /// Anything else: 502.
    Other(String),
}

impl CallError {
    /// The metrics label.
    pub fn result(&self) -> CallResult {
        match self {
            CallError::ModelNotReady => CallResult::ModelNotReady,
            CallError::Throttled(_) => CallResult::Throttled,
            CallError::Model { .. } => CallResult::ModelError,
            CallError::Validation(_) => CallResult::Validation,
            CallError::Unavailable(_) => CallResult::Unavailable,
            CallError::Connection(_) => CallResult::Connection,
            CallError::Other(_) => CallResult::Other,
        }
    }

    /// Whether this says the target is unwell (feeds the circuit breaker).
    pub fn is_target_failure(&self) -> bool {
        matches!(self, CallError::Unavailable(_) | CallError::Connection(_))
    }

    /// Human-readable detail.
    pub fn detail(&self) -> String {
        match self {
            CallError::ModelNotReady => "ModelNotReadyException".into(),
            CallError::Throttled(m)
            | CallError::Validation(m)
            | CallError::Unavailable(m)
            | CallError::Connection(m)
            | CallError::Other(m) => m.clone(),
            CallError::Model { status, message } => format!("model answered {status}: {message}"),
        }
    }
}

/// Call `endpoint` through `client` (a client for the endpoint's region).
pub async fn invoke(
    client: &aws_sdk_sagemakerruntime::Client,
    endpoint: &str,
    inv: &Invocation,
) -> Result<Answer, CallError> {
    let mut req = client
        .invoke_endpoint()
        .endpoint_name(endpoint)
        .set_target_model(inv.target_model.clone())
        .body(Blob::new(inv.body.to_vec()));
    if let Some(ct) = &inv.content_type {
        req = req.content_type(ct);
    }
    if let Some(a) = &inv.accept {
        req = req.accept(a);
    }
    if let Some(c) = &inv.custom_attributes {
        req = req.custom_attributes(c);
    }
    match req.send().await {
        Ok(out) => Ok(Answer {
            body: out
                .body
                .map(|b| Bytes::from(b.into_inner()))
                .unwrap_or_default(),
            content_type: out.content_type,
            custom_attributes: out.custom_attributes,
            invoked_variant: out.invoked_production_variant,
        }),
        Err(e) => Err(classify(e)),
    }
}

/// The one mapping from the SDK's errors to the router's.
pub fn classify(e: SdkError<InvokeEndpointError>) -> CallError {
    let raw_status = e.raw_response().map(|r| r.status().as_u16());
    match e {
        SdkError::ServiceError(se) => {
            let err = se.into_err();
            let msg = || {
                format!(
                    "{}: {}",
                    err.code().unwrap_or("unknown"),
                    err.message().unwrap_or("")
                )
            };
            match &err {
                InvokeEndpointError::ModelNotReadyException(_) => CallError::ModelNotReady,
                InvokeEndpointError::ModelError(m) => CallError::Model {
                    status: m
                        .original_status_code()
                        .and_then(|s| u16::try_from(s).ok())
                        .filter(|s| (400..=599).contains(s))
                        .unwrap_or(502),
                    message: m
                        .original_message()
                        .or(m.message())
                        .unwrap_or("the model answered an error")
                        .to_string(),
                },
                InvokeEndpointError::ValidationError(v) => {
                    CallError::Validation(v.message().unwrap_or("ValidationError").to_string())
                }
                InvokeEndpointError::ServiceUnavailable(_)
                | InvokeEndpointError::InternalFailure(_)
                | InvokeEndpointError::InternalDependencyException(_) => {
                    CallError::Unavailable(msg())
                }
                other if is_throttling(other.code()) => CallError::Throttled(msg()),
                _ if raw_status.is_some_and(|s| s >= 500) => CallError::Unavailable(msg()),
                _ => CallError::Other(msg()),
            }
        }
        SdkError::DispatchFailure(d) => CallError::Connection(format!("dispatch failure: {d:?}")),
        SdkError::TimeoutError(_) => CallError::Connection("timeout".into()),
        SdkError::ResponseError(r) => CallError::Connection(format!("bad response: {r:?}")),
        other => CallError::Other(
            aws_sdk_sagemakerruntime::error::DisplayErrorContext(&other).to_string(),
        ),
    }
}

fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("ThrottlingException" | "Throttling" | "TooManyRequestsException")
    )
}
