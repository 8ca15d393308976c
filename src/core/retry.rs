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

use std::time::Duration;

/// Delay before cold-start retry number `attempt` (1-based): `unit × attempt`.
pub fn cold_start_delay(unit: Duration, attempt: u32) -> Duration {
    unit.saturating_mul(attempt.max(1))
}

/// Delay before throttling retry number `attempt` (1-based): `base ×
/// 2^(attempt-1)` capped at `cap`, with equal jitter: half of it fixed, the
/// other half scaled by `jitter` in `[0, 1)` (tests pass 0 or 1).
pub fn throttle_delay(base: Duration, cap: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(cap);
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
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
        if let Some(until) = self.ejected_until {
            if now_ms >= until.saturating_add(policy.max_ejection_ms) {
                self.ejections = 0;
                self.ejected_until = None;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
