//! Two daemons in one region (issue 24), in the lab: real processes on
//! 127.0.0.1 against moto.
//!
//! One test, one lab: us-east-1 (the active) and us-west-2 each get a
//! second daemon, named `b` (`FAILOVERD__INSTANCE`; the lab's first
//! daemons keep generated names).
//!
//! - Exactly one of the active region's two daemons answers `/active` 200
//!   (the region's duty item, `core::duty`), none of the standby's.
//! - Traffic sent through us-west-2's second daemon's router only is
//!   counted in full by the fleet's sum over the votes as read from the
//!   table (`metrics::counts::fleet_counted`, what `failoverd cost` and
//!   every daemon's cost task read): each daemon has its own vote item.
//! - An operator's failover to us-west-2 with the us-east-1 daemon that
//!   holds the duties killed right after the claim completes, and then
//!   exactly one of us-west-2's daemons answers `/active` 200.

#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::lab::{Lab, REGIONS, wait_record};
use common::{ChildGuard, http, spawn_guarded, wait_bound, wait_for};
use failoverd::core::control::Phase;
use failoverd::metrics::counts::fleet_counted;
use failoverd::ports::ControlStore;

/// A region's second daemon, started beside the lab's.
struct Second {
    admin: u16,
    router: u16,
    child: Option<ChildGuard>,
}

fn start_second(lab: &Lab, region: &str) -> Second {
    let log: PathBuf = lab.dir.join(format!("{region}-b.log"));
    let bound = lab.dir.join(format!("{region}-b.bound.json"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_failoverd"));
    cmd.args(["run", "--log-format", "json", "--bound-file"])
        .arg(&bound)
        .arg("--config")
        .arg(lab.dir.join(format!("regions/{region}.toml")))
        .current_dir(&lab.dir)
        .env_clear()
        .envs(lab.env.clone())
        .env("FAILOVERD__INSTANCE", "b")
        .env("FAILOVERD__LISTEN__ADMIN", "127.0.0.1:0")
        .env("FAILOVERD__LISTEN__ROUTER", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = spawn_guarded(&mut cmd);
    let b = wait_bound(&mut child, &bound, &log, Duration::from_secs(60));
    Second {
        admin: b.admin.port(),
        router: b.router.port(),
        child: Some(child),
    }
}

fn active_status(port: u16) -> u16 {
    if port == 0 {
        return 0;
    }
    http("GET", &format!("127.0.0.1:{port}"), "/active", "")
        .map(|(s, _)| s)
        .unwrap_or(0)
}

/// One inference through the router on `port`: its status.
fn invoke(port: u16) -> u16 {
    let body = r#"{"x":1}"#;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = write!(
        s,
        "POST /endpoints/default/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Every (region, endpoint) the fleet's routers may invoke.
fn endpoints(lab: &Lab) -> Vec<(String, String)> {
    lab.config
        .regions
        .iter()
        .flat_map(|r| {
            r.sagemaker
                .all()
                .map(|e| (r.name.clone(), e.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn two_daemons_in_a_region_one_owner_counts_summed_failover_survives_a_kill() {
    let mut lab = Lab::start(&[]);
    let mut east_b = start_second(&lab, "us-east-1");
    let west_b = start_second(&lab, "us-west-2");
    lab.wait_ready(Duration::from_secs(60));
    wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1" && r.phase == Phase::Steady
    });

    // One owner of the active duties in us-east-1, none in us-west-2.
    let owners = |lab: &Lab, region: &str, second: u16| -> (u16, u16) {
        (
            active_status(lab.daemon(region).admin),
            active_status(second),
        )
    };
    wait_for(
        "exactly one of us-east-1's daemons answers /active 200",
        Duration::from_secs(60),
        || {
            let (a, b) = owners(&lab, "us-east-1", east_b.admin);
            ((a == 200) != (b == 200)).then_some(())
        },
    );
    for _ in 0..10 {
        let (a, b) = owners(&lab, "us-east-1", east_b.admin);
        assert!(
            (a == 200) != (b == 200),
            "us-east-1's daemons answer /active {a} and {b}"
        );
        let (a, b) = owners(&lab, "us-west-2", west_b.admin);
        assert!(a != 200 && b != 200, "a standby answers /active 200");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Traffic through us-west-2's second daemon's router only.
    let sent = (0..20).filter(|_| invoke(west_b.router) == 200).count() as u64;
    assert!(sent > 0, "the second router serves");
    let regions: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
    let eps = endpoints(&lab);
    let counted = wait_for(
        "the fleet's counts over the votes include the second router's",
        Duration::from_secs(60),
        || {
            let votes = Lab::rt().block_on(lab.table().read_votes()).ok()?;
            let west: Vec<_> = votes
                .iter()
                .filter(|v| v.observer == "us-west-2")
                .map(|v| v.instance.clone())
                .collect();
            if west.len() < 2 || !west.contains(&Some("b".to_string())) {
                return None;
            }
            let now = failoverd::ports::clock::wall_ms();
            let votes = failoverd::core::quorum::Receipts::default().effective(&votes, now);
            let total: u64 = eps
                .iter()
                .map(|(r, e)| {
                    fleet_counted(&regions, None, &votes, r, e, 3_600_000, now)
                        .map_or(0, |c| c.invocations)
                })
                .sum();
            (total >= sent).then_some(total)
        },
    );
    assert!(counted >= sent, "{counted} counted, {sent} sent");

    // A failover to us-west-2; the us-east-1 daemon that holds the
    // duties is killed right after the claim.
    let out = lab.cli(&[
        "failover",
        "--to",
        "us-west-2",
        "--reason",
        "two daemons per region",
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if active_status(east_b.admin) == 200 {
        east_b.child = None; // dropped: killed
        east_b.admin = 0;
    } else {
        lab.kill_daemon("us-east-1");
    }
    let after = wait_record(
        &lab,
        "the failover to finish",
        Duration::from_secs(120),
        |r| r.active == "us-west-2" && r.phase == Phase::Steady,
    );
    assert_eq!(after.active, "us-west-2");
    wait_for(
        "exactly one of us-west-2's daemons answers /active 200",
        Duration::from_secs(60),
        || {
            let (a, b) = owners(&lab, "us-west-2", west_b.admin);
            ((a == 200) != (b == 200)).then_some(())
        },
    );
    let survivors = [lab.daemon("us-east-1").admin, east_b.admin];
    for port in survivors {
        assert_ne!(active_status(port), 200, "the old active region answers");
    }
    drop(west_b);
    drop(east_b);
}
