//! Pure decision logic: no I/O, no AWS types, no clock. Time is passed in:
//! unix milliseconds where a time is shared or shown, [`mono::Mono`] where
//! a daemon measures a duration of its own; the daemon collects inputs,
//! calls in, persists, then acts.

pub mod advise; // the seed's decision matrix over observed traffic -> one recommendation per model
pub mod backoff; // the one exponential backoff (jitter passed in)
pub mod bill; // the control plane's own AWS bill: settings or measured calls -> itemised monthly cost
pub mod control; // the control record, epochs, versions, modes, the lease
pub mod drift; // the fleet's configurations compared through the votes; what a mismatch withholds
pub mod duty; // which of the active region's daemons holds its active duties (a fenced lease item)
pub mod health; // effective health of checks and probes; hysteresis
pub mod idle; // idle endpoints from the router's counts -> reduce / stop / leave, each with why
pub mod mono; // one process's monotonic milliseconds: every local duration, a type of its own
pub mod permissions; // readiness's IAM dry run: whose policies, which calls, what the simulator said
pub mod plan; // the planner: (now, tally, record, policy, request) -> decision
pub mod pools; // instance pools and capacity units: a variant's capacity, the prepare step's top-up after a fallback
pub mod quorum; // votes from all regions -> verdict per region
pub mod rand; // splitmix64: seeded, counter-based randomness (jitter, ids, lab faults)
pub mod record; // every write to the control record, as one pure transition function
pub mod retry; // router backoff, retry budget, circuit breaker (time passed in)
pub mod routing; // router path and region choice
pub mod schedule; // scheduled capacity windows (IANA zones, DST) and the rule next to failover
pub mod standby; // standby readiness: this region against the active, check by check, with severities
pub mod tier; // DR tiers: automatic failover, standby capacity, the prepare step
pub mod tokens; // task-token lifecycle
