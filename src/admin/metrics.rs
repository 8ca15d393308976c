//! `GET /metrics`: the router's series, then the control loop's, in the
//! Prometheus text format (0.0.4), every family with `# HELP` and `# TYPE`
//! (checked by `promtool check metrics` in CI, `tests/metrics_lab.rs`).
//!
//! The control loop's series come from three places:
//! - the [`Meter`](crate::metrics::meter::Meter) (counters and histograms fed by the
//!   metering port decorators and by each published round);
//! - the last round ([`RoundStatus`]): gauges for the record, the lease, the
//!   quorum, each observer's verdicts and vote age, this daemon's signals;
//! - the journal view: the last failover's figures.
//!
//! Label sets are bounded by the configuration: regions, observers (the
//! same regions) and signals (the configured checks and probe URLs). Every
//! enumeration (`role`, `verdict`, `mode`, `phase`, `step`) is written out
//! in full with 0 and 1, so `== 1` selects the current value and a missing
//! series means "not known", never "zero". Families whose value is not
//! known yet (no record read) keep their HELP and TYPE and have no sample.
//!
//! Names carry units (`_seconds`, `_total`); times are seconds as floats.

use std::fmt::Write as _;

use super::AdminState;
use crate::core::control::{Mode, Phase, Role, Step};
use crate::core::health::Verdict;
use crate::core::quorum::{self, Consensus};
use crate::metrics::meter::header;
use crate::state::RoundStatus;

/// Escape a label value (backslash, double quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// `failoverd_role`: one series per role, 1 for the current one, so
/// `sum(failoverd_role{role="active"}) > 1` across regions alerts on two
/// actives.
fn role(out: &mut String, role: Option<&Role>) {
    let current = role.map_or("unknown", Role::kind);
    header(
        out,
        "failoverd_role",
        "gauge",
        "This daemon's role (1 = current): active, standby, stood_down (lease lost), waiting (out the old active's lease), unknown (no record read yet).",
    );
    for r in Role::KINDS.into_iter().chain(["unknown"]) {
        let _ = writeln!(
            out,
            "failoverd_role{{role=\"{r}\"}} {}",
            u8::from(r == current)
        );
    }
}

/// Render everything `/metrics` shows, at `now` (unix ms).
pub fn render(state: &AdminState, now: u64) -> String {
    let mut out = state
        .metrics
        .as_ref()
        .map(|m| m.render())
        .unwrap_or_default();
    let st = state.shared.snapshot();
    role(&mut out, st.role_at(now).as_ref());
    state.shared.meter.render(&mut out);
    let regions: Vec<String> = match &state.ops {
        Some(ops) => ops
            .config()
            .regions
            .iter()
            .map(|r| r.name.clone())
            .collect(),
        None => st.trackers.keys().cloned().collect(),
    };
    round(&mut out, &st, &regions, now, state.readiness.is_ready());
    last_failover(&mut out, state);
    out
}

fn round(out: &mut String, st: &RoundStatus, regions: &[String], now: u64, ready: bool) {
    header(
        out,
        "failoverd_build_info",
        "gauge",
        "Always 1; the version of the running binary.",
    );
    let _ = writeln!(
        out,
        "failoverd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    header(
        out,
        "failoverd_ready",
        "gauge",
        "1 when /readyz answers 200 (started, not draining, sees a quorum), else 0.",
    );
    let _ = writeln!(out, "failoverd_ready {}", u8::from(ready));
    header(
        out,
        "failoverd_rounds_total",
        "counter",
        "Reconcile rounds completed since the daemon started.",
    );
    let _ = writeln!(out, "failoverd_rounds_total {}", st.round);
    header(
        out,
        "failoverd_last_round_timestamp_seconds",
        "gauge",
        "Unix time the last reconcile round started (0: none yet). time() minus this growing past a few poll intervals means the loop is stuck.",
    );
    let _ = writeln!(
        out,
        "failoverd_last_round_timestamp_seconds {}",
        secs(st.at)
    );

    // Quorum.
    let tally = st.tally.as_ref();
    header(
        out,
        "failoverd_quorum_present",
        "gauge",
        "1 when this daemon's last round had a quorum of fresh observers (its own vote among them), else 0.",
    );
    let present = tally.is_some_and(|t| t.no_quorum.is_none());
    let _ = writeln!(out, "failoverd_quorum_present {}", u8::from(present));
    header(
        out,
        "failoverd_quorum_fresh_observers",
        "gauge",
        "Observers whose votes were fresh in the last round.",
    );
    let _ = writeln!(
        out,
        "failoverd_quorum_fresh_observers {}",
        tally.map_or(0, |t| t.fresh_observers.len())
    );
    header(
        out,
        "failoverd_quorum_needed_observers",
        "gauge",
        "Fresh observers a quorum needs (a majority of the configured regions).",
    );
    let _ = writeln!(
        out,
        "failoverd_quorum_needed_observers {}",
        quorum::majority(regions.len())
    );
    header(
        out,
        "failoverd_quorum_verdict",
        "gauge",
        "The quorum's verdict on each region in this daemon's last round (1 = current): up, down, split. All 0 without a quorum.",
    );
    for r in regions {
        let c = tally.and_then(|t| t.regions.get(r));
        for (name, v) in [
            ("up", Consensus::Up),
            ("down", Consensus::Down),
            ("split", Consensus::Split),
        ] {
            let _ = writeln!(
                out,
                "failoverd_quorum_verdict{{region=\"{}\",verdict=\"{name}\"}} {}",
                label(r),
                u8::from(c == Some(&v))
            );
        }
    }

    // Observers.
    header(
        out,
        "failoverd_observer_verdict",
        "gauge",
        "Each observer's verdict on each region, from its latest vote as this daemon read it (1 = current). Check failoverd_vote_age_seconds for whether it still counts.",
    );
    for v in st.votes.iter().filter(|v| regions.contains(&v.observer)) {
        for r in regions {
            let seen = v.view.get(r);
            for (name, verdict) in [("up", Verdict::Up), ("down", Verdict::Down)] {
                let _ = writeln!(
                    out,
                    "failoverd_observer_verdict{{observer=\"{}\",region=\"{}\",verdict=\"{name}\"}} {}",
                    label(&v.observer),
                    label(r),
                    u8::from(seen == Some(&verdict))
                );
            }
        }
    }
    header(
        out,
        "failoverd_vote_age_seconds",
        "gauge",
        "Age of each observer's latest vote on this daemon's clock (since this daemon first read it). Over failoverd_vote_freshness_seconds it no longer counts.",
    );
    for v in st.votes.iter().filter(|v| regions.contains(&v.observer)) {
        let _ = writeln!(
            out,
            "failoverd_vote_age_seconds{{observer=\"{}\"}} {}",
            label(&v.observer),
            secs(now.saturating_sub(v.at))
        );
    }
    header(
        out,
        "failoverd_vote_freshness_seconds",
        "gauge",
        "timings.vote_freshness: older votes do not count.",
    );
    let _ = writeln!(
        out,
        "failoverd_vote_freshness_seconds {}",
        secs(st.vote_freshness_ms)
    );
    header(
        out,
        "failoverd_signal_down",
        "gauge",
        "This daemon's verdict on each of a region's signals (route53:<check id>, probe:<url>): 1 = down, 0 = up.",
    );
    for (region, by_signal) in &st.signals {
        for (signal, t) in by_signal {
            let _ = writeln!(
                out,
                "failoverd_signal_down{{region=\"{}\",signal=\"{}\"}} {}",
                label(region),
                label(signal),
                u8::from(t.verdict == Verdict::Down)
            );
        }
    }

    // The control record, as this daemon last read it.
    let rec = st.record.as_ref();
    header(
        out,
        "failoverd_control_epoch",
        "gauge",
        "The control record's epoch (grows by one per failover).",
    );
    if let Some(r) = rec {
        let _ = writeln!(out, "failoverd_control_epoch {}", r.epoch);
    }
    header(
        out,
        "failoverd_control_version",
        "gauge",
        "The control record's version (grows with every write).",
    );
    if let Some(r) = rec {
        let _ = writeln!(out, "failoverd_control_version {}", r.version);
    }
    header(
        out,
        "failoverd_control_active_region",
        "gauge",
        "1 for the region the control record names active, 0 for the others.",
    );
    if let Some(r) = rec {
        for region in regions {
            let _ = writeln!(
                out,
                "failoverd_control_active_region{{region=\"{}\"}} {}",
                label(region),
                u8::from(*region == r.active)
            );
        }
    }
    header(
        out,
        "failoverd_control_mode",
        "gauge",
        "The control record's mode (1 = current): auto, paused.",
    );
    if let Some(r) = rec {
        for (name, m) in [("auto", Mode::Auto), ("paused", Mode::Paused)] {
            let _ = writeln!(
                out,
                "failoverd_control_mode{{mode=\"{name}\"}} {}",
                u8::from(r.mode == m)
            );
        }
    }
    header(
        out,
        "failoverd_control_phase",
        "gauge",
        "The control record's phase (1 = current): steady, failing_over.",
    );
    if let Some(r) = rec {
        for (name, p) in [
            ("steady", Phase::Steady),
            ("failing_over", Phase::FailingOver),
        ] {
            let _ = writeln!(
                out,
                "failoverd_control_phase{{phase=\"{name}\"}} {}",
                u8::from(r.phase == p)
            );
        }
    }
    header(
        out,
        "failoverd_control_step",
        "gauge",
        "The last step written to the control record (1 = current): init, claimed, mark, switched, done, aborted.",
    );
    if let Some(r) = rec {
        for s in Step::ALL {
            let _ = writeln!(
                out,
                "failoverd_control_step{{step=\"{}\"}} {}",
                s.as_str(),
                u8::from(r.step == s)
            );
        }
    }
    header(
        out,
        "failoverd_control_record_age_seconds",
        "gauge",
        "Time since this daemon last read (and confirmed) the control record.",
    );
    if st.lease.confirmed_at > 0 {
        let _ = writeln!(
            out,
            "failoverd_control_record_age_seconds {}",
            secs(now.saturating_sub(st.lease.confirmed_at))
        );
    }
    header(
        out,
        "failoverd_control_record_stalled_seconds",
        "gauge",
        "How long the control record has stood at its version, on this daemon's clock.",
    );
    let _ = writeln!(
        out,
        "failoverd_control_record_stalled_seconds {}",
        secs(st.stalled_ms)
    );
    header(
        out,
        "failoverd_failover_in_flight_seconds",
        "gauge",
        "How long the failover in flight has run (since its claim, the claimant's clock); 0 when the record is steady.",
    );
    if let Some(r) = rec {
        let running = match (r.phase, r.last_failover_at) {
            (Phase::FailingOver, Some(at)) => now.saturating_sub(at),
            _ => 0,
        };
        let _ = writeln!(
            out,
            "failoverd_failover_in_flight_seconds {}",
            secs(running)
        );
    }
    header(
        out,
        "failoverd_lease_seconds",
        "gauge",
        "timings.lease: how long the active region may go without confirming the record.",
    );
    let _ = writeln!(out, "failoverd_lease_seconds {}", secs(st.lease_ms));
    header(
        out,
        "failoverd_lease_remaining_seconds",
        "gauge",
        "While the record names this daemon's region active: lease left before it stands down (0 = stood down). 0 on the other regions.",
    );
    if let Some(r) = rec {
        let left = if r.active == st.region {
            st.lease_ms
                .saturating_sub(now.saturating_sub(st.lease.confirmed_at))
        } else {
            0
        };
        let _ = writeln!(out, "failoverd_lease_remaining_seconds {}", secs(left));
    }
}

/// The last failover the journal shows, with its figures.
fn last_failover(out: &mut String, state: &AdminState) {
    let last = state
        .ops
        .as_ref()
        .and_then(|o| o.journal.last())
        .and_then(|snap| snap.failovers.last().cloned());
    header(
        out,
        "failoverd_last_failover_epoch",
        "gauge",
        "Epoch of the last failover in the journal (newest entries read).",
    );
    if let Some(f) = &last {
        let _ = writeln!(out, "failoverd_last_failover_epoch {}", f.epoch);
    }
    header(
        out,
        "failoverd_last_failover_seconds",
        "gauge",
        "The last failover's figures from the journal: detection_to_start (first down verdict to StartExecution), start_to_steady, detection_to_steady, claim_to_steady. A figure that is not known (a manual failover has no detection; one in flight has no end) has no sample.",
    );
    if let Some(f) = &last {
        let fig = &f.figures;
        for (name, v) in [
            ("detection_to_start", fig.detection_to_start_ms),
            ("start_to_steady", fig.start_to_steady_ms),
            ("detection_to_steady", fig.detection_to_steady_ms),
            ("claim_to_steady", fig.claim_to_steady_ms),
        ] {
            if let Some(ms) = v {
                let _ = writeln!(
                    out,
                    "failoverd_last_failover_seconds{{figure=\"{name}\"}} {}",
                    ms as f64 / 1000.0
                );
            }
        }
    }
    header(
        out,
        "failoverd_last_failover_completed",
        "gauge",
        "1 when the last failover in the journal completed (switched), 0 when it aborted or is in flight.",
    );
    if let Some(f) = &last {
        let _ = writeln!(
            out,
            "failoverd_last_failover_completed {}",
            u8::from(f.outcome == super::timeline::Outcome::Completed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
