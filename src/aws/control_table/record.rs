//! The control record: decoding it, reading it, and each of its writes
//! (one function per kind of `RecordWrite`, each returning the conditional
//! update it sends).

use std::borrow::Cow;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    Bad, CONTROL, ControlTable, Item, b, flag, get_n, get_s, get_time, n, need, optional, s,
};
use crate::core::control::{ControlRecord, Mode, Phase, Proposal, ProposalState, Step};
use crate::core::plan::FailoverPlan;
use crate::core::record::{RecordWrite, Recreated, Settlement};
use crate::ports::PortError;
use crate::ports::store::Write;

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Auto => "auto",
        Mode::Paused => "paused",
    }
}

fn record_from_item(it: &Item) -> Result<ControlRecord, Bad> {
    let mode = match need(get_s(it, "mode"), "mode")?.as_str() {
        "auto" => Mode::Auto,
        "paused" => Mode::Paused,
        other => return Err(Bad(format!("unknown mode {other:?}"))),
    };
    let phase = match need(get_s(it, "state"), "state")?.as_str() {
        "steady" => Phase::Steady,
        "failing_over" => Phase::FailingOver,
        other => return Err(Bad(format!("unknown state {other:?}"))),
    };
    let step_name = need(get_s(it, "step"), "step")?;
    let step = Step::parse(&step_name).ok_or_else(|| Bad(format!("unknown step {step_name:?}")))?;
    // A failover's flags decide how it runs (drain or not, forced): a claim
    // writes all three, so a record failing over without them is damaged.
    let failover_flag = |k: &str| -> Result<bool, Bad> {
        if phase == Phase::FailingOver && !it.contains_key(k) {
            return Err(Bad(format!(
                "missing attribute {k:?} on a record failing over"
            )));
        }
        flag(it, k)
    };
    Ok(ControlRecord {
        version: need(get_n(it, "version"), "version")?,
        incarnation: need(get_s(it, "incarnation"), "incarnation")?,
        epoch: need(get_n(it, "epoch"), "epoch")?,
        active: need(get_s(it, "active"), "active")?,
        mode,
        phase,
        target: get_s(it, "target"),
        execution: get_s(it, "execution"),
        initiator: get_s(it, "initiator"),
        state_machine: get_s(it, "state_machine"),
        previous: get_s(it, "previous"),
        changed_by: get_s(it, "changed_by").unwrap_or_default(),
        changed_at: need(get_time(it, "changed_at"), "changed_at")?,
        reason: get_s(it, "reason").unwrap_or_default(),
        last_failover_at: optional(it, "last_failover_at", get_time)?,
        switched_at: optional(it, "switched_at", get_time)?,
        step,
        // The planner's backoff after aborted failovers: written as 0 with
        // the record, never read as 0 when it is not there.
        aborts: need(optional(it, "aborts", get_n)?, "aborts")?,
        ungraceful: failover_flag("ungraceful")?,
        old_region_healthy: failover_flag("old_region_healthy")?,
        forced: failover_flag("forced")?,
        proposal: proposal_from_item(it)?,
    })
}

/// The proposal's attributes (`proposal_*`, flat so the writes can put
/// conditions on its epoch and state), when there is one.
fn proposal_from_item(it: &Item) -> Result<Option<Proposal>, Bad> {
    let Some(state) = get_s(it, "proposal_state") else {
        return Ok(None);
    };
    let state = ProposalState::ALL
        .into_iter()
        .find(|s| s.as_str() == state)
        .ok_or_else(|| Bad(format!("unknown proposal_state {state:?}")))?;
    Ok(Some(Proposal {
        // Written with every proposal; a proposal written before ids
        // existed has none and decodes with an empty id, which a decision
        // names as such (`resolve` below), so it can still be decided.
        id: get_s(it, "proposal_id").unwrap_or_default(),
        epoch: need(get_n(it, "proposal_epoch"), "proposal_epoch")?,
        from: need(get_s(it, "proposal_from"), "proposal_from")?,
        target: need(get_s(it, "proposal_target"), "proposal_target")?,
        proposer: get_s(it, "proposal_by").unwrap_or_default(),
        // The approval timeout counts from it: a missing time would read as
        // "timed out long ago".
        proposed_at: need(optional(it, "proposal_at", get_time)?, "proposal_at")?,
        reason: get_s(it, "proposal_reason").unwrap_or_default(),
        state,
        decided_by: get_s(it, "proposal_decided_by"),
        decided_at: get_time(it, "proposal_decided_at"),
        decision: get_s(it, "proposal_decision"),
    }))
}

/// Every proposal attribute (a claim removes them all).
const PROPOSAL_ATTRS: &str = "proposal_state, proposal_id, proposal_epoch, proposal_from, proposal_target, \
     proposal_by, proposal_at, proposal_reason, proposal_decided_by, proposal_decided_at, proposal_decision";

/// One conditional UpdateItem on the record: the condition, the update, and
/// the expression's attribute names and values.
struct Update {
    condition: Cow<'static, str>,
    update: Cow<'static, str>,
    names: &'static [(&'static str, &'static str)],
    values: Vec<(&'static str, AttributeValue)>,
}

impl ControlTable {
    pub(super) async fn fetch_record(&self) -> Result<Option<ControlRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(CONTROL, CONTROL)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem CONTROL", e))?;
        match out.item() {
            None => Ok(None),
            Some(it) => record_from_item(it)
                .map(Some)
                .map_err(|Bad(why)| self.malformed("GetItem CONTROL", why)),
        }
    }

    pub(super) async fn send_record_write(&self, w: &RecordWrite) -> Result<Write, PortError> {
        let op = format!("UpdateItem CONTROL ({})", w.name());
        let update = match w {
            RecordWrite::Initialize {
                active,
                incarnation,
                by,
                at,
                reason,
            } => {
                return self
                    .initialize(active, incarnation, by, *at, reason, None)
                    .await;
            }
            RecordWrite::Recreate {
                from,
                incarnation,
                by,
                at,
                reason,
            } => {
                return self
                    .initialize(&from.active, incarnation, by, *at, reason, Some(from))
                    .await;
            }
            RecordWrite::Claim { plan } => claim(plan),
            RecordWrite::Propose {
                expected_version,
                id,
                epoch,
                from,
                target,
                by,
                at,
                reason,
            } => propose(
                *expected_version,
                Proposed {
                    id,
                    epoch: *epoch,
                    from,
                    target,
                },
                by,
                *at,
                reason,
            ),
            RecordWrite::Resolve {
                expected_version,
                epoch,
                target,
                id,
                state,
                by,
                at,
                reason,
            } => resolve(
                *expected_version,
                Proposed {
                    id,
                    epoch: *epoch,
                    from: "",
                    target,
                },
                *state,
                by,
                *at,
                reason,
            ),
            RecordWrite::SetMode {
                mode,
                expected_version,
                by,
                at,
                reason,
            } => set_mode(*mode, *expected_version, by, *at, reason),
            RecordWrite::Settle {
                expected_version,
                execution,
                outcome,
                by,
                at,
                reason,
            } => settle(*expected_version, execution, *outcome, by, *at, reason),
            // The workflow's writes, as the state machine sends them (kept
            // here so the lab can check them against `core::record::apply`).
            RecordWrite::Mark { epoch, execution } => mark(*epoch, execution),
            RecordWrite::Switch {
                epoch,
                execution,
                from,
                to,
                at,
            } => switch(*epoch, execution, from, to, *at),
            RecordWrite::Steady { epoch, execution } => steady(*epoch, execution),
            RecordWrite::Abort { epoch, execution } => abort(*epoch, execution),
        };
        self.update_record(&op, update).await
    }

    /// Create the record: a PutItem, only if there is none; or re-create
    /// it from a copy (`from`), only if there is none or only over the
    /// restored copy it replaces (the whole item: nothing of the restored
    /// copy's failover or proposal survives).
    async fn initialize(
        &self,
        active: &str,
        incarnation: &str,
        by: &str,
        at: u64,
        reason: &str,
        from: Option<&Recreated>,
    ) -> Result<Write, PortError> {
        let replaces = from.and_then(|f| f.replaces);
        let mut item = Self::key(CONTROL, CONTROL);
        let mode = match from.map(|f| f.mode) {
            Some(Mode::Paused) => "paused",
            _ => "auto",
        };
        item.extend([
            ("version".to_string(), n(replaces.map_or(1, |v| v + 1))),
            ("incarnation".to_string(), s(incarnation)),
            ("epoch".to_string(), n(from.map_or(1, |f| f.epoch))),
            ("active".to_string(), s(active)),
            ("mode".to_string(), s(mode)),
            ("state".to_string(), s("steady")),
            ("step".to_string(), s(Step::Init.as_str())),
            ("aborts".to_string(), n(0)),
            ("changed_by".to_string(), s(by)),
            ("changed_at".to_string(), n(at)),
            ("reason".to_string(), s(reason)),
        ]);
        if let Some(p) = from.and_then(|f| f.previous.as_deref()) {
            item.insert("previous".to_string(), s(p));
        }
        if let Some(t) = from.and_then(|f| f.last_failover_at) {
            item.insert("last_failover_at".to_string(), n(t));
        }
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = match replaces {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        let op = if from.is_some() {
            "PutItem CONTROL (recreate)"
        } else {
            "PutItem CONTROL (initialize)"
        };
        self.conditional(op, put.send().await)
    }

    /// One UpdateItem on the record.
    async fn update_record(&self, op: &str, u: Update) -> Result<Write, PortError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(CONTROL, CONTROL)))
            .condition_expression(u.condition)
            .update_expression(u.update);
        for (k, v) in u.names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in u.values {
            req = req.expression_attribute_values(k, v);
        }
        let r = req.send().await;
        self.conditional(op, r)
    }
}

/// Claim the plan's epoch, removing any proposal.
fn claim(p: &FailoverPlan) -> Update {
    let condition = if p.supersedes.is_some() {
        "version = :v"
    } else {
        "version = :v AND #state = :steady"
    };
    let mut values = vec![
        (":v", n(p.expected_version)),
        (":nv", n(p.expected_version + 1)),
        (":epoch", n(p.epoch)),
        (":failing", s("failing_over")),
        (":to", s(&p.to)),
        (":exec", s(&p.execution)),
        (":init", s(&p.initiator)),
        (":by", s(&p.changed_by)),
        (":now", n(p.claimed_at)),
        (":reason", s(&p.reason)),
        (":ung", b(p.ungraceful)),
        (":orh", b(p.old_region_healthy)),
        (":forced", b(p.forced)),
        (":step", s(Step::Claimed.as_str())),
    ];
    if p.supersedes.is_none() {
        values.push((":steady", s("steady")));
    }
    // The state machine the execution is started under: written with the
    // claim, removed when the plan names none (a record never keeps an
    // older failover's).
    let (sm_set, sm_remove) = match &p.state_machine {
        Some(sm) => {
            values.push((":sm", s(sm)));
            (", state_machine = :sm", "")
        }
        None => ("", ", state_machine"),
    };
    Update {
        condition: condition.into(),
        update: format!("SET version = :nv, epoch = :epoch, #state = :failing, target = :to, execution = :exec, \
                     initiator = :init, previous = active, changed_by = :by, changed_at = :now, reason = :reason, \
                     last_failover_at = :now, ungraceful = :ung, old_region_healthy = :orh, forced = :forced, \
                     step = :step{sm_set} REMOVE {PROPOSAL_ATTRS}{sm_remove}").into(),
        names: &[("#state", "state")],
        values,
    }
}

/// A proposal as a write names it.
struct Proposed<'a> {
    id: &'a str,
    epoch: u64,
    from: &'a str,
    target: &'a str,
}

/// Record a failover to `target` awaiting approval, for the next epoch.
fn propose(expected_version: u64, p: Proposed<'_>, by: &str, at: u64, reason: &str) -> Update {
    let Proposed {
        id,
        epoch,
        from,
        target,
    } = p;
    Update {
        condition: "version = :v AND #state = :steady AND epoch = :cur \
                     AND (attribute_not_exists(proposal_state) OR NOT proposal_state IN (:proposed, :approved))".into(),
        update: "SET version = :nv, proposal_state = :proposed, proposal_id = :pid, proposal_epoch = :epoch, \
                     proposal_from = :from, proposal_target = :to, proposal_by = :by, proposal_at = :now, \
                     proposal_reason = :preason, changed_by = :by, changed_at = :now, reason = :reason \
                     REMOVE proposal_decided_by, proposal_decided_at, proposal_decision".into(),
        names: &[("#state", "state")],
        values: vec![
            (":v", n(expected_version)),
            (":nv", n(expected_version + 1)),
            (":steady", s("steady")),
            (":cur", n(epoch.saturating_sub(1))),
            (":proposed", s(ProposalState::Proposed.as_str())),
            (":approved", s(ProposalState::Approved.as_str())),
            (":epoch", n(epoch)),
            (":pid", s(id)),
            (":from", s(from)),
            (":to", s(target)),
            (":by", s(by)),
            (":now", n(at)),
            (":preason", s(reason)),
            (":reason", s(format!("proposed failover to {target}: {reason}"))),
        ],
    }
}

/// Decide the proposal named by its epoch, target and id (approve,
/// reject, expire, withdraw).
fn resolve(
    expected_version: u64,
    p: Proposed<'_>,
    state: ProposalState,
    by: &str,
    at: u64,
    reason: &str,
) -> Update {
    let Proposed {
        id, epoch, target, ..
    } = p;
    // The states it may be resolved from, as in `core::record::apply`.
    let from_states = match state {
        ProposalState::Withdrawn => "proposal_state IN (:proposed, :approved)",
        // Never accepted: nothing resolves back to proposed.
        ProposalState::Proposed => "proposal_state = :proposed AND attribute_not_exists(pk)",
        _ => "proposal_state = :proposed",
    };
    // The very proposal named. An empty id names a proposal written before
    // ids existed (it has no `proposal_id`), as `apply` reads it.
    let named = if id.is_empty() {
        "proposal_epoch = :epoch AND proposal_target = :target \
         AND (attribute_not_exists(proposal_id) OR proposal_id = :pid)"
    } else {
        "proposal_epoch = :epoch AND proposal_target = :target AND proposal_id = :pid"
    };
    let mut values = vec![
        (":v", n(expected_version)),
        (":nv", n(expected_version + 1)),
        (":epoch", n(epoch)),
        (":target", s(target)),
        (":pid", s(id)),
        (":proposed", s(ProposalState::Proposed.as_str())),
        (":st", s(state.as_str())),
        (":by", s(by)),
        (":now", n(at)),
        (":why", s(reason)),
        (
            ":reason",
            s(format!(
                "proposal of epoch {epoch} {}: {reason}",
                state.as_str()
            )),
        ),
    ];
    if state == ProposalState::Withdrawn {
        values.push((":approved", s(ProposalState::Approved.as_str())));
    }
    Update {
        condition: format!("version = :v AND {named} AND {from_states}").into(),
        update: "SET version = :nv, proposal_state = :st, proposal_decided_by = :by, \
                     proposal_decided_at = :now, proposal_decision = :why, changed_by = :by, \
                     changed_at = :now, reason = :reason"
            .into(),
        names: &[],
        values,
    }
}

/// Pause or resume.
fn set_mode(mode: Mode, expected_version: u64, by: &str, at: u64, reason: &str) -> Update {
    Update {
        condition: "version = :v".into(),
        update: "SET version = :nv, #mode = :mode, changed_by = :by, changed_at = :now, reason = :reason".into(),
        names: &[("#mode", "mode")],
        values: vec![
            (":v", n(expected_version)),
            (":nv", n(expected_version + 1)),
            (":mode", s(mode_name(mode))),
            (":by", s(by)),
            (":now", n(at)),
            (":reason", s(reason)),
        ],
    }
}

/// End an in-flight failover whose workflow will not, as `outcome`.
fn settle(
    expected_version: u64,
    execution: &str,
    outcome: Settlement,
    by: &str,
    at: u64,
    reason: &str,
) -> Update {
    let (condition, update, step) = match outcome {
        Settlement::Completed => (
            "version = :v AND execution = :exec AND #state = :failing AND step = :switched",
            "SET version = :nv, #state = :steady, step = :step, aborts = :zero, changed_by = :by, changed_at = :now, reason = :reason",
            Step::Done,
        ),
        Settlement::Aborted => (
            "version = :v AND execution = :exec AND #state = :failing AND step <> :switched",
            "SET version = :nv, #state = :steady, step = :step, changed_by = :by, changed_at = :now, reason = :reason ADD aborts :one",
            Step::Aborted,
        ),
    };
    let mut values = vec![
        (":v", n(expected_version)),
        (":nv", n(expected_version + 1)),
        (":exec", s(execution)),
        (":failing", s("failing_over")),
        (":steady", s("steady")),
        (":switched", s(Step::Switched.as_str())),
        (":step", s(step.as_str())),
        (":by", s(by)),
        (":now", n(at)),
        (":reason", s(reason)),
    ];
    values.push(match outcome {
        Settlement::Completed => (":zero", n(0)),
        Settlement::Aborted => (":one", n(1)),
    });
    Update {
        condition: condition.into(),
        update: update.into(),
        names: &[("#state", "state")],
        values,
    }
}

/// Workflow, MarkFailingOver.
fn mark(epoch: u64, execution: &str) -> Update {
    Update {
        condition: "epoch = :epoch AND execution = :exec AND #state = :failing".into(),
        update: "SET step = :step ADD version :one".into(),
        names: &[("#state", "state")],
        values: vec![
            (":epoch", n(epoch)),
            (":exec", s(execution)),
            (":failing", s("failing_over")),
            (":step", s(Step::Mark.as_str())),
            (":one", n(1)),
        ],
    }
}

/// Workflow, SwitchActive.
fn switch(epoch: u64, execution: &str, from: &str, to: &str, at: u64) -> Update {
    Update {
        condition: "epoch = :epoch AND execution = :exec AND #state = :failing".into(),
        update:
            "SET active = :to, previous = :from, step = :step, switched_at = :now ADD version :one"
                .into(),
        names: &[("#state", "state")],
        values: vec![
            (":epoch", n(epoch)),
            (":exec", s(execution)),
            (":failing", s("failing_over")),
            (":to", s(to)),
            (":from", s(from)),
            (":step", s(Step::Switched.as_str())),
            (":now", n(at)),
            (":one", n(1)),
        ],
    }
}

/// Workflow, MarkSteady.
fn steady(epoch: u64, execution: &str) -> Update {
    Update {
        condition: "epoch = :epoch AND execution = :exec AND #state = :failing".into(),
        update: "SET #state = :steady, step = :step, aborts = :zero ADD version :one".into(),
        names: &[("#state", "state")],
        values: vec![
            (":epoch", n(epoch)),
            (":exec", s(execution)),
            (":failing", s("failing_over")),
            (":steady", s("steady")),
            (":step", s(Step::Done.as_str())),
            (":zero", n(0)),
            (":one", n(1)),
        ],
    }
}

/// Workflow, AbortPrepareFailed / AbortWorkflowError (not after the switch).
fn abort(epoch: u64, execution: &str) -> Update {
    Update {
        condition:
            "epoch = :epoch AND execution = :exec AND #state = :failing AND step <> :switched"
                .into(),
        update: "SET #state = :steady, step = :step ADD version :one, aborts :one".into(),
        names: &[("#state", "state")],
        values: vec![
            (":epoch", n(epoch)),
            (":exec", s(execution)),
            (":failing", s("failing_over")),
            (":switched", s(Step::Switched.as_str())),
            (":steady", s("steady")),
            (":step", s(Step::Aborted.as_str())),
            (":one", n(1)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn record_item() -> Item {
        HashMap::from([
            ("pk".into(), s(CONTROL)),
            ("sk".into(), s(CONTROL)),
            ("version".into(), n(3)),
            ("incarnation".into(), s("abc")),
            ("epoch".into(), n(2)),
            ("active".into(), s("us-east-1")),
            ("mode".into(), s("auto")),
            ("state".into(), s("steady")),
            ("step".into(), s("done")),
            ("aborts".into(), n(0)),
            ("changed_at".into(), n(1_795_000_000_000)),
        ])
    }

    #[test]
    fn decision_fields_missing_or_unreadable_are_errors_not_defaults() {
        // Missing.
        for attr in ["aborts", "changed_at"] {
            let mut it = record_item();
            it.remove(attr);
            let Err(Bad(why)) = record_from_item(&it) else {
                panic!("a record without {attr} decoded");
            };
            assert!(why.contains(attr), "{why}");
        }
        // Present but not decodable.
        for (attr, v) in [
            ("aborts", s("many")),
            ("last_failover_at", s("yesterday")),
            ("switched_at", AttributeValue::Bool(true)),
            ("forced", s("yes")),
        ] {
            let mut it = record_item();
            it.insert(attr.into(), v);
            let Err(Bad(why)) = record_from_item(&it) else {
                panic!("{attr} undecodable decoded");
            };
            assert!(why.contains(attr), "{why}");
        }
        // A failover in flight without its flags.
        let mut it = record_item();
        it.insert("state".into(), s("failing_over"));
        assert!(record_from_item(&it).is_err());
        for f in ["ungraceful", "old_region_healthy", "forced"] {
            it.insert(f.into(), AttributeValue::Bool(false));
        }
        assert!(record_from_item(&it).is_ok());
        // A proposal without its time would read as timed out long ago.
        let mut it = record_item();
        for (k, v) in [
            ("proposal_state", s("proposed")),
            ("proposal_epoch", n(3)),
            ("proposal_from", s("us-east-1")),
            ("proposal_target", s("us-west-2")),
        ] {
            it.insert(k.into(), v);
        }
        let Err(Bad(why)) = record_from_item(&it) else {
            panic!("a proposal without proposal_at decoded");
        };
        assert!(why.contains("proposal_at"), "{why}");
        it.insert("proposal_at".into(), n(1_795_000_000_000));
        // Written before proposal ids: decodes, with an empty id (which a
        // decision names as such); with one, it is read back.
        let p = record_from_item(&it).ok().and_then(|r| r.proposal).unwrap();
        assert_eq!(p.id, "");
        it.insert("proposal_id".into(), s("8-3fa9c2"));
        let p = record_from_item(&it).ok().and_then(|r| r.proposal).unwrap();
        assert_eq!(p.id, "8-3fa9c2");
    }

    #[test]
    fn a_record_that_cannot_be_decoded_is_an_error_not_a_default() {
        assert!(record_from_item(&record_item()).is_ok());
        for (attr, bad) in [
            ("version", None),
            ("state", Some("sleeping")),
            ("mode", Some("manual")),
            ("step", Some("halfway")),
            ("incarnation", None),
        ] {
            let mut it = record_item();
            match bad {
                None => {
                    it.remove(attr);
                }
                Some(v) => {
                    it.insert(attr.into(), s(v));
                }
            }
            let Err(Bad(why)) = record_from_item(&it) else {
                panic!("{attr}={bad:?} decoded");
            };
            assert!(
                why.contains(attr) || why.contains(bad.unwrap_or("")),
                "{why}"
            );
        }
    }
}
