//! The standby readiness task (issue 26; docs/readiness.md): every
//! `cost.readiness_interval`, a standby daemon compares each of its
//! region's endpoints with the active region's endpoint of the same kind
//! (`core::standby::judge`) and keeps the findings where `/metrics` shows
//! them; a change of its summary is journalled (`readiness`), which is
//! where `failoverd status` and every other daemon read it.
//!
//! Budget: per round, for each configured endpoint of this region and its
//! counterpart in the active region, one `DescribeEndpoint` plus one
//! `DescribeEndpointConfig` and one `DescribeModel` per variant: about six
//! SageMaker control-plane reads for three endpoints every five minutes.
//! The active region's daemon does not check (nothing to compare with).

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::core::standby::{self, Described, Finding, Seen, Variant};
use crate::http::{ShutdownRx, shutdown_signalled};
use crate::ports::Ports;
use crate::state::Shared;

use super::journal::journal;

/// The endpoints of `region` by kind, in the order the checks report them.
fn endpoints(cfg: &Config, region: &str) -> [Option<String>; 3] {
    match cfg.region(region) {
        Some(r) => [
            r.sagemaker.provisioned.clone(),
            r.sagemaker.serverless.clone(),
            r.sagemaker.batch.clone(),
        ],
        None => [None, None, None],
    }
}

/// Read one endpoint: `DescribeEndpoint`, then what its variants run.
pub async fn observe(ports: &Ports, region: &str, endpoint: &str) -> Seen {
    let state = match ports.endpoints.describe(region, endpoint).await {
        Err(e) => Err(crate::error_chain(&e)),
        Ok(None) => Ok(None),
        Ok(Some(st)) => {
            let variants = match ports.endpoints.served(region, endpoint).await {
                Ok(Some(v)) => Ok(v
                    .into_iter()
                    .map(|v| Variant {
                        name: v.variant,
                        containers: v.containers,
                        instance_type: v.instance_type,
                    })
                    .collect()),
                Ok(None) => Err("gone between two reads".to_string()),
                Err(e) => Err(crate::error_chain(&e)),
            };
            let provisioned = st.provisioned();
            Ok(Some(Described {
                status: st.status.as_str().to_string(),
                serves: st.status.serves(),
                failure_reason: st.failure_reason.clone(),
                instances: (!provisioned.is_empty())
                    .then(|| provisioned.iter().map(|v| v.instances).sum()),
                variants,
            }))
        }
    };
    Seen {
        endpoint: endpoint.to_string(),
        state,
    }
}

/// One round for `cfg.region` against `active`: every finding, in
/// endpoint order. Empty when this region is the active one.
pub async fn check(cfg: &Config, ports: &Ports, active: &str, need: Option<u32>) -> Vec<Finding> {
    if active == cfg.region {
        return Vec::new();
    }
    let tier = cfg.cost.fleet_tier(&cfg.models);
    let theirs = endpoints(cfg, active);
    let mut out = Vec::new();
    for (i, mine) in endpoints(cfg, &cfg.region).into_iter().enumerate() {
        let Some(mine) = mine else { continue };
        let seen = observe(ports, &cfg.region, &mine).await;
        let other = match &theirs[i] {
            Some(e) => Some(observe(ports, active, e).await),
            None => None,
        };
        // The need is in instances of a provisioned endpoint; the other
        // kinds hold no count (the judge says so).
        out.extend(standby::judge(&seen, other.as_ref(), tier, need));
    }
    out
}

/// Each region's latest `readiness` journal line, ordered by region, from
/// journal entries given newest first (`failoverd status`, the status page).
pub fn latest_lines<'a>(
    newest_first: impl IntoIterator<Item = &'a crate::ports::store::Event>,
) -> Vec<&'a crate::ports::store::Event> {
    let mut latest: Vec<&crate::ports::store::Event> = Vec::new();
    for e in newest_first.into_iter().filter(|e| e.kind == "readiness") {
        if !latest.iter().any(|l| l.who == e.who) {
            latest.push(e);
        }
    }
    latest.sort_by(|a, b| a.who.cmp(&b.who));
    latest
}

/// The task: a round every `cost.readiness_interval` (the first one at
/// once after the reconcile loop has read a record), until shutdown.
pub struct StandbyTask {
    config: watch::Receiver<Arc<Config>>,
    ports: Ports,
    shared: Arc<Shared>,
    /// The last summary journalled, so only a change is.
    last: Option<String>,
}

impl StandbyTask {
    pub fn new(config: watch::Receiver<Arc<Config>>, ports: Ports, shared: Arc<Shared>) -> Self {
        Self {
            config,
            ports,
            shared,
            last: None,
        }
    }

    pub async fn run(mut self, mut shutdown: ShutdownRx) {
        // Woken every few seconds to notice a switch at once (a region that
        // became active has nothing to compare; a new active is the new
        // reference); otherwise a round every `cost.readiness_interval`,
        // on the monotonic clock.
        const NOTICE: std::time::Duration = std::time::Duration::from_secs(5);
        let mut n = 0u64;
        let mut checked: Option<(String, crate::core::mono::Mono)> = None;
        loop {
            let cfg = self.config.borrow().clone();
            let active = self
                .shared
                .read(|st| st.record.as_ref().map(|r| r.active.clone()));
            let now = self.ports.clock.mono();
            let due = match (&active, &checked) {
                (None, _) => false,
                (Some(a), Some((was, at))) => {
                    a != was || now.since(*at) >= cfg.cost.readiness_interval.as_millis() as u64
                }
                (Some(_), None) => true,
            };
            if let (true, Some(active)) = (due, active) {
                n += 1;
                tokio::select! {
                    biased;
                    _ = shutdown_signalled(&mut shutdown) => return,
                    () = self.round(&cfg, &active).instrument(info_span!("standby", n)) => {}
                }
                checked = Some((active, now));
            }
            tokio::select! {
                biased;
                _ = shutdown_signalled(&mut shutdown) => return,
                // Until the first record is read, look again soon.
                _ = tokio::time::sleep(if checked.is_none() {
                    std::time::Duration::from_millis(500)
                } else {
                    NOTICE.min(cfg.cost.readiness_interval)
                }) => {}
            }
        }
    }

    async fn round(&mut self, cfg: &Config, active: &str) {
        let pairs = super::cost::provisioned_everywhere(cfg);
        let need = crate::state::fleet_need(
            cfg,
            &self.shared,
            &super::cost::as_refs(&pairs),
            crate::metrics::counts::Now::of(&*self.ports.clock),
        );
        let findings = check(cfg, &self.ports, active, need).await;
        let summary = if active == cfg.region {
            "active: nothing to compare with".to_string()
        } else {
            standby::summary(&findings)
        };
        if self.last.as_deref() != Some(summary.as_str()) {
            if standby::worst(&findings) > standby::Severity::Info {
                warn!(%summary, "standby readiness");
            } else {
                info!(%summary, "standby readiness");
            }
            let detail = format!("{} against {active}: {summary}", cfg.region);
            journal(
                &*self.ports.store,
                self.ports.clock.now_ms(),
                &cfg.region,
                "readiness",
                None,
                detail,
            )
            .await;
            self.last = Some(summary);
        }
        self.shared.set_standby(findings);
        *self
            .shared
            .standby_round
            .lock()
            .unwrap_or_else(|p| p.into_inner()) =
            Some((active.to_string(), self.ports.clock.mono()));
    }
}

/// What this region's vote publishes of its readiness at `now`: the last
/// round's findings, against which active and how long ago; `None` before
/// the first round and while this region is the one judged against (the
/// active checks nothing).
pub fn published(
    region: &str,
    shared: &Shared,
    now: crate::core::mono::Mono,
) -> Option<standby::Published> {
    let (against, at) = shared
        .standby_round
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()?;
    if against == region {
        return None;
    }
    Some(standby::Published::of(
        &against,
        &shared.standby(),
        now.since(at),
    ))
}
