#![allow(clippy::disallowed_methods)]
//! Model check of two daemons per region (issue 24; docs/model-check.md,
//! "Two daemons in a region").
//!
//! A focused explicit-state model beside `tests/model_check.rs`, which
//! models one daemon per region (a region's daemons count as one vote, so
//! that model's quorum arithmetic is unchanged). This one looks inside the
//! regions, over time: us-east-1 (active) and us-west-2 (the failover
//! target) run two daemons each, eu-west-1 one (it only votes). A breadth-
//! first search over every interleaving of:
//!
//! - each daemon's duty keeper: a read of the record and of its region's
//!   duty item (`DUTY` / `<region>`), taken at one tick and delivered at that
//!   tick or later, decided by the real `core::duty::DutyClock`; the write it
//!   calls for (take, renew, release), sent at the delivery's tick,
//!   committed later as a conditional write on the item's version, its
//!   answer delivered later still, or lost (an error: the daemon learns
//!   nothing);
//! - each daemon's role under the record's lease (docs/lease.md): a daemon
//!   is active while its last read naming its region was taken less than a
//!   lease ago, and a region named by a switch waits out a lease from its
//!   first read of the switch;
//! - task tokens (prepare to us-west-2, drain to us-east-1): a claim is the
//!   real `core::tokens::decide` and one conditional write on the token's
//!   status and claimant (`<region>/<instance>.<nonce>`, per process); the
//!   worker does the step, calls back (Step Functions accepts the first
//!   success of a waiting task only), marks the token done; it renews its
//!   claim when it likes, or never (a slow or cut-off worker);
//! - the workflow: the failover is claimed when a us-west-2 daemon's real
//!   `core::quorum::tally`, over one vote per *daemon*, sees us-east-1 down;
//!   it switches after the prepare token's success, is steady after the
//!   drain's;
//! - faults: a daemon crashes (everything in flight lost, no release) or
//!   stops gracefully (stops holding, releases the item if it holds it),
//!   and restarts as a new process (a new nonce, an empty duty clock);
//! - time: a tick advances every clock at once (clock rates do not drift;
//!   the lease argument needs only that), up to the run's bound.
//!
//! Invariants, on every state reached:
//!
//! 1. **One owner, one active region**: at most one daemon *acts* at any
//!    tick over both regions, where acting is what `/active` answers 200
//!    on: up, active by the record's lease, holding the duties
//!    (`DutyClock::holds`).
//! 2. **Each token succeeds once**: at most one accepted success per token,
//!    and a completed failover has exactly one per token.
//! 3. **A token's step is redone only after a claim lapsed**: the step runs
//!    at most once plus the number of claims taken over after a lapse (a
//!    crashed or silent claimant); never because two live claims raced.
//! 4. **A region counts once**: the real tally's fresh observers are
//!    distinct regions, and its verdicts equal those of a reference tally
//!    over each region's freshest vote.
//!
//! And progress: from every reached state in which both regions keep a
//! daemon up, a fault-free schedule completes the failover (steady on
//! us-west-2, both tokens done, one success each) and one us-west-2 daemon
//! then acts.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use failoverd::core::duty::{DutyClock, DutyItem, DutyStep};
use failoverd::core::health::Verdict;
use failoverd::core::mono::Mono;
use failoverd::core::quorum::{Consensus, Vote, tally};
use failoverd::core::tokens::{TokenAction, TokenStatus, TokenView, decide};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
/// Daemons: 0 and 1 in us-east-1, 2 and 3 in us-west-2, 4 in eu-west-1.
const DAEMONS: usize = 5;
/// Daemons with a duty keeper and a token desk (eu-west-1's only votes).
const WORKERS: usize = 4;
const TICK_MS: u64 = 1_000;
/// The lease (record and duty item), in ticks.
const LEASE: u8 = 2;
/// A token claim's lease, in ticks.
const CLAIM: u8 = 2;
/// A vote is fresh this long (ticks) after its daemon last wrote it.
const FRESH: u8 = 3;
const NONE: u8 = u8::MAX;

fn region_of(d: usize) -> usize {
    [0, 0, 1, 1, 2][d]
}

fn owner(d: usize, nonce: u8) -> String {
    format!("{}/d{d}.{nonce}", REGIONS[region_of(d)])
}

fn mono(t: u8) -> Mono {
    Mono(t as u64 * TICK_MS)
}

/// The record's phases: 0 steady on us-east-1 (epoch 1); 1 failing over to
/// us-west-2 (epoch 2, prepare token out); 2 switched to us-west-2 (drain
/// token out); 3 steady on us-west-2.
fn named_region(phase: u8) -> usize {
    if phase < 2 { 0 } else { 1 }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Item {
    /// Daemon index * 16 + nonce; NONE: released.
    holder: u8,
    version: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Snap {
    phase: u8,
    item: Option<Item>,
    at: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct PendingWrite {
    expected: Option<u8>,
    release: bool,
    sent: u8,
    /// None: not committed yet; Some(true): written; Some(false): conflict.
    result: Option<bool>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Daemon {
    up: bool,
    nonce: u8,
    clock: DutyClock,
    /// `shared.duty().version.is_some()` in the keeper: it wrote the item.
    ver_known: bool,
    read: Option<Snap>,
    write: Option<PendingWrite>,
    /// When the last read naming this region was taken (the record lease).
    rec_sent: Option<u8>,
    /// For a region named by a switch: its first read of the switch came
    /// back then (the wait-out starts).
    named_since: Option<u8>,
    /// The token it claimed and works on.
    work: Option<(u8, u8)>,
    /// Its vote was last written then (the tick it went down, or now).
    voted: u8,
    /// The tick of its last duty read: one a tick at most (the keeper
    /// renews a few times a lease, not without end).
    read_at: u8,
}

impl Hash for Daemon {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.up.hash(h);
        self.nonce.hash(h);
        // DutyClock keeps its last-seen version private: its Debug form
        // shows every field.
        format!("{:?}", self.clock).hash(h);
        self.ver_known.hash(h);
        self.read.hash(h);
        self.write.hash(h);
        self.rec_sent.hash(h);
        self.named_since.hash(h);
        self.work.hash(h);
        self.voted.hash(h);
        self.read_at.hash(h);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Token {
    issued: bool,
    status: u8, // 0 pending, 1 claimed, 2 done
    by: u8,
    until: u8,
    sf_waiting: bool,
    accepted: u8,
    acted: u8,
    reclaims: u8,
}

const TOKEN0: Token = Token {
    issued: false,
    status: 0,
    by: NONE,
    until: 0,
    sf_waiting: false,
    accepted: 0,
    acted: 0,
    reclaims: 0,
};

/// The token's target region: prepare to us-west-2, drain to us-east-1.
fn token_region(k: usize) -> usize {
    [1, 0][k]
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct State {
    t: u8,
    phase: u8,
    duty: [Option<Item>; 2],
    tokens: [Token; 2],
    d: [Daemon; DAEMONS],
    faults: u8,
    restarts: u8,
}

#[derive(Clone, Copy)]
struct Bounds {
    ticks: u8,
    faults: u8,
    restarts: u8,
    /// Allow graceful stops (a release) besides crashes.
    stops: bool,
    /// Model the duty keepers (and invariant 1).
    duty: bool,
    /// Model the task tokens (and invariants 2 and 3); without them the
    /// switch happens at any moment after the claim.
    tokens: bool,
    /// A region named by a switch waits out a lease first (docs/lease.md);
    /// `false` only to show the search finds what that rule prevents.
    wait_out: bool,
}

impl State {
    fn initial() -> State {
        let d = Daemon {
            up: true,
            nonce: 0,
            clock: DutyClock::default(),
            ver_known: false,
            read: None,
            write: None,
            rec_sent: None,
            named_since: None,
            work: None,
            voted: 0,
            read_at: NONE,
        };
        State {
            t: 0,
            phase: 0,
            duty: [None, None],
            tokens: [TOKEN0; 2],
            d: [d; DAEMONS],
            faults: 0,
            restarts: 0,
        }
    }

    fn pid(&self, d: usize) -> u8 {
        (d as u8) * 16 + self.d[d].nonce
    }

    fn vote_at(&self, d: usize) -> u8 {
        if self.d[d].up {
            self.t
        } else {
            self.d[d].voted
        }
    }

    /// What `/active` answers 200 on.
    fn acting(&self, d: usize, wait_out: bool) -> bool {
        let x = &self.d[d];
        let t = self.t;
        let leased = x.rec_sent.is_some_and(|s| t - s < LEASE);
        let waited =
            region_of(d) == 0 || !wait_out || x.named_since.is_some_and(|n| t >= n + LEASE);
        x.up && leased && waited && x.clock.holds(mono(t), LEASE as u64 * TICK_MS)
    }

    /// Every daemon's vote: us-east-1's first daemon and every other
    /// region's see us-east-1 down, its second sees it up.
    fn votes(&self) -> Vec<Vote> {
        (0..DAEMONS)
            .map(|d| {
                let a_down = d != 1;
                let view: BTreeMap<String, Verdict> = REGIONS
                    .iter()
                    .map(|r| {
                        let v = if *r == "us-east-1" && a_down {
                            Verdict::Down
                        } else {
                            Verdict::Up
                        };
                        (r.to_string(), v)
                    })
                    .collect();
                Vote {
                    observer: REGIONS[region_of(d)].into(),
                    instance: Some(format!("d{d}")),
                    at: self.vote_at(d) as u64 * TICK_MS,
                    seen_epoch: 1,
                    view,
                    traffic: None,
                    fleet: None,
                    readiness: None,
                    lease_ms: None,
                }
            })
            .collect()
    }
}

fn regions() -> Vec<String> {
    REGIONS.iter().map(|r| r.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Transitions
// ---------------------------------------------------------------------------

/// A daemon's read is delivered at the current tick: the duty keeper's step.
fn deliver_read(s: &mut State, d: usize, snap: Snap) {
    let t = s.t;
    let region = region_of(d);
    let named = named_region(snap.phase) == region;
    let pid = s.pid(d);
    let me = owner(d, s.d[d].nonce);
    let x = &mut s.d[d];
    x.read = None;
    // The record's lease and the wait-out.
    if named {
        x.rec_sent = Some(x.rec_sent.map_or(snap.at, |r| r.max(snap.at)));
        if region == 1 && x.named_since.is_none() {
            x.named_since = Some(t);
        }
    } else {
        x.rec_sent = None;
    }
    if !named && !x.ver_known {
        return;
    }
    if x.write.is_some() {
        // One write at a time (the keeper awaits it before its next read).
        return;
    }
    let item = snap.item.map(|i| DutyItem {
        holder: if i.holder == NONE {
            String::new()
        } else {
            owner((i.holder / 16) as usize, i.holder % 16)
        },
        instance: String::new(),
        version: i.version as u64,
    });
    let _ = pid;
    let step = x
        .clock
        .step(&me, named, item.as_ref(), mono(t), LEASE as u64 * TICK_MS);
    let (expected, release) = match step {
        DutyStep::Take { expected } => (expected.map(|v| v as u8), false),
        DutyStep::Release { expected } => (Some(expected as u8), true),
        DutyStep::Wait { .. } | DutyStep::Nothing => {
            if !named {
                x.ver_known = false;
            }
            return;
        }
    };
    x.write = Some(PendingWrite {
        expected,
        release,
        sent: t,
        result: None,
    });
}

fn commit_write(s: &mut State, d: usize) {
    let region = region_of(d);
    let pid = s.pid(d);
    let w = s.d[d].write.unwrap();
    let cur = s.duty[region].map(|i| i.version);
    let ok = cur == w.expected;
    if ok {
        s.duty[region] = Some(Item {
            holder: if w.release { NONE } else { pid },
            version: w.expected.map_or(1, |v| v + 1),
        });
    }
    s.d[d].write = Some(PendingWrite {
        result: Some(ok),
        ..w
    });
}

fn deliver_write(s: &mut State, d: usize) {
    let x = &mut s.d[d];
    let w = x.write.take().unwrap();
    match (w.result, w.release) {
        (Some(true), true) => x.ver_known = false,
        (Some(true), false) => {
            x.clock.written(mono(w.sent));
            x.ver_known = true;
        }
        (Some(false), _) => {
            x.clock.lost();
            x.ver_known = false;
        }
        (None, _) => unreachable!(),
    }
}

fn token_view(s: &State, k: usize) -> TokenView {
    let tk = &s.tokens[k];
    TokenView {
        id: format!("failover-2#{}", ["prepare", "drain"][k]),
        target_region: REGIONS[token_region(k)].into(),
        step: ["prepare", "drain"][k].into(),
        status: match tk.status {
            0 => TokenStatus::Pending,
            1 => TokenStatus::Claimed,
            _ => TokenStatus::Done,
        },
        claimed_by: (tk.by != NONE).then(|| owner((tk.by / 16) as usize, tk.by % 16)),
        claim_until: (tk.by != NONE).then_some(tk.until as u64 * TICK_MS),
        created_at: 0,
        timeout_ms: u64::MAX / 4,
    }
}

/// Every successor of `s` (fault steps when `faults` is set).
fn successors(s: &State, b: &Bounds, faults: bool, out: &mut Vec<(String, State)>) {
    let t = s.t;
    // Time.
    if t < b.ticks || !faults {
        let mut n = s.clone();
        n.t += 1;
        out.push(("tick".into(), n));
    }
    // The workflow.
    match s.phase {
        0 => {
            let votes = s.votes();
            let fire = (2..4).any(|d| {
                s.d[d].up
                    && tally(
                        "us-west-2",
                        &regions(),
                        &votes,
                        t as u64 * TICK_MS,
                        FRESH as u64 * TICK_MS,
                    )
                    .is("us-east-1", Consensus::Down)
            });
            if fire {
                let mut n = s.clone();
                n.phase = 1;
                n.tokens[0].issued = b.tokens;
                n.tokens[0].sf_waiting = b.tokens;
                out.push(("failover claimed (quorum: us-east-1 down)".into(), n));
            }
        }
        1 if !b.tokens => {
            let mut n = s.clone();
            n.phase = 2;
            out.push(("SwitchActive (tokens not modelled)".into(), n));
        }
        1 if s.tokens[0].accepted == 1 => {
            let mut n = s.clone();
            n.phase = 2;
            n.tokens[1].issued = true;
            n.tokens[1].sf_waiting = true;
            out.push(("SwitchActive".into(), n));
        }
        2 if s.tokens[1].accepted == 1 => {
            let mut n = s.clone();
            n.phase = 3;
            out.push(("MarkSteady".into(), n));
        }
        _ => {}
    }
    for d in 0..DAEMONS {
        let x = &s.d[d];
        if !x.up {
            if faults && d < WORKERS && s.restarts < b.restarts {
                let mut n = s.clone();
                let y = &mut n.d[d];
                *y = Daemon {
                    up: true,
                    nonce: y.nonce + 1,
                    clock: DutyClock::default(),
                    ver_known: false,
                    read: None,
                    write: None,
                    rec_sent: None,
                    named_since: None,
                    work: None,
                    voted: t,
                    read_at: NONE,
                };
                n.restarts += 1;
                out.push((format!("d{d} restarts"), n));
            }
            continue;
        }
        if d >= WORKERS {
            continue;
        }
        let region = region_of(d);
        // Duty keeper: read (delivered now, or later), commit, answer.
        if b.duty && x.read.is_none() && x.write.is_none() && x.read_at != t {
            let snap = Snap {
                phase: s.phase,
                item: s.duty[region],
                at: t,
            };
            let mut n = s.clone();
            deliver_read(&mut n, d, snap);
            if n != *s {
                // (A read that changes nothing is no step: a standby's
                // daemons read nothing.)
                n.d[d].read_at = t;
                if let Some(w) = n.d[d].write {
                    // The write it calls for is decided and answered at
                    // once, or later (a slow write: sent now, committed
                    // at a later tick).
                    let mut fast = n.clone();
                    commit_write(&mut fast, d);
                    deliver_write(&mut fast, d);
                    out.push((format!("d{d} reads, writes {w:?}, answered"), fast));
                    if faults && s.faults < b.faults {
                        // A slow write spends the fault budget: it is the
                        // lease's race (sent at one tick, committed later).
                        n.faults += 1;
                        out.push((format!("d{d} reads, sends {w:?} (slow)"), n));
                    }
                } else {
                    out.push((format!("d{d} reads and decides"), n));
                }
            }
        }
        if let Some(w) = x.write.filter(|_| b.duty) {
            let mut n = s.clone();
            commit_write(&mut n, d);
            let mut lost = n.clone();
            deliver_write(&mut n, d);
            out.push((
                format!("d{d}'s slow duty write {w:?} is decided, answered"),
                n,
            ));
            if faults && s.faults < b.faults {
                // Decided, its answer lost: the daemon learns nothing.
                lost.faults += 1;
                lost.d[d].write = None;
                out.push((
                    format!("d{d}'s slow duty write {w:?} is decided, answer lost"),
                    lost,
                ));
            }
        }
        // Token desk.
        let me = owner(d, x.nonce);
        if b.tokens && x.work.is_none() {
            for k in 0..2 {
                if !s.tokens[k].issued || token_region(k) != region {
                    continue;
                }
                let view = token_view(s, k);
                if let Some(TokenAction::Claim { .. }) =
                    decide(&view, REGIONS[region], &me, t as u64 * TICK_MS)
                {
                    let mut n = s.clone();
                    let tk = &mut n.tokens[k];
                    if tk.status == 1 {
                        tk.reclaims += 1;
                    }
                    tk.status = 1;
                    tk.by = s.pid(d);
                    tk.until = t + CLAIM;
                    n.d[d].work = Some((k as u8, 0));
                    out.push((format!("d{d} claims token {k}"), n));
                }
            }
        }
        if let Some((k, _)) = x.work {
            let k = k as usize;
            let mut n = s.clone();
            // The step, the callback (Step Functions accepts the first
            // success of a waiting task), the token marked done.
            n.tokens[k].acted += 1;
            if n.tokens[k].sf_waiting {
                n.tokens[k].sf_waiting = false;
                n.tokens[k].accepted += 1;
            }
            n.tokens[k].status = 2;
            n.d[d].work = None;
            out.push((
                format!("d{d} does token {k}'s step, calls back, marks it done"),
                n,
            ));
            let pid = s.pid(d);
            // Renewals at the last moment (earlier ones reach no other state).
            if s.tokens[k].status == 1 && s.tokens[k].by == pid && s.tokens[k].until == t {
                let mut n = s.clone();
                n.tokens[k].until = t + CLAIM;
                out.push((format!("d{d} renews its claim on token {k}"), n));
            }
        }
        // Faults.
        if faults && s.faults < b.faults {
            let mut n = s.clone();
            n.faults += 1;
            let y = &mut n.d[d];
            y.up = false;
            y.voted = t;
            y.read = None;
            y.write = None;
            y.work = None;
            out.push((format!("d{d} crashes"), n.clone()));
            if b.stops {
                let mut n = s.clone();
                n.faults += 1;
                let pid = n.pid(d);
                let y = &mut n.d[d];
                y.clock.lost();
                y.up = false;
                y.voted = t;
                y.read = None;
                y.write = None;
                y.work = None;
                if let Some(i) = n.duty[region].filter(|i| i.holder == pid) {
                    n.duty[region] = Some(Item {
                        holder: NONE,
                        version: i.version + 1,
                    });
                }
                out.push((format!("d{d} stops (SIGTERM: releases the duties)"), n));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Invariants and progress
// ---------------------------------------------------------------------------

fn check(s: &State, b: &Bounds) -> Result<(), String> {
    let acting: Vec<usize> = (0..WORKERS).filter(|d| s.acting(*d, b.wait_out)).collect();
    if acting.len() > 1 {
        return Err(format!("inv. 1: daemons {acting:?} act at tick {}", s.t));
    }
    for (k, tk) in s.tokens.iter().enumerate() {
        if tk.accepted > 1 {
            return Err(format!("inv. 2: token {k} succeeded {} times", tk.accepted));
        }
        if tk.acted > 1 + tk.reclaims {
            return Err(format!(
                "inv. 3: token {k}'s step ran {} times with {} lapsed claims taken over",
                tk.acted, tk.reclaims
            ));
        }
    }
    if s.phase == 3 && s.tokens.iter().any(|tk| tk.accepted != 1) {
        return Err("inv. 2: steady on us-west-2 without one success per token".into());
    }
    // A region counts once.
    let votes = s.votes();
    let now = s.t as u64 * TICK_MS;
    let fresh_ms = FRESH as u64 * TICK_MS;
    let got = tally("us-west-2", &regions(), &votes, now, fresh_ms);
    let mut seen = got.fresh_observers.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != got.fresh_observers.len() || seen.len() > REGIONS.len() {
        return Err(format!("inv. 4: observers {:?}", got.fresh_observers));
    }
    let mut best: BTreeMap<&str, &Vote> = BTreeMap::new();
    for v in &votes {
        if best.get(v.observer.as_str()).is_none_or(|o| o.at < v.at) {
            best.insert(&v.observer, v);
        }
    }
    let fresh: Vec<&&Vote> = best.values().filter(|v| now - v.at <= fresh_ms).collect();
    if fresh.len() >= 2 && fresh.iter().any(|v| v.observer == "us-west-2") {
        for r in REGIONS {
            let down = fresh
                .iter()
                .filter(|v| v.view.get(r) == Some(&Verdict::Down))
                .count();
            let up = fresh.len() - down;
            let want = if down * 2 > fresh.len() {
                Consensus::Down
            } else if up * 2 > fresh.len() {
                Consensus::Up
            } else {
                Consensus::Split
            };
            if !got.is(r, want) {
                return Err(format!(
                    "inv. 4: tally says {:?} for {r}, one vote per region says {want:?}",
                    got.regions.get(r)
                ));
            }
        }
    }
    Ok(())
}

/// The workflow's next step, if it can take one (the same rules as in
/// [`successors`]).
fn fair_workflow(s: &mut State, b: &Bounds) {
    if s.phase == 0 {
        // Only the claim: computing every successor is the slow part.
        let votes = s.votes();
        let t = s.t as u64 * TICK_MS;
        if (2..4).any(|d| s.d[d].up)
            && tally("us-west-2", &regions(), &votes, t, FRESH as u64 * TICK_MS)
                .is("us-east-1", Consensus::Down)
        {
            s.phase = 1;
            s.tokens[0].issued = b.tokens;
            s.tokens[0].sf_waiting = b.tokens;
        }
        return;
    }
    if !b.tokens {
        s.phase = 2;
        return;
    }
    if s.phase == 1 && s.tokens[0].accepted == 1 {
        s.phase = 2;
        s.tokens[1].issued = true;
        s.tokens[1].sf_waiting = true;
    } else if s.phase == 2 && s.tokens[1].accepted == 1 {
        s.phase = 3;
    }
}

/// A daemon's token desk, one step: claim, or work on what it claimed.
fn fair_tokens(s: &mut State, d: usize) {
    let region = region_of(d);
    let t = s.t;
    match s.d[d].work {
        None => {
            let me = owner(d, s.d[d].nonce);
            for k in 0..2 {
                if !s.tokens[k].issued || token_region(k) != region {
                    continue;
                }
                let view = token_view(s, k);
                if let Some(TokenAction::Claim { .. }) =
                    decide(&view, REGIONS[region], &me, t as u64 * TICK_MS)
                {
                    let pid = s.pid(d);
                    let tk = &mut s.tokens[k];
                    if tk.status == 1 {
                        tk.reclaims += 1;
                    }
                    tk.status = 1;
                    tk.by = pid;
                    tk.until = t + CLAIM;
                    s.d[d].work = Some((k as u8, 0));
                    return;
                }
            }
        }
        Some((k, _)) => {
            let tk = &mut s.tokens[k as usize];
            tk.acted += 1;
            if tk.sf_waiting {
                tk.sf_waiting = false;
                tk.accepted += 1;
            }
            tk.status = 2;
            s.d[d].work = None;
        }
    }
}

/// From `s`, with no faults and every step taken as soon as it can be,
/// does the failover complete and one us-west-2 daemon act?
fn completes(s: &State, b: &Bounds) -> Result<(), String> {
    let mut s = s.clone();
    let done = |s: &State| {
        (if b.tokens {
            s.phase == 3 && s.tokens.iter().all(|tk| tk.status == 2 && tk.accepted == 1)
        } else {
            s.phase == 2
        }) && (!b.duty || (2..4).any(|d| s.acting(d, b.wait_out)))
    };
    for _ in 0..40 {
        if done(&s) {
            return Ok(());
        }
        // Each daemon's duty keeper, once a tick: what it has in flight
        // arrives, then a read and its write, answered.
        for d in 0..WORKERS {
            if !s.d[d].up || !b.duty {
                continue;
            }
            if let Some(snap) = s.d[d].read {
                deliver_read(&mut s, d, snap);
            }
            for _ in 0..2 {
                if let Some(w) = s.d[d].write {
                    if w.result.is_none() {
                        commit_write(&mut s, d);
                    }
                    deliver_write(&mut s, d);
                }
                if s.d[d].read_at != s.t {
                    s.d[d].read_at = s.t;
                    let snap = Snap {
                        phase: s.phase,
                        item: s.duty[region_of(d)],
                        at: s.t,
                    };
                    deliver_read(&mut s, d, snap);
                }
            }
        }
        // Then tokens and the workflow, until nothing moves; workers renew.
        for _ in 0..8 {
            let before = s.clone();
            fair_workflow(&mut s, b);
            for d in 0..WORKERS {
                if s.d[d].up && b.tokens {
                    fair_tokens(&mut s, d);
                }
            }
            if s == before {
                break;
            }
        }
        for d in 0..WORKERS {
            if let Some((k, _)) = s.d[d].work {
                let k = k as usize;
                if s.d[d].up && s.tokens[k].status == 1 && s.tokens[k].by == s.pid(d) {
                    s.tokens[k].until = s.t + CLAIM;
                }
            }
        }
        if done(&s) {
            return Ok(());
        }
        s.t += 1;
    }
    Err(format!(
        "no progress in 40 ticks: phase {}, tokens {:?}",
        s.phase, s.tokens
    ))
}

struct Outcome {
    states: usize,
    depth: usize,
    violation: Option<(String, Vec<String>)>,
}

fn explore(b: Bounds) -> Outcome {
    let init = State::initial();
    let mut parent: Vec<(usize, String)> = vec![(usize::MAX, "start".into())];
    let mut states: Vec<State> = vec![init.clone()];
    let mut seen: HashSet<State> = HashSet::from([init]);
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    let mut depth = 0;
    let trace = |parent: &Vec<(usize, String)>, mut i: usize| {
        let mut out = Vec::new();
        while i != usize::MAX {
            out.push(parent[i].1.clone());
            i = parent[i].0;
        }
        out.reverse();
        out
    };
    let mut succ = Vec::new();
    let progress = std::env::var_os("MODEL_CHECK_PROGRESS").is_some();
    let mut next_report = 100_000;
    while let Some((i, dep)) = queue.pop_front() {
        depth = depth.max(dep);
        let s = states[i].clone();
        let problem = check(&s, &b).err().or_else(|| {
            // Progress from every state at the time bound (every state
            // reached is a prefix of one there, or of one cut short by
            // the fault budget, which the bound also meets).
            let both_up = (0..2).any(|d| s.d[d].up) && (2..4).any(|d| s.d[d].up);
            if both_up && s.t == b.ticks {
                completes(&s, &b).err()
            } else {
                None
            }
        });
        if let Some(p) = problem {
            return Outcome {
                states: states.len(),
                depth,
                violation: Some((p, trace(&parent, i))),
            };
        }
        if progress && states.len() >= next_report {
            eprintln!(
                "  {} states, depth {dep}, queue {}",
                states.len(),
                queue.len()
            );
            next_report += 100_000;
        }
        succ.clear();
        successors(&s, &b, true, &mut succ);
        for (what, n) in succ.drain(..) {
            if seen.insert(n.clone()) {
                parent.push((i, format!("t={} {what}", s.t)));
                states.push(n);
                queue.push_back((states.len() - 1, dep + 1));
            }
        }
    }
    Outcome {
        states: states.len(),
        depth,
        violation: None,
    }
}

fn run(name: &str, b: Bounds) -> Outcome {
    let started = std::time::Instant::now();
    let o = explore(b);
    let result = match &o.violation {
        None => "safe".to_string(),
        Some((p, trace)) => format!("VIOLATION {p}\n  {}", trace.join("\n  ")),
    };
    let line = format!(
        "model check {name}: {} states explored, depth {}, {result} ({:.1} s)",
        o.states,
        o.depth,
        started.elapsed().as_secs_f64()
    );
    println!("{line}");
    eprintln!("{line}");
    o
}

/// `MODEL_TICKS=n` (with `MODEL_FAULTS`, `MODEL_RESTARTS`,
/// `MODEL_NO_DUTY`, `MODEL_NO_TOKENS`) runs other bounds by hand.
#[test]
fn measure() {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    let Some(ticks) = var("MODEL_TICKS") else {
        return;
    };
    run(
        "by hand",
        Bounds {
            ticks,
            faults: var("MODEL_FAULTS").unwrap_or(1),
            restarts: var("MODEL_RESTARTS").unwrap_or(1),
            stops: true,
            duty: std::env::var_os("MODEL_NO_DUTY").is_none(),
            tokens: std::env::var_os("MODEL_NO_TOKENS").is_none(),
            wait_out: true,
        },
    );
}

/// The duty item across both regions' two daemons, the record switched at
/// any moment: one fault (a crash, a graceful stop, a slow write or a lost
/// answer), three ticks of a two-tick lease (room for a takeover).
#[test]
fn duty_two_daemons_per_region_is_one_owner() {
    let o = run(
        "duty, two daemons per region, 1 fault, 3 ticks",
        Bounds {
            ticks: 3,
            faults: 1,
            restarts: 0,
            stops: true,
            duty: true,
            tokens: false,
            wait_out: true,
        },
    );
    assert!(o.violation.is_none());
}

/// The tokens, claimed by either daemon of the region they are for: one
/// crash or stop and one restart, six ticks (a claim lapses in three).
#[test]
fn tokens_two_daemons_per_region_succeed_once() {
    let o = run(
        "tokens, two daemons per region, 1 crash or stop, 1 restart, 6 ticks",
        Bounds {
            ticks: 6,
            faults: 1,
            restarts: 1,
            stops: true,
            duty: false,
            tokens: true,
            wait_out: true,
        },
    );
    assert!(o.violation.is_none());
}

/// The search can fail: without the new region's wait-out, one of its
/// daemons takes the duties while the old region's holder still holds
/// them under its lease (invariant 1).
#[test]
fn without_the_wait_out_two_regions_act_at_once() {
    let o = run(
        "duty without the wait-out (must fail)",
        Bounds {
            ticks: 3,
            faults: 0,
            restarts: 0,
            stops: false,
            duty: true,
            tokens: false,
            wait_out: false,
        },
    );
    let (p, _) = o.violation.expect("a violation");
    assert!(p.starts_with("inv. 1"), "{p}");
}
