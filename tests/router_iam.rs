//! Caller identity from AWS IAM on the router (issue 22 item 2, the STS
//! method), against the real binary, the lab's moto as STS and IAM, and
//! boto3 with the event hook docs/threat-model.md gives users:
//!
//! - a caller's presigned `sts:GetCallerIdentity` names it by its assumed
//!   role's ARN: allowed by `router.allow`'s ARN pattern, it gets through
//!   to the regions; another role gets `AccessDeniedException` (403);
//! - a token whose URL points anywhere but an accepted STS endpoint is
//!   refused (403) and nothing is called there; the token never appears in
//!   the log;
//! - `check-config` takes `[router.iam]` as an identity method and names
//!   the file and key of a bad `fleet` or `sts_endpoints` entry.
//!
//! That STS is called once per token (the cache) is a unit test's
//! (`router::iam`), not this one's: moto does not count calls.
//!
//! Every wait is bounded; nothing asserts a duration.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;
mod router_daemon;

use std::path::PathBuf;
use std::process::Command;

use router_daemon::Daemon;

const FLEET: &str = "failoverd-test";

fn tempdir(prefix: &str) -> PathBuf {
    let d = std::env::temp_dir().join(common::unique(prefix));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// tests/boto3/invoke_iam.py as `role`, `calls` times; one JSON value per call.
fn boto3(
    d: &Daemon,
    moto: &common::Moto,
    role: &str,
    calls: u32,
    tamper: bool,
) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(common::venv().join("bin/python"));
    cmd.arg(common::root().join("tests/boto3/invoke_iam.py"))
        .args([
            "--endpoint-url",
            &format!("http://127.0.0.1:{}", d.router.port()),
        ])
        .args(["--sts-url", &format!("http://127.0.0.1:{}", moto.port)])
        .args([
            "--fleet",
            FLEET,
            "--role",
            role,
            "--calls",
            &calls.to_string(),
        ]);
    if tamper {
        cmd.arg("--tamper");
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        got.len(),
        calls as usize,
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    got
}

fn access_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "failoverd::access")
        .collect()
}

#[test]
fn an_iam_caller_is_named_by_its_role_and_authorized_by_arn_pattern() {
    let moto = common::Moto::start();
    let dir = tempdir("failoverd-iam");
    let router = format!(
        "iam = {{ fleet = \"{FLEET}\", sts_endpoints = [\"http://127.0.0.1:{}\"] }}\nallow = {{ m = [\"arn:aws:sts::*:assumed-role/Scorer/*\"] }}\n",
        moto.port
    );
    let d = Daemon::start_in(dir, "", &router, None);

    // The allowed role: through to the regions (none reachable here: 503),
    // three calls on one token.
    let got = boto3(&d, &moto, "Scorer", 3, false);
    for g in &got {
        assert_eq!(g["code"], "ServiceUnavailable", "{got:?}");
    }
    // Another role: 403 AccessDeniedException, naming its ARN.
    let got = boto3(&d, &moto, "Ranker", 1, false);
    assert_eq!(got[0]["code"], "AccessDeniedException", "{got:?}");
    assert_eq!(got[0]["status"], 403, "{got:?}");
    assert!(
        got[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("assumed-role/Ranker/")),
        "{got:?}"
    );
    // A token pointing elsewhere (the instance metadata address): 403
    // before any call, saying why.
    let got = boto3(&d, &moto, "Scorer", 1, true);
    assert_eq!(got[0]["code"], "AccessDeniedException", "{got:?}");
    assert!(
        got[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not an STS endpoint this router accepts")),
        "{got:?}"
    );

    let log = d.log();
    let ids: Vec<String> = access_lines(&log)
        .iter()
        .filter(|l| l["status"] != 403 || l["identity"] != "anonymous")
        .map(|l| l["identity"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(ids.len(), 4, "{log}");
    assert!(
        ids[..3]
            .iter()
            .all(|i| i.starts_with("arn:aws:sts::") && i.contains(":assumed-role/Scorer/")),
        "{ids:?}"
    );
    assert!(ids[3].contains(":assumed-role/Ranker/"), "{ids:?}");
    assert!(
        !log.contains("X-Amz-Signature"),
        "a token or URL was logged"
    );
    assert!(!log.contains("v1."), "a token was logged");
}

/// `[router.iam]` is an identity method (a router off loopback starts with
/// it), and its keys are checked, naming file and key.
#[test]
fn router_iam_is_checked_and_counts_as_an_identity_method() {
    let dir = tempdir("failoverd-iam-config");
    std::fs::copy(
        common::root().join("regions/lab/base.toml"),
        dir.join("base.toml"),
    )
    .unwrap();
    let check = |router: &str| {
        let file = dir.join("us-east-1.toml");
        std::fs::write(
            &file,
            format!("region = \"us-east-1\"\n[listen]\nadmin = \"127.0.0.1:0\"\nrouter = \"0.0.0.0:8080\"\n[router]\n{router}\n"),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
            .args(["check-config", "--config"])
            .arg(&file)
            .env_clear()
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = check("iam = { fleet = \"prod\" }");
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = check("");
    assert_ne!(code, Some(0), "{err}");
    for (keys, key) in [
        ("iam = { }", "router.iam.fleet"),
        ("iam = { fleet = \"has space\" }", "router.iam.fleet"),
        (
            "iam = { fleet = \"p\", sts_endpoints = [\"http://10.0.0.1:80\"] }",
            "router.iam.sts_endpoints[0]",
        ),
        (
            "iam = { fleet = \"p\", sts_endpoints = [\"https://x.example/path\"] }",
            "router.iam.sts_endpoints[0]",
        ),
    ] {
        let (code, err) = check(keys);
        assert_ne!(code, Some(0), "{keys}: {err}");
        assert!(
            err.contains(key) && err.contains("us-east-1.toml"),
            "{keys}: {err}"
        );
    }
}
