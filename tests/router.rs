//! The inference router in-process, against the lab's model server (a real
//! process) through real SageMaker runtime SDK clients: cold starts,
//! throttling and the retry budget, a regional outage, payload limits,
//! deadlines, refusals, model errors, load shedding and drain.
//!
//! The router runs on 127.0.0.1:0 with no reconcile loop: its view of the
//! control record and health is whatever the test puts in `Shared`, so
//! region choice is deterministic. DynamoDB points at a closed port (the
//! routing table read fails fast; defaults apply).

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ModelServer, Moto, root};
use failoverd::aws::AwsClients;
use failoverd::aws::jobs::DynamoJobs;
use failoverd::config::{self, Config, EnvSource};
use failoverd::ports::clock::{Clock, Mono};
use failoverd::ports::jobs::JobStore;
use failoverd::router::{self, Router};
use failoverd::state::Shared;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const MIB: usize = 1024 * 1024;

/// A response as the client saw it.
#[derive(Debug)]
struct Got {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Got {
    fn h(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    fn attempts(&self) -> u32 {
        self.h("x-failoverd-attempts").parse().unwrap()
    }
}

/// One HTTP/1.1 request over a fresh connection.
async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Got> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    // Write the body while reading: the router may answer (413) and close
    // before it has read a large body.
    let (mut rd, mut wr) = s.into_split();
    let body_owned = body.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&body_owned).await;
        wr
    });
    let mut out = Vec::new();
    let read = rd.read_to_end(&mut out).await;
    let _ = writer.await;
    if out.is_empty() {
        read?;
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Got {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A router on 127.0.0.1:0 over the lab's configuration.
struct Setup {
    model: ModelServer,
    /// moto, for the batch path's S3 and the control table.
    moto: Option<Moto>,
    config: Arc<Config>,
    clients: Arc<AwsClients>,
    port: u16,
    router: Arc<Router>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn lab_config(model: &ModelServer, moto: Option<&Moto>, tweak: impl FnOnce(&mut Config)) -> Config {
    let dead = "http://127.0.0.1:9".to_string();
    let env: EnvSource = [
        ("FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME", model.url()),
        (
            "FAILOVERD__ENDPOINTS__DYNAMODB",
            moto.map_or(dead.clone(), Moto::url),
        ),
        (
            "FAILOVERD__ENDPOINTS__S3",
            moto.map_or(dead.clone(), Moto::url),
        ),
        ("FAILOVERD__ENDPOINTS__ROUTE53", dead.clone()),
        ("FAILOVERD__ENDPOINTS__SFN", dead.clone()),
        ("FAILOVERD__ENDPOINTS__SAGEMAKER", dead),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut cfg = config::load(&root().join("regions/lab/us-east-1.toml"), &env).unwrap();
    cfg.router.cold_start_delay = Duration::from_millis(100);
    cfg.router.default_deadline = Duration::from_secs(10);
    tweak(&mut cfg);
    cfg
}

async fn spawn_router(
    config: &Arc<Config>,
    clients: &Arc<AwsClients>,
    shared: &Arc<Shared>,
) -> (
    Arc<Router>,
    u16,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (_tx, rx) = watch::channel(config.clone());
    let router = Router::new(rx, failoverd::daemon::router_ports(clients), shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(router::serve(
        listener,
        router.clone(),
        shutdown_rx,
        Duration::from_secs(5),
    ));
    (router, port, shutdown, task)
}

/// No batch endpoint in any region.
fn no_batch(c: &mut Config) {
    for r in &mut c.regions {
        r.sagemaker.batch = None;
    }
    for s in c.models.iter_mut().flat_map(|m| &mut m.serving) {
        s.batch = None;
    }
}

impl Setup {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Without moto: the batch path has nowhere to store, so the tests
    /// that need no batch endpoint say so in `tweak`.
    async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let model = ModelServer::start(None);
        let cfg = lab_config(&model, None, tweak);
        Self::assemble(model, None, cfg).await
    }

    /// With moto serving S3 and DynamoDB: the control table and the batch
    /// buckets of us-east-1 and us-west-2 exist.
    async fn start_with_moto(tweak: impl FnOnce(&mut Config)) -> Self {
        let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
        let model = ModelServer::start(Some(&moto.url()));
        let cfg = lab_config(&model, Some(&moto), tweak);
        let clients = AwsClients::new(common::sdk_config(), cfg.endpoints.clone());
        let control = cfg.control_region_for(&cfg.region).to_string();
        failoverd::aws::dynamo::create_control_table(
            &clients.dynamodb(&control),
            &cfg.tables.control,
        )
        .await
        .unwrap();
        for region in ["us-east-1", "us-west-2"] {
            let mut req = clients
                .s3(region)
                .create_bucket()
                .bucket(router::batch::bucket(&cfg, region));
            if region != "us-east-1" {
                req = req.create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(region.into())
                        .build(),
                );
            }
            req.send().await.unwrap();
        }
        Self::assemble(model, Some(moto), cfg).await
    }

    async fn assemble(model: ModelServer, moto: Option<Moto>, cfg: Config) -> Self {
        let config = Arc::new(cfg);
        let clients = Arc::new(AwsClients::new(
            common::sdk_config(),
            config.endpoints.clone(),
        ));
        let shared = Arc::new(Shared::default());
        let (router, port, shutdown, task) = spawn_router(&config, &clients, &shared).await;
        Self {
            model,
            moto,
            config,
            clients,
            port,
            router,
            shared,
            shutdown,
            task: Some(task),
        }
    }

    /// Stop the router and start a fresh one (nothing kept in memory).
    async fn restart_router(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        let (router, port, shutdown, task) =
            spawn_router(&self.config, &self.clients, &self.shared).await;
        self.router = router;
        self.port = port;
        self.shutdown = shutdown;
        self.task = Some(task);
    }

    /// Through the SageMaker wire API.
    async fn invoke(&self, model: &str, headers: &[(&str, &str)], body: &[u8]) -> Got {
        request(
            self.port,
            "POST",
            &format!("/endpoints/{model}/invocations"),
            headers,
            body,
        )
        .await
        .unwrap()
    }

    /// Through the native API (the one with the batch path).
    async fn invoke_native(&self, model: &str, headers: &[(&str, &str)], body: &[u8]) -> Got {
        request(
            self.port,
            "POST",
            &format!("/v1/models/{model}/invoke"),
            headers,
            body,
        )
        .await
        .unwrap()
    }

    async fn lab(&self, method: &str, path: &str, body: Value) -> Value {
        let b = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let got = request(self.model.port, method, path, &[], &b)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{method} {path} to the model server on port {}: {e}",
                    self.model.port
                )
            });
        assert_eq!(got.status, 200, "{method} {path}: {}", got.body);
        serde_json::from_str(&got.body).unwrap()
    }

    async fn behave(&self, rule: Value) {
        self.lab("PUT", "/_lab/behaviour", rule).await;
    }

    /// `(invocations, successes, errors[code])` of (region, endpoint).
    async fn stats(&self, region: &str, endpoint: &str) -> (u64, u64, Value) {
        let s = self.lab("GET", "/_lab/stats", Value::Null).await;
        let e = &s[region][endpoint];
        (
            e["invocations"].as_u64().unwrap_or(0),
            e["successes"].as_u64().unwrap_or(0),
            e["errors"].clone(),
        )
    }

    async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("the router stops within its grace")
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_is_retried_then_succeeds() {
    let s = Setup::start().await;
    // Cold until warmed for 150 ms: attempt 1 starts the warm-up, attempt 2
    // (after 100 ms) is still too early, attempt 3 (after 200 ms more) lands.
    s.behave(json!({"region": "us-east-1", "endpoint": "lab-serverless",
        "cold_start_after_idle": "1h", "cold_start": "150ms"}))
        .await;
    let got = s
        .invoke(
            "chat",
            &[("Content-Type", "application/json")],
            b"{\"x\":1}",
        )
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.h("x-failoverd-path"), "serverless");
    assert_eq!(got.h("x-failoverd-region"), "us-east-1");
    assert_eq!(got.attempts(), 3);
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["endpoint"], "lab-serverless");
    let (calls, ok, errors) = s.stats("us-east-1", "lab-serverless").await;
    assert_eq!((calls, ok), (3, 1));
    assert_eq!(errors["ModelNotReadyException"], 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_exhausted_falls_back_to_provisioned() {
    let s = Setup::start().await;
    s.behave(json!({"region": "*", "endpoint": "lab-serverless",
        "cold_start_after_idle": "1h", "cold_start": "1h"}))
        .await;
    let started = Instant::now();
    let got = s.invoke("chat", &[], b"hello").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.h("x-failoverd-path"), "provisioned");
    assert_eq!(got.h("x-failoverd-region"), "us-east-1");
    assert_eq!(
        got.attempts(),
        4,
        "1 + 2 cold-start retries, then provisioned"
    );
    // delay × attempt: 100 ms + 200 ms of waiting.
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (calls, _, errors) = s.stats("us-east-1", "lab-serverless").await;
    assert_eq!(calls, 3);
    assert_eq!(errors["ModelNotReadyException"], 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_with_backoff() {
    // A budget of one retry per request, so what happens depends only on the
    // deterministic throttling pattern, not on how fast the machine is (the
    // budget's cap has its own test below).
    let s = Setup::start_with(|c| {
        c.router.retry_budget = 1.0;
        c.router.throttle_retries = 3;
        c.router.throttle_base_delay = Duration::from_millis(100);
    })
    .await;
    // About every other call throttled (deterministic pattern from the seed).
    s.behave(json!({"region": "us-east-1", "endpoint": "lab-provisioned",
        "error_rate": 0.5, "error": "ThrottlingException", "seed": 7}))
        .await;
    let (mut retried_ok, mut attempts_total) = (0, 0);
    for _ in 0..10 {
        let started = Instant::now();
        let got = s.invoke("default", &[], b"x").await;
        let took = started.elapsed();
        assert!(matches!(got.status, 200 | 429), "{got:?}");
        if got.status == 429 {
            assert_eq!(got.h("retry-after"), "1");
            assert_eq!(got.h("x-amzn-errortype"), "ThrottlingException");
        }
        assert_eq!(got.h("x-failoverd-region"), "us-east-1", "{got:?}");
        let attempts = got.attempts();
        attempts_total += attempts;
        if got.status == 200 && attempts > 1 {
            retried_ok += 1;
        }
        // Backoff: retry k waits at least the fixed half of 100 ms x 2^(k-1).
        let floor: u64 = (1..attempts).map(|k| 50u64 << (k - 1)).sum();
        assert!(
            took >= Duration::from_millis(floor),
            "{attempts} attempts in {took:?}: less than the {floor} ms of backoff"
        );
    }
    assert!(
        retried_ok >= 1,
        "some throttled request succeeded on a retry"
    );
    // Every attempt reached the model: the router is the only retry loop.
    let (calls, _, _) = s.stats("us-east-1", "lab-provisioned").await;
    assert_eq!(calls, attempts_total as u64);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_caps_the_extra_load() {
    let s = Setup::start().await;
    s.behave(json!({"region": "*", "endpoint": "*",
        "error_rate": 1.0, "error": "ThrottlingException"}))
        .await;
    let n: u64 = 60;
    let started = Instant::now();
    for _ in 0..n {
        let got = s.invoke("default", &[], b"x").await;
        assert_eq!(got.status, 429, "{got:?}");
        assert_eq!(
            got.h("x-failoverd-region"),
            "us-east-1",
            "throttling does not spill over"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let (calls, _, errors) = s.stats("us-east-1", "lab-provisioned").await;
    assert_eq!(errors["ThrottlingException"].as_u64(), Some(calls));
    let retries = calls - n;
    // 20% of the requests, plus the floor: one in hand and one per second.
    let bound = 0.2 * n as f64 + 1.0 + secs.ceil() + 1.0;
    assert!(
        (retries as f64) <= bound,
        "{retries} retries for {n} requests in {secs:.1}s; the budget allows {bound:.1}"
    );
    assert!(retries >= 10, "the budget was used: {retries} retries");
    assert!(
        s.router
            .metrics
            .render()
            .contains("failoverd_router_retry_budget_refusals_total"),
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regional_outage_goes_cross_region() {
    let s = Setup::start().await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}))
        .await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.h("x-failoverd-region"), "us-west-2");
    assert_eq!(got.h("x-failoverd-path"), "provisioned");
    assert_eq!(got.attempts(), 2);
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(
        body["region"], "us-west-2",
        "signed for us-west-2 by its own client"
    );
    // Every region out: 503 with Retry-After, after trying each once.
    s.behave(json!({"region": "*", "endpoint": "*", "outage": true}))
        .await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.status, 503, "{got:?}");
    assert_eq!(got.h("retry-after"), "1");
    assert_eq!(got.attempts(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_ejects_a_failing_region() {
    let s = Setup::start().await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}))
        .await;
    // Five consecutive failures eject us-east-1's provisioned endpoint...
    for _ in 0..5 {
        let got = s.invoke("default", &[], b"x").await;
        assert_eq!((got.status, got.attempts()), (200, 2), "{got:?}");
    }
    // ...after which requests go straight to us-west-2.
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!((got.status, got.attempts()), (200, 1), "{got:?}");
    assert_eq!(got.h("x-failoverd-region"), "us-west-2");
    assert!(
        s.router.metrics.render().contains(
            "failoverd_router_ejections_total{path=\"provisioned\",region=\"us-east-1\"} 1"
        )
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_limits() {
    let s = Setup::start_with(no_batch).await;
    // No batch path served: over 6 MiB is refused before any call.
    let big = vec![b'a'; 7 * MIB];
    let got = s.invoke("default", &[], &big).await;
    assert_eq!(got.status, 413, "{}", got.body);
    assert_eq!(got.attempts(), 0);
    // 5 MiB: too big for serverless, so a serverless_preferred request
    // moves down the chain to provisioned.
    let five = vec![b'a'; 5 * MIB];
    let got = s.invoke("chat", &[], &five).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.h("x-failoverd-path"), "provisioned");
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["bytes"], 5 * MIB);
    let (calls, _, _) = s.stats("us-east-1", "lab-serverless").await;
    assert_eq!(calls, 0, "never sent to serverless");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_is_honoured() {
    let s = Setup::start().await;
    s.behave(json!({"region": "*", "endpoint": "*", "latency": "3s"}))
        .await;
    let started = Instant::now();
    let got = s.invoke("default", &[("X-Deadline-Ms", "300")], b"x").await;
    let took = started.elapsed();
    assert_eq!(got.status, 504, "{got:?}");
    assert!(
        took < Duration::from_millis(1500),
        "504 promptly: took {took:?}"
    );
    assert!(took >= Duration::from_millis(300));
    // Cold-start waits that would overrun the deadline are not taken.
    s.behave(json!({"region": "*", "endpoint": "*", "latency": "0s"}))
        .await;
    s.behave(json!({"region": "*", "endpoint": "lab-serverless",
        "cold_start_after_idle": "1h", "cold_start": "1h"}))
        .await;
    let started = Instant::now();
    let got = s.invoke("chat", &[("X-Deadline-Ms", "50")], b"x").await;
    assert_eq!(got.status, 200, "fell back at once: {got:?}");
    assert_eq!(got.h("x-failoverd-path"), "provisioned");
    assert!(started.elapsed() < Duration::from_millis(1000));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_unknown_model_bad_class_bad_deadline() {
    let s = Setup::start().await;
    let got = s.invoke("nope", &[], b"x").await;
    assert_eq!(got.status, 404, "{got:?}");
    assert_eq!(
        (
            got.h("x-failoverd-path"),
            got.h("x-failoverd-region"),
            got.attempts()
        ),
        ("none", "none", 0)
    );
    let got = s
        .invoke("default", &[("X-Traffic-Class", "platinum")], b"x")
        .await;
    assert_eq!(got.status, 400, "{got:?}");
    assert!(got.body.contains("platinum"));
    let got = s
        .invoke("default", &[("X-Deadline-Ms", "soon")], b"x")
        .await;
    assert_eq!(got.status, 400, "{got:?}");
    let got = request(s.port, "GET", "/endpoints/default/invocations", &[], b"")
        .await
        .unwrap();
    assert_eq!(got.status, 405);
    let got = request(s.port, "POST", "/elsewhere", &[], b"")
        .await
        .unwrap();
    assert_eq!(got.status, 404);
    // A known class overrides the model's default.
    let got = s
        .invoke(
            "default",
            &[("X-Traffic-Class", "serverless_preferred")],
            b"x",
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.h("x-failoverd-path"), "serverless");
    // The native API.
    let got = request(
        s.port,
        "POST",
        "/v1/models/default/invoke",
        &[("Accept", "text/csv")],
        b"1,2",
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.h("content-type"), "text/csv", "Accept passes through");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_and_validation_errors_pass_through_without_retry() {
    let s = Setup::start().await;
    s.behave(json!({"region": "*", "endpoint": "lab-provisioned",
        "error_rate": 1.0, "error": "ModelError", "model_error_status": 418}))
        .await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(
        (got.status, got.attempts()),
        (424, 1),
        "SageMaker's 424, not the container's status: {got:?}"
    );
    assert_eq!(got.h("x-amzn-errortype"), "ModelError");
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["OriginalStatusCode"], 418, "{body}");
    assert_eq!(body["OriginalMessage"], "the lab's model answered 418");
    assert!(
        body["LogStreamArn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:logs:us-east-1:")),
        "{body}"
    );
    s.behave(json!({"region": "*", "endpoint": "lab-provisioned",
        "error": "ValidationError"}))
        .await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!((got.status, got.attempts()), (400, 1), "{got:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_is_shed_and_drain_finishes_in_flight() {
    let s = Setup::start_with(|c| c.router.max_in_flight = 1).await;
    s.behave(json!({"region": "*", "endpoint": "*", "latency": "800ms"}))
        .await;
    let port = s.port;
    let slow = tokio::spawn(async move {
        request(port, "POST", "/endpoints/default/invocations", &[], b"x")
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.status, 503, "{got:?}");
    assert_eq!(got.h("retry-after"), "1");
    // Drain: the request in flight completes; new ones are refused.
    s.router.begin_drain();
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.status, 503);
    assert_eq!(slow.await.unwrap().status, 200);
    s.stop().await;
}

/// A steady control record naming `active`.
fn control_record(active: &str) -> failoverd::core::control::ControlRecord {
    use failoverd::core::control::{ControlRecord, Mode, Phase};
    ControlRecord {
        version: 1,
        incarnation: "lab".into(),
        epoch: 1,
        active: active.into(),
        mode: Mode::Auto,
        phase: Phase::Steady,
        target: None,
        execution: None,
        initiator: None,
        state_machine: None,
        previous: None,
        changed_by: "test".into(),
        changed_at: 0,
        reason: String::new(),
        last_failover_at: None,
        switched_at: None,
        step: failoverd::core::control::Step::Done,
        aborts: 0,
        ungraceful: false,
        old_region_healthy: true,
        forced: false,
        proposal: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_control_record_and_health() {
    use failoverd::core::health::{Tracker, Verdict};
    let s = Setup::start().await;
    s.shared.status.lock().unwrap().record = Some(control_record("eu-west-1"));
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(
        got.h("x-failoverd-region"),
        "eu-west-1",
        "the record's active region"
    );
    {
        let mut st = s.shared.status.lock().unwrap();
        st.trackers.insert(
            "eu-west-1".into(),
            Tracker {
                verdict: Verdict::Down,
                ..Tracker::default()
            },
        );
    }
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(
        got.h("x-failoverd-region"),
        "us-east-1",
        "active seen down: highest-priority region not down"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stood_down_active_stops_ranking_itself_first() {
    use failoverd::core::control::LeaseClock;
    // us-west-2 outranks the local us-east-1 by priority.
    let s = Setup::start_with(|c| {
        for r in &mut c.regions {
            r.priority = if r.name == "us-west-2" { 1 } else { 5 };
        }
    })
    .await;
    // The lease counts on the daemon's monotonic clock.
    let now = failoverd::ports::clock::SystemClock.mono();
    {
        let mut st = s.shared.status.lock().unwrap();
        st.region = "us-east-1".into();
        st.lease_ms = 4000;
        st.lease = LeaseClock {
            confirmed_at: Some(now),
            named_since: Some(now),
            preceded_since: None,
        };
        st.record = Some(control_record("us-east-1"));
    }
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(
        got.h("x-failoverd-region"),
        "us-east-1",
        "named active, lease held: local first"
    );
    // The last confirmed read is older than the lease: stood down.
    s.shared.status.lock().unwrap().lease.confirmed_at = Some(Mono(now.0 - 10_000));
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(
        got.h("x-failoverd-region"),
        "us-west-2",
        "stood down: by priority and health, not as the active region"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_gets_408() {
    let s = Setup::start_with(|c| c.router.body_read_timeout = Duration::from_millis(200)).await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    conn.write_all(
        b"POST /endpoints/default/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut out))
        .await
        .expect("answered before the client finished")
        .unwrap();
    let head = String::from_utf8_lossy(&out[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(2));
    s.stop().await;
}

impl Setup {
    /// Poll `location` until the job is done; the final response.
    async fn wait_job(&self, location: &str) -> Got {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = request(self.port, "GET", location, &[], b"").await.unwrap();
            if got.status != 202 {
                return got;
            }
            assert_eq!(got.h("x-failoverd-job-status"), "in_progress");
            assert!(Instant::now() < deadline, "job {location} still pending");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_job_is_stored_then_pollable_across_a_restart() {
    let mut s = Setup::start_with_moto(|_| {}).await;
    s.behave(json!({"region": "*", "endpoint": "lab-async", "latency": "300ms"}))
        .await;
    // At the batch threshold (4 MiB in the lab): the batch path.
    let payload = vec![b'b'; 4 * MIB];
    let got = s
        .invoke_native(
            "default",
            &[("Content-Type", "application/x-npy")],
            &payload,
        )
        .await;
    assert_eq!(got.status, 202, "{got:?}");
    assert_eq!(got.h("x-failoverd-path"), "batch");
    assert_eq!(got.h("x-failoverd-region"), "us-east-1");
    let location = got.h("location").to_string();
    assert!(location.starts_with("/v1/jobs/"), "{location}");
    let accepted: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(accepted["location"], location.as_str());

    // Durable before the 202: payload in S3, job in DynamoDB.
    let id = location.trim_start_matches("/v1/jobs/");
    let job = DynamoJobs::new(
        s.clients.clone(),
        Arc::new(failoverd::ports::clock::SystemClock),
    )
    .get(router::batch::job_table(&s.config), id)
    .await
    .unwrap()
    .expect("the job item exists");
    assert_eq!(job.region, "us-east-1");
    assert!(job.output.is_some());
    let stored = s
        .clients
        .s3("us-east-1")
        .get_object()
        .bucket("failoverd-batch-us-east-1")
        .key(format!("jobs/{id}/input"))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.content_length(), Some(4 * MIB as i64));

    // A fresh router (nothing in memory) finds the job and its result.
    s.restart_router().await;
    let done = s.wait_job(&location).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.h("x-failoverd-job-status"), "completed");
    let result: Value = serde_json::from_str(&done.body).unwrap();
    assert_eq!(result["bytes"], 4 * MIB);
    assert_eq!(result["endpoint"], "lab-async");

    let missing = request(
        s.port,
        "GET",
        &format!("/v1/jobs/{}", "0".repeat(32)),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(missing.status, 404);
    let bad = request(s.port, "GET", "/v1/jobs/..%2F..", &[], b"")
        .await
        .unwrap();
    assert_eq!(bad.status, 404);
    assert!(s.moto.is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_goes_cross_region_in_an_outage() {
    let s = Setup::start_with_moto(|_| {}).await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}))
        .await;
    let got = s.invoke_native("default", &[], &vec![b'c'; 5 * MIB]).await;
    assert_eq!(got.status, 202, "{got:?}");
    assert_eq!(got.h("x-failoverd-region"), "us-west-2");
    assert_eq!(got.attempts(), 2);
    let done = s.wait_job(got.h("location")).await;
    assert_eq!(done.status, 200, "{done:?}");
    let result: Value = serde_json::from_str(&done.body).unwrap();
    assert_eq!(result["region"], "us-west-2");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_provisioned_endpoint_falls_back_to_batch() {
    let s = Setup::start_with_moto(|_| {}).await;
    s.behave(json!({"region": "*", "endpoint": "lab-provisioned",
        "cold_start_after_idle": "1h", "cold_start": "1h"}))
        .await;
    let got = s.invoke_native("default", &[], b"small").await;
    assert_eq!(got.status, 202, "{got:?}");
    assert_eq!(got.h("x-failoverd-path"), "batch");
    assert_eq!(got.attempts(), 4, "3 provisioned attempts, then batch");
    let done = s.wait_job(got.h("location")).await;
    assert_eq!(done.status, 200, "{done:?}");
    // A failed job reports its failure.
    s.behave(json!({"region": "*", "endpoint": "lab-async", "error_rate": 1.0}))
        .await;
    let got = s.invoke_native("default", &[], b"small").await;
    assert_eq!(got.status, 202, "{got:?}");
    let failed = s.wait_job(got.h("location")).await;
    assert_eq!(failed.status, 502, "{failed:?}");
    assert_eq!(failed.h("x-failoverd-job-status"), "failed");
    s.stop().await;
}

/// A model entry for tests that need one of their own.
fn model(
    regions: &[failoverd::config::RegionConfig],
    name: &str,
    tweak: impl FnOnce(&mut failoverd::config::ModelConfig),
) -> failoverd::config::ModelConfig {
    let mut m = failoverd::config::ModelConfig {
        name: name.into(),
        traffic_class: "standard".into(),
        target_model: None,
        idempotent: true,
        retry_on_timeout: true,
        hedge_after: None,
        attempt_timeout: None,
        spill_over: Default::default(),
        serving: failoverd::config::serving::default_serving(regions, None),
    };
    tweak(&mut m);
    m
}

/// The value of the metrics series that starts with `series`, 0 if absent.
fn metric(router: &Router, series: &str) -> u64 {
    router
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagemaker_api_answers_synchronously_up_to_6_mib() {
    // Batch endpoints are configured (and the lab's batch threshold is
    // 4 MiB), yet InvokeEndpoint never becomes a batch job.
    let s = Setup::start().await;
    let five = vec![b'a'; 5 * MIB];
    let got = s.invoke("default", &[], &five).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.h("x-failoverd-path"), "provisioned");
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["bytes"], 5 * MIB, "the model's own answer");
    // Serverless only while the body fits its 4 MiB.
    let got = s.invoke("chat", &[], &five).await;
    assert_eq!(
        (got.status, got.h("x-failoverd-path")),
        (200, "provisioned")
    );
    let got = s.invoke("chat", &[], &vec![b'a'; 4 * MIB]).await;
    assert_eq!((got.status, got.h("x-failoverd-path")), (200, "serverless"));
    // Over 6 MiB: SageMaker's ValidationError, before any call.
    let got = s.invoke("default", &[], &vec![b'a'; 6 * MIB + 1]).await;
    assert_eq!(got.status, 413, "{got:?}");
    assert_eq!(got.h("x-amzn-errortype"), "ValidationError");
    assert_eq!(got.attempts(), 0);
    let (calls, _, _) = s.stats("us-east-1", "lab-async").await;
    assert_eq!(calls, 0, "nothing went to the batch endpoint");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_pass_through() {
    let s = Setup::start().await;
    let got = s
        .invoke(
            "default",
            &[
                ("Accept", "text/csv"),
                ("X-Amzn-SageMaker-Custom-Attributes", "trace=abc"),
            ],
            b"1,2",
        )
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.h("content-type"), "text/csv");
    assert_eq!(got.h("x-amzn-sagemaker-custom-attributes"), "trace=abc");
    assert_eq!(got.h("x-amzn-invoked-production-variant"), "AllTraffic");
    assert_eq!(got.h("x-amzn-requestid").len(), 16, "{got:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_region_costs_one_attempt_and_is_ejected() {
    let s = Setup::start_with(|c| {
        c.router.attempt_timeout_max = Duration::from_millis(400);
        c.router.breaker_failures = 3;
    })
    .await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "latency": "1h"}))
        .await;
    for i in 0..3 {
        let started = Instant::now();
        let got = s.invoke("default", &[], b"x").await;
        let took = started.elapsed();
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.h("x-failoverd-region"), "us-west-2");
        assert_eq!(
            got.attempts(),
            2,
            "request {i}: one timed-out attempt, then the next region"
        );
        assert!(
            took < Duration::from_secs(5),
            "one attempt's timeout, not the 10 s deadline: {took:?}"
        );
    }
    // Three timeouts in a row: us-east-1 is ejected and skipped.
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!((got.status, got.attempts()), (200, 1), "{got:?}");
    assert_eq!(got.h("x-failoverd-region"), "us-west-2");
    assert_eq!(
        metric(
            &s.router,
            "failoverd_router_upstream_calls_total{path=\"provisioned\",region=\"us-east-1\",result=\"timeout\"}"
        ),
        3
    );
    assert_eq!(
        metric(
            &s.router,
            "failoverd_router_ejected{path=\"provisioned\",region=\"us-east-1\",target=\"us-east-1/lab-provisioned\"}"
        ),
        1
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_tells_the_breaker() {
    let s = Setup::start_with(|c| c.router.breaker_failures = 2).await;
    s.behave(json!({"region": "*", "endpoint": "*", "latency": "1h"}))
        .await;
    for _ in 0..2 {
        let got = s.invoke("default", &[("X-Deadline-Ms", "300")], b"x").await;
        assert_eq!(got.status, 504, "{got:?}");
        assert_eq!(got.h("x-failoverd-region"), "us-east-1");
    }
    // Both deadlines were failures of us-east-1's target: it is ejected.
    let got = s.invoke("default", &[("X-Deadline-Ms", "300")], b"x").await;
    assert_eq!(got.status, 504, "{got:?}");
    assert_eq!(
        got.h("x-failoverd-region"),
        "us-west-2",
        "us-east-1 ejected by its timeouts"
    );
    assert_eq!(
        metric(
            &s.router,
            "failoverd_router_ejected{path=\"provisioned\",region=\"us-east-1\",target=\"us-east-1/lab-provisioned\"}"
        ),
        1
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_must_not_run_twice_waits_instead_of_resending() {
    let s = Setup::start_with(|c| {
        c.models.push(model(&c.regions, "once", |m| {
            m.retry_on_timeout = false;
            m.attempt_timeout = Some(Duration::from_millis(200));
        }))
    })
    .await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "latency": "800ms"}))
        .await;
    let started = Instant::now();
    let got = s.invoke("once", &[], b"x").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        (got.h("x-failoverd-region"), got.attempts()),
        ("us-east-1", 1)
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    let (west, _, _) = s.stats("us-west-2", "lab-provisioned").await;
    assert_eq!(west, 0, "never sent a second time");
    assert_eq!(
        metric(
            &s.router,
            "failoverd_router_upstream_calls_total{path=\"provisioned\",region=\"us-east-1\",result=\"timeout\"}"
        ),
        1,
        "the breaker heard of the slow attempt"
    );
    // The same model past its deadline: 504, still one attempt.
    let got = s.invoke("once", &[("X-Deadline-Ms", "500")], b"x").await;
    assert_eq!((got.status, got.attempts()), (504, 1), "{got:?}");
    s.stop().await;
}

const SESSION: &str = "X-Amzn-SageMaker-Session-Id";

/// The session id in a `NewSessionId` (`<id>; Expires=...`).
fn session_of(got: &Got) -> String {
    let v = got.h("x-amzn-sagemaker-new-session-id");
    assert!(v.contains("; Expires="), "{got:?}");
    v.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_endpoint_headers_pass_through_both_ways() {
    let s = Setup::start_with(no_batch).await;
    let sent = [
        ("X-Amzn-SageMaker-Target-Model", "m1.tar.gz"),
        ("X-Amzn-SageMaker-Target-Variant", "blue"),
        ("X-Amzn-SageMaker-Target-Container-Hostname", "c1"),
        ("X-Amzn-SageMaker-Inference-Id", "inf-1"),
        ("X-Amzn-SageMaker-Enable-Explanations", "`true`"),
        ("X-Amzn-SageMaker-Inference-Component", "ic-1"),
        (SESSION, "NEW_SESSION"),
    ];
    let got = s.invoke("default", &sent, b"x").await;
    assert_eq!(got.status, 200, "{got:?}");
    let body: Value = serde_json::from_str(&got.body).unwrap();
    for (name, value) in sent {
        assert_eq!(
            body["headers"][name.to_ascii_lowercase()],
            value,
            "{name} reached the model: {body}"
        );
    }
    assert_eq!(got.h("x-amzn-invoked-production-variant"), "blue");
    let id = session_of(&got);
    assert!(id.starts_with("lab-us-east-1-"), "{id}");
    // The model closes it when asked: ClosedSessionId comes back.
    let got = s.invoke("default", &[(SESSION, &id)], b"close").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.h("x-amzn-sagemaker-closed-session-id"), id);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_in_its_region_and_ends_with_a_failover() {
    let s = Setup::start_with(no_batch).await;
    s.shared.status.lock().unwrap().record = Some(control_record("us-east-1"));
    let got = s
        .invoke("default", &[(SESSION, "NEW_SESSION")], b"open")
        .await;
    assert_eq!(
        (got.status, got.h("x-failoverd-region")),
        (200, "us-east-1")
    );
    let id = session_of(&got);
    // us-east-1 fails: a request in the session is not sent elsewhere
    // (where no model holds the session), and not hedged.
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}))
        .await;
    let got = s.invoke("default", &[(SESSION, &id)], b"more").await;
    assert_eq!(
        (got.status, got.attempts(), got.h("x-failoverd-region")),
        (503, 1, "us-east-1"),
        "{got:?}"
    );
    let (west, _, _) = s.stats("us-west-2", "lab-provisioned").await;
    assert_eq!(west, 0, "nothing went to us-west-2");
    // Back up: the session carries on where it was opened.
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": false}))
        .await;
    let got = s.invoke("default", &[(SESSION, &id)], b"more").await;
    assert_eq!(
        (got.status, got.h("x-failoverd-region")),
        (200, "us-east-1")
    );
    // A failover to us-west-2 ends it: SageMaker's answer for a session it
    // does not know, with no call made.
    s.shared.status.lock().unwrap().record = Some(control_record("us-west-2"));
    let before = all_invocations(&s).await;
    let got = s.invoke("default", &[(SESSION, &id)], b"more").await;
    assert_eq!(got.status, 400, "{got:?}");
    assert_eq!(got.h("x-amzn-errortype"), "ValidationError");
    assert_eq!(got.attempts(), 0);
    assert!(got.body.contains("NEW_SESSION"), "{got:?}");
    assert_eq!(all_invocations(&s).await, before, "no call made");
    // A new session opens in the new active region.
    let got = s
        .invoke("default", &[(SESSION, "NEW_SESSION")], b"open")
        .await;
    assert_eq!(
        (got.status, got.h("x-failoverd-region")),
        (200, "us-west-2")
    );
    s.stop().await;
}

/// Invocations the model server counted, every region and endpoint.
async fn all_invocations(s: &Setup) -> u64 {
    let stats = s.lab("GET", "/_lab/stats", Value::Null).await;
    stats
        .as_object()
        .into_iter()
        .flat_map(|r| r.values())
        .filter_map(Value::as_object)
        .flat_map(|e| e.values())
        .filter_map(|e| e["invocations"].as_u64())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_idempotent_request_that_may_have_run_is_never_sent_again() {
    let s = Setup::start_with(|c| {
        no_batch(c);
        // us-east-1 stays first however often it fails here.
        c.router.breaker_failures = 1000;
        c.models.push(model(&c.regions, "pay", |m| {
            m.idempotent = false;
            m.retry_on_timeout = false;
        }));
    })
    .await;
    // Each fault strikes after the model server read the request: a 5xx,
    // the connection closed without an answer, a 200 cut off mid-body.
    for (fault, rule) in [
        ("5xx", json!({"outage": true})),
        ("reset", json!({"after_body": "reset"})),
        ("cut", json!({"after_body": "cut"})),
    ] {
        s.lab("POST", "/_lab/reset", Value::Null).await;
        let mut rule = rule;
        rule["region"] = json!("us-east-1");
        rule["endpoint"] = json!("*");
        s.behave(rule).await;
        let got = s.invoke("pay", &[], b"charge").await;
        assert_eq!(got.status, 424, "{fault}: {got:?}");
        assert_eq!(got.h("x-amzn-errortype"), "ModelError", "{fault}");
        assert_eq!(got.h("x-failoverd-outcome"), "unknown", "{fault}");
        assert!(got.body.contains("outcome is unknown"), "{fault}: {got:?}");
        assert_eq!(got.attempts(), 1, "{fault}");
        assert_eq!(
            all_invocations(&s).await,
            1,
            "{fault}: the model was invoked exactly once"
        );
        // An idempotent model under the same fault moves on to us-west-2.
        let got = s.invoke("default", &[], b"x").await;
        assert_eq!(
            (got.status, got.h("x-failoverd-region")),
            (200, "us-west-2"),
            "{fault}: {got:?}"
        );
    }
    // A timeout: the attempt is waited for until the deadline, then the
    // outcome is unknown (not a 504, which SDKs resend on their own).
    s.lab("POST", "/_lab/reset", Value::Null).await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "latency": "1h"}))
        .await;
    let got = s.invoke("pay", &[("X-Deadline-Ms", "400")], b"x").await;
    assert_eq!(
        (got.status, got.h("x-failoverd-outcome")),
        (424, "unknown"),
        "{got:?}"
    );
    assert_eq!(all_invocations(&s).await, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_endpoint_in_one_region_moves_to_the_next() {
    let s = Setup::start().await;
    s.behave(json!({"region": "us-east-1", "endpoint": "lab-provisioned", "not_found": true}))
        .await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.status, 200, "not a 400: {got:?}");
    assert_eq!(
        (got.h("x-failoverd-region"), got.attempts()),
        ("us-west-2", 2)
    );
    assert_eq!(
        metric(
            &s.router,
            "failoverd_router_upstream_calls_total{path=\"provisioned\",region=\"us-east-1\",result=\"endpoint_not_found\"}"
        ),
        1
    );
    // Missing everywhere: no region could serve.
    s.behave(json!({"region": "*", "endpoint": "lab-provisioned", "not_found": true}))
        .await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.status, 503, "{got:?}");
    assert_eq!(got.h("x-amzn-errortype"), "ServiceUnavailable");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_region_cold_is_model_not_ready() {
    let s = Setup::start_with(no_batch).await;
    s.behave(json!({"region": "*", "endpoint": "*",
        "cold_start_after_idle": "1h", "cold_start": "1h"}))
        .await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.status, 429, "{got:?}");
    assert_eq!(got.h("x-amzn-errortype"), "ModelNotReadyException");
    assert_eq!(got.h("retry-after"), "1");
    assert_eq!(got.attempts(), 9, "3 attempts in each of 3 regions");
    s.stop().await;
}

/// Latencies (ms) of `n` sequential requests for `model`.
async fn latencies(s: &Setup, model: &str, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let got = s.invoke(model, &[], b"x").await;
        assert_eq!(got.status, 200, "{got:?}");
        out.push(started.elapsed().as_millis() as u64);
    }
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_keeps_the_tail_near_the_healthy_region() {
    let s = Setup::start_with(|c| {
        c.router.retry_budget = 1.0;
        c.models.push(model(&c.regions, "hedged", |m| {
            m.hedge_after = Some(failoverd::core::retry::HedgeAfter::Fixed(
                Duration::from_millis(100),
            ));
        }));
        c.models.push(model(&c.regions, "adaptive", |m| {
            m.hedge_after = Some(failoverd::core::retry::HedgeAfter::Quantile(0.5));
        }));
    })
    .await;
    // us-east-1 is slow, not down: a fifth of its calls take 1.5 s.
    let slow = Duration::from_millis(1500);
    s.behave(json!({"region": "us-east-1", "endpoint": "*",
        "slow_rate": 0.2, "slow_latency": "1500ms", "seed": 3}))
        .await;
    let n = 30;
    let plain = latencies(&s, "default", n).await;
    let hedged = latencies(&s, "hedged", n).await;
    let p99 = |v: &[u64]| v[(v.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "p50/p99 ms without hedging: {}/{}; with hedging after 100 ms: {}/{}",
        plain[n / 2],
        p99(&plain),
        hedged[n / 2],
        p99(&hedged)
    );
    assert!(
        p99(&plain) >= slow.as_millis() as u64,
        "the tail is there without hedging: {plain:?}"
    );
    assert!(
        p99(&hedged) < slow.as_millis() as u64 / 2,
        "hedging cuts it to the hedge delay plus the healthy region: {hedged:?}"
    );
    let (sent, won) = s.router.metrics.hedges();
    assert!(sent >= 1 && won >= 1, "sent {sent}, won {won}");
    assert!(
        metric(
            &s.router,
            "failoverd_router_hedges_won_total{region=\"us-west-2\"}"
        ) >= 1
    );

    // A quantile: no hedge before the router has seen enough answers, then
    // hedges after the target's observed median.
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "slow_rate": 0.0}))
        .await;
    latencies(&s, "adaptive", 25).await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "slow_rate": 1.0}))
        .await;
    let before = s.router.metrics.hedges();
    let started = Instant::now();
    let got = s.invoke("adaptive", &[], b"x").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.h("x-failoverd-region"), "us-west-2", "the hedge won");
    assert!(started.elapsed() < slow, "{:?}", started.elapsed());
    assert_eq!(s.router.metrics.hedges(), (before.0 + 1, before.1 + 1));
    s.stop().await;
}

/// Every attempt the router sends is counted per (region, endpoint), as
/// many as the model server received (retries and cross-region attempts
/// included), and what this router publishes in its vote is what the
/// fleet's sum reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_requests_show_up_in_the_counts() {
    use failoverd::core::quorum::Vote;
    use failoverd::metrics::counts::{Now, fleet_counted};
    use failoverd::ports::clock::{Clock, SystemClock};

    let s = Setup::start().await;
    let hour = 3_600_000;
    let counted = |region: &str, endpoint: &str| {
        s.shared
            .traffic
            .counted(region, endpoint, hour, Now::of(&SystemClock))
            .expect("the router started counting")
            .invocations
    };
    assert_eq!(counted("us-east-1", "lab-serverless"), 0);
    // Two cold retries then success: three attempts, three counted.
    s.behave(json!({"region": "us-east-1", "endpoint": "lab-serverless",
        "cold_start_after_idle": "1h", "cold_start": "150ms"}))
        .await;
    let got = s
        .invoke("chat", &[("Content-Type", "application/json")], b"{}")
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    // The active region out: one attempt there, then us-west-2.
    s.behave(json!({"region": "us-east-1", "endpoint": "lab-provisioned", "outage": true}))
        .await;
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.h("x-failoverd-region"), "us-west-2", "{got:?}");
    for (region, endpoint) in [
        ("us-east-1", "lab-serverless"),
        ("us-east-1", "lab-provisioned"),
        ("us-west-2", "lab-provisioned"),
    ] {
        let (calls, _, _) = s.stats(region, endpoint).await;
        assert!(calls > 0, "{region}/{endpoint} got no call");
        assert_eq!(counted(region, endpoint), calls, "{region}/{endpoint}");
    }
    assert_eq!(counted("eu-west-1", "lab-provisioned"), 0);

    // Published in a vote and summed with two peers that counted nothing:
    // the fleet's count of us-west-2's endpoint is this router's.
    let now = SystemClock.now_ms();
    let regions: Vec<String> = s.config.regions.iter().map(|r| r.name.clone()).collect();
    let votes: Vec<Vote> = regions
        .iter()
        .map(|r| Vote {
            observer: r.clone(),
            instance: None,
            at: now,
            seen_epoch: 1,
            view: Default::default(),
            traffic: if r == "us-east-1" {
                s.shared.traffic.traffic(SystemClock.mono())
            } else {
                Some(Default::default())
            },
            fleet: None,
            readiness: None,
            lease_ms: None,
        })
        .collect();
    let fleet = fleet_counted(
        &regions,
        None,
        &votes,
        "us-west-2",
        "lab-provisioned",
        hour,
        now,
    )
    .expect("every router published");
    assert_eq!(fleet.invocations, counted("us-west-2", "lab-provisioned"));
    assert_eq!(
        fleet_counted(
            &regions,
            None,
            &votes,
            "eu-west-1",
            "lab-provisioned",
            hour,
            now
        )
        .map(|c| c.invocations),
        Some(0)
    );
    s.stop().await;
}

/// What clients ask of each model, for `failoverd advise`: one request each
/// however many attempts it took, the cold starts met on the way, payload
/// sizes; refused requests are not counted, and a configured model nobody
/// called is reported as counted with nothing in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_requests_are_observed_per_model_for_advise() {
    use failoverd::ports::clock::{Clock, SystemClock};

    let s = Setup::start().await;
    // Two cold starts, then an answer: one request, two cold starts.
    s.behave(json!({"region": "us-east-1", "endpoint": "lab-serverless",
        "cold_start_after_idle": "1h", "cold_start": "150ms"}))
        .await;
    let got = s
        .invoke("chat", &[("Content-Type", "application/json")], b"{}")
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    let big = vec![b'x'; 100_000];
    for body in [&b"x"[..], &big[..], &b"yy"[..]] {
        let got = s.invoke("default", &[], body).await;
        assert_eq!(got.status, 200, "{got:?}");
    }
    // Refused before any call: not a request for a model.
    assert_eq!(s.invoke("nope", &[], b"x").await.status, 404);
    let got = s
        .invoke("default", &[("X-Deadline-Ms", "soon")], b"x")
        .await;
    assert_eq!(got.status, 400, "{got:?}");

    let names: Vec<&str> = s.config.models.iter().map(|m| m.name.as_str()).collect();
    let seen = s
        .shared
        .models
        .observations(names.iter().copied(), SystemClock.now_ms())
        .expect("the router observes from its start");
    let of = |m: &str| {
        seen.iter()
            .find(|o| o.model == m)
            .unwrap_or_else(|| panic!("{m} not reported"))
    };
    let total = |m: &str| of(m).per_minute.iter().sum::<u64>() + of(m).current_minute;
    assert_eq!(total("chat"), 1, "{:?}", of("chat"));
    assert_eq!(of("chat").cold_starts, 2, "{:?}", of("chat"));
    assert_eq!(total("default"), 3, "{:?}", of("default"));
    assert_eq!(of("default").cold_starts, 0);
    assert_eq!(of("default").payload_bytes.max, 100_000);
    assert!(of("default").payload_bytes.p95 >= 100_000);
    assert!(of("default").payload_bytes.p50 <= 2, "{:?}", of("default"));
    assert_eq!(seen.len(), names.len(), "every configured model");
    for o in &seen {
        if o.model != "chat" && o.model != "default" {
            assert_eq!(o.per_minute.iter().sum::<u64>() + o.current_minute, 0);
        }
    }
    s.stop().await;
}

/// The event-stream messages of a response stream through the router
/// (called in-process: the listener does not serve streams yet), one per
/// body frame, as (event or exception type, payload).
async fn stream_through(
    s: &Setup,
    model: &str,
) -> (u16, HashMap<String, String>, Vec<(String, String)>) {
    use http_body_util::BodyExt;
    let req = hyper::Request::post(format!("/endpoints/{model}/invocations-response-stream"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), s.router.clone().handle_stream(req))
        .await
        .expect("the stream's head within 20 s");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let mut body = resp.into_body();
    let mut messages = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(20), body.frame())
        .await
        .expect("a frame within 20 s")
    {
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let decoded = decode_messages(&data);
        assert_eq!(decoded.len(), 1, "one message per frame: {decoded:?}");
        messages.extend(decoded);
    }
    (status, headers, messages)
}

/// Event-stream messages as (`:event-type` or `:exception-type`, payload).
fn decode_messages(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let total = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
        let mut h = &b[12..12 + headers_len];
        let mut kind = String::new();
        while !h.is_empty() {
            let n = h[0] as usize;
            let name = &h[1..1 + n];
            assert_eq!(h[1 + n], 7, "string headers only");
            let len = u16::from_be_bytes([h[2 + n], h[3 + n]]) as usize;
            let value = String::from_utf8_lossy(&h[4 + n..4 + n + len]).into_owned();
            if name == b":event-type" || name == b":exception-type" {
                kind = value;
            }
            h = &h[4 + n + len..];
        }
        let payload = String::from_utf8_lossy(&b[12 + headers_len..total - 4]).into_owned();
        out.push((kind, payload));
        b = &b[total..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_streams_fail_over_only_before_the_first_part() {
    let s = Setup::start_with(|c| {
        no_batch(c);
        c.router.breaker_failures = 1000;
    })
    .await;
    let part = |region: &str, i: u32| {
        format!("{{\"region\":\"{region}\",\"endpoint\":\"lab-provisioned\",\"part\":{i}}}\n")
    };
    // Healthy: every part, one message each, from us-east-1.
    let (status, headers, messages) = stream_through(&s, "default").await;
    assert_eq!(status, 200, "{headers:?}");
    assert_eq!(
        headers["content-type"],
        "application/vnd.amazon.eventstream"
    );
    assert_eq!(headers["x-failoverd-region"], "us-east-1");
    let parts: Vec<(String, String)> = (0..3)
        .map(|i| ("PayloadPart".to_string(), part("us-east-1", i)))
        .collect();
    assert_eq!(messages, parts);

    // us-east-1 down before the stream starts: us-west-2 serves it.
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}))
        .await;
    let (status, headers, messages) = stream_through(&s, "default").await;
    assert_eq!(
        (
            status,
            headers["x-failoverd-region"].as_str(),
            headers["x-failoverd-attempts"].as_str()
        ),
        (200, "us-west-2", "2")
    );
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].1, part("us-west-2", 0));

    // Cut before the first part: the client saw nothing, so the next region.
    s.lab("POST", "/_lab/reset", Value::Null).await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*",
        "stream_fault_after": 0, "stream_fault": "cut"}))
        .await;
    let (status, headers, _) = stream_through(&s, "default").await;
    assert_eq!(
        (status, headers["x-failoverd-region"].as_str()),
        (200, "us-west-2")
    );

    // Cut after the first part: no failover; the client gets the part, then
    // SageMaker's in-band InternalStreamFailure (its SDK raises).
    s.lab("POST", "/_lab/reset", Value::Null).await;
    s.behave(json!({"region": "us-east-1", "endpoint": "*",
        "stream_fault_after": 1, "stream_fault": "cut"}))
        .await;
    let (status, _, messages) = stream_through(&s, "default").await;
    assert_eq!(status, 200);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        messages[0],
        ("PayloadPart".to_string(), part("us-east-1", 0))
    );
    assert_eq!(messages[1].0, "InternalStreamFailure", "{messages:?}");
    let (west, _, _) = s.stats("us-west-2", "lab-provisioned").await;
    assert_eq!(west, 0, "never sent again once a part reached the client");

    // The model's own failure mid-stream passes on as ModelStreamError.
    s.behave(json!({"region": "us-east-1", "endpoint": "*",
        "stream_fault_after": 1, "stream_fault": "model_stream_error"}))
        .await;
    let (_, _, messages) = stream_through(&s, "default").await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[1].0, "ModelStreamError", "{messages:?}");
    assert!(messages[1].1.contains("failed mid-stream"), "{messages:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_spills_over_only_to_a_region_seen_warm() {
    let s = Setup::start_with(|c| {
        no_batch(c);
        c.models.push(model(&c.regions, "spilly", |m| {
            m.spill_over.not_ready = true
        }));
    })
    .await;
    s.behave(json!({"region": "us-east-1", "endpoint": "lab-provisioned",
        "cold_start_after_idle": "1h", "cold_start": "1h"}))
        .await;
    let spills =
        "failoverd_router_spills_total{from=\"us-east-1\",to=\"us-west-2\",cause=\"not_ready\"}";
    // us-west-2 never answered this router: not warm, so the cold starts
    // are waited out in us-east-1 first (1 + 2 retries), then the next
    // region, as without spill-over.
    let got = s.invoke("spilly", &[], b"x").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.h("x-failoverd-region"), "us-west-2");
    assert_eq!(got.attempts(), 4, "{got:?}");
    assert_eq!(metric(&s.router, spills), 0);
    // Now it has: the next cold start goes there at once.
    let got = s.invoke("spilly", &[], b"x").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.h("x-failoverd-region"), "us-west-2");
    assert_eq!(got.attempts(), 2, "{got:?}");
    assert_eq!(metric(&s.router, spills), 1);
    // A model without spill-over waits, as before.
    let got = s.invoke("default", &[], b"x").await;
    assert_eq!(got.attempts(), 4, "{got:?}");
    assert_eq!(metric(&s.router, spills), 1);
    s.stop().await;
}
