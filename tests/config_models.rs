//! Per-model, per-region serving (`[models.regions.<region>]`,
//! config/serving.rs): the mapping resolves into one table, today's shape
//! is the default, and every bad mapping is named with its file and key,
//! by the loader and by `failoverd check-config`.

#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use failoverd::config::{self, EX_CONFIG, EnvSource, Via};
use failoverd::core::routing::Path as RoutePath;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(common::unique("failoverd-config-models"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two regions; us-west-2 has no shared endpoints at all.
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
sagemaker = { serverless = "shared-sl", provisioned = "shared-gpu", batch = "shared-async" }
[[regions]]
name = "us-west-2"
priority = 2
health_check_ids = ["hc"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
"#;

const GOOD_MODELS: &str = r#"
[[models]]
name = "fraud"
[models.regions.us-east-1]
provisioned = "fraud-use1"
batch = "fraud-async-use1"
[models.regions.us-west-2]
endpoint = "fraud-usw2"

[[models]]
name = "llm"
[models.regions.us-east-1]
endpoint = "gpu-use1"
inference_component = "llm-ic-use1"
[models.regions.us-west-2]
endpoint = "gpu-usw2"
inference_component = "llm-ic-usw2"

[[models]]
name = "legacy"
target_model = "legacy.tar.gz"
[models.regions.us-west-2]
provisioned = "mme-usw2"

[[models]]
name = "ab"
[models.regions.us-east-1]
target_variant = "blue"
[models.regions.us-west-2]
provisioned = "ab-usw2"
target_variant = "green"
"#;

#[test]
fn each_model_resolves_per_region_and_todays_shape_is_the_default() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        &format!("region = \"us-east-1\"\n{GOOD_MODELS}"),
    );
    let cfg = config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()));
    let m = |n: &str| cfg.models.iter().find(|m| m.name == n).unwrap();
    let at = |n: &str, r: usize, p: RoutePath| m(n).in_region(r).unwrap().path(p).cloned();

    // Own endpoints, named differently per region; no shared one inherited.
    let fraud = at("fraud", 0, RoutePath::Provisioned).unwrap();
    assert_eq!((fraud.endpoint.as_str(), &fraud.via), ("fraud-use1", &None));
    assert_eq!(fraud.key, "us-east-1/fraud-use1");
    assert!(at("fraud", 0, RoutePath::Serverless).is_none());
    assert_eq!(
        at("fraud", 0, RoutePath::Batch).unwrap().endpoint,
        "fraud-async-use1"
    );
    assert_eq!(
        at("fraud", 1, RoutePath::Provisioned).unwrap().endpoint,
        "fraud-usw2"
    );

    // An inference component: the provisioned path only, its own key.
    let llm = at("llm", 0, RoutePath::Provisioned).unwrap();
    assert_eq!(llm.endpoint, "gpu-use1");
    assert_eq!(llm.via, Some(Via::InferenceComponent("llm-ic-use1".into())));
    assert_eq!(llm.key, "us-east-1/gpu-use1/llm-ic-use1");
    assert_eq!(llm.header.as_ref().unwrap(), "llm-ic-use1");
    assert!(at("llm", 0, RoutePath::Serverless).is_none());
    assert!(at("llm", 0, RoutePath::Batch).is_none());
    assert_eq!(
        at("llm", 1, RoutePath::Provisioned).unwrap().key,
        "us-west-2/gpu-usw2/llm-ic-usw2"
    );

    // The model's TargetModel is the default everywhere it has no other.
    let legacy = at("legacy", 0, RoutePath::Serverless).unwrap();
    assert_eq!(legacy.endpoint, "shared-sl");
    assert_eq!(legacy.via, Some(Via::TargetModel("legacy.tar.gz".into())));
    assert!(at("legacy", 0, RoutePath::Batch).unwrap().via.is_none());
    assert_eq!(
        at("legacy", 1, RoutePath::Provisioned).unwrap().via,
        Some(Via::TargetModel("legacy.tar.gz".into()))
    );

    // A production variant: of the provisioned endpoint only (the
    // shared serverless one has variants of its own).
    assert_eq!(
        at("ab", 0, RoutePath::Provisioned).unwrap().via,
        Some(Via::TargetVariant("blue".into()))
    );
    assert!(at("ab", 0, RoutePath::Serverless).is_none());
    assert_eq!(
        at("ab", 1, RoutePath::Provisioned).unwrap().via,
        Some(Via::TargetVariant("green".into()))
    );
}

#[test]
fn the_shipped_files_keep_the_default_mapping() {
    let f = common::root().join("regions/lab/us-east-1.toml");
    let cfg = config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()));
    for m in &cfg.models {
        for (i, r) in cfg.regions.iter().enumerate() {
            let s = m.in_region(i).unwrap();
            assert_eq!(s.region, r.name);
            assert_eq!(
                s.provisioned.as_ref().map(|t| t.endpoint.as_str()),
                r.sagemaker.provisioned.as_deref()
            );
            assert_eq!(
                s.serverless.as_ref().map(|t| t.endpoint.as_str()),
                r.sagemaker.serverless.as_deref()
            );
            assert_eq!(
                s.batch.as_ref().map(|t| t.endpoint.as_str()),
                r.sagemaker.batch.as_deref()
            );
        }
    }
}

const BAD_MODELS: &str = r#"
[[models]]
name = "a"
[models.regions.us-east-1]
provisioned = "x"
endpoint = "y"
[models.regions.us-west-2]
provisioned = "under_score"
colour = "blue"

[[models]]
name = "b"
[models.regions.eu-central-1]
provisioned = "z"
[models.regions.us-west-2]
provisioned = "p"
inference_component = "ic"
target_model = "m"

[[models]]
name = "c"
[models.regions.us-east-1]
serverless = "s"
inference_component = "ic"
[models.regions.us-west-2]
batch = "only-async"
inference_component = "ic"

[[models]]
name = "d"
target_model = ""
[models.regions.us-east-1]
inference_component = "-bad-"
target_variant = "v"

[[models]]
name = "unmapped"
"#;

/// Every bad mapping, each named with its key, in one report.
fn expected_problems() -> Vec<&'static str> {
    vec![
        "models[0].regions.us-east-1.endpoint: endpoint is another name for provisioned",
        "models[0].regions.us-west-2.provisioned: \"under_score\" is not a SageMaker endpoint name",
        "models[0].regions.us-west-2.colour: unknown key",
        "models[1].regions.eu-central-1: \"eu-central-1\" is not a region in [[regions]]",
        "models[1].regions.us-west-2.target_model: inference_component and target_model are set",
        "models[2].regions.us-east-1.serverless: an inference component runs on an instance-based endpoint",
        "models[2].regions.us-west-2.inference_component: inference component \"ic\" needs the endpoint it runs on",
        "models[3].regions.us-east-1.inference_component: \"-bad-\" is not an inference component name",
        "models[3].regions.us-east-1.target_variant: inference_component and target_variant are set",
        "models[4].name: model \"unmapped\" has no endpoint in us-west-2",
    ]
}

#[test]
fn every_bad_mapping_is_named_with_file_and_key() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        &format!("region = \"us-east-1\"\n{BAD_MODELS}"),
    );
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    let file = f.display().to_string();
    for want in expected_problems() {
        assert!(
            report
                .lines()
                .any(|l| l.contains(&file) && l.contains(want)),
            "no {want:?} (in {file}) in:\n{report}"
        );
    }
}

#[test]
fn check_config_exits_78_naming_every_bad_mapping() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        &format!("region = \"us-east-1\"\n{BAD_MODELS}"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["check-config", "--config"])
        .arg(&f)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in expected_problems() {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
}

#[test]
fn check_config_prints_the_resolved_mapping() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        &format!("region = \"us-east-1\"\n{GOOD_MODELS}"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["check-config", "--config"])
        .arg(&f)
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("inference_component = \"llm-ic-usw2\""),
        "{text}"
    );
    assert!(text.contains("endpoint = \"fraud-usw2\""), "{text}");
    text.parse::<toml::Table>().unwrap();
}

#[test]
fn check_config_finds_two_files_that_map_a_model_differently() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let a = write(
        &d,
        "us-east-1.toml",
        &format!("region = \"us-east-1\"\n{GOOD_MODELS}"),
    );
    let b = write(
        &d,
        "us-west-2.toml",
        &format!(
            "region = \"us-west-2\"\n{}",
            GOOD_MODELS.replace("fraud-usw2", "fraud-usw2-new")
        ),
    );
    let run = |files: &[&PathBuf]| {
        Command::new(env!("CARGO_BIN_EXE_failoverd"))
            .arg("check-config")
            .args(files)
            .env_clear()
            .output()
            .unwrap()
    };
    let out = run(&[&a, &b]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{err}");
    assert!(err.contains("models.fraud.regions"), "{err}");
    // The same mapping in both: one fleet.
    let b = write(
        &d,
        "us-west-2.toml",
        &format!("region = \"us-west-2\"\n{GOOD_MODELS}"),
    );
    let out = run(&[&a, &b]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Across models, per region: an endpoint that hosts inference components
/// is reached through a component by every model sent to it, and an
/// endpoint serves one path. Each conflict is named with the key.
#[test]
fn models_that_share_an_endpoint_must_agree_on_it() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        r#"region = "us-east-1"
[[models]]
name = "llm"
[models.regions.us-east-1]
inference_component = "llm-ic"
[models.regions.us-west-2]
endpoint = "gpu-usw2"
inference_component = "llm-ic-usw2"

[[models]]
name = "plain"
[models.regions.us-west-2]
provisioned = "plain-usw2"

[[models]]
name = "twice"
[models.regions.us-east-1]
serverless = "shared-gpu"
[models.regions.us-west-2]
provisioned = "twice-usw2"
"#,
    );
    let report = config::load(&f, &EnvSource::new()).unwrap_err().report();
    for want in [
        "models[1].regions.us-east-1: model \"plain\" is sent to endpoint \"shared-gpu\" in us-east-1 without an inference component, but model \"llm\" runs on it as one",
        "models[2].regions.us-east-1: endpoint \"shared-gpu\" in us-east-1 is used as the serverless path here and as the provisioned path by the region",
    ] {
        assert!(report.contains(want), "no {want:?} in:\n{report}");
    }
}

/// A `TargetModel` the region's mapping names replaces the client's (it
/// cannot know the name in the region that answers); the model's default
/// `target_model` yields to the client's, as before the mapping. Names
/// with spaces (but not first) are SageMaker's and load.
#[test]
fn the_regions_target_model_replaces_the_clients_and_the_default_yields() {
    let d = tempdir();
    write(&d, "base.toml", BASE);
    let f = write(
        &d,
        "us-east-1.toml",
        r#"region = "us-east-1"
[[models]]
name = "mme"
target_model = "team a/default.tar.gz"
[models.regions.us-west-2]
provisioned = "mme-usw2"
target_model = "m-usw2.tar.gz"
"#,
    );
    let cfg = config::load(&f, &EnvSource::new()).unwrap_or_else(|e| panic!("{}", e.report()));
    let m = &cfg.models[0];
    let east = m
        .in_region(0)
        .unwrap()
        .path(RoutePath::Provisioned)
        .unwrap();
    let west = m
        .in_region(1)
        .unwrap()
        .path(RoutePath::Provisioned)
        .unwrap();
    assert_eq!(
        east.via,
        Some(Via::TargetModel("team a/default.tar.gz".into()))
    );
    let client = failoverd::ports::inference::Invocation {
        target_model: Some(hyper::header::HeaderValue::from_static("m-use1.tar.gz")),
        ..Default::default()
    };
    let sent = |t| {
        failoverd::router::for_target(&client, t)
            .target_model
            .clone()
    };
    assert_eq!(sent(east).unwrap(), "m-use1.tar.gz", "the default yields");
    assert_eq!(
        sent(west).unwrap(),
        "m-usw2.tar.gz",
        "the region's mapping wins"
    );
    let none = failoverd::ports::inference::Invocation::default();
    assert_eq!(
        failoverd::router::for_target(&none, east)
            .target_model
            .clone()
            .unwrap(),
        "team a/default.tar.gz"
    );
}
