//! Clients, the routers they reach, and the client-request invariant:
//! "every client request gets an answer before its deadline whenever some
//! region can serve it, and none is answered twice" (issue 10).
//!
//! **Routers.** Each running daemon has the real router
//! (`Router::new` over the SageMaker runtime fake and the fakes of
//! `objects.rs`, routing by the daemon's own `Shared`), called with
//! `Router::handle` and a `Request<Full<Bytes>>`, no listener. A request
//! runs as a task of the router's process ([`Routers`]): a crash aborts it
//! with the daemon, so a killed router answers nothing more.
//!
//! **Clients.** The seed draws, on a stream of its own (the scenario's
//! draws do not move), a request every 0.5 to 7.5 s until the faults end
//! (about a hundred a seed: each costs about a millisecond of CPU in a
//! debug build, and a thousand seeds must stay within minutes):
//! its entry region, model (`default`: standard class, provisioned path;
//! `chat`: serverless preferred), API (mostly the SageMaker wire API
//! `POST /endpoints/{model}/invocations`, some `POST /v1/models/{model}/invoke`),
//! deadline (`X-Deadline-Ms` of 1, 3, 10 or 30 s, or none: the router's
//! default, 70 s), a small JSON body, and its hop latency (1 to 5 ms each
//! way). A client is a DNS-failover client: it connects to its entry
//! region's router, and on a *connection* error tries the next region
//! (the others in the configured order, each once), while its deadline
//! allows:
//!
//! - no daemon running in the region: connection refused, one round trip;
//! - the region's serving stack out (`Serving::Out`, what makes probes and
//!   Route 53 fail): the connect times out after [`CONNECT_TIMEOUT`].
//!
//! Once a router has the request the client waits for its answer and never
//! sends it again: a router that dies with the request leaves the client a
//! reset connection, and the request is *lost* (not judged: its router is
//! gone, and resending a request the model may already have run is the
//! client's call, not the router's). A request no router took before its
//! deadline is *unreached* (not judged either).
//!
//! **Could serve.** From the moment router R takes a request until the
//! request's deadline (its *life*), the world is observed after every step
//! ([`Conditions`]). The request could be served if, for the whole life:
//!
//! 1. R's link to SageMaker is up and SageMaker is not throttling anyone
//!    (the world's `Throttle` on SageMaker);
//! 2. no region's model throttles (throttling ends in 429 by design: it
//!    never spills over to another region);
//! 3. some region X serves the whole time: its model behaves normally (no
//!    outage, hang, extra latency, cold start, throttling or model error)
//!    and every endpoint of X exists in a serving status;
//! 4. the life is long enough for the router to get past every region
//!    that misbehaved at any moment of it, in the worst order, at the
//!    worst cost the router's documented policy allows (see [`Budget`]),
//!    with [`MARGIN`] left for X's answer.
//!
//! Anything less and the request is not judged. A good answer is a model's
//! answer (200), an accepted batch job (202), or the model's own error
//! (424 `ModelError`: the container answered; the router must not retry
//! it). The invariants: a request that could be served has a good answer
//! by its deadline; a request whose router lived gets an answer at all
//! (by its deadline plus [`GRACE`]); no request is answered twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use failoverd::config::Config;
use failoverd::router::Router;
use http_body_util::Full;
use hyper::Request;
use tokio::task::{AbortHandle, JoinHandle};

use super::sagemaker::{Behaviour, FakeSageMaker};
use super::schedule::REGIONS;
use super::world::{Link, Rng, Serving, Svc, World};

/// How long a client waits for a TCP connect before trying the next region.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a request must have left, once past every misbehaving region, for
/// the serving region to answer (round trips of at most 2 x 40 ms, 30 ms of
/// model latency, the client's hops) with room to spare.
pub const MARGIN: u64 = 300;
/// A living router's answer may arrive this long after the deadline (its
/// own deadline starts when it reads the request, a hop later).
pub const GRACE: u64 = 1_000;

/// Which API a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /endpoints/{model}/invocations`.
    SageMaker,
    /// `POST /v1/models/{model}/invoke`.
    Native,
}

/// One client request, as the seed draws it.
#[derive(Debug, Clone)]
pub struct Req {
    pub id: u64,
    pub at_ms: u64,
    /// Index into [`REGIONS`].
    pub entry: usize,
    pub model: &'static str,
    pub api: Api,
    /// `X-Deadline-Ms`; `None`: no header (the router's default).
    pub deadline_header: Option<u64>,
    pub body_len: usize,
    /// One-way client <-> router latency (ms).
    pub hop_ms: u64,
}

/// Draw the clients' requests of a seed, until `until_ms`. `SIM_CLIENTS=0`
/// sends none (to measure what the clients cost; the routers still run).
pub fn generate(seed: u64, until_ms: u64, regions: usize) -> Vec<Req> {
    let mut r = Rng::new(seed).fork(0xC11E_0001);
    let mut out = Vec::new();
    if std::env::var("SIM_CLIENTS").is_ok_and(|v| v == "0") {
        return out;
    }
    let mut t = r.range(0, 2_000);
    while t < until_ms {
        let deadline_header = match r.below(10) {
            0 => Some(1_000),
            1 | 2 => Some(3_000),
            3..=5 => Some(10_000),
            6 | 7 => Some(30_000),
            _ => None,
        };
        out.push(Req {
            id: out.len() as u64 + 1,
            at_ms: t,
            entry: r.below(regions as u64) as usize,
            model: if r.chance(0.5) { "default" } else { "chat" },
            api: if r.chance(0.8) {
                Api::SageMaker
            } else {
                Api::Native
            },
            deadline_header,
            body_len: r.range(2, 2_000) as usize,
            hop_ms: r.range(1, 5),
        });
        t += r.range(500, 7_500);
    }
    out
}

/// How a request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A model answer (2xx), from a region.
    Served { region: String },
    /// Accepted for later (202 with a job id): durable, so it counts.
    Accepted { job: String },
    /// The model's own error (424 `ModelError`): the container answered.
    Model { region: String },
    /// Refused or failed (4xx/5xx) with a status and AWS error code.
    Failed { status: u16, code: String },
}

impl Answer {
    fn good(&self) -> bool {
        !matches!(self, Answer::Failed { .. })
    }
}

/// Ways a region misbehaved during a request's life (bit set).
pub mod kind {
    /// Answers fast with a failure that moves the router on (outage, a
    /// missing or non-serving endpoint).
    pub const FAST: u8 = 1;
    /// Costs an attempt's timeout (hang, extra latency).
    pub const SLOW: u8 = 2;
    /// Cold starts: retried, then the next path, then the next region.
    pub const COLD: u8 = 4;
    /// Throttles: may end the request with 429.
    pub const THROTTLE: u8 = 8;
    /// The model answers errors (a good answer, but not a serving region).
    pub const MODEL_ERROR: u8 = 16;
}

/// What the world looks like to the routers at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    /// Per region (as [`REGIONS`]): its router's link to SageMaker is up.
    pub link_up: [bool; 3],
    /// SageMaker throttles every caller (the world's `Throttle`).
    pub throttled: bool,
    /// Per region: how its models misbehave now ([`kind`]); 0 = serving.
    pub kinds: [u8; 3],
}

/// The kinds of a behaviour (plus FAST for an endpoint not serving). The
/// destructuring names every field: a new fault in `Behaviour` does not
/// compile until it is given a kind here.
fn kinds_of(b: &Behaviour, endpoints_serve: bool) -> u8 {
    let Behaviour {
        latency,
        cold_after_idle,
        cold_start,
        throttle_rate,
        model_error,
        outage,
        hang,
    } = b;
    let mut k = 0;
    if !endpoints_serve || *outage {
        k |= kind::FAST;
    }
    if *hang || *latency > Behaviour::default().latency {
        k |= kind::SLOW;
    }
    if cold_after_idle.is_some() && !cold_start.is_zero() {
        k |= kind::COLD;
    }
    if *throttle_rate > 0.0 {
        k |= kind::THROTTLE;
    }
    if *model_error {
        k |= kind::MODEL_ERROR;
    }
    k
}

/// The worst time the router can spend at regions that misbehave, from
/// the router's settings (the defaults: attempt timeout half the time
/// left, at least 1 s; cold starts retried twice after 3 s and 6 s, on two
/// real-time paths).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    fraction: f64,
    attempt_min: u64,
    attempt_max: u64,
    /// Longest a cold region holds a request: per real-time path,
    /// `cold_start_delay x (1 + ... + retries)` plus a round trip per
    /// attempt, two paths, and a batch submission after (native API).
    cold: u64,
    /// A fast failure: one round trip and the model's latency.
    fast: u64,
}

impl Budget {
    pub fn new(cfg: &Config) -> Self {
        let r = &cfg.router;
        let n = u64::from(r.cold_start_retries);
        let delay = r.cold_start_delay.as_millis() as u64;
        let per_path = delay * n * (n + 1) / 2 + (n + 1) * 200;
        Self {
            fraction: r.attempt_timeout_fraction,
            attempt_min: r.attempt_timeout_min.as_millis() as u64,
            attempt_max: r.attempt_timeout_max.as_millis() as u64,
            cold: 2 * per_path + 1_000,
            fast: 250,
        }
    }

    /// One attempt's timeout with `left` ms to go (`core::retry::attempt_timeout`).
    fn attempt(&self, left: u64) -> u64 {
        ((left as f64 * self.fraction) as u64)
            .clamp(self.attempt_min, self.attempt_max.max(self.attempt_min))
            .min(left)
    }

    /// Time left after the router has been through regions of `kinds`, in
    /// this order, starting with `life` ms.
    fn left_after(&self, life: u64, kinds: &[u8]) -> u64 {
        let mut left = life;
        for &k in kinds {
            if k & kind::COLD != 0 {
                left = left.saturating_sub(self.cold);
            }
            if k & kind::SLOW != 0 {
                left = left.saturating_sub(self.attempt(left));
            }
            if k & kind::FAST != 0 {
                left = left.saturating_sub(self.fast);
            }
        }
        left
    }

    /// Whether `life` ms get a request past every misbehaving region in
    /// the worst order, with [`MARGIN`] to spare.
    pub fn enough(&self, life: u64, kinds: &[u8]) -> bool {
        let bad: Vec<u8> = kinds.iter().copied().filter(|k| *k != 0).collect();
        permutations(&bad)
            .iter()
            .all(|order| self.left_after(life, order) >= MARGIN)
    }
}

fn permutations(xs: &[u8]) -> Vec<Vec<u8>> {
    if xs.len() <= 1 {
        return vec![xs.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..xs.len() {
        let mut rest = xs.to_vec();
        let x = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, x);
            out.push(p);
        }
    }
    out
}

/// A router a client reached: where, and for how long it held the request.
#[derive(Debug, Clone)]
struct Taken {
    region: usize,
    at_ms: u64,
    /// The router's own deadline: the client's when it sent `X-Deadline-Ms`,
    /// else the router's default from when it took the request.
    router_deadline_ms: u64,
    /// Everything observed from `at_ms` on, folded: links all up...
    link_up: bool,
    throttled: bool,
    /// ...and per region, the kinds it showed.
    kinds: [u8; 3],
}

/// One request's life.
#[derive(Debug, Clone)]
pub struct Entry {
    pub req: Req,
    pub sent_ms: u64,
    pub deadline_ms: u64,
    /// The regions tried before one took it, and how each failed.
    pub tries: Vec<String>,
    taken: Option<Taken>,
    /// The router died holding the request.
    pub lost: bool,
    /// No router took it before its deadline.
    pub unreached: bool,
    pub answers: Vec<(u64, Answer)>,
    /// Judged (with its verdict for the figures).
    verdict: Option<Verdict>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Could be served (and was).
    Servable,
    /// Not judged: no region could serve it, or its router died, or no
    /// router took it.
    NotJudged,
}

/// Counts for the run's summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub sent: u64,
    /// With a good answer by the deadline.
    pub good: u64,
    /// Judged: could be served.
    pub servable: u64,
    pub lost: u64,
    pub unreached: u64,
}

/// Every request the simulated clients sent.
#[derive(Debug, Default)]
pub struct Ledger {
    pub requests: BTreeMap<u64, Entry>,
    /// Taken by a router and not judged yet.
    open: BTreeSet<u64>,
    /// Sent and not judged yet, by (deadline, id).
    pending: BTreeSet<(u64, u64)>,
    /// Violations found since the last [`Ledger::take_violations`].
    violations: Vec<String>,
}

impl Ledger {
    pub fn sent(&mut self, req: &Req, sent_ms: u64, deadline_ms: u64) {
        self.pending.insert((deadline_ms, req.id));
        self.requests.insert(
            req.id,
            Entry {
                req: req.clone(),
                sent_ms,
                deadline_ms,
                tries: Vec::new(),
                taken: None,
                lost: false,
                unreached: false,
                answers: Vec::new(),
                verdict: None,
            },
        );
    }

    fn tried(&mut self, id: u64, what: String) {
        if let Some(e) = self.requests.get_mut(&id) {
            e.tries.push(what);
        }
    }

    fn taken(
        &mut self,
        id: u64,
        region: usize,
        at_ms: u64,
        router_deadline_ms: u64,
        now: &Conditions,
    ) {
        if let Some(e) = self.requests.get_mut(&id) {
            e.taken = Some(Taken {
                region,
                at_ms,
                router_deadline_ms,
                link_up: true,
                throttled: false,
                kinds: [0; 3],
            });
            self.open.insert(id);
            Self::fold(e, now);
            // Judged once both deadlines have passed.
            if router_deadline_ms > e.deadline_ms && self.pending.remove(&(e.deadline_ms, id)) {
                self.pending.insert((router_deadline_ms, id));
            }
        }
    }

    fn fold(e: &mut Entry, c: &Conditions) {
        if let Some(t) = &mut e.taken {
            t.link_up &= c.link_up[t.region];
            t.throttled |= c.throttled;
            for (k, now) in t.kinds.iter_mut().zip(c.kinds) {
                *k |= now;
            }
        }
    }

    /// Fold the world as it is now into every open request's life.
    pub fn observe(&mut self, c: &Conditions) {
        for id in &self.open {
            if let Some(e) = self.requests.get_mut(id) {
                Self::fold(e, c);
            }
        }
    }

    pub fn answered(&mut self, id: u64, at_ms: u64, a: Answer) {
        if let Some(e) = self.requests.get_mut(&id) {
            e.answers.push((at_ms, a));
            if e.answers.len() > 1 {
                self.violations.push(format!(
                    "request {id} answered {} times: {:?}",
                    e.answers.len(),
                    e.answers
                ));
            }
        }
    }

    fn lost(&mut self, id: u64) {
        if let Some(e) = self.requests.get_mut(&id) {
            e.lost = true;
        }
    }

    fn unreached(&mut self, id: u64) {
        if let Some(e) = self.requests.get_mut(&id) {
            e.unreached = true;
        }
    }

    /// Whether request `e` could be served (module doc), from what was
    /// observed over its life.
    fn could_serve(e: &Entry, budget: &Budget) -> bool {
        let Some(t) = &e.taken else { return false };
        if e.lost || !t.link_up || t.throttled {
            return false;
        }
        if t.kinds.iter().any(|k| k & kind::THROTTLE != 0) {
            return false;
        }
        if !t.kinds.contains(&0) {
            return false;
        }
        budget.enough(e.deadline_ms.saturating_sub(t.at_ms), &t.kinds)
    }

    /// Judge every request whose deadline, and its router's, (plus
    /// [`GRACE`]) have passed at `now`.
    pub fn judge(&mut self, now: u64, budget: &Budget) {
        while let Some(&(deadline, id)) = self.pending.first() {
            if deadline + GRACE > now {
                break;
            }
            self.pending.pop_first();
            self.open.remove(&id);
            let Some(e) = self.requests.get_mut(&id) else {
                continue;
            };
            let servable = Self::could_serve(e, budget);
            e.verdict = Some(if servable {
                Verdict::Servable
            } else {
                Verdict::NotJudged
            });
            let good = e
                .answers
                .iter()
                .any(|(at, a)| *at <= e.deadline_ms && a.good());
            let who = format!(
                "request {id} ({} {:?} via {}, sent at {} ms, deadline {} ms)",
                e.req.model, e.req.api, REGIONS[e.req.entry], e.sent_ms, e.deadline_ms
            );
            if let Some(t) = e.taken.as_ref().filter(|_| !e.lost && e.answers.is_empty()) {
                self.violations.push(format!(
                    "{who}: {}'s router lived but never answered, its own deadline {} ms (tries before {:?})",
                    REGIONS[t.region], t.router_deadline_ms, e.tries
                ));
            } else if servable && !good {
                self.violations.push(format!(
                    "{who} could be served (some region served all along) but got {:?}; seen over its life: {:?}",
                    e.answers, e.taken
                ));
            }
        }
    }

    /// Whether a router holds a request not judged yet.
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Whether every request sent has been judged.
    pub fn all_judged(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn take_violations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.violations)
    }

    pub fn figures(&self) -> Figures {
        let mut f = Figures::default();
        for e in self.requests.values() {
            f.sent += 1;
            if e.answers
                .iter()
                .any(|(at, a)| *at <= e.deadline_ms && a.good())
            {
                f.good += 1;
            }
            if e.verdict == Some(Verdict::Servable) {
                f.servable += 1;
            }
            f.lost += u64::from(e.lost);
            f.unreached += u64::from(e.unreached);
        }
        f
    }
}

/// The router a region's clients reach now.
struct RouterProc {
    pid: u64,
    router: Arc<Router>,
}

/// The routers of the running daemons, by region, and the requests each
/// process holds. A request is a task of its router's process:
/// [`Routers::down_pid`] (a crash) aborts them all, also when the region's
/// clients had already moved to its other daemon (seed 25054: a request
/// held by a process that died after its twin started answered 503 from
/// the dead process 43 s later).
#[derive(Default)]
pub struct Routers {
    by_region: Mutex<BTreeMap<String, RouterProc>>,
    held: Mutex<BTreeMap<u64, Vec<AbortHandle>>>,
}

/// What a client's connect finds.
enum Connect {
    Refused,
    TimedOut,
    Open(u64),
}

impl Routers {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, RouterProc>> {
        self.by_region.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn held(&self) -> MutexGuard<'_, BTreeMap<u64, Vec<AbortHandle>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `region`'s clients reach process `pid`'s router from now on (a
    /// region with two daemons routes through one of them at a time:
    /// `fleet.rs`); what the previous one holds stays its own.
    pub fn up(&self, region: &str, pid: u64, router: Arc<Router>) {
        self.lock()
            .insert(region.to_string(), RouterProc { pid, router });
    }

    /// Process `pid` died: the requests it holds die with it, and the
    /// region's clients no longer reach it.
    pub fn down_pid(&self, region: &str, pid: u64) {
        {
            let mut g = self.lock();
            if g.get(region).is_some_and(|p| p.pid == pid) {
                g.remove(region);
            }
        }
        for t in self.held().remove(&pid).unwrap_or_default() {
            t.abort();
        }
    }

    fn connect(&self, world: &World, region: &str) -> Connect {
        let g = self.lock();
        match g.get(region) {
            None => Connect::Refused,
            Some(_) if world.serving(region) == Serving::Out => Connect::TimedOut,
            Some(p) => Connect::Open(p.pid),
        }
    }

    /// Hand `req` to the router of `region` if process `pid` still runs it.
    fn handle(
        &self,
        region: &str,
        pid: u64,
        req: Request<Full<Bytes>>,
    ) -> Option<JoinHandle<failoverd::http::HttpResponse>> {
        let router = {
            let g = self.lock();
            g.get(region).filter(|p| p.pid == pid)?.router.clone()
        };
        let task = tokio::spawn(router.handle(req));
        let mut held = self.held();
        let tasks = held.entry(pid).or_default();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
        Some(task)
    }
}

/// Everything a client task needs.
pub struct Clients {
    pub world: Arc<World>,
    pub sm: Arc<FakeSageMaker>,
    pub routers: Arc<Routers>,
    pub ledger: Mutex<Ledger>,
    /// `router.default_deadline` (ms): a request without `X-Deadline-Ms`
    /// has this long from when a router takes it (the client gives up
    /// this long after it first sent it).
    pub default_deadline_ms: u64,
    /// Every region's endpoints (all of them must serve for the region to).
    pub endpoints: Vec<(String, Vec<String>)>,
}

impl Clients {
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The world as the routers meet it now.
    pub fn conditions(&self) -> Conditions {
        let mut c = Conditions {
            link_up: [true; 3],
            throttled: self.world.throttle(Svc::SageMaker) > 0.0,
            kinds: [0; 3],
        };
        for (i, region) in REGIONS.iter().enumerate() {
            c.link_up[i] = self.world.link(region, Svc::SageMaker) == Link::Up;
            let serve = self
                .endpoints
                .iter()
                .find(|(r, _)| r == region)
                .is_some_and(|(_, eps)| eps.iter().all(|ep| self.sm.serves(region, ep)));
            c.kinds[i] = kinds_of(&self.sm.behaviour(region), serve);
        }
        c
    }

    /// Send every request at its time (a task each).
    pub async fn drive(self: Arc<Self>, reqs: Vec<Req>) {
        for req in reqs {
            tokio::time::sleep_until(self.world.at(req.at_ms)).await;
            let me = self.clone();
            tokio::spawn(async move { me.request(req).await });
        }
    }

    async fn request(self: Arc<Self>, req: Req) {
        let world = self.world.clone();
        let hop = Duration::from_millis(req.hop_ms);
        let sent = world.elapsed_ms();
        let deadline = sent + req.deadline_header.unwrap_or(self.default_deadline_ms);
        self.ledger().sent(&req, sent, deadline);
        let order = std::iter::once(req.entry)
            .chain((0..self.endpoints.len()).filter(|i| *i != req.entry))
            .collect::<Vec<_>>();
        for i in order {
            let region = REGIONS[i];
            if world.elapsed_ms() >= deadline {
                break;
            }
            tokio::time::sleep(hop).await;
            let pid = match self.routers.connect(&world, region) {
                Connect::Refused => {
                    tokio::time::sleep(hop).await;
                    self.ledger().tried(req.id, format!("{region}: refused"));
                    continue;
                }
                Connect::TimedOut => {
                    let left = deadline.saturating_sub(world.elapsed_ms());
                    tokio::time::sleep(CONNECT_TIMEOUT.min(Duration::from_millis(left))).await;
                    self.ledger()
                        .tried(req.id, format!("{region}: connect timed out"));
                    continue;
                }
                Connect::Open(pid) => pid,
            };
            let now = world.elapsed_ms();
            let http = build(&req, deadline.saturating_sub(now));
            let c = self.conditions();
            let Some(task) = self.routers.handle(region, pid, http) else {
                // Died between the connect and the request.
                self.ledger().tried(req.id, format!("{region}: reset"));
                continue;
            };
            let router_deadline = match req.deadline_header {
                Some(_) => deadline,
                None => now + self.default_deadline_ms,
            };
            self.ledger().taken(req.id, i, now, router_deadline, &c);
            let outcome = task.await;
            let Ok(resp) = outcome else {
                self.ledger().lost(req.id);
                world.trace(format!(
                    "client {}: {region}'s router died holding it",
                    req.id
                ));
                return;
            };
            tokio::time::sleep(hop).await;
            let at = world.elapsed_ms();
            let answer = answer_of(&resp);
            let attempts = header(&resp, "x-failoverd-attempts");
            world.trace(format!(
                "client {} ({} {:?} via {region}, deadline {} s): {} after {} ms, {attempts} attempt(s){}",
                req.id,
                req.model,
                req.api,
                (deadline - sent) / 1000,
                match &answer {
                    Answer::Served { region } => format!("200 from {region}"),
                    Answer::Accepted { job } => format!("202 job {}", &job[..job.len().min(8)]),
                    Answer::Model { region } => format!("424 ModelError from {region}"),
                    Answer::Failed { status, code } => format!("{status} {code}"),
                },
                at - sent,
                if at > deadline { " (late)" } else { "" }
            ));
            self.ledger().answered(req.id, at, answer);
            return;
        }
        self.ledger().unreached(req.id);
        world.trace(format!(
            "client {}: no router reachable before its deadline",
            req.id
        ));
    }
}

/// The HTTP request of `req` with `left_ms` to its deadline.
fn build(req: &Req, left_ms: u64) -> Request<Full<Bytes>> {
    let uri = match req.api {
        Api::SageMaker => format!("/endpoints/{}/invocations", req.model),
        Api::Native => format!("/v1/models/{}/invoke", req.model),
    };
    let body = format!(
        "{{\"inputs\":\"{}\"}}",
        "x".repeat(req.body_len.saturating_sub(13).max(1))
    );
    let mut b = Request::post(uri).header("content-type", "application/json");
    if req.deadline_header.is_some() {
        b = b.header("x-deadline-ms", left_ms.max(1).to_string());
    }
    b.body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

fn header(resp: &failoverd::http::HttpResponse, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string()
}

fn answer_of(resp: &failoverd::http::HttpResponse) -> Answer {
    let status = resp.status().as_u16();
    let region = header(resp, "x-failoverd-region");
    match status {
        200 => Answer::Served { region },
        202 => Answer::Accepted {
            job: header(resp, "location"),
        },
        424 => Answer::Model { region },
        _ => Answer::Failed {
            status,
            code: header(resp, "x-amzn-errortype"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: u64) -> Req {
        Req {
            id,
            at_ms: 0,
            entry: 0,
            model: "default",
            api: Api::SageMaker,
            deadline_header: Some(10_000),
            body_len: 10,
            hop_ms: 1,
        }
    }

    fn budget() -> Budget {
        Budget {
            fraction: 0.5,
            attempt_min: 1_000,
            attempt_max: 60_000,
            cold: 20_000,
            fast: 250,
        }
    }

    fn all_serving() -> Conditions {
        Conditions {
            link_up: [true; 3],
            throttled: false,
            kinds: [0; 3],
        }
    }

    #[test]
    fn the_rule() {
        let b = budget();
        let mut l = Ledger::default();
        for id in 1..=5 {
            l.sent(&req(id), 0, 1000);
            l.taken(id, 0, 0, 1000, &all_serving());
        }
        let served = || Answer::Served {
            region: "us-west-2".into(),
        };
        l.answered(1, 500, served());
        l.answered(2, 1500, served());
        l.answered(4, 10, Answer::Accepted { job: "j".into() });
        l.answered(
            4,
            20,
            Answer::Failed {
                status: 500,
                code: "x".into(),
            },
        );
        l.answered(
            5,
            900,
            Answer::Model {
                region: "us-east-1".into(),
            },
        );
        let twice = l.take_violations();
        assert_eq!(twice.len(), 1, "{twice:?}");
        assert!(twice[0].starts_with("request 4 answered 2 times"));
        l.judge(1000 + GRACE - 1, &b);
        assert!(
            l.take_violations().is_empty(),
            "nothing is judged before deadline + grace"
        );
        l.judge(1000 + GRACE, &b);
        let v = l.take_violations();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(
            v[0].starts_with("request 2 ") && v[0].contains("could be served"),
            "late: {v:?}"
        );
        assert!(
            v[1].starts_with("request 3 ") && v[1].contains("never answered"),
            "{v:?}"
        );
        assert!(l.all_judged());
        let f = l.figures();
        assert_eq!((f.sent, f.good, f.servable), (5, 3, 5));
    }

    #[test]
    fn could_serve_needs_one_region_serving_all_along_a_link_and_time() {
        let b = budget();
        let judge = |c: &[Conditions], deadline: u64| {
            let mut l = Ledger::default();
            l.sent(&req(1), 0, deadline);
            l.taken(1, 0, 0, deadline, &c[0]);
            for x in &c[1..] {
                l.observe(x);
            }
            let failed = Answer::Failed {
                status: 503,
                code: "ServiceUnavailable".into(),
            };
            l.answered(1, 10, failed);
            l.judge(deadline + GRACE, &b);
            !l.take_violations().is_empty()
        };
        let ok = all_serving();
        assert!(
            judge(std::slice::from_ref(&ok), 10_000),
            "servable, a 503: a violation"
        );
        // Each region misbehaves at some moment: nobody served all along.
        let mut a = ok.clone();
        a.kinds = [kind::FAST, 0, kind::SLOW];
        let mut c = ok.clone();
        c.kinds = [0, kind::COLD, 0];
        assert!(!judge(&[a.clone(), c], 10_000));
        // One region serves all along, but the others may take the time.
        assert!(judge(&[a.clone()], 10_000));
        let mut cold = ok.clone();
        cold.kinds = [kind::COLD, 0, kind::SLOW];
        assert!(
            !judge(&[cold.clone()], 10_000),
            "a cold region can hold it 20 s"
        );
        assert!(
            !judge(&[cold.clone()], 30_000),
            "a hang first leaves 15 s: not enough"
        );
        assert!(judge(&[cold], 50_000));
        // The router's own link, throttling anywhere: not judged.
        let mut cut = ok.clone();
        cut.link_up[0] = false;
        assert!(!judge(&[ok.clone(), cut], 10_000));
        let mut cut = ok.clone();
        cut.link_up[1] = false;
        assert!(
            judge(&[ok.clone(), cut], 10_000),
            "another router's link does not matter"
        );
        let mut thr = ok.clone();
        thr.kinds[2] = kind::THROTTLE;
        assert!(!judge(&[ok.clone(), thr], 10_000));
        let mut thr = ok.clone();
        thr.throttled = true;
        assert!(!judge(&[thr], 10_000));
    }

    #[test]
    fn a_router_without_a_deadline_header_is_judged_at_its_own_deadline() {
        let mut l = Ledger::default();
        l.sent(&req(1), 0, 70_000);
        // Taken 4 s late (two connect timeouts): the router's default
        // deadline ends 4 s after the client's.
        l.taken(1, 2, 4_000, 74_000, &all_serving());
        l.judge(71_000 + GRACE, &budget());
        assert!(
            l.take_violations().is_empty(),
            "its router may still answer"
        );
        assert!(!l.all_judged());
        l.answered(
            1,
            74_000,
            Answer::Failed {
                status: 504,
                code: "DeadlineExceeded".into(),
            },
        );
        l.judge(74_000 + GRACE, &budget());
        let v = l.take_violations();
        assert!(v.len() == 1 && v[0].contains("could be served"), "{v:?}");
    }

    #[test]
    fn the_budget_takes_the_worst_order() {
        let b = budget();
        // Slow first costs half of 10 s, then fast: plenty left. Fast
        // first, then slow: about the same. Two slow regions: 10 -> 5 -> 2.5.
        assert!(b.enough(10_000, &[kind::SLOW, kind::FAST, 0]));
        assert!(b.enough(10_000, &[kind::SLOW, kind::SLOW, 0]));
        // 1 s: one hang takes it all (the attempt timeout's floor is 1 s).
        assert!(!b.enough(1_000, &[kind::SLOW, 0, 0]));
        assert!(b.enough(1_000, &[kind::FAST, 0, 0]));
        assert!(!b.enough(1_000, &[kind::FAST, kind::FAST, kind::FAST]));
        assert_eq!(permutations(&[1, 2, 4]).len(), 6);
    }

    #[test]
    fn a_seed_draws_the_same_requests() {
        let a = generate(5, 300_000, 3);
        let b = generate(5, 300_000, 3);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!(a.len() > 50, "{}", a.len());
        assert!(a.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert_ne!(format!("{a:?}"), format!("{:?}", generate(6, 300_000, 3)));
    }
}
