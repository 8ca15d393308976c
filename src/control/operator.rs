//! The one path for an operator's request, whichever surface it came
//! through (`failoverd pause|resume|failover|failback|approve|reject`, the
//! admin API's `POST /v1/pause|resume`, the simulation's operator):
//! tally → plan → confirm → fenced write → (re-plan) → outcome.
//!
//! The write is fenced on the record's version, and the record moves all
//! the time: the active renews its lease every round, a failover in flight
//! writes its steps. So when the fenced write loses, the request is planned
//! again on the new record; if that plan is the very decision that was
//! confirmed (same description: same regions, epoch, execution, what it
//! supersedes), it is written without asking again, at most [`REPLANS`]
//! times. If the decision itself changed, nothing is written and the
//! outcome says what it would be now.
//!
//! The surfaces differ only in how they confirm (a typed "yes", `--yes`,
//! or the authenticated request itself) and in how they render the
//! [`Outcome`] (an exit code and a line, an HTTP status and a JSON body).

use crate::config::Config;
use crate::core::control::{Mode, Proposal, ProposalState};
use crate::core::plan::{self, Action, Decision, Inputs, RecordRead, Request};
use crate::core::quorum::{self, Tally, Vote};
use crate::ports::Ports;

use super::executor::{self, Executor};
use super::reconcile::policy;

/// How many times a confirmed request is planned again when the record
/// moved under it (a lease renewal, a heartbeat of the workflow).
pub const REPLANS: u32 = 5;

/// Who tallies the votes: a daemon counts only with its own vote among the
/// fresh ones; an operator is not an observer and needs only a majority of
/// fresh observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seat<'a> {
    Observer(&'a str),
    Operator,
}

/// The quorum's view of the configured regions, as `seat` sees it. The one
/// tally of the daemon, the CLI and the admin API.
pub fn tally(cfg: &Config, votes: &[Vote], now: u64, seat: Seat<'_>) -> Tally {
    let regions: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
    let freshness = cfg.timings.vote_freshness.as_millis() as u64;
    match seat {
        Seat::Observer(me) => quorum::tally(me, &regions, votes, now, freshness),
        Seat::Operator => quorum::tally_as_operator(&regions, votes, now, freshness),
    }
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written: what was done.
    Done(String),
    /// The planner refused (unsafe, pointless, or not possible now).
    Refused(String),
    /// The confirmation was not given.
    NotConfirmed(String),
    /// The record moved and the decision with it: nothing was written.
    Changed { now: String },
    /// The record kept moving for [`REPLANS`] tries: nothing was written.
    KeptMoving,
    /// The control record could not be read: nothing was planned.
    Unreadable(String),
    /// The write failed (AWS): it may or may not have landed; re-read.
    Failed(String),
}

/// What the request would do, shown for confirmation.
#[derive(Debug, Clone)]
pub struct Proposed {
    /// The action in words.
    pub description: String,
    /// What the operator should know before confirming (votes that could
    /// not be read, so health counts as unknown).
    pub warnings: Vec<String>,
    /// Shown with the description but not part of it (so not compared on
    /// a re-plan): what changes with time, like a proposal's age.
    pub details: Vec<String>,
}

/// The operator's name on the request (`operator:<name>` in the record).
fn operator_of(req: &Request) -> &str {
    match req {
        Request::Failover { operator, .. }
        | Request::Failback { operator, .. }
        | Request::Pause { operator, .. }
        | Request::Resume { operator, .. }
        | Request::Approve { operator, .. }
        | Request::Reject { operator, .. } => operator,
    }
}

/// Read the record and the votes and plan `req`.
async fn decide(cfg: &Config, ports: &Ports, req: &Request) -> Result<Planned, Outcome> {
    let (record, votes) = tokio::join!(ports.store.read_record(), ports.store.read_votes());
    let record = match record {
        Ok(Some(r)) => RecordRead::Found(r),
        Ok(None) => RecordRead::Missing,
        Err(e) => {
            return Err(Outcome::Unreadable(format!(
                "cannot read the control record: {}",
                crate::error_chain(&e)
            )));
        }
    };
    let mut warnings = Vec::new();
    let votes = votes.unwrap_or_else(|e| {
        warnings.push(format!(
            "cannot read votes ({}); treating health as unknown",
            crate::error_chain(&e)
        ));
        Vec::new()
    });
    let now = ports.clock.now_ms();
    let tally = tally(cfg, &votes, now, Seat::Operator);
    let decision = plan::plan(&Inputs {
        now,
        me: &cfg.region,
        tally: &tally,
        record: &record,
        execution: None,
        stalled_ms: 0,
        policy: &policy(cfg),
        request: Some(req),
        held: None,
        fleet_epoch: 0,
        // An operator names the target: readiness does not steer it.
        readiness: &Default::default(),
    });
    match decision {
        Decision::Act { action } => {
            // A decision on a proposal shows the proposal it binds: the
            // record's, which the planner checked it names.
            let proposal = match (&action, &record) {
                (Action::Resolve { id, .. }, RecordRead::Found(r)) => {
                    r.proposal.as_ref().filter(|p| p.id == *id)
                }
                _ => None,
            };
            let details = proposal
                .map(|p| {
                    vec![format!(
                        "proposed {} ago (on {}'s clock), because: {}",
                        age(now.saturating_sub(p.proposed_at)),
                        p.proposer,
                        p.reason
                    )]
                })
                .unwrap_or_default();
            Ok(Planned {
                shown: Proposed {
                    description: describe_with(&action, proposal),
                    warnings,
                    details,
                },
                action,
            })
        }
        Decision::Refuse { why } | Decision::Idle { why } => Err(Outcome::Refused(why)),
    }
}

/// A plan and how it is shown.
struct Planned {
    shown: Proposed,
    action: Action,
}

/// Perform `req`: plan it, ask `confirm` once with what it would do (an
/// `Err` is the reason it was not confirmed), then write it, planning again
/// when the record moves under the write (see the module doc).
pub async fn perform(
    cfg: &Config,
    ports: &Ports,
    req: &Request,
    confirm: impl FnOnce(&Proposed) -> Result<(), String>,
) -> Outcome {
    let mut plan = match decide(cfg, ports, req).await {
        Ok(p) => p,
        Err(o) => return o,
    };
    if let Err(why) = confirm(&plan.shown) {
        return Outcome::NotConfirmed(why);
    }
    let confirmed = plan.shown.description.clone();
    let exec = Executor {
        config: cfg,
        ports,
        who: format!("operator:{}", operator_of(req)),
    };
    let mut replans = 0;
    loop {
        match exec.apply(&plan.action, ports.clock.now_ms()).await {
            Ok(executor::Outcome::Done(what)) => return Outcome::Done(what),
            Ok(executor::Outcome::Lost) if replans < REPLANS => {
                replans += 1;
                let again = match decide(cfg, ports, req).await {
                    Ok(p) => p,
                    Err(o) => return o,
                };
                if again.shown.description != confirmed {
                    return Outcome::Changed {
                        now: again.shown.description,
                    };
                }
                plan = again;
            }
            Ok(executor::Outcome::Lost) => return Outcome::KeptMoving,
            Err(e) => return Outcome::Failed(crate::error_chain(&e)),
        }
    }
}

/// A duration in words, to the second.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// What an action will do, in words (what the operator confirms, and what
/// a re-plan must match).
pub fn describe(action: &Action) -> String {
    describe_with(action, None)
}

/// [`describe`], with the proposal a decision binds (its source and
/// proposer, which the action does not carry).
fn describe_with(action: &Action, proposal: Option<&Proposal>) -> String {
    match action {
        Action::StartFailover(p) => format!(
            "fail over from {} to {}: epoch {} -> {}, start Step Functions execution {} in {}{}{}\n  reason: {}",
            p.from,
            p.to,
            p.epoch - 1,
            p.epoch,
            p.execution,
            p.initiator,
            if p.ungraceful {
                ", UNGRACEFUL (no drain of the old region)"
            } else {
                ""
            },
            if p.forced {
                ", FORCED (health and quorum checks overridden; journalled)"
            } else {
                ""
            },
            p.reason
        ) + &p
            .supersedes
            .as_deref()
            .map(|old| format!("\n  SUPERSEDES the in-flight failover {old} (it will be stopped; its writes are fenced off)"))
            .unwrap_or_default(),
        Action::SetMode { mode, reason, .. } => format!(
            "set mode to {mode:?} (automatic failover {}): {reason}",
            if *mode == Mode::Paused {
                "stops"
            } else {
                "resumes"
            }
        ),
        Action::Resolve {
            epoch,
            target,
            id,
            state,
            reason,
            ..
        } => format!(
            "mark the proposed failover {} -> {target} (epoch {epoch}, proposal {id}{}) {}{}\n  reason: {reason}",
            proposal.map_or("?", |p| p.from.as_str()),
            proposal
                .map(|p| format!(", proposed by {}", p.proposer))
                .unwrap_or_default(),
            state.as_str(),
            if *state == ProposalState::Approved {
                " (its target's daemon claims it next round, if the active is still down)"
            } else {
                " (no automatic failover of that epoch)"
            }
        ),
        other => format!("{other:?}"),
    }
}
