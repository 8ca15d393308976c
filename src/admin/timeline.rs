//! Failovers read back from the journal, and drawn: which epoch moved what
//! where, what started it, and the figures an on-call engineer and a drill
//! report want (detection -> StartExecution -> steady).
//!
//! Pure: a list of journal [`Event`]s in, [`Failover`]s and an SVG string
//! out. The status page (`admin::page`), `failoverd report` and the lab's
//! drill report all use it, so the three never disagree on a figure.
//!
//! Where each milestone comes from (all journal entries):
//! - detection: the first `observed_down` of the old active region (by any
//!   observer) after its last `observed_up` before the claim, within
//!   [`DETECTION_LOOKBACK_MS`] and after the previous failover ended. A
//!   manual failover has none; its figures start at the claim.
//! - claim: `failover_claimed` (the daemon or CLI that won the epoch).
//! - StartExecution: `execution_started` (the claimant, after the start).
//! - steady: `workflow_done` (the workflow), or a daemon's `settled ...
//!   as completed`; `workflow_aborted` or `settled ... as aborted` end a
//!   failover that did not switch.
//!
//! The entries come from several clocks (each daemon's, Step Functions'),
//! so a figure between two writers carries their skew; the figures say
//! which writers they span. Under NTP that is milliseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::ports::store::Event;

/// How far before a claim a detection may lie.
pub const DETECTION_LOOKBACK_MS: u64 = 15 * 60 * 1000;

/// How a failover ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    InFlight,
    Completed,
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InFlight => "in flight",
            Outcome::Completed => "completed",
            Outcome::Aborted => "aborted",
        }
    }
}

/// One point on a failover's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Milestone {
    /// `detected`, `claimed`, `StartExecution`, `workflow started`,
    /// `prepared`, `drained`, `steady`, `aborted`.
    pub label: &'static str,
    pub at: u64,
    /// Who wrote the entry.
    pub who: String,
}

/// The figures, in milliseconds; `None` when a milestone is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    pub detection_to_claim_ms: Option<i64>,
    pub detection_to_start_ms: Option<i64>,
    pub start_to_steady_ms: Option<i64>,
    pub detection_to_steady_ms: Option<i64>,
    pub claim_to_steady_ms: Option<i64>,
}

/// One failover (one epoch), as the journal tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failover {
    pub epoch: u64,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `automatic` (a daemon claimed it) or `operator` (`operator:<name>`).
    pub trigger: Option<&'static str>,
    /// Who claimed it (a region, or `operator:<name>`).
    pub claimed_by: Option<String>,
    pub reason: Option<String>,
    pub outcome: Outcome,
    pub milestones: Vec<Milestone>,
    pub figures: Figures,
}

impl Failover {
    /// When a milestone happened.
    pub fn at(&self, label: &str) -> Option<u64> {
        self.milestones
            .iter()
            .find(|m| m.label == label)
            .map(|m| m.at)
    }

    /// The first and last milestone.
    pub fn span(&self) -> Option<(u64, u64)> {
        let first = self.milestones.iter().map(|m| m.at).min()?;
        let last = self.milestones.iter().map(|m| m.at).max()?;
        Some((first, last))
    }

    /// The failover's entries: those stamped with its epoch, and the
    /// unstamped ones (verdicts, decisions, settles) from `margin_ms` before
    /// its first milestone to `margin_ms` after its last.
    pub fn events<'a>(&self, all: &'a [Event], margin_ms: u64) -> Vec<&'a Event> {
        let (lo, hi) = self.span().map_or((u64::MAX, 0), |(a, b)| {
            (a.saturating_sub(margin_ms), b + margin_ms)
        });
        all.iter()
            .filter(|e| match e.epoch {
                Some(ep) => ep == self.epoch,
                None => e.at >= lo && e.at <= hi,
            })
            .collect()
    }
}

/// `A -> B ...` in a claim's or workflow's detail.
fn from_to(detail: &str) -> Option<(String, String)> {
    let (from, rest) = detail.split_once(" -> ")?;
    let to: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let from = from.rsplit(' ').next()?.to_string();
    (!from.is_empty() && !to.is_empty()).then_some((from, to))
}

/// A settle entry: `failover-<incarnation>-<epoch> settled as <how>: ...`.
fn settled(detail: &str) -> Option<(u64, Outcome)> {
    let (exec, rest) = detail.split_once(" settled as ")?;
    let epoch = exec.rsplit('-').next()?.parse().ok()?;
    let how = if rest.starts_with("completed") {
        Outcome::Completed
    } else if rest.starts_with("aborted") {
        Outcome::Aborted
    } else {
        return None;
    };
    Some((epoch, how))
}

/// `<observer> sees <region> Down: ...` -> region.
fn seen_region<'a>(detail: &'a str, verdict: &str) -> Option<&'a str> {
    let (_, rest) = detail.split_once(" sees ")?;
    let (region, tail) = rest.split_once(' ')?;
    tail.starts_with(verdict).then_some(region)
}

/// Record a milestone once (the first entry wins).
fn mark(f: &mut Failover, label: &'static str, e: &Event) {
    if f.at(label).is_none() {
        f.milestones.push(Milestone {
            label,
            at: e.at,
            who: e.who.clone(),
        });
    }
}

fn diff(a: Option<u64>, b: Option<u64>) -> Option<i64> {
    Some(b? as i64 - a? as i64)
}

/// Every failover in `events` (any order), oldest first.
pub fn failovers(events: &[Event]) -> Vec<Failover> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.at);
    let mut by_epoch: BTreeMap<u64, Failover> = BTreeMap::new();
    let blank = |epoch| Failover {
        epoch,
        from: None,
        to: None,
        trigger: None,
        claimed_by: None,
        reason: None,
        outcome: Outcome::InFlight,
        milestones: Vec::new(),
        figures: Figures::default(),
    };
    for e in &sorted {
        let (epoch, kind) = match (e.epoch, e.kind.as_str()) {
            (None, "settled") => match settled(&e.detail) {
                Some((ep, _)) => (ep, "settled"),
                None => continue,
            },
            (Some(ep), k) => (ep, k),
            (None, _) => continue,
        };
        // Epoch 1 is the record's creation, not a failover.
        if epoch < 2 {
            continue;
        }
        let f = by_epoch.entry(epoch).or_insert_with(|| blank(epoch));
        match kind {
            "failover_claimed" => {
                if let Some((a, b)) = from_to(&e.detail) {
                    f.from = Some(a);
                    f.to = Some(b);
                }
                f.reason = e.detail.split_once("): ").map(|(_, r)| r.to_string());
                f.trigger = Some(if e.who.starts_with("operator:") {
                    "operator"
                } else {
                    "automatic"
                });
                f.claimed_by = Some(e.who.clone());
                mark(f, "claimed", e);
            }
            "execution_started" => mark(f, "StartExecution", e),
            "workflow_started" => {
                if f.from.is_none() {
                    if let Some((a, b)) = from_to(&e.detail) {
                        f.from = Some(a);
                        f.to = Some(b);
                    }
                }
                mark(f, "workflow started", e)
            }
            "token_done" if e.detail.contains("#prepare") => mark(f, "prepared", e),
            "token_done" if e.detail.contains("#drain") => mark(f, "drained", e),
            "workflow_done" => {
                f.outcome = Outcome::Completed;
                mark(f, "steady", e);
            }
            "workflow_aborted" => {
                f.outcome = Outcome::Aborted;
                mark(f, "aborted", e);
            }
            "settled" => match settled(&e.detail) {
                Some((_, Outcome::Completed)) if f.outcome == Outcome::InFlight => {
                    f.outcome = Outcome::Completed;
                    mark(f, "steady", e);
                }
                Some((_, Outcome::Aborted)) if f.outcome == Outcome::InFlight => {
                    f.outcome = Outcome::Aborted;
                    mark(f, "aborted", e);
                }
                _ => {}
            },
            _ => {}
        }
    }
    // Detection, and the figures, now that every failover's span is known.
    let mut prev_end = 0u64;
    let mut out: Vec<Failover> = by_epoch.into_values().collect();
    for f in &mut out {
        let claim = f.at("claimed").or_else(|| f.at("workflow started"));
        if let (Some(from), Some(claim)) = (f.from.clone(), claim) {
            if f.trigger == Some("automatic") {
                let lo = prev_end.max(claim.saturating_sub(DETECTION_LOOKBACK_MS));
                let window: Vec<&&Event> = sorted
                    .iter()
                    .filter(|e| e.at >= lo && e.at <= claim)
                    .collect();
                let last_up = window
                    .iter()
                    .filter(|e| {
                        e.kind == "observed_up" && seen_region(&e.detail, "Up") == Some(&from)
                    })
                    .map(|e| e.at)
                    .max()
                    .unwrap_or(lo);
                if let Some(d) = window.iter().find(|e| {
                    e.at >= last_up
                        && e.kind == "observed_down"
                        && seen_region(&e.detail, "Down") == Some(&from)
                }) {
                    f.milestones.push(Milestone {
                        label: "detected",
                        at: d.at,
                        who: d.who.clone(),
                    });
                }
            }
        }
        f.milestones.sort_by_key(|m| m.at);
        let (det, claim, start, steady) = (
            f.at("detected"),
            f.at("claimed"),
            f.at("StartExecution"),
            f.at("steady"),
        );
        f.figures = Figures {
            detection_to_claim_ms: diff(det, claim),
            detection_to_start_ms: diff(det, start),
            start_to_steady_ms: diff(start, steady),
            detection_to_steady_ms: diff(det, steady),
            claim_to_steady_ms: diff(claim, steady),
        };
        if let Some((_, end)) = f.span() {
            prev_end = prev_end.max(end);
        }
    }
    out
}

/// Seconds with millisecond precision: `3.217 s`.
pub fn secs(ms: i64) -> String {
    format!("{:.3} s", ms as f64 / 1000.0)
}

/// Escape text for XML and HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The one-line summary of a failover's figures.
pub fn summary(f: &Failover) -> String {
    let fig = &f.figures;
    let mut parts = Vec::new();
    if let Some(ms) = fig.detection_to_start_ms {
        parts.push(format!("detection → StartExecution {}", secs(ms)));
    } else if let Some(ms) = diff(f.at("claimed"), f.at("StartExecution")) {
        parts.push(format!("claim → StartExecution {}", secs(ms)));
    }
    if let Some(ms) = fig.start_to_steady_ms {
        parts.push(format!("StartExecution → steady {}", secs(ms)));
    }
    if let Some(ms) = fig.detection_to_steady_ms {
        parts.push(format!("detection → steady {}", secs(ms)));
    } else if let Some(ms) = fig.claim_to_steady_ms {
        parts.push(format!("claim → steady {}", secs(ms)));
    }
    if parts.is_empty() {
        "no figures yet".into()
    } else {
        parts.join(" · ")
    }
}

/// A failover's title: `epoch 2: us-east-1 → us-west-2 (automatic), completed`.
pub fn title(f: &Failover) -> String {
    format!(
        "epoch {}: {} → {} ({}), {}",
        f.epoch,
        f.from.as_deref().unwrap_or("?"),
        f.to.as_deref().unwrap_or("?"),
        f.trigger.unwrap_or("trigger not in the journal"),
        f.outcome.as_str()
    )
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 20.0;
const RIGHT: f64 = 40.0;
const LANE: f64 = 116.0;
/// Where milestone labels go, relative to the axis: two rows above, two
/// below; each label takes the first row where it does not overlap.
const LABEL_ROWS: [f64; 4] = [-9.0, 19.0, -23.0, 33.0];
/// Rough width of one character of the 11 px label font.
const CHAR_W: f64 = 6.0;

/// Draw `failovers` (newest first is how the page passes them) as an SVG:
/// one lane each, time from the lane's first milestone, one scale for all
/// lanes so their durations compare at a glance. `events`, when given,
/// adds a tick per journal entry of the failover (the drill report).
/// `now` places an in-flight failover's open end.
pub fn svg(failovers: &[&Failover], events: Option<&[Event]>, now: u64) -> String {
    let mut o = String::new();
    if failovers.is_empty() {
        let _ = write!(
            o,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {WIDTH} 40\" role=\"img\" aria-label=\"failover timeline\"><text x=\"{LEFT}\" y=\"24\" font-size=\"14\" fill=\"#555\">No failover in the journal yet.</text></svg>"
        );
        return o;
    }
    let spans: Vec<(u64, u64)> = failovers
        .iter()
        .map(|f| {
            let (a, b) = f.span().unwrap_or((now, now));
            let b = if f.outcome == Outcome::InFlight {
                b.max(now)
            } else {
                b
            };
            (a, b)
        })
        .collect();
    let longest = spans
        .iter()
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or(1)
        .max(1000) as f64;
    let scale = (WIDTH - LEFT - RIGHT) / longest;
    let height = LANE * failovers.len() as f64 + 10.0;
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" role=\"img\" aria-label=\"failover timeline\" font-family=\"sans-serif\">"
    );
    for (i, (f, (t0, t1))) in failovers.iter().zip(&spans).enumerate() {
        let y0 = i as f64 * LANE;
        let axis = y0 + 72.0;
        let colour = match f.outcome {
            Outcome::Completed => "#1a7f37",
            Outcome::Aborted => "#b35900",
            Outcome::InFlight => "#0b5cad",
        };
        let _ = write!(
            o,
            "<g class=\"lane\" data-epoch=\"{}\" data-outcome=\"{}\"><text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"13\" font-weight=\"bold\" fill=\"{colour}\">{}</text><text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"12\" fill=\"#333\" class=\"figures\">{}</text>",
            f.epoch,
            f.outcome.as_str(),
            y0 + 15.0,
            esc(&title(f)),
            y0 + 31.0,
            esc(&summary(f)),
        );
        let x_end = LEFT + (t1 - t0) as f64 * scale;
        let _ = write!(
            o,
            "<line x1=\"{LEFT}\" y1=\"{axis:.1}\" x2=\"{x_end:.1}\" y2=\"{axis:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>"
        );
        if let Some(all) = events {
            for e in f.events(all, 0) {
                if e.at < *t0 || e.at > *t1 {
                    continue;
                }
                let x = LEFT + (e.at - t0) as f64 * scale;
                let _ = write!(
                    o,
                    "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"><title>+{} {} {}: {}</title></line>",
                    axis - 5.0,
                    axis + 5.0,
                    esc(&secs(e.at as i64 - *t0 as i64)),
                    esc(&e.who),
                    esc(&e.kind),
                    esc(&e.detail)
                );
            }
        }
        let mut row_end = [f64::MIN; LABEL_ROWS.len()];
        for m in &f.milestones {
            let x = LEFT + (m.at - t0) as f64 * scale;
            let text = format!("{} +{:.1}s", m.label, (m.at - t0) as f64 / 1000.0);
            let w = text.chars().count() as f64 * CHAR_W;
            let (anchor, x0, x1) = if x < LEFT + w / 2.0 {
                ("start", x - 4.0, x + w)
            } else if x > WIDTH - w / 2.0 - 4.0 {
                ("end", x - w, x)
            } else {
                ("middle", x - w / 2.0, x + w / 2.0)
            };
            // Close milestones (detection, claim and StartExecution are
            // often within a second) get separate rows rather than
            // overprinted labels.
            let row = (0..LABEL_ROWS.len())
                .find(|r| row_end[*r] + 6.0 < x0)
                .unwrap_or_else(|| {
                    (0..LABEL_ROWS.len())
                        .min_by(|a, b| row_end[*a].total_cmp(&row_end[*b]))
                        .unwrap_or(0)
                });
            row_end[row] = x1;
            let ly = axis + LABEL_ROWS[row];
            let _ = write!(
                o,
                "<g class=\"milestone\" data-label=\"{}\"><circle cx=\"{x:.1}\" cy=\"{axis:.1}\" r=\"5\" fill=\"{colour}\"/><text x=\"{x:.1}\" y=\"{ly:.1}\" font-size=\"11\" text-anchor=\"{anchor}\" fill=\"#222\">{}</text><title>{} at +{} by {}</title></g>",
                esc(m.label),
                esc(&text),
                esc(m.label),
                esc(&secs((m.at - t0) as i64)),
                esc(&m.who)
            );
        }
        o.push_str("</g>");
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: u64, who: &str, kind: &str, epoch: Option<u64>, detail: &str) -> Event {
        Event {
            at,
            who: who.into(),
            kind: kind.into(),
            epoch,
            detail: detail.into(),
        }
    }

    fn journal() -> Vec<Event> {
        vec![
            ev(500, "us-east-1", "initialized", Some(1), "created"),
            // An old flap, before the last recovery: not the detection.
            ev(
                1_000,
                "us-west-2",
                "observed_down",
                None,
                "us-west-2 sees us-east-1 Down: x",
            ),
            ev(
                2_000,
                "us-west-2",
                "observed_up",
                None,
                "us-west-2 sees us-east-1 Up: x",
            ),
            ev(
                10_000,
                "eu-west-1",
                "observed_down",
                None,
                "eu-west-1 sees us-east-1 Down: probe",
            ),
            ev(
                10_400,
                "us-west-2",
                "observed_down",
                None,
                "us-west-2 sees us-east-1 Down: r53",
            ),
            ev(
                12_000,
                "us-west-2",
                "failover_claimed",
                Some(2),
                "us-east-1 -> us-west-2 (automatic): quorum sees us-east-1 down",
            ),
            ev(
                12_300,
                "us-west-2",
                "execution_started",
                Some(2),
                "failover-abc-2 running (arn)",
            ),
            ev(
                12_900,
                "workflow",
                "workflow_started",
                Some(2),
                "us-east-1 -> us-west-2: quorum",
            ),
            ev(
                15_000,
                "us-west-2",
                "token_done",
                Some(2),
                "failover-abc-2#prepare: success sent",
            ),
            ev(
                18_000,
                "us-east-1",
                "token_done",
                Some(2),
                "failover-abc-2#drain: success sent",
            ),
            ev(
                20_000,
                "workflow",
                "workflow_done",
                Some(2),
                "active is now us-west-2",
            ),
            // A manual failback that the workflow aborted, settled too.
            ev(
                60_000,
                "operator:alice",
                "failover_claimed",
                Some(3),
                "us-west-2 -> us-east-1 (manual): failback",
            ),
            ev(
                60_200,
                "operator:alice",
                "execution_started",
                Some(3),
                "failover-abc-3 running",
            ),
            ev(
                61_000,
                "workflow",
                "workflow_aborted",
                Some(3),
                "target us-east-1 did not confirm prepare",
            ),
            ev(
                61_500,
                "us-east-1",
                "settled",
                None,
                "failover-abc-3 settled as completed: late",
            ),
        ]
    }

    #[test]
    fn figures_come_from_the_journal() {
        let fs = failovers(&journal());
        assert_eq!(fs.len(), 2, "{fs:#?}");
        let f = &fs[0];
        assert_eq!(f.epoch, 2);
        assert_eq!(
            (f.from.as_deref(), f.to.as_deref()),
            (Some("us-east-1"), Some("us-west-2"))
        );
        assert_eq!(f.trigger, Some("automatic"));
        assert_eq!(f.outcome, Outcome::Completed);
        assert_eq!(
            f.at("detected"),
            Some(10_000),
            "first down after the last up"
        );
        assert_eq!(f.figures.detection_to_start_ms, Some(2_300));
        assert_eq!(f.figures.start_to_steady_ms, Some(7_700));
        assert_eq!(f.figures.detection_to_steady_ms, Some(10_000));
        assert_eq!(f.at("prepared"), Some(15_000));
        assert_eq!(f.at("drained"), Some(18_000));
        assert_eq!(f.reason.as_deref(), Some("quorum sees us-east-1 down"));

        let g = &fs[1];
        assert_eq!(g.trigger, Some("operator"));
        assert_eq!(
            g.outcome,
            Outcome::Aborted,
            "the workflow's abort wins over a later settle"
        );
        assert_eq!(g.at("detected"), None, "a manual failover has no detection");
        assert_eq!(g.figures.detection_to_start_ms, None);
    }

    #[test]
    fn a_failovers_events_are_its_epoch_and_its_window() {
        let all = journal();
        let fs = failovers(&all);
        let evs = fs[0].events(&all, 1_000);
        assert!(
            evs.iter()
                .any(|e| e.kind == "observed_down" && e.at == 10_000)
        );
        assert!(
            !evs.iter().any(|e| e.at == 1_000),
            "the old flap is outside"
        );
        assert!(!evs.iter().any(|e| e.epoch == Some(3)));
    }

    #[test]
    fn svg_has_a_lane_per_failover_and_escapes_text() {
        let mut all = journal();
        all.push(ev(
            12_001,
            "us-west-2",
            "failover_claimed",
            Some(4),
            "a -> b (automatic): <script>",
        ));
        let fs = failovers(&all);
        let refs: Vec<&Failover> = fs.iter().rev().collect();
        let s = svg(&refs, Some(&all), 70_000);
        assert_eq!(s.matches("class=\"lane\"").count(), 3);
        assert!(s.contains("data-label=\"StartExecution\""));
        assert!(!s.contains("<script>"));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(svg(&[], None, 0).contains("No failover"));
    }
}
