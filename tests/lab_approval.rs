//! The approval gate in the lab (issue 13 item 4): with
//! `policy.approval = "manual"`, the daemons propose an automatic failover
//! instead of claiming it, through the real DynamoDB adapter (the flat
//! `proposal_*` attributes and their conditions, against moto); a stale
//! approval is refused; `failoverd approve --epoch N` lets the target claim
//! it and the failover completes, and the claim removes the proposal.
//!
//! Waits are level-triggered with generous caps; no timing is asserted.

mod common;

use std::time::Duration;

use common::lab::Lab;
use common::wait_for;
use failoverd::core::control::{ControlRecord, Phase, ProposalState};
use failoverd::ports::ControlStore;
use failoverd::ports::store::Event;

fn record(lab: &Lab) -> Option<ControlRecord> {
    Lab::rt().block_on(lab.table().read_record()).ok().flatten()
}

fn wait_record(
    lab: &Lab,
    what: &str,
    cap: Duration,
    f: impl Fn(&ControlRecord) -> bool,
) -> ControlRecord {
    wait_for(what, cap, || record(lab).filter(|r| f(r)))
}

fn events(lab: &Lab) -> Vec<Event> {
    Lab::rt()
        .block_on(async {
            lab.table()
                .events(1000, failoverd::aws::control_table::now_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap()
}

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

    // A stale epoch is refused and changes nothing.
    let out = lab.cli(&["approve", "--epoch", "3", "--reason", "wrong", "--yes"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the proposal is for epoch 2"), "{err}");

    let out = lab.cli(&[
        "approve",
        "--epoch",
        "2",
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
