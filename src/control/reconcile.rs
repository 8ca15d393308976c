//! The reconcile loop: every `poll_interval`, collect, decide, persist, act.
//!
//! 1. Collect: health signals (`signals`: the fleet's shared Route 53
//!    readings and this daemon's probes, a tracker per signal).
//! 2. Publish this daemon's vote; read every vote and the control record
//!    (under MREC, an active region also reads the other replicas: its lease
//!    is confirmed only by a majority); stamp votes with their receipt time.
//! 3. Decide: `core::plan::plan` (pure), then the DR tiers' gate
//!    (`core::tier::gate_automatic`: no automatic failover when every model
//!    is `tier3`).
//! 4. Act: the executor performs the one action (conditional writes).
//! 5. Tokens addressed to this region (`tokens`).
//!
//! Beside the rounds, in the same task, the lease keeper (`Keeper`) reads
//! the record on a timer of its own whenever the active's last
//! confirmation grows older than a third of the lease, so a round that
//! waits on slow Route 53, probes or SageMaker never costs the lease.
//!
//! Every outside call goes through `crate::ports`. Failures of any call
//! make the round's inputs `Unknown`/`Unreadable`, which the planner turns
//! into "do nothing automatic", never into a decision against a region we
//! merely could not see.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::fleet::Fingerprint;
use crate::config::{Config, Consistency};
use crate::core::control::{self, ControlRecord, LeaseClock, Role};
use crate::core::drift;
use crate::core::duty::{DutyStep, DutyWrite};
use crate::core::health::Verdict;
use crate::core::mono::Mono;
use crate::core::plan::{self, Decision, ExecutionStatus, Inputs, Policy, RecordRead};
use crate::core::quorum::{self, Receipts, Tally, Vote};
use crate::core::tier;
use crate::http::{ShutdownRx, shutdown_signalled};
use crate::ports::store::{ControlStore, Write};
use crate::ports::workflows::execution_arn;
use crate::ports::{Clock, Ports};
use crate::state::{Readiness, RoundStatus, Shared};

use super::executor::{Executor, Outcome};
use super::journal::journal;
use super::signals::{self, Signals};
use super::tokens::TokenDesk;

/// This daemon's name among its region's daemons: `instance` when
/// configured (stable across restarts: its vote item is overwritten, not
/// left behind), else generated at start from `entropy` (`g` and 7 hex
/// digits, 28 random bits): two unconfigured daemons of one region all but
/// never share a name, which would make them overwrite each other's vote.
pub fn instance_name(configured: Option<String>, entropy: u64) -> String {
    configured.unwrap_or_else(|| format!("g{:07x}", entropy & 0x0fff_ffff))
}

fn region_names(cfg: &Config) -> Vec<String> {
    cfg.regions.iter().map(|r| r.name.clone()).collect()
}

/// Build the planner's policy from configuration.
pub fn policy(cfg: &Config) -> Policy {
    Policy {
        priorities: cfg
            .regions
            .iter()
            .map(|r| (r.name.clone(), r.priority))
            .collect(),
        min_failover_interval_ms: cfg.timings.min_failover_interval.as_millis() as u64,
        auto_failback: cfg.policy.auto_failback,
        automatic_allowed: cfg.tables.consistency == Consistency::Strong,
        stuck_failover_ms: cfg.timings.stuck_failover.as_millis() as u64,
        start_timeout_ms: cfg.timings.start_timeout.as_millis() as u64,
        abort_retry_ms: cfg.timings.abort_retry.as_millis() as u64,
        approval: cfg.fleet_approval(),
        approval_timeout_ms: cfg.policy.approval_timeout.as_millis() as u64,
        on_approval_timeout: cfg.policy.on_approval_timeout,
    }
}

/// The round interval while something is in flux: a fifth of the poll,
/// between 100 ms and 1 s (never above the poll).
pub fn fast_interval(cfg: &Config) -> Duration {
    let poll = cfg.timings.poll_interval;
    (poll / 5)
        .clamp(Duration::from_millis(100), Duration::from_secs(1))
        .min(poll)
}

/// How soon the next round runs. Fast ([`fast_interval`]) while a
/// failover is in flight or a token is in hand, and for ten polls after
/// anything moved (a signal's streak, a verdict, the fleet's votes, the
/// record); the poll otherwise. The fast pace costs a round's DynamoDB
/// calls five times a poll for the length of an episode, not for ever: an
/// incident that stops moving (a proposal held for approval, a region
/// down with failover paused) falls back to the poll.
#[derive(Debug, Default)]
struct Pace {
    stirred: Option<tokio::time::Instant>,
    busy: bool,
}

impl Pace {
    fn stir(&mut self, at: tokio::time::Instant) {
        self.stirred = Some(at);
    }

    fn interval(&self, cfg: &Config, now: tokio::time::Instant) -> Duration {
        let poll = cfg.timings.poll_interval;
        let recent = self
            .stirred
            .is_some_and(|t| now.saturating_duration_since(t) < poll * 10);
        if self.busy || recent {
            fast_interval(cfg)
        } else {
            poll
        }
    }
}

/// What moved in a round, for the pace: the votes' views and the record.
#[derive(Debug, Default, PartialEq)]
struct Landmarks {
    views: BTreeMap<String, BTreeMap<String, Verdict>>,
    record: Option<(u64, u64)>,
    streaks: BTreeMap<String, (Verdict, u32)>,
}

/// The round's record read, started beside the signals: when it was sent
/// and when it came back (this daemon's clock), and what it returned (or
/// that it missed the round's deadline).
type EarlyRecord = (
    // Sent and received on the monotonic clock (the lease), received on the
    // wall clock (the round's shared timestamps).
    Mono,
    Mono,
    u64,
    Result<Result<Option<ControlRecord>, crate::ports::PortError>, tokio::time::error::Elapsed>,
);

/// How long each outside call of a round may take (the readings read,
/// the Route 53 turn, each control-table call, describing the execution):
/// a third of the lease (at least a second). What misses it counts as
/// unknown for the round. Probes keep their own timeouts
/// (`health.probe_*_timeout`): a probe that times out is itself the
/// signal (a hung region), and cutting it short would turn that into
/// unknown. The lease is renewed from the record read, which runs beside
/// the signals with this bound, so no signal costs the active its lease.
pub fn round_deadline(cfg: &Config) -> Duration {
    (cfg.timings.lease / 3).max(Duration::from_secs(1))
}

/// How old the active's last confirmation may grow before the lease
/// keeper reads the record itself: a third of the lease. While rounds run
/// at their pace they renew the lease well before that, and the keeper
/// reads nothing; it reads only while a round (or a run of Route 53 turns
/// between rounds) takes longer, or on a standby named active.
pub fn renew_after(cfg: &Config) -> Duration {
    cfg.timings.lease / 3
}

/// Under MREC, does a majority of replicas confirm that `r` (naming us) is
/// current? (Strong mode: one record, always confirmed.) Each replica's read
/// is bounded by `deadline`; one that misses it does not agree.
async fn majority_confirms(
    cfg: &Config,
    replicas: &Replicas,
    r: &ControlRecord,
    deadline: Duration,
) -> bool {
    if cfg.tables.consistency != Consistency::Eventual || r.active != cfg.region {
        return true;
    }
    let own = replicas.own.replica().to_string();
    let others = replicas
        .all
        .iter()
        .filter(|(region, _)| **region != own)
        .map(|(_, s)| s.clone());
    let reads = futures_util::future::join_all(
        others.map(|s| async move { tokio::time::timeout(deadline, s.read_record()).await }),
    )
    .await;
    let agreeing = 1 + reads
        .iter()
        .filter(|x| matches!(x, Ok(Ok(Some(o))) if o.active == cfg.region && o.epoch == r.epoch))
        .count();
    let total = replicas.all.len().max(1);
    let ok = agreeing * 2 > total;
    if !ok {
        debug!(
            agreeing,
            total, "the lease is not confirmed by a majority of replicas"
        );
    }
    ok
}

/// Does a read that returned `read` (naming us) renew the lease of the
/// record `held` names? Only when no failover can have committed between
/// them: the same table incarnation and epoch (every claim raises the
/// epoch, and a switch names another region), with both naming `me`. A read
/// of a later epoch that names us again (a failover away and back) does
/// not: the record of that epoch may ask us to wait out another region's
/// lease, which only the round's read (`LeaseClock::observe`) accounts for.
pub fn renews(me: &str, held: &ControlRecord, read: &ControlRecord) -> bool {
    held.active == me
        && read.active == me
        && held.epoch == read.epoch
        && held.incarnation == read.incarnation
}

/// The round's lease confirmation merged with the keeper's: the later send
/// of the two when the published record is the one `record` is (the keeper
/// renews only that record's lease: [`renews`]).
fn renewed(shared: &Shared, record: Option<&ControlRecord>, own: Option<Mono>) -> Option<Mono> {
    let theirs = shared.read(|st| match (&st.record, record) {
        (Some(p), Some(r)) if renews(&st.region, p, r) => st.lease.confirmed_at,
        _ => None,
    });
    own.max(theirs)
}

/// Keeps the active's lease confirmed on a timer of its own, beside the
/// rounds (issue 19, item 7; docs/lease.md "A round cannot cost the
/// lease").
///
/// Before, the lease was renewed only when a round published, from the
/// record read the round sent at its start. Every outside call of a round
/// has a deadline, but a round's calls come one after another (the readings
/// and probes, then this daemon's Route 53 turn; the vote; the votes; the
/// execution), and Route 53 turns between rounds can push the next round's
/// start: with the deadline at a third of the lease, a round whose
/// Route 53 was black-holed published its renewal up to 6 s after sending
/// the read, the next round started late and had not published when the
/// lease ran out, so a healthy active with a working table stood down (the
/// simulation's `keeps_lease`, 16 seeds in 20,000). A deadline for the
/// whole round would cut the executor and the token desk mid-saga; instead
/// the one read the lease needs no longer waits for anything else.
///
/// The keeper sleeps while the published confirmation is younger than
/// [`renew_after`], so in a healthy fleet it reads nothing; otherwise it
/// reads the record (bounded by [`round_deadline`]) and, when the read
/// names this region in the epoch the published record has ([`renews`]),
/// moves the published `confirmed_at` forward to that read's send. It
/// changes nothing else: the record, `named_since` and `preceded_since`
/// stay the round's, so waiting out a predecessor's lease is decided as
/// before.
///
/// Safe for the lease's own reason (docs/lease.md "Only local clocks"):
/// a read sent at `s` that shows us active in epoch `e` linearized before
/// any switch away from us, so the next active received a record naming it
/// after `s` and waits until past `s + lease`.
struct Keeper {
    config: watch::Receiver<Arc<Config>>,
    clock: Arc<dyn Clock>,
    replicas: Replicas,
    shared: Arc<Shared>,
}

/// This daemon's control-table replica, and every replica by region (MREC
/// confirms the lease on a majority of them).
struct Replicas {
    own: Arc<dyn ControlStore>,
    all: BTreeMap<String, Arc<dyn ControlStore>>,
}

impl Replicas {
    fn of(ports: &Ports) -> Self {
        Self {
            own: ports.store.clone(),
            all: ports.replicas.clone(),
        }
    }
}

impl Keeper {
    async fn run(self) {
        loop {
            let cfg = self.config.borrow().clone();
            let wait = self.due_in(&cfg);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                continue;
            }
            if !self.renew(&cfg).await {
                // Unreadable, or a record that does not renew the lease:
                // the round will see it; try again a fast interval later.
                tokio::time::sleep(fast_interval(&cfg)).await;
            }
        }
    }

    /// How long until a read is due: zero when the published record names
    /// this region and its confirmation is older than [`renew_after`] (or
    /// missing); else until then (a standby looks again a poll later).
    fn due_in(&self, cfg: &Config) -> Duration {
        let after = renew_after(cfg);
        let now = self.clock.mono();
        self.shared.read(|st| {
            let named = st.record.as_ref().is_some_and(|r| r.active == cfg.region);
            match (named, st.lease.confirmed_at) {
                (false, _) => cfg.timings.poll_interval.min(after),
                (true, None) => Duration::ZERO,
                (true, Some(at)) => after.saturating_sub(Duration::from_millis(now.since(at))),
            }
        })
    }

    /// Read the record once; renew the published lease from it when it
    /// may. Returns whether it did.
    async fn renew(&self, cfg: &Config) -> bool {
        let deadline = round_deadline(cfg);
        let sent = self.clock.mono();
        let read = tokio::time::timeout(deadline, self.replicas.own.read_record()).await;
        let record = match read {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return false,
            Ok(Err(e)) => {
                debug!(error = %crate::error_chain(&e), "the lease keeper cannot read the control record");
                return false;
            }
            Err(_) => {
                debug!("the lease keeper's record read missed its deadline");
                return false;
            }
        };
        if !majority_confirms(cfg, &self.replicas, &record, deadline).await {
            return false;
        }
        let mut st = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        let renewable = st
            .record
            .as_ref()
            .is_some_and(|held| renews(&cfg.region, held, &record));
        if renewable && st.lease.confirmed_at.is_none_or(|at| at < sent) {
            st.lease.confirmed_at = Some(sent);
            debug!("the lease keeper renewed the lease");
        }
        renewable
    }
}

/// Keeps this daemon's part in its region's active duties (`core::duty`):
/// while the record names the region active, it takes or renews the
/// region's duty item; once not, it releases the item if it holds it. On a
/// timer of its own beside the rounds (like the [`Keeper`]), so a slow
/// round costs the duties no more than it costs the lease: a renewal every
/// [`renew_after`], a fast interval while named but not holding.
pub(crate) struct DutyKeeper {
    config: watch::Receiver<Arc<Config>>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn ControlStore>,
    shared: Arc<Shared>,
    /// The holder as written: this process (`TokenDesk`'s owner).
    owner: String,
    instance: String,
}

impl DutyKeeper {
    async fn run(&self) {
        loop {
            let cfg = self.config.borrow().clone();
            self.step(&cfg).await;
            let holding = self.shared.holds_duties(self.clock.mono());
            let named = self.named(&cfg);
            let wait = match (named, holding) {
                (true, false) => fast_interval(&cfg),
                (true, true) => renew_after(&cfg).min(cfg.timings.poll_interval),
                (false, _) => cfg.timings.poll_interval.min(renew_after(&cfg)),
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn named(&self, cfg: &Config) -> bool {
        self.shared
            .read(|st| st.record.as_ref().is_some_and(|r| r.active == cfg.region))
    }

    /// One read of the item, and the write it calls for.
    async fn step(&self, cfg: &Config) {
        let named = self.named(cfg);
        let lease_ms = cfg.timings.lease.as_millis() as u64;
        let known_holder = self.shared.duty().version.is_some();
        if !named && !known_holder {
            // Neither named nor holding: nothing to read. (A standby region
            // reads nothing: the duties cost the active region only.)
            self.shared
                .duty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .holder = None;
            return;
        }
        let deadline = round_deadline(cfg);
        let read = tokio::time::timeout(deadline, self.store.read_duty(&cfg.region)).await;
        let received = self.clock.mono();
        let item = match read {
            Ok(Ok(item)) => item,
            Ok(Err(e)) => {
                debug!(error = %crate::error_chain(&e), "cannot read the region's duty item");
                return;
            }
            Err(_) => {
                debug!("the duty item's read missed its deadline");
                return;
            }
        };
        let step = {
            let mut d = self.shared.duty.lock().unwrap_or_else(|p| p.into_inner());
            d.lease_ms = lease_ms;
            d.holder = item
                .as_ref()
                .filter(|i| !i.holder.is_empty())
                .map(|i| i.instance.clone());
            let was = d.clock.holds(received, lease_ms);
            // A holder is waited out for the longest lease the fleet's
            // votes announce (its own may be longer than ours: docs/lease.md).
            let wait_ms = self
                .shared
                .read(|st| quorum::longest_lease(lease_ms, &st.leases, &cfg.region));
            let step = d
                .clock
                .step(&self.owner, named, item.as_ref(), received, wait_ms);
            if was && !d.clock.holds(received, lease_ms) {
                info!(holder = ?d.holder, "no longer holds the region's active duties");
            }
            step
        };
        let (expected, holder) = match step {
            DutyStep::Take { expected } => (expected, self.owner.clone()),
            DutyStep::Release { expected } => (Some(expected), String::new()),
            DutyStep::Wait { .. } | DutyStep::Nothing => {
                if !named {
                    self.shared
                        .duty
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .version = None;
                }
                return;
            }
        };
        let release = holder.is_empty();
        let w = DutyWrite {
            region: cfg.region.clone(),
            expected,
            instance: if release {
                String::new()
            } else {
                self.instance.clone()
            },
            holder,
        };
        let sent = self.clock.mono();
        let r = tokio::time::timeout(deadline, self.store.write_duty(&w)).await;
        let mut d = self.shared.duty.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(Ok(Write::Written)) if release => {
                info!("released the region's active duties (the region is no longer active)");
                d.version = None;
                d.holder = None;
            }
            Ok(Ok(Write::Written)) => {
                if !d.clock.holds(sent, lease_ms) {
                    info!(instance = %self.instance, "holds the region's active duties");
                }
                d.clock.written(sent);
                d.version = Some(expected.map_or(1, |v| v + 1));
                d.holder = Some(self.instance.clone());
            }
            Ok(Ok(Write::Conflict)) => {
                d.clock.lost();
                d.version = None;
            }
            Ok(Err(e)) => {
                debug!(error = %crate::error_chain(&e), "cannot write the region's duty item")
            }
            Err(_) => debug!("the duty item's write missed its deadline"),
        }
    }

    /// On shutdown: stop holding, then release the item so a sibling takes
    /// the duties at once instead of a lease later.
    async fn release(&self) {
        let version = {
            let mut d = self.shared.duty.lock().unwrap_or_else(|p| p.into_inner());
            d.clock.lost();
            d.version.take()
        };
        let Some(v) = version else { return };
        let cfg = self.config.borrow().clone();
        let w = DutyWrite {
            region: cfg.region.clone(),
            expected: Some(v),
            holder: String::new(),
            instance: String::new(),
        };
        let r = tokio::time::timeout(round_deadline(&cfg), self.store.write_duty(&w)).await;
        if let Ok(Ok(Write::Written)) = r {
            info!("released the region's active duties on shutdown");
        }
    }
}

/// What the exchange step saw: the record, the votes and their tally.
struct Seen {
    /// When the record's read came back (this daemon's wall clock)...
    now: u64,
    /// ...and the same moment on its monotonic clock.
    mono: Mono,
    record: RecordRead,
    /// The record this daemon held before this round's read (the planner
    /// re-creates a lost or restored record from it).
    held: Option<ControlRecord>,
    /// How long the record has stood at its version.
    stalled_ms: u64,
    votes: Vec<Vote>,
    tally: Tally,
    /// Fresh observers whose configurations differ from ours.
    drift: drift::FleetDrift,
}

/// The loop's private state.
pub struct Reconciler {
    config: watch::Receiver<Arc<Config>>,
    ports: Ports,
    shared: Arc<Shared>,
    readiness: Arc<Readiness>,
    signals: Signals,
    receipts: Receipts,
    lease: LeaseClock,
    last_role_kind: Option<&'static str>,
    last_record: Option<ControlRecord>,
    last_decision_text: Option<String>,
    /// (record version, when this daemon first saw it): how long the record
    /// has stood still, on this daemon's clock.
    record_seen: Option<(u64, Mono)>,
    desk: TokenDesk,
    /// This daemon's name among its region's daemons (`instance_name`).
    instance: String,
    round: u64,
    pace: Pace,
    landmarks: Landmarks,
    /// The drift last journalled (`FleetDrift::describe`; empty: none).
    last_drift: String,
    /// The fleet fingerprint of the configuration in force, computed once
    /// per configuration (a reload sends a new `Arc`), not every round.
    fleet: Option<FleetPrint>,
    /// Per region, the longest `timings.lease` the votes announced at
    /// their last read (`quorum::leases`): what a new active waits out.
    fleet_leases: BTreeMap<String, u64>,
}

/// A configuration's fleet fingerprint as the votes publish it, and its
/// digest (status, metrics).
struct FleetPrint {
    config: Arc<Config>,
    published: BTreeMap<String, String>,
    digest: String,
}

impl Reconciler {
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        ports: Ports,
        shared: Arc<Shared>,
        readiness: Arc<Readiness>,
    ) -> Self {
        let (region, configured) = {
            let cfg = config.borrow();
            (cfg.region.clone(), cfg.instance.clone())
        };
        // One draw, as before instances (a seed of the simulation replays
        // the same): the claimant's nonce, and the generated name from it.
        let nonce = ports.entropy.next_u64() & 0xffff_ffff;
        let instance = instance_name(configured, nonce);
        // Claims are per process, not per name: a restarted daemon with a
        // configured name waits out its predecessor's claims.
        let owner = format!("{region}/{instance}.{nonce:08x}");
        Self {
            config,
            ports,
            shared,
            readiness,
            signals: Signals::default(),
            receipts: Receipts::default(),
            lease: LeaseClock::default(),
            last_role_kind: None,
            last_record: None,
            fleet_leases: BTreeMap::new(),
            last_decision_text: None,
            record_seen: None,
            desk: TokenDesk::new(owner),
            instance,
            round: 0,
            pace: Pace::default(),
            landmarks: Landmarks::default(),
            last_drift: String::new(),
            fleet: None,
        }
    }

    /// Run rounds until shutdown.
    ///
    /// A round runs every `poll_interval`, or every [`fast_interval`]
    /// while something is in flux (`Pace`: a failover in flight, a token
    /// in hand, a signal or a vote that moved lately), so the steps of a
    /// quorum (a reading, the votes it changes, the claim, each token)
    /// follow each other in a fraction of a poll. Between rounds the
    /// daemon takes its turns of the fleet's Route 53 schedule when they
    /// fall due, and a reading that says something new (not healthy, or
    /// changed) starts a round at once (docs/detection.md).
    pub async fn run(mut self, mut shutdown: ShutdownRx) {
        self.readiness
            .set_unready("quorum", "no round completed yet");
        let keeper = Keeper {
            config: self.config.clone(),
            clock: self.ports.clock.clone(),
            replicas: Replicas::of(&self.ports),
            shared: self.shared.clone(),
        };
        let duty = DutyKeeper {
            config: self.config.clone(),
            clock: self.ports.clock.clone(),
            store: self.ports.store.clone(),
            shared: self.shared.clone(),
            owner: self.desk.owner().to_string(),
            instance: self.instance.clone(),
        };
        // The keepers run beside the rounds in the same task (so a crash or
        // a shutdown ends them all, and a round's publish never races them).
        tokio::select! {
            biased;
            _ = shutdown_signalled(&mut shutdown) => {}
            _ = self.rounds() => {}
            _ = keeper.run() => {}
            _ = duty.run() => {}
        }
        self.desk.abort_all();
        duty.release().await;
    }

    /// Rounds, and between them this daemon's Route 53 turns, for ever.
    async fn rounds(&mut self) {
        loop {
            let cfg = self.config.borrow().clone();
            let started = self.ports.clock.monotonic();
            self.round += 1;
            let span = info_span!("round", n = self.round);
            self.one_round().instrument(span).await;
            let next = started + self.pace.interval(&cfg, self.ports.clock.monotonic());
            // Route 53 turns until the next round is due.
            loop {
                let now = self.ports.clock.now_ms();
                let mono = self.ports.clock.monotonic();
                let turn = self
                    .signals
                    .next_turn_at(&cfg, now, self.ports.clock.mono_at(mono))
                    .map(|at| mono + Duration::from_millis(at - now))
                    .filter(|at| *at < next);
                tokio::time::sleep_until(turn.unwrap_or(next)).await;
                if turn.is_none() {
                    break;
                }
                let now = self.ports.clock.now_ms();
                let news = tokio::time::timeout(
                    round_deadline(&cfg),
                    self.signals.turn(&cfg, &self.ports, now),
                )
                .await
                .unwrap_or(false);
                if news {
                    debug!("a Route 53 reading says something new: a round now");
                    self.pace.stir(self.ports.clock.monotonic());
                    break;
                }
            }
        }
    }

    /// Journal as this daemon: `who` is the region (readers key on it),
    /// the detail names the daemon among the region's.
    async fn journal(&self, cfg: &Config, kind: &str, epoch: Option<u64>, detail: String) {
        let at = self.ports.clock.now_ms();
        let detail = format!("{detail} [daemon {}]", self.instance);
        journal(&*self.ports.store, at, &cfg.region, kind, epoch, detail).await;
    }

    /// One round: collect, exchange, decide, act, work tokens, publish.
    async fn one_round(&mut self) {
        let began = self.ports.clock.monotonic();
        let cfg = self.config.borrow().clone();
        let now = self.ports.clock.now_ms();
        // The record is read at the start of the round, beside the signals
        // (not after them): the lease is renewed from this read, so a slow
        // Route 53, probe or readings read costs this round's samples, never
        // the active's lease. Both are bounded by the round's deadline.
        let deadline = round_deadline(&cfg);
        let record_read = {
            let store = self.ports.store.clone();
            let clock = self.ports.clock.clone();
            async move {
                let sent = clock.mono();
                let r = tokio::time::timeout(deadline, store.read_record()).await;
                (sent, clock.mono(), clock.now_ms(), r)
            }
        };
        let (sig, early) = tokio::join!(self.collect(&cfg, now), record_read);
        let print = self.fleet_print(&cfg);
        let (published, digest) = (print.published.clone(), print.digest.clone());
        let seen = self
            .exchange(&cfg, &sig, now, early, deadline, published)
            .await;
        self.journal_drift(&cfg, &seen.drift).await;
        let decision = self.decide(&cfg, &seen).await;
        self.act(&cfg, &decision, seen.now).await;
        // Tokens.
        let record = match &seen.record {
            RecordRead::Found(r) => Some(r),
            _ => None,
        };
        let tokens = self
            .desk
            .round(
                &cfg,
                &self.ports,
                &self.shared,
                record,
                &seen.tally,
                (&seen.votes, seen.now, seen.mono),
            )
            .await;
        self.pace(&cfg, &sig, &seen, &decision, tokens);
        self.publish(&cfg, seen, sig.why, decision, began, digest);
    }

    /// Set the pace of the next rounds from what this one saw.
    fn pace(
        &mut self,
        cfg: &Config,
        sig: &signals::Round,
        seen: &Seen,
        decision: &Decision,
        tokens: bool,
    ) {
        let failing_over = matches!(&seen.record,
            RecordRead::Found(r) if r.phase == control::Phase::FailingOver);
        self.pace.busy = failing_over || tokens;
        let landmarks = Landmarks {
            views: seen
                .votes
                .iter()
                .filter(|v| seen.tally.fresh_observers.contains(&v.observer))
                .map(|v| (v.who(), v.view.clone()))
                .collect(),
            record: match &seen.record {
                RecordRead::Found(r) => Some((r.epoch, r.version)),
                _ => None,
            },
            // A streak towards the other verdict, per signal (a streak that
            // confirms the verdict grows every round and is not news).
            streaks: self
                .signals
                .trackers()
                .iter()
                .flat_map(|(region, by_signal)| {
                    by_signal.iter().map(move |(key, t)| {
                        let towards = match t.verdict {
                            Verdict::Up => t.bad_streak,
                            Verdict::Down => t.good_streak,
                        };
                        (format!("{region} {key}"), (t.verdict, towards))
                    })
                })
                .collect(),
        };
        let moved = landmarks != self.landmarks
            || !sig.changes.is_empty()
            || matches!(decision, Decision::Act { .. });
        self.landmarks = landmarks;
        if moved {
            let fast = fast_interval(cfg);
            if self.pace.interval(cfg, self.ports.clock.monotonic()) > fast {
                debug!(
                    interval_ms = fast.as_millis() as u64,
                    "something moved: rounds at the fast pace"
                );
            }
            self.pace.stir(self.ports.clock.monotonic());
        }
    }

    /// Step 1, collect: this daemon's signals of every region, journalling each
    /// verdict that changed and marking readiness on the checks' problems.
    async fn collect(&mut self, cfg: &Config, now: u64) -> signals::Round {
        let sig = self.signals.collect(cfg, &self.ports, now).await;
        for (region, verdict, why) in &sig.changes {
            let kind = match verdict {
                Verdict::Down => "observed_down",
                Verdict::Up => "observed_up",
            };
            info!(%region, ?verdict, "verdict changed");
            let detail = format!("{} sees {region} {verdict:?}: {why}", cfg.region);
            self.journal(cfg, kind, None, detail).await;
        }
        if sig.problems.is_empty() {
            self.readiness.set_ready("health_checks");
        } else {
            self.readiness
                .set_unready("health_checks", sig.problems.join("; "));
        }
        sig
    }

    /// Step 2, exchange: publish our vote; read everyone's and the record; renew
    /// the lease from the read; tally.
    async fn exchange(
        &mut self,
        cfg: &Config,
        sig: &signals::Round,
        now: u64,
        early: EarlyRecord,
        deadline: Duration,
        published: BTreeMap<String, String>,
    ) -> Seen {
        let seen_epoch = self.last_record.as_ref().map(|r| r.epoch).unwrap_or(0);
        let vote = Vote {
            observer: cfg.region.clone(),
            instance: Some(self.instance.clone()),
            at: now,
            seen_epoch,
            view: sig.view.clone(),
            traffic: self.shared.traffic.traffic(self.ports.clock.mono()),
            fleet: Some(published),
            readiness: crate::control::standby::published(
                &cfg.region,
                &self.shared,
                self.ports.clock.mono(),
            ),
            lease_ms: Some(cfg.timings.lease.as_millis() as u64),
        };
        let store = self.ports.store.clone();
        let late = |what: &str| {
            format!(
                "{what}: no answer within the round's deadline ({} ms)",
                deadline.as_millis()
            )
        };
        let mut vote_error = match tokio::time::timeout(deadline, store.put_vote(&vote)).await {
            Ok(r) => r.err().map(|e| crate::error_chain(&e)),
            Err(_) => Some(late("publishing the vote")),
        };
        let votes = match tokio::time::timeout(deadline, store.read_votes()).await {
            Ok(r) => r.map_err(|e| crate::error_chain(&e)),
            Err(_) => Err(late("reading the votes")),
        };
        // The read shows the record as of some moment after it was sent:
        // count the lease from the send, never from the answer.
        let (read_sent, received, now, record) = early;
        let record = match record {
            Ok(r) => r.map_err(|e| crate::error_chain(&e)),
            Err(_) => Err(late("reading the control record")),
        };
        let held = self.last_record.clone();
        let record = match record {
            Ok(Some(r)) => {
                let confirmed =
                    majority_confirms(cfg, &Replicas::of(&self.ports), &r, deadline).await;
                // Under MREC the record naming us is known once the other
                // replicas' answers are back, not at our own replica's:
                // a wait of the lease counts from then (`LeaseClock::observe`).
                let known = match cfg.tables.consistency {
                    Consistency::Eventual => self.ports.clock.mono(),
                    Consistency::Strong => received,
                };
                let seen = self.last_record.as_ref().map(|r| r.epoch);
                self.lease
                    .observe(&cfg.region, &r, seen, read_sent, known, confirmed);
                // A record older than our copy of the same incarnation (a
                // restored table): keep the copy, which the planner
                // re-creates the record from.
                let restored = held
                    .as_ref()
                    .is_some_and(|h| h.incarnation == r.incarnation && h.version > r.version);
                if !restored {
                    self.last_record = Some(r.clone());
                }
                RecordRead::Found(r)
            }
            Ok(None) => RecordRead::Missing,
            Err(e) => RecordRead::Unreadable(e),
        };
        let stalled_ms = match &record {
            RecordRead::Found(r) => match self.record_seen {
                Some((v, since)) if v == r.version => received.since(since),
                _ => {
                    self.record_seen = Some((r.version, received));
                    0
                }
            },
            _ => 0,
        };
        let votes = match votes {
            Ok(v) => {
                // Every vote item, fresh or not: the old active's last vote
                // is what says how long it may still act.
                self.fleet_leases = quorum::leases(&v);
                v
            }
            Err(e) => {
                vote_error.get_or_insert(e);
                Vec::new()
            }
        };
        // A vote we could not write must not count for us even if an old
        // copy is fresh; nor our region's other daemons' votes, for us: a
        // daemon that cannot write its vote decides nothing (its sibling,
        // which can, decides for the region).
        let votes: Vec<Vote> = if vote_error.is_some() {
            votes
                .into_iter()
                .filter(|v| v.observer != cfg.region)
                .collect()
        } else {
            votes
        };
        // Freshness on our clock: when we first saw each vote.
        let votes = self.receipts.effective_at(&votes, now, received);
        let tally = super::operator::tally(
            cfg,
            &votes,
            now,
            super::operator::Seat::Observer(&cfg.region),
        );
        self.mark_quorum(&tally, vote_error.as_deref(), &record);
        // Drift among the votes that stand for their regions (a dead
        // daemon's stale vote must not withhold failover).
        let standing: Vec<Vote> = quorum::per_region(&region_names(cfg), &votes)
            .into_iter()
            .cloned()
            .collect();
        // And, just after our start, the votes whose age we could only
        // guess from their writers' clocks: a slow clock is not a silence.
        let mut judged = tally.fresh_observers.clone();
        let window = cfg.timings.vote_freshness.as_millis() as u64;
        for o in self.receipts.guessed_within(received, window) {
            if !judged.contains(&o) {
                judged.push(o);
            }
        }
        let drift = drift::drift(
            vote.fleet.as_ref().unwrap_or(&BTreeMap::new()),
            &standing,
            &judged,
        );
        Seen {
            now,
            mono: received,
            record,
            held,
            stalled_ms,
            votes,
            tally,
            drift,
        }
    }

    /// The fingerprint of `cfg`, from the cache while `cfg` is in force.
    fn fleet_print(&mut self, cfg: &Arc<Config>) -> &FleetPrint {
        let print = match self.fleet.take() {
            Some(p) if Arc::ptr_eq(&p.config, cfg) => p,
            _ => {
                let f = Fingerprint::of(cfg);
                FleetPrint {
                    config: cfg.clone(),
                    published: f.published(),
                    digest: f.digest(),
                }
            }
        };
        self.fleet.insert(print)
    }

    /// Log and journal a change in the fleet's configuration drift (once
    /// per change, not every round).
    async fn journal_drift(&mut self, cfg: &Config, d: &drift::FleetDrift) {
        let text = d.describe();
        if self.last_drift == text {
            return;
        }
        if text.is_empty() {
            info!("the fleet's configurations agree again");
            self.journal(
                cfg,
                "config_agrees",
                None,
                format!("{}: the fleet's configurations agree", cfg.region),
            )
            .await;
        } else {
            warn!(drift = %text, "the fleet's configurations differ: automatic failover is withheld");
            self.journal(
                cfg,
                "config_drift",
                None,
                format!(
                    "{} sees configuration drift: {text}; automatic failover withheld",
                    cfg.region
                ),
            )
            .await;
        }
        self.last_drift = text;
    }

    /// Readiness from the exchange: votes and record readable, a quorum of
    /// fresh observers.
    fn mark_quorum(&self, tally: &Tally, vote_error: Option<&str>, record: &RecordRead) {
        match (&tally.no_quorum, vote_error, record) {
            (_, Some(e), _) => self
                .readiness
                .set_unready("quorum", format!("cannot publish or read votes: {e}")),
            (_, _, RecordRead::Unreadable(e)) => self
                .readiness
                .set_unready("quorum", format!("cannot read the control record: {e}")),
            (Some(q), _, _) => self
                .readiness
                .set_unready("quorum", format!("no quorum of fresh observers: {q:?}")),
            (None, None, _) => self.readiness.set_ready("quorum"),
        }
    }

    /// Step 3, decide: the planner on what the exchange saw (and the execution's
    /// status while a failover is in flight), then the DR tiers' gate.
    async fn decide(&self, cfg: &Config, seen: &Seen) -> Decision {
        let execution = match &seen.record {
            RecordRead::Found(r) if r.phase == control::Phase::FailingOver => {
                self.execution_status(cfg, r).await
            }
            _ => None,
        };
        let policy = policy(cfg);
        // Every standby's readiness, from the fresh votes (docs/readiness.md).
        let readiness = match &seen.record {
            RecordRead::Found(r) => crate::core::standby::fleet_readiness(
                &seen.votes,
                &seen.tally.fresh_observers,
                &r.active,
                crate::core::standby::stale_after_ms(cfg.cost.readiness_interval),
            ),
            _ => Default::default(),
        };
        let decision = plan::plan(&Inputs {
            now: seen.now,
            me: &cfg.region,
            tally: &seen.tally,
            record: &seen.record,
            execution,
            stalled_ms: seen.stalled_ms,
            policy: &policy,
            request: None,
            held: seen.held.as_ref(),
            fleet_epoch: quorum::board_epoch(&region_names(cfg), &seen.votes),
            readiness: &readiness,
        });
        // DR tiers: when every configured model is tier3, an automatic
        // failover becomes an idle decision (core::tier::gate_automatic);
        // so does one while the fleet's configurations differ
        // (core::drift::gate).
        let decision = tier::gate_automatic(decision, cfg.cost.fleet_tier(&cfg.models));
        drift::gate(decision, &seen.drift)
    }

    /// Step 4, act: perform the action, or journal an idle reason when it changed.
    async fn act(&mut self, cfg: &Config, decision: &Decision, now: u64) {
        match decision {
            Decision::Act { action } => {
                info!(?action, "acting");
                let exec = Executor {
                    config: cfg,
                    ports: &self.ports,
                    who: cfg.region.clone(),
                };
                match exec.apply(action, now).await {
                    Ok(Outcome::Done(what)) => info!(%what, "done"),
                    Ok(Outcome::Lost) => {
                        info!("another daemon moved the record first; will re-read next round")
                    }
                    Err(e) => {
                        warn!(error = %crate::error_chain(&e), "action failed; will retry next round")
                    }
                }
                self.last_decision_text = None;
            }
            Decision::Idle { why } | Decision::Refuse { why } => {
                if self.last_decision_text.as_deref() != Some(why.as_str()) {
                    debug!(%why, "idle");
                    if self.last_decision_text.is_some() || !why.starts_with("steady") {
                        self.journal(cfg, "decision", None, why.clone()).await;
                    }
                    self.last_decision_text = Some(why.clone());
                }
            }
        }
    }

    /// Step 5, publish what the round saw (the admin listener and the router read
    /// it), logging a change of role.
    fn publish(
        &mut self,
        cfg: &Config,
        seen: Seen,
        samples: BTreeMap<String, Vec<String>>,
        decision: Decision,
        began: tokio::time::Instant,
        digest: String,
    ) {
        if let Some(r) = &self.last_record
            && r.active == cfg.region
        {
            self.shared.draining.store(false, Ordering::Relaxed);
        }
        self.lease.confirmed_at = renewed(
            &self.shared,
            self.last_record.as_ref(),
            self.lease.confirmed_at,
        );
        let mut next = RoundStatus {
            at: seen.now,
            round: self.round,
            region: cfg.region.clone(),
            instance: Some(self.instance.clone()),
            role: None,
            record: self.last_record.clone(),
            lease: self.lease,
            lease_ms: cfg.timings.lease.as_millis() as u64,
            leases: self.fleet_leases.clone(),
            wait_out_lease: cfg.policy.wait_out_lease,
            tally: Some(seen.tally),
            decision: Some(decision),
            trackers: self.signals.region_summary(),
            signals: self.signals.trackers().clone(),
            samples,
            draining: self.shared.draining.load(Ordering::Relaxed),
            stalled_ms: seen.stalled_ms,
            took_ms: self.ports.clock.since(began).as_millis() as u64,
            votes: seen.votes,
            vote_freshness_ms: cfg.timings.vote_freshness.as_millis() as u64,
            fingerprint: digest,
            drift: seen.drift,
        };
        next.role = next.role_at(self.ports.clock.mono());
        let kind = next.role.as_ref().map(Role::kind);
        if kind != self.last_role_kind {
            self.log_role(next.role.as_ref());
            self.last_role_kind = kind;
        }
        self.shared.publish(next);
    }

    fn log_role(&self, role: Option<&Role>) {
        match role {
            Some(Role::Active) => {
                info!(epoch = ?self.last_record.as_ref().map(|r| r.epoch), "acting as the active region")
            }
            Some(Role::Waiting { remaining_ms }) => info!(
                remaining_ms,
                "named active: waiting out the previous active's lease"
            ),
            Some(Role::StoodDown { unconfirmed_ms }) => warn!(
                unconfirmed_ms,
                "stood down as active: the control record could not be confirmed within the lease"
            ),
            Some(Role::Standby { active }) => info!(%active, "standing by"),
            None => {}
        }
    }

    /// The status of the record's execution, asked of the initiator
    /// region's Step Functions (any daemon may ask: settling a failover whose
    /// execution ended does not depend on the initiator being alive).
    async fn execution_status(&self, cfg: &Config, r: &ControlRecord) -> Option<ExecutionStatus> {
        // Where the claim says it was started; records claimed before the
        // claim wrote that: the initiator's configured state machine.
        let sm = match &r.state_machine {
            Some(sm) => sm.as_str(),
            None => &cfg.region(r.initiator.as_deref()?)?.state_machine_arn,
        };
        let arn = execution_arn(sm, r.execution.as_deref()?);
        let describe = self.ports.workflows.describe(&arn);
        match tokio::time::timeout(round_deadline(cfg), describe).await {
            Ok(Ok(e)) => Some(e.status),
            Ok(Err(e)) => {
                warn!(error = %crate::error_chain(&e), "cannot describe the failover execution");
                None
            }
            Err(_) => {
                warn!("describing the failover execution missed the round's deadline");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{RecordWrite, apply};
    use crate::core::tokens::TokenStatus;
    use crate::ports::store::Write;
    use crate::ports::store::{Event, Page, PublishedReading, TokenItem};
    use crate::ports::{PortError, SystemClock};
    use async_trait::async_trait;

    /// A replica whose record read answers `record` after `latency`; the
    /// keeper calls nothing else.
    struct Replica {
        record: ControlRecord,
        latency: Duration,
    }

    #[async_trait]
    impl ControlStore for Replica {
        fn replica(&self) -> &str {
            "us-east-1"
        }
        async fn read_record(&self) -> Result<Option<ControlRecord>, PortError> {
            tokio::time::sleep(self.latency).await;
            Ok(Some(self.record.clone()))
        }
        async fn write_record(&self, _: &RecordWrite) -> Result<Write, PortError> {
            unreachable!("the keeper only reads")
        }
        async fn put_vote(&self, _: &Vote) -> Result<(), PortError> {
            unreachable!()
        }
        async fn read_duty(
            &self,
            _: &str,
        ) -> Result<Option<crate::core::duty::DutyItem>, PortError> {
            unreachable!()
        }
        async fn write_duty(&self, _: &crate::core::duty::DutyWrite) -> Result<Write, PortError> {
            unreachable!()
        }
        async fn read_votes(&self) -> Result<Vec<Vote>, PortError> {
            unreachable!()
        }
        async fn put_reading(&self, _: &PublishedReading) -> Result<(), PortError> {
            unreachable!()
        }
        async fn read_readings(&self) -> Result<Vec<PublishedReading>, PortError> {
            unreachable!()
        }
        async fn pending_tokens(&self, _: &str, _: u64) -> Result<Vec<TokenItem>, PortError> {
            unreachable!()
        }
        async fn tokens(&self, _: usize, _: u64) -> Result<Page<TokenItem>, PortError> {
            unreachable!()
        }
        async fn claim_token(&self, _: &str, _: &str, _: u64, _: u64) -> Result<Write, PortError> {
            unreachable!()
        }
        async fn extend_claim(&self, _: &str, _: &str, _: u64, _: u64) -> Result<Write, PortError> {
            unreachable!()
        }
        async fn finish_token(
            &self,
            _: &str,
            _: TokenStatus,
            _: &str,
            _: u64,
        ) -> Result<Write, PortError> {
            unreachable!()
        }
        async fn journal(&self, _: &Event) -> Result<(), PortError> {
            unreachable!()
        }
        async fn events(&self, _: usize, _: u64) -> Result<Page<Event>, PortError> {
            unreachable!()
        }
    }

    /// The shipped us-east-1 configuration (lease 30 s).
    fn config() -> Arc<Config> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
        let files = [dir.join("base.toml"), dir.join("us-east-1.toml")];
        Arc::new(crate::config::load_layers(&files, &Default::default()).expect("shipped config"))
    }

    fn record(epoch: u64, active: &str) -> ControlRecord {
        let mut r = apply(
            None,
            &RecordWrite::Initialize {
                active: "us-east-1".into(),
                incarnation: "inc".into(),
                by: "us-east-1".into(),
                at: 1,
                reason: "test".into(),
            },
        )
        .unwrap();
        r.epoch = epoch;
        r.active = active.into();
        r
    }

    /// What a round published: `held`, confirmed by a read sent now.
    fn published(cfg: &Config, held: ControlRecord) -> Arc<Shared> {
        let shared = Arc::new(Shared::default());
        shared.publish(RoundStatus {
            region: cfg.region.clone(),
            record: Some(held),
            lease: LeaseClock {
                confirmed_at: Some(SystemClock.mono()),
                ..LeaseClock::default()
            },
            lease_ms: cfg.timings.lease.as_millis() as u64,
            wait_out_lease: true,
            ..RoundStatus::default()
        });
        shared
    }

    /// The role after a round has been stuck for two leases (no round
    /// published meanwhile) with the keeper running beside it, against a
    /// table whose record read answers `read` after `latency`.
    async fn role_after_a_stuck_round(
        held: ControlRecord,
        read: ControlRecord,
        latency: Duration,
    ) -> Role {
        let cfg = config();
        let shared = published(&cfg, held);
        let (_tx, rx) = watch::channel(cfg.clone());
        let own: Arc<dyn ControlStore> = Arc::new(Replica {
            record: read,
            latency,
        });
        let keeper = Keeper {
            config: rx,
            clock: Arc::new(SystemClock),
            replicas: Replicas {
                own: own.clone(),
                all: BTreeMap::from([("us-east-1".to_string(), own)]),
            },
            shared: shared.clone(),
        };
        let stuck = tokio::time::sleep(cfg.timings.lease * 2);
        tokio::select! {
            _ = stuck => {}
            _ = keeper.run() => unreachable!("the keeper runs for ever"),
        }
        shared.role_at(SystemClock.mono()).expect("a record")
    }

    /// Issue 19, item 7: a round that hangs (a black-holed Route 53 turn,
    /// probes waiting out their timeouts) for longer than the lease no
    /// longer costs a healthy active its lease: the keeper reads the record
    /// on its own timer and renews the published confirmation. Without it
    /// the confirmation is two leases old and the active stands down.
    #[tokio::test(start_paused = true)]
    async fn the_keeper_keeps_the_lease_while_a_round_hangs() {
        let r = record(3, "us-east-1");
        let role = role_after_a_stuck_round(r.clone(), r, Duration::from_millis(50)).await;
        assert_eq!(role, Role::Active);
    }

    /// The keeper never renews what it must not: a read that names another
    /// region, one of another epoch (a failover away and back, whose
    /// record may ask us to wait out the other region's lease), and a read
    /// slower than the round's deadline all leave the lease to run out.
    #[tokio::test(start_paused = true)]
    async fn the_keeper_renews_only_the_published_record_in_time() {
        let held = record(3, "us-east-1");
        for (read, latency, what) in [
            (record(3, "us-west-2"), 50, "another region named"),
            (record(5, "us-east-1"), 50, "a later epoch"),
            (record(3, "us-east-1"), 11_000, "slower than the deadline"),
        ] {
            let role =
                role_after_a_stuck_round(held.clone(), read, Duration::from_millis(latency)).await;
            assert!(matches!(role, Role::StoodDown { .. }), "{what}: {role:?}");
        }
    }

    #[test]
    fn renews_needs_the_same_incarnation_epoch_and_us() {
        let held = record(3, "us-east-1");
        assert!(renews("us-east-1", &held, &held));
        assert!(!renews("us-west-2", &held, &held));
        assert!(!renews("us-east-1", &held, &record(4, "us-east-1")));
        assert!(!renews("us-east-1", &held, &record(3, "us-west-2")));
        let mut other = held.clone();
        other.incarnation = "re-created".into();
        assert!(!renews("us-east-1", &held, &other));
    }
}
