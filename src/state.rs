//! The daemon's shared state: what the reconcile loop last saw (read by
//! the admin listener and the router) and the readiness reasons. It has a
//! home of its own so that `admin`, `router` and `daemon` depend on it and
//! not on each other.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::counts;
use crate::ports::Clock;
use crate::ports::traffic::{Counted, InvocationCounts};

use crate::core::control::{self, ControlRecord, LeaseClock, Role};
use crate::core::duty::DutyClock;
use crate::core::health::Tracker;
use crate::core::mono::Mono;
use crate::core::plan::Decision;
use crate::core::quorum::{Tally, Vote};
use crate::metrics::meter::Meter;

/// Why a daemon is not ready, by component. Ready when empty.
#[derive(Debug, Default)]
pub struct Readiness {
    reasons: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    /// A new readiness that is unready because it is `starting`.
    pub fn starting() -> Arc<Self> {
        let r = Arc::new(Self::default());
        r.set_unready("startup", "starting");
        r
    }

    /// Mark `component` unready with a reason.
    pub fn set_unready(&self, component: &'static str, reason: impl Into<String>) {
        self.lock().insert(component, reason.into());
    }

    /// Clear `component`'s reason.
    pub fn set_ready(&self, component: &'static str) {
        self.lock().remove(component);
    }

    /// Every current reason.
    pub fn reasons(&self) -> BTreeMap<&'static str, String> {
        self.lock().clone()
    }

    /// Ready when no component objects.
    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the admin server shows of the last round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundStatus {
    pub at: u64,
    pub round: u64,
    pub region: String,
    /// This daemon's name among its region's daemons (configured, or
    /// generated at start); `None` before the first round.
    pub instance: Option<String>,
    pub role: Option<Role>,
    pub record: Option<ControlRecord>,
    /// This daemon's reads of the record, on its own clock (the lease).
    pub lease: LeaseClock,
    /// The lease rules in force (from config), so the role can be computed
    /// afresh at any moment, even while a round hangs on a partitioned table.
    pub lease_ms: u64,
    /// Per region, the longest `timings.lease` its votes announce
    /// (`quorum::leases`): a new active waits out its predecessor's, never
    /// less than `lease_ms`.
    pub leases: BTreeMap<String, u64>,
    pub wait_out_lease: bool,
    pub tally: Option<Tally>,
    pub decision: Option<Decision>,
    /// Per region: its verdict (down when any signal's tracker is) and the
    /// longest streaks among its signals.
    pub trackers: BTreeMap<String, Tracker>,
    /// Per region, per signal (`route53:<id>`, `probe:<url>`): the trackers.
    pub signals: BTreeMap<String, BTreeMap<String, Tracker>>,
    pub samples: BTreeMap<String, Vec<String>>,
    pub draining: bool,
    /// How long the record has stood at its version, on this daemon's clock.
    pub stalled_ms: u64,
    /// How long the round took (monotonic clock).
    pub took_ms: u64,
    /// The votes the round tallied, each `at` replaced by when this daemon
    /// first saw it (`quorum::Receipts`): vote age is `at_now - at` on this
    /// daemon's clock.
    pub votes: Vec<Vote>,
    /// `timings.vote_freshness`: older votes do not count.
    pub vote_freshness_ms: u64,
    /// This daemon's fleet fingerprint (`config::fleet`), and the fresh
    /// observers whose fingerprints differ (`core::drift`).
    pub fingerprint: String,
    pub drift: crate::core::drift::FleetDrift,
}

/// State shared with the admin server (and, later, the router).
#[derive(Default)]
pub struct Shared {
    pub status: Mutex<RoundStatus>,
    /// Set when this region has been asked to drain (it is no longer active).
    pub draining: AtomicBool,
    /// The control side's counters; every published round is shown to it.
    pub meter: Arc<Meter>,
    /// The router's invocation counts (`metrics::counts`): the router
    /// records, the reconcile loop publishes them in its vote, the cost
    /// task reads them.
    pub traffic: Arc<crate::metrics::counts::Counter>,
    /// The router's per-model observations (`metrics::observed`): the
    /// router records, `GET /traffic` (for `failoverd advise`) reads.
    pub models: Arc<crate::metrics::observed::Observed>,
    /// Restart-only settings that differ in the files from what runs (the
    /// last accepted reload held them: `Config::hold_restart_only`).
    pub restart_pending: Mutex<Vec<String>>,
    /// Which of this region's daemons holds the active duties
    /// (`core::duty`), as this daemon's duty keeper last saw it.
    pub duty: Mutex<DutyView>,
    /// The standby readiness task's last findings for this region
    /// (`control::standby`): empty until its first round, and while this
    /// region is active.
    pub standby: Mutex<Vec<crate::core::standby::Finding>>,
    /// The active region the last readiness round judged against, and
    /// when it ended (this process's monotonic clock): what the vote
    /// publishes with the findings (`control::standby::published`).
    pub standby_round: Mutex<Option<(String, Mono)>>,
}

/// This daemon's view of its region's duty item (`core::duty`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DutyView {
    #[serde(skip)]
    pub clock: DutyClock,
    /// `timings.lease`: a hold runs out this long after its write was sent.
    pub lease_ms: u64,
    /// The version our last successful write made (what a release expects).
    pub version: Option<u64>,
    /// The instance name of the holder as last read (`None`: none, or not
    /// read since this region was last named active).
    pub holder: Option<String>,
}

impl DutyView {
    /// Do we hold the duties at `now` (monotonic clock)?
    pub fn holds(&self, now: Mono) -> bool {
        self.clock.holds(now, self.lease_ms)
    }
}

impl RoundStatus {
    /// This daemon's role at `now` (its monotonic clock, `Clock::mono`),
    /// from the last record it confirmed.
    pub fn role_at(&self, now: Mono) -> Option<Role> {
        let r = self.record.as_ref()?;
        Some(control::role(
            &self.region,
            r,
            now,
            &self.lease,
            self.lease_ms,
            crate::core::quorum::longest_lease(
                self.lease_ms,
                &self.leases,
                r.previous.as_deref().unwrap_or_default(),
            ),
            self.wait_out_lease,
        ))
    }
}

impl Shared {
    /// Shared state whose rounds are counted in `meter`.
    pub fn with_meter(meter: Arc<Meter>) -> Self {
        Self {
            meter,
            ..Self::default()
        }
    }

    /// Look at the last round without copying it.
    pub fn read<T>(&self, f: impl FnOnce(&RoundStatus) -> T) -> T {
        f(&self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The role at `now`. Computed on demand rather than once per round: a
    /// round blocked on an unreachable table must not keep the role alive.
    pub fn role_at(&self, now: Mono) -> Option<Role> {
        self.read(|st| st.role_at(now))
    }

    /// This daemon's view of its region's duty item.
    pub fn duty(&self) -> DutyView {
        self.duty.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Does this daemon hold its region's active duties at `now` (the
    /// record naming the region active is the caller's to check)?
    pub fn holds_duties(&self, now: Mono) -> bool {
        self.duty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .holds(now)
    }

    /// The standby readiness task's last findings.
    pub fn standby(&self) -> Vec<crate::core::standby::Finding> {
        self.standby
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_standby(&self, findings: Vec<crate::core::standby::Finding>) {
        *self.standby.lock().unwrap_or_else(|p| p.into_inner()) = findings;
    }

    /// What the last accepted reload held back until a restart.
    pub fn restart_pending(&self) -> Vec<String> {
        self.restart_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_restart_pending(&self, settings: &[&str]) {
        *self
            .restart_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = settings.iter().map(|s| s.to_string()).collect();
    }

    /// Replace the last round's status.
    pub fn publish(&self, next: RoundStatus) {
        let mut cur = self.status.lock().unwrap_or_else(|p| p.into_inner());
        self.meter
            .observe_round(cur.round != next.round, next.took_ms, next.record.as_ref());
        *cur = next;
    }

    pub fn snapshot(&self) -> RoundStatus {
        self.read(RoundStatus::clone)
    }
}

/// The fleet's measured need over `endpoints` (see
/// [`InvocationCounts::fleet_need`]) from this daemon's router and the
/// votes the reconcile loop last read: what the cost task holds regions to,
/// and what the prepare step scales its target to.
pub fn fleet_need(
    cfg: &Config,
    shared: &Shared,
    endpoints: &[(&str, &str)],
    now: counts::Now,
) -> Option<u32> {
    let now_ms = now.wall_ms;
    let peak = shared.read(|st| {
        counts::fleet_peak_over(
            &counts::region_names(cfg),
            Some(local(cfg, shared, st, now.mono)),
            &st.votes,
            endpoints,
            now_ms,
        )
    });
    counts::need_from(peak, cfg.cost.instance_invocations_per_minute, now_ms)
}

/// This daemon's router for the fleet's sums: its live counter, standing
/// for its own vote only; its region's other daemons' votes are added.
fn local<'a>(
    cfg: &'a Config,
    shared: &'a Shared,
    st: &'a RoundStatus,
    mono: crate::core::mono::Mono,
) -> counts::Local<'a> {
    counts::Local {
        region: &cfg.region,
        instance: st.instance.as_deref(),
        counter: &shared.traffic,
        mono,
    }
}

/// The daemon's [`InvocationCounts`]: its own router's live counter (in
/// `Shared`) and the peers' counts from the votes the reconcile loop last
/// read (on this daemon's clock).
pub struct FleetCounts {
    config: watch::Receiver<Arc<Config>>,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
}

impl FleetCounts {
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        shared: Arc<Shared>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config,
            shared,
            clock,
        }
    }
}

impl InvocationCounts for FleetCounts {
    fn invocations(
        &self,
        region: &str,
        endpoint: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Option<Counted> {
        let cfg = self.config.borrow().clone();
        let mono = self.clock.mono();
        self.shared.read(|st| {
            counts::fleet_counted(
                &counts::region_names(&cfg),
                Some(local(&cfg, &self.shared, st, mono)),
                &st.votes,
                region,
                endpoint,
                window_ms,
                now_ms,
            )
        })
    }

    fn fleet_need(&self, endpoints: &[(&str, &str)]) -> Option<u32> {
        let cfg = self.config.borrow().clone();
        fleet_need(&cfg, &self.shared, endpoints, counts::Now::of(&*self.clock))
    }
}
