//! The approval gate in the lab (issue 13 item 4): with
//! `policy.approval = "manual"`, the daemons propose an automatic failover
//! instead of claiming it, through the real DynamoDB adapter (the flat
//! `proposal_*` attributes and their conditions, against moto); a stale
//! approval (another epoch, another proposal's id, or an unprompted epoch
//! alone) is refused; `failoverd approve --proposal ID` lets the target
//! claim it and the failover completes, and the claim removes the proposal.
//!
//! Waits are level-triggered with generous caps; no timing is asserted.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::lab::{Lab, events, record, wait_record};
use common::wait_for;
use failoverd::core::control::{ControlRecord, Phase, ProposalState};
use failoverd::ports::ControlStore;

#[test]
fn a_proposed_failover_waits_for_approval_then_completes() {
    let lab = Lab::start(&[("FAILOVERD__POLICY__APPROVAL", "manual")]);
    lab.wait_ready(Duration::from_secs(60));
    wait_record(
        &lab,
        "us-east-1 active and steady",
        Duration::from_secs(30),
        |r| r.active == "us-east-1" && r.phase == Phase::Steady,
    );
    lab.invert("us-east-1", true);

    // Proposed, not claimed.
    let r = wait_record(&lab, "a proposal", Duration::from_secs(90), |r| {
        r.proposal
            .as_ref()
            .is_some_and(|p| p.state == ProposalState::Proposed)
    });
    let p = r.proposal.clone().unwrap();
    assert_eq!(
        (p.epoch, p.from.as_str(), p.target.as_str()),
        (2, "us-east-1", "us-west-2")
    );
    assert_eq!(
        (r.epoch, r.phase, r.execution.as_deref()),
        (1, Phase::Steady, None)
    );
    // The target has had a round since and waits (journalled once), still
    // without claiming.
    wait_for(
        "us-west-2 to journal that it awaits approval",
        Duration::from_secs(60),
        || {
            events(&lab)
                .into_iter()
                .find(|e| e.kind == "decision" && e.detail.contains("awaits approval"))
        },
    );
    let r = record(&lab).unwrap();
    assert_eq!(
        (r.epoch, r.phase),
        (1, Phase::Steady),
        "claimed without approval: {r:?}"
    );
    assert!(events(&lab).iter().any(|e| e.kind == "failover_proposed"));

    // A stale epoch, or another proposal's id, is refused and changes
    // nothing; so is an epoch alone without a prompt (`--yes`): it could
    // name a proposal made after the operator looked.
    for (args, says) in [
        (
            &["--epoch", "3", "--to", "us-west-2"][..],
            "the proposal is for epoch 2".to_string(),
        ),
        (
            &["--proposal", "1-000000"][..],
            format!("the open proposal is {}", p.id),
        ),
        (
            &["--epoch", "2"][..],
            "with --yes, name the proposal".into(),
        ),
    ] {
        let mut cmd = vec!["approve"];
        cmd.extend_from_slice(args);
        cmd.extend_from_slice(&["--reason", "wrong", "--yes"]);
        let out = lab.cli(&cmd);
        assert!(!out.status.success(), "{cmd:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&says), "{cmd:?}: {err}");
    }
    assert_eq!(
        record(&lab).unwrap().proposal.map(|p| p.state),
        Some(ProposalState::Proposed)
    );

    let out = lab.cli(&[
        "approve",
        "--proposal",
        &p.id,
        "--to",
        "us-west-2",
        "--reason",
        "confirmed down",
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "approve failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = wait_record(
        &lab,
        "us-west-2 active and steady",
        Duration::from_secs(120),
        |r| r.active == "us-west-2" && r.phase == Phase::Steady,
    );
    assert_eq!(after.epoch, 2);
    assert_eq!(after.proposal, None, "the claim removes the proposal");
    assert!(events(&lab).iter().any(|e| e.kind == "proposal_approved"));
}

/// The DynamoDB adapter's proposal writes, condition by condition, against
/// the one statement of their semantics (`core::record::apply`): each write
/// is accepted by DynamoDB (moto) exactly when `apply` accepts it, and the
/// record read back is the one `apply` computes.
#[test]
fn the_adapter_applies_proposal_writes_as_the_transition_function_does() {
    use failoverd::core::control::{execution_name, proposal_id};
    use failoverd::core::plan::FailoverPlan;
    use failoverd::core::record::{RecordWrite, apply};
    use failoverd::ports::store::Write;

    let mut lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    wait_record(&lab, "the record", Duration::from_secs(30), |r| {
        r.phase == Phase::Steady
    });
    // Nobody else writes from here on.
    for region in ["us-east-1", "us-west-2", "eu-west-1"] {
        lab.kill_daemon(region);
    }
    let table = lab.table();
    #[derive(Clone, Copy)]
    enum Named {
        Open,
        OtherId,
        OtherTarget,
        Legacy,
    }
    let propose = |r: &ControlRecord, epoch: u64, version: u64| RecordWrite::Propose {
        expected_version: version,
        id: proposal_id(&r.incarnation, version + 1, "us-west-2", 1_800_000_000_000),
        epoch,
        from: r.active.clone(),
        target: "us-west-2".into(),
        by: "us-west-2".into(),
        at: 1_800_000_000_000,
        reason: "down by quorum".into(),
    };
    // The decisions name the open proposal (or `epoch`'s) by its target and
    // id; `other` names another one of the same epoch.
    let resolve_as = |r: &ControlRecord, epoch: u64, state: ProposalState, other: Named| {
        let (target, id) = match (&r.proposal, other) {
            (Some(p), Named::Open) => (p.target.clone(), p.id.clone()),
            (Some(p), Named::OtherId) => (p.target.clone(), format!("{}-000000", r.version)),
            (Some(p), Named::OtherTarget) => (
                if p.target == "eu-west-1" {
                    "us-west-2"
                } else {
                    "eu-west-1"
                }
                .into(),
                p.id.clone(),
            ),
            (Some(p), Named::Legacy) => (p.target.clone(), String::new()),
            (None, _) => ("us-west-2".into(), "1-000000".into()),
        };
        RecordWrite::Resolve {
            expected_version: r.version,
            epoch,
            target,
            id,
            state,
            by: "operator:lab".into(),
            at: 1_800_000_001_000,
            reason: "checked".into(),
        }
    };
    let resolve = move |r: &ControlRecord, epoch: u64, state: ProposalState| {
        resolve_as(r, epoch, state, Named::Open)
    };
    type Step = Box<dyn Fn(&ControlRecord) -> (RecordWrite, bool)>;
    let steps: Vec<Step> = vec![
        Box::new(move |r| (resolve(r, r.epoch + 1, ProposalState::Approved), false)),
        Box::new(move |r| (propose(r, r.epoch + 2, r.version), false)),
        Box::new(move |r| (propose(r, r.epoch + 1, r.version - 1), false)),
        Box::new(move |r| (propose(r, r.epoch + 1, r.version), true)),
        Box::new(move |r| (propose(r, r.epoch + 1, r.version), false)),
        Box::new(move |r| (resolve(r, r.epoch + 2, ProposalState::Approved), false)),
        Box::new(move |r| (resolve(r, r.epoch + 1, ProposalState::Proposed), false)),
        // Another proposal of the same epoch (by its id, or its target), or
        // one without an id: not this one.
        Box::new(move |r| {
            let w = resolve_as(r, r.epoch + 1, ProposalState::Approved, Named::OtherId);
            (w, false)
        }),
        Box::new(move |r| {
            let w = resolve_as(r, r.epoch + 1, ProposalState::Approved, Named::OtherTarget);
            (w, false)
        }),
        Box::new(move |r| {
            let w = resolve_as(r, r.epoch + 1, ProposalState::Withdrawn, Named::Legacy);
            (w, false)
        }),
        Box::new(move |r| (resolve(r, r.epoch + 1, ProposalState::Approved), true)),
        Box::new(move |r| (resolve(r, r.epoch + 1, ProposalState::Rejected), false)),
        Box::new(move |r| (resolve(r, r.epoch + 1, ProposalState::Withdrawn), true)),
        Box::new(move |r| (propose(r, r.epoch + 1, r.version), true)),
        Box::new(move |r| (resolve(r, r.epoch + 1, ProposalState::Expired), true)),
        Box::new(move |r| (propose(r, r.epoch + 1, r.version), true)),
        Box::new(move |r| {
            let epoch = r.epoch + 1;
            let plan = FailoverPlan {
                from: r.active.clone(),
                to: "us-west-2".into(),
                epoch,
                execution: execution_name(&r.incarnation, epoch),
                initiator: "us-west-2".into(),
                expected_version: r.version,
                reason: "approved".into(),
                ungraceful: false,
                old_region_healthy: true,
                forced: false,
                automatic: true,
                changed_by: "us-west-2".into(),
                claimed_at: 1_800_000_002_000,
                supersedes: None,
                state_machine: None,
            };
            (RecordWrite::Claim { plan }, true)
        }),
    ];
    for (i, step) in steps.iter().enumerate() {
        let cur = record(&lab).unwrap();
        let (w, accepted) = step(&cur);
        let expected = apply(Some(&cur), &w);
        assert_eq!(
            expected.is_ok(),
            accepted,
            "step {i}: apply says {expected:?} to {w:?}"
        );
        let got = Lab::rt().block_on(table.write_record(&w)).unwrap();
        assert_eq!(
            got == Write::Written,
            accepted,
            "step {i}: DynamoDB said {got:?} to {w:?}"
        );
        let after = record(&lab).unwrap();
        let want = expected.unwrap_or(cur);
        assert_eq!(
            (
                &after.proposal,
                after.version,
                after.epoch,
                after.phase,
                &after.reason,
                &after.changed_by
            ),
            (
                &want.proposal,
                want.version,
                want.epoch,
                want.phase,
                &want.reason,
                &want.changed_by
            ),
            "step {i}: {w:?}"
        );
    }
    assert_eq!(record(&lab).unwrap().proposal, None, "the claim removed it");
}
