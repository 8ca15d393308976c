//! S3 adapter: the [`Blobs`] port (the batch path's payloads and results)
//! over the real SDK client of each region, and bootstrap of the router's
//! batch buckets (the lab and first deploys).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use bytes::Bytes;

use super::AwsClients;
use crate::ports::blobs::{BlobError, BlobOp, Blobs, Object};

/// The [`Blobs`] port over S3.
pub struct S3Blobs {
    clients: Arc<AwsClients>,
}

impl S3Blobs {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }
}

fn blob_error(
    op: BlobOp,
    region: &str,
    bucket: &str,
    key: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> BlobError {
    BlobError {
        op,
        region: region.to_string(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        source: Box::new(source),
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(
        &self,
        region: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<(), BlobError> {
        self.clients
            .s3(region)
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_string))
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| blob_error(BlobOp::Put, region, bucket, key, e))
    }

    async fn get(
        &self,
        region: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Object>, BlobError> {
        match self
            .clients
            .s3(region)
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => {
                let content_type = o.content_type.clone();
                let body = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| blob_error(BlobOp::Get, region, bucket, key, e))?
                    .into_bytes();
                Ok(Some(Object { body, content_type }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            // S3 answers a key that does not exist with 403 AccessDenied to a
            // caller without s3:ListBucket on the bucket: say so, or a result
            // not written yet reads as an unexplained failure forever.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("AccessDenied") => {
                Err(blob_error(
                    BlobOp::Get,
                    region,
                    bucket,
                    key,
                    AccessDeniedOnRead {
                        bucket: bucket.to_string(),
                        source: Box::new(e),
                    },
                ))
            }
            Err(e) => Err(blob_error(BlobOp::Get, region, bucket, key, e)),
        }
    }
}

/// S3 answered a GetObject with 403 AccessDenied. For a caller with
/// s3:GetObject that is what S3 answers when the key does not exist and the
/// caller lacks s3:ListBucket on the bucket (the GetObject API reference,
/// "Permissions"): a batch result not written yet, or a failed job's output.
#[derive(Debug, thiserror::Error)]
#[error(
    "S3 answered 403 AccessDenied reading bucket {bucket}: missing s3:ListBucket? Without it S3 \
     answers a key that does not exist yet with 403, not 404 (deploy/cloudformation/iam.yaml \
     grants it in BatchResultsNotFound)"
)]
pub struct AccessDeniedOnRead {
    pub bucket: String,
    #[source]
    pub source: crate::ports::BoxError,
}

/// S3 refused to create a bucket (the SDK's error, with its chain, is the source).
#[derive(Debug, thiserror::Error)]
#[error("S3 CreateBucket {bucket} in {region}")]
pub struct EnsureBucketError {
    pub bucket: String,
    pub region: String,
    #[source]
    pub source: crate::ports::BoxError,
}

/// Create `bucket` in `region` unless it exists (idempotent).
pub async fn ensure_bucket(
    client: &Client,
    bucket: &str,
    region: &str,
) -> Result<(), EnsureBucketError> {
    let mut req = client.create_bucket().bucket(bucket);
    // us-east-1 takes no location constraint; every other region needs one.
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(EnsureBucketError {
            bucket: bucket.to_string(),
            region: region.to_string(),
            source: Box::new(e),
        }),
    }
}
