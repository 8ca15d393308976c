//! The deterministic simulation of the fleet (issue 10): the real daemon
//! code against fakes that fail the way AWS documents, on a paused clock,
//! one seed choosing every fault. docs/simulation.md says how it works,
//! which bounds the invariants use and why, and how to replay a seed.

pub mod bounds; // the invariants' time bounds, derived from config and the ASL
pub mod clients; // clients, the routers they reach, the request ledger and its rule
pub mod fleet; // the simulator: daemons, operator, events, steps
pub mod invariants; // what is checked after every step
pub mod objects; // the router's S3, job items and routing table
pub mod probes; // probes, host clocks, seeded entropy
pub mod route53; // Route 53 health checks (checkers, 18%, Inverted, Disabled, calculated, throttling)
pub mod sagemaker; // SageMaker endpoints (status, warm-up faults) and runtime (invocations)
pub mod schedule; // seed -> scenario (config variant, skews, faults, operator commands)
pub mod sfn; // Step Functions: the shipped ASL, interpreted
pub mod store; // the control table: MRSC and MREC global tables
pub mod world; // RNG, simulated time, the network, processes, the trace
