//! Deterministic simulation of the whole fleet (issue 10; docs/simulation.md).
//!
//! - `seeds_*`: the CI run, `SIM_SEEDS` seeds (default 1000) from
//!   `SIM_FIRST_SEED` (default 0; a later start explores seeds CI never
//!   ran), split into
//!   eight shards so nextest can run them side by side, each well inside
//!   nextest's 8-minute backstop on a loaded two-core machine; a shard
//!   stops after `SIM_MAX_FAILURES` failing seeds (default 3);
//! - `replay`: one seed, `SIM_SEED` (default: the first of the regression
//!   list), with its whole trace printed;
//! - `regressions`: every seed of `tests/sim/regressions.txt` (seeds that
//!   once found a bug);
//! - `same_seed_same_trace`: the same seed twice gives byte-identical traces
//!   (the clients' requests and their answers included);
//! - each fake's own tests, against the AWS behaviour it claims, live in
//!   its module.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

#[path = "sim/mod.rs"]
mod sim;

use std::time::Instant;

use sim::fleet::{self, Report};

const SHARDS: u64 = 8;

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn first_seed() -> u64 {
    std::env::var("SIM_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A shard stops after this many failing seeds (`SIM_MAX_FAILURES`,
/// default 3: CI wants a short report; a long sweep wants them all).
fn max_failures() -> usize {
    std::env::var("SIM_MAX_FAILURES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

fn replay_hint(seed: u64) -> String {
    format!(
        "replay with: SIM_SEED={seed} cargo nextest run --test sim -E 'test(replay)' --no-capture"
    )
}

fn fail(reports: &[Report]) -> ! {
    let mut msg = String::new();
    for r in reports {
        msg.push_str(&format!(
            "\n===== seed {} FAILED: {}\n{}\n----- trace of seed {}:\n{}",
            r.seed,
            r.violations.join(" | "),
            replay_hint(r.seed),
            r.seed,
            r.trace
        ));
    }
    let seeds: Vec<u64> = reports.iter().map(|r| r.seed).collect();
    panic!("{} seed(s) failed: {seeds:?}{msg}", reports.len());
}

fn shard(k: u64) {
    let (first, n) = (first_seed(), seeds());
    let started = Instant::now();
    let mut failed = Vec::new();
    let (mut sim_ms, mut runs, mut switches) = (0u64, 0u64, 0usize);
    let mut req = sim::clients::Figures::default();
    for seed in (first..first + n).filter(|s| s % SHARDS == k) {
        let r = fleet::run(seed);
        sim_ms += r.sim_ms;
        switches += r.switches;
        runs += 1;
        req.sent += r.requests.sent;
        req.good += r.requests.good;
        req.servable += r.requests.servable;
        req.lost += r.requests.lost;
        req.unreached += r.requests.unreached;
        if !r.ok() {
            eprintln!(
                "seed {seed} failed: {}; {}",
                r.violations.join(" | "),
                replay_hint(seed)
            );
            failed.push(r);
            if failed.len() >= max_failures() {
                break;
            }
        }
    }
    eprintln!(
        "shard {k}: {runs} seeds, {:.1} h simulated, {switches} switches, {} requests ({} answered well by their deadline, {} judged servable, {} lost with their router, {} reached no router), in {:.1} s",
        sim_ms as f64 / 3_600_000.0,
        req.sent,
        req.good,
        req.servable,
        req.lost,
        req.unreached,
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        fail(&failed);
    }
}

#[test]
fn seeds_0() {
    shard(0);
}

#[test]
fn seeds_1() {
    shard(1);
}

#[test]
fn seeds_2() {
    shard(2);
}

#[test]
fn seeds_3() {
    shard(3);
}

#[test]
fn seeds_4() {
    shard(4);
}

#[test]
fn seeds_5() {
    shard(5);
}

#[test]
fn seeds_6() {
    shard(6);
}

#[test]
fn seeds_7() {
    shard(7);
}

/// The seeds of the regression list (`# comments` allowed).
fn regression_seeds() -> Vec<u64> {
    let text = include_str!("sim/regressions.txt");
    text.lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn regressions() {
    let failed: Vec<Report> = regression_seeds()
        .into_iter()
        .map(fleet::run)
        .filter(|r| !r.ok())
        .collect();
    if !failed.is_empty() {
        fail(&failed);
    }
}

#[test]
fn replay() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .or_else(|| regression_seeds().first().copied())
        .unwrap_or(1);
    let r = fleet::run(seed);
    println!("{}", r.trace);
    if !r.ok() {
        fail(&[r]);
    }
}

#[test]
fn same_seed_same_trace() {
    for seed in [3, 17, 42] {
        let a = fleet::run(seed);
        let b = fleet::run(seed);
        assert!(
            a.trace.lines().count() > 20,
            "seed {seed}: a trace worth comparing"
        );
        assert!(
            a.trace.lines().filter(|l| l.contains(" client ")).count() > 20,
            "seed {seed}: the trace holds the clients' requests"
        );
        if a.trace != b.trace {
            let (la, lb): (Vec<&str>, Vec<&str>) =
                (a.trace.lines().collect(), b.trace.lines().collect());
            let at = la
                .iter()
                .zip(&lb)
                .position(|(x, y)| x != y)
                .unwrap_or(la.len().min(lb.len()));
            panic!(
                "seed {seed}: the traces differ from line {at}:\n  first:  {:?}\n  second: {:?}",
                la.get(at),
                lb.get(at)
            );
        }
    }
}

/// A written scenario: us-east-1's models out for two minutes, nothing
/// else wrong. Every request must be answered well (the other regions
/// serve), nearly every one must be judged (the rule is not vacuous), and
/// some must have been served from another region than us-east-1 while
/// the routers still rank it first.
#[test]
fn routers_serve_around_a_model_outage() {
    use sim::sagemaker::Behaviour;
    use sim::schedule::{Event, Profile, Timed};
    let mut s = sim::schedule::generate(7);
    s.consistency = sim::store::Consistency::Mrsc;
    s.profile = Profile::Shipped;
    s.calculated = false;
    s.skews.clear();
    s.fault_end_ms = 240_000;
    let at = |at_ms: u64, event: Event| Timed { at_ms, event };
    let model = |b: Behaviour| Event::Model {
        region: "us-east-1".into(),
        b,
    };
    s.events = vec![
        at(0, Event::Start("us-east-1".into())),
        at(1_000, Event::Start("us-west-2".into())),
        at(2_000, Event::Start("us-east-2".into())),
        at(
            60_000,
            model(Behaviour {
                outage: true,
                ..Behaviour::default()
            }),
        ),
        at(180_000, model(Behaviour::default())),
        at(240_000, Event::HealAll),
    ];
    let r = fleet::run_scenario(s);
    if !r.ok() {
        fail(&[r]);
    }
    let f = r.requests;
    assert!(f.sent > 30, "{f:?}");
    assert_eq!(
        f.good + f.unreached,
        f.sent,
        "every request a router took answered well: {f:?}"
    );
    assert!(f.servable * 10 >= f.sent * 9, "nearly all judged: {f:?}");
    assert!(
        r.trace
            .lines()
            .any(|l| l.contains("via us-east-1,") && l.contains("200 from us-west-2")),
        "served around the outage:\n{}",
        r.trace
    );
}
