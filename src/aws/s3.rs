//! S3 adapter: bootstrap of the router's batch buckets (the lab and first
//! deploys). Object reads and writes live with the batch path in
//! `router::batch`.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

/// The batch bucket of a region.
pub fn batch_bucket(prefix: &str, region: &str) -> String {
    format!("{prefix}-{region}")
}

/// Create `bucket` in `region` unless it exists (idempotent).
pub async fn ensure_bucket(client: &Client, bucket: &str, region: &str) -> Result<(), String> {
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
        Err(e) => Err(format!(
            "S3 CreateBucket {bucket} in {region}: {}",
            DisplayErrorContext(&e)
        )),
    }
}
