//! The router's retry policy: how long to wait, whether a retry is
//! affordable, and whether a target is ejected. Pure: time comes in as
//! milliseconds (any monotonic origin), randomness as a number in `[0, 1)`.
//!
//! - Cold starts follow the seed: `delay × attempt` (3 s, 6 s with the
//!   defaults), `router.cold_start_retries` times, then the caller falls
//!   back down the path chain.
//! - Throttling backs off exponentially with a cap and "equal jitter" (half
//!   fixed, half random), so synchronized clients spread out.
//! - Throttling retries spend from a [`RetryBudget`]: a token bucket that
//!   earns `router.retry_budget` (0.2) per original request and spends one
//!   per retry, so retries add at most that fraction of load, plus a small
//!   floor (`min_per_sec`) so that a quiet router can still retry at all.
//!   We rejected per-request retry counts alone: with every request retrying
//!   N times, an overloaded backend sees N+1 times the load exactly when it
//!   can least take it (the retry-storm the budget exists to stop).
//! - [`Breaker`]: per (region, endpoint) outlier ejection. Consecutive
//!   failures eject the target; each ejection lasts longer than the last
//!   (`base × ejections`, capped), like Envoy's outlier detection; the
//!   multiplier resets once the target has been back and healthy for a
//!   full `max` period. Whether ejecting is allowed at all (never eject
//!   every region) is the region choice's business, not the breaker's.
//!   Attempts that time out count as failures: a hung region must be
//!   ejected as surely as one that refuses.
//! - [`attempt_timeout`]: each attempt gets its own timeout, by default a
//!   fraction of the time left before the request's deadline, bounded
//!   (`router.attempt_timeout_{fraction,min,max}`), or a model's fixed
//!   `attempt_timeout`. A slow region then costs one attempt, not the
//!   whole deadline. We rejected a fixed default: a 70 s deadline and a
//!   300 ms deadline want very different attempts, and a fraction leaves
//!   room for at least one more region either way.
//! - Hedging ([`HedgeAfter`], [`LatencyTracker`]): after `hedge_after`
//!   (fixed, or a quantile of the latencies the router has observed for
//!   the target) without an answer, a second attempt goes to the next
//!   region and the first answer wins ("The Tail at Scale", Dean and
//!   Barroso, 2013). Hedges spend from the same [`RetryBudget`], so they
//!   add at most its fraction of load.

use std::time::Duration;

/// Delay before cold-start retry number `attempt` (1-based): `unit × attempt`.
pub fn cold_start_delay(unit: Duration, attempt: u32) -> Duration {
    unit.saturating_mul(attempt.max(1))
}

/// Delay before throttling retry number `attempt` (1-based): the daemon's
/// one exponential backoff ([`super::backoff::delay`]: `base ×
/// 2^(attempt-1)` capped at `cap`, equal jitter; tests pass 0 or 1).
pub fn throttle_delay(base: Duration, cap: Duration, attempt: u32, jitter: f64) -> Duration {
    super::backoff::delay(base, cap, attempt, jitter)
}

/// A token bucket for retries: earns `ratio` per original request and a
/// floor of `min_per_sec` per second; spends one per retry; holds at most
/// `max_balance`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    max_balance: f64,
    balance: f64,
    last_ms: Option<u64>,
}

impl RetryBudget {
    /// A budget that starts with one second's floor in hand.
    pub fn new(ratio: f64, min_per_sec: f64, max_balance: f64) -> Self {
        let max_balance = max_balance.max(1.0);
        Self {
            ratio: ratio.max(0.0),
            min_per_sec: min_per_sec.max(0.0),
            max_balance,
            balance: min_per_sec.clamp(0.0, max_balance),
            last_ms: None,
        }
    }

    fn accrue(&mut self, now_ms: u64) {
        if let Some(last) = self.last_ms {
            let secs = now_ms.saturating_sub(last) as f64 / 1000.0;
            self.balance = (self.balance + secs * self.min_per_sec).min(self.max_balance);
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
    }

    /// An original request arrived: earn `ratio`.
    pub fn on_request(&mut self, now_ms: u64) {
        self.accrue(now_ms);
        self.balance = (self.balance + self.ratio).min(self.max_balance);
    }

    /// Spend one token for a retry if there is one.
    pub fn try_withdraw(&mut self, now_ms: u64) -> bool {
        self.accrue(now_ms);
        if self.balance >= 1.0 {
            self.balance -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens in hand (for metrics and tests).
    pub fn balance(&self) -> f64 {
        self.balance
    }
}

/// When a breaker ejects a target, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that eject.
    pub consecutive_failures: u32,
    /// First ejection's length; the n-th lasts `base × n`.
    pub base_ejection_ms: u64,
    /// Longest ejection.
    pub max_ejection_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection_ms: 5_000,
            max_ejection_ms: 300_000,
        }
    }
}

/// One target's breaker state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaker {
    consecutive_failures: u32,
    /// Times ejected since the multiplier was last reset.
    ejections: u32,
    /// Ejected until then (ms); kept after it passes, to reset the multiplier.
    ejected_until: Option<u64>,
}

impl Breaker {
    /// Whether the target is ejected at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.is_some_and(|t| now_ms < t)
    }

    /// A call succeeded.
    pub fn on_success(&mut self, now_ms: u64, policy: &BreakerPolicy) {
        self.consecutive_failures = 0;
        if let Some(until) = self.ejected_until
            && now_ms >= until.saturating_add(policy.max_ejection_ms)
        {
            self.ejections = 0;
            self.ejected_until = None;
        }
    }

    /// A call failed in a way that says the target is unwell (outage,
    /// connection failure). Returns `true` when this failure ejected it.
    pub fn on_failure(&mut self, now_ms: u64, policy: &BreakerPolicy) -> bool {
        if self.is_ejected(now_ms) {
            return false;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures < policy.consecutive_failures.max(1) {
            return false;
        }
        self.consecutive_failures = 0;
        self.ejections = self.ejections.saturating_add(1);
        let length = policy
            .base_ejection_ms
            .saturating_mul(u64::from(self.ejections))
            .min(policy.max_ejection_ms);
        self.ejected_until = Some(now_ms.saturating_add(length));
        true
    }

    /// Times ejected since the last reset.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }
}

/// How long one attempt may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttemptPolicy {
    /// A fixed per-attempt timeout (a model's `attempt_timeout`), if set.
    pub fixed: Option<Duration>,
    /// Otherwise this fraction of the time left before the deadline...
    pub fraction: f64,
    /// ...but at least this...
    pub min: Duration,
    /// ...and at most this (SageMaker's own invocation limit is 60 s).
    pub max: Duration,
}

/// The timeout of an attempt that starts with `remaining` time before the
/// request's deadline: never past the deadline.
pub fn attempt_timeout(remaining: Duration, policy: &AttemptPolicy) -> Duration {
    let t = policy.fixed.unwrap_or_else(|| {
        remaining
            .mul_f64(policy.fraction.clamp(0.0, 1.0))
            .clamp(policy.min, policy.max.max(policy.min))
    });
    t.min(remaining)
}

/// When to send a hedge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    /// After this long without an answer.
    Fixed(Duration),
    /// After this quantile (0 < q < 1) of the target's observed latencies;
    /// no hedge until enough have been observed.
    Quantile(f64),
}

/// The delay before a hedge for a target with `observed` latencies.
pub fn hedge_delay(after: HedgeAfter, observed: &LatencyTracker) -> Option<Duration> {
    match after {
        HedgeAfter::Fixed(d) => Some(d),
        HedgeAfter::Quantile(q) => observed.quantile(q),
    }
}

/// Log-scale buckets per doubling of latency (each bucket ~19% wide).
const PER_OCTAVE: u32 = 4;
/// Buckets from 1 µs to 2^40 µs (12 days).
const LATENCY_BUCKETS: usize = 40 * PER_OCTAVE as usize;

/// Recent latencies of one target, as a log-bucketed histogram: a sample is
/// one increment, a quantile one scan of 160 counters. Old samples fade:
/// when `window` samples have accumulated every count is halved, so the
/// histogram follows the target's recent behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyTracker {
    counts: Box<[u32; LATENCY_BUCKETS]>,
    total: u32,
    window: u32,
    min_samples: u32,
}

impl Default for LatencyTracker {
    fn default() -> Self {
        Self::new(1024, 20)
    }
}

impl LatencyTracker {
    /// A tracker that halves its counts every `window` samples and reports
    /// no quantile before `min_samples`.
    pub fn new(window: u32, min_samples: u32) -> Self {
        Self {
            counts: Box::new([0; LATENCY_BUCKETS]),
            total: 0,
            window: window.max(2),
            min_samples: min_samples.max(1),
        }
    }

    fn bucket(latency: Duration) -> usize {
        let us = latency.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
        // floor(log2(us) * PER_OCTAVE), from the integer log and the top
        // bits below the leading one (exact at bucket edges, no floats).
        let octave = 63 - us.leading_zeros();
        let frac = if octave >= 2 {
            ((us >> (octave - 2)) & 0b11) as u32
        } else {
            ((us << (2 - octave)) & 0b11) as u32
        };
        ((octave * PER_OCTAVE + frac) as usize).min(LATENCY_BUCKETS - 1)
    }

    /// The upper edge of bucket `i` (the next bucket's lower edge,
    /// `2^octave × (1 + frac/4)` µs, computed in quarter microseconds).
    fn upper(i: usize) -> Duration {
        let j = i as u32 + 1;
        let (octave, frac) = (j / PER_OCTAVE, j % PER_OCTAVE);
        let quarters = u64::from(PER_OCTAVE + frac) << octave;
        Duration::from_nanos(quarters * 250)
    }

    /// One observed latency.
    pub fn record(&mut self, latency: Duration) {
        self.counts[Self::bucket(latency)] += 1;
        self.total += 1;
        if self.total >= self.window {
            self.total = 0;
            for c in self.counts.iter_mut() {
                *c /= 2;
                self.total += *c;
            }
        }
    }

    /// Samples currently weighing in.
    pub fn samples(&self) -> u32 {
        self.total
    }

    /// The `q` quantile (an upper bound, within one bucket), once there
    /// are enough samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total < self.min_samples {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * f64::from(self.total)).ceil() as u32).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::upper(i));
            }
        }
        Some(Self::upper(LATENCY_BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn attempt_timeout_is_a_bounded_fraction_of_what_is_left() {
        let ms = Duration::from_millis;
        let p = AttemptPolicy {
            fixed: None,
            fraction: 0.5,
            min: ms(1_000),
            max: ms(60_000),
        };
        assert_eq!(attempt_timeout(ms(70_000), &p), ms(35_000));
        assert_eq!(attempt_timeout(ms(600_000), &p), ms(60_000), "capped");
        assert_eq!(attempt_timeout(ms(1_500), &p), ms(1_000), "floored");
        assert_eq!(
            attempt_timeout(ms(300), &p),
            ms(300),
            "never past the deadline"
        );
        let fixed = AttemptPolicy {
            fixed: Some(ms(2_000)),
            ..p
        };
        assert_eq!(attempt_timeout(ms(70_000), &fixed), ms(2_000));
        assert_eq!(attempt_timeout(ms(500), &fixed), ms(500));
    }

    #[test]
    fn latency_quantiles_come_from_recent_samples() {
        let ms = Duration::from_millis;
        let mut t = LatencyTracker::new(1000, 20);
        assert_eq!(t.quantile(0.95), None);
        for i in 0..100u64 {
            t.record(ms(if i < 90 { 10 } else { 200 }));
        }
        let p50 = t.quantile(0.5).unwrap();
        assert!(p50 >= ms(10) && p50 <= ms(12), "{p50:?}");
        let p95 = t.quantile(0.95).unwrap();
        assert!(p95 >= ms(200) && p95 <= ms(240), "{p95:?}");
        assert_eq!(hedge_delay(HedgeAfter::Quantile(0.5), &t), Some(p50));
        assert_eq!(hedge_delay(HedgeAfter::Fixed(ms(7)), &t), Some(ms(7)));
        // The window: old samples fade; new behaviour takes over.
        for _ in 0..3000 {
            t.record(ms(1));
        }
        assert!(t.quantile(0.95).unwrap() <= ms(2));
        assert!(t.samples() < 1000);
    }

    #[test]
    fn latency_buckets_are_monotonic_and_bound_their_samples() {
        let mut last = 0;
        for us in (1..2_000_000u64).step_by(997) {
            let d = Duration::from_micros(us);
            let b = LatencyTracker::bucket(d);
            assert!(b >= last, "{us}");
            last = b;
            assert!(
                LatencyTracker::upper(b) > d,
                "{us}: {:?}",
                LatencyTracker::upper(b)
            );
            if b > 0 {
                assert!(LatencyTracker::upper(b - 1) <= d, "{us}");
            }
        }
        assert_eq!(LatencyTracker::bucket(Duration::MAX), LATENCY_BUCKETS - 1);
        assert_eq!(LatencyTracker::bucket(Duration::ZERO), 0);
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn cold_start_is_delay_times_attempt() {
        let unit = 3 * S;
        assert_eq!(cold_start_delay(unit, 1), 3 * S);
        assert_eq!(cold_start_delay(unit, 2), 6 * S);
        assert_eq!(cold_start_delay(unit, 0), 3 * S, "attempts are 1-based");
    }

    #[test]
    fn throttle_backoff_doubles_to_a_cap() {
        let ms = Duration::from_millis;
        let d = |a, j| throttle_delay(ms(100), ms(1000), a, j);
        assert_eq!(d(1, 1.0), ms(100));
        assert_eq!(d(1, 0.0), ms(50));
        assert_eq!(d(2, 1.0), ms(200));
        assert_eq!(d(4, 1.0), ms(800));
        assert_eq!(d(5, 1.0), ms(1000), "capped");
        assert_eq!(d(u32::MAX, 1.0), ms(1000), "no overflow");
    }

    #[test]
    fn budget_allows_twenty_percent_plus_the_floor() {
        let mut b = RetryBudget::new(0.2, 1.0, 10.0);
        let mut retries = 0;
        // 1000 requests in the same millisecond, each wanting a retry.
        for _ in 0..1000 {
            b.on_request(0);
            if b.try_withdraw(0) {
                retries += 1;
            }
        }
        assert!((200..=201).contains(&retries), "{retries}");
        // The floor refills with time even without requests.
        assert!(!b.try_withdraw(0));
        assert!(b.try_withdraw(1_000));
        assert!(!b.try_withdraw(1_000));
        // A long quiet period does not bank more than the cap.
        let mut n = 0;
        while b.try_withdraw(1_000_000) {
            n += 1;
        }
        assert_eq!(n, 10);
    }

    #[test]
    fn breaker_ejects_for_longer_each_time_and_recovers() {
        let p = BreakerPolicy {
            consecutive_failures: 3,
            base_ejection_ms: 1_000,
            max_ejection_ms: 2_500,
        };
        let mut b = Breaker::default();
        assert!(!b.on_failure(0, &p));
        assert!(!b.on_failure(1, &p));
        b.on_success(2, &p);
        assert!(!b.on_failure(3, &p), "a success resets the streak");
        assert!(!b.on_failure(4, &p));
        assert!(b.on_failure(5, &p), "third in a row ejects");
        assert!(b.is_ejected(5) && b.is_ejected(1_004));
        assert!(!b.is_ejected(1_005));
        for t in 1_005..1_008 {
            b.on_failure(t, &p);
        }
        assert!(b.is_ejected(3_006) && !b.is_ejected(3_007), "second: 2 s");
        for t in 3_007..3_010 {
            b.on_failure(t, &p);
        }
        assert!(
            b.is_ejected(5_508) && !b.is_ejected(5_509),
            "third: capped at 2.5 s"
        );
        assert_eq!(b.ejections(), 3);
        b.on_success(5_600, &p);
        assert_eq!(b.ejections(), 3, "not yet healthy for a full max period");
        b.on_success(5_509 + 2_500, &p);
        assert_eq!(b.ejections(), 0, "multiplier reset");
        assert!(!b.is_ejected(5_509 + 2_500));
    }

    proptest! {
        /// Whatever the mix of requests and time, retries never exceed
        /// `ratio × requests + floor × seconds + initial`.
        #[test]
        fn budget_bounds_retries(
            steps in prop::collection::vec((any::<bool>(), 0u64..2_000), 1..500),
            ratio in 0.0f64..1.0,
        ) {
            let floor = 1.0;
            let mut b = RetryBudget::new(ratio, floor, 10.0);
            let (mut now, mut requests, mut retries) = (0u64, 0u64, 0u64);
            for (is_request, dt) in steps {
                now += dt;
                if is_request {
                    b.on_request(now);
                    requests += 1;
                } else if b.try_withdraw(now) {
                    retries += 1;
                }
            }
            let bound = ratio * requests as f64 + floor * (now as f64 / 1000.0) + floor;
            prop_assert!(retries as f64 <= bound + 1e-9, "{} > {}", retries, bound);
            prop_assert!(b.balance() >= 0.0 && b.balance() <= 10.0);
        }

        /// Ejections never end before they started, never last longer than
        /// the cap, and a target is never ejected without failures.
        #[test]
        fn breaker_ejections_are_bounded(
            events in prop::collection::vec((any::<bool>(), 0u64..3_000), 1..300),
        ) {
            let p = BreakerPolicy { consecutive_failures: 2, base_ejection_ms: 500, max_ejection_ms: 4_000 };
            let mut b = Breaker::default();
            let mut now = 0;
            let mut failures = 0;
            for (ok, dt) in events {
                now += dt;
                if ok {
                    b.on_success(now, &p);
                } else {
                    failures += 1;
                    if b.on_failure(now, &p) {
                        prop_assert!(b.is_ejected(now));
                        prop_assert!(!b.is_ejected(now + p.max_ejection_ms));
                    }
                }
                if failures == 0 {
                    prop_assert!(!b.is_ejected(now));
                }
            }
        }
    }
}
