//! The router judged by a client we did not write: boto3's
//! `sagemaker-runtime` client (from the lab's virtualenv) with its
//! `endpoint_url` pointed at a real `failoverd run` daemon (the lab's
//! us-east-1 configuration) in front of the lab's model server.
//!
//! One test per behaviour a SageMaker user depends on: a success with the
//! headers SageMaker returns, a 5 MiB body answered synchronously, and each
//! error raised as boto3 raises it against AWS: `ModelError` (424 with
//! `OriginalStatusCode`, `OriginalMessage`, `LogStreamArn`),
//! `ModelNotReadyException`, `ThrottlingException` (unmodelled, so a
//! `ClientError` with that code, as from AWS), `ServiceUnavailable` and
//! `ValidationError` (over 6 MB, and from the model's endpoint).
//!
//! The daemon binds its router to 127.0.0.1:0 and the test reads the bound
//! address from its startup log line. Its other AWS endpoints point at a
//! closed port: no control record, so it ranks regions by priority
//! (us-east-1 first).

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;
mod opstools;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, ModelServer, root, spawn_guarded, unique, venv};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

/// A daemon's router in front of a model server.
struct Daemon {
    model: ModelServer,
    router: String,
    /// The admin listener (`/metrics`).
    admin: String,
    _child: ChildGuard,
    _dir: PathBuf,
}

impl Daemon {
    fn start() -> Self {
        Self::start_with(&[], "")
    }

    /// With more environment (`FAILOVERD__...` overrides) and `models`
    /// (TOML `[[models]]` tables) added to a copy of the lab's base file.
    fn start_with(env: &[(&str, &str)], models: &str) -> Self {
        let model = ModelServer::start(None);
        let dir = std::env::temp_dir().join(unique("failoverd-boto3"));
        std::fs::create_dir_all(&dir).unwrap();
        let (child, bound) = common::router_daemon(&model, &dir, models, env);
        Self {
            model,
            router: bound.router.to_string(),
            admin: bound.admin.to_string(),
            _child: child,
            _dir: dir,
        }
    }

    fn behave(&self, rule: Value) {
        let (status, body) = common::http(
            "PUT",
            &format!("127.0.0.1:{}", self.model.port),
            "/_lab/behaviour",
            &rule.to_string(),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }

    /// Run the boto3 client with `args`; its JSON outcome.
    fn boto3(&self, args: &[&str]) -> Value {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "lab virtualenv missing: {} not found; create it with `chaos/lab.sh install`",
            python.display()
        );
        let out_file = self._dir.join(unique("boto3-out"));
        let mut child = spawn_guarded(
            Command::new(&python)
                .arg(root().join("tests/boto3/invoke.py"))
                .arg("--endpoint-url")
                .arg(format!("http://{}", self.router))
                .args(args)
                .env_remove("AWS_PROFILE")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out_file).unwrap())
                .stderr(Stdio::inherit()),
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "boto3 did not finish in 120 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = std::fs::read_to_string(&out_file).unwrap();
        assert!(status.success(), "boto3 client failed ({status}): {out}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }
}

/// Assert that boto3 raised `exception` with `code` and `status`.
fn raised(v: &Value, exception: &str, code: &str, status: u64) {
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["exception"], exception, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status, "{v}");
}

#[test]
fn boto3_gets_the_answer_and_sagemakers_headers() {
    let d = Daemon::start();
    let v = d.boto3(&["--accept", "text/csv", "--custom-attributes", "trace-id=42"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 200);
    assert_eq!(v["content_type"], "text/csv");
    assert_eq!(v["invoked_production_variant"], "AllTraffic");
    assert_eq!(v["custom_attributes"], "trace-id=42");
    assert_eq!(v["request_id"].as_str().map(str::len), Some(16), "{v}");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["endpoint"], "lab-provisioned");
    assert_eq!(body["region"], "us-east-1");
}

#[test]
fn boto3_5_mib_is_answered_synchronously() {
    let d = Daemon::start();
    let v = d.boto3(&["--size", &(5 * MIB).to_string()]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 200, "never 202: {v}");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["bytes"],
        5 * MIB,
        "the model's answer, not a job: {body}"
    );
}

#[test]
fn boto3_over_6_mb_raises_validation_error() {
    let d = Daemon::start();
    let v = d.boto3(&["--size", &(6 * MIB + 1).to_string()]);
    raised(&v, "ValidationError", "ValidationError", 413);
    assert_eq!(v["modeled"], true);
    let (calls, _) = stats_total(&d);
    assert_eq!(calls, 0, "refused before any call");
}

#[test]
fn boto3_model_error_is_424_with_the_original_status() {
    let d = Daemon::start();
    d.behave(json!({"region": "*", "endpoint": "*", "error_rate": 1.0,
        "error": "ModelError", "model_error_status": 418}));
    let v = d.boto3(&[]);
    raised(&v, "ModelError", "ModelError", 424);
    assert_eq!(v["original_status_code"], 418, "{v}");
    assert_eq!(v["original_message"], "the lab's model answered 418");
    assert!(
        v["log_stream_arn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:logs:us-east-1:")),
        "{v}"
    );
}

#[test]
fn boto3_model_not_ready_everywhere() {
    let d = Daemon::start();
    d.behave(json!({"region": "*", "endpoint": "*",
        "cold_start_after_idle": "1h", "cold_start": "1h"}));
    let v = d.boto3(&[]);
    raised(&v, "ModelNotReadyException", "ModelNotReadyException", 429);
    assert_eq!(v["modeled"], true);
}

#[test]
fn boto3_throttling_exception() {
    let d = Daemon::start();
    d.behave(json!({"region": "*", "endpoint": "*", "error_rate": 1.0,
        "error": "ThrottlingException"}));
    let v = d.boto3(&[]);
    // Unmodelled in the SageMaker runtime API: boto3 raises a ClientError
    // with the code, exactly as against AWS.
    raised(&v, "ClientError", "ThrottlingException", 429);
    assert_eq!(v["modeled"], false);
}

#[test]
fn boto3_service_unavailable() {
    let d = Daemon::start();
    d.behave(json!({"region": "*", "endpoint": "*", "outage": true}));
    let v = d.boto3(&[]);
    raised(&v, "ServiceUnavailable", "ServiceUnavailable", 503);
    assert_eq!(v["modeled"], true);
}

#[test]
fn boto3_validation_error_from_the_endpoint_and_for_unknown_models() {
    let d = Daemon::start();
    d.behave(json!({"region": "*", "endpoint": "*", "error_rate": 1.0,
        "error": "ValidationError"}));
    let v = d.boto3(&[]);
    raised(&v, "ValidationError", "ValidationError", 400);
    let v = d.boto3(&["--model", "no-such-model"]);
    raised(&v, "ValidationError", "ValidationError", 404);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-model")),
        "{v}"
    );
}

#[test]
fn boto3_sends_every_header_and_keeps_a_session_in_its_region() {
    // One failure ejects a target, so a region fails at once.
    let d = Daemon::start_with(&[("FAILOVERD__ROUTER__BREAKER_FAILURES", "1")], "");
    let v = d.boto3(&[
        "--TargetModel",
        "m1.tar.gz",
        "--TargetVariant",
        "blue",
        "--TargetContainerHostname",
        "c1",
        "--InferenceId",
        "inf-1",
        "--EnableExplanations",
        "`true`",
        "--InferenceComponentName",
        "ic-1",
        "--SessionId",
        "NEW_SESSION",
    ]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["invoked_production_variant"], "blue");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    for (header, value) in [
        ("target-model", "m1.tar.gz"),
        ("target-variant", "blue"),
        ("target-container-hostname", "c1"),
        ("inference-id", "inf-1"),
        ("enable-explanations", "`true`"),
        ("inference-component", "ic-1"),
        ("session-id", "NEW_SESSION"),
    ] {
        assert_eq!(
            body["headers"][format!("x-amzn-sagemaker-{header}")],
            value,
            "{header}: {body}"
        );
    }
    let new = v["new_session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    let id = new.split(';').next().unwrap().to_string();
    assert!(id.starts_with("lab-us-east-1-"), "{v}");
    // In the session, then closed by the model.
    let v = d.boto3(&["--SessionId", &id, "--body", "close"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["closed_session_id"], id.as_str(), "{v}");

    // A second session; then us-east-1 fails and its target is ejected.
    let v = d.boto3(&["--SessionId", "NEW_SESSION"]);
    let new = v["new_session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    let id = new.split(';').next().unwrap().to_string();
    d.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}));
    let v = d.boto3(&[]);
    assert_eq!(v["ok"], true, "a request with no session fails over: {v}");
    let (calls, _) = stats_total(&d);
    // The session cannot follow: boto3 raises ValidationError, no call made.
    let v = d.boto3(&["--SessionId", &id]);
    raised(&v, "ValidationError", "ValidationError", 400);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("NEW_SESSION")),
        "{v}"
    );
    assert_eq!(stats_total(&d).0, calls, "no call made");
}

#[test]
fn boto3_never_runs_a_non_idempotent_request_twice() {
    let d = Daemon::start_with(
        &[("FAILOVERD__ROUTER__BREAKER_FAILURES", "1000")],
        "[[models]]\nname = \"pay\"\nidempotent = false\n",
    );
    // Faults after the model server read the request: a 5xx, the
    // connection closed without an answer, a 200 cut off. boto3 keeps its
    // own retries (they resend 5xx answers by themselves).
    for (fault, rule) in [
        ("5xx", json!({"outage": true})),
        ("reset", json!({"after_body": "reset"})),
        ("cut", json!({"after_body": "cut"})),
    ] {
        let mut rule = rule;
        rule["region"] = json!("us-east-1");
        rule["endpoint"] = json!("*");
        let (before, _) = stats_total(&d);
        d.behave(rule);
        let v = d.boto3(&["--model", "pay", "--retries", "default"]);
        raised(&v, "ModelError", "ModelError", 424);
        assert_eq!(
            v["headers"]["x-failoverd-outcome"], "unknown",
            "{fault}: {v}"
        );
        assert_eq!(v["retry_attempts"], 0, "{fault}: boto3 did not resend: {v}");
        let (after, _) = stats_total(&d);
        assert_eq!(after - before, 1, "{fault}: invoked exactly once: {v}");
        d.behave(
            json!({"region": "us-east-1", "endpoint": "*", "outage": false, "after_body": null}),
        );
    }
}

#[test]
fn boto3_spills_over_a_throttled_region_only_when_the_model_says_so() {
    // No throttling retries: a spill is paid from the retry budget, and
    // the throttled requests before it (the router's own retries, and
    // boto3's) would otherwise spend it, leaving `pay`'s spill refused
    // whenever the test ran faster than the budget's floor refills it
    // (CI saw it fail once).
    let d = Daemon::start_with(
        &[
            ("FAILOVERD__ROUTER__BREAKER_FAILURES", "1000"),
            ("FAILOVERD__ROUTER__THROTTLE_RETRIES", "0"),
        ],
        "[[models]]\nname = \"spilly\"\nspill_over = [\"throttling\"]\n\
         [[models]]\nname = \"pay\"\nidempotent = false\nspill_over = true\n",
    );
    // A session opened in us-east-1.
    let v = d.boto3(&["--model", "spilly", "--SessionId", "NEW_SESSION"]);
    let new = v["new_session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    let session = new.split(';').next().unwrap().to_string();
    // us-east-1 down for one request: us-west-2 answers it, so the router
    // has seen us-west-2 answer lately (warm).
    d.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}));
    let v = d.boto3(&[]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["headers"]["x-failoverd-region"], "us-west-2", "{v}");
    // us-east-1 back, throttling every call.
    d.behave(
        json!({"region": "us-east-1", "endpoint": "*", "outage": false,
        "error_rate": 1.0, "error": "ThrottlingException"}),
    );

    // Spill-over off (the default): ThrottlingException, as before.
    let v = d.boto3(&[]);
    raised(&v, "ClientError", "ThrottlingException", 429);

    // On: the answer comes from us-west-2, at the second attempt.
    let v = d.boto3(&["--model", "spilly"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["headers"]["x-failoverd-region"], "us-west-2", "{v}");
    assert_eq!(v["headers"]["x-failoverd-attempts"], "2", "{v}");

    // A model that must not run twice spills too: throttling says the
    // model did not run. Exactly one call reached each region.
    let before = region_calls(&d);
    let v = d.boto3(&["--model", "pay"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["headers"]["x-failoverd-region"], "us-west-2", "{v}");
    let after = region_calls(&d);
    assert_eq!(after.0 - before.0, 1, "one throttled call in us-east-1");
    assert_eq!(after.1 - before.1, 1, "one call in us-west-2");

    // A request in a session stays in its region: no spill.
    let v = d.boto3(&["--model", "spilly", "--SessionId", &session]);
    raised(&v, "ClientError", "ThrottlingException", 429);

    // /metrics counts the spills per region pair, and promtool accepts it.
    let (status, text) = common::http("GET", &d.admin, "/metrics", "").unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(
            "failoverd_router_spills_total{from=\"us-east-1\",to=\"us-west-2\",cause=\"throttling\"} 2"
        ),
        "{text}"
    );
    let (ok, said) = opstools::promtool_check_metrics(&text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

/// Invocations the model server counted in (us-east-1, us-west-2).
fn region_calls(d: &Daemon) -> (u64, u64) {
    let (_, body) = common::http(
        "GET",
        &format!("127.0.0.1:{}", d.model.port),
        "/_lab/stats",
        "",
    )
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let region = |r: &str| {
        v[r].as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .map(|e| e["invocations"].as_u64().unwrap_or(0))
            .sum()
    };
    (region("us-east-1"), region("us-west-2"))
}

/// (invocations, successes) over every region and endpoint.
fn stats_total(d: &Daemon) -> (u64, u64) {
    let (_, body) = common::http(
        "GET",
        &format!("127.0.0.1:{}", d.model.port),
        "/_lab/stats",
        "",
    )
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut out = (0, 0);
    for endpoints in v.as_object().into_iter().flat_map(|m| m.values()) {
        for e in endpoints.as_object().into_iter().flat_map(|m| m.values()) {
            out.0 += e["invocations"].as_u64().unwrap_or(0);
            out.1 += e["successes"].as_u64().unwrap_or(0);
        }
    }
    out
}
