//! The daemon's lifecycle as systemd sees it, through the real binary:
//! validation before binding, READY=1, healthz/readyz, SIGHUP reload that
//! keeps the old config when the new one is invalid, SIGTERM drain; and how
//! a daemon on port 0 reports the addresses it bound (`--bound-file`).
//!
//! Every daemon here listens on 127.0.0.1:0 and is found through its
//! report; its AWS endpoints and probes point at a [`ClosedPort`], so every
//! AWS call fails fast and nothing leaves the machine.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ChildGuard, ClosedPort, http, spawn_guarded, unique, wait_bound, wait_for};
use failoverd::daemon::BoundAddrs;

fn base(dead: &str) -> String {
    format!(
        r#"
[tables]
control = "c"
routing = "r"
witness = "us-east-2"
[timings]
shutdown_grace = "2s"
[[regions]]
name = "us-east-1"
priority = 1
probe_urls = ["{dead}/ping"]
state_machine_arn = "arn:aws:states:us-east-1:111122223333:stateMachine:f"
sagemaker = {{ provisioned = "p" }}
[[regions]]
name = "us-west-2"
priority = 2
probe_urls = ["{dead}/ping"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
sagemaker = {{ provisioned = "p" }}
"#
    )
}

/// A config folder whose daemon listens on `admin` (router on port 0) and
/// reaches AWS at `dead`.
fn setup(admin: &str, dead: &ClosedPort) -> (PathBuf, PathBuf) {
    let d = std::env::temp_dir().join(unique("failoverd-daemon"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("base.toml"), base(&dead.url())).unwrap();
    let f = d.join("us-east-1.toml");
    std::fs::write(&f, region_file(admin, dead)).unwrap();
    (d, f)
}

fn region_file(admin: &str, dead: &ClosedPort) -> String {
    let dead = dead.url();
    format!(
        "region = \"us-east-1\"\n[listen]\nadmin = \"{admin}\"\nrouter = \"127.0.0.1:0\"\n\
         [endpoints]\ndynamodb = \"{dead}\"\nroute53 = \"{dead}\"\nsfn = \"{dead}\"\nsagemaker_runtime = \"{dead}\"\n"
    )
}

fn daemon(config: &Path, bound: &Path, notify: Option<&Path>, log: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_failoverd"));
    c.args(["run", "--log-format", "json", "--bound-file"])
        .arg(bound)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("FAILOVERD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(n) = notify {
        c.env("NOTIFY_SOCKET", n);
    }
    c
}

fn read_log(p: &Path) -> String {
    let mut s = String::new();
    std::fs::File::open(p)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

#[test]
fn invalid_config_exits_78_without_binding() {
    let dead = ClosedPort::new();
    // The admin address the file names is held by this test: a daemon that
    // bound before validating would fail there (exit 70, "cannot bind")
    // instead of exiting 78.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = held.local_addr().unwrap().to_string();
    let (d, f) = setup(&admin, &dead);
    std::fs::write(
        &f,
        format!("{}typo_key = true\n", region_file(&admin, &dead)),
    )
    .unwrap();
    let (log, bound) = (d.join("daemon.log"), d.join("bound.json"));
    let out = daemon(&f, &bound, None, &log).output().unwrap();
    let err = read_log(&log);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("typo_key: unknown key") && err.contains("not starting"),
        "{err}"
    );
    assert!(!err.contains("cannot bind"), "{err}");
    assert!(!bound.exists(), "nothing bound, nothing reported");
}

/// The report in `path`, which must be there already.
fn read_bound(path: &Path) -> BoundAddrs {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()))
}

#[test]
fn notify_ready_serve_reload_and_drain() {
    let dead = ClosedPort::new();
    let (d, f) = setup("127.0.0.1:0", &dead);
    let sock = d.join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (log, bound) = (d.join("daemon.log"), d.join("bound.json"));
    let mut child = spawn_guarded(&mut daemon(&f, &bound, Some(&sock), &log));
    let recv = || {
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).expect("a notification within 20s");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };

    assert_eq!(recv(), "READY=1");
    // The report is written before READY=1: whoever waits for readiness
    // finds the ports.
    let b = read_bound(&bound);
    assert_eq!(b.pid, child.0.id());
    let addr = b.admin.to_string();
    assert_eq!(http("GET", &addr, "/healthz", "").unwrap().0, 200);
    // It cannot reach the control table, so it is alive but not ready, and says why.
    let body = wait_for(
        "readyz to explain the missing quorum",
        Duration::from_secs(20),
        || {
            let (status, body) = http("GET", &addr, "/readyz", "").ok()?;
            (status == 503 && body.contains("\"quorum\"") && body.contains("cannot"))
                .then_some(body)
        },
    );
    assert!(!body.contains("startup"), "startup finished: {body}");
    // The control side runs on a thread of its own, apart from the router's
    // runtime (daemon::spawn_control); Linux shows 15 bytes of a name.
    // It runs daemon::CONTROL_NICE nice steps below the router's threads.
    let threads: Vec<(String, i64)> = std::fs::read_dir(format!("/proc/{}/task", child.0.id()))
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            // proc(5)'s field 19 is nice.
            let nice = common::proc_stat(&dir.join("stat"))?
                .get(16)?
                .parse()
                .ok()?;
            Some((comm.trim().to_string(), nice))
        })
        .collect();
    let control = threads.iter().find(|(name, _)| name == "failoverd-contr");
    let main = threads.iter().find(|(name, _)| name == "failoverd");
    match (control, main) {
        (Some((_, c)), Some((_, m))) => assert_eq!(
            *c,
            (*m + failoverd::daemon::CONTROL_NICE as i64).min(19),
            "the control thread runs below the router's priority: {threads:?}"
        ),
        _ => panic!("a control thread and the main thread: {threads:?}"),
    }
    // The router serves on a thread per core (router.threads unset).
    assert_eq!(
        router_threads(child.0.id()),
        failoverd::http::cores(),
        "{threads:?}"
    );
    assert_eq!(http("POST", &addr, "/readyz", "").unwrap().0, 405);
    assert_eq!(http("GET", &addr, "/nope", "").unwrap().0, 404);
    let startup = read_log(&log);
    assert!(
        startup.contains("failoverd started")
            && startup.contains(&addr)
            && startup.contains(&b.router.to_string())
            && startup.contains(env!("CARGO_PKG_VERSION")),
        "startup line names version and both addresses: {startup}"
    );

    // An invalid file on SIGHUP is rejected and the daemon keeps serving.
    std::fs::write(
        &f,
        format!(
            "{}[timings]\nlease = \"forever\"\n",
            region_file("127.0.0.1:0", &dead)
        ),
    )
    .unwrap();
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    assert!(recv().starts_with("RELOADING=1"));
    assert_eq!(recv(), "READY=1");
    wait_for("the rejection in the log", Duration::from_secs(10), || {
        let l = read_log(&log);
        (l.contains("reload rejected") && l.contains("timings.lease")).then_some(())
    });
    assert_eq!(
        http("GET", &addr, "/healthz", "").unwrap().0,
        200,
        "still serving"
    );

    // A valid file is taken, but for its restart-only settings (here an
    // endpoint override), which are held and reported as pending.
    std::fs::write(
        &f,
        format!(
            "{}s3 = \"{}\"\n[timings]\nlease = \"45s\"\n",
            region_file("127.0.0.1:0", &dead),
            dead.url()
        ),
    )
    .unwrap();
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    assert!(recv().starts_with("RELOADING=1"));
    assert_eq!(recv(), "READY=1");
    wait_for("the reload in the log", Duration::from_secs(10), || {
        read_log(&log)
            .contains("configuration reloaded")
            .then_some(())
    });
    assert!(
        read_log(&log).contains("restart-only settings changed in the file: not applied"),
        "{}",
        read_log(&log)
    );
    let (_, metrics) = http("GET", &addr, "/metrics", "").unwrap();
    assert!(
        metrics.contains("failoverd_config_restart_pending{setting=\"endpoints\"} 1"),
        "{metrics}"
    );

    // SIGTERM: STOPPING=1, then a clean exit within the grace period.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert_eq!(recv(), "STOPPING=1");
    let status = wait_for("the daemon to exit", Duration::from_secs(10), || {
        child.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0), "{}", read_log(&log));
    assert!(read_log(&log).contains("\"stopped\""));
}

/// Whether `addr` is a failoverd router: it answers an unknown model with
/// the router's 404 (the admin listener has no such path either, but names
/// no model).
fn is_router(addr: SocketAddr) -> bool {
    http(
        "POST",
        &addr.to_string(),
        "/endpoints/no-such-model/invocations",
        "{}",
    )
    .is_ok_and(|(s, body)| s == 404 && body.contains("no-such-model"))
}

fn is_admin(addr: SocketAddr) -> bool {
    http("GET", &addr.to_string(), "/healthz", "").is_ok_and(|(s, _)| s == 200)
}

#[test]
fn bound_file_reports_the_addresses_really_bound() {
    let dead = ClosedPort::new();
    let (d, f) = setup("127.0.0.1:0", &dead);
    let (log, bound) = (d.join("daemon.log"), d.join("bound.json"));
    // A report left by an earlier run is replaced, not trusted.
    std::fs::write(
        &bound,
        r#"{"admin":"127.0.0.1:1","router":"127.0.0.1:2","pid":1}"#,
    )
    .unwrap();
    let mut child = spawn_guarded(&mut daemon(&f, &bound, None, &log));
    let b = wait_bound(&mut child, &bound, &log, Duration::from_secs(30));

    // The exact format: one JSON object on one line, these three keys.
    let text = std::fs::read_to_string(&bound).unwrap();
    assert!(
        text.ends_with('\n') && text.trim_end().lines().count() == 1,
        "{text:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["admin", "pid", "router"], "{text}");
    assert_eq!(v["admin"].as_str(), Some(b.admin.to_string().as_str()));
    assert_eq!(v["router"].as_str(), Some(b.router.to_string().as_str()));

    // Real, distinct, OS-chosen ports, each answered by the right server.
    assert_eq!(b.pid, child.0.id());
    for a in [b.admin, b.router] {
        assert_eq!(a.ip().to_string(), "127.0.0.1", "{text}");
        assert_ne!(a.port(), 0, "{text}");
    }
    assert_ne!(b.admin.port(), b.router.port(), "{text}");
    assert!(is_admin(b.admin), "admin answers /healthz at {}", b.admin);
    assert!(is_router(b.router), "the router answers at {}", b.router);
    assert!(!is_router(b.admin), "the admin address is not the router's");

    // The startup line (logged just after the report) names the same addresses.
    let line = wait_for("the startup line", Duration::from_secs(20), || {
        read_log(&log)
            .lines()
            .find(|l| l.contains("failoverd started"))
            .map(str::to_string)
    });
    assert!(
        line.contains(&format!("\"admin\":\"{}\"", b.admin))
            && line.contains(&format!("\"router\":\"{}\"", b.router)),
        "{line}"
    );

    // Written through a temporary file that is gone: only our files remain.
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["base.toml", "bound.json", "daemon.log", "us-east-1.toml"]
    );
}

#[test]
fn a_bound_file_that_cannot_be_written_stops_the_start() {
    let dead = ClosedPort::new();
    let (d, f) = setup("127.0.0.1:0", &dead);
    let log = d.join("daemon.log");
    let bound = d.join("no-such-folder/bound.json");
    let out = daemon(&f, &bound, None, &log).output().unwrap();
    let err = read_log(&log);
    assert_eq!(out.status.code(), Some(70), "{err}");
    assert!(
        err.contains("cannot write the bound addresses to")
            && err.contains(&bound.display().to_string()),
        "{err}"
    );
}

/// The lab once started a daemon whose admin and router ports were the same
/// "free" port, picked by binding and closing twice. Daemons that bind port
/// 0 themselves and report what they got cannot collide: start many at once
/// and every reported address is distinct and answered by its own server.
#[test]
fn daemons_started_together_on_port_zero_report_distinct_answering_addresses() {
    const N: usize = 12;
    let dead = ClosedPort::new();
    let (d, f) = setup("127.0.0.1:0", &dead);
    let mut children: Vec<(ChildGuard, PathBuf, PathBuf)> = (0..N)
        .map(|i| {
            let (log, bound) = (
                d.join(format!("daemon-{i}.log")),
                d.join(format!("bound-{i}.json")),
            );
            (
                spawn_guarded(&mut daemon(&f, &bound, None, &log)),
                bound,
                log,
            )
        })
        .collect();
    let reports: Vec<BoundAddrs> = children
        .iter_mut()
        .map(|(child, bound, log)| wait_bound(child, bound, log, Duration::from_secs(60)))
        .collect();

    let addrs: Vec<SocketAddr> = reports.iter().flat_map(|b| [b.admin, b.router]).collect();
    let distinct: HashSet<u16> = addrs.iter().map(SocketAddr::port).collect();
    assert_eq!(distinct.len(), 2 * N, "a port reported twice: {reports:#?}");
    assert!(!distinct.contains(&0), "{reports:#?}");
    for b in &reports {
        assert!(
            is_admin(b.admin),
            "admin answers at {}: {reports:#?}",
            b.admin
        );
        assert!(
            is_router(b.router),
            "router answers at {}: {reports:#?}",
            b.router
        );
    }

    // Stop them all at once rather than one drain after another.
    for (child, _, _) in &children {
        unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    }
    for (child, _, log) in &mut children {
        let status = wait_for("a daemon to stop", Duration::from_secs(20), || {
            child.0.try_wait().unwrap()
        });
        assert_eq!(status.code(), Some(0), "{}", read_log(log));
    }
}

/// The router's threads of process `pid` (named `router-N`).
fn router_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            t.as_ref().is_ok_and(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim().starts_with("router-"))
            })
        })
        .count()
}

/// `router.threads` sets how many threads serve the router's connections.
#[test]
fn the_router_runs_the_threads_it_is_told() {
    let dead = ClosedPort::new();
    let (d, f) = setup("127.0.0.1:0", &dead);
    let (log, bound) = (d.join("daemon.log"), d.join("bound.json"));
    let mut cmd = daemon(&f, &bound, None, &log);
    cmd.env("FAILOVERD__ROUTER__THREADS", "3");
    let child = spawn_guarded(&mut cmd);
    let b = wait_for("the bound file", Duration::from_secs(20), || {
        std::fs::metadata(&bound).ok().map(|_| read_bound(&bound))
    });
    assert_eq!(
        http("GET", &b.admin.to_string(), "/healthz", "").unwrap().0,
        200
    );
    wait_for("three router threads", Duration::from_secs(20), || {
        (router_threads(child.0.id()) == 3).then_some(())
    });
}
