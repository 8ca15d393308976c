//! The planner: `(now, tally, control record, policy, request) -> decision`.
//!
//! One code path for automatic failover, manual failover, failback, pause
//! and resume: the daemon calls [`plan`] with no request every round; the
//! operator CLI calls it with a [`Request`]. The executor then performs the
//! one action, always as a write conditional on the record's `version`, so
//! two planners that read the same record cannot both act.
//!
//! Rules for automatic failover (DESIGN.md section 5):
//! - only with a quorum (see `quorum`), only in `auto` mode, only when the
//!   record is steady;
//! - the active region must be `Down` by quorum;
//! - the target is the highest-priority region the quorum sees `Up`, and only
//!   the target's own daemon starts the failover (in its own region's Step
//!   Functions, as `failover-<epoch+1>`);
//! - not sooner than `min_failover_interval` after the last failover;
//! - failback (moving to a *more* preferred region that recovered) only when
//!   `auto_failback` is on;
//! - in `eventual` consistency mode, never automatically: the model check
//!   (tests/model_check.rs) shows two regions can each win a conditional
//!   write on their own replica, so only an operator may move the record.

use serde::{Deserialize, Serialize};

use super::control::{ControlRecord, Mode, Phase, execution_name};
use super::quorum::{Consensus, Tally};

/// Policy inputs, from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// (region, priority), any order; lower priority number = preferred.
    pub priorities: Vec<(String, u32)>,
    pub min_failover_interval_ms: u64,
    pub auto_failback: bool,
    /// False in `eventual` consistency mode (see the module doc).
    pub automatic_allowed: bool,
    /// A failover still in flight this long after its claim, whose initiator
    /// is gone (its vote is stale), is settled by any daemon with a quorum.
    /// Longer than the workflow's task timeouts together (prepare 300 s +
    /// drain 120 s), so no execution can still be running by then.
    pub stuck_failover_ms: u64,
}

/// The default for [`Policy::stuck_failover_ms`]: 15 minutes.
pub const STUCK_FAILOVER_MS: u64 = 15 * 60 * 1000;

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
}

/// A failover to perform: write the record (conditional on
/// `expected_version`), then start `execution` in `initiator`'s region.
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
        })
    }
}

/// The one thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Create the record (conditional on it not existing).
    Initialize { active: String },
    /// Claim the next epoch and start its workflow.
    StartFailover(FailoverPlan),
    /// The record already claims this failover but its execution does not
    /// exist (crash between write and start): start it, same name and input.
    EnsureExecution(FailoverPlan),
    /// The execution ended without settling the record: settle it.
    Settle {
        expected_version: u64,
        execution: String,
    },
    SetMode {
        mode: Mode,
        expected_version: u64,
        reason: String,
        changed_by: String,
    },
}

/// The planner's answer.
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
    /// Set when the record is failing over and `me` initiated it.
    pub execution: Option<ExecutionStatus>,
    pub policy: &'a Policy,
    pub request: Option<&'a Request>,
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

fn plan_automatic(i: &Inputs<'_>) -> Decision {
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
        if rec.initiator.as_deref() == Some(i.me) {
            match i.execution {
                Some(ExecutionStatus::NotStarted) => {
                    if let Some(p) = FailoverPlan::from_record(rec) {
                        return Decision::Act {
                            action: Action::EnsureExecution(p),
                        };
                    }
                }
                Some(ExecutionStatus::Ended) | Some(ExecutionStatus::Succeeded) => {
                    return Decision::Act {
                        action: Action::Settle {
                            expected_version: rec.version,
                            execution: rec.execution.clone().unwrap_or_default(),
                        },
                    };
                }
                Some(ExecutionStatus::Running) | None => {}
            }
        }
        // Liveness: an initiator that died between its claim and the end of
        // the workflow must not wedge the record for good. After the bound
        // on the workflow's duration, any daemon with a quorum settles it.
        let initiator_gone = !rec
            .initiator
            .as_ref()
            .is_some_and(|r| i.tally.fresh_observers.contains(r));
        let stuck = i.now.saturating_sub(rec.changed_at) > i.policy.stuck_failover_ms;
        if stuck && initiator_gone && i.tally.no_quorum.is_none() {
            return Decision::Act {
                action: Action::Settle {
                    expected_version: rec.version,
                    execution: rec.execution.clone().unwrap_or_default(),
                },
            };
        }
        return idle(format!(
            "failover in flight: {} ({} -> {})",
            rec.execution.as_deref().unwrap_or("?"),
            rec.previous.as_deref().unwrap_or(&rec.active),
            rec.target.as_deref().unwrap_or("?")
        ));
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
    let too_soon = rec
        .last_failover_at
        .is_some_and(|t| i.now < t.saturating_add(i.policy.min_failover_interval_ms));

    if i.tally.is(&rec.active, Consensus::Down) {
        let Some(target) = best_up(i, Some(&rec.active)) else {
            return idle(format!(
                "{} is down, but no other region is up by quorum",
                rec.active
            ));
        };
        if target != i.me {
            return idle(format!(
                "{} is down; {target} is the failover target, not us",
                rec.active
            ));
        }
        if too_soon {
            return idle(format!(
                "{} is down, but the last failover was less than the minimum interval ago",
                rec.active
            ));
        }
        let reason = format!(
            "quorum of {} fresh observers sees {} down",
            i.tally.fresh_observers.len(),
            rec.active
        );
        return start(i, rec, target, reason, Initiated::Automatic);
    }
    if i.policy.auto_failback {
        if let Some(best) = best_up(i, None) {
            let prio = |r: &str| {
                i.policy
                    .priorities
                    .iter()
                    .find(|(n, _)| n == r)
                    .map(|(_, p)| *p)
                    .unwrap_or(u32::MAX)
            };
            if best != rec.active && prio(&best) < prio(&rec.active) && best == i.me && !too_soon {
                let reason = format!(
                    "automatic failback: preferred region {} is up by quorum",
                    i.me
                );
                return start(i, rec, best, reason, Initiated::Automatic);
            }
        }
    }
    idle(format!("steady: {} is active", rec.active))
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
    if rec.phase == Phase::FailingOver {
        return refuse(format!(
            "a failover is already in flight: {} to {}",
            rec.execution.as_deref().unwrap_or("?"),
            rec.target.as_deref().unwrap_or("?")
        ));
    }
    if rec.active == to {
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
    }
    let how = Initiated::Operator {
        name: operator.clone(),
        forced: force,
        ungraceful,
    };
    start(i, rec, to, reason, how)
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
    Decision::Act {
        action: Action::StartFailover(FailoverPlan {
            from: rec.active.clone(),
            to: to.clone(),
            epoch: rec.epoch + 1,
            execution: execution_name(rec.epoch + 1),
            initiator: to,
            expected_version: rec.version,
            reason,
            ungraceful,
            old_region_healthy: i.tally.fresh_observers.contains(&rec.active),
            forced,
            automatic,
            changed_by,
        }),
    }
}
