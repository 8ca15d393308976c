//! `failoverd advise`: the seed's decision matrix applied to the traffic
//! the router observed, per model, with the numbers that led to it. Pure:
//! no I/O, no clock.
//!
//! # Input
//!
//! [`TrafficObservation`] is what the router publishes per model: requests
//! in each whole minute of the window (zeros included), payload size
//! quantiles and the cold starts it met. Everything else (per hour, idle
//! gaps, business vs off hours) is derived here from the minutes, so the
//! figures cannot disagree with each other. A week of minutes is 10,080
//! numbers per model: fine for an admin endpoint, too many for `/status`.
//!
//! # The matrix
//!
//! The seed: "steady traffic >500 req/min: provisioned; sporadic traffic
//! <50 req/hour: serverless; large datasets: batch transform; off-hours cost
//! reduction: scheduled scaling". It leaves the band between 50 req/hour
//! and 500 req/min open; we close it with the idle gaps and cold starts the
//! issue names. In order, the first rule that applies wins, so every model
//! gets exactly one recommendation:
//!
//! 1. `too_short`: under one whole hour of minutes: no recommendation
//!    (`not_enough_data`);
//! 2. `large_payloads`: payload p95 at or above the batch threshold (the
//!    router's `default_batch_threshold`): **batch**;
//! 3. `sporadic`: every whole hour had fewer than 50 requests:
//!    **serverless**;
//! 4. `steady`: the median minute (in business hours, when a business
//!    window is given and the data covers both business and off hours) had
//!    more than 500 requests: **provisioned**;
//! 5. `intermittent`: in between, with an idle gap of at least 15 minutes
//!    (a provisioned endpoint would sit paid and unused) and at most 24
//!    cold starts a day (serverless copes): **serverless**;
//! 6. `continuous`: in between otherwise: **provisioned**.
//!
//! A provisioned recommendation adds **scheduled scaling** when the mean
//! off-hours minute carries at most 20% of the mean business minute.
//!
//! Every threshold is configurable ([`Thresholds`]). The rules are
//! monotonic: more requests in any minute, or more cold starts, never turn
//! a provisioned recommendation into a serverless one (a property test).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::schedule::Schedule;

const MINUTE_MS: u64 = 60_000;

/// Quantiles of request payload sizes over the window, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadStats {
    pub p50: u64,
    pub p95: u64,
    pub max: u64,
}

/// What the router observed of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficObservation {
    pub model: String,
    /// Unix ms at which the first minute starts.
    pub start_ms: u64,
    /// Requests in each whole minute, oldest first, zeros included.
    pub per_minute: Vec<u64>,
    /// Requests so far in the minute under way (after `per_minute`; not
    /// judged, since the minute is not whole).
    #[serde(default)]
    pub current_minute: u64,
    /// Request payload sizes over the window.
    #[serde(default)]
    pub payload_bytes: PayloadStats,
    /// `ModelNotReadyException` answers (cold starts) in the window.
    #[serde(default)]
    pub cold_starts: u64,
}

/// What a daemon publishes at `GET /traffic`, and what `advise --from`
/// reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSet {
    /// The region whose router observed it.
    pub region: String,
    /// Whether the router counts per-model traffic at all. `false` means
    /// "not collected", which is not the same as "no traffic".
    pub collected: bool,
    #[serde(default)]
    pub models: Vec<TrafficObservation>,
}

/// The matrix's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Provisioned when the median minute has more requests than this (seed: 500).
    pub steady_per_minute: u64,
    /// Serverless when every hour has fewer requests than this (seed: 50).
    pub sporadic_per_hour: u64,
    /// Batch when payload p95 is at least this many bytes.
    pub batch_payload_bytes: u64,
    /// Scheduled scaling when off-hours traffic is at most this share of
    /// business-hours traffic (mean per minute).
    pub off_hours_ratio: f64,
    /// In the open band, an idle gap this long (minutes) favours serverless.
    pub idle_gap_minutes: u64,
    /// In the open band, more cold starts a day than this favour provisioned.
    pub cold_starts_per_day: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            steady_per_minute: 500,
            sporadic_per_hour: 50,
            batch_payload_bytes: 4 * 1024 * 1024,
            off_hours_ratio: 0.2,
            idle_gap_minutes: 15,
            cold_starts_per_day: 24,
        }
    }
}

/// The recommended serving approach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Approach {
    NotEnoughData,
    Serverless,
    Provisioned,
    Batch,
}

/// The matrix row that decided (module doc, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    TooShort,
    LargePayloads,
    Sporadic,
    Steady,
    Intermittent,
    Continuous,
}

/// The figures behind a recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Numbers {
    pub minutes: u64,
    pub requests: u64,
    pub per_minute_p50: u64,
    pub per_minute_p95: u64,
    pub per_minute_max: u64,
    /// Median minute over the minutes the steady rule judged (business
    /// hours, or all).
    pub judged_per_minute_p50: u64,
    /// Whether those were business-hours minutes only.
    pub judged_business_hours: bool,
    pub per_hour_p50: u64,
    pub per_hour_max: u64,
    pub longest_idle_gap_minutes: u64,
    pub cold_starts: u64,
    pub cold_starts_per_day: f64,
    pub payload_bytes: PayloadStats,
    /// Mean requests per minute in business hours and off hours, and their
    /// ratio, when a business window applies and the data covers both.
    pub business_per_minute_mean: Option<f64>,
    pub off_hours_per_minute_mean: Option<f64>,
    pub off_hours_ratio: Option<f64>,
}

/// One model's recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub model: String,
    pub approach: Approach,
    /// Add scheduled scaling (provisioned only).
    pub scheduled_scaling: bool,
    pub rule: Rule,
    /// One line: the rule and the numbers that met it.
    pub why: String,
    pub numbers: Numbers,
}

/// Input that cannot be advised on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdviseError {
    #[error("model {0:?} is observed twice; one observation per model")]
    DuplicateModel(String),
}

/// One recommendation per observation, in input order.
pub fn advise(
    observations: &[TrafficObservation],
    t: &Thresholds,
    business: Option<&Schedule>,
) -> Result<Vec<Recommendation>, AdviseError> {
    let mut seen = BTreeSet::new();
    for o in observations {
        if !seen.insert(o.model.as_str()) {
            return Err(AdviseError::DuplicateModel(o.model.clone()));
        }
    }
    Ok(observations
        .iter()
        .map(|o| recommend(o, t, business))
        .collect())
}

/// The `q` quantile (nearest rank) of `v`; 0 when empty.
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn mean(v: &[u64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<u64>() as f64 / v.len() as f64)
}

fn longest_zero_run(v: &[u64]) -> u64 {
    let (mut best, mut run) = (0u64, 0u64);
    for &n in v {
        run = if n == 0 { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

fn recommend(
    o: &TrafficObservation,
    t: &Thresholds,
    business: Option<&Schedule>,
) -> Recommendation {
    let m = &o.per_minute;
    let minutes = m.len() as u64;
    let hours: Vec<u64> = m.chunks_exact(60).map(|h| h.iter().sum()).collect();

    // Split minutes into business and off hours (judged at each minute's start).
    let (mut biz, mut off) = (Vec::new(), Vec::new());
    if let Some(s) = business {
        for (i, &n) in m.iter().enumerate() {
            if s.in_window(o.start_ms + i as u64 * MINUTE_MS) {
                biz.push(n);
            } else {
                off.push(n);
            }
        }
    }
    let split = !biz.is_empty() && !off.is_empty();
    let judged: &[u64] = if split { &biz } else { m };
    let (biz_mean, off_mean) = if split {
        (mean(&biz), mean(&off))
    } else {
        (None, None)
    };
    let ratio = match (biz_mean, off_mean) {
        (Some(b), Some(o)) if b > 0.0 => Some(o / b),
        _ => None,
    };
    let days = minutes as f64 / 1440.0;
    let numbers = Numbers {
        minutes,
        requests: m.iter().sum(),
        per_minute_p50: quantile(m, 0.5),
        per_minute_p95: quantile(m, 0.95),
        per_minute_max: m.iter().copied().max().unwrap_or(0),
        judged_per_minute_p50: quantile(judged, 0.5),
        judged_business_hours: split,
        per_hour_p50: quantile(&hours, 0.5),
        per_hour_max: hours.iter().copied().max().unwrap_or(0),
        longest_idle_gap_minutes: longest_zero_run(m),
        cold_starts: o.cold_starts,
        cold_starts_per_day: if days > 0.0 {
            o.cold_starts as f64 / days
        } else {
            0.0
        },
        payload_bytes: o.payload_bytes,
        business_per_minute_mean: biz_mean,
        off_hours_per_minute_mean: off_mean,
        off_hours_ratio: ratio,
    };
    let n = &numbers;
    let cold_per_day_limit = t.cold_starts_per_day as f64;
    let (approach, rule, why) = if hours.is_empty() {
        (
            Approach::NotEnoughData,
            Rule::TooShort,
            format!("{minutes} minute(s) observed; the matrix needs at least one whole hour"),
        )
    } else if n.payload_bytes.p95 >= t.batch_payload_bytes {
        (
            Approach::Batch,
            Rule::LargePayloads,
            format!(
                "payload p95 {} bytes >= batch threshold {} bytes",
                n.payload_bytes.p95, t.batch_payload_bytes
            ),
        )
    } else if n.per_hour_max < t.sporadic_per_hour {
        (
            Approach::Serverless,
            Rule::Sporadic,
            format!(
                "busiest hour {} requests < {} req/hour: sporadic",
                n.per_hour_max, t.sporadic_per_hour
            ),
        )
    } else if n.judged_per_minute_p50 > t.steady_per_minute {
        (
            Approach::Provisioned,
            Rule::Steady,
            format!(
                "median minute{} {} requests > {} req/min: steady",
                if split { " in business hours" } else { "" },
                n.judged_per_minute_p50,
                t.steady_per_minute
            ),
        )
    } else if n.longest_idle_gap_minutes >= t.idle_gap_minutes
        && n.cold_starts_per_day <= cold_per_day_limit
    {
        (
            Approach::Serverless,
            Rule::Intermittent,
            format!(
                "between the bands; idle gap of {} min >= {} min and {:.1} cold starts/day <= {}",
                n.longest_idle_gap_minutes,
                t.idle_gap_minutes,
                n.cold_starts_per_day,
                t.cold_starts_per_day
            ),
        )
    } else {
        (
            Approach::Provisioned,
            Rule::Continuous,
            if n.longest_idle_gap_minutes < t.idle_gap_minutes {
                format!(
                    "between the bands; no idle gap of {} min (longest {} min)",
                    t.idle_gap_minutes, n.longest_idle_gap_minutes
                )
            } else {
                format!(
                    "between the bands; {:.1} cold starts/day > {}",
                    n.cold_starts_per_day, t.cold_starts_per_day
                )
            },
        )
    };
    let scheduled_scaling =
        approach == Approach::Provisioned && ratio.is_some_and(|r| r <= t.off_hours_ratio);
    let why = match (scheduled_scaling, ratio) {
        (true, Some(r)) => format!(
            "{why}; off hours carry {:.0}% of business-hours traffic <= {:.0}%: scheduled scaling",
            r * 100.0,
            t.off_hours_ratio * 100.0
        ),
        _ => why,
    };
    Recommendation {
        model: o.model.clone(),
        approach,
        scheduled_scaling,
        rule,
        why,
        numbers,
    }
}

impl fmt::Display for Approach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Approach::NotEnoughData => "not enough data",
            Approach::Serverless => "serverless",
            Approach::Provisioned => "provisioned",
            Approach::Batch => "batch",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schedule::{Schedule, Window};
    use proptest::prelude::*;

    /// 2025-01-06 00:00 in New York (a Monday), unix ms.
    const MONDAY_NY: u64 = 1_736_139_600_000;

    fn obs(per_minute: Vec<u64>) -> TrafficObservation {
        TrafficObservation {
            model: "m".into(),
            start_ms: MONDAY_NY,
            per_minute,
            current_minute: 0,
            payload_bytes: PayloadStats {
                p50: 1000,
                p95: 2000,
                max: 5000,
            },
            cold_starts: 0,
        }
    }

    fn one(o: TrafficObservation, business: Option<&Schedule>) -> Recommendation {
        advise(&[o], &Thresholds::default(), business)
            .unwrap()
            .remove(0)
    }

    fn business() -> Schedule {
        let w = Window::new(
            "MON-FRI".parse().unwrap(),
            "09:00".parse().unwrap(),
            "18:00".parse().unwrap(),
            2,
        )
        .unwrap();
        Schedule::new("America/New_York", 1, vec![w]).unwrap()
    }

    #[test]
    fn the_seeds_rows() {
        let r = one(obs(vec![501; 120]), None);
        assert_eq!(
            (r.approach, r.rule),
            (Approach::Provisioned, Rule::Steady),
            "{}",
            r.why
        );
        assert_eq!(r.why, "median minute 501 requests > 500 req/min: steady");
        let r = one(obs(vec![500; 120]), None);
        assert_eq!(r.rule, Rule::Continuous, "500 is not over 500: {}", r.why);

        let mut sporadic = vec![0; 180];
        sporadic[10] = 49;
        let r = one(obs(sporadic.clone()), None);
        assert_eq!(
            (r.approach, r.rule),
            (Approach::Serverless, Rule::Sporadic),
            "{}",
            r.why
        );
        sporadic[11] = 1;
        assert_ne!(
            one(obs(sporadic), None).rule,
            Rule::Sporadic,
            "50 in an hour is not under 50"
        );

        let big = TrafficObservation {
            payload_bytes: PayloadStats {
                p50: 1,
                p95: 4 * 1024 * 1024,
                max: 1 << 30,
            },
            ..obs(vec![501; 120])
        };
        assert_eq!(one(big, None).approach, Approach::Batch);
        let short = one(obs(vec![1000; 59]), None);
        assert_eq!(
            (short.approach, short.rule),
            (Approach::NotEnoughData, Rule::TooShort)
        );
    }

    #[test]
    fn the_open_band_uses_gaps_and_cold_starts() {
        // 100 req/min with a 20-minute pause every hour.
        let mut m = Vec::new();
        for _ in 0..24 {
            m.extend([100; 40]);
            m.extend([0; 20]);
        }
        let r = one(obs(m.clone()), None);
        assert_eq!(
            (r.approach, r.rule),
            (Approach::Serverless, Rule::Intermittent),
            "{}",
            r.why
        );
        assert_eq!(r.numbers.longest_idle_gap_minutes, 20);
        let cold = TrafficObservation {
            cold_starts: 25,
            ..obs(m)
        };
        let r = one(cold, None);
        assert_eq!(
            (r.approach, r.rule),
            (Approach::Provisioned, Rule::Continuous),
            "{}",
            r.why
        );
        assert!(r.why.contains("25.0 cold starts/day > 24"), "{}", r.why);
        let r = one(obs(vec![100; 1440]), None);
        assert_eq!(r.rule, Rule::Continuous);
    }

    #[test]
    fn business_hours_steady_and_quiet_nights_add_a_schedule() {
        let s = business();
        // One week from Monday 00:00 New York: 800/min in business hours, 20 otherwise.
        let m: Vec<u64> = (0..7 * 1440)
            .map(|i| {
                if s.in_window(MONDAY_NY + i * MINUTE_MS) {
                    800
                } else {
                    20
                }
            })
            .collect();
        let r = one(obs(m.clone()), Some(&s));
        assert_eq!(
            (r.approach, r.rule),
            (Approach::Provisioned, Rule::Steady),
            "{}",
            r.why
        );
        assert!(r.scheduled_scaling, "{}", r.why);
        assert!(r.numbers.judged_business_hours);
        assert_eq!(r.numbers.judged_per_minute_p50, 800);
        assert!(
            r.why
                .contains("off hours carry 2% of business-hours traffic"),
            "{}",
            r.why
        );
        // Without the business window, the median minute is a night minute.
        let r = one(obs(m), None);
        assert_eq!(r.rule, Rule::Continuous);
        assert!(!r.scheduled_scaling);
        // Busy nights: no schedule.
        let r = one(obs(vec![800; 7 * 1440]), Some(&s));
        assert!(!r.scheduled_scaling);
    }

    #[test]
    fn duplicate_models_are_refused() {
        let e = advise(
            &[obs(vec![1; 60]), obs(vec![2; 60])],
            &Thresholds::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(e, AdviseError::DuplicateModel("m".into()));
    }

    fn level(a: Approach) -> u8 {
        match a {
            Approach::Serverless => 0,
            Approach::Provisioned => 1,
            other => panic!("{other:?}"),
        }
    }

    /// Runs of quiet, light and steady minutes, so that idle gaps, busy
    /// hours and steady medians all occur.
    fn minutes() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(
            (
                prop_oneof![Just(0u64), 0u64..3, 0u64..30, 400u64..700],
                1usize..40,
            ),
            0..12,
        )
        .prop_map(|runs| {
            runs.into_iter()
                .flat_map(|(v, n)| std::iter::repeat_n(v, n))
                .collect()
        })
    }

    proptest! {
        /// Every observation gets exactly one recommendation, in order, and
        /// its rule matches its approach.
        #[test]
        fn one_recommendation_per_model(
            all in prop::collection::vec((minutes(), 0u64..8_000_000, 0u64..100), 0..6),
        ) {
            let os: Vec<TrafficObservation> = all.into_iter().enumerate().map(|(i, (m, p95, cold))| TrafficObservation {
                model: format!("m{i}"),
                payload_bytes: PayloadStats { p50: p95 / 2, p95, max: p95 },
                cold_starts: cold,
                ..obs(m)
            }).collect();
            let rs = advise(&os, &Thresholds::default(), None).unwrap();
            prop_assert_eq!(rs.len(), os.len());
            for (r, o) in rs.iter().zip(&os) {
                prop_assert_eq!(&r.model, &o.model);
                let expected = match r.rule {
                    Rule::TooShort => Approach::NotEnoughData,
                    Rule::LargePayloads => Approach::Batch,
                    Rule::Sporadic | Rule::Intermittent => Approach::Serverless,
                    Rule::Steady | Rule::Continuous => Approach::Provisioned,
                };
                prop_assert_eq!(r.approach, expected);
                prop_assert!(!r.scheduled_scaling || r.approach == Approach::Provisioned);
                prop_assert!(!r.why.is_empty());
            }
        }

        /// More requests in any minute, or more cold starts, never move a
        /// model from provisioned to serverless; payloads alone decide batch.
        #[test]
        fn thresholds_are_monotonic(
            m in minutes(),
            bumps in prop::collection::vec((0usize..200, 0u64..600), 0..20),
            cold in 0u64..60, more_cold in 0u64..60,
            p95 in 0u64..8_000_000,
        ) {
            let base = TrafficObservation { cold_starts: cold, ..obs(m.clone()) };
            let mut more = m;
            for (i, add) in bumps {
                if let Some(n) = more.get_mut(i) { *n += add; }
            }
            let busier = TrafficObservation { cold_starts: cold + more_cold, ..obs(more) };
            let (a, b) = (one(base.clone(), None), one(busier.clone(), None));
            if a.approach != Approach::NotEnoughData {
                prop_assert!(level(a.approach) <= level(b.approach), "{} -> {}", a.why, b.why);
            }
            let sized = |o: TrafficObservation| TrafficObservation { payload_bytes: PayloadStats { p50: 0, p95, max: p95 }, ..o };
            let (a, b) = (one(sized(base), None), one(sized(busier), None));
            prop_assert_eq!(a.approach == Approach::Batch, b.approach == Approach::Batch);
            if a.approach != Approach::NotEnoughData {
                prop_assert_eq!(a.approach == Approach::Batch, p95 >= Thresholds::default().batch_payload_bytes);
            }
        }
    }
}
