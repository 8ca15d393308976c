//! Invocation counts per `(region, endpoint)`, for the cost task
//! (`ports::traffic::InvocationCounts`): this router's own [`Counter`],
//! what it publishes in its vote ([`Counter::traffic`]), and the fleet's
//! sum over every region's published counts ([`fleet_counted`],
//! [`FleetCounts`] in the daemon, [`VoteCounts`] for `failoverd cost`).
//!
//! # What is counted
//!
//! Every attempt the router sends to an endpoint (`InvokeEndpoint`, or
//! `InvokeEndpointAsync` for the batch path): first attempts, retries and
//! hedges alike, whatever their result. An endpoint that is being invoked
//! is not idle however its calls end, and over-counting only errs the safe
//! way: idle detection sees traffic, and the measured need is higher.
//!
//! # Buckets and memory
//!
//! Each endpoint has two rings of fixed size, bucketed on unix time
//! (from the router's `Clock` port; a clock that steps back is held at its
//! highest reading so a count never lands in an older bucket): 61 one-minute
//! buckets (windows up to an hour, to the minute) and 169 one-hour buckets
//! (windows up to 7 days, `cost.idle.window`'s maximum, to the hour). A
//! window is answered from the finest ring that spans it, *rounded outward*
//! to whole buckets: never fewer invocations than the window had. About
//! 3.7 KB per endpoint, however long the process runs; endpoints with
//! nothing in 7 days are dropped when the vote is built, so the map holds
//! only endpoints invoked in the last 7 days (a subset of the configured
//! ones). A window longer than 7 days is not answered (`None`).
//!
//! The counter counts from when the router started (`Counter::start`): its
//! gap-free start is the process start. Before that it publishes nothing,
//! which readers take as "not counted".
//!
//! # The fleet's sum, and the rules that keep it conservative
//!
//! Cross-region routing sends traffic to other regions' endpoints, so the
//! cost task needs every router's counts. Each daemon puts a compact
//! summary in its vote ([`Traffic`]: per endpoint, how long ago its last
//! invocation was and sums over fixed trailing windows, all relative to the
//! vote's own time so readers place them on their own clock). The fleet's
//! answer for a window `W` before `now` ([`fleet_counted`]), over every
//! configured region's router:
//!
//! 1. a region whose vote is missing, or carries no counts (not started,
//!    an older daemon, undecodable): the answer is `None`, "not counted";
//!    nothing is idle until every router's counts are known;
//! 2. `since_ms` is the *latest* of the routers' gap-free starts (a router
//!    that restarted lost its earlier counts, so the fleet counted without
//!    a gap only since then);
//! 3. a router's invocations in the window: zero when its last invocation
//!    ended at or before `now - W`; otherwise its sum over the smallest
//!    published window that covers `W` plus the vote's age (at least 1).
//!    A vote stamped after the reader's `now` counts as made `now`.
//!
//! A dead router (its vote goes stale and stays) serves nothing after its
//! last vote, so rule 3 is exactly right for it: its invocations before
//! death stay in every window that reaches back to them (through the
//! `last` time, on the reader's clock), and age out once `now - W` passes
//! them. Its gap-free start stays what it was (it counted up to its death;
//! after it, there is nothing to count). A router that comes back is a new
//! process with a later start (rule 2), which holds idle detection off for
//! a window, so what it counted before it died can never be forgotten
//! inside a window.
//!
//! What this cannot see: invocations a *live* peer sent after its last
//! vote (at most one reconcile round plus the vote freshness, seconds; a
//! request arriving just after a decision is the same race for the local
//! router), and invocations by a router that is cut off from the control
//! table but still reaches SageMaker (its vote goes stale, so it is taken
//! for dead). Idle detection also reads CloudWatch `Invocations` where it
//! can (`core::idle` rule 7), which sees both.
//!
//! # The active region's need
//!
//! [`need_from`]: the fleet's invocations of the active region's endpoint
//! over the last [`NEED_WINDOW_MS`] (5 minutes), as a per-minute rate,
//! divided by `cost.instance_invocations_per_minute` (what one instance
//! serves), rounded up. `None` when that key is unset, the record is
//! unknown, or the fleet has not counted the whole 5 minutes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::Config;
use crate::core::quorum::{EndpointTraffic, TRAILING_MS, Traffic, Vote};
use crate::ports::clock::Clock;
use crate::ports::traffic::{Counted, InvocationCounts};
use crate::state::Shared;

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
/// The longest window answered: 7 days (`cost.idle.window`'s maximum).
pub const MAX_WINDOW_MS: u64 = 7 * 86_400_000;
/// The window the active region's need is measured over.
pub const NEED_WINDOW_MS: u64 = 5 * MINUTE_MS;
/// Minute buckets: an hour, rounded outward, spans at most 61.
const MINUTES: usize = 61;
/// Hour buckets: 7 days, rounded outward, spans at most 169.
const HOURS: usize = 169;

/// A ring of `N` buckets of `width` ms, each stamped with its bucket number
/// (plus one: 0 is empty) so a slot left from an older lap reads as zero.
#[derive(Debug, Clone)]
struct Ring<const N: usize> {
    width: u64,
    stamp: [u64; N],
    count: [u64; N],
}

impl<const N: usize> Ring<N> {
    fn new(width: u64) -> Self {
        Self {
            width,
            stamp: [0; N],
            count: [0; N],
        }
    }

    fn slot(&self, bucket: u64) -> usize {
        (bucket % N as u64) as usize
    }

    fn add(&mut self, now: u64) {
        let b = now / self.width;
        let i = self.slot(b);
        if self.stamp[i] != b + 1 {
            self.stamp[i] = b + 1;
            self.count[i] = 0;
        }
        self.count[i] += 1;
    }

    /// The sum of the buckets overlapping `[from, now]`; `None` when they
    /// are more than the ring holds.
    fn sum(&self, from: u64, now: u64) -> Option<u64> {
        let (a, z) = (from / self.width, now / self.width);
        if z.saturating_sub(a) + 1 > N as u64 {
            return None;
        }
        Some(
            (a..=z)
                .map(|b| {
                    let i = self.slot(b);
                    if self.stamp[i] == b + 1 {
                        self.count[i]
                    } else {
                        0
                    }
                })
                .sum(),
        )
    }
}

/// One endpoint's buckets.
#[derive(Debug, Clone)]
struct Buckets {
    minutes: Ring<MINUTES>,
    hours: Ring<HOURS>,
    /// The newest minute (bucket number) with an invocation.
    newest_minute: u64,
}

impl Buckets {
    fn new() -> Self {
        Self {
            minutes: Ring::new(MINUTE_MS),
            hours: Ring::new(HOUR_MS),
            newest_minute: 0,
        }
    }

    fn add(&mut self, now: u64) {
        self.minutes.add(now);
        self.hours.add(now);
        self.newest_minute = self.newest_minute.max(now / MINUTE_MS);
    }

    /// Invocations in the `window` before `now`, rounded outward to whole
    /// buckets of the finest ring that spans it (`window <= MAX_WINDOW_MS`).
    fn window(&self, window: u64, now: u64) -> u64 {
        let from = now.saturating_sub(window);
        self.minutes
            .sum(from, now)
            .or_else(|| self.hours.sum(from, now))
            .unwrap_or(0)
    }
}

/// This router's counts.
#[derive(Debug, Default)]
pub struct Counter {
    /// Unix ms when counting started (0: not started).
    started_ms: AtomicU64,
    /// The highest clock reading seen: a clock that steps back is held here.
    high_water_ms: AtomicU64,
    endpoints: Mutex<HashMap<String, Buckets>>,
}

impl Counter {
    /// Start counting at `now_ms` (the router's start); later calls keep
    /// the first start.
    pub fn start(&self, now_ms: u64) {
        let _ = self.started_ms.compare_exchange(
            0,
            now_ms.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.high_water_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// Since when this counter has counted without a gap; `None` before
    /// [`Counter::start`].
    pub fn since_ms(&self) -> Option<u64> {
        match self.started_ms.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }

    fn now(&self, now_ms: u64) -> u64 {
        self.high_water_ms
            .fetch_max(now_ms, Ordering::Relaxed)
            .max(now_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Buckets>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One attempt sent to `endpoint` in `region` at `now_ms`.
    pub fn record(&self, region: &str, endpoint: &str, now_ms: u64) {
        self.start(now_ms);
        let now = self.now(now_ms);
        self.lock()
            .entry(Traffic::key(region, endpoint))
            .or_insert_with(Buckets::new)
            .add(now);
    }

    /// This router's invocations of `endpoint` in `region` in the
    /// `window_ms` before `now_ms` (rounded outward); `None` before the
    /// start or for a window over 7 days.
    pub fn counted(
        &self,
        region: &str,
        endpoint: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Option<Counted> {
        let since_ms = self.since_ms()?;
        if window_ms > MAX_WINDOW_MS {
            return None;
        }
        let now = self.now(now_ms);
        let invocations = self
            .lock()
            .get(&Traffic::key(region, endpoint))
            .map_or(0, |b| b.window(window_ms, now));
        Some(Counted {
            since_ms,
            invocations,
        })
    }

    /// What to publish in a vote stamped `at_ms`; `None` before the start.
    /// Drops endpoints with nothing in the last 7 days.
    pub fn traffic(&self, at_ms: u64) -> Option<Traffic> {
        let since = self.since_ms()?;
        let at = self.now(at_ms);
        let mut map = self.lock();
        map.retain(|_, b| b.window(MAX_WINDOW_MS, at) > 0);
        let endpoints = map
            .iter()
            .map(|(k, b)| {
                let last_end = (b.newest_minute + 1) * MINUTE_MS;
                let e = EndpointTraffic {
                    last_ago_ms: at.saturating_sub(last_end),
                    sums: TRAILING_MS.map(|w| b.window(w, at)),
                };
                (k.clone(), e)
            })
            .collect();
        Some(Traffic {
            counted_ms: at.saturating_sub(since),
            endpoints,
        })
    }

    /// How many endpoints the counter holds buckets for.
    pub fn endpoints_held(&self) -> usize {
        self.lock().len()
    }
}

/// One published router's invocations of `key` in the `window_ms` before
/// `now_ms`, from its vote made at `at` (reader's clock): rule 3 of the
/// module doc.
fn published_in_window(t: &Traffic, key: &str, at: u64, window_ms: u64, now_ms: u64) -> u64 {
    let Some(e) = t.endpoints.get(key) else {
        return 0;
    };
    let last = at.saturating_sub(e.last_ago_ms);
    if last <= now_ms.saturating_sub(window_ms) {
        return 0;
    }
    let needed = window_ms + now_ms.saturating_sub(at);
    let i = TRAILING_MS
        .iter()
        .position(|w| *w >= needed)
        .unwrap_or(TRAILING_MS.len() - 1);
    e.sums[i].max(1)
}

/// The fleet's invocations of `endpoint` in `region` over the `window_ms`
/// before `now_ms` (module doc, rules 1-3): every configured region's
/// router, this daemon's own from its live `local` counter (when given),
/// the others from their newest vote in `votes` (whose `at` must be on the
/// reader's clock: `quorum::Receipts::effective`).
pub fn fleet_counted(
    regions: &[String],
    local: Option<(&str, &Counter)>,
    votes: &[Vote],
    region: &str,
    endpoint: &str,
    window_ms: u64,
    now_ms: u64,
) -> Option<Counted> {
    if window_ms > MAX_WINDOW_MS {
        return None;
    }
    let key = Traffic::key(region, endpoint);
    let mut since_ms = 0u64;
    let mut invocations = 0u64;
    for r in regions {
        if let Some((_, counter)) = local.filter(|(me, _)| me == r) {
            let c = counter.counted(region, endpoint, window_ms, now_ms)?;
            since_ms = since_ms.max(c.since_ms);
            invocations += c.invocations;
            continue;
        }
        let vote = votes
            .iter()
            .filter(|v| &v.observer == r)
            .max_by_key(|v| v.at)?;
        let t = vote.traffic.as_ref()?;
        let at = vote.at.min(now_ms);
        since_ms = since_ms.max(at.saturating_sub(t.counted_ms));
        invocations += published_in_window(t, &key, at, window_ms, now_ms);
    }
    Some(Counted {
        since_ms,
        invocations,
    })
}

/// The instances the active region's `endpoint` needs for what the fleet
/// counted (module doc): `None` without a per-instance figure, without a
/// known active region, or before a whole [`NEED_WINDOW_MS`] is counted.
pub fn need_from(
    counted: Option<Counted>,
    per_instance_per_minute: Option<u64>,
    now_ms: u64,
) -> Option<u32> {
    let per_instance = per_instance_per_minute.filter(|p| *p > 0)?;
    let c = counted?;
    if now_ms.saturating_sub(c.since_ms) < NEED_WINDOW_MS {
        return None;
    }
    let per_minute = c.invocations.div_ceil(NEED_WINDOW_MS / MINUTE_MS);
    u32::try_from(per_minute.div_ceil(per_instance)).ok()
}

fn region_names(cfg: &Config) -> Vec<String> {
    cfg.regions.iter().map(|r| r.name.clone()).collect()
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
        let local = Some((cfg.region.as_str(), &*self.shared.traffic));
        self.shared.read(|st| {
            fleet_counted(
                &region_names(&cfg),
                local,
                &st.votes,
                region,
                endpoint,
                window_ms,
                now_ms,
            )
        })
    }

    fn active_need(&self, endpoint: &str) -> Option<u32> {
        let cfg = self.config.borrow().clone();
        let active = self
            .shared
            .read(|st| st.record.as_ref().map(|r| r.active.clone()))?;
        let now = self.clock.now_ms();
        let counted = self.invocations(&active, endpoint, NEED_WINDOW_MS, now);
        need_from(counted, cfg.cost.instance_invocations_per_minute, now)
    }
}

/// [`InvocationCounts`] from the votes as read from the table once (the
/// `failoverd cost --dry-run` operator view: no router of its own).
pub struct VoteCounts {
    regions: Vec<String>,
    /// The votes with `at` clamped to the read time (`Receipts` at a first
    /// read): a vote from a clock running fast counts as made now.
    votes: Vec<Vote>,
    active: Option<String>,
    now_ms: u64,
    per_instance_per_minute: Option<u64>,
}

impl VoteCounts {
    /// Counts from `votes` read at `now_ms`, with `active` the active
    /// region from the record (if read).
    pub fn new(cfg: &Config, votes: &[Vote], active: Option<String>, now_ms: u64) -> Self {
        let votes = crate::core::quorum::Receipts::default().effective(votes, now_ms);
        Self {
            regions: region_names(cfg),
            votes,
            active,
            now_ms,
            per_instance_per_minute: cfg.cost.instance_invocations_per_minute,
        }
    }
}

impl InvocationCounts for VoteCounts {
    fn invocations(
        &self,
        region: &str,
        endpoint: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Option<Counted> {
        fleet_counted(
            &self.regions,
            None,
            &self.votes,
            region,
            endpoint,
            window_ms,
            now_ms,
        )
    }

    fn active_need(&self, endpoint: &str) -> Option<u32> {
        let active = self.active.as_deref()?;
        let counted = self.invocations(active, endpoint, NEED_WINDOW_MS, self.now_ms);
        need_from(counted, self.per_instance_per_minute, self.now_ms)
    }
}
