//! Operator commands: `status`, `failover`, `failback`, `pause`, `resume`.
//!
//! They read the control table directly (no daemon needed), plan with the
//! same planner the daemons use, say exactly what they will change, ask for
//! confirmation (`--yes`, or a typed "yes" on a terminal), and perform the
//! change through the same executor. A refusal names its reason and exits
//! non-zero; `--force` overrides the health and quorum checks only, and the
//! journal records that it was forced.
//!
//! `status` also shows the DR tiers (each model's, the fleet's, whether
//! automatic failover is on) and what each region's provisioned endpoint
//! holds now (`DescribeEndpoint`), so an operator sees what a standby could
//! take before a failover asks it to; the cost task's actions are in the
//! journal (`cost_scale`, `cost_stop`, `cost_failed`, `cost_raced`, `prepare_scale`).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write as _};

use serde::Serialize;

use crate::config::Config;
use crate::control::operator::{self, Outcome, Seat};
use crate::core::control::{ControlRecord, Phase};
use crate::core::plan::Request;
use crate::core::quorum::{Tally, Vote};
use crate::core::tier::{RegionRole, StandbyHolds, Tier, VariantCapacity};
use crate::core::tokens::TokenStatus;
use crate::ports::Ports;
use crate::ports::clock::rfc3339;
use crate::ports::store::{Event, TokenItem};

/// Exit: the request was refused as unsafe or pointless, or not confirmed.
pub const EX_REFUSED: i32 = 1;
/// Exit: the record changed between reading and writing; re-run.
pub const EX_TEMPFAIL: i32 = 75;
/// Exit: AWS could not be reached.
pub const EX_UNAVAILABLE: i32 = 69;

/// Everything `status` shows.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub replica_region: String,
    pub record: Option<ControlRecord>,
    pub record_error: Option<String>,
    pub votes: Vec<Vote>,
    pub votes_error: Option<String>,
    pub tally: Tally,
    pub tokens: Vec<TokenRow>,
    /// Set when the tokens could not be read (then `tokens` says nothing).
    pub tokens_error: Option<String>,
    /// More tokens exist than were read.
    pub tokens_truncated: bool,
    pub events: Vec<Event>,
    pub events_error: Option<String>,
    pub events_truncated: bool,
    /// DR tiers and what each region's provisioned endpoint holds.
    pub cost: CostStatus,
    /// Each standby region's latest readiness line (`control::standby`),
    /// from the journal's `readiness` entries, by region.
    pub readiness: Vec<Event>,
    /// The active region's duty item (`core::duty`: which of its daemons
    /// holds its active duties); `None` when there is none or it could
    /// not be read.
    pub duties: Option<crate::core::duty::DutyItem>,
    pub read_at: u64,
}

/// Journal entries read to find each region's latest readiness line (at
/// least; more when `--events` asks for more).
pub const READINESS_EVENTS: usize = 500;

/// The DR tiers and the capacity each region holds.
#[derive(Debug, Serialize)]
pub struct CostStatus {
    /// The strictest model's tier: what the endpoints and automatic
    /// failover follow.
    pub fleet_tier: Tier,
    /// False when every model is tier3 (fail over by hand).
    pub automatic_failover: bool,
    pub models: Vec<ModelTier>,
    /// One row per region with a provisioned endpoint.
    pub capacity: Vec<RegionCapacity>,
}

/// One model's tier.
#[derive(Debug, Serialize)]
pub struct ModelTier {
    pub model: String,
    pub tier: Tier,
    pub pattern: &'static str,
}

/// What one region's provisioned endpoint holds now.
#[derive(Debug, Serialize)]
pub struct RegionCapacity {
    pub region: String,
    pub endpoint: String,
    /// From the control record; `None` when it could not be read.
    pub role: Option<RegionRole>,
    /// `EndpointStatus`; `None` when absent or unreadable.
    pub status: Option<String>,
    /// `CurrentInstanceCount` per provisioned variant.
    pub holds: Vec<VariantCapacity>,
    /// Set when the endpoint does not exist or could not be read.
    pub error: Option<String>,
}

/// Read what each region's provisioned endpoint holds (concurrently; one
/// region's failure is its row's, never the report's).
pub async fn read_cost_status(
    cfg: &Config,
    ports: &Ports,
    record: Option<&ControlRecord>,
) -> CostStatus {
    let fleet_tier = cfg.cost.fleet_tier(&cfg.models);
    // Every provisioned endpoint of each region, the models' own included
    // (config/serving.rs): one row each.
    let pairs: Vec<(String, String)> = cfg
        .regions
        .iter()
        .flat_map(|r| {
            cfg.provisioned_in(&r.name)
                .into_iter()
                .map(|e| (r.name.clone(), e))
        })
        .collect();
    let reads = pairs.into_iter().map(|(region, endpoint)| async move {
        let got = ports.endpoints.describe(&region, &endpoint).await;
        (region, endpoint, got)
    });
    let capacity = futures_util::future::join_all(reads)
        .await
        .into_iter()
        .map(|(region, endpoint, got)| {
            let role = record.map(|r| crate::control::cost::role_of(&region, r));
            let (status, holds, error) = match got {
                Ok(Some(st)) => (Some(st.status.as_str().to_string()), st.provisioned(), None),
                Ok(None) => (None, Vec::new(), Some("does not exist".to_string())),
                Err(e) => (None, Vec::new(), Some(crate::error_chain(&e))),
            };
            RegionCapacity {
                region,
                endpoint,
                role,
                status,
                holds,
                error,
            }
        })
        .collect();
    CostStatus {
        fleet_tier,
        automatic_failover: fleet_tier.automatic_failover(),
        models: cfg
            .models
            .iter()
            .map(|m| {
                let tier = cfg.cost.tier_of(&m.name);
                ModelTier {
                    model: m.name.clone(),
                    tier,
                    pattern: tier.pattern(),
                }
            })
            .collect(),
        capacity,
    }
}

/// One token, without its secret.
#[derive(Debug, Serialize)]
pub struct TokenRow {
    pub id: String,
    pub step: String,
    pub target_region: String,
    pub status: TokenStatus,
    pub claimed_by: Option<String>,
    pub created_at: u64,
    pub expires_at: u64,
    pub note: Option<String>,
}

impl From<&TokenItem> for TokenRow {
    fn from(t: &TokenItem) -> Self {
        Self {
            id: t.view.id.clone(),
            step: t.view.step.clone(),
            target_region: t.view.target_region.clone(),
            status: t.view.status,
            claimed_by: t.view.claimed_by.clone(),
            created_at: t.view.created_at,
            expires_at: t.view.expires_at(),
            note: t.note.clone(),
        }
    }
}

/// How many tokens `status` reads at most (newest first).
pub const STATUS_TOKENS: usize = 100;

/// Read everything, each read bounded; keep going past any one read's
/// failure and say which failed (never "0" for "could not read").
pub async fn read_status(cfg: &Config, ports: &Ports, events: usize) -> StatusReport {
    let asked = events;
    let store = &ports.store;
    let now = ports.clock.now_ms();
    let (record, votes, tokens, evs) = tokio::join!(
        store.read_record(),
        store.read_votes(),
        store.tokens(STATUS_TOKENS, now),
        store.events(events.max(READINESS_EVENTS), now)
    );
    let now = ports.clock.now_ms();
    let (record, record_error) = match record {
        Ok(r) => (r, None),
        Err(e) => (None, Some(crate::error_chain(&e))),
    };
    let (votes, votes_error) = match votes {
        Ok(v) => (v, None),
        Err(e) => (Vec::new(), Some(crate::error_chain(&e))),
    };
    let (tokens, tokens_truncated, tokens_error) = match tokens {
        Ok(p) => (
            p.items.iter().map(TokenRow::from).collect(),
            p.truncated,
            None,
        ),
        Err(e) => (Vec::new(), false, Some(crate::error_chain(&e))),
    };
    let (mut events, mut events_truncated, events_error) = match evs {
        Ok(p) => (p.items, p.truncated, None),
        Err(e) => (Vec::new(), false, Some(crate::error_chain(&e))),
    };
    let readiness: Vec<Event> = crate::control::standby::latest_lines(&events)
        .into_iter()
        .cloned()
        .collect();
    if events.len() > asked {
        events.truncate(asked);
        events_truncated = true;
    }
    let tally = operator::tally(cfg, &votes, now, Seat::Operator);
    let cost = read_cost_status(cfg, ports, record.as_ref()).await;
    let duties = match &record {
        Some(r) => store.read_duty(&r.active).await.ok().flatten(),
        None => None,
    };
    StatusReport {
        replica_region: store.replica().to_string(),
        record,
        record_error,
        votes,
        votes_error,
        tally,
        tokens,
        tokens_error,
        tokens_truncated,
        events,
        events_error,
        events_truncated,
        cost,
        readiness,
        duties,
        read_at: now,
    }
}

/// Human rendering of a status report.
pub fn render_status(cfg: &Config, s: &StatusReport) -> String {
    let mut o = String::new();
    let w = &mut o;
    use std::fmt::Write;
    let _ = writeln!(
        w,
        "control table {} (replica in {}), read at {}",
        cfg.tables.control,
        s.replica_region,
        rfc3339(s.read_at)
    );
    render_record(w, s);
    if let (Some(r), Some(d)) = (&s.record, &s.duties) {
        let holder = if d.holder.is_empty() {
            "released (the next of its daemons to look takes them)".to_string()
        } else {
            format!("held by {}", d.instance)
        };
        let _ = writeln!(w, "{}'s active duties: {holder}", r.active);
    }
    render_matrix(w, cfg, s);
    render_fleet(w, cfg, s);
    render_tokens(w, s);
    render_cost(w, &s.cost);
    render_readiness(w, &s.readiness);
    render_events(w, &s.events, s.events_truncated, s.events_error.as_deref());
    o
}

/// The control record: active, epoch, mode, the proposal, a failover in
/// flight.
fn render_record(w: &mut String, s: &StatusReport) {
    use std::fmt::Write;
    match (&s.record, &s.record_error) {
        (Some(r), _) => {
            let _ = writeln!(
                w,
                "active: {}   epoch {}   mode {:?}   state {:?}   version {}",
                r.active, r.epoch, r.mode, r.phase, r.version
            );
            let _ = writeln!(
                w,
                "last change: {} by {}: {}",
                rfc3339(r.changed_at),
                r.changed_by,
                r.reason
            );
            if let Some(p) = &r.proposal {
                if p.state == crate::core::control::ProposalState::Proposed {
                    // A proposal written before ids existed has none: name
                    // it by epoch and target.
                    let named = if p.id.is_empty() {
                        format!("--epoch {} --to {}", p.epoch, p.target)
                    } else {
                        format!("--proposal {}", p.id)
                    };
                    let _ = writeln!(
                        w,
                        "FAILOVER PROPOSED, AWAITING APPROVAL: {} -> {} (epoch {}, proposal {}), proposed by {} at {}: {}\n  approve: failoverd approve {} --reason ...   reject: failoverd reject {} --reason ...",
                        p.from,
                        p.target,
                        p.epoch,
                        p.id,
                        p.proposer,
                        rfc3339(p.proposed_at),
                        p.reason,
                        named,
                        named
                    );
                } else {
                    let _ = writeln!(
                        w,
                        "last proposal: {} -> {} (epoch {}, proposal {}) {} by {}: {}",
                        p.from,
                        p.target,
                        p.epoch,
                        p.id,
                        p.state.as_str(),
                        p.decided_by.as_deref().unwrap_or("?"),
                        p.decision.as_deref().unwrap_or("")
                    );
                }
            }
            if r.phase == Phase::FailingOver {
                let _ = writeln!(
                    w,
                    "FAILOVER IN FLIGHT: {} {} -> {} (initiated in {}, step {})",
                    r.execution.as_deref().unwrap_or("?"),
                    r.previous.as_deref().unwrap_or("?"),
                    r.target.as_deref().unwrap_or("?"),
                    r.initiator.as_deref().unwrap_or("?"),
                    r.step.as_str()
                );
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(w, "control record: UNREADABLE: {e}");
        }
        (None, None) => {
            let _ = writeln!(w, "control record: none yet (no daemon has initialized it)");
        }
    }
}

/// The health matrix (observer x region, vote ages) and the quorum's row.
fn render_matrix(w: &mut String, cfg: &Config, s: &StatusReport) {
    use std::fmt::Write;
    let _ = writeln!(
        w,
        "\nhealth matrix (rows: observer, columns: region; vote age)"
    );
    let regions: Vec<&str> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
    let _ = write!(w, "{:<12}", "observer");
    for r in &regions {
        let _ = write!(w, " {r:<11}");
    }
    let _ = writeln!(w, " age     daemons");
    // Each region's standing vote: its freshest daemon's.
    let mut by_obs: BTreeMap<&str, &Vote> = BTreeMap::new();
    for v in &s.votes {
        if by_obs
            .get(v.observer.as_str())
            .is_none_or(|old| old.at < v.at)
        {
            by_obs.insert(&v.observer, v);
        }
    }
    let freshness = cfg.timings.vote_freshness.as_millis() as u64;
    for obs in &regions {
        let _ = write!(w, "{obs:<12}");
        match by_obs.get(obs) {
            Some(v) => {
                for r in &regions {
                    let cell = v
                        .view
                        .get(*r)
                        .map(|x| format!("{x:?}").to_lowercase())
                        .unwrap_or_else(|| "-".into());
                    let _ = write!(w, " {cell:<11}");
                }
                let age = s.read_at.saturating_sub(v.at);
                let stale = age > freshness;
                let d = crate::core::quorum::daemons_of(obs, &s.votes, s.read_at, freshness);
                let names: Vec<String> = d
                    .daemons
                    .iter()
                    .map(|x| {
                        format!(
                            "{}{}",
                            x.instance.as_deref().unwrap_or("unnamed"),
                            if x.fresh { "" } else { " STALE" }
                        )
                    })
                    .collect();
                let _ = writeln!(
                    w,
                    " {:<7} {} ({})",
                    format!(
                        "{:.1}s{}",
                        age as f64 / 1000.0,
                        if stale { " STALE" } else { "" }
                    ),
                    d.state,
                    names.join(", ")
                );
            }
            None => {
                let _ = writeln!(w, " (no vote)");
            }
        }
    }
    let _ = write!(w, "{:<12}", "quorum");
    for r in &regions {
        let c = s
            .tally
            .regions
            .get(*r)
            .map(|c| format!("{c:?}").to_lowercase())
            .unwrap_or_else(|| "-".into());
        let _ = write!(w, " {c:<11}");
    }
    let _ = writeln!(w);
    if let Some(q) = &s.tally.no_quorum {
        let _ = writeln!(w, "NO QUORUM: {q:?}");
    }
    if let Some(e) = &s.votes_error {
        let _ = writeln!(w, "votes UNREADABLE: {e}");
    }
}

/// The fleet's configurations as the votes carry them (`core::drift`),
/// against this configuration's fingerprint.
fn render_fleet(w: &mut String, cfg: &Config, s: &StatusReport) {
    use std::fmt::Write;
    let mine = crate::config::fleet::Fingerprint::of(cfg);
    let observers: Vec<String> = s.votes.iter().map(|v| v.observer.clone()).collect();
    let d = crate::core::drift::drift(&mine.published(), &s.votes, &observers);
    if d.is_empty() && d.unknown.is_empty() {
        let _ = writeln!(
            w,
            "fleet configuration: {} (every vote agrees with this file)",
            mine.digest()
        );
        return;
    }
    let _ = writeln!(w, "fleet configuration: {} (this file)", mine.digest());
    for x in &d.differing {
        if x.observer == cfg.region {
            // This region's own daemon: the file here is not what it runs.
            let _ = writeln!(
                w,
                "PENDING: {}'s daemon runs a configuration that differs from this file in {}: reload it (systemctl reload failoverd@{}) to apply what can be, restart it for what only a restart applies (its /metrics: failoverd_config_restart_pending)",
                x.observer,
                x.groups.join(", "),
                x.observer
            );
            continue;
        }
        let _ = writeln!(
            w,
            "CONFIGURATION DRIFT: {} differs in {}: automatic failover is withheld while the fleet disagrees (failoverd check-config FILES... names the keys)",
            x.observer,
            x.groups.join(", ")
        );
    }
    for o in &d.unknown {
        let _ = writeln!(w, "  {o}: publishes no fingerprint (an older failoverd)");
    }
}

/// Pending and claimed task tokens.
fn render_tokens(w: &mut String, s: &StatusReport) {
    use std::fmt::Write;
    let pending: Vec<&TokenRow> = s
        .tokens
        .iter()
        .filter(|t| matches!(t.status, TokenStatus::Pending | TokenStatus::Claimed))
        .collect();
    match &s.tokens_error {
        Some(e) => {
            let _ = writeln!(w, "\npending tokens: UNREADABLE: {e}");
        }
        None => {
            let _ = writeln!(
                w,
                "\npending tokens: {}{}",
                pending.len(),
                if s.tokens_truncated {
                    format!(" (among the newest {STATUS_TOKENS} tokens; older ones not read)")
                } else {
                    String::new()
                }
            );
        }
    }
    for t in pending {
        let _ = writeln!(
            w,
            "  {} ({} for {}) {:?}{} expires {}",
            t.id,
            t.step,
            t.target_region,
            t.status,
            t.claimed_by
                .as_deref()
                .map(|c| format!(" by {c}"))
                .unwrap_or_default(),
            rfc3339(t.expires_at)
        );
    }
}

/// The newest journal entries.
/// Each standby region's latest readiness line.
fn render_readiness(w: &mut String, readiness: &[Event]) {
    use std::fmt::Write;
    if readiness.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "\nstandby readiness (each standby's latest check against the active; docs/readiness.md):"
    );
    for e in readiness {
        // The line ends with the matrix row (the worst per model): shown
        // as a per-model summary under it.
        let cells = crate::core::standby::cells_of_line(&e.detail);
        let head = match &cells {
            Some(_) => e
                .detail
                .rsplit_once(crate::core::standby::CELLS_MARK)
                .map_or(e.detail.as_str(), |(h, _)| h),
            None => e.detail.as_str(),
        };
        let _ = writeln!(w, "  {} {}", rfc3339(e.at), head);
        if let Some(cells) = cells.filter(|c| !c.is_empty()) {
            let per: Vec<String> = cells
                .iter()
                .map(|(m, s)| format!("{m} {}", s.as_str()))
                .collect();
            let _ = writeln!(w, "    per model: {}", per.join(", "));
        }
    }
}

fn render_events(w: &mut String, events: &[Event], truncated: bool, error: Option<&str>) {
    use std::fmt::Write;
    match error {
        Some(e) => {
            let _ = writeln!(w, "\nlast events: UNREADABLE: {e}");
        }
        // `--events 0`: none asked for, so none to call missing.
        None if events.is_empty() && truncated => {
            let _ = writeln!(
                w,
                "\njournal: not listed (failoverd status --events N lists the newest N)"
            );
        }
        None if truncated => {
            let _ = writeln!(w, "\nlast {} events (older ones not shown):", events.len());
        }
        None => {
            let _ = writeln!(w, "\nlast events:");
        }
    }
    for e in events {
        let _ = writeln!(
            w,
            "  {}  {:<22} {:<20} {}{}",
            rfc3339(e.at),
            e.who,
            e.kind,
            e.epoch.map(|x| format!("[epoch {x}] ")).unwrap_or_default(),
            e.detail
        );
    }
}

/// The DR tiers and what each region holds.
fn render_cost(w: &mut String, c: &CostStatus) {
    use std::fmt::Write;
    let _ = writeln!(
        w,
        "\nDR tiers: fleet {} ({}), automatic failover {}",
        c.fleet_tier,
        c.fleet_tier.pattern(),
        if c.automatic_failover {
            "on"
        } else {
            "OFF: every model is tier3; fail over by hand with the runbook"
        }
    );
    for m in &c.models {
        let _ = writeln!(w, "  {:<20} {} ({})", m.model, m.tier, m.pattern);
    }
    if c.capacity.is_empty() {
        let _ = writeln!(
            w,
            "provisioned capacity: no region has a provisioned endpoint"
        );
        return;
    }
    let standby_note = match c.fleet_tier.standby_holds() {
        StandbyHolds::ActiveNeed => "a standby holds the active's measured need",
        StandbyHolds::Minimum => "a standby holds its minimum; the prepare step scales it up",
    };
    let _ = writeln!(w, "provisioned capacity now ({standby_note}):");
    for r in &c.capacity {
        let role = match r.role {
            Some(RegionRole::Active) => "active",
            Some(RegionRole::FailoverTarget) => "target",
            Some(RegionRole::Standby) => "standby",
            None => "?",
        };
        let holds = crate::control::cost::holdings(&r.holds);
        match (&r.status, &r.error) {
            (Some(st), _) => {
                let _ = writeln!(
                    w,
                    "  {:<12} {:<8} {:<24} {:<10} {holds}",
                    r.region, role, r.endpoint, st
                );
            }
            (None, e) => {
                let _ = writeln!(
                    w,
                    "  {:<12} {:<8} {:<24} UNREADABLE: {}",
                    r.region,
                    role,
                    r.endpoint,
                    e.as_deref().unwrap_or("?")
                );
            }
        }
    }
}

/// Why a mutating command was not confirmed.
#[derive(Debug, thiserror::Error)]
enum NotConfirmed {
    #[error("not confirmed: pass --yes (standard input is not a terminal)")]
    NoTerminal,
    #[error("not confirmed: cannot read the answer")]
    Read(#[source] std::io::Error),
    #[error("not confirmed")]
    Declined,
}

fn confirm(yes: bool) -> Result<(), NotConfirmed> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(NotConfirmed::NoTerminal);
    }
    print!("Type 'yes' to proceed: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(NotConfirmed::Read)?;
    if line.trim() == "yes" {
        Ok(())
    } else {
        Err(NotConfirmed::Declined)
    }
}

/// Plan and perform an operator request through the control side's one
/// path (`control::operator::perform`: tally, plan, confirm, fenced write,
/// re-plan when the record moves under it); returns the exit code.
pub async fn run_request(cfg: &Config, ports: &Ports, req: Request, yes: bool) -> i32 {
    let outcome = operator::perform(cfg, ports, &req, |p| {
        for w in &p.warnings {
            eprintln!("warning: {w}");
        }
        println!("This will {}", p.description);
        for d in &p.details {
            println!("  {d}");
        }
        confirm(yes).map_err(|e| crate::error_chain(&e))
    })
    .await;
    match outcome {
        Outcome::Done(what) => {
            println!("done: {what}");
            0
        }
        Outcome::Refused(why) => {
            eprintln!("refused: {why}");
            EX_REFUSED
        }
        Outcome::NotConfirmed(why) => {
            eprintln!("{why}");
            EX_REFUSED
        }
        Outcome::Changed { now } => {
            eprintln!(
                "the control record changed while you were deciding, and so did the decision; nothing was changed.\n  now it would {now}\nCheck `failoverd status` and re-run."
            );
            EX_TEMPFAIL
        }
        Outcome::KeptMoving => {
            eprintln!(
                "the control record kept changing ({} tries); nothing was changed. Check `failoverd status` and re-run.",
                operator::REPLANS
            );
            EX_TEMPFAIL
        }
        Outcome::Unreadable(why) => {
            eprintln!("refused: {why}");
            EX_UNAVAILABLE
        }
        Outcome::Failed(why) => {
            eprintln!("failed: {why}");
            EX_UNAVAILABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lines_end_with_a_per_model_summary() {
        let e = Event {
            at: 1_795_000_000_000,
            who: "us-west-2".into(),
            kind: "readiness".into(),
            epoch: None,
            detail: "us-west-2 against us-east-1: critical: prov quota: critical (low) [chat] | models: chat=critical default=ok".into(),
        };
        let mut w = String::new();
        render_readiness(&mut w, std::slice::from_ref(&e));
        assert!(
            w.contains(
                "us-west-2 against us-east-1: critical: prov quota: critical (low) [chat]\n"
            ),
            "{w}"
        );
        assert!(!w.contains("| models:"), "{w}");
        assert!(
            w.contains("    per model: chat critical, default ok\n"),
            "{w}"
        );
        // An older daemon's line has no cells: shown as it is.
        let old = Event {
            detail: "us-west-2 against us-east-1: ready".into(),
            ..e
        };
        let mut w = String::new();
        render_readiness(&mut w, std::slice::from_ref(&old));
        assert!(w.contains("ready") && !w.contains("per model"), "{w}");
    }

    #[test]
    fn the_journal_section_says_what_it_shows() {
        let e = Event {
            at: 1_795_000_000_000,
            who: "us-east-1".into(),
            kind: "decision".into(),
            epoch: Some(2),
            detail: "steady".into(),
        };
        let text = |events: &[Event], truncated, error| {
            let mut w = String::new();
            render_events(&mut w, events, truncated, error);
            w
        };
        // --events 0: nothing asked for, nothing called "older".
        let none = text(&[], true, None);
        assert!(none.contains("not listed"), "{none}");
        assert!(!none.contains("last 0 events"), "{none}");
        let some = text(std::slice::from_ref(&e), true, None);
        assert!(
            some.contains("last 1 events (older ones not shown)"),
            "{some}"
        );
        assert!(some.contains("[epoch 2] steady"), "{some}");
        assert!(text(&[], false, Some("denied")).contains("UNREADABLE: denied"));
    }
}
