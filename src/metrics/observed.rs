//! Per-model traffic as this router observed it, for `failoverd advise`
//! (`GET /traffic` on the admin listener, a `core::advise::TrafficSet`).
//!
//! `metrics::counts` counts *attempts per endpoint* (what idle detection and
//! the active's need read); advise asks a different question, what the
//! *clients* ask of each *model*, so this counts client requests, once each
//! however many attempts they took:
//!
//! - requests per minute: a ring of 10,080 one-minute buckets (7 days, the
//!   longest window advise judges), each stamped with its minute so a slot
//!   left from an older lap reads as zero;
//! - payload sizes: one histogram per day (8 days, so 7 whole days and the
//!   current one) over log-linear buckets (exact below 16 bytes, then four
//!   per power of two: a quantile is reported as its bucket's upper bound,
//!   at most 25% over the true value and never under it, and never above the
//!   largest payload seen);
//! - cold starts: `ModelNotReadyException` answers met by any attempt, per
//!   hour (169 hours).
//!
//! Only requests the router accepted are counted (a known model, a valid
//! request, a body within limits): a refused request asks nothing of a
//! model. Memory: about 170 KB per model that has had a request, allocated
//! on its first one; models come from configuration, so the map is bounded.
//!
//! Time is the router's `Clock` port (unix ms); a clock that steps back is
//! held at its highest reading, as in `metrics::counts`.
//!
//! What the observation covers: every request since the router started,
//! up to 7 days: the minutes from the router's first (partial: it started
//! during it) to the last whole one before now, and apart from them the
//! minute under way (reported, not judged). Over a week, the window starts
//! 10,080 minutes before the current one. A model with no request in that span is reported with
//! all-zero minutes: the router counted, and nothing came, which advise must
//! be able to tell from "not counted".

use std::collections::HashMap;
use std::sync::Mutex;

use super::counts::{CountingClock, Ring};

use crate::core::advise::{PayloadStats, TrafficObservation};

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
/// Minutes kept: 7 days.
pub const WEEK_MINUTES: usize = 7 * 24 * 60;
/// Day histograms kept: 7 whole days and the current one.
const DAYS: usize = 8;
/// Hours of cold starts kept: 7 days, rounded outward.
const HOURS: usize = 169;
/// Payload buckets: 16 exact, then 4 per power of two from 2^4 to 2^33.
const SIZE_BUCKETS: usize = 16 + 30 * 4;

/// The bucket of a payload of `n` bytes.
fn size_bucket(n: u64) -> usize {
    if n < 16 {
        return n as usize;
    }
    let e = 63 - n.leading_zeros() as usize; // 2^e <= n < 2^(e+1), e >= 4
    let sub = ((n >> (e - 2)) & 3) as usize;
    (16 + (e - 4) * 4 + sub).min(SIZE_BUCKETS - 1)
}

/// The largest size bucket `b` holds (its upper bound, inclusive).
fn bucket_upper(b: usize) -> u64 {
    if b < 16 {
        return b as u64;
    }
    let e = (b - 16) / 4 + 4;
    let sub = ((b - 16) % 4) as u64;
    ((4 + sub + 1) << (e - 2)) - 1
}

/// One day's payload histogram.
#[derive(Debug, Clone)]
struct DaySizes {
    /// Day number + 1 (0: empty).
    stamp: u64,
    counts: [u32; SIZE_BUCKETS],
    max: u64,
}

/// One model's observation: the same stamped rings as `metrics::counts`
/// (a slot left from an older lap reads as zero).
#[derive(Debug, Clone)]
struct ModelRings {
    minutes: Box<Ring<WEEK_MINUTES>>,
    days: Box<[DaySizes]>,
    cold: Box<Ring<HOURS>>,
}

impl ModelRings {
    fn new() -> Self {
        Self {
            minutes: Box::new(Ring::new(MINUTE_MS)),
            days: vec![
                DaySizes {
                    stamp: 0,
                    counts: [0; SIZE_BUCKETS],
                    max: 0,
                };
                DAYS
            ]
            .into_boxed_slice(),
            cold: Box::new(Ring::new(HOUR_MS)),
        }
    }

    fn request(&mut self, bytes: u64, now: u64) {
        self.minutes.add(now);
        let d = now / DAY_MS;
        let day = &mut self.days[(d % DAYS as u64) as usize];
        if day.stamp != d + 1 {
            *day = DaySizes {
                stamp: d + 1,
                counts: [0; SIZE_BUCKETS],
                max: 0,
            };
        }
        let b = size_bucket(bytes);
        day.counts[b] = day.counts[b].saturating_add(1);
        day.max = day.max.max(bytes);
    }

    fn cold_start(&mut self, now: u64) {
        self.cold.add(now);
    }

    /// Requests in minutes `first..end` (bucket numbers), oldest first.
    fn minutes(&self, first: u64, end: u64) -> Vec<u64> {
        if end <= first {
            return Vec::new();
        }
        self.minutes
            .buckets(first * MINUTE_MS, end * MINUTE_MS - 1)
            .map_or_else(Vec::new, Iterator::collect)
    }

    /// Payload quantiles over the days overlapping `[from_ms, now]`.
    fn sizes(&self, from_ms: u64, now: u64) -> PayloadStats {
        let (first, last) = (from_ms / DAY_MS, now / DAY_MS);
        let mut counts = [0u64; SIZE_BUCKETS];
        let mut max = 0u64;
        for day in self.days.iter() {
            let Some(d) = day.stamp.checked_sub(1) else {
                continue;
            };
            if d < first || d > last {
                continue;
            }
            for (c, n) in counts.iter_mut().zip(day.counts.iter()) {
                *c += u64::from(*n);
            }
            max = max.max(day.max);
        }
        let total: u64 = counts.iter().sum();
        let quantile = |q_permille: u64| {
            if total == 0 {
                return 0;
            }
            // The smallest bucket holding at least q of the payloads.
            let rank = (total * q_permille).div_ceil(1000).max(1);
            let mut seen = 0;
            for (b, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_upper(b).min(max);
                }
            }
            max
        };
        PayloadStats {
            p50: quantile(500),
            p95: quantile(950),
            max,
        }
    }

    fn cold_starts(&self, from_ms: u64, now: u64) -> u64 {
        self.cold.sum(from_ms, now).unwrap_or(0)
    }
}

/// The router's per-model observations.
#[derive(Debug, Default)]
pub struct Observed {
    clock: CountingClock,
    models: Mutex<HashMap<String, ModelRings>>,
}

impl Observed {
    /// Start observing at `now_ms` (the router's start); later calls keep
    /// the first start.
    pub fn start(&self, now_ms: u64) {
        self.clock.start(now_ms);
    }

    fn now(&self, now_ms: u64) -> u64 {
        self.clock.now(now_ms)
    }

    fn with_model(&self, model: &str, f: impl FnOnce(&mut ModelRings)) {
        let mut map = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = map.get_mut(model) {
            f(m);
        } else {
            f(map.entry(model.to_string()).or_insert_with(ModelRings::new));
        }
    }

    /// One accepted client request for `model` with a body of `bytes`.
    pub fn request(&self, model: &str, bytes: u64, now_ms: u64) {
        self.start(now_ms);
        let now = self.now(now_ms);
        self.with_model(model, |m| m.request(bytes, now));
    }

    /// One `ModelNotReadyException` (a cold start) met for `model`.
    pub fn cold_start(&self, model: &str, now_ms: u64) {
        self.start(now_ms);
        let now = self.now(now_ms);
        self.with_model(model, |m| m.cold_start(now));
    }

    /// What was observed of each of `models` (in that order) at `now_ms`:
    /// the minutes from the start's (or 7 days ago) to the last whole one
    /// before now, and the minute under way. `None` before the start
    /// (nothing observed: "not collected").
    pub fn observations<'a>(
        &self,
        models: impl IntoIterator<Item = &'a str>,
        now_ms: u64,
    ) -> Option<Vec<TrafficObservation>> {
        let started = self.clock.since_ms()?;
        let now = self.now(now_ms);
        let end = now / MINUTE_MS; // the current minute: not whole yet
        let first = (started / MINUTE_MS)
            .max(end.saturating_sub(WEEK_MINUTES as u64))
            .min(end);
        let from_ms = first * MINUTE_MS;
        let map = self.models.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            models
                .into_iter()
                .map(|name| {
                    let (per_minute, current_minute, payload_bytes, cold_starts) =
                        match map.get(name) {
                            Some(m) => (
                                m.minutes(first, end),
                                m.minutes(end, end + 1)[0],
                                m.sizes(from_ms, now),
                                m.cold_starts(from_ms, now),
                            ),
                            None => (
                                vec![0; (end - first) as usize],
                                0,
                                PayloadStats::default(),
                                0,
                            ),
                        };
                    TrafficObservation {
                        model: name.to_string(),
                        start_ms: from_ms,
                        per_minute,
                        current_minute,
                        payload_bytes,
                        cold_starts,
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_800_000_000_000 - 1_800_000_000_000 % DAY_MS; // midnight UTC

    #[test]
    fn size_buckets_are_ordered_and_bound_their_values() {
        let mut last = 0;
        for b in 0..SIZE_BUCKETS {
            assert!(b == 0 || bucket_upper(b) > last, "bucket {b}");
            last = bucket_upper(b);
        }
        for n in [
            0,
            1,
            15,
            16,
            17,
            19,
            20,
            1023,
            1024,
            1025,
            6_000_000,
            1 << 33,
        ] {
            let b = size_bucket(n);
            assert!(bucket_upper(b) >= n || b == SIZE_BUCKETS - 1, "{n}");
            assert!(
                b == 0 || bucket_upper(b - 1) < n,
                "{n} in a bucket too high"
            );
        }
    }

    #[test]
    fn nothing_before_the_start_then_every_minute_since() {
        let o = Observed::default();
        assert_eq!(o.observations(["m"], T0), None);
        o.start(T0 + 30_000); // mid-minute: minute 0 is partial
        o.request("m", 10, T0 + 40_000);
        o.request("m", 10, T0 + 61_000);
        o.request("m", 10, T0 + 62_000);
        o.request("m", 10, T0 + 125_000);
        let got = o.observations(["m", "quiet"], T0 + 150_000).unwrap();
        assert_eq!(got[0].start_ms, T0);
        // Minutes 0 and 1 are past; minute 2 is the one under way.
        assert_eq!(got[0].per_minute, vec![1, 2]);
        assert_eq!(got[0].current_minute, 1);
        assert_eq!(got[1].per_minute, vec![0, 0], "counted, and nothing came");
        assert_eq!(got[1].model, "quiet");
    }

    #[test]
    fn the_ring_forgets_what_is_older_than_a_week() {
        let o = Observed::default();
        o.start(T0);
        o.request("m", 10, T0 + 5 * MINUTE_MS);
        let week = WEEK_MINUTES as u64 * MINUTE_MS;
        // A week and a minute later the same slot is reused by a new minute.
        o.request("m", 10, T0 + 5 * MINUTE_MS + week);
        let got = o.observations(["m"], T0 + 7 * MINUTE_MS + week).unwrap();
        assert_eq!(got[0].per_minute.len(), WEEK_MINUTES);
        assert_eq!(got[0].per_minute.iter().sum::<u64>(), 1);
        assert_eq!(*got[0].per_minute.last().unwrap(), 0);
        assert_eq!(got[0].per_minute[WEEK_MINUTES - 2], 1);
    }

    #[test]
    fn cold_starts_and_payloads_are_reported() {
        let o = Observed::default();
        o.start(T0);
        for i in 0..100u64 {
            o.request("m", if i < 90 { 1_000 } else { 5_000_000 }, T0 + i * 1_000);
        }
        o.cold_start("m", T0 + 5_000);
        o.cold_start("m", T0 + 6_000);
        let got = &o.observations(["m"], T0 + 10 * MINUTE_MS).unwrap()[0];
        assert_eq!(got.cold_starts, 2);
        let p = got.payload_bytes;
        assert!((1_000..=1_250).contains(&p.p50), "{p:?}");
        assert!((5_000_000..=6_250_000).contains(&p.p95), "{p:?}");
        assert_eq!(p.max, 5_000_000);
    }

    proptest! {
        /// Whatever the requests, the minutes reported add up to the
        /// requests in whole minutes of the span, and the payload quantiles
        /// never under-report (rounded up, never above the max).
        #[test]
        fn minutes_add_up_and_quantiles_round_up(
            reqs in proptest::collection::vec((0u64..3 * 3_600_000, 0u64..10_000_000), 1..300),
            now_extra in 0u64..3_600_000,
        ) {
            let o = Observed::default();
            o.start(T0);
            let mut sorted = reqs.clone();
            sorted.sort();
            for (t, b) in &sorted {
                o.request("m", *b, T0 + t);
            }
            let now = T0 + sorted.last().unwrap().0 + now_extra;
            let got = &o.observations(["m"], now).unwrap()[0];
            let end_ms = now / MINUTE_MS * MINUTE_MS;
            let whole = sorted.iter().filter(|(t, _)| T0 + t < end_ms).count() as u64;
            prop_assert_eq!(got.per_minute.iter().sum::<u64>(), whole);
            prop_assert_eq!(got.current_minute, sorted.len() as u64 - whole);
            let mut sizes: Vec<u64> = sorted.iter().map(|(_, b)| *b).collect();
            sizes.sort();
            let max = *sizes.last().unwrap();
            let true_p95 = sizes[(sizes.len() * 95).div_ceil(100) - 1];
            prop_assert!(got.payload_bytes.p95 >= true_p95);
            prop_assert!(got.payload_bytes.p95 <= max);
            prop_assert!(got.payload_bytes.p95 as f64 <= true_p95 as f64 * 1.25 + 1.0);
            prop_assert_eq!(got.payload_bytes.max, max);
        }
    }
}
