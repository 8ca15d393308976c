//! The daemon's own probes against real local servers: status codes, the
//! 5120-byte string match, unreachable targets, slow targets.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use failoverd::core::health::Signal;
use failoverd::daemon::probe::Prober;

/// Serve `responses` (raw HTTP) one connection each, on a free port.
fn server(responses: Vec<(Duration, String)>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (delay, resp) in responses {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            std::thread::sleep(delay);
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

fn resp(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn probes_classify_responses() {
    let big = format!("{}needle", "x".repeat(6000));
    let port = server(vec![
        (Duration::ZERO, resp("200 OK", "status: ok")),
        (Duration::ZERO, resp("302 Found", "")),
        (Duration::ZERO, resp("503 Service Unavailable", "down")),
        (Duration::ZERO, resp("200 OK", "status: degraded")),
        (Duration::ZERO, resp("200 OK", &big)),
        (Duration::from_secs(3), resp("200 OK", "slow")),
    ]);
    let p = Prober::new(Duration::from_millis(500), Duration::from_millis(300)).unwrap();
    let url = format!("http://127.0.0.1:{port}/ping");
    assert_eq!(p.probe(&url, Some("ok")).await.0, Signal::Healthy);
    assert_eq!(
        p.probe(&url, None).await.0,
        Signal::Healthy,
        "3xx is healthy"
    );
    assert_eq!(p.probe(&url, None).await.0, Signal::Unhealthy);
    assert_eq!(
        p.probe(&url, Some("status: ok")).await.0,
        Signal::Unhealthy,
        "string match fails"
    );
    assert_eq!(
        p.probe(&url, Some("needle")).await.0,
        Signal::Unhealthy,
        "only the first 5120 bytes count"
    );
    let (sig, why) = p.probe(&url, None).await;
    assert_eq!(sig, Signal::Unhealthy, "too slow: {why}");
    assert!(why.contains("no response within"), "{why}");
}

#[tokio::test]
async fn unreachable_targets_are_unhealthy_not_errors() {
    let p = Prober::new(Duration::from_millis(500), Duration::from_millis(300)).unwrap();
    // Nothing listens there, and nothing can start to while we hold it.
    let closed = common::ClosedPort::new();
    let (sig, why) = p.probe(&format!("{}/ping", closed.url()), None).await;
    assert_eq!(sig, Signal::Unhealthy);
    assert!(why.contains("request failed"), "{why}");
    assert_eq!(p.probe("not a url", None).await.0, Signal::Unhealthy);
}
