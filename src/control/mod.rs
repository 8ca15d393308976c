//! The control plane: where failover lives.
//!
//! Everything here reaches AWS and the clock only through `ports` (the
//! daemon hands in the AWS adapters, the simulation its fakes) and decides
//! with `core` (pure). One reconcile round per poll: collect the signals,
//! exchange votes, decide ([`reconcile`] with `core::plan`), act
//! ([`executor`], fenced on the record's version), work the task tokens the
//! failover workflow leaves for this region ([`tokens`]: [`prepare`], the
//! switch, the drain), publish what it saw. Beside it the cost task
//! ([`cost`]) and, for operators, the one request path ([`operator`]).
//!
//! - [`reconcile`]: the round, and the planner's policy from configuration.
//! - [`signals`]: Route 53 readings (the fleet's budget) and probes.
//! - [`executor`]: an action's writes and calls, journalled.
//! - [`tokens`]: claims and works task tokens; [`prepare`] the scale-up.
//! - [`cost`]: DR tiers' schedules, idle detection, scale-down.
//! - [`journal`]: the journal entries the control side writes.
//! - [`operator`]: tally, plan, confirm, fenced write for operator requests.
//! - [`preflight`]: checks against AWS before the daemon starts.
//!
//! `daemon/` runs it (its own runtime and OS thread, a lower CPU priority)
//! and wires it to the router and the admin listener.

pub mod cost;
pub mod executor;
pub mod journal;
pub mod operator;
pub mod preflight;
pub mod prepare;
pub mod reconcile;
pub mod signals;
pub mod standby;
pub mod tokens;
