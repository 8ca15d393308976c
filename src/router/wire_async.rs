//! `POST /endpoints/{model}/async-invocations`: SageMaker's
//! `InvokeEndpointAsync` on the wire, so that boto3's `invoke_endpoint_async`
//! works through the router as against SageMaker.
//!
//! The request carries no body: the payload is already in S3
//! (`X-Amzn-SageMaker-InputLocation`). The router reads the documented
//! headers (`-Content-Type`, `-Accept`, `-Custom-Attributes`,
//! `-Inference-Id`, `-InputLocation`, `-RequestTTLSeconds`,
//! `-InvocationTimeoutSeconds`), tries the regions in the request's ranking
//! on each one's async endpoint (`sagemaker.batch`), and answers as
//! SageMaker does: `202` with `X-Amzn-SageMaker-OutputLocation`,
//! `X-Amzn-SageMaker-FailureLocation` and `{"InferenceId": ...}`.
//!
//! **An input in another region's bucket.** When the region that takes the
//! request is not the one whose failoverd bucket (`router.batch_bucket_prefix`
//! and the region's name) holds the input, the router copies the input into the
//! target region's bucket (`async-inputs/{inference id}`) and sends that
//! location: the target's endpoint then reads from its own region (its
//! execution role, its bucket policy, its KMS key), whatever happened to
//! the first region. Any other location (the client's own bucket, an
//! `https://` URL) is passed unchanged, for SageMaker to read across
//! regions. docs/router.md ("Asynchronous inference") says who pays.
//!
//! No hedging, no retries at the same target: an `InvokeEndpointAsync`
//! queues a request, and queuing it twice runs it twice. The next region is
//! tried only after a failure that says the target is unwell (outage,
//! missing endpoint, no connection); for a model with `idempotent = false`
//! only when the call certainly did not reach SageMaker.

use std::time::Duration;

use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};
use tokio::time::Instant;
use tracing::{debug, info};

use super::Router;
use super::batch;
use super::reply::{Reply, RouterError};
use super::targets::{self, Ranking};
use crate::config::{Config, ModelConfig};
use crate::core::retry::{self, AttemptPolicy};
use crate::core::routing::{Available, Path};
use crate::metrics::router::CallResult;
use crate::ports::blobs::BlobError;
use crate::ports::inference::{AsyncInvocation, AsyncLimits, InvokeError};

const H_CONTENT_TYPE: HeaderName = HeaderName::from_static("x-amzn-sagemaker-content-type");
const H_ACCEPT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-accept");
const H_CUSTOM: HeaderName = HeaderName::from_static("x-amzn-sagemaker-custom-attributes");
const H_INFERENCE_ID: HeaderName = HeaderName::from_static("x-amzn-sagemaker-inference-id");
const H_INPUT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-inputlocation");
const H_TTL: HeaderName = HeaderName::from_static("x-amzn-sagemaker-requestttlseconds");
const H_TIMEOUT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-invocationtimeoutseconds");
/// The answer's headers.
pub(super) const H_OUTPUT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-outputlocation");
pub(super) const H_FAILURE: HeaderName =
    HeaderName::from_static("x-amzn-sagemaker-failurelocation");

/// Only the async endpoint.
fn async_only(a: Available) -> Available {
    Available {
        serverless: false,
        provisioned: false,
        batch: a.batch,
    }
}

/// An `InvokeEndpointAsync` request, parsed.
#[derive(Debug)]
struct AsyncAsk {
    input: String,
    inference_id: String,
    content_type: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    custom_attributes: Option<HeaderValue>,
    limits: AsyncLimits,
}

fn invalid(message: String) -> RouterError {
    RouterError::Validation {
        region: "-".into(),
        message,
    }
}

/// A header as visible ASCII, if present.
fn text<'h>(h: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, RouterError> {
    h.get(name)
        .map(|v| v.to_str().map_err(|_| RouterError::BadHeader(name.clone())))
        .transpose()
}

/// A whole number of seconds in `range`, if present.
fn seconds(
    h: &HeaderMap,
    name: &HeaderName,
    range: std::ops::RangeInclusive<i32>,
) -> Result<Option<i32>, RouterError> {
    let Some(t) = text(h, name)? else {
        return Ok(None);
    };
    match t.trim().parse::<i32>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(invalid(format!(
            "{name}: {t:?} is not a whole number of seconds in {}..={}",
            range.start(),
            range.end()
        ))),
    }
}

/// The request's headers, refused as SageMaker refuses them (400
/// `ValidationError`): no `InputLocation`, a location that is not `s3://`
/// or `https://`, limits out of their documented ranges.
fn parse(h: &HeaderMap, new_id: impl FnOnce() -> String) -> Result<AsyncAsk, RouterError> {
    let input = text(h, &H_INPUT)?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(format!("{H_INPUT} is required: the S3 URI of the payload")))?;
    if !(input.starts_with("s3://") || input.starts_with("https://")) {
        return Err(invalid(format!(
            "{H_INPUT}: {input:?} is not an s3:// or https:// location"
        )));
    }
    let inference_id = match text(h, &H_INFERENCE_ID)?.map(str::trim) {
        Some(id) if !id.is_empty() && id.len() <= 64 => id.to_string(),
        Some(id) if !id.is_empty() => {
            return Err(invalid(format!(
                "{H_INFERENCE_ID}: longer than 64 characters ({})",
                id.len()
            )));
        }
        _ => new_id(),
    };
    let pass = |name: &HeaderName| -> Result<Option<HeaderValue>, RouterError> {
        text(h, name)?;
        Ok(h.get(name).cloned())
    };
    Ok(AsyncAsk {
        input: input.to_string(),
        inference_id,
        content_type: pass(&H_CONTENT_TYPE)?,
        accept: pass(&H_ACCEPT)?,
        custom_attributes: pass(&H_CUSTOM)?,
        limits: AsyncLimits {
            request_ttl_seconds: seconds(h, &H_TTL, 60..=21_600)?,
            invocation_timeout_seconds: seconds(h, &H_TIMEOUT, 1..=3_600)?,
        },
    })
}

/// The region whose failoverd bucket holds `input`, and the object's key.
fn home<'c>(cfg: &'c Config, input: &'c str) -> Option<(&'c str, &'c str, &'c str)> {
    let (bucket, key) = batch::parse_s3_uri(input)?;
    cfg.regions
        .iter()
        .find(|r| batch::bucket(cfg, &r.name) == bucket)
        .map(|r| (r.name.as_str(), bucket, key))
}

/// What went wrong with one region.
#[derive(Debug, thiserror::Error)]
enum AsyncFailure {
    #[error(transparent)]
    Invoke(InvokeError),
    #[error("cannot copy the input into this region's bucket")]
    Copy(#[source] BlobError),
    #[error("no answer within the attempt's {0:?}")]
    TimedOut(Duration),
}

impl Router {
    /// `InvokeEndpointAsync` through the regions (see the module doc).
    pub(super) async fn route_async<'c>(
        &self,
        cfg: &'c Config,
        model: &'c ModelConfig,
        headers: &HeaderMap,
        started: Instant,
    ) -> Reply<'c> {
        let wall_ms = self.clock.wall_ms();
        let ask = match parse(headers, || batch::new_job_id(wall_ms)) {
            Ok(a) => a,
            Err(e) => return Reply::from(e),
        };
        let deadline = started + cfg.router.default_deadline;
        let now = self.clock.now();
        let mono_ms = self.clock.mono_ms_at(now);
        let ranking = Ranking {
            cfg,
            model,
            class: &model.traffic_class,
            len: 0,
            threshold: 0,
            mask: async_only,
            lease_now: self.clock.lease_mono(now),
            now_ms: mono_ms,
        };
        let order = targets::rank(&self.shared, &self.targets, &ranking);
        let policy = AttemptPolicy {
            fixed: model.attempt_timeout,
            fraction: cfg.router.attempt_timeout_fraction,
            min: cfg.router.attempt_timeout_min,
            max: cfg.router.attempt_timeout_max,
        };
        let mut attempts = 0u32;
        let mut last: Option<(&'c str, AsyncFailure)> = None;
        for i in order {
            let region_cfg = &cfg.regions[i];
            let Some(target) = model.in_region(i).and_then(|s| s.batch.as_ref()) else {
                continue;
            };
            let endpoint = target.endpoint.as_str();
            let region: &'c str = &region_cfg.name;
            let at = self.clock.now();
            if at >= deadline {
                return Reply::from(RouterError::DeadlineExceeded).at(
                    Some(Path::Batch),
                    Some(region),
                    attempts,
                );
            }
            attempts += 1;
            let timeout = retry::attempt_timeout(deadline.saturating_duration_since(at), &policy);
            let result = tokio::time::timeout_at(
                at + timeout,
                self.submit_async(cfg, region, endpoint, &ask),
            )
            .await
            .unwrap_or(Err(AsyncFailure::TimedOut(timeout)));
            let ended = self.clock.mono_ms();
            match result {
                Ok((input, accepted)) => {
                    self.metrics.call(Path::Batch, region, CallResult::Ok);
                    self.targets
                        .success(cfg, ended, target, self.clock.since(at));
                    if input != ask.input {
                        info!(model = %model.name, region, from = %ask.input, to = %input, "async input copied into the serving region's bucket");
                    }
                    return accepted_reply(&ask.inference_id, &accepted).at(
                        Some(Path::Batch),
                        Some(region),
                        attempts,
                    );
                }
                Err(e) => {
                    debug!(region, attempts, error = %crate::error_chain(&e), "async attempt failed");
                    let result = match &e {
                        AsyncFailure::Invoke(ie) => super::call_result(ie),
                        AsyncFailure::Copy(_) => CallResult::Other,
                        AsyncFailure::TimedOut(_) => CallResult::Timeout,
                    };
                    self.metrics.call(Path::Batch, region, result);
                    let unwell = match &e {
                        AsyncFailure::Invoke(ie) => ie.is_target_failure(),
                        AsyncFailure::Copy(_) => false,
                        AsyncFailure::TimedOut(_) => true,
                    };
                    if unwell {
                        self.targets.failure(
                            cfg,
                            &self.metrics,
                            ended,
                            region,
                            Path::Batch,
                            target,
                        );
                    }
                    let may_have_run = match &e {
                        AsyncFailure::Invoke(ie) => ie.outcome_unknown(),
                        AsyncFailure::Copy(_) => false,
                        AsyncFailure::TimedOut(_) => true,
                    };
                    if may_have_run && !model.idempotent {
                        return Reply::from(RouterError::OutcomeUnknown {
                            region: region.to_string(),
                            source: Box::new(e),
                        })
                        .at(Some(Path::Batch), Some(region), attempts);
                    }
                    let answer = match e {
                        AsyncFailure::Invoke(InvokeError::Throttled { .. }) => {
                            Some(RouterError::Throttled {
                                region: region.to_string(),
                            })
                        }
                        AsyncFailure::Invoke(InvokeError::Validation { message }) => {
                            Some(RouterError::Validation {
                                region: region.to_string(),
                                message,
                            })
                        }
                        AsyncFailure::Invoke(InvokeError::Model(failure)) => {
                            Some(RouterError::Model {
                                message: failure
                                    .message
                                    .clone()
                                    .unwrap_or_else(|| "the model answered an error".into()),
                                failure: Box::new(failure),
                                region: region.to_string(),
                            })
                        }
                        AsyncFailure::Invoke(source @ InvokeError::Other { .. }) => {
                            Some(RouterError::BadGateway {
                                region: region.to_string(),
                                source,
                            })
                        }
                        other => {
                            last = Some((region, other));
                            None
                        }
                    };
                    if let Some(err) = answer {
                        return Reply::from(err).at(Some(Path::Batch), Some(region), attempts);
                    }
                }
            }
        }
        match last {
            Some((region, e)) => Reply::from(RouterError::Unavailable {
                region: region.to_string(),
                path: Path::Batch,
                source: Box::new(e),
            })
            .at(Some(Path::Batch), Some(region), attempts),
            None => Reply::from(RouterError::NoEndpoint),
        }
    }

    /// The input as `region` should read it (copied there if it lives in
    /// another region's bucket), then `InvokeEndpointAsync`.
    async fn submit_async(
        &self,
        cfg: &Config,
        region: &str,
        endpoint: &str,
        ask: &AsyncAsk,
    ) -> Result<(String, crate::ports::inference::AsyncAccepted), AsyncFailure> {
        let input = match home(cfg, &ask.input) {
            Some((from, bucket, key)) if from != region => {
                let object = self
                    .ports
                    .blobs
                    .get(from, bucket, key)
                    .await
                    .map_err(AsyncFailure::Copy)?
                    .ok_or_else(|| {
                        AsyncFailure::Invoke(InvokeError::Validation {
                            message: format!("no object at the InputLocation {}", ask.input),
                        })
                    })?;
                let to_bucket = batch::bucket(cfg, region);
                let to_key = format!("async-inputs/{}", ask.inference_id);
                self.ports
                    .blobs
                    .put(
                        region,
                        &to_bucket,
                        &to_key,
                        object.body,
                        object.content_type.as_deref(),
                    )
                    .await
                    .map_err(AsyncFailure::Copy)?;
                format!("s3://{to_bucket}/{to_key}")
            }
            _ => ask.input.clone(),
        };
        self.shared
            .traffic
            .record(region, endpoint, self.clock.lease_mono(self.clock.now()));
        let accepted = self
            .ports
            .inference
            .invoke_async_limited(
                region,
                endpoint,
                &AsyncInvocation {
                    input_location: &input,
                    inference_id: &ask.inference_id,
                    content_type: ask.content_type.as_ref(),
                    accept: ask.accept.as_ref(),
                    custom_attributes: ask.custom_attributes.as_ref(),
                },
                ask.limits,
            )
            .await
            .map_err(AsyncFailure::Invoke)?;
        Ok((input, accepted))
    }
}

/// SageMaker's answer: `202`, the locations as headers, the id as the body.
fn accepted_reply<'c>(
    inference_id: &str,
    accepted: &crate::ports::inference::AsyncAccepted,
) -> Reply<'c> {
    let mut r = Reply::ok_json(
        hyper::StatusCode::ACCEPTED,
        serde_json::json!({ "InferenceId": inference_id }),
    );
    for (name, value) in [
        (H_OUTPUT, &accepted.output_location),
        (H_FAILURE, &accepted.failure_location),
    ] {
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            r.headers.push((name, v));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn parses_the_documented_headers_and_refuses_as_sagemaker_does() {
        let a = parse(
            &headers(&[
                ("x-amzn-sagemaker-inputlocation", "s3://b/in.json"),
                ("x-amzn-sagemaker-inference-id", "inf-1"),
                ("x-amzn-sagemaker-requestttlseconds", "600"),
                ("x-amzn-sagemaker-invocationtimeoutseconds", "30"),
                ("x-amzn-sagemaker-content-type", "application/json"),
            ]),
            || "generated".into(),
        )
        .unwrap();
        assert_eq!(a.input, "s3://b/in.json");
        assert_eq!(a.inference_id, "inf-1");
        assert_eq!(a.limits.request_ttl_seconds, Some(600));
        assert_eq!(a.limits.invocation_timeout_seconds, Some(30));
        assert_eq!(a.content_type.unwrap(), "application/json");
        let a = parse(
            &headers(&[("x-amzn-sagemaker-inputlocation", "s3://b/k")]),
            || "generated".into(),
        )
        .unwrap();
        assert_eq!(a.inference_id, "generated");
        for bad in [
            headers(&[]),
            headers(&[("x-amzn-sagemaker-inputlocation", "/local/file")]),
            headers(&[
                ("x-amzn-sagemaker-inputlocation", "s3://b/k"),
                ("x-amzn-sagemaker-requestttlseconds", "59"),
            ]),
            headers(&[
                ("x-amzn-sagemaker-inputlocation", "s3://b/k"),
                ("x-amzn-sagemaker-invocationtimeoutseconds", "soon"),
            ]),
        ] {
            let e = parse(&bad, || "x".into()).unwrap_err();
            assert!(matches!(e, RouterError::Validation { .. }), "{e:?}");
        }
    }
}
