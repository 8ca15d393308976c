//! The smoke kit (`deploy/smoke/run`, issue 23) run as CI runs it: in dry-run
//! mode against the lab (moto and the lab's model server on 127.0.0.1), so
//! that the script itself is tested. It has never run against a real AWS
//! account from this repository (deploy/smoke/README.md).
//!
//! - the dry run deploys every stack, runs the drill and passes, and its
//!   report (text and JSON) has every step, the figures, and CloudTrail
//!   "not available in the lab";
//! - a signal in the middle tears everything down (checked from outside, by
//!   listing what is named with the run's prefix in moto, a check that is
//!   first seen to find the live run's resources);
//! - no `--account-id`, a wrong one, or no confirmation: refused, exit 2,
//!   nothing created.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, ModelServer, Moto, root, spawn_guarded, unique, venv};
use serde_json::Value;

const MOTO_ACCOUNT: &str = "123456789012";

/// `deploy/smoke/run ARGS` with the test's binaries and the lab's virtualenv.
fn kit(args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("deploy/smoke/run"))
        .args(args)
        .args(["--binary", env!("CARGO_BIN_EXE_failoverd")])
        .args(["--lab-tools", env!("CARGO_BIN_EXE_failoverd-lab")])
        .env("FAILOVERD_LAB_VENV", venv())
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null());
    cmd
}

/// `run --lab --yes` in moto's account under `prefix`, plus `extra`.
fn dry_run(prefix: &str, extra: &[&str]) -> Command {
    let mut args = vec![
        "--lab",
        "--account-id",
        MOTO_ACCOUNT,
        "--yes",
        "--prefix",
        prefix,
    ];
    args.extend_from_slice(extra);
    kit(&args)
}

/// The kit's exit status, waiting at most `cap` (then fail, showing `out`).
fn wait_exit(child: &mut ChildGuard, cap: Duration, out: &Path) -> ExitStatus {
    let deadline = Instant::now() + cap;
    loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the kit ran longer than {cap:?}: {}",
            read(out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run to completion, at most `cap` (output through files: a pipe nobody
/// reads while waiting could fill and stall the kit).
fn run(cmd: &mut Command, cap: Duration) -> Output {
    let dir = std::env::temp_dir().join(unique("failoverd-smoke-out"));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = spawn_guarded(
        cmd.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap()),
    );
    let status = wait_exit(&mut child, cap, &out);
    let o = Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    o
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A prefix the kit accepts (3–21 characters), unique to this run.
fn prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("smk-{:08x}", (std::process::id() << 20) ^ nanos)
}

fn step<'a>(report: &'a Value, name_starts: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with(name_starts))
        .unwrap_or_else(|| panic!("no step {name_starts:?} in {report:#}"))
}

/// `run --leftovers`: (exit code, output) of listing what is named PREFIX-*.
fn leftovers(moto: &Moto, prefix: &str) -> (i32, String) {
    let o = run(
        kit(&[
            "--lab",
            "--account-id",
            MOTO_ACCOUNT,
            "--lab-moto-url",
            &moto.url(),
            "--prefix",
            prefix,
            "--leftovers",
        ])
        .current_dir(std::env::temp_dir()),
        Duration::from_secs(60),
    );
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
fn the_dry_run_against_the_lab_deploys_drills_tears_down_and_reports() {
    let dir = std::env::temp_dir().join(unique("failoverd-smoke"));
    let report_path = dir.join("report.json");
    let p = prefix();
    // The kit starts the lab's servers itself here, as a user's
    // `deploy/smoke/run --lab` does.
    let out = run(
        dry_run(
            &p,
            &[
                "--work-dir",
                dir.to_str().unwrap(),
                "--report",
                report_path.to_str().unwrap(),
            ],
        )
        .current_dir(dir.parent().unwrap()),
        Duration::from_secs(300),
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);

    // The warning comes before anything is created.
    let warning = stdout.find("COST WARNING").expect("the budget warning");
    let first_create = stdout.find("... tables").expect("the tables step");
    assert!(warning < first_create, "{all}");
    assert!(stdout.contains("RESULT: PASSED"), "{all}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["mode"], "lab");
    assert_eq!(report["account_id"], MOTO_ACCOUNT);
    for name in [
        "identity",
        "tables",
        "region stack",
        "SageMaker endpoints",
        "IAM stack",
        "the daemon's policy as a role",
        "three daemons",
        "daemons ready",
        "boto3 through a router before",
        "batch job submitted",
        "failover: invert",
        "failover report",
        "the batch job completes across the failover",
        "failback to",
        "failback report",
        "boto3 through a router across the drill",
        "teardown of",
        "AccessDenied in the daemons' logs",
    ] {
        assert_eq!(step(&report, name)["status"], "pass", "{name}: {report:#}");
    }
    assert_eq!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"].as_str().unwrap().starts_with("region stack"))
            .count(),
        3
    );
    // The batch job spanned the failover: submitted through the old
    // active's router, its result read through the new active's. (Whether
    // it was still running when the failover ended depends on the
    // machine's load: the lab holds it 8 s, a loaded machine's failover
    // can take longer; the report says which.)
    let batch = step(&report, "the batch job completes");
    let detail = batch["detail"].as_str().unwrap();
    assert!(
        detail.contains("submitted through us-east-1's router") && detail.contains("200 through"),
        "{batch:#}"
    );
    assert!(
        !detail.contains("200 through us-east-1's router"),
        "read through the new active's router: {batch:#}"
    );
    let ct = step(&report, "AccessDenied in CloudTrail");
    assert_eq!(ct["status"], "n/a", "{ct:#}");
    assert!(
        ct["detail"]
            .as_str()
            .unwrap()
            .contains("not available in the lab")
    );

    let figures = &report["figures"];
    for f in [
        "failover: inversion → detected (journal)",
        "failover: inversion → StartExecution (journal)",
        "failover: inversion → steady (journal)",
        "failover: detection_to_start_ms",
        "failover: start_to_steady_ms",
        "failback command → steady, as the kit saw it",
    ] {
        let v = figures[f]
            .as_i64()
            .unwrap_or_else(|| panic!("no figure {f}: {figures:#}"));
        assert!((0..120_000).contains(&v), "{f} = {v}");
    }
    // The text report says the same.
    assert!(
        stdout.contains("failoverd smoke report")
            && stdout.contains("N/A   AccessDenied in CloudTrail"),
        "{all}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_signal_in_the_middle_of_a_run_tears_everything_down() {
    let moto = Moto::start();
    let model = ModelServer::start(Some(&moto.url()));
    let dir = std::env::temp_dir().join(unique("failoverd-smoke-sig"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = prefix();
    let stdout = dir.join("stdout.txt");
    let mut child = spawn_guarded(
        dry_run(
            &p,
            &[
                "--lab-moto-url",
                &moto.url(),
                "--lab-model-url",
                &model.url(),
                "--work-dir",
                dir.join("work").to_str().unwrap(),
            ],
        )
        .current_dir(&dir)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null()),
    );
    // Everything is deployed and the daemons run.
    common::wait_for("the kit's daemons", Duration::from_secs(180), || {
        assert!(child.0.try_wait().unwrap().is_none(), "{}", read(&stdout));
        read(&stdout).contains("[PASS] three daemons").then_some(())
    });
    let (code, listed) = leftovers(&moto, &p);
    assert_eq!(code, 1, "the live run's resources are listed: {listed}");
    for kind in ["stack", "table", "bucket", "role", "endpoint"] {
        assert!(
            listed.contains(&format!("leftover: {kind} {p}-")),
            "{kind}: {listed}"
        );
    }

    // SAFETY: kill(2) on a child we own. A second SIGTERM while it tears
    // down (an impatient operator) must not cut the teardown short.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    common::wait_for("the teardown to begin", Duration::from_secs(30), || {
        read(&stdout).contains("... teardown").then_some(())
    });
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_exit(&mut child, Duration::from_secs(120), &stdout);
    let out = read(&stdout);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("interrupted"), "{out}");
    assert!(out.contains("tearing down, not stopping"), "{out}");
    assert!(out.contains("RESULT: FAILED"), "{out}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("work/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(step(&report, "teardown of")["status"], "pass", "{report:#}");

    let (code, listed) = leftovers(&moto, &p);
    assert_eq!(code, 0, "nothing is left: {listed}");
    // The daemons it ran are gone too.
    for r in ["us-east-1", "us-east-2", "us-west-2"] {
        let bound: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("work/{r}.bound.json"))).unwrap(),
        )
        .unwrap();
        let pid = bound["pid"].as_i64().unwrap() as libc::pid_t;
        // SAFETY: signal 0 only checks that the process exists.
        assert_ne!(
            unsafe { libc::kill(pid, 0) },
            0,
            "daemon {r} (pid {pid}) still runs"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn without_the_right_account_id_or_a_confirmation_it_refuses_and_creates_nothing() {
    let moto = Moto::start();
    let dir: PathBuf = std::env::temp_dir().join(unique("failoverd-smoke-refuse"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = prefix();
    let base = ["--lab", "--prefix", &p, "--lab-moto-url", &moto.url()];
    let base: Vec<&str> = base.to_vec();
    let cases: [(&[&str], &str); 4] = [
        (&["--yes"], "--account-id is required"),
        (
            &["--yes", "--account-id", "111122223333"],
            "but these credentials are account 123456789012",
        ),
        (
            &["--yes", "--account-id", "1234"],
            "not a 12-digit AWS account id",
        ),
        // No --yes and no terminal to confirm on.
        (&["--account-id", MOTO_ACCOUNT], "no terminal to confirm on"),
    ];
    for (extra, why) in cases {
        let work = dir.join("work");
        let mut args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        args.extend(["--work-dir", work.to_str().unwrap()]);
        let o = run(kit(&args).current_dir(&dir), Duration::from_secs(60));
        let all = text(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {all}");
        assert!(
            all.contains("REFUSED") && all.contains(why),
            "{extra:?}: {all}"
        );
        assert!(!all.contains("[PASS]"), "{extra:?}: {all}");
        assert!(!work.exists(), "{extra:?} made its work folder");
        // Only a refused confirmation comes after the warning (and after
        // the account check); the others stop before it.
        assert_eq!(
            all.contains("COST WARNING"),
            why.contains("confirm"),
            "{extra:?}: {all}"
        );
        let (code, listed) = leftovers(&moto, &p);
        assert_eq!(code, 0, "{extra:?} created something: {listed}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
