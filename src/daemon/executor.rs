//! The executor: performs the planner's one action. Shared by the daemon's
//! reconcile loop and the operator CLI, so automatic failover, manual
//! failover, failback, pause and resume run the same code.
//!
//! A failover is a saga of two steps, each idempotent with a recorded outcome:
//! 1. claim the epoch: a conditional write on the record's `version`
//!    (a lost race is a [`Outcome::Lost`], not an error);
//! 2. start `failover-<epoch>` in the initiator region's Step Functions. The
//!    name is the idempotency key: a retry (or a restart after a crash
//!    between 1 and 2, via `Action::EnsureExecution`) starts the same
//!    execution or finds it already there.

use crate::aws::AwsClients;
use crate::aws::control_table::{ControlTable, Event, StoreError, Write};
use crate::aws::sfn::{self, SfnError, Started};
use crate::config::Config;
use crate::core::plan::{Action, FailoverPlan};

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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sfn(#[from] SfnError),
    #[error("{0} is not a configured region")]
    UnknownRegion(String),
}

/// Everything an action needs.
pub struct Executor<'a> {
    pub config: &'a Config,
    pub clients: &'a AwsClients,
    pub table: &'a ControlTable,
    /// Who acts: a region name, or `operator:<name>`.
    pub who: String,
}

impl Executor<'_> {
    /// Journal an act at the time it happened (not the round's `now`, so
    /// entries of one action keep their order).
    async fn journal(&self, _decided_at: u64, kind: &str, epoch: Option<u64>, detail: String) {
        let e = Event {
            at: crate::aws::control_table::now_ms(),
            who: self.who.clone(),
            kind: kind.into(),
            epoch,
            detail,
        };
        if let Err(err) = self.table.journal(&e).await {
            // The journal is for humans; losing an entry must not stop a failover.
            tracing::warn!(error = %err, kind, "cannot write journal entry");
        }
    }

    /// Perform `action` at time `now`.
    pub async fn apply(&self, action: &Action, now: u64) -> Result<Outcome, ExecError> {
        match action {
            Action::Initialize { active } => {
                match self.table.initialize(active, &self.who, now).await? {
                    Write::Written => {
                        self.journal(
                            now,
                            "initialized",
                            Some(1),
                            format!("control record created: {active} active"),
                        )
                        .await;
                        Ok(Outcome::Done(format!(
                            "control record created with {active} active"
                        )))
                    }
                    Write::Conflict => Ok(Outcome::Lost),
                }
            }
            Action::StartFailover(p) => {
                match self.table.claim_failover(p, now).await? {
                    Write::Conflict => {
                        self.journal(
                            now,
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
                        self.journal(
                            now,
                            "failover_claimed",
                            Some(p.epoch),
                            format!(
                                "{} -> {} ({how}{}): {}",
                                p.from,
                                p.to,
                                if p.ungraceful { ", ungraceful" } else { "" },
                                p.reason
                            ),
                        )
                        .await;
                    }
                }
                self.start(p, now).await
            }
            Action::EnsureExecution(p) => self.start(p, now).await,
            Action::Settle {
                expected_version,
                execution,
            } => {
                match self
                    .table
                    .settle(*expected_version, execution, &self.who, now)
                    .await?
                {
                    Write::Written => {
                        self.journal(
                            now,
                            "settled",
                            None,
                            format!("{execution} ended without settling the record; marked steady"),
                        )
                        .await;
                        Ok(Outcome::Done(format!("settled after {execution}")))
                    }
                    Write::Conflict => Ok(Outcome::Lost),
                }
            }
            Action::SetMode {
                mode,
                expected_version,
                reason,
                changed_by,
            } => match self
                .table
                .set_mode(*mode, *expected_version, reason, changed_by, now)
                .await?
            {
                Write::Written => {
                    self.journal(
                        now,
                        "mode",
                        None,
                        format!("mode set to {mode:?} by {changed_by}: {reason}"),
                    )
                    .await;
                    Ok(Outcome::Done(format!("mode is now {mode:?}")))
                }
                Write::Conflict => Ok(Outcome::Lost),
            },
        }
    }

    async fn start(&self, p: &FailoverPlan, now: u64) -> Result<Outcome, ExecError> {
        let region = self
            .config
            .region(&p.initiator)
            .ok_or_else(|| ExecError::UnknownRegion(p.initiator.clone()))?;
        let client = self.clients.sfn(&p.initiator);
        let input = p.execution_input().to_string();
        let started =
            sfn::start_execution(&client, &region.state_machine_arn, &p.execution, &input).await?;
        let what = match &started {
            Started::Running(arn) => format!("{} running ({arn})", p.execution),
            Started::AlreadyExists => format!("{} already exists (started earlier)", p.execution),
        };
        self.journal(now, "execution_started", Some(p.epoch), what.clone())
            .await;
        Ok(Outcome::Done(what))
    }
}
