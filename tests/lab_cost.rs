//! Cost controls next to failover, against moto's SageMaker control plane
//! through the real SDK and the daemon's own code (`control::cost`,
//! `control::prepare`, `failoverd cost --dry-run`, `failoverd status`), one
//! test per rule:
//!
//! - the schedule scales a standby up at business hours and down after;
//! - idle detection reduces in production and stops a tier3 endpoint
//!   outside it (the endpoint is gone, its config stays);
//! - idle detection on the fleet's real router counts, published in votes
//!   through the control table: a standby's endpoint that another region's
//!   router called is left alone until the window passes the call;
//! - traffic that bypasses the routers (CloudWatch `Invocations`) keeps an
//!   endpoint, and an unreadable CloudWatch reduces nothing;
//! - `ProtectedFromAutoStop=true` (read with ListTags) is honoured;
//! - the active region is never lowered blind, nor below its measured need;
//! - an in-flight failover leaves every region alone;
//! - the daemon's task runs on its own and holds back without quorum;
//! - a tier2 prepare step scales the target up to the active's capacity,
//!   and past its budget aborts while the old region serves, or switches
//!   onto what there is when it is down;
//! - the CLI's dry run shows the daemon's decisions and changes nothing;
//!   status shows the tiers and what each region holds.
//!
//! moto applies UpdateEndpointWeightsAndCapacities at once (no `Updating`
//! phase, MOTO-NOTES.md), so a slow scale-up is an Endpoints wrapper that
//! drops the update. Time is a fixed clock set by each test (Monday
//! 2025-01-06, UTC schedule) so the schedule's answer does not depend on
//! when the suite runs; the binary's tests use an all-day window instead.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use failoverd::aws::AwsClients;
use failoverd::aws::sagemaker::{self, EndpointKind as Kind, EndpointSpec};
use failoverd::config::{Config, EnvSource};
use failoverd::control::cost::{self, CostAction, CostTask, EndpointPlan};
use failoverd::control::prepare::{self, PrepareError};
use failoverd::core::control::{ControlRecord, Phase};
use failoverd::core::mono::Mono;
use failoverd::core::plan::FailoverPlan;
use failoverd::core::quorum::{NoQuorum, Receipts, Tally, Vote};
use failoverd::core::record::RecordWrite;
use failoverd::metrics::counts::Counter;
use failoverd::ports::endpoints::{Deleted, EndpointState, WarmUp};
use failoverd::ports::store::Event;
use failoverd::ports::traffic::{Counted, InvocationCounts, NotCounted};
use failoverd::ports::{Clock, ControlStore, Endpoints, PortError, Ports};
use failoverd::state::FleetCounts;
use failoverd::state::{RoundStatus, Shared};

/// Monday 2025-01-06 00:00 UTC, and an hour.
const MONDAY: u64 = 1_736_121_600_000;
const HOUR: u64 = 3_600_000;
const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
const ENDPOINT: &str = "prov";

/// A wall clock the test sets.
struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn monotonic(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
    /// The router's counts run on this clock: it moves with the test's
    /// wall clock, which these tests only ever set forward.
    fn mono(&self) -> Mono {
        Mono(self.0.load(Ordering::Relaxed))
    }
}

/// Router counts the test decides.
struct Counts {
    idle_since: Option<u64>,
    need: Option<u32>,
}

impl InvocationCounts for Counts {
    fn invocations(&self, _: &str, _: &str, _: u64, _: u64) -> Option<Counted> {
        self.idle_since.map(|since_ms| Counted {
            since_ms,
            invocations: 0,
        })
    }
    fn fleet_need(&self, _: &[(&str, &str)]) -> Option<u32> {
        self.need
    }
}

/// moto, a control table with a record (us-east-1 active), a provisioned
/// endpoint `prov` in both regions, and a daemon configuration for `local`.
struct Env {
    _moto: common::Moto,
    clients: Arc<AwsClients>,
    dir: PathBuf,
    cfg: Config,
    ports: Ports,
    clock: Arc<TestClock>,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The configuration files: base.toml (regions, tables, endpoints pointed at
/// moto, `[cost]` from `cost`) and `<local>.toml`.
fn write_config(
    dir: &std::path::Path,
    moto: &common::Moto,
    table: &str,
    local: &str,
    cost: &str,
) -> PathBuf {
    let url = moto.url();
    let regions: String = [EAST, WEST]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "[[regions]]\nname = \"{r}\"\npriority = {}\nprobe_urls = [\"https://{r}.lab.invalid/ping\"]\nstate_machine_arn = \"arn:aws:states:{r}:123456789012:stateMachine:f\"\nsagemaker = {{ provisioned = \"{ENDPOINT}\" }}\n",
                i + 1
            )
        })
        .collect();
    let base = format!(
        "[tables]\ncontrol = \"{table}\"\nrouting = \"routing\"\nwitness = \"us-east-2\"\ncontrol_region = \"{EAST}\"\n\
         [timings]\nprepare_budget = \"1s\"\n\
         [endpoints]\ndynamodb = \"{url}\"\nsfn = \"{url}\"\nroute53 = \"{url}\"\nsagemaker = \"{url}\"\nsagemaker_runtime = \"{url}\"\ns3 = \"{url}\"\ncloudwatch = \"{url}\"\napplication_autoscaling = \"{url}\"\nservice_quotas = \"{url}\"\niam = \"{url}\"\n\
         {regions}[[models]]\nname = \"fraud\"\n[[models]]\nname = \"chat\"\n[cost]\n{cost}\n"
    );
    std::fs::write(dir.join("base.toml"), base).unwrap();
    let f = dir.join(format!("{local}.toml"));
    std::fs::write(&f, format!("region = \"{local}\"\n")).unwrap();
    f
}

/// readiness's IAM dry run judges this role's policies (moto's IAM, the
/// lab's simulator: chaos/lab/lab_iam.py); [`Env::grant`] creates it.
const ROLE: &str = "arn:aws:iam::123456789012:role/lab-daemon";
const PRINCIPAL: &str = "readiness_principal = \"arn:aws:iam::123456789012:role/lab-daemon\"\n";
/// What the daemons' role grants for prepare on the standby's endpoint.
const PREPARE_GRANTS: &str = r#"{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint",
     "sagemaker:UpdateEndpointWeightsAndCapacities"],
   "Resource": "arn:aws:sagemaker:*:123456789012:endpoint/prov"},
  {"Effect": "Allow", "Action": ["states:SendTaskSuccess", "states:SendTaskHeartbeat"], "Resource": "*"}]}"#;

/// A business-hours schedule for `prov`: MON-FRI 09:00-18:00 at 3, else 1, UTC.
const SCHEDULE: &str = "[[cost.schedules]]\nendpoint = \"prov\"\ntimezone = \"UTC\"\noff_hours_min = 1\nwindows = [{ days = \"MON-FRI\", start = \"09:00\", end = \"18:00\", min = 3 }]\n";

impl Env {
    /// `instances`: (us-east-1's, us-west-2's) instance counts.
    fn start(local: &str, cost: &str, instances: (u32, u32)) -> Self {
        let moto = common::Moto::start();
        let clients = Arc::new(common::clients(&moto, Some(moto.url())));
        let dir = std::env::temp_dir().join(common::unique("failoverd-lab-cost"));
        std::fs::create_dir_all(&dir).unwrap();
        let table = common::unique("control");
        let f = write_config(&dir, &moto, &table, local, cost);
        let cfg = failoverd::config::load(&f, &EnvSource::new())
            .unwrap_or_else(|e| panic!("{}", e.report()));
        let clock = Arc::new(TestClock(AtomicU64::new(MONDAY + 10 * HOUR)));
        let mut ports = failoverd::aws::ports(
            &cfg,
            clients.clone(),
            Arc::new(failoverd::ports::probes::NoProbes),
        );
        ports.clock = clock.clone();
        let env = Self {
            _moto: moto,
            clients,
            dir,
            cfg,
            ports,
            clock,
        };
        rt().block_on(async {
            failoverd::aws::dynamo::create_control_table(&env.clients.dynamodb(EAST), &table)
                .await
                .unwrap();
            for (region, n) in [(EAST, instances.0), (WEST, instances.1)] {
                // moto imports its SageMaker backend on the first call, which
                // can outlast the client's attempt timeout on a loaded host:
                // wait for it to answer (level-triggered, capped).
                let sm = env.clients.sagemaker(region);
                common::wait_until(
                    "moto to create the endpoint",
                    Duration::from_secs(60),
                    || async {
                        sagemaker::ensure_endpoint(
                            &sm,
                            &EndpointSpec {
                                endpoint: ENDPOINT,
                                kind: Kind::Provisioned,
                                image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:1",
                                execution_role_arn: "arn:aws:iam::123456789012:role/sagemaker",
                                async_output: None,
                            },
                        )
                        .await
                        .map_err(|e| {
                            eprintln!("ensure_endpoint {region}: {}", failoverd::error_chain(&e))
                        })
                        .ok()
                    },
                )
                .await;
                env.set(region, n).await;
            }
            env.ports
                .store
                .write_record(&RecordWrite::Initialize {
                    active: EAST.into(),
                    incarnation: "t".into(),
                    by: "test".into(),
                    at: env.clock.now_ms(),
                    reason: "test".into(),
                })
                .await
                .unwrap();
        });
        env
    }

    /// The role [`ROLE`] in moto's IAM, with `policy` as its one inline
    /// policy (created on first use, the policy replaced after).
    async fn grant(&self, policy: &str) {
        let iam = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(self.clients.sdk_config())
                .endpoint_url(self._moto.url())
                .build(),
        );
        if iam.get_role().role_name("lab-daemon").send().await.is_err() {
            iam.create_role()
                .role_name("lab-daemon")
                .assume_role_policy_document(
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
                )
                .send()
                .await
                .unwrap();
        }
        iam.put_role_policy()
            .role_name("lab-daemon")
            .policy_name("failoverd-daemon")
            .policy_document(policy)
            .send()
            .await
            .unwrap();
    }

    fn at(&self, ms: u64) {
        self.clock.0.store(ms, Ordering::Relaxed);
    }

    async fn set(&self, region: &str, n: u32) {
        self.ports
            .endpoints
            .set_instance_counts(region, ENDPOINT, &[("AllTraffic".into(), n)])
            .await
            .unwrap();
    }

    /// `prov`'s AllTraffic count in `region`; `None` when it is gone.
    async fn holds(&self, region: &str) -> Option<u32> {
        let st = self
            .ports
            .endpoints
            .describe(region, ENDPOINT)
            .await
            .unwrap()?;
        Some(st.provisioned()[0].instances)
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
            claimed_at: self.clock.now_ms(),
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

    /// One round of `region`'s daemon, as its cost task runs it.
    async fn round(&self, region: &str, counts: &dyn InvocationCounts) -> EndpointPlan {
        let obs = cost::observe(&self.cfg, &self.ports, region, None).await;
        let plans = cost::decide(&self.cfg, &obs, counts);
        let epoch = obs
            .record
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map(|r| r.epoch);
        cost::act(&self.ports, region, epoch, &plans, &mut Default::default()).await;
        plans.into_iter().next().unwrap()
    }

    async fn journal(&self) -> Vec<Event> {
        self.ports
            .store
            .events(200, self.clock.now_ms())
            .await
            .unwrap()
            .items
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_failoverd"))
            .args(args)
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", EAST)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    }
}

fn action(p: &EndpointPlan) -> Option<(u32, u32)> {
    match &p.action {
        CostAction::Scale { changes } => Some((changes[0].from, changes[0].to)),
        _ => None,
    }
}

#[test]
fn the_schedule_scales_the_standby_up_at_business_hours_and_down_after() {
    let env = Env::start(WEST, SCHEDULE, (3, 1));
    rt().block_on(async {
        env.at(MONDAY + 10 * HOUR);
        let p = env.round(WEST, &NotCounted).await;
        assert_eq!(action(&p), Some((1, 3)), "{p}");
        assert_eq!(env.holds(WEST).await, Some(3));
        env.at(MONDAY + 19 * HOUR);
        // Without the routers' counts nobody can say the standby does not
        // serve (a failover held back while the routers route around the
        // active): it is not lowered blind.
        let p = env.round(WEST, &NotCounted).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("may be serving"), "{p}");
        assert_eq!(env.holds(WEST).await, Some(3));
        // Counted all day, no traffic: the 18:00 rule lowers it.
        let quiet = Counts {
            idle_since: Some(0),
            need: None,
        };
        let p = env.round(WEST, &quiet).await;
        assert_eq!(action(&p), Some((3, 1)), "{p}");
        assert_eq!(env.holds(WEST).await, Some(1));
        // A level, not an edge: the next round finds nothing to do.
        let p = env.round(WEST, &quiet).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        let scaled: Vec<String> = env
            .journal()
            .await
            .into_iter()
            .filter(|e| e.kind == "cost_scale")
            .map(|e| e.detail)
            .collect();
        assert_eq!(scaled.len(), 2, "{scaled:?}");
        assert!(
            scaled.iter().any(|d| d.starts_with(
                "us-west-2/prov [tier2, standby, holds AllTraffic=3]: scale AllTraffic 3 -> 1"
            )),
            "{scaled:?}"
        );
    });
}

#[test]
fn idle_detection_reduces_in_production_and_stops_tier3_outside_it() {
    let idle = Counts {
        idle_since: Some(0),
        need: None,
    };
    let env = Env::start(WEST, "[cost.idle]\nenabled = true", (3, 4));
    rt().block_on(async {
        env.at(MONDAY + 19 * HOUR);
        let p = env.round(WEST, &idle).await;
        assert_eq!(action(&p), Some((4, 1)), "{p}");
        assert!(p.why.contains("production reduces, never stops"), "{p}");
        assert_eq!(env.holds(WEST).await, Some(1));
        // The active region, as idle as the standby, is left alone.
        let p = env.round(EAST, &idle).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert_eq!(env.holds(EAST).await, Some(3));
    });
    drop(env);

    let env = Env::start(
        WEST,
        "environment = \"staging\"\ndefault_tier = \"tier3\"\n[cost.idle]\nenabled = true\nstop_outside_production = true",
        (3, 2),
    );
    rt().block_on(async {
        env.at(MONDAY + 19 * HOUR);
        let p = env.round(WEST, &idle).await;
        assert_eq!(
            p.action,
            CostAction::Stop {
                config: ENDPOINT.into()
            },
            "{p}"
        );
        assert_eq!(env.holds(WEST).await, None, "deleted");
        // The endpoint config stays: the journal says how to recreate it.
        env.clients
            .sagemaker(WEST)
            .describe_endpoint_config()
            .endpoint_config_name(ENDPOINT)
            .send()
            .await
            .unwrap();
        let stops: Vec<Event> = env
            .journal()
            .await
            .into_iter()
            .filter(|e| e.kind == "cost_stop")
            .collect();
        assert_eq!(stops.len(), 1, "{stops:?}");
        assert!(
            stops[0].detail.contains("its endpoint config prov stays"),
            "{stops:?}"
        );
        // Nothing left to stop: the next round says why and does nothing.
        let p = env.round(WEST, &idle).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("does not exist"), "{p}");
    });
}

/// Traffic that bypasses the routers keeps an endpoint: CloudWatch's
/// `Invocations` (moto's CloudWatch, through the SDK) in the window make it
/// in use although every router counted zero; a datapoint older than the
/// window does not; and when CloudWatch cannot be read, nothing is reduced
/// unless `cost.idle.cloudwatch = false` says every caller uses a router.
#[test]
fn cloudwatch_invocations_keep_an_endpoint_the_routers_never_saw() {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};

    let idle = Counts {
        idle_since: Some(0),
        need: None,
    };
    let env = Env::start(WEST, "[cost.idle]\nenabled = true", (3, 4));
    let now = MONDAY + 19 * HOUR;
    let put = |at_ms: u64, n: f64| {
        let cw = env.clients.cloudwatch(WEST);
        async move {
            cw.put_metric_data()
                .namespace("AWS/SageMaker")
                .metric_data(
                    MetricDatum::builder()
                        .metric_name("Invocations")
                        .dimensions(
                            Dimension::builder()
                                .name("EndpointName")
                                .value(ENDPOINT)
                                .build(),
                        )
                        .dimensions(
                            Dimension::builder()
                                .name("VariantName")
                                .value("AllTraffic")
                                .build(),
                        )
                        .timestamp(DateTime::from_millis(at_ms as i64))
                        .value(n)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    };
    rt().block_on(async {
        env.at(now);
        // Two hours ago: outside the 60-minute window.
        put(now - 2 * HOUR, 5.0).await;
        // Another endpoint's variant in the window: not this one's traffic.
        env.clients
            .cloudwatch(WEST)
            .put_metric_data()
            .namespace("AWS/SageMaker")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("Invocations")
                    .dimensions(
                        Dimension::builder()
                            .name("EndpointName")
                            .value("other")
                            .build(),
                    )
                    .dimensions(
                        Dimension::builder()
                            .name("VariantName")
                            .value("AllTraffic")
                            .build(),
                    )
                    .timestamp(DateTime::from_millis((now - 10 * 60_000) as i64))
                    .value(9.0)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        // In the window: 3 calls that no router saw.
        put(now - 20 * 60_000, 3.0).await;
        let p = env.round(WEST, &idle).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("3 in CloudWatch"), "{p}");
        assert_eq!(env.holds(WEST).await, Some(4));
        // An hour later the window has passed them: idle, reduced.
        env.at(now + HOUR);
        let p = env.round(WEST, &idle).await;
        assert_eq!(action(&p), Some((4, 1)), "{p}");
        assert_eq!(env.holds(WEST).await, Some(1));
    });
    drop(env);

    // CloudWatch unreachable (its endpoint is a closed port): not idle,
    // and the plan says why; with `cloudwatch = false`, the routers decide.
    for (cost, reduced) in [
        ("[cost.idle]\nenabled = true", false),
        ("[cost.idle]\nenabled = true\ncloudwatch = false", true),
    ] {
        let mut env = Env::start(WEST, cost, (3, 4));
        let dead = common::ClosedPort::new();
        let mut endpoints = env.clients.endpoints().clone();
        endpoints.cloudwatch = Some(dead.url());
        let clients = Arc::new(AwsClients::new(common::sdk_config(), endpoints));
        let mut ports = failoverd::aws::ports(
            &env.cfg,
            clients,
            Arc::new(failoverd::ports::probes::NoProbes),
        );
        ports.clock = env.clock.clone();
        env.ports = ports;
        rt().block_on(async {
            env.at(now);
            let p = env.round(WEST, &idle).await;
            if reduced {
                assert_eq!(action(&p), Some((4, 1)), "{p}");
            } else {
                assert_eq!(p.action, CostAction::None, "{p}");
                assert!(p.why.contains("CloudWatch Invocations not read"), "{p}");
                assert!(
                    p.why.contains("GetMetricStatistics"),
                    "the error is shown: {p}"
                );
                assert_eq!(env.holds(WEST).await, Some(4));
            }
        });
    }
}

/// An endpoint that hosts inference components: SageMaker publishes each
/// component's calls under `InferenceComponentName` alone, with no
/// `EndpointName`, so idle detection lists the components on the endpoint
/// (`ListInferenceComponents`, the lab's emulation) and reads each one's
/// `Invocations`. A component nobody mapped in the configuration (another
/// team's, on the same endpoint) counts as well: asked by endpoint and
/// variant only, its three calls would read as none and the endpoint would
/// be reduced under it.
#[test]
fn cloudwatch_counts_the_calls_of_every_component_on_an_endpoint() {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};

    let idle = Counts {
        idle_since: Some(0),
        need: None,
    };
    let env = Env::start(WEST, "[cost.idle]\nenabled = true", (3, 4));
    let now = MONDAY + 19 * HOUR;
    rt().block_on(async {
        let sm = env.clients.sagemaker(WEST);
        sagemaker::ensure_inference_component(
            &sm,
            &sagemaker::ComponentSpec {
                component: "side",
                endpoint: ENDPOINT,
                variant: "AllTraffic",
                image: "123456789012.dkr.ecr.us-west-2.amazonaws.com/side:1",
                min_memory_mb: 1024,
                copies: 1,
            },
        )
        .await
        .unwrap();
        let put = |component: &'static str, at_ms: u64, n: f64| {
            let cw = env.clients.cloudwatch(WEST);
            async move {
                cw.put_metric_data()
                    .namespace("AWS/SageMaker")
                    .metric_data(
                        MetricDatum::builder()
                            .metric_name("Invocations")
                            .dimensions(
                                Dimension::builder()
                                    .name("InferenceComponentName")
                                    .value(component)
                                    .build(),
                            )
                            .timestamp(DateTime::from_millis(at_ms as i64))
                            .value(n)
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
        };
        env.at(now);
        // A component on no endpoint of ours: not this endpoint's traffic.
        put("elsewhere", now - 10 * 60_000, 9.0).await;
        // The component's 3 calls in the window, which no router saw.
        put("side", now - 20 * 60_000, 3.0).await;
        let p = env.round(WEST, &idle).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("3 in CloudWatch"), "only side's: {p}");
        assert_eq!(env.holds(WEST).await, Some(4));
        // An hour later the window has passed them: idle, reduced.
        env.at(now + HOUR);
        let p = env.round(WEST, &idle).await;
        assert_eq!(action(&p), Some((4, 1)), "{p}");
    });
}

/// Publish both routers' counts in their votes through the control table,
/// and hand us-west-2's `Shared` the votes as its reconcile loop would.
async fn publish_votes(env: &Env, east: &Counter, west: &Shared) {
    let now = env.clock.now_ms();
    for (observer, traffic) in [
        (EAST, east.traffic(Mono(now))),
        (WEST, west.traffic.traffic(Mono(now))),
    ] {
        env.ports
            .store
            .put_vote(&Vote {
                observer: observer.into(),
                instance: None,
                at: now,
                seen_epoch: 1,
                view: Default::default(),
                traffic,
                fleet: None,
                readiness: None,
                lease_ms: None,
            })
            .await
            .unwrap();
    }
    let votes = env.ports.store.read_votes().await.unwrap();
    let votes = Receipts::default().effective(&votes, now);
    west.publish(RoundStatus {
        votes,
        ..Default::default()
    });
}

#[test]
fn idle_detection_runs_on_the_fleets_router_counts() {
    let env = Env::start(WEST, "[cost.idle]\nenabled = true", (3, 4));
    rt().block_on(async {
        let start = MONDAY + 10 * HOUR;
        let minute = 60_000;
        // Both routers count from 10:00; us-east-1's sends one request to
        // us-west-2's endpoint at 10:30 (cross-region), us-west-2's none.
        let east = Counter::default();
        east.start(Mono(start));
        let west = Arc::new(Shared::default());
        west.traffic.start(Mono(start));
        east.record(WEST, ENDPOINT, Mono(start + 30 * minute));
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(env.cfg.clone()));
        let counts = FleetCounts::new(rx, west.clone(), env.clock.clone());

        // 11:00, no votes read yet: us-east-1's counts are unknown.
        env.at(start + HOUR);
        let p = env.round(WEST, &counts).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("not every region's router"), "{p}");
        // Votes read: a whole hour counted, but the 10:30 call is in it.
        publish_votes(&env, &east, &west).await;
        let p = env.round(WEST, &counts).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("invocation"), "{p}");
        assert_eq!(env.holds(WEST).await, Some(4));
        // 11:31: the window no longer reaches the call: idle, reduced.
        env.at(start + HOUR + 31 * minute);
        publish_votes(&env, &east, &west).await;
        let p = env.round(WEST, &counts).await;
        assert_eq!(action(&p), Some((4, 1)), "{p}");
        assert_eq!(env.holds(WEST).await, Some(1));
    });
}

#[test]
fn protected_from_auto_stop_is_read_with_list_tags_and_honoured() {
    let idle = Counts {
        idle_since: Some(0),
        need: None,
    };
    let env = Env::start(
        WEST,
        &format!(
            "environment = \"staging\"\ndefault_tier = \"tier3\"\n[cost.idle]\nenabled = true\nstop_outside_production = true\n{SCHEDULE}"
        ),
        (3, 3),
    );
    rt().block_on(async {
        let arn = env
            .ports
            .endpoints
            .describe(WEST, ENDPOINT)
            .await
            .unwrap()
            .unwrap()
            .arn;
        env.clients
            .sagemaker(WEST)
            .add_tags()
            .resource_arn(&arn)
            .tags(
                aws_sdk_sagemaker::types::Tag::builder()
                    .key("ProtectedFromAutoStop")
                    .value("true")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        env.at(MONDAY + 19 * HOUR);
        let p = env.round(WEST, &idle).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert_eq!(p.protected, Some(true));
        assert!(
            p.why.contains("idle: tagged ProtectedFromAutoStop=true"),
            "{p}"
        );
        assert!(
            p.why.contains("the daemon never lowers it"),
            "the schedule does not lower it either: {p}"
        );
        assert_eq!(env.holds(WEST).await, Some(3));
    });
}

#[test]
fn the_active_region_is_never_lowered_blind_nor_below_its_need() {
    let env = Env::start(
        EAST,
        &format!("[cost.idle]\nenabled = true\n{SCHEDULE}"),
        (4, 1),
    );
    rt().block_on(async {
        env.at(MONDAY + 19 * HOUR);
        let idle = Counts {
            idle_since: Some(0),
            need: None,
        };
        let p = env.round(EAST, &idle).await;
        assert_eq!(p.action, CostAction::None, "{p}");
        assert!(p.why.contains("idle: the active region"), "{p}");
        assert!(p.why.contains("not measured yet; not lowering"), "{p}");
        assert_eq!(env.holds(EAST).await, Some(4));
        let measured = Counts {
            idle_since: None,
            need: Some(2),
        };
        let p = env.round(EAST, &measured).await;
        assert_eq!(
            action(&p),
            Some((4, 2)),
            "off hours ask for 1, the router measured 2: {p}"
        );
        assert_eq!(env.holds(EAST).await, Some(2));
    });
}

#[test]
fn an_in_flight_failover_leaves_every_region_alone() {
    let env = Env::start(
        WEST,
        &format!("[cost.idle]\nenabled = true\n{SCHEDULE}"),
        (4, 3),
    );
    let idle = Counts {
        idle_since: Some(0),
        need: Some(1),
    };
    rt().block_on(async {
        env.at(MONDAY + 19 * HOUR);
        env.claim(true).await;
        for region in [EAST, WEST] {
            let p = env.round(region, &idle).await;
            assert_eq!(p.action, CostAction::None, "{p}");
            assert!(
                p.why
                    .starts_with("a failover is in flight (us-east-1 -> us-west-2"),
                "{p}"
            );
        }
        assert_eq!(
            (env.holds(EAST).await, env.holds(WEST).await),
            (Some(4), Some(3))
        );
        assert!(
            env.journal()
                .await
                .iter()
                .all(|e| !e.kind.starts_with("cost_"))
        );
    });
}

#[test]
fn the_daemons_task_acts_on_its_own_and_holds_back_without_quorum() {
    let env = Env::start(WEST, &format!("interval = \"1s\"\n{SCHEDULE}"), (3, 1));
    let shared = Arc::new(Shared::default());
    let publish = |no_quorum: Option<NoQuorum>| {
        shared.publish(RoundStatus {
            at: env.clock.now_ms(),
            tally: Some(Tally {
                fresh_observers: vec![EAST.into(), WEST.into()],
                regions: Default::default(),
                no_quorum,
            }),
            ..Default::default()
        })
    };
    let (_tx, config) = tokio::sync::watch::channel(Arc::new(env.cfg.clone()));
    rt().block_on(async {
        env.at(MONDAY + 10 * HOUR);
        publish(Some(NoQuorum::OwnVoteStale));
        let mut task = CostTask::new(
            config.clone(),
            env.ports.clone(),
            shared.clone(),
            Arc::new(NotCounted),
        );
        let plans = task.round().await;
        assert_eq!(
            plans[0].why, "holding back: no quorum: OwnVoteStale",
            "{}",
            plans[0]
        );
        assert_eq!(env.holds(WEST).await, Some(1));

        publish(None);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(
            CostTask::new(
                config,
                env.ports.clone(),
                shared.clone(),
                Arc::new(NotCounted),
            )
            .run(stopped),
        );
        // The scale-up lands before its journal entry is written: wait for
        // both (stopping the task between the two lost the entry under load).
        common::wait_until(
            "the cost task to scale us-west-2 up and journal it",
            Duration::from_secs(30),
            || async {
                let journalled = env
                    .journal()
                    .await
                    .iter()
                    .any(|e| e.kind == "cost_scale" && e.who == WEST);
                (env.holds(WEST).await == Some(3) && journalled).then_some(())
            },
        )
        .await;
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task stops")
            .unwrap();
        assert!(
            env.journal()
                .await
                .iter()
                .any(|e| e.kind == "cost_scale" && e.who == WEST)
        );
    });
}

/// A hook on the scaling calls of [`Scaling`]: `Some` answers the call
/// itself, `None` passes it on to moto.
#[async_trait::async_trait]
trait ScaleHook: Send + Sync {
    async fn instance_counts(&self, region: &str, endpoint: &str) -> Option<Result<(), PortError>>;
    async fn copy_count(&self) -> Option<Result<(), PortError>> {
        None
    }
}

/// Endpoints that go to moto, the scaling calls through `hook` first.
struct Scaling<H> {
    inner: Arc<dyn Endpoints>,
    hook: H,
}

#[async_trait::async_trait]
impl<H: ScaleHook> Endpoints for Scaling<H> {
    async fn served(
        &self,
        region: &str,
        endpoint: &str,
    ) -> Result<Option<Vec<failoverd::ports::endpoints::ServedVariant>>, PortError> {
        self.inner.served(region, endpoint).await
    }
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
        self.inner.describe(region, endpoint).await
    }
    async fn set_instance_counts(
        &self,
        region: &str,
        endpoint: &str,
        counts: &[(String, u32)],
    ) -> Result<(), PortError> {
        match self.hook.instance_counts(region, endpoint).await {
            Some(answer) => answer,
            None => {
                self.inner
                    .set_instance_counts(region, endpoint, counts)
                    .await
            }
        }
    }
    async fn tags(&self, region: &str, arn: &str) -> Result<Vec<(String, String)>, PortError> {
        self.inner.tags(region, arn).await
    }
    async fn delete(&self, region: &str, endpoint: &str) -> Result<Deleted, PortError> {
        self.inner.delete(region, endpoint).await
    }
    async fn describe_component(
        &self,
        region: &str,
        component: &str,
    ) -> Result<Option<failoverd::ports::endpoints::ComponentState>, PortError> {
        self.inner.describe_component(region, component).await
    }
    async fn set_copy_count(&self, region: &str, component: &str, n: u32) -> Result<(), PortError> {
        match self.hook.copy_count().await {
            Some(answer) => answer,
            None => self.inner.set_copy_count(region, component, n).await,
        }
    }
}

/// Lets a claim naming us-west-2 land in the table (as one written in
/// another region replicates) after the cost task's last read and before
/// SageMaker takes its first scaling call, which then goes to moto: the
/// race SageMaker cannot close (no conditional update).
struct ClaimLandsFirst {
    store: Arc<dyn ControlStore>,
    claim: std::sync::Mutex<Option<RecordWrite>>,
    /// How many scaling calls after the first to refuse, as SageMaker
    /// refuses a change to an endpoint still `Updating`.
    refuse: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl ScaleHook for ClaimLandsFirst {
    async fn instance_counts(&self, region: &str, endpoint: &str) -> Option<Result<(), PortError>> {
        let claim = self.claim.lock().unwrap().take();
        if let Some(w) = claim {
            self.store.write_record(&w).await.unwrap();
        } else if self
            .refuse
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Some(Err(PortError::new(
                "SageMaker",
                "UpdateEndpointWeightsAndCapacities",
                region,
                failoverd::ports::ErrorKind::Validation,
                format!("Cannot update in-progress endpoint \"{endpoint}\"."),
            )));
        }
        None
    }
}

/// Seed 26542 of the simulation: an operator's claim written in another
/// region reached us-west-2's replica after its cost task read the record
/// (twice) and before its lowering landed. The task reads the record once
/// more after a lowering lands and puts back what it took from a region
/// the record now names.
#[test]
fn a_lowering_that_raced_a_claim_is_put_back() {
    raced_claim(0);
}

/// The same, with SageMaker refusing the put-back twice (the lowering still
/// under way): it is tried again until it lands, with the rounds between.
#[test]
fn a_refused_put_back_is_tried_again_until_it_lands() {
    raced_claim(2);
}

/// And with SageMaker refusing it for good: tried for 15 minutes, then
/// given up on, said in the journal.
#[test]
fn a_put_back_refused_for_15_minutes_is_given_up_and_said() {
    raced_claim(u32::MAX);
}

fn raced_claim(refusals: u32) {
    let env = Env::start(WEST, SCHEDULE, (3, 3));
    let shared = Arc::new(Shared::default());
    let quiet = Counts {
        idle_since: Some(0),
        need: None,
    };
    rt().block_on(async {
        env.at(MONDAY + 19 * HOUR);
        let r = env.record().await;
        let mut ports = env.ports.clone();
        ports.endpoints = Arc::new(Scaling {
            inner: env.ports.endpoints.clone(),
            hook: ClaimLandsFirst {
                store: env.ports.store.clone(),
            claim: std::sync::Mutex::new(Some(RecordWrite::Claim {
                plan: FailoverPlan {
                    from: EAST.into(),
                    to: WEST.into(),
                    epoch: r.epoch + 1,
                    execution: format!("failover-t-{}", r.epoch + 1),
                    initiator: EAST.into(),
                    expected_version: r.version,
                    reason: "operator".into(),
                    ungraceful: false,
                    old_region_healthy: true,
                    forced: true,
                    automatic: false,
                    changed_by: EAST.into(),
                    claimed_at: env.clock.now_ms(),
                    supersedes: None,
                    state_machine: None,
                },
            })),
                refuse: refusals.into(),
            },
        });
        shared.publish(RoundStatus {
            at: env.clock.now_ms(),
            tally: Some(Tally {
                fresh_observers: vec![EAST.into(), WEST.into()],
                regions: Default::default(),
                no_quorum: None,
            }),
            ..Default::default()
        });
        let (_tx, config) = tokio::sync::watch::channel(Arc::new(env.cfg.clone()));
        let mut task = CostTask::new(config, ports, shared, Arc::new(quiet));
        let plans = task.round().await;
        // Decided and acted on the record before the claim: the 18:00 rule
        // lowered the standby...
        assert_eq!(action(&plans[0]), Some((3, 1)), "{}", plans[0]);
        assert_eq!(env.record().await.phase, Phase::FailingOver);
        if refusals == u32::MAX {
            let at = env.clock.now_ms();
            for minutes in [1, 14, 15] {
                assert!(env.journal().await.iter().all(|e| e.kind != "cost_raced"));
                env.at(at + minutes * 60_000);
                task.round().await;
            }
            let journal = env.journal().await;
            let raced: Vec<&str> = journal
                .iter()
                .filter(|e| e.kind == "cost_raced")
                .map(|e| e.detail.as_str())
                .collect();
            assert_eq!(raced.len(), 1, "{journal:?}");
            assert!(
                raced[0].starts_with("us-west-2/prov: a failover to us-west-2 was claimed (epoch 2) before the lowering landed: the lowering could not be put back in 15 minutes; gave up: "),
                "{raced:?}"
            );
            assert_eq!(env.holds(WEST).await, Some(1));
            return;
        }
        // ...and the read after it landed put it back, at once or at the
        // tries that follow (the rounds, a failover in flight, leave it).
        for _ in 0..refusals {
            assert_eq!(env.holds(WEST).await, Some(1));
            assert!(env.journal().await.iter().all(|e| e.kind != "cost_raced"));
            let plans = task.round().await;
            assert_eq!(plans[0].action, CostAction::None, "{}", plans[0]);
        }
        assert_eq!(env.holds(WEST).await, Some(3));
        let journal = env.journal().await;
        let raced: Vec<&str> = journal
            .iter()
            .filter(|e| e.kind == "cost_raced")
            .map(|e| e.detail.as_str())
            .collect();
        assert_eq!(
            raced,
            [
                "us-west-2/prov: a failover to us-west-2 was claimed (epoch 2) before the lowering landed: the lowering is put back: scale AllTraffic -> 3"
            ],
            "{journal:?}"
        );
        // A level: the next round (a failover in flight) leaves it.
        let plans = task.round().await;
        assert_eq!(plans[0].action, CostAction::None, "{}", plans[0]);
        assert_eq!(env.holds(WEST).await, Some(3));
    });
}

/// Scale-ups that never land (a real SageMaker scale-up that takes longer
/// than the budget): `set_instance_counts` is accepted and dropped (a
/// copy count too); everything else goes to moto.
struct SlowScaleUp;

#[async_trait::async_trait]
impl ScaleHook for SlowScaleUp {
    async fn instance_counts(&self, _: &str, _: &str) -> Option<Result<(), PortError>> {
        Some(Ok(()))
    }
    async fn copy_count(&self) -> Option<Result<(), PortError>> {
        Some(Ok(()))
    }
}

#[test]
fn a_tier2_prepare_step_scales_the_target_up_to_the_active() {
    let env = Env::start(WEST, "", (3, 1));
    rt().block_on(async {
        let r = env.claim(true).await;
        let deadline = env.clock.now_ms() + 900_000;
        let out = prepare::prepare(&env.cfg, &env.ports, deadline, &|_| None)
            .await
            .unwrap();
        assert_eq!(out["capacity"]["scaled"], true, "{out:#}");
        assert_eq!(out["capacity"]["plan"][0]["from"], 1, "{out:#}");
        assert_eq!(out["capacity"]["plan"][0]["to"], 3, "{out:#}");
        assert_eq!(env.holds(WEST).await, Some(3));
        let scale: Vec<Event> = env
            .journal()
            .await
            .into_iter()
            .filter(|e| e.kind == "prepare_scale")
            .collect();
        assert_eq!(scale.len(), 1, "{scale:?}");
        assert_eq!(scale[0].epoch, Some(r.epoch));
        assert!(
            scale[0].detail.starts_with(
                "us-west-2/prov: scale AllTraffic 1 -> 3 to match us-east-1's prov now"
            ),
            "{scale:?}"
        );
        // Run again (a retried step): nothing left to scale.
        let out = prepare::prepare(&env.cfg, &env.ports, deadline, &|_| None)
            .await
            .unwrap();
        assert_eq!(out["capacity"]["scaled"], false, "{out:#}");
    });
}

/// Issue 26 item 1: a standby is checked against the active before it is
/// needed, through the real SDK against the lab: the same model and image
/// (a fewer-instances tier2 standby is only info: prepare scales it), then a
/// standby redeployed with another image (critical, naming both images),
/// then a scale-up SageMaker could not serve (the FailureReason it leaves).
#[test]
fn a_standby_is_checked_against_the_active_before_it_is_needed() {
    use failoverd::control::standby;
    use failoverd::core::standby::{Check, Severity, worst};
    let env = Env::start(WEST, PRINCIPAL, (3, 1));
    let addr = env._moto.url().trim_start_matches("http://").to_string();
    let needs = standby::Needs::all(Some(3));
    rt().block_on(async {
        let of = |f: &[failoverd::core::standby::Finding], c: Check| {
            f.iter().find(|x| x.check == c).cloned().unwrap()
        };
        env.grant(PREPARE_GRANTS).await;
        let f = standby::check(&env.cfg, &env.ports, EAST, &needs).await;
        // Both models (fraud, chat) are served on the shared `prov`: every
        // check once per model, keyed by (model, endpoint, check).
        assert_eq!(f.len(), 2 * Check::ALL.len(), "{f:?}");
        for m in ["fraud", "chat"] {
            assert_eq!(
                f.iter().filter(|x| x.model == m).count(),
                Check::ALL.len(),
                "{f:?}"
            );
        }
        // No scalable target anywhere, the lab's default quota (20).
        assert_eq!(of(&f, Check::Autoscaling).severity, Severity::Ok, "{f:?}");
        assert_eq!(of(&f, Check::Quota).severity, Severity::Ok, "{f:?}");
        assert_eq!(of(&f, Check::Model).severity, Severity::Ok, "{f:?}");
        assert_eq!(of(&f, Check::Capacity).severity, Severity::Info, "{f:?}");
        assert_eq!(of(&f, Check::Iam).severity, Severity::Ok, "{f:?}");
        assert_eq!(worst(&f), Severity::Info, "{f:?}");
        assert!(
            standby::check(&env.cfg, &env.ports, WEST, &needs)
                .await
                .is_empty(),
            "the active checks nothing"
        );

        // us-west-2's prov redeployed from another model (model:2).
        let sm = env.clients.sagemaker(WEST);
        sm.create_model()
            .model_name("prov-v2")
            .execution_role_arn("arn:aws:iam::123456789012:role/sagemaker")
            .primary_container(
                aws_sdk_sagemaker::types::ContainerDefinition::builder()
                    .image("123456789012.dkr.ecr.us-east-1.amazonaws.com/model:2")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        sm.create_endpoint_config()
            .endpoint_config_name("prov-v2")
            .production_variants(
                aws_sdk_sagemaker::types::ProductionVariant::builder()
                    .variant_name("AllTraffic")
                    .model_name("prov-v2")
                    .instance_type(
                        aws_sdk_sagemaker::types::ProductionVariantInstanceType::MlM5Large,
                    )
                    .initial_instance_count(3)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        sm.delete_endpoint()
            .endpoint_name(ENDPOINT)
            .send()
            .await
            .unwrap();
        sm.create_endpoint()
            .endpoint_name(ENDPOINT)
            .endpoint_config_name("prov-v2")
            .send()
            .await
            .unwrap();
        let f = standby::check(&env.cfg, &env.ports, EAST, &needs).await;
        let m = of(&f, Check::Model);
        assert_eq!(m.severity, Severity::Critical, "{f:?}");
        assert!(
            m.detail.contains("model:2") && m.detail.contains("model:1"),
            "{m}"
        );

        // A scale-up SageMaker could not serve leaves its FailureReason.
        let (status, body) = common::http(
            "POST",
            &addr,
            "/_lab/sagemaker-capacity?endpoint=prov&refuse=insufficient",
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        env.set(WEST, 5).await;
        let f = standby::check(&env.cfg, &env.ports, EAST, &needs).await;
        let u = of(&f, Check::LastUpdate);
        assert_eq!(u.severity, Severity::Warning, "{f:?}");
        assert!(u.detail.contains("InsufficientInstanceCapacity"), "{u}");

        // Autoscaling bounds (Application Auto Scaling, moto's): the
        // active's variant scales with its load and the standby's has no
        // scalable target (warning); then a standby MaxCapacity below the
        // need of 3 (critical, per model).
        let register = |region: &'static str, max: i32| {
            let aas = aws_sdk_applicationautoscaling::Client::from_conf(
                aws_sdk_applicationautoscaling::config::Builder::from(
                    env.clients.sdk_config(),
                )
                .region(aws_config::Region::new(region))
                .endpoint_url(env._moto.url())
                .build(),
            );
            async move {
                aas.register_scalable_target()
                    .service_namespace(
                        aws_sdk_applicationautoscaling::types::ServiceNamespace::Sagemaker,
                    )
                    .resource_id(format!("endpoint/{ENDPOINT}/variant/AllTraffic"))
                    .scalable_dimension(
                        aws_sdk_applicationautoscaling::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .min_capacity(1)
                    .max_capacity(max)
                    .send()
                    .await
                    .unwrap();
            }
        };
        register(EAST, 10).await;
        let f = standby::check(&env.cfg, &env.ports, EAST, &needs).await;
        let a = of(&f, Check::Autoscaling);
        assert_eq!(a.severity, Severity::Warning, "{f:?}");
        assert!(a.detail.contains("no scalable target registered"), "{a}");
        register(WEST, 2).await;
        // The applied quota of ml.m5.large for endpoint usage in us-west-2
        // (the lab's Service Quotas, chaos/lab/lab_quotas.py): 2, below the
        // 3 that prov scaled to the need would use.
        let (status, body) = common::http(
            "POST",
            &addr,
            "/_lab/service-quotas?region=us-west-2&instance_type=ml.m5.large&value=2",
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        // Every page read (the lab lists 123 quotas, 100 a page), only the
        // endpoint-usage ones kept, by instance type.
        let quotas = env.ports.capacity.endpoint_quotas(WEST).await.unwrap();
        assert_eq!(quotas.len(), 40, "{quotas:?}");
        assert_eq!(quotas.get("ml.m5.large"), Some(&2.0), "{quotas:?}");
        assert_eq!(quotas.get("ml.g4dn.12xlarge"), Some(&20.0), "the second page");
        let f = standby::check(&env.cfg, &env.ports, EAST, &needs).await;
        for m in ["fraud", "chat"] {
            let at = |c: Check| {
                f.iter()
                    .find(|x| x.model == m && x.check == c)
                    .cloned()
                    .unwrap()
            };
            let a = at(Check::Autoscaling);
            assert_eq!(a.severity, Severity::Critical, "{a}");
            assert!(a.detail.contains("MaxCapacity 2 is below the need 3"), "{a}");
            let q = at(Check::Quota);
            assert_eq!(q.severity, Severity::Critical, "{q}");
            assert!(
                q.detail
                    .contains("\"ml.m5.large for endpoint usage\" is 2, below the 3"),
                "{q}"
            );
        }
        let cells = failoverd::core::standby::cells(&f);
        assert_eq!(cells.get("fraud"), Some(&Severity::Critical), "{cells:?}");
        assert_eq!(cells.get("chat"), Some(&Severity::Critical), "{cells:?}");
        // Within 10% of the quota: a warning.
        let (status, body) = common::http(
            "POST",
            &addr,
            "/_lab/service-quotas?region=us-west-2&instance_type=ml.m5.large&value=3",
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let f = standby::check(&env.cfg, &env.ports, EAST, &needs).await;
        assert_eq!(of(&f, Check::Quota).severity, Severity::Warning, "{f:?}");
    });
}

/// Issue 26 item 1, the IAM dry run: IAM's policy simulator (the lab's,
/// over moto's IAM) judges the calls prepare would make on the standby's
/// endpoint as the daemons' role. A role that may not scale it is
/// critical, naming the call; an explicit Deny is told apart; a role IAM
/// does not know, or a simulator that fails, is unknown, never ok.
#[test]
fn a_standby_whose_role_may_not_make_prepares_calls_is_critical() {
    use failoverd::control::standby;
    use failoverd::core::standby::{Check, Finding, Severity};
    let env = Env::start(WEST, PRINCIPAL, (3, 1));
    let needs = standby::Needs::all(Some(3));
    let iam = |f: &[Finding]| -> Vec<Finding> {
        f.iter()
            .filter(|x| x.check == Check::Iam)
            .cloned()
            .collect()
    };
    rt().block_on(async {
        // No such role yet: IAM answers NoSuchEntity.
        let f = iam(&standby::check(&env.cfg, &env.ports, EAST, &needs).await);
        assert_eq!(f.len(), 2, "one per model on prov: {f:?}");
        for x in &f {
            assert_eq!(x.severity, Severity::Unknown, "{x}");
            assert!(x.detail.contains("NoSuchEntity"), "{x}");
        }

        env.grant(PREPARE_GRANTS).await;
        let f = iam(&standby::check(&env.cfg, &env.ports, EAST, &needs).await);
        for x in &f {
            assert_eq!(x.severity, Severity::Ok, "{x}");
            assert!(x.detail.contains(ROLE) && x.detail.contains("5 calls"), "{x}");
        }

        // The endpoint grants name another endpoint: every call on prov denied.
        env.grant(&PREPARE_GRANTS.replace(
            "\"sagemaker:UpdateEndpointWeightsAndCapacities\"],\n   \"Resource\": \"arn:aws:sagemaker:*:123456789012:endpoint/prov\"",
            "\"sagemaker:UpdateEndpointWeightsAndCapacities\"],\n   \"Resource\": \"arn:aws:sagemaker:*:123456789012:endpoint/other\"",
        ))
        .await;
        let f = iam(&standby::check(&env.cfg, &env.ports, EAST, &needs).await);
        for x in &f {
            assert_eq!(x.severity, Severity::Critical, "{x}");
            assert!(
                x.detail.contains(
                    "sagemaker:DescribeEndpoint on arn:aws:sagemaker:us-west-2:123456789012:endpoint/prov: implicitDeny"
                ) && x.detail.contains("UpdateEndpointWeightsAndCapacities"),
                "{x}"
            );
        }

        // Everything granted, and one call explicitly denied.
        env.grant(&PREPARE_GRANTS.replace(
            "\"Resource\": \"*\"}]}",
            "\"Resource\": \"*\"},\n  {\"Effect\": \"Deny\", \"Action\": \"sagemaker:UpdateEndpoint*\", \"Resource\": \"*\"}]}",
        ))
        .await;
        let f = iam(&standby::check(&env.cfg, &env.ports, EAST, &needs).await);
        for x in &f {
            assert_eq!(x.severity, Severity::Critical, "{x}");
            assert!(
                x.detail.contains("UpdateEndpointWeightsAndCapacities")
                    && x.detail.contains("explicitDeny (a policy denies it)")
                    && !x.detail.contains("DescribeEndpoint on"),
                "{x}"
            );
        }
    });
}

/// Issue 26 item 2: when AWS says no, prepare decides at once instead of
/// waiting out its budget. The lab's moto answers SageMaker's refusals
/// (chaos/lab/moto_server.py `/_lab/sagemaker-capacity`): a quota refusal
/// (`ResourceLimitExceeded` on UpdateEndpointWeightsAndCapacities) and
/// insufficient capacity (the update is taken, and the endpoint stays
/// InService with its old count and a FailureReason). With the old region
/// serving, the step fails naming the refusal (the failover stops, the old
/// region keeps serving); with the old region down, the switch goes ahead
/// onto what the target holds, journalled with the refusal.
#[test]
fn a_prepare_step_decides_at_once_when_aws_refuses_capacity_or_quota() {
    for refuse in ["quota", "insufficient"] {
        for old_healthy in [true, false] {
            let env = Env::start(WEST, "", (3, 1));
            let addr = env._moto.url().trim_start_matches("http://").to_string();
            let (status, body) = common::http(
                "POST",
                &addr,
                &format!("/_lab/sagemaker-capacity?endpoint=prov&refuse={refuse}"),
                "",
            )
            .unwrap();
            assert_eq!(status, 200, "{body}");
            rt().block_on(async {
                env.claim(old_healthy).await;
                // A budget of 15 minutes: waiting it out would fail the test's
                // own bound long before.
                let deadline = env.clock.now_ms() + 900_000;

                let out = tokio::time::timeout(
                    std::time::Duration::from_secs(60),
                    prepare::prepare(&env.cfg, &env.ports, deadline, &|_| None),
                )
                .await
                .expect("decided, not waited out");
                let wanted = if refuse == "quota" {
                    "ResourceLimitExceeded"
                } else {
                    "InsufficientInstanceCapacity"
                };
                if old_healthy {
                    let err = out.expect_err("the old region serves: the step fails");
                    assert!(
                        matches!(&err, PrepareError::ScaleRefused { short, .. } if short == &["AllTraffic".to_string()]),
                        "{err}"
                    );
                    assert!(err.to_string().contains(wanted), "{refuse}: {err}");
                    assert!(err.to_string().contains("us-east-1 still serves"), "{err}");
                } else {
                    let out = out.expect("the old region is down: the switch goes ahead");
                    assert_eq!(out["capacity"]["short"][0], "AllTraffic", "{out:#}");
                    assert!(
                        out["capacity"]["refused"].as_str().is_some_and(|r| r.contains(wanted)),
                        "{refuse}: {out:#}"
                    );
                    let journal = env.journal().await;
                    assert!(
                        journal.iter().any(|e| e.kind == "prepare_capacity_refused"
                            && e.detail.contains(wanted)
                            && e.detail.contains("us-east-1 is down")),
                        "{journal:?}"
                    );
                }
                assert_eq!(env.holds(WEST).await, Some(1), "nothing grew");
            });
        }
    }
}

/// Issue 19 item 5: an 18:00 schedule lowered the active to one instance,
/// but the routers measured the fleet needs four: prepare scales the target
/// to what the traffic needs, not to what the schedule left the active.
#[test]
fn a_prepare_step_scales_the_target_to_the_fleets_measured_need_not_a_lowered_active() {
    let env = Env::start(WEST, "", (1, 1));
    rt().block_on(async {
        env.claim(true).await;
        let deadline = env.clock.now_ms() + 900_000;
        let out = prepare::prepare(&env.cfg, &env.ports, deadline, &|_| Some(4))
            .await
            .unwrap();
        assert_eq!(out["capacity"]["scaled"], true, "{out:#}");
        assert_eq!(out["capacity"]["plan"][0]["to"], 4, "{out:#}");
        assert!(
            out["capacity"]["to_match"]
                .as_str()
                .is_some_and(|s| s.contains("raised to the fleet's measured need (4)")),
            "{out:#}"
        );
        assert_eq!(env.holds(WEST).await, Some(4));
    });
}

#[test]
fn past_its_budget_prepare_aborts_while_the_old_region_serves_and_switches_when_it_is_down() {
    // The budget is what the token leaves: 1 s warm-up + 10 s callback room + 2 s.
    let env = Env::start(WEST, "", (3, 1));
    let mut ports = env.ports.clone();
    ports.endpoints = Arc::new(Scaling {
        inner: env.ports.endpoints.clone(),
        hook: SlowScaleUp,
    });
    rt().block_on(async {
        env.claim(true).await;
        let deadline = env.clock.now_ms() + 13_000;
        let err = prepare::prepare(&env.cfg, &ports, deadline, &|_| None).await.unwrap_err();
        assert!(
            matches!(&err, PrepareError::CapacityNotReady { active, short, .. } if active == EAST && short == &["AllTraffic".to_string()]),
            "{err}"
        );
        assert!(err.to_string().contains("us-east-1 still serves, so the failover stops here"), "{err}");
    });
    drop(env);

    let env = Env::start(WEST, "", (3, 1));
    let mut ports = env.ports.clone();
    ports.endpoints = Arc::new(Scaling {
        inner: env.ports.endpoints.clone(),
        hook: SlowScaleUp,
    });
    rt().block_on(async {
        env.claim(false).await;
        let deadline = env.clock.now_ms() + 13_000;
        let out = prepare::prepare(&env.cfg, &ports, deadline, &|_| None)
            .await
            .unwrap();
        assert_eq!(out["capacity"]["short"][0], "AllTraffic", "{out:#}");
        assert!(
            env.journal()
                .await
                .iter()
                .any(|e| e.kind == "prepare_capacity_short"
                    && e.detail.contains("us-east-1 is down")),
            "journalled"
        );
    });
}

#[test]
fn the_dry_run_shows_the_daemons_decisions_and_changes_nothing_and_status_shows_tiers() {
    let all_day = "[cost.tiers]\nfraud = \"tier1\"\n[[cost.schedules]]\nendpoint = \"prov\"\ntimezone = \"UTC\"\noff_hours_min = 1\nwindows = [{ days = \"*\", start = \"00:00\", end = \"24:00\", min = 2 }]\n";
    let env = Env::start(WEST, all_day, (3, 1));
    let file = env.dir.join("us-west-2.toml");
    let file = file.to_str().unwrap();
    let out = env.cli(&["cost", "--config", file, "--dry-run", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["dry_run"], true);
    assert_eq!(d["fleet_tier"], "tier1", "the strictest model's");
    let plans = d["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 2, "{d:#}");
    let west = plans.iter().find(|p| p["region"] == WEST).unwrap();
    assert_eq!(west["action"]["action"], "scale", "{west:#}");
    assert_eq!(west["action"]["changes"][0]["to"], 2, "{west:#}");
    let east = plans.iter().find(|p| p["region"] == EAST).unwrap();
    assert_eq!(
        east["action"]["action"], "none",
        "the active's need is unknown: {east:#}"
    );
    rt().block_on(async {
        assert_eq!(env.holds(WEST).await, Some(1), "a dry run changes nothing")
    });

    let text = env.cli(&["cost", "--config", file, "--dry-run"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(
            "us-west-2/prov [tier1, standby, holds AllTraffic=1]: scale AllTraffic 1 -> 2"
        ),
        "{text}"
    );

    let refused = env.cli(&["cost", "--config", file]);
    assert_eq!(
        refused.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let status = env.cli(&["status", "--config", file]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("DR tiers: fleet tier1 (warm standby), automatic failover on"),
        "{text}"
    );
    let tiers: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        tiers.contains(&vec!["fraud", "tier1", "(warm", "standby)"]),
        "{text}"
    );
    assert!(
        tiers.contains(&vec!["chat", "tier2", "(pilot", "light)"]),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("us-west-2") && l.contains("prov"))
        .unwrap_or_default();
    assert!(
        row.contains("standby") && row.contains("InService") && row.contains("AllTraffic=1"),
        "{text}"
    );
    let status = env.cli(&["status", "--config", file, "--output", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(j["cost"]["automatic_failover"], true);
    let held = j["cost"]["capacity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["region"] == EAST)
        .unwrap()
        .clone();
    assert_eq!(held["holds"][0]["instances"], 3, "{held:#}");
    assert_eq!(held["role"], "active");
    drop(env);

    let env = Env::start(WEST, "default_tier = \"tier3\"", (1, 1));
    let file = env.dir.join("us-west-2.toml");
    let status = env.cli(&["status", "--config", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("automatic failover OFF: every model is tier3"),
        "{text}"
    );
}

/// Three real daemons in the lab, every model tier3: an inverted health
/// check makes the quorum see us-east-1 down and the target's planner
/// decide a failover, which the tier gate withholds (journalled); an
/// operator still fails over by hand.
#[test]
fn a_fleet_of_tier3_models_does_not_fail_over_on_its_own_but_operators_still_can() {
    use common::lab::Lab;
    let lab = Lab::start(&[("FAILOVERD__COST__DEFAULT_TIER", "tier3")]);
    lab.wait_ready(Duration::from_secs(60));
    let record = || Lab::rt().block_on(lab.table().read_record()).ok().flatten();
    let before = common::wait_for("the control record", Duration::from_secs(30), || {
        record().filter(|r| r.active == EAST)
    });
    lab.invert(EAST, true);
    let withheld = common::wait_for(
        "the withheld failover in the journal",
        Duration::from_secs(90),
        || {
            let events = Lab::rt()
                .block_on(lab.table().events(500, failoverd::ports::clock::wall_ms()))
                .ok()?
                .items;
            events.into_iter().find(|e| {
                e.kind == "decision"
                    && e.detail
                        .contains("withheld (every configured model is tier3)")
            })
        },
    );
    assert_eq!(
        withheld.who, WEST,
        "the target's daemon would have started it: {withheld:?}"
    );
    let now = record().unwrap();
    assert_eq!(
        (now.active.as_str(), now.epoch, now.phase),
        (EAST, before.epoch, Phase::Steady)
    );

    let out = lab.cli(&[
        "failover",
        "--to",
        WEST,
        "--reason",
        "tier3 runbook",
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::wait_for(
        "the manual failover to finish",
        Duration::from_secs(90),
        || record().filter(|r| r.active == WEST && r.phase == Phase::Steady),
    );
}
