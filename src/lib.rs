//! failoverd: a multi-region failover control daemon.
//!
//! Module map. The layers, lowest first: core; config, http; ports,
//! telemetry; aws, metrics; state; control, router; admin; daemon; cli. A
//! module names only lower layers (`tests/structure.rs` checks it).
//! docs/design.md is the map of the design, the other files in docs/ the why.

pub mod admin; // status page, /healthz, /readyz, /active, /status, /metrics, pause/resume
pub mod aws; // SDK clients per (service, region) and the service adapters
pub mod cli; // operator subcommands; main.rs calls cli::main
pub mod config; // layered typed configuration and its validation
pub mod control; // the control plane: reconcile, signals, executor, tokens, prepare, cost, operator
pub mod core; // pure decisions: health, quorum, control record, plan, routing, retry, tiers, schedules
pub mod daemon; // lifecycle (bind, sd_notify, reload, drain) and the composition root
pub mod http; // the hyper serve loop shared by the admin listener and the router
pub mod metrics; // what is counted: the control side's meter, the router's registry, counts, rings
pub mod ports; // narrow traits to AWS and the clock (adapters in aws/, fakes in tests/sim)
pub mod router; // the embedded inference router (SageMaker wire API + native API)
pub mod state; // what the last round saw (admin and router read it), readiness
pub mod telemetry; // tracing setup

/// Render an error with its whole `source()` chain, `a: b: c`, for one log line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
