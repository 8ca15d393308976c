//! Invocation counts per `(region, endpoint)`, for the cost task
//! (`ports::traffic::InvocationCounts`): this router's own [`Counter`],
//! what it publishes in its vote ([`Counter::traffic`]), and the fleet's
//! sum over every region's published counts ([`fleet_counted`],
//! `state::FleetCounts` in the daemon, [`VoteCounts`] for `failoverd cost`).
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
//! Each endpoint has two rings of fixed size, bucketed on the host's
//! *monotonic* clock (`Clock::mono`), never its wall clock: a wall clock
//! that steps forward (an NTP correction of a host that ran slow) would
//! otherwise make every invocation before the step look that much older,
//! so a standby that served a minute ago would read as idle for half an
//! hour (simulation seeds 4243, 6835, 18886). Everything the counter
//! publishes is a duration (how long ago, how long counted), and a reader's
//! own router is asked with both clocks ([`Now`]): its gap-free start is
//! placed on the reader's wall clock by how long ago it was. 61 one-minute
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
//! # Several daemons in a region
//!
//! A region may run several daemons (docs/instances.md), their routers
//! behind one load balancer: each publishes its own vote, and the fleet's
//! answer sums every daemon's router (the newest vote of each, a dead
//! one's as rule 3 says), so traffic that went through any one of them is
//! counted in full. Rule 1 is per daemon: a daemon's vote without counts
//! makes the answer `None`. A retired daemon's vote (`quorum::RETIRED_MS`,
//! 8 days, old: an instance replaced under a generated name) counts for
//! nothing, or its last vote would hold idle detection off for ever.
//!
//! # The active region's need
//!
//! [`need_from`]: the fleet's *busiest minute* of the active region's
//! endpoint over the last [`NEED_WINDOW_MS`] (an hour), divided by
//! `cost.instance_invocations_per_minute` (what one instance serves),
//! rounded up. A peak, not an average: capacity sized to a 5-minute
//! average drops requests in every minute busier than it, and a scheduled
//! minimum holds for hours. Each router publishes its own busiest minute
//! of the hour ([`EndpointTraffic::peak_minute`]); the fleet's is taken as
//! the sum of the routers' peaks, which is at least the busiest minute of
//! the sum (peaks that did not coincide only over-state the need, the safe
//! way). A dead router's peak counts while its last invocation is inside
//! the hour. `None` when that key is unset, the record is unknown, a router
//! has not published a peak (an older daemon), or the fleet has not counted
//! a whole hour (a router that restarted knows its peak since then only).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Config;
use crate::core::mono::Mono;
use crate::core::quorum::{EndpointTraffic, TRAILING_MS, Traffic, Vote};
use crate::ports::traffic::{Counted, InvocationCounts};

/// One moment on both of a host's clocks: the counter counts on `mono`,
/// and places what it answers on `wall_ms` (what its readers compare with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Unix ms on the host's wall clock.
    pub wall_ms: u64,
    /// The same moment on the host's monotonic clock (`Clock::mono`).
    pub mono: Mono,
}

impl Now {
    /// Both clocks of `clock`, read once each.
    pub fn of(clock: &dyn crate::ports::clock::Clock) -> Self {
        let mono = clock.mono();
        Self {
            wall_ms: clock.now_ms(),
            mono,
        }
    }
}

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
/// The longest window answered: 7 days (`cost.idle.window`'s maximum).
pub const MAX_WINDOW_MS: u64 = 7 * 86_400_000;
/// The window the active region's need is measured over: its busiest
/// minute in the last hour.
pub const NEED_WINDOW_MS: u64 = HOUR_MS;
/// Minute buckets: an hour, rounded outward, spans at most 61.
const MINUTES: usize = 61;
/// Hour buckets: 7 days, rounded outward, spans at most 169.
const HOURS: usize = 169;

/// A ring of `N` buckets of `width` ms, each stamped with its bucket number
/// (plus one: 0 is empty) so a slot left from an older lap reads as zero.
#[derive(Debug, Clone)]
pub(super) struct Ring<const N: usize> {
    width: u64,
    stamp: [u64; N],
    count: [u64; N],
}

impl<const N: usize> Ring<N> {
    pub(super) fn new(width: u64) -> Self {
        Self {
            width,
            stamp: [0; N],
            count: [0; N],
        }
    }

    fn slot(&self, bucket: u64) -> usize {
        (bucket % N as u64) as usize
    }

    pub(super) fn add(&mut self, now: u64) {
        let b = now / self.width;
        let i = self.slot(b);
        if self.stamp[i] != b + 1 {
            self.stamp[i] = b + 1;
            self.count[i] = 0;
        }
        self.count[i] += 1;
    }

    /// The buckets overlapping `[from, now]`; `None` when they are more
    /// than the ring holds.
    pub(super) fn buckets(&self, from: u64, now: u64) -> Option<impl Iterator<Item = u64> + '_> {
        let (a, z) = (from / self.width, now / self.width);
        if z.saturating_sub(a) + 1 > N as u64 {
            return None;
        }
        Some((a..=z).map(|b| {
            let i = self.slot(b);
            if self.stamp[i] == b + 1 {
                self.count[i]
            } else {
                0
            }
        }))
    }

    /// The sum of the buckets overlapping `[from, now]`.
    pub(super) fn sum(&self, from: u64, now: u64) -> Option<u64> {
        Some(self.buckets(from, now)?.sum())
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

    /// The busiest minute overlapping the [`NEED_WINDOW_MS`] before `now`.
    fn peak_minute(&self, now: u64) -> u64 {
        self.minutes
            .buckets(now.saturating_sub(NEED_WINDOW_MS), now)
            .and_then(Iterator::max)
            .unwrap_or(0)
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

/// When counting started, and the clock as counting sees it: a clock that
/// steps back is held at its highest reading, so a count never lands in an
/// older bucket. Shared by [`Counter`] and `metrics::observed`.
#[derive(Debug, Default)]
pub struct CountingClock {
    /// Unix ms when counting started (0: not started).
    started_ms: AtomicU64,
    /// The highest clock reading seen.
    high_water_ms: AtomicU64,
}

impl CountingClock {
    /// Start at `now_ms`; later calls keep the first start.
    pub fn start(&self, now_ms: u64) {
        let _ = self.started_ms.compare_exchange(
            0,
            now_ms.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.high_water_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// The start; `None` before [`CountingClock::start`].
    pub fn since_ms(&self) -> Option<u64> {
        match self.started_ms.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }

    /// `now_ms`, or the highest reading seen if the clock stepped back.
    pub fn now(&self, now_ms: u64) -> u64 {
        self.high_water_ms
            .fetch_max(now_ms, Ordering::Relaxed)
            .max(now_ms)
    }
}

/// This router's counts.
#[derive(Debug, Default)]
pub struct Counter {
    clock: CountingClock,
    endpoints: Mutex<HashMap<String, Buckets>>,
}

impl Counter {
    /// Start counting at `now` (the router's start, on the monotonic
    /// clock); later calls keep the first start.
    pub fn start(&self, now: Mono) {
        self.clock.start(now.0);
    }

    /// Since when this counter has counted without a gap, on the monotonic
    /// clock; `None` before [`Counter::start`].
    pub fn since(&self) -> Option<Mono> {
        self.clock.since_ms().map(Mono)
    }

    /// The gap-free start placed on `now.wall_ms`'s clock: as long before
    /// it as the monotonic clock says (a wall-clock step since does not
    /// move it).
    fn since_wall(&self, now: Now) -> Option<u64> {
        let since = self.clock.since_ms()?;
        let at = self.now(now.mono);
        Some(now.wall_ms.saturating_sub(at.saturating_sub(since)))
    }

    fn now(&self, now: Mono) -> u64 {
        self.clock.now(now.0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Buckets>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One attempt sent to `endpoint` in `region` at `now`.
    pub fn record(&self, region: &str, endpoint: &str, now: Mono) {
        self.start(now);
        let now = self.now(now);
        // The key (`Traffic::key`: region/endpoint) written into this
        // thread's buffer, not formatted per attempt; a new key allocates
        // once.
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            key.push_str(region);
            key.push('/');
            key.push_str(endpoint);
            debug_assert_eq!(*key, Traffic::key(region, endpoint));
            let mut map = self.lock();
            match map.get_mut(key.as_str()) {
                Some(b) => b.add(now),
                None => map.entry(key.clone()).or_insert_with(Buckets::new).add(now),
            }
        });
    }

    /// This router's invocations of `endpoint` in `region` in the
    /// `window_ms` before `now` (rounded outward), its start on `now`'s
    /// wall clock; `None` before the start or for a window over 7 days.
    pub fn counted(
        &self,
        region: &str,
        endpoint: &str,
        window_ms: u64,
        now: Now,
    ) -> Option<Counted> {
        let since_ms = self.since_wall(now)?;
        if window_ms > MAX_WINDOW_MS {
            return None;
        }
        let now = self.now(now.mono);
        let invocations = self
            .lock()
            .get(&Traffic::key(region, endpoint))
            .map_or(0, |b| b.window(window_ms, now));
        Some(Counted {
            since_ms,
            invocations,
        })
    }

    /// This router's busiest minute of `endpoint` in `region` over the
    /// [`NEED_WINDOW_MS`] before `now` (`invocations` is that minute's
    /// count); `None` before the start.
    pub fn peak(&self, region: &str, endpoint: &str, now: Now) -> Option<Counted> {
        let since_ms = self.since_wall(now)?;
        let now = self.now(now.mono);
        let invocations = self
            .lock()
            .get(&Traffic::key(region, endpoint))
            .map_or(0, |b| b.peak_minute(now));
        Some(Counted {
            since_ms,
            invocations,
        })
    }

    /// What to publish in a vote made at `at` (durations before it, which
    /// its readers place on their own clocks); `None` before the start.
    /// Drops endpoints with nothing in the last 7 days.
    pub fn traffic(&self, at: Mono) -> Option<Traffic> {
        let since = self.clock.since_ms()?;
        let at = self.now(at);
        let mut map = self.lock();
        map.retain(|_, b| b.window(MAX_WINDOW_MS, at) > 0);
        let endpoints = map
            .iter()
            .map(|(k, b)| {
                let last_end = (b.newest_minute + 1) * MINUTE_MS;
                let e = EndpointTraffic {
                    last_ago_ms: at.saturating_sub(last_end),
                    sums: TRAILING_MS.map(|w| b.window(w, at)),
                    peak_minute: Some(b.peak_minute(at)),
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
/// router, this daemon's own from its live `local` counter (when given,
/// with the monotonic clock at `now_ms`), the others from their newest vote in `votes` (whose `at` must be on the
/// reader's clock: `quorum::Receipts::effective`).
pub fn fleet_counted(
    regions: &[String],
    local: Option<Local<'_>>,
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
    fleet_sum(
        regions,
        local,
        votes,
        now_ms,
        |c, now| c.counted(region, endpoint, window_ms, now),
        |t, at| Some(published_in_window(t, &key, at, window_ms, now_ms)),
    )
}

/// This daemon's own router, for the fleet's sums: its live counter stands
/// for its own vote (which lags a round). `instance: None` (a daemon that
/// knows of no other in its region, and tests) stands for every vote of
/// `region`; with an instance, only for that daemon's, and the region's
/// other daemons' votes are added to it.
#[derive(Clone, Copy)]
pub struct Local<'a> {
    pub region: &'a str,
    pub instance: Option<&'a str>,
    pub counter: &'a Counter,
    /// The monotonic clock at the read (the counter counts on it).
    pub mono: Mono,
}

impl<'a> From<(&'a str, &'a Counter, Mono)> for Local<'a> {
    fn from((region, counter, mono): (&'a str, &'a Counter, Mono)) -> Self {
        Self {
            region,
            instance: None,
            counter,
            mono,
        }
    }
}

/// The sum over every configured region's routers of what `own` reads from
/// this daemon's live counter (`local`) and `published` from each other
/// daemon's newest vote (its traffic, and the vote's `at` on the reader's
/// clock, clamped to `now_ms`); `since_ms` is the latest gap-free start.
/// A region may run several daemons, each with its router behind the same
/// load balancer: their counts are *summed*, one newest vote per daemon
/// (a dead daemon's stays in, as a dead router's does: rule 3), and a
/// retired daemon's vote (`quorum::RETIRED_MS` old) counts for nothing.
/// `None` when a region has no vote, a counted vote has no counts, or
/// either reader says `None`.
fn fleet_sum(
    regions: &[String],
    local: Option<Local<'_>>,
    votes: &[Vote],
    now_ms: u64,
    own: impl Fn(&Counter, Now) -> Option<Counted>,
    published: impl Fn(&Traffic, u64) -> Option<u64>,
) -> Option<Counted> {
    let mut since_ms = 0u64;
    let mut invocations = 0u64;
    for r in regions {
        let here = local.filter(|l| l.region == r);
        let mut heard = false;
        if let Some(l) = here {
            let c = own(
                l.counter,
                Now {
                    wall_ms: now_ms,
                    mono: l.mono,
                },
            )?;
            since_ms = since_ms.max(c.since_ms);
            invocations += c.invocations;
            heard = true;
        }
        // The newest vote of each of the region's other daemons.
        let mut newest: BTreeMap<Option<&str>, &Vote> = BTreeMap::new();
        for v in votes.iter().filter(|v| &v.observer == r) {
            if here.is_some_and(|l| l.instance.is_none() || l.instance == v.instance.as_deref()) {
                continue;
            }
            if now_ms.saturating_sub(v.at) > crate::core::quorum::RETIRED_MS {
                continue;
            }
            let key = v.instance.as_deref();
            if newest.get(&key).is_none_or(|old| old.at < v.at) {
                newest.insert(key, v);
            }
        }
        if !heard && newest.is_empty() {
            return None;
        }
        for vote in newest.values() {
            let t = vote.traffic.as_ref()?;
            let at = vote.at.min(now_ms);
            since_ms = since_ms.max(at.saturating_sub(t.counted_ms));
            invocations += published(t, at)?;
        }
    }
    Some(Counted {
        since_ms,
        invocations,
    })
}

/// The fleet's busiest minute of `endpoint` in `region` over the
/// [`NEED_WINDOW_MS`] before `now_ms` (module doc, "the active region's
/// need"): the sum of every configured region's router's peak, this
/// daemon's own from `local`, the others from their newest vote (`at` on
/// the reader's clock). `None` when a router has published no counts or no
/// peak.
pub fn fleet_peak(
    regions: &[String],
    local: Option<Local<'_>>,
    votes: &[Vote],
    region: &str,
    endpoint: &str,
    now_ms: u64,
) -> Option<Counted> {
    let key = Traffic::key(region, endpoint);
    fleet_sum(
        regions,
        local,
        votes,
        now_ms,
        |c, now| c.peak(region, endpoint, now),
        |t, at| match t.endpoints.get(&key) {
            // Its last invocation inside the hour: its busiest minute counts.
            Some(e) if at.saturating_sub(e.last_ago_ms) > now_ms.saturating_sub(NEED_WINDOW_MS) => {
                e.peak_minute
            }
            _ => Some(0),
        },
    )
}

/// The fleet's busiest minute over `endpoints` (one `(region, endpoint)`
/// per region: the endpoints that serve the same traffic wherever it
/// lands): the sum of [`fleet_peak`] over them, counted since the latest of
/// their gap-free starts. `None` when any is unknown.
pub fn fleet_peak_over(
    regions: &[String],
    local: Option<Local<'_>>,
    votes: &[Vote],
    endpoints: &[(&str, &str)],
    now_ms: u64,
) -> Option<Counted> {
    let mut total = Counted {
        since_ms: 0,
        invocations: 0,
    };
    for (region, endpoint) in endpoints {
        let c = fleet_peak(regions, local, votes, region, endpoint, now_ms)?;
        total.since_ms = total.since_ms.max(c.since_ms);
        total.invocations += c.invocations;
    }
    Some(total)
}

/// The instances the active region's `endpoint` needs for the fleet's
/// busiest minute (`peak`, from [`fleet_peak`]): `None` without a
/// per-instance figure, without a known peak, or before a whole
/// [`NEED_WINDOW_MS`] is counted.
pub fn need_from(
    peak: Option<Counted>,
    per_instance_per_minute: Option<u64>,
    now_ms: u64,
) -> Option<u32> {
    let per_instance = per_instance_per_minute.filter(|p| *p > 0)?;
    let c = peak?;
    if now_ms.saturating_sub(c.since_ms) < NEED_WINDOW_MS {
        return None;
    }
    u32::try_from(c.invocations.div_ceil(per_instance)).ok()
}

pub fn region_names(cfg: &Config) -> Vec<String> {
    cfg.regions.iter().map(|r| r.name.clone()).collect()
}

/// [`InvocationCounts`] from the votes as read from the table once (the
/// `failoverd cost --dry-run` operator view: no router of its own).
pub struct VoteCounts {
    regions: Vec<String>,
    /// The votes with `at` clamped to the read time (`Receipts` at a first
    /// read): a vote from a clock running fast counts as made now.
    votes: Vec<Vote>,
    now_ms: u64,
    per_instance_per_minute: Option<u64>,
}

impl VoteCounts {
    /// Counts from `votes` read at `now_ms`.
    pub fn new(cfg: &Config, votes: &[Vote], now_ms: u64) -> Self {
        let votes = crate::core::quorum::Receipts::default().effective(votes, now_ms);
        Self {
            regions: region_names(cfg),
            votes,
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

    fn fleet_need(&self, endpoints: &[(&str, &str)]) -> Option<u32> {
        let peak = fleet_peak_over(&self.regions, None, &self.votes, endpoints, self.now_ms);
        need_from(peak, self.per_instance_per_minute, self.now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mo(ms: u64) -> Mono {
        Mono(ms)
    }

    /// A moment in the tests: both clocks read the same (tests of a step
    /// build their [`Now`] by hand).
    fn both(ms: u64) -> Now {
        Now {
            wall_ms: ms,
            mono: Mono(ms),
        }
    }

    const T0: u64 = 1_800_000_000_000; // a whole hour, unix ms
    const R: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

    fn regions() -> Vec<String> {
        R.map(String::from).to_vec()
    }

    fn vote(observer: &str, at: u64, traffic: Option<Traffic>) -> Vote {
        Vote {
            observer: observer.into(),
            instance: None,
            at,
            seen_epoch: 1,
            view: Default::default(),
            traffic,
            fleet: None,
            readiness: None,
            lease_ms: None,
        }
    }

    fn n(c: &Counter, window: u64, now: u64) -> u64 {
        c.counted("us-east-1", "prov", window, both(now))
            .unwrap()
            .invocations
    }

    #[test]
    fn buckets_round_windows_outward_and_forget_what_is_older() {
        let c = Counter::default();
        assert_eq!(
            c.counted("us-east-1", "prov", MINUTE_MS, both(T0)),
            None,
            "not started"
        );
        c.start(mo(T0));
        // Three calls at 00:00:10, one at 00:10:30, one at 02:00:00.
        for _ in 0..3 {
            c.record("us-east-1", "prov", mo(T0 + 10_000));
        }
        c.record("us-east-1", "prov", mo(T0 + 10 * MINUTE_MS + 30_000));
        let at = T0 + 15 * MINUTE_MS;
        assert_eq!(n(&c, 5 * MINUTE_MS, at), 1, "minutes 10..15");
        assert_eq!(n(&c, 4 * MINUTE_MS, at), 0, "minutes 11..15");
        assert_eq!(n(&c, 15 * MINUTE_MS, at), 4);
        // Outward: a 14.5-minute window reaches into minute 0.
        assert_eq!(n(&c, 14 * MINUTE_MS + 30_000, at), 4);
        // Another endpoint and another region are other counters.
        assert_eq!(
            c.counted("us-west-2", "prov", HOUR_MS, both(at))
                .unwrap()
                .invocations,
            0
        );
        // Past the minute ring: hour buckets, still outward.
        let later = T0 + 2 * HOUR_MS;
        c.record("us-east-1", "prov", mo(later));
        assert_eq!(n(&c, 90 * MINUTE_MS, later), 5, "hours 0..2");
        assert_eq!(n(&c, 30 * MINUTE_MS, later), 1, "minute ring");
        // A week on, everything but the newest has aged out; more than a
        // week is not answered.
        let week = T0 + 7 * 86_400_000 + HOUR_MS;
        assert_eq!(n(&c, MAX_WINDOW_MS, week), 1);
        assert_eq!(
            c.counted("us-east-1", "prov", MAX_WINDOW_MS + 1, both(week)),
            None
        );
        assert_eq!(
            c.counted("us-east-1", "prov", MINUTE_MS, both(week))
                .unwrap()
                .since_ms,
            T0,
            "gap-free since the start"
        );
    }

    #[test]
    fn a_reading_older_than_one_seen_never_lands_in_an_older_bucket() {
        // Two router threads: one read the clock before the other but
        // records after it.
        let c = Counter::default();
        c.start(mo(T0 + HOUR_MS));
        c.record("us-east-1", "prov", mo(T0));
        assert_eq!(n(&c, MINUTE_MS, T0 + HOUR_MS), 1);
        assert_eq!(c.since(), Some(Mono(T0 + HOUR_MS)), "the first start stays");
    }

    /// A host's wall clock corrected forward 35 minutes (NTP on a host that
    /// ran slow; simulation seeds 4243, 6835 and 18886) while it counts:
    /// what it counted a minute ago is still a minute old, in its own
    /// answers and in what it publishes, and its start is as long ago as
    /// it truly was. Counting on the wall clock, the invocation read as 36
    /// minutes old and a standby that had just served read as idle.
    #[test]
    fn a_wall_clock_step_forward_ages_nothing() {
        let c = Counter::default();
        let step = 35 * MINUTE_MS;
        c.start(mo(T0));
        c.record("us-east-1", "prov", mo(T0 + 10 * MINUTE_MS));
        // One minute later by the monotonic clock; the wall clock jumped.
        let later = Now {
            wall_ms: T0 + 11 * MINUTE_MS + step,
            mono: Mono(T0 + 11 * MINUTE_MS),
        };
        let got = c
            .counted("us-east-1", "prov", 5 * MINUTE_MS, later)
            .unwrap();
        assert_eq!(
            got.invocations, 1,
            "a minute ago, whatever the wall clock says"
        );
        assert_eq!(
            got.since_ms,
            later.wall_ms - 11 * MINUTE_MS,
            "counted for 11 minutes, not 46"
        );
        let t = c.traffic(later.mono).unwrap();
        assert_eq!(t.counted_ms, 11 * MINUTE_MS);
        let e = &t.endpoints["us-east-1/prov"];
        assert!(e.last_ago_ms <= MINUTE_MS, "{e:?}");
        assert_eq!(e.sums[0], 1, "in the 5-minute sum");
    }

    #[test]
    fn memory_is_bounded_whatever_the_uptime() {
        let c = Counter::default();
        c.start(mo(T0));
        // A call every minute for 30 days to one endpoint; a second
        // endpoint called once at the start.
        c.record("us-east-1", "old", mo(T0));
        for m in 0..30 * 24 * 60 {
            c.record("us-east-1", "prov", mo(T0 + m * MINUTE_MS));
        }
        let now = T0 + 30 * 86_400_000;
        // The last call was the minute before `now`.
        assert_eq!(n(&c, HOUR_MS, now), 60);
        assert_eq!(n(&c, MAX_WINDOW_MS, now), 7 * 24 * 60);
        // Each endpoint is two fixed rings; building the vote drops the one
        // with nothing in 7 days.
        assert_eq!(c.endpoints_held(), 2);
        let t = c.traffic(mo(now)).unwrap();
        assert_eq!(c.endpoints_held(), 1);
        assert_eq!(t.endpoints.len(), 1);
        assert!(std::mem::size_of::<Buckets>() < 4096);
    }

    #[test]
    fn published_counts_are_relative_to_the_vote() {
        let c = Counter::default();
        c.start(mo(T0));
        c.record("us-east-1", "prov", mo(T0 + 10_000));
        let at = T0 + 20 * MINUTE_MS;
        let t = c.traffic(mo(at)).unwrap();
        assert_eq!(t.counted_ms, 20 * MINUTE_MS);
        let e = &t.endpoints["us-east-1/prov"];
        assert_eq!(e.last_ago_ms, 19 * MINUTE_MS, "end of minute 0");
        assert_eq!(e.sums, [0, 0, 1, 1, 1, 1]);
    }

    /// Three routers: us-east-1 is us (local), the others publish.
    fn fleet() -> (Counter, Counter, Counter) {
        let (a, b, c) = (Counter::default(), Counter::default(), Counter::default());
        for x in [&a, &b, &c] {
            x.start(mo(T0));
        }
        (a, b, c)
    }

    fn count(local: &Counter, votes: &[Vote], window: u64, now: u64) -> Option<Counted> {
        fleet_counted(
            &regions(),
            Some(("us-east-1", local, Mono(now)).into()),
            votes,
            "us-west-2",
            "prov",
            window,
            now,
        )
    }

    fn of(instance: &str, mut v: Vote) -> Vote {
        v.instance = Some(instance.into());
        v
    }

    /// us-west-2 runs two daemons behind one load balancer, and all of
    /// its traffic went through the one whose vote is not the region's
    /// freshest: the fleet still counts it, in full (before instances the
    /// region's newest vote alone was read, and the endpoint looked idle).
    /// Our own region's sibling is added to our live counter; a retired
    /// daemon's vote without counts does not make the fleet uncounted.
    #[test]
    fn a_regions_daemons_are_summed() {
        let (a, b1, c) = fleet();
        let b2 = Counter::default();
        b2.start(mo(T0));
        let now = T0 + 3 * HOUR_MS;
        for _ in 0..5 {
            b1.record("us-west-2", "prov", mo(now - 20 * MINUTE_MS));
        }
        let votes = [
            of(
                "b1",
                vote("us-west-2", now - 9_000, b1.traffic(mo(now - 9_000))),
            ),
            of(
                "b2",
                vote("us-west-2", now - 1_000, b2.traffic(mo(now - 1_000))),
            ),
            vote("eu-west-1", now - 1_000, c.traffic(mo(now - 1_000))),
            // An older daemon's item in us-west-2, retired long ago.
            vote("us-west-2", now - 9 * 86_400_000, None),
        ];
        assert_eq!(count(&a, &votes, HOUR_MS, now).unwrap().invocations, 5);
        let peak = fleet_peak(
            &regions(),
            Some(("us-east-1", &a, Mono(now)).into()),
            &votes,
            "us-west-2",
            "prov",
            now,
        )
        .unwrap();
        assert_eq!(peak.invocations, 5);
        // We are us-east-1's daemon "a1"; our sibling "a2" served 2.
        let a2 = Counter::default();
        a2.start(mo(T0));
        a2.record("us-west-2", "prov", mo(now - MINUTE_MS));
        a2.record("us-west-2", "prov", mo(now - MINUTE_MS));
        let mut with_sibling = votes.to_vec();
        with_sibling.push(of(
            "a2",
            vote("us-east-1", now - 2_000, a2.traffic(mo(now - 2_000))),
        ));
        // Our own vote (stale copy of our counter) is replaced by the live one.
        with_sibling.push(of("a1", vote("us-east-1", now - 2_000, None)));
        let me = Local {
            region: "us-east-1",
            instance: Some("a1"),
            counter: &a,
            mono: Mono(now),
        };
        a.record("us-west-2", "prov", mo(now - MINUTE_MS));
        let got = fleet_counted(
            &regions(),
            Some(me),
            &with_sibling,
            "us-west-2",
            "prov",
            HOUR_MS,
            now,
        );
        assert_eq!(got.map(|c| c.invocations), Some(5 + 2 + 1));
        // A region's daemon whose vote has no counts (yet) makes the answer
        // unknown, as a region's did.
        with_sibling.push(of("b3", vote("us-west-2", now - 1_000, None)));
        assert_eq!(count(&a, &with_sibling, HOUR_MS, now), None);
    }

    #[test]
    fn the_fleet_sums_every_router_and_takes_the_latest_start() {
        let (a, b, c) = fleet();
        let now = T0 + 3 * HOUR_MS;
        a.record("us-west-2", "prov", mo(now - 10 * MINUTE_MS));
        b.record("us-west-2", "prov", mo(now - 30 * MINUTE_MS));
        b.record("us-west-2", "prov", mo(now - 30 * MINUTE_MS));
        c.record("us-west-2", "other", mo(now - MINUTE_MS));
        let votes = [
            vote("us-west-2", now - 5_000, b.traffic(mo(now - 5_000))),
            vote("eu-west-1", now - 5_000, c.traffic(mo(now - 5_000))),
        ];
        let got = count(&a, &votes, HOUR_MS, now).unwrap();
        assert_eq!(
            got,
            Counted {
                since_ms: T0,
                invocations: 3
            }
        );
        // 15 minutes: only ours (b's last call was 30 minutes ago).
        assert_eq!(
            count(&a, &votes, 15 * MINUTE_MS, now).unwrap().invocations,
            1
        );
        // eu-west-1's router restarted an hour ago: counted since then.
        let c2 = Counter::default();
        c2.start(mo(now - HOUR_MS));
        let votes2 = [
            votes[0].clone(),
            vote("eu-west-1", now, c2.traffic(mo(now))),
        ];
        assert_eq!(
            count(&a, &votes2, HOUR_MS, now).unwrap().since_ms,
            now - HOUR_MS
        );
    }

    #[test]
    fn a_router_whose_counts_are_unknown_makes_the_answer_unknown() {
        let (a, b, _) = fleet();
        let now = T0 + 3 * HOUR_MS;
        let vb = vote("us-west-2", now, b.traffic(mo(now)));
        // eu-west-1 never voted.
        assert_eq!(count(&a, std::slice::from_ref(&vb), HOUR_MS, now), None);
        // eu-west-1 voted without counts (older daemon, undecodable).
        let vc = vote("eu-west-1", now, None);
        assert_eq!(count(&a, &[vb.clone(), vc], HOUR_MS, now), None);
        // Our own router not started: unknown too.
        let vc = vote("eu-west-1", now, b.traffic(mo(now)));
        assert_eq!(count(&Counter::default(), &[vb, vc], HOUR_MS, now), None);
    }

    #[test]
    fn a_dead_routers_counts_stay_until_they_age_out_of_the_window() {
        let (a, b, c) = fleet();
        // eu-west-1's router called the endpoint, then died at `death`.
        let death = T0 + 2 * HOUR_MS;
        c.record("us-west-2", "prov", mo(death - 2 * MINUTE_MS));
        let last_vote = vote("eu-west-1", death, c.traffic(mo(death)));
        let window = HOUR_MS;
        for now in [
            death + MINUTE_MS,
            death + 30 * MINUTE_MS,
            death + 57 * MINUTE_MS,
        ] {
            let votes = [
                vote("us-west-2", now, b.traffic(mo(now))),
                last_vote.clone(),
            ];
            let got = count(&a, &votes, window, now).unwrap();
            assert!(
                got.invocations >= 1,
                "{}m after death: forgotten",
                (now - death) / MINUTE_MS
            );
            assert_eq!(got.since_ms, T0, "it counted without a gap until it died");
        }
        // Once the window has passed its last call, it adds nothing: the
        // endpoint is idle unless someone else called it.
        let now = death + window;
        let votes = [
            vote("us-west-2", now, b.traffic(mo(now))),
            last_vote.clone(),
        ];
        assert_eq!(count(&a, &votes, window, now).unwrap().invocations, 0);
        // A day later with a 7-day window, its call is still in.
        let now = death + 86_400_000;
        let votes = [vote("us-west-2", now, b.traffic(mo(now))), last_vote];
        assert!(count(&a, &votes, MAX_WINDOW_MS, now).unwrap().invocations >= 1);
    }

    #[test]
    fn a_stale_vote_covers_the_window_plus_its_age() {
        // The peer called 20 minutes before its vote; the vote is 4
        // minutes old: a 5-minute window reaching past the vote must use a
        // published window of at least 9 minutes (15m).
        let (a, b, c) = fleet();
        let at = T0 + HOUR_MS;
        for _ in 0..7 {
            b.record("us-west-2", "prov", mo(at - 3 * MINUTE_MS));
        }
        let now = at + 4 * MINUTE_MS;
        let votes = [
            vote("us-west-2", at, b.traffic(mo(at))),
            vote("eu-west-1", at, c.traffic(mo(at))),
        ];
        assert_eq!(
            count(&a, &votes, 5 * MINUTE_MS, now).unwrap().invocations,
            0,
            "ended before now - 5m"
        );
        assert_eq!(
            count(&a, &votes, 8 * MINUTE_MS, now).unwrap().invocations,
            7
        );
        // A vote from a clock running fast counts as made now.
        let votes = [
            vote("us-west-2", now + HOUR_MS, b.traffic(mo(at))),
            vote("eu-west-1", at, c.traffic(mo(at))),
        ];
        assert_eq!(
            count(&a, &votes, 15 * MINUTE_MS, now).unwrap().invocations,
            7
        );
    }

    #[test]
    fn the_need_is_the_busiest_minute_over_one_instances_capacity() {
        let c = |since_ms, invocations| {
            Some(Counted {
                since_ms,
                invocations,
            })
        };
        let now = T0 + HOUR_MS;
        // A busiest minute of 1000, 300 per instance: 4 instances.
        assert_eq!(need_from(c(T0, 1000), Some(300), now), Some(4));
        assert_eq!(need_from(c(T0, 0), Some(300), now), Some(0));
        assert_eq!(
            need_from(c(T0, 1000), None, now),
            None,
            "no capacity figure"
        );
        assert_eq!(need_from(None, Some(300), now), None, "not counted");
        assert_eq!(
            need_from(c(now - 5 * MINUTE_MS, 1000), Some(300), now),
            None,
            "not a whole hour"
        );
    }

    /// The need follows the busiest minute, not the average: one minute at
    /// 900 in an hour of 10s is a need of 900, from this router or a peer
    /// (summed), for as long as that minute is inside the hour.
    #[test]
    fn the_peak_is_the_busiest_minute_of_the_hour_summed_over_routers() {
        let (a, b, c) = fleet();
        let peak = |a: &Counter, votes: &[Vote], now| {
            fleet_peak(
                &regions(),
                Some(("us-east-1", a, Mono(now)).into()),
                votes,
                "us-west-2",
                "prov",
                now,
            )
        };
        let t = T0 + HOUR_MS;
        // In time order: a counter holds a clock that steps back at its
        // highest reading.
        for m in 0..60 {
            for _ in 0..10 {
                a.record("us-west-2", "prov", mo(t + m * MINUTE_MS));
            }
            if m == 20 {
                for _ in 0..890 {
                    a.record("us-west-2", "prov", mo(t + 20 * MINUTE_MS + 5_000));
                }
            }
        }
        for _ in 0..300 {
            b.record("us-west-2", "prov", mo(t + 40 * MINUTE_MS));
        }
        let now = t + 59 * MINUTE_MS;
        let votes = [
            vote("us-west-2", now, b.traffic(mo(now))),
            vote("eu-west-1", now, c.traffic(mo(now))),
        ];
        let got = peak(&a, &votes, now).unwrap();
        assert_eq!(got.invocations, 900 + 300, "the routers' peaks, summed");
        assert_eq!(got.since_ms, T0);
        // 12 instances at 100 a minute each; the last 5 minutes' average
        // (10 a minute from this router) would have said 1.
        assert_eq!(need_from(Some(got), Some(100), now), Some(12));
        // Past the hour, the busy minutes age out.
        let later = t + 20 * MINUTE_MS + HOUR_MS + 2 * MINUTE_MS;
        let votes = [
            vote("us-west-2", later, b.traffic(mo(later))),
            vote("eu-west-1", later, c.traffic(mo(later))),
        ];
        let got = peak(&a, &votes, later).unwrap();
        assert_eq!(got.invocations, 10 + 300);
        // A peer that publishes no peak (an older daemon): unknown.
        let mut old = b.traffic(mo(later)).unwrap();
        for e in old.endpoints.values_mut() {
            e.peak_minute = None;
        }
        let votes = [
            vote("us-west-2", later, Some(old)),
            vote("eu-west-1", later, c.traffic(mo(later))),
        ];
        assert_eq!(peak(&a, &votes, later), None);
    }

    /// Issue 19 item 5: the need is the fleet's traffic wherever it landed.
    /// Right after a switch the new active's own endpoint has a partial
    /// minute; the old active's busiest minute stays in the hour. Per-region
    /// endpoint names (`prov-east`, `prov-west`) are summed as one need.
    #[test]
    fn the_fleets_need_sums_every_regions_endpoint_so_it_survives_a_switch() {
        let (a, b, c) = fleet();
        let t = T0 + HOUR_MS;
        // An hour on the old active (us-east-1's prov-east): 600 a minute.
        for m in 0..50 {
            for _ in 0..600 {
                a.record("us-east-1", "prov-east", mo(t + m * MINUTE_MS));
            }
        }
        // The switch: 40 requests so far to the new active's prov-west.
        for _ in 0..40 {
            b.record("us-west-2", "prov-west", mo(t + 50 * MINUTE_MS + 1_000));
        }
        let now = t + 50 * MINUTE_MS + 2_000;
        let votes = [
            vote("us-west-2", now, b.traffic(mo(now))),
            vote("eu-west-1", now, c.traffic(mo(now))),
        ];
        let local = Some(("us-east-1", &a, Mono(now)).into());
        let own = fleet_peak(&regions(), local, &votes, "us-west-2", "prov-west", now).unwrap();
        assert_eq!(own.invocations, 40, "the new active's own partial minute");
        let fleet = fleet_peak_over(
            &regions(),
            local,
            &votes,
            &[("us-east-1", "prov-east"), ("us-west-2", "prov-west")],
            now,
        )
        .unwrap();
        assert_eq!(fleet.invocations, 640, "both regions' peaks, summed");
        assert_eq!(need_from(Some(fleet), Some(100), now), Some(7));
        assert_eq!(
            need_from(Some(own), Some(100), now),
            Some(1),
            "what the old rule saw"
        );
        // A region whose router published nothing: unknown, never zero.
        let votes = [vote("us-west-2", now, b.traffic(mo(now)))];
        assert_eq!(
            fleet_peak_over(
                &regions(),
                local,
                &votes,
                &[("us-east-1", "prov-east")],
                now
            ),
            None
        );
    }
}
