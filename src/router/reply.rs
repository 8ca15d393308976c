//! Replies: every way a request can end, typed ([`RouterError`]), and the
//! one mapping from those to an HTTP status, an AWS error code and a
//! metrics outcome ([`RouterError::wire`]).
//!
//! Errors go out in the AWS restJson1 shape SageMaker uses: an
//! `x-amzn-errortype` header and a JSON body with `message`, so a stock
//! SageMaker SDK pointed at the router raises the same typed exceptions it
//! would against AWS (boto3: `ModelError`, `ModelNotReadyException`,
//! `ValidationError`, `ServiceUnavailable`; an unmodelled
//! `ThrottlingException` as a `ClientError` with that code). Statuses are
//! SageMaker's where it has one (`ModelError` is 424 with the container's
//! own status in `OriginalStatusCode`), and the plain HTTP meaning where
//! the router refuses on its own (413, 408, 429 with `Retry-After`, 503
//! with `Retry-After`, 504).
//!
//! | cause                                    | status | `x-amzn-errortype`      |
//! |------------------------------------------|--------|-------------------------|
//! | unknown route / model / job              | 404    | `NotFound` / `ValidationError` |
//! | wrong method                             | 405    | `MethodNotAllowed`      |
//! | caller not in the model's `router.allow` | 403    | `AccessDeniedException` |
//! | bad header (class, deadline, encoding)   | 400    | `ValidationError`       |
//! | `Transfer-Encoding`; a non-UTF-8 label   | 400    | `ValidationError`       |
//! | body slower than `body_read_timeout`     | 408    | `RequestTimeout`        |
//! | body over the limit                      | 413    | `ValidationError`       |
//! | the model answered an error              | 424    | `ModelError`            |
//! | a model that must not run twice may have run, no answer | 424 | `ModelError` (+ `x-failoverd-outcome: unknown`) |
//! | a session this router no longer serves   | 400    | `ValidationError`       |
//! | SageMaker said the request is invalid    | 400    | `ValidationError`       |
//! | throttled, retry budget spent            | 429    | `ThrottlingException`   |
//! | over the caller's `router.callers` limits | 429   | `ThrottlingException`   |
//! | every region still cold                  | 429    | `ModelNotReadyException`|
//! | shed, draining, no region could serve    | 503    | `ServiceUnavailable`    |
//! | an answer the router cannot read         | 502    | `InternalFailure`       |
//! | the request's deadline passed            | 504    | `DeadlineExceeded`      |
//! | a batch job failed (`GET /v1/jobs/{id}`) | 502    | `ModelError`            |

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::core::routing::Path;
use crate::error_chain;
use crate::http::HttpResponse;
use crate::metrics::router::Outcome;
use crate::ports::blobs::BlobError;
use crate::ports::inference::{InvokeError, ModelFailure};
use crate::ports::jobs::{Job, JobStoreError};

pub(super) const H_PATH: HeaderName = HeaderName::from_static("x-failoverd-path");
pub(super) const H_REGION: HeaderName = HeaderName::from_static("x-failoverd-region");
pub(super) const H_ATTEMPTS: HeaderName = HeaderName::from_static("x-failoverd-attempts");
pub(super) const H_CUSTOM: HeaderName =
    HeaderName::from_static("x-amzn-sagemaker-custom-attributes");
pub(super) const H_VARIANT: HeaderName =
    HeaderName::from_static("x-amzn-invoked-production-variant");
pub(super) const H_ERRORTYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
pub(super) const H_REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
pub(super) const H_JOB_STATUS: HeaderName = HeaderName::from_static("x-failoverd-job-status");
pub(super) const H_OUTCOME: HeaderName = HeaderName::from_static("x-failoverd-outcome");
pub(super) const H_NEW_SESSION: HeaderName =
    HeaderName::from_static("x-amzn-sagemaker-new-session-id");
pub(super) const H_CLOSED_SESSION: HeaderName =
    HeaderName::from_static("x-amzn-sagemaker-closed-session-id");

/// `Retry-After` seconds on shed, unavailable and throttled answers.
pub const RETRY_AFTER_SECS: &str = "1";

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// Why a request did not get a model's answer.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("no such route: {0}")]
    NoRoute(String),
    #[error("{method} is not allowed here; use {allow}")]
    Method {
        method: hyper::Method,
        allow: &'static str,
    },
    #[error("this router is shutting down; retry on another")]
    Draining,
    #[error("over capacity: more than {0} requests in flight")]
    OverCapacity(u32),
    #[error("no such model: {0:?} (this router serves the models in its [[models]] list)")]
    UnknownModel(String),
    /// Not in the model's `router.allow` list (router::auth).
    #[error("{identity} is not authorized to invoke model {model:?} through this router")]
    AccessDenied { identity: String, model: String },
    /// The IAM token (`router.iam`, router::iam) was refused, or STS could
    /// not be asked.
    #[error("{0}")]
    Iam(super::iam::IamError),
    #[error("{0}: not visible ASCII")]
    BadHeader(HeaderName),
    /// A body framed by `Transfer-Encoding` (with or without a
    /// `Content-Length` beside it): refused, so no two readers of the
    /// request can disagree on where it ends (request smuggling).
    #[error(
        "Transfer-Encoding is not accepted on invocations; send the body with a Content-Length"
    )]
    TransferEncoding,
    #[error("the model name in the path is not UTF-8 once percent-decoded")]
    BadLabel,
    #[error("X-Traffic-Class: unknown traffic class {class:?}; known: {known}")]
    UnknownClass { class: String, known: String },
    #[error("X-Deadline-Ms: {value:?} is not a number of milliseconds in 1..={max_ms}")]
    BadDeadline { value: String, max_ms: u64 },
    #[error("cannot read the request body")]
    BodyUnreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// Over every path's limit (on the SageMaker API: over the 6 MB of a
    /// real-time invocation; the native API can take more, as a batch job).
    #[error("{}payload is over the {limit}-byte limit{hint}", .len.map(|l| format!("the {l}-byte ")).unwrap_or_else(|| "the ".into()))]
    TooLarge {
        len: Option<u64>,
        limit: u64,
        hint: &'static str,
    },
    #[error("{message}")]
    Model {
        region: String,
        failure: Box<ModelFailure>,
        message: String,
    },
    #[error("{message}")]
    Validation { region: String, message: String },
    /// A model that must not run twice (`idempotent = false`) may have
    /// run, and there is no answer to give: nothing is sent again.
    #[error("the outcome is unknown: the request may have reached the model in {region} ({}), and this model must not run twice (idempotent = false), so it was not sent again; check whether it ran before retrying", error_chain(.source.as_ref()))]
    OutcomeUnknown {
        region: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The session's region can no longer serve it (a failover, an outage,
    /// an ejection): the session ended, as SageMaker answers an unknown one.
    #[error(
        "Session {session:?} is not valid: it was opened in {region}, which this router no longer routes to; start a new session (NEW_SESSION)"
    )]
    SessionEnded { session: String, region: String },
    #[error("throttled by {region}; the retry budget is spent")]
    Throttled { region: String },
    /// Over the caller's own limits (router::limits).
    #[error("{caller} is over its limit on this router ({why}); retry after Retry-After")]
    CallerThrottled { caller: String, why: String },
    #[error("the model is not ready in any region that could serve it (cold starts); retry later")]
    ModelNotReady,
    #[error("no region could serve the request; last: {region} {}: {}", .path.as_str(), error_chain(.source.as_ref()))]
    Unavailable {
        region: String,
        path: Path,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no region has an endpoint for this request")]
    NoEndpoint,
    #[error("{region} answered in a way the router cannot read: {}", error_chain(.source))]
    BadGateway {
        region: String,
        #[source]
        source: InvokeError,
    },
    #[error("the request's deadline passed before a region answered")]
    DeadlineExceeded,
    #[error("no such job: {0:?}")]
    NoSuchJob(String),
    #[error("cannot read the job now: {}", error_chain(.0))]
    JobStore(#[source] JobStoreError),
    #[error("cannot read the job's result now: {}", error_chain(.0))]
    JobResult(#[source] BlobError),
    #[error("{0}")]
    JobFailed(String),
}

/// What an error looks like on the wire.
struct Wire {
    status: StatusCode,
    code: &'static str,
    outcome: Outcome,
    retry_after: bool,
}

impl RouterError {
    /// The one mapping from causes to status, error code and outcome.
    fn wire(&self) -> Wire {
        use RouterError as E;
        let w = |status, code, outcome| Wire {
            status,
            code,
            outcome,
            retry_after: false,
        };
        let again = |status, code, outcome| Wire {
            status,
            code,
            outcome,
            retry_after: true,
        };
        match self {
            E::NoRoute(_) => w(StatusCode::NOT_FOUND, "NotFound", Outcome::NotFound),
            E::NoSuchJob(_) => w(StatusCode::NOT_FOUND, "NotFound", Outcome::NotFound),
            E::UnknownModel(_) => w(StatusCode::NOT_FOUND, "ValidationError", Outcome::NotFound),
            E::AccessDenied { .. } => w(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                Outcome::Denied,
            ),
            E::Iam(super::iam::IamError::Refused(_)) => w(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                Outcome::Denied,
            ),
            E::Iam(super::iam::IamError::Unavailable(_)) => again(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                Outcome::Unavailable,
            ),
            E::Method { .. } => w(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                Outcome::MethodNotAllowed,
            ),
            E::BadHeader(_)
            | E::TransferEncoding
            | E::BadLabel
            | E::UnknownClass { .. }
            | E::BadDeadline { .. }
            | E::BodyUnreadable(_)
            | E::Validation { .. } => w(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                Outcome::BadRequest,
            ),
            // As SageMaker answers a session it does not know (assumed).
            E::SessionEnded { .. } => w(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                Outcome::BadRequest,
            ),
            E::BodyTimeout(_) => w(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                Outcome::BodyTimeout,
            ),
            E::TooLarge { .. } => w(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ValidationError",
                Outcome::TooLarge,
            ),
            // 424 as SageMaker answers a container that timed out: a status
            // no SDK retries (boto3 resends 500, 502, 503 and 504 itself).
            E::Model { .. } | E::OutcomeUnknown { .. } => w(
                StatusCode::FAILED_DEPENDENCY,
                "ModelError",
                Outcome::ModelError,
            ),
            E::Throttled { .. } | E::CallerThrottled { .. } => again(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                Outcome::Throttled,
            ),
            E::ModelNotReady => again(
                StatusCode::TOO_MANY_REQUESTS,
                "ModelNotReadyException",
                Outcome::ModelNotReady,
            ),
            E::Draining | E::OverCapacity(_) => again(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                Outcome::Shed,
            ),
            E::Unavailable { .. } | E::NoEndpoint | E::JobStore(_) | E::JobResult(_) => again(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                Outcome::Unavailable,
            ),
            E::BadGateway { .. } => w(
                StatusCode::BAD_GATEWAY,
                "InternalFailure",
                Outcome::BadGateway,
            ),
            E::DeadlineExceeded => w(
                StatusCode::GATEWAY_TIMEOUT,
                "DeadlineExceeded",
                Outcome::DeadlineExceeded,
            ),
            E::JobFailed(_) => w(StatusCode::BAD_GATEWAY, "ModelError", Outcome::ModelError),
        }
    }
}

/// What the handler decided, before it becomes a response.
pub struct Reply<'a> {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: HeaderValue,
    /// Extra headers (a success's pass-through headers, `Location`...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub path: Option<Path>,
    pub region: Option<&'a str>,
    pub attempts: u32,
    pub outcome: Outcome,
}

impl<'a> Reply<'a> {
    /// An error reply (see the module doc for the shape).
    pub fn error(e: &RouterError) -> Self {
        let wire = e.wire();
        let message = e.to_string();
        let mut body = serde_json::json!({"__type": wire.code, "message": message});
        if let RouterError::Model { failure, .. } = e {
            // SageMaker's ModelError shape: the SDKs read these members.
            body["OriginalStatusCode"] = failure.original_status.into();
            body["OriginalMessage"] = failure.original_message.clone().into();
            body["LogStreamArn"] = failure.log_stream_arn.clone().into();
        }
        let mut headers = vec![(H_ERRORTYPE, HeaderValue::from_static(wire.code))];
        if let RouterError::OutcomeUnknown { .. } = e {
            headers.push((H_OUTCOME, HeaderValue::from_static("unknown")));
        }
        if let RouterError::Method { allow, .. } = e {
            headers.push((hyper::header::ALLOW, HeaderValue::from_static(allow)));
        }
        if wire.retry_after {
            headers.push((RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS)));
        }
        if let RouterError::TransferEncoding = e {
            // The body was not read: whatever follows on the connection
            // cannot be trusted to start a request. hyper closes after
            // answering with this.
            headers.push((hyper::header::CONNECTION, HeaderValue::from_static("close")));
        }
        Self {
            status: wire.status,
            body: Bytes::from(body.to_string()),
            content_type: JSON,
            headers,
            path: None,
            region: None,
            attempts: 0,
            outcome: wire.outcome,
        }
    }

    /// A plain 200 with a text body (`/ping`).
    pub fn ok_text(body: &'static str) -> Self {
        Self {
            status: StatusCode::OK,
            body: Bytes::from_static(body.as_bytes()),
            content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
            headers: Vec::new(),
            path: None,
            region: None,
            attempts: 0,
            outcome: Outcome::Ok,
        }
    }

    /// A model's answer: its body and the headers SageMaker passes back.
    pub fn answer(answer: crate::ports::inference::Answer) -> Self {
        let mut headers = Vec::with_capacity(2);
        if let Some(v) = answer.custom_attributes {
            headers.push((H_CUSTOM, v));
        }
        if let Some(v) = answer.invoked_variant {
            headers.push((H_VARIANT, v));
        }
        if let Some(v) = answer.new_session_id {
            headers.push((H_NEW_SESSION, v));
        }
        if let Some(v) = answer.closed_session_id {
            headers.push((H_CLOSED_SESSION, v));
        }
        Self {
            status: StatusCode::OK,
            body: answer.body,
            content_type: answer.content_type.unwrap_or(OCTETS),
            headers,
            path: None,
            region: None,
            attempts: 0,
            outcome: Outcome::Ok,
        }
    }

    /// `status` with a JSON body (SageMaker's `InvokeEndpointAsync`
    /// answer, for one).
    pub fn ok_json(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            body: Bytes::from(body.to_string()),
            content_type: JSON,
            headers: Vec::new(),
            path: None,
            region: None,
            attempts: 0,
            outcome: Outcome::Accepted,
        }
    }

    /// `202 Accepted` for a stored, submitted (or still running) job.
    pub fn accepted(job: &Job) -> Self {
        let location = format!("/v1/jobs/{}", job.id);
        let body = serde_json::json!({
            "id": job.id,
            "status": "in_progress",
            "location": location,
            "region": job.region,
        });
        let mut headers = vec![(H_JOB_STATUS, HeaderValue::from_static("in_progress"))];
        if let Ok(v) = HeaderValue::from_str(&location) {
            headers.push((hyper::header::LOCATION, v));
        }
        Self {
            status: StatusCode::ACCEPTED,
            body: Bytes::from(body.to_string()),
            content_type: JSON,
            headers,
            path: Some(Path::Batch),
            region: None,
            attempts: 0,
            outcome: Outcome::Accepted,
        }
    }

    /// Where the reply came from.
    pub fn at(mut self, path: Option<Path>, region: Option<&'a str>, attempts: u32) -> Self {
        self.path = path;
        self.region = region;
        self.attempts = attempts;
        self
    }

    /// The HTTP response, with the router's own headers.
    pub fn into_response(self, request_id: HeaderValue) -> HttpResponse {
        let mut r = Response::new(Full::new(self.body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.reserve(self.headers.len() + 5);
        h.insert(CONTENT_TYPE, self.content_type);
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        h.insert(H_REQUEST_ID, request_id);
        h.insert(
            H_PATH,
            HeaderValue::from_static(self.path.map_or("none", Path::as_str)),
        );
        h.insert(
            H_REGION,
            self.region
                .and_then(region_value)
                .unwrap_or(HeaderValue::from_static("none")),
        );
        h.insert(
            H_ATTEMPTS,
            match self.attempts {
                // The common counts without an allocation.
                0 => HeaderValue::from_static("0"),
                1 => HeaderValue::from_static("1"),
                2 => HeaderValue::from_static("2"),
                n => HeaderValue::from(n),
            },
        );
        r
    }
}

/// `region` as a header value, kept per thread: a region's name is one of
/// a handful, so a copy of the name per response is saved (a clone is a
/// reference count on this thread's copy).
pub(super) fn region_value(region: &str) -> Option<HeaderValue> {
    /// Names kept at most (more regions than this are unlikely; a full
    /// cache starts again).
    const KEPT: usize = 32;
    thread_local! {
        static VALUES: std::cell::RefCell<Vec<(Box<str>, HeaderValue)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    VALUES.with_borrow_mut(|values| {
        if let Some((_, v)) = values.iter().find(|(r, _)| **r == *region) {
            return Some(v.clone());
        }
        let v = HeaderValue::from_str(region).ok()?;
        if values.len() >= KEPT {
            values.clear();
        }
        values.push((region.into(), v.clone()));
        Some(v)
    })
}

impl<'a> From<RouterError> for Reply<'a> {
    fn from(e: RouterError) -> Self {
        Reply::error(&e)
    }
}

/// `application/vnd.amazon.eventstream` messages, as SageMaker's response
/// stream sends them (`InvokeEndpointWithResponseStream`; the router
/// re-encodes each event it passes on, and the lab's model server encodes
/// its own with it), framed by the SDK's codec.
pub mod event_stream {
    use bytes::Bytes;

    /// A `PayloadPart` event carrying `bytes`.
    pub fn payload_part(bytes: &[u8]) -> Bytes {
        message(
            &[
                (":event-type", "PayloadPart"),
                (":content-type", "application/octet-stream"),
                (":message-type", "event"),
            ],
            bytes,
        )
    }

    /// An in-band error event (`ModelStreamError`, `InternalStreamFailure`).
    pub fn exception(kind: &str, body: &serde_json::Value) -> Bytes {
        message(
            &[
                (":exception-type", kind),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// One message with string headers, framed by the SDK's own
    /// event-stream codec (`aws-smithy-eventstream`: prelude, headers,
    /// payload and both CRC-32s), the one the client's SDK decodes with.
    pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
        use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
        let message = headers.iter().fold(
            Message::new(Bytes::copy_from_slice(payload)),
            |m, (name, value)| {
                m.add_header(Header::new(
                    name.to_string(),
                    HeaderValue::String(value.to_string().into()),
                ))
            },
        );
        let mut out = Vec::with_capacity(16 + payload.len() + 96);
        // Fails only for a header or payload over the format's limits
        // (16 MB payload, 128 KB headers); parts and errors are far below.
        match aws_smithy_eventstream::frame::write_message_to(&message, &mut out) {
            Ok(()) => Bytes::from(out),
            Err(e) => {
                tracing::error!(error = %e, "event-stream message over the format's limits");
                Bytes::new()
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use aws_smithy_eventstream::frame::read_message_from;

        #[test]
        fn messages_decode_with_the_sdks_codec() {
            let mut m = super::payload_part(b"{\"part\":1}");
            let back = read_message_from(&mut m).unwrap();
            assert_eq!(back.payload().as_ref(), b"{\"part\":1}");
            let kind = back
                .headers()
                .iter()
                .find(|h| h.name().as_str() == ":event-type")
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_string());
            assert_eq!(kind.as_deref(), Some("PayloadPart"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Reply) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn model_errors_are_424_with_the_original_status() {
        let r = Reply::error(&RouterError::Model {
            region: "us-east-1".into(),
            failure: Box::new(ModelFailure {
                original_status: Some(418),
                original_message: Some("teapot".into()),
                log_stream_arn: Some("arn:aws:logs:x".into()),
                message: None,
            }),
            message: "Received client error (418) from primary".into(),
        });
        assert_eq!(r.status, StatusCode::FAILED_DEPENDENCY);
        let b = body(&r);
        assert_eq!(b["__type"], "ModelError");
        assert_eq!(b["OriginalStatusCode"], 418);
        assert_eq!(b["OriginalMessage"], "teapot");
        assert_eq!(b["LogStreamArn"], "arn:aws:logs:x");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == H_ERRORTYPE && v == "ModelError")
        );
    }

    #[test]
    fn refusals_that_may_succeed_later_say_when() {
        for e in [
            RouterError::Draining,
            RouterError::OverCapacity(1),
            RouterError::ModelNotReady,
            RouterError::Throttled { region: "r".into() },
        ] {
            let r = Reply::error(&e);
            assert!(
                r.headers.iter().any(|(k, _)| k == RETRY_AFTER),
                "{e}: {:?}",
                r.status
            );
        }
        let r = Reply::error(&RouterError::TooLarge {
            len: Some(7),
            limit: 6,
            hint: "",
        });
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body(&r)["__type"], "ValidationError");
        assert_eq!(
            body(&r)["message"],
            "the 7-byte payload is over the 6-byte limit"
        );
    }
}
