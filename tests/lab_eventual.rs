//! Eventual (MREC) mode in the lab: one replica per region, copied with lag,
//! last writer wins. The model check shows automatic failover is unsafe
//! there, so the daemons refuse it and say so; an operator's failover still
//! runs, and its record, tokens and journal reach every replica.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use failoverd::ports::ControlStore;
use std::time::Duration;

use common::lab::{Lab, REGIONS};
use common::wait_for;
use failoverd::core::control::Phase;

#[test]
fn eventual_mode_replicates_refuses_automatic_failover_and_runs_a_manual_one() {
    let lab = Lab::start_with("eventual", &[]);
    assert_eq!(
        lab.config.tables.consistency,
        failoverd::config::Consistency::Eventual
    );
    // Votes travel between replicas, so every daemon finds a quorum.
    lab.wait_ready(Duration::from_secs(90));
    for r in REGIONS {
        wait_for(
            &format!("the record in {r}'s replica"),
            Duration::from_secs(30),
            || {
                Lab::rt()
                    .block_on(lab.table_in(r).read_record())
                    .ok()
                    .flatten()
                    .filter(|rec| rec.active == "us-east-1")
            },
        );
    }

    lab.invert("us-east-1", true);
    wait_for(
        "a daemon to refuse automatic failover",
        Duration::from_secs(30),
        || {
            let events = Lab::rt()
                .block_on(async {
                    lab.table_in("us-west-2")
                        .events(500, failoverd::ports::clock::wall_ms())
                        .await
                        .map(|p| p.items)
                })
                .ok()?;
            events
                .iter()
                .any(|e| e.detail.contains("eventual consistency mode"))
                .then_some(())
        },
    );
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(1));
        for r in REGIONS {
            let rec = Lab::rt()
                .block_on(lab.table_in(r).read_record())
                .unwrap()
                .unwrap();
            assert_eq!(
                (rec.active.as_str(), rec.epoch),
                ("us-east-1", 1),
                "no automatic failover in {r}"
            );
        }
    }

    // The operator fails over; the workflow writes us-west-2's replica and
    // the drain token reaches us-east-1's daemon through replication.
    let out = lab.cli(&[
        "failover",
        "--to",
        "us-west-2",
        "--reason",
        "eventual drill",
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for r in REGIONS {
        wait_for(
            &format!("{r}'s replica to show us-west-2 steady"),
            Duration::from_secs(90),
            || {
                Lab::rt()
                    .block_on(lab.table_in(r).read_record())
                    .ok()
                    .flatten()
                    .filter(|rec| {
                        rec.active == "us-west-2" && rec.phase == Phase::Steady && rec.epoch == 2
                    })
            },
        );
    }
    // The drain token's "done" may still be replicating when the record
    // shows steady: wait for it, bounded.
    wait_for(
        "the drain token done in us-west-2's replica",
        Duration::from_secs(30),
        || {
            let tokens = Lab::rt()
                .block_on(async {
                    lab.table_in("us-west-2")
                        .tokens(1000, failoverd::ports::clock::wall_ms())
                        .await
                        .map(|p| p.items)
                })
                .ok()?;
            tokens
                .iter()
                .any(|t| {
                    t.view.step == "drain"
                        && t.view.status == failoverd::core::tokens::TokenStatus::Done
                })
                .then_some(())
        },
    );
}

/// Issue #8 item 9: with replication cut, a forced manual failover lands on
/// one replica only. The old active still has a majority of replicas naming
/// it; the new one has only its own. An active renews its lease only from a
/// majority, so once the lease has run out at most one daemon answers
/// `/active` 200, however long the cut lasts. (Before, each daemon renewed
/// from its own replica, and both acted as active.)
#[test]
fn with_replication_cut_at_most_one_region_acts_as_active() {
    let mut lab = Lab::start_with("eventual", &[]);
    lab.wait_ready(Duration::from_secs(90));
    lab.wait_admin(
        "us-east-1",
        "/active",
        "us-east-1 to act as active",
        Duration::from_secs(60),
        |s, _| s == 200,
    );
    lab.stop_replicator();
    // Through us-west-2's replica only; forced: the operator rule ("after
    // the previous request has replicated") is broken on purpose.
    let out = lab.cli_in(
        "us-west-2",
        &[
            "failover",
            "--to",
            "us-west-2",
            "--reason",
            "cut",
            "--force",
            "--yes",
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "us-west-2's replica to name us-west-2",
        Duration::from_secs(90),
        || {
            Lab::rt()
                .block_on(lab.table_in("us-west-2").read_record())
                .ok()
                .flatten()
                .filter(|r| r.active == "us-west-2")
        },
    );
    // Past the lease (4 s in the lab) plus a round, sample for a while.
    std::thread::sleep(lab.config.timings.lease + Duration::from_secs(2));
    for _ in 0..10 {
        let active: Vec<&str> = REGIONS
            .iter()
            .copied()
            .filter(|r| lab.admin(r, "/active").is_some_and(|(s, _)| s == 200))
            .collect();
        assert!(active.len() <= 1, "two regions act as active: {active:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The one named on its own replica only never acts.
    let (status, body) = lab.admin("us-west-2", "/active").unwrap();
    assert_eq!(status, 503, "{body}");
}
