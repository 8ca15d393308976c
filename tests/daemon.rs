//! The daemon's lifecycle as systemd sees it, through the real binary:
//! validation before binding, READY=1, healthz/readyz, SIGHUP reload that
//! keeps the old config when the new one is invalid, SIGTERM drain.

mod common;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, http, spawn_guarded, unique, wait_for};

const BASE: &str = r#"
[tables]
control = "c"
routing = "r"
[timings]
shutdown_grace = "2s"
[[regions]]
name = "us-east-1"
priority = 1
probe_urls = ["http://127.0.0.1:9/ping"]
state_machine_arn = "arn:aws:states:us-east-1:111122223333:stateMachine:f"
sagemaker = { provisioned = "p" }
[[regions]]
name = "us-west-2"
priority = 2
probe_urls = ["http://127.0.0.1:9/ping"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
sagemaker = { provisioned = "p" }
"#;

fn setup(admin_port: u16) -> (PathBuf, PathBuf) {
    let d = std::env::temp_dir().join(unique("failoverd-daemon"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("base.toml"), BASE).unwrap();
    let f = d.join("us-east-1.toml");
    std::fs::write(&f, region_file(admin_port)).unwrap();
    (d, f)
}

/// AWS endpoints point at a closed loopback port: every AWS call fails
/// fast and nothing leaves the machine.
fn region_file(admin_port: u16) -> String {
    let dead = "http://127.0.0.1:9";
    format!(
        "region = \"us-east-1\"\n[listen]\nadmin = \"127.0.0.1:{admin_port}\"\nrouter = \"127.0.0.1:0\"\n\
         [endpoints]\ndynamodb = \"{dead}\"\nroute53 = \"{dead}\"\nsfn = \"{dead}\"\nsagemaker_runtime = \"{dead}\"\n"
    )
}

fn daemon(config: &Path, notify: Option<&Path>, log: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_failoverd"));
    c.args(["run", "--log-format", "json", "--config"])
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
    let port = free_port();
    let (d, f) = setup(port);
    std::fs::write(&f, format!("{}typo_key = true\n", region_file(port))).unwrap();
    let log = d.join("daemon.log");
    let out = daemon(&f, None, &log).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = read_log(&log);
    assert!(
        err.contains("typo_key: unknown key") && err.contains("not starting"),
        "{err}"
    );
    // Nothing was bound: the port is still free for us.
    std::net::TcpListener::bind(("127.0.0.1", port))
        .expect("the daemon must not have bound its port");
}

#[test]
fn notify_ready_serve_reload_and_drain() {
    let port = free_port();
    let (d, f) = setup(port);
    let sock = d.join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let log = d.join("daemon.log");
    let mut child = spawn_guarded(&mut daemon(&f, Some(&sock), &log));
    let recv = || {
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).expect("a notification within 20s");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };

    assert_eq!(recv(), "READY=1");
    let addr = format!("127.0.0.1:{port}");
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
    assert_eq!(http("POST", &addr, "/readyz", "").unwrap().0, 405);
    assert_eq!(http("GET", &addr, "/nope", "").unwrap().0, 404);
    let startup = read_log(&log);
    assert!(
        startup.contains("failoverd started")
            && startup.contains(&addr)
            && startup.contains(env!("CARGO_PKG_VERSION")),
        "startup line names version and address: {startup}"
    );

    // An invalid file on SIGHUP is rejected and the daemon keeps serving.
    std::fs::write(
        &f,
        format!("{}[timings]\nlease = \"forever\"\n", region_file(port)),
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

    // A valid file is taken.
    std::fs::write(
        &f,
        format!("{}[timings]\nlease = \"45s\"\n", region_file(port)),
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

    // SIGTERM: STOPPING=1, then a clean exit within the grace period.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert_eq!(recv(), "STOPPING=1");
    let status = wait_for("the daemon to exit", Duration::from_secs(10), || {
        child.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0), "{}", read_log(&log));
    assert!(read_log(&log).contains("\"stopped\""));
}
