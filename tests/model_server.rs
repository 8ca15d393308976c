//! The lab's model server (`failoverd-lab model-server`) as a real process,
//! driven by the real `aws_sdk_sagemakerruntime::Client`: successes, every
//! fault as the SDK's typed error, cold starts, per-region outages, stats,
//! and the control API's validation.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sagemakerruntime::config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sagemakerruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::{
    InvokeEndpointError, InvokeEndpointOutput,
};
use aws_sdk_sagemakerruntime::primitives::Blob;
use serde_json::{Value, json};

/// A running model server, killed on drop (also when a test panics, and by
/// `PR_SET_PDEATHSIG` if the test process dies).
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "failoverd-model-server-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port_file = dir.join("port");
        // PIDs are recycled: an earlier process with this PID may have left
        // a port file here, naming a port that is now anyone's.
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_failoverd-lab"));
        cmd.args(["model-server", "--port-file"])
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap());
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn failoverd-lab model-server");
        let mut server = Self {
            child,
            port: 0,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                server.port = port;
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("model server exited early ({status}): {}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "no port file after 10 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// A SageMaker runtime client for `region` pointed at this server.
    fn client(&self, region: &str) -> aws_sdk_sagemakerruntime::Client {
        let conf = aws_sdk_sagemakerruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(failoverd::aws::clients::https_client())
            .region(Region::new(region.to_string()))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .retry_config(RetryConfig::disabled())
            .build();
        aws_sdk_sagemakerruntime::Client::from_conf(conf)
    }

    /// A raw HTTP/1.1 request to the server.
    fn http(&self, method: &str, path: &str, body: &str) -> Raw {
        http(self.port, method, path, &[], body.as_bytes())
    }

    /// `PUT /_lab/behaviour`, which must succeed.
    fn behave(&self, rule: Value) {
        let r = self.http("PUT", "/_lab/behaviour", &rule.to_string());
        assert_eq!(r.status, 200, "PUT /_lab/behaviour {rule}: {}", r.body);
    }

    fn stats(&self) -> Value {
        let r = self.http("GET", "/_lab/stats", "");
        assert_eq!(r.status, 200);
        serde_json::from_str(&r.body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw response.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Minimal HTTP/1.1 client: one request per connection.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

type Invoked = Result<InvokeEndpointOutput, SdkError<InvokeEndpointError>>;

async fn invoke(client: &aws_sdk_sagemakerruntime::Client, endpoint: &str, body: &[u8]) -> Invoked {
    client
        .invoke_endpoint()
        .endpoint_name(endpoint)
        .content_type("application/json")
        .body(Blob::new(body.to_vec()))
        .send()
        .await
}

/// The HTTP status and the service error of a failed call.
fn service_error(r: Invoked) -> (u16, InvokeEndpointError) {
    let e = r.expect_err("the call should fail");
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (status, e.into_service_error())
}

fn body_json(out: &InvokeEndpointOutput) -> Value {
    serde_json::from_slice(out.body().expect("a body").as_ref()).unwrap()
}

#[tokio::test]
async fn success_echoes_the_request_with_the_variant_header() {
    let server = Server::start();
    let client = server.client("us-west-2");
    let out = invoke(&client, "lab-serverless", br#"{"inputs":"hello"}"#)
        .await
        .unwrap();
    assert_eq!(out.invoked_production_variant(), Some("AllTraffic"));
    assert_eq!(out.content_type(), Some("application/json"));
    assert_eq!(
        body_json(&out),
        json!({"region": "us-west-2", "endpoint": "lab-serverless", "bytes": 18, "echo": r#"{"inputs":"hello"}"#, "headers": {}})
    );

    // The response's content type follows Accept; the echo is the first 64 bytes.
    let long = "x".repeat(100);
    let out = client
        .invoke_endpoint()
        .endpoint_name("lab-provisioned")
        .accept("text/csv")
        .body(Blob::new(long.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_type(), Some("text/csv"));
    let v = body_json(&out);
    assert_eq!(
        (v["bytes"].as_u64(), v["echo"].as_str()),
        (Some(100), Some(&long[..64]))
    );

    // Without SigV4 the region comes from x-lab-region, else "unknown".
    let raw = http(
        server.port,
        "POST",
        "/endpoints/ep/invocations",
        &[("x-lab-region", "eu-west-1")],
        b"hi",
    );
    assert_eq!(raw.status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&raw.body).unwrap()["region"],
        "eu-west-1"
    );
    let raw = http(server.port, "POST", "/endpoints/ep/invocations", &[], b"");
    assert_eq!(
        serde_json::from_str::<Value>(&raw.body).unwrap()["region"],
        "unknown"
    );
}

#[tokio::test]
async fn every_fault_arrives_as_the_sdks_typed_error() {
    let server = Server::start();
    let client = server.client("us-east-1");
    let fault = |code: &str| {
        server.behave(
            json!({"region": "us-east-1", "endpoint": "faulty", "error_rate": 1.0, "error": code}),
        );
    };

    fault("ModelNotReadyException");
    let (status, e) = service_error(invoke(&client, "faulty", b"{}").await);
    assert_eq!(status, 429);
    assert!(e.is_model_not_ready_exception(), "{e:?}");

    fault("ModelError");
    server.behave(json!({"region": "us-east-1", "endpoint": "faulty", "model_error_status": 418}));
    let (status, e) = service_error(invoke(&client, "faulty", b"{}").await);
    assert_eq!(status, 424);
    match e {
        InvokeEndpointError::ModelError(m) => {
            assert_eq!(m.original_status_code(), Some(418));
            assert!(
                m.original_message().is_some_and(|s| s.contains("418")),
                "{m:?}"
            );
            assert!(
                m.log_stream_arn()
                    .is_some_and(|s| s.contains("/aws/sagemaker/Endpoints/faulty")),
                "{m:?}"
            );
            assert!(m.message().is_some(), "the generic message is used: {m:?}");
        }
        other => panic!("expected ModelError, got {other:?}"),
    }

    fault("ServiceUnavailable");
    let (status, e) = service_error(invoke(&client, "faulty", b"{}").await);
    assert_eq!(status, 503);
    assert!(e.is_service_unavailable(), "{e:?}");

    fault("ValidationError");
    let (status, e) = service_error(invoke(&client, "faulty", b"{}").await);
    assert_eq!(status, 400);
    assert!(e.is_validation_error(), "{e:?}");

    fault("InternalFailure");
    let (status, e) = service_error(invoke(&client, "faulty", b"{}").await);
    assert_eq!(status, 500);
    assert!(e.is_internal_failure(), "{e:?}");

    // Not modelled by this SDK: Unhandled, but the code is there.
    fault("ThrottlingException");
    let (status, e) = service_error(invoke(&client, "faulty", b"{}").await);
    assert_eq!(status, 400);
    let typed = e.is_model_not_ready_exception()
        || e.is_model_error()
        || e.is_service_unavailable()
        || e.is_validation_error()
        || e.is_internal_failure()
        || e.is_internal_dependency_exception();
    assert!(!typed, "{e:?}");
    assert_eq!(e.code(), Some("ThrottlingException"));
    assert!(e.message().is_some());

    // Other endpoints are untouched; the raw wire form is AWS's.
    invoke(&client, "healthy", b"{}").await.unwrap();
    let raw = http(
        server.port,
        "POST",
        "/endpoints/faulty/invocations",
        &[("x-lab-region", "us-east-1")],
        b"{}",
    );
    assert_eq!(raw.status, 400);
    assert_eq!(raw.header("x-amzn-errortype"), Some("ThrottlingException"));
    let body: Value = serde_json::from_str(&raw.body).unwrap();
    assert_eq!(body["__type"], "ThrottlingException");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn oversized_payloads_and_empty_names_are_validation_errors() {
    let server = Server::start();
    let client = server.client("us-east-1");
    let limit = 6 * 1024 * 1024;
    let out = invoke(&client, "big", &vec![b'a'; limit]).await.unwrap();
    assert_eq!(body_json(&out)["bytes"], limit);
    let (status, e) = service_error(invoke(&client, "big", &vec![b'a'; limit + 1]).await);
    assert_eq!(status, 400);
    match e {
        InvokeEndpointError::ValidationError(v) => {
            assert!(
                v.message().is_some_and(|m| m.contains("payload too large")),
                "{v:?}"
            )
        }
        other => panic!("expected ValidationError, got {other:?}"),
    }
    // The SDK refuses an empty label itself, so go raw.
    let raw = http(server.port, "POST", "/endpoints//invocations", &[], b"{}");
    assert_eq!(raw.status, 400);
    assert_eq!(raw.header("x-amzn-errortype"), Some("ValidationError"));
    assert!(raw.body.contains("endpoint name"), "{}", raw.body);
    assert_eq!(
        server.stats()["us-east-1"]["big"]["errors"]["ValidationError"],
        1
    );
}

#[tokio::test]
async fn cold_start_is_not_ready_until_the_warm_up_is_over() {
    let server = Server::start();
    let client = server.client("us-west-2");
    server.behave(json!({"region": "*", "endpoint": "cold", "cold_start_after_idle": "400ms", "cold_start": "300ms"}));

    let started = Instant::now();
    let (status, e) = service_error(invoke(&client, "cold", b"{}").await);
    assert_eq!(status, 429);
    assert!(e.is_model_not_ready_exception(), "{e:?}");
    // Poll (bounded) until warm.
    let mut not_ready = 1;
    loop {
        match invoke(&client, "cold", b"{}").await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.into_service_error().is_model_not_ready_exception());
                not_ready += 1;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still not warm after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "warm after {:?}",
        started.elapsed()
    );
    // Warm now; other endpoints were never cold.
    invoke(&client, "cold", b"{}").await.unwrap();
    invoke(&client, "other", b"{}").await.unwrap();
    let s = server.stats();
    assert_eq!(
        s["us-west-2"]["cold"]["errors"]["ModelNotReadyException"],
        not_ready
    );
    assert_eq!(s["us-west-2"]["cold"]["successes"], 2);

    // Idle past the threshold: cold again.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let e = invoke(&client, "cold", b"{}")
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_model_not_ready_exception(), "{e:?}");
}

#[tokio::test]
async fn an_outage_in_one_region_leaves_the_others_alone() {
    let server = Server::start();
    let east = server.client("us-east-1");
    let west = server.client("us-west-2");
    server.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}));
    let (status, e) = service_error(invoke(&east, "lab-serverless", b"{}").await);
    assert_eq!(status, 503);
    assert!(e.is_service_unavailable(), "{e:?}");
    assert_eq!(
        body_json(&invoke(&west, "lab-serverless", b"{}").await.unwrap())["region"],
        "us-west-2"
    );

    // A more specific rule overrides the region-wide one, as a whole.
    server.behave(json!({"region": "us-east-1", "endpoint": "lab-provisioned", "latency": "1ms"}));
    invoke(&east, "lab-provisioned", b"{}").await.unwrap();
    assert!(invoke(&east, "lab-serverless", b"{}").await.is_err());

    server.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": false}));
    invoke(&east, "lab-serverless", b"{}").await.unwrap();
}

#[tokio::test]
async fn stats_count_invocations_successes_and_errors_until_reset() {
    let server = Server::start();
    let east = server.client("us-east-1");
    let west = server.client("us-west-2");
    server.behave(json!({"region": "us-east-1", "endpoint": "ep", "error_rate": 1.0}));
    for _ in 0..3 {
        invoke(&west, "ep", b"{}").await.unwrap();
    }
    for _ in 0..2 {
        invoke(&east, "ep", b"{}").await.unwrap_err();
    }
    server.behave(json!({"region": "us-east-1", "endpoint": "ep", "error_rate": 0.0}));
    invoke(&east, "ep", b"{}").await.unwrap();
    assert_eq!(
        server.stats(),
        json!({
            "us-east-1": {"ep": {"invocations": 3, "successes": 1, "errors": {"ThrottlingException": 2}}},
            "us-west-2": {"ep": {"invocations": 3, "successes": 3, "errors": {}}},
        })
    );

    let r = server.http("POST", "/_lab/reset", "");
    assert_eq!(r.status, 200);
    assert_eq!(server.stats(), json!({}));
    assert_eq!(server.http("GET", "/_lab/behaviour", "").body, "[]");
}

#[tokio::test]
async fn error_rate_sequences_repeat_after_a_reset() {
    let server = Server::start();
    let rule = json!({"region": "*", "endpoint": "*", "error_rate": 0.5, "seed": 7, "error": "ServiceUnavailable"});
    let run = || {
        server.behave(rule.clone());
        let seq: Vec<u16> = (0..30)
            .map(|_| http(server.port, "POST", "/endpoints/ep/invocations", &[], b"{}").status)
            .collect();
        assert_eq!(server.http("POST", "/_lab/reset", "").status, 200);
        seq
    };
    let first = run();
    assert!(first.contains(&200) && first.contains(&503), "{first:?}");
    assert_eq!(first, run());
}

#[test]
fn control_api_validates_requests_and_reports_rules() {
    let server = Server::start();
    for path in ["/ping", "/healthz"] {
        assert_eq!(server.http("GET", path, "").status, 200, "{path}");
    }
    assert_eq!(server.http("GET", "/nope", "").status, 404);
    let r = server.http("DELETE", "/_lab/behaviour", "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, PUT"));
    assert_eq!(
        server.http("GET", "/endpoints/ep/invocations", "").status,
        405
    );
    assert_eq!(server.http("GET", "/_lab/reset", "").status, 405);

    for (body, mentions) in [
        ("not json", "expected"),
        (
            r#"{"region":"*","endpoint":"*","latency":"soon"}"#,
            "latency",
        ),
        (
            r#"{"region":"*","endpoint":"*","error_rate":2}"#,
            "error_rate",
        ),
        (r#"{"region":"*","endpoint":"*","error":"Boom"}"#, "Boom"),
        (r#"{"region":"*","endpoint":"*","outgae":true}"#, "outgae"),
        (r#"{"endpoint":"*"}"#, "region"),
    ] {
        let r = server.http("PUT", "/_lab/behaviour", body);
        assert_eq!(r.status, 400, "{body}");
        assert!(r.body.contains(mentions), "{body}: {}", r.body);
    }

    server.behave(json!({"region": "us-east-1", "endpoint": "*", "latency": "20ms", "cold_start_after_idle": "1m"}));
    server.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}));
    let rules: Value =
        serde_json::from_str(&server.http("GET", "/_lab/behaviour", "").body).unwrap();
    assert_eq!(
        rules,
        json!([{
            "region": "us-east-1", "endpoint": "*", "latency": "20ms", "cold_start_after_idle": "1m",
            "cold_start": "0s", "error_rate": 0.0, "error": "ThrottlingException", "seed": 1,
            "outage": true, "model_error_status": 500,
            "slow_rate": 0.0, "slow_latency": "0s", "not_found": false,
            "after_body": null, "stream_parts": 3, "stream_interval": "0s",
            "stream_fault_after": null, "stream_fault": "model_stream_error",
        }])
    );
}

#[test]
fn sigterm_stops_the_server_with_exit_code_0() {
    let mut server = Server::start();
    assert_eq!(server.http("GET", "/healthz", "").status, 200);
    // SAFETY: signalling our own child by pid.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("listening"), "{}", server.log());
}

#[tokio::test]
async fn a_missing_endpoint_is_sagemakers_validation_error_in_that_region_only() {
    let server = Server::start();
    server.behave(json!({"region": "us-east-1", "endpoint": "gone", "not_found": true}));
    let (status, e) = service_error(invoke(&server.client("us-east-1"), "gone", b"{}").await);
    assert_eq!(status, 400);
    assert!(e.is_validation_error(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("Endpoint gone of account 000000000000 not found."),
        "SageMaker's wording, which the router recognises"
    );
    invoke(&server.client("us-west-2"), "gone", b"{}")
        .await
        .expect("other regions have it");
    assert_eq!(
        server.stats()["us-east-1"]["gone"]["errors"]["ValidationError"],
        1
    );
}

#[tokio::test]
async fn a_slow_tail_follows_the_seed_and_custom_attributes_come_back() {
    let server = Server::start();
    let client = server.client("us-east-1");
    server.behave(json!({"region": "*", "endpoint": "tail",
        "slow_rate": 0.3, "slow_latency": "400ms", "seed": 9}));
    let mut slow = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        invoke(&client, "tail", b"{}").await.unwrap();
        slow.push(started.elapsed() >= Duration::from_millis(400));
    }
    let n = slow.iter().filter(|s| **s).count();
    assert!((2..=12).contains(&n), "{n} of 20 slow at 0.3: {slow:?}");
    // The same seed after a reset: the same pattern.
    let r = server.http("POST", "/_lab/reset", "");
    assert_eq!(r.status, 200);
    server.behave(json!({"region": "*", "endpoint": "tail",
        "slow_rate": 0.3, "slow_latency": "400ms", "seed": 9}));
    for (i, was_slow) in slow.iter().enumerate() {
        let started = Instant::now();
        invoke(&client, "tail", b"{}").await.unwrap();
        let is_slow = started.elapsed() >= Duration::from_millis(400);
        assert_eq!(is_slow, *was_slow, "call {i}");
    }
    // A model may echo custom attributes; the lab's does.
    let out = client
        .invoke_endpoint()
        .endpoint_name("any")
        .custom_attributes("trace=7")
        .body(Blob::new(b"{}".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.custom_attributes(), Some("trace=7"));
    // Bad settings are refused.
    let r = server.http(
        "PUT",
        "/_lab/behaviour",
        r#"{"region":"*","endpoint":"*","slow_rate":2}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("slow_rate"), "{}", r.body);
}

/// Every part of a response stream and how it ended: `None` when the
/// stream ended cleanly, else the error event's kind (or the SDK's error).
async fn stream(
    client: &aws_sdk_sagemakerruntime::Client,
    endpoint: &str,
) -> (Vec<String>, Option<String>) {
    use aws_sdk_sagemakerruntime::types::ResponseStream;
    use aws_sdk_sagemakerruntime::types::error::ResponseStreamError;
    let mut out = client
        .invoke_endpoint_with_response_stream()
        .endpoint_name(endpoint)
        .content_type("application/json")
        .body(Blob::new(b"{}".to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("the stream starts ({endpoint}): {e:?}"));
    let mut parts = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), out.body.recv())
            .await
            .expect("a part within 10 s")
        {
            Ok(Some(ResponseStream::PayloadPart(p))) => {
                parts.push(String::from_utf8(p.bytes().unwrap().as_ref().to_vec()).unwrap())
            }
            Ok(Some(other)) => panic!("unexpected event {other:?}"),
            Ok(None) => return (parts, None),
            Err(e) => {
                let kind = match e.as_service_error() {
                    Some(ResponseStreamError::ModelStreamError(_)) => "ModelStreamError".into(),
                    Some(ResponseStreamError::InternalStreamFailure(_)) => {
                        "InternalStreamFailure".into()
                    }
                    _ => format!(
                        "{}",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    ),
                };
                return (parts, Some(kind));
            }
        }
    }
}

#[tokio::test]
async fn response_streams_part_by_part_and_fail_in_band() {
    let server = Server::start();
    let (parts, end) = stream(&server.client("us-east-1"), "lab-provisioned").await;
    assert_eq!(end, None);
    assert_eq!(
        parts,
        (0..3)
            .map(|i| format!(
                "{{\"region\":\"us-east-1\",\"endpoint\":\"lab-provisioned\",\"part\":{i}}}\n"
            ))
            .collect::<Vec<_>>()
    );
    server.behave(
        json!({"region": "*", "endpoint": "*", "stream_parts": 5, "stream_fault_after": 2}),
    );
    let (parts, end) = stream(&server.client("us-east-1"), "lab-provisioned").await;
    assert_eq!((parts.len(), end.as_deref()), (2, Some("ModelStreamError")));
    server.behave(json!({"region": "*", "endpoint": "*", "stream_fault": "cut"}));
    let (parts, end) = stream(&server.client("us-east-1"), "lab-provisioned").await;
    assert_eq!(parts.len(), 2);
    assert!(end.is_some(), "a cut stream is an error, not an end");
}
