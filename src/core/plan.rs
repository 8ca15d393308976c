//! The planner: `(now, tally, control record, policy, request) -> decision`.
//!
//! One code path for automatic failover, manual failover, failback, pause
//! and resume: the daemon calls [`plan`] with no request every round; the
//! operator CLI calls it with a [`Request`]. The executor then performs the
//! one action, always as a write conditional on the record's `version`, so
//! two planners that read the same record cannot both act.
//!
//! Rules for automatic failover (docs/design.md §5):
//! - only with a quorum (see `quorum`), only in `auto` mode, only when the
//!   record is steady;
//! - the active region must be `Down` by quorum;
//! - the target is the highest-priority region the quorum sees `Up` *whose
//!   daemon's vote is fresh* (a region whose daemon is dead cannot run its
//!   prepare step, so it cannot take over), and only the target's own daemon
//!   starts the failover (in its own region's Step Functions, as
//!   `failover-<incarnation>-<epoch+1>`). Daemons may disagree on who the
//!   target is (their views of freshness differ); the claim is a write
//!   conditional on the record's version, so at most one of them wins the
//!   epoch (docs/protocol.md, "one initiator per epoch");
//! - among the regions that can take over, one whose standby readiness is
//!   known critical (`core::standby::fleet_readiness`: a fresh reading of
//!   its daemon, against the current active) comes after every region that
//!   is not, whatever their priorities; an unready region is still the
//!   target when no other can take over (readiness orders, never blocks),
//!   and a stale or missing reading is unknown, taken as ready. A failback
//!   never goes onto an unready region. Which target the daemons pick does
//!   not touch safety: the claim is fenced on the version whatever the
//!   target (docs/model-check.md, "Readiness");
//! - not sooner than `min_failover_interval` after the last failover, except
//!   after an aborted one: then after `abort_retry × 2^(aborts−1)`, capped by
//!   `min_failover_interval`, preferring another target than the one that
//!   just aborted;
//! - an in-flight failover never wedges the record: an ended execution, one
//!   that never started within `start_timeout`, or one that made no progress
//!   for `stuck_failover` is settled by its initiator or any daemon with a
//!   quorum, whatever the initiator's liveness (the stall is measured on the
//!   settling daemon's own clock). Settling is safe at any moment: the
//!   workflow's writes are fenced on the record still failing over
//!   (`core::record`);
//! - failback (moving to a *more* preferred region that recovered) only when
//!   `auto_failback` is on;
//! - with `policy.approval = "manual"` (for the fleet's strictest tier), an
//!   automatic failover or failback the target's daemon would claim is
//!   recorded as a *proposal* instead ([`Action::Propose`], with an id
//!   that names it and no other); it is claimed only once an operator
//!   approves that very proposal (`failoverd approve --proposal ID`: its
//!   epoch, target and id) and its conditions still hold. A proposed one
//!   whose conditions no longer hold is withdrawn by any daemon with a
//!   quorum; an *approved* one only when the quorum affirmatively no longer
//!   sees its reason (the active up by quorum, or the target down by quorum
//!   or its daemon not live), never because one observer's view flipped and
//!   left the verdict split; one left undecided for
//!   `approval_timeout` (on the target's clock) expires or proceeds, as
//!   `on_approval_timeout` says; after a rejection or expiry the next
//!   proposal waits `min_failover_interval`. The proposal is only ever a
//!   version-fenced record write that claims nothing: the safety argument
//!   of the claim is unchanged (docs/protocol.md, "approval");
//! - in `eventual` consistency mode, never automatically: the model check
//!   (tests/model_check.rs) shows two regions can each win a conditional
//!   write on their own replica, so only an operator may move the record.

use serde::{Deserialize, Serialize};

use super::control::{
    ControlRecord, Mode, Phase, Proposal, ProposalState, Step, claim_execution_name, proposal_id,
};
use super::quorum::{Consensus, Tally};
use super::record::{Recreated, Settlement, settlement};
use super::standby::{FleetReadiness, Ready};

/// Policy inputs, from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// (region, priority), any order; lower priority number = preferred.
    pub priorities: Vec<(String, u32)>,
    pub min_failover_interval_ms: u64,
    pub auto_failback: bool,
    /// False in `eventual` consistency mode (see the module doc).
    pub automatic_allowed: bool,
    /// A failover whose record shows no progress (its version unchanged)
    /// for this long is settled. Longer than the longest wait of the
    /// workflow between two record writes (a callback task's timeout, plus
    /// the DynamoDB retries around it): see docs/protocol.md.
    pub stuck_failover_ms: u64,
    /// A claimed failover whose workflow has not marked the record within
    /// this long is settled: its execution did not start (or cannot).
    pub start_timeout_ms: u64,
    /// After an aborted failover, the next automatic attempt may come after
    /// `abort_retry × 2^(aborts−1)`, never later than `min_failover_interval`.
    pub abort_retry_ms: u64,
    /// Whether an automatic failover needs an operator's approval (already
    /// resolved for the fleet's tiers: the strictest wins).
    pub approval: Approval,
    /// How long a proposal waits for a decision.
    pub approval_timeout_ms: u64,
    /// What an undecided proposal does when `approval_timeout_ms` has passed.
    pub on_approval_timeout: OnApprovalTimeout,
}

/// `policy.approval`: may the daemons claim an automatic failover on their
/// own, or only propose it?
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Claim at once (the default).
    None,
    /// Propose; claim once an operator approves.
    Manual,
}

impl Approval {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::None => "none",
            Approval::Manual => "manual",
        }
    }

    /// Parse the configuration spelling.
    pub fn parse(s: &str) -> Option<Approval> {
        [Approval::None, Approval::Manual]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// `policy.on_approval_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnApprovalTimeout {
    /// The proposal expires (like a rejection; the default: silence is not consent).
    Expire,
    /// The failover proceeds as if approved.
    Proceed,
}

impl OnApprovalTimeout {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnApprovalTimeout::Expire => "expire",
            OnApprovalTimeout::Proceed => "proceed",
        }
    }

    /// Parse the configuration spelling.
    pub fn parse(s: &str) -> Option<OnApprovalTimeout> {
        [OnApprovalTimeout::Expire, OnApprovalTimeout::Proceed]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// Default for [`Policy::approval_timeout_ms`]: 15 minutes.
pub const APPROVAL_TIMEOUT_MS: u64 = 15 * 60 * 1000;

/// Default for [`Policy::stuck_failover_ms`]: 5 minutes (prepare's 120 s
/// timeout, or drain's 120 s, plus a minute of DynamoDB retries, with room).
pub const STUCK_FAILOVER_MS: u64 = 5 * 60 * 1000;
/// Default for [`Policy::start_timeout_ms`].
pub const START_TIMEOUT_MS: u64 = 60 * 1000;
/// How long journal, token and job items are kept (their `ttl`): 30 days.
pub const ITEM_RETENTION_SECS: u64 = 30 * 24 * 3600;

impl Policy {
    /// Regions, most preferred first.
    pub fn by_priority(&self) -> Vec<&str> {
        let mut v: Vec<&(String, u32)> = self.priorities.iter().collect();
        v.sort_by_key(|(_, p)| *p);
        v.into_iter().map(|(r, _)| r.as_str()).collect()
    }
}

/// What the daemon knows of the control record this round.
#[derive(Debug, Clone, PartialEq, Eq)]
// One per round, passed by reference: boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum RecordRead {
    Found(ControlRecord),
    /// The table answered: there is no record yet.
    Missing,
    /// The table could not be read.
    Unreadable(String),
}

/// Status of the record's execution, when the record is failing over and
/// this daemon initiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// No such execution: the initiator crashed between its write and StartExecution.
    NotStarted,
    Running,
    Succeeded,
    /// Failed, timed out or aborted.
    Ended,
}

impl ExecutionStatus {
    /// The execution will not write the record again.
    pub fn is_terminal(self) -> bool {
        matches!(self, ExecutionStatus::Succeeded | ExecutionStatus::Ended)
    }
}

/// An operator's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Request {
    Failover {
        to: String,
        reason: String,
        ungraceful: bool,
        force: bool,
        operator: String,
    },
    Failback {
        reason: String,
        force: bool,
        operator: String,
    },
    Pause {
        reason: String,
        operator: String,
    },
    Resume {
        reason: String,
        operator: String,
    },
    /// Approve the proposed failover named by its `epoch` and/or its
    /// `proposal` id (at least one), and `to` its target if given: refused
    /// unless the open proposal is that one.
    Approve {
        epoch: Option<u64>,
        proposal: Option<String>,
        to: Option<String>,
        reason: String,
        operator: String,
    },
    /// Reject the proposed failover named as for [`Request::Approve`].
    Reject {
        epoch: Option<u64>,
        proposal: Option<String>,
        to: Option<String>,
        reason: String,
        operator: String,
    },
}

/// A failover to perform: write the record (conditional on
/// `expected_version`), then start `execution` in `initiator`'s region.
/// With `supersedes`, the claim replaces an in-flight failover (an
/// operator's `--force`), and the old execution is stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverPlan {
    pub from: String,
    pub to: String,
    /// The new epoch (read epoch + 1).
    pub epoch: u64,
    pub execution: String,
    pub initiator: String,
    pub expected_version: u64,
    pub reason: String,
    pub ungraceful: bool,
    /// Whether the old region's daemon can be asked to drain: its vote is
    /// fresh (it is alive and reaches the table), whatever its endpoints'
    /// health. When false the workflow does not wait for a drain.
    pub old_region_healthy: bool,
    pub forced: bool,
    pub automatic: bool,
    pub changed_by: String,
    /// When the claim was decided (unix ms, the planner's `now`): becomes
    /// the record's `last_failover_at`, and the items' `ttl` derives from it.
    pub claimed_at: u64,
    /// The in-flight execution this claim supersedes.
    pub supersedes: Option<String>,
    /// The state machine the execution runs in. The planner leaves it
    /// `None`; the executor fills in the initiator's configured one before
    /// it claims, and the claim writes it to the record
    /// (`ControlRecord::state_machine`); a plan rebuilt from the record
    /// carries the record's.
    #[serde(default)]
    pub state_machine: Option<String>,
}

impl FailoverPlan {
    /// The execution input: a pure function of the plan, so a retried
    /// StartExecution carries the same input and stays idempotent.
    pub fn execution_input(&self) -> serde_json::Value {
        serde_json::json!({
            "epoch": self.epoch,
            "execution": self.execution,
            "from": self.from,
            "to": self.to,
            "reason": self.reason,
            "ungraceful": self.ungraceful,
            "old_region_healthy": self.old_region_healthy,
            "forced": self.forced,
            "initiator": self.initiator,
            "ttl": self.claimed_at / 1000 + ITEM_RETENTION_SECS,
        })
    }

    /// Rebuild the plan of the failover a record is in (for restarts).
    pub fn from_record(r: &ControlRecord) -> Option<Self> {
        let execution = r.execution.clone()?;
        Some(Self {
            from: r.previous.clone().unwrap_or_else(|| r.active.clone()),
            to: r.target.clone()?,
            epoch: r.epoch,
            execution,
            initiator: r.initiator.clone()?,
            expected_version: r.version,
            reason: r.reason.clone(),
            ungraceful: r.ungraceful,
            old_region_healthy: r.old_region_healthy,
            forced: r.forced,
            automatic: !r.changed_by.starts_with("operator:"),
            changed_by: r.changed_by.clone(),
            claimed_at: r.last_failover_at?,
            supersedes: None,
            state_machine: r.state_machine.clone(),
        })
    }
}

/// The one thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Create the record (conditional on it not existing).
    Initialize { active: String },
    /// Re-create a lost or restored record from this daemon's copy
    /// (`RecordWrite::Recreate`), under a fresh incarnation.
    Recreate { from: Recreated, reason: String },
    /// Claim the next epoch and start its workflow.
    StartFailover(FailoverPlan),
    /// The record already claims this failover but its execution does not
    /// exist (crash between write and start): start it, same name and input.
    EnsureExecution(FailoverPlan),
    /// End an in-flight failover that its workflow will not end (see the
    /// module doc); `stop` asks Step Functions to stop the execution too,
    /// in case it still runs.
    Settle {
        expected_version: u64,
        execution: String,
        outcome: Settlement,
        reason: String,
        stop: bool,
    },
    SetMode {
        mode: Mode,
        expected_version: u64,
        reason: String,
        changed_by: String,
    },
    /// Record an automatic failover as proposed, awaiting approval (claims nothing).
    Propose {
        expected_version: u64,
        /// The new proposal's id (`control::proposal_id`).
        id: String,
        epoch: u64,
        from: String,
        target: String,
        reason: String,
    },
    /// Decide the proposal of `epoch`, `target` and `id` (that one and no
    /// other): approve, reject, expire or withdraw it.
    Resolve {
        expected_version: u64,
        epoch: u64,
        target: String,
        id: String,
        state: ProposalState,
        reason: String,
        changed_by: String,
    },
}

/// The planner's answer. (One per round: its size does not matter, and
/// boxing the action would only add a pointer to every match on it.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    Act {
        action: Action,
    },
    /// Nothing to do, and why (journalled when it changes).
    Idle {
        why: String,
    },
    /// An operator request that is unsafe or pointless, and why.
    Refuse {
        why: String,
    },
}

impl Decision {
    /// The target of an automatic failover this decision would start or
    /// propose (`StartFailover` with `automatic`, or `Propose`): what the
    /// gates after the planner (`core::tier::gate_automatic`,
    /// `core::drift::gate`) may withhold. None for everything else:
    /// operators' failovers, settles, initialisation, a claimed failover's
    /// execution.
    pub fn automatic_failover_target(&self) -> Option<&str> {
        match self {
            Decision::Act {
                action: Action::StartFailover(p),
            } if p.automatic => Some(&p.to),
            Decision::Act {
                action: Action::Propose { target, .. },
            } => Some(target),
            _ => None,
        }
    }
}

fn idle(why: impl Into<String>) -> Decision {
    Decision::Idle { why: why.into() }
}

fn refuse(why: impl Into<String>) -> Decision {
    Decision::Refuse { why: why.into() }
}

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub now: u64,
    /// This daemon's region (the CLI passes the region it acts from).
    pub me: &'a str,
    pub tally: &'a Tally,
    pub record: &'a RecordRead,
    /// The status of the record's execution, when the record is failing
    /// over and Step Functions could be asked.
    pub execution: Option<ExecutionStatus>,
    /// How long this daemon has seen the record at its current version, on
    /// its own clock (0 when it has just changed).
    pub stalled_ms: u64,
    pub policy: &'a Policy,
    pub request: Option<&'a Request>,
    /// The last record this daemon read before this round's read (its
    /// copy, in memory: a restarted daemon holds none).
    pub held: Option<&'a ControlRecord>,
    /// The newest epoch any configured observer's vote says it has seen,
    /// fresh or not (`core::quorum::board_epoch`): more than 0 means a
    /// record existed.
    pub fleet_epoch: u64,
    /// Every standby's readiness (`core::standby::fleet_readiness`, from
    /// the fresh votes): an automatic failover prefers a target that is
    /// not unready over a higher-priority unready one. Absent regions are
    /// unknown (taken as ready). The operator CLI passes none: an operator
    /// names the target.
    pub readiness: &'a FleetReadiness,
}

/// Decide.
pub fn plan(i: &Inputs<'_>) -> Decision {
    match i.request {
        Some(req) => plan_request(i, req),
        None => plan_automatic(i),
    }
}

fn best_up(i: &Inputs<'_>, excluding: Option<&str>) -> Option<String> {
    i.policy
        .by_priority()
        .into_iter()
        .filter(|r| Some(*r) != excluding)
        .find(|r| i.tally.is(r, Consensus::Up))
        .map(String::from)
}

/// Can `region` take over? Up by quorum, and its daemon alive (its vote is
/// fresh): only a live daemon can run the prepare step.
fn can_take_over(i: &Inputs<'_>, region: &str) -> bool {
    i.tally.is(region, Consensus::Up) && i.tally.fresh_observers.iter().any(|o| o == region)
}

/// Is `region` unready by the fleet's readiness (a fresh critical reading
/// against the current active)? Unknown is not unready.
fn unready<'a>(i: &'a Inputs<'_>, region: &str) -> Option<&'a str> {
    match i.readiness.get(region) {
        Some(Ready::Unready(why)) => Some(why),
        _ => None,
    }
}

/// The failover target away from `rec.active`: among the regions that can
/// take over, the ones not unready first (`Inputs::readiness`), each group
/// by priority; after an aborted failover, another region than the one
/// that aborted, if there is one. An unready region is still chosen when
/// no other can take over: readiness orders the targets, it never removes
/// one. Also says which more preferred regions were passed over as
/// unready.
fn failover_target(i: &Inputs<'_>, rec: &ControlRecord) -> Option<(String, Vec<String>)> {
    let mut able: Vec<&str> = i
        .policy
        .by_priority()
        .into_iter()
        .filter(|r| *r != rec.active && can_take_over(i, r))
        .collect();
    // Stable: the priority order holds within each group.
    able.sort_by_key(|r| unready(i, r).is_some());
    let just_aborted = (rec.step == Step::Aborted)
        .then_some(rec.target.as_deref())
        .flatten();
    let target = able
        .iter()
        .find(|r| Some(**r) != just_aborted)
        .or(able.first())?
        .to_string();
    let prio = priority(i.policy, &target);
    let passed = able
        .iter()
        .filter(|r| priority(i.policy, r) < prio)
        .filter_map(|r| unready(i, r).map(|why| format!("{r} (not ready: {why})")))
        .collect();
    Some((target, passed))
}

/// The earliest time of the next automatic failover.
fn next_allowed(p: &Policy, rec: &ControlRecord) -> Option<u64> {
    let last = rec.last_failover_at?;
    let wait = if rec.step == Step::Aborted && rec.aborts > 0 {
        let shift = (rec.aborts - 1).min(20) as u32;
        p.abort_retry_ms
            .saturating_mul(1u64 << shift)
            .min(p.min_failover_interval_ms)
    } else {
        p.min_failover_interval_ms
    };
    Some(last.saturating_add(wait))
}

/// A record that is missing although the fleet knew one, or that went back
/// to an older copy (a restored table), is re-created from this daemon's
/// copy, keeping the active region and the pause, under a fresh
/// incarnation — never initialized afresh, which would be an unreviewed
/// failback onto the highest-priority region with the pause lost. Only a
/// daemon whose copy is at least as new as every vote's epoch does it; the
/// others wait for it. `None`: nothing lost.
fn recreate(i: &Inputs<'_>) -> Option<Decision> {
    let copy = |h: &ControlRecord| {
        format!(
            "epoch {}, {} active{}",
            h.epoch,
            h.active,
            if h.mode == Mode::Paused {
                ", paused"
            } else {
                ""
            }
        )
    };
    match (i.record, i.held) {
        (RecordRead::Found(r), Some(h))
            if h.incarnation == r.incarnation && h.version > r.version =>
        {
            Some(Decision::Act {
                action: Action::Recreate {
                    from: Recreated::from_copy(h, Some(r)),
                    reason: format!(
                        "the control record went back from version {} to {} (a restored table): re-created from this daemon's copy ({}) under a fresh incarnation",
                        h.version,
                        r.version,
                        copy(h)
                    ),
                },
            })
        }
        (RecordRead::Missing, Some(h)) if h.epoch >= i.fleet_epoch => Some(Decision::Act {
            action: Action::Recreate {
                from: Recreated::from_copy(h, None),
                reason: format!(
                    "the control record is missing: re-created from this daemon's copy ({}) under a fresh incarnation",
                    copy(h)
                ),
            },
        }),
        (RecordRead::Missing, Some(h)) => Some(idle(format!(
            "the control record is missing; the fleet has seen epoch {}, newer than this daemon's copy (epoch {}): waiting for a daemon that holds it to re-create it",
            i.fleet_epoch, h.epoch
        ))),
        (RecordRead::Missing, None) if i.fleet_epoch > 0 => Some(idle(format!(
            "the control record is missing, and the fleet has seen epoch {}: only a daemon that still holds a copy re-creates it, and this one does not; if none does, restore the table, or restart every daemon to initialize it afresh (runbooks/manual-failover.md)",
            i.fleet_epoch
        ))),
        _ => None,
    }
}

fn plan_automatic(i: &Inputs<'_>) -> Decision {
    if !matches!(i.record, RecordRead::Unreadable(_))
        && i.tally.no_quorum.is_none()
        && let Some(d) = recreate(i)
    {
        return d;
    }
    let rec = match i.record {
        RecordRead::Unreadable(e) => return idle(format!("cannot read the control record: {e}")),
        RecordRead::Missing => {
            if let Some(q) = &i.tally.no_quorum {
                return idle(format!(
                    "no control record yet, and no quorum to create one ({q:?})"
                ));
            }
            // Without a single strongly consistent record, every region must
            // initialize the same record whatever its votes say: the
            // preferred region (the model check found two replicas
            // initialized with different active regions otherwise).
            if !i.policy.automatic_allowed {
                let first = i.policy.by_priority().first().map(|s| s.to_string());
                return match first {
                    Some(active) => Decision::Act {
                        action: Action::Initialize { active },
                    },
                    None => idle("no regions configured"),
                };
            }
            return match best_up(i, None) {
                Some(active) => Decision::Act {
                    action: Action::Initialize { active },
                },
                None => idle("no control record yet, and no region is up by quorum"),
            };
        }
        RecordRead::Found(r) => r,
    };
    if rec.phase == Phase::FailingOver {
        return plan_in_flight(i, rec);
    }
    if rec.mode == Mode::Paused {
        return idle("paused: no automatic action");
    }
    if let Some(q) = &i.tally.no_quorum {
        return idle(format!("no quorum: {q:?}"));
    }
    if !i.policy.automatic_allowed {
        return idle(
            "automatic failover is off in eventual consistency mode (operators may still fail over)",
        );
    }
    let too_soon = next_allowed(i.policy, rec).is_some_and(|t| i.now < t);
    let candidate = automatic_candidate(i, rec);
    if let Some(p) = rec
        .proposal
        .as_ref()
        .filter(|p| p.state.is_live() && p.epoch == rec.epoch + 1)
    {
        return plan_proposal(i, rec, p, candidate);
    }
    let c = match candidate {
        Ok(c) => c,
        Err(why) => return idle(why.to_string()),
    };
    if c.failback {
        if c.target != i.me || too_soon {
            return idle(format!("steady: {} is active", rec.active));
        }
    } else {
        if c.target != i.me {
            return idle(format!(
                "{} is down; {} is the failover target, not us",
                rec.active, c.target
            ));
        }
        if too_soon {
            return idle(format!(
                "{} is down, but the last failover was too recent (next attempt at {})",
                rec.active,
                next_allowed(i.policy, rec).unwrap_or_default()
            ));
        }
    }
    if i.policy.approval == Approval::None {
        return start(i, rec, c.target, c.reason, Initiated::Automatic);
    }
    // Approval required: after a rejection or expiry of this epoch, wait
    // the usual interval before asking again.
    if let Some(p) = rec.proposal.as_ref().filter(|p| {
        p.epoch == rec.epoch + 1
            && matches!(p.state, ProposalState::Rejected | ProposalState::Expired)
    }) {
        let again = p
            .decided_at
            .unwrap_or(p.proposed_at)
            .saturating_add(i.policy.min_failover_interval_ms);
        if i.now < again {
            return idle(format!(
                "the failover to {} (epoch {}) was {}; the next proposal may come at {again}",
                p.target,
                p.epoch,
                p.state.as_str()
            ));
        }
    }
    Decision::Act {
        action: Action::Propose {
            expected_version: rec.version,
            id: proposal_id(&rec.incarnation, rec.version + 1, i.me, i.now),
            epoch: rec.epoch + 1,
            from: rec.active.clone(),
            target: c.target,
            reason: c.reason,
        },
    }
}

/// An automatic failover the planner wants, whoever would initiate it.
struct Candidate {
    target: String,
    reason: String,
    failback: bool,
}

/// Why the quorum's view calls for no automatic failover or failback.
/// Its text is the idle reason the daemon shows (status, journal), and the
/// reason a withdrawn proposal gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NoCandidate {
    #[error("{active} is down, but no other region is up by quorum with a live daemon")]
    NoTarget { active: String },
    #[error("steady: {active} is active")]
    Steady { active: String },
}

/// What automatic failover (or failback) the quorum's view calls for now,
/// before asking who initiates it and whether it is too soon; otherwise
/// why not.
fn automatic_candidate(i: &Inputs<'_>, rec: &ControlRecord) -> Result<Candidate, NoCandidate> {
    if i.tally.is(&rec.active, Consensus::Down) {
        let Some((target, passed)) = failover_target(i, rec) else {
            return Err(NoCandidate::NoTarget {
                active: rec.active.clone(),
            });
        };
        let mut reason = format!(
            "quorum of {} fresh observers sees {} down",
            i.tally.fresh_observers.len(),
            rec.active
        );
        if !passed.is_empty() {
            reason.push_str(&format!("; {target} preferred over {}", passed.join(", ")));
        }
        return Ok(Candidate {
            target,
            reason,
            failback: false,
        });
    }
    if i.policy.auto_failback
        && let Some(best) = best_up(i, None)
    {
        let prio = |r: &str| {
            i.policy
                .priorities
                .iter()
                .find(|(n, _)| n == r)
                .map(|(_, p)| *p)
                .unwrap_or(u32::MAX)
        };
        // A failback is a choice, not a rescue (the active serves):
        // never onto a region whose readiness is known critical.
        if best != rec.active && prio(&best) < prio(&rec.active) && unready(i, &best).is_none() {
            let reason = format!("automatic failback: preferred region {best} is up by quorum");
            return Ok(Candidate {
                target: best,
                reason,
                failback: true,
            });
        }
    }
    Err(NoCandidate::Steady {
        active: rec.active.clone(),
    })
}

/// A live proposal: withdraw it if the planner no longer wants it (an
/// approved one only on the quorum's affirmative view), claim it once
/// approved, expire or proceed at its timeout, else wait.
fn plan_proposal(
    i: &Inputs<'_>,
    rec: &ControlRecord,
    p: &Proposal,
    candidate: Result<Candidate, NoCandidate>,
) -> Decision {
    let resolve = |state: ProposalState, reason: String| Decision::Act {
        action: Action::Resolve {
            expected_version: rec.version,
            epoch: p.epoch,
            target: p.target.clone(),
            id: p.id.clone(),
            state,
            reason,
            changed_by: i.me.to_string(),
        },
    };
    let claims = |reason: String| -> Decision {
        if p.target != i.me {
            return idle(format!(
                "failover {} -> {} (epoch {}, proposal {}) is approved; {} claims it",
                p.from, p.target, p.epoch, p.id, p.target
            ));
        }
        let reason = format!(
            "approved by {} (proposal {}): {reason}",
            p.decided_by.as_deref().unwrap_or("?"),
            p.id
        );
        start(i, rec, p.target.clone(), reason, Initiated::Automatic)
    };
    // Any daemon with a quorum may withdraw: it claims nothing, and a
    // proposal whose target's daemon died would otherwise linger.
    let c = match candidate {
        Ok(c) if c.target == p.target => c,
        // An operator approved this very failover: not undone by a view
        // that is merely no longer conclusive (one observer's verdict that
        // flips for a round splits it), only by the quorum seeing the
        // reason gone.
        _ if p.state == ProposalState::Approved => {
            return match approved_stands(i, rec, p) {
                Stands::Withdraw(why) => resolve(ProposalState::Withdrawn, why),
                Stands::Claim(reason) => claims(reason),
                Stands::Wait(why) => idle(why),
            };
        }
        Ok(c) => {
            return resolve(
                ProposalState::Withdrawn,
                format!("the failover target is now {}, not {}", c.target, p.target),
            );
        }
        Err(why) => {
            return resolve(
                ProposalState::Withdrawn,
                format!("its conditions no longer hold: {why}"),
            );
        }
    };
    // A proposal written before ids existed is named by epoch and target.
    let name = if p.id.is_empty() {
        format!("--epoch {} --to {}", p.epoch, p.target)
    } else {
        format!("--proposal {}", p.id)
    };
    let approve_hint = format!("failoverd approve {name}");
    if p.target != i.me {
        return idle(format!(
            "failover {} -> {} (epoch {}, proposal {}) is {}; {} claims it once approved ({approve_hint})",
            p.from,
            p.target,
            p.epoch,
            p.id,
            p.state.as_str(),
            p.target
        ));
    }
    // Approved; or approval is no longer required (the configuration
    // changed while the proposal was open): claim it as any automatic
    // failover.
    if p.state == ProposalState::Approved {
        return claims(c.reason);
    }
    if i.policy.approval == Approval::None {
        let reason = format!("approval no longer required: {}", c.reason);
        return start(i, rec, c.target, reason, Initiated::Automatic);
    }
    // Proposed by us (the target's daemon): the timeout is on our own clock.
    let due = p.proposed_at.saturating_add(i.policy.approval_timeout_ms);
    if i.now >= due {
        let waited = i.policy.approval_timeout_ms / 1000;
        return match i.policy.on_approval_timeout {
            OnApprovalTimeout::Expire => resolve(
                ProposalState::Expired,
                format!("nobody approved or rejected it within {waited}s"),
            ),
            OnApprovalTimeout::Proceed => start(
                i,
                rec,
                c.target,
                format!(
                    "approval timed out after {waited}s (on_approval_timeout = proceed): {}",
                    c.reason
                ),
                Initiated::Automatic,
            ),
        };
    }
    idle(format!(
        "failover {} -> {} (epoch {}, proposal {}) awaits approval until {due}: {approve_hint}, or failoverd reject {name}",
        p.from, p.target, p.epoch, p.id
    ))
}

/// What becomes of an approved proposal the planner would not choose as
/// the view stands now.
enum Stands {
    /// The quorum no longer sees its reason: withdraw it, saying why.
    Withdraw(String),
    /// The quorum still sees its reason: its target claims it.
    Claim(String),
    /// The view is not conclusive either way: keep it, saying why.
    Wait(String),
}

/// An approved proposal is withdrawn only on the quorum's affirmative
/// view: the target down by quorum, the target's daemon not live (its vote
/// stale: it cannot prepare, and would otherwise hold the record's one
/// proposal for ever), or, unless it is a failback, the active up by quorum
/// (a strict majority of the fresh observers, themselves a majority of the
/// fleet). A split verdict (one observer's view flipping for a round, with
/// the active's own daemon gone, is enough for one) keeps it. It is claimed
/// while the quorum still sees the active down (or, a failback, the target
/// preferred and up) and the target able to take over, even if another
/// target would be preferred now: the operator approved this one.
fn approved_stands(i: &Inputs<'_>, rec: &ControlRecord, p: &Proposal) -> Stands {
    let fresh = i.tally.fresh_observers.len();
    if i.tally.is(&p.target, Consensus::Down) {
        return Stands::Withdraw(format!(
            "a quorum of {fresh} fresh observers sees the target {} down",
            p.target
        ));
    }
    if !i.tally.fresh_observers.contains(&p.target) {
        return Stands::Withdraw(format!(
            "the target {}'s daemon is not live (its vote is stale): it cannot run the prepare step",
            p.target
        ));
    }
    let failback =
        i.policy.auto_failback && priority(i.policy, &p.target) < priority(i.policy, &rec.active);
    if !failback && i.tally.is(&rec.active, Consensus::Up) {
        return Stands::Withdraw(format!(
            "a quorum of {fresh} fresh observers sees {} up again",
            rec.active
        ));
    }
    if can_take_over(i, &p.target) {
        if i.tally.is(&rec.active, Consensus::Down) {
            return Stands::Claim(format!(
                "quorum of {fresh} fresh observers sees {} down",
                rec.active
            ));
        }
        if failback {
            return Stands::Claim(format!(
                "automatic failback: preferred region {} is up by quorum",
                p.target
            ));
        }
    }
    let verdict = |r: &str| {
        i.tally.regions.get(r).map_or("unknown", |c| match c {
            Consensus::Up => "up",
            Consensus::Down => "down",
            Consensus::Split => "split",
        })
    };
    Stands::Wait(format!(
        "approved failover {} -> {} (epoch {}, proposal {}) waits: the quorum's view is not conclusive \
         ({} {}, {} {}); it is withdrawn only when a quorum sees {} up or {} down",
        p.from,
        p.target,
        p.epoch,
        p.id,
        rec.active,
        verdict(&rec.active),
        p.target,
        verdict(&p.target),
        rec.active,
        p.target
    ))
}

/// A region's configured priority (lower is preferred; unknown is last).
fn priority(p: &Policy, region: &str) -> u32 {
    p.priorities
        .iter()
        .find(|(n, _)| n == region)
        .map_or(u32::MAX, |(_, prio)| *prio)
}

/// A failover is in flight: help it along, or end it if its workflow will not.
fn plan_in_flight(i: &Inputs<'_>, rec: &ControlRecord) -> Decision {
    let execution = rec.execution.clone().unwrap_or_default();
    let mine = rec.initiator.as_deref() == Some(i.me);
    // Settling needs no quorum from the initiator (it knows its execution);
    // anyone else needs one, so an isolated daemon does not act. Under MREC
    // (automatic failover off) only the initiator settles: its settle and
    // its workflow's writes go to the same replica and so are ordered, where
    // another region's settle on its own replica could be overwritten by
    // the workflow's switch (the model check shows two actives otherwise).
    let may_settle = mine || (i.policy.automatic_allowed && i.tally.no_quorum.is_none());
    let settle = |reason: String, stop: bool| Decision::Act {
        action: Action::Settle {
            expected_version: rec.version,
            execution: execution.clone(),
            outcome: settlement(rec),
            reason,
            stop,
        },
    };
    let secs = |ms: u64| ms / 1000;
    if may_settle {
        if let Some(st) = i.execution.filter(|s| s.is_terminal()) {
            return settle(
                format!("{execution} ended ({st:?}) without settling the record"),
                false,
            );
        }
        if rec.step == Step::Claimed && i.stalled_ms > i.policy.start_timeout_ms {
            let how = match i.execution {
                Some(ExecutionStatus::NotStarted) => "does not exist",
                Some(ExecutionStatus::Running) => "runs but has not marked the record",
                _ => "cannot be confirmed (Step Functions unreadable)",
            };
            return settle(
                format!(
                    "{execution} did not start within {}s: it {how}",
                    secs(i.policy.start_timeout_ms)
                ),
                i.execution != Some(ExecutionStatus::NotStarted),
            );
        }
        if i.stalled_ms > i.policy.stuck_failover_ms {
            return settle(
                format!(
                    "{execution} made no progress for {}s (step {})",
                    secs(i.stalled_ms),
                    rec.step.as_str()
                ),
                true,
            );
        }
    }
    if mine
        && i.execution == Some(ExecutionStatus::NotStarted)
        && let Some(p) = FailoverPlan::from_record(rec)
    {
        return Decision::Act {
            action: Action::EnsureExecution(p),
        };
    }
    idle(format!(
        "failover in flight: {} ({} -> {}, step {})",
        execution,
        rec.previous.as_deref().unwrap_or(&rec.active),
        rec.target.as_deref().unwrap_or("?"),
        rec.step.as_str()
    ))
}

fn plan_request(i: &Inputs<'_>, req: &Request) -> Decision {
    let rec = match i.record {
        RecordRead::Found(r) => r,
        RecordRead::Missing => {
            return refuse("there is no control record yet: start the daemons first");
        }
        RecordRead::Unreadable(e) => return refuse(format!("cannot read the control record: {e}")),
    };
    let (to, reason, ungraceful, force, operator) = match req {
        Request::Pause { reason, operator } | Request::Resume { reason, operator } => {
            let want = if matches!(req, Request::Pause { .. }) {
                Mode::Paused
            } else {
                Mode::Auto
            };
            if rec.mode == want {
                return refuse(format!(
                    "already {}",
                    if want == Mode::Paused {
                        "paused"
                    } else {
                        "in auto mode"
                    }
                ));
            }
            return Decision::Act {
                action: Action::SetMode {
                    mode: want,
                    expected_version: rec.version,
                    reason: reason.clone(),
                    changed_by: format!("operator:{operator}"),
                },
            };
        }
        Request::Approve {
            epoch,
            proposal,
            to,
            reason,
            operator,
        }
        | Request::Reject {
            epoch,
            proposal,
            to,
            reason,
            operator,
        } => {
            let (state, verb) = if matches!(req, Request::Approve { .. }) {
                (ProposalState::Approved, "approve")
            } else {
                (ProposalState::Rejected, "reject")
            };
            let Some(p) = &rec.proposal else {
                return refuse(format!("there is no proposed failover to {verb}"));
            };
            return match named(p, *epoch, proposal.as_deref(), to.as_deref()) {
                Err(why) => refuse(why),
                Ok(()) if p.state != ProposalState::Proposed => refuse(format!(
                    "the proposal {} ({} -> {}, epoch {}) is already {}",
                    p.id,
                    p.from,
                    p.target,
                    p.epoch,
                    p.state.as_str()
                )),
                Ok(()) => Decision::Act {
                    action: Action::Resolve {
                        expected_version: rec.version,
                        epoch: p.epoch,
                        target: p.target.clone(),
                        id: p.id.clone(),
                        state,
                        reason: reason.clone(),
                        changed_by: format!("operator:{operator}"),
                    },
                },
            };
        }
        Request::Failover {
            to,
            reason,
            ungraceful,
            force,
            operator,
        } => (to.clone(), reason.clone(), *ungraceful, *force, operator),
        Request::Failback {
            reason,
            force,
            operator,
        } => {
            let Some(home) = i.policy.by_priority().first().map(|s| s.to_string()) else {
                return refuse("no regions configured");
            };
            (home, reason.clone(), false, *force, operator)
        }
    };
    if !i.policy.priorities.iter().any(|(r, _)| *r == to) {
        return refuse(format!("{to} is not one of the configured regions"));
    }
    let in_flight = rec.phase == Phase::FailingOver;
    if in_flight && !force {
        return refuse(format!(
            "a failover is already in flight: {} to {}; --force supersedes it",
            rec.execution.as_deref().unwrap_or("?"),
            rec.target.as_deref().unwrap_or("?")
        ));
    }
    if rec.active == to && !in_flight {
        return refuse(format!("{to} is already the active region"));
    }
    if !force {
        if let Some(q) = &i.tally.no_quorum {
            return refuse(format!(
                "no quorum of fresh observers ({q:?}); --force overrides"
            ));
        }
        if !i.tally.is(&to, Consensus::Up) {
            return refuse(format!(
                "{to} is not healthy by quorum ({:?}); --force overrides",
                i.tally.regions.get(&to)
            ));
        }
        if !can_take_over(i, &to) {
            return refuse(format!(
                "{to}'s daemon is not alive (its vote is stale): it cannot run the prepare step; --force overrides"
            ));
        }
    }
    let how = Initiated::Operator {
        name: operator.clone(),
        forced: force,
        ungraceful,
    };
    start(i, rec, to, reason, how)
}

/// Is `p` the proposal an operator named (by epoch and/or id, and target
/// if given)? Otherwise why not, naming the proposal that is there: an
/// approval never applies to another proposal.
fn named(
    p: &Proposal,
    epoch: Option<u64>,
    id: Option<&str>,
    to: Option<&str>,
) -> Result<(), String> {
    let there = format!(
        "the open proposal is {} ({} -> {}, epoch {}, proposed by {})",
        p.id, p.from, p.target, p.epoch, p.proposer
    );
    let check = "check `failoverd status`: it was withdrawn and proposed again, or mistyped";
    if epoch.is_none() && id.is_none() {
        return Err(format!(
            "name the proposal: --proposal ID (or --epoch N), as `failoverd status` shows it; {there}"
        ));
    }
    if let Some(e) = epoch.filter(|e| *e != p.epoch) {
        return Err(format!(
            "the proposal is for epoch {}, not {e}: {there}; {check}",
            p.epoch
        ));
    }
    if let Some(id) = id.filter(|id| *id != p.id) {
        return Err(format!("{there}, not proposal {id}; {check}"));
    }
    if let Some(to) = to.filter(|to| *to != p.target) {
        return Err(format!(
            "{there}: a failover to {}, not to {to}; {check}",
            p.target
        ));
    }
    Ok(())
}

/// Who asked for a failover, and how.
enum Initiated {
    Automatic,
    Operator {
        name: String,
        forced: bool,
        ungraceful: bool,
    },
}

/// The one way a failover plan is built: the next epoch, fenced on the
/// version read, initiated in the target's own region.
fn start(
    i: &Inputs<'_>,
    rec: &ControlRecord,
    to: String,
    reason: String,
    how: Initiated,
) -> Decision {
    let (automatic, forced, ungraceful, changed_by) = match how {
        Initiated::Automatic => (true, false, false, i.me.to_string()),
        Initiated::Operator {
            name,
            forced,
            ungraceful,
        } => (false, forced, ungraceful, format!("operator:{name}")),
    };
    let supersedes = (rec.phase == Phase::FailingOver)
        .then(|| rec.execution.clone())
        .flatten();
    // Superseding a failover that had already switched moves on from the
    // region it switched to.
    Decision::Act {
        action: Action::StartFailover(FailoverPlan {
            from: rec.active.clone(),
            to: to.clone(),
            epoch: rec.epoch + 1,
            execution: claim_execution_name(&rec.incarnation, rec.epoch + 1, i.me, i.now),
            initiator: to,
            expected_version: rec.version,
            reason,
            ungraceful,
            old_region_healthy: i.tally.fresh_observers.contains(&rec.active),
            forced,
            automatic,
            changed_by,
            claimed_at: i.now,
            supersedes,
            state_machine: None,
        }),
    }
}
