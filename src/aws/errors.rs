//! One classification of AWS SDK errors, shared by every adapter.
//!
//! Callers decide on the *kind* of a failure (back off, re-read, try the
//! next region, give up), never on its text. The error codes come from the
//! service's response (`ProvideErrorMetadata::code`); transport failures
//! come from the `SdkError` variant. The throttling list is the union of
//! what the AWS SDKs' own retry classifiers treat as throttling, so that
//! Route 53's `PriorRequestNotComplete`, DynamoDB's
//! `ProvisionedThroughputExceededException` and SageMaker's unmodeled
//! `ThrottlingException` all back off the same way.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ports::PortError;

pub use crate::ports::ErrorKind;

/// Error codes the SDKs' retry classifiers treat as throttling.
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes that mean "someone else wrote first".
pub const CONFLICT_CODES: &[&str] = &[
    "ConditionalCheckFailedException",
    "ReplicatedWriteConflictException",
    "TransactionConflictException",
];

/// Is `code` a throttling code?
pub fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Classify an error code alone (for errors that carry no transport layer,
/// such as a Step Functions task failure or a fake's answer).
pub fn kind_of_code(code: &str) -> ErrorKind {
    if is_throttling_code(code) {
        ErrorKind::Throttled
    } else if CONFLICT_CODES.contains(&code) {
        ErrorKind::Conflict
    } else if code.starts_with("NoSuch")
        || code.ends_with("NotFoundException")
        || code.ends_with("DoesNotExist")
        || code == "ResourceNotFound"
    {
        ErrorKind::NotFound
    } else if matches!(
        code,
        "AccessDenied"
            | "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "SignatureDoesNotMatch"
    ) {
        ErrorKind::AccessDenied
    } else if code.starts_with("Validation") || code.starts_with("InvalidParameter") {
        ErrorKind::Validation
    } else if matches!(
        code,
        "InternalServerError"
            | "InternalFailure"
            | "InternalError"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "InternalDependencyException"
            | "InternalServerException"
    ) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Other
    }
}

/// Classify an SDK error (any service: `SdkError` is one generic type).
pub fn classify<E>(e: &SdkError<E, HttpResponse>) -> ErrorKind
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => ErrorKind::Transport,
        SdkError::ResponseError(_) => ErrorKind::Transport,
        SdkError::ServiceError(se) => match se.err().code() {
            Some(code) => match kind_of_code(code) {
                ErrorKind::Other if status_is_5xx(e) => ErrorKind::Unavailable,
                k => k,
            },
            None if status_is_5xx(e) => ErrorKind::Unavailable,
            None => ErrorKind::Other,
        },
        SdkError::ConstructionFailure(_) => ErrorKind::Validation,
        _ => ErrorKind::Other,
    }
}

/// A [`PortError`] for a failed SDK call: the kind from [`classify`], the
/// SDK error (with its whole context) as the source.
pub fn port_error<E>(
    service: &'static str,
    op: impl Into<String>,
    region: impl Into<String>,
    e: SdkError<E, HttpResponse>,
) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = classify(&e);
    PortError::new(service, op, region, kind, e)
}

fn status_is_5xx<E>(e: &SdkError<E, HttpResponse>) -> bool {
    e.raw_response()
        .is_some_and(|r| r.status().is_server_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classify() {
        for c in [
            "PriorRequestNotComplete",
            "ThrottlingException",
            "Throttling",
        ] {
            assert_eq!(kind_of_code(c), ErrorKind::Throttled, "{c}");
        }
        assert_eq!(
            kind_of_code("ProvisionedThroughputExceededException"),
            ErrorKind::Throttled
        );
        assert_eq!(
            kind_of_code("ReplicatedWriteConflictException"),
            ErrorKind::Conflict
        );
        assert_eq!(kind_of_code("NoSuchHealthCheck"), ErrorKind::NotFound);
        assert_eq!(
            kind_of_code("StateMachineDoesNotExist"),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_of_code("ResourceNotFoundException"),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_of_code("AccessDeniedException"),
            ErrorKind::AccessDenied
        );
        assert_eq!(kind_of_code("ValidationException"), ErrorKind::Validation);
        assert_eq!(kind_of_code("ServiceUnavailable"), ErrorKind::Unavailable);
        assert_eq!(kind_of_code("SomethingNew"), ErrorKind::Other);
    }
}
