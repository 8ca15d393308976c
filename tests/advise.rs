//! `failoverd advise` end to end: the binary reads observations from a file
//! or a daemon's admin endpoint, prints a table or JSON, and refuses bad
//! input with the right exit code. Servers listen on 127.0.0.1:0 and stop
//! at the end of each test.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use failoverd::core::advise::{PayloadStats, TrafficObservation, TrafficSet};

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(common::unique("failoverd-advise"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const BASE: &str = r#"
region = "us-east-1"
[tables]
control = "c"
routing = "r"
witness = "us-east-2"
[[regions]]
name = "us-east-1"
priority = 1
probe_urls = ["https://a.example/ping"]
state_machine_arn = "arn:aws:states:us-east-1:111122223333:stateMachine:f"
sagemaker = { provisioned = "p" }
[[regions]]
name = "us-west-2"
priority = 2
health_check_ids = ["hc"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
sagemaker = { serverless = "s" }
[listen]
admin = "127.0.0.1:0"
router = "127.0.0.1:0"
"#;

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("us-east-1.toml");
    std::fs::write(&p, BASE).unwrap();
    p
}

/// 2025-01-06 00:00 in New York, a Monday.
const MONDAY_NY: u64 = 1_736_139_600_000;

fn observation(model: &str, per_minute: Vec<u64>, p95: u64) -> TrafficObservation {
    TrafficObservation {
        model: model.into(),
        start_ms: MONDAY_NY,
        per_minute,
        current_minute: 0,
        payload_bytes: PayloadStats {
            p50: p95 / 2,
            p95,
            max: p95,
        },
        cold_starts: 0,
    }
}

fn traffic() -> TrafficSet {
    // A weekday: 700/min from 09:00 to 18:00 New York, 10/min otherwise.
    let day: Vec<u64> = (0..1440)
        .map(|m| if (540..1080).contains(&m) { 700 } else { 10 })
        .collect();
    let mut sporadic = vec![0; 1440];
    sporadic[600] = 3;
    TrafficSet {
        region: "us-east-1".into(),
        collected: true,
        models: vec![
            observation("fraud", day, 2_000),
            observation("chat", sporadic, 800),
            observation("docs", vec![5; 120], 20 * 1024 * 1024),
        ],
    }
}

fn failoverd(args: &[&str], cfg: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .arg("advise")
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn from_a_file_as_a_table_and_as_json() {
    let d = tempdir();
    let cfg = config(&d);
    let f = d.join("traffic.json");
    std::fs::write(&f, serde_json::to_vec(&traffic()).unwrap()).unwrap();

    let out = failoverd(&["--from", f.to_str().unwrap()], &cfg);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |model: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{model} ")))
            .unwrap_or_else(|| panic!("no row for {model}:\n{text}"))
            .to_string()
    };
    assert!(
        text.contains("business hours MON,TUE,WED,THU,FRI 09:00-18:00 (America/New_York)"),
        "{text}"
    );
    assert!(
        row("fraud").contains("provisioned + scheduled scaling"),
        "{text}"
    );
    assert!(
        row("fraud").contains("median minute in business hours 700 requests > 500 req/min"),
        "{text}"
    );
    assert!(row("chat").contains("serverless"), "{text}");
    assert!(
        row("chat").contains("busiest hour 3 requests < 50 req/hour"),
        "{text}"
    );
    assert!(row("docs").contains("batch"), "{text}");
    assert!(row("docs").contains("20.0 MiB"), "{text}");

    let out = failoverd(&["--from", f.to_str().unwrap(), "--output", "json"], &cfg);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["recommendations"].as_array().unwrap();
    let got: Vec<(&str, &str, bool)> = recs
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap(),
                r["approach"].as_str().unwrap(),
                r["scheduled_scaling"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("fraud", "provisioned", true),
            ("chat", "serverless", false),
            ("docs", "batch", false)
        ]
    );
    assert_eq!(recs[0]["numbers"]["judged_per_minute_p50"], 700);
    assert_eq!(v["thresholds"]["steady_per_minute"], 500);
    // From a file there is no live daemon: the bill comes from the settings.
    assert_eq!(v["bill"]["configured"]["basis"], "settings");
    assert!(v["bill"]["measured"].is_null());
}

fn bill_of(cfg: &Path, traffic_file: &Path) -> serde_json::Value {
    let out = failoverd(
        &["--from", traffic_file.to_str().unwrap(), "--output", "json"],
        cfg,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["bill"]["configured"].clone()
}

fn quantity(bill: &serde_json::Value, item: &str) -> Option<f64> {
    bill["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["item"].as_str().unwrap().starts_with(item))
        .map(|l| l["quantity"].as_f64().unwrap())
}

/// The shipped production settings (regions/): three daemons polling every
/// 5 s, an MRSC table with three replicas, three HTTPS fast-interval
/// checks: about $12 a month, most of it the checks.
#[test]
fn the_shipped_production_settings_cost_about_twelve_dollars_a_month() {
    let d = tempdir();
    let f = d.join("traffic.json");
    std::fs::write(&f, serde_json::to_vec(&traffic()).unwrap()).unwrap();
    let prod = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions/us-east-1.toml");
    let out = failoverd(&["--from", f.to_str().unwrap()], &prod);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("control plane's own AWS bill, per month (us-east-1 list prices"),
        "{text}"
    );
    assert!(
        text.contains("3 daemons, a round every 5000 ms, MRSC control table with 3 replicas (us-east-1, us-west-2, us-east-2), 3 Route 53 checks"),
        "{text}"
    );
    assert!(
        text.contains("table writes are charged in every replica region: us-east-1 $1.40, us-west-2 $1.40, us-east-2 $1.40"),
        "{text}"
    );
    let b = bill_of(&prod, &f);
    let total = b["total_usd"].as_f64().unwrap();
    assert!((12.0..12.5).contains(&total), "{total}");
    assert!((b["by_service"]["route53"].as_f64().unwrap() - 7.5).abs() < 1e-9);
    assert_eq!(quantity(&b, "vote writes"), Some(525_600.0 * 3.0 * 3.0));
}

/// The bill follows the configuration: a slower poll halves the round's
/// reads; MREC adds the active's lease confirmation reads; a witness in
/// place of the third replica charges writes in two regions, not three.
#[test]
fn the_bill_follows_the_configuration() {
    let d = tempdir();
    let f = d.join("traffic.json");
    std::fs::write(&f, serde_json::to_vec(&traffic()).unwrap()).unwrap();
    // BASE: two regions, an MRSC table of two replicas and a witness.
    let base = bill_of(&config(&d), &f);
    let with = |extra: &str, name: &str| {
        let p = d.join(name);
        std::fs::write(&p, BASE.replace("[listen]", &format!("{extra}\n[listen]"))).unwrap();
        bill_of(&p, &f)
    };
    let slow = with("[timings]\npoll_interval = \"10s\"", "slow.toml");
    let reads = |b: &serde_json::Value| quantity(b, "reads each round: readings").unwrap();
    assert_eq!(reads(&base), 525_600.0 * 2.0 * 3.0);
    assert_eq!(reads(&slow) * 2.0, reads(&base));
    assert_eq!(base["writes_by_region"].as_array().unwrap().len(), 2);
    assert_eq!(quantity(&base, "MREC"), None);

    let eventual = BASE.replace("witness = \"us-east-2\"\n", "consistency = \"eventual\"\n");
    let p = d.join("eventual.toml");
    std::fs::write(&p, eventual).unwrap();
    let e = bill_of(&p, &f);
    // The active daemon reads the other replica's record every round.
    assert_eq!(quantity(&e, "MREC"), Some(525_600.0));
    assert_eq!(quantity(&e, "vote writes"), quantity(&base, "vote writes"));
}

#[test]
fn bad_input_gets_its_own_exit_code() {
    let d = tempdir();
    let cfg = config(&d);
    let missing = d.join("nope.json");
    let out = failoverd(&["--from", missing.to_str().unwrap()], &cfg);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));

    let bad = d.join("bad.json");
    std::fs::write(
        &bad,
        "{\"region\": \"x\", \"collected\": true, \"models\": [{\"model\": 3}]}",
    )
    .unwrap();
    let out = failoverd(&["--from", bad.to_str().unwrap()], &cfg);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{} is not a traffic set", bad.display())),
        "{}",
        stderr(&out)
    );

    let mut twice = traffic();
    twice.models.push(observation("fraud", vec![1; 60], 1));
    let dup = d.join("dup.json");
    std::fs::write(&dup, serde_json::to_vec(&twice).unwrap()).unwrap();
    let out = failoverd(&["--from", dup.to_str().unwrap()], &cfg);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("model \"fraud\" is observed twice"),
        "{}",
        stderr(&out)
    );

    let badcfg = d.join("us-west-2.toml");
    std::fs::write(
        &badcfg,
        BASE.replace("[listen]", "[cost]\nenvironment = \"prod\"\n[listen]"),
    )
    .unwrap();
    let out = failoverd(&["--from", dup.to_str().unwrap()], &badcfg);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
}

/// An HTTP server answering each path in `routes` (404 otherwise), for
/// `n` requests; returns its address and the request lines it saw.
fn serve_paths(
    routes: Vec<(&'static str, String)>,
    n: usize,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..n {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 4096];
            let got = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..got])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let path = req.split(' ').nth(1).unwrap_or("").to_string();
            let (status, body) = routes
                .iter()
                .find(|(p, _)| *p == path)
                .map_or(("404 Not Found", String::new()), |(_, b)| {
                    ("200 OK", b.clone())
                });
            write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            seen.push(req);
        }
        seen
    });
    (format!("http://{addr}"), h)
}

/// What a lab daemon's meter showed after 100 rounds (poll 1 s there).
const METRICS: &str = "\
# TYPE failoverd_aws_calls_total counter
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"read_record\",region=\"us-east-1\"} 102
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"read_votes\",region=\"us-east-1\"} 100
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"read_readings\",region=\"us-east-1\"} 100
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"pending_tokens\",region=\"us-east-1\"} 100
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"put_vote\",region=\"us-east-1\"} 100
failoverd_aws_calls_total{service=\"dynamodb\",operation=\"put_reading\",region=\"us-east-1\"} 20
failoverd_aws_calls_total{service=\"route53\",operation=\"read_health_check\",region=\"us-east-1\"} 20
failoverd_round_duration_seconds_count 100
";

#[test]
fn from_a_daemons_admin_endpoint() {
    let d = tempdir();
    let cfg = config(&d);
    let (url, server) = serve_paths(
        vec![
            ("/traffic", serde_json::to_string(&traffic()).unwrap()),
            ("/metrics", METRICS.to_string()),
        ],
        2,
    );
    let out = failoverd(&["--admin", &url, "--output", "json"], &cfg);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        server.join().unwrap(),
        ["GET /traffic HTTP/1.1", "GET /metrics HTTP/1.1"]
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["recommendations"].as_array().unwrap().len(), 3);
    // The bill from the measured calls: per round x rounds a month x daemons.
    let m = &v["bill"]["measured"];
    assert_eq!(m["basis"], "measured");
    let line = |item: &str| {
        m["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["item"].as_str().unwrap().starts_with(item))
            .unwrap_or_else(|| panic!("no {item} in {m}"))
            .clone()
    };
    // Two daemons, a round every 5 s: 525,600 rounds a month each.
    let fleet = 525_600.0 * 2.0;
    let reads = line("strongly consistent reads")["quantity"]
        .as_f64()
        .unwrap();
    assert!((reads - 3.02 * fleet).abs() < 1.0, "{reads}");
    // Vote and reading writes, one rWRU in each of the two replicas.
    let writes = line("writes (measured)")["quantity"].as_f64().unwrap();
    assert!((writes - 1.2 * fleet * 2.0).abs() < 1.0, "{writes}");
    assert!(v["bill"]["measured_missing"].is_null());
}

/// A daemon whose /metrics cannot be read still gets its advice and the
/// bill from the configuration; the measured one says why it is missing.
#[test]
fn without_metrics_the_bill_comes_from_the_configuration() {
    let d = tempdir();
    let cfg = config(&d);
    let (url, server) = serve_paths(
        vec![("/traffic", serde_json::to_string(&traffic()).unwrap())],
        2,
    );
    let out = failoverd(&["--admin", &url], &cfg);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    server.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("control plane's own AWS bill, per month"),
        "{text}"
    );
    assert!(
        text.contains("measured: none (cannot read the daemon's calls"),
        "{text}"
    );
    assert!(text.contains("404"), "{text}");
}

/// The real admin handler of a daemon that runs no router: `/traffic` says
/// nothing was collected, and `advise` refuses to advise on nothing (exit 69).
#[test]
fn the_admin_endpoint_says_not_collected_and_advise_exits_69() {
    let d = tempdir();
    let cfg = config(&d);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let state = failoverd::admin::AdminState {
        readiness: failoverd::state::Readiness::starting(),
        region: "us-east-1".into(),
        shared: Arc::new(failoverd::state::Shared::default()),
        metrics: None,
        clock: Arc::new(failoverd::ports::clock::SystemClock),
        ops: None,
    };
    let server = rt.spawn(failoverd::http::serve(
        listener,
        move |req| failoverd::admin::handle(state.clone(), req),
        rx,
        Duration::from_secs(1),
        "admin",
    ));

    let out = failoverd(&["--admin", &format!("http://{addr}")], &cfg);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the daemon in us-east-1 runs no router"),
        "{}",
        stderr(&out)
    );

    tx.send(true).unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
        .expect("admin server stops")
        .unwrap();
}
