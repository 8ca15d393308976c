//! Compound faults in the lab (issue 8): a failover must happen when it
//! must, never wrongly, and never get stuck, with one more thing wrong than
//! the plain drill.
//!
//! - the preferred target's daemon is dead: the next region takes over;
//! - the target's model answers the warm-up with `ModelError`: it still
//!   serves, so the failover completes;
//! - the target's state machine is gone: the claim is settled as aborted
//!   after `start_timeout`, the journal says why, and the next attempt goes
//!   to another region;
//! - the workflow cannot reach the table: it aborts cleanly (its `Catch`),
//!   the daemons settle the record, and the next attempt goes elsewhere;
//! - an operator's `--force` supersedes a failover stuck in its prepare
//!   step: a new epoch, the old execution stopped and fenced off;
//! - the control record is recreated (a new incarnation): the next failover
//!   gets a new execution name and really runs, instead of colliding with
//!   the closed `failover-…-2` of the old record;
//! - the old active's daemon is frozen (SIGSTOP) while its region is
//!   healthy: its drain is skipped by a live daemon, not waited for.
//!
//! Waits are level-triggered with generous caps; no timing is asserted.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::lab::{Lab, events, record, wait_record};
use common::wait_for;
use failoverd::core::control::{ControlRecord, Phase, Step};
use failoverd::ports::ControlStore;

/// Settings that make the lab's failovers give up and retry quickly.
const FAST: &[(&str, &str)] = &[
    ("FAILOVERD__TIMINGS__START_TIMEOUT", "8s"),
    ("FAILOVERD__TIMINGS__ABORT_RETRY", "1s"),
];

fn steady_on(lab: &Lab, region: &str, cap: Duration) -> ControlRecord {
    wait_record(lab, &format!("{region} active and steady"), cap, |r| {
        r.active == region && r.phase == Phase::Steady
    })
}

fn execution(lab: &Lab, region: &str, name: &str) -> Option<(String, Option<String>)> {
    let arn = failoverd::ports::workflows::execution_arn(
        &lab.config.region(region).unwrap().state_machine_arn,
        name,
    );
    // The state machine's region, not always `region`'s (config/workflow.rs).
    let sm_region = failoverd::ports::workflows::arn_region(&arn)
        .unwrap()
        .to_string();
    Lab::rt()
        .block_on(
            lab.clients
                .sfn(&sm_region)
                .describe_execution()
                .execution_arn(arn)
                .send(),
        )
        .ok()
        .map(|d| (d.status().as_str().to_string(), d.error().map(String::from)))
}

/// A failover to us-west-2 held in its prepare step: us-west-2's endpoints
/// stay cold for a minute, so prepare keeps retrying within its 30 s budget.
fn stuck_in_prepare(lab: &Lab) -> ControlRecord {
    lab.behave(serde_json::json!({
        "region": "us-west-2", "endpoint": "*",
        "cold_start_after_idle": "0s", "cold_start": "60s"
    }));
    lab.invert("us-east-1", true);
    wait_record(
        lab,
        "the failover to us-west-2",
        Duration::from_secs(60),
        |r| r.phase == Phase::FailingOver && r.target.as_deref() == Some("us-west-2"),
    )
}

fn start(extra: &[(&str, &str)]) -> Lab {
    let lab = Lab::start(extra);
    lab.wait_ready(Duration::from_secs(60));
    steady_on(&lab, "us-east-1", Duration::from_secs(30));
    lab
}

#[test]
fn a_dead_target_daemon_is_passed_over() {
    let mut lab = start(&[]);
    lab.kill_daemon("us-west-2");
    lab.invert("us-east-1", true);
    let after = steady_on(&lab, "eu-west-1", Duration::from_secs(120));
    assert_eq!(after.epoch, 2, "one failover, straight to eu-west-1");
    assert_eq!(after.initiator.as_deref(), Some("eu-west-1"));
    let exec = after.execution.clone().unwrap();
    wait_for(
        "eu-west-1's execution to succeed",
        Duration::from_secs(30),
        || (execution(&lab, "eu-west-1", &exec)?.0 == "SUCCEEDED").then_some(()),
    );
}

#[test]
fn a_target_whose_model_rejects_the_warm_up_still_takes_over() {
    let lab = start(&[]);
    // A real container given {"warmup": true} often answers ModelError: the
    // endpoint is up and serving; only the body was not what it wanted.
    lab.behave(serde_json::json!({
        "region": "us-west-2", "endpoint": "*",
        "error_rate": 1.0, "error": "ModelError", "model_error_status": 400
    }));
    lab.invert("us-east-1", true);
    let after = steady_on(&lab, "us-west-2", Duration::from_secs(90));
    assert_eq!(after.step, Step::Done);
    let tokens = Lab::rt()
        .block_on(async {
            lab.table()
                .tokens(100, failoverd::ports::clock::wall_ms())
                .await
        })
        .unwrap();
    let prepare = tokens
        .items
        .iter()
        .find(|t| t.view.id.ends_with("#prepare"))
        .expect("the prepare token");
    assert_eq!(
        prepare.note.as_deref(),
        Some("success sent"),
        "{prepare:#?}"
    );
}

#[test]
fn a_failover_that_cannot_start_is_settled_and_the_next_region_takes_over() {
    let lab = start(FAST);
    // us-west-2's state machine is gone (deleted, or never deployed there).
    let arn = lab
        .config
        .region("us-west-2")
        .unwrap()
        .state_machine_arn
        .clone();
    Lab::rt()
        .block_on(
            lab.clients
                .sfn("us-west-2")
                .delete_state_machine()
                .state_machine_arn(&arn)
                .send(),
        )
        .unwrap();
    lab.invert("us-east-1", true);
    // us-west-2 claims epoch 2, cannot start it, and the claim is settled
    // as aborted with the reason in the journal...
    wait_for("the claim to be settled", Duration::from_secs(90), || {
        events(&lab)
            .into_iter()
            .find(|e| e.kind == "settled" && e.detail.contains("did not start"))
    });
    // ...then the retry prefers another target than the one that aborted.
    let after = steady_on(&lab, "eu-west-1", Duration::from_secs(120));
    assert!(after.epoch >= 3, "{after:?}");
    assert_eq!(after.initiator.as_deref(), Some("eu-west-1"));
}

#[test]
fn a_workflow_that_cannot_reach_the_table_aborts_cleanly() {
    let lab = start(FAST);
    // Redeploy us-west-2's state machine against a table that does not
    // exist: every DynamoDB step fails with ResourceNotFoundException, which
    // is not retried; the Catch aborts (also failing), and the run ends.
    let template =
        std::fs::read_to_string(common::root().join("deploy/statemachines/failover.asl.json"))
            .unwrap();
    let def = failoverd::aws::sfn::render_definition(
        &template,
        &[
            ("ControlTable", "no-such-table"),
            ("ControlTableRegion", "us-west-2"),
        ],
    )
    .unwrap();
    let sfn = lab.clients.sfn("us-west-2");
    let arn = lab
        .config
        .region("us-west-2")
        .unwrap()
        .state_machine_arn
        .clone();
    Lab::rt().block_on(async {
        let role = sfn
            .describe_state_machine()
            .state_machine_arn(&arn)
            .send()
            .await
            .unwrap()
            .role_arn()
            .to_string();
        sfn.delete_state_machine()
            .state_machine_arn(&arn)
            .send()
            .await
            .unwrap();
        let again =
            failoverd::aws::sfn::ensure_state_machine(&sfn, "failoverd-failover", &def, &role)
                .await
                .unwrap();
        assert_eq!(again, arn);
    });
    lab.invert("us-east-1", true);
    let claimed = wait_record(&lab, "us-west-2's claim", Duration::from_secs(60), |r| {
        r.phase == Phase::FailingOver && r.initiator.as_deref() == Some("us-west-2")
    });
    let exec = claimed.execution.clone().unwrap();
    let (status, error) = wait_for("the run to end", Duration::from_secs(60), || {
        execution(&lab, "us-west-2", &exec).filter(|(s, _)| s != "RUNNING")
    });
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("WorkflowFailed")),
        "the Catch path ends the run cleanly"
    );
    // The daemons see the run ended without settling the record: settled as
    // aborted (us-east-1 stays active), then the retry goes elsewhere.
    wait_for("the record to be settled", Duration::from_secs(60), || {
        events(&lab)
            .into_iter()
            .find(|e| e.kind == "settled" && e.detail.contains(&exec))
    });
    steady_on(&lab, "eu-west-1", Duration::from_secs(120));
}

#[test]
fn force_supersedes_a_failover_stuck_in_prepare() {
    let lab = start(&[]);
    let stuck = stuck_in_prepare(&lab);
    // Without --force the operator is refused, with a hint.
    let out = lab.cli(&[
        "failover",
        "--to",
        "eu-west-1",
        "--reason",
        "stuck",
        "--yes",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lab.cli(&[
        "failover",
        "--to",
        "eu-west-1",
        "--reason",
        "stuck in prepare",
        "--force",
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUPERSEDES"));
    let after = steady_on(&lab, "eu-west-1", Duration::from_secs(120));
    assert_eq!(after.epoch, stuck.epoch + 1);
    // The superseded run ends without touching the record again.
    let old = stuck.execution.unwrap();
    wait_for(
        "the superseded run to end",
        Duration::from_secs(200),
        || execution(&lab, "us-west-2", &old).filter(|(s, _)| s != "RUNNING"),
    );
    let last = record(&lab).unwrap();
    assert_eq!(
        (last.active.as_str(), last.epoch, last.phase),
        ("eu-west-1", after.epoch, Phase::Steady)
    );
    assert!(
        events(&lab)
            .iter()
            .any(|e| e.kind == "failover_claimed"
                && e.detail.contains(&format!("superseding {old}")))
    );
}

#[test]
fn a_lost_control_record_is_recreated_from_the_fleets_copy() {
    let lab = start(&[]);
    let first = record(&lab).unwrap();
    lab.invert("us-east-1", true);
    let one = steady_on(&lab, "us-west-2", Duration::from_secs(90));
    lab.invert("us-east-1", false);
    lab.wait_admin(
        "us-west-2",
        "/status",
        "us-east-1 up by quorum again",
        Duration::from_secs(60),
        |_, body| {
            serde_json::from_str::<serde_json::Value>(body)
                .is_ok_and(|s| s["tally"]["regions"]["us-east-1"] == "up")
        },
    );
    // An operator pauses the fleet, then the record is lost (deleted by
    // hand, or a new table, as moving from eventual to strong mode
    // requires). The daemons re-create it from their copies (issue 19
    // item 9): us-west-2 still active, still paused, an epoch above the
    // lost one, a new incarnation. Before, they initialized it afresh:
    // us-east-1 (the highest priority, up again) active and the pause lost,
    // an unreviewed failback.
    let out = lab.cli(&["pause", "--yes", "--reason", "maintenance"]);
    assert!(out.status.success(), "{out:?}");
    let paused = wait_record(&lab, "the pause", Duration::from_secs(30), |r| {
        r.mode == failoverd::core::control::Mode::Paused
    });
    // Every daemon has read the paused record before it goes.
    std::thread::sleep(Duration::from_secs(3));
    Lab::rt()
        .block_on(
            lab.clients
                .dynamodb(lab.table().region())
                .delete_item()
                .table_name(&lab.config.tables.control)
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S("CONTROL".into()),
                )
                .key(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S("CONTROL".into()),
                )
                .send(),
        )
        .unwrap();
    let again = wait_record(&lab, "a re-created record", Duration::from_secs(60), |r| {
        r.incarnation != first.incarnation
    });
    assert_eq!(
        (again.active.as_str(), again.mode, again.epoch),
        (
            "us-west-2",
            failoverd::core::control::Mode::Paused,
            paused.epoch + 1
        ),
        "re-created from the copy: {again:?}"
    );
    assert_eq!(again.previous.as_deref(), Some("us-east-1"), "{again:?}");
    let out = lab.cli(&["resume", "--yes", "--reason", "maintenance over"]);
    assert!(out.status.success(), "{out:?}");
    lab.invert("us-west-2", true);
    let two = wait_record(&lab, "the second failover", Duration::from_secs(90), |r| {
        r.incarnation == again.incarnation
            && r.epoch == again.epoch + 1
            && r.active == "us-east-1"
            && r.phase == Phase::Steady
    });
    assert_eq!(two.step, Step::Done, "it really ran: {two:?}");
    let (a, b) = (one.execution.unwrap(), two.execution.unwrap());
    assert_ne!(a, b, "two incarnations' executions must not share a name");
    // The record is steady before the workflow's last journal step ends:
    // wait for the execution to finish, then look at how.
    let status = wait_for(
        "the second execution to end",
        Duration::from_secs(60),
        || {
            execution(&lab, "us-east-1", &b)
                .map(|x| x.0)
                .filter(|s| s != "RUNNING")
        },
    );
    assert_eq!(status, "SUCCEEDED");
}

/// Issue 20: a failover away from a region whose daemon is frozen (its
/// process stopped, its region's endpoints still healthy, so the workflow
/// asks it to drain) does not wait out the drain's timeout for a daemon
/// that cannot answer: a live daemon fails the drain token as skipped,
/// with the reason, and the workflow goes on to steady.
#[test]
fn a_drain_addressed_to_a_frozen_daemon_is_skipped_not_waited_for() {
    let lab = start(&[]);
    // Frozen just before the operator moves the traffic: its vote is still
    // fresh at the claim, so the failover is graceful and the workflow asks
    // the frozen daemon to drain.
    lab.signal("us-east-1", libc::SIGSTOP);
    let out = lab.cli(&[
        "failover",
        "--to",
        "us-west-2",
        "--reason",
        "us-east-1's host hangs",
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = steady_on(&lab, "us-west-2", Duration::from_secs(120));
    let tokens = Lab::rt()
        .block_on(async {
            lab.table()
                .tokens(100, failoverd::ports::clock::wall_ms())
                .await
        })
        .unwrap();
    let exec = after.execution.clone().unwrap();
    let drain = tokens
        .items
        .iter()
        .find(|t| t.view.id == format!("{exec}#drain"))
        .unwrap_or_else(|| {
            panic!(
                "no drain token; record {after:#?}; tokens {:?}; journal {:#?}",
                tokens.items.iter().map(|t| &t.view.id).collect::<Vec<_>>(),
                events(&lab)
            )
        });
    assert!(after.old_region_healthy, "a graceful failover: {after:#?}");
    let note = drain.note.clone().unwrap_or_default();
    assert!(
        note.contains("failure sent") && note.contains("us-east-1's daemon is not live"),
        "{drain:#?}"
    );
    assert!(
        events(&lab)
            .iter()
            .any(|e| e.kind == "token_skipped" && e.detail.contains(&exec)),
        "the skip is journalled"
    );
    let at = |kind: &str| {
        events(&lab)
            .iter()
            .find(|e| e.kind == kind && e.epoch == Some(after.epoch))
            .map(|e| e.at)
    };
    if let (Some(a), Some(b)) = (at("execution_started"), at("workflow_done")) {
        // A figure, not a check (timings belong in benchmarks).
        println!(
            "figure: StartExecution -> steady with the old active's daemon frozen: {:.3} s",
            (b - a) as f64 / 1000.0
        );
    }
    lab.signal("us-east-1", libc::SIGCONT);
}

/// Issue 19 item 3: an execution is looked up under the state machine it
/// was started under, which the claim writes to the record. The initiator
/// is restarted mid-failover with its `state_machine_arn` pointing at
/// another (existing) state machine: it finds its execution where the
/// record says and does not start the epoch again there. Before, it looked
/// under the new ARN, found nothing, and started the same execution name a
/// second time: two executions for one epoch.
#[test]
fn a_changed_state_machine_arn_does_not_start_an_epoch_twice() {
    let mut lab = start(&[]);
    // The failover stays in flight while the initiator restarts.
    let stuck = stuck_in_prepare(&lab);
    let started_under = lab
        .config
        .region("us-west-2")
        .unwrap()
        .state_machine_arn
        .clone();
    assert_eq!(
        (stuck.initiator.as_deref(), stuck.state_machine.as_deref()),
        (Some("us-west-2"), Some(started_under.as_str())),
        "the claim records where the execution runs: {stuck:?}"
    );
    let name = stuck.execution.clone().unwrap();
    // us-west-2's daemon restarts with us-east-1's state machine as its own.
    let base = lab.dir.join("regions/base.toml");
    let original = std::fs::read_to_string(&base).unwrap();
    let other = lab
        .config
        .region("us-east-1")
        .unwrap()
        .state_machine_arn
        .clone();
    assert!(original.contains(&started_under));
    std::fs::write(&base, original.replace(&started_under, &other)).unwrap();
    lab.kill_daemon("us-west-2");
    lab.start_daemon("us-west-2");
    std::fs::write(&base, &original).unwrap();
    // Several of its rounds while the failover is in flight.
    lab.wait_admin(
        "us-west-2",
        "/status",
        "us-west-2's rounds after the restart",
        Duration::from_secs(60),
        |_, body| {
            serde_json::from_str::<serde_json::Value>(body)
                .is_ok_and(|s| s["round"].as_u64().unwrap_or(0) >= 5)
        },
    );
    let again = failoverd::ports::workflows::execution_arn(&other, &name);
    let found = Lab::rt().block_on(
        lab.clients
            .sfn("us-east-1")
            .describe_execution()
            .execution_arn(&again)
            .send(),
    );
    assert!(
        found.is_err(),
        "a second execution of epoch {} was started under {other}: {found:?}",
        stuck.epoch
    );
    assert!(
        execution(&lab, "us-west-2", &name).is_some(),
        "the first one is where the record says"
    );
}
