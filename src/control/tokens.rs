//! Task tokens addressed to this region: claim, work, heartbeat, call back.
//!
//! Each round the desk lists the live tokens pending for this region and
//! decides per token (`core::tokens::decide`): claim it (a conditional
//! write), carry on with one we hold, or expire one past its timeout. A
//! claimed token gets a worker task that does the step (prepare, drain),
//! heartbeats to the issuing region's Step Functions while it works, calls
//! back, retrying AWS faults with backoff until the token expires, and
//! marks the token done. Nothing is forgotten: if this process dies, the
//! claim lapses and the token is claimed again; Step Functions makes the
//! callback itself single use.
//!
//! Expiry is judged on this daemon's own clock: a token expires its task's
//! timeout after this process first saw it, not after the item's
//! `created_at`. That stamp is Step Functions' clock (`$$.State.EnteredTime`),
//! and comparing it with ours let a daemon whose clock ran a few minutes
//! fast expire a fresh prepare token on sight, so its region could never
//! take over (found by the simulation, seed 116). A token first seen late
//! (after a restart) expires late: working on a task that has already
//! timed out only earns a `TaskTimedOut`, recorded as done. The first
//! sight is held on the monotonic clock; a listing's stamps and decisions
//! use one reading of both clocks, taken after the listing's wait, and a
//! worker's expiry stays monotonic (seed 42313: a wall clock stepped 45
//! minutes forward during the listing expired a 14 s old token).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::Config;
use crate::core::backoff::Backoff;
use crate::core::control::{ControlRecord, Phase};
use crate::core::mono::Mono;
use crate::core::quorum::{Tally, Vote};
use crate::core::tokens::{self, TokenAction, TokenStatus};
use crate::ports::Ports;
use crate::ports::store::{TokenItem, Write};
use crate::ports::workflows::Callback;
use crate::state::Shared;

use super::journal::journal;
use super::prepare;

/// A daemon not heard from (no new vote) for this many polls is taken for
/// not live by `skip_for_the_absent`.
pub const SILENT_POLLS: u64 = 3;

/// How long a token claim holds without renewal
/// (`config::Timings::token_claim_lease`, which `check-config` checks
/// against the workflow's heartbeat timeouts).
pub fn claim_lease(cfg: &Config) -> u64 {
    cfg.timings.token_claim_lease().as_millis() as u64
}

/// The tokens this daemon works on.
pub struct TokenDesk {
    /// `<region>/<instance>.<nonce>`: distinct per process (even under a
    /// configured instance name), so a restarted daemon waits out its
    /// predecessor's claims instead of assuming them, and distinct between
    /// a region's daemons, so only one of them wins a claim (the claim is a
    /// conditional write on the token's status and claimant).
    owner: String,
    /// By token id. Ordered, so stopping them (shutdown) goes the same way
    /// every run: the simulation replays a seed exactly.
    workers: BTreeMap<String, JoinHandle<()>>,
    /// Task token -> when this process first saw it pending (its clock).
    /// By token, not item id: a retried `putItem` writes a new token (a new
    /// task, with a timeout of its own) into the same item.
    /// When this daemon first saw each pending token (monotonic clock).
    seen: BTreeMap<String, Mono>,
}

impl TokenDesk {
    pub fn new(owner: String) -> Self {
        Self {
            owner,
            workers: BTreeMap::new(),
            seen: BTreeMap::new(),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// One round: look at every live token pending for this region, and
    /// skip the drains addressed to a region whose daemon is not live.
    /// Returns whether this daemon has token work in hand (a token pending
    /// for it or a worker running): the loop keeps a fast pace meanwhile.
    pub async fn round(
        &mut self,
        cfg: &Arc<Config>,
        ports: &Ports,
        shared: &Arc<Shared>,
        record: Option<&ControlRecord>,
        tally: &Tally,
        votes: (&[Vote], u64, Mono),
    ) -> bool {
        self.workers.retain(|_, w| !w.is_finished());
        let now = ports.clock.now_ms();
        let mut pending_here = false;
        match ports.store.pending_tokens(&cfg.region, now).await {
            Ok(pending) => {
                // One reading of both clocks, after the listing's wait, for
                // every stamp and decision below: a wall clock stepped while
                // the list was read must not set a token's stamp on one
                // side of the step and judge it on the other (seed 42313: a
                // 45-minute step expired a 14 s old prepare token).
                let (now, mono) = (ports.clock.now_ms(), ports.clock.mono());
                pending_here = !pending.is_empty();
                self.seen
                    .retain(|token, _| pending.iter().any(|t| t.token == *token));
                for mut t in pending {
                    // Our receipt time stands in for the workflow's stamp:
                    // the token's age on our monotonic clock, as a time on
                    // our wall clock now (a step of the wall clock since
                    // neither ages nor rejuvenates it).
                    let seen = *self.seen.entry(t.token.clone()).or_insert(mono);
                    t.view.created_at = seen.to_wall(mono, now);
                    self.handle(cfg, ports, shared, t, now).await;
                }
            }
            Err(e) => warn!(error = %crate::error_chain(&e), "cannot list pending tokens"),
        }
        self.skip_for_the_absent(cfg, ports, shared, record, tally, votes)
            .await;
        pending_here || !self.workers.is_empty()
    }

    /// While a failover is in flight, a step addressed to a region whose
    /// daemon is not live and that the workflow can go on without
    /// (`core::tokens::skippable`: the drain) is claimed and failed with
    /// `DaemonNotLive` at once, instead of waiting out the step's timeout
    /// for a daemon that will not answer. The workflow catches it like a
    /// timeout and journals the skip.
    ///
    /// Not live: no new vote from it for [`SILENT_POLLS`] polls (receipt
    /// times, this daemon's clock; every daemon votes every round, and
    /// every round while a failover is in flight), judged by a daemon that
    /// is itself a fresh observer in a quorum. That is shorter than
    /// `vote_freshness`, which guards the quorum; a wrong guess here costs
    /// only a drain, which a daemon that wakes up does anyway when it reads
    /// the record.
    async fn skip_for_the_absent(
        &mut self,
        cfg: &Arc<Config>,
        ports: &Ports,
        shared: &Arc<Shared>,
        record: Option<&ControlRecord>,
        tally: &Tally,
        (votes, round_now, round_mono): (&[Vote], u64, Mono),
    ) {
        let Some(r) = record.filter(|r| r.phase == Phase::FailingOver) else {
            return;
        };
        if tally.no_quorum.is_some() || !tally.fresh_observers.contains(&cfg.region) {
            return;
        }
        // The votes' times are receipts as of the round's reading of the
        // clocks (`quorum::Receipts`); their ages now add what the
        // monotonic clock counted since.
        let since_round = ports.clock.mono().since(round_mono);
        let silent_ms = cfg.timings.poll_interval.as_millis() as u64 * SILENT_POLLS;
        let absent: Vec<&str> = cfg
            .regions
            .iter()
            .map(|x| x.name.as_str())
            .filter(|x| *x != cfg.region)
            .filter(|x| r.previous.as_deref() == Some(*x) || r.active == *x)
            .filter(|x| {
                // Any of the region's daemons: its newest vote.
                votes
                    .iter()
                    .filter(|v| v.observer == *x)
                    .max_by_key(|v| v.at)
                    .is_none_or(|v| round_now.saturating_sub(v.at) + since_round > silent_ms)
            })
            .collect();
        for region in absent {
            let now = ports.clock.now_ms();
            let pending = match ports.store.pending_tokens(region, now).await {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %crate::error_chain(&e), %region, "cannot list the tokens of a region whose daemon is not live");
                    continue;
                }
            };
            for t in pending {
                if !tokens::skippable(&t.view, now) || self.workers.contains_key(&t.view.id) {
                    continue;
                }
                let id = t.view.id.clone();
                match ports
                    .store
                    .claim_token(&id, &self.owner, now, claim_lease(cfg))
                    .await
                {
                    Ok(Write::Written) => {
                        let why = format!(
                            "{region}'s daemon is not live (no new vote from it for {} ms): the {} step is skipped, not waited for",
                            silent_ms, t.view.step
                        );
                        info!(%id, %why, "skipping a step");
                        journal(
                            &*ports.store,
                            now,
                            &cfg.region,
                            "token_skipped",
                            Some(t.epoch),
                            format!("{id}: {why} [by {}]", self.owner),
                        )
                        .await;
                        self.spawn_with(cfg, ports, shared, t, Some(why));
                    }
                    Ok(Write::Conflict) => debug!(%id, "token claimed by someone else"),
                    Err(e) => warn!(error = %crate::error_chain(&e), %id, "cannot claim token"),
                }
            }
        }
    }

    async fn handle(
        &mut self,
        cfg: &Arc<Config>,
        ports: &Ports,
        shared: &Arc<Shared>,
        t: TokenItem,
        now: u64,
    ) {
        match tokens::decide(&t.view, &cfg.region, &self.owner, now) {
            None => {}
            Some(TokenAction::Expire { id }) => {
                let closed = ports
                    .store
                    .finish_token(
                        &id,
                        TokenStatus::Expired,
                        "expired: past its task timeout",
                        now,
                    )
                    .await;
                if let Ok(Write::Written) = closed {
                    let detail = format!("{id} expired unclaimed or unfinished");
                    journal(
                        &*ports.store,
                        now,
                        &cfg.region,
                        "token_expired",
                        Some(t.epoch),
                        detail,
                    )
                    .await;
                }
            }
            Some(TokenAction::Continue { id }) if !self.workers.contains_key(&id) => {
                self.spawn(cfg, ports, shared, t);
            }
            Some(TokenAction::Continue { .. }) => {}
            Some(TokenAction::Claim { id }) => {
                match ports
                    .store
                    .claim_token(&id, &self.owner, now, claim_lease(cfg))
                    .await
                {
                    Ok(Write::Written) => {
                        journal(
                            &*ports.store,
                            now,
                            &cfg.region,
                            "token_claimed",
                            Some(t.epoch),
                            format!("{id} claimed by {}", self.owner),
                        )
                        .await;
                        self.spawn(cfg, ports, shared, t);
                    }
                    Ok(Write::Conflict) => debug!(%id, "token claimed by someone else"),
                    Err(e) => warn!(error = %crate::error_chain(&e), %id, "cannot claim token"),
                }
            }
        }
    }

    fn spawn(&mut self, cfg: &Arc<Config>, ports: &Ports, shared: &Arc<Shared>, t: TokenItem) {
        self.spawn_with(cfg, ports, shared, t, None)
    }

    /// Start a worker for a claimed token; `skip` carries the reason when
    /// the step is to be failed as skipped rather than done.
    fn spawn_with(
        &mut self,
        cfg: &Arc<Config>,
        ports: &Ports,
        shared: &Arc<Shared>,
        t: TokenItem,
        skip: Option<String>,
    ) {
        let id = t.view.id.clone();
        // The expiry on the monotonic clock: this process's first sight of
        // the token and the task's timeout (a token listed for another
        // region, to skip, from its stamp as read now).
        let expires = match self.seen.get(&t.token) {
            Some(seen) => seen.plus(t.view.timeout_ms),
            None => Mono::from_wall(
                t.view.expires_at(),
                ports.clock.mono(),
                ports.clock.now_ms(),
            ),
        };
        let w = TokenWorker {
            cfg: cfg.clone(),
            ports: ports.clone(),
            owner: self.owner.clone(),
            shared: shared.clone(),
            skip,
            expires,
        };
        let span = info_span!("token", id = %id, step = %t.view.step);
        self.workers.insert(
            id,
            tokio::spawn(async move { w.run(t).await }.instrument(span)),
        );
    }

    /// Stop every worker (shutdown).
    pub fn abort_all(&mut self) {
        for (_, w) in std::mem::take(&mut self.workers) {
            w.abort();
        }
    }
}

/// Why a token's step failed: the cause sent to Step Functions
/// (`SendTaskFailure`, error `StepFailed`) and written in the journal.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Prepare(#[from] prepare::PrepareError),
    /// The workflow asked for a step this daemon does not know (a newer
    /// state machine than the daemon).
    #[error("unknown step {0:?}")]
    Unknown(String),
    /// The step was addressed to a region whose daemon is not live, and
    /// another daemon answers for it so the workflow need not wait.
    #[error("skipped: {0}")]
    Skipped(String),
}

impl StepError {
    /// The error name sent to Step Functions.
    fn name(&self) -> &'static str {
        match self {
            StepError::Skipped(_) => "DaemonNotLive",
            _ => "StepFailed",
        }
    }
}

/// Works one claimed token to the end.
struct TokenWorker {
    cfg: Arc<Config>,
    ports: Ports,
    owner: String,
    shared: Arc<Shared>,
    /// Set when this worker answers for an absent daemon: fail the step
    /// as skipped, with this reason, instead of doing it.
    skip: Option<String>,
    /// When the task times out, on this process's monotonic clock.
    expires: Mono,
}

impl TokenWorker {
    async fn run(self, t: TokenItem) {
        let id = t.view.id.clone();
        let Some(issuer) = t.issuer_region().map(String::from) else {
            warn!(arn = %t.execution_arn, "token has no issuing execution ARN; cannot call back");
            return;
        };
        let claim_ms = claim_lease(&self.cfg);
        let heartbeat = self.cfg.timings.heartbeat_period();
        let clock = self.ports.clock.clone();

        // Heartbeats (and claim renewals) while the step runs.
        let hb = {
            let ports = self.ports.clone();
            let token = t.token.clone();
            let owner = self.owner.clone();
            let id = id.clone();
            let issuer = issuer.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(heartbeat);
                loop {
                    tick.tick().await;
                    match ports.workflows.send_task_heartbeat(&issuer, &token).await {
                        Ok(Callback::AlreadyClosed) => return,
                        Ok(Callback::Accepted) => {}
                        Err(e) => debug!(error = %crate::error_chain(&e), "heartbeat failed"),
                    }
                    let now = ports.clock.now_ms();
                    let _ = ports.store.extend_claim(&id, &owner, now, claim_ms).await;
                }
            })
        };

        let result: Result<serde_json::Value, StepError> = match (&self.skip, t.view.step.as_str())
        {
            (Some(why), _) => Err(StepError::Skipped(why.clone())),
            (None, step) => match step {
                "prepare" => {
                    // What each endpoint and component prepare scales must
                    // carry, over the pairs it names (prepare.rs).
                    let need = |pairs: &[(&str, &str)]| {
                        crate::state::fleet_need(
                            &self.cfg,
                            &self.shared,
                            pairs,
                            crate::metrics::counts::Now::of(&*self.ports.clock),
                        )
                    };
                    // The expiry on the wall clock as read now (prepare
                    // holds it on the monotonic clock again).
                    let deadline = self
                        .expires
                        .to_wall(self.ports.clock.mono(), self.ports.clock.now_ms());
                    prepare::prepare(&self.cfg, &self.ports, deadline, &need)
                        .await
                        .map_err(StepError::from)
                }
                "drain" => {
                    self.shared.draining.store(true, Ordering::Relaxed);
                    Ok(
                        serde_json::json!({"region": self.cfg.region, "step": "drain", "draining": true}),
                    )
                }
                other => Err(StepError::Unknown(other.to_string())),
            },
        };
        hb.abort();

        // Call back, retrying AWS faults until the token expires.
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        loop {
            let cb = match &result {
                Ok(output) => {
                    self.ports
                        .workflows
                        .send_task_success(&issuer, &t.token, &output.to_string())
                        .await
                }
                Err(e) => {
                    self.ports
                        .workflows
                        .send_task_failure(&issuer, &t.token, e.name(), &crate::error_chain(e))
                        .await
                }
            };
            let now = clock.now_ms();
            match cb {
                Ok(outcome) => {
                    let note = match (&result, outcome) {
                        (Ok(_), Callback::Accepted) => "success sent".to_string(),
                        (Err(e), Callback::Accepted) => {
                            format!("failure sent: {}", crate::error_chain(e))
                        }
                        (_, Callback::AlreadyClosed) => "the task was already closed (TaskTimedOut/InvalidToken): recorded as done".to_string(),
                    };
                    let _ = self
                        .ports
                        .store
                        .finish_token(&id, TokenStatus::Done, &note, now)
                        .await;
                    journal(
                        &*self.ports.store,
                        now,
                        &self.cfg.region,
                        "token_done",
                        Some(t.epoch),
                        format!("{id}: {note} [by {}]", self.owner),
                    )
                    .await;
                    info!(%note, "token done");
                    return;
                }
                Err(e) if self.ports.clock.mono() < self.expires => {
                    let delay = backoff.next_delay(1.0);
                    warn!(error = %crate::error_chain(&e), backoff_ms = delay.as_millis() as u64, "callback failed; retrying");
                    let _ = self
                        .ports
                        .store
                        .extend_claim(&id, &self.owner, now, claim_ms)
                        .await;
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    warn!(error = %crate::error_chain(&e), "callback failed and the token has expired");
                    let _ = self
                        .ports
                        .store
                        .finish_token(
                            &id,
                            TokenStatus::Expired,
                            &format!("callback failed until expiry: {e}"),
                            now,
                        )
                        .await;
                    journal(
                        &*self.ports.store,
                        now,
                        &self.cfg.region,
                        "token_expired",
                        Some(t.epoch),
                        format!("{id}: callback failed until expiry [by {}]", self.owner),
                    )
                    .await;
                    return;
                }
            }
        }
    }
}
