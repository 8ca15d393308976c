//! End to end in the lab, three real daemons: an inverted health check
//! fails us-east-1 over to us-west-2 through the Step Functions workflow and
//! its task tokens; a reverted check does not flap; a daemon killed mid-
//! workflow is replaced and the workflow completes; a daemon cut off from
//! AWS does nothing while the others carry on; an active region partitioned
//! from the table stands down after its lease and comes back when healed;
//! a new active waits out the old one's lease; a target whose SageMaker
//! endpoint is gone refuses the prepare step and the failover aborts.
//!
//! Waits are level-triggered with generous caps (the lab polls every 1 s);
//! timings are reported by chaos/figures.sh, never asserted here.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use failoverd::ports::ControlStore;
use std::time::Duration;

use common::lab::{Lab, record, wait_record};
use common::partition::Partition;
use common::wait_for;
use failoverd::core::control::Phase;
use failoverd::core::tokens::TokenStatus;

fn execution_status(lab: &Lab, region: &str, name: &str) -> String {
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
        .map(|d| d.status().as_str().to_string())
        .unwrap_or_else(|e| format!("{e:?}"))
}

fn kinds(lab: &Lab) -> Vec<String> {
    Lab::rt()
        .block_on(async {
            lab.table()
                .events(500, failoverd::ports::clock::wall_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn inverted_check_fails_over_once_and_does_not_flap() {
    let lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    let before = wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });
    assert_eq!(before.phase, Phase::Steady);

    lab.invert("us-east-1", true);
    // The new active does not act as active before the old one's lease (4 s
    // in the lab) has run out: it counts from when it first saw the switch,
    // which is after the workflow entered the switch step (`switched_at`,
    // same clock here).
    let switched = wait_record(&lab, "the switch", Duration::from_secs(90), |r| {
        r.active == "us-west-2"
    });
    lab.wait_admin(
        "us-west-2",
        "/active",
        "us-west-2 to act as active",
        Duration::from_secs(30),
        |s, _| s == 200,
    );
    let acted = failoverd::ports::clock::wall_ms();
    let lease = lab.config.timings.lease.as_millis() as u64;
    let switched_at = switched.switched_at.expect("the switch time");
    assert!(
        acted >= switched_at + lease,
        "us-west-2 acted as active {} ms after the switch, within the {lease} ms lease",
        acted - switched_at
    );
    let after = wait_record(
        &lab,
        "failover to us-west-2 to finish",
        Duration::from_secs(90),
        |r| r.active == "us-west-2" && r.phase == Phase::Steady,
    );
    assert_eq!(after.epoch, before.epoch + 1, "exactly one epoch further");
    let exec = after.execution.clone().unwrap();
    assert!(
        exec.starts_with(&format!(
            "{}-c",
            failoverd::core::control::execution_name(&after.incarnation, after.epoch)
        )),
        "{exec}"
    );
    assert_eq!(
        after.initiator.as_deref(),
        Some("us-west-2"),
        "the target initiates"
    );
    wait_for("the execution to succeed", Duration::from_secs(30), || {
        (execution_status(&lab, "us-west-2", &exec) == "SUCCEEDED").then_some(())
    });

    // Both tokens (prepare to us-west-2, drain to the still-alive us-east-1 daemon) are done.
    let tokens = Lab::rt()
        .block_on(async {
            lab.table()
                .tokens(1000, failoverd::ports::clock::wall_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap();
    let mine: Vec<_> = tokens
        .iter()
        .filter(|t| t.view.id.starts_with(&format!("{exec}#")))
        .collect();
    assert_eq!(mine.len(), 2, "{tokens:#?}");
    for t in &mine {
        assert_eq!(t.view.status, TokenStatus::Done, "{t:#?}");
    }
    let prepare = mine.iter().find(|t| t.view.step == "prepare").unwrap();
    assert_eq!(prepare.view.target_region, "us-west-2");
    let drain = mine.iter().find(|t| t.view.step == "drain").unwrap();
    assert_eq!(drain.view.target_region, "us-east-1");

    // The journal tells the story, in order.
    let k = kinds(&lab);
    let pos = |kind: &str| {
        k.iter()
            .position(|x| x == kind)
            .unwrap_or_else(|| panic!("no {kind} in {k:?}"))
    };
    assert!(pos("observed_down") < pos("failover_claimed"));
    assert!(pos("failover_claimed") <= pos("execution_started"));
    for kind in [
        "workflow_started",
        "token_claimed",
        "token_done",
        "workflow_done",
    ] {
        pos(kind);
    }
    assert_eq!(
        k.iter().filter(|x| *x == "failover_claimed").count(),
        1,
        "one failover: {k:?}"
    );

    // Revert: us-east-1 recovers; with auto_failback off nothing moves.
    lab.invert("us-east-1", false);
    wait_for(
        "us-east-1 to be seen up again",
        Duration::from_secs(30),
        || {
            let k = kinds(&lab);
            k.iter().any(|x| x == "observed_up").then_some(())
        },
    );
    for _ in 0..8 {
        std::thread::sleep(Duration::from_secs(1));
        let r = record(&lab).unwrap();
        assert_eq!(
            (r.active.as_str(), r.epoch, r.phase),
            ("us-west-2", after.epoch, Phase::Steady),
            "no flapping"
        );
    }

    // Failback by the operator, through the same planner and workflow.
    let out = lab.cli(&["failback", "--yes", "--reason", "drill over"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let back = wait_record(
        &lab,
        "failback to us-east-1",
        Duration::from_secs(90),
        |r| r.active == "us-east-1" && r.phase == Phase::Steady,
    );
    assert_eq!(back.epoch, after.epoch + 1);
    assert!(
        back.changed_by.starts_with("operator:") || back.reason.contains("drill over"),
        "{back:?}"
    );
}

#[test]
fn killed_target_daemon_is_replaced_and_the_workflow_completes() {
    let mut lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });
    // Make us-west-2's endpoints slow to warm so the prepare step is in progress when we kill.
    let (status, _) = common::http(
        "PUT",
        &format!("127.0.0.1:{}", lab.model_port),
        "/_lab/behaviour",
        r#"{"region":"us-west-2","endpoint":"*","cold_start_after_idle":"0s","cold_start":"6s"}"#,
    )
    .unwrap();
    assert_eq!(status, 200);

    lab.invert("us-east-1", true);
    wait_for(
        "us-west-2 to claim the prepare token",
        Duration::from_secs(60),
        || {
            let toks = Lab::rt()
                .block_on(async {
                    lab.table()
                        .tokens(1000, failoverd::ports::clock::wall_ms())
                        .await
                        .map(|p| p.items)
                })
                .ok()?;
            toks.iter()
                .any(|t| t.view.step == "prepare" && t.view.status == TokenStatus::Claimed)
                .then_some(())
        },
    );
    lab.kill_daemon("us-west-2");
    lab.start_daemon("us-west-2");
    let r = wait_record(
        &lab,
        "the failover to complete after the restart",
        Duration::from_secs(120),
        |r| r.active == "us-west-2" && r.phase == Phase::Steady,
    );
    let exec = r.execution.unwrap();
    wait_for("SUCCEEDED", Duration::from_secs(30), || {
        (execution_status(&lab, "us-west-2", &exec) == "SUCCEEDED").then_some(())
    });
    let toks = Lab::rt()
        .block_on(async {
            lab.table()
                .tokens(1000, failoverd::ports::clock::wall_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap();
    let prepare = toks
        .iter()
        .find(|t| t.view.id == format!("{exec}#prepare"))
        .unwrap();
    assert_eq!(prepare.view.status, TokenStatus::Done);
}

#[test]
fn a_daemon_cut_off_from_aws_does_nothing_and_the_others_carry_on() {
    let mut lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });
    // Cut eu-west-1 off: every AWS endpoint it has is a closed loopback port.
    lab.kill_daemon("eu-west-1");
    let dead = "http://127.0.0.1:9";
    for (k, v) in lab.env.iter_mut() {
        if k.starts_with("FAILOVERD__ENDPOINTS__") {
            *v = dead.to_string();
        }
    }
    let cut_at = failoverd::ports::clock::wall_ms();
    lab.start_daemon("eu-west-1");
    lab.wait_admin(
        "eu-west-1",
        "/readyz",
        "eu-west-1 to report no quorum",
        Duration::from_secs(30),
        |s, b| s == 503 && b.contains("cannot"),
    );

    lab.invert("us-east-1", true);
    let r = wait_record(
        &lab,
        "the two connected daemons to fail over",
        Duration::from_secs(90),
        |r| r.active == "us-west-2" && r.phase == Phase::Steady,
    );
    assert_eq!(r.initiator.as_deref(), Some("us-west-2"));
    // The cut-off daemon decided nothing and wrote nothing. Its rounds are
    // slow (every call fails after the SDK's retries), and the others may
    // finish the failover before its first round does: wait for a round.
    lab.wait_admin(
        "eu-west-1",
        "/status",
        "a round of the cut-off daemon",
        Duration::from_secs(60),
        |_, b| b.contains("cannot read the control record") || b.contains("no quorum"),
    );
    let events = Lab::rt()
        .block_on(async {
            lab.table()
                .events(500, failoverd::ports::clock::wall_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap();
    assert!(
        events.iter().all(|e| e.who != "eu-west-1" || e.at < cut_at),
        "eu-west-1 wrote nothing once cut off: {events:#?}"
    );
}

#[test]
fn an_active_partitioned_from_the_table_stands_down_and_comes_back() {
    let mut lab = Lab::start(&[]);
    // Put us-east-1's daemon behind a wall it reaches every AWS API through.
    let wall = Partition::start(lab.moto.port);
    let via = wall.endpoints(&["DYNAMODB", "S3", "ROUTE53", "SFN", "SAGEMAKER"]);
    lab.kill_daemon("us-east-1");
    lab.start_daemon_with("us-east-1", &via);
    lab.wait_ready(Duration::from_secs(60));
    let before = wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });
    lab.wait_admin(
        "us-east-1",
        "/active",
        "us-east-1 to act as active",
        Duration::from_secs(30),
        |s, _| s == 200,
    );
    // Once it has read the record, a standby answers 503 and says why.
    let (code, body) = lab.wait_admin(
        "us-west-2",
        "/active",
        "us-west-2 to stand by",
        Duration::from_secs(30),
        |_, b| b.contains("standby"),
    );
    assert_eq!(code, 503, "{body}");

    // Black-hole its traffic: no resets, nothing answers.
    wall.cut();
    let (_, body) = lab.wait_admin(
        "us-east-1",
        "/active",
        "us-east-1 to stand down",
        Duration::from_secs(30),
        |s, b| s == 503 && b.contains("stood_down"),
    );
    assert!(
        body.contains("could not be confirmed within the lease"),
        "{body}"
    );
    let (_, metrics) = lab.admin("us-east-1", "/metrics").unwrap();
    assert!(
        metrics.contains("failoverd_role{role=\"stood_down\"} 1"),
        "{metrics}"
    );
    // The SDK timeouts end the hung calls: it says why it is not ready.
    // Each hung call ends at the SDK's operation timeout (15 s), and a round
    // makes several, so this takes a minute or so.
    lab.wait_admin(
        "us-east-1",
        "/readyz",
        "us-east-1 to report why",
        Duration::from_secs(150),
        |s, _| s == 503,
    );
    // us-east-1 itself is healthy, so the others keep it active.
    let r = record(&lab).unwrap();
    assert_eq!((r.active.as_str(), r.epoch), ("us-east-1", before.epoch));

    wall.heal();
    lab.wait_admin(
        "us-east-1",
        "/active",
        "us-east-1 to act as active again",
        Duration::from_secs(150),
        |s, _| s == 200,
    );
    lab.wait_ready(Duration::from_secs(120));
}

#[test]
fn a_target_that_cannot_serve_refuses_to_prepare_and_the_failover_aborts() {
    let lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    let before = wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });
    // Both standbys' provisioned endpoints are deleted from SageMaker: the
    // planner prefers a ready target (issue 26), so with only one deleted
    // the failover goes to the other (as it should); with both, whichever
    // it picks cannot serve.
    for standby in ["us-west-2", "eu-west-1"] {
        let ep = lab
            .config
            .region(standby)
            .unwrap()
            .sagemaker
            .provisioned
            .clone()
            .unwrap();
        Lab::rt()
            .block_on(
                lab.clients
                    .sagemaker(standby)
                    .delete_endpoint()
                    .endpoint_name(&ep)
                    .send(),
            )
            .unwrap();
    }

    lab.invert("us-east-1", true);
    let r = wait_record(
        &lab,
        "the failover to abort",
        Duration::from_secs(90),
        |r| {
            r.epoch == before.epoch + 1
                && r.phase == Phase::Steady
                && r.step == failoverd::core::control::Step::Aborted
        },
    );
    assert_eq!(r.active, "us-east-1", "traffic did not move: {r:#?}");
    let target = r
        .target
        .clone()
        .expect("an aborted failover names its target");
    let exec = r.execution.clone().unwrap();
    wait_for("the execution to fail", Duration::from_secs(30), || {
        (execution_status(&lab, &target, &exec) == "FAILED").then_some(())
    });
    let events = Lab::rt()
        .block_on(async {
            lab.table()
                .events(500, failoverd::ports::clock::wall_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap();
    let refused = events
        .iter()
        .find(|e| e.kind == "token_done" && e.who == target && e.detail.contains("does not exist"));
    assert!(refused.is_some(), "the refusal is journalled: {events:#?}");
    assert!(
        events.iter().any(|e| e.kind == "workflow_aborted"),
        "{events:#?}"
    );
}

#[test]
fn pause_holds_automatic_failover_and_operators_get_clear_refusals() {
    let lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    let before = wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });

    // Unconfirmed: no --yes and no terminal -> refused, nothing changes.
    let out = lab.cli(&["pause", "--reason", "maintenance"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("This will set mode to Paused"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"));

    let out = lab.cli(&["pause", "--yes", "--reason", "maintenance"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lab.cli(&["pause", "--yes", "--reason", "again"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already paused"));

    // Paused: an inverted check fails nothing over.
    lab.invert("us-east-1", true);
    wait_for(
        "the daemons to see us-east-1 down",
        Duration::from_secs(30),
        || {
            kinds(&lab)
                .iter()
                .filter(|k| *k == "observed_down")
                .count()
                .ge(&2)
                .then_some(())
        },
    );
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        let r = record(&lab).unwrap();
        assert_eq!(
            (r.active.as_str(), r.epoch),
            ("us-east-1", before.epoch),
            "paused: no automatic failover"
        );
    }

    // A manual failover to a region the quorum sees down is refused...
    lab.invert("eu-west-1", true);
    wait_for("eu-west-1 down by quorum", Duration::from_secs(30), || {
        let out = lab.cli(&["status", "--output", "json"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (s["tally"]["regions"]["eu-west-1"] == "down").then_some(())
    });
    let out = lab.cli(&["failover", "--to", "eu-west-1", "--reason", "test", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not healthy by quorum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and so is one to an unknown region.
    let out = lab.cli(&[
        "failover",
        "--to",
        "ap-south-1",
        "--reason",
        "test",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not one of the configured regions"));

    // Resume: the held failover happens now.
    let out = lab.cli(&["resume", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = wait_record(
        &lab,
        "the failover after resume",
        Duration::from_secs(90),
        |r| r.active == "us-west-2" && r.phase == Phase::Steady,
    );
    assert_eq!(r.epoch, before.epoch + 1);
    let k = kinds(&lab);
    assert!(
        k.iter().filter(|x| *x == "mode").count() >= 2,
        "pause and resume are journalled: {k:?}"
    );
}
