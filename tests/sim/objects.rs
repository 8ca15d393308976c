//! The router's other ports, faked: S3 (`Blobs`), the batch job items
//! (`JobStore`) and the seed's routing table (`RoutingTable`).
//!
//! Blobs and jobs are plain maps shared by the fleet (one S3 and one
//! control table): the simulated clients send small bodies, so the batch
//! path runs only when a cold model makes the native API fall back to it,
//! and what matters there is that a submission is durable and answered
//! once. They take no network faults: S3 is not one of the world's
//! services, and a job write is not what the simulation studies.
//!
//! The routing table is a DynamoDB read, so it goes through the world as
//! the caller's `Store` link: a router cut off from DynamoDB keeps its
//! last thresholds, as `Router::refresh_routing_table` promises.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use failoverd::ports::blobs::{BlobError, Blobs, Object};
use failoverd::ports::jobs::{Job, JobStore, JobStoreError, TableRef};
use failoverd::ports::routing_table::{RoutingTable, RoutingTableError};

use super::world::{Caller, Fault, Svc, World};

/// Every region's buckets: (region, bucket, key) -> object.
#[derive(Default)]
pub struct FakeBlobs {
    objects: Mutex<BTreeMap<(String, String, String), Object>>,
}

#[async_trait]
impl Blobs for FakeBlobs {
    async fn put(
        &self,
        region: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<(), BlobError> {
        self.objects.lock().unwrap().insert(
            (region.into(), bucket.into(), key.into()),
            Object {
                body,
                content_type: content_type.map(str::to_string),
            },
        );
        Ok(())
    }

    async fn get(
        &self,
        region: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Object>, BlobError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&(region.into(), bucket.into(), key.into()))
            .cloned())
    }
}

/// The job items: (table, id) -> job (one control table for the fleet).
#[derive(Default)]
pub struct FakeJobs {
    jobs: Mutex<BTreeMap<(String, String), Job>>,
}

#[async_trait]
impl JobStore for FakeJobs {
    async fn put(&self, table: TableRef<'_>, job: &Job) -> Result<(), JobStoreError> {
        self.jobs
            .lock()
            .unwrap()
            .insert((table.name.into(), job.id.clone()), job.clone());
        Ok(())
    }

    async fn get(&self, table: TableRef<'_>, id: &str) -> Result<Option<Job>, JobStoreError> {
        Ok(self
            .jobs
            .lock()
            .unwrap()
            .get(&(table.name.into(), id.into()))
            .cloned())
    }
}

/// The routing table as one caller reads it.
pub struct RoutingTableClient {
    pub world: Arc<World>,
    pub caller: Caller,
    /// What the table holds: batch threshold (bytes) by traffic class.
    pub thresholds: HashMap<String, u64>,
}

#[async_trait]
impl RoutingTable for RoutingTableClient {
    async fn batch_thresholds(
        &self,
        table: TableRef<'_>,
    ) -> Result<HashMap<String, u64>, RoutingTableError> {
        let read_error = |e: String| RoutingTableError::Read {
            table: table.name.to_string(),
            region: table.region.to_string(),
            source: Box::new(Fault(e)),
        };
        let a = self
            .world
            .send(&self.caller, Svc::Store)
            .await
            .map_err(|e| read_error(format!("{e:?}")))?;
        let out = self.thresholds.clone();
        self.world
            .reply(a, false)
            .await
            .map_err(|e| read_error(format!("{e:?}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::world::Link;

    #[test]
    fn objects_jobs_and_the_routing_table() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let blobs = FakeBlobs::default();
            assert_eq!(blobs.get("r", "b", "k").await.unwrap(), None);
            blobs
                .put("r", "b", "k", Bytes::from_static(b"x"), Some("text/plain"))
                .await
                .unwrap();
            let o = blobs.get("r", "b", "k").await.unwrap().unwrap();
            assert_eq!(
                (&o.body[..], o.content_type.as_deref()),
                (&b"x"[..], Some("text/plain"))
            );
            assert_eq!(
                blobs.get("other", "b", "k").await.unwrap(),
                None,
                "buckets are regional"
            );

            let jobs = FakeJobs::default();
            let t = TableRef {
                name: "t",
                region: "r",
            };
            let job = Job {
                id: "j".into(),
                model: "m".into(),
                region: "r".into(),
                endpoint: "e".into(),
                input: "s3://b/k".into(),
                output: None,
                failure: None,
                created_at: 1,
            };
            jobs.put(t, &job).await.unwrap();
            assert_eq!(jobs.get(t, "j").await.unwrap(), Some(job));
            assert_eq!(jobs.get(t, "k").await.unwrap(), None);

            let world = World::new(9);
            let table = RoutingTableClient {
                world: world.clone(),
                caller: Caller::Harness,
                thresholds: HashMap::from([("standard".to_string(), 100)]),
            };
            assert_eq!(table.batch_thresholds(t).await.unwrap()["standard"], 100);
            world.set_link("harness", Svc::Store, Link::Refused);
            assert!(matches!(
                table.batch_thresholds(t).await,
                Err(RoutingTableError::Read { .. })
            ));
        });
    }
}
