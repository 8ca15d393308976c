//! Traffic: what the inference router has counted, as the cost task needs
//! it (idle detection, and the schedule's "never below what the active
//! region needs").
//!
//! The router owns the counting; the cost task only reads. Neither depends
//! on the other: `metrics::counts` implements [`InvocationCounts`] over the
//! fleet's counters (`FleetCounts` in the daemon, `VoteCounts` for
//! `failoverd cost --dry-run`), and the daemon hands that to the cost task.
//! [`NotCounted`] stays for tests and tools that have no counts: every rule
//! reads it as "not counted for a whole window": idle detection then never
//! finds an endpoint idle (`core::idle` rule 6), and the schedule never
//! lowers the active region (`core::schedule::desired_minimum`: the need is
//! unknown).
//!
//! What an implementation must count: every invocation sent to
//! `(region, endpoint)`, *by every region's router* (cross-region routing
//! sends traffic to another region's endpoints, so one daemon's own counts
//! are not the endpoint's traffic: the fleet's sum travels through the
//! control table, for example in the votes), and since when it has counted
//! without a gap (its process start at the latest). Counts are a plain read
//! of memory: no I/O, so the trait is synchronous.
//!
//! The rule for the fleet's sum, which must never claim "idle" wrongly
//! (`metrics::counts` has the details, docs/cost-and-tiers.md the design):
//! a region whose router's counts are unknown (no vote, or a vote without
//! counts) makes the answer `None`; `since_ms` is the latest of the
//! routers' gap-free starts; a dead router (stale vote) serves nothing
//! after its last vote, and what it counted before stays in every window
//! that reaches back to it (its last invocation's time travels in its
//! vote), so an endpoint it called just before dying is not idle for a
//! window after.

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

    /// Instances the fleet's traffic to `endpoints` needs, as the routers
    /// measured it: the busiest minute of the last hour summed over the
    /// given `(region, endpoint)` pairs (one per region, the endpoints that
    /// serve the same traffic wherever it lands, so a need survives a
    /// switch and per-region endpoint names), divided by what one instance
    /// serves. `None` when not measured.
    fn fleet_need(&self, endpoints: &[(&str, &str)]) -> Option<u32>;
}

/// No counts at all (tests and tools without a router).
#[derive(Debug, Clone, Copy, Default)]
pub struct NotCounted;

impl InvocationCounts for NotCounted {
    fn invocations(&self, _: &str, _: &str, _: u64, _: u64) -> Option<Counted> {
        None
    }

    fn fleet_need(&self, _: &[(&str, &str)]) -> Option<u32> {
        None
    }
}
