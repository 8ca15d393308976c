//! A daemon whose wall clock steps under it (issue 19: an NTP correction of
//! a skewed host, an operator's `date -s`), in the lab, with libfaketime
//! (Debian's `faketime`, installed by `chaos/tools.sh`) preloaded into one
//! real daemon. Only the wall clock steps, as with NTP:
//! `FAKETIME_DONT_FAKE_MONOTONIC=1` leaves CLOCK_MONOTONIC alone.
//!
//! - Forward an hour, healthy: the active keeps answering `/active` 200 at
//!   every sample. (When the lease was counted on the wall clock, the last
//!   read looked an hour old and the active stood down until its next round.)
//! - Back two hours, and cut off from AWS at the same moment: it stands down
//!   within its lease. (On the wall clock, `now - confirmed_at` saturated to
//!   0 and it kept answering 200 for the two hours of the step.)
//!
//! Timings are not asserted beyond generous caps; the lab's lease is 4 s.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::lab::{Lab, wait_record};
use common::partition::Partition;

/// Debian's libfaketime (multiarch path).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.expect(
        "libfaketime.so.1 under /usr/lib/<arch>/faketime: install Debian's `faketime` \
         (chaos/tools.sh, which the README's test command runs, does)",
    )
}

/// One daemon's wall-clock offset, as libfaketime reads it from a file.
struct Offset(PathBuf);

impl Offset {
    fn set(&self, spec: &str) {
        std::fs::write(&self.0, format!("{spec}\n")).unwrap();
    }
}

#[test]
fn a_stepped_wall_clock_changes_no_local_duration() {
    let mut lab = Lab::start(&[]);
    let offset =
        Offset(std::env::temp_dir().join(format!("failoverd-faketime-{}", std::process::id())));
    offset.set("+0");
    // us-east-1's daemon: behind a wall it reaches every AWS API through,
    // and on a wall clock the test steps.
    let wall = Partition::start(lab.moto.port);
    let mut env = wall.endpoints(&["DYNAMODB", "S3", "ROUTE53", "SFN", "SAGEMAKER"]);
    env.extend(
        [
            ("LD_PRELOAD", libfaketime().display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", offset.0.display().to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
            // Re-read the file every second (the default caches it for 10 s).
            ("FAKETIME_CACHE_DURATION", "1".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    lab.kill_daemon("us-east-1");
    lab.start_daemon_with("us-east-1", &env);
    lab.wait_ready(Duration::from_secs(60));
    wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });
    lab.wait_admin(
        "us-east-1",
        "/active",
        "us-east-1 to act as active",
        Duration::from_secs(30),
        |s, _| s == 200,
    );

    // Forward an hour. Sample /active for three polls past the cache.
    offset.set("+3600");
    let until = Instant::now() + Duration::from_secs(5);
    let mut samples = 0;
    while Instant::now() < until {
        let (code, body) = lab
            .admin("us-east-1", "/active")
            .expect("the admin listener");
        assert_eq!(
            code, 200,
            "after a forward step of the wall clock, sample {samples}: {body}"
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    // The step took: the daemon's own clock is an hour ahead.
    let (_, status) = lab.admin("us-east-1", "/status").unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let at = v["at"].as_u64().expect("the last round's time");
    let ahead = at as i64 - failoverd::ports::clock::wall_ms() as i64;
    assert!(
        ahead > 3_000_000,
        "the daemon's wall clock is {ahead} ms ahead, not an hour: {status}"
    );

    // Back two hours (an hour behind), and cut off from AWS: it must stand
    // down within its lease, whatever its wall clock says.
    offset.set("-3600");
    wall.cut();
    let cut = Instant::now();
    let (_, body) = lab.wait_admin(
        "us-east-1",
        "/active",
        "us-east-1 to stand down after its clock stepped back",
        Duration::from_secs(30),
        |s, b| s == 503 && b.contains("stood_down"),
    );
    eprintln!(
        "stood down {:?} after the cut and the step back: {body}",
        cut.elapsed()
    );
    wall.heal();
    let _ = std::fs::remove_file(&offset.0);
}
