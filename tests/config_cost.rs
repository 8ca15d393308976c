//! The `[cost]` section: defaults that keep today's behaviour, tiers per
//! model, schedules per provisioned endpoint, and every combination that
//! cannot hold refused with its file and key.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use failoverd::config::{self, EX_CONFIG, EnvSource, Environment};
use failoverd::core::tier::Tier;

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(common::unique("failoverd-config-cost"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
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
sagemaker = { provisioned = "prov-east", serverless = "s" }
[[regions]]
name = "us-west-2"
priority = 2
health_check_ids = ["hc"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
sagemaker = { provisioned = "prov-west", serverless = "s" }
[[models]]
name = "fraud"
[[models]]
name = "chat"
traffic_class = "serverless_preferred"
"#;

/// Write BASE as base.toml and `region_file` as us-east-1.toml; load.
fn load(
    region_file: &str,
    env: &[(&str, &str)],
) -> (PathBuf, Result<config::Config, config::ConfigError>) {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        &format!("region = \"us-east-1\"\n{region_file}"),
    );
    let env: EnvSource = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = config::load(&f, &env);
    (f, r)
}

/// Assert that the report has a line for `key` from `origin` containing `text`.
fn has(report: &str, origin: &str, key: &str, text: &str) {
    assert!(
        report
            .lines()
            .any(|l| l.contains(origin) && l.contains(&format!(": {key}: ")) && l.contains(text)),
        "no line for {key} from {origin} with {text:?} in:\n{report}"
    );
}

#[test]
fn without_a_cost_section_nothing_changes() {
    let (_, r) = load("", &[]);
    let c = r.unwrap().cost;
    assert_eq!(c.environment, Environment::Production);
    assert_eq!(c.default_tier, Tier::Tier2, "automatic failover, as before");
    assert_eq!(c.tier_of("fraud"), Tier::Tier2);
    assert!(!c.idle.enabled, "idle detection is turned on on purpose");
    assert_eq!(
        c.idle.window,
        Duration::from_secs(3600),
        "the seed's 60 minutes"
    );
    assert!(!c.idle.stop_outside_production);
    assert_eq!(
        c.prepare_budget,
        Duration::from_secs(3 * 60),
        "with the warm-up's 30 s, fills the 5-minute stuck rule"
    );
    assert_eq!(c.interval, Duration::from_secs(60));
    assert!(c.schedules.is_empty());
    assert_eq!(c.advise.business_hours.timezone, "America/New_York");
    assert_eq!(c.advise.thresholds.steady_per_minute, 500);
    assert_eq!(c.advise.thresholds.sporadic_per_hour, 50);
    assert_eq!(
        c.advise.thresholds.batch_payload_bytes,
        4 * 1024 * 1024,
        "the router's threshold"
    );
    let p = c.idle_policy();
    assert!(p.production && p.window_ms == 3_600_000);
}

#[test]
fn a_full_cost_section_loads() {
    let (_, r) = load(
        r#"
[cost]
environment = "staging"
default_tier = "tier3"
prepare_budget = "10m"
interval = "30s"
[cost.tiers]
fraud = "tier1"
[cost.idle]
enabled = true
window = "90m"
stop_outside_production = true
[[cost.schedules]]
endpoint = "prov-east"
timezone = "America/New_York"
off_hours_min = 1
windows = [
  { days = "MON-FRI", start = "09:00", end = "18:00", min = 2 },
  { days = "SAT", start = "22:00", end = "02:00", min = 3 },
]
[[cost.schedules]]
endpoint = "prov-west"
timezone = "Europe/London"
windows = [{ days = "*", start = "00:00", end = "24:00", min = 2 }]
[cost.advise]
timezone = "Europe/London"
days = "MON-SAT"
start = "08:00"
end = "20:00"
steady_requests_per_minute = 800
off_hours_ratio = 0.1
idle_gap = "30m"
"#,
        &[("FAILOVERD__TIMINGS__STUCK_FAILOVER", "12m")],
    );
    let c = r.unwrap_or_else(|e| panic!("{}", e.report())).cost;
    assert_eq!(c.environment, Environment::Staging);
    assert_eq!(c.prepare_budget, Duration::from_secs(600));
    assert_eq!(c.interval, Duration::from_secs(30));
    assert_eq!(c.tier_of("fraud"), Tier::Tier1);
    assert_eq!(c.tier_of("chat"), Tier::Tier3, "the default");
    assert!(c.idle.enabled && c.idle.stop_outside_production);
    assert!(!c.idle_policy().production);
    let east = c.schedule_for("prov-east").unwrap();
    assert_eq!(east.windows.len(), 2);
    // Monday 2025-01-06 15:00 UTC = 10:00 in New York.
    assert_eq!(east.at(1_736_175_600_000).min, 2);
    assert_eq!(
        c.schedule_for("prov-west").unwrap().off_hours_min,
        1,
        "default 1"
    );
    assert_eq!(c.advise.thresholds.steady_per_minute, 800);
    assert_eq!(c.advise.thresholds.idle_gap_minutes, 30);
}

#[test]
fn tier1_with_eventual_consistency_is_refused_naming_the_key() {
    let (f, r) = load(
        "[tables]\nconsistency = \"eventual\"\n[cost]\ndefault_tier = \"tier1\"\n[cost.tiers]\nfraud = \"tier1\"\nchat = \"tier2\"\n",
        &[],
    );
    let report = r.unwrap_err().report();
    let file = f.display().to_string();
    has(
        &report,
        &file,
        "cost.default_tier",
        "needs tables.consistency = \"strong\"",
    );
    has(
        &report,
        &file,
        "cost.tiers.fraud",
        "tier1 (warm standby) needs tables.consistency",
    );
    assert_eq!(report.lines().count(), 2, "{report}");

    // The same through the environment: the variable is named.
    let (_, r) = load(
        "[tables]\nconsistency = \"eventual\"\n",
        &[("FAILOVERD__COST__DEFAULT_TIER", "tier1")],
    );
    let report = r.unwrap_err().report();
    has(
        &report,
        "environment (FAILOVERD__COST__DEFAULT_TIER)",
        "cost.default_tier",
        "needs tables.consistency",
    );

    // Strong consistency makes the same tiers valid.
    let (_, r) = load("[cost]\ndefault_tier = \"tier1\"\n", &[]);
    assert_eq!(r.unwrap().cost.tier_of("chat"), Tier::Tier1);
}

/// A tier2 scale-up must fit in the workflow's prepare task and under the
/// stuck rule; both keys are named, with the value each would need.
#[test]
fn the_prepare_budget_must_fit_the_workflow_timeout_and_the_stuck_rule() {
    let (f, r) = load("[cost]\nprepare_budget = \"10m\"\n", &[]);
    let report = r.unwrap_err().report();
    has(
        &report,
        &f.display().to_string(),
        "cost.prepare_budget",
        "exceeds timings.stuck_failover (5m): the daemons would settle a failover whose target is still scaling up; raise timings.stuck_failover to at least 12m or lower cost.prepare_budget to at most 3m",
    );
    assert_eq!(report.lines().count(), 1, "{report}");

    // Raising the stuck rule with it is enough, whichever layer says so.
    let (_, r) = load(
        "[cost]\nprepare_budget = \"10m\"\n",
        &[("FAILOVERD__TIMINGS__STUCK_FAILOVER", "12m")],
    );
    assert_eq!(r.unwrap().cost.prepare_budget, Duration::from_secs(600));

    // Past the workflow's TimeoutSeconds no stuck rule helps.
    let (_, r) = load(
        "[timings]\nstuck_failover = \"1h\"\n[cost]\nprepare_budget = \"15m\"\n",
        &[],
    );
    let report = r.unwrap_err().report();
    assert!(
        report.contains("cost.prepare_budget: 15m plus timings.prepare_budget (30s) and 30s for the callback is longer than the workflow's prepare task waits (PrepareTarget TimeoutSeconds = 900 in deploy/statemachines/failover.asl.json)")
            && report.contains("use at most 14m"),
        "{report}"
    );
    assert_eq!(report.lines().count(), 1, "{report}");

    // The warm-up's budget counts too.
    let (_, r) = load("[timings]\nprepare_budget = \"100s\"\n", &[]);
    let report = r.unwrap_err().report();
    assert!(
        report.contains("timings.prepare_budget (1m 40s)"),
        "{report}"
    );
}

/// Without a provisioned endpoint a prepare step scales nothing: the budget
/// is not checked against the stuck rule.
#[test]
fn without_provisioned_endpoints_the_budget_is_not_checked() {
    let d = tempdir();
    write(
        &d,
        "base.toml",
        &BASE
            .replace("provisioned = \"prov-east\", ", "")
            .replace("provisioned = \"prov-west\", ", ""),
    );
    let f = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[timings]\nstuck_failover = \"3m\"\n",
    );
    let c = config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()));
    assert!(c.regions.iter().all(|r| r.sagemaker.provisioned.is_none()));
    // The same file with a provisioned endpoint is refused.
    write(&d, "base.toml", BASE);
    assert!(config::load(&f, &EnvSource::new()).is_err());
}

#[test]
fn every_bad_cost_value_is_reported_with_file_and_key() {
    let (f, r) = load(
        r#"
[cost]
environment = "prod"
default_tier = "gold"
prepare_budget = "5s"
[cost.tiers]
nosuchmodel = "tier2"
[cost.idle]
window = "1m"
windw = "5m"
[[cost.schedules]]
endpoint = "s"
timezone = "America/NewYork"
off_hours_min = 0
windows = [
  { days = "weekdays", start = "9", end = "25:00", min = 0 },
  { days = "MON", start = "10:00", end = "10:00", min = 2 },
]
[[cost.schedules]]
endpoint = "prov-east"
timezone = "UTC"
windows = []
[[cost.schedules]]
endpoint = "prov-east"
timezone = "UTC"
windows = [{ days = "MON", start = "10:00", end = "11:00", min = 2 }]
[cost.advise]
timezone = "Moon/Base"
off_hours_ratio = 2.0
"#,
        &[],
    );
    let report = r.unwrap_err().report();
    let file = f.display().to_string();
    for (key, text) in [
        ("cost.environment", "\"prod\" is not an environment"),
        ("cost.default_tier", "\"gold\" is not a DR tier"),
        ("cost.prepare_budget", "out of range"),
        (
            "cost.tiers.nosuchmodel",
            "no model \"nosuchmodel\" in [[models]]",
        ),
        ("cost.idle.window", "out of range"),
        ("cost.idle.windw", "unknown key"),
        (
            "cost.schedules[0].endpoint",
            "is no region's sagemaker.provisioned endpoint",
        ),
        (
            "cost.schedules[0].timezone",
            "\"America/NewYork\" is not an IANA time zone",
        ),
        (
            "cost.schedules[0].off_hours_min",
            "only inference components scale to zero",
        ),
        (
            "cost.schedules[0].windows[0].days",
            "\"weekdays\" is not a set of days",
        ),
        (
            "cost.schedules[0].windows[0].start",
            "\"9\" is not a time of day",
        ),
        (
            "cost.schedules[0].windows[0].end",
            "\"25:00\" is not a time of day",
        ),
        ("cost.schedules[0].windows[0].min", "at least one instance"),
        ("cost.schedules[0].windows[1].start", "ambiguous"),
        ("cost.schedules[1].windows", "no windows"),
        ("cost.schedules[2].endpoint", "already has a schedule"),
        (
            "cost.advise.timezone",
            "\"Moon/Base\" is not an IANA time zone",
        ),
        ("cost.advise.off_hours_ratio", "out of range"),
    ] {
        has(&report, &file, key, text);
    }
    assert_eq!(report.lines().count(), 18, "{report}");
}

#[test]
fn check_config_exits_78_on_a_cost_problem_and_prints_the_section_when_valid() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let bad = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[tables]\nconsistency = \"eventual\"\n[cost.tiers]\nfraud = \"tier1\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["check-config", "--config"])
        .arg(&bad)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}: cost.tiers.fraud: tier1", bad.display())),
        "{err}"
    );

    let good = write(
        &d,
        "us-east-1.toml",
        "region = \"us-east-1\"\n[cost.tiers]\nfraud = \"tier1\"\n[[cost.schedules]]\nendpoint = \"prov-east\"\ntimezone = \"Europe/London\"\nwindows = [{ days = \"MON-FRI\", start = \"09:00\", end = \"18:00\", min = 2 }]\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["check-config", "--config"])
        .arg(&good)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let cost = &parsed["cost"];
    assert_eq!(cost["tiers"]["fraud"].as_str(), Some("tier1"), "{text}");
    assert_eq!(
        cost["schedules"][0]["timezone"].as_str(),
        Some("Europe/London"),
        "{text}"
    );
    assert_eq!(
        cost["schedules"][0]["windows"][0]["days"].as_str(),
        Some("MON,TUE,WED,THU,FRI"),
        "{text}"
    );
}

#[test]
fn the_per_instance_capacity_is_optional_and_validated() {
    let (_, r) = load("", &[]);
    assert_eq!(r.unwrap().cost.instance_invocations_per_minute, None);
    let (_, r) = load("[cost]\ninstance_invocations_per_minute = 600\n", &[]);
    assert_eq!(r.unwrap().cost.instance_invocations_per_minute, Some(600));
    for bad in ["0", "-5", "10000001"] {
        let (f, r) = load(
            &format!("[cost]\ninstance_invocations_per_minute = {bad}\n"),
            &[],
        );
        let report = r.unwrap_err().report();
        has(
            &report,
            &f.display().to_string(),
            "cost.instance_invocations_per_minute",
            "",
        );
    }
}

/// Readiness's IAM dry run judges `cost.readiness_principal`'s policies:
/// unset (the daemon's own identity), or an IAM role's or user's ARN; an
/// assumed role's session, the account root or anything else is refused,
/// naming the file and the key.
#[test]
fn the_readiness_principal_is_an_iam_role_or_user() {
    let (_, r) = load("", &[]);
    assert_eq!(r.unwrap().cost.readiness_principal, None);
    for good in [
        "arn:aws:iam::111122223333:role/failoverd-daemon",
        "arn:aws:iam::111122223333:role/team/failoverd-daemon",
        "arn:aws-cn:iam::111122223333:user/ops",
    ] {
        let (_, r) = load(&format!("[cost]\nreadiness_principal = \"{good}\"\n"), &[]);
        assert_eq!(r.unwrap().cost.readiness_principal.as_deref(), Some(good));
    }
    for bad in [
        "arn:aws:sts::111122223333:assumed-role/failoverd-daemon/i-0abc",
        "arn:aws:iam::111122223333:root",
        "arn:aws:iam::1111:role/x",
        "failoverd-daemon",
    ] {
        let (f, r) = load(&format!("[cost]\nreadiness_principal = \"{bad}\"\n"), &[]);
        let report = r.unwrap_err().report();
        has(
            &report,
            &f.display().to_string(),
            "cost.readiness_principal",
            "is not an IAM role's or user's ARN",
        );
    }
}

/// `[cost.capacity_units]`: unset, every instance is one unit; each key an
/// instance type and each value a positive number of units, a problem
/// reported with the file (the table's) and the key (the type quoted).
#[test]
fn capacity_units_are_instance_types_with_positive_units() {
    let (_, r) = load("", &[]);
    assert!(!r.unwrap().cost.capacity_units.configured());
    let (_, r) = load(
        "[cost.capacity_units]\n\"ml.g5.2xlarge\" = 2\n\"ml.g5.xlarge\" = 1\n\"ml.inf2.xlarge\" = 0.5\n",
        &[],
    );
    let units = r
        .unwrap_or_else(|e| panic!("{}", e.report()))
        .cost
        .capacity_units;
    assert_eq!(units.of("ml.g5.2xlarge"), 2.0);
    assert_eq!(units.of("ml.inf2.xlarge"), 0.5);
    assert_eq!(
        units.of("ml.m5.large"),
        1.0,
        "a type not listed is one unit"
    );
    for (bad, key, says) in [
        (
            "\"ml.g5.xlarge\" = 0",
            "ml.g5.xlarge",
            "not a number of units",
        ),
        (
            "\"ml.g5.xlarge\" = -2",
            "ml.g5.xlarge",
            "not a number of units",
        ),
        ("\"ml.g5.xlarge\" = 20000", "ml.g5.xlarge", "at most 10000"),
        (
            "\"g5.xlarge\" = 2",
            "g5.xlarge",
            "not a SageMaker instance type",
        ),
    ] {
        let (f, r) = load(&format!("[cost.capacity_units]\n{bad}\n"), &[]);
        let report = r.unwrap_err().report();
        has(
            &report,
            &f.display().to_string(),
            &format!("cost.capacity_units.\"{key}\""),
            says,
        );
    }
    // Every bad entry at once, the good ones not reported.
    let (_, r) = load(
        "[cost.capacity_units]\n\"ml.g5.xlarge\" = 0\n\"p4d\" = 8\n\"ml.g5.2xlarge\" = 2\n",
        &[],
    );
    let report = r.unwrap_err().report();
    assert_eq!(
        report.matches("cost.capacity_units.").count(),
        2,
        "{report}"
    );
}
