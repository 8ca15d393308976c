//! Hostile input at the router (issue 22 item 7):
//!
//! - raw TCP writes to the real binary: request smuggling shapes
//!   (`Content-Length` beside `Transfer-Encoding`, in either order; two
//!   different `Content-Length`s; a bare chunked body), oversized heads,
//!   bytes that are not UTF-8 in the path and in header values, absurd
//!   `X-Deadline-Ms` values. Each gets a 4xx, nothing behind a refused
//!   request on its connection is answered, and the daemon answers
//!   `GET /ping` after each;
//! - a bounded property test (the stable-Rust stand-in for a fuzz target,
//!   run with the normal suite): arbitrary and mutated methods, paths and
//!   header maps through the router's request parsing (`Route::of`,
//!   `parse_head`) never panic, and every refusal is a 4xx `RouterError`.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;
mod router_daemon;

use std::time::Duration;

use failoverd::config::{Config, EnvSource};
use failoverd::router::reply::{Reply, RouterError};
use failoverd::router::request::{Route, parse_head};
use hyper::Method;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use router_daemon::{Daemon, exchange, ping};
use tokio::net::TcpStream;

/// A head for `POST /endpoints/m/invocations` with `extra` header lines
/// (each ending in CRLF), then `body`.
fn invoke(extra: &str, body: &str) -> Vec<u8> {
    format!("POST /endpoints/m/invocations HTTP/1.1\r\nhost: r\r\n{extra}\r\n{body}").into_bytes()
}

/// A request that, if the router read the first one's body by the wrong
/// frame, would be answered as a second request.
const SMUGGLED: &str = "GET /v1/jobs/smuggled HTTP/1.1\r\nhost: r\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_4xx_and_leave_the_daemon_ready() {
    let d = Daemon::start("body_read_timeout = \"2s\"", None);
    let big = "a".repeat(100 * 1024);
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "Content-Length then Transfer-Encoding",
            invoke(
                "content-length: 5\r\ntransfer-encoding: chunked\r\n",
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            &[400],
        ),
        (
            "Transfer-Encoding then Content-Length",
            invoke(
                "transfer-encoding: chunked\r\ncontent-length: 48\r\n",
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            &[400],
        ),
        (
            "chunked body alone",
            invoke(
                "transfer-encoding: chunked\r\n",
                &format!("2\r\n{{}}\r\n0\r\n\r\n{SMUGGLED}"),
            ),
            &[400],
        ),
        (
            "Transfer-Encoding that is not chunked",
            invoke("transfer-encoding: gzip\r\n", SMUGGLED),
            &[400],
        ),
        (
            "two different Content-Lengths",
            invoke("content-length: 2\r\ncontent-length: 40\r\n", &format!("{{}}{SMUGGLED}")),
            &[400],
        ),
        (
            "Content-Length not a number",
            invoke("content-length: 2x\r\n", "{}"),
            &[400],
        ),
        (
            "Content-Length negative",
            invoke("content-length: -1\r\n", "{}"),
            &[400],
        ),
        (
            "a 100 KiB header",
            invoke(&format!("x-big: {big}\r\ncontent-length: 2\r\n"), "{}"),
            &[431],
        ),
        (
            "200 headers",
            invoke(&format!("{many}content-length: 2\r\n"), "{}"),
            &[431],
        ),
        (
            "a 100 KiB path",
            format!("GET /{big} HTTP/1.1\r\nhost: r\r\n\r\n").into_bytes(),
            &[414, 431],
        ),
        (
            "raw bytes that are not UTF-8 in the label",
            b"POST /endpoints/m\xff\xfe/invocations HTTP/1.1\r\nhost: r\r\ncontent-length: 2\r\n\r\n{}"
                .to_vec(),
            &[400],
        ),
        (
            "a percent-encoded label that is not UTF-8",
            b"POST /endpoints/m%ff%fe/invocations HTTP/1.1\r\nhost: r\r\ncontent-length: 2\r\n\r\n{}"
                .to_vec(),
            &[400],
        ),
        (
            "a traffic class that is not UTF-8",
            [
                &b"POST /endpoints/m/invocations HTTP/1.1\r\nhost: r\r\nx-traffic-class: "[..],
                b"\xc3\x28\xff",
                b"\r\ncontent-length: 2\r\n\r\n{}",
            ]
            .concat(),
            &[400],
        ),
        (
            "a content type that is not UTF-8",
            [
                &b"POST /endpoints/m/invocations HTTP/1.1\r\nhost: r\r\ncontent-type: "[..],
                b"application/\xff",
                b"\r\ncontent-length: 2\r\n\r\n{}",
            ]
            .concat(),
            &[400],
        ),
        (
            "a control character in a header value",
            invoke("x-deadline-ms: 5\x01\r\ncontent-length: 2\r\n", "{}"),
            &[400],
        ),
        (
            "a deadline past u64",
            invoke(
                "x-deadline-ms: 99999999999999999999999999\r\ncontent-length: 2\r\n",
                "{}",
            ),
            &[400],
        ),
        (
            "a deadline over router.max_deadline",
            invoke("x-deadline-ms: 86400001\r\ncontent-length: 2\r\n", "{}"),
            &[400],
        ),
        (
            "a zero deadline",
            invoke("x-deadline-ms: 0\r\ncontent-length: 2\r\n", "{}"),
            &[400],
        ),
        (
            "a negative deadline",
            invoke("x-deadline-ms: -5\r\ncontent-length: 2\r\n", "{}"),
            &[400],
        ),
        (
            "a deadline in exponent form",
            invoke("x-deadline-ms: 1e3\r\ncontent-length: 2\r\n", "{}"),
            &[400],
        ),
        (
            "an empty deadline",
            invoke("x-deadline-ms: \r\ncontent-length: 2\r\n", "{}"),
            &[400],
        ),
    ];
    for (what, raw, want) in cases {
        let mut s = TcpStream::connect(d.router).await.unwrap();
        let (status, text) = exchange(&mut s, &raw, Duration::from_secs(20)).await;
        assert!(
            want.contains(&status),
            "{what}: got {status}, want one of {want:?}:\n{text}\n{}",
            d.log()
        );
        // Nothing after the refused request is answered on its connection:
        // it is closed, or it answers no second (smuggled) request.
        let (second, rest) = exchange(&mut s, b"", Duration::from_secs(2)).await;
        assert!(
            second == 0 && !rest.contains("smuggled"),
            "{what}: a second answer on the connection: {rest}"
        );
        assert_eq!(
            ping(d.router, Duration::from_secs(10)).await,
            200,
            "{what}: the daemon is still ready\n{}",
            d.log()
        );
    }
    // The router's own refusals say why, in SageMaker's error shape.
    let mut s = TcpStream::connect(d.router).await.unwrap();
    let (status, text) = exchange(
        &mut s,
        &invoke(
            "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
            "0\r\n\r\n",
        ),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(status, 400);
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("x-amzn-errortype: validationerror")
            && lower.contains("connection: close")
            && text.contains("Transfer-Encoding is not accepted"),
        "{text}"
    );
}

// --- The property test over the request parser ----------------------------

fn lab_config() -> Config {
    failoverd::config::load(
        &common::root().join("regions/lab/us-east-1.toml"),
        &EnvSource::new(),
    )
    .expect("the lab's us-east-1 config loads")
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::HEAD),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
        "[A-Za-z!#$%&'*+.^_`|~-]{1,12}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// Text a path segment may hold, escapes (good and broken) included.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("default".to_string()),
        Just("chat".to_string()),
        "[a-z0-9_-]{0,12}",
        "([!-~]|%[0-9a-fA-F]{2}|%[0-9a-fA-F]?|%){0,16}",
        "\\PC{0,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just("/endpoints/"),
        Just("/v1/models/"),
        Just("/v1/jobs/"),
        Just("/ping"),
        Just("/"),
        Just(""),
        Just("//endpoints/"),
    ];
    let suffix = prop_oneof![
        Just("/invocations"),
        Just("/invoke"),
        Just(""),
        Just("/invocations/"),
        Just("/x/invocations"),
    ];
    let invoke = prop_oneof![
        Just(("/endpoints/", "/invocations")),
        Just(("/v1/models/", "/invoke")),
    ];
    prop_oneof![
        // Well-formed invocation routes, so most cases reach parse_head.
        6 => (invoke, label()).prop_map(|((p, s), l)| format!("{p}{l}{s}")),
        3 => (prefix, label(), suffix).prop_map(|(p, l, s)| format!("{p}{l}{s}")),
        1 => "\\PC{0,40}",
    ]
}

fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        Just(HeaderName::from_static("x-traffic-class")),
        Just(HeaderName::from_static("x-deadline-ms")),
        Just(HeaderName::from_static("content-length")),
        Just(HeaderName::from_static("transfer-encoding")),
        Just(HeaderName::from_static("content-type")),
        Just(HeaderName::from_static("accept")),
        Just(HeaderName::from_static(
            "x-amzn-sagemaker-custom-attributes"
        )),
        "[a-z][a-z0-9-]{0,15}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
    ]
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        "[0-9]{0,25}",
        "-?[0-9]{1,6}(\\.[0-9])?(e[0-9])?",
        Just("standard".to_string()),
        Just("serverless_preferred".to_string()),
        Just("chunked".to_string()),
        "[ -~]{0,24}",
    ]
    .prop_map(|v| HeaderValue::from_str(&v).unwrap())
    .boxed()
    .prop_union(
        // Any bytes a header value may carry on the wire: obs-text
        // (0x80-0xff, so not UTF-8) and tabs included.
        proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..24)
            .prop_map(|b| HeaderValue::from_bytes(&b).unwrap())
            .boxed(),
    )
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((header_name(), header_value()), 0..5).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, v);
        }
        h
    })
}

/// A refusal's status, which must be a client error.
fn assert_4xx(what: &str, e: RouterError) -> Result<(), TestCaseError> {
    let message = e.to_string();
    let status = Reply::from(e).status;
    prop_assert!(status.is_client_error(), "{what}: {status} for {message:?}");
    Ok(())
}

proptest! {
    // Bounded: about a second in a debug build; runs with the suite.
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn request_parsing_never_panics_and_refuses_with_4xx(
        method in method(),
        path in path(),
        headers in headers(),
        known_model in any::<bool>(),
    ) {
        let cfg = lab_config_cached();
        let route = match Route::of(&method, &path) {
            Ok(r) => r,
            Err(e) => return assert_4xx("Route::of", e),
        };
        let Route::Invoke { api, model } = route else {
            return Ok(());
        };
        // Half the cases reach parse_head with a configured model, whatever
        // the path named.
        let model_cfg = match cfg.models.iter().find(|m| m.name == model) {
            Some(m) => m,
            None if known_model => &cfg.models[0],
            None => return Ok(()),
        };
        let started = tokio::time::Instant::now();
        match parse_head(cfg, api, model_cfg, &headers, started, &|c| c == "gold", &Vec::new) {
            Ok(ask) => {
                prop_assert!(ask.deadline > started);
                prop_assert!(ask.deadline <= started + cfg.router.max_deadline);
                prop_assert!(!headers.contains_key("transfer-encoding"));
            }
            Err(e) => assert_4xx("parse_head", e)?,
        }
    }
}

fn lab_config_cached() -> &'static Config {
    static CFG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CFG.get_or_init(lab_config)
}
