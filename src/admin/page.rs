//! The status page: `GET /` serves one HTML document with its style and
//! script inline and the data embedded (no CDN, no build step, no request
//! to anywhere but this daemon), so it works from a host with no internet
//! and shows everything at first paint; the script then refreshes from
//! `GET /ui/data` every 5 seconds and says so when it cannot.
//!
//! What it shows, all from this daemon: the control record (active, epoch,
//! phase, mode, step, lease), a row per region (priority, the quorum's
//! verdict, this daemon's signals with their streaks and reasons), the
//! health matrix (observer x region, each vote's age on this daemon's
//! clock), pending task tokens, the router's traffic and errors per region
//! and path, the last failovers as an SVG timeline with their figures, and
//! the newest journal entries.
//!
//! The data is rendered by the script with `textContent` only; the one
//! piece of markup the daemon hands over, the timeline SVG, is built by
//! `timeline::svg` with every text escaped. The JSON embedded in the page
//! has `<` written as `\u003c`, so no value can close the script element.
//! The response carries a Content-Security-Policy that allows nothing but
//! this daemon (inline script and style, `connect-src 'self'`): a page that
//! tried to load anything from elsewhere would break in the browser test.

use std::collections::BTreeMap;

use http_body_util::Full;
use hyper::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::AdminState;
use super::journal::{PAGE_MAX_AGE, Snapshot};
use super::timeline::{self, Failover};
use super::traffic::{self, Traffic};
use crate::core::control::Role;
use crate::core::health::Verdict;
use crate::core::mono::Mono;
use crate::core::quorum::{self, Consensus};
use crate::core::tokens::TokenStatus;
use crate::http::{self, HttpResponse};
use crate::ports::store::Event;
use crate::state::RoundStatus;

const TEMPLATE: &str = include_str!("page.html");
/// Failovers drawn on the page (newest first).
pub const FAILOVERS_SHOWN: usize = 5;
/// Journal entries listed on the page.
pub const EVENTS_SHOWN: usize = 40;

/// A token as the page shows it (never the task token itself).
#[derive(Debug, Serialize)]
struct TokenRow<'a> {
    id: &'a str,
    step: &'a str,
    target_region: &'a str,
    status: TokenStatus,
    claimed_by: Option<&'a str>,
    expires_at: u64,
}

#[derive(Debug, Serialize)]
struct SignalRow {
    signal: String,
    verdict: &'static str,
    bad_streak: u32,
    good_streak: u32,
    reason: Option<String>,
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Up => "up",
        Verdict::Down => "down",
    }
}

fn consensus(c: Consensus) -> &'static str {
    match c {
        Consensus::Up => "up",
        Consensus::Down => "down",
        Consensus::Split => "split",
    }
}

/// The reason line of a signal, from the round's samples: `route53 <id>:
/// ...` for `route53:<id>`, `probe <url>: ...` for `probe:<url>`.
fn reason_for(signal: &str, samples: &[String]) -> Option<String> {
    let (kind, what) = signal.split_once(':')?;
    let prefix = format!("{kind} {what}: ");
    samples
        .iter()
        .find_map(|s| s.strip_prefix(&prefix).map(str::to_string))
}

/// Everything the page shows, as JSON (`GET /ui/data`).
pub async fn data(state: &AdminState, now: u64) -> Value {
    // The journal first (a cached read, or a new one that reads the record
    // after the journal), then the records: the record shown is then never
    // older than the journal shown beside it.
    let snap = match &state.ops {
        Some(ops) => Some(ops.journal.get(PAGE_MAX_AGE).await),
        None => None,
    };
    let mut st = state.shared.snapshot();
    let mono = state.clock.mono();
    let role = st.role_at(mono);
    // The record shown: the newest any of this daemon's reads returned (the
    // round's, the journal view's, an operator call's), never only the last
    // round's, which can be a round behind the journal shown beside it.
    let seen = state.shared.meter.newest_record();
    let record_read_at = newest_record(&mut st.record, seen, st.at);
    let (config_regions, priorities) = configured(state, &st);
    let regions = region_rows(&st, &config_regions, &priorities);
    let observers = health_matrix(&st, &config_regions, now);

    let traffic: Traffic = state
        .metrics
        .as_ref()
        .map(|m| traffic::from_exposition(&m.render()))
        .unwrap_or_default();

    let Journal {
        journal,
        tokens,
        failovers,
        svg,
    } = journal_sections(snap.as_deref(), now);

    json!({
        "region": state.region,
        "instance": st.instance,
        "duties": duty_section(state, &st, mono),
        "version": env!("CARGO_PKG_VERSION"),
        "now": now,
        "round": {"n": st.round, "at": st.at, "took_ms": st.took_ms},
        "ready": state.readiness.is_ready(),
        "not_ready": state.readiness.reasons(),
        "role": role,
        "role_kind": role.as_ref().map_or("unknown", Role::kind),
        "record": st.record,
        "record_read_age_ms": record_read_at.map(|at| now.saturating_sub(at)),
        "lease": lease_section(&st, mono),
        "regions": regions,
        "observers": observers,
        "quorum": quorum_section(&st, config_regions.len()),
        "fleet": json!({"fingerprint": st.fingerprint, "drift": st.drift, "restart_pending": state.shared.restart_pending()}),
        "decision": st.decision,
        "tokens": tokens,
        "traffic": traffic,
        "failovers": failovers,
        "timeline_svg": svg,
        "journal": journal,
        "readiness": readiness_section(state, &st, &config_regions, snap.as_deref()),
    })
}

/// Standby readiness (docs/readiness.md): this daemon's own findings,
/// check by check, every region's latest `readiness` journal line, and the
/// matrix region x model: the worst severity of each model's findings in
/// each region (this region's from its own findings, the others' from the
/// cells their latest journal line ends with; `null`: not known).
fn readiness_section(
    state: &AdminState,
    st: &RoundStatus,
    regions: &[String],
    snap: Option<&Snapshot>,
) -> Value {
    use crate::core::standby;
    // The snapshot holds the journal oldest first.
    let latest = match snap.map(|s| &s.events) {
        Some(Ok(page)) => crate::control::standby::latest_lines(page.items.iter().rev()),
        _ => Vec::new(),
    };
    let mine = state.shared.standby();
    let active = st.record.as_ref().map(|r| r.active.as_str());
    let here = state.ops.as_ref().map(|o| o.config().region.clone());
    let mut models: Vec<String> = match &state.ops {
        Some(ops) => ops.config().models.iter().map(|m| m.name.clone()).collect(),
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for r in regions {
        let cells = if Some(r.as_str()) == active {
            None
        } else if here.as_deref() == Some(r.as_str()) && !mine.is_empty() {
            Some(standby::cells(&mine))
        } else {
            latest
                .iter()
                .find(|e| &e.who == r)
                .and_then(|e| standby::cells_of_line(&e.detail))
        };
        if let Some(c) = &cells {
            for m in c.keys() {
                if !models.contains(m) {
                    models.push(m.clone());
                }
            }
        }
        rows.push(json!({
            "region": r,
            "active": Some(r.as_str()) == active,
            "cells": cells.map(|c| c.into_iter().map(|(m, s)| (m, s.as_str())).collect::<BTreeMap<_, _>>()),
        }));
    }
    json!({
        "mine": mine,
        "regions": latest,
        "matrix": {"models": models, "rows": rows},
    })
}

/// The regions shown (configured, else tracked) and their configured priorities.
fn configured(state: &AdminState, st: &RoundStatus) -> (Vec<String>, BTreeMap<String, u32>) {
    match &state.ops {
        Some(ops) => {
            let cfg = ops.config();
            (
                cfg.regions.iter().map(|r| r.name.clone()).collect(),
                cfg.regions
                    .iter()
                    .map(|r| (r.name.clone(), r.priority))
                    .collect(),
            )
        }
        None => (st.trackers.keys().cloned().collect(), BTreeMap::new()),
    }
}

/// A row per region: priority, active, the quorum's verdict, this daemon's signals.
fn region_rows(
    st: &RoundStatus,
    config_regions: &[String],
    priorities: &BTreeMap<String, u32>,
) -> Vec<Value> {
    let tally = st.tally.as_ref();
    let active = st.record.as_ref().map(|r| r.active.as_str());
    config_regions
        .iter()
        .map(|name| {
            let samples = st.samples.get(name).cloned().unwrap_or_default();
            let signals: Vec<SignalRow> = st
                .signals
                .get(name)
                .map(|m| {
                    m.iter()
                        .map(|(sig, t)| SignalRow {
                            signal: sig.clone(),
                            verdict: verdict(t.verdict),
                            bad_streak: t.bad_streak,
                            good_streak: t.good_streak,
                            reason: reason_for(sig, &samples),
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "name": name,
                "priority": priorities.get(name),
                "active": active == Some(name.as_str()),
                "quorum": tally.filter(|t| t.no_quorum.is_none()).and_then(|t| t.regions.get(name)).map(|c| consensus(*c)),
                "signals": signals,
            })
        })
        .collect()
}

/// The health matrix: per observer region, its standing vote's age (the
/// freshest of its daemons', on this daemon's clock) and view, and its
/// daemons (`quorum::daemons_of`: a region with one of two daemons silent
/// is degraded, not down).
fn health_matrix(st: &RoundStatus, config_regions: &[String], now: u64) -> Vec<Value> {
    config_regions
        .iter()
        .map(|obs| {
            let vote = st
                .votes
                .iter()
                .filter(|v| &v.observer == obs)
                .max_by_key(|v| v.at);
            let age = vote.map(|v| now.saturating_sub(v.at));
            let daemons = quorum::daemons_of(obs, &st.votes, now, st.vote_freshness_ms);
            json!({
                "observer": obs,
                "instance": vote.and_then(|v| v.instance.clone()),
                "age_ms": age,
                "stale": age.is_none_or(|a| a > st.vote_freshness_ms),
                "view": vote.map(|v| v.view.iter().map(|(r, x)| (r.clone(), verdict(*x))).collect::<BTreeMap<_, _>>()).unwrap_or_default(),
                "daemons": daemons,
            })
        })
        .collect()
}

/// The region's active duties (`core::duty`): whether this daemon holds
/// them, and which of the region's daemons did at the last read.
fn duty_section(state: &AdminState, st: &RoundStatus, now: Mono) -> Value {
    let d = state.shared.duty();
    let named = st.record.as_ref().is_some_and(|r| r.active == st.region);
    json!({
        "named": named,
        "held_here": d.holds(now),
        "holder": d.holder,
    })
}

/// The lease: its length, what is left here, the age of the last confirmed read.
fn lease_section(st: &RoundStatus, now: Mono) -> Value {
    let remaining = st
        .record
        .as_ref()
        .filter(|r| r.active == st.region)
        .map(|_| {
            st.lease_ms
                .saturating_sub(st.lease.unconfirmed_ms(now).unwrap_or(u64::MAX))
        });
    json!({
        "lease_ms": st.lease_ms,
        "remaining_ms": remaining,
        "confirmed_age_ms": st.lease.unconfirmed_ms(now),
    })
}

/// The last round's quorum: present or not, fresh observers, how many it needs.
fn quorum_section(st: &RoundStatus, regions: usize) -> Value {
    let tally = st.tally.as_ref();
    json!({
        "present": tally.is_some_and(|t| t.no_quorum.is_none()),
        "fresh": tally.map(|t| t.fresh_observers.clone()).unwrap_or_default(),
        "needed": quorum::majority(regions),
        "no_quorum": tally.and_then(|t| t.no_quorum.clone()),
    })
}

/// What the page shows from the journal view.
struct Journal {
    /// The newest entries, with the read's time, error and truncation.
    journal: Value,
    /// The pending (and claimed) task tokens.
    tokens: Value,
    /// The newest failovers, with their figures.
    failovers: Vec<Value>,
    /// The newest failovers drawn as a timeline.
    svg: String,
}

/// The journal view's sections (placeholders when this process reads no journal).
fn journal_sections(snap: Option<&Snapshot>, now: u64) -> Journal {
    let Some(snap) = snap else {
        return Journal {
            journal: json!({"read_at": null, "error": "this process does not read the journal", "truncated": false, "events": []}),
            tokens: json!({"pending": [], "error": "this process does not read the tokens", "truncated": false}),
            failovers: Vec::new(),
            svg: timeline::svg(&[], None, now),
        };
    };
    let newest: Vec<&Failover> = snap.failovers.iter().rev().take(FAILOVERS_SHOWN).collect();
    let svg = timeline::svg(&newest, None, now);
    let events: Vec<&Event> = snap
        .events
        .as_ref()
        .map(|p| p.items.iter().rev().take(EVENTS_SHOWN).collect())
        .unwrap_or_default();
    let journal = json!({
        "read_at": snap.read_at,
        "error": snap.events.as_ref().err(),
        "truncated": snap.events.as_ref().map(|p| p.truncated).unwrap_or(false),
        "events": events,
    });
    let tokens = token_section(snap);
    let failovers: Vec<Value> = newest
        .iter()
        .map(|f| serde_json::to_value(f).unwrap_or(Value::Null))
        .collect();
    Journal {
        journal,
        tokens,
        failovers,
        svg,
    }
}

/// The pending and claimed task tokens (never a task token itself).
fn token_section(snap: &Snapshot) -> Value {
    let pending: Vec<TokenRow<'_>> = snap
        .tokens
        .as_ref()
        .map(|p| {
            p.items
                .iter()
                .filter(|t| matches!(t.view.status, TokenStatus::Pending | TokenStatus::Claimed))
                .map(|t| TokenRow {
                    id: &t.view.id,
                    step: &t.view.step,
                    target_region: &t.view.target_region,
                    status: t.view.status,
                    claimed_by: t.view.claimed_by.as_deref(),
                    expires_at: t.view.expires_at(),
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "pending": pending,
        "error": snap.tokens.as_ref().err(),
        "truncated": snap.tokens.as_ref().map(|p| p.truncated).unwrap_or(false),
    })
}

/// Replace `round` (the last round's record, read at `round_at` or before)
/// with `seen` when that is newer; returns when the record kept was read.
fn newest_record(
    round: &mut Option<crate::core::control::ControlRecord>,
    seen: Option<crate::metrics::meter::SeenRecord>,
    round_at: u64,
) -> Option<u64> {
    // The meter's own rule decides which is newer.
    match seen {
        Some(s) if round.as_ref().is_none_or(|r| !s.replaced_by(r, round_at)) => {
            let at = s.read_at;
            *round = Some(s.record);
            Some(at)
        }
        _ => round.as_ref().map(|_| round_at),
    }
}

/// JSON safe to embed in a `<script>` element.
fn embeddable(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `GET /`.
pub async fn html(state: &AdminState, now: u64) -> HttpResponse {
    let d = data(state, now).await;
    let body = TEMPLATE
        .replace("__FAILOVERD_REGION__", &timeline::esc(&state.region))
        .replace("__FAILOVERD_DATA__", &embeddable(&d));
    hyper::Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .header("x-content-type-options", "nosniff")
        .header(
            "content-security-policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap_or_else(|e| http::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_json_cannot_close_the_script() {
        let v = json!({"x": "</script><b>&"});
        let s = embeddable(&v);
        assert!(!s.contains("</script>") && !s.contains('<'));
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn the_page_shows_the_newest_record_read_not_the_last_rounds() {
        use crate::core::control::{ControlRecord, Mode, Phase, Step};
        use crate::metrics::meter::{Meter, SeenRecord};
        let rec = |version: u64, active: &str| ControlRecord {
            version,
            incarnation: "i".into(),
            epoch: version,
            active: active.into(),
            mode: Mode::Auto,
            phase: Phase::Steady,
            target: None,
            execution: None,
            initiator: None,
            previous: None,
            changed_by: String::new(),
            changed_at: 0,
            reason: String::new(),
            last_failover_at: None,
            switched_at: None,
            step: Step::Done,
            aborts: 0,
            ungraceful: false,
            old_region_healthy: true,
            forced: false,
            proposal: None,
            state_machine: None,
        };
        // The journal view read version 7 after the round read version 5.
        let m = Meter::new(&[]);
        m.saw_record(&rec(5, "us-east-1"), 1_000);
        m.saw_record(&rec(7, "us-west-2"), 3_000);
        let mut shown = Some(rec(5, "us-east-1"));
        assert_eq!(
            newest_record(&mut shown, m.newest_record(), 1_000),
            Some(3_000)
        );
        assert_eq!(shown.unwrap().active, "us-west-2");
        // Nothing newer seen than the round's own: the round's, with its age.
        let mut shown = Some(rec(5, "us-east-1"));
        let seen = SeenRecord {
            record: rec(4, "us-west-2"),
            read_at: 9_000,
        };
        assert_eq!(newest_record(&mut shown, Some(seen), 1_000), Some(1_000));
        assert_eq!(shown.unwrap().active, "us-east-1");
        let mut none = None;
        assert_eq!(newest_record(&mut none, None, 1_000), None);
    }

    #[test]
    fn signal_reasons_come_from_the_samples() {
        let samples = vec![
            "route53 hc-1: Unhealthy (3 observations, inverted; read by us-east-1)".to_string(),
            "probe http://127.0.0.1:9/ping: connection refused".to_string(),
        ];
        assert_eq!(
            reason_for("route53:hc-1", &samples).as_deref(),
            Some("Unhealthy (3 observations, inverted; read by us-east-1)")
        );
        assert_eq!(
            reason_for("probe:http://127.0.0.1:9/ping", &samples).as_deref(),
            Some("connection refused")
        );
        assert_eq!(reason_for("route53:hc-2", &samples), None);
    }
}
