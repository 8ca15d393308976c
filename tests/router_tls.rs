//! TLS on the router and admin listeners (issue 22 item 1), against the
//! real binary, with a CA and certificates made by `openssl` in the test:
//!
//! - both listeners speak TLS with the configured certificate; a
//!   plain-HTTP request to them gets no HTTP answer;
//! - SIGHUP after the certificate files are replaced: new connections get
//!   the new certificate, a kept-alive connection made before keeps
//!   working;
//! - curl and boto3 (`verify=` the CA) reach the router over TLS;
//! - a missing or mismatched file fails `check-config` naming file and
//!   key; a plaintext listener off loopback is a warning.
//!
//! Every wait is bounded; nothing asserts a duration.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;
mod router_daemon;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use router_daemon::Daemon;
use router_daemon::pki::{self, Ca};

const CAP: Duration = Duration::from_secs(20);

fn tls_table(key: &str, cert: &Path, pkey: &Path) -> String {
    format!(
        "{key} = {{ cert = \"{}\", key = \"{}\" }}\n",
        cert.display(),
        pkey.display()
    )
}

/// A daemon with TLS on both listeners, from certificates in `dir`
/// (`router.pem`/`router.key`, `admin.pem`/`admin.key`) signed by `ca`.
fn start_tls(dir: &Path, ca: &Ca) -> Daemon {
    let (rc, rk) = ca.server("router");
    let (ac, ak) = ca.server("admin");
    let listen = tls_table("router_tls", &rc, &rk) + &tls_table("admin_tls", &ac, &ak);
    Daemon::start_in(dir.to_path_buf(), &listen, "", None)
}

fn tempdir(prefix: &str) -> PathBuf {
    let d = std::env::temp_dir().join(common::unique(prefix));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const PING: &str = "GET /ping HTTP/1.1\r\nhost: r\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_speak_tls_and_a_sighup_swaps_the_certificate_for_new_connections() {
    let dir = tempdir("failoverd-tls");
    let ca = Ca::new(&dir, "ca");
    let d = start_tls(&dir, &ca);
    let first = pki::der(&dir.join("router.pem"));

    // The router over TLS, with the configured certificate.
    let mut kept = pki::connect(d.router, &ca.pem(), None).await.unwrap();
    assert_eq!(pki::peer_der(&kept), first);
    let (status, _) = pki::request(&mut kept, PING, CAP).await.unwrap();
    assert_eq!(status, 200);
    // The admin listener too, with its own.
    let mut admin = pki::connect(d.admin, &ca.pem(), None).await.unwrap();
    assert_eq!(pki::peer_der(&admin), pki::der(&dir.join("admin.pem")));
    let (status, body) = pki::request(&mut admin, "GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n", CAP)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Plain HTTP gets no HTTP answer from a TLS listener.
    let mut plain = tokio::net::TcpStream::connect(d.router).await.unwrap();
    let (status, text) =
        router_daemon::exchange(&mut plain, PING.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status, 0, "{text:?}");

    // New files in place (same paths), then SIGHUP.
    ca.server("router");
    let second = pki::der(&dir.join("router.pem"));
    assert_ne!(first, second);
    let kill = Command::new("kill")
        .args(["-HUP", &d.child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let addr = d.router;
    let ca_pem = ca.pem();
    common::wait_until("a new connection gets the new certificate", CAP, || {
        let (ca_pem, second) = (ca_pem.clone(), second.clone());
        async move {
            let s = pki::connect(addr, &ca_pem, None).await.ok()?;
            (pki::peer_der(&s) == second).then_some(())
        }
    })
    .await;
    // The connection made before the reload still works, on the old one.
    let (status, _) = pki::request(&mut kept, PING, CAP).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(pki::peer_der(&kept), first);
    let log = d.log();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    assert!(!log.contains("BEGIN"), "no PEM in the log: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_boto3_reach_the_router_over_tls() {
    let dir = tempdir("failoverd-tls-clients");
    let ca = Ca::new(&dir, "ca");
    let d = start_tls(&dir, &ca);
    let url = format!("https://127.0.0.1:{}", d.router.port());

    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca.pem())
        .arg(format!("{url}/ping"))
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA, curl refuses the certificate.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("{url}/ping"))
        .output()
        .unwrap();
    assert!(!out.status.success());

    // boto3 with verify= the CA: the request reaches the router, whose
    // only model has no reachable endpoint (a typed 503, not a TLS error).
    let got = boto3(
        &url,
        &["--model", "m", "--ca-bundle", &ca.pem().to_string_lossy()],
    );
    assert_eq!(got["code"], "ServiceUnavailable", "{got}");
    assert_eq!(got["status"], 503, "{got}");
    // Without it, boto3 fails the handshake.
    let got = boto3(&url, &["--model", "m"]);
    assert_eq!(got["exception"], "SSLError", "{got}");
}

/// tests/boto3/invoke_tls.py against `url` with `args`: its JSON line.
pub fn boto3(url: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(common::venv().join("bin/python"))
        .arg(common::root().join("tests/boto3/invoke_tls.py"))
        .args(["--endpoint-url", url])
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `check-config` on a lab fleet whose region file has `listen` lines.
fn check_config(dir: &Path, listen: &str) -> (Option<i32>, String) {
    std::fs::copy(
        common::root().join("regions/lab/base.toml"),
        dir.join("base.toml"),
    )
    .unwrap();
    let file = dir.join("us-east-1.toml");
    std::fs::write(
        &file,
        // Anonymous callers allowed: the plaintext warning is about the
        // network, whatever the identity rule (tests/router_mtls.rs).
        format!(
            "region = \"us-east-1\"\n[listen]\nadmin = \"127.0.0.1:0\"\n{listen}\n[router]\nallow_anonymous = true\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["check-config", "--config"])
        .arg(&file)
        .env_clear()
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_tls_files_fail_check_config_naming_file_and_key() {
    let dir = tempdir("failoverd-tls-config");
    let ca = Ca::new(&dir, "ca");
    let (cert, key) = ca.server("router");
    let (_, other_key) = ca.server("other");
    let file = dir.join("us-east-1.toml").display().to_string();

    let missing = dir.join("nope.pem");
    let (code, err) = check_config(
        &dir,
        &format!(
            "router = \"127.0.0.1:0\"\n{}",
            tls_table("router_tls", &missing, &key)
        ),
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "{file}: listen.router_tls.cert: {}: cannot read",
            missing.display()
        )),
        "{err}"
    );

    let (code, err) = check_config(
        &dir,
        &format!(
            "router = \"127.0.0.1:0\"\n{}",
            tls_table("router_tls", &cert, &other_key)
        ),
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "{file}: listen.router_tls.key: {}: does not go with the certificate",
            other_key.display()
        )),
        "{err}"
    );

    // A key file for the certificate: no PEM certificate in it.
    let (code, err) = check_config(
        &dir,
        &format!(
            "router = \"127.0.0.1:0\"\n{}",
            tls_table("admin_tls", &key, &key)
        ),
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("listen.admin_tls.cert: ") && err.contains("holds no PEM certificate"),
        "{err}"
    );

    let (code, err) = check_config(
        &dir,
        "router = \"127.0.0.1:0\"\nrouter_tls = { cert = \"x\" }\n",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("listen.router_tls.key: missing"), "{err}");
}

#[test]
fn check_config_warns_about_plaintext_off_loopback_only() {
    let dir = tempdir("failoverd-tls-warn");
    let ca = Ca::new(&dir, "ca");
    let (cert, key) = ca.server("router");
    let file = dir.join("us-east-1.toml").display().to_string();

    let (code, err) = check_config(&dir, "router = \"0.0.0.0:8080\"\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {file}: listen.router: plain HTTP on 0.0.0.0:8080, which is not loopback"
        )),
        "{err}"
    );
    let (code, err) = check_config(&dir, "router = \"127.0.0.1:8080\"\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("plain HTTP"), "{err}");
    let (code, err) = check_config(
        &dir,
        &format!(
            "router = \"0.0.0.0:8080\"\n{}",
            tls_table("router_tls", &cert, &key)
        ),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("plain HTTP"), "{err}");
}
