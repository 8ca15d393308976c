//! `InvokeEndpointAsync` on the wire (`POST
//! /endpoints/{model}/async-invocations`), judged by boto3's
//! `invoke_endpoint_async` (tests/boto3/invoke_async.py, from the lab's
//! virtualenv) through the router's own listener, against the lab's model
//! server (which serves the async calls and writes results to moto's S3):
//! healthy, and with the first region's async endpoint down, where the
//! input in us-east-1's bucket must reach us-west-2's endpoint (the router
//! copies it into us-west-2's bucket).

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ModelServer, Moto, root, spawn_guarded, unique, venv};
use failoverd::aws::AwsClients;
use failoverd::config::{self, Config, EnvSource};
use failoverd::router::{self, Router};
use failoverd::state::Shared;
use serde_json::{Value, json};

/// A router over the lab's configuration, moto for S3, the model server
/// for SageMaker runtime, behind the daemon's listener.
struct Setup {
    model: ModelServer,
    moto: Moto,
    url: String,
    config: Arc<Config>,
    _router: Arc<Router>,
    /// Dropped with the setup: the listener drains and stops.
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Setup {
    async fn start() -> Self {
        let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
        let model = ModelServer::start(Some(&moto.url()));
        let dead = "http://127.0.0.1:9".to_string();
        let env: EnvSource = [
            ("FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME", model.url()),
            ("FAILOVERD__ENDPOINTS__S3", moto.url()),
            ("FAILOVERD__ENDPOINTS__DYNAMODB", dead.clone()),
            ("FAILOVERD__ENDPOINTS__ROUTE53", dead.clone()),
            ("FAILOVERD__ENDPOINTS__SFN", dead.clone()),
            ("FAILOVERD__ENDPOINTS__SAGEMAKER", dead),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut cfg = config::load(&root().join("regions/lab/us-east-1.toml"), &env).unwrap();
        cfg.router.breaker_failures = 1000;
        let cfg = Arc::new(cfg);
        let clients = Arc::new(AwsClients::new(common::sdk_config(), cfg.endpoints.clone()));
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
        let (_config, rx) = tokio::sync::watch::channel(cfg.clone());
        let router = Router::new(
            rx,
            failoverd::daemon::router_ports(&clients),
            Arc::new(Shared::default()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(router::serve(
            listener,
            router.clone(),
            rx,
            Duration::from_secs(1),
        ));
        Self {
            model,
            moto,
            url,
            config: cfg,
            _router: router,
            _shutdown: shutdown,
        }
    }

    fn bucket(&self, region: &str) -> String {
        router::batch::bucket(&self.config, region)
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

    /// boto3's view of one async call with its input put at `bucket/key`.
    async fn boto3(&self, bucket: &str, key: &str, extra: &[&str]) -> Value {
        let mut args: Vec<String> = vec![
            root()
                .join("tests/boto3/invoke_async.py")
                .display()
                .to_string(),
            "--endpoint-url".into(),
            self.url.clone(),
            "--s3-endpoint".into(),
            self.moto.url(),
            "--bucket".into(),
            bucket.into(),
            "--key".into(),
            key.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || {
            let python = venv().join("bin/python");
            assert!(
                python.exists(),
                "lab virtualenv missing: {}",
                python.display()
            );
            let out_file = std::env::temp_dir().join(unique("boto3-async"));
            let mut child = spawn_guarded(
                Command::new(&python)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_invoke_endpoint_async_through_the_router_and_across_a_failover() {
    let s = Setup::start().await;
    let east = s.bucket("us-east-1");
    let west = s.bucket("us-west-2");

    // Healthy: us-east-1's endpoint reads the input where it is.
    let v = s
        .boto3(&east, "in/one.json", &["--inference-id", "inf-1"])
        .await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 202, "{v}");
    assert_eq!(v["inference_id"], "inf-1", "{v}");
    assert_eq!(
        v["output_location"],
        format!("s3://{east}/async-output/inf-1.out"),
        "{v}"
    );
    assert_eq!(
        v["failure_location"],
        format!("s3://{east}/async-failures/inf-1.out"),
        "{v}"
    );
    assert_eq!(
        v["headers"]["x-amzn-sagemaker-outputlocation"], v["output_location"],
        "{v}"
    );
    assert_eq!(v["headers"]["x-failoverd-region"], "us-east-1", "{v}");
    let r = &v["result"];
    assert_eq!(r["region"], "us-east-1", "{v}");
    assert_eq!(r["endpoint"], "lab-async", "{v}");
    assert_eq!(r["input"], format!("s3://{east}/in/one.json"), "{v}");
    assert_eq!(
        r["limits"],
        json!({"ttl": "600", "timeout": "60"}),
        "the limits reach SageMaker: {v}"
    );

    // us-east-1's async endpoint down: us-west-2 takes it, reading a copy
    // of the input from its own bucket. No InferenceId: the router's.
    s.behave(json!({"region": "us-east-1", "endpoint": "lab-async", "outage": true}));
    let v = s.boto3(&east, "in/two.json", &[]).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 202, "{v}");
    assert_eq!(v["headers"]["x-failoverd-region"], "us-west-2", "{v}");
    assert_eq!(v["headers"]["x-failoverd-attempts"], "2", "{v}");
    let id = v["inference_id"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(!id.is_empty(), "{v}");
    assert_eq!(
        v["output_location"],
        format!("s3://{west}/async-output/{id}.out"),
        "{v}"
    );
    let r = &v["result"];
    assert_eq!(r["region"], "us-west-2", "{v}");
    assert_eq!(
        r["input"],
        format!("s3://{west}/async-inputs/{id}"),
        "the copy in us-west-2's bucket: {v}"
    );
    assert_eq!(
        r["echo"], "{\"inputs\": \"hello\"}",
        "the same payload: {v}"
    );

    // Every region down: ServiceUnavailable, as SageMaker's own.
    s.behave(json!({"region": "*", "endpoint": "lab-async", "outage": true}));
    let v = s.boto3(&east, "in/three.json", &[]).await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["code"], "ServiceUnavailable", "{v}");
    assert_eq!(v["status"], 503, "{v}");
}
