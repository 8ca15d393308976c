//! failoverd: a multi-region failover control daemon.
//!
//! Module map (docs/design.md is the map, the other files in docs/ the why):

pub mod admin; // /healthz, /readyz (status and metrics join later)
pub mod aws; // SDK clients per (service, region) and the service adapters
pub mod cli; // operator subcommands; main.rs calls cli::main
pub mod config; // layered typed configuration and its validation
pub mod control; // the control plane: reconcile, signals, executor, tokens, prepare, cost, operator
pub mod core; // pure decision logic (health, quorum, control, plan, tokens)
pub mod daemon; // lifecycle: bind, sd_notify, reload, drain; wires adapters to control, router, admin
pub mod http; // the hyper server loop shared by admin and router
pub mod metrics; // what is counted: the control side's meter, the router's registry, counts and rings
pub mod ports; // narrow traits to AWS and the clock (adapters in aws/, fakes in tests/sim)
pub mod router; // the embedded inference router (SageMaker wire API + native API)
pub mod state; // shared state: the last round (admin, router read it) and readiness
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
