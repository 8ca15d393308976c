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
