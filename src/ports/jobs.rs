//! Jobs: the durable record of a batch request, so that `GET /v1/jobs/{id}`
//! answers from any daemon, also after a restart.
//!
//! A job lives in the control table (`pk = "JOB"`, `sk = <id>`, in the
//! replica the daemon uses); the adapter is `aws::jobs::DynamoJobs`. Which
//! table and replica is a parameter ([`TableRef`]): the configuration can
//! change on reload, the adapter holds no state.

use async_trait::async_trait;

use super::inference::BoxError;

/// A DynamoDB table in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRef<'a> {
    pub name: &'a str,
    pub region: &'a str,
}

/// A batch job as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Job {
    /// 32 lowercase hex digits.
    pub id: String,
    /// The configured model name.
    pub model: String,
    /// Where the job runs (and its payload and result are stored).
    pub region: String,
    pub endpoint: String,
    /// `s3://bucket/key` of the payload.
    pub input: String,
    /// Where SageMaker will write the result.
    pub output: Option<String>,
    /// Where SageMaker will write a failure.
    pub failure: Option<String>,
    /// Wall time, unix milliseconds.
    pub created_at: u64,
}

/// A job could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    #[error("cannot write job {id} to {table} in {region}")]
    Write {
        id: String,
        table: String,
        region: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot read job {id} from {table} in {region}")]
    Read {
        id: String,
        table: String,
        region: String,
        #[source]
        source: BoxError,
    },
    /// The item exists but cannot be a job: an error, never a default.
    #[error("job {id}'s item is malformed: attribute {attribute:?} is missing or not a {expected}")]
    Malformed {
        id: String,
        attribute: &'static str,
        expected: &'static str,
    },
}

/// The job store.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Write (or overwrite) `job`.
    async fn put(&self, table: TableRef<'_>, job: &Job) -> Result<(), JobStoreError>;

    /// Job `id`, with a strongly consistent read; `None` when there is none.
    async fn get(&self, table: TableRef<'_>, id: &str) -> Result<Option<Job>, JobStoreError>;
}
