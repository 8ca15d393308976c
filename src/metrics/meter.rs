//! The control side's own counters: what the reconcile loop, the token
//! workers and the executor did, for `/metrics` (the router keeps its own
//! registry, `router::metrics`).
//!
//! Fed from two places, so the daemon's code paths stay free of metric
//! calls:
//! - the metering decorators (`metrics::metered`) around every port count each
//!   call, its failure kind and latency, Route 53 readings, token claims and
//!   callbacks, and journal entries by kind as they are written;
//! - [`Meter::observe_round`], called by `state::Shared::publish` with the
//!   round before and the round after, counts rounds, their duration and the
//!   failovers this daemon saw start and end in the control record.
//!
//! Like the router's registry: fixed tables of `AtomicU64` indexed by enums
//! whose every value is known at start (services, operations, error kinds,
//! regions from the configuration plus `other`), so label sets are bounded
//! and the hot path never locks or allocates. We rejected the `prometheus`
//! crate for the same reasons the router did.
//!
//! Failovers are counted from the record because a failover has several
//! authors (a daemon or an operator's CLI claims it, the workflow moves it,
//! any daemon may settle it): every daemon sees the record, so every daemon
//! counts every failover it sees. Aggregate with `max` across a fleet, not
//! `sum`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::core::control::{ControlRecord, Phase, ProposalState, Step};
use crate::ports::ErrorKind;

/// The AWS service behind a port call (the `service` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    DynamoDb,
    StepFunctions,
    Route53,
    SageMaker,
    SageMakerRuntime,
    CloudWatch,
    ApplicationAutoScaling,
    ServiceQuotas,
    /// IAM's policy simulator and STS's caller identity (readiness's dry run).
    Iam,
}

impl Service {
    pub const ALL: [Service; 9] = [
        Service::DynamoDb,
        Service::StepFunctions,
        Service::Route53,
        Service::SageMaker,
        Service::SageMakerRuntime,
        Service::CloudWatch,
        Service::ApplicationAutoScaling,
        Service::ServiceQuotas,
        Service::Iam,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::DynamoDb => "dynamodb",
            Service::StepFunctions => "stepfunctions",
            Service::Route53 => "route53",
            Service::SageMaker => "sagemaker",
            Service::SageMakerRuntime => "sagemaker_runtime",
            Service::CloudWatch => "cloudwatch",
            Service::ApplicationAutoScaling => "application_autoscaling",
            Service::ServiceQuotas => "service_quotas",
            Service::Iam => "iam",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One port method (the `operation` label): what the daemon asked for. One
/// call may issue several AWS requests (a paginated query, GetHealthCheck
/// then GetHealthCheckStatus, the SDK's own retries); this counts the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ReadRecord,
    WriteRecord,
    /// The region's duty item (`core::duty`): read and conditional write.
    ReadDuty,
    WriteDuty,
    PutVote,
    ReadVotes,
    PutReading,
    ReadReadings,
    PendingTokens,
    Tokens,
    ClaimToken,
    ExtendClaim,
    FinishToken,
    Journal,
    Events,
    StartExecution,
    DescribeExecution,
    StopExecution,
    SendTaskSuccess,
    SendTaskFailure,
    SendTaskHeartbeat,
    ReadHealthCheck,
    HealthCheckKind,
    /// One GetMetricData of every check's `HealthCheckStatus` (billed per
    /// check in it: `core::bill`).
    ReadHealthCheckMetrics,
    EndpointStatus,
    WarmUp,
    DescribeEndpoint,
    SetInstanceCounts,
    ListTags,
    DeleteEndpoint,
    /// `DescribeEndpointConfig` and `DescribeModel` behind one
    /// [`Endpoints::served`](crate::ports::Endpoints::served).
    DescribeServed,
    /// Application Auto Scaling's scalable targets of an endpoint's
    /// variants (readiness).
    DescribeScalableTargets,
    /// Service Quotas' applied SageMaker quotas, every page (readiness).
    ListServiceQuotas,
    /// `DescribeInferenceComponent`.
    DescribeComponent,
    /// `UpdateInferenceComponentRuntimeConfig` (a copy count).
    SetCopyCount,
    /// `ListInferenceComponents` of one endpoint, every page (idle
    /// detection's CloudWatch read names each component).
    ListComponents,
    /// `DescribeModel` of the model an inference component runs
    /// (readiness).
    DescribeModel,
    /// STS `GetCallerIdentity`: whose policies readiness simulates.
    OwnPrincipal,
    /// IAM `SimulatePrincipalPolicy`, every page (readiness's dry run).
    SimulatePolicy,
}

impl Op {
    pub const ALL: [Op; 39] = [
        Op::ReadRecord,
        Op::WriteRecord,
        Op::ReadDuty,
        Op::WriteDuty,
        Op::PutVote,
        Op::ReadVotes,
        Op::PutReading,
        Op::ReadReadings,
        Op::PendingTokens,
        Op::Tokens,
        Op::ClaimToken,
        Op::ExtendClaim,
        Op::FinishToken,
        Op::Journal,
        Op::Events,
        Op::StartExecution,
        Op::DescribeExecution,
        Op::StopExecution,
        Op::SendTaskSuccess,
        Op::SendTaskFailure,
        Op::SendTaskHeartbeat,
        Op::ReadHealthCheck,
        Op::HealthCheckKind,
        Op::ReadHealthCheckMetrics,
        Op::EndpointStatus,
        Op::WarmUp,
        Op::DescribeEndpoint,
        Op::SetInstanceCounts,
        Op::ListTags,
        Op::DeleteEndpoint,
        Op::DescribeServed,
        Op::DescribeScalableTargets,
        Op::ListServiceQuotas,
        Op::DescribeComponent,
        Op::SetCopyCount,
        Op::ListComponents,
        Op::DescribeModel,
        Op::OwnPrincipal,
        Op::SimulatePolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::ReadRecord => "read_record",
            Op::WriteRecord => "write_record",
            Op::ReadDuty => "read_duty",
            Op::WriteDuty => "write_duty",
            Op::PutVote => "put_vote",
            Op::ReadVotes => "read_votes",
            Op::PutReading => "put_reading",
            Op::ReadReadings => "read_readings",
            Op::PendingTokens => "pending_tokens",
            Op::Tokens => "tokens",
            Op::ClaimToken => "claim_token",
            Op::ExtendClaim => "extend_claim",
            Op::FinishToken => "finish_token",
            Op::Journal => "journal",
            Op::Events => "events",
            Op::StartExecution => "start_execution",
            Op::DescribeExecution => "describe_execution",
            Op::StopExecution => "stop_execution",
            Op::SendTaskSuccess => "send_task_success",
            Op::SendTaskFailure => "send_task_failure",
            Op::SendTaskHeartbeat => "send_task_heartbeat",
            Op::ReadHealthCheck => "read_health_check",
            Op::HealthCheckKind => "health_check_kind",
            Op::ReadHealthCheckMetrics => "read_health_check_metrics",
            Op::EndpointStatus => "endpoint_status",
            Op::WarmUp => "warm_up",
            Op::DescribeEndpoint => "describe_endpoint",
            Op::SetInstanceCounts => "set_instance_counts",
            Op::ListTags => "list_tags",
            Op::DeleteEndpoint => "delete_endpoint",
            Op::DescribeServed => "describe_served",
            Op::DescribeScalableTargets => "describe_scalable_targets",
            Op::ListServiceQuotas => "list_service_quotas",
            Op::DescribeComponent => "describe_component",
            Op::SetCopyCount => "set_copy_count",
            Op::ListComponents => "list_components",
            Op::DescribeModel => "describe_model",
            Op::OwnPrincipal => "own_principal",
            Op::SimulatePolicy => "simulate_policy",
        }
    }

    /// The service the call goes to.
    pub fn service(self) -> Service {
        match self {
            Op::ReadRecord
            | Op::WriteRecord
            | Op::ReadDuty
            | Op::WriteDuty
            | Op::PutVote
            | Op::ReadVotes
            | Op::PutReading
            | Op::ReadReadings
            | Op::PendingTokens
            | Op::Tokens
            | Op::ClaimToken
            | Op::ExtendClaim
            | Op::FinishToken
            | Op::Journal
            | Op::Events => Service::DynamoDb,
            Op::StartExecution
            | Op::DescribeExecution
            | Op::StopExecution
            | Op::SendTaskSuccess
            | Op::SendTaskFailure
            | Op::SendTaskHeartbeat => Service::StepFunctions,
            Op::ReadHealthCheck | Op::HealthCheckKind => Service::Route53,
            Op::ReadHealthCheckMetrics => Service::CloudWatch,
            Op::EndpointStatus
            | Op::DescribeEndpoint
            | Op::SetInstanceCounts
            | Op::ListTags
            | Op::DeleteEndpoint
            | Op::DescribeServed
            | Op::DescribeComponent
            | Op::SetCopyCount
            | Op::ListComponents
            | Op::DescribeModel => Service::SageMaker,
            Op::WarmUp => Service::SageMakerRuntime,
            Op::DescribeScalableTargets => Service::ApplicationAutoScaling,
            Op::ListServiceQuotas => Service::ServiceQuotas,
            Op::OwnPrincipal | Op::SimulatePolicy => Service::Iam,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const KINDS: [ErrorKind; 9] = [
    ErrorKind::Throttled,
    ErrorKind::Conflict,
    ErrorKind::NotFound,
    ErrorKind::AccessDenied,
    ErrorKind::Validation,
    ErrorKind::Unavailable,
    ErrorKind::Transport,
    ErrorKind::Malformed,
    ErrorKind::Other,
];

fn kind_index(k: ErrorKind) -> usize {
    KINDS
        .iter()
        .position(|x| *x == k)
        .unwrap_or(KINDS.len() - 1)
}

/// How a Route 53 reading by this daemon went (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Ok,
    Throttled,
    Error,
}

const READINGS: [&str; 3] = ["ok", "throttled", "error"];

/// A task-token event (the `event` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent {
    /// This daemon claimed a token.
    Claimed,
    /// SendTaskSuccess accepted.
    Succeeded,
    /// SendTaskFailure accepted (the step refused, e.g. a target that
    /// cannot serve).
    Failed,
    /// The task was already closed when called back.
    AlreadyClosed,
    /// Closed as expired (unclaimed or unfinished past its timeout).
    Expired,
}

const TOKEN_EVENTS: [&str; 5] = [
    "claimed",
    "succeeded",
    "failed",
    "already_closed",
    "expired",
];

/// Journal kinds this daemon writes (the `kind` label); anything else is
/// `other`, so a new kind never grows the label set unseen.
pub const JOURNAL_KINDS: [&str; 18] = [
    "initialized",
    "failover_proposed",
    "proposal_approved",
    "proposal_rejected",
    "proposal_expired",
    "proposal_withdrawn",
    "failover_claimed",
    "failover_lost_race",
    "execution_started",
    "settled",
    "mode",
    "observed_down",
    "observed_up",
    "decision",
    "token_claimed",
    "token_done",
    "token_expired",
    "other",
];

/// Failover events (the `event` label) and what started them (`trigger`).
const FAILOVER_EVENTS: [&str; 3] = ["started", "completed", "aborted"];
const TRIGGERS: [&str; 2] = ["automatic", "operator"];

/// Latency buckets for port calls, seconds.
pub const CALL_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Round duration buckets, seconds (a round should end well within
/// `poll_interval`; rounds blocked on a black-holed endpoint run to the
/// SDK's 15 s operation timeout).
pub const ROUND_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0,
];

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// A fixed-bucket histogram (per-bucket counts; cumulated when rendered).
struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: counters(bounds.len() + 1),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let b = self
            .bounds
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(self.bounds.len());
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}\n{name}_count{braces} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// What this daemon has seen of the failovers in the record.
#[derive(Debug, Default)]
struct FailoverWatch {
    /// The last epoch seen, and what started it.
    epoch: Option<u64>,
    trigger: usize,
    /// Whether the end of `epoch`'s failover has been counted.
    ended: bool,
}

/// The registry.
pub struct Meter {
    /// Configured regions, then `other`.
    regions: Vec<String>,
    /// [op][region]
    calls: Box<[AtomicU64]>,
    /// [op][region][kind]
    errors: Box<[AtomicU64]>,
    /// per service
    latency: Vec<Histogram>,
    readings: Box<[AtomicU64]>,
    /// Unix ms of this daemon's last successful Route 53 reading.
    last_reading_ms: AtomicU64,
    tokens: Box<[AtomicU64]>,
    journal: Box<[AtomicU64]>,
    /// [event][trigger]
    failovers: Box<[AtomicU64]>,
    rounds: Histogram,
    watch: Mutex<FailoverWatch>,
    /// The epoch of the failover proposed and awaiting approval in the last
    /// record read (0: none).
    proposed_epoch: AtomicU64,
    /// The newest control record any of this daemon's reads returned.
    newest: Mutex<Option<SeenRecord>>,
}

/// A control record as one of this daemon's reads returned it, and when
/// (unix ms, this daemon's clock).
#[derive(Debug, Clone)]
pub struct SeenRecord {
    pub record: ControlRecord,
    pub read_at: u64,
}

impl SeenRecord {
    /// Is `other` (read at `other_at`) newer than this one? Within one
    /// incarnation the record only moves forward, so the higher version
    /// wins whatever order the reads came back in; across incarnations (a
    /// recreated table) the later read wins.
    pub fn replaced_by(&self, other: &ControlRecord, other_at: u64) -> bool {
        if self.record.incarnation == other.incarnation {
            other.version > self.record.version
                || (other.version == self.record.version && other_at > self.read_at)
        } else {
            other_at >= self.read_at
        }
    }
}

impl Default for Meter {
    /// A registry with no configured regions (every region is `other`).
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Meter {
    /// A registry for `regions` (the configuration's, in order).
    pub fn new(regions: &[String]) -> Self {
        let mut regions = regions.to_vec();
        regions.push("other".into());
        let r = regions.len();
        Self {
            calls: counters(Op::ALL.len() * r),
            errors: counters(Op::ALL.len() * r * KINDS.len()),
            latency: Service::ALL
                .iter()
                .map(|_| Histogram::new(&CALL_BUCKETS))
                .collect(),
            readings: counters(READINGS.len()),
            last_reading_ms: AtomicU64::new(0),
            tokens: counters(TOKEN_EVENTS.len()),
            journal: counters(JOURNAL_KINDS.len()),
            failovers: counters(FAILOVER_EVENTS.len() * TRIGGERS.len()),
            rounds: Histogram::new(&ROUND_BUCKETS),
            watch: Mutex::default(),
            proposed_epoch: AtomicU64::new(0),
            newest: Mutex::default(),
            regions,
        }
    }

    fn region_index(&self, region: &str) -> usize {
        self.regions
            .iter()
            .position(|x| x == region)
            .unwrap_or(self.regions.len() - 1)
    }

    /// One port call to `region` that took `took`, and its failure kind.
    pub fn call(&self, op: Op, region: &str, took: Duration, failure: Option<ErrorKind>) {
        let r = self.regions.len();
        let i = op.index() * r + self.region_index(region);
        self.calls[i].fetch_add(1, Ordering::Relaxed);
        if let Some(k) = failure {
            self.errors[i * KINDS.len() + kind_index(k)].fetch_add(1, Ordering::Relaxed);
        }
        self.latency[op.service().index()].observe(took);
    }

    /// A Route 53 reading by this daemon, at `now_ms` on its clock.
    pub fn reading(&self, r: Reading, now_ms: u64) {
        self.readings[r as usize].fetch_add(1, Ordering::Relaxed);
        if r == Reading::Ok {
            self.last_reading_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
    }

    pub fn token(&self, e: TokenEvent) {
        self.tokens[e as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A journal entry of `kind` was written.
    pub fn journal(&self, kind: &str) {
        let i = JOURNAL_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(JOURNAL_KINDS.len() - 1);
        self.journal[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Journal entries of `kind` written so far (for tests).
    pub fn journal_count(&self, kind: &str) -> u64 {
        JOURNAL_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.journal[i].load(Ordering::Relaxed))
    }

    /// Failovers counted with `event` (`started`, `completed`, `aborted`),
    /// both triggers (for tests and the status page).
    pub fn failover_count(&self, event: &str) -> u64 {
        FAILOVER_EVENTS
            .iter()
            .position(|e| *e == event)
            .map_or(0, |e| {
                (0..TRIGGERS.len())
                    .map(|t| self.failovers[e * TRIGGERS.len() + t].load(Ordering::Relaxed))
                    .sum()
            })
    }

    /// One of this daemon's reads returned `record` at `read_at`: kept if it
    /// is the newest seen. Every read through a metered store lands here
    /// (the round's, the operator API's, the journal view's, prepare's),
    /// so what the daemon shows is never older than what it last read.
    pub fn saw_record(&self, record: &ControlRecord, read_at: u64) {
        let mut cur = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        if cur.as_ref().is_none_or(|c| c.replaced_by(record, read_at)) {
            *cur = Some(SeenRecord {
                record: record.clone(),
                read_at,
            });
        }
    }

    /// The newest control record this daemon has read, and when.
    pub fn newest_record(&self) -> Option<SeenRecord> {
        self.newest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Account for one published round: `new_round` when it is not the
    /// same round published again, `took_ms` its duration, `record` the
    /// record it read.
    pub fn observe_round(&self, new_round: bool, took_ms: u64, record: Option<&ControlRecord>) {
        if new_round {
            self.rounds.observe(Duration::from_millis(took_ms));
        }
        if let Some(r) = record {
            let mut w = self.watch.lock().unwrap_or_else(|p| p.into_inner());
            self.watch_record(&mut w, r);
            let proposed = r
                .proposal
                .as_ref()
                .filter(|p| p.state == ProposalState::Proposed)
                .map_or(0, |p| p.epoch);
            self.proposed_epoch.store(proposed, Ordering::Relaxed);
        }
    }

    fn watch_record(&self, w: &mut FailoverWatch, r: &ControlRecord) {
        let count = |event: usize, trigger: usize| {
            self.failovers[event * TRIGGERS.len() + trigger].fetch_add(1, Ordering::Relaxed);
        };
        // Epoch 1 is the initial record, not a failover.
        let is_failover = r.epoch > 1 && r.execution.is_some();
        match w.epoch {
            // First sight: count nothing already under way or done before
            // this daemon started, only what happens from now on.
            None => {
                w.epoch = Some(r.epoch);
                w.trigger = trigger(r);
                w.ended = r.phase == Phase::Steady;
            }
            Some(seen) if r.epoch > seen => {
                w.epoch = Some(r.epoch);
                w.trigger = trigger(r);
                w.ended = false;
                if is_failover {
                    count(0, w.trigger);
                }
            }
            Some(_) => {}
        }
        if !w.ended && r.phase == Phase::Steady && Some(r.epoch) == w.epoch && is_failover {
            w.ended = true;
            match r.step {
                Step::Done => count(1, w.trigger),
                Step::Aborted => count(2, w.trigger),
                _ => {}
            }
        }
    }

    /// Render every series in the Prometheus text format (0.0.4).
    pub fn render(&self, out: &mut String) {
        let r = self.regions.len();
        header(
            out,
            "failoverd_aws_calls_total",
            "counter",
            "Calls from the control side to AWS, by service, operation (the daemon's call; one may issue several requests) and region.",
        );
        for (i, c) in self.calls.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v != 0 {
                let op = Op::ALL[i / r];
                let _ = writeln!(
                    out,
                    "failoverd_aws_calls_total{{service=\"{}\",operation=\"{}\",region=\"{}\"}} {v}",
                    op.service().as_str(),
                    op.as_str(),
                    self.regions[i % r]
                );
            }
        }
        header(
            out,
            "failoverd_aws_errors_total",
            "counter",
            "Failed calls from the control side to AWS, by service, operation, region and failure kind (throttled, conflict, not_found, access_denied, validation, unavailable, transport, malformed, other).",
        );
        for (i, c) in self.errors.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v != 0 {
                let k = i % KINDS.len();
                let rest = i / KINDS.len();
                let op = Op::ALL[rest / r];
                let _ = writeln!(
                    out,
                    "failoverd_aws_errors_total{{service=\"{}\",operation=\"{}\",region=\"{}\",kind=\"{}\"}} {v}",
                    op.service().as_str(),
                    op.as_str(),
                    self.regions[rest % r],
                    KINDS[k].as_str()
                );
            }
        }
        header(
            out,
            "failoverd_aws_call_duration_seconds",
            "histogram",
            "Time a control-side call to AWS took, SDK retries included, by service.",
        );
        for s in Service::ALL {
            self.latency[s.index()].render(
                out,
                "failoverd_aws_call_duration_seconds",
                &format!("service=\"{}\"", s.as_str()),
            );
        }
        header(
            out,
            "failoverd_route53_readings_total",
            "counter",
            "Route 53 health-check readings this daemon made in its turn of the fleet's budget, by result (ok, throttled, error).",
        );
        for (i, name) in READINGS.iter().enumerate() {
            let _ = writeln!(
                out,
                "failoverd_route53_readings_total{{result=\"{name}\"}} {}",
                self.readings[i].load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "failoverd_route53_last_reading_timestamp_seconds",
            "gauge",
            "Unix time of this daemon's last successful Route 53 reading (0: none since start).",
        );
        let _ = writeln!(
            out,
            "failoverd_route53_last_reading_timestamp_seconds {}",
            self.last_reading_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        header(
            out,
            "failoverd_tokens_total",
            "counter",
            "Task tokens this daemon handled, by event (claimed, succeeded, failed, already_closed, expired).",
        );
        for (i, name) in TOKEN_EVENTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "failoverd_tokens_total{{event=\"{name}\"}} {}",
                self.tokens[i].load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "failoverd_journal_entries_total",
            "counter",
            "Journal entries this daemon wrote, by kind (the workflow's own entries are not counted here).",
        );
        for (i, name) in JOURNAL_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "failoverd_journal_entries_total{{kind=\"{name}\"}} {}",
                self.journal[i].load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "failoverd_failovers_total",
            "counter",
            "Failovers this daemon saw in the control record since it started, by event (started, completed, aborted) and trigger (automatic, operator). Every daemon counts every failover: aggregate with max, not sum.",
        );
        for (e, event) in FAILOVER_EVENTS.iter().enumerate() {
            for (t, trig) in TRIGGERS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "failoverd_failovers_total{{event=\"{event}\",trigger=\"{trig}\"}} {}",
                    self.failovers[e * TRIGGERS.len() + t].load(Ordering::Relaxed)
                );
            }
        }
        header(
            out,
            "failoverd_failover_proposed_epoch",
            "gauge",
            "The epoch of the automatic failover proposed and awaiting approval (policy.approval = manual) in the control record this daemon last read; 0 when none awaits. Approve with `failoverd approve --epoch N` (it shows the target and the proposal id and asks).",
        );
        let _ = writeln!(
            out,
            "failoverd_failover_proposed_epoch {}",
            self.proposed_epoch.load(Ordering::Relaxed)
        );
        header(
            out,
            "failoverd_round_duration_seconds",
            "histogram",
            "Time one reconcile round took (collect, vote, decide, act, tokens).",
        );
        self.rounds
            .render(out, "failoverd_round_duration_seconds", "");
    }
}

/// What started the failover a record is in: an operator (`operator:...`)
/// or a daemon (a region name).
fn trigger(r: &ControlRecord) -> usize {
    usize::from(r.changed_by.starts_with("operator:"))
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escape a Prometheus label value (backslash, double quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a published round tells the meter.
    #[derive(Debug, Clone, Default)]
    struct RoundStatus {
        round: u64,
        took_ms: u64,
        record: Option<ControlRecord>,
    }

    fn observe(m: &Meter, prev: &RoundStatus, next: &RoundStatus) {
        m.observe_round(next.round != prev.round, next.took_ms, next.record.as_ref());
    }
    use crate::core::control::Mode;

    fn record(epoch: u64, phase: Phase, step: Step, by: &str) -> ControlRecord {
        ControlRecord {
            version: epoch * 10,
            incarnation: "i".into(),
            epoch,
            active: "us-east-1".into(),
            mode: Mode::Auto,
            phase,
            target: None,
            execution: (epoch > 1).then(|| format!("failover-i-{epoch}")),
            initiator: None,
            state_machine: None,
            previous: None,
            changed_by: by.into(),
            changed_at: 0,
            reason: String::new(),
            last_failover_at: None,
            switched_at: None,
            step,
            aborts: 0,
            ungraceful: false,
            old_region_healthy: true,
            forced: false,
            proposal: None,
        }
    }

    fn round(n: u64, r: ControlRecord) -> RoundStatus {
        RoundStatus {
            round: n,
            took_ms: 30,
            record: Some(r),
        }
    }

    #[test]
    fn the_newest_record_read_wins_whatever_order_reads_return() {
        let m = Meter::new(&[]);
        assert!(m.newest_record().is_none());
        let old = record(1, Phase::Steady, Step::Done, "us-east-1");
        let mut new = record(2, Phase::Steady, Step::Done, "us-west-2");
        new.active = "us-west-2".into();
        m.saw_record(&new, 200);
        // A slower read sent earlier returns the older version afterwards.
        m.saw_record(&old, 300);
        let seen = m.newest_record().unwrap();
        assert_eq!(
            (seen.record.active.as_str(), seen.read_at),
            ("us-west-2", 200)
        );
        // The same version read again refreshes its age.
        m.saw_record(&new, 400);
        assert_eq!(m.newest_record().unwrap().read_at, 400);
        // A recreated table (another incarnation) starts over at its own
        // versions: the later read wins.
        let mut again = record(1, Phase::Steady, Step::Done, "us-east-1");
        again.incarnation = "j".into();
        m.saw_record(&again, 500);
        assert_eq!(m.newest_record().unwrap().record.incarnation, "j");
    }

    #[test]
    fn a_proposal_awaiting_approval_shows_its_epoch() {
        use crate::core::control::Proposal;
        let m = Meter::new(&["us-east-1".into()]);
        let mut r = record(3, Phase::Steady, Step::Done, "us-west-2");
        let gauge = |m: &Meter| {
            let mut text = String::new();
            m.render(&mut text);
            text.lines()
                .find(|l| l.starts_with("failoverd_failover_proposed_epoch "))
                .map(str::to_string)
        };
        observe(&m, &RoundStatus::default(), &round(1, r.clone()));
        assert_eq!(
            gauge(&m).as_deref(),
            Some("failoverd_failover_proposed_epoch 0")
        );
        r.proposal = Some(Proposal {
            id: "8-000000".into(),
            epoch: 4,
            from: "us-west-2".into(),
            target: "us-east-1".into(),
            proposer: "us-east-1".into(),
            proposed_at: 0,
            reason: String::new(),
            state: ProposalState::Proposed,
            decided_by: None,
            decided_at: None,
            decision: None,
        });
        observe(&m, &round(1, r.clone()), &round(2, r.clone()));
        assert_eq!(
            gauge(&m).as_deref(),
            Some("failoverd_failover_proposed_epoch 4")
        );
        // Decided: nothing awaits any more.
        r.proposal.as_mut().unwrap().state = ProposalState::Rejected;
        observe(&m, &round(2, r.clone()), &round(3, r));
        assert_eq!(
            gauge(&m).as_deref(),
            Some("failoverd_failover_proposed_epoch 0")
        );
    }

    #[test]
    fn failovers_are_counted_once_from_the_record() {
        let m = Meter::new(&["us-east-1".into()]);
        let seq = [
            record(1, Phase::Steady, Step::Init, "us-east-1"),
            record(2, Phase::FailingOver, Step::Claimed, "us-west-2"),
            record(2, Phase::FailingOver, Step::Switched, "us-west-2"),
            record(2, Phase::Steady, Step::Done, "us-west-2"),
            record(2, Phase::Steady, Step::Done, "us-west-2"),
            // An operator's failover, seen only once it had ended.
            record(3, Phase::Steady, Step::Aborted, "operator:alice"),
        ];
        let mut prev = RoundStatus::default();
        for (i, r) in seq.into_iter().enumerate() {
            let next = round(i as u64 + 1, r);
            observe(&m, &prev, &next);
            prev = next;
        }
        let mut text = String::new();
        m.render(&mut text);
        assert!(
            text.contains("failoverd_failovers_total{event=\"started\",trigger=\"automatic\"} 1")
        );
        assert!(
            text.contains("failoverd_failovers_total{event=\"completed\",trigger=\"automatic\"} 1")
        );
        assert!(
            text.contains("failoverd_failovers_total{event=\"started\",trigger=\"operator\"} 1")
        );
        assert!(
            text.contains("failoverd_failovers_total{event=\"aborted\",trigger=\"operator\"} 1")
        );
        assert!(text.contains("failoverd_round_duration_seconds_count 6"));
        assert!(text.contains("failoverd_round_duration_seconds_bucket{le=\"0.05\"} 6"));
    }

    #[test]
    fn a_failover_under_way_at_start_is_not_counted_as_started() {
        let m = Meter::default();
        let a = round(1, record(4, Phase::FailingOver, Step::Claimed, "us-west-2"));
        let b = round(2, record(4, Phase::Steady, Step::Done, "us-west-2"));
        observe(&m, &RoundStatus::default(), &a);
        observe(&m, &a, &b);
        assert_eq!(m.failover_count("started"), 0);
        assert_eq!(m.failover_count("completed"), 1);
    }

    #[test]
    fn calls_errors_and_unknown_regions_have_bounded_labels() {
        let m = Meter::new(&["us-east-1".into(), "us-west-2".into()]);
        let ms = Duration::from_millis;
        m.call(Op::ReadRecord, "us-east-1", ms(4), None);
        m.call(Op::ReadRecord, "mars-1", ms(40), Some(ErrorKind::Throttled));
        m.call(Op::SendTaskSuccess, "us-west-2", ms(2), None);
        m.journal("failover_claimed");
        m.journal("something_new");
        m.reading(Reading::Throttled, 5_000);
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("failoverd_aws_calls_total{service=\"dynamodb\",operation=\"read_record\",region=\"us-east-1\"} 1"));
        assert!(text.contains("failoverd_aws_errors_total{service=\"dynamodb\",operation=\"read_record\",region=\"other\",kind=\"throttled\"} 1"));
        assert!(text.contains("failoverd_aws_call_duration_seconds_count{service=\"dynamodb\"} 2"));
        assert!(text.contains(
            "failoverd_aws_call_duration_seconds_bucket{service=\"stepfunctions\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("failoverd_journal_entries_total{kind=\"other\"} 1"));
        assert!(text.contains("failoverd_route53_readings_total{result=\"throttled\"} 1"));
        assert!(text.contains("failoverd_route53_last_reading_timestamp_seconds 0\n"));
        assert_eq!(m.journal_count("failover_claimed"), 1);
    }
}
