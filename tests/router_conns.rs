//! The router's listener under many connections, and its access log
//! (issue 22 items 5 and 6), against the real binary:
//!
//! - started with a soft open-file limit far below the connections the
//!   test then holds open (some idle after a request, most sending their
//!   headers slowly), the daemon raises its soft limit to the hard one at
//!   start and still answers an ordinary request;
//! - a client that sends requests and reads no answer is closed after
//!   `router.send_timeout` without progress;
//! - over `router.max_connections` a connection gets a complete 503
//!   `ServiceUnavailable` and is closed; slow-header and idle keep-alive
//!   connections are closed by the header-read timer;
//! - one access-log line per request, with its fields and without bodies
//!   or tokens; none at `router.access_log_sample = 0`.
//!
//! Every wait is bounded; nothing asserts a duration.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;
mod router_daemon;

use std::time::Duration;

use router_daemon::{Daemon, exchange, ping, raise_own_open_file_limit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The daemon's soft open-file limit at exec (systemd's default is 1,024;
/// lower keeps the test cheap, the shape is the same).
const LOW_SOFT_LIMIT: u64 = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_past_its_starting_open_file_limit_while_many_connections_are_held() {
    let own = raise_own_open_file_limit();
    // Four times the daemon's starting limit, within what both sides may
    // open once raised.
    let held = (4 * LOW_SOFT_LIMIT as usize).min(own as usize / 3);
    assert!(
        held > 2 * LOW_SOFT_LIMIT as usize,
        "the hard open-file limit ({own}) is too low for this test"
    );
    // A long header timer: here only the raised limit may let the
    // ordinary request in, not connections timing out.
    let d = Daemon::start("header_read_timeout = \"5m\"", Some(LOW_SOFT_LIMIT));
    let (soft, hard) = d.open_file_limits();
    assert_eq!(
        soft, hard,
        "the daemon raised its soft limit to the hard one"
    );
    assert!(soft > LOW_SOFT_LIMIT, "{soft}");

    // A tenth keep their connection open, idle, after one request...
    let mut conns = Vec::with_capacity(held);
    for _ in 0..held / 10 {
        let mut s = TcpStream::connect(d.router).await.unwrap();
        let (status, text) = exchange(
            &mut s,
            b"GET /ping HTTP/1.1\r\nhost: r\r\n\r\n",
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(status, 200, "{text}\n{}", d.log());
        conns.push(s);
    }
    // ...the rest send half a head and stop.
    for _ in held / 10..held {
        let mut s = TcpStream::connect(d.router).await.unwrap();
        s.write_all(b"POST /endpoints/m/invocations HTTP/1.1\r\nhost: r\r\nx-slow: ")
            .await
            .unwrap();
        conns.push(s);
    }
    // An ordinary request still gets in, and the idle ones still work.
    assert_eq!(
        ping(d.router, Duration::from_secs(30)).await,
        200,
        "an ordinary request is answered while {held} connections are held\n{}",
        d.log()
    );
    let (status, _) = exchange(
        &mut conns[0],
        b"GET /ping HTTP/1.1\r\nhost: r\r\n\r\n",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(status, 200);

    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("open-file limit"))
        .unwrap_or_else(|| panic!("no open-file limit line in:\n{log}"));
    assert!(
        line.contains(&format!("\"soft_before\":{LOW_SOFT_LIMIT}"))
            && line.contains(&format!("\"soft\":{soft}"))
            && line.contains(&format!("\"hard\":{hard}")),
        "{line}"
    );
    assert!(!log.contains("accept failed"), "{log}");
    assert!(!log.contains("connection limit reached"), "{log}");
}

/// `n` connections, each holding a request whose body never finishes
/// (the body timer, not the header timer, is what runs on them).
async fn hold_requests(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /endpoints/m/invocations HTTP/1.1\r\nhost: r\r\ncontent-length: 100\r\n\r\nonly part",
        )
        .await
        .unwrap();
        held.push(s);
    }
    held
}

/// Whether the server closes `s` (EOF or reset) within `cap`.
async fn closed_by_server(s: &mut TcpStream, cap: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(cap, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_over_the_cap_with_503_and_closes_slow_and_idle_connections() {
    const CAP: usize = 20;
    let d = Daemon::start(
        "max_connections = 20\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"5m\"",
        None,
    );
    let held = hold_requests(d.router, CAP).await;
    // Connections are accepted in order: these CAP fill the listener.
    let mut over = TcpStream::connect(d.router).await.unwrap();
    let mut got = String::new();
    tokio::time::timeout(Duration::from_secs(20), over.read_to_string(&mut got))
        .await
        .expect("the connection over the cap is answered and closed")
        .unwrap();
    assert!(got.starts_with("HTTP/1.1 503 "), "{got:?}");
    let lower = got.to_ascii_lowercase();
    for part in [
        "x-amzn-errortype: serviceunavailable",
        "retry-after: 1",
        "connection: close",
        "router.max_connections: 20",
    ] {
        assert!(lower.contains(part), "no {part:?} in {got:?}");
    }
    assert!(d.log().contains("connection limit reached"), "{}", d.log());

    // Once they go, an ordinary request gets in again.
    drop(held);
    let answered = common::wait_until("a place under the cap", Duration::from_secs(30), || async {
        (ping(d.router, Duration::from_secs(5)).await == 200).then_some(())
    })
    .await;
    let () = answered;

    // A slow-header sender and an idle keep-alive connection are closed by
    // the header timer.
    let mut slow = TcpStream::connect(d.router).await.unwrap();
    slow.write_all(b"GET /ping HTTP/1.1\r\nhost: r\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(d.router).await.unwrap();
    let (status, _) = exchange(
        &mut idle,
        b"GET /ping HTTP/1.1\r\nhost: r\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        closed_by_server(&mut slow, Duration::from_secs(30)).await,
        "slow-header connection closed"
    );
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(30)).await,
        "idle keep-alive connection closed"
    );
    assert_eq!(ping(d.router, Duration::from_secs(10)).await, 200);
}

/// A request with a body, a bearer token and custom attributes that must
/// never reach the log.
const SECRET_REQUEST: &[u8] = b"POST /endpoints/m/invocations HTTP/1.1\r\nhost: r\r\n\
authorization: Bearer TOKEN-d41d8cd9\r\n\
x-amzn-sagemaker-custom-attributes: ATTR-8f00b204\r\n\
content-type: application/json\r\ncontent-length: 22\r\n\r\n{\"secret\":\"BODY-e980\"}";

/// The access-log lines in `log`.
fn access_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "failoverd::access")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_access_log_line_per_request_without_bodies_or_tokens() {
    let d = Daemon::start("", None);
    let mut s = TcpStream::connect(d.router).await.unwrap();
    let (status, text) = exchange(&mut s, SECRET_REQUEST, Duration::from_secs(30)).await;
    // Both regions' SageMaker runtime is a closed port.
    assert_eq!(status, 503, "{text}");
    assert_eq!(ping(d.router, Duration::from_secs(10)).await, 200);
    let mut s = TcpStream::connect(d.router).await.unwrap();
    let (status, _) = exchange(
        &mut s,
        b"POST /endpoints/NAME-0cc175b9/invocations HTTP/1.1\r\nhost: r\r\ncontent-length: 0\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, 404);

    // Written before each response went out.
    let log = d.log();
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 3, "{log}");
    let invoke = &lines[0];
    assert_eq!(invoke["identity"], "anonymous", "{invoke}");
    assert_eq!(invoke["model"], "m", "{invoke}");
    assert_eq!(invoke["status"], 503, "{invoke}");
    assert_eq!(invoke["path"], "provisioned", "{invoke}");
    assert!(
        ["us-east-1", "us-west-2"].contains(&invoke["region"].as_str().unwrap_or("")),
        "{invoke}"
    );
    assert!(invoke["attempts"].as_u64().unwrap_or(0) >= 1, "{invoke}");
    assert!(invoke["latency_ms"].as_f64().is_some(), "{invoke}");
    assert_eq!(
        invoke["request_id"].as_str().map(str::len),
        Some(16),
        "{invoke}"
    );
    assert_eq!(lines[1]["status"], 200, "{}", lines[1]);
    assert_eq!(lines[1]["path"], "none", "{}", lines[1]);
    // An unknown model: logged, but not the client's name for it.
    assert_eq!(lines[2]["status"], 404, "{}", lines[2]);
    assert_eq!(lines[2]["model"], "-", "{}", lines[2]);
    for secret in [
        "TOKEN-d41d8cd9",
        "ATTR-8f00b204",
        "BODY-e980",
        "NAME-0cc175b9",
    ] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_log_at_sample_rate_zero() {
    let d = Daemon::start("access_log_sample = 0.0", None);
    let mut s = TcpStream::connect(d.router).await.unwrap();
    let (status, _) = exchange(&mut s, SECRET_REQUEST, Duration::from_secs(30)).await;
    assert_eq!(status, 503);
    for _ in 0..20 {
        assert_eq!(ping(d.router, Duration::from_secs(10)).await, 200);
    }
    let log = d.log();
    assert!(log.contains("failoverd started"), "{log}");
    assert_eq!(access_lines(&log), Vec::<serde_json::Value>::new(), "{log}");
}

#[test]
fn connection_and_access_log_keys_are_validated_with_file_and_key() {
    let dir = std::env::temp_dir().join(common::unique("failoverd-router-keys"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        common::root().join("regions/lab/base.toml"),
        dir.join("base.toml"),
    )
    .unwrap();
    let file = dir.join("us-east-1.toml");
    std::fs::write(
        &file,
        "region = \"us-east-1\"\n[router]\nmax_connections = 0\nheader_read_timeout = \"1ms\"\naccess_log_sample = 1.5\n",
    )
    .unwrap();
    let report = failoverd::config::load(&file, &failoverd::config::EnvSource::new())
        .map(|_| ())
        .unwrap_err()
        .report();
    for line in [
        "router.max_connections: 0 is out of range",
        "router.header_read_timeout: \"1ms\" is out of range",
        "router.access_log_sample: 1.5 is out of range",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
    assert!(
        report.contains("us-east-1.toml"),
        "names the file: {report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_holds_the_listener_limits_and_takes_the_sample_rate() {
    let f = common::root().join("regions/lab/us-east-1.toml");
    let env = failoverd::config::EnvSource::new();
    let current = failoverd::config::load(&f, &env).unwrap();
    let mut new = failoverd::config::load(&f, &env).unwrap();
    new.router.max_connections += 1;
    new.router.header_read_timeout *= 2;
    new.router.access_log_sample = 0.5;
    let pending = new.hold_restart_only(&current);
    assert_eq!(
        pending,
        ["router.max_connections", "router.header_read_timeout"]
    );
    assert_eq!(new.router.max_connections, current.router.max_connections);
    assert_eq!(
        new.router.header_read_timeout,
        current.router.header_read_timeout
    );
    assert_eq!(new.router.access_log_sample, 0.5, "taken on reload");
}

/// A client that sends requests and never reads the answers: once the
/// router's writes have made no progress for `router.send_timeout`, it
/// closes the connection (hyper has no write timeout of its own; without
/// `http::StallGuard` the connection stayed open, holding its buffers, for
/// as long as the client liked). The client pipelines more pings than the
/// socket buffers hold answers for, waits, then reads: it must meet the end
/// of the connection before all the answers, within a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_closed_after_the_send_timeout() {
    let d = Daemon::start(
        "send_timeout = \"1s\"\nheader_read_timeout = \"600s\"\n",
        None,
    );
    const PINGS: usize = 200_000;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let s = sock.connect(d.router).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // The writer stops on its own once the router stops reading (its
    // writes block) or closes (they fail).
    let writer = tokio::spawn(async move {
        let one = b"GET /ping HTTP/1.1\r\nhost: r\r\n\r\n";
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        for _ in 0..PINGS / 1000 {
            if wr.write_all(&batch).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Held open (not shut down) until the test ends.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    // Longer than the send timeout, with the client reading nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut buf = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    writer.abort();
    // Without the send timeout (checked by setting it to an hour) the
    // router answers pings as the client reads, then keeps the idle
    // connection open for the header-read timeout (set long here, so that
    // timer cannot be what closes it): the read meets no end.
    assert!(ended, "the router kept a connection that read nothing open");
    // And it still serves others.
    assert_eq!(ping(d.router, Duration::from_secs(10)).await, 200);
}
