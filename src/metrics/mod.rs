//! What failoverd counts, in one place: every counter, gauge, histogram and
//! ring lives here, below both the code that writes it and the code that
//! reads or renders it (the control side and the router write; the state,
//! the cost task, `/metrics`, the status page and `failoverd advise` read).
//!
//! - [`meter`]: the control side's counters (port calls by operation and
//!   region with failure kinds and latency, Route 53 readings, tokens,
//!   journal entries, failovers by trigger and outcome, round durations,
//!   the newest control record read). Fed by [`metered`] and each round.
//! - [`metered`]: the decorator that counts every call through a port, so
//!   daemon code carries no metric calls.
//! - [`router`]: the router's registry (requests by path, region, outcome
//!   and attempts; calls; breaker ejections; hedges; latency; the retry
//!   budget; requests in flight).
//! - [`counts`]: the router's invocation counts per (region, endpoint), a
//!   minute ring for idle detection and the measured need, published in
//!   each vote so the fleet sums them.
//! - [`observed`]: per-model observations for `failoverd advise` (requests
//!   per minute for 7 days, payload-size quantiles, cold starts).
//!
//! Rendering stays with each listener: `admin::metrics` writes the
//! Prometheus exposition of all of them (`GET /metrics`), `admin::page` and
//! `admin::traffic` the status page's tables.

pub mod callers;
pub mod counts;
pub mod meter;
pub mod metered;
pub mod observed;
pub mod router;
