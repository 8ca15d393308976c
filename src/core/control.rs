//! The control record: which region is active, in which term (epoch), and
//! whether automatic decisions are allowed.
//!
//! Two counters, on purpose:
//! - `epoch` is the *term*: it grows by exactly one with each failover, and
//!   names the failover's execution (`failover-<epoch>`), which makes
//!   starting it idempotent.
//! - `version` is the record's *generation*: every write (failover, pause,
//!   resume, each workflow step) is conditional on the version it read and
//!   bumps it. Fencing on the epoch alone would let a pause and a failover
//!   that both read the same epoch both succeed.
//!
//! The lease: an active region that has not confirmed (read) the record for
//! longer than `lease` stops acting as active, like a primary that cannot
//! renew its lock; a region that has just become active waits until the
//! lease that the old active might still hold has run out before it acts.

use serde::{Deserialize, Serialize};

/// Automatic decisions allowed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Paused,
}

/// Whether a failover is moving the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Steady,
    FailingOver,
}

/// The control record as read from the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// Generation: grows with every write.
    pub version: u64,
    /// Term: grows by one with every failover.
    pub epoch: u64,
    /// The region serving as active.
    pub active: String,
    pub mode: Mode,
    pub phase: Phase,
    /// Where the in-flight (or last) failover goes.
    pub target: Option<String>,
    /// `failover-<epoch>` of the in-flight (or last) failover.
    pub execution: Option<String>,
    /// Region whose Step Functions runs that execution.
    pub initiator: Option<String>,
    /// The region that was active before the last switch.
    pub previous: Option<String>,
    /// Who made the last change (region, or `operator:<name>`), when, why.
    pub changed_by: String,
    pub changed_at: u64,
    pub reason: String,
    /// When the last failover started (unix ms).
    pub last_failover_at: Option<u64>,
    /// When the active region last switched (unix ms).
    pub switched_at: Option<u64>,
    /// The workflow's last step (`mark`, `switched`, `done`, `aborted`).
    pub step: Option<String>,
    /// Flags of the in-flight (or last) failover, kept so a restarted
    /// initiator starts the execution with the same input.
    pub ungraceful: bool,
    pub old_region_healthy: bool,
    pub forced: bool,
}

/// The execution name for an epoch: the idempotency key of StartExecution.
pub fn execution_name(epoch: u64) -> String {
    format!("failover-{epoch}")
}

/// What this daemon may do as far as the active role goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// The record names us and we hold a current lease.
    Active,
    /// Another region is active.
    Standby { active: String },
    /// The record names us, but we could not confirm it within the lease.
    StoodDown { unconfirmed_ms: u64 },
    /// We just became active; the old active's lease runs until `until`.
    Waiting { until: u64 },
}

/// Compute this daemon's role.
///
/// `last_confirmed` is when we last read the record successfully, and
/// `record` what we read then. `wait_out_lease` chooses safety (no two
/// regions act as active at once) over speed (the new region acts at once).
pub fn role(
    me: &str,
    record: &ControlRecord,
    now: u64,
    last_confirmed: u64,
    lease_ms: u64,
    wait_out_lease: bool,
) -> Role {
    if record.active != me {
        return Role::Standby {
            active: record.active.clone(),
        };
    }
    let unconfirmed = now.saturating_sub(last_confirmed);
    if unconfirmed > lease_ms {
        return Role::StoodDown {
            unconfirmed_ms: unconfirmed,
        };
    }
    if wait_out_lease {
        if let (Some(switched), Some(prev)) = (record.switched_at, &record.previous) {
            if prev != me && now < switched.saturating_add(lease_ms) {
                return Role::Waiting {
                    until: switched + lease_ms,
                };
            }
        }
    }
    Role::Active
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(active: &str) -> ControlRecord {
        ControlRecord {
            version: 3,
            epoch: 2,
            active: active.into(),
            mode: Mode::Auto,
            phase: Phase::Steady,
            target: None,
            execution: None,
            initiator: None,
            previous: Some("us-east-1".into()),
            changed_by: "test".into(),
            changed_at: 0,
            reason: String::new(),
            last_failover_at: None,
            switched_at: Some(10_000),
            step: None,
            ungraceful: false,
            old_region_healthy: false,
            forced: false,
        }
    }

    #[test]
    fn lease_rules() {
        let r = rec("us-west-2");
        assert_eq!(
            role("us-east-1", &r, 20_000, 20_000, 4000, true),
            Role::Standby {
                active: "us-west-2".into()
            }
        );
        // New active waits out the old active's lease after the switch...
        assert_eq!(
            role("us-west-2", &r, 12_000, 12_000, 4000, true),
            Role::Waiting { until: 14_000 }
        );
        // ...unless configured to act at once.
        assert_eq!(
            role("us-west-2", &r, 12_000, 12_000, 4000, false),
            Role::Active
        );
        assert_eq!(
            role("us-west-2", &r, 15_000, 15_000, 4000, true),
            Role::Active
        );
        // An active that cannot confirm the record stands down.
        assert_eq!(
            role("us-west-2", &r, 30_000, 25_000, 4000, true),
            Role::StoodDown {
                unconfirmed_ms: 5000
            }
        );
    }
}
