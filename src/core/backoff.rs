//! The one exponential backoff: `base × 2^(attempt−1)`, capped, with equal
//! jitter (half fixed, half scaled by a jitter in `[0, 1)` the caller
//! supplies, so tests and the simulation pass a seeded or fixed value).
//!
//! Every retry loop of the daemon uses it: the router's throttling retries,
//! the prepare step's warm-up, task callbacks, Route 53 throttling.

use std::time::Duration;

/// Delay before retry number `attempt` (1-based).
pub fn delay(base: Duration, cap: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(cap);
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A backoff in progress: the attempt count, for loops that retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The delay before the next retry (and count it).
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        delay(self.base, self.cap, self.attempt, jitter)
    }

    /// Start over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Never above the cap, never below half the un-jittered delay, and
        /// growing until the cap.
        #[test]
        fn bounded_and_growing(base_ms in 1u64..1000, cap_ms in 1u64..100_000, n in 1u32..40, j in 0.0f64..1.0) {
            let (base, cap) = (Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
            let d = delay(base, cap, n, j);
            prop_assert!(d <= cap);
            let full = base.saturating_mul(1u32 << n.saturating_sub(1).min(30)).min(cap);
            prop_assert!(d >= full / 2);
            prop_assert!(delay(base, cap, n + 1, 0.0) >= delay(base, cap, n, 0.0));
        }
    }

    #[test]
    fn counts_attempts() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(100));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(200));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(200));
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
    }
}
