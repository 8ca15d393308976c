//! Configuration: every shipped file parses, layering order holds, and bad
//! input is reported completely with file and key.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use failoverd::config::{self, Consistency, EX_CONFIG, EnvSource};

fn region_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml") && p.file_name().unwrap() != "base.toml"
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_shipped_region_file_is_valid() {
    let mut checked = 0;
    for dir in ["regions", "regions/lab"] {
        for f in region_files(&common::root().join(dir)) {
            let cfg = config::load(&f, &EnvSource::new())
                .unwrap_or_else(|e| panic!("{}: {}", f.display(), e.report()));
            let stem = f.file_stem().unwrap().to_str().unwrap();
            assert_eq!(cfg.region, stem, "{} names its own region", f.display());
            assert_eq!(cfg.regions.len(), 3);
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "three production and three lab region files");
}

#[test]
fn the_systemd_unit_points_at_shipped_layout() {
    let unit = std::fs::read_to_string(common::root().join("systemd/failoverd@.service")).unwrap();
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains("run --config /etc/failoverd/regions/%i.toml"),
        "{exec}"
    );
    // The packaged layout copies regions/*.toml to /etc/failoverd/regions/.
    for r in ["us-east-1", "us-west-2", "us-east-2"] {
        assert!(common::root().join(format!("regions/{r}.toml")).is_file());
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(common::unique("failoverd-config"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const BASE: &str = r#"
[tables]
control = "c"
routing = "r"
witness = "us-east-2"
[[regions]]
name = "us-east-1"
priority = 1
probe_urls = ["https://a.example/ping"]
state_machine_arn = "arn:aws:states:us-east-1:111122223333:stateMachine:f"
sagemaker = { provisioned = "p" }
[[regions]]
name = "us-west-2"
priority = 2
health_check_ids = ["hc"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
sagemaker = { serverless = "s" }
"#;

#[test]
fn layers_apply_in_order_base_region_environment() {
    let d = tempdir();
    write(
        &d,
        "base.toml",
        &format!("{BASE}\n[timings]\npoll_interval = \"7s\"\nlease = \"40s\"\n"),
    );
    let f = write(
        &d,
        "us-west-2.toml",
        "region = \"us-west-2\"\n[timings]\nlease = \"50s\"\nfailure_threshold = 4\n",
    );
    let env: EnvSource = [
        (
            "FAILOVERD__TIMINGS__FAILURE_THRESHOLD".to_string(),
            "5".to_string(),
        ),
        (
            "FAILOVERD__TABLES__CONSISTENCY".to_string(),
            "eventual".to_string(),
        ),
        ("UNRELATED".to_string(), "x".to_string()),
    ]
    .into();
    let cfg = config::load(&f, &env).unwrap();
    assert_eq!(cfg.timings.poll_interval.as_secs(), 7, "from base");
    assert_eq!(cfg.timings.lease.as_secs(), 50, "region file beats base");
    assert_eq!(cfg.timings.failure_threshold, 5, "environment beats both");
    assert_eq!(cfg.tables.consistency, Consistency::Eventual);
    assert_eq!(cfg.sources, vec![d.join("base.toml"), f.clone()]);
    assert_eq!(cfg.local().name, "us-west-2");
}

#[test]
fn every_problem_is_reported_with_file_and_key() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "eu-west-1.toml",
        "region = \"eu-west-1\"\ncolour = \"blue\"\n[timings]\npoll_interval = \"5 parsecs\"\nrecovery_threshold = 1000\n[listen]\nadmin = \"localhost:port\"\n",
    );
    let env: EnvSource = [("FAILOVERD__TIMINGS__LEASE".to_string(), "soon".to_string())].into();
    let err = config::load(&f, &env).unwrap_err();
    let report = err.report();
    let file = f.display().to_string();
    for (origin, key) in [
        (file.as_str(), "colour"),
        (file.as_str(), "region"),
        (file.as_str(), "timings.poll_interval"),
        (file.as_str(), "timings.recovery_threshold"),
        (file.as_str(), "listen.admin"),
        ("environment (FAILOVERD__TIMINGS__LEASE)", "timings.lease"),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.contains(origin) && l.contains(&format!(": {key}: "))),
            "no line for {key} from {origin} in:\n{report}"
        );
    }
    assert!(report.contains("missing from the region list"), "{report}");
    assert_eq!(report.lines().count(), 6, "{report}");
}

#[test]
fn duplicate_regions_and_priorities_and_bad_arns_are_errors() {
    let d = tempdir();
    let dup = BASE
        .replace(
            "name = \"us-west-2\"\npriority = 2",
            "name = \"us-east-1\"\npriority = 1",
        )
        .replace(
            "arn:aws:states:us-west-2:111122223333:stateMachine:f",
            "arn:aws:states:west:111122223333:stateMachine:f",
        );
    write(&d, "base.toml", &dup);
    let f = write(&d, "us-east-1.toml", "region = \"us-east-1\"\n");
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    assert!(
        report.contains("regions[1].name: duplicate region \"us-east-1\""),
        "{report}"
    );
    assert!(
        report.contains("regions[1].priority: priority 1 is also used"),
        "{report}"
    );
    assert!(
        report.contains("regions[1].state_machine_arn")
            && report.contains("is not a state machine ARN"),
        "{report}"
    );
}

#[test]
fn router_tunables_are_checked_against_each_other() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[router]\ndefault_deadline = \"20m\"\nthrottle_base_delay = \"3s\"\nthrottle_max_delay = \"1s\"\nbreaker_ejection = \"10m\"\nbreaker_max_ejection = \"1m\"\nbreaker_failures = 0\nmax_batch_payload = 1024\n",
    );
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    for line in [
        "router.default_deadline: 20m is longer than router.max_deadline (15m)",
        "router.throttle_base_delay: 3s is longer than router.throttle_max_delay (1s)",
        "router.breaker_ejection: 10m is longer than router.breaker_max_ejection (1m)",
        "router.breaker_failures: 0 is out of range",
        "router.max_batch_payload: 1024 is out of range",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
    assert_eq!(report.lines().count(), 5, "{report}");
    // The defaults are consistent, and a region file may tune them.
    let f = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[router]\nbreaker_failures = 3\nthrottle_retries = 0\nmax_deadline = \"1h\"\n",
    );
    let c = config::load(&f, &EnvSource::new()).unwrap();
    assert_eq!(c.router.breaker_failures, 3);
    assert_eq!(c.router.throttle_retries, 0);
    assert_eq!(c.router.max_deadline, std::time::Duration::from_secs(3600));
    assert_eq!(c.router.max_batch_payload, 32 * 1024 * 1024);
}

#[test]
fn syntax_errors_name_the_file() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(&d, "us-east-1.toml", "region = \"us-east-1\n");
    let err = config::load(&f, &EnvSource::new()).unwrap_err();
    assert!(
        err.report().contains(&f.display().to_string()),
        "{}",
        err.report()
    );
}

fn failoverd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_failoverd"))
}

#[test]
fn check_config_exits_78_and_names_all_three_problems() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "ap-south-1.toml",
        "region = \"ap-south-1\"\nbogus_key = 1\n[timings]\npoll_interval = \"fast\"\n",
    );
    let out = failoverd()
        .args(["check-config", "--config"])
        .arg(&f)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus_key: unknown key"), "{err}");
    assert!(
        err.contains("timings.poll_interval: \"fast\" is not a duration"),
        "{err}"
    );
    assert!(
        err.contains("region: local region \"ap-south-1\" is missing from the region list"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn check_config_prints_the_resolved_config_with_secrets_redacted() {
    let d = tempdir();
    write(
        &d,
        "base.toml",
        &BASE.replace(
            "https://a.example/ping",
            "https://user:hunter2@a.example/ping",
        ),
    );
    let f = write(&d, "us-east-1.toml", "region = \"us-east-1\"\n");
    let out = failoverd()
        .args(["check-config", "--config"])
        .arg(&f)
        .env_clear()
        .env("FAILOVERD__TIMINGS__POLL_INTERVAL", "2s")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("poll_interval = \"2s\""), "{text}");
    assert!(text.contains("https://***@a.example/ping"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // The printed form is itself valid TOML.
    text.parse::<toml::Table>().unwrap();
}

#[test]
fn strong_mode_needs_one_mrsc_region_set() {
    let d = tempdir();
    // Three serving regions across two region sets, strong, and no replica
    // list: the table this describes cannot exist.
    let three = BASE.replace("witness = \"us-east-2\"\n", "")
        + r#"
[[regions]]
name = "eu-west-1"
priority = 3
probe_urls = ["https://c.example/ping"]
state_machine_arn = "arn:aws:states:eu-west-1:111122223333:stateMachine:f"
sagemaker = { provisioned = "p" }
"#;
    write(&d, "base.toml", &three);
    let f = write(&d, "eu-west-1.toml", "region = \"eu-west-1\"\n");
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    assert!(
        report.contains("tables.replicas")
            && report.contains("[\"eu-west-1\"] are outside the US set"),
        "{report}"
    );
    // Listing the US replicas is not enough: eu-west-1's daemon has none.
    let env = |pairs: &[(&str, &str)]| -> EnvSource {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let with_replicas = |t: &str| {
        t.replace(
            "routing = \"r\"\n",
            "routing = \"r\"\nreplicas = [\"us-east-1\", \"us-west-2\", \"us-east-2\"]\n",
        )
    };
    write(&d, "base.toml", &with_replicas(&three));
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    assert!(
        report.contains("regions[2]") && report.contains("control_replica"),
        "{report}"
    );
    // ...pointing it at a replica inside the set is, once its failovers run
    // in a replica region's workflow (it has no table for one of its own).
    let regional = three
        .replace(
            "name = \"eu-west-1\"\npriority = 3",
            "name = \"eu-west-1\"\npriority = 3\ncontrol_replica = \"us-east-1\"",
        )
        .replace(
            "arn:aws:states:eu-west-1:111122223333:stateMachine:f",
            "arn:aws:states:us-east-1:111122223333:stateMachine:f",
        );
    write(&d, "base.toml", &with_replicas(&regional));
    let cfg = config::load(&f, &EnvSource::new()).unwrap();
    assert_eq!(cfg.control_region_for("eu-west-1"), "us-east-1");
    assert_eq!(cfg.control_region_for("us-west-2"), "us-west-2");
    // Eventual mode has no region sets.
    let eventual = env(&[("FAILOVERD__TABLES__CONSISTENCY", "eventual")]);
    write(&d, "base.toml", &three);
    assert!(config::load(&f, &eventual).is_ok());
    // Two replicas need a witness under MRSC.
    write(
        &d,
        "base.toml",
        &BASE.replace("witness = \"us-east-2\"\n", ""),
    );
    let f2 = write(&d, "us-west-2.toml", "region = \"us-west-2\"\n");
    let report = config::load(&f2, &EnvSource::new()).unwrap_err().report();
    assert!(report.contains("two and a witness"), "{report}");
}

/// The witness topology: two replicas, and a third serving region (the
/// MRSC witness) whose daemon uses a replica elsewhere. Step Functions runs
/// the workflow's DynamoDB tasks only in its own region, so that region's
/// own workflow would write a table that does not exist there: check-config
/// refuses it, naming the file and the key, and accepts a replica region's
/// state machine (config/workflow.rs, "Where the workflow runs").
#[test]
fn a_region_without_a_replica_runs_its_failovers_in_a_replica_regions_workflow() {
    let d = tempdir();
    let own = "arn:aws:states:us-east-2:111122223333:stateMachine:f";
    let fleet = |arn: &str, tables: &str| {
        BASE.replace("witness = \"us-east-2\"\n", tables)
            + &format!(
                r#"
[[regions]]
name = "us-east-2"
priority = 3
control_replica = "us-east-1"
probe_urls = ["https://c.example/ping"]
state_machine_arn = "{arn}"
sagemaker = {{ serverless = "s" }}
"#
            )
    };
    let witness = "witness = \"us-east-2\"\nreplicas = [\"us-east-1\", \"us-west-2\"]\n";
    let base = write(&d, "base.toml", &fleet(own, witness));
    let f = write(&d, "us-east-2.toml", "region = \"us-east-2\"\n");
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    let line = report
        .lines()
        .find(|l| l.contains("regions[2].state_machine_arn"))
        .unwrap_or_else(|| panic!("the key is named: {report}"));
    assert!(
        line.contains(&base.display().to_string()),
        "the file is named: {report}"
    );
    assert!(
        line.contains("us-east-2 (the MRSC witness) holds no replica")
            && line.contains("DeployWorkflow=false")
            && line.contains("us-east-1's"),
        "{report}"
    );
    // Every other region's daemon refuses it too: it is a fleet setting.
    let f1 = write(&d, "us-east-1.toml", "region = \"us-east-1\"\n");
    assert!(config::load(&f1, &EnvSource::new()).is_err());

    // A replica region's state machine: either one under MRSC.
    for replica in ["us-east-1", "us-west-2"] {
        let arn = format!("arn:aws:states:{replica}:111122223333:stateMachine:f");
        write(&d, "base.toml", &fleet(&arn, witness));
        let cfg = config::load(&f, &EnvSource::new())
            .unwrap_or_else(|e| panic!("{replica}: {}", e.report()));
        assert_eq!(cfg.local().state_machine_arn, arn);
    }

    // MREC: conditions are evaluated in the local replica only, so the
    // workflow must write the replica the daemon claims on (us-east-1).
    let mrec = "consistency = \"eventual\"\nreplicas = [\"us-east-1\", \"us-west-2\"]\n";
    write(
        &d,
        "base.toml",
        &fleet("arn:aws:states:us-west-2:111122223333:stateMachine:f", mrec),
    );
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    assert!(
        report.contains("regions[2].state_machine_arn")
            && report.contains("claims failovers in the replica in us-east-1"),
        "{report}"
    );
    write(
        &d,
        "base.toml",
        &fleet("arn:aws:states:us-east-1:111122223333:stateMachine:f", mrec),
    );
    config::load(&f, &EnvSource::new()).unwrap();
}

/// [`BASE`] with a third region: a fleet that may fail over automatically.
fn three_regions() -> String {
    BASE.replace("witness = \"us-east-2\"\n", "")
        + r#"
[[regions]]
name = "us-east-2"
priority = 3
probe_urls = ["https://c.example/ping"]
state_machine_arn = "arn:aws:states:us-east-2:111122223333:stateMachine:f"
sagemaker = { serverless = "s" }
"#
}

#[test]
fn the_approval_gate_is_configured_and_checked() {
    use failoverd::core::plan::{Approval, OnApprovalTimeout};
    use failoverd::core::tier::Tier;
    let d = tempdir();
    write(&d, "base.toml", &three_regions());
    // Defaults: no approval, 15 minutes, expire.
    let f = write(&d, "us-east-1.toml", "region = \"us-east-1\"\n");
    let cfg = config::load(&f, &EnvSource::new()).unwrap();
    assert_eq!(cfg.policy.approval, Approval::None);
    assert_eq!(cfg.policy.approval_timeout.as_secs(), 15 * 60);
    assert_eq!(cfg.policy.on_approval_timeout, OnApprovalTimeout::Expire);
    assert_eq!(cfg.fleet_approval(), Approval::None);
    // Manual from the environment (as the lab sets it); a tier override.
    let f = write(
        &d,
        "us-west-2.toml",
        "region = \"us-west-2\"\n[policy]\napproval_timeout = \"2m\"\non_approval_timeout = \"proceed\"\napproval_by_tier = { tier1 = \"none\" }\n",
    );
    let env: EnvSource = [(
        "FAILOVERD__POLICY__APPROVAL".to_string(),
        "manual".to_string(),
    )]
    .into();
    let cfg = config::load(&f, &env).unwrap();
    assert_eq!(cfg.policy.approval, Approval::Manual);
    assert_eq!(cfg.policy.approval_for(Tier::Tier1), Approval::None);
    assert_eq!(cfg.policy.approval_for(Tier::Tier2), Approval::Manual);
    // No models: the default tier (tier2) governs.
    assert_eq!(cfg.fleet_approval(), Approval::Manual);
    assert_eq!(cfg.policy.approval_timeout.as_secs(), 120);
    assert_eq!(cfg.policy.on_approval_timeout, OnApprovalTimeout::Proceed);
    // Bad values: every one reported with its file and key.
    let f = write(
        &d,
        "eu-west-1.toml",
        "region = \"eu-west-1\"\n[policy]\napproval = \"sometimes\"\napproval_timeout = \"1s\"\non_approval_timeout = \"shrug\"\napproval_by_tier = { tier9 = \"none\", tier2 = \"maybe\" }\n",
    );
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    let file = f.display().to_string();
    for (key, says) in [
        ("policy.approval", "\"sometimes\" is not an approval rule"),
        ("policy.approval_timeout", "out of range"),
        (
            "policy.on_approval_timeout",
            "\"shrug\" is not a timeout rule",
        ),
        ("policy.approval_by_tier.tier9", "\"tier9\" is not a tier"),
        (
            "policy.approval_by_tier.tier2",
            "\"maybe\" is not an approval rule",
        ),
    ] {
        assert!(
            report.lines().any(|l| l.contains(&file)
                && l.contains(&format!(": {key}: "))
                && l.contains(says)),
            "no line for {key} ({says}) in:\n{report}"
        );
    }
}

/// Run `failoverd` with `args` and only `env`; (exit code, stdout, stderr).
fn run_with(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = failoverd()
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_config(f: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    run_with(
        &["check-config".as_ref(), "--config".as_ref(), f.as_os_str()],
        env,
    )
}

/// Issue 19, item 8: at a poll interval of 36 s or more the prepare step's
/// heartbeat (every third of a claim lease of five poll intervals) comes
/// later than the workflow's HeartbeatSeconds 60, and every slow prepare
/// aborts. check-config and daemon start refuse it, naming the key, the
/// workflow's figure, the derived period and the bound; just under it,
/// with no heartbeat to spare, it is a warning.
#[test]
fn a_prepare_heartbeat_later_than_the_workflows_is_refused() {
    let d = tempdir();
    write(&d, "base.toml", &three_regions());
    let f = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[timings]\npoll_interval = \"40s\"\nlease = \"2m\"\nvote_freshness = \"2m\"\n",
    );
    let (code, out, err) = check_config(&f, &[]);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(out.is_empty(), "{out}");
    let line = err
        .lines()
        .find(|l| l.contains("timings.poll_interval:"))
        .unwrap_or_else(|| panic!("no line for timings.poll_interval in:\n{err}"));
    for part in [
        f.display().to_string().as_str(),
        "40s makes the prepare step heartbeat every 66.7s",
        "HeartbeatSeconds 60 (PrepareTarget in deploy/statemachines/failover.asl.json)",
        "keep timings.poll_interval under 36s",
    ] {
        assert!(line.contains(part), "no {part:?} in {line}");
    }
    // The daemon refuses it before binding anything.
    let (code, _, err) = run_with(&["run".as_ref(), "--config".as_ref(), f.as_os_str()], &[]);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(
        err.contains("66.7s") && err.contains("not starting"),
        "{err}"
    );
    // At 36 s the period is 60 s, the workflow's limit itself: refused.
    let (code, _, err) = check_config(&f, &[("FAILOVERD__TIMINGS__POLL_INTERVAL", "36s")]);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(
        err.contains("environment (FAILOVERD__TIMINGS__POLL_INTERVAL)"),
        "{err}"
    );
    // Under it: valid, with a warning that one lost heartbeat aborts.
    let (code, out, err) = check_config(&f, &[("FAILOVERD__TIMINGS__POLL_INTERVAL", "30s")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("poll_interval = \"30s\""), "{out}");
    assert!(
        err.lines().any(|l| l.starts_with("warning: ")
            && l.contains("timings.poll_interval: 30s makes the prepare step heartbeat every 50s")
            && l.contains("at most 18s")),
        "{err}"
    );
    // At 18 s there is a heartbeat to spare: nothing to say.
    let (code, _, err) = check_config(&f, &[("FAILOVERD__TIMINGS__POLL_INTERVAL", "18s")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("timings.poll_interval"), "{err}");
}

/// The claim lease the bound is derived from is the token desk's own.
#[test]
fn the_checked_claim_lease_is_the_token_desks() {
    let d = tempdir();
    write(&d, "base.toml", &three_regions());
    let f = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[timings]\nlease = \"2m\"\nvote_freshness = \"2m\"\n",
    );
    for poll in ["100ms", "1s", "2s", "5s", "18s", "35s"] {
        let env: EnvSource = [(
            "FAILOVERD__TIMINGS__POLL_INTERVAL".to_string(),
            poll.to_string(),
        )]
        .into();
        let cfg = config::load(&f, &env).unwrap_or_else(|e| panic!("{poll}: {}", e.report()));
        assert_eq!(
            cfg.timings.token_claim_lease().as_millis() as u64,
            failoverd::control::tokens::claim_lease(&cfg),
            "poll {poll}"
        );
    }
}

/// Without a provisioned endpoint the prepare step only warms up, but the
/// record still stands still meanwhile: the warm-up plus the callback and
/// the workflow's retries must fit the stuck rule (the tier2 scale-up's
/// own rule, config/cost.rs, covers fleets with provisioned endpoints).
#[test]
fn the_warm_up_must_fit_the_stuck_rule() {
    let d = tempdir();
    write(
        &d,
        "base.toml",
        &three_regions().replace("provisioned = \"p\"", "serverless = \"s\""),
    );
    let f = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[timings]\nprepare_budget = \"100s\"\nstuck_failover = \"3m\"\n",
    );
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    assert!(
        report.contains("timings.prepare_budget: 1m 40s plus 1m 30s for the callback and the workflow's retries exceeds timings.stuck_failover (3m)")
            && report.contains("raise timings.stuck_failover to at least 3m 10s or lower timings.prepare_budget to at most 1m 30s"),
        "{report}"
    );
    assert_eq!(report.lines().count(), 1, "{report}");
    let env: EnvSource = [(
        "FAILOVERD__TIMINGS__PREPARE_BUDGET".to_string(),
        "90s".to_string(),
    )]
    .into();
    config::load(&f, &env).unwrap();
}

/// What works until one fault loads, with a warning naming both keys;
/// check-config prints it on stderr and exits 0.
#[test]
fn constraints_that_hold_until_a_fault_are_warnings() {
    let d = tempdir();
    // Two probe URLs of 6 s each: while a region black-holes them a round
    // lasts 12 s, so votes and the lease need 24 s.
    let f = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[timings]\nvote_freshness = \"20s\"\nlease = \"20s\"\nstart_timeout = \"20s\"\nabort_retry = \"20m\"\nshutdown_grace = \"40s\"\n",
    );
    let two_probes = three_regions().replace(
        "probe_urls = [\"https://a.example/ping\"]",
        "probe_urls = [\"https://a.example/ping\", \"https://a.example/health\"]",
    );
    write(&d, "base.toml", &two_probes);
    let cfg = config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()));
    let keys: Vec<&str> = cfg.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "timings.vote_freshness",
            "timings.lease",
            "timings.start_timeout",
            "timings.abort_retry",
            "timings.shutdown_grace"
        ],
        "{:#?}",
        cfg.warnings
    );
    let (code, _, err) = check_config(&f, &[]);
    assert_eq!(code, Some(0), "{err}");
    let file = f.display().to_string();
    for (key, says) in [
        ("timings.vote_freshness", "regions[0]'s 2 URL(s)"),
        (
            "timings.vote_freshness",
            "health.probe_connect_timeout + health.probe_response_timeout (4s + 2s)",
        ),
        (
            "timings.vote_freshness",
            "raise timings.vote_freshness to at least 24s",
        ),
        ("timings.lease", "raise timings.lease to at least 24s"),
        (
            "timings.start_timeout",
            "23s the workflow's first step (MarkFailingOver",
        ),
        (
            "timings.abort_retry",
            "longer than timings.min_failover_interval (10m)",
        ),
        (
            "timings.shutdown_grace",
            "TimeoutStopSec=45s (systemd/failoverd@.service)",
        ),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("warning: {file}: {key}: ")) && l.contains(says)),
            "no warning for {key} ({says}) in:\n{err}"
        );
    }
    // The shipped fleets have nothing to warn about.
    for dir in ["regions", "regions/lab"] {
        for f in region_files(&common::root().join(dir)) {
            let cfg = config::load(&f, &EnvSource::new()).unwrap();
            assert!(
                cfg.warnings.is_empty(),
                "{}: {:#?}",
                f.display(),
                cfg.warnings
            );
        }
    }
}

/// Issue 19, item 6: a fleet of two voting regions (two replicas and a
/// witness) cannot fail over automatically when a region is lost, so
/// check-config and daemon start refuse automatic mode for it, saying why
/// and pointing at manual approval; left unset, approval is "manual" there.
#[test]
fn a_two_region_fleet_is_refused_automatic_failover() {
    use failoverd::core::plan::Approval;
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[policy]\napproval = \"none\"\n",
    );
    let (code, _, err) = check_config(&f, &[]);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains(": policy.approval: "))
        .unwrap_or_else(|| panic!("no line for policy.approval in:\n{err}"));
    for part in [
        f.display().to_string().as_str(),
        "a fleet of 2 voting regions ([[regions]]: us-east-1, us-west-2)",
        "a majority of all regions (2 of 2)",
        "cannot tell a dead peer from a partition",
        "policy.approval = \"manual\"",
        "failoverd failover --to REGION --force",
    ] {
        assert!(line.contains(part), "no {part:?} in {line}");
    }
    let (code, _, err) = run_with(&["run".as_ref(), "--config".as_ref(), f.as_os_str()], &[]);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(
        err.contains("2 of 2") && err.contains("not starting"),
        "{err}"
    );
    // A tier override that makes the governing tier automatic is named.
    let by_tier = write(
        &d,
        "us-west-2.toml",
        "region = \"us-west-2\"\n[policy]\napproval = \"manual\"\napproval_by_tier = { tier2 = \"none\" }\n",
    );
    let report = config::load(&by_tier, &EnvSource::new())
        .unwrap_err()
        .report();
    assert!(
        report.contains("policy.approval_by_tier.tier2: \"none\" asks for automatic failover"),
        "{report}"
    );
    // Manual approval whose proposals proceed unattended is automatic too.
    let proceed = write(
        &d,
        "us-west-2.toml",
        "region = \"us-west-2\"\n[policy]\napproval = \"manual\"\non_approval_timeout = \"proceed\"\n",
    );
    let report = config::load(&proceed, &EnvSource::new())
        .unwrap_err()
        .report();
    assert!(
        report.contains("policy.on_approval_timeout: \"proceed\""),
        "{report}"
    );
    // Left unset: manual, said in a warning.
    let unset = write(&d, "us-west-2.toml", "region = \"us-west-2\"\n");
    let cfg = config::load(&unset, &EnvSource::new()).unwrap();
    assert_eq!(cfg.policy.approval, Approval::Manual);
    assert_eq!(cfg.fleet_approval(), Approval::Manual);
    let (code, out, err) = check_config(&unset, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("approval = \"manual\""), "{out}");
    assert!(
        err.contains("policy.approval: not set, so \"manual\""),
        "{err}"
    );
    // Where nothing is automatic anyway (eventual mode, every model tier3),
    // "none" is accepted: there is no automatic failover to refuse.
    let eventual: EnvSource = [(
        "FAILOVERD__TABLES__CONSISTENCY".to_string(),
        "eventual".to_string(),
    )]
    .into();
    config::load(&f, &eventual).unwrap();
    let tier3: EnvSource = [(
        "FAILOVERD__COST__DEFAULT_TIER".to_string(),
        "tier3".to_string(),
    )]
    .into();
    config::load(&f, &tier3).unwrap();
    // Three voting regions may fail over automatically.
    write(&d, "base.toml", &three_regions());
    let cfg = config::load(&f, &EnvSource::new()).unwrap();
    assert_eq!(cfg.fleet_approval(), Approval::None);
}

/// Issue 19, item 1 (the check-config part): several region files are each
/// validated and compared on the settings a fleet must share; a file that
/// differs is named with the groups and keys that differ.
#[test]
fn check_config_compares_a_fleets_region_files() {
    // The shipped fleets agree (the glob names base.toml too: skipped).
    for dir in ["regions", "regions/lab"] {
        let mut args: Vec<std::ffi::OsString> = vec!["check-config".into()];
        let mut files: Vec<PathBuf> = std::fs::read_dir(common::root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        args.extend(files.into_iter().map(PathBuf::into_os_string));
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, out, err) = run_with(&args, &[]);
        assert_eq!(code, Some(0), "{dir}: {err}");
        assert!(
            out.contains("3 region files agree on the fleet's settings: fingerprint "),
            "{out}"
        );
        assert!(err.contains("base.toml skipped"), "{err}");
    }
    // A copy of the lab's fleet in which one file changes two settings.
    let d = tempdir();
    for f in std::fs::read_dir(common::root().join("regions/lab")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, d.join(f.file_name().unwrap())).unwrap();
    }
    let odd = d.join("eu-west-1.toml");
    let text = std::fs::read_to_string(&odd).unwrap();
    std::fs::write(
        &odd,
        format!("{text}\n[timings]\nlease = \"5s\"\n[policy]\nwait_out_lease = false\n"),
    )
    .unwrap();
    let files: Vec<PathBuf> = ["us-east-1", "eu-west-1", "us-west-2"]
        .iter()
        .map(|r| d.join(format!("{r}.toml")))
        .collect();
    let mut args: Vec<&std::ffi::OsStr> = vec!["check-config".as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let (code, out, err) = run_with(&args, &[]);
    assert_eq!(code, Some(EX_CONFIG), "{out}\n{err}");
    // Each file is valid on its own.
    assert_eq!(out.matches(": valid (region ").count(), 3, "{out}");
    let odd = odd.display().to_string();
    assert!(
        err.lines().any(
            |l| l.starts_with(&format!("error: {odd}: fleet settings differ from "))
                && l.contains(&files[0].display().to_string())
                && l.contains(&files[2].display().to_string())
                && l.ends_with("in: timings, policy")
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: {odd}: timings: timings.lease = 5000ms, but 4000ms in {}",
            files[0].display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: {odd}: policy: policy.wait_out_lease = false, but true in"
        )),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        3,
        "{err}"
    );
    // The same file twice is two daemons for one region.
    let (code, _, err) = run_with(
        &[
            "check-config".as_ref(),
            files[0].as_os_str(),
            files[0].as_os_str(),
        ],
        &[],
    );
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(err.contains("are all for region us-east-1"), "{err}");
    // One invalid file fails the set, and is named.
    std::fs::write(&files[2], "region = \"us-west-2\"\nbogus = 1\n").unwrap();
    let (code, _, err) = run_with(&args, &[]);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(err.contains("bogus: unknown key"), "{err}");
}

/// Issue 19 (reload semantics): a reload keeps the restart-only settings in
/// force and names them; everything else is taken.
#[test]
fn a_reload_holds_restart_only_settings_and_names_them() {
    let f = common::root().join("regions/lab/us-east-1.toml");
    let current = config::load(&f, &EnvSource::new()).unwrap();
    let mut new = config::load(&f, &EnvSource::new()).unwrap();
    assert!(new.hold_restart_only(&current).is_empty());
    new.tables.control = "another-table".into();
    new.timings.lease *= 2;
    let pending = new.hold_restart_only(&current);
    assert_eq!(pending, ["tables"]);
    assert_eq!(new.tables, current.tables, "the table in force stays");
    assert_eq!(
        new.timings.lease,
        current.timings.lease * 2,
        "the rest is taken"
    );
}

/// `router.threads`: one per core unless set; a count from 1 to 1024, named
/// with its source when out of range; restart-only (the threads start with
/// the router).
#[test]
fn router_threads_is_a_count_one_per_core_by_default_and_restart_only() {
    let f = common::root().join("regions/lab/us-east-1.toml");
    let current = config::load(&f, &EnvSource::new()).unwrap();
    assert_eq!(current.router.threads, None);
    let env =
        |v: &str| EnvSource::from([("FAILOVERD__ROUTER__THREADS".to_string(), v.to_string())]);
    let mut new = config::load(&f, &env("2")).unwrap();
    assert_eq!(new.router.threads, Some(2));
    for bad in ["0", "1025"] {
        let report = config::load(&f, &env(bad)).unwrap_err().report();
        assert!(
            report.contains("FAILOVERD__ROUTER__THREADS")
                && report.contains(&format!("router.threads: {bad} is out of range")),
            "{report}"
        );
    }
    assert_eq!(new.hold_restart_only(&current), ["router.threads"]);
    assert_eq!(new.router.threads, None, "the count in force stays");
}
