//! The batch path: SageMaker asynchronous inference, made durable before
//! the client is answered (native API only).
//!
//! Submitting a job, in order (each step must succeed before the next):
//!
//! 1. the payload goes to the blob store in the serving region
//!    (`s3://<router.batch_bucket_prefix>-<region>/jobs/<id>/input`);
//! 2. a job item goes to the job store (the control table, `pk = "JOB"`,
//!    `sk = <id>`) with the region, endpoint and input location;
//! 3. `InvokeEndpointAsync` with that input location (the job id is the
//!    `InferenceId`);
//! 4. the item is updated with the output and failure locations SageMaker
//!    returned; only then is the client answered `202` with
//!    `Location: /v1/jobs/<id>`.
//!
//! A failure at any step answers nothing yet: the router tries the next
//! region (same job id, that region's bucket) and the item is overwritten.
//! So a job the client was told about is always in the job store with its
//! output location, and `GET /v1/jobs/<id>` works from any daemon, also
//! after a restart: everything is in DynamoDB and S3, nothing in memory.
//! The cost is at-least-once: a step-4 failure after step 3 worked leaves
//! a job that runs without the client knowing its id, and the client's
//! retry runs the model again. We preferred that to answering 202 for a
//! job whose output nobody could find.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::config::Config;
use crate::core::rand::{GOLDEN_GAMMA, splitmix64};
use crate::ports::blobs::{BlobError, Blobs};
use crate::ports::inference::{AsyncInvocation, Inference, Invocation, InvokeError};
use crate::ports::jobs::{Job, JobStore, JobStoreError, TableRef};

/// Why a submission failed (the router then tries the next region, unless
/// SageMaker called the request invalid).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("cannot store the payload")]
    Store(#[source] BlobError),
    #[error("cannot record the job")]
    Record(#[source] JobStoreError),
    #[error("InvokeEndpointAsync failed")]
    Submit(#[source] InvokeError),
    #[error("InvokeEndpointAsync answered without an OutputLocation")]
    NoOutputLocation,
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

/// Why a job could not be polled.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Store(#[from] JobStoreError),
    #[error(transparent)]
    Result(#[from] BlobError),
    #[error("job {id}: {location:?} is not an s3://bucket/key location")]
    BadLocation { id: String, location: String },
}

/// A job id: 128 bits from the wall clock (`now_ms`), the process and a
/// counter, mixed.
pub fn new_job_id(now_ms: u64) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let a = splitmix64(now_ms ^ u64::from(std::process::id()).rotate_left(32));
    let b = splitmix64(a ^ n.wrapping_mul(GOLDEN_GAMMA));
    format!("{a:016x}{b:016x}")
}

/// Whether `s` can be a job id (32 lowercase hex digits).
pub fn is_job_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The bucket for batch payloads in `region`.
pub fn bucket(cfg: &Config, region: &str) -> String {
    format!("{}-{region}", cfg.router.batch_bucket_prefix)
}

/// The job store's table and replica for this daemon.
pub fn job_table(cfg: &Config) -> TableRef<'_> {
    TableRef {
        name: &cfg.tables.control,
        region: cfg.control_region_for(&cfg.region),
    }
}

/// `s3://bucket/key` -> (bucket, key).
pub fn parse_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (b, k) = rest.split_once('/')?;
    (!b.is_empty() && !k.is_empty()).then_some((b, k))
}

/// What a submission needs.
pub struct Submission<'a> {
    pub cfg: &'a Config,
    pub region: &'a str,
    pub endpoint: &'a str,
    pub id: &'a str,
    pub model: &'a str,
    pub inv: &'a Invocation,
    pub now_ms: u64,
}

/// Store, record, submit and record again (see the module doc).
pub async fn submit(
    blobs: &dyn Blobs,
    jobs: &dyn JobStore,
    inference: &dyn Inference,
    s: Submission<'_>,
) -> Result<Job, SubmitError> {
    let bucket = bucket(s.cfg, s.region);
    let key = format!("jobs/{}/input", s.id);
    let content_type = s.inv.content_type.as_ref().and_then(|v| v.to_str().ok());
    blobs
        .put(s.region, &bucket, &key, s.inv.body.clone(), content_type)
        .await
        .map_err(SubmitError::Store)?;
    let mut job = Job {
        id: s.id.to_string(),
        model: s.model.to_string(),
        region: s.region.to_string(),
        endpoint: s.endpoint.to_string(),
        input: format!("s3://{bucket}/{key}"),
        output: None,
        failure: None,
        created_at: s.now_ms,
    };
    let table = job_table(s.cfg);
    jobs.put(table, &job).await.map_err(SubmitError::Record)?;
    let accepted = inference
        .invoke_async(
            s.region,
            s.endpoint,
            &AsyncInvocation {
                input_location: &job.input,
                inference_id: s.id,
                content_type: s.inv.content_type.as_ref(),
                accept: s.inv.accept.as_ref(),
                custom_attributes: s.inv.custom_attributes.as_ref(),
            },
        )
        .await
        .map_err(SubmitError::Submit)?;
    if accepted.output_location.is_none() {
        return Err(SubmitError::NoOutputLocation);
    }
    job.output = accepted.output_location;
    job.failure = accepted.failure_location;
    jobs.put(table, &job).await.map_err(SubmitError::Record)?;
    Ok(job)
}

/// The object at `uri` in `region`, if it exists.
async fn fetch(
    blobs: &dyn Blobs,
    job: &Job,
    uri: &str,
) -> Result<Option<crate::ports::blobs::Object>, PollError> {
    let (bucket, key) = parse_s3_uri(uri).ok_or_else(|| PollError::BadLocation {
        id: job.id.clone(),
        location: uri.to_string(),
    })?;
    Ok(blobs.get(&job.region, bucket, key).await?)
}

/// Where job `id` stands: `None` when there is no such job.
pub async fn poll(
    blobs: &dyn Blobs,
    jobs: &dyn JobStore,
    cfg: &Config,
    id: &str,
) -> Result<Option<JobState>, PollError> {
    let Some(job) = jobs.get(job_table(cfg), id).await? else {
        return Ok(None);
    };
    if let Some(out) = &job.output
        && let Some(o) = fetch(blobs, &job, out).await?
    {
        return Ok(Some(JobState::Done {
            job,
            body: o.body,
            content_type: o.content_type,
        }));
    }
    if let Some(f) = &job.failure
        && let Some(o) = fetch(blobs, &job, f).await?
    {
        return Ok(Some(JobState::Failed { job, body: o.body }));
    }
    Ok(Some(JobState::Pending(job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_locations() {
        let a = new_job_id(1);
        let b = new_job_id(1);
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
