//! The batch path: SageMaker asynchronous inference, made durable before
//! the client is answered.
//!
//! Submitting a job, in order (each step must succeed before the next):
//!
//! 1. the payload goes to S3 in the serving region
//!    (`s3://<router.batch_bucket_prefix>-<region>/jobs/<id>/input`);
//! 2. a job item goes to the control table (`pk = "JOB"`, `sk = <id>`) with
//!    the region, endpoint and input location;
//! 3. `InvokeEndpointAsync` with that input location (the job id is the
//!    `InferenceId`);
//! 4. the item is updated with the output and failure locations SageMaker
//!    returned; only then is the client answered `202` with
//!    `Location: /v1/jobs/<id>`.
//!
//! A failure at any step answers nothing yet: the router tries the next
//! region (same job id, that region's bucket) and the item is overwritten.
//! So a job the client was told about is always in DynamoDB with its
//! output location, and `GET /v1/jobs/<id>` works from any daemon, also
//! after a restart: everything is in DynamoDB and S3, nothing in memory.
//! The cost is at-least-once: a step-4 failure after step 3 worked leaves
//! a job that runs without the client knowing its id, and the client's
//! retry runs the model again. We preferred that to answering 202 for a
//! job whose output nobody could find.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sagemakerruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint_async::InvokeEndpointAsyncError;
use bytes::Bytes;
use serde::Serialize;

use super::invoke::{CallError, Invocation};
use crate::aws::AwsClients;
use crate::aws::control_table::now_ms;
use crate::config::Config;

/// The control table's partition for jobs.
pub const JOB_PK: &str = "JOB";

/// A batch job as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: String,
    pub model: String,
    pub region: String,
    pub endpoint: String,
    /// `s3://bucket/key` of the payload.
    pub input: String,
    /// Where SageMaker will write the result.
    pub output: Option<String>,
    /// Where SageMaker will write a failure.
    pub failure: Option<String>,
    pub created_at: u64,
}

/// Where a job stands when polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not finished (or not started).
    Pending(Job),
    /// The result object exists.
    Done {
        job: Job,
        body: Bytes,
        content_type: Option<String>,
    },
    /// The failure object exists.
    Failed { job: Job, body: Bytes },
}

/// A job id: 128 bits from the clock, the process and a counter, mixed.
pub fn new_job_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let a = mix(nanos ^ u64::from(std::process::id()).rotate_left(32));
    let b = mix(a ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    format!("{a:016x}{b:016x}")
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether `s` can be a job id (32 lowercase hex digits).
pub fn is_job_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The bucket for batch payloads in `region`.
pub fn bucket(cfg: &Config, region: &str) -> String {
    crate::aws::s3::batch_bucket(&cfg.router.batch_bucket_prefix, region)
}

/// `s3://bucket/key` -> (bucket, key).
pub fn parse_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (b, k) = rest.split_once('/')?;
    (!b.is_empty() && !k.is_empty()).then_some((b, k))
}

fn job_table(clients: &AwsClients, cfg: &Config) -> aws_sdk_dynamodb::Client {
    clients.dynamodb(cfg.control_region_for(&cfg.region))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn storage(what: &str, e: impl std::fmt::Display) -> CallError {
    CallError::Unavailable(format!("{what}: {e}"))
}

/// Store, record, submit and record again (see the module doc). Errors are
/// [`CallError`]s so the router treats them like any other call's.
pub async fn submit(
    clients: &AwsClients,
    cfg: &Config,
    region: &str,
    endpoint: &str,
    id: &str,
    inv: &Invocation,
) -> Result<Job, CallError> {
    let bucket = bucket(cfg, region);
    let key = format!("jobs/{id}/input");
    let mut put = clients
        .s3(region)
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(inv.body.to_vec().into());
    if let Some(ct) = &inv.content_type {
        put = put.content_type(ct);
    }
    put.send().await.map_err(|e| {
        storage(
            &format!("S3 PutObject s3://{bucket}/{key}"),
            aws_sdk_s3::error::DisplayErrorContext(&e),
        )
    })?;
    let mut job = Job {
        id: id.to_string(),
        model: inv.model.clone(),
        region: region.to_string(),
        endpoint: endpoint.to_string(),
        input: format!("s3://{bucket}/{key}"),
        output: None,
        failure: None,
        created_at: now_ms(),
    };
    put_job(clients, cfg, &job).await?;

    let mut req = clients
        .sagemaker_runtime(region)
        .invoke_endpoint_async()
        .endpoint_name(endpoint)
        .input_location(&job.input)
        .inference_id(id);
    if let Some(ct) = &inv.content_type {
        req = req.content_type(ct);
    }
    if let Some(a) = &inv.accept {
        req = req.accept(a);
    }
    if let Some(c) = &inv.custom_attributes {
        req = req.custom_attributes(c);
    }
    let out = req.send().await.map_err(classify_async)?;
    job.output = out.output_location;
    job.failure = out.failure_location;
    if job.output.is_none() {
        return Err(CallError::Other(
            "InvokeEndpointAsync answered without an OutputLocation".into(),
        ));
    }
    put_job(clients, cfg, &job).await?;
    Ok(job)
}

async fn put_job(clients: &AwsClients, cfg: &Config, job: &Job) -> Result<(), CallError> {
    let mut req = job_table(clients, cfg)
        .put_item()
        .table_name(&cfg.tables.control)
        .item("pk", s(JOB_PK))
        .item("sk", s(&job.id))
        .item("model", s(&job.model))
        .item("region", s(&job.region))
        .item("endpoint", s(&job.endpoint))
        .item("input", s(&job.input))
        .item("created_at", AttributeValue::N(job.created_at.to_string()));
    if let Some(o) = &job.output {
        req = req.item("output", s(o));
    }
    if let Some(f) = &job.failure {
        req = req.item("failure", s(f));
    }
    req.send().await.map(|_| ()).map_err(|e| {
        storage(
            &format!("DynamoDB PutItem JOB/{}", job.id),
            aws_sdk_dynamodb::error::DisplayErrorContext(&e),
        )
    })
}

/// Read a job's item.
pub async fn load(clients: &AwsClients, cfg: &Config, id: &str) -> Result<Option<Job>, String> {
    let out = job_table(clients, cfg)
        .get_item()
        .table_name(&cfg.tables.control)
        .key("pk", s(JOB_PK))
        .key("sk", s(id))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())?;
    let Some(item) = out.item else {
        return Ok(None);
    };
    let get = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    Ok(Some(Job {
        id: id.to_string(),
        model: get("model").unwrap_or_default(),
        region: get("region").unwrap_or_default(),
        endpoint: get("endpoint").unwrap_or_default(),
        input: get("input").unwrap_or_default(),
        output: get("output"),
        failure: get("failure"),
        created_at: match item.get("created_at") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        },
    }))
}

/// The object at `uri` in `region`, if it exists.
async fn fetch(
    clients: &AwsClients,
    region: &str,
    uri: &str,
) -> Result<Option<(Bytes, Option<String>)>, String> {
    let Some((bucket, key)) = parse_s3_uri(uri) else {
        return Err(format!("not an S3 location: {uri:?}"));
    };
    match clients
        .s3(region)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(o) => {
            let ct = o.content_type.clone();
            let body = o
                .body
                .collect()
                .await
                .map_err(|e| format!("reading {uri}: {e}"))?
                .into_bytes();
            Ok(Some((body, ct)))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(format!(
            "S3 GetObject {uri}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )),
    }
}

/// Where job `id` stands: `None` when there is no such job.
pub async fn poll(
    clients: &AwsClients,
    cfg: &Config,
    id: &str,
) -> Result<Option<JobState>, String> {
    let Some(job) = load(clients, cfg, id).await? else {
        return Ok(None);
    };
    if let Some(out) = &job.output {
        if let Some((body, content_type)) = fetch(clients, &job.region, out).await? {
            return Ok(Some(JobState::Done {
                job,
                body,
                content_type,
            }));
        }
    }
    if let Some(f) = &job.failure {
        if let Some((body, _)) = fetch(clients, &job.region, f).await? {
            return Ok(Some(JobState::Failed { job, body }));
        }
    }
    Ok(Some(JobState::Pending(job)))
}

/// `InvokeEndpointAsync`'s errors, the way [`super::invoke::classify`]
/// maps `InvokeEndpoint`'s.
fn classify_async(e: SdkError<InvokeEndpointAsyncError>) -> CallError {
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let err = se.into_err();
            let msg = format!(
                "{}: {}",
                err.code().unwrap_or("unknown"),
                err.message().unwrap_or("")
            );
            match &err {
                InvokeEndpointAsyncError::ValidationError(_) => CallError::Validation(msg),
                InvokeEndpointAsyncError::ServiceUnavailable(_)
                | InvokeEndpointAsyncError::InternalFailure(_) => CallError::Unavailable(msg),
                other if other.code() == Some("ThrottlingException") => CallError::Throttled(msg),
                _ if status >= 500 => CallError::Unavailable(msg),
                _ => CallError::Other(msg),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_locations() {
        let a = new_job_id();
        let b = new_job_id();
        assert!(is_job_id(&a) && is_job_id(&b), "{a} {b}");
        assert_ne!(a, b);
        assert!(!is_job_id("../etc/passwd"));
        assert!(!is_job_id(&a.to_uppercase()));
        assert_eq!(
            parse_s3_uri("s3://b-us-east-1/jobs/x/input"),
            Some(("b-us-east-1", "jobs/x/input"))
        );
        assert_eq!(parse_s3_uri("s3://b"), None);
        assert_eq!(parse_s3_uri("https://b/k"), None);
    }
}
