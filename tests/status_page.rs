//! The status page and the failover report, as a person sees them, after a
//! real failover in the lab.
//!
//! us-east-1's health check is inverted; the fleet fails over to
//! us-west-2. Then headless Chromium (Debian's) loads `GET /` from
//! us-west-2's daemon, runs its scripts for 12 s of virtual time (the page
//! refreshes itself every 5 s from `/ui/data`), and the rendered DOM must
//! show what a person would look for: us-west-2 as the active region, a row
//! per region, the health matrix, and the timeline with the failover's lane
//! and figures; the page must also have refreshed itself. A screenshot is
//! kept in the lab's run folder and under `target/tmp/` (CI's artifact).
//!
//! `failoverd report --epoch 2` then writes the failover's report as HTML
//! and JSON; the JSON must hold the figures and every step's journal entry.
//! `/metrics` must count the failover and carry its figures.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;
mod opstools;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::lab::{Lab, REGIONS};
use common::wait_for;
use failoverd::core::control::Phase;
use failoverd::ports::ControlStore;
use opstools::{dump_dom, sample, screenshot, text_of_id};

/// Where artifacts go: the lab's run folder, and a stable copy for CI.
fn artifact_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn status_page_and_report_show_a_real_failover() {
    let lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    wait_for("us-east-1 active", Duration::from_secs(60), || {
        Lab::rt()
            .block_on(lab.table().read_record())
            .ok()
            .flatten()
            .filter(|r| r.active == "us-east-1" && r.phase == Phase::Steady)
    });

    lab.invert("us-east-1", true);
    let after = wait_for(
        "the failover to us-west-2",
        Duration::from_secs(120),
        || {
            Lab::rt()
                .block_on(lab.table().read_record())
                .ok()
                .flatten()
                .filter(|r| r.active == "us-west-2" && r.phase == Phase::Steady)
        },
    );
    let epoch = after.epoch;

    // The daemon's journal view has the completed failover (it re-reads
    // when the record moves).
    lab.wait_admin(
        "us-west-2",
        "/ui/data",
        "us-west-2's page data to show the completed failover",
        Duration::from_secs(60),
        |s, b| {
            s == 200
                && serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| {
                    v["failovers"].as_array().is_some_and(|fs| {
                        fs.iter()
                            .any(|f| f["epoch"] == epoch && f["outcome"] == "completed")
                    })
                })
        },
    );

    // eu-west-1, a standby, has checked itself against the active and
    // journalled it (the page reads the journal).
    lab.wait_admin(
        "us-west-2",
        "/ui/data",
        "us-west-2's page data to list eu-west-1's readiness line",
        Duration::from_secs(60),
        |s, b| {
            s == 200
                && serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| {
                    v["readiness"]["regions"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["who"] == "eu-west-1"))
                })
        },
    );

    // Some inference traffic through us-west-2's router, and a request for
    // a model that does not exist (a client error).
    let router = format!("127.0.0.1:{}", lab.daemon("us-west-2").router);
    for _ in 0..3 {
        let (s, body) = common::http(
            "POST",
            &router,
            "/endpoints/default/invocations",
            r#"{"x":1}"#,
        )
        .unwrap();
        assert_eq!(s, 200, "{body}");
    }
    let (s, _) = common::http("POST", &router, "/endpoints/nope/invocations", "{}").unwrap();
    assert_eq!(s, 404);

    // The page in a real browser.
    let url = format!("http://127.0.0.1:{}/", lab.daemon("us-west-2").admin);
    let profile = lab.dir.join("chromium-profile");
    let t0 = Instant::now();
    let dom = dump_dom(&url, &profile, 12_000);
    let load_ms = t0.elapsed().as_millis();
    std::fs::write(lab.dir.join("status-page.dom.html"), &dom).unwrap();
    println!(
        "chromium loaded, ran and dumped the page in {load_ms} ms ({} bytes of DOM)",
        dom.len()
    );

    assert_eq!(
        text_of_id(&dom, "active-region"),
        Some("us-west-2"),
        "the active region as shown"
    );
    // Whose daemon this is: its region and its instance (issue 24), and,
    // on the active region's daemon, that it holds the region's duties.
    let me = text_of_id(&dom, "region").unwrap_or_default();
    assert!(
        me.starts_with("us-west-2 / ") && me.ends_with("(holds the region's duties)"),
        "whose daemon this is: {me:?}"
    );
    for r in REGIONS {
        assert!(
            dom.contains(&format!("<tr class=\"region-row\" data-region=\"{r}\">")),
            "a row for {r}"
        );
        assert!(
            dom.contains(&format!("data-observer=\"{r}\"")),
            "a health-matrix row for observer {r}"
        );
    }
    assert_eq!(dom.matches("class=\"region-row\"").count(), REGIONS.len());
    // Standby readiness: us-west-2 is active now (nothing to compare), and
    // the standbys' latest journal lines are listed.
    assert!(
        dom.contains("this region is active: nothing to compare with"),
        "the active shows no findings"
    );
    assert!(
        dom.contains("<tr class=\"readiness-region\" data-region=\"eu-west-1\">"),
        "eu-west-1's readiness line"
    );
    // The matrix region x model (issue 26): a row per region, the active's
    // marked so, and eu-west-1's cells (from its journal line) one per
    // model with the worst severity of that model's findings.
    for r in REGIONS {
        assert!(
            dom.contains(&format!(
                "<tr class=\"readiness-matrix-row\" data-region=\"{r}\">"
            )),
            "a matrix row for {r}"
        );
    }
    let matrix_row = |r: &str| -> String {
        let start = dom
            .find(&format!(
                "<tr class=\"readiness-matrix-row\" data-region=\"{r}\">"
            ))
            .unwrap();
        let end = start + dom[start..].find("</tr>").unwrap();
        dom[start..end].to_string()
    };
    let west = matrix_row("us-west-2");
    assert!(
        west.contains("data-model=\"default\" data-severity=\"active\""),
        "the active region's row: {west}"
    );
    let eu = matrix_row("eu-west-1");
    for m in ["default", "chat"] {
        assert!(
            ["ok", "info", "unknown", "warning", "critical"]
                .iter()
                .any(|s| eu.contains(&format!("data-model=\"{m}\" data-severity=\"{s}\""))),
            "eu-west-1's cell for {m}: {eu}"
        );
    }
    assert!(
        dom.contains("<svg") && dom.contains("class=\"timeline\""),
        "the timeline SVG"
    );
    assert!(
        dom.contains(&format!(
            "class=\"lane\" data-epoch=\"{epoch}\" data-outcome=\"completed\""
        )),
        "the failover's lane"
    );
    assert!(
        dom.contains("data-label=\"StartExecution\""),
        "the StartExecution milestone"
    );
    assert!(dom.contains("detection → StartExecution"), "the figures");
    // The router's table: the provisioned path in us-west-2 served 3.
    let traffic = dom
        .split("id=\"traffic\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the traffic table");
    assert!(
        traffic.contains(
            "<td>us-west-2</td><td>provisioned</td><td class=\"num\">3</td><td class=\"num\">3</td>"
        ),
        "3 requests served on provisioned in us-west-2: {traffic}"
    );
    assert!(
        traffic.contains("<td>other</td><td>none</td><td class=\"num\">1</td><td class=\"num\">0</td><td class=\"num\">1</td>"),
        "the unknown model as a client error: {traffic}"
    );
    let refreshed: u32 = dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("the refresh counter");
    assert!(
        refreshed >= 1,
        "the page refreshed itself from /ui/data ({refreshed} times)"
    );
    assert!(!dom.contains("<div>cannot refresh"), "no refresh failed");

    let png = lab.dir.join("status-page.png");
    let t0 = Instant::now();
    screenshot(&url, &lab.dir.join("chromium-shot"), &png, 3_000);
    println!(
        "screenshot in {} ms: {}",
        t0.elapsed().as_millis(),
        png.display()
    );
    std::fs::copy(&png, artifact_dir().join("status-page.png")).unwrap();

    // The report.
    let html = lab.dir.join("report.html");
    let json = lab.dir.join("report.json");
    let out = lab.cli(&[
        "report",
        "--epoch",
        &epoch.to_string(),
        "--output",
        html.to_str().unwrap(),
        "--output",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let f = &report["failover"];
    assert_eq!(f["epoch"], epoch);
    assert_eq!(
        (f["from"].as_str(), f["to"].as_str()),
        (Some("us-east-1"), Some("us-west-2"))
    );
    assert_eq!(f["trigger"], "automatic");
    assert_eq!(f["outcome"], "completed");
    for fig in [
        "detection_to_start_ms",
        "start_to_steady_ms",
        "detection_to_steady_ms",
    ] {
        assert!(
            f["figures"][fig].as_i64().is_some(),
            "{fig}: {}",
            f["figures"]
        );
    }
    let kinds: Vec<&str> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in [
        "observed_down",
        "failover_claimed",
        "execution_started",
        "workflow_started",
        "token_done",
        "workflow_done",
    ] {
        assert!(kinds.contains(&k), "the report has {k}: {kinds:?}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("detection → StartExecution"));
    std::fs::copy(&html, artifact_dir().join("report.html")).unwrap();
    screenshot(
        &format!("file://{}", html.display()),
        &lab.dir.join("chromium-report"),
        &artifact_dir().join("report.png"),
        1_000,
    );
    // An epoch that is not there is an error, not an empty report.
    let out = lab.cli(&["report", "--epoch", "99", "--output", "-"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no failover with epoch 99"));

    // /metrics counts the failover and carries its figures.
    let (_, metrics) = lab.wait_admin(
        "us-west-2",
        "/metrics",
        "the last failover's figures in /metrics",
        Duration::from_secs(30),
        |s, b| {
            s == 200 && b.contains("failoverd_last_failover_seconds{figure=\"detection_to_start\"}")
        },
    );
    assert_eq!(
        sample(&metrics, "failoverd_last_failover_epoch"),
        Some(epoch as f64)
    );
    assert_eq!(
        sample(&metrics, "failoverd_last_failover_completed"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "failoverd_failovers_total{event=\"started\",trigger=\"automatic\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "failoverd_failovers_total{event=\"completed\",trigger=\"automatic\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "failoverd_control_active_region{region=\"us-west-2\"}"
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            "failoverd_journal_entries_total{kind=\"failover_claimed\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "us-west-2 claimed the epoch and its journal write was counted"
    );
    assert!(
        sample(&metrics, "failoverd_tokens_total{event=\"succeeded\"}").is_some_and(|v| v >= 1.0),
        "us-west-2 answered the prepare token"
    );
    let _ = std::fs::remove_dir_all(&profile);
}
