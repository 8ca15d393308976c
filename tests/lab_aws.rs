//! failoverd's AWS adapters against the lab (moto), through the real SDK:
//! DynamoDB, Route 53 and Step Functions here; SageMaker runtime in
//! tests/model_server.rs against the lab's model server.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use failoverd::aws::{dynamo, route53, sfn};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn dynamodb_tables_are_created_once_and_hold_items() {
    let moto = common::Moto::start();
    let clients = common::clients(&moto, None);
    rt().block_on(async {
        let table = common::unique("control");
        let ddb = clients.dynamodb("us-west-2");
        assert_eq!(
            dynamo::create_control_table(&ddb, &table).await.unwrap(),
            dynamo::Created::New
        );
        assert_eq!(
            dynamo::create_control_table(&ddb, &table).await.unwrap(),
            dynamo::Created::Existing
        );
        ddb.put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S("TOKEN".into()))
            .item("sk", AttributeValue::S("x#prepare".into()))
            .item("pending_for", AttributeValue::S("us-west-2".into()))
            .send()
            .await
            .unwrap();
        // The sparse index finds pending tokens by region with a query.
        let q = ddb
            .query()
            .table_name(&table)
            .index_name(dynamo::PENDING_INDEX)
            .key_condition_expression("pending_for = :r")
            .expression_attribute_values(":r", AttributeValue::S("us-west-2".into()))
            .send()
            .await
            .unwrap();
        assert_eq!(q.count(), 1);
        // Regions are separate in the lab as in AWS without replication.
        let other = clients
            .dynamodb("eu-west-1")
            .describe_table()
            .table_name(&table)
            .send()
            .await;
        assert!(
            other
                .unwrap_err()
                .into_service_error()
                .is_resource_not_found_exception()
        );

        let routing = common::unique("routing");
        dynamo::create_routing_table(&ddb, &routing).await.unwrap();
        let d = ddb
            .describe_table()
            .table_name(&routing)
            .send()
            .await
            .unwrap();
        let t = d.table().unwrap();
        assert_eq!(t.key_schema()[0].attribute_name(), "configKey");
        assert_eq!(
            t.global_secondary_indexes()[0].index_name(),
            Some(dynamo::TRAFFIC_CLASS_INDEX)
        );
    });
}

/// A health check of the kind the lab's stacks create (HTTPS /ping on a
/// name that never resolves).
async fn lab_check(r53: &aws_sdk_route53::Client) -> String {
    route53::create_health_check(
        r53,
        &route53::HealthCheckSpec {
            caller_reference: common::unique("hc"),
            fqdn: "inference.us-east-1.lab.invalid".into(),
            port: 443,
            resource_path: "/ping".into(),
        },
    )
    .await
    .unwrap()
}

#[test]
fn route53_health_checks_are_created_and_read_back() {
    let moto = common::Moto::start();
    let clients = common::clients(&moto, None);
    rt().block_on(async {
        let r53 = clients.route53();
        let id = lab_check(&r53).await;
        let got = r53
            .get_health_check()
            .health_check_id(&id)
            .send()
            .await
            .unwrap();
        let cfg = got.health_check().unwrap().health_check_config().unwrap();
        assert_eq!(
            cfg.fully_qualified_domain_name(),
            Some("inference.us-east-1.lab.invalid")
        );
        let status = r53
            .get_health_check_status()
            .health_check_id(&id)
            .send()
            .await
            .unwrap();
        assert!(!status.health_check_observations().is_empty());
    });
}

/// The lab's Route 53 throttling (chaos/lab/moto_server.py, used by
/// `chaos/lab.sh drill --throttle-route53`): while it lasts, the adapter's
/// read fails as `Throttled` (what the signals' backoff acts on), and after
/// it the same read works.
#[test]
fn the_labs_route53_throttling_reads_as_throttled_until_it_ends() {
    use failoverd::ports::{ErrorKind, HealthChecks};
    let moto = common::Moto::start();
    let clients = common::clients(&moto, None);
    let addr = moto.url().trim_start_matches("http://").to_string();
    rt().block_on(async {
        let id = lab_check(&clients.route53()).await;
        let checks = route53::AwsHealthChecks::new(clients.route53());
        checks.read(&id).await.expect("read before the throttling");
        let (status, _) =
            common::http("POST", &addr, "/_lab/route53-throttle?seconds=600", "").unwrap();
        assert_eq!(status, 200);
        let err = checks.read(&id).await.expect_err("throttled");
        assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
        let (status, _) =
            common::http("POST", &addr, "/_lab/route53-throttle?seconds=0", "").unwrap();
        assert_eq!(status, 200);
        checks.read(&id).await.expect("read after the throttling");
    });
}

#[test]
fn step_functions_runs_the_shipped_failover_definition() {
    let moto = common::Moto::start();
    let clients = common::clients(&moto, None);
    rt().block_on(async {
        let table = common::unique("control");
        let region = "us-west-2";
        dynamo::create_control_table(&clients.dynamodb(region), &table).await.unwrap();
        let template = std::fs::read_to_string(common::root().join("deploy/statemachines/failover.asl.json")).unwrap();
        let def = sfn::render_definition(&template, &[("ControlTable", &table), ("ControlTableRegion", region)]).unwrap();
        let client = clients.sfn(region);
        let name = common::unique("failover");
        let role = "arn:aws:iam::123456789012:role/failoverd-stepfunctions";
        let arn = sfn::ensure_state_machine(&client, &name, &def, role).await.unwrap();
        assert_eq!(arn, format!("arn:aws:states:{region}:123456789012:stateMachine:{name}"));
        // Idempotent: a second ensure updates in place.
        assert_eq!(sfn::ensure_state_machine(&client, &name, &def, role).await.unwrap(), arn);

        // No control record at this epoch: the run must end Superseded
        // without writing anything (every step is fenced by the epoch).
        let input = serde_json::json!({"epoch": 7, "execution": "failover-7", "from": "us-east-1", "to": region,
            "reason": "test", "ungraceful": false, "old_region_healthy": true, "ttl": 1_900_000_000u64});
        let exec = client
            .start_execution()
            .state_machine_arn(&arn)
            .name("failover-7")
            .input(input.to_string())
            .send()
            .await
            .unwrap();
        let done = common::wait_until("the execution to end", Duration::from_secs(30), || async {
            let d = client.describe_execution().execution_arn(exec.execution_arn()).send().await.unwrap();
            (d.status().as_str() != "RUNNING").then_some(d)
        })
        .await;
        assert_eq!(done.status().as_str(), "FAILED");
        assert_eq!(done.error(), Some("Superseded"));
    });
}

#[test]
fn provision_renders_a_valid_lab_config() {
    let moto = common::Moto::start();
    let out = std::env::temp_dir().join(common::unique("lab-regions"));
    let result = Command::new(env!("CARGO_BIN_EXE_failoverd-lab"))
        .current_dir(common::root())
        .args([
            "provision",
            "--config",
            "regions/lab/us-east-1.toml",
            "--out",
        ])
        .arg(&out)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("FAILOVERD__ENDPOINTS__DYNAMODB", moto.url())
        .env("FAILOVERD__ENDPOINTS__S3", moto.url())
        .env("FAILOVERD__ENDPOINTS__ROUTE53", moto.url())
        .env("FAILOVERD__ENDPOINTS__SFN", moto.url())
        .env("FAILOVERD__ENDPOINTS__SAGEMAKER", moto.url())
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    // `check-config --aws` against what provisioning made: every routed
    // endpoint exists. Then a model mapped, in us-east-1 only, to an
    // endpoint nobody created: that region could not serve it, and the
    // check names it (exit 78).
    let check = |file: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_failoverd"));
        cmd.current_dir(&out)
            .args(["check-config", "--aws", "--config", file])
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for svc in ["DYNAMODB", "S3", "ROUTE53", "SFN", "SAGEMAKER"] {
            cmd.env(format!("FAILOVERD__ENDPOINTS__{svc}"), moto.url());
        }
        let o = cmd.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, err) = check("eu-west-1.toml");
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("SageMaker endpoint"), "{err}");
    let region_file = std::fs::read_to_string(out.join("eu-west-1.toml")).unwrap();
    let base = std::fs::read_to_string(out.join("base.toml")).unwrap();
    let broken = out.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("base.toml"),
        format!(
            "{base}\n[[models]]\nname = \"fraud\"\ntraffic_class = \"standard\"\n[models.regions.us-east-1]\nprovisioned = \"fraud-nowhere\"\n"
        ),
    )
    .unwrap();
    std::fs::write(broken.join("eu-west-1.toml"), &region_file).unwrap();
    for f in std::fs::read_dir(&out).unwrap().flatten() {
        let name = f.file_name();
        if f.path().is_file() && !broken.join(&name).exists() {
            std::fs::copy(f.path(), broken.join(&name)).unwrap();
        }
    }
    let (code, err) = check("broken/eu-west-1.toml");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(
            "SageMaker endpoint fraud-nowhere in us-east-1 (provisioned path) does not exist"
        ),
        "{err}"
    );
    let env = failoverd::config::EnvSource::new();
    let cfg = failoverd::config::load(&out.join("eu-west-1.toml"), &env).unwrap();
    let clients = common::clients(&moto, None);
    rt().block_on(async {
        for r in &cfg.regions {
            let id = &r.health_check_ids[0];
            assert!(
                !id.starts_with("lab-provisioned"),
                "rendered id for {}",
                r.name
            );
            clients
                .route53()
                .get_health_check()
                .health_check_id(id)
                .send()
                .await
                .unwrap();
            clients
                .sfn(failoverd::ports::workflows::arn_region(&r.state_machine_arn).unwrap())
                .describe_state_machine()
                .state_machine_arn(&r.state_machine_arn)
                .send()
                .await
                .unwrap();
            clients
                .dynamodb(&r.name)
                .describe_table()
                .table_name(&cfg.tables.control)
                .send()
                .await
                .unwrap();
            // The three paths' endpoints, serving.
            let sm = clients.sagemaker(&r.name);
            for ep in r.sagemaker.all() {
                let status = failoverd::aws::sagemaker::endpoint_status(&sm, ep)
                    .await
                    .unwrap();
                assert!(
                    status
                        .as_ref()
                        .is_some_and(failoverd::aws::sagemaker::serves),
                    "{ep} in {}: {status:?}",
                    r.name
                );
            }
            let serverless = sm
                .describe_endpoint_config()
                .endpoint_config_name(r.sagemaker.serverless.as_deref().unwrap())
                .send()
                .await
                .unwrap();
            assert!(
                serverless.production_variants()[0]
                    .serverless_config()
                    .is_some()
            );
            let batch = sm
                .describe_endpoint_config()
                .endpoint_config_name(r.sagemaker.batch.as_deref().unwrap())
                .send()
                .await
                .unwrap();
            assert!(batch.async_inference_config().is_some(), "{batch:?}");
        }
    });
}

/// Every control-record write of the DynamoDB adapter, condition by
/// condition, against the one statement of their semantics
/// (`core::record::apply`): DynamoDB (moto, through the real SDK) accepts a
/// write exactly when `apply` does, and the record read back is the one
/// `apply` computes, field by field. Proposal writes are also covered with a
/// running fleet in tests/lab_approval.rs.
#[test]
fn every_record_write_lands_in_dynamodb_as_apply_computes_it() {
    use failoverd::aws::control_table::ControlTable;
    use failoverd::core::control::{ControlRecord, Mode, execution_name};
    use failoverd::core::plan::FailoverPlan;
    use failoverd::core::record::{RecordWrite, Settlement, apply};
    use failoverd::ports::ControlStore;
    use failoverd::ports::store::Write;

    let moto = common::Moto::start();
    let clients = common::clients(&moto, None);
    let name = common::unique("control");
    let ddb = clients.dynamodb("us-east-1");
    let table = ControlTable::new(ddb.clone(), name.clone(), "us-east-1");
    let rt = rt();
    rt.block_on(dynamo::create_control_table(&ddb, &name))
        .unwrap();

    const AT: u64 = 1_800_000_000_000;
    let at = AT;
    let claim = move |r: &ControlRecord, version: u64, supersedes: bool| {
        let epoch = r.epoch + 1;
        RecordWrite::Claim {
            plan: FailoverPlan {
                from: r.active.clone(),
                to: if r.active == "us-west-2" {
                    "us-east-1"
                } else {
                    "us-west-2"
                }
                .into(),
                epoch,
                execution: execution_name(&r.incarnation, epoch),
                initiator: "us-west-2".into(),
                expected_version: version,
                reason: "down by quorum".into(),
                ungraceful: epoch.is_multiple_of(2),
                old_region_healthy: epoch.is_multiple_of(3),
                forced: supersedes,
                automatic: !supersedes,
                changed_by: "us-west-2".into(),
                claimed_at: at + epoch * 1000,
                supersedes: supersedes.then(|| r.execution.clone().unwrap_or_default()),
                // Written with the claim when named, removed when not.
                state_machine: (epoch % 2 == 1).then(|| {
                    format!("arn:aws:states:us-west-2:123456789012:stateMachine:sm-{epoch}")
                }),
            },
        }
    };
    let exec = |r: &ControlRecord| r.execution.clone().unwrap_or_default();
    let recreate = move |r: &ControlRecord, replaces: Option<u64>| RecordWrite::Recreate {
        from: failoverd::core::record::Recreated {
            replaces,
            epoch: r.epoch + 5,
            active: "us-west-2".into(),
            mode: Mode::Paused,
            previous: Some("us-east-1".into()),
            last_failover_at: Some(at + 7),
        },
        incarnation: "def456".into(),
        by: "us-west-2".into(),
        at: at + 30,
        reason: "re-created".into(),
    };
    type Step = Box<dyn Fn(&ControlRecord) -> (RecordWrite, bool)>;
    let steps: Vec<Step> = vec![
        // Created once only.
        Box::new(move |_| {
            (
                RecordWrite::Initialize {
                    active: "us-east-1".into(),
                    incarnation: "abc123".into(),
                    by: "us-east-1".into(),
                    at,
                    reason: "initialized".into(),
                },
                false,
            )
        }),
        // Pause at a stale version, then at the right one; resume.
        Box::new(move |r| {
            (
                RecordWrite::SetMode {
                    mode: Mode::Paused,
                    expected_version: r.version - 1,
                    by: "operator:a".into(),
                    at,
                    reason: "x".into(),
                },
                false,
            )
        }),
        Box::new(move |r| {
            (
                RecordWrite::SetMode {
                    mode: Mode::Paused,
                    expected_version: r.version,
                    by: "operator:a".into(),
                    at: at + 1,
                    reason: "maintenance".into(),
                },
                true,
            )
        }),
        Box::new(move |r| {
            (
                RecordWrite::SetMode {
                    mode: Mode::Auto,
                    expected_version: r.version,
                    by: "operator:a".into(),
                    at: at + 2,
                    reason: "done".into(),
                },
                true,
            )
        }),
        // A workflow step before any claim, a claim at a stale version, a claim.
        Box::new(move |r| {
            (
                RecordWrite::Mark {
                    epoch: r.epoch,
                    execution: "nope".into(),
                },
                false,
            )
        }),
        Box::new(move |r| (claim(r, r.version - 1, false), false)),
        Box::new(move |r| (claim(r, r.version, false), true)),
        // A second claim while one is in flight, unless it supersedes.
        Box::new(move |r| (claim(r, r.version, false), false)),
        Box::new(move |r| {
            (
                RecordWrite::Mark {
                    epoch: r.epoch,
                    execution: exec(r),
                },
                true,
            )
        }),
        Box::new(move |r| {
            (
                RecordWrite::Mark {
                    epoch: r.epoch + 1,
                    execution: exec(r),
                },
                false,
            )
        }),
        Box::new(move |r| {
            (
                RecordWrite::Switch {
                    epoch: r.epoch,
                    execution: exec(r),
                    from: r.active.clone(),
                    to: r.target.clone().unwrap_or_default(),
                    at: at + 10,
                },
                true,
            )
        }),
        // Never aborted after the switch.
        Box::new(move |r| {
            (
                RecordWrite::Abort {
                    epoch: r.epoch,
                    execution: exec(r),
                },
                false,
            )
        }),
        Box::new(move |r| {
            (
                RecordWrite::Steady {
                    epoch: r.epoch,
                    execution: exec(r),
                },
                true,
            )
        }),
        // The next failover aborts before its switch.
        Box::new(move |r| (claim(r, r.version, false), true)),
        Box::new(move |r| {
            (
                RecordWrite::Abort {
                    epoch: r.epoch,
                    execution: exec(r),
                },
                true,
            )
        }),
        // One superseded by an operator, settled as aborted by a daemon.
        Box::new(move |r| (claim(r, r.version, false), true)),
        Box::new(move |r| (claim(r, r.version, true), true)),
        Box::new(move |r| {
            (
                RecordWrite::Settle {
                    expected_version: r.version,
                    execution: exec(r),
                    outcome: Settlement::Completed,
                    by: "eu-west-1".into(),
                    at: at + 20,
                    reason: "the execution ended".into(),
                },
                false,
            )
        }),
        Box::new(move |r| {
            (
                RecordWrite::Settle {
                    expected_version: r.version,
                    execution: exec(r),
                    outcome: Settlement::Aborted,
                    by: "eu-west-1".into(),
                    at: at + 21,
                    reason: "the execution ended".into(),
                },
                true,
            )
        }),
        // Re-created from a copy (issue 19 item 9): never over a record
        // that exists, never over another version than the restored one;
        // over it, the whole item replaced.
        Box::new(move |r| (recreate(r, None), false)),
        Box::new(move |r| (recreate(r, Some(r.version - 1)), false)),
        Box::new(move |r| (recreate(r, Some(r.version)), true)),
    ];
    let read = |rt: &tokio::runtime::Runtime| rt.block_on(table.read_record()).unwrap();
    // The record itself first.
    let first = RecordWrite::Initialize {
        active: "us-east-1".into(),
        incarnation: "abc123".into(),
        by: "us-east-1".into(),
        at,
        reason: "initialized".into(),
    };
    assert_eq!(
        rt.block_on(table.write_record(&first)).unwrap(),
        Write::Written
    );
    assert_eq!(read(&rt), Some(apply(None, &first).unwrap()));
    for (i, step) in steps.iter().enumerate() {
        let cur = read(&rt).unwrap();
        let (w, accepted) = step(&cur);
        let expected = apply(Some(&cur), &w);
        assert_eq!(
            expected.is_ok(),
            accepted,
            "step {i}: apply says {expected:?} to {w:?}"
        );
        let got = rt.block_on(table.write_record(&w)).unwrap();
        assert_eq!(
            got == Write::Written,
            accepted,
            "step {i}: DynamoDB said {got:?} to {w:?}"
        );
        let after = read(&rt).unwrap();
        assert_eq!(
            after,
            expected.unwrap_or(cur),
            "step {i}: the record read back after {w:?}"
        );
    }
}

/// The error and its sources, joined (what the router logs).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// S3 answers a missing key with 404 only to a caller with s3:ListBucket,
/// 403 AccessDenied to anyone else; moto always answers 404, so the lab's
/// launcher (chaos/lab/moto_server.py, `S3ListBucket`) applies the rule with
/// the daemon role of deploy/cloudformation/iam.yaml, or what
/// `POST /_lab/s3-listbucket?granted=` says. Through the adapter: with the
/// shipped policy a result not written yet reads as `None` (the router's
/// "in progress"); without ListBucket it is an error that names the missing
/// permission, and an object that exists reads either way.
#[test]
fn a_missing_batch_result_reads_as_s3_answers_it_for_the_daemons_policy() {
    use failoverd::aws::s3::{S3Blobs, ensure_bucket};
    use failoverd::ports::blobs::Blobs;
    let moto = common::Moto::start();
    let clients = std::sync::Arc::new(common::clients(&moto, None));
    let addr = moto.url().trim_start_matches("http://").to_string();
    let lab = |granted: &str| {
        let (status, body) = common::http(
            "POST",
            &addr,
            &format!("/_lab/s3-listbucket?granted={granted}"),
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    };
    rt().block_on(async {
        let bucket = common::unique("failoverd-batch").to_lowercase() + "-us-west-2";
        ensure_bucket(&clients.s3("us-west-2"), &bucket, "us-west-2")
            .await
            .unwrap();
        let blobs = S3Blobs::new(clients.clone());
        blobs
            .put(
                "us-west-2",
                &bucket,
                "async-output/done.out",
                "ok".into(),
                None,
            )
            .await
            .unwrap();
        let missing = "async-output/not-yet.out";

        // The shipped policy (the lab's default): ListBucket on the bucket.
        assert_eq!(
            blobs.get("us-west-2", &bucket, missing).await.unwrap(),
            None,
            "with iam.yaml's daemon role a result not written yet is not found (404), not denied"
        );

        // A caller without ListBucket: 403, and the error says why.
        lab("false");
        let e = blobs
            .get("us-west-2", &bucket, missing)
            .await
            .expect_err("S3 answers 403 without s3:ListBucket");
        let text = chain(&e);
        assert!(
            text.contains("missing s3:ListBucket?") && text.contains("AccessDenied"),
            "{text}"
        );
        let done = blobs
            .get("us-west-2", &bucket, "async-output/done.out")
            .await
            .unwrap()
            .expect("an object that exists reads without ListBucket");
        assert_eq!(&done.body[..], b"ok");

        lab("true");
        assert_eq!(
            blobs.get("us-west-2", &bucket, missing).await.unwrap(),
            None
        );
        lab("policy");
        assert_eq!(
            blobs.get("us-west-2", &bucket, missing).await.unwrap(),
            None
        );
    });

    // The launcher reads the policy, not a constant: the daemon role without
    // its ListBucket statement grants nothing (so the lab would answer 403).
    let shipped =
        std::fs::read_to_string(common::root().join("deploy/cloudformation/iam.yaml")).unwrap();
    let start = shipped
        .find("              - Sid: BatchResultsNotFound")
        .expect("iam.yaml's BatchResultsNotFound statement");
    let end = shipped[start..].find("\n\n").map(|i| start + i).unwrap();
    let without = format!("{}{}", &shipped[..start], &shipped[end + 1..]);
    let dir = std::env::temp_dir().join(common::unique("failoverd-iam"));
    std::fs::create_dir_all(&dir).unwrap();
    let (with_path, without_path) = (dir.join("with.yaml"), dir.join("without.yaml"));
    std::fs::write(&with_path, &shipped).unwrap();
    std::fs::write(&without_path, without).unwrap();
    let grants = |path: &std::path::Path| {
        let out = Command::new(common::venv().join("bin/python"))
            .arg("-c")
            .arg(
                "import sys; sys.path.insert(0, sys.argv[1]); import moto_server as m; \
                 print(len(m.daemon_listbucket_grants(sys.argv[2])))",
            )
            .arg(common::root().join("chaos/lab"))
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(grants(&with_path), "3", "one bucket per region");
    assert_eq!(grants(&without_path), "0");
    std::fs::remove_dir_all(&dir).ok();
}
