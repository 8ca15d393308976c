//! Where an inference request goes: which path (serverless, provisioned,
//! batch) and which regions, in which order. Pure: no I/O, no clock.
//!
//! # Path
//!
//! The seed's rule, exactly ([`seed_path`]): traffic class
//! `serverless_preferred` goes serverless; otherwise a payload at or above
//! the batch threshold goes batch; the rest goes to the provisioned
//! endpoint. [`choose_path`] then applies what the seed leaves implicit:
//!
//! - SageMaker's payload limits: 4 MiB for serverless, 6 MiB for real-time
//!   (provisioned) invocations. A payload too big for the chosen real-time
//!   path moves down the fallback chain to the first path that can take it
//!   (serverless → provisioned → batch), and is refused (413) when none can.
//! - A region may not have every endpoint; a path the region lacks is
//!   skipped the same way.
//!
//! Two APIs use this rule differently. The native API
//! (`/v1/models/{model}/invoke`) applies it as written, batch included. The
//! SageMaker wire API (`/endpoints/{name}/invocations`) is synchronous like
//! `InvokeEndpoint`: it never answers with a batch job, so the router hands
//! it the region's endpoints with batch masked out ([`Available::realtime`])
//! and no batch threshold ([`NO_BATCH_THRESHOLD`]); a payload over the
//! real-time limit then has no path (413), as on SageMaker.
//!
//! The fallback chain ([`fallback_chain`]) is also what a request follows
//! when serverless cold-start retries run out: `Serverless → Provisioned →
//! Batch`, ending at batch. We rejected a table of per-class chains: the
//! seed has one chain, and a chain that only ever moves towards batch is
//! finite by construction (the property tests check it).
//!
//! # Region
//!
//! [`region_order`] ranks every configured region; the router tries them in
//! that order, moving on only when a region cannot serve (outage, connection
//! failure). The first is the local region when the control record names it
//! active and it is healthy; otherwise the record's active region when it is
//! not known to be down (docs/design.md §6, region order); then every other region not known to be down by priority; then
//! the ones known down (fail open: an observer can be wrong, and trying a
//! region beats refusing). Targets whose circuit breaker has ejected them go
//! last, unless every region is ejected, in which case ejection is ignored:
//! ejection never removes the last way to serve a request.

use serde::Serialize;

/// The traffic class that prefers serverless inference (seed).
pub const SERVERLESS_PREFERRED: &str = "serverless_preferred";
/// The default traffic class of a model.
pub const STANDARD: &str = "standard";
/// SageMaker serverless inference payload limit.
pub const SERVERLESS_MAX_PAYLOAD: u64 = 4 * 1024 * 1024;
/// SageMaker real-time inference payload limit.
pub const REALTIME_MAX_PAYLOAD: u64 = 6 * 1024 * 1024;
/// SageMaker asynchronous inference payload limit (1 GB).
pub const BATCH_MAX_PAYLOAD: u64 = 1_000_000_000;

/// One of the three inference paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    Serverless,
    Provisioned,
    Batch,
}

impl Path {
    /// Every path, in fallback order.
    pub const ALL: [Path; 3] = [Path::Serverless, Path::Provisioned, Path::Batch];

    /// The name on the wire (`x-failoverd-path`) and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Serverless => "serverless",
            Path::Provisioned => "provisioned",
            Path::Batch => "batch",
        }
    }

    /// The largest payload the path accepts.
    pub fn max_payload(self) -> u64 {
        match self {
            Path::Serverless => SERVERLESS_MAX_PAYLOAD,
            Path::Provisioned => REALTIME_MAX_PAYLOAD,
            Path::Batch => BATCH_MAX_PAYLOAD,
        }
    }

    /// Whether the client waits for the answer (everything but batch).
    pub fn is_realtime(self) -> bool {
        self != Path::Batch
    }
}

/// The batch threshold of a request that may not go batch (the SageMaker
/// wire API): no payload reaches it.
pub const NO_BATCH_THRESHOLD: u64 = u64::MAX;

/// Which paths a region has an endpoint for (and the router can use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Available {
    pub serverless: bool,
    pub provisioned: bool,
    pub batch: bool,
}

impl Available {
    /// The same endpoints without batch: what a synchronous request may use.
    pub fn realtime(self) -> Self {
        Self {
            batch: false,
            ..self
        }
    }

    /// Whether `path` has an endpoint.
    pub fn has(self, path: Path) -> bool {
        match path {
            Path::Serverless => self.serverless,
            Path::Provisioned => self.provisioned,
            Path::Batch => self.batch,
        }
    }
}

/// Why no path can take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPath {
    /// Every configured path's limit is below the payload: 413.
    TooLarge {
        /// The largest payload any configured path would take.
        limit: u64,
    },
    /// The region has no endpoint at all.
    NoEndpoint,
}

/// The seed's rule, as written: class first, then the batch threshold.
pub fn seed_path(traffic_class: &str, payload_len: u64, batch_threshold: u64) -> Path {
    if traffic_class == SERVERLESS_PREFERRED {
        return Path::Serverless;
    }
    if payload_len >= batch_threshold {
        return Path::Batch;
    }
    Path::Provisioned
}

/// The paths to fall back to after `path`, in order. Ends at batch.
pub fn fallback_chain(path: Path) -> &'static [Path] {
    match path {
        Path::Serverless => &[Path::Provisioned, Path::Batch],
        Path::Provisioned => &[Path::Batch],
        Path::Batch => &[],
    }
}

/// The one path for a request to a region with `available` endpoints: the
/// seed's path, else the first path down its fallback chain that the
/// region has and whose limit the payload fits, else any other path the
/// region has that fits (a region without the preferred chain's endpoints
/// still serves what it can).
pub fn choose_path(
    traffic_class: &str,
    payload_len: u64,
    batch_threshold: u64,
    available: Available,
) -> Result<Path, NoPath> {
    let preferred = seed_path(traffic_class, payload_len, batch_threshold);
    let fits = |p: Path| available.has(p) && payload_len <= p.max_payload();
    std::iter::once(preferred)
        .chain(fallback_chain(preferred).iter().copied())
        .chain(Path::ALL)
        .find(|&p| fits(p))
        .ok_or_else(|| no_path(available))
}

/// The path to try after `path` has given up (cold-start retries spent):
/// the next one down the chain that the region has and the payload fits.
pub fn fallback_after(path: Path, payload_len: u64, available: Available) -> Option<Path> {
    fallback_chain(path)
        .iter()
        .copied()
        .find(|&p| available.has(p) && payload_len <= p.max_payload())
}

fn no_path(available: Available) -> NoPath {
    Path::ALL
        .into_iter()
        .filter(|&p| available.has(p))
        .map(Path::max_payload)
        .max()
        .map_or(NoPath::NoEndpoint, |limit| NoPath::TooLarge { limit })
}

/// What the router knows of a region's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Up,
    Down,
    /// No observation yet (a daemon that just started).
    Unknown,
}

/// One region as the region choice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionState<'a> {
    pub name: &'a str,
    /// Lower = preferred.
    pub priority: u32,
    pub health: Health,
    /// The circuit breaker has ejected this region's endpoint for the path.
    pub ejected: bool,
}

/// Inputs of the region choice.
#[derive(Debug, Clone)]
pub struct RegionInputs<'a> {
    /// This daemon's region.
    pub local: &'a str,
    /// The control record's active region, if a record has been read.
    pub active: Option<&'a str>,
    /// The local region has been asked to drain (it is no longer active).
    pub local_draining: bool,
    /// Every configured region.
    pub regions: &'a [RegionState<'a>],
}

/// Every configured region, in the order the router should try them (as
/// indices into `inputs.regions`).
pub fn region_order(inputs: &RegionInputs<'_>) -> Vec<usize> {
    let rs = inputs.regions;
    let by_name = |n: &str| rs.iter().position(|r| r.name == n);
    let not_down = |&i: &usize| rs[i].health != Health::Down;
    let mut by_priority: Vec<usize> = (0..rs.len()).collect();
    by_priority.sort_by(|&a, &b| {
        rs[a]
            .priority
            .cmp(&rs[b].priority)
            .then(rs[a].name.cmp(rs[b].name))
    });

    let local_first = (inputs.active == Some(inputs.local) && !inputs.local_draining)
        .then(|| by_name(inputs.local))
        .flatten()
        .filter(not_down);
    let active = inputs.active.and_then(by_name);
    let ranked = local_first
        .into_iter()
        .chain(active.filter(not_down))
        .chain(by_priority.iter().copied().filter(not_down))
        // Fail open: regions seen down still get a try, the active one first.
        .chain(active)
        .chain(by_priority.iter().copied());
    let mut order: Vec<usize> = Vec::with_capacity(rs.len());
    for i in ranked {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    // Ejected targets last, unless that would be all of them.
    if !order.iter().all(|&i| rs[i].ejected) {
        order.sort_by_key(|&i| rs[i].ejected); // stable: keeps the ranking within each group
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1024 * 1024;
    const ALL: Available = Available {
        serverless: true,
        provisioned: true,
        batch: true,
    };
    const NO_BATCH: Available = Available {
        serverless: true,
        provisioned: true,
        batch: false,
    };

    #[test]
    fn the_seed_rule() {
        assert_eq!(
            seed_path(SERVERLESS_PREFERRED, 0, 4 * MIB),
            Path::Serverless
        );
        assert_eq!(
            seed_path(SERVERLESS_PREFERRED, 100 * MIB, 4 * MIB),
            Path::Serverless,
            "class beats size"
        );
        assert_eq!(
            seed_path(STANDARD, 4 * MIB, 4 * MIB),
            Path::Batch,
            "at = batch"
        );
        assert_eq!(seed_path(STANDARD, 4 * MIB - 1, 4 * MIB), Path::Provisioned);
        assert_eq!(seed_path("anything", 0, 1), Path::Provisioned);
    }

    #[test]
    fn limits_move_requests_down_the_chain_or_refuse_them() {
        let t = 4 * MIB;
        assert_eq!(
            choose_path(SERVERLESS_PREFERRED, 5 * MIB, t, ALL),
            Ok(Path::Provisioned),
            "too big for serverless, fits real-time"
        );
        assert_eq!(choose_path(STANDARD, 5 * MIB, t, ALL), Ok(Path::Batch));
        assert_eq!(
            choose_path(STANDARD, 5 * MIB, t, NO_BATCH),
            Ok(Path::Provisioned),
            "no batch endpoint: real-time takes what fits"
        );
        assert_eq!(
            choose_path(STANDARD, 7 * MIB, t, NO_BATCH),
            Err(NoPath::TooLarge {
                limit: REALTIME_MAX_PAYLOAD
            })
        );
        assert_eq!(
            choose_path(STANDARD, 7 * MIB, 100 * MIB, ALL),
            Ok(Path::Batch),
            "over 6 MiB goes batch even below the threshold"
        );
        let serverless_only = Available {
            serverless: true,
            ..Available::default()
        };
        assert_eq!(
            choose_path(STANDARD, 1, t, serverless_only),
            Ok(Path::Serverless)
        );
        assert_eq!(
            choose_path(STANDARD, 1, t, Available::default()),
            Err(NoPath::NoEndpoint)
        );
    }

    #[test]
    fn the_sagemaker_api_never_goes_batch() {
        let rt = ALL.realtime();
        let t = NO_BATCH_THRESHOLD;
        assert_eq!(choose_path(STANDARD, 5 * MIB, t, rt), Ok(Path::Provisioned));
        assert_eq!(
            choose_path(SERVERLESS_PREFERRED, 4 * MIB, t, rt),
            Ok(Path::Serverless),
            "serverless while it fits its 4 MiB"
        );
        assert_eq!(
            choose_path(SERVERLESS_PREFERRED, 4 * MIB + 1, t, rt),
            Ok(Path::Provisioned)
        );
        assert_eq!(
            choose_path(STANDARD, REALTIME_MAX_PAYLOAD + 1, t, rt),
            Err(NoPath::TooLarge {
                limit: REALTIME_MAX_PAYLOAD
            })
        );
        assert_eq!(fallback_after(Path::Provisioned, 1, rt), None);
    }

    #[test]
    fn cold_start_fallback_follows_the_chain() {
        assert_eq!(
            fallback_after(Path::Serverless, 10, ALL),
            Some(Path::Provisioned)
        );
        let no_prov = Available {
            provisioned: false,
            ..ALL
        };
        assert_eq!(
            fallback_after(Path::Serverless, 10, no_prov),
            Some(Path::Batch)
        );
        assert_eq!(
            fallback_after(Path::Provisioned, 10, ALL),
            Some(Path::Batch)
        );
        assert_eq!(fallback_after(Path::Provisioned, 10, NO_BATCH), None);
        assert_eq!(fallback_after(Path::Batch, 10, ALL), None);
    }

    fn region(name: &str, priority: u32, health: Health, ejected: bool) -> RegionState<'_> {
        RegionState {
            name,
            priority,
            health,
            ejected,
        }
    }

    fn order(local: &str, active: Option<&str>, draining: bool, rs: &[RegionState]) -> Vec<String> {
        region_order(&RegionInputs {
            local,
            active,
            local_draining: draining,
            regions: rs,
        })
        .into_iter()
        .map(|i| rs[i].name.to_string())
        .collect()
    }

    #[test]
    fn region_choice() {
        use Health::*;
        let rs = |e: Health, w: Health, eu: Health| {
            vec![
                region("us-east-1", 1, e, false),
                region("us-west-2", 2, w, false),
                region("eu-west-1", 3, eu, false),
            ]
        };
        // Local and active and healthy: local first.
        assert_eq!(
            order("us-west-2", Some("us-west-2"), false, &rs(Up, Up, Up))[0],
            "us-west-2"
        );
        // Local not active: the active region.
        assert_eq!(
            order("eu-west-1", Some("us-west-2"), false, &rs(Up, Up, Up)),
            ["us-west-2", "us-east-1", "eu-west-1"]
        );
        // Active but draining: go where the record points... which is us here,
        // so the next best healthy region by priority.
        assert_eq!(
            order("us-east-1", Some("us-east-1"), true, &rs(Up, Up, Up))[0],
            "us-east-1",
            "draining but still named active and healthy: the record's active region"
        );
        // Active region down: highest-priority healthy region, then fail open.
        assert_eq!(
            order("eu-west-1", Some("us-east-1"), false, &rs(Down, Up, Up)),
            ["us-west-2", "eu-west-1", "us-east-1"]
        );
        // No record yet: by priority, unknown health counts as not down.
        assert_eq!(
            order("eu-west-1", None, false, &rs(Unknown, Unknown, Unknown)),
            ["us-east-1", "us-west-2", "eu-west-1"]
        );
        // Everything down: still every region, active first.
        assert_eq!(
            order("eu-west-1", Some("us-west-2"), false, &rs(Down, Down, Down)),
            ["us-west-2", "us-east-1", "eu-west-1"]
        );
        // Ejected goes last; all ejected: ignored.
        let mut ej = rs(Up, Up, Up);
        ej[0].ejected = true;
        assert_eq!(
            order("us-east-1", Some("us-east-1"), false, &ej),
            ["us-west-2", "eu-west-1", "us-east-1"]
        );
        for r in &mut ej {
            r.ejected = true;
        }
        assert_eq!(
            order("us-east-1", Some("us-east-1"), false, &ej),
            ["us-east-1", "us-west-2", "eu-west-1"]
        );
    }

    fn available() -> impl Strategy<Value = Available> {
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(s, p, b)| Available {
            serverless: s,
            provisioned: p,
            batch: b,
        })
    }

    fn class() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(SERVERLESS_PREFERRED.to_string()),
            Just(STANDARD.to_string()),
            "[a-z_]{0,24}",
        ]
    }

    fn payload() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..16 * MIB,
            Just(SERVERLESS_MAX_PAYLOAD),
            Just(SERVERLESS_MAX_PAYLOAD + 1),
            Just(REALTIME_MAX_PAYLOAD),
            Just(REALTIME_MAX_PAYLOAD + 1),
            Just(BATCH_MAX_PAYLOAD + 1),
            any::<u64>(),
        ]
    }

    fn health() -> impl Strategy<Value = Health> {
        prop_oneof![Just(Health::Up), Just(Health::Down), Just(Health::Unknown)]
    }

    proptest! {
        /// Exactly one path for every input, and it respects the limits and
        /// the region's endpoints; a refusal happens only when no path the
        /// region has can take the payload.
        #[test]
        fn exactly_one_path_within_limits(
            class in class(),
            len in payload(),
            threshold in 1..64 * MIB,
            avail in available(),
        ) {
            match choose_path(&class, len, threshold, avail) {
                Ok(p) => {
                    prop_assert!(avail.has(p));
                    prop_assert!(len <= p.max_payload());
                    // Deterministic.
                    prop_assert_eq!(choose_path(&class, len, threshold, avail), Ok(p));
                    // The seed's choice wins whenever it is possible.
                    let seed = seed_path(&class, len, threshold);
                    if avail.has(seed) && len <= seed.max_payload() {
                        prop_assert_eq!(p, seed);
                    }
                }
                Err(NoPath::TooLarge { limit }) => {
                    prop_assert!(Path::ALL.iter().all(|&p| !avail.has(p) || len > p.max_payload()));
                    prop_assert!(len > limit);
                }
                Err(NoPath::NoEndpoint) => {
                    prop_assert_eq!(avail, Available::default());
                }
            }
        }

        /// A synchronous request (batch masked, no threshold) never gets
        /// the batch path, by choice or by fallback.
        #[test]
        fn realtime_requests_never_go_batch(
            class in class(),
            len in payload(),
            avail in available(),
        ) {
            let rt = avail.realtime();
            if let Ok(p) = choose_path(&class, len, NO_BATCH_THRESHOLD, rt) {
                prop_assert!(p.is_realtime());
                let mut p = p;
                while let Some(next) = fallback_after(p, len, rt) {
                    prop_assert!(next.is_realtime());
                    p = next;
                }
            }
        }

        /// Fallback chains are finite, never revisit a path, only move
        /// towards batch and end there; following `fallback_after` from any
        /// start terminates.
        #[test]
        fn fallback_chains_are_exhaustive_and_end(
            start in prop::sample::select(Path::ALL.to_vec()),
            len in payload(),
            avail in available(),
        ) {
            let chain = fallback_chain(start);
            prop_assert!(chain.len() < Path::ALL.len());
            let mut seen = vec![start];
            for &p in chain {
                prop_assert!(p > *seen.last().unwrap(), "moves towards batch");
                prop_assert!(!seen.contains(&p));
                seen.push(p);
            }
            prop_assert_eq!(*seen.last().unwrap(), Path::Batch, "every chain ends at batch");
            // Exhaustive: the start plus its chain covers every path after it.
            prop_assert!(Path::ALL.iter().filter(|&&p| p >= start).all(|p| seen.contains(p)));
            let mut p = start;
            let mut steps = 0;
            while let Some(next) = fallback_after(p, len, avail) {
                prop_assert!(next > p);
                prop_assert!(avail.has(next) && len <= next.max_payload());
                p = next;
                steps += 1;
                prop_assert!(steps < Path::ALL.len());
            }
        }

        /// Region order: a permutation of the configured regions; local first
        /// when it is active, not draining, not down and not ejected (or all
        /// are ejected); ejected regions only ahead of others when all are.
        #[test]
        fn region_order_is_a_ranking_of_every_region(
            hs in prop::collection::vec((health(), any::<bool>()), 1..6),
            local_i in 0usize..6,
            active_i in prop::option::of(0usize..6),
            draining in any::<bool>(),
        ) {
            let names: Vec<String> = (0..hs.len()).map(|i| format!("r-{i}")).collect();
            let rs: Vec<RegionState> = hs.iter().enumerate()
                .map(|(i, (h, e))| region(&names[i], (i as u32 * 7) % 5, *h, *e))
                .collect();
            let local = rs[local_i % rs.len()].name.to_string();
            let active = active_i.map(|i| rs[i % rs.len()].name.to_string());
            let out = order(&local, active.as_deref(), draining, &rs);
            let mut sorted = out.clone();
            sorted.sort();
            let mut names = names.clone();
            names.sort();
            prop_assert_eq!(sorted, names, "every region exactly once");
            let l = rs.iter().find(|r| r.name == local).unwrap();
            let all_ejected = rs.iter().all(|r| r.ejected);
            if active.as_deref() == Some(local.as_str()) && !draining
                && l.health != Health::Down && (!l.ejected || all_ejected) {
                prop_assert_eq!(&out[0], &local);
            }
            if !all_ejected {
                let first_ejected = out.iter().position(|n| rs.iter().any(|r| r.name == n && r.ejected));
                if let Some(i) = first_ejected {
                    prop_assert!(out[i..].iter().all(|n| rs.iter().any(|r| r.name == n && r.ejected)));
                }
            }
        }
    }
}
