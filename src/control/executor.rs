//! The executor: performs the planner's one action. Shared by the daemon's
//! reconcile loop and the operator CLI, so automatic failover, manual
//! failover, failback, pause and resume run the same code, and so do a
//! proposal awaiting approval and its approval, rejection, expiry or
//! withdrawal (`Action::Propose`, `Action::Resolve`).
//!
//! A failover is a saga of two steps, each idempotent with a recorded outcome:
//! 1. claim the epoch: a conditional write on the record's `version`
//!    (a lost race is [`Outcome::Lost`], not an error);
//! 2. start `failover-<incarnation>-<epoch>-c<claim>` in the initiator's state
//!    machine, `regions[initiator].state_machine_arn`: the initiator's own
//!    region's, or, for a region that holds no replica of the control
//!    table, a replica region's (config/workflow.rs, "Where the workflow
//!    runs"). The initiator is in the record and the ARN is a fleet-wide
//!    setting, so every daemon finds an epoch's execution in the same state
//!    machine. The name is the idempotency key: a retry (or a restart after
//!    a crash between 1 and 2, via `Action::EnsureExecution`) starts the same
//!    execution or finds it already there. An existing execution of that name
//!    with *other* input is a collision (a name reused from an earlier table
//!    or a bug), never "started earlier": the claim is settled as aborted at
//!    once, with the reason in the journal.
//!
//! A superseding claim (`--force` over an in-flight failover) stops the old
//! execution, best effort: its writes are fenced off by the new epoch either
//! way. A settle stops a possibly running execution the same way.

use crate::config::Config;
use crate::core::plan::{Action, FailoverPlan};
use crate::core::record::{RecordWrite, Recreated, Settlement};
use crate::ports::store::Write;
use crate::ports::workflows::{Started, execution_arn};
use crate::ports::{PortError, Ports};

use super::journal::journal;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the text says what.
    Done(String),
    /// Another writer moved the record first: re-read and decide again.
    Lost,
}

/// Why an action failed part-way (its recorded steps stay recorded).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("control store")]
    Store(#[source] PortError),
    #[error("Step Functions")]
    Workflow(#[source] PortError),
    #[error("{0} is not a configured region")]
    UnknownRegion(String),
    #[error(
        "execution {execution} already exists with other input: the name collides; the claim was settled as aborted"
    )]
    Collision { execution: String },
}

/// Everything an action needs.
pub struct Executor<'a> {
    pub config: &'a Config,
    pub ports: &'a Ports,
    /// Who acts: a region name, or `operator:<name>`.
    pub who: String,
}

impl Executor<'_> {
    /// Journal an act at the time it happened (not the decision's `now`, so
    /// entries of one action keep their order).
    async fn journal(&self, kind: &str, epoch: Option<u64>, detail: String) {
        let at = self.ports.clock.now_ms();
        journal(&*self.ports.store, at, &self.who, kind, epoch, detail).await;
    }

    async fn write(&self, w: &RecordWrite) -> Result<Write, ExecError> {
        self.ports
            .store
            .write_record(w)
            .await
            .map_err(ExecError::Store)
    }

    /// Perform `action` at time `now`.
    pub async fn apply(&self, action: &Action, now: u64) -> Result<Outcome, ExecError> {
        match action {
            Action::Initialize { active } => self.initialize(active, now).await,
            Action::Recreate { from, reason } => self.recreate(from, reason, now).await,
            Action::StartFailover(p) => self.claim(p).await,
            Action::EnsureExecution(p) => self.start(p, p.expected_version).await,
            Action::Settle {
                expected_version,
                execution,
                outcome,
                reason,
                stop,
            } => {
                let w = RecordWrite::Settle {
                    expected_version: *expected_version,
                    execution: execution.clone(),
                    outcome: *outcome,
                    by: self.who.clone(),
                    at: now,
                    reason: reason.clone(),
                };
                self.settle(&w, execution, *outcome, reason, *stop).await
            }
            Action::SetMode {
                mode,
                expected_version,
                reason,
                changed_by,
            } => {
                let w = RecordWrite::SetMode {
                    mode: *mode,
                    expected_version: *expected_version,
                    by: changed_by.clone(),
                    at: now,
                    reason: reason.clone(),
                };
                self.written(&w, "mode", None, || {
                    (
                        format!("mode set to {mode:?} by {changed_by}: {reason}"),
                        format!("mode is now {mode:?}"),
                    )
                })
                .await
            }
            Action::Propose {
                expected_version,
                id,
                epoch,
                from,
                target,
                reason,
            } => {
                let w = RecordWrite::Propose {
                    expected_version: *expected_version,
                    id: id.clone(),
                    epoch: *epoch,
                    from: from.clone(),
                    target: target.clone(),
                    by: self.who.clone(),
                    at: now,
                    reason: reason.clone(),
                };
                self.written(&w, "failover_proposed", Some(*epoch), || {
                    // Once per proposal: this write succeeds once per epoch.
                    tracing::warn!(
                        epoch,
                        %from,
                        %target,
                        proposal = %id,
                        %reason,
                        "automatic failover PROPOSED: awaiting `failoverd approve --proposal {id}` (or reject)"
                    );
                    (
                        format!("{from} -> {target} awaits approval (proposal {id}): {reason}"),
                        format!("failover {from} -> {target} (epoch {epoch}, proposal {id}) proposed"),
                    )
                })
                .await
            }
            Action::Resolve {
                expected_version,
                epoch,
                target,
                id,
                state,
                reason,
                changed_by,
            } => {
                let w = RecordWrite::Resolve {
                    expected_version: *expected_version,
                    epoch: *epoch,
                    target: target.clone(),
                    id: id.clone(),
                    state: *state,
                    by: changed_by.clone(),
                    at: now,
                    reason: reason.clone(),
                };
                let what = state.as_str();
                self.written(&w, &format!("proposal_{what}"), Some(*epoch), || {
                    tracing::warn!(epoch, %target, proposal = %id, by = %changed_by, %reason, "failover proposal {what}");
                    (
                        format!("proposal {id} (epoch {epoch}, to {target}) {what} by {changed_by}: {reason}"),
                        format!("proposal {id} of epoch {epoch} {what}"),
                    )
                })
                .await
            }
        }
    }

    /// Write `w`; when it lands, journal `kind` with the first text `said`
    /// returns and report the second; when the record moved first, lost.
    async fn written(
        &self,
        w: &RecordWrite,
        kind: &str,
        epoch: Option<u64>,
        said: impl FnOnce() -> (String, String),
    ) -> Result<Outcome, ExecError> {
        match self.write(w).await? {
            Write::Written => {
                let (detail, done) = said();
                self.journal(kind, epoch, detail).await;
                Ok(Outcome::Done(done))
            }
            Write::Conflict => Ok(Outcome::Lost),
        }
    }

    /// Create the record with `active`, under a fresh incarnation.
    async fn initialize(&self, active: &str, now: u64) -> Result<Outcome, ExecError> {
        let incarnation = format!("{:012x}", self.ports.entropy.next_u64() >> 16);
        let w = RecordWrite::Initialize {
            active: active.to_string(),
            incarnation: incarnation.clone(),
            by: self.who.clone(),
            at: now,
            reason: "initialized: highest-priority region up by quorum".into(),
        };
        self.written(&w, "initialized", Some(1), || {
            (
                format!("control record created (incarnation {incarnation}): {active} active"),
                format!("control record created with {active} active"),
            )
        })
        .await
    }

    /// Re-create a lost or restored record from this daemon's copy, under a
    /// fresh incarnation (`core::plan::recreate`).
    async fn recreate(
        &self,
        from: &Recreated,
        reason: &str,
        now: u64,
    ) -> Result<Outcome, ExecError> {
        let incarnation = format!("{:012x}", self.ports.entropy.next_u64() >> 16);
        let w = RecordWrite::Recreate {
            from: from.clone(),
            incarnation: incarnation.clone(),
            by: self.who.clone(),
            at: now,
            reason: reason.to_string(),
        };
        self.written(&w, "record_recreated", Some(from.epoch), || {
            (
                format!("{reason} (incarnation {incarnation}, epoch {})", from.epoch),
                format!("control record re-created with {} active", from.active),
            )
        })
        .await
    }

    /// Claim the plan's epoch (journalled either way), stop what it
    /// supersedes, start its execution.
    async fn claim(&self, p: &FailoverPlan) -> Result<Outcome, ExecError> {
        // The claim records where the execution will run, so that a later
        // change of `state_machine_arn` cannot send anyone looking for it
        // elsewhere (and starting it twice).
        let p = &FailoverPlan {
            state_machine: Some(self.state_machine(&p.initiator)?.to_string()),
            ..p.clone()
        };
        match self.write(&RecordWrite::Claim { plan: p.clone() }).await? {
            Write::Conflict => {
                self.journal(
                    "failover_lost_race",
                    Some(p.epoch),
                    format!("{} -> {}: the record moved first", p.from, p.to),
                )
                .await;
                return Ok(Outcome::Lost);
            }
            Write::Written => {
                let how = if p.automatic {
                    "automatic"
                } else if p.forced {
                    "manual, FORCED"
                } else {
                    "manual"
                };
                let over = p
                    .supersedes
                    .as_deref()
                    .map(|old| format!(", superseding {old}"))
                    .unwrap_or_default();
                self.journal(
                    "failover_claimed",
                    Some(p.epoch),
                    format!(
                        "{} -> {} ({how}{}{over}): {}",
                        p.from,
                        p.to,
                        if p.ungraceful { ", ungraceful" } else { "" },
                        p.reason
                    ),
                )
                .await;
            }
        }
        if let Some(old) = &p.supersedes {
            self.stop(old, &format!("superseded by {}", p.execution))
                .await;
        }
        self.start(p, p.expected_version + 1).await
    }

    /// Settle a failover whose execution ended (or must end), stopping it
    /// when asked.
    async fn settle(
        &self,
        w: &RecordWrite,
        execution: &str,
        outcome: Settlement,
        reason: &str,
        stop: bool,
    ) -> Result<Outcome, ExecError> {
        match self.write(w).await? {
            Write::Written => {
                let how = match outcome {
                    Settlement::Completed => "completed",
                    Settlement::Aborted => "aborted",
                };
                self.journal(
                    "settled",
                    None,
                    format!("{execution} settled as {how}: {reason}"),
                )
                .await;
                if stop {
                    self.stop(execution, reason).await;
                }
                Ok(Outcome::Done(format!("{execution} settled as {how}")))
            }
            Write::Conflict => Ok(Outcome::Lost),
        }
    }

    /// The state machine the executions `region` initiates run in (not
    /// necessarily in `region`: see the module doc).
    fn state_machine(&self, region: &str) -> Result<&str, ExecError> {
        self.config
            .region(region)
            .map(|r| r.state_machine_arn.as_str())
            .ok_or_else(|| ExecError::UnknownRegion(region.to_string()))
    }

    /// Stop an execution, best effort. Its initiator is not always known
    /// here, so every configured state machine is tried once (regions
    /// without a replica share a replica region's): stopping an execution
    /// that does not exist is a no-op.
    async fn stop(&self, execution: &str, cause: &str) {
        let mut machines: Vec<&str> = self
            .config
            .regions
            .iter()
            .map(|r| r.state_machine_arn.as_str())
            .collect();
        machines.sort_unstable();
        machines.dedup();
        for sm in machines {
            let arn = execution_arn(sm, execution);
            if let Err(e) = self.ports.workflows.stop(&arn, cause).await {
                tracing::warn!(
                    error = %crate::error_chain(&e),
                    %arn,
                    "cannot stop a superseded or settled execution (its writes are fenced off anyway)"
                );
            }
        }
    }

    /// Start `p`'s execution; `claimed_version` is the record's version
    /// after the claim (what a collision's settle is fenced on).
    async fn start(&self, p: &FailoverPlan, claimed_version: u64) -> Result<Outcome, ExecError> {
        let sm = match &p.state_machine {
            Some(sm) => sm.as_str(),
            None => self.state_machine(&p.initiator)?,
        };
        let input = p.execution_input();
        let started = self
            .ports
            .workflows
            .start(sm, &p.execution, &input.to_string())
            .await
            .map_err(ExecError::Workflow)?;
        let what = match started {
            Started::Running { arn } => format!("{} running ({arn})", p.execution),
            Started::Existing {
                status,
                input: existing,
                ..
            } => {
                let same = existing
                    .as_deref()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                    .is_some_and(|v| v == input);
                if !same {
                    self.collision(p, claimed_version).await;
                    return Err(ExecError::Collision {
                        execution: p.execution.clone(),
                    });
                }
                format!(
                    "{} already exists with this input ({status:?})",
                    p.execution
                )
            }
        };
        self.journal("execution_started", Some(p.epoch), what.clone())
            .await;
        Ok(Outcome::Done(what))
    }

    async fn collision(&self, p: &FailoverPlan, claimed_version: u64) {
        let reason = format!(
            "execution name {} is taken by an execution with other input (Step Functions keeps closed names for 90 days)",
            p.execution
        );
        let w = RecordWrite::Settle {
            expected_version: claimed_version,
            execution: p.execution.clone(),
            outcome: Settlement::Aborted,
            by: self.who.clone(),
            at: self.ports.clock.now_ms(),
            reason: reason.clone(),
        };
        match self.write(&w).await {
            Ok(Write::Written) => {
                self.journal(
                    "settled",
                    Some(p.epoch),
                    format!("{} settled as aborted: {reason}", p.execution),
                )
                .await
            }
            Ok(Write::Conflict) => {}
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "cannot settle a collided claim; the stall rule will")
            }
        }
    }
}
