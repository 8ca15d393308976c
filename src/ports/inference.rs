//! Inference: the SageMaker runtime as the router sees it.
//!
//! Two calls, each in a named region: `InvokeEndpoint` (real-time and
//! serverless endpoints answer while the caller waits) and
//! `InvokeEndpointAsync` (the batch path: the payload is already in S3, the
//! answer says where the result will land). The adapter over the real
//! service is `aws::runtime`; the simulation implements the same trait with
//! cold starts, throttling, model errors, outages and hangs.
//!
//! Errors are the *kinds* the router decides on ([`InvokeError`]), never
//! text to parse: a cold start is retried, throttling backs off, a model
//! error is the model's answer, an endpoint missing in one region moves to
//! the next region. Timeouts are not the adapter's business: the router
//! bounds every attempt itself (`tokio::time`, so the simulation's paused
//! clock drives them).

use async_trait::async_trait;
use bytes::Bytes;
use hyper::header::HeaderValue;

/// A boxed error kept as a `#[source]`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the client sent that the model should see. Header values are kept
/// as they arrived (a clone is a reference count, not a copy).
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// SageMaker `TargetModel` (multi-model endpoints only).
    pub target_model: Option<HeaderValue>,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    pub accept: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-Custom-Attributes`, passed through verbatim.
    pub custom_attributes: Option<HeaderValue>,
}

/// A model's successful answer.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    /// What the model set in `X-Amzn-SageMaker-Custom-Attributes`.
    pub custom_attributes: Option<HeaderValue>,
    /// `x-Amzn-Invoked-Production-Variant`.
    pub invoked_variant: Option<HeaderValue>,
}

/// An asynchronous invocation of a payload already stored at `input_location`.
#[derive(Debug, Clone)]
pub struct AsyncInvocation<'a> {
    /// `s3://bucket/key` of the payload.
    pub input_location: &'a str,
    /// SageMaker's `InferenceId` (the router's job id).
    pub inference_id: &'a str,
    pub content_type: Option<&'a HeaderValue>,
    pub accept: Option<&'a HeaderValue>,
    pub custom_attributes: Option<&'a HeaderValue>,
}

/// Where SageMaker will write an asynchronous invocation's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsyncAccepted {
    pub output_location: Option<String>,
    pub failure_location: Option<String>,
}

/// The model container answered an error (SageMaker's `ModelError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFailure {
    /// The container's own status (`OriginalStatusCode`).
    pub original_status: Option<u16>,
    /// The container's own message (`OriginalMessage`).
    pub original_message: Option<String>,
    /// Where the container's logs are (`LogStreamArn`).
    pub log_stream_arn: Option<String>,
    /// SageMaker's message about it.
    pub message: Option<String>,
}

/// Why an invocation failed, as far as the router's decisions go.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// `ModelNotReadyException`: capacity is still being provisioned (a
    /// cold start); retry with growing delay, then fall back.
    #[error("the model is not ready (ModelNotReadyException)")]
    ModelNotReady {
        /// SageMaker's message, for the client.
        message: Option<String>,
    },
    /// Throttling (SageMaker's unmodelled `ThrottlingException`): back off
    /// within the retry budget.
    #[error("throttled ({code})")]
    Throttled {
        code: String,
        message: Option<String>,
    },
    /// The model container answered an error: its answer, not retried.
    #[error("the model answered an error (status {:?})", .0.original_status)]
    Model(ModelFailure),
    /// The request is wrong (`ValidationError`): 400, not retried.
    #[error("the request is invalid: {message}")]
    Validation { message: String },
    /// The endpoint does not exist in this region (SageMaker says so with a
    /// `ValidationError` "Endpoint ... not found"): a regional
    /// misconfiguration, so the request moves to the next region.
    #[error("no such endpoint in this region: {message}")]
    EndpointNotFound { message: String },
    /// The service cannot serve now (`ServiceUnavailable`,
    /// `InternalFailure`, `InternalDependencyException`, another 5xx):
    /// try the next region.
    #[error("the service cannot serve now ({code})")]
    Unavailable {
        code: String,
        #[source]
        source: Option<BoxError>,
    },
    /// No usable answer at all (connect failure, reset, a broken response).
    #[error("no answer from the service")]
    Transport {
        #[source]
        source: BoxError,
    },
    /// Anything else (an answer the router does not understand): 502.
    #[error("an unexpected answer from the service")]
    Other {
        #[source]
        source: BoxError,
    },
}

impl InvokeError {
    /// Whether this says the target is unwell (feeds the circuit breaker
    /// and moves the request to the next region).
    pub fn is_target_failure(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Transport { .. } | Self::EndpointNotFound { .. }
        )
    }
}

/// SageMaker runtime, per region.
#[async_trait]
pub trait Inference: Send + Sync + 'static {
    /// `InvokeEndpoint` on `endpoint` in `region`.
    async fn invoke(
        &self,
        region: &str,
        endpoint: &str,
        inv: &Invocation,
    ) -> Result<Answer, InvokeError>;

    /// `InvokeEndpointAsync` on `endpoint` in `region`.
    async fn invoke_async(
        &self,
        region: &str,
        endpoint: &str,
        inv: &AsyncInvocation<'_>,
    ) -> Result<AsyncAccepted, InvokeError>;
}
