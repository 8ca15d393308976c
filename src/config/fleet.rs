//! The fleet fingerprint: the settings every daemon of one fleet must
//! agree on, digested per group so that a mismatch says *which* settings
//! differ, and as one short digest.
//!
//! Two daemons that disagree on these do not fail: each acts on its own
//! view. With different region priorities each names the other as target
//! and nobody claims; with `wait_out_lease = false` a new active acts while
//! the old one still does (a shorter `lease` no longer does: the votes
//! announce each daemon's lease and a new active waits out the longest,
//! docs/lease.md); with `approval = "none"`
//! a target claims what the rest of the fleet holds for approval. So they
//! are compared: by `failoverd check-config` over a set of region files,
//! and by the running daemons through their votes (`published`,
//! `core::drift`).
//!
//! What is in each group ([`GROUPS`]), as `key = value` lines
//! ([`settings`]):
//!
//! - `regions`: each region's priority (the failover order);
//! - `workflow`: each region's state machine ARN;
//! - `tables`: the control and routing tables, the consistency mode, the
//!   replicas, the witness and which replica each region uses;
//! - `timings`: every `[timings]` key that another daemon's decision rests
//!   on (not `shutdown_grace`, which is local), and `cost.prepare_budget`
//!   (the stuck rule of every daemon waits for the target's scale-up);
//! - `policy`: `auto_failback`, `wait_out_lease`;
//! - `approval`: the approval rule, per tier, its timeout and what the
//!   timeout does, and the rule that governs the fleet;
//! - `tiers`: the default tier, each model's tier and the configured models
//!   (the governing tier is the strictest of theirs);
//! - `route53`: the fleet's Route 53 budget and every region's checks (the
//!   daemons take turns over one schedule computed from both), and the
//!   source and metric period when the source is not the API.
//!
//! Not in it: the local `region`, listen addresses, endpoint overrides, the
//! router's tunables, probe URLs and timeouts, schedules and idle
//! detection, which may differ per daemon.
//!
//! The digests are SHA-256 over a fixed text (sorted where order carries
//! no meaning, durations in milliseconds), prefixed with a version, so they
//! are the same in every run and every build; a unit test pins them.
//! Changing what a group holds changes its digest, which is the point: a
//! daemon of another version that reads the settings differently reports a
//! mismatch rather than being trusted to agree.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Config;

/// The groups, in the order they are digested and reported.
pub const GROUPS: [&str; 8] = [
    "regions", "workflow", "tables", "timings", "policy", "approval", "tiers", "route53",
];

/// Reported by [`Fingerprint::differs`] when the digests differ in a group
/// this build does not know (a daemon of a newer version).
pub const UNKNOWN_GROUP: &str = "unknown";

/// Bumped whenever the text of any group changes meaning.
const VERSION: &str = "failoverd fleet fingerprint v1";

/// Hex characters of each digest kept (64 bits).
const SHORT: usize = 16;

/// Hex characters of each group's digest in a vote (`published`).
const PUBLISHED: usize = 4;

/// The key of the whole fingerprint's digest in `published` (where
/// `core::drift` looks for it).
pub use crate::core::drift::ALL;

/// The fleet fingerprint of one daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Group name -> short hex digest of its settings.
    groups: BTreeMap<String, String>,
}

impl Fingerprint {
    /// The fingerprint of `c`.
    pub fn of(c: &Config) -> Fingerprint {
        let groups = settings(c)
            .into_iter()
            .map(|(name, lines)| {
                let mut text = format!("{VERSION}\n[{name}]\n");
                for (k, v) in lines {
                    text.push_str(&format!("{k} = {v}\n"));
                }
                (name.to_string(), short(text.as_bytes()))
            })
            .collect();
        Fingerprint { groups }
    }

    /// One short hex digest of every group.
    pub fn digest(&self) -> String {
        let mut text = format!("{VERSION}\n");
        for (name, d) in &self.groups {
            text.push_str(&format!("{name}={d}\n"));
        }
        short(text.as_bytes())
    }

    /// What a vote carries (`core::drift`): each group's digest cut to 4
    /// hex characters, and the whole fingerprint's 16 under `all`. Votes
    /// are written every round and stay under one write unit (1 KB); the
    /// whole digest catches what a cut group digest might collide on.
    pub fn published(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .groups
            .iter()
            .map(|(g, d)| (g.clone(), d.chars().take(PUBLISHED).collect()))
            .collect();
        out.insert(ALL.to_string(), self.digest());
        out
    }

    /// A group's short digest.
    pub fn group(&self, name: &str) -> Option<&str> {
        self.groups.get(name).map(String::as_str)
    }

    /// The groups whose settings differ between `self` and `other`, in
    /// [`GROUPS`] order; empty when the fingerprints are equal.
    pub fn differs(&self, other: &Fingerprint) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = GROUPS
            .into_iter()
            .filter(|g| self.groups.get(*g) != other.groups.get(*g))
            .collect();
        if out.is_empty() && self != other {
            out.push(UNKNOWN_GROUP);
        }
        out
    }
}

fn short(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut hex = String::with_capacity(SHORT);
    for b in hash.iter().take(SHORT / 2) {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let mut v: Vec<&str> = items.into_iter().map(String::as_str).collect();
    v.sort_unstable();
    format!("[{}]", v.join(", "))
}

/// The settings of each group as `(key, value)` lines, in [`GROUPS`]
/// order: what the digests are computed from, and what `check-config`
/// shows when two files differ.
pub fn settings(c: &Config) -> Vec<(&'static str, Vec<(String, String)>)> {
    let mut regions: Vec<&super::RegionConfig> = c.regions.iter().collect();
    regions.sort_by(|a, b| a.name.cmp(&b.name));
    let per_region = |f: &dyn Fn(&super::RegionConfig) -> (&'static str, String)| {
        regions
            .iter()
            .map(|r| {
                let (k, v) = f(r);
                (format!("regions.{}.{k}", r.name), v)
            })
            .collect::<Vec<_>>()
    };
    let t = &c.timings;
    let p = &c.policy;
    let kv = |k: &str, v: String| (k.to_string(), v);
    let mut tables = vec![
        kv("tables.control", c.tables.control.clone()),
        kv("tables.consistency", c.tables.consistency.to_string()),
        kv("tables.routing", c.tables.routing.clone()),
        kv(
            "tables.control_region",
            c.tables.control_region.clone().unwrap_or_default(),
        ),
        kv("tables.replicas", list(&c.tables.replicas)),
        kv(
            "tables.witness",
            c.tables.witness.clone().unwrap_or_default(),
        ),
    ];
    tables.extend(per_region(&|r| {
        (
            "control_replica",
            r.control_replica.clone().unwrap_or_default(),
        )
    }));
    let mut approval = vec![kv("policy.approval", p.approval.as_str().into())];
    approval.extend(p.approval_by_tier.iter().map(|(tier, a)| {
        kv(
            &format!("policy.approval_by_tier.{}", tier.as_str()),
            a.as_str().into(),
        )
    }));
    approval.extend([
        kv("policy.approval_timeout", ms(p.approval_timeout)),
        kv(
            "policy.on_approval_timeout",
            p.on_approval_timeout.as_str().into(),
        ),
        kv("(fleet approval)", c.fleet_approval().as_str().into()),
    ]);
    let mut tiers = vec![
        kv("cost.default_tier", c.cost.default_tier.as_str().into()),
        kv("models", list(c.models.iter().map(|m| &m.name))),
    ];
    tiers.extend(
        c.cost
            .tiers
            .iter()
            .map(|(model, tier)| kv(&format!("cost.tiers.{model}"), tier.as_str().into())),
    );
    tiers.push(kv(
        "(fleet tier)",
        c.cost.fleet_tier(&c.models).as_str().into(),
    ));
    // A model's per-region serving, only off the default mapping (a fleet
    // without `[models.regions.*]` keeps the digest it had): every daemon
    // must send a model to the same endpoints and components.
    let default_of = |m: &super::ModelConfig| {
        super::serving::default_serving(&c.regions, m.target_model.as_deref())
    };
    for m in c.models.iter().filter(|m| m.serving != default_of(m)) {
        let mut rows = Vec::new();
        for s in &m.serving {
            for (path, t) in s.all() {
                let via = t
                    .via
                    .as_ref()
                    .map(|v| format!("#{v:?}"))
                    .unwrap_or_default();
                rows.push(format!(
                    "{}:{}:{}{via}",
                    s.region,
                    path.as_str(),
                    t.endpoint
                ));
            }
        }
        tiers.push(kv(&format!("models.{}.regions", m.name), rows.join(" ")));
    }
    let mut route53 = vec![kv(
        "health.route53_calls_per_second",
        c.health.route53_calls_per_second.to_string(),
    )];
    // Only off the default: a fleet reading the API keeps the digest it had
    // before the source was a setting (no drift in a rolling upgrade).
    if c.health.route53_source != crate::core::health::Route53Source::Api {
        route53.push(kv(
            "health.route53_source",
            c.health.route53_source.as_str().into(),
        ));
        route53.push(kv(
            "health.route53_metric_period",
            c.health.route53_metric_period.as_millis().to_string(),
        ));
    }
    route53.extend(per_region(&|r| {
        ("health_check_ids", list(&r.health_check_ids))
    }));
    vec![
        (
            "regions",
            per_region(&|r| ("priority", r.priority.to_string())),
        ),
        (
            "workflow",
            per_region(&|r| ("state_machine_arn", r.state_machine_arn.clone())),
        ),
        ("tables", tables),
        (
            "timings",
            vec![
                kv("timings.poll_interval", ms(t.poll_interval)),
                kv("timings.failure_threshold", t.failure_threshold.to_string()),
                kv(
                    "timings.recovery_threshold",
                    t.recovery_threshold.to_string(),
                ),
                kv("timings.vote_freshness", ms(t.vote_freshness)),
                kv("timings.lease", ms(t.lease)),
                kv("timings.min_failover_interval", ms(t.min_failover_interval)),
                kv("timings.prepare_budget", ms(t.prepare_budget)),
                kv("timings.start_timeout", ms(t.start_timeout)),
                kv("timings.stuck_failover", ms(t.stuck_failover)),
                kv("timings.abort_retry", ms(t.abort_retry)),
                kv("cost.prepare_budget", ms(c.cost.prepare_budget)),
            ],
        ),
        (
            "policy",
            vec![
                kv("policy.auto_failback", p.auto_failback.to_string()),
                kv("policy.wait_out_lease", p.wait_out_lease.to_string()),
            ],
        ),
        ("approval", approval),
        ("tiers", tiers),
        ("route53", route53),
    ]
}

/// Which settings of one group differ between two configurations: `(key,
/// value in a, value in b)`, a missing key shown as `(not set)`.
pub fn differences(a: &Config, b: &Config, group: &str) -> Vec<(String, String, String)> {
    let pick = |c: &Config| -> BTreeMap<String, String> {
        settings(c)
            .into_iter()
            .find(|(g, _)| *g == group)
            .map(|(_, lines)| lines.into_iter().collect())
            .unwrap_or_default()
    };
    let (x, y) = (pick(a), pick(b));
    let unset = || "(not set)".to_string();
    let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| x.get(*k) != y.get(*k))
        .map(|k| {
            (
                k.clone(),
                x.get(k).cloned().unwrap_or_else(unset),
                y.get(k).cloned().unwrap_or_else(unset),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvSource, load};

    const FLEET: &str = r#"
[tables]
control = "c"
routing = "r"
[timings]
lease = "40s"
[[regions]]
name = "us-east-1"
priority = 1
health_check_ids = ["hc-1"]
state_machine_arn = "arn:aws:states:us-east-1:111122223333:stateMachine:f"
sagemaker = { provisioned = "p" }
[[regions]]
name = "us-west-2"
priority = 2
probe_urls = ["https://b.example/ping"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
sagemaker = { serverless = "s" }
[[regions]]
name = "us-east-2"
priority = 3
health_check_ids = ["hc-3"]
state_machine_arn = "arn:aws:states:us-east-2:111122223333:stateMachine:f"
sagemaker = { serverless = "s" }
[[models]]
name = "m"
"#;

    /// `region` loaded over `base`, with `extra` lines in the region file.
    fn config(base: &str, region: &str, extra: &str) -> Config {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "failoverd-fleet-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("base.toml"), base).unwrap();
        let f = dir.join(format!("{region}.toml"));
        std::fs::write(&f, format!("region = \"{region}\"\n{extra}")).unwrap();
        load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()))
    }

    /// The digests are fixed by the settings alone: the same in every run
    /// and every build (SHA-256 of a fixed text, not a std hasher). If
    /// this fails, the fingerprint's text changed: bump `VERSION` and
    /// update the figures, knowing daemons of the two versions will report
    /// a mismatch.
    #[test]
    fn the_digests_are_stable() {
        let f = Fingerprint::of(&config(FLEET, "us-east-1", ""));
        assert_eq!(f.digest(), "c4bf778caf379974");
        assert_eq!(f.group("timings"), Some("7922cfe3d52c5ecc"));
        assert_eq!(f.group("regions"), Some("19399f424b567a99"));
        let same = Fingerprint::of(&config(FLEET, "us-east-1", ""));
        assert_eq!(f, same);
        assert!(f.differs(&same).is_empty());
    }

    /// What is local to one daemon does not count; the order regions and
    /// replicas are written in does not either.
    #[test]
    fn local_settings_and_order_do_not_count() {
        let a = Fingerprint::of(&config(FLEET, "us-east-1", ""));
        let b = Fingerprint::of(&config(
            FLEET,
            "us-west-2",
            "[listen]\nadmin = \"127.0.0.1:9999\"\n[timings]\nshutdown_grace = \"5s\"\n[health]\nprobe_connect_timeout = \"1s\"\n[router]\nmax_in_flight = 9\n",
        ));
        assert_eq!(a, b, "{:?}", a.differs(&b));
        // The regions listed in another order: the same fleet.
        let (first, rest) = FLEET.split_at(FLEET.find("[[regions]]").unwrap());
        let mut entries: Vec<&str> = rest.split_inclusive("\n").collect();
        let third = entries
            .iter()
            .rposition(|l| l.starts_with("[[regions]]"))
            .unwrap();
        let models = entries
            .iter()
            .position(|l| l.starts_with("[[models]]"))
            .unwrap();
        let moved: Vec<&str> = entries.drain(third..models).collect();
        let reordered = format!("{first}{}{}", moved.concat(), entries.concat());
        assert_ne!(reordered, FLEET);
        let c = Fingerprint::of(&config(&reordered, "us-east-1", ""));
        assert_eq!(a, c, "{:?}", a.differs(&c));
    }

    /// Each group changes alone, and `differs` names it.
    #[test]
    fn a_change_names_its_group() {
        let a = Fingerprint::of(&config(FLEET, "us-east-1", ""));
        let cases = [
            ("[timings]\nlease = \"50s\"\n", vec!["timings"]),
            ("[cost]\nprepare_budget = \"2m\"\n", vec!["timings"]),
            ("[policy]\nwait_out_lease = false\n", vec!["policy"]),
            ("[policy]\napproval = \"manual\"\n", vec!["approval"]),
            ("[cost]\ndefault_tier = \"tier1\"\n", vec!["tiers"]),
            ("[tables]\nrouting = \"other\"\n", vec!["tables"]),
            (
                "[health]\nroute53_calls_per_second = 1.0\n",
                vec!["route53"],
            ),
        ];
        for (extra, groups) in cases {
            let b = Fingerprint::of(&config(FLEET, "us-east-1", extra));
            assert_eq!(a.differs(&b), groups, "{extra}");
            assert_ne!(a.digest(), b.digest(), "{extra}");
        }
        // Priorities swapped: regions only; an ARN changed: workflow only.
        let swapped = FLEET
            .replace("priority = 1", "priority = 9")
            .replace("priority = 2", "priority = 1")
            .replace("priority = 9", "priority = 2");
        let b = Fingerprint::of(&config(&swapped, "us-east-1", ""));
        assert_eq!(a.differs(&b), ["regions"]);
        let arn = FLEET.replace(
            "us-west-2:111122223333:stateMachine:f",
            "us-west-2:111122223333:stateMachine:g",
        );
        let b = Fingerprint::of(&config(&arn, "us-east-1", ""));
        assert_eq!(a.differs(&b), ["workflow"]);
        let diffs = differences(
            &config(FLEET, "us-east-1", ""),
            &config(&arn, "us-east-1", ""),
            "workflow",
        );
        assert_eq!(
            diffs,
            [(
                "regions.us-west-2.state_machine_arn".to_string(),
                "arn:aws:states:us-west-2:111122223333:stateMachine:f".to_string(),
                "arn:aws:states:us-west-2:111122223333:stateMachine:g".to_string()
            )]
        );
    }

    /// A fingerprint travels (votes will carry it) and compares the same
    /// after a round trip; a group this build does not know still counts.
    #[test]
    fn a_fingerprint_round_trips_and_unknown_groups_count() {
        let a = Fingerprint::of(&config(FLEET, "us-east-1", ""));
        let json = serde_json::to_string(&a).unwrap();
        let back: Fingerprint = serde_json::from_str(&json).unwrap();
        assert_eq!(a, back);
        assert_eq!(a.digest(), back.digest());
        let mut newer = a.clone();
        newer
            .groups
            .insert("later".into(), "0123456789abcdef".into());
        assert_eq!(a.differs(&newer), [UNKNOWN_GROUP]);
        assert_ne!(a.digest(), newer.digest());
    }
}
