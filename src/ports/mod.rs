//! Ports: the narrow traits through which the daemon reaches everything
//! outside itself (AWS and the clock).
//!
//! The reconcile loop, token workers, executor, CLI and router take these
//! traits, never SDK clients. `src/aws/` implements them over the real SDK
//! clients (the only implementation the binary uses); the deterministic
//! simulation (`tests/sim/`) implements them with fakes that fail the way
//! AWS documents, on a paused tokio clock. `src/core/` stays pure and knows
//! none of this.
//!
//! Conventions:
//! - one file per port, named for what it is to the daemon (the control
//!   store, workflows, health checks, inference, endpoints, blobs), not for
//!   the AWS service behind it;
//! - methods are `async` through `async_trait` so ports can be held as
//!   `Arc<dyn Port>`: one boxed future per call, negligible next to a
//!   network round trip;
//! - errors are typed per port, with the failure *kind* the caller decides
//!   on (throttled, conflict, not found, unavailable...) and the source kept
//!   for the log; adapters never flatten a source into a string;
//! - monotonic time is `tokio::time::Instant` (the simulation pauses it);
//!   wall time comes only from [`Clock`].

pub mod blobs;
pub mod clock;
pub mod inference;
pub mod jobs;
pub mod routing_table;

pub use clock::{Clock, SystemClock};
