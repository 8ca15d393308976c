//! Every write to the control record, as one pure transition function.
//!
//! The record changes only through the conditional writes listed in
//! [`RecordWrite`]: the executor's (initialize, claim, mode, settle, and
//! the approval gate's propose and resolve) and the
//! failover workflow's (`deploy/statemachines/failover.asl.json`: mark,
//! switch, steady, abort). [`apply`] says, for a record as a replica holds
//! it, whether the write's condition holds and what the record becomes.
//!
//! It is the single statement of those semantics: the simulation's fake
//! stores apply writes with it, the model check explores the protocol with
//! it, and the DynamoDB adapter (`aws::control_table`) and the state machine
//! express the same conditions in DynamoDB's syntax, which
//! `tests/lab_aws.rs` checks against this function write by write.
//!
//! Conditions, and why:
//! - the executor's writes are fenced on the record's `version` (the
//!   generation): two planners that read the same record cannot both act;
//! - a proposal (`Propose`, `Resolve`) is fenced on the version too, and a
//!   decision names the proposal: its epoch, target and id. An approval
//!   applies only to that very proposal while it is still proposed, so a
//!   stale one never approves a newer proposal, not even one of the same
//!   epoch made after a withdrawal. No proposal write changes the epoch, the active region
//!   or the phase; a claim clears the proposal;
//! - the workflow's writes are fenced on `epoch` and `execution` (a
//!   superseded run changes nothing) *and* on the record still failing over:
//!   once a failover has been settled (aborted by a daemon because its
//!   execution never started, ended, or stalled), a late step of its
//!   execution must not move the record again. Settling is therefore safe at
//!   any moment; only its timing is a liveness question.

use serde::{Deserialize, Serialize};

use super::control::{ControlRecord, Mode, Phase, Proposal, ProposalState, Step};
use super::plan::FailoverPlan;

/// How a settle ends a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settlement {
    /// The workflow had switched: the failover is complete.
    Completed,
    /// It had not: the old region stays active.
    Aborted,
}

/// A conditional write to the control record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "write")]
pub enum RecordWrite {
    /// Create the record: only if there is none.
    Initialize {
        active: String,
        incarnation: String,
        by: String,
        at: u64,
        reason: String,
    },
    /// Re-create a lost record from what the fleet knows (a daemon's last
    /// copy), under a fresh incarnation: only if there is none, or, when the
    /// table was restored to an older copy, only at that copy's version.
    Recreate {
        from: Recreated,
        incarnation: String,
        by: String,
        at: u64,
        reason: String,
    },
    /// Claim the plan's epoch: only at the version read, and only when the
    /// record is steady unless the plan supersedes an in-flight failover.
    Claim { plan: FailoverPlan },
    /// Pause or resume: only at the version read.
    SetMode {
        mode: Mode,
        expected_version: u64,
        by: String,
        at: u64,
        reason: String,
    },
    /// End an in-flight failover whose workflow will not: only at the
    /// version read, for that execution, while it is failing over, and only
    /// if the record's step still means `outcome` (switched: completed).
    Settle {
        expected_version: u64,
        execution: String,
        outcome: Settlement,
        by: String,
        at: u64,
        reason: String,
    },
    /// Record an automatic failover awaiting approval instead of claiming
    /// it: only at the version read, while steady, for the next epoch, and
    /// only when no other proposal is live.
    Propose {
        expected_version: u64,
        /// The new proposal's id (`core::control::proposal_id`).
        id: String,
        epoch: u64,
        from: String,
        target: String,
        by: String,
        at: u64,
        reason: String,
    },
    /// Decide a proposal (approve, reject, expire, withdraw): only at the
    /// version read, only for the proposal of that `epoch`, `target` and
    /// `id`, and only while it is proposed (a withdrawal also while
    /// approved).
    Resolve {
        expected_version: u64,
        epoch: u64,
        target: String,
        id: String,
        state: ProposalState,
        by: String,
        at: u64,
        reason: String,
    },
    /// Workflow, MarkFailingOver.
    Mark { epoch: u64, execution: String },
    /// Workflow, SwitchActive: `active := to`.
    Switch {
        epoch: u64,
        execution: String,
        from: String,
        to: String,
        at: u64,
    },
    /// Workflow, MarkSteady.
    Steady { epoch: u64, execution: String },
    /// Workflow, AbortPrepareFailed / AbortWorkflowError (not after the switch).
    Abort { epoch: u64, execution: String },
}

/// What a re-created record keeps of the copy it is made from: the active
/// region, the pause, who was active before (so a new active still waits
/// out a predecessor's lease) and when the last failover was (so the
/// failover interval still holds). Everything else starts afresh: steady,
/// a fresh incarnation (execution names never collide with the lost
/// record's), and an epoch above any the fleet has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recreated {
    /// `None`: only if the record is missing. `Some(v)`: only while the
    /// record is at version `v` (the older copy a restored table holds).
    pub replaces: Option<u64>,
    pub epoch: u64,
    pub active: String,
    pub mode: Mode,
    pub previous: Option<String>,
    pub last_failover_at: Option<u64>,
}

impl Recreated {
    /// What re-creating `held` (this daemon's last copy) keeps; `replaces`
    /// the restored record `over`, if there is one.
    pub fn from_copy(held: &ControlRecord, over: Option<&ControlRecord>) -> Self {
        Recreated {
            replaces: over.map(|r| r.version),
            epoch: held.epoch.max(over.map_or(0, |r| r.epoch)) + 1,
            active: held.active.clone(),
            mode: held.mode,
            previous: held.previous.clone(),
            last_failover_at: held.last_failover_at,
        }
    }
}

/// Why a write's condition did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "refused")]
pub enum Refused {
    #[error("the record already exists")]
    Exists,
    #[error("there is no record")]
    Missing,
    #[error("the record moved: version {found}, expected {expected}")]
    VersionMoved { expected: u64, found: u64 },
    #[error("a failover is in flight ({execution})")]
    InFlight { execution: String },
    #[error("the record is not failing over with this execution")]
    NotThisFailover,
    #[error("no open proposal for epoch {epoch}")]
    NoSuchProposal { epoch: u64 },
}

impl RecordWrite {
    /// The name used in logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            RecordWrite::Initialize { .. } => "initialize",
            RecordWrite::Recreate { .. } => "recreate",
            RecordWrite::Claim { .. } => "claim",
            RecordWrite::SetMode { .. } => "set_mode",
            RecordWrite::Settle { .. } => "settle",
            RecordWrite::Propose { .. } => "propose",
            RecordWrite::Resolve { .. } => "resolve",
            RecordWrite::Mark { .. } => "mark",
            RecordWrite::Switch { .. } => "switch",
            RecordWrite::Steady { .. } => "steady",
            RecordWrite::Abort { .. } => "abort",
        }
    }
}

fn at_version(cur: &ControlRecord, expected: u64) -> Result<(), Refused> {
    if cur.version == expected {
        Ok(())
    } else {
        Err(Refused::VersionMoved {
            expected,
            found: cur.version,
        })
    }
}

fn this_failover(cur: &ControlRecord, epoch: u64, execution: &str) -> Result<(), Refused> {
    if cur.epoch == epoch
        && cur.execution.as_deref() == Some(execution)
        && cur.phase == Phase::FailingOver
    {
        Ok(())
    } else {
        Err(Refused::NotThisFailover)
    }
}

/// Apply `w` to the record `cur` (as one replica holds it): the new record,
/// or why the condition failed. Every accepted write bumps `version`.
pub fn apply(cur: Option<&ControlRecord>, w: &RecordWrite) -> Result<ControlRecord, Refused> {
    if let RecordWrite::Initialize {
        active,
        incarnation,
        by,
        at,
        reason,
    } = w
    {
        if cur.is_some() {
            return Err(Refused::Exists);
        }
        return Ok(initial(active, incarnation, by, *at, reason));
    }
    if let RecordWrite::Recreate {
        from,
        incarnation,
        by,
        at,
        reason,
    } = w
    {
        let version = match (from.replaces, cur) {
            (None, None) => 1,
            (None, Some(_)) => return Err(Refused::Exists),
            (Some(_), None) => return Err(Refused::Missing),
            (Some(v), Some(c)) => {
                at_version(c, v)?;
                v + 1
            }
        };
        let mut next = initial(&from.active, incarnation, by, *at, reason);
        next.version = version;
        next.epoch = from.epoch;
        next.mode = from.mode;
        next.previous = from.previous.clone();
        next.last_failover_at = from.last_failover_at;
        return Ok(next);
    }
    let cur = cur.ok_or(Refused::Missing)?;
    let mut next = cur.clone();
    match w {
        RecordWrite::Initialize { .. } | RecordWrite::Recreate { .. } => {
            unreachable!("handled above")
        }
        RecordWrite::Claim { plan: p } => claim(cur, &mut next, p)?,
        RecordWrite::SetMode {
            mode,
            expected_version,
            by,
            at,
            reason,
        } => {
            at_version(cur, *expected_version)?;
            next.mode = *mode;
            next.changed_by = by.clone();
            next.changed_at = *at;
            next.reason = reason.clone();
        }
        RecordWrite::Settle {
            expected_version,
            execution,
            outcome,
            by,
            at,
            reason,
        } => {
            at_version(cur, *expected_version)?;
            if cur.phase != Phase::FailingOver
                || cur.execution.as_deref() != Some(execution)
                || settlement(cur) != *outcome
            {
                return Err(Refused::NotThisFailover);
            }
            next.phase = Phase::Steady;
            next.changed_by = by.clone();
            next.changed_at = *at;
            next.reason = reason.clone();
            match outcome {
                Settlement::Completed => {
                    next.step = Step::Done;
                    next.aborts = 0;
                }
                Settlement::Aborted => {
                    next.step = Step::Aborted;
                    next.aborts = cur.aborts + 1;
                }
            }
        }
        RecordWrite::Propose { .. } => propose(cur, &mut next, w)?,
        RecordWrite::Resolve { .. } => resolve(cur, &mut next, w)?,
        // The workflow's steps, each fenced on its epoch and execution.
        RecordWrite::Mark { epoch, execution } => {
            this_failover(cur, *epoch, execution)?;
            next.step = Step::Mark;
        }
        RecordWrite::Switch {
            epoch,
            execution,
            from,
            to,
            at,
        } => {
            this_failover(cur, *epoch, execution)?;
            next.active = to.clone();
            next.previous = Some(from.clone());
            next.step = Step::Switched;
            next.switched_at = Some(*at);
        }
        RecordWrite::Steady { epoch, execution } => {
            this_failover(cur, *epoch, execution)?;
            next.phase = Phase::Steady;
            next.step = Step::Done;
            next.aborts = 0;
        }
        RecordWrite::Abort { epoch, execution } => {
            this_failover(cur, *epoch, execution)?;
            // Never after the switch: that record is settled as completed.
            if cur.step == Step::Switched {
                return Err(Refused::NotThisFailover);
            }
            next.phase = Phase::Steady;
            next.step = Step::Aborted;
            next.aborts = cur.aborts + 1;
        }
    }
    next.version = cur.version + 1;
    Ok(next)
}

/// The record `Initialize` creates: epoch 1, steady, automatic.
fn initial(active: &str, incarnation: &str, by: &str, at: u64, reason: &str) -> ControlRecord {
    ControlRecord {
        version: 1,
        incarnation: incarnation.to_string(),
        epoch: 1,
        active: active.to_string(),
        mode: Mode::Auto,
        phase: Phase::Steady,
        target: None,
        execution: None,
        initiator: None,
        state_machine: None,
        previous: None,
        changed_by: by.to_string(),
        changed_at: at,
        reason: reason.to_string(),
        last_failover_at: None,
        switched_at: None,
        step: Step::Init,
        aborts: 0,
        ungraceful: false,
        old_region_healthy: false,
        forced: false,
        proposal: None,
    }
}

/// `Claim`: at the version read, and steady unless the plan supersedes an
/// in-flight failover.
fn claim(cur: &ControlRecord, next: &mut ControlRecord, p: &FailoverPlan) -> Result<(), Refused> {
    at_version(cur, p.expected_version)?;
    if cur.phase == Phase::FailingOver && p.supersedes.is_none() {
        return Err(Refused::InFlight {
            execution: cur.execution.clone().unwrap_or_default(),
        });
    }
    next.epoch = p.epoch;
    next.phase = Phase::FailingOver;
    next.target = Some(p.to.clone());
    next.execution = Some(p.execution.clone());
    next.initiator = Some(p.initiator.clone());
    next.state_machine = p.state_machine.clone();
    next.previous = Some(cur.active.clone());
    next.changed_by = p.changed_by.clone();
    next.changed_at = p.claimed_at;
    next.reason = p.reason.clone();
    next.last_failover_at = Some(p.claimed_at);
    next.ungraceful = p.ungraceful;
    next.old_region_healthy = p.old_region_healthy;
    next.forced = p.forced;
    next.step = Step::Claimed;
    // The claim is what a proposal was waiting for (or, from an operator,
    // overrides it): either way it is over.
    next.proposal = None;
    Ok(())
}

/// `Propose`: at the version read, steady, for the next epoch, with no
/// live proposal.
fn propose(cur: &ControlRecord, next: &mut ControlRecord, w: &RecordWrite) -> Result<(), Refused> {
    let RecordWrite::Propose {
        expected_version,
        id,
        epoch,
        from,
        target,
        by,
        at,
        reason,
    } = w
    else {
        unreachable!("propose takes a Propose");
    };
    at_version(cur, *expected_version)?;
    if cur.phase == Phase::FailingOver {
        return Err(Refused::InFlight {
            execution: cur.execution.clone().unwrap_or_default(),
        });
    }
    if *epoch != cur.epoch + 1 || cur.proposal.as_ref().is_some_and(|p| p.state.is_live()) {
        return Err(Refused::NoSuchProposal { epoch: *epoch });
    }
    next.proposal = Some(Proposal {
        id: id.clone(),
        epoch: *epoch,
        from: from.clone(),
        target: target.clone(),
        proposer: by.clone(),
        proposed_at: *at,
        reason: reason.clone(),
        state: ProposalState::Proposed,
        decided_by: None,
        decided_at: None,
        decision: None,
    });
    next.changed_by = by.clone();
    next.changed_at = *at;
    next.reason = format!("proposed failover to {target}: {reason}");
    Ok(())
}

/// `Resolve`: at the version read, the very proposal named (epoch, target
/// and id), from a state it may be resolved from.
fn resolve(cur: &ControlRecord, next: &mut ControlRecord, w: &RecordWrite) -> Result<(), Refused> {
    let RecordWrite::Resolve {
        expected_version,
        epoch,
        target,
        id,
        state,
        by,
        at,
        reason,
    } = w
    else {
        unreachable!("resolve takes a Resolve");
    };
    at_version(cur, *expected_version)?;
    let open = match state {
        ProposalState::Withdrawn => ProposalState::is_live,
        ProposalState::Approved | ProposalState::Rejected | ProposalState::Expired => {
            |s: ProposalState| s == ProposalState::Proposed
        }
        // Nothing resolves a proposal back to proposed.
        ProposalState::Proposed => |_: ProposalState| false,
    };
    let Some(p) = next
        .proposal
        .as_mut()
        .filter(|p| p.epoch == *epoch && p.target == *target && p.id == *id && open(p.state))
    else {
        return Err(Refused::NoSuchProposal { epoch: *epoch });
    };
    p.state = *state;
    p.decided_by = Some(by.clone());
    p.decided_at = Some(*at);
    p.decision = Some(reason.clone());
    next.changed_by = by.clone();
    next.changed_at = *at;
    next.reason = format!("proposal of epoch {epoch} {}: {reason}", state.as_str());
    Ok(())
}

/// What settling `cur` (failing over) would mean.
pub fn settlement(cur: &ControlRecord) -> Settlement {
    if cur.step == Step::Switched {
        Settlement::Completed
    } else {
        Settlement::Aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() -> ControlRecord {
        apply(
            None,
            &RecordWrite::Initialize {
                active: "us-east-1".into(),
                incarnation: "abc".into(),
                by: "us-east-1".into(),
                at: 1,
                reason: "init".into(),
            },
        )
        .unwrap()
    }

    fn plan(rec: &ControlRecord, to: &str, supersedes: Option<String>) -> FailoverPlan {
        FailoverPlan {
            from: rec.active.clone(),
            to: to.into(),
            epoch: rec.epoch + 1,
            execution: super::super::control::execution_name(&rec.incarnation, rec.epoch + 1),
            initiator: to.into(),
            expected_version: rec.version,
            reason: "test".into(),
            ungraceful: false,
            old_region_healthy: true,
            forced: false,
            automatic: true,
            changed_by: to.into(),
            claimed_at: 10,
            supersedes,
            state_machine: None,
        }
    }

    #[test]
    fn a_recreate_writes_only_where_the_copy_says() {
        let held = init();
        let from = |replaces| Recreated {
            replaces,
            epoch: 5,
            active: "us-west-2".into(),
            mode: Mode::Paused,
            previous: Some("us-east-1".into()),
            last_failover_at: Some(9),
        };
        let w = |replaces| RecordWrite::Recreate {
            from: from(replaces),
            incarnation: "fresh".into(),
            by: "us-west-2".into(),
            at: 20,
            reason: "lost".into(),
        };
        // Only if missing...
        assert_eq!(apply(Some(&held), &w(None)), Err(Refused::Exists));
        let r = apply(None, &w(None)).unwrap();
        assert_eq!(
            (
                r.version,
                r.epoch,
                r.active.as_str(),
                r.mode,
                r.incarnation.as_str()
            ),
            (1, 5, "us-west-2", Mode::Paused, "fresh")
        );
        assert_eq!((r.phase, r.step), (Phase::Steady, Step::Init));
        assert_eq!(r.previous.as_deref(), Some("us-east-1"));
        // ...or only over the restored copy it names, with a version above it.
        assert_eq!(apply(None, &w(Some(1))), Err(Refused::Missing));
        assert!(matches!(
            apply(Some(&held), &w(Some(4))),
            Err(Refused::VersionMoved { .. })
        ));
        let r = apply(Some(&held), &w(Some(1))).unwrap();
        assert_eq!((r.version, r.epoch), (2, 5));
    }

    #[test]
    fn a_failover_runs_through_its_writes() {
        let r = init();
        assert_eq!(r.version, 1);
        assert_eq!(
            apply(
                Some(&r),
                &RecordWrite::Initialize {
                    active: "x".into(),
                    incarnation: "y".into(),
                    by: "z".into(),
                    at: 0,
                    reason: String::new()
                }
            ),
            Err(Refused::Exists)
        );
        let p = plan(&r, "us-west-2", None);
        let r = apply(Some(&r), &RecordWrite::Claim { plan: p.clone() }).unwrap();
        assert_eq!(
            (r.version, r.epoch, r.phase, r.step),
            (2, 2, Phase::FailingOver, Step::Claimed)
        );
        // A second claim at the same version loses.
        assert!(matches!(
            apply(Some(&r), &RecordWrite::Claim { plan: p.clone() }),
            Err(Refused::VersionMoved { .. })
        ));
        let ex = p.execution.clone();
        let r = apply(
            Some(&r),
            &RecordWrite::Mark {
                epoch: 2,
                execution: ex.clone(),
            },
        )
        .unwrap();
        let r = apply(
            Some(&r),
            &RecordWrite::Switch {
                epoch: 2,
                execution: ex.clone(),
                from: "us-east-1".into(),
                to: "us-west-2".into(),
                at: 20,
            },
        )
        .unwrap();
        assert_eq!(r.active, "us-west-2");
        let r = apply(
            Some(&r),
            &RecordWrite::Steady {
                epoch: 2,
                execution: ex,
            },
        )
        .unwrap();
        assert_eq!((r.phase, r.step, r.version), (Phase::Steady, Step::Done, 5));
    }

    #[test]
    fn a_settled_failover_ignores_its_late_workflow() {
        let r = init();
        let p = plan(&r, "us-west-2", None);
        let r = apply(Some(&r), &RecordWrite::Claim { plan: p.clone() }).unwrap();
        let settled = apply(
            Some(&r),
            &RecordWrite::Settle {
                expected_version: r.version,
                execution: p.execution.clone(),
                outcome: Settlement::Aborted,
                by: "eu-west-1".into(),
                at: 30,
                reason: "never started".into(),
            },
        )
        .unwrap();
        assert_eq!(
            (settled.step, settled.aborts, settled.active.as_str()),
            (Step::Aborted, 1, "us-east-1")
        );
        for late in [
            RecordWrite::Mark {
                epoch: 2,
                execution: p.execution.clone(),
            },
            RecordWrite::Switch {
                epoch: 2,
                execution: p.execution.clone(),
                from: "us-east-1".into(),
                to: "us-west-2".into(),
                at: 40,
            },
            RecordWrite::Steady {
                epoch: 2,
                execution: p.execution.clone(),
            },
            RecordWrite::Abort {
                epoch: 2,
                execution: p.execution.clone(),
            },
        ] {
            assert_eq!(
                apply(Some(&settled), &late),
                Err(Refused::NotThisFailover),
                "{late:?}"
            );
        }
    }

    #[test]
    fn only_a_superseding_claim_replaces_an_in_flight_failover() {
        let r = init();
        let first = plan(&r, "us-west-2", None);
        let r = apply(
            Some(&r),
            &RecordWrite::Claim {
                plan: first.clone(),
            },
        )
        .unwrap();
        assert!(matches!(
            apply(
                Some(&r),
                &RecordWrite::Claim {
                    plan: plan(&r, "eu-west-1", None)
                }
            ),
            Err(Refused::InFlight { .. })
        ));
        let force = plan(&r, "eu-west-1", Some(first.execution.clone()));
        let r2 = apply(
            Some(&r),
            &RecordWrite::Claim {
                plan: force.clone(),
            },
        )
        .unwrap();
        assert_eq!(
            (r2.epoch, r2.execution.as_deref()),
            (3, Some(force.execution.as_str()))
        );
        // The superseded run's writes are fenced off.
        assert_eq!(
            apply(
                Some(&r2),
                &RecordWrite::Mark {
                    epoch: 2,
                    execution: first.execution
                }
            ),
            Err(Refused::NotThisFailover)
        );
    }

    #[test]
    fn settling_after_the_switch_completes() {
        let r = init();
        let p = plan(&r, "us-west-2", None);
        let r = apply(Some(&r), &RecordWrite::Claim { plan: p.clone() }).unwrap();
        let r = apply(
            Some(&r),
            &RecordWrite::Switch {
                epoch: 2,
                execution: p.execution.clone(),
                from: "us-east-1".into(),
                to: "us-west-2".into(),
                at: 1,
            },
        )
        .unwrap();
        let s = apply(
            Some(&r),
            &RecordWrite::Settle {
                expected_version: r.version,
                execution: p.execution,
                outcome: Settlement::Completed,
                by: "x".into(),
                at: 2,
                reason: "ended".into(),
            },
        )
        .unwrap();
        assert_eq!(
            (s.step, s.active.as_str(), s.phase),
            (Step::Done, "us-west-2", Phase::Steady)
        );
    }
}
