//! `failoverd cost --dry-run`: what each region's daemon would do with its
//! endpoints now (scheduled capacity, idle detection), and why, without
//! changing anything.
//!
//! It reads what the daemon's cost task reads (the control record,
//! `DescribeEndpoint` and `ListTags` per provisioned endpoint) and calls the
//! same [`decide`](crate::control::cost::decide), so the answer is the
//! daemon's. Two differences, both said in the output: the CLI does not know
//! a daemon's own quorum view (a daemon without quorum holds back), and it
//! has no router of its own: it takes every router's counts from the votes
//! in the control table (`metrics::counts::VoteCounts`), as they were at the
//! routers' last votes, where a daemon uses its own router's live counts.
//! When the votes cannot be read, nothing is counted (nothing is idle).
//! There is no acting mode: the daemons act, each on its own region, and
//! journal what they do (`failoverd status` shows it).
//!
//! Exit codes: 0; 64 without `--dry-run` or with a region that is not
//! configured; 69 when the control record cannot be read (nothing can be
//! decided without it); 78 invalid configuration.

use serde::Serialize;

use crate::config::Config;
use crate::control::cost::{self, EndpointPlan, Observation};
use crate::core::tier::Tier;
use crate::error_chain;
use crate::metrics::counts::VoteCounts;
use crate::ports::Ports;

use super::Output;
use super::ops::EX_UNAVAILABLE;

/// Exit: bad usage (sysexits.h `EX_USAGE`).
pub const EX_USAGE: i32 = 64;

/// What `cost --dry-run --output json` prints.
#[derive(Debug, Serialize)]
pub struct DryRun {
    pub dry_run: bool,
    /// The tier that governs the fleet's endpoints (the strictest model's).
    pub fleet_tier: Tier,
    /// Whether the daemons may fail over on their own (not when every
    /// model is tier3).
    pub automatic_failover: bool,
    pub schedules: usize,
    pub idle_enabled: bool,
    /// Where the router counts came from.
    pub router_counts: String,
    pub plans: Vec<EndpointPlan>,
    /// Regions whose control record could not be read.
    pub unreadable: Vec<String>,
}

/// Observe and decide for `regions` (every configured region when empty).
pub async fn dry_run(cfg: &Config, ports: &Ports, regions: &[String]) -> DryRun {
    let regions: Vec<String> = if regions.is_empty() {
        cfg.regions.iter().map(|r| r.name.clone()).collect()
    } else {
        regions.to_vec()
    };
    let mut plans = Vec::new();
    let mut unreadable = Vec::new();
    let (votes, router_counts) = match ports.store.read_votes().await {
        Ok(v) => {
            let with = v.iter().filter(|v| v.traffic.is_some()).count();
            let text = format!(
                "from the votes in the control table ({with} of {} configured regions' routers published counts; an endpoint is counted only when all have)",
                cfg.regions.len()
            );
            (v, text)
        }
        Err(e) => (
            Vec::new(),
            format!(
                "the votes cannot be read ({}): nothing is counted, nothing is judged idle",
                error_chain(&e)
            ),
        ),
    };
    for r in &regions {
        let obs: Observation = cost::observe(cfg, ports, r, None).await;
        if obs.record.is_err() {
            unreadable.push(r.clone());
        }
        let counts = VoteCounts::new(cfg, &votes, obs.now_ms);
        plans.extend(cost::decide(cfg, &obs, &counts));
    }
    let fleet_tier = cfg.cost.fleet_tier(&cfg.models);
    DryRun {
        dry_run: true,
        fleet_tier,
        automatic_failover: fleet_tier.automatic_failover(),
        schedules: cfg.cost.schedules.len(),
        idle_enabled: cfg.cost.idle.enabled,
        router_counts,
        plans,
        unreadable,
    }
}

/// Text rendering.
pub fn render(d: &DryRun) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "dry run: what each region's daemon would do now; nothing is changed"
    );
    let _ = writeln!(
        o,
        "fleet tier {} ({}); automatic failover {}; {} schedule(s); idle detection {}",
        d.fleet_tier,
        d.fleet_tier.pattern(),
        if d.automatic_failover {
            "on"
        } else {
            "OFF (every model is tier3: fail over by hand)"
        },
        d.schedules,
        if d.idle_enabled { "on" } else { "off" }
    );
    let _ = writeln!(o, "router counts: {}", d.router_counts);
    let _ = writeln!(
        o,
        "(a daemon without quorum, or whose region is draining, holds back whatever this says)"
    );
    for p in &d.plans {
        let _ = writeln!(o, "  {p}");
    }
    o
}

/// `failoverd cost` without `--dry-run`: refused before anything is read.
pub fn refuse_without_dry_run() -> i32 {
    eprintln!(
        "failoverd cost only shows decisions: pass --dry-run. The daemons apply them, each to its own region, and journal what they do (failoverd status)."
    );
    EX_USAGE
}

/// `failoverd cost --dry-run`; returns the exit code.
pub async fn run(cfg: &Config, ports: &Ports, regions: &[String], output: Output) -> i32 {
    if let Some(bad) = regions.iter().find(|r| cfg.region(r).is_none()) {
        let known: Vec<&str> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
        eprintln!("--region {bad:?} is not a configured region ({known:?})");
        return EX_USAGE;
    }
    let d = dry_run(cfg, ports, regions).await;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default()),
        Output::Text => print!("{}", render(&d)),
    }
    if d.unreadable.is_empty() {
        0
    } else {
        eprintln!(
            "the control record could not be read for {:?}: nothing can be decided without it",
            d.unreadable
        );
        EX_UNAVAILABLE
    }
}
