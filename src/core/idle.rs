//! Idle detection from the router's own counts: which endpoints to reduce
//! to their minimum, or stop, because nothing called them over the window.
//! Pure: no I/O, no clock (time passed in as unix milliseconds).
//!
//! The seed runs a Lambda hourly that reads CloudWatch `Invocations` and
//! deletes every idle endpoint outside production, skipping those tagged
//! `ProtectedFromAutoStop=true`. Done like that it fights failover: the
//! idle endpoint is typically the standby, and a standby deleted at 18:00
//! is the region a 19:00 failover needs. failoverd counts invocations in
//! its router (no CloudWatch round trip; CloudWatch is a fallback for
//! traffic that bypasses the router) and owns failover, so it decides here,
//! for every endpoint, one [`IdleDecision`] with the reason, in this order
//! (the first that applies wins):
//!
//! 1. a failover is in flight: nothing (it owns every region until it settles);
//! 2. not a provisioned endpoint: nothing (serverless scales itself to zero;
//!    asynchronous endpoints scale with their own policy);
//! 3. tags not read, or `ProtectedFromAutoStop=true` (value compared without
//!    case: protection errs towards protecting): nothing. `ListEndpoints`
//!    returns no tags, whatever the seed's code assumes; the daemon reads
//!    them with `ListTags`, and an unread tag is treated as protection;
//! 4. the active region, or the target of a failover being prepared:
//!    nothing;
//! 5. the tier forbids it: `tier1` keeps its standby ready;
//! 6. the router has not counted for a whole window yet (just started):
//!    nothing — zero invocations since a restart is not zero over the window;
//! 7. any invocation in the window, by the router or by CloudWatch: nothing;
//!    and when CloudWatch is part of the policy (`cost.idle.cloudwatch`, on
//!    by default) but could not be read, nothing either: traffic that
//!    bypasses the routers cannot be ruled out; nor a guarded region
//!    (`core::tier::Guard`: a standby the routers sent traffic to in the
//!    last minutes, or that nobody can say they did not; the target of an
//!    open proposal), whatever the idle window;
//! 8. already at its minimum: nothing;
//! 9. production: reduce to the minimum (never stop: the seed's rule);
//! 10. outside production: stop when `stop_outside_production` is set and
//!     the tier allows it (`tier3` only: a `tier2` prepare step scales the
//!     standby up, and a deleted endpoint has nothing to scale); otherwise
//!     reduce.
//!
//! "The minimum" is what the schedule asks for now (else the endpoint's
//! floor), never below one instance: production variants cannot scale to
//! zero (only inference components can, which failoverd does not manage).
//!
//! Every endpoint gets a decision, acted on or not, so a dry run shows why
//! nothing happened as well as what would.

use std::fmt;

use serde::Serialize;

use super::tier::{Guard, RegionRole, Tier};

/// The tag that exempts an endpoint from idle actions (the seed's name).
pub const PROTECTED_TAG: &str = "ProtectedFromAutoStop";
/// The seed's window: 60 minutes.
pub const DEFAULT_WINDOW_MS: u64 = 60 * 60 * 1000;

/// Whether `tags` (from `ListTags`) protect the endpoint.
pub fn protected_by_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    tags.into_iter()
        .any(|(k, v)| k == PROTECTED_TAG && v.trim().eq_ignore_ascii_case("true"))
}

/// The inference path an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    Provisioned,
    Serverless,
    Batch,
}

/// The policy from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Zero invocations over this long makes an endpoint idle.
    pub window_ms: u64,
    /// Production reduces, never stops.
    pub production: bool,
    /// Outside production, stop (delete) idle endpoints whose tier allows
    /// it, rather than reduce them.
    pub stop_outside_production: bool,
    /// CloudWatch `Invocations` must have been read (and be zero) for an
    /// endpoint to be idle: it sees traffic that bypasses the routers.
    pub cloudwatch: bool,
}

/// What is known of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleEndpoint {
    pub endpoint: String,
    pub region: String,
    pub kind: EndpointKind,
    pub role: RegionRole,
    /// The strictest tier of the models it serves.
    pub tier: Tier,
    /// `ProtectedFromAutoStop` from `ListTags`; `None` when the tags could
    /// not be read.
    pub protected: Option<bool>,
    /// Since when the router has counted this endpoint's invocations
    /// without a gap (unix ms): its process start, at the latest.
    pub counted_since_ms: u64,
    /// Invocations the routers counted in the window.
    pub router_invocations: u64,
    /// CloudWatch `Invocations` (sum over the window), when read: traffic
    /// that bypasses the router.
    pub cloudwatch_invocations: Option<u64>,
    /// Instances now (`CurrentInstanceCount`, summed over variants).
    pub instances: u32,
    /// The minimum to reduce to: the schedule's now, else the floor.
    pub minimum: u32,
    /// Why the region must not be lowered now (`core::tier::guard`).
    pub guard: Option<Guard>,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum IdleAction {
    /// Nothing.
    None,
    /// Lower the instance count to `to` (`UpdateEndpointWeightsAndCapacities`).
    Reduce { from: u32, to: u32 },
    /// Delete the endpoint (its endpoint config stays, so it can be recreated).
    Stop,
}

/// Why; one per rule of the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum IdleReason {
    FailoverInFlight,
    NotProvisioned {
        kind: EndpointKind,
    },
    TagsUnknown,
    Protected,
    ActiveRegion,
    FailoverTarget,
    Guarded {
        guard: Guard,
    },
    TierKeepsStandbyReady {
        tier: Tier,
    },
    NotCountedLongEnough {
        counted_ms: u64,
        window_ms: u64,
    },
    InUse {
        router: u64,
        cloudwatch: Option<u64>,
    },
    CloudWatchUnread,
    AtMinimum {
        instances: u32,
        minimum: u32,
    },
    IdleInProduction {
        window_ms: u64,
    },
    IdleStopNotAllowed {
        window_ms: u64,
        tier: Tier,
        stop_enabled: bool,
    },
    IdleOutsideProduction {
        window_ms: u64,
    },
}

/// One endpoint's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleDecision {
    pub endpoint: String,
    pub region: String,
    #[serde(flatten)]
    pub action: IdleAction,
    pub why: IdleReason,
}

impl fmt::Display for IdleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mins = |ms: &u64| ms / 60_000;
        match self {
            IdleReason::FailoverInFlight => f.write_str("a failover is in flight"),
            IdleReason::NotProvisioned { kind } => {
                write!(
                    f,
                    "{kind:?} endpoints scale themselves; only provisioned variants are reduced"
                )
            }
            IdleReason::TagsUnknown => {
                write!(
                    f,
                    "tags not read (ListTags failed): treated as {PROTECTED_TAG}=true"
                )
            }
            IdleReason::Protected => write!(f, "tagged {PROTECTED_TAG}=true"),
            IdleReason::ActiveRegion => f.write_str("the active region"),
            IdleReason::FailoverTarget => f.write_str("the target of a failover being prepared"),
            IdleReason::Guarded { guard } => guard.fmt(f),
            IdleReason::TierKeepsStandbyReady { tier } => {
                write!(f, "{tier} ({}) keeps its standby ready", tier.pattern())
            }
            IdleReason::NotCountedLongEnough {
                counted_ms,
                window_ms,
            } => write!(
                f,
                "counted for {}m of the {}m window only",
                mins(counted_ms),
                mins(window_ms)
            ),
            IdleReason::CloudWatchUnread => f.write_str(
                "CloudWatch Invocations not read: traffic that bypasses the routers cannot be ruled out",
            ),
            IdleReason::InUse { router, cloudwatch } => match cloudwatch {
                Some(cw) => write!(
                    f,
                    "in use: {router} invocations via the router, {cw} in CloudWatch"
                ),
                None => write!(f, "in use: {router} invocations via the router"),
            },
            IdleReason::AtMinimum { instances, minimum } => {
                write!(f, "idle, but already at {instances} (minimum {minimum})")
            }
            IdleReason::IdleInProduction { window_ms } => write!(
                f,
                "no invocations in {}m; production reduces, never stops",
                mins(window_ms)
            ),
            IdleReason::IdleStopNotAllowed {
                window_ms,
                tier,
                stop_enabled,
            } => {
                write!(
                    f,
                    "no invocations in {}m; outside production, but ",
                    mins(window_ms)
                )?;
                if *stop_enabled {
                    write!(f, "{tier} may not be stopped (only tier3): reduced instead")
                } else {
                    f.write_str("cost.idle.stop_outside_production is off: reduced instead")
                }
            }
            IdleReason::IdleOutsideProduction { window_ms } => write!(
                f,
                "no invocations in {}m outside production",
                mins(window_ms)
            ),
        }
    }
}

impl fmt::Display for IdleDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: ", self.region, self.endpoint)?;
        match self.action {
            IdleAction::None => f.write_str("leave")?,
            IdleAction::Reduce { from, to } => write!(f, "reduce {from} -> {to}")?,
            IdleAction::Stop => f.write_str("stop")?,
        }
        write!(f, " ({})", self.why)
    }
}

/// One decision per endpoint, in input order.
pub fn decide(
    now_ms: u64,
    failover_in_flight: bool,
    policy: &IdlePolicy,
    endpoints: &[IdleEndpoint],
) -> Vec<IdleDecision> {
    endpoints
        .iter()
        .map(|e| {
            let (action, why) = decide_one(now_ms, failover_in_flight, policy, e);
            IdleDecision {
                endpoint: e.endpoint.clone(),
                region: e.region.clone(),
                action,
                why,
            }
        })
        .collect()
}

fn decide_one(
    now_ms: u64,
    in_flight: bool,
    p: &IdlePolicy,
    e: &IdleEndpoint,
) -> (IdleAction, IdleReason) {
    use IdleReason as R;
    let leave = |why| (IdleAction::None, why);
    if in_flight {
        return leave(R::FailoverInFlight);
    }
    if e.kind != EndpointKind::Provisioned {
        return leave(R::NotProvisioned { kind: e.kind });
    }
    match e.protected {
        None => return leave(R::TagsUnknown),
        Some(true) => return leave(R::Protected),
        Some(false) => {}
    }
    match e.role {
        RegionRole::Active => return leave(R::ActiveRegion),
        RegionRole::FailoverTarget => return leave(R::FailoverTarget),
        RegionRole::Standby => {}
    }
    if !e.tier.idle_may_reduce() {
        return leave(R::TierKeepsStandbyReady { tier: e.tier });
    }
    let counted_ms = now_ms.saturating_sub(e.counted_since_ms);
    if counted_ms < p.window_ms {
        return leave(R::NotCountedLongEnough {
            counted_ms,
            window_ms: p.window_ms,
        });
    }
    if e.router_invocations > 0 || e.cloudwatch_invocations.is_some_and(|c| c > 0) {
        return leave(R::InUse {
            router: e.router_invocations,
            cloudwatch: e.cloudwatch_invocations,
        });
    }
    if let Some(guard) = e.guard {
        return leave(R::Guarded { guard });
    }
    if p.cloudwatch && e.cloudwatch_invocations.is_none() {
        return leave(R::CloudWatchUnread);
    }
    let window_ms = p.window_ms;
    let to = e.minimum.max(1);
    let reduce = |why| {
        if e.instances <= to {
            leave(R::AtMinimum {
                instances: e.instances,
                minimum: to,
            })
        } else {
            (
                IdleAction::Reduce {
                    from: e.instances,
                    to,
                },
                why,
            )
        }
    };
    if p.production {
        reduce(R::IdleInProduction { window_ms })
    } else if p.stop_outside_production && e.tier.idle_may_stop() {
        (IdleAction::Stop, R::IdleOutsideProduction { window_ms })
    } else {
        reduce(R::IdleStopNotAllowed {
            window_ms,
            tier: e.tier,
            stop_enabled: p.stop_outside_production,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: u64 = DEFAULT_WINDOW_MS;

    fn standby() -> IdleEndpoint {
        IdleEndpoint {
            endpoint: "inference-provisioned".into(),
            region: "us-west-2".into(),
            kind: EndpointKind::Provisioned,
            role: RegionRole::Standby,
            tier: Tier::Tier3,
            protected: Some(false),
            counted_since_ms: 0,
            router_invocations: 0,
            cloudwatch_invocations: Some(0),
            instances: 4,
            minimum: 1,
            guard: None,
        }
    }

    fn policy(production: bool, stop: bool) -> IdlePolicy {
        IdlePolicy {
            window_ms: H,
            production,
            stop_outside_production: stop,
            cloudwatch: true,
        }
    }

    fn one(p: IdlePolicy, e: IdleEndpoint) -> IdleDecision {
        decide(2 * H, false, &p, &[e]).remove(0)
    }

    #[test]
    fn each_rule_with_its_reason() {
        let prod = policy(true, true);
        let d = one(prod, standby());
        assert_eq!(d.action, IdleAction::Reduce { from: 4, to: 1 });
        assert_eq!(
            d.to_string(),
            "us-west-2/inference-provisioned: reduce 4 -> 1 (no invocations in 60m; production reduces, never stops)"
        );
        assert_eq!(one(policy(false, true), standby()).action, IdleAction::Stop);
        let tier2 = IdleEndpoint {
            tier: Tier::Tier2,
            ..standby()
        };
        let d = one(policy(false, true), tier2.clone());
        assert_eq!(d.action, IdleAction::Reduce { from: 4, to: 1 });
        assert!(d.to_string().contains("tier2 may not be stopped"), "{d}");
        let d = one(policy(false, false), standby());
        assert!(
            d.to_string().contains("stop_outside_production is off"),
            "{d}"
        );

        let none = |e: IdleEndpoint| {
            let d = one(policy(false, true), e);
            assert_eq!(d.action, IdleAction::None, "{d}");
            d.why
        };
        assert_eq!(
            none(IdleEndpoint {
                protected: Some(true),
                ..standby()
            }),
            IdleReason::Protected
        );
        assert_eq!(
            none(IdleEndpoint {
                protected: None,
                ..standby()
            }),
            IdleReason::TagsUnknown
        );
        assert_eq!(
            none(IdleEndpoint {
                role: RegionRole::Active,
                ..standby()
            }),
            IdleReason::ActiveRegion
        );
        assert_eq!(
            none(IdleEndpoint {
                role: RegionRole::FailoverTarget,
                ..standby()
            }),
            IdleReason::FailoverTarget
        );
        for guard in [Guard::Serving { known: false }, Guard::ProposedTarget] {
            assert_eq!(
                none(IdleEndpoint {
                    guard: Some(guard),
                    ..standby()
                }),
                IdleReason::Guarded { guard },
                "a guarded standby is never reduced or stopped"
            );
        }
        assert_eq!(
            none(IdleEndpoint {
                tier: Tier::Tier1,
                ..standby()
            }),
            IdleReason::TierKeepsStandbyReady { tier: Tier::Tier1 }
        );
        assert_eq!(
            none(IdleEndpoint {
                counted_since_ms: H + 1,
                ..standby()
            }),
            IdleReason::NotCountedLongEnough {
                counted_ms: H - 1,
                window_ms: H
            }
        );
        assert_eq!(
            none(IdleEndpoint {
                cloudwatch_invocations: Some(3),
                ..standby()
            }),
            IdleReason::InUse {
                router: 0,
                cloudwatch: Some(3)
            },
            "traffic that bypasses the router counts"
        );
        assert_eq!(
            none(IdleEndpoint {
                cloudwatch_invocations: None,
                ..standby()
            }),
            IdleReason::CloudWatchUnread,
            "CloudWatch unread: bypassing traffic not ruled out"
        );
        let no_cw = IdlePolicy {
            cloudwatch: false,
            ..policy(true, false)
        };
        assert_eq!(
            one(
                no_cw,
                IdleEndpoint {
                    cloudwatch_invocations: None,
                    ..standby()
                }
            )
            .action,
            IdleAction::Reduce { from: 4, to: 1 },
            "without CloudWatch in the policy, the routers' counts decide"
        );
        assert_eq!(
            none(IdleEndpoint {
                kind: EndpointKind::Serverless,
                ..standby()
            }),
            IdleReason::NotProvisioned {
                kind: EndpointKind::Serverless
            }
        );
        assert_eq!(
            none(IdleEndpoint {
                instances: 2,
                minimum: 2,
                tier: Tier::Tier2,
                ..standby()
            }),
            IdleReason::AtMinimum {
                instances: 2,
                minimum: 2
            }
        );
        assert_eq!(
            one(
                prod,
                IdleEndpoint {
                    minimum: 0,
                    ..standby()
                }
            )
            .action,
            IdleAction::Reduce { from: 4, to: 1 },
            "a production variant never goes below one instance"
        );
        let d = decide(2 * H, true, &prod, &[standby()]).remove(0);
        assert_eq!(
            (d.action, d.why),
            (IdleAction::None, IdleReason::FailoverInFlight)
        );
    }

    #[test]
    fn tags_protect_only_with_the_exact_key() {
        assert!(protected_by_tags([("ProtectedFromAutoStop", "true")]));
        assert!(protected_by_tags([
            ("Team", "x"),
            ("ProtectedFromAutoStop", " TRUE ")
        ]));
        assert!(!protected_by_tags([("ProtectedFromAutoStop", "false")]));
        assert!(!protected_by_tags([("protectedfromautostop", "true")]));
        assert!(!protected_by_tags([]));
    }

    fn endpoint() -> impl Strategy<Value = IdleEndpoint> {
        (
            (
                prop::sample::select(vec![
                    EndpointKind::Provisioned,
                    EndpointKind::Serverless,
                    EndpointKind::Batch,
                ]),
                prop::sample::select(vec![
                    RegionRole::Active,
                    RegionRole::Standby,
                    RegionRole::FailoverTarget,
                ]),
                prop::sample::select(Tier::ALL.to_vec()),
                prop::option::of(any::<bool>()),
                prop::option::of(prop::sample::select(vec![
                    Guard::Serving { known: true },
                    Guard::Serving { known: false },
                    Guard::ProposedTarget,
                ])),
            ),
            (
                0u64..4 * H,
                0u64..3,
                prop::option::of(0u64..3),
                0u32..6,
                0u32..4,
            ),
        )
            .prop_map(
                |(
                    (kind, role, tier, protected, guard),
                    (since, router, cw, instances, minimum),
                )| {
                    IdleEndpoint {
                        endpoint: "e".into(),
                        region: "r".into(),
                        kind,
                        role,
                        tier,
                        protected,
                        counted_since_ms: since,
                        router_invocations: router,
                        cloudwatch_invocations: cw,
                        instances,
                        minimum,
                        guard,
                    }
                },
            )
    }

    proptest! {
        /// Exactly one decision per endpoint, in order, and no action ever
        /// breaks a rule of the module doc.
        #[test]
        fn no_action_breaks_a_rule(
            eps in prop::collection::vec(endpoint(), 0..8),
            production: bool, stop: bool, in_flight: bool,
            now in 0u64..5 * H,
        ) {
            let p = policy(production, stop);
            let ds = decide(now, in_flight, &p, &eps);
            prop_assert_eq!(ds.len(), eps.len());
            for (d, e) in ds.iter().zip(&eps) {
                prop_assert_eq!(&d.endpoint, &e.endpoint);
                if d.action == IdleAction::None {
                    continue;
                }
                prop_assert!(!in_flight);
                prop_assert_eq!(e.kind, EndpointKind::Provisioned);
                prop_assert_eq!(e.protected, Some(false));
                prop_assert_eq!(e.role, RegionRole::Standby);
                prop_assert_eq!(e.guard, None, "a guarded region is never lowered");
                prop_assert!(e.tier != Tier::Tier1);
                prop_assert!(now - e.counted_since_ms >= H);
                prop_assert_eq!(e.router_invocations, 0);
                prop_assert_eq!(e.cloudwatch_invocations, Some(0), "CloudWatch read, and zero");
                match d.action {
                    IdleAction::Stop => {
                        prop_assert!(!production && stop && e.tier == Tier::Tier3);
                    }
                    IdleAction::Reduce { from, to } => {
                        prop_assert_eq!(from, e.instances);
                        prop_assert!(to < from && to >= 1 && to >= e.minimum);
                    }
                    IdleAction::None => unreachable!(),
                }
            }
        }

        /// A single invocation, from either source, cancels every action.
        #[test]
        fn any_traffic_cancels(e in endpoint(), production: bool, stop: bool, n in 1u64..100, cw: bool) {
            let busy = if cw {
                IdleEndpoint { cloudwatch_invocations: Some(n), ..e }
            } else {
                IdleEndpoint { router_invocations: n, ..e }
            };
            let d = decide(10 * H, false, &policy(production, stop), &[busy]);
            prop_assert_eq!(d[0].action, IdleAction::None);
        }
    }
}
