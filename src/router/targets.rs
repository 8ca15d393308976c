//! What the router remembers about each target, a (region, endpoint[,
//! inference component]) as the serving table names it
//! (`Serving::key`, config/serving.rs): its
//! circuit breaker and the latencies it has answered with (for
//! `hedge_after = "p95"`), and the ranking of regions for one request from
//! those and from the reconcile loop's last view (record and health).
//!
//! One mutex over a small map, held for a few field updates, never across
//! an await. Keys are the targets' keys, built once at load (the lookup
//! hashes that string, as it hashed the region's name before per-model
//! endpoints); a target added by a reload gets an entry on first use.
//!
//! It also remembers the stateful sessions it saw opened (SageMaker's
//! `NewSessionId`), with the region and path that opened them, so that a
//! request in a session goes back there and nowhere else, and ends when
//! that region can no longer serve it ([`session_routable`]). A second
//! mutex, taken only by requests that carry a session header.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tracing::warn;

use crate::config::{Config, ModelConfig, Serving};
use crate::core::control;
use crate::core::health::Verdict;
use crate::core::quorum::Consensus;
use crate::core::retry::{Breaker, BreakerPolicy, HedgeAfter, LatencyTracker, hedge_delay};
use crate::core::routing::{self, Available, Health, Path, RegionInputs, RegionState};
use crate::metrics::router::Metrics;
use crate::state::{RoundStatus, Shared};

/// One target's memory.
#[derive(Debug, Default)]
struct Target {
    breaker: Breaker,
    latency: LatencyTracker,
    /// When it last answered (the router's monotonic ms).
    answered_ms: Option<u64>,
}

/// Every target's memory.
#[derive(Debug, Default)]
pub struct Targets {
    by_target: Mutex<HashMap<String, Target>>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Most sessions remembered; past it, expired ones are dropped, and a new
/// one is not remembered if none has expired (its requests then go to the
/// first region of the ranking, with no failover).
pub const MAX_SESSIONS: usize = 100_000;

/// Where a stateful session was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub region: String,
    pub path: Path,
    /// The routing active region when it was opened: a failover since then
    /// ends it.
    pub active: Option<String>,
    /// Unix ms of the `Expires=` the model set, if any.
    pub expires_ms: Option<u64>,
}

/// A `NewSessionId` value (`<id>; Expires=<RFC 3339 time>`) as the id and
/// its expiry (Unix ms), if it has one the router can read.
pub fn parse_new_session(value: &str) -> (&str, Option<u64>) {
    let mut parts = value.split(';');
    let id = parts.next().unwrap_or_default().trim();
    let expires = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("expires").then(|| {
            humantime::parse_rfc3339_weak(v.trim())
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis() as u64)
        })?
    });
    (id, expires)
}

/// The breaker policy in force.
pub fn breaker_policy(cfg: &Config) -> BreakerPolicy {
    BreakerPolicy {
        consecutive_failures: cfg.router.breaker_failures,
        base_ejection_ms: cfg.router.breaker_ejection.as_millis() as u64,
        max_ejection_ms: cfg.router.breaker_max_ejection.as_millis() as u64,
    }
}

impl Targets {
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Target) -> T) -> T {
        let mut map = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = map.get_mut(key) {
            return f(t);
        }
        f(map.entry(key.to_string()).or_default())
    }

    /// An attempt at `target` answered after `latency`.
    pub fn success(&self, cfg: &Config, now_ms: u64, target: &Serving, latency: Duration) {
        let policy = breaker_policy(cfg);
        self.with(&target.key, |t| {
            t.breaker.on_success(now_ms, &policy);
            t.latency.record(latency);
            t.answered_ms = Some(now_ms);
        });
    }

    /// An attempt at `target` (on `path` in `region`) failed in a way that
    /// says the target is unwell (outage, no connection, missing endpoint,
    /// timeout). `now` is the router clock's monotonic milliseconds.
    pub fn failure(
        &self,
        cfg: &Config,
        metrics: &Metrics,
        now: u64,
        region: &str,
        path: Path,
        target: &Serving,
    ) {
        let policy = breaker_policy(cfg);
        let ejected = self.with(&target.key, |t| {
            t.breaker
                .on_failure(now, &policy)
                .then(|| t.breaker.ejections())
        });
        if let Some(ejections) = ejected {
            let until = now + ejection_ms(&policy, ejections);
            warn!(%region, path = path.as_str(), target = %target.key, ejections, "circuit breaker ejected a target");
            metrics.ejection(path, region, &target.key, until);
        }
    }

    /// When to hedge an attempt at `target`, if `after` allows yet.
    pub fn hedge_delay(&self, target: &Serving, after: HedgeAfter) -> Option<Duration> {
        self.with(&target.key, |t| hedge_delay(after, &t.latency))
    }

    /// A session the model opened through (`session.region`,
    /// `session.path`); `now_ms` is the wall time.
    pub fn session_opened(&self, id: &str, session: Session, now_ms: u64) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires_ms.is_none_or(|e| e > now_ms));
            if map.len() >= MAX_SESSIONS {
                warn!(
                    max = MAX_SESSIONS,
                    "too many open sessions to remember another"
                );
                return;
            }
        }
        map.insert(id.to_string(), session);
    }

    /// Forget a session (closed, or ended by the router).
    pub fn session_closed(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The session `id`, unless unknown or expired at `now_ms` (wall time).
    pub fn session(&self, id: &str, now_ms: u64) -> Option<Session> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(s) if s.expires_ms.is_some_and(|e| e <= now_ms) => {
                map.remove(id);
                None
            }
            s => s.cloned(),
        }
    }

    /// Whether `key` answered within [`WARM_WITHIN_MS`] before `now_ms`
    /// (the router's monotonic ms).
    fn answered_recently(&self, key: &str, now_ms: u64) -> bool {
        let map = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .and_then(|t| t.answered_ms)
            .is_some_and(|at| now_ms.saturating_sub(at) <= WARM_WITHIN_MS)
    }

    fn is_ejected(&self, key: &str, now_ms: u64) -> bool {
        let map = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).is_some_and(|t| t.breaker.is_ejected(now_ms))
    }
}

/// How recently a target must have answered to count as warm for a
/// spill-over ([`is_warm`]).
pub const WARM_WITHIN_MS: u64 = 5 * 60 * 1000;

/// Whether (region `i`, `path`) is warm enough to take a request another
/// region throttled or found cold (spill-over, docs/router.md): not seen
/// down, its target not ejected by the breaker, and one of: it answered
/// within [`WARM_WITHIN_MS`]; it is the region requests follow (the
/// record's active, sized for the traffic); or `standby_sized` (the
/// model's tier is `tier1`, whose standby is kept at the active's measured
/// need). A `tier2`/`tier3` standby nobody has called lately idles at its
/// minimum (or at zero, serverless) and is not warm.
pub fn is_warm(
    shared: &Shared,
    targets: &Targets,
    r: &Ranking<'_>,
    i: usize,
    path: Path,
    standby_sized: bool,
) -> bool {
    let name = r.cfg.regions[i].name.as_str();
    let Some(target) = r.model.in_region(i).and_then(|s| s.path(path)) else {
        return false;
    };
    let (down, is_active) = shared.read(|st| {
        (
            health(st, name) == Health::Down,
            active(st, r.cfg, r.lease_now) == Some(i),
        )
    });
    !down
        && !targets.is_ejected(&target.key, r.now_ms)
        && (standby_sized || is_active || targets.answered_recently(&target.key, r.now_ms))
}

/// The length of the `n`-th ejection (as [`Breaker::on_failure`] sets it).
fn ejection_ms(p: &BreakerPolicy, n: u32) -> u64 {
    p.base_ejection_ms
        .saturating_mul(u64::from(n))
        .min(p.max_ejection_ms)
}

/// What one request needs to rank regions.
pub struct Ranking<'a> {
    pub cfg: &'a Config,
    /// The model asked for: its serving table row per region.
    pub model: &'a ModelConfig,
    pub class: &'a str,
    pub len: u64,
    pub threshold: u64,
    /// Which endpoints of a region the request may use.
    pub mask: fn(Available) -> Available,
    /// Now on the daemon's monotonic clock, as the lease counts (the same
    /// reading as `now_ms`, in the daemon's terms rather than the router's).
    pub lease_now: crate::core::mono::Mono,
    /// The router's monotonic ms (breakers).
    pub now_ms: u64,
}

/// `region`'s health as the reconcile loop last saw it: the quorum's view,
/// else this daemon's own tracker.
fn health(st: &RoundStatus, region: &str) -> Health {
    let quorum = st
        .tally
        .as_ref()
        .filter(|t| t.no_quorum.is_none())
        .and_then(|t| t.regions.get(region).copied());
    let seen = st.trackers.get(region).map(|t| t.verdict);
    match (quorum, seen) {
        (Some(Consensus::Down), _) | (_, Some(Verdict::Down)) => Health::Down,
        (Some(Consensus::Up), _) | (_, Some(Verdict::Up)) => Health::Up,
        _ => Health::Unknown,
    }
}

/// The region requests follow now (the control record's active region,
/// as the router routes by it), as an index into `cfg.regions`.
fn active(st: &RoundStatus, cfg: &Config, lease_now: crate::core::mono::Mono) -> Option<usize> {
    let role = st.role_at(lease_now);
    control::routing_active(st.record.as_ref(), role.as_ref())
        .and_then(|a| cfg.regions.iter().position(|x| x.name == a))
}

/// The region requests follow now (see [`rank`]), by name.
pub fn routing_active<'c>(shared: &Shared, r: &Ranking<'c>) -> Option<&'c str> {
    shared
        .read(|st| active(st, r.cfg, r.lease_now))
        .map(|i| r.cfg.regions[i].name.as_str())
}

/// Whether `session`'s region can still serve it: still configured, not
/// seen down, its target not ejected, and no failover since it was opened
/// (the active region is the one it was then, or, if there was none, the
/// session's own). Otherwise the session has ended: the state it lived in
/// is out of reach, as after SageMaker replaces an instance.
pub fn session_routable(
    shared: &Shared,
    targets: &Targets,
    r: &Ranking<'_>,
    session: &Session,
) -> Option<usize> {
    let i = r
        .cfg
        .regions
        .iter()
        .position(|x| x.name == session.region)?;
    let (down, active_now) = shared.read(|st| {
        (
            health(st, &session.region) == Health::Down,
            active(st, r.cfg, r.lease_now).map(|a| r.cfg.regions[a].name.as_str()),
        )
    });
    let failed_over = match (session.active.as_deref(), active_now) {
        (then, now) if then == now => false,
        (None, Some(now)) => now != session.region,
        _ => true,
    };
    let ejected = r
        .model
        .in_region(i)
        .and_then(|s| s.path(session.path))
        .is_none_or(|t| targets.is_ejected(&t.key, r.now_ms));
    (!down && !ejected && !failed_over).then_some(i)
}

/// The configured regions in the order this request should try them (as
/// indices into `cfg.regions`).
pub fn rank(shared: &Shared, targets: &Targets, r: &Ranking<'_>) -> Vec<usize> {
    let cfg = r.cfg;
    let mut states: Vec<RegionState<'_>> = Vec::with_capacity(cfg.regions.len());
    let active = shared.read(|st| {
        for region in &cfg.regions {
            states.push(RegionState {
                name: &region.name,
                priority: region.priority,
                health: health(st, &region.name),
                ejected: false,
            });
        }
        active(st, cfg, r.lease_now)
    });
    for (state, serving) in states.iter_mut().zip(&r.model.serving) {
        let avail = (r.mask)(super::available(serving));
        state.ejected = routing::choose_path(r.class, r.len, r.threshold, avail)
            .ok()
            .and_then(|p| serving.path(p))
            .is_some_and(|t| targets.is_ejected(&t.key, r.now_ms));
    }
    routing::region_order(&RegionInputs {
        local: &cfg.region,
        active: active.map(|i| cfg.regions[i].name.as_str()),
        local_draining: shared.draining.load(std::sync::atomic::Ordering::Relaxed),
        regions: &states,
    })
}
