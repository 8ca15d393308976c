//! The reconcile loop: every `poll_interval`, collect, decide, persist, act.
//!
//! 1. Collect: Route 53 readings (on this daemon's turn of the fleet-wide
//!    budget), own probes of every region; feed each region's tracker.
//! 2. Publish this daemon's vote; read every vote and the control record.
//! 3. Decide: `core::plan::plan` (pure).
//! 4. Act: the executor performs the one action (conditional writes).
//! 5. Tokens addressed to this region: claim, work, heartbeat, call back.
//!
//! Failures of any AWS call make the round's inputs `Unknown`/`Unreadable`,
//! which the planner turns into "do nothing automatic" — never into a
//! decision against a region we merely could not see.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::aws::AwsClients;
use crate::aws::control_table::{ControlTable, Event, TokenItem, Write, now_ms};
use crate::aws::route53::{self, CheckReading, ReadError};
use crate::aws::sagemaker;
use crate::aws::sfn::{self, Callback};
use crate::config::{Config, Consistency};
use crate::core::control::{self, ControlRecord, LeaseClock, Role};
use crate::core::health::{self, Signal, Tracker, Verdict};
use crate::core::plan::{self, Decision, ExecutionStatus, Inputs, Policy, RecordRead};
use crate::core::quorum::{self, Tally, Vote};
use crate::core::tokens::{self, TokenAction, TokenStatus};
use crate::http::{ShutdownRx, shutdown_signalled};
use crate::state::{Readiness, RoundStatus, Shared};

use super::executor::{Executor, Outcome};
use super::probe::Prober;

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
        stuck_failover_ms: plan::STUCK_FAILOVER_MS,
    }
}

/// The control table replica a daemon in `cfg.region` uses.
pub fn control_table(cfg: &Config, clients: &AwsClients) -> ControlTable {
    let region = cfg.control_region_for(&cfg.region).to_string();
    ControlTable::new(clients.dynamodb(&region), &cfg.tables.control, region)
}

/// Tally the votes for the configured regions.
pub fn tally_for(cfg: &Config, votes: &[Vote], now: u64) -> Tally {
    let regions: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
    quorum::tally(
        &cfg.region,
        &regions,
        votes,
        now,
        cfg.timings.vote_freshness.as_millis() as u64,
    )
}

/// The loop's private state.
pub struct Reconciler {
    config: watch::Receiver<Arc<Config>>,
    clients: Arc<AwsClients>,
    shared: Arc<Shared>,
    readiness: Arc<Readiness>,
    /// `<region>/<instance>`: distinct per process, so a restarted daemon
    /// waits out its predecessor's token claims instead of assuming them.
    owner: String,
    prober: Prober,
    trackers: BTreeMap<String, Tracker>,
    r53: HashMap<String, (CheckReading, u64)>,
    r53_last_slot: u64,
    r53_backoff_until: u64,
    r53_backoff_ms: u64,
    lease: LeaseClock,
    last_role_kind: Option<&'static str>,
    last_record: Option<ControlRecord>,
    last_decision_text: Option<String>,
    workers: HashMap<String, JoinHandle<()>>,
    round: u64,
}

impl Reconciler {
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        clients: Arc<AwsClients>,
        shared: Arc<Shared>,
        readiness: Arc<Readiness>,
    ) -> std::io::Result<Self> {
        let cfg = config.borrow().clone();
        let prober = Prober::new(
            cfg.health.probe_connect_timeout,
            cfg.health.probe_response_timeout,
        )?;
        let instance = format!("{:x}{:x}", std::process::id(), now_ms() & 0xffff_ffff);
        Ok(Self {
            owner: format!("{}/{instance}", cfg.region),
            config,
            clients,
            shared,
            readiness,
            prober,
            trackers: BTreeMap::new(),
            r53: HashMap::new(),
            r53_last_slot: u64::MAX,
            r53_backoff_until: 0,
            r53_backoff_ms: 0,
            lease: LeaseClock::default(),
            last_role_kind: None,
            last_record: None,
            last_decision_text: None,
            workers: HashMap::new(),
            round: 0,
        })
    }

    /// Run rounds until shutdown.
    pub async fn run(mut self, mut shutdown: ShutdownRx) {
        self.readiness
            .set_unready("quorum", "no round completed yet");
        loop {
            let interval = self.config.borrow().timings.poll_interval;
            let started = tokio::time::Instant::now();
            self.round += 1;
            let span = info_span!("round", n = self.round);
            tokio::select! {
                _ = self.one_round().instrument(span) => {}
                _ = shutdown_signalled(&mut shutdown) => break,
            }
            let next = started + interval;
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown_signalled(&mut shutdown) => break,
            }
        }
        for (_, w) in self.workers.drain() {
            w.abort();
        }
    }

    async fn one_round(&mut self) {
        let cfg = self.config.borrow().clone();
        let table = control_table(&cfg, &self.clients);
        let now = now_ms();

        // 1. Collect.
        self.refresh_route53(&cfg, now).await;
        let samples = self.sample_regions(&cfg, now).await;
        let mut view = BTreeMap::new();
        for r in &cfg.regions {
            let (sample, _) = &samples[&r.name];
            let t = self.trackers.entry(r.name.clone()).or_default();
            let before = t.verdict;
            let after = t.observe(
                *sample,
                cfg.timings.failure_threshold,
                cfg.timings.recovery_threshold,
            );
            if before != after {
                let kind = if after == Verdict::Down {
                    "observed_down"
                } else {
                    "observed_up"
                };
                info!(region = %r.name, ?after, "verdict changed");
                let detail = format!(
                    "{} sees {} {:?}: {}",
                    cfg.region,
                    r.name,
                    after,
                    samples[&r.name].1.join("; ")
                );
                journal(&table, &cfg.region, kind, None, detail).await;
            }
            view.insert(r.name.clone(), after);
        }

        // 2. Publish our vote; read everyone's and the record.
        let seen_epoch = self.last_record.as_ref().map(|r| r.epoch).unwrap_or(0);
        let vote = Vote {
            observer: cfg.region.clone(),
            at: now,
            seen_epoch,
            view,
        };
        let mut vote_error = None;
        if let Err(e) = table.put_vote(&vote).await {
            vote_error = Some(e.to_string());
        }
        let votes = table.read_votes().await;
        // The read shows the record as of some moment after it was sent:
        // count the lease from the send, never from the answer.
        let read_sent = now_ms();
        let record = table.read_record().await;
        let now = now_ms();
        let record = match record {
            Ok(Some(r)) => {
                let seen = self.last_record.as_ref().map(|r| r.epoch);
                self.lease.observe(&cfg.region, &r, seen, read_sent, now);
                self.last_record = Some(r.clone());
                RecordRead::Found(r)
            }
            Ok(None) => RecordRead::Missing,
            Err(e) => RecordRead::Unreadable(e.to_string()),
        };
        let votes = match votes {
            Ok(v) => v,
            Err(e) => {
                vote_error.get_or_insert(e.to_string());
                Vec::new()
            }
        };
        // A vote we could not write must not count for us even if an old copy is fresh.
        let votes: Vec<Vote> = if vote_error.is_some() {
            votes
                .into_iter()
                .filter(|v| v.observer != cfg.region)
                .collect()
        } else {
            votes
        };
        let tally = tally_for(&cfg, &votes, now);
        match (&tally.no_quorum, &vote_error, &record) {
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

        // 3. Decide.
        let execution = match &record {
            RecordRead::Found(r)
                if r.phase == control::Phase::FailingOver
                    && r.initiator.as_deref() == Some(cfg.region.as_str()) =>
            {
                self.execution_status(&cfg, r).await
            }
            _ => None,
        };
        let policy = policy(&cfg);
        let decision = plan::plan(&Inputs {
            now,
            me: &cfg.region,
            tally: &tally,
            record: &record,
            execution,
            policy: &policy,
            request: None,
        });

        // 4. Act.
        match &decision {
            Decision::Act { action } => {
                info!(?action, "acting");
                let exec = Executor {
                    config: &cfg,
                    clients: &self.clients,
                    table: &table,
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
                        journal(&table, &cfg.region, "decision", None, why.clone()).await;
                    }
                    self.last_decision_text = Some(why.clone());
                }
            }
        }

        // 5. Tokens.
        self.workers.retain(|_, w| !w.is_finished());
        match table.pending_tokens(&cfg.region).await {
            Ok(pending) => {
                for t in pending {
                    self.handle_token(&cfg, &table, t).await;
                }
            }
            Err(e) => warn!(error = %e, "cannot list pending tokens"),
        }

        // Status.
        if let Some(r) = &self.last_record {
            if r.active == cfg.region {
                self.shared.draining.store(false, Ordering::Relaxed);
            }
        }
        let mut next = RoundStatus {
            at: now,
            round: self.round,
            region: cfg.region.clone(),
            role: None,
            record: self.last_record.clone(),
            lease: self.lease,
            lease_ms: cfg.timings.lease.as_millis() as u64,
            wait_out_lease: cfg.policy.wait_out_lease,
            tally: Some(tally),
            decision: Some(decision),
            trackers: self.trackers.clone(),
            samples: samples.into_iter().map(|(k, (_, why))| (k, why)).collect(),
            draining: self.shared.draining.load(Ordering::Relaxed),
        };
        next.role = next.role_at(now_ms());
        let kind = next.role.as_ref().map(Role::kind);
        if kind != self.last_role_kind {
            match &next.role {
                Some(Role::Active) => {
                    info!(epoch = ?self.last_record.as_ref().map(|r| r.epoch), "acting as the active region")
                }
                Some(Role::Waiting { until }) => info!(
                    until,
                    "named active: waiting out the previous active's lease"
                ),
                Some(Role::StoodDown { unconfirmed_ms }) => warn!(
                    unconfirmed_ms,
                    "stood down as active: the control record could not be confirmed within the lease"
                ),
                Some(Role::Standby { active }) => info!(%active, "standing by"),
                None => {}
            }
            self.last_role_kind = kind;
        }
        *self.shared.status.lock().unwrap_or_else(|p| p.into_inner()) = next;
    }

    async fn execution_status(&self, cfg: &Config, r: &ControlRecord) -> Option<ExecutionStatus> {
        let region = cfg.region(r.initiator.as_deref()?)?;
        let arn = sfn::execution_arn(&region.state_machine_arn, r.execution.as_deref()?);
        match sfn::execution_status(&self.clients.sfn(&region.name), &arn).await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot describe the failover execution");
                None
            }
        }
    }

    /// Read one Route 53 check if this slot of the fleet-wide budget is ours.
    async fn refresh_route53(&mut self, cfg: &Config, now: u64) {
        let mut checks: Vec<&str> = cfg
            .regions
            .iter()
            .flat_map(|r| r.health_check_ids.iter().map(String::as_str))
            .collect();
        checks.sort();
        if checks.is_empty() || now < self.r53_backoff_until {
            return;
        }
        let mut order: Vec<&str> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
        order.sort();
        let me = order.iter().position(|r| *r == cfg.region).unwrap_or(0) as u64;
        let n = order.len() as u64;
        // Two calls per reading (GetHealthCheck + GetHealthCheckStatus).
        let slot_ms = (2000.0 / cfg.health.route53_calls_per_second).max(1.0) as u64;
        let Some((slot, index)) = health::route53_turn(now, slot_ms, me, n, checks.len() as u64)
        else {
            return;
        };
        if slot == self.r53_last_slot {
            return;
        }
        self.r53_last_slot = slot;
        let id = checks[index];
        match route53::read_check(&self.clients.route53(), id).await {
            Ok(reading) => {
                self.r53_backoff_ms = 0;
                self.r53.insert(id.to_string(), (reading, now));
            }
            Err(ReadError::Throttled { detail, .. }) => {
                self.r53_backoff_ms = (self.r53_backoff_ms * 2).clamp(slot_ms, 300_000);
                self.r53_backoff_until = now + self.r53_backoff_ms;
                warn!(%detail, backoff_ms = self.r53_backoff_ms, "Route 53 throttled; backing off");
            }
            Err(e) => warn!(error = %e, check = id, "cannot read Route 53 health check"),
        }
    }

    /// One sample per region: Route 53 (cached, if fresh enough) + probes.
    async fn sample_regions(
        &self,
        cfg: &Config,
        now: u64,
    ) -> BTreeMap<String, (Signal, Vec<String>)> {
        let checks = cfg
            .regions
            .iter()
            .map(|r| r.health_check_ids.len())
            .sum::<usize>()
            .max(1) as u64;
        let daemons = cfg.regions.len() as u64;
        let slot_ms = (2000.0 / cfg.health.route53_calls_per_second).max(1.0) as u64;
        // A reading older than three of our full rotations says nothing.
        let max_age = slot_ms * daemons * checks * 3 + cfg.timings.poll_interval.as_millis() as u64;
        let probes = cfg.regions.iter().map(|r| async move {
            let mut out = Vec::new();
            for u in &r.probe_urls {
                let (sig, why) = self.prober.probe(u, r.probe_match.as_deref()).await;
                out.push((sig, format!("probe {u}: {why}")));
            }
            (r.name.clone(), out)
        });
        let probe_results: BTreeMap<String, Vec<(Signal, String)>> =
            futures_util::future::join_all(probes)
                .await
                .into_iter()
                .collect();
        let mut out = BTreeMap::new();
        for r in &cfg.regions {
            let mut signals = Vec::new();
            let mut why = Vec::new();
            for id in &r.health_check_ids {
                match self.r53.get(id) {
                    Some((reading, at)) if now.saturating_sub(*at) <= max_age => {
                        let obs: Vec<&str> =
                            reading.observations.iter().map(String::as_str).collect();
                        let s = health::route53_effective(&obs, reading.inverted, reading.disabled);
                        signals.push(s);
                        why.push(format!(
                            "route53 {id}: {s:?} ({} observations{}{})",
                            obs.len(),
                            if reading.inverted { ", inverted" } else { "" },
                            if reading.disabled { ", disabled" } else { "" }
                        ));
                    }
                    _ => {
                        signals.push(Signal::Unknown);
                        why.push(format!("route53 {id}: unknown (no recent reading)"));
                    }
                }
            }
            for (s, w) in probe_results.get(&r.name).cloned().unwrap_or_default() {
                signals.push(s);
                why.push(w);
            }
            out.insert(r.name.clone(), (health::combine(&signals), why));
        }
        out
    }

    async fn handle_token(&mut self, cfg: &Config, table: &ControlTable, t: TokenItem) {
        let now = now_ms();
        match tokens::decide(&t.view, &cfg.region, &self.owner, now) {
            None => {}
            Some(TokenAction::Expire { id }) => {
                let closed = table
                    .finish_token(
                        &id,
                        TokenStatus::Expired,
                        "expired: past its task timeout",
                        now,
                    )
                    .await;
                if let Ok(Write::Written) = closed {
                    let detail = format!("{id} expired unclaimed or unfinished");
                    journal(table, &cfg.region, "token_expired", Some(t.epoch), detail).await;
                }
            }
            Some(TokenAction::Continue { id }) if !self.workers.contains_key(&id) => {
                self.spawn_worker(cfg, table, t);
            }
            Some(TokenAction::Continue { .. }) => {}
            Some(TokenAction::Claim { id }) => {
                let claim_ms = claim_lease(cfg);
                match table.claim_token(&id, &self.owner, now, claim_ms).await {
                    Ok(Write::Written) => {
                        journal(
                            table,
                            &cfg.region,
                            "token_claimed",
                            Some(t.epoch),
                            format!("{id} claimed by {}", self.owner),
                        )
                        .await;
                        self.spawn_worker(cfg, table, t);
                    }
                    Ok(Write::Conflict) => debug!(%id, "token claimed by someone else"),
                    Err(e) => warn!(error = %e, %id, "cannot claim token"),
                }
            }
        }
    }

    fn spawn_worker(&mut self, cfg: &Config, table: &ControlTable, t: TokenItem) {
        let id = t.view.id.clone();
        let w = TokenWorker {
            cfg: Arc::new(cfg.clone()),
            clients: self.clients.clone(),
            table: table.clone(),
            owner: self.owner.clone(),
            shared: self.shared.clone(),
        };
        let span = info_span!("token", id = %id, step = %t.view.step);
        self.workers.insert(
            id,
            tokio::spawn(async move { w.run(t).await }.instrument(span)),
        );
    }
}

/// How long a token claim holds without renewal.
fn claim_lease(cfg: &Config) -> u64 {
    (cfg.timings.poll_interval.as_millis() as u64 * 5).max(10_000)
}

async fn journal(table: &ControlTable, who: &str, kind: &str, epoch: Option<u64>, detail: String) {
    let e = Event {
        at: now_ms(),
        who: who.into(),
        kind: kind.into(),
        epoch,
        detail,
    };
    if let Err(err) = table.journal(&e).await {
        warn!(error = %err, kind, "cannot write journal entry");
    }
}

/// Works one claimed token to the end: do the step, heartbeat meanwhile,
/// call back to the issuing region, mark done. AWS faults are retried with
/// backoff until the token expires; nothing is forgotten: if this process
/// dies, the claim lapses and the token is claimed again.
struct TokenWorker {
    cfg: Arc<Config>,
    clients: Arc<AwsClients>,
    table: ControlTable,
    owner: String,
    shared: Arc<Shared>,
}

impl TokenWorker {
    async fn run(self, t: TokenItem) {
        let id = t.view.id.clone();
        let Some(issuer) = t.issuer_region().map(String::from) else {
            warn!(arn = %t.execution_arn, "token has no issuing execution ARN; cannot call back");
            return;
        };
        let sfn = self.clients.sfn(&issuer);
        let deadline = t.view.expires_at();
        let claim_ms = claim_lease(&self.cfg);

        // Heartbeats (and claim renewals) while the step runs.
        let hb = {
            let sfn = sfn.clone();
            let token = t.token.clone();
            let table = self.table.clone();
            let owner = self.owner.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_millis((claim_ms / 3).max(1000)));
                loop {
                    tick.tick().await;
                    match sfn::send_task_heartbeat(&sfn, &token).await {
                        Ok(Callback::AlreadyClosed) => return,
                        Ok(Callback::Accepted) => {}
                        Err(e) => debug!(error = %e, "heartbeat failed"),
                    }
                    let _ = table.extend_claim(&id, &owner, now_ms(), claim_ms).await;
                }
            })
        };

        let result = match t.view.step.as_str() {
            "prepare" => self.prepare(deadline).await,
            "drain" => {
                self.shared.draining.store(true, Ordering::Relaxed);
                Ok(
                    serde_json::json!({"region": self.cfg.region, "step": "drain", "draining": true}),
                )
            }
            other => Err(format!("unknown step {other:?}")),
        };
        hb.abort();

        // Call back, retrying AWS faults until the token expires.
        let mut backoff = 500u64;
        loop {
            let cb = match &result {
                Ok(output) => sfn::send_task_success(&sfn, &t.token, &output.to_string()).await,
                Err(cause) => sfn::send_task_failure(&sfn, &t.token, "StepFailed", cause).await,
            };
            let now = now_ms();
            match cb {
                Ok(outcome) => {
                    let note = match (&result, outcome) {
                        (Ok(_), Callback::Accepted) => "success sent".to_string(),
                        (Err(c), Callback::Accepted) => format!("failure sent: {c}"),
                        (_, Callback::AlreadyClosed) => "the task was already closed (TaskTimedOut/InvalidToken): recorded as done".to_string(),
                    };
                    let _ = self
                        .table
                        .finish_token(&id, TokenStatus::Done, &note, now)
                        .await;
                    journal(
                        &self.table,
                        &self.cfg.region,
                        "token_done",
                        Some(t.epoch),
                        format!("{id}: {note}"),
                    )
                    .await;
                    info!(%note, "token done");
                    return;
                }
                Err(e) if now < deadline => {
                    warn!(error = %e, backoff_ms = backoff, "callback failed; retrying");
                    let _ = self
                        .table
                        .extend_claim(&id, &self.owner, now, claim_ms)
                        .await;
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    backoff = (backoff * 2).min(10_000);
                }
                Err(e) => {
                    warn!(error = %e, "callback failed and the token has expired");
                    let _ = self
                        .table
                        .finish_token(
                            &id,
                            TokenStatus::Expired,
                            &format!("callback failed until expiry: {e}"),
                            now,
                        )
                        .await;
                    journal(
                        &self.table,
                        &self.cfg.region,
                        "token_expired",
                        Some(t.epoch),
                        format!("{id}: callback failed until expiry"),
                    )
                    .await;
                    return;
                }
            }
        }
    }

    /// Check that every endpoint of this region can serve (SageMaker's
    /// DescribeEndpoint), then warm the real-time ones with the configured
    /// payload, retrying cold starts until a margin before the token's
    /// expiry. A missing or failed endpoint fails the prepare step, and with
    /// it the failover: traffic must not move to a region that cannot serve
    /// a path it claims. If the control plane itself cannot be asked, the
    /// warm-up decides (it is the stronger proof for real-time endpoints).
    async fn prepare(&self, deadline: u64) -> Result<serde_json::Value, String> {
        let me = self.cfg.local();
        let control = self.clients.sagemaker(&me.name);
        let mut statuses = serde_json::Map::new();
        for ep in me.sagemaker.all() {
            match sagemaker::endpoint_status(&control, ep).await {
                Ok(Some(st)) if sagemaker::serves(&st) => {
                    statuses.insert(ep.clone(), st.as_str().into());
                }
                Ok(Some(st)) => {
                    return Err(format!(
                        "endpoint {ep} in {} is {}, not serving",
                        me.name,
                        st.as_str()
                    ));
                }
                Ok(None) => {
                    return Err(format!("endpoint {ep} does not exist in {}", me.name));
                }
                Err(e) => {
                    warn!(endpoint = %ep, error = %e, "cannot read the endpoint's status; the warm-up decides");
                    statuses.insert(ep.clone(), format!("unknown: {e}").into());
                }
            }
        }
        let endpoints: Vec<&String> = me.sagemaker.realtime().collect();
        let client = self.clients.sagemaker_runtime(&me.name);
        let stop_at = deadline.saturating_sub(5_000);
        let mut warmed = Vec::new();
        // Every model the router serves: each TargetModel once per endpoint
        // (a single-model endpoint, with no TargetModel, once).
        let mut targets: Vec<Option<String>> = self
            .cfg
            .models
            .iter()
            .map(|m| m.target_model.clone())
            .collect();
        targets.sort();
        targets.dedup();
        if targets.is_empty() {
            targets.push(None);
        }
        let work: Vec<(&String, Option<String>)> = endpoints
            .iter()
            .flat_map(|ep| targets.iter().map(move |t| (*ep, t.clone())))
            .collect();
        for (ep, target) in work {
            let mut attempts = 0u32;
            let mut delay = 250u64;
            loop {
                attempts += 1;
                let r = client
                    .invoke_endpoint()
                    .endpoint_name(ep)
                    .set_target_model(target.clone())
                    .content_type("application/json")
                    .body(aws_smithy_types::Blob::new(
                        self.cfg.health.warmup_payload.as_bytes().to_vec(),
                    ))
                    .send()
                    .await;
                match r {
                    Ok(_) => {
                        warmed.push(serde_json::json!({"endpoint": ep, "target_model": target, "attempts": attempts}));
                        break;
                    }
                    Err(e) if now_ms() + delay < stop_at => {
                        debug!(endpoint = %ep, error = %aws_sdk_sagemakerruntime::error::DisplayErrorContext(&e), "warm-up attempt failed; retrying");
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        delay = (delay * 2).min(5_000);
                    }
                    Err(e) => {
                        return Err(format!(
                            "endpoint {ep} did not warm up: {}",
                            aws_sdk_sagemakerruntime::error::DisplayErrorContext(&e)
                        ));
                    }
                }
            }
        }
        Ok(
            serde_json::json!({"region": me.name, "step": "prepare", "endpoints": statuses, "warmed": warmed}),
        )
    }
}
