//! deploy/ against the rest of the repository: the templates against the
//! definition file, the configuration, the lab's provisioning, and the
//! Debian package against the systemd unit. (The IAM policies against the
//! code are in tests/iam_policy.rs; cfn-lint and the policy-as-code rules run
//! in deploy/lint.sh.)

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod cfn;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use failoverd::aws::sfn::render_definition;
use serde_yaml::Value;

const ASL: &str = "deploy/statemachines/failover.asl.json";

fn asl_text() -> String {
    std::fs::read_to_string(cfn::root().join(ASL)).unwrap()
}

/// `${Name}` placeholders of a text.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else { break };
        out.insert(after[..j].to_string());
        rest = &after[j..];
    }
    out
}

fn param_default(tpl: &Value, name: &str) -> String {
    let v = cfn::get(tpl, &["Parameters", name, "Default"])
        .unwrap_or_else(|| panic!("parameter {name} has no default"));
    match cfn::untag(v) {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("parameter {name}: unexpected default {other:?}"),
    }
}

#[test]
fn rendered_region_template_carries_the_definition_file_unchanged() {
    let dir = std::env::temp_dir().join(common::unique("failoverd-render"));
    cfn::render(&dir);
    let tpl = cfn::load(&dir.join("region.yaml"));
    let def = cfn::get(
        &tpl,
        &[
            "Resources",
            "StateMachine",
            "Properties",
            "DefinitionString",
        ],
    )
    .expect("StateMachine.DefinitionString");
    let raw = cfn::get(&tpl, &["Resources", "StateMachine", "Properties"])
        .and_then(|p| p.as_mapping())
        .and_then(|m| m.get("DefinitionString"))
        .unwrap();
    assert_eq!(
        cfn::tag(raw).as_deref(),
        Some("!Sub"),
        "the definition is filled in by Fn::Sub"
    );
    let asl = asl_text();
    assert_eq!(
        def.as_str().unwrap().trim_end(),
        asl.trim_end(),
        "deploy/render.sh must include {ASL} byte for byte"
    );
    // Nothing of the source template's marker is left, and the source still
    // has no copy of the definition.
    let source = std::fs::read_to_string(cfn::source("region.yaml")).unwrap();
    assert!(
        !source.contains("\"StartAt\""),
        "region.yaml must not carry a copy of the definition"
    );
    let rendered = std::fs::read_to_string(dir.join("region.yaml")).unwrap();
    assert!(!rendered.contains("#failoverd-render:"));
    // Every other template is copied unchanged.
    for name in [
        "tables.yaml",
        "iam.yaml",
        "billing.yaml",
        "scheduled-capacity.yaml",
        "hosts.yaml",
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join(name)).unwrap(),
            std::fs::read_to_string(cfn::source(name)).unwrap(),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn definition_placeholders_are_parameters_of_the_region_template() {
    let asl = asl_text();
    let tpl = cfn::load(&cfn::source("region.yaml"));
    let params: BTreeSet<String> = cfn::parameters(&tpl).into_iter().collect();
    // CloudFormation's pseudo parameters (AWS::Partition) need no parameter.
    let used: BTreeSet<String> = placeholders(&asl)
        .into_iter()
        .filter(|p| !p.starts_with("AWS::"))
        .collect();
    assert!(!used.is_empty());
    let missing: Vec<_> = used.difference(&params).collect();
    assert!(
        missing.is_empty(),
        "{ASL} uses ${{{missing:?}}}, which region.yaml has no parameter for: Fn::Sub would fail the stack. \
         Add the parameter to deploy/cloudformation/region.yaml (and to the lab's provisioning)"
    );
    // What the parameters fill in gives JSON (CloudFormation's Fn::Sub does
    // the same string substitution as the Rust renderer).
    let subs: Vec<(&str, &str)> = used.iter().map(|p| (p.as_str(), "x")).collect();
    let rendered = render_definition(&asl, &subs).unwrap();
    serde_json::from_str::<serde_json::Value>(&rendered).expect("the rendered definition is JSON");
}

/// ARNs name their partition (`${AWS::Partition}`), never `aws` literally:
/// the same templates deploy in aws-cn and aws-us-gov. Every rendered
/// template, the state machine definition included.
#[test]
fn no_template_hard_codes_the_aws_partition() {
    let dir = std::env::temp_dir().join(common::unique("failoverd-partition"));
    cfn::render(&dir);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            // Comments may show an example ARN; YAML and JSON values may not.
            if line.trim_start().starts_with('#') {
                continue;
            }
            if line.contains("arn:aws:") {
                found.push(format!(
                    "{}:{}: {}",
                    path.file_name().unwrap().to_string_lossy(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        found.is_empty(),
        "literal arn:aws: in a rendered template (use arn:${{AWS::Partition}}:):\n  {}",
        found.join("\n  ")
    );
}

/// Error names in the definition's Retry and Catch lists follow Step
/// Functions' rule for AWS SDK integrations (docs/deploy.md, "The
/// workflow's error names"): `States.*`, or `<Service>.<Name>Exception` with
/// the service in Pascal case as the SDK integration's service id gives it
/// (`aws-sdk:dynamodb` -> `DynamoDb`) and the `Exception` suffix always
/// there. A name off the rule is never matched: the error would skip its
/// Retry or Catch.
#[test]
fn workflow_error_names_follow_the_sdk_integration_rule() {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "ErrorEquals" {
                        out.extend(
                            v.as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|e| e.as_str().map(String::from)),
                        );
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let asl = render_definition(
        &asl_text(),
        &[("ControlTable", "t"), ("ControlTableRegion", "us-east-1")],
    )
    .unwrap();
    let asl: serde_json::Value = serde_json::from_str(&asl).unwrap();
    // The services the Task states integrate with, by SDK service id.
    let mut services = BTreeSet::new();
    let mut names = Vec::new();
    walk(&asl, &mut names);
    for r in asl.to_string().split("aws-sdk:").skip(1) {
        services.insert(r.split(':').next().unwrap().to_string());
    }
    assert_eq!(
        services,
        BTreeSet::from(["dynamodb".to_string()]),
        "teach this test the Pascal-case name of every new SDK integration"
    );
    assert!(!names.is_empty());
    let bad: Vec<_> = names
        .iter()
        .filter(|n| {
            let ok_states = n.starts_with("States.");
            let ok_sdk = n.strip_prefix("DynamoDb.").is_some_and(|e| {
                e.ends_with("Exception") && e.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            });
            !(ok_states || ok_sdk)
        })
        .collect();
    assert!(
        bad.is_empty(),
        "error names off Step Functions' SDK-integration rule (ServiceName.ErrorNameException): {bad:?}"
    );
}

/// CloudFormation takes a template body of at most 51,200 bytes on a direct
/// upload (`aws cloudformation deploy --template-file` without
/// `--s3-bucket`); larger ones must go through S3 (TemplateURL, 1 MB).
/// Every rendered template stays under 90% of the direct limit, so the
/// runbook's commands work as written and a growing workflow is noticed
/// before an operator's deploy fails (runbooks/deploy.md, "Template size").
#[test]
fn rendered_templates_fit_a_direct_upload_with_room_to_spare() {
    const DIRECT_UPLOAD_LIMIT: usize = 51_200;
    const BUDGET: usize = DIRECT_UPLOAD_LIMIT * 9 / 10; // 46,080
    let dir = std::env::temp_dir().join(common::unique("failoverd-size"));
    cfn::render(&dir);
    let mut sizes = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            sizes.insert(name, std::fs::metadata(&path).unwrap().len() as usize);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(sizes.contains_key("region.yaml"), "{sizes:?}");
    let over: Vec<_> = sizes.iter().filter(|(_, n)| **n >= BUDGET).collect();
    assert!(
        over.is_empty(),
        "rendered templates at or over {BUDGET} bytes (90% of CloudFormation's {DIRECT_UPLOAD_LIMIT}-byte \
         direct upload): {over:?}; shrink them, or move the runbook to the S3 upload \
         (`aws cloudformation deploy --s3-bucket`, runbooks/deploy.md) and raise this budget"
    );
}

/// regions/base.toml is what an operator edits after deploying with the
/// templates' defaults: the names must agree.
#[test]
fn example_config_names_what_the_templates_create_by_default() {
    let base: toml::Table = std::fs::read_to_string(cfn::root().join("regions/base.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let tables = cfn::load(&cfn::source("tables.yaml"));
    let region = cfn::load(&cfn::source("region.yaml"));
    let iam = cfn::load(&cfn::source("iam.yaml"));
    let cfg = |path: &[&str]| -> String {
        let mut v = toml::Value::Table(base.clone());
        for k in path {
            v = v
                .get(k)
                .cloned()
                .unwrap_or_else(|| panic!("base.toml has no {path:?}"));
        }
        v.as_str().unwrap().to_string()
    };
    assert_eq!(
        cfg(&["tables", "control"]),
        param_default(&tables, "ControlTableName")
    );
    assert_eq!(
        cfg(&["tables", "control"]),
        param_default(&region, "ControlTable")
    );
    assert_eq!(
        cfg(&["tables", "control"]),
        param_default(&iam, "ControlTableName")
    );
    assert_eq!(
        cfg(&["tables", "routing"]),
        param_default(&tables, "RoutingTableName")
    );
    assert_eq!(
        cfg(&["tables", "routing"]),
        param_default(&iam, "RoutingTableName")
    );
    assert_eq!(
        cfg(&["router", "batch_bucket_prefix"]),
        param_default(&region, "BatchBucketPrefix")
    );
    assert_eq!(
        cfg(&["router", "batch_bucket_prefix"]),
        param_default(&iam, "BatchBucketPrefix")
    );
    for r in base["regions"].as_array().unwrap() {
        let arn = r["state_machine_arn"].as_str().unwrap();
        assert_eq!(
            arn.rsplit(':').next().unwrap(),
            param_default(&region, "StateMachineName"),
            "{arn}"
        );
    }
}

// --- scheduled capacity against failover ----------------------------------------

/// `v[key]` with its tag (`cfn::get` looks through tags).
fn raw<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    cfn::untag(v).as_mapping()?.get(key)
}

/// Whether `v` is the failover capacity: `!Ref FailoverCapacity`, or a
/// literal at least its default.
fn is_failover_capacity(v: &Value, default: u64) -> bool {
    let by_ref = (cfn::tag(v).as_deref() == Some("!Ref")
        && cfn::str_of(v) == Some("FailoverCapacity"))
        || cfn::get(v, &["Ref"]).and_then(cfn::str_of) == Some("FailoverCapacity");
    let literal = match cfn::untag(v) {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    by_ref || literal.is_some_and(|n| n >= default)
}

/// What in a scheduled-capacity template can scale a failed-over region
/// back down. Application Auto Scaling scales a variant above its maximum
/// back to it at every scheduled action and whenever the target is
/// registered again (every stack update); the prepare step scales a standby
/// up to the active's count outside Application Auto Scaling. So the
/// target's maximum must be the failover capacity (the `FailoverCapacity`
/// parameter), and a scheduled action may set no other maximum.
fn scheduled_max_problems(tpl: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(default) = cfn::get(tpl, &["Parameters", "FailoverCapacity", "Default"]).and_then(
        |d| match cfn::untag(d) {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        },
    ) else {
        return vec![
            "no FailoverCapacity parameter (with a default): nothing says what a failover needs"
                .into(),
        ];
    };
    for (id, r) in cfn::resources(tpl, "AWS::ApplicationAutoScaling::ScalableTarget") {
        match cfn::get(r, &["Properties"]).and_then(|p| raw(p, "MaxCapacity")) {
            Some(max) if is_failover_capacity(max, default) => {}
            other => problems.push(format!(
                "{id}: MaxCapacity {other:?} is not FailoverCapacity: a stack update re-registers the \
                 target and scales a failed-over region down to it"
            )),
        }
        for a in cfn::get(r, &["Properties", "ScheduledActions"])
            .map(cfn::items)
            .unwrap_or_default()
        {
            let name = cfn::get(a, &["ScheduledActionName"])
                .and_then(cfn::str_of)
                .unwrap_or("?");
            if let Some(max) =
                cfn::get(a, &["ScalableTargetAction"]).and_then(|t| raw(t, "MaxCapacity"))
                && !is_failover_capacity(max, default)
            {
                problems.push(format!(
                    "{id}: scheduled action {name} sets MaxCapacity {max:?}, below the failover \
                         capacity: it scales a failed-over region back down when it runs"
                ));
            }
        }
    }
    problems
}

#[test]
fn scheduled_capacity_never_lowers_the_maximum_below_the_failover_capacity() {
    let path = cfn::source("scheduled-capacity.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let shipped: Value = serde_yaml::from_str(&text).unwrap();
    assert!(
        !cfn::resources(&shipped, "AWS::ApplicationAutoScaling::ScalableTarget").is_empty(),
        "scheduled-capacity.yaml declares a scalable target"
    );
    let problems = scheduled_max_problems(&shipped);
    assert!(
        problems.is_empty(),
        "{}:\n  {}",
        path.display(),
        problems.join("\n  ")
    );

    // The check can fail: an off-hours maximum, a lower literal, a target
    // registered below the failover capacity.
    let off_hours = "            MinCapacity: !Ref OffHoursMinCapacity\n";
    assert!(text.contains(off_hours));
    for (what, mutant) in [
        (
            "off-hours maximum",
            text.replace(
                off_hours,
                &format!("{off_hours}            MaxCapacity: !Ref OffHoursMinCapacity\n"),
            ),
        ),
        (
            "literal maximum",
            text.replace(
                off_hours,
                &format!("{off_hours}            MaxCapacity: 1\n"),
            ),
        ),
        (
            "target maximum",
            text.replace(
                "      MaxCapacity: !Ref FailoverCapacity\n",
                "      MaxCapacity: !Ref BusinessHoursMinCapacity\n",
            ),
        ),
    ] {
        assert_ne!(mutant, text, "{what}: the mutation applies");
        let tpl: Value = serde_yaml::from_str(&mutant).unwrap();
        assert!(
            !scheduled_max_problems(&tpl).is_empty(),
            "{what}: the check must refuse it"
        );
    }
}

// --- the Debian package and the systemd unit ------------------------------------

fn deb_meta() -> toml::Table {
    let cargo: toml::Table = std::fs::read_to_string(cfn::root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    cargo["package"]["metadata"]["deb"]
        .as_table()
        .unwrap()
        .clone()
}

/// (source, installed path) of every asset.
fn deb_assets() -> Vec<(String, String)> {
    deb_meta()["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
            let dest = if dest.ends_with('/') {
                format!("/{dest}{}", src.rsplit('/').next().unwrap())
            } else {
                format!("/{dest}")
            };
            (src.to_string(), dest)
        })
        .collect()
}

fn unit_lines(key: &str) -> Vec<String> {
    std::fs::read_to_string(cfn::root().join("systemd/failoverd@.service"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")).map(String::from))
        .collect()
}

#[test]
fn unit_runs_the_binary_where_the_package_installs_it() {
    let assets = deb_assets();
    let binary = assets
        .iter()
        .find(|(src, _)| src == "target/release/failoverd")
        .map(|(_, dest)| dest.clone())
        .expect("the package ships target/release/failoverd");
    let exec = unit_lines("ExecStart");
    assert_eq!(exec.len(), 1);
    let program = exec[0].split_whitespace().next().unwrap();
    assert_eq!(
        program, binary,
        "ExecStart's program and the package's binary path"
    );
    assert!(
        assets
            .iter()
            .any(|(src, dest)| src == "systemd/failoverd@.service"
                && dest == "/usr/lib/systemd/system/failoverd@.service")
    );
    // The unit reads its config from where the package puts the examples.
    let config = exec[0]
        .split_whitespace()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("ExecStart passes --config");
    let dir = config.rsplit_once('/').unwrap().0;
    for (src, dest) in &assets {
        if src.starts_with("regions/") {
            assert!(
                dest.starts_with(&format!("{dir}/")),
                "{dest} is not in {dir}"
            );
        }
    }
    // The shared env file the unit reads is shipped.
    let env_files = unit_lines("EnvironmentFile");
    assert!(
        env_files
            .iter()
            .any(|e| e == "-/etc/failoverd/failoverd.env")
    );
    assert!(
        assets
            .iter()
            .any(|(_, d)| d == "/etc/failoverd/failoverd.env")
    );
}

// --- daemon hosts (hosts.yaml, issue 24) ------------------------------------------

/// Seconds of a `"20s"` / `45s` duration.
fn secs(v: &str) -> u64 {
    v.trim_matches('"')
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{v}: expected whole seconds"))
}

/// hosts.yaml against what it runs: the unit, the shipped config and the
/// region template. A host's daemon is named after its EC2 instance id,
/// which the real config validator must accept; the target group sends
/// traffic and health checks to the routers' port and checks the path
/// Route 53 checks (never /active, which answers on one host); a host that
/// leaves the group is deregistered for at least the daemon's drain and
/// less than the unit's stop timeout; a rolling replacement keeps MinHosts
/// in service.
#[test]
fn daemon_hosts_template_fits_the_unit_and_the_config() {
    let hosts = cfn::load(&cfn::source("hosts.yaml"));
    let region = cfn::load(&cfn::source("region.yaml"));
    let num = |name: &str| -> u64 { param_default(&hosts, name).parse().unwrap() };

    // The router port in every shipped region file.
    for entry in std::fs::read_dir(cfn::root().join("regions"))
        .unwrap()
        .flatten()
    {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".toml") || name == "base.toml" {
            continue;
        }
        let t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let router = t["listen"]["router"].as_str().unwrap();
        let port: u64 = router.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(port, num("RouterPort"), "{name}: listen.router {router}");
    }

    // Traffic and health checks on the routers' port, the path Route 53 checks.
    let tg = cfn::get(&hosts, &["Resources", "RouterTargetGroup", "Properties"]).unwrap();
    let field = |k: &str| cfn::get(tg, &[k]).and_then(cfn::str_of).map(String::from);
    assert_eq!(field("Port").as_deref(), Some("RouterPort"));
    assert_eq!(field("Protocol").as_deref(), Some("TCP"));
    assert_eq!(field("HealthCheckPort").as_deref(), Some("traffic-port"));
    assert_eq!(
        field("HealthCheckPath"),
        Some(param_default(&region, "HealthCheckPath")),
        "the load balancer checks what Route 53 checks"
    );

    // Drain within the deregistration delay, the delay within the unit's stop.
    let base: toml::Table = std::fs::read_to_string(cfn::root().join("regions/base.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let grace = secs(base["timings"]["shutdown_grace"].as_str().unwrap());
    let stop = secs(&unit_lines("TimeoutStopSec")[0]);
    let delay = num("DeregistrationDelaySeconds");
    assert!(
        grace <= delay && delay < stop,
        "shutdown_grace {grace}s <= deregistration delay {delay}s < TimeoutStopSec {stop}s"
    );

    // One host at a time, MinHosts kept in service, room to add one first.
    let policy = cfn::get(
        &hosts,
        &[
            "Resources",
            "HostGroup",
            "UpdatePolicy",
            "AutoScalingRollingUpdate",
        ],
    )
    .unwrap();
    assert_eq!(
        cfn::get(policy, &["MaxBatchSize"]).and_then(|v| v.as_u64()),
        Some(1)
    );
    assert_eq!(
        cfn::get(policy, &["MinInstancesInService"]).and_then(cfn::str_of),
        Some("MinHosts")
    );
    assert!(num("MaxHosts") > num("MinHosts"));
    assert!(
        num("MinHosts") >= 2,
        "more than one daemon per region by default"
    );

    // The user data names the daemon after the instance id, in the unit's
    // environment, and starts failoverd@<region>.
    let user_data = cfn::get(
        &hosts,
        &[
            "Resources",
            "LaunchTemplate",
            "Properties",
            "LaunchTemplateData",
            "UserData",
        ],
    )
    .unwrap();
    let script = cfn::get(user_data, &["Fn::Base64"])
        .and_then(|v| v.as_str())
        .expect("UserData: Fn::Base64: !Sub script")
        .to_string();
    for needle in [
        "meta-data/instance-id",
        "failoverd@${AWS::Region}.service.d",
        "Environment=FAILOVERD__INSTANCE=",
        "check-config",
        "systemctl enable --now failoverd@${AWS::Region}",
    ] {
        assert!(
            script.contains(needle),
            "user data lacks {needle:?}:\n{script}"
        );
    }
    let unit = std::fs::read_to_string(cfn::root().join("systemd/failoverd@.service")).unwrap();
    assert!(unit.contains("--config /etc/failoverd/regions/%i.toml"));

    // An EC2 instance id is a valid `instance` for the real validator.
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .current_dir(cfn::root())
        .args(["check-config", "--config", "regions/us-east-1.toml"])
        .env("FAILOVERD__INSTANCE", "i-0123456789abcdef0")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("instance = \"i-0123456789abcdef0\""),
        "check-config does not take an instance id as `instance`:\n{text}"
    );
}

#[test]
fn every_shipped_etc_file_is_a_conffile() {
    let conf: BTreeSet<String> = deb_meta()["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let etc: BTreeSet<String> = deb_assets()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d.starts_with("/etc/"))
        .collect();
    assert_eq!(
        conf, etc,
        "every file under /etc is a conffile (dpkg keeps local edits), and nothing else is"
    );
    // Every shipped region file is a region of the shipped base.toml.
    let base: toml::Table = std::fs::read_to_string(cfn::root().join("regions/base.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let regions: BTreeSet<&str> = base["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for f in &etc {
        if let Some(name) = f.strip_prefix("/etc/failoverd/regions/") {
            let name = name.trim_end_matches(".toml");
            assert!(name == "base" || regions.contains(name), "{f}");
        }
    }
}

// --- the lab's provisioning against the templates (moto) -------------------------

/// What moto's CloudFormation skips, as docs/deploy.md says.
const MOTO_SKIPS: &[(&str, &str)] = &[("BatchBucketPolicy", "AWS::S3::BucketPolicy")];

/// The logical ids of the resources (and outputs) whose `Condition` is
/// `condition`.
fn conditional_on(tpl: &Value, condition: &str) -> BTreeSet<String> {
    ["Resources", "Outputs"]
        .iter()
        .filter_map(|section| cfn::get(tpl, &[section]).and_then(|r| r.as_mapping()))
        .flat_map(|m| m.iter())
        .filter(|(_, v)| cfn::get(v, &["Condition"]).and_then(cfn::str_of) == Some(condition))
        .map(|(k, _)| k.as_str().unwrap().to_string())
        .collect()
}

/// The witness topology: a region without a replica of the control table
/// deploys no workflow (Step Functions runs the workflow's DynamoDB tasks
/// only in its own region, so it would write a table that does not exist
/// there). The state machine, its role and its log group, and the outputs
/// naming them, exist only under HasWorkflow (DeployWorkflow=true, the
/// default); everything else every region deploys. The workflow writes its
/// own region's replica unless told otherwise (the lab only), and the
/// runbook deploys the third region with DeployWorkflow=false and never
/// points a workflow at another region's table.
#[test]
fn a_region_without_a_replica_deploys_no_workflow() {
    let tpl = cfn::load(&cfn::source("region.yaml"));
    assert_eq!(param_default(&tpl, "DeployWorkflow"), "true");
    assert_eq!(param_default(&tpl, "ControlTableRegion"), "");
    let cond = cfn::get(&tpl, &["Conditions", "HasWorkflow"]).expect("a HasWorkflow condition");
    let text = serde_yaml::to_string(cond).unwrap();
    assert!(
        text.contains("DeployWorkflow") && text.contains("'true'"),
        "{text}"
    );
    let only = conditional_on(&tpl, "HasWorkflow");
    let expected: BTreeSet<String> = [
        "StateMachine",
        "StateMachineRole",
        "StateMachineLogGroup",
        "StateMachineArn",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert!(only.is_superset(&expected), "{only:?}");
    // Nothing else is workflow-only: the bucket and the health check serve
    // the region whether or not it runs a workflow.
    for (id, ty) in resource_ids(&tpl) {
        let is_workflow =
            ty == "AWS::StepFunctions::StateMachine" || id.starts_with("StateMachine");
        assert_eq!(only.contains(&id), is_workflow, "{id} ({ty})");
    }

    let runbook = std::fs::read_to_string(cfn::root().join("runbooks/deploy.md")).unwrap();
    assert!(
        runbook.contains("DeployWorkflow=false"),
        "runbooks/deploy.md must deploy a region without a replica with DeployWorkflow=false"
    );
    assert!(
        !runbook.contains("ControlTableRegion="),
        "runbooks/deploy.md must not point a workflow at another region's table"
    );
}

fn resource_ids(tpl: &Value) -> BTreeMap<String, String> {
    cfn::get(tpl, &["Resources"])
        .and_then(|r| r.as_mapping())
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                cfn::get(v, &["Type"])
                    .and_then(cfn::str_of)
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

/// `(attribute, key type)` pairs of a KeySchema.
fn key_schema_of(v: &Value) -> Vec<(String, String)> {
    cfn::items(v)
        .into_iter()
        .map(|k| {
            (
                cfn::get(k, &["AttributeName"])
                    .and_then(cfn::str_of)
                    .unwrap()
                    .to_string(),
                cfn::get(k, &["KeyType"])
                    .and_then(cfn::str_of)
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
struct TableShape {
    attributes: BTreeSet<(String, String)>,
    keys: Vec<(String, String)>,
    /// index name -> (keys, projection)
    indexes: BTreeMap<String, (Vec<(String, String)>, String)>,
    billing: String,
    ttl: Option<String>,
}

fn template_shape(tpl: &Value, resource: &str) -> TableShape {
    let p = cfn::get(tpl, &["Resources", resource, "Properties"]).unwrap();
    let s = |v: &Value, k: &str| cfn::get(v, &[k]).and_then(cfn::str_of).unwrap().to_string();
    TableShape {
        attributes: cfn::items(cfn::get(p, &["AttributeDefinitions"]).unwrap())
            .into_iter()
            .map(|a| (s(a, "AttributeName"), s(a, "AttributeType")))
            .collect(),
        keys: key_schema_of(cfn::get(p, &["KeySchema"]).unwrap()),
        indexes: cfn::get(p, &["GlobalSecondaryIndexes"])
            .map(cfn::items)
            .unwrap_or_default()
            .into_iter()
            .map(|i| {
                (
                    s(i, "IndexName"),
                    (
                        key_schema_of(cfn::get(i, &["KeySchema"]).unwrap()),
                        cfn::get(i, &["Projection", "ProjectionType"])
                            .and_then(cfn::str_of)
                            .unwrap()
                            .to_string(),
                    ),
                )
            })
            .collect(),
        billing: s(p, "BillingMode"),
        // `!If [IsStrong, NoValue, spec]`: the lab's tables carry the
        // MREC branch (moto stores a TTL setting in every mode).
        ttl: p
            .as_mapping()
            .and_then(|m| m.get("TimeToLiveSpecification"))
            .map(|raw| match cfn::tag(raw).as_deref() {
                Some("!If") => cfn::items(raw)[2],
                _ => cfn::untag(raw),
            })
            .map(|t| {
                assert_eq!(
                    cfn::get(t, &["Enabled"]).and_then(|e| e.as_bool()),
                    Some(true)
                );
                s(t, "AttributeName")
            }),
    }
}

/// TTL is an MREC feature of global tables: the control table enables it
/// only when it is not MRSC (`Consistency=STRONG`), or creating an MRSC
/// table would fail on it (docs/deploy.md, "TTL").
#[test]
fn control_table_ttl_is_off_on_an_mrsc_table() {
    let tpl = cfn::load(&cfn::source("tables.yaml"));
    let raw = cfn::get(&tpl, &["Resources", "ControlTable", "Properties"])
        .and_then(|p| p.as_mapping())
        .and_then(|m| m.get("TimeToLiveSpecification"))
        .expect("ControlTable.TimeToLiveSpecification");
    assert_eq!(
        cfn::tag(raw).as_deref(),
        Some("!If"),
        "TimeToLiveSpecification must depend on the consistency mode: {raw:?}"
    );
    let branches = cfn::items(raw);
    assert_eq!(branches.len(), 3, "{raw:?}");
    assert_eq!(cfn::str_of(branches[0]), Some("IsStrong"));
    assert_eq!(
        cfn::tag(branches[1]).as_deref(),
        Some("!Ref"),
        "the STRONG branch is AWS::NoValue"
    );
    assert_eq!(cfn::str_of(branches[1]), Some("AWS::NoValue"));
    assert_eq!(
        cfn::get(branches[2], &["AttributeName"]).and_then(cfn::str_of),
        Some("ttl")
    );
    // IsStrong is what it says.
    let cond = cfn::get(&tpl, &["Conditions", "IsStrong"]).unwrap();
    let args: Vec<_> = cfn::items(cond)
        .into_iter()
        .filter_map(cfn::str_of)
        .collect();
    assert!(args.contains(&"STRONG"), "{cond:?}");
}

async fn provisioned_shape(ddb: &aws_sdk_dynamodb::Client, table: &str) -> TableShape {
    let d = ddb.describe_table().table_name(table).send().await.unwrap();
    let t = d.table().unwrap();
    let keys = |ks: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        ks.iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let ttl = ddb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().and_then(|d| {
        (d.time_to_live_status().map(|s| s.as_str()) == Some("ENABLED"))
            .then(|| d.attribute_name().unwrap_or_default().to_string())
    });
    TableShape {
        attributes: t
            .attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name().to_string(),
                    a.attribute_type().as_str().to_string(),
                )
            })
            .collect(),
        keys: keys(t.key_schema()),
        indexes: t
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                (
                    i.index_name().unwrap().to_string(),
                    (
                        keys(i.key_schema()),
                        i.projection()
                            .and_then(|p| p.projection_type())
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default(),
                    ),
                )
            })
            .collect(),
        billing: t
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str().to_string())
            .unwrap_or_default(),
        ttl,
    }
}

/// moto has no AWS::DynamoDB::GlobalTable, so the lab creates the tables
/// with failoverd's adapter: they must be the tables tables.yaml describes.
/// And the stacks the lab deploys hold every resource of the templates but
/// the ones docs/deploy.md says moto skips.
#[test]
fn lab_provisioning_deploys_what_the_templates_describe() {
    let moto = common::Moto::start();
    let dir = std::env::temp_dir().join(common::unique("failoverd-provision"));
    let env: Vec<(&str, String)> = vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("FAILOVERD_LOG", "warn".into()),
        ("FAILOVERD__ENDPOINTS__DYNAMODB", moto.url()),
        ("FAILOVERD__ENDPOINTS__S3", moto.url()),
        ("FAILOVERD__ENDPOINTS__ROUTE53", moto.url()),
        ("FAILOVERD__ENDPOINTS__SFN", moto.url()),
        ("FAILOVERD__ENDPOINTS__SAGEMAKER", moto.url()),
        ("FAILOVERD__ENDPOINTS__CLOUDWATCH", moto.url()),
        (
            "FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME",
            "http://127.0.0.1:9".into(),
        ),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd-lab"))
        .current_dir(cfn::root())
        .args([
            "provision",
            "--config",
            "regions/lab/us-east-1.toml",
            "--out",
        ])
        .arg(&dir)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "provision: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clients = common::clients(&moto, None);
    let tables = cfn::load(&cfn::source("tables.yaml"));
    let region_tpl = cfn::load(&dir.join("cloudformation/region.yaml"));
    let iam_tpl = cfn::load(&dir.join("cloudformation/iam.yaml"));
    let docs = std::fs::read_to_string(cfn::root().join("docs/deploy.md")).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for region in ["us-east-1", "eu-west-1"] {
            let ddb = clients.dynamodb(region);
            for (resource, name) in [
                ("ControlTable", param_default(&tables, "ControlTableName")),
                ("RoutingTable", param_default(&tables, "RoutingTableName")),
            ] {
                assert_eq!(
                    provisioned_shape(&ddb, &name).await,
                    template_shape(&tables, resource),
                    "{name} in {region}: the lab's table differs from tables.yaml's {resource}"
                );
            }
        }

        let cfn_client = |region: &str| {
            let conf = aws_sdk_cloudformation::config::Builder::from(&common::sdk_config())
                .region(aws_config::Region::new(region.to_string()))
                .endpoint_url(moto.url())
                .build();
            aws_sdk_cloudformation::Client::from_conf(conf)
        };
        // eu-west-1 holds no replica in the lab: its stack deploys no
        // workflow (DeployWorkflow=false), so the HasWorkflow resources
        // must be absent there, and only there.
        let workflow_only = conditional_on(&region_tpl, "HasWorkflow");
        assert!(workflow_only.contains("StateMachine"), "{workflow_only:?}");
        // The lab's shipped fleet maps no inference component, so the
        // components' policy is not deployed here (tests/prepare_models.rs
        // provisions a fleet that maps some, and checks it is).
        let components_only = conditional_on(&iam_tpl, "HasInferenceComponents");
        assert!(
            components_only.contains("DaemonInferenceComponents"),
            "{components_only:?}"
        );
        let model_endpoints_only = conditional_on(&iam_tpl, "HasModelEndpoints");
        assert!(
            model_endpoints_only.contains("DaemonModelEndpoints"),
            "{model_endpoints_only:?}"
        );
        for (region, stack, tpl, workflow) in [
            ("us-east-1", "failoverd-region", &region_tpl, true),
            ("us-west-2", "failoverd-region", &region_tpl, true),
            ("eu-west-1", "failoverd-region", &region_tpl, false),
            ("us-east-1", "failoverd-iam", &iam_tpl, true),
        ] {
            let listed = cfn_client(region)
                .list_stack_resources()
                .stack_name(stack)
                .send()
                .await
                .unwrap();
            let created: BTreeSet<String> = listed
                .stack_resource_summaries()
                .iter()
                .filter_map(|r| r.logical_resource_id().map(String::from))
                .filter(|id| !id.is_empty())
                .collect();
            if !workflow {
                let there: Vec<&String> = workflow_only
                    .iter()
                    .filter(|id| created.contains(*id))
                    .collect();
                assert!(
                    there.is_empty(),
                    "stack {stack} in {region} (no replica) created {there:?}"
                );
            }
            let skipped: Vec<(String, String)> = resource_ids(tpl)
                .into_iter()
                .filter(|(id, _)| !created.contains(id))
                .filter(|(id, _)| workflow || !workflow_only.contains(id))
                .filter(|(id, _)| !components_only.contains(id))
                .filter(|(id, _)| !model_endpoints_only.contains(id))
                .collect();
            for (id, ty) in &skipped {
                assert!(
                    MOTO_SKIPS.contains(&(id.as_str(), ty.as_str())),
                    "stack {stack} in {region}: moto did not create {id} ({ty}); if moto cannot, \
                     list it in MOTO_SKIPS and say so in docs/deploy.md"
                );
                assert!(
                    docs.contains(ty.as_str()),
                    "docs/deploy.md does not mention that moto skips {ty}"
                );
            }
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}
