//! The router in the full lab (three daemons, moto, the model server): no
//! request is lost while us-east-1 fails (its health check inverted and its
//! endpoints out) and the lab fails it over to us-west-2; the routers move
//! traffic off the failing region before the record does; and each router
//! reports what its clients asked per model (`GET /traffic`), which
//! `failoverd advise` reads from the daemon.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use failoverd::ports::ControlStore;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::lab::{Lab, REGIONS};
use common::wait_for;
use failoverd::core::control::Phase;

/// (status, x-failoverd-region) of one request, or the I/O error.
fn invoke(port: u16, body: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST /endpoints/default/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let region = out
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-failoverd-region")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, region))
}

/// Requests by (sent after the failover finished, status or error, region).
type Seen = BTreeMap<(bool, String, String), u64>;

#[test]
fn no_request_is_lost_during_a_failover() {
    let lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    wait_for("the control record", Duration::from_secs(30), || {
        Lab::rt()
            .block_on(lab.table().read_record())
            .ok()
            .flatten()
            .filter(|r| r.active == "us-east-1")
    });
    let ports: Vec<u16> = REGIONS.iter().map(|r| lab.daemon(r).router).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let failed_over = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Seen>> = Arc::default();
    // Requests answered through each region's router (by entry, not by the
    // region that served them): what its `/traffic` must report.
    let entered: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (stop, failed_over, seen, ports, entered) = (
                stop.clone(),
                failed_over.clone(),
                seen.clone(),
                ports.clone(),
                entered.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let port = ports[(i + n) % ports.len()];
                    let after = failed_over.load(Ordering::Relaxed);
                    let (what, region) =
                        match invoke(port, &format!("{{\"client\":{i},\"n\":{n}}}")) {
                            Ok((status, region)) => {
                                *entered.lock().unwrap().entry(port).or_default() += 1;
                                (status.to_string(), region)
                            }
                            Err(e) => (format!("error: {e}"), String::new()),
                        };
                    *seen
                        .lock()
                        .unwrap()
                        .entry((after, what, region))
                        .or_default() += 1;
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(2));
    // A real regional failure: the health check goes bad and us-east-1's
    // endpoints stop answering at the same moment.
    lab.invert("us-east-1", true);
    let (status, body) = common::http(
        "PUT",
        &format!("127.0.0.1:{}", lab.model_port),
        "/_lab/behaviour",
        r#"{"region":"us-east-1","endpoint":"*","outage":true}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    wait_for(
        "failover to us-west-2 to finish",
        Duration::from_secs(90),
        || {
            Lab::rt()
                .block_on(lab.table().read_record())
                .ok()
                .flatten()
                .filter(|r| r.active == "us-west-2" && r.phase == Phase::Steady)
        },
    );
    failed_over.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let seen = seen.lock().unwrap().clone();
    eprintln!("requests by (after failover, outcome, region): {seen:#?}");
    let total: u64 = seen.values().sum();
    let lost: u64 = seen
        .iter()
        .filter(|((_, what, _), _)| what != "200")
        .map(|(_, n)| n)
        .sum();
    assert!(total > 100, "the clients kept sending: {total}");
    assert_eq!(lost, 0, "every request ends in 200: {seen:?}");
    let after_in_west: u64 = seen
        .iter()
        .filter(|((after, _, region), _)| *after && region == "us-west-2")
        .map(|(_, n)| n)
        .sum();
    let after_total: u64 = seen
        .iter()
        .filter(|((after, _, _), _)| *after)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        after_in_west, after_total,
        "after the failover every router sends to us-west-2"
    );

    let (status, metrics) = lab.admin("us-west-2", "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("failoverd_router_requests_total{path=\"provisioned\",region=\"us-west-2\",outcome=\"ok\""),
        "{metrics}"
    );

    // Each router observed exactly the requests its clients sent it, per
    // model (`GET /traffic`), and `failoverd advise` reads that from the
    // daemon: under an hour of data, no recommendation yet, with the
    // figures.
    let entered = entered.lock().unwrap().clone();
    for r in REGIONS {
        let d = lab.daemon(r);
        let (status, body) = lab.admin(r, "/traffic").unwrap();
        assert_eq!(status, 200, "{body}");
        let set: failoverd::core::advise::TrafficSet = serde_json::from_str(&body).unwrap();
        assert!(set.collected, "{r}: {body}");
        assert_eq!(set.region, r);
        let default = set
            .models
            .iter()
            .find(|o| o.model == "default")
            .unwrap_or_else(|| panic!("{r}: no default model in {body}"));
        let counted = default.per_minute.iter().sum::<u64>() + default.current_minute;
        assert_eq!(counted, entered[&d.router], "{r}: {body}");
        let out = lab.cli_in(
            r,
            &[
                "advise",
                "--admin",
                &format!("http://127.0.0.1:{}", d.admin),
                "--output",
                "json",
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let rec = v["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["model"] == "default")
            .unwrap_or_else(|| panic!("{stdout}"));
        assert_eq!(rec["approach"], "not_enough_data", "{stdout}");
    }
}

/// One request's outcome and how long it took (seconds).
type Timed = (Result<(u16, String), String>, f64);

/// (status, x-failoverd-region, seconds) of one request through `port`.
fn timed_invoke(port: u16) -> Timed {
    let started = std::time::Instant::now();
    let r = invoke(port, "{\"hang\":true}");
    (r, started.elapsed().as_secs_f64())
}

#[test]
fn a_hung_region_costs_one_attempt_not_the_deadline() {
    // Attempts time out after at most 1 s (the default is half the time
    // left, up to 60 s); the lab's deadline is 20 s.
    let lab = Lab::start(&[("FAILOVERD__ROUTER__ATTEMPT_TIMEOUT_MAX", "1s")]);
    lab.wait_ready(Duration::from_secs(60));
    wait_for("the control record", Duration::from_secs(30), || {
        Lab::rt()
            .block_on(lab.table().read_record())
            .ok()
            .flatten()
            .filter(|r| r.active == "us-east-1")
    });
    // us-east-1's model hangs: it accepts and never answers. Its health
    // checks stay green, so nothing fails over: only the router can help.
    let (status, body) = common::http(
        "PUT",
        &format!("127.0.0.1:{}", lab.model_port),
        "/_lab/behaviour",
        r#"{"region":"us-east-1","endpoint":"*","latency":"1h"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let port = lab.daemon("us-east-1").router;
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<Timed>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, results) = (stop.clone(), results.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = timed_invoke(port);
                    results.lock().unwrap().push(r);
                }
            })
        })
        .collect();
    // The breaker ejects us-east-1's endpoint after 5 timeouts in a row.
    let (_, metrics) = lab.wait_admin(
        "us-east-1",
        "/metrics",
        "us-east-1 ejected by its own router",
        Duration::from_secs(60),
        |s, b| {
            s == 200
                && b.contains(
                    "failoverd_router_ejected{path=\"provisioned\",region=\"us-east-1\",target=\"us-east-1/lab-provisioned\"} 1",
                )
        },
    );
    assert!(
        metrics.contains(
            "failoverd_router_upstream_calls_total{path=\"provisioned\",region=\"us-east-1\",result=\"timeout\"}"
        ),
        "{metrics}"
    );
    // A few more requests once ejected, then stop.
    let seen = results.lock().unwrap().len();
    wait_for(
        "requests after the ejection",
        Duration::from_secs(30),
        || (results.lock().unwrap().len() >= seen + 8).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let results = results.lock().unwrap().clone();
    let slowest = results.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    eprintln!(
        "{} requests through us-east-1's router; slowest {slowest:.2} s",
        results.len()
    );
    for (r, secs) in &results {
        let (status, region) = r.as_ref().expect("an answer");
        assert_eq!(*status, 200, "{r:?}");
        assert_ne!(region, "us-east-1", "answered by another region");
        assert!(
            *secs < 10.0,
            "well within the 20 s deadline (one 1 s attempt, then another region): {secs:.2} s"
        );
    }
}
