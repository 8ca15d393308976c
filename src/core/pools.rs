//! Instance pools and capacity units. Pure: no I/O.
//!
//! A SageMaker production variant may run on an instance *pool* list
//! (up to five instance types, priority 1 the highest) instead of one
//! instance type. The variant's instance count stays one total
//! (`DesiredInstanceCount`, what autoscaling moves); new instances come
//! from the highest-priority pool that has capacity, falling back to the
//! next on insufficient capacity, and scale-in removes from the
//! lowest-priority pool first. `DescribeEndpoint` reports each pool's
//! current count (`InstancePools`), not its priority.
//!
//! AWS has no notion of what one instance of a type is worth. With pools,
//! a standby that "holds the active's 4 instances" may hold 4 of a type
//! half the size. So failoverd counts in **capacity units**:
//! `cost.capacity_units` maps an instance type to the units one instance
//! of it provides (a type not listed provides 1, so a fleet that sets
//! nothing counts instances as before), and the measured need
//! (`cost.instance_invocations_per_minute` per instance) is read as
//! units: one unit serves that many invocations a minute.
//!
//! The prepare rule ([`fallback_top_up`]): once SageMaker reports the
//! asked count on a variant with pools, if the variant's units are below
//! the units wanted, ask for more instances to cover the shortfall at the
//! units of the smallest type present (the type SageMaker fell back to,
//! when the fallback is the smaller one: the usual case). The smallest
//! present rather than the lowest priority present: `DescribeEndpoint`
//! does not report priorities (the endpoint config does, one more read a
//! poll), and the smallest is never an under-ask: new instances come from
//! the highest-priority pool with capacity, at worst the fallback type
//! again. Never lower: the rule only adds. A fallback onto a type not yet
//! present (a third pool) shows at the next settle, and the rule applies
//! again (prepare bounds the rounds and the budget bounds them all).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One instance pool of a production variant as `DescribeEndpoint`
/// reports it (`InstancePoolSummary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolCount {
    /// `InstanceType`.
    pub instance_type: String,
    /// `CurrentInstanceCount`.
    pub current: u32,
}

/// The units one instance of each instance type provides
/// (`cost.capacity_units`); a type not listed provides 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct CapacityUnits(pub BTreeMap<String, f64>);

impl CapacityUnits {
    /// Units of one instance of `instance_type`.
    pub fn of(&self, instance_type: &str) -> f64 {
        self.0.get(instance_type).copied().unwrap_or(1.0)
    }

    /// Whether any type is given units (otherwise every instance is 1).
    pub fn configured(&self) -> bool {
        !self.0.is_empty()
    }

    /// A variant's capacity in units: Σ over its pools of current × units
    /// of the pool's type; without pools, `instances` × units of its
    /// `instance_type` (1 each when the type is unknown).
    pub fn variant(&self, pools: &[PoolCount], instance_type: Option<&str>, instances: u32) -> f64 {
        if pools.is_empty() {
            return f64::from(instances) * instance_type.map_or(1.0, |t| self.of(t));
        }
        pools
            .iter()
            .map(|p| f64::from(p.current) * self.of(&p.instance_type))
            .sum()
    }
}

/// How pools read in a finding or a journal line: `ml.g5.2xlarge 1,
/// ml.g5.xlarge 3`.
pub fn pools_text(pools: &[PoolCount]) -> String {
    pools
        .iter()
        .map(|p| format!("{} {}", p.instance_type, p.current))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A number of units as the journal writes it: whole numbers without a
/// fraction, others to two places.
pub fn units_text(u: f64) -> String {
    if (u - u.round()).abs() < 1e-9 {
        format!("{}", u.round() as i64)
    } else {
        format!("{u:.2}")
    }
}

/// The prepare step's extra ask for a variant whose pools fell back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopUp {
    pub variant: String,
    /// The smallest type present, whose units the shortfall is counted in.
    pub fell_back_to: String,
    /// Units the variant holds now.
    pub have: f64,
    /// Units wanted.
    pub need: f64,
    /// Instances now (what SageMaker reports, the asked count).
    pub from: u32,
    /// Instances to ask for.
    pub to: u32,
}

impl TopUp {
    /// Why, as the journal and the report say it: `fell back to
    /// ml.g5.xlarge: 5 units of 8`.
    pub fn why(&self) -> String {
        format!(
            "fell back to {}: {} units of {}",
            self.fell_back_to,
            units_text(self.have),
            units_text(self.need)
        )
    }
}

/// The prepare rule for a variant with pools (see the module doc): once
/// SageMaker reports at least the `asked` count (`current`), if its units
/// are below `need` units, ask for enough more instances of the smallest
/// type present to cover the shortfall. `None`: no pools, not settled
/// yet, or the units suffice. Never lower.
pub fn fallback_top_up(
    units: &CapacityUnits,
    variant: &str,
    pools: &[PoolCount],
    asked: u32,
    current: u32,
    need: f64,
) -> Option<TopUp> {
    if pools.is_empty() || current < asked {
        return None;
    }
    let have = units.variant(pools, None, current);
    // A float's rounding must not ask for an instance nobody needs.
    if have + 1e-9 >= need {
        return None;
    }
    let smallest = pools.iter().filter(|p| p.current > 0).min_by(|a, b| {
        units
            .of(&a.instance_type)
            .total_cmp(&units.of(&b.instance_type))
    })?;
    let each = units.of(&smallest.instance_type);
    let extra = ((need - have) / each - 1e-9).ceil().max(1.0);
    let extra = if extra >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        extra as u32
    };
    Some(TopUp {
        variant: variant.to_string(),
        fell_back_to: smallest.instance_type.clone(),
        have,
        need,
        from: current,
        to: current.saturating_add(extra),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(t: &[(&str, f64)]) -> CapacityUnits {
        CapacityUnits(t.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    fn pool(t: &str, n: u32) -> PoolCount {
        PoolCount {
            instance_type: t.into(),
            current: n,
        }
    }

    const BIG: &str = "ml.g5.2xlarge";
    const SMALL: &str = "ml.g5.xlarge";

    #[test]
    fn a_variant_counts_its_pools_in_units_and_an_unlisted_type_as_one() {
        let u = units(&[(BIG, 2.0), (SMALL, 1.0)]);
        assert_eq!(u.variant(&[pool(BIG, 1), pool(SMALL, 3)], None, 4), 5.0);
        // Without pools: instances times its type's units.
        assert_eq!(u.variant(&[], Some(BIG), 3), 6.0);
        assert_eq!(u.variant(&[], Some("ml.m5.large"), 3), 3.0);
        assert_eq!(u.variant(&[], None, 3), 3.0);
        // Nothing configured: units are instances.
        let none = CapacityUnits::default();
        assert!(!none.configured());
        assert_eq!(none.variant(&[pool(BIG, 1), pool(SMALL, 3)], None, 4), 4.0);
        assert_eq!(u.of("ml.p4d.24xlarge"), 1.0);
    }

    #[test]
    fn a_fallback_is_topped_up_in_the_smallest_present_types_units() {
        let u = units(&[(BIG, 2.0), (SMALL, 1.0)]);
        // Asked 4 for a need of 8 units: 1 big + 3 small = 5 units.
        let pools = [pool(BIG, 1), pool(SMALL, 3)];
        let t = fallback_top_up(&u, "AllTraffic", &pools, 4, 4, 8.0).unwrap();
        assert_eq!((t.from, t.to), (4, 7), "3 units short, 1 unit a small one");
        assert_eq!(t.fell_back_to, SMALL);
        assert_eq!(t.why(), "fell back to ml.g5.xlarge: 5 units of 8");
        // A fractional shortfall rounds up to a whole instance.
        let u = units(&[(BIG, 2.0), (SMALL, 0.75)]);
        let t = fallback_top_up(&u, "AllTraffic", &pools, 4, 4, 5.0).unwrap();
        // 2 + 2.25 = 4.25; 0.75 short: one more small.
        assert_eq!(
            (t.to, t.why()),
            (5, "fell back to ml.g5.xlarge: 4.25 units of 5".into())
        );
    }

    #[test]
    fn nothing_is_asked_before_the_count_settles_nor_when_the_units_suffice() {
        let u = units(&[(BIG, 2.0), (SMALL, 1.0)]);
        let pools = [pool(BIG, 1), pool(SMALL, 2)];
        assert_eq!(
            fallback_top_up(&u, "v", &pools, 4, 3, 8.0),
            None,
            "still scaling"
        );
        assert_eq!(fallback_top_up(&u, "v", &pools, 3, 3, 4.0), None, "4 of 4");
        assert_eq!(
            fallback_top_up(&u, "v", &[], 3, 3, 8.0),
            None,
            "no pools: the instance count is the rule"
        );
        // All on the first type, enough units: nothing.
        assert_eq!(fallback_top_up(&u, "v", &[pool(BIG, 4)], 4, 4, 8.0), None);
        // More than asked already (autoscaling added some): judged on units.
        assert!(fallback_top_up(&u, "v", &[pool(SMALL, 6)], 4, 6, 8.0).is_some());
        // A pool with no instances is not what it fell back to.
        let t = fallback_top_up(&u, "v", &[pool(BIG, 3), pool(SMALL, 0)], 3, 3, 8.0).unwrap();
        assert_eq!((t.fell_back_to.as_str(), t.to), (BIG, 4));
    }

    #[test]
    fn the_top_up_never_lowers_and_always_covers_the_need() {
        let u = units(&[(BIG, 2.0), (SMALL, 0.5)]);
        for big in 0..6u32 {
            for small in 0..6u32 {
                for need in 1..20u32 {
                    let pools = [pool(BIG, big), pool(SMALL, small)];
                    let n = big + small;
                    let Some(t) = fallback_top_up(&u, "v", &pools, n, n, f64::from(need)) else {
                        continue;
                    };
                    assert!(t.to > t.from);
                    // The extra at the smallest present type's units covers it.
                    let each = u.of(&t.fell_back_to);
                    assert!(t.have + f64::from(t.to - t.from) * each >= f64::from(need));
                    // One fewer would not.
                    assert!(t.have + f64::from(t.to - t.from - 1) * each < f64::from(need));
                }
            }
        }
    }
}
