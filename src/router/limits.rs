//! Per-caller limits (issue 22 item 4): requests in flight and a request
//! rate per caller identity (`router.callers`, else
//! `router.caller_default`), answered `ThrottlingException` (429, the
//! router's throttling reply) with `Retry-After`.
//!
//! A router with no caller limits and no caller identity does nothing
//! here: [`Callers::admit`] is not called (one check of the configuration
//! per request), so the benchmarked path has no lock and no allocation.
//! With limits, each admitted request takes one mutex (a map lookup; an
//! allocation only the first time a caller is seen) and its release is one
//! atomic decrement. Callers without identity share one entry,
//! `anonymous`. The map is bounded: at [`MAX_TRACKED`] callers, idle
//! ones (nothing in flight, a full bucket) are forgotten, which costs them
//! nothing since a forgotten caller starts again with a full bucket; if
//! that is not enough, every caller with nothing in flight is.
//!
//! Time is an input (`now`, the router's clock), so tests can step it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::CallerLimit;

/// Callers remembered at most before idle ones are dropped.
pub const MAX_TRACKED: usize = 10_000;

/// The identity requests without one are counted under.
pub const ANONYMOUS: &str = "anonymous";

/// Every caller's state.
#[derive(Default)]
pub struct Callers {
    map: Mutex<HashMap<Arc<str>, Entry>>,
}

struct Entry {
    in_flight: Arc<AtomicU32>,
    tokens: f64,
    last: Instant,
}

/// A request admitted: its place in its caller's in-flight count, given
/// back on drop.
#[derive(Debug)]
pub struct Admitted(Arc<AtomicU32>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_in_flight` requests of this caller are in flight.
    Concurrency(u32),
    /// Over `rate`; the next token comes within `retry_after`.
    Rate { retry_after: Duration },
}

impl Refused {
    /// Whole seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refused::Concurrency(_) => 1,
            Refused::Rate { retry_after } => retry_after.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

impl Callers {
    /// Admit one request of `caller` under `limit` at `now`, or say why not.
    pub fn admit(
        &self,
        caller: &str,
        limit: &CallerLimit,
        now: Instant,
    ) -> Result<Admitted, Refused> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(caller) {
            if map.len() >= MAX_TRACKED {
                forget_idle(&mut map, now, limit);
            }
            if map.len() >= MAX_TRACKED {
                // Still full: forget everyone with nothing in flight (they
                // start again with a full bucket). Identities come from
                // the listener's CA, so this takes that many live callers.
                map.retain(|_, e| e.in_flight.load(Ordering::Acquire) > 0);
            }
            map.insert(
                Arc::from(caller),
                Entry {
                    in_flight: Arc::new(AtomicU32::new(0)),
                    tokens: burst(limit),
                    last: now,
                },
            );
        }
        let e = map.get_mut(caller).expect("inserted above");
        if let Some(max) = limit.max_in_flight
            && e.in_flight.load(Ordering::Acquire) >= max
        {
            return Err(Refused::Concurrency(max));
        }
        if let Some(rate) = limit.rate {
            let elapsed = now.saturating_duration_since(e.last).as_secs_f64();
            e.tokens = (e.tokens + elapsed * rate).min(burst(limit));
            e.last = now;
            if e.tokens < 1.0 {
                let wait = (1.0 - e.tokens) / rate;
                return Err(Refused::Rate {
                    retry_after: Duration::from_secs_f64(wait),
                });
            }
            e.tokens -= 1.0;
        }
        e.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(Admitted(e.in_flight.clone()))
    }

    /// Callers tracked now (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A caller's bucket size: one second's worth, at least one request.
fn burst(limit: &CallerLimit) -> f64 {
    limit.rate.map_or(1.0, |r| r.max(1.0))
}

/// Drop callers with nothing in flight whose bucket would be full by now.
fn forget_idle(map: &mut HashMap<Arc<str>, Entry>, now: Instant, limit: &CallerLimit) {
    map.retain(|_, e| {
        let refilled = limit.rate.is_none_or(|r| {
            e.tokens + now.saturating_duration_since(e.last).as_secs_f64() * r >= burst(limit)
        });
        e.in_flight.load(Ordering::Acquire) > 0 || !refilled
    });
}

/// The limits of `caller` under `cfg`: its own, else the default.
pub fn limit_of<'c>(router: &'c crate::config::Router, caller: &str) -> Option<&'c CallerLimit> {
    router
        .callers
        .get(caller)
        .or(router.caller_default.as_ref())
}

#[cfg(test)]
// A starting instant for `now` from the clock port (tokio's, paused);
// every later time is that instant plus a step.
mod tests {
    use super::*;
    use crate::ports::clock::{Clock, SystemClock};

    fn limit(max_in_flight: Option<u32>, rate: Option<f64>) -> CallerLimit {
        CallerLimit {
            max_in_flight,
            rate,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_per_caller_and_given_back_on_drop() {
        let c = Callers::default();
        let l = limit(Some(2), None);
        let now = SystemClock.monotonic();
        let a1 = c.admit("a", &l, now).unwrap();
        let _a2 = c.admit("a", &l, now).unwrap();
        assert_eq!(c.admit("a", &l, now).err(), Some(Refused::Concurrency(2)));
        // Another caller has its own count.
        let _b = c.admit("b", &l, now).unwrap();
        drop(a1);
        assert!(c.admit("a", &l, now).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn rate_is_a_bucket_of_one_second_with_a_retry_after() {
        let c = Callers::default();
        let l = limit(None, Some(2.0));
        let t0 = SystemClock.monotonic();
        assert!(c.admit("a", &l, t0).is_ok());
        assert!(c.admit("a", &l, t0).is_ok());
        let Err(Refused::Rate { retry_after }) = c.admit("a", &l, t0) else {
            panic!("third request in the same instant is over 2/s");
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert!(c.admit("a", &l, t0 + Duration::from_millis(500)).is_ok());
        // Slow rates ask for a longer wait.
        let slow = limit(None, Some(0.25));
        assert!(c.admit("s", &slow, t0).is_ok());
        let refused = c.admit("s", &slow, t0).unwrap_err();
        assert_eq!(refused.retry_after_secs(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_callers_are_forgotten_past_the_bound() {
        let c = Callers::default();
        let l = limit(Some(1), Some(1.0));
        let t0 = SystemClock.monotonic();
        let held = c.admit("busy", &l, t0).unwrap();
        for i in 0..MAX_TRACKED + 5 {
            drop(c.admit(&format!("c{i}"), &l, t0 + Duration::from_secs(5)));
        }
        assert!(c.tracked() <= MAX_TRACKED, "{}", c.tracked());
        // The busy one was kept: still at its limit.
        assert_eq!(
            c.admit("busy", &l, t0 + Duration::from_secs(10)).err(),
            Some(Refused::Concurrency(1))
        );
        drop(held);
    }
}
