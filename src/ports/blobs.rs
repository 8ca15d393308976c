//! Blobs: object storage for the batch path's payloads and results (S3).
//!
//! The router stores a payload before it submits an asynchronous
//! invocation, and reads the result object when a client polls. Buckets are
//! regional and named by the caller (`<router.batch_bucket_prefix>-<region>`);
//! the adapter is `aws::s3::S3Blobs`.

use async_trait::async_trait;
use bytes::Bytes;

use super::inference::BoxError;

/// An object's bytes and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub body: Bytes,
    pub content_type: Option<String>,
}

/// What a [`BlobError`] was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOp {
    Put,
    Get,
}

/// An object could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{op:?} s3://{bucket}/{key} in {region}")]
pub struct BlobError {
    pub op: BlobOp,
    pub region: String,
    pub bucket: String,
    pub key: String,
    #[source]
    pub source: BoxError,
}

/// Object storage, per region.
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Store `body` at `bucket/key` in `region` (overwriting).
    async fn put(
        &self,
        region: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<(), BlobError>;

    /// The object at `bucket/key` in `region`; `None` when it does not exist (yet).
    async fn get(&self, region: &str, bucket: &str, key: &str)
    -> Result<Option<Object>, BlobError>;
}
