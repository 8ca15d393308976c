//! Property tests of the pure planner (core::plan) with the real quorum
//! tally: for any votes, at most one daemon starts a failover per epoch; an
//! isolated observer never acts; paused mode never acts automatically.

use std::collections::BTreeMap;

use failoverd::core::control::{ControlRecord, Mode, Phase};
use failoverd::core::health::Verdict;
use failoverd::core::plan::{Action, Decision, Inputs, Policy, RecordRead, Request, plan};
use failoverd::core::quorum::{Vote, tally};
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
        stuck_failover_ms: failoverd::core::plan::STUCK_FAILOVER_MS,
    }
}

fn record(active: usize, mode: Mode, phase: Phase, last_failover_at: Option<u64>) -> ControlRecord {
    ControlRecord {
        version: 7,
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
        step: None,
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
    let t = tally(me, &regions(), vs, NOW, FRESH);
    plan(&Inputs {
        now: NOW,
        me,
        tally: &t,
        record: rec,
        execution: None,
        policy: pol,
        request: req,
    })
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
        let d = plan(&Inputs { now: NOW, me: "us-east-1", tally: &t, record: &rec, execution: None, policy: &pol, request: Some(&req) });
        let healthy = t.is(REGIONS[to], failoverd::core::quorum::Consensus::Up);
        match d {
            Decision::Act { action: Action::StartFailover(p) } => {
                prop_assert!(to != 0);
                prop_assert!(force || healthy);
                prop_assert_eq!(p.forced, force);
                prop_assert!(!p.automatic);
            }
            Decision::Refuse { .. } => prop_assert!(to == 0 || (!force && !healthy)),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn in_flight_failover_refuses_manual_requests() {
    let mut r = record(0, Mode::Auto, Phase::FailingOver, None);
    r.execution = Some("failover-3".into());
    r.target = Some("us-west-2".into());
    let rec = RecordRead::Found(r);
    let spec = vec![(true, 0u64, [false; 3]); 3];
    let req = Request::Failover {
        to: "eu-west-1".into(),
        reason: "x".into(),
        ungraceful: false,
        force: true,
        operator: "op".into(),
    };
    match decide("us-east-1", &rec, &votes(&spec), &policy(true), Some(&req)) {
        Decision::Refuse { why } => assert!(why.contains("already in flight"), "{why}"),
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
        Decision::Idle { why } => assert!(why.contains("minimum interval"), "{why}"),
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_failover_whose_initiator_is_gone_is_settled_after_the_workflow_bound() {
    let mut r = record(0, Mode::Auto, Phase::FailingOver, None);
    r.execution = Some("failover-3".into());
    r.initiator = Some("us-west-2".into());
    r.target = Some("us-west-2".into());
    // us-west-2's vote is stale (its region died after claiming).
    let spec = vec![
        (true, 0u64, [false; 3]),
        (true, 9_999, [false; 3]),
        (true, 0, [false; 3]),
    ];
    let vs = votes(&spec);
    r.changed_at = NOW - 60_000;
    let rec = RecordRead::Found(r.clone());
    assert!(
        matches!(
            decide("eu-west-1", &rec, &vs, &policy(true), None),
            Decision::Idle { .. }
        ),
        "too early"
    );
    r.changed_at = NOW - failoverd::core::plan::STUCK_FAILOVER_MS - 1;
    let rec = RecordRead::Found(r.clone());
    match decide("eu-west-1", &rec, &vs, &policy(true), None) {
        Decision::Act {
            action:
                Action::Settle {
                    expected_version,
                    execution,
                },
        } => {
            assert_eq!((expected_version, execution.as_str()), (7, "failover-3"));
        }
        d => panic!("{d:?}"),
    }
    // While the initiator is alive, it (not we) deals with its execution.
    let alive = vec![(true, 0u64, [false; 3]); 3];
    assert!(matches!(
        decide("eu-west-1", &rec, &votes(&alive), &policy(true), None),
        Decision::Idle { .. }
    ));
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
