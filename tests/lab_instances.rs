//! Two daemons in one region (issue 24), in the lab: real processes on
//! 127.0.0.1 against moto.
//!
//! The first test, one lab: us-east-1 (the active) and us-west-2 each get a
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
//!
//! A second test, a second lab: a kill of each role (the old active
//! region's duty holder, one of the target region's daemons) at each step
//! of a failover (claim, prepare, switch, drain), one failover per step,
//! back and forth; each completes exactly once.

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
use failoverd::core::tokens::TokenStatus;
use failoverd::metrics::counts::fleet_counted;
use failoverd::ports::ControlStore;

/// A region's second daemon, started beside the lab's.
struct Second {
    admin: u16,
    router: u16,
    child: Option<ChildGuard>,
}

fn start_second(lab: &Lab, region: &str) -> Second {
    start_second_as(lab, region, "b")
}

/// A second daemon named `b`, its files under `file` (a restarted one
/// writes new files: an old bound file would give the old ports).
fn start_second_as(lab: &Lab, region: &str, file: &str) -> Second {
    let log: PathBuf = lab.dir.join(format!("{region}-{file}.log"));
    let bound = lab.dir.join(format!("{region}-{file}.bound.json"));
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

// --- a kill of each role at each step (issue 24 item 4) ---------------------

/// The steps of a failover at which daemons are killed.
#[derive(Debug, Clone, Copy)]
enum At {
    /// The record holds the new epoch (claimed or marked): no switch yet.
    Claim,
    /// The prepare token is claimed by one of the target's daemons, its
    /// step in progress (the target's endpoints warm slowly).
    Prepare,
    /// The workflow switched `active`.
    Switch,
    /// The drain token is out, for the old active region's daemons.
    Drain,
}

fn tokens_of(lab: &Lab, exec: &str) -> Vec<failoverd::ports::store::TokenItem> {
    Lab::rt()
        .block_on(async {
            lab.table()
                .tokens(1000, failoverd::ports::clock::wall_ms())
                .await
                .map(|p| p.items)
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.view.id.starts_with(&format!("{exec}#")))
        .collect()
}

/// Which of a region's two daemons answers `/active` 200: 0 the lab's, 1
/// the second; None unless exactly one does.
fn owner_of(lab: &Lab, region: &str, second: &Second) -> Option<usize> {
    let a = active_status(lab.daemon(region).admin) == 200;
    let b = active_status(second.admin) == 200;
    match (a, b) {
        (true, false) => Some(0),
        (false, true) => Some(1),
        _ => None,
    }
}

/// One lab, four failovers back and forth; at each, when the failover
/// reaches its step, the old active region's duty holder and one daemon of
/// the target region (at the prepare step, the prepare token's claimant)
/// are killed. Each failover completes exactly once: the record ends steady
/// on the target one epoch on, each of its two tokens is done and
/// journaled done once (its success sent once; a claim that lapsed with
/// its killed claimant is taken by the sibling). The killed daemons are
/// started again before the next failover.
#[test]
fn a_kill_of_each_role_at_each_step_fails_over_exactly_once() {
    let mut lab = Lab::start(&[]);
    let mut second: std::collections::BTreeMap<&str, Second> = [
        ("us-east-1", start_second_as(&lab, "us-east-1", "b0")),
        ("us-west-2", start_second_as(&lab, "us-west-2", "b0")),
    ]
    .into_iter()
    .collect();
    lab.wait_ready(Duration::from_secs(60));
    wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1" && r.phase == Phase::Steady
    });
    // us-west-2's endpoints warm slowly: a prepare onto us-west-2 is in
    // progress long enough to kill its claimant.
    let (status, _) = common::http(
        "PUT",
        &format!("127.0.0.1:{}", lab.model_port),
        "/_lab/behaviour",
        r#"{"region":"us-west-2","endpoint":"*","cold_start_after_idle":"0s","cold_start":"4s"}"#,
    )
    .unwrap();
    assert_eq!(status, 200);

    let started = std::time::Instant::now();
    let plan = [
        (At::Prepare, "us-east-1", "us-west-2"),
        (At::Claim, "us-west-2", "us-east-1"),
        (At::Switch, "us-east-1", "us-west-2"),
        (At::Drain, "us-west-2", "us-east-1"),
    ];
    for (round, (at, from, to)) in plan.into_iter().enumerate() {
        let holder = wait_for(
            &format!("round {round}: exactly one of {from}'s daemons answers /active 200"),
            Duration::from_secs(60),
            || owner_of(&lab, from, &second[from]),
        );
        let before = common::lab::record(&lab).expect("a record");
        assert_eq!(before.active, from);
        let out = lab.cli(&[
            "failover",
            "--to",
            to,
            "--reason",
            &format!("kill at {at:?}"),
            "--yes",
        ]);
        assert!(
            out.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let epoch = before.epoch + 1;
        // Wait for the step; then whom to kill in the target region.
        let victim_in_target = wait_for(
            &format!("round {round}: the failover reaches {at:?}"),
            Duration::from_secs(60),
            || {
                let r = common::lab::record(&lab)?;
                if r.epoch != epoch {
                    return None;
                }
                let exec = r.execution.clone()?;
                match at {
                    // Right after the operator's claim (the CLI has returned).
                    At::Claim => Some(round % 2),
                    At::Switch => (r.active == to).then_some(round % 2),
                    At::Prepare => tokens_of(&lab, &exec)
                        .iter()
                        .find(|t| t.view.step == "prepare" && t.view.status == TokenStatus::Claimed)
                        .and_then(|t| t.view.claimed_by.clone())
                        .map(|by| usize::from(by.starts_with(&format!("{to}/b.")))),
                    At::Drain => tokens_of(&lab, &exec)
                        .iter()
                        .any(|t| t.view.step == "drain")
                        .then_some(round % 2),
                }
            },
        );
        let seen = common::lab::record(&lab).map(|r| (r.epoch, r.step, r.active));
        eprintln!(
            "round {round} ({at:?}, {from} -> {to}), at {:.1} s: record {seen:?}; killing {from}'s duty holder \
             (daemon {holder}) and {to}'s daemon {victim_in_target}",
            started.elapsed().as_secs_f64()
        );
        for (region, which) in [(from, holder), (to, victim_in_target)] {
            if which == 0 {
                lab.kill_daemon(region);
            } else {
                let s = second.get_mut(region).unwrap();
                s.child = None; // dropped: killed
                s.admin = 0;
            }
        }
        let after = wait_record(
            &lab,
            &format!("round {round}: the failover to {to} to finish"),
            Duration::from_secs(120),
            |r| r.phase == Phase::Steady && r.epoch >= epoch,
        );
        assert_eq!(
            (after.active.as_str(), after.epoch),
            (to, epoch),
            "round {round} ({at:?}): one failover, to {to}"
        );
        let exec = after.execution.clone().unwrap();
        let toks = tokens_of(&lab, &exec);
        assert_eq!(toks.len(), 2, "round {round}: {toks:#?}");
        for t in &toks {
            assert_eq!(t.view.status, TokenStatus::Done, "round {round}: {t:#?}");
        }
        // The worker journals `token_done` after it marks the token done,
        // which may come after the record is steady: wait for both lines,
        // then count.
        let journaled = |lab: &Lab| -> Vec<String> {
            common::lab::events(lab)
                .into_iter()
                .filter(|e| e.kind == "token_done" && e.detail.starts_with(&format!("{exec}#")))
                .map(|e| e.detail)
                .collect()
        };
        let count = |done: &[String], step: &str| {
            done.iter()
                .filter(|d| d.starts_with(&format!("{exec}#{step}:")))
                .count()
        };
        let done = wait_for(
            &format!("round {round}: both tokens journaled done"),
            Duration::from_secs(30),
            || {
                let done = journaled(&lab);
                (count(&done, "prepare") >= 1 && count(&done, "drain") >= 1).then_some(done)
            },
        );
        for step in ["prepare", "drain"] {
            let n = count(&done, step);
            assert_eq!(
                n, 1,
                "round {round}: {exec}#{step} done {n} times: {done:#?}"
            );
        }
        // Both regions back to two daemons.
        for (region, which) in [(from, holder), (to, victim_in_target)] {
            if which == 0 {
                lab.start_daemon(region);
            } else {
                second.insert(
                    region,
                    start_second_as(&lab, region, &format!("b{}", round + 1)),
                );
            }
        }
        lab.wait_ready(Duration::from_secs(60));
    }
}
