//! One seed, one scenario: the configuration variant, the host clocks'
//! skews, and a timed list of faults and operator commands, all drawn from
//! the seed. Every fault is switched off again by its own end event or at
//! the latest at `fault_end_ms`, when everything heals and the fleet is
//! left alone so the liveness checks can run.

use std::collections::BTreeSet;
use std::fmt;

use failoverd::ports::endpoints::EndpointStatus;

use super::sagemaker::Behaviour;
use super::store::Consistency;
use super::world::{Link, Rng, Serving, Svc};

/// The three serving regions of the shipped configuration
/// (`regions/base.toml`), in priority order.
pub const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "us-east-2"];

/// An operator command (`failoverd failover|failback|pause|resume --yes`).
#[derive(Debug, Clone, PartialEq)]
pub enum OpCmd {
    Failover {
        to: String,
        force: bool,
        ungraceful: bool,
    },
    Failback {
        force: bool,
    },
    Pause,
    Resume,
    /// `failoverd approve --epoch E --proposal ID --to T` naming the open
    /// proposal as the operator last read it; with `stale`, naming one
    /// read earlier (or none that exists): it must be refused.
    Approve {
        stale: bool,
    },
    /// `failoverd reject`, named as for `Approve`.
    Reject {
        stale: bool,
    },
}

/// A setting one region's file changes that the fleet must share
/// (`config::fleet`), as an operator editing one host's file would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// The standbys' priorities swapped: each may name another target.
    Priorities,
    /// A lease of half the shipped one.
    Lease,
    /// `policy.approval` flipped (`none` <-> `manual`).
    Approval,
}

/// Something that happens at a moment of the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Start a daemon (the first start, staggered across a poll).
    Start(String),
    /// kill -9: every task of the process stops; nothing it sent later arrives.
    Crash(String),
    Restart(String),
    /// A region's daemon's link to a service.
    Link {
        region: String,
        svc: Svc,
        link: Link,
    },
    /// A replica cut off from the other replicas.
    Isolate {
        replica: String,
        on: bool,
    },
    /// A region's Step Functions API down (executions keep running).
    SfnApiDown {
        region: String,
        on: bool,
    },
    /// A region's Step Functions engine stalled (executions make no progress).
    SfnStall {
        region: String,
        on: bool,
    },
    Route53Outage(bool),
    Throttle {
        svc: Svc,
        p: f64,
    },
    /// Answers to writes lost after the write applied.
    Lossy {
        svc: Svc,
        p: f64,
    },
    /// MREC replication lag bounds (ms).
    Lag {
        lo: u64,
        hi: u64,
    },
    Serving {
        region: String,
        s: Serving,
    },
    ProbeCut {
        observer: String,
        target: String,
        on: bool,
    },
    Inverted {
        region: String,
        on: bool,
    },
    Disabled {
        region: String,
        on: bool,
    },
    Model {
        region: String,
        b: Behaviour,
    },
    Endpoint {
        region: String,
        status: Option<EndpointStatus>,
    },
    Operator {
        from: String,
        cmd: OpCmd,
    },
    /// SIGHUP: the daemon reloads its file; with `tables`, the file names
    /// another control table in the other consistency mode (restart-only:
    /// it must be held, not applied).
    Reload {
        region: String,
        tables: bool,
    },
    /// A host's wall clock steps by `ms` (an NTP correction of a skewed
    /// host, an operator's `date -s`): its skew changes at once; its
    /// monotonic clock does not move.
    ClockStep {
        region: String,
        ms: i64,
    },
    /// One region's file drifts from the fleet's (`Some`), or is put back
    /// as shipped (`None`); its daemons get SIGHUP (both, where a region
    /// runs two). The file stays as it is for restarts.
    Drift {
        region: String,
        kind: Option<DriftKind>,
    },
    /// A new state machine is rolled out: `region`'s file now names every
    /// region's `…-v2` machine, and its daemons get SIGHUP. The other
    /// regions' files follow at their own times (at the latest when
    /// everything heals), so executions started under the old ARN are
    /// still in flight while the fleet reads the new one.
    NewMachine {
        region: String,
    },
    /// The control record lost (deleted by hand, the table re-created) or,
    /// with `restore`, the table restored to an older copy of it.
    RecordLost {
        restore: bool,
    },
    /// Every fault off, every daemon running.
    HealAll,
}

/// An event at a time (ms after the start).
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    pub at_ms: u64,
    pub event: Event,
}

/// Which timings the run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `regions/base.toml` as shipped.
    Shipped,
    /// Short timings (every one within what `check-config` accepts).
    Fast,
}

/// Everything a seed decides.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub consistency: Consistency,
    pub profile: Profile,
    /// us-west-2's health comes from a calculated check over two endpoint
    /// checks (threshold 1) instead of one endpoint check.
    pub calculated: bool,
    /// Host clock skew per region (ms).
    pub skews: Vec<(String, i64)>,
    /// `policy.approval = "manual"` in every file: automatic failovers are
    /// proposals, which the seed's operator approves or rejects.
    pub approval: bool,
    /// Idle detection on (`cost.idle`, a 3-minute window, CloudWatch read
    /// through the simulation's CloudWatch).
    pub idle: bool,
    /// A two-region fleet (issue 19 item 6): only us-east-1 and us-west-2
    /// run daemons and replicas; under MRSC us-east-2 is the table's
    /// witness (no readable replica). `check-config` refuses automatic
    /// failover for two voting regions, so `approval` is on: failovers are
    /// approved proposals or operators' commands.
    pub two_regions: bool,
    pub events: Vec<Timed>,
    /// When every fault is healed.
    pub fault_end_ms: u64,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} consistency {:?} profile {:?} calculated {} skews {:?} approval {} idle {} regions {} faults until {} s",
            self.seed,
            self.consistency,
            self.profile,
            self.calculated,
            self.skews,
            self.approval,
            self.idle,
            self.regions().len(),
            self.fault_end_ms / 1000
        )?;
        for t in &self.events {
            writeln!(
                f,
                "  {:>5}.{:03} {:?}",
                t.at_ms / 1000,
                t.at_ms % 1000,
                t.event
            )?;
        }
        Ok(())
    }
}

impl Scenario {
    /// The regions that run daemons (and routers), in priority order.
    pub fn regions(&self) -> &'static [&'static str] {
        if self.two_regions {
            &REGIONS[..2]
        } else {
            &REGIONS
        }
    }

    /// The MRSC witness of a two-region fleet.
    pub fn witness(&self) -> Option<&'static str> {
        (self.two_regions && self.consistency == Consistency::Mrsc).then_some(REGIONS[2])
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

fn any_region(r: &mut Rng) -> String {
    REGIONS[r.below(REGIONS.len() as u64) as usize].to_string()
}

/// Draw a scenario from a seed.
pub fn generate(seed: u64) -> Scenario {
    let mut r = Rng::new(seed).fork(0x5CED_0000);
    let consistency = if r.chance(0.2) {
        Consistency::Mrec
    } else {
        Consistency::Mrsc
    };
    let profile = if r.chance(0.3) {
        Profile::Fast
    } else {
        Profile::Shipped
    };
    let poll_ms = match profile {
        Profile::Shipped => 5_000,
        Profile::Fast => 2_000,
    };
    let calculated = r.chance(0.2);
    let mut skews = Vec::new();
    for region in REGIONS {
        let skew = if r.chance(0.05) {
            // A badly wrong clock: minutes to an hour either way.
            r.range(120_000, 3_600_000) as i64 * if r.chance(0.5) { 1 } else { -1 }
        } else if r.chance(0.4) {
            r.range(0, 90_000) as i64 - 45_000
        } else {
            0
        };
        if skew != 0 {
            skews.push((s(region), skew));
        }
    }
    let fault_end_ms = match profile {
        Profile::Shipped => r.range(300_000, 600_000),
        Profile::Fast => r.range(180_000, 420_000),
    } / 100
        * 100;
    let mut events = Vec::new();
    // Staggered starts within one poll.
    for region in REGIONS {
        events.push(Timed {
            at_ms: r.below(poll_ms) / 100 * 100,
            event: Event::Start(s(region)),
        });
    }
    let count = match r.below(10) {
        0 | 1 => 0,
        2..=4 => r.range(1, 2),
        5..=7 => r.range(2, 5),
        _ => r.range(5, 10),
    };
    // The classic: the active region goes down, for long, early.
    if r.chance(0.35) {
        let how = r.below(3);
        let at = r.range(20_000, 90_000) / 100 * 100;
        let until = (at + r.range(120_000, 400_000)).min(fault_end_ms) / 100 * 100;
        let (on, off) = match how {
            0 => (
                Event::Serving {
                    region: s("us-east-1"),
                    s: Serving::Out,
                },
                Event::Serving {
                    region: s("us-east-1"),
                    s: Serving::Up,
                },
            ),
            1 => (
                Event::Inverted {
                    region: s("us-east-1"),
                    on: true,
                },
                Event::Inverted {
                    region: s("us-east-1"),
                    on: false,
                },
            ),
            _ => (
                Event::Serving {
                    region: s("us-east-1"),
                    s: Serving::Degraded,
                },
                Event::Serving {
                    region: s("us-east-1"),
                    s: Serving::Up,
                },
            ),
        };
        events.push(Timed {
            at_ms: at,
            event: on,
        });
        events.push(Timed {
            at_ms: until,
            event: off,
        });
    }
    for _ in 0..count {
        let at = r.range(10_000, fault_end_ms.saturating_sub(10_000)) / 100 * 100;
        let until = (at + r.range(5_000, 240_000)).min(fault_end_ms) / 100 * 100;
        let (on, off) = fault(&mut r);
        events.push(Timed {
            at_ms: at,
            event: on,
        });
        if let Some(off) = off {
            events.push(Timed {
                at_ms: until,
                event: off,
            });
        }
    }
    if r.chance(0.35) {
        for _ in 0..r.range(1, 3) {
            let at = r.range(30_000, fault_end_ms.saturating_sub(10_000)) / 100 * 100;
            let from = any_region(&mut r);
            let cmd = match r.below(7) {
                0..=2 => OpCmd::Failover {
                    to: any_region(&mut r),
                    force: r.chance(0.3),
                    ungraceful: r.chance(0.3),
                },
                3 => OpCmd::Failback {
                    force: r.chance(0.3),
                },
                4 => OpCmd::Pause,
                _ => OpCmd::Resume,
            };
            events.push(Timed {
                at_ms: at,
                event: Event::Operator { from, cmd },
            });
        }
    }
    clock_steps(seed, &skews, fault_end_ms, &mut events);
    record_losses(seed, fault_end_ms, &mut events);
    reloads(seed, fault_end_ms, &mut events);
    // A two-region fleet, in about one seed in ten (a stream of its own).
    let two_regions = Rng::new(seed).fork(0x0002_4E61).chance(0.1);
    let approval = approvals(seed, fault_end_ms, two_regions, &mut events);
    drifts(seed, fault_end_ms, &mut events);
    machines(seed, fault_end_ms, &mut events);
    // Idle detection, in about one seed in three (a stream of its own).
    let idle = Rng::new(seed).fork(0x1D1E_0C57).chance(0.33);
    if two_regions {
        two_region_events(seed, consistency, fault_end_ms, &mut events);
    }
    events.push(Timed {
        at_ms: fault_end_ms,
        event: Event::HealAll,
    });
    // Stable order: by time, then as drawn.
    events.sort_by_key(|t| t.at_ms);
    Scenario {
        seed,
        consistency,
        profile,
        calculated,
        skews,
        approval,
        idle,
        two_regions,
        events,
        fault_end_ms,
    }
}

/// A two-region fleet's events: what the three-region draw aimed at
/// us-east-2 is dropped (it runs no daemon), or moved to us-west-2 where it
/// names a failover's target; us-east-2's isolation stays as the witness's
/// loss under MRSC. A drifted `approval` is dropped: the loader refuses
/// `"none"` for two voting regions, so no daemon would run that file. And
/// the fleet's way out of a lost region, an operator's forced failover, is
/// drawn in about two seeds in three, sometimes ungraceful.
fn two_region_events(seed: u64, consistency: Consistency, end_ms: u64, events: &mut Vec<Timed>) {
    let gone = REGIONS[2];
    let names = |r: &String| r == gone;
    events.retain_mut(|t| match &mut t.event {
        Event::Start(r) | Event::Crash(r) | Event::Restart(r) => !names(r),
        Event::Link { region, .. }
        | Event::SfnApiDown { region, .. }
        | Event::SfnStall { region, .. }
        | Event::Serving { region, .. }
        | Event::Inverted { region, .. }
        | Event::Disabled { region, .. }
        | Event::Model { region, .. }
        | Event::Endpoint { region, .. }
        | Event::Reload { region, .. }
        | Event::ClockStep { region, .. }
        | Event::NewMachine { region } => !names(region),
        Event::Drift { region, kind } => !names(region) && *kind != Some(DriftKind::Approval),
        Event::ProbeCut {
            observer, target, ..
        } => !names(observer) && !names(target),
        Event::Isolate { replica, .. } => consistency == Consistency::Mrsc || !names(replica),
        Event::Operator { from, cmd } => {
            if names(from) {
                *from = REGIONS[1].to_string();
            }
            if let OpCmd::Failover { to, .. } = cmd
                && names(to)
            {
                *to = REGIONS[1].to_string();
            }
            true
        }
        _ => true,
    });
    let mut r = Rng::new(seed).fork(0x0002_4E62);
    // The runbook's moment: 10 to 60 s after the first region is lost.
    let lost = events
        .iter()
        .filter(|t| match &t.event {
            Event::Serving { s, .. } => *s != Serving::Up,
            Event::Inverted { on, .. } => *on,
            Event::Crash(_) => true,
            _ => false,
        })
        .map(|t| t.at_ms)
        .min();
    if r.chance(0.65) {
        let at = match lost {
            Some(at) if r.chance(0.8) => at + r.range(10_000, 60_000),
            _ => r.range(40_000, end_ms.saturating_sub(5_000).max(40_001)),
        };
        events.push(Timed {
            at_ms: at.min(end_ms.saturating_sub(1_000)) / 100 * 100,
            event: Event::Operator {
                from: REGIONS[1].to_string(),
                cmd: OpCmd::Failover {
                    to: REGIONS[1].to_string(),
                    force: true,
                    ungraceful: r.chance(0.4),
                },
            },
        });
    }
    // The witness lost for a while (MRSC): the two replicas still commit;
    // with a replica's region lost as well, nothing does.
    if consistency == Consistency::Mrsc && r.chance(0.3) {
        let at = r.range(20_000, end_ms.saturating_sub(10_000).max(20_001)) / 100 * 100;
        let until = (at + r.range(5_000, 240_000)).min(end_ms) / 100 * 100;
        for (at_ms, on) in [(at, true), (until, false)] {
            events.push(Timed {
                at_ms,
                event: Event::Isolate {
                    replica: gone.to_string(),
                    on,
                },
            });
        }
    }
}

/// Wall-clock steps mid-run, from a stream of their own (so adding them left
/// every older seed's scenario as it was): in about one seed in four, a
/// skewed host is corrected (stepped back to true time, as NTP does after a
/// long outage of its time source) and a host's clock jumps by seconds to
/// an hour either way; both may hit a daemon in any role at any step of a
/// failover.
fn clock_steps(seed: u64, skews: &[(String, i64)], end_ms: u64, events: &mut Vec<Timed>) {
    let mut r = Rng::new(seed).fork(0xC10C_5EED);
    if !r.chance(0.25) {
        return;
    }
    let mut at = || r.range(10_000, end_ms.saturating_sub(5_000).max(10_001)) / 100 * 100;
    let mut steps = Vec::new();
    for (region, skew) in skews {
        steps.push((at(), region.clone(), -skew));
    }
    let mut r = Rng::new(seed).fork(0xC10C_0002);
    for _ in 0..r.range(1, 3) {
        let region = any_region(&mut r);
        let ms = if r.chance(0.5) {
            r.range(1_000, 60_000)
        } else {
            r.range(60_000, 3_600_000)
        } as i64
            * if r.chance(0.5) { 1 } else { -1 };
        let at = r.range(10_000, end_ms.saturating_sub(5_000).max(10_001)) / 100 * 100;
        steps.push((at, region, ms));
    }
    for (at_ms, region, ms) in steps {
        if ms != 0 {
            events.push(Timed {
                at_ms,
                event: Event::ClockStep { region, ms },
            });
        }
    }
}

/// A lost or restored control record, in about one seed in ten, from a
/// stream of its own (older seeds replay as before).
fn record_losses(seed: u64, end_ms: u64, events: &mut Vec<Timed>) {
    let mut r = Rng::new(seed).fork(0x7AB1_E105);
    if !r.chance(0.1) {
        return;
    }
    events.push(Timed {
        at_ms: r.range(20_000, end_ms.saturating_sub(5_000).max(20_001)) / 100 * 100,
        event: Event::RecordLost {
            restore: r.chance(0.5),
        },
    });
}

/// Reloads mid-run (SIGHUP), in about one seed in five, from a stream of
/// their own (older seeds replay as before): one to three, on any daemon,
/// half of them with a changed (restart-only) control table.
fn reloads(seed: u64, end_ms: u64, events: &mut Vec<Timed>) {
    let mut r = Rng::new(seed).fork(0x5164_0B0B);
    if !r.chance(0.2) {
        return;
    }
    for _ in 0..r.range(1, 4) {
        events.push(Timed {
            at_ms: r.range(10_000, end_ms.saturating_sub(5_000).max(10_001)) / 100 * 100,
            event: Event::Reload {
                region: any_region(&mut r),
                tables: r.chance(0.5),
            },
        });
    }
}

/// One fault: the event that starts it and the one that ends it.
fn fault(r: &mut Rng) -> (Event, Option<Event>) {
    // The active region is us-east-1 until a failover: weigh it heavily.
    let region = if r.chance(0.5) {
        s("us-east-1")
    } else {
        any_region(r)
    };
    let other = any_region(r);
    let svcs = [Svc::Store, Svc::Sfn, Svc::Route53, Svc::SageMaker];
    match r.below(20) {
        0 | 1 => (Event::Crash(region.clone()), Some(Event::Restart(region))),
        2 | 3 => {
            let svc = *r.pick(&svcs);
            let link = if r.chance(0.5) {
                Link::Refused
            } else {
                Link::Blackhole
            };
            (
                Event::Link {
                    region: region.clone(),
                    svc,
                    link,
                },
                Some(Event::Link {
                    region,
                    svc,
                    link: Link::Up,
                }),
            )
        }
        4 => (
            Event::Isolate {
                replica: region.clone(),
                on: true,
            },
            Some(Event::Isolate {
                replica: region,
                on: false,
            }),
        ),
        5 => (
            Event::SfnApiDown {
                region: region.clone(),
                on: true,
            },
            Some(Event::SfnApiDown { region, on: false }),
        ),
        6 => (
            Event::SfnStall {
                region: region.clone(),
                on: true,
            },
            Some(Event::SfnStall { region, on: false }),
        ),
        7 => (
            Event::Route53Outage(true),
            Some(Event::Route53Outage(false)),
        ),
        8 => {
            let svc = *r.pick(&svcs);
            let p = *r.pick(&[0.2, 0.5, 0.9]);
            (
                Event::Throttle { svc, p },
                Some(Event::Throttle { svc, p: 0.0 }),
            )
        }
        9 => {
            let svc = *r.pick(&[Svc::Store, Svc::Sfn]);
            let p = *r.pick(&[0.1, 0.3]);
            (Event::Lossy { svc, p }, Some(Event::Lossy { svc, p: 0.0 }))
        }
        10 => (
            Event::Lag {
                lo: 2_000,
                hi: r.range(5_000, 60_000),
            },
            Some(Event::Lag { lo: 50, hi: 900 }),
        ),
        11 | 12 => {
            let st = if r.chance(0.6) {
                Serving::Out
            } else {
                Serving::Degraded
            };
            (
                Event::Serving {
                    region: region.clone(),
                    s: st,
                },
                Some(Event::Serving {
                    region,
                    s: Serving::Up,
                }),
            )
        }
        13 => (
            Event::ProbeCut {
                observer: other.clone(),
                target: region.clone(),
                on: true,
            },
            Some(Event::ProbeCut {
                observer: other,
                target: region,
                on: false,
            }),
        ),
        14 => (
            Event::Inverted {
                region: region.clone(),
                on: true,
            },
            Some(Event::Inverted { region, on: false }),
        ),
        15 => (
            Event::Disabled {
                region: region.clone(),
                on: true,
            },
            Some(Event::Disabled { region, on: false }),
        ),
        16 | 17 => {
            let b = match r.below(6) {
                0 => Behaviour {
                    outage: true,
                    ..Behaviour::default()
                },
                1 => Behaviour {
                    hang: true,
                    ..Behaviour::default()
                },
                2 => Behaviour {
                    cold_after_idle: Some(std::time::Duration::from_secs(60)),
                    cold_start: std::time::Duration::from_secs(r.range(5, 60)),
                    ..Behaviour::default()
                },
                3 => Behaviour {
                    throttle_rate: *r.pick(&[0.3, 0.8, 1.0]),
                    ..Behaviour::default()
                },
                4 => Behaviour {
                    model_error: true,
                    ..Behaviour::default()
                },
                _ => Behaviour {
                    latency: std::time::Duration::from_millis(r.range(500, 8_000)),
                    ..Behaviour::default()
                },
            };
            (
                Event::Model {
                    region: region.clone(),
                    b,
                },
                Some(Event::Model {
                    region,
                    b: Behaviour::default(),
                }),
            )
        }
        18 => {
            let st = r.pick(&[
                None,
                Some(EndpointStatus::Failed),
                Some(EndpointStatus::Updating),
                Some(EndpointStatus::OutOfService),
            ]);
            (
                Event::Endpoint {
                    region: region.clone(),
                    status: st.clone(),
                },
                Some(Event::Endpoint {
                    region,
                    status: Some(EndpointStatus::InService),
                }),
            )
        }
        _ => {
            // A daemon cut off from every AWS service at once.
            let link = if r.chance(0.5) {
                Link::Refused
            } else {
                Link::Blackhole
            };
            (
                Event::Link {
                    region: region.clone(),
                    svc: Svc::Store,
                    link,
                },
                Some(Event::Link {
                    region,
                    svc: Svc::Store,
                    link: Link::Up,
                }),
            )
        }
    }
}

/// Manual approval, in about one seed in six, from a stream of its own
/// (older seeds replay as before): the operator approves, rejects, or names
/// a stale proposal, three to eight times while the faults last, through
/// any region. Returns whether the seed runs with `approval = "manual"`.
fn approvals(seed: u64, end_ms: u64, always: bool, events: &mut Vec<Timed>) -> bool {
    let mut r = Rng::new(seed).fork(0xA99_20FA);
    if !r.chance(0.16) && !always {
        return false;
    }
    for _ in 0..r.range(3, 9) {
        let stale = r.chance(0.25);
        let cmd = if r.chance(0.75) {
            OpCmd::Approve { stale }
        } else {
            OpCmd::Reject { stale }
        };
        events.push(Timed {
            at_ms: r.range(20_000, end_ms.saturating_sub(5_000).max(20_001)) / 100 * 100,
            event: Event::Operator {
                from: any_region(&mut r),
                cmd,
            },
        });
    }
    true
}

/// Configuration drift, in about one seed in eight, from a stream of its
/// own: one or two regions' files drift (priorities, lease or approval),
/// each put back after a while or when everything heals.
fn drifts(seed: u64, end_ms: u64, events: &mut Vec<Timed>) {
    let mut r = Rng::new(seed).fork(0xD21F_7000);
    if !r.chance(0.12) {
        return;
    }
    for _ in 0..r.range(1, 3) {
        let region = any_region(&mut r);
        let kind = match r.below(3) {
            0 => DriftKind::Priorities,
            1 => DriftKind::Lease,
            _ => DriftKind::Approval,
        };
        let at = r.range(10_000, end_ms.saturating_sub(5_000).max(10_001)) / 100 * 100;
        events.push(Timed {
            at_ms: at,
            event: Event::Drift {
                region: region.clone(),
                kind: Some(kind),
            },
        });
        if r.chance(0.5) {
            let back = (at + r.range(5_000, 180_000)).min(end_ms) / 100 * 100;
            events.push(Timed {
                at_ms: back,
                event: Event::Drift { region, kind: None },
            });
        }
    }
}

/// A new state machine rolled out region by region, in about one seed in
/// ten, from a stream of its own; the regions the draw leaves out follow
/// when everything heals.
fn machines(seed: u64, end_ms: u64, events: &mut Vec<Timed>) {
    let mut r = Rng::new(seed).fork(0x3AC4_1DE5);
    if !r.chance(0.1) {
        return;
    }
    let mut at = r.range(10_000, end_ms.saturating_sub(5_000).max(10_001));
    for region in REGIONS {
        if r.chance(0.8) {
            events.push(Timed {
                at_ms: at.min(end_ms) / 100 * 100,
                event: Event::NewMachine { region: s(region) },
            });
        }
        at += r.range(0, 90_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_one_scenario() {
        for seed in 0..200 {
            let a = generate(seed);
            let b = generate(seed);
            assert_eq!(a.to_string(), b.to_string());
            assert!(a.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            assert!(a.events.iter().all(|t| t.at_ms <= a.fault_end_ms));
            assert_eq!(a.events.last().unwrap().event, Event::HealAll);
        }
        assert_ne!(generate(1).to_string(), generate(2).to_string());
    }

    /// CI's seeds (0..1000) meet every kind of change under the fleet
    /// often enough to matter (issue 19 item 10).
    #[test]
    fn the_ci_seeds_draw_operators_and_files_changing() {
        let (mut approval, mut approve, mut stale, mut drift, mut machine) = (0, 0, 0, 0, 0);
        let (mut two, mut two_forced, mut witness_lost) = (0, 0, 0);
        let mut kinds = BTreeSet::new();
        // The first seeds of each kind, to replay by hand.
        let mut first: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
        let mut note = |k: &'static str, seed: u64| {
            let v = first.entry(k).or_default();
            if v.last() != Some(&seed) && v.len() < 12 {
                v.push(seed);
            }
        };
        for seed in 0..1000 {
            let sc = generate(seed);
            approval += usize::from(sc.approval);
            let outage = sc.events.iter().any(|t| {
                matches!(&t.event, Event::Serving { region, s: Serving::Out } | Event::Inverted { region, on: true } if region == "us-east-1")
            });
            if sc.approval && outage {
                note("approval beside an outage of the active", seed);
            }
            if sc.two_regions {
                two += 1;
                assert!(
                    sc.approval,
                    "seed {seed}: a two-region fleet without approval"
                );
                let names_gone = |r: &str| r == REGIONS[2];
                for t in &sc.events {
                    match &t.event {
                        Event::Start(r) | Event::Crash(r) | Event::Serving { region: r, .. } => {
                            assert!(!names_gone(r), "seed {seed}: {:?}", t.event)
                        }
                        Event::Isolate { replica, .. } if names_gone(replica) => {
                            witness_lost += 1;
                            note("two regions, the witness lost", seed);
                        }
                        Event::Operator {
                            cmd: OpCmd::Failover { force: true, .. },
                            ..
                        } if outage => {
                            two_forced += 1;
                            note("two regions, a forced failover beside an outage", seed);
                        }
                        _ => {}
                    }
                }
                note("two regions", seed);
            }
            for t in &sc.events {
                match &t.event {
                    Event::Operator {
                        cmd: OpCmd::Approve { stale: st } | OpCmd::Reject { stale: st },
                        ..
                    } => {
                        approve += 1;
                        stale += usize::from(*st);
                    }
                    Event::Drift { kind: Some(k), .. } => {
                        drift += 1;
                        kinds.insert(format!("{k:?}"));
                        if outage {
                            note("drift beside an outage of the active", seed);
                        }
                    }
                    Event::NewMachine { .. } => machine += 1,
                    _ => {}
                }
            }
        }
        println!(
            "seeds 0..1000: {approval} with approval, {approve} approvals or rejections ({stale} stale), {drift} drifts {kinds:?}, {machine} new machines; first seeds: {first:?}"
        );
        assert!(
            approval >= 100 && approve >= 300 && stale >= 50,
            "{approval} {approve} {stale}"
        );
        assert!(drift >= 80 && kinds.len() == 3, "{drift} {kinds:?}");
        assert!(machine >= 150, "{machine}");
        println!(
            "two-region fleets: {two}, {two_forced} forced failovers beside an outage, {witness_lost} witness losses"
        );
        assert!(
            two >= 70 && two_forced >= 10 && witness_lost >= 15,
            "{two} {two_forced} {witness_lost}"
        );
    }
}
