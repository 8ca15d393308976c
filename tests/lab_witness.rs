//! The witness topology's failover workflow (issue 23), in the lab.
//!
//! Step Functions runs AWS SDK integrations only in the state machine's own
//! region, so a region without a replica of the control table has no table
//! for a workflow of its own. The lab's eu-west-1 is such a region (the lab
//! emulates an MRSC table of three US replicas; eu-west-1's daemon uses
//! us-east-1's): its stack deploys no workflow (`DeployWorkflow=false`),
//! and its `[[regions]] state_machine_arn` is us-east-1's. Here its daemon
//! wins a failover and the workflow runs, and completes, in us-east-1.
//!
//! Waits are level-triggered with generous caps; no timing is asserted.

// Tests and the lab run real processes on real time: the clock rules in
// clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::lab::{Lab, events, wait_record};
use common::wait_for;
use failoverd::core::control::Phase;
use failoverd::core::tokens::TokenStatus;
use failoverd::ports::ControlStore;
use failoverd::ports::workflows::{arn_region, execution_arn};

const WITNESS: &str = "eu-west-1";
const REPLICA: &str = "us-east-1";

#[test]
fn a_region_without_a_replica_fails_over_through_a_replica_regions_workflow() {
    let lab = Lab::start(&[]);
    // The topology: eu-west-1 holds no replica, and names us-east-1's
    // state machine.
    assert!(
        !lab.config.tables.replicas.iter().any(|r| r == WITNESS),
        "{:?}",
        lab.config.tables.replicas
    );
    let sm = lab
        .config
        .region(WITNESS)
        .unwrap()
        .state_machine_arn
        .clone();
    assert_eq!(arn_region(&sm), Some(REPLICA), "{sm}");
    assert_eq!(sm, lab.config.region(REPLICA).unwrap().state_machine_arn);
    // Its stack deployed no workflow: no state machine in eu-west-1 (one
    // there would write a table that does not exist in AWS).
    let there = Lab::rt()
        .block_on(lab.clients.sfn(WITNESS).list_state_machines().send())
        .expect("ListStateMachines in eu-west-1");
    assert!(
        there.state_machines().is_empty(),
        "eu-west-1 has a workflow: {:?}",
        there.state_machines()
    );

    lab.wait_ready(Duration::from_secs(60));
    let before = wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });
    assert_eq!(before.phase, Phase::Steady);

    // us-east-1 and us-west-2 read down: eu-west-1 is the only target, and
    // the target initiates.
    // (us-west-2 first, until the quorum sees it down, so the one failover
    // goes to eu-west-1.)
    lab.invert("us-west-2", true);
    wait_for("us-west-2 down by quorum", Duration::from_secs(60), || {
        let out = lab.cli(&["status", "--output", "json"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (s["tally"]["regions"]["us-west-2"] == "down").then_some(())
    });
    lab.invert("us-east-1", true);
    let after = wait_record(
        &lab,
        "the failover to eu-west-1 to finish",
        Duration::from_secs(120),
        |r| r.active == WITNESS && r.phase == Phase::Steady,
    );
    assert_eq!(after.epoch, before.epoch + 1, "exactly one epoch further");
    assert_eq!(after.initiator.as_deref(), Some(WITNESS), "{after:?}");
    let exec = after.execution.clone().expect("the epoch's execution");

    // eu-west-1's daemon started it in us-east-1's state machine...
    let journal = events(&lab);
    let started = journal
        .iter()
        .find(|e| e.kind == "execution_started" && e.epoch == Some(after.epoch))
        .unwrap_or_else(|| panic!("no execution_started: {journal:#?}"));
    assert_eq!(started.who, WITNESS, "{started:?}");
    let arn = execution_arn(&sm, &exec);
    assert!(started.detail.contains(&arn), "{started:?}");
    // ...where it ran to the end (the workflow's own steps wrote the
    // switch and the steady mark in us-east-1's replica)...
    wait_for("the execution to succeed", Duration::from_secs(30), || {
        let d = Lab::rt()
            .block_on(
                lab.clients
                    .sfn(REPLICA)
                    .describe_execution()
                    .execution_arn(&arn)
                    .send(),
            )
            .ok()?;
        (d.status().as_str() == "SUCCEEDED").then_some(())
    });
    assert!(
        journal
            .iter()
            .any(|e| e.who == "workflow" && e.epoch == Some(after.epoch)),
        "the workflow journalled the epoch: {journal:#?}"
    );
    // ...and eu-west-1's daemon did its prepare step from the token that
    // workflow wrote.
    let tokens = Lab::rt()
        .block_on(async {
            lab.table()
                .tokens(1000, failoverd::ports::clock::wall_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap();
    let prepare = tokens
        .iter()
        .find(|t| t.view.id == format!("{exec}#prepare"))
        .unwrap_or_else(|| panic!("no prepare token for {exec}: {tokens:#?}"));
    assert_eq!(prepare.view.target_region, WITNESS);
    assert_eq!(prepare.view.status, TokenStatus::Done, "{prepare:#?}");
    assert_eq!(
        prepare.issuer_region(),
        Some(REPLICA),
        "the token's issuer is the workflow's region"
    );
}
