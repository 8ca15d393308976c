//! `health.route53_source` (issue 23): where the daemons read Route 53's
//! view of the checks. The API stays the default and unchanged; the
//! CloudWatch metric is a choice, checked by check-config and daemon start
//! with the file and the key named, and part of the fleet's fingerprint.

// Tests run real processes on real time: the clock rules in clippy.toml
// are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use failoverd::config::{self, EX_CONFIG, EnvSource};
use failoverd::core::health::Route53Source;

const BASE: &str = r#"
[tables]
control = "c"
routing = "r"
[[regions]]
name = "us-east-1"
priority = 1
health_check_ids = ["hc-1"]
state_machine_arn = "arn:aws:states:us-east-1:111122223333:stateMachine:f"
sagemaker = { provisioned = "p" }
[[regions]]
name = "us-west-2"
priority = 2
health_check_ids = ["hc-2"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
sagemaker = { serverless = "s" }
[[regions]]
name = "us-east-2"
priority = 3
health_check_ids = ["hc-3"]
state_machine_arn = "arn:aws:states:us-east-2:111122223333:stateMachine:f"
sagemaker = { serverless = "s" }
"#;

fn fleet(health: &str) -> (PathBuf, PathBuf) {
    let d = std::env::temp_dir().join(common::unique("failoverd-r53src"));
    std::fs::create_dir_all(&d).unwrap();
    let base = d.join("base.toml");
    std::fs::write(&base, format!("{BASE}\n[health]\n{health}\n")).unwrap();
    let f = d.join("us-east-1.toml");
    std::fs::write(&f, "region = \"us-east-1\"\n").unwrap();
    (base, f)
}

fn load(f: &Path) -> config::Config {
    config::load(f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()))
}

#[test]
fn the_api_is_the_default_and_the_metric_is_a_choice() {
    let (_, f) = fleet("");
    let cfg = load(&f);
    assert_eq!(cfg.health.route53_source, Route53Source::Api);
    assert_eq!(cfg.health.route53_metric_period, Duration::from_secs(60));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    // The shipped choice for CloudWatch: a call every 20 s, one-minute period.
    let (_, f) = fleet("route53_source = \"cloudwatch\"\nroute53_calls_per_second = 0.05\n");
    let cfg = load(&f);
    assert_eq!(cfg.health.route53_source, Route53Source::CloudWatch);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    // Reading a one-minute metric 30 times a minute is money for nothing:
    // a warning that names the budget.
    let (_, f) = fleet("route53_source = \"cloudwatch\"\n");
    let cfg = load(&f);
    let keys: Vec<&str> = cfg.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["health.route53_calls_per_second"]);

    // A period Route 53 does not publish (the lab's): a warning, not an error.
    let (_, f) = fleet(
        "route53_source = \"cloudwatch\"\nroute53_metric_period = \"2s\"\nroute53_calls_per_second = 1\n",
    );
    let cfg = load(&f);
    let keys: Vec<&str> = cfg.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["health.route53_metric_period"]);
}

#[test]
fn check_config_names_the_file_and_the_key_of_a_bad_source() {
    let (base, f) = fleet("route53_source = \"metrics\"\nroute53_metric_period = \"1500ms\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["check-config", "--config"])
        .arg(&f)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = base.display().to_string();
    for key in ["health.route53_source", "health.route53_metric_period"] {
        assert!(
            err.lines()
                .any(|l| l.contains(&file) && l.contains(&format!(": {key}: "))),
            "no line for {key} from {file} in:\n{err}"
        );
    }
    assert!(err.contains("\"metrics\" is not a source"), "{err}");
    assert!(err.contains("must be whole seconds"), "{err}");
}

/// The source is shared by the fleet (one schedule, one way of counting a
/// reading): a region reading the metric while the others read the API is
/// configuration drift. A fleet on the API keeps the digest it had before
/// the setting existed, so an upgrade shows no drift.
#[test]
fn the_source_is_part_of_the_fleets_fingerprint_only_off_the_default() {
    use failoverd::config::fleet::Fingerprint;
    let digest = |health: &str| {
        let (_, f) = fleet(health);
        let cfg = load(&f);
        Fingerprint::of(&cfg)
    };
    let default = digest("");
    assert_eq!(
        default,
        digest("route53_source = \"api\"\nroute53_metric_period = \"5m\"\n")
    );
    let metric = digest("route53_source = \"cloudwatch\"\n");
    assert_ne!(default, metric);
    assert_ne!(
        metric,
        digest("route53_source = \"cloudwatch\"\nroute53_metric_period = \"120s\"\n")
    );
}
