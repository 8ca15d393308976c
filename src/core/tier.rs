//! DR tiers: what each tier lets failover and cost controls do. Pure: no
//! I/O, no clock (time passed in as unix milliseconds).
//!
//! The seed classifies workloads "by business impact: Tier 1 synchronous
//! replication, Tier 2 asynchronous, Tier 3 backup/restore". failoverd gives
//! each model a tier (issue 12):
//!
//! | tier | name | automatic failover | the standby holds | idle detection may |
//! |---|---|---|---|---|
//! | `tier1` | warm standby | yes | at least the active's measured need | nothing |
//! | `tier2` | pilot light | yes | its minimum; the prepare step scales it up | reduce to minimum |
//! | `tier3` | backup/restore | no (manual, runbook) | its minimum | reduce; stop outside production |
//!
//! `tier1` needs strong consistency (MRSC) of the control table: the seed's
//! "synchronous replication, RPO near zero" cannot hold over last-writer-wins
//! replicas, so configuration refuses `tier1` with `tables.consistency =
//! "eventual"`.
//!
//! # One endpoint, several models
//!
//! A region's endpoints are shared by every model (the router sends each
//! model as the SageMaker `TargetModel`), so a rule about an *endpoint* uses
//! the strictest tier of the models it serves ([`strictest`]): one `tier1`
//! model keeps the whole standby endpoint warm. We rejected per-model
//! capacity: SageMaker scales variants, not target models.
//!
//! # The prepare step
//!
//! Before a switch, the target region's provisioned variants are scaled up to
//! the active's *current* capacity ([`prepare_plan`]), then the daemon waits
//! until the endpoint is `InService` with that capacity, within the prepare
//! budget ([`prepare_progress`]). For `tier1` this is normally a no-op (the
//! standby is kept at the active's measured need, and the plan only tops up
//! drift); for `tier2` it is the main work; for `tier3` it runs only on a
//! manual failover ([`gate_failover`]). The plan never scales anything down:
//! a failover is not the moment to save money.
//!
//! Past the budget (`OverBudget`) the daemon's prepare step fails the step
//! (the old region stays active, and the scale-up it asked for carries on)
//! when the old region still serves; when the old region is down
//! (`old_region_healthy = false`, or an ungraceful failover) it switches
//! onto what the target holds: fewer instances serve, a dead region serves
//! nothing (`control::prepare`).
//!
//! # Automatic failover of a fleet of models
//!
//! The control record moves the whole fleet: one active region for every
//! model (the endpoints are shared). So a tier cannot stop automatic
//! failover for one model's traffic alone; [`gate_automatic`] applies the
//! strictest tier of the configured models, like [`strictest`] for
//! endpoints: automatic failover is off only when *every* model is `tier3`
//! (then the planner's automatic failovers become an idle decision, and an
//! operator fails over with the runbook). In a mixed fleet the `tier3`
//! models move with the others. We rejected the opposite reading (one
//! `tier3` model stops automatic failover for all): it would let the least
//! important model hold the most important ones on a dead region.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::plan::Decision;

/// A model's disaster-recovery tier. Ordered from strictest (`Tier1`) to
/// most relaxed (`Tier3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Warm standby: automatic failover, the standby keeps capacity ready,
    /// strong consistency required.
    Tier1,
    /// Pilot light: automatic failover, the standby may idle at minimum, the
    /// prepare step scales it up before the switch.
    Tier2,
    /// Backup/restore: no automatic failover; manual only, with a runbook.
    Tier3,
}

/// What a tier's standby endpoint must hold while no failover is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StandbyHolds {
    /// At least the capacity the router measured the active region needs,
    /// so a switch needs no scale-up.
    ActiveNeed,
    /// Its own minimum (the schedule's, else the endpoint floor).
    Minimum,
}

/// A region's part in failover, as the cost rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionRole {
    /// The control record names it active.
    Active,
    /// The target of a failover being prepared or switched to. Not "the
    /// region that would be chosen next": that reading would forbid a pilot
    /// light in a two-region fleet, whose only standby is always next.
    FailoverTarget,
    /// Any other serving region.
    Standby,
}

/// How far back the routers' counts are read to say whether a region that is
/// not active is carrying traffic ([`guard`]): five minutes, the shortest
/// window a vote publishes.
pub const SERVING_WINDOW_MS: u64 = 5 * 60_000;

/// Why a region's capacity must not be lowered now, whatever its schedule
/// or idle detection says (docs/cost-and-tiers.md, "Never starve the region
/// that serves"). A guarded region may still be raised: to its schedule,
/// and to the fleet's measured need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "guard", rename_all = "snake_case")]
pub enum Guard {
    /// Not the active region, but the fleet's routers sent its endpoint
    /// traffic in the last [`SERVING_WINDOW_MS`] (a failover held back by
    /// approval, a rejection, `min_failover_interval`, `tier3` or eventual
    /// mode while the routers already route around the active), or nobody
    /// can say they did not (`known = false`: a router has not published).
    Serving { known: bool },
    /// The target of a live proposal (awaiting approval, or approved and
    /// about to be claimed).
    ProposedTarget,
    /// The active region, within its first whole need window since it
    /// became active (`since_ms`, the record's `switched_at`): its own
    /// counts cover only part of the window.
    NewActive { since_ms: u64 },
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Guard::Serving { known: true } => f.write_str(
                "the routers sent this standby traffic in the last 5 minutes: it serves, so it is never lowered",
            ),
            Guard::Serving { known: false } => f.write_str(
                "not every router has published its counts: this standby may be serving, so it is not lowered",
            ),
            Guard::ProposedTarget => {
                f.write_str("the target of an open failover proposal is never lowered")
            }
            Guard::NewActive { .. } => f.write_str(
                "the new active region is never lowered in its first whole measurement window",
            ),
        }
    }
}

/// The guard on `region`'s capacity now (see [`Guard`]). `serving`: whether
/// the fleet's routers counted invocations of the region's endpoint in the
/// last [`SERVING_WINDOW_MS`] (`None`: not known). `need_window_ms`: how
/// long a measurement of the active's need takes. A failover target being
/// prepared is not guarded here: every rule leaves it alone outright.
pub fn guard(
    region: &str,
    record: &crate::core::control::ControlRecord,
    now_ms: u64,
    serving: Option<bool>,
    need_window_ms: u64,
) -> Option<Guard> {
    if record.active == region {
        return record
            .switched_at
            .filter(|at| now_ms.saturating_sub(*at) < need_window_ms)
            .map(|since_ms| Guard::NewActive { since_ms });
    }
    if record.proposes(region) {
        return Some(Guard::ProposedTarget);
    }
    match serving {
        Some(false) => None,
        Some(true) => Some(Guard::Serving { known: true }),
        None => Some(Guard::Serving { known: false }),
    }
}

impl Tier {
    /// Every tier, strictest first.
    pub const ALL: [Tier; 3] = [Tier::Tier1, Tier::Tier2, Tier::Tier3];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Tier1 => "tier1",
            Tier::Tier2 => "tier2",
            Tier::Tier3 => "tier3",
        }
    }

    /// The DR pattern's usual name, for status output.
    pub fn pattern(self) -> &'static str {
        match self {
            Tier::Tier1 => "warm standby",
            Tier::Tier2 => "pilot light",
            Tier::Tier3 => "backup/restore",
        }
    }

    /// May the daemons fail this model's traffic over without an operator?
    pub fn automatic_failover(self) -> bool {
        matches!(self, Tier::Tier1 | Tier::Tier2)
    }

    /// Does this tier need the control table's strong (MRSC) consistency?
    pub fn requires_strong_consistency(self) -> bool {
        self == Tier::Tier1
    }

    /// What a standby endpoint of this tier holds.
    pub fn standby_holds(self) -> StandbyHolds {
        match self {
            Tier::Tier1 => StandbyHolds::ActiveNeed,
            Tier::Tier2 | Tier::Tier3 => StandbyHolds::Minimum,
        }
    }

    /// May idle detection reduce a standby endpoint of this tier to its
    /// minimum? Not `tier1`: its standby must stay ready.
    pub fn idle_may_reduce(self) -> bool {
        self != Tier::Tier1
    }

    /// May idle detection stop (delete) an idle endpoint of this tier outside
    /// production? Only `tier3`: a `tier2` prepare step scales the standby's
    /// variants up, and a deleted endpoint has none to scale.
    pub fn idle_may_stop(self) -> bool {
        self == Tier::Tier3
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tier name that is not `tier1`, `tier2` or `tier3`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a DR tier: use \"tier1\" (warm standby), \"tier2\" (pilot light) or \"tier3\" (backup/restore)"
)]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| UnknownTier(s.to_string()))
    }
}

/// The tier that governs an endpoint shared by models of `tiers`: the
/// strictest. `None` when it serves no model.
pub fn strictest(tiers: impl IntoIterator<Item = Tier>) -> Option<Tier> {
    tiers.into_iter().min()
}

/// Why a failover of a model's traffic may not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum TierRefusal {
    /// `tier3` models fail over only by hand.
    #[error("{tier} ({}) has no automatic failover: fail over by hand with the runbook", tier.pattern())]
    ManualOnly { tier: Tier },
}

/// May a failover of traffic governed by `tier` start? `automatic` is true
/// for the planner's own decisions and false for an operator's request.
pub fn gate_failover(tier: Tier, automatic: bool) -> Result<(), TierRefusal> {
    if automatic && !tier.automatic_failover() {
        Err(TierRefusal::ManualOnly { tier })
    } else {
        Ok(())
    }
}

/// Filter a decision of the planner's *automatic* round through the tier
/// that governs the fleet (the strictest of the configured models'): an
/// automatic `StartFailover` becomes `Idle` with the refusal as the reason
/// when that tier has no automatic failover. Everything else passes
/// unchanged (a `Propose` is gated like the failover it proposes): operators' failovers (`automatic = false`), settles,
/// initialization, and a claimed failover's `EnsureExecution` (already
/// claimed, it must run to its end).
pub fn gate_automatic(decision: Decision, governing: Tier) -> Decision {
    // A proposal is an automatic failover waiting for approval: a tier
    // without automatic failover does not propose one either.
    let Some(target) = decision.automatic_failover_target() else {
        return decision;
    };
    match gate_failover(governing, true) {
        Ok(()) => decision,
        Err(refusal) => Decision::Idle {
            why: format!(
                "automatic failover to {target} withheld (every configured model is {governing}): {refusal}"
            ),
        },
    }
}

/// The instance count of one production variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantCapacity {
    /// `VariantName` (the same in every region: one endpoint config).
    pub variant: String,
    /// `CurrentInstanceCount` as `DescribeEndpoint` reports it.
    pub instances: u32,
}

/// One `UpdateEndpointWeightsAndCapacities` entry of the prepare step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScaleUp {
    pub variant: String,
    /// The target's count now.
    pub from: u32,
    /// `DesiredInstanceCount` to ask for: the active's current count.
    pub to: u32,
}

/// Why a prepare plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum PrepareProblem {
    /// The active serves on a variant the target's endpoint lacks: scaling
    /// the others would leave that share of the traffic without capacity.
    #[error(
        "the target endpoint has no variant {variant:?}, which the active serves with {instances} instance(s)"
    )]
    MissingVariant { variant: String, instances: u32 },
}

/// The prepare step: scale each of the target's provisioned variants up to
/// the active's current count. Variants already at or above it are left
/// alone (never scaled down). Every variant the active has must exist on
/// the target; all missing ones are reported at once.
pub fn prepare_plan(
    active: &[VariantCapacity],
    target: &[VariantCapacity],
) -> Result<Vec<ScaleUp>, Vec<PrepareProblem>> {
    let mut plan = Vec::new();
    let mut problems = Vec::new();
    for a in active {
        match target.iter().find(|t| t.variant == a.variant) {
            None => problems.push(PrepareProblem::MissingVariant {
                variant: a.variant.clone(),
                instances: a.instances,
            }),
            Some(t) if t.instances < a.instances => plan.push(ScaleUp {
                variant: a.variant.clone(),
                from: t.instances,
                to: a.instances,
            }),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// Where a running prepare step stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PrepareProgress {
    /// The endpoint is `InService` and every planned variant has its count.
    Done,
    /// Still scaling; `remaining_ms` of the budget left.
    Waiting {
        remaining_ms: u64,
        /// Variants still short of their planned count.
        short: Vec<String>,
    },
    /// The budget ran out first: the failover must not switch onto a target
    /// that cannot carry the load (the workflow fails the step).
    OverBudget { short: Vec<String> },
}

/// Judge a prepare step that began at `started_ms` with `plan`, given the
/// target endpoint's status now (`in_service`: `EndpointStatus` is
/// `InService`) and its variants' current counts.
pub fn prepare_progress(
    plan: &[ScaleUp],
    in_service: bool,
    current: &[VariantCapacity],
    started_ms: u64,
    now_ms: u64,
    budget_ms: u64,
) -> PrepareProgress {
    let short: Vec<String> = plan
        .iter()
        .filter(|p| {
            current
                .iter()
                .find(|c| c.variant == p.variant)
                .is_none_or(|c| c.instances < p.to)
        })
        .map(|p| p.variant.clone())
        .collect();
    if in_service && short.is_empty() {
        return PrepareProgress::Done;
    }
    let elapsed = now_ms.saturating_sub(started_ms);
    if elapsed >= budget_ms {
        PrepareProgress::OverBudget { short }
    } else {
        PrepareProgress::Waiting {
            remaining_ms: budget_ms - elapsed,
            short,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::Action;
    use proptest::prelude::*;

    fn v(name: &str, n: u32) -> VariantCapacity {
        VariantCapacity {
            variant: name.into(),
            instances: n,
        }
    }

    #[test]
    fn tier_rules_as_documented() {
        assert!(Tier::Tier1.automatic_failover() && Tier::Tier2.automatic_failover());
        assert!(!Tier::Tier3.automatic_failover());
        assert!(Tier::Tier1.requires_strong_consistency());
        assert!(!Tier::Tier2.requires_strong_consistency());
        assert!(!Tier::Tier3.requires_strong_consistency());
        assert_eq!(Tier::Tier1.standby_holds(), StandbyHolds::ActiveNeed);
        assert_eq!(Tier::Tier2.standby_holds(), StandbyHolds::Minimum);
        assert!(!Tier::Tier1.idle_may_reduce() && Tier::Tier2.idle_may_reduce());
        assert!(!Tier::Tier2.idle_may_stop() && Tier::Tier3.idle_may_stop());
        assert_eq!(gate_failover(Tier::Tier3, false), Ok(()));
        assert!(gate_failover(Tier::Tier3, true).is_err());
        assert_eq!(gate_failover(Tier::Tier2, true), Ok(()));
    }

    #[test]
    fn tiers_parse_and_print_the_same_way() {
        for t in Tier::ALL {
            assert_eq!(t.as_str().parse::<Tier>(), Ok(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        let e = "gold".parse::<Tier>().unwrap_err();
        assert!(e.to_string().contains("\"gold\" is not a DR tier"), "{e}");
    }

    #[test]
    fn prepare_scales_up_only_and_reports_every_missing_variant() {
        let active = [v("a", 4), v("b", 2), v("c", 1), v("d", 3)];
        let target = [v("a", 1), v("b", 5)];
        let err = prepare_plan(&active, &target).unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        let target = [v("a", 1), v("b", 5), v("c", 1), v("d", 0)];
        let plan = prepare_plan(&active, &target).unwrap();
        assert_eq!(
            plan,
            vec![
                ScaleUp {
                    variant: "a".into(),
                    from: 1,
                    to: 4
                },
                ScaleUp {
                    variant: "d".into(),
                    from: 0,
                    to: 3
                },
            ]
        );
    }

    #[test]
    fn prepare_waits_for_in_service_and_counts_then_runs_out_of_budget() {
        let plan = [ScaleUp {
            variant: "a".into(),
            from: 1,
            to: 3,
        }];
        let p =
            |in_service, n, now| prepare_progress(&plan, in_service, &[v("a", n)], 1000, now, 600);
        assert_eq!(p(true, 3, 1200), PrepareProgress::Done);
        assert_eq!(
            p(false, 3, 1200),
            PrepareProgress::Waiting {
                remaining_ms: 400,
                short: vec![]
            },
            "counts are there but the endpoint is still Updating"
        );
        assert_eq!(
            p(true, 2, 1599),
            PrepareProgress::Waiting {
                remaining_ms: 1,
                short: vec!["a".into()]
            }
        );
        assert_eq!(
            p(true, 2, 1600),
            PrepareProgress::OverBudget {
                short: vec!["a".into()]
            }
        );
        assert_eq!(p(true, 3, 99_999), PrepareProgress::Done, "done beats late");
    }

    fn failover(automatic: bool) -> Decision {
        Decision::Act {
            action: Action::StartFailover(crate::core::plan::FailoverPlan {
                from: "us-east-1".into(),
                to: "us-west-2".into(),
                epoch: 4,
                execution: "failover-x-4".into(),
                initiator: "us-west-2".into(),
                expected_version: 9,
                reason: "us-east-1 down".into(),
                ungraceful: false,
                old_region_healthy: false,
                forced: false,
                automatic,
                changed_by: "us-west-2".into(),
                claimed_at: 1,
                supersedes: None,
                state_machine: None,
            }),
        }
    }

    #[test]
    fn only_an_all_tier3_fleet_withholds_automatic_failover() {
        let auto = failover(true);
        assert_eq!(gate_automatic(auto.clone(), Tier::Tier1), auto);
        assert_eq!(gate_automatic(auto.clone(), Tier::Tier2), auto);
        let Decision::Idle { why } = gate_automatic(auto, Tier::Tier3) else {
            panic!("tier3 must withhold an automatic failover")
        };
        assert!(
            why.starts_with(
                "automatic failover to us-west-2 withheld (every configured model is tier3): "
            ) && why.contains("tier3 (backup/restore) has no automatic failover"),
            "{why}"
        );
        // An operator's failover passes whatever the tier.
        let manual = failover(false);
        assert_eq!(gate_automatic(manual.clone(), Tier::Tier3), manual);
        for other in [
            Decision::Idle {
                why: "steady".into(),
            },
            Decision::Act {
                action: Action::Initialize {
                    active: "us-east-1".into(),
                },
            },
        ] {
            assert_eq!(gate_automatic(other.clone(), Tier::Tier3), other);
        }
    }

    fn tier() -> impl Strategy<Value = Tier> {
        prop::sample::select(Tier::ALL.to_vec())
    }

    fn variants() -> impl Strategy<Value = Vec<VariantCapacity>> {
        prop::collection::btree_map("[a-d]", 0u32..20, 0..4)
            .prop_map(|m| m.into_iter().map(|(k, n)| v(&k, n)).collect())
    }

    proptest! {
        /// The governing tier is never more relaxed than any model's, and a
        /// single tier1 model makes the endpoint tier1.
        #[test]
        fn strictest_governs(tiers in prop::collection::vec(tier(), 1..6)) {
            let s = strictest(tiers.iter().copied()).unwrap();
            prop_assert!(tiers.iter().all(|t| s <= *t));
            prop_assert!(tiers.contains(&s));
            prop_assert_eq!(s == Tier::Tier1, tiers.contains(&Tier::Tier1));
        }

        /// A plan never lowers a variant; applying it leaves every variant at
        /// least at the active's count, and planning again finds nothing to do.
        #[test]
        fn prepare_plan_reaches_the_active_and_is_idempotent(active in variants(), target in variants()) {
            match prepare_plan(&active, &target) {
                Err(problems) => {
                    for p in &problems {
                        let PrepareProblem::MissingVariant { variant, .. } = p;
                        prop_assert!(target.iter().all(|t| &t.variant != variant));
                        prop_assert!(active.iter().any(|a| &a.variant == variant));
                    }
                    let missing = active.iter().filter(|a| target.iter().all(|t| t.variant != a.variant)).count();
                    prop_assert_eq!(problems.len(), missing);
                }
                Ok(plan) => {
                    let mut after = target.clone();
                    for s in &plan {
                        prop_assert!(s.to > s.from);
                        let t = after.iter_mut().find(|t| t.variant == s.variant).unwrap();
                        prop_assert_eq!(t.instances, s.from);
                        t.instances = s.to;
                    }
                    for a in &active {
                        let t = after.iter().find(|t| t.variant == a.variant).unwrap();
                        prop_assert!(t.instances >= a.instances);
                    }
                    for (b, t) in target.iter().zip(&after) {
                        prop_assert!(t.instances >= b.instances, "never scaled down");
                    }
                    prop_assert_eq!(prepare_plan(&active, &after), Ok(vec![]));
                    prop_assert_eq!(
                        prepare_progress(&plan, true, &after, 0, 0, 0),
                        PrepareProgress::Done
                    );
                }
            }
        }

        /// Done is stable in time, and the budget is the only way to give up.
        #[test]
        fn prepare_progress_is_monotonic_in_time(
            active in variants(), target in variants(), in_service: bool,
            started in 0u64..10_000, d1 in 0u64..10_000, d2 in 0u64..10_000, budget in 0u64..10_000,
        ) {
            let Ok(plan) = prepare_plan(&active, &target) else { return Ok(()) };
            let at = |now| prepare_progress(&plan, in_service, &target, started, now, budget);
            let (early, late) = (at(started + d1.min(d2)), at(started + d1.max(d2)));
            match (&early, &late) {
                (PrepareProgress::Done, l) => prop_assert_eq!(l, &PrepareProgress::Done),
                (PrepareProgress::OverBudget { .. }, l) => {
                    prop_assert!(matches!(l, PrepareProgress::OverBudget { .. }), "{l:?}")
                }
                (PrepareProgress::Waiting { .. }, _) => {}
            }
            if d1.max(d2) < budget {
                prop_assert!(!matches!(late, PrepareProgress::OverBudget { .. }), "{:?}", late);
            }
        }
    }
}
