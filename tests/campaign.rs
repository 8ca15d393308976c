//! A real-process campaign (issue 10 item 5): randomized drills in one full
//! lab (moto, the model server, three real daemons, each reaching AWS
//! through a wall it can be cut off behind), with load through every
//! router, checked from the outside against the simulation's invariants.
//!
//! Each drill draws one to three faults from its seed: the active region's
//! health check inverted, another region's inverted, a daemon killed (-9)
//! and restarted, a daemon stopped (SIGSTOP) and continued, a region's
//! models answering `ModelError` or out, a daemon cut off from AWS and
//! healed. Faults start within the first seconds of the drill and end by
//! its window's end, except the active's inversion, which stays until the
//! fleet has failed over. Checked:
//!
//! - **one active**: no two daemons answer `/active` 200 in the same poll;
//! - **no request lost**: every request sent to a router whose process ran
//!   undisturbed (not killed or stopped) for the request's whole life gets
//!   an HTTP answer (any status) before its deadline;
//! - **failover when it must**: an inverted active region is replaced, and
//!   the fleet is settled (steady record, every daemon ready, the record's
//!   active the only one acting) within the bound;
//! - **never needlessly**: a drill whose faults leave the active region
//!   healthy (kills, stops, walls, another region's inversion) ends in the
//!   epoch it began;
//! - **one execution per epoch**: no execution name in two regions' Step
//!   Functions.
//!
//! `CAMPAIGN_DRILLS` (default 2: what CI runs) and `CAMPAIGN_SEED` (default
//! 1) choose the drills; `chaos/campaign.sh N` runs N and prints the table.
//!
//! Timings are printed, never asserted.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lab::{Lab, REGIONS};
use common::partition::Partition;
use common::wait_for;
use failoverd::core::control::{ControlRecord, Phase};
use failoverd::core::rand::nth;
use failoverd::ports::ControlStore;

/// How long a drill's faults may last.
const WINDOW: Duration = Duration::from_secs(20);
/// From the window's end to a settled fleet (failover included): detection,
/// the workflow and the new active's lease, with room for a loaded machine.
const SETTLE: Duration = Duration::from_secs(150);
/// The deadline each request asks for, and how long past it an answer may
/// still arrive (scheduling on a loaded machine).
const DEADLINE: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
enum Fault {
    InvertActive,
    InvertOther(String),
    Kill(String, Duration),
    Stop(String, Duration),
    ModelError(String),
    ModelOutage(String),
    Wall(String, Duration),
}

impl Fault {
    /// Whether the active region stays healthy under this fault.
    fn spares(&self, active: &str) -> bool {
        match self {
            Fault::InvertActive => false,
            Fault::ModelError(r) | Fault::ModelOutage(r) => r != active,
            _ => true,
        }
    }

    fn text(&self) -> String {
        let s = |d: &Duration| d.as_secs();
        match self {
            Fault::InvertActive => "invert active".into(),
            Fault::InvertOther(r) => format!("invert {r}"),
            Fault::Kill(r, d) => format!("kill -9 {r} {}s", s(d)),
            Fault::Stop(r, d) => format!("SIGSTOP {r} {}s", s(d)),
            Fault::ModelError(r) => format!("ModelError {r}"),
            Fault::ModelOutage(r) => format!("outage {r}"),
            Fault::Wall(r, d) => format!("wall {r} {}s", s(d)),
        }
    }
}

/// The faults of drill `seed`, given the active region.
fn draw(seed: u64, active: &str) -> Vec<(Duration, Fault)> {
    let mut k = 0;
    let mut next = || {
        k += 1;
        nth(seed, k)
    };
    let region = |bits: u64| REGIONS[(bits % 3) as usize].to_string();
    let others: Vec<&str> = REGIONS.iter().copied().filter(|r| *r != active).collect();
    let n = 1 + next() % 3;
    let mut faults: Vec<(Duration, Fault)> = Vec::new();
    while (faults.len() as u64) < n {
        let secs = |bits: u64, lo: u64, hi: u64| Duration::from_secs(lo + bits % (hi - lo + 1));
        let f = match next() % 7 {
            0 => Fault::InvertActive,
            1 => Fault::InvertOther(others[(next() % 2) as usize].to_string()),
            2 => Fault::Kill(region(next()), secs(next(), 3, 15)),
            3 => Fault::Stop(region(next()), secs(next(), 2, 10)),
            4 => Fault::ModelError(region(next())),
            5 => Fault::ModelOutage(region(next())),
            _ => Fault::Wall(region(next()), secs(next(), 3, 15)),
        };
        // One fault per process at a time (a stopped daemon is not killed).
        let process = |f: &Fault| match f {
            Fault::Kill(r, _) | Fault::Stop(r, _) | Fault::Wall(r, _) => Some(r.clone()),
            _ => None,
        };
        let clash = faults.iter().any(|(_, g)| {
            std::mem::discriminant(g) == std::mem::discriminant(&f)
                || (process(g).is_some() && process(g) == process(&f))
        });
        if !clash {
            faults.push((secs(next(), 0, 3), f));
        }
    }
    faults
}

/// What the load and the observer see of each daemon.
#[derive(Debug, Clone, Default)]
struct Proc {
    admin: u16,
    router: u16,
    /// Killed or stopped right now.
    impaired: bool,
    /// Bumped on every kill, stop, continue and restart.
    generation: u64,
}

type Procs = Arc<Mutex<BTreeMap<String, Proc>>>;

fn snapshot(lab: &Lab, procs: &Procs, impaired: &BTreeSet<String>) {
    let mut p = procs.lock().unwrap();
    for r in REGIONS {
        let d = lab.daemon(r);
        let e = p.entry(r.to_string()).or_default();
        let imp = impaired.contains(r);
        if (e.admin, e.router, e.impaired) != (d.admin, d.router, imp) {
            e.generation += 1;
        }
        (e.admin, e.router, e.impaired) = (d.admin, d.router, imp);
    }
}

/// One request through a router: its status, or what went wrong.
fn invoke(port: u16, body: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(DEADLINE + GRACE))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST /endpoints/default/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         X-Deadline-Ms: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        DEADLINE.as_millis(),
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {:?}", out.lines().next()))
}

#[derive(Debug, Default)]
struct Load {
    /// Counted requests by outcome ("200", "503", "lost: ...").
    outcomes: BTreeMap<String, u64>,
    /// Requests not counted: their daemon was killed or stopped meanwhile.
    excused: u64,
}

/// Request `GET path` from an admin port with a short timeout.
fn admin_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

fn record(lab: &Lab) -> Option<ControlRecord> {
    Lab::rt().block_on(lab.table().read_record()).ok().flatten()
}

/// Execution names per state machine region, from each configured state
/// machine (regions without a replica share a replica region's).
fn executions(lab: &Lab) -> BTreeMap<String, Vec<String>> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut machines: Vec<String> = REGIONS
        .iter()
        .map(|r| lab.config.region(r).unwrap().state_machine_arn.clone())
        .collect();
    machines.sort();
    machines.dedup();
    for arn in machines {
        let r = failoverd::ports::workflows::arn_region(&arn)
            .unwrap()
            .to_string();
        let out = Lab::rt()
            .block_on(
                lab.clients
                    .sfn(&r)
                    .list_executions()
                    .state_machine_arn(arn)
                    .max_results(1000)
                    .send(),
            )
            .expect("ListExecutions");
        for e in out.executions() {
            by_name
                .entry(e.name().to_string())
                .or_default()
                .push(r.to_string());
        }
    }
    by_name
}

struct Row {
    drill: u64,
    faults: String,
    active: String,
    epochs: String,
    settle_s: f64,
    load: String,
}

#[test]
fn randomized_drills_keep_the_invariants() {
    let drills: u64 = std::env::var("CAMPAIGN_DRILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed0: u64 = std::env::var("CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);

    let mut lab = Lab::start(&[]);
    // Every daemon reaches AWS through its own wall (the model server, its
    // SageMaker runtime, stays reachable: a wall cuts the control plane).
    let walls: BTreeMap<String, Partition> = REGIONS
        .iter()
        .map(|r| (r.to_string(), Partition::start(lab.moto.port)))
        .collect();
    let via = |r: &str| {
        walls[r].endpoints(&[
            "DYNAMODB",
            "S3",
            "ROUTE53",
            "SFN",
            "SAGEMAKER",
            "CLOUDWATCH",
        ])
    };
    for r in REGIONS {
        lab.kill_daemon(r);
        lab.start_daemon_with(r, &via(r));
    }
    lab.wait_ready(Duration::from_secs(90));

    let procs: Procs = Arc::default();
    snapshot(&lab, &procs, &BTreeSet::new());
    let stop = Arc::new(AtomicBool::new(false));
    let load: Arc<Mutex<Load>> = Arc::default();
    let two_active: Arc<Mutex<Vec<String>>> = Arc::default();

    // Load: two callers per router.
    let callers: Vec<_> = (0..2 * REGIONS.len())
        .map(|i| {
            let (stop, procs, load) = (stop.clone(), procs.clone(), load.clone());
            let region = REGIONS[i % REGIONS.len()].to_string();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let before = procs.lock().unwrap()[&region].clone();
                    if before.impaired || before.router == 0 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let out = invoke(before.router, &format!("{{\"caller\":{i},\"n\":{n}}}"));
                    let after = procs.lock().unwrap()[&region].generation;
                    let mut l = load.lock().unwrap();
                    if after != before.generation {
                        l.excused += 1;
                    } else {
                        let key = match out {
                            Ok(status) => status.to_string(),
                            Err(e) => format!("lost ({region}): {e}"),
                        };
                        *l.outcomes.entry(key).or_default() += 1;
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
            })
        })
        .collect();
    // Observer: who answers /active, every 250 ms.
    let observer = {
        let (stop, procs, two_active) = (stop.clone(), procs.clone(), two_active.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now: Vec<(String, Proc)> = procs
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(r, p)| (r.clone(), p.clone()))
                    .collect();
                let acting: Vec<&str> = now
                    .iter()
                    .filter(|(_, p)| !p.impaired && p.admin != 0)
                    .filter(|(_, p)| admin_status(p.admin, "/active") == Some(200))
                    .map(|(r, _)| r.as_str())
                    .collect();
                if acting.len() > 1 {
                    two_active.lock().unwrap().push(acting.join(" and "));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    let mut rows = Vec::new();
    let mut violations: Vec<String> = Vec::new();
    for drill in 0..drills {
        let seed = seed0.wrapping_add(drill);
        let before = wait_for("a settled record", Duration::from_secs(60), || {
            record(&lab).filter(|r| r.phase == Phase::Steady)
        });
        let active = before.active.clone();
        let faults = draw(seed, &active);
        let texts: Vec<String> = faults.iter().map(|(_, f)| f.text()).collect();
        eprintln!("drill {drill} (seed {seed}), {active} active: {texts:?}");
        let load_before = load.lock().unwrap().outcomes.values().sum::<u64>();

        // Apply, then end, every fault on its schedule.
        let t0 = Instant::now();
        let mut impaired = BTreeSet::new();
        let mut events: Vec<(Duration, bool, Fault)> = Vec::new();
        for (at, f) in &faults {
            events.push((*at, true, f.clone()));
            let end = match f {
                Fault::Kill(_, d) | Fault::Stop(_, d) | Fault::Wall(_, d) => *at + *d,
                _ => WINDOW,
            };
            events.push((end.min(WINDOW), false, f.clone()));
        }
        events.sort_by_key(|(at, start, _)| (*at, !*start));
        for (at, start, f) in events {
            if let Some(wait) = at.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            match (&f, start) {
                (Fault::InvertActive, true) => lab.invert(&active, true),
                (Fault::InvertActive, false) => {} // until the fleet has failed over
                (Fault::InvertOther(r), s) => lab.invert(r, s),
                (Fault::Kill(r, _), true) => {
                    impaired.insert(r.clone());
                    snapshot(&lab, &procs, &impaired);
                    lab.kill_daemon(r);
                }
                (Fault::Kill(r, _), false) => {
                    lab.start_daemon_with(r, &via(r));
                    impaired.remove(r);
                }
                (Fault::Stop(r, _), true) => {
                    impaired.insert(r.clone());
                    snapshot(&lab, &procs, &impaired);
                    lab.signal(r, libc::SIGSTOP);
                }
                (Fault::Stop(r, _), false) => {
                    lab.signal(r, libc::SIGCONT);
                    impaired.remove(r);
                }
                (Fault::ModelError(r), true) => lab.behave(serde_json::json!({
                    "region": r, "endpoint": "*",
                    "error_rate": 1.0, "error": "ModelError", "model_error_status": 500
                })),
                (Fault::ModelOutage(r), true) => lab.behave(serde_json::json!({
                    "region": r, "endpoint": "*", "outage": true
                })),
                (Fault::ModelError(_) | Fault::ModelOutage(_), false) => {
                    let (status, body) = common::http(
                        "POST",
                        &format!("127.0.0.1:{}", lab.model_port),
                        "/_lab/reset",
                        "",
                    )
                    .expect("the model server answers");
                    assert_eq!(status, 200, "{body}");
                }
                (Fault::Wall(r, _), true) => walls[r].cut(),
                (Fault::Wall(r, _), false) => walls[r].heal(),
            }
            snapshot(&lab, &procs, &impaired);
        }

        // Settle: a steady record, every daemon ready, and the record's
        // active the only one acting (a new one once it has waited out the
        // old one's lease).
        let healed = Instant::now();
        let must_move = faults.iter().any(|(_, f)| *f == Fault::InvertActive);
        let settled = {
            let deadline = healed + SETTLE;
            loop {
                let ok = record(&lab)
                    .filter(|r| r.phase == Phase::Steady && (!must_move || r.active != active));
                let acting: Vec<&str> = REGIONS
                    .iter()
                    .copied()
                    .filter(|r| admin_status(lab.daemon(r).admin, "/active") == Some(200))
                    .collect();
                let ready = REGIONS
                    .iter()
                    .all(|r| admin_status(lab.daemon(r).admin, "/readyz") == Some(200));
                if let Some(rec) = ok.filter(|rec| ready && acting == [rec.active.as_str()]) {
                    break Some(rec);
                }
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        };
        if must_move {
            lab.invert(&active, false);
        }
        let settle_s = healed.elapsed().as_secs_f64();
        let after = match settled {
            Some(rec) => rec,
            None => {
                violations.push(format!(
                    "drill {drill} (seed {seed}, {texts:?}): not settled {SETTLE:?} after the faults ended{}; record {:?}",
                    if must_move { " with the active inverted" } else { "" },
                    record(&lab).map(|r| (r.active, r.phase, r.step, r.epoch))
                ));
                break;
            }
        };
        if faults.iter().all(|(_, f)| f.spares(&active)) && after.epoch != before.epoch {
            violations.push(format!(
                "drill {drill} (seed {seed}, {texts:?}): {active} stayed healthy, yet the epoch went {} -> {} ({})",
                before.epoch, after.epoch, after.active
            ));
        }
        let l = load.lock().unwrap();
        let sent = l.outcomes.values().sum::<u64>() - load_before;
        rows.push(Row {
            drill,
            faults: texts.join(", "),
            active: format!("{active} -> {}", after.active),
            epochs: format!("{} -> {}", before.epoch, after.epoch),
            settle_s,
            load: format!("{sent} counted"),
        });
    }

    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    observer.join().unwrap();

    let load = load.lock().unwrap();
    for (k, n) in &load.outcomes {
        if k.starts_with("lost") {
            violations.push(format!("{n} request(s) {k}"));
        }
    }
    for both in two_active.lock().unwrap().iter() {
        violations.push(format!("two daemons acting as active at once: {both}"));
    }
    for (name, regions) in executions(&lab) {
        if regions.len() > 1 {
            violations.push(format!("execution {name} ran in {regions:?}"));
        }
    }

    println!("\n| drill | faults | active | epoch | settled after (s) | requests |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} | {} |",
            r.drill, r.faults, r.active, r.epochs, r.settle_s, r.load
        );
    }
    println!(
        "requests by outcome: {:?}; not counted (their daemon killed or stopped meanwhile): {}",
        load.outcomes, load.excused
    );
    assert!(
        violations.is_empty(),
        "{} violation(s):\n{}",
        violations.len(),
        violations.join("\n")
    );
}
