//! Effective health of one region in one round, and the hysteresis that
//! turns rounds into a verdict.
//!
//! Route 53 semantics (checked against the Route 53 developer guide):
//! `GetHealthCheckStatus` returns the last observation of each checker
//! region; the check is healthy when more than 18% of checkers report
//! success; `Inverted` flips the result; a `Disabled` check is considered
//! healthy whatever the observations say, *unless it is also inverted*: AWS
//! documents inverting a disabled check as the way to stop routing to a
//! resource, so disabled + inverted is unhealthy. A drill must invert a
//! check to fail a region; disabling one alone never fails anything over.
//! A calculated check is healthy when at least `HealthThreshold` of its
//! children are (evaluated here from the children's own readings);
//! CloudWatch-alarm checks are not evaluated (refused at start).
//!
//! A reading counts once: a tracker fed the same reading twice (a cached
//! reading in a later round) does not move (`Tracker::observe_reading`).
//!
//! A failed or throttled API call is `Unknown`, never `Unhealthy`: Route 53's
//! control plane can be down exactly when us-east-1 is, and an outage of the
//! observer must not look like an outage of the observed.

use serde::{Deserialize, Serialize};

/// One signal's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Healthy,
    Unhealthy,
    /// No reading (API error, throttled, no observations).
    Unknown,
}

/// Route 53's success threshold: healthy when strictly more than 18% of
/// checkers report success.
pub const ROUTE53_HEALTHY_FRACTION: f64 = 0.18;

/// Is this observation text (e.g. `Success: HTTP Status Code 200, OK`) a success?
pub fn observation_is_success(status: &str) -> bool {
    status.trim_start().starts_with("Success")
}

/// The raw status of an endpoint check from its checkers' observations:
/// healthy when more than 18% report success; unknown with none.
pub fn route53_raw(observations: &[&str]) -> Signal {
    if observations.is_empty() {
        return Signal::Unknown;
    }
    let ok = observations
        .iter()
        .filter(|s| observation_is_success(s))
        .count();
    if (ok as f64) / (observations.len() as f64) > ROUTE53_HEALTHY_FRACTION {
        Signal::Healthy
    } else {
        Signal::Unhealthy
    }
}

/// The raw status of a calculated check: healthy when at least `threshold`
/// children are healthy, unhealthy when even the unknown ones could not make
/// it so, unknown otherwise.
pub fn calculated_raw(children: &[Signal], threshold: u32) -> Signal {
    let healthy = children.iter().filter(|c| **c == Signal::Healthy).count() as u32;
    let unknown = children.iter().filter(|c| **c == Signal::Unknown).count() as u32;
    if healthy >= threshold {
        Signal::Healthy
    } else if healthy + unknown < threshold {
        Signal::Unhealthy
    } else {
        Signal::Unknown
    }
}

/// A check's configuration applied to its raw status: `Disabled` is
/// healthy, `Inverted` flips, and a disabled and inverted check is
/// unhealthy (AWS: invert a disabled check to stop routing to it).
pub fn route53_flags(raw: Signal, inverted: bool, disabled: bool) -> Signal {
    let base = if disabled { Signal::Healthy } else { raw };
    match (base, inverted) {
        (Signal::Unknown, _) => Signal::Unknown,
        (s, false) => s,
        (Signal::Healthy, true) => Signal::Unhealthy,
        (Signal::Unhealthy, true) => Signal::Healthy,
    }
}

/// Effective status of an endpoint check from its checkers' observations
/// and its own configuration.
pub fn route53_effective(observations: &[&str], inverted: bool, disabled: bool) -> Signal {
    route53_flags(route53_raw(observations), inverted, disabled)
}

/// A probe's verdict from its HTTP status and body: 2xx and 3xx are healthy;
/// with `must_contain`, the first 5120 bytes of the body must contain it.
pub fn probe_result(status: u16, body_prefix: &[u8], must_contain: Option<&str>) -> Signal {
    if !(200..400).contains(&status) {
        return Signal::Unhealthy;
    }
    match must_contain {
        None => Signal::Healthy,
        Some(needle) => {
            let window = &body_prefix[..body_prefix.len().min(5120)];
            if window
                .windows(needle.len().max(1))
                .any(|w| w == needle.as_bytes())
            {
                Signal::Healthy
            } else {
                Signal::Unhealthy
            }
        }
    }
}

/// One round's sample for a region from all of its signals: bad if any
/// known signal is unhealthy, good if at least one is healthy and none is
/// unhealthy, unknown otherwise.
pub fn combine(signals: &[Signal]) -> Signal {
    if signals.contains(&Signal::Unhealthy) {
        Signal::Unhealthy
    } else if signals.contains(&Signal::Healthy) {
        Signal::Healthy
    } else {
        Signal::Unknown
    }
}

/// The fleet's Route 53 schedule: time is cut into slots of
/// `slot_ms = 2000 / calls_per_second` (a reading is two calls). Slot `k`
/// reads check `k mod checks`, and its reader is daemon
/// `(k / checks) mod daemons` (daemons sorted by name): every check is read
/// once every `checks` slots, whoever is alive, and the reader rotates so a
/// dead daemon costs each check only some of its readings. The reading is
/// published through the control table, so the whole fleet sees it.
/// Returns (slot, check index) if this slot is ours.
pub fn route53_turn(
    now_ms: u64,
    slot_ms: u64,
    me: u64,
    daemons: u64,
    checks: u64,
) -> Option<(u64, usize)> {
    if daemons == 0 || checks == 0 || slot_ms == 0 {
        return None;
    }
    let slot = now_ms / slot_ms;
    ((slot / checks) % daemons == me).then_some((slot, (slot % checks) as usize))
}

/// When daemon `me`'s next turn of [`route53_turn`] begins, at or after
/// `now_ms`: `now_ms` itself when the slot it falls in is ours and is not
/// `taken` (already read), else the first millisecond of the next slot of
/// ours. None when the schedule is empty.
pub fn next_route53_turn(
    now_ms: u64,
    slot_ms: u64,
    me: u64,
    daemons: u64,
    checks: u64,
    taken: Option<u64>,
) -> Option<u64> {
    if daemons == 0 || checks == 0 || slot_ms == 0 || me >= daemons {
        return None;
    }
    let ours = |slot: u64| (slot / checks) % daemons == me;
    let slot = now_ms / slot_ms;
    if ours(slot) && taken != Some(slot) {
        return Some(now_ms);
    }
    // The next slot of ours after `slot`: the rest of this window, or the
    // first slot of our next window.
    let next = if ours(slot + 1) {
        slot + 1
    } else {
        let window = (slot + 1) / checks;
        let ahead = (me + daemons - window % daemons) % daemons;
        (window + ahead) * checks
    };
    Some(next * slot_ms)
}

/// Where the daemons read Route 53's view of a check
/// (`health.route53_source`, docs/detection.md "Two sources").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route53Source {
    /// The Route 53 API: `GetHealthCheck` + `GetHealthCheckStatus` per
    /// check and slot (two calls a reading). AWS documents
    /// `GetHealthCheckStatus` as a call for diagnosis, not for production
    /// use at high query rates; the fleet's budget keeps the rate far
    /// below that (0.5 calls/s for the whole fleet, shipped).
    #[default]
    Api,
    /// CloudWatch: the `AWS/Route53` `HealthCheckStatus` metric (statistic
    /// Minimum, dimension `HealthCheckId`, us-east-1 only), every check in
    /// one `GetMetricData` call per slot (one call a slot). Route 53
    /// publishes it once a minute, so detection takes minutes.
    CloudWatch,
}

impl Route53Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Route53Source::Api => "api",
            Route53Source::CloudWatch => "cloudwatch",
        }
    }

    /// Calls of the fleet's budget one slot costs, and so the slot's
    /// length is `calls / budget`: a reading of one check through the API
    /// is two calls; a `GetMetricData` of every check is one.
    pub fn calls_per_slot(self) -> u32 {
        match self {
            Route53Source::Api => 2,
            Route53Source::CloudWatch => 1,
        }
    }
}

/// A metric data point older than this many periods says nothing
/// (Unknown): Route 53 stopped publishing, or CloudWatch lags more than it
/// should. AWS does not document the publication lag of Route 53's
/// metrics; docs/detection.md says what is known.
pub const METRIC_STALE_PERIODS: u64 = 5;

/// What a `HealthCheckStatus` value (the period's Minimum) says: 1 is
/// healthy and 0 unhealthy (AWS); the Minimum over a period is below 1 when
/// any sample of it was unhealthy. Negative, above 1 or not a number: not
/// a value Route 53 publishes (None).
pub fn metric_value_healthy(minimum: f64) -> Option<bool> {
    if !minimum.is_finite() || !(0.0..=1.0).contains(&minimum) {
        return None;
    }
    Some(minimum >= 1.0)
}

/// The newest data point (timestamp ms, healthy) among `points` (timestamp
/// ms, Minimum), in any order; points with values Route 53 does not
/// publish are skipped.
pub fn newest_status(points: &[(u64, f64)]) -> Option<(u64, bool)> {
    points
        .iter()
        .filter_map(|&(at, v)| metric_value_healthy(v).map(|h| (at, h)))
        .max_by_key(|&(at, h)| (at, !h))
}

/// A check's signal from its newest `HealthCheckStatus` data point at
/// `now_ms`: healthy or unhealthy as the point says, Unknown with no point
/// or one older than `stale_after_ms`. The metric is Route 53's own status
/// of the check, so the daemon applies no `Inverted`/`Disabled` of its own
/// (docs/detection.md).
pub fn metric_signal(newest: Option<(u64, bool)>, now_ms: u64, stale_after_ms: u64) -> Signal {
    match newest {
        None => Signal::Unknown,
        Some((at, _)) if now_ms.saturating_sub(at) > stale_after_ms => Signal::Unknown,
        Some((_, true)) => Signal::Healthy,
        Some((_, false)) => Signal::Unhealthy,
    }
}

/// What an observer currently believes about a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Up,
    Down,
}

/// Hysteresis: a region turns down after `failure_threshold` consecutive bad
/// rounds and back up after `recovery_threshold` consecutive good ones.
/// Unknown rounds change nothing (they neither confirm nor refute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    pub verdict: Verdict,
    pub bad_streak: u32,
    pub good_streak: u32,
    /// The reading last counted (for signals that are read less often than
    /// every round): the same reading is not counted twice.
    #[serde(default)]
    pub last_reading: Option<u64>,
}

impl Default for Tracker {
    /// Start up: a daemon that just started must not fail anything over
    /// before it has seen `failure_threshold` bad rounds itself.
    fn default() -> Self {
        Self {
            verdict: Verdict::Up,
            bad_streak: 0,
            good_streak: 0,
            last_reading: None,
        }
    }
}

impl Tracker {
    /// Feed one round's sample.
    pub fn observe(
        &mut self,
        sample: Signal,
        failure_threshold: u32,
        recovery_threshold: u32,
    ) -> Verdict {
        match sample {
            Signal::Unhealthy => {
                self.bad_streak = self.bad_streak.saturating_add(1);
                self.good_streak = 0;
                if self.bad_streak >= failure_threshold {
                    self.verdict = Verdict::Down;
                }
            }
            Signal::Healthy => {
                self.good_streak = self.good_streak.saturating_add(1);
                self.bad_streak = 0;
                if self.good_streak >= recovery_threshold {
                    self.verdict = Verdict::Up;
                }
            }
            Signal::Unknown => {}
        }
        self.verdict
    }

    /// Feed a sample that comes from reading `reading` (an identity): a
    /// reading already counted changes nothing.
    pub fn observe_reading(
        &mut self,
        sample: Signal,
        reading: u64,
        failure_threshold: u32,
        recovery_threshold: u32,
    ) -> Verdict {
        if self.last_reading == Some(reading) {
            return self.verdict;
        }
        self.last_reading = Some(reading);
        self.observe(sample, failure_threshold, recovery_threshold)
    }
}

/// A region's verdict from its signals' trackers: down when any signal's
/// tracker says down (the rule `combine` applies to one round's samples).
pub fn region_verdict<'a>(trackers: impl IntoIterator<Item = &'a Tracker>) -> Verdict {
    if trackers.into_iter().any(|t| t.verdict == Verdict::Down) {
        Verdict::Down
    } else {
        Verdict::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OK: &str = "Success: HTTP Status Code 200, OK";
    const BAD: &str = "Failure: Connection timed out.";

    /// The next turn is always one `route53_turn` grants, never later
    /// than the first such millisecond, and never the slot already read.
    #[test]
    fn next_turn_is_the_first_granted_slot() {
        for (daemons, checks, slot_ms) in
            [(3u64, 3u64, 333u64), (2, 5, 400), (1, 1, 1000), (4, 2, 250)]
        {
            for me in 0..daemons {
                let mut taken = None;
                for now in (0..40_000u64).step_by(37) {
                    let at = next_route53_turn(now, slot_ms, me, daemons, checks, taken).unwrap();
                    assert!(at >= now);
                    let (slot, _) = route53_turn(at, slot_ms, me, daemons, checks)
                        .expect("the turn is one of ours");
                    assert_ne!(Some(slot), taken, "a slot is read once");
                    // No slot of ours (untaken) starts between now and `at`.
                    let mut t = (now / slot_ms + 1) * slot_ms;
                    while t < at {
                        assert!(
                            route53_turn(t, slot_ms, me, daemons, checks)
                                .is_none_or(|(s, _)| Some(s) == taken)
                        );
                        t += slot_ms;
                    }
                    if now / slot_ms == slot {
                        taken = Some(slot);
                    }
                }
            }
        }
    }

    #[test]
    fn eighteen_percent_rule() {
        // 1 of 5 = 20% > 18%: healthy. 1 of 6 = 16.7%: unhealthy.
        assert_eq!(
            route53_effective(&[OK, BAD, BAD, BAD, BAD], false, false),
            Signal::Healthy
        );
        assert_eq!(
            route53_effective(&[OK, BAD, BAD, BAD, BAD, BAD], false, false),
            Signal::Unhealthy
        );
        assert_eq!(route53_effective(&[], false, false), Signal::Unknown);
    }

    #[test]
    fn inverted_flips_and_disabled_is_healthy_unless_inverted() {
        assert_eq!(route53_effective(&[OK], true, false), Signal::Unhealthy);
        assert_eq!(route53_effective(&[BAD], true, false), Signal::Healthy);
        // Disabled is healthy whatever the observations: disabling never fails over...
        assert_eq!(route53_effective(&[BAD], false, true), Signal::Healthy);
        assert_eq!(route53_effective(&[], false, true), Signal::Healthy);
        // ...but disabled and inverted is unhealthy: AWS documents inverting
        // a disabled check as the way to stop routing to a resource.
        assert_eq!(route53_effective(&[OK], true, true), Signal::Unhealthy);
        assert_eq!(route53_effective(&[BAD], true, true), Signal::Unhealthy);
        assert_eq!(route53_effective(&[], true, true), Signal::Unhealthy);
    }

    #[test]
    fn calculated_checks_count_healthy_children() {
        use Signal::*;
        assert_eq!(calculated_raw(&[Healthy, Unhealthy, Healthy], 2), Healthy);
        assert_eq!(
            calculated_raw(&[Healthy, Unhealthy, Unhealthy], 2),
            Unhealthy
        );
        assert_eq!(calculated_raw(&[Healthy, Unknown, Unhealthy], 2), Unknown);
        assert_eq!(calculated_raw(&[], 0), Healthy);
        assert_eq!(
            route53_flags(calculated_raw(&[Healthy], 1), true, false),
            Unhealthy
        );
    }

    #[test]
    fn a_reading_counts_once() {
        let mut t = Tracker::default();
        for _ in 0..5 {
            t.observe_reading(Signal::Unhealthy, 7, 2, 2);
        }
        assert_eq!(
            (t.verdict, t.bad_streak),
            (Verdict::Up, 1),
            "one reading, one count"
        );
        t.observe_reading(Signal::Unhealthy, 8, 2, 2);
        assert_eq!(t.verdict, Verdict::Down);
        let up = Tracker::default();
        assert_eq!(region_verdict([&up, &t]), Verdict::Down);
        assert_eq!(region_verdict([&up]), Verdict::Up);
    }

    #[test]
    fn probes() {
        assert_eq!(probe_result(200, b"", None), Signal::Healthy);
        assert_eq!(probe_result(302, b"", None), Signal::Healthy);
        assert_eq!(probe_result(404, b"", None), Signal::Unhealthy);
        assert_eq!(probe_result(500, b"", None), Signal::Unhealthy);
        assert_eq!(
            probe_result(200, b"status: ok", Some("ok")),
            Signal::Healthy
        );
        assert_eq!(
            probe_result(200, b"status: degraded", Some("ok\n")),
            Signal::Unhealthy
        );
        let mut long = vec![b'x'; 6000];
        long[5500..5502].copy_from_slice(b"ok");
        assert_eq!(
            probe_result(200, &long, Some("ok")),
            Signal::Unhealthy,
            "only the first 5120 bytes count"
        );
    }

    #[test]
    fn combining_signals() {
        use Signal::*;
        assert_eq!(combine(&[Healthy, Unhealthy]), Unhealthy);
        assert_eq!(combine(&[Healthy, Unknown]), Healthy);
        assert_eq!(combine(&[Unknown, Unknown]), Unknown);
        assert_eq!(combine(&[]), Unknown);
    }

    #[test]
    fn route53_turns_share_the_budget() {
        // 0.5 calls/s -> one reading per 4 s for the whole fleet.
        let slot = 4000;
        let mut per_daemon = [0u32; 3];
        let mut per_check = [[0u32; 3]; 3];
        for t in (0..360_000).step_by(1000) {
            let mut owners = 0;
            for me in 0..3u64 {
                if let Some((_, c)) = route53_turn(t, slot, me, 3, 3) {
                    // Several rounds per slot may ask; the daemon reads once per slot.
                    if t % slot == 0 {
                        per_daemon[me as usize] += 1;
                        per_check[me as usize][c] += 1;
                    }
                    owners += 1;
                }
            }
            assert_eq!(owners, 1, "exactly one daemon owns each slot");
        }
        // 90 slots in 360 s = 0.25 readings/s = 0.5 calls/s in total.
        assert_eq!(per_daemon.iter().sum::<u32>(), 90);
        assert!(per_daemon.iter().all(|n| *n == 30));
        assert!(
            per_check.iter().flatten().all(|n| *n == 10),
            "every daemon reads every check: {per_check:?}"
        );
        // Each check is read once every `checks` slots, whoever reads it.
        let mut last_read = [None::<u64>; 3];
        for slot in 0..90u64 {
            let owner = (0..3u64)
                .find_map(|me| route53_turn(slot * 4000, 4000, me, 3, 3).map(|(_, c)| c))
                .unwrap();
            if let Some(prev) = last_read[owner] {
                assert_eq!(slot - prev, 3, "check {owner} read every 3 slots");
            }
            last_read[owner] = Some(slot);
        }
    }

    #[test]
    fn the_metric_maps_the_newest_point() {
        // 1 healthy, 0 unhealthy (AWS); a Minimum below 1 had an unhealthy sample.
        assert_eq!(metric_value_healthy(1.0), Some(true));
        assert_eq!(metric_value_healthy(0.0), Some(false));
        assert_eq!(metric_value_healthy(0.5), Some(false));
        assert_eq!(metric_value_healthy(f64::NAN), None);
        assert_eq!(metric_value_healthy(2.0), None);
        // Order does not matter: the newest wins, whatever came before.
        let pts = [(120_000, 1.0), (180_000, 0.0), (60_000, 1.0)];
        assert_eq!(newest_status(&pts), Some((180_000, false)));
        assert_eq!(newest_status(&[]), None);
        assert_eq!(newest_status(&[(1, f64::INFINITY)]), None);
        let stale = 300_000;
        assert_eq!(
            metric_signal(Some((180_000, false)), 200_000, stale),
            Signal::Unhealthy
        );
        assert_eq!(
            metric_signal(Some((180_000, true)), 200_000, stale),
            Signal::Healthy
        );
        assert_eq!(metric_signal(None, 200_000, stale), Signal::Unknown);
        assert_eq!(
            metric_signal(Some((180_000, false)), 180_000 + stale + 1, stale),
            Signal::Unknown,
            "too old says nothing"
        );
        // A point stamped ahead of the reader's clock is fresh, not stale.
        assert_eq!(
            metric_signal(Some((500_000, false)), 200_000, stale),
            Signal::Unhealthy
        );
        assert_eq!(Route53Source::Api.calls_per_slot(), 2);
        assert_eq!(Route53Source::CloudWatch.calls_per_slot(), 1);
    }

    fn signal() -> impl Strategy<Value = Signal> {
        prop_oneof![
            Just(Signal::Healthy),
            Just(Signal::Unhealthy),
            Just(Signal::Unknown)
        ]
    }

    proptest! {
        /// The metric's reading is the newest point's, in any order of the
        /// points; never healthy from a point that is not 1, never known
        /// from a point older than the limit or from none.
        #[test]
        fn metric_readings_follow_the_newest_point(
            points in prop::collection::vec((0u64..1_000_000, prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0, Just(f64::NAN), Just(-1.0)]), 0..20),
            now in 0u64..2_000_000,
            stale in 1u64..600_000,
        ) {
            let newest = newest_status(&points);
            let sig = metric_signal(newest, now, stale);
            let valid: Vec<(u64, f64)> = points.iter().copied().filter(|(_, v)| (0.0..=1.0).contains(v)).collect();
            match valid.iter().map(|(at, _)| *at).max() {
                None => prop_assert_eq!(sig, Signal::Unknown),
                Some(top) => {
                    let (at, healthy) = newest.unwrap();
                    prop_assert_eq!(at, top);
                    let all_one = valid.iter().filter(|(t, _)| *t == top).all(|(_, v)| *v >= 1.0);
                    prop_assert_eq!(healthy, all_one);
                    if now.saturating_sub(top) > stale {
                        prop_assert_eq!(sig, Signal::Unknown);
                    } else if all_one {
                        prop_assert_eq!(sig, Signal::Healthy);
                    } else {
                        prop_assert_eq!(sig, Signal::Unhealthy);
                    }
                }
            }
        }

        /// Hysteresis: the verdict only changes after the threshold's worth
        /// of consecutive agreeing rounds, counting unknowns as neither.
        #[test]
        fn hysteresis_holds(samples in prop::collection::vec(signal(), 0..60), f in 1u32..6, r in 1u32..6) {
            let mut t = Tracker::default();
            let mut history: Vec<Signal> = Vec::new();
            for s in samples {
                let before = t.verdict;
                let after = t.observe(s, f, r);
                history.push(s);
                let known: Vec<Signal> = history.iter().copied().filter(|s| *s != Signal::Unknown).collect();
                if before == Verdict::Up && after == Verdict::Down {
                    prop_assert!(known.len() >= f as usize);
                    prop_assert!(known[known.len() - f as usize..].iter().all(|s| *s == Signal::Unhealthy));
                }
                if before == Verdict::Down && after == Verdict::Up {
                    prop_assert!(known.len() >= r as usize);
                    prop_assert!(known[known.len() - r as usize..].iter().all(|s| *s == Signal::Healthy));
                }
                if s == Signal::Unknown {
                    prop_assert_eq!(before, after);
                }
            }
        }
    }
}
