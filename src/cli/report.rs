//! `failoverd report --epoch N --output FILE...`: the report of one
//! failover, from the journal: a self-contained HTML file (the timeline as
//! SVG, the figures, every journal entry; no script, no external resource)
//! and/or a JSON file with the same content, chosen by each FILE's
//! extension (`.html`/`.htm`, `.json`; `-` writes JSON to stdout).
//!
//! This is the "measured recovery time per failover" of ARC Region switch:
//! detection -> StartExecution -> steady, with who wrote each step. The lab's
//! drill (`chaos/lab.sh drill`) writes the same report with one more
//! milestone, the moment it injected the fault ([`Injection`]).
//!
//! The journal is read newest first and bounded (`--events`, default
//! [`DEFAULT_EVENTS`]); an epoch older than that read is reported as not
//! found with the bound to raise, never as an empty report. Entries expire
//! after `core::plan::ITEM_RETENTION_SECS`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::admin::timeline::{self, Failover, esc, secs};
use crate::config::EnvSource;
use crate::ports::ControlStore;
use crate::ports::clock::rfc3339;
use crate::ports::store::Event;

/// Journal entries read by default.
pub const DEFAULT_EVENTS: usize = 2000;
/// Unstamped entries (verdicts, decisions) kept this long before the
/// failover's first milestone and after its last.
pub const MARGIN_MS: u64 = 10_000;

/// Exit: the epoch is not in the journal read.
pub const EX_NOT_FOUND: i32 = 1;
/// Exit: a bad command line (sysexits.h `EX_USAGE`).
pub const EX_USAGE: i32 = 64;
/// Exit: an output file could not be written (sysexits.h `EX_CANTCREAT`).
pub const EX_CANTCREAT: i32 = 73;

/// A fault injected by a drill, as a milestone before the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Injection {
    /// What was done, e.g. "us-east-1's health check inverted".
    pub label: String,
    pub at: u64,
}

/// Figures counted from the injection (drills only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FromInjection {
    pub to_detection_ms: Option<i64>,
    pub to_start_ms: Option<i64>,
    pub to_steady_ms: Option<i64>,
}

/// One failover's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Unix ms when the report was made.
    pub generated_at: u64,
    pub control_table: String,
    pub epoch: u64,
    pub failover: Failover,
    pub injection: Option<Injection>,
    pub from_injection: Option<FromInjection>,
    /// Every journal entry of the failover (its epoch, and the unstamped
    /// ones around it), oldest first.
    pub events: Vec<Event>,
    /// The journal read was cut at `--events`: older entries were not seen.
    pub journal_truncated: bool,
    pub notes: Vec<String>,
}

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "no failover with epoch {epoch} among the newest {read} journal entries{}",
        if *truncated { " (the journal holds more: raise --events)" } else { "" }
    )]
    NotFound {
        epoch: u64,
        read: usize,
        truncated: bool,
    },
    #[error("cannot read the journal")]
    Journal(#[source] crate::ports::PortError),
    #[error("{}: unknown report format (use .html, .htm or .json, or - for JSON on stdout)", .0.display())]
    Format(PathBuf),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn diff(a: Option<u64>, b: Option<u64>) -> Option<i64> {
    Some(b? as i64 - a? as i64)
}

/// Build the report of `epoch` from journal entries `all` (any order).
pub fn build(
    all: &[Event],
    truncated: bool,
    epoch: u64,
    control_table: &str,
    injection: Option<Injection>,
    now: u64,
) -> Result<Report, ReportError> {
    let failover = timeline::failovers(all)
        .into_iter()
        .find(|f| f.epoch == epoch)
        .ok_or(ReportError::NotFound {
            epoch,
            read: all.len(),
            truncated,
        })?;
    let mut events: Vec<Event> = failover
        .events(all, MARGIN_MS)
        .into_iter()
        .cloned()
        .collect();
    if let Some(inj) = &injection {
        // A drill's entries from the injection on belong to the story even
        // when detection took longer than the margin.
        for e in all {
            if e.epoch.is_none()
                && e.at >= inj.at
                && failover.span().is_some_and(|(a, _)| e.at < a)
                && !events.contains(e)
            {
                events.push(e.clone());
            }
        }
    }
    events.sort_by_key(|e| e.at);
    let from_injection = injection.as_ref().map(|i| FromInjection {
        to_detection_ms: diff(Some(i.at), failover.at("detected")),
        to_start_ms: diff(Some(i.at), failover.at("StartExecution")),
        to_steady_ms: diff(Some(i.at), failover.at("steady")),
    });
    let mut notes = vec![
        "Entries come from several clocks (each daemon's, Step Functions'); a figure between two writers includes their skew.".to_string(),
    ];
    if failover.at("detected").is_none() {
        notes.push(match failover.trigger {
            Some("operator") => "An operator started this failover: there is no detection; figures start at the claim.".into(),
            _ => "No down verdict on the old active region was found before the claim in the journal read.".into(),
        });
    }
    if truncated {
        notes.push("The journal read was cut; entries older than it are not shown.".into());
    }
    Ok(Report {
        generated_at: now,
        control_table: control_table.to_string(),
        epoch,
        failover,
        injection,
        from_injection,
        events,
        journal_truncated: truncated,
        notes,
    })
}

/// The report as self-contained HTML (inline style, inline SVG, no script).
pub fn html(r: &Report) -> String {
    let f = &r.failover;
    let mut shown = f.clone();
    if let Some(i) = &r.injection {
        shown.milestones.insert(
            0,
            timeline::Milestone {
                label: "fault injected",
                at: i.at,
                who: "drill".into(),
            },
        );
    }
    let svg = timeline::svg(&[&shown], Some(&r.events), r.generated_at);
    let t0 = shown.span().map_or(0, |(a, _)| a);
    let mut figures = Vec::new();
    let fig = &f.figures;
    let row = |name: &str, v: Option<i64>| {
        format!(
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(name),
            v.map_or("–".to_string(), secs)
        )
    };
    if let (Some(i), Some(fi)) = (&r.injection, &r.from_injection) {
        figures.push(row(&format!("{} → detection", i.label), fi.to_detection_ms));
        figures.push(row(
            &format!("{} → StartExecution", i.label),
            fi.to_start_ms,
        ));
        figures.push(row(&format!("{} → steady", i.label), fi.to_steady_ms));
    }
    figures.push(row("detection → claim", fig.detection_to_claim_ms));
    figures.push(row("detection → StartExecution", fig.detection_to_start_ms));
    figures.push(row("StartExecution → steady", fig.start_to_steady_ms));
    figures.push(row("detection → steady", fig.detection_to_steady_ms));
    figures.push(row("claim → steady", fig.claim_to_steady_ms));
    let milestones: String = shown
        .milestones
        .iter()
        .map(|m| {
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">+{}</td><td>{}</td></tr>",
                esc(m.label),
                esc(&rfc3339(m.at)),
                esc(&secs(m.at as i64 - t0 as i64)),
                esc(&m.who)
            )
        })
        .collect();
    let events: String = r
        .events
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td class=\"num\">{:+.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&rfc3339(e.at)),
                (e.at as i64 - t0 as i64) as f64 / 1000.0,
                esc(&e.who),
                esc(&e.kind),
                e.epoch.map(|x| x.to_string()).unwrap_or_default(),
                esc(&e.detail)
            )
        })
        .collect();
    let notes: String = r
        .notes
        .iter()
        .map(|n| format!("<li>{}</li>", esc(n)))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>failoverd report: epoch {epoch}</title>
<style>
body {{ font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; margin: 20px; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 8px 0 18px; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; font-size: 13px; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
#events td:first-child, #milestones td:nth-child(2) {{ white-space: nowrap; }}
.muted {{ color: #57606a; }}
</style></head>
<body>
<h1>Failover report: {title}</h1>
<p class="muted">control table {table} · reason: {reason} · claimed by {by} · generated {generated}</p>
<h2>Timeline</h2>
{svg}
<h2>Figures</h2>
<table id="figures"><tbody>{figures}</tbody></table>
<h2>Milestones</h2>
<table id="milestones"><thead><tr><th>milestone</th><th>time</th><th>offset</th><th>by</th></tr></thead><tbody>{milestones}</tbody></table>
<h2>Every journal entry</h2>
<table id="events"><thead><tr><th>time</th><th>offset (s)</th><th>who</th><th>kind</th><th>epoch</th><th>detail</th></tr></thead><tbody>{events}</tbody></table>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"#,
        epoch = r.epoch,
        title = esc(&timeline::title(f)),
        table = esc(&r.control_table),
        reason = esc(f.reason.as_deref().unwrap_or("–")),
        by = esc(f.claimed_by.as_deref().unwrap_or("–")),
        generated = esc(&rfc3339(r.generated_at)),
        figures = figures.concat(),
    )
}

/// Write `r` to each path, in the format its extension names.
pub fn write(r: &Report, paths: &[PathBuf]) -> Result<(), ReportError> {
    for p in paths {
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let is_stdout = p.as_os_str() == "-";
        let body = match ext.as_deref() {
            _ if is_stdout => json_text(r),
            Some("json") => json_text(r),
            Some("html" | "htm") => html(r),
            _ => return Err(ReportError::Format(p.clone())),
        };
        if is_stdout {
            let mut out = std::io::stdout().lock();
            out.write_all(body.as_bytes())
                .map_err(|source| ReportError::Write {
                    path: p.clone(),
                    source,
                })?;
        } else {
            write_atomically(p, body.as_bytes())?;
        }
    }
    Ok(())
}

fn json_text(r: &Report) -> String {
    let mut s =
        serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// Temp file beside `path`, then rename: a reader never sees half a report.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let fail = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
}

/// Read the journal (bounded) and build the report.
pub async fn collect(
    store: &dyn ControlStore,
    control_table: &str,
    epoch: u64,
    events: usize,
    injection: Option<Injection>,
    now: u64,
) -> Result<Report, ReportError> {
    let page = store
        .events(events, now)
        .await
        .map_err(ReportError::Journal)?;
    build(
        &page.items,
        page.truncated,
        epoch,
        control_table,
        injection,
        now,
    )
}

/// `failoverd report`: the exit code.
pub fn run(path: &Path, env: &EnvSource, epoch: u64, outputs: &[PathBuf], events: usize) -> i32 {
    // Refuse a bad file name before reading anything.
    for p in outputs {
        let ok = p.as_os_str() == "-"
            || matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("json" | "html" | "htm")
            );
        if !ok {
            eprintln!("{}", ReportError::Format(p.clone()));
            return EX_USAGE;
        }
    }
    let outputs = outputs.to_vec();
    super::with_clients(path, env, |cfg, ports| async move {
        let now = ports.clock.now_ms();
        match collect(&*ports.store, &cfg.tables.control, epoch, events, None, now).await {
            Ok(r) => match write(&r, &outputs) {
                Ok(()) => {
                    for p in outputs.iter().filter(|p| p.as_os_str() != "-") {
                        eprintln!("wrote {}", p.display());
                    }
                    eprintln!(
                        "{}: {}",
                        timeline::title(&r.failover),
                        timeline::summary(&r.failover)
                    );
                    0
                }
                Err(e) => {
                    eprintln!("{}", crate::error_chain(&e));
                    EX_CANTCREAT
                }
            },
            Err(e @ ReportError::NotFound { .. }) => {
                eprintln!("{e}");
                EX_NOT_FOUND
            }
            Err(e) => {
                eprintln!("{}", crate::error_chain(&e));
                super::ops::EX_UNAVAILABLE
            }
        }
    })
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
            ev(
                10_000,
                "eu-west-1",
                "observed_down",
                None,
                "eu-west-1 sees us-east-1 Down: <probe>",
            ),
            ev(
                12_000,
                "us-west-2",
                "failover_claimed",
                Some(2),
                "us-east-1 -> us-west-2 (automatic): quorum",
            ),
            ev(
                12_300,
                "us-west-2",
                "execution_started",
                Some(2),
                "failover-x-2 running",
            ),
            ev(
                20_000,
                "workflow",
                "workflow_done",
                Some(2),
                "active is now us-west-2",
            ),
            ev(90_000, "us-west-2", "decision", None, "steady"),
        ]
    }

    #[test]
    fn a_drill_report_counts_from_the_injection() {
        let inj = Injection {
            label: "inversion".into(),
            at: 8_000,
        };
        let r = build(&journal(), false, 2, "t", Some(inj), 100_000).unwrap();
        let fi = r.from_injection.clone().unwrap();
        assert_eq!(fi.to_detection_ms, Some(2_000));
        assert_eq!(fi.to_start_ms, Some(4_300));
        assert_eq!(fi.to_steady_ms, Some(12_000));
        assert_eq!(r.events.len(), 4, "the late decision is outside the window");
        let page = html(&r);
        assert!(page.contains("<svg") && page.contains("inversion → StartExecution"));
        assert!(page.contains("&lt;probe&gt;") && !page.contains("<probe>"));
        assert!(!page.contains("<script"), "the report has no script");
        let v: serde_json::Value = serde_json::from_str(&json_text(&r)).unwrap();
        assert_eq!(v["failover"]["figures"]["detection_to_start_ms"], 2300);
        assert_eq!(v["events"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn an_unknown_epoch_says_how_far_it_read() {
        let e = build(&journal(), true, 7, "t", None, 0).unwrap_err();
        assert!(e.to_string().contains("raise --events"), "{e}");
    }
}
