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
    /// SageMaker `TargetModel` (multi-model endpoints only): the client's
    /// `X-Amzn-SageMaker-Target-Model`, else the model's configured one.
    pub target_model: Option<HeaderValue>,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    pub accept: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-Custom-Attributes`, passed through verbatim.
    pub custom_attributes: Option<HeaderValue>,
    /// The client's other `InvokeEndpoint` headers, passed through verbatim.
    pub passed: Passed,
}

/// `InvokeEndpoint` request headers the router passes through as the client
/// sent them (each documented in SageMaker's `InvokeEndpoint` reference).
#[derive(Debug, Clone, Default)]
pub struct Passed {
    /// `X-Amzn-SageMaker-Target-Variant`.
    pub target_variant: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-Target-Container-Hostname`.
    pub target_container_hostname: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-Inference-Id`.
    pub inference_id: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-Enable-Explanations`.
    pub enable_explanations: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-Inference-Component`.
    pub inference_component: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-Session-Id`: `NEW_SESSION` or a session's id.
    pub session_id: Option<HeaderValue>,
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
    /// `X-Amzn-SageMaker-New-Session-Id`: the session the model opened
    /// (`<id>; Expires=<time>`).
    pub new_session_id: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-Closed-Session-Id`: the session the model closed.
    pub closed_session_id: Option<HeaderValue>,
}

/// A response stream's events after its head, as they arrive: each
/// `PayloadPart`'s bytes, or how it failed (after which it ends).
pub type EventStream = futures_util::stream::BoxStream<'static, Result<Bytes, StreamError>>;

/// An `InvokeEndpointWithResponseStream` answer that started.
pub struct Streamed {
    /// `X-Amzn-SageMaker-Content-Type`: the model's content type.
    pub content_type: Option<HeaderValue>,
    pub custom_attributes: Option<HeaderValue>,
    pub invoked_variant: Option<HeaderValue>,
    pub events: EventStream,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("content_type", &self.content_type)
            .field("invoked_variant", &self.invoked_variant)
            .finish_non_exhaustive()
    }
}

/// How a response stream failed once it had started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// The model failed mid-stream (SageMaker's in-band `ModelStreamError`).
    #[error("the model failed mid-stream: {message}")]
    Model {
        message: String,
        error_code: Option<String>,
    },
    /// Anything else: SageMaker's `InternalStreamFailure`, the connection
    /// lost, an event the router cannot read.
    #[error("the stream failed: {message}")]
    Internal { message: String },
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
    /// No usable answer at all (connect failure, reset, a broken response);
    /// `delivery` says whether the request may have reached the model.
    #[error("no answer from the service")]
    Transport {
        delivery: Delivery,
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

/// How far a call that got no usable answer went: what the router needs
/// to know before sending a request that must not run twice again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing of the request left this host: the connection was refused
    /// or failed, or the first write failed. The model cannot have run.
    NotSent,
    /// The request was written, in part or whole, and no complete answer
    /// came back (reset, closed, an answer cut off, even after a 200): the
    /// model may have run.
    Unknown,
}

impl InvokeError {
    /// Whether the model may have run and there is no answer to give (the
    /// outcome is unknown): a 5xx (SageMaker does not say whether the
    /// container was called), a connection that failed after the request
    /// was written, an answer the router cannot read. Refusals before the model
    /// (throttling, cold start, a missing endpoint, validation) and a
    /// connection that never carried the request did not run it; a model
    /// error is the model's own answer.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Other { .. } => true,
            Self::Transport { delivery, .. } => *delivery == Delivery::Unknown,
            Self::ModelNotReady { .. }
            | Self::Throttled { .. }
            | Self::Model(_)
            | Self::Validation { .. }
            | Self::EndpointNotFound { .. } => false,
        }
    }

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

    /// `InvokeEndpointWithResponseStream` on `endpoint` in `region`: the
    /// answer's head once it started, its events as they come. The default
    /// says the adapter does not stream.
    async fn invoke_stream(
        &self,
        region: &str,
        endpoint: &str,
        inv: &Invocation,
    ) -> Result<Streamed, InvokeError> {
        let _ = (region, endpoint, inv);
        Err(InvokeError::Other {
            source: "this Inference adapter does not stream responses".into(),
        })
    }

    /// `InvokeEndpointAsync` on `endpoint` in `region`.
    async fn invoke_async(
        &self,
        region: &str,
        endpoint: &str,
        inv: &AsyncInvocation<'_>,
    ) -> Result<AsyncAccepted, InvokeError>;

    /// `InvokeEndpointAsync` with a client's optional limits (the wire
    /// API's `RequestTTLSeconds`, `InvocationTimeoutSeconds`). The default
    /// drops them (an adapter without them, the simulation's).
    async fn invoke_async_limited(
        &self,
        region: &str,
        endpoint: &str,
        inv: &AsyncInvocation<'_>,
        limits: AsyncLimits,
    ) -> Result<AsyncAccepted, InvokeError> {
        let _ = limits;
        self.invoke_async(region, endpoint, inv).await
    }
}

/// `InvokeEndpointAsync`'s optional limits, as the client sent them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsyncLimits {
    /// How long SageMaker keeps the request queued (60 to 21,600 s).
    pub request_ttl_seconds: Option<i32>,
    /// How long the container may take once it has the request (1 to 3,600 s).
    pub invocation_timeout_seconds: Option<i32>,
}
