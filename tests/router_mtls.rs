//! Mutual TLS on the router (issue 22 items 2 and 3), against the real
//! binary, with certificates made by `openssl` in the test:
//!
//! - with `listen.router_tls.client_ca`, a client without a certificate,
//!   or with one from another CA, gets no answer; one with a certificate
//!   from the CA is served, and the access log names it by its URI SAN
//!   (else its DNS SAN);
//! - `router.allow` lets only matching identities invoke a model; the
//!   others get SageMaker's `AccessDeniedException` (403), which boto3
//!   raises as a `ClientError` with that code;
//! - without an identity method, a router on an address that is not
//!   loopback is refused unless `router.allow_anonymous = true`.
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

fn tempdir(prefix: &str) -> PathBuf {
    let d = std::env::temp_dir().join(common::unique(prefix));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A daemon whose router asks for client certificates from `ca`, with
/// `router_keys` in its `[router]` table.
fn start_mtls(dir: &Path, ca: &Ca, router_keys: &str) -> Daemon {
    let (cert, key) = ca.server("router");
    let listen = format!(
        "router_tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}\n",
        cert.display(),
        key.display(),
        ca.pem().display()
    );
    Daemon::start_in(dir.to_path_buf(), &listen, router_keys, None)
}

const PING: &str = "GET /ping HTTP/1.1\r\nhost: r\r\n\r\n";

fn invoke(model: &str) -> String {
    format!(
        "POST /endpoints/{model}/invocations HTTP/1.1\r\nhost: r\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
    )
}

/// The access-log lines of `log`, as JSON.
fn access_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "failoverd::access")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_required_and_its_san_is_the_identity() {
    let dir = tempdir("failoverd-mtls");
    let ca = Ca::new(&dir, "ca");
    let d = start_mtls(&dir, &ca, "");
    let (uri_cert, uri_key) = ca.leaf(
        "caller-a",
        "URI:spiffe://test/caller-a,DNS:a.example",
        "clientAuth",
    );
    let (dns_cert, dns_key) = ca.leaf("caller-b", "DNS:b.example", "clientAuth");
    let other = Ca::new(&dir.join("other"), "other");
    let (stranger, stranger_key) = other.leaf("stranger", "DNS:a.example", "clientAuth");

    // No certificate, or one from another CA: no answer.
    for client in [None, Some((stranger.as_path(), stranger_key.as_path()))] {
        let got = async {
            let mut s = pki::connect(d.router, &ca.pem(), client).await?;
            pki::request(&mut s, PING, CAP).await
        }
        .await;
        assert!(got.is_err(), "{client:?}: {got:?}");
    }

    // With one from the CA: served, and logged by its SAN.
    for (cert, key) in [(&uri_cert, &uri_key), (&dns_cert, &dns_key)] {
        let mut s = pki::connect(d.router, &ca.pem(), Some((cert, key)))
            .await
            .unwrap();
        let (status, _) = pki::request(&mut s, PING, CAP).await.unwrap();
        assert_eq!(status, 200);
        let (status, body) = pki::request(&mut s, &invoke("m"), CAP).await.unwrap();
        assert_eq!(status, 503, "no region is reachable: {body}");
    }
    let log = d.log();
    let ids: Vec<String> = access_lines(&log)
        .iter()
        .filter(|l| l["model"] == "m")
        .map(|l| l["identity"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(ids, ["spiffe://test/caller-a", "b.example"], "{log}");
}

/// The status, `x-amzn-errortype` and body of one raw exchange's answer.
async fn invoke_as(d: &Daemon, ca: &Ca, cert: &Path, key: &Path) -> (u16, String) {
    let mut s = pki::connect(d.router, &ca.pem(), Some((cert, key)))
        .await
        .unwrap();
    pki::request(&mut s, &invoke("m"), CAP).await.unwrap()
}

/// tests/boto3/invoke_tls.py against `d`'s router as `(cert, key)`.
fn boto3(d: &Daemon, ca: &Ca, cert: &Path, key: &Path) -> serde_json::Value {
    let out = Command::new(common::venv().join("bin/python"))
        .arg(common::root().join("tests/boto3/invoke_tls.py"))
        .args([
            "--endpoint-url",
            &format!("https://127.0.0.1:{}", d.router.port()),
        ])
        .args(["--model", "m", "--ca-bundle"])
        .arg(ca.pem())
        .arg("--client-cert")
        .arg(cert)
        .arg("--client-key")
        .arg(key)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_identities_invoke_a_model_and_the_others_get_access_denied() {
    let dir = tempdir("failoverd-authz");
    let ca = Ca::new(&dir, "ca");
    let d = start_mtls(&dir, &ca, "allow = { m = [\"spiffe://test/fraud/*\"] }");
    let (a, a_key) = ca.leaf("a", "URI:spiffe://test/fraud/scorer", "clientAuth");
    let (b, b_key) = ca.leaf(
        "b",
        "URI:spiffe://test/ads/ranker,DNS:b.example",
        "clientAuth",
    );

    // Allowed: through to the regions (none reachable: 503).
    let (status, body) = invoke_as(&d, &ca, &a, &a_key).await;
    assert_eq!(status, 503, "{body}");
    // Not allowed: 403 AccessDeniedException, before any upstream call.
    let (status, body) = invoke_as(&d, &ca, &b, &b_key).await;
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["__type"], "AccessDeniedException", "{body}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("spiffe://test/ads/ranker") && m.contains("\"m\"")),
        "{body}"
    );

    // boto3 with client certificates: the same, as boto3 raises them.
    let got = boto3(&d, &ca, &b, &b_key);
    assert_eq!(got["exception"], "ClientError", "{got}");
    assert_eq!(got["code"], "AccessDeniedException", "{got}");
    assert_eq!(got["status"], 403, "{got}");
    assert_eq!(
        got["headers"]["x-amzn-errortype"], "AccessDeniedException",
        "{got}"
    );
    let got = boto3(&d, &ca, &a, &a_key);
    assert_eq!(got["code"], "ServiceUnavailable", "{got}");

    let log = d.log();
    let denied: Vec<_> = access_lines(&log)
        .into_iter()
        .filter(|l| l["status"] == 403)
        .collect();
    assert_eq!(denied.len(), 2, "{log}");
    assert!(
        denied
            .iter()
            .all(|l| l["identity"] == "spiffe://test/ads/ranker" && l["outcome"] == "denied"),
        "{denied:?}"
    );
}

/// `check-config` on the edge-test fleet with `listen` and `router` lines.
fn check_config(dir: &Path, listen: &str, router: &str) -> (Option<i32>, String) {
    std::fs::copy(
        common::root().join("regions/lab/base.toml"),
        dir.join("base.toml"),
    )
    .unwrap();
    let file = dir.join("us-east-1.toml");
    std::fs::write(
        &file,
        format!("region = \"us-east-1\"\n[listen]\nadmin = \"127.0.0.1:0\"\n{listen}\n[router]\n{router}\n"),
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
fn a_router_off_loopback_needs_identity_or_an_explicit_allow_anonymous() {
    let dir = tempdir("failoverd-authz-config");
    let ca = Ca::new(&dir, "ca");
    let (cert, key) = ca.server("router");
    let file = dir.join("us-east-1.toml").display().to_string();
    let mtls = format!(
        "router_tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
        cert.display(),
        key.display(),
        ca.pem().display()
    );

    let (code, err) = check_config(&dir, "router = \"0.0.0.0:8080\"", "");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!("{file}: listen.router: 0.0.0.0:8080 is not loopback and the router has no caller identity")),
        "{err}"
    );
    // The default address is loopback.
    let (code, err) = check_config(&dir, "", "");
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = check_config(&dir, "router = \"0.0.0.0:8080\"", "allow_anonymous = true");
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = check_config(&dir, &format!("router = \"0.0.0.0:8080\"\n{mtls}"), "");
    assert_eq!(code, Some(0), "{err}");

    // Lists name configured models, and need caller identity.
    let (code, err) = check_config(
        &dir,
        &format!("router = \"127.0.0.1:0\"\n{mtls}"),
        "allow = { nosuch = [\"x\"] }",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("router.allow.nosuch: not a model in [[models]]"),
        "{err}"
    );
    let (code, err) = check_config(
        &dir,
        "router = \"127.0.0.1:0\"",
        "allow = { default = [\"x\"] }",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("router.allow.default: needs caller identity"),
        "{err}"
    );
    let (code, err) = check_config(
        &dir,
        &format!("router = \"127.0.0.1:0\"\n{mtls}"),
        "allow = { default = [\"a b\"] }",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("router.allow.default[0]: \"a b\" is not an identity pattern"),
        "{err}"
    );

    // Caller limits: each sets something, within range.
    let (code, err) = check_config(
        &dir,
        "router = \"127.0.0.1:0\"",
        "caller_default = {}\ncallers = { \"x.example\" = { rate = 0.0, max_in_flight = 0 } }",
    );
    assert_eq!(code, Some(78), "{err}");
    for line in [
        "router.caller_default: sets no limit",
        "router.callers.\"x.example\".rate: 0 is out of range",
        "router.callers.\"x.example\".max_in_flight: 0 is out of range",
    ] {
        assert!(err.contains(line), "no {line:?} in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_gets_throttling_with_retry_after_and_metrics_name_it() {
    let dir = tempdir("failoverd-limits");
    let ca = Ca::new(&dir, "ca");
    // One request per 100 s for `slow` (a bucket of one); others unlimited.
    let d = start_mtls(
        &dir,
        &ca,
        "callers = { \"spiffe://test/slow\" = { rate = 0.01 } }",
    );
    let (slow, slow_key) = ca.leaf("slow", "URI:spiffe://test/slow", "clientAuth");
    let (fast, fast_key) = ca.leaf("fast", "URI:spiffe://test/fast", "clientAuth");

    let (status, body) = invoke_as(&d, &ca, &slow, &slow_key).await;
    assert_eq!(
        status, 503,
        "the first passes (no region reachable): {body}"
    );
    let mut s = pki::connect(d.router, &ca.pem(), Some((&slow, &slow_key)))
        .await
        .unwrap();
    let (status, head, body) = request_with_head(&mut s, &invoke("m")).await;
    assert_eq!(status, 429, "{head}{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["__type"], "ThrottlingException", "{body}");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {head}"));
    assert!(retry_after >= 2, "the next token is far: {retry_after}");
    // Another caller is not affected.
    let (status, body) = invoke_as(&d, &ca, &fast, &fast_key).await;
    assert_eq!(status, 503, "{body}");
    // boto3 raises it as it does AWS's throttling.
    let got = boto3(&d, &ca, &slow, &slow_key);
    assert_eq!(got["code"], "ThrottlingException", "{got}");
    assert_eq!(got["status"], 429, "{got}");

    let (status, metrics) = common::http("GET", &d.admin.to_string(), "/metrics", "").unwrap();
    assert_eq!(status, 200);
    for line in [
        "failoverd_router_caller_requests_total{caller=\"spiffe://test/slow\",result=\"admitted\"} 1",
        "failoverd_router_caller_requests_total{caller=\"spiffe://test/slow\",result=\"throttled_rate\"} 2",
        // Not a configured name: counted as other.
        "failoverd_router_caller_requests_total{caller=\"other\",result=\"admitted\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
}

/// One request on `s`: status, head and body.
async fn request_with_head(
    s: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    raw: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(CAP, async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the answer");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(at) = text.find("\r\n\r\n") {
                let len: usize = text[..at]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or(0);
                if buf.len() >= at + 4 + len {
                    let status = text
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    return (status, text[..at].to_string(), text[at + 4..].to_string());
                }
            }
        }
    })
    .await
    .expect("an answer in time")
}
