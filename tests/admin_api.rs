//! Who did it: authenticated admin mutations and the operator's identity,
//! against real daemons in the lab.
//!
//! - Without a token file the admin listener is read-only (403).
//! - With one, `POST /v1/pause` and `/v1/resume` need `Authorization:
//!   Bearer <token>` (401 with `WWW-Authenticate` otherwise, whether the
//!   token is missing, wrong, shorter or longer), a body naming who and why
//!   (400 otherwise), and go through the planner and the executor: the
//!   record is paused, recorded as by the named operator, journalled; a
//!   second pause is refused (409); GET is 405.
//! - The CLI records the AWS identity (STS GetCallerIdentity, here moto's)
//!   beside `$USER`; with neither STS nor a name it refuses rather than
//!   record "unknown".

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::lab::Lab;
use common::{http, wait_for};
use failoverd::core::control::{ControlRecord, Mode};
use failoverd::ports::ControlStore;

const TOKEN: &str = "0f3c9a7e5b2d4c6a8e1f0b9d7c5a3e1f";

fn record(lab: &Lab) -> ControlRecord {
    wait_for("the control record", Duration::from_secs(60), || {
        Lab::rt().block_on(lab.table().read_record()).ok().flatten()
    })
}

/// POST with optional bearer token: (status, headers and body as text).
fn post(lab: &Lab, region: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = format!("127.0.0.1:{}", lab.daemon(region).admin);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn admin_mutations_need_the_token_and_record_who_acted() {
    let lab = Lab::start(&[]);
    lab.wait_ready(Duration::from_secs(60));
    let before = record(&lab);
    assert_eq!(before.mode, Mode::Auto);
    let body = r#"{"operator": "alice", "reason": "INC-42 maintenance"}"#;

    // No token file yet: read-only.
    let (s, text) = post(
        &lab,
        "us-west-2",
        "/v1/pause",
        Some(&format!("Bearer {TOKEN}")),
        body,
    );
    assert_eq!(s, 403, "{text}");

    // The lab's daemons run in the lab folder; the config names `admin-token`.
    let token_file = lab.dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    for auth in [
        None,
        Some("Bearer".to_string()),
        Some("Bearer wrong-token-wrong-token-wrong".to_string()),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
    ] {
        let (s, text) = post(&lab, "us-west-2", "/v1/pause", auth.as_deref(), body);
        assert_eq!(s, 401, "{auth:?}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{auth:?}: {text}"
        );
    }
    assert_eq!(
        record(&lab).mode,
        Mode::Auto,
        "nothing changed without the token"
    );

    let bearer = format!("Bearer {TOKEN}");
    for bad in [
        "",
        "not json",
        r#"{"operator": "", "reason": "x"}"#,
        r#"{"operator": "alice"}"#,
        r#"{"operator": "a", "reason": "b", "extra": 1}"#,
    ] {
        let (s, text) = post(&lab, "us-west-2", "/v1/pause", Some(&bearer), bad);
        assert_eq!(s, 400, "{bad:?}: {text}");
    }

    let (s, text) = post(&lab, "us-west-2", "/v1/pause", Some(&bearer), body);
    assert_eq!(s, 200, "{text}");
    let paused = record(&lab);
    assert_eq!(paused.mode, Mode::Paused);
    assert_eq!(paused.changed_by, "operator:alice");
    assert!(
        paused.reason.starts_with("INC-42 maintenance"),
        "{}",
        paused.reason
    );
    assert_eq!(paused.version, before.version + 1, "one fenced write");
    let journal = Lab::rt()
        .block_on(lab.table().events(200, failoverd::ports::clock::wall_ms()))
        .unwrap()
        .items;
    assert!(
        journal
            .iter()
            .any(|e| e.kind == "mode" && e.who == "operator:alice" && e.detail.contains("Paused")),
        "the pause is journalled as alice's"
    );

    let (s, text) = post(&lab, "us-east-1", "/v1/pause", Some(&bearer), body);
    assert_eq!(s, 409, "already paused: {text}");
    let (s, _) = http(
        "GET",
        &format!("127.0.0.1:{}", lab.daemon("us-east-1").admin),
        "/v1/pause",
        "",
    )
    .unwrap();
    assert_eq!(s, 405);

    let (s, text) = post(
        &lab,
        "eu-west-1",
        "/v1/resume",
        Some(&bearer),
        r#"{"operator": "bob", "reason": "done"}"#,
    );
    assert_eq!(s, 200, "{text}");
    let resumed = record(&lab);
    assert_eq!(
        (resumed.mode, resumed.changed_by.as_str()),
        (Mode::Auto, "operator:bob")
    );

    // Rotation is writing the file: the old token stops working at once.
    std::fs::write(&token_file, "a-new-token-after-rotation-0001\n").unwrap();
    let (s, _) = post(&lab, "us-west-2", "/v1/pause", Some(&bearer), body);
    assert_eq!(s, 401);

    // The CLI: STS (moto) identity beside $USER.
    let sts = format!("http://127.0.0.1:{}", lab.moto.port);
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["pause", "--reason", "cli identity", "--yes", "--config"])
        .arg(lab.dir.join("regions/us-west-2.toml"))
        .env_clear()
        .envs(lab.env.clone())
        .env("USER", "lab-test")
        .env("AWS_ENDPOINT_URL_STS", &sts)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_cli = record(&lab);
    assert!(
        by_cli.changed_by.starts_with("operator:lab-test (arn:aws:")
            && (by_cli.changed_by.contains(":sts::") || by_cli.changed_by.contains(":iam::")),
        "the AWS identity beside the name: {}",
        by_cli.changed_by
    );

    // No STS (its endpoint refuses connections) and no name: refused.
    let closed = common::ClosedPort::new();
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["resume", "--yes", "--config"])
        .arg(lab.dir.join("regions/us-west-2.toml"))
        .env_clear()
        .envs(lab.env.clone())
        .env("AWS_ENDPOINT_URL_STS", closed.url())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot tell who is acting"), "{stderr}");
    assert_eq!(record(&lab).mode, Mode::Paused, "nothing changed");

    // No STS, but a name: recorded under the name, with a warning.
    let out = Command::new(env!("CARGO_BIN_EXE_failoverd"))
        .args(["resume", "--yes", "--operator", "carol", "--config"])
        .arg(lab.dir.join("regions/us-west-2.toml"))
        .env_clear()
        .envs(lab.env.clone())
        .env("AWS_ENDPOINT_URL_STS", closed.url())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot confirm your AWS identity"),
        "{stderr}"
    );
    assert_eq!(record(&lab).changed_by, "operator:carol");
}
