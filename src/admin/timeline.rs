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

/// A settle entry: `failover-<incarnation>-<epoch>[-c<hex>] settled as <how>: ...`.
fn settled(detail: &str) -> Option<(u64, Outcome)> {
    let (exec, rest) = detail.split_once(" settled as ")?;
    let epoch = crate::core::control::execution_epoch(exec)?;
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
                if f.from.is_none()
                    && let Some((a, b)) = from_to(&e.detail)
                {
                    f.from = Some(a);
                    f.to = Some(b);
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
        if let (Some(from), Some(claim)) = (f.from.clone(), claim)
            && f.trigger == Some("automatic")
        {
            let lo = prev_end.max(claim.saturating_sub(DETECTION_LOOKBACK_MS));
            let window: Vec<&&Event> = sorted
                .iter()
                .filter(|e| e.at >= lo && e.at <= claim)
                .collect();
            let last_up = window
                .iter()
                .filter(|e| e.kind == "observed_up" && seen_region(&e.detail, "Up") == Some(&from))
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
/// A lane's height when its labels fit in the first rows (title, figures,
/// axis at +72, labels above and below it).
const LANE: f64 = 116.0;
/// The axis, from the top of its lane.
const AXIS: f64 = 72.0;
/// Where milestone labels go, relative to the axis: two rows above (the
/// figures line bounds them), then rows below as many as needed; each label
/// takes the first row where it overlaps nothing.
const ABOVE: [f64; 2] = [-9.0, -23.0];
const FIRST_BELOW: f64 = 19.0;
const ROW_STEP: f64 = 14.0;
/// The label font's size (px).
const LABEL_PX: f64 = 11.0;
/// Gap kept between two labels in one row (px).
const LABEL_GAP: f64 = 6.0;

/// The baseline of label row `row`, relative to the axis.
fn row_offset(row: usize) -> f64 {
    match ABOVE.get(row) {
        Some(y) => *y,
        None => FIRST_BELOW + ROW_STEP * (row - ABOVE.len()) as f64,
    }
}

/// An upper bound of `text`'s width at `px` in the page's sans-serif font:
/// advance widths of DejaVu Sans (Debian's default sans, the widest of the
/// common ones) in em, rounded up, so a label is never drawn wider than
/// the room kept for it.
fn text_width(text: &str, px: f64) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match c {
            ' ' | '.' | ',' | ':' | ';' | 'i' | 'j' | 'l' | '|' | '\'' | '!' => 0.33,
            'f' | 't' | 'r' | 'I' | '(' | ')' | '[' | ']' | '-' => 0.45,
            'm' | 'w' | 'M' | 'W' | '→' => 1.0,
            '+' | '=' | '<' | '>' | '~' => 0.84,
            c if c.is_ascii_uppercase() => 0.78,
            c if c.is_ascii_digit() => 0.64,
            c if c.is_ascii() => 0.63,
            _ => 1.0,
        })
        .sum();
    em * px
}

/// Place labels (`(x, width)` in drawing order) into rows: the first row
/// where a label overlaps no other, opening a new row when none has room.
/// Returns each label's row and its horizontal span.
fn place_labels(labels: &[(f64, f64)]) -> Vec<(usize, f64, f64, &'static str)> {
    let mut row_end: Vec<f64> = Vec::new();
    labels
        .iter()
        .map(|&(x, w)| {
            let (anchor, x0, x1) = if x < LEFT + w / 2.0 {
                ("start", x, x + w)
            } else if x > WIDTH - w / 2.0 - 4.0 {
                ("end", x - w, x)
            } else {
                ("middle", x - w / 2.0, x + w / 2.0)
            };
            let row = match row_end.iter().position(|end| end + LABEL_GAP < x0) {
                Some(r) => r,
                None => {
                    row_end.push(f64::MIN);
                    row_end.len() - 1
                }
            };
            row_end[row] = x1;
            (row, x0, x1, anchor)
        })
        .collect()
}

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
    // Lay every lane's labels out first: a lane whose milestones crowd
    // together gets the rows it needs, and the lanes below move down.
    let layouts: Vec<Vec<(usize, f64, f64, &'static str)>> = failovers
        .iter()
        .zip(&spans)
        .map(|(f, (t0, _))| {
            let labels: Vec<(f64, f64)> = f
                .milestones
                .iter()
                .map(|m| {
                    let x = LEFT + (m.at - t0) as f64 * scale;
                    (x, text_width(&milestone_text(m, *t0), LABEL_PX))
                })
                .collect();
            place_labels(&labels)
        })
        .collect();
    let lane_height = |layout: &[(usize, f64, f64, &'static str)]| {
        let rows = layout.iter().map(|l| l.0 + 1).max().unwrap_or(0);
        let lowest = (0..rows).map(row_offset).fold(0.0, f64::max);
        LANE.max(AXIS + lowest + 14.0)
    };
    let height: f64 = layouts.iter().map(|l| lane_height(l)).sum::<f64>() + 10.0;
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" role=\"img\" aria-label=\"failover timeline\" font-family=\"sans-serif\">"
    );
    let mut y0 = 0.0;
    for ((f, (t0, t1)), layout) in failovers.iter().zip(&spans).zip(&layouts) {
        let axis = y0 + AXIS;
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
        for (m, (row, _, _, anchor)) in f.milestones.iter().zip(layout) {
            let x = LEFT + (m.at - t0) as f64 * scale;
            let ly = axis + row_offset(*row);
            let _ = write!(
                o,
                "<g class=\"milestone\" data-label=\"{}\" data-row=\"{row}\"><circle cx=\"{x:.1}\" cy=\"{axis:.1}\" r=\"5\" fill=\"{colour}\"/><text x=\"{x:.1}\" y=\"{ly:.1}\" font-size=\"{LABEL_PX}\" text-anchor=\"{anchor}\" fill=\"#222\">{}</text><title>{} at +{} by {}</title></g>",
                esc(m.label),
                esc(&milestone_text(m, *t0)),
                esc(m.label),
                esc(&secs((m.at - t0) as i64)),
                esc(&m.who)
            );
        }
        o.push_str("</g>");
        y0 += lane_height(layout);
    }
    o.push_str("</svg>");
    o
}

/// A milestone's label: `prepared +0.4s`.
fn milestone_text(m: &Milestone, t0: u64) -> String {
    format!("{} +{:.1}s", m.label, (m.at - t0) as f64 / 1000.0)
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
    fn labels_never_share_a_row_where_they_would_overlap() {
        // Six milestones within 40 px, as a fast failover draws them on a
        // lane scaled to a slow one: every pair in a row keeps the gap.
        let texts = [
            "detected +0.0s",
            "claimed +0.0s",
            "StartExecution +0.1s",
            "prepared +0.2s",
            "switched +0.3s",
            "steady +0.4s",
        ];
        let labels: Vec<(f64, f64)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (300.0 + 8.0 * i as f64, text_width(t, LABEL_PX)))
            .collect();
        let placed = place_labels(&labels);
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[i + 1..] {
                if a.0 == b.0 {
                    assert!(
                        a.2 + LABEL_GAP <= b.1 || b.2 + LABEL_GAP <= a.1,
                        "labels overlap in row {}: {a:?} {b:?}",
                        a.0
                    );
                }
            }
        }
        // More rows than the four there used to be, and none above the
        // figures line.
        assert_eq!(placed.iter().map(|p| p.0).max(), Some(5));
        assert!((0..6).map(row_offset).all(|y| y >= -23.0));
        // The estimate is an upper bound of DejaVu Sans at 11 px (measured
        // in Chromium 156 with DejaVu Sans: "prepared +0.4s" is 85.7 px wide,
        // "StartExecution +0.1s" 116.8).
        assert!(text_width("prepared +0.4s", LABEL_PX) >= 85.7);
        assert!(text_width("StartExecution +0.1s", LABEL_PX) >= 116.8);
    }

    #[test]
    fn a_crowded_lane_grows_and_pushes_the_next_one_down() {
        let mut all = journal();
        all.push(ev(
            12_001,
            "us-west-2",
            "failover_claimed",
            Some(4),
            "a -> b (automatic)",
        ));
        let fs = failovers(&all);
        let refs: Vec<&Failover> = fs.iter().rev().collect();
        let s = svg(&refs, None, 70_000);
        let rows: Vec<usize> = s
            .split("data-row=\"")
            .skip(1)
            .filter_map(|x| x.split('"').next()?.parse().ok())
            .collect();
        assert!(!rows.is_empty());
        let height: f64 = s
            .split("viewBox=\"0 0 960 ")
            .nth(1)
            .and_then(|x| x.split('"').next()?.parse().ok())
            .unwrap();
        assert!(height >= LANE * refs.len() as f64);
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
