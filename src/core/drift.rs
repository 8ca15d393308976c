//! Configuration drift across the fleet: every vote carries its daemon's
//! fleet fingerprint (`config::fleet`: a digest per group of the settings
//! every daemon must share), and every daemon compares the fresh votes'
//! with its own.
//!
//! What a mismatch stops (docs/protocol.md, "One fleet, one
//! configuration"): the automatic start of a failover or failback, and the
//! automatic proposal of one. Those are the decisions whose safety rests
//! on every daemon reading the same settings: with different priorities
//! two targets each wait for the other; with a shorter lease on one side a
//! new active acts while the old one still does; with `approval = "none"`
//! on the target it claims what the rest hold for approval. Everything
//! else goes on: operators' failovers (an operator decides, and may be
//! fixing the drift by moving traffic), a claimed failover's execution and
//! its settle (already decided; stopping half-way is worse), and
//! initialisation. Removing automatic actions cannot make the protocol
//! less safe: the model check explores votes that say anything and
//! daemons that never act; this only adds "never act".
//!
//! A vote without a fingerprint (a daemon of an older version, during a
//! rolling upgrade) is reported as unknown and does not stop anything: an
//! upgrade must not switch automatic failover off for its whole length.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::Decision;
use super::quorum::Vote;

/// The key under which a published fingerprint carries its whole digest
/// (`config::fleet::Fingerprint::published`; core cannot name config).
pub const ALL: &str = "all";

/// One fresh observer whose settings differ from ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub observer: String,
    /// The groups whose digests differ (or are missing on one side).
    pub groups: Vec<String>,
}

/// The drift this daemon sees: the fresh observers whose fingerprints
/// differ from `mine`, and those that published none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetDrift {
    pub differing: Vec<Drift>,
    pub unknown: Vec<String>,
}

impl FleetDrift {
    pub fn is_empty(&self) -> bool {
        self.differing.is_empty()
    }

    /// One line for logs, the journal and the planner's reason.
    pub fn describe(&self) -> String {
        self.differing
            .iter()
            .map(|d| format!("{} differs in {}", d.observer, d.groups.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Compare the fresh votes' fingerprints with `mine` (group -> digest).
pub fn drift(mine: &BTreeMap<String, String>, votes: &[Vote], fresh: &[String]) -> FleetDrift {
    let mut out = FleetDrift::default();
    for v in votes.iter().filter(|v| fresh.contains(&v.observer)) {
        let Some(theirs) = &v.fleet else {
            out.unknown.push(v.observer.clone());
            continue;
        };
        let mut groups: Vec<String> = mine
            .keys()
            .chain(theirs.keys())
            .filter(|g| g.as_str() != ALL && mine.get(*g) != theirs.get(*g))
            .cloned()
            .collect();
        groups.sort();
        groups.dedup();
        if groups.is_empty() && mine.get(ALL) != theirs.get(ALL) {
            // The cut group digests collided; the whole one did not.
            groups.push("settings (which group is not known)".to_string());
        }
        if !groups.is_empty() {
            out.differing.push(Drift {
                observer: v.observer.clone(),
                groups,
            });
        }
    }
    out
}

/// Withhold the automatic decisions a drift could make unsafe (see the
/// module doc); everything else passes unchanged.
pub fn gate(decision: Decision, drift: &FleetDrift) -> Decision {
    if drift.is_empty() {
        return decision;
    }
    let Some(target) = decision.automatic_failover_target() else {
        return decision;
    };
    Decision::Idle {
        why: format!(
            "automatic failover to {target} withheld: the fleet's configurations differ ({}); fix the region files (failoverd check-config FILES...) or fail over by hand",
            drift.describe()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::Action;

    fn vote(observer: &str, fleet: Option<&[(&str, &str)]>) -> Vote {
        Vote {
            observer: observer.into(),
            instance: None,
            at: 1,
            seen_epoch: 1,
            view: BTreeMap::new(),
            traffic: None,
            fleet: fleet.map(|g| {
                g.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            readiness: None,
            lease_ms: None,
        }
    }

    #[test]
    fn differing_groups_are_named_and_stale_or_unknown_votes_are_not_drift() {
        let mine: BTreeMap<String, String> = [("timings", "a"), ("regions", "b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let votes = vec![
            vote("us-east-1", Some(&[("timings", "a"), ("regions", "b")])),
            vote("us-west-2", Some(&[("timings", "x"), ("regions", "b")])),
            vote("eu-west-1", None),
            vote("ap-south-1", Some(&[("timings", "x")])),
        ];
        let fresh: Vec<String> = ["us-east-1", "us-west-2", "eu-west-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let d = drift(&mine, &votes, &fresh);
        assert_eq!(
            d.differing,
            vec![Drift {
                observer: "us-west-2".into(),
                groups: vec!["timings".into()]
            }]
        );
        assert_eq!(d.unknown, vec!["eu-west-1".to_string()]);
        assert_eq!(d.describe(), "us-west-2 differs in timings");
        // A group only one side has is a difference too (another version).
        let d = drift(
            &mine,
            &[vote("us-west-2", Some(&[("timings", "a")]))],
            &["us-west-2".to_string()],
        );
        assert_eq!(d.differing[0].groups, vec!["regions".to_string()]);
    }

    #[test]
    fn only_automatic_starts_and_proposals_are_withheld() {
        let drifted = FleetDrift {
            differing: vec![Drift {
                observer: "us-west-2".into(),
                groups: vec!["approval".into()],
            }],
            unknown: vec![],
        };
        let idle = Decision::Idle { why: "x".into() };
        assert_eq!(gate(idle.clone(), &drifted), idle);
        assert_eq!(gate(idle.clone(), &FleetDrift::default()), idle);
        let start = |automatic: bool| Decision::Act {
            action: Action::StartFailover(crate::core::plan::FailoverPlan {
                from: "us-east-1".into(),
                to: "us-west-2".into(),
                epoch: 2,
                execution: "failover-x-2".into(),
                initiator: "us-west-2".into(),
                expected_version: 1,
                reason: "down".into(),
                ungraceful: false,
                old_region_healthy: true,
                forced: false,
                automatic,
                changed_by: "us-west-2".into(),
                claimed_at: 1,
                supersedes: None,
                state_machine: None,
            }),
        };
        assert!(
            matches!(gate(start(true), &drifted), Decision::Idle { why } if why.contains("us-west-2 differs in approval")),
            "an automatic failover is withheld"
        );
        assert_eq!(
            gate(start(false), &drifted),
            start(false),
            "an operator's is not"
        );
        assert_eq!(gate(start(true), &FleetDrift::default()), start(true));
    }
}
