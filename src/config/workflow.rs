//! What the configuration is checked against but does not hold: the
//! shipped failover workflow (`deploy/statemachines/failover.asl.json`),
//! the daemon's own token cadence, and the shipped systemd unit.
//!
//! The daemon is not given the ASL at run time: the deployment renders the
//! shipped definition (`deploy/render.sh`, CloudFormation), and its figures
//! are copied here. A unit test below reads the ASL and the unit file and
//! fails when a figure here no longer matches, so a change to the workflow
//! changes what `check-config` derives, or the build fails.
//!
//! # Where the workflow runs
//!
//! The workflow's Tasks are AWS SDK integrations with DynamoDB, and Step
//! Functions runs those only in the state machine's own region ("Currently,
//! cross-Region AWS SDK integration and cross-Region AWS resource access
//! aren't available in Step Functions": AWS, "Accessing resources in other
//! AWS accounts in Step Functions"). So a workflow writes the control-table
//! replica of its own region, and a region that holds no replica (an MRSC
//! witness region, or any region with `control_replica`) deploys none
//! (`region.yaml` `DeployWorkflow=false`): its `[[regions]]
//! state_machine_arn` names a replica region's state machine, which its
//! daemon starts with a plain StartExecution in that region.
//! [`workflow_region_problem`] is the rule `check-config` applies:
//!
//! - `strong` (MRSC): the state machine is in a region of `tables.replicas`
//!   (every replica is the same linearizable table);
//! - `eventual` (MREC): it is in the region of the replica the entry's
//!   daemon uses ([`Config::control_region_for`]): conditions are evaluated
//!   in the local replica only, so a workflow writing another replica would
//!   not yet see the claim it is fenced on.
//!
//! One epoch, one execution, one state machine: the epoch's execution is
//! `failover-<incarnation>-<epoch>-c<claim>` in `regions[initiator].state_machine_arn`,
//! where the initiator is the region the claim wrote into the record. That
//! setting is fleet-wide (every daemon's file lists every region's, and
//! `config::fleet` fingerprints it), so the initiator, a daemon ensuring
//! the execution after the initiator crashed, and whoever settles or stops
//! it look in the same state machine, whichever region they run in.
//!
//! The token cadence ([`Timings::token_claim_lease`],
//! [`Timings::heartbeat_period`]) is the token desk's (`control::tokens`):
//! a claim lease of five poll intervals (at least 10 s), renewed and
//! heartbeated every third of it. The desk computes it itself for now;
//! tests/config.rs checks its `claim_lease` against this one.

use std::time::Duration;

use super::{Config, Consistency, RegionConfig, Timings};
use crate::core::control::arn_region;

/// `TimeoutSeconds` of the workflow's `PrepareTarget` task (and the token's
/// `timeout_seconds`).
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(900);
/// `HeartbeatSeconds` of `PrepareTarget`: the target's daemon must
/// heartbeat (or call back) at least this often, or the task fails with
/// `States.HeartbeatTimeout` and the failover aborts.
pub const PREPARE_HEARTBEAT: Duration = Duration::from_secs(60);
/// `TimeoutSeconds` of `DrainOld`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// `HeartbeatSeconds` of `DrainOld` (a drain that times out does not stop
/// the failover: the switch already happened).
pub const DRAIN_HEARTBEAT: Duration = Duration::from_secs(30);
/// The retry policy of every DynamoDB step of the workflow:
/// `IntervalSeconds` 1, `BackoffRate` 2, `MaxDelaySeconds` 8,
/// `MaxAttempts` 5 (retries after the first try), full jitter.
pub const DYNAMODB_RETRY_INTERVAL: Duration = Duration::from_secs(1);
pub const DYNAMODB_RETRY_BACKOFF: u32 = 2;
pub const DYNAMODB_RETRY_MAX_DELAY: Duration = Duration::from_secs(8);
pub const DYNAMODB_RETRY_ATTEMPTS: u32 = 5;

/// The longest a DynamoDB step of the workflow waits between its first
/// try and its last retry (1 + 2 + 4 + 8 + 8 = 23 s; full jitter only
/// shortens it).
pub fn dynamodb_retry_span() -> Duration {
    let mut delay = DYNAMODB_RETRY_INTERVAL;
    let mut total = Duration::ZERO;
    for _ in 0..DYNAMODB_RETRY_ATTEMPTS {
        total += delay.min(DYNAMODB_RETRY_MAX_DELAY);
        delay *= DYNAMODB_RETRY_BACKOFF;
    }
    total
}

/// A token claim lasts this many poll intervals without renewal ...
pub const CLAIM_LEASE_POLLS: u32 = 5;
/// ... and at least this long.
pub const CLAIM_LEASE_MIN: Duration = Duration::from_secs(10);
/// A worker renews its claim and heartbeats this many times per claim lease ...
pub const HEARTBEATS_PER_CLAIM_LEASE: u32 = 3;
/// ... and at most once a second.
pub const HEARTBEAT_MIN: Duration = Duration::from_secs(1);

/// `TimeoutStopSec` of the shipped unit (`systemd/failoverd@.service`):
/// systemd kills the daemon this long after SIGTERM.
pub const SYSTEMD_TIMEOUT_STOP: Duration = Duration::from_secs(45);
/// What the unit's `TimeoutStopSec` leaves beyond the drain, for shutting
/// the AWS clients down (the unit's own comment: a 30 s drain in 45 s).
pub const SHUTDOWN_ROOM: Duration = Duration::from_secs(15);

/// Why `r`'s `state_machine_arn` cannot run its failovers (see "Where the
/// workflow runs"), or `None`.
pub fn workflow_region_problem(c: &Config, r: &RegionConfig) -> Option<String> {
    let arn = &r.state_machine_arn;
    let sm = arn_region(arn)?;
    let replicas = &c.tables.replicas;
    let used = c.control_region_for(&r.name);
    let suggest = if replicas.iter().any(|x| x == used) {
        used
    } else {
        replicas.first().map(String::as_str).unwrap_or(used)
    };
    let why_regional = "Step Functions runs the workflow's DynamoDB tasks only in the state machine's own region (cross-Region AWS SDK integrations are not available)";
    if !replicas.iter().any(|x| x == sm) {
        let whose = if sm == r.name {
            format!("{}'s own", r.name)
        } else {
            format!("a state machine in {sm}, which is")
        };
        let witness = match c.tables.witness.as_deref() {
            Some(w) if w == sm => " (the MRSC witness)",
            _ => "",
        };
        return Some(format!(
            "{arn:?} is {whose} workflow, but {sm}{witness} holds no replica of the control table (tables.replicas: {replicas:?}), and {why_regional}: its steps would write a table that does not exist. Deploy no workflow in {sm} (deploy/cloudformation/region.yaml DeployWorkflow=false) and name a replica region's state machine here, e.g. {suggest}'s (runbooks/deploy.md)"
        ));
    }
    if c.tables.consistency == Consistency::Eventual && sm != used {
        return Some(format!(
            "{arn:?} is in {sm}, but {}'s daemon claims failovers in the replica in {used}; under consistency = \"eventual\" (MREC) conditions are evaluated in the local replica only, so a workflow writing the replica in {sm} would not see the claim it is fenced on until replication and end as Superseded. Name the state machine in {used}",
            r.name
        ));
    }
    None
}

impl Timings {
    /// How long a task-token claim holds without renewal.
    pub fn token_claim_lease(&self) -> Duration {
        (self.poll_interval * CLAIM_LEASE_POLLS).max(CLAIM_LEASE_MIN)
    }

    /// How often a worker heartbeats the workflow (and renews its claim)
    /// while a step runs.
    pub fn heartbeat_period(&self) -> Duration {
        (self.token_claim_lease() / HEARTBEATS_PER_CLAIM_LEASE).max(HEARTBEAT_MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(poll_interval: Duration) -> Timings {
        let s = Duration::from_secs;
        Timings {
            poll_interval,
            failure_threshold: 3,
            recovery_threshold: 3,
            vote_freshness: s(30),
            lease: s(30),
            min_failover_interval: s(600),
            shutdown_grace: s(20),
            prepare_budget: s(30),
            start_timeout: s(60),
            stuck_failover: s(300),
            abort_retry: s(30),
        }
    }

    fn asl() -> serde_json::Value {
        serde_json::from_str(include_str!("../../deploy/statemachines/failover.asl.json")).unwrap()
    }

    fn secs(v: &serde_json::Value) -> Option<Duration> {
        v.as_u64().map(Duration::from_secs)
    }

    /// The callback tasks' figures are the ASL's, and the tokens they write
    /// carry the task's timeout.
    #[test]
    fn the_callback_tasks_are_the_asl_ones() {
        let asl = asl();
        for (state, timeout, heartbeat) in [
            ("PrepareTarget", PREPARE_TIMEOUT, PREPARE_HEARTBEAT),
            ("DrainOld", DRAIN_TIMEOUT, DRAIN_HEARTBEAT),
        ] {
            let task = &asl["States"][state];
            assert_eq!(secs(&task["TimeoutSeconds"]), Some(timeout), "{state}");
            assert_eq!(secs(&task["HeartbeatSeconds"]), Some(heartbeat), "{state}");
            assert_eq!(
                task["Parameters"]["Item"]["timeout_seconds"]["N"].as_str(),
                Some(timeout.as_secs().to_string().as_str()),
                "{state}: the token's timeout_seconds is the task's"
            );
        }
        // No other state waits for a callback, or heartbeats.
        let callbacks: Vec<&String> = asl["States"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.get("HeartbeatSeconds").is_some())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(callbacks, ["DrainOld", "PrepareTarget"]);
    }

    /// Every retry of every state is the policy the bounds assume, or
    /// shorter.
    #[test]
    fn every_retry_is_within_the_dynamodb_policy() {
        let asl = asl();
        let mut seen = 0;
        for (name, state) in asl["States"].as_object().unwrap() {
            for r in state["Retry"].as_array().into_iter().flatten() {
                seen += 1;
                assert!(
                    secs(&r["IntervalSeconds"]).unwrap() <= DYNAMODB_RETRY_INTERVAL
                        && r["BackoffRate"].as_f64().unwrap() <= DYNAMODB_RETRY_BACKOFF as f64
                        && secs(&r["MaxDelaySeconds"]).unwrap() <= DYNAMODB_RETRY_MAX_DELAY
                        && r["MaxAttempts"].as_u64().unwrap() <= DYNAMODB_RETRY_ATTEMPTS as u64,
                    "{name}: {r}"
                );
            }
        }
        assert!(seen > 5);
        assert_eq!(dynamodb_retry_span(), Duration::from_secs(23));
    }

    /// The range `timings.stuck_failover` accepts starts above the drain's
    /// wait: a drain that runs to its timeout, then the steady mark's
    /// retries, stands the record still for less than the least stuck rule.
    #[test]
    fn the_least_stuck_rule_outlasts_a_timed_out_drain() {
        assert!(
            DRAIN_TIMEOUT + dynamodb_retry_span() * 2 < super::super::validate::STUCK_FAILOVER_MIN
        );
    }

    #[test]
    fn the_unit_stops_as_assumed() {
        let unit = include_str!("../../systemd/failoverd@.service");
        let line = unit
            .lines()
            .find(|l| l.starts_with("TimeoutStopSec="))
            .expect("TimeoutStopSec in the unit");
        let value = humantime::parse_duration(line.trim_start_matches("TimeoutStopSec=")).unwrap();
        assert_eq!(value, SYSTEMD_TIMEOUT_STOP);
    }

    /// The cadence the token desk uses, at a few poll intervals.
    #[test]
    fn the_heartbeat_follows_the_poll_interval() {
        let t = |poll_ms: u64| {
            let t = timings(Duration::from_millis(poll_ms));
            (
                t.token_claim_lease().as_millis(),
                t.heartbeat_period().as_millis(),
            )
        };
        assert_eq!(t(100), (10_000, 3333), "the claim lease's floor");
        assert_eq!(t(1000), (10_000, 3333));
        assert_eq!(t(5000), (25_000, 8333));
        assert_eq!(t(36_000), (180_000, 60_000));
        assert_eq!(t(40_000), (200_000, 66_666));
    }
}
