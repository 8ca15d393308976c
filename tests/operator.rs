//! The one operator-request path (`control::operator::perform`), which the
//! CLI (`failoverd pause|resume|failover|...`), the admin API
//! (`POST /v1/pause|resume`) and the simulation's operator all take.
//!
//! The control table here is an in-memory record whose writes go through
//! `core::record::apply` (the one statement of their conditions), with a
//! queue of interfering writes that land just before the operator's: a
//! lease renewal (the version moves, the decision does not), or another
//! failover (the decision moves too). Every other AWS port answers
//! "unavailable": a request that reached one would show in its outcome.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use failoverd::config::{self, Config, EnvSource};
use failoverd::control::operator::{self, Outcome, REPLANS};
use failoverd::core::control::{ControlRecord, Mode, Phase, Proposal, ProposalState, Step};
use failoverd::core::duty::{DutyItem, DutyWrite};
use failoverd::core::health::Signal;
use failoverd::core::plan::Request;
use failoverd::core::quorum::Vote;
use failoverd::core::record::{self, RecordWrite};
use failoverd::core::tokens::TokenStatus;
use failoverd::ports::endpoints::{Deleted, EndpointState, EndpointStatus, WarmUp};
use failoverd::ports::health_checks::{CheckKind, CheckReading};
use failoverd::ports::store::{Event, Page, PublishedReading, TokenItem, Write};
use failoverd::ports::workflows::{Callback, Execution, Started};
use failoverd::ports::{
    Clock, ControlStore, EndpointMetrics, Endpoints, Entropy, ErrorKind, HealthChecks, PortError,
    Ports, Probes, Workflows,
};

const NOW: u64 = 1_795_000_000_000;

/// An interfering write that lands before the operator's next one.
type Interference = Box<dyn FnOnce(&mut ControlRecord) + Send>;

#[derive(Default)]
struct Table {
    record: Mutex<Option<ControlRecord>>,
    interfere: Mutex<VecDeque<Interference>>,
    unreadable: AtomicBool,
    writes: AtomicU64,
    journal: Mutex<Vec<Event>>,
}

fn down(what: &str) -> PortError {
    PortError::new(
        "test",
        what.to_string(),
        "us-east-1",
        ErrorKind::Unavailable,
        "not in this test",
    )
}

#[async_trait]
impl ControlStore for Table {
    fn replica(&self) -> &str {
        "us-east-1"
    }
    async fn read_record(&self) -> Result<Option<ControlRecord>, PortError> {
        if self.unreadable.load(Ordering::SeqCst) {
            return Err(down("GetItem CONTROL"));
        }
        Ok(self.record.lock().unwrap().clone())
    }
    async fn write_record(&self, w: &RecordWrite) -> Result<Write, PortError> {
        let mut rec = self.record.lock().unwrap();
        if let (Some(f), Some(r)) = (self.interfere.lock().unwrap().pop_front(), rec.as_mut()) {
            f(r);
            r.version += 1;
        }
        match record::apply(rec.as_ref(), w) {
            Ok(next) => {
                *rec = Some(next);
                self.writes.fetch_add(1, Ordering::SeqCst);
                Ok(Write::Written)
            }
            Err(_) => Ok(Write::Conflict),
        }
    }
    async fn put_vote(&self, _: &Vote) -> Result<(), PortError> {
        Err(down("PutItem VOTE"))
    }
    async fn read_votes(&self) -> Result<Vec<Vote>, PortError> {
        Ok(Vec::new())
    }
    async fn read_duty(&self, _: &str) -> Result<Option<DutyItem>, PortError> {
        Err(down("GetItem DUTY"))
    }
    async fn write_duty(&self, _: &DutyWrite) -> Result<Write, PortError> {
        Err(down("PutItem DUTY"))
    }
    async fn put_reading(&self, _: &PublishedReading) -> Result<(), PortError> {
        Err(down("PutItem READING"))
    }
    async fn read_readings(&self) -> Result<Vec<PublishedReading>, PortError> {
        Err(down("Query READING"))
    }
    async fn pending_tokens(&self, _: &str, _: u64) -> Result<Vec<TokenItem>, PortError> {
        Err(down("Query pending"))
    }
    async fn tokens(&self, _: usize, _: u64) -> Result<Page<TokenItem>, PortError> {
        Err(down("Query TOKEN"))
    }
    async fn claim_token(&self, _: &str, _: &str, _: u64, _: u64) -> Result<Write, PortError> {
        Err(down("claim"))
    }
    async fn extend_claim(&self, _: &str, _: &str, _: u64, _: u64) -> Result<Write, PortError> {
        Err(down("extend"))
    }
    async fn finish_token(
        &self,
        _: &str,
        _: TokenStatus,
        _: &str,
        _: u64,
    ) -> Result<Write, PortError> {
        Err(down("finish"))
    }
    async fn journal(&self, e: &Event) -> Result<(), PortError> {
        self.journal.lock().unwrap().push(e.clone());
        Ok(())
    }
    async fn events(&self, _: usize, _: u64) -> Result<Page<Event>, PortError> {
        Err(down("Query JOURNAL"))
    }
}

/// The AWS ports a pause or a refused request must never reach.
struct Elsewhere;

#[async_trait]
impl Workflows for Elsewhere {
    async fn start(&self, _: &str, _: &str, _: &str) -> Result<Started, PortError> {
        Err(down("StartExecution"))
    }
    async fn describe(&self, _: &str) -> Result<Execution, PortError> {
        Err(down("DescribeExecution"))
    }
    async fn stop(&self, _: &str, _: &str) -> Result<(), PortError> {
        Err(down("StopExecution"))
    }
    async fn send_task_success(&self, _: &str, _: &str, _: &str) -> Result<Callback, PortError> {
        Err(down("SendTaskSuccess"))
    }
    async fn send_task_failure(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Callback, PortError> {
        Err(down("SendTaskFailure"))
    }
    async fn send_task_heartbeat(&self, _: &str, _: &str) -> Result<Callback, PortError> {
        Err(down("SendTaskHeartbeat"))
    }
}

#[async_trait]
impl HealthChecks for Elsewhere {
    async fn read(&self, _: &str) -> Result<CheckReading, PortError> {
        Err(down("GetHealthCheckStatus"))
    }
    async fn kind(&self, _: &str) -> Result<CheckKind, PortError> {
        Err(down("GetHealthCheck"))
    }
}

#[async_trait]
impl Endpoints for Elsewhere {
    async fn status(&self, _: &str, _: &str) -> Result<Option<EndpointStatus>, PortError> {
        Err(down("DescribeEndpoint"))
    }
    async fn warm_up(&self, _: &str, _: &str, _: Option<&str>, _: &[u8]) -> WarmUp {
        WarmUp::Refused {
            detail: "not in this test".into(),
        }
    }
    async fn describe(&self, _: &str, _: &str) -> Result<Option<EndpointState>, PortError> {
        Err(down("DescribeEndpoint"))
    }
    async fn set_instance_counts(
        &self,
        _: &str,
        _: &str,
        _: &[(String, u32)],
    ) -> Result<(), PortError> {
        Err(down("UpdateEndpointWeightsAndCapacities"))
    }
    async fn tags(&self, _: &str, _: &str) -> Result<Vec<(String, String)>, PortError> {
        Err(down("ListTags"))
    }
    async fn delete(&self, _: &str, _: &str) -> Result<Deleted, PortError> {
        Err(down("DeleteEndpoint"))
    }
    async fn served(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<Vec<failoverd::ports::endpoints::ServedVariant>>, PortError> {
        Err(down("DescribeEndpointConfig"))
    }
    async fn describe_component(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<failoverd::ports::endpoints::ComponentState>, PortError> {
        Err(down("DescribeInferenceComponent"))
    }
    async fn set_copy_count(&self, _: &str, _: &str, _: u32) -> Result<(), PortError> {
        Err(down("UpdateInferenceComponentRuntimeConfig"))
    }
}

#[async_trait]
impl EndpointMetrics for Elsewhere {
    async fn invocations(
        &self,
        _: &str,
        _: &str,
        _: &[String],
        _: &[String],
        _: u64,
        _: u64,
    ) -> Result<u64, PortError> {
        Err(down("GetMetricData"))
    }
}

#[async_trait]
impl Probes for Elsewhere {
    async fn probe(&self, _: &str, _: Option<&str>) -> (Signal, String) {
        (Signal::Unknown, "not in this test".into())
    }
}

struct Fixed;
impl Clock for Fixed {
    fn now_ms(&self) -> u64 {
        NOW
    }
    fn monotonic(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}
struct Counter(AtomicU64);
impl Entropy for Counter {
    fn next_u64(&self) -> u64 {
        self.0.fetch_add(0x9e37_79b9, Ordering::SeqCst)
    }
}

fn config() -> Config {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions/lab/us-east-1.toml");
    config::load(&f, &EnvSource::new()).expect("the lab's config loads")
}

fn steady(active: &str) -> ControlRecord {
    ControlRecord {
        version: 7,
        incarnation: "abc".into(),
        epoch: 1,
        active: active.into(),
        mode: Mode::Auto,
        phase: Phase::Steady,
        target: None,
        execution: None,
        initiator: None,
        state_machine: None,
        previous: None,
        changed_by: "us-east-1".into(),
        changed_at: NOW - 60_000,
        reason: "initialized".into(),
        last_failover_at: None,
        switched_at: None,
        step: Step::Init,
        aborts: 0,
        ungraceful: false,
        old_region_healthy: true,
        forced: false,
        proposal: None,
    }
}

fn world(record: ControlRecord) -> (Arc<Table>, Ports) {
    let table = Arc::new(Table::default());
    *table.record.lock().unwrap() = Some(record);
    let store: Arc<dyn ControlStore> = table.clone();
    let ports = Ports {
        clock: Arc::new(Fixed),
        entropy: Arc::new(Counter(AtomicU64::new(1))),
        store: store.clone(),
        replicas: BTreeMap::from([("us-east-1".to_string(), store)]),
        workflows: Arc::new(Elsewhere),
        health_checks: Arc::new(Elsewhere),
        endpoints: Arc::new(Elsewhere),
        endpoint_metrics: Arc::new(Elsewhere),
        probes: Arc::new(Elsewhere),
        capacity: Arc::new(failoverd::ports::capacity::NoCapacity),
    };
    (table, ports)
}

fn renewal() -> Interference {
    // The active's lease renewal: the version moves, nothing else.
    Box::new(|_| {})
}

fn pause() -> Request {
    Request::Pause {
        reason: "maintenance".into(),
        operator: "alice".into(),
    }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_write_that_loses_to_lease_renewals_is_planned_again_and_lands() {
    let cfg = config();
    let (table, ports) = world(steady("us-east-1"));
    for _ in 0..REPLANS {
        table.interfere.lock().unwrap().push_back(renewal());
    }
    let mut asked = 0;
    let out = run(operator::perform(&cfg, &ports, &pause(), |p| {
        asked += 1;
        assert!(p.description.contains("Paused"), "{}", p.description);
        Ok(())
    }));
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");
    assert_eq!(asked, 1, "confirmed once, not once per re-plan");
    let rec = table.record.lock().unwrap().clone().unwrap();
    assert_eq!(rec.mode, Mode::Paused);
    assert_eq!(rec.changed_by, "operator:alice");
    assert_eq!(table.writes.load(Ordering::SeqCst), 1);
}

#[test]
fn a_record_that_keeps_moving_writes_nothing() {
    let cfg = config();
    let (table, ports) = world(steady("us-east-1"));
    for _ in 0..=REPLANS {
        table.interfere.lock().unwrap().push_back(renewal());
    }
    let out = run(operator::perform(&cfg, &ports, &pause(), |_| Ok(())));
    assert_eq!(out, Outcome::KeptMoving);
    assert_eq!(table.writes.load(Ordering::SeqCst), 0);
    assert_eq!(
        table.record.lock().unwrap().as_ref().unwrap().mode,
        Mode::Auto
    );
}

#[test]
fn a_decision_that_changed_under_the_write_is_not_written() {
    let cfg = config();
    let (table, ports) = world(steady("us-east-1"));
    // Another failover lands first: eu-west-1 is active at epoch 2.
    table
        .interfere
        .lock()
        .unwrap()
        .push_back(Box::new(|r: &mut ControlRecord| {
            r.epoch += 1;
            r.previous = Some(r.active.clone());
            r.active = "eu-west-1".into();
        }));
    let req = Request::Failover {
        to: "us-west-2".into(),
        reason: "INC-1".into(),
        ungraceful: false,
        force: true,
        operator: "bob".into(),
    };
    let mut shown = String::new();
    let out = run(operator::perform(&cfg, &ports, &req, |p| {
        shown = p.description.clone();
        Ok(())
    }));
    let Outcome::Changed { now } = out else {
        panic!("{out:?}");
    };
    assert!(shown.contains("from us-east-1 to us-west-2"), "{shown}");
    assert!(now.contains("from eu-west-1 to us-west-2"), "{now}");
    assert_eq!(table.writes.load(Ordering::SeqCst), 0);
    // The lost claim is journalled; nothing was started.
    let kinds: Vec<String> = table
        .journal
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(kinds, ["failover_lost_race"]);
}

#[test]
fn refusals_and_unreadable_tables_write_nothing_and_say_why() {
    let cfg = config();
    // Already paused: refused by the planner, never asked to confirm.
    let mut paused = steady("us-east-1");
    paused.mode = Mode::Paused;
    let (table, ports) = world(paused);
    let out = run(operator::perform(&cfg, &ports, &pause(), |_| {
        panic!("a refused request is not put to the operator")
    }));
    assert!(
        matches!(out, Outcome::Refused(ref why) if why.contains("paused")),
        "{out:?}"
    );
    // Not confirmed.
    let (table2, ports2) = world(steady("us-east-1"));
    let out = run(operator::perform(&cfg, &ports2, &pause(), |_| {
        Err("declined".into())
    }));
    assert_eq!(out, Outcome::NotConfirmed("declined".into()));
    // The table cannot be read.
    table.unreadable.store(true, Ordering::SeqCst);
    let out = run(operator::perform(&cfg, &ports, &pause(), |_| Ok(())));
    assert!(
        matches!(out, Outcome::Unreadable(ref why) if why.contains("control record")),
        "{out:?}"
    );
    assert_eq!(table.writes.load(Ordering::SeqCst), 0);
    assert_eq!(table2.writes.load(Ordering::SeqCst), 0);
}

// ----- approvals bind the proposal (issue 19, item 4) -----

/// `steady("us-east-1")` with a failover to `target` proposed for epoch 2,
/// a minute ago, by `target`'s daemon, with id `id`.
fn proposing(target: &str, id: &str) -> ControlRecord {
    let mut r = steady("us-east-1");
    r.proposal = Some(Proposal {
        id: id.into(),
        epoch: 2,
        from: "us-east-1".into(),
        target: target.into(),
        proposer: target.into(),
        proposed_at: NOW - 60_000,
        reason: "quorum of 3 fresh observers sees us-east-1 down".into(),
        state: ProposalState::Proposed,
        decided_by: None,
        decided_at: None,
        decision: None,
    });
    r
}

fn approve(epoch: Option<u64>, proposal: Option<&str>, to: Option<&str>) -> Request {
    Request::Approve {
        epoch,
        proposal: proposal.map(String::from),
        to: to.map(String::from),
        reason: "confirmed on the dashboards".into(),
        operator: "alice".into(),
    }
}

/// The prompt names the proposal (epoch, from, target, proposer, id, age);
/// the approval written is of that one.
#[test]
fn the_approval_prompt_names_the_target_and_the_proposal() {
    let cfg = config();
    let (table, ports) = world(proposing("us-west-2", "8-abcdef"));
    let mut shown = None;
    let out = run(operator::perform(
        &cfg,
        &ports,
        &approve(Some(2), None, None),
        |p| {
            shown = Some(p.clone());
            Ok(())
        },
    ));
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");
    let p = shown.expect("asked");
    for part in [
        "us-east-1 -> us-west-2",
        "epoch 2",
        "proposal 8-abcdef",
        "proposed by us-west-2",
        "approved",
    ] {
        assert!(p.description.contains(part), "{part}: {}", p.description);
    }
    assert!(
        p.details.iter().any(|d| d.contains("proposed 1m00s ago")),
        "{:?}",
        p.details
    );
    let rec = table.record.lock().unwrap().clone().unwrap();
    let got = rec.proposal.unwrap();
    assert_eq!(
        (got.state, got.id.as_str()),
        (ProposalState::Approved, "8-abcdef")
    );
}

/// An approval naming a proposal that is not the open one (withdrawn and
/// proposed again to another target, or the same target with a new id) is
/// refused before anything is asked, naming what is open.
#[test]
fn an_approval_of_another_proposal_is_refused_naming_the_open_one() {
    let cfg = config();
    for (open, req) in [
        (
            proposing("eu-west-1", "10-123456"),
            approve(Some(2), Some("8-abcdef"), None),
        ),
        (
            proposing("eu-west-1", "10-123456"),
            approve(Some(2), None, Some("us-west-2")),
        ),
        (
            proposing("us-west-2", "10-123456"),
            approve(None, Some("8-abcdef"), Some("us-west-2")),
        ),
    ] {
        let target = open.proposal.as_ref().unwrap().target.clone();
        let (table, ports) = world(open);
        let out = run(operator::perform(&cfg, &ports, &req, |_| {
            panic!("a refused approval is not put to the operator")
        }));
        let Outcome::Refused(why) = out else {
            panic!("{req:?}: {out:?}");
        };
        assert!(
            why.contains("the open proposal is 10-123456") && why.contains(&target),
            "{why}"
        );
        assert_eq!(table.writes.load(Ordering::SeqCst), 0);
    }
}

/// By epoch alone, the operator confirms the proposal the prompt showed;
/// if it is withdrawn and another proposed for the same epoch before the
/// write lands, nothing is written (the decision changed).
#[test]
fn a_proposal_replaced_under_the_prompt_is_not_approved() {
    let cfg = config();
    let (table, ports) = world(proposing("us-west-2", "8-abcdef"));
    table
        .interfere
        .lock()
        .unwrap()
        .push_back(Box::new(|r: &mut ControlRecord| {
            let p = r.proposal.as_mut().unwrap();
            p.id = "10-123456".into();
            p.target = "eu-west-1".into();
            p.proposer = "eu-west-1".into();
        }));
    let mut shown = String::new();
    let out = run(operator::perform(
        &cfg,
        &ports,
        &approve(Some(2), None, None),
        |p| {
            shown = p.description.clone();
            Ok(())
        },
    ));
    let Outcome::Changed { now } = out else {
        panic!("{out:?}");
    };
    assert!(
        shown.contains("us-west-2") && shown.contains("8-abcdef"),
        "{shown}"
    );
    assert!(
        now.contains("eu-west-1") && now.contains("10-123456"),
        "{now}"
    );
    assert_eq!(table.writes.load(Ordering::SeqCst), 0);
    let p = table
        .record
        .lock()
        .unwrap()
        .clone()
        .unwrap()
        .proposal
        .unwrap();
    assert_eq!(p.state, ProposalState::Proposed);
}
