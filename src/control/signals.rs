//! Health signals, one round at a time: Route 53 readings shared by the
//! fleet, the daemon's own probes, and a tracker per signal.
//!
//! Route 53's API is rate limited per account (AWS documents five requests
//! per second for the whole API) and `GetHealthCheckStatus` is a diagnosis
//! call, so the fleet shares one budget (`health.route53_calls_per_second`):
//! time is cut into slots, each slot reads one check (`core::health::
//! route53_turn`), and the daemon whose slot it is publishes the reading
//! through the control table. Every daemon reads all published readings
//! each round, so a new reading reaches the whole fleet within one poll,
//! whoever made it. Before this, each daemon cached its own readings and
//! detection depended on whose turn it was.
//!
//! A reading counts once: each signal has its own tracker, and a Route 53
//! tracker moves only on a reading it has not counted yet (identified by its
//! reader and read time). Probes are new every round. A region is down when
//! any of its signals' trackers says so (`core::health::region_verdict`).
//!
//! Readings age on the reader's clock: a reading first seen more than three
//! rotations of the schedule ago says nothing (a dead fleet stops
//! publishing; the reading's own time is another region's clock).
//!
//! With `health.route53_source = "cloudwatch"` a slot is one call, a
//! `GetMetricData` of every check's `HealthCheckStatus` metric, and the
//! schedule has one slot per rotation. A check's reading is published only
//! when its newest data point is newer than the one the fleet has; a data
//! point counts once (by its timestamp and value, whoever read it) and ages
//! by its own timestamp: older than `METRIC_STALE_PERIODS` periods, it says
//! nothing (docs/detection.md "Two sources").

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use tracing::{debug, warn};

use crate::config::Config;
use crate::core::backoff::Backoff;
use crate::core::health::{self, Route53Source, Signal, Tracker, Verdict};
use crate::core::mono::Mono;
use crate::ports::health_checks::{CheckKind, CheckReading, MetricPoint};
use crate::ports::store::PublishedReading;
use crate::ports::{ErrorKind, PortError, Ports};

/// How deep calculated checks may nest (Route 53 allows a calculated check
/// to have calculated children).
const MAX_NESTING: u32 = 3;

/// What one round of signals found.
#[derive(Debug, Default)]
pub struct Round {
    /// This daemon's verdict on every region.
    pub view: BTreeMap<String, Verdict>,
    /// Why, per region: one line per signal.
    pub why: BTreeMap<String, Vec<String>>,
    /// Regions whose verdict changed this round, with the reasons.
    pub changes: Vec<(String, Verdict, String)>,
    /// Problems an operator must see (readiness): unsupported checks.
    pub problems: Vec<String>,
}

/// The signals' state across rounds.
pub struct Signals {
    /// region -> signal key (`route53:<id>`, `probe:<url>`) -> tracker.
    trackers: BTreeMap<String, BTreeMap<String, Tracker>>,
    verdicts: BTreeMap<String, Verdict>,
    last_slot: Option<u64>,
    backoff: Backoff,
    /// Until when Route 53 is left alone after throttling, on the
    /// monotonic clock (a wall-clock step neither ends nor prolongs it).
    backoff_until: Option<Mono>,
    /// check -> (reading identity, when this daemon first saw it)
    seen: BTreeMap<String, ((String, u64), u64)>,
    /// Children of calculated checks, learned from their readings.
    children: BTreeSet<String>,
    /// The fleet's readings as last known: the last round's read of the
    /// table, plus this daemon's own readings since.
    readings: BTreeMap<String, PublishedReading>,
    /// This daemon's readings made between rounds (`turn`), counted by the
    /// next round even if publishing them failed.
    /// Each with the identity of the reading the table held for the check
    /// when this daemon read it.
    own: Vec<(PublishedReading, Option<(String, u64)>)>,
    /// Each check's signal on its last reading by this daemon: a turn
    /// whose reading changes it (or is not healthy) asks for a round now.
    last_signal: BTreeMap<String, Signal>,
    /// When the probes last ran (monotonic), and what they said: probes
    /// run once a poll whatever the rounds' pace, so a sample is a poll.
    last_probe: Option<tokio::time::Instant>,
    probe_why: BTreeMap<String, Vec<String>>,
    /// The probes in flight (started by a round, counted by the first
    /// round that finds them done).
    probing: Option<tokio::task::JoinHandle<ProbeResults>>,
}

/// Per region, each probe URL's signal and why.
type ProbeResults = BTreeMap<String, Vec<(String, Signal, String)>>;

impl Default for Signals {
    fn default() -> Self {
        Self {
            trackers: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            last_slot: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            backoff_until: None,
            seen: BTreeMap::new(),
            children: BTreeSet::new(),
            readings: BTreeMap::new(),
            own: Vec::new(),
            last_signal: BTreeMap::new(),
            last_probe: None,
            probe_why: BTreeMap::new(),
            probing: None,
        }
    }
}

fn key_hash(parts: &[&(String, u64)]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// One check's evaluated signal, and the readings it rests on.
struct Evaluated {
    signal: Signal,
    why: String,
    /// Identity of the readings it used (none: nothing to count).
    identity: Option<u64>,
}

impl Signals {
    /// The trackers, per region and signal (for status).
    pub fn trackers(&self) -> &BTreeMap<String, BTreeMap<String, Tracker>> {
        &self.trackers
    }

    /// A region-level tracker summary (the verdict, and the longest streaks
    /// among its signals), for the router and status.
    pub fn region_summary(&self) -> BTreeMap<String, Tracker> {
        self.trackers
            .iter()
            .map(|(region, by_signal)| {
                let mut t = Tracker {
                    verdict: health::region_verdict(by_signal.values()),
                    ..Tracker::default()
                };
                for s in by_signal.values() {
                    t.bad_streak = t.bad_streak.max(s.bad_streak);
                    t.good_streak = t.good_streak.max(s.good_streak);
                }
                (region.clone(), t)
            })
            .collect()
    }

    /// Every check this fleet reads: the configured ones and the children
    /// of calculated ones, sorted (every daemon computes the same list).
    fn checks(&self, cfg: &Config) -> Vec<String> {
        let mut all: BTreeSet<String> = cfg
            .regions
            .iter()
            .flat_map(|r| r.health_check_ids.iter().cloned())
            .collect();
        all.extend(self.children.iter().cloned());
        all.into_iter().collect()
    }

    fn slot_ms(cfg: &Config) -> u64 {
        // Two calls per reading through the API (GetHealthCheck +
        // GetHealthCheckStatus); one GetMetricData for every check.
        let calls = cfg.health.route53_source.calls_per_slot() as f64;
        (calls * 1000.0 / cfg.health.route53_calls_per_second).max(1.0) as u64
    }

    /// Slots in one rotation of the schedule: one per check through the
    /// API, one for all of them through the metric.
    fn rotation_slots(cfg: &Config, checks: usize) -> u64 {
        match cfg.health.route53_source {
            Route53Source::Api => checks as u64,
            Route53Source::CloudWatch => (checks > 0) as u64,
        }
    }

    /// How old (since this daemon first saw it) a reading may be and still
    /// count: three rotations of the schedule and a poll (a dead fleet
    /// stops publishing; the reading's own time is another region's clock).
    fn max_age(cfg: &Config, checks: usize) -> u64 {
        Self::slot_ms(cfg) * Self::rotation_slots(cfg, checks).max(1) * 3
            + cfg.timings.poll_interval.as_millis() as u64
    }

    /// How old a metric data point (by its own timestamp) may be and still
    /// count: `METRIC_STALE_PERIODS` periods.
    fn metric_stale_ms(cfg: &Config) -> u64 {
        cfg.health.route53_metric_period.as_millis() as u64 * health::METRIC_STALE_PERIODS
    }

    /// This daemon's place in the fleet's Route 53 schedule: (me, daemons).
    fn seat(cfg: &Config) -> (u64, u64) {
        let mut order: Vec<&str> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
        order.sort();
        let me = order.iter().position(|r| *r == cfg.region).unwrap_or(0) as u64;
        (me, order.len() as u64)
    }

    /// How much of a throttling backoff is left at `now` (ms).
    fn backoff_left(&self, now: Mono) -> u64 {
        self.backoff_until.map_or(0, |until| until.since(now))
    }

    /// When (this daemon's wall clock, ms) its next Route 53 turn begins:
    /// `now` if a slot of ours is open and not yet read, else the start of
    /// the next slot of ours. None when there is nothing to read.
    ///
    /// The loop sleeps until then and takes the turn between rounds, so
    /// every slot of the fleet's budget is used whatever the poll interval
    /// (docs/detection.md): before, a daemon read only when a round
    /// happened to fall in one of its slots, about once a poll.
    pub fn next_turn_at(&self, cfg: &Config, now: u64, mono: Mono) -> Option<u64> {
        let checks = Self::rotation_slots(cfg, self.checks(cfg).len());
        let (me, daemons) = Self::seat(cfg);
        let at = health::next_route53_turn(
            now + self.backoff_left(mono),
            Self::slot_ms(cfg),
            me,
            daemons,
            checks,
            self.last_slot,
        )?;
        Some(at.max(now))
    }

    /// Take this daemon's Route 53 turn between rounds, if it is due.
    /// Returns true when the reading should be counted now (a round at
    /// once): it is not healthy, or its signal changed since this daemon
    /// last read the check.
    pub async fn turn(&mut self, cfg: &Config, ports: &Ports, now: u64) -> bool {
        let checks = self.checks(cfg);
        match self.take_turn(cfg, ports, &checks, now).await {
            Some((made, changed)) => {
                self.own.extend(made);
                changed
            }
            None => false,
        }
    }

    /// Collect this round's signals at `now` (this daemon's wall clock).
    pub async fn collect(&mut self, cfg: &Config, ports: &Ports, now: u64) -> Round {
        let mut round = Round::default();
        let checks = self.checks(cfg);
        // Probes of every region, concurrently, once a poll: rounds run
        // faster while something is in flux (`reconcile`), and a probe
        // tracker counts rounds, so faster rounds would lower its
        // threshold in time. They run as a task of their own: the round
        // waits for them up to its deadline, and a batch that takes longer
        // (a hung region's probes wait out their timeouts, which is the
        // signal) is counted by a later round, so it never holds up the
        // round, its vote or the lease.
        let poll = cfg.timings.poll_interval;
        let deadline = super::reconcile::round_deadline(cfg);
        let probe_due = self.probing.is_none()
            && self
                .last_probe
                .is_none_or(|t| ports.clock.since(t) * 10 >= poll * 9);
        if probe_due {
            self.last_probe = Some(ports.clock.monotonic());
            let targets: Vec<(String, Vec<String>, Option<String>)> = cfg
                .regions
                .iter()
                .map(|r| (r.name.clone(), r.probe_urls.clone(), r.probe_match.clone()))
                .collect();
            let probes = ports.probes.clone();
            self.probing = Some(tokio::spawn(async move {
                let each = targets.iter().map(|(name, urls, matching)| {
                    let probes = probes.clone();
                    async move {
                        let mut out = Vec::new();
                        for u in urls {
                            let (sig, why) = probes.probe(u, matching.as_deref()).await;
                            out.push((u.clone(), sig, why));
                        }
                        (name.clone(), out)
                    }
                });
                futures_util::future::join_all(each)
                    .await
                    .into_iter()
                    .collect()
            }));
        }
        // The readings read and the probes run side by side: neither waits
        // for the other's timeouts.
        let probing = async {
            let task = self.probing.as_mut()?;
            match tokio::time::timeout(deadline, task).await {
                Ok(done) => Some(done.unwrap_or_default()),
                Err(_) => None,
            }
        };
        let (read, probed) = tokio::join!(
            tokio::time::timeout(deadline, ports.store.read_readings()),
            probing
        );
        let probed_now = probed.is_some();
        if probed_now {
            self.probing = None;
        }
        let read = read.unwrap_or_else(|_| {
            Err(PortError::new(
                "DynamoDB",
                "read readings",
                cfg.region.clone(),
                ErrorKind::Transport,
                format!(
                    "no answer within the round's deadline ({} ms)",
                    deadline.as_millis()
                ),
            ))
        });
        let probe_results: ProbeResults = probed.unwrap_or_default();

        let mut readings: BTreeMap<String, PublishedReading> = match read {
            Ok(list) => list.into_iter().map(|r| (r.check_id.clone(), r)).collect(),
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "cannot read the fleet's Route 53 readings");
                BTreeMap::new()
            }
        };
        // Our own readings since the last round count even if publishing
        // them failed, unless the table already holds a newer one: one
        // other than the reading it held when we read the check.
        for (r, prior) in std::mem::take(&mut self.own) {
            let newer_there = readings
                .get(&r.check_id)
                .is_some_and(|t| t.id() != r.id() && Some(t.id()) != prior);
            if !newer_there {
                readings.insert(r.check_id.clone(), r);
            }
        }
        for (id, r) in &readings {
            self.readings.insert(id.clone(), r.clone());
        }
        let turn = tokio::time::timeout(deadline, self.take_turn(cfg, ports, &checks, now)).await;
        if let Ok(Some((made, _))) = turn {
            for (r, _) in made {
                readings.insert(r.check_id.clone(), r);
            }
        }
        // Receipt times, on our clock.
        for (id, r) in &readings {
            let identity = r.id();
            match self.seen.get(id) {
                Some((seen, _)) if *seen == identity => {}
                _ => {
                    self.seen.insert(id.clone(), (identity, now));
                }
            }
        }
        let max_age = Self::max_age(cfg, checks.len());
        let stale = Self::metric_stale_ms(cfg);
        for r in readings.values() {
            if let CheckKind::Calculated { children, .. } = &r.reading.kind {
                self.children.extend(children.iter().cloned());
            }
        }

        let (f, rec) = (
            cfg.timings.failure_threshold,
            cfg.timings.recovery_threshold,
        );
        for r in &cfg.regions {
            let trackers = self.trackers.entry(r.name.clone()).or_default();
            let mut why = Vec::new();
            for id in &r.health_check_ids {
                let ev = evaluate(id, &readings, &self.seen, now, (max_age, stale), 0);
                if let Some(p) = unsupported(id, &readings) {
                    round.problems.push(p);
                }
                let t = trackers.entry(format!("route53:{id}")).or_default();
                match ev.identity {
                    Some(identity) => {
                        t.observe_reading(ev.signal, identity, f, rec);
                    }
                    None => {
                        t.observe(Signal::Unknown, f, rec);
                    }
                }
                why.push(format!("route53 {id}: {}", ev.why));
            }
            if probed_now {
                let mut lines = Vec::new();
                for (url, sig, text) in probe_results.get(&r.name).cloned().unwrap_or_default() {
                    trackers
                        .entry(format!("probe:{url}"))
                        .or_default()
                        .observe(sig, f, rec);
                    lines.push(format!("probe {url}: {text}"));
                }
                self.probe_why.insert(r.name.clone(), lines);
            }
            why.extend(self.probe_why.get(&r.name).cloned().unwrap_or_default());
            let verdict = health::region_verdict(trackers.values());
            let before = self.verdicts.insert(r.name.clone(), verdict);
            if before.is_some_and(|b| b != verdict)
                || (before.is_none() && verdict == Verdict::Down)
            {
                round
                    .changes
                    .push((r.name.clone(), verdict, why.join("; ")));
            }
            round.view.insert(r.name.clone(), verdict);
            round.why.insert(r.name.clone(), why);
        }
        round
    }

    /// Read and publish one check (the API) or every check (the metric)
    /// if this slot of the fleet's budget is ours. Returns the readings
    /// made, each with the identity of the reading the table held for that
    /// check before, and whether a signal changed (or is not healthy).
    async fn take_turn(
        &mut self,
        cfg: &Config,
        ports: &Ports,
        checks: &[String],
        now: u64,
    ) -> Option<(Vec<(PublishedReading, Option<(String, u64)>)>, bool)> {
        if checks.is_empty() || self.backoff_left(ports.clock.mono()) > 0 {
            return None;
        }
        let (me, daemons) = Self::seat(cfg);
        let slots = Self::rotation_slots(cfg, checks.len());
        let (slot, index) = health::route53_turn(now, Self::slot_ms(cfg), me, daemons, slots)?;
        if self.last_slot == Some(slot) {
            return None;
        }
        self.last_slot = Some(slot);
        let read = match cfg.health.route53_source {
            Route53Source::Api => {
                let id = checks[stalest(checks, &self.readings, &self.seen, index)].clone();
                ports
                    .health_checks
                    .read(&id)
                    .await
                    .map(|reading| vec![(id, reading)])
            }
            Route53Source::CloudWatch => self.read_metrics(cfg, ports, now).await,
        };
        match read {
            Ok(read) => {
                self.backoff.reset();
                let max_age = Self::max_age(cfg, checks.len());
                let stale = Self::metric_stale_ms(cfg);
                let mut made = Vec::new();
                let mut changed = false;
                for (id, reading) in read {
                    let published = PublishedReading {
                        check_id: id.clone(),
                        reader: cfg.region.clone(),
                        read_at: now,
                        reading,
                    };
                    if let Err(e) = ports.store.put_reading(&published).await {
                        warn!(error = %crate::error_chain(&e), check = %id, "cannot publish a Route 53 reading");
                    }
                    let prior = self.readings.get(&id).map(PublishedReading::id);
                    self.seen.insert(id.clone(), (published.id(), now));
                    self.readings.insert(id.clone(), published.clone());
                    let signal =
                        evaluate(&id, &self.readings, &self.seen, now, (max_age, stale), 0).signal;
                    let before = self.last_signal.insert(id, signal);
                    changed |= signal != Signal::Healthy || before.is_some_and(|b| b != signal);
                    made.push((published, prior));
                }
                Some((made, changed))
            }
            Err(e) if e.kind == ErrorKind::Throttled => {
                // Capped at a few rotations of the schedule: the fleet's
                // whole budget is a few calls a second, and a reader that
                // backs off for minutes after a throttling episode leaves
                // the checks unread long after Route 53 answers again.
                let rotation = Self::slot_ms(cfg) * slots.max(1);
                let cap = Duration::from_millis((4 * rotation).clamp(2_000, 30_000));
                let wait = self
                    .backoff
                    .next_delay(ports.entropy.next_u64() as f64 / u64::MAX as f64)
                    .min(cap)
                    .max(Duration::from_millis(Self::slot_ms(cfg)));
                self.backoff_until = Some(ports.clock.mono().plus(wait.as_millis() as u64));
                warn!(error = %crate::error_chain(&e), backoff_ms = wait.as_millis() as u64, "Route 53 throttled; backing off");
                None
            }
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "cannot read Route 53's view of the health checks");
                None
            }
        }
    }

    /// One `GetMetricData` of every configured check's `HealthCheckStatus`
    /// (the window: the staleness limit and a period before `now`). Only
    /// the checks whose newest data point is newer than the fleet's (or
    /// has changed its value) make a reading to publish: a data point is
    /// published about once, not once a slot.
    async fn read_metrics(
        &self,
        cfg: &Config,
        ports: &Ports,
        now: u64,
    ) -> Result<Vec<(String, CheckReading)>, crate::ports::PortError> {
        let ids: Vec<String> = cfg
            .regions
            .iter()
            .flat_map(|r| r.health_check_ids.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let period = cfg.health.route53_metric_period;
        let start = now.saturating_sub(Self::metric_stale_ms(cfg) + period.as_millis() as u64);
        let points = ports
            .health_checks
            .status_metrics(&ids, start, now, period.as_secs().max(1) as u32)
            .await?;
        Ok(points
            .into_iter()
            .filter_map(|(id, point)| {
                let point = point?;
                let known = match self.readings.get(&id).map(|r| &r.reading.kind) {
                    Some(CheckKind::StatusMetric { point: Some(p) }) => Some(*p),
                    _ => None,
                };
                newer_point(point, known).then(|| (id, CheckReading::from_metric(Some(point))))
            })
            .collect())
    }
}

/// Is `point` worth publishing over `known` (the fleet's newest for the
/// check): newer, or the same period with another value (CloudWatch may
/// update a period's Minimum as its samples arrive). An older point never
/// replaces a newer one.
fn newer_point(point: MetricPoint, known: Option<MetricPoint>) -> bool {
    match known {
        None => true,
        Some(k) => point.at_ms > k.at_ms || (point.at_ms == k.at_ms && point.healthy != k.healthy),
    }
}

/// Which check a turn reads: the one whose latest published reading this
/// daemon received longest ago (never: first), ties broken from the
/// slot's own index onwards.
///
/// Reading `slot mod checks` instead ties the check to the phase of the
/// daemon's rounds: with a round per poll and a window of a poll's length,
/// a daemon whose rounds land on the same slot of its window every time
/// reads the same check every time, and a check no daemon's phase lands on
/// is never read again (its reading ages into Unknown and an inversion of
/// it goes unseen). Choosing the stalest makes the fleet walk every check
/// whatever the phases; the budget is the same (one read per owned slot).
fn stalest(
    checks: &[String],
    readings: &BTreeMap<String, PublishedReading>,
    seen: &BTreeMap<String, ((String, u64), u64)>,
    hint: usize,
) -> usize {
    let n = checks.len();
    (0..n)
        .map(|k| (hint + k) % n)
        .min_by_key(|&i| {
            let id = &checks[i];
            match (readings.get(id), seen.get(id)) {
                // Received when this daemon first saw that very reading.
                (Some(r), Some((identity, at))) if *identity == r.id() => Some(*at),
                // Published but not yet seen by us: just received.
                (Some(_), _) => Some(u64::MAX),
                (None, _) => None,
            }
        })
        .unwrap_or(hint)
}

/// A check this daemon cannot evaluate, as a problem for readiness.
fn unsupported(id: &str, readings: &BTreeMap<String, PublishedReading>) -> Option<String> {
    match &readings.get(id)?.reading.kind {
        CheckKind::CloudWatchAlarm => Some(format!(
            "Route 53 check {id} is a CloudWatch-alarm check, which failoverd does not evaluate: use a probe or a calculated check"
        )),
        CheckKind::Other { name } => Some(format!(
            "Route 53 check {id} has type {name}, which failoverd does not evaluate"
        )),
        _ => None,
    }
}

/// A check's signal from the published readings (children of calculated
/// checks included, up to [`MAX_NESTING`]).
fn evaluate(
    id: &str,
    readings: &BTreeMap<String, PublishedReading>,
    seen: &BTreeMap<String, ((String, u64), u64)>,
    now: u64,
    (max_age, metric_stale): (u64, u64),
    depth: u32,
) -> Evaluated {
    let unknown = |why: String| Evaluated {
        signal: Signal::Unknown,
        why,
        identity: None,
    };
    let Some(r) = readings.get(id) else {
        return unknown("unknown (no reading yet)".into());
    };
    // A metric reading ages by its data point's own timestamp (CloudWatch's
    // clock), not by when it was published: a data point is published once.
    if let CheckKind::StatusMetric { point } = &r.reading.kind {
        let newest = point.map(|p| (p.at_ms, p.healthy));
        let signal = health::metric_signal(newest, now, metric_stale);
        return match (signal, point) {
            (Signal::Unknown, Some(p)) => unknown(format!(
                "unknown (newest HealthCheckStatus data point {} s old; stale after {} s)",
                now.saturating_sub(p.at_ms) / 1000,
                metric_stale / 1000
            )),
            (Signal::Unknown, None) => unknown("unknown (no HealthCheckStatus data point)".into()),
            (signal, Some(p)) => Evaluated {
                signal,
                why: format!(
                    "{signal:?} (HealthCheckStatus {} at {} s ago; read by {})",
                    u8::from(p.healthy),
                    now.saturating_sub(p.at_ms) / 1000,
                    r.reader
                ),
                identity: Some(key_hash(&[&(
                    "metric".to_string(),
                    p.at_ms * 2 + u64::from(p.healthy),
                )])),
            },
            (_, None) => unknown("unknown (no HealthCheckStatus data point)".into()),
        };
    }
    let Some((identity, first_seen)) = seen.get(id) else {
        return unknown("unknown (no reading yet)".into());
    };
    if now.saturating_sub(*first_seen) > max_age {
        return unknown(format!(
            "unknown (last new reading {} s ago)",
            now.saturating_sub(*first_seen) / 1000
        ));
    }
    let CheckReading {
        kind,
        inverted,
        disabled,
        observations,
    } = &r.reading;
    let flags = format!(
        "{}{}",
        if *inverted { ", inverted" } else { "" },
        if *disabled { ", disabled" } else { "" }
    );
    match kind {
        CheckKind::Endpoint => {
            let obs: Vec<&str> = observations.iter().map(String::as_str).collect();
            let signal = health::route53_effective(&obs, *inverted, *disabled);
            Evaluated {
                signal,
                why: format!(
                    "{signal:?} ({} observations{flags}; read by {})",
                    obs.len(),
                    r.reader
                ),
                identity: Some(key_hash(&[identity])),
            }
        }
        CheckKind::Calculated {
            children,
            threshold,
        } => {
            if depth >= MAX_NESTING {
                return unknown("unknown (calculated checks nested too deep)".into());
            }
            let kids: Vec<Evaluated> = children
                .iter()
                .map(|c| evaluate(c, readings, seen, now, (max_age, metric_stale), depth + 1))
                .collect();
            let raw = health::calculated_raw(
                &kids.iter().map(|k| k.signal).collect::<Vec<_>>(),
                *threshold,
            );
            let signal = health::route53_flags(raw, *inverted, *disabled);
            let mut h = DefaultHasher::new();
            identity.hash(&mut h);
            for k in &kids {
                k.identity.hash(&mut h);
            }
            debug!(check = id, ?signal, "calculated check evaluated");
            Evaluated {
                signal,
                why: format!(
                    "{signal:?} (calculated: {} of {} children healthy, threshold {threshold}{flags})",
                    kids.iter().filter(|k| k.signal == Signal::Healthy).count(),
                    kids.len()
                ),
                identity: Some(h.finish()),
            }
        }
        CheckKind::CloudWatchAlarm | CheckKind::Other { .. } | CheckKind::StatusMetric { .. } => {
            unknown("unknown (check type not evaluated; see readiness)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::health_checks::CheckKind;

    fn reading(id: &str, reader: &str, read_at: u64) -> PublishedReading {
        PublishedReading {
            check_id: id.to_string(),
            reader: reader.to_string(),
            read_at,
            reading: CheckReading {
                kind: CheckKind::Endpoint,
                inverted: false,
                disabled: false,
                observations: Vec::new(),
            },
        }
    }

    fn metric(id: &str, reader: &str, read_at: u64, at_ms: u64, healthy: bool) -> PublishedReading {
        PublishedReading {
            check_id: id.to_string(),
            reader: reader.to_string(),
            read_at,
            reading: CheckReading::from_metric(Some(MetricPoint { at_ms, healthy })),
        }
    }

    /// A metric data point counts once, whoever read it and whenever: its
    /// identity is the point's, not the reading's; it ages by its own
    /// timestamp; Route 53's status is taken as it is (no flags applied).
    #[test]
    fn a_metric_data_point_counts_once_and_ages_by_its_timestamp() {
        let limits = (10_000, 300_000);
        let eval = |r: PublishedReading, now: u64| {
            let readings = BTreeMap::from([("hc".to_string(), r.clone())]);
            let seen = BTreeMap::from([("hc".to_string(), (r.id(), r.read_at))]);
            evaluate("hc", &readings, &seen, now, limits, 0)
        };
        let a = eval(
            metric("hc", "us-east-1", 1_000_000, 960_000, false),
            1_000_000,
        );
        let b = eval(
            metric("hc", "us-west-2", 1_002_000, 960_000, false),
            1_002_000,
        );
        assert_eq!(a.signal, Signal::Unhealthy);
        assert_eq!(a.identity, b.identity, "the same data point, read twice");
        let mut t = Tracker::default();
        t.observe_reading(a.signal, a.identity.unwrap(), 2, 2);
        t.observe_reading(b.signal, b.identity.unwrap(), 2, 2);
        assert_eq!((t.bad_streak, t.verdict), (1, Verdict::Up));
        let c = eval(
            metric("hc", "us-west-2", 1_060_000, 1_020_000, false),
            1_060_000,
        );
        assert_ne!(c.identity, a.identity, "the next period's point is new");
        t.observe_reading(c.signal, c.identity.unwrap(), 2, 2);
        assert_eq!(t.verdict, Verdict::Down);
        // Older than the receipt limit (10 s) but within the metric's: counts.
        let d = eval(
            metric("hc", "us-east-1", 1_000_000, 960_000, true),
            1_200_000,
        );
        assert_eq!(d.signal, Signal::Healthy);
        // Older than the metric's limit (5 periods): nothing.
        let e = eval(
            metric("hc", "us-east-1", 1_000_000, 960_000, true),
            960_000 + 300_001,
        );
        assert_eq!((e.signal, e.identity), (Signal::Unknown, None));
        // The point's own value is the status: no flags of ours.
        let mut inverted = metric("hc", "us-east-1", 1_000_000, 960_000, true);
        inverted.reading.inverted = true;
        assert_eq!(eval(inverted, 1_000_000).signal, Signal::Healthy);
    }

    #[test]
    fn only_a_newer_data_point_is_published() {
        let p = |at_ms, healthy| MetricPoint { at_ms, healthy };
        assert!(newer_point(p(60, true), None));
        assert!(newer_point(p(120, true), Some(p(60, true))));
        assert!(!newer_point(p(60, true), Some(p(60, true))));
        assert!(
            newer_point(p(60, false), Some(p(60, true))),
            "a period's Minimum may fall"
        );
        assert!(
            !newer_point(p(0, false), Some(p(60, true))),
            "never an older point"
        );
    }

    /// Every check is read however the turns fall: a daemon whose every
    /// turn lands on the same slot index (its rounds phase-locked to the
    /// schedule) still walks all the checks.
    #[test]
    fn a_phase_locked_reader_still_reads_every_check() {
        let checks: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut readings = BTreeMap::new();
        let mut seen: BTreeMap<String, ((String, u64), u64)> = BTreeMap::new();
        let mut read = Vec::new();
        for turn in 0..6u64 {
            let now = 1_000 * (turn + 1);
            // Always the same hint: the phase-locked case.
            let i = stalest(&checks, &readings, &seen, 1);
            read.push(checks[i].clone());
            let r = reading(&checks[i], "us-east-1", now);
            seen.insert(checks[i].clone(), (r.id(), now));
            readings.insert(checks[i].clone(), r);
        }
        assert_eq!(read, ["b", "c", "a", "b", "c", "a"]);
    }

    #[test]
    fn unread_checks_come_first_then_the_oldest_received() {
        let checks: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut readings = BTreeMap::new();
        let mut seen: BTreeMap<String, ((String, u64), u64)> = BTreeMap::new();
        for (id, at) in [("a", 5_000u64), ("c", 2_000)] {
            let r = reading(id, "us-west-2", at);
            seen.insert(id.to_string(), (r.id(), at));
            readings.insert(id.to_string(), r);
        }
        assert_eq!(checks[stalest(&checks, &readings, &seen, 0)], "b");
        let b = reading("b", "us-west-2", 9_000);
        seen.insert("b".into(), (b.id(), 9_000));
        readings.insert("b".into(), b);
        assert_eq!(checks[stalest(&checks, &readings, &seen, 0)], "c");
        // A reading published since we last looked is the freshest there is.
        readings.insert("c".into(), reading("c", "eu-west-1", 9_500));
        assert_eq!(checks[stalest(&checks, &readings, &seen, 0)], "a");
    }
}
