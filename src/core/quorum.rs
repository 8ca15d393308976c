//! Votes from every region's daemon -> a verdict per region.
//!
//! Rules (DESIGN.md section 5):
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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::health::Verdict;

/// One daemon's published view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The observer's region.
    pub observer: String,
    /// Unix milliseconds when the observer wrote it.
    pub at: u64,
    /// The control-record epoch the observer had seen.
    pub seen_epoch: u64,
    /// The observer's verdict on every region (itself included).
    pub view: BTreeMap<String, Verdict>,
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
    // Only configured observers count, one vote each (the newest).
    let mut latest: BTreeMap<&str, &Vote> = BTreeMap::new();
    for v in votes {
        if !regions.contains(&v.observer) {
            continue;
        }
        let keep = latest
            .get(v.observer.as_str())
            .is_none_or(|old| old.at < v.at);
        if keep {
            latest.insert(&v.observer, v);
        }
    }
    let fresh: Vec<&Vote> = latest
        .values()
        .copied()
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
        }
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
