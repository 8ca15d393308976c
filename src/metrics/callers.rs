//! Requests per caller on `/metrics` (issue 22 item 4), with bounded
//! cardinality: the label set is fixed when the router starts, from the
//! configuration's names (`router.callers` keys and the exact entries of
//! `router.allow`, the first [`TOP_N`] by name, plus `anonymous`); every
//! other caller is counted as `other`. A name added by a reload is
//! `other` until the next restart. Counting is an atomic add after a
//! binary search; nothing is counted on a router without caller identity
//! or caller limits.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::meter::header;

/// Caller names with a series of their own at most.
pub const TOP_N: usize = 32;

/// What happened to a caller's request at the router's door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerResult {
    Admitted,
    /// Refused: the caller's `max_in_flight`.
    ThrottledConcurrency,
    /// Refused: the caller's `rate`.
    ThrottledRate,
    /// Refused by `router.allow`.
    Denied,
}

impl CallerResult {
    const ALL: [CallerResult; 4] = [
        CallerResult::Admitted,
        CallerResult::ThrottledConcurrency,
        CallerResult::ThrottledRate,
        CallerResult::Denied,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CallerResult::Admitted => "admitted",
            CallerResult::ThrottledConcurrency => "throttled_concurrency",
            CallerResult::ThrottledRate => "throttled_rate",
            CallerResult::Denied => "denied",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// The per-caller counters.
pub struct CallerMetrics {
    /// Sorted; `other` is the index past the end.
    names: Vec<String>,
    /// [caller][result]
    counts: Box<[AtomicU64]>,
}

impl CallerMetrics {
    /// Counters for `names` (deduplicated, the first [`TOP_N`] by name)
    /// plus `anonymous` and `other`.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        names.retain(|n| n != "anonymous" && n != "other");
        names.truncate(TOP_N);
        names.push("anonymous".into());
        names.sort();
        let counts = (0..(names.len() + 1) * CallerResult::ALL.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Self { names, counts }
    }

    /// Count one request of `caller`.
    pub fn count(&self, caller: &str, result: CallerResult) {
        let i = self
            .names
            .binary_search_by(|n| n.as_str().cmp(caller))
            .unwrap_or(self.names.len());
        self.counts[i * CallerResult::ALL.len() + result.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// `failoverd_router_caller_requests_total{caller, result}`.
    pub fn render(&self, out: &mut String) {
        header(
            out,
            "failoverd_router_caller_requests_total",
            "counter",
            "Requests by caller identity (the configured names, anonymous, and other for the rest) and what the router's per-caller checks did: admitted, throttled_concurrency, throttled_rate, denied.",
        );
        let label = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        for (i, name) in self
            .names
            .iter()
            .map(String::as_str)
            .chain(["other"])
            .enumerate()
        {
            for r in CallerResult::ALL {
                let _ = writeln!(
                    out,
                    "failoverd_router_caller_requests_total{{caller=\"{}\",result=\"{}\"}} {}",
                    label(name),
                    r.as_str(),
                    self.counts[i * CallerResult::ALL.len() + r.index()].load(Ordering::Relaxed)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_the_rest_is_other() {
        let m = CallerMetrics::new((0..100).map(|i| format!("c{i:03}")));
        m.count("c000", CallerResult::Admitted);
        m.count("c099", CallerResult::ThrottledRate);
        m.count("stranger", CallerResult::Admitted);
        m.count("anonymous", CallerResult::Denied);
        let mut out = String::new();
        m.render(&mut out);
        let series = out.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(series, (TOP_N + 2) * 4, "{out}");
        assert!(out.contains("caller=\"c000\",result=\"admitted\"} 1"));
        assert!(!out.contains("c099"));
        assert!(out.contains("caller=\"other\",result=\"throttled_rate\"} 1"));
        assert!(out.contains("caller=\"other\",result=\"admitted\"} 1"));
        assert!(out.contains("caller=\"anonymous\",result=\"denied\"} 1"));
    }
}
