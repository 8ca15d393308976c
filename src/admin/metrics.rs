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

use std::fmt::{self, Write as _};

use super::AdminState;
use crate::core::control::{ControlRecord, Mode, Phase, Role, Step};
use crate::core::health::Verdict;
use crate::core::mono::Mono;
use crate::core::quorum::{self, Consensus, Tally, Vote};
use crate::metrics::meter::header;
use crate::state::RoundStatus;

/// Escape a label value (backslash, double quote, newline).
pub use crate::metrics::meter::label;

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

/// This daemon's name among its region's daemons, and whether it holds
/// the region's active duties (`core::duty`).
fn instance(out: &mut String, st: &RoundStatus, holds: bool) {
    header(
        out,
        "failoverd_instance_info",
        "gauge",
        "Always 1: this daemon's region and its name among the region's daemons (configured `instance`, or generated at start).",
    );
    let _ = writeln!(
        out,
        "failoverd_instance_info{{region=\"{}\",instance=\"{}\"}} 1",
        label(&st.region),
        label(st.instance.as_deref().unwrap_or(""))
    );
    header(
        out,
        "failoverd_duties_held",
        "gauge",
        "1 while this daemon holds its region's active duties (its region is named active and, of the region's daemons, it holds the duty item: /active answers 200 only here when the lease is held too), else 0.",
    );
    let _ = writeln!(out, "failoverd_duties_held {}", u8::from(holds));
}

/// Render everything `/metrics` shows, at `now` (unix ms).
pub fn render(state: &AdminState, now: u64) -> String {
    let mut out = state
        .metrics
        .as_ref()
        .map(|m| m.render())
        .unwrap_or_default();
    let st = state.shared.snapshot();
    let mono = state.clock.mono();
    role(&mut out, st.role_at(mono).as_ref());
    instance(&mut out, &st, state.shared.duty().holds(mono));
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
    round(
        &mut out,
        &st,
        &regions,
        (now, mono),
        state.readiness.is_ready(),
    );
    restart_pending(&mut out, &state.shared.restart_pending());
    standby(&mut out, &state.shared.standby());
    last_failover(&mut out, state);
    out
}

/// The standby readiness checks of this region (`core::standby`).
fn standby(out: &mut String, findings: &[crate::core::standby::Finding]) {
    let name = "failoverd_standby_readiness";
    let _ = writeln!(
        out,
        "# HELP {name} Whether this standby region can take over, per model, endpoint and check against the active region (model \"*\": a shared endpoint no model maps): 0 ok, 1 info, 2 warning, 3 critical, -1 unknown (a read failed). No samples while this region is active or before the first check."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for f in findings {
        let _ = writeln!(
            out,
            "{name}{{model=\"{}\",endpoint=\"{}\",check=\"{}\"}} {}",
            label(&f.model),
            label(&f.endpoint),
            f.check.as_str(),
            f.severity.gauge()
        );
    }
}

/// Settings changed in the files that take effect only at a restart.
fn restart_pending(out: &mut String, pending: &[String]) {
    let name = "failoverd_config_restart_pending";
    let _ = writeln!(
        out,
        "# HELP {name} 1 per restart-only setting (listen, tables, endpoints) changed in the files since the daemon started: held by the last reload, applied at the next restart."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for p in pending {
        let _ = writeln!(out, "{name}{{setting=\"{}\"}} 1", label(p));
    }
}

/// What the round's families are written from.
struct Round<'a> {
    st: &'a RoundStatus,
    /// The regions shown, which are also the observers: the configured ones
    /// (the tracked ones when this process has no configuration).
    regions: &'a [String],
    /// Unix ms.
    now: u64,
    /// The same moment on this daemon's monotonic clock (the lease's).
    mono: Mono,
    ready: bool,
}

impl Round<'_> {
    /// The last round's tally, if it had one.
    fn tally(&self) -> Option<&Tally> {
        self.st.tally.as_ref()
    }

    /// The control record as this daemon last read it.
    fn rec(&self) -> Option<&ControlRecord> {
        self.st.record.as_ref()
    }

    /// The standing vote of each configured observer region (its
    /// freshest daemon's: `quorum::per_region`), by region.
    fn votes(&self) -> impl Iterator<Item = &Vote> {
        crate::core::quorum::per_region(self.regions, &self.st.votes).into_iter()
    }
}

/// A sample's value as written: integers as integers, milliseconds as
/// seconds (a float).
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(u64),
    Secs(u64),
}

impl Num {
    /// 1 for true, 0 for false.
    fn flag(b: bool) -> Self {
        Self::Int(u64::from(b))
    }

    /// A count.
    fn count(n: usize) -> Self {
        Self::Int(n as u64)
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Secs(ms) => write!(f, "{}", secs(ms)),
        }
    }
}

/// How a family gets its samples.
enum Samples {
    /// One sample without labels (`name value`), none while the value is
    /// not known.
    One(fn(&Round<'_>) -> Option<Num>),
    /// Labelled samples, written by the function (given the family's name).
    Labelled(fn(&mut String, &str, &Round<'_>)),
}

/// One family of the round's series: name, type, help, and its samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Samples,
}

impl Family {
    /// Write `# HELP`, `# TYPE`, then the samples.
    fn write(&self, out: &mut String, r: &Round<'_>) {
        header(out, self.name, self.kind, self.help);
        match self.samples {
            Samples::One(value) => {
                if let Some(v) = value(r) {
                    let _ = writeln!(out, "{} {v}", self.name);
                }
            }
            Samples::Labelled(write) => write(out, self.name, r),
        }
    }
}

/// The last round's families, in the order written: the daemon and its
/// loop, the quorum, the observers (and this daemon's signals), the control
/// record (and the lease).
fn round(
    out: &mut String,
    st: &RoundStatus,
    regions: &[String],
    (now, mono): (u64, Mono),
    ready: bool,
) {
    let r = Round {
        st,
        regions,
        now,
        mono,
        ready,
    };
    for family in [LOOP, QUORUM, OBSERVERS, FLEET, RECORD]
        .into_iter()
        .flatten()
    {
        family.write(out, &r);
    }
}

/// The daemon and its loop.
const LOOP: &[Family] = &[
    Family {
        name: "failoverd_build_info",
        kind: "gauge",
        help: "Always 1; the version of the running binary.",
        samples: Samples::Labelled(build_info),
    },
    Family {
        name: "failoverd_ready",
        kind: "gauge",
        help: "1 when /readyz answers 200 (started, not draining, sees a quorum), else 0.",
        samples: Samples::One(|r| Some(Num::flag(r.ready))),
    },
    Family {
        name: "failoverd_rounds_total",
        kind: "counter",
        help: "Reconcile rounds completed since the daemon started.",
        samples: Samples::One(|r| Some(Num::Int(r.st.round))),
    },
    Family {
        name: "failoverd_last_round_timestamp_seconds",
        kind: "gauge",
        help: "Unix time the last reconcile round started (0: none yet). time() minus this growing past a few poll intervals means the loop is stuck.",
        samples: Samples::One(|r| Some(Num::Secs(r.st.at))),
    },
];

/// `failoverd_build_info{version="..."} 1`.
fn build_info(out: &mut String, name: &str, _: &Round<'_>) {
    let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
}

/// Quorum.
const QUORUM: &[Family] = &[
    Family {
        name: "failoverd_quorum_present",
        kind: "gauge",
        help: "1 when this daemon's last round had a quorum of fresh observers (its own vote among them), else 0.",
        samples: Samples::One(|r| {
            Some(Num::flag(r.tally().is_some_and(|t| t.no_quorum.is_none())))
        }),
    },
    Family {
        name: "failoverd_quorum_fresh_observers",
        kind: "gauge",
        help: "Observers whose votes were fresh in the last round.",
        samples: Samples::One(|r| {
            Some(Num::count(r.tally().map_or(0, |t| t.fresh_observers.len())))
        }),
    },
    Family {
        name: "failoverd_quorum_needed_observers",
        kind: "gauge",
        help: "Fresh observers a quorum needs (a majority of the configured regions).",
        samples: Samples::One(|r| Some(Num::count(quorum::majority(r.regions.len())))),
    },
    Family {
        name: "failoverd_quorum_verdict",
        kind: "gauge",
        help: "The quorum's verdict on each region in this daemon's last round (1 = current): up, down, split. All 0 without a quorum.",
        samples: Samples::Labelled(quorum_verdict),
    },
];

/// Per region shown, one sample per consensus (up, down, split).
fn quorum_verdict(out: &mut String, name: &str, r: &Round<'_>) {
    for region in r.regions {
        let c = r.tally().and_then(|t| t.regions.get(region));
        for (verdict, v) in [
            ("up", Consensus::Up),
            ("down", Consensus::Down),
            ("split", Consensus::Split),
        ] {
            let _ = writeln!(
                out,
                "{name}{{region=\"{}\",verdict=\"{verdict}\"}} {}",
                label(region),
                u8::from(c == Some(&v))
            );
        }
    }
}

/// Observers, and this daemon's own signals.
const OBSERVERS: &[Family] = &[
    Family {
        name: "failoverd_observer_verdict",
        kind: "gauge",
        help: "Each observer's verdict on each region, from its latest vote as this daemon read it (1 = current). Check failoverd_vote_age_seconds for whether it still counts.",
        samples: Samples::Labelled(observer_verdict),
    },
    Family {
        name: "failoverd_vote_age_seconds",
        kind: "gauge",
        help: "Age of each observer's latest vote on this daemon's clock (since this daemon first read it). Over failoverd_vote_freshness_seconds it no longer counts.",
        samples: Samples::Labelled(vote_age),
    },
    Family {
        name: "failoverd_daemon_vote_age_seconds",
        kind: "gauge",
        help: "Age of each daemon's latest vote on this daemon's clock, per observer region and instance (a region may run several daemons; its freshest vote stands for it). Daemons silent for over a day are not shown.",
        samples: Samples::Labelled(daemon_vote_age),
    },
    Family {
        name: "failoverd_region_daemons",
        kind: "gauge",
        help: "Per observer region, its daemons' state by their votes (1 = current): up (every daemon fresh), degraded (some are), down (none is).",
        samples: Samples::Labelled(region_daemons),
    },
    Family {
        name: "failoverd_vote_freshness_seconds",
        kind: "gauge",
        help: "timings.vote_freshness: older votes do not count.",
        samples: Samples::One(|r| Some(Num::Secs(r.st.vote_freshness_ms))),
    },
    Family {
        name: "failoverd_signal_down",
        kind: "gauge",
        help: "This daemon's verdict on each of a region's signals (route53:<check id>, probe:<url>): 1 = down, 0 = up.",
        samples: Samples::Labelled(signal_down),
    },
];

/// The fleet's configurations compared through the votes (`core::drift`).
const FLEET: &[Family] = &[
    Family {
        name: "failoverd_fleet_config_info",
        kind: "gauge",
        help: "Always 1; this daemon's fleet fingerprint (config::fleet: the settings every daemon must share), as failoverd check-config prints it.",
        samples: Samples::Labelled(fleet_info),
    },
    Family {
        name: "failoverd_fleet_config_drift",
        kind: "gauge",
        help: "1 per fresh observer and group of settings that differ from this daemon's (regions, workflow, tables, timings, policy, approval, tiers, route53). Any sample means automatic failover is withheld.",
        samples: Samples::Labelled(fleet_drift),
    },
];

fn fleet_info(out: &mut String, name: &str, r: &Round<'_>) {
    if !r.st.fingerprint.is_empty() {
        let _ = writeln!(
            out,
            "{name}{{fingerprint=\"{}\"}} 1",
            label(&r.st.fingerprint)
        );
    }
}

fn fleet_drift(out: &mut String, name: &str, r: &Round<'_>) {
    for d in &r.st.drift.differing {
        for g in &d.groups {
            let _ = writeln!(
                out,
                "{name}{{observer=\"{}\",group=\"{}\"}} 1",
                label(&d.observer),
                label(g)
            );
        }
    }
}

/// Per observer and region shown, one sample per verdict (up, down).
fn observer_verdict(out: &mut String, name: &str, r: &Round<'_>) {
    for v in r.votes() {
        for region in r.regions {
            let seen = v.view.get(region);
            for (verdict, x) in [("up", Verdict::Up), ("down", Verdict::Down)] {
                let _ = writeln!(
                    out,
                    "{name}{{observer=\"{}\",region=\"{}\",verdict=\"{verdict}\"}} {}",
                    label(&v.observer),
                    label(region),
                    u8::from(seen == Some(&x))
                );
            }
        }
    }
}

/// Per observer shown, its latest vote's age on this daemon's clock.
fn vote_age(out: &mut String, name: &str, r: &Round<'_>) {
    for v in r.votes() {
        let _ = writeln!(
            out,
            "{name}{{observer=\"{}\"}} {}",
            label(&v.observer),
            secs(r.now.saturating_sub(v.at))
        );
    }
}

/// Per daemon of each observer region, its latest vote's age.
fn daemon_vote_age(out: &mut String, name: &str, r: &Round<'_>) {
    for region in r.regions {
        let d = crate::core::quorum::daemons_of(region, &r.st.votes, r.now, r.st.vote_freshness_ms);
        for x in d.daemons {
            let _ = writeln!(
                out,
                "{name}{{observer=\"{}\",instance=\"{}\"}} {}",
                label(region),
                label(x.instance.as_deref().unwrap_or("")),
                secs(x.age_ms)
            );
        }
    }
}

/// Per observer region, one sample per daemons state.
fn region_daemons(out: &mut String, name: &str, r: &Round<'_>) {
    for region in r.regions {
        let d = crate::core::quorum::daemons_of(region, &r.st.votes, r.now, r.st.vote_freshness_ms);
        for state in ["up", "degraded", "down"] {
            let _ = writeln!(
                out,
                "{name}{{observer=\"{}\",state=\"{state}\"}} {}",
                label(region),
                u8::from(d.state == state)
            );
        }
    }
}

/// Per region and signal this daemon reads, 1 when the signal is down.
fn signal_down(out: &mut String, name: &str, r: &Round<'_>) {
    for (region, by_signal) in &r.st.signals {
        for (signal, t) in by_signal {
            let _ = writeln!(
                out,
                "{name}{{region=\"{}\",signal=\"{}\"}} {}",
                label(region),
                label(signal),
                u8::from(t.verdict == Verdict::Down)
            );
        }
    }
}

/// The control record, as this daemon last read it, and the lease.
const RECORD: &[Family] = &[
    Family {
        name: "failoverd_control_epoch",
        kind: "gauge",
        help: "The control record's epoch (grows by one per failover).",
        samples: Samples::One(|r| r.rec().map(|rec| Num::Int(rec.epoch))),
    },
    Family {
        name: "failoverd_control_version",
        kind: "gauge",
        help: "The control record's version (grows with every write).",
        samples: Samples::One(|r| r.rec().map(|rec| Num::Int(rec.version))),
    },
    Family {
        name: "failoverd_control_active_region",
        kind: "gauge",
        help: "1 for the region the control record names active, 0 for the others.",
        samples: Samples::Labelled(control_active_region),
    },
    Family {
        name: "failoverd_control_mode",
        kind: "gauge",
        help: "The control record's mode (1 = current): auto, paused.",
        samples: Samples::Labelled(control_mode),
    },
    Family {
        name: "failoverd_control_phase",
        kind: "gauge",
        help: "The control record's phase (1 = current): steady, failing_over.",
        samples: Samples::Labelled(control_phase),
    },
    Family {
        name: "failoverd_control_step",
        kind: "gauge",
        help: "The last step written to the control record (1 = current): init, claimed, mark, switched, done, aborted.",
        samples: Samples::Labelled(control_step),
    },
    Family {
        name: "failoverd_control_record_age_seconds",
        kind: "gauge",
        help: "Time since this daemon last read (and confirmed) the control record.",
        samples: Samples::One(|r| r.st.lease.unconfirmed_ms(r.mono).map(Num::Secs)),
    },
    Family {
        name: "failoverd_control_record_stalled_seconds",
        kind: "gauge",
        help: "How long the control record has stood at its version, on this daemon's clock.",
        samples: Samples::One(|r| Some(Num::Secs(r.st.stalled_ms))),
    },
    Family {
        name: "failoverd_failover_in_flight_seconds",
        kind: "gauge",
        help: "How long the failover in flight has run (since its claim, the claimant's clock); 0 when the record is steady.",
        samples: Samples::One(in_flight),
    },
    Family {
        name: "failoverd_lease_seconds",
        kind: "gauge",
        help: "timings.lease: how long the active region may go without confirming the record.",
        samples: Samples::One(|r| Some(Num::Secs(r.st.lease_ms))),
    },
    Family {
        name: "failoverd_lease_remaining_seconds",
        kind: "gauge",
        help: "While the record names this daemon's region active: lease left before it stands down (0 = stood down). 0 on the other regions.",
        samples: Samples::One(lease_remaining),
    },
];

/// Per region shown, 1 for the one the record names active.
fn control_active_region(out: &mut String, name: &str, r: &Round<'_>) {
    if let Some(rec) = r.rec() {
        for region in r.regions {
            let _ = writeln!(
                out,
                "{name}{{region=\"{}\"}} {}",
                label(region),
                u8::from(*region == rec.active)
            );
        }
    }
}

/// One sample per value of a field of the record, 1 for the record's own (none before a read).
fn record_field<T: PartialEq>(
    out: &mut String,
    name: &str,
    r: &Round<'_>,
    key: &str,
    values: impl IntoIterator<Item = (&'static str, T)>,
    field: fn(&ControlRecord) -> T,
) {
    if let Some(rec) = r.rec() {
        for (value, v) in values {
            let _ = writeln!(
                out,
                "{name}{{{key}=\"{value}\"}} {}",
                u8::from(field(rec) == v)
            );
        }
    }
}

/// The record's mode: auto, paused.
fn control_mode(out: &mut String, name: &str, r: &Round<'_>) {
    let values = [("auto", Mode::Auto), ("paused", Mode::Paused)];
    record_field(out, name, r, "mode", values, |rec| rec.mode);
}

/// The record's phase: steady, failing_over.
fn control_phase(out: &mut String, name: &str, r: &Round<'_>) {
    let values = [
        ("steady", Phase::Steady),
        ("failing_over", Phase::FailingOver),
    ];
    record_field(out, name, r, "phase", values, |rec| rec.phase);
}

/// The record's last step, every [`Step`].
fn control_step(out: &mut String, name: &str, r: &Round<'_>) {
    let values = Step::ALL.map(|s| (s.as_str(), s));
    record_field(out, name, r, "step", values, |rec| rec.step);
}

/// How long the failover in flight has run; 0 when the record is steady.
fn in_flight(r: &Round<'_>) -> Option<Num> {
    r.rec().map(|rec| {
        let running = match (rec.phase, rec.last_failover_at) {
            (Phase::FailingOver, Some(at)) => r.now.saturating_sub(at),
            _ => 0,
        };
        Num::Secs(running)
    })
}

/// The lease left while the record names this daemon's region active; 0 elsewhere.
fn lease_remaining(r: &Round<'_>) -> Option<Num> {
    r.rec().map(|rec| {
        let left = if rec.active == r.st.region {
            r.st.lease_ms
                .saturating_sub(r.st.lease.unconfirmed_ms(r.mono).unwrap_or(u64::MAX))
        } else {
            0
        };
        Num::Secs(left)
    })
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
