//! The simulated world: one seed's random numbers, simulated time, the
//! network between the daemons (and the operator, and Step Functions' own
//! integrations) and the services, which processes are alive, and the trace.
//!
//! Time: the runtime's clock is paused (`start_paused`), so
//! `tokio::time::Instant` is simulated and advances only when every task
//! waits. True wall time is [`EPOCH_MS`] plus the simulated time elapsed;
//! each region's host clock adds its own skew ([`World::wall_ms`]). AWS's
//! own clocks (Step Functions' `EnteredTime`) are true time.
//!
//! The network: every fake call is [`World::send`] (the request travels,
//! half the latency), the service's work (synchronous, under the fake's
//! lock: the call's commit point), then [`World::reply`] (the answer
//! travels back). A link can be up, refuse connections (the SDK's retries
//! fail within about a second), or black-hole them (the call hangs until
//! the SDK's operation timeout, 15 s for the control-plane clients,
//! `aws::clients::control_plane_timeouts`). A request sent by a process
//! that then dies may still arrive (it is in flight); the answer to a dead
//! process never returns (the call pends for ever), so a killed daemon's
//! leftover tasks can do nothing more that anyone sees.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Unix ms at simulated time zero: 2026-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// The SDK's operation timeout for control-plane clients
/// (`aws::clients::control_plane_timeouts`): three attempts of 5 s.
pub const SDK_TIMEOUT: Duration = Duration::from_secs(15);

/// A small, fast, seedable generator (SplitMix64): every random choice of a
/// run comes from one of these, seeded from the run's seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// An independent stream for `tag` (so one part's draws do not shift
    /// another's).
    pub fn fork(&self, tag: u64) -> Rng {
        let mut r = Rng(self.0 ^ tag.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        r.next_u64();
        r
    }
}

/// Who makes a call: what decides which links apply and whether anyone is
/// still there to get the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A daemon process in a region (`pid` names its incarnation).
    Daemon { region: String, pid: u64 },
    /// The operator's CLI (its own laptop, its own network).
    Operator { pid: u64 },
    /// Step Functions of a region, calling DynamoDB (inside AWS).
    Workflow { region: String },
    /// The simulator itself (setup, checks): never faulted.
    Harness,
}

impl Caller {
    /// The network site whose links apply.
    pub fn site(&self) -> String {
        match self {
            Caller::Daemon { region, .. } => region.clone(),
            Caller::Operator { .. } => "operator".into(),
            Caller::Workflow { region } => format!("states:{region}"),
            Caller::Harness => "harness".into(),
        }
    }

    fn pid(&self) -> Option<u64> {
        match self {
            Caller::Daemon { pid, .. } | Caller::Operator { pid } => Some(*pid),
            _ => None,
        }
    }
}

/// The services a caller reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Svc {
    /// DynamoDB (the control table).
    Store,
    /// Step Functions' API.
    Sfn,
    /// Route 53's API (global, in us-east-1).
    Route53,
    /// SageMaker: control plane (DescribeEndpoint) and runtime (InvokeEndpoint).
    SageMaker,
}

impl Svc {
    pub const ALL: [Svc; 4] = [Svc::Store, Svc::Sfn, Svc::Route53, Svc::SageMaker];

    pub fn name(self) -> &'static str {
        match self {
            Svc::Store => "store",
            Svc::Sfn => "sfn",
            Svc::Route53 => "route53",
            Svc::SageMaker => "sagemaker",
        }
    }
}

/// The state of a link from a site to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    /// Connections refused or reset: the call fails fast.
    Refused,
    /// Packets dropped: the call hangs until the client's timeout.
    Blackhole,
}

/// Why a call failed on the way (before or after the service's work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// No usable answer: refused, timed out, or the answer was lost.
    Transport(String),
    /// The service asked the caller to slow down.
    Throttled,
}

/// A request that reached its service; [`World::reply`] sends the answer.
pub struct Arrived {
    caller: Caller,
    svc: Svc,
    back: Duration,
}

/// The faults the network applies.
#[derive(Debug, Default, Clone)]
pub struct NetFaults {
    /// (site, service) -> link; missing means up.
    pub links: BTreeMap<(String, Svc), Link>,
    /// Probability that a call to the service is throttled.
    pub throttle: BTreeMap<Svc, f64>,
    /// Probability that a write's answer is lost after the write applied
    /// (the caller sees a transport error; a retry may find its own write).
    pub lossy: BTreeMap<Svc, f64>,
}

struct Inner {
    rng: Rng,
    trace: Vec<String>,
    net: NetFaults,
    alive: BTreeSet<u64>,
    next_pid: u64,
    /// Host clock skew per region (ms).
    skew: BTreeMap<String, i64>,
    /// Region -> is its public serving stack down (probes and Route 53's
    /// checkers fail), or degraded (most checkers fail, probes pass).
    serving: BTreeMap<String, Serving>,
    /// (observer region, target region) pairs whose probes fail.
    probe_cuts: BTreeSet<(String, String)>,
    /// One-way latency bounds of a call (ms).
    latency: (u64, u64),
    /// Trace every line also to stderr as it is written (SIM_LOG).
    echo: bool,
}

/// How a region's public endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serving {
    #[default]
    Up,
    /// Nothing answers: probes time out, every Route 53 checker fails.
    Out,
    /// Reachable from our daemons, but only one of Route 53's eight
    /// checker regions gets through (12.5%: unhealthy by the 18% rule).
    Degraded,
}

/// The world of one run.
pub struct World {
    inner: Mutex<Inner>,
    start: Instant,
}

impl World {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                rng: Rng::new(seed).fork(0x5157_0001),
                trace: Vec::new(),
                net: NetFaults::default(),
                alive: BTreeSet::new(),
                next_pid: 1,
                skew: BTreeMap::new(),
                serving: BTreeMap::new(),
                probe_cuts: BTreeSet::new(),
                latency: (1, 40),
                echo: std::env::var_os("SIM_LOG").is_some(),
            }),
            start: Instant::now(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.elapsed().as_millis() as u64
    }

    /// The instant `ms` after the start.
    pub fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// True wall time (AWS's clocks), unix ms.
    pub fn true_ms(&self) -> u64 {
        EPOCH_MS + self.elapsed_ms()
    }

    /// The wall clock of a host in `region` (true time plus its skew).
    pub fn wall_ms(&self, region: &str) -> u64 {
        let skew = self.lock().skew.get(region).copied().unwrap_or(0);
        (self.true_ms() as i64 + skew).max(0) as u64
    }

    /// A host's monotonic clock at `at`: the time since the start, from an
    /// origin that differs per region (a day apart). It never steps with
    /// the wall clock (`set_skew`, a clock step).
    pub fn mono_at(&self, region: &str, at: Instant) -> failoverd::ports::clock::Mono {
        let i = super::schedule::REGIONS
            .iter()
            .position(|r| *r == region)
            .unwrap_or(0) as u64;
        let since = at.saturating_duration_since(self.at(0)).as_millis() as u64;
        failoverd::ports::clock::Mono((i + 1) * 86_400_000 + since)
    }

    /// A host's monotonic clock now.
    pub fn mono(&self, region: &str) -> failoverd::ports::clock::Mono {
        self.mono_at(region, Instant::now())
    }

    pub fn set_skew(&self, region: &str, ms: i64) {
        self.lock().skew.insert(region.to_string(), ms);
    }

    pub fn skew(&self, region: &str) -> i64 {
        self.lock().skew.get(region).copied().unwrap_or(0)
    }

    /// Draw from the world's generator (latencies, failures at call time).
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut self.lock().rng)
    }

    /// Append a line to the trace, stamped with simulated time.
    pub fn trace(&self, line: impl AsRef<str>) {
        let ms = self.elapsed_ms();
        let text = format!("{:>5}.{:03} {}", ms / 1000, ms % 1000, line.as_ref());
        let mut g = self.lock();
        if g.echo {
            eprintln!("{text}");
        }
        g.trace.push(text);
    }

    pub fn trace_text(&self) -> String {
        let g = self.lock();
        let mut s = g.trace.join("\n");
        s.push('\n');
        s
    }

    // --- processes ---

    /// A new live process id.
    pub fn spawn_pid(&self) -> u64 {
        let mut g = self.lock();
        let pid = g.next_pid;
        g.next_pid += 1;
        g.alive.insert(pid);
        pid
    }

    /// The process is killed: it makes no more calls, gets no more answers.
    pub fn kill(&self, pid: u64) {
        self.lock().alive.remove(&pid);
    }

    pub fn is_alive(&self, caller: &Caller) -> bool {
        caller.pid().is_none_or(|p| self.lock().alive.contains(&p))
    }

    // --- the serving stack ---

    pub fn set_serving(&self, region: &str, s: Serving) {
        self.lock().serving.insert(region.to_string(), s);
    }

    pub fn serving(&self, region: &str) -> Serving {
        self.lock().serving.get(region).copied().unwrap_or_default()
    }

    pub fn set_probe_cut(&self, observer: &str, target: &str, cut: bool) {
        let key = (observer.to_string(), target.to_string());
        let mut g = self.lock();
        if cut {
            g.probe_cuts.insert(key);
        } else {
            g.probe_cuts.remove(&key);
        }
    }

    pub fn probe_cut(&self, observer: &str, target: &str) -> bool {
        self.lock()
            .probe_cuts
            .contains(&(observer.to_string(), target.to_string()))
    }

    // --- the network ---

    pub fn set_link(&self, site: &str, svc: Svc, link: Link) {
        let mut g = self.lock();
        if link == Link::Up {
            g.net.links.remove(&(site.to_string(), svc));
        } else {
            g.net.links.insert((site.to_string(), svc), link);
        }
    }

    pub fn link(&self, site: &str, svc: Svc) -> Link {
        self.lock()
            .net
            .links
            .get(&(site.to_string(), svc))
            .copied()
            .unwrap_or(Link::Up)
    }

    pub fn set_throttle(&self, svc: Svc, p: f64) {
        let mut g = self.lock();
        if p > 0.0 {
            g.net.throttle.insert(svc, p);
        } else {
            g.net.throttle.remove(&svc);
        }
    }

    pub fn throttle(&self, svc: Svc) -> f64 {
        self.lock().net.throttle.get(&svc).copied().unwrap_or(0.0)
    }

    pub fn set_lossy(&self, svc: Svc, p: f64) {
        let mut g = self.lock();
        if p > 0.0 {
            g.net.lossy.insert(svc, p);
        } else {
            g.net.lossy.remove(&svc);
        }
    }

    /// Everything the network does wrong, cleared.
    pub fn heal_network(&self) {
        let mut g = self.lock();
        g.net = NetFaults::default();
        g.probe_cuts.clear();
    }

    /// One-way latency of a call: a few ms inside a region, tens of ms
    /// across (the services' regions are not modelled further).
    fn latency(&self) -> Duration {
        let mut g = self.lock();
        let (lo, hi) = g.latency;
        Duration::from_millis(g.rng.range(lo, hi))
    }

    /// Set the one-way latency bounds (ms).
    pub fn set_latency(&self, lo: u64, hi: u64) {
        self.lock().latency = (lo, hi.max(lo));
    }

    /// Send a request: wait for the link and the outbound latency. `Err`
    /// when the request never reaches the service; pends for ever if the
    /// caller is dead.
    pub async fn send(&self, caller: &Caller, svc: Svc) -> Result<Arrived, NetError> {
        self.gate(caller).await;
        match self.link(&caller.site(), svc) {
            Link::Up => {}
            Link::Refused => {
                // The SDK retries a refused connection a few times, fast.
                let ms = self.with_rng(|r| r.range(200, 1200));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.gate(caller).await;
                return Err(NetError::Transport(format!(
                    "{} unreachable from {}: connection refused",
                    svc.name(),
                    caller.site()
                )));
            }
            Link::Blackhole => {
                tokio::time::sleep(SDK_TIMEOUT).await;
                self.gate(caller).await;
                return Err(NetError::Transport(format!(
                    "{} unreachable from {}: no answer within {SDK_TIMEOUT:?}",
                    svc.name(),
                    caller.site()
                )));
            }
        }
        let there = self.latency();
        let back = self.latency();
        tokio::time::sleep(there).await;
        let p = self.throttle(svc);
        if p > 0.0 && self.with_rng(|r| r.chance(p)) {
            tokio::time::sleep(back).await;
            self.gate(caller).await;
            return Err(NetError::Throttled);
        }
        Ok(Arrived {
            caller: caller.clone(),
            svc,
            back,
        })
    }

    /// Send the answer back. `wrote` says the service changed something:
    /// on a lossy link such an answer may be lost (the caller sees a
    /// transport error although the write applied).
    pub async fn reply(&self, a: Arrived, wrote: bool) -> Result<(), NetError> {
        tokio::time::sleep(a.back).await;
        self.gate(&a.caller).await;
        if wrote {
            let p = self.lock().net.lossy.get(&a.svc).copied().unwrap_or(0.0);
            if p > 0.0 && self.with_rng(|r| r.chance(p)) {
                return Err(NetError::Transport(format!(
                    "{}: the answer was lost (the request may have applied)",
                    a.svc.name()
                )));
            }
        }
        Ok(())
    }

    /// A dead caller's call never returns.
    async fn gate(&self, caller: &Caller) {
        if !self.is_alive(caller) {
            std::future::pending::<()>().await;
        }
    }
}

/// A simple error to use as a [`failoverd::ports::PortError`] source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fault(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_a_pure_function_of_its_seed() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            let x = r.range(3, 5);
            assert!((3..=5).contains(&x));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_ne!(
            Rng::new(7).fork(1).next_u64(),
            Rng::new(7).fork(2).next_u64()
        );
    }
}
