//! `GET /v1/jobs/{id}`: a batch job's status from the job store and the
//! blob store, so any daemon answers for any job, also after a restart.
//! `202` (with `Retry-After`) while it runs, `200` with the result, `502`
//! `ModelError` with the failure, `404` for no such job, `503` when the
//! stores cannot be read now.

use hyper::StatusCode;
use hyper::header::{HeaderValue, RETRY_AFTER};
use tracing::warn;

use super::batch::{self, JobState, PollError};
use super::reply::{H_JOB_STATUS, RETRY_AFTER_SECS, Reply, RouterError};
use crate::config::Config;
use crate::core::routing::Path;
use crate::error_chain;
use crate::metrics::router::Outcome;
use crate::ports::blobs::Blobs;
use crate::ports::jobs::JobStore;

/// Answer a poll of job `id`. The reply's region is the job's, owned by
/// the caller's buffer (`region`) so the reply can borrow it.
pub async fn poll<'a>(
    blobs: &dyn Blobs,
    jobs: &dyn JobStore,
    cfg: &Config,
    id: &str,
    region: &'a mut String,
) -> Reply<'a> {
    if !batch::is_job_id(id) {
        return RouterError::NoSuchJob(id.to_string()).into();
    }
    let state = match batch::poll(blobs, jobs, cfg, id).await {
        Ok(Some(s)) => s,
        Ok(None) => return RouterError::NoSuchJob(id.to_string()).into(),
        Err(e) => {
            warn!(job = id, error = %error_chain(&e), "cannot read a batch job");
            return match e {
                PollError::Store(e) => RouterError::JobStore(e).into(),
                PollError::Result(e) => RouterError::JobResult(e).into(),
                PollError::BadLocation { .. } => RouterError::JobFailed(e.to_string()).into(),
            };
        }
    };
    let reply = match state {
        JobState::Pending(job) => {
            *region = job.region.clone();
            let mut r = Reply::accepted(&job);
            r.headers
                .push((RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS)));
            r
        }
        JobState::Done {
            job,
            body,
            content_type,
        } => {
            *region = job.region;
            Reply {
                status: StatusCode::OK,
                body,
                content_type: content_type
                    .and_then(|c| HeaderValue::try_from(c).ok())
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
                headers: vec![(H_JOB_STATUS, HeaderValue::from_static("completed"))],
                path: None,
                region: None,
                attempts: 0,
                outcome: Outcome::Ok,
            }
        }
        JobState::Failed { job, body } => {
            *region = job.region;
            let mut r = Reply::error(&RouterError::JobFailed(
                String::from_utf8_lossy(&body).into_owned(),
            ));
            r.headers
                .push((H_JOB_STATUS, HeaderValue::from_static("failed")));
            r
        }
    };
    let region: &'a String = region;
    reply.at(Some(Path::Batch), Some(region.as_str()), 0)
}
