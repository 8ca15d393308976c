//! Property tests of the pure planner (core::plan) with the real quorum
//! tally: for any votes, at most one daemon starts a failover per epoch; an
//! isolated observer never acts; paused mode never acts automatically; a
//! dead target is passed over; an in-flight failover never wedges the record.
//! With `policy.approval = "manual"`: proposals instead of claims, approval
//! by epoch, rejection, expiry or proceeding at the timeout, withdrawal.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;

use failoverd::core::control::{ControlRecord, Mode, Phase, Step};
use failoverd::core::health::Verdict;
use failoverd::core::plan::{
    Action, Approval, Decision, ExecutionStatus, Inputs, OnApprovalTimeout, Policy, RecordRead,
    Request, plan,
};
use failoverd::core::quorum::{Vote, tally};
use failoverd::core::record::Settlement;
use failoverd::core::standby::{FleetReadiness, Ready};
use proptest::prelude::*;

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
const NOW: u64 = 1_000_000;
const FRESH: u64 = 5_000;

fn regions() -> Vec<String> {
    REGIONS.map(String::from).to_vec()
}

fn policy(automatic: bool) -> Policy {
    Policy {
        priorities: vec![
            ("us-east-1".into(), 1),
            ("us-west-2".into(), 2),
            ("eu-west-1".into(), 3),
        ],
        min_failover_interval_ms: 30_000,
        auto_failback: true,
        automatic_allowed: automatic,
        stuck_failover_ms: STUCK,
        start_timeout_ms: START,
        abort_retry_ms: 5_000,
        approval: Approval::None,
        approval_timeout_ms: 60_000,
        on_approval_timeout: OnApprovalTimeout::Expire,
    }
}

const STUCK: u64 = failoverd::core::plan::STUCK_FAILOVER_MS;
const START: u64 = failoverd::core::plan::START_TIMEOUT_MS;

fn record(active: usize, mode: Mode, phase: Phase, last_failover_at: Option<u64>) -> ControlRecord {
    ControlRecord {
        version: 7,
        incarnation: "c0ffee".into(),
        epoch: 3,
        active: REGIONS[active].into(),
        mode,
        phase,
        target: None,
        execution: None,
        initiator: None,
        state_machine: None,
        previous: None,
        changed_by: "test".into(),
        changed_at: 0,
        reason: String::new(),
        last_failover_at,
        switched_at: None,
        step: Step::Done,
        aborts: 0,
        ungraceful: false,
        old_region_healthy: false,
        forced: false,
        proposal: None,
    }
}

/// A vote per observer: (present, age in ms, view bits).
fn votes_strategy() -> impl Strategy<Value = Vec<(bool, u64, [bool; 3])>> {
    prop::collection::vec((any::<bool>(), 0u64..10_000, any::<[bool; 3]>()), 3)
}

fn votes(spec: &[(bool, u64, [bool; 3])]) -> Vec<Vote> {
    spec.iter()
        .enumerate()
        .filter(|(_, (present, _, _))| *present)
        .map(|(i, (_, age, view))| Vote {
            observer: REGIONS[i].into(),
            instance: None,
            at: NOW - age,
            seen_epoch: 3,
            view: REGIONS
                .iter()
                .zip(view)
                .map(|(r, down)| {
                    (
                        r.to_string(),
                        if *down { Verdict::Down } else { Verdict::Up },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            traffic: None,
            fleet: None,
            readiness: None,
            lease_ms: None,
        })
        .collect()
}

fn decide(
    me: &str,
    rec: &RecordRead,
    vs: &[Vote],
    pol: &Policy,
    req: Option<&Request>,
) -> Decision {
    decide_in_flight(me, rec, vs, pol, req, None, 0)
}

fn decide_in_flight(
    me: &str,
    rec: &RecordRead,
    vs: &[Vote],
    pol: &Policy,
    req: Option<&Request>,
    execution: Option<ExecutionStatus>,
    stalled_ms: u64,
) -> Decision {
    decide_ready(
        me,
        rec,
        vs,
        pol,
        req,
        execution,
        stalled_ms,
        &Default::default(),
    )
}

#[allow(clippy::too_many_arguments)]
fn decide_ready(
    me: &str,
    rec: &RecordRead,
    vs: &[Vote],
    pol: &Policy,
    req: Option<&Request>,
    execution: Option<ExecutionStatus>,
    stalled_ms: u64,
    readiness: &FleetReadiness,
) -> Decision {
    let t = tally(me, &regions(), vs, NOW, FRESH);
    plan(&Inputs {
        now: NOW,
        me,
        tally: &t,
        record: rec,
        execution,
        stalled_ms,
        policy: pol,
        request: req,
        held: None,
        fleet_epoch: 0,
        readiness,
    })
}

/// A record failing over to us-west-2, initiated there.
fn in_flight(step: Step) -> ControlRecord {
    let mut r = record(0, Mode::Auto, Phase::FailingOver, Some(NOW - 10_000));
    r.execution = Some("failover-c0ffee-3".into());
    r.initiator = Some("us-west-2".into());
    r.target = Some("us-west-2".into());
    r.step = step;
    r
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        // Failures found are kept and replayed first (check them in).
        failure_persistence: Some(Box::new(prop::test_runner::FileFailurePersistence::Direct("tests/proptest-regressions/planner.txt"))),
        ..ProptestConfig::default()
    })]

    /// Every daemon plans on the same votes and record: at most one of them
    /// starts a failover, and it claims exactly the next epoch.
    #[test]
    fn at_most_one_start_per_epoch(spec in votes_strategy(), active in 0usize..3, last in prop::option::of(0u64..NOW)) {
        let rec = RecordRead::Found(record(active, Mode::Auto, Phase::Steady, last));
        let vs = votes(&spec);
        let pol = policy(true);
        let starts: Vec<_> = REGIONS
            .iter()
            .filter_map(|me| match decide(me, &rec, &vs, &pol, None) {
                Decision::Act { action: Action::StartFailover(p) } => Some(p),
                _ => None,
            })
            .collect();
        prop_assert!(starts.len() <= 1, "two starters: {starts:?}");
        for p in &starts {
            prop_assert_eq!(p.epoch, 4);
            prop_assert_eq!(p.expected_version, 7);
            prop_assert_eq!(&p.initiator, &p.to);
            prop_assert!(p.to != REGIONS[active]);
        }
    }

    /// Without a quorum (own vote stale, or too few fresh observers) nothing
    /// automatic happens, whatever the daemon itself believes.
    #[test]
    fn isolated_observer_never_acts(spec in votes_strategy(), me in 0usize..3, active in 0usize..3, missing in any::<bool>()) {
        let vs = votes(&spec);
        let t = tally(REGIONS[me], &regions(), &vs, NOW, FRESH);
        prop_assume!(t.no_quorum.is_some());
        let rec = if missing { RecordRead::Missing } else { RecordRead::Found(record(active, Mode::Auto, Phase::Steady, None)) };
        let d = decide(REGIONS[me], &rec, &vs, &policy(true), None);
        prop_assert!(!matches!(d, Decision::Act { .. }), "acted without quorum: {d:?}");
    }

    /// The truly isolated case: only our own vote is fresh.
    #[test]
    fn alone_never_acts(view in any::<[bool; 3]>(), me in 0usize..3, active in 0usize..3) {
        let mut spec = vec![(true, 9_999u64, [false; 3]); 3];
        spec[me] = (true, 0, view);
        let vs = votes(&spec);
        let rec = RecordRead::Found(record(active, Mode::Auto, Phase::Steady, None));
        let d = decide(REGIONS[me], &rec, &vs, &policy(true), None);
        prop_assert!(!matches!(d, Decision::Act { .. }), "{d:?}");
    }

    /// Paused: no automatic action of any kind while the record is steady.
    #[test]
    fn paused_never_acts_automatically(spec in votes_strategy(), me in 0usize..3, active in 0usize..3) {
        let vs = votes(&spec);
        let rec = RecordRead::Found(record(active, Mode::Paused, Phase::Steady, None));
        let d = decide(REGIONS[me], &rec, &vs, &policy(true), None);
        prop_assert!(!matches!(d, Decision::Act { .. }), "{d:?}");
    }

    /// Eventual mode: never an automatic failover.
    #[test]
    fn eventual_mode_never_fails_over_automatically(spec in votes_strategy(), me in 0usize..3, active in 0usize..3) {
        let vs = votes(&spec);
        let rec = RecordRead::Found(record(active, Mode::Auto, Phase::Steady, None));
        let d = decide(REGIONS[me], &rec, &vs, &policy(false), None);
        prop_assert!(!matches!(d, Decision::Act { action: Action::StartFailover(_) }), "{d:?}");
    }

    /// Manual failover is refused without quorum or to an unhealthy target
    /// unless forced, and forced ones are marked.
    #[test]
    fn manual_failover_checks(spec in votes_strategy(), to in 0usize..3, force in any::<bool>()) {
        let vs = votes(&spec);
        let rec = RecordRead::Found(record(0, Mode::Auto, Phase::Steady, None));
        let req = Request::Failover { to: REGIONS[to].into(), reason: "drill".into(), ungraceful: false, force, operator: "op".into() };
        // Operators are not observers: the CLI tallies without an own vote.
        let t = failoverd::core::quorum::tally_as_operator(&regions(), &vs, NOW, FRESH);
        let pol = policy(true);
        let d = plan(&Inputs { now: NOW, me: "us-east-1", tally: &t, record: &rec, execution: None, stalled_ms: 0, policy: &pol, request: Some(&req), held: None, fleet_epoch: 0, readiness: &Default::default() });
        // A target can take over when healthy by quorum and its daemon is
        // alive (its vote fresh): only a live daemon can prepare.
        let able = t.is(REGIONS[to], failoverd::core::quorum::Consensus::Up)
            && t.fresh_observers.iter().any(|o| o == REGIONS[to]);
        match d {
            Decision::Act { action: Action::StartFailover(p) } => {
                prop_assert!(to != 0);
                prop_assert!(force || able);
                prop_assert_eq!(p.forced, force);
                prop_assert!(!p.automatic);
                let base = format!("failover-c0ffee-{}-c", p.epoch);
                prop_assert!(p.execution.starts_with(&base), "{}", p.execution);
                prop_assert_eq!(failoverd::core::control::execution_epoch(&p.execution), Some(p.epoch));
            }
            Decision::Refuse { .. } => prop_assert!(to == 0 || (!force && !able)),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn an_in_flight_failover_refuses_requests_unless_forced_and_force_supersedes() {
    let rec = RecordRead::Found(in_flight(Step::Mark));
    let spec = vec![(true, 0u64, [false; 3]); 3];
    let req = |force| Request::Failover {
        to: "eu-west-1".into(),
        reason: "x".into(),
        ungraceful: false,
        force,
        operator: "op".into(),
    };
    match decide(
        "us-east-1",
        &rec,
        &votes(&spec),
        &policy(true),
        Some(&req(false)),
    ) {
        Decision::Refuse { why } => {
            assert!(
                why.contains("already in flight") && why.contains("--force"),
                "{why}"
            )
        }
        d => panic!("{d:?}"),
    }
    match decide(
        "us-east-1",
        &rec,
        &votes(&spec),
        &policy(true),
        Some(&req(true)),
    ) {
        Decision::Act {
            action: Action::StartFailover(p),
        } => {
            assert_eq!(p.supersedes.as_deref(), Some("failover-c0ffee-3"));
            assert_eq!((p.epoch, p.expected_version), (4, 7));
            // The epoch's name with the claim's own suffix.
            assert!(
                p.execution.starts_with("failover-c0ffee-4-c"),
                "{}",
                p.execution
            );
            assert_eq!(
                failoverd::core::control::execution_epoch(&p.execution),
                Some(4)
            );
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn the_target_region_starts_and_min_interval_holds() {
    // us-east-1 down by all three; us-west-2 (priority 2) is the target.
    let spec = vec![(true, 0u64, [true, false, false]); 3];
    let vs = votes(&spec);
    let rec = RecordRead::Found(record(0, Mode::Auto, Phase::Steady, None));
    assert!(matches!(
        decide("us-west-2", &rec, &vs, &policy(true), None),
        Decision::Act {
            action: Action::StartFailover(_)
        }
    ));
    assert!(matches!(
        decide("eu-west-1", &rec, &vs, &policy(true), None),
        Decision::Idle { .. }
    ));
    // Too soon after the last failover.
    let rec = RecordRead::Found(record(0, Mode::Auto, Phase::Steady, Some(NOW - 1000)));
    match decide("us-west-2", &rec, &vs, &policy(true), None) {
        Decision::Idle { why } => assert!(why.contains("too recent"), "{why}"),
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_dead_target_is_passed_over() {
    // us-east-1 down by quorum; us-west-2's daemon is dead (its vote stale,
    // though the others still see its endpoints up): eu-west-1 takes over.
    let spec = vec![
        (true, 0u64, [true, false, false]),
        (true, 9_999, [true, false, false]),
        (true, 0, [true, false, false]),
    ];
    let vs = votes(&spec);
    let rec = RecordRead::Found(record(0, Mode::Auto, Phase::Steady, None));
    match decide("eu-west-1", &rec, &vs, &policy(true), None) {
        Decision::Act {
            action: Action::StartFailover(p),
        } => assert_eq!(
            (p.to.as_str(), p.initiator.as_str()),
            ("eu-west-1", "eu-west-1")
        ),
        d => panic!("{d:?}"),
    }
}

#[test]
fn after_an_abort_the_next_attempt_comes_sooner_and_prefers_another_target() {
    let spec = vec![(true, 0u64, [true, false, false]); 3];
    let vs = votes(&spec);
    let mut r = record(0, Mode::Auto, Phase::Steady, Some(NOW - 6_000));
    r.step = Step::Aborted;
    r.aborts = 1;
    r.target = Some("us-west-2".into());
    // abort_retry is 5 s: 6 s after the aborted attempt, eu-west-1 goes.
    let rec = RecordRead::Found(r.clone());
    assert!(matches!(
        decide("us-west-2", &rec, &vs, &policy(true), None),
        Decision::Idle { .. }
    ));
    match decide("eu-west-1", &rec, &vs, &policy(true), None) {
        Decision::Act {
            action: Action::StartFailover(p),
        } => assert_eq!(p.to, "eu-west-1"),
        d => panic!("{d:?}"),
    }
    // Three aborts in a row: 5 s × 2² = 20 s, not yet.
    r.aborts = 3;
    let rec = RecordRead::Found(r.clone());
    assert!(matches!(
        decide("eu-west-1", &rec, &vs, &policy(true), None),
        Decision::Idle { .. }
    ));
    // Never later than the minimum interval (30 s here).
    r.aborts = 30;
    r.last_failover_at = Some(NOW - 30_001);
    let rec = RecordRead::Found(r);
    assert!(matches!(
        decide("eu-west-1", &rec, &vs, &policy(true), None),
        Decision::Act { .. }
    ));
}

fn settles(d: &Decision) -> Option<(Settlement, String)> {
    match d {
        Decision::Act {
            action:
                Action::Settle {
                    expected_version: 7,
                    execution,
                    outcome,
                    reason,
                    ..
                },
        } => {
            assert_eq!(execution, "failover-c0ffee-3");
            Some((*outcome, reason.clone()))
        }
        _ => None,
    }
}

#[test]
fn an_ended_execution_is_settled_by_anyone_with_a_quorum() {
    let all = votes(&[(true, 0u64, [false; 3]); 3]);
    for st in [ExecutionStatus::Ended, ExecutionStatus::Succeeded] {
        for (step, outcome) in [
            (Step::Mark, Settlement::Aborted),
            (Step::Switched, Settlement::Completed),
        ] {
            let rec = RecordRead::Found(in_flight(step));
            // The initiator (us-west-2) is alive: eu-west-1 settles anyway.
            let d = decide_in_flight("eu-west-1", &rec, &all, &policy(true), None, Some(st), 0);
            assert_eq!(settles(&d).map(|x| x.0), Some(outcome), "{d:?}");
        }
    }
}

#[test]
fn an_execution_that_never_starts_is_retried_then_settled() {
    let all = votes(&[(true, 0u64, [false; 3]); 3]);
    let rec = RecordRead::Found(in_flight(Step::Claimed));
    let ns = Some(ExecutionStatus::NotStarted);
    // The initiator retries the start while within the start timeout...
    assert!(matches!(
        decide_in_flight("us-west-2", &rec, &all, &policy(true), None, ns, 1_000),
        Decision::Act {
            action: Action::EnsureExecution(_)
        }
    ));
    assert!(
        settles(&decide_in_flight(
            "eu-west-1",
            &rec,
            &all,
            &policy(true),
            None,
            ns,
            1_000
        ))
        .is_none()
    );
    // ...and after it, the initiator or anyone with a quorum settles it as
    // aborted, also when Step Functions cannot even be asked.
    for me in ["us-west-2", "eu-west-1"] {
        for st in [ns, None, Some(ExecutionStatus::Running)] {
            let d = decide_in_flight(me, &rec, &all, &policy(true), None, st, START + 1);
            let (outcome, why) = settles(&d).unwrap_or_else(|| panic!("{me} {st:?}: {d:?}"));
            assert_eq!(outcome, Settlement::Aborted);
            assert!(why.contains("did not start"), "{why}");
        }
    }
}

#[test]
fn a_stalled_failover_is_settled_whatever_the_initiators_liveness() {
    let all = votes(&[(true, 0u64, [false; 3]); 3]);
    let initiator_dead = votes(&[
        (true, 0u64, [false; 3]),
        (true, 9_999, [false; 3]),
        (true, 0, [false; 3]),
    ]);
    let rec = RecordRead::Found(in_flight(Step::Mark));
    for vs in [&all, &initiator_dead] {
        let running = Some(ExecutionStatus::Running);
        assert!(
            settles(&decide_in_flight(
                "eu-west-1",
                &rec,
                vs,
                &policy(true),
                None,
                running,
                STUCK - 1
            ))
            .is_none()
        );
        let d = decide_in_flight(
            "eu-west-1",
            &rec,
            vs,
            &policy(true),
            None,
            running,
            STUCK + 1,
        );
        let (_, why) = settles(&d).unwrap_or_else(|| panic!("{d:?}"));
        assert!(why.contains("no progress"), "{why}");
        // Settling a maybe-running execution stops it too.
        assert!(matches!(
            d,
            Decision::Act {
                action: Action::Settle { stop: true, .. }
            }
        ));
    }
    // An isolated daemon (no quorum) that is not the initiator does nothing.
    let alone = votes(&[
        (true, 9_999u64, [false; 3]),
        (true, 9_999, [false; 3]),
        (true, 0, [false; 3]),
    ]);
    assert!(
        settles(&decide_in_flight(
            "eu-west-1",
            &rec,
            &alone,
            &policy(true),
            None,
            None,
            STUCK + 1
        ))
        .is_none()
    );
}

proptest! {
    /// Whatever the votes, execution status and stall: a settle is only ever
    /// decided by the initiator or a daemon with a quorum, for the record's
    /// own version and execution, with the outcome its step implies.
    #[test]
    fn settles_are_fenced_and_consistent(
        spec in votes_strategy(),
        me in 0usize..3,
        step in prop::sample::select(vec![Step::Claimed, Step::Mark, Step::Switched]),
        st in prop::option::of(prop::sample::select(vec![
            ExecutionStatus::NotStarted, ExecutionStatus::Running, ExecutionStatus::Succeeded, ExecutionStatus::Ended,
        ])),
        stalled in 0u64..(2 * STUCK),
    ) {
        let rec = in_flight(step);
        let vs = votes(&spec);
        let t = tally(REGIONS[me], &regions(), &vs, NOW, FRESH);
        let d = decide_in_flight(REGIONS[me], &RecordRead::Found(rec), &vs, &policy(true), None, st, stalled);
        if let Some((outcome, _)) = settles(&d) {
            prop_assert!(REGIONS[me] == "us-west-2" || t.no_quorum.is_none());
            prop_assert_eq!(outcome == Settlement::Completed, step == Step::Switched);
        }
        let started = matches!(d, Decision::Act { action: Action::StartFailover(_) });
        prop_assert!(!started, "started a failover while one is in flight: {:?}", d);
    }
}

#[test]
fn eventual_mode_initializes_the_preferred_region_whatever_the_votes() {
    // Everyone sees us-east-1 down; still, every replica gets us-east-1.
    let spec = vec![(true, 0u64, [true, false, false]); 3];
    for me in REGIONS {
        match decide(
            me,
            &RecordRead::Missing,
            &votes(&spec),
            &policy(false),
            None,
        ) {
            Decision::Act {
                action: Action::Initialize { active },
            } => assert_eq!(active, "us-east-1"),
            d => panic!("{d:?}"),
        }
    }
}

// ----- the approval gate (policy.approval = "manual", issue 13) -----

use failoverd::core::control::ProposalState;
use failoverd::core::record::{self, RecordWrite, Refused};

fn manual(on_timeout: OnApprovalTimeout) -> Policy {
    Policy {
        approval: Approval::Manual,
        on_approval_timeout: on_timeout,
        ..policy(true)
    }
}

/// Perform an action's record write with the real transition function (as
/// the executor does), at time `at`.
fn write(
    rec: &ControlRecord,
    action: &Action,
    by: &str,
    at: u64,
) -> Result<ControlRecord, Refused> {
    let w = match action.clone() {
        Action::Propose {
            expected_version,
            id,
            epoch,
            from,
            target,
            reason,
        } => RecordWrite::Propose {
            expected_version,
            id,
            epoch,
            from,
            target,
            by: by.into(),
            at,
            reason,
        },
        Action::Resolve {
            expected_version,
            epoch,
            target,
            id,
            state,
            reason,
            changed_by,
        } => RecordWrite::Resolve {
            expected_version,
            epoch,
            target,
            id,
            state,
            by: changed_by,
            at,
            reason,
        },
        Action::StartFailover(plan) => RecordWrite::Claim { plan },
        other => panic!("not written here: {other:?}"),
    };
    record::apply(Some(rec), &w)
}

fn act(d: Decision) -> Action {
    match d {
        Decision::Act { action } => action,
        other => panic!("expected an action, got {other:?}"),
    }
}

fn why(d: Decision) -> String {
    match d {
        Decision::Idle { why } | Decision::Refuse { why } => why,
        other => panic!("expected idle or refuse, got {other:?}"),
    }
}

fn operator(rec: &ControlRecord, req: Request) -> Decision {
    let spec = vec![(true, 0u64, [true, false, false]); 3];
    let t = failoverd::core::quorum::tally_as_operator(&regions(), &votes(&spec), NOW, FRESH);
    plan(&Inputs {
        now: NOW,
        me: "us-east-1",
        tally: &t,
        record: &RecordRead::Found(rec.clone()),
        execution: None,
        stalled_ms: 0,
        policy: &manual(OnApprovalTimeout::Expire),
        request: Some(&req),
        held: None,
        fleet_epoch: 0,
        readiness: &Default::default(),
    })
}

fn approve(epoch: u64) -> Request {
    Request::Approve {
        epoch: Some(epoch),
        proposal: None,
        to: None,
        reason: "looked at it".into(),
        operator: "op".into(),
    }
}

/// `failoverd approve --proposal ID [--to REGION]`.
fn approve_id(id: &str, to: Option<&str>) -> Request {
    Request::Approve {
        epoch: None,
        proposal: Some(id.into()),
        to: to.map(String::from),
        reason: "looked at it".into(),
        operator: "op".into(),
    }
}

fn reject(epoch: u64) -> Request {
    Request::Reject {
        epoch: Some(epoch),
        proposal: None,
        to: None,
        reason: "not now".into(),
        operator: "op".into(),
    }
}

/// us-east-1 down by every observer; us-west-2 proposes the failover of
/// epoch 4, proposed at `at` (on its clock).
fn proposed(pol: &Policy, at: u64) -> ControlRecord {
    let vs = votes(&[(true, 0u64, [true, false, false]); 3]);
    let rec = record(0, Mode::Auto, Phase::Steady, None);
    let a = act(decide(
        "us-west-2",
        &RecordRead::Found(rec.clone()),
        &vs,
        pol,
        None,
    ));
    write(&rec, &a, "us-west-2", at).expect("the proposal is written")
}

fn down_votes() -> Vec<failoverd::core::quorum::Vote> {
    votes(&[(true, 0u64, [true, false, false]); 3])
}

#[test]
fn manual_approval_proposes_instead_of_claiming() {
    let pol = manual(OnApprovalTimeout::Expire);
    let vs = down_votes();
    let rec = RecordRead::Found(record(0, Mode::Auto, Phase::Steady, None));
    match act(decide("us-west-2", &rec, &vs, &pol, None)) {
        Action::Propose {
            expected_version,
            epoch,
            from,
            target,
            ..
        } => {
            assert_eq!((expected_version, epoch), (7, 4));
            assert_eq!((from.as_str(), target.as_str()), ("us-east-1", "us-west-2"));
        }
        other => panic!("expected a proposal, got {other:?}"),
    }
    // Only the target proposes, as only the target claims.
    assert!(matches!(
        decide("eu-west-1", &rec, &vs, &pol, None),
        Decision::Idle { .. }
    ));
    // The written proposal claims nothing: the record stays steady, same epoch.
    let r = proposed(&pol, NOW);
    assert_eq!((r.phase, r.epoch, r.version), (Phase::Steady, 3, 8));
    let p = r.proposal.clone().unwrap();
    assert_eq!((p.epoch, p.state), (4, ProposalState::Proposed));
    // Next round: it waits (no second proposal, no claim), naming the command.
    let w = why(decide(
        "us-west-2",
        &RecordRead::Found(r.clone()),
        &vs,
        &pol,
        None,
    ));
    assert!(
        w.contains(&format!("failoverd approve --proposal {}", p.id)),
        "{w}"
    );
    // A second proposal of the same epoch is refused by the record itself.
    let again = RecordWrite::Propose {
        expected_version: r.version,
        id: "9-000000".into(),
        epoch: 4,
        from: "us-east-1".into(),
        target: "eu-west-1".into(),
        by: "eu-west-1".into(),
        at: NOW,
        reason: String::new(),
    };
    assert_eq!(
        record::apply(Some(&r), &again),
        Err(Refused::NoSuchProposal { epoch: 4 })
    );
}

#[test]
fn an_approved_proposal_is_claimed_by_its_target() {
    let pol = manual(OnApprovalTimeout::Expire);
    let vs = down_votes();
    let r = proposed(&pol, NOW);
    let a = act(operator(&r, approve(4)));
    assert!(
        matches!(
            a,
            Action::Resolve {
                state: ProposalState::Approved,
                epoch: 4,
                expected_version: 8,
                ..
            }
        ),
        "{a:?}"
    );
    let r = write(&r, &a, "operator:op", NOW).unwrap();
    assert_eq!(r.proposal.as_ref().unwrap().state, ProposalState::Approved);
    assert!(matches!(
        decide("eu-west-1", &RecordRead::Found(r.clone()), &vs, &pol, None),
        Decision::Idle { .. }
    ));
    let claim = act(decide(
        "us-west-2",
        &RecordRead::Found(r.clone()),
        &vs,
        &pol,
        None,
    ));
    let Action::StartFailover(p) = &claim else {
        panic!("expected the claim, got {claim:?}");
    };
    assert_eq!(
        (p.epoch, p.to.as_str(), p.automatic),
        (4, "us-west-2", true)
    );
    assert!(p.reason.contains("approved by operator:op"), "{}", p.reason);
    // The claim ends the proposal.
    let r = write(&r, &claim, "us-west-2", NOW).unwrap();
    assert_eq!(
        (r.phase, r.epoch, r.proposal),
        (Phase::FailingOver, 4, None)
    );
}

#[test]
fn a_stale_or_repeated_decision_is_refused() {
    let pol = manual(OnApprovalTimeout::Expire);
    let r = proposed(&pol, NOW);
    for epoch in [3, 5] {
        let w = why(operator(&r, approve(epoch)));
        assert!(w.contains("the proposal is for epoch 4"), "{w}");
        // The record refuses it too, whatever the planner said.
        let direct = RecordWrite::Resolve {
            expected_version: r.version,
            epoch,
            target: "us-west-2".into(),
            id: r.proposal.as_ref().unwrap().id.clone(),
            state: ProposalState::Approved,
            by: "operator:op".into(),
            at: NOW,
            reason: String::new(),
        };
        assert_eq!(
            record::apply(Some(&r), &direct),
            Err(Refused::NoSuchProposal { epoch })
        );
    }
    // Fenced on the version like every write: an approval planned on an
    // older read loses.
    let a = act(operator(&r, approve(4)));
    let moved = write(&r, &act(operator(&r, reject(4))), "operator:other", NOW).unwrap();
    assert!(matches!(
        write(&moved, &a, "operator:op", NOW),
        Err(Refused::VersionMoved { .. })
    ));
    // Decided once: a second decision is refused.
    let w = why(operator(&moved, approve(4)));
    assert!(w.contains("already rejected"), "{w}");
    // Without a proposal there is nothing to approve.
    let none = record(0, Mode::Auto, Phase::Steady, None);
    assert!(why(operator(&none, approve(4))).contains("no proposed failover"));
}

#[test]
fn a_rejected_proposal_is_not_claimed_and_is_proposed_again_only_after_the_interval() {
    let pol = manual(OnApprovalTimeout::Expire);
    let vs = down_votes();
    let r = proposed(&pol, NOW - 40_000);
    // Rejected just now: the target idles.
    let rejected = write(
        &r,
        &act(operator(&r, reject(4))),
        "operator:op",
        NOW - 1_000,
    )
    .unwrap();
    let w = why(decide(
        "us-west-2",
        &RecordRead::Found(rejected.clone()),
        &vs,
        &pol,
        None,
    ));
    assert!(w.contains("rejected"), "{w}");
    // min_failover_interval (30 s) after the rejection: a new proposal, of
    // the same epoch (nothing was claimed), which a new approval must name.
    let earlier = write(
        &r,
        &act(operator(&r, reject(4))),
        "operator:op",
        NOW - 30_000,
    )
    .unwrap();
    match act(decide(
        "us-west-2",
        &RecordRead::Found(earlier),
        &vs,
        &pol,
        None,
    )) {
        Action::Propose { epoch: 4, .. } => {}
        other => panic!("expected a new proposal, got {other:?}"),
    }
}

#[test]
fn the_approval_timeout_expires_or_proceeds() {
    let vs = down_votes();
    for (on_timeout, expect_claim) in [
        (OnApprovalTimeout::Expire, false),
        (OnApprovalTimeout::Proceed, true),
    ] {
        let pol = manual(on_timeout);
        // Not yet due (timeout 60 s): waits.
        let r = proposed(&pol, NOW - 59_000);
        assert!(matches!(
            decide("us-west-2", &RecordRead::Found(r), &vs, &pol, None),
            Decision::Idle { .. }
        ));
        let r = proposed(&pol, NOW - 60_000);
        // Only the proposer (the target) judges the timeout, on its own clock.
        assert!(matches!(
            decide("eu-west-1", &RecordRead::Found(r.clone()), &vs, &pol, None),
            Decision::Idle { .. }
        ));
        match act(decide(
            "us-west-2",
            &RecordRead::Found(r.clone()),
            &vs,
            &pol,
            None,
        )) {
            Action::StartFailover(p) => {
                assert!(expect_claim, "{on_timeout:?} claimed");
                assert_eq!(p.epoch, 4);
                assert!(p.reason.contains("approval timed out"), "{}", p.reason);
            }
            a @ Action::Resolve {
                state: ProposalState::Expired,
                ..
            } => {
                assert!(!expect_claim, "{on_timeout:?} expired");
                let r = write(&r, &a, "us-west-2", NOW).unwrap();
                // Expired: no claim, and no new proposal before the interval.
                assert!(matches!(
                    decide("us-west-2", &RecordRead::Found(r), &vs, &pol, None),
                    Decision::Idle { .. }
                ));
            }
            other => panic!("{on_timeout:?}: {other:?}"),
        }
    }
}

#[test]
fn a_proposal_whose_conditions_no_longer_hold_is_withdrawn() {
    let pol = manual(OnApprovalTimeout::Expire);
    let healthy = votes(&[(true, 0u64, [false, false, false]); 3]);
    for approved in [false, true] {
        let mut r = proposed(&pol, NOW);
        if approved {
            r = write(&r, &act(operator(&r, approve(4))), "operator:op", NOW).unwrap();
        }
        // The active recovered: any daemon with a quorum withdraws it.
        let a = act(decide(
            "eu-west-1",
            &RecordRead::Found(r.clone()),
            &healthy,
            &pol,
            None,
        ));
        assert!(
            matches!(
                a,
                Action::Resolve {
                    state: ProposalState::Withdrawn,
                    epoch: 4,
                    ..
                }
            ),
            "{a:?}"
        );
        let r = write(&r, &a, "eu-west-1", NOW).unwrap();
        assert_eq!(r.proposal.as_ref().unwrap().state, ProposalState::Withdrawn);
        // And an approval of a withdrawn proposal claims nothing.
        assert!(why(operator(&r, approve(4))).contains("already withdrawn"));
        assert!(matches!(
            decide("us-west-2", &RecordRead::Found(r), &healthy, &pol, None),
            Decision::Idle { .. }
        ));
    }
    // The target is no longer fit (us-west-2 down too): withdrawn, so that
    // eu-west-1 may propose itself.
    let r = proposed(&pol, NOW);
    let vs = votes(&[(true, 0u64, [true, true, false]); 3]);
    let a = act(decide("eu-west-1", &RecordRead::Found(r), &vs, &pol, None));
    assert!(
        matches!(
            a,
            Action::Resolve {
                state: ProposalState::Withdrawn,
                ..
            }
        ),
        "{a:?}"
    );
}

#[test]
fn an_operator_failover_needs_no_approval_and_clears_the_proposal() {
    let pol = manual(OnApprovalTimeout::Expire);
    let r = proposed(&pol, NOW);
    let a = act(operator(
        &r,
        Request::Failover {
            to: "eu-west-1".into(),
            reason: "drill".into(),
            ungraceful: false,
            force: false,
            operator: "op".into(),
        },
    ));
    let Action::StartFailover(p) = &a else {
        panic!("{a:?}")
    };
    assert!(!p.automatic);
    let r = write(&r, &a, "operator:op", NOW).unwrap();
    assert_eq!((r.epoch, r.proposal), (4, None));
}

#[test]
fn an_open_proposal_is_claimed_once_approval_is_no_longer_required() {
    let r = proposed(&manual(OnApprovalTimeout::Expire), NOW);
    let d = decide(
        "us-west-2",
        &RecordRead::Found(r),
        &down_votes(),
        &policy(true),
        None,
    );
    let Action::StartFailover(p) = act(d) else {
        panic!("expected the claim")
    };
    assert!(
        p.reason.contains("approval no longer required"),
        "{}",
        p.reason
    );
}

#[test]
fn the_tier_gate_withholds_a_proposal_for_a_tier3_fleet() {
    use failoverd::core::tier::{Tier, gate_automatic};
    let pol = manual(OnApprovalTimeout::Expire);
    let rec = RecordRead::Found(record(0, Mode::Auto, Phase::Steady, None));
    let d = decide("us-west-2", &rec, &down_votes(), &pol, None);
    assert!(matches!(
        gate_automatic(d.clone(), Tier::Tier2),
        Decision::Act { .. }
    ));
    assert!(matches!(
        gate_automatic(d, Tier::Tier3),
        Decision::Idle { .. }
    ));
}

// ----- approvals bind the proposal (issue 19, item 4) -----

/// us-east-1 down, us-west-2 down too (or its daemon gone): eu-west-1 is
/// the target.
fn only_eu_up() -> Vec<failoverd::core::quorum::Vote> {
    votes(&[(true, 0u64, [true, true, false]); 3])
}

/// The proposal of `r`, which must have one.
fn prop(r: &ControlRecord) -> failoverd::core::control::Proposal {
    r.proposal.clone().expect("a proposal")
}

/// B's proposal is withdrawn and C proposes the same epoch; then B again,
/// same epoch and target: an approval naming the first one (by its id, or
/// its target) approves neither; one by epoch alone binds the proposal
/// open now (and the prompt shows it); the record refuses a stale id too.
#[test]
fn an_approval_binds_the_proposal_it_names() {
    let pol = manual(OnApprovalTimeout::Expire);
    let first = proposed(&pol, NOW);
    let b = prop(&first);
    assert_eq!(
        b.id,
        failoverd::core::control::proposal_id("c0ffee", 8, "us-west-2", NOW)
    );
    // us-west-2 is lost too: withdrawn, and eu-west-1 proposes epoch 4.
    let w = act(decide(
        "eu-west-1",
        &RecordRead::Found(first.clone()),
        &only_eu_up(),
        &pol,
        None,
    ));
    let withdrawn = write(&first, &w, "eu-west-1", NOW).unwrap();
    let a = act(decide(
        "eu-west-1",
        &RecordRead::Found(withdrawn.clone()),
        &only_eu_up(),
        &pol,
        None,
    ));
    let second = write(&withdrawn, &a, "eu-west-1", NOW).unwrap();
    let c = prop(&second);
    assert_eq!((c.epoch, c.target.as_str()), (4, "eu-west-1"));
    assert_ne!(c.id, b.id);
    // Naming B (its id, or its target) approves nothing, and says what is open.
    for req in [
        approve_id(&b.id, None),
        approve_id(&b.id, Some("us-west-2")),
        Request::Approve {
            epoch: Some(4),
            proposal: None,
            to: Some("us-west-2".into()),
            reason: "looked at it".into(),
            operator: "op".into(),
        },
    ] {
        let w = why(operator(&second, req.clone()));
        assert!(
            w.contains(&format!("the open proposal is {}", c.id)) && w.contains("eu-west-1"),
            "{req:?}: {w}"
        );
    }
    // Neither an epoch nor an id: refused.
    let w = why(operator(
        &second,
        Request::Approve {
            epoch: None,
            proposal: None,
            to: Some("eu-west-1".into()),
            reason: String::new(),
            operator: "op".into(),
        },
    ));
    assert!(w.contains("name the proposal"), "{w}");
    // The record itself refuses a decision naming B, whatever a planner said.
    let stale = RecordWrite::Resolve {
        expected_version: second.version,
        epoch: 4,
        target: "us-west-2".into(),
        id: b.id.clone(),
        state: ProposalState::Approved,
        by: "operator:op".into(),
        at: NOW,
        reason: String::new(),
    };
    assert_eq!(
        record::apply(Some(&second), &stale),
        Err(Refused::NoSuchProposal { epoch: 4 })
    );
    // Same epoch, same target, another proposal: the id tells them apart.
    let same_target = RecordWrite::Resolve {
        expected_version: second.version,
        epoch: 4,
        target: "eu-west-1".into(),
        id: "1-000000".into(),
        state: ProposalState::Approved,
        by: "operator:op".into(),
        at: NOW,
        reason: String::new(),
    };
    assert_eq!(
        record::apply(Some(&second), &same_target),
        Err(Refused::NoSuchProposal { epoch: 4 })
    );
    // By epoch alone: it binds the proposal open now, C, by target and id.
    match act(operator(&second, approve(4))) {
        Action::Resolve { target, id, .. } => {
            assert_eq!((target.as_str(), id.as_str()), ("eu-west-1", c.id.as_str()))
        }
        other => panic!("{other:?}"),
    }
    // By its name: approved, that one.
    let a = act(operator(&second, approve_id(&c.id, Some("eu-west-1"))));
    let approved = write(&second, &a, "operator:op", NOW).unwrap();
    let p = prop(&approved);
    assert_eq!(
        (p.state, p.id.as_str(), p.target.as_str()),
        (ProposalState::Approved, c.id.as_str(), "eu-west-1")
    );
}

/// Votes with us-east-1's daemon gone (the active lost with its region):
/// us-west-2 and eu-west-1 fresh, each seeing us-east-1 down or not.
fn two_observers(west_sees_down: bool, eu_sees_down: bool) -> Vec<failoverd::core::quorum::Vote> {
    votes(&[
        (false, 0u64, [true, false, false]),
        (true, 0, [west_sees_down, false, false]),
        (true, 0, [eu_sees_down, false, false]),
    ])
}

/// One observer's view of the active flips for a round: with the active's
/// daemon gone, that splits the verdict. A proposal still awaiting approval
/// is withdrawn (an approval of it would be refused by its id, and the next
/// one is a new proposal); an approved one is kept, and withdrawn only when
/// the quorum sees the active up again.
#[test]
fn an_approved_proposal_is_withdrawn_only_by_the_quorum() {
    let pol = manual(OnApprovalTimeout::Expire);
    let r = proposed(&pol, NOW);
    let id = prop(&r).id;
    let approved = write(
        &r,
        &act(operator(&r, approve_id(&id, Some("us-west-2")))),
        "operator:op",
        NOW,
    )
    .unwrap();
    let flipped = two_observers(true, false);
    for me in ["us-west-2", "eu-west-1"] {
        let w = why(decide(
            me,
            &RecordRead::Found(approved.clone()),
            &flipped,
            &pol,
            None,
        ));
        assert!(
            me == "us-west-2" || w.contains("withdrawn only when a quorum sees us-east-1 up"),
            "{me}: {w}"
        );
    }
    // Not approved yet: that same view withdraws it.
    assert!(matches!(
        act(decide(
            "eu-west-1",
            &RecordRead::Found(r.clone()),
            &flipped,
            &pol,
            None
        )),
        Action::Resolve {
            state: ProposalState::Withdrawn,
            ..
        }
    ));
    // Both fresh observers see it down again: the target claims it.
    let a = act(decide(
        "us-west-2",
        &RecordRead::Found(approved.clone()),
        &two_observers(true, true),
        &pol,
        None,
    ));
    assert!(
        matches!(a, Action::StartFailover(ref p) if p.epoch == 4),
        "{a:?}"
    );
    // The quorum sees the active up: withdrawn, saying so.
    match act(decide(
        "eu-west-1",
        &RecordRead::Found(approved.clone()),
        &two_observers(false, false),
        &pol,
        None,
    )) {
        Action::Resolve {
            state: ProposalState::Withdrawn,
            id: wid,
            reason,
            ..
        } => {
            assert_eq!(wid, id);
            assert!(reason.contains("sees us-east-1 up again"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The quorum sees the target down, or its daemon is gone: withdrawn.
    let target_down = votes(&[(true, 0u64, [true, true, false]); 3]);
    let target_gone = votes(&[
        (true, 0u64, [true, false, false]),
        (false, 0, [true, false, false]),
        (true, 0, [true, false, false]),
    ]);
    for (vs, says) in [
        (target_down, "sees the target us-west-2 down"),
        (target_gone, "not live"),
    ] {
        match act(decide(
            "eu-west-1",
            &RecordRead::Found(approved.clone()),
            &vs,
            &pol,
            None,
        )) {
            Action::Resolve {
                state: ProposalState::Withdrawn,
                reason,
                ..
            } => assert!(reason.contains(says), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}

/// Approved for eu-west-1 while us-west-2's daemon was gone; us-west-2 is
/// back: the approved failover still goes to eu-west-1 (what the operator
/// approved), rather than being withdrawn because another target is now
/// preferred.
#[test]
fn an_approved_target_is_claimed_even_when_another_is_now_preferred() {
    let pol = manual(OnApprovalTimeout::Expire);
    let west_gone = votes(&[
        (true, 0u64, [true, false, false]),
        (false, 0, [true, false, false]),
        (true, 0, [true, false, false]),
    ]);
    let rec = record(0, Mode::Auto, Phase::Steady, None);
    let a = act(decide(
        "eu-west-1",
        &RecordRead::Found(rec.clone()),
        &west_gone,
        &pol,
        None,
    ));
    let r = write(&rec, &a, "eu-west-1", NOW).unwrap();
    let p = prop(&r);
    assert_eq!(p.target, "eu-west-1");
    let approved = write(
        &r,
        &act(operator(&r, approve_id(&p.id, None))),
        "operator:op",
        NOW,
    )
    .unwrap();
    let all = down_votes();
    assert!(matches!(
        decide(
            "us-west-2",
            &RecordRead::Found(approved.clone()),
            &all,
            &pol,
            None
        ),
        Decision::Idle { .. }
    ));
    let a = act(decide(
        "eu-west-1",
        &RecordRead::Found(approved),
        &all,
        &pol,
        None,
    ));
    assert!(
        matches!(a, Action::StartFailover(ref f) if f.to == "eu-west-1" && f.reason.contains(&p.id)),
        "{a:?}"
    );
}

// ----- a lost or restored record (issue 19 item 9) -----

fn with_copy(rec: &RecordRead, held: Option<&ControlRecord>, fleet_epoch: u64) -> Decision {
    // Everyone fresh, every region up.
    let vs = votes(&[(true, 0u64, [false, false, false]); 3]);
    let t = tally("us-east-1", &regions(), &vs, NOW, FRESH);
    plan(&Inputs {
        now: NOW,
        me: "us-east-1",
        tally: &t,
        record: rec,
        execution: None,
        stalled_ms: 0,
        policy: &policy(true),
        request: None,
        held,
        fleet_epoch,
        readiness: &Default::default(),
    })
}

/// The copy this daemon holds: us-west-2 active after a failover, paused.
fn copy() -> ControlRecord {
    let mut r = record(1, Mode::Paused, Phase::Steady, Some(NOW - 60_000));
    r.previous = Some("us-east-1".into());
    r
}

#[test]
fn a_missing_record_is_recreated_from_the_copy_not_initialized_afresh() {
    // Before: the highest-priority region up (us-east-1) was initialized,
    // unpaused, with no predecessor: an unreviewed failback.
    match with_copy(&RecordRead::Missing, Some(&copy()), 3) {
        Decision::Act {
            action: Action::Recreate { from, reason },
        } => {
            assert_eq!(from.active, "us-west-2", "{reason}");
            assert_eq!(from.mode, Mode::Paused, "the pause is kept");
            assert_eq!(from.epoch, 4, "an epoch above any the fleet has seen");
            assert_eq!(from.previous.as_deref(), Some("us-east-1"));
            assert_eq!(from.last_failover_at, Some(NOW - 60_000));
            assert_eq!(from.replaces, None, "only if there is none");
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_daemon_with_an_older_copy_or_none_waits_and_says_why() {
    let mut old = copy();
    old.epoch = 2;
    let w = why(with_copy(&RecordRead::Missing, Some(&old), 3));
    assert!(w.contains("newer than this daemon's copy"), "{w}");
    let w = why(with_copy(&RecordRead::Missing, None, 3));
    assert!(w.contains("restart every daemon"), "{w}");
    // Nothing was ever seen: a first start initializes as before.
    assert!(matches!(
        with_copy(&RecordRead::Missing, None, 0),
        Decision::Act {
            action: Action::Initialize { .. }
        }
    ));
}

#[test]
fn a_restored_older_record_gets_a_fresh_incarnation_from_the_copy() {
    // A point-in-time restore: the same incarnation, an older version,
    // naming the region that was active back then.
    let mut restored = record(0, Mode::Auto, Phase::Steady, None);
    restored.version = 5;
    restored.epoch = 2;
    match with_copy(&RecordRead::Found(restored.clone()), Some(&copy()), 3) {
        Decision::Act {
            action: Action::Recreate { from, .. },
        } => {
            assert_eq!(from.replaces, Some(5), "only over the restored copy");
            assert_eq!((from.active.as_str(), from.epoch), ("us-west-2", 4));
            assert_eq!(from.mode, Mode::Paused);
        }
        d => panic!("{d:?}"),
    }
    // A record of another incarnation is not "older": planned as usual.
    restored.incarnation = "beef".into();
    assert!(!matches!(
        with_copy(&RecordRead::Found(restored), Some(&copy()), 3),
        Decision::Act {
            action: Action::Recreate { .. }
        }
    ));
}

// ---------------------------------------------------------------------------
// Readiness (issue 26; docs/readiness.md): a ready target before a
// higher-priority unready one; readiness orders, never blocks.
// ---------------------------------------------------------------------------

fn ready(pairs: &[(&str, Ready)]) -> FleetReadiness {
    pairs
        .iter()
        .map(|(r, v)| (r.to_string(), v.clone()))
        .collect()
}

fn unready(why: &str) -> Ready {
    Ready::Unready(why.into())
}

fn auto(me: &str, rec: &RecordRead, vs: &[Vote], pol: &Policy, r: &FleetReadiness) -> Decision {
    decide_ready(me, rec, vs, pol, None, None, 0, r)
}

#[test]
fn a_ready_target_is_preferred_over_a_higher_priority_unready_one() {
    let vs = down_votes();
    let rec = RecordRead::Found(record(0, Mode::Auto, Phase::Steady, None));
    let pol = policy(true);
    let r = ready(&[
        ("us-west-2", unready("prov model")),
        ("eu-west-1", Ready::Ready),
    ]);
    match act(auto("eu-west-1", &rec, &vs, &pol, &r)) {
        Action::StartFailover(p) => {
            assert_eq!((p.to.as_str(), p.epoch), ("eu-west-1", 4));
            assert!(
                p.reason
                    .contains("eu-west-1 preferred over us-west-2 (not ready: prov model)"),
                "{}",
                p.reason
            );
        }
        other => panic!("{other:?}"),
    }
    let w = why(auto("us-west-2", &rec, &vs, &pol, &r));
    assert!(w.contains("eu-west-1 is the failover target"), "{w}");
    // Unknown (a stale or missing reading) is not unready: priority holds.
    for west in [Ready::Unknown, Ready::Ready] {
        let r = ready(&[("us-west-2", west), ("eu-west-1", Ready::Ready)]);
        match act(auto("us-west-2", &rec, &vs, &pol, &r)) {
            Action::StartFailover(p) => assert_eq!(p.to, "us-west-2"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            auto("eu-west-1", &rec, &vs, &pol, &r),
            Decision::Idle { .. }
        ));
    }
}

#[test]
fn an_unready_target_is_still_chosen_when_it_is_the_only_one() {
    let rec = RecordRead::Found(record(0, Mode::Auto, Phase::Steady, None));
    let pol = policy(true);
    // eu-west-1's daemon is dead (its vote stale): us-west-2, unready, is
    // the only region that can take over, and it does.
    let vs = votes(&[
        (true, 0u64, [true, false, false]),
        (true, 0, [true, false, false]),
        (true, 9_999, [true, false, false]),
    ]);
    let r = ready(&[
        ("us-west-2", unready("prov capacity")),
        ("eu-west-1", Ready::Ready),
    ]);
    match act(auto("us-west-2", &rec, &vs, &pol, &r)) {
        Action::StartFailover(p) => assert_eq!(p.to, "us-west-2"),
        other => panic!("{other:?}"),
    }
    // Both unready: priority decides among them.
    let vs = down_votes();
    let r = ready(&[
        ("us-west-2", unready("prov model")),
        ("eu-west-1", unready("prov exists")),
    ]);
    match act(auto("us-west-2", &rec, &vs, &pol, &r)) {
        Action::StartFailover(p) => assert_eq!(p.to, "us-west-2"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_an_abort_another_target_still_comes_first() {
    // us-west-2 (ready) just aborted, eu-west-1 is unready: the rule "another
    // target than the one that just aborted" comes first, so eu-west-1 goes.
    let vs = down_votes();
    let mut rec = record(0, Mode::Auto, Phase::Steady, Some(NOW - 60_000));
    rec.step = Step::Aborted;
    rec.aborts = 1;
    rec.target = Some("us-west-2".into());
    let rec = RecordRead::Found(rec);
    let r = ready(&[
        ("us-west-2", Ready::Ready),
        ("eu-west-1", unready("prov model")),
    ]);
    match act(auto("eu-west-1", &rec, &vs, &policy(true), &r)) {
        Action::StartFailover(p) => assert_eq!(p.to, "eu-west-1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failback_never_goes_onto_an_unready_region() {
    // us-west-2 active, us-east-1 (preferred) up again, auto_failback on.
    let vs = votes(&[(true, 0u64, [false; 3]); 3]);
    let rec = RecordRead::Found(record(1, Mode::Auto, Phase::Steady, Some(0)));
    let pol = policy(true);
    let r = ready(&[("us-east-1", unready("prov model"))]);
    let w = why(auto("us-east-1", &rec, &vs, &pol, &r));
    assert!(w.starts_with("steady"), "{w}");
    let r = ready(&[("us-east-1", Ready::Unknown)]);
    match act(auto("us-east-1", &rec, &vs, &pol, &r)) {
        Action::StartFailover(p) => assert_eq!(p.to, "us-east-1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_approval_a_target_turned_unready_is_withdrawn_unless_approved() {
    let pol = manual(OnApprovalTimeout::Expire);
    let vs = down_votes();
    // Proposed to us-west-2 while it was ready; now it is not, and eu-west-1 is.
    let r = proposed(&pol, NOW);
    let now_unready = ready(&[
        ("us-west-2", unready("prov model")),
        ("eu-west-1", Ready::Ready),
    ]);
    match act(auto(
        "eu-west-1",
        &RecordRead::Found(r.clone()),
        &vs,
        &pol,
        &now_unready,
    )) {
        Action::Resolve { state, reason, .. } => {
            assert_eq!(state, ProposalState::Withdrawn);
            assert!(
                reason.contains("the failover target is now eu-west-1"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Approved: the operator chose that failover, readiness does not undo it.
    let a = act(operator(&r, approve(4)));
    let r = write(&r, &a, "operator:op", NOW).unwrap();
    match act(auto(
        "us-west-2",
        &RecordRead::Found(r),
        &vs,
        &pol,
        &now_unready,
    )) {
        Action::StartFailover(p) => assert_eq!(p.to, "us-west-2"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_fleet_readiness_counts_fresh_current_readings_only() {
    use failoverd::core::standby::{Published, Severity, fleet_readiness};
    let published = |against: &str, worst: Severity, ago: u64| Published {
        against: against.into(),
        worst,
        critical: if worst == Severity::Critical {
            vec!["prov model".into()]
        } else {
            vec![]
        },
        checked_ago_ms: ago,
    };
    let mut vs = down_votes();
    vs[1].readiness = Some(published("us-east-1", Severity::Critical, 1_000));
    vs[2].readiness = Some(published("us-east-1", Severity::Warning, 1_000));
    let fresh: Vec<String> = regions();
    let r = fleet_readiness(&vs, &fresh, "us-east-1", 600_000);
    assert_eq!(r.get("us-west-2"), Some(&unready("prov model")));
    assert_eq!(
        r.get("eu-west-1"),
        Some(&Ready::Ready),
        "a warning is ready"
    );
    assert_eq!(r.get("us-east-1"), None, "the active is not judged");
    // Stale: unknown, not unready.
    vs[1].readiness = Some(published("us-east-1", Severity::Critical, 600_001));
    let r = fleet_readiness(&vs, &fresh, "us-east-1", 600_000);
    assert_eq!(r.get("us-west-2"), Some(&Ready::Unknown));
    // Judged against another active (before a failover): unknown.
    vs[1].readiness = Some(published("eu-west-1", Severity::Critical, 1_000));
    let r = fleet_readiness(&vs, &fresh, "us-east-1", 600_000);
    assert_eq!(r.get("us-west-2"), Some(&Ready::Unknown));
    // A vote that is not fresh is not read at all; none published: unknown.
    vs[1].readiness = Some(published("us-east-1", Severity::Critical, 1_000));
    vs[2].readiness = None;
    let r = fleet_readiness(
        &vs,
        &["us-east-1".to_string(), "eu-west-1".to_string()],
        "us-east-1",
        600_000,
    );
    assert_eq!(r.get("us-west-2"), None);
    assert_eq!(r.get("eu-west-1"), Some(&Ready::Unknown));
}

fn readiness_strategy() -> impl Strategy<Value = [u8; 3]> {
    any::<[u8; 3]>().prop_map(|a| a.map(|x| x % 3))
}

fn readiness_of(spec: [u8; 3]) -> FleetReadiness {
    REGIONS
        .iter()
        .zip(spec)
        .map(|(r, x)| {
            (
                r.to_string(),
                match x {
                    0 => Ready::Ready,
                    1 => Ready::Unknown,
                    _ => unready("prov model"),
                },
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(prop::test_runner::FileFailurePersistence::Direct("tests/proptest-regressions/planner.txt"))),
        ..ProptestConfig::default()
    })]

    /// Every daemon plans on the same votes, record and readiness: at most
    /// one starts a failover, of the next epoch; its target is unready only
    /// when every region that can take over is; a dead active is always
    /// failed away from when some region can take over (readiness never
    /// blocks).
    #[test]
    fn readiness_keeps_one_start_and_never_blocks(spec in votes_strategy(), active in 0usize..3, rs in readiness_strategy()) {
        let rec = RecordRead::Found(record(active, Mode::Auto, Phase::Steady, None));
        let vs = votes(&spec);
        let pol = policy(true);
        let r = readiness_of(rs);
        let starts: Vec<_> = REGIONS
            .iter()
            .filter_map(|me| match auto(me, &rec, &vs, &pol, &r) {
                Decision::Act { action: Action::StartFailover(p) } => Some((me.to_string(), p)),
                _ => None,
            })
            .collect();
        prop_assert!(starts.len() <= 1, "two starters: {starts:?}");
        // The same decisions without readiness: a failover away from the
        // active (not a failback) happens with it exactly when without.
        let without: Vec<_> = REGIONS
            .iter()
            .filter_map(|me| match decide(me, &rec, &vs, &pol, None) {
                Decision::Act { action: Action::StartFailover(p) } => Some(p),
                _ => None,
            })
            .collect();
        let rescue = |p: &failoverd::core::plan::FailoverPlan| p.reason.contains("down");
        prop_assert_eq!(
            starts.iter().any(|(_, p)| rescue(p)),
            without.iter().any(rescue)
        );
        for (me, p) in &starts {
            prop_assert_eq!(p.epoch, 4);
            prop_assert_eq!(&p.initiator, me);
            if r[&p.to].is_unready() && rescue(p) {
                // Every other region that could take over is unready too.
                let t = tally(me, &regions(), &vs, NOW, FRESH);
                for other in REGIONS.iter().filter(|o| **o != p.to && **o != REGIONS[active]) {
                    let able = t.is(other, failoverd::core::quorum::Consensus::Up)
                        && t.fresh_observers.iter().any(|o| o == other);
                    prop_assert!(!able || r[*other].is_unready(), "{} unready chosen over {other}", p.to);
                }
            }
        }
    }
}
