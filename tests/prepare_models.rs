//! Prepare acts on what each model runs on (issue 21 item 2), through the
//! real SDK against the lab: moto with the lab launcher's inference
//! components (chaos/lab/lab_components.py), the lab's model server, and
//! `failoverd-lab provision` creating a fleet whose models have endpoints
//! of their own (`fraud`) and run as inference components of a shared GPU
//! endpoint (`llm`, `embed`).
//!
//! Checked: provisioning creates the components in the control plane (and
//! deploys iam.yaml's policy for them); a failover's prepare step in
//! us-west-2 raises `fraud`'s own endpoint to what its endpoint in
//! us-east-1 holds, `llm`'s copies to what its component in us-east-1 has,
//! and `embed`'s copies to the fleet's measured need, journalled as the
//! shared endpoint's scale-up is; a second run asks for nothing (never
//! lower, nothing twice); a component whose copies AWS refuses stops the
//! failover while the old region serves (quota), and with the old region
//! down goes ahead journalled with the refusal (insufficient capacity).

#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ModelServer, Moto, root, unique};
use failoverd::aws::AwsClients;
use failoverd::config::{Config, EnvSource};
use failoverd::control::prepare::{self, PrepareError};
use failoverd::core::control::{ControlRecord, Phase};
use failoverd::core::plan::FailoverPlan;
use failoverd::core::record::RecordWrite;
use failoverd::ports::endpoints::{ComponentStatus, Deleted, EndpointState, WarmUp};
use failoverd::ports::store::Event;
use failoverd::ports::{Endpoints, PortError, Ports};
use serde_json::Value;

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

/// `fraud` on endpoints of its own; `llm` and `embed` as inference
/// components of the GPU endpoint (named differently in eu-west-1).
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
"#;

/// moto, the model server, the fleet provisioned, and us-west-2's
/// configuration and ports (us-east-1 active).
struct Env {
    moto: Moto,
    _model: ModelServer,
    dir: PathBuf,
    cfg: Config,
    ports: Ports,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Env {
    fn start() -> Self {
        Self::start_with("")
    }

    /// As [`Env::start`], with `extra` appended to the fleet's base.toml.
    fn start_with(extra: &str) -> Self {
        let moto = Moto::start();
        let model = ModelServer::start(Some(&moto.url()));
        let dir = std::env::temp_dir().join(unique("failoverd-prepare-models"));
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let lab = root().join("regions/lab");
        for entry in std::fs::read_dir(&lab).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_owned();
            std::fs::copy(&p, src.join(name)).unwrap();
        }
        let base = std::fs::read_to_string(lab.join("base.toml")).unwrap();
        std::fs::write(src.join("base.toml"), format!("{base}\n{FLEET}\n{extra}")).unwrap();
        let env = common::lab::lab_env(&moto, model.port, &[]);
        let out = Command::new(env!("CARGO_BIN_EXE_failoverd-lab"))
            .current_dir(root())
            .args(["provision", "--config"])
            .arg(src.join("us-east-1.toml"))
            .arg("--out")
            .arg(dir.join("regions"))
            .env_clear()
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "provision: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env_map: EnvSource = env.iter().cloned().collect();
        let cfg = failoverd::config::load(&dir.join("regions/us-west-2.toml"), &env_map)
            .unwrap_or_else(|e| panic!("{}", e.report()));
        let clients = Arc::new(
            AwsClients::new(common::sdk_config(), cfg.endpoints.clone())
                .with_timeouts(failoverd::aws::clients::provisioning_timeouts()),
        );
        let ports =
            failoverd::aws::ports(&cfg, clients, Arc::new(failoverd::ports::probes::NoProbes));
        let e = Self {
            moto,
            _model: model,
            dir,
            cfg,
            ports,
        };
        rt().block_on(async {
            e.ports
                .store
                .write_record(&RecordWrite::Initialize {
                    active: EAST.into(),
                    incarnation: "t".into(),
                    by: "test".into(),
                    at: e.ports.clock.now_ms(),
                    reason: "test".into(),
                })
                .await
                .unwrap();
        });
        e
    }

    fn lab(&self, query: &str) {
        let addr = self.moto.url().trim_start_matches("http://").to_string();
        let (status, body) = common::http("POST", &addr, query, "").unwrap();
        assert_eq!(status, 200, "{query}: {body}");
    }

    /// `endpoint`'s AllTraffic instances in `region`.
    async fn instances(&self, region: &str, endpoint: &str) -> u32 {
        let st = self
            .ports
            .endpoints
            .describe(region, endpoint)
            .await
            .unwrap()
            .unwrap();
        st.provisioned()[0].instances
    }

    /// `component`'s (current, desired) copies and status in `region`.
    async fn copies(&self, region: &str, component: &str) -> (u32, u32, ComponentStatus) {
        let c = self
            .ports
            .endpoints
            .describe_component(region, component)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{component} exists in {region}"));
        (
            c.current_copies.unwrap_or(0),
            c.desired_copies.unwrap_or(0),
            c.status,
        )
    }

    /// Give `component` in `region` `n` copies and wait until it has them.
    async fn set_copies(&self, region: &str, component: &str, n: u32) {
        common::wait_until(
            "the component to take updates",
            Duration::from_secs(30),
            || async {
                let (.., status) = self.copies(region, component).await;
                (status == ComponentStatus::InService).then_some(())
            },
        )
        .await;
        self.ports
            .endpoints
            .set_copy_count(region, component, n)
            .await
            .unwrap();
        common::wait_until("the copies", Duration::from_secs(30), || async {
            let (current, _, status) = self.copies(region, component).await;
            (current == n && status == ComponentStatus::InService).then_some(())
        })
        .await;
    }

    async fn record(&self) -> ControlRecord {
        self.ports.store.read_record().await.unwrap().unwrap()
    }

    /// Claim a failover to us-west-2 (the record goes failing over).
    async fn claim(&self, old_region_healthy: bool) -> ControlRecord {
        let r = self.record().await;
        let plan = FailoverPlan {
            from: EAST.into(),
            to: WEST.into(),
            epoch: r.epoch + 1,
            execution: format!("failover-t-{}", r.epoch + 1),
            initiator: WEST.into(),
            expected_version: r.version,
            reason: "test".into(),
            ungraceful: false,
            old_region_healthy,
            forced: false,
            automatic: true,
            changed_by: WEST.into(),
            claimed_at: self.ports.clock.now_ms(),
            supersedes: None,
            state_machine: None,
        };
        self.ports
            .store
            .write_record(&RecordWrite::Claim { plan })
            .await
            .unwrap();
        let r = self.record().await;
        assert_eq!(r.phase, Phase::FailingOver);
        r
    }

    async fn journal(&self, kind: &str) -> Vec<Event> {
        self.ports
            .store
            .events(200, self.ports.clock.now_ms())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The fleet's measured need the test decides: `embed`'s traffic needs
/// two copies; nothing else is measured.
fn need(pairs: &[(&str, &str)]) -> Option<u32> {
    pairs.contains(&(WEST, "lab-gpu/embed-usw2")).then_some(2)
}

/// The entry of `list` (`model_endpoints` or `components`) for `name`.
fn entry<'a>(out: &'a Value, list: &str, key: &str, name: &str) -> &'a Value {
    out[list]
        .as_array()
        .and_then(|a| a.iter().find(|e| e[key] == name))
        .unwrap_or_else(|| panic!("no {list} entry for {name}: {out:#}"))
}

#[test]
fn prepare_raises_each_models_own_endpoint_and_each_components_copies() {
    let env = Env::start();
    rt().block_on(async {
        // Provisioning created the components (one copy each) and the
        // policy that lets the daemon read and grow them.
        for c in ["llm-usw2", "embed-usw2"] {
            common::wait_until("the component in service", Duration::from_secs(30), || async {
                let (current, _, status) = env.copies(WEST, c).await;
                (status == ComponentStatus::InService && current == 1).then_some(())
            })
            .await;
        }
        assert!(
            env.ports
                .endpoints
                .describe_component(EAST, "llm-usw2")
                .await
                .unwrap()
                .is_none(),
            "components are regional"
        );
        let cfn = aws_sdk_cloudformation::Client::from_conf(
            aws_sdk_cloudformation::config::Builder::from(&common::sdk_config())
                .region(aws_config::Region::new(EAST))
                .endpoint_url(env.moto.url())
                .build(),
        );
        let iam = cfn
            .list_stack_resources()
            .stack_name("failoverd-iam")
            .send()
            .await
            .unwrap();
        assert!(
            iam.stack_resource_summaries()
                .iter()
                .any(|r| r.logical_resource_id() == Some("DaemonInferenceComponents")),
            "iam.yaml's component policy is deployed when the fleet maps components"
        );
        assert!(
            iam.stack_resource_summaries()
                .iter()
                .any(|r| r.logical_resource_id() == Some("DaemonModelEndpoints")),
            "iam.yaml's policy for models' own endpoints is deployed when models have some"
        );

        // The active region: fraud on three instances, llm on two copies.
        env.ports
            .endpoints
            .set_instance_counts(EAST, "fraud-use1", &[("AllTraffic".into(), 3)])
            .await
            .unwrap();
        env.set_copies(EAST, "llm-use1", 2).await;

        let r = env.claim(true).await;
        let deadline = env.ports.clock.now_ms() + 900_000;
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            prepare::prepare(&env.cfg, &env.ports, deadline, &need),
        )
        .await
        .expect("prepare finishes")
        .unwrap_or_else(|e| panic!("{e}"));

        let fraud = entry(&out, "model_endpoints", "endpoint", "fraud-usw2");
        assert_eq!(fraud["scaled"], true, "{out:#}");
        assert_eq!(fraud["plan"][0]["to"], 3, "{out:#}");
        assert_eq!(env.instances(WEST, "fraud-usw2").await, 3);
        let llm = entry(&out, "components", "component", "llm-usw2");
        assert_eq!(llm["scaled"], true, "{out:#}");
        assert_eq!(llm["endpoint"], "lab-gpu", "{out:#}");
        assert_eq!(env.copies(WEST, "llm-usw2").await.0, 2);
        let embed = entry(&out, "components", "component", "embed-usw2");
        assert_eq!(embed["scaled"], true, "{out:#}");
        assert!(
            embed["to_match"]
                .as_str()
                .is_some_and(|s| s.ends_with("raised to the fleet's measured need (2)")),
            "{out:#}"
        );
        assert_eq!(env.copies(WEST, "embed-usw2").await.0, 2);
        // The shared endpoint holds what us-east-1's does; the GPU
        // endpoint is not scaled itself (its components are).
        assert_eq!(out["capacity"]["scaled"], false, "{out:#}");
        assert!(
            out["model_endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["endpoint"] != "lab-gpu"),
            "{out:#}"
        );
        // The warm-up reached each component with its header.
        let warmed: Vec<&Value> = out["warmed"].as_array().unwrap().iter().collect();
        assert!(
            warmed
                .iter()
                .any(|w| w["target"]["inference_component"] == "llm-usw2"),
            "{out:#}"
        );

        let scale = env.journal("prepare_scale").await;
        for want in [
            "us-west-2/fraud-usw2: scale AllTraffic 1 -> 3 to match us-east-1's fraud-use1 now",
            "us-west-2/lab-gpu/llm-usw2: scale copies 1 -> 2 to match us-east-1's lab-gpu/llm-use1 now",
            "us-west-2/lab-gpu/embed-usw2: scale copies 1 -> 2 to match us-east-1's lab-gpu/embed-use1 now, raised to the fleet's measured need (2)",
        ] {
            assert!(
                scale
                    .iter()
                    .any(|e| e.detail.starts_with(want) && e.epoch == Some(r.epoch)),
                "{want}: {scale:?}"
            );
        }

        // A retried step: everything already holds what it needs.
        let again = prepare::prepare(&env.cfg, &env.ports, deadline, &need)
            .await
            .unwrap();
        for (list, key, name) in [
            ("model_endpoints", "endpoint", "fraud-usw2"),
            ("components", "component", "llm-usw2"),
            ("components", "component", "embed-usw2"),
        ] {
            assert_eq!(entry(&again, list, key, name)["scaled"], false, "{again:#}");
        }
        assert_eq!(env.journal("prepare_scale").await.len(), scale.len());

        // Never lower: the active went down to one copy; us-west-2 keeps two.
        env.set_copies(EAST, "llm-use1", 1).await;
        prepare::prepare(&env.cfg, &env.ports, deadline, &need)
            .await
            .unwrap();
        assert_eq!(env.copies(WEST, "llm-usw2").await, (2, 2, ComponentStatus::InService));

        // AWS refuses llm's copies (the quota for its instance type) while
        // us-east-1 still serves: the step fails naming it, at once.
        env.lab("/_lab/inference-components?component=llm-usw2&refuse=quota");
        env.set_copies(EAST, "llm-use1", 4).await;
        let err = tokio::time::timeout(
            Duration::from_secs(60),
            prepare::prepare(&env.cfg, &env.ports, deadline, &need),
        )
        .await
        .expect("decided, not waited out")
        .expect_err("the old region serves: the step fails");
        assert!(
            matches!(&err, PrepareError::ComponentRefused { component, .. } if component == "llm-usw2"),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("ResourceLimitExceeded"), "{text}");
        assert!(text.contains("us-east-1 still serves"), "{text}");
        assert_eq!(env.copies(WEST, "llm-usw2").await.0, 2, "nothing grew");
    });
}

#[test]
fn with_the_old_region_down_a_refused_component_is_switched_onto_and_journalled() {
    let env = Env::start();
    rt().block_on(async {
        env.set_copies(EAST, "llm-use1", 3).await;
        // The update is taken, and the component stays in service with its
        // one copy and a FailureReason.
        env.lab("/_lab/inference-components?component=llm-usw2&refuse=insufficient");
        env.claim(false).await;
        let deadline = env.ports.clock.now_ms() + 900_000;
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            prepare::prepare(&env.cfg, &env.ports, deadline, &need),
        )
        .await
        .expect("decided, not waited out")
        .expect("the old region is down: the switch goes ahead");
        let llm = entry(&out, "components", "component", "llm-usw2");
        assert_eq!(llm["scaled"], false, "{out:#}");
        assert!(
            llm["refused"]
                .as_str()
                .is_some_and(|r| r.contains("InsufficientInstanceCapacity")),
            "{out:#}"
        );
        assert_eq!(llm["short"][0], "copies", "{out:#}");
        // Its neighbour on the same endpoint still got its copies.
        assert_eq!(
            entry(&out, "components", "component", "embed-usw2")["scaled"],
            true,
            "{out:#}"
        );
        assert_eq!(env.copies(WEST, "embed-usw2").await.0, 2);
        let refused = env.journal("prepare_capacity_refused").await;
        assert!(
            refused.iter().any(|e| e
                .detail
                .starts_with("us-west-2/lab-gpu/llm-usw2: AWS refused the scale-up")
                && e.detail.contains("InsufficientInstanceCapacity")
                && e.detail.contains("us-east-1 is down")
                && e.detail.contains("copies short")),
            "{refused:?}"
        );
        assert_eq!(env.copies(WEST, "llm-usw2").await.0, 1, "nothing grew");
    });
}

/// `check-config --aws`'s SageMaker check (`control::preflight::endpoints`)
/// reads the components the files map: all there after provisioning; one
/// deleted in us-west-2 is reported missing, naming its endpoint.
#[test]
fn the_aws_check_finds_a_mapped_component_that_is_gone() {
    let env = Env::start();
    rt().block_on(async {
        let found = failoverd::control::preflight::endpoints(&env.cfg, &*env.ports.endpoints).await;
        assert!(
            found.missing.is_empty() && found.unverified.is_empty(),
            "{found:?}"
        );
        let clients = AwsClients::new(common::sdk_config(), env.cfg.endpoints.clone());
        clients
            .sagemaker(WEST)
            .delete_inference_component()
            .inference_component_name("embed-usw2")
            .send()
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while env
            .ports
            .endpoints
            .describe_component(WEST, "embed-usw2")
            .await
            .unwrap()
            .is_some()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "embed-usw2 never went"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let found = failoverd::control::preflight::endpoints(&env.cfg, &*env.ports.endpoints).await;
        let missing: Vec<(&str, &str, Option<&str>)> = found
            .missing
            .iter()
            .map(|f| {
                (
                    f.region.as_str(),
                    f.endpoint.as_str(),
                    f.component.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            missing,
            [(WEST, "lab-gpu", Some("embed-usw2"))],
            "{found:?}"
        );
    });
}

/// Delete us-west-2's `embed-usw2` and wait until it is gone.
async fn delete_embed(sm: &aws_sdk_sagemaker::Client, env: &Env) {
    sm.delete_inference_component()
        .inference_component_name("embed-usw2")
        .send()
        .await
        .unwrap();
    common::wait_until("embed-usw2 gone", Duration::from_secs(20), || async {
        env.ports
            .endpoints
            .describe_component(WEST, "embed-usw2")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

/// Create us-west-2's `embed-usw2` on `endpoint` running `image`, and wait
/// until it is in service.
async fn create_embed(sm: &aws_sdk_sagemaker::Client, env: &Env, endpoint: &str, image: &str) {
    failoverd::aws::sagemaker::ensure_inference_component(
        sm,
        &failoverd::aws::sagemaker::ComponentSpec {
            component: "embed-usw2",
            endpoint,
            variant: "AllTraffic",
            image,
            min_memory_mb: 1024,
            copies: 1,
        },
    )
    .await
    .unwrap();
    common::wait_until("embed-usw2 in service", Duration::from_secs(20), || async {
        let (.., status) = env.copies(WEST, "embed-usw2").await;
        (status == ComponentStatus::InService).then_some(())
    })
    .await;
}

/// The endpoints of the lab, counting each `DescribeEndpoint` and
/// `DescribeInferenceComponent` by (region, name).
struct Counting {
    inner: Arc<dyn Endpoints>,
    reads: Mutex<BTreeMap<(String, String, String), u32>>,
}

impl Counting {
    fn count(&self, op: &str, region: &str, name: &str) {
        *self
            .reads
            .lock()
            .unwrap()
            .entry((op.into(), region.into(), name.into()))
            .or_default() += 1;
    }

    fn take(&self) -> BTreeMap<(String, String, String), u32> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl Endpoints for Counting {
    async fn status(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<failoverd::ports::endpoints::EndpointStatus>, PortError> {
        self.inner.status(region, endpoint).await
    }
    async fn warm_up(
        &self,
        region: &str,
        endpoint: &str,
        target_model: Option<&str>,
        body: &[u8],
    ) -> WarmUp {
        self.inner
            .warm_up(region, endpoint, target_model, body)
            .await
    }
    async fn describe(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointState>, PortError> {
        self.count("describe", region, endpoint);
        self.inner.describe(region, endpoint).await
    }
    async fn set_instance_counts(
        &self,
        region: &str,
        endpoint: &str,
        counts: &[(String, u32)],
    ) -> Result<(), PortError> {
        self.inner
            .set_instance_counts(region, endpoint, counts)
            .await
    }
    async fn tags(&self, region: &str, arn: &str) -> Result<Vec<(String, String)>, PortError> {
        self.inner.tags(region, arn).await
    }
    async fn delete(&self, region: &str, endpoint: &str) -> Result<Deleted, PortError> {
        self.inner.delete(region, endpoint).await
    }
    async fn served(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<Vec<failoverd::ports::endpoints::ServedVariant>>, PortError> {
        self.inner.served(region, endpoint).await
    }
    async fn describe_component(
        &self,
        region: &str,
        component: &str,
    ) -> Result<Option<failoverd::ports::endpoints::ComponentState>, PortError> {
        self.count("describe_component", region, component);
        self.inner.describe_component(region, component).await
    }
    async fn set_copy_count(
        &self,
        region: &str,
        component: &str,
        copies: u32,
    ) -> Result<(), PortError> {
        self.inner.set_copy_count(region, component, copies).await
    }
    async fn model_containers(
        &self,
        region: &str,
        model: &str,
    ) -> Result<Option<Vec<(String, Option<String>)>>, PortError> {
        self.count("model_containers", region, model);
        self.inner.model_containers(region, model).await
    }
    async fn components_on(&self, region: &str, endpoint: &str) -> Result<Vec<String>, PortError> {
        self.inner.components_on(region, endpoint).await
    }
}

/// A component that runs a SageMaker model (`Specification.ModelName`, no
/// container of its own) is judged by that model's containers
/// (`DescribeModel`, moto's models through the real SDK): us-west-2's
/// `embed-usw2` re-created on a model whose image is the active's
/// component's own is the same model (model names differ per region);
/// one on a model with another image is critical naming both; its model
/// deleted is critical (no new copy can start).
#[test]
fn a_component_that_runs_a_sagemaker_model_is_judged_by_the_models_containers() {
    use aws_sdk_sagemaker::types::{
        ContainerDefinition, InferenceComponentComputeResourceRequirements,
        InferenceComponentRuntimeConfig, InferenceComponentSpecification,
    };
    use failoverd::control::standby::{self, Needs};
    use failoverd::core::standby::{Check, Severity};
    let env = Env::start();
    let needs = Needs::all(Some(1));
    let embed = "lab-gpu/embed-usw2";
    rt().block_on(async {
        let clients = AwsClients::new(common::sdk_config(), env.cfg.endpoints.clone());
        let sm = clients.sagemaker(WEST);
        let theirs = env
            .ports
            .endpoints
            .describe_component(EAST, "embed-use1")
            .await
            .unwrap()
            .unwrap()
            .spec;
        let image = theirs.image.clone().unwrap();
        let model_of = |name: &'static str, image: String| {
            let sm = sm.clone();
            async move {
                sm.create_model()
                    .model_name(name)
                    .execution_role_arn("arn:aws:iam::123456789012:role/sagemaker")
                    .primary_container(ContainerDefinition::builder().image(image).build())
                    .send()
                    .await
                    .unwrap();
            }
        };
        let runs = |model: &'static str| {
            let sm = sm.clone();
            let env = &env;
            async move {
                delete_embed(&sm, env).await;
                sm.create_inference_component()
                    .inference_component_name("embed-usw2")
                    .endpoint_name("lab-gpu")
                    .variant_name("AllTraffic")
                    .specification(
                        InferenceComponentSpecification::builder()
                            .model_name(model)
                            .compute_resource_requirements(
                                InferenceComponentComputeResourceRequirements::builder()
                                    .number_of_cpu_cores_required(1.0)
                                    .min_memory_required_in_mb(1024)
                                    .build(),
                            )
                            .build(),
                    )
                    .runtime_config(
                        InferenceComponentRuntimeConfig::builder()
                            .copy_count(1)
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
                common::wait_until("embed-usw2 in service", Duration::from_secs(20), || async {
                    let (.., status) = env.copies(WEST, "embed-usw2").await;
                    (status == ComponentStatus::InService).then_some(())
                })
                .await;
            }
        };
        let model_check = || async {
            let f = standby::check(&env.cfg, &env.ports, EAST, &needs).await;
            f.into_iter()
                .find(|x| x.endpoint == embed && x.check == Check::Model)
                .unwrap()
        };

        // The active's own container, as a model here: the same.
        model_of("embed-model-usw2", image.clone()).await;
        runs("embed-model-usw2").await;
        let x = model_check().await;
        assert_eq!(x.severity, Severity::Ok, "{x}");

        // A model with another image.
        let old = "123456789012.dkr.ecr.us-west-2.amazonaws.com/embed:old".to_string();
        model_of("embed-model-old", old.clone()).await;
        runs("embed-model-old").await;
        let x = model_check().await;
        assert_eq!(x.severity, Severity::Critical, "{x}");
        assert!(
            x.detail
                .contains(&format!("containers {old}, the active's {image}")),
            "{x}"
        );

        // Its model deleted under it.
        sm.delete_model()
            .model_name("embed-model-old")
            .send()
            .await
            .unwrap();
        let x = model_check().await;
        assert_eq!(x.severity, Severity::Critical, "{x}");
        assert!(
            x.detail.contains("embed-model-old, which does not exist"),
            "{x}"
        );
    });
}

/// Readiness judges a standby's inference components against the
/// active's, through the real SDK against the lab's components: the
/// provisioned fleet is ready (each endpoint and component read once a
/// round); copies below the active's are info and an unmeasured need
/// unknown; a component deleted is critical, one re-created on another
/// endpoint is critical naming it, and one re-created with another image
/// is critical naming both images.
#[test]
fn a_standbys_components_are_judged_against_the_actives() {
    use failoverd::control::standby::{self, Needs};
    use failoverd::core::standby::{Check, Finding, Severity};
    let env = Env::start();
    let counting = Arc::new(Counting {
        inner: env.ports.endpoints.clone(),
        reads: Mutex::new(BTreeMap::new()),
    });
    let ports = Ports {
        endpoints: counting.clone(),
        ..env.ports.clone()
    };
    let needs = Needs {
        by_component: BTreeMap::from([
            (("lab-gpu".to_string(), "llm-usw2".to_string()), Some(1)),
            (("lab-gpu".to_string(), "embed-usw2".to_string()), None),
        ]),
        ..Needs::all(Some(1))
    };
    let of = |f: &[Finding], endpoint: &str, c: Check| -> Finding {
        f.iter()
            .find(|x| x.endpoint == endpoint && x.check == c)
            .cloned()
            .unwrap_or_else(|| panic!("no {endpoint} {c:?} in {f:#?}"))
    };
    let llm = "lab-gpu/llm-usw2";
    let embed = "lab-gpu/embed-usw2";
    rt().block_on(async {
        for (r, c) in [
            (WEST, "llm-usw2"),
            (WEST, "embed-usw2"),
            (EAST, "llm-use1"),
            (EAST, "embed-use1"),
        ] {
            common::wait_until("the component in service", Duration::from_secs(30), || async {
                let (current, _, status) = env.copies(r, c).await;
                (status == ComponentStatus::InService && current == 1).then_some(())
            })
            .await;
        }
        let f = standby::check(&env.cfg, &ports, EAST, &needs).await;
        for c in [Check::Exists, Check::Serving, Check::LastUpdate, Check::Model] {
            for e in [llm, embed] {
                let x = of(&f, e, c);
                assert_eq!(x.severity, Severity::Ok, "{x}");
            }
        }
        assert_eq!(of(&f, llm, Check::Capacity).severity, Severity::Ok, "{f:#?}");
        let x = of(&f, embed, Check::Capacity);
        assert_eq!(x.severity, Severity::Unknown, "{x}");
        assert!(x.detail.contains("not measured"), "{x}");
        assert_eq!(of(&f, llm, Check::Exists).model, "llm");
        // Each endpoint and component read once in the round.
        let reads = counting.take();
        for (c, r) in [
            ("llm-usw2", WEST),
            ("embed-usw2", WEST),
            ("llm-use1", EAST),
            ("embed-use1", EAST),
        ] {
            assert_eq!(
                reads.get(&("describe_component".to_string(), r.to_string(), c.to_string())),
                Some(&1),
                "{reads:?}"
            );
        }
        assert!(reads.values().all(|n| *n == 1), "{reads:?}");

        // The active holds more copies: prepare would raise ours.
        env.set_copies(EAST, "llm-use1", 3).await;
        let f = standby::check(&env.cfg, &ports, EAST, &needs).await;
        let x = of(&f, llm, Check::Capacity);
        assert_eq!(x.severity, Severity::Info, "{x}");
        assert!(x.detail.contains("the active's 3"), "{x}");

        // embed-usw2 gone; then on another endpoint; then with another
        // image.
        let clients = AwsClients::new(common::sdk_config(), env.cfg.endpoints.clone());
        let sm = clients.sagemaker(WEST);
        let theirs = env
            .ports
            .endpoints
            .describe_component(EAST, "embed-use1")
            .await
            .unwrap()
            .unwrap()
            .spec
            .image
            .unwrap();
        delete_embed(&sm, &env).await;
        let f = standby::check(&env.cfg, &ports, EAST, &needs).await;
        let x = of(&f, embed, Check::Exists);
        assert_eq!(x.severity, Severity::Critical, "{x}");
        assert!(x.detail.contains("no inference component embed-usw2"), "{x}");

        create_embed(&sm, &env, "fraud-usw2", &theirs).await;
        let f = standby::check(&env.cfg, &ports, EAST, &needs).await;
        let x = of(&f, embed, Check::Exists);
        assert_eq!(x.severity, Severity::Critical, "{x}");
        assert!(
            x.detail.contains("sits on endpoint fraud-usw2, not on lab-gpu"),
            "{x}"
        );

        delete_embed(&sm, &env).await;
        create_embed(
            &sm,
            &env,
            "lab-gpu",
            "123456789012.dkr.ecr.us-west-2.amazonaws.com/embed:old",
        )
        .await;
        let f = standby::check(&env.cfg, &ports, EAST, &needs).await;
        assert_eq!(of(&f, embed, Check::Exists).severity, Severity::Ok);
        let x = of(&f, embed, Check::Model);
        assert_eq!(x.severity, Severity::Critical, "{x}");
        assert_eq!(
            x.detail,
            format!("image 123456789012.dkr.ecr.us-west-2.amazonaws.com/embed:old, the active's {theirs}")
        );
        assert_eq!(of(&f, llm, Check::Model).severity, Severity::Ok);
        let p = failoverd::core::standby::Published::of(EAST, &f, 0);
        assert!(
            p.critical.contains(&"lab-gpu/embed-usw2 model".to_string()),
            "{p:?}"
        );
    });
}

/// One instance of the big type is two units, of the small one one.
const UNITS: &str = "[cost.capacity_units]\n\"ml.g5.2xlarge\" = 2\n\"ml.g5.xlarge\" = 1\n";

/// Nothing is measured: the active's count (and units) decide.
fn no_need(_: &[(&str, &str)]) -> Option<u32> {
    None
}

/// Instance pools (chaos/lab/lab_pools.py: the lab fills a variant's count
/// in priority order, each type up to its limit, as SageMaker falls back):
/// us-east-1's `fraud` runs 4 instances of the big type (8 units); in
/// us-west-2 only one big instance is to be had, so the scale-up to 4
/// settles on 1 big and 3 small (5 units). Prepare asks for 3 more small
/// ones, journals why, reports it, and a second run asks for nothing. The
/// adapter reads the pools' counts (DescribeEndpoint) and their
/// priorities (DescribeEndpointConfig).
#[test]
fn a_standbys_pool_that_fell_back_is_topped_up_to_the_actives_units() {
    let env = Env::start_with(UNITS);
    assert_eq!(env.cfg.cost.capacity_units.of("ml.g5.2xlarge"), 2.0);
    let big_first = "pools=ml.g5.2xlarge,ml.g5.xlarge";
    env.lab(&format!(
        "/_lab/instance-pools?endpoint=fraud-use1&{big_first}"
    ));
    env.lab(&format!(
        "/_lab/instance-pools?endpoint=fraud-usw2&region={WEST}&{big_first}&limit=ml.g5.2xlarge:1"
    ));
    rt().block_on(async {
        env.ports
            .endpoints
            .set_instance_counts(EAST, "fraud-use1", &[("AllTraffic".into(), 4)])
            .await
            .unwrap();
        let pools = |st: EndpointState| -> Vec<(String, u32)> {
            st.variants[0]
                .pools
                .iter()
                .map(|p| (p.instance_type.clone(), p.current))
                .collect()
        };
        let described = |region: &'static str, endpoint: &'static str| {
            let env = &env;
            async move {
                env.ports
                    .endpoints
                    .describe(region, endpoint)
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        assert_eq!(
            pools(described(EAST, "fraud-use1").await),
            [("ml.g5.2xlarge".into(), 4), ("ml.g5.xlarge".into(), 0)]
        );
        assert_eq!(
            pools(described(WEST, "fraud-usw2").await),
            [("ml.g5.2xlarge".into(), 1), ("ml.g5.xlarge".into(), 0)]
        );
        let served = env
            .ports
            .endpoints
            .served(WEST, "fraud-usw2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            served[0].pools,
            [("ml.g5.2xlarge".into(), 1), ("ml.g5.xlarge".into(), 2)],
            "the endpoint config's pools and priorities"
        );
        assert_eq!(served[0].instance_type, None);

        // Readiness compares units: us-west-2's fraud holds 2 units (one
        // big instance) against a need of 8 (tier2: prepare scales it up),
        // its pools named; the instance types are its pools.
        let needs = failoverd::control::standby::Needs::all(Some(8));
        let f = failoverd::control::standby::check(&env.cfg, &env.ports, EAST, &needs).await;
        let finding = |check: &str| {
            f.iter()
                .find(|x| x.endpoint == "fraud-usw2" && x.check.as_str() == check)
                .unwrap_or_else(|| panic!("no {check} finding for fraud-usw2: {f:?}"))
        };
        assert_eq!(
            finding("capacity").detail,
            "holds 2 units (pools AllTraffic: ml.g5.2xlarge 1, ml.g5.xlarge 0), the fleet needs 8 units: prepare scales it up (tier2)"
        );
        assert_eq!(
            finding("instance_type").detail,
            "the same instance types as the active",
            "both run the same pools"
        );

        let r = env.claim(true).await;
        let deadline = env.ports.clock.now_ms() + 900_000;
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            prepare::prepare(&env.cfg, &env.ports, deadline, &no_need),
        )
        .await
        .expect("prepare finishes")
        .unwrap_or_else(|e| panic!("{e}"));
        let fraud = entry(&out, "model_endpoints", "endpoint", "fraud-usw2");
        assert_eq!(fraud["scaled"], true, "{out:#}");
        assert_eq!(fraud["plan"][0]["to"], 7, "{out:#}");
        assert_eq!(
            fraud["pools"][0]["why"], "fell back to ml.g5.xlarge: 5 units of 8",
            "{out:#}"
        );
        assert_eq!(
            pools(described(WEST, "fraud-usw2").await),
            [("ml.g5.2xlarge".into(), 1), ("ml.g5.xlarge".into(), 6)],
            "8 units"
        );
        let fell = env.journal("prepare_pool_fallback").await;
        let want = "us-west-2/fraud-usw2: AllTraffic fell back to ml.g5.xlarge: 5 units of 8; ask 4 -> 7 instances";
        assert!(
            fell.iter()
                .any(|e| e.detail.starts_with(want) && e.epoch == Some(r.epoch)),
            "{want}: {fell:?}"
        );
        assert_eq!(fell.len(), 1, "{fell:?}");

        // A retried step: 8 units held, nothing asked, nothing journalled.
        let again = prepare::prepare(&env.cfg, &env.ports, deadline, &no_need)
            .await
            .unwrap();
        let fraud = entry(&again, "model_endpoints", "endpoint", "fraud-usw2");
        assert_eq!(fraud["scaled"], false, "{again:#}");
        assert_eq!(env.instances(WEST, "fraud-usw2").await, 7);
        assert_eq!(env.journal("prepare_pool_fallback").await.len(), 1);
    });
}
