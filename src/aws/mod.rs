//! Adapters to AWS: one file per service, each behind a narrow surface that
//! the daemon uses. The clients are the real SDK clients everywhere; the only
//! thing that differs in the lab is the endpoint URL, and that comes from the
//! configuration's `[endpoints]` table, never from code that knows about a lab.

pub mod clients;
pub mod control_table;
pub mod dynamo;
pub mod errors;
pub mod jobs;
pub mod route53;
pub mod runtime;
pub mod s3;
pub mod sagemaker;
pub mod sfn;
pub mod sigv4;

pub use clients::AwsClients;
