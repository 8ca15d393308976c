//! The routing loop: try regions and paths until one answers, the request
//! is refused for good, or its deadline passes.
//!
//! A request runs as one or two *lanes*. A lane is at one target (a region
//! and a path) and moves on its own:
//!
//! - cold start (`ModelNotReadyException`): the same target again after
//!   `cold_start_delay × n` while the deadline allows, `cold_start_retries`
//!   times; then the next path down the chain in the same region; then the
//!   lane ends;
//! - throttling: the same target again after an exponential backoff, paid
//!   from the retry budget; when the budget or `throttle_retries` is spent
//!   the request is answered 429 (by default throttling does not move a
//!   request to another region: that would move the overload, not end it);
//! - spill-over: for a model with `spill_over`, throttling or a cold start
//!   moves the request at once to the next warm region in the ranking
//!   ([`targets::is_warm`]), once, paid from the retry budget; never a
//!   request in a session;
//! - outage, no connection, a missing endpoint, or the attempt's own
//!   timeout: the breaker is told and the lane ends;
//! - the model's error, a validation error, an answer the router cannot
//!   read: that is the answer.
//!
//! When no lane is running, the next region in the ranking gets a new lane;
//! when the ranking is used up, the request is answered with what the last
//! lanes met (every region cold: 429 `ModelNotReadyException`; else 503).
//!
//! Every attempt has its own timeout ([`crate::core::retry::attempt_timeout`]),
//! never past the deadline, so a hung region costs one attempt. A model
//! with `retry_on_timeout = false` must not run twice: its timed-out
//! attempt is reported to the breaker but kept waiting until the deadline,
//! and nothing else is sent.
//!
//! A model with `idempotent = false` goes further: a request is sent again
//! (to the same target or the next region) only after a failure that says
//! the model did not run: throttling, a cold start, a missing endpoint, or
//! a connection that never carried the request
//! ([`InvokeError::outcome_unknown`]). After a 5xx, a connection lost once
//! the request was written, an answer cut off, a timeout or the deadline,
//! the client gets `RouterError::OutcomeUnknown` (424 `ModelError`, which
//! no SDK resends on its own) and nothing else is sent.
//!
//! Hedging: with the model's `hedge_after` set, when the first attempt has
//! not answered after that long (and the retry budget allows), a second
//! lane starts at the next region in the ranking. The first answer wins and
//! the other attempt is dropped (cancelled). Only real-time attempts are
//! hedged: a batch submission creates a durable job and must not run twice.
//!
//! At the deadline every attempt still in flight is a timeout for its
//! target's breaker, and the request gets 504.
//!
//! Stateful sessions: a request whose `SessionId` names a session this
//! router saw opened (`NewSessionId`) runs as one lane at the region that
//! opened it, never hedged and never moved; when that region can no longer
//! serve it (seen down, its target ejected, a failover since),
//! the session has ended and the request is refused with
//! `RouterError::SessionEnded`, before any call. A session id the router
//! does not know goes to the first region of the ranking only.

use std::sync::OnceLock;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures_util::stream::StreamExt;
use tokio::time::Instant;
use tracing::{debug, info};

use super::Router;
use super::batch::{self, Submission, SubmitError};
use super::reply::{Reply, RouterError};
use super::request::{Api, Ask, too_large};
use super::targets::{self, Ranking};
use crate::config::{Config, ModelConfig, RegionConfig, RegionServing, Serving};
use crate::core::rand;
use crate::core::retry::{self, AttemptPolicy};
use crate::core::routing::{self, Available, NO_BATCH_THRESHOLD, NoPath, Path};
use crate::metrics::router::{CallResult, SpillCause};
use crate::ports::inference::{Answer, InvokeError, StreamError, Streamed};

/// The `SessionId` that asks the model to open a session.
const NEW_SESSION: &str = "NEW_SESSION";
use crate::ports::jobs::Job;

/// One lane's position.
struct Lane<'c> {
    region: &'c RegionConfig,
    /// The model's row of the serving table in `region`.
    serving: &'c RegionServing,
    path: Path,
    /// Cold-start retries at this path.
    cold: u32,
    /// Throttling retries at this path.
    throttled: u32,
    /// Started as a hedge.
    hedge: bool,
    /// Started as a spill-over (it does not spill again).
    spilled: bool,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Invoke(InvokeError),
    #[error("batch submission failed")]
    Submit(#[source] SubmitError),
    /// The attempt's own timeout fired. `breaker_told`: the breaker already
    /// heard of it (a model that may not be retried keeps waiting).
    #[error("no answer within the attempt's {after:?}")]
    TimedOut { after: Duration, breaker_told: bool },
}

impl Lane<'_> {
    /// The target at this lane's path (a lane is only made where the
    /// model has one: [`Cursor`] picks paths from the same row).
    fn target(&self) -> &Serving {
        self.serving
            .path(self.path)
            .expect("a lane's path has a target in its serving row")
    }
}

impl AttemptError {
    fn result(&self) -> CallResult {
        match self {
            AttemptError::Invoke(e) | AttemptError::Submit(SubmitError::Submit(e)) => {
                super::call_result(e)
            }
            AttemptError::Submit(SubmitError::NoOutputLocation) => CallResult::Other,
            AttemptError::Submit(_) => CallResult::Unavailable,
            AttemptError::TimedOut { .. } => CallResult::Timeout,
        }
    }

    /// Whether the model may have run without an answer to give (see
    /// [`InvokeError::outcome_unknown`]); a batch submission may have
    /// run once `InvokeEndpointAsync` was called (its job is recorded after).
    fn outcome_unknown(&self) -> bool {
        match self {
            AttemptError::Invoke(e) | AttemptError::Submit(SubmitError::Submit(e)) => {
                e.outcome_unknown()
            }
            AttemptError::Submit(SubmitError::Store(_)) => false,
            AttemptError::Submit(SubmitError::Record(_) | SubmitError::NoOutputLocation) => true,
            AttemptError::TimedOut { .. } => true,
        }
    }

    /// Whether the target's breaker should hear of it.
    fn is_target_failure(&self) -> bool {
        match self {
            AttemptError::Invoke(e) | AttemptError::Submit(SubmitError::Submit(e)) => {
                e.is_target_failure()
            }
            AttemptError::Submit(_) => true,
            AttemptError::TimedOut { breaker_told, .. } => !breaker_told,
        }
    }
}

enum Success {
    Answer(Answer),
    Job(Job),
}

/// A finished attempt.
struct Tried<'c> {
    id: u32,
    lane: Lane<'c>,
    took: Duration,
    /// When it ended (the breakers' reading).
    ended: Instant,
    result: Result<Success, AttemptError>,
}

/// What a failed attempt leads to.
enum Step<'c> {
    /// Try `lane` again after the delay.
    Again(Lane<'c>, Duration),
    /// This lane is done; `cold`: it ended on cold starts.
    LaneEnds { cold: bool, error: AttemptError },
    /// Throttled and the budget is spent.
    Throttled,
    /// The request's answer.
    Answer(RouterError),
}

/// The regions left to try, in ranked order.
struct Cursor<'c, 'a> {
    cfg: &'c Config,
    model: &'c ModelConfig,
    order: Vec<usize>,
    next: usize,
    class: &'a str,
    len: u64,
    threshold: u64,
    mask: fn(Available) -> Available,
    /// Some region's paths are all too small for the payload.
    too_large: Option<u64>,
}

impl<'c> Cursor<'c, '_> {
    /// A lane at the next region that has a path for the request, if
    /// `accept` takes it; a region refused by `accept` stays next.
    fn next_lane(&mut self, accept: impl FnOnce(&Lane<'c>) -> bool) -> Option<Lane<'c>> {
        while let Some(&i) = self.order.get(self.next) {
            let region = &self.cfg.regions[i];
            let Some(serving) = self.model.in_region(i) else {
                self.next += 1;
                continue;
            };
            let avail = (self.mask)(super::available(serving));
            match routing::choose_path(self.class, self.len, self.threshold, avail) {
                Ok(path) => {
                    let lane = Lane {
                        region,
                        serving,
                        path,
                        cold: 0,
                        throttled: 0,
                        hedge: false,
                        spilled: false,
                    };
                    if !accept(&lane) {
                        return None;
                    }
                    self.next += 1;
                    return Some(lane);
                }
                Err(NoPath::TooLarge { limit }) => self.too_large = Some(limit),
                Err(NoPath::NoEndpoint) => {}
            }
            self.next += 1;
        }
        None
    }
}

impl<'c> Cursor<'c, '_> {
    /// A lane at the first region left in the ranking whose target is
    /// `warm` (by index into `cfg.regions`, and the path the request would
    /// take there), if `pay` allows; that region leaves the ranking, the
    /// ones before it stay.
    fn next_warm(
        &mut self,
        warm: impl Fn(usize, Path) -> bool,
        pay: impl FnOnce() -> bool,
    ) -> Option<Lane<'c>> {
        let (j, path) = self.order[self.next.min(self.order.len())..]
            .iter()
            .enumerate()
            .find_map(|(j, &i)| {
                let avail = (self.mask)(super::available(self.model.in_region(i)?));
                routing::choose_path(self.class, self.len, self.threshold, avail)
                    .ok()
                    .filter(|&p| p.is_realtime() && warm(i, p))
                    .map(|p| (self.next + j, p))
            })?;
        if !pay() {
            return None;
        }
        let i = self.order.remove(j);
        Some(Lane {
            region: &self.cfg.regions[i],
            serving: self.model.in_region(i)?,
            path,
            cold: 0,
            throttled: 0,
            hedge: false,
            spilled: true,
        })
    }
}

/// When an attempt was launched (a reading of the router's clock), and
/// how long after that its call starts.
struct Launch {
    at: Instant,
    delay: Duration,
}

/// An attempt in flight (for the deadline's accounting).
struct InFlight<'c> {
    id: u32,
    region: &'c str,
    path: Path,
    target: &'c Serving,
    /// When its call starts (after any retry delay).
    calls_at: Instant,
}

/// The attempts of one request in flight: at most two (a lane and its
/// hedge), each in a slot pinned on the routing loop's stack. Replaces a
/// `FuturesUnordered` (a queue and a task node allocated per request, and
/// a wake-up routed through them) with no change in behaviour: the first
/// attempt to finish is taken; when both are ready at once, the older.
struct Tries<'p, F> {
    slots: [Pin<&'p mut Option<F>>; 2],
    /// Each slot's attempt number (which is older).
    ids: [u32; 2],
}

impl<F: Future> Tries<'_, F> {
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Start attempt `id`. The routing loop never runs more than two: it
    /// launches when none runs, as a retry of one that just ended, or as
    /// a hedge when exactly one runs.
    fn push(&mut self, id: u32, attempt: F) {
        let i = if self.slots[0].is_none() { 0 } else { 1 };
        debug_assert!(self.slots[i].is_none(), "a third attempt at once");
        self.ids[i] = id;
        self.slots[i].set(Some(attempt));
    }

    /// The next attempt to finish (pending while none runs).
    fn next(&mut self) -> impl Future<Output = F::Output> + '_ {
        std::future::poll_fn(move |cx| {
            let order = if self.ids[1] < self.ids[0] {
                [1, 0]
            } else {
                [0, 1]
            };
            for i in order {
                let slot = &mut self.slots[i];
                if let Some(f) = slot.as_mut().as_pin_mut()
                    && let Poll::Ready(out) = f.poll(cx)
                {
                    slot.set(None);
                    return Poll::Ready(out);
                }
            }
            Poll::Pending
        })
    }
}

impl Router {
    /// Try regions and paths until one answers or the deadline passes.
    pub(super) async fn route<'c>(&self, cfg: &'c Config, ask: &Ask<'c>) -> Reply<'c> {
        // One reading of the clock until the first attempt is launched
        // (nothing awaits in between).
        let now = self.clock.now();
        let mut first_now = Some(now);
        let mono_ms = self.clock.mono_ms_at(now);
        self.budget().on_request(mono_ms);
        let len = ask.inv.body.len() as u64;
        let (threshold, mask): (u64, fn(Available) -> Available) = match ask.api {
            Api::SageMaker => (NO_BATCH_THRESHOLD, Available::realtime),
            Api::Native => (
                self.batch_threshold(cfg, &ask.class),
                std::convert::identity,
            ),
        };
        let ranking = Ranking {
            cfg,
            model: ask.model,
            class: &ask.class,
            len,
            threshold,
            mask,
            lease_now: self.clock.lease_mono(now),
            now_ms: mono_ms,
        };
        let mut order = targets::rank(&self.shared, &self.targets, &ranking);
        // A stateful session stays in the region that opened it, with no
        // other region tried and no hedge (another region's model has no
        // such session); when that region can no longer serve it, the
        // session has ended.
        let session = ask
            .inv
            .passed
            .session_id
            .as_ref()
            .and_then(|v| v.to_str().ok());
        if let Err(e) = self.pin_session(session, &ranking, &mut order) {
            return Reply::from(e);
        }
        let mut cursor = Cursor {
            cfg,
            model: ask.model,
            order,
            next: 0,
            class: &ask.class,
            len,
            threshold,
            mask,
            too_large: None,
        };
        let job_id = OnceLock::new();
        // At most two attempts run at once (a lane and its hedge; a retry
        // replaces the attempt it follows): two slots pinned here, no
        // allocation per request (docs/router-performance.md).
        let first_slot = std::pin::pin!(None);
        let second_slot = std::pin::pin!(None);
        let mut tries = Tries {
            slots: [first_slot, second_slot],
            ids: [0; 2],
        };
        let mut in_flight: [Option<InFlight<'c>>; 2] = [None, None];
        let mut attempts = 0u32;
        // Where the last lane was, and why the lanes that ended did.
        let mut at: Option<(&'c str, Path)> = None;
        let mut last_failure: Option<(&'c str, Path, AttemptError)> = None;
        let (mut ended_cold, mut ended_otherwise) = (false, false);
        let mut throttled_out: Option<(&'c str, Path)> = None;
        let mut hedge_armed = false;
        let hedge_timer = tokio::time::sleep_until(ask.deadline);
        tokio::pin!(hedge_timer);
        let deadline = tokio::time::sleep_until(ask.deadline);
        tokio::pin!(deadline);

        let launch = |lane: Lane<'c>,
                      now: Instant,
                      delay: Duration,
                      tries: &mut Tries<'_, _>,
                      in_flight: &mut [Option<InFlight<'c>>; 2],
                      attempts: &mut u32| {
            *attempts += 1;
            let region: &'c RegionConfig = lane.region;
            let serving: &'c RegionServing = lane.serving;
            // Beside its attempt: at most two (see `Tries`).
            let free = usize::from(in_flight[0].is_some());
            in_flight[free] = Some(InFlight {
                id: *attempts,
                region: &region.name,
                path: lane.path,
                target: serving
                    .path(lane.path)
                    .expect("a lane's path has a target in its serving row"),
                calls_at: now + delay,
            });
            let when = Launch { at: now, delay };
            tries.push(
                *attempts,
                self.attempt(cfg, ask, *attempts, lane, when, &job_id),
            );
        };

        loop {
            if tries.is_empty() {
                if let Some((region, path)) = throttled_out {
                    return Reply::from(RouterError::Throttled {
                        region: region.to_string(),
                    })
                    .at(Some(path), Some(region), attempts);
                }
                let now = first_now.take().unwrap_or_else(|| self.clock.now());
                if now >= ask.deadline {
                    let (region, path) = at.unzip();
                    return Reply::from(RouterError::DeadlineExceeded).at(path, region, attempts);
                }
                let Some(lane) = cursor.next_lane(|_| true) else {
                    return exhausted(
                        ask.api,
                        len,
                        last_failure,
                        ended_cold && !ended_otherwise,
                        cursor.too_large,
                        attempts,
                    );
                };
                if attempts == 0
                    && let Some(after) = ask
                        .model
                        .hedge_after
                        .filter(|_| lane.path.is_realtime() && session.is_none())
                    && let Some(d) = self.targets.hedge_delay(lane.target(), after)
                {
                    hedge_timer.as_mut().reset(now + d);
                    hedge_armed = true;
                }
                let r: &'c RegionConfig = lane.region;
                at = Some((&r.name, lane.path));
                launch(
                    lane,
                    now,
                    Duration::ZERO,
                    &mut tries,
                    &mut in_flight,
                    &mut attempts,
                );
            }

            tokio::select! {
                biased;
                t = tries.next() => {
                    for f in &mut in_flight {
                        if f.as_ref().is_some_and(|f| f.id == t.id) {
                            *f = None;
                        }
                    }
                    let region_cfg: &'c RegionConfig = t.lane.region;
                    let region: &'c str = &region_cfg.name;
                    let path = t.lane.path;
                    let serving: &'c RegionServing = t.lane.serving;
                    let target = serving.path(path).expect("a lane's path has a target in its serving row");
                    match t.result {
                        Ok(success) => {
                            self.metrics.call(path, region, CallResult::Ok);
                            self.targets.success(cfg, self.clock.mono_ms_at(t.ended), target, t.took);
                            if t.lane.hedge {
                                self.metrics.hedge_won(region);
                            }
                            let reply = match success {
                                Success::Answer(a) => {
                                    self.note_session(&ranking, region, path, &a);
                                    Reply::answer(a)
                                }
                                Success::Job(job) => Reply::accepted(&job),
                            };
                            return reply.at(Some(path), Some(region), attempts);
                        }
                        Err(e) => {
                            self.metrics.call(path, region, e.result());
                            if e.is_target_failure() {
                                self.targets.failure(cfg, &self.metrics, self.clock.mono_ms_at(t.ended), region, path, target);
                            }
                            debug!(region, path = path.as_str(), attempts, error = %crate::error_chain(&e), "attempt failed");
                            let mut spill = |from: &Lane<'c>, cause| self.spill(ask, &ranking, &mut cursor, from, cause);
                            match self.next_step(cfg, ask, t.lane, e, &mut spill) {
                                Step::Again(lane, delay) => {
                                    let r: &'c RegionConfig = lane.region;
                                    at = Some((&r.name, lane.path));
                                    launch(lane, self.clock.now(), delay, &mut tries, &mut in_flight, &mut attempts);
                                }
                                Step::LaneEnds { cold, error } => {
                                    ended_cold |= cold;
                                    ended_otherwise |= !cold;
                                    last_failure = Some((region, path, error));
                                }
                                Step::Throttled => throttled_out = Some((region, path)),
                                Step::Answer(err) => {
                                    return Reply::from(err).at(Some(path), Some(region), attempts);
                                }
                            }
                        }
                    }
                }
                () = &mut hedge_timer, if hedge_armed => {
                    hedge_armed = false;
                    if tries.len() == 1 {
                        let lane = cursor.next_lane(|lane| {
                            lane.path.is_realtime() && {
                                let ok = self.budget().try_withdraw(self.clock.mono_ms());
                                if !ok {
                                    self.metrics.budget_refusal();
                                }
                                ok
                            }
                        });
                        if let Some(mut lane) = lane {
                            lane.hedge = true;
                            self.metrics.hedge_sent(&lane.region.name);
                            info!(model = %ask.model.name, to = %lane.region.name, "hedging a slow attempt");
                            launch(lane, self.clock.now(), Duration::ZERO, &mut tries, &mut in_flight, &mut attempts);
                        }
                    }
                }
                () = &mut deadline => {
                    // Attempts still calling are timeouts for their targets.
                    let now = self.clock.now();
                    let mut calling = None;
                    // Oldest first, as they were launched.
                    let mut calling_now: [Option<&InFlight<'c>>; 2] = [in_flight[0].as_ref(), in_flight[1].as_ref()];
                    calling_now.sort_by_key(|f| f.map_or(u32::MAX, |f| f.id));
                    for f in calling_now.into_iter().flatten().filter(|f| f.calls_at <= now) {
                        self.metrics.call(f.path, f.region, CallResult::Timeout);
                        self.targets.failure(cfg, &self.metrics, self.clock.mono_ms(), f.region, f.path, f.target);
                        calling = Some(f.region);
                    }
                    let (region, path) = at.unzip();
                    let e = match calling {
                        // A model that must not run twice may have run.
                        Some(r) if !ask.model.idempotent => RouterError::OutcomeUnknown {
                            region: r.to_string(),
                            source: "no answer before the request's deadline".into(),
                        },
                        _ => RouterError::DeadlineExceeded,
                    };
                    return Reply::from(e).at(path, region, attempts);
                }
            }
        }
    }

    /// One attempt at `lane`'s target after `delay`, bounded by its own
    /// timeout.
    async fn attempt<'c>(
        &self,
        cfg: &'c Config,
        ask: &Ask<'c>,
        id: u32,
        lane: Lane<'c>,
        when: Launch,
        job_id: &OnceLock<String>,
    ) -> Tried<'c> {
        // Launched with no delay, the attempt starts when it was launched
        // (nothing awaits in between): that reading, not another.
        let started = if when.delay.is_zero() {
            when.at
        } else {
            tokio::time::sleep(when.delay).await;
            self.clock.now()
        };
        let policy = AttemptPolicy {
            fixed: ask.model.attempt_timeout,
            fraction: cfg.router.attempt_timeout_fraction,
            min: cfg.router.attempt_timeout_min,
            max: cfg.router.attempt_timeout_max,
        };
        let timeout =
            retry::attempt_timeout(ask.deadline.saturating_duration_since(started), &policy);
        let region = lane.region.name.as_str();
        let serving: &'c RegionServing = lane.serving;
        let target = serving
            .path(lane.path)
            .expect("a lane's path has a target in its serving row");
        let endpoint = target.endpoint.as_str();
        // Every attempt sent counts, retries and hedges too
        // (metrics::counts), by the target's label (endpoint, or
        // endpoint/component).
        // `started` is a reading of now (nothing awaited since): no other.
        let wall_ms = self.clock.wall_ms();
        let mono = self.clock.lease_mono(started);
        self.shared.traffic.record(region, target.label(), mono);
        let result = if lane.path == Path::Batch {
            let id = job_id.get_or_init(|| batch::new_job_id(wall_ms));
            let submit = batch::submit(
                &*self.ports.blobs,
                &*self.ports.jobs,
                &*self.ports.inference,
                Submission {
                    cfg,
                    region,
                    endpoint,
                    id,
                    model: &ask.model.name,
                    inv: &ask.inv,
                    now_ms: wall_ms,
                },
            );
            match tokio::time::timeout_at(started + timeout, submit).await {
                Ok(r) => r.map(Success::Job).map_err(AttemptError::Submit),
                Err(_) => Err(AttemptError::TimedOut {
                    after: timeout,
                    breaker_told: false,
                }),
            }
        } else {
            let inv = super::for_target(&ask.inv, target);
            let call = self.ports.inference.invoke(region, endpoint, &inv);
            tokio::pin!(call);
            match tokio::time::timeout_at(started + timeout, &mut call).await {
                Ok(r) => r.map(Success::Answer).map_err(AttemptError::Invoke),
                Err(_) if !ask.model.retry_on_timeout && self.clock.now() < ask.deadline => {
                    // This request may not be sent again: tell the breaker
                    // the target is slow, and keep waiting for its answer.
                    self.metrics.call(lane.path, region, CallResult::Timeout);
                    self.targets.failure(
                        cfg,
                        &self.metrics,
                        self.clock.mono_ms(),
                        region,
                        lane.path,
                        target,
                    );
                    match tokio::time::timeout_at(ask.deadline, call).await {
                        Ok(r) => r.map(Success::Answer).map_err(AttemptError::Invoke),
                        Err(_) => Err(AttemptError::TimedOut {
                            after: self.clock.since(started),
                            breaker_told: true,
                        }),
                    }
                }
                Err(_) => Err(AttemptError::TimedOut {
                    after: timeout,
                    breaker_told: false,
                }),
            }
        };
        let ended = self.clock.now();
        Tried {
            id,
            lane,
            took: ended.saturating_duration_since(started),
            ended,
            result,
        }
    }

    /// A lane at a warm region for a request `from` throttled or found
    /// cold, if its model spills over on `cause` and the request may move:
    /// a real-time lane that is not itself a spill, in no session (a
    /// `SessionId` other than `NEW_SESSION` keeps its region), and a
    /// retry-budget token to pay for it. The caller only asks after an
    /// error that says the model did not run (throttling, a cold start), so
    /// a model with `idempotent = false` may spill too.
    fn spill<'c>(
        &self,
        ask: &Ask<'c>,
        ranking: &Ranking<'_>,
        cursor: &mut Cursor<'c, '_>,
        from: &Lane<'c>,
        cause: SpillCause,
    ) -> Option<Lane<'c>> {
        let wanted = match cause {
            SpillCause::Throttling => ask.model.spill_over.throttling,
            SpillCause::NotReady => ask.model.spill_over.not_ready,
        };
        let in_session = ask
            .inv
            .passed
            .session_id
            .as_ref()
            .is_some_and(|v| v.as_bytes() != NEW_SESSION.as_bytes());
        if !wanted || from.spilled || !from.path.is_realtime() || in_session {
            return None;
        }
        let tier1 = ranking.cfg.cost.tier_of(&ask.model.name) == crate::core::tier::Tier::Tier1;
        let to = cursor.next_warm(
            |i, path| targets::is_warm(&self.shared, &self.targets, ranking, i, path, tier1),
            || {
                let ok = self.budget().try_withdraw(self.clock.mono_ms());
                if !ok {
                    self.metrics.budget_refusal();
                }
                ok
            },
        )?;
        self.metrics
            .spill(&from.region.name, &to.region.name, cause);
        info!(model = %ask.model.name, from = %from.region.name, to = %to.region.name, cause = cause.as_str(), "spilling over to a warm region");
        Some(to)
    }

    /// What a failed attempt at `lane` leads to; `spill` finds a warm
    /// region to move it to instead (see [`Router::spill`]).
    fn next_step<'c>(
        &self,
        cfg: &'c Config,
        ask: &Ask<'c>,
        mut lane: Lane<'c>,
        e: AttemptError,
        spill: &mut dyn FnMut(&Lane<'c>, SpillCause) -> Option<Lane<'c>>,
    ) -> Step<'c> {
        let region = || lane.region.name.clone();
        if !ask.model.idempotent && e.outcome_unknown() {
            // Whatever the error: the model may have run, so nothing is
            // sent again (SageMaker's own errors included: a 5xx does not
            // say whether the container was called).
            return Step::Answer(RouterError::OutcomeUnknown {
                region: region(),
                source: Box::new(e),
            });
        }
        match e {
            AttemptError::Invoke(InvokeError::ModelNotReady { .. }) => {
                self.shared
                    .models
                    .cold_start(&ask.model.name, self.clock.wall_ms());
                let len = ask.inv.body.len() as u64;
                let avail = match ask.api {
                    Api::SageMaker => super::available(lane.serving).realtime(),
                    Api::Native => super::available(lane.serving),
                };
                let fallback = routing::fallback_after(lane.path, len, avail);
                // Spill-over once the region has no other path to fall
                // back to (serverless falls back to provisioned first).
                // SageMaker refused it: the model did not run.
                if fallback.is_none_or(|p| !p.is_realtime())
                    && let Some(to) = spill(&lane, SpillCause::NotReady)
                {
                    return Step::Again(to, Duration::ZERO);
                }
                lane.cold += 1;
                if lane.cold <= cfg.router.cold_start_retries {
                    let delay = retry::cold_start_delay(cfg.router.cold_start_delay, lane.cold);
                    if self.clock.now() + delay < ask.deadline {
                        return Step::Again(lane, delay);
                    }
                }
                match fallback {
                    Some(next) => {
                        info!(region = %lane.region.name, from = lane.path.as_str(), to = next.as_str(), "cold start: falling back");
                        lane.path = next;
                        lane.cold = 0;
                        lane.throttled = 0;
                        Step::Again(lane, Duration::ZERO)
                    }
                    None => Step::LaneEnds {
                        cold: true,
                        error: e,
                    },
                }
            }
            AttemptError::Invoke(InvokeError::Throttled { .. }) => {
                // SageMaker refused it: the model did not run.
                if let Some(to) = spill(&lane, SpillCause::Throttling) {
                    return Step::Again(to, Duration::ZERO);
                }
                lane.throttled += 1;
                let allowed = lane.throttled <= cfg.router.throttle_retries;
                if allowed && self.budget().try_withdraw(self.clock.mono_ms()) {
                    let delay = retry::throttle_delay(
                        cfg.router.throttle_base_delay,
                        cfg.router.throttle_max_delay,
                        lane.throttled,
                        self.jitter(),
                    );
                    if self.clock.now() + delay < ask.deadline {
                        return Step::Again(lane, delay);
                    }
                } else if allowed {
                    self.metrics.budget_refusal();
                }
                Step::Throttled
            }
            AttemptError::Invoke(InvokeError::Model(failure))
            | AttemptError::Submit(SubmitError::Submit(InvokeError::Model(failure))) => {
                Step::Answer(RouterError::Model {
                    message: model_error_message(&failure),
                    failure: Box::new(failure),
                    region: region(),
                })
            }
            AttemptError::Invoke(InvokeError::Validation { message })
            | AttemptError::Submit(SubmitError::Submit(InvokeError::Validation { message })) => {
                Step::Answer(RouterError::Validation {
                    region: region(),
                    message,
                })
            }
            AttemptError::Invoke(source @ InvokeError::Other { .. }) => {
                Step::Answer(RouterError::BadGateway {
                    region: region(),
                    source,
                })
            }
            AttemptError::TimedOut { .. } if !ask.model.retry_on_timeout => {
                Step::Answer(RouterError::DeadlineExceeded)
            }
            error => Step::LaneEnds { cold: false, error },
        }
    }

    /// Keep a request in session `id` to the region that opened it (`order`
    /// becomes that region alone), or say the session ended.
    fn pin_session(
        &self,
        session: Option<&str>,
        ranking: &Ranking<'_>,
        order: &mut Vec<usize>,
    ) -> Result<(), RouterError> {
        let Some(id) = session.filter(|&id| id != NEW_SESSION) else {
            return Ok(());
        };
        match self.targets.session(id, self.clock.wall_ms()) {
            Some(s) => match targets::session_routable(&self.shared, &self.targets, ranking, &s) {
                Some(i) => {
                    order.clear();
                    order.push(i);
                }
                None => {
                    self.targets.session_closed(id);
                    info!(session = id, region = %s.region, "a session's region can no longer serve it: the session ended");
                    return Err(RouterError::SessionEnded {
                        session: id.to_string(),
                        region: s.region,
                    });
                }
            },
            // Not opened through this router (another daemon, a restart):
            // the first region of the ranking, and only it.
            None => order.truncate(1),
        }
        Ok(())
    }

    /// Remember a session the model opened in `region`, forget one it
    /// closed.
    fn note_session(&self, ranking: &Ranking<'_>, region: &str, path: Path, a: &Answer) {
        if let Some(new) = a.new_session_id.as_ref().and_then(|v| v.to_str().ok()) {
            let (id, expires_ms) = targets::parse_new_session(new);
            if !id.is_empty() {
                let active = targets::routing_active(&self.shared, ranking).map(str::to_string);
                let session = targets::Session {
                    region: region.to_string(),
                    path,
                    active,
                    expires_ms,
                };
                self.targets
                    .session_opened(id, session, self.clock.wall_ms());
            }
        }
        if let Some(closed) = a.closed_session_id.as_ref().and_then(|v| v.to_str().ok()) {
            self.targets.session_closed(closed.trim());
        }
    }

    /// A number in `[0, 1)` for backoff jitter.
    fn jitter(&self) -> f64 {
        let n = self
            .jitter
            .fetch_add(rand::GOLDEN_GAMMA, std::sync::atomic::Ordering::Relaxed);
        rand::unit(rand::splitmix64(n))
    }
}

/// SageMaker's wording of a model error, unless SageMaker sent its own.
fn model_error_message(f: &crate::ports::inference::ModelFailure) -> String {
    if let Some(m) = &f.message {
        return m.clone();
    }
    match (f.original_status, &f.original_message) {
        (Some(s), Some(m)) => format!("Received error ({s}) from the model with message \"{m}\""),
        (Some(s), None) => format!("Received error ({s}) from the model"),
        _ => "the model answered an error".to_string(),
    }
}

/// The answer when every region has been tried.
fn exhausted<'c>(
    api: Api,
    len: u64,
    last: Option<(&'c str, Path, AttemptError)>,
    all_cold: bool,
    too_large_limit: Option<u64>,
    attempts: u32,
) -> Reply<'c> {
    match (last, too_large_limit) {
        (Some((region, path, _)), _) if all_cold => {
            Reply::from(RouterError::ModelNotReady).at(Some(path), Some(region), attempts)
        }
        (Some((region, path, e)), _) => Reply::from(RouterError::Unavailable {
            region: region.to_string(),
            path,
            source: Box::new(e),
        })
        .at(Some(path), Some(region), attempts),
        (None, Some(limit)) => Reply::from(too_large(api, Some(len), limit)),
        (None, None) => Reply::from(RouterError::NoEndpoint),
    }
}

/// A streamed response's body: event-stream messages as they come.
pub type StreamBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::io::Error>;

/// A response stream that started: its first part (none if it ended at
/// once) and the rest, from (region, path) after `attempts` attempts.
struct Started<'c> {
    streamed: Streamed,
    first: Option<bytes::Bytes>,
    region: &'c str,
    path: Path,
    attempts: u32,
}

/// Decrements the in-flight gauge when a stream's request ends.
struct StreamInFlight(std::sync::Arc<crate::metrics::router::Metrics>);

impl Drop for StreamInFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Router {
    /// Whether `req` is for [`Router::handle_stream`] (its path is
    /// `/endpoints/{model}/invocations-response-stream`) rather than
    /// [`Router::handle`]: what a listener asks before it picks one.
    pub fn is_stream<B>(req: &hyper::Request<B>) -> bool {
        super::request::stream_route(req.method(), req.uri().path()).is_some()
    }

    /// `POST /endpoints/{model}/invocations-response-stream`
    /// (`InvokeEndpointWithResponseStream`; any other route is 404). Parsed and refused as `InvokeEndpoint` is; then regions and
    /// paths are tried as for it (cold-start retries and fallback,
    /// throttling backoff, the next region on an outage, per-attempt
    /// timeouts, `idempotent = false`, sessions) until a stream's first
    /// part arrives: an attempt is over when its first part (or the end,
    /// or a failure) arrives. Not hedged. From the first part on, parts are
    /// passed on one event-stream message each as they come, never
    /// buffered, and an upstream failure becomes SageMaker's in-band error
    /// event (`ModelStreamError`, else `InternalStreamFailure`), so the
    /// client's SDK raises rather than take a cut stream as complete.
    pub async fn handle_stream<B>(
        self: std::sync::Arc<Self>,
        req: hyper::Request<B>,
    ) -> hyper::Response<StreamBody>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        use http_body_util::BodyExt;
        let route = super::request::stream_route(req.method(), req.uri().path());
        let started = self.clock.now();
        self.metrics
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let guard = StreamInFlight(self.metrics.clone());
        let cfg = self.config.borrow().clone();
        let whole = |reply: Reply<'_>, this: &Self| {
            this.metrics.request(
                reply.path,
                reply.region,
                reply.outcome,
                reply.attempts,
                this.clock.since(started),
            );
            reply
                .into_response(this.request_id())
                .map(|b| b.map_err(|never| match never {}).boxed_unsync())
        };
        let model = match route {
            Some(Ok(m)) => m,
            Some(Err(e)) => return whole(Reply::from(e), &self),
            None => {
                let e = RouterError::NoRoute(req.uri().path().to_string());
                return whole(Reply::from(e), &self);
            }
        };
        let (parts, body) = req.into_parts();
        let ask = match self
            .stream_ask(&cfg, &model, &parts.headers, body, started)
            .await
        {
            Ok(a) => a,
            Err(e) => return whole(Reply::from(e), &self),
        };
        let s = match self.route_stream(&cfg, &ask).await {
            Ok(s) => s,
            Err(reply) => return whole(reply, &self),
        };
        self.metrics.request(
            Some(s.path),
            Some(s.region),
            crate::metrics::router::Outcome::Ok,
            s.attempts,
            self.clock.since(started),
        );
        let mut r = hyper::Response::new(relay(s.first, s.streamed.events, guard));
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        if let Some(v) = s.streamed.content_type {
            h.insert("x-amzn-sagemaker-content-type", v);
        }
        if let Some(v) = s.streamed.invoked_variant {
            h.insert(super::reply::H_VARIANT, v);
        }
        if let Some(v) = s.streamed.custom_attributes {
            h.insert(super::reply::H_CUSTOM, v);
        }
        h.insert(super::reply::H_REQUEST_ID, self.request_id());
        h.insert(
            super::reply::H_PATH,
            hyper::header::HeaderValue::from_static(s.path.as_str()),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(s.region) {
            h.insert(super::reply::H_REGION, v);
        }
        h.insert(super::reply::H_ATTEMPTS, s.attempts.into());
        r
    }

    /// A stream request's model, headers and body, refused as
    /// `InvokeEndpoint`'s are (shed, draining, unknown model, bad headers,
    /// body over 6 MB or too slow).
    async fn stream_ask<'c, B>(
        &self,
        cfg: &'c Config,
        model: &str,
        headers: &hyper::HeaderMap,
        body: B,
        started: Instant,
    ) -> Result<Ask<'c>, RouterError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.is_draining() {
            return Err(RouterError::Draining);
        }
        let in_flight = self
            .metrics
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        if in_flight > u64::from(cfg.router.max_in_flight) {
            return Err(RouterError::OverCapacity(cfg.router.max_in_flight));
        }
        let Some(model_cfg) = cfg.models.iter().find(|m| m.name == model) else {
            return Err(RouterError::UnknownModel(model.to_string()));
        };
        // The model's own class only: the routing table's classes are the
        // batch path's, which a stream never takes.
        let known = |_: &str| false;
        let classes = || {
            let mut k: Vec<String> = cfg.models.iter().map(|m| m.traffic_class.clone()).collect();
            k.sort();
            k.dedup();
            k
        };
        let mut ask = super::request::parse_head(
            cfg,
            Api::SageMaker,
            model_cfg,
            headers,
            started,
            &known,
            &classes,
        )?;
        super::request::read_body(cfg, &mut ask, body).await?;
        self.shared.models.request(
            &ask.model.name,
            ask.inv.body.len() as u64,
            self.clock.wall_ms(),
        );
        Ok(ask)
    }

    /// Try regions and paths until a stream's first part arrives (or the
    /// request is answered otherwise).
    async fn route_stream<'c>(
        &self,
        cfg: &'c Config,
        ask: &Ask<'c>,
    ) -> Result<Started<'c>, Reply<'c>> {
        let now = self.clock.now();
        let mono_ms = self.clock.mono_ms_at(now);
        self.budget().on_request(mono_ms);
        let len = ask.inv.body.len() as u64;
        let ranking = Ranking {
            cfg,
            model: ask.model,
            class: &ask.class,
            len,
            threshold: NO_BATCH_THRESHOLD,
            mask: Available::realtime,
            lease_now: self.clock.lease_mono(now),
            now_ms: mono_ms,
        };
        let mut order = targets::rank(&self.shared, &self.targets, &ranking);
        let session = ask
            .inv
            .passed
            .session_id
            .as_ref()
            .and_then(|v| v.to_str().ok());
        self.pin_session(session, &ranking, &mut order)
            .map_err(Reply::from)?;
        let mut cursor = Cursor {
            cfg,
            model: ask.model,
            order,
            next: 0,
            class: &ask.class,
            len,
            threshold: NO_BATCH_THRESHOLD,
            mask: Available::realtime,
            too_large: None,
        };
        let policy = AttemptPolicy {
            fixed: ask.model.attempt_timeout,
            fraction: cfg.router.attempt_timeout_fraction,
            min: cfg.router.attempt_timeout_min,
            max: cfg.router.attempt_timeout_max,
        };
        let mut attempts = 0u32;
        let mut last_failure: Option<(&'c str, Path, AttemptError)> = None;
        let (mut ended_cold, mut ended_otherwise) = (false, false);
        let mut again: Option<Lane<'c>> = None;
        loop {
            let lane = match again.take() {
                Some(l) => l,
                None => match cursor.next_lane(|_| true) {
                    Some(l) => l,
                    None => {
                        return Err(exhausted(
                            ask.api,
                            len,
                            last_failure,
                            ended_cold && !ended_otherwise,
                            cursor.too_large,
                            attempts,
                        ));
                    }
                },
            };
            let region: &'c str = &lane.region.name;
            let path = lane.path;
            let started = self.clock.now();
            if started >= ask.deadline {
                return Err(Reply::from(RouterError::DeadlineExceeded).at(
                    Some(path),
                    Some(region),
                    attempts,
                ));
            }
            attempts += 1;
            let serving: &'c RegionServing = lane.serving;
            let target = serving
                .path(path)
                .expect("a lane's path has a target in its serving row");
            self.shared.traffic.record(
                region,
                target.label(),
                self.clock.lease_mono(self.clock.now()),
            );
            let timeout =
                retry::attempt_timeout(ask.deadline.saturating_duration_since(started), &policy);
            let result = match tokio::time::timeout_at(
                started + timeout,
                self.first_part(region, target, ask),
            )
            .await
            {
                Ok(r) => r.map_err(AttemptError::Invoke),
                Err(_) => Err(AttemptError::TimedOut {
                    after: timeout,
                    breaker_told: false,
                }),
            };
            let ended = self.clock.now();
            match result {
                Ok((streamed, first)) => {
                    self.metrics.call(path, region, CallResult::Ok);
                    self.targets.success(
                        cfg,
                        self.clock.mono_ms_at(ended),
                        target,
                        ended.saturating_duration_since(started),
                    );
                    return Ok(Started {
                        streamed,
                        first,
                        region,
                        path,
                        attempts,
                    });
                }
                Err(e) => {
                    self.metrics.call(path, region, e.result());
                    if e.is_target_failure() {
                        self.targets.failure(
                            cfg,
                            &self.metrics,
                            self.clock.mono_ms_at(ended),
                            region,
                            path,
                            target,
                        );
                    }
                    debug!(region, path = path.as_str(), attempts, error = %crate::error_chain(&e), "stream attempt failed");
                    let mut spill = |from: &Lane<'c>, cause| {
                        self.spill(ask, &ranking, &mut cursor, from, cause)
                    };
                    match self.next_step(cfg, ask, lane, e, &mut spill) {
                        Step::Again(lane, delay) => {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            again = Some(lane);
                        }
                        Step::LaneEnds { cold, error } => {
                            ended_cold |= cold;
                            ended_otherwise |= !cold;
                            last_failure = Some((region, path, error));
                        }
                        Step::Throttled => {
                            return Err(Reply::from(RouterError::Throttled {
                                region: region.to_string(),
                            })
                            .at(Some(path), Some(region), attempts));
                        }
                        Step::Answer(err) => {
                            return Err(Reply::from(err).at(Some(path), Some(region), attempts));
                        }
                    }
                }
            }
        }
    }

    /// One stream attempt up to its first part: a failure before it is the
    /// attempt's failure (the client has seen nothing yet).
    async fn first_part(
        &self,
        region: &str,
        target: &Serving,
        ask: &Ask<'_>,
    ) -> Result<(Streamed, Option<bytes::Bytes>), InvokeError> {
        let inv = super::for_target(&ask.inv, target);
        let mut s = self
            .ports
            .inference
            .invoke_stream(region, &target.endpoint, &inv)
            .await?;
        match s.events.next().await {
            Some(Ok(part)) => Ok((s, Some(part))),
            None => Ok((s, None)),
            Some(Err(StreamError::Model { message, .. })) => {
                Err(InvokeError::Model(crate::ports::inference::ModelFailure {
                    original_status: None,
                    original_message: None,
                    log_stream_arn: None,
                    message: Some(message),
                }))
            }
            Some(Err(StreamError::Internal { message })) => Err(InvokeError::Unavailable {
                code: "InternalStreamFailure".into(),
                source: Some(message.into()),
            }),
        }
    }
}

/// The client's body: `first`, then every later part, one event-stream
/// message each as it arrives; a failure becomes SageMaker's in-band error
/// event and ends the stream. `guard` lives as long as the body.
fn relay(
    first: Option<bytes::Bytes>,
    rest: crate::ports::inference::EventStream,
    guard: StreamInFlight,
) -> StreamBody {
    use super::reply::event_stream;
    use futures_util::stream;
    use http_body_util::BodyExt;
    let frame = |m: bytes::Bytes| Ok::<_, std::io::Error>(hyper::body::Frame::data(m));
    let first = stream::iter(first.map(|p| frame(event_stream::payload_part(&p))));
    let rest = rest.scan((false, guard), move |(done, _guard), event| {
        if *done {
            return std::future::ready(None);
        }
        let message = match event {
            Ok(part) => event_stream::payload_part(&part),
            Err(e) => {
                *done = true;
                info!(error = %e, "an upstream stream failed after its first part: sent in band");
                match e {
                    StreamError::Model {
                        message,
                        error_code,
                    } => event_stream::exception(
                        "ModelStreamError",
                        &serde_json::json!({"Message": message, "ErrorCode": error_code}),
                    ),
                    StreamError::Internal { message } => event_stream::exception(
                        "InternalStreamFailure",
                        &serde_json::json!({"Message": message}),
                    ),
                }
            }
        };
        std::future::ready(Some(frame(message)))
    });
    BodyExt::boxed_unsync(http_body_util::StreamBody::new(first.chain(rest)))
}
