//! Traffic: what the inference router has counted, as the cost task needs
//! it (idle detection, and the schedule's "never below what the active
//! region needs").
//!
//! The router owns the counting; the cost task only reads. Neither depends
//! on the other: the router will implement [`InvocationCounts`] over its own
//! counters, and the daemon hands that to the cost task. Until it does, the
//! daemon uses [`NotCounted`], which every rule reads as "not counted for a
//! whole window": idle detection then never finds an endpoint idle
//! (`core::idle` rule 6), and the schedule never lowers the active region
//! (`core::schedule::desired_minimum`: the need is unknown).
//!
//! What an implementation must count: every invocation sent to
//! `(region, endpoint)`, *by every region's router* (cross-region routing
//! sends traffic to another region's endpoints, so one daemon's own counts
//! are not the endpoint's traffic: the fleet's sum travels through the
//! control table, for example in the votes), and since when it has counted
//! without a gap (its process start at the latest). Counts are a plain read
//! of memory: no I/O, so the trait is synchronous.

/// Invocations counted for one `(region, endpoint)` over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counted {
    /// Since when (unix ms) counting has run without a gap.
    pub since_ms: u64,
    /// Invocations in the window asked for (or since `since_ms`, if later).
    pub invocations: u64,
}

/// The router's counts, as the cost task reads them.
pub trait InvocationCounts: Send + Sync {
    /// Invocations of `endpoint` in `region` in the `window_ms` before
    /// `now_ms`; `None` when they are not counted at all.
    fn invocations(
        &self,
        region: &str,
        endpoint: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Option<Counted>;

    /// Instances the active region's `endpoint` needs for the traffic the
    /// router measured; `None` when not measured.
    fn active_need(&self, endpoint: &str) -> Option<u32>;
}

/// No counts at all (the router does not count per endpoint yet).
#[derive(Debug, Clone, Copy, Default)]
pub struct NotCounted;

impl InvocationCounts for NotCounted {
    fn invocations(&self, _: &str, _: &str, _: u64, _: u64) -> Option<Counted> {
        None
    }

    fn active_need(&self, _: &str) -> Option<u32> {
        None
    }
}
