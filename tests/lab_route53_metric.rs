//! Issue 23, the Route 53 signal source, end to end in the lab: three
//! daemons configured with `health.route53_source = "cloudwatch"` read the
//! checks' `AWS/Route53` `HealthCheckStatus` metric (published into moto's
//! CloudWatch in us-east-1 by the lab's launcher, chaos/lab/moto_server.py,
//! from the checks' state, inversion honoured) with one GetMetricData per
//! slot and no GetHealthCheckStatus at all; an inverted check reads as
//! unhealthy and us-east-1 fails over; a metric that stops being published
//! reads as Unknown, not as a verdict.
//!
//! The lab's period is 1 s (Route 53's is a minute): the path, not
//! production's timing (docs/detection.md "Two sources").

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::lab::{Lab, REGIONS, wait_record};
use common::wait_for;
use failoverd::ports::ControlStore;
use failoverd::ports::health_checks::{CheckKind, MetricPoint};

/// The newest metric reading the fleet published for `check`.
fn published_point(lab: &Lab, check: &str) -> Option<MetricPoint> {
    let readings = Lab::rt().block_on(lab.table().read_readings()).ok()?;
    readings
        .into_iter()
        .find(|r| r.check_id == check)
        .and_then(|r| match r.reading.kind {
            CheckKind::StatusMetric { point } => point,
            _ => None,
        })
}

/// A counter of `/metrics` (0 when absent).
fn counter(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_fleet_reading_the_metric_sees_an_inverted_check_and_fails_over() {
    let lab = Lab::start(&[
        ("FAILOVERD__HEALTH__ROUTE53_SOURCE", "cloudwatch"),
        ("FAILOVERD__HEALTH__ROUTE53_METRIC_PERIOD", "1s"),
        // Two GetMetricData a second for the fleet: a call per 500 ms slot.
        ("FAILOVERD__HEALTH__ROUTE53_CALLS_PER_SECOND", "2"),
    ]);
    lab.wait_ready(Duration::from_secs(60));
    wait_record(&lab, "the control record", Duration::from_secs(30), |r| {
        r.active == "us-east-1"
    });
    let check = lab.health_check("us-east-1");
    wait_for(
        "a healthy HealthCheckStatus point published for us-east-1's check",
        Duration::from_secs(30),
        || published_point(&lab, &check).filter(|p| p.healthy),
    );

    let inverted = std::time::Instant::now();
    lab.invert("us-east-1", true);
    // The metric says so (Route 53's status, inversion applied), and the
    // fleet publishes it as an unhealthy point.
    wait_for(
        "an unhealthy HealthCheckStatus point for the inverted check",
        Duration::from_secs(30),
        || published_point(&lab, &check).filter(|p| !p.healthy),
    );
    wait_record(
        &lab,
        "the failover to us-west-2",
        Duration::from_secs(90),
        |r| r.active == "us-west-2",
    );
    // The lab's figure (1 s period, no lag), printed, never asserted.
    eprintln!(
        "cloudwatch source: inversion -> switch to us-west-2 in {:.2} s",
        inverted.elapsed().as_secs_f64()
    );

    // Every daemon read through CloudWatch, not GetHealthCheckStatus: the
    // metered calls say so (the start-up check of each check's type is
    // GetHealthCheck, `health_check_kind`, not a reading).
    let mut metric_calls = 0.0;
    for r in REGIONS {
        let (status, text) = lab.admin(r, "/metrics").expect("the daemon answers");
        assert_eq!(status, 200);
        assert_eq!(
            counter(
                &text,
                "failoverd_aws_calls_total{service=\"route53\",operation=\"read_health_check\",region=\"us-east-1\"}"
            ),
            0.0,
            "{r} read a check through the Route 53 API"
        );
        metric_calls += counter(
            &text,
            "failoverd_aws_calls_total{service=\"cloudwatch\",operation=\"read_health_check_metrics\",region=\"us-east-1\"}",
        );
    }
    assert!(metric_calls > 0.0, "nobody read the metric");

    // Route 53 stops publishing: once the newest point is older than five
    // periods the check says nothing (Unknown), whatever it said last.
    let (status, body) = common::http(
        "POST",
        &format!("127.0.0.1:{}", lab.moto.port),
        "/_lab/route53-metrics?paused=true",
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    lab.wait_admin(
        "us-west-2",
        "/status",
        "us-west-2 to read the unpublished metric as stale",
        Duration::from_secs(30),
        |s, b| {
            s == 200
                && b.contains(&format!(
                    "route53 {check}: unknown (newest HealthCheckStatus data point"
                ))
        },
    );
}
