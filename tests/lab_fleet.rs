//! One fleet, one configuration (issue 19, item 1), in the lab: a daemon
//! restarted with a different lease publishes another fingerprint in its
//! vote; every daemon names it (journal, `failoverd status`, `/metrics`),
//! an inversion of the active's check is then not failed over
//! automatically, and once the daemon runs the fleet's settings again the
//! failover goes ahead.
//!
//! Waits are level-triggered with generous caps; no timing is asserted.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::lab::{Lab, events, record, wait_record};
use common::wait_for;
use failoverd::core::control::Phase;

#[test]
fn a_daemon_with_other_settings_is_named_and_withholds_automatic_failover() {
    let mut lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    wait_record(&lab, "a steady record", Duration::from_secs(30), |r| {
        r.phase == Phase::Steady && r.active == "us-east-1"
    });
    // us-west-2 (the preferred target) restarts with a longer lease than
    // the rest of the fleet.
    lab.kill_daemon("us-west-2");
    lab.start_daemon_with(
        "us-west-2",
        &[("FAILOVERD__TIMINGS__LEASE".into(), "6s".into())],
    );
    wait_for("the drift in the journal", Duration::from_secs(60), || {
        events(&lab)
            .into_iter()
            .find(|e| e.kind == "config_drift" && e.detail.contains("us-west-2 differs in timings"))
    });
    // Read with another region's file, us-west-2 is a daemon that drifted.
    let out = lab.cli_in("us-east-1", &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("CONFIGURATION DRIFT: us-west-2 differs in timings"),
        "{text}"
    );
    // Read with us-west-2's own file, the difference is its daemon's
    // pending change, not another daemon's drift (issue 19 item 3).
    let out = lab.cli_in("us-west-2", &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("PENDING: us-west-2's daemon runs a configuration that differs from this file in timings"),
        "{text}"
    );
    let (_, metrics) = lab
        .admin("eu-west-1", "/metrics")
        .expect("eu-west-1's metrics");
    assert!(
        metrics
            .contains("failoverd_fleet_config_drift{observer=\"us-west-2\",group=\"timings\"} 1"),
        "{metrics}"
    );

    // The active's check is inverted: every daemon sees it down, and the
    // failover is withheld, with the reason.
    lab.invert("us-east-1", true);
    wait_for(
        "the withheld failover in the journal",
        Duration::from_secs(60),
        || {
            events(&lab).into_iter().find(|e| {
                e.kind == "decision"
                    && e.detail
                        .contains("withheld: the fleet's configurations differ")
            })
        },
    );
    let r = record(&lab).expect("the record");
    assert_eq!((r.active.as_str(), r.epoch), ("us-east-1", 1), "{r:#?}");

    // us-west-2 runs the fleet's settings again: the drift clears and the
    // failover goes ahead.
    lab.kill_daemon("us-west-2");
    lab.start_daemon("us-west-2");
    wait_record(
        &lab,
        "the failover to us-west-2",
        Duration::from_secs(120),
        |r| r.phase == Phase::Steady && r.active == "us-west-2",
    );
    assert!(events(&lab).iter().any(|e| e.kind == "config_agrees"));
}
