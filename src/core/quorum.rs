//! Votes from every region's daemons -> a verdict per region.
//!
//! A region may run more than one daemon (instances, docs/instances.md):
//! each publishes its own vote, and the region counts as *one* observer,
//! its freshest vote standing for it ([`per_region`]). Adding a daemon to a
//! region adds availability to its vote, never a vote: the majorities
//! below are of regions.
//!
//! Rules (docs/design.md §5):
//! - a vote counts only while fresh (`now - at <= freshness`);
//! - nothing is decided unless a majority of *all configured* regions have
//!   fresh votes, and this daemon's own vote is among them (an observer that
//!   cannot write its own vote, or cannot read its peers', is isolated);
//! - a region is `Down` when a strict majority of the fresh observers say so,
//!   `Up` when a strict majority say up, and undecided otherwise.
//!
//! Requiring a majority of all regions, not just of those heard from, is what
//! keeps a partitioned minority from agreeing among itself that the majority
//! is down.
//!
//! Freshness is judged on the *reader's* clock ([`Receipts`]): a vote's own
//! timestamp is the writer's clock, and a dead daemon whose clock ran fast
//! must not keep counting because its last vote is stamped in the future.
//! A reader stamps each vote with when it first saw that vote (a new `at`),
//! and votes it found already there at its first read are clamped to that
//! read's time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::health::Verdict;
use super::mono::Mono;

/// One daemon's published view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The observer's region.
    pub observer: String,
    /// Which of the region's daemons wrote it (`Config::instance`, or the
    /// name generated at its start); `None`: a daemon older than instances
    /// (its vote is keyed by the region alone). A region's daemons each
    /// publish their own vote; the region counts once in a quorum
    /// ([`tally`]: its freshest vote) and its routers' counts are summed
    /// (`metrics::counts`).
    #[serde(default)]
    pub instance: Option<String>,
    /// Unix milliseconds when the observer wrote it.
    pub at: u64,
    /// The control-record epoch the observer had seen.
    pub seen_epoch: u64,
    /// The observer's verdict on every region (itself included).
    pub view: BTreeMap<String, Verdict>,
    /// What the observer's router counted (`metrics::counts`); `None` when
    /// it published no counts (its router had not started counting, an
    /// older daemon, or the attribute could not be decoded): unknown, which
    /// readers take as "not counted", never as zero.
    #[serde(default)]
    pub traffic: Option<Traffic>,
    /// The observer's fleet fingerprint: group -> digest of the settings
    /// every daemon must share (`config::fleet`, `core::drift`). `None`:
    /// a daemon that published none (an older version).
    #[serde(default)]
    pub fleet: Option<BTreeMap<String, String>>,
    /// The observer's last standby readiness round (`control::standby`),
    /// which the planner uses to prefer a ready failover target
    /// (docs/readiness.md). `None`: it published none (the active region,
    /// no round yet, or an older daemon): unknown.
    #[serde(default)]
    pub readiness: Option<super::standby::Published>,
    /// The observer's `timings.lease` (ms): how long it acts as the active
    /// region after its last confirmed read. A new active waits out the
    /// longest any vote announces (`control::role`): with drifted leases a
    /// forced failover (which no drift gate holds back) would otherwise
    /// wait out only its own (simulation seed 30580). `None`: an older
    /// daemon.
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

/// Per region, the longest `timings.lease` its daemons' vote items
/// announce (ms), fresh or not: a daemon that stopped voting may still
/// hold a lease. Items left behind by a region's earlier processes count
/// too (an unconfigured `instance` is new at every start), so a lease
/// lowered there takes effect for waits once those items are gone.
pub fn leases(votes: &[Vote]) -> BTreeMap<String, u64> {
    let mut by_region: BTreeMap<String, u64> = BTreeMap::new();
    for v in votes {
        if let Some(l) = v.lease_ms {
            let e = by_region.entry(v.observer.clone()).or_default();
            *e = (*e).max(l);
        }
    }
    by_region
}

/// How long to wait out a lease held in `region` (its daemons' longest
/// announced, [`leases`]), never less than `own` (ms).
pub fn longest_lease(own: u64, leases: &BTreeMap<String, u64>, region: &str) -> u64 {
    leases.get(region).copied().unwrap_or(0).max(own)
}

/// Trailing windows (ms) over which a vote publishes per-endpoint sums:
/// 5 and 15 minutes, 1 and 6 hours, 1 and 7 days (the longest
/// `cost.idle.window`).
pub const TRAILING_MS: [u64; 6] = [
    5 * 60_000,
    15 * 60_000,
    3_600_000,
    6 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
];

/// One router's invocation counts as published in its vote: compact (a few
/// numbers per endpoint it invoked in the last 7 days), and relative to the
/// vote's own `at` so that readers place them on their own clock (the
/// receipt time `Receipts` gives), whatever the writer's clock skew.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// How long (ms, before `at`) the router has counted without a gap.
    pub counted_ms: u64,
    /// Per `"region/endpoint"` the router invoked in the last 7 days;
    /// an endpoint left out had no invocation from this router over the
    /// whole counted span (or 7 days).
    pub endpoints: BTreeMap<String, EndpointTraffic>,
}

/// One endpoint's counts in a vote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointTraffic {
    /// How long (ms, before `at`) since the end of the newest minute with
    /// an invocation (0: the current minute).
    pub last_ago_ms: u64,
    /// Invocations in each of [`TRAILING_MS`] before `at`, each window
    /// rounded outward to whole buckets (never less than the window).
    pub sums: [u64; TRAILING_MS.len()],
    /// The busiest minute (invocations) overlapping the hour before `at`,
    /// for the active region's need (`metrics::counts::need_from`). `None`
    /// from a daemon that does not publish it: the need is then unknown.
    #[serde(default)]
    pub peak_minute: Option<u64>,
}

impl Vote {
    /// The writer: `region/instance`, or the region alone for a daemon
    /// older than instances.
    pub fn who(&self) -> String {
        match &self.instance {
            Some(i) => format!("{}/{i}", self.observer),
            None => self.observer.clone(),
        }
    }

    /// Is this the vote of `region`'s daemon `instance`?
    pub fn is_from(&self, region: &str, instance: Option<&str>) -> bool {
        self.observer == region && self.instance.as_deref() == instance
    }
}

/// A vote whose `at` is this much older than the newest vote on the board
/// (or than the reader's now) is a retired daemon's, an instance that was
/// replaced or removed: it counts for nothing, not even its `seen_epoch`.
/// Eight days: longer than any window its router's counts matter to (7
/// days, `cost.idle.window`'s maximum).
pub const RETIRED_MS: u64 = 8 * 86_400_000;

/// Each configured region's freshest vote (the newest `at`): the one that
/// stands for the region in a quorum, whichever of its daemons wrote it.
pub fn per_region<'a>(regions: &[String], votes: &'a [Vote]) -> Vec<&'a Vote> {
    let mut latest: BTreeMap<&str, &Vote> = BTreeMap::new();
    for v in votes.iter().filter(|v| regions.contains(&v.observer)) {
        if latest
            .get(v.observer.as_str())
            .is_none_or(|old| old.at < v.at)
        {
            latest.insert(&v.observer, v);
        }
    }
    latest.into_values().collect()
}

/// How long a silent daemon is still shown as one of its region's (a
/// region with one of its daemons silent is *degraded*): a day. Past that,
/// a daemon whose vote stopped is taken for removed (or, under a generated
/// name, restarted under another), and no longer shown.
pub const SHOWN_MS: u64 = 86_400_000;

/// One daemon of a region as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Daemon {
    /// Its instance name (`None`: a daemon older than instances).
    pub instance: Option<String>,
    /// Its vote's age on the reader's clock.
    pub age_ms: u64,
    pub fresh: bool,
}

/// A region's daemons, by their votes: `up` when every daemon shown is
/// fresh, `degraded` when some are and some are not, `down` when none is
/// (or there is no vote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Daemons {
    pub state: &'static str,
    pub daemons: Vec<Daemon>,
}

/// `region`'s daemons from `votes` (each `at` on the reader's clock): the
/// newest vote of each, those silent for over [`SHOWN_MS`] left out.
pub fn daemons_of(region: &str, votes: &[Vote], now: u64, freshness_ms: u64) -> Daemons {
    let mut newest: BTreeMap<Option<&str>, &Vote> = BTreeMap::new();
    for v in votes.iter().filter(|v| v.observer == region) {
        let key = v.instance.as_deref();
        if newest.get(&key).is_none_or(|old| old.at < v.at) {
            newest.insert(key, v);
        }
    }
    let daemons: Vec<Daemon> = newest
        .values()
        .map(|v| {
            let age_ms = now.saturating_sub(v.at);
            Daemon {
                instance: v.instance.clone(),
                age_ms,
                fresh: age_ms <= freshness_ms,
            }
        })
        .filter(|d| d.fresh || d.age_ms <= SHOWN_MS)
        .collect();
    let fresh = daemons.iter().filter(|d| d.fresh).count();
    let state = match fresh {
        0 => "down",
        n if n == daemons.len() => "up",
        _ => "degraded",
    };
    Daemons { state, daemons }
}

impl Traffic {
    /// The key of `endpoint` in `region` in [`Traffic::endpoints`].
    pub fn key(region: &str, endpoint: &str) -> String {
        format!("{region}/{endpoint}")
    }
}

/// The quorum's verdict on one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consensus {
    Up,
    Down,
    /// No strict majority either way among fresh observers.
    Split,
}

/// Why no decision can be taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum NoQuorum {
    /// This daemon's own vote is missing or stale (it could not write it).
    OwnVoteStale,
    /// Too few fresh observers.
    TooFewObservers { fresh: usize, needed: usize },
}

/// The tally of one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Observers whose votes were fresh.
    pub fresh_observers: Vec<String>,
    /// Verdict per configured region; empty without quorum.
    pub regions: BTreeMap<String, Consensus>,
    /// Set when there is no quorum.
    pub no_quorum: Option<NoQuorum>,
}

impl Tally {
    /// Does the quorum see `region` in this state?
    pub fn is(&self, region: &str, c: Consensus) -> bool {
        self.no_quorum.is_none() && self.regions.get(region) == Some(&c)
    }
}

/// When this daemon first saw each observer's current vote, on its own
/// monotonic clock: what freshness is judged on. A step of this host's wall
/// clock does not make a vote younger or older.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipts {
    /// (observer, instance) -> (the vote's `at`, when we first saw it,
    /// whether that moment is only guessed: a vote already there at our
    /// first read, its age taken from the writer's wall clock)
    seen: BTreeMap<(String, Option<String>), (u64, Mono, bool)>,
    /// Set after the first read.
    started: bool,
    /// When the first read was (monotonic).
    first: Option<Mono>,
}

impl Receipts {
    /// [`Self::effective_at`] for a one-off read, whose only clock is the
    /// wall clock (the cost task's and an operator's tally of one read).
    pub fn effective(&mut self, votes: &[Vote], now: u64) -> Vec<Vote> {
        self.effective_at(votes, now, Mono(now))
    }

    /// `votes` as read at `now` (the reader's wall clock) and `mono` (its
    /// monotonic clock, the same moment), with each `at` replaced by the
    /// time its freshness is judged on: when this reader first saw that
    /// vote, measured on the monotonic clock and expressed as a time on
    /// `now`'s wall clock (so `now - at` is the vote's age however the wall
    /// clock stepped since). For votes already there at the reader's first
    /// read, the vote's own age by the wall clocks, at least 0 (an old vote
    /// stays old, a vote from the future counts from now).
    pub fn effective_at(&mut self, votes: &[Vote], now: u64, mono: Mono) -> Vec<Vote> {
        let first_read = !self.started;
        self.started = true;
        if first_read {
            self.first = Some(mono);
        }
        votes
            .iter()
            .map(|v| {
                let key = (v.observer.clone(), v.instance.clone());
                let received = match self.seen.get(&key) {
                    Some((seen_at, received, _)) if *seen_at == v.at => *received,
                    _ => {
                        let age = if first_read {
                            now.saturating_sub(v.at)
                        } else {
                            0
                        };
                        let received = Mono(mono.0.saturating_sub(age));
                        self.seen.insert(key, (v.at, received, first_read));
                        received
                    }
                };
                Vote {
                    at: received.to_wall(mono, now),
                    ..v.clone()
                }
            })
            .collect()
    }
}

impl Receipts {
    /// The observers whose vote's age is still only guessed from the
    /// writer's wall clock (there at our first read, not replaced since),
    /// while that guess cannot be told from the truth: until `window_ms`
    /// (the votes' freshness) after our first read, by when a live
    /// daemon's next vote has arrived and is timed on arrival. A gate that
    /// looks only at fresh votes counts these too, so that a restarted
    /// daemon does not take a live region whose host's clock runs slow for
    /// a silent one (simulation seed 12486: a daemon restarted 0.2 s
    /// before it claimed, while the active region, its clock 58 minutes
    /// slow, ran another configuration).
    pub fn guessed_within(&self, mono: Mono, window_ms: u64) -> Vec<String> {
        let Some(first) = self.first else {
            return Vec::new();
        };
        if mono.since(first) >= window_ms {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for ((observer, _), (_, _, guessed)) in &self.seen {
            if *guessed && !out.contains(observer) {
                out.push(observer.clone());
            }
        }
        out
    }
}

/// The newest epoch any configured observer's vote on the board says it
/// has seen (`Vote::seen_epoch`), fresh or not: more than 0 means a record
/// existed. Freshness decides whose *view* counts towards a quorum; a
/// vote's `seen_epoch` is a fact about the past that does not age. Counting
/// only fresh votes let two restarted daemons with no copy initialize a lost
/// record afresh while a third, still running with a copy, had a vote that
/// looked stale to them (simulation seed 1683: its host's clock ran 30 s
/// slow, and a first read judges a vote's age by the writer's clock). Each
/// daemon's first round overwrites its own vote, so after every daemon has
/// restarted the board says 0 again (the runbook's way to start afresh).
pub fn board_epoch(regions: &[String], votes: &[Vote]) -> u64 {
    // Per daemon (region and instance), not per region: a region's other
    // daemon restarted with no copy must not hide the epoch one still
    // running with a copy has seen (seed 1683, within one region). A
    // retired daemon's vote (`RETIRED_MS` older than the board's newest)
    // no longer counts.
    let votes: Vec<&Vote> = votes
        .iter()
        .filter(|v| regions.contains(&v.observer))
        .collect();
    let newest = votes.iter().map(|v| v.at).max().unwrap_or(0);
    let mut latest: BTreeMap<(&str, Option<&str>), &Vote> = BTreeMap::new();
    for v in votes {
        if v.at.saturating_add(RETIRED_MS) < newest {
            continue;
        }
        let key = (v.observer.as_str(), v.instance.as_deref());
        if latest.get(&key).is_none_or(|old| old.at < v.at) {
            latest.insert(key, v);
        }
    }
    latest.values().map(|v| v.seen_epoch).max().unwrap_or(0)
}

/// Majority of `n`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Tally `votes` for the configured `regions`, as seen by `me` at `now`.
pub fn tally(me: &str, regions: &[String], votes: &[Vote], now: u64, freshness_ms: u64) -> Tally {
    tally_inner(Some(me), regions, votes, now, freshness_ms)
}

/// Tally as an operator sees it: an operator is not an observer, so no own
/// vote is required, only a majority of fresh observers.
pub fn tally_as_operator(regions: &[String], votes: &[Vote], now: u64, freshness_ms: u64) -> Tally {
    tally_inner(None, regions, votes, now, freshness_ms)
}

fn tally_inner(
    me: Option<&str>,
    regions: &[String],
    votes: &[Vote],
    now: u64,
    freshness_ms: u64,
) -> Tally {
    // Only configured observers count, one vote each: the region's
    // freshest, whichever of its daemons wrote it. A region is one vote
    // however many daemons it runs, so adding one changes no majority.
    let fresh: Vec<&Vote> = per_region(regions, votes)
        .into_iter()
        .filter(|v| now.saturating_sub(v.at) <= freshness_ms)
        .collect();
    let fresh_observers: Vec<String> = fresh.iter().map(|v| v.observer.clone()).collect();
    let needed = majority(regions.len());
    let no_quorum = if me.is_some_and(|me| !fresh.iter().any(|v| v.observer == me)) {
        Some(NoQuorum::OwnVoteStale)
    } else if fresh.len() < needed {
        Some(NoQuorum::TooFewObservers {
            fresh: fresh.len(),
            needed,
        })
    } else {
        None
    };
    let mut out = BTreeMap::new();
    if no_quorum.is_none() {
        for r in regions {
            let down = fresh
                .iter()
                .filter(|v| v.view.get(r) == Some(&Verdict::Down))
                .count();
            let up = fresh
                .iter()
                .filter(|v| v.view.get(r) == Some(&Verdict::Up))
                .count();
            let c = if down * 2 > fresh.len() {
                Consensus::Down
            } else if up * 2 > fresh.len() {
                Consensus::Up
            } else {
                Consensus::Split
            };
            out.insert(r.clone(), c);
        }
    }
    Tally {
        fresh_observers,
        regions: out,
        no_quorum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<String> {
        ["us-east-1", "us-west-2", "eu-west-1"]
            .map(String::from)
            .to_vec()
    }

    fn vote(observer: &str, at: u64, down: &[&str]) -> Vote {
        Vote {
            observer: observer.into(),
            instance: None,
            at,
            seen_epoch: 1,
            view: regions()
                .into_iter()
                .map(|r| {
                    let v = if down.contains(&r.as_str()) {
                        Verdict::Down
                    } else {
                        Verdict::Up
                    };
                    (r, v)
                })
                .collect(),
            traffic: None,
            fleet: None,
            readiness: None,
            lease_ms: None,
        }
    }

    /// The wait a new active counts: the longest lease its predecessor
    /// region's vote items announce (fresh or not), never below its own;
    /// older votes without one are unknown, not zero.
    #[test]
    fn the_longest_announced_lease_is_waited_out() {
        let with = |lease: Option<u64>| Vote {
            observer: "us-east-1".into(),
            instance: None,
            at: 0,
            seen_epoch: 1,
            view: BTreeMap::new(),
            traffic: None,
            fleet: None,
            readiness: None,
            lease_ms: lease,
        };
        let none = leases(&[]);
        assert_eq!(longest_lease(15_000, &none, "us-east-1"), 15_000);
        let mut west = with(Some(60_000));
        west.observer = "us-west-2".into();
        let l = leases(&[with(Some(30_000)), with(None), with(Some(20_000)), west]);
        assert_eq!(longest_lease(15_000, &l, "us-east-1"), 30_000);
        // Only the region whose lease is waited out counts.
        assert_eq!(longest_lease(15_000, &l, "eu-west-1"), 15_000);
        assert_eq!(longest_lease(90_000, &l, "us-west-2"), 90_000);
        let l = leases(&[with(Some(10_000))]);
        assert_eq!(longest_lease(15_000, &l, "us-east-1"), 15_000);
    }

    /// Seed 1683: two restarted daemons (no copy, `seen_epoch` 0) are a
    /// quorum; the third, which holds the record's copy, has a vote that
    /// looks stale to them. The board still says a record of epoch 2 existed.
    #[test]
    fn the_board_epoch_counts_stale_votes_too() {
        let mut holder = vote("us-east-1", 1_000, &[]);
        holder.seen_epoch = 2;
        let mut a = vote("us-west-2", 60_000, &[]);
        a.seen_epoch = 0;
        let mut b = vote("eu-west-1", 60_000, &[]);
        b.seen_epoch = 0;
        let votes = vec![holder, a, b];
        let t = tally("us-west-2", &regions(), &votes, 60_000, 30_000);
        assert_eq!(t.no_quorum, None);
        assert!(!t.fresh_observers.contains(&"us-east-1".to_string()));
        assert_eq!(board_epoch(&regions(), &votes), 2);
        // Only configured observers, and each one's newest vote.
        let mut gone = vote("ap-south-1", 60_000, &[]);
        gone.seen_epoch = 9;
        let mut older = vote("us-west-2", 500, &[]);
        older.seen_epoch = 7;
        let mut all = votes.clone();
        all.extend([gone, older]);
        assert_eq!(board_epoch(&regions(), &all), 2);
        // Every daemon restarted: the board says none, and the fleet may
        // initialize afresh.
        let restarted: Vec<Vote> = votes
            .iter()
            .map(|v| Vote {
                seen_epoch: 0,
                ..v.clone()
            })
            .collect();
        assert_eq!(board_epoch(&regions(), &restarted), 0);
    }

    #[test]
    fn majority_of_fresh_observers_decides() {
        let votes = [
            vote("us-east-1", 1000, &["us-east-1"]),
            vote("us-west-2", 1000, &["us-east-1"]),
            vote("eu-west-1", 1000, &[]),
        ];
        let t = tally("us-west-2", &regions(), &votes, 1500, 5000);
        assert!(t.is("us-east-1", Consensus::Down));
        assert!(t.is("us-west-2", Consensus::Up));
    }

    #[test]
    fn dead_active_region_two_survivors_decide() {
        let votes = [
            vote("us-east-1", 0, &[]), // stale: its daemon died with the region
            vote("us-west-2", 9000, &["us-east-1"]),
            vote("eu-west-1", 9000, &["us-east-1"]),
        ];
        let t = tally("eu-west-1", &regions(), &votes, 9500, 5000);
        assert_eq!(
            t.fresh_observers,
            vec!["eu-west-1".to_string(), "us-west-2".to_string()]
        );
        assert!(t.is("us-east-1", Consensus::Down));
    }

    /// Right after a restart, a vote whose age came from its writer's
    /// clock is "guessed" until a newer vote from that daemon is timed on
    /// arrival, and only within the freshness window after the first read
    /// (a region that stays silent past it is silent).
    #[test]
    fn a_first_read_guess_is_named_only_until_it_can_be_told_from_silence() {
        let mut r = Receipts::default();
        assert!(
            r.guessed_within(Mono(0), 5000).is_empty(),
            "nothing read yet"
        );
        // us-east-1's host runs an hour slow: its fresh vote looks an hour old.
        let votes = [
            vote("us-east-1", 1_000, &[]),
            vote("us-west-2", 3_600_000, &[]),
        ];
        r.effective_at(&votes, 3_600_500, Mono(100));
        let g = r.guessed_within(Mono(100), 5000);
        assert_eq!(g, vec!["us-east-1".to_string(), "us-west-2".to_string()]);
        // us-west-2 writes again: timed on arrival, no longer a guess.
        let votes = [
            vote("us-east-1", 1_000, &[]),
            vote("us-west-2", 3_601_000, &[]),
        ];
        r.effective_at(&votes, 3_601_500, Mono(1100));
        assert_eq!(
            r.guessed_within(Mono(1100), 5000),
            vec!["us-east-1".to_string()]
        );
        // us-east-1 never wrote again: past the window it is silence.
        assert!(r.guessed_within(Mono(5100), 5000).is_empty());
    }

    #[test]
    fn isolated_observer_decides_nothing() {
        // Only our own vote is fresh: the others' are old (we cannot read
        // them) — no quorum, whatever we think.
        let votes = [
            vote("us-east-1", 0, &[]),
            vote("us-west-2", 9000, &["us-east-1", "eu-west-1"]),
            vote("eu-west-1", 0, &[]),
        ];
        let t = tally("us-west-2", &regions(), &votes, 9500, 5000);
        assert_eq!(
            t.no_quorum,
            Some(NoQuorum::TooFewObservers {
                fresh: 1,
                needed: 2
            })
        );
        assert!(!t.is("us-east-1", Consensus::Down));
        // Our own vote stale: no quorum even if peers are fresh.
        let votes = [
            vote("us-east-1", 9000, &[]),
            vote("eu-west-1", 9000, &[]),
            vote("us-west-2", 0, &[]),
        ];
        assert_eq!(
            tally("us-west-2", &regions(), &votes, 9500, 5000).no_quorum,
            Some(NoQuorum::OwnVoteStale)
        );
    }

    #[test]
    fn a_vote_from_the_future_is_not_fresher_than_now() {
        // eu-west-1's daemon died with its clock an hour fast: its last vote
        // is stamped in the future.
        let mut r = Receipts::default();
        let hour = 3_600_000;
        let votes = vec![
            vote("us-west-2", 10_000, &[]),
            vote("eu-west-1", 10_000 + hour, &[]),
        ];
        let first = r.effective(&votes, 10_500);
        assert_eq!(first[1].at, 10_500, "clamped to the reader's now");
        // The same vote, read again much later: it stops counting.
        let later = r.effective(&votes, 20_000);
        let t = tally("us-west-2", &regions(), &later, 20_000, 5_000);
        assert!(!t.fresh_observers.contains(&"eu-west-1".to_string()));
    }

    /// The reader's wall clock steps back an hour (an NTP correction) or
    /// forward one while an observer is dead: its last vote still goes stale
    /// on time, and a live observer's stays fresh, because receipts age on
    /// the monotonic clock. Before, a receipt was a wall time: after a step
    /// back every receipt lay in the future and a dead observer's vote
    /// counted as fresh for the hour.
    #[test]
    fn a_wall_clock_step_does_not_change_a_votes_age() {
        let hour = 3_600_000;
        let t0 = 10_000_000;
        let dead = vote("eu-west-1", t0, &[]);
        let live = |at| vote("us-west-2", at, &[]);
        let mut first = Receipts::default();
        first.effective_at(&[dead.clone(), live(t0)], t0, Mono(500));
        // 6 s later on the monotonic clock; the wall clock stepped.
        for wall in [t0 + 6_000, t0 + 6_000 - hour, t0 + 6_000 + hour] {
            let mut r = first.clone();
            let eff = r.effective_at(&[dead.clone(), live(wall)], wall, Mono(6_500));
            assert_eq!(eff[0].at, wall - 6_000, "aged on the monotonic clock");
            let t = tally("us-west-2", &regions(), &eff, wall, 5_000);
            assert!(
                !t.fresh_observers.contains(&"eu-west-1".to_string()),
                "wall {wall}: the dead observer's vote is 6 s old"
            );
            assert!(
                t.fresh_observers.contains(&"us-west-2".to_string()),
                "wall {wall}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever each observer's clock skew, a live observer (a new vote
        /// every round) is fresh on the reader's clock from its second read
        /// on, and one that
        /// stopped writing goes stale within the freshness bound plus one
        /// round of its last vote.
        #[test]
        fn freshness_is_judged_on_the_readers_clock(
            skews in proptest::collection::vec(-3_600_000i64..3_600_000, 3),
            dies_at in proptest::collection::vec(proptest::option::of(0u64..40), 3),
            rounds in 5u64..60,
        ) {
            let names = regions();
            let poll = 1_000u64;
            let fresh = 5_000u64;
            let mut r = Receipts::default();
            let mut last_vote_at: Vec<Option<u64>> = vec![None; 3];
            let mut last_at: Vec<u64> = vec![0; 3];
            let base = 10_000_000u64;
            for k in 0..rounds {
                let now = base + k * poll; // the reader's clock
                let mut votes = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let alive = dies_at[i].is_none_or(|d| k < d);
                    if alive {
                        last_at[i] = (now as i64 + skews[i]) as u64;
                        last_vote_at[i] = Some(now);
                    }
                    if last_vote_at[i].is_some() {
                        votes.push(vote(name, last_at[i], &[]));
                    }
                }
                let eff = r.effective_at(&votes, now, Mono(now));
                for (i, name) in names.iter().enumerate() {
                    let Some(written) = last_vote_at[i] else { continue };
                    let v = eff.iter().find(|v| &v.observer == name).unwrap();
                    let is_fresh = now.saturating_sub(v.at) <= fresh;
                    // From the second read on (the first read cannot tell a
                    // slow clock from an old vote, and stays conservative).
                    if written == now && k > 0 {
                        proptest::prop_assert!(is_fresh, "{} is alive but stale", name);
                    }
                    if now > written + fresh + poll {
                        proptest::prop_assert!(!is_fresh, "{} died at {} but still counts at {}", name, written, now);
                    }
                }
            }
        }
    }

    fn of(instance: &str, mut v: Vote) -> Vote {
        v.instance = Some(instance.into());
        v
    }

    /// Two daemons in us-west-2 (one of them dead) and an older daemon's
    /// vote keyed by the region alone: the region is one vote, its
    /// freshest; the quorum's arithmetic is the same as with one daemon.
    #[test]
    fn a_region_with_two_daemons_is_one_vote_its_freshest() {
        let votes = [
            vote("us-east-1", 9000, &[]),
            of("a", vote("us-west-2", 1000, &["eu-west-1"])), // dead
            of("b", vote("us-west-2", 9000, &[])),
            vote("us-west-2", 500, &["us-east-1"]), // an older daemon's, long gone
            vote("eu-west-1", 0, &[]),
        ];
        let t = tally("us-west-2", &regions(), &votes, 9500, 5000);
        assert_eq!(
            t.fresh_observers,
            vec!["us-east-1".to_string(), "us-west-2".to_string()]
        );
        assert_eq!(t.no_quorum, None);
        assert!(t.is("eu-west-1", Consensus::Up), "b's view, not a's");
        // Two fresh daemons that disagree do not make two votes: the
        // freshest speaks for the region, and 1 of 2 is no majority.
        let votes = [
            of("a", vote("us-west-2", 9000, &["eu-west-1"])),
            of("b", vote("us-west-2", 8999, &["eu-west-1"])),
            vote("us-east-1", 9000, &[]),
        ];
        let t = tally("us-east-1", &regions(), &votes, 9500, 5000);
        assert_eq!(t.fresh_observers.len(), 2);
        assert!(t.is("eu-west-1", Consensus::Split));
        // A region whose only fresh daemon is the one we cannot hear is
        // still one fresh observer: our own region counts when either of
        // its daemons' votes is fresh.
        let votes = [
            of("a", vote("us-west-2", 0, &[])),
            of("b", vote("us-west-2", 9000, &[])),
            vote("eu-west-1", 9000, &[]),
        ];
        assert_eq!(
            tally("us-west-2", &regions(), &votes, 9500, 5000).no_quorum,
            None
        );
    }

    #[test]
    fn a_region_with_one_of_two_daemons_silent_is_degraded_not_down() {
        let votes = [
            of("a", vote("us-west-2", 9000, &[])),
            of("b", vote("us-west-2", 1000, &[])),
            of("c", vote("us-west-2", 0, &[])),
            vote("eu-west-1", 1000, &[]),
        ];
        let d = daemons_of("us-west-2", &votes, SHOWN_MS + 500, 5000);
        assert_eq!(d.state, "down", "all silent; c gone for over a day");
        assert_eq!(d.daemons.len(), 2);
        let d = daemons_of("us-west-2", &votes, 9500, 5000);
        assert_eq!(d.state, "degraded");
        assert_eq!(d.daemons.len(), 3);
        assert_eq!(daemons_of("eu-west-1", &votes, 1500, 5000).state, "up");
        assert_eq!(daemons_of("us-east-1", &votes, 1500, 5000).state, "down");
    }

    /// Receipts are per daemon: two daemons of a region writing in turn
    /// do not reset each other's receipt.
    #[test]
    fn receipts_are_per_daemon() {
        let mut r = Receipts::default();
        let a = of("a", vote("us-west-2", 1000, &[]));
        let b = of("b", vote("us-west-2", 2000, &[]));
        r.effective_at(&[a.clone(), b.clone()], 2000, Mono(2000));
        let b2 = of("b", vote("us-west-2", 8000, &[]));
        let eff = r.effective_at(&[a, b2], 8000, Mono(8000));
        assert_eq!(eff[0].at, 1000, "a's vote did not change: still 7 s old");
        assert_eq!(eff[1].at, 8000);
    }

    /// The board's epoch is per daemon: a region's restarted daemon (no
    /// copy) does not hide the epoch its sibling, running with a copy, has
    /// seen; a retired daemon's vote (over 8 days older) no longer counts.
    #[test]
    fn the_board_epoch_is_per_daemon() {
        let mut holder = of("a", vote("us-west-2", 1_000, &[]));
        holder.seen_epoch = 4;
        let mut restarted = of("b", vote("us-west-2", 60_000, &[]));
        restarted.seen_epoch = 0;
        let mut other = vote("us-east-1", 60_000, &[]);
        other.seen_epoch = 0;
        let votes = vec![holder.clone(), restarted.clone(), other.clone()];
        assert_eq!(board_epoch(&regions(), &votes), 4);
        let later = 1_000 + RETIRED_MS + 1;
        restarted.at = later;
        other.at = later;
        assert_eq!(board_epoch(&regions(), &[holder, restarted, other]), 0);
    }

    #[test]
    fn split_is_not_down_and_unknown_observers_are_ignored() {
        let votes = [
            vote("us-west-2", 9000, &["us-east-1"]),
            vote("eu-west-1", 9000, &[]),
            vote("ap-south-1", 9000, &["us-east-1"]),
        ];
        let t = tally("us-west-2", &regions(), &votes, 9500, 5000);
        assert_eq!(t.regions["us-east-1"], Consensus::Split);
    }
}
