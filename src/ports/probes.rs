//! Probes: the daemon's own data-plane checks of each region (HTTP(S) GET
//! of the configured URLs). Not AWS, but outside the process all the same,
//! so the simulation can fail them on schedule.

use async_trait::async_trait;

use crate::core::health::Signal;

/// Probe URLs.
#[async_trait]
pub trait Probes: Send + Sync {
    /// Probe one URL: the signal, and why.
    async fn probe(&self, url: &str, must_contain: Option<&str>) -> (Signal, String);
}

/// For processes that do not probe (the operator CLI).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProbes;

#[async_trait]
impl Probes for NoProbes {
    async fn probe(&self, _url: &str, _must_contain: Option<&str>) -> (Signal, String) {
        (Signal::Unknown, "this process does not probe".into())
    }
}
