//! Response streaming through the router, judged by boto3's
//! `invoke_endpoint_with_response_stream` (from the lab's virtualenv),
//! against the lab's model server: healthy, the first region down, and a
//! fault after the first part (boto3 must raise, not take a cut stream as
//! complete).
//!
//! The router runs in-process behind the daemon's own listener
//! (`router::serve`, `src/http.rs`), which sends
//! `/endpoints/{model}/invocations-response-stream` to
//! `Router::handle_stream` and everything else to `Router::handle`.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ModelServer, root, spawn_guarded, unique, venv};
use failoverd::aws::AwsClients;
use failoverd::config::{self, EnvSource};
use failoverd::router::Router;
use failoverd::state::Shared;
use serde_json::{Value, json};

/// A router over the lab's configuration in front of a model server,
/// behind a listener that serves streams.
struct Setup {
    model: ModelServer,
    url: String,
    _router: Arc<Router>,
    /// Dropped with the setup: the listener drains and stops.
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Setup {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// With `tweak` applied to the lab's configuration.
    async fn start_with(tweak: impl FnOnce(&mut config::Config)) -> Self {
        let model = ModelServer::start(None);
        let dead = "http://127.0.0.1:9".to_string();
        let env: EnvSource = [
            ("FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME", model.url()),
            ("FAILOVERD__ENDPOINTS__DYNAMODB", dead.clone()),
            ("FAILOVERD__ENDPOINTS__S3", dead.clone()),
            ("FAILOVERD__ENDPOINTS__ROUTE53", dead.clone()),
            ("FAILOVERD__ENDPOINTS__SFN", dead.clone()),
            ("FAILOVERD__ENDPOINTS__SAGEMAKER", dead),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut cfg = config::load(&root().join("regions/lab/us-east-1.toml"), &env).unwrap();
        cfg.router.breaker_failures = 1000;
        for r in &mut cfg.regions {
            r.sagemaker.batch = None;
        }
        for s in cfg.models.iter_mut().flat_map(|m| &mut m.serving) {
            s.batch = None;
        }
        tweak(&mut cfg);
        let cfg = Arc::new(cfg);
        let clients = Arc::new(AwsClients::new(common::sdk_config(), cfg.endpoints.clone()));
        let (_config, rx) = tokio::sync::watch::channel(cfg.clone());
        let router = Router::new(
            rx,
            failoverd::daemon::router_ports(&clients),
            Arc::new(Shared::default()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(failoverd::router::serve(
            listener,
            router.clone(),
            rx,
            Duration::from_secs(1),
        ));
        Self {
            model,
            url,
            _router: router,
            _shutdown: shutdown,
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

    /// boto3's view of one streamed call.
    async fn boto3(&self) -> Value {
        self.boto3_with(&[]).await
    }

    /// With more arguments for tests/boto3/stream.py (`--model m`).
    async fn boto3_with(&self, args: &[&str]) -> Value {
        let url = self.url.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let python = venv().join("bin/python");
            assert!(
                python.exists(),
                "lab virtualenv missing: {}",
                python.display()
            );
            let out_file = std::env::temp_dir().join(unique("boto3-stream"));
            let mut child = spawn_guarded(
                Command::new(&python)
                    .arg(root().join("tests/boto3/stream.py"))
                    .arg("--endpoint-url")
                    .arg(&url)
                    .args(&args)
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
            let _ = std::fs::remove_file(&out_file);
            assert!(status.success(), "boto3 client failed ({status}): {out}");
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
        })
        .await
        .unwrap()
    }
}

fn part(region: &str, i: u32) -> String {
    format!("{{\"region\":\"{region}\",\"endpoint\":\"lab-provisioned\",\"part\":{i}}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_streams_through_the_router() {
    let s = Setup::start().await;
    // Healthy.
    let v = s.boto3().await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["parts"],
        json!((0..3).map(|i| part("us-east-1", i)).collect::<Vec<_>>())
    );
    assert_eq!(v["headers"]["x-failoverd-region"], "us-east-1", "{v}");

    // The first region down: the stream comes from us-west-2.
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}));
    let v = s.boto3().await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["parts"][0], part("us-west-2", 0), "{v}");
    assert_eq!(v["headers"]["x-failoverd-attempts"], "2", "{v}");

    // A fault after the first part: boto3 has the part, then raises.
    s.behave(
        json!({"region": "us-east-1", "endpoint": "*", "outage": false,
        "stream_fault_after": 1, "stream_fault": "cut"}),
    );
    let v = s.boto3().await;
    assert_eq!(
        v["ok"], false,
        "boto3 must not take a cut stream as complete: {v}"
    );
    assert_eq!(v["exception"], "EventStreamError", "{v}");
    assert_eq!(v["code"], "InternalStreamFailure", "{v}");
    assert_eq!(v["parts"], json!([part("us-east-1", 0)]), "{v}");

    // The model's own failure mid-stream.
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "stream_fault": "model_stream_error"}));
    let v = s.boto3().await;
    assert_eq!(
        (v["exception"].as_str(), v["code"].as_str()),
        (Some("EventStreamError"), Some("ModelStreamError")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_stream_spills_over_before_its_first_part() {
    let s = Setup::start_with(|c| {
        let mut m = c.models[0].clone();
        m.name = "spilly".into();
        m.spill_over.throttling = true;
        c.models.push(m);
    })
    .await;
    // us-west-2 answers once (us-east-1 down): seen warm.
    s.behave(json!({"region": "us-east-1", "endpoint": "*", "outage": true}));
    let v = s.boto3().await;
    assert_eq!(v["parts"][0], part("us-west-2", 0), "{v}");
    // us-east-1 throttles every call.
    s.behave(
        json!({"region": "us-east-1", "endpoint": "*", "outage": false,
        "error_rate": 1.0, "error": "ThrottlingException"}),
    );
    let v = s.boto3_with(&["--model", "spilly"]).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["parts"][0], part("us-west-2", 0), "{v}");
    assert_eq!(v["headers"]["x-failoverd-attempts"], "2", "{v}");
    // Without spill-over: the throttling, as before.
    let v = s.boto3().await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["code"], "ThrottlingException", "{v}");
}
