//! Property tests of the pure planner (core::plan) with the real quorum
//! tally: for any votes, at most one daemon starts a failover per epoch; an
//! isolated observer never acts; paused mode never acts automatically; a
//! dead target is passed over; an in-flight failover never wedges the record.

use std::collections::BTreeMap;

use failoverd::core::control::{ControlRecord, Mode, Phase, Step};
use failoverd::core::health::Verdict;
use failoverd::core::plan::{
    Action, Decision, ExecutionStatus, Inputs, Policy, RecordRead, Request, plan,
};
use failoverd::core::quorum::{Vote, tally};
use failoverd::core::record::Settlement;
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
        let d = plan(&Inputs { now: NOW, me: "us-east-1", tally: &t, record: &rec, execution: None, stalled_ms: 0, policy: &pol, request: Some(&req) });
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
                prop_assert_eq!(p.execution, format!("failover-c0ffee-{}", p.epoch));
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
            assert_eq!(p.execution, "failover-c0ffee-4");
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
