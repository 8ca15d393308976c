//! Constraints between settings: what the code derives from one setting
//! and must fit another (or a figure of the shipped workflow or unit),
//! checked once every section is valid. Each is reported at the key an
//! operator is most likely to change, and its message names the other
//! key (or the shipped file), the derived figures and the bound.
//!
//! An *error* is a configuration the daemon would run with unsafely, or
//! that breaks failover in ordinary operation (every slow prepare aborting,
//! automatic failover that can never happen); daemon start and
//! `check-config` refuse it. A *warning* is one that works until a single
//! fault (a lost heartbeat, a black-holed probe, throttling) and then costs
//! a failover or a signal; `check-config` prints it and the configuration
//! loads. docs/decisions.md #18 has the list and the reasons.
//!
//! Checked here (the bounds in docs/protocol.md, "Constraints between
//! settings"):
//!
//! - errors: the prepare step's heartbeat against `PrepareTarget`'s
//!   `HeartbeatSeconds`; the warm-up against `timings.stuck_failover` (the
//!   tier2 scale-up is config/cost.rs's); automatic failover in a fleet of
//!   fewer than three voting regions; a region's workflow in a region whose
//!   replica it cannot write (config/workflow.rs, "Where the workflow runs");
//! - warnings: the prepare heartbeat with none to spare; vote freshness and
//!   the lease against a round whose probes time out; the start timeout
//!   against the workflow's retries, and against the stuck rule;
//!   `abort_retry` against its cap; `shutdown_grace` against the unit.
//!
//! Checked where the keys are parsed: vote freshness and the lease against
//! two poll intervals (config/validate.rs), the tier2 prepare budget
//! against the workflow's prepare timeout and the stuck rule
//! (config/cost.rs), the router's own pairs (config/router.rs).

use std::time::Duration;

use super::cost::STALL_ROOM;
use super::validate::Validator;
use super::workflow::{
    CLAIM_LEASE_POLLS, HEARTBEATS_PER_CLAIM_LEASE, PREPARE_HEARTBEAT, SHUTDOWN_ROOM,
    SYSTEMD_TIMEOUT_STOP, dynamodb_retry_span,
};
use super::{Config, Consistency};
use crate::core::plan::{Approval, OnApprovalTimeout};

const ASL: &str = "deploy/statemachines/failover.asl.json";
const UNIT: &str = "systemd/failoverd@.service";

/// The fewest voting regions (daemons) with which automatic failover can
/// survive the loss of one: a quorum is a majority of all of them.
pub const MIN_AUTOMATIC_REGIONS: usize = 3;

impl Config {
    /// The longest one round's probes of a region can take when they time
    /// out (a region's URLs are probed one after another, the regions at
    /// once), and the region that takes it.
    pub fn probe_pass(&self) -> (Duration, Option<usize>) {
        let one = self.health.probe_connect_timeout + self.health.probe_response_timeout;
        self.regions
            .iter()
            .enumerate()
            .map(|(i, r)| (one * r.probe_urls.len() as u32, Some(i)))
            .max_by_key(|(d, _)| *d)
            .unwrap_or((Duration::ZERO, None))
    }
}

/// `66.7s`, `36s`, `2m 30s`.
fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Validator<'_> {
    /// Every constraint between settings of a configuration whose sections
    /// are each valid.
    pub(super) fn derived(&mut self, c: &Config) {
        self.heartbeats(c);
        self.rounds(c);
        self.stall_rules(c);
        self.retry_cap(c);
        self.shutdown(c);
        self.fleet_size(c);
        self.workflow_regions(c);
    }

    /// Each `[[regions]] state_machine_arn` names a state machine in a
    /// region whose replica of the control table its workflow can write
    /// (config/workflow.rs, "Where the workflow runs").
    fn workflow_regions(&mut self, c: &Config) {
        for (i, r) in c.regions.iter().enumerate() {
            let Some(problem) = super::workflow::workflow_region_problem(c, r) else {
                continue;
            };
            self.err(&format!("regions[{i}].state_machine_arn"), problem);
        }
    }

    /// The token worker heartbeats every third of a claim lease of five
    /// poll intervals (`Timings::heartbeat_period`); `PrepareTarget` fails
    /// after `HeartbeatSeconds` without one.
    fn heartbeats(&mut self, c: &Config) {
        let t = &c.timings;
        let period = t.heartbeat_period();
        let claim = t.token_claim_lease();
        let how = format!(
            "{} makes the prepare step heartbeat every {} (a token claim lease of {} poll intervals, {}, renewed every 1/{} of it)",
            show(t.poll_interval),
            show(period),
            CLAIM_LEASE_POLLS,
            show(claim),
            HEARTBEATS_PER_CLAIM_LEASE
        );
        // The largest poll interval whose period is below a bound.
        let poll_for = |bound: Duration| bound * HEARTBEATS_PER_CLAIM_LEASE / CLAIM_LEASE_POLLS;
        if period >= PREPARE_HEARTBEAT {
            self.err(
                "timings.poll_interval",
                format!(
                    "{how}, not within the workflow's HeartbeatSeconds {} (PrepareTarget in {ASL}): every prepare step longer than that aborts the failover; keep timings.poll_interval under {}",
                    PREPARE_HEARTBEAT.as_secs(),
                    show(poll_for(PREPARE_HEARTBEAT))
                ),
            );
        } else if period > PREPARE_HEARTBEAT / 2 {
            self.warn(
                "timings.poll_interval",
                format!(
                    "{how}, more than half the workflow's HeartbeatSeconds {} (PrepareTarget in {ASL}): one lost or throttled heartbeat aborts the failover; keep timings.poll_interval at most {} to have one to spare",
                    PREPARE_HEARTBEAT.as_secs(),
                    show(poll_for(PREPARE_HEARTBEAT / 2))
                ),
            );
        }
    }

    /// A daemon votes and confirms its lease once a round, and a round
    /// waits for its probes: a region's URLs one after another, each up to
    /// the connect plus the response timeout. When a region black-holes its
    /// probes, rounds last that long, whatever the poll interval.
    fn rounds(&mut self, c: &Config) {
        let t = &c.timings;
        let (pass, Some(i)) = c.probe_pass() else {
            return;
        };
        if pass <= t.poll_interval {
            // Two poll intervals, checked in config/validate.rs, cover it.
            return;
        }
        let round = pass;
        let why = format!(
            "a round probes regions[{i}]'s {} URL(s) one after another, each for up to health.probe_connect_timeout + health.probe_response_timeout ({} + {}), so while that region black-holes them a round lasts at least {} (longer than timings.poll_interval, {})",
            c.regions[i].probe_urls.len(),
            show(c.health.probe_connect_timeout),
            show(c.health.probe_response_timeout),
            show(round),
            show(t.poll_interval)
        );
        if t.vote_freshness < round * 2 {
            self.warn(
                "timings.vote_freshness",
                format!(
                    "{} is shorter than two such rounds: {why}; a healthy daemon's vote can then age {} on a reader's clock and the quorum flickers exactly while a region fails; raise timings.vote_freshness to at least {} or shorten the probe timeouts",
                    show(t.vote_freshness),
                    show(round * 2),
                    show(round * 2)
                ),
            );
        }
        if t.lease < round * 2 {
            self.warn(
                "timings.lease",
                format!(
                    "{} is shorter than two such rounds: {why}; the active confirms its lease once a round, so a healthy active stands down while another region black-holes its probes; raise timings.lease to at least {} or shorten the probe timeouts",
                    show(t.lease),
                    show(round * 2)
                ),
            );
        }
    }

    /// The record stands still while the workflow waits for the target's
    /// prepare step, and while a claimed execution is being started.
    fn stall_rules(&mut self, c: &Config) {
        let t = &c.timings;
        // With a provisioned endpoint the scale-up counts too, and
        // config/cost.rs checks the sum (at cost.prepare_budget).
        let scales = c.any_provisioned();
        if !scales && t.prepare_budget + STALL_ROOM > t.stuck_failover {
            self.err(
                "timings.prepare_budget",
                format!(
                    "{} plus {} for the callback and the workflow's retries exceeds timings.stuck_failover ({}): the daemons would settle a failover whose target is still warming up; raise timings.stuck_failover to at least {} or lower timings.prepare_budget to at most {}",
                    show(t.prepare_budget),
                    show(STALL_ROOM),
                    show(t.stuck_failover),
                    show(t.prepare_budget + STALL_ROOM),
                    show(t.stuck_failover.saturating_sub(STALL_ROOM))
                ),
            );
        }
        if t.start_timeout <= dynamodb_retry_span() {
            self.warn(
                "timings.start_timeout",
                format!(
                    "{} is not longer than the {} the workflow's first step (MarkFailingOver in {ASL}) may spend retrying a throttled write: a start that is merely throttled is settled as aborted; use more than {}",
                    show(t.start_timeout),
                    show(dynamodb_retry_span()),
                    show(dynamodb_retry_span())
                ),
            );
        }
        if t.start_timeout >= t.stuck_failover {
            self.warn(
                "timings.start_timeout",
                format!(
                    "{} is not shorter than timings.stuck_failover ({}): the stuck rule settles a claim that never started first, and this setting has no effect",
                    show(t.start_timeout),
                    show(t.stuck_failover)
                ),
            );
        }
    }

    /// The retry after an abort waits `abort_retry × 2^(aborts−1)`, capped
    /// by `min_failover_interval` (core::plan).
    fn retry_cap(&mut self, c: &Config) {
        let t = &c.timings;
        if t.abort_retry > t.min_failover_interval {
            self.warn(
                "timings.abort_retry",
                format!(
                    "{} is longer than timings.min_failover_interval ({}), which caps it: every retry after an abort waits {}",
                    show(t.abort_retry),
                    show(t.min_failover_interval),
                    show(t.min_failover_interval)
                ),
            );
        }
    }

    /// systemd kills the daemon `TimeoutStopSec` after SIGTERM.
    fn shutdown(&mut self, c: &Config) {
        let grace = c.timings.shutdown_grace;
        let fits = SYSTEMD_TIMEOUT_STOP.saturating_sub(SHUTDOWN_ROOM);
        if grace > fits {
            self.warn(
                "timings.shutdown_grace",
                format!(
                    "{} plus {} to shut the AWS clients down is longer than the shipped unit's TimeoutStopSec={} ({UNIT}): systemd would kill the daemon mid-drain; raise TimeoutStopSec to at least {} in a drop-in, or keep timings.shutdown_grace at most {}",
                    show(grace),
                    show(SHUTDOWN_ROOM),
                    show(SYSTEMD_TIMEOUT_STOP),
                    show(grace + SHUTDOWN_ROOM),
                    show(fits)
                ),
            );
        }
    }

    /// Automatic failover needs a quorum, a majority of *all* the fleet's
    /// regions: with two, both votes. When one region is lost the survivor
    /// can never fail over on its own, and it must not (it cannot tell a
    /// dead peer from a partition). So a fleet of fewer than three voting
    /// regions may not ask for automatic failover: not by `approval =
    /// "none"` (it defaults to `"manual"` there, config/validate.rs), nor by
    /// a proposal that proceeds unattended.
    fn fleet_size(&mut self, c: &Config) {
        let voting = c.regions.len();
        if voting >= MIN_AUTOMATIC_REGIONS
            || c.tables.consistency != Consistency::Strong
            || !c.cost.fleet_tier(&c.models).automatic_failover()
        {
            // Enough voters, or no automatic failover at all (MREC, tier3).
            return;
        }
        let names: Vec<&str> = c.regions.iter().map(|r| r.name.as_str()).collect();
        if self.approval_defaulted {
            self.warn(
                "policy.approval",
                format!(
                    "not set, so \"manual\" (not \"none\"): a fleet of {voting} voting regions ([[regions]]: {}) cannot fail over automatically when a region is lost (docs/protocol.md, \"Two-region fleets\"); set policy.approval = \"manual\" to say so",
                    names.join(", ")
                ),
            );
        }
        let why = format!(
            "a fleet of {voting} voting regions ([[regions]]: {}) cannot fail over automatically when it needs to: a quorum is a majority of all regions ({} of {voting}), so once a region is lost the survivor's vote alone is no quorum and it waits forever; nor may it act alone, since the survivor of two cannot tell a dead peer from a partition (both would take over)",
            names.join(", "),
            voting / 2 + 1
        );
        let instead = "use policy.approval = \"manual\" with on_approval_timeout = \"expire\" (an operator approves the proposals the daemons make while both vote; when a region is lost, `failoverd failover --to REGION --force`: runbooks/manual-failover.md), or add a third region (docs/protocol.md, \"Two-region fleets\")";
        if c.fleet_approval() == Approval::None {
            let tier = c.cost.fleet_tier(&c.models);
            let key = if c.policy.approval_by_tier.contains_key(&tier) {
                format!("policy.approval_by_tier.{}", tier.as_str())
            } else {
                "policy.approval".to_string()
            };
            self.err(
                &key,
                format!("\"none\" asks for automatic failover, but {why}; {instead}"),
            );
        } else if c.policy.on_approval_timeout == OnApprovalTimeout::Proceed {
            self.err(
                "policy.on_approval_timeout",
                format!(
                    "\"proceed\" makes every proposal an automatic failover after policy.approval_timeout, but {why}; {instead}"
                ),
            );
        }
    }
}
