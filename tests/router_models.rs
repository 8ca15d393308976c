//! Per-model, per-region endpoints (issue 21 item 1) judged by boto3:
//! a real `failoverd run` (the lab's us-east-1 configuration plus a fleet
//! of models mapped per region) in front of the lab's model server, which
//! hosts inference components.
//!
//! The fleet: `fraud` on endpoints of its own, named differently in each
//! region; `ranker` on its own serverless and provisioned endpoints; `llm`
//! and `embed` as inference components of a shared GPU endpoint (whose
//! name differs in eu-west-1); `ab` a production variant of the lab's
//! shared provisioned endpoint. Checked: each request reaches its own
//! endpoint with the header that picks it there, healthy and with
//! us-east-1 down; a breaker ejects one component without touching its
//! neighbour on the same endpoint or another model's endpoint in the same
//! region; a component the endpoint does not host is SageMaker's
//! `ValidationError`.
//!
//! No control record (DynamoDB points at a closed port): the router ranks
//! regions by priority, us-east-1 first.

#![allow(clippy::disallowed_methods)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, ModelServer, root, spawn_guarded, unique, venv};
use serde_json::{Value, json};

const FLEET: &str = r#"
[[models]]
name = "fraud"
[models.regions.us-east-1]
provisioned = "fraud-use1"
[models.regions.us-west-2]
provisioned = "fraud-usw2"
[models.regions.eu-west-1]
provisioned = "fraud-euw1"

[[models]]
name = "ranker"
traffic_class = "serverless_preferred"
[models.regions.us-east-1]
serverless = "ranker-sl-use1"
provisioned = "ranker-use1"
[models.regions.us-west-2]
serverless = "ranker-sl-usw2"
provisioned = "ranker-usw2"
[models.regions.eu-west-1]
provisioned = "ranker-euw1"

[[models]]
name = "llm"
[models.regions.us-east-1]
endpoint = "lab-gpu"
inference_component = "llm-use1"
[models.regions.us-west-2]
endpoint = "lab-gpu"
inference_component = "llm-usw2"
[models.regions.eu-west-1]
endpoint = "gpu-euw1"
inference_component = "llm-euw1"

[[models]]
name = "embed"
[models.regions.us-east-1]
endpoint = "lab-gpu"
inference_component = "embed-use1"
[models.regions.us-west-2]
endpoint = "lab-gpu"
inference_component = "embed-usw2"
[models.regions.eu-west-1]
endpoint = "gpu-euw1"
inference_component = "embed-euw1"

[[models]]
name = "ab"
[models.regions.us-east-1]
target_variant = "blue"
[models.regions.us-west-2]
target_variant = "green"

[[models]]
name = "ghost"
[models.regions.us-east-1]
endpoint = "lab-gpu"
inference_component = "not-deployed"
"#;

/// The components the lab's GPU endpoints host (as provisioning would
/// create them).
const COMPONENTS: [(&str, &str, &[&str]); 3] = [
    ("us-east-1", "lab-gpu", &["llm-use1", "embed-use1"]),
    ("us-west-2", "lab-gpu", &["llm-usw2", "embed-usw2"]),
    ("eu-west-1", "gpu-euw1", &["llm-euw1", "embed-euw1"]),
];

struct Daemon {
    model: ModelServer,
    router: String,
    admin: String,
    _child: ChildGuard,
    dir: PathBuf,
}

impl Daemon {
    fn start(env: &[(&str, &str)]) -> Self {
        let model = ModelServer::start(None);
        let dir = std::env::temp_dir().join(unique("failoverd-models"));
        std::fs::create_dir_all(&dir).unwrap();
        let (child, bound) = common::router_daemon(&model, &dir, FLEET, env);
        let d = Self {
            model,
            router: bound.router.to_string(),
            admin: bound.admin.to_string(),
            _child: child,
            dir,
        };
        for (region, endpoint, components) in COMPONENTS {
            d.lab(
                "/_lab/components",
                json!({"region": region, "endpoint": endpoint, "components": components}),
            );
        }
        d
    }

    fn lab(&self, path: &str, body: Value) {
        lab_put(&self.model, path, body);
    }

    /// boto3's `invoke_endpoint` for `model`; its JSON outcome.
    fn invoke(&self, model: &str) -> Value {
        self.boto3("tests/boto3/invoke.py", model)
    }

    /// boto3's `invoke_endpoint_with_response_stream` for `model`.
    fn stream(&self, model: &str) -> Value {
        self.boto3("tests/boto3/stream.py", model)
    }

    fn boto3(&self, script: &str, model: &str) -> Value {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "lab virtualenv missing: {} not found; create it with `chaos/lab.sh install`",
            python.display()
        );
        let out_file = self.dir.join(unique("boto3-out"));
        let mut child = spawn_guarded(
            Command::new(&python)
                .arg(root().join(script))
                .arg("--endpoint-url")
                .arg(format!("http://{}", self.router))
                .args(["--model", model])
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

    /// The model's answer to a successful call: (region, endpoint,
    /// component, the InvokeEndpoint headers it saw).
    fn served(&self, model: &str) -> (String, String, Option<String>, Value) {
        let v = self.invoke(model);
        assert_eq!(v["ok"], true, "{model}: {v}");
        let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            v["headers"]["x-failoverd-region"], body["region"],
            "{model}: {v}"
        );
        (
            body["region"].as_str().unwrap().to_string(),
            body["endpoint"].as_str().unwrap().to_string(),
            body["component"].as_str().map(str::to_string),
            body["headers"].clone(),
        )
    }

    fn metrics(&self) -> String {
        let (status, body) = common::http("GET", &self.admin, "/metrics", "").unwrap();
        assert_eq!(status, 200);
        body
    }
}

/// `PUT` a control request on the lab's model server.
fn lab_put(model: &ModelServer, path: &str, body: Value) {
    let (status, text) = common::http(
        "PUT",
        &format!("127.0.0.1:{}", model.port),
        path,
        &body.to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
}

fn at(region: &str, endpoint: &str, component: Option<&str>) -> (String, String, Option<String>) {
    (
        region.to_string(),
        endpoint.to_string(),
        component.map(str::to_string),
    )
}

fn where_(s: &(String, String, Option<String>, Value)) -> (String, String, Option<String>) {
    (s.0.clone(), s.1.clone(), s.2.clone())
}

#[test]
fn each_model_reaches_its_own_endpoint_with_the_header_that_picks_it() {
    let d = Daemon::start(&[]);
    let fraud = d.served("fraud");
    assert_eq!(where_(&fraud), at("us-east-1", "fraud-use1", None));
    assert!(
        fraud
            .3
            .get("x-amzn-sagemaker-inference-component")
            .is_none(),
        "{fraud:?}"
    );
    let ranker = d.served("ranker");
    assert_eq!(where_(&ranker), at("us-east-1", "ranker-sl-use1", None));
    let llm = d.served("llm");
    assert_eq!(where_(&llm), at("us-east-1", "lab-gpu", Some("llm-use1")));
    assert_eq!(llm.3["x-amzn-sagemaker-inference-component"], "llm-use1");
    let embed = d.served("embed");
    assert_eq!(
        where_(&embed),
        at("us-east-1", "lab-gpu", Some("embed-use1"))
    );
    let ab = d.invoke("ab");
    assert_eq!(ab["ok"], true, "{ab}");
    assert_eq!(ab["invoked_production_variant"], "blue", "{ab}");
    // Today's shape is the default: `default` on the shared endpoint.
    let default = d.served("default");
    assert_eq!(where_(&default), at("us-east-1", "lab-provisioned", None));
}

#[test]
fn with_the_first_region_down_each_model_moves_to_its_own_endpoint_there() {
    let d = Daemon::start(&[]);
    d.lab(
        "/_lab/behaviour",
        json!({"region": "us-east-1", "endpoint": "*", "outage": true}),
    );
    assert_eq!(
        where_(&d.served("fraud")),
        at("us-west-2", "fraud-usw2", None)
    );
    assert_eq!(
        where_(&d.served("ranker")),
        at("us-west-2", "ranker-sl-usw2", None)
    );
    let llm = d.served("llm");
    assert_eq!(where_(&llm), at("us-west-2", "lab-gpu", Some("llm-usw2")));
    assert_eq!(llm.3["x-amzn-sagemaker-inference-component"], "llm-usw2");
    let ab = d.invoke("ab");
    assert_eq!(ab["invoked_production_variant"], "green", "{ab}");
    // And with us-west-2 down too, eu-west-1's differently named endpoint.
    d.lab(
        "/_lab/behaviour",
        json!({"region": "us-west-2", "endpoint": "*", "outage": true}),
    );
    assert_eq!(
        where_(&d.served("llm")),
        at("eu-west-1", "gpu-euw1", Some("llm-euw1"))
    );
    assert_eq!(
        where_(&d.served("fraud")),
        at("eu-west-1", "fraud-euw1", None)
    );
}

#[test]
fn a_breaker_ejects_one_component_not_its_neighbours() {
    let d = Daemon::start(&[
        ("FAILOVERD__ROUTER__BREAKER_FAILURES", "2"),
        ("FAILOVERD__ROUTER__BREAKER_EJECTION", "5m"),
    ]);
    // Only llm's component in us-east-1 is out.
    d.lab(
        "/_lab/behaviour",
        json!({"region": "us-east-1", "endpoint": "lab-gpu/llm-use1", "outage": true}),
    );
    for _ in 0..2 {
        assert_eq!(d.served("llm").0, "us-west-2");
    }
    let m = d.metrics();
    assert!(
        m.lines()
            .any(|l| l.starts_with("failoverd_router_ejections_total")
                && l.contains("us-east-1")
                && !l.ends_with(" 0")),
        "llm's target was ejected:\n{m}"
    );
    // The gauge names the component, and only it: its region's path is
    // not reported ejected (decision 118).
    let ejected: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("failoverd_router_ejected{"))
        .collect();
    assert_eq!(
        ejected,
        [
            "failoverd_router_ejected{path=\"provisioned\",region=\"us-east-1\",target=\"us-east-1/lab-gpu/llm-use1\"} 1"
        ],
        "{m}"
    );
    // Its neighbour on the same endpoint, and another model on the same
    // path in the same region, are not ejected: they are served there
    // first (an ejected target would rank its region last).
    assert_eq!(
        where_(&d.served("embed")),
        at("us-east-1", "lab-gpu", Some("embed-use1"))
    );
    assert_eq!(
        where_(&d.served("fraud")),
        at("us-east-1", "fraud-use1", None)
    );
    // The ejected one is not even tried there now.
    let v = d.invoke("llm");
    assert_eq!(v["headers"]["x-failoverd-attempts"], "1", "{v}");
    assert_eq!(v["headers"]["x-failoverd-region"], "us-west-2", "{v}");
}

#[test]
fn a_component_the_endpoint_does_not_host_is_a_validation_error() {
    let d = Daemon::start(&[]);
    let v = d.invoke("ghost");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["exception"], "ValidationError", "{v}");
    assert_eq!(v["status"], 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("not-deployed")),
        "{v}"
    );
}

#[test]
fn a_stream_reaches_the_component_in_each_region() {
    let d = Daemon::start(&[]);
    let part = |v: &Value| -> Value {
        assert_eq!(v["ok"], true, "{v}");
        let first = v["parts"][0].as_str().unwrap_or_else(|| panic!("{v}"));
        serde_json::from_str(first.trim()).unwrap()
    };
    let v = d.stream("llm");
    let p = part(&v);
    assert_eq!(
        (p["region"].as_str(), p["endpoint"].as_str()),
        (Some("us-east-1"), Some("lab-gpu/llm-use1")),
        "{v}"
    );
    d.lab(
        "/_lab/behaviour",
        json!({"region": "us-east-1", "endpoint": "*", "outage": true}),
    );
    let v = d.stream("llm");
    let p = part(&v);
    assert_eq!(
        (p["region"].as_str(), p["endpoint"].as_str()),
        (Some("us-west-2"), Some("lab-gpu/llm-usw2")),
        "{v}"
    );
}

/// Prepare's warm-up through the AWS adapter (the real SDK) against the
/// lab's model server: each model's header reaches its target, and a
/// component the endpoint does not host is refused (so prepare refuses a
/// region that lacks it), while one it hosts is answered.
#[test]
fn the_warm_up_sends_each_models_header_through_the_sdk() {
    use failoverd::config::{EndpointOverrides, Via};
    use failoverd::ports::endpoints::{Endpoints, WarmUp};
    let model = ModelServer::start(None);
    for (region, endpoint, components) in COMPONENTS {
        lab_put(
            &model,
            "/_lab/components",
            json!({"region": region, "endpoint": endpoint, "components": components}),
        );
    }
    let clients = failoverd::aws::AwsClients::new(
        common::sdk_config(),
        EndpointOverrides {
            sagemaker_runtime: Some(model.url()),
            ..Default::default()
        },
    );
    let endpoints = failoverd::aws::sagemaker::AwsEndpoints::new(std::sync::Arc::new(clients));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let warm = |via: Option<Via>| {
            let endpoints = &endpoints;
            async move {
                endpoints
                    .warm_up_target("us-west-2", "lab-gpu", via.as_ref(), b"{}")
                    .await
            }
        };
        let hosted = warm(Some(Via::InferenceComponent("llm-usw2".into()))).await;
        assert!(
            matches!(&hosted, WarmUp::Answered { detail } if detail == "200"),
            "{hosted:?}"
        );
        let missing = warm(Some(Via::InferenceComponent("not-deployed".into()))).await;
        assert!(matches!(missing, WarmUp::Refused { .. }), "{missing:?}");
    });
    // The component, not just the endpoint, was called.
    let (_, stats) = common::http(
        "GET",
        &format!("127.0.0.1:{}", model.port),
        "/_lab/stats",
        "",
    )
    .unwrap();
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        stats["us-west-2"]["lab-gpu/llm-usw2"]["successes"], 1,
        "{stats}"
    );
}
