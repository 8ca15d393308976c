//! The time bounds the invariants check, derived from the configuration
//! and the shipped state machine. docs/simulation.md explains each.
//!
//! All in milliseconds of simulated time.

use std::collections::BTreeMap;

use failoverd::config::Config;
use serde_json::Value;

/// The longest a DynamoDB task state of the workflow spends retrying, and
/// the longest wait of a callback task, computed from the definition.
fn state_weight(st: &Value) -> u64 {
    if st["Type"] != "Task" {
        return 0;
    }
    let mut ms = 0u64;
    if let Some(retriers) = st.get("Retry").and_then(Value::as_array) {
        // A failure is retried by one retrier at most MaxAttempts times;
        // the longest is the sum of the longest delays of the worst retrier
        // (FULL jitter waits at most the computed interval).
        let worst = retriers
            .iter()
            .map(|r| {
                let interval = r
                    .get("IntervalSeconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0);
                let rate = r.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0);
                let max = r
                    .get("MaxDelaySeconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::MAX);
                let attempts = r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
                (1..=attempts)
                    .map(|n| (interval * rate.powi(n as i32 - 1)).min(max))
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        ms += (worst * 1000.0) as u64;
    }
    if let Some(t) = st.get("TimeoutSeconds").and_then(Value::as_u64) {
        ms += t * 1000;
    }
    // Each call's own latency (two ways, at most 40 ms each in the world),
    // for the first try and every retry.
    ms + 6 * 100
}

/// The longest path through the state machine, by [`state_weight`]: no
/// execution runs longer while its engine makes progress.
pub fn workflow_span(def: &Value) -> u64 {
    fn longest(def: &Value, name: &str, memo: &mut BTreeMap<String, u64>, depth: u32) -> u64 {
        assert!(depth < 64, "the state machine has a cycle through {name}");
        if let Some(v) = memo.get(name) {
            return *v;
        }
        let st = &def["States"][name];
        let mut nexts: Vec<String> = Vec::new();
        if let Some(n) = st.get("Next").and_then(Value::as_str) {
            nexts.push(n.into());
        }
        if let Some(d) = st.get("Default").and_then(Value::as_str) {
            nexts.push(d.into());
        }
        for list in ["Catch", "Choices"] {
            for c in st.get(list).and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = c.get("Next").and_then(Value::as_str) {
                    nexts.push(n.into());
                }
            }
        }
        let tail = nexts
            .iter()
            .map(|n| longest(def, n, memo, depth + 1))
            .max()
            .unwrap_or(0);
        let v = state_weight(st) + tail;
        memo.insert(name.to_string(), v);
        v
    }
    let start = def["StartAt"].as_str().expect("StartAt");
    longest(def, start, &mut BTreeMap::new(), 0)
}

/// The bounds of one run.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// The longest reconcile round while the control plane answers: the
    /// poll interval, or a round that waits on a dead probe target (the
    /// probe's connect + response budget) plus its AWS calls.
    pub round: u64,
    /// The longest gap between two new Route 53 readings of one check: the
    /// fleet reads one check per slot (`2000 / route53_calls_per_second`
    /// ms), each check every `checks` slots, and with skewed clocks the
    /// three daemons' slots may fall on the same true time (factor 3); a
    /// reading is consumed at the next round.
    pub r53_reading: u64,
    /// Longest workflow run with a working engine (longest path of the
    /// ASL: every retry and callback timeout).
    pub workflow: u64,
    /// A record failing over is steady again within this long once the
    /// control plane has been quiet (every daemon up, no AWS fault on the
    /// daemons' side): the workflow may write until `workflow`; after its
    /// last write (or an engine stall) the stall rule settles it
    /// `stuck_failover` later, measured from the settler's first sight,
    /// plus rounds to see, decide and write.
    pub stuck: u64,
    /// From "the active region is down for every observer, a healthy
    /// target with a live daemon exists, nothing else is wrong, and no
    /// failover is due to wait" to the switch: detection
    /// (`failure_threshold` + 1 new bad samples, each a round or a Route 53
    /// reading), the vote published and read (two rounds), the claim (a
    /// round), the workflow to the token (seconds), the target's round to
    /// pick the token up (the pending index lags), prepare (its budget),
    /// the callback and the switch.
    pub failover: u64,
    /// From the same moment to the claim (docs/detection.md): the
    /// `failure_threshold` bad samples (a Route 53 reading up to
    /// `r53_gap` apart, or a probe a poll apart), the first one known to
    /// every daemon within a poll, then two rounds at most (the observers'
    /// votes, the target's claim) at the fast pace, each as long as a
    /// round may take.
    pub detect: u64,
    /// The longest gap between two readings of one check by the fleet's
    /// schedule: one rotation (`checks` slots), times three for skewed
    /// clocks (the daemons' windows may overlap in true time).
    pub r53_gap: u64,
    /// After the active region is healthy for every observer, how long a
    /// "down" verdict about it may survive somewhere: `recovery_threshold`
    /// + 1 good samples, plus a dead daemon's last vote staying fresh
    ///   (`vote_freshness`), plus two rounds. (Time during which Route 53
    ///   cannot be read is added on top: a Route 53 tracker only moves on
    ///   new readings.)
    pub recovery: u64,
    /// How long the quiet end of a run lasts at most: a stuck record's
    /// bound, a lease to wait out, and rounds to settle tokens.
    pub quiet: u64,
    /// A token item closed in the table while its task is still open in
    /// Step Functions is lost unless the task closes within this.
    pub token_grace: u64,
    /// The configured lease.
    pub lease: u64,
    pub min_failover_interval: u64,
    pub abort_retry: u64,
}

impl Bounds {
    pub fn new(cfg: &Config, def: &Value, checks: usize) -> Self {
        let t = &cfg.timings;
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let poll = ms(t.poll_interval);
        let probe = ms(cfg.health.probe_connect_timeout + cfg.health.probe_response_timeout);
        let round = poll.max(probe + 3_000);
        let slot = (2000.0 / cfg.health.route53_calls_per_second).max(1.0) as u64;
        let r53_reading = slot * checks.max(1) as u64 * 3 + round;
        let sample = round.max(r53_reading);
        let workflow = workflow_span(def);
        let stuck = workflow + ms(t.stuck_failover) + 3 * round + 10_000;
        let detect = (t.failure_threshold as u64 + 1) * sample + 2 * round;
        let failover = detect + round + 5_000 + round + 1_000 + ms(t.prepare_budget) + 5_000;
        let r53_gap = 3 * slot * checks.max(1) as u64;
        let tt = t.failure_threshold as u64;
        let detect_fast = (tt * r53_gap).max(tt * poll).max(r53_gap + poll) + poll + 3 * round;
        let recovery =
            (t.recovery_threshold as u64 + 1) * sample + ms(t.vote_freshness) + 2 * round;
        let quiet = stuck + ms(t.lease) + 4 * round;
        Self {
            round,
            r53_reading,
            workflow,
            stuck,
            failover,
            detect: detect_fast,
            r53_gap,
            recovery,
            quiet,
            token_grace: 2_000,
            lease: ms(t.lease),
            min_failover_interval: ms(t.min_failover_interval),
            abort_retry: ms(t.abort_retry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_workflow_span() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/statemachines/failover.asl.json"),
        )
        .unwrap();
        let def: Value = serde_json::from_str(&text).unwrap();
        let w = workflow_span(&def);
        // Mark, journal, prepare (900 s: a tier2 target may scale up),
        // switch, drain (120 s), journal, steady, journal: eight DynamoDB
        // states of at most 23 s of retries.
        assert_eq!(w, 8 * (23_000 + 600) + 900_000 + 120_000);
    }
}
