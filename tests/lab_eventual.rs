//! Eventual (MREC) mode in the lab: one replica per region, copied with lag,
//! last writer wins. The model check shows automatic failover is unsafe
//! there, so the daemons refuse it and say so; an operator's failover still
//! runs, and its record, tokens and journal reach every replica.

mod common;

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
                .block_on(lab.table_in("us-west-2").events(500))
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
    let tokens = Lab::rt()
        .block_on(lab.table_in("us-west-2").all_tokens())
        .unwrap();
    assert!(
        tokens.iter().any(|t| t.view.step == "drain"
            && t.view.status == failoverd::core::tokens::TokenStatus::Done),
        "{tokens:#?}"
    );
}
