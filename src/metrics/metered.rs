//! Metering decorators: each port wrapped so that every call is counted in a
//! [`Meter`] (calls, failure kinds, latency), with what the caller cannot
//! see counted on the way (Route 53 readings and throttles, token claims and
//! callbacks, journal entries by kind).
//!
//! The daemon's code paths (reconcile, tokens, executor) carry no metric
//! calls: the daemon wraps its [`Ports`] once with [`wrap`] and everything
//! that goes through a port is metered, including code added later. The
//! simulation and the CLI use the ports unwrapped.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::meter::{Meter, Op, Reading, TokenEvent};
use crate::core::control::ControlRecord;
use crate::core::duty::{DutyItem, DutyWrite};
use crate::core::quorum::Vote;
use crate::core::record::RecordWrite;
use crate::core::tokens::TokenStatus;
use crate::ports::endpoints::{ComponentState, Deleted, EndpointState, EndpointStatus, WarmUp};
use crate::ports::health_checks::{CheckKind, CheckReading, MetricPoint};
use crate::ports::store::{Event, Page, PublishedReading, TokenItem, Write};
use crate::ports::workflows::{Callback, Execution, Started, arn_region};
use crate::ports::{
    Clock, ControlStore, Endpoints, ErrorKind, HealthChecks, PortError, Ports, Workflows,
};

/// Wrap every AWS-facing port of `ports` (the clock, entropy and probes are
/// not AWS and stay as they are).
pub fn wrap(ports: Ports, meter: Arc<Meter>) -> Ports {
    let clock = ports.clock.clone();
    let m = |p| Metered {
        inner: p,
        meter: meter.clone(),
        clock: clock.clone(),
    };
    let store: Arc<dyn ControlStore> = Arc::new(m(ports.store));
    let replicas = ports
        .replicas
        .into_iter()
        .map(|(region, s)| {
            let s: Arc<dyn ControlStore> = Arc::new(m(s));
            (region, s)
        })
        .collect();
    Ports {
        store,
        replicas,
        workflows: Arc::new(Metered {
            inner: ports.workflows,
            meter: meter.clone(),
            clock: clock.clone(),
        }),
        health_checks: Arc::new(Metered {
            inner: ports.health_checks,
            meter: meter.clone(),
            clock: clock.clone(),
        }),
        endpoints: Arc::new(Metered {
            inner: ports.endpoints,
            meter: meter.clone(),
            clock: clock.clone(),
        }),
        clock: ports.clock,
        entropy: ports.entropy,
        // Not metered: one read per standby endpoint per cost round, and
        // its failures show in the cost plan (`failoverd cost --dry-run`).
        endpoint_metrics: ports.endpoint_metrics,
        probes: ports.probes,
        capacity: Arc::new(Metered {
            inner: ports.capacity,
            meter,
            clock,
        }),
    }
}

/// A port `P` whose calls are counted in a [`Meter`].
pub struct Metered<P: ?Sized> {
    inner: Arc<P>,
    meter: Arc<Meter>,
    /// Wall time for "last successful reading" (monotonic time for latency).
    clock: Arc<dyn Clock>,
}

impl<P: ?Sized> Metered<P> {
    pub fn new(inner: Arc<P>, meter: Arc<Meter>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            meter,
            clock,
        }
    }

    /// Count one call that started at `t0` and ended with `r`.
    fn done<T>(&self, op: Op, region: &str, t0: Instant, r: &Result<T, PortError>) {
        self.meter.call(
            op,
            region,
            self.clock.since(t0),
            r.as_ref().err().map(|e| e.kind),
        );
    }
}

#[async_trait]
impl ControlStore for Metered<dyn ControlStore> {
    fn replica(&self) -> &str {
        self.inner.replica()
    }

    async fn read_record(&self) -> Result<Option<ControlRecord>, PortError> {
        let sent = self.clock.now_ms();
        let t0 = self.clock.monotonic();
        let r = self.inner.read_record().await;
        self.done(Op::ReadRecord, self.replica(), t0, &r);
        if let Ok(Some(rec)) = &r {
            // Stamped with the send: the record was current at some moment
            // after it, so its age is never understated.
            self.meter.saw_record(rec, sent);
        }
        r
    }

    async fn write_record(&self, w: &RecordWrite) -> Result<Write, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.write_record(w).await;
        self.done(Op::WriteRecord, self.replica(), t0, &r);
        r
    }

    async fn read_duty(&self, region: &str) -> Result<Option<DutyItem>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.read_duty(region).await;
        self.done(Op::ReadDuty, self.replica(), t0, &r);
        r
    }

    async fn write_duty(&self, w: &DutyWrite) -> Result<Write, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.write_duty(w).await;
        self.done(Op::WriteDuty, self.replica(), t0, &r);
        r
    }

    async fn put_vote(&self, v: &Vote) -> Result<(), PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.put_vote(v).await;
        self.done(Op::PutVote, self.replica(), t0, &r);
        r
    }

    async fn read_votes(&self) -> Result<Vec<Vote>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.read_votes().await;
        self.done(Op::ReadVotes, self.replica(), t0, &r);
        r
    }

    async fn put_reading(&self, p: &PublishedReading) -> Result<(), PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.put_reading(p).await;
        self.done(Op::PutReading, self.replica(), t0, &r);
        r
    }

    async fn read_readings(&self) -> Result<Vec<PublishedReading>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.read_readings().await;
        self.done(Op::ReadReadings, self.replica(), t0, &r);
        r
    }

    async fn pending_tokens(&self, region: &str, now: u64) -> Result<Vec<TokenItem>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.pending_tokens(region, now).await;
        self.done(Op::PendingTokens, self.replica(), t0, &r);
        r
    }

    async fn tokens(&self, limit: usize, now: u64) -> Result<Page<TokenItem>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.tokens(limit, now).await;
        self.done(Op::Tokens, self.replica(), t0, &r);
        r
    }

    async fn claim_token(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.claim_token(id, owner, now, claim_ms).await;
        self.done(Op::ClaimToken, self.replica(), t0, &r);
        // A renewed claim of our own is a claim too: the token workers
        // re-claim after a restart, which is a new claim of the work.
        if matches!(r, Ok(Write::Written)) {
            self.meter.token(TokenEvent::Claimed);
        }
        r
    }

    async fn extend_claim(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.extend_claim(id, owner, now, claim_ms).await;
        self.done(Op::ExtendClaim, self.replica(), t0, &r);
        r
    }

    async fn finish_token(
        &self,
        id: &str,
        status: TokenStatus,
        note: &str,
        now: u64,
    ) -> Result<Write, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.finish_token(id, status, note, now).await;
        self.done(Op::FinishToken, self.replica(), t0, &r);
        if status == TokenStatus::Expired && matches!(r, Ok(Write::Written)) {
            self.meter.token(TokenEvent::Expired);
        }
        r
    }

    async fn journal(&self, e: &Event) -> Result<(), PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.journal(e).await;
        self.done(Op::Journal, self.replica(), t0, &r);
        if r.is_ok() {
            self.meter.journal(&e.kind);
        }
        r
    }

    async fn events(&self, limit: usize, now: u64) -> Result<Page<Event>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.events(limit, now).await;
        self.done(Op::Events, self.replica(), t0, &r);
        r
    }
}

/// The region of a Step Functions ARN, for the label.
fn region_of(arn: &str) -> &str {
    arn_region(arn).unwrap_or("other")
}

#[async_trait]
impl Workflows for Metered<dyn Workflows> {
    async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<Started, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.start(state_machine_arn, name, input).await;
        self.done(Op::StartExecution, region_of(state_machine_arn), t0, &r);
        r
    }

    async fn describe(&self, execution_arn: &str) -> Result<Execution, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.describe(execution_arn).await;
        self.done(Op::DescribeExecution, region_of(execution_arn), t0, &r);
        r
    }

    async fn stop(&self, execution_arn: &str, cause: &str) -> Result<(), PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.stop(execution_arn, cause).await;
        self.done(Op::StopExecution, region_of(execution_arn), t0, &r);
        r
    }

    async fn send_task_success(
        &self,
        region: &str,
        token: &str,
        output: &str,
    ) -> Result<Callback, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.send_task_success(region, token, output).await;
        self.done(Op::SendTaskSuccess, region, t0, &r);
        match r {
            Ok(Callback::Accepted) => self.meter.token(TokenEvent::Succeeded),
            Ok(Callback::AlreadyClosed) => self.meter.token(TokenEvent::AlreadyClosed),
            Err(_) => {}
        }
        r
    }

    async fn send_task_failure(
        &self,
        region: &str,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<Callback, PortError> {
        let t0 = self.clock.monotonic();
        let r = self
            .inner
            .send_task_failure(region, token, error, cause)
            .await;
        self.done(Op::SendTaskFailure, region, t0, &r);
        match r {
            Ok(Callback::Accepted) => self.meter.token(TokenEvent::Failed),
            Ok(Callback::AlreadyClosed) => self.meter.token(TokenEvent::AlreadyClosed),
            Err(_) => {}
        }
        r
    }

    async fn send_task_heartbeat(&self, region: &str, token: &str) -> Result<Callback, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.send_task_heartbeat(region, token).await;
        self.done(Op::SendTaskHeartbeat, region, t0, &r);
        r
    }
}

/// Route 53 is a global service whose control plane is in us-east-1: its
/// calls are labelled with that region.
const ROUTE53_REGION: &str = "us-east-1";

#[async_trait]
impl HealthChecks for Metered<dyn HealthChecks> {
    async fn read(&self, id: &str) -> Result<CheckReading, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.read(id).await;
        self.done(Op::ReadHealthCheck, ROUTE53_REGION, t0, &r);
        let reading = match &r {
            Ok(_) => Reading::Ok,
            Err(e) if e.kind == ErrorKind::Throttled => Reading::Throttled,
            Err(_) => Reading::Error,
        };
        self.meter.reading(reading, self.clock.now_ms());
        r
    }

    async fn kind(&self, id: &str) -> Result<CheckKind, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.kind(id).await;
        self.done(Op::HealthCheckKind, ROUTE53_REGION, t0, &r);
        r
    }

    async fn status_metrics(
        &self,
        ids: &[String],
        start_ms: u64,
        end_ms: u64,
        period_secs: u32,
    ) -> Result<std::collections::BTreeMap<String, Option<MetricPoint>>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self
            .inner
            .status_metrics(ids, start_ms, end_ms, period_secs)
            .await;
        // CloudWatch in us-east-1, where Route 53 publishes its metrics.
        self.done(Op::ReadHealthCheckMetrics, ROUTE53_REGION, t0, &r);
        let reading = match &r {
            Ok(_) => Reading::Ok,
            Err(e) if e.kind == ErrorKind::Throttled => Reading::Throttled,
            Err(_) => Reading::Error,
        };
        self.meter.reading(reading, self.clock.now_ms());
        r
    }
}

#[async_trait]
impl Endpoints for Metered<dyn Endpoints> {
    async fn served(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<Vec<crate::ports::endpoints::ServedVariant>>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.served(region, endpoint).await;
        self.done(Op::DescribeServed, region, t0, &r);
        r
    }

    async fn status(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointStatus>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.status(region, endpoint).await;
        self.done(Op::EndpointStatus, region, t0, &r);
        r
    }

    async fn warm_up(
        &self,
        region: &str,
        endpoint: &str,
        target_model: Option<&str>,
        body: &[u8],
    ) -> WarmUp {
        let t0 = self.clock.monotonic();
        let w = self
            .inner
            .warm_up(region, endpoint, target_model, body)
            .await;
        let failure = match &w {
            WarmUp::Answered { .. } => None,
            WarmUp::NotReady { kind, .. } => Some(*kind),
            WarmUp::Refused { .. } => Some(ErrorKind::Other),
        };
        self.meter
            .call(Op::WarmUp, region, self.clock.since(t0), failure);
        w
    }

    async fn warm_up_target(
        &self,
        region: &str,
        endpoint: &str,
        via: Option<&crate::config::Via>,
        body: &[u8],
    ) -> WarmUp {
        let t0 = self.clock.monotonic();
        let w = self.inner.warm_up_target(region, endpoint, via, body).await;
        let failure = match &w {
            WarmUp::Answered { .. } => None,
            WarmUp::NotReady { kind, .. } => Some(*kind),
            WarmUp::Refused { .. } => Some(ErrorKind::Other),
        };
        self.meter
            .call(Op::WarmUp, region, self.clock.since(t0), failure);
        w
    }

    async fn describe(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointState>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.describe(region, endpoint).await;
        self.done(Op::DescribeEndpoint, region, t0, &r);
        r
    }

    async fn set_instance_counts(
        &self,
        region: &str,
        endpoint: &str,
        counts: &[(String, u32)],
    ) -> Result<(), PortError> {
        let t0 = self.clock.monotonic();
        let r = self
            .inner
            .set_instance_counts(region, endpoint, counts)
            .await;
        self.done(Op::SetInstanceCounts, region, t0, &r);
        r
    }

    async fn tags(&self, region: &str, arn: &str) -> Result<Vec<(String, String)>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.tags(region, arn).await;
        self.done(Op::ListTags, region, t0, &r);
        r
    }

    async fn delete(&self, region: &str, endpoint: &str) -> Result<Deleted, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.delete(region, endpoint).await;
        self.done(Op::DeleteEndpoint, region, t0, &r);
        r
    }

    async fn describe_component(
        &self,
        region: &str,
        component: &str,
    ) -> Result<Option<ComponentState>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.describe_component(region, component).await;
        self.done(Op::DescribeComponent, region, t0, &r);
        r
    }

    async fn model_containers(
        &self,
        region: &str,
        model: &str,
    ) -> Result<Option<Vec<(String, Option<String>)>>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.model_containers(region, model).await;
        self.done(Op::DescribeModel, region, t0, &r);
        r
    }

    async fn components_on(&self, region: &str, endpoint: &str) -> Result<Vec<String>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.components_on(region, endpoint).await;
        self.done(Op::ListComponents, region, t0, &r);
        r
    }

    async fn set_copy_count(
        &self,
        region: &str,
        component: &str,
        copies: u32,
    ) -> Result<(), PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.set_copy_count(region, component, copies).await;
        self.done(Op::SetCopyCount, region, t0, &r);
        r
    }
}

#[async_trait]
impl crate::ports::capacity::Capacity for Metered<dyn crate::ports::capacity::Capacity> {
    async fn scalable_variants(
        &self,
        region: &str,
        endpoint: &str,
        variants: &[String],
    ) -> Result<Vec<crate::ports::capacity::ScalableVariant>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self
            .inner
            .scalable_variants(region, endpoint, variants)
            .await;
        self.done(Op::DescribeScalableTargets, region, t0, &r);
        r
    }

    async fn endpoint_quotas(
        &self,
        region: &str,
    ) -> Result<std::collections::BTreeMap<String, f64>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.endpoint_quotas(region).await;
        self.done(Op::ListServiceQuotas, region, t0, &r);
        r
    }

    async fn own_principal(&self, region: &str) -> Result<String, PortError> {
        let t0 = self.clock.monotonic();
        let r = self.inner.own_principal(region).await;
        self.done(Op::OwnPrincipal, region, t0, &r);
        r
    }

    async fn simulate(
        &self,
        region: &str,
        principal: &str,
        actions: &[&str],
        resources: &[String],
    ) -> Result<Vec<crate::ports::capacity::Judged>, PortError> {
        let t0 = self.clock.monotonic();
        let r = self
            .inner
            .simulate(region, principal, actions, resources)
            .await;
        self.done(Op::SimulatePolicy, region, t0, &r);
        r
    }
}
